//! The partition log: one replica's segments, its tail cache and its writer.
//!
//! Owns: offset assignment, the tail cache of recent batches, the single
//! writer task that turns appended batches into O_DIRECT writes (group
//! commit), the written / durable watermarks, reads for fetch and
//! ListOffsets. Runs on the shard that owns the partition replica; `!Send`.
//! Many tasks call a `Log` concurrently; all state sits in one `RefCell` that
//! is never borrowed across an `.await`.
//!
//! Data path: `append` patches baseOffset / partitionLeaderEpoch in place,
//! puts the batches in the tail cache (which therefore always holds every
//! batch not yet written) and wakes the writer. The writer, one task at a
//! time per log, repeatedly (1) seals a segment left behind by a roll, (2)
//! creates the file of a new segment, (3) writes everything pending for one
//! segment in ONE aligned DMA write that starts at the last partial block and
//! is zero padded, or (4) fdatasyncs once for all durability waiters — a sync
//! is preferred over a further write as soon as written data is wanted
//! durable, so continuous appends cannot starve acks=all. Appends made while
//! a write or sync is in flight accumulate for the next one.
//!
//! A failed write/create/seal rolls the log back to what was written: the
//! unwritten batches leave the cache, `log_end_offset` returns to
//! `written_end_offset`, index entries are undone, the waiters for those
//! offsets get the error, and the next append reuses the offsets.
//!
//! Invariants: `log_start <= durable_end <= written_end <= log_end`; cache
//! covers `[cache_start, log_end)` and `cache_start <= written_end`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};
use glommio::io::DmaFile;

use super::batch::{walk_records, BatchHeader, LOG_OVERHEAD};
use super::notify::Notify;
use super::recovery::{now_ms, recover};
use super::retention::{deletable_head, write_log_start, RetentionPolicy, SegmentSummary, SEGMENTS_PER_PASS_MAX};
use super::segment::{read_exact, read_header_at, IndexMark, Segment};
use super::leader_epochs::LeaderEpochCache;
use super::StorageError;

/// Largest pending (appended, unwritten) bytes before `append` waits for the
/// writer; also capped by `cache_bytes_max`, since pending data lives in the cache.
pub const PENDING_BYTES_MAX: usize = 8 << 20;
/// A segment write slower than this is logged.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(500);
/// Largest single DMA write.
pub const WRITE_BYTES_MAX: usize = 4 << 20;
/// Segment positions are u32 in the index; Kafka caps segment.bytes at i32::MAX too.
pub const SEGMENT_BYTES_LIMIT: u64 = i32::MAX as u64;

/// Per-log settings (a topic's configs with broker defaults filled in).
/// Changed at run time with `Log::set_config`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogConfig {
    /// Roll when the active segment would exceed this (1 GiB default, capped at 2 GiB − 1).
    pub segment_bytes: u64,
    /// Roll when the active segment is older than this (7 days default).
    pub segment_ms: i64,
    /// Bytes between two sparse index entries (4096 default).
    pub index_interval_bytes: u32,
    /// Bound of the tail cache of recent batches (16 MiB default).
    pub cache_bytes_max: usize,
    /// Delete segments older than this (`retention.ms`; -1: never).
    pub retention_ms: i64,
    /// Delete old segments while the log is bigger than this (`retention.bytes`; -1: never).
    pub retention_bytes: i64,
    /// `cleanup.policy` contains `delete` (retention applies).
    pub delete_enabled: bool,
    /// `message.timestamp.type=LogAppendTime`: append stamps each batch's
    /// maxTimestamp with the broker's clock, sets the timestamp-type bit and
    /// recomputes the CRC (records are untouched; consumers read the batch's
    /// maxTimestamp as every record's timestamp).
    pub log_append_time: bool,
    /// `cleanup.policy` contains `compact` (the cleaner applies).
    pub compact_enabled: bool,
    /// `min.cleanable.dirty.ratio`: clean once the dirty share of the cleanable bytes reaches it.
    pub min_cleanable_dirty_ratio: f64,
    /// `delete.retention.ms`: how long a tombstone outlives its timestamp.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment is cleanable once its newest record is this old.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log whose oldest dirty record is this old is
    /// cleaned whatever its dirty ratio (and, compacted, rolls at least this often).
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            cache_bytes_max: 16 << 20,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            delete_enabled: true,
            log_append_time: false,
            compact_enabled: false,
            min_cleanable_dirty_ratio: 0.5,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

impl LogConfig {
    /// Bounds the storage relies on (segment positions are u32, intervals >= 1).
    fn clamped(mut self) -> LogConfig {
        self.segment_bytes = self.segment_bytes.clamp(1, SEGMENT_BYTES_LIMIT);
        self.index_interval_bytes = self.index_interval_bytes.max(1);
        self
    }

    /// Age at which the active segment rolls: `segment.ms`, or
    /// `max.compaction.lag.ms` if smaller on a compacted log (as Kafka's
    /// `maxSegmentMs`), so records never wait longer than that in the
    /// active segment, which the cleaner never touches.
    pub fn roll_ms(&self) -> i64 {
        if self.compact_enabled {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

/// What one retention pass or DeleteRecords did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadTruncation {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

/// Offsets given to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped into the batches of a LogAppendTime topic, else -1.
    pub log_append_time_ms: i64,
}

/// Whole batches for a fetch.
#[derive(Debug, Default)]
pub struct ReadResult {
    pub chunks: Vec<Chunk>,
    pub bytes: usize,
    /// Base offset of the first batch returned (may be below the requested offset).
    pub first_offset: Option<i64>,
    /// Last offset of the last batch returned.
    pub last_offset: Option<i64>,
}

/// A piece of a read: cache bytes or a segment file range.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// From the tail cache.
    Memory(Bytes),
    /// A range of a segment, opened WITHOUT O_DIRECT so it can be sendfile()d.
    File {
        file: Rc<File>,
        position: u64,
        len: u64,
    },
}

impl Chunk {
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Memory(b) => b.len() as u64,
            Chunk::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of this chunk; a file range is copied with pread (the copying
    /// path, for TLS and tests). Blocking pread on the buffered fd.
    pub async fn load(&self) -> io::Result<Bytes> {
        match self {
            Chunk::Memory(b) => Ok(b.clone()),
            Chunk::File {
                file,
                position,
                len,
            } => {
                let len = usize::try_from(*len)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "chunk too large"))?;
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, *position)?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

/// One append call's batches in the tail cache.
struct CacheEntry {
    bytes: Bytes,
    base_offset: i64,
    /// One past the last offset.
    end_offset: i64,
    segment_base: i64,
    /// (start within `bytes`, header with the assigned offsets).
    batches: Vec<(usize, BatchHeader)>,
    /// The segment's state before this append, to undo it if the write fails.
    mark: IndexMark,
    log_max_ts_before: Option<(i64, i64)>,
}

struct State {
    segments: Vec<Segment>,
    cache: VecDeque<CacheEntry>,
    cache_bytes: usize,
    pending_bytes: usize,
    log_start: i64,
    log_end: i64,
    written_end: i64,
    durable_end: i64,
    /// Largest end offset a `wait_durable` caller is waiting for.
    durable_wanted: i64,
    writer_running: bool,
    /// A segment file was created and the directory not fsync'ed since:
    /// done (off the shard thread) before `durable_end` next moves.
    dir_entry_pending: bool,
    /// Bumped when a failed write/create/seal rolled unwritten data back;
    /// every waiter compares it.
    rollback_gen: u64,
    /// Bumped when an fdatasync failed; only durability waiters compare it
    /// (their data stays written and may become durable on a later sync).
    sync_error_gen: u64,
    last_error: Option<(io::ErrorKind, String)>,
    max_ts: Option<(i64, i64)>,
    closed: bool,
    /// Completed DMA writes and fdatasyncs (metrics, and tests of group commit).
    writes: u64,
    syncs: u64,
    /// Leader epoch -> first offset (see `leader_epochs`).
    epochs: LeaderEpochCache,
    /// `epochs` changed since the checkpoint was last written: written (off
    /// the shard thread) before `durable_end` next moves, so no durable
    /// batch has an epoch the checkpoint lacks.
    epochs_dirty: bool,
}

impl State {
    fn error(&self) -> StorageError {
        match &self.last_error {
            Some((kind, msg)) => StorageError::Io(io::Error::new(*kind, msg.clone())),
            None => StorageError::Io(io::Error::other("write failed")),
        }
    }

    fn cache_start(&self) -> i64 {
        self.cache.front().map_or(self.log_end, |e| e.base_offset)
    }

    fn first_pending(&self) -> Option<usize> {
        let i = self
            .cache
            .partition_point(|e| e.end_offset <= self.written_end);
        (i < self.cache.len()).then_some(i)
    }

    fn segment_index(&self, base: i64) -> Option<usize> {
        self.segments
            .binary_search_by_key(&base, |s| s.base_offset)
            .ok()
    }

    /// Index of the segment containing `offset` (the last one whose base <= offset).
    fn segment_for(&self, offset: i64) -> Option<usize> {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .checked_sub(1)
    }

    fn check_invariants(&self) {
        debug_assert!(
            self.log_start <= self.durable_end,
            "log_start <= durable_end"
        );
        debug_assert!(
            self.durable_end <= self.written_end,
            "durable_end <= written_end"
        );
        debug_assert!(self.written_end <= self.log_end, "written_end <= log_end");
        debug_assert!(
            self.cache_start() <= self.written_end,
            "cache holds all unwritten batches"
        );
    }
}

/// How an append gets its offsets.
#[derive(Clone, Copy)]
enum Offsets {
    /// The leader: assigns from the log end and stamps its epoch.
    Assign { leader_epoch: i32 },
    /// A follower: keeps the offsets and epochs the leader gave the batches.
    Keep,
}

/// What the writer does next.
enum Action {
    Idle,
    Seal(i64),
    Create(i64),
    Write(WriteJob),
    Sync(i64, Vec<Rc<DmaFile>>),
}

struct WriteJob {
    segment_base: i64,
    dma: Rc<DmaFile>,
    /// Aligned file position the buffer starts at.
    position: u64,
    /// Last partial block already written; rewritten in front of the new data.
    prefix: Vec<u8>,
    pieces: Vec<Bytes>,
    new_bytes: u64,
    end_offset: i64,
}

/// One partition replica's log in its own directory.
pub struct Log {
    dir: PathBuf,
    config: std::cell::Cell<LogConfig>,
    me: Weak<Log>,
    state: RefCell<State>,
    progress: Notify,
    /// False on a follower: leader appends (which assign offsets) are
    /// refused, synchronously with the role change.
    accepts_leader_appends: std::cell::Cell<bool>,
    /// Test-only fault injection: the next DMA write fails as if the disk were full.
    #[cfg(test)]
    fail_next_write: std::cell::Cell<bool>,
}

fn align_down(v: u64, align: u64) -> u64 {
    v - v % align
}

fn align_up(v: u64, align: u64) -> u64 {
    align_down(v + align - 1, align)
}

impl Log {
    /// Creates the directory if missing, recovers, and is ready to append.
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<Rc<Log>, StorageError> {
        let config = config.clamped();
        let mut segments = recover(&dir, &config).await?;
        let tail_epochs = std::mem::take(&mut segments.last_mut().expect("a log always has a segment").epoch_starts);
        let (segments, log_start) = apply_log_start_checkpoint(&dir, segments)?;
        let log_end = segments[segments.len() - 1].next_offset;
        let (epochs, epochs_dirty) = replica::recover_epochs(&dir, &segments, &tail_epochs, log_start, log_end)?;
        let max_ts = segments.iter().filter_map(|s| s.idx.max_ts).fold(
            None,
            |acc: Option<(i64, i64)>, m| match acc {
                Some(a) if a.0 >= m.0 => Some(a),
                _ => Some(m),
            },
        );
        let state = State {
            segments,
            cache: VecDeque::new(),
            cache_bytes: 0,
            pending_bytes: 0,
            log_start,
            log_end,
            written_end: log_end,
            durable_end: log_end,
            durable_wanted: log_end,
            writer_running: false,
            dir_entry_pending: false,
            rollback_gen: 0,
            sync_error_gen: 0,
            last_error: None,
            max_ts,
            closed: false,
            writes: 0,
            syncs: 0,
            epochs,
            epochs_dirty,
        };
        Ok(Rc::new_cyclic(|me| Log {
            dir,
            config: std::cell::Cell::new(config),
            me: me.clone(),
            state: RefCell::new(state),
            progress: Notify::default(),
            accepts_leader_appends: std::cell::Cell::new(true),
            #[cfg(test)]
            fail_next_write: std::cell::Cell::new(false),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A leader takes appends that assign offsets; a follower only replicated ones.
    pub fn set_accepts_leader_appends(&self, accepts: bool) {
        self.accepts_leader_appends.set(accepts);
    }

    /// The settings in force.
    pub fn config(&self) -> LogConfig {
        self.config.get()
    }

    /// Applies new settings to the open log (a topic's configs changed):
    /// segment.bytes / segment.ms from the next append's roll decision,
    /// LogAppendTime from the next append, retention from the next pass.
    pub fn set_config(&self, config: LogConfig) {
        self.config.set(config.clamped());
    }

    /// Total bytes of the log's segments (for tests and metrics).
    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().segments.iter().map(|s| s.size).sum()
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the
    /// written end, which is the high watermark) and deletes the segments
    /// wholly below it. An offset at or below the current start changes
    /// nothing. The data up to the new start is made durable and the new
    /// start is checkpointed before any segment is dropped, so after a crash
    /// the start never goes backwards.
    pub async fn delete_records(&self, offset: i64) -> Result<HeadTruncation, StorageError> {
        {
            let st = self.state.borrow();
            if st.closed {
                return Err(StorageError::Closed);
            }
            if offset < 0 || offset > st.written_end {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    start: st.log_start,
                    end: st.written_end,
                });
            }
            if offset <= st.log_start {
                return Ok(HeadTruncation {
                    log_start_offset: st.log_start,
                    ..HeadTruncation::default()
                });
            }
        }
        self.wait_durable(offset).await?;
        self.truncate_head(Some(offset), now_ms())
    }

    /// One retention pass (see `retention::deletable_head`): deletes at most
    /// `SEGMENTS_PER_PASS_MAX` old segments and moves the log start offset to
    /// the first kept one. When every segment expired, the active one is
    /// made durable and a new empty segment is rolled first, as Kafka does.
    pub async fn apply_retention(&self, now: i64) -> Result<HeadTruncation, StorageError> {
        let wants_active = {
            let st = self.state.borrow();
            if st.closed {
                return Err(StorageError::Closed);
            }
            let sums = summaries(&st);
            let n = deletable_head(&sums, st.log_start, st.log_end, self.retention_policy(), now);
            n > 0 && n == sums.len()
        };
        if wants_active {
            let end = self.log_end_offset();
            self.wait_durable(end).await?;
        }
        self.truncate_head(None, now)
    }

    fn retention_policy(&self) -> RetentionPolicy {
        let c = self.config.get();
        RetentionPolicy {
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            delete: c.delete_enabled,
        }
    }

    /// The synchronous part of DeleteRecords and retention: no await, one
    /// borrow. Order: decide, roll if needed, checkpoint the new start
    /// (fsync'ed), move the start, drop the segments from the list, then
    /// unlink their files. A reader holding a dropped segment's fd (a fetch
    /// being sendfile'd) still completes: the inode lives until it closes.
    fn truncate_head(&self, new_start: Option<i64>, now: i64) -> Result<HeadTruncation, StorageError> {
        let removed: Vec<Segment> = {
            let mut st = self.state.borrow_mut();
            if st.closed {
                return Err(StorageError::Closed);
            }
            let target = new_start.unwrap_or(st.log_start).max(st.log_start);
            let sums = summaries(&st);
            let mut n = deletable_head(&sums, target, st.durable_end, self.retention_policy(), now)
                .min(SEGMENTS_PER_PASS_MAX);
            if n > 0 && n == sums.len() {
                if st.pending_bytes == 0 && st.durable_end == st.log_end {
                    let base = st.log_end;
                    st.segments.push(Segment::new_empty(&self.dir, base, now_ms()));
                } else {
                    n -= 1;
                }
            }
            let start = target.max(st.segments[n].base_offset);
            if n == 0 && start == st.log_start {
                return Ok(HeadTruncation {
                    log_start_offset: st.log_start,
                    ..HeadTruncation::default()
                });
            }
            debug_assert!(start <= st.durable_end, "new log start is durable");
            write_log_start(&self.dir, start)?;
            st.log_start = start;
            if st.epochs.truncate_from_start(start) {
                st.epochs_dirty = true;
            }
            let removed: Vec<Segment> = st.segments.drain(..n).collect();
            st.max_ts = st.segments.iter().filter_map(|s| s.idx.max_ts).fold(None, |acc, m| match acc {
                Some(a) if a.0 >= m.0 => Some(a),
                _ => Some(m),
            });
            st.check_invariants();
            removed
        };
        let out = HeadTruncation {
            segments_deleted: removed.len(),
            bytes_deleted: removed.iter().map(|s| s.size).sum(),
            log_start_offset: self.log_start_offset(),
        };
        for seg in &removed {
            remove_segment_files(&seg.log_path);
        }
        Ok(out)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.state.borrow().log_end
    }

    /// Every offset below this has been written to the kernel.
    pub fn written_end_offset(&self) -> i64 {
        self.state.borrow().written_end
    }

    /// Every offset below this has been written and fdatasync'ed.
    pub fn durable_end_offset(&self) -> i64 {
        self.state.borrow().durable_end
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// (completed DMA writes, completed fdatasyncs) since open.
    pub fn io_counts(&self) -> (u64, u64) {
        let st = self.state.borrow();
        (st.writes, st.syncs)
    }

    /// Bytes held by the tail cache (for tests and metrics).
    pub fn cache_bytes(&self) -> usize {
        self.state.borrow().cache_bytes
    }

    fn pending_bytes_max(&self) -> usize {
        PENDING_BYTES_MAX.min(self.config.get().cache_bytes_max)
    }

    /// Appends batches that passed `validate_batches` (`headers` are theirs).
    /// Assigns offsets from `log_end_offset()` by patching baseOffset and
    /// partitionLeaderEpoch in place (outside the CRC). Returns once the data
    /// is in memory; waits only if the pending-write bound is reached.
    pub async fn append(
        &self,
        batches: BytesMut,
        headers: &[BatchHeader],
        leader_epoch: i32,
    ) -> Result<AppendResult, StorageError> {
        check_headers_tile(&batches, headers)?;
        self.wait_for_room(batches.len()).await?;
        let result = self.append_now(batches, headers, Offsets::Assign { leader_epoch })?;
        self.kick();
        Ok(result)
    }

    async fn wait_for_room(&self, len: usize) -> Result<(), StorageError> {
        let bound = self.pending_bytes_max();
        loop {
            let notified = self.progress.notified();
            {
                let st = self.state.borrow();
                if st.closed {
                    return Err(StorageError::Closed);
                }
                if st.pending_bytes == 0 || st.pending_bytes + len <= bound {
                    return Ok(());
                }
            }
            self.kick();
            notified.await;
        }
    }

    /// The synchronous part of append: no await, one borrow.
    fn append_now(
        &self,
        mut batches: BytesMut,
        headers: &[BatchHeader],
        offsets: Offsets,
    ) -> Result<AppendResult, StorageError> {
        let mut st = self.state.borrow_mut();
        if st.closed {
            return Err(StorageError::Closed);
        }
        if matches!(offsets, Offsets::Assign { .. }) && !self.accepts_leader_appends.get() {
            return Err(StorageError::NotLeader);
        }
        let mut next = st.log_end;
        if let Offsets::Keep = offsets {
            // A follower keeps the leader's offsets; they only grow (compaction
            // on the leader may leave gaps). Checked before anything changes.
            let mut expected = next;
            for h in headers {
                if h.base_offset < expected || h.last_offset_delta < 0 {
                    return Err(StorageError::InvalidAppend("replicated batches must continue the log"));
                }
                expected = h.last_offset() + 1;
            }
        }
        let mut pos = 0usize;
        let mut patched = Vec::with_capacity(headers.len());
        let append_time = match offsets {
            Offsets::Assign { .. } => self.config.get().log_append_time.then(now_ms),
            Offsets::Keep => None,
        };
        for h in headers {
            let mut h = *h;
            match offsets {
                Offsets::Assign { leader_epoch } => {
                    h.base_offset = next;
                    h.partition_leader_epoch = leader_epoch;
                    batches[pos..pos + 8].copy_from_slice(&next.to_be_bytes());
                    batches[pos + 12..pos + 16].copy_from_slice(&leader_epoch.to_be_bytes());
                }
                Offsets::Keep => {}
            }
            if h.partition_leader_epoch >= 0 && st.epochs.assign(h.partition_leader_epoch, h.base_offset) {
                st.epochs_dirty = true;
            }
            if let Some(now) = append_time {
                stamp_log_append_time(&mut batches[pos..pos + h.total_size()], &mut h, now);
            }
            patched.push((pos, h));
            pos += h.total_size();
            next = h.last_offset() + 1;
        }
        let Some(&(_, first)) = patched.first() else {
            return Err(StorageError::InvalidAppend("no batches"));
        };
        let base_offset = first.base_offset;
        let len = batches.len();
        let last_offset = next - 1;
        self.maybe_roll(&mut st, len as u64, last_offset);

        let log_max_ts_before = st.max_ts;
        let interval = self.config.get().index_interval_bytes;
        let seg = st.segments.last_mut().expect("a log always has a segment");
        let mark = seg.mark();
        let file_pos = seg.size;
        for (p, h) in &patched {
            seg.idx
                .on_batch(seg.base_offset, file_pos + *p as u64, h, interval);
        }
        seg.size += len as u64;
        seg.next_offset = next;
        let segment_base = seg.base_offset;
        let seg_max = seg.idx.max_ts;
        if let Some(m) = seg_max {
            if st.max_ts.is_none_or(|cur| m.0 > cur.0) {
                st.max_ts = Some(m);
            }
        }
        st.cache.push_back(CacheEntry {
            bytes: batches.freeze(),
            base_offset,
            end_offset: next,
            segment_base,
            batches: patched,
            mark,
            log_max_ts_before,
        });
        st.cache_bytes += len;
        st.pending_bytes += len;
        st.log_end = next;
        self.evict(&mut st);
        st.check_invariants();
        Ok(AppendResult {
            base_offset,
            last_offset,
            log_append_time_ms: append_time.unwrap_or(-1),
        })
    }

    /// Starts a new (in-memory; the writer creates the file) segment if the
    /// active one is non-empty and would grow past `segment_bytes`, is older
    /// than `segment_ms`, or could not index `last_offset`.
    fn maybe_roll(&self, st: &mut State, len: u64, last_offset: i64) {
        let now = now_ms();
        let seg = st.segments.last().expect("a log always has a segment");
        if seg.size == 0 {
            return;
        }
        let too_big = seg.size + len > self.config.get().segment_bytes;
        let too_old = now.saturating_sub(seg.created_ms) >= self.config.get().roll_ms();
        let rel_overflow = last_offset - seg.base_offset > i64::from(i32::MAX);
        if too_big || too_old || rel_overflow {
            let base = st.log_end;
            st.segments.push(Segment::new_empty(&self.dir, base, now));
        }
    }

    /// Drops written entries from the front while the cache is over its bound.
    fn evict(&self, st: &mut State) {
        while st.cache_bytes > self.config.get().cache_bytes_max {
            let Some(front) = st.cache.front() else { break };
            if front.end_offset > st.written_end {
                break;
            }
            st.cache_bytes -= front.bytes.len();
            st.cache.pop_front();
        }
    }

    /// Resolves once every offset < `end_offset` is written to the kernel.
    pub async fn wait_written(&self, end_offset: i64) -> Result<(), StorageError> {
        self.wait_until(end_offset, false).await
    }

    /// Resolves once every offset < `end_offset` is written and fdatasync'ed.
    /// Concurrent waiters share one write + fdatasync (group commit).
    pub async fn wait_durable(&self, end_offset: i64) -> Result<(), StorageError> {
        self.wait_until(end_offset, true).await
    }

    async fn wait_until(&self, end_offset: i64, durable: bool) -> Result<(), StorageError> {
        let gens = {
            let st = self.state.borrow();
            (st.rollback_gen, st.sync_error_gen)
        };
        loop {
            let notified = self.progress.notified();
            {
                let mut st = self.state.borrow_mut();
                let reached = if durable {
                    st.durable_end
                } else {
                    st.written_end
                };
                if reached >= end_offset {
                    return Ok(());
                }
                // A rollback fails only waiters whose data it dropped.
                let dropped = st.rollback_gen != gens.0 && end_offset > st.written_end;
                let failed = dropped || (durable && st.sync_error_gen != gens.1);
                if failed {
                    return Err(st.error());
                }
                if end_offset > st.log_end {
                    // Either a caller bug or the data was rolled back by an
                    // earlier failure before this wait began.
                    if st.last_error.is_some() {
                        return Err(st.error());
                    }
                    return Err(StorageError::OffsetOutOfRange {
                        requested: end_offset,
                        start: st.log_start,
                        end: st.log_end,
                    });
                }
                if durable {
                    st.durable_wanted = st.durable_wanted.max(end_offset);
                }
            }
            self.kick();
            notified.await;
        }
    }

    /// Starts the writer task unless it runs already.
    fn kick(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.writer_running {
                return;
            }
            let has_work = st.pending_bytes > 0
                || (st.durable_wanted > st.durable_end && st.written_end > st.durable_end);
            if !has_work {
                return;
            }
            st.writer_running = true;
        }
        match self.me.upgrade() {
            Some(me) => {
                // The JoinHandle is not needed: the task reports through `progress`.
                drop(glommio::spawn_local(async move { me.writer_loop().await }).detach());
            }
            None => self.state.borrow_mut().writer_running = false,
        }
    }

    async fn writer_loop(self: Rc<Self>) {
        loop {
            match self.next_action() {
                Action::Idle => {
                    self.progress.notify_all();
                    return;
                }
                Action::Seal(base) => self.seal(base).await,
                Action::Create(base) => self.create_file(base).await,
                Action::Write(job) => self.write(job).await,
                Action::Sync(target, files) => self.sync(target, files).await,
            }
            self.progress.notify_all();
            // Let appenders and readers run between I/Os on a busy shard.
            glommio::executor().yield_if_needed().await;
        }
    }

    fn next_action(&self) -> Action {
        let mut st = self.state.borrow_mut();
        if st.durable_wanted > st.durable_end && st.written_end > st.durable_end {
            let files = st
                .segments
                .iter()
                .filter(|s| !s.sealed && s.written_size > 0)
                .filter_map(|s| s.dma.clone())
                .collect();
            return Action::Sync(st.written_end, files);
        }
        let Some(first) = st.first_pending() else {
            st.writer_running = false;
            return Action::Idle;
        };
        let target = st.cache[first].segment_base;
        if let Some(old) = st
            .segments
            .iter()
            .find(|s| !s.sealed && s.base_offset < target)
        {
            return Action::Seal(old.base_offset);
        }
        let si = st
            .segment_index(target)
            .expect("cache entries point at live segments");
        let seg = &st.segments[si];
        let Some(dma) = seg.dma.clone() else {
            return Action::Create(target);
        };
        let align = dma.alignment();
        let position = align_down(seg.written_size, align);
        let prefix = seg.tail_block.clone();
        debug_assert_eq!(position + prefix.len() as u64, seg.written_size);
        let mut pieces = Vec::new();
        let mut new_bytes = 0u64;
        let mut end_offset = st.written_end;
        for e in st.cache.range(first..) {
            let fits = new_bytes + e.bytes.len() as u64 <= WRITE_BYTES_MAX as u64;
            if e.segment_base != target || (!pieces.is_empty() && !fits) {
                break;
            }
            new_bytes += e.bytes.len() as u64;
            end_offset = e.end_offset;
            pieces.push(e.bytes.clone());
        }
        Action::Write(WriteJob {
            segment_base: target,
            dma,
            position,
            prefix,
            pieces,
            new_bytes,
            end_offset,
        })
    }

    async fn write(&self, job: WriteJob) {
        let align = job.dma.alignment();
        let data_len = job.prefix.len() as u64 + job.new_bytes;
        let buf_len = align_up(data_len, align) as usize;
        let mut buf = job.dma.alloc_dma_buffer(buf_len);
        let dst = buf.as_bytes_mut();
        let mut at = job.prefix.len();
        dst[..at].copy_from_slice(&job.prefix);
        for p in &job.pieces {
            dst[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        dst[at..].fill(0);
        let new_written = job.position + data_len;
        let tail_from = (align_down(new_written, align) - job.position) as usize;
        let tail_block = dst[tail_from..at].to_vec();
        #[cfg(test)]
        if self.fail_next_write.take() {
            self.fail_pending(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected ENOSPC",
            ));
            return;
        }
        let started = std::time::Instant::now();
        let res = job.dma.write_at(buf, job.position).await;
        // A disk (or filesystem journal) stall shows here, not as a shard stall.
        if started.elapsed() >= SLOW_WRITE {
            tracing::warn!(dir = %self.dir.display(), ms = started.elapsed().as_millis() as u64, bytes = buf_len, "slow segment write");
        }
        let err = match res {
            Ok(n) if n == buf_len => None,
            Ok(n) => Some(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short O_DIRECT write: {n} of {buf_len} bytes"),
            )),
            Err(e) => Some(e.into()),
        };
        if let Some(e) = err {
            self.fail_pending(e);
            return;
        }
        let mut st = self.state.borrow_mut();
        let si = st
            .segment_index(job.segment_base)
            .expect("written segment exists");
        let seg = &mut st.segments[si];
        seg.written_size = new_written;
        seg.tail_block = tail_block;
        st.written_end = job.end_offset;
        st.pending_bytes -= job.new_bytes as usize;
        st.writes += 1;
        self.evict(&mut st);
        st.check_invariants();
    }

    /// fsyncs the directory if a segment file was created since the last
    /// time, on glommio's blocking pool: on the shard thread a directory
    /// fsync (a journal commit) stalled every partition of the shard for up
    /// to a second at each roll.
    async fn sync_dir_entries(&self) -> io::Result<()> {
        self.write_epochs_if_dirty().await?;
        if !self.state.borrow().dir_entry_pending {
            return Ok(());
        }
        let dir = self.dir.clone();
        glommio::executor().spawn_blocking(move || File::open(&dir)?.sync_all()).await?;
        self.state.borrow_mut().dir_entry_pending = false;
        Ok(())
    }

    async fn sync(&self, target: i64, files: Vec<Rc<DmaFile>>) {
        let mut result = self.sync_dir_entries().await;
        for f in &files {
            if result.is_err() {
                break;
            }
            result = f.fdatasync().await.map_err(io::Error::from);
        }
        if let Err(e) = result {
            let mut st = self.state.borrow_mut();
            tracing::error!(dir = %self.dir.display(), error = %e, "fdatasync failed");
            st.sync_error_gen += 1;
            st.last_error = Some((e.kind(), e.to_string()));
            // Waiters fail now; later ones ask again.
            st.durable_wanted = st.durable_end;
            return;
        }
        let mut st = self.state.borrow_mut();
        st.durable_end = st.durable_end.max(target);
        st.syncs += 1;
        st.check_invariants();
    }

    /// Creates the file of a segment that so far exists only in memory.
    async fn create_file(&self, base: i64) {
        let path = super::segment::segment_path(&self.dir, base, "log");
        let opened = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await;
        let result = opened.map_err(io::Error::from).and_then(|dma| {
            let reader = File::open(&path)?;
            // The new directory entry is made durable before any offset in
            // this file counts as durable (`sync_dir_entries`).
            self.state.borrow_mut().dir_entry_pending = true;
            Ok((dma, reader))
        });
        match result {
            Ok((dma, reader)) => {
                let mut st = self.state.borrow_mut();
                let si = st.segment_index(base).expect("segment to create exists");
                st.segments[si].dma = Some(Rc::new(dma));
                st.segments[si].reader = Some(Rc::new(reader));
            }
            Err(e) => self.fail_pending(e),
        }
    }

    /// Finishes a segment left behind by a roll: fdatasync, truncate the zero
    /// padding, write the index files, close the O_DIRECT fd.
    async fn seal(&self, base: i64) {
        let (dma, written) = {
            let st = self.state.borrow();
            let si = st.segment_index(base).expect("segment to seal exists");
            (st.segments[si].dma.clone(), st.segments[si].written_size)
        };
        let result = match &dma {
            Some(dma) => finish_file(dma, written).await,
            None => Ok(()),
        };
        let result = match result {
            Ok(()) => self.sync_dir_entries().await,
            e => e,
        };
        let result = match result {
            Ok(()) if dma.is_some() => {
                let files = {
                    let mut st = self.state.borrow_mut();
                    let si = st.segment_index(base).expect("segment to seal exists");
                    st.segments[si].index_files()
                };
                // Two file writes and fsyncs on glommio's blocking pool: done on
                // the shard thread they stalled every partition of the shard at
                // each roll (the acks=1 p99.9 spikes).
                glommio::executor()
                    .spawn_blocking(move || files.iter().try_for_each(|(path, bytes)| super::index::write_file_durably(path, bytes)))
                    .await
            }
            other => other,
        };
        let result = result.and_then(|()| {
            let mut st = self.state.borrow_mut();
            let si = st.segment_index(base).expect("segment to seal exists");
            let seg = &mut st.segments[si];
            seg.dma = None;
            seg.sealed = true;
            let end = seg.next_offset;
            st.durable_end = st.durable_end.max(end);
            st.check_invariants();
            Ok(())
        });
        if let Err(e) = result {
            self.fail_pending(e);
            return;
        }
        if let Some(dma) = dma {
            if let Err(e) = dma.close_rc().await {
                tracing::warn!(dir = %self.dir.display(), error = %e, "closing sealed segment");
            }
        }
    }

    /// A write failed: drop everything unwritten, undo its index entries and
    /// offsets, and fail its waiters. The next append reuses the offsets.
    fn fail_pending(&self, e: io::Error) {
        let mut st = self.state.borrow_mut();
        tracing::error!(dir = %self.dir.display(), error = %e, "log write failed; rolling back");
        st.rollback_gen += 1;
        st.last_error = Some((e.kind(), e.to_string()));
        let Some(first) = st.first_pending() else {
            return;
        };
        let (seg_base, mark, max_before) = {
            let e = &st.cache[first];
            (e.segment_base, e.mark, e.log_max_ts_before)
        };
        let dropped: usize = st.cache.range(first..).map(|e| e.bytes.len()).sum();
        st.cache.truncate(first);
        st.cache_bytes -= dropped;
        st.pending_bytes = 0;
        let si = st.segment_index(seg_base).expect("pending segment exists");
        for later in st.segments.drain(si + 1..) {
            assert!(
                later.dma.is_none() && later.written_size == 0,
                "later segments hold no data"
            );
        }
        st.segments[si].restore(&mark);
        st.log_end = st.written_end;
        st.max_ts = max_before;
        st.durable_wanted = st.durable_wanted.min(st.log_end);
        st.check_invariants();
    }

    /// Whole batches from the one containing `offset`, at most `max_bytes`
    /// (but at least one batch if `min_one`), none with a base offset >=
    /// `end_offset_exclusive`. Recent batches come from the cache, older ones
    /// as a file range of one segment (a read stops at a segment's end).
    ///
    /// No `.await` inside: header reads are blocking preads, so the state
    /// borrow may be held throughout.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        end_offset_exclusive: i64,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        let st = self.state.borrow();
        if st.closed {
            return Err(StorageError::Closed);
        }
        if offset < st.log_start || offset > st.log_end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: st.log_start,
                end: st.log_end,
            });
        }
        if offset == st.log_end || offset >= end_offset_exclusive {
            return Ok(ReadResult::default());
        }
        let limits = ReadLimits {
            max_bytes,
            end_offset: end_offset_exclusive,
            min_one,
        };
        if offset >= st.cache_start() {
            return Ok(read_cache(&st, offset, &limits));
        }
        let mut si = st
            .segment_for(offset)
            .expect("offset >= log_start has a segment");
        let mut offset = offset;
        loop {
            if let Some(r) = read_segment(&st.segments[si], offset, &limits)? {
                return Ok(r);
            }
            // Compaction removed every batch from `offset` to this segment's
            // end: the next batch is in a later segment.
            si += 1;
            let Some(next) = st.segments.get(si) else {
                return Err(corrupt(&st.segments[si - 1].log_path, format!("offset {offset} not found before the written end")));
            };
            offset = next.base_offset;
            if offset >= st.cache_start() {
                return Ok(read_cache(&st, offset, &limits));
            }
        }
    }

    /// ListOffsets by timestamp: the first record with timestamp >= `ts`, as
    /// (offset, timestamp). Uses the time index to skip to the right batch,
    /// then walks the records of an uncompressed batch to find the exact one.
    ///
    /// Limitation: the broker never decompresses, so for a COMPRESSED batch
    /// (and for a LogAppendTime batch, whose records all carry its max
    /// timestamp) this returns the batch's base offset and max timestamp.
    ///
    /// No `.await` inside (blocking preads), so the borrow is held throughout.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let st = self.state.borrow();
        if st.closed {
            return Err(StorageError::Closed);
        }
        if st.max_ts.is_none_or(|(m, _)| m < ts) {
            return Ok(None);
        }
        let cache_start = st.cache_start();
        let first_seg = st
            .segments
            .iter()
            .position(|s| s.idx.max_ts.is_some_and(|(m, _)| m >= ts));
        if let Some(first_seg) = first_seg {
            for (i, seg) in st.segments.iter().enumerate().skip(first_seg) {
                if seg.base_offset >= cache_start {
                    break;
                }
                let start_pos = if i == first_seg {
                    match seg.idx.time_index.last_below(ts) {
                        Some((_, rel)) => seg.position_floor(seg.base_offset + i64::from(rel)),
                        None => 0,
                    }
                } else {
                    0
                };
                if let Some(found) = find_ts_in_segment(seg, start_pos, cache_start, ts)? {
                    return Ok(Some(found));
                }
            }
        }
        for e in &st.cache {
            for (start, h) in &e.batches {
                if h.max_timestamp < ts {
                    continue;
                }
                let bytes = &e.bytes[*start..*start + h.total_size()];
                if let Some(found) =
                    resolve_in_batch(h, bytes, ts).map_err(|r| corrupt(&self.dir, r))?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: (max timestamp, offset). The offset is the
    /// last offset of the batch carrying the maximum (exact when producers
    /// send non-decreasing timestamps; the broker does not decode records on
    /// append to find the exact record).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.state.borrow().max_ts
    }

    /// Writes and fdatasyncs everything, truncates the tail's zero padding,
    /// writes index files and closes the O_DIRECT fds. Appends fail with
    /// `Closed` from the moment this is called.
    pub async fn close(&self) -> Result<(), StorageError> {
        let end = {
            let mut st = self.state.borrow_mut();
            if st.closed {
                return Ok(());
            }
            st.closed = true;
            st.log_end
        };
        let flushed = self.wait_durable(end).await;
        // Wait for the writer to go idle (it may be sealing a segment).
        loop {
            let notified = self.progress.notified();
            if !self.state.borrow().writer_running {
                break;
            }
            notified.await;
        }
        flushed?;
        self.write_epochs_if_dirty().await?;
        let open: Vec<(i64, Rc<DmaFile>, u64)> = {
            let st = self.state.borrow();
            st.segments
                .iter()
                .filter_map(|s| s.dma.clone().map(|d| (s.base_offset, d, s.written_size)))
                .collect()
        };
        for (base, dma, written) in open {
            finish_file(&dma, written).await?;
            {
                let mut st = self.state.borrow_mut();
                let si = st.segment_index(base).expect("open segment exists");
                st.segments[si].write_index_files()?;
                st.segments[si].dma = None;
            }
            dma.close_rc().await?;
        }
        super::recovery::write_clean_marker(&self.dir)?;
        Ok(())
    }

    /// Closes the log and deletes its directory (topic deleted).
    pub async fn remove(&self) -> Result<(), StorageError> {
        if let Err(e) = self.close().await {
            tracing::warn!(dir = %self.dir.display(), error = %e, "close before remove failed");
        }
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Segment summaries for retention decisions.
fn summaries(st: &State) -> Vec<SegmentSummary> {
    st.segments
        .iter()
        .map(|s| SegmentSummary {
            base_offset: s.base_offset,
            next_offset: s.next_offset,
            size_bytes: s.size,
            max_timestamp_ms: s.idx.max_ts.map(|(ts, _)| ts),
        })
        .collect()
}

/// Unlinks a deleted segment's files. A failure is logged, not returned: the
/// log start offset has already moved (durably), and the next open removes
/// segments wholly below it.
fn remove_segment_files(log_path: &Path) {
    for path in [
        log_path.to_path_buf(),
        log_path.with_extension("index"),
        log_path.with_extension("timeindex"),
    ] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(file = %path.display(), error = %e, "deleting a segment file failed");
            }
            _ => {}
        }
    }
}

/// Applies the checkpointed log start offset to the recovered segments:
/// finishes a deletion a crash interrupted (segments wholly below the start
/// that are not the tail), starts an empty log at the checkpoint instead of
/// 0, and returns the log start (never below the first segment, never above
/// the log end).
fn apply_log_start_checkpoint(
    dir: &Path,
    mut segments: Vec<Segment>,
) -> Result<(Vec<Segment>, i64), StorageError> {
    let checkpoint = super::retention::read_log_start(dir).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => corrupt(&dir.join(super::retention::LOG_START_CHECKPOINT), e),
        _ => StorageError::Io(e),
    })?;
    let Some(start) = checkpoint else {
        let start = segments[0].base_offset;
        return Ok((segments, start));
    };
    if segments.len() == 1 && segments[0].reader.is_none() && segments[0].size == 0 {
        // No segment file at all (every one deleted before the new active
        // segment's file was created): continue from the checkpoint.
        if segments[0].base_offset < start {
            segments[0] = Segment::new_empty(dir, start, now_ms());
        }
    }
    let below = segments[..segments.len() - 1]
        .iter()
        .take_while(|s| s.next_offset <= start)
        .count();
    for seg in segments.drain(..below) {
        tracing::info!(file = %seg.log_path.display(), log_start = start, "finishing an interrupted segment deletion");
        remove_segment_files(&seg.log_path);
    }
    let log_end = segments[segments.len() - 1].next_offset;
    if start > log_end {
        tracing::warn!(dir = %dir.display(), checkpoint = start, log_end, "log start checkpoint is past the log end; using the log end");
    }
    let log_start = start.min(log_end).max(segments[0].base_offset);
    Ok((segments, log_start))
}

/// LogAppendTime: sets the batch's timestamp type bit and maxTimestamp to
/// `now` and recomputes the CRC (which covers attributes onwards). Kafka does
/// the same for compressed and uncompressed batches; records are untouched.
fn stamp_log_append_time(batch: &mut [u8], h: &mut BatchHeader, now: i64) {
    use super::batch::{ATTRIBUTES_POS, CRC_POS};
    const MAX_TIMESTAMP_POS: usize = 35;
    const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
    h.attributes |= ATTR_TIMESTAMP_TYPE;
    h.max_timestamp = now;
    batch[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&h.attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&now.to_be_bytes());
    h.crc = crc32c::crc32c(&batch[ATTRIBUTES_POS..]);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&h.crc.to_be_bytes());
}

/// fdatasync, then cut the zero padding of the last DMA write, then make the
/// size durable too.
async fn finish_file(dma: &DmaFile, logical_size: u64) -> io::Result<()> {
    dma.truncate(logical_size).await?;
    dma.fdatasync().await?;
    Ok(())
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        file: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn check_headers_tile(batches: &[u8], headers: &[BatchHeader]) -> Result<(), StorageError> {
    if headers.is_empty() {
        return Err(StorageError::InvalidAppend("no batches"));
    }
    let mut pos = 0usize;
    for h in headers {
        let total = h.total_size();
        if total < BatchHeader::SIZE || pos + total > batches.len() {
            return Err(StorageError::InvalidAppend("headers do not tile the bytes"));
        }
        if batches[pos + 8..pos + LOG_OVERHEAD] != h.batch_length.to_be_bytes() {
            return Err(StorageError::InvalidAppend(
                "header does not match its bytes",
            ));
        }
        pos += total;
    }
    if pos != batches.len() {
        return Err(StorageError::InvalidAppend(
            "headers do not cover all bytes",
        ));
    }
    Ok(())
}

struct ReadLimits {
    max_bytes: usize,
    end_offset: i64,
    min_one: bool,
}

impl ReadLimits {
    /// May a batch of `len` bytes with base `base` follow `taken` bytes?
    fn admits(&self, taken: usize, base: i64, len: usize) -> bool {
        base < self.end_offset
            && (taken.saturating_add(len) <= self.max_bytes || (taken == 0 && self.min_one))
    }
}

fn read_cache(st: &State, offset: i64, limits: &ReadLimits) -> ReadResult {
    let mut out = ReadResult::default();
    let first = st.cache.partition_point(|e| e.end_offset <= offset);
    'entries: for e in st.cache.range(first..) {
        let mut range: Option<(usize, usize)> = None;
        let mut stop = false;
        for (start, h) in &e.batches {
            if h.last_offset() < offset {
                continue;
            }
            let len = h.total_size();
            if !limits.admits(out.bytes, h.base_offset, len) {
                stop = true;
                break;
            }
            out.bytes += len;
            out.first_offset.get_or_insert(h.base_offset);
            out.last_offset = Some(h.last_offset());
            range = Some(range.map_or((*start, start + len), |(s, _)| (s, start + len)));
        }
        if let Some((s, end)) = range {
            out.chunks.push(Chunk::Memory(e.bytes.slice(s..end)));
        }
        if stop {
            break 'entries;
        }
    }
    out
}

/// A file range of whole batches of one segment, starting with the batch
/// containing `offset` (or the first after it: compaction leaves gaps),
/// bounded by the segment's WRITTEN logical size. None when no batch of
/// this segment ends at or after `offset`.
fn read_segment(
    seg: &Segment,
    offset: i64,
    limits: &ReadLimits,
) -> Result<Option<ReadResult>, StorageError> {
    let Some(file) = seg.reader.clone() else {
        return Err(corrupt(
            &seg.log_path,
            "segment below the cache has no file",
        ));
    };
    let path = &seg.log_path;
    let limit = seg.written_size;
    let mut pos = seg.position_floor(offset);
    // Walk to the batch containing `offset` (at most ~one index interval).
    let first = loop {
        if pos >= limit {
            return Ok(None);
        }
        let h = read_header_at(&file, path, pos)?;
        if h.last_offset() >= offset {
            break h;
        }
        pos += h.total_size() as u64;
    };
    let start = pos;
    let first_len = first.total_size();
    if start + first_len as u64 > limit {
        return Err(corrupt(
            path,
            format!("batch at {start} runs past the written end"),
        ));
    }
    if !limits.admits(0, first.base_offset, first_len) {
        return Ok(Some(ReadResult::default()));
    }
    let budget_end = start
        .saturating_add(limits.max_bytes as u64)
        .max(start + first_len as u64)
        .min(limit);
    let mut end = start + first_len as u64;
    let mut last = first.last_offset();
    // Jump over whole batches using the index, then walk the rest.
    let mut walk_from = end;
    let rel_end = (limits.end_offset - seg.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
    if let Some(k) = seg
        .idx
        .index
        .last_within(budget_end.min(u64::from(u32::MAX)) as u32, rel_end)
    {
        // Start one entry early so at least one batch is walked and `last` is known.
        let k = k.saturating_sub(1);
        let (_, p) = seg.idx.index.get(k);
        if u64::from(p) > end {
            walk_from = u64::from(p);
        }
    }
    let (walk_end, walk_last) =
        walk_forward(&file, path, walk_from, budget_end, limits.end_offset)?;
    match walk_last {
        Some(l) => {
            end = walk_end;
            last = l;
        }
        None if walk_from > end => {
            // Defensive: the jump found nothing to walk; walk from the first batch.
            let (e2, l2) = walk_forward(&file, path, end, budget_end, limits.end_offset)?;
            if let Some(l2) = l2 {
                end = e2;
                last = l2;
            }
        }
        None => {}
    }
    let len = end - start;
    Ok(Some(ReadResult {
        chunks: vec![Chunk::File {
            file,
            position: start,
            len,
        }],
        bytes: len as usize,
        first_offset: Some(first.base_offset),
        last_offset: Some(last),
    }))
}

/// Walks whole batches from `pos` while they end by `budget_end` and start
/// below `end_offset`. Returns (end position, last offset of the last batch).
fn walk_forward(
    file: &File,
    path: &Path,
    mut pos: u64,
    budget_end: u64,
    end_offset: i64,
) -> Result<(u64, Option<i64>), StorageError> {
    let mut last = None;
    while pos + BatchHeader::SIZE as u64 <= budget_end {
        let h = read_header_at(file, path, pos)?;
        let next = pos + h.total_size() as u64;
        if h.base_offset >= end_offset || next > budget_end {
            break;
        }
        pos = next;
        last = Some(h.last_offset());
    }
    Ok((pos, last))
}

/// Finds the first record with timestamp >= `ts` in a segment's written
/// batches from `pos`, stopping at batches that are in the cache.
fn find_ts_in_segment(
    seg: &Segment,
    mut pos: u64,
    cache_start: i64,
    ts: i64,
) -> Result<Option<(i64, i64)>, StorageError> {
    let Some(file) = seg.reader.as_ref() else {
        return Ok(None);
    };
    let path = &seg.log_path;
    while pos < seg.written_size {
        let h = read_header_at(file, path, pos)?;
        if h.base_offset >= cache_start {
            break;
        }
        let len = h.total_size();
        if h.max_timestamp >= ts {
            let bytes = read_exact(file, pos, len)?;
            if let Some(found) = resolve_in_batch(&h, &bytes, ts).map_err(|r| corrupt(path, r))? {
                return Ok(Some(found));
            }
        }
        pos += len as u64;
    }
    Ok(None)
}

/// The first record of a batch with timestamp >= `ts` (see the limitation on
/// `offset_for_timestamp` for compressed and LogAppendTime batches).
fn resolve_in_batch(
    h: &BatchHeader,
    batch: &[u8],
    ts: i64,
) -> Result<Option<(i64, i64)>, super::BatchError> {
    if h.max_timestamp < ts {
        return Ok(None);
    }
    if h.compression() != 0 || h.timestamp_type_log_append() {
        return Ok(Some((h.base_offset, h.max_timestamp)));
    }
    let walked = walk_records(h, batch, |r| r.timestamp < ts)?;
    Ok(walked.stopped_at.map(|r| (r.offset, r.timestamp)))
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;

#[path = "log_checked.rs"]
pub mod checked;

#[path = "log_compaction.rs"]
pub mod compaction_pass;

#[path = "log_txn.rs"]
pub mod txn_scan;

#[path = "log_replica.rs"]
pub mod replica;
