//! The follower fetcher for one (leader broker, local shard): every local
//! replica this shard holds that follows that leader is fetched in one
//! Fetch request, as Kafka's `ReplicaFetcherThread` does.
//!
//! Per round: (1) replicas whose leader epoch changed since their last
//! round are truncated first, by OffsetForLeaderEpoch with their latest
//! epoch (KIP-101/279: the leader answers where that epoch ended on its
//! log); (2) one Fetch (replica_id = this broker) from each replica's log
//! end; (3) the batches are appended as they are, (4) fdatasync'ed (all
//! replicas' syncs in flight together), and only then (5) is the leader's
//! high watermark taken and the next fetch sent. So the offset a follower
//! fetches from is always durable on it: acks=all means fdatasync'ed on
//! every ISR member.
//!
//! Runs on the shard that owns the replicas; one connection to the leader,
//! reopened after any error with a short backoff. Stops when no local
//! replica follows the leader any more, or at shutdown.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::ResponseError;
use crate::interbroker::{Connection, InterBrokerError};
use crate::metadata::NodeId;
use crate::partition::replica::Role;
use crate::partition::Partition;
use crate::shard::ShardState;
use crate::storage::validate_batches;

/// Fetch v12: topic names, replica_id, current_leader_epoch (what Kafka 2.7+ followers send).
const FETCH_VERSION: i16 = 12;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
const BACKOFF: Duration = Duration::from_millis(100);

type Key = (String, i32);

/// One replica this fetcher serves, as of this round.
struct Follow {
    partition: Rc<Partition>,
    epoch: i32,
}

pub async fn run(shard: Rc<ShardState>, leader: NodeId) {
    let me = shard.config.node_id;
    // The leader epoch each replica was last truncated for.
    let mut truncated_for: HashMap<Key, i32> = HashMap::new();
    let mut conn: Option<Connection> = None;
    tracing::info!(leader, shard = shard.id, "replica fetcher started");
    loop {
        if shard.shutdown.is_triggered() {
            return;
        }
        let follows = follows_of(&shard, leader);
        if follows.is_empty() {
            tracing::info!(leader, shard = shard.id, "replica fetcher stopped: no replica follows this leader");
            return;
        }
        truncated_for.retain(|k, _| follows.contains_key(k));
        if conn.is_none() {
            conn = connect(&shard, leader).await;
            if conn.is_none() {
                backoff(&shard).await;
                continue;
            }
        }
        let c = conn.as_mut().expect("connected above");
        let round = async {
            truncate_diverged(c, &follows, &mut truncated_for, me).await?;
            let ready: Vec<(&Key, &Follow)> = follows.iter().filter(|(k, f)| truncated_for.get(*k) == Some(&f.epoch)).collect();
            if ready.is_empty() {
                return Ok(true);
            }
            fetch_once(&shard, c, &ready, me).await
        };
        match round.await {
            Ok(true) => backoff(&shard).await,
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(leader, error = %e, "replica fetch failed; reconnecting");
                conn = None;
                backoff(&shard).await;
            }
        }
    }
}

async fn backoff(shard: &ShardState) {
    let slept = glommio::timer::sleep(BACKOFF);
    futures_lite::future::or(async { slept.await }, shard.shutdown.wait()).await;
}

fn follows_of(shard: &ShardState, leader: NodeId) -> HashMap<Key, Follow> {
    shard
        .partitions
        .all()
        .into_iter()
        .filter_map(|p| match p.role() {
            Role::Follower { leader: l, epoch } if l == leader => Some(((p.topic.clone(), p.partition), Follow { partition: p, epoch })),
            _ => None,
        })
        .collect()
}

async fn connect(shard: &ShardState, leader: NodeId) -> Option<Connection> {
    let md = shard.metadata();
    let broker = md.live_broker(leader)?;
    let (host, port) = broker.endpoint(&shard.config.inter_broker_listener_name)?;
    let addr = format!("{host}:{port}");
    match Connection::connect(&addr).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(leader, addr = %addr, error = %e, "cannot reach the leader");
            None
        }
    }
}

/// OffsetForLeaderEpoch for every replica whose leader epoch is new to this
/// fetcher; truncates those the leader says diverged.
async fn truncate_diverged(
    conn: &mut Connection,
    follows: &HashMap<Key, Follow>,
    truncated_for: &mut HashMap<Key, i32>,
    me: NodeId,
) -> Result<(), InterBrokerError> {
    let pending: Vec<(&Key, &Follow)> = follows.iter().filter(|(k, f)| truncated_for.get(*k) != Some(&f.epoch)).collect();
    if pending.is_empty() {
        return Ok(());
    }
    let mut asked: Vec<(&Key, &Follow)> = Vec::new();
    let mut by_topic: HashMap<&str, Vec<OffsetForLeaderPartition>> = HashMap::new();
    for (k, f) in pending {
        match f.partition.log().latest_epoch() {
            // Nothing written under any epoch: nothing can diverge.
            None => {
                truncated_for.insert(k.clone(), f.epoch);
            }
            Some(latest) => {
                by_topic.entry(k.0.as_str()).or_default().push(
                    OffsetForLeaderPartition::default().with_partition(k.1).with_current_leader_epoch(f.epoch).with_leader_epoch(latest),
                );
                asked.push((k, f));
            }
        }
    }
    if asked.is_empty() {
        return Ok(());
    }
    let topics = by_topic
        .into_iter()
        .map(|(t, ps)| OffsetForLeaderTopic::default().with_topic(TopicName(StrBytes::from_string(t.to_string()))).with_partitions(ps))
        .collect();
    let req = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(me)).with_topics(topics);
    let resp: OffsetForLeaderEpochResponse =
        conn.call(ApiKey::OffsetForLeaderEpoch, OFFSET_FOR_LEADER_EPOCH_VERSION, &req, Duration::from_secs(10)).await?;
    for t in resp.topics {
        for r in t.partitions {
            let key = (t.topic.0.to_string(), r.partition);
            let Some((_, f)) = asked.iter().find(|(k, _)| **k == key) else { continue };
            if r.error_code != 0 {
                tracing::debug!(topic = %key.0, partition = key.1, error_code = r.error_code, "OffsetForLeaderEpoch refused; retrying after metadata");
                continue;
            }
            let log = f.partition.log();
            let end = log.log_end_offset();
            if r.end_offset >= 0 && r.end_offset < end {
                tracing::warn!(topic = %key.0, partition = key.1, from = end, to = r.end_offset, leader_epoch = r.leader_epoch, "truncating a diverged replica");
                if let Err(e) = log.truncate_to(r.end_offset).await {
                    tracing::error!(topic = %key.0, partition = key.1, error = %e, "truncation failed");
                    continue;
                }
                f.partition.rebuild_state_after_truncation();
            }
            truncated_for.insert(key, f.epoch);
        }
    }
    Ok(())
}

/// One Fetch round for `ready` replicas. Ok(true) when nothing came back
/// (the caller backs off only on errors; the leader long-polls).
async fn fetch_once(shard: &ShardState, conn: &mut Connection, ready: &[(&Key, &Follow)], me: NodeId) -> Result<bool, InterBrokerError> {
    let mut by_topic: HashMap<&str, Vec<FetchPartition>> = HashMap::new();
    for (k, f) in ready {
        let log = f.partition.log();
        by_topic.entry(k.0.as_str()).or_default().push(
            FetchPartition::default()
                .with_partition(k.1)
                .with_current_leader_epoch(f.epoch)
                .with_fetch_offset(log.log_end_offset())
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(log.log_start_offset())
                .with_partition_max_bytes(shard.config.replica_fetch_max_bytes),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(t, ps)| FetchTopic::default().with_topic(TopicName(StrBytes::from_string(t.to_string()))).with_partitions(ps))
        .collect();
    let wait_ms = shard.config.replica_fetch_wait_max_ms as i32;
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(shard.config.replica_fetch_response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    let timeout = Duration::from_millis(wait_ms as u64) + Duration::from_secs(10);
    let resp: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &req, timeout).await?;
    if resp.error_code != 0 {
        return Ok(true);
    }
    let mut appended: Vec<(Rc<Partition>, i64)> = Vec::new();
    let mut any_error = false;
    for t in resp.responses {
        for p in t.partitions {
            let key = (t.topic.0.to_string(), p.partition_index);
            let Some((_, f)) = ready.iter().find(|(k, _)| **k == key) else { continue };
            let part = &f.partition;
            match p.error_code {
                0 => {}
                c if c == ResponseError::OffsetOutOfRange.code() => {
                    any_error = true;
                    reset_out_of_range(part, p.log_start_offset, p.high_watermark).await;
                    continue;
                }
                c => {
                    any_error = true;
                    tracing::debug!(topic = %key.0, partition = key.1, error_code = c, "leader refused a replica fetch");
                    continue;
                }
            }
            let records = p.records.unwrap_or_default();
            if !records.is_empty() {
                let headers = match validate_batches(&records) {
                    Ok(h) => h,
                    Err(e) => {
                        any_error = true;
                        tracing::error!(topic = %key.0, partition = key.1, error = ?e, "leader sent batches that do not validate");
                        continue;
                    }
                };
                match part.append_replicated(BytesMut::from(&records[..]), &headers).await {
                    Ok(r) => appended.push((part.clone(), r.last_offset + 1)),
                    Err(e) => {
                        any_error = true;
                        tracing::warn!(topic = %key.0, partition = key.1, error = ?e, "replica append failed");
                        continue;
                    }
                }
            }
            part.set_leader_high_watermark(p.high_watermark.min(part.log().log_end_offset()));
        }
    }
    // Durable before the next fetch reports these offsets to the leader.
    let syncs: Vec<_> = appended
        .iter()
        .map(|(p, end)| {
            let p = p.clone();
            let end = *end;
            glommio::spawn_local(async move { (p.log().wait_durable(end).await, p) })
        })
        .collect();
    for s in syncs {
        let (result, p) = s.await;
        if let Err(e) = result {
            any_error = true;
            tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "replica fdatasync failed");
        }
    }
    Ok(any_error && appended.is_empty())
}

/// The leader has no data at our log end: below its log start, restart at
/// it (Kafka's truncateFullyAndStartAt); past its end (cannot happen after
/// epoch truncation, but a leader's log may have been lost), cut to its
/// high watermark.
async fn reset_out_of_range(part: &Rc<Partition>, leader_log_start: i64, leader_hw: i64) {
    let log = part.log();
    let end = log.log_end_offset();
    let result = if leader_log_start >= 0 && end < leader_log_start {
        tracing::warn!(topic = %part.topic, partition = part.partition, from = end, to = leader_log_start, "replica below the leader's log start: starting over there");
        log.truncate_fully(leader_log_start).await
    } else if leader_hw >= 0 && end > leader_hw {
        tracing::warn!(topic = %part.topic, partition = part.partition, from = end, to = leader_hw, "replica past the leader's end: truncating to its high watermark");
        log.truncate_to(leader_hw).await.map(|_| ())
    } else {
        Ok(())
    };
    match result {
        Ok(()) => part.rebuild_state_after_truncation(),
        Err(e) => tracing::error!(topic = %part.topic, partition = part.partition, error = %e, "replica reset failed"),
    }
}
