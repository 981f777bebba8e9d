//! The admin JSON API under `/v1/`: brokers, topics (partitions with their
//! (broker, shard) placement, offsets, sizes, configs), messages, consumer
//! groups with lag, this node's settings, throughput, and the write
//! endpoints (controlled shutdown; replica moves, not implemented yet).
//!
//! Placement comes from this node's applied metadata; offsets, configs,
//! groups and messages are asked of the broker itself over its own Kafka
//! listener with the blocking `fjord_cli` client, every call bounded by
//! [`KAFKA_TIMEOUT`]; sizes and byte counters come from a scrape of this
//! node's shards (replicas on other nodes show no size). Runs on an admin
//! connection thread, never on a shard.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use fjord_cli::ops::{self, FetchLimits, OffsetSpec};
use fjord_cli::{Client, ClientConfig};
use serde_json::{json, Value};

use super::http::{Request, Response};
use super::Admin;
use crate::metadata::ClusterMetadata;

/// Timeout of every connect, read and write of the admin's Kafka client.
pub const KAFKA_TIMEOUT: Duration = Duration::from_secs(3);
/// Messages one `/messages` request returns at most.
pub const MESSAGES_LIMIT_MAX: usize = 500;
const MESSAGES_LIMIT_DEFAULT: usize = 20;
/// Fetches one `/messages` request makes at most.
const MESSAGES_FETCHES_MAX: usize = 8;

/// Why an API call failed; each maps to one HTTP status.
#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    BadRequest(String),
    /// Writes are disabled (`admin_api_writes_enabled`).
    Forbidden,
    NotImplemented(&'static str),
    /// The broker's Kafka listener failed or timed out.
    Kafka(fjord_cli::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::BadRequest(_) => 400,
            ApiError::Forbidden => 403,
            ApiError::NotImplemented(_) => 501,
            ApiError::Kafka(fjord_cli::Error::Connect { .. } | fjord_cli::Error::Io { .. }) => 504,
            ApiError::Kafka(_) => 502,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::NotFound(m) | ApiError::BadRequest(m) => m.clone(),
            ApiError::Forbidden => {
                "admin API writes are disabled; start fjord with --admin-api-writes-enabled to allow them".to_string()
            }
            ApiError::NotImplemented(m) => m.to_string(),
            ApiError::Kafka(e) => format!("the broker's Kafka listener: {e}"),
        }
    }
}

impl From<fjord_cli::Error> for ApiError {
    fn from(e: fjord_cli::Error) -> Self {
        match e {
            fjord_cli::Error::UnknownPartition { topic, partition } => {
                ApiError::NotFound(format!("no partition {partition} in topic {topic}"))
            }
            fjord_cli::Error::Kafka { code: 3, context, .. } => ApiError::NotFound(format!("{context}: no such topic")),
            fjord_cli::Error::Kafka { code: 69, context, .. } => ApiError::NotFound(format!("{context}: no such group")),
            other => ApiError::Kafka(other),
        }
    }
}

/// Answers a request under `/v1/` (not the older endpoints `mod.rs` serves).
pub fn route(admin: &Admin, req: &Request) -> Option<Response> {
    let segs = req.segments();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let result = match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["v1", "brokers"]) => Ok(brokers(&admin.controller.current())),
        ("GET", ["v1", "brokers", id]) => broker(&admin.controller.current(), id),
        ("GET", ["v1", "topics"]) => Ok(topics(admin)),
        ("GET", ["v1", "topics", name]) => topic(admin, name),
        ("GET", ["v1", "topics", name, "messages"]) => messages(admin, name, req),
        ("GET", ["v1", "groups"]) => groups(admin),
        ("GET", ["v1", "groups", id]) => group(admin, id),
        ("GET", ["v1", "config"]) => Ok(config(admin)),
        ("GET", ["v1", "throughput"]) => Ok(throughput(admin)),
        ("POST", ["v1", "node", "controlled_shutdown"]) => {
            return Some(controlled_shutdown(admin).unwrap_or_else(|e| error_response(&e)))
        }
        ("POST", ["v1", "partitions", _topic, _partition, "move"]) => {
            if admin.writes_enabled {
                Err(ApiError::NotImplemented("partition moves are not implemented yet"))
            } else {
                Err(ApiError::Forbidden)
            }
        }
        (_, ["v1", ..]) if known_path(&segs) => {
            return Some(Response::json_error(405, &format!("{} is not allowed on {}", req.method, req.path)))
        }
        (_, ["v1", ..]) => Err(ApiError::NotFound(format!("no such endpoint: {}", req.path))),
        _ => return None,
    };
    Some(match result {
        Ok(doc) => Response::json(200, &doc),
        Err(e) => error_response(&e),
    })
}

fn known_path(segs: &[&str]) -> bool {
    matches!(
        segs,
        ["v1", "brokers"]
            | ["v1", "brokers", _]
            | ["v1", "topics"]
            | ["v1", "topics", _]
            | ["v1", "topics", _, "messages"]
            | ["v1", "groups"]
            | ["v1", "groups", _]
            | ["v1", "config"]
            | ["v1", "throughput"]
            | ["v1", "node", "controlled_shutdown"]
            | ["v1", "partitions", _, _, "move"]
    )
}

pub fn error_response(e: &ApiError) -> Response {
    Response::json_error(e.status(), &e.message())
}

/// A client of this broker's own Kafka listener.
pub fn client(admin: &Admin) -> ApiResult<Client> {
    let mut config = ClientConfig::new(&admin.kafka_bootstrap, KAFKA_TIMEOUT);
    config.client_id = "fjord-admin-http".to_string();
    Ok(Client::connect(config)?)
}

// ------------------------------------------------------------------ brokers

fn broker_doc(md: &ClusterMetadata, b: &crate::metadata::BrokerMeta) -> Value {
    let (mut leaders, mut replicas) = (0, 0);
    for t in md.topics.values() {
        for p in &t.partitions {
            replicas += p.replicas.iter().filter(|r| r.node_id == b.node_id).count();
            leaders += (p.leader.node_id == b.node_id) as usize;
        }
    }
    json!({
        "node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
        "shard_count": b.shard_count, "fenced": b.fenced, "alive": !b.fenced,
        "is_controller": md.controller_id == b.node_id,
        "leader_count": leaders, "replica_count": replicas,
    })
}

pub fn brokers(md: &ClusterMetadata) -> Value {
    let list: Vec<Value> = md.brokers.values().map(|b| broker_doc(md, b)).collect();
    json!({"cluster_id": md.cluster_id, "controller_id": md.controller_id, "brokers": list})
}

/// One broker and every replica placed on it, by shard.
pub fn broker(md: &ClusterMetadata, id: &str) -> ApiResult<Value> {
    let id: i32 = id.parse().map_err(|_| ApiError::BadRequest(format!("'{id}' is not a broker id")))?;
    let b = md.brokers.get(&id).ok_or_else(|| ApiError::NotFound(format!("no broker {id}")))?;
    let mut doc = broker_doc(md, b);
    let mut placed = Vec::new();
    for t in md.topics.values() {
        for p in &t.partitions {
            for r in p.replicas.iter().filter(|r| r.node_id == id) {
                placed.push(json!({
                    "topic": t.name, "partition": p.partition, "shard": r.shard,
                    "leader": p.leader.node_id == id, "in_sync": p.isr.contains(&id),
                }));
            }
        }
    }
    doc["replicas"] = Value::Array(placed);
    Ok(doc)
}

// ------------------------------------------------------------------ topics

/// What a scrape of this node's shards says of one local replica.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalReplica {
    pub size_bytes: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
    pub messages_in: f64,
}

/// Per (topic, partition): the replicas this node holds.
pub fn local_replicas(admin: &Admin) -> HashMap<(String, i32), LocalReplica> {
    let text = admin.scraper.scrape(&admin.controller.current());
    let mut out: HashMap<(String, i32), LocalReplica> = HashMap::new();
    for line in text.lines() {
        let Some((name, labels, value)) = parse_sample(line) else { continue };
        let slot: fn(&mut LocalReplica) -> &mut f64 = match name {
            "kafka_log_log_size" => |r| &mut r.size_bytes,
            "kafka_server_brokertopicmetrics_bytesin_total" => |r| &mut r.bytes_in,
            "kafka_server_brokertopicmetrics_bytesout_total" => |r| &mut r.bytes_out,
            "kafka_server_brokertopicmetrics_messagesin_total" => |r| &mut r.messages_in,
            _ => continue,
        };
        let topic = labels.iter().find(|(k, _)| k == "topic").map(|(_, v)| v.clone());
        let partition = labels.iter().find(|(k, _)| k == "partition").and_then(|(_, v)| v.parse().ok());
        if let (Some(t), Some(p)) = (topic, partition) {
            *slot(out.entry((t, p)).or_default()) += value;
        }
    }
    out
}

/// One exposition sample line: `name{k="v",...} value`. None for comments and oddities.
fn parse_sample(line: &str) -> Option<(&str, Vec<(String, String)>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (n, v) = line.split_once(' ')?;
            return Some((n, Vec::new(), v.trim().parse().ok()?));
        }
    };
    let mut labels = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let mut key = String::new();
    loop {
        let (_, c) = chars.next()?;
        match c {
            '}' => break,
            ',' => {}
            '=' => {
                if chars.next()?.1 != '"' {
                    return None;
                }
                let mut value = String::new();
                loop {
                    match chars.next()?.1 {
                        '\\' => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        '"' => break,
                        other => value.push(other),
                    }
                }
                labels.push((std::mem::take(&mut key), value));
            }
            other => key.push(other),
        }
    }
    let after = chars.next().map_or(rest.len(), |(i, _)| i);
    let value = rest[after..].split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

pub fn topics(admin: &Admin) -> Value {
    let md = admin.controller.current();
    let local = local_replicas(admin);
    let list: Vec<Value> = md
        .topics
        .values()
        .map(|t| {
            let size: f64 = t.partitions.iter().filter_map(|p| local.get(&(t.name.clone(), p.partition))).map(|r| r.size_bytes).sum();
            json!({
                "name": t.name, "id": t.id.to_string(), "internal": t.internal,
                "partition_count": t.partitions.len(),
                "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
                "local_size_bytes": size as u64,
            })
        })
        .collect();
    json!({"topics": list})
}

/// Log start and high watermark of every partition, asked of the leaders.
fn topic_offsets(c: &mut Client, topic: &str) -> ApiResult<(BTreeMap<i32, i64>, BTreeMap<i32, i64>)> {
    c.refresh_metadata(Some(&[topic.to_string()]))?;
    let start = ops::topic_offsets(c, topic, OffsetSpec::Earliest)?;
    let end = ops::topic_offsets(c, topic, OffsetSpec::Latest)?;
    Ok((start, end))
}

pub fn topic(admin: &Admin, name: &str) -> ApiResult<Value> {
    let md = admin.controller.current();
    let t = md.topic(name).ok_or_else(|| ApiError::NotFound(format!("no topic {name}")))?;
    let local = local_replicas(admin);
    let mut c = client(admin)?;
    // Offsets of a partition without a leader are unknown: show the rest.
    let (start, end) = topic_offsets(&mut c, name).unwrap_or_default();
    let configs: Vec<Value> = ops::describe_topic_configs(&mut c, name)?
        .into_iter()
        .map(|e| {
            json!({"name": e.name, "value": if e.sensitive { None } else { e.value }, "source": e.source,
                   "read_only": e.read_only, "sensitive": e.sensitive})
        })
        .collect();
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| {
            let (s, e) = (start.get(&p.partition).copied(), end.get(&p.partition).copied());
            let leader = if md.live_broker(p.leader.node_id).is_some() { p.leader.node_id } else { -1 };
            json!({
                "partition": p.partition,
                "leader": leader,
                "leader_shard": (leader >= 0).then_some(p.leader.shard),
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas.iter().map(|r| json!({"node_id": r.node_id, "shard": r.shard})).collect::<Vec<_>>(),
                "isr": p.isr,
                "log_start_offset": s,
                "high_watermark": e,
                "messages": s.zip(e).map(|(s, e)| (e - s).max(0)),
                "size_bytes": local.get(&(name.to_string(), p.partition)).map(|r| r.size_bytes as u64),
            })
        })
        .collect();
    Ok(json!({
        "name": t.name, "id": t.id.to_string(), "internal": t.internal,
        "partition_count": t.partitions.len(),
        "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
        "partitions": partitions,
        "configs": configs,
    }))
}

// ------------------------------------------------------------------ messages

/// How keys and values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    /// Pretty-printed when the bytes are JSON, else as text.
    Json,
    Hex,
    Base64,
}

impl Format {
    pub fn parse(s: Option<&str>) -> ApiResult<Format> {
        match s.unwrap_or("text") {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "hex" => Ok(Format::Hex),
            "base64" => Ok(Format::Base64),
            other => Err(ApiError::BadRequest(format!("format '{other}': expected text, json, hex or base64"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Hex => "hex",
            Format::Base64 => "base64",
        }
    }

    pub fn render(self, bytes: &[u8]) -> String {
        match self {
            Format::Text => String::from_utf8_lossy(bytes).into_owned(),
            Format::Json => match serde_json::from_slice::<Value>(bytes) {
                Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
                Err(_) => String::from_utf8_lossy(bytes).into_owned(),
            },
            Format::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            Format::Base64 => base64(bytes),
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Where the message browser starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Offset(i64),
    Timestamp(i64),
    /// The first offset still held.
    Beginning,
    /// The last `limit` messages.
    End,
}

/// What `/messages` was asked for.
#[derive(Debug, Clone, Copy)]
pub struct MessageQuery {
    pub partition: i32,
    pub start: Start,
    pub limit: usize,
    pub format: Format,
}

impl MessageQuery {
    pub fn parse(req: &Request) -> ApiResult<MessageQuery> {
        let int = |name: &str| -> ApiResult<Option<i64>> {
            req.param(name)
                .map(|v| v.trim().parse::<i64>().map_err(|_| ApiError::BadRequest(format!("{name} '{v}' is not an integer"))))
                .transpose()
        };
        let partition = int("partition")?.unwrap_or(0);
        if !(0..=i32::MAX as i64).contains(&partition) {
            return Err(ApiError::BadRequest(format!("partition {partition} is negative")));
        }
        let limit = int("limit")?.unwrap_or(MESSAGES_LIMIT_DEFAULT as i64);
        if !(1..=MESSAGES_LIMIT_MAX as i64).contains(&limit) {
            return Err(ApiError::BadRequest(format!("limit {limit}: expected 1..={MESSAGES_LIMIT_MAX}")));
        }
        if let Some(mode) = req.param("mode") {
            // The console's form: a mode and one position field.
            let position = req.param("position").map(str::trim);
            let need = |what: &str| {
                position.ok_or_else(|| ApiError::BadRequest(format!("starting at a {what} needs a position")))
            };
            let start = match mode {
                "start" => Start::Beginning,
                "end" => Start::End,
                "offset" => Start::Offset(
                    need("offset")?.parse().ok().filter(|o: &i64| *o >= 0).ok_or_else(|| {
                        ApiError::BadRequest("the offset must be a non-negative integer".to_string())
                    })?,
                ),
                "timestamp" => Start::Timestamp(need("timestamp")?.parse().map_err(|_| {
                    ApiError::BadRequest("the timestamp must be milliseconds since the epoch".to_string())
                })?),
                other => return Err(ApiError::BadRequest(format!("mode '{other}': expected start, end, offset or timestamp"))),
            };
            let format = Format::parse(req.param("format"))?;
            return Ok(MessageQuery { partition: partition as i32, start, limit: limit as usize, format });
        }
        let start = match (int("offset")?, int("timestamp")?, req.param("from")) {
            (Some(o), None, None) if o >= 0 => Start::Offset(o),
            (Some(o), None, None) => return Err(ApiError::BadRequest(format!("offset {o} is negative"))),
            (None, Some(ms), None) => Start::Timestamp(ms),
            (None, None, Some("end" | "latest" | "newest")) => Start::End,
            (None, None, Some("start" | "beginning" | "earliest" | "oldest")) | (None, None, None) => Start::Beginning,
            (None, None, Some(other)) => {
                return Err(ApiError::BadRequest(format!("from '{other}': expected start or end")))
            }
            _ => return Err(ApiError::BadRequest("give one of offset, timestamp or from".to_string())),
        };
        Ok(MessageQuery { partition: partition as i32, start, limit: limit as usize, format: Format::parse(req.param("format"))? })
    }
}

pub fn messages(admin: &Admin, topic: &str, req: &Request) -> ApiResult<Value> {
    let q = MessageQuery::parse(req)?;
    read_messages(admin, topic, q)
}

pub fn read_messages(admin: &Admin, topic: &str, q: MessageQuery) -> ApiResult<Value> {
    let md = admin.controller.current();
    let t = md.topic(topic).ok_or_else(|| ApiError::NotFound(format!("no topic {topic}")))?;
    if !t.partitions.iter().any(|p| p.partition == q.partition) {
        return Err(ApiError::NotFound(format!("no partition {} in topic {topic}", q.partition)));
    }
    let mut c = client(admin)?;
    c.refresh_metadata(Some(&[topic.to_string()]))?;
    let parts = [q.partition];
    let earliest = one(ops::list_offsets(&mut c, topic, &parts, OffsetSpec::Earliest)?, q.partition)?;
    let hw = one(ops::list_offsets(&mut c, topic, &parts, OffsetSpec::Latest)?, q.partition)?;
    let from = match q.start {
        Start::Offset(o) => o.clamp(earliest, hw),
        Start::Beginning => earliest,
        Start::End => (hw - q.limit as i64).max(earliest),
        Start::Timestamp(ms) => {
            let at = one(ops::list_offsets(&mut c, topic, &parts, OffsetSpec::Timestamp(ms))?, q.partition)?;
            if at < 0 {
                hw
            } else {
                at
            }
        }
    };
    let limits = FetchLimits { max_wait_ms: 100, partition_bytes_max: 1 << 20, response_bytes_max: 2 << 20 };
    let mut records = Vec::new();
    let mut next = from;
    for _ in 0..MESSAGES_FETCHES_MAX {
        if records.len() >= q.limit || next >= hw {
            break;
        }
        let fetched = ops::fetch(&mut c, topic, &BTreeMap::from([(q.partition, next)]), limits)?;
        let Some(pf) = fetched.into_values().next() else { break };
        if pf.records.is_empty() {
            break;
        }
        for r in pf.records {
            if records.len() < q.limit && r.offset < hw {
                next = r.offset + 1;
                records.push(r);
            }
        }
    }
    let render = |b: &Option<bytes::Bytes>| b.as_ref().map(|b| q.format.render(b));
    let list: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "offset": r.offset,
                "timestamp_ms": r.timestamp_ms,
                "key": render(&r.key),
                "value": render(&r.value),
                "key_bytes": r.key.as_ref().map(|b| b.len()),
                "value_bytes": r.value.as_ref().map(|b| b.len()),
                "headers": r.headers.iter().map(|(k, v)| json!({"key": k, "value": render(v)})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "topic": topic, "partition": q.partition, "format": q.format.name(),
        "start_offset": from, "next_offset": next,
        "log_start_offset": earliest, "high_watermark": hw,
        "messages": list,
    }))
}

fn one(map: BTreeMap<i32, i64>, partition: i32) -> ApiResult<i64> {
    map.get(&partition).copied().ok_or_else(|| ApiError::NotFound(format!("no offsets for partition {partition}")))
}

// ------------------------------------------------------------------ groups

pub fn groups(admin: &Admin) -> ApiResult<Value> {
    let mut c = client(admin)?;
    let list: Vec<Value> = ops::list_groups(&mut c)?
        .into_iter()
        .map(|g| json!({"group_id": g.group, "state": g.state, "protocol_type": g.protocol_type, "coordinator": g.coordinator}))
        .collect();
    Ok(json!({"groups": list}))
}

pub fn group(admin: &Admin, id: &str) -> ApiResult<Value> {
    let mut c = client(admin)?;
    let desc = ops::describe_group(&mut c, id)?;
    let committed = ops::committed_offsets(&mut c, id)?;
    if desc.state == "Dead" && committed.is_empty() {
        return Err(ApiError::NotFound(format!("no group {id}")));
    }
    let mut partitions: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    for m in &desc.members {
        partitions.extend(m.assignment.iter().cloned());
    }
    let owner: HashMap<(String, i32), &str> = desc
        .members
        .iter()
        .flat_map(|m| m.assignment.iter().map(move |tp| (tp.clone(), m.member_id.as_str())))
        .collect();
    let topics: BTreeSet<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
    let topic_list: Vec<String> = topics.iter().cloned().collect();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    if !topic_list.is_empty() {
        c.refresh_metadata(Some(&topic_list))?;
        for t in &topics {
            let parts: Vec<i32> = partitions.iter().filter(|(pt, _)| pt == t).map(|(_, p)| *p).collect();
            // A deleted topic or a leaderless partition has no end offset: no lag shown.
            if let Ok(offsets) = ops::list_offsets(&mut c, t, &parts, OffsetSpec::Latest) {
                ends.extend(offsets.into_iter().map(|(p, o)| ((t.clone(), p), o)));
            }
        }
    }
    let mut total_lag = 0i64;
    let offsets: Vec<Value> = partitions
        .iter()
        .map(|tp| {
            let committed = committed.get(tp).copied();
            let end = ends.get(tp).copied();
            let lag = committed.zip(end).map(|(c, e)| (e - c).max(0));
            total_lag += lag.unwrap_or(0);
            json!({
                "topic": tp.0, "partition": tp.1, "committed_offset": committed, "end_offset": end,
                "lag": lag, "member_id": owner.get(tp),
            })
        })
        .collect();
    let members: Vec<Value> = desc
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id, "group_instance_id": m.instance_id, "client_id": m.client_id,
                "client_host": m.client_host,
                "assignment": m.assignment.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "group_id": id, "state": desc.state, "protocol_type": desc.protocol_type, "protocol": desc.protocol,
        "coordinator": desc.coordinator.id, "members": members, "offsets": offsets, "total_lag": total_lag,
    }))
}

// ------------------------------------------------------------------ node

pub fn config(admin: &Admin) -> Value {
    let settings: serde_json::Map<String, Value> =
        admin.settings.iter().map(|(n, v)| (n.to_string(), v.clone().map_or(Value::Null, Value::String))).collect();
    json!({"node_id": admin.node_id, "settings": settings})
}

/// This node's byte and record counters (totals since start; a reader derives rates).
pub fn throughput(admin: &Admin) -> Value {
    let local = local_replicas(admin);
    let sum = |f: fn(&LocalReplica) -> f64| local.values().map(f).sum::<f64>() as u64;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    json!({
        "node_id": admin.node_id,
        "time_ms": now_ms,
        "bytes_in_total": sum(|r| r.bytes_in),
        "bytes_out_total": sum(|r| r.bytes_out),
        "messages_in_total": sum(|r| r.messages_in),
    })
}

/// Starts this node's controlled shutdown the way SIGTERM does: the signal
/// goes to this process and the signal thread triggers the shutdown, once
/// the 202 has been written (see `Response::shutdown_after`).
fn controlled_shutdown(admin: &Admin) -> ApiResult<Response> {
    if !admin.writes_enabled {
        return Err(ApiError::Forbidden);
    }
    let mut r = Response::json(202, &json!({"status": "controlled shutdown started", "node_id": admin.node_id}));
    r.shutdown_after = true;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Base64 matches the standard alphabet with padding.
    #[test]
    fn base64_is_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    /// Exposition lines parse into name, labels and value; comments do not.
    #[test]
    fn samples_parse() {
        let (n, l, v) = parse_sample(r#"kafka_log_log_size{topic="a\"b",partition="3",shard="0"} 42"#).unwrap();
        assert_eq!((n, v), ("kafka_log_log_size", 42.0));
        assert_eq!(l[0], ("topic".to_string(), "a\"b".to_string()));
        assert_eq!(l[1], ("partition".to_string(), "3".to_string()));
        assert!(parse_sample("# HELP x y").is_none());
        assert_eq!(parse_sample("up 1").unwrap().2, 1.0);
    }

    /// JSON values pretty-print; other bytes fall back to text.
    #[test]
    fn formats_render() {
        assert_eq!(Format::Json.render(br#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(Format::Json.render(b"plain"), "plain");
        assert_eq!(Format::Hex.render(&[0, 255]), "00ff");
    }
}
