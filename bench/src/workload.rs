//! The workload description shared by the CLI, scenario files and `compare`:
//! one struct that clap parses from flags and serde reads from TOML, with the
//! same defaults. Pure data; no I/O.

use crate::batch::Compression;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Record value size: fixed, or uniform in an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSize {
    Fixed(usize),
    Uniform { min: usize, max: usize },
}

/// Largest record value this tool generates.
pub const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

impl RecordSize {
    pub fn mean(&self) -> f64 {
        match *self {
            RecordSize::Fixed(n) => n as f64,
            RecordSize::Uniform { min, max } => (min + max) as f64 / 2.0,
        }
    }

    pub fn max(&self) -> usize {
        match *self {
            RecordSize::Fixed(n) => n,
            RecordSize::Uniform { max, .. } => max,
        }
    }

    /// Picks a size; `rand` is any uniformly distributed u64.
    pub fn pick(&self, rand: u64) -> usize {
        match *self {
            RecordSize::Fixed(n) => n,
            RecordSize::Uniform { min, max } => min + (rand % (max - min + 1) as u64) as usize,
        }
    }
}

impl FromStr for RecordSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|e| format!("record size {x:?}: {e}"))
        };
        let size = match s.split_once("..") {
            Some((a, b)) => {
                let (min, max) = (parse(a)?, parse(b.trim_start_matches('='))?);
                if min > max {
                    return Err(format!("record size range {s:?} has min > max"));
                }
                if min == max {
                    RecordSize::Fixed(min)
                } else {
                    RecordSize::Uniform { min, max }
                }
            }
            None => RecordSize::Fixed(parse(s)?),
        };
        if size.max() > RECORD_BYTES_MAX {
            return Err(format!(
                "record size {s:?} exceeds {RECORD_BYTES_MAX} bytes"
            ));
        }
        Ok(size)
    }
}

impl fmt::Display for RecordSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordSize::Fixed(n) => write!(f, "{n}"),
            RecordSize::Uniform { min, max } => write!(f, "{min}..{max}"),
        }
    }
}

impl Serialize for RecordSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for RecordSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(RecordSize::Fixed(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Parses acks: 0, 1, -1 or "all".
pub fn parse_acks(s: &str) -> Result<i16, String> {
    match s.trim() {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        other => Err(format!("acks must be 0, 1, -1 or all, not {other:?}")),
    }
}

/// Where consumers start in `consume` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    Earliest,
    Latest,
}

/// Everything that defines a workload. Field names are the TOML keys of a
/// scenario file; flags are the same names in kebab case.
#[derive(Debug, Clone, Args, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    /// Topic to use (created with CreateTopics if missing).
    #[arg(long, default_value = "fjord-bench")]
    pub topic: String,
    /// Partitions when the topic is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor when the topic is created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// Producer tasks, each with its own connections.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer tasks (partitions are split among them; no consumer groups).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Record value size in bytes: N or MIN..MAX (uniform).
    #[arg(long, default_value = "100")]
    pub record_size: RecordSize,
    /// Batch size in bytes (uncompressed records per partition batch).
    #[arg(long, default_value_t = 16 * 1024)]
    pub batch_bytes: usize,
    /// Linger in milliseconds: how long a non-full batch may wait.
    #[arg(long, default_value_t = 5.0)]
    pub linger_ms: f64,
    /// acks: 0, 1, -1/all.
    #[arg(long, default_value = "1", value_parser = parse_acks, allow_hyphen_values = true)]
    pub acks: i16,
    /// Compression codec.
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Compression,
    /// Target rate in records/s over all producers (open loop). 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Measured duration in seconds (after warm-up). Ignored when --records is set.
    #[arg(long, default_value_t = 10.0)]
    pub duration_sec: f64,
    /// Records to produce (or consume) in total, instead of a duration.
    #[arg(long)]
    pub records: Option<u64>,
    /// Warm-up in seconds, excluded from the results.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_sec: f64,
    /// Produce timeout in ms sent to the broker.
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: i32,
    /// Fetch: max bytes per partition.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub fetch_partition_bytes: i32,
    /// Fetch: max wait in ms (long poll).
    #[arg(long, default_value_t = 500)]
    pub fetch_max_wait_ms: i32,
    /// consume: where to start.
    #[arg(long, value_enum, default_value = "earliest")]
    pub start_at: StartAt,
    /// consume: records to produce first (not measured), so there is something to read.
    #[arg(long, default_value_t = 0)]
    pub preload: u64,
}

#[derive(clap::Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    w: Workload,
}

impl Default for Workload {
    fn default() -> Self {
        use clap::Parser;
        DefaultsOnly::parse_from(["defaults"]).w
    }
}

impl Workload {
    /// Rejects combinations that cannot run.
    pub fn validate(&self) -> Result<(), String> {
        if self.partitions < 1 {
            return Err("partitions must be >= 1".into());
        }
        if self.producers < 1 || self.consumers < 1 {
            return Err("producers and consumers must be >= 1".into());
        }
        if self.batch_bytes < 1 || self.batch_bytes > 64 * 1024 * 1024 {
            return Err("batch-bytes must be in 1..=64 MiB".into());
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err("rate must be >= 0".into());
        }
        if self.records.is_none()
            && self.duration_sec.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err("need --records or a positive --duration-sec".into());
        }
        if !(self.warmup_sec >= 0.0 && self.linger_ms >= 0.0) {
            return Err("warmup-sec and linger-ms must be >= 0".into());
        }
        if self.record_size.max() < crate::producer::STAMP_BYTES {
            return Err(format!(
                "record size must be >= {} bytes (the send-time stamp)",
                crate::producer::STAMP_BYTES
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves record sizes parse from both forms and reject nonsense.
    #[test]
    fn record_size_parses() {
        assert_eq!("100".parse::<RecordSize>(), Ok(RecordSize::Fixed(100)));
        assert_eq!(
            "10..20".parse::<RecordSize>(),
            Ok(RecordSize::Uniform { min: 10, max: 20 })
        );
        assert_eq!(
            "10..=20".parse::<RecordSize>(),
            Ok(RecordSize::Uniform { min: 10, max: 20 })
        );
        assert!("20..10".parse::<RecordSize>().is_err());
        assert!("x".parse::<RecordSize>().is_err());
        let u = RecordSize::Uniform { min: 10, max: 12 };
        assert!((0..100).map(|r| u.pick(r)).all(|s| (10..=12).contains(&s)));
    }

    // Proves a scenario's TOML overrides only the keys it names and keeps CLI defaults.
    #[test]
    fn toml_uses_cli_defaults() {
        let w: Workload = toml::from_str(
            "partitions = 16\nrecord_size = \"1024\"\nacks = -1\ncompression = \"gzip\"",
        )
        .expect("toml");
        assert_eq!(w.partitions, 16);
        assert_eq!(w.record_size, RecordSize::Fixed(1024));
        assert_eq!(w.acks, -1);
        assert_eq!(w.compression, Compression::Gzip);
        let d = Workload::default();
        assert_eq!(w.batch_bytes, d.batch_bytes);
        assert_eq!(d.topic, "fjord-bench");
        assert!(toml::from_str::<Workload>("no_such_key = 1").is_err());
    }

    // Proves acks accepts Kafka's spellings.
    #[test]
    fn acks_parse() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert!(parse_acks("2").is_err());
    }
}
