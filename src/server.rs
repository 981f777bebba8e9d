//! `fjord serve`: start everything in order, stop it in reverse.
//!
//! Order matters: signals are blocked before any thread exists (every thread
//! inherits the mask; one thread waits for them); the data dir is locked and
//! the ports checked before anything is written; the controller thread
//! (tokio) starts before the shard pool so it is not pinned to a shard's CPU.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use shards::{RuntimeConfig, Shard, Shutdown};

use crate::admin::BrokerStatus;
use crate::config::Config;
use crate::controller::{self, ControllerConfig, ControllerHandle};
use crate::metadata::BrokerMeta;
use crate::shard::ShardState;

/// How long shutdown waits for in-flight requests before closing logs anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start-up waits for a listening address to be released.
const ADDRESS_WAIT: Duration = Duration::from_secs(5);
/// Bound of each shard's inbox of cross-shard calls.
const MESH_INBOX_CAPACITY: usize = 1024;

#[derive(Debug)]
pub enum ServeError {
    DataDir(String),
    AddressInUse { setting: &'static str, addr: std::net::SocketAddr, reason: String },
    Controller(String),
    Runtime(String),
    Signals(std::io::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::DataDir(m) => write!(f, "{m}"),
            ServeError::AddressInUse { setting, addr, reason } => {
                write!(f, "cannot listen on {addr} ({setting}): {reason}; is another broker running?")
            }
            ServeError::Controller(m) => write!(f, "controller: {m}"),
            ServeError::Runtime(m) => write!(f, "{m}"),
            ServeError::Signals(e) => write!(f, "installing signal handling: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

pub fn serve(config: Config) -> Result<(), ServeError> {
    let (trigger, shutdown) = Shutdown::new();
    shards::install_signal_handler(trigger).map_err(ServeError::Signals)?;
    let _lock = lock_data_dir(&config)?;
    let mut addrs: Vec<(&'static str, std::net::SocketAddr)> = config.listeners.iter().map(|l| ("listeners", l.bind)).collect();
    addrs.push(("admin_addr", config.admin_addr));
    if let (Some(addr), false) = (config.controller_addr, config.controller_quorum_voters.is_empty()) {
        addrs.push(("controller_addr", addr));
    }
    if !config.role_broker {
        addrs.retain(|(s, _)| *s == "controller_addr" || *s == "admin_addr");
    }
    for (setting, addr) in addrs {
        wait_address_free(addr).map_err(|e| ServeError::AddressInUse { setting, addr, reason: e.to_string() })?;
    }
    let segment_files_per_shard = segment_file_budget(&config);
    let memlock = shards::memlock_limit_bytes();
    let io_memory = shards::io_memory_for_limit(memlock, config.shards);
    tracing::info!(
        shards = config.shards,
        io_memory_bytes = io_memory.io_memory_bytes,
        memlock_limit_bytes = ?memlock,
        "glommio io_memory per shard sized to fit the memlock limit (3 registrations per shard, 3/4 of the limit); raise the limit (systemd LimitMEMLOCK=infinity) for glommio's 10 MiB default"
    );
    if io_memory.below_minimum {
        tracing::warn!("memlock limit too small for registered buffers: I/O will be slower");
    }
    let broker = config.role_broker.then(|| BrokerMeta {
        node_id: config.node_id,
        host: config.advertised_kafka_host.clone(),
        port: config.advertised_kafka_port as i32,
        rack: config.broker_rack.clone(),
        shard_count: config.shards,
        listeners: config
            .listeners
            .iter()
            .map(|l| crate::metadata::ListenerEndpoint {
                name: l.name.clone(),
                host: l.advertised_host.clone(),
                port: l.advertised_port as i32,
            })
            .collect(),
        incarnation: uuid::Uuid::nil(),
        fenced: false,
    });
    let controller = controller::start(ControllerConfig {
        dir: config.data_dir.join("controller"),
        meta_properties: config.data_dir.join("meta.properties"),
        node_id: config.node_id,
        broker,
        voters: config.controller_quorum_voters.clone(),
        controller_addr: config.controller_addr,
        heartbeat_interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
        session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
        leader_rebalance_interval: config
            .auto_leader_rebalance_enable
            .then(|| Duration::from_secs(config.leader_imbalance_check_interval_seconds)),
        shutdown: shutdown.clone(),
    });
    let controller = match controller {
        Ok(c) => c,
        // SIGTERM while still waiting for the quorum: a clean stop, not a failure.
        Err(e) if shutdown.is_triggered() => {
            tracing::info!(reason = %e, "stopped before joining the cluster");
            return Ok(());
        }
        Err(e) => return Err(ServeError::Controller(e.to_string())),
    };
    if !config.role_broker {
        // process.roles=controller: a voter only, no Kafka listener or shards.
        tracing::info!(node_id = config.node_id, "controller-only node running (process.roles=controller)");
        while !shutdown.is_triggered() {
            std::thread::sleep(Duration::from_millis(50));
        }
        controller.shutdown();
        tracing::info!("fjord stopped");
        return Ok(());
    }
    let status = Arc::new(BrokerStatus::default());
    status.shard_count.store(config.shards, Ordering::Release);
    let (scraper, scrape_inboxes) = crate::metrics::scrape::Scraper::new(config.node_id, config.shards);
    let scrape_inboxes = Arc::new(scrape_inboxes);
    let admin_state = crate::admin::Admin::new(&config, status.clone(), controller.clone(), scraper, shutdown.clone());
    let admin = crate::admin::start(config.admin_addr, admin_state).map_err(|e| {
        ServeError::AddressInUse { setting: "admin_addr", addr: config.admin_addr, reason: e.to_string() }
    })?;
    let runtime = RuntimeConfig {
        shard_count: config.shards,
        io_memory_bytes: io_memory.io_memory_bytes,
        spin_before_park: None,
        pinned: !config.overprovisioned,
        inbox_capacity: MESH_INBOX_CAPACITY,
        name: "shard".into(),
    };
    tracing::info!(
        overprovisioned = config.overprovisioned,
        "{}",
        if config.overprovisioned {
            "shards are not pinned to cores (overprovisioned=true: the machine is shared); set overprovisioned=false on a host dedicated to the broker"
        } else {
            "each shard is pinned to its own core (overprovisioned=false)"
        }
    );
    tracing::info!(
        kafka = %config.kafka_addr,
        admin = %config.admin_addr,
        data_dir = %config.data_dir.display(),
        node_id = config.node_id,
        "starting fjord"
    );
    let shard_config = config.clone();
    let shard_controller = controller.clone();
    let shard_status = status.clone();
    let result = shards::start(runtime, shutdown.clone(), move |shard: Shard<ShardState>| {
        let scrapes = scrape_inboxes[shard.id].clone();
        shard_main(shard, shard_config.clone(), shard_controller.clone(), shard_status.clone(), segment_files_per_shard, scrapes)
    });
    controller.shutdown();
    let _ = admin.join();
    result.map_err(|e| ServeError::Runtime(e.to_string()))?;
    tracing::info!("fjord stopped");
    Ok(())
}

/// Raises the open-file soft limit to the hard one (as the JVM does for
/// Kafka) and returns each shard's budget of open segment files: the
/// setting, or half the limit (the rest is for connections, the controller
/// and short-lived files), split evenly over the shards.
fn segment_file_budget(config: &Config) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-file soft limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    let total = match config.segment_files_open_max {
        0 => (limit / 2).min(usize::MAX as u64) as usize,
        n => n,
    };
    let per_shard = (total / config.shards.max(1)).max(16);
    tracing::info!(open_file_limit = limit, segment_files_per_shard = per_shard, "segment files open on demand within this budget");
    per_shard
}

async fn shard_main(
    mut shard: Shard<ShardState>,
    config: Config,
    controller: ControllerHandle,
    status: Arc<BrokerStatus>,
    segment_files: usize,
    scrapes: async_channel::Receiver<crate::metrics::scrape::ScrapeRequest>,
) {
    crate::storage::open_files::set_limit(segment_files);
    crate::storage::cache_budget::set_shard_limit(config.batch_cache_bytes);
    let state = Rc::new(ShardState::new(shard.id, shard.mesh.clone(), config.clone(), controller, shard.shutdown.clone()));
    shard.serve_calls(state.clone());
    let failed = state.partitions.sync_with(&state.metadata()).await;
    if let Some((dir, e)) = failed.first() {
        // Kafka marks a log dir with unreadable logs offline and, when it is
        // the only one, refuses to start; Fjord has one data dir: stop here
        // with the file and the reason instead of serving without the log.
        tracing::error!(dir = %dir.display(), error = %e, "cannot open a partition log at start-up; stopping");
        eprintln!("fjord: cannot start: partition log {} cannot be opened: {e}", dir.display());
        std::process::exit(1);
    }
    glommio::spawn_local(state.clone().follow_metadata()).detach();
    glommio::spawn_local(crate::metrics::scrape::serve_scrapes(state.clone(), scrapes)).detach();
    glommio::spawn_local(crate::replication::isr_shrink_loop(state.clone())).detach();
    glommio::spawn_local(crate::coordinator::load_owned(state.clone())).detach();
    glommio::spawn_local(crate::txn::load_owned(state.clone())).detach();
    glommio::spawn_local(stall_detector(state.clone())).detach();
    {
        let state = state.clone();
        glommio::spawn_local(async move { state.partitions.retention_loop(&state.shutdown).await }).detach();
    }
    {
        // Compaction gets its own low-share task queue: it yields it every
        // work slice, so produce and fetch on this shard keep their latency.
        let state = state.clone();
        let queue = glommio::executor().create_task_queue(glommio::Shares::Static(100), glommio::Latency::NotImportant, "log-cleaner");
        match glommio::spawn_local_into(async move { state.partitions.cleaner_loop(&state.shutdown).await }, queue) {
            Ok(task) => drop(task.detach()),
            Err(e) => tracing::error!(shard = shard.id, error = %e, "cannot start the log cleaner"),
        };
    }
    let mut listeners = Vec::new();
    for l in &config.listeners {
        match TcpListener::bind(l.bind) {
            Ok(socket) => listeners.push((socket, Rc::<str>::from(l.name.as_str()))),
            Err(e) => {
                tracing::error!(shard = shard.id, listener = %l.name, addr = %l.bind, error = %e, "cannot listen");
                return;
            }
        }
    }
    status.shards_serving.fetch_add(1, Ordering::AcqRel);
    tracing::info!(shard = shard.id, partitions = state.partitions.count(), "shard serving");
    let open_connections = Rc::new(std::cell::Cell::new(0usize));
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(socket, name)| glommio::spawn_local(accept_loop(state.clone(), socket, name, open_connections.clone())))
        .collect();
    for a in accepting {
        a.await;
    }
    status.shards_serving.fetch_sub(1, Ordering::AcqRel);
    // Connections notice shutdown between requests; wait for in-flight ones.
    let started = Instant::now();
    while open_connections.get() > 0 && started.elapsed() < DRAIN_TIMEOUT {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    let closing = Instant::now();
    tracing::info!(shard = shard.id, partitions = state.partitions.count(), drained_ms = started.elapsed().as_millis() as u64, "closing logs");
    if let Err(e) = state.partitions.close_all().await {
        tracing::error!(shard = shard.id, error = %e, "closing logs failed");
    }
    tracing::info!(shard = shard.id, close_ms = closing.elapsed().as_millis() as u64, "shard stopped");
}

/// Accepts connections on one listener until shutdown (the listening socket
/// closes when this returns).
async fn accept_loop(state: Rc<ShardState>, listener: TcpListener, name: Rc<str>, open_connections: Rc<std::cell::Cell<usize>>) {
    loop {
        let accept = async { Some(listener.accept().await) };
        let stop = async {
            state.shutdown.wait().await;
            None
        };
        match futures_lite::future::or(accept, stop).await {
            None => return,
            Some(Ok(stream)) => {
                if open_connections.get() >= state.config.max_connections_per_shard {
                    tracing::warn!(shard = state.id, "connection limit reached; refusing a connection");
                    drop(stream);
                    continue;
                }
                open_connections.set(open_connections.get() + 1);
                let (state, open, name) = (state.clone(), open_connections.clone(), name.clone());
                glommio::spawn_local(async move {
                    crate::protocol::connection::serve(state, stream, name).await;
                    open.set(open.get() - 1);
                })
                .detach();
            }
            Some(Err(e)) => {
                tracing::warn!(shard = state.id, listener = %name, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A broker killed with -9 can leave its listening socket open for a moment
/// after the process is gone (io_uring releases pending requests' files from
/// a kernel work queue), so a restart waits briefly for the address before
/// deciding that another broker holds it.
fn wait_address_free(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let started = Instant::now();
    loop {
        match shards::check_address_free(addr) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && started.elapsed() < ADDRESS_WAIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// An exclusive, non-blocking flock on `<data_dir>/.lock`, held for the life
/// of the process: a second broker on the same data dir is refused.
fn lock_data_dir(config: &Config) -> Result<File, ServeError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| ServeError::DataDir(format!("cannot create data dir {}: {e}", dir.display())))?;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ServeError::DataDir(format!("cannot open {}: {e}", path.display())))?;
    #[allow(deprecated)]
    nix::fcntl::flock(file.as_raw_fd(), nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|e| {
        ServeError::DataDir(format!(
            "data dir {} is in use by another process (lock {} held: {e})",
            dir.display(),
            path.display()
        ))
    })?;
    Ok(file)
}

/// Warns when this shard's executor ran nothing else for a long stretch (a
/// task that did not yield, or a blocking call on the shard thread): a timer
/// that should fire every 10 ms firing much later says the shard stalled,
/// as Seastar's reactor stall detector does.
async fn stall_detector(state: Rc<ShardState>) {
    const PERIOD: std::time::Duration = std::time::Duration::from_millis(10);
    const REPORT_OVER: std::time::Duration = std::time::Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        let stop = async {
            state.shutdown.wait().await;
            true
        };
        let tick = async {
            glommio::timer::sleep(PERIOD).await;
            false
        };
        if futures_lite::future::or(stop, tick).await {
            return;
        }
        let late = started.elapsed().saturating_sub(PERIOD);
        if late > REPORT_OVER {
            crate::metrics::with_shard(|m| {
                m.stalls.set(m.stalls.get() + 1);
                m.stall_time.record(late);
            });
            tracing::warn!(shard = state.id, late_ms = late.as_millis() as u64, "shard stalled: its executor ran no timer for this long");
        }
    }
}
