//! `fjord topic consume NAME`: prints records from a start position, then
//! waits for more until Ctrl-C, or exits after `-n` records. With `-g` it
//! starts at the group's committed offsets and commits what it printed, as a
//! member-less group (like `group seek`); it does not join the group.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::ops::{self, FetchLimits};
use crate::output::{bytes_json, Out};
use crate::records::FetchedRecord;
use crate::{parse_position, resolve_position, Outcome, Position};

const FETCH_LIMITS: FetchLimits =
    FetchLimits { max_wait_ms: 500, partition_bytes_max: 1024 * 1024, response_bytes_max: 8 * 1024 * 1024 };

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// The topic.
    name: String,
    /// Where to start: start, end, an offset, or @timestamp_ms.
    #[arg(short, long, default_value = "start", value_parser = parse_position)]
    offset: Position,
    /// Exit after this many records (default: keep waiting for more).
    #[arg(short, long)]
    num: Option<u64>,
    /// Partitions to read (default: all), repeatable or comma separated.
    #[arg(short, long, value_delimiter = ',')]
    partitions: Vec<i32>,
    /// Start at this group's committed offsets and commit as records are printed.
    #[arg(short, long)]
    group: Option<String>,
    /// Text layout of a record: %t topic, %p partition, %o offset, %k key,
    /// %v value, %d timestamp (ms), %h headers, \n \t.
    #[arg(short = 'f', long = "record-format", default_value = "%v\\n", value_name = "FORMAT")]
    record_format: String,
}

pub fn run(a: &ConsumeArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let topics = [a.name.clone()];
    let all: Vec<i32> = ops::retrying(client, &topics, |c| {
        c.refresh_metadata(Some(&topics))?;
        Ok(c.metadata().topic(&a.name)?.partitions.iter().map(|p| p.index).collect())
    })?;
    let partitions = if a.partitions.is_empty() { all.clone() } else { a.partitions.clone() };
    if let Some(p) = partitions.iter().find(|p| !all.contains(p)) {
        return Err(Error::Usage(format!("partition {p} does not exist: topic {} has {}", a.name, all.len())));
    }
    let mut positions = resolve_position(client, &a.name, &partitions, a.offset)?;
    if let Some(g) = &a.group {
        for ((t, p), offset) in ops::committed_offsets(client, g)? {
            if t == a.name && positions.contains_key(&p) {
                positions.insert(p, offset);
            }
        }
    }
    let mut printed = 0u64;
    loop {
        let fetched = ops::retrying(client, &topics, |c| ops::fetch(c, &a.name, &positions, FETCH_LIMITS))?;
        let mut advanced = BTreeMap::new();
        'partitions: for (p, f) in fetched {
            for r in &f.records {
                if a.num.is_some_and(|n| printed >= n) {
                    break 'partitions;
                }
                print_record(a, p, r, out)?;
                printed += 1;
                positions.insert(p, r.offset + 1);
                advanced.insert((a.name.clone(), p), r.offset + 1);
            }
        }
        out.flush()?;
        if let (Some(g), false) = (&a.group, advanced.is_empty()) {
            ops::commit_offsets(client, g, &advanced)?;
        }
        if a.num.is_some_and(|n| printed >= n) {
            return Ok(Outcome::Ok);
        }
    }
}

fn print_record(a: &ConsumeArgs, partition: i32, r: &FetchedRecord, out: &mut Out) -> Result<()> {
    if out.is_json() {
        let headers: Vec<Value> = r.headers.iter().map(|(k, v)| json!({ "key": k, "value": bytes_json(v) })).collect();
        let doc = json!({
            "topic": a.name, "partition": partition, "offset": r.offset, "timestamp": r.timestamp_ms,
            "key": bytes_json(&r.key), "value": bytes_json(&r.value), "headers": headers,
        });
        return out.json(&doc);
    }
    out.bytes(&render(&a.record_format, &a.name, partition, r))
}

/// rpk-style format string: `%v\n` prints the value and a newline.
fn render(format: &str, topic: &str, partition: i32, r: &FetchedRecord) -> Vec<u8> {
    let mut s = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => s.extend_from_slice(topic.as_bytes()),
                Some('p') => s.extend_from_slice(partition.to_string().as_bytes()),
                Some('o') => s.extend_from_slice(r.offset.to_string().as_bytes()),
                Some('d') => s.extend_from_slice(r.timestamp_ms.to_string().as_bytes()),
                Some('k') => s.extend_from_slice(r.key.as_deref().unwrap_or_default()),
                Some('v') => s.extend_from_slice(r.value.as_deref().unwrap_or_default()),
                Some('h') => {
                    let hs: Vec<String> = r
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v.as_deref().unwrap_or_default())))
                        .collect();
                    s.extend_from_slice(hs.join(",").as_bytes());
                }
                Some('%') => s.push(b'%'),
                Some(other) => {
                    s.push(b'%');
                    s.extend_from_slice(other.to_string().as_bytes());
                }
                None => s.push(b'%'),
            },
            '\\' => match chars.next() {
                Some('n') => s.push(b'\n'),
                Some('t') => s.push(b'\t'),
                Some('\\') => s.push(b'\\'),
                Some(other) => {
                    s.push(b'\\');
                    s.extend_from_slice(other.to_string().as_bytes());
                }
                None => s.push(b'\\'),
            },
            c => {
                let mut buf = [0u8; 4];
                s.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn record_format_expands() {
        // -f '%p %o %k=%v\n' prints partition, offset, key and value.
        let r = FetchedRecord {
            offset: 7,
            timestamp_ms: 5,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("a".into(), Some(Bytes::from_static(b"b")))],
        };
        assert_eq!(render("%t %p %o %d %k=%v %h 100%%\\n", "t", 2, &r), b"t 2 7 5 k=v a=b 100%\n");
    }
}
