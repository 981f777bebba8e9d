//! DescribeQuorum (key 55): the metadata quorum (`kafka-metadata-quorum.sh
//! describe --status / --replication`, the AdminClient's
//! `describeMetadataQuorum`). As on a Kafka broker, the request is answered
//! with the active controller's view: it is forwarded there through the
//! controller (openraft) and the leader's replication progress comes back.
//!
//! Only `__cluster_metadata` partition 0 exists; anything else is
//! UNKNOWN_TOPIC_OR_PARTITION, as Kafka's Raft client answers.

use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::controller::ops::{QuorumDescription, QuorumReplica};
use crate::error::{controller_error_code, ResponseError};
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The name Kafka gives the controller listener in DescribeQuorum v2's nodes.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub async fn handle(ctx: &RequestContext, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let asks_metadata = req.topics.iter().any(|t| t.topic_name.0.as_str() == METADATA_TOPIC && t.partitions.iter().any(|p| p.partition_index == 0));
    let valid = req.topics.len() == 1 && req.topics[0].partitions.len() == 1 && asks_metadata;
    if !valid {
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_static_str("DescribeQuorum asks for __cluster_metadata partition 0 only")));
    }
    let partition = PartitionData::default().with_partition_index(0);
    let (partition, nodes) = match ctx.shard.controller.describe_quorum().await {
        Ok(q) => (describe(partition, &q), if ctx.api_version >= 2 { nodes(&q) } else { Vec::new() }),
        Err(e) => (
            partition
                .with_error_code(controller_error_code(&e))
                .with_error_message(Some(StrBytes::from_string(e.to_string())))
                .with_leader_id(BrokerId(-1))
                .with_leader_epoch(-1)
                .with_high_watermark(-1),
            Vec::new(),
        ),
    };
    let topic = TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![partition]);
    DescribeQuorumResponse::default().with_error_code(0).with_topics(vec![topic]).with_nodes(nodes)
}

fn describe(partition: PartitionData, q: &QuorumDescription) -> PartitionData {
    partition
        .with_error_code(0)
        .with_leader_id(BrokerId(q.leader_id))
        .with_leader_epoch(q.leader_epoch)
        .with_high_watermark(q.high_watermark)
        .with_current_voters(q.voters.iter().map(replica_state).collect())
        .with_observers(q.observers.iter().map(replica_state).collect())
}

fn replica_state(r: &QuorumReplica) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(BrokerId(r.node_id))
        .with_log_end_offset(r.log_end_offset)
        .with_last_fetch_timestamp(r.last_fetch_timestamp_ms)
        .with_last_caught_up_timestamp(r.last_caught_up_timestamp_ms)
}

/// v2: the voters' controller endpoints.
fn nodes(q: &QuorumDescription) -> Vec<Node> {
    q.voters
        .iter()
        .filter_map(|v| {
            let addr = v.addr.as_deref()?;
            let (host, port) = addr.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            let listener = Listener::default()
                .with_name(StrBytes::from_static_str(CONTROLLER_LISTENER))
                .with_host(StrBytes::from_string(host.trim_matches(['[', ']']).to_string()))
                .with_port(port);
            Some(Node::default().with_node_id(BrokerId(v.node_id)).with_listeners(vec![listener]))
        })
        .collect()
}
