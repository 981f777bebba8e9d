//! One client connection: read frames, dispatch them, write the responses
//! in request order.
//!
//! Frames are a 4-byte big-endian length then header and body. A length
//! below the smallest header or above `socket.request.max.bytes`, an unknown
//! API key, an unsupported version (except ApiVersions, which answers per
//! KIP-511) or a body that does not decode closes the connection, as Kafka
//! does. None of these touch any other connection or any log.
//!
//! Requests are handled one at a time, in order, like Kafka. The one
//! exception is the wait at the end of a produce: its appends are done in
//! order, but waiting for the disk is handed to the writer task as a
//! deferred response, so the next request is read and appended meanwhile.
//! That lets one producer's pipelined acks=all requests share fdatasyncs.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;

use crate::protocol::handlers::{self, Dispatch};
use crate::protocol::zero_copy::write_segments;
use crate::shard::ShardState;

/// api_key(2) + api_version(2) + correlation_id(4).
const HEADER_MIN_BYTES: usize = 8;
/// Responses a connection may have queued (deferred or ready) before it
/// stops reading: clients pipeline up to 5, this leaves room.
const PIPELINE_DEPTH_MAX: usize = 16;

#[derive(Debug)]
enum CloseReason {
    Eof,
    Io(std::io::Error),
    BadLength(i32),
    Shutdown,
    Protocol(String),
    WriterGone,
}

/// Serves one client connection that came in on the listener named `listener`.
pub async fn serve(shard: Rc<ShardState>, stream: TcpStream, listener: Rc<str>) {
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr.map(|a| a.to_string()).unwrap_or_default();
    let client_host = peer_addr.map(|a| format!("/{}", a.ip())).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    crate::metrics::with_shard(|m| {
        m.connections_open.set(m.connections_open.get() + 1);
        m.connections_accepted.set(m.connections_accepted.get() + 1);
    });
    let (mut reader, writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Dispatch>(PIPELINE_DEPTH_MAX);
    let writer_task = glommio::spawn_local(write_responses(writer, rx));
    // One shutdown wait for the connection's life, not one registered per frame.
    let mut shutdown = std::pin::pin!(shard.shutdown.wait());
    let reason = loop {
        let frame = {
            let read = read_frame(&mut reader, shard.config.socket_request_max_bytes);
            let stop = async {
                shutdown.as_mut().await;
                Err(CloseReason::Shutdown)
            };
            match futures_lite::future::or(read, stop).await {
                Ok(f) => f,
                Err(r) => break r,
            }
        };
        let head = (frame.len() >= 8).then(|| {
            let b = &frame[..8];
            (i16::from_be_bytes([b[0], b[1]]), i16::from_be_bytes([b[2], b[3]]), i32::from_be_bytes([b[4], b[5], b[6], b[7]]))
        });
        tracing::trace!(%peer, ?head, "request (api key, version, correlation id)");
        let started = std::time::Instant::now();
        let dispatched = handlers::dispatch(&shard, frame, &client_host, &listener).await;
        tracing::trace!(%peer, ?head, "request handled");
        let api_key = head.map(|h| h.0).unwrap_or(-1);
        let dispatched = match dispatched {
            // Timed when the disk and the ISR answered, not when the wait began.
            Dispatch::Deferred(fut) => Dispatch::Deferred(Box::pin(async move {
                let d = fut.await;
                crate::metrics::with_shard(|m| m.record_request(api_key, started.elapsed()));
                d
            })),
            Dispatch::Close(why) => {
                crate::metrics::with_shard(|m| m.bad_requests.set(m.bad_requests.get() + 1));
                break CloseReason::Protocol(why);
            }
            other => {
                crate::metrics::with_shard(|m| m.record_request(api_key, started.elapsed()));
                other
            }
        };
        match dispatched {
            Dispatch::NoResponse => {}
            Dispatch::Close(why) => break CloseReason::Protocol(why),
            response => {
                if tx.send(response).await.is_err() {
                    break CloseReason::WriterGone;
                }
            }
        }
    };
    // Responses already owed are still sent (in-flight requests finish), then the socket closes.
    drop(tx);
    let (writer, write_error) = writer_task.await;
    match reason {
        CloseReason::Eof | CloseReason::Shutdown | CloseReason::WriterGone => {}
        CloseReason::Io(e) => tracing::debug!(%peer, error = %e, "connection closed"),
        CloseReason::BadLength(len) => {
            crate::metrics::with_shard(|m| m.bad_requests.set(m.bad_requests.get() + 1));
            tracing::warn!(%peer, len, "closing connection: bad frame length")
        }
        CloseReason::Protocol(why) => tracing::warn!(%peer, %why, "closing connection"),
    }
    if let Some(e) = write_error {
        tracing::debug!(%peer, error = %e, "writing a response failed");
    }
    let mut writer = writer;
    let _ = writer.close().await;
    drop(reader);
    crate::metrics::with_shard(|m| m.connections_open.set(m.connections_open.get() - 1));
}

/// Writes responses in the order they were queued, waiting for deferred ones.
async fn write_responses(
    mut writer: WriteHalf<TcpStream>,
    rx: local_channel::LocalReceiver<Dispatch>,
) -> (WriteHalf<TcpStream>, Option<std::io::Error>) {
    while let Some(mut item) = rx.recv().await {
        if let Dispatch::Deferred(fut) = item {
            item = fut.await;
        }
        let written = match item {
            Dispatch::Respond(bytes) => writer.write_all(&bytes).await,
            Dispatch::RespondSegments(segments) => write_segments(&mut writer, segments).await,
            // A deferred response that turned out to be a close: stop writing.
            Dispatch::Close(_) | Dispatch::Deferred(_) => return (writer, None),
            Dispatch::NoResponse => Ok(()),
        };
        if let Err(e) = written {
            return (writer, Some(e));
        }
    }
    (writer, None)
}

async fn read_frame(stream: &mut ReadHalf<TcpStream>, max_bytes: u64) -> Result<Bytes, CloseReason> {
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
