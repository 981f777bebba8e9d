//! Fetch (key 1): read from the owning shards, long-poll until `min_bytes`
//! or `max_wait_ms`, never past the high watermark; read_committed
//! (isolation level 1) never past the last stable offset, with the aborted
//! transactions of the returned range.
//!
//! Each owner shard reads its partitions in one mesh call. When the first
//! round has less than `min_bytes`, the owners are asked to wait until any
//! of their partitions' high watermark moves (woken by appends) or the
//! deadline passes, then the read is repeated.
//!
//! Budget: each owner shard gets the request's whole `max_bytes`, so a
//! response may exceed it by the number of shards involved; clients size
//! buffers from the response length, and Kafka itself may exceed it (KIP-74).

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::{partition_error_code, ResponseError};
use crate::metadata::ShardId;
use crate::protocol::RequestContext;
use crate::shard::ShardState;
use crate::protocol::zero_copy::{placeholder, Segment, PLACEHOLDER_MAX_BYTES};
use crate::storage::ReadResult;

pub const MIN_VERSION: i16 = 4;
pub const MAX_VERSION: i16 = 16;
/// Topic ids replace names from this version on.
const TOPIC_ID_VERSION: i16 = 13;
/// A client cannot make us hold a request longer than this.
const MAX_WAIT_MS_CAP: i32 = 60_000;

#[derive(Clone)]
struct ReadPart {
    slot: (usize, usize),
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    read_committed: bool,
    /// A follower's fetch: its broker id (-1 for a consumer).
    replica_id: i32,
    /// The leader epoch the fetcher believes in (-1: not checked).
    current_leader_epoch: i32,
}

struct ReadOut {
    slot: (usize, usize),
    error_code: i16,
    high_watermark: i64,
    log_start_offset: i64,
    records: Payload,
    /// The last stable offset (the high watermark when nothing is open).
    last_stable_offset: i64,
    /// read_committed: aborted transactions overlapping the returned range.
    aborted: Vec<crate::partition::txn::AbortedTxn>,
}

/// A partition's records as they travel back from the owner shard.
enum Payload {
    Bytes(Bytes),
    /// Several pieces, spliced into the frame in place of a placeholder.
    Segments(Vec<Segment>, usize),
}

impl Payload {
    fn empty() -> Self {
        Payload::Bytes(Bytes::new())
    }

    fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) => b.len(),
            Payload::Segments(_, len) => *len,
        }
    }
}

/// The response, and the file ranges its placeholders stand for, in encoding order.
pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> (FetchResponse, Vec<Vec<Segment>>) {
    let version = ctx.api_version;
    let md = ctx.shard.metadata();
    // v15+ carries the follower's id in ReplicaState.
    let replica_id = if version >= 15 { req.replica_state.replica_id.0 } else { req.replica_id.0 };
    let node_id = ctx.shard.config.node_id;
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut by_shard: BTreeMap<ShardId, Vec<ReadPart>> = BTreeMap::new();
    let mut leader_hints: Vec<NodeEndpoint> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let meta = if version >= TOPIC_ID_VERSION { md.topic_by_id(t.topic_id) } else { md.topic(&t.topic.0) };
        let name = meta.map(|m| m.name.clone()).unwrap_or_else(|| t.topic.0.to_string());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(Bytes::new()));
            let pmeta = meta.and_then(|m| usize::try_from(p.partition).ok().and_then(|i| m.partitions.get(i)));
            match pmeta {
                None => {
                    data.error_code = if meta.is_none() && version >= TOPIC_ID_VERSION {
                        ResponseError::UnknownTopicId.code()
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                }
                Some(pm) if pm.leader.node_id != node_id => {
                    data.error_code = ResponseError::NotLeaderOrFollower.code();
                    // KIP-951 (v16+): who leads now, and where to reach it.
                    if let Some(b) = md.live_broker(pm.leader.node_id) {
                        data.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(pm.leader.node_id))
                            .with_leader_epoch(pm.leader_epoch);
                        if let Some((host, port)) = ctx.endpoint_of(b) {
                            if !leader_hints.iter().any(|e: &NodeEndpoint| e.node_id.0 == b.node_id) {
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
                }
                Some(pm) => by_shard.entry(ctx.shard.owner_of(pm.leader.shard)).or_default().push(ReadPart {
                    slot: (ti, pi),
                    topic: name.clone(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    read_committed: req.isolation_level == 1 && replica_id < 0,
                    replica_id,
                    current_leader_epoch: p.current_leader_epoch,
                }),
            }
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(name)))
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    let max_bytes = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_wait = Duration::from_millis(req.max_wait_ms.clamp(0, MAX_WAIT_MS_CAP) as u64);
    let deadline = Instant::now() + max_wait;
    let mut file_ranges: BTreeMap<(usize, usize), Vec<Segment>> = BTreeMap::new();
    let mut outs = read_all(ctx, &by_shard, max_bytes).await;
    loop {
        let bytes: usize = outs.iter().map(|o| o.records.len()).sum();
        let has_error = outs.iter().any(|o| o.error_code != 0);
        let done = bytes >= min_bytes.max(1) || has_error || Instant::now() >= deadline || by_shard.is_empty();
        if done || ctx.shard.shutdown.is_triggered() {
            for o in outs {
                let p = &mut topics[o.slot.0].partitions[o.slot.1];
                crate::metrics::with_shard(|m| m.record_error(kafka_protocol::messages::ApiKey::Fetch as i16, o.error_code));
                p.error_code = o.error_code;
                p.high_watermark = o.high_watermark;
                p.last_stable_offset = o.last_stable_offset;
                p.log_start_offset = o.log_start_offset;
                p.records = Some(match o.records {
                    Payload::Bytes(b) => b,
                    Payload::Segments(segments, len) => {
                        file_ranges.insert(o.slot, segments);
                        placeholder(len).unwrap_or_default()
                    }
                });
                // v4+: an empty list, not null, says "no aborted transactions".
                p.aborted_transactions = Some(
                    o.aborted
                        .iter()
                        .map(|a| {
                            kafka_protocol::messages::fetch_response::AbortedTransaction::default()
                                .with_producer_id(kafka_protocol::messages::ProducerId(a.producer_id))
                                .with_first_offset(a.first_offset)
                        })
                        .collect(),
                );
            }
            break;
        }
        wait_any(ctx, &by_shard, deadline).await;
        // Once shutdown began, other shards may have stopped serving calls:
        // answer with what was read before instead of asking them again.
        if !ctx.shard.shutdown.is_triggered() {
            outs = read_all(ctx, &by_shard, max_bytes).await;
        }
    }
    // BTreeMap order of (topic, partition) slots is the encoder's order.
    let file_ranges = file_ranges.into_values().collect();
    let response = FetchResponse::default().with_error_code(0).with_session_id(0).with_responses(topics);
    (response.with_node_endpoints(leader_hints), file_ranges)
}

async fn read_all(ctx: &RequestContext, by_shard: &BTreeMap<ShardId, Vec<ReadPart>>, max_bytes: usize) -> Vec<ReadOut> {
    let mut calls = Vec::with_capacity(by_shard.len());
    for (&shard, parts) in by_shard {
        let parts = parts.clone();
        let mesh = ctx.shard.mesh.clone();
        calls.push(glommio::spawn_local(async move {
            let slots: Vec<(usize, usize)> = parts.iter().map(|p| p.slot).collect();
            match mesh.call(shard, move |s: Rc<ShardState>| read_local(s, parts, max_bytes)).await {
                Ok(outs) => outs,
                Err(_) => slots
                    .into_iter()
                    .map(|slot| ReadOut {
                        slot,
                        error_code: ResponseError::NotLeaderOrFollower.code(),
                        high_watermark: -1,
                        log_start_offset: -1,
                        records: Payload::empty(),
                        last_stable_offset: -1,
                        aborted: Vec::new(),
                    })
                    .collect(),
            }
        }));
    }
    let mut outs = Vec::new();
    for c in calls {
        outs.extend(c.await);
    }
    outs
}

/// On the owner shard: reads each partition in turn within the byte budget.
async fn read_local(shard: Rc<ShardState>, parts: Vec<ReadPart>, max_bytes: usize) -> Vec<ReadOut> {
    let mut budget = max_bytes;
    let mut out = Vec::with_capacity(parts.len());
    let mut any_data = false;
    for p in parts {
        let Some(partition) = shard.local_partition(&p.topic, p.partition).await else {
            out.push(ReadOut {
                slot: p.slot,
                error_code: ResponseError::NotLeaderOrFollower.code(),
                high_watermark: -1,
                log_start_offset: -1,
                records: Payload::empty(),
                last_stable_offset: -1,
                aborted: Vec::new(),
            });
            continue;
        };
        if let Some(code) = epoch_mismatch(&partition, p.current_leader_epoch) {
            out.push(ReadOut::failed(p.slot, code));
            continue;
        }
        if p.replica_id >= 0 {
            // The follower's fetch offset is its (durable) log end: progress for the ISR and HW.
            match partition.on_follower_fetch(p.replica_id, p.offset) {
                Ok(Some(change)) => crate::replication::propose_isr_change(&shard, &partition, change),
                Ok(None) => {}
                Err(e) => {
                    out.push(ReadOut::failed(p.slot, partition_error_code(&e)));
                    continue;
                }
            }
        }
        let high_watermark = partition.high_watermark();
        let last_stable_offset = partition.last_stable_offset();
        let log_start_offset = partition.log_start_offset();
        let limit = p.max_bytes.min(budget);
        let result = if limit == 0 && any_data {
            Ok(Payload::empty())
        } else {
            let read = if p.replica_id >= 0 {
                partition.read_to_end(p.offset, limit, !any_data).await
            } else if p.read_committed {
                partition.read_committed(p.offset, limit, !any_data).await
            } else {
                partition.read(p.offset, limit, !any_data).await
            };
            match read {
                Ok(r) => Ok(into_payload(r)),
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(records) => {
                any_data |= records.len() > 0;
                let sent = if p.replica_id >= 0 { &partition.stats.replication_bytes_out } else { &partition.stats.bytes_out };
                crate::metrics::PartitionStats::add(sent, records.len() as u64);
                budget = budget.saturating_sub(records.len());
                // Kafka returns the aborted transactions up to the end of the
                // data returned (bounded by the last stable offset).
                let aborted = if p.read_committed && records.len() > 0 {
                    partition.aborted_between(p.offset, last_stable_offset)
                } else {
                    Vec::new()
                };
                out.push(ReadOut { slot: p.slot, error_code: 0, high_watermark, log_start_offset, records, last_stable_offset, aborted });
            }
            Err(e) => out.push(ReadOut {
                slot: p.slot,
                error_code: partition_error_code(&e),
                high_watermark,
                log_start_offset,
                records: Payload::empty(),
                last_stable_offset,
                aborted: Vec::new(),
            }),
        }
    }
    out
}

/// Kafka's leader-epoch fencing of fetches (KIP-320): an older epoch than
/// ours is FENCED_LEADER_EPOCH, a newer one (our metadata lags) UNKNOWN_LEADER_EPOCH.
fn epoch_mismatch(partition: &crate::partition::Partition, requested: i32) -> Option<i16> {
    if requested < 0 {
        return None;
    }
    let ours = partition.leader_epoch();
    if !partition.is_leader() {
        return Some(ResponseError::NotLeaderOrFollower.code());
    }
    match requested.cmp(&ours) {
        std::cmp::Ordering::Less => Some(ResponseError::FencedLeaderEpoch.code()),
        std::cmp::Ordering::Greater => Some(ResponseError::UnknownLeaderEpoch.code()),
        std::cmp::Ordering::Equal => None,
    }
}

impl ReadOut {
    fn failed(slot: (usize, usize), error_code: i16) -> ReadOut {
        ReadOut {
            slot,
            error_code,
            high_watermark: -1,
            log_start_offset: -1,
            records: Payload::empty(),
            last_stable_offset: -1,
            aborted: Vec::new(),
        }
    }
}

/// A read's pieces (tail cache slices, read-ahead window slices) travel as
/// they are: one piece as the records bytes, several as placeholders the
/// frame encoder splices them into, so no record byte is copied on the way
/// to the socket. (Not sendfile: segments are written with O_DIRECT, so the
/// page cache rarely holds them and sendfile read the disk synchronously
/// on the shard thread; `storage::read_ahead` reads them by io_uring.)
fn into_payload(r: ReadResult) -> Payload {
    /// Below this a copy costs less than a separate socket write.
    const SPLICE_MIN_BYTES: usize = 16 << 10;
    match r.chunks.len() {
        0 => Payload::empty(),
        // Small records are copied into the frame; larger ones go as their own piece.
        1 if r.bytes < SPLICE_MIN_BYTES => Payload::Bytes(r.chunks.into_iter().next().expect("one chunk")),
        _ if r.bytes > PLACEHOLDER_MAX_BYTES => {
            let mut buf = BytesMut::with_capacity(r.bytes);
            for c in &r.chunks {
                buf.extend_from_slice(c);
            }
            Payload::Bytes(buf.freeze())
        }
        _ => Payload::Segments(r.chunks, r.bytes),
    }
}

/// Waits until any owner reports new data on one of its partitions, or the deadline.
async fn wait_any(ctx: &RequestContext, by_shard: &BTreeMap<ShardId, Vec<ReadPart>>, deadline: Instant) {
    let mut waits: Vec<std::pin::Pin<Box<dyn Future<Output = ()>>>> = Vec::new();
    for (&shard, parts) in by_shard {
        let offsets: Vec<(String, i32, i64, Wait)> = parts
            .iter()
            .map(|p| {
                let wait = if p.replica_id >= 0 {
                    Wait::Written
                } else if p.read_committed {
                    Wait::Stable
                } else {
                    Wait::HighWatermark
                };
                (p.topic.clone(), p.partition, p.offset, wait)
            })
            .collect();
        let mesh = ctx.shard.mesh.clone();
        waits.push(Box::pin(async move {
            let _ = mesh.call(shard, move |s: Rc<ShardState>| wait_local(s, offsets, deadline)).await;
        }));
    }
    let stop = ctx.shard.shutdown.clone();
    waits.push(Box::pin(async move { stop.wait().await }));
    first_of(waits).await;
}

/// What a waiting fetch waits for on one partition.
#[derive(Clone, Copy)]
enum Wait {
    HighWatermark,
    Stable,
    /// A follower: anything written past its offset.
    Written,
}

async fn wait_local(shard: Rc<ShardState>, offsets: Vec<(String, i32, i64, Wait)>, deadline: Instant) {
    let mut waits = Vec::with_capacity(offsets.len());
    for (topic, partition, offset, wait) in offsets {
        if let Some(p) = shard.local_partition(&topic, partition).await {
            waits.push(async move {
                match wait {
                    Wait::Stable => p.wait_for_stable(offset, deadline).await,
                    Wait::HighWatermark => p.wait_for_data(offset, deadline).await,
                    Wait::Written => p.wait_for_written(offset, deadline).await,
                }
            });
        }
    }
    if waits.is_empty() {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        return;
    }
    first_of(waits).await;
}

/// Resolves when the first of `futures` does; the rest run on to their own end
/// (each is bounded by a deadline) and are then dropped.
async fn first_of<F: Future<Output = ()> + 'static>(futures: Vec<F>) {
    let (tx, rx) = glommio::channels::local_channel::new_bounded::<()>(futures.len().max(1));
    let tx = Rc::new(tx);
    for f in futures {
        let tx = tx.clone();
        glommio::spawn_local(async move {
            f.await;
            let _ = tx.try_send(());
        })
        .detach();
    }
    drop(tx);
    let _ = rx.recv().await;
}
