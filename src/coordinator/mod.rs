//! The group coordinator: classic consumer groups and committed offsets.
//!
//! State lives in the internal topic `__consumer_offsets`: offset commits and
//! group metadata are records in Kafka's own schemas (`records.rs`). A group
//! belongs to offsets partition `abs(hashCode(group)) % partitions`; the shard
//! that owns that partition's leader replica is the group's coordinator and
//! the only one that holds the group (`GroupCoordinator`, one per shard, in
//! `ShardState`). Handlers on any shard find it with [`locate`] and reach it
//! with `mesh.call` ([`call_partition`]). When the partition's leader moves
//! (another shard, later another broker) the state follows it: the new owner
//! rebuilds it by reading the partition's log from the start, answering
//! COORDINATOR_LOAD_IN_PROGRESS until done.
//!
//! | file | owns |
//! |---|---|
//! | `records.rs` | `__consumer_offsets` key/value schemas, batch encoding, group → partition |
//! | `group.rs` | one group's members and rebalance state machine (no I/O) |
//! | `ops.rs` | the API operations on the owner shard: join, sync, heartbeat, leave, commit, fetch, … |
//!
//! Runs on every shard; a `GroupCoordinator` only ever touches the offsets
//! partitions its own shard owns. It never touches other shards' state.

pub mod expiry;
pub mod group;
pub mod ops;
pub mod records;
pub mod txn_offsets;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_channel::oneshot;

use crate::metadata::{ControllerError, CreateTopicRequest, ShardId};
use crate::partition::{Durability, Partition, PartitionError};
use crate::shard::ShardState;
use group::{Group, RebalanceTiming};
use records::OffsetsRecord;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often each shard checks its groups' session and rebalance deadlines.
const TICK: Duration = Duration::from_millis(100);
/// Bytes read from the log per step when rebuilding a partition's groups.
const LOAD_READ_BYTES: usize = 1 << 20;
/// How long a group request waits for its partition to load before answering
/// COORDINATOR_LOAD_IN_PROGRESS (the client retries).
const LOAD_WAIT: Duration = Duration::from_secs(5);
/// Largest `committed_metadata` string (Kafka's offset.metadata.max.bytes default).
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// Errors of group operations; `crate::error::group_error_code` maps each to Kafka's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    NotCoordinator,
    LoadInProgress,
    CoordinatorNotAvailable,
    InvalidGroupId,
    UnknownMemberId,
    IllegalGeneration,
    RebalanceInProgress,
    InconsistentGroupProtocol,
    FencedInstanceId,
    MemberIdRequired,
    GroupMaxSizeReached,
    InvalidSessionTimeout,
    GroupIdNotFound,
    NonEmptyGroup,
    UnknownTopicOrPartition,
    OffsetMetadataTooLarge,
    GroupSubscribedToTopic,
    /// Protocol metadata over `fjord.group.member.metadata.max.bytes`.
    MetadataTooLarge,
    /// TxnOffsetCommit from a producer fenced on the offsets partition.
    InvalidProducerEpoch,
}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for GroupError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadState {
    Loading,
    Loaded,
}

/// The groups of one `__consumer_offsets` partition, on its owner shard.
pub struct OffsetsPartition {
    pub index: i32,
    pub log: Rc<Partition>,
    /// The leader epoch of `log` this state was loaded in: a new leadership
    /// (even of this same replica) reloads, since another leader may have
    /// written in between.
    leader_epoch: i32,
    state: Cell<LoadState>,
    load_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    pub groups: RefCell<HashMap<String, Group>>,
    /// Transactional offsets written to this partition and awaiting their
    /// marker, by producer id (`txn_offsets`); rebuilt by `load`.
    pub pending_txn: RefCell<HashMap<i64, Vec<txn_offsets::Pending>>>,
}

impl OffsetsPartition {
    pub fn is_loaded(&self) -> bool {
        self.state.get() == LoadState::Loaded
    }

    /// Appends records (key, value or tombstone) and waits until fdatasync'ed.
    pub async fn append(&self, recs: &[(bytes::Bytes, Option<bytes::Bytes>)]) -> Result<(), GroupError> {
        let batch = records::encode_batch(recs, group::now_ms()).map_err(|_| GroupError::CoordinatorNotAvailable)?;
        let headers = crate::storage::validate_batches(&batch).map_err(|e| {
            tracing::error!(error = %e, "encoded __consumer_offsets batch does not validate");
            GroupError::CoordinatorNotAvailable
        })?;
        match self.log.append(BytesMut::from(&batch[..]), &headers, Durability::Synced).await {
            Ok(_) => Ok(()),
            Err(PartitionError::NotHere) => Err(GroupError::NotCoordinator),
            Err(e) => {
                tracing::warn!(partition = self.index, error = ?e, "writing __consumer_offsets failed");
                Err(GroupError::CoordinatorNotAvailable)
            }
        }
    }

    /// Persists one group's metadata as it is now.
    pub async fn persist_group(&self, group_id: &str) -> Result<(), GroupError> {
        let value = {
            let groups = self.groups.borrow();
            match groups.get(group_id) {
                Some(g) => records::group_value(&g.value()),
                None => return Ok(()),
            }
        };
        self.append(&[(records::group_key(group_id), Some(value))]).await
    }

    /// Rebuilds the partition's groups and offsets from its log, in bounded reads.
    async fn load(&self) -> Result<(), PartitionError> {
        let started = Instant::now();
        let mut offset = self.log.log_start_offset();
        let mut group_values: HashMap<String, Option<records::GroupValue>> = HashMap::new();
        let mut offsets: HashMap<String, HashMap<(String, i32), records::OffsetValue>> = HashMap::new();
        let mut count = 0u64;
        let mut txn_pending = HashMap::new();
        loop {
            // To the log end, not the HW: a new leader's HW lags what the old one acknowledged (Kafka loads to the end too).
            let read = self.log.read_to_end(offset, LOAD_READ_BYTES, true).await?;
            let Some(last) = read.last_offset else { break };
            for bytes in read.chunks.iter().cloned() {
                let recs = match txn_offsets::decode_for_load(bytes, &mut txn_pending) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(partition = self.index, offset, error = ?e, "skipping undecodable __consumer_offsets batch");
                        continue;
                    }
                };
                for (_, key, value) in recs {
                    let Some(key) = key else { continue };
                    count += 1;
                    match records::decode(key, value) {
                        Ok(OffsetsRecord::Offset { group, topic, partition, value }) => {
                            let g = offsets.entry(group).or_default();
                            match value {
                                Some(v) => {
                                    g.insert((topic, partition), v);
                                }
                                None => {
                                    g.remove(&(topic, partition));
                                }
                            }
                        }
                        Ok(OffsetsRecord::Group { group, value }) => {
                            if value.is_none() {
                                // A deleted group's offsets were tombstoned before it.
                                offsets.remove(&group);
                            }
                            group_values.insert(group, value);
                        }
                        Err(e) => tracing::warn!(partition = self.index, error = ?e, "skipping bad __consumer_offsets record"),
                    }
                }
            }
            offset = last + 1;
            glommio::yield_if_needed().await;
        }
        let now = Instant::now();
        let mut groups = HashMap::new();
        for (id, v) in group_values {
            if let Some(v) = v {
                groups.insert(id.clone(), Group::restore(id, v, now));
            }
        }
        for (id, offs) in offsets {
            if offs.is_empty() && !groups.contains_key(&id) {
                continue;
            }
            groups.entry(id.clone()).or_insert_with(|| Group::new(id)).offsets = offs;
        }
        tracing::info!(
            partition = self.index,
            groups = groups.len(),
            records = count,
            ms = started.elapsed().as_millis() as u64,
            "loaded __consumer_offsets partition"
        );
        *self.groups.borrow_mut() = groups;
        *self.pending_txn.borrow_mut() = txn_offsets::pending_after_load(txn_pending);
        Ok(())
    }

    fn finish_load(&self) {
        self.state.set(LoadState::Loaded);
        for w in self.load_waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }
}

/// Per-shard registry of the offsets partitions this shard coordinates.
#[derive(Default)]
pub struct GroupCoordinator {
    partitions: RefCell<HashMap<i32, Rc<OffsetsPartition>>>,
    ticker_started: Cell<bool>,
}

impl GroupCoordinator {
    pub fn new() -> Self {
        Self::default()
    }

    /// The loaded groups of offsets partition `index`, or why not: not on this
    /// shard (NOT_COORDINATOR) or still loading (COORDINATOR_LOAD_IN_PROGRESS;
    /// the load is started here if it was not running).
    pub async fn partition(&self, shard: &Rc<ShardState>, index: i32) -> Result<Rc<OffsetsPartition>, GroupError> {
        self.start_ticker(shard);
        let Some(log) = shard.local_partition(OFFSETS_TOPIC, index).await else {
            self.unload(index);
            return Err(GroupError::NotCoordinator);
        };
        if !log.is_leader() {
            self.unload(index);
            return Err(GroupError::NotCoordinator);
        }
        let existing = self.partitions.borrow().get(&index).cloned();
        if let Some(op) = existing {
            if Rc::ptr_eq(&op.log, &log) && op.leader_epoch == log.leader_epoch() {
                return if op.is_loaded() { Ok(op) } else { Err(GroupError::LoadInProgress) };
            }
            self.unload(index);
        }
        let op = Rc::new(OffsetsPartition {
            index,
            leader_epoch: log.leader_epoch(),
            log,
            state: Cell::new(LoadState::Loading),
            load_waiters: RefCell::new(Vec::new()),
            groups: RefCell::new(HashMap::new()),
            pending_txn: RefCell::new(HashMap::new()),
        });
        self.partitions.borrow_mut().insert(index, op.clone());
        let shard = shard.clone();
        glommio::spawn_local(async move {
            match op.load().await {
                Ok(()) => op.finish_load(),
                Err(e) => {
                    tracing::error!(partition = index, error = ?e, "loading __consumer_offsets failed; will retry on the next request");
                    let mut parts = shard.groups.partitions.borrow_mut();
                    if parts.get(&index).is_some_and(|p| Rc::ptr_eq(p, &op)) {
                        parts.remove(&index);
                    }
                    drop(parts);
                    op.load_waiters.borrow_mut().clear();
                }
            }
        })
        .detach();
        Err(GroupError::LoadInProgress)
    }

    /// Like `partition`, but waits up to `timeout` for a load to finish.
    pub async fn partition_loaded(
        &self,
        shard: &Rc<ShardState>,
        index: i32,
        timeout: Duration,
    ) -> Result<Rc<OffsetsPartition>, GroupError> {
        match self.partition(shard, index).await {
            Err(GroupError::LoadInProgress) => {}
            other => return other,
        }
        let rx = {
            let parts = self.partitions.borrow();
            let Some(op) = parts.get(&index) else { return Err(GroupError::LoadInProgress) };
            if op.is_loaded() {
                // The load may finish before we get here (a small log loads at once).
                None
            } else {
                let (tx, rx) = oneshot::channel();
                op.load_waiters.borrow_mut().push(tx);
                Some(rx)
            }
        };
        let Some(rx) = rx else { return self.partition(shard, index).await };
        let waited = futures_lite::future::or(async { rx.await.is_ok() }, async {
            glommio::timer::sleep(timeout).await;
            false
        })
        .await;
        if !waited {
            return Err(GroupError::LoadInProgress);
        }
        self.partition(shard, index).await
    }

    /// Drops a partition that is no longer ours; waiting members learn NOT_COORDINATOR.
    /// Committed offsets of every loaded group here: (group, topic,
    /// partition, offset), for `/metrics`.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let mut out = Vec::new();
        for part in self.partitions.borrow().values().filter(|p| p.is_loaded()) {
            for (id, g) in part.groups.borrow().iter() {
                for ((topic, partition), v) in &g.offsets {
                    out.push((id.clone(), topic.clone(), *partition, v.offset));
                }
            }
        }
        out
    }

    fn unload(&self, index: i32) {
        let Some(op) = self.partitions.borrow_mut().remove(&index) else { return };
        let groups = std::mem::take(&mut *op.groups.borrow_mut());
        for (_, mut g) in groups {
            for m in g.members.values_mut() {
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(group::JoinResult::error(GroupError::NotCoordinator, &m.id));
                }
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(group::SyncResult::error(GroupError::NotCoordinator));
                }
            }
        }
        tracing::info!(partition = index, "unloaded __consumer_offsets partition");
    }

    /// Every loaded partition (ListGroups).
    pub fn loaded(&self) -> Vec<Rc<OffsetsPartition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Whether any partition of this shard is still loading.
    pub fn any_loading(&self) -> bool {
        self.partitions.borrow().values().any(|p| !p.is_loaded())
    }

    fn start_ticker(&self, shard: &Rc<ShardState>) {
        if self.ticker_started.replace(true) {
            return;
        }
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let mut last_expiry_check = Instant::now();
            loop {
                let stop = async {
                    shard.shutdown.wait().await;
                    true
                };
                let tick = async {
                    glommio::timer::sleep(TICK).await;
                    false
                };
                if futures_lite::future::or(stop, tick).await {
                    return;
                }
                tick_all(&shard).await;
                if last_expiry_check.elapsed() >= Duration::from_millis(shard.config.offsets_retention_check_interval_ms as u64) {
                    last_expiry_check = Instant::now();
                    expiry::expire_offsets(&shard).await;
                }
            }
        })
        .detach();
    }
}

pub fn timing(shard: &ShardState) -> RebalanceTiming {
    RebalanceTiming { initial_delay: Duration::from_millis(shard.config.group_initial_rebalance_delay_ms) }
}

/// Session expiry and rebalance deadlines of every group on this shard.
async fn tick_all(shard: &Rc<ShardState>) {
    let now = Instant::now();
    let timing = timing(shard);
    for op in shard.groups.loaded() {
        if !op.is_loaded() {
            continue;
        }
        let to_persist: Vec<String> = {
            let mut groups = op.groups.borrow_mut();
            groups.values_mut().filter_map(|g| g.tick(now, timing).then(|| g.id.clone())).collect()
        };
        for id in to_persist {
            if let Err(e) = op.persist_group(&id).await {
                tracing::warn!(group = %id, error = %e, "persisting group metadata failed");
            }
        }
    }
}

/// Where a group's coordinator is: offsets partition and owner shard.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub partition: i32,
    pub shard: ShardId,
}

/// Creates `__consumer_offsets` through the controller if it does not exist.
pub async fn ensure_offsets_topic(shard: &ShardState) -> Result<(), GroupError> {
    if shard.metadata().topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let req = CreateTopicRequest {
        name: OFFSETS_TOPIC.to_string(),
        partitions: shard.config.offsets_topic_num_partitions,
        // Kafka refuses to create it on fewer brokers than this (the client
        // gets COORDINATOR_NOT_AVAILABLE and retries until enough register).
        replication_factor: shard.config.offsets_topic_replication_factor,
        configs: [("cleanup.policy".to_string(), "compact".to_string())].into_iter().collect(),
        internal: true,
        assignments: Vec::new(),
    };
    let mut results = shard.controller.create_topics(vec![req], false).await;
    match results.pop() {
        Some(Ok(_)) => {
            tracing::info!(partitions = shard.config.offsets_topic_num_partitions, "created {OFFSETS_TOPIC}");
            Ok(())
        }
        Some(Err(ControllerError::TopicAlreadyExists(_))) => Ok(()),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}");
            Err(GroupError::CoordinatorNotAvailable)
        }
        None => Err(GroupError::CoordinatorNotAvailable),
    }
}

/// The coordinator of `group`. With `create`, makes `__consumer_offsets` first
/// if needed; without, a missing topic is COORDINATOR_NOT_AVAILABLE.
pub async fn locate(shard: &ShardState, group: &str, create: bool) -> Result<Route, GroupError> {
    if create {
        ensure_offsets_topic(shard).await?;
    }
    let md = shard.metadata();
    let Some(topic) = md.topic(OFFSETS_TOPIC) else {
        return Err(GroupError::CoordinatorNotAvailable);
    };
    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if count == 0 {
        return Err(GroupError::CoordinatorNotAvailable);
    }
    let partition = records::partition_for(group, count);
    let Some(p) = usize::try_from(partition).ok().and_then(|i| topic.partitions.get(i)) else {
        return Err(GroupError::CoordinatorNotAvailable);
    };
    if p.leader.node_id != shard.config.node_id {
        return Err(GroupError::NotCoordinator);
    }
    Ok(Route { partition, shard: shard.owner_of(p.leader.shard) })
}

/// Runs `f` on the coordinator shard with the loaded offsets partition
/// (waiting up to `LOAD_WAIT` for a load, then COORDINATOR_LOAD_IN_PROGRESS).
pub async fn call_partition<T, F, Fut>(shard: &ShardState, route: Route, f: F) -> Result<T, GroupError>
where
    T: Send + 'static,
    F: FnOnce(Rc<ShardState>, Rc<OffsetsPartition>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, GroupError>> + 'static,
{
    let index = route.partition;
    shard
        .mesh
        .call(route.shard, move |s: Rc<ShardState>| async move {
            let op = s.groups.partition_loaded(&s, index, LOAD_WAIT).await?;
            f(s, op).await
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
}

/// Kafka's rule for group ids: non-empty.
pub fn validate_group_id(group: &str) -> Result<(), GroupError> {
    if group.is_empty() {
        Err(GroupError::InvalidGroupId)
    } else {
        Ok(())
    }
}

/// At start: begin loading the offsets partitions this shard owns, so groups
/// are ready before their members come back.
pub async fn load_owned(shard: Rc<ShardState>) {
    let md = shard.metadata();
    let Some(topic) = md.topic(OFFSETS_TOPIC) else { return };
    for p in &topic.partitions {
        if p.leader.node_id == shard.config.node_id && shard.owner_of(p.leader.shard) == shard.id {
            let _ = shard.groups.partition(&shard, p.partition).await;
        }
    }
}
