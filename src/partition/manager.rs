//! The partitions one shard owns, kept in step with metadata snapshots.
//!
//! Per shard. When a snapshot arrives (or a request names a partition this
//! shard should own but has not opened yet), `sync_with` opens the logs of
//! replicas newly placed here and closes and deletes those whose topic was
//! deleted. Syncs are serialized so two of them never open the same log.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::config::Config;
use crate::metadata::{ClusterMetadata, NodeId, ShardId, TopicMeta};
use crate::partition::Partition;
use crate::storage::{recovery, Log, LogConfig, StorageError};

/// Partitions closed at once by a clean shutdown.
const CLOSE_CONCURRENCY: usize = 64;
/// Partitions opened at once when metadata places them here (start-up).
const OPEN_CONCURRENCY: usize = 64;

/// `open_new` of one partition, boxed to run several together.
type OpenFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Option<(PathBuf, StorageError)>> + 'a>>;

/// Runs the futures together on this shard; their outputs in order.
async fn join_all<'a, T>(futures: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *output = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

type Key = (String, i32);

/// The shard that serves a replica placed on `placed`. Placement is kept as
/// the controller decided it; when the broker restarts with fewer shards,
/// replicas of shards that no longer exist are served by `placed % count`
/// (a log's files do not depend on which shard opens them).
pub fn owner_of(placed: ShardId, shard_count: usize) -> ShardId {
    placed % shard_count.max(1)
}

pub struct PartitionManager {
    node_id: NodeId,
    shard_id: ShardId,
    shard_count: usize,
    kafka_dir: PathBuf,
    config: Config,
    partitions: RefCell<HashMap<Key, Rc<Partition>>>,
    applied_version: Cell<u64>,
    sync_lock: async_lock::Mutex<()>,
}

/// `<data>/kafka/<topic>/<partition>-<topic id>`: the id keeps a re-created
/// topic from ever meeting the files of the deleted one.
pub fn partition_dir(kafka_dir: &Path, topic: &TopicMeta, partition: i32) -> PathBuf {
    kafka_dir.join(&topic.name).join(format!("{partition}-{}", topic.id.simple()))
}

impl PartitionManager {
    pub fn new(config: &Config, shard_id: ShardId) -> Self {
        PartitionManager {
            node_id: config.node_id,
            shard_id,
            shard_count: config.shards,
            kafka_dir: config.data_dir.join("kafka"),
            config: config.clone(),
            partitions: RefCell::new(HashMap::new()),
            applied_version: Cell::new(0),
            sync_lock: async_lock::Mutex::new(()),
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&(topic.to_string(), partition)).cloned()
    }

    pub fn applied_version(&self) -> u64 {
        self.applied_version.get()
    }

    pub fn count(&self) -> usize {
        self.partitions.borrow().len()
    }

    fn log_config(&self, topic: &TopicMeta) -> LogConfig {
        let get = |k: &str| topic.configs.get(k).and_then(|v| v.parse::<i64>().ok());
        LogConfig {
            segment_bytes: get("segment.bytes").map(|v| v as u64).unwrap_or(self.config.log_segment_bytes),
            segment_ms: get("segment.ms").unwrap_or(self.config.log_roll_ms),
            index_interval_bytes: get("index.interval.bytes")
                .map(|v| v as u32)
                .unwrap_or(self.config.log_index_interval_bytes),
            // The shard's cache budget is shared by its partitions; each log gets a slice of it.
            cache_bytes_max: (self.config.batch_cache_bytes / 8).max(1 << 20),
            retention_ms: get("retention.ms").unwrap_or(self.config.log_retention_ms),
            retention_bytes: get("retention.bytes").unwrap_or(self.config.log_retention_bytes),
            delete_enabled: topic
                .configs
                .get("cleanup.policy")
                .is_none_or(|p| p.split(',').any(|i| i.trim() == "delete")),
            log_append_time: topic.configs.get("message.timestamp.type").is_some_and(|t| t.trim() == "LogAppendTime"),
            compact_enabled: topic
                .configs
                .get("cleanup.policy")
                .is_some_and(|p| p.split(',').any(|i| i.trim() == "compact")),
            min_cleanable_dirty_ratio: topic
                .configs
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.5),
            delete_retention_ms: get("delete.retention.ms").unwrap_or(86_400_000),
            min_compaction_lag_ms: get("min.compaction.lag.ms").unwrap_or(self.config.log_cleaner_min_compaction_lag_ms),
            max_compaction_lag_ms: get("max.compaction.lag.ms").unwrap_or(self.config.log_cleaner_max_compaction_lag_ms),
        }
    }

    /// Every partition this shard owns (for the retention task).
    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Opens replicas placed on this shard, applies changed topic configs to
    /// open logs, and removes deleted ones. Returns the logs that could not be
    /// opened (the caller decides whether that is fatal: it is at start-up).
    pub async fn sync_with(&self, md: &ClusterMetadata) -> Vec<(PathBuf, StorageError)> {
        let _guard = self.sync_lock.lock().await;
        let mut failed = Vec::new();
        if md.version <= self.applied_version.get() && md.version != 0 {
            return failed;
        }
        // Open what is newly ours.
        let mut to_open = Vec::new();
        for topic in md.topics.values() {
            for p in &topic.partitions {
                let ours = p.replicas.iter().any(|r| r.node_id == self.node_id && crate::partition::manager::owner_of(r.shard, self.shard_count) == self.shard_id);
                if !ours {
                    continue;
                }
                let key = (topic.name.clone(), p.partition);
                let existing = self.partitions.borrow().get(&key).cloned();
                if let Some(existing) = existing {
                    if existing.topic_id == topic.id {
                        self.apply_role(&existing, p).await;
                        // Live configs: a changed topic config reaches the open log here.
                        let wanted = self.log_config(topic);
                        if existing.log().config() != wanted {
                            tracing::info!(topic = %topic.name, partition = p.partition, config = ?wanted, "applying changed topic configs");
                            existing.log().set_config(wanted);
                        }
                        continue;
                    }
                    // Same name, new topic: the old one was deleted and re-created.
                    self.partitions.borrow_mut().remove(&key);
                    if let Err(e) = existing.remove().await {
                        tracing::warn!(topic = %topic.name, partition = p.partition, error = %e, "removing old log failed");
                    }
                }
                to_open.push((key, topic, p));
            }
        }
        // New logs, several at a time: their recovery fsyncs overlap on the
        // blocking pool (one at a time, 50,000 partitions took minutes).
        for group in to_open.chunks(OPEN_CONCURRENCY) {
            let opens: Vec<OpenFuture<'_>> = group
                .iter()
                .map(|(key, topic, p)| {
                    let open: OpenFuture<'_> = Box::pin(self.open_new(key.clone(), topic, p));
                    open
                })
                .collect();
            failed.extend(join_all(opens).await.into_iter().flatten());
        }
        // Remove what is no longer ours (topic deleted or moved).
        let stale: Vec<(Key, Rc<Partition>)> = self
            .partitions
            .borrow()
            .iter()
            .filter(|((name, idx), part)| match md.topics.get(name) {
                None => true,
                Some(t) => {
                    t.id != part.topic_id
                        || t.partitions.get(*idx as usize).map_or(true, |p| {
                            !p.replicas.iter().any(|r| r.node_id == self.node_id && crate::partition::manager::owner_of(r.shard, self.shard_count) == self.shard_id)
                        })
                }
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, part) in stale {
            self.partitions.borrow_mut().remove(&key);
            let deleted = md.topics.get(&key.0).map_or(true, |t| t.id != part.topic_id);
            let result = if deleted { part.remove().await } else { part.close().await };
            if let Err(e) = result {
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "closing partition failed");
            }
            if deleted {
                // The topic's folder goes when its last partition does (another shard may still hold one).
                let _ = std::fs::remove_dir(self.kafka_dir.join(&key.0));
            }
        }
        self.applied_version.set(md.version);
        failed
    }

    /// During shutdown: role changes only (no log opened or closed).
    pub fn apply_roles_only(&self, md: &ClusterMetadata) {
        for part in self.all() {
            if let Some(meta) = md.topic(&part.topic).filter(|t| t.id == part.topic_id).and_then(|t| t.partitions.get(part.partition as usize)) {
                part.apply_metadata(meta, self.node_id);
            }
        }
    }

    /// Follows the controller's leader and ISR for one local replica.
    async fn apply_role(&self, part: &Rc<Partition>, meta: &crate::metadata::PartitionMeta) {
        use crate::partition::replica::Transition;
        match part.apply_metadata(meta, self.node_id) {
            Transition::BecameLeader { epoch } => {
                tracing::info!(topic = %part.topic, partition = part.partition, epoch, isr = ?meta.isr, "leading partition");
                if let Err(e) = part.log().start_leader_epoch(epoch).await {
                    tracing::error!(topic = %part.topic, partition = part.partition, error = %e, "cannot record the new leader epoch");
                }
            }
            Transition::BecameFollower { leader, epoch } => {
                tracing::info!(topic = %part.topic, partition = part.partition, leader, epoch, "following partition");
            }
            Transition::Unchanged | Transition::IsrChanged => {}
        }
    }

    /// Retention on this shard: every `log.retention.check.interval.ms` one
    /// pass over its partitions until shutdown.
    pub async fn retention_loop(&self, shutdown: &shards::Shutdown) {
        let interval = std::time::Duration::from_millis(self.config.log_retention_check_interval_ms.max(1));
        loop {
            let tick = async {
                glommio::timer::sleep(interval).await;
                true
            };
            let stop = async {
                shutdown.wait().await;
                false
            };
            if !futures_lite::future::or(tick, stop).await {
                return;
            }
            self.retention_pass().await;
        }
    }

    /// One retention pass: each log deletes at most
    /// `storage::retention::SEGMENTS_PER_PASS_MAX` segments, and the task
    /// yields between logs so produce and fetch on this shard keep running.
    pub async fn retention_pass(&self) {
        for part in self.all() {
            let now = crate::storage::recovery::now_ms();
            match part.log().apply_retention(now).await {
                Ok(t) if t.segments_deleted > 0 => tracing::info!(
                    topic = %part.topic,
                    partition = part.partition,
                    segments = t.segments_deleted,
                    bytes = t.bytes_deleted,
                    log_start = t.log_start_offset,
                    "retention deleted old segments"
                ),
                Ok(_) | Err(StorageError::Closed) => {}
                Err(e) => tracing::warn!(topic = %part.topic, partition = part.partition, error = %e, "retention pass failed"),
            }
            glommio::executor().yield_if_needed().await;
        }
    }

    /// Compaction on this shard until shutdown: a pass over every compacted
    /// log, then `log.cleaner.backoff.ms` of rest when no pass cleaned
    /// anything (a pass that did work is followed by another at once).
    pub async fn cleaner_loop(&self, shutdown: &shards::Shutdown) {
        let backoff = std::time::Duration::from_millis(self.config.log_cleaner_backoff_ms.max(1));
        loop {
            let worked = self.cleaner_pass().await;
            if worked {
                glommio::executor().yield_if_needed().await;
                continue;
            }
            let tick = async {
                glommio::timer::sleep(backoff).await;
                true
            };
            let stop = async {
                shutdown.wait().await;
                false
            };
            if !futures_lite::future::or(tick, stop).await {
                return;
            }
        }
    }

    /// One compaction pass over this shard's logs; true if any segment was cleaned.
    pub async fn cleaner_pass(&self) -> bool {
        let entries_max = self.config.log_cleaner_dedupe_buffer_size / crate::storage::compaction::KEY_MAP_ENTRY_BYTES;
        let mut worked = false;
        for part in self.all() {
            let now = crate::storage::recovery::now_ms();
            // Data of aborted transactions goes too (their markers stay, so the index still knows
            // them); keys of committed ones (below the LSO) supersede older records.
            let aborted = if part.log().config().compact_enabled {
                crate::storage::compaction::AbortedTxns::new(
                    part.aborted_between(0, i64::MAX).into_iter().map(|a| (a.producer_id, a.first_offset, a.last_offset)),
                    part.last_stable_offset(),
                )
            } else {
                crate::storage::compaction::AbortedTxns::default()
            };
            match part.log().compact_aborting(now, entries_max, &aborted).await {
                Ok(s) if s.segments_cleaned > 0 => {
                    worked = true;
                    tracing::info!(
                        topic = %part.topic,
                        partition = part.partition,
                        segments = s.segments_cleaned,
                        segments_merged = s.segments_merged,
                        records_removed = s.records_removed,
                        bytes_before = s.bytes_before,
                        bytes_after = s.bytes_after,
                        "compaction cleaned segments"
                    );
                }
                Ok(_) | Err(StorageError::Closed) => {}
                Err(e) => tracing::warn!(topic = %part.topic, partition = part.partition, error = %e, "compaction pass failed"),
            }
            glommio::executor().yield_if_needed().await;
        }
        worked
    }

    /// Opens a replica newly placed on this shard and takes its role; the
    /// log's directory and error when it cannot be opened.
    async fn open_new(&self, key: Key, topic: &crate::metadata::TopicMeta, p: &crate::metadata::PartitionMeta) -> Option<(PathBuf, StorageError)> {
        let dir = partition_dir(&self.kafka_dir, topic, p.partition);
        match Log::open(dir.clone(), self.log_config(topic)).await {
            Ok(log) => {
                let part = Rc::new(Partition::new(topic.name.clone(), p.partition, topic.id, p.leader_epoch, log));
                part.set_producer_state_config(crate::partition::producer_state::ProducerStateConfig {
                    expiration_ms: self.config.producer_id_expiration_ms,
                    entries_max: self.config.producer_state_entries_max,
                });
                self.partitions.borrow_mut().insert(key, part.clone());
                self.apply_role(&part, p).await;
                None
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot open partition log");
                Some((dir, e))
            }
        }
    }

    /// Clean shutdown: sync and close every log. The logs' files are synced
    /// together (one syncfs) before any clean marker is written, and the
    /// markers together after: a marker must never be durable before the
    /// index files and tail size it vouches for.
    pub async fn close_all(&self) -> Result<(), StorageError> {
        let _guard = self.sync_lock.lock().await;
        let all: Vec<Rc<Partition>> = self.partitions.borrow_mut().drain().map(|(_, p)| p).collect();
        let mut first_error = None;
        let mut closed = Vec::new();
        // A few at a time: their durable writes overlap on the blocking pool.
        for group in all.chunks(CLOSE_CONCURRENCY) {
            let tasks: Vec<_> = group
                .iter()
                .map(|p| {
                    let p = p.clone();
                    glommio::spawn_local(async move {
                        let result = p.close_for_shutdown().await;
                        (p, result)
                    })
                })
                .collect();
            for task in tasks {
                let (p, result) = task.await;
                match result {
                    Ok(()) => closed.push(p.log().dir().to_path_buf()),
                    Err(e) => {
                        tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "close failed");
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if !closed.is_empty() {
            let sync_dir = self.kafka_dir.clone();
            let marked = glommio::executor()
                .spawn_blocking(move || -> std::io::Result<()> {
                    recovery::sync_file_system(&sync_dir)?;
                    for dir in &closed {
                        recovery::write_clean_marker(dir, false)?;
                    }
                    recovery::sync_file_system(&sync_dir)
                })
                .await;
            // Without markers the next open rescans the tails: slower, never wrong.
            if let Err(e) = marked {
                tracing::error!(error = %e, "syncing the closed logs failed");
                first_error.get_or_insert(e.into());
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
