//! A scrape: every shard renders its own families on its own thread (so
//! nothing it owns is shared), the admin thread merges them and adds the
//! cluster's view and consumer lag.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use super::exposition::Exposition;
use super::with_shard;
use crate::shard::ShardState;

/// What one shard hands back.
pub struct ShardScrape {
    pub families: Exposition,
    /// Committed offsets of the groups this shard coordinates:
    /// (group, topic, partition, offset).
    pub committed: Vec<(String, String, i32, i64)>,
    /// High watermarks of the replicas this shard holds.
    pub high_watermarks: HashMap<(String, i32), i64>,
}

pub struct ScrapeRequest {
    reply: mpsc::SyncSender<ShardScrape>,
}

/// Per shard: answers scrape requests until the admin side goes away.
pub async fn serve_scrapes(state: std::rc::Rc<ShardState>, requests: async_channel::Receiver<ScrapeRequest>) {
    while let Ok(req) = requests.recv().await {
        let _ = req.reply.send(render_shard(&state));
    }
}

/// Longest a scrape waits for all shards together.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// The admin thread's end: one channel per shard.
pub struct Scraper {
    node_id: i32,
    shards: Vec<async_channel::Sender<ScrapeRequest>>,
}

impl Scraper {
    /// The scraper and, per shard, the receiver its shard serves.
    pub fn new(node_id: i32, shard_count: usize) -> (Scraper, Vec<async_channel::Receiver<ScrapeRequest>>) {
        let (senders, receivers) = (0..shard_count).map(|_| async_channel::bounded(4)).unzip();
        (Scraper { node_id, shards: senders }, receivers)
    }

    /// The whole exposition: every shard's families, then cluster-level ones.
    pub fn scrape(&self, md: &crate::metadata::ClusterMetadata) -> String {
        let started = Instant::now();
        let mut pending = Vec::new();
        let mut unanswered = 0u64;
        for tx in &self.shards {
            let (reply, rx) = mpsc::sync_channel(1);
            match tx.try_send(ScrapeRequest { reply }) {
                Ok(()) => pending.push(rx),
                Err(_) => unanswered += 1,
            }
        }
        let mut all = Exposition::default();
        let mut committed = Vec::new();
        let mut high_watermarks = HashMap::new();
        for rx in pending {
            let left = SCRAPE_TIMEOUT.saturating_sub(started.elapsed());
            match rx.recv_timeout(left) {
                Ok(s) => {
                    all.merge(s.families);
                    committed.extend(s.committed);
                    high_watermarks.extend(s.high_watermarks);
                }
                Err(_) => unanswered += 1,
            }
        }
        consumer_lag(&mut all, &committed, &high_watermarks);
        cluster_families(&mut all, md, self.node_id);
        all.counter(
            "fjord_scrape_shards_unanswered_total",
            "Shards that did not answer this scrape within 3 s (their samples are missing from it).",
            &[],
            unanswered,
        );
        all.render()
    }
}

/// kafka_exporter's names: current committed offset and lag per group and
/// partition. Lag is the high watermark minus the committed offset, where
/// this broker holds a replica of the partition.
fn consumer_lag(out: &mut Exposition, committed: &[(String, String, i32, i64)], hws: &HashMap<(String, i32), i64>) {
    for (group, topic, partition, offset) in committed {
        let p = partition.to_string();
        let labels = [("consumergroup", group.as_str()), ("topic", topic.as_str()), ("partition", p.as_str())];
        out.gauge("kafka_consumergroup_current_offset", "Committed offset of the group for the partition.", &labels, *offset as f64);
        if let Some(hw) = hws.get(&(topic.clone(), *partition)) {
            let lag = (hw - offset).max(0);
            out.gauge("kafka_consumergroup_lag", "High watermark minus the group's committed offset.", &labels, lag as f64);
        }
    }
}

fn cluster_families(out: &mut Exposition, md: &crate::metadata::ClusterMetadata, node_id: i32) {
    let mut offline = 0;
    let mut under_replicated = 0;
    for t in md.topics.values() {
        for p in &t.partitions {
            if md.live_broker(p.leader.node_id).is_none() {
                offline += 1;
            } else if p.isr.len() < p.replicas.len() {
                under_replicated += 1;
            }
        }
    }
    let brokers_down = md.brokers.values().filter(|b| b.fenced).count();
    out.gauge(
        "kafka_controller_kafkacontroller_activecontrollercount",
        "1 on the node that is the active controller.",
        &[],
        (md.controller_id == node_id) as i32 as f64,
    );
    out.gauge(
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "Partitions without a live leader, in this node's metadata.",
        &[],
        offline as f64,
    );
    out.gauge(
        "fjord_cluster_underreplicated_partitions",
        "Partitions whose ISR is smaller than their replica set, in this node's metadata.",
        &[],
        under_replicated as f64,
    );
    out.gauge("fjord_cluster_brokers", "Registered brokers, in this node's metadata.", &[], md.brokers.len() as f64);
    out.gauge("fjord_cluster_brokers_down", "Registered brokers that are fenced (down).", &[], brokers_down as f64);
    out.gauge("fjord_cluster_topics", "Topics, internal ones included.", &[], md.topics.len() as f64);
    out.gauge(
        "fjord_build_info",
        "Always 1; the labels say which build runs.",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
}

/// This shard's families. Runs on the shard (reads `Cell`s and `RefCell`s).
pub fn render_shard(state: &ShardState) -> ShardScrape {
    let shard = state.id.to_string();
    let mut out = Exposition::default();
    let mut high_watermarks = HashMap::new();
    let (mut leaders, mut under_replicated) = (0, 0);
    let partitions = state.partitions.all();
    for p in &partitions {
        let log = p.log();
        let part = p.partition.to_string();
        let labels = [("topic", p.topic.as_str()), ("partition", part.as_str()), ("shard", shard.as_str())];
        let hw = p.high_watermark();
        high_watermarks.insert((p.topic.clone(), p.partition), hw);
        let s = &p.stats;
        out.counter("kafka_server_brokertopicmetrics_bytesin_total", "Bytes appended by producers (leader).", &labels, s.bytes_in.get());
        out.counter("kafka_server_brokertopicmetrics_messagesin_total", "Records appended by producers (leader).", &labels, s.records_in.get());
        out.counter("kafka_server_brokertopicmetrics_bytesout_total", "Record bytes sent to consumers.", &labels, s.bytes_out.get());
        out.counter(
            "kafka_server_brokertopicmetrics_replicationbytesout_total",
            "Record bytes sent to follower replicas.",
            &labels,
            s.replication_bytes_out.get(),
        );
        out.gauge("kafka_log_log_logendoffset", "Log end offset (next offset to assign).", &labels, log.log_end_offset() as f64);
        out.gauge("kafka_log_log_logstartoffset", "Log start offset (first offset still held).", &labels, log.log_start_offset() as f64);
        out.gauge("fjord_partition_high_watermark", "High watermark (end of what consumers may read).", &labels, hw as f64);
        out.gauge("kafka_log_log_numlogsegments", "Segments of the log.", &labels, log.segment_count() as f64);
        out.gauge("kafka_log_log_size", "Bytes of the log's segments.", &labels, log.size_bytes() as f64);
        let (is_leader, urp) = match p.role() {
            crate::partition::replica::Role::Leader { isr, replicas, .. } => (true, isr.len() < replicas.len()),
            crate::partition::replica::Role::Follower { .. } => (false, false),
        };
        leaders += is_leader as u64;
        under_replicated += urp as u64;
        out.gauge("fjord_partition_leader", "1 where this replica is the leader.", &labels, is_leader as i32 as f64);
        out.gauge(
            "kafka_cluster_partition_underreplicated",
            "1 where this leader's ISR is smaller than the replica set.",
            &labels,
            urp as i32 as f64,
        );
        out.counter("kafka_cluster_partition_isrshrinks_total", "ISR shrinks seen while leading.", &labels, s.isr_shrinks.get());
        out.counter("kafka_cluster_partition_isrexpands_total", "ISR expands seen while leading.", &labels, s.isr_expands.get());
    }
    let sl = [("shard", shard.as_str())];
    out.gauge("kafka_server_replicamanager_partitioncount", "Replicas held by the shard.", &sl, partitions.len() as f64);
    out.gauge("kafka_server_replicamanager_leadercount", "Partitions the shard leads.", &sl, leaders as f64);
    out.gauge(
        "kafka_server_replicamanager_underreplicatedpartitions",
        "Partitions the shard leads whose ISR is smaller than the replica set.",
        &sl,
        under_replicated as f64,
    );
    with_shard(|m| {
        for (key, s) in m.requests.borrow().iter() {
            let name = api_name(*key);
            let labels = [("request", name.as_str()), ("shard", shard.as_str())];
            out.counter("kafka_network_requestmetrics_requests_total", "Requests handled, by API.", &labels, s.count);
            out.histogram(
                "fjord_request_latency_seconds",
                "From the request read to its response ready (a produce's wait for disk and ISR included), by API.",
                &labels,
                &s.latency.snapshot(),
            );
        }
        for ((key, code), n) in m.errors.borrow().iter() {
            let (name, error) = (api_name(*key), error_name(*code));
            let labels = [("request", name.as_str()), ("error", error.as_str()), ("shard", shard.as_str())];
            out.counter("kafka_network_requestmetrics_errors_total", "Error codes answered, by API and error.", &labels, *n);
        }
        out.counter(
            "fjord_bad_requests_total",
            "Connections closed because a frame was malformed (bad length, unknown API or version, undecodable body).",
            &sl,
            m.bad_requests.get(),
        );
        out.gauge("fjord_connections", "Open client connections.", &sl, m.connections_open.get() as f64);
        out.counter("fjord_connections_accepted_total", "Client connections accepted.", &sl, m.connections_accepted.get());
        out.histogram("fjord_storage_fsync_seconds", "fdatasync of segment files (one per group commit).", &sl, &m.fsync.snapshot());
        out.counter("fjord_reactor_stalls_total", "Times the shard's executor ran no timer for over 100 ms.", &sl, m.stalls.get());
        out.histogram("fjord_reactor_stall_seconds", "Length of each reactor stall.", &sl, &m.stall_time.snapshot());
    });
    out.histogram(
        "fjord_mesh_call_seconds",
        "Calls this shard made to another shard, from send to reply.",
        &sl,
        &shards::metrics::mesh_call_latency(),
    );
    ShardScrape { families: out, committed: state.groups.committed_offsets(), high_watermarks }
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map(|k| format!("{k:?}")).unwrap_or_else(|_| key.to_string())
}

/// Kafka's error name (`NOT_LEADER_OR_FOLLOWER`) from the code, as the CLI prints it.
fn error_name(code: i16) -> String {
    fjord_cli::error::error_name(code)
}

#[cfg(test)]
mod tests {
    // Proves error codes get Kafka's upper-snake names.
    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(super::error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(super::error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
    }
}
