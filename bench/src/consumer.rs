//! One consumer task: reads an explicit set of partitions (no consumer
//! groups: offsets are tracked here, starting from ListOffsets), one fetch
//! loop per partition leader, each with one Fetch in flight like Kafka's
//! consumer. Checks every batch's CRC32C, counts records and payload bytes,
//! and in e2e mode reads each value's send-time stamp to measure
//! publish-to-consume latency; in consume mode it measures fetch round trips.
//!
//! Runs on the bench's tokio runtime; shares only `Live` and a stop signal.

use crate::batch::{for_each_record, parse_header, records_section, verify_crc, BatchError};
use crate::client::{ClientError, Connection, TopicLayout, FETCH_VERSIONS};
use crate::producer::STAMP_BYTES;
use crate::stats::{instant_us, new_histogram, now_us, record_us, Live};
use crate::workload::Workload;
use crate::BenchError;
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

/// Upper bound on one fetch response.
pub const FETCH_BYTES_MAX: i32 = 64 * 1024 * 1024;

/// What the consumer measures as latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeMode {
    /// Fetch request round trip.
    Throughput,
    /// Now minus the record's intended send time (from its stamp).
    EndToEnd,
}

/// What one consumer does.
pub struct ConsumerPlan {
    pub workload: Arc<Workload>,
    pub layout: Arc<TopicLayout>,
    /// partition -> first offset to read.
    pub start_offsets: BTreeMap<i32, i64>,
    pub mode: ConsumeMode,
    pub warmup_end_us: u64,
    /// Stop after the run has consumed this many records in total (all consumers).
    pub target_records: Option<u64>,
    pub live: Arc<Live>,
    pub stop: watch::Receiver<bool>,
}

/// What one consumer measured.
#[derive(Debug)]
pub struct ConsumerResult {
    pub consumed: u64,
    pub consumed_bytes: u64,
    pub measured_records: u64,
    pub measured_bytes: u64,
    pub first_measured_us: u64,
    pub last_us: u64,
    pub latency: Histogram<u64>,
    /// partition -> next offset to read at the end.
    pub end_offsets: BTreeMap<i32, i64>,
}

impl ConsumerResult {
    pub fn empty() -> Self {
        ConsumerResult {
            consumed: 0,
            consumed_bytes: 0,
            measured_records: 0,
            measured_bytes: 0,
            first_measured_us: u64::MAX,
            last_us: 0,
            latency: new_histogram(),
            end_offsets: BTreeMap::new(),
        }
    }

    /// Folds another loop's result into this one.
    pub fn merge(&mut self, o: ConsumerResult) {
        self.consumed += o.consumed;
        self.consumed_bytes += o.consumed_bytes;
        self.measured_records += o.measured_records;
        self.measured_bytes += o.measured_bytes;
        self.first_measured_us = self.first_measured_us.min(o.first_measured_us);
        self.last_us = self.last_us.max(o.last_us);
        let _ = self.latency.add(&o.latency);
        self.end_offsets.extend(o.end_offsets);
    }
}

/// Runs one consumer: a fetch loop per leader of its partitions.
pub async fn run_consumer(plan: ConsumerPlan) -> Result<ConsumerResult, BenchError> {
    let plan = Arc::new(plan);
    let mut by_leader: HashMap<i32, BTreeMap<i32, i64>> = HashMap::new();
    for (partition, offset) in &plan.start_offsets {
        let leader = plan
            .layout
            .partitions
            .iter()
            .find(|p| p.partition == *partition)
            .map(|p| p.leader)
            .ok_or_else(|| {
                ClientError::Metadata(format!("partition {partition} not in metadata"))
            })?;
        by_leader
            .entry(leader)
            .or_default()
            .insert(*partition, *offset);
    }
    let mut handles = Vec::new();
    for (leader, offsets) in by_leader {
        let addr = plan.layout.broker_addr(leader)?.to_string();
        let plan = plan.clone();
        handles.push(tokio::spawn(async move {
            fetch_loop(plan, addr, offsets).await
        }));
    }
    let mut total = ConsumerResult::empty();
    for h in handles {
        total.merge(h.await.map_err(|e| BenchError::Task(e.to_string()))??);
    }
    Ok(total)
}

fn reached_target(plan: &ConsumerPlan) -> bool {
    plan.target_records
        .is_some_and(|t| plan.live.consumed.load(Ordering::Relaxed) >= t)
}

async fn fetch_loop(
    plan: Arc<ConsumerPlan>,
    addr: String,
    mut offsets: BTreeMap<i32, i64>,
) -> Result<ConsumerResult, BenchError> {
    let w = &plan.workload;
    let conn = Connection::connect(&addr).await?;
    let version = conn.pick_version(ApiKey::Fetch, FETCH_VERSIONS)?;
    let topic = TopicName(StrBytes::from_string(w.topic.clone()));
    let mut stop = plan.stop.clone();
    let mut r = ConsumerResult::empty();
    while !*stop.borrow() && !reached_target(&plan) {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(w.fetch_max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_BYTES_MAX)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic.clone())
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(p, o)| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(*o)
                                .with_current_leader_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(w.fetch_partition_bytes)
                        })
                        .collect(),
                )]);
        let sent_us = now_us();
        let fut = conn.submit(&req, version, true).await?;
        let (resp, at) = tokio::select! {
            resp = fut.wait() => resp?,
            _ = stop.changed() => break,
        };
        let at_us = instant_us(at);
        if plan.mode == ConsumeMode::Throughput && at_us >= plan.warmup_end_us {
            record_us(&mut r.latency, at_us.saturating_sub(sent_us));
        }
        absorb(&plan, &resp, &mut offsets, at_us, &mut r)?;
    }
    r.end_offsets = offsets;
    Ok(r)
}

/// Errors a fetch may answer with that the loop just retries.
const RETRIABLE: [i16; 4] = [
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    7,  // REQUEST_TIMED_OUT
    56, // KAFKA_STORAGE_ERROR
];

fn absorb(
    plan: &ConsumerPlan,
    resp: &FetchResponse,
    offsets: &mut BTreeMap<i32, i64>,
    at_us: u64,
    r: &mut ConsumerResult,
) -> Result<(), BenchError> {
    if resp.error_code != 0 {
        return Err(ClientError::Kafka {
            api: ApiKey::Fetch,
            code: resp.error_code,
            context: None,
        }
        .into());
    }
    for t in &resp.responses {
        for p in &t.partitions {
            if p.error_code != 0 {
                if RETRIABLE.contains(&p.error_code) {
                    continue;
                }
                return Err(ClientError::Kafka {
                    api: ApiKey::Fetch,
                    code: p.error_code,
                    context: Some(format!("{}-{}", plan.workload.topic, p.partition_index)),
                }
                .into());
            }
            let Some(offset) = offsets.get_mut(&p.partition_index) else {
                continue;
            };
            if let Some(records) = &p.records {
                let (count, bytes, next) = walk_batches(plan, records, *offset, at_us, r)?;
                *offset = next;
                r.consumed += count;
                r.consumed_bytes += bytes;
                plan.live.consumed.fetch_add(count, Ordering::Relaxed);
                plan.live.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
                if count > 0 {
                    r.last_us = r.last_us.max(at_us);
                    if at_us >= plan.warmup_end_us {
                        r.first_measured_us = r.first_measured_us.min(at_us);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Walks the batches of one partition's record set from `fetch_offset`.
/// Returns (records, payload bytes, next offset). A partial batch at the end
/// (allowed by the protocol) ends the walk.
fn walk_batches(
    plan: &ConsumerPlan,
    records: &[u8],
    fetch_offset: i64,
    at_us: u64,
    r: &mut ConsumerResult,
) -> Result<(u64, u64, i64), BenchError> {
    let (mut count, mut bytes, mut next) = (0u64, 0u64, fetch_offset);
    let mut data = records;
    let mut interval = if plan.mode == ConsumeMode::EndToEnd {
        plan.live.interval.lock().ok()
    } else {
        None
    };
    while !data.is_empty() {
        let h = match parse_header(data) {
            Ok(h) => h,
            Err(BatchError::Truncated { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        let batch = &data[..h.total_len()];
        data = &data[h.total_len()..];
        if h.last_offset() < next {
            continue;
        }
        verify_crc(batch, &h)?;
        let from = next;
        next = h.last_offset() + 1;
        if h.is_control() {
            continue;
        }
        let section = records_section(batch, &h)?;
        let mut walk_err = None;
        for_each_record(&section, h.record_count, |rec| {
            if h.base_offset + rec.offset_delta < from {
                return;
            }
            let value = rec.value.unwrap_or_default();
            count += 1;
            let size = (value.len() + rec.key.map_or(0, <[u8]>::len)) as u64;
            bytes += size;
            if at_us < plan.warmup_end_us && plan.mode == ConsumeMode::Throughput {
                return;
            }
            match plan.mode {
                ConsumeMode::Throughput => {
                    r.measured_records += 1;
                    r.measured_bytes += size;
                }
                ConsumeMode::EndToEnd => {
                    let Some(stamp) = value.get(..STAMP_BYTES) else {
                        walk_err =
                            Some(BatchError::Record("value shorter than the send-time stamp"));
                        return;
                    };
                    let mut b = [0u8; 8];
                    b.copy_from_slice(stamp);
                    let intended = u64::from_le_bytes(b);
                    if intended < plan.warmup_end_us {
                        return;
                    }
                    let lat = at_us.saturating_sub(intended);
                    record_us(&mut r.latency, lat);
                    if let Some(g) = interval.as_mut() {
                        record_us(g, lat);
                    }
                    r.measured_records += 1;
                    r.measured_bytes += size;
                }
            }
        })?;
        if let Some(e) = walk_err {
            return Err(e.into());
        }
    }
    Ok((count, bytes, next))
}
