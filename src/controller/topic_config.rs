//! The table of topic-level configs Fjord knows, with Kafka 4.x names,
//! defaults and value rules, and the validation of a value against it.
//!
//! Pure data and functions: used by the controller thread when it validates
//! CreateTopics/AlterConfigs, and by any shard that answers DescribeConfigs
//! (it only reads the static table). No I/O, no state.

use std::collections::BTreeMap;

use crate::metadata::ControllerError;

/// The type of a config value, as Kafka's DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

/// What values a config accepts beyond its kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Any value of the kind.
    Any,
    /// An integer (Int or Long) in `min..=max`.
    Range { min: i64, max: i64 },
    /// A double in `min..=max`.
    DoubleRange { min: f64, max: f64 },
    /// One of these strings (case-sensitive, as Kafka's `ValidString`).
    OneOf(&'static [&'static str]),
    /// A comma-separated list whose every item is one of these (at least one item).
    ListOf(&'static [&'static str]),
    /// `-1` or an integer in `min..=max` (compression.gzip.level).
    MinusOneOrRange { min: i64, max: i64 },
}

/// One topic-level config: Kafka's name, its default (as Kafka prints it), kind and doc line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigKind,
    pub doc: &'static str,
    pub rule: Rule,
}

const LONG_MAX: i64 = i64::MAX;
const INT_MAX: i64 = i32::MAX as i64;

const fn def(
    name: &'static str,
    default: &'static str,
    kind: ConfigKind,
    rule: Rule,
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        default,
        kind,
        doc,
        rule,
    }
}

/// Every topic config Fjord accepts, sorted by name. Defaults are Kafka 4.x's
/// (including KIP-1030's changed defaults and bounds).
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        "delete",
        ConfigKind::List,
        Rule::ListOf(&["compact", "delete"]),
        "The retention policy of old log segments: delete, compact, or both.",
    ),
    def(
        "compression.gzip.level",
        "-1",
        ConfigKind::Int,
        Rule::MinusOneOrRange { min: 1, max: 9 },
        "The compression level to use if compression.type is gzip.",
    ),
    def(
        "compression.lz4.level",
        "9",
        ConfigKind::Int,
        Rule::Range { min: 1, max: 17 },
        "The compression level to use if compression.type is lz4.",
    ),
    def(
        "compression.type",
        "producer",
        ConfigKind::String,
        Rule::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "The final compression type of the topic; 'producer' keeps the producer's codec.",
    ),
    def(
        "compression.zstd.level",
        "3",
        ConfigKind::Int,
        Rule::Range { min: -131072, max: 22 },
        "The compression level to use if compression.type is zstd.",
    ),
    def(
        "delete.retention.ms",
        "86400000",
        ConfigKind::Long,
        Rule::Range { min: 0, max: LONG_MAX },
        "How long delete tombstones are retained for compacted topics.",
    ),
    def(
        "file.delete.delay.ms",
        "60000",
        ConfigKind::Long,
        Rule::Range { min: 0, max: LONG_MAX },
        "The time to wait before deleting a file from the filesystem.",
    ),
    def(
        "flush.messages",
        "9223372036854775807",
        ConfigKind::Long,
        Rule::Range { min: 1, max: LONG_MAX },
        "Force an fsync of the log after this many messages.",
    ),
    def(
        "flush.ms",
        "9223372036854775807",
        ConfigKind::Long,
        Rule::Range { min: 0, max: LONG_MAX },
        "Force an fsync of the log after this much time.",
    ),
    def(
        "follower.replication.throttled.replicas",
        "",
        ConfigKind::List,
        Rule::Any,
        "Replicas whose log replication is throttled on the follower side.",
    ),
    def(
        "index.interval.bytes",
        "4096",
        ConfigKind::Int,
        Rule::Range { min: 0, max: INT_MAX },
        "How frequently an entry is added to the offset index.",
    ),
    def(
        "leader.replication.throttled.replicas",
        "",
        ConfigKind::List,
        Rule::Any,
        "Replicas whose log replication is throttled on the leader side.",
    ),
    def(
        "local.retention.bytes",
        "-2",
        ConfigKind::Long,
        Rule::Range { min: -2, max: LONG_MAX },
        "Local log size kept before deletion when tiered storage is on (-2: retention.bytes).",
    ),
    def(
        "local.retention.ms",
        "-2",
        ConfigKind::Long,
        Rule::Range { min: -2, max: LONG_MAX },
        "Local log age kept before deletion when tiered storage is on (-2: retention.ms).",
    ),
    def(
        "max.compaction.lag.ms",
        "9223372036854775807",
        ConfigKind::Long,
        Rule::Range { min: 1, max: LONG_MAX },
        "The maximum time a message remains ineligible for compaction.",
    ),
    def(
        "max.message.bytes",
        "1048588",
        ConfigKind::Int,
        Rule::Range { min: 0, max: INT_MAX },
        "The largest record batch size allowed.",
    ),
    def(
        "message.timestamp.after.max.ms",
        "3600000",
        ConfigKind::Long,
        Rule::Range { min: 0, max: LONG_MAX },
        "How far a record's timestamp may be ahead of the broker's time (CreateTime).",
    ),
    def(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        ConfigKind::Long,
        Rule::Range { min: 0, max: LONG_MAX },
        "How far a record's timestamp may be behind the broker's time (CreateTime).",
    ),
    def(
        "message.timestamp.difference.max.ms",
        "9223372036854775807",
        ConfigKind::Long,
        Rule::Range { min: 0, max: LONG_MAX },
        "Deprecated (removed in Kafka 4.0); accepted so older tools can still set it.",
    ),
    def(
        "message.timestamp.type",
        "CreateTime",
        ConfigKind::String,
        Rule::OneOf(&["CreateTime", "LogAppendTime"]),
        "Whether record timestamps are the producer's (CreateTime) or the broker's append time.",
    ),
    def(
        "min.cleanable.dirty.ratio",
        "0.5",
        ConfigKind::Double,
        Rule::DoubleRange { min: 0.0, max: 1.0 },
        "How dirty a log must be before the compactor cleans it.",
    ),
    def(
        "min.compaction.lag.ms",
        "0",
        ConfigKind::Long,
        Rule::Range { min: 0, max: LONG_MAX },
        "The minimum time a message remains uncompacted.",
    ),
    def(
        "min.insync.replicas",
        "1",
        ConfigKind::Int,
        Rule::Range { min: 1, max: INT_MAX },
        "The minimum number of in-sync replicas for an acks=all write to succeed.",
    ),
    def(
        "preallocate",
        "false",
        ConfigKind::Boolean,
        Rule::Any,
        "Whether to preallocate the file when creating a new segment.",
    ),
    def(
        "remote.log.copy.disable",
        "false",
        ConfigKind::Boolean,
        Rule::Any,
        "Stop copying segments to remote storage (tiered storage).",
    ),
    def(
        "remote.log.delete.on.disable",
        "false",
        ConfigKind::Boolean,
        Rule::Any,
        "Delete remote data when tiered storage is disabled for the topic.",
    ),
    def(
        "remote.storage.enable",
        "false",
        ConfigKind::Boolean,
        Rule::Any,
        "Enable tiered storage for the topic.",
    ),
    def(
        "retention.bytes",
        "-1",
        ConfigKind::Long,
        Rule::Range { min: i64::MIN, max: LONG_MAX },
        "The maximum size a partition log may grow to before old segments are deleted (-1: no limit).",
    ),
    def(
        "retention.ms",
        "604800000",
        ConfigKind::Long,
        Rule::Range { min: -1, max: LONG_MAX },
        "The maximum age of a log segment before it is deleted (-1: no limit).",
    ),
    def(
        "segment.bytes",
        "1073741824",
        ConfigKind::Int,
        Rule::Range { min: 1_048_576, max: INT_MAX },
        "The segment file size of the log.",
    ),
    def(
        "segment.index.bytes",
        "10485760",
        ConfigKind::Int,
        Rule::Range { min: 4, max: INT_MAX },
        "The size of the offset index file of a segment.",
    ),
    def(
        "segment.jitter.ms",
        "0",
        ConfigKind::Long,
        Rule::Range { min: 0, max: LONG_MAX },
        "The maximum random jitter subtracted from segment.ms.",
    ),
    def(
        "segment.ms",
        "604800000",
        ConfigKind::Long,
        Rule::Range { min: 1, max: LONG_MAX },
        "The time after which the log rolls a new segment even if it is not full.",
    ),
    def(
        "unclean.leader.election.enable",
        "false",
        ConfigKind::Boolean,
        Rule::Any,
        "Whether a replica outside the ISR may become leader (data loss possible).",
    ),
];

/// The definition of a topic config by its Kafka name.
pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

fn invalid(name: &str, value: &str, why: &str) -> ControllerError {
    ControllerError::InvalidConfig(format!(
        "Invalid value {value} for configuration {name}: {why}"
    ))
}

/// Checks one `name = value` against the table. Unknown names and values
/// that do not parse or break the config's rule are `InvalidConfig` with a
/// message in Kafka's words naming the key and the value.
pub fn validate(name: &str, value: &str) -> Result<(), ControllerError> {
    let Some(def) = find(name) else {
        return Err(ControllerError::InvalidConfig(format!(
            "Unknown topic config name: {name}"
        )));
    };
    // Kafka trims surrounding whitespace before parsing every kind.
    let v = value.trim();
    match def.kind {
        ConfigKind::Boolean => {
            if !(v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")) {
                return Err(invalid(
                    name,
                    value,
                    "Expected value to be either true or false",
                ));
            }
        }
        ConfigKind::Int | ConfigKind::Short | ConfigKind::Long => {
            let parsed = match def.kind {
                ConfigKind::Int => v.parse::<i32>().map(i64::from).ok(),
                ConfigKind::Short => v.parse::<i16>().map(i64::from).ok(),
                _ => v.parse::<i64>().ok(),
            };
            let Some(n) = parsed else {
                let ty = match def.kind {
                    ConfigKind::Int => "INT",
                    ConfigKind::Short => "SHORT",
                    _ => "LONG",
                };
                return Err(invalid(name, value, &format!("Not a number of type {ty}")));
            };
            check_integer_rule(def, n, value)?;
        }
        ConfigKind::Double => {
            let n = v
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| invalid(name, value, "Not a number of type DOUBLE"))?;
            if let Rule::DoubleRange { min, max } = def.rule {
                if n < min || n > max {
                    return Err(invalid(
                        name,
                        value,
                        &format!("Value must be no less than {min} and no more than {max}"),
                    ));
                }
            }
        }
        ConfigKind::String | ConfigKind::Class | ConfigKind::Password => {
            if let Rule::OneOf(allowed) = def.rule {
                if !allowed.contains(&v) {
                    return Err(invalid(
                        name,
                        value,
                        &format!("String must be one of: {}", allowed.join(", ")),
                    ));
                }
            }
        }
        ConfigKind::List => {
            if let Rule::ListOf(allowed) = def.rule {
                let items: Vec<&str> = v.split(',').map(str::trim).collect();
                if items.iter().any(|i| !allowed.contains(i)) {
                    return Err(invalid(
                        name,
                        value,
                        &format!("List items must be one of: {}", allowed.join(", ")),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_integer_rule(def: &TopicConfigDef, n: i64, value: &str) -> Result<(), ControllerError> {
    match def.rule {
        Rule::Range { min, max } => {
            if n < min {
                return Err(invalid(
                    def.name,
                    value,
                    &format!("Value must be at least {min}"),
                ));
            }
            if n > max {
                return Err(invalid(
                    def.name,
                    value,
                    &format!("Value must be no more than {max}"),
                ));
            }
        }
        Rule::MinusOneOrRange { min, max } => {
            if n != -1 && (n < min || n > max) {
                return Err(invalid(
                    def.name,
                    value,
                    &format!("Value must be -1 or between {min} and {max}"),
                ));
            }
        }
        Rule::Any | Rule::DoubleRange { .. } | Rule::OneOf(_) | Rule::ListOf(_) => {}
    }
    Ok(())
}

/// Validates a whole set of topic overrides: every entry on its own, then the
/// rules that relate two configs (Kafka's `LogConfig.validate`).
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), ControllerError> {
    for (name, value) in configs {
        validate(name, value)?;
    }
    let long_of = |name: &str| -> i64 {
        let raw = configs
            .get(name)
            .map(String::as_str)
            .or_else(|| find(name).map(|d| d.default))
            .unwrap_or("0");
        raw.trim().parse::<i64>().unwrap_or(0)
    };
    let min_lag = long_of("min.compaction.lag.ms");
    let max_lag = long_of("max.compaction.lag.ms");
    if min_lag > max_lag {
        return Err(ControllerError::InvalidConfig(format!(
            "conflict topic config setting min.compaction.lag.ms ({min_lag}) > max.compaction.lag.ms ({max_lag})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is sorted by name, has no duplicates, and every default passes its own rule.
    #[test]
    fn table_is_consistent() {
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} >= {}",
                pair[0].name,
                pair[1].name
            );
        }
        for d in TOPIC_CONFIGS {
            // Lists with no rule have an empty default, which is fine as-is.
            if !(d.kind == ConfigKind::List && d.default.is_empty()) {
                validate(d.name, d.default).unwrap_or_else(|e| panic!("{}: {e}", d.name));
            }
        }
        for required in [
            "cleanup.policy",
            "compression.type",
            "delete.retention.ms",
            "file.delete.delay.ms",
            "flush.messages",
            "flush.ms",
            "index.interval.bytes",
            "max.compaction.lag.ms",
            "max.message.bytes",
            "message.timestamp.type",
            "min.cleanable.dirty.ratio",
            "min.compaction.lag.ms",
            "min.insync.replicas",
            "retention.bytes",
            "retention.ms",
            "segment.bytes",
            "segment.index.bytes",
            "segment.jitter.ms",
            "segment.ms",
            "unclean.leader.election.enable",
            "message.timestamp.difference.max.ms",
        ] {
            assert!(find(required).is_some(), "{required} missing");
        }
        assert_eq!(find("retention.ms").map(|d| d.default), Some("604800000"));
        assert_eq!(
            find("max.message.bytes").map(|d| d.default),
            Some("1048588")
        );
    }

    /// Good values pass; unknown names, non-numbers, out-of-range numbers and
    /// values outside an enumeration fail with a message naming key and value.
    #[test]
    fn validation_accepts_and_rejects() {
        for (k, v) in [
            ("cleanup.policy", "delete"),
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "compact,delete"),
            ("cleanup.policy", "delete, compact"),
            ("compression.type", "zstd"),
            ("retention.ms", "-1"),
            ("retention.bytes", "-1"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("unclean.leader.election.enable", "TRUE"),
            ("message.timestamp.type", "LogAppendTime"),
            ("segment.bytes", " 1048576 "),
            ("compression.gzip.level", "-1"),
        ] {
            assert_eq!(validate(k, v), Ok(()), "{k}={v}");
        }
        assert_eq!(
            validate("no.such.config", "1"),
            Err(ControllerError::InvalidConfig(
                "Unknown topic config name: no.such.config".into()
            ))
        );
        for (k, v) in [
            ("retention.ms", "abc"),
            ("retention.ms", "-2"),
            ("segment.bytes", "100"),
            ("segment.bytes", "4294967296"),
            ("cleanup.policy", "shred"),
            ("cleanup.policy", ""),
            ("compression.type", "brotli"),
            ("message.timestamp.type", "createtime"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("unclean.leader.election.enable", "yes"),
            ("min.insync.replicas", "0"),
            ("compression.gzip.level", "0"),
        ] {
            match validate(k, v) {
                Err(ControllerError::InvalidConfig(m)) => {
                    assert!(m.contains(k) && m.contains(v.trim()), "{m}")
                }
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }

    /// Cross-config rules are checked over the merged set.
    #[test]
    fn compaction_lags_must_be_ordered() {
        let mut c = BTreeMap::new();
        c.insert("min.compaction.lag.ms".to_string(), "100".to_string());
        assert_eq!(validate_all(&c), Ok(()));
        c.insert("max.compaction.lag.ms".to_string(), "50".to_string());
        assert!(matches!(
            validate_all(&c),
            Err(ControllerError::InvalidConfig(_))
        ));
    }
}
