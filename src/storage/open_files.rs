//! The shard's budget of open segment files.
//!
//! A node may hold far more partitions than the process may open files
//! (RLIMIT_NOFILE), and before this budget every segment kept a buffered
//! fd and every active segment an O_DIRECT fd for the log's lifetime: 10,000
//! partitions exhausted 20,000 fds, and the broker could not even start
//! again. Now segment files are opened when first needed and counted here;
//! before each open, files not used lately are closed (CLOCK, second
//! chance) until the shard is under its budget. A closed file is opened
//! again on its next use, so closing never loses anything.
//!
//! Two kinds of holders: a segment's buffered read handle (`SegmentFile`,
//! closable whenever nothing borrows it) and a log's O_DIRECT write handle
//! (closable only while the log's writer is idle; see `Log::release_files`).
//! Counting is exact: every handle is a `Counted`, which gives its count
//! back when the last reference (a fetch in flight may hold one) drops.
//!
//! Per shard (thread-local), like everything a shard owns; `!Send`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use glommio::io::DmaFile;

use super::read_ahead::{HasReadAhead, RangeReader, ReadAhead};

/// Budget of a shard that never set one (tests, tools): generous, so only a
/// real shard's derived budget makes files close.
const DEFAULT_LIMIT: usize = 4096;

/// Something holding open segment files that the budget may ask to close them.
pub trait FileHolder {
    /// Used since the last sweep passed it (and clears that mark).
    fn take_referenced(&self) -> bool;
    /// Closes what it can now. Returns false when it is busy (ask again later).
    fn release(&self) -> bool;
    /// Still holds an open file (kept in the sweep).
    fn holds_files(&self) -> bool;
}

struct Budget {
    limit: Cell<usize>,
    open: Cell<usize>,
    /// Holders in sweep order; each at most once (its `queued` flag).
    clock: RefCell<VecDeque<Weak<dyn FileHolder>>>,
    over_budget_warned: Cell<bool>,
}

thread_local! {
    static BUDGET: Budget = Budget {
        limit: Cell::new(DEFAULT_LIMIT),
        open: Cell::new(0),
        clock: RefCell::new(VecDeque::new()),
        over_budget_warned: Cell::new(false),
    };
}

/// Sets this shard's budget of open segment files (at shard start).
pub fn set_limit(limit: usize) {
    BUDGET.with(|b| b.limit.set(limit.max(1)));
}

pub fn limit() -> usize {
    BUDGET.with(|b| b.limit.get())
}

/// Segment files this shard holds open now.
pub fn open_count() -> usize {
    BUDGET.with(|b| b.open.get())
}

/// Puts a holder that just opened a file into the sweep.
pub fn track(holder: Weak<dyn FileHolder>) {
    BUDGET.with(|b| b.clock.borrow_mut().push_back(holder));
}

/// Closes files of holders not used lately until one more file fits the
/// budget. Visits each holder at most twice (second chance); if every one
/// is busy the open goes ahead over budget, with a warning once.
fn make_room() {
    BUDGET.with(|b| {
        let mut visits = 2 * b.clock.borrow().len();
        while b.open.get() >= b.limit.get() && visits > 0 {
            visits -= 1;
            // Not borrowed while the holder runs: releasing drops `Counted`s.
            let Some(weak) = b.clock.borrow_mut().pop_front() else { break };
            let Some(holder) = weak.upgrade() else { continue };
            if !holder.holds_files() {
                continue;
            }
            if holder.take_referenced() || !holder.release() {
                b.clock.borrow_mut().push_back(weak);
            } else if holder.holds_files() {
                b.clock.borrow_mut().push_back(weak);
            }
        }
        if b.open.get() >= b.limit.get() {
            if !b.over_budget_warned.replace(true) {
                tracing::warn!(open = b.open.get(), limit = b.limit.get(), "open segment files over the shard's budget: every holder is busy");
            }
        } else {
            b.over_budget_warned.set(false);
        }
    });
}

/// An open file counted against the shard's budget until it drops.
pub struct Counted<T> {
    inner: Option<T>,
}

impl<T> Counted<T> {
    fn new(inner: T) -> Self {
        BUDGET.with(|b| b.open.set(b.open.get() + 1));
        Counted { inner: Some(inner) }
    }

    /// The file itself, no longer counted (to close it explicitly).
    pub fn into_inner(mut self) -> T {
        let inner = self.inner.take().expect("present until dropped");
        BUDGET.with(|b| b.open.set(b.open.get() - 1));
        inner
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Counted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T> Deref for Counted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner.as_ref().expect("present until dropped")
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        if self.inner.take().is_some() {
            BUDGET.with(|b| b.open.set(b.open.get() - 1));
        }
    }
}

/// A segment's buffered read handle (header reads, scans).
pub type ReadHandle = Rc<Counted<File>>;
/// A segment's O_DIRECT read handle (record bytes for Fetch, read by io_uring).
pub type DmaReadHandle = Rc<Counted<DmaFile>>;
/// An active segment's O_DIRECT write handle.
pub type WriteHandle = Rc<Counted<DmaFile>>;

/// Opens a segment file for reading, within the budget.
pub fn open_read(path: &Path) -> io::Result<ReadHandle> {
    make_room();
    Ok(Rc::new(Counted::new(File::open(path)?)))
}

thread_local! {
    static DEVICE_PROBED: Cell<bool> = const { Cell::new(false) };
}

/// glommio decides per thread and device, at the first O_DIRECT open,
/// whether the device takes polled I/O, by reading the file's first block;
/// when that file is empty (a new segment, the usual first open) the read
/// "succeeds" with nothing, polled I/O is wrongly enabled, and every later
/// O_DIRECT read fails with EOPNOTSUPP. So the first open on each thread is
/// of a probe file that holds a block of data.
async fn probe_device_once(path: &Path) {
    if DEVICE_PROBED.with(|p| p.replace(true)) {
        return;
    }
    let Some(dir) = path.parent() else { return };
    let probe = dir.join(format!(".dma-probe-{}", std::process::id()));
    if std::fs::write(&probe, [0u8; 4096]).is_ok() {
        if let Ok(f) = DmaFile::open(&probe).await {
            let _ = f.close().await;
        }
    }
    let _ = std::fs::remove_file(&probe);
}

/// Opens an existing segment file for O_DIRECT writes, within the budget.
pub async fn open_write(path: &Path, create: bool) -> io::Result<WriteHandle> {
    probe_device_once(path).await;
    make_room();
    let dma = glommio::io::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .dma_open(path)
        .await?;
    Ok(Rc::new(Counted::new(dma)))
}

/// Closes a write handle explicitly when nothing else holds it (else the
/// last holder's drop closes it in the background, as glommio does).
pub async fn close_write(handle: WriteHandle) -> io::Result<()> {
    match Rc::try_unwrap(handle) {
        Ok(counted) => counted.into_inner().close().await.map_err(io::Error::from),
        Err(_) => Ok(()),
    }
}

/// The read side of one segment file: knows whether the file exists and
/// opens it on first use (again after the budget closed it).
pub struct SegmentFile {
    path: PathBuf,
    exists: Cell<bool>,
    file: RefCell<Option<ReadHandle>>,
    dma: RefCell<Option<DmaReadHandle>>,
    referenced: Cell<bool>,
    /// In the budget's sweep now.
    queued: Cell<bool>,
    me: Weak<SegmentFile>,
    /// Bytes read ahead for sequential readers (`read_ahead::read`).
    read_ahead: ReadAhead,
}

impl SegmentFile {
    pub fn new(path: PathBuf, exists: bool) -> Rc<SegmentFile> {
        Rc::new_cyclic(|me| SegmentFile {
            path,
            exists: Cell::new(exists),
            file: RefCell::new(None),
            dma: RefCell::new(None),
            referenced: Cell::new(false),
            queued: Cell::new(false),
            me: me.clone(),
            read_ahead: ReadAhead::default(),
        })
    }

    /// The file was created (or found) on disk.
    pub fn set_exists(&self) {
        self.exists.set(true);
    }

    pub fn exists(&self) -> bool {
        self.exists.get()
    }

    /// The file's written bytes changed (a tail truncation): forget what was read ahead.
    pub fn invalidate_read_ahead(&self) {
        self.read_ahead.invalidate();
    }

    /// Keeps an already open handle (from a compaction swap) instead of reopening.
    pub fn adopt(&self, file: File) {
        self.exists.set(true);
        self.read_ahead.invalidate();
        *self.file.borrow_mut() = Some(Rc::new(Counted::new(file)));
        self.enqueue();
    }

    /// The open read handle, opening the file if needed; None while the file
    /// does not exist yet. Blocking open(2) on the shard thread: a directory
    /// lookup, normally in the dentry cache.
    pub fn get(&self) -> io::Result<Option<ReadHandle>> {
        if !self.exists.get() {
            return Ok(None);
        }
        if let Some(f) = self.file.borrow().as_ref() {
            self.referenced.set(true);
            return Ok(Some(f.clone()));
        }
        let f = open_read(&self.path)?;
        *self.file.borrow_mut() = Some(f.clone());
        self.enqueue();
        Ok(Some(f))
    }

    /// The O_DIRECT read handle, opened (by io_uring) if needed: fetches
    /// read record bytes through it without blocking the shard on a cold
    /// page, and without the page cache the writes bypassed anyway.
    pub async fn dma(&self) -> io::Result<DmaReadHandle> {
        if let Some(f) = self.dma.borrow().as_ref() {
            self.referenced.set(true);
            return Ok(f.clone());
        }
        probe_device_once(&self.path).await;
        make_room();
        let f: DmaReadHandle = Rc::new(Counted::new(DmaFile::open(&self.path).await?));
        // Another task may have opened it meanwhile: keep one.
        let mut slot = self.dma.borrow_mut();
        let f = slot.get_or_insert(f).clone();
        drop(slot);
        self.enqueue();
        Ok(f)
    }

    fn enqueue(&self) {
        if !self.queued.replace(true) {
            let me: Weak<dyn FileHolder> = self.me.clone();
            track(me);
        }
    }
}

impl HasReadAhead for SegmentFile {
    fn read_ahead(&self) -> &ReadAhead {
        &self.read_ahead
    }
}

impl RangeReader for SegmentFile {
    /// Reads `len` bytes at `position` (O_DIRECT, on the blocking pool) into memory of its own.
    async fn read_range(&self, position: u64, len: usize) -> io::Result<bytes::Bytes> {
        let f = self.dma().await?;
        // `f` stays open (referenced here) until the read returns.
        let read = super::direct_read::read(std::os::fd::AsRawFd::as_raw_fd(&**f), position, len).await;
        drop(f);
        read.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

impl std::fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFile").field("path", &self.path).field("exists", &self.exists.get()).finish()
    }
}

impl FileHolder for SegmentFile {
    fn take_referenced(&self) -> bool {
        self.referenced.replace(false)
    }

    fn release(&self) -> bool {
        let (Ok(mut file), Ok(mut dma)) = (self.file.try_borrow_mut(), self.dma.try_borrow_mut()) else { return false };
        file.take();
        // Dropped, glommio closes it in the background.
        dma.take();
        self.queued.set(false);
        true
    }

    fn holds_files(&self) -> bool {
        let held = self.file.try_borrow().map_or(true, |f| f.is_some()) || self.dma.try_borrow().map_or(true, |f| f.is_some());
        if !held {
            self.queued.set(false);
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reopen_after_the_budget_closed_them_and_the_count_stays_exact() {
        let dir = std::env::temp_dir().join(format!("fjord-open-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: Vec<_> = (0..5)
            .map(|i| {
                let p = dir.join(format!("{i}.log"));
                std::fs::write(&p, format!("segment {i}")).unwrap();
                SegmentFile::new(p, true)
            })
            .collect();
        let base = open_count();
        set_limit(base + 2);
        for f in &files {
            f.get().unwrap().unwrap();
        }
        assert!(open_count() <= base + 2, "open {} over budget {}", open_count(), base + 2);
        // A closed file opens again, with its contents.
        let mut s = String::new();
        use std::io::Read;
        (&**files[0].get().unwrap().unwrap()).read_to_string(&mut s).unwrap();
        assert_eq!(s, "segment 0");
        // A handle held by a reader survives the close and is counted until it drops.
        let held = files[1].get().unwrap().unwrap();
        for f in &files[2..] {
            f.get().unwrap().unwrap();
        }
        assert!(open_count() <= base + 3);
        drop(held);
        drop(files);
        assert_eq!(open_count(), base);
        let missing = SegmentFile::new(dir.join("absent.log"), false);
        assert!(missing.get().unwrap().is_none());
        set_limit(DEFAULT_LIMIT);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
