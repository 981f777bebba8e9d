//! ElectLeaders (key 43): preferred leader election (election type 0), as
//! `kafka-leader-election.sh --election-type preferred` and
//! `AdminClient.elect_leaders` send it; unclean election (type 1) is
//! answered per partition without moving anything that has a leader.
//!
//! Runs on the connection's shard. Each partition is judged against the
//! current metadata (ELECTION_NOT_NEEDED when the preferred replica leads,
//! PREFERRED_LEADER_NOT_AVAILABLE when it is fenced or out of sync); the
//! eligible ones go to the controller as one command, forwarded to the
//! active controller from any broker.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::{controller_error_code, ResponseError};
use crate::metadata::ClusterMetadata;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

const PREFERRED: i8 = 0;

pub async fn handle(ctx: &RequestContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let md = ctx.shard.metadata();
    // A null list means every partition.
    let asked: Vec<(String, i32)> = match &req.topic_partitions {
        Some(tps) => tps.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p))).collect(),
        None => md.topics.values().flat_map(|t| t.partitions.iter().map(move |p| (t.name.clone(), p.partition))).collect(),
    };
    let mut results: Vec<(String, i32, i16, Option<String>)> = Vec::with_capacity(asked.len());
    let mut eligible = Vec::new();
    for (topic, partition) in asked {
        let (code, message) = judge(&md, &topic, partition, req.election_type);
        if code == 0 {
            eligible.push((topic.clone(), partition));
        }
        results.push((topic, partition, code, message));
    }
    if !eligible.is_empty() {
        if let Err(e) = ctx.shard.controller.elect_preferred_leaders(Some(eligible)).await {
            let code = controller_error_code(&e);
            for r in results.iter_mut().filter(|r| r.2 == 0) {
                r.2 = code;
                r.3 = Some(e.to_string());
            }
        }
    }
    let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, partition, code, message) in results {
        let pr = PartitionResult::default().with_partition_id(partition).with_error_code(code).with_error_message(message.map(StrBytes::from_string));
        match by_topic.iter_mut().find(|r| r.topic.0.as_str() == topic) {
            Some(r) => r.partition_result.push(pr),
            None => by_topic.push(ReplicaElectionResult::default().with_topic(TopicName(StrBytes::from_string(topic))).with_partition_result(vec![pr])),
        }
    }
    ElectLeadersResponse::default().with_error_code(0).with_replica_election_results(by_topic)
}

/// Kafka's per-partition answer before anything moves.
fn judge(md: &ClusterMetadata, topic: &str, partition: i32, election_type: i8) -> (i16, Option<String>) {
    let Some(p) = md.partition(topic, partition) else {
        return (ResponseError::UnknownTopicOrPartition.code(), Some(format!("The partition {topic}-{partition} does not exist.")));
    };
    if election_type != PREFERRED {
        return if md.live_broker(p.leader.node_id).is_some() {
            (ResponseError::ElectionNotNeeded.code(), Some("Leader election not needed for topic partition.".into()))
        } else {
            (ResponseError::EligibleLeadersNotAvailable.code(), Some("Unclean election through ElectLeaders is not supported; set unclean.leader.election.enable on the topic.".into()))
        };
    }
    let Some(preferred) = p.replicas.first().map(|r| r.node_id) else {
        return (ResponseError::PreferredLeaderNotAvailable.code(), None);
    };
    if p.leader.node_id == preferred {
        return (ResponseError::ElectionNotNeeded.code(), Some("Leader election not needed for topic partition.".into()));
    }
    if md.live_broker(preferred).is_none() || !p.isr.contains(&preferred) {
        return (ResponseError::PreferredLeaderNotAvailable.code(), Some(format!("Failed to elect leader for partition {topic}-{partition} under strategy PreferredReplicaPartitionLeaderElectionStrategy")));
    }
    (0, None)
}
