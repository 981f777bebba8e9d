//! Partition leadership and ISR rules of the controller's state machine
//! (KRaft's `PartitionChangeBuilder` in spirit): who leads when a broker is
//! fenced or comes back, how an AlterPartition from a leader is checked, and
//! preferred-leader election.
//!
//! Pure functions over `ClusterMetadata`, applied on every controller node
//! in log order, so they must be deterministic. Every leader change bumps the
//! leader epoch; every leader or ISR change bumps the partition epoch.
//!
//! Invariants (asserted in release builds): the ISR is never empty, holds
//! only assigned replicas, and contains the leader whenever there is one;
//! a partition without a live ISR member has leader -1 and keeps its last
//! ISR member, so that replica leads again when it returns (never a replica
//! outside the ISR, unless the topic allows unclean election).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::{ClusterMetadata, NodeId, PartitionMeta, ReplicaPlacement};

/// No leader (every ISR member is fenced).
pub const NO_LEADER: NodeId = -1;

/// Why an AlterPartition was refused; each is one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlterPartitionError {
    UnknownTopicOrPartition,
    /// The sender is not the leader, or leads an older epoch (FENCED_LEADER_EPOCH).
    FencedLeaderEpoch,
    /// The partition changed since the leader read it (INVALID_UPDATE_VERSION).
    InvalidUpdateVersion,
    /// A proposed member is fenced or not a replica (INELIGIBLE_REPLICA).
    IneligibleReplica,
    /// The new ISR is empty or leaves the leader out (INVALID_REQUEST).
    InvalidRequest,
}

impl AlterPartitionError {
    pub fn code(&self) -> i16 {
        match self {
            AlterPartitionError::UnknownTopicOrPartition => 3,
            AlterPartitionError::FencedLeaderEpoch => 74,
            AlterPartitionError::InvalidUpdateVersion => 95,
            AlterPartitionError::IneligibleReplica => 107,
            AlterPartitionError::InvalidRequest => 42,
        }
    }
}

/// An ISR change a partition leader asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_id: NodeId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<NodeId>,
}

fn live(meta: &ClusterMetadata, node: NodeId) -> bool {
    meta.brokers.get(&node).is_some_and(|b| !b.fenced)
}

fn unclean_allowed(configs: &std::collections::BTreeMap<String, String>) -> bool {
    configs.get("unclean.leader.election.enable").is_some_and(|v| v.trim() == "true")
}

fn check(p: &PartitionMeta) {
    assert!(!p.isr.is_empty(), "partition {} has an empty ISR", p.partition);
    assert!(
        p.isr.iter().all(|n| p.replicas.iter().any(|r| r.node_id == *n)),
        "partition {} ISR {:?} holds a non-replica",
        p.partition,
        p.isr
    );
    assert!(
        p.leader.node_id == NO_LEADER || p.isr.contains(&p.leader.node_id),
        "partition {} leader {} outside ISR {:?}",
        p.partition,
        p.leader.node_id,
        p.isr
    );
}

fn set_leader(p: &mut PartitionMeta, node: NodeId) {
    p.leader = match p.replicas.iter().find(|r| r.node_id == node) {
        Some(r) => *r,
        None => ReplicaPlacement { node_id: NO_LEADER, shard: 0 },
    };
    p.leader_epoch = p.leader_epoch.saturating_add(1);
}

/// Broker `node` was fenced (session timeout or controlled shutdown): it
/// leaves every ISR it is in (unless it is the last member), and the
/// partitions it led get a new leader from the ISR, or none. Returns whether
/// anything changed.
pub fn on_broker_fenced(meta: &mut ClusterMetadata, node: NodeId) -> bool {
    let live_nodes: Vec<NodeId> = meta.brokers.values().filter(|b| !b.fenced && b.node_id != node).map(|b| b.node_id).collect();
    let is_live = |n: NodeId| live_nodes.contains(&n);
    let mut changed = false;
    for t in meta.topics.values_mut() {
        let unclean = unclean_allowed(&t.configs);
        for p in &mut t.partitions {
            let before = (p.leader, p.leader_epoch, p.isr.clone());
            if p.isr.len() > 1 {
                p.isr.retain(|n| *n != node);
            }
            if p.leader.node_id == node {
                let from_isr = p.replicas.iter().map(|r| r.node_id).find(|n| *n != node && p.isr.contains(n) && is_live(*n));
                match from_isr {
                    Some(n) => set_leader(p, n),
                    None if unclean => match p.replicas.iter().map(|r| r.node_id).find(|n| is_live(*n)) {
                        Some(n) => {
                            p.isr = vec![n];
                            set_leader(p, n);
                        }
                        None => set_leader(p, NO_LEADER),
                    },
                    None => set_leader(p, NO_LEADER),
                }
            }
            if before != (p.leader, p.leader_epoch, p.isr.clone()) {
                p.partition_epoch = p.partition_epoch.saturating_add(1);
                changed = true;
            }
            check(p);
        }
    }
    changed
}

/// Broker `node` is live again (unfenced, or a new process): partitions
/// without a leader whose ISR holds it get it as leader; partitions it still
/// leads (it restarted within its session) start a new leader epoch, since
/// the new process has none of the old one's follower state.
pub fn on_broker_unfenced(meta: &mut ClusterMetadata, node: NodeId, new_incarnation: bool) -> bool {
    let mut changed = false;
    for t in meta.topics.values_mut() {
        for p in &mut t.partitions {
            let leaderless = p.leader.node_id == NO_LEADER && p.isr.contains(&node);
            let restarted_leader = new_incarnation && p.leader.node_id == node;
            if leaderless || restarted_leader {
                set_leader(p, node);
                p.partition_epoch = p.partition_epoch.saturating_add(1);
                changed = true;
            }
            check(p);
        }
    }
    changed
}

/// Checks and applies a leader's ISR change, with Kafka's fencing: the
/// sender must lead the current leader epoch and have read the current
/// partition epoch; members it adds must be live replicas.
pub fn alter_partition(meta: &mut ClusterMetadata, req: &AlterPartition) -> Result<(), AlterPartitionError> {
    let live_nodes: Vec<NodeId> = meta.brokers.values().filter(|b| !b.fenced).map(|b| b.node_id).collect();
    let t = match meta.topics.get_mut(&req.topic) {
        Some(t) if t.id == req.topic_id => t,
        _ => return Err(AlterPartitionError::UnknownTopicOrPartition),
    };
    let p = usize::try_from(req.partition)
        .ok()
        .and_then(|i| t.partitions.get_mut(i))
        .ok_or(AlterPartitionError::UnknownTopicOrPartition)?;
    if p.leader.node_id != req.leader_id || p.leader_epoch != req.leader_epoch {
        return Err(AlterPartitionError::FencedLeaderEpoch);
    }
    if p.partition_epoch != req.partition_epoch {
        return Err(AlterPartitionError::InvalidUpdateVersion);
    }
    if req.new_isr.is_empty() || !req.new_isr.contains(&req.leader_id) {
        return Err(AlterPartitionError::InvalidRequest);
    }
    let eligible = |n: &NodeId| p.isr.contains(n) || (live_nodes.contains(n) && p.replicas.iter().any(|r| r.node_id == *n));
    if !req.new_isr.iter().all(eligible) {
        return Err(AlterPartitionError::IneligibleReplica);
    }
    // Keep the replicas' order: the ISR reads the same on every node.
    let new_isr: Vec<NodeId> = p.replicas.iter().map(|r| r.node_id).filter(|n| req.new_isr.contains(n)).collect();
    if new_isr != p.isr {
        p.isr = new_isr;
        p.partition_epoch = p.partition_epoch.saturating_add(1);
    }
    check(p);
    Ok(())
}

/// Preferred leader election for the named partitions (all when None):
/// the first assigned replica leads if it is live, in the ISR and not the
/// leader already. Returns how many partitions changed leader.
pub fn elect_preferred(meta: &mut ClusterMetadata, only: Option<&[(String, i32)]>) -> usize {
    let live_nodes: Vec<NodeId> = meta.brokers.values().filter(|b| !b.fenced).map(|b| b.node_id).collect();
    let mut moved = 0;
    for t in meta.topics.values_mut() {
        for p in &mut t.partitions {
            if only.is_some_and(|o| !o.iter().any(|(n, i)| *n == t.name && *i == p.partition)) {
                continue;
            }
            let Some(preferred) = p.replicas.first().map(|r| r.node_id) else { continue };
            if p.leader.node_id != preferred && p.isr.contains(&preferred) && live_nodes.contains(&preferred) {
                set_leader(p, preferred);
                p.partition_epoch = p.partition_epoch.saturating_add(1);
                moved += 1;
            }
            check(p);
        }
    }
    moved
}

/// Partitions whose leader is not their preferred replica although the
/// preferred one could lead (for `auto.leader.rebalance.enable`).
pub fn imbalanced(meta: &ClusterMetadata) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in meta.topics.values() {
        for p in &t.partitions {
            if let Some(pref) = p.replicas.first() {
                if p.leader.node_id != pref.node_id && p.isr.contains(&pref.node_id) && live(meta, pref.node_id) {
                    out.push((t.name.clone(), p.partition));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{BrokerMeta, TopicMeta};

    fn broker(id: NodeId) -> BrokerMeta {
        BrokerMeta {
            node_id: id,
            host: "h".into(),
            port: 1,
            rack: None,
            shard_count: 1,
            listeners: Vec::new(),
            incarnation: Uuid::nil(),
            fenced: false,
        }
    }

    /// Three brokers and topic "t" with one partition on [1, 2, 3], led by 1.
    fn cluster(configs: &[(&str, &str)]) -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        for id in 1..=3 {
            m.brokers.insert(id, broker(id));
        }
        let replicas: Vec<ReplicaPlacement> = (1..=3).map(|n| ReplicaPlacement { node_id: n, shard: 0 }).collect();
        m.topics.insert(
            "t".into(),
            TopicMeta {
                name: "t".into(),
                id: Uuid::from_u128(7),
                partitions: vec![PartitionMeta { partition: 0, leader: replicas[0], leader_epoch: 0, isr: vec![1, 2, 3], replicas, partition_epoch: 0 }],
                configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                internal: false,
            },
        );
        m
    }

    fn fence(m: &mut ClusterMetadata, id: NodeId) {
        m.brokers.get_mut(&id).unwrap().fenced = true;
        on_broker_fenced(m, id);
    }

    fn p(m: &ClusterMetadata) -> &PartitionMeta {
        &m.topics["t"].partitions[0]
    }

    #[test]
    fn fencing_the_leader_elects_from_the_isr_and_bumps_epochs() {
        // Proves a fenced leader is replaced by the next live ISR member in replica order, leaves the ISR, and both epochs move.
        let mut m = cluster(&[]);
        fence(&mut m, 1);
        assert_eq!((p(&m).leader.node_id, p(&m).leader_epoch, p(&m).isr.clone()), (2, 1, vec![2, 3]));
        assert_eq!(p(&m).partition_epoch, 1);
        // A follower's fencing only shrinks the ISR.
        fence(&mut m, 3);
        assert_eq!((p(&m).leader.node_id, p(&m).leader_epoch, p(&m).isr.clone()), (2, 1, vec![2]));
    }

    #[test]
    fn the_last_isr_member_is_kept_and_leads_again_when_it_returns() {
        // Proves a partition whose whole ISR is fenced has no leader, never elects an out-of-sync replica (unclean election off), and the last ISR member leads again when unfenced.
        let mut m = cluster(&[]);
        fence(&mut m, 2);
        fence(&mut m, 3);
        fence(&mut m, 1);
        assert_eq!(p(&m).leader.node_id, NO_LEADER);
        assert_eq!(p(&m).isr, vec![1]);
        m.brokers.get_mut(&2).unwrap().fenced = false;
        on_broker_unfenced(&mut m, 2, false);
        assert_eq!(p(&m).leader.node_id, NO_LEADER, "2 is not in the ISR");
        m.brokers.get_mut(&1).unwrap().fenced = false;
        on_broker_unfenced(&mut m, 1, false);
        assert_eq!(p(&m).leader.node_id, 1);
        assert!(p(&m).leader_epoch >= 2);
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr() {
        // Proves unclean.leader.election.enable=true elects a live out-of-sync replica rather than leave the partition offline.
        let mut m = cluster(&[("unclean.leader.election.enable", "true")]);
        fence(&mut m, 2);
        fence(&mut m, 3);
        m.brokers.get_mut(&3).unwrap().fenced = false;
        fence(&mut m, 1);
        assert_eq!((p(&m).leader.node_id, p(&m).isr.clone()), (3, vec![3]));
    }

    #[test]
    fn alter_partition_is_fenced_by_leader_and_partition_epoch() {
        // Proves AlterPartition needs the current leader, leader epoch and partition epoch, keeps the leader in the ISR, takes only live replicas, and bumps the partition epoch.
        let mut m = cluster(&[]);
        let req = |leader_id, leader_epoch, partition_epoch, new_isr: Vec<NodeId>| AlterPartition {
            topic: "t".into(),
            topic_id: Uuid::from_u128(7),
            partition: 0,
            leader_id,
            leader_epoch,
            partition_epoch,
            new_isr,
        };
        assert_eq!(alter_partition(&mut m, &req(2, 0, 0, vec![2])), Err(AlterPartitionError::FencedLeaderEpoch));
        assert_eq!(alter_partition(&mut m, &req(1, 0, 5, vec![1])), Err(AlterPartitionError::InvalidUpdateVersion));
        assert_eq!(alter_partition(&mut m, &req(1, 0, 0, vec![2])), Err(AlterPartitionError::InvalidRequest));
        assert_eq!(alter_partition(&mut m, &req(1, 0, 0, vec![3, 1])), Ok(()));
        assert_eq!((p(&m).isr.clone(), p(&m).partition_epoch), (vec![1, 3], 1));
        m.brokers.get_mut(&2).unwrap().fenced = true;
        assert_eq!(alter_partition(&mut m, &req(1, 0, 1, vec![1, 2, 3])), Err(AlterPartitionError::IneligibleReplica));
    }

    #[test]
    fn preferred_election_moves_leadership_back() {
        // Proves preferred leader election gives leadership back to the first replica once it is live and in the ISR, and that imbalance is reported until then.
        let mut m = cluster(&[]);
        fence(&mut m, 1);
        assert_eq!(p(&m).leader.node_id, 2);
        m.brokers.get_mut(&1).unwrap().fenced = false;
        on_broker_unfenced(&mut m, 1, true);
        assert!(imbalanced(&m).is_empty(), "1 is not back in the ISR yet");
        assert_eq!(elect_preferred(&mut m, None), 0);
        m.topics.get_mut("t").unwrap().partitions[0].isr = vec![1, 2, 3];
        assert_eq!(imbalanced(&m), vec![("t".to_string(), 0)]);
        assert_eq!(elect_preferred(&mut m, None), 1);
        assert_eq!(p(&m).leader.node_id, 1);
    }
}
