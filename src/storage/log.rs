//! The partition log: one replica's segments, its tail cache and its writer.
//! Split by noun: this file holds the state, open, append (the appender),
//! waits, head truncation and close; `log_writer.rs` the writer task,
//! `log_reader.rs` reads, `log_replica.rs` follower appends, tail
//! truncation and leader epochs.
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
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};
use super::open_files::{self, FileHolder, WriteHandle};
use super::read_ahead;

use super::batch::{walk_records, BatchHeader, LOG_OVERHEAD};
use super::notify::Notify;
use super::cache_budget::{self, CacheBytes, CacheHolder};
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
    /// Whole batches, in order: slices of the tail cache or of a segment
    /// file's read-ahead windows (shared, not copied).
    pub chunks: Vec<Bytes>,
    pub bytes: usize,
    /// Base offset of the first batch returned (may be below the requested offset).
    pub first_offset: Option<i64>,
    /// Last offset of the last batch returned.
    pub last_offset: Option<i64>,
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
    /// Bytes in `cache`, counted in the shard's batch cache budget too.
    cache_bytes: CacheBytes,
    pending_bytes: usize,
    log_start: i64,
    log_end: i64,
    written_end: i64,
    durable_end: i64,
    /// Largest end offset a `wait_durable` caller is waiting for.
    durable_wanted: i64,
    writer_running: bool,
    /// Compaction passes running (`compaction_pass`): `close` waits for
    /// them to stop, so none of their blocking-pool file work (temp files,
    /// the cleaner checkpoint) outlives the log, e.g. into `remove`.
    cleaner_passes: u32,
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

    /// After a tail truncation (nothing pending, everything kept is
    /// durable): every watermark moves to `end`, epochs that started at or
    /// past it go, and waiters for dropped offsets fail (`rollback_gen`).
    fn truncated_to(&mut self, end: i64) {
        self.log_end = end;
        self.written_end = end;
        self.durable_end = end;
        self.durable_wanted = self.durable_wanted.min(end);
        self.max_ts = max_ts_of(&self.segments);
        if self.epochs.truncate_from_end(end) {
            self.epochs_dirty = true;
        }
        self.rollback_gen += 1;
        self.check_invariants();
    }

    /// Drops written cache entries from the front while `over(cached bytes)`.
    fn drop_written_cache_while(&mut self, over: impl Fn(usize) -> bool) {
        while over(self.cache_bytes.get()) {
            let Some(front) = self.cache.front() else { break };
            if front.end_offset > self.written_end {
                break;
            }
            let n = front.bytes.len();
            self.cache.pop_front();
            self.cache_bytes.sub(n);
        }
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
    /// The writer used its O_DIRECT handle since the file budget's last sweep.
    files_referenced: std::cell::Cell<bool>,
    /// In the file budget's sweep (holds or held an O_DIRECT handle).
    files_queued: std::cell::Cell<bool>,
    /// Serialises head truncations (DeleteRecords, retention): each
    /// checkpoints its new start across an await.
    head_lock: async_lock::Mutex<()>,
    /// Appended to since the batch cache budget's last sweep passed it.
    cache_used: std::cell::Cell<bool>,
    /// In the batch cache budget's sweep.
    cache_tracked: std::cell::Cell<bool>,
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
        let max_ts = max_ts_of(&segments);
        let state = State {
            segments,
            cache: VecDeque::new(),
            cache_bytes: CacheBytes::default(),
            pending_bytes: 0,
            log_start,
            log_end,
            written_end: log_end,
            durable_end: log_end,
            durable_wanted: log_end,
            writer_running: false,
            cleaner_passes: 0,
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
        let log = Rc::new_cyclic(|me| Log {
            dir,
            config: std::cell::Cell::new(config),
            me: me.clone(),
            state: RefCell::new(state),
            progress: Notify::default(),
            accepts_leader_appends: std::cell::Cell::new(true),
            files_referenced: std::cell::Cell::new(false),
            files_queued: std::cell::Cell::new(false),
            head_lock: async_lock::Mutex::new(()),
            cache_used: std::cell::Cell::new(false),
            cache_tracked: std::cell::Cell::new(false),
            #[cfg(test)]
            fail_next_write: std::cell::Cell::new(false),
        });
        // Recovery left the tail's O_DIRECT handle open.
        log.track_write_handle();
        Ok(log)
    }

    /// Puts this log in the file budget's sweep after it opened an O_DIRECT handle.
    fn track_write_handle(&self) {
        self.files_referenced.set(true);
        if !self.files_queued.replace(true) {
            let me: Weak<dyn FileHolder> = self.me.clone();
            open_files::track(me);
        }
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
        self.truncate_head(Some(offset), now_ms()).await
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
        self.truncate_head(None, now).await
    }

    fn retention_policy(&self) -> RetentionPolicy {
        let c = self.config.get();
        RetentionPolicy {
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            delete: c.delete_enabled,
        }
    }

    /// The head truncation of DeleteRecords and retention, one at a time
    /// per log (`head_lock`, so the checkpoint never goes backwards). Order:
    /// decide and roll if needed (one borrow); checkpoint the new start
    /// durably on the blocking pool; move the start and drop the segments
    /// wholly below it from the list (one borrow); unlink their files on the
    /// blocking pool. The shard thread never waits for the fsyncs or the
    /// unlinks (a large file's unlink takes milliseconds). A crash after the
    /// checkpoint and before the unlinks is finished by the next open
    /// (`apply_log_start_checkpoint`). A reader holding a dropped segment's
    /// buffers or fd still completes: the inode lives until it closes.
    async fn truncate_head(&self, new_start: Option<i64>, now: i64) -> Result<HeadTruncation, StorageError> {
        let _one_at_a_time = self.head_lock.lock().await;
        let start = {
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
            start
        };
        let dir = self.dir.clone();
        glommio::executor().spawn_blocking(move || write_log_start(&dir, start)).await?;
        let removed: Vec<Segment> = {
            let mut st = self.state.borrow_mut();
            if st.closed {
                // The checkpoint holds; the next open applies it.
                return Err(StorageError::Closed);
            }
            assert!(start >= st.log_start, "log start {} moved past {start} under the head lock", st.log_start);
            st.log_start = start;
            if st.epochs.truncate_from_start(start) {
                st.epochs_dirty = true;
            }
            // Segments wholly below the new start; the tail always stays.
            // Counted again: a compaction swap may have merged segments
            // while the checkpoint was written.
            let n = st.segments[..st.segments.len() - 1].iter().take_while(|s| s.next_offset <= start).count();
            let removed: Vec<Segment> = st.segments.drain(..n).collect();
            st.max_ts = max_ts_of(&st.segments);
            st.check_invariants();
            removed
        };
        let out = HeadTruncation {
            segments_deleted: removed.len(),
            bytes_deleted: removed.iter().map(|s| s.size).sum(),
            log_start_offset: self.log_start_offset(),
        };
        if let Err(e) = replica::drop_segments(removed, || Ok(())).await {
            tracing::warn!(dir = %self.dir.display(), error = %e, "deleting segment files failed; the next open removes them");
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
        self.state.borrow().cache_bytes.get()
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
        st.cache_bytes.add(len);
        st.pending_bytes += len;
        st.log_end = next;
        self.cache_used.set(true);
        if !self.cache_tracked.replace(true) {
            let me: Weak<dyn CacheHolder> = self.me.clone();
            cache_budget::track(me);
        }
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

    /// Drops written entries from the front while the cache is over its
    /// bound, then, while the shard is over its budget, other logs' written
    /// entries and then more of this one's (`cache_budget`).
    fn evict(&self, st: &mut State) {
        let max = self.config.get().cache_bytes_max;
        st.drop_written_cache_while(|c| c > max);
        if cache_budget::over_budget() {
            cache_budget::make_room();
            st.drop_written_cache_while(|_| cache_budget::over_budget());
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

    /// Writes and fdatasyncs everything, truncates the tail's zero padding,
    /// writes index files and closes the O_DIRECT fds. Appends fail with
    /// `Closed` from the moment this is called.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.close_files(CloseSync::EachFile).await?;
        let dir = self.dir.clone();
        glommio::executor().spawn_blocking(move || super::recovery::write_clean_marker(&dir, true)).await?;
        Ok(())
    }

    /// A clean shutdown's close of one of many logs: as `close`, but the
    /// tail's truncation and the index files are not synced one by one and
    /// no clean marker is written. The caller syncs the file system once
    /// for all its logs, then writes their markers (`write_clean_marker`),
    /// then syncs once more: two syncs per shard instead of four per log
    /// (a node with 50,000 partitions spent minutes in per-file fsyncs).
    pub async fn close_for_shutdown(&self) -> Result<(), StorageError> {
        self.close_files(CloseSync::Deferred).await
    }

    async fn close_files(&self, sync: CloseSync) -> Result<(), StorageError> {
        let end = {
            let mut st = self.state.borrow_mut();
            if st.closed {
                return Ok(());
            }
            st.closed = true;
            st.log_end
        };
        let flushed = self.wait_durable(end).await;
        // Wait for the writer to go idle (it may be sealing a segment), and
        // for a compaction pass to stop (at its next check of `closed`).
        loop {
            let notified = self.progress.notified();
            let st = self.state.borrow();
            if !st.writer_running && st.cleaner_passes == 0 {
                break;
            }
            drop(st);
            notified.await;
        }
        flushed?;
        self.write_epochs_if_dirty_with(sync == CloseSync::EachFile).await?;
        // A tail whose handle the file budget closed is finished like the others.
        let closed: Vec<i64> = {
            let st = self.state.borrow();
            st.segments.iter().filter(|s| !s.sealed && s.dma.is_none() && s.reader.exists()).map(|s| s.base_offset).collect()
        };
        for base in closed {
            let dma = open_files::open_write(&super::segment::segment_path(&self.dir, base, "log"), false).await?;
            let mut st = self.state.borrow_mut();
            let si = st.segment_index(base).expect("open segment exists");
            st.segments[si].dma = Some(dma);
        }
        let open: Vec<(i64, WriteHandle, u64)> = {
            let st = self.state.borrow();
            st.segments
                .iter()
                .filter_map(|s| s.dma.clone().map(|d| (s.base_offset, d, s.written_size)))
                .collect()
        };
        let mut index_files = Vec::new();
        for (base, dma, written) in open {
            finish_file(&dma, written, sync == CloseSync::EachFile).await?;
            {
                let mut st = self.state.borrow_mut();
                let si = st.segment_index(base).expect("open segment exists");
                index_files.extend(st.segments[si].index_files());
                st.segments[si].dma = None;
            }
            open_files::close_write(dma).await?;
        }
        // Off the shard thread; the marker that says they are current follows (the caller).
        let durable = sync == CloseSync::EachFile;
        glommio::executor()
            .spawn_blocking(move || -> io::Result<()> {
                for (path, bytes) in &index_files {
                    super::index::write_file(path, bytes, durable)?;
                }
                Ok(())
            })
            .await?;
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

/// How `close_files` makes what it writes durable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CloseSync {
    /// fsync each file (one log closes alone).
    EachFile,
    /// Leave it to the caller's one file system sync (`Log::close_for_shutdown`).
    Deferred,
}

/// (largest timestamp, an offset holding it) over `segments`; the first
/// segment wins a tie.
fn max_ts_of(segments: &[Segment]) -> Option<(i64, i64)> {
    segments.iter().filter_map(|s| s.idx.max_ts).fold(None, |acc, m| match acc {
        Some(a) if a.0 >= m.0 => Some(a),
        _ => Some(m),
    })
}

impl CacheHolder for Log {
    fn take_recently_used(&self) -> bool {
        self.cache_used.replace(false)
    }

    fn drop_written(&self) -> bool {
        let Ok(mut st) = self.state.try_borrow_mut() else { return true };
        st.drop_written_cache_while(|_| true);
        let stays = st.cache_bytes.get() > 0;
        self.cache_tracked.set(stays);
        stays
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
    if segments.len() == 1 && !segments[0].reader.exists() && segments[0].size == 0 {
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

/// The file budget may close the O_DIRECT handles of a log whose writer is
/// idle: nothing is lost (the data is written; fdatasync on a reopened fd
/// covers the inode), and the writer reopens before its next write, seal or
/// sync.
impl FileHolder for Log {
    fn take_referenced(&self) -> bool {
        self.files_referenced.replace(false)
    }

    fn release(&self) -> bool {
        let Ok(mut st) = self.state.try_borrow_mut() else { return false };
        if st.writer_running || st.closed {
            return false;
        }
        for seg in &mut st.segments {
            // Dropped, glommio closes it in the background.
            seg.dma = None;
        }
        self.files_queued.set(false);
        true
    }

    fn holds_files(&self) -> bool {
        let held = self.state.try_borrow().map_or(true, |st| st.segments.iter().any(|s| s.dma.is_some()));
        if !held {
            self.files_queued.set(false);
        }
        held
    }
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

#[path = "log_writer.rs"]
mod writer;
use writer::finish_file;

#[path = "log_reader.rs"]
mod reader;
