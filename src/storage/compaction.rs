//! Log compaction (`cleanup.policy=compact`): the pure part.
//!
//! Owns: the key map (latest offset per key, keyed by a 128-bit hash of the
//! key, bounded in entries), decoding the records of a batch (uncompressed,
//! gzip, snappy, lz4 or zstd, with pure-Rust decoders and a bound on the
//! decompressed size; a batch past it is kept whole), the rule that decides which records a
//! cleaned batch keeps, the rewrite of a batch with only those records, and
//! the durable "first dirty offset" checkpoint (`cleaner-offset`).
//!
//! The rewrite follows Kafka's `MemoryRecords.filterTo` for v2 batches: the
//! batch keeps its baseOffset, lastOffsetDelta, baseSequence, producer
//! id/epoch, partition leader epoch and transactional bit, so offsets are
//! never renumbered and the batch's last offset (hence the next offset) is
//! unchanged; records keep their raw bytes (offset and timestamp deltas stay
//! relative to the unchanged base). Only recordCount, batchLength,
//! maxTimestamp (CreateTime), the compression bits (a compressed batch is
//! written back uncompressed) and the CRC change. A batch left with no record
//! disappears, so a cleaned segment's offsets become sparse. Data batches of
//! aborted transactions are removed; control batches (markers) are kept as
//! they are (Kafka also drops a marker once its transaction's data is gone
//! and `delete.retention.ms` has passed; Fjord keeps them).
//!
//! Pure functions plus blocking checkpoint I/O; runs on the shard that owns
//! the partition (called from `Log::compact`, see `log_compaction.rs`).

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::Path;

use super::batch::{
    read_varint, read_varlong, BatchError, BatchHeader, ATTRIBUTES_POS, BATCH_LENGTH_POS, CRC_POS, LOG_OVERHEAD,
};

/// Name of the first-dirty-offset checkpoint in a partition directory.
pub const CLEANER_CHECKPOINT: &str = "cleaner-offset";
const CLEANER_CHECKPOINT_TMP: &str = "cleaner-offset.tmp";
const CHECKPOINT_VERSION: &str = "0";
/// Extension of a cleaned segment being written (`<base>.cleaned`); renamed
/// over `<base>.log` when complete, deleted at open if a crash left it.
pub const CLEANED_EXT: &str = "cleaned";
/// Extension of a cleaned segment whose swap is committed (`<base>.swap`):
/// an open finishes the swap (deletes the segments it replaces, renames it
/// over `<base>.log`).
pub const SWAP_EXT: &str = "swap";
/// Largest decompressed records section the cleaner inflates; a bigger
/// compressed batch is kept whole (bounds memory against compression bombs).
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 16 << 20;
/// Largest zstd window the cleaner accepts (the decoder allocates it up
/// front); a frame asking for more is an invalid batch to us.
pub const ZSTD_WINDOW_BYTES_MAX: u64 = DECOMPRESSED_BATCH_BYTES_MAX as u64;
/// Memory one key-map entry is budgeted at (16-byte hash, 8-byte offset,
/// hash table overhead): `log.cleaner.dedupe.buffer.size / this` entries.
pub const KEY_MAP_ENTRY_BYTES: usize = 32;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const MAX_TIMESTAMP_POS: usize = 35;
const RECORD_COUNT_POS: usize = 57;

/// Latest offset per key for the dirty part of a log, bounded in entries.
pub struct KeyMap {
    offsets: HashMap<u128, i64>,
    entries_max: usize,
}

fn key_hash(key: &[u8]) -> u128 {
    let mut a = DefaultHasher::new();
    0u8.hash(&mut a);
    key.hash(&mut a);
    let mut b = DefaultHasher::new();
    1u8.hash(&mut b);
    key.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

impl KeyMap {
    pub fn new(entries_max: usize) -> KeyMap {
        KeyMap {
            offsets: HashMap::new(),
            entries_max: entries_max.max(1),
        }
    }

    /// Records `offset` for `key` (keeping the larger). False when the map
    /// is full and `key` is new: nothing was recorded.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let h = key_hash(key);
        if let Some(o) = self.offsets.get_mut(&h) {
            *o = (*o).max(offset);
            return true;
        }
        if self.offsets.len() >= self.entries_max {
            return false;
        }
        self.offsets.insert(h, offset);
        true
    }

    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.offsets.get(&key_hash(key)).copied()
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// One record of a decoded batch; ranges index the records section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Range<usize>>,
    pub value_is_null: bool,
    /// The whole record: its length varint and body.
    pub span: Range<usize>,
}

/// The records section of a batch, decompressed if needed (gzip, snappy,
/// lz4 frames, zstd; pure-Rust decoders). `Ok(None)` for a section that
/// would inflate past `DECOMPRESSED_BATCH_BYTES_MAX` (a compression bomb is
/// never inflated further than that).
pub fn records_section<'a>(h: &BatchHeader, batch: &'a [u8]) -> Result<Option<Cow<'a, [u8]>>, BatchError> {
    if batch.len() < BatchHeader::SIZE {
        return Err(BatchError::TooShort);
    }
    let raw = &batch[BatchHeader::SIZE..];
    match h.compression() {
        0 => Ok(Some(Cow::Borrowed(raw))),
        1 => gunzip(raw).map(|o| o.map(Cow::Owned)),
        2 => unsnappy(raw).map(|o| o.map(Cow::Owned)),
        3 => inflate_bounded(lz4_flex::frame::FrameDecoder::new(raw), "bad lz4 data").map(|o| o.map(Cow::Owned)),
        4 => {
            let dec = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(raw, ZSTD_WINDOW_BYTES_MAX)
                .map_err(|_| BatchError::InvalidRecord("bad zstd frame header"))?;
            inflate_bounded(dec, "bad zstd data").map(|o| o.map(Cow::Owned))
        }
        _ => Err(BatchError::InvalidRecord("unknown compression codec")),
    }
}

/// Reads a decompressing stream to its end, or None once it passes
/// `DECOMPRESSED_BATCH_BYTES_MAX` (at most one byte more is ever produced).
fn inflate_bounded(dec: impl Read, bad: &'static str) -> Result<Option<Vec<u8>>, BatchError> {
    let mut out = Vec::new();
    dec.take(DECOMPRESSED_BATCH_BYTES_MAX as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| BatchError::InvalidRecord(bad))?;
    Ok((out.len() <= DECOMPRESSED_BATCH_BYTES_MAX).then_some(out))
}

fn gunzip(raw: &[u8]) -> Result<Option<Vec<u8>>, BatchError> {
    inflate_bounded(flate2::read::MultiGzDecoder::new(raw), "bad gzip data")
}

/// Snappy as Kafka clients write it: xerial framing (magic, versions, then
/// big-endian length-prefixed raw blocks) or a bare raw snappy block.
fn unsnappy(raw: &[u8]) -> Result<Option<Vec<u8>>, BatchError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER_BYTES: usize = 16;
    let bad = |_| BatchError::InvalidRecord("bad snappy data");
    let mut dec = snap::raw::Decoder::new();
    let mut out = Vec::new();
    let mut inflate = |block: &[u8], out: &mut Vec<u8>| -> Result<bool, BatchError> {
        let n = snap::raw::decompress_len(block).map_err(bad)?;
        if out.len() + n > DECOMPRESSED_BATCH_BYTES_MAX {
            return Ok(false);
        }
        let at = out.len();
        out.resize(at + n, 0);
        let got = dec.decompress(block, &mut out[at..]).map_err(bad)?;
        out.truncate(at + got);
        Ok(true)
    };
    if !raw.starts_with(XERIAL_MAGIC) {
        return Ok(inflate(raw, &mut out)?.then_some(out));
    }
    let mut pos = XERIAL_HEADER_BYTES.min(raw.len());
    while pos < raw.len() {
        let len_bytes: [u8; 4] = raw
            .get(pos..pos + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or(BatchError::InvalidRecord("truncated snappy block length"))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let block = raw
            .get(pos + 4..(pos + 4).saturating_add(len))
            .ok_or(BatchError::InvalidRecord("snappy block runs past the batch"))?;
        if !inflate(block, &mut out)? {
            return Ok(None);
        }
        pos += 4 + len;
    }
    Ok(Some(out))
}

/// Decodes every record of a records section (the batch's own, or the
/// decompressed one): exactly `recordCount` records that tile the section.
pub fn parse_records(h: &BatchHeader, section: &[u8]) -> Result<Vec<RecordView>, BatchError> {
    let count = usize::try_from(h.record_count).map_err(|_| BatchError::InvalidRecord("negative record count"))?;
    // Every record takes at least 7 bytes; a lying count cannot make us allocate much.
    let mut out = Vec::with_capacity(count.min(section.len() / 7 + 1));
    let mut pos = 0usize;
    while pos < section.len() {
        if out.len() == count {
            return Err(BatchError::InvalidRecord("more records than recordCount"));
        }
        let (len, n) = read_varint(&section[pos..])?;
        let len = usize::try_from(len).map_err(|_| BatchError::InvalidRecord("negative record length"))?;
        let body_start = pos + n;
        let end = body_start
            .checked_add(len)
            .filter(|e| *e <= section.len())
            .ok_or(BatchError::InvalidRecord("record runs past the batch"))?;
        let body = &section[body_start..end];
        let mut at = 1usize; // attributes
        if body.is_empty() {
            return Err(BatchError::InvalidRecord("empty record"));
        }
        let (ts_delta, n) = read_varlong(body.get(at..).unwrap_or_default())?;
        at += n;
        let (off_delta, n) = read_varint(body.get(at..).unwrap_or_default())?;
        at += n;
        let (key_len, n) = read_varint(body.get(at..).unwrap_or_default())?;
        at += n;
        let key = if key_len < 0 {
            None
        } else {
            let k = at..at + key_len as usize;
            if k.end > body.len() {
                return Err(BatchError::InvalidRecord("key runs past the record"));
            }
            at = k.end;
            Some(body_start + k.start..body_start + k.end)
        };
        let (value_len, _) = read_varint(body.get(at..).unwrap_or_default())?;
        let timestamp = if h.timestamp_type_log_append() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(ts_delta)
        };
        out.push(RecordView {
            offset: h.base_offset.wrapping_add(i64::from(off_delta)),
            timestamp,
            key,
            value_is_null: value_len < 0,
            span: pos..end,
        });
        pos = end;
    }
    if out.len() != count {
        return Err(BatchError::InvalidRecord("fewer records than recordCount"));
    }
    Ok(out)
}

/// Produce on a compacted topic: the index in `batch` of its first record
/// without a key (Kafka refuses such a batch with INVALID_RECORD). Control
/// batches are exempt. A batch that inflates past
/// `DECOMPRESSED_BATCH_BYTES_MAX` is not inspected (None): it is accepted,
/// and the cleaner keeps such batches whole, so no record is lost by it.
pub fn first_keyless_record(h: &BatchHeader, batch: &[u8]) -> Result<Option<usize>, BatchError> {
    if h.is_control() {
        return Ok(None);
    }
    let Some(section) = records_section(h, batch)? else {
        return Ok(None);
    };
    Ok(parse_records(h, &section)?.iter().position(|r| r.key.is_none()))
}

/// The transactions of a partition as the cleaner needs them: the aborted
/// ones, `(producer id, first offset, last offset = the ABORT marker's)`,
/// sorted, one producer's ranges never overlapping (it has one transaction
/// at a time); and the last stable offset, below which every transaction is
/// decided (committed unless aborted).
#[derive(Debug, Default)]
pub struct AbortedTxns {
    ranges: Vec<(i64, i64, i64)>,
    stable_end: i64,
}

/// No aborted transaction and none known decided (tests; a transactional
/// batch is then neither removed nor mapped).
pub static NO_ABORTED_TXNS: AbortedTxns = AbortedTxns {
    ranges: Vec::new(),
    stable_end: 0,
};

impl AbortedTxns {
    pub fn new(ranges: impl IntoIterator<Item = (i64, i64, i64)>, last_stable_offset: i64) -> AbortedTxns {
        let mut ranges: Vec<(i64, i64, i64)> = ranges.into_iter().collect();
        ranges.sort_unstable();
        AbortedTxns {
            ranges,
            stable_end: last_stable_offset,
        }
    }

    /// Is the transactional data batch `h` part of a committed transaction?
    pub fn committed(&self, h: &BatchHeader) -> bool {
        h.last_offset() < self.stable_end && !self.contains(h)
    }

    /// Was the transactional data batch `h` part of an aborted transaction?
    pub fn contains(&self, h: &BatchHeader) -> bool {
        let at = self
            .ranges
            .partition_point(|r| (r.0, r.1) <= (h.producer_id, h.base_offset));
        at.checked_sub(1)
            .map(|i| self.ranges[i])
            .is_some_and(|(pid, _, last)| pid == h.producer_id && h.last_offset() < last)
    }
}

/// What cleaning does with one record.
#[derive(Debug, Clone, Copy)]
pub struct CleanRules<'a> {
    pub now_ms: i64,
    /// A tombstone (null value) older than this is removed.
    pub delete_retention_ms: i64,
    /// Data batches of these transactions are removed (Kafka's cleaner does;
    /// read_committed consumers never saw them). Their markers stay.
    pub aborted: &'a AbortedTxns,
}

/// Kafka's rule: a keyed record stays only if no later record in the mapped
/// range has its key, and a tombstone only until `delete.retention.ms` after
/// its timestamp. Records without a key are kept (Kafka refuses them on a
/// compacted topic; logs written before the policy changed may hold some).
pub fn retains(r: &RecordView, section: &[u8], map: &KeyMap, rules: CleanRules) -> bool {
    let Some(k) = &r.key else { return true };
    if map.latest(&section[k.clone()]).is_some_and(|latest| r.offset < latest) {
        return false;
    }
    !(r.value_is_null && rules.now_ms.saturating_sub(r.timestamp) > rules.delete_retention_ms)
}

/// The fate of one batch in a cleaning pass.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchFate {
    /// Unchanged (nothing removed, a control batch, or records we cannot read).
    Keep,
    /// Every record removed.
    Drop { records: usize },
    /// Some records removed: the new batch bytes.
    Rewrite { bytes: Vec<u8>, removed: usize },
}

/// Applies `retains` to the records of `batch` (`h` is its header); a
/// batch of an aborted transaction goes whole.
pub fn clean_batch(h: &BatchHeader, batch: &[u8], map: &KeyMap, rules: CleanRules) -> BatchFate {
    if h.is_control() {
        return BatchFate::Keep;
    }
    if h.is_transactional() && rules.aborted.contains(h) {
        return BatchFate::Drop {
            records: usize::try_from(h.record_count).unwrap_or(0),
        };
    }
    let Ok(Some(section)) = records_section(h, batch) else {
        return BatchFate::Keep;
    };
    let Ok(records) = parse_records(h, &section) else {
        return BatchFate::Keep;
    };
    let kept: Vec<&RecordView> = records.iter().filter(|r| retains(r, &section, map, rules)).collect();
    if kept.len() == records.len() {
        return BatchFate::Keep;
    }
    if kept.is_empty() {
        return BatchFate::Drop { records: records.len() };
    }
    BatchFate::Rewrite {
        bytes: rebuild_batch(h, batch, &section, &kept),
        removed: records.len() - kept.len(),
    }
}

/// A batch with the header of `batch` and only the `kept` records (raw
/// bytes from `section`), uncompressed, with recordCount, batchLength,
/// maxTimestamp and CRC recomputed; offsets and producer fields unchanged.
pub fn rebuild_batch(h: &BatchHeader, batch: &[u8], section: &[u8], kept: &[&RecordView]) -> Vec<u8> {
    assert!(!kept.is_empty(), "a rebuilt batch holds at least one record");
    let records_len: usize = kept.iter().map(|r| r.span.len()).sum();
    let mut out = Vec::with_capacity(BatchHeader::SIZE + records_len);
    out.extend_from_slice(&batch[..BatchHeader::SIZE]);
    for r in kept {
        out.extend_from_slice(&section[r.span.clone()]);
    }
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[BATCH_LENGTH_POS..BATCH_LENGTH_POS + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = h.attributes & !ATTR_COMPRESSION_MASK;
    out[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
    if !h.timestamp_type_log_append() {
        let max_ts = kept.iter().map(|r| r.timestamp).max().unwrap_or(h.max_timestamp);
        out[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&max_ts.to_be_bytes());
    }
    out[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_POS..]);
    out[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Adds the keys of `batch` to `map` (control batches and unreadable ones
/// add nothing). False when the map filled up before every key was added.
///
/// A transactional batch adds its keys only once its transaction is known
/// committed (`txns.committed`): below the last stable offset and not
/// aborted. An open transaction may still abort, and an aborted record must
/// never supersede a committed one. Data of aborted transactions is removed
/// by `clean_batch`.
pub fn map_batch(h: &BatchHeader, batch: &[u8], map: &mut KeyMap, txns: &AbortedTxns) -> bool {
    if h.is_control() || (h.is_transactional() && !txns.committed(h)) {
        return true;
    }
    let Ok(Some(section)) = records_section(h, batch) else {
        return true;
    };
    let Ok(records) = parse_records(h, &section) else {
        return true;
    };
    records
        .iter()
        .filter_map(|r| r.key.as_ref().map(|k| (&section[k.clone()], r.offset)))
        .all(|(k, o)| map.put(k, o))
}

/// The dirty share of the cleanable bytes (Kafka's cleanable ratio):
/// `dirty / (clean + dirty)`, 0 for an empty log.
pub fn dirty_ratio(clean_bytes: u64, dirty_bytes: u64) -> f64 {
    let total = clean_bytes + dirty_bytes;
    if total == 0 {
        0.0
    } else {
        dirty_bytes as f64 / total as f64
    }
}

/// Reads the checkpointed first dirty offset, if the file exists.
/// Blocking: the cleaner calls it on glommio's blocking pool.
pub fn read_first_dirty(dir: &Path) -> io::Result<Option<i64>> {
    let text = match std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lines = text.lines();
    match (lines.next(), lines.next().and_then(|l| l.trim().parse::<i64>().ok())) {
        (Some(CHECKPOINT_VERSION), Some(v)) if v >= 0 => Ok(Some(v)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} does not hold an offset", dir.join(CLEANER_CHECKPOINT).display()),
        )),
    }
}

/// Durably replaces the first dirty offset: temp file, fsync, rename, fsync dir.
/// Blocking: the cleaner calls it on glommio's blocking pool.
pub fn write_first_dirty(dir: &Path, offset: i64) -> io::Result<()> {
    assert!(offset >= 0, "first dirty offset is never negative");
    let tmp = dir.join(CLEANER_CHECKPOINT_TMP);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{CHECKPOINT_VERSION}\n{offset}\n").as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(CLEANER_CHECKPOINT))?;
    File::open(dir)?.sync_all()
}

/// Test helper: an uncompressed batch of keyed records (`None` value = tombstone).
#[cfg(test)]
pub(crate) fn encode_keyed(base_offset: i64, base_ts: i64, recs: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        while u >= 0x80 {
            out.push((u as u8 & 0x7f) | 0x80);
            u >>= 7;
        }
        out.push(u as u8);
    }
    let mut records = Vec::new();
    for (i, (k, v)) in recs.iter().enumerate() {
        let mut body = vec![0u8];
        varint(&mut body, i as i64); // timestamp delta
        varint(&mut body, i as i64); // offset delta
        varint(&mut body, k.len() as i64);
        body.extend_from_slice(k);
        match v {
            Some(v) => {
                varint(&mut body, v.len() as i64);
                body.extend_from_slice(v);
            }
            None => varint(&mut body, -1),
        }
        varint(&mut body, 0);
        varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let n = recs.len() as i32;
    let mut b = Vec::new();
    b.extend_from_slice(&base_offset.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&(base_ts + i64::from(n) - 1).to_be_bytes());
    b.extend_from_slice(&7i64.to_be_bytes()); // producer id
    b.extend_from_slice(&3i16.to_be_bytes()); // producer epoch
    b.extend_from_slice(&11i32.to_be_bytes()); // base sequence
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::validate_batches;

    const RULES: CleanRules = CleanRules {
        now_ms: 1_000_000,
        delete_retention_ms: 1000,
        aborted: &NO_ABORTED_TXNS,
    };

    #[test]
    fn key_map_keeps_the_latest_offset_and_is_bounded() {
        // Proves put keeps the max offset per key and refuses new keys once full.
        let mut m = KeyMap::new(2);
        assert!(m.put(b"a", 5));
        assert!(m.put(b"a", 3));
        assert!(m.put(b"b", 1));
        assert!(!m.put(b"c", 9));
        assert!(m.put(b"b", 8));
        assert_eq!(
            (m.latest(b"a"), m.latest(b"b"), m.latest(b"c")),
            (Some(5), Some(8), None)
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn parses_keys_values_and_offsets() {
        // Proves record decoding finds each key, null values and absolute offsets.
        let b = encode_keyed(100, 5000, &[(b"k1", Some(b"v")), (b"k2", None)]);
        let h = BatchHeader::parse(&b).expect("header");
        let sec = records_section(&h, &b).expect("section").expect("uncompressed");
        let rs = parse_records(&h, &sec).expect("records");
        assert_eq!(rs.len(), 2);
        assert_eq!(&sec[rs[0].key.clone().expect("key")], b"k1");
        assert_eq!((rs[0].offset, rs[1].offset), (100, 101));
        assert_eq!((rs[0].timestamp, rs[1].timestamp), (5000, 5001));
        assert!(!rs[0].value_is_null && rs[1].value_is_null);
    }

    #[test]
    fn rewrite_keeps_offsets_producer_fields_and_a_valid_crc() {
        // Proves a cleaned batch keeps base/last offset and producer fields, shrinks, and still validates.
        let b = encode_keyed(
            10,
            999_000,
            &[
                (b"a", Some(b"1")),
                (b"b", Some(b"2")),
                (b"a", Some(b"3")),
                (b"c", Some(b"4")),
            ],
        );
        let h = BatchHeader::parse(&b).expect("header");
        let mut map = KeyMap::new(16);
        assert!(map_batch(&h, &b, &mut map, &NO_ABORTED_TXNS));
        // A later batch overwrote "c".
        map.put(b"c", 50);
        let BatchFate::Rewrite { bytes, removed } = clean_batch(&h, &b, &map, RULES) else {
            panic!("expected a rewrite")
        };
        assert_eq!(removed, 2);
        let nh = validate_batches(&bytes);
        // validate_batches insists on lastOffsetDelta == recordCount - 1 (a produce rule), which a cleaned batch breaks.
        assert!(nh.is_err());
        let nh = BatchHeader::parse(&bytes).expect("header");
        nh.check_crc(&bytes).expect("crc");
        assert_eq!((nh.base_offset, nh.last_offset(), nh.record_count), (10, 13, 2));
        assert_eq!((nh.producer_id, nh.producer_epoch, nh.base_sequence), (7, 3, 11));
        let sec = records_section(&nh, &bytes).expect("s").expect("u");
        let rs = parse_records(&nh, &sec).expect("records");
        let kept: Vec<(i64, &[u8])> = rs.iter().map(|r| (r.offset, &sec[r.key.clone().expect("k")])).collect();
        assert_eq!(kept, vec![(11, &b"b"[..]), (12, &b"a"[..])]);
        assert_eq!(nh.max_timestamp, 999_002);
    }

    #[test]
    fn tombstones_go_only_after_delete_retention() {
        // Proves a latest tombstone stays while young and is removed once older than delete.retention.ms.
        let young = encode_keyed(0, RULES.now_ms - 10, &[(b"x", None)]);
        let old = encode_keyed(0, RULES.now_ms - 5000, &[(b"x", None)]);
        let mut map = KeyMap::new(4);
        map.put(b"x", 0);
        let hy = BatchHeader::parse(&young).expect("h");
        let ho = BatchHeader::parse(&old).expect("h");
        assert_eq!(clean_batch(&hy, &young, &map, RULES), BatchFate::Keep);
        assert_eq!(clean_batch(&ho, &old, &map, RULES), BatchFate::Drop { records: 1 });
    }

    #[test]
    fn control_unreadable_and_untouched_batches_are_kept() {
        // Proves control batches, undecodable batches and batches with only latest records stay byte-identical.
        let mut map = KeyMap::new(4);
        map.put(b"a", 100);
        let mut ctrl = encode_keyed(0, 0, &[(b"a", Some(b"1"))]);
        ctrl[22] |= 0x20;
        let h = BatchHeader::parse(&ctrl).expect("h");
        assert_eq!(clean_batch(&h, &ctrl, &map, RULES), BatchFate::Keep);
        // Flagged lz4 / zstd but holding plain records: not a valid frame, kept whole.
        for codec in [0x03, 0x04, 0x07] {
            let mut bad = encode_keyed(0, 0, &[(b"a", Some(b"1"))]);
            bad[22] |= codec;
            let h = BatchHeader::parse(&bad).expect("h");
            assert_eq!(clean_batch(&h, &bad, &map, RULES), BatchFate::Keep);
        }
        let mut txn = encode_keyed(200, 0, &[(b"t", Some(b"1"))]);
        txn[22] |= 0x10;
        let crc = crc32c::crc32c(&txn[21..]);
        txn[17..21].copy_from_slice(&crc.to_be_bytes());
        let h = BatchHeader::parse(&txn).expect("h");
        assert!(map_batch(&h, &txn, &mut map, &NO_ABORTED_TXNS));
        assert_eq!(map.latest(b"t"), None, "transactional keys never supersede (aborts are not tracked)");
        let latest = encode_keyed(100, RULES.now_ms, &[(b"a", Some(b"1"))]);
        let h = BatchHeader::parse(&latest).expect("h");
        assert_eq!(clean_batch(&h, &latest, &map, RULES), BatchFate::Keep);
    }

    /// `plain` with its records section replaced by `body` under `codec`.
    fn recompressed(plain: &[u8], codec: u8, body: &[u8]) -> Vec<u8> {
        let mut b = plain[..61].to_vec();
        b.extend_from_slice(body);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[22] |= codec;
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn gzip(raw: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(raw).expect("gzip");
        gz.finish().expect("gzip")
    }

    fn lz4_frame(raw: &[u8]) -> Vec<u8> {
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        enc.write_all(raw).expect("lz4");
        enc.finish().expect("lz4")
    }

    fn zstd(raw: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(raw, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn compressed_batches_are_decoded_and_written_back_uncompressed() {
        // Proves gzip, lz4 (frame) and zstd batches have their keys read and are cleaned into uncompressed batches with the same offsets.
        let plain = encode_keyed(20, RULES.now_ms, &[(b"a", Some(b"1")), (b"b", Some(b"2"))]);
        let codecs: [(u8, fn(&[u8]) -> Vec<u8>); 3] = [(1, gzip), (3, lz4_frame), (4, zstd)];
        for (codec, compress) in codecs {
            let b = recompressed(&plain, codec, &compress(&plain[61..]));
            let h = BatchHeader::parse(&b).expect("h");
            assert_eq!(h.compression(), codec);
            let mut map = KeyMap::new(4);
            assert!(map_batch(&h, &b, &mut map, &NO_ABORTED_TXNS));
            assert_eq!(map.latest(b"b"), Some(21), "codec {codec}");
            map.put(b"a", 99);
            let BatchFate::Rewrite { bytes, removed: 1 } = clean_batch(&h, &b, &map, RULES) else {
                panic!("expected a rewrite for codec {codec}")
            };
            let nh = BatchHeader::parse(&bytes).expect("h");
            nh.check_crc(&bytes).expect("crc");
            assert_eq!(
                (nh.compression(), nh.base_offset, nh.last_offset(), nh.record_count),
                (0, 20, 21, 1)
            );
            let sec = records_section(&nh, &bytes).expect("s").expect("u");
            let rs = parse_records(&nh, &sec).expect("records");
            assert_eq!(&sec[rs[0].key.clone().expect("k")], b"b");
        }
    }

    #[test]
    fn keyless_records_are_found_inside_compressed_batches() {
        // Proves first_keyless_record finds a null key in plain and compressed batches, ignores empty keys and control batches.
        let mut plain = encode_keyed(0, 0, &[(b"a", Some(b"1")), (b"", Some(b"2")), (b"c", Some(b"3"))]);
        let h = BatchHeader::parse(&plain).expect("h");
        assert_eq!(first_keyless_record(&h, &plain).expect("ok"), None, "an empty key is a key");
        // Turn the empty key (length varint 0) of record 1 into a null key (varint -1 = 0x01) of the same size.
        let sec = records_section(&h, &plain).expect("s").expect("u").into_owned();
        let rs = parse_records(&h, &sec).expect("records");
        let key_len_at = 61 + rs[1].key.clone().expect("k").start - 1;
        assert_eq!(plain[key_len_at], 0);
        plain[key_len_at] = 1;
        let crc = crc32c::crc32c(&plain[21..]);
        plain[17..21].copy_from_slice(&crc.to_be_bytes());
        let h = BatchHeader::parse(&plain).expect("h");
        assert_eq!(first_keyless_record(&h, &plain).expect("ok"), Some(1));
        let codecs: [(u8, fn(&[u8]) -> Vec<u8>); 3] = [(1, gzip), (3, lz4_frame), (4, zstd)];
        for (codec, compress) in codecs {
            let b = recompressed(&plain, codec, &compress(&plain[61..]));
            let h = BatchHeader::parse(&b).expect("h");
            assert_eq!(first_keyless_record(&h, &b).expect("ok"), Some(1), "codec {codec}");
        }
        let mut ctrl = plain.clone();
        ctrl[22] |= 0x20;
        let h = BatchHeader::parse(&ctrl).expect("h");
        assert_eq!(first_keyless_record(&h, &ctrl).expect("ok"), None);
    }

    /// `encode_keyed` as a transactional batch of producer 7.
    fn transactional(base_offset: i64, recs: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
        let mut b = encode_keyed(base_offset, RULES.now_ms, recs);
        b[22] |= 0x10;
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn batches_of_aborted_transactions_are_removed() {
        // Proves a transactional batch inside an aborted range of its producer is dropped, and committed or other producers' batches are not.
        let aborted = AbortedTxns::new([(7, 10, 15), (7, 30, 40), (8, 0, 100)], 50);
        let rules = CleanRules { aborted: &aborted, ..RULES };
        let map = KeyMap::new(4);
        let in_abort = transactional(11, &[(b"a", Some(b"1")), (b"b", Some(b"2"))]);
        let h = BatchHeader::parse(&in_abort).expect("h");
        assert!(aborted.contains(&h));
        assert_eq!(clean_batch(&h, &in_abort, &map, rules), BatchFate::Drop { records: 2 });
        for base in [0, 16, 20, 41] {
            let committed = transactional(base, &[(b"a", Some(b"1"))]);
            let h = BatchHeader::parse(&committed).expect("h");
            assert!(!aborted.contains(&h), "offset {base}");
            assert_eq!(clean_batch(&h, &committed, &map, rules), BatchFate::Keep, "offset {base}");
        }
        // Not transactional (producer 7 at an aborted offset): kept.
        let plain = encode_keyed(12, RULES.now_ms, &[(b"a", Some(b"1"))]);
        let h = BatchHeader::parse(&plain).expect("h");
        assert_eq!(clean_batch(&h, &plain, &map, rules), BatchFate::Keep);
        // Keys of committed transactional batches below the last stable offset supersede; aborted or undecided ones do not.
        let mut map = KeyMap::new(8);
        for (base, key) in [(11, b"ab"), (20, b"cm"), (60, b"op")] {
            let b = transactional(base, &[(key, Some(b"1"))]);
            let h = BatchHeader::parse(&b).expect("h");
            assert!(map_batch(&h, &b, &mut map, &aborted));
        }
        assert_eq!((map.latest(b"ab"), map.latest(b"cm"), map.latest(b"op")), (None, Some(20), None));
        // The marker itself stays.
        let mut marker = transactional(15, &[(b"\0\0\0\0", Some(b"m"))]);
        marker[22] |= 0x20;
        let h = BatchHeader::parse(&marker).expect("h");
        assert_eq!(clean_batch(&h, &marker, &map, rules), BatchFate::Keep);
    }

    #[test]
    fn compression_bombs_are_not_inflated_past_the_bound() {
        // Proves a small lz4/zstd/gzip section that inflates past DECOMPRESSED_BATCH_BYTES_MAX yields None, and garbage an error.
        let zeros = vec![0u8; DECOMPRESSED_BATCH_BYTES_MAX + 4096];
        let plain = encode_keyed(0, 0, &[(b"a", Some(b"1"))]);
        let codecs: [(u8, fn(&[u8]) -> Vec<u8>); 3] = [(1, gzip), (3, lz4_frame), (4, zstd)];
        for (codec, compress) in codecs {
            let body = compress(&zeros);
            assert!(body.len() < 1 << 20, "codec {codec} compresses zeros");
            let b = recompressed(&plain, codec, &body);
            let h = BatchHeader::parse(&b).expect("h");
            assert!(matches!(records_section(&h, &b), Ok(None)), "codec {codec}");
            let garbage = recompressed(&plain, codec, b"definitely not a frame");
            let h = BatchHeader::parse(&garbage).expect("h");
            assert!(records_section(&h, &garbage).is_err(), "codec {codec}");
        }
    }

    #[test]
    fn lying_records_are_errors_not_panics() {
        // Proves truncated or miscounted records sections are rejected by parse_records.
        let b = encode_keyed(0, 0, &[(b"key", Some(b"value"))]);
        let h = BatchHeader::parse(&b).expect("h");
        for cut in 0..b.len() - 61 {
            let _ = parse_records(&h, &b[61..61 + cut]);
        }
        let mut h2 = h;
        h2.record_count = 2;
        assert!(parse_records(&h2, &b[61..]).is_err());
    }

    #[test]
    fn batches_from_real_gzip_snappy_lz4_and_zstd_encoders_decode() {
        // Proves the fuzz seeds (fuzz/make_seeds.py: lz4 and zstd CLIs at several settings, gzip, snappy) decode to their records and keys (lz4_flex also reads the legacy lz4 format); a 128 MiB zstd window is an error.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/compressed_records");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("seed dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if !name.starts_with("seed-") {
                continue;
            }
            seen += 1;
            let b = std::fs::read(&path).expect("read seed");
            let [h] = validate_batches(&b).expect("seed validates")[..] else { panic!("{name}: one batch") };
            if name.contains("zstd-long-window") {
                assert!(records_section(&h, &b).is_err(), "{name}");
                assert!(first_keyless_record(&h, &b).is_err(), "{name}");
                continue;
            }
            let sec = records_section(&h, &b).expect(&name).expect("within the bound");
            let rs = parse_records(&h, &sec).expect(&name);
            assert_eq!(rs.len(), h.record_count as usize, "{name}");
            let expected_keyless = name.ends_with("-keyless").then_some(1);
            assert_eq!(first_keyless_record(&h, &b), Ok(expected_keyless), "{name}");
        }
        assert!(seen >= 30, "seeds present ({seen})");
    }

    #[test]
    fn client_base_offsets_near_i64_max_wrap_instead_of_overflowing() {
        // Proves a client batch whose baseOffset + offset deltas pass i64::MAX (as fuzz/regressions/compressed_records/*, which the compressed_records target replays) is validated, key-checked and mapped without an overflow panic (only a build with overflow checks, e.g. `cargo fuzz run -a`, can see the old panic; release wraps either way).
        let b = encode_keyed(i64::MAX - 1, 0, &[(b"a", Some(b"1")), (b"b", Some(b"2")), (b"c", None)]);
        let h = validate_batches(&b).expect("validates")[0];
        assert_eq!(h.last_offset(), i64::MIN);
        assert_eq!(first_keyless_record(&h, &b), Ok(None));
        let rs = parse_records(&h, &records_section(&h, &b).expect("s").expect("s")).expect("records");
        assert_eq!(rs.iter().map(|r| r.offset).collect::<Vec<_>>(), [i64::MAX - 1, i64::MAX, i64::MIN]);
        let mut map = KeyMap::new(8);
        assert!(map_batch(&h, &b, &mut map, &NO_ABORTED_TXNS));
        let _ = clean_batch(&h, &b, &map, RULES);
    }

    #[test]
    fn first_dirty_checkpoint_roundtrips() {
        // Proves the cleaner checkpoint survives rewrites and rejects garbage.
        let dir = std::env::temp_dir().join(format!("fjord-cleaner-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        assert_eq!(read_first_dirty(&dir).expect("read"), None);
        write_first_dirty(&dir, 5).expect("write");
        write_first_dirty(&dir, 9).expect("write");
        assert_eq!(read_first_dirty(&dir).expect("read"), Some(9));
        std::fs::write(dir.join(CLEANER_CHECKPOINT), "x").expect("write");
        assert!(read_first_dirty(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
