//! Replication between brokers, Kafka's way on the wire.
//!
//! | file | owns |
//! |---|---|
//! | `fetcher.rs` | one follower fetcher per (leader broker, local shard): OffsetForLeaderEpoch truncation, then Fetch with `replica_id`, append, fdatasync, high watermark |
//! | this file | starting fetchers as metadata arrives, proposing ISR changes to the controller, the ISR shrink tick and the high watermark checkpoints |
//!
//! Per shard: fetchers, ticks and proposals run on the shard that owns the
//! replicas they serve and touch only that shard's partitions (leader-side
//! progress lives in `partition::replica`).

pub mod fetcher;

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use crate::controller::election::AlterPartition;
use crate::metadata::NodeId;
use crate::partition::replica::{IsrChange, Role};
use crate::partition::Partition;
use crate::shard::ShardState;

/// The fetchers running on one shard, by leader broker.
#[derive(Default)]
pub struct Fetchers {
    running: RefCell<HashSet<NodeId>>,
}

impl Fetchers {
    /// Starts a fetcher for every leader some local follower replica
    /// follows and that has none yet. A fetcher stops by itself once no
    /// local replica follows its leader.
    pub fn ensure(shard: &Rc<ShardState>) {
        let mut leaders: HashSet<NodeId> = HashSet::new();
        for p in shard.partitions.all() {
            if let Role::Follower { leader, .. } = p.role() {
                if leader >= 0 && leader != shard.config.node_id {
                    leaders.insert(leader);
                }
            }
        }
        for leader in leaders {
            if shard.fetchers.running.borrow_mut().insert(leader) {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    fetcher::run(shard.clone(), leader).await;
                    shard.fetchers.running.borrow_mut().remove(&leader);
                })
                .detach();
            }
        }
    }
}

/// Sends a leader's ISR change to the controller in the background; the
/// new ISR takes effect when the metadata comes back (`apply_metadata`).
pub fn propose_isr_change(shard: &Rc<ShardState>, partition: &Rc<Partition>, change: IsrChange) {
    let req = AlterPartition {
        topic: partition.topic.clone(),
        topic_id: partition.topic_id,
        partition: partition.partition,
        leader_id: shard.config.node_id,
        leader_epoch: change.leader_epoch,
        partition_epoch: change.partition_epoch,
        new_isr: change.new_isr,
    };
    let shard = shard.clone();
    let partition = partition.clone();
    glommio::spawn_local(async move {
        tracing::info!(topic = %req.topic, partition = req.partition, new_isr = ?req.new_isr, "proposing ISR change");
        match shard.controller.alter_partition(req).await {
            Ok(()) => {}
            Err(e) => {
                tracing::info!(topic = %partition.topic, partition = partition.partition, error = %e, "ISR change refused");
                partition.isr_change_done();
            }
        }
    })
    .detach();
}

/// Every quarter of `replica.lag.time.max.ms` (at most 1 s): each led
/// partition drops ISR members that stopped keeping up.
pub async fn isr_shrink_loop(shard: Rc<ShardState>) {
    let lag_max = Duration::from_millis(shard.config.replica_lag_time_max_ms);
    let tick = (lag_max / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let checkpoint_every = Duration::from_millis(shard.config.replica_high_watermark_checkpoint_interval_ms);
    let mut last_checkpoint = std::time::Instant::now();
    loop {
        let slept = async {
            glommio::timer::sleep(tick).await;
            true
        };
        let stop = async {
            shard.shutdown.wait().await;
            false
        };
        if !futures_lite::future::or(slept, stop).await {
            return;
        }
        for p in shard.partitions.all() {
            if let Some(change) = p.isr_shrink(lag_max) {
                tracing::warn!(topic = %p.topic, partition = p.partition, new_isr = ?change.new_isr, "shrinking ISR: a follower fell behind");
                propose_isr_change(&shard, &p, change);
            }
        }
        if last_checkpoint.elapsed() >= checkpoint_every {
            last_checkpoint = std::time::Instant::now();
            for p in shard.partitions.all() {
                p.checkpoint_high_watermark().await;
            }
        }
    }
}
