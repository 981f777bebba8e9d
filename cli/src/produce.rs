//! `fjord topic produce NAME`: one record per line of stdin. A reader thread
//! hands lines over a bounded channel; the main thread sends whatever has
//! arrived as one batch per partition, so typed lines go out at once and a
//! piped file goes out in batches.

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Args;
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::ops;
use crate::output::Out;
use crate::records::NewRecord;
use crate::{parse_key_value, Outcome};

/// Lines read ahead of the producer.
const LINES_QUEUED_MAX: usize = 4096;
/// Records in one batch.
const BATCH_RECORDS_MAX: usize = 1000;

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// The topic.
    name: String,
    /// Key of every record (records are then partitioned by key, as the Java client does).
    #[arg(short, long)]
    key: Option<String>,
    /// Header of every record, repeatable: -H source=cli.
    #[arg(short = 'H', long = "header", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    headers: Vec<(String, String)>,
    /// Partition to produce to (default: by key, else one partition per batch in turn).
    #[arg(short, long)]
    partition: Option<i32>,
    /// Acknowledgements: all (-1), 1 (leader) or 0 (none).
    #[arg(long, default_value = "all", value_parser = parse_acks, allow_negative_numbers = true)]
    acks: i16,
}

fn parse_acks(s: &str) -> std::result::Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        _ => Err(format!("'{s}' is not all, -1, 1 or 0")),
    }
}

pub fn run(a: &ProduceArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let topics = [a.name.clone()];
    let partitions = ops::retrying(client, &topics, |c| {
        c.refresh_metadata(Some(&topics))?;
        Ok(c.metadata().topic(&a.name)?.partitions.len() as i32)
    })?;
    if partitions == 0 {
        return Err(Error::Usage(format!("topic {} has no partitions", a.name)));
    }
    if let Some(p) = a.partition {
        if p < 0 || p >= partitions {
            return Err(Error::Usage(format!("partition {p} does not exist: topic {} has {partitions}", a.name)));
        }
    }
    let (tx, rx) = mpsc::sync_channel::<std::io::Result<String>>(LINES_QUEUED_MAX);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let key = a.key.as_ref().map(|k| Bytes::from(k.clone()));
    let headers: Vec<(String, Option<Bytes>)> =
        a.headers.iter().map(|(k, v)| (k.clone(), Some(Bytes::from(v.clone())))).collect();
    let mut turn = 0i32;
    let mut produced = Vec::new();
    while let Some(lines) = next_lines(&rx)? {
        let partition = match (a.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => key_partition(k, partitions),
            (None, None) => {
                turn = (turn + 1) % partitions;
                turn
            }
        };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let records: Vec<NewRecord> = lines
            .into_iter()
            .map(|l| NewRecord {
                key: key.clone(),
                value: Some(Bytes::from(l)),
                headers: headers.clone(),
                timestamp_ms: now_ms,
            })
            .collect();
        let base = ops::retrying(client, &topics, |c| ops::produce(c, &a.name, partition, &records, a.acks))?;
        for i in 0..records.len() as i64 {
            let offset = base.map(|b| b + i);
            if out.is_json() {
                produced.push(json!({ "topic": a.name, "partition": partition, "offset": offset }));
            } else {
                let at = offset.map_or("-".to_string(), |o| o.to_string());
                out.text(&format!("Produced to {} {partition}@{at}\n", a.name))?;
            }
        }
        out.flush()?;
    }
    if out.is_json() {
        out.json(&Value::Array(produced))?;
    }
    Ok(Outcome::Ok)
}

/// Blocks for one line, then takes whatever else is queued, up to a batch.
/// None at the end of stdin.
fn next_lines(rx: &mpsc::Receiver<std::io::Result<String>>) -> Result<Option<Vec<String>>> {
    let first = match rx.recv() {
        Ok(line) => line.map_err(|e| Error::Usage(format!("cannot read stdin: {e}")))?,
        Err(mpsc::RecvError) => return Ok(None),
    };
    let mut lines = vec![strip_cr(first)];
    while lines.len() < BATCH_RECORDS_MAX {
        match rx.try_recv() {
            Ok(line) => lines.push(strip_cr(line.map_err(|e| Error::Usage(format!("cannot read stdin: {e}")))?)),
            Err(_) => break,
        }
    }
    Ok(Some(lines))
}

fn strip_cr(mut s: String) -> String {
    if s.ends_with('\r') {
        s.pop();
    }
    s
}

/// The Java client's default partitioner for keyed records:
/// murmur2(key) made positive, modulo the partition count.
fn key_partition(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Keyed records land where the Java client would put them (Kafka's UtilsTest vectors).
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
        assert_eq!(murmur2(b"abc"), 479470107);
        assert!((0..3).contains(&key_partition(b"any", 3)));
    }
}
