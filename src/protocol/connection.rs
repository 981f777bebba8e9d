//! One client connection: read a frame, dispatch it, write the response.
//!
//! Frames are a 4-byte big-endian length then header and body. A length
//! below the smallest header or above `socket.request.max.bytes`, an unknown
//! API key, an unsupported version (except ApiVersions, which answers per
//! KIP-511) or a body that does not decode closes the connection, as Kafka
//! does. None of these touch any other connection or any log.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::protocol::handlers::{self, Dispatch};
use crate::shard::ShardState;

/// api_key(2) + api_version(2) + correlation_id(4).
const HEADER_MIN_BYTES: usize = 8;

#[derive(Debug)]
enum CloseReason {
    Eof,
    Io(std::io::Error),
    BadLength(i32),
    Shutdown,
    Protocol(String),
}

pub async fn serve(shard: Rc<ShardState>, mut stream: TcpStream) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let reason = loop {
        let frame = {
            let read = read_frame(&mut stream, shard.config.socket_request_max_bytes);
            let stop = async {
                shard.shutdown.wait().await;
                Err(CloseReason::Shutdown)
            };
            match futures_lite::future::or(read, stop).await {
                Ok(f) => f,
                Err(r) => break r,
            }
        };
        match handlers::dispatch(&shard, frame).await {
            Dispatch::Respond(bytes) => {
                if let Err(e) = stream.write_all(&bytes).await {
                    break CloseReason::Io(e);
                }
            }
            Dispatch::RespondSegments(segments) => {
                if let Err(e) = crate::protocol::zero_copy::write_segments(&mut stream, segments).await {
                    break CloseReason::Io(e);
                }
            }
            Dispatch::NoResponse => {}
            Dispatch::Close(why) => break CloseReason::Protocol(why),
        }
    };
    match reason {
        CloseReason::Eof | CloseReason::Shutdown => {}
        CloseReason::Io(e) => tracing::debug!(%peer, error = %e, "connection closed"),
        CloseReason::BadLength(len) => tracing::warn!(%peer, len, "closing connection: bad frame length"),
        CloseReason::Protocol(why) => tracing::warn!(%peer, %why, "closing connection"),
    }
    let _ = stream.close().await;
}

async fn read_frame(stream: &mut TcpStream, max_bytes: u64) -> Result<Bytes, CloseReason> {
    let mut len_buf = [0u8; 4];
    match stream.read_exact(&mut len_buf).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(CloseReason::Eof),
        Err(e) => return Err(CloseReason::Io(e)),
    }
    let len = i32::from_be_bytes(len_buf);
    if len < HEADER_MIN_BYTES as i32 || len as u64 > max_bytes {
        return Err(CloseReason::BadLength(len));
    }
    let mut buf = BytesMut::zeroed(len as usize);
    stream.read_exact(&mut buf).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CloseReason::Protocol(format!("frame of {len} bytes cut short")),
        _ => CloseReason::Io(e),
    })?;
    Ok(buf.freeze())
}
