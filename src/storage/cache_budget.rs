//! The shard's budget for batch caches (`fjord.batch.cache.bytes`).
//!
//! Each log caches its recent batches (the unwritten ones must stay there,
//! the written ones serve tail fetches without a disk read), bounded per log
//! by `LogConfig::cache_bytes_max`. Per log alone, 10,000 active partitions
//! could hold 10,000 times that. So every log's cache is also counted in its
//! shard's total, and once an append takes the total over the budget, the
//! written entries of other logs go first, oldest appender first with a
//! second chance for a log appended to since the last pass (CLOCK), then the
//! appender's own. Unwritten entries are never dropped: they are bounded by
//! the writer's backpressure (`PENDING_BYTES_MAX`), not by this budget.
//! Dropping a written entry loses nothing: the read path reads the segment
//! (read-ahead windows) instead.
//!
//! Per shard (thread-local), like everything a shard owns; `!Send`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Weak;

/// Something with a batch cache the budget may ask to drop its written entries.
pub trait CacheHolder {
    /// Appended to since the last pass of the sweep (and clears that mark).
    fn take_recently_used(&self) -> bool;
    /// Drops the written entries if the holder is not busy now. Returns
    /// whether it stays in the sweep (busy, or still holding unwritten
    /// entries); when false it counts itself out, and `track`s itself again
    /// when it caches next.
    fn drop_written(&self) -> bool;
}

struct Budget {
    limit: Cell<usize>,
    held: Cell<usize>,
    sweep: RefCell<VecDeque<Weak<dyn CacheHolder>>>,
}

thread_local! {
    static BUDGET: Budget = const {
        Budget { limit: Cell::new(usize::MAX), held: Cell::new(0), sweep: RefCell::new(VecDeque::new()) }
    };
}

/// Sets this shard's budget (at shard start; unset, there is none).
pub fn set_shard_limit(bytes: usize) {
    BUDGET.with(|b| b.limit.set(bytes));
}

/// Cached bytes of all logs of this shard.
pub fn held_bytes() -> usize {
    BUDGET.with(|b| b.held.get())
}

pub(super) fn over_budget() -> bool {
    BUDGET.with(|b| b.held.get() > b.limit.get())
}

/// Puts a log that just started caching into the sweep.
pub(super) fn track(holder: Weak<dyn CacheHolder>) {
    BUDGET.with(|b| b.sweep.borrow_mut().push_back(holder));
}

/// Holders one `make_room` visits at most: it runs in the append path, and
/// when unwritten entries alone keep the shard over budget, every holder
/// would be visited on every append. The sweep rotates, so the next call
/// goes on where this one stopped.
const VISITS_PER_CALL_MAX: usize = 64;

/// Drops written entries of other logs (a log busy now, such as the caller,
/// is passed over) until the shard is within its budget, every holder was
/// visited twice, or `VISITS_PER_CALL_MAX` were.
pub(super) fn make_room() {
    BUDGET.with(|b| {
        let mut visits = (2 * b.sweep.borrow().len()).min(VISITS_PER_CALL_MAX);
        while b.held.get() > b.limit.get() && visits > 0 {
            visits -= 1;
            let Some(weak) = b.sweep.borrow_mut().pop_front() else { break };
            let Some(holder) = weak.upgrade() else { continue };
            // Not borrowed while the holder drops entries: that updates `held`.
            if holder.take_recently_used() || holder.drop_written() {
                b.sweep.borrow_mut().push_back(weak);
            }
        }
    });
}

/// A log's cache size, counted in its shard's total as well; gives its
/// bytes back when dropped (the log closed or went away).
#[derive(Default)]
pub(super) struct CacheBytes(usize);

impl CacheBytes {
    pub(super) fn get(&self) -> usize {
        self.0
    }

    pub(super) fn add(&mut self, n: usize) {
        self.0 += n;
        BUDGET.with(|b| b.held.set(b.held.get() + n));
    }

    pub(super) fn sub(&mut self, n: usize) {
        assert!(n <= self.0, "cache bytes {} below zero by {n}", self.0);
        self.0 -= n;
        BUDGET.with(|b| b.held.set(b.held.get() - n));
    }

    pub(super) fn clear(&mut self) {
        let n = self.0;
        self.sub(n);
    }
}

impl Drop for CacheBytes {
    fn drop(&mut self) {
        self.clear();
    }
}
