//! The partition's append path for idempotent producers: the sequence check
//! and the offset assignment happen with no `.await` between them, so two
//! connections producing to one partition (a retry on a new connection while
//! the first attempt is still queued) cannot both append one sequence.
//!
//! Runs on the shard that owns the partition. Producer state lives in the
//! partition (`producer_state`), rebuilt at open from the log's batch headers
//! (the newest `producer_snapshot` plus the batch headers after it).

use std::cell::RefCell;
use std::rc::Rc;

use bytes::BytesMut;

use super::producer_snapshot;
use super::producer_state::{Decision, ProducerStateConfig, ProducerStates};
use super::{Partition, PartitionError};
use crate::storage::recovery::now_ms;
use crate::storage::{AppendResult, BatchHeader, Log, StorageError};

/// Producer state rebuilt from every batch header in `log`'s segments.
pub(super) fn recover_producer_states(
    log: &Log,
    config: ProducerStateConfig,
) -> Rc<RefCell<ProducerStates>> {
    let mut states = ProducerStates::new(config);
    let snapshot = producer_snapshot::load_newest(log.dir(), log.log_end_offset(), &mut states);
    states.segment_rolled(log.active_segment_base());
    let mut batches = 0u64;
    if let Err(e) = log.scan_written_headers(snapshot.unwrap_or(i64::MIN), |h| {
        batches += 1;
        states.recover_batch(h);
    }) {
        // The log itself recovered; a header it accepted cannot be read now.
        // Dedup then knows fewer producers, which only makes it accept more.
        tracing::error!(dir = %log.dir().display(), error = %e, "producer state scan stopped early");
    }
    states.expire(now_ms());
    if !states.is_empty() {
        tracing::debug!(dir = %log.dir().display(), ?snapshot, batches, producers = states.len(), "producer state recovered");
    }
    Rc::new(RefCell::new(states))
}

impl Partition {
    /// Appends to the log without waiting for the disk. Batches of an
    /// idempotent producer (`producer_id >= 0`, one batch per request, as
    /// Kafka requires) are checked first: a duplicate of one of the
    /// producer's last 5 batches returns its ORIGINAL offsets and is not
    /// appended; a gap, a repeat, or a stale epoch is refused.
    pub(super) async fn append_to_log(
        &self,
        batches: BytesMut,
        headers: &[BatchHeader],
    ) -> Result<AppendResult, PartitionError> {
        let idempotent = headers.iter().any(|h| h.producer_id >= 0);
        if !idempotent {
            return Ok(self.log.append(batches, headers, self.leader_epoch()).await?);
        }
        let [h] = headers else {
            return Err(StorageError::InvalidAppend(
                "an idempotent produce carries exactly one batch",
            )
            .into());
        };
        self.log.reserve(batches.len()).await?;
        // From here on no `.await`: the check and the offsets are one step.
        let now = now_ms();
        let decision = {
            let mut producers = self.producers.borrow_mut();
            producers.maybe_expire(now);
            producers.check(h)?
        };
        if let Decision::Duplicate {
            first_offset,
            last_offset,
        } = decision
        {
            tracing::debug!(
                topic = %self.topic, partition = self.partition, producer_id = h.producer_id,
                sequence = h.base_sequence, first_offset, "duplicate batch answered with its original offsets"
            );
            return Ok(AppendResult {
                base_offset: first_offset,
                last_offset,
                log_append_time_ms: -1,
            });
        }
        let result = self
            .log
            .append_in_place(batches, headers, self.leader_epoch())?;
        if self
            .producers
            .borrow_mut()
            .segment_rolled(self.log.active_segment_base())
        {
            // The state of every batch below this one, as Kafka snapshots at a roll.
            self.write_producer_snapshot(result.base_offset);
        }
        let mut appended = *h;
        appended.base_offset = result.base_offset;
        self.producers.borrow_mut().record(&appended, now);
        if h.is_transactional() {
            self.txns.borrow_mut().on_data(h.producer_id, result.base_offset);
        }
        self.forget_if_rolled_back(h.producer_id, result);
        Ok(result)
    }

    /// A failed write rolls the log back and the offsets are reused: the
    /// batch must then not be answered as a duplicate on retry.
    fn forget_if_rolled_back(&self, producer_id: i64, result: AppendResult) {
        let log = self.log.clone();
        let producers = self.producers.clone();
        glommio::spawn_local(async move {
            match log.wait_written(result.last_offset + 1).await {
                Ok(()) | Err(StorageError::Closed) => {}
                Err(_) => producers
                    .borrow_mut()
                    .forget(producer_id, result.base_offset),
            }
        })
        .detach();
    }

    /// Writes `<offset>.snapshot` of the current producer state (which must
    /// cover exactly the batches below `offset`). Failures are logged: the
    /// next open then scans further back.
    /// Queues a snapshot of the producer state at `offset` (written on the
    /// blocking pool: this runs in the append path, which never waits).
    pub(super) fn write_producer_snapshot(&self, offset: i64) {
        let bytes = producer_snapshot::encode(&self.producers.borrow());
        self.snapshots.submit(self.log.dir(), offset, bytes);
    }

    /// At clean close: a snapshot at the log end, so the next open scans
    /// nothing. With `durable` false the caller syncs the file system.
    pub(super) async fn snapshot_producers_at_close(&self, durable: bool) {
        let end = self.log.log_end_offset();
        if end <= self.log.log_start_offset() {
            return;
        }
        let bytes = producer_snapshot::encode(&self.producers.borrow());
        if let Err(e) = self.snapshots.write_now(self.log.dir(), end, bytes, durable).await {
            tracing::warn!(topic = %self.topic, partition = self.partition, offset = end, error = %e, "producer state snapshot failed");
        }
    }

    /// Sets the expiry and count bounds (topic or broker settings).
    pub fn set_producer_state_config(&self, config: ProducerStateConfig) {
        self.producers.borrow_mut().set_config(config);
    }

    /// Epoch and remembered batches of one producer (tests, DescribeProducers).
    pub fn producer_state(
        &self,
        producer_id: i64,
    ) -> Option<(i16, Vec<super::producer_state::BatchMeta>)> {
        self.producers.borrow().get(producer_id)
    }
}
