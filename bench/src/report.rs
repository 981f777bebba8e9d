//! The result of one run (what `--json` writes) and its Markdown rendering.
//! Pure data and formatting; no I/O besides writing the JSON file.

use crate::stats::{BrokerUsage, LatencySummary};
use crate::workload::Workload;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// This process's own CPU over the run: the evidence that the load
/// generator is not the bottleneck.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientUsage {
    pub cpu_sec: f64,
    /// CPU seconds per wall second x 100 (100 = one core busy).
    pub cpu_percent_of_one_core: f64,
    pub cores: usize,
}

/// One run's results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// produce, consume or e2e.
    pub kind: String,
    pub bootstrap: String,
    pub workload: Workload,
    /// Measured records (after warm-up): acked for produce/e2e, consumed for consume.
    pub records: u64,
    /// Payload (key + value) bytes of those records.
    pub bytes: u64,
    /// Measured window in seconds.
    pub duration_sec: f64,
    pub records_per_sec: f64,
    /// MiB (2^20 bytes) of payload per second.
    pub mb_per_sec: f64,
    /// publish-to-ack (produce), fetch round trip (consume), publish-to-consume (e2e).
    pub latency_kind: String,
    pub latency_ms: LatencySummary,
    /// (percentile, ms) points of the same latency.
    pub latency_curve_ms: Vec<(f64, f64)>,
    /// e2e only: publish-to-ack latency of the producers.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ack_latency_ms: Option<LatencySummary>,
    /// e2e only: consumer-side throughput.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consume_records_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consume_mb_per_sec: Option<f64>,
    /// Totals over the whole run, warm-up included.
    pub records_sent: u64,
    pub records_acked: u64,
    pub records_failed: u64,
    pub records_consumed: u64,
    /// Kafka error code -> records failed with it ("-1": connection lost).
    pub produce_errors: std::collections::BTreeMap<i16, u64>,
    pub client: ClientUsage,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub broker: Option<BrokerUsage>,
}

/// Throughput over a window; 0 for an empty window.
pub fn per_sec(amount: f64, window_sec: f64) -> f64 {
    if window_sec > 0.0 {
        amount / window_sec
    } else {
        0.0
    }
}

impl RunResult {
    /// Markdown table for people.
    pub fn to_markdown(&self) -> String {
        let w = &self.workload;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### {} — topic `{}` ({} partitions), {} B records, acks={}, {:?}, {}\n",
            self.kind,
            w.topic,
            w.partitions,
            w.record_size,
            w.acks,
            w.compression,
            if w.rate > 0.0 {
                format!("{} rec/s target", w.rate)
            } else {
                "max speed".into()
            }
        );
        let _ = writeln!(s, "| metric | value |\n|---|---|");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "| {k} | {v} |");
        };
        row("records (measured)", self.records.to_string());
        row("duration", format!("{:.2} s", self.duration_sec));
        row("records/s", format!("{:.0}", self.records_per_sec));
        row("MiB/s", format!("{:.2}", self.mb_per_sec));
        let l = &self.latency_ms;
        row(
            &format!("latency ({}) p50 / p99 / p99.9 / max", self.latency_kind),
            format!(
                "{:.3} / {:.3} / {:.3} / {:.3} ms",
                l.p50, l.p99, l.p999, l.max
            ),
        );
        if let Some(a) = &self.ack_latency_ms {
            row(
                "ack latency p50 / p99 / p99.9 / max",
                format!(
                    "{:.3} / {:.3} / {:.3} / {:.3} ms",
                    a.p50, a.p99, a.p999, a.max
                ),
            );
        }
        if let (Some(r), Some(m)) = (self.consume_records_per_sec, self.consume_mb_per_sec) {
            row("consumed records/s, MiB/s", format!("{r:.0}, {m:.2}"));
        }
        row(
            "sent / acked / failed / consumed (all)",
            format!(
                "{} / {} / {} / {}",
                self.records_sent, self.records_acked, self.records_failed, self.records_consumed
            ),
        );
        row(
            "bench client CPU",
            format!(
                "{:.2} s ({:.0}% of one core; {} cores)",
                self.client.cpu_sec, self.client.cpu_percent_of_one_core, self.client.cores
            ),
        );
        if let Some(b) = &self.broker {
            row(
                "broker CPU",
                format!("{:.2} s, {:.2} s/GiB", b.cpu_sec, b.cpu_sec_per_gib),
            );
            row("broker peak RSS", format!("{:.1} MiB", b.peak_rss_mib));
        }
        s
    }
}

/// Writes any serialisable result as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), crate::BenchError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| crate::BenchError::Json(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| crate::BenchError::Io {
        path: path.display().to_string(),
        source: e,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> RunResult {
        RunResult {
            kind: "produce".into(),
            bootstrap: "127.0.0.1:9092".into(),
            workload: Workload::default(),
            records: 1000,
            bytes: 100_000,
            duration_sec: 2.0,
            records_per_sec: 500.0,
            mb_per_sec: 100_000.0 / 2.0 / crate::stats::MIB,
            latency_kind: "publish-to-ack".into(),
            latency_ms: LatencySummary {
                count: 1000,
                mean: 1.0,
                p50: 1.0,
                p90: 1.5,
                p99: 2.0,
                p999: 3.0,
                p9999: 3.5,
                max: 4.0,
            },
            latency_curve_ms: vec![(50.0, 1.0), (99.0, 2.0)],
            ack_latency_ms: None,
            consume_records_per_sec: None,
            consume_mb_per_sec: None,
            records_sent: 1000,
            records_acked: 1000,
            records_failed: 0,
            records_consumed: 0,
            produce_errors: Default::default(),
            client: ClientUsage {
                cpu_sec: 0.5,
                cpu_percent_of_one_core: 25.0,
                cores: 2,
            },
            broker: None,
        }
    }

    // Proves the JSON carries the keys the issue promises and round-trips.
    #[test]
    fn json_has_promised_keys() {
        let r = sample();
        let v: serde_json::Value = serde_json::to_value(&r).expect("json");
        for k in ["records", "records_per_sec", "mb_per_sec", "latency_ms"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        for k in ["p50", "p99", "p999", "max"] {
            assert!(v["latency_ms"].get(k).is_some(), "missing latency_ms.{k}");
        }
        assert!(v.get("broker").is_none(), "absent broker is omitted");
        let back: RunResult = serde_json::from_value(v).expect("parse back");
        assert_eq!(back, r);
    }

    // Proves the Markdown table shows the headline figures.
    #[test]
    fn markdown_has_figures() {
        let md = sample().to_markdown();
        assert!(md.contains("| records/s | 500 |"), "{md}");
        assert!(md.contains("1.000 / 2.000 / 3.000 / 4.000 ms"), "{md}");
        assert!(md.contains("25% of one core"), "{md}");
    }

    // Proves rates over an empty window are zero, not infinite.
    #[test]
    fn per_sec_empty_window() {
        assert_eq!(per_sec(10.0, 0.0), 0.0);
        assert_eq!(per_sec(10.0, 2.0), 5.0);
    }
}
