//! The controller: an openraft group whose state machine is the cluster
//! metadata (brokers, topics, placement of replicas on (broker, shard),
//! topic configs, producer id blocks), persisted under `<data-dir>/controller`.
//!
//! Threads: the controller runs on its OWN std thread ("fjord-controller")
//! with a current-thread tokio runtime, because openraft needs tokio timers
//! and those panic on glommio threads. `start` must be called before the
//! glommio shard pool starts (so the thread does not inherit a shard's CPU
//! pin). Shards talk to it through `ControllerHandle`: requests (`ops::Op`)
//! go over a bounded tokio mpsc with oneshot replies (both work from glommio
//! tasks and use no timers), and every applied change is published as an
//! immutable `Arc<ClusterMetadata>` in a tokio watch channel that each shard
//! reads.
//!
//! The quorum: single-node mode (no `controller.quorum.voters`) is a group of
//! this node alone, bootstrapped on a fresh data dir. With voters, every
//! voter initializes the same static membership (openraft: safe when it is
//! identical everywhere) and a leader needs a majority, so a node that cannot
//! reach its peers waits and never forms a cluster of its own. Voters talk
//! over `rpc` on `controller_addr`. A broker that is not a voter becomes a
//! Raft learner when it first heartbeats, so it applies the same log.
//!
//! Requests are handled one at a time on the controller thread. On the
//! active controller (the Raft leader): validate and plan against the latest
//! applied metadata, propose through Raft, answer after the change is applied
//! and published. On any other node: forward the op to the active controller
//! (`forward`), retrying while leadership moves.
//!
//! Brokers heartbeat every `broker.heartbeat.interval.ms` (`Op::Heartbeat`
//! registers, re-registers or unfences); the active controller fences a
//! broker whose last heartbeat is older than `broker.session.timeout.ms`,
//! and at once when it shuts down cleanly (`Op::ControlledShutdown`).
//!
//! On-disk layout of `ControllerConfig::dir`: `lock` (flock held while
//! running), `log/*.log` (Raft log segments), `vote.json`, `purged.json`,
//! `committed.json` (see `log_store`), `snapshot.json` (see `state_machine`).
//! The cluster id also goes to `<data-dir>/meta.properties` (`cluster_id`).

pub mod cluster_id;
pub mod election;
pub mod log_store;
pub mod network;
pub mod ops;
pub mod rpc;
pub mod rpc_server;
pub mod state;
pub mod state_machine;
pub mod topic_config;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{flock, FlockArg};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use shards::Shutdown;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use self::log_store::LogStore;
use self::network::{Network, Sender};
use self::ops::{Heartbeat, Op, OpResult};
use self::rpc::{Call, Connection, Reply};
use self::state::{Command, CommandResponse};
use self::state_machine::{MetadataStateMachine, Publisher};
use self::types::{RaftNodeId, TypeConfig};
use crate::metadata::{
    BrokerMeta, ClusterMetadata, ControllerError, CreateTopicRequest, MetadataSnapshot, NodeId,
    TopicMeta,
};

/// Requests waiting for the controller thread; senders wait when it is full.
pub const REQUEST_QUEUE_DEPTH: usize = 1024;
/// How long single-node `start` waits for this node to become the Raft leader.
pub const LEADER_WAIT_MS_MAX: u64 = 30_000;
/// A snapshot is taken after this many log entries since the last one.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 1024;
/// Log entries kept behind a snapshot (for peers that lag a little).
pub const SNAPSHOT_LOGS_KEPT: u64 = 64;
/// How long a forwarded op may keep looking for the active controller.
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(15);
/// Time to live of one forwarded call.
const FORWARD_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle forwarding connections kept per peer.
const IDLE_CONNECTIONS_MAX: usize = 4;
/// Forwarded ops in flight from this node at once; more wait in the queue.
const FORWARDS_IN_FLIGHT_MAX: usize = 64;
/// How often the active controller looks for expired broker sessions.
const SESSION_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// How long a controller write may wait to be committed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping broker waits for the controller to fence it.
const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(3);
/// How often a starting node says in its log what it waits for.
const WAITING_LOG_INTERVAL: Duration = Duration::from_secs(5);
// Raft timing: an election follows ~0.5 s without a leader's heartbeat, so
// controller failover stays well inside a broker session (1 s by default),
// with room for the scheduling hiccups of a shared 2-core machine.
const HEARTBEAT_INTERVAL_MS: u64 = 100;
const ELECTION_TIMEOUT_MS_MIN: u64 = 400;
const ELECTION_TIMEOUT_MS_MAX: u64 = 800;

/// One voter of `controller.quorum.voters` (`ID@HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub node_id: NodeId,
    /// HOST:PORT of its controller listener.
    pub addr: String,
}

pub struct ControllerConfig {
    /// `<data-dir>/controller`; created if missing.
    pub dir: PathBuf,
    /// `<data-dir>/meta.properties`: the cluster id and node id of the data dir.
    pub meta_properties: PathBuf,
    pub node_id: NodeId,
    /// This node's broker registration (advertised listeners, rack, shard
    /// count); None on a controller-only node (`process.roles=controller`).
    pub broker: Option<BrokerMeta>,
    /// The static quorum; empty in single-node mode (this node alone).
    pub voters: Vec<Voter>,
    /// Where this node's controller RPC listens (`controller_addr`); needed
    /// with voters (also by a broker-only node: it is a learner).
    pub controller_addr: Option<std::net::SocketAddr>,
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
    /// `auto.leader.rebalance.enable` / `leader.imbalance.check.interval.seconds`:
    /// how often the active controller hands leadership back to preferred
    /// replicas (None: never).
    pub leader_rebalance_interval: Option<Duration>,
    /// Process shutdown: a broker fences itself (controlled shutdown) when it fires.
    pub shutdown: Shutdown,
}

impl ControllerConfig {
    fn is_voter(&self) -> bool {
        self.voters.is_empty() || self.voters.iter().any(|v| v.node_id == self.node_id)
    }

    fn single_node(&self) -> bool {
        self.voters.is_empty()
    }

    /// Peers' controller addresses (every voter but this node).
    fn peers(&self) -> Vec<Voter> {
        self.voters.iter().filter(|v| v.node_id != self.node_id).cloned().collect()
    }
}

pub type MetadataReceiver = watch::Receiver<MetadataSnapshot>;

/// What a handle (or a forwarding peer) asks of the controller thread.
struct Request {
    op: Op,
    /// Came from another node: if this node is not the active controller it
    /// answers NotController instead of forwarding again (no loops).
    forwarded: bool,
    reply: oneshot::Sender<OpResult>,
}

/// The controller thread's stop signal and join handle, taken once by `shutdown`.
struct Lifecycle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, cloneable, Send + Sync handle to the controller; every shard has one.
#[derive(Clone)]
pub struct ControllerHandle {
    requests: mpsc::Sender<Request>,
    publisher: Publisher,
    // A Mutex because `shutdown` may be called from any clone on any thread;
    // it guards only the one-time stop, never metadata.
    lifecycle: Arc<Mutex<Lifecycle>>,
}

/// Starts the controller thread, joins or bootstraps the Raft group,
/// registers this broker, and returns once this broker is registered and
/// unfenced in the published metadata (a controller-only node: once a
/// leader and a cluster id are known). Call before the glommio shard pool
/// starts. With voters it waits as long as the quorum needs to form, saying
/// so in the log; a data dir of another cluster is refused.
pub fn start(config: ControllerConfig) -> Result<ControllerHandle, ControllerError> {
    if let Some(b) = &config.broker {
        if b.shard_count == 0 {
            return Err(ControllerError::InvalidConfig(
                "the broker must have at least one shard".into(),
            ));
        }
        if b.node_id != config.node_id {
            return Err(ControllerError::InvalidConfig(format!(
                "controller node id {} must equal the broker's node id {}",
                config.node_id, b.node_id
            )));
        }
    }
    if config.node_id < 0 {
        return Err(ControllerError::InvalidConfig(format!(
            "node id {} must be >= 0",
            config.node_id
        )));
    }
    if !config.single_node() && config.controller_addr.is_none() {
        return Err(ControllerError::InvalidConfig(
            "controller.quorum.voters is set, so controller_addr (--controller-addr HOST:PORT) is needed".into(),
        ));
    }
    if config.broker.is_none() && !config.is_voter() {
        return Err(ControllerError::InvalidConfig(format!(
            "process.roles=controller, but node {} is not in controller.quorum.voters",
            config.node_id
        )));
    }
    std::fs::create_dir_all(&config.dir).map_err(|e| {
        ControllerError::Unavailable(format!("cannot create {}: {e}", config.dir.display()))
    })?;
    let stored = cluster_id::read(&config.meta_properties)?;
    if let Some(stored) = &stored {
        if stored.node_id != config.node_id {
            return Err(ControllerError::InvalidConfig(format!(
                "data dir {} belongs to node {} (meta.properties), not node {}",
                config.meta_properties.parent().unwrap_or(Path::new(".")).display(),
                stored.node_id,
                config.node_id
            )));
        }
    }
    let dir_lock = lock_dir(&config.dir)?;
    let (publisher, _) = watch::channel(Arc::new(ClusterMetadata::default()));
    let publisher = Arc::new(publisher);
    let (requests, request_rx) = mpsc::channel(REQUEST_QUEUE_DEPTH);
    let (stop, stop_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread_publisher = publisher.clone();
    let thread_requests = requests.clone();
    let thread = std::thread::Builder::new()
        .name("fjord-controller".into())
        .spawn(move || {
            run_thread(config, thread_publisher, thread_requests, request_rx, stop_rx, ready_tx);
            // Released only once the Raft node has stopped writing.
            drop(dir_lock);
        })
        .map_err(|e| {
            ControllerError::Unavailable(format!("cannot spawn controller thread: {e}"))
        })?;
    let ready = ready_rx.recv();
    let handle = ControllerHandle {
        requests,
        publisher,
        lifecycle: Arc::new(Mutex::new(Lifecycle {
            stop: Some(stop),
            thread: Some(thread),
        })),
    };
    match ready {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            handle.shutdown();
            Err(e)
        }
        Err(_) => {
            handle.shutdown();
            Err(ControllerError::Unavailable(
                "controller thread exited during start".into(),
            ))
        }
    }
}

/// Takes an exclusive `flock` on `<dir>/lock`, held for the controller's
/// life, so two processes never write one Raft log.
fn lock_dir(dir: &Path) -> Result<File, ControllerError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| unavailable(&format!("cannot open {}", path.display()), e))?;
    flock(file.as_raw_fd(), FlockArg::LockExclusiveNonblock).map_err(|e| {
        ControllerError::Unavailable(format!(
            "controller dir {} is in use by another controller: {e}",
            dir.display()
        ))
    })?;
    Ok(file)
}

/// Everything the controller thread's tasks share (all on one thread).
#[derive(Clone)]
struct Node {
    raft: Raft<TypeConfig>,
    config: Arc<ControllerConfig>,
    publisher: Publisher,
    sender: Sender,
    requests: mpsc::Sender<Request>,
    incarnation: Uuid,
    forwards: Arc<tokio::sync::Semaphore>,
    /// Set once the controlled shutdown was answered (or given up on).
    controlled_shutdown_done: Arc<std::sync::atomic::AtomicBool>,
    /// Idle connections to peers for forwarded ops (heartbeats every 200 ms
    /// must not open a TCP connection each), at most `IDLE_CONNECTIONS_MAX` per peer.
    idle: Arc<Mutex<HashMap<String, Vec<Connection>>>>,
}

impl Node {
    fn raft_id(&self) -> RaftNodeId {
        self.config.node_id as RaftNodeId
    }

    fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.raft_id())
    }

    /// An idle connection to `addr`, or a new one (it connects on first use).
    fn take_connection(&self, addr: &str) -> Connection {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.get_mut(addr).and_then(Vec::pop));
        pooled.unwrap_or_else(|| Connection::new(addr.to_string()))
    }

    fn return_connection(&self, connection: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(connection.addr().to_string()).or_default();
            if list.len() < IDLE_CONNECTIONS_MAX {
                list.push(connection);
            }
        }
    }

    /// The active controller's RPC address as this node knows it.
    fn leader_addr(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader?;
        if leader == self.raft_id() {
            return None;
        }
        let node = m.membership_config.membership().get_node(&leader)?;
        Some((leader as NodeId, node.addr.clone()))
    }
}

fn run_thread(
    config: ControllerConfig,
    publisher: Publisher,
    requests_tx: mpsc::Sender<Request>,
    requests: mpsc::Receiver<Request>,
    stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::SyncSender<Result<(), ControllerError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(ControllerError::Unavailable(format!(
                "cannot build the controller runtime: {e}"
            ))));
            return;
        }
    };
    let config = Arc::new(config);
    runtime.block_on(async move {
        let node = match boot(config.clone(), publisher, requests_tx).await {
            Ok(node) => node,
            Err(e) => {
                tracing::error!("controller failed to start: {e}");
                let _ = ready.send(Err(e));
                return;
            }
        };
        if config.broker.is_some() {
            tokio::spawn(heartbeat_loop(node.clone()));
        }
        tokio::spawn(cluster_id::keep_written(
            node.publisher.subscribe(),
            config.meta_properties.clone(),
            config.node_id,
        ));
        let serving = serve(node.clone(), requests, stop);
        tokio::pin!(serving);
        // Requests must be served while waiting: on the active controller,
        // this node's own heartbeat is one of them.
        let started = tokio::select! {
            r = wait_ready(&node) => Some(r),
            () = &mut serving => None,
        };
        match started {
            Some(Ok(())) => {
                let _ = ready.send(Ok(()));
                tracing::info!(node_id = config.node_id, dir = %config.dir.display(), "controller started");
                serving.await;
            }
            Some(Err(e)) => {
                tracing::error!("controller failed to start: {e}");
                let _ = ready.send(Err(e));
            }
            None => {
                let _ = ready.send(Err(ControllerError::Unavailable("stopped during start".into())));
            }
        }
        if let Err(e) = node.raft.shutdown().await {
            tracing::error!("controller raft shutdown: {e}");
        }
        tracing::info!("controller stopped");
    });
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ControllerError {
    ControllerError::Unavailable(format!("{what}: {e}"))
}

fn raft_config() -> Result<Config, ControllerError> {
    Config {
        cluster_name: "fjord".into(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS_MIN,
        election_timeout_max: ELECTION_TIMEOUT_MS_MAX,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_LOGS_SINCE_LAST),
        max_in_snapshot_log_to_keep: SNAPSHOT_LOGS_KEPT,
        ..Default::default()
    }
    .validate()
    .map_err(|e| unavailable("raft config", e))
}

/// Opens storage, checks the data dir against the peers, starts Raft and
/// the RPC listener, and initializes a fresh voter with the static
/// membership. On error the Raft node (if started) is shut down.
async fn boot(
    config: Arc<ControllerConfig>,
    publisher: Publisher,
    requests: mpsc::Sender<Request>,
) -> Result<Node, ControllerError> {
    let log = LogStore::open(&config.dir).map_err(|e| unavailable("controller log", e))?;
    let sm = MetadataStateMachine::open(&config.dir, publisher.clone())
        .map_err(|e| unavailable("controller snapshot", e))?;
    let raft_id = RaftNodeId::try_from(config.node_id)
        .map_err(|e| ControllerError::InvalidConfig(format!("node id: {e}")))?;
    let sender = Sender { node_id: config.node_id, publisher: publisher.clone() };
    let own_cluster_id = match cluster_id::read(&config.meta_properties)? {
        Some(s) => s.cluster_id,
        None => publisher.borrow().cluster_id.clone(),
    };
    if !config.single_node() && !own_cluster_id.is_empty() {
        // Peers of another cluster: refuse before this node's Raft says anything to them.
        cluster_id::check_peers(&config, &sender, &own_cluster_id, Duration::from_secs(2)).await?;
    }
    let listener = match config.controller_addr {
        Some(addr) if !config.single_node() => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| ControllerError::InvalidConfig(format!("cannot listen on controller_addr {addr}: {e}")))?,
        ),
        _ => None,
    };
    let raft = Raft::new(raft_id, Arc::new(raft_config()?), Network { sender: sender.clone() }, log, sm)
        .await
        .map_err(|e| unavailable("raft start", e))?;
    let node = Node {
        raft,
        config: config.clone(),
        publisher,
        sender,
        requests,
        incarnation: Uuid::new_v4(),
        forwards: Arc::new(tokio::sync::Semaphore::new(FORWARDS_IN_FLIGHT_MAX)),
        controlled_shutdown_done: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        idle: Arc::new(Mutex::new(HashMap::new())),
    };
    if let Some(listener) = listener {
        tokio::spawn(rpc_server::serve(listener, node.raft.clone(), node.sender.clone(), node.requests.clone()));
    }
    if let Err(e) = initialize(&node).await {
        let _ = node.raft.shutdown().await;
        return Err(e);
    }
    Ok(node)
}

/// The membership this node's config asks for: every voter with its
/// controller address (single-node mode: this node alone).
fn configured_members(config: &ControllerConfig) -> BTreeMap<RaftNodeId, BasicNode> {
    if config.single_node() {
        return BTreeMap::from([(config.node_id as RaftNodeId, BasicNode::new(""))]);
    }
    config.voters.iter().map(|v| (v.node_id as RaftNodeId, BasicNode::new(v.addr.clone()))).collect()
}

async fn initialize(node: &Node) -> Result<(), ControllerError> {
    let config = &node.config;
    let raft = &node.raft;
    let wanted: BTreeSet<RaftNodeId> = configured_members(config).keys().copied().collect();
    let initialized = raft.is_initialized().await.map_err(|e| unavailable("raft state", e))?;
    if !initialized && config.is_voter() {
        raft.initialize(configured_members(config)).await.map_err(|e| unavailable("raft initialize", e))?;
        if config.single_node() {
            tracing::info!(node_id = config.node_id, "controller: bootstrapped a new single-voter cluster");
        } else {
            tracing::info!(node_id = config.node_id, voters = ?wanted, "controller: initialized the static quorum; waiting for a majority to elect a leader");
        }
        return Ok(());
    }
    let stored: BTreeSet<RaftNodeId> = raft.metrics().borrow().membership_config.voter_ids().collect();
    if initialized && config.is_voter() && stored != wanted {
        let cluster = node.publisher.borrow().cluster_id.clone();
        return Err(ControllerError::InvalidConfig(format!(
            "controller dir {} belongs to cluster {cluster:?} with voters {stored:?}, but this node is configured with voters {wanted:?} (controller.quorum.voters)",
            config.dir.display()
        )));
    }
    Ok(())
}

/// Waits until this broker is registered and unfenced (a controller-only
/// node: until a leader and a cluster id are known), logging what it waits
/// for; fails if the peers turn out to be another cluster.
async fn wait_ready(node: &Node) -> Result<(), ControllerError> {
    let config = &node.config;
    if config.single_node() {
        node.raft
            .wait(Some(Duration::from_millis(LEADER_WAIT_MS_MAX)))
            .state(ServerState::Leader, "controller start: become leader")
            .await
            .map_err(|e| unavailable("waiting to become controller leader", e))?;
    }
    let mut rx = node.publisher.subscribe();
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let ready = {
            let md = rx.borrow_and_update();
            match &config.broker {
                Some(_) => !md.cluster_id.is_empty() && md
                    .brokers
                    .get(&config.node_id)
                    .is_some_and(|b| b.incarnation == node.incarnation && !b.fenced),
                None => !md.cluster_id.is_empty() && node.raft.metrics().borrow().current_leader.is_some(),
            }
        };
        if ready {
            return Ok(());
        }
        if config.shutdown.is_triggered() {
            return Err(ControllerError::Unavailable("shutdown requested before this broker joined the cluster".into()));
        }
        if last_log.elapsed() >= WAITING_LOG_INTERVAL {
            last_log = Instant::now();
            let leader = node.raft.metrics().borrow().current_leader;
            tracing::warn!(
                waited_ms = started.elapsed().as_millis() as u64,
                leader = ?leader,
                voters = ?config.voters.iter().map(|v| format!("{}@{}", v.node_id, v.addr)).collect::<Vec<_>>(),
                "waiting for the controller quorum: no active controller has registered this broker yet (are the other voters up and reachable?)"
            );
            let own = node.publisher.borrow().cluster_id.clone();
            if !config.single_node() && !own.is_empty() {
                cluster_id::check_peers(config, &node.sender, &own, Duration::from_secs(1)).await?;
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

/// Sends this broker's heartbeat every interval until shutdown, then asks
/// the active controller to fence it (controlled shutdown).
async fn heartbeat_loop(node: Node) {
    let Some(broker) = node.config.broker.clone() else { return };
    let broker = BrokerMeta { incarnation: node.incarnation, fenced: false, ..broker };
    let heartbeat = Heartbeat {
        broker,
        controller_addr: match node.config.single_node() {
            true => None,
            false => node.config.controller_addr.map(|a| a.to_string()),
        },
    };
    let shutdown = node.config.shutdown.clone();
    let interval = node.config.heartbeat_interval;
    let mut failing_since: Option<Instant> = None;
    while !shutdown.is_triggered() {
        let sent = Instant::now();
        let result = submit(&node.requests, Op::Heartbeat(heartbeat.clone()), node.config.session_timeout).await;
        match result.whole_error() {
            None => failing_since = None,
            Some(e) => {
                let since = *failing_since.get_or_insert(sent);
                if since.elapsed() >= WAITING_LOG_INTERVAL {
                    tracing::warn!(error = %e, failing_ms = since.elapsed().as_millis() as u64, "broker heartbeat to the active controller keeps failing");
                    failing_since = Some(Instant::now());
                }
            }
        }
        let wait = interval.saturating_sub(sent.elapsed());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.wait() => {}
        }
    }
    let op = Op::ControlledShutdown { node_id: node.config.node_id, incarnation: node.incarnation };
    match submit(&node.requests, op, Duration::from_secs(3)).await.whole_error() {
        None => tracing::info!("controlled shutdown: the controller fenced this broker"),
        Some(e) => tracing::warn!(error = %e, "controlled shutdown: could not tell the controller (it will fence this broker when its session times out)"),
    }
    node.controlled_shutdown_done.store(true, std::sync::atomic::Ordering::Release);
}

/// Puts `op` on the controller thread's queue and waits up to `timeout` for the result.
async fn submit(requests: &mpsc::Sender<Request>, op: Op, timeout: Duration) -> OpResult {
    let (reply, rx) = oneshot::channel();
    let failed = |e| OpResult::failed(&op, e);
    if requests.send(Request { op: op.clone(), forwarded: false, reply }).await.is_err() {
        return failed(ControllerError::Unavailable("the controller is shut down".into()));
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => failed(ControllerError::Unavailable("the controller stopped before answering".into())),
        Err(_) => failed(ControllerError::Unavailable("the controller did not answer in time".into())),
    }
}

/// Proposes a command and waits until it is applied (and published), at
/// most `WRITE_TIMEOUT`: a leader that lost its quorum must not hold the
/// request queue (or its own shutdown) forever.
async fn write(raft: &Raft<TypeConfig>, cmd: Command) -> Result<CommandResponse, ControllerError> {
    write_within(raft, cmd, WRITE_TIMEOUT).await
}

async fn write_within(raft: &Raft<TypeConfig>, cmd: Command, timeout: Duration) -> Result<CommandResponse, ControllerError> {
    match tokio::time::timeout(timeout, raft.client_write(cmd)).await {
        Ok(Ok(resp)) => Ok(resp.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
            Err(ControllerError::NotController)
        }
        Ok(Err(e)) => Err(unavailable("controller write", e)),
        Err(_) => Err(ControllerError::Unavailable(format!(
            "controller write not committed within {} ms (no quorum?)",
            timeout.as_millis()
        ))),
    }
}

/// The single outcome of a one-item command.
fn single_outcome(resp: CommandResponse) -> Result<(), ControllerError> {
    match resp.outcomes.into_iter().next() {
        Some(outcome) => outcome.map_err(ControllerError::from),
        None => Err(ControllerError::Unavailable(
            "empty controller response".into(),
        )),
    }
}

/// What only the active controller keeps: when each broker last heartbeated.
/// Rebuilt from nothing whenever this node becomes the leader: every
/// registered broker then gets half a session from that moment (live ones
/// heartbeat every interval and reach the new leader well within it), so a
/// broker that died with the old controller is fenced soon after the election.
#[derive(Default)]
struct Sessions {
    leader_term: Option<u64>,
    last_heartbeat: HashMap<NodeId, Instant>,
    /// When this controller last checked leadership balance.
    last_rebalance: Option<Instant>,
}

async fn serve(node: Node, mut requests: mpsc::Receiver<Request>, mut stop: oneshot::Receiver<()>) {
    let mut sessions = Sessions::default();
    let mut ticker = tokio::time::interval(SESSION_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A stopping broker keeps serving until its controlled shutdown is answered
    // (it may be the active controller itself), at most CONTROLLED_SHUTDOWN_WAIT.
    let mut stopping_since: Option<Instant> = None;
    loop {
        if let Some(since) = stopping_since {
            let done = node.controlled_shutdown_done.load(std::sync::atomic::Ordering::Acquire);
            if done || since.elapsed() > CONTROLLED_SHUTDOWN_WAIT {
                return;
            }
        }
        tokio::select! {
            r = requests.recv() => match r {
                Some(r) => handle_request(&node, &mut sessions, r).await,
                None => return,
            },
            _ = ticker.tick() => leader_duties(&node, &mut sessions).await,
            _ = &mut stop, if stopping_since.is_none() => {
                if node.config.broker.is_none() || !node.config.shutdown.is_triggered() {
                    return;
                }
                stopping_since = Some(Instant::now());
            }
        }
    }
}

/// The active controller's periodic work: fix the cluster id once, and fence
/// brokers whose session expired.
async fn leader_duties(node: &Node, sessions: &mut Sessions) {
    if !node.is_leader() {
        sessions.leader_term = None;
        sessions.last_heartbeat.clear();
        return;
    }
    let term = node.raft.metrics().borrow().current_term;
    if sessions.leader_term != Some(term) {
        sessions.leader_term = Some(term);
        sessions.last_heartbeat.clear();
        sessions.last_rebalance = None;
    }
    let meta = node.publisher.borrow().clone();
    if meta.cluster_id.is_empty() {
        let cluster_id = state::new_cluster_id();
        match write(&node.raft, Command::InitCluster { cluster_id: cluster_id.clone() }).await {
            Ok(_) => tracing::info!(cluster_id = %cluster_id, "controller: new cluster formed"),
            Err(e) => tracing::warn!(error = %e, "controller: cannot write the cluster id yet"),
        }
    }
    let now = Instant::now();
    let timeout = node.config.session_timeout;
    let takeover_grace_start = now.checked_sub(timeout / 2).unwrap_or(now);
    for b in meta.brokers.values().filter(|b| !b.fenced) {
        // This node's own broker is alive while its controller runs.
        if b.node_id == node.config.node_id {
            continue;
        }
        let last = *sessions.last_heartbeat.entry(b.node_id).or_insert(takeover_grace_start);
        let silent = now.duration_since(last);
        if silent > timeout {
            let cmd = Command::FenceBroker { node_id: b.node_id, incarnation: b.incarnation };
            match write(&node.raft, cmd).await {
                Ok(_) => tracing::info!(broker = b.node_id, silent_ms = silent.as_millis() as u64, "fenced broker: no heartbeat within broker.session.timeout.ms"),
                Err(e) => tracing::warn!(broker = b.node_id, error = %e, "cannot fence broker"),
            }
        }
    }
    rebalance_leaders(node, sessions, &meta).await;
}

/// `auto.leader.rebalance.enable`: every interval, partitions whose
/// preferred replica (the first assigned) is live and in sync but does not
/// lead get it back as leader, so leadership spreads again after restarts.
async fn rebalance_leaders(node: &Node, sessions: &mut Sessions, meta: &ClusterMetadata) {
    let Some(interval) = node.config.leader_rebalance_interval else { return };
    let now = Instant::now();
    let last = *sessions.last_rebalance.get_or_insert(now);
    if now.duration_since(last) < interval {
        return;
    }
    sessions.last_rebalance = Some(now);
    let partitions = election::imbalanced(meta);
    if partitions.is_empty() {
        return;
    }
    let count = partitions.len();
    match write(&node.raft, Command::ElectPreferredLeaders { partitions: Some(partitions) }).await {
        Ok(_) => tracing::info!(partitions = count, "leadership moved back to preferred replicas"),
        Err(e) => tracing::warn!(error = %e, "preferred leader election failed"),
    }
}

async fn handle_request(node: &Node, sessions: &mut Sessions, request: Request) {
    let Request { op, forwarded, reply } = request;
    if matches!(op, Op::Snapshot) {
        let _ = reply.send(OpResult::Done(snapshot_and_purge(&node.raft).await));
        return;
    }
    if node.is_leader() {
        let result = execute(node, sessions, op).await;
        let _ = reply.send(result);
        return;
    }
    if forwarded {
        let _ = reply.send(OpResult::failed(&op, ControllerError::NotController));
        return;
    }
    // Not the active controller: forward it, without holding up this queue.
    let node = node.clone();
    tokio::spawn(async move {
        let _permit = node.forwards.clone().acquire_owned().await;
        let _ = reply.send(forward(&node, op).await);
    });
}

/// Sends `op` to the active controller, looking for it (the leader this node
/// knows, else each voter in turn) until `FORWARD_DEADLINE`.
async fn forward(node: &Node, op: Op) -> OpResult {
    let deadline = Instant::now() + FORWARD_DEADLINE;
    let peers = node.config.peers();
    let mut next_peer = 0usize;
    let mut last_error = ControllerError::Unavailable("no active controller is known".into());
    while Instant::now() < deadline {
        if node.is_leader() {
            // Leadership came here meanwhile: queue it locally.
            return submit(&node.requests, op, deadline.saturating_duration_since(Instant::now())).await;
        }
        let target = match node.leader_addr() {
            Some((_, addr)) => Some(addr),
            None if !peers.is_empty() => {
                next_peer = (next_peer + 1) % peers.len();
                Some(peers[next_peer].addr.clone())
            }
            None => None,
        };
        if let Some(addr) = target {
            let mut connection = node.take_connection(&addr);
            let envelope = node.sender.envelope(Call::Forward(op.clone()));
            let timeout = FORWARD_CALL_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
            let reply = connection.call(&envelope, timeout).await;
            node.return_connection(connection);
            match reply {
                Ok(Reply::Forward(result)) => match result.whole_error() {
                    Some(ControllerError::NotController) => last_error = ControllerError::NotController,
                    _ => return result,
                },
                Ok(Reply::ClusterIdMismatch { ours }) => {
                    last_error = ControllerError::Unavailable(format!("controller at {addr} is in another cluster ({ours})"));
                }
                Ok(_) => last_error = ControllerError::Unavailable(format!("controller at {addr} answered with the wrong reply type")),
                Err(e) => last_error = ControllerError::Unavailable(format!("controller at {addr}: {e}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_error = match last_error {
        ControllerError::NotController => ControllerError::Unavailable("no active controller (an election may be under way)".into()),
        e => e,
    };
    OpResult::failed(&op, last_error)
}

/// Runs `op` on the active controller (this node).
async fn execute(node: &Node, sessions: &mut Sessions, op: Op) -> OpResult {
    let raft = &node.raft;
    let meta = node.publisher.borrow().clone();
    match op {
        Op::CreateTopics { reqs, validate_only } => {
            let plans = state::plan_create_topics(&meta, &reqs);
            OpResult::Topics(if validate_only { plans } else { commit_topics(raft, plans).await })
        }
        Op::DeleteTopics { names } => {
            let plans = state::plan_delete_topics(&meta, &names);
            OpResult::Deleted(commit_deletes(raft, &names, plans).await)
        }
        Op::CreatePartitions { topic, new_total, validate_only } => {
            OpResult::Done(match state::plan_create_partitions(&meta, &topic, new_total) {
                Ok(cmd) if !validate_only => write(raft, cmd).await.and_then(single_outcome),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            })
        }
        Op::AlterTopicConfigs { topic, changes, validate_only } => {
            OpResult::Done(match state::plan_alter_topic_configs(&meta, &topic, changes) {
                Ok(cmd) if !validate_only => write(raft, cmd).await.and_then(single_outcome),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            })
        }
        Op::AllocateProducerIds { count } => OpResult::ProducerIds(match state::plan_allocate_producer_ids(&meta, count) {
            Ok(cmd @ Command::AllocateProducerIds { start, .. }) => {
                write(raft, cmd).await.and_then(single_outcome).map(|()| start)
            }
            Ok(_) => Err(unavailable("controller", "unexpected plan")),
            Err(e) => Err(e),
        }),
        Op::Heartbeat(hb) => OpResult::Done(heartbeat(node, sessions, &meta, hb).await),
        Op::ControlledShutdown { node_id, incarnation } => {
            sessions.last_heartbeat.remove(&node_id);
            let registered = meta.brokers.get(&node_id).is_some_and(|b| b.incarnation == incarnation && !b.fenced);
            OpResult::Done(if registered {
                // The last voter standing has no quorum to commit this: do not hold its shutdown.
                write_within(raft, Command::FenceBroker { node_id, incarnation }, CONTROLLED_SHUTDOWN_WAIT).await.map(|_| {
                    tracing::info!(broker = node_id, "fenced broker: controlled shutdown");
                })
            } else {
                Ok(())
            })
        }
        Op::Snapshot => OpResult::Done(snapshot_and_purge(raft).await),
        Op::AlterPartition(req) => OpResult::Done(write(raft, Command::AlterPartition(req)).await.and_then(single_outcome)),
        Op::ElectPreferredLeaders { partitions } => {
            OpResult::Done(write(raft, Command::ElectPreferredLeaders { partitions }).await.and_then(single_outcome))
        }
        Op::DescribeQuorum => OpResult::Quorum(Ok(describe_quorum(node))),
        Op::UnregisterBroker { node_id } => {
            sessions.last_heartbeat.remove(&node_id);
            let done = write(raft, Command::UnregisterBroker { node_id }).await.and_then(single_outcome);
            if done.is_ok() {
                tracing::info!(broker = node_id, "unregistered broker");
            }
            OpResult::Done(done)
        }
    }
}

/// DescribeQuorum on the active controller, from openraft's metrics.
/// openraft reports each follower's matched log index but not when it last
/// fetched: a follower that matched anything counts as fetched at the last
/// quorum acknowledgement, and as caught up then if it matched the whole
/// committed log.
fn describe_quorum(node: &Node) -> ops::QuorumDescription {
    let m = node.raft.metrics().borrow().clone();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let acked_ms = now_ms - m.millis_since_quorum_ack.unwrap_or(0) as i64;
    let next = |index: Option<u64>| index.map_or(0, |i| i as i64 + 1);
    let high_watermark = next(m.last_applied.map(|l| l.index));
    let membership = m.membership_config.membership();
    let replica = |id: RaftNodeId| {
        let addr = membership.get_node(&id).map(|n| n.addr.clone());
        if id == m.id {
            let end = next(m.last_log_index);
            return ops::QuorumReplica { node_id: id as NodeId, addr, log_end_offset: end, last_fetch_timestamp_ms: now_ms, last_caught_up_timestamp_ms: now_ms };
        }
        let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned()).flatten();
        match matched {
            Some(log_id) => {
                let end = log_id.index as i64 + 1;
                let caught_up = if end >= high_watermark { acked_ms } else { -1 };
                ops::QuorumReplica { node_id: id as NodeId, addr, log_end_offset: end, last_fetch_timestamp_ms: acked_ms, last_caught_up_timestamp_ms: caught_up }
            }
            None => ops::QuorumReplica { node_id: id as NodeId, addr, log_end_offset: -1, last_fetch_timestamp_ms: -1, last_caught_up_timestamp_ms: -1 },
        }
    };
    ops::QuorumDescription {
        leader_id: m.current_leader.map_or(-1, |l| l as NodeId),
        leader_epoch: m.current_term.min(i32::MAX as u64) as i32,
        high_watermark,
        voters: membership.voter_ids().map(replica).collect(),
        observers: membership.learner_ids().map(replica).collect(),
    }
}

/// A broker's heartbeat on the active controller: restart its session, and
/// register it when it is new, a new incarnation, changed, or fenced.
async fn heartbeat(node: &Node, sessions: &mut Sessions, meta: &ClusterMetadata, hb: Heartbeat) -> Result<(), ControllerError> {
    let id = hb.broker.node_id;
    sessions.last_heartbeat.insert(id, Instant::now());
    let wanted = BrokerMeta { fenced: false, ..hb.broker };
    if meta.brokers.get(&id) != Some(&wanted) {
        let fresh = !meta.brokers.contains_key(&id);
        write(&node.raft, Command::RegisterBroker(wanted)).await?;
        tracing::info!(broker = id, fresh, "broker registered");
    }
    // A broker that is not a voter follows the metadata log as a learner.
    if let Some(addr) = hb.controller_addr {
        let known = node.raft.metrics().borrow().membership_config.membership().get_node(&(id as RaftNodeId)).is_some();
        if !known {
            let adding = node.raft.add_learner(id as RaftNodeId, BasicNode::new(addr.clone()), false);
            match tokio::time::timeout(WRITE_TIMEOUT, adding).await {
                Ok(Ok(_)) => tracing::info!(broker = id, addr = %addr, "added broker to the controller group as a learner"),
                Ok(Err(e)) => tracing::warn!(broker = id, error = %e, "cannot add broker as a learner"),
                Err(_) => tracing::warn!(broker = id, "adding broker as a learner timed out (no quorum?)"),
            }
        }
    }
    Ok(())
}

/// Proposes the valid plans as one command; failed plans keep their error.
async fn commit_topics(
    raft: &Raft<TypeConfig>,
    plans: Vec<Result<TopicMeta, ControllerError>>,
) -> Vec<Result<TopicMeta, ControllerError>> {
    let planned: Vec<TopicMeta> = plans
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    if planned.is_empty() {
        return plans;
    }
    let outcomes = match write(raft, Command::CreateTopics(planned.clone())).await {
        Ok(resp) if resp.outcomes.len() == planned.len() => resp
            .outcomes
            .into_iter()
            .map(|o| o.map_err(ControllerError::from))
            .collect(),
        Ok(_) => vec![Err(unavailable("controller", "response size mismatch")); planned.len()],
        Err(e) => vec![Err(e); planned.len()],
    };
    let mut outcomes = outcomes.into_iter();
    plans
        .into_iter()
        .map(|p| match p {
            Ok(topic) => outcomes.next().unwrap_or(Ok(())).map(|()| topic),
            Err(e) => Err(e),
        })
        .collect()
}

async fn commit_deletes(
    raft: &Raft<TypeConfig>,
    names: &[String],
    plans: Vec<Result<Uuid, ControllerError>>,
) -> Vec<Result<Uuid, ControllerError>> {
    let planned: Vec<(String, Uuid)> = names
        .iter()
        .zip(&plans)
        .filter_map(|(n, p)| p.as_ref().ok().map(|id| (n.clone(), *id)))
        .collect();
    if planned.is_empty() {
        return plans;
    }
    let count = planned.len();
    let outcomes = match write(raft, Command::DeleteTopics(planned)).await {
        Ok(resp) if resp.outcomes.len() == count => resp
            .outcomes
            .into_iter()
            .map(|o| o.map_err(ControllerError::from))
            .collect(),
        Ok(_) => vec![Err(unavailable("controller", "response size mismatch")); count],
        Err(e) => vec![Err(e); count],
    };
    let mut outcomes = outcomes.into_iter();
    plans
        .into_iter()
        .map(|p| match p {
            Ok(id) => outcomes.next().unwrap_or(Ok(())).map(|()| id),
            Err(e) => Err(e),
        })
        .collect()
}

async fn snapshot_and_purge(raft: &Raft<TypeConfig>) -> Result<(), ControllerError> {
    let applied = raft.metrics().borrow().last_applied;
    let Some(applied) = applied else {
        return Ok(());
    };
    raft.trigger()
        .snapshot()
        .await
        .map_err(|e| unavailable("snapshot", e))?;
    raft.wait(Some(Duration::from_millis(LEADER_WAIT_MS_MAX)))
        .snapshot(applied, "controller snapshot")
        .await
        .map_err(|e| unavailable("snapshot", e))?;
    raft.trigger()
        .purge_log(applied.index)
        .await
        .map_err(|e| unavailable("purge", e))?;
    raft.wait(Some(Duration::from_millis(LEADER_WAIT_MS_MAX)))
        .purged(Some(applied), "controller purge")
        .await
        .map_err(|e| unavailable("purge", e))?;
    Ok(())
}

impl ControllerHandle {
    /// A fresh receiver of metadata snapshots (each shard takes one). `borrow()` always has the latest.
    pub fn subscribe(&self) -> MetadataReceiver {
        self.publisher.subscribe()
    }

    pub fn current(&self) -> MetadataSnapshot {
        self.publisher.borrow().clone()
    }

    async fn call(&self, op: Op) -> OpResult {
        let (reply, rx) = oneshot::channel();
        if self.requests.send(Request { op: op.clone(), forwarded: false, reply }).await.is_err() {
            return OpResult::failed(&op, ControllerError::Unavailable("the controller is shut down".into()));
        }
        rx.await.unwrap_or_else(|_| {
            OpResult::failed(&op, ControllerError::Unavailable("the controller stopped before answering".into()))
        })
    }

    async fn call_done(&self, op: Op) -> Result<(), ControllerError> {
        match self.call(op).await {
            OpResult::Done(r) => r,
            _ => Err(unavailable("controller", "unexpected answer")),
        }
    }

    /// Validates each entry (name, partitions >= 1, 1 <= replication factor <=
    /// live brokers, configs) and, unless `validate_only`, commits the valid
    /// ones through Raft (on the active controller, wherever it is). Results
    /// are in input order; a name given twice fails both entries with
    /// `InvalidConfig` (Kafka: INVALID_REQUEST). Returns after the new
    /// metadata is published on the active controller (other nodes see it
    /// once they applied it too).
    pub async fn create_topics(
        &self,
        reqs: Vec<CreateTopicRequest>,
        validate_only: bool,
    ) -> Vec<Result<TopicMeta, ControllerError>> {
        let count = reqs.len();
        match self.call(Op::CreateTopics { reqs, validate_only }).await {
            OpResult::Topics(v) if v.len() == count => v,
            other => vec![Err(other.whole_error().cloned().unwrap_or(ControllerError::Unavailable("unexpected answer".into()))); count],
        }
    }

    /// Deletes topics by name; results in input order carry the deleted topic's id.
    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<Uuid, ControllerError>> {
        let count = names.len();
        match self.call(Op::DeleteTopics { names }).await {
            OpResult::Deleted(v) if v.len() == count => v,
            other => vec![Err(other.whole_error().cloned().unwrap_or(ControllerError::Unavailable("unexpected answer".into()))); count],
        }
    }

    /// Grows a topic to `new_total` partitions (must be more than it has:
    /// else `InvalidPartitions`), placing the new ones like a create.
    pub async fn create_partitions(
        &self,
        topic: String,
        new_total: i32,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        self.call_done(Op::CreatePartitions { topic, new_total, validate_only }).await
    }

    /// Sets (Some) or deletes (None) topic config overrides, validated.
    pub async fn alter_topic_configs(
        &self,
        topic: String,
        changes: BTreeMap<String, Option<String>>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        self.call_done(Op::AlterTopicConfigs { topic, changes, validate_only }).await
    }

    /// Allocates `count` producer ids unique in the cluster and across
    /// restarts (a Raft-committed counter); returns the first of the block.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64, ControllerError> {
        match self.call(Op::AllocateProducerIds { count }).await {
            OpResult::ProducerIds(r) => r,
            other => Err(other.whole_error().cloned().unwrap_or(ControllerError::Unavailable("unexpected answer".into()))),
        }
    }

    /// A partition leader's ISR change, fenced by leader and partition epoch.
    pub async fn alter_partition(&self, req: election::AlterPartition) -> Result<(), ControllerError> {
        self.call_done(Op::AlterPartition(req)).await
    }

    /// Preferred leader election (None: every partition).
    pub async fn elect_preferred_leaders(&self, partitions: Option<Vec<(String, i32)>>) -> Result<(), ControllerError> {
        self.call_done(Op::ElectPreferredLeaders { partitions }).await
    }

    /// Snapshots this node's state machine now and purges its log up to it.
    /// Forgets broker `node_id`'s registration (UnregisterBroker).
    pub async fn unregister_broker(&self, node_id: NodeId) -> Result<(), ControllerError> {
        self.call_done(Op::UnregisterBroker { node_id }).await
    }

    /// The metadata quorum, from the active controller (forwarded there).
    pub async fn describe_quorum(&self) -> Result<ops::QuorumDescription, ControllerError> {
        match self.call(Op::DescribeQuorum).await {
            OpResult::Quorum(r) => r,
            _ => Err(unavailable("controller", "unexpected answer")),
        }
    }

    pub async fn snapshot(&self) -> Result<(), ControllerError> {
        self.call_done(Op::Snapshot).await
    }

    /// Stops the Raft node and the controller thread and waits for them
    /// (every log write is already durable). Idempotent; blocks the caller
    /// until the thread has exited.
    pub fn shutdown(&self) {
        let (stop, thread) = match self.lifecycle.lock() {
            Ok(mut l) => (l.stop.take(), l.thread.take()),
            Err(_) => return,
        };
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(thread) = thread {
            if thread.thread().id() == std::thread::current().id() {
                return;
            }
            if thread.join().is_err() {
                tracing::error!("controller thread panicked");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_dir {
    use std::path::{Path, PathBuf};

    /// A unique directory under the system temp dir, removed on drop.
    pub struct TestDir(PathBuf);

    impl TestDir {
        pub fn new(tag: &str) -> TestDir {
            let p = std::env::temp_dir().join(format!(
                "fjord-{tag}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            std::fs::create_dir_all(&p).expect("create test dir");
            TestDir(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests;
