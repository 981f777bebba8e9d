//! The records of `__transaction_state`, in Kafka's own schemas:
//! TransactionLogKey v0 (transactional id) and TransactionLogValue v0
//! (producer id, epoch, timeout, status, partitions, last update and start
//! timestamps). Non-flexible encoding: `int16 version` then the fields,
//! strings as `int16 length + bytes`, arrays as `int32 count`.
//! Pure functions: no I/O, callable on any shard.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{TxnMeta, TxnState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

fn put_str(b: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&s.as_bytes()[..len]);
}

fn need(b: &Bytes, n: usize) -> Result<(), DecodeError> {
    if b.remaining() < n {
        Err(DecodeError("record shorter than its schema"))
    } else {
        Ok(())
    }
}

fn get_str(b: &mut Bytes) -> Result<String, DecodeError> {
    need(b, 2)?;
    let len = b.get_i16();
    let len = usize::try_from(len).map_err(|_| DecodeError("negative string length"))?;
    need(b, len)?;
    String::from_utf8(b.split_to(len).to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
}

pub fn key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn value(m: &TxnMeta) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i64(m.producer_id);
    b.put_i16(m.epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state as i8);
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    b.put_i32(topics.len() as i32);
    for (t, ps) in topics {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(m.last_update_ms);
    b.put_i64(m.start_ms);
    b.freeze()
}

pub fn decode_key(mut k: Bytes) -> Result<String, DecodeError> {
    need(&k, 2)?;
    match k.get_i16() {
        0 => get_str(&mut k),
        _ => Err(DecodeError("unknown __transaction_state key version")),
    }
}

pub fn decode_value(mut v: Bytes) -> Result<TxnMeta, DecodeError> {
    need(&v, 2 + 8 + 2 + 4 + 1 + 4)?;
    let version = v.get_i16();
    if version != 0 {
        return Err(DecodeError("unsupported __transaction_state value version"));
    }
    let producer_id = v.get_i64();
    let epoch = v.get_i16();
    let timeout_ms = v.get_i32();
    let state = TxnState::from_i8(v.get_i8()).ok_or(DecodeError("unknown transaction status"))?;
    let topics = v.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let t = get_str(&mut v)?;
        need(&v, 4)?;
        let n = v.get_i32();
        for _ in 0..n.max(0) {
            need(&v, 4)?;
            partitions.insert((t.clone(), v.get_i32()));
        }
    }
    need(&v, 16)?;
    let last_update_ms = v.get_i64();
    let start_ms = v.get_i64();
    Ok(TxnMeta { producer_id, epoch, timeout_ms, state, partitions, last_update_ms, start_ms, prev_epoch: -1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips() {
        let m = TxnMeta {
            producer_id: 7,
            epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [("a".to_string(), 0), ("a".to_string(), 2), ("b".to_string(), 1)].into_iter().collect(),
            last_update_ms: 5,
            start_ms: 4,
            prev_epoch: -1,
        };
        assert_eq!(decode_value(value(&m)).unwrap(), m);
        assert_eq!(decode_key(key("tx-1")).unwrap(), "tx-1");
    }
}
