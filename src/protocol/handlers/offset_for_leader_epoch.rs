//! OffsetForLeaderEpoch (key 23): for each partition, the largest leader
//! epoch at or below the one asked and the offset where it ended on the
//! leader's log (Kafka's `endOffsetFor`, KIP-101/279). Followers truncate
//! by it after a leader change; consumers (librdkafka, the Java client)
//! use it to detect log truncation after they see a new leader epoch.
//!
//! Runs on the connection's shard; each partition's owner shard answers
//! from its log's leader-epoch cache. Fenced like Fetch: an older
//! `current_leader_epoch` is FENCED_LEADER_EPOCH, a newer one
//! UNKNOWN_LEADER_EPOCH. Only the leader answers (v3+ followers' requests
//! and consumers' alike).

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::error::ResponseError;
use crate::protocol::RequestContext;
use crate::shard::ShardState;

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &RequestContext, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let md = ctx.shard.metadata();
    let node_id = ctx.shard.config.node_id;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let out = EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
            let Some(pm) = md.partition(&t.topic.0, p.partition) else {
                partitions.push(out.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            if pm.leader.node_id != node_id {
                partitions.push(out.with_error_code(ResponseError::NotLeaderOrFollower.code()));
                continue;
            }
            let topic = t.topic.0.to_string();
            let (partition, current, requested) = (p.partition, p.current_leader_epoch, p.leader_epoch);
            let owner = ctx.shard.owner_of(pm.leader.shard);
            let answer = ctx
                .shard
                .mesh
                .call(owner, move |s: Rc<ShardState>| async move {
                    let part = s.local_partition(&topic, partition).await?;
                    if !part.is_leader() {
                        return Some(Err(ResponseError::NotLeaderOrFollower.code()));
                    }
                    let ours = part.leader_epoch();
                    if current >= 0 && current < ours {
                        return Some(Err(ResponseError::FencedLeaderEpoch.code()));
                    }
                    if current > ours {
                        return Some(Err(ResponseError::UnknownLeaderEpoch.code()));
                    }
                    Some(Ok(part.log().end_offset_for_epoch(requested)))
                })
                .await
                .ok()
                .flatten();
            partitions.push(match answer {
                None => out.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                Some(Err(code)) => out.with_error_code(code),
                Some(Ok((epoch, end))) => out.with_leader_epoch(epoch).with_end_offset(end),
            });
        }
        topics.push(OffsetForLeaderTopicResult::default().with_topic(t.topic.clone()).with_partitions(partitions));
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
