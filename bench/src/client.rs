//! A minimal pipelined Kafka client on tokio, enough to drive load.
//!
//! Owns one TCP connection per `Connection`: requests are framed and written
//! under a writer lock (so the pending queue order equals wire order), and a
//! reader task matches each response to its request by correlation id (Kafka
//! answers in request order on a connection). At most `MAX_IN_FLIGHT`
//! requests are outstanding; `submit` waits for a slot, which is the
//! producer's back-pressure. Each response is stamped with the instant its
//! last byte was read, so latency is not inflated by whoever awaits it later.
//!
//! `Cluster` wraps the admin side: ApiVersions, Metadata, CreateTopics,
//! ListOffsets. Runs on the tokio runtime of the bench process; no globals.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest,
    ListOffsetsRequest, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::messages::{
    CreateTopicsResponse, FetchRequest, FetchResponse, ListOffsetsResponse, ProduceRequest,
    ProduceResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Requests outstanding per connection (Kafka clients default to 5).
pub const MAX_IN_FLIGHT: usize = 5;
/// Largest response frame accepted.
pub const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// How long admin calls wait for a response.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

const CLIENT_ID: &str = "fjord-bench";

/// Versions this client can speak, per API (all non-flexible except where
/// kafka-protocol encodes flexible versions for us).
pub const PRODUCE_VERSIONS: (i16, i16) = (3, 9);
pub const FETCH_VERSIONS: (i16, i16) = (4, 11);
pub const METADATA_VERSIONS: (i16, i16) = (1, 9);
pub const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 7);
pub const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 7);

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed with requests outstanding")]
    Closed,
    #[error("encode {api:?} v{version}: {message}")]
    Encode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("decode {api:?} v{version}: {message}")]
    Decode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("response frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
    #[error("correlation id mismatch: expected {expected}, got {got}")]
    Correlation { expected: i32, got: i32 },
    #[error("broker does not support {api:?} in our range {ours:?} (broker: {broker:?})")]
    Unsupported {
        api: ApiKey,
        ours: (i16, i16),
        broker: Option<(i16, i16)>,
    },
    #[error("{api:?} failed with error code {code}{}", context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Kafka {
        api: ApiKey,
        code: i16,
        context: Option<String>,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("metadata: {0}")]
    Metadata(String),
}

type Reply = Result<(Bytes, Instant), ClientError>;

struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<Reply>,
    _permit: OwnedSemaphorePermit,
}

struct Writer {
    stream: BufWriter<OwnedWriteHalf>,
    next_correlation_id: i32,
    scratch: BytesMut,
}

/// One pipelined connection to a broker.
pub struct Connection {
    addr: String,
    writer: tokio::sync::Mutex<Writer>,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    slots: Arc<Semaphore>,
    dead: Arc<AtomicBool>,
    versions: HashMap<i16, (i16, i16)>,
}

/// A response not yet received; await `wait` to get it decoded.
pub struct ResponseFuture<R> {
    rx: oneshot::Receiver<Reply>,
    api: ApiKey,
    version: i16,
    _marker: std::marker::PhantomData<R>,
}

impl<R: Decodable> ResponseFuture<R> {
    /// Waits for the response; returns it with the instant it arrived.
    pub async fn wait(self) -> Result<(R, Instant), ClientError> {
        let (mut frame, at) = self.rx.await.map_err(|_| ClientError::Closed)??;
        let header_version = self.api.response_header_version(self.version);
        ResponseHeader::decode(&mut frame, header_version).map_err(|e| ClientError::Decode {
            api: self.api,
            version: self.version,
            message: e.to_string(),
        })?;
        let body = R::decode(&mut frame, self.version).map_err(|e| ClientError::Decode {
            api: self.api,
            version: self.version,
            message: e.to_string(),
        })?;
        Ok((body, at))
    }
}

impl Connection {
    /// Connects and negotiates versions with ApiVersions v0.
    pub async fn connect(addr: &str) -> Result<Arc<Connection>, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let pending = Arc::new(Mutex::new(VecDeque::with_capacity(MAX_IN_FLIGHT)));
        let dead = Arc::new(AtomicBool::new(false));
        tokio::spawn(read_loop(read, pending.clone(), dead.clone()));
        let mut conn = Connection {
            addr: addr.to_string(),
            writer: tokio::sync::Mutex::new(Writer {
                stream: BufWriter::with_capacity(256 * 1024, write),
                next_correlation_id: 0,
                scratch: BytesMut::with_capacity(64 * 1024),
            }),
            pending,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            dead,
            versions: HashMap::new(),
        };
        let fut = conn.submit(&ApiVersionsRequest::default(), 0, true).await?;
        let (resp, _) = timeout(fut.wait()).await?;
        if resp.error_code != 0 {
            return Err(ClientError::Kafka {
                api: ApiKey::ApiVersions,
                code: resp.error_code,
                context: None,
            });
        }
        conn.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(Arc::new(conn))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Highest version both sides speak for `api`, within `ours`.
    pub fn pick_version(&self, api: ApiKey, ours: (i16, i16)) -> Result<i16, ClientError> {
        let broker = self.versions.get(&(api as i16)).copied();
        match broker {
            Some((min, max)) if max >= ours.0 && min <= ours.1 => Ok(max.min(ours.1)),
            _ => Err(ClientError::Unsupported { api, ours, broker }),
        }
    }

    /// Writes a request and returns a future for its response. With
    /// `expect_response == false` (acks=0 produce) nothing is awaited and the
    /// returned future resolves to `Closed`; do not wait on it.
    pub async fn submit<R: ClientRequest>(
        &self,
        req: &R,
        version: i16,
        expect_response: bool,
    ) -> Result<ResponseFuture<R::Response>, ClientError> {
        let api = R::KEY;
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed)?;
        if self.dead.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        let mut w = self.writer.lock().await;
        let correlation_id = w.next_correlation_id;
        w.next_correlation_id = w.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let scratch = &mut w.scratch;
        scratch.clear();
        scratch.put_i32(0);
        let encode_err = |e: anyhow::Error| ClientError::Encode {
            api,
            version,
            message: e.to_string(),
        };
        header
            .encode(scratch, api.request_header_version(version))
            .map_err(encode_err)?;
        req.encode(scratch, version).map_err(encode_err)?;
        let len = (scratch.len() - 4) as i32;
        scratch[..4].copy_from_slice(&len.to_be_bytes());
        if expect_response {
            self.pending
                .lock()
                .map_err(|_| ClientError::Closed)?
                .push_back(Pending {
                    correlation_id,
                    reply: tx,
                    _permit: permit,
                });
        } else {
            drop(permit);
        }
        let frame = w.scratch.split().freeze();
        let write = async {
            w.stream.write_all(&frame).await?;
            w.stream.flush().await
        };
        if let Err(e) = write.await {
            self.dead.store(true, Ordering::Release);
            return Err(ClientError::Io(e));
        }
        Ok(ResponseFuture {
            rx,
            api,
            version,
            _marker: std::marker::PhantomData,
        })
    }

    /// Sends a request and waits for its response (admin calls).
    pub async fn call<R: ClientRequest>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let fut = self.submit(req, version, true).await?;
        Ok(timeout(fut.wait()).await?.0)
    }
}

async fn timeout<T>(
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(ADMIN_TIMEOUT, f)
        .await
        .map_err(|_| ClientError::Timeout(ADMIN_TIMEOUT))?
}

async fn read_loop(
    mut read: OwnedReadHalf,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    dead: Arc<AtomicBool>,
) {
    let result = read_frames(&mut read, &pending).await;
    dead.store(true, Ordering::Release);
    // Fail everything outstanding; dropping the senders reports Closed.
    let drained: Vec<Pending> = match pending.lock() {
        Ok(mut q) => q.drain(..).collect(),
        Err(_) => Vec::new(),
    };
    for p in drained {
        let err = match &result {
            Err(ClientError::Correlation { expected, got }) => ClientError::Correlation {
                expected: *expected,
                got: *got,
            },
            _ => ClientError::Closed,
        };
        let _ = p.reply.send(Err(err));
    }
}

async fn read_frames(
    read: &mut OwnedReadHalf,
    pending: &Mutex<VecDeque<Pending>>,
) -> Result<(), ClientError> {
    let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, read);
    loop {
        let len = match reader.read_i32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let len = usize::try_from(len).map_err(|_| ClientError::FrameTooLarge(0))?;
        if !(4..=RESPONSE_BYTES_MAX).contains(&len) {
            return Err(ClientError::FrameTooLarge(len));
        }
        let mut frame = BytesMut::zeroed(len);
        reader.read_exact(&mut frame).await?;
        let at = Instant::now();
        let frame = frame.freeze();
        let got = (&frame[..4]).get_i32();
        let next = pending.lock().map_err(|_| ClientError::Closed)?.pop_front();
        let Some(p) = next else {
            return Err(ClientError::Correlation { expected: -1, got });
        };
        if p.correlation_id != got {
            let expected = p.correlation_id;
            let _ = p
                .reply
                .send(Err(ClientError::Correlation { expected, got }));
            return Err(ClientError::Correlation { expected, got });
        }
        let _ = p.reply.send(Ok((frame, at)));
    }
}

/// A request this client sends: its API key and response type. (kafka-protocol's
/// own `Request` trait needs its `broker` feature too; this keeps the bench on `client`.)
pub trait ClientRequest: Encodable {
    const KEY: ApiKey;
    type Response: Decodable;
}

macro_rules! client_request {
    ($($req:ty => $key:ident, $resp:ty;)*) => {
        $(impl ClientRequest for $req {
            const KEY: ApiKey = ApiKey::$key;
            type Response = $resp;
        })*
    };
}

client_request! {
    ApiVersionsRequest => ApiVersions, ApiVersionsResponse;
    MetadataRequest => Metadata, MetadataResponse;
    CreateTopicsRequest => CreateTopics, CreateTopicsResponse;
    ListOffsetsRequest => ListOffsets, ListOffsetsResponse;
    ProduceRequest => Produce, ProduceResponse;
    FetchRequest => Fetch, FetchResponse;
}

/// One partition's leader as seen in Metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLeader {
    pub partition: i32,
    pub leader: i32,
}

/// Cluster view: brokers and the partitions of one topic.
#[derive(Debug, Clone)]
pub struct TopicLayout {
    pub brokers: HashMap<i32, String>,
    pub partitions: Vec<PartitionLeader>,
    pub controller: i32,
}

impl TopicLayout {
    pub fn broker_addr(&self, node: i32) -> Result<&str, ClientError> {
        self.brokers
            .get(&node)
            .map(String::as_str)
            .ok_or_else(|| ClientError::Metadata(format!("leader {node} is not among the brokers")))
    }
}

/// Admin operations over a bootstrap connection.
pub struct Cluster {
    pub bootstrap: Arc<Connection>,
}

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const TOPIC_ALREADY_EXISTS: i16 = 36;

impl Cluster {
    pub async fn connect(bootstrap: &str) -> Result<Cluster, ClientError> {
        Ok(Cluster {
            bootstrap: Connection::connect(bootstrap).await?,
        })
    }

    /// Metadata for one topic. `Ok(None)` when the topic does not exist.
    pub async fn topic(&self, topic: &str) -> Result<Option<TopicLayout>, ClientError> {
        let v = self
            .bootstrap
            .pick_version(ApiKey::Metadata, METADATA_VERSIONS)?;
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(false);
        let resp: MetadataResponse = self.bootstrap.call(&req, v).await?;
        let brokers = resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let Some(t) = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        else {
            return Ok(None);
        };
        match t.error_code {
            0 => {}
            UNKNOWN_TOPIC_OR_PARTITION => return Ok(None),
            LEADER_NOT_AVAILABLE => {
                return Ok(Some(TopicLayout {
                    brokers,
                    partitions: Vec::new(),
                    controller: resp.controller_id.0,
                }))
            }
            code => {
                return Err(ClientError::Kafka {
                    api: ApiKey::Metadata,
                    code,
                    context: Some(topic.to_string()),
                })
            }
        }
        let mut partitions: Vec<PartitionLeader> = t
            .partitions
            .iter()
            .map(|p| PartitionLeader {
                partition: p.partition_index,
                leader: if p.error_code == 0 { p.leader_id.0 } else { -1 },
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        Ok(Some(TopicLayout {
            brokers,
            partitions,
            controller: resp.controller_id.0,
        }))
    }

    /// Returns the topic's layout, creating it with CreateTopics if missing and
    /// waiting until every partition has a leader.
    pub async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<TopicLayout, ClientError> {
        let existing = self.topic(topic).await?;
        if existing.is_none() {
            let v = self
                .bootstrap
                .pick_version(ApiKey::CreateTopics, CREATE_TOPICS_VERSIONS)?;
            let req = CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication_factor)])
                .with_timeout_ms(30_000);
            let resp = self.bootstrap.call(&req, v).await?;
            for t in &resp.topics {
                if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
                    return Err(ClientError::Kafka {
                        api: ApiKey::CreateTopics,
                        code: t.error_code,
                        context: t.error_message.as_ref().map(|m| m.as_str().to_string()),
                    });
                }
            }
        }
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        loop {
            if let Some(layout) = self.topic(topic).await? {
                if !layout.partitions.is_empty() && layout.partitions.iter().all(|p| p.leader >= 0)
                {
                    return Ok(layout);
                }
            }
            if Instant::now() > deadline {
                return Err(ClientError::Metadata(format!(
                    "topic {topic} has no leader for every partition after {ADMIN_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// ListOffsets timestamp for the log end.
pub const LATEST: i64 = -1;
/// ListOffsets timestamp for the log start.
pub const EARLIEST: i64 = -2;

/// Looks up one offset per partition (`LATEST` or `EARLIEST`) on `conn`,
/// which must lead all of `partitions`.
pub async fn list_offsets(
    conn: &Connection,
    topic: &str,
    partitions: &[i32],
    at: i64,
) -> Result<HashMap<i32, i64>, ClientError> {
    let v = conn.pick_version(ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS)?;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(at)
                            .with_current_leader_epoch(-1)
                    })
                    .collect(),
            )]);
    let resp = conn.call(&req, v).await?;
    let mut out = HashMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(ClientError::Kafka {
                    api: ApiKey::ListOffsets,
                    code: p.error_code,
                    context: Some(format!("{topic}-{}", p.partition_index)),
                });
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    for p in partitions {
        if !out.contains_key(p) {
            return Err(ClientError::Metadata(format!(
                "ListOffsets answered without partition {p}"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// ApiVersions v0 response body: error 0 and the APIs this client uses.
    fn api_versions_v0(correlation_id: i32) -> Vec<u8> {
        let apis: [(i16, i16, i16); 4] = [(0, 0, 9), (1, 4, 11), (3, 0, 12), (18, 0, 3)];
        let mut body = Vec::new();
        body.extend_from_slice(&correlation_id.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&(apis.len() as i32).to_be_bytes());
        for (k, min, max) in apis {
            for v in [k, min, max] {
                body.extend_from_slice(&v.to_be_bytes());
            }
        }
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    /// Reads one request frame; returns its correlation id.
    async fn read_request(s: &mut TcpStream) -> Option<i32> {
        let len = s.read_i32().await.ok()?;
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        s.read_exact(&mut buf).await.ok()?;
        Some(i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]))
    }

    // Proves the client never has more than MAX_IN_FLIGHT requests outstanding and matches every response by correlation id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelines_at_most_max_in_flight() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        const REQUESTS: usize = 4 * MAX_IN_FLIGHT;
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let id = read_request(&mut s).await.expect("handshake");
            s.write_all(&api_versions_v0(id)).await.expect("write");
            let mut go = Some(go_rx);
            let mut pending = Vec::new();
            for _ in 0..REQUESTS {
                pending.push(read_request(&mut s).await.expect("request"));
                assert!(
                    pending.len() <= MAX_IN_FLIGHT,
                    "client exceeded the in-flight bound"
                );
                if pending.len() == MAX_IN_FLIGHT {
                    // The first window is held until the client has checked it is blocked.
                    if let Some(go) = go.take() {
                        go.await.expect("go");
                    }
                    for id in pending.drain(..) {
                        s.write_all(&api_versions_v0(id)).await.expect("write");
                    }
                }
            }
        });
        let conn = Connection::connect(&addr).await.expect("connect");
        assert_eq!(
            conn.pick_version(ApiKey::Produce, PRODUCE_VERSIONS)
                .expect("produce"),
            9
        );
        assert_eq!(
            conn.pick_version(ApiKey::Fetch, FETCH_VERSIONS)
                .expect("fetch"),
            11
        );
        assert!(conn
            .pick_version(ApiKey::CreateTopics, CREATE_TOPICS_VERSIONS)
            .is_err());
        let mut futs = Vec::new();
        for _ in 0..MAX_IN_FLIGHT {
            futs.push(
                conn.submit(&ApiVersionsRequest::default(), 0, true)
                    .await
                    .expect("submit"),
            );
        }
        // With the window full and no response sent, a sixth submit cannot proceed.
        let req = ApiVersionsRequest::default();
        let sixth = conn.submit(&req, 0, true);
        tokio::pin!(sixth);
        let polled_once = tokio::select! {
            biased;
            r = &mut sixth => Some(r.is_ok()),
            _ = std::future::ready(()) => None,
        };
        assert_eq!(
            polled_once, None,
            "sixth request was sent with five outstanding"
        );
        go_tx.send(()).expect("server alive");
        futs.push(sixth.await.expect("sixth submit"));
        for _ in MAX_IN_FLIGHT + 1..REQUESTS {
            futs.push(
                conn.submit(&ApiVersionsRequest::default(), 0, true)
                    .await
                    .expect("submit"),
            );
        }
        for f in futs {
            let (resp, _) = f.wait().await.expect("response");
            assert_eq!(resp.error_code, 0);
        }
        server.await.expect("server");
    }

    // Proves a response with the wrong correlation id fails the request instead of being matched to it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_correlation_id_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let id = read_request(&mut s).await.expect("handshake");
            s.write_all(&api_versions_v0(id)).await.expect("write");
            let id = read_request(&mut s).await.expect("request");
            s.write_all(&api_versions_v0(id + 100))
                .await
                .expect("write");
            // Keep the socket open until the client has seen the error.
            let _ = read_request(&mut s).await;
        });
        let conn = Connection::connect(&addr).await.expect("connect");
        let fut = conn
            .submit(&ApiVersionsRequest::default(), 0, true)
            .await
            .expect("submit");
        assert!(matches!(
            fut.wait().await,
            Err(ClientError::Correlation { .. })
        ));
        drop(conn);
        server.abort();
    }
}
