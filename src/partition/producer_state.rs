//! Idempotent-producer state of one partition: for each producer id, its
//! epoch and the last `BATCHES_RETAINED` batches it appended (first/last
//! sequence, first/last offset), as Kafka's `ProducerStateManager` keeps.
//!
//! Owned by the `Partition` on the shard that owns the replica (`!Send`, in a
//! `RefCell` that is never borrowed across an `.await`). Pure bookkeeping: no
//! I/O. The partition calls `check` and, with no `.await` in between, appends
//! to the log and calls `record`, so two connections producing to the same
//! partition cannot both pass the check for one sequence.
//!
//! Rules (Kafka 2.5+, `ProducerAppendInfo.checkSequence` after KIP-360):
//! - same epoch and the same (first, last) sequence as one of the last 5
//!   batches: a duplicate, answered with the ORIGINAL offsets, not appended;
//! - epoch below the current one: INVALID_PRODUCER_EPOCH;
//! - a new (higher) epoch must start at sequence 0, else OUT_OF_ORDER_SEQUENCE;
//! - same epoch: the first sequence must follow the last one (wrapping from
//!   `i32::MAX` to 0), else OUT_OF_ORDER_SEQUENCE;
//! - an unknown producer id (never seen, or expired) is accepted with any
//!   sequence, as Kafka does since 2.5: the broker no longer answers
//!   UNKNOWN_PRODUCER_ID for produce.
//!
//! State is rebuilt at open from the batch headers of the log (`recover_batch`),
//! bounded by `producer.id.expiration.ms` (by last write) and by a count.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use crate::storage::BatchHeader;

/// Batches remembered per producer: clients keep at most 5 requests in flight.
pub const BATCHES_RETAINED: usize = 5;

/// Kafka's `producer.id.expiration.check.interval.ms` default.
pub const EXPIRATION_CHECK_INTERVAL_MS: i64 = 10 * 60 * 1000;

/// Limits on what one partition remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStateConfig {
    /// `producer.id.expiration.ms`: a producer not written for this long is forgotten.
    pub expiration_ms: i64,
    /// `fjord.producer.state.entries.max`: producers remembered per partition;
    /// past it, the least recently written one is forgotten.
    pub entries_max: usize,
}

impl Default for ProducerStateConfig {
    fn default() -> Self {
        ProducerStateConfig {
            expiration_ms: 86_400_000,
            entries_max: 100_000,
        }
    }
}

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first, at most `BATCHES_RETAINED`.
    batches: VecDeque<BatchMeta>,
    last_write_ms: i64,
}

/// What to do with an idempotent batch that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Append,
    /// Already in the log at these offsets: answer success, do not append.
    Duplicate {
        first_offset: i64,
        last_offset: i64,
    },
}

/// Why an idempotent batch is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProducerStateError {
    /// INVALID_PRODUCER_EPOCH (47).
    InvalidEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    OutOfOrder {
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: Option<i32>,
    },
}

impl fmt::Display for ProducerStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProducerStateError::InvalidEpoch { producer_id, epoch, current } => {
                write!(f, "producer {producer_id}: epoch {epoch} is older than the current {current}")
            }
            ProducerStateError::OutOfOrder { producer_id, epoch, first_seq, last_seq } => write!(
                f,
                "producer {producer_id} epoch {epoch}: sequence {first_seq} does not follow {last_seq:?}"
            ),
        }
    }
}

impl std::error::Error for ProducerStateError {}

/// The last sequence of a batch: sequences wrap from `i32::MAX` to 0.
pub fn last_sequence(base_seq: i32, last_offset_delta: i32) -> i32 {
    let delta = last_offset_delta.max(0);
    if base_seq > i32::MAX - delta {
        delta - (i32::MAX - base_seq) - 1
    } else {
        base_seq + delta
    }
}

/// Whether `next` directly follows `last`.
pub fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// Producer states of one partition.
#[derive(Debug)]
pub struct ProducerStates {
    config: ProducerStateConfig,
    entries: HashMap<i64, ProducerEntry>,
    last_expiry_ms: i64,
    /// The log's active segment when the last snapshot was taken (a roll
    /// since then asks for a new snapshot).
    snapshot_segment_base: i64,
}

impl ProducerStates {
    pub fn new(config: ProducerStateConfig) -> Self {
        ProducerStates {
            config,
            entries: HashMap::new(),
            last_expiry_ms: 0,
            snapshot_segment_base: 0,
        }
    }

    /// Notes the log's active segment; true if it changed since the last call
    /// (the log rolled: time for a snapshot).
    pub fn segment_rolled(&mut self, active_segment_base: i64) -> bool {
        let rolled = active_segment_base != self.snapshot_segment_base;
        self.snapshot_segment_base = active_segment_base;
        rolled
    }

    pub fn set_config(&mut self, config: ProducerStateConfig) {
        self.config = config;
    }

    pub fn config(&self) -> ProducerStateConfig {
        self.config
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Epoch and remembered batches of a producer (tests, DescribeProducers later).
    pub fn get(&self, producer_id: i64) -> Option<(i16, Vec<BatchMeta>)> {
        self.entries
            .get(&producer_id)
            .map(|e| (e.epoch, e.batches.iter().copied().collect()))
    }

    /// Checks an idempotent batch (`producer_id >= 0`) against the state. No change.
    pub fn check(&self, h: &BatchHeader) -> Result<Decision, ProducerStateError> {
        debug_assert!(h.producer_id >= 0);
        let Some(e) = self.entries.get(&h.producer_id) else {
            return Ok(Decision::Append);
        };
        let first_seq = h.base_sequence;
        let last_seq = last_sequence(first_seq, h.last_offset_delta);
        if h.producer_epoch == e.epoch {
            if let Some(b) = e
                .batches
                .iter()
                .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            {
                return Ok(Decision::Duplicate {
                    first_offset: b.first_offset,
                    last_offset: b.last_offset,
                });
            }
        }
        if h.producer_epoch < e.epoch {
            return Err(ProducerStateError::InvalidEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: e.epoch,
            });
        }
        let out_of_order = |last| ProducerStateError::OutOfOrder {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq,
            last_seq: last,
        };
        if h.producer_epoch > e.epoch {
            return if first_seq == 0 {
                Ok(Decision::Append)
            } else {
                Err(out_of_order(None))
            };
        }
        match e.batches.back() {
            Some(b) if in_sequence(b.last_seq, first_seq) => Ok(Decision::Append),
            Some(b) => Err(out_of_order(Some(b.last_seq))),
            // Its batches were rolled back after a failed write: nothing to check against.
            None => Ok(Decision::Append),
        }
    }

    /// Records a batch appended at `h.base_offset ..= h.last_offset()` (after
    /// `check` allowed it, or read back from the log at recovery).
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        debug_assert!(h.producer_id >= 0);
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h.base_sequence, h.last_offset_delta),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        let e = self
            .entries
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_RETAINED),
                last_write_ms: now_ms,
            });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        if e.batches.len() == BATCHES_RETAINED {
            e.batches.pop_front();
        }
        e.batches.push_back(meta);
        e.last_write_ms = e.last_write_ms.max(now_ms);
        assert!(e.batches.len() <= BATCHES_RETAINED);
        self.enforce_bounds(now_ms);
    }

    /// Rebuilds state from one batch header read from the log. Batches
    /// without a producer id and control batches carry no sequence. The
    /// batch's max timestamp stands for its write time, as in Kafka.
    pub fn recover_batch(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        if h.is_control() {
            // A transaction marker may carry an epoch the coordinator bumped
            // to fence the producer: the fence survives a restart.
            self.fence_to(h.producer_id, h.producer_epoch, h.max_timestamp);
            return;
        }
        self.record(h, h.max_timestamp);
    }

    /// A transaction marker written with `epoch` (the coordinator may have
    /// bumped it to fence the producer): older epochs are refused from now on.
    /// A producer this partition has not seen gets an entry (no batches), so
    /// a zombie's first batch here after the fence is still refused.
    pub fn fence_to(&mut self, producer_id: i64, epoch: i16, now_ms: i64) {
        let e = self.entries.entry(producer_id).or_insert_with(|| ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(BATCHES_RETAINED),
            last_write_ms: now_ms,
        });
        if epoch > e.epoch {
            e.epoch = epoch;
            e.batches.clear();
        }
        e.last_write_ms = e.last_write_ms.max(now_ms);
        self.enforce_bounds(now_ms);
    }

    /// The epoch this partition knows for `producer_id`, if any.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.entries.get(&producer_id).map(|e| e.epoch)
    }

    /// Forgets a batch whose write failed and was rolled back (its offsets
    /// will be reused), so a retry is appended again instead of being
    /// answered with offsets that now hold other data.
    pub fn forget(&mut self, producer_id: i64, first_offset: i64) {
        if let Some(e) = self.entries.get_mut(&producer_id) {
            e.batches.retain(|b| b.first_offset < first_offset);
        }
    }

    /// Drops producers not written within `expiration_ms`, at most once per
    /// `EXPIRATION_CHECK_INTERVAL_MS`.
    pub fn maybe_expire(&mut self, now_ms: i64) {
        if now_ms.saturating_sub(self.last_expiry_ms)
            < EXPIRATION_CHECK_INTERVAL_MS.min(self.config.expiration_ms)
        {
            return;
        }
        self.expire(now_ms);
    }

    /// Drops every producer not written within `expiration_ms` of `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        self.last_expiry_ms = now_ms;
        let horizon = now_ms.saturating_sub(self.config.expiration_ms);
        self.entries.retain(|_, e| e.last_write_ms >= horizon);
    }

    /// Every producer as (id, epoch, last write ms, batches oldest first), for snapshots.
    pub fn export(&self) -> Vec<(i64, i16, i64, Vec<BatchMeta>)> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(id, e)| {
                (
                    *id,
                    e.epoch,
                    e.last_write_ms,
                    e.batches.iter().copied().collect(),
                )
            })
            .collect();
        out.sort_by_key(|e| e.0);
        out
    }

    /// Puts back one exported producer (at open, from a snapshot).
    pub fn import(
        &mut self,
        producer_id: i64,
        epoch: i16,
        last_write_ms: i64,
        batches: &[BatchMeta],
    ) {
        let keep = batches.len().saturating_sub(BATCHES_RETAINED);
        let batches: VecDeque<BatchMeta> = batches[keep..].iter().copied().collect();
        self.entries.insert(
            producer_id,
            ProducerEntry {
                epoch,
                batches,
                last_write_ms,
            },
        );
    }

    fn enforce_bounds(&mut self, now_ms: i64) {
        if self.entries.len() <= self.config.entries_max {
            return;
        }
        self.expire(now_ms);
        while self.entries.len() > self.config.entries_max.max(1) {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_write_ms)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header of a `count`-record batch of producer `pid` at `base_offset`.
    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 1_000,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    fn states() -> ProducerStates {
        ProducerStates::new(ProducerStateConfig::default())
    }

    /// Appends like the partition does: check, then record at the next offset.
    fn append(
        s: &mut ProducerStates,
        next: &mut i64,
        h: BatchHeader,
    ) -> Result<Decision, ProducerStateError> {
        let d = s.check(&h)?;
        if d == Decision::Append {
            let mut h = h;
            h.base_offset = *next;
            s.record(&h, 1_000);
            *next = h.last_offset() + 1;
        }
        Ok(d)
    }

    #[test]
    fn duplicate_of_each_of_the_last_five_gets_its_original_offsets() {
        // Proves: a retry of any of the last 5 batches is answered with the offsets it got first.
        let mut s = states();
        let mut next = 100;
        for i in 0..5 {
            assert_eq!(
                append(&mut s, &mut next, batch(7, 0, i * 3, 3, 0)),
                Ok(Decision::Append)
            );
        }
        for i in 0..5i32 {
            let first = 100 + i64::from(i) * 3;
            assert_eq!(
                s.check(&batch(7, 0, i * 3, 3, 0)),
                Ok(Decision::Duplicate {
                    first_offset: first,
                    last_offset: first + 2
                })
            );
        }
        // A sixth batch pushes the first out: its retry is now out of order.
        assert_eq!(
            append(&mut s, &mut next, batch(7, 0, 15, 3, 0)),
            Ok(Decision::Append)
        );
        assert!(matches!(
            s.check(&batch(7, 0, 0, 3, 0)),
            Err(ProducerStateError::OutOfOrder { .. })
        ));
        assert!(matches!(
            s.check(&batch(7, 0, 3, 3, 0)),
            Ok(Decision::Duplicate {
                first_offset: 103,
                ..
            })
        ));
        assert_eq!(s.get(7).map(|(_, b)| b.len()), Some(BATCHES_RETAINED));
    }

    #[test]
    fn same_first_sequence_with_a_different_range_is_not_a_duplicate() {
        // Proves: a duplicate needs both first and last sequence to match.
        let mut s = states();
        let mut next = 0;
        append(&mut s, &mut next, batch(1, 0, 0, 3, 0)).unwrap();
        assert!(matches!(
            s.check(&batch(1, 0, 0, 2, 0)),
            Err(ProducerStateError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn a_gap_or_a_repeat_is_out_of_order() {
        // Proves: only last+1 is accepted for a known producer in its epoch.
        let mut s = states();
        let mut next = 0;
        append(&mut s, &mut next, batch(1, 0, 0, 5, 0)).unwrap();
        let err = s.check(&batch(1, 0, 6, 1, 0)).unwrap_err();
        assert_eq!(
            err,
            ProducerStateError::OutOfOrder {
                producer_id: 1,
                epoch: 0,
                first_seq: 6,
                last_seq: Some(4)
            }
        );
        assert!(s.check(&batch(1, 0, 4, 1, 0)).is_err());
        assert_eq!(s.check(&batch(1, 0, 5, 1, 0)), Ok(Decision::Append));
    }

    #[test]
    fn epochs_stale_is_refused_new_must_start_at_zero() {
        // Proves: lower epoch → INVALID_PRODUCER_EPOCH; a bump resets sequences and needs seq 0.
        let mut s = states();
        let mut next = 0;
        append(&mut s, &mut next, batch(1, 3, 0, 2, 0)).unwrap();
        assert!(matches!(
            s.check(&batch(1, 2, 2, 1, 0)),
            Err(ProducerStateError::InvalidEpoch { current: 3, .. })
        ));
        assert!(matches!(
            s.check(&batch(1, 4, 2, 1, 0)),
            Err(ProducerStateError::OutOfOrder { .. })
        ));
        assert_eq!(
            append(&mut s, &mut next, batch(1, 4, 0, 1, 0)),
            Ok(Decision::Append)
        );
        assert_eq!(s.get(1).map(|(e, b)| (e, b.len())), Some((4, 1)));
        // The old epoch's batches are gone: its retry is stale, not a duplicate.
        assert!(matches!(
            s.check(&batch(1, 3, 0, 2, 0)),
            Err(ProducerStateError::InvalidEpoch { .. })
        ));
    }

    #[test]
    fn unknown_producer_is_accepted_at_any_sequence() {
        // Proves: Kafka 2.5+ behaviour, an unknown (or expired) producer id is accepted.
        let s = states();
        assert_eq!(s.check(&batch(9, 0, 12345, 1, 0)), Ok(Decision::Append));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        // Proves: a batch spanning i32::MAX ends at a wrapped sequence and is followed by it + 1.
        assert_eq!(last_sequence(i32::MAX - 1, 2), 0);
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(i32::MAX, i32::MIN));
        let mut s = states();
        let mut next = 0;
        append(&mut s, &mut next, batch(1, 0, i32::MAX - 2, 2, 0)).unwrap();
        assert_eq!(s.check(&batch(1, 0, i32::MAX, 1, 0)), Ok(Decision::Append));
        append(&mut s, &mut next, batch(1, 0, i32::MAX, 3, 0)).unwrap();
        assert_eq!(s.get(1).unwrap().1.last().unwrap().last_seq, 1);
        assert!(matches!(
            s.check(&batch(1, 0, i32::MAX, 3, 0)),
            Ok(Decision::Duplicate {
                first_offset: 2,
                ..
            })
        ));
        assert_eq!(s.check(&batch(1, 0, 2, 1, 0)), Ok(Decision::Append));
    }

    #[test]
    fn expiry_by_last_write_and_count_bound() {
        // Proves: producers idle past expiration are dropped; the count bound evicts the least recent.
        let mut s = ProducerStates::new(ProducerStateConfig {
            expiration_ms: 1_000,
            entries_max: 3,
        });
        s.record(&batch(1, 0, 0, 1, 0), 100);
        s.record(&batch(2, 0, 0, 1, 1), 900);
        s.maybe_expire(1_500);
        assert!(s.get(1).is_none() && s.get(2).is_some());
        s.record(&batch(3, 0, 0, 1, 2), 1_600);
        s.record(&batch(4, 0, 0, 1, 3), 1_700);
        s.record(&batch(5, 0, 0, 1, 4), 1_800);
        assert_eq!(s.len(), 3);
        assert!(s.get(2).is_none(), "least recently written goes first");
        // An expired producer is unknown again: any sequence is accepted.
        assert_eq!(s.check(&batch(1, 0, 77, 1, 0)), Ok(Decision::Append));
    }

    #[test]
    fn recovery_from_headers_rebuilds_the_same_state() {
        // Proves: replaying the log's batch headers gives the same dedup and sequence answers.
        let mut live = states();
        let mut next = 0;
        let mut log = Vec::new();
        for (pid, seq, n) in [
            (1, 0, 2),
            (2, 0, 1),
            (1, 2, 2),
            (-1, -1, 4),
            (1, 4, 1),
            (2, 1, 3),
        ] {
            let mut h = batch(pid, 0, seq, n, 0);
            h.base_offset = next;
            next = h.last_offset() + 1;
            if pid >= 0 {
                assert_eq!(live.check(&h), Ok(Decision::Append));
                live.record(&h, 1_000);
            }
            log.push(h);
        }
        let mut control = batch(1, 0, -1, 1, next);
        control.attributes = 0x20;
        log.push(control);
        let mut rebuilt = states();
        for h in &log {
            rebuilt.recover_batch(h);
        }
        assert_eq!(rebuilt.get(1), live.get(1));
        assert_eq!(rebuilt.get(2), live.get(2));
        assert!(matches!(
            rebuilt.check(&batch(1, 0, 2, 2, 0)),
            Ok(Decision::Duplicate {
                first_offset: 3,
                last_offset: 4
            })
        ));
        assert!(rebuilt.check(&batch(1, 0, 6, 1, 0)).is_err());
        assert_eq!(rebuilt.check(&batch(2, 0, 4, 1, 0)), Ok(Decision::Append));
    }

    #[test]
    fn forget_rolls_back_a_failed_write() {
        // Proves: after a rolled-back write, the retry is appended again, not answered as a duplicate.
        let mut s = states();
        let mut next = 0;
        append(&mut s, &mut next, batch(1, 0, 0, 2, 0)).unwrap();
        append(&mut s, &mut next, batch(1, 0, 2, 2, 0)).unwrap();
        s.forget(1, 2);
        assert_eq!(s.check(&batch(1, 0, 2, 2, 0)), Ok(Decision::Append));
        s.forget(1, 0);
        assert_eq!(s.check(&batch(1, 0, 9, 1, 0)), Ok(Decision::Append));
    }
}
