//! TxnOffsetCommit (key 28): offsets committed inside a transaction
//! (sendOffsetsToTransaction): written at once to the group's
//! `__consumer_offsets` partition as a transactional batch, they count from
//! the transaction's COMMIT marker there (`coordinator::txn_offsets`).
//!
//! Runs on the connection's shard; the group coordinator's shard keeps them.

use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::coordinator::{self, txn_offsets};
use crate::error::group_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &RequestContext, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let offsets: Vec<(String, i32, i64, i32, Option<String>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect();
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    let member = txn_offsets::TxnMember {
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
    };
    let result = match coordinator::locate(&ctx.shard, &group, false).await {
        Ok(route) => {
            let g = group.clone();
            coordinator::call_partition(&ctx.shard, route, move |s, op| txn_offsets::add(s, op, g, pid, epoch, member, offsets)).await
        }
        Err(e) => Err(e),
    };
    let mut codes = match &result {
        Ok(per) => per.iter().map(|r| r.as_ref().err().map_or(0, group_error_code)).collect::<Vec<_>>().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let whole = result.as_ref().err().map(group_error_code);
    let topics = req
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        let code = whole.unwrap_or_else(|| codes.next().unwrap_or(0));
                        TxnOffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
