//! A small blocking Kafka client over `std::net::TcpStream`: connections with
//! ApiVersions negotiation, request/response framing, cluster metadata, and
//! routing to a partition leader, a group coordinator or the controller.
//!
//! It owns its sockets and nothing else: no threads, no async runtime, one
//! request in flight per connection. Every read and write has the timeout of
//! the [`ClientConfig`]. The typed operations built on it live in `ops`.
//! It works against any Kafka broker, Fjord or Apache Kafka.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use crate::error::{Error, Result};

/// Responses larger than this are refused (a fetch asks for far less).
pub const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// The highest version of each API this client speaks; the version used on a
/// connection is min(this, the broker's max), and must be ≥ the broker's min.
/// The caps stop where a newer version changes fields the code relies on
/// (Fetch and Produce switch to topic ids, OffsetFetch to batched groups).
const VERSION_MAX: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 11),
    (ApiKey::Fetch, 12),
    (ApiKey::ListOffsets, 8),
    (ApiKey::Metadata, 12),
    (ApiKey::OffsetCommit, 8),
    (ApiKey::OffsetFetch, 7),
    (ApiKey::FindCoordinator, 4),
    (ApiKey::DescribeGroups, 5),
    (ApiKey::ListGroups, 4),
    (ApiKey::ApiVersions, 3),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 6),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::CreatePartitions, 3),
    (ApiKey::DeleteGroups, 2),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::DescribeCluster, 1),
    (ApiKey::UnregisterBroker, 0),
];

/// How to reach a cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses to bootstrap from, tried in order.
    pub bootstrap: Vec<String>,
    /// Connect, read and write timeout of every socket operation.
    pub timeout: Duration,
    pub client_id: String,
}

impl ClientConfig {
    /// `brokers` is a comma-separated `host:port` list.
    pub fn new(brokers: &str, timeout: Duration) -> ClientConfig {
        let bootstrap = brokers.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        ClientConfig { bootstrap, timeout, client_id: "fjord-cli".to_string() }
    }
}

/// One TCP connection to one broker, with the API versions it supports.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    /// api key -> (broker min, broker max)
    versions: HashMap<i16, (i16, i16)>,
    correlation_id: i32,
    client_id: StrBytes,
}

impl Connection {
    /// Connects to `addr` and negotiates API versions.
    pub fn connect(addr: &str, config: &ClientConfig) -> Result<Connection> {
        let stream = open_stream(addr, config.timeout)?;
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            versions: HashMap::new(),
            correlation_id: 0,
            client_id: StrBytes::from_string(config.client_id.clone()),
        };
        conn.negotiate_versions()?;
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The version to use for `R`, or Unsupported.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        self.version(R::KEY).ok_or(Error::Unsupported { api: api_name(R::KEY), addr: self.addr.clone() })
    }

    /// The version to use for the API `key`, if both sides speak one.
    pub fn version(&self, key: i16) -> Option<i16> {
        let ours = VERSION_MAX.iter().find(|(k, _)| *k as i16 == key).map(|(_, v)| *v)?;
        let (min, max) = *self.versions.get(&key)?;
        let v = ours.min(max);
        (v >= min).then_some(v)
    }

    /// Sends `req` at the negotiated version and waits for its response.
    pub fn send<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let version = self.version_for::<R>()?;
        self.send_at(req, version)
    }

    /// Sends `req` at `version` and waits for its response.
    pub fn send_at<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let mut body = self.exchange::<R>(req, version)?;
        let resp = <R::Response as Decodable>::decode(&mut body, version).map_err(|e| codec::<R>(e))?;
        Ok(resp)
    }

    /// Sends `req` without waiting for an answer (Produce with acks=0).
    pub fn send_no_response<R: Request>(&mut self, req: &R, version: i16) -> Result<()> {
        let frame = self.frame::<R>(req, version)?;
        self.stream.write_all(&frame).map_err(|e| self.io(e))
    }

    /// Writes the request and returns the response body after its header.
    fn exchange<R: Request>(&mut self, req: &R, version: i16) -> Result<Bytes> {
        let frame = self.frame::<R>(req, version)?;
        let correlation_id = self.correlation_id;
        self.stream.write_all(&frame).map_err(|e| self.io(e))?;
        let mut body = self.read_frame()?;
        let header_version = <R::Response as kafka_protocol::protocol::HeaderVersion>::header_version(version);
        let header = ResponseHeader::decode(&mut body, header_version).map_err(|e| codec::<R>(e))?;
        if header.correlation_id != correlation_id {
            return Err(Error::Codec {
                api: api_name(R::KEY),
                reason: format!("correlation id {} answered, {} expected", header.correlation_id, correlation_id),
            });
        }
        Ok(body)
    }

    fn frame<R: Request>(&mut self, req: &R, version: i16) -> Result<BytesMut> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(self.client_id.clone());
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&[0; 4]);
        let header_version = <R as kafka_protocol::protocol::HeaderVersion>::header_version(version);
        header.encode(&mut buf, header_version).map_err(|e| codec::<R>(e))?;
        req.encode(&mut buf, version).map_err(|e| codec::<R>(e))?;
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf)
    }

    fn read_frame(&mut self) -> Result<Bytes> {
        let mut len_buf = [0u8; 4];
        self.stream.read_exact(&mut len_buf).map_err(|e| self.io(e))?;
        if &len_buf == b"HTTP" {
            return Err(Error::NotKafka { addr: self.addr.clone(), what: "an HTTP server" });
        }
        let len = i32::from_be_bytes(len_buf);
        if len < 0 || len as usize > RESPONSE_BYTES_MAX {
            return Err(Error::FrameTooLarge { addr: self.addr.clone(), len: len as i64, max: RESPONSE_BYTES_MAX });
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).map_err(|e| self.io(e))?;
        Ok(Bytes::from(body))
    }

    /// ApiVersions v3, falling back to v0 when the broker answers
    /// UNSUPPORTED_VERSION (it then encodes its answer as v0).
    fn negotiate_versions(&mut self) -> Result<()> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("fjord-cli");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let mut body = self.exchange::<ApiVersionsRequest>(&req, 3)?;
        let error_code = if body.len() >= 2 { (&body[..2]).get_i16() } else { 0 };
        let resp = if error_code == 35 {
            let mut body = self.exchange::<ApiVersionsRequest>(&req, 0)?;
            ApiVersionsResponse::decode(&mut body, 0).map_err(codec::<ApiVersionsRequest>)?
        } else {
            ApiVersionsResponse::decode(&mut body, 3).map_err(codec::<ApiVersionsRequest>)?
        };
        if let Some(e) = Error::from_code(resp.error_code, format!("ApiVersions to {}", self.addr), None) {
            return Err(e);
        }
        self.versions = resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(())
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io { addr: self.addr.clone(), source }
    }
}

fn codec<R: Request>(e: anyhow::Error) -> Error {
    Error::Codec { api: api_name(R::KEY), reason: format!("{e:#}") }
}

/// The API's name as Kafka spells it (`CreateTopics`).
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(k) => api_key_name(k),
        Err(()) => "an unknown API",
    }
}

fn api_key_name(k: ApiKey) -> &'static str {
    match k {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::UnregisterBroker => "UnregisterBroker",
        _ => "a Kafka API",
    }
}

/// Resolves `addr` and connects to the first address that answers within `timeout`.
fn open_stream(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let connect_err = |source| Error::Connect { addr: addr.to_string(), source };
    let addrs: Vec<_> = addr.to_socket_addrs().map_err(connect_err)?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(timeout)).map_err(connect_err)?;
                stream.set_write_timeout(Some(timeout)).map_err(connect_err)?;
                stream.set_nodelay(true).map_err(connect_err)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(connect_err(last))
}

/// A broker as the metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition as the metadata lists it.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub index: i32,
    /// -1: no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
    pub error_code: i16,
}

/// One topic as the metadata lists it; partitions sorted by index.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub id: String,
    pub internal: bool,
    pub error_code: i16,
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// The replication factor: the replica count of the first partition.
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// A Metadata answer in plain types.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    /// -1: none known.
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
}

impl ClusterMetadata {
    pub fn topic(&self, name: &str) -> Result<&TopicInfo> {
        let t = self.topics.get(name).ok_or_else(|| unknown_topic(name))?;
        match Error::from_code(t.error_code, format!("topic {name}"), None) {
            Some(e) => Err(e),
            None => Ok(t),
        }
    }

    /// The leader of `topic`/`partition`, or the partition's error.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<i32> {
        let t = self.topic(topic)?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.index == partition)
            .ok_or_else(|| Error::UnknownPartition { topic: topic.to_string(), partition })?;
        if p.leader < 0 {
            return Err(Error::Kafka {
                code: 5,
                context: format!("{topic}/{partition}"),
                message: Some("the partition has no leader".to_string()),
            });
        }
        Ok(p.leader)
    }
}

fn unknown_topic(name: &str) -> Error {
    Error::Kafka { code: 3, context: format!("topic {name}"), message: Some("no such topic".to_string()) }
}

/// A cluster client: a bootstrap connection, one connection per broker it
/// has talked to, and the latest metadata.
pub struct Client {
    config: ClientConfig,
    /// broker id -> connection; the bootstrap connection is kept under its
    /// address until the metadata says which broker it is.
    conns: HashMap<i32, Connection>,
    bootstrap: Option<Connection>,
    metadata: ClusterMetadata,
}

impl Client {
    /// Connects to the first reachable bootstrap address.
    pub fn connect(config: ClientConfig) -> Result<Client> {
        let mut last = None;
        for addr in &config.bootstrap {
            match Connection::connect(addr, &config) {
                Ok(conn) => {
                    return Ok(Client {
                        config,
                        conns: HashMap::new(),
                        bootstrap: Some(conn),
                        metadata: ClusterMetadata { controller_id: -1, ..Default::default() },
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        let brokers = config.bootstrap.join(",");
        let last = last.unwrap_or(Error::Usage("the broker list is empty".to_string()));
        Err(Error::NoBrokerReachable { brokers, last: Box::new(last) })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The metadata of the last [`Client::refresh_metadata`].
    pub fn metadata(&self) -> &ClusterMetadata {
        &self.metadata
    }

    /// Any connection: the bootstrap one, else one to a known broker.
    pub fn any(&mut self) -> Result<&mut Connection> {
        if self.bootstrap.is_none() && self.conns.is_empty() {
            let id = *self.metadata.brokers.keys().next().ok_or(Error::UnknownBroker(-1))?;
            return self.broker(id);
        }
        match self.bootstrap.as_mut() {
            Some(c) => Ok(c),
            None => Ok(self.conns.values_mut().next().expect("checked non-empty above")),
        }
    }

    /// Fetches metadata for `topics` (None: every topic) and keeps it.
    pub fn refresh_metadata(&mut self, topics: Option<&[String]>) -> Result<&ClusterMetadata> {
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut mt = MetadataRequestTopic::default();
                    mt.name = Some(TopicName(StrBytes::from_string(t.clone())));
                    mt
                })
                .collect()
        });
        req.allow_auto_topic_creation = false;
        let resp = self.any()?.send(&req)?;
        let mut md = ClusterMetadata {
            cluster_id: resp.cluster_id.map(|s| s.to_string()),
            controller_id: resp.controller_id.0,
            ..Default::default()
        };
        for b in resp.brokers {
            let info = BrokerInfo {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
            };
            md.brokers.insert(info.id, info);
        }
        for t in resp.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else { continue };
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    index: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.index);
            let info = TopicInfo {
                name: name.clone(),
                id: t.topic_id.to_string(),
                internal: t.is_internal,
                error_code: t.error_code,
                partitions,
            };
            md.topics.insert(name, info);
        }
        self.metadata = md;
        Ok(&self.metadata)
    }

    /// The connection to broker `id` (opened on first use).
    pub fn broker(&mut self, id: i32) -> Result<&mut Connection> {
        if !self.conns.contains_key(&id) {
            let addr = self.metadata.brokers.get(&id).ok_or(Error::UnknownBroker(id))?.addr();
            let conn = match self.bootstrap.take() {
                Some(b) if b.addr == addr => b,
                other => {
                    self.bootstrap = other;
                    Connection::connect(&addr, &self.config)?
                }
            };
            self.conns.insert(id, conn);
        }
        Ok(self.conns.get_mut(&id).expect("inserted above"))
    }

    /// The connection to the controller (Kafka routes admin requests there;
    /// a broker that is not forwards them). Needs metadata.
    pub fn controller(&mut self) -> Result<&mut Connection> {
        if self.metadata.brokers.is_empty() {
            self.refresh_metadata(Some(&[]))?;
        }
        let id = self.metadata.controller_id;
        if self.metadata.brokers.contains_key(&id) {
            self.broker(id)
        } else {
            self.any()
        }
    }

    /// The broker id of the coordinator of `group` (FindCoordinator).
    pub fn coordinator_id(&mut self, group: &str) -> Result<i32> {
        if self.metadata.brokers.is_empty() {
            self.refresh_metadata(Some(&[]))?;
        }
        let conn = self.any()?;
        let version = conn.version_for::<FindCoordinatorRequest>()?;
        let mut req = FindCoordinatorRequest::default();
        req.key_type = 0;
        if version >= 4 {
            req.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
        } else {
            req.key = StrBytes::from_string(group.to_string());
        }
        let resp = conn.send_at(&req, version)?;
        let context = format!("coordinator of group {group}");
        let (code, message, node_id, host, port) = if version >= 4 {
            let c = resp.coordinators.into_iter().next().ok_or_else(|| Error::Codec {
                api: "FindCoordinator",
                reason: "no coordinator in the answer".to_string(),
            })?;
            (c.error_code, c.error_message, c.node_id.0, c.host, c.port)
        } else {
            (resp.error_code, resp.error_message, resp.node_id.0, resp.host, resp.port)
        };
        if let Some(e) = Error::from_code(code, context, message.map(|m| m.to_string())) {
            return Err(e);
        }
        // A coordinator that the last metadata did not list (a new broker) is added.
        let info = BrokerInfo { id: node_id, host: host.to_string(), port, rack: None };
        self.metadata.brokers.entry(node_id).or_insert(info);
        Ok(node_id)
    }

    /// The connection to the coordinator of `group`.
    pub fn coordinator(&mut self, group: &str) -> Result<&mut Connection> {
        let id = self.coordinator_id(group)?;
        self.broker(id)
    }

    /// The connection to the leader of `topic`/`partition`, from the current metadata.
    pub fn leader(&mut self, topic: &str, partition: i32) -> Result<&mut Connection> {
        let id = self.metadata.leader(topic, partition)?;
        self.broker(id)
    }

    /// Forgets the connection to `id` (after an I/O error on it).
    pub fn drop_connection(&mut self, id: i32) {
        self.conns.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_list_is_split_on_commas() {
        // Spaces and empty items in --brokers / FJORD_BROKERS are ignored.
        let c = ClientConfig::new(" a:1, b:2,,", Duration::from_secs(1));
        assert_eq!(c.bootstrap, vec!["a:1", "b:2"]);
    }

    #[test]
    fn unreachable_broker_fails_within_the_timeout() {
        // A closed port gives a connect error naming the address, not a hang.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = ClientConfig::new(&format!("127.0.0.1:{port}"), Duration::from_millis(500));
        let err = Client::connect(config).err().expect("nothing listens there");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    }

    #[test]
    fn every_capped_api_is_named() {
        // Error messages name the API instead of "a Kafka API".
        for (k, _) in VERSION_MAX {
            assert_ne!(api_key_name(*k), "a Kafka API", "{k:?}");
        }
    }
}
