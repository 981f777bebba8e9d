//! Runs one workload (produce, consume or e2e) against one bootstrap address:
//! creates the topic, finds start offsets, starts consumers before producers,
//! drives the progress line, waits for the drain, and folds the tasks'
//! measurements into a `RunResult`. Runs on the bench's tokio runtime.

use crate::client::{list_offsets, Cluster, Connection, TopicLayout, EARLIEST, LATEST};
use crate::consumer::{run_consumer, ConsumeMode, ConsumerPlan, ConsumerResult};
use crate::producer::{run_producer, ProducerPlan, ProducerResult};
use crate::report::{per_sec, ClientUsage, RunResult};
use crate::stats::{
    latency_curve, now_us, progress_loop, self_cpu, BrokerProbe, LatencySummary, Live, MIB,
};
use crate::workload::{StartAt, Workload};
use crate::BenchError;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long e2e waits, after the producers finish, for consumers to catch up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Producers start this long after being spawned, so connections are up.
const START_DELAY_US: u64 = 50_000;

/// The three kinds of run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Produce,
    Consume,
    E2e,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Produce => "produce",
            Kind::Consume => "consume",
            Kind::E2e => "e2e",
        }
    }
}

/// Runs a workload; the progress line goes to stderr.
pub async fn run(
    kind: Kind,
    bootstrap: &str,
    w: &Workload,
    broker_pid: Option<u32>,
) -> Result<RunResult, BenchError> {
    w.validate().map_err(BenchError::Config)?;
    let cluster = Cluster::connect(bootstrap).await?;
    let layout = Arc::new(
        cluster
            .ensure_topic(&w.topic, w.partitions, w.replication_factor)
            .await?,
    );
    let w = Arc::new(w.clone());
    if kind == Kind::Consume && w.preload > 0 {
        eprintln!("preloading {} records into {}", w.preload, w.topic);
        let mut pre = (*w).clone();
        pre.records = Some(w.preload);
        pre.rate = 0.0;
        pre.warmup_sec = 0.0;
        let live = Arc::new(Live::new());
        let (_results, _) = run_producers(&Arc::new(pre), &layout, &live).await?;
        let failed = live.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(BenchError::Config(format!(
                "preload: {failed} records failed"
            )));
        }
    }
    let start_offsets = match kind {
        Kind::Produce => BTreeMap::new(),
        Kind::Consume => {
            offsets_at(
                &layout,
                &w.topic,
                if w.start_at == StartAt::Earliest {
                    EARLIEST
                } else {
                    LATEST
                },
            )
            .await?
        }
        Kind::E2e => offsets_at(&layout, &w.topic, LATEST).await?,
    };

    let live = Arc::new(Live::new());
    let probe = broker_pid.map(BrokerProbe::start).transpose()?;
    let cpu_start = self_cpu();
    let wall_start = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress = tokio::spawn(progress_loop(live.clone(), kind.name(), stop_rx.clone()));

    // Consumers alone start measuring at once; producers get a moment to connect.
    let start_us = now_us()
        + if kind == Kind::Consume {
            0
        } else {
            START_DELAY_US
        };
    let warmup_end_us = start_us + (w.warmup_sec * 1e6) as u64;
    let consumers = if kind == Kind::Produce {
        Vec::new()
    } else {
        spawn_consumers(
            kind,
            &w,
            &layout,
            &start_offsets,
            &live,
            warmup_end_us,
            &stop_rx,
        )
    };
    let producers = if kind == Kind::Consume {
        None
    } else {
        match run_producers_at(&w, &layout, &live, start_us).await {
            Ok(p) => Some(p),
            Err(e) => {
                // Stop consumers and the progress line before reporting.
                let _ = stop_tx.send(true);
                return Err(e);
            }
        }
    };

    // Decide when consumers are done.
    match kind {
        Kind::Produce => {}
        Kind::Consume => {
            let deadline = Instant::now() + Duration::from_secs_f64(w.warmup_sec + w.duration_sec);
            let target = w.records;
            wait_until(&live, deadline, |l| {
                target.is_some_and(|t| l.consumed.load(Ordering::Relaxed) >= t)
            })
            .await;
        }
        Kind::E2e => {
            let expected = if w.acks == 0 {
                live.sent.load(Ordering::Relaxed)
            } else {
                live.acked.load(Ordering::Relaxed)
            };
            let deadline = Instant::now() + DRAIN_TIMEOUT;
            wait_until(&live, deadline, |l| {
                l.consumed.load(Ordering::Relaxed) >= expected
            })
            .await;
        }
    }
    let _ = stop_tx.send(true);
    let mut consumed = ConsumerResult::empty();
    for c in consumers {
        consumed.merge(c.await.map_err(|e| BenchError::Task(e.to_string()))??);
    }
    let _ = progress.await;
    let wall_sec = wall_start.elapsed().as_secs_f64();
    let client_cpu = (self_cpu().saturating_sub(cpu_start)).as_secs_f64();
    let bytes_moved =
        live.acked_bytes.load(Ordering::Relaxed) + live.consumed_bytes.load(Ordering::Relaxed);
    let broker = probe.map(|p| p.finish(bytes_moved)).transpose()?;
    let client = ClientUsage {
        cpu_sec: client_cpu,
        cpu_percent_of_one_core: per_sec(client_cpu * 100.0, wall_sec),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok(assemble(
        kind,
        bootstrap,
        &w,
        producers,
        consumed,
        warmup_end_us,
        client,
        broker,
    ))
}

async fn wait_until(live: &Live, deadline: Instant, done: impl Fn(&Live) -> bool) {
    while !done(live) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Folded producer results plus the start of their schedule.
pub struct Produced {
    pub results: Vec<ProducerResult>,
    pub start_us: u64,
}

async fn run_producers(
    w: &Arc<Workload>,
    layout: &Arc<TopicLayout>,
    live: &Arc<Live>,
) -> Result<(Vec<ProducerResult>, u64), BenchError> {
    let start_us = now_us() + START_DELAY_US;
    let p = run_producers_at(w, layout, live, start_us).await?;
    Ok((p.results, p.start_us))
}

async fn run_producers_at(
    w: &Arc<Workload>,
    layout: &Arc<TopicLayout>,
    live: &Arc<Live>,
    start_us: u64,
) -> Result<Produced, BenchError> {
    let n = w.producers as u64;
    let warmup_end_us = start_us + (w.warmup_sec * 1e6) as u64;
    let end_us = if w.records.is_some() {
        u64::MAX
    } else {
        warmup_end_us + (w.duration_sec * 1e6) as u64
    };
    let mut handles = Vec::new();
    for id in 0..w.producers {
        let records = w
            .records
            .map(|total| total / n + u64::from((id as u64) < total % n));
        let plan = ProducerPlan {
            id,
            workload: w.clone(),
            layout: layout.clone(),
            rate_per_sec: (w.rate > 0.0).then(|| w.rate / n as f64),
            records,
            start_us,
            warmup_end_us,
            end_us,
            live: live.clone(),
        };
        handles.push(tokio::spawn(run_producer(plan)));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.map_err(|e| BenchError::Task(e.to_string()))??);
    }
    Ok(Produced { results, start_us })
}

fn spawn_consumers(
    kind: Kind,
    w: &Arc<Workload>,
    layout: &Arc<TopicLayout>,
    start_offsets: &BTreeMap<i32, i64>,
    live: &Arc<Live>,
    warmup_end_us: u64,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Result<ConsumerResult, BenchError>>> {
    let mut assignments: Vec<BTreeMap<i32, i64>> = vec![BTreeMap::new(); w.consumers];
    for (i, (p, o)) in start_offsets.iter().enumerate() {
        assignments[i % w.consumers].insert(*p, *o);
    }
    assignments
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(|a| {
            let plan = ConsumerPlan {
                workload: w.clone(),
                layout: layout.clone(),
                start_offsets: a,
                mode: if kind == Kind::E2e {
                    ConsumeMode::EndToEnd
                } else {
                    ConsumeMode::Throughput
                },
                warmup_end_us,
                target_records: if kind == Kind::Consume {
                    w.records
                } else {
                    None
                },
                live: live.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(run_consumer(plan))
        })
        .collect()
}

/// One offset per partition of the topic, asked of each partition's leader.
async fn offsets_at(
    layout: &TopicLayout,
    topic: &str,
    at: i64,
) -> Result<BTreeMap<i32, i64>, BenchError> {
    let mut by_leader: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in &layout.partitions {
        by_leader.entry(p.leader).or_default().push(p.partition);
    }
    let mut out = BTreeMap::new();
    for (leader, parts) in by_leader {
        let conn = Connection::connect(layout.broker_addr(leader)?).await?;
        out.extend(list_offsets(&conn, topic, &parts, at).await?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    kind: Kind,
    bootstrap: &str,
    w: &Workload,
    produced: Option<Produced>,
    consumed: ConsumerResult,
    warmup_end_us: u64,
    client: ClientUsage,
    broker: Option<crate::stats::BrokerUsage>,
) -> RunResult {
    let mut sent = 0;
    let mut acked = 0;
    let mut failed = 0;
    let mut p_records = 0;
    let mut p_bytes = 0;
    let mut last_ack_us = 0;
    let mut ack_hist = crate::stats::new_histogram();
    let mut errors = BTreeMap::new();
    if let Some(p) = &produced {
        for r in &p.results {
            sent += r.sent;
            acked += r.acked;
            failed += r.failed;
            p_records += r.measured_records;
            p_bytes += r.measured_bytes;
            last_ack_us = last_ack_us.max(r.last_ack_us);
            let _ = ack_hist.add(&r.latency);
            for (code, n) in &r.errors {
                *errors.entry(*code).or_default() += n;
            }
        }
    }
    let produce_window = last_ack_us.saturating_sub(warmup_end_us) as f64 / 1e6;
    let consume_window = if consumed.first_measured_us == u64::MAX {
        0.0
    } else {
        consumed.last_us.saturating_sub(warmup_end_us) as f64 / 1e6
    };
    let (records, bytes, window, hist, latency_kind) = match kind {
        Kind::Produce => (
            p_records,
            p_bytes,
            produce_window,
            &ack_hist,
            "publish-to-ack",
        ),
        Kind::Consume => (
            consumed.measured_records,
            consumed.measured_bytes,
            consume_window,
            &consumed.latency,
            "fetch round trip",
        ),
        Kind::E2e => (
            p_records,
            p_bytes,
            produce_window,
            &consumed.latency,
            "publish-to-consume",
        ),
    };
    RunResult {
        kind: kind.name().into(),
        bootstrap: bootstrap.into(),
        workload: w.clone(),
        records,
        bytes,
        duration_sec: window,
        records_per_sec: per_sec(records as f64, window),
        mb_per_sec: per_sec(bytes as f64 / MIB, window),
        latency_kind: latency_kind.into(),
        latency_ms: LatencySummary::from_histogram(hist),
        latency_curve_ms: latency_curve(hist),
        ack_latency_ms: (kind == Kind::E2e).then(|| LatencySummary::from_histogram(&ack_hist)),
        consume_records_per_sec: (kind == Kind::E2e)
            .then(|| per_sec(consumed.measured_records as f64, consume_window)),
        consume_mb_per_sec: (kind == Kind::E2e)
            .then(|| per_sec(consumed.measured_bytes as f64 / MIB, consume_window)),
        records_sent: sent,
        records_acked: acked,
        records_failed: failed,
        records_consumed: consumed.consumed,
        produce_errors: errors,
        client,
        broker,
    }
}
