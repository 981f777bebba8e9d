//! Tests of `Log::compact` (included from log_compaction.rs): real segment
//! files in a temp dir, inside a glommio executor.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use bytes::BytesMut;

use crate::storage::batch::BatchHeader;
use crate::storage::compaction::{encode_keyed, parse_records, records_section};
use crate::storage::recovery::now_ms;
use crate::storage::{validate_batches, Log, LogConfig};

fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F) {
    crate::storage::batch::testing::run_local(f)
}

fn temp_dir(name: &str) -> PathBuf {
    crate::storage::batch::testing::temp_dir("compact", name)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        segment_ms: i64::MAX,
        index_interval_bytes: 128,
        cache_bytes_max: 0,
        compact_enabled: true,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 60_000,
        ..LogConfig::default()
    }
}

/// Appends one batch per call: records `(key, value)` with timestamp `ts`.
async fn put(log: &Log, ts: i64, recs: &[(&[u8], Option<&[u8]>)]) -> i64 {
    let b = encode_keyed(0, ts, recs);
    let hs = validate_batches(&b).expect("valid");
    log.append(BytesMut::from(&b[..]), &hs, 1)
        .await
        .expect("append")
        .base_offset
}

/// Every record in the log as offset -> (key, value), reading from the start
/// at batch boundaries and also from every offset inside the range (gaps included).
async fn contents(log: &Log) -> BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let r = log.read(next, 1 << 20, i64::MAX, true).await.expect("read");
        let mut all = Vec::new();
        for c in &r.chunks {
            all.extend_from_slice(c);
        }
        assert!(!all.is_empty(), "read at {next} returned nothing");
        let mut pos = 0;
        while pos < all.len() {
            let h = BatchHeader::parse(&all[pos..]).expect("header");
            let batch = &all[pos..pos + h.total_size()];
            h.check_crc(batch).expect("crc");
            let sec = records_section(&h, batch).expect("section").expect("readable");
            for r in parse_records(&h, &sec).expect("records") {
                let k = sec[r.key.clone().expect("keyed")].to_vec();
                let v = if r.value_is_null { None } else { Some(b"v".to_vec()) };
                out.insert(r.offset, (k, v));
            }
            assert!(h.last_offset() >= next, "read returns batches at or after the offset");
            next = h.last_offset() + 1;
            pos += h.total_size();
        }
    }
    out
}

/// Writes 3 rounds over keys k0..k9 (values round-numbered), one record per batch.
async fn fill(log: &Log, ts: i64) {
    for round in 0..3u8 {
        for k in 0..10u8 {
            let key = [b'k', b'0' + k];
            let value = [round; 40];
            put(log, ts, &[(&key, Some(&value))]).await;
        }
    }
}

#[test]
fn compaction_keeps_latest_per_key_at_original_offsets() {
    // Proves a pass removes superseded records from sealed segments only, never renumbers, and reads across gaps work.
    run(|| async {
        let dir = temp_dir("latest");
        let log = Log::open(dir.clone(), config()).await.expect("open");
        let ts = now_ms();
        fill(&log, ts).await;
        let end = log.log_end_offset();
        log.wait_durable(end).await.expect("durable");
        assert!(log.segment_count() > 4);
        let before = contents(&log).await;
        assert_eq!(before.len(), 30);
        let stats = log.compact(now_ms(), 1000).await.expect("compact");
        assert!(stats.segments_cleaned > 0, "{stats:?}");
        assert_eq!(log.log_end_offset(), end, "end offset unchanged");
        let after = contents(&log).await;
        // Every surviving record sits at its original offset.
        for (o, kv) in &after {
            assert_eq!(before.get(o).map(|(k, _)| k), Some(&kv.0), "offset {o}");
        }
        // The latest record of each key survives.
        let mut latest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (o, (k, _)) in &before {
            latest.insert(k.clone(), *o);
        }
        for o in latest.values() {
            assert!(after.contains_key(o), "latest offset {o} kept");
        }
        assert!(after.len() < before.len());
        // Stale records remain only in the active segment's range (never cleaned) or were removed.
        for i in 0..end {
            let r = log.read(i, 1 << 20, i64::MAX, true).await.expect("read at any offset");
            assert!(r.last_offset.is_some_and(|l| l >= i), "read at {i}");
        }
        // A second pass with nothing new dirty does nothing.
        let again = log.compact(now_ms(), 1000).await.expect("compact");
        assert_eq!(again.segments_cleaned, 0);
        // Survives a clean close and a reopen (indexes written) and a reopen without indexes (rescan with gaps).
        log.close().await.expect("close");
        let log = Log::open(dir.clone(), config()).await.expect("reopen");
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(contents(&log).await, after);
        log.close().await.expect("close");
        for e in std::fs::read_dir(&dir).expect("ls") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "index" || x == "timeindex") {
                std::fs::remove_file(p).expect("rm");
            }
        }
        std::fs::write(dir.join("00000000000000000000.cleaned"), b"half a segment").expect("leftover");
        let log = Log::open(dir.clone(), config()).await.expect("reopen after crash");
        assert!(
            !dir.join("00000000000000000000.cleaned").exists(),
            "leftover temp file removed"
        );
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(contents(&log).await, after);
        log.remove().await.expect("remove");
    });
}

#[test]
fn tombstones_outlive_delete_retention_then_go() {
    // Proves a tombstone removes older values at once but itself stays until delete.retention.ms has passed.
    run(|| async {
        let dir = temp_dir("tombstone");
        let log = Log::open(dir.clone(), config()).await.expect("open");
        let ts = now_ms();
        fill(&log, ts).await;
        put(&log, ts, &[(b"k3", None)]).await;
        fill(&log, ts).await; // pushes the tombstone into a sealed segment...
        put(&log, ts, &[(b"zz", Some(b"x"))]).await;
        // ...but k3 was written again after it; use a key written only before.
        put(&log, ts, &[(b"gone", Some(b"1"))]).await;
        let t_off = put(&log, ts, &[(b"gone", None)]).await;
        for i in 0..20u8 {
            put(&log, ts, &[(&[b'f', i], Some(&[i; 40]))]).await;
        }
        let end = log.log_end_offset();
        log.wait_durable(end).await.expect("durable");
        log.compact(now_ms(), 1000).await.expect("compact");
        let c = contents(&log).await;
        assert!(c.contains_key(&t_off), "young tombstone kept");
        assert!(
            !c.values().any(|(k, v)| k == b"gone" && v.is_some()),
            "value under tombstone removed"
        );
        // Two minutes later (delete.retention.ms = 60 s) the tombstone goes too.
        std::fs::remove_file(dir.join(crate::storage::compaction::CLEANER_CHECKPOINT)).expect("rm ckpt");
        log.compact(now_ms() + 120_000, 1000).await.expect("compact");
        let c = contents(&log).await;
        assert!(!c.contains_key(&t_off), "old tombstone removed");
        assert!(!c.values().any(|(k, _)| k == b"gone"));
        assert_eq!(log.log_end_offset(), end);
        log.remove().await.expect("remove");
    });
}

#[test]
fn dirty_ratio_and_lag_hold_compaction_back() {
    // Proves min.cleanable.dirty.ratio and min.compaction.lag.ms stop a pass, and a non-compact log is never touched.
    run(|| async {
        let dir = temp_dir("ratio");
        let cfg = LogConfig {
            min_compaction_lag_ms: 3_600_000,
            ..config()
        };
        let log = Log::open(dir.clone(), cfg).await.expect("open");
        fill(&log, now_ms()).await;
        let end = log.log_end_offset();
        log.wait_durable(end).await.expect("durable");
        assert_eq!(log.compact(now_ms(), 1000).await.expect("c").segments_cleaned, 0, "lag");
        log.set_config(LogConfig {
            compact_enabled: false,
            ..config()
        });
        assert_eq!(
            log.compact(now_ms(), 1000).await.expect("c").segments_cleaned,
            0,
            "policy delete"
        );
        log.set_config(config());
        assert!(log.compact(now_ms(), 1000).await.expect("c").segments_cleaned > 0);
        fill(&log, now_ms()).await;
        let end = log.log_end_offset();
        log.wait_durable(end).await.expect("durable");
        log.set_config(LogConfig {
            min_cleanable_dirty_ratio: 0.99,
            ..config()
        });
        assert_eq!(
            log.compact(now_ms(), 1000).await.expect("c").segments_cleaned,
            0,
            "ratio"
        );
        // A key map too small for one segment's keys: nothing is cleaned, nothing is lost.
        log.set_config(config());
        let before = contents(&log).await;
        assert_eq!(
            log.compact(now_ms(), 1).await.expect("c").segments_cleaned,
            0,
            "tiny map"
        );
        assert_eq!(contents(&log).await, before);
        log.remove().await.expect("remove");
    });
}

#[test]
fn max_compaction_lag_cleans_below_the_dirty_ratio_and_rolls() {
    // Proves a log whose oldest dirty record is older than max.compaction.lag.ms is cleaned even below min.cleanable.dirty.ratio, and a compacted log rolls at that age.
    run(|| async {
        let dir = temp_dir("maxlag");
        let log = Log::open(dir.clone(), config()).await.expect("open");
        let old = now_ms() - 120_000;
        fill(&log, old).await;
        let end = log.log_end_offset();
        log.wait_durable(end).await.expect("durable");
        assert!(log.compact(now_ms(), 1000).await.expect("c").segments_cleaned > 0);
        // A cleaned head plus new dirty segments: a dirty ratio below 0.99.
        fill(&log, old).await;
        let end = log.log_end_offset();
        log.wait_durable(end).await.expect("durable");
        log.set_config(LogConfig {
            min_cleanable_dirty_ratio: 0.99,
            max_compaction_lag_ms: 60_000,
            ..config()
        });
        // Seen from a time when those records are younger than the lag: the ratio holds the pass back.
        assert_eq!(log.compact(old + 1000, 1000).await.expect("c").segments_cleaned, 0, "young: ratio applies");
        let stats = log.compact(now_ms(), 1000).await.expect("c");
        assert!(stats.segments_cleaned > 0 && stats.records_removed > 0, "overdue: {stats:?}");
        // Nothing dirty any more: no further pass.
        assert_eq!(log.compact(now_ms(), 1000).await.expect("c").segments_cleaned, 0);
        // roll_ms: the smaller of segment.ms and max.compaction.lag.ms, on compacted logs only.
        assert_eq!(log.config().roll_ms(), 60_000);
        let plain = LogConfig {
            compact_enabled: false,
            ..log.config()
        };
        assert_eq!(plain.roll_ms(), i64::MAX);
        log.remove().await.expect("remove");
    });
}

#[test]
fn cleaned_segments_are_merged_up_to_segment_bytes() {
    // Proves later passes merge adjacent small cleaned segments into one (total within segment.bytes) without changing any record or offset, and a reopen reads the same.
    run(|| async {
        let dir = temp_dir("merge");
        let log = Log::open(dir.clone(), config()).await.expect("open");
        let ts = now_ms();
        fill(&log, ts).await;
        fill(&log, ts).await;
        let end = log.log_end_offset();
        log.wait_durable(end).await.expect("durable");
        let segments_before = log.segment_count();
        let before = contents(&log).await;
        let mut merged = 0;
        // Bounded: each pass that merges removes at least one segment.
        for _ in 0..segments_before {
            let s = log.compact(now_ms(), 1000).await.expect("compact");
            merged += s.segments_merged;
            std::fs::remove_file(dir.join(crate::storage::compaction::CLEANER_CHECKPOINT)).ok();
        }
        let after = contents(&log).await;
        assert!(merged > 0, "some segments merged");
        assert!(log.segment_count() < segments_before / 2, "{} of {segments_before} segments left", log.segment_count());
        for (o, kv) in &after {
            assert_eq!(before.get(o).map(|(k, _)| k), Some(&kv.0), "offset {o}");
        }
        assert_eq!(log.log_end_offset(), end);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        paths.sort();
        assert_eq!(paths.len(), log.segment_count(), "no file of a merged segment is left");
        // The active segment's file is padded to the DMA block until it is sealed.
        let sealed: Vec<u64> = paths[..paths.len() - 1].iter().map(|p| std::fs::metadata(p).expect("stat").len()).collect();
        assert!(sealed.iter().all(|&s| s <= 600), "{sealed:?}");
        log.close().await.expect("close");
        let log = Log::open(dir.clone(), config()).await.expect("reopen");
        assert_eq!(contents(&log).await, after);
        assert_eq!(log.log_end_offset(), end);
        log.remove().await.expect("remove");
    });
}

#[test]
fn open_finishes_a_committed_swap() {
    // Proves a `.swap` left by a kill after the commit point replaces the segments it covers at open (also when some were already unlinked), and nothing is lost or doubled.
    for unlinked_second in [false, true] {
        run(move || async move {
            let dir = temp_dir(if unlinked_second { "swap-partial" } else { "swap" });
            let log = Log::open(dir.clone(), config()).await.expect("open");
            fill(&log, now_ms()).await;
            let end = log.log_end_offset();
            log.wait_durable(end).await.expect("durable");
            let before = contents(&log).await;
            log.close().await.expect("close");
            let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("ls")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            logs.sort();
            assert!(logs.len() >= 4);
            // The swap a merge of the first three segments would have committed (nothing removed).
            let mut merged = Vec::new();
            for p in &logs[..3] {
                merged.extend_from_slice(&std::fs::read(p).expect("read"));
            }
            std::fs::write(logs[0].with_extension("swap"), &merged).expect("swap");
            if unlinked_second {
                std::fs::remove_file(&logs[1]).expect("rm");
                std::fs::remove_file(logs[1].with_extension("index")).expect("rm");
            }
            let log = Log::open(dir.clone(), config()).await.expect("open finishes the swap");
            assert!(!logs[0].with_extension("swap").exists());
            assert!(!logs[1].exists() && !logs[2].exists() && !logs[2].with_extension("index").exists());
            assert_eq!(std::fs::metadata(&logs[0]).expect("stat").len(), merged.len() as u64);
            assert_eq!(contents(&log).await, before);
            assert_eq!(log.log_end_offset(), end);
            log.remove().await.expect("remove");
        });
    }
}

/// A sealed-segment file of batches of varied sizes (one record each) at `path`, and the batches.
fn segment_file(path: &std::path::Path) -> (super::SegRef, Vec<Vec<u8>>) {
    let batches: Vec<Vec<u8>> = (0..40usize)
        .map(|i| {
            let value = vec![i as u8; (i * 37) % 300];
            encode_keyed(i as i64, 1000, &[(&[b'k', i as u8], Some(&value))])
        })
        .collect();
    std::fs::write(path, batches.concat()).expect("write segment");
    let seg = super::SegRef {
        base: 0,
        next: batches.len() as i64,
        size: batches.iter().map(|b| b.len() as u64).sum(),
        reader: crate::storage::open_files::open_read(path).expect("open"),
        path: path.to_path_buf(),
    };
    (seg, batches)
}

#[test]
fn batch_walk_reads_every_batch_through_any_window_and_reports_corruption() {
    // Proves the walk's blocking-pool reads return every batch byte for byte whatever the window (smaller than a header, straddling batches, the whole file), and a bad CRC or a torn tail is Corrupt naming the file and position.
    run(|| async {
        let dir = temp_dir("walk");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("00000000000000000000.log");
        let (seg, batches) = segment_file(&path);
        for window in [1, 61, 128, 1000, super::READ_WINDOW_BYTES] {
            let mut walk = super::BatchWalk::with_window(&seg, window).expect("walk");
            let mut got = Vec::new();
            while let Some((h, bytes)) = walk.next_batch().await.expect("batch") {
                assert_eq!(h.total_size(), bytes.len(), "window {window}");
                got.push(bytes);
            }
            assert_eq!(got, batches, "window {window}");
        }
        // One byte flipped inside the 11th batch's records: a CRC error there.
        let at: usize = batches[..10].iter().map(Vec::len).sum();
        let mut bad = batches.concat();
        let last = at + batches[10].len() - 1;
        bad[last] ^= 0xff;
        std::fs::write(&path, &bad).expect("write");
        let mut walk = super::BatchWalk::with_window(&seg, 100).expect("walk");
        let err = loop {
            match walk.next_batch().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("corruption not seen"),
                Err(e) => break e,
            }
        };
        match err {
            crate::storage::StorageError::Corrupt { file, reason } => {
                assert_eq!(file, path);
                assert!(reason.starts_with(&format!("at {at}:")), "{reason}");
            }
            e => panic!("{e}"),
        }
        // Fewer bytes than a header after the last batch.
        std::fs::write(&path, [batches.concat(), vec![0; 5]].concat()).expect("write");
        let torn = super::SegRef { size: seg.size + 5, ..seg };
        let mut walk = super::BatchWalk::new(&torn).expect("walk");
        let err = loop {
            match walk.next_batch().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("torn tail not seen"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("5 trailing bytes"), "{err}");
        std::fs::remove_dir_all(&dir).expect("rm");
    });
}

#[test]
fn cleaned_writer_writes_every_byte_through_small_buffers() {
    // Proves the writer's buffered pwrites on the blocking pool (several in turn, chunks smaller and larger than the buffer) leave exactly the bytes written, fsync'ed, readable through the fd it returns; discard unlinks the file.
    run(|| async {
        let dir = temp_dir("writer");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("00000000000000000000.cleaned");
        let mut out = super::CleanedWriter::create(path.clone(), 100).await.expect("create");
        let mut expected = Vec::new();
        for i in 0..200usize {
            let chunk = vec![i as u8; (i * 29) % 170];
            out.write(&chunk).await.expect("write");
            expected.extend_from_slice(&chunk);
        }
        let file = out.finish().await.expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), expected);
        let mut again = vec![0u8; expected.len()];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut again, 0).expect("pread");
        assert_eq!(again, expected);
        let mut out = super::CleanedWriter::create(path.clone(), 100).await.expect("create");
        out.write(&[7; 250]).await.expect("write");
        out.discard().await;
        assert!(!path.exists(), "discarded");
        std::fs::remove_dir_all(&dir).expect("rm");
    });
}

#[test]
fn close_waits_for_a_running_pass_to_stop() {
    // Proves close does not return while a compaction pass runs (so none of the pass's blocking-pool file work outlives the log, e.g. into remove), and a real pass caught by close stops with Closed.
    run(|| async {
        let dir = temp_dir("close-during");
        let log = Log::open(dir.clone(), config()).await.expect("open");
        fill(&log, now_ms()).await;
        let end = log.log_end_offset();
        log.wait_durable(end).await.expect("durable");
        // A pass held running: close waits for it.
        log.state.borrow_mut().cleaner_passes += 1;
        let running = super::RunningPass(&log);
        let closing = glommio::spawn_local({
            let log = log.clone();
            async move { log.close().await }
        });
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert!(log.state.borrow().closed, "close has started");
        let closed = std::rc::Rc::new(std::cell::Cell::new(false));
        let closing = glommio::spawn_local({
            let closed = closed.clone();
            async move {
                let r = closing.await;
                closed.set(true);
                r
            }
        });
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!closed.get(), "close returned while a pass was running");
        drop(running);
        closing.await.expect("close");
        // A real pass that close catches midway stops with Closed.
        let log = Log::open(dir.clone(), config()).await.expect("reopen");
        fill(&log, now_ms()).await;
        let end = log.log_end_offset();
        log.wait_durable(end).await.expect("durable");
        let pass = glommio::spawn_local({
            let log = log.clone();
            async move { log.compact(now_ms(), 1000).await }
        });
        assert_eq!(log.state.borrow().cleaner_passes, 1, "the pass runs until it waits for the pool");
        log.close().await.expect("close");
        assert_eq!(log.state.borrow().cleaner_passes, 0);
        assert!(matches!(pass.await, Err(crate::storage::StorageError::Closed)));
        log.remove().await.expect("remove");
        assert!(!dir.exists());
    });
}
