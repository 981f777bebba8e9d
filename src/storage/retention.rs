//! Retention decisions and the durable log start offset.
//!
//! Owns two things: the pure rule that decides how many of a log's oldest
//! segments are deleted (by `retention.ms`, `retention.bytes` and a log start
//! offset moved by DeleteRecords, as Kafka's `UnifiedLog.deleteOldSegments`
//! does), and the small per-partition checkpoint file that makes the log
//! start offset survive a restart (`log-start-offset`, replaced atomically).
//!
//! Runs on the shard that owns the partition (called by `Log`); no state.
//! The checkpoint is written with blocking std I/O (a few bytes, fsync'ed),
//! like the index files.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Name of the checkpoint file in a partition directory.
pub const LOG_START_CHECKPOINT: &str = "log-start-offset";
const CHECKPOINT_TMP: &str = "log-start-offset.tmp";
const CHECKPOINT_VERSION: &str = "0";

/// Most segments one retention pass deletes; the rest wait for the next tick,
/// so a pass over a huge backlog never stalls the shard.
pub const SEGMENTS_PER_PASS_MAX: usize = 64;

/// What retention needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: i64,
    /// One past the segment's last offset.
    pub next_offset: i64,
    pub size_bytes: u64,
    /// The largest record timestamp in the segment (None while empty).
    pub max_timestamp_ms: Option<i64>,
}

/// A topic's deletion settings (Kafka's `retention.ms` / `retention.bytes`,
/// -1 meaning no limit; `delete` off for `cleanup.policy=compact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub delete: bool,
}

/// How many of the oldest segments to delete (a prefix of `segments`, whose
/// last entry is the active segment). A segment goes when it is older than
/// `retention.ms` (its largest timestamp is more than `retention_ms` before
/// `now_ms`), when the log without it still holds at least
/// `retention_bytes`, or when it lies wholly below `log_start` (moved by
/// DeleteRecords). Only whole segments below `durable_end` are candidates and
/// an empty active segment never is (a sealed segment that compaction left
/// empty is: it holds offsets, has no timestamp, and counts as expired). The count may include the active segment: the
/// caller then rolls a new one first, as Kafka does, so all data can expire.
pub fn deletable_head(
    segments: &[SegmentSummary],
    log_start: i64,
    durable_end: i64,
    policy: RetentionPolicy,
    now_ms: i64,
) -> usize {
    let candidates = segments
        .iter()
        .take_while(|s| (s.size_bytes > 0 || s.next_offset > s.base_offset) && s.next_offset <= durable_end)
        .count();
    let by_start = segments[..candidates]
        .iter()
        .take_while(|s| s.next_offset <= log_start)
        .count();
    if !policy.delete {
        return by_start;
    }
    let by_time = if policy.retention_ms >= 0 {
        segments[..candidates]
            .iter()
            .take_while(|s| {
                s.max_timestamp_ms
                    .is_none_or(|ts| now_ms.saturating_sub(ts) > policy.retention_ms)
            })
            .count()
    } else {
        0
    };
    let by_size = if policy.retention_bytes >= 0 {
        let total: u64 = segments.iter().map(|s| s.size_bytes).sum();
        let mut over = total as i128 - i128::from(policy.retention_bytes);
        segments[..candidates]
            .iter()
            .take_while(|s| {
                let after = over - i128::from(s.size_bytes);
                if after >= 0 {
                    over = after;
                    true
                } else {
                    false
                }
            })
            .count()
    } else {
        0
    };
    by_start.max(by_time).max(by_size)
}

/// Reads the checkpointed log start offset, if the file exists.
pub fn read_log_start(dir: &Path) -> io::Result<Option<i64>> {
    let text = match std::fs::read_to_string(dir.join(LOG_START_CHECKPOINT)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lines = text.lines();
    let version = lines.next();
    let value = lines.next().and_then(|l| l.trim().parse::<i64>().ok());
    match (version, value) {
        (Some(CHECKPOINT_VERSION), Some(v)) if v >= 0 => Ok(Some(v)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} does not hold a log start offset",
                dir.join(LOG_START_CHECKPOINT).display()
            ),
        )),
    }
}

/// Durably replaces the checkpoint: temp file, fsync, rename, fsync the dir.
/// A crash leaves either the old or the new value, never a torn one.
pub fn write_log_start(dir: &Path, log_start: i64) -> io::Result<()> {
    assert!(log_start >= 0, "log start offset is never negative");
    let tmp = dir.join(CHECKPOINT_TMP);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{CHECKPOINT_VERSION}\n{log_start}\n").as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(LOG_START_CHECKPOINT))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64, size: u64, ts: Option<i64>) -> SegmentSummary {
        SegmentSummary {
            base_offset: base,
            next_offset: next,
            size_bytes: size,
            max_timestamp_ms: ts,
        }
    }

    fn policy(ms: i64, bytes: i64) -> RetentionPolicy {
        RetentionPolicy {
            retention_ms: ms,
            retention_bytes: bytes,
            delete: true,
        }
    }

    /// Three 100-byte segments with timestamps 1000, 2000, 3000 and an active one.
    fn log() -> Vec<SegmentSummary> {
        vec![
            seg(0, 10, 100, Some(1000)),
            seg(10, 20, 100, Some(2000)),
            seg(20, 30, 100, Some(3000)),
            seg(30, 35, 50, Some(4000)),
        ]
    }

    #[test]
    fn time_retention_deletes_the_expired_prefix_only() {
        // Proves segments older than retention.ms go oldest first and deletion stops at the first young one.
        assert_eq!(deletable_head(&log(), 0, 35, policy(1500, -1), 4000), 2);
        // Out-of-order timestamps: a young segment shields older-looking ones after it, as in Kafka.
        let mut l = log();
        l[1].max_timestamp_ms = Some(9000);
        assert_eq!(deletable_head(&l, 0, 35, policy(1500, -1), 4000), 1);
        assert_eq!(deletable_head(&log(), 0, 35, policy(-1, -1), i64::MAX), 0);
    }

    #[test]
    fn time_retention_may_take_the_active_segment() {
        // Proves that when everything expired the count includes the active segment (the caller rolls first).
        assert_eq!(deletable_head(&log(), 0, 35, policy(10, -1), 100_000), 4);
        // ...but never data that is not durable yet, nor an empty active segment.
        assert_eq!(deletable_head(&log(), 0, 32, policy(10, -1), 100_000), 3);
        let mut l = log();
        l[3] = seg(30, 30, 0, None);
        assert_eq!(deletable_head(&l, 0, 30, policy(10, -1), 100_000), 3);
    }

    #[test]
    fn size_retention_keeps_at_least_retention_bytes() {
        // Proves whole segments go while the rest still holds >= retention.bytes (350 total).
        assert_eq!(deletable_head(&log(), 0, 35, policy(-1, 200), 0), 1);
        assert_eq!(deletable_head(&log(), 0, 35, policy(-1, 150), 0), 2);
        assert_eq!(deletable_head(&log(), 0, 35, policy(-1, 350), 0), 0);
        assert_eq!(deletable_head(&log(), 0, 35, policy(-1, 0), 0), 4);
    }

    #[test]
    fn log_start_breach_deletes_whole_segments_even_when_compacted() {
        // Proves DeleteRecords' start offset removes only segments wholly below it, with or without delete policy.
        assert_eq!(deletable_head(&log(), 15, 35, policy(-1, -1), 0), 1);
        assert_eq!(deletable_head(&log(), 20, 35, policy(-1, -1), 0), 2);
        let compact = RetentionPolicy {
            delete: false,
            ..policy(1, 0)
        };
        assert_eq!(deletable_head(&log(), 20, 35, compact, 100_000), 2);
    }

    #[test]
    fn segments_compaction_emptied_do_not_block_retention() {
        // Proves a sealed 0-byte segment (every record cleaned away) at the head is deleted by size and time retention instead of stopping it.
        let now = 1_000_000;
        let segs = vec![
            seg(0, 10, 0, None),
            seg(10, 20, 500, Some(now - 10_000)),
            seg(20, 30, 500, Some(now)),
            seg(30, 30, 0, None),
        ];
        assert_eq!(deletable_head(&segs, 0, 30, policy(-1, 500), now), 2);
        assert_eq!(deletable_head(&segs, 0, 30, policy(5_000, -1), now), 2);
        // An empty active segment alone is never a candidate.
        assert_eq!(deletable_head(&[seg(30, 30, 0, None)], 0, 30, policy(0, 0), now), 0);
    }

    #[test]
    fn checkpoint_roundtrips_and_rejects_garbage() {
        // Proves the log start checkpoint survives a rewrite and a damaged file is an error, not 0.
        let dir = std::env::temp_dir().join(format!("fjord-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        assert_eq!(read_log_start(&dir).expect("read"), None);
        write_log_start(&dir, 42).expect("write");
        write_log_start(&dir, 77).expect("write");
        assert_eq!(read_log_start(&dir).expect("read"), Some(77));
        std::fs::write(dir.join(LOG_START_CHECKPOINT), "junk").expect("write");
        assert!(read_log_start(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
#[path = "retention_log_tests.rs"]
mod log_tests;
