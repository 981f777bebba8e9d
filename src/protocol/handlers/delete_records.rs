//! DeleteRecords (key 21): move partitions' log start offsets forward.
//!
//! Runs on the connection's shard, which splits the request by owning shard
//! and calls each owner once through the mesh (as produce and fetch do). On
//! the owner, `Log::delete_records` makes the data up to the new start
//! durable, checkpoints the start (so a restart keeps it) and deletes whole
//! segments below it. Offset -1 means the high watermark. An offset above the
//! high watermark (or below -1) is OFFSET_OUT_OF_RANGE; one at or below the
//! current start changes nothing. The answer's low watermark is the log start
//! offset afterwards. With one replica per partition there is nothing to wait
//! for on followers, so `timeout_ms` is not used.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::error::{storage_error_code, ResponseError};
use crate::metadata::ShardId;
use crate::protocol::RequestContext;
use crate::shard::ShardState;

/// Kafka 4.0 keeps DeleteRecords v0-v2.
pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

/// "Delete up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

struct Part {
    slot: (usize, usize),
    topic: String,
    partition: i32,
    offset: i64,
}

struct PartOut {
    slot: (usize, usize),
    error_code: i16,
    low_watermark: i64,
}

pub async fn handle(ctx: &RequestContext, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let md = ctx.shard.metadata();
    let node_id = ctx.shard.config.node_id;
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut by_shard: BTreeMap<ShardId, Vec<Part>> = BTreeMap::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let name = t.name.0.to_string();
        let meta = md.topic(&name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut out = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let pmeta = meta.and_then(|m| usize::try_from(p.partition_index).ok().and_then(|i| m.partitions.get(i)));
            match pmeta {
                None => out.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(pm) if pm.leader.node_id != node_id => out.error_code = ResponseError::NotLeaderOrFollower.code(),
                Some(_) if p.offset < HIGH_WATERMARK => out.error_code = ResponseError::OffsetOutOfRange.code(),
                Some(pm) => by_shard.entry(ctx.shard.owner_of(pm.leader.shard)).or_default().push(Part {
                    slot: (ti, pi),
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: p.offset,
                }),
            }
            partitions.push(out);
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name.clone()).with_partitions(partitions));
    }
    let mut calls = Vec::with_capacity(by_shard.len());
    for (shard, parts) in by_shard {
        let mesh = ctx.shard.mesh.clone();
        calls.push(glommio::spawn_local(async move {
            let slots: Vec<(usize, usize)> = parts.iter().map(|p| p.slot).collect();
            match mesh.call(shard, move |s: Rc<ShardState>| delete_local(s, parts)).await {
                Ok(outs) => outs,
                Err(_) => slots
                    .into_iter()
                    .map(|slot| PartOut { slot, error_code: ResponseError::NotLeaderOrFollower.code(), low_watermark: -1 })
                    .collect(),
            }
        }));
    }
    for call in calls {
        for o in call.await {
            let p = &mut topics[o.slot.0].partitions[o.slot.1];
            p.error_code = o.error_code;
            p.low_watermark = o.low_watermark;
        }
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// On the owner shard: one partition after the other (each may fdatasync).
async fn delete_local(shard: Rc<ShardState>, parts: Vec<Part>) -> Vec<PartOut> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let Some(partition) = shard.local_partition(&p.topic, p.partition).await else {
            out.push(PartOut { slot: p.slot, error_code: ResponseError::NotLeaderOrFollower.code(), low_watermark: -1 });
            continue;
        };
        let offset = if p.offset == HIGH_WATERMARK { partition.high_watermark() } else { p.offset };
        if offset > partition.high_watermark() {
            out.push(PartOut { slot: p.slot, error_code: ResponseError::OffsetOutOfRange.code(), low_watermark: -1 });
            continue;
        }
        match partition.log().delete_records(offset).await {
            Ok(t) => {
                if t.segments_deleted > 0 || t.log_start_offset == offset {
                    tracing::info!(topic = %p.topic, partition = p.partition, log_start = t.log_start_offset, segments = t.segments_deleted, "deleted records");
                }
                out.push(PartOut { slot: p.slot, error_code: 0, low_watermark: t.log_start_offset });
            }
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "DeleteRecords failed");
                out.push(PartOut { slot: p.slot, error_code: storage_error_code(&e), low_watermark: -1 });
            }
        }
    }
    out
}
