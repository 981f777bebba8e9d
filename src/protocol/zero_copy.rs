//! Responses whose records are several pieces of memory (tail cache slices,
//! read-ahead windows): encoded with placeholders and written piece by
//! piece, so record bytes are never copied into the frame.
//!
//! The Kafka encoder wants the records as `Bytes`. For several pieces we
//! hand it a slice of a static zero page of the right length; `SegmentedBuf`
//! recognises that slice by address when the encoder copies it in, and puts
//! the pieces there instead. So the response is encoded by the same
//! generated code as every other.
//!
//! Used on the connection's shard; the pieces arrive from the owner shard
//! as `Bytes` (Send), so nothing here is shared.

use std::collections::VecDeque;

use bytes::{buf::UninitSlice, BufMut, Bytes, BytesMut};
use futures_lite::{AsyncWrite, AsyncWriteExt};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// Largest records field spliced from pieces; larger reads are copied.
pub const PLACEHOLDER_MAX_BYTES: usize = 16 << 20;
/// Zero-initialised, so it lives in .bss and costs no binary size.
static PLACEHOLDER: [u8; PLACEHOLDER_MAX_BYTES] = [0; PLACEHOLDER_MAX_BYTES];

/// One piece of a response frame.
pub type Segment = Bytes;

/// A placeholder records value of `len` bytes, if one that large exists.
pub fn placeholder(len: usize) -> Option<Bytes> {
    (len > 0 && len <= PLACEHOLDER_MAX_BYTES).then(|| Bytes::from_static(&PLACEHOLDER[..len]))
}

fn is_placeholder(src: &[u8]) -> bool {
    !src.is_empty() && std::ptr::eq(src.as_ptr(), PLACEHOLDER.as_ptr()) && src.len() <= PLACEHOLDER_MAX_BYTES
}

/// A `ByteBufMut` that swaps placeholders for the queued segments, in order.
struct SegmentedBuf {
    done: Vec<Segment>,
    done_bytes: usize,
    cur: BytesMut,
    pending: VecDeque<Vec<Segment>>,
}

impl SegmentedBuf {
    fn flush_cur(&mut self) {
        if !self.cur.is_empty() {
            let b = self.cur.split().freeze();
            self.done_bytes += b.len();
            self.done.push(b);
        }
    }
}

// SAFETY: every method delegates to the inner BytesMut, which upholds BufMut's contract.
unsafe impl BufMut for SegmentedBuf {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }
    unsafe fn advance_mut(&mut self, cnt: usize) {
        self.cur.advance_mut(cnt)
    }
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }
    fn put_slice(&mut self, src: &[u8]) {
        if is_placeholder(src) {
            if let Some(segments) = self.pending.pop_front() {
                debug_assert_eq!(segments.iter().map(Bytes::len).sum::<usize>(), src.len());
                self.flush_cur();
                for s in segments {
                    self.done_bytes += s.len();
                    self.done.push(s);
                }
                return;
            }
        }
        self.cur.extend_from_slice(src);
    }
}

impl ByteBufMut for SegmentedBuf {
    fn offset(&self) -> usize {
        self.done_bytes + self.cur.len()
    }
    fn seek(&mut self, offset: usize) {
        // The generated encoders never seek back; gaps stay within `cur`.
        assert!(offset >= self.done_bytes, "seek into an already emitted segment");
        self.cur.resize(offset - self.done_bytes, 0);
    }
    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.done_bytes, "range in an already emitted segment");
        let base = self.done_bytes;
        &mut self.cur[r.start - base..r.end - base]
    }
}

/// Encodes a whole response frame (length, header, body); each placeholder
/// met in the body, in order, is replaced by the next entry of `pending`.
pub fn encode_frame<R: Encodable>(
    header_version: i16,
    body_version: i16,
    correlation_id: i32,
    body: &R,
    pending: Vec<Vec<Segment>>,
) -> anyhow_free::Result<Vec<Segment>> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version).map_err(anyhow_free::text)?
        + body.compute_size(body_version).map_err(anyhow_free::text)?;
    let size = i32::try_from(size).map_err(|_| anyhow_free::Error("response over 2 GiB".into()))?;
    let mut buf = SegmentedBuf { done: Vec::new(), done_bytes: 0, cur: BytesMut::with_capacity(256), pending: pending.into() };
    buf.cur.put_i32(size);
    header.encode(&mut buf, header_version).map_err(anyhow_free::text)?;
    body.encode(&mut buf, body_version).map_err(anyhow_free::text)?;
    if !buf.pending.is_empty() {
        return Err(anyhow_free::Error("placeholders left unused".into()));
    }
    buf.flush_cur();
    Ok(buf.done)
}

/// Error type without pulling `anyhow` into our signatures.
pub mod anyhow_free {
    #[derive(Debug)]
    pub struct Error(pub String);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    pub type Result<T> = std::result::Result<T, Error>;
    pub fn text<E: std::fmt::Display>(e: E) -> Error {
        Error(e.to_string())
    }
}

/// Writes the pieces in order.
pub async fn write_segments<W: AsyncWrite + Unpin>(stream: &mut W, segments: Vec<Segment>) -> std::io::Result<()> {
    for segment in segments {
        stream.write_all(&segment).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;

    /// A response encoded with a placeholder, with the pieces spliced in,
    /// is byte-identical to the same response encoded with the bytes inline.
    #[test]
    fn placeholder_encoding_matches_inline_encoding() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let make = |records: Bytes| {
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_partitions(vec![PartitionData::default().with_high_watermark(7).with_records(Some(records))])])
        };
        for version in [4i16, 11, 12, 16] {
            let inline = make(Bytes::copy_from_slice(&data[100..3100]));
            let expected = encode_frame(0, version, 42, &inline, vec![]).unwrap();
            let pieces = vec![Bytes::copy_from_slice(&data[100..1100]), Bytes::copy_from_slice(&data[1100..3100])];
            let with_placeholder = make(placeholder(3000).unwrap());
            let segments = encode_frame(0, version, 42, &with_placeholder, vec![pieces.clone()]).unwrap();
            let a: Vec<u8> = expected.iter().flat_map(|b| b.iter().copied()).collect();
            let b: Vec<u8> = segments.iter().flat_map(|b| b.iter().copied()).collect();
            assert_eq!(a, b, "version {version}");
            let size = i32::from_be_bytes([a[0], a[1], a[2], a[3]]) as usize;
            assert_eq!(size, a.len() - 4);
            assert!(segments.iter().any(|s| s.as_ptr() == pieces[1].as_ptr()), "the pieces are not copied");
        }
    }
}
