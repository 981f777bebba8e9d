//! A small Kafka client for broker-to-broker requests: transaction markers
//! (one connection per call) and the replica fetcher (`Connection`, kept).
//!
//! Runs on a shard (glommio). One connection per call: these requests are
//! rare (one per transaction end per remote broker), and a fresh connection
//! has no state to go stale when a broker restarts. Every call is bounded in
//! time and in response size.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The client id peers see in their logs.
const CLIENT_ID: &str = "fjord-broker";
/// The largest response accepted.
const RESPONSE_BYTES_MAX: usize = 64 << 20;

#[derive(Debug)]
pub enum InterBrokerError {
    Io(std::io::Error),
    Timeout,
    Protocol(String),
}

impl std::fmt::Display for InterBrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterBrokerError::Io(e) => write!(f, "{e}"),
            InterBrokerError::Timeout => write!(f, "timed out"),
            InterBrokerError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for InterBrokerError {}

/// Sends one request to `addr` ("host:port") and decodes its response, all within `timeout`.
pub async fn call<Req: Encodable, Resp: Decodable>(
    addr: &str,
    key: ApiKey,
    version: i16,
    request: &Req,
    timeout: Duration,
) -> Result<Resp, InterBrokerError> {
    let exchange = exchange(addr, key, version, request);
    let expired = async {
        glommio::timer::sleep(timeout).await;
        Err(InterBrokerError::Timeout)
    };
    futures_lite::future::or(exchange, expired).await
}

async fn exchange<Req: Encodable, Resp: Decodable>(
    addr: &str,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Result<Resp, InterBrokerError> {
    let mut conn = Connection::connect(addr).await?;
    conn.exchange(key, version, request).await
}

/// A long-lived connection to one broker (the replica fetcher's): one
/// request in flight at a time, correlation ids checked. Dropped and
/// reopened by the caller after any error.
pub struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    pub async fn connect(addr: &str) -> Result<Connection, InterBrokerError> {
        let stream = TcpStream::connect(addr).await.map_err(|e| InterBrokerError::Io(e.into()))?;
        let _ = stream.set_nodelay(true);
        Ok(Connection { stream, correlation_id: 0 })
    }

    /// Sends one request and decodes its response within `timeout`.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, InterBrokerError> {
        let expired = async {
            glommio::timer::sleep(timeout).await;
            Err(InterBrokerError::Timeout)
        };
        futures_lite::future::or(self.exchange(key, version, request), expired).await
    }

    async fn exchange<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, InterBrokerError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        header
            .encode(&mut frame, key.request_header_version(version))
            .map_err(|e| InterBrokerError::Protocol(e.to_string()))?;
        request.encode(&mut frame, version).map_err(|e| InterBrokerError::Protocol(e.to_string()))?;
        let len = (frame.len() - 4) as i32;
        frame[0..4].copy_from_slice(&len.to_be_bytes());
        let stream = &mut self.stream;
        stream.write_all(&frame).await.map_err(InterBrokerError::Io)?;
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.map_err(InterBrokerError::Io)?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| (4..=RESPONSE_BYTES_MAX).contains(&n))
            .ok_or_else(|| InterBrokerError::Protocol(format!("response length {len}")))?;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.map_err(InterBrokerError::Io)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| InterBrokerError::Protocol(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(InterBrokerError::Protocol(format!("correlation id {} in the answer", header.correlation_id)));
        }
        let response = Resp::decode(&mut body, version).map_err(|e| InterBrokerError::Protocol(e.to_string()))?;
        if body.has_remaining() {
            tracing::debug!(remaining = body.remaining(), api = ?key, "inter-broker response had trailing bytes");
        }
        Ok(response)
    }
}
