//! Record batches: encoding what `topic produce` sends (uncompressed, v2) and
//! decoding what Fetch returns, in any of Kafka's codecs (gzip, snappy, lz4,
//! zstd, all pure Rust). Control batches (transaction markers) are skipped.

use std::io::Read;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

use crate::error::{Error, Result};

/// A decompressed batch larger than this is refused.
pub const DECOMPRESSED_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Batch header bytes before the records: base offset (8) + length (4) and the
/// rest of the v2 header, up to the record count.
const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
const MAGIC_OFFSET: usize = 16;

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation time; the broker may replace it (LogAppendTime topics).
    pub timestamp_ms: i64,
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// One uncompressed v2 batch holding `records` (offset deltas 0..n).
pub fn encode_batch(records: &[NewRecord]) -> Result<Bytes> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let encoded: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset - sequence changes, and
            // takes the batch's base sequence from the first record: -1, 0, 1, ...
            // keeps one batch (brokers take one per partition) with base sequence -1.
            sequence: NO_SEQUENCE.wrapping_add(i as i32),
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.iter().map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone())).collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &encoded, &options).map_err(|e| Error::Records(format!("{e:#}")))?;
    Ok(buf.freeze())
}

/// Every data record in `data` (a Fetch partition's `records`). A batch cut
/// short at the end (Fetch may return a partial last batch) is left out;
/// batches of the old message formats (magic 0 and 1) are an error.
pub fn decode_records(data: Bytes) -> Result<Vec<FetchedRecord>> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= BATCH_LENGTH_PREFIX_BYTES {
        let batch_len = (&rest[8..12]).get_i32();
        if batch_len < 0 {
            return Err(Error::Records(format!("negative batch length {batch_len}")));
        }
        let total = BATCH_LENGTH_PREFIX_BYTES + batch_len as usize;
        if rest.len() < total {
            break;
        }
        let mut batch = rest.split_to(total);
        if batch.len() > MAGIC_OFFSET && batch[MAGIC_OFFSET] != 2 {
            return Err(Error::Records(format!(
                "message format v{} (magic {}) is not supported; only record batches v2",
                batch[MAGIC_OFFSET], batch[MAGIC_OFFSET]
            )));
        }
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut batch, Some(decompress))
            .map_err(|e| Error::Records(format!("{e:#}")))?;
        for r in set.records {
            if r.control {
                continue;
            }
            out.push(FetchedRecord {
                offset: r.offset,
                timestamp_ms: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            });
        }
    }
    Ok(out)
}

/// The decompressor handed to kafka-protocol's decoder.
fn decompress(data: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    let raw = std::mem::take(data);
    match compression {
        Compression::None => Ok(raw),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(&raw[..]), "gzip"),
        Compression::Snappy => snappy(&raw),
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(&raw[..]), "lz4"),
        Compression::Zstd => {
            let dec =
                ruzstd::decoding::StreamingDecoder::new(&raw[..]).map_err(|e| anyhow::anyhow!("bad zstd data: {e}"))?;
            read_bounded(dec, "zstd")
        }
    }
}

fn read_bounded(reader: impl Read, codec: &str) -> anyhow::Result<Bytes> {
    let mut out = Vec::new();
    reader
        .take(DECOMPRESSED_BYTES_MAX + 1)
        .read_to_end(&mut out)
        .map_err(|e| anyhow::anyhow!("bad {codec} data: {e}"))?;
    if out.len() as u64 > DECOMPRESSED_BYTES_MAX {
        anyhow::bail!("{codec} batch decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes");
    }
    Ok(Bytes::from(out))
}

/// The Java client's snappy: the xerial framing (a 16-byte header, then
/// length-prefixed raw blocks), or one raw block without the header.
fn snappy(raw: &[u8]) -> anyhow::Result<Bytes> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER_BYTES: usize = 16;
    let mut dec = snap::raw::Decoder::new();
    if !raw.starts_with(XERIAL_MAGIC) {
        return Ok(Bytes::from(dec.decompress_vec(raw)?));
    }
    let mut out = Vec::new();
    let mut rest = raw.get(XERIAL_HEADER_BYTES..).unwrap_or_default();
    while !rest.is_empty() {
        if rest.len() < 4 {
            anyhow::bail!("truncated snappy block length");
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let block = rest.get(4..4 + len).ok_or_else(|| anyhow::anyhow!("truncated snappy block"))?;
        let n = snap::raw::decompress_len(block)?;
        if (out.len() + n) as u64 > DECOMPRESSED_BYTES_MAX {
            anyhow::bail!("snappy batch decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes");
        }
        out.extend_from_slice(&dec.decompress_vec(block)?);
        rest = &rest[4 + len..];
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: Option<&str>, value: &str) -> NewRecord {
        NewRecord {
            key: key.map(|k| Bytes::from(k.to_string())),
            value: Some(Bytes::from(value.to_string())),
            headers: vec![("h".to_string(), Some(Bytes::from_static(b"v")))],
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn encoded_batch_decodes_to_the_same_records() {
        // What produce sends is what consume prints: keys, values, headers, timestamps.
        let batch = encode_batch(&[rec(Some("k"), "one"), rec(None, "two")]).unwrap();
        let infos = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).unwrap();
        assert_eq!(infos.len(), 1, "one batch per produce");
        assert_eq!(infos[0].base_sequence, NO_SEQUENCE);
        let got = decode_records(batch).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].offset, 0);
        assert_eq!(got[1].offset, 1);
        assert_eq!(got[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(got[1].key, None);
        assert_eq!(got[1].value.as_deref(), Some(&b"two"[..]));
        assert_eq!(got[0].headers, vec![("h".to_string(), Some(Bytes::from_static(b"v")))]);
        assert_eq!(got[0].timestamp_ms, 1_700_000_000_000);
    }

    #[test]
    fn partial_last_batch_is_left_out() {
        // Fetch may cut the last batch; the whole batches before it still decode.
        let one = encode_batch(&[rec(None, "a")]).unwrap();
        let two = encode_batch(&[rec(None, "b")]).unwrap();
        let mut data = BytesMut::new();
        data.extend_from_slice(&one);
        data.extend_from_slice(&two[..two.len() - 3]);
        let got = decode_records(data.freeze()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value.as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn corrupt_batch_is_an_error_not_a_panic() {
        // A flipped byte fails the CRC check with an error.
        let batch = encode_batch(&[rec(None, "a")]).unwrap();
        let mut bad = batch.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(decode_records(Bytes::from(bad)).is_err());
    }

    #[test]
    fn xerial_snappy_decodes() {
        // The Java client's framed snappy is understood, as is raw snappy.
        let plain = b"hello hello hello hello".to_vec();
        let block = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
        framed.extend_from_slice(&block);
        assert_eq!(&snappy(&framed).unwrap()[..], &plain[..]);
        assert_eq!(&snappy(&block).unwrap()[..], &plain[..]);
    }
}
