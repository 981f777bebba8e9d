//! Admin HTTP: `GET /health` (200 once every shard serves Kafka requests,
//! 503 before and during shutdown) and `GET /v1/cluster` (JSON: cluster id,
//! active controller, brokers, and every partition's leader, replicas with
//! the (broker, shard) each is placed on, and ISR, from this node's metadata)
//! and `GET /v1/cluster/health_overview` (JSON, Redpanda's shape: healthy
//! when a controller is known, no broker is down, and every partition has a
//! live leader and a full ISR; what rolling restarts wait for).
//!
//! `GET /metrics` is the Prometheus exposition (see `crate::metrics`).
//!
//! Runs on its own plain thread, away from the shards: it must answer even
//! when the shards are busy, and it reads only atomics they set.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shards::Shutdown;

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

/// Largest request head we read; anything longer is refused.
const REQUEST_HEAD_MAX_BYTES: usize = 8 * 1024;

pub fn start(
    addr: SocketAddr,
    status: Arc<BrokerStatus>,
    controller: crate::controller::ControllerHandle,
    scraper: crate::metrics::scrape::Scraper,
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("admin-http".into()).spawn(move || {
        while !shutdown.is_triggered() {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = serve(stream, &status, &controller, &scraper, &shutdown) {
                        tracing::debug!(error = %e, "admin request failed");
                    }
                }
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

fn serve(
    mut stream: TcpStream,
    status: &BrokerStatus,
    controller: &crate::controller::ControllerHandle,
    scraper: &crate::metrics::scrape::Scraper,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = vec![0u8; REQUEST_HEAD_MAX_BYTES];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut content_type = "text/plain";
    let (code, body) = match (method, path) {
        ("GET", "/v1/cluster") => {
            content_type = "application/json";
            (200, cluster_json(&controller.current()))
        }
        ("GET", "/v1/cluster/health_overview") => {
            content_type = "application/json";
            (200, health_overview_json(&controller.current()))
        }
        ("GET", "/metrics") => {
            content_type = "text/plain; version=0.0.4; charset=utf-8";
            (200, scraper.scrape(&controller.current()))
        }
        ("GET", "/health") | ("GET", "/v1/status/ready") => {
            if status.ready() && !shutdown.is_triggered() {
                (200, "ok\n".to_string())
            } else {
                (503, "starting or stopping\n".to_string())
            }
        }
        ("GET", _) => (404, "not found\n".to_string()),
        _ => (405, "method not allowed\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
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
