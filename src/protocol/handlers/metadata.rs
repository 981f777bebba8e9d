//! Metadata (key 3): brokers, topics, partitions and their leaders.
//! Creates requested topics that do not exist when auto-creation is on and
//! the client allows it (v4+ flag; always allowed below v4, as in Kafka).

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::{controller_error_code, ResponseError};
use crate::metadata::{ClusterMetadata, TopicMeta};
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 12;

/// "Not requested" for authorized-operations fields.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let version = ctx.api_version;
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested: Option<Vec<(Option<String>, uuid::Uuid)>> = match req.topics {
        None => None,
        Some(ref t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()),
    };
    let allow_auto_create = version < 4 || req.allow_auto_topic_creation;
    let mut create_errors = Vec::new();
    if let (Some(requested), true) = (&requested, allow_auto_create) {
        let md = ctx.shard.metadata();
        let missing: Vec<String> =
            requested.iter().filter_map(|(n, _)| n.clone()).filter(|n| md.topic(n).is_none()).collect();
        if !missing.is_empty() && ctx.shard.config.auto_create_topics_enable {
            create_errors = ctx.shard.auto_create_topics(missing).await;
        }
    }
    let md = ctx.shard.metadata();
    let topics = match requested {
        None => md.topics.values().map(|t| topic_entry(&md, t)).collect(),
        Some(requested) => requested
            .into_iter()
            .map(|(name, id)| {
                let found = match &name {
                    Some(n) => md.topic(n),
                    None => md.topic_by_id(id),
                };
                match found {
                    Some(t) => topic_entry(&md, t),
                    None => {
                        let code = name
                            .as_ref()
                            .and_then(|n| create_errors.iter().find(|(c, _)| c == n))
                            .and_then(|(_, r)| r.as_ref().err())
                            .map(controller_error_code)
                            .unwrap_or_else(|| match &name {
                                Some(n) if crate::metadata::validate_topic_name(n).is_err() => {
                                    ResponseError::InvalidTopicException.code()
                                }
                                Some(_) => ResponseError::UnknownTopicOrPartition.code(),
                                None => ResponseError::UnknownTopicId.code(),
                            });
                        MetadataResponseTopic::default()
                            .with_error_code(code)
                            .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
                            .with_topic_id(id)
                            .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
                    }
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(brokers(&md, &ctx.listener))
        .with_cluster_id(Some(StrBytes::from_string(md.cluster_id.clone())))
        .with_controller_id(BrokerId(md.client_controller_id()))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
}

/// The brokers clients may use (registered, not fenced), each with its
/// address on `listener`, the listener the client came in on; brokers
/// without that listener are left out, as Kafka does.
pub fn brokers(md: &ClusterMetadata, listener: &str) -> Vec<MetadataResponseBroker> {
    md.live_brokers()
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(port)
                .with_rack(b.rack.clone().map(StrBytes::from_string)))
        })
        .collect()
}

fn topic_entry(md: &ClusterMetadata, t: &TopicMeta) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            // A fenced leader leads nothing: the partition is offline until it
            // returns (or, once replication exists, another replica takes over).
            let leader_known = md.live_broker(p.leader.node_id).is_some();
            let offline: Vec<BrokerId> =
                p.replicas.iter().filter(|r| md.live_broker(r.node_id).is_none()).map(|r| BrokerId(r.node_id)).collect();
            MetadataResponsePartition::default()
                .with_error_code(if leader_known { 0 } else { ResponseError::LeaderNotAvailable.code() })
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(if leader_known { p.leader.node_id } else { -1 }))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(r.node_id)).collect())
                .with_isr_nodes(p.isr.iter().filter(|&&n| md.live_broker(n).is_some()).map(|&n| BrokerId(n)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(0)
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
}
