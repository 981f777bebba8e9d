//! RecordBatch v2 header view and produce-input validation.
//!
//! Owns: parsing the fixed 61-byte RecordBatch v2 header, CRC32C checking, and
//! walking the varint-encoded records of an *uncompressed* batch. Pure
//! functions, no I/O and no state: callable from any shard/thread. It never
//! decompresses and never re-encodes a batch.
//!
//! Header layout (all big-endian): baseOffset 0, batchLength 8 (= total − 12),
//! partitionLeaderEpoch 12, magic 16, crc 17, attributes 21, lastOffsetDelta 23,
//! baseTimestamp 27, maxTimestamp 35, producerId 43, producerEpoch 51,
//! baseSequence 53, recordCount 57, records from 61. The CRC32C covers
//! `[21, 12 + batchLength)`; baseOffset and partitionLeaderEpoch are outside it,
//! which is why the log can patch them in place.

use std::fmt;

/// Byte offsets inside the v2 header.
pub(crate) const BASE_OFFSET_POS: usize = 0;
pub(crate) const BATCH_LENGTH_POS: usize = 8;
pub(crate) const LEADER_EPOCH_POS: usize = 12;
pub(crate) const MAGIC_POS: usize = 16;
pub(crate) const CRC_POS: usize = 17;
pub(crate) const ATTRIBUTES_POS: usize = 21;
/// `batchLength` counts everything after the first 12 bytes (baseOffset + batchLength).
pub(crate) const LOG_OVERHEAD: usize = 12;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// The fixed header of a RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// Why a batch (or a produce request's `records`) was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a v2 header (61) where a batch should start.
    TooShort,
    /// `batchLength` is smaller than a header or runs past the available bytes,
    /// or the records inside do not add up to it.
    LengthMismatch { declared: i64, available: usize },
    /// Magic byte other than 2.
    UnsupportedMagic(i8),
    /// Stored CRC32C differs from the computed one.
    CrcMismatch { expected: u32, computed: u32 },
    /// `recordCount` < 1, `lastOffsetDelta` != `recordCount − 1`, or the number
    /// of records actually encoded differs from `recordCount`.
    RecordCountMismatch {
        record_count: i32,
        last_offset_delta: i32,
    },
    /// An encoded record is malformed (bad varint, negative length…).
    InvalidRecord(&'static str),
    /// No bytes at all.
    Empty,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::TooShort => write!(f, "fewer bytes than a record batch header"),
            BatchError::LengthMismatch { declared, available } => write!(
                f,
                "batch length {declared} does not fit the {available} bytes available"
            ),
            BatchError::UnsupportedMagic(m) => write!(f, "unsupported magic {m} (only 2)"),
            BatchError::CrcMismatch { expected, computed } => {
                write!(f, "crc mismatch: stored {expected:#010x}, computed {computed:#010x}")
            }
            BatchError::RecordCountMismatch { record_count, last_offset_delta } => write!(
                f,
                "record count {record_count} inconsistent with last offset delta {last_offset_delta}"
            ),
            BatchError::InvalidRecord(why) => write!(f, "invalid record: {why}"),
            BatchError::Empty => write!(f, "no record batches"),
        }
    }
}

impl std::error::Error for BatchError {}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    be_i32(b, at) as u32
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Size of the fixed v2 header.
    pub const SIZE: usize = 61;

    /// Parses the first 61 bytes of `buf`. Checks only that the bytes are there
    /// and that magic is 2 (other magics have a different layout after byte 16).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < Self::SIZE {
            return Err(BatchError::TooShort);
        }
        let magic = buf[MAGIC_POS] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_POS),
            batch_length: be_i32(buf, BATCH_LENGTH_POS),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_POS),
            magic,
            crc: be_u32(buf, CRC_POS),
            attributes: be_i16(buf, ATTRIBUTES_POS),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        })
    }

    /// Whole batch size on the wire / on disk: `batch_length + 12`.
    /// Only meaningful once `batch_length >= 49` has been checked.
    pub fn total_size(&self) -> usize {
        (self.batch_length.max(0) as usize) + LOG_OVERHEAD
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Timestamp type bit: true for LogAppendTime, false for CreateTime.
    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }

    /// Wraps instead of overflowing: a client's batch may carry any base
    /// offset (append assigns the real one), and a debug build must not
    /// panic on it.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Checks the header against the bytes of the whole batch `batch`
    /// (`batch.len()` must be `total_size()`): length sanity and CRC32C.
    pub(crate) fn check_crc(&self, batch: &[u8]) -> Result<(), BatchError> {
        debug_assert_eq!(batch.len(), self.total_size());
        let computed = crc32c::crc32c(&batch[ATTRIBUTES_POS..]);
        if computed != self.crc {
            return Err(BatchError::CrcMismatch {
                expected: self.crc,
                computed,
            });
        }
        Ok(())
    }
}

/// Checks `batch_length` of a parsed header against the bytes available from
/// the batch start. Returns the total size.
pub(crate) fn checked_total_size(h: &BatchHeader, available: usize) -> Result<usize, BatchError> {
    let declared = i64::from(h.batch_length);
    let min = (BatchHeader::SIZE - LOG_OVERHEAD) as i64;
    if declared < min || declared as u64 + LOG_OVERHEAD as u64 > available as u64 {
        return Err(BatchError::LengthMismatch {
            declared,
            available,
        });
    }
    Ok(h.total_size())
}

/// Validates a produce request's `records` field: one or more complete v2
/// batches exactly tiling `records` (no trailing bytes), each with magic 2, a
/// `batch_length` that fits, a correct CRC32C, `record_count >= 1`,
/// `last_offset_delta == record_count − 1`, and — for uncompressed batches —
/// records whose own lengths add up exactly to the batch.
pub fn validate_batches(records: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut headers = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        let h = BatchHeader::parse(rest)?;
        let total = checked_total_size(&h, rest.len())?;
        let batch = &rest[..total];
        h.check_crc(batch)?;
        if h.record_count < 1 || h.last_offset_delta != h.record_count - 1 {
            return Err(BatchError::RecordCountMismatch {
                record_count: h.record_count,
                last_offset_delta: h.last_offset_delta,
            });
        }
        if h.compression() == 0 {
            let walked = walk_records(&h, batch, |_| true)?;
            if walked.count != h.record_count as usize || walked.consumed != total {
                return Err(BatchError::RecordCountMismatch {
                    record_count: h.record_count,
                    last_offset_delta: h.last_offset_delta,
                });
            }
        }
        headers.push(h);
        pos += total;
    }
    Ok(headers)
}

/// One record's position-independent facts, as seen while walking a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordInfo {
    pub offset: i64,
    pub timestamp: i64,
}

pub(crate) struct Walked {
    /// Records visited (stops early if the visitor returned false).
    pub count: usize,
    /// Byte position in the batch after the last visited record.
    pub consumed: usize,
    /// The record at which the visitor returned false, if any.
    pub stopped_at: Option<RecordInfo>,
}

/// Walks the records of an uncompressed batch (`batch` is the whole batch,
/// header included), calling `visit` for each; stops when it returns false.
/// Never reads past `batch`.
pub(crate) fn walk_records(
    h: &BatchHeader,
    batch: &[u8],
    mut visit: impl FnMut(RecordInfo) -> bool,
) -> Result<Walked, BatchError> {
    let mut pos = BatchHeader::SIZE;
    let mut count = 0usize;
    // Bounded by the batch length: every record consumes at least one byte.
    while pos < batch.len() {
        let (len, n) = read_varint(&batch[pos..])?;
        if len < 0 {
            return Err(BatchError::InvalidRecord("negative record length"));
        }
        let body_start = pos + n;
        let body_end = body_start
            .checked_add(len as usize)
            .filter(|e| *e <= batch.len())
            .ok_or(BatchError::InvalidRecord("record runs past the batch"))?;
        let body = &batch[body_start..body_end];
        // attributes (1 byte), timestampDelta varlong, offsetDelta varint.
        if body.is_empty() {
            return Err(BatchError::InvalidRecord("empty record"));
        }
        let (ts_delta, n1) = read_varlong(&body[1..])?;
        let (off_delta, _) = read_varint(&body[1 + n1..])?;
        let info = RecordInfo {
            offset: h.base_offset.wrapping_add(i64::from(off_delta)),
            timestamp: h.base_timestamp.wrapping_add(ts_delta),
        };
        count += 1;
        pos = body_end;
        if !visit(info) {
            return Ok(Walked {
                count,
                consumed: pos,
                stopped_at: Some(info),
            });
        }
    }
    Ok(Walked {
        count,
        consumed: pos,
        stopped_at: None,
    })
}

fn read_uvarint64(buf: &[u8], max_bytes: usize) -> Result<(u64, usize), BatchError> {
    let mut value = 0u64;
    for (i, b) in buf.iter().take(max_bytes).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(BatchError::InvalidRecord("bad varint"))
}

/// Zig-zag varint (i32), as Kafka encodes record fields. Returns (value, bytes used).
pub(crate) fn read_varint(buf: &[u8]) -> Result<(i32, usize), BatchError> {
    let (u, n) = read_uvarint64(buf, 5)?;
    let u = u as u32;
    Ok((((u >> 1) as i32) ^ -((u & 1) as i32), n))
}

/// Zig-zag varlong (i64).
pub(crate) fn read_varlong(buf: &[u8]) -> Result<(i64, usize), BatchError> {
    let (u, n) = read_uvarint64(buf, 10)?;
    Ok((((u >> 1) as i64) ^ -((u & 1) as i64), n))
}

/// Test helper: encodes uncompressed v2 batches by hand (no dependency on an
/// encoder under test).
#[cfg(test)]
pub(crate) mod testing {
    /// Runs a test body inside a glommio executor small enough for the 8 MiB memlock limit.
    pub(crate) fn run_local<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 << 10)
            .make()
            .expect("glommio executor")
            .run(f());
    }

    /// A fresh, not yet created directory under the system temp dir.
    pub(crate) fn temp_dir(prefix: &str, name: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let d = std::env::temp_dir().join(format!("fjord-{prefix}-{name}-{}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if u < 0x80 {
                out.push(u as u8);
                return;
            }
            out.push((u as u8 & 0x7f) | 0x80);
            u >>= 7;
        }
    }

    /// One uncompressed batch: `n` records, record i has timestamp
    /// `base_ts + ts_step * i` and value `value_len` bytes of `i as u8`.
    pub fn encode_batch(n: usize, base_ts: i64, ts_step: i64, value_len: usize) -> Vec<u8> {
        encode_batch_with(n, base_ts, ts_step, value_len, 0)
    }

    /// As `encode_batch`, with raw `attributes` (e.g. a compression id, for
    /// tests that only look at headers).
    pub fn encode_batch_with(
        n: usize,
        base_ts: i64,
        ts_step: i64,
        value_len: usize,
        attributes: i16,
    ) -> Vec<u8> {
        assert!(n >= 1);
        let mut records = Vec::new();
        for i in 0..n {
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, ts_step * i as i64);
            put_varint(&mut body, i as i64);
            put_varint(&mut body, -1); // null key
            put_varint(&mut body, value_len as i64);
            body.extend(std::iter::repeat_n(i as u8, value_len));
            put_varint(&mut body, 0); // no headers
            put_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let max_ts = base_ts + ts_step.max(0) * (n as i64 - 1);
        let mut b = Vec::with_capacity(61 + records.len());
        b.extend_from_slice(&0i64.to_be_bytes()); // base offset
        b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch
        b.push(2); // magic
        b.extend_from_slice(&0u32.to_be_bytes()); // crc placeholder
        b.extend_from_slice(&attributes.to_be_bytes());
        b.extend_from_slice(&((n - 1) as i32).to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&(n as i32).to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::testing::encode_batch;
    use super::*;

    #[test]
    fn accepts_good_batches() {
        // Proves that well-formed consecutive batches validate and headers parse right.
        let mut buf = encode_batch(3, 1000, 10, 5);
        buf.extend(encode_batch(1, 2000, 0, 0));
        let hs = validate_batches(&buf).expect("valid");
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[0].record_count, 3);
        assert_eq!(hs[0].last_offset_delta, 2);
        assert_eq!(hs[0].max_timestamp, 1020);
        assert_eq!(hs[1].base_timestamp, 2000);
        assert_eq!(hs[0].total_size() + hs[1].total_size(), buf.len());
        assert_eq!(hs[0].compression(), 0);
        assert!(!hs[0].is_transactional() && !hs[0].is_control());
    }

    #[test]
    fn rejects_bad_crc() {
        // Proves that a flipped byte inside the CRC-covered range is caught.
        let mut buf = encode_batch(2, 0, 1, 8);
        let last = buf.len() - 2;
        buf[last] ^= 0xff;
        assert!(matches!(
            validate_batches(&buf),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn rejects_wrong_magic() {
        // Proves that magic 1 is reported as UnsupportedMagic before the CRC check.
        let mut buf = encode_batch(1, 0, 0, 1);
        buf[MAGIC_POS] = 1;
        assert_eq!(validate_batches(&buf), Err(BatchError::UnsupportedMagic(1)));
    }

    #[test]
    fn rejects_truncated_and_lying_lengths() {
        // Proves that truncated input, a too-large and a too-small batch_length are rejected.
        let buf = encode_batch(2, 0, 1, 8);
        assert_eq!(validate_batches(&buf[..40]), Err(BatchError::TooShort));
        assert!(matches!(
            validate_batches(&buf[..buf.len() - 1]),
            Err(BatchError::LengthMismatch { .. })
        ));
        let mut small = buf.clone();
        small[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&small),
            Err(BatchError::LengthMismatch { .. })
        ));
        let mut neg = buf.clone();
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate_batches(&neg),
            Err(BatchError::LengthMismatch { .. })
        ));
        assert_eq!(validate_batches(&[]), Err(BatchError::Empty));
    }

    #[test]
    fn rejects_trailing_garbage() {
        // Proves that bytes after the last complete batch are rejected, not ignored.
        let mut buf = encode_batch(1, 0, 0, 3);
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(validate_batches(&buf), Err(BatchError::TooShort));
    }

    #[test]
    fn rejects_inconsistent_record_count() {
        // Proves that record_count / last_offset_delta lies are caught even with a valid CRC.
        let mut buf = encode_batch(3, 0, 1, 2);
        buf[57..61].copy_from_slice(&4i32.to_be_bytes());
        buf[23..27].copy_from_slice(&3i32.to_be_bytes());
        let crc = crc32c::crc32c(&buf[21..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batches(&buf),
            Err(BatchError::RecordCountMismatch { .. })
        ));
        let mut zero = encode_batch(1, 0, 0, 2);
        zero[57..61].copy_from_slice(&0i32.to_be_bytes());
        let crc = crc32c::crc32c(&zero[21..]);
        zero[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batches(&zero),
            Err(BatchError::RecordCountMismatch { .. })
        ));
    }

    #[test]
    fn walks_record_timestamps() {
        // Proves that the varint record walker recovers each record's offset and timestamp.
        let buf = encode_batch(4, 500, 7, 3);
        let h = BatchHeader::parse(&buf).expect("header");
        let mut seen = Vec::new();
        let w = walk_records(&h, &buf, |r| {
            seen.push((r.offset, r.timestamp));
            true
        })
        .expect("walk");
        assert_eq!(w.count, 4);
        assert_eq!(w.consumed, buf.len());
        assert_eq!(seen, vec![(0, 500), (1, 507), (2, 514), (3, 521)]);
    }
}
