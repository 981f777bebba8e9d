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
//! tombstoned too) and no longer listed. In a Stable group of protocol type
//! "consumer", offsets of topics no member subscribes to expire after their
//! commit (members' subscriptions read from their protocol metadata).

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
        // Which offsets may expire, and from when: an empty group that had
        // members counts from when it became empty; a standalone group and a
        // Stable consumer group's unsubscribed topics from the commit.
        let (since_empty, subscribed) = match (g.state, g.protocol_type.as_deref()) {
            (GroupState::Empty, Some(_)) => (Some(g.state_timestamp_ms), None),
            (GroupState::Empty, None) => (None, None),
            (GroupState::Stable, Some("consumer")) => match subscribed_topics(g) {
                Some(topics) => (None, Some(topics)),
                None => continue,
            },
            _ => continue,
        };
        let expired: Expired = g
            .offsets
            .iter()
            .filter(|((t, p), v)| {
                let base = since_empty.unwrap_or(v.commit_timestamp_ms);
                now.saturating_sub(base) >= retention_ms
                    && !pending.contains(&(g.id.clone(), t.clone(), *p))
                    && !subscribed.as_ref().is_some_and(|s| s.contains(t))
            })
            .map(|(k, v)| (k.clone(), v.commit_timestamp_ms))
            .collect();
        let drop_group = g.state == GroupState::Empty
            && expired.len() == g.offsets.len()
            && !pending.iter().any(|(pg, _, _)| *pg == g.id);
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

/// Topics the members of a Stable consumer group subscribe to, from each
/// member's ConsumerProtocolSubscription (version, topic array, …) for the
/// group's protocol. None when one does not parse: then nothing expires.
fn subscribed_topics(g: &super::group::Group) -> Option<HashSet<String>> {
    let protocol = g.protocol.as_deref()?;
    let mut topics = HashSet::new();
    for m in g.members.values() {
        let (_, meta) = m.protocols.iter().find(|(name, _)| name == protocol)?;
        let mut b: &[u8] = meta;
        let _version = take_i16(&mut b)?;
        let count = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
        for _ in 0..count.max(0) {
            let len = usize::try_from(take_i16(&mut b)?).ok()?;
            topics.insert(String::from_utf8(take(&mut b, len)?.to_vec()).ok()?);
        }
    }
    Some(topics)
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

fn take_i16(b: &mut &[u8]) -> Option<i16> {
    Some(i16::from_be_bytes(take(b, 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::group::{test_member, Group, Member};
    use super::*;

    fn member(id: &str, metadata: Vec<u8>) -> Member {
        test_member(id, vec![("range".into(), Bytes::from(metadata))])
    }

    /// A ConsumerProtocolSubscription's topics are read; a truncated one is refused.
    #[test]
    fn subscription_topics_parse() {
        let mut meta = vec![0, 1, 0, 0, 0, 2];
        for t in ["a", "bc"] {
            meta.extend_from_slice(&(t.len() as i16).to_be_bytes());
            meta.extend_from_slice(t.as_bytes());
        }
        meta.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // user data: null
        let mut g = Group::new("g".into());
        g.protocol = Some("range".into());
        g.members.insert("m1".into(), member("m1", meta.clone()));
        let topics = subscribed_topics(&g).unwrap();
        assert_eq!(topics, ["a", "bc"].into_iter().map(String::from).collect());
        g.members.insert("m2".into(), member("m2", meta[..8].to_vec()));
        assert!(subscribed_topics(&g).is_none());
    }
}
