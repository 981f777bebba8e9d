//! Produce (key 0): validate batches here, append them on the owning shards.
//!
//! Batches are checked (length, magic 2, CRC32C) on the connection's shard,
//! spreading that CPU over all shards, then each owner shard gets its
//! partitions' batches in one mesh call. Records are never decoded:
//! compressed batches stay compressed. acks=0 gets no response; acks=1 is
//! answered once the write reached the kernel, acks=all once it is synced.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use crate::error::{batch_error_code, partition_error_code, ResponseError};
use crate::metadata::ShardId;
use crate::partition::Durability;
use crate::protocol::RequestContext;
use crate::shard::ShardState;
use crate::storage::{validate_batches, BatchHeader};

/// KAFKA-18659: librdkafka disables compression if Produce's floor is above 0,
/// so 0 is advertised; batches older than v2 (magic 2) are refused per batch.
pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 11;

/// One partition's batches on their way to the owner shard.
struct LocalAppend {
    slot: (usize, usize),
    topic: String,
    partition: i32,
    records: Bytes,
    headers: Vec<BatchHeader>,
}

struct SlotResult {
    slot: (usize, usize),
    error_code: i16,
    base_offset: i64,
    log_start_offset: i64,
}

pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Option<ProduceResponse> {
    let acks = req.acks;
    let mut response = skeleton(&req);
    let fill_all = |response: &mut ProduceResponse, code: i16| {
        for t in response.responses.iter_mut() {
            for p in t.partition_responses.iter_mut() {
                p.error_code = code;
            }
        }
    };
    if !matches!(acks, -1 | 0 | 1) {
        fill_all(&mut response, ResponseError::InvalidRequiredAcks.code());
        return Some(response);
    }
    if req.transactional_id.is_some() {
        // Transactions are not served yet (issue 5): refuse rather than pretend.
        fill_all(&mut response, ResponseError::TransactionalIdAuthorizationFailed.code());
        return (acks != 0).then_some(response);
    }
    let missing: Vec<String> = {
        let md = ctx.shard.metadata();
        req.topic_data.iter().map(|t| t.name.0.to_string()).filter(|n| md.topic(n).is_none()).collect()
    };
    if !missing.is_empty() {
        ctx.shard.auto_create_topics(missing).await;
    }
    let md = ctx.shard.metadata();
    let node_id = ctx.shard.config.node_id;
    let mut by_shard: BTreeMap<ShardId, Vec<LocalAppend>> = BTreeMap::new();
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let meta = md.topic(&name);
        let max_batch_bytes = meta
            .and_then(|t| t.configs.get("max.message.bytes"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(ctx.shard.config.message_max_bytes as usize);
        for (pi, part) in topic.partition_data.into_iter().enumerate() {
            let slot = &mut response.responses[ti].partition_responses[pi];
            let Some(meta) = meta else {
                slot.error_code = if crate::metadata::validate_topic_name(&name).is_err() {
                    ResponseError::InvalidTopicException.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                continue;
            };
            let Some(pmeta) = usize::try_from(part.index).ok().and_then(|i| meta.partitions.get(i)) else {
                slot.error_code = ResponseError::UnknownTopicOrPartition.code();
                continue;
            };
            if pmeta.leader.node_id != node_id {
                slot.error_code = ResponseError::NotLeaderOrFollower.code();
                continue;
            }
            let records = part.records.unwrap_or_default();
            let headers = match validate_batches(&records) {
                Ok(h) => h,
                Err(e) => {
                    tracing::debug!(topic = %name, partition = part.index, error = ?e, "rejected batch");
                    slot.error_code = batch_error_code(&e);
                    continue;
                }
            };
            if headers.iter().any(|h| h.total_size() > max_batch_bytes) {
                slot.error_code = ResponseError::MessageTooLarge.code();
                continue;
            }
            if headers.iter().any(|h| h.is_transactional() || h.is_control()) {
                slot.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
                continue;
            }
            by_shard.entry(ctx.shard.owner_of(pmeta.leader.shard)).or_default().push(LocalAppend {
                slot: (ti, pi),
                topic: name.clone(),
                partition: part.index,
                records,
                headers,
            });
        }
    }
    let durability = if acks == -1 { Durability::Synced } else { Durability::Written };
    let mut calls = Vec::with_capacity(by_shard.len());
    for (shard, appends) in by_shard {
        let mesh = ctx.shard.mesh.clone();
        calls.push(glommio::spawn_local(async move {
            let slots: Vec<(usize, usize)> = appends.iter().map(|a| a.slot).collect();
            match mesh.call(shard, move |s: Rc<ShardState>| append_local(s, appends, durability)).await {
                Ok(results) => results,
                Err(_) => slots
                    .into_iter()
                    .map(|slot| SlotResult {
                        slot,
                        error_code: ResponseError::NotLeaderOrFollower.code(),
                        base_offset: -1,
                        log_start_offset: -1,
                    })
                    .collect(),
            }
        }));
    }
    for call in calls {
        for r in call.await {
            let p = &mut response.responses[r.slot.0].partition_responses[r.slot.1];
            p.error_code = r.error_code;
            p.base_offset = r.base_offset;
            p.log_start_offset = r.log_start_offset;
        }
    }
    (acks != 0).then_some(response)
}

/// Runs on the owner shard: appends each partition's batches concurrently.
async fn append_local(shard: Rc<ShardState>, appends: Vec<LocalAppend>, durability: Durability) -> Vec<SlotResult> {
    let mut tasks = Vec::with_capacity(appends.len());
    for a in appends {
        let shard = shard.clone();
        tasks.push(glommio::spawn_local(async move {
            let Some(partition) = shard.local_partition(&a.topic, a.partition).await else {
                return SlotResult {
                    slot: a.slot,
                    error_code: ResponseError::NotLeaderOrFollower.code(),
                    base_offset: -1,
                    log_start_offset: -1,
                };
            };
            // The frame's bytes are shared with the decoded request: patching
            // offsets in place needs a copy of our own.
            let batches = BytesMut::from(&a.records[..]);
            match partition.append(batches, &a.headers, durability).await {
                Ok(r) => SlotResult {
                    slot: a.slot,
                    error_code: 0,
                    base_offset: r.base_offset,
                    log_start_offset: partition.log_start_offset(),
                },
                Err(e) => {
                    tracing::warn!(topic = %a.topic, partition = a.partition, error = ?e, "append failed");
                    SlotResult {
                        slot: a.slot,
                        error_code: partition_error_code(&e),
                        base_offset: -1,
                        log_start_offset: -1,
                    }
                }
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// A response with one entry per requested partition, in request order.
fn skeleton(req: &ProduceRequest) -> ProduceResponse {
    let responses = req
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
