//! Produce (key 0): validate batches here, append them on the owning shards.
//!
//! Batches are checked (length, magic 2, CRC32C) on the connection's shard,
//! spreading that CPU over all shards, then each owner shard gets its
//! partitions' batches in one mesh call. Records are never decoded, except
//! on compacted topics, whose records must have keys (checked here, inside
//! compressed batches too); compressed batches are stored compressed.
//! acks=0 gets no response; acks=1 is
//! answered once the write reached the kernel, acks=all once it is synced.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::StrBytes;
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
    /// The topic's min.insync.replicas (acks=all checks it again after the wait).
    min_insync: usize,
}

struct SlotResult {
    slot: (usize, usize),
    topic: String,
    partition: i32,
    error_code: i16,
    base_offset: i64,
    /// One past the last appended offset.
    end_offset: i64,
    log_start_offset: i64,
    log_append_time_ms: i64,
    min_insync: usize,
}

impl SlotResult {
    fn failed(slot: (usize, usize), error_code: i16) -> Self {
        SlotResult {
            slot,
            topic: String::new(),
            partition: -1,
            error_code,
            base_offset: -1,
            end_offset: -1,
            log_start_offset: -1,
            log_append_time_ms: -1,
            min_insync: 0,
        }
    }
}

pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> ProduceOutcome {
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
        return ProduceOutcome::Respond(response);
    }
    let transactional = req.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty());
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
    let mut leader_hints: Vec<NodeEndpoint> = Vec::new();
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let meta = md.topic(&name);
        let max_batch_bytes = meta
            .and_then(|t| t.configs.get("max.message.bytes"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(ctx.shard.config.message_max_bytes as usize);
        // Kafka refuses keyless records on compacted topics; one config lookup per topic
        // is all other topics pay. The internal topics are written by the broker itself.
        let compacted = meta.is_some_and(|t| {
            !matches!(name.as_str(), crate::coordinator::OFFSETS_TOPIC | crate::txn::TXN_TOPIC)
                && t.configs.get("cleanup.policy").is_some_and(|p| p.split(',').any(|i| i.trim() == "compact"))
        });
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
                // KIP-951 (v10+): say who leads, so the client need not refresh metadata first.
                if let Some(b) = md.live_broker(pmeta.leader.node_id) {
                    slot.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(pmeta.leader.node_id))
                        .with_leader_epoch(pmeta.leader_epoch);
                    if let Some((host, port)) = ctx.endpoint_of(b) {
                        if !leader_hints.iter().any(|e| e.node_id.0 == b.node_id) {
                            leader_hints.push(
                                NodeEndpoint::default()
                                    .with_node_id(BrokerId(b.node_id))
                                    .with_host(StrBytes::from_string(host.to_string()))
                                    .with_port(port)
                                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
                            );
                        }
                    }
                }
                continue;
            }
            // Kafka: acks=all needs at least min.insync.replicas in-sync replicas (checked before the batches).
            let min_insync = meta.configs.get("min.insync.replicas").and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(ctx.shard.config.min_insync_replicas.max(1) as usize);
            if acks == -1 && pmeta.isr.len() < min_insync {
                slot.error_code = ResponseError::NotEnoughReplicas.code();
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
            // Markers are the transaction coordinator's; a transactional
            // batch needs the request's transactional id (Kafka answers both
            // with INVALID_RECORD / TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
            if headers.iter().any(|h| h.is_control()) {
                slot.error_code = ResponseError::InvalidRecord.code();
                continue;
            }
            if headers.iter().any(|h| h.is_transactional() && (!transactional || h.producer_id < 0)) {
                slot.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
                continue;
            }
            // Kafka (v3+): "only allowed to contain exactly one record batch
            // per partition". Idempotent batches are then checked against the
            // producer's sequence on the owner (`partition::idempotent`).
            if headers.len() > 1 {
                slot.error_code = ResponseError::InvalidRecord.code();
                continue;
            }
            if compacted {
                if let Err(code) = refuse_keyless(slot, &name, part.index, &records, &headers) {
                    slot.error_code = code;
                    continue;
                }
            }
            by_shard.entry(ctx.shard.owner_of(pmeta.leader.shard)).or_default().push(LocalAppend {
                slot: (ti, pi),
                topic: name.clone(),
                partition: part.index,
                records,
                headers,
                min_insync,
            });
        }
    }
    response.node_endpoints = leader_hints;
    let durability = if acks == -1 { Durability::Synced } else { Durability::Written };
    // Kafka: acks=all waits at most the request's timeout for the ISR.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(req.timeout_ms.clamp(0, 300_000) as u64);
    // Phase 1, in request order: append on the owners (offsets assigned).
    let mut calls = Vec::with_capacity(by_shard.len());
    for (shard, appends) in by_shard {
        let mesh = ctx.shard.mesh.clone();
        calls.push(glommio::spawn_local(async move {
            let slots: Vec<(usize, usize)> = appends.iter().map(|a| a.slot).collect();
            let results = match mesh.call(shard, move |s: Rc<ShardState>| append_local(s, appends)).await {
                Ok(results) => results,
                Err(_) => slots.into_iter().map(|slot| SlotResult::failed(slot, ResponseError::NotLeaderOrFollower.code())).collect(),
            };
            (shard, results)
        }));
    }
    let mut appended: Vec<(ShardId, Vec<SlotResult>)> = Vec::with_capacity(calls.len());
    for call in calls {
        appended.push(call.await);
    }
    if acks == 0 {
        return ProduceOutcome::NoResponse;
    }
    // Phase 2, deferred: wait for durability, so the connection can go on
    // reading (and appending) its next requests meanwhile.
    let mesh = ctx.shard.mesh.clone();
    ProduceOutcome::Deferred(Box::pin(async move {
        let mut waits = Vec::with_capacity(appended.len());
        for (shard, results) in appended {
            let pending: Vec<(String, i32, i64, usize)> =
                results.iter().filter(|r| r.error_code == 0).map(|r| (r.topic.clone(), r.partition, r.end_offset, r.min_insync)).collect();
            let mesh = mesh.clone();
            waits.push(glommio::spawn_local(async move {
                let codes = if pending.is_empty() {
                    Vec::new()
                } else {
                    let n = pending.len();
                    mesh.call(shard, move |s: Rc<ShardState>| wait_local(s, pending, durability, deadline))
                        .await
                        .unwrap_or_else(|_| vec![ResponseError::NotLeaderOrFollower.code(); n])
                };
                (results, codes)
            }));
        }
        for w in waits {
            let (results, codes) = w.await;
            let mut codes = codes.into_iter();
            for r in results {
                let code = if r.error_code == 0 { codes.next().unwrap_or(0) } else { r.error_code };
                let p = &mut response.responses[r.slot.0].partition_responses[r.slot.1];
                p.error_code = code;
                if code == 0 {
                    p.base_offset = r.base_offset;
                    p.log_start_offset = r.log_start_offset;
                    p.log_append_time_ms = r.log_append_time_ms;
                }
            }
        }
        response
    }))
}

/// A compacted topic takes only keyed records (control batches are the
/// coordinator's and refused above). On a keyless record the slot gets
/// Kafka's message and record error and `Err(INVALID_RECORD)`; records that
/// do not decode are `Err(CORRUPT_MESSAGE)`. Compressed batches are
/// decompressed here, bounded by `DECOMPRESSED_BATCH_BYTES_MAX`.
fn refuse_keyless(
    slot: &mut PartitionProduceResponse,
    topic: &str,
    partition: i32,
    records: &Bytes,
    headers: &[BatchHeader],
) -> Result<(), i16> {
    let mut pos = 0usize;
    for h in headers {
        // validate_batches made the headers tile `records`.
        let Some(batch) = records.get(pos..pos + h.total_size()) else {
            return Err(ResponseError::CorruptMessage.code());
        };
        pos += h.total_size();
        match crate::storage::compaction::first_keyless_record(h, batch) {
            Ok(None) => {}
            Ok(Some(index)) => {
                let message = format!("Compacted topic cannot accept message without key in topic partition {topic}-{partition}.");
                slot.record_errors = vec![BatchIndexAndErrorMessage::default()
                    .with_batch_index(index as i32)
                    .with_batch_index_error_message(Some(StrBytes::from_string(message.clone())))];
                slot.error_message = Some(StrBytes::from_string(message));
                return Err(ResponseError::InvalidRecord.code());
            }
            Err(e) => return Err(batch_error_code(&e)),
        }
    }
    Ok(())
}

/// What produce gives the dispatcher.
pub enum ProduceOutcome {
    /// acks=0.
    NoResponse,
    /// Answered without touching a log (every partition failed validation).
    Respond(ProduceResponse),
    /// The response once the appends are as durable as acks asks.
    Deferred(std::pin::Pin<Box<dyn std::future::Future<Output = ProduceResponse>>>),
}

/// Runs on the owner shard: appends each partition's batches, in order,
/// without waiting for the disk.
async fn append_local(shard: Rc<ShardState>, appends: Vec<LocalAppend>) -> Vec<SlotResult> {
    let mut out = Vec::with_capacity(appends.len());
    for a in appends {
        let Some(partition) = shard.local_partition(&a.topic, a.partition).await else {
            out.push(SlotResult::failed(a.slot, ResponseError::NotLeaderOrFollower.code()));
            continue;
        };
        // The frame's bytes are shared with the decoded request: patching
        // offsets in place needs a copy of our own.
        let batches = BytesMut::from(&a.records[..]);
        match partition.append_deferred(batches, &a.headers).await {
            Ok(r) => out.push(SlotResult {
                slot: a.slot,
                topic: a.topic,
                partition: a.partition,
                error_code: 0,
                base_offset: r.base_offset,
                end_offset: r.last_offset + 1,
                log_start_offset: partition.log_start_offset(),
                log_append_time_ms: r.log_append_time_ms,
                min_insync: a.min_insync,
            }),
            Err(e) => {
                tracing::warn!(topic = %a.topic, partition = a.partition, error = ?e, "append failed");
                out.push(SlotResult::failed(a.slot, partition_error_code(&e)));
            }
        }
    }
    out
}

/// Runs on the owner shard: waits for each appended range; one code per entry.
async fn wait_local(shard: Rc<ShardState>, pending: Vec<(String, i32, i64, usize)>, durability: Durability, deadline: std::time::Instant) -> Vec<i16> {
    let mut tasks = Vec::with_capacity(pending.len());
    for (topic, partition, end, min_insync) in pending {
        let shard = shard.clone();
        tasks.push(glommio::spawn_local(async move {
            match shard.local_partition(&topic, partition).await {
                None => ResponseError::NotLeaderOrFollower.code(),
                Some(p) => match p.wait_until(end, durability, deadline).await {
                    // Kafka: replicated, but the ISR fell below the minimum meanwhile.
                    Ok(()) if durability == Durability::Synced && p.isr().len() < min_insync => {
                        ResponseError::NotEnoughReplicasAfterAppend.code()
                    }
                    Ok(()) => 0,
                    Err(e) => partition_error_code(&e),
                },
            }
        }));
    }
    let mut codes = Vec::with_capacity(tasks.len());
    for t in tasks {
        codes.push(t.await);
    }
    codes
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
