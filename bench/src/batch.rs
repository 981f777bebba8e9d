//! RecordBatch v2 (magic 2) building and parsing for the bench client.
//!
//! Owns the wire layout of a batch: the producer tasks build one batch per
//! partition here (records written once, compressed as a whole when asked,
//! CRC32C over attributes..end), and the consumer tasks walk fetched record
//! sets here (batch headers, then records, decompressing when needed).
//! Runs on whatever tokio worker thread runs the producer/consumer task; it
//! holds no shared state.
//!
//! Why hand-built and not `kafka_protocol::records::RecordBatchEncoder`: that
//! encoder starts a new batch whenever `offset - sequence` changes, so without
//! idempotence it writes one batch per record; it also allocates per record.
//! Here a batch costs one pass over the payload plus one CRC.

use bytes::{BufMut, Bytes, BytesMut};
use std::io::{Read, Write};

/// Offset of each RecordBatch v2 header field (big-endian).
pub mod layout {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
    pub const RECORDS: usize = 61;
    /// batchLength counts everything after itself.
    pub const LENGTH_PREFIX: usize = 12;
}

/// Errors from building or parsing a batch.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("unsupported magic {0} (only RecordBatch v2)")]
    Magic(i8),
    #[error("CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    Crc { expected: u32, actual: u32 },
    #[error("malformed varint in record")]
    Varint,
    #[error("malformed record: {0}")]
    Record(&'static str),
    #[error("compression codec {0} not supported by this build")]
    Codec(u8),
    #[error("compression I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
}

/// Compression codec, the low three bits of the batch attributes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
}

impl Compression {
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
        }
    }
}

/// Appends a zigzag varint (Kafka's varlong encoding; also valid for varint).
pub fn put_varlong(buf: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Reads a zigzag varint from `data` at `*pos`, advancing `*pos`.
pub fn get_varlong(data: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *data.get(*pos).ok_or(BatchError::Varint)?;
        *pos += 1;
        result |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(BatchError::Varint);
        }
    }
    Ok(((result >> 1) as i64) ^ -((result & 1) as i64))
}

/// Builds one RecordBatch v2. Records are appended in offset order; `finish`
/// compresses (if asked), writes the header and the CRC.
pub struct BatchBuilder {
    compression: Compression,
    records: Vec<u8>,
    scratch: Vec<u8>,
    count: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    payload_bytes: usize,
}

impl BatchBuilder {
    pub fn new(compression: Compression, capacity_bytes: usize) -> Self {
        BatchBuilder {
            compression,
            records: Vec::with_capacity(capacity_bytes),
            scratch: Vec::with_capacity(64),
            count: 0,
            base_timestamp_ms: 0,
            max_timestamp_ms: 0,
            payload_bytes: 0,
        }
    }

    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Key plus value bytes appended so far (what throughput figures count).
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Uncompressed size of the records section so far.
    pub fn records_bytes(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends one record with no headers.
    pub fn push(&mut self, key: Option<&[u8]>, value: &[u8], timestamp_ms: i64) {
        if self.count == 0 {
            self.base_timestamp_ms = timestamp_ms;
            self.max_timestamp_ms = timestamp_ms;
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        let body = &mut self.scratch;
        body.clear();
        body.push(0); // record attributes
        put_varlong(body, timestamp_ms - self.base_timestamp_ms);
        put_varlong(body, i64::from(self.count)); // offset delta
        match key {
            Some(k) => {
                put_varlong(body, k.len() as i64);
                body.extend_from_slice(k);
            }
            None => put_varlong(body, -1),
        }
        put_varlong(body, value.len() as i64);
        put_varlong(&mut self.records, (body.len() + value.len() + 1) as i64);
        self.records.extend_from_slice(body);
        self.records.extend_from_slice(value);
        self.records.push(0); // header count
        self.count += 1;
        self.payload_bytes += key.map_or(0, <[u8]>::len) + value.len();
    }

    /// Writes the batch (baseOffset 0, no producer id) and resets the builder
    /// for reuse.
    pub fn finish(&mut self) -> Result<Bytes, BatchError> {
        assert!(self.count > 0, "finish() on an empty batch");
        let compressed;
        let records: &[u8] = match self.compression {
            Compression::None => &self.records,
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.records.len() / 2 + 64),
                    flate2::Compression::fast(),
                );
                enc.write_all(&self.records)?;
                compressed = enc.finish()?;
                &compressed
            }
            Compression::Snappy => {
                compressed = snap::raw::Encoder::new().compress_vec(&self.records)?;
                &compressed
            }
        };
        let total = layout::RECORDS + records.len();
        let mut out = BytesMut::with_capacity(total);
        out.put_i64(0); // baseOffset: the broker assigns it
        out.put_i32((total - layout::LENGTH_PREFIX) as i32);
        out.put_i32(-1); // partitionLeaderEpoch
        out.put_i8(2); // magic
        out.put_u32(0); // crc, patched below
        out.put_i16(self.compression.attribute_bits());
        out.put_i32(self.count - 1);
        out.put_i64(self.base_timestamp_ms);
        out.put_i64(self.max_timestamp_ms);
        out.put_i64(-1); // producerId
        out.put_i16(-1); // producerEpoch
        out.put_i32(-1); // baseSequence
        out.put_i32(self.count);
        debug_assert_eq!(out.len(), layout::RECORDS);
        out.put_slice(records);
        let crc = crc32c::crc32c(&out[layout::ATTRIBUTES..]);
        out[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        self.records.clear();
        self.count = 0;
        self.payload_bytes = 0;
        Ok(out.freeze())
    }
}

/// The fixed 61-byte header of a RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub record_count: i32,
}

impl BatchHeader {
    /// Total size of the batch on the wire, header included.
    pub fn total_len(&self) -> usize {
        self.batch_length.max(0) as usize + layout::LENGTH_PREFIX
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn codec(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }

    /// Control batches (transaction markers) carry no user records.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

fn be_i64(d: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    i64::from_be_bytes(b)
}

fn be_i32(d: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[at..at + 4]);
    i32::from_be_bytes(b)
}

/// Parses the header at the start of `data`. A fetch response may end with a
/// partial batch; that is `Truncated`, which callers treat as "stop here".
pub fn parse_header(data: &[u8]) -> Result<BatchHeader, BatchError> {
    if data.len() < layout::RECORDS {
        return Err(BatchError::Truncated {
            need: layout::RECORDS,
            have: data.len(),
        });
    }
    let magic = data[layout::MAGIC] as i8;
    if magic != 2 {
        return Err(BatchError::Magic(magic));
    }
    let header = BatchHeader {
        base_offset: be_i64(data, layout::BASE_OFFSET),
        batch_length: be_i32(data, layout::BATCH_LENGTH),
        magic,
        crc: be_i32(data, layout::CRC) as u32,
        attributes: i16::from_be_bytes([data[layout::ATTRIBUTES], data[layout::ATTRIBUTES + 1]]),
        last_offset_delta: be_i32(data, layout::LAST_OFFSET_DELTA),
        base_timestamp_ms: be_i64(data, layout::BASE_TIMESTAMP),
        max_timestamp_ms: be_i64(data, layout::MAX_TIMESTAMP),
        record_count: be_i32(data, layout::RECORD_COUNT),
    };
    if header.total_len() < layout::RECORDS {
        return Err(BatchError::Record("batchLength shorter than the header"));
    }
    if data.len() < header.total_len() {
        return Err(BatchError::Truncated {
            need: header.total_len(),
            have: data.len(),
        });
    }
    Ok(header)
}

/// Checks the CRC32C of a complete batch (attributes to the end).
pub fn verify_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let actual = crc32c::crc32c(&batch[layout::ATTRIBUTES..header.total_len()]);
    if actual != header.crc {
        return Err(BatchError::Crc {
            expected: header.crc,
            actual,
        });
    }
    Ok(())
}

/// One record seen by the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset_delta: i64,
    pub timestamp_delta_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Returns the (decompressed) records section of a complete batch.
pub fn records_section<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
) -> Result<std::borrow::Cow<'a, [u8]>, BatchError> {
    let raw = &batch[layout::RECORDS..header.total_len()];
    match header.codec() {
        0 => Ok(std::borrow::Cow::Borrowed(raw)),
        1 => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            flate2::read::GzDecoder::new(raw).read_to_end(&mut out)?;
            Ok(std::borrow::Cow::Owned(out))
        }
        2 => Ok(std::borrow::Cow::Owned(snappy_decompress(raw)?)),
        other => Err(BatchError::Codec(other)),
    }
}

/// Kafka's Java client writes snappy in xerial framing; librdkafka and this
/// bench write raw snappy. Accept both.
fn snappy_decompress(raw: &[u8]) -> Result<Vec<u8>, BatchError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    if !raw.starts_with(XERIAL_MAGIC) {
        return Ok(snap::raw::Decoder::new().decompress_vec(raw)?);
    }
    let mut pos = 16; // magic(8) + version(4) + compatible version(4)
    let mut out = Vec::new();
    while pos < raw.len() {
        if raw.len() < pos + 4 {
            return Err(BatchError::Record("xerial block length truncated"));
        }
        let len = be_i32(raw, pos).max(0) as usize;
        pos += 4;
        let block = raw
            .get(pos..pos + len)
            .ok_or(BatchError::Record("xerial block truncated"))?;
        out.extend_from_slice(&snap::raw::Decoder::new().decompress_vec(block)?);
        pos += len;
    }
    Ok(out)
}

/// Walks the records of a (decompressed) records section.
pub fn for_each_record<'a>(
    records: &'a [u8],
    count: i32,
    mut f: impl FnMut(RecordView<'a>),
) -> Result<(), BatchError> {
    let mut pos = 0usize;
    for _ in 0..count.max(0) {
        let len = get_varlong(records, &mut pos)?;
        let len = usize::try_from(len).map_err(|_| BatchError::Record("negative record length"))?;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= records.len())
            .ok_or(BatchError::Record("record overruns batch"))?;
        let body = &records[..end];
        pos += 1; // record attributes
        let timestamp_delta_ms = get_varlong(body, &mut pos)?;
        let offset_delta = get_varlong(body, &mut pos)?;
        let key = read_bytes(body, &mut pos)?;
        let value = read_bytes(body, &mut pos)?;
        // Headers are skipped by jumping to the record's end.
        pos = end;
        f(RecordView {
            offset_delta,
            timestamp_delta_ms,
            key,
            value,
        });
    }
    Ok(())
}

fn read_bytes<'a>(body: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, BatchError> {
    let len = get_varlong(body, pos)?;
    if len < 0 {
        return Ok(None);
    }
    let end = pos
        .checked_add(len as usize)
        .filter(|e| *e <= body.len())
        .ok_or(BatchError::Record("field overruns record"))?;
    let out = &body[*pos..end];
    *pos = end;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(compression: Compression, n: usize) -> Bytes {
        let mut b = BatchBuilder::new(compression, 4096);
        for i in 0..n {
            let value = format!("value-{i:05}-padding-padding");
            let key = format!("k{i}");
            b.push(
                Some(key.as_bytes()),
                value.as_bytes(),
                1_700_000_000_000 + i as i64,
            );
        }
        b.finish().expect("finish")
    }

    // Proves the header fields and CRC32C of a hand-built batch are what a broker checks.
    #[test]
    fn header_and_crc_are_valid() {
        let batch = build(Compression::None, 10);
        let h = parse_header(&batch).expect("header");
        assert_eq!(h.total_len(), batch.len());
        assert_eq!(h.record_count, 10);
        assert_eq!(h.last_offset_delta, 9);
        assert_eq!(h.base_timestamp_ms, 1_700_000_000_000);
        assert_eq!(h.max_timestamp_ms, 1_700_000_000_009);
        verify_crc(&batch, &h).expect("crc");
        // CRC32C over the same range by an independent implementation (kafka-protocol's crc dep).
        let independent =
            crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&batch[layout::ATTRIBUTES..]);
        assert_eq!(independent, h.crc);
    }

    // Proves a flipped payload bit is caught by the CRC check.
    #[test]
    fn corrupted_batch_fails_crc() {
        let batch = build(Compression::None, 3);
        let mut bad = batch.to_vec();
        let last = bad.len() - 2;
        bad[last] ^= 1;
        let h = parse_header(&bad).expect("header");
        assert!(matches!(verify_crc(&bad, &h), Err(BatchError::Crc { .. })));
    }

    // Proves records round-trip through build and parse for every codec.
    #[test]
    fn records_round_trip_all_codecs() {
        for codec in [Compression::None, Compression::Gzip, Compression::Snappy] {
            let batch = build(codec, 50);
            let h = parse_header(&batch).expect("header");
            verify_crc(&batch, &h).expect("crc");
            assert_eq!(h.codec() as i16, codec.attribute_bits());
            let section = records_section(&batch, &h).expect("decompress");
            let mut seen = Vec::new();
            for_each_record(&section, h.record_count, |r| {
                seen.push((
                    r.offset_delta,
                    r.timestamp_delta_ms,
                    r.key.map(<[u8]>::to_vec),
                    r.value.map(<[u8]>::to_vec),
                ))
            })
            .expect("records");
            assert_eq!(seen.len(), 50);
            for (i, (od, td, k, v)) in seen.into_iter().enumerate() {
                assert_eq!(od, i as i64);
                assert_eq!(td, i as i64);
                assert_eq!(k.as_deref(), Some(format!("k{i}").as_bytes()));
                assert_eq!(
                    v.as_deref(),
                    Some(format!("value-{i:05}-padding-padding").as_bytes())
                );
            }
        }
    }

    // Proves our uncompressed batches decode with kafka-protocol's independent decoder.
    #[test]
    fn kafka_protocol_decodes_our_batch() {
        let batch = build(Compression::None, 7);
        let mut buf = batch.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).expect("decode");
        assert_eq!(set.records.len(), 7);
        assert_eq!(set.records[3].offset, 3);
        assert_eq!(
            set.records[3].value.as_deref(),
            Some(&b"value-00003-padding-padding"[..])
        );
        assert_eq!(set.records[3].key.as_deref(), Some(&b"k3"[..]));
    }

    // Proves the zigzag varint codec matches Kafka's encoding at the edges.
    #[test]
    fn varlong_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            let mut pos = 0;
            assert_eq!(get_varlong(&buf, &mut pos).expect("decode"), v);
            assert_eq!(pos, buf.len());
        }
        let mut buf = Vec::new();
        put_varlong(&mut buf, -1);
        assert_eq!(buf, vec![0x01]);
        buf.clear();
        put_varlong(&mut buf, 1);
        assert_eq!(buf, vec![0x02]);
    }

    // Proves a truncated tail (as fetch responses may carry) is reported, not panicked on.
    #[test]
    fn truncated_batch_is_reported() {
        let batch = build(Compression::None, 5);
        assert!(matches!(
            parse_header(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            parse_header(&batch[..20]),
            Err(BatchError::Truncated { .. })
        ));
    }
}
