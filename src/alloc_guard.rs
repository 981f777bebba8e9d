//! The process's global allocator: the system allocator, except that a huge
//! allocation (>= `HUGE_ALLOCATION_BYTES`) is served by an anonymous
//! `MAP_NORESERVE` mapping.
//!
//! Why: kafka-protocol 0.18's array decoders call `Vec::with_capacity(n)`
//! with the element count read off the wire, before decoding one element
//! (upstream kafka-protocol-rs PRs #152/#161/#200, unmerged). A 62-byte
//! ListOffsets request claiming 1.6 billion topics asks for ~160 GB; glibc's
//! mmap is refused by the kernel's overcommit heuristic and Rust aborts the
//! whole broker (found by `fuzz/`, target `request_decode`). With
//! `MAP_NORESERVE` the kernel hands out address space without committing
//! memory, so the reservation succeeds, the decoder runs out of bytes at
//! the next element and returns an error (the connection is closed), and the
//! untouched mapping is unmapped. Pages are committed only when written,
//! exactly as for any other allocation, so a legitimately huge buffer
//! behaves as before. No state; used by every thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

use nix::libc;

/// Allocations at least this big are mapped with `MAP_NORESERVE`.
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;
/// mmap returns page-aligned memory; a stricter alignment goes to the system allocator.
const PAGE_BYTES: usize = 4096;

/// See the module doc. Install with `#[global_allocator]`.
pub struct NoReserveHuge;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION_BYTES && layout.align() <= PAGE_BYTES
}

unsafe impl GlobalAlloc for NoReserveHuge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            return System.alloc(layout);
        }
        let p = libc::mmap(
            ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            return System.alloc_zeroed(layout);
        }
        // Anonymous mappings are zero-filled.
        self.alloc(layout)
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            libc::munmap(p.cast(), layout.size());
        } else {
            System.dealloc(p, layout);
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return System.realloc(p, layout, new_size);
        }
        let q = self.alloc(new_layout);
        if !q.is_null() {
            ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
            self.dealloc(p, layout);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_reservation_succeeds_and_small_ones_use_the_system_allocator() {
        // Proves a 256 GiB request (what a lying array count asks for) gets address space instead of aborting, and realloc moves data across the threshold.
        unsafe {
            let huge = Layout::from_size_align(256 << 30, 8).expect("layout");
            let p = NoReserveHuge.alloc(huge);
            assert!(!p.is_null());
            *p = 7;
            *p.add(huge.size() - 1) = 9;
            assert_eq!((*p, *p.add(huge.size() - 1)), (7, 9));
            NoReserveHuge.dealloc(p, huge);

            let small = Layout::from_size_align(16, 8).expect("layout");
            let s = NoReserveHuge.alloc(small);
            assert!(!s.is_null());
            s.copy_from_nonoverlapping(b"0123456789abcdef".as_ptr(), 16);
            let big = NoReserveHuge.realloc(s, small, HUGE_ALLOCATION_BYTES);
            assert!(!big.is_null());
            assert_eq!(std::slice::from_raw_parts(big, 16), b"0123456789abcdef");
            let back = NoReserveHuge.realloc(big, Layout::from_size_align(HUGE_ALLOCATION_BYTES, 8).expect("l"), 8);
            assert_eq!(std::slice::from_raw_parts(back, 8), b"01234567");
            NoReserveHuge.dealloc(back, Layout::from_size_align(8, 8).expect("l"));
        }
    }
}

/// Read buffers of a few MiB are allocated and freed all the time (io_uring
/// reads of segment files, fetch responses). glibc serves them by mmap or
/// gives freed heap tops back to the kernel, so every new buffer faulted in
/// zeroed pages again: a quarter of the broker's CPU in a cold consume
/// (`perf`: clear_page, get_user_pages). Fixed thresholds (which also stop
/// glibc's dynamic ones) keep buffers up to 32 MiB in the heap and let
/// each arena keep up to 64 MiB free before trimming. Call once, first.
pub fn keep_large_buffers_in_the_heap() {
    const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
    const TRIM_THRESHOLD_BYTES: libc::c_int = 64 << 20;
    // SAFETY: mallopt only sets allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}
