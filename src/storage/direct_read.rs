//! O_DIRECT reads of segment bytes into buffers the reader owns.
//!
//! glommio's `DmaFile::read_at` reads into a buffer of the reactor's
//! (`ReadResult`, `!Send`): bytes that must reach another shard's
//! connection, or outlive the read as a read-ahead window, had to be copied
//! out of it. At cold-consume speed that copy was about a fifth of the
//! broker's CPU (`perf`, issue 12). Here the read is a `pread` of the
//! segment's O_DIRECT fd on glommio's blocking pool into a page-aligned
//! heap buffer that becomes a `Bytes` as it is, so the shard thread neither
//! waits for the disk nor copies.

use std::alloc::{self, Layout};
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use bytes::Bytes;

/// O_DIRECT alignment of offsets, lengths and buffers: the page size covers
/// every logical block size in use (512 B and 4 KiB).
const ALIGN: usize = 4096;

/// A page-aligned heap buffer; only its first `filled` bytes are initialised and visible.
struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    filled: usize,
}

// The buffer is plain memory owned by this value alone.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn new(capacity: usize) -> AlignedBuf {
        assert!(capacity > 0 && capacity % ALIGN == 0, "aligned buffer of {capacity} bytes");
        let layout = Layout::from_size_align(capacity, ALIGN).expect("aligned buffer layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc(layout) }).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, capacity, filled: 0 }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `filled` bytes were written by pread.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.filled) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, ALIGN).expect("aligned buffer layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// Reads the aligned range around `[position, position + len)` of the
/// O_DIRECT file `fd` on this thread (blocking): the bytes asked for, or
/// UnexpectedEof when the file ends first.
fn pread_aligned(fd: RawFd, position: u64, len: usize) -> io::Result<Bytes> {
    let start = position - position % ALIGN as u64;
    let end = (position + len as u64).next_multiple_of(ALIGN as u64);
    let mut buf = AlignedBuf::new((end - start) as usize);
    while buf.filled < buf.capacity {
        let at = start + buf.filled as u64;
        // SAFETY: writes at most `capacity - filled` bytes into the buffer's unfilled part.
        let n = unsafe {
            libc_pread(fd, buf.ptr.as_ptr().add(buf.filled), buf.capacity - buf.filled, at as i64)
        };
        match n {
            n if n > 0 => buf.filled += n as usize,
            0 => break,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    let skip = (position - start) as usize;
    if buf.filled < skip + len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!(
            "read {} of {len} bytes at {position}", buf.filled.saturating_sub(skip))));
    }
    Ok(Bytes::from_owner(buf).slice(skip..skip + len))
}

fn libc_pread(fd: RawFd, buf: *mut u8, count: usize, offset: i64) -> isize {
    // SAFETY: the caller passes a buffer valid for `count` bytes.
    unsafe { nix::libc::pread(fd, buf.cast(), count, offset) }
}

/// Reads exactly `len` bytes at `position` of the O_DIRECT file `fd`, on
/// the shard's blocking pool. The caller keeps the file open until this
/// returns; if this future is dropped first the pread may run on a closed
/// (or reused) fd number, which only fills this read's own buffer and is
/// thrown away.
pub async fn read(fd: RawFd, position: u64, len: usize) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    glommio::executor().spawn_blocking(move || pread_aligned(fd, position, len)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn unaligned_ranges_read_exactly_and_past_the_end_is_an_error() {
        let dir = crate::storage::batch::testing::temp_dir("storage", "direct-read");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let bytes: Vec<u8> = (0..3 * ALIGN + 777).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        // O_DIRECT where the file system has it (tmpfs does not: read buffered there).
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(&path)
            .or_else(|_| std::fs::File::open(&path))
            .unwrap();
        for (pos, len) in [(0, 1), (1, 4095), (4095, 2), (100, 3 * ALIGN + 600), (3 * ALIGN, 777)] {
            let got = pread_aligned(f.as_raw_fd(), pos as u64, len).unwrap();
            assert_eq!(&got[..], &bytes[pos..pos + len], "{pos}+{len}");
        }
        let err = pread_aligned(f.as_raw_fd(), 3 * ALIGN as u64, 778).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
