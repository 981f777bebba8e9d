//! Transactions as one partition sees them: the first offset of every open
//! transaction (by producer id), which bounds the last stable offset (LSO),
//! and the index of aborted transactions (producer id, first offset, last
//! offset = the ABORT marker's offset) that read_committed fetches return.
//!
//! Lives in the `Partition` on the shard that owns the replica (`!Send`, a
//! `RefCell` never borrowed across an `.await`). Updated when a
//! transactional batch is appended (`idempotent.rs`) and when the
//! transaction coordinator writes a marker (`write_marker`), with no `.await`
//! between the offset assignment and the update. Rebuilt at open from the
//! log (`Log::scan_transactional`); nothing is stored besides the log.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

use super::{Partition, PartitionError};
use crate::storage::log::txn_scan::ControlType;
use crate::storage::recovery::now_ms;
use crate::storage::{validate_batches, Log, StorageError};

/// One aborted transaction of this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// Open and aborted transactions of one partition.
#[derive(Debug, Default)]
pub struct TxnIndex {
    /// Producer id → first offset of its open transaction here.
    ongoing: BTreeMap<i64, i64>,
    /// Ordered by `last_offset` (markers are appended in offset order).
    aborted: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// A transactional data batch of `producer_id` was appended at `base_offset`.
    pub fn on_data(&mut self, producer_id: i64, base_offset: i64) {
        self.ongoing.entry(producer_id).or_insert(base_offset);
    }

    /// A marker of `producer_id` was appended at `offset`.
    pub fn on_marker(&mut self, producer_id: i64, commit: bool, offset: i64) {
        if let Some(first) = self.ongoing.remove(&producer_id) {
            if !commit {
                self.aborted.push(AbortedTxn { producer_id, first_offset: first, last_offset: offset });
            }
        }
    }

    /// First offset of the earliest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.values().min().copied()
    }

    /// Aborted transactions that overlap `[from, to)`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..].iter().filter(|a| a.first_offset < to).copied().collect()
    }

    /// Forgets aborted transactions wholly below the log start (deleted data).
    pub fn truncate_head(&mut self, log_start: i64) {
        let n = self.aborted.partition_point(|a| a.last_offset < log_start);
        if n > 0 {
            self.aborted.drain(..n);
        }
    }

    /// Rebuilt from the log's transactional batches and markers.
    pub fn recover(log: &Log) -> TxnIndex {
        let mut idx = TxnIndex::default();
        let scanned = log.scan_transactional(|h, control| match control {
            None => idx.on_data(h.producer_id, h.base_offset),
            Some(ControlType::Commit) => idx.on_marker(h.producer_id, true, h.base_offset),
            Some(ControlType::Abort) => idx.on_marker(h.producer_id, false, h.base_offset),
            Some(ControlType::Other) => {}
        });
        if let Err(e) = scanned {
            tracing::error!(dir = %log.dir().display(), error = %e, "transaction index scan stopped early");
        }
        idx.truncate_head(log.log_start_offset());
        idx
    }
}

/// File written at clean close: the index as of the log end, so the next
/// open need not scan the log. Used once (deleted when read) and only if the
/// log still ends where it did.
const CHECKPOINT_FILE: &str = "txn-index.checkpoint";
const CHECKPOINT_MAGIC: &[u8; 8] = b"FJTXIDX1";

impl TxnIndex {
    /// The index at open: from the clean-close checkpoint when it matches
    /// the log's end, else rebuilt by scanning the log.
    pub fn open(log: &Log) -> TxnIndex {
        let path = log.dir().join(CHECKPOINT_FILE);
        if let Ok(bytes) = std::fs::read(&path) {
            let _ = std::fs::remove_file(&path);
            match TxnIndex::decode(&bytes) {
                Some((end, mut idx)) if end == log.log_end_offset() => {
                    idx.truncate_head(log.log_start_offset());
                    return idx;
                }
                _ => tracing::info!(dir = %log.dir().display(), "transaction index checkpoint stale or damaged; scanning the log"),
            }
        }
        TxnIndex::recover(log)
    }

    /// Writes the checkpoint for a log ending at `end` (clean close).
    pub fn save(&self, dir: &std::path::Path, end: i64) -> std::io::Result<()> {
        use std::io::Write;
        let path = dir.join(CHECKPOINT_FILE);
        let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            // No fsync: a torn or lost file fails its CRC or end check and
            // the next open scans the log instead.
            f.write_all(&self.encode(end))?;
        }
        std::fs::rename(&tmp, &path)
    }

    fn encode(&self, end: i64) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + 16 * self.ongoing.len() + 24 * self.aborted.len());
        b.extend_from_slice(CHECKPOINT_MAGIC);
        b.extend_from_slice(&end.to_be_bytes());
        b.extend_from_slice(&(self.ongoing.len() as u32).to_be_bytes());
        for (pid, first) in &self.ongoing {
            b.extend_from_slice(&pid.to_be_bytes());
            b.extend_from_slice(&first.to_be_bytes());
        }
        b.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for a in &self.aborted {
            for v in [a.producer_id, a.first_offset, a.last_offset] {
                b.extend_from_slice(&v.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<(i64, TxnIndex)> {
        let (body, crc) = b.split_at(b.len().checked_sub(4)?);
        if crc32c::crc32c(body).to_be_bytes() != crc || !body.starts_with(CHECKPOINT_MAGIC) {
            return None;
        }
        let mut at = CHECKPOINT_MAGIC.len();
        let i64_at = |at: &mut usize| -> Option<i64> {
            let v = i64::from_be_bytes(body.get(*at..*at + 8)?.try_into().ok()?);
            *at += 8;
            Some(v)
        };
        let end = i64_at(&mut at)?;
        let count = |at: &mut usize| -> Option<usize> {
            let v = u32::from_be_bytes(body.get(*at..*at + 4)?.try_into().ok()?);
            *at += 4;
            Some(v as usize)
        };
        let mut idx = TxnIndex::default();
        for _ in 0..count(&mut at)? {
            let pid = i64_at(&mut at)?;
            let first = i64_at(&mut at)?;
            idx.ongoing.insert(pid, first);
        }
        for _ in 0..count(&mut at)? {
            let producer_id = i64_at(&mut at)?;
            let first_offset = i64_at(&mut at)?;
            let last_offset = i64_at(&mut at)?;
            idx.aborted.push(AbortedTxn { producer_id, first_offset, last_offset });
        }
        (at == body.len()).then_some((end, idx))
    }
}

/// A control batch holding one COMMIT or ABORT marker (Kafka's
/// EndTransactionMarker: key = version 0 + type, value = version 0 +
/// coordinator epoch), transactional and control attributes set.
pub fn encode_marker(producer_id: i64, producer_epoch: i16, commit: bool, coordinator_epoch: i32) -> Result<BytesMut, PartitionError> {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(if commit { 1 } else { 0 });
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms(),
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, std::iter::once(&record), &options)
        .map_err(|_| PartitionError::Storage(StorageError::InvalidAppend("a transaction marker did not encode")))?;
    Ok(buf)
}

impl Partition {
    /// Appends a COMMIT or ABORT marker for `producer_id` and waits until it
    /// is fdatasync'ed. The producer's epoch here moves up to `producer_epoch`
    /// (a fenced producer's later batches get INVALID_PRODUCER_EPOCH).
    pub async fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<i64, PartitionError> {
        let batch = encode_marker(producer_id, producer_epoch, commit, coordinator_epoch)?;
        let headers = validate_batches(&batch)
            .map_err(|_| PartitionError::Storage(StorageError::InvalidAppend("a transaction marker did not validate")))?;
        self.log.reserve(batch.len()).await?;
        // No `.await` from here to the index update: offsets and index agree.
        let result = self.log.append_in_place(batch, &headers, self.leader_epoch())?;
        self.txns.borrow_mut().on_marker(producer_id, commit, result.base_offset);
        self.producers.borrow_mut().fence_to(producer_id, producer_epoch, now_ms());
        let waited = self.log.wait_durable(result.last_offset + 1).await;
        self.wake_waiters();
        waited?;
        Ok(result.base_offset)
    }

    /// Appends a transactional batch written by a coordinator on the
    /// producer's behalf (TxnOffsetCommit records), without the sequence
    /// check (such batches carry no sequence), and waits until fdatasync'ed.
    pub async fn append_transactional(&self, batch: BytesMut) -> Result<i64, PartitionError> {
        let headers =
            validate_batches(&batch).map_err(|_| PartitionError::Storage(StorageError::InvalidAppend("a transactional batch did not validate")))?;
        let [h] = headers[..] else {
            return Err(PartitionError::Storage(StorageError::InvalidAppend("one transactional batch at a time")));
        };
        if !h.is_transactional() || h.producer_id < 0 {
            return Err(PartitionError::Storage(StorageError::InvalidAppend("not a transactional batch")));
        }
        self.log.reserve(batch.len()).await?;
        // A fenced producer (older epoch than a marker or batch here) is
        // refused, as Kafka's log refuses it: its offsets would otherwise be
        // committed by the next transaction of the same producer id.
        let current = self.producers.borrow().epoch(h.producer_id);
        if let Some(current) = current.filter(|c| h.producer_epoch < *c) {
            return Err(PartitionError::Producer(super::producer_state::ProducerStateError::InvalidEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current,
            }));
        }
        // No `.await` from the check to the state update.
        let result = self.log.append_in_place(batch, &headers, self.leader_epoch())?;
        self.producers.borrow_mut().fence_to(h.producer_id, h.producer_epoch, now_ms());
        self.txns.borrow_mut().on_data(h.producer_id, result.base_offset);
        let waited = self.log.wait_durable(result.last_offset + 1).await;
        self.wake_waiters();
        waited?;
        Ok(result.base_offset)
    }

    /// At clean close: the transaction index checkpoint at the log end.
    pub(super) fn save_txn_index_at_close(&self) {
        let end = self.log.log_end_offset();
        if let Err(e) = self.txns.borrow().save(self.log.dir(), end) {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "transaction index checkpoint failed; the next open scans the log");
        }
    }

    /// DescribeProducers: each remembered producer as (id, epoch, last
    /// sequence, last write ms, first offset of its open transaction or -1).
    pub fn describe_producers(&self) -> Vec<(i64, i16, i32, i64, i64)> {
        let txns = self.txns.borrow();
        self.producers
            .borrow()
            .export()
            .into_iter()
            .map(|(id, epoch, last_write_ms, batches)| {
                let last_seq = batches.last().map_or(-1, |b| b.last_seq);
                (id, epoch, last_seq, last_write_ms, txns.ongoing.get(&id).copied().unwrap_or(-1))
            })
            .collect()
    }

    /// The last stable offset: no read_committed consumer reads at or past
    /// it. The high watermark, or the first offset of the earliest open
    /// transaction if that is lower.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.txns.borrow().first_unstable_offset().map_or(hw, |f| f.min(hw))
    }

    /// Aborted transactions overlapping `[from, to)` (read_committed fetch).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let mut txns = self.txns.borrow_mut();
        txns.truncate_head(self.log.log_start_offset());
        txns.aborted_between(from, to)
    }

    /// Batches from `offset`, never past the last stable offset.
    pub async fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<crate::storage::ReadResult, PartitionError> {
        let lso = self.last_stable_offset();
        Ok(self.log.read(offset, max_bytes, lso, min_one).await?)
    }

    /// Resolves when the last stable offset is above `offset` or at `deadline`
    /// (read_committed long polls: woken by every append and marker).
    pub async fn wait_for_stable(&self, offset: i64, deadline: std::time::Instant) {
        use futures_lite::FutureExt;
        loop {
            if self.last_stable_offset() > offset || std::time::Instant::now() >= deadline {
                return;
            }
            let rx = {
                let mut waiters = self.waiters.borrow_mut();
                waiters.retain(|w| !w.is_canceled());
                if waiters.len() >= super::WAITERS_MAX {
                    None
                } else {
                    let (tx, rx) = futures_channel::oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
            };
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
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
                None => return timer.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::log::txn_scan::control_type;
    use crate::storage::BatchHeader;

    /// The LSO follows the earliest open transaction; an abort is indexed
    /// with its marker's offset, a commit is not.
    #[test]
    fn index_tracks_open_and_aborted() {
        let mut idx = TxnIndex::default();
        assert_eq!(idx.first_unstable_offset(), None);
        idx.on_data(7, 10);
        idx.on_data(7, 12);
        idx.on_data(8, 11);
        assert_eq!(idx.first_unstable_offset(), Some(10));
        idx.on_marker(7, false, 13);
        assert_eq!(idx.first_unstable_offset(), Some(11));
        idx.on_marker(8, true, 14);
        assert_eq!(idx.first_unstable_offset(), None);
        let a = AbortedTxn { producer_id: 7, first_offset: 10, last_offset: 13 };
        assert_eq!(idx.aborted_between(0, 20), vec![a]);
        assert_eq!(idx.aborted_between(13, 20), vec![a]);
        assert!(idx.aborted_between(14, 20).is_empty());
        assert!(idx.aborted_between(0, 10).is_empty());
        // A marker without data here (a partition added but never written) indexes nothing.
        idx.on_marker(9, false, 15);
        assert_eq!(idx.aborted_between(0, 20).len(), 1);
        idx.truncate_head(14);
        assert!(idx.aborted_between(0, 20).is_empty());
    }

    /// A marker batch validates as a transactional control batch whose key reads back as its type.
    #[test]
    fn marker_batch_layout() {
        for commit in [true, false] {
            let batch = encode_marker(42, 3, commit, 5).unwrap();
            let headers = validate_batches(&batch).unwrap();
            let h = headers[0];
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (42, 3, -1));
            let expected = if commit { ControlType::Commit } else { ControlType::Abort };
            assert_eq!(control_type(&batch[BatchHeader::SIZE..]), expected);
        }
    }

    /// The checkpoint round-trips and rejects damage.
    #[test]
    fn checkpoint_round_trips() {
        let mut idx = TxnIndex::default();
        idx.on_data(7, 10);
        idx.on_data(8, 11);
        idx.on_marker(8, false, 12);
        let b = idx.encode(13);
        let (end, back) = TxnIndex::decode(&b).unwrap();
        assert_eq!(end, 13);
        assert_eq!(back.first_unstable_offset(), Some(10));
        assert_eq!(back.aborted_between(0, 20), idx.aborted_between(0, 20));
        let mut bad = b.clone();
        bad[10] ^= 1;
        assert!(TxnIndex::decode(&bad).is_none());
        assert!(TxnIndex::decode(&b[..5]).is_none());
    }
}
