//! Latency histograms that one shard writes and a scrape reads on the same
//! shard: plain `Cell`s, no atomics and no locks on the request path. A
//! scrape takes a [`HistogramSnapshot`] (plain data, `Send`) to merge
//! elsewhere.
//!
//! Buckets are fixed, Prometheus style, from 100 µs to 10 s; the upper
//! bounds are [`BUCKET_BOUNDS_SECONDS`], with one more bucket above them.

use std::cell::Cell;
use std::time::Duration;

/// Upper bounds (seconds, inclusive) of the finite buckets.
pub const BUCKET_BOUNDS_SECONDS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BUCKETS: usize = BUCKET_BOUNDS_SECONDS.len() + 1;

#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is above 10 s.
    counts: [Cell<u64>; BUCKETS],
    sum_nanos: Cell<u64>,
}

/// A histogram's values at one moment, cumulative as Prometheus wants them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at or below each bound of `BUCKET_BOUNDS_SECONDS`.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKET_BOUNDS_SECONDS.iter().position(|b| s <= *b).unwrap_or(BUCKETS - 1);
        self.counts[i].set(self.counts[i].get() + 1);
        self.sum_nanos.set(self.sum_nanos.get().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64));
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut cumulative = Vec::with_capacity(BUCKETS - 1);
        for c in &self.counts[..BUCKETS - 1] {
            running += c.get();
            cumulative.push(running);
        }
        let count = running + self.counts[BUCKETS - 1].get();
        HistogramSnapshot { cumulative, count, sum_seconds: self.sum_nanos.get() as f64 / 1e9 }
    }
}

impl HistogramSnapshot {
    /// Adds another shard's snapshot of the same histogram.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.cumulative.is_empty() {
            self.cumulative = vec![0; other.cumulative.len()];
        }
        for (a, b) in self.cumulative.iter_mut().zip(&other.cumulative) {
            *a += b;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }
}

thread_local! {
    /// Calls this shard made to another shard through the mesh, from send
    /// to reply (queueing on the target included).
    static MESH_CALLS: Histogram = Histogram::default();
}

pub(crate) fn record_mesh_call(d: Duration) {
    MESH_CALLS.with(|h| h.record(d));
}

/// This shard's cross-shard call latencies (call it on the shard).
pub fn mesh_call_latency() -> HistogramSnapshot {
    MESH_CALLS.with(|h| h.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves observations land in the right cumulative buckets and the count includes the overflow bucket.
    #[test]
    fn buckets_are_cumulative_and_count_includes_overflow() {
        let h = Histogram::default();
        h.record(Duration::from_micros(50));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(20));
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[4], 1, "2.5 ms bucket excludes 3 ms");
        assert_eq!(s.cumulative[5], 2, "5 ms bucket includes 3 ms");
        assert_eq!(*s.cumulative.last().unwrap(), 2);
        assert_eq!(s.count, 3);
        assert!((s.sum_seconds - 20.00305).abs() < 1e-6);
    }
}
