//! The transaction coordinator: transactional ids, their producer id and
//! epoch, and the state of their current transaction.
//!
//! State lives in the internal compacted topic `__transaction_state`, one
//! record per change in Kafka's schemas (`records.rs`). A transactional id
//! belongs to partition `(hashCode(id) & 0x7fffffff) % partitions` (the rule
//! of groups); the shard owning that partition's leader replica coordinates
//! it (`TxnCoordinator`, one per shard, in `ShardState`) and is the only one
//! holding its state. Handlers on any shard find it with [`locate`] and reach
//! it with `mesh.call` ([`call`]). A partition's state is rebuilt from its log
//! at first use (and at start, [`load_owned`]); a transaction found in
//! PrepareCommit/PrepareAbort is completed then (markers rewritten).
//!
//! Ending a transaction: the Prepare state is persisted, then a COMMIT/ABORT
//! marker is written to every partition of the transaction on its owner shard
//! (and, for `__consumer_offsets` partitions, the group coordinator there
//! materialises or drops the pending transactional offsets), then the
//! Complete state is persisted and EndTxn answered. Operations on the
//! transactional ids of one partition run one at a time (an async mutex per
//! partition), so the timeout sweep and client requests never interleave.
//!
//! A ticker per shard aborts transactions open past their timeout, bumping
//! the epoch (the producer is fenced, as in Kafka), and retries stuck Prepare
//! states.

pub mod records;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;

use crate::coordinator::OFFSETS_TOPIC;
use crate::metadata::{ControllerError, CreateTopicRequest, ShardId};
use crate::partition::{Durability, Partition};
use crate::shard::ShardState;

pub const TXN_TOPIC: &str = "__transaction_state";
/// How often each shard looks for timed-out transactions (Kafka's
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` is 10 s;
/// shorter here, the sweep is cheap).
const SWEEP_INTERVAL: Duration = Duration::from_millis(1000);
/// Tombstones per `__transaction_state` batch when ids expire.
const EXPIRE_IDS_PER_BATCH: usize = 500;
/// Bytes read from the log per step when rebuilding a partition's state.
const LOAD_READ_BYTES: usize = 1 << 20;

/// Kafka's TransactionState ids (the `transaction_status` of the log value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
}

impl TxnState {
    /// Kafka's name of the state (ListTransactions, DescribeTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Names Kafka lists, including states Fjord never enters.
    pub const KNOWN_NAMES: &'static [&'static str] =
        &["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"];

    pub fn from_i8(v: i8) -> Option<TxnState> {
        Some(match v {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            _ => return None,
        })
    }
}

/// One transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    /// The epoch before the broker bumped it to abort a timed-out
    /// transaction (-1 if none): that producer may still re-initialise
    /// with it (KIP-360), as Kafka's `lastProducerEpoch` allows. In memory
    /// only, like Kafka's.
    pub prev_epoch: i16,
}

/// Errors of transaction operations; `crate::error::txn_error_code` maps each to Kafka's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    NotCoordinator,
    LoadInProgress,
    CoordinatorNotAvailable,
    InvalidProducerIdMapping,
    /// PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH on versions before it existed.
    ProducerFenced,
    ConcurrentTransactions,
    InvalidTxnState,
    InvalidTransactionTimeout,
    InvalidRequest,
    TransactionalIdNotFound,
}

impl std::fmt::Display for TxnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for TxnError {}

pub fn now_ms() -> i64 {
    crate::storage::recovery::now_ms()
}

/// The transactional ids of one `__transaction_state` partition, on its owner shard.
pub struct TxnPartition {
    pub index: i32,
    pub log: Rc<Partition>,
    /// The leader epoch the state was loaded in (a new leadership reloads).
    leader_epoch: i32,
    loaded: Cell<bool>,
    /// One operation at a time on this partition's ids.
    lock: std::sync::Arc<async_lock::Mutex<()>>,
    pub txns: RefCell<HashMap<String, TxnMeta>>,
}

impl TxnPartition {
    async fn persist(&self, id: &str, m: &TxnMeta) -> Result<(), TxnError> {
        let batch = crate::coordinator::records::encode_batch(&[(records::key(id), Some(records::value(m)))], now_ms())
            .map_err(|_| TxnError::CoordinatorNotAvailable)?;
        let headers = crate::storage::validate_batches(&batch).map_err(|_| TxnError::CoordinatorNotAvailable)?;
        match self.log.append(BytesMut::from(&batch[..]), &headers, Durability::Synced).await {
            Ok(_) => {
                self.txns.borrow_mut().insert(id.to_string(), m.clone());
                Ok(())
            }
            Err(crate::partition::PartitionError::NotHere) => Err(TxnError::NotCoordinator),
            Err(e) => {
                tracing::warn!(partition = self.index, error = ?e, "writing {TXN_TOPIC} failed");
                Err(TxnError::CoordinatorNotAvailable)
            }
        }
    }

    /// Forgets `ids`: one batch of tombstones, then the in-memory entries.
    async fn remove(&self, ids: &[String]) -> Result<(), TxnError> {
        let tombstones: Vec<_> = ids.iter().map(|id| (records::key(id), None)).collect();
        let batch =
            crate::coordinator::records::encode_batch(&tombstones, now_ms()).map_err(|_| TxnError::CoordinatorNotAvailable)?;
        let headers = crate::storage::validate_batches(&batch).map_err(|_| TxnError::CoordinatorNotAvailable)?;
        match self.log.append(BytesMut::from(&batch[..]), &headers, Durability::Synced).await {
            Ok(_) => {
                let mut txns = self.txns.borrow_mut();
                for id in ids {
                    txns.remove(id);
                }
                Ok(())
            }
            Err(crate::partition::PartitionError::NotHere) => Err(TxnError::NotCoordinator),
            Err(e) => {
                tracing::warn!(partition = self.index, error = ?e, "writing {TXN_TOPIC} tombstones failed");
                Err(TxnError::CoordinatorNotAvailable)
            }
        }
    }

    async fn load(&self) -> Result<(), TxnError> {
        let mut offset = self.log.log_start_offset();
        let mut txns: HashMap<String, TxnMeta> = HashMap::new();
        loop {
            // To the log end, not the HW: a new leader's HW lags what the old one acknowledged (Kafka loads to the end too).
            let read = self.log.read_to_end(offset, LOAD_READ_BYTES, true).await.map_err(|_| TxnError::CoordinatorNotAvailable)?;
            let Some(last) = read.last_offset else { break };
            for bytes in read.chunks.iter().cloned() {
                let recs = match crate::coordinator::records::decode_batches(bytes) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(partition = self.index, offset, error = ?e, "skipping undecodable {TXN_TOPIC} batch");
                        continue;
                    }
                };
                for (_, key, value) in recs {
                    let Some(key) = key else { continue };
                    let Ok(id) = records::decode_key(key) else { continue };
                    match value.map(records::decode_value) {
                        Some(Ok(m)) => {
                            txns.insert(id, m);
                        }
                        None => {
                            txns.remove(&id);
                        }
                        Some(Err(e)) => tracing::warn!(partition = self.index, error = ?e, "skipping bad {TXN_TOPIC} record"),
                    }
                }
            }
            offset = last + 1;
            glommio::yield_if_needed().await;
        }
        tracing::info!(partition = self.index, transactional_ids = txns.len(), "loaded {TXN_TOPIC} partition");
        *self.txns.borrow_mut() = txns;
        Ok(())
    }
}

/// Per-shard registry of the `__transaction_state` partitions this shard coordinates.
#[derive(Default)]
pub struct TxnCoordinator {
    partitions: RefCell<HashMap<i32, Rc<TxnPartition>>>,
    sweeper_started: Cell<bool>,
}

impl TxnCoordinator {
    pub fn new() -> Self {
        Self::default()
    }

    /// The partition's state, loaded (and its interrupted transactions
    /// completed) on first use. Returns with the partition's lock held.
    async fn partition(
        &self,
        shard: &Rc<ShardState>,
        index: i32,
    ) -> Result<(Rc<TxnPartition>, async_lock::MutexGuardArc<()>), TxnError> {
        self.start_sweeper(shard);
        let Some(log) = shard.local_partition(TXN_TOPIC, index).await else {
            self.partitions.borrow_mut().remove(&index);
            return Err(TxnError::NotCoordinator);
        };
        if !log.is_leader() {
            self.partitions.borrow_mut().remove(&index);
            return Err(TxnError::NotCoordinator);
        }
        let existing = self.partitions.borrow().get(&index).cloned();
        let tp = match existing {
            Some(tp) if Rc::ptr_eq(&tp.log, &log) && tp.leader_epoch == log.leader_epoch() => tp,
            _ => {
                let tp = Rc::new(TxnPartition {
                    index,
                    leader_epoch: log.leader_epoch(),
                    log,
                    loaded: Cell::new(false),
                    lock: std::sync::Arc::new(async_lock::Mutex::new(())),
                    txns: RefCell::new(HashMap::new()),
                });
                self.partitions.borrow_mut().insert(index, tp.clone());
                tp
            }
        };
        let guard = tp.lock.lock_arc().await;
        if !tp.loaded.get() {
            tp.load().await?;
            tp.loaded.set(true);
            let interrupted: Vec<String> = tp
                .txns
                .borrow()
                .iter()
                .filter(|(_, m)| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
                .map(|(id, _)| id.clone())
                .collect();
            for id in interrupted {
                if let Err(e) = complete(shard, &tp, &id).await {
                    tracing::warn!(transactional_id = %id, error = %e, "completing an interrupted transaction failed; retried later");
                }
            }
        }
        Ok((tp, guard))
    }

    /// Every transactional id of the loaded partitions on this shard with its state.
    pub fn list(&self) -> Vec<(String, TxnMeta)> {
        let parts: Vec<Rc<TxnPartition>> = self.partitions.borrow().values().filter(|p| p.loaded.get()).cloned().collect();
        let mut out = Vec::new();
        for p in parts {
            out.extend(p.txns.borrow().iter().map(|(id, m)| (id.clone(), m.clone())));
        }
        out
    }

    fn start_sweeper(&self, shard: &Rc<ShardState>) {
        if self.sweeper_started.replace(true) {
            return;
        }
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let mut last_expiry_check = std::time::Instant::now();
            loop {
                let stop = async {
                    shard.shutdown.wait().await;
                    true
                };
                let tick = async {
                    glommio::timer::sleep(SWEEP_INTERVAL).await;
                    false
                };
                if futures_lite::future::or(stop, tick).await {
                    return;
                }
                sweep(&shard).await;
                let every = Duration::from_millis(shard.config.transaction_remove_expired_transaction_cleanup_interval_ms as u64);
                if last_expiry_check.elapsed() >= every {
                    last_expiry_check = std::time::Instant::now();
                    expire_ids(&shard).await;
                }
            }
        })
        .detach();
    }
}

/// Where a transactional id's coordinator is.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub partition: i32,
    pub shard: ShardId,
}

/// Creates `__transaction_state` through the controller if it does not exist.
pub async fn ensure_topic(shard: &ShardState) -> Result<(), TxnError> {
    if shard.metadata().topic(TXN_TOPIC).is_some() {
        return Ok(());
    }
    let req = CreateTopicRequest {
        name: TXN_TOPIC.to_string(),
        partitions: shard.config.transaction_state_log_num_partitions,
        replication_factor: shard.config.transaction_state_log_replication_factor,
        configs: [
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("min.insync.replicas".to_string(), shard.config.transaction_state_log_min_isr.to_string()),
        ]
        .into_iter()
        .collect(),
        internal: true,
        assignments: Vec::new(),
    };
    let mut results = shard.controller.create_topics(vec![req], false).await;
    match results.pop() {
        Some(Ok(_)) => {
            tracing::info!(partitions = shard.config.transaction_state_log_num_partitions, "created {TXN_TOPIC}");
            Ok(())
        }
        Some(Err(ControllerError::TopicAlreadyExists(_))) => Ok(()),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot create {TXN_TOPIC}");
            Err(TxnError::CoordinatorNotAvailable)
        }
        None => Err(TxnError::CoordinatorNotAvailable),
    }
}

/// The `__transaction_state` partition of `id` and its leader's node id.
pub fn partition_of(shard: &ShardState, id: &str) -> Result<(i32, i32, ShardId), TxnError> {
    let md = shard.metadata();
    let topic = md.topic(TXN_TOPIC).ok_or(TxnError::CoordinatorNotAvailable)?;
    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if count == 0 {
        return Err(TxnError::CoordinatorNotAvailable);
    }
    let partition = crate::coordinator::records::partition_for(id, count);
    let p = usize::try_from(partition).ok().and_then(|i| topic.partitions.get(i)).ok_or(TxnError::CoordinatorNotAvailable)?;
    Ok((partition, p.leader.node_id, p.leader.shard))
}

/// The coordinator of `id` on this broker, creating the topic if asked.
pub async fn locate(shard: &ShardState, id: &str, create: bool) -> Result<Route, TxnError> {
    if create {
        ensure_topic(shard).await?;
    }
    let (partition, node, placed) = partition_of(shard, id)?;
    if node != shard.config.node_id {
        return Err(TxnError::NotCoordinator);
    }
    Ok(Route { partition, shard: shard.owner_of(placed) })
}

/// Runs `op` for `id` on its coordinator shard, with the partition loaded and locked.
pub async fn call<T, F, Fut>(shard: &ShardState, id: String, create: bool, op: F) -> Result<T, TxnError>
where
    T: Send + 'static,
    F: FnOnce(Rc<ShardState>, Rc<TxnPartition>, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, TxnError>> + 'static,
{
    if id.is_empty() {
        return Err(TxnError::InvalidRequest);
    }
    let route = locate(shard, &id, create).await?;
    let index = route.partition;
    shard
        .mesh
        .call(route.shard, move |s: Rc<ShardState>| async move {
            let (tp, _guard) = s.txns.partition(&s, index).await?;
            op(s.clone(), tp, id).await
        })
        .await
        .unwrap_or(Err(TxnError::CoordinatorNotAvailable))
}

/// DescribeTransactions: the state of one transactional id.
pub async fn describe(tp: Rc<TxnPartition>, id: String) -> Result<TxnMeta, TxnError> {
    get(&tp, &id).ok_or(TxnError::TransactionalIdNotFound)
}

fn get(tp: &TxnPartition, id: &str) -> Option<TxnMeta> {
    tp.txns.borrow().get(id).cloned()
}

/// Checks that (producer id, epoch) are the current ones of `m`.
fn check_producer(m: Option<&TxnMeta>, producer_id: i64, epoch: i16) -> Result<TxnMeta, TxnError> {
    let m = m.ok_or(TxnError::InvalidProducerIdMapping)?;
    if m.producer_id != producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if m.epoch != epoch {
        return Err(TxnError::ProducerFenced);
    }
    Ok(m.clone())
}

/// InitProducerId with a transactional id: a producer id and a new epoch.
/// An open transaction of the previous epoch is aborted first (fencing it).
pub async fn init(
    shard: Rc<ShardState>,
    tp: Rc<TxnPartition>,
    id: String,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), TxnError> {
    if timeout_ms <= 0 || i64::from(timeout_ms) > shard.config.transaction_max_timeout_ms {
        return Err(TxnError::InvalidTransactionTimeout);
    }
    let now = now_ms();
    let Some(mut m) = get(&tp, &id) else {
        let pid = shard.producer_ids.next_id(&shard.controller).await.map_err(|_| TxnError::CoordinatorNotAvailable)?;
        let m = TxnMeta {
            producer_id: pid,
            epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: now,
            start_ms: -1,
            prev_epoch: -1,
        };
        tp.persist(&id, &m).await?;
        return Ok((pid, 0));
    };
    if let Some((pid, epoch)) = expected {
        // KIP-360: a producer that knows its id may only bump its own epoch.
        let recovering_from_timeout = epoch == m.prev_epoch && m.state == TxnState::CompleteAbort;
        if pid != m.producer_id || (epoch != m.epoch && !recovering_from_timeout) {
            return Err(TxnError::ProducerFenced);
        }
    }
    if matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
        complete(&shard, &tp, &id).await?;
        m = get(&tp, &id).ok_or(TxnError::CoordinatorNotAvailable)?;
    }
    if m.epoch >= i16::MAX - 1 {
        m.producer_id = shard.producer_ids.next_id(&shard.controller).await.map_err(|_| TxnError::CoordinatorNotAvailable)?;
        m.epoch = -1;
    }
    m.epoch += 1;
    m.timeout_ms = timeout_ms;
    m.last_update_ms = now;
    if m.state == TxnState::Ongoing {
        // Fence the old producer: its transaction ends with an ABORT written
        // under the new epoch.
        tracing::info!(transactional_id = %id, epoch = m.epoch, "aborting the open transaction of a fenced producer");
        m.state = TxnState::PrepareAbort;
        tp.persist(&id, &m).await?;
        complete(&shard, &tp, &id).await?;
        m = get(&tp, &id).ok_or(TxnError::CoordinatorNotAvailable)?;
    }
    m.state = TxnState::Empty;
    m.partitions.clear();
    m.start_ms = -1;
    m.prev_epoch = -1;
    tp.persist(&id, &m).await?;
    Ok((m.producer_id, m.epoch))
}

/// AddPartitionsToTxn / AddOffsetsToTxn: the partitions join the transaction.
pub async fn add_partitions(
    tp: Rc<TxnPartition>,
    id: String,
    producer_id: i64,
    epoch: i16,
    partitions: Vec<(String, i32)>,
) -> Result<(), TxnError> {
    let mut m = check_producer(tp.txns.borrow().get(&id), producer_id, epoch)?;
    let now = now_ms();
    match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => return Err(TxnError::ConcurrentTransactions),
        TxnState::Ongoing => {
            if partitions.iter().all(|p| m.partitions.contains(p)) {
                return Ok(());
            }
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            m.state = TxnState::Ongoing;
            m.partitions.clear();
            m.start_ms = now;
        }
    }
    m.partitions.extend(partitions);
    m.last_update_ms = now;
    tp.persist(&id, &m).await
}

/// EndTxn: commit or abort the ongoing transaction.
pub async fn end(
    shard: Rc<ShardState>,
    tp: Rc<TxnPartition>,
    id: String,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> Result<(), TxnError> {
    let mut m = check_producer(tp.txns.borrow().get(&id), producer_id, epoch)?;
    match (m.state, commit) {
        (TxnState::Ongoing, _) => {}
        // A retry of an EndTxn that completed.
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
        (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => return Err(TxnError::ConcurrentTransactions),
        _ => return Err(TxnError::InvalidTxnState),
    }
    m.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
    m.last_update_ms = now_ms();
    tp.persist(&id, &m).await?;
    complete(&shard, &tp, &id).await
}

/// From PrepareCommit/PrepareAbort: markers to every partition, then Complete.
async fn complete(shard: &Rc<ShardState>, tp: &Rc<TxnPartition>, id: &str) -> Result<(), TxnError> {
    let Some(mut m) = get(tp, id) else { return Ok(()) };
    let commit = match m.state {
        TxnState::PrepareCommit => true,
        TxnState::PrepareAbort => false,
        _ => return Ok(()),
    };
    write_markers(shard, &m, commit, tp.log.leader_epoch()).await?;
    m.state = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
    m.partitions.clear();
    m.last_update_ms = now_ms();
    tp.persist(id, &m).await
}

/// How long a WriteTxnMarkers call to another broker may take.
const REMOTE_MARKERS_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes the marker to each partition of the transaction: partitions this
/// broker leads on their owner shards, the others through WriteTxnMarkers to
/// their leaders, as Kafka's coordinator does. Partitions that no longer
/// exist are skipped. Fails unless every marker was written (the caller
/// retries the completion later).
async fn write_markers(shard: &Rc<ShardState>, m: &TxnMeta, commit: bool, coordinator_epoch: i32) -> Result<(), TxnError> {
    let md = shard.metadata();
    let mut local = Vec::new();
    let mut remote: BTreeMap<crate::metadata::NodeId, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, p) in &m.partitions {
        let Some(pm) = md.partition(topic, *p) else { continue };
        if pm.leader.node_id == shard.config.node_id {
            local.push((topic.clone(), *p));
        } else {
            remote.entry(pm.leader.node_id).or_default().push((topic.clone(), *p));
        }
    }
    let marker = Marker { producer_id: m.producer_id, producer_epoch: m.epoch, commit, coordinator_epoch };
    let mut calls = Vec::new();
    for (node, parts) in remote {
        let Some((host, port)) = md.live_broker(node).and_then(|b| b.endpoint(&shard.config.inter_broker_listener_name)).map(|(h, p)| (h.to_string(), p)) else {
            tracing::warn!(broker = node, "transaction marker: the partition's leader is not live");
            return Err(TxnError::CoordinatorNotAvailable);
        };
        calls.push(glommio::spawn_local(send_remote_markers(format!("{host}:{port}"), parts, marker)));
    }
    let mut ok = write_local_markers(shard, local, marker).await.iter().all(|(_, _, code)| *code == 0);
    for c in calls {
        ok &= c.await;
    }
    if ok {
        Ok(())
    } else {
        Err(TxnError::CoordinatorNotAvailable)
    }
}

/// One transaction marker, as WriteTxnMarkers carries it.
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Writes `marker` to partitions this broker leads, each on its owner
/// shard; answers an error code per partition (NOT_LEADER_OR_FOLLOWER for
/// one led elsewhere, UNKNOWN_TOPIC_OR_PARTITION for one that does not exist).
pub async fn write_local_markers(shard: &Rc<ShardState>, parts: Vec<(String, i32)>, marker: Marker) -> Vec<(String, i32, i16)> {
    use crate::error::ResponseError;
    let md = shard.metadata();
    let mut out = Vec::new();
    let mut by_shard: BTreeMap<ShardId, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, p) in parts {
        match md.partition(&topic, p) {
            None => out.push((topic, p, ResponseError::UnknownTopicOrPartition.code())),
            Some(pm) if pm.leader.node_id != shard.config.node_id => out.push((topic, p, ResponseError::NotLeaderOrFollower.code())),
            Some(pm) => by_shard.entry(shard.owner_of(pm.leader.shard)).or_default().push((topic, p)),
        }
    }
    let Marker { producer_id: pid, producer_epoch: epoch, commit, coordinator_epoch } = marker;
    let mut calls = Vec::new();
    for (owner, parts) in by_shard {
        let mesh = shard.mesh.clone();
        calls.push(glommio::spawn_local(async move {
            let fallback: Vec<(String, i32, i16)> =
                parts.iter().map(|(t, p)| (t.clone(), *p, ResponseError::NotLeaderOrFollower.code())).collect();
            mesh.call(owner, move |s: Rc<ShardState>| async move {
                let mut codes = Vec::new();
                for (topic, p) in parts {
                    let Some(part) = s.local_partition(&topic, p).await else {
                        codes.push((topic, p, ResponseError::NotLeaderOrFollower.code()));
                        continue;
                    };
                    match part.write_marker(pid, epoch, commit, coordinator_epoch).await {
                        Ok(_) => {
                            if topic == OFFSETS_TOPIC {
                                crate::coordinator::txn_offsets::complete(&s, p, pid, commit).await;
                            }
                            codes.push((topic, p, 0));
                        }
                        Err(e) => {
                            tracing::warn!(topic = %topic, partition = p, error = ?e, "writing a transaction marker failed");
                            codes.push((topic, p, crate::error::partition_error_code(&e)));
                        }
                    }
                }
                codes
            })
            .await
            .unwrap_or(fallback)
        }));
    }
    for c in calls {
        out.extend(c.await);
    }
    out
}

/// WriteTxnMarkers (v1) to the broker at `addr` for `parts`; true if every
/// partition answered without error.
async fn send_remote_markers(addr: String, parts: Vec<(String, i32)>, marker: Marker) -> bool {
    use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
    use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
    use kafka_protocol::protocol::StrBytes;
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &parts {
        topics.entry(t.clone()).or_default().push(*p);
    }
    let request = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(marker.producer_id))
        .with_producer_epoch(marker.producer_epoch)
        .with_transaction_result(marker.commit)
        .with_coordinator_epoch(marker.coordinator_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| WritableTxnMarkerTopic::default().with_name(TopicName(StrBytes::from_string(t))).with_partition_indexes(ps))
                .collect(),
        )]);
    let answer: Result<WriteTxnMarkersResponse, _> =
        crate::interbroker::call(&addr, ApiKey::WriteTxnMarkers, 1, &request, REMOTE_MARKERS_TIMEOUT).await;
    match answer {
        Ok(resp) => {
            let mut ok = true;
            let mut answered = 0usize;
            for r in &resp.markers {
                for t in &r.topics {
                    for p in &t.partitions {
                        answered += 1;
                        if p.error_code != 0 {
                            tracing::warn!(broker = %addr, topic = %t.name.0, partition = p.partition_index, error_code = p.error_code, "remote transaction marker refused");
                            ok = false;
                        }
                    }
                }
            }
            ok && answered == parts.len()
        }
        Err(e) => {
            tracing::warn!(broker = %addr, error = %e, "WriteTxnMarkers to another broker failed");
            false
        }
    }
}

/// Aborts this shard's transactions open past their timeout (bumping the
/// epoch, which fences the producer) and retries interrupted completions.
async fn sweep(shard: &Rc<ShardState>) {
    let parts: Vec<i32> = shard.txns.partitions.borrow().keys().copied().collect();
    for index in parts {
        let Ok((tp, _guard)) = shard.txns.partition(shard, index).await else { continue };
        let now = now_ms();
        let due: Vec<(String, TxnMeta)> = tp
            .txns
            .borrow()
            .iter()
            .filter(|(_, m)| {
                (m.state == TxnState::Ongoing && now > m.start_ms.saturating_add(i64::from(m.timeout_ms)))
                    || matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
            })
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        for (id, mut m) in due {
            if m.state == TxnState::Ongoing {
                tracing::info!(transactional_id = %id, producer_id = m.producer_id, "aborting a transaction open past its timeout");
                if m.epoch < i16::MAX - 1 {
                    m.prev_epoch = m.epoch;
                    m.epoch += 1;
                }
                m.state = TxnState::PrepareAbort;
                m.last_update_ms = now;
                if let Err(e) = tp.persist(&id, &m).await {
                    tracing::warn!(transactional_id = %id, error = %e, "timing out a transaction failed");
                    continue;
                }
            }
            if let Err(e) = complete(shard, &tp, &id).await {
                tracing::warn!(transactional_id = %id, error = %e, "completing a transaction failed; retried later");
            }
        }
    }
}

/// Forgets this shard's transactional ids that have no transaction open and
/// saw no request for `transactional.id.expiration.ms` (Kafka's rule): a
/// tombstone in `__transaction_state`, so compaction bounds that topic. A
/// producer still holding the old producer id then gets
/// INVALID_PRODUCER_ID_MAPPING and must initialise again.
async fn expire_ids(shard: &Rc<ShardState>) {
    let expiration = shard.config.transactional_id_expiration_ms;
    let parts: Vec<i32> = shard.txns.partitions.borrow().keys().copied().collect();
    for index in parts {
        let Ok((tp, _guard)) = shard.txns.partition(shard, index).await else { continue };
        let now = now_ms();
        let expired: Vec<String> = tp
            .txns
            .borrow()
            .iter()
            .filter(|(_, m)| {
                matches!(m.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
                    && now > m.last_update_ms.saturating_add(expiration)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if expired.is_empty() {
            continue;
        }
        for chunk in expired.chunks(EXPIRE_IDS_PER_BATCH) {
            match tp.remove(chunk).await {
                Ok(()) => tracing::info!(partition = index, count = chunk.len(), "expired idle transactional ids"),
                Err(e) => {
                    tracing::warn!(partition = index, error = %e, "expiring transactional ids failed; retried later");
                    break;
                }
            }
        }
    }
}

/// At start: load the `__transaction_state` partitions this shard owns, so
/// interrupted transactions complete and open ones time out without waiting
/// for their producer.
pub async fn load_owned(shard: Rc<ShardState>) {
    let md = shard.metadata();
    let Some(topic) = md.topic(TXN_TOPIC) else { return };
    for p in &topic.partitions {
        if p.leader.node_id == shard.config.node_id && shard.owner_of(p.leader.shard) == shard.id {
            if let Err(e) = shard.txns.partition(&shard, p.partition).await {
                tracing::warn!(partition = p.partition, error = %e, "loading {TXN_TOPIC} failed");
            }
        }
    }
}
