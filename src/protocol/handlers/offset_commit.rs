//! OffsetCommit (key 8): store a group's consumed positions durably.
//!
//! Decoded on the connection's shard; the coordinator shard checks the
//! member and generation, appends the OffsetCommit records to
//! `__consumer_offsets` and answers once they are fdatasync'ed. v2 is
//! Kafka 4.0's floor (KIP-896); v9 is the newest kafka-protocol knows.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::coordinator::{self, ops};
use crate::error::group_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 9;

pub async fn handle(ctx: &RequestContext, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let params = ops::CommitParams {
        group_id: req.group_id.to_string(),
        generation: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        offsets: req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.committed_metadata.as_ref().map(|m| m.to_string()),
                    )
                })
            })
            .collect(),
    };
    let result = match coordinator::validate_group_id(&params.group_id) {
        Err(e) => Err(e),
        Ok(()) => match coordinator::locate(&ctx.shard, &params.group_id, true).await {
            Err(e) => Err(e),
            Ok(route) => coordinator::call_partition(&ctx.shard, route, move |s, op| ops::commit(s, op, params)).await,
        },
    };
    let mut codes = match result {
        Ok(results) => results.into_iter().map(|r| r.err().map_or(0, |e| group_error_code(&e))).collect::<Vec<_>>(),
        Err(e) => vec![group_error_code(&e); req.topics.iter().map(|t| t.partitions.len()).sum()],
    }
    .into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_topic_id(t.topic_id).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(codes.next().unwrap_or(0))
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
