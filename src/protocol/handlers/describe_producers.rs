//! DescribeProducers (key 61): the idempotent and transactional producers a
//! partition remembers (epoch, last sequence, last write, first offset of
//! the open transaction).
//!
//! Runs on the connection's shard; each partition's owner shard answers
//! from its producer state and transaction index.

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::error::ResponseError;
use crate::protocol::RequestContext;
use crate::shard::ShardState;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let md = ctx.shard.metadata();
    let node_id = ctx.shard.config.node_id;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partition_indexes.len());
        for &p in &t.partition_indexes {
            let resp = PartitionResponse::default().with_partition_index(p);
            let Some(pm) = md.partition(&t.name.0, p) else {
                partitions.push(resp.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            if pm.leader.node_id != node_id {
                partitions.push(resp.with_error_code(ResponseError::NotLeaderOrFollower.code()));
                continue;
            }
            let topic = t.name.0.to_string();
            let owner = ctx.shard.owner_of(pm.leader.shard);
            let found = ctx
                .shard
                .mesh
                .call(owner, move |s: Rc<ShardState>| async move {
                    s.local_partition(&topic, p).await.map(|part| part.describe_producers())
                })
                .await
                .ok()
                .flatten();
            partitions.push(match found {
                None => resp.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                Some(list) => resp.with_active_producers(
                    list.into_iter()
                        .map(|(id, epoch, last_seq, last_ms, txn_start)| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(id))
                                .with_producer_epoch(i32::from(epoch))
                                .with_last_sequence(last_seq)
                                .with_last_timestamp(last_ms)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(txn_start)
                        })
                        .collect(),
                ),
            });
        }
        topics.push(TopicResponse::default().with_name(t.name.clone()).with_partitions(partitions));
    }
    DescribeProducersResponse::default().with_topics(topics)
}
