//! Transactional offset commits (TxnOffsetCommit). As in Kafka, the offsets
//! are written at once to the group's `__consumer_offsets` partition as a
//! transactional batch of the producer (producer id and epoch, transactional
//! attribute) and wait, per producer id, until the transaction coordinator
//! writes the COMMIT marker there (then they become the group's committed
//! offsets, and are written again as ordinary commits) or the ABORT marker
//! (then they are dropped). A reload replays the same rule from the log
//! (`decode_for_load`), so pending offsets survive kill -9.
//!
//! Runs on the shard that owns the offsets partition (the group's
//! coordinator); the pending map lives in its `OffsetsPartition`.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;

use super::records::{self, DecodeError, OffsetValue, OffsetsRecord};
use super::{group::now_ms, group::Group, GroupError, OffsetsPartition, LOAD_WAIT, OFFSET_METADATA_MAX_BYTES};
use crate::partition::producer_state::ProducerStateError;
use crate::partition::PartitionError;
use crate::shard::ShardState;

/// Most pending offsets one producer may hold on one offsets partition.
pub const PENDING_OFFSETS_MAX: usize = 100_000;

/// One pending offset: (group, topic, partition, value).
pub type Pending = (String, String, i32, OffsetValue);

/// Records of one transaction read at load, by producer id: (key, value).
pub type LoadPending = HashMap<i64, Vec<(Bytes, Option<Bytes>)>>;

/// Who sends a TxnOffsetCommit (v3+, KIP-447): the consumer's member id,
/// generation and static instance id; v0–2 carry none (generation -1, "").
pub struct TxnMember {
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// Kafka's check of a transactional commit against the group: none when the
/// request names no member; else the member must be current (static
/// instances not fenced) and its generation the group's. An unknown group is
/// created empty, as Kafka does.
fn check_member(op: &OffsetsPartition, group_id: &str, m: &TxnMember) -> Result<(), GroupError> {
    let mut groups = op.groups.borrow_mut();
    let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id.to_string()));
    if group.state == super::group::GroupState::Dead {
        return Err(GroupError::CoordinatorNotAvailable);
    }
    if m.generation < 0 && m.member_id.is_empty() && m.instance_id.is_none() {
        return Ok(());
    }
    if let Some(i) = &m.instance_id {
        if group.static_members.get(i).is_some_and(|known| *known != m.member_id) {
            return Err(GroupError::FencedInstanceId);
        }
    }
    if !group.members.contains_key(&m.member_id) {
        return Err(GroupError::UnknownMemberId);
    }
    if m.generation != group.generation {
        return Err(GroupError::IllegalGeneration);
    }
    Ok(())
}

/// TxnOffsetCommit on the coordinator: per-partition results in request order.
pub async fn add(
    shard: Rc<ShardState>,
    op: Rc<OffsetsPartition>,
    group_id: String,
    producer_id: i64,
    producer_epoch: i16,
    member: TxnMember,
    offsets: Vec<(String, i32, i64, i32, Option<String>)>,
) -> Result<Vec<Result<(), GroupError>>, GroupError> {
    super::validate_group_id(&group_id)?;
    if producer_id < 0 {
        return Err(GroupError::CoordinatorNotAvailable);
    }
    check_member(&op, &group_id, &member)?;
    let md = shard.metadata();
    let now = now_ms();
    let held = op.pending_txn.borrow().get(&producer_id).map_or(0, |l| l.len());
    let mut results = Vec::with_capacity(offsets.len());
    let mut accepted: Vec<(usize, Pending)> = Vec::new();
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
        if held + accepted.len() >= PENDING_OFFSETS_MAX {
            results.push(Err(GroupError::CoordinatorNotAvailable));
            continue;
        }
        let v = OffsetValue { offset, leader_epoch: epoch, metadata, commit_timestamp_ms: now };
        accepted.push((results.len(), (group_id.clone(), topic, partition, v)));
        results.push(Ok(()));
    }
    if accepted.is_empty() {
        return Ok(results);
    }
    let recs: Vec<(Bytes, Option<Bytes>)> =
        accepted.iter().map(|(_, (g, t, p, v))| (records::offset_key(g, t, *p), Some(records::offset_value(v)))).collect();
    let written = match encode_txn_batch(&recs, producer_id, producer_epoch, now) {
        Ok(batch) => op.log.append_transactional(batch).await.map_err(|e| match e {
            PartitionError::Producer(ProducerStateError::InvalidEpoch { .. }) => GroupError::InvalidProducerEpoch,
            e => {
                tracing::warn!(partition = op.index, error = ?e, "writing transactional offsets failed");
                GroupError::CoordinatorNotAvailable
            }
        }),
        Err(_) => Err(GroupError::CoordinatorNotAvailable),
    };
    if let Err(e) = written {
        for (i, _) in &accepted {
            results[*i] = Err(e);
        }
        return Ok(results);
    }
    let mut pending = op.pending_txn.borrow_mut();
    let list = pending.entry(producer_id).or_default();
    for (_, (g, t, p, v)) in accepted {
        list.retain(|(g2, t2, p2, _)| !(*g2 == g && *t2 == t && *p2 == p));
        list.push((g, t, p, v));
    }
    Ok(results)
}

/// A marker for `producer_id` was written to offsets partition `index`:
/// commit makes its pending offsets the group's (written again as ordinary
/// commits); abort drops them.
pub async fn complete(shard: &Rc<ShardState>, index: i32, producer_id: i64, commit: bool) {
    let op = match shard.groups.partition_loaded(shard, index, LOAD_WAIT).await {
        Ok(op) => op,
        Err(e) => {
            // The marker is in the log: the next load applies it.
            tracing::warn!(partition = index, producer_id, error = %e, "transactional offsets wait for the partition to load");
            return;
        }
    };
    let Some(list) = op.pending_txn.borrow_mut().remove(&producer_id) else { return };
    if !commit || list.is_empty() {
        return;
    }
    {
        let mut groups = op.groups.borrow_mut();
        for (g, t, p, v) in &list {
            groups.entry(g.clone()).or_insert_with(|| Group::new(g.clone())).offsets.insert((t.clone(), *p), v.clone());
        }
    }
    let recs: Vec<_> = list.iter().map(|(g, t, p, v)| (records::offset_key(g, t, *p), Some(records::offset_value(v)))).collect();
    if let Err(e) = op.append(&recs).await {
        // Already committed by the transactional records and the marker.
        tracing::warn!(partition = index, producer_id, error = %e, "rewriting committed transactional offsets failed");
    }
}

/// One uncompressed transactional RecordBatch v2 of `producer_id`.
fn encode_txn_batch(recs: &[(Bytes, Option<Bytes>)], producer_id: i64, producer_epoch: i16, now: i64) -> Result<BytesMut, DecodeError> {
    records::encode_batch_as(recs, now, Some((producer_id, producer_epoch)))
}

/// `records::decode_batches` for a load: ordinary records as they come;
/// transactional records held in `pending` by producer id and released (in
/// place of the marker) by a COMMIT marker, dropped by an ABORT marker.
pub fn decode_for_load(bytes: Bytes, pending: &mut LoadPending) -> Result<Vec<(i64, Option<Bytes>, Option<Bytes>)>, DecodeError> {
    let mut buf = bytes;
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|_| DecodeError("undecodable batch"))?;
    let mut out = Vec::new();
    for set in sets {
        for r in set.records {
            if r.control {
                let commit = r.key.as_ref().filter(|k| k.len() >= 4).map(|k| (&k[2..4]).get_i16() == 1);
                let held = pending.remove(&r.producer_id).unwrap_or_default();
                if commit == Some(true) {
                    out.extend(held.into_iter().map(|(k, v)| (r.offset, Some(k), v)));
                }
            } else if r.transactional && r.producer_id >= 0 {
                if let Some(k) = r.key {
                    pending.entry(r.producer_id).or_default().push((k, r.value));
                }
            } else {
                out.push((r.offset, r.key, r.value));
            }
        }
    }
    Ok(out)
}

/// What a load leaves pending (transactions still open), decoded.
pub fn pending_after_load(held: LoadPending) -> HashMap<i64, Vec<Pending>> {
    let mut out: HashMap<i64, Vec<Pending>> = HashMap::new();
    for (pid, recs) in held {
        let list = out.entry(pid).or_default();
        for (k, v) in recs {
            if let Ok(OffsetsRecord::Offset { group, topic, partition, value: Some(v) }) = records::decode(k, v) {
                list.retain(|(g, t, p, _)| !(*g == group && *t == topic && *p == partition));
                list.push((group, topic, partition, v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At load, transactional offsets count only from their COMMIT marker; aborted ones never.
    #[test]
    fn load_applies_committed_transactional_offsets_only() {
        let v = |o| records::offset_value(&OffsetValue { offset: o, leader_epoch: -1, metadata: String::new(), commit_timestamp_ms: 0 });
        let k = records::offset_key("g", "t", 0);
        let mut pending = LoadPending::new();
        let b1 = encode_txn_batch(&[(k.clone(), Some(v(5)))], 7, 0, 0).unwrap();
        assert!(decode_for_load(b1.freeze(), &mut pending).unwrap().is_empty());
        let commit = crate::partition::txn::encode_marker(7, 0, true, 0).unwrap();
        let out = decode_for_load(commit.freeze(), &mut pending).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].2, Some(v(5)));
        let b2 = encode_txn_batch(&[(k.clone(), Some(v(9)))], 7, 0, 0).unwrap();
        decode_for_load(b2.freeze(), &mut pending).unwrap();
        let abort = crate::partition::txn::encode_marker(7, 0, false, 0).unwrap();
        assert!(decode_for_load(abort.freeze(), &mut pending).unwrap().is_empty());
        let b3 = encode_txn_batch(&[(k, Some(v(11)))], 8, 0, 0).unwrap();
        decode_for_load(b3.freeze(), &mut pending).unwrap();
        let left = pending_after_load(pending);
        assert_eq!(left[&8][0].3.offset, 11);
        assert!(!left.contains_key(&7));
    }

    /// Offsets for several partitions go out as ONE transactional batch with
    /// no base sequence (the partition accepts exactly one such batch).
    #[test]
    fn several_offsets_encode_as_one_transactional_batch() {
        let v = records::offset_value(&OffsetValue { offset: 1, leader_epoch: -1, metadata: String::new(), commit_timestamp_ms: 0 });
        let recs: Vec<_> = (0..3).map(|p| (records::offset_key("g", "t", p), Some(v.clone()))).collect();
        let batch = encode_txn_batch(&recs, 7, 2, 0).unwrap();
        let headers = crate::storage::validate_batches(&batch).unwrap();
        assert_eq!(headers.len(), 1);
        assert!(headers[0].is_transactional());
        assert_eq!((headers[0].producer_id, headers[0].base_sequence, headers[0].record_count), (7, -1, 3));
    }
}
