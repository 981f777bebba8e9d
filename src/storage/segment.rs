//! One segment of a partition log: `<base_offset:020>.log` plus its indexes.
//!
//! Owns: per-segment bookkeeping (logical size vs. written size, the next
//! offset, the in-memory indexes, the last partial 512-byte block for O_DIRECT
//! rewrites), the two file handles (an O_DIRECT `DmaFile` for writing while
//! the segment is active, a buffered `std::fs::File` for header reads and
//! sendfile; both opened on demand within the shard's budget, see
//! `open_files.rs`), and the batch-by-batch scan used by recovery.
//!
//! Lives on the shard that owns the partition; `!Send` (holds `Rc`s). Header
//! reads use blocking `pread` on the buffered fd: they touch a few hundred
//! bytes and normally hit the page cache. The scan at open is blocking too.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::open_files::{ReadHandle, SegmentFile, WriteHandle};

use super::batch::{checked_total_size, BatchHeader};
use super::index::{OffsetIndex, TimeIndex};
use super::StorageError;

/// `<dir>/<base_offset as 20 digits>.<ext>`
pub fn segment_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Parses `00000000000000000042.log` into 42.
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What the indexes of a segment looked like before an append; restoring it
/// undoes that append's index entries (used when a write fails).
#[derive(Debug, Clone, Copy)]
pub struct IndexMark {
    pub size: u64,
    pub next_offset: i64,
    index_len: usize,
    time_index_len: usize,
    bytes_since_index: u64,
    max_ts: Option<(i64, i64)>,
}

/// In-memory indexes of a segment, maintained batch by batch.
#[derive(Debug, Default)]
pub struct SegIndexes {
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Bytes appended since the last offset-index entry.
    pub bytes_since_index: u64,
    /// (largest timestamp in the segment, an offset in the batch that has it).
    pub max_ts: Option<(i64, i64)>,
}

impl SegIndexes {
    /// Records a batch at `pos` (relative to segment `base`). An offset-index
    /// entry is added once `interval` bytes have passed since the previous one;
    /// the time index gets the running maximum at the same points.
    pub fn on_batch(&mut self, base: i64, pos: u64, h: &BatchHeader, interval: u32) {
        let rel = rel_offset(base, h.base_offset);
        let len = h.total_size() as u64;
        if pos > 0 && self.bytes_since_index >= u64::from(interval) {
            self.index.push(rel, pos as u32);
            self.bytes_since_index = 0;
            if let Some((ts, off)) = self.max_ts {
                self.time_index.maybe_push(ts, rel_offset(base, off));
            }
        }
        self.bytes_since_index += len;
        if self.max_ts.is_none_or(|(ts, _)| h.max_timestamp > ts) {
            self.max_ts = Some((h.max_timestamp, h.last_offset()));
        }
    }

    /// Makes the time index end with the segment's maximum (done at seal/close).
    pub fn finish_time_index(&mut self, base: i64) {
        if let Some((ts, off)) = self.max_ts {
            self.time_index.maybe_push(ts, rel_offset(base, off));
        }
    }
}

pub fn rel_offset(base: i64, offset: i64) -> u32 {
    let rel = offset - base;
    assert!(
        (0..=i64::from(u32::MAX)).contains(&rel),
        "relative offset out of range"
    );
    rel as u32
}

/// A segment of the log.
pub struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    /// Logical end: bytes appended, written or not.
    pub size: u64,
    /// Bytes handed to the kernel by completed O_DIRECT writes.
    pub written_size: u64,
    /// One past the last offset appended to this segment.
    pub next_offset: i64,
    pub idx: SegIndexes,
    /// Wall-clock ms when the segment was created (for `segment_ms` rolls).
    pub created_ms: i64,
    /// O_DIRECT handle; Some only while the segment is written to, and
    /// then only while the shard's file budget leaves it open (the writer
    /// opens it again when it is None and `reader.exists()`).
    pub dma: Option<WriteHandle>,
    /// The buffered read side: knows whether the file exists, opens it on
    /// first use (`read_handle`), may be closed by the shard's file budget.
    pub reader: Rc<SegmentFile>,
    /// Bytes `[align_down(written_size), written_size)`: rewritten, zero
    /// padded, in front of the next write.
    pub tail_block: Vec<u8>,
    /// Fully written, fdatasync'ed, truncated to its logical size, indexes on disk.
    pub sealed: bool,
    /// (leader epoch, first offset) of every epoch change seen by the
    /// recovery scan of a tail segment; taken by `Log::open` (the leader-epoch
    /// checkpoint may lag data that was written but not yet synced).
    pub epoch_starts: Vec<(i32, i64)>,
}

impl Segment {
    /// A new, empty segment whose file does not exist yet (the writer creates it).
    pub fn new_empty(dir: &Path, base_offset: i64, now_ms: i64) -> Segment {
        Segment {
            base_offset,
            log_path: segment_path(dir, base_offset, "log"),
            size: 0,
            written_size: 0,
            next_offset: base_offset,
            idx: SegIndexes::default(),
            created_ms: now_ms,
            dma: None,
            reader: SegmentFile::new(segment_path(dir, base_offset, "log"), false),
            tail_block: Vec::new(),
            sealed: false,
            epoch_starts: Vec::new(),
        }
    }

    /// The buffered read handle (opened if the budget closed it); None
    /// while the file does not exist yet.
    pub fn read_handle(&self) -> io::Result<Option<ReadHandle>> {
        self.reader.get()
    }

    pub fn index_path(&self, ext: &str) -> PathBuf {
        self.log_path.with_extension(ext)
    }

    pub fn mark(&self) -> IndexMark {
        IndexMark {
            size: self.size,
            next_offset: self.next_offset,
            index_len: self.idx.index.len(),
            time_index_len: self.idx.time_index.len(),
            bytes_since_index: self.idx.bytes_since_index,
            max_ts: self.idx.max_ts,
        }
    }

    pub fn restore(&mut self, m: &IndexMark) {
        assert!(m.size >= self.written_size, "cannot undo written bytes");
        self.size = m.size;
        self.next_offset = m.next_offset;
        self.idx.index.truncate(m.index_len);
        self.idx.time_index.truncate(m.time_index_len);
        self.idx.bytes_since_index = m.bytes_since_index;
        self.idx.max_ts = m.max_ts;
    }

    /// A file position at or before the batch containing `offset`.
    pub fn position_floor(&self, offset: i64) -> u64 {
        let rel = rel_offset(self.base_offset, offset.max(self.base_offset));
        self.idx.index.floor(rel).map_or(0, |(_, p)| u64::from(p))
    }

    /// Writes both index files (called at seal and close; blocking).
    pub fn write_index_files(&mut self) -> io::Result<()> {
        for (path, bytes) in self.index_files() {
            super::index::write_file_durably(&path, &bytes)?;
        }
        Ok(())
    }

    /// The index files' paths and contents, for writing off the shard thread
    /// (`write_file_durably` each).
    pub fn index_files(&mut self) -> [(PathBuf, Vec<u8>); 2] {
        self.idx.finish_time_index(self.base_offset);
        [
            (self.index_path("index"), self.idx.index.encode()),
            (self.index_path("timeindex"), self.idx.time_index.encode()),
        ]
    }
}

/// Reads and parses the batch header at `pos` (blocking pread).
pub fn read_header_at(file: &File, path: &Path, pos: u64) -> Result<BatchHeader, StorageError> {
    let mut buf = [0u8; BatchHeader::SIZE];
    file.read_exact_at(&mut buf, pos)
        .map_err(StorageError::Io)?;
    BatchHeader::parse(&buf).map_err(|e| StorageError::Corrupt {
        file: path.to_path_buf(),
        reason: format!("batch header at position {pos}: {e}"),
    })
}

/// Reads `len` bytes at `pos` (blocking pread).
pub fn read_exact(file: &File, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)?;
    Ok(buf)
}

/// Result of scanning a segment file batch by batch.
pub struct ScanOutcome {
    /// End of the last valid batch.
    pub valid_size: u64,
    /// One past the last valid batch's last offset (the base if none).
    pub next_offset: i64,
    pub idx: SegIndexes,
    /// Why the scan stopped before the end of the file, if it did.
    pub stop_reason: Option<String>,
    /// True if every byte from `valid_size` to the end of the file is zero
    /// (the padding of the last O_DIRECT write).
    pub rest_is_zero: bool,
    /// (leader epoch, base offset) of each batch whose epoch is higher than
    /// every earlier batch's.
    pub epoch_starts: Vec<(i32, i64)>,
}

/// A read window over a file, so small batches don't cost a syscall each.
struct Window {
    buf: Vec<u8>,
    start: u64,
}

const SCAN_WINDOW_BYTES: usize = 1 << 20;

impl Window {
    fn get(&mut self, file: &File, file_len: u64, pos: u64, len: usize) -> io::Result<&[u8]> {
        let end = pos + len as u64;
        let have_end = self.start + self.buf.len() as u64;
        if pos < self.start || end > have_end {
            let want = (len.max(SCAN_WINDOW_BYTES) as u64).min(file_len - pos) as usize;
            self.buf.resize(want, 0);
            file.read_exact_at(&mut self.buf, pos)?;
            self.start = pos;
        }
        let from = (pos - self.start) as usize;
        Ok(&self.buf[from..from + len])
    }
}

/// Scans `file` (of `file_len` bytes, segment base `base_offset`) from the
/// start: each batch must have magic 2, a sane length that fits, a correct
/// CRC32C, and offsets continuing exactly from the previous batch (or, with
/// `allow_gaps`, for a sealed segment compaction may have cleaned, offsets
/// that only increase). Stops at the first batch that fails. Blocking
/// reads; used at open only.
pub fn scan_segment(
    file: &File,
    file_len: u64,
    base_offset: i64,
    index_interval_bytes: u32,
    allow_gaps: bool,
) -> io::Result<ScanOutcome> {
    scan_segment_until(file, file_len, base_offset, index_interval_bytes, allow_gaps, i64::MAX)
}

/// `scan_segment` that also stops (without a `stop_reason`) before the first
/// batch whose last offset is at or past `end_offset`: `valid_size` is then
/// where a truncation to `end_offset` cuts the file, and `idx` the indexes
/// of what stays.
pub fn scan_segment_until(
    file: &File,
    file_len: u64,
    base_offset: i64,
    index_interval_bytes: u32,
    allow_gaps: bool,
    end_offset: i64,
) -> io::Result<ScanOutcome> {
    let mut win = Window {
        buf: Vec::new(),
        start: 0,
    };
    let mut idx = SegIndexes::default();
    let mut pos = 0u64;
    let mut next_offset = base_offset;
    let mut stop_reason = None;
    let mut epoch_starts: Vec<(i32, i64)> = Vec::new();
    while pos < file_len {
        let avail = file_len - pos;
        if avail < BatchHeader::SIZE as u64 {
            stop_reason = Some(format!(
                "{avail} trailing bytes at {pos}, less than a header"
            ));
            break;
        }
        let h = match BatchHeader::parse(win.get(file, file_len, pos, BatchHeader::SIZE)?) {
            Ok(h) => h,
            Err(e) => {
                stop_reason = Some(format!("at {pos}: {e}"));
                break;
            }
        };
        let total = match checked_total_size(&h, avail.min(usize::MAX as u64) as usize) {
            Ok(t) => t,
            Err(e) => {
                stop_reason = Some(format!("at {pos}: {e}"));
                break;
            }
        };
        let continues = h.base_offset == next_offset || (allow_gaps && h.base_offset > next_offset);
        let rel_last = i64::from(h.last_offset_delta).saturating_add(h.base_offset.saturating_sub(base_offset));
        if !continues || h.last_offset_delta < 0 || rel_last > i64::from(i32::MAX)
        {
            stop_reason = Some(format!(
                "at {pos}: batch offsets {}..={} do not continue from {next_offset} \
                 within the segment's offset range",
                h.base_offset,
                h.last_offset()
            ));
            break;
        }
        if h.last_offset() >= end_offset {
            break;
        }
        if let Err(e) = h.check_crc(win.get(file, file_len, pos, total)?) {
            stop_reason = Some(format!("at {pos}: {e}"));
            break;
        }
        if h.partition_leader_epoch >= 0 && epoch_starts.last().is_none_or(|&(e, _)| h.partition_leader_epoch > e) {
            epoch_starts.push((h.partition_leader_epoch, h.base_offset));
        }
        idx.on_batch(base_offset, pos, &h, index_interval_bytes);
        next_offset = h.last_offset() + 1;
        pos += total as u64;
    }
    let rest_is_zero = if pos < file_len && end_offset == i64::MAX {
        all_zero(file, pos, file_len)?
    } else {
        true
    };
    Ok(ScanOutcome {
        valid_size: pos,
        next_offset,
        idx,
        stop_reason,
        rest_is_zero,
        epoch_starts,
    })
}

fn all_zero(file: &File, mut pos: u64, end: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; SCAN_WINDOW_BYTES];
    while pos < end {
        let n = ((end - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_roundtrip() {
        // Proves file names are 20-digit base offsets and parse back, rejecting others.
        let p = segment_path(Path::new("/d"), 42, "log");
        assert_eq!(p, PathBuf::from("/d/00000000000000000042.log"));
        assert_eq!(parse_segment_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("00000000000000000042.index"), None);
    }
}
