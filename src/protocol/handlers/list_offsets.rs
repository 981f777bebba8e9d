//! ListOffsets (key 2): earliest, latest, max-timestamp and by-timestamp
//! offsets, answered by the owning shards. With isolation level 1
//! (read_committed) "latest" is the last stable offset.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::error::{storage_error_code, ResponseError};
use crate::metadata::ShardId;
use crate::protocol::RequestContext;
use crate::shard::ShardState;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 8;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

struct Lookup {
    slot: (usize, usize),
    topic: String,
    partition: i32,
    timestamp: i64,
    read_committed: bool,
}

struct Found {
    slot: (usize, usize),
    error_code: i16,
    timestamp: i64,
    offset: i64,
    leader_epoch: i32,
}

pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let md = ctx.shard.metadata();
    let node_id = ctx.shard.config.node_id;
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut by_shard: BTreeMap<ShardId, Vec<Lookup>> = BTreeMap::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let meta = md.topic(&t.name.0);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut resp = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let pmeta = meta.and_then(|m| usize::try_from(p.partition_index).ok().and_then(|i| m.partitions.get(i)));
            match pmeta {
                None => resp.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(pm) if pm.leader.node_id != node_id => {
                    resp.error_code = ResponseError::NotLeaderOrFollower.code()
                }
                Some(pm) => by_shard.entry(ctx.shard.owner_of(pm.leader.shard)).or_default().push(Lookup {
                    slot: (ti, pi),
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    timestamp: p.timestamp,
                    read_committed: req.isolation_level == 1,
                }),
            }
            partitions.push(resp);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(partitions));
    }
    let mut calls = Vec::new();
    for (shard, lookups) in by_shard {
        let mesh = ctx.shard.mesh.clone();
        calls.push(glommio::spawn_local(async move {
            let slots: Vec<(usize, usize)> = lookups.iter().map(|l| l.slot).collect();
            match mesh.call(shard, move |s: Rc<ShardState>| lookup_local(s, lookups)).await {
                Ok(found) => found,
                Err(_) => slots
                    .into_iter()
                    .map(|slot| Found {
                        slot,
                        error_code: ResponseError::NotLeaderOrFollower.code(),
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: -1,
                    })
                    .collect(),
            }
        }));
    }
    for c in calls {
        for f in c.await {
            let p = &mut topics[f.slot.0].partitions[f.slot.1];
            p.error_code = f.error_code;
            p.timestamp = f.timestamp;
            p.offset = f.offset;
            // leader_epoch exists from v4 on; older versions must leave it unset.
            p.leader_epoch = if ctx.api_version >= 4 { f.leader_epoch } else { -1 };
        }
    }
    ListOffsetsResponse::default().with_topics(topics)
}

async fn lookup_local(shard: Rc<ShardState>, lookups: Vec<Lookup>) -> Vec<Found> {
    let mut out = Vec::with_capacity(lookups.len());
    for l in lookups {
        let Some(p) = shard.local_partition(&l.topic, l.partition).await else {
            out.push(Found {
                slot: l.slot,
                error_code: ResponseError::NotLeaderOrFollower.code(),
                timestamp: -1,
                offset: -1,
                leader_epoch: -1,
            });
            continue;
        };
        let epoch = p.leader_epoch();
        let found = |timestamp, offset| Found { slot: l.slot, error_code: 0, timestamp, offset, leader_epoch: epoch };
        out.push(match l.timestamp {
            LATEST if l.read_committed => found(-1, p.last_stable_offset()),
            LATEST => found(-1, p.high_watermark()),
            EARLIEST | EARLIEST_LOCAL => found(-1, p.log_start_offset()),
            MAX_TIMESTAMP => match p.log().max_timestamp() {
                Some((ts, offset)) => found(ts, offset),
                None => found(-1, -1),
            },
            ts if ts < 0 => Found {
                slot: l.slot,
                error_code: ResponseError::InvalidRequest.code(),
                timestamp: -1,
                offset: -1,
                leader_epoch: -1,
            },
            ts => match p.log().offset_for_timestamp(ts).await {
                // Never point past what consumers may read.
                // Nor below the log start (DeleteRecords may cut inside a batch or segment).
                Ok(Some((offset, t))) if offset < p.high_watermark() => found(t, offset.max(p.log_start_offset())),
                Ok(_) => found(-1, -1),
                Err(e) => Found {
                    slot: l.slot,
                    error_code: storage_error_code(&e),
                    timestamp: -1,
                    offset: -1,
                    leader_epoch: -1,
                },
            },
        });
    }
    out
}
