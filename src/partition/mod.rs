//! A partition replica on its shard: the log plus what the broker knows about
//! it beyond the bytes (high watermark, waiters for new data).
//!
//! Lives on exactly one shard (the owner named by placement); never `Send`.
//! `manager` opens and removes replicas as metadata snapshots arrive.

mod idempotent;
pub mod manager;
mod producer_snapshot;
pub mod producer_state;
pub mod replica;
pub mod txn;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_channel::oneshot;
use futures_lite::FutureExt;

use crate::storage::{AppendResult, BatchHeader, Log, ReadResult, StorageError};

pub use manager::PartitionManager;

#[derive(Debug)]
pub enum PartitionError {
    /// This shard does not own the replica (metadata moved on).
    NotHere,
    Storage(StorageError),
    /// An idempotent producer's batch out of sequence or of a stale epoch.
    Producer(producer_state::ProducerStateError),
    /// acks=all: the ISR did not get the records before the request's timeout.
    ReplicationTimeout,
    /// acks=all: the records were appended, but the ISR shrank below
    /// min.insync.replicas before they were replicated.
    NotEnoughReplicasAfterAppend,
}

impl From<producer_state::ProducerStateError> for PartitionError {
    fn from(e: producer_state::ProducerStateError) -> Self {
        PartitionError::Producer(e)
    }
}

impl From<StorageError> for PartitionError {
    fn from(e: StorageError) -> Self {
        PartitionError::Storage(e)
    }
}

/// How long a produce waits before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// acks=0 and acks=1: the write reached the kernel (survives kill -9).
    Written,
    /// acks=all: written and fdatasync'ed.
    Synced,
}

/// Bound on fetches waiting on one partition; more waiters simply poll at their deadline.
const WAITERS_MAX: usize = 10_000;

pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub topic_id: uuid::Uuid,
    /// The controller's leader epoch of this partition, followed by
    /// `PartitionManager::sync_with`; stamped into every batch appended.
    leader_epoch: std::cell::Cell<i32>,
    log: Rc<Log>,
    /// Fetches waiting for the high watermark to move.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Idempotent producers' epochs and last sequences (see `producer_state`).
    producers: Rc<RefCell<producer_state::ProducerStates>>,
    /// Writes `producers` snapshots off the append path.
    snapshots: Rc<producer_snapshot::Writer>,
    /// Open and aborted transactions (see `txn`).
    txns: RefCell<txn::TxnIndex>,
    /// Leader or follower, with the leader's view of its followers (`replica`).
    role: RefCell<replica::Role>,
    /// The high watermark as last computed (leader) or received (follower).
    hw: std::cell::Cell<i64>,
    /// The value in `replica::HW_CHECKPOINT_FILE` (-1: none written).
    hw_checkpointed: std::cell::Cell<i64>,
    /// Traffic counters for `/metrics`.
    pub stats: crate::metrics::PartitionStats,
}

impl Partition {
    pub fn new(topic: String, partition: i32, topic_id: uuid::Uuid, leader_epoch: i32, log: Rc<Log>) -> Self {
        let producers = idempotent::recover_producer_states(&log, Default::default());
        let txns = RefCell::new(txn::TxnIndex::open(&log));
        // A follower of no one until the first `apply_metadata`: no appends.
        log.set_accepts_leader_appends(false);
        // The checkpoint never names more than the log holds (a torn tail may be gone).
        let checkpointed = replica::read_hw_checkpoint(log.dir());
        let hw = checkpointed.unwrap_or(0).clamp(log.log_start_offset(), log.log_end_offset());
        let hw_checkpointed = std::cell::Cell::new(checkpointed.unwrap_or(-1));
        let hw = std::cell::Cell::new(hw);
        let role = RefCell::new(replica::Role::Follower { leader: -1, epoch: -1 });
        Partition { topic, partition, topic_id, leader_epoch: std::cell::Cell::new(leader_epoch), log, waiters: RefCell::new(Vec::new()), producers, snapshots: Rc::default(), txns, role, hw, hw_checkpointed, stats: Default::default() }
    }

    fn count_produced(&self, headers: &[BatchHeader]) {
        use crate::metrics::PartitionStats;
        let bytes: u64 = headers.iter().map(|h| h.batch_length as u64 + 12).sum();
        let records: u64 = headers.iter().map(|h| h.record_count.max(0) as u64).sum();
        PartitionStats::add(&self.stats.bytes_in, bytes);
        PartitionStats::add(&self.stats.records_in, records);
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }

    /// Follows the controller's leader epoch; it never goes back.
    pub fn set_leader_epoch(&self, epoch: i32) {
        if epoch > self.leader_epoch.get() {
            self.leader_epoch.set(epoch);
        }
    }

    pub fn log(&self) -> &Rc<Log> {
        &self.log
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// Appends validated batches and waits until they are as durable as `durability` asks.
    pub async fn append(
        &self,
        batches: BytesMut,
        headers: &[BatchHeader],
        durability: Durability,
    ) -> Result<AppendResult, PartitionError> {
        let result = self.append_to_log(batches, headers).await?;
        self.count_produced(headers);
        let end = result.last_offset + 1;
        let waited = match durability {
            Durability::Written => self.log.wait_written(end).await,
            Durability::Synced => self.log.wait_durable(end).await,
        };
        // Whatever happened to this append, the high watermark may have moved for others.
        self.wake_waiters();
        waited?;
        if durability == Durability::Synced {
            self.wait_replicated(end, Instant::now() + REPLICATION_WAIT_DEFAULT).await?;
        }
        Ok(result)
    }

    /// Appends without waiting for the disk: offsets are assigned and the
    /// batches are in the log's memory when this returns. A background task
    /// wakes fetch waiters once the write reaches the kernel. Callers that
    /// acknowledge follow with `wait_until`, so a connection can pipeline:
    /// the next request's append is ordered after this one, while this one's
    /// fdatasync is still in flight (and grouped with others).
    pub async fn append_deferred(
        self: &Rc<Self>,
        batches: BytesMut,
        headers: &[BatchHeader],
    ) -> Result<AppendResult, PartitionError> {
        let result = self.append_to_log(batches, headers).await?;
        self.count_produced(headers);
        let end = result.last_offset + 1;
        let this = self.clone();
        glommio::spawn_local(async move {
            let _ = this.log.wait_written(end).await;
            this.wake_waiters();
        })
        .detach();
        Ok(result)
    }

    /// Resolves once every offset below `end_offset` is as durable as asked:
    /// for acks=all, fdatasync'ed here and on every ISR member (the high
    /// watermark covers it), by `deadline`.
    pub async fn wait_until(&self, end_offset: i64, durability: Durability, deadline: Instant) -> Result<(), PartitionError> {
        match durability {
            Durability::Written => self.log.wait_written(end_offset).await?,
            Durability::Synced => {
                self.log.wait_durable(end_offset).await?;
                self.wait_replicated(end_offset, deadline).await?;
            }
        }
        Ok(())
    }

    /// Batches from `offset`, never past the high watermark.
    pub async fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<ReadResult, PartitionError> {
        let hw = self.high_watermark();
        Ok(self.log.read(offset, max_bytes, hw, min_one).await?)
    }

    /// Up to what reached the kernel, past the high watermark: a follower's
    /// fetch, and a coordinator loading its partition.
    pub async fn read_to_end(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<ReadResult, PartitionError> {
        let end = self.log.written_end_offset();
        Ok(self.log.read(offset, max_bytes, end, min_one).await?)
    }

    /// Resolves when the high watermark is above `offset` or at `deadline`.
    pub async fn wait_for_data(&self, offset: i64, deadline: Instant) {
        if self.high_watermark() > offset {
            return;
        }
        self.wait_for_change(deadline).await
    }

    /// A follower's fetch: resolves when the log's written end is above
    /// `offset` or at `deadline`.
    pub async fn wait_for_written(&self, offset: i64, deadline: Instant) {
        if self.log.written_end_offset() > offset {
            return;
        }
        self.wait_for_change(deadline).await
    }

    /// Resolves at the next wake-up of this partition's waiters (an append
    /// reached the kernel, the high watermark or the role changed) or at `deadline`.
    pub async fn wait_for_change(&self, deadline: Instant) {
        let rx = {
            let mut waiters = self.waiters.borrow_mut();
            waiters.retain(|w| !w.is_canceled());
            if waiters.len() >= WAITERS_MAX {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Some(rx)
            }
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timer = async move {
            glommio::timer::sleep(remaining).await;
        };
        match rx {
            Some(rx) => {
                async move {
                    let _ = rx.await;
                }
                .or(timer)
                .await
            }
            None => timer.await,
        }
    }

    pub(crate) fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            let _ = w.send(());
        }
    }

    pub async fn close(&self) -> Result<(), StorageError> {
        self.wake_waiters();
        self.checkpoint_high_watermark().await;
        self.snapshot_producers_at_close(true).await;
        self.save_txn_index_at_close();
        self.log.close().await
    }

    /// A clean shutdown's close: as `close`, leaving the log's syncs and
    /// clean marker to the caller (`Log::close_for_shutdown`).
    pub async fn close_for_shutdown(&self) -> Result<(), StorageError> {
        self.wake_waiters();
        self.checkpoint_high_watermark_with(false).await;
        self.snapshot_producers_at_close(false).await;
        self.save_txn_index_at_close();
        self.log.close_for_shutdown().await
    }

    pub async fn remove(&self) -> Result<(), StorageError> {
        self.wake_waiters();
        self.log.remove().await
    }
}

/// Poll interval bound used by callers that wait on several partitions.
pub const WAIT_SLICE: Duration = Duration::from_millis(500);
/// How long an acks=all append without a request timeout (a coordinator's
/// write) waits for the ISR.
pub const REPLICATION_WAIT_DEFAULT: Duration = Duration::from_secs(30);
