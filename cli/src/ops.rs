//! Typed cluster operations on a [`Client`]: topics, configs, offsets,
//! produce, fetch, groups, cluster. Each takes and returns plain Rust types
//! so that the CLI, the admin HTTP and a web console can share them; none
//! prints anything. Partition-level requests go to the partition's leader,
//! group requests to the coordinator, topic admin to the controller.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest, GroupId,
    IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::client::{BrokerInfo, Client};
use crate::error::{Error, Result};
use crate::records::{self, FetchedRecord, NewRecord};

/// How long to wait between attempts after a retriable error.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Config resource type of a topic in DescribeConfigs / IncrementalAlterConfigs.
const RESOURCE_TOPIC: i8 = 2;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn strb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Runs `f` until it succeeds, fails with a non-retriable error, or the
/// client's timeout has passed; the metadata of `topics` is refreshed before
/// each retry (a new topic's leader, a moved leader).
pub fn retrying<T>(client: &mut Client, topics: &[String], mut f: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + client.config().timeout;
    loop {
        match f(client) {
            Err(e) if e.is_retriable() && Instant::now() + RETRY_BACKOFF < deadline => {
                std::thread::sleep(RETRY_BACKOFF);
                client.refresh_metadata(Some(topics))?;
            }
            other => return other,
        }
    }
}

// ------------------------------------------------------------------ topics

/// A topic to create. `partitions` and `replicas` of -1 take the broker's defaults.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replicas: i16,
    pub configs: Vec<(String, String)>,
}

/// Per-topic outcome of a create, delete, alter or add-partitions.
pub type TopicResults = Vec<(String, Result<()>)>;

pub fn create_topics(client: &mut Client, topics: &[NewTopic], timeout_ms: i32) -> Result<TopicResults> {
    let mut req = CreateTopicsRequest::default();
    req.timeout_ms = timeout_ms;
    let conn = client.controller()?;
    let version = conn.version_for::<CreateTopicsRequest>()?;
    req.topics = topics
        .iter()
        .map(|t| {
            let mut ct = CreatableTopic::default();
            ct.name = name(&t.name);
            // Before v4 the broker's defaults cannot be asked for with -1.
            ct.num_partitions = if t.partitions < 0 && version < 4 { 1 } else { t.partitions };
            ct.replication_factor = if t.replicas < 0 && version < 4 { 1 } else { t.replicas };
            ct.configs = t
                .configs
                .iter()
                .map(|(k, v)| {
                    let mut c = CreatableTopicConfig::default();
                    c.name = strb(k);
                    c.value = Some(strb(v));
                    c
                })
                .collect();
            ct
        })
        .collect();
    let resp = conn.send_at(&req, version)?;
    Ok(resp
        .topics
        .into_iter()
        .map(|t| {
            let n = t.name.0.to_string();
            let r = outcome(t.error_code, &format!("topic {n}"), t.error_message);
            (n, r)
        })
        .collect())
}

fn outcome(code: i16, context: &str, message: Option<StrBytes>) -> Result<()> {
    match Error::from_code(code, context.to_string(), message.map(|m| m.to_string())) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn delete_topics(client: &mut Client, topics: &[String], timeout_ms: i32) -> Result<TopicResults> {
    let conn = client.controller()?;
    let version = conn.version_for::<DeleteTopicsRequest>()?;
    let mut req = DeleteTopicsRequest::default();
    req.timeout_ms = timeout_ms;
    if version >= 6 {
        req.topics = topics
            .iter()
            .map(|t| {
                let mut s = DeleteTopicState::default();
                s.name = Some(name(t));
                s
            })
            .collect();
    } else {
        req.topic_names = topics.iter().map(|t| name(t)).collect();
    }
    let resp = conn.send_at(&req, version)?;
    Ok(resp
        .responses
        .into_iter()
        .map(|t| {
            let n = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            let r = outcome(t.error_code, &format!("topic {n}"), t.error_message);
            (n, r)
        })
        .collect())
}

/// Grows each topic to the given total partition count.
pub fn create_partitions(client: &mut Client, totals: &[(String, i32)], timeout_ms: i32) -> Result<TopicResults> {
    let mut req = CreatePartitionsRequest::default();
    req.timeout_ms = timeout_ms;
    req.topics = totals
        .iter()
        .map(|(t, count)| {
            let mut ct = CreatePartitionsTopic::default();
            ct.name = name(t);
            ct.count = *count;
            ct.assignments = None;
            ct
        })
        .collect();
    let resp = client.controller()?.send(&req)?;
    Ok(resp
        .results
        .into_iter()
        .map(|t| {
            let n = t.name.0.to_string();
            let r = outcome(t.error_code, &format!("topic {n}"), t.error_message);
            (n, r)
        })
        .collect())
}

/// One config entry of a topic.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's source name: DEFAULT_CONFIG, DYNAMIC_TOPIC_CONFIG, ...
    pub source: &'static str,
    pub read_only: bool,
    pub sensitive: bool,
}

fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// Every config of `topic`, sorted by name.
pub fn describe_topic_configs(client: &mut Client, topic: &str) -> Result<Vec<ConfigEntry>> {
    let mut res = DescribeConfigsResource::default();
    res.resource_type = RESOURCE_TOPIC;
    res.resource_name = strb(topic);
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let resp = client.any()?.send(&req)?;
    let result = resp
        .results
        .into_iter()
        .next()
        .ok_or_else(|| Error::Codec { api: "DescribeConfigs", reason: "no result in the answer".to_string() })?;
    outcome(result.error_code, &format!("configs of topic {topic}"), result.error_message)?;
    let mut entries: Vec<ConfigEntry> = result
        .configs
        .into_iter()
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: config_source_name(c.config_source),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Sets and deletes (resets to default) topic configs in one IncrementalAlterConfigs.
pub fn alter_topic_configs(
    client: &mut Client,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    const OP_SET: i8 = 0;
    const OP_DELETE: i8 = 1;
    let mut configs = Vec::new();
    for (k, v) in set {
        let mut c = AlterableConfig::default();
        c.name = strb(k);
        c.config_operation = OP_SET;
        c.value = Some(strb(v));
        configs.push(c);
    }
    for k in delete {
        let mut c = AlterableConfig::default();
        c.name = strb(k);
        c.config_operation = OP_DELETE;
        c.value = None;
        configs.push(c);
    }
    let mut res = AlterConfigsResource::default();
    res.resource_type = RESOURCE_TOPIC;
    res.resource_name = strb(topic);
    res.configs = configs;
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp = client.any()?.send(&req)?;
    let r = resp.responses.into_iter().next().ok_or_else(|| Error::Codec {
        api: "IncrementalAlterConfigs",
        reason: "no result in the answer".to_string(),
    })?;
    outcome(r.error_code, &format!("topic {topic}"), r.error_message)
}

// ------------------------------------------------------------------ offsets

/// Which offset ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after this (ms); -1 if none.
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// The offset `spec` names in each of `partitions` of `topic`, asking each
/// leader once. Needs the topic's metadata.
pub fn list_offsets(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    spec: OffsetSpec,
) -> Result<BTreeMap<i32, i64>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for &p in partitions {
        by_leader.entry(client.metadata().leader(topic, p)?).or_default().push(p);
    }
    let mut out = BTreeMap::new();
    for (leader, parts) in by_leader {
        let mut lt = ListOffsetsTopic::default();
        lt.name = name(topic);
        lt.partitions = parts
            .iter()
            .map(|&p| {
                let mut lp = ListOffsetsPartition::default();
                lp.partition_index = p;
                lp.current_leader_epoch = -1;
                lp.timestamp = spec.wire();
                lp
            })
            .collect();
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.isolation_level = 0;
        req.topics = vec![lt];
        let resp = client.broker(leader)?.send(&req)?;
        for t in resp.topics {
            for p in t.partitions {
                if let Some(e) = Error::from_code(p.error_code, format!("{topic}/{}", p.partition_index), None) {
                    return Err(e);
                }
                out.insert(p.partition_index, p.offset);
            }
        }
    }
    Ok(out)
}

/// `list_offsets` of every partition of `topic`, retried while leaders move.
pub fn topic_offsets(client: &mut Client, topic: &str, spec: OffsetSpec) -> Result<BTreeMap<i32, i64>> {
    let topics = [topic.to_string()];
    retrying(client, &topics, |c| {
        let parts: Vec<i32> = c.metadata().topic(topic)?.partitions.iter().map(|p| p.index).collect();
        list_offsets(c, topic, &parts, spec)
    })
}

// ------------------------------------------------------------------ produce and fetch

/// Produce acknowledgements: 0 (none), 1 (leader), -1 (all in-sync replicas).
pub fn produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: &[NewRecord],
    acks: i16,
) -> Result<Option<i64>> {
    let batch = records::encode_batch(records)?;
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(batch);
    let mut td = TopicProduceData::default();
    td.name = name(topic);
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = client.config().timeout.as_millis().min(i32::MAX as u128) as i32;
    req.topic_data = vec![td];
    let conn = client.leader(topic, partition)?;
    let version = conn.version_for::<ProduceRequest>()?;
    if acks == 0 {
        conn.send_no_response(&req, version)?;
        return Ok(None);
    }
    let resp = conn.send_at(&req, version)?;
    let p = resp
        .responses
        .into_iter()
        .flat_map(|t| t.partition_responses)
        .find(|p| p.index == partition)
        .ok_or_else(|| Error::Codec { api: "Produce", reason: "no answer for the partition".to_string() })?;
    outcome(p.error_code, &format!("{topic}/{partition}"), p.error_message)?;
    Ok(Some(p.base_offset))
}

/// What one Fetch returned for one partition.
#[derive(Debug, Clone)]
pub struct PartitionFetch {
    pub records: Vec<FetchedRecord>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Limits of one Fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_wait_ms: i32,
    pub partition_bytes_max: i32,
    pub response_bytes_max: i32,
}

/// Fetches `topic` from the given offset of each partition, one request per
/// leader. Records before the asked offset (a batch starts earlier) are dropped.
pub fn fetch(
    client: &mut Client,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    limits: FetchLimits,
) -> Result<BTreeMap<i32, PartitionFetch>> {
    let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
    for (&p, &offset) in positions {
        by_leader.entry(client.metadata().leader(topic, p)?).or_default().push((p, offset));
    }
    let mut out = BTreeMap::new();
    for (leader, parts) in by_leader {
        let mut ft = FetchTopic::default();
        ft.topic = name(topic);
        ft.partitions = parts
            .iter()
            .map(|&(p, offset)| {
                let mut fp = FetchPartition::default();
                fp.partition = p;
                fp.fetch_offset = offset;
                fp.partition_max_bytes = limits.partition_bytes_max;
                fp
            })
            .collect();
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = limits.max_wait_ms;
        req.min_bytes = 1;
        req.max_bytes = limits.response_bytes_max;
        req.isolation_level = 0;
        req.session_id = 0;
        req.session_epoch = -1;
        req.topics = vec![ft];
        let resp = client.broker(leader)?.send(&req)?;
        if let Some(e) = Error::from_code(resp.error_code, format!("fetch {topic}"), None) {
            return Err(e);
        }
        for t in resp.responses {
            for p in t.partitions {
                let context = format!("{topic}/{}", p.partition_index);
                if let Some(e) = Error::from_code(p.error_code, context, None) {
                    return Err(e);
                }
                let from = positions.get(&p.partition_index).copied().unwrap_or(0);
                let mut recs = records::decode_records(p.records.unwrap_or_default())?;
                recs.retain(|r| r.offset >= from);
                out.insert(
                    p.partition_index,
                    PartitionFetch {
                        records: recs,
                        high_watermark: p.high_watermark,
                        log_start_offset: p.log_start_offset,
                    },
                );
            }
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ groups

/// A group as ListGroups reports it.
#[derive(Debug, Clone)]
pub struct ListedGroup {
    pub group: String,
    /// Empty when the broker's ListGroups is older than v4.
    pub state: String,
    pub protocol_type: String,
    pub coordinator: i32,
}

/// Every group of the cluster: ListGroups asked of every broker.
pub fn list_groups(client: &mut Client) -> Result<Vec<ListedGroup>> {
    let ids: Vec<i32> = client.refresh_metadata(Some(&[]))?.brokers.keys().copied().collect();
    let mut out = Vec::new();
    for id in ids {
        let resp = client.broker(id)?.send(&ListGroupsRequest::default())?;
        if let Some(e) = Error::from_code(resp.error_code, format!("ListGroups on broker {id}"), None) {
            return Err(e);
        }
        for g in resp.groups {
            out.push(ListedGroup {
                group: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
                coordinator: id,
            });
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(out)
}

/// A member of a group and the partitions assigned to it.
#[derive(Debug, Clone)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// (topic, partition); empty for a non-consumer protocol.
    pub assignment: Vec<(String, i32)>,
}

/// DescribeGroups of one group.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub coordinator: BrokerInfo,
    pub members: Vec<GroupMember>,
}

pub fn describe_group(client: &mut Client, group: &str) -> Result<GroupDescription> {
    let coordinator_id = client.coordinator_id(group)?;
    let coordinator =
        client.metadata().brokers.get(&coordinator_id).cloned().ok_or(Error::UnknownBroker(coordinator_id))?;
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(strb(group))];
    let resp = client.broker(coordinator_id)?.send(&req)?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| Error::Codec { api: "DescribeGroups", reason: "no group in the answer".to_string() })?;
    outcome(g.error_code, &format!("group {group}"), g.error_message)?;
    let consumer = g.protocol_type.as_str() == "consumer";
    let members = g
        .members
        .into_iter()
        .map(|m| GroupMember {
            member_id: m.member_id.to_string(),
            instance_id: m.group_instance_id.map(|s| s.to_string()),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            assignment: if consumer { decode_assignment(m.member_assignment) } else { Vec::new() },
        })
        .collect();
    Ok(GroupDescription {
        group: group.to_string(),
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        coordinator,
        members,
    })
}

/// The consumer protocol's assignment (version, then topics and partitions);
/// undecodable bytes give no partitions rather than an error.
fn decode_assignment(mut data: Bytes) -> Vec<(String, i32)> {
    if data.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([data[0], data[1]]).clamp(0, 3);
    let _ = bytes::Buf::get_i16(&mut data);
    match ConsumerProtocolAssignment::decode(&mut data, version) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .flat_map(|tp| {
                let t = tp.topic.0.to_string();
                tp.partitions.into_iter().map(move |p| (t.clone(), p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The committed offset of every partition the group has committed for
/// (OffsetFetch of all topics), keyed by (topic, partition).
pub fn committed_offsets(client: &mut Client, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(strb(group));
    req.topics = None;
    let resp = client.coordinator(group)?.send(&req)?;
    if let Some(e) = Error::from_code(resp.error_code, format!("offsets of group {group}"), None) {
        return Err(e);
    }
    let mut out = BTreeMap::new();
    for t in resp.topics {
        let topic = t.name.0.to_string();
        for p in t.partitions {
            if let Some(e) =
                Error::from_code(p.error_code, format!("group {group} {topic}/{}", p.partition_index), None)
            {
                return Err(e);
            }
            if p.committed_offset >= 0 {
                out.insert((topic.clone(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// Commits offsets for a group that has no members (generation -1, no member
/// id), as `kafka-consumer-groups --reset-offsets` does. A group with members
/// is refused by the coordinator.
pub fn commit_offsets(client: &mut Client, group: &str, offsets: &BTreeMap<(String, i32), i64>) -> Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), &offset) in offsets {
        let mut cp = OffsetCommitRequestPartition::default();
        cp.partition_index = *p;
        cp.committed_offset = offset;
        cp.committed_leader_epoch = -1;
        cp.committed_metadata = Some(StrBytes::default());
        by_topic.entry(t).or_default().push(cp);
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(strb(group));
    req.generation_id_or_member_epoch = -1;
    req.member_id = StrBytes::default();
    req.group_instance_id = None;
    req.retention_time_ms = -1;
    req.topics = by_topic
        .into_iter()
        .map(|(t, parts)| {
            let mut ct = OffsetCommitRequestTopic::default();
            ct.name = name(t);
            ct.partitions = parts;
            ct
        })
        .collect();
    let resp = client.coordinator(group)?.send(&req)?;
    for t in resp.topics {
        for p in t.partitions {
            let context = format!("commit for group {group} {}/{}", t.name.0, p.partition_index);
            if let Some(e) = Error::from_code(p.error_code, context, None) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Deletes each group at its coordinator.
pub fn delete_groups(client: &mut Client, groups: &[String]) -> Result<Vec<(String, Result<()>)>> {
    let mut out = Vec::new();
    for g in groups {
        let r = client.coordinator(g).and_then(|conn| {
            let mut req = DeleteGroupsRequest::default();
            req.groups_names = vec![GroupId(strb(g))];
            let resp = conn.send(&req)?;
            let code = resp.results.iter().find(|r| r.group_id.0.as_str() == g).map_or(0, |r| r.error_code);
            outcome(code, &format!("group {g}"), None)
        });
        out.push((g.clone(), r));
    }
    Ok(out)
}

// ------------------------------------------------------------------ cluster

/// The cluster's id, controller and brokers.
#[derive(Debug, Clone)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
}

/// DescribeCluster where the broker supports it, else Metadata.
/// UnregisterBroker (any broker forwards it to the controller).
pub fn unregister_broker(client: &mut Client, broker_id: i32) -> Result<()> {
    let req = kafka_protocol::messages::UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker_id));
    let resp = client.any()?.send(&req)?;
    match Error::from_code(resp.error_code, format!("broker {broker_id}"), resp.error_message.map(|m| m.to_string())) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn describe_cluster(client: &mut Client) -> Result<ClusterDescription> {
    if client.any()?.version_for::<DescribeClusterRequest>().is_ok() {
        let resp = client.any()?.send(&DescribeClusterRequest::default())?;
        outcome(resp.error_code, "DescribeCluster", resp.error_message)?;
        let mut brokers: Vec<BrokerInfo> = resp
            .brokers
            .into_iter()
            .map(|b| BrokerInfo {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        return Ok(ClusterDescription {
            cluster_id: Some(resp.cluster_id.to_string()),
            controller_id: resp.controller_id.0,
            brokers,
        });
    }
    let md = client.refresh_metadata(Some(&[]))?;
    Ok(ClusterDescription {
        cluster_id: md.cluster_id.clone(),
        controller_id: md.controller_id,
        brokers: md.brokers.values().cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn consumer_assignment_decodes() {
        // Group describe shows which member owns which partition.
        let mut tp = TopicPartition::default();
        tp.topic = name("t");
        tp.partitions = vec![0, 2];
        let mut a = ConsumerProtocolAssignment::default();
        a.assigned_partitions = vec![tp];
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        a.encode(&mut buf, 1).unwrap();
        assert_eq!(decode_assignment(buf.freeze()), vec![("t".to_string(), 0), ("t".to_string(), 2)]);
        assert!(decode_assignment(Bytes::from_static(b"\x00")).is_empty());
    }
}
