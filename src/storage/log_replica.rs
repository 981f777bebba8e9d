//! What a replicated log needs beyond a leader's append: a follower's
//! append that keeps the leader's offsets, truncation of the tail (a
//! follower diverged from a new leader, or a deposed leader's unreplicated
//! records), a full reset to a new start (a follower fell below the leader's
//! log start), and the leader-epoch cache with its durable checkpoint.
//!
//! Same shard and same rules as `log.rs`. Truncation is not safe against a
//! concurrent append: the partition's single appender (the follower fetcher
//! of this replica) is the only caller, and a leader stops appending before
//! it becomes a follower.

use std::fs::File;
use std::io;
use std::path::Path;

use bytes::BytesMut;

use super::super::leader_epochs::{LeaderEpochCache, CHECKPOINT_FILE};
use super::super::segment::{read_exact, scan_segment_until, Segment};
use super::{check_headers_tile, corrupt, now_ms, remove_segment_files, AppendResult, Log, Offsets};
use crate::storage::{BatchHeader, StorageError};

/// The epoch cache at open: the checkpoint, plus epochs seen in the tail's
/// recovery scan (written, maybe not synced, before a crash), without
/// entries past the log end or before the log start. A log from before the
/// checkpoint existed gets one entry per segment from its first batch.
/// Returns the cache and whether it differs from the file.
pub(super) fn recover_epochs(
    dir: &Path,
    segments: &[Segment],
    tail_epochs: &[(i32, i64)],
    log_start: i64,
    log_end: i64,
) -> Result<(LeaderEpochCache, bool), StorageError> {
    let path = dir.join(CHECKPOINT_FILE);
    let (mut cache, mut dirty) = match std::fs::read_to_string(&path) {
        Ok(text) => (LeaderEpochCache::parse(&text).map_err(|e| corrupt(&path, e))?, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (LeaderEpochCache::default(), log_end > log_start),
        Err(e) => return Err(e.into()),
    };
    if cache.entries().is_empty() && log_end > log_start {
        for seg in segments.iter().filter(|s| s.next_offset > s.base_offset) {
            if let Ok(Some(reader)) = seg.read_handle() {
                if let Ok(h) = super::super::segment::read_header_at(&reader, &seg.log_path, 0) {
                    if h.partition_leader_epoch >= 0 {
                        cache.assign(h.partition_leader_epoch, h.base_offset);
                    }
                }
            }
        }
    }
    for &(epoch, start) in tail_epochs {
        dirty |= cache.assign(epoch, start);
    }
    dirty |= cache.truncate_from_end(log_end);
    if log_end > log_start {
        dirty |= cache.truncate_from_start(log_start);
    }
    Ok((cache, dirty))
}

/// Closes the segments' O_DIRECT handles, then (on the blocking pool)
/// unlinks their files newest first, so a crash midway leaves a log without
/// a hole, and runs `then` (the directory sync or start checkpoint that
/// makes it durable).
pub(super) async fn drop_segments(segments: Vec<Segment>, then: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
    let paths: Vec<_> = segments.iter().map(|s| s.log_path.clone()).collect();
    for seg in segments {
        if let Some(dma) = seg.dma {
            let _ = super::super::open_files::close_write(dma).await;
        }
    }
    glommio::executor()
        .spawn_blocking(move || {
            for p in paths.iter().rev() {
                remove_segment_files(p);
            }
            then()
        })
        .await
}

impl Log {
    /// A follower's append: batches fetched from the leader, with the
    /// leader's offsets and epochs, stored byte for byte. They must start at
    /// or after the log end and only grow.
    pub async fn append_replica(&self, batches: BytesMut, headers: &[BatchHeader]) -> Result<AppendResult, StorageError> {
        check_headers_tile(&batches, headers)?;
        self.wait_for_room(batches.len()).await?;
        let result = self.append_now(batches, headers, Offsets::Keep)?;
        self.kick();
        Ok(result)
    }

    /// The latest leader epoch that wrote to (or led) this log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.state.borrow().epochs.latest().map(|e| e.epoch)
    }

    /// OffsetForLeaderEpoch's answer: (the largest epoch <= `epoch`, the
    /// offset where it ended), Kafka's `endOffsetFor`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let st = self.state.borrow();
        st.epochs.end_offset_for(epoch, st.log_end)
    }

    /// The leader epoch of the batch containing `offset`'s predecessor,
    /// i.e. the epoch of the last batch below `offset` (a follower's
    /// `LastFetchedEpoch`). None for an empty log or unknown epochs.
    pub fn epoch_before(&self, offset: i64) -> Option<i32> {
        let st = self.state.borrow();
        st.epochs.entries().iter().rev().find(|e| e.start_offset < offset).map(|e| e.epoch)
    }

    /// A new leader records where its epoch starts (its log end), as Kafka's
    /// makeLeader does, and makes the checkpoint durable before it serves.
    pub async fn start_leader_epoch(&self, epoch: i32) -> Result<(), StorageError> {
        {
            let mut st = self.state.borrow_mut();
            if st.closed {
                return Err(StorageError::Closed);
            }
            let end = st.log_end;
            if st.epochs.assign(epoch, end) {
                st.epochs_dirty = true;
            }
        }
        self.write_epochs_if_dirty().await?;
        Ok(())
    }

    /// Writes the leader-epoch checkpoint if the cache changed since the
    /// last write, on glommio's blocking pool.
    pub(super) async fn write_epochs_if_dirty(&self) -> io::Result<()> {
        self.write_epochs_if_dirty_with(true).await
    }

    /// As `write_epochs_if_dirty`; with `durable` false the caller syncs
    /// the file system afterwards (clean shutdown).
    pub(super) async fn write_epochs_if_dirty_with(&self, durable: bool) -> io::Result<()> {
        let text = {
            let mut st = self.state.borrow_mut();
            if !st.epochs_dirty {
                return Ok(());
            }
            st.epochs_dirty = false;
            st.epochs.encode()
        };
        let path = self.dir.join(CHECKPOINT_FILE);
        let written = glommio::executor()
            .spawn_blocking(move || super::super::index::write_file(&path, text.as_bytes(), durable))
            .await;
        if written.is_err() {
            self.state.borrow_mut().epochs_dirty = true;
        }
        written
    }

    /// Removes every batch whose last offset is at or past `offset` (a whole
    /// batch goes if `offset` falls inside it). Returns the new log end
    /// (<= `offset`, at a batch boundary). Below the first segment, the log
    /// is emptied and restarted at `offset` (see `truncate_fully`).
    ///
    /// Crash order: later segments are unlinked (and the directory synced)
    /// before the cut segment shrinks, so a crash never leaves removed
    /// records behind a hole; the epoch checkpoint follows, and recovery
    /// drops epochs past the end anyway.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, StorageError> {
        let end = self.log_end_offset();
        if offset >= end {
            return Ok(end);
        }
        self.settle().await?;
        let (si, base, path, size) = {
            let st = self.state.borrow();
            match st.segment_for(offset) {
                Some(si) if offset >= st.log_start => {
                    let seg = &st.segments[si];
                    (si, seg.base_offset, seg.log_path.clone(), seg.size)
                }
                _ => {
                    drop(st);
                    self.truncate_fully(offset).await?;
                    return Ok(self.log_end_offset());
                }
            }
        };
        // Where the cut falls and the indexes of what stays (blocking reads).
        let interval = self.config.get().index_interval_bytes;
        let scan_path = path.clone();
        let scanned = glommio::executor()
            .spawn_blocking(move || {
                let file = File::open(&scan_path)?;
                scan_segment_until(&file, size, base, interval, true, offset)
            })
            .await?;
        let later: Vec<Segment> = {
            let mut st = self.state.borrow_mut();
            st.segments.drain(si + 1..).collect()
        };
        if !later.is_empty() {
            let dir = self.dir.clone();
            drop_segments(later, move || File::open(&dir)?.sync_all()).await?;
        }
        self.cut_segment(si, scanned.valid_size, scanned.next_offset, scanned.idx).await?;
        self.write_epochs_if_dirty().await?;
        Ok(self.log_end_offset())
    }

    /// Waits until everything appended is durable and the writer is idle,
    /// then drops the tail cache: a truncation works on files only.
    async fn settle(&self) -> Result<(), StorageError> {
        let end = self.log_end_offset();
        self.wait_durable(end).await?;
        loop {
            let notified = self.progress.notified();
            if !self.state.borrow().writer_running {
                break;
            }
            notified.await;
        }
        let mut st = self.state.borrow_mut();
        if st.closed {
            return Err(StorageError::Closed);
        }
        assert_eq!(st.pending_bytes, 0, "truncation raced an append");
        st.cache.clear();
        st.cache_bytes.clear();
        Ok(())
    }

    /// Shrinks segment `si` (now the last) to `keep_bytes`, reopening it for
    /// appends if it was sealed, and moves every watermark to `new_end`.
    async fn cut_segment(&self, si: usize, keep_bytes: u64, new_end: i64, idx: super::super::segment::SegIndexes) -> Result<(), StorageError> {
        let (path, dma, was_sealed) = {
            let st = self.state.borrow();
            let seg = &st.segments[si];
            (seg.log_path.clone(), seg.dma.clone(), seg.sealed)
        };
        let dma = match dma {
            Some(d) => d,
            None => super::super::open_files::open_write(&path, false).await?,
        };
        dma.truncate(keep_bytes).await?;
        dma.fdatasync().await?;
        let align = dma.alignment();
        let aligned = keep_bytes - keep_bytes % align;
        let tail_path = path.clone();
        let tail_block = glommio::executor()
            .spawn_blocking(move || {
                if was_sealed {
                    // Its index files describe bytes that are gone; the tail has none.
                    let _ = std::fs::remove_file(tail_path.with_extension("index"));
                    let _ = std::fs::remove_file(tail_path.with_extension("timeindex"));
                }
                read_exact(&File::open(&tail_path)?, aligned, (keep_bytes - aligned) as usize)
            })
            .await?;
        let mut st = self.state.borrow_mut();
        let seg = &mut st.segments[si];
        seg.reader.invalidate_read_ahead();
        seg.size = keep_bytes;
        seg.written_size = keep_bytes;
        seg.next_offset = new_end;
        seg.idx = idx;
        seg.tail_block = tail_block;
        seg.sealed = false;
        seg.dma = Some(dma);
        st.truncated_to(new_end);
        assert!(st.log_start <= st.log_end, "log start stays at or below the end after truncation");
        Ok(())
    }

    /// Empties the log and restarts it at `start` (Kafka's
    /// truncateFullyAndStartAt): a follower whose log end fell below the
    /// leader's log start, or a truncation below the first segment.
    pub async fn truncate_fully(&self, start: i64) -> Result<(), StorageError> {
        assert!(start >= 0, "a log starts at a non-negative offset");
        self.settle().await?;
        // Memory first (readers see an empty log at `start` at once), then files.
        let old: Vec<Segment> = {
            let mut st = self.state.borrow_mut();
            let old = std::mem::replace(&mut st.segments, vec![Segment::new_empty(&self.dir, start, now_ms())]);
            st.log_start = start;
            st.epochs = LeaderEpochCache::default();
            st.epochs_dirty = true;
            st.truncated_to(start);
            old
        };
        let dir = self.dir.clone();
        drop_segments(old, move || super::super::retention::write_log_start(&dir, start)).await?;
        self.write_epochs_if_dirty().await?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "log_replica_tests.rs"]
mod tests;
