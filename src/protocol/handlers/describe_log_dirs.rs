//! DescribeLogDirs (key 35): this broker's one log dir (the data dir) with
//! the size of every replica it holds, from all shards; v4 adds the file
//! system's total and usable bytes. What `kafka-log-dirs.sh` and the
//! AdminClient's `describeLogDirs` (kafka-ui's disk usage) read.
//!
//! A null topic list means every replica, an empty one none, as in Kafka.
//! `offset_lag` is Kafka's: how far the replica's log end is behind the
//! high watermark (0 on a leader).

use std::collections::{BTreeMap, HashMap, HashSet};

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::ResponseError;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 4;

/// (topic, partition, size in bytes, offset lag) of one replica.
type ReplicaSize = (String, i32, i64, i64);

pub async fn handle(ctx: &RequestContext, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted: Option<HashMap<String, HashSet<i32>>> = req
        .topics
        .map(|ts| ts.into_iter().map(|t| (t.topic.0.to_string(), t.partitions.into_iter().collect())).collect());
    let mut replicas: Vec<ReplicaSize> = Vec::new();
    let mut error = 0;
    for shard in 0..ctx.shard.mesh.shard_count() {
        let sizes = ctx
            .shard
            .mesh
            .call(shard, |s| async move {
                s.partitions
                    .all()
                    .iter()
                    .map(|p| {
                        let log = p.log();
                        let lag = (p.high_watermark() - log.log_end_offset()).max(0);
                        (p.topic.clone(), p.partition, log.size_bytes() as i64, lag)
                    })
                    .collect::<Vec<ReplicaSize>>()
            })
            .await;
        match sizes {
            Ok(s) => replicas.extend(s),
            Err(_) => error = ResponseError::KafkaStorageError.code(),
        }
    }
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (topic, partition, size, lag) in replicas {
        if let Some(w) = &wanted {
            if !w.get(&topic).is_some_and(|ps| ps.contains(&partition)) {
                continue;
            }
        }
        by_topic.entry(topic).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition)
                .with_partition_size(size)
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default().with_name(TopicName(StrBytes::from_string(name))).with_partitions(partitions)
        })
        .collect();
    let dir = std::path::absolute(&ctx.shard.config.data_dir).unwrap_or_else(|_| ctx.shard.config.data_dir.clone());
    let (total, usable) = disk_space(dir.clone()).await.unwrap_or((-1, -1));
    let result = DescribeLogDirsResult::default()
        .with_error_code(error)
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    DescribeLogDirsResponse::default().with_error_code(0).with_results(vec![result])
}

/// (total, usable) bytes of the file system holding `dir`, from statvfs on
/// the blocking pool (a stat of a slow or remote file system must not stall
/// the shard).
async fn disk_space(dir: std::path::PathBuf) -> Option<(i64, i64)> {
    glommio::executor()
        .spawn_blocking(move || {
            let s = nix::sys::statvfs::statvfs(&dir).ok()?;
            let frag = s.fragment_size() as i64;
            Some((s.blocks() as i64 * frag, s.blocks_available() as i64 * frag))
        })
        .await
}
