//! Admin HTTP: `GET /health` (200 once every shard serves Kafka requests,
//! 503 before and during shutdown) and `GET /v1/cluster` (JSON: cluster id,
//! active controller, brokers, and every partition's leader, replicas with
//! the (broker, shard) each is placed on, and ISR, from this node's metadata)
//! and `GET /v1/cluster/health_overview` (JSON, Redpanda's shape: healthy
//! when a controller is known, no broker is down, and every partition has a
//! live leader and a full ISR; what rolling restarts wait for).
//!
//! `GET /metrics` is the Prometheus exposition (see `crate::metrics`). The
//! rest of the JSON API under `/v1/` is in [`api`], the web console at `/`
//! and `/console/` in [`console`].
//!
//! Runs on its own plain threads, away from the shards: it must answer even
//! when the shards are busy, and it reads only atomics they set, the
//! metadata the controller publishes, scrapes the shards answer over bounded
//! channels, and the broker's own Kafka listener. One accept thread hands
//! each connection to a short-lived thread, at most
//! [`CONNECTIONS_IN_FLIGHT_MAX`] at once, so a slow console page never
//! delays `/health`.

pub mod api;
pub mod console;
pub mod http;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shards::Shutdown;

use http::{ReadError, Request, Response};

/// Counters the shards update for the admin thread.
#[derive(Default)]
pub struct BrokerStatus {
    pub shards_serving: AtomicUsize,
    pub shard_count: AtomicUsize,
}

impl BrokerStatus {
    pub fn ready(&self) -> bool {
        let n = self.shard_count.load(Ordering::Acquire);
        n > 0 && self.shards_serving.load(Ordering::Acquire) == n
    }
}

/// Admin connections served at once; more are answered 503 at once.
pub const CONNECTIONS_IN_FLIGHT_MAX: usize = 16;

/// What every admin request may read. Shared by the connection threads.
pub struct Admin {
    pub status: Arc<BrokerStatus>,
    pub controller: crate::controller::ControllerHandle,
    pub scraper: crate::metrics::scrape::Scraper,
    pub shutdown: Shutdown,
    /// `host:port` of this broker's own Kafka listener, reachable from here.
    pub kafka_bootstrap: String,
    /// `admin_api_writes_enabled`.
    pub writes_enabled: bool,
    pub node_id: i32,
    /// This node's settings as `/v1/config` shows them.
    pub settings: Vec<(&'static str, Option<String>)>,
}

impl Admin {
    pub fn new(
        config: &crate::config::Config,
        status: Arc<BrokerStatus>,
        controller: crate::controller::ControllerHandle,
        scraper: crate::metrics::scrape::Scraper,
        shutdown: Shutdown,
    ) -> Admin {
        let bind = config.listeners.first().map_or(config.kafka_addr, |l| l.bind);
        Admin {
            status,
            controller,
            scraper,
            shutdown,
            kafka_bootstrap: reachable(bind).to_string(),
            writes_enabled: config.admin_api_writes_enabled,
            node_id: config.node_id,
            settings: config.values(),
        }
    }
}

/// A wildcard bind address as the loopback address of its family.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        SocketAddr::V6(a) if a.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port())),
        other => other,
    }
}

pub fn start(addr: SocketAddr, admin: Admin) -> std::io::Result<std::thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let admin = Arc::new(admin);
    let in_flight = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("admin-http".into()).spawn(move || {
        while !admin.shutdown.is_triggered() {
            match listener.accept() {
                Ok((stream, _)) => dispatch(stream, &admin, &in_flight),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })
}

/// Serves `stream` on its own thread, or answers 503 when too many are in flight.
fn dispatch(mut stream: TcpStream, admin: &Arc<Admin>, in_flight: &Arc<AtomicUsize>) {
    if in_flight.fetch_add(1, Ordering::AcqRel) >= CONNECTIONS_IN_FLIGHT_MAX {
        in_flight.fetch_sub(1, Ordering::AcqRel);
        let _ = stream.set_nonblocking(false);
        let _ = http::write_response(&mut stream, &Response::text(503, "too many admin requests in flight\n"));
        return;
    }
    let (admin, in_flight_done) = (admin.clone(), in_flight.clone());
    let spawned = std::thread::Builder::new().name("admin-conn".into()).spawn(move || {
        if let Err(e) = serve(stream, &admin) {
            tracing::debug!(error = %e, "admin request failed");
        }
        in_flight_done.fetch_sub(1, Ordering::AcqRel);
    });
    if let Err(e) = spawned {
        in_flight.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!(error = %e, "admin connection thread did not start");
    }
}

fn serve(mut stream: TcpStream, admin: &Admin) -> std::io::Result<()> {
    let response = match http::read_request(&mut stream) {
        Ok(req) => respond(admin, &req),
        Err(ReadError::Io(e)) => return Err(e),
        Err(ReadError::Malformed(why)) => Response::text(400, &format!("bad request: {why}\n")),
        Err(ReadError::BodyTooLarge) => Response::json_error(413, "request body too large"),
    };
    http::write_response(&mut stream, &response)?;
    if response.shutdown_after {
        start_controlled_shutdown();
    }
    Ok(())
}

/// What SIGTERM does: the signal thread (which holds the shutdown trigger)
/// takes it and starts the controlled shutdown.
fn start_controlled_shutdown() {
    tracing::info!("controlled shutdown requested over the admin API");
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM) {
        tracing::error!(error = %e, "could not signal this process for a controlled shutdown");
    }
}

/// Routes one request. A panic in a handler becomes a 500, never a dead thread.
fn respond(admin: &Admin, req: &Request) -> Response {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(admin, req))) {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(path = %req.path, "admin request handler panicked");
            Response::json_error(500, "internal error")
        }
    }
}

fn route(admin: &Admin, req: &Request) -> Response {
    let md = || admin.controller.current();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/cluster") => Response::new(200, "application/json", cluster_json(&md())),
        ("GET", "/v1/cluster/health_overview") => Response::new(200, "application/json", health_overview_json(&md())),
        ("GET", "/metrics") => Response::new(200, "text/plain; version=0.0.4; charset=utf-8", admin.scraper.scrape(&md())),
        ("GET", "/health") | ("GET", "/v1/status/ready") => {
            if admin.status.ready() && !admin.shutdown.is_triggered() {
                Response::text(200, "ok\n")
            } else {
                Response::text(503, "starting or stopping\n")
            }
        }
        _ => {
            if let Some(r) = api::route(admin, req) {
                return r;
            }
            if let Some(r) = console::route(admin, req) {
                return r;
            }
            if req.method == "GET" {
                Response::text(404, "not found\n")
            } else {
                Response::text(405, "method not allowed\n")
            }
        }
    }
}

/// `/v1/cluster`: the metadata as this node has applied it.
fn cluster_json(md: &crate::metadata::ClusterMetadata) -> String {
    use serde_json::json;
    let brokers: Vec<_> = md
        .brokers
        .values()
        .map(|b| {
            json!({
                "node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
                "shard_count": b.shard_count, "fenced": b.fenced,
            })
        })
        .collect();
    let topics: Vec<_> = md
        .topics
        .values()
        .map(|t| {
            let partitions: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    json!({
                        "partition": p.partition,
                        "leader": if md.live_broker(p.leader.node_id).is_some() { p.leader.node_id } else { -1 },
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas.iter().map(|r| json!({"node_id": r.node_id, "shard": r.shard})).collect::<Vec<_>>(),
                        "isr": p.isr,
                    })
                })
                .collect();
            json!({"name": t.name, "id": t.id.to_string(), "internal": t.internal, "partitions": partitions})
        })
        .collect();
    let doc = json!({
        "cluster_id": md.cluster_id,
        "controller_id": md.controller_id,
        "version": md.version,
        "brokers": brokers,
        "topics": topics,
    });
    format!("{doc}\n")
}

/// `/v1/cluster/health_overview`: what an operator (or a rolling restart)
/// checks before touching the next node. From this node's applied metadata,
/// so a node that lags the controller may report an older picture.
fn health_overview_json(md: &crate::metadata::ClusterMetadata) -> String {
    use serde_json::json;
    let all_nodes: Vec<i32> = md.brokers.keys().copied().collect();
    let nodes_down: Vec<i32> =
        md.brokers.values().filter(|b| b.fenced).map(|b| b.node_id).collect();
    let mut leaderless = Vec::new();
    let mut under_replicated = Vec::new();
    for t in md.topics.values() {
        for p in &t.partitions {
            let name = format!("{}/{}", t.name, p.partition);
            if md.live_broker(p.leader.node_id).is_none() {
                leaderless.push(name);
            } else if p.isr.len() < p.replicas.len() {
                under_replicated.push(name);
            }
        }
    }
    let controller_known = md.controller_id >= 0;
    let is_healthy = controller_known
        && !all_nodes.is_empty()
        && nodes_down.is_empty()
        && leaderless.is_empty()
        && under_replicated.is_empty();
    let doc = json!({
        "is_healthy": is_healthy,
        "controller_id": md.controller_id,
        "cluster_id": md.cluster_id,
        "all_nodes": all_nodes,
        "nodes_down": nodes_down,
        "leaderless_count": leaderless.len(),
        "leaderless_partitions": leaderless,
        "under_replicated_count": under_replicated.len(),
        "under_replicated_partitions": under_replicated,
    });
    format!("{doc}\n")
}
