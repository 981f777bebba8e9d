//! Tests of the replica side of `Log`: follower appends, tail truncation,
//! full resets and the leader-epoch checkpoint, each across a reopen.

use bytes::BytesMut;

use super::super::tests::{run, small_config, temp_dir};
use super::super::{Log, ReadResult};
use crate::storage::batch::testing::encode_batch;
use crate::storage::batch::validate_batches;
use crate::storage::BatchHeader;

/// `n` batches of 3 records each, appended by a leader of `epoch`.
async fn lead(log: &Log, n: usize, epoch: i32) {
    for i in 0..n {
        let buf = encode_batch(3, 1000 + i as i64, 1, 40);
        let headers = validate_batches(&buf).expect("valid");
        log.append(BytesMut::from(&buf[..]), &headers, epoch).await.expect("append");
    }
    log.wait_durable(log.log_end_offset()).await.expect("durable");
}

/// One batch of 3 records at `base` with `epoch`, as a leader would send it.
fn leader_batch(base: i64, epoch: i32) -> Vec<u8> {
    let mut buf = encode_batch(3, 5000 + base, 1, 40);
    buf[0..8].copy_from_slice(&base.to_be_bytes());
    buf[12..16].copy_from_slice(&epoch.to_be_bytes());
    buf
}

async fn headers_of(log: &Log) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let r: ReadResult = log.read(next, 1 << 20, i64::MAX, true).await.expect("read");
        let mut all = Vec::new();
        for c in &r.chunks {
            all.extend_from_slice(c);
        }
        let hs = validate_batches(&all).expect("whole valid batches");
        assert!(!hs.is_empty(), "read at {next} returned nothing");
        for h in hs {
            next = h.last_offset() + 1;
            out.push(h);
        }
    }
    out
}

#[test]
fn follower_append_keeps_offsets_and_epochs_and_survives_reopen() {
    // Proves a follower's append stores the leader's offsets and epochs as given (gaps allowed), refuses batches that go back, and that offsets and the epoch cache come back after a crash-like reopen.
    run(|| async {
        let dir = temp_dir("replica-follower-append");
        let log = Log::open(dir.clone(), small_config()).await.expect("open");
        let mut buf = leader_batch(0, 1);
        buf.extend(leader_batch(3, 1));
        buf.extend(leader_batch(10, 4)); // a gap: the leader compacted 6..10
        let hs = validate_batches(&buf).expect("valid");
        let r = log.append_replica(BytesMut::from(&buf[..]), &hs).await.expect("append");
        assert_eq!((r.base_offset, r.last_offset), (0, 12));
        log.wait_durable(13).await.expect("durable");
        let back = leader_batch(11, 4);
        let hs = validate_batches(&back).expect("valid");
        assert!(log.append_replica(BytesMut::from(&back[..]), &hs).await.is_err(), "offsets may not go back");
        assert_eq!(log.end_offset_for_epoch(1), (1, 10));
        assert_eq!(log.end_offset_for_epoch(4), (4, 13));
        assert_eq!(log.end_offset_for_epoch(2), (1, 10));
        drop(log); // no close: as after kill -9
        let log = Log::open(dir.clone(), small_config()).await.expect("reopen");
        assert_eq!(log.log_end_offset(), 13);
        let bases: Vec<(i64, i32)> = headers_of(&log).await.iter().map(|h| (h.base_offset, h.partition_leader_epoch)).collect();
        assert_eq!(bases, vec![(0, 1), (3, 1), (10, 4)]);
        assert_eq!(log.latest_epoch(), Some(4));
        assert_eq!(log.end_offset_for_epoch(1), (1, 10));
        log.close().await.expect("close");
    });
}

#[test]
fn truncate_to_cuts_whole_batches_across_segments_and_survives_reopen() {
    // Proves truncation removes the batch containing the target and everything after (later segments too), moves every watermark, drops epochs that started past the cut, lets appends continue at the new end, and that nothing truncated comes back after a reopen.
    run(|| async {
        let dir = temp_dir("replica-truncate");
        let log = Log::open(dir.clone(), small_config()).await.expect("open");
        lead(&log, 10, 2).await; // 30 offsets over several 1 KiB segments
        log.start_leader_epoch(3).await.expect("epoch 3");
        lead(&log, 10, 3).await; // offsets 30..60
        assert!(log.segment_count() > 3);
        assert_eq!(log.end_offset_for_epoch(2), (2, 30));
        let end = log.truncate_to(34).await.expect("truncate");
        assert_eq!(end, 33, "the batch 33..=35 holding 34 goes whole");
        assert_eq!((log.log_end_offset(), log.written_end_offset(), log.durable_end_offset()), (33, 33, 33));
        assert_eq!(log.end_offset_for_epoch(3), (3, 33));
        let end = log.truncate_to(29).await.expect("truncate into epoch 2");
        assert_eq!(end, 27);
        assert_eq!(log.latest_epoch(), Some(2), "epoch 3 started past the cut");
        lead(&log, 2, 5).await;
        assert_eq!(log.log_end_offset(), 33);
        let seen: Vec<(i64, i32)> = headers_of(&log).await.iter().map(|h| (h.base_offset, h.partition_leader_epoch)).collect();
        assert_eq!(seen.len(), 11);
        assert_eq!(seen[8], (24, 2));
        assert_eq!(seen[9], (27, 5));
        drop(log);
        let log = Log::open(dir.clone(), small_config()).await.expect("reopen");
        assert_eq!(log.log_end_offset(), 33);
        assert_eq!(headers_of(&log).await.len(), 11);
        assert_eq!(log.end_offset_for_epoch(2), (2, 27));
        assert_eq!(log.latest_epoch(), Some(5));
        // A cut in a sealed segment reopens it for appends, and a clean close keeps it.
        let end = log.truncate_to(4).await.expect("truncate into the first segment");
        assert_eq!(end, 3);
        lead(&log, 1, 6).await;
        log.close().await.expect("close");
        let log = Log::open(dir.clone(), small_config()).await.expect("reopen after clean close");
        let seen: Vec<(i64, i32)> = headers_of(&log).await.iter().map(|h| (h.base_offset, h.partition_leader_epoch)).collect();
        assert_eq!(seen, vec![(0, 2), (3, 6)]);
        log.close().await.expect("close");
    });
}

#[test]
fn truncate_fully_restarts_the_log_at_a_new_start() {
    // Proves a full reset empties the log, starts it at the given offset (also after a reopen), and takes the leader's batches from there.
    run(|| async {
        let dir = temp_dir("replica-truncate-fully");
        let log = Log::open(dir.clone(), small_config()).await.expect("open");
        lead(&log, 5, 1).await;
        log.truncate_fully(100).await.expect("reset");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
        let buf = leader_batch(100, 7);
        let hs = validate_batches(&buf).expect("valid");
        log.append_replica(BytesMut::from(&buf[..]), &hs).await.expect("append");
        log.wait_durable(103).await.expect("durable");
        drop(log);
        let log = Log::open(dir.clone(), small_config()).await.expect("reopen");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 103));
        assert_eq!(log.end_offset_for_epoch(7), (7, 103));
        assert_eq!(log.end_offset_for_epoch(1), (1, 100), "an epoch below the first ends where the first starts (Kafka)");
        log.close().await.expect("close");
    });
}
