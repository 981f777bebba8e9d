//! Recovery at open: turns a partition directory into a list of segments.
//!
//! Owns the rules for trusting what is on disk. Runs once per log, inside
//! `Log::open`, in two parts: everything that reads, scans, truncates or
//! syncs files runs on the shard's blocking pool (`find_segments`, plain
//! std I/O returning plain data), so a shard opening thousands of
//! partitions keeps serving; then the shard builds its `Segment`s and opens
//! the tail's O_DIRECT handle (a glommio open).
//!
//! - Sealed (non-tail) segments are trusted when both index files exist and
//!   are sane; otherwise they are rescanned batch by batch. In a non-tail
//!   segment only zero padding may follow the last valid batch (a crash
//!   between its last write and its truncation), and it must end exactly where
//!   the next segment begins; anything else is `StorageError::Corrupt`.
//! - The tail segment is always rescanned (length, magic, CRC32C, offset
//!   continuity), truncated at the first invalid batch or the zero padding
//!   (ftruncate + fsync), its indexes rebuilt in memory and its stale index
//!   files deleted. After a clean close (marker file `.clean-shutdown`,
//!   removed durably at open) the tail's index files are trusted instead and
//!   only the headers after the last index entry are walked. Decision: the tail is REOPENED for appends (no new
//!   segment per restart); the last partial 512-byte block is read back so
//!   the next O_DIRECT write can rewrite it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::batch::BatchHeader;
use super::index::{OffsetIndex, TimeIndex};
use super::log::LogConfig;
use super::segment::{
    parse_segment_name, read_exact, read_header_at, scan_segment, segment_path, ScanOutcome,
    SegIndexes, Segment,
};
use super::StorageError;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Segments found in `dir`, oldest first; the last one is open for appends.
pub(crate) async fn recover(dir: &Path, config: &LogConfig) -> Result<Vec<Segment>, StorageError> {
    let (scan_dir, interval) = (dir.to_path_buf(), config.index_interval_bytes);
    let found = glommio::executor().spawn_blocking(move || find_segments(&scan_dir, interval)).await?;
    let Some(tail) = found.tail else {
        return Ok(vec![Segment::new_empty(dir, 0, now_ms())]);
    };
    let mut segments = Vec::with_capacity(found.sealed.len() + 1);
    for f in found.sealed {
        let mut seg = f.into_segment(dir);
        seg.sealed = true;
        segments.push(seg);
    }
    // Counted against the shard's file budget; once the log is open the
    // budget may close it while idle (the writer reopens it).
    let mut seg = tail.segment.into_segment(dir);
    let dma = super::open_files::open_write(&seg.log_path, false).await?;
    let align = dma.alignment();
    let (page_start, page) = &tail.last_page;
    let aligned = seg.size - seg.size % align;
    if align > TAIL_PAGE_BYTES || aligned < *page_start {
        return Err(StorageError::Io(io::Error::other(format!(
            "{}: device block size {align} above the {TAIL_PAGE_BYTES} bytes recovery reads back",
            seg.log_path.display()
        ))));
    }
    seg.tail_block = page[(aligned - page_start) as usize..].to_vec();
    seg.dma = Some(dma);
    seg.epoch_starts = tail.epoch_starts;
    segments.push(seg);
    Ok(segments)
}

/// The last bytes of the tail read back at open, from a multiple of this:
/// they hold the partial device block the next O_DIRECT write rewrites
/// (any block size up to this).
const TAIL_PAGE_BYTES: u64 = 64 << 10;

/// A segment as recovery found it: plain data, made on the blocking pool.
struct FoundSegment {
    base: i64,
    size: u64,
    next_offset: i64,
    idx: SegIndexes,
    created_ms: i64,
}

impl FoundSegment {
    fn into_segment(self, dir: &Path) -> Segment {
        let mut seg = Segment::new_empty(dir, self.base, self.created_ms);
        seg.size = self.size;
        seg.written_size = self.size;
        seg.next_offset = self.next_offset;
        seg.idx = self.idx;
        seg.reader.set_exists();
        seg
    }
}

struct FoundTail {
    segment: FoundSegment,
    epoch_starts: Vec<(i32, i64)>,
    /// (position, bytes) of the file from `align_down(size, TAIL_PAGE_BYTES)` to its end.
    last_page: (u64, Vec<u8>),
}

struct Found {
    sealed: Vec<FoundSegment>,
    /// None: no segment file (a new log).
    tail: Option<FoundTail>,
}

/// The file part of recovery, blocking (runs on the blocking pool): lists
/// the directory, finishes interrupted compaction swaps, takes the clean
/// marker, checks or rescans each segment and trims the tail.
fn find_segments(dir: &Path, interval: u32) -> Result<Found, StorageError> {
    std::fs::create_dir_all(dir)?;
    let mut bases = Vec::new();
    let mut swaps = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_segment_name(name) {
            bases.push(base);
        } else if let Some(base) = name
            .strip_suffix(&format!(".{}", super::compaction::SWAP_EXT))
            .and_then(|stem| parse_segment_name(&format!("{stem}.log")))
        {
            swaps.push(base);
        } else if name.ends_with(&format!(".{}", super::compaction::CLEANED_EXT)) {
            // A cleaned segment a crash left before its swap: the original stays.
            tracing::info!(file = %entry.path().display(), "removing an unfinished compaction output");
            remove_if_exists(&entry.path())?;
        } else if name.ends_with(".tmp-index") {
            // A half-written index from a crash during seal/close.
            remove_if_exists(&entry.path())?;
        }
    }
    bases.sort_unstable();
    swaps.sort_unstable();
    for swap_base in swaps {
        finish_swap(dir, swap_base, &mut bases, interval)?;
    }
    // The marker must be gone (durably) before anything is appended, or a
    // later crash would make the next open trust a torn tail.
    let clean = take_clean_marker(dir)?;
    let Some((&tail_base, sealed)) = bases.split_last() else {
        return Ok(Found { sealed: Vec::new(), tail: None });
    };
    let mut found = Vec::with_capacity(bases.len());
    for (i, &base) in sealed.iter().enumerate() {
        found.push(open_sealed(dir, base, bases[i + 1], interval)?);
    }
    Ok(Found { sealed: found, tail: Some(open_tail(dir, tail_base, interval, clean)?) })
}

/// Finishes a compaction swap a crash interrupted after its commit point
/// (`Log::swap_in`): `<base>.swap` holds the cleaned (and maybe merged)
/// content of `<base>.log` and of the segments after it up to its last
/// offset; those are deleted and the swap renamed over `<base>.log`.
/// Segments of the group past its last offset (all their records were
/// cleaned away) stay as they were: still valid, only less compacted.
fn finish_swap(dir: &Path, base: i64, bases: &mut Vec<i64>, interval: u32) -> Result<(), StorageError> {
    let swap = segment_path(dir, base, super::compaction::SWAP_EXT);
    let file = File::open(&swap)?;
    let len = file.metadata()?.len();
    let out = scan_segment(&file, len, base, interval, true)?;
    if !out.rest_is_zero || out.valid_size != len {
        return Err(StorageError::Corrupt {
            file: swap,
            reason: format!(
                "invalid batch in a committed compaction swap: {}",
                out.stop_reason.unwrap_or_default()
            ),
        });
    }
    let end = out.next_offset;
    let replaced: Vec<i64> = bases
        .iter()
        .copied()
        .filter(|&b| b == base || (b > base && b < end))
        .collect();
    tracing::info!(file = %swap.display(), replaced = ?replaced, "finishing an interrupted compaction swap");
    let paths: Vec<std::path::PathBuf> = replaced.iter().map(|&b| segment_path(dir, b, "log")).collect();
    let log = segment_path(dir, base, "log");
    super::log::compaction_pass::finish_swap_files(
        paths.iter().map(|p| p.as_path()).chain(std::iter::once(log.as_path())),
        &swap,
        &log,
    )?;
    File::open(dir)?.sync_all()?;
    bases.retain(|&b| b <= base || b >= end);
    if let Err(at) = bases.binary_search(&base) {
        bases.insert(at, base);
    }
    Ok(())
}

/// Name of the marker `Log::close` leaves after a clean shutdown.
pub(crate) const CLEAN_MARKER: &str = ".clean-shutdown";

/// Written last by a clean close: the tail's index files are then current and
/// its file holds no padding, so the next open can skip the CRC scan.
/// With `durable` false the caller syncs the file system afterwards.
pub fn write_clean_marker(dir: &Path, durable: bool) -> io::Result<()> {
    std::fs::write(dir.join(CLEAN_MARKER), b"")?;
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Syncs the whole file system holding `dir` (syncfs(2)), blocking.
pub fn sync_file_system(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)).map_err(io::Error::from)
}

/// Removes the marker durably (the caller runs on the blocking pool: a
/// directory fsync per partition on the shard thread made a node with
/// 50,000 partitions take minutes to start after a clean stop).
fn take_clean_marker(dir: &Path) -> io::Result<bool> {
    let path = dir.join(CLEAN_MARKER);
    if !path.exists() {
        return Ok(false);
    }
    std::fs::remove_file(&path)?;
    File::open(dir)?.sync_all()?;
    Ok(true)
}

/// After a clean close: trusts the tail's index files and only walks the
/// headers after the last index entry to find the end. None if anything
/// does not add up (then the caller scans).
fn trusted_tail(
    file: &File,
    path: &Path,
    base: i64,
    len: u64,
) -> Result<Option<(u64, i64, SegIndexes)>, StorageError> {
    let Some(mut idx) = load_indexes(path, base, len)? else {
        return Ok(None);
    };
    let (mut pos, mut next_offset) = match idx.index.floor(u32::MAX) {
        Some((rel, p)) => (u64::from(p), base + i64::from(rel)),
        None => (0, base),
    };
    let start = pos;
    while pos + BatchHeader::SIZE as u64 <= len {
        let Ok(h) = read_header_at(file, path, pos) else {
            return Ok(None);
        };
        if h.base_offset != next_offset || h.batch_length < 49 {
            return Ok(None);
        }
        pos += h.total_size() as u64;
        next_offset = h.last_offset() + 1;
    }
    if pos != len {
        return Ok(None);
    }
    idx.bytes_since_index = len - start;
    Ok(Some((len, next_offset, idx)))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Loads both index files of a sealed segment if present and sane.
fn load_indexes(seg_path: &Path, base: i64, size: u64) -> io::Result<Option<SegIndexes>> {
    let (Some(ix), Some(tx)) = (
        read_if_exists(&seg_path.with_extension("index"))?,
        read_if_exists(&seg_path.with_extension("timeindex"))?,
    ) else {
        return Ok(None);
    };
    let (Some(index), Some(time_index)) = (OffsetIndex::decode(&ix, size), TimeIndex::decode(&tx))
    else {
        return Ok(None);
    };
    // A sealed segment's time index always ends with the segment's maximum.
    let max_ts = time_index.last().map(|(t, rel)| (t, base + i64::from(rel)));
    if max_ts.is_none() {
        return Ok(None);
    }
    Ok(Some(SegIndexes {
        index,
        time_index,
        bytes_since_index: 0,
        max_ts,
    }))
}

fn open_sealed(dir: &Path, base: i64, next_base: i64, interval: u32) -> Result<FoundSegment, StorageError> {
    let path = segment_path(dir, base, "log");
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let len = file.metadata()?.len();
    let idx = match load_indexes(&path, base, len)? {
        Some(idx) if len > 0 => idx,
        _ => {
            let out = scan_segment(&file, len, base, interval, true)?;
            let corrupt = |reason: String| StorageError::Corrupt {
                file: path.clone(),
                reason,
            };
            if !out.rest_is_zero {
                let why = out.stop_reason.unwrap_or_default();
                return Err(corrupt(format!(
                    "invalid batch inside a sealed segment: {why}"
                )));
            }
            // Compaction may have removed the last batches (never renumbered them).
            if out.next_offset > next_base {
                return Err(corrupt(format!(
                    "segment ends at offset {} but the next segment starts at {next_base}",
                    out.next_offset
                )));
            }
            if out.valid_size < len {
                file.set_len(out.valid_size)?;
                file.sync_all()?;
            }
            let mut idx = out.idx;
            idx.finish_time_index(base);
            super::index::write_file_durably(&path.with_extension("index"), &idx.index.encode())?;
            super::index::write_file_durably(&path.with_extension("timeindex"), &idx.time_index.encode())?;
            return Ok(FoundSegment { base, size: out.valid_size, next_offset: next_base, idx, created_ms: now_ms() });
        }
    };
    Ok(FoundSegment { base, size: len, next_offset: next_base, idx, created_ms: now_ms() })
}

fn open_tail(dir: &Path, base: i64, interval: u32, clean: bool) -> Result<FoundTail, StorageError> {
    let path = segment_path(dir, base, "log");
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let meta = file.metadata()?;
    let len = meta.len();
    let trusted = if clean {
        trusted_tail(&file, &path, base, len)?
    } else {
        None
    };
    let out = match trusted {
        Some((valid_size, next_offset, idx)) => ScanOutcome {
            valid_size,
            next_offset,
            idx,
            stop_reason: None,
            rest_is_zero: true,
            epoch_starts: Vec::new(),
        },
        // Gaps allowed: a follower's tail holds the leader's offsets, and a
        // compacted leader sends batches with gaps between them.
        None => scan_segment(&file, len, base, interval, true)?,
    };
    if out.valid_size < len {
        // Zero padding after the last batch is the normal trace of a synced
        // partial block (the DMA writer pads to 512 bytes): not worth a warning.
        if out.rest_is_zero {
            tracing::debug!(file = %path.display(), valid_bytes = out.valid_size, file_bytes = len, "trimming zero padding");
        } else {
            tracing::warn!(
                file = %path.display(),
                valid_bytes = out.valid_size,
                file_bytes = len,
                reason = out.stop_reason.as_deref().unwrap_or("zero padding"),
                "truncating torn log tail"
            );
        }
        file.set_len(out.valid_size)?;
    }
    // Whatever survived may have sat in the page cache only: make it durable
    // so the log can report durable_end == log_end after open.
    file.sync_all()?;
    // The tail's index files (from an earlier clean close) are stale from now on.
    remove_if_exists(&path.with_extension("index"))?;
    remove_if_exists(&path.with_extension("timeindex"))?;
    let page_start = out.valid_size - out.valid_size % TAIL_PAGE_BYTES;
    let page = read_exact(&file, page_start, (out.valid_size - page_start) as usize)?;
    let created_ms = meta
        .created()
        .or_else(|_| meta.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or_else(now_ms, |d| d.as_millis() as i64);
    Ok(FoundTail {
        segment: FoundSegment { base, size: out.valid_size, next_offset: out.next_offset, idx: out.idx, created_ms },
        epoch_starts: out.epoch_starts,
        last_page: (page_start, page),
    })
}
