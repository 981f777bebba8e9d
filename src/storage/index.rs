//! Sparse offset and time indexes of one segment.
//!
//! Owns: the in-memory entries and their on-disk encoding. Runs on the shard
//! that owns the partition. Entries live in memory while the segment is open;
//! the files `<base>.index` / `<base>.timeindex` are written whole when a
//! segment is sealed or the log is closed, and are trusted at open only if
//! they pass `sane()`; otherwise the segment is rescanned.
//!
//! `.index`: (relative offset u32 BE, file position u32 BE) — the base offset
//! of a batch and where it starts. `.timeindex`: (timestamp i64 BE, relative
//! offset u32 BE) — the largest timestamp seen so far in the segment and an
//! offset inside the batch that carries it.

use std::io::{self, Write};
use std::path::Path;

pub const OFFSET_ENTRY_SIZE: usize = 8;
pub const TIME_ENTRY_SIZE: usize = 12;

/// Sparse offset index: strictly increasing in both fields.
#[derive(Debug, Default, Clone)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, rel_offset: u32, position: u32) {
        if let Some(&(o, p)) = self.entries.last() {
            assert!(rel_offset > o && position > p, "offset index must increase");
        }
        self.entries.push((rel_offset, position));
    }

    pub fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    /// The entry with the largest relative offset <= `rel_offset`.
    pub fn floor(&self, rel_offset: u32) -> Option<(u32, u32)> {
        let i = self.entries.partition_point(|&(o, _)| o <= rel_offset);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// Index (into entries) of the last entry whose position <= `position`
    /// and whose relative offset <= `rel_offset`; both fields are monotonic,
    /// so the predicate is a prefix.
    pub fn last_within(&self, position: u32, rel_offset: u32) -> Option<usize> {
        let i = self
            .entries
            .partition_point(|&(o, p)| p <= position && o <= rel_offset);
        i.checked_sub(1)
    }

    pub fn get(&self, i: usize) -> (u32, u32) {
        self.entries[i]
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_SIZE);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Decodes an index file; None if it is not a sane index for a segment of
    /// `segment_size` bytes (wrong length, not increasing, past the end).
    pub fn decode(buf: &[u8], segment_size: u64) -> Option<OffsetIndex> {
        if !buf.len().is_multiple_of(OFFSET_ENTRY_SIZE) {
            return None;
        }
        let mut idx = OffsetIndex::default();
        for c in buf.chunks_exact(OFFSET_ENTRY_SIZE) {
            let o = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let p = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            if let Some(&(lo, lp)) = idx.entries.last() {
                if o <= lo || p <= lp {
                    return None;
                }
            }
            if u64::from(p) >= segment_size {
                return None;
            }
            idx.entries.push((o, p));
        }
        Some(idx)
    }
}

/// Sparse time index: timestamps non-decreasing, offsets increasing.
#[derive(Debug, Default, Clone)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Appends if `timestamp` is larger than the last entry's (entries only
    /// record increases of the running maximum).
    pub fn maybe_push(&mut self, timestamp: i64, rel_offset: u32) {
        match self.entries.last() {
            Some(&(t, o)) if timestamp <= t || rel_offset <= o => {}
            _ => self.entries.push((timestamp, rel_offset)),
        }
    }

    pub fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    /// The last entry with timestamp strictly below `ts`: every record up to
    /// and including that entry's batch is older than `ts`.
    pub fn last_below(&self, ts: i64) -> Option<(i64, u32)> {
        let i = self.entries.partition_point(|&(t, _)| t < ts);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_SIZE);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Option<TimeIndex> {
        if !buf.len().is_multiple_of(TIME_ENTRY_SIZE) {
            return None;
        }
        let mut idx = TimeIndex::default();
        for c in buf.chunks_exact(TIME_ENTRY_SIZE) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&c[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            if let Some(&(lt, lo)) = idx.entries.last() {
                if t < lt || o <= lo {
                    return None;
                }
            }
            idx.entries.push((t, o));
        }
        Some(idx)
    }
}

/// Writes `bytes` to `path` durably: a temporary file, fsync, rename.
/// Blocking std I/O: only used when a segment is sealed or the log closes.
pub fn write_file_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file(path, bytes, true)
}

/// Writes `bytes` to `path` through a temporary file and a rename; fsyncs
/// the file first when `durable` (else a later file system sync must).
pub fn write_file(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    // A name of its own per write: two writers of one file (a periodic
    // checkpoint and the one at close) must not rename each other's temp
    // file away. Recovery removes leftovers by the `.tmp-index` suffix.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.{n}.tmp-index"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_data()?;
        }
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_floor_and_roundtrip() {
        // Proves floor lookups, the combined bound lookup, and that encode/decode round-trips.
        let mut idx = OffsetIndex::default();
        idx.push(10, 4096);
        idx.push(20, 8192);
        idx.push(35, 12000);
        assert_eq!(idx.floor(5), None);
        assert_eq!(idx.floor(10), Some((10, 4096)));
        assert_eq!(idx.floor(34), Some((20, 8192)));
        assert_eq!(idx.last_within(9000, 100), Some(1));
        assert_eq!(idx.last_within(20000, 20), Some(1));
        assert_eq!(idx.last_within(100, 100), None);
        let back = OffsetIndex::decode(&idx.encode(), 20000).expect("sane");
        assert_eq!(back.floor(40), Some((35, 12000)));
        assert!(OffsetIndex::decode(&idx.encode(), 12000).is_none());
        assert!(OffsetIndex::decode(&[0; 7], 100).is_none());
    }

    #[test]
    fn time_index_only_records_increases() {
        // Proves the time index keeps a running maximum and finds the last entry below a timestamp.
        let mut t = TimeIndex::default();
        t.maybe_push(100, 1);
        t.maybe_push(90, 2);
        t.maybe_push(150, 5);
        assert_eq!(t.len(), 2);
        assert_eq!(t.last_below(100), None);
        assert_eq!(t.last_below(101), Some((100, 1)));
        assert_eq!(t.last_below(1000), Some((150, 5)));
        let back = TimeIndex::decode(&t.encode()).expect("sane");
        assert_eq!(back.last(), Some((150, 5)));
    }
}
