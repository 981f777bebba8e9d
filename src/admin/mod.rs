//! Admin HTTP: `GET /health` (200 once every shard serves Kafka requests,
//! 503 before and during shutdown).
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
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("admin-http".into()).spawn(move || {
        while !shutdown.is_triggered() {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = serve(stream, &status, &shutdown) {
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

fn serve(mut stream: TcpStream, status: &BrokerStatus, shutdown: &Shutdown) -> std::io::Result<()> {
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
    let (code, body) = match (method, path) {
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
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
