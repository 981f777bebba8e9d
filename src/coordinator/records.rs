//! The records of `__consumer_offsets`, in Kafka's own schemas, so that the
//! topic reads the same as Kafka's (kcat, Kafka's own formatter).
//!
//! Keys: OffsetCommitKey v1 (group, topic, partition) and GroupMetadataKey v2
//! (group). Values: OffsetCommitValue v3 (offset, leader epoch, metadata,
//! commit timestamp) and GroupMetadataValue v3 (protocol type, generation,
//! protocol, leader, state timestamp, members). A null value is a tombstone.
//! All are non-flexible versions: `int16 version` then the fields, strings
//! as `int16 length + bytes`, arrays as `int32 count`, bytes as `int32 length`.
//! Pure functions: no I/O, callable on any shard.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq)]
pub enum OffsetsRecord {
    /// Commit (Some) or delete (None) of one partition's offset.
    Offset { group: String, topic: String, partition: i32, value: Option<OffsetValue> },
    /// Group metadata (Some) or group deletion (None).
    Group { group: String, value: Option<GroupValue> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

fn put_str(b: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&s.as_bytes()[..len]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn need(b: &Bytes, n: usize) -> Result<(), DecodeError> {
    if b.remaining() < n {
        Err(DecodeError("record shorter than its schema"))
    } else {
        Ok(())
    }
}

fn get_i16(b: &mut Bytes) -> Result<i16, DecodeError> {
    need(b, 2)?;
    Ok(b.get_i16())
}
fn get_i32(b: &mut Bytes) -> Result<i32, DecodeError> {
    need(b, 4)?;
    Ok(b.get_i32())
}
fn get_i64(b: &mut Bytes) -> Result<i64, DecodeError> {
    need(b, 8)?;
    Ok(b.get_i64())
}

fn get_nullable_str(b: &mut Bytes) -> Result<Option<String>, DecodeError> {
    let len = get_i16(b)?;
    if len < 0 {
        return Ok(None);
    }
    need(b, len as usize)?;
    let s = b.split_to(len as usize);
    String::from_utf8(s.to_vec()).map(Some).map_err(|_| DecodeError("string is not UTF-8"))
}

fn get_str(b: &mut Bytes) -> Result<String, DecodeError> {
    get_nullable_str(b)?.ok_or(DecodeError("null where a string is required"))
}

fn get_bytes(b: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = get_i32(b)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(b, len as usize)?;
    Ok(b.split_to(len as usize))
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + group.len() + topic.len());
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::with_capacity(24 + v.metadata.len());
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp_ms);
    b.freeze()
}

pub fn group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(3);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable_str(&mut b, v.protocol.as_deref());
    put_nullable_str(&mut b, v.leader.as_deref());
    b.put_i64(v.state_timestamp_ms);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

fn decode_offset_value(mut b: Bytes) -> Result<OffsetValue, DecodeError> {
    let version = get_i16(&mut b)?;
    let offset = get_i64(&mut b)?;
    let leader_epoch = if version >= 3 { get_i32(&mut b)? } else { -1 };
    let metadata = get_str(&mut b)?;
    let commit_timestamp_ms = get_i64(&mut b)?;
    if !(0..=3).contains(&version) {
        return Err(DecodeError("unknown OffsetCommitValue version"));
    }
    Ok(OffsetValue { offset, leader_epoch, metadata, commit_timestamp_ms })
}

fn decode_group_value(mut b: Bytes) -> Result<GroupValue, DecodeError> {
    let version = get_i16(&mut b)?;
    if !(0..=3).contains(&version) {
        return Err(DecodeError("unknown GroupMetadataValue version"));
    }
    let protocol_type = get_str(&mut b)?;
    let generation = get_i32(&mut b)?;
    let protocol = get_nullable_str(&mut b)?;
    let leader = get_nullable_str(&mut b)?;
    let state_timestamp_ms = if version >= 2 { get_i64(&mut b)? } else { -1 };
    let count = get_i32(&mut b)?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        let member_id = get_str(&mut b)?;
        let group_instance_id = if version >= 3 { get_nullable_str(&mut b)? } else { None };
        let client_id = get_str(&mut b)?;
        let client_host = get_str(&mut b)?;
        let session = get_i32(&mut b)?;
        let (rebalance_timeout_ms, session_timeout_ms) =
            if version >= 1 { (session, get_i32(&mut b)?) } else { (session, session) };
        let subscription = get_bytes(&mut b)?;
        let assignment = get_bytes(&mut b)?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue { protocol_type, generation, protocol, leader, state_timestamp_ms, members })
}

/// Decodes one record's key and value.
pub fn decode(key: Bytes, value: Option<Bytes>) -> Result<OffsetsRecord, DecodeError> {
    let mut k = key;
    let version = get_i16(&mut k)?;
    match version {
        0 | 1 => {
            let group = get_str(&mut k)?;
            let topic = get_str(&mut k)?;
            let partition = get_i32(&mut k)?;
            let value = value.map(decode_offset_value).transpose()?;
            Ok(OffsetsRecord::Offset { group, topic, partition, value })
        }
        2 => {
            let group = get_str(&mut k)?;
            let value = value.map(decode_group_value).transpose()?;
            Ok(OffsetsRecord::Group { group, value })
        }
        _ => Err(DecodeError("unknown __consumer_offsets key version")),
    }
}

/// One uncompressed RecordBatch v2 holding `records` (key, value-or-tombstone).
pub fn encode_batch(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Result<BytesMut, DecodeError> {
    encode_batch_as(records, now_ms, None)
}

/// `encode_batch`, as a transactional batch of `(producer id, epoch)` when
/// given (TxnOffsetCommit writes on the producer's behalf). Base sequence -1
/// (none), and offset − sequence constant so the encoder writes ONE batch.
pub fn encode_batch_as(
    records: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
    producer: Option<(i64, i16)>,
) -> Result<BytesMut, DecodeError> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: Some(k.clone()),
            value: v.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, recs.iter(), &options).map_err(|_| DecodeError("encoding a batch failed"))?;
    Ok(buf)
}

/// Decodes the records of the (uncompressed) batches in `bytes`, with their offsets.
pub fn decode_batches(bytes: Bytes) -> Result<Vec<(i64, Option<Bytes>, Option<Bytes>)>, DecodeError> {
    let mut buf = bytes;
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|_| DecodeError("undecodable batch"))?;
    let mut out = Vec::new();
    for set in sets {
        for r in set.records {
            if r.control {
                continue;
            }
            out.push((r.offset, r.key, r.value));
        }
    }
    Ok(out)
}

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: Java's String.hashCode
/// over UTF-16 code units, then `& 0x7fffffff` (Utils.abs).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Group → partition follows Java's String.hashCode (values checked against Kafka).
    #[test]
    fn partition_for_matches_java_hashcode() {
        // "test-group".hashCode() = 627841412; "group-negative".hashCode() = -1607370813,
        // & 0x7fffffff = 540112835 (Kafka's Utils.abs, not Math.abs).
        assert_eq!(partition_for("test-group", 50), 12);
        assert_eq!(partition_for("group-negative", 50), 35);
        assert_eq!(partition_for("", 16), 0);
        assert_eq!(partition_for("a", 16), 97 % 16);
    }

    /// Keys and values round-trip, tombstones included, through one encoded batch.
    #[test]
    fn records_round_trip_through_a_batch() {
        let ov = OffsetValue { offset: 42, leader_epoch: 3, metadata: "m".into(), commit_timestamp_ms: 7 };
        let gv = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 9,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300000,
                session_timeout_ms: 10000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let recs = vec![
            (offset_key("g", "t", 1), Some(offset_value(&ov))),
            (group_key("g"), Some(group_value(&gv))),
            (offset_key("g", "t", 2), None),
        ];
        let batch = encode_batch(&recs, 1000).unwrap();
        let headers = crate::storage::validate_batches(&batch).unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].record_count, 3);
        let decoded = decode_batches(batch.freeze()).unwrap();
        assert_eq!(decoded.len(), 3);
        let d: Vec<OffsetsRecord> =
            decoded.into_iter().map(|(_, k, v)| decode(k.unwrap(), v).unwrap()).collect();
        assert_eq!(d[0], OffsetsRecord::Offset { group: "g".into(), topic: "t".into(), partition: 1, value: Some(ov) });
        assert_eq!(d[1], OffsetsRecord::Group { group: "g".into(), value: Some(gv) });
        assert_eq!(d[2], OffsetsRecord::Offset { group: "g".into(), topic: "t".into(), partition: 2, value: None });
    }

    /// Truncated input is an error, never a panic.
    #[test]
    fn truncated_records_are_errors() {
        let k = offset_key("group", "topic", 1);
        for n in 0..k.len() {
            assert!(decode(k.slice(..n), None).is_err());
        }
        let v = offset_value(&OffsetValue { offset: 1, leader_epoch: 0, metadata: "x".into(), commit_timestamp_ms: 0 });
        for n in 0..v.len() {
            assert!(decode(k.clone(), Some(v.slice(..n))).is_err());
        }
    }
}
