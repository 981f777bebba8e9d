//! Starting the shards: one pinned glommio executor per allowed CPU.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::rc::Rc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};

/// Threads of each shard's blocking pool (`spawn_blocking`: small durable
/// files, fsyncs). Several, so that the fsyncs of many partitions closing or
/// checkpointing at once overlap and the filesystem commits them together;
/// one thread made a clean stop of 50,000 partitions take minutes.
const BLOCKING_THREADS_PER_SHARD: usize = 4;

use crate::mesh::{serve_inbox, Job, Mesh};
use crate::{Shutdown, ShardId};

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub shard_count: usize,
    /// Per shard, see `io_memory_for_limit`.
    pub io_memory_bytes: usize,
    /// Spin this long before parking an idle shard: lower cross-shard latency for CPU.
    pub spin_before_park: Option<Duration>,
    /// Bound of each shard's inbox of cross-shard calls.
    pub inbox_capacity: usize,
    /// Each shard on its own core (`Placement::Fixed`). Unpinned, the
    /// kernel may move a shard off a core that other processes keep busy;
    /// pinned, a shard waits for that core (the 130-250 ms acks=all tails
    /// measured while builds shared the machine).
    pub pinned: bool,
    /// Thread name prefix.
    pub name: String,
}

#[derive(Debug)]
pub enum RuntimeError {
    TooManyShards { requested: usize, cpus: usize },
    NoShards,
    Spawn(std::io::Error),
    ShardPanicked(ShardId),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::TooManyShards { requested, cpus } => write!(
                f,
                "{requested} shards requested but this process may run on only {cpus} CPUs (one shard per core)"
            ),
            RuntimeError::NoShards => write!(f, "at least one shard is needed"),
            RuntimeError::Spawn(e) => write!(f, "could not start a shard executor: {e}"),
            RuntimeError::ShardPanicked(id) => write!(f, "shard {id} panicked"),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// What a shard's main function receives: its id, the mesh, and shutdown.
pub struct Shard<S: 'static> {
    pub id: ShardId,
    pub mesh: Mesh<S>,
    pub shutdown: Shutdown,
    inbox: Option<async_channel::Receiver<Job<S>>>,
}

impl<S: 'static> Shard<S> {
    /// Registers this shard's state and starts answering cross-shard calls
    /// with it. Call once, as soon as the state exists.
    pub fn serve_calls(&mut self, state: Rc<S>) {
        let inbox = self.inbox.take().expect("serve_calls called twice");
        self.mesh.set_local(state.clone());
        glommio::spawn_local(serve_inbox(inbox, state)).detach();
    }
}

/// CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect(),
        Err(_) => (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect(),
    }
}

/// Fails if a socket already LISTENs on `addr` (or on the wildcard address
/// with its port). Read from /proc/net/tcp{,6}: a trial bind would also trip
/// over the orphaned FIN_WAIT sockets a killed broker leaves behind for up to
/// a minute, which glommio's SO_REUSEPORT bind does not mind.
pub fn check_address_free(addr: SocketAddr) -> std::io::Result<()> {
    let tables = ["/proc/net/tcp", "/proc/net/tcp6"];
    let mut read_any = false;
    for table in tables {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        read_any = true;
        for line in text.lines().skip(1) {
            if let Some(listener) = parse_listener(line) {
                let same_port = listener.port() == addr.port();
                let overlaps = listener.ip() == addr.ip() || listener.ip().is_unspecified() || addr.ip().is_unspecified();
                if same_port && overlaps {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        format!("another process is listening on {listener}"),
                    ));
                }
            }
        }
    }
    if !read_any {
        // No /proc: fall back to a trial bind.
        StdTcpListener::bind(addr)?;
    }
    Ok(())
}

/// The local address of a LISTEN row of /proc/net/tcp or tcp6.
fn parse_listener(line: &str) -> Option<SocketAddr> {
    const TCP_LISTEN: &str = "0A";
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    if state != TCP_LISTEN {
        return None;
    }
    let (ip_hex, port_hex) = local.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let ip: std::net::IpAddr = match ip_hex.len() {
        8 => std::net::Ipv4Addr::from(u32::from_str_radix(ip_hex, 16).ok()?.swap_bytes()).into(),
        32 => {
            // Four 32-bit words, each in host (little-endian) order.
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let word = u32::from_str_radix(&ip_hex[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
            let v6 = std::net::Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map(Into::into).unwrap_or(v6.into())
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Starts `config.shard_count` shards, each running `main(shard)` on its own
/// pinned executor, and blocks until all of them return.
pub fn start<S, M, F>(config: RuntimeConfig, shutdown: Shutdown, main: M) -> Result<(), RuntimeError>
where
    S: 'static,
    M: Fn(Shard<S>) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = ()> + 'static,
{
    if config.shard_count == 0 {
        return Err(RuntimeError::NoShards);
    }
    let cpus = allowed_cpus();
    if config.shard_count > cpus.len() {
        return Err(RuntimeError::TooManyShards { requested: config.shard_count, cpus: cpus.len() });
    }
    let mut senders = Vec::with_capacity(config.shard_count);
    let mut receivers = Vec::with_capacity(config.shard_count);
    for _ in 0..config.shard_count {
        let (tx, rx) = async_channel::bounded::<Job<S>>(config.inbox_capacity);
        senders.push(tx);
        receivers.push(rx);
    }
    let mut handles = Vec::with_capacity(config.shard_count);
    for (id, inbox) in receivers.into_iter().enumerate() {
        let placement = if config.pinned { Placement::Fixed(cpus[id]) } else { Placement::Unbound };
        let mut builder = LocalExecutorBuilder::new(placement)
            .name(&format!("{}-{id}", config.name))
            .io_memory(config.io_memory_bytes)
            .blocking_thread_pool_placement(PoolPlacement::Unbound(BLOCKING_THREADS_PER_SHARD));
        if let Some(spin) = config.spin_before_park {
            builder = builder.spin_before_park(spin);
        }
        let senders = senders.clone();
        let shutdown = shutdown.clone();
        let main = main.clone();
        let handle = builder
            .spawn(move || async move {
                let shard = Shard { id, mesh: Mesh::new(id, senders), shutdown, inbox: Some(inbox) };
                main(shard).await;
            })
            .map_err(|e| RuntimeError::Spawn(std::io::Error::other(e.to_string())))?;
        handles.push(handle);
    }
    drop(senders);
    let mut result = Ok(());
    for (id, handle) in handles.into_iter().enumerate() {
        if handle.join().is_err() {
            result = Err(RuntimeError::ShardPanicked(id));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Counter {
        id: ShardId,
    }

    /// Every shard can call every other shard (and itself) and gets the
    /// callee's answer computed with the callee's own state.
    #[test]
    fn every_shard_reaches_every_shard() {
        let shards = allowed_cpus().len().min(2);
        let (trigger, shutdown) = Shutdown::new();
        let done = Arc::new(AtomicUsize::new(0));
        let done2 = done.clone();
        let trigger = Arc::new(std::sync::Mutex::new(Some(trigger)));
        let config = RuntimeConfig {
            shard_count: shards,
            io_memory_bytes: 256 << 10,
            spin_before_park: None,
            inbox_capacity: 16,
            pinned: true,
            name: "test".into(),
        };
        start(config, shutdown, move |mut shard: Shard<Counter>| {
            let done = done2.clone();
            let trigger = trigger.clone();
            async move {
                shard.serve_calls(Rc::new(Counter { id: shard.id }));
                for target in 0..shard.mesh.shard_count() {
                    let got = shard.mesh.call(target, |s: Rc<Counter>| async move { s.id * 10 }).await;
                    assert_eq!(got, Ok(target * 10));
                }
                if done.fetch_add(1, Ordering::SeqCst) + 1 == shard.mesh.shard_count() {
                    if let Some(t) = trigger.lock().unwrap().take() {
                        t.trigger();
                    }
                }
                shard.shutdown.wait().await;
            }
        })
        .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), shards);
    }

    /// A listening socket is seen as taken; a closed one is free again.
    #[test]
    fn address_check_sees_listeners() {
        let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(check_address_free(addr).is_err());
        drop(l);
        assert!(check_address_free(addr).is_ok());
        assert_eq!(
            parse_listener("   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1"),
            Some("127.0.0.1:9092".parse().unwrap())
        );
    }

    /// Asking for more shards than CPUs is refused with a clear error.
    #[test]
    fn more_shards_than_cpus_is_refused() {
        let (_t, shutdown) = Shutdown::new();
        let config = RuntimeConfig {
            shard_count: allowed_cpus().len() + 1,
            io_memory_bytes: 256 << 10,
            spin_before_park: None,
            inbox_capacity: 4,
            pinned: true,
            name: "x".into(),
        };
        let r = start(config, shutdown, |_s: Shard<()>| async {});
        assert!(matches!(r, Err(RuntimeError::TooManyShards { .. })));
    }
}
