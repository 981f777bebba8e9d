//! Tests of head truncation on a real `Log` (included from retention.rs):
//! retention passes, DeleteRecords, the checkpoint across reopen, and
//! LogAppendTime stamping. Each runs in its own glommio executor and temp dir.

use std::future::Future;
use std::path::PathBuf;

use bytes::BytesMut;

use crate::storage::batch::testing::encode_batch;
use crate::storage::batch::validate_batches;
use crate::storage::{Log, LogConfig, StorageError};

fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F) {
    crate::storage::batch::testing::run_local(f)
}

fn temp_dir(name: &str) -> PathBuf {
    crate::storage::batch::testing::temp_dir("retention", name)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: i64::MAX,
        index_interval_bytes: 256,
        cache_bytes_max: 0,
        retention_ms: -1,
        retention_bytes: -1,
        ..LogConfig::default()
    }
}

/// Appends one batch of 5 records (about 200 bytes) with timestamps from `ts`.
async fn append(log: &Log, ts: i64) -> i64 {
    let buf = encode_batch(5, ts, 1, 20);
    let headers = validate_batches(&buf).expect("valid");
    let r = log.append(BytesMut::from(&buf[..]), &headers, 1).await.expect("append");
    log.wait_durable(r.last_offset + 1).await.expect("durable");
    r.last_offset
}

fn log_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log")))
        .count()
}

#[test]
fn time_retention_deletes_old_segments_and_everything_when_all_expired() {
    // Proves retention.ms deletes whole old segments (files too), moves the start, and when all data expired rolls so the log empties yet keeps its offsets across a reopen.
    run(|| async {
        let dir = temp_dir("time");
        let log = Log::open(dir.clone(), config()).await.expect("open");
        for i in 0..20 {
            append(&log, 1_000 + i * 10).await;
        }
        let segs = log.segment_count();
        assert!(segs >= 4, "tiny segments roll: {segs}");
        log.set_config(LogConfig { retention_ms: 1_000, ..config() });
        // now = 2_050: batches with max ts < 1_050 are older than 1 s.
        let out = log.apply_retention(2_050).await.expect("retention");
        assert!(out.segments_deleted >= 1 && out.segments_deleted < segs);
        assert_eq!(log.log_start_offset(), out.log_start_offset);
        assert!(log.read(0, 1 << 20, log.log_end_offset(), true).await.is_err(), "offset 0 is gone");
        assert!(log.read(out.log_start_offset, 1 << 20, log.log_end_offset(), true).await.is_ok());
        assert_eq!(log_files(&dir), log.segment_count());
        // Everything expired: the active segment goes too, after a roll.
        let end = log.log_end_offset();
        log.apply_retention(1_000_000).await.expect("retention");
        assert_eq!(log.log_start_offset(), end);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.segment_count(), 1);
        log.close().await.expect("close");
        let log = Log::open(dir.clone(), config()).await.expect("reopen");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end), "offsets never restart at 0");
        let last = append(&log, 5_000).await;
        assert_eq!(last, end + 4);
        log.close().await.expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn size_retention_keeps_the_newest_bytes() {
    // Proves retention.bytes deletes oldest segments only while the rest still holds at least the limit.
    run(|| async {
        let dir = temp_dir("size");
        let log = Log::open(dir.clone(), config()).await.expect("open");
        for i in 0..30 {
            append(&log, i).await;
        }
        log.set_config(LogConfig { retention_bytes: 2048, ..config() });
        let before = log.size_bytes();
        let out = log.apply_retention(0).await.expect("retention");
        assert!(out.segments_deleted > 0);
        assert!(log.size_bytes() >= 2048, "kept {} bytes", log.size_bytes());
        assert_eq!(before - out.bytes_deleted, log.size_bytes());
        assert_eq!(log.apply_retention(0).await.expect("again").segments_deleted, 0, "stable once under the limit");
        log.close().await.expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn delete_records_moves_start_durably_and_survives_reopen() {
    // Proves DeleteRecords moves the start inside a segment, deletes whole segments below it, refuses offsets past the end, and the start survives a crash-like reopen (no clean close).
    run(|| async {
        let dir = temp_dir("delete");
        let log = Log::open(dir.clone(), config()).await.expect("open");
        for i in 0..20 {
            append(&log, i).await;
        }
        let end = log.log_end_offset();
        assert!(matches!(log.delete_records(end + 1).await, Err(StorageError::OffsetOutOfRange { .. })));
        let segs = log.segment_count();
        let out = log.delete_records(42).await.expect("delete");
        assert_eq!(out.log_start_offset, 42);
        assert!(out.segments_deleted > 0 && log.segment_count() < segs);
        // Below the current start: a no-op that reports the start.
        assert_eq!(log.delete_records(10).await.expect("noop").log_start_offset, 42);
        let r = log.read(42, 1 << 20, end, true).await.expect("read at start");
        assert!(r.first_offset.is_some_and(|f| f <= 42));
        // Drop without close: like kill -9 (no clean marker).
        drop(log);
        let log = Log::open(dir.clone(), config()).await.expect("reopen");
        assert_eq!(log.log_start_offset(), 42);
        assert_eq!(log.log_end_offset(), end);
        log.close().await.expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn log_append_time_stamps_batches_with_valid_crc() {
    // Proves LogAppendTime sets the type bit and maxTimestamp to the broker clock and the stored batch still passes CRC validation.
    run(|| async {
        let dir = temp_dir("lat");
        let log = Log::open(dir.clone(), LogConfig { log_append_time: true, ..config() }).await.expect("open");
        append(&log, 7).await;
        let r = log.read(0, 1 << 20, log.log_end_offset(), true).await.expect("read");
        let mut bytes = Vec::new();
        for c in &r.chunks {
            bytes.extend_from_slice(c);
        }
        let hs = validate_batches(&bytes).expect("stamped batch keeps a valid CRC");
        assert!(hs[0].timestamp_type_log_append());
        let now = crate::storage::recovery::now_ms();
        assert!(hs[0].max_timestamp > now - 60_000 && hs[0].max_timestamp <= now);
        assert_eq!(hs[0].base_timestamp, 7, "records are untouched");
        log.close().await.expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn concurrent_head_truncations_never_move_the_start_backwards() {
    // Proves head truncations that overlap (DeleteRecords racing another one or a retention pass) apply one at a time: the start ends at the highest offset asked for, in memory and in the checkpoint a reopen reads.
    run(|| async {
        let dir = temp_dir("concurrent");
        let log = Log::open(dir.clone(), config()).await.expect("open");
        for i in 0..20 {
            append(&log, 1_000 + i * 10).await;
        }
        let (high, low) = (60, 25);
        let a = glommio::spawn_local({ let log = log.clone(); async move { log.delete_records(high).await } });
        let b = glommio::spawn_local({ let log = log.clone(); async move { log.delete_records(low).await } });
        let c = glommio::spawn_local({ let log = log.clone(); async move { log.apply_retention(2_000).await } });
        a.await.expect("delete to high");
        b.await.expect("delete to low");
        c.await.expect("retention");
        assert_eq!(log.log_start_offset(), high);
        assert!(log.segment_count() < 20, "segments wholly below the start are gone");
        assert_eq!(log_files(&dir), log.segment_count());
        log.close().await.expect("close");
        let log = Log::open(dir.clone(), config()).await.expect("reopen");
        assert_eq!(log.log_start_offset(), high);
        log.close().await.expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    });
}
