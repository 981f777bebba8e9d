//! One producer task: generates records on an open-loop schedule (or as fast
//! as the in-flight window allows), batches them per partition (sticky,
//! round-robin between batches), pipelines Produce requests, and measures
//! publish-to-ack latency from each record's *intended* send time, so a
//! stalled broker shows up as latency instead of as a slower schedule
//! (no coordinated omission).
//!
//! Each producer owns its connections (one per partition leader) and a
//! collector task that awaits responses in send order; both run on the
//! bench's tokio runtime. Shared with the rest of the run: only `Live`.

use crate::batch::BatchBuilder;
use crate::client::{ClientError, Connection, TopicLayout, MAX_IN_FLIGHT, PRODUCE_VERSIONS};
use crate::stats::{instant_us, new_histogram, now_us, record_us, Live};
use crate::workload::Workload;
use crate::BenchError;
use bytes::Bytes;
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Every value starts with its intended send time (µs on the process clock,
/// little-endian), which e2e consumers read back.
pub const STAMP_BYTES: usize = 8;
/// Random bytes values are cut from.
const POOL_BYTES: usize = 64 * 1024;

/// What one producer does.
pub struct ProducerPlan {
    pub id: usize,
    pub workload: Arc<Workload>,
    pub layout: Arc<TopicLayout>,
    /// This producer's share of the target rate; `None` = as fast as possible.
    pub rate_per_sec: Option<f64>,
    /// This producer's share of the record count; `None` = until `end_us`.
    pub records: Option<u64>,
    pub start_us: u64,
    /// Records intended before this instant are not measured.
    pub warmup_end_us: u64,
    pub end_us: u64,
    pub live: Arc<Live>,
}

/// What one producer measured.
#[derive(Debug)]
pub struct ProducerResult {
    pub sent: u64,
    pub acked: u64,
    pub acked_bytes: u64,
    pub failed: u64,
    pub measured_records: u64,
    pub measured_bytes: u64,
    pub last_ack_us: u64,
    pub latency: Histogram<u64>,
    /// Kafka error code -> records failed with it.
    pub errors: BTreeMap<i16, u64>,
}

/// Records of one batch: intended send times are first..=last, evenly
/// spaced (exact on a rate schedule; interpolated when flat out).
#[derive(Debug, Clone, Copy)]
struct BatchMeta {
    first_intended_us: u64,
    last_intended_us: u64,
    count: u32,
    payload_bytes: u64,
}

struct InFlight {
    response: Option<crate::client::ResponseFuture<ProduceResponse>>,
    written_us: u64,
    meta: BatchMeta,
}

/// Small xorshift generator: sizes and pool offsets need speed, not quality.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Random uppercase letters, like kafka-producer-perf-test's payloads:
/// compressible to about 60%, not trivially.
fn payload_pool(rng: &mut XorShift, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| b'A' + (rng.next_u64() % 26) as u8)
        .collect()
}

struct Generator {
    rng: XorShift,
    pool: Vec<u8>,
    value: Vec<u8>,
    wall_start_ms: i64,
    start_us: u64,
}

impl Generator {
    fn new(seed: u64, max_size: usize, start_us: u64) -> Generator {
        let mut rng = XorShift::new(seed);
        let pool = payload_pool(&mut rng, POOL_BYTES + max_size);
        let wall_start_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Generator {
            rng,
            pool,
            value: Vec::with_capacity(max_size),
            wall_start_ms,
            start_us,
        }
    }

    /// Appends one record intended at `intended_us` to `batch`.
    fn push(&mut self, batch: &mut BatchBuilder, size: usize, intended_us: u64) {
        let off = (self.rng.next_u64() % POOL_BYTES as u64) as usize;
        self.value.clear();
        self.value.extend_from_slice(&intended_us.to_le_bytes());
        self.value
            .extend_from_slice(&self.pool[off..off + size.saturating_sub(STAMP_BYTES)]);
        let ts_ms = self.wall_start_ms + (intended_us.saturating_sub(self.start_us) / 1000) as i64;
        batch.push(None, &self.value, ts_ms);
    }
}

/// Runs one producer to completion.
pub async fn run_producer(plan: ProducerPlan) -> Result<ProducerResult, BenchError> {
    let w = plan.workload.clone();
    let mut conns: HashMap<i32, (Arc<Connection>, i16)> = HashMap::new();
    for p in &plan.layout.partitions {
        if let std::collections::hash_map::Entry::Vacant(slot) = conns.entry(p.leader) {
            let conn = Connection::connect(plan.layout.broker_addr(p.leader)?).await?;
            let version = conn.pick_version(ApiKey::Produce, PRODUCE_VERSIONS)?;
            slot.insert((conn, version));
        }
    }
    let (tx, rx) = mpsc::channel::<InFlight>(MAX_IN_FLIGHT * conns.len() + 1);
    let collector = tokio::spawn(collect(rx, plan.live.clone(), plan.warmup_end_us));
    let send_result = produce_loop(&plan, &w, &conns, tx).await;
    let result = collector
        .await
        .map_err(|e| BenchError::Task(e.to_string()))?;
    send_result?;
    Ok(result)
}

async fn produce_loop(
    plan: &ProducerPlan,
    w: &Workload,
    conns: &HashMap<i32, (Arc<Connection>, i16)>,
    tx: mpsc::Sender<InFlight>,
) -> Result<(), BenchError> {
    let topic = TopicName(StrBytes::from_string(w.topic.clone()));
    let mut gen = Generator::new(plan.id as u64 + 1, w.record_size.max(), plan.start_us);
    let mut batch = BatchBuilder::new(w.compression, w.batch_bytes + w.record_size.max() + 64);
    let mut meta = BatchMeta {
        first_intended_us: 0,
        last_intended_us: 0,
        count: 0,
        payload_bytes: 0,
    };
    let partitions = &plan.layout.partitions;
    let mut next_partition = plan.id % partitions.len();
    let interval_us = plan.rate_per_sec.map(|r| 1e6 / r);
    let linger_us = (w.linger_ms * 1000.0) as u64;
    let mut generated: u64 = 0;
    let mut next_intended_f = plan.start_us as f64;
    let wait_start = plan.start_us.saturating_sub(now_us());
    tokio::time::sleep(Duration::from_micros(wait_start)).await;
    loop {
        let now = now_us();
        // Fill the open batch with what is due.
        while !exhausted_at(plan, generated, next_intended_f as u64)
            && batch.records_bytes() < w.batch_bytes
        {
            let intended = match interval_us {
                Some(_) if next_intended_f as u64 > now => break,
                Some(step) => {
                    let t = next_intended_f as u64;
                    next_intended_f += step;
                    t
                }
                None => now_us(),
            };
            let size = w.record_size.pick(gen.rng.next_u64());
            gen.push(&mut batch, size, intended);
            if meta.count == 0 {
                meta.first_intended_us = intended;
            }
            meta.last_intended_us = intended;
            meta.count += 1;
            generated += 1;
        }
        let full = batch.records_bytes() >= w.batch_bytes;
        let lingered = !batch.is_empty() && now_us() >= meta.first_intended_us + linger_us;
        let done = exhausted_at(plan, generated, next_intended_f as u64);
        if !batch.is_empty() && (full || lingered || done || interval_us.is_none()) {
            meta.payload_bytes = batch.payload_bytes() as u64;
            let records = batch.finish()?;
            let p = partitions[next_partition];
            next_partition = (next_partition + 1) % partitions.len();
            let (conn, version) = conns.get(&p.leader).ok_or_else(|| {
                ClientError::Metadata(format!("no connection to leader {}", p.leader))
            })?;
            send_batch(
                plan,
                w,
                &topic,
                p.partition,
                records,
                conn,
                *version,
                meta,
                &tx,
            )
            .await?;
            meta.count = 0;
            continue;
        }
        if done {
            return Ok(());
        }
        // Sleep until the next record is due or the open batch lingers out.
        let mut wake = plan.end_us;
        if interval_us.is_some() {
            wake = wake.min(next_intended_f as u64);
        }
        if !batch.is_empty() {
            wake = wake.min(meta.first_intended_us + linger_us);
        }
        let now = now_us();
        if wake > now {
            tokio::time::sleep(Duration::from_micros(wake - now)).await;
        }
    }
}

/// True when no more records should be generated.
fn exhausted_at(plan: &ProducerPlan, generated: u64, next_intended_us: u64) -> bool {
    match (plan.records, plan.rate_per_sec) {
        (Some(n), _) => generated >= n,
        (None, Some(_)) => next_intended_us >= plan.end_us,
        (None, None) => now_us() >= plan.end_us,
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_batch(
    plan: &ProducerPlan,
    w: &Workload,
    topic: &TopicName,
    partition: i32,
    records: Bytes,
    conn: &Connection,
    version: i16,
    meta: BatchMeta,
    tx: &mpsc::Sender<InFlight>,
) -> Result<(), BenchError> {
    let req = ProduceRequest::default()
        .with_acks(w.acks)
        .with_timeout_ms(w.request_timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic.clone())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let expect_response = w.acks != 0;
    let fut = conn.submit(&req, version, expect_response).await?;
    plan.live
        .sent
        .fetch_add(u64::from(meta.count), Ordering::Relaxed);
    let inflight = InFlight {
        response: expect_response.then_some(fut),
        written_us: now_us(),
        meta,
    };
    tx.send(inflight)
        .await
        .map_err(|_| BenchError::Task("producer collector stopped".into()))?;
    Ok(())
}

/// Awaits responses in send order and records per-record latency.
async fn collect(
    mut rx: mpsc::Receiver<InFlight>,
    live: Arc<Live>,
    warmup_end_us: u64,
) -> ProducerResult {
    let mut r = ProducerResult {
        sent: 0,
        acked: 0,
        acked_bytes: 0,
        failed: 0,
        measured_records: 0,
        measured_bytes: 0,
        last_ack_us: 0,
        latency: new_histogram(),
        errors: BTreeMap::new(),
    };
    while let Some(f) = rx.recv().await {
        let m = f.meta;
        r.sent += u64::from(m.count);
        let (error, at_us) = match f.response {
            None => (0, f.written_us),
            Some(fut) => match fut.wait().await {
                Ok((resp, at)) => (first_error(&resp), instant_us(at)),
                Err(_) => (-1, now_us()),
            },
        };
        if error != 0 {
            r.failed += u64::from(m.count);
            *r.errors.entry(error).or_default() += u64::from(m.count);
            live.failed.fetch_add(u64::from(m.count), Ordering::Relaxed);
            continue;
        }
        r.acked += u64::from(m.count);
        r.acked_bytes += m.payload_bytes;
        r.last_ack_us = r.last_ack_us.max(at_us);
        live.acked.fetch_add(u64::from(m.count), Ordering::Relaxed);
        live.acked_bytes
            .fetch_add(m.payload_bytes, Ordering::Relaxed);
        let measured = record_batch_latency(&mut r.latency, &live, m, at_us, warmup_end_us);
        r.measured_records += measured;
        r.measured_bytes += m.payload_bytes * measured / u64::from(m.count.max(1));
    }
    r
}

/// Records one latency per record of the batch; returns how many were past
/// the warm-up.
fn record_batch_latency(
    h: &mut Histogram<u64>,
    live: &Live,
    m: BatchMeta,
    at_us: u64,
    warmup_end_us: u64,
) -> u64 {
    let mut interval = live.interval.lock().ok();
    let mut measured = 0;
    let span = m.last_intended_us.saturating_sub(m.first_intended_us);
    let n = u64::from(m.count.max(1));
    for i in 0..n {
        let intended = m.first_intended_us + if n > 1 { span * i / (n - 1) } else { 0 };
        if intended < warmup_end_us {
            continue;
        }
        let lat = at_us.saturating_sub(intended);
        record_us(h, lat);
        if let Some(g) = interval.as_mut() {
            record_us(g, lat);
        }
        measured += 1;
    }
    measured
}

/// The first non-zero partition error of a produce response (0 = success).
fn first_error(resp: &ProduceResponse) -> i16 {
    resp.responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| p.error_code)
        .find(|c| *c != 0)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{for_each_record, parse_header, records_section, Compression};

    // Proves per-record latency is taken from each record's intended time, and warm-up records are left out.
    #[test]
    fn batch_latency_from_intended_times() {
        let live = Live::new();
        let mut h = new_histogram();
        // Records intended at 1000, 2000, ..., 5000 µs; ack at 10000 µs; warm-up ends at 2500.
        let m = BatchMeta {
            first_intended_us: 1000,
            last_intended_us: 5000,
            count: 5,
            payload_bytes: 500,
        };
        let measured = record_batch_latency(&mut h, &live, m, 10_000, 2_500);
        assert_eq!(measured, 3);
        assert_eq!(h.len(), 3);
        assert_eq!(h.min(), 5000);
        assert!(h.max() >= 7000 && h.max() <= 7010, "max {}", h.max());
        assert_eq!(live.interval.lock().expect("lock").len(), 3);
    }

    // Proves generated values carry the intended-time stamp and the requested size.
    #[test]
    fn values_carry_stamp_and_size() {
        let mut g = Generator::new(7, 300, 0);
        let mut b = BatchBuilder::new(Compression::None, 4096);
        g.push(&mut b, 300, 123_456);
        g.push(&mut b, 8, 999);
        let batch = b.finish().expect("batch");
        let h = parse_header(&batch).expect("header");
        let sec = records_section(&batch, &h).expect("records");
        let mut seen = Vec::new();
        for_each_record(&sec, h.record_count, |r| {
            let v = r.value.expect("value");
            let mut s = [0u8; 8];
            s.copy_from_slice(&v[..STAMP_BYTES]);
            seen.push((u64::from_le_bytes(s), v.len()));
        })
        .expect("walk");
        assert_eq!(seen, vec![(123_456, 300), (999, 8)]);
    }
}
