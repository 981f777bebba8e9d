//! The controller's Raft log on disk: openraft's `RaftLogStorage` and
//! `RaftLogReader` over ordinary files with fdatasync.
//!
//! Layout under the controller dir:
//! - `log/<first-index, 20 digits>.log`: segments of records
//!   `[len: u32 LE][crc32c(payload): u32 LE][payload]`, payload =
//!   `[first index of the append that wrote it: u64 LE][JSON of the entry]`,
//!   indexes contiguous within a segment, a new segment when one passes
//!   `SEGMENT_BYTES_MAX` or the next index does not follow (after a snapshot
//!   install).
//! - `vote.json`, `purged.json`: replaced atomically (write temp, fdatasync,
//!   rename, fsync dir) before the call returns.
//! - `committed.json`: replaced by rename without fsync; it is a hint that
//!   lets the state machine catch up at start, and a lost update only means
//!   waiting for the leader to commit again.
//!
//! Recovery reads every segment. Each append is written and fdatasynced
//! before the next one starts, so only the last append can be torn. In the
//! last segment, a record that is short, zero-length or fails its CRC is a
//! torn write (kill -9 or power loss mid-append) and the file is truncated
//! there, unless some valid record further on belongs to a LATER append
//! (its append's first index is past the bad record): then the bad record
//! had been synced and acknowledged, and that is corruption. So is a bad
//! record in any other segment, an entry that does not decode, or a gap in
//! the indexes: `open` fails with `StoreError::Corrupt`.
//!
//! Runs on the controller thread only. All I/O is synchronous std::fs: the
//! controller's tokio runtime has nothing else latency-critical to run, and an
//! append must be durable before openraft is told anyway. The state sits
//! behind a `Mutex` only because openraft wants a separate reader object; both
//! live on the controller thread and the lock is never held across an await.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{RaftNodeId, TypeConfig};

/// A segment is closed and a new one started once it is this large.
pub const SEGMENT_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// The largest record accepted when writing or believed when reading.
pub const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;
const RECORD_HEADER_BYTES: usize = 8;
/// The append's first index, at the start of every payload.
const BATCH_FIRST_BYTES: usize = 8;

/// Why the log could not be opened or written.
#[derive(Debug)]
pub enum StoreError {
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    Encode(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io { path, op, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            StoreError::Corrupt {
                path,
                offset,
                reason,
            } => {
                write!(
                    f,
                    "corrupt controller log {} at byte {offset}: {reason}",
                    path.display()
                )
            }
            StoreError::Encode(m) => write!(f, "cannot encode log record: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Writes `value` as JSON to `dir/name` atomically; with `durable` the data
/// and the rename are on disk before returning.
pub fn write_json_atomic<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
    durable: bool,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
        f.write_all(&bytes).map_err(io_err(&tmp, "write"))?;
        if durable {
            f.sync_data().map_err(io_err(&tmp, "fdatasync"))?;
        }
    }
    fs::rename(&tmp, &dst).map_err(io_err(&dst, "rename"))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a JSON file written by `write_json_atomic`; a missing file is `None`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io {
            path: path.to_path_buf(),
            op: "read",
            source: e,
        }),
    }
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync dir"))
}

type LogEntry = Entry<TypeConfig>;
type RaftLogId = LogId<RaftNodeId>;

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    len: u64,
    last_index: Option<u64>,
}

/// The log's state; see the module doc.
struct LogInner {
    dir: PathBuf,
    log_dir: PathBuf,
    /// Entries after `purged`, by index.
    entries: BTreeMap<u64, LogEntry>,
    /// Where each entry in `entries` starts: (segment base, byte offset).
    locations: BTreeMap<u64, (u64, u64)>,
    /// Segments by first index.
    segments: BTreeMap<u64, Segment>,
    /// Append handle on the last segment.
    tail: Option<File>,
    vote: Option<Vote<RaftNodeId>>,
    committed: Option<RaftLogId>,
    purged: Option<RaftLogId>,
}

/// The Raft log store; clones share one log (the reader openraft asks for is a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

enum BadRecord {
    /// Not enough bytes for the header or the payload.
    Short,
    /// Length zero (a zero-filled tail) or larger than `RECORD_BYTES_MAX`.
    BadLength,
    /// The full record is present but its CRC does not match.
    Crc,
}

/// A record that passed its CRC: the first index of the append that wrote
/// it, the entry's JSON, and the record's size.
struct Record<'a> {
    batch_first: u64,
    json: &'a [u8],
    used: usize,
}

fn parse_record(buf: &[u8]) -> Result<Record<'_>, BadRecord> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Err(BadRecord::Short);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len <= BATCH_FIRST_BYTES || len > RECORD_BYTES_MAX {
        return Err(BadRecord::BadLength);
    }
    let used = RECORD_HEADER_BYTES + len;
    if buf.len() < used {
        return Err(BadRecord::Short);
    }
    let payload = &buf[RECORD_HEADER_BYTES..used];
    if crc32c::crc32c(payload) != crc {
        return Err(BadRecord::Crc);
    }
    let (first, json) = payload.split_at(BATCH_FIRST_BYTES);
    let mut first_bytes = [0u8; BATCH_FIRST_BYTES];
    first_bytes.copy_from_slice(first);
    Ok(Record {
        batch_first: u64::from_le_bytes(first_bytes),
        json,
        used,
    })
}

/// Whether a valid record written by an append later than the one holding
/// index `bad_index` exists at or after `from` (see the module doc).
fn later_append_follows(data: &[u8], from: usize, bad_index: u64) -> bool {
    let mut off = from;
    while off < data.len() {
        match parse_record(&data[off..]) {
            Ok(r) if r.batch_first > bad_index => return true,
            Ok(r) => off += r.used,
            Err(_) => off += 1,
        }
    }
    false
}

fn encode_record(entry: &LogEntry, batch_first: u64, out: &mut Vec<u8>) -> Result<(), StoreError> {
    let mut payload = batch_first.to_le_bytes().to_vec();
    serde_json::to_writer(&mut payload, entry).map_err(|e| StoreError::Encode(e.to_string()))?;
    if payload.len() > RECORD_BYTES_MAX {
        return Err(StoreError::Encode(format!(
            "entry of {} bytes",
            payload.len()
        )));
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.log")
}

/// Reads one segment. Returns its entries with their offsets and the length
/// of the valid prefix (shorter than the file only for a torn last segment).
fn read_segment(
    path: &Path,
    base: u64,
    is_last: bool,
) -> Result<(Vec<(u64, LogEntry)>, u64), StoreError> {
    let data = fs::read(path).map_err(io_err(path, "read"))?;
    let corrupt = |offset: usize, reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut out: Vec<(u64, LogEntry)> = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        match parse_record(&data[pos..]) {
            Ok(Record { json, used, .. }) => {
                let entry: LogEntry = serde_json::from_slice(json)
                    .map_err(|e| corrupt(pos, format!("entry does not decode: {e}")))?;
                let expected = out.last().map(|(_, e)| e.log_id.index + 1).unwrap_or(base);
                if entry.log_id.index != expected {
                    return Err(corrupt(
                        pos,
                        format!(
                            "entry index {} where {expected} was expected",
                            entry.log_id.index
                        ),
                    ));
                }
                out.push((pos as u64, entry));
                pos += used;
            }
            Err(bad) => {
                let reason = match bad {
                    BadRecord::Short => "record cut short",
                    BadRecord::BadLength => "impossible record length",
                    BadRecord::Crc => "CRC mismatch",
                };
                if !is_last {
                    return Err(corrupt(pos, reason.to_string()));
                }
                let bad_index = out.last().map(|(_, e)| e.log_id.index + 1).unwrap_or(base);
                if later_append_follows(&data, pos + 1, bad_index) {
                    return Err(corrupt(
                        pos,
                        format!("{reason} in entry {bad_index}, before records of a later append"),
                    ));
                }
                tracing::warn!(
                    path = %path.display(),
                    offset = pos,
                    dropped_bytes = data.len() - pos,
                    "controller log: torn last write ({reason}), truncating"
                );
                return Ok((out, pos as u64));
            }
        }
    }
    Ok((out, pos as u64))
}

impl LogStore {
    /// Opens (creating if needed) the log under `dir`, recovering as the module doc says.
    pub fn open(dir: &Path) -> Result<LogStore, StoreError> {
        let log_dir = dir.join("log");
        fs::create_dir_all(&log_dir).map_err(io_err(&log_dir, "create dir"))?;
        let vote = read_json(&dir.join("vote.json"))?;
        let purged: Option<RaftLogId> = read_json(&dir.join("purged.json"))?;
        let committed = read_committed_hint(&dir.join("committed.json"));

        let mut bases: Vec<u64> = Vec::new();
        for item in fs::read_dir(&log_dir).map_err(io_err(&log_dir, "list"))? {
            let item = item.map_err(io_err(&log_dir, "list"))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = name
                .strip_suffix(".log")
                .and_then(|b| b.parse::<u64>().ok())
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut inner = LogInner {
            dir: dir.to_path_buf(),
            log_dir: log_dir.clone(),
            entries: BTreeMap::new(),
            locations: BTreeMap::new(),
            segments: BTreeMap::new(),
            tail: None,
            vote,
            committed,
            purged,
        };
        let purged_index = purged.map(|p| p.index);
        for (i, base) in bases.iter().enumerate() {
            let path = log_dir.join(segment_name(*base));
            let is_last = i + 1 == bases.len();
            let (entries, valid_len) = read_segment(&path, *base, is_last)?;
            let file_len = fs::metadata(&path).map_err(io_err(&path, "stat"))?.len();
            if valid_len < file_len {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path, "open"))?;
                f.set_len(valid_len).map_err(io_err(&path, "truncate"))?;
                f.sync_all().map_err(io_err(&path, "fsync"))?;
            }
            let last_index = entries.last().map(|(_, e)| e.log_id.index);
            for (offset, entry) in entries {
                let index = entry.log_id.index;
                if purged_index.is_some_and(|p| index <= p) {
                    continue;
                }
                if let Some((&prev, _)) = inner.entries.last_key_value() {
                    if index != prev + 1 {
                        return Err(StoreError::Corrupt {
                            path,
                            offset,
                            reason: format!("entry {index} follows entry {prev}"),
                        });
                    }
                }
                inner.locations.insert(index, (*base, offset));
                inner.entries.insert(index, entry);
            }
            inner.segments.insert(
                *base,
                Segment {
                    path,
                    len: valid_len,
                    last_index,
                },
            );
        }
        if let (Some(p), Some((&first, _))) = (purged_index, inner.entries.first_key_value()) {
            if first != p + 1 {
                return Err(StoreError::Corrupt {
                    path: log_dir,
                    offset: 0,
                    reason: format!("first entry {first} does not follow the purged entry {p}"),
                });
            }
        }
        inner.open_tail()?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    // StorageError is large, but it is what every openraft storage call returns.
    #[allow(clippy::result_large_err)]
    fn lock(&self) -> Result<MutexGuard<'_, LogInner>, StorageError<RaftNodeId>> {
        self.inner.lock().map_err(|_| {
            StorageIOError::read_logs(&io::Error::other("controller log lock poisoned")).into()
        })
    }

    #[cfg(test)]
    pub(crate) fn append_sync(&self, entries: Vec<LogEntry>) -> Result<(), StoreError> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| StoreError::Encode("poisoned".into()))?;
        g.append(entries)
    }

    #[cfg(test)]
    pub(crate) fn entries_for_test(&self) -> Vec<LogEntry> {
        self.inner
            .lock()
            .map(|g| g.entries.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// `committed.json` is a hint (see the module doc): unreadable means unknown.
fn read_committed_hint(path: &Path) -> Option<RaftLogId> {
    match read_json(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("ignoring controller commit hint: {e}");
            None
        }
    }
}

impl LogInner {
    fn open_tail(&mut self) -> Result<(), StoreError> {
        self.tail = match self.segments.last_key_value() {
            Some((_, seg)) => Some(
                OpenOptions::new()
                    .append(true)
                    .open(&seg.path)
                    .map_err(io_err(&seg.path, "open"))?,
            ),
            None => None,
        };
        Ok(())
    }

    /// Starts a new, empty segment whose first entry will be `base`.
    fn roll(&mut self, base: u64) -> Result<(), StoreError> {
        let path = self.log_dir.join(segment_name(base));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        sync_dir(&self.log_dir)?;
        self.segments.insert(
            base,
            Segment {
                path,
                len: 0,
                last_index: None,
            },
        );
        self.tail = Some(file);
        Ok(())
    }

    /// Writes the buffered bytes to the tail segment and makes them durable.
    fn flush_tail(&mut self, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        let (Some(file), Some((_, seg))) = (self.tail.as_mut(), self.segments.last_key_value())
        else {
            return Err(StoreError::Encode("no tail segment to write to".into()));
        };
        let path = seg.path.clone();
        file.write_all(buf).map_err(io_err(&path, "write"))?;
        file.sync_data().map_err(io_err(&path, "fdatasync"))?;
        buf.clear();
        Ok(())
    }

    /// Appends entries durably: returns only after fdatasync.
    fn append(&mut self, entries: Vec<LogEntry>) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        let Some(batch_first) = entries.first().map(|e| e.log_id.index) else {
            return Ok(());
        };
        for entry in entries {
            let index = entry.log_id.index;
            let needs_roll = match self.segments.last_key_value() {
                None => true,
                Some((&base, seg)) => match seg.last_index {
                    Some(last) => seg.len >= SEGMENT_BYTES_MAX || last + 1 != index,
                    None => base != index,
                },
            };
            if needs_roll {
                self.flush_tail(&mut buf)?;
                self.roll(index)?;
            }
            let start = buf.len() as u64;
            encode_record(&entry, batch_first, &mut buf)?;
            let written = buf.len() as u64 - start;
            let Some((&base, seg)) = self.segments.iter_mut().next_back() else {
                return Err(StoreError::Encode("no tail segment".into()));
            };
            self.locations.insert(index, (base, seg.len));
            seg.len += written;
            seg.last_index = Some(index);
            self.entries.insert(index, entry);
        }
        self.flush_tail(&mut buf)
    }

    /// Removes every entry with index >= `index`.
    fn truncate(&mut self, index: u64) -> Result<(), StoreError> {
        let from = match self.entries.range(index..).next() {
            Some((&i, _)) => i,
            None => return Ok(()),
        };
        let Some(&(base, offset)) = self.locations.get(&from) else {
            return Err(StoreError::Encode(format!("no location for entry {from}")));
        };
        let later: Vec<u64> = self.segments.range(base + 1..).map(|(b, _)| *b).collect();
        for b in later {
            if let Some(seg) = self.segments.remove(&b) {
                fs::remove_file(&seg.path).map_err(io_err(&seg.path, "remove"))?;
            }
        }
        let entries_after: Vec<u64> = self.entries.range(from..).map(|(i, _)| *i).collect();
        for i in entries_after {
            self.entries.remove(&i);
            self.locations.remove(&i);
        }
        if let Some(seg) = self.segments.get_mut(&base) {
            let f = OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .map_err(io_err(&seg.path, "open"))?;
            f.set_len(offset).map_err(io_err(&seg.path, "truncate"))?;
            f.sync_all().map_err(io_err(&seg.path, "fsync"))?;
            seg.len = offset;
            seg.last_index = from.checked_sub(1).filter(|_| from > base);
        }
        sync_dir(&self.log_dir)?;
        self.open_tail()
    }

    /// Forgets entries up to `log_id` (durably recorded first) and deletes
    /// segments that hold nothing newer. The tail segment is kept.
    fn purge(&mut self, log_id: RaftLogId) -> Result<(), StoreError> {
        write_json_atomic(&self.dir, "purged.json", &log_id, true)?;
        self.purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        self.locations = self.locations.split_off(&(log_id.index + 1));
        let bases: Vec<u64> = self.segments.keys().copied().collect();
        let mut removed = false;
        for pair in bases.windows(2) {
            // Segment pair[0] ends where pair[1] begins.
            if pair[1] <= log_id.index + 1 {
                if let Some(seg) = self.segments.remove(&pair[0]) {
                    fs::remove_file(&seg.path).map_err(io_err(&seg.path, "remove"))?;
                    removed = true;
                }
            }
        }
        if removed {
            sync_dir(&self.log_dir)?;
        }
        Ok(())
    }

    fn log_state(&self) -> LogState<TypeConfig> {
        let last = self
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(self.purged);
        LogState {
            last_purged_log_id: self.purged,
            last_log_id: last,
        }
    }
}

fn range_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

fn write_error(e: StoreError) -> StorageError<RaftNodeId> {
    StorageIOError::write_logs(&e).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError<RaftNodeId>> {
        let g = self.lock()?;
        Ok(g.entries
            .range(range_bounds(&range))
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<RaftNodeId>> {
        Ok(self.lock()?.log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> Result<(), StorageError<RaftNodeId>> {
        let mut g = self.lock()?;
        write_json_atomic(&g.dir, "vote.json", vote, true)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftNodeId>>, StorageError<RaftNodeId>> {
        Ok(self.lock()?.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<RaftLogId>,
    ) -> Result<(), StorageError<RaftNodeId>> {
        let mut g = self.lock()?;
        write_json_atomic(&g.dir, "committed.json", &committed, false).map_err(write_error)?;
        g.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<RaftLogId>, StorageError<RaftNodeId>> {
        Ok(self.lock()?.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<RaftNodeId>>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.lock()?.append(entries.into_iter().collect());
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(write_error(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: RaftLogId) -> Result<(), StorageError<RaftNodeId>> {
        self.lock()?.truncate(log_id.index).map_err(write_error)
    }

    async fn purge(&mut self, log_id: RaftLogId) -> Result<(), StorageError<RaftNodeId>> {
        self.lock()?.purge(log_id).map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::controller::state::Command;
    use crate::controller::test_dir::TestDir;

    fn entry(index: u64) -> LogEntry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(Command::InitCluster {
                cluster_id: format!("c{index}"),
            }),
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store
            .entries_for_test()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let mut segs: Vec<PathBuf> = fs::read_dir(dir.join("log"))
            .expect("list")
            .map(|e| e.expect("entry").path())
            .collect();
        segs.sort();
        segs.pop().expect("a segment")
    }

    /// Entries written and synced come back after reopening, in order.
    #[test]
    fn append_and_reopen() {
        let dir = TestDir::new("log-reopen");
        let store = LogStore::open(dir.path()).expect("open");
        store
            .append_sync((1..=5).map(entry).collect())
            .expect("append");
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![1, 2, 3, 4, 5]);
    }

    /// A partially written last record (kill -9 mid-append) is cut off and the
    /// log stays usable; a zero-filled tail is treated the same way.
    #[test]
    fn torn_tail_is_truncated() {
        let dir = TestDir::new("log-torn");
        let store = LogStore::open(dir.path()).expect("open");
        store
            .append_sync((1..=3).map(entry).collect())
            .expect("append");
        drop(store);
        let seg = only_segment(dir.path());
        let good_len = fs::metadata(&seg).expect("stat").len();
        let mut rec = Vec::new();
        encode_record(&entry(4), 4, &mut rec).expect("encode");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("open seg");
        f.write_all(&rec[..rec.len() / 2]).expect("write");
        drop(f);
        let store = LogStore::open(dir.path()).expect("reopen after torn write");
        assert_eq!(indexes(&store), vec![1, 2, 3]);
        assert_eq!(fs::metadata(&seg).expect("stat").len(), good_len);
        store
            .append_sync(vec![entry(4)])
            .expect("append after recovery");
        drop(store);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("open seg");
        f.write_all(&[0u8; 4096]).expect("zeros");
        drop(f);
        let store = LogStore::open(dir.path()).expect("reopen after zero tail");
        assert_eq!(indexes(&store), vec![1, 2, 3, 4]);
    }

    /// A damaged record (flipped bit, or zeroed header) followed by records
    /// of later, acknowledged appends is corruption, not a torn write.
    #[test]
    fn corruption_in_the_middle_is_an_error() {
        for zero_header in [false, true] {
            let dir = TestDir::new("log-corrupt");
            let store = LogStore::open(dir.path()).expect("open");
            for i in 1..=3 {
                store.append_sync(vec![entry(i)]).expect("append");
            }
            drop(store);
            let seg = only_segment(dir.path());
            let mut bytes = fs::read(&seg).expect("read");
            if zero_header {
                bytes[..RECORD_HEADER_BYTES].fill(0);
            } else {
                bytes[RECORD_HEADER_BYTES + BATCH_FIRST_BYTES + 2] ^= 0xff;
            }
            fs::write(&seg, &bytes).expect("write");
            match LogStore::open(dir.path()) {
                Err(StoreError::Corrupt { offset: 0, .. }) => {}
                Err(e) => panic!("wrong error: {e}"),
                Ok(_) => panic!("corrupt log opened"),
            }
        }
    }

    /// Power loss mid-append can persist a later record of the append but not
    /// an earlier one; the whole unacknowledged append is dropped, earlier
    /// appends are kept.
    #[test]
    fn torn_append_with_a_surviving_later_record() {
        let dir = TestDir::new("log-torn-batch");
        let store = LogStore::open(dir.path()).expect("open");
        store.append_sync(vec![entry(1)]).expect("append");
        let first_len = fs::metadata(only_segment(dir.path())).expect("stat").len() as usize;
        store
            .append_sync((2..=4).map(entry).collect())
            .expect("append");
        drop(store);
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).expect("read");
        bytes[first_len + RECORD_HEADER_BYTES + 3] ^= 0xff;
        fs::write(&seg, &bytes).expect("write");
        let store = LogStore::open(dir.path()).expect("torn append tolerated");
        assert_eq!(indexes(&store), vec![1]);
        assert_eq!(fs::metadata(&seg).expect("stat").len() as usize, first_len);
    }

    /// Purge forgets old entries durably and deletes whole segments; truncate
    /// drops a suffix; both survive reopening.
    #[test]
    fn purge_and_truncate() {
        let dir = TestDir::new("log-purge");
        let store = LogStore::open(dir.path()).expect("open");
        store
            .append_sync((1..=4).map(entry).collect())
            .expect("append");
        {
            let mut g = store.inner.lock().expect("lock");
            // Force a second segment so purge has one to delete.
            g.roll(5).expect("roll");
        }
        store
            .append_sync((5..=8).map(entry).collect())
            .expect("append");
        {
            let mut g = store.inner.lock().expect("lock");
            g.purge(entry(6).log_id).expect("purge");
            assert_eq!(g.segments.len(), 1, "first segment deleted");
            g.truncate(8).expect("truncate");
        }
        assert_eq!(indexes(&store), vec![7]);
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![7]);
        let state = store.inner.lock().expect("lock").log_state();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(6));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(7));
        store
            .append_sync(vec![entry(8)])
            .expect("append after truncate");
        drop(store);
        assert_eq!(
            indexes(&LogStore::open(dir.path()).expect("reopen")),
            vec![7, 8]
        );
    }
}
