//! Offset expiry (`offsets.retention.minutes`, KIP-211; `fjord.offsets.retention.ms`
//! when set), on the shard that
//! owns each `__consumer_offsets` partition, every
//! `offsets.retention.check.interval.ms`.
//!
//! Kafka's rule: a group with members keeps its offsets; an Empty group that
//! once had members loses all of them `offsets.retention.minutes` after it
//! became empty; a standalone group (offsets committed without ever joining,
//! no protocol type) loses each offset that long after its commit. Offsets a
//! transaction still holds pending are kept. Expired offsets become
//! tombstones; an Empty group left with no offsets is removed (its metadata
//! tombstoned too) and no longer listed. Not done: Kafka also expires, in a
//! Stable consumer group, offsets of topics no member subscribes to.

use std::collections::HashSet;
use std::rc::Rc;

use bytes::Bytes;

use super::group::{now_ms, GroupState};
use super::{records, OffsetsPartition};
use crate::shard::ShardState;

/// Expires offsets on every loaded offsets partition of this shard.
pub async fn expire_offsets(shard: &Rc<ShardState>) {
    let c = &shard.config;
    let retention_ms = c.fjord_offsets_retention_ms.unwrap_or(c.offsets_retention_minutes.saturating_mul(60_000));
    for op in shard.groups.loaded() {
        if op.is_loaded() {
            expire_partition(&op, now_ms(), retention_ms).await;
        }
    }
}

async fn expire_partition(op: &Rc<OffsetsPartition>, now: i64, retention_ms: i64) {
    let pending: HashSet<(String, String, i32)> =
        op.pending_txn.borrow().values().flatten().map(|(g, t, p, _)| (g.clone(), t.clone(), *p)).collect();
    // (group, expired partitions with the commit time they expired at,
    // whether the group goes away)
    type Expired = Vec<((String, i32), i64)>;
    let mut plan: Vec<(String, Expired, bool)> = Vec::new();
    for g in op.groups.borrow().values() {
        if g.state != GroupState::Empty {
            continue;
        }
        // A group that had members counts from when it became empty.
        let since_empty = g.protocol_type.as_ref().map(|_| g.state_timestamp_ms);
        let expired: Expired = g
            .offsets
            .iter()
            .filter(|((t, p), v)| {
                let base = since_empty.unwrap_or(v.commit_timestamp_ms);
                now.saturating_sub(base) >= retention_ms && !pending.contains(&(g.id.clone(), t.clone(), *p))
            })
            .map(|(k, v)| (k.clone(), v.commit_timestamp_ms))
            .collect();
        let drop_group = expired.len() == g.offsets.len() && !pending.iter().any(|(pg, _, _)| *pg == g.id);
        if !expired.is_empty() || drop_group {
            plan.push((g.id.clone(), expired, drop_group));
        }
    }
    for (group_id, expired, drop_group) in plan {
        let mut recs: Vec<(Bytes, Option<Bytes>)> =
            expired.iter().map(|((t, p), _)| (records::offset_key(&group_id, t, *p), None)).collect();
        if drop_group {
            recs.push((records::group_key(&group_id), None));
        }
        if let Err(e) = op.append(&recs).await {
            tracing::warn!(group = %group_id, error = %e, "expiring offsets failed; retried at the next check");
            continue;
        }
        tracing::info!(group = %group_id, offsets = expired.len(), removed = drop_group, "expired committed offsets");
        let mut groups = op.groups.borrow_mut();
        let Some(g) = groups.get_mut(&group_id) else { continue };
        // A commit that landed while the tombstones were written stays.
        for (k, committed_at) in &expired {
            if g.offsets.get(k).is_some_and(|v| v.commit_timestamp_ms == *committed_at) {
                g.offsets.remove(k);
            }
        }
        if drop_group && g.state == GroupState::Empty && g.offsets.is_empty() {
            if let Some(mut g) = groups.remove(&group_id) {
                g.set_state(GroupState::Dead);
            }
        }
    }
}
