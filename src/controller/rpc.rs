//! The controller's wire protocol between nodes: framed TCP on
//! `controller_addr`, one request and one response at a time per connection.
//!
//! A frame is `[version: u8][length: u32 big-endian][JSON body]`; the body of
//! a request is an `Envelope` (sender's node id and cluster id, then the
//! call), of a response a `Reply`. Frames over `FRAME_BYTES_MAX` and unknown
//! versions close the connection. Every call a client makes has a timeout.
//!
//! Calls: openraft's three RPCs (AppendEntries, Vote, InstallSnapshot),
//! `Forward` (a controller write sent to the active controller by a node that
//! is not it, as Kafka's brokers forward to the KRaft controller) and `Hello`
//! (a peer's cluster id and the leader it knows, checked at start).
//!
//! A node that knows its cluster id refuses calls from a node of another
//! cluster (`Reply::ClusterIdMismatch`) before they reach Raft, so a data dir
//! of one cluster can never vote in or append to another.
//!
//! Runs on the controller thread's tokio runtime only.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ops::{Op, OpResult};
use super::types::{RaftNodeId, TypeConfig};
use crate::metadata::NodeId;

/// The protocol version byte of every frame.
pub const RPC_VERSION: u8 = 1;
/// The largest frame accepted (a snapshot chunk or a batch of log entries).
pub const FRAME_BYTES_MAX: u32 = 64 << 20;
/// How long a connection attempt to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Connections a controller serves at once; more wait in the listen backlog.
pub const SERVER_CONNECTIONS_MAX: usize = 256;

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    /// The sender's cluster id, empty while it has none.
    pub cluster_id: String,
    pub call: Call,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Call {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<RaftNodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Forward(Op),
    Hello,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    AppendEntries(Result<AppendEntriesResponse<RaftNodeId>, RaftError<RaftNodeId>>),
    Vote(Result<VoteResponse<RaftNodeId>, RaftError<RaftNodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<RaftNodeId>, RaftError<RaftNodeId, InstallSnapshotError>>,
    ),
    Forward(OpResult),
    Hello {
        cluster_id: String,
        leader: Option<NodeId>,
    },
    /// The receiver belongs to another cluster; nothing was done.
    ClusterIdMismatch { ours: String },
}

#[derive(Debug)]
pub enum RpcError {
    Io(std::io::Error),
    Timeout,
    /// The peer sent something that is not a frame of this protocol.
    Protocol(String),
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Io(e) => write!(f, "{e}"),
            RpcError::Timeout => write!(f, "timed out"),
            RpcError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for RpcError {}

pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, body: &T) -> Result<(), RpcError> {
    let bytes = serde_json::to_vec(body).map_err(|e| RpcError::Protocol(e.to_string()))?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&n| n <= FRAME_BYTES_MAX)
        .ok_or_else(|| RpcError::Protocol(format!("frame of {} bytes is too large", bytes.len())))?;
    let mut head = [0u8; 5];
    head[0] = RPC_VERSION;
    head[1..].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&head).await.map_err(RpcError::Io)?;
    stream.write_all(&bytes).await.map_err(RpcError::Io)?;
    Ok(())
}

/// Reads one frame; `Ok(None)` when the peer closed the connection between frames.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(
    stream: &mut TcpStream,
) -> Result<Option<T>, RpcError> {
    let mut head = [0u8; 5];
    match stream.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(RpcError::Io(e)),
    }
    if head[0] != RPC_VERSION {
        return Err(RpcError::Protocol(format!(
            "frame version {} (this node speaks {RPC_VERSION})",
            head[0]
        )));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len > FRAME_BYTES_MAX {
        return Err(RpcError::Protocol(format!(
            "frame of {len} bytes is over {FRAME_BYTES_MAX}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await.map_err(RpcError::Io)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| RpcError::Protocol(e.to_string()))
}

/// One connection to a peer controller, opened on first use and reopened
/// after any error (a half-done exchange leaves the stream unusable).
pub struct Connection {
    addr: String,
    stream: Option<TcpStream>,
}

impl Connection {
    pub fn new(addr: String) -> Connection {
        Connection { addr, stream: None }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `envelope` and waits for the reply, all within `timeout`.
    pub async fn call(&mut self, envelope: &Envelope, timeout: Duration) -> Result<Reply, RpcError> {
        let result = tokio::time::timeout(timeout, self.exchange(envelope)).await;
        match result {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(RpcError::Timeout)
            }
        }
    }

    async fn exchange(&mut self, envelope: &Envelope) -> Result<Reply, RpcError> {
        if self.stream.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| RpcError::Timeout)?
                .map_err(RpcError::Io)?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(RpcError::Protocol("no connection".into()));
        };
        write_frame(stream, envelope).await?;
        match read_frame::<Reply>(stream).await? {
            Some(reply) => Ok(reply),
            None => Err(RpcError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "peer closed the connection",
            ))),
        }
    }
}
