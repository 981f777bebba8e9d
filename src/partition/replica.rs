//! The replica's role: leader (tracks its followers' progress, computes the
//! high watermark, proposes ISR changes) or follower (appends what its
//! fetcher brings, keeps the leader's high watermark).
//!
//! Kafka's rules, in Fjord's stronger form: a follower fetches offset N only
//! after everything below N is fdatasync'ed on it (see
//! `replication::fetcher`), so a follower's fetch offset is a durable
//! position, and the high watermark — the lowest log end in the ISR — is
//! durable on every in-sync follower. acks=all waits for the leader's own
//! fdatasync and for the high watermark.
//!
//! Same shard as the partition; `RefCell`s never borrowed across `.await`.
//! Invariants (release builds): log start <= high watermark <= log end;
//! the high watermark never goes back while the replica leads.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{Partition, PartitionError};
use crate::metadata::{NodeId, PartitionMeta};
use crate::storage::log::txn_scan::{control_type, ControlType};
use crate::storage::{AppendResult, BatchHeader};

/// What the leader knows of one follower, Kafka's `Replica` state.
#[derive(Debug, Clone, Copy)]
pub struct FollowerProgress {
    /// The follower's log end (its last fetch offset); -1 until it fetches.
    pub log_end: i64,
    /// Last time the follower was caught up with the leader's log end.
    pub last_caught_up: Instant,
    last_fetch: Instant,
    leader_end_at_last_fetch: i64,
}

#[derive(Debug, Clone)]
pub enum Role {
    Leader {
        epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
        replicas: Vec<NodeId>,
        followers: HashMap<NodeId, FollowerProgress>,
        /// An AlterPartition is on its way to the controller; no other until
        /// it is answered or new metadata arrives.
        isr_change_in_flight: bool,
    },
    Follower {
        /// -1 when the partition has no leader.
        leader: NodeId,
        epoch: i32,
    },
}

/// What a metadata update changed for this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    /// Leads `epoch` now (new leadership, or a new epoch of it).
    BecameLeader { epoch: i32 },
    /// Follows `leader` in `epoch` now; the fetcher truncates first.
    BecameFollower { leader: NodeId, epoch: i32 },
    /// Still leader, same epoch, new ISR or partition epoch.
    IsrChanged,
}

/// An ISR change the leader wants the controller to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<NodeId>,
}

/// Kafka's `replication-offset-checkpoint`, one per partition directory
/// here (a replica may move between shards; its directory goes with it).
pub const HW_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";

/// The checkpointed high watermark of the log in `dir`, if any.
pub fn read_hw_checkpoint(dir: &std::path::Path) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(HW_CHECKPOINT_FILE)).ok()?;
    let mut lines = text.lines();
    (lines.next()? == "0").then_some(())?;
    lines.next()?.trim().parse::<i64>().ok().filter(|hw| *hw >= 0)
}

impl Partition {
    /// Writes the high watermark checkpoint if it moved since the last one
    /// (every `replica.high.watermark.checkpoint.interval.ms` and at close),
    /// on the blocking pool. A leader that restarts starts from it instead of
    /// the log start, so consumers and ListOffsets see committed data at once.
    pub async fn checkpoint_high_watermark(&self) {
        self.checkpoint_high_watermark_with(true).await
    }

    /// As `checkpoint_high_watermark`; with `durable` false the caller
    /// syncs the file system afterwards (clean shutdown).
    pub(super) async fn checkpoint_high_watermark_with(&self, durable: bool) {
        let hw = self.high_watermark();
        if self.hw_checkpointed.get() == hw {
            return;
        }
        let path = self.log.dir().join(HW_CHECKPOINT_FILE);
        let text = format!("0\n{hw}\n");
        let written = glommio::executor()
            .spawn_blocking(move || crate::storage::index::write_file(&path, text.as_bytes(), durable))
            .await;
        match written {
            Ok(()) => self.hw_checkpointed.set(hw),
            Err(e) => tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "high watermark checkpoint failed"),
        }
    }

    /// Follows the controller's view of this partition. A role or epoch
    /// change takes effect synchronously here (a deposed leader refuses
    /// appends from this point); the caller does the asynchronous part.
    pub fn apply_metadata(&self, meta: &PartitionMeta, me: NodeId) -> Transition {
        let mut role = self.role.borrow_mut();
        let leads = meta.leader.node_id == me;
        let transition = match (&mut *role, leads) {
            (Role::Leader { epoch, partition_epoch, isr, replicas, isr_change_in_flight, .. }, true) if *epoch == meta.leader_epoch => {
                let replicas_now: Vec<NodeId> = meta.replicas.iter().map(|r| r.node_id).collect();
                if *partition_epoch != meta.partition_epoch || *isr != meta.isr || *replicas != replicas_now {
                    use crate::metrics::PartitionStats;
                    if meta.isr.len() < isr.len() {
                        PartitionStats::add(&self.stats.isr_shrinks, 1);
                    } else if meta.isr.len() > isr.len() {
                        PartitionStats::add(&self.stats.isr_expands, 1);
                    }
                    *partition_epoch = meta.partition_epoch;
                    *isr = meta.isr.clone();
                    *replicas = replicas_now;
                    *isr_change_in_flight = false;
                    Transition::IsrChanged
                } else {
                    Transition::Unchanged
                }
            }
            (Role::Follower { leader, epoch }, false) if *leader == meta.leader.node_id && *epoch == meta.leader_epoch => Transition::Unchanged,
            (_, true) => Transition::BecameLeader { epoch: meta.leader_epoch },
            (_, false) => Transition::BecameFollower { leader: meta.leader.node_id, epoch: meta.leader_epoch },
        };
        match transition {
            Transition::BecameLeader { epoch } => {
                let now = Instant::now();
                // Kafka: ISR members count as caught up at the start of a leadership.
                let followers = meta
                    .replicas
                    .iter()
                    .filter(|r| r.node_id != me)
                    .map(|r| (r.node_id, FollowerProgress { log_end: -1, last_caught_up: now, last_fetch: now, leader_end_at_last_fetch: -1 }))
                    .collect();
                *role = Role::Leader {
                    epoch,
                    partition_epoch: meta.partition_epoch,
                    isr: meta.isr.clone(),
                    replicas: meta.replicas.iter().map(|r| r.node_id).collect(),
                    followers,
                    isr_change_in_flight: false,
                };
                self.log.set_accepts_leader_appends(true);
            }
            Transition::BecameFollower { leader, epoch } => {
                *role = Role::Follower { leader, epoch };
                self.log.set_accepts_leader_appends(false);
            }
            Transition::Unchanged | Transition::IsrChanged => {}
        }
        drop(role);
        self.set_leader_epoch(meta.leader_epoch);
        if transition != Transition::Unchanged {
            // Waiters re-check: acks=all on a deposed leader fails, HW may move.
            self.wake_waiters();
        }
        transition
    }

    pub fn is_leader(&self) -> bool {
        matches!(&*self.role.borrow(), Role::Leader { .. })
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// The ISR as this leader knows it (empty on a follower).
    pub fn isr(&self) -> Vec<NodeId> {
        match &*self.role.borrow() {
            Role::Leader { isr, .. } => isr.clone(),
            Role::Follower { .. } => Vec::new(),
        }
    }

    /// Leader: the lowest log end of the ISR (its own is what reached the
    /// kernel); followers that have not fetched yet hold it where it was.
    /// Follower: the leader's high watermark, capped by its own log end.
    pub fn high_watermark(&self) -> i64 {
        let written = self.log.written_end_offset();
        let kept = self.hw.get();
        let hw = match &*self.role.borrow() {
            Role::Leader { isr, followers, .. } => {
                let mut hw = written;
                for n in isr {
                    match followers.get(n) {
                        Some(f) if f.log_end >= 0 => hw = hw.min(f.log_end),
                        Some(_) => hw = hw.min(kept),
                        None => {} // the leader itself
                    }
                }
                hw.max(kept).min(written)
            }
            Role::Follower { .. } => kept.min(written),
        };
        let hw = hw.max(self.log.log_start_offset());
        self.hw.set(hw);
        hw
    }

    /// On the leader, a follower's fetch from `fetch_offset` in
    /// `leader_epoch`: records its progress (Kafka's caught-up rule: at the
    /// leader's log end now, or at the end the leader had at its previous
    /// fetch) and wakes waiters if the high watermark moved. Returns the
    /// ISR expansion to propose, if this follower now qualifies.
    pub fn on_follower_fetch(&self, follower: NodeId, fetch_offset: i64) -> Result<Option<IsrChange>, PartitionError> {
        let hw_before = self.high_watermark();
        let leader_end = self.log.written_end_offset();
        let change = {
            let mut role = self.role.borrow_mut();
            let Role::Leader { epoch, partition_epoch, isr, followers, isr_change_in_flight, .. } = &mut *role else {
                return Err(PartitionError::NotHere);
            };
            let Some(f) = followers.get_mut(&follower) else {
                return Err(PartitionError::NotHere);
            };
            let now = Instant::now();
            if fetch_offset >= leader_end {
                f.last_caught_up = now;
            } else if f.leader_end_at_last_fetch >= 0 && fetch_offset >= f.leader_end_at_last_fetch {
                f.last_caught_up = f.last_caught_up.max(f.last_fetch);
            }
            f.log_end = fetch_offset.min(leader_end);
            f.last_fetch = now;
            f.leader_end_at_last_fetch = leader_end;
            // Kafka's rule to rejoin: caught up to the high watermark, and
            // holding this leadership's first offset.
            let epoch_start = self.log.end_offset_for_epoch(epoch.saturating_sub(1)).1;
            let qualifies = !isr.contains(&follower) && f.log_end >= hw_before && f.log_end >= epoch_start.max(0);
            if qualifies && !*isr_change_in_flight {
                *isr_change_in_flight = true;
                let mut new_isr = isr.clone();
                new_isr.push(follower);
                Some(IsrChange { leader_epoch: *epoch, partition_epoch: *partition_epoch, new_isr })
            } else {
                None
            }
        };
        if self.high_watermark() != hw_before {
            self.wake_waiters();
        }
        Ok(change)
    }

    /// On the leader: the ISR shrink to propose, if a member has not been
    /// caught up for `lag_max`.
    pub fn isr_shrink(&self, lag_max: Duration) -> Option<IsrChange> {
        let mut role = self.role.borrow_mut();
        let Role::Leader { epoch, partition_epoch, isr, followers, isr_change_in_flight, .. } = &mut *role else {
            return None;
        };
        if *isr_change_in_flight {
            return None;
        }
        let now = Instant::now();
        let leader_end = self.log.written_end_offset();
        let lagging: Vec<NodeId> = isr
            .iter()
            .filter(|n| followers.get(n).is_some_and(|f| f.log_end < leader_end && now.duration_since(f.last_caught_up) > lag_max))
            .copied()
            .collect();
        if lagging.is_empty() {
            return None;
        }
        *isr_change_in_flight = true;
        Some(IsrChange {
            leader_epoch: *epoch,
            partition_epoch: *partition_epoch,
            new_isr: isr.iter().filter(|n| !lagging.contains(n)).copied().collect(),
        })
    }

    /// The controller refused or did not answer an ISR change: allow the next.
    pub fn isr_change_done(&self) {
        if let Role::Leader { isr_change_in_flight, .. } = &mut *self.role.borrow_mut() {
            *isr_change_in_flight = false;
        }
    }

    /// On a follower: the leader's high watermark from a fetch response.
    pub fn set_leader_high_watermark(&self, hw: i64) {
        let before = self.high_watermark();
        if hw > self.hw.get() {
            self.hw.set(hw);
        }
        if self.high_watermark() != before {
            self.wake_waiters();
        }
    }

    /// A follower's append of batches fetched from the leader, byte for
    /// byte; producer and transaction state follow, so this replica can
    /// dedupe and serve read_committed when it leads.
    pub async fn append_replicated(&self, batches: BytesMut, headers: &[BatchHeader]) -> Result<AppendResult, PartitionError> {
        if self.is_leader() {
            return Err(PartitionError::NotHere);
        }
        let controls: Vec<Option<ControlType>> = {
            let mut pos = 0usize;
            headers
                .iter()
                .map(|h| {
                    let body = &batches[pos + BatchHeader::SIZE..pos + h.total_size()];
                    pos += h.total_size();
                    h.is_control().then(|| control_type(body))
                })
                .collect()
        };
        let result = self.log.append_replica(batches, headers).await?;
        let mut producers = self.producers.borrow_mut();
        let mut txns = self.txns.borrow_mut();
        for (h, control) in headers.iter().zip(controls) {
            if h.producer_id < 0 {
                continue;
            }
            producers.recover_batch(h);
            if h.is_transactional() {
                match control {
                    None => txns.on_data(h.producer_id, h.base_offset),
                    Some(ControlType::Commit) => txns.on_marker(h.producer_id, true, h.base_offset),
                    Some(ControlType::Abort) => txns.on_marker(h.producer_id, false, h.base_offset),
                    Some(ControlType::Other) => {}
                }
            }
        }
        Ok(result)
    }

    /// After a truncation: producer and transaction state are rebuilt from
    /// what the log holds now.
    pub fn rebuild_state_after_truncation(&self) {
        let config = self.producers.borrow().config();
        let rebuilt = super::idempotent::recover_producer_states(&self.log, config);
        let rebuilt = rebuilt.replace(super::producer_state::ProducerStates::new(config));
        *self.producers.borrow_mut() = rebuilt;
        *self.txns.borrow_mut() = super::txn::TxnIndex::recover(&self.log);
        let end = self.log.log_end_offset();
        if self.hw.get() > end {
            self.hw.set(end);
        }
    }

    /// acks=all: resolves once the high watermark covers `end_offset`;
    /// fails if this replica stops leading or at `deadline`.
    pub async fn wait_replicated(&self, end_offset: i64, deadline: Instant) -> Result<(), PartitionError> {
        loop {
            if !self.is_leader() {
                return Err(PartitionError::NotHere);
            }
            if self.high_watermark() >= end_offset {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PartitionError::ReplicationTimeout);
            }
            let slice = deadline.min(Instant::now() + super::WAIT_SLICE);
            self.wait_for_change(slice).await;
        }
    }
}
