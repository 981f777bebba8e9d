//! The controller: an openraft group whose state machine is the cluster
//! metadata (brokers, topics, placement of replicas on (broker, shard),
//! topic configs), persisted under `<data-dir>/controller`.
//!
//! Threads: the controller runs on its OWN std thread ("fjord-controller")
//! with a current-thread tokio runtime, because openraft needs tokio timers
//! and those panic on glommio threads. `start` must be called before the
//! glommio shard pool starts (so the thread does not inherit a shard's CPU
//! pin). Shards talk to it through `ControllerHandle`: requests go over a
//! bounded tokio mpsc with oneshot replies (both work from glommio tasks and
//! use no timers), and every applied change is published as an immutable
//! `Arc<ClusterMetadata>` in a tokio watch channel that each shard reads.
//!
//! Requests are handled one at a time on the controller thread: validate and
//! plan against the latest applied metadata (`state`), propose through Raft,
//! answer after the change is applied and published.
//!
//! Today the group has one voter: a fresh data dir bootstraps a cluster of
//! this node (`initialize`, a new cluster id); an existing one is recovered
//! from disk. The transport (`network`) is a real trait implementation that
//! answers Unreachable until there are peers to reach.
//!
//! On-disk layout of `ControllerConfig::dir`: `lock` (flock held while
//! running), `log/*.log` (Raft log segments), `vote.json`, `purged.json`,
//! `committed.json` (see `log_store`), `snapshot.json` (see `state_machine`).

pub mod log_store;
pub mod network;
pub mod state;
pub mod state_machine;
pub mod topic_config;
pub mod types;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::fcntl::{flock, FlockArg};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use self::log_store::LogStore;
use self::network::Network;
use self::state::{Command, CommandResponse};
use self::state_machine::{MetadataStateMachine, Publisher};
use self::types::{RaftNodeId, TypeConfig};
use crate::metadata::{
    BrokerMeta, ClusterMetadata, ControllerError, CreateTopicRequest, MetadataSnapshot, NodeId,
    TopicMeta,
};

/// Requests waiting for the controller thread; senders wait when it is full.
pub const REQUEST_QUEUE_DEPTH: usize = 1024;
/// How long `start` waits for this node to become the Raft leader.
pub const LEADER_WAIT_MS_MAX: u64 = 30_000;
/// A snapshot is taken after this many log entries since the last one.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 1024;
/// Log entries kept behind a snapshot (for peers that lag a little).
pub const SNAPSHOT_LOGS_KEPT: u64 = 64;
const HEARTBEAT_INTERVAL_MS: u64 = 50;
const ELECTION_TIMEOUT_MS_MIN: u64 = 150;
const ELECTION_TIMEOUT_MS_MAX: u64 = 300;

pub struct ControllerConfig {
    /// `<data-dir>/controller`; created if missing.
    pub dir: PathBuf,
    pub node_id: NodeId,
    /// This node: advertised host/port, shard count.
    pub broker: BrokerMeta,
}

pub type MetadataReceiver = watch::Receiver<MetadataSnapshot>;

type Reply<T> = oneshot::Sender<T>;

/// What a handle asks of the controller thread.
enum Request {
    CreateTopics {
        reqs: Vec<CreateTopicRequest>,
        validate_only: bool,
        reply: Reply<Vec<Result<TopicMeta, ControllerError>>>,
    },
    DeleteTopics {
        names: Vec<String>,
        reply: Reply<Vec<Result<Uuid, ControllerError>>>,
    },
    CreatePartitions {
        topic: String,
        new_total: i32,
        validate_only: bool,
        reply: Reply<Result<(), ControllerError>>,
    },
    AlterTopicConfigs {
        topic: String,
        changes: BTreeMap<String, Option<String>>,
        validate_only: bool,
        reply: Reply<Result<(), ControllerError>>,
    },
    /// Hand out a block of `count` producer ids; answers the first.
    AllocateProducerIds {
        count: i64,
        reply: Reply<Result<i64, ControllerError>>,
    },
    /// Take a snapshot now and purge the log behind it (tests, admin later).
    Snapshot {
        reply: Reply<Result<(), ControllerError>>,
    },
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

/// Starts the controller thread, bootstraps or recovers the Raft group,
/// registers this broker, and returns once that metadata is applied and
/// published. Call before the glommio shard pool starts.
pub fn start(config: ControllerConfig) -> Result<ControllerHandle, ControllerError> {
    if config.broker.shard_count == 0 {
        return Err(ControllerError::InvalidConfig(
            "the broker must have at least one shard".into(),
        ));
    }
    if config.node_id < 0 || config.broker.node_id != config.node_id {
        return Err(ControllerError::InvalidConfig(format!(
            "controller node id {} must be >= 0 and equal the broker's node id {}",
            config.node_id, config.broker.node_id
        )));
    }
    std::fs::create_dir_all(&config.dir).map_err(|e| {
        ControllerError::Unavailable(format!("cannot create {}: {e}", config.dir.display()))
    })?;
    let dir_lock = lock_dir(&config.dir)?;
    let (publisher, _) = watch::channel(Arc::new(ClusterMetadata::default()));
    let publisher = Arc::new(publisher);
    let (requests, request_rx) = mpsc::channel(REQUEST_QUEUE_DEPTH);
    let (stop, stop_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread_publisher = publisher.clone();
    let thread = std::thread::Builder::new()
        .name("fjord-controller".into())
        .spawn(move || {
            run_thread(config, thread_publisher, request_rx, stop_rx, ready_tx);
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

fn run_thread(
    config: ControllerConfig,
    publisher: Publisher,
    requests: mpsc::Receiver<Request>,
    stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::SyncSender<Result<(), ControllerError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
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
    runtime.block_on(async move {
        let raft = match boot(&config, &publisher).await {
            Ok(raft) => raft,
            Err(e) => {
                tracing::error!("controller failed to start: {e}");
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        tracing::info!(node_id = config.node_id, dir = %config.dir.display(), "controller started");
        serve(&raft, &publisher, requests, stop).await;
        if let Err(e) = raft.shutdown().await {
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

/// Opens storage, starts Raft, bootstraps a fresh group, waits to lead, and
/// registers this broker. On error the Raft node (if started) is shut down.
async fn boot(
    config: &ControllerConfig,
    publisher: &Publisher,
) -> Result<Raft<TypeConfig>, ControllerError> {
    let log = LogStore::open(&config.dir).map_err(|e| unavailable("controller log", e))?;
    let sm = MetadataStateMachine::open(&config.dir, publisher.clone())
        .map_err(|e| unavailable("controller snapshot", e))?;
    let raft_id = RaftNodeId::try_from(config.node_id)
        .map_err(|e| ControllerError::InvalidConfig(format!("node id: {e}")))?;
    let raft = Raft::new(raft_id, Arc::new(raft_config()?), Network, log, sm)
        .await
        .map_err(|e| unavailable("raft start", e))?;
    let result = bootstrap_and_register(&raft, raft_id, config, publisher).await;
    if result.is_err() {
        let _ = raft.shutdown().await;
    }
    result.map(|()| raft)
}

async fn bootstrap_and_register(
    raft: &Raft<TypeConfig>,
    raft_id: RaftNodeId,
    config: &ControllerConfig,
    publisher: &Publisher,
) -> Result<(), ControllerError> {
    if !raft
        .is_initialized()
        .await
        .map_err(|e| unavailable("raft state", e))?
    {
        let addr = format!("{}:{}", config.broker.host, config.broker.port);
        let members = BTreeMap::from([(raft_id, BasicNode::new(addr))]);
        raft.initialize(members)
            .await
            .map_err(|e| unavailable("raft initialize", e))?;
        tracing::info!(
            node_id = config.node_id,
            "controller: bootstrapped a new single-voter cluster"
        );
    }
    // One voter for now: a dir whose voter is another node id would wait
    // forever to be elected, so say why instead.
    let voters: Vec<RaftNodeId> = raft
        .metrics()
        .borrow()
        .membership_config
        .voter_ids()
        .collect();
    if !voters.is_empty() && !voters.contains(&raft_id) {
        return Err(ControllerError::InvalidConfig(format!(
            "controller dir {} belongs to node(s) {voters:?}, not node {raft_id}",
            config.dir.display()
        )));
    }
    raft.wait(Some(Duration::from_millis(LEADER_WAIT_MS_MAX)))
        .state(ServerState::Leader, "controller start: become leader")
        .await
        .map_err(|e| unavailable("waiting to become controller leader", e))?;
    // Applying this also applies everything before it, so the published
    // metadata is complete once it returns.
    write(raft, Command::RegisterBroker(config.broker.clone())).await?;
    if publisher.borrow().cluster_id.is_empty() {
        let cluster_id = state::new_cluster_id();
        write(raft, Command::InitCluster { cluster_id }).await?;
    }
    Ok(())
}

/// Proposes a command and waits until it is applied (and published).
async fn write(raft: &Raft<TypeConfig>, cmd: Command) -> Result<CommandResponse, ControllerError> {
    match raft.client_write(cmd).await {
        Ok(resp) => Ok(resp.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(ControllerError::NotController)
        }
        Err(e) => Err(unavailable("controller write", e)),
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

async fn serve(
    raft: &Raft<TypeConfig>,
    publisher: &Publisher,
    mut requests: mpsc::Receiver<Request>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let request = tokio::select! {
            r = requests.recv() => match r {
                Some(r) => r,
                None => return,
            },
            _ = &mut stop => return,
        };
        handle_request(raft, publisher, request).await;
    }
}

async fn handle_request(raft: &Raft<TypeConfig>, publisher: &Publisher, request: Request) {
    let meta = publisher.borrow().clone();
    match request {
        Request::CreateTopics {
            reqs,
            validate_only,
            reply,
        } => {
            let plans = state::plan_create_topics(&meta, &reqs);
            let result = if validate_only {
                plans
            } else {
                commit_topics(raft, plans).await
            };
            let _ = reply.send(result);
        }
        Request::DeleteTopics { names, reply } => {
            let plans = state::plan_delete_topics(&meta, &names);
            let _ = reply.send(commit_deletes(raft, &names, plans).await);
        }
        Request::CreatePartitions {
            topic,
            new_total,
            validate_only,
            reply,
        } => {
            let result = match state::plan_create_partitions(&meta, &topic, new_total) {
                Ok(cmd) if !validate_only => write(raft, cmd).await.and_then(single_outcome),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }
        Request::AlterTopicConfigs {
            topic,
            changes,
            validate_only,
            reply,
        } => {
            let result = match state::plan_alter_topic_configs(&meta, &topic, changes) {
                Ok(cmd) if !validate_only => write(raft, cmd).await.and_then(single_outcome),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }
        Request::AllocateProducerIds { count, reply } => {
            let result = state::plan_allocate_producer_ids(&meta, count);
            let result = match result {
                Ok(cmd @ Command::AllocateProducerIds { start, .. }) => {
                    write(raft, cmd).await.and_then(single_outcome).map(|()| start)
                }
                Ok(_) => Err(unavailable("controller", "unexpected plan")),
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }
        Request::Snapshot { reply } => {
            let _ = reply.send(snapshot_and_purge(raft).await);
        }
    }
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

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, ControllerError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .await
            .map_err(|_| ControllerError::Unavailable("the controller is shut down".into()))?;
        rx.await.map_err(|_| {
            ControllerError::Unavailable("the controller stopped before answering".into())
        })
    }

    /// Validates each entry (name, partitions >= 1, 1 <= replication factor <=
    /// brokers, configs) and, unless `validate_only`, commits the valid ones
    /// through Raft. Results are in input order; a name given twice fails
    /// both entries with `InvalidConfig` (Kafka: INVALID_REQUEST). Returns
    /// after the new metadata is published to every subscriber.
    pub async fn create_topics(
        &self,
        reqs: Vec<CreateTopicRequest>,
        validate_only: bool,
    ) -> Vec<Result<TopicMeta, ControllerError>> {
        let count = reqs.len();
        self.call(|reply| Request::CreateTopics {
            reqs,
            validate_only,
            reply,
        })
        .await
        .unwrap_or_else(|e| vec![Err(e); count])
    }

    /// Deletes topics by name; results in input order carry the deleted topic's id.
    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<Uuid, ControllerError>> {
        let count = names.len();
        self.call(|reply| Request::DeleteTopics { names, reply })
            .await
            .unwrap_or_else(|e| vec![Err(e); count])
    }

    /// Grows a topic to `new_total` partitions (must be more than it has:
    /// else `InvalidPartitions`), placing the new ones like a create.
    pub async fn create_partitions(
        &self,
        topic: String,
        new_total: i32,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        self.call(|reply| Request::CreatePartitions {
            topic,
            new_total,
            validate_only,
            reply,
        })
        .await?
    }

    /// Sets (Some) or deletes (None) topic config overrides, validated.
    pub async fn alter_topic_configs(
        &self,
        topic: String,
        changes: BTreeMap<String, Option<String>>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        self.call(|reply| Request::AlterTopicConfigs {
            topic,
            changes,
            validate_only,
            reply,
        })
        .await?
    }

    /// Allocates `count` producer ids unique in the cluster and across
    /// restarts (a Raft-committed counter); returns the first of the block.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64, ControllerError> {
        self.call(|reply| Request::AllocateProducerIds { count, reply })
            .await?
    }

    /// Snapshots the state machine now and purges the log up to it.
    pub async fn snapshot(&self) -> Result<(), ControllerError> {
        self.call(|reply| Request::Snapshot { reply }).await?
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
