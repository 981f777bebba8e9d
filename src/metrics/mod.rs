//! Prometheus metrics, served as `GET /metrics` on the admin port.
//!
//! Collected per shard without locks: each shard thread counts into its own
//! thread-local [`ShardMetrics`] and each partition into its own
//! [`PartitionStats`] (plain `Cell`s; only that shard's thread touches them).
//! A scrape asks every shard, over a channel, to render its families
//! ([`scrape::render_shard`]); the admin thread merges them, adds what this
//! node's metadata says about the cluster, and computes consumer lag.
//!
//! Names follow Kafka's JMX-exporter names where Kafka has an obvious
//! equivalent (`kafka_server_brokertopicmetrics_bytesin_total`,
//! `kafka_log_log_logendoffset`, ...), kafka_exporter's for consumer lag
//! (`kafka_consumergroup_lag`), and `fjord_*` for the rest. Every
//! per-shard sample carries `shard`, numbered as in the logs.

pub mod exposition;
pub mod scrape;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use shards::metrics::Histogram;

/// One shard's counters (thread-local: see `with_shard`).
#[derive(Default)]
pub struct ShardMetrics {
    /// By API key: requests handled and their latency, from the frame read
    /// to the response ready to write (a produce's wait for the disk and the
    /// ISR included).
    requests: RefCell<BTreeMap<i16, RequestStats>>,
    /// By (API key, error code): partition-level errors answered.
    errors: RefCell<BTreeMap<(i16, i16), u64>>,
    /// Connections closed because a frame was malformed (bad length, unknown
    /// API, a body that does not decode).
    pub bad_requests: Cell<u64>,
    pub connections_open: Cell<i64>,
    pub connections_accepted: Cell<u64>,
    /// fdatasync of segment files (each sync of a log's group commit).
    pub fsync: Histogram,
    /// Reactor stalls the stall detector saw (over 100 ms without a timer).
    pub stalls: Cell<u64>,
    pub stall_time: Histogram,
}

#[derive(Default)]
struct RequestStats {
    count: u64,
    latency: Histogram,
}

impl ShardMetrics {
    pub fn record_request(&self, api_key: i16, latency: Duration) {
        let mut requests = self.requests.borrow_mut();
        let s = requests.entry(api_key).or_default();
        s.count += 1;
        s.latency.record(latency);
    }

    /// Counts a non-zero error code answered for one partition (or request).
    pub fn record_error(&self, api_key: i16, code: i16) {
        if code != 0 {
            *self.errors.borrow_mut().entry((api_key, code)).or_default() += 1;
        }
    }
}

thread_local! {
    static SHARD: ShardMetrics = ShardMetrics::default();
}

/// This thread's (this shard's) metrics.
pub fn with_shard<R>(f: impl FnOnce(&ShardMetrics) -> R) -> R {
    SHARD.with(f)
}

/// Per-partition traffic, owned by the partition on its shard.
#[derive(Default)]
pub struct PartitionStats {
    /// Bytes and records appended by producers on this leader.
    pub bytes_in: Cell<u64>,
    pub records_in: Cell<u64>,
    /// Bytes sent to consumers, and to follower replicas.
    pub bytes_out: Cell<u64>,
    pub replication_bytes_out: Cell<u64>,
    /// ISR changes this replica saw while leading.
    pub isr_shrinks: Cell<u64>,
    pub isr_expands: Cell<u64>,
}

impl PartitionStats {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }
}
