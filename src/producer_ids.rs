//! Producer ids for InitProducerId: each shard takes blocks of
//! `PRODUCER_ID_BLOCK_SIZE` ids from the controller (a Raft-committed
//! counter, see `ControllerHandle::allocate_producer_ids`) and hands them out
//! one by one, so ids are unique across shards, restarts and (once there are
//! several) brokers. Ids left in a block at shutdown are never used.
//!
//! One allocator per shard, in `ShardState`; `!Send`, touched only there.

use std::cell::Cell;

use crate::controller::ControllerHandle;
use crate::metadata::ControllerError;

/// Ids fetched from the controller at a time (Kafka's block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

pub struct ProducerIdAllocator {
    /// The next id to hand out; `next == end` means the block is used up.
    next: Cell<i64>,
    end: Cell<i64>,
    /// One refill at a time: concurrent callers wait for it instead of each
    /// taking a block.
    refill: async_lock::Mutex<()>,
}

impl Default for ProducerIdAllocator {
    fn default() -> Self {
        ProducerIdAllocator {
            next: Cell::new(0),
            end: Cell::new(0),
            refill: async_lock::Mutex::new(()),
        }
    }
}

impl ProducerIdAllocator {
    fn take(&self) -> Option<i64> {
        let id = self.next.get();
        if id >= self.end.get() {
            return None;
        }
        self.next.set(id + 1);
        Some(id)
    }

    /// A producer id no other call, shard or earlier run has returned.
    pub async fn next_id(&self, controller: &ControllerHandle) -> Result<i64, ControllerError> {
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let _refilling = self.refill.lock().await;
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let start = controller
            .allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE)
            .await?;
        assert!(start >= 0, "the controller hands out non-negative ids");
        self.next.set(start);
        self.end.set(start + PRODUCER_ID_BLOCK_SIZE);
        Ok(self.take().expect("a fresh block is not empty"))
    }
}
