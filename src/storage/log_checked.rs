//! Two pieces of `Log` for callers that must decide about an append
//! atomically with the offset assignment (idempotent producers): a split
//! append (`reserve` may wait; `append_in_place` never does), and a scan of
//! every written batch header (to rebuild producer state at open).
//!
//! Same shard and rules as `log.rs`: `!Send`, the state `RefCell` is never
//! borrowed across an `.await`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::BytesMut;

use super::{check_headers_tile, AppendResult, Log};
use crate::storage::batch::BatchHeader;
use crate::storage::StorageError;

/// Bytes read per pread while scanning headers (one batch larger than this is
/// skipped over by position, its header read on its own).
pub const HEADER_SCAN_CHUNK_BYTES: usize = 1 << 20;

impl Log {
    /// Waits until an append of `len` bytes fits the pending-write bound.
    /// An `append_in_place` that follows with no `.await` in between does
    /// not exceed it by more than that append.
    pub async fn reserve(&self, len: usize) -> Result<(), StorageError> {
        self.wait_for_room(len).await
    }

    /// `append` without the wait: assigns offsets and queues the write now.
    /// Callers `reserve` first; checks made just before this call (with no
    /// `.await` between) still hold when the offsets are assigned.
    pub fn append_in_place(
        &self,
        batches: BytesMut,
        headers: &[BatchHeader],
        leader_epoch: i32,
    ) -> Result<AppendResult, StorageError> {
        check_headers_tile(&batches, headers)?;
        let result = self.append_now(batches, headers, super::Offsets::Assign { leader_epoch })?;
        self.kick();
        Ok(result)
    }

    /// Calls `visit` with the header of every batch written to the segment
    /// files that ends at or after `from`, oldest first (blocking preads;
    /// meant for open, when everything recovered is written and nothing is
    /// pending). Starts at the offset index entry below `from`.
    pub fn scan_written_headers(
        &self,
        from: i64,
        mut visit: impl FnMut(&BatchHeader),
    ) -> Result<(), StorageError> {
        let st = self.state.borrow();
        for seg in &st.segments {
            if seg.next_offset <= from {
                continue;
            }
            let Some(file) = seg.read_handle()? else {
                continue;
            };
            let start = if from > seg.base_offset {
                seg.position_floor(from)
            } else {
                0
            };
            scan_file(
                &file,
                &seg.log_path,
                start,
                seg.written_size,
                &mut |h: &BatchHeader| {
                    if h.last_offset() >= from {
                        visit(h)
                    }
                },
            )?;
        }
        Ok(())
    }

    /// Base offset of the segment appends go to (changes when the log rolls).
    pub fn active_segment_base(&self) -> i64 {
        self.state
            .borrow()
            .segments
            .last()
            .map_or(0, |s| s.base_offset)
    }
}

/// Walks the batch headers of `[start, limit)` of one segment file.
fn scan_file(
    file: &File,
    path: &Path,
    start: u64,
    limit: u64,
    visit: &mut impl FnMut(&BatchHeader),
) -> Result<(), StorageError> {
    let mut buf = vec![0u8; HEADER_SCAN_CHUNK_BYTES];
    // `buf[..filled]` holds the file from `buf_pos`.
    let mut buf_pos = 0u64;
    let mut filled = 0usize;
    let mut pos = start;
    while pos < limit {
        let header_end = pos + BatchHeader::SIZE as u64;
        if header_end > limit {
            return Err(corrupt(path, pos, "a header runs past the written end"));
        }
        if pos < buf_pos || header_end > buf_pos + filled as u64 {
            let want = (limit - pos).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..want], pos)?;
            buf_pos = pos;
            filled = want;
        }
        let at = (pos - buf_pos) as usize;
        let h = BatchHeader::parse(&buf[at..at + BatchHeader::SIZE])
            .map_err(|e| corrupt(path, pos, &e.to_string()))?;
        if h.batch_length < (BatchHeader::SIZE - super::LOG_OVERHEAD) as i32 {
            return Err(corrupt(path, pos, "batch length below a header"));
        }
        visit(&h);
        pos += h.total_size() as u64;
    }
    Ok(())
}

fn corrupt(path: &Path, pos: u64, why: &str) -> StorageError {
    StorageError::Corrupt {
        file: path.to_path_buf(),
        reason: format!("batch header at position {pos}: {why}"),
    }
}
