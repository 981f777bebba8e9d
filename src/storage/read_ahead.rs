//! Read-ahead of segment files for sequential readers (consumers catching
//! up, followers), within a per-shard memory budget.
//!
//! Segments are written with O_DIRECT, so the page cache does not hold
//! them; a fetch below the tail cache reads the disk. Reading exactly what
//! each fetch asks for makes a consumer wait for the disk on every fetch
//! (request, disk read, response, request, ...). So each segment file keeps
//! up to `WINDOWS_PER_FILE` windows of bytes read by io_uring O_DIRECT
//! reads, and after each read the log starts the next one in the
//! background from where that reader will continue (`read_ahead_from`), so
//! the next fetch finds its bytes in memory while this one is on the wire.
//! Fetches slice windows (no copy).
//!
//! Memory: windows of all files of a shard together stay under
//! `SHARD_BUDGET_BYTES`; past it the least recently filled files lose
//! theirs (a later read simply misses). A window is valid as long as the
//! file's bytes below the written size it was read at do not change: a
//! tail truncation (`invalidate`) drops them; appends only add bytes.
//!
//! Per shard (thread-local), like everything a shard owns; `!Send`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};

/// Smallest read issued on a miss and the size of a background read-ahead.
/// 2 MiB: large enough that a 1 MiB fetch (librdkafka's and Java's
/// `max.partition.fetch.bytes` default) finds the next one in memory; on the
/// virtio disk here 1–2 MiB O_DIRECT reads are the fastest
/// (`fjord-bench limits`).
pub const READ_UNIT_BYTES: usize = 2 << 20;
/// Largest background read (a reader fetching more per partition gets this much ahead).
const MAX_READ_AHEAD_BYTES: usize = 16 << 20;
/// Windows kept per file: the one being read and the one read ahead.
const WINDOWS_PER_FILE: usize = 2;
/// Read-ahead memory of one shard: a dozen sequential readers at full
/// speed; with more, the oldest lose their windows first.
pub const SHARD_BUDGET_BYTES: usize = 64 << 20;
/// Eviction queue length from which dead entries are pruned.
const PRUNE_QUEUE_AT: usize = 1024;

/// Bytes `[start, start + data.len())` of one file, counted in the shard's budget.
struct Window {
    start: u64,
    data: Bytes,
}

impl Window {
    fn new(start: u64, data: Bytes) -> Window {
        SHARD.with(|s| s.held.set(s.held.get() + data.len()));
        Window { start, data }
    }

    fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        SHARD.with(|s| s.held.set(s.held.get() - self.data.len()));
    }
}

/// A background read in flight; readers of its range wait for it instead of reading twice.
struct InFlight {
    start: u64,
    end: u64,
    /// Set when the read ends: the bytes, or None when it failed (the
    /// waiting reader then reads itself and sees the error).
    done: async_lock::OnceCell<Option<Bytes>>,
}

/// Reads a file range into memory (the segment's O_DIRECT handle).
pub trait RangeReader {
    fn read_range(&self, position: u64, len: usize) -> impl std::future::Future<Output = io::Result<Bytes>>;
}

/// One file's windows and background read.
#[derive(Default)]
pub struct ReadAhead {
    windows: RefCell<VecDeque<Window>>,
    in_flight: RefCell<Option<Rc<InFlight>>>,
    /// Bumped by `invalidate`: a background read started before it is discarded.
    generation: Cell<u64>,
    /// In the shard's eviction queue now.
    queued: Cell<bool>,
    /// The `max_len` of the last read: how far one fetch of this reader
    /// goes, so how much to read ahead of it.
    demand: Cell<usize>,
}

struct Shard {
    held: Cell<usize>,
    /// Files that hold windows, oldest fill first.
    queue: RefCell<VecDeque<Weak<dyn HasReadAhead>>>,
}

thread_local! {
    static SHARD: Shard = Shard { held: Cell::new(0), queue: RefCell::new(VecDeque::new()) };
}

/// Read-ahead bytes this shard holds now.
pub fn held_bytes() -> usize {
    SHARD.with(|s| s.held.get())
}

/// Something owning a `ReadAhead` (a segment file), for the shard's eviction queue.
pub trait HasReadAhead {
    fn read_ahead(&self) -> &ReadAhead;
}

/// Bytes of `file` from `position`: at least `min_len` and at most
/// `max_len`, clamped to `limit` (the segment's written size, which the
/// caller read under the log's state borrow). From the windows when they
/// hold the first `min_len` bytes (then as much of `max_len` as they hold;
/// see `ReadAhead::slice`), waiting for a background read of the range if
/// one is in flight; else one read of `max_len`, kept as a window.
pub async fn read<F>(file: &Rc<F>, position: u64, min_len: usize, max_len: usize, limit: u64) -> io::Result<Bytes>
where
    F: HasReadAhead + RangeReader + 'static,
{
    assert!(min_len <= max_len, "read_ahead::read: min_len {min_len} > max_len {max_len}");
    let must_end = limit.min(position.saturating_add(min_len as u64));
    let may_end = limit.min(position.saturating_add(max_len as u64));
    if position >= must_end {
        return Ok(Bytes::new());
    }
    let ra = file.read_ahead();
    ra.demand.set(max_len);
    let in_flight = ra.in_flight.borrow().clone();
    if let Some(f) = in_flight.filter(|f| f.start < may_end && position < f.end) {
        f.done.wait().await;
    }
    if let Some(hit) = ra.slice(position, must_end, may_end) {
        return Ok(hit);
    }
    let read_len = (may_end - position) as usize;
    let generation = ra.generation.get();
    let data = file.read_range(position, read_len).await?;
    assert!(data.len() == read_len, "read_range returns exactly the bytes asked for");
    if ra.generation.get() == generation {
        ra.install(file, Window::new(position, data.clone()), true);
    }
    Ok(data)
}

/// A reader just took whole batches up to `next` (where its next read
/// will start): when the windows hold less than two more of its reads
/// (its last `max_len` each) from there, read the next window after them
/// in the background: twice its `max_len`, at least a unit. The read that
/// crosses from one window to the next copies its bytes together once per
/// window; a copy costs far less than reading the disk twice.
pub fn read_ahead_from<F>(file: &Rc<F>, next: u64, limit: u64)
where
    F: HasReadAhead + RangeReader + 'static,
{
    let ra = file.read_ahead();
    if next >= limit || ra.in_flight.borrow().is_some() {
        return;
    }
    let demand = ra.demand.get() as u64;
    let from = ra.contiguous_end(next);
    if from >= limit || from - next >= 2 * demand {
        return;
    }
    let ahead = (2 * ra.demand.get()).clamp(READ_UNIT_BYTES, MAX_READ_AHEAD_BYTES);
    let next = from;
    if held_bytes() + ahead > SHARD_BUDGET_BYTES {
        evict_oldest(ahead);
    }
    let len = (limit - next).min(ahead as u64) as usize;
    let flight = Rc::new(InFlight { start: next, end: next + len as u64, done: async_lock::OnceCell::new() });
    *ra.in_flight.borrow_mut() = Some(flight.clone());
    let generation = ra.generation.get();
    let file = file.clone();
    glommio::spawn_local(async move {
        let result = file.read_range(flight.start, len).await.ok().filter(|d| d.len() == len);
        let ra = file.read_ahead();
        *ra.in_flight.borrow_mut() = None;
        if let Some(data) = &result {
            if ra.generation.get() == generation {
                ra.install(&file, Window::new(flight.start, data.clone()), false);
            }
        }
        let _ = flight.done.set(result).await;
    })
    .detach();
}

/// Drops the windows of the files filled longest ago until `room` more bytes fit.
fn evict_oldest(room: usize) {
    SHARD.with(|s| {
        let mut visits = s.queue.borrow().len();
        while s.held.get() + room > SHARD_BUDGET_BYTES && visits > 0 {
            visits -= 1;
            let Some(weak) = s.queue.borrow_mut().pop_front() else { break };
            if let Some(holder) = weak.upgrade() {
                // Not borrowed while windows drop: a drop updates `held`.
                let ra = holder.read_ahead();
                ra.queued.set(false);
                let dropped = std::mem::take(&mut *ra.windows.borrow_mut());
                drop(dropped);
            }
        }
    });
}

impl ReadAhead {
    /// From `position`, at least to `must_end` and at most to `may_end`: a
    /// slice of the window that holds the most from `position`, or, when
    /// it ends before `may_end` and the next window is there, both copied
    /// together.
    fn slice(&self, position: u64, must_end: u64, may_end: u64) -> Option<Bytes> {
        let windows = self.windows.borrow();
        let first = windows.iter().filter(|w| w.start <= position && position < w.end()).max_by_key(|w| w.end())?;
        let second = windows.iter().find(|w| w.start <= first.end() && first.end() < w.end());
        let Some(second) = second.filter(|_| first.end() < may_end) else {
            if must_end > first.end() {
                return None;
            }
            let end = may_end.min(first.end());
            return Some(first.data.slice((position - first.start) as usize..(end - first.start) as usize));
        };
        let end = may_end.min(second.end());
        let mut joined = BytesMut::with_capacity((end - position) as usize);
        joined.extend_from_slice(&first.data[(position - first.start) as usize..]);
        joined.extend_from_slice(&second.data[(first.end() - second.start) as usize..(end - second.start) as usize]);
        Some(joined.freeze())
    }

    /// The end of the run of windows that hold `from` onwards (`from` itself when none does).
    fn contiguous_end(&self, mut from: u64) -> u64 {
        let windows = self.windows.borrow();
        while let Some(end) = windows.iter().filter(|w| w.start <= from && from < w.end()).map(Window::end).max() {
            from = end;
        }
        from
    }

    /// Keeps `window`: instead of all others when it was read for a miss
    /// (`fresh`: the reader moved elsewhere), else after them, dropping the
    /// oldest beyond the per-file count; then makes room in the shard's budget.
    fn install<F: HasReadAhead + 'static>(&self, file: &Rc<F>, window: Window, fresh: bool) {
        let replaced = {
            let mut windows = self.windows.borrow_mut();
            let mut replaced: Vec<Window> = Vec::new();
            if fresh {
                replaced.extend(windows.drain(..));
            }
            windows.push_back(window);
            while windows.len() > WINDOWS_PER_FILE {
                replaced.extend(windows.pop_front());
            }
            replaced
        };
        drop(replaced);
        if held_bytes() > SHARD_BUDGET_BYTES {
            evict_oldest(0);
        }
        if !self.queued.replace(true) {
            let weak: Weak<dyn HasReadAhead> = Rc::downgrade(file) as Weak<dyn HasReadAhead>;
            SHARD.with(|s| {
                let mut queue = s.queue.borrow_mut();
                // Dropped files (deleted segments) leave dead entries; prune them now and then.
                if queue.len() >= PRUNE_QUEUE_AT && queue.len().is_power_of_two() {
                    queue.retain(|w| w.strong_count() > 0);
                }
                queue.push_back(weak);
            });
        }
    }

    /// The file's bytes may have changed (a tail truncation): forget them,
    /// and discard any background read in flight.
    pub fn invalidate(&self) {
        self.generation.set(self.generation.get() + 1);
        let dropped = std::mem::take(&mut *self.windows.borrow_mut());
        drop(dropped);
    }

    /// Read-ahead bytes this file holds.
    pub fn held(&self) -> usize {
        self.windows.borrow().iter().map(|w| w.data.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in memory that counts its reads.
    struct MemFile {
        bytes: Vec<u8>,
        reads: Cell<usize>,
        ra: ReadAhead,
    }

    impl HasReadAhead for MemFile {
        fn read_ahead(&self) -> &ReadAhead {
            &self.ra
        }
    }

    impl RangeReader for MemFile {
        async fn read_range(&self, position: u64, len: usize) -> io::Result<Bytes> {
            self.reads.set(self.reads.get() + 1);
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            let p = position as usize;
            Ok(Bytes::copy_from_slice(&self.bytes[p..p + len]))
        }
    }

    #[test]
    fn a_sequential_reader_gets_exact_bytes_and_reads_ahead_within_the_budget() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let size = 7 * READ_UNIT_BYTES + 12345;
                let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
                let file = Rc::new(MemFile { bytes: bytes.clone(), reads: Cell::new(0), ra: ReadAhead::default() });
                let limit = size as u64;
                let step = (1 << 20) + 333;
                let mut pos = 0u64;
                while pos < limit {
                    // As a fetch does: a batch header at least, up to its budget.
                    let got = read(&file, pos, 61, step, limit).await.unwrap();
                    assert!(got.len() >= 61.min(size - pos as usize) && got.len() <= step);
                    let end = pos as usize + got.len();
                    assert_eq!(&got[..], &bytes[pos as usize..end], "bytes at {pos}");
                    pos = end as u64;
                    read_ahead_from(&file, pos, limit);
                    // Let the background read run, as the network send would.
                    glommio::timer::sleep(std::time::Duration::from_millis(3)).await;
                }
                // One read per unit (plus the tail), not one per fetch.
                let units = size.div_ceil(READ_UNIT_BYTES);
                assert!(file.reads.get() <= units + 1, "{} reads for {units} units", file.reads.get());
                assert!(file.ra.held() <= WINDOWS_PER_FILE * 2 * step);
                // A truncation forgets the windows.
                file.ra.invalidate();
                assert_eq!(file.ra.held(), 0);
                // A random reader past the budget: the shard's total stays bounded.
                let many: Vec<_> = (0..(SHARD_BUDGET_BYTES / READ_UNIT_BYTES + 8))
                    .map(|_| Rc::new(MemFile { bytes: bytes.clone(), reads: Cell::new(0), ra: ReadAhead::default() }))
                    .collect();
                for f in &many {
                    let got = read(f, 0, 100, 4096, limit).await.unwrap();
                    assert!(got.len() >= 100 && got.len() <= 4096);
                }
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
                assert!(held_bytes() <= SHARD_BUDGET_BYTES + READ_UNIT_BYTES, "held {}", held_bytes());
                drop(many);
                drop(file);
                // Dropped files' windows were given back (an in-flight read may still hold one).
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
                assert_eq!(held_bytes(), 0);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
