//! Tests of `Log` (included from log.rs). Each runs inside its own glommio
//! LocalExecutor with a small io_memory (the memlock limit here is 8 MiB) and
//! its own directory under the system temp dir (ext4 here, so O_DIRECT works).

use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::BytesMut;

use super::*;
use crate::storage::batch::testing::{encode_batch, encode_batch_with};
use crate::storage::batch::validate_batches;

pub(super) fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F) {
    crate::storage::batch::testing::run_local(f)
}

pub(super) fn temp_dir(name: &str) -> PathBuf {
    crate::storage::batch::testing::temp_dir("storage", name)
}

pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: i64::MAX,
        index_interval_bytes: 256,
        cache_bytes_max: 0,
        ..LogConfig::default()
    }
}

/// Appends one request holding `batches` batches of `records` records each.
async fn append(log: &Log, batches: usize, records: usize, base_ts: i64) -> AppendResult {
    let mut buf = Vec::new();
    for i in 0..batches {
        buf.extend(encode_batch(records, base_ts + i as i64 * 100, 1, 20));
    }
    let headers = validate_batches(&buf).expect("valid test batches");
    log.append(BytesMut::from(&buf[..]), &headers, 7)
        .await
        .expect("append")
}

/// Loads a read's bytes and parses them back into batch headers (checking CRCs).
async fn loaded(r: &ReadResult) -> (Vec<u8>, Vec<BatchHeader>) {
    let mut all = Vec::new();
    for c in &r.chunks {
        all.extend_from_slice(c);
    }
    assert_eq!(all.len(), r.bytes);
    if all.is_empty() {
        return (all, Vec::new());
    }
    let hs = validate_batches(&all).expect("read returns whole valid batches");
    (all, hs)
}

/// Reads the whole log from offset 0 and checks offsets are contiguous.
async fn read_all(log: &Log) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let r = log.read(next, 1 << 20, i64::MAX, true).await.expect("read");
        let (_, hs) = loaded(&r).await;
        assert!(!hs.is_empty(), "read at {next} returned nothing");
        for h in hs {
            assert_eq!(h.base_offset, next, "contiguous offsets");
            next = h.last_offset() + 1;
            out.push(h);
        }
    }
    out
}

#[test]
fn offsets_assigned_in_order_across_appends_and_rolls() {
    // Proves offsets continue exactly across appends and segment rolls, epochs are patched, and everything reads back from the files.
    run(|| async {
        let dir = temp_dir("order");
        let cfg = LogConfig {
            segment_bytes: 1024,
            ..small_config()
        };
        let log = Log::open(dir.clone(), cfg).await.expect("open");
        let mut expected = 0;
        for i in 0..40 {
            let r = append(&log, 1 + i % 3, 3, 1000).await;
            assert_eq!(r.base_offset, expected);
            expected = r.last_offset + 1;
        }
        assert_eq!(log.log_end_offset(), expected);
        log.wait_durable(expected).await.expect("durable");
        assert_eq!(log.durable_end_offset(), expected);
        assert!(log.segment_count() > 3, "small segment_bytes rolls");
        let hs = read_all(&log).await;
        assert!(hs.iter().all(|h| h.partition_leader_epoch == 7));
        assert_eq!(hs.last().map(|h| h.last_offset() + 1), Some(expected));
        log.remove().await.expect("remove");
        assert!(!dir.exists());
    });
}

#[test]
fn read_from_middle_of_batch_returns_that_batch() {
    // Proves a read at an offset inside a batch starts with that whole batch, from the file and from the cache.
    for cache in [0usize, 1 << 20] {
        run(move || async move {
            let dir = temp_dir("middle");
            let cfg = LogConfig {
                cache_bytes_max: cache,
                ..small_config()
            };
            let log = Log::open(dir, cfg).await.expect("open");
            for _ in 0..3 {
                append(&log, 1, 5, 0).await;
            }
            log.wait_written(15).await.expect("written");
            let r = log.read(7, 1 << 20, i64::MAX, true).await.expect("read");
            assert_eq!(r.first_offset, Some(5));
            assert_eq!(r.last_offset, Some(14));
            let (_, hs) = loaded(&r).await;
            assert_eq!(
                hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
                vec![5, 10]
            );
            // Without a tail cache the bytes came from the file, through its read-ahead window.
            if cache == 0 {
                assert!(crate::storage::read_ahead::held_bytes() > 0);
            }
            // Offset == end: empty; beyond: out of range.
            let r = log
                .read(15, 1 << 20, i64::MAX, true)
                .await
                .expect("read at end");
            assert!(r.chunks.is_empty() && r.first_offset.is_none());
            assert!(matches!(
                log.read(16, 100, i64::MAX, true).await,
                Err(StorageError::OffsetOutOfRange {
                    requested: 16,
                    start: 0,
                    end: 15
                })
            ));
            log.remove().await.expect("remove");
        });
    }
}

#[test]
fn read_respects_high_watermark_max_bytes_and_min_one() {
    // Proves reads stop before end_offset_exclusive, fit max_bytes with whole batches, and min_one returns one oversized batch.
    for cache in [0usize, 1 << 20] {
        run(move || async move {
            let dir = temp_dir("limits");
            let cfg = LogConfig {
                cache_bytes_max: cache,
                segment_bytes: 1 << 20,
                ..small_config()
            };
            let log = Log::open(dir, cfg).await.expect("open");
            for _ in 0..10 {
                append(&log, 1, 4, 0).await; // 4 records per batch
            }
            log.wait_written(40).await.expect("written");
            let one = encode_batch(4, 0, 1, 20).len();

            let r = log.read(0, 1 << 20, 12, true).await.expect("read");
            assert_eq!((r.first_offset, r.last_offset), (Some(0), Some(11)));
            assert_eq!(r.bytes, 3 * one);
            // A batch whose base is below the HW is included whole.
            let r = log.read(0, 1 << 20, 13, true).await.expect("read");
            assert_eq!(r.last_offset, Some(15));
            // At or above the HW: nothing.
            let r = log.read(12, 1 << 20, 12, true).await.expect("read");
            assert_eq!(r.bytes, 0);

            let r = log
                .read(4, 2 * one + one / 2, i64::MAX, true)
                .await
                .expect("read");
            assert_eq!(
                (r.first_offset, r.last_offset, r.bytes),
                (Some(4), Some(11), 2 * one)
            );
            loaded(&r).await;

            let r = log.read(8, 10, i64::MAX, true).await.expect("read");
            assert_eq!((r.first_offset, r.bytes), (Some(8), one));
            let r = log.read(8, 10, i64::MAX, false).await.expect("read");
            assert_eq!(r.bytes, 0);
            assert!(r.chunks.is_empty());

            // Long reads across many index entries come back whole and contiguous.
            let r = log.read(1, 1 << 20, i64::MAX, true).await.expect("read");
            let (_, hs) = loaded(&r).await;
            assert_eq!(hs.len(), 10);
            assert_eq!(r.last_offset, Some(39));
            // An unbounded max_bytes does not overflow the budget arithmetic.
            let r = log
                .read(0, usize::MAX, i64::MAX, false)
                .await
                .expect("read");
            assert_eq!((r.bytes, r.last_offset), (10 * one, Some(39)));
            log.remove().await.expect("remove");
        });
    }
}

fn tail_file(dir: &std::path::Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

fn write_at(path: &std::path::Path, pos: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for damage");
    f.write_all_at(bytes, pos).expect("damage");
}

#[test]
fn recovery_truncates_torn_tail_and_continues() {
    // Proves that after a crash leaving garbage or half a batch after the last durable batch, reopen truncates there and offsets continue exactly.
    for damage in ["garbage", "half-batch", "bad-crc"] {
        run(move || async move {
            let dir = temp_dir("torn");
            let cfg = LogConfig {
                segment_bytes: 1 << 20,
                ..small_config()
            };
            let (end, logical) = {
                let log = Log::open(dir.clone(), cfg.clone()).await.expect("open");
                for _ in 0..5 {
                    append(&log, 2, 3, 0).await;
                }
                let end = log.log_end_offset();
                log.wait_durable(end).await.expect("durable");
                let logical = log.state.borrow().segments[0].written_size;
                (end, logical)
                // dropped without close: like kill -9 after the fdatasync
            };
            let path = tail_file(&dir);
            let mut next = encode_batch(3, 0, 1, 20);
            next[0..8].copy_from_slice(&end.to_be_bytes());
            match damage {
                "garbage" => write_at(&path, logical, &[0xab; 700]),
                "half-batch" => write_at(&path, logical, &next[..next.len() / 2]),
                _ => {
                    let n = next.len();
                    next[n - 1] ^= 1;
                    write_at(&path, logical, &next);
                }
            }
            let log = Log::open(dir.clone(), cfg).await.expect("reopen");
            assert_eq!(log.log_end_offset(), end, "{damage}");
            assert_eq!(std::fs::metadata(&path).expect("meta").len(), logical);
            let r = append(&log, 1, 2, 0).await;
            assert_eq!(r.base_offset, end);
            log.wait_durable(end + 2).await.expect("durable");
            let hs = read_all(&log).await;
            assert_eq!(hs.last().map(|h| h.last_offset()), Some(end + 1));
            log.close().await.expect("close");
            let log = Log::open(dir, LogConfig::default())
                .await
                .expect("reopen 2");
            assert_eq!(log.log_end_offset(), end + 2);
            log.remove().await.expect("remove");
        });
    }
}

#[test]
fn reopen_after_clean_close_keeps_everything() {
    // Proves a clean close writes index files and a reopen sees every batch, the same offsets, timestamps and a working append.
    run(|| async {
        let dir = temp_dir("reopen");
        let (end, max_ts) = {
            let log = Log::open(dir.clone(), small_config()).await.expect("open");
            for i in 0..30 {
                append(&log, 1, 3, 1000 + i * 1000).await;
            }
            let end = log.log_end_offset();
            log.close().await.expect("close");
            assert!(matches!(
                log.append(BytesMut::new(), &[], 0).await,
                Err(StorageError::InvalidAppend(_))
            ));
            (end, log.max_timestamp())
        };
        let index_files = std::fs::read_dir(&dir)
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "index"))
            })
            .count();
        let marker = dir.join(crate::storage::recovery::CLEAN_MARKER);
        assert!(marker.exists(), "clean close leaves the marker");
        let log = Log::open(dir.clone(), small_config())
            .await
            .expect("reopen");
        assert!(!marker.exists(), "open consumes the marker");
        assert!(log.segment_count() > 2);
        assert_eq!(
            index_files,
            log.segment_count(),
            "every segment got an index at close/seal"
        );
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.durable_end_offset(), end);
        assert_eq!(log.max_timestamp(), max_ts);
        assert_eq!(max_ts, Some((30_000 + 2, end - 1)));
        let hs = read_all(&log).await;
        assert_eq!(hs.len(), 30);
        let r = append(&log, 1, 1, 0).await;
        assert_eq!(r.base_offset, end);
        assert_eq!(
            log.offset_for_timestamp(15_001).await.expect("ts"),
            Some((43, 15_001))
        );
        log.remove().await.expect("remove");
    });
}

#[test]
fn corrupt_sealed_segment_is_reported() {
    // Proves a damaged batch inside a non-tail segment (index missing) fails open with Corrupt naming the file.
    run(|| async {
        let dir = temp_dir("corrupt");
        {
            let log = Log::open(dir.clone(), small_config()).await.expect("open");
            for _ in 0..30 {
                append(&log, 1, 3, 0).await;
            }
            log.close().await.expect("close");
        }
        let first = crate::storage::segment::segment_path(&dir, 0, "log");
        std::fs::remove_file(first.with_extension("index")).expect("rm index");
        write_at(&first, 200, &[0xff; 4]);
        match Log::open(dir.clone(), small_config()).await {
            Err(StorageError::Corrupt { file, .. }) => assert_eq!(file, first),
            Err(e) => panic!("expected Corrupt, got {e}"),
            Ok(_) => panic!("expected Corrupt, got a log"),
        }
        let _ = std::fs::remove_dir_all(dir);
    });
}

#[test]
fn missing_sealed_index_is_rebuilt() {
    // Proves a sealed segment whose index files are gone is rescanned and serves reads again.
    run(|| async {
        let dir = temp_dir("rebuild");
        {
            let log = Log::open(dir.clone(), small_config()).await.expect("open");
            for _ in 0..30 {
                append(&log, 1, 3, 0).await;
            }
            log.close().await.expect("close");
        }
        let first = crate::storage::segment::segment_path(&dir, 0, "log");
        std::fs::remove_file(first.with_extension("timeindex")).expect("rm timeindex");
        let log = Log::open(dir.clone(), small_config())
            .await
            .expect("reopen");
        assert!(first.with_extension("timeindex").exists());
        assert_eq!(read_all(&log).await.len(), 30);
        log.remove().await.expect("remove");
    });
}

#[test]
fn offset_for_timestamp_finds_exact_record() {
    // Proves timestamp lookup finds the first record >= ts inside uncompressed batches (file and cache), base offset for compressed ones, and None past the max.
    for cache in [0usize, 1 << 20] {
        run(move || async move {
            let dir = temp_dir("ts");
            let cfg = LogConfig {
                cache_bytes_max: cache,
                ..small_config()
            };
            let log = Log::open(dir, cfg).await.expect("open");
            // Batch i (10 records, ts step 10) starts at ts 10_000 * (i + 1).
            for i in 0..20 {
                let b = encode_batch(10, 10_000 * (i + 1), 10, 30);
                let hs = validate_batches(&b).expect("valid");
                log.append(BytesMut::from(&b[..]), &hs, 0)
                    .await
                    .expect("append");
            }
            // A "compressed" batch (attribute only: the log never decompresses).
            let b = encode_batch_with(5, 500_000, 10, 30, 1);
            let hs = validate_batches(&b).expect("valid");
            log.append(BytesMut::from(&b[..]), &hs, 0)
                .await
                .expect("append");
            log.wait_durable(log.log_end_offset())
                .await
                .expect("durable");

            let q = |ts| log.offset_for_timestamp(ts);
            assert_eq!(q(0).await.expect("q"), Some((0, 10_000)));
            assert_eq!(q(10_000).await.expect("q"), Some((0, 10_000)));
            assert_eq!(q(10_001).await.expect("q"), Some((1, 10_010)));
            assert_eq!(q(70_035).await.expect("q"), Some((64, 70_040)));
            assert_eq!(q(200_090).await.expect("q"), Some((199, 200_090)));
            assert_eq!(q(200_091).await.expect("q"), Some((200, 500_040)));
            assert_eq!(q(500_040).await.expect("q"), Some((200, 500_040)));
            assert_eq!(q(500_041).await.expect("q"), None);
            assert_eq!(log.max_timestamp(), Some((500_040, 204)));
            log.remove().await.expect("remove");
        });
    }
}

#[test]
fn wait_durable_group_commits_concurrent_waiters() {
    // Proves many concurrent producers waiting for durability share writes and fdatasyncs, and all get their data durable.
    run(|| async {
        let dir = temp_dir("group");
        let cfg = LogConfig {
            segment_bytes: 1 << 30,
            cache_bytes_max: 1 << 20,
            ..small_config()
        };
        let log = Log::open(dir, cfg).await.expect("open");
        let producers = 200;
        let mut tasks = Vec::new();
        for _ in 0..producers {
            let log = Rc::clone(&log);
            tasks.push(glommio::spawn_local(async move {
                let r = append(&log, 1, 2, 0).await;
                log.wait_durable(r.last_offset + 1).await.expect("durable");
                assert!(log.durable_end_offset() > r.last_offset);
                r.base_offset
            }));
        }
        let mut bases = Vec::new();
        for t in tasks {
            bases.push(t.await);
        }
        bases.sort_unstable();
        assert_eq!(bases, (0..producers).map(|i| i * 2).collect::<Vec<i64>>());
        let (writes, syncs) = log.io_counts();
        assert!(
            syncs >= 1 && syncs < producers as u64 / 4,
            "group commit: {syncs} syncs"
        );
        assert!(
            writes < producers as u64 / 4,
            "grouped writes: {writes} writes"
        );
        assert_eq!(read_all(&log).await.len(), producers as usize);
        log.remove().await.expect("remove");
    });
}

#[test]
fn failed_write_rolls_back_and_offsets_are_reused() {
    // Proves a failed write fails its waiters, rolls log_end back to the written end, drops the data, and the next append reuses those offsets.
    run(|| async {
        let dir = temp_dir("enospc");
        let cfg = LogConfig {
            cache_bytes_max: 1 << 20,
            ..small_config()
        };
        let log = Log::open(dir.clone(), cfg.clone()).await.expect("open");
        append(&log, 1, 3, 0).await;
        log.wait_written(3).await.expect("written");
        log.fail_next_write.set(true);
        let r = append(&log, 1, 4, 0).await;
        assert_eq!((r.base_offset, r.last_offset), (3, 6));
        let err = log.wait_durable(7).await;
        assert!(
            matches!(err, Err(StorageError::Io(ref e)) if e.kind() == std::io::ErrorKind::StorageFull)
        );
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(log.written_end_offset(), 3);
        assert_eq!(
            log.read(3, 100, i64::MAX, true).await.expect("read").bytes,
            0
        );
        let r = append(&log, 1, 2, 0).await;
        assert_eq!((r.base_offset, r.last_offset), (3, 4));
        log.wait_durable(5).await.expect("retry succeeds");
        drop(log);
        let log = Log::open(dir, cfg).await.expect("reopen");
        let hs = read_all(&log).await;
        assert_eq!(
            hs.iter().map(|h| h.record_count).collect::<Vec<_>>(),
            vec![3, 2]
        );
        log.remove().await.expect("remove");
    });
}

#[test]
fn append_back_pressure_bounds_pending_bytes() {
    // Proves that appends without waiters never let pending (unwritten) bytes exceed the bound, and the cache stays bounded.
    run(|| async {
        let dir = temp_dir("pressure");
        let cfg = LogConfig {
            cache_bytes_max: 4096,
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let log = Log::open(dir, cfg).await.expect("open");
        let one = encode_batch(3, 0, 1, 20).len();
        for _ in 0..200 {
            append(&log, 1, 3, 0).await;
            let pending = log.state.borrow().pending_bytes;
            assert!(pending <= 4096 + one, "pending {pending}");
            assert!(
                log.cache_bytes() <= 4096 + one,
                "cache {}",
                log.cache_bytes()
            );
        }
        // acks=0 style: nobody waits, yet the writer drains everything.
        let end = log.log_end_offset();
        while log.written_end_offset() < end {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(read_all(&log).await.len(), 200);
        log.remove().await.expect("remove");
    });
}

#[test]
fn segment_ms_rolls_by_age() {
    // Proves a segment older than segment_ms is rolled on the next append (segment_ms 0: every non-empty segment is too old).
    run(|| async {
        let dir = temp_dir("age");
        let cfg = LogConfig {
            segment_ms: 0,
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let log = Log::open(dir, cfg).await.expect("open");
        for _ in 0..5 {
            append(&log, 1, 1, 0).await;
        }
        assert_eq!(log.segment_count(), 5);
        log.wait_durable(5).await.expect("durable");
        assert_eq!(read_all(&log).await.len(), 5);
        log.remove().await.expect("remove");
    });
}

#[test]
fn sealed_segment_with_zero_padding_and_no_index_is_accepted() {
    // Proves a crash between a roll's last write and its truncation (zero padding, no index) is recovered, not reported as corruption.
    run(|| async {
        let dir = temp_dir("padding");
        {
            let log = Log::open(dir.clone(), small_config()).await.expect("open");
            for _ in 0..30 {
                append(&log, 1, 3, 0).await;
            }
            log.close().await.expect("close");
        }
        let first = crate::storage::segment::segment_path(&dir, 0, "log");
        let len = std::fs::metadata(&first).expect("meta").len();
        write_at(&first, len, &[0u8; 300]);
        std::fs::remove_file(first.with_extension("index")).expect("rm index");
        let log = Log::open(dir.clone(), small_config())
            .await
            .expect("reopen");
        assert_eq!(
            std::fs::metadata(&first).expect("meta").len(),
            len,
            "padding cut"
        );
        assert_eq!(read_all(&log).await.len(), 30);
        log.remove().await.expect("remove");
    });
}

/// Deterministic xorshift so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn random_reads_and_timestamp_lookups_match_a_model() {
    // Proves, against a simple in-memory model, that random reads (offsets, max_bytes, HW, min_one) return a correct prefix of whole batches and timestamp lookups find the first matching record, across segments, index jumps, file and cache paths, and a reopen.
    run(|| async {
        let dir = temp_dir("model");
        let cfg = LogConfig {
            segment_bytes: 8192,
            segment_ms: i64::MAX,
            index_interval_bytes: 64,
            cache_bytes_max: 2048,
            ..LogConfig::default()
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Model: (base, last, bytes as assigned, per-record timestamps).
        let mut model: Vec<(i64, i64, Vec<u8>, Vec<i64>)> = Vec::new();
        let mut log = Log::open(dir.clone(), cfg.clone()).await.expect("open");
        for round in 0..2 {
            for _ in 0..150 {
                let n = 1 + rng.below(6) as usize;
                let base_ts = rng.below(100_000) as i64;
                let step = rng.below(50) as i64 - 10;
                let b = encode_batch(n, base_ts, step, rng.below(60) as usize);
                let hs = validate_batches(&b).expect("valid");
                let r = log
                    .append(BytesMut::from(&b[..]), &hs, 3)
                    .await
                    .expect("append");
                let mut assigned = b.clone();
                assigned[0..8].copy_from_slice(&r.base_offset.to_be_bytes());
                assigned[12..16].copy_from_slice(&3i32.to_be_bytes());
                let ts = (0..n as i64).map(|i| base_ts + step * i).collect();
                model.push((r.base_offset, r.last_offset, assigned, ts));
                if rng.below(4) == 0 {
                    log.wait_written(r.last_offset + 1).await.expect("written");
                }
            }
            let end = log.log_end_offset();
            log.wait_durable(end).await.expect("durable");
            for _ in 0..300 {
                let offset = rng.below(end as u64 + 1) as i64;
                let max_bytes = rng.below(3000) as usize;
                let hw = rng.below(end as u64 + 2) as i64;
                let min_one = rng.below(2) == 0;
                let r = log
                    .read(offset, max_bytes, hw, min_one)
                    .await
                    .expect("read");
                let (bytes, hs) = loaded(&r).await;
                // Expected: whole batches from the one containing `offset`.
                let mut expected = Vec::new();
                let mut taken = 0usize;
                if offset < end && offset < hw {
                    let first = model.partition_point(|m| m.1 < offset);
                    for m in &model[first..] {
                        let fits = taken + m.2.len() <= max_bytes || (taken == 0 && min_one);
                        if m.0 >= hw || !fits {
                            break;
                        }
                        taken += m.2.len();
                        expected.push(m);
                    }
                }
                assert!(hs.len() <= expected.len(), "read too much at {offset}");
                assert_eq!(
                    hs.is_empty(),
                    expected.is_empty(),
                    "empty mismatch at {offset}"
                );
                let mut at = 0;
                for (h, m) in hs.iter().zip(&expected) {
                    assert_eq!((h.base_offset, h.last_offset()), (m.0, m.1));
                    assert_eq!(&bytes[at..at + m.2.len()], &m.2[..]);
                    at += m.2.len();
                }
                assert_eq!(r.first_offset, hs.first().map(|h| h.base_offset));
                assert_eq!(r.last_offset, hs.last().map(|h| h.last_offset()));
            }
            for _ in 0..100 {
                let target = rng.below(110_000) as i64;
                let want = model.iter().find_map(|m| {
                    let i = m.3.iter().position(|t| *t >= target)?;
                    Some((m.0 + i as i64, m.3[i]))
                });
                let got = log.offset_for_timestamp(target).await.expect("ts");
                assert_eq!(got, want, "timestamp {target} in round {round}");
            }
            log.close().await.expect("close");
            log = Log::open(dir.clone(), cfg.clone()).await.expect("reopen");
            assert_eq!(log.log_end_offset(), end);
        }
        log.remove().await.expect("remove");
    });
}

#[test]
fn many_logs_share_a_small_open_file_budget_and_lose_nothing() {
    // Proves eight logs of several segments each stay writable, durable and readable, and reopen after close, while the shard may keep only four segment files open: idle write and read handles are closed and opened again on use, and the count never leaves the budget for long.
    run(|| async {
        use crate::storage::open_files;
        let base = open_files::open_count();
        let before = open_files::limit();
        open_files::set_limit(base + 4);
        let dirs: Vec<_> = (0..8).map(|i| temp_dir(&format!("budget-{i}"))).collect();
        let mut logs = Vec::new();
        for d in &dirs {
            logs.push(Log::open(d.clone(), small_config()).await.expect("open"));
        }
        for round in 0..16 {
            for log in &logs {
                let r = append(log, 2, 3, 1_000 + round * 1000).await;
                log.wait_durable(r.last_offset + 1).await.expect("durable");
            }
        }
        assert!(open_files::open_count() <= base + 5, "open {} with a budget of {}", open_files::open_count(), base + 4);
        for log in &logs {
            assert!(log.segment_count() > 2, "several segments per log");
            let hs = read_all(log).await;
            assert_eq!(hs.iter().map(|h| h.record_count as i64).sum::<i64>(), 96);
            log.close().await.expect("close");
        }
        drop(logs);
        assert_eq!(open_files::open_count(), base, "every counted file closed");
        for d in &dirs {
            let log = Log::open(d.clone(), small_config()).await.expect("reopen");
            assert_eq!(log.log_end_offset(), 96);
            assert_eq!(read_all(&log).await.len(), 32);
            log.close().await.expect("close");
        }
        open_files::set_limit(before);
    });
}

#[test]
fn the_shard_batch_cache_budget_bounds_all_logs_together() {
    // Proves logs of one shard share fjord.batch.cache.bytes: past it, other logs' written entries go first (each log's own bound alone would let many logs hold many times the budget), reads still return every batch (from the files), and closing a log gives its bytes back.
    run(|| async {
        let budget = 16 << 10;
        crate::storage::cache_budget::set_shard_limit(budget);
        let cfg = LogConfig { cache_bytes_max: 1 << 20, ..small_config() };
        let mut logs = Vec::new();
        for i in 0..8 {
            logs.push(Log::open(temp_dir(&format!("budget-{i}")), cfg).await.expect("open"));
        }
        for round in 0..4 {
            for log in &logs {
                let r = append(log, 4, 20, round * 1000).await;
                log.wait_written(r.last_offset + 1).await.expect("written");
            }
        }
        let each: Vec<usize> = logs.iter().map(|l| l.cache_bytes()).collect();
        let total: usize = each.iter().sum();
        assert_eq!(total, crate::storage::cache_budget::held_bytes());
        // Everything is written, so the budget holds, give or take the last append.
        let last = each[each.len() - 1];
        assert!(total <= budget + last, "cached {total} of a {budget} budget: {each:?}");
        assert!(each[0] < last, "the oldest appender lost its entries first: {each:?}");
        for log in &logs {
            let hs = read_all(log).await;
            assert_eq!(hs.len(), 16, "every batch reads back");
        }
        for log in logs {
            log.remove().await.expect("remove");
        }
        assert_eq!(crate::storage::cache_budget::held_bytes(), 0);
        crate::storage::cache_budget::set_shard_limit(usize::MAX);
    });
}
