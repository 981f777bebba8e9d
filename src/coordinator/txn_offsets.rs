//! Transactional offset commits (TxnOffsetCommit): offsets a transactional
//! producer sends for a group wait here, per `__consumer_offsets` partition
//! and producer id, until the transaction coordinator writes the COMMIT
//! marker to that partition (then they are written as ordinary offset
//! commits and become visible) or the ABORT marker (then they are dropped).
//!
//! Runs on the shard that owns the offsets partition (the group's
//! coordinator); the pending map is part of that shard's `GroupCoordinator`.
//! Pending offsets are held in memory only: a broker killed between
//! EndTxn's PrepareCommit and the marker loses them (the transaction's
//! records still commit).

use std::rc::Rc;

use super::records::{self, OffsetValue};
use super::{group::now_ms, group::Group, GroupError, OffsetsPartition, LOAD_WAIT, OFFSET_METADATA_MAX_BYTES};
use crate::shard::ShardState;

/// Most pending offsets one producer may hold on one offsets partition.
pub const PENDING_OFFSETS_MAX: usize = 100_000;

/// One pending offset: (group, topic, partition, value).
pub type Pending = (String, String, i32, OffsetValue);

/// TxnOffsetCommit on the coordinator: per-partition results in request order.
pub fn add(
    shard: &ShardState,
    op: &OffsetsPartition,
    group_id: &str,
    producer_id: i64,
    offsets: Vec<(String, i32, i64, i32, Option<String>)>,
) -> Result<Vec<Result<(), GroupError>>, GroupError> {
    super::validate_group_id(group_id)?;
    let md = shard.metadata();
    let now = now_ms();
    let mut pending = shard.groups.pending_txn_offsets.borrow_mut();
    let list = pending.entry((op.index, producer_id)).or_default();
    let mut results = Vec::with_capacity(offsets.len());
    for (topic, partition, offset, epoch, metadata) in offsets {
        if md.partition(&topic, partition).is_none() {
            results.push(Err(GroupError::UnknownTopicOrPartition));
            continue;
        }
        let metadata = metadata.unwrap_or_default();
        if metadata.len() > OFFSET_METADATA_MAX_BYTES {
            results.push(Err(GroupError::OffsetMetadataTooLarge));
            continue;
        }
        if list.len() >= PENDING_OFFSETS_MAX {
            results.push(Err(GroupError::CoordinatorNotAvailable));
            continue;
        }
        list.retain(|(g, t, p, _)| !(g == group_id && *t == topic && *p == partition));
        list.push((group_id.to_string(), topic, partition, OffsetValue { offset, leader_epoch: epoch, metadata, commit_timestamp_ms: now }));
        results.push(Ok(()));
    }
    Ok(results)
}

/// A marker for `producer_id` was written to offsets partition `index`:
/// commit writes its pending offsets as ordinary commits; abort drops them.
pub async fn complete(shard: &Rc<ShardState>, index: i32, producer_id: i64, commit: bool) {
    let Some(list) = shard.groups.pending_txn_offsets.borrow_mut().remove(&(index, producer_id)) else { return };
    if !commit || list.is_empty() {
        return;
    }
    let op = match shard.groups.partition_loaded(shard, index, LOAD_WAIT).await {
        Ok(op) => op,
        Err(e) => {
            tracing::warn!(partition = index, producer_id, error = %e, "transactional offsets lost: offsets partition unavailable");
            return;
        }
    };
    let recs: Vec<_> = list.iter().map(|(g, t, p, v)| (records::offset_key(g, t, *p), Some(records::offset_value(v)))).collect();
    if let Err(e) = op.append(&recs).await {
        tracing::warn!(partition = index, producer_id, error = %e, "writing committed transactional offsets failed");
        return;
    }
    let mut groups = op.groups.borrow_mut();
    for (g, t, p, v) in list {
        groups.entry(g.clone()).or_insert_with(|| Group::new(g)).offsets.insert((t, p), v);
    }
}
