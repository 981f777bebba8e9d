//! `Log::compact`: one compaction pass over a log (the I/O part; the rules
//! are in `compaction.rs`).
//!
//! Runs on the shard that owns the partition, as a background task that
//! yields after every batch it reads or writes, so produce and fetch on the
//! shard keep running. The shard thread never waits for the disk: sealed
//! segments are read a window at a time by preads on glommio's blocking
//! pool (`BatchWalk`), cleaned segments are written a buffer at a time by
//! pwrites there (`CleanedWriter`), and the checkpoint, temp-file and fsync
//! work runs there too. Only the swap's renames and unlinks (metadata, no
//! data I/O) stay on the shard, inside the no-await section that keeps disk
//! and memory in step (`swap_in`). The state `RefCell` is never borrowed
//! across an `.await`, and `Log::close` waits for a running pass to stop,
//! so none of its blocking-pool work outlives the log.
//!
//! A pass: (1) the cleanable segments are the sealed ones, oldest first, up
//! to the first that is younger than `min.compaction.lag.ms` or whose
//! successor holds no durable data yet (so the log end offset can never
//! shrink after a crash: the successor's file names it); never the active
//! segment. (2) If the dirty bytes (above the `cleaner-offset` checkpoint)
//! are not more than `min.cleanable.dirty.ratio` of them and the first dirty
//! batch is younger than `max.compaction.lag.ms`, stop. (3) Map the keys
//! of the dirty segments (bounded key map; stop at the last segment that fit
//! whole). (4) Clean every cleanable segment up to there, oldest first, in
//! groups of adjacent segments whose total size fits `segment.bytes`
//! (Kafka's `groupSegmentsBySize`), so the small segments cleaning leaves
//! are merged on later passes: write `<first base>.cleaned`, fsync, then —
//! with no await — rename it to `<first base>.swap` (the commit point),
//! unlink the group's index files and the other segments' files, rename the
//! swap over `<first base>.log` and swap the in-memory segments, then fsync
//! the directory (`swap_in`; every fsync runs on glommio's blocking pool,
//! never on the shard). (5) Checkpoint the new first dirty offset. A crash
//! at any point leaves either the old segments or a committed swap that the
//! next open finishes (a leftover `.cleaned` is deleted at open; a segment
//! without index files is rescanned, gaps allowed, and gets them back).

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{corrupt, Log, State};
use crate::storage::batch::{checked_total_size, BatchHeader};
use crate::storage::compaction::{
    clean_batch, dirty_ratio, map_batch, read_first_dirty, write_first_dirty, AbortedTxns, BatchFate, CleanRules,
    KeyMap, CLEANED_EXT, NO_ABORTED_TXNS, SWAP_EXT,
};
use crate::storage::segment::SegIndexes;
use crate::storage::StorageError;

/// Longest the cleaner works before it yields its task queue, so appends,
/// fetches and I/O completions on the shard run in between.
const WORK_SLICE: Duration = Duration::from_micros(500);
/// Bytes read per pread while walking a segment's batches.
const READ_WINDOW_BYTES: usize = 256 << 10;
/// Bytes gathered per pwrite of a cleaned segment.
const WRITE_BUFFER_BYTES: usize = 256 << 10;

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_cleaned: usize,
    /// Segments that were merged into the segment before them.
    pub segments_merged: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The first dirty offset after the pass (None: no pass ran).
    pub first_dirty_offset: Option<i64>,
}

/// A cleanable segment as the pass sees it.
struct SegRef {
    base: i64,
    next: i64,
    size: u64,
    reader: super::super::open_files::ReadHandle,
    path: PathBuf,
}

/// Walks the batches of a sealed segment through a read window, read on
/// the blocking pool so a cold segment never stalls the shard.
struct BatchWalk<'a> {
    seg: &'a SegRef,
    /// A dup of the segment's read fd (the shard's handle is `!Send`): the
    /// pool's preads own it, so a pass dropped mid-read never reads a closed
    /// or reused fd number. One walk at a time, outside the file budget.
    file: Arc<File>,
    pos: u64,
    window: Vec<u8>,
    window_start: u64,
    window_bytes: usize,
}

impl<'a> BatchWalk<'a> {
    fn new(seg: &'a SegRef) -> io::Result<Self> {
        Self::with_window(seg, READ_WINDOW_BYTES)
    }

    fn with_window(seg: &'a SegRef, window_bytes: usize) -> io::Result<Self> {
        Ok(BatchWalk {
            seg,
            file: Arc::new(seg.reader.try_clone()?),
            pos: 0,
            window: Vec::new(),
            window_start: 0,
            window_bytes,
        })
    }

    /// `len` bytes at `pos` (within the segment), reading the window from
    /// `pos` (at least `window_bytes`) when they are not all in it.
    async fn bytes(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let have_end = self.window_start + self.window.len() as u64;
        if pos < self.window_start || pos + len as u64 > have_end {
            let want = (len.max(self.window_bytes) as u64).min(self.seg.size - pos) as usize;
            // The buffer travels to the pool and back (reused); until it is
            // back the window is empty, so a failed read leaves nothing stale.
            let mut window = std::mem::take(&mut self.window);
            let file = self.file.clone();
            self.window = glommio::executor()
                .spawn_blocking(move || {
                    window.resize(want, 0);
                    file.read_exact_at(&mut window, pos).map(|()| window)
                })
                .await?;
            self.window_start = pos;
        }
        let from = (pos - self.window_start) as usize;
        Ok(&self.window[from..from + len])
    }

    /// The next batch (its header and bytes), checked (length, CRC).
    async fn next_batch(&mut self) -> Result<Option<(BatchHeader, Vec<u8>)>, StorageError> {
        if self.pos >= self.seg.size {
            return Ok(None);
        }
        let pos = self.pos;
        let path = &self.seg.path;
        let avail = (self.seg.size - pos).min(usize::MAX as u64) as usize;
        if avail < BatchHeader::SIZE {
            return Err(corrupt(path, format!("{avail} trailing bytes at {pos}")));
        }
        let h = BatchHeader::parse(self.bytes(pos, BatchHeader::SIZE).await?)
            .map_err(|e| corrupt(path, format!("at {pos}: {e}")))?;
        let total = checked_total_size(&h, avail).map_err(|e| corrupt(path, format!("at {pos}: {e}")))?;
        let bytes = self.bytes(pos, total).await?.to_vec();
        h.check_crc(&bytes)
            .map_err(|e| corrupt(path, format!("at {pos}: {e}")))?;
        self.pos += total as u64;
        Ok(Some((h, bytes)))
    }
}

/// A write of a full buffer on the blocking pool: gives back the file and
/// the buffer (emptied, for reuse).
type BufferWrite = glommio::Task<io::Result<(File, Vec<u8>)>>;

/// A cleaned segment's temp file being written: batches gather in an owned
/// buffer, and each full buffer is written (pwrite) on the blocking pool
/// while the next one fills, so page-cache writes that stall under
/// writeback never stall the shard. One write in flight at a time.
struct CleanedWriter {
    path: PathBuf,
    /// The file, unless the write in flight has it.
    file: Option<File>,
    in_flight: Option<BufferWrite>,
    buf: Vec<u8>,
    /// An emptied buffer back from the last write.
    spare: Vec<u8>,
    /// Bytes handed to writes so far: the file offset of `buf`.
    flushed: u64,
    buffer_bytes: usize,
}

impl CleanedWriter {
    /// Creates (or truncates) `path` on the blocking pool. Opened for reads
    /// too: once fsync'ed, the same fd serves the new segment's reads.
    async fn create(path: PathBuf, buffer_bytes: usize) -> io::Result<Self> {
        let open_path = path.clone();
        let file = glommio::executor()
            .spawn_blocking(move || {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(open_path)
            })
            .await?;
        Ok(CleanedWriter {
            path,
            file: Some(file),
            in_flight: None,
            buf: Vec::with_capacity(buffer_bytes),
            spare: Vec::new(),
            flushed: 0,
            buffer_bytes,
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.buffer_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Waits for the write in flight (if any), then starts writing `buf`.
    async fn flush(&mut self) -> io::Result<()> {
        self.settle().await?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = std::mem::take(&mut self.spare);
        let mut buf = std::mem::replace(&mut self.buf, next);
        let at = self.flushed;
        self.flushed += buf.len() as u64;
        let file = self.file.take().expect("the file is here while no write is in flight");
        // Spawned, not just awaited later: the pool starts on it now.
        self.in_flight = Some(glommio::spawn_local(async move {
            glommio::executor()
                .spawn_blocking(move || {
                    file.write_all_at(&buf, at)?;
                    buf.clear();
                    Ok((file, buf))
                })
                .await
        }));
        Ok(())
    }

    /// Waits for the write in flight, taking back the file and a buffer.
    async fn settle(&mut self) -> io::Result<()> {
        if let Some(write) = self.in_flight.take() {
            let (file, buf) = write.await?;
            self.file = Some(file);
            self.spare = buf;
        }
        Ok(())
    }

    /// Writes the rest and fsyncs the file on the blocking pool. Returns it
    /// (durable, open for reads).
    async fn finish(mut self) -> io::Result<File> {
        self.flush().await?;
        self.settle().await?;
        let file = self.file.take().expect("the file is back once no write is in flight");
        glommio::executor().spawn_blocking(move || file.sync_all().map(|()| file)).await
    }

    /// Gives the file up: waits for the write in flight, then closes and
    /// unlinks it on the blocking pool.
    async fn discard(mut self) {
        let _ = self.settle().await;
        let (file, path) = (self.file.take(), self.path.clone());
        let _ = glommio::executor()
            .spawn_blocking(move || {
                drop(file);
                std::fs::remove_file(path)
            })
            .await;
    }
}

/// Unlinks a temp file on the blocking pool (best effort: the next open
/// deletes a leftover `.cleaned` file).
async fn remove_temp(path: PathBuf) {
    let _ = glommio::executor().spawn_blocking(move || std::fs::remove_file(path)).await;
}

/// A cleaned segment written and fsync'ed under its temporary name.
struct Cleaned {
    tmp: PathBuf,
    /// Its fd (the inode keeps it through the swap's renames): the new
    /// segment's read handle, so the swap opens nothing.
    file: File,
    size: u64,
    idx: SegIndexes,
    removed: u64,
}

impl Log {
    /// One compaction pass (see the module doc). `key_entries_max` bounds
    /// the key map. A log whose `cleanup.policy` lacks `compact` is left
    /// alone.
    pub async fn compact(&self, now_ms: i64, key_entries_max: usize) -> Result<CompactionStats, StorageError> {
        self.compact_aborting(now_ms, key_entries_max, &NO_ABORTED_TXNS).await
    }

    /// `compact`, also removing the data batches of `aborted` transactions
    /// (the partition's aborted-transaction index, `partition::txn`) and
    /// letting the keys of committed ones (below its last stable offset)
    /// supersede older records.
    pub async fn compact_aborting(
        &self,
        now_ms: i64,
        key_entries_max: usize,
        aborted: &AbortedTxns,
    ) -> Result<CompactionStats, StorageError> {
        let config = self.config();
        if !config.compact_enabled {
            return Ok(CompactionStats::default());
        }
        let (segs, _running) = {
            let mut st = self.state.borrow_mut();
            if st.closed {
                return Err(StorageError::Closed);
            }
            st.cleaner_passes += 1;
            (cleanable_segments(&st, now_ms, config.min_compaction_lag_ms), RunningPass(self))
        };
        let Some(first) = segs.first() else {
            return Ok(CompactionStats::default());
        };
        let dir = self.dir.clone();
        let first_dirty = glommio::executor()
            .spawn_blocking(move || read_first_dirty(&dir))
            .await
            .map_err(|e| corrupt(&self.dir.join(crate::storage::compaction::CLEANER_CHECKPOINT), e))?
            .unwrap_or(first.base)
            .max(first.base);
        let clean_bytes: u64 = segs.iter().filter(|s| s.next <= first_dirty).map(|s| s.size).sum();
        let dirty_bytes: u64 = segs.iter().filter(|s| s.next > first_dirty).map(|s| s.size).sum();
        if dirty_bytes == 0 {
            return Ok(CompactionStats::default());
        }
        // Kafka cleans a log whose ratio is above (not at) the minimum: 1.0 means never by ratio.
        if dirty_ratio(clean_bytes, dirty_bytes) <= config.min_cleanable_dirty_ratio
            && !dirty_overdue(&segs, first_dirty, now_ms, config.max_compaction_lag_ms).await?
        {
            return Ok(CompactionStats::default());
        }
        let slice = Cell::new(Instant::now());
        let mut map = KeyMap::new(key_entries_max);
        let Some(last) = self.map_dirty(&segs, first_dirty, &mut map, aborted, &slice).await? else {
            tracing::warn!(dir = %self.dir.display(), entries = key_entries_max, "compaction skipped: the key map cannot hold one dirty segment's keys (raise log.cleaner.dedupe.buffer.size)");
            return Ok(CompactionStats::default());
        };
        let rules = CleanRules {
            now_ms,
            delete_retention_ms: config.delete_retention_ms,
            aborted,
        };
        let mut stats = CompactionStats::default();
        for range in group_by_size(&segs[..=last], config.segment_bytes) {
            let group = &segs[range];
            let Some(cleaned) = self.clean_group(group, &map, rules, &slice).await? else {
                continue;
            };
            let (size, removed) = (cleaned.size, cleaned.removed);
            if self.swap_in(group, cleaned).await? {
                stats.segments_cleaned += group.len();
                stats.segments_merged += group.len() - 1;
                stats.records_removed += removed;
                stats.bytes_before += group.iter().map(|s| s.size).sum::<u64>();
                stats.bytes_after += size;
            }
        }
        let end = segs[last].next;
        if self.state.borrow().closed {
            return Err(StorageError::Closed);
        }
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || write_first_dirty(&dir, end))
            .await?;
        stats.first_dirty_offset = Some(end);
        Ok(stats)
    }

    /// Maps the keys of the dirty segments (those ending above
    /// `first_dirty`). Returns the index in `segs` of the last segment whose
    /// keys all fit, None if not even the first did.
    async fn map_dirty(
        &self,
        segs: &[SegRef],
        first_dirty: i64,
        map: &mut KeyMap,
        txns: &AbortedTxns,
        slice: &Cell<Instant>,
    ) -> Result<Option<usize>, StorageError> {
        let mut last = None;
        for (i, seg) in segs.iter().enumerate() {
            if seg.next <= first_dirty {
                continue;
            }
            let mut walk = BatchWalk::new(seg)?;
            while let Some((h, bytes)) = walk.next_batch().await? {
                if !map_batch(&h, &bytes, map, txns) {
                    return Ok(last);
                }
                self.yield_or_stop(slice).await?;
            }
            last = Some(i);
        }
        Ok(last)
    }

    /// Yields the task queue once the current work slice is used up (the
    /// cleaner runs in its own low-share queue, see `server.rs`), then
    /// checks that the log is still open.
    async fn yield_or_stop(&self, slice: &Cell<Instant>) -> Result<(), StorageError> {
        if slice.get().elapsed() >= WORK_SLICE {
            glommio::executor().yield_task_queue_now().await;
            slice.set(Instant::now());
        } else {
            glommio::executor().yield_if_needed().await;
        }
        if self.state.borrow().closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// Writes the cleaned form of a group of adjacent segments to
    /// `<first base>.cleaned` and fsyncs it. None when nothing would change
    /// (one segment, nothing removed; the temp file is then removed).
    async fn clean_group(
        &self,
        group: &[SegRef],
        map: &KeyMap,
        rules: CleanRules<'_>,
        slice: &Cell<Instant>,
    ) -> Result<Option<Cleaned>, StorageError> {
        let tmp = group[0].path.with_extension(CLEANED_EXT);
        let mut out = CleanedWriter::create(tmp.clone(), WRITE_BUFFER_BYTES).await?;
        let (size, idx, removed) = match self.write_cleaned(group, map, rules, &mut out, slice).await {
            Ok((_, _, 0)) if group.len() == 1 => {
                out.discard().await;
                return Ok(None);
            }
            Ok(written) => written,
            Err(e) => {
                out.discard().await;
                return Err(e);
            }
        };
        match out.finish().await {
            Ok(file) => Ok(Some(Cleaned {
                tmp,
                file,
                size,
                idx,
                removed,
            })),
            Err(e) => {
                remove_temp(tmp).await;
                Err(e.into())
            }
        }
    }

    async fn write_cleaned(
        &self,
        group: &[SegRef],
        map: &KeyMap,
        rules: CleanRules<'_>,
        out: &mut CleanedWriter,
        slice: &Cell<Instant>,
    ) -> Result<(u64, SegIndexes, u64), StorageError> {
        let interval = self.config().index_interval_bytes;
        let base = group[0].base;
        let mut idx = SegIndexes::default();
        let mut pos = 0u64;
        let mut removed = 0u64;
        for seg in group {
            let mut walk = BatchWalk::new(seg)?;
            while let Some((h, bytes)) = walk.next_batch().await? {
                let kept = match clean_batch(&h, &bytes, map, rules) {
                    BatchFate::Keep => Some((h, bytes)),
                    BatchFate::Drop { records } => {
                        removed += records as u64;
                        None
                    }
                    BatchFate::Rewrite { bytes, removed: r } => {
                        removed += r as u64;
                        let nh = BatchHeader::parse(&bytes).map_err(|e| corrupt(&seg.path, e))?;
                        Some((nh, bytes))
                    }
                };
                if let Some((h, bytes)) = kept {
                    idx.on_batch(base, pos, &h, interval);
                    out.write(&bytes).await?;
                    pos += bytes.len() as u64;
                }
                self.yield_or_stop(slice).await?;
            }
        }
        Ok((pos, idx, removed))
    }

    /// Are the segments of `group` still in the log, adjacent, sealed and
    /// unchanged? The index of the first in `segments`.
    fn unchanged(&self, group: &[SegRef]) -> Option<usize> {
        let st = self.state.borrow();
        let si = st.segment_index(group[0].base)?;
        let same = !st.closed
            && st.segments.len() > si + group.len()
            && group.iter().zip(&st.segments[si..]).all(|(g, s)| {
                s.base_offset == g.base && s.sealed && s.size == g.size && s.next_offset == g.next
            });
        same.then_some(si)
    }

    /// Swaps a cleaned file in for the segments of `group` (one, or several
    /// merged into the first's name). With no await between the re-check
    /// and the in-memory swap (so retention and appends see the old
    /// segments or the new one, never a mix), on disk: (1) rename
    /// `<first>.cleaned` to `<first>.swap`: the commit point, from which an
    /// open finishes the swap (`recovery::finish_swaps`); (2) unlink the
    /// index files of the group and the files of every segment but the
    /// first; (3) rename `<first>.swap` over `<first>.log`; then fsync the
    /// directory on the blocking pool. A kill before (1) leaves the old
    /// segments (the `.cleaned` file is deleted at open); after it, the open
    /// completes (2) and (3). The new index files are written by the next
    /// open's rescan (cleaned segments are small). False (and the temp file
    /// removed) if the group changed meanwhile (retention).
    ///
    /// (1) to (3) are renames and unlinks on the shard thread, the pass's
    /// only file system calls there: moved to the pool, they would open a
    /// window in which memory and disk disagree, and a reader reopening a
    /// segment by name (file budget, first O_DIRECT open), retention or a
    /// truncation would see the wrong file.
    async fn swap_in(&self, group: &[SegRef], cleaned: Cleaned) -> Result<bool, StorageError> {
        let Some(si) = self.unchanged(group) else {
            remove_temp(cleaned.tmp).await;
            return if self.state.borrow().closed {
                Err(StorageError::Closed)
            } else {
                Ok(false)
            };
        };
        let first = &group[0];
        let swap = first.path.with_extension(SWAP_EXT);
        if let Err(e) = std::fs::rename(&cleaned.tmp, &swap) {
            remove_temp(cleaned.tmp).await;
            return Err(e.into());
        }
        // Committed: an error from here on leaves the old segments serving
        // (their files stay readable through the open handles) and the next
        // open finishes the swap.
        finish_swap_files(group.iter().map(|s| s.path.as_path()), &swap, &first.path)?;
        {
            let mut st = self.state.borrow_mut();
            let last_base = group[group.len() - 1].base;
            let mut merged = st.segments.drain(si..si + group.len()).next().expect("group is non-empty");
            merged.size = cleaned.size;
            merged.written_size = cleaned.size;
            merged.next_offset = group[group.len() - 1].next;
            merged.idx = cleaned.idx;
            merged.idx.finish_time_index(first.base);
            merged.reader = super::super::open_files::SegmentFile::new(merged.log_path.clone(), true);
            merged.reader.adopt(cleaned.file);
            st.segments.insert(si, merged);
            // Cached batches of the old segments must not be served any more.
            while st
                .cache
                .front()
                .is_some_and(|e| e.segment_base <= last_base && e.end_offset <= st.written_end)
            {
                if let Some(e) = st.cache.pop_front() {
                    st.cache_bytes.sub(e.bytes.len());
                }
            }
            st.max_ts = super::max_ts_of(&st.segments);
            st.check_invariants();
        }
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || File::open(&dir)?.sync_all())
            .await?;
        Ok(true)
    }
}

/// Steps (2) and (3) of a swap (see `Log::swap_in`): unlinks the index
/// files of every segment in `group` and the log files of all but the
/// first, then renames `swap` over `first`. Also used by recovery to finish
/// a swap a crash interrupted.
pub(crate) fn finish_swap_files<'a>(
    group: impl Iterator<Item = &'a Path>,
    swap: &Path,
    first: &Path,
) -> io::Result<()> {
    for path in group {
        remove_index_files(path)?;
        if path != first {
            remove_if_exists(path)?;
        }
    }
    std::fs::rename(swap, first)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Groups adjacent segments (Kafka's `groupSegmentsBySize`): each group's
/// total size fits `segment_bytes` (the cleaned output is never bigger
/// than its input) and its offsets fit the index's relative offsets.
fn group_by_size(segs: &[SegRef], segment_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < segs.len() {
        let (mut j, mut size) = (i + 1, segs[i].size);
        while j < segs.len()
            && size + segs[j].size <= segment_bytes
            && segs[j].next - 1 - segs[i].base <= i64::from(i32::MAX)
        {
            size += segs[j].size;
            j += 1;
        }
        out.push(i..j);
        i = j;
    }
    out
}

fn remove_index_files(log_path: &Path) -> io::Result<()> {
    for ext in ["index", "timeindex"] {
        remove_if_exists(&log_path.with_extension(ext))?;
    }
    Ok(())
}

/// `max.compaction.lag.ms` (Kafka's KIP-354): is the first dirty batch's
/// timestamp older than the lag? Such a log is cleaned below
/// `min.cleanable.dirty.ratio`. Reads one window (on the blocking pool).
async fn dirty_overdue(segs: &[SegRef], first_dirty: i64, now_ms: i64, max_lag_ms: i64) -> Result<bool, StorageError> {
    if max_lag_ms == i64::MAX {
        return Ok(false);
    }
    for seg in segs.iter().filter(|s| s.next > first_dirty) {
        let mut walk = BatchWalk::new(seg)?;
        if let Some((h, _)) = walk.next_batch().await? {
            return Ok(now_ms.saturating_sub(h.max_timestamp) > max_lag_ms);
        }
    }
    Ok(false)
}

/// Counts a running pass in `State::cleaner_passes` until dropped (when
/// the pass returns or its future is dropped), then wakes `Log::close`.
struct RunningPass<'a>(&'a Log);

impl Drop for RunningPass<'_> {
    fn drop(&mut self) {
        self.0.state.borrow_mut().cleaner_passes -= 1;
        self.0.progress.notify_all();
    }
}

/// The sealed segments a pass may clean, oldest first (see the module doc).
fn cleanable_segments(st: &State, now_ms: i64, min_lag_ms: i64) -> Vec<SegRef> {
    let mut out = Vec::new();
    for pair in st.segments.windows(2) {
        let (s, next) = (&pair[0], &pair[1]);
        if !s.sealed || st.durable_end <= next.base_offset {
            break;
        }
        if s.idx
            .max_ts
            .is_some_and(|(ts, _)| now_ms.saturating_sub(ts) < min_lag_ms)
        {
            break;
        }
        let Ok(Some(reader)) = s.read_handle() else { break };
        out.push(SegRef {
            base: s.base_offset,
            next: s.next_offset,
            size: s.size,
            reader,
            path: s.log_path.clone(),
        });
    }
    out
}

#[cfg(test)]
#[path = "log_compaction_tests.rs"]
mod tests;
