//! Responses that carry ranges of segment files: encoded with placeholders,
//! written as header bytes, `sendfile` of a file range, header bytes, …
//!
//! The Kafka encoder wants the records as `Bytes`. For a file range we hand
//! it a slice of a static zero page of the right length; `SegmentedBuf`
//! recognises that slice by address when the encoder copies it in, and puts
//! the file range there instead. So the response is encoded by the same
//! generated code as every other, and the record bytes never pass through
//! user space (the kernel copies page cache to socket).
//!
//! Used on the connection's shard; file ranges arrive from the owner shard
//! as their own (dup'ed) file descriptors, so nothing here is shared.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, RawFd};

use bytes::{buf::UninitSlice, BufMut, Bytes, BytesMut};
use futures_lite::{AsyncWrite, AsyncWriteExt};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// Largest file-backed records field per partition; larger reads are copied.
pub const PLACEHOLDER_MAX_BYTES: usize = 16 << 20;
/// Zero-initialised, so it lives in .bss and costs no binary size.
static PLACEHOLDER: [u8; PLACEHOLDER_MAX_BYTES] = [0; PLACEHOLDER_MAX_BYTES];
/// Bytes copied per step when sendfile would block.
const COPY_STEP_BYTES: usize = 256 << 10;

pub enum Segment {
    Bytes(Bytes),
    File { file: File, position: u64, len: u64 },
}

impl Segment {
    pub fn len(&self) -> usize {
        match self {
            Segment::Bytes(b) => b.len(),
            Segment::File { len, .. } => *len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
            self.done.push(Segment::Bytes(b));
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
                debug_assert_eq!(segments.iter().map(Segment::len).sum::<usize>(), src.len());
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

/// Writes the segments in order: bytes through glommio, file ranges with
/// sendfile on the (non-blocking) socket, falling back to a copy for the
/// part sendfile could not take without blocking.
///
/// `socket_fd` is the raw descriptor behind `stream`; the caller keeps the
/// connection open while this runs.
pub async fn write_segments<W: AsyncWrite + Unpin>(
    stream: &mut W,
    socket_fd: RawFd,
    segments: Vec<Segment>,
) -> std::io::Result<()> {
    for segment in segments {
        match segment {
            Segment::Bytes(b) => stream.write_all(&b).await?,
            Segment::File { file, position, len } => {
                // Bytes written before must be on the socket before sendfile adds more.
                stream.flush().await?;
                send_file_range(stream, socket_fd, &file, position, len).await?
            }
        }
    }
    Ok(())
}

async fn send_file_range<W: AsyncWrite + Unpin>(
    stream: &mut W,
    socket_fd: RawFd,
    file: &File,
    position: u64,
    len: u64,
) -> std::io::Result<()> {
    use nix::errno::Errno;
    use std::os::unix::fs::FileExt;
    set_nonblocking(socket_fd)?;
    let end = position + len;
    let mut offset = position as i64;
    while (offset as u64) < end {
        let remaining = (end - offset as u64) as usize;
        // SAFETY: the caller keeps the connection (and so the fd) open.
        let sock = unsafe { BorrowedFd::borrow_raw(socket_fd) };
        match nix::sys::sendfile::sendfile(sock, file.as_fd(), Some(&mut offset), remaining) {
            Ok(0) => {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment file shorter than its index said"));
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                // Socket buffer full: copy a step through glommio, which waits for room.
                let step = remaining.min(COPY_STEP_BYTES);
                let mut buf = vec![0u8; step];
                file.read_exact_at(&mut buf, offset as u64)?;
                stream.write_all(&buf).await?;
                offset += step as i64;
            }
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
    Ok(())
}

fn set_nonblocking(fd: i32) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?);
    if !flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;
    use std::io::Write;

    /// A response encoded with a placeholder, with the file range spliced in,
    /// is byte-identical to the same response encoded with the bytes inline.
    #[test]
    fn placeholder_encoding_matches_inline_encoding() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let path = std::env::temp_dir().join(format!("fjord-zc-{}", std::process::id()));
        std::fs::File::create(&path).unwrap().write_all(&data).unwrap();
        let make = |records: Bytes| {
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_partitions(vec![PartitionData::default().with_high_watermark(7).with_records(Some(records))])])
        };
        for version in [4i16, 11, 12, 16] {
            let (start, len) = (100u64, 3000usize);
            let inline = make(Bytes::copy_from_slice(&data[100..3100]));
            let expected = encode_frame(0, version, 42, &inline, vec![]).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let with_placeholder = make(placeholder(len).unwrap());
            let segments = encode_frame(0, version, 42, &with_placeholder, vec![vec![Segment::File { file, position: start, len: len as u64 }]]).unwrap();
            let flatten = |segs: &[Segment]| {
                let mut out = Vec::new();
                for s in segs {
                    match s {
                        Segment::Bytes(b) => out.extend_from_slice(b),
                        Segment::File { file, position, len } => {
                            let mut buf = vec![0u8; *len as usize];
                            std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, *position).unwrap();
                            out.extend_from_slice(&buf);
                        }
                    }
                }
                out
            };
            let a = flatten(&expected);
            let b = flatten(&segments);
            assert_eq!(a, b, "version {version}");
            let size = i32::from_be_bytes([a[0], a[1], a[2], a[3]]) as usize;
            assert_eq!(size, a.len() - 4);
            assert!(matches!(segments[1], Segment::File { .. }), "the file range is its own segment");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
