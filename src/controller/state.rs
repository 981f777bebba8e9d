//! The controller's state machine logic, free of Raft and I/O: the commands
//! that go through the Raft log, how each one changes `ClusterMetadata`
//! (deterministically, so every replica computes the same result), and the
//! planning done before a command is proposed (validation, replica
//! placement, fresh topic ids).
//!
//! Runs on the controller thread only. Randomness (topic ids, cluster id)
//! and placement happen while planning, on the leader; `apply` only
//! re-checks what can have changed since (a name taken, a topic gone) and
//! copies the planned values in.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::election::{self, AlterPartition, AlterPartitionError};
use super::topic_config;
use crate::metadata::{
    validate_topic_name, BrokerMeta, ClusterMetadata, ControllerError, CreateTopicRequest, NodeId,
    PartitionMeta, ReplicaPlacement, ShardId, TopicMeta,
};

/// The most partitions one topic may have; a bound, not a Kafka rule.
pub const TOPIC_PARTITIONS_MAX: i32 = 100_000;

/// A metadata change, as stored in the Raft log. Everything random or
/// placement-dependent is decided before proposing and carried in here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set the cluster id once; ignored if one is already set.
    InitCluster { cluster_id: String },
    /// Add or update a broker (a heartbeat of a new incarnation, or of a fenced broker).
    RegisterBroker(BrokerMeta),
    /// Fence a broker (missed heartbeats, controlled shutdown), only if it is
    /// still the incarnation the controller saw.
    FenceBroker { node_id: NodeId, incarnation: Uuid },
    /// Create fully planned topics (ids and placement chosen by the proposer).
    CreateTopics(Vec<TopicMeta>),
    /// Remove topics by name, each only if it still has the given id.
    DeleteTopics(Vec<(String, Uuid)>),
    /// Append planned partitions to a topic that has exactly `current` partitions.
    CreatePartitions {
        topic: String,
        topic_id: Uuid,
        current: i32,
        added: Vec<PartitionMeta>,
    },
    /// Set (Some) or remove (None) topic config overrides.
    AlterTopicConfigs {
        topic: String,
        topic_id: Uuid,
        changes: BTreeMap<String, Option<String>>,
    },
    /// Hand out producer ids `[start, start + count)`; `start` must be the
    /// current `next_producer_id` (planned by the proposer).
    AllocateProducerIds { start: i64, count: i64 },
    /// A partition leader's ISR change (checked by `election::alter_partition`).
    AlterPartition(AlterPartition),
    /// Preferred leader election for these partitions (all when None).
    ElectPreferredLeaders { partitions: Option<Vec<(String, i32)>> },
    /// Forget a broker (Kafka's UnregisterBroker, `kafka-cluster.sh
    /// unregister`): a live one is fenced first (its partitions elect new
    /// leaders), then its registration is removed. Its replicas stay in the
    /// partitions' replica sets; a broker that is still running registers
    /// again with its next heartbeat.
    UnregisterBroker { node_id: NodeId },
}

/// Why `apply` refused (part of) a command: the state changed between
/// planning and commit. Serializable because it travels in Raft responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    TopicAlreadyExists(String),
    UnknownTopic(String),
    InvalidPartitions(String),
    /// The state moved on between planning and commit (e.g. producer ids).
    Stale(String),
    AlterPartition(AlterPartitionError),
    BrokerNotRegistered(String),
}

impl From<Rejection> for ControllerError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::TopicAlreadyExists(m) => ControllerError::TopicAlreadyExists(m),
            Rejection::UnknownTopic(m) => ControllerError::UnknownTopic(m),
            Rejection::InvalidPartitions(m) => ControllerError::InvalidPartitions(m),
            Rejection::Stale(m) => ControllerError::Unavailable(m),
            Rejection::AlterPartition(e) => ControllerError::AlterPartition(e),
            Rejection::BrokerNotRegistered(m) => ControllerError::BrokerNotRegistered(m),
        }
    }
}

/// The answer to one applied command: one outcome per item (per topic for
/// CreateTopics/DeleteTopics, exactly one otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    pub outcomes: Vec<Result<(), Rejection>>,
}

/// The error given to every entry of a request that names the same topic
/// twice. Kafka answers INVALID_REQUEST; `ControllerError` has no such
/// variant, so this is `InvalidConfig` (one place to change it).
fn duplicate_error(name: &str) -> ControllerError {
    ControllerError::InvalidConfig(format!("Duplicate topic name in request: {name}"))
}

/// Kafka treats '.' and '_' as the same character when checking for collisions
/// (metric names would clash).
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Applies a leader's blank entry: the proposer of the entry is the controller.
pub fn apply_leader_change(meta: &mut ClusterMetadata, leader: NodeId) -> bool {
    if meta.controller_id == leader {
        return false;
    }
    meta.controller_id = leader;
    meta.version += 1;
    true
}

/// Applies one committed command. Deterministic: same state + same command
/// gives the same result on every replica. The version increments by one if
/// anything changed.
pub fn apply_command(meta: &mut ClusterMetadata, cmd: &Command) -> CommandResponse {
    let mut changed = false;
    let outcomes = match cmd {
        Command::InitCluster { cluster_id } => {
            if meta.cluster_id.is_empty() {
                meta.cluster_id = cluster_id.clone();
                changed = true;
            }
            vec![Ok(())]
        }
        Command::RegisterBroker(b) => {
            let before = meta.brokers.get(&b.node_id).cloned();
            if before.as_ref() != Some(b) {
                // A broker that comes back (unfenced, or a new process) starts a new
                // leadership of its partitions, as a leader change does in Kafka.
                let new_incarnation = before.as_ref().is_some_and(|old| old.incarnation != b.incarnation);
                meta.brokers.insert(b.node_id, b.clone());
                if !b.fenced {
                    election::on_broker_unfenced(meta, b.node_id, new_incarnation);
                }
                changed = true;
            }
            vec![Ok(())]
        }
        Command::FenceBroker { node_id, incarnation } => {
            if let Some(b) = meta.brokers.get_mut(node_id) {
                if b.incarnation == *incarnation && !b.fenced {
                    b.fenced = true;
                    // Its partitions get a new leader from their ISR, or none.
                    election::on_broker_fenced(meta, *node_id);
                    changed = true;
                }
            }
            vec![Ok(())]
        }
        Command::UnregisterBroker { node_id } => match meta.brokers.get(node_id).map(|b| b.fenced) {
            None => vec![Err(Rejection::BrokerNotRegistered(format!("Broker ID {node_id} is not currently registered")))],
            Some(fenced) => {
                if !fenced {
                    if let Some(b) = meta.brokers.get_mut(node_id) {
                        b.fenced = true;
                    }
                    election::on_broker_fenced(meta, *node_id);
                }
                meta.brokers.remove(node_id);
                changed = true;
                vec![Ok(())]
            }
        },
        Command::CreateTopics(topics) => topics
            .iter()
            .map(|t| {
                if meta.topics.contains_key(&t.name) || meta.topic_by_id(t.id).is_some() {
                    return Err(Rejection::TopicAlreadyExists(format!(
                        "Topic '{}' already exists.",
                        t.name
                    )));
                }
                meta.topics.insert(t.name.clone(), t.clone());
                changed = true;
                Ok(())
            })
            .collect(),
        Command::DeleteTopics(names) => names
            .iter()
            .map(|(name, id)| match meta.topics.get(name) {
                Some(t) if t.id == *id => {
                    meta.topics.remove(name);
                    changed = true;
                    Ok(())
                }
                _ => Err(unknown_topic(name)),
            })
            .collect(),
        Command::CreatePartitions {
            topic,
            topic_id,
            current,
            added,
        } => {
            vec![
                apply_create_partitions(meta, topic, *topic_id, *current, added).map(|()| {
                    changed = true;
                }),
            ]
        }
        Command::AlterTopicConfigs {
            topic,
            topic_id,
            changes,
        } => {
            let outcome = match meta.topics.get_mut(topic) {
                Some(t) if t.id == *topic_id => {
                    for (k, v) in changes {
                        match v {
                            Some(v) => t.configs.insert(k.clone(), v.clone()),
                            None => t.configs.remove(k),
                        };
                    }
                    changed = true;
                    Ok(())
                }
                _ => Err(unknown_topic(topic)),
            };
            vec![outcome]
        }
        Command::AllocateProducerIds { start, count } => {
            let outcome = if *start == meta.next_producer_id && *count > 0 {
                meta.next_producer_id = start.saturating_add(*count);
                changed = true;
                Ok(())
            } else {
                Err(Rejection::Stale(format!(
                    "producer id block {start}+{count} does not start at {}",
                    meta.next_producer_id
                )))
            };
            vec![outcome]
        }
        Command::AlterPartition(req) => {
            let outcome = election::alter_partition(meta, req).map_err(Rejection::AlterPartition);
            changed = outcome.is_ok();
            vec![outcome]
        }
        Command::ElectPreferredLeaders { partitions } => {
            changed = election::elect_preferred(meta, partitions.as_deref()) > 0;
            vec![Ok(())]
        }
    };
    if changed {
        meta.version += 1;
    }
    CommandResponse { outcomes }
}

fn unknown_topic(name: &str) -> Rejection {
    Rejection::UnknownTopic(format!(
        "This server does not host this topic-partition: {name}"
    ))
}

fn apply_create_partitions(
    meta: &mut ClusterMetadata,
    topic: &str,
    topic_id: Uuid,
    current: i32,
    added: &[PartitionMeta],
) -> Result<(), Rejection> {
    let t = match meta.topics.get_mut(topic) {
        Some(t) if t.id == topic_id => t,
        _ => return Err(unknown_topic(topic)),
    };
    if usize::try_from(current).ok() != Some(t.partitions.len()) {
        return Err(Rejection::InvalidPartitions(format!(
            "Topic {topic} changed while adding partitions: it has {} partitions, expected {current}.",
            t.partitions.len()
        )));
    }
    let numbered = added
        .iter()
        .enumerate()
        .all(|(i, p)| usize::try_from(p.partition).ok() == Some(t.partitions.len() + i));
    if !numbered {
        return Err(Rejection::InvalidPartitions(format!(
            "Planned partitions of {topic} are not numbered from {current}."
        )));
    }
    t.partitions.extend_from_slice(added);
    Ok(())
}

/// Replica counts used to place new replicas, built from the current
/// metadata and updated as a plan assigns more.
pub struct Placer {
    /// Replicas per (broker, shard), for every shard of every registered broker.
    replicas: BTreeMap<(NodeId, ShardId), usize>,
    /// Leaders per broker, to spread leadership when counts tie.
    leaders: BTreeMap<NodeId, usize>,
    /// `broker.rack` of the brokers that set one.
    racks: BTreeMap<NodeId, String>,
    /// Replicas and leaders per broker of the topic being placed (`start_topic`):
    /// a topic is striped over the brokers first, so a new empty broker does
    /// not take all of the next topic; total load then picks the shard.
    topic_replicas: BTreeMap<NodeId, usize>,
    topic_leaders: BTreeMap<NodeId, usize>,
}

impl Placer {
    pub fn new(meta: &ClusterMetadata) -> Placer {
        let mut replicas = BTreeMap::new();
        let mut leaders = BTreeMap::new();
        // Fenced brokers get no new replicas.
        for b in meta.live_brokers() {
            leaders.insert(b.node_id, 0);
            for shard in 0..b.shard_count {
                replicas.insert((b.node_id, shard), 0);
            }
        }
        for t in meta.topics.values() {
            for p in &t.partitions {
                // Replicas on shards that no longer exist still count nowhere: they
                // are a move the operator must make, not load on a live shard.
                for r in &p.replicas {
                    if let Some(n) = replicas.get_mut(&(r.node_id, r.shard)) {
                        *n += 1;
                    }
                }
                if let Some(n) = leaders.get_mut(&p.leader.node_id) {
                    *n += 1;
                }
            }
        }
        let racks = meta.live_brokers().filter_map(|b| Some((b.node_id, b.rack.clone()?))).collect();
        Placer { replicas, leaders, racks, topic_replicas: BTreeMap::new(), topic_leaders: BTreeMap::new() }
    }

    /// Brokers that have at least one shard.
    pub fn broker_count(&self) -> usize {
        self.replicas
            .keys()
            .map(|(node, _)| *node)
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Places one partition on the brokers of a manual assignment (Kafka's
    /// checks: at least one, no broker twice, every one registered and live,
    /// as many as the first partition has), each replica on the least-loaded
    /// shard of its broker; the first is the leader.
    pub fn place_on(&mut self, meta: &ClusterMetadata, partition: i32, brokers: &[NodeId]) -> Result<PartitionMeta, ControllerError> {
        let bad = |m: String| ControllerError::InvalidReplicaAssignment(m);
        if brokers.is_empty() {
            return Err(bad(format!("The manual partition assignment includes a partition with no replicas: partition {partition}.")));
        }
        if brokers.iter().collect::<BTreeSet<_>>().len() != brokers.len() {
            return Err(bad(format!("The manual partition assignment includes the partition {partition} with duplicate replicas {brokers:?}.")));
        }
        if let Some(missing) = brokers.iter().find(|b| meta.live_broker(**b).is_none()) {
            return Err(bad(format!(
                "The manual partition assignment includes broker {missing}, but no such broker is registered."
            )));
        }
        let mut chosen = Vec::with_capacity(brokers.len());
        for node in brokers {
            let slot = self
                .replicas
                .iter()
                .filter(|((n, _), _)| n == node)
                .min_by_key(|((_, shard), count)| (**count, *shard))
                .map(|(k, _)| *k)
                .ok_or_else(|| bad(format!("broker {node} has no shards")))?;
            if let Some(n) = self.replicas.get_mut(&slot) {
                *n += 1;
            }
            chosen.push(ReplicaPlacement { node_id: slot.0, shard: slot.1 });
        }
        let leader = chosen[0];
        if let Some(n) = self.leaders.get_mut(&leader.node_id) {
            *n += 1;
        }
        for r in &chosen {
            *self.topic_replicas.entry(r.node_id).or_default() += 1;
        }
        *self.topic_leaders.entry(leader.node_id).or_default() += 1;
        Ok(PartitionMeta { partition, leader, leader_epoch: 0, isr: chosen.iter().map(|r| r.node_id).collect(), replicas: chosen, partition_epoch: 0 })
    }

    /// Starts placing the partitions of one topic, counting those it already
    /// has (`existing`, for CreatePartitions).
    pub fn start_topic(&mut self, existing: &[PartitionMeta]) {
        self.topic_replicas.clear();
        self.topic_leaders.clear();
        for p in existing {
            for r in &p.replicas {
                *self.topic_replicas.entry(r.node_id).or_default() += 1;
            }
            *self.topic_leaders.entry(p.leader.node_id).or_default() += 1;
        }
    }

    /// Places one partition with `rf` replicas on distinct brokers: each
    /// replica on the broker with the fewest replicas of this topic (the
    /// first replica: the fewest leaders of this topic), then the
    /// least-loaded shard overall; ties go to the broker with fewer leaders
    /// (first replica only), then lowest node id, then lowest shard.
    pub fn place(&mut self, partition: i32, rf: usize) -> Option<PartitionMeta> {
        let mut chosen: Vec<ReplicaPlacement> = Vec::with_capacity(rf);
        for i in 0..rf {
            // Rack awareness: while some broker sits on a rack this partition
            // does not use yet, only such brokers are candidates.
            let used_racks: BTreeSet<&String> = chosen.iter().filter_map(|c| self.racks.get(&c.node_id)).collect();
            let fresh_rack = |node: &NodeId| self.racks.get(node).is_some_and(|r| !used_racks.contains(r));
            let any_fresh_rack = self
                .replicas
                .keys()
                .any(|(node, _)| !chosen.iter().any(|c| c.node_id == *node) && fresh_rack(node));
            let slot = self
                .replicas
                .iter()
                .filter(|((node, _), _)| !chosen.iter().any(|c| c.node_id == *node))
                .filter(|((node, _), _)| !any_fresh_rack || fresh_rack(node))
                .min_by_key(|((node, shard), count)| {
                    let (topic_share, leaders) = if i == 0 {
                        (
                            self.topic_leaders.get(node).copied().unwrap_or(0),
                            self.leaders.get(node).copied().unwrap_or(0),
                        )
                    } else {
                        (self.topic_replicas.get(node).copied().unwrap_or(0), 0)
                    };
                    (topic_share, **count, leaders, *node, *shard)
                })
                .map(|(k, _)| *k)?;
            if let Some(n) = self.replicas.get_mut(&slot) {
                *n += 1;
            }
            *self.topic_replicas.entry(slot.0).or_default() += 1;
            chosen.push(ReplicaPlacement {
                node_id: slot.0,
                shard: slot.1,
            });
        }
        let leader = *chosen.first()?;
        if let Some(n) = self.leaders.get_mut(&leader.node_id) {
            *n += 1;
        }
        *self.topic_leaders.entry(leader.node_id).or_default() += 1;
        // Every assigned replica starts in sync (all are empty), as in Kafka.
        Some(PartitionMeta {
            partition,
            leader,
            leader_epoch: 0,
            isr: chosen.iter().map(|r| r.node_id).collect(),
            partition_epoch: 0,
            replicas: chosen,
        })
    }
}

fn new_topic_id() -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if !id.is_nil() {
            return id;
        }
    }
}

fn check_partition_count(n: i32) -> Result<(), ControllerError> {
    if n < 1 {
        return Err(ControllerError::InvalidPartitions(
            "Number of partitions must be larger than 0.".into(),
        ));
    }
    if n > TOPIC_PARTITIONS_MAX {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions {n} is larger than the maximum {TOPIC_PARTITIONS_MAX}."
        )));
    }
    Ok(())
}

/// Validates and plans a CreateTopics request against `meta`: one result per
/// entry, in input order. Successful entries are complete `TopicMeta`s
/// (fresh id, placement) ready to go into `Command::CreateTopics`.
pub fn plan_create_topics(
    meta: &ClusterMetadata,
    reqs: &[CreateTopicRequest],
) -> Vec<Result<TopicMeta, ControllerError>> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reqs {
        *seen.entry(r.name.as_str()).or_default() += 1;
    }
    let mut existing_keys: BTreeMap<String, String> = meta
        .topics
        .keys()
        .map(|n| (collision_key(n), n.clone()))
        .collect();
    let mut placer = Placer::new(meta);
    reqs.iter()
        .map(|r| {
            if seen.get(r.name.as_str()).copied().unwrap_or(0) > 1 {
                return Err(duplicate_error(&r.name));
            }
            let topic = plan_one_topic(meta, &existing_keys, &mut placer, r)?;
            existing_keys.insert(collision_key(&topic.name), topic.name.clone());
            Ok(topic)
        })
        .collect()
}

fn plan_one_topic(
    meta: &ClusterMetadata,
    existing_keys: &BTreeMap<String, String>,
    placer: &mut Placer,
    r: &CreateTopicRequest,
) -> Result<TopicMeta, ControllerError> {
    validate_topic_name(&r.name)?;
    if meta.topics.contains_key(&r.name) {
        return Err(ControllerError::TopicAlreadyExists(format!(
            "Topic '{}' already exists.",
            r.name
        )));
    }
    if let Some(other) = existing_keys.get(&collision_key(&r.name)) {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic '{}' collides with existing topic: {other}",
            r.name
        )));
    }
    check_partition_count(r.partitions)?;
    placer.start_topic(&[]);
    if !r.assignments.is_empty() {
        let rf = r.assignments[0].len();
        if r.assignments.iter().any(|a| a.len() != rf) {
            return Err(ControllerError::InvalidReplicaAssignment(
                "All partitions in the manual partition assignment should have the same number of replicas.".into(),
            ));
        }
        topic_config::validate_all(&r.configs)?;
        let partitions = (0..r.partitions)
            .zip(&r.assignments)
            .map(|(p, brokers)| placer.place_on(meta, p, brokers))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(TopicMeta {
            name: r.name.clone(),
            id: new_topic_id(),
            partitions,
            configs: r.configs.clone(),
            internal: r.internal,
        });
    }
    if r.replication_factor < 1 {
        return Err(ControllerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0.".into(),
        ));
    }
    let rf = r.replication_factor as usize;
    let brokers = placer.broker_count();
    if rf > brokers {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} \
             cannot be reached because only {brokers} broker(s) are registered."
        )));
    }
    topic_config::validate_all(&r.configs)?;
    let partitions = (0..r.partitions)
        .map(|p| placer.place(p, rf))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            ControllerError::Unavailable("no broker shard to place replicas on".into())
        })?;
    Ok(TopicMeta {
        name: r.name.clone(),
        id: new_topic_id(),
        partitions,
        configs: r.configs.clone(),
        internal: r.internal,
    })
}

/// Validates a DeleteTopics request; successful entries carry the topic id.
pub fn plan_delete_topics(
    meta: &ClusterMetadata,
    names: &[String],
) -> Vec<Result<Uuid, ControllerError>> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for n in names {
        *seen.entry(n.as_str()).or_default() += 1;
    }
    names
        .iter()
        .map(|n| {
            if seen.get(n.as_str()).copied().unwrap_or(0) > 1 {
                return Err(duplicate_error(n));
            }
            meta.topic(n)
                .map(|t| t.id)
                .ok_or_else(|| unknown_topic(n).into())
        })
        .collect()
}

/// Validates and plans growing `topic` to `new_total` partitions.
pub fn plan_create_partitions(
    meta: &ClusterMetadata,
    topic: &str,
    new_total: i32,
) -> Result<Command, ControllerError> {
    let t = meta
        .topic(topic)
        .ok_or_else(|| ControllerError::from(unknown_topic(topic)))?;
    let current = i32::try_from(t.partitions.len())
        .map_err(|_| ControllerError::InvalidPartitions("topic has too many partitions".into()))?;
    if new_total == current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic already has {current} partitions."
        )));
    }
    if new_total < current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic currently has {current} partitions, which is higher than the requested {new_total}."
        )));
    }
    check_partition_count(new_total)?;
    let rf = t
        .partitions
        .first()
        .map(|p| p.replicas.len())
        .unwrap_or(1)
        .max(1);
    let mut placer = Placer::new(meta);
    if rf > placer.broker_count() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): only {} broker(s) are registered.",
            placer.broker_count()
        )));
    }
    placer.start_topic(&t.partitions);
    let added = (current..new_total)
        .map(|p| placer.place(p, rf))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            ControllerError::Unavailable("no broker shard to place replicas on".into())
        })?;
    Ok(Command::CreatePartitions {
        topic: topic.to_string(),
        topic_id: t.id,
        current,
        added,
    })
}

/// Validates config changes for `topic` (each set value on its own, each
/// removed name known, then the merged set) and plans the command.
/// Producer ids one `allocate_producer_ids` call may ask for (Kafka's blocks are 1000).
pub const PRODUCER_ID_BLOCK_MAX: i64 = 1_000_000;

/// Plans a block of `count` producer ids starting at the next free one.
pub fn plan_allocate_producer_ids(meta: &ClusterMetadata, count: i64) -> Result<Command, ControllerError> {
    if !(1..=PRODUCER_ID_BLOCK_MAX).contains(&count) {
        return Err(ControllerError::InvalidConfig(format!(
            "producer id block size {count} is not in 1..={PRODUCER_ID_BLOCK_MAX}"
        )));
    }
    if meta.next_producer_id > i64::MAX - count {
        return Err(ControllerError::Unavailable("producer ids are exhausted".into()));
    }
    Ok(Command::AllocateProducerIds { start: meta.next_producer_id, count })
}

pub fn plan_alter_topic_configs(
    meta: &ClusterMetadata,
    topic: &str,
    changes: BTreeMap<String, Option<String>>,
) -> Result<Command, ControllerError> {
    let t = meta
        .topic(topic)
        .ok_or_else(|| ControllerError::from(unknown_topic(topic)))?;
    let mut merged = t.configs.clone();
    for (k, v) in &changes {
        match v {
            Some(v) => {
                topic_config::validate(k, v)?;
                merged.insert(k.clone(), v.clone());
            }
            None => {
                if topic_config::find(k).is_none() {
                    return Err(ControllerError::InvalidConfig(format!(
                        "Unknown topic config name: {k}"
                    )));
                }
                merged.remove(k);
            }
        }
    }
    topic_config::validate_all(&merged)?;
    Ok(Command::AlterTopicConfigs {
        topic: topic.to_string(),
        topic_id: t.id,
        changes,
    })
}

/// A Kafka-style cluster id: the 16 bytes of a random UUID in unpadded
/// base64url (22 characters).
pub fn new_cluster_id() -> String {
    base64url_nopad(Uuid::new_v4().as_bytes())
}

fn base64url_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(node_id: NodeId, shard_count: usize) -> BrokerMeta {
        BrokerMeta {
            node_id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            shard_count,
            listeners: Vec::new(),
            incarnation: Uuid::nil(),
            fenced: false,
        }
    }

    fn req(name: &str, partitions: i32, rf: i16) -> CreateTopicRequest {
        CreateTopicRequest {
            name: name.into(),
            partitions,
            replication_factor: rf,
            configs: BTreeMap::new(),
            internal: false,
            assignments: Vec::new(),
        }
    }

    fn with_brokers(brokers: &[(NodeId, usize)]) -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        for (id, shards) in brokers {
            apply_command(&mut m, &Command::RegisterBroker(broker(*id, *shards)));
        }
        m
    }

    /// base64url encoding matches known vectors and cluster ids are 22 url-safe chars.
    #[test]
    fn cluster_id_format() {
        assert_eq!(base64url_nopad(b""), "");
        assert_eq!(base64url_nopad(b"f"), "Zg");
        assert_eq!(base64url_nopad(b"fo"), "Zm8");
        assert_eq!(base64url_nopad(b"foo"), "Zm9v");
        assert_eq!(base64url_nopad(&[0xfb, 0xff]), "-_8");
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    /// Two brokers with RF 2: replicas of a partition are on distinct brokers
    /// and leadership alternates between the brokers.
    #[test]
    fn rf2_uses_distinct_brokers_and_spreads_leaders() {
        let m = with_brokers(&[(1, 2), (2, 2)]);
        let plan = plan_create_topics(&m, &[req("t", 4, 2)]);
        let t = plan[0].as_ref().expect("planned");
        let mut leaders = BTreeMap::new();
        for p in &t.partitions {
            assert_eq!(p.replicas.len(), 2);
            assert_ne!(p.replicas[0].node_id, p.replicas[1].node_id);
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.isr, p.replicas.iter().map(|r| r.node_id).collect::<Vec<_>>(), "every replica starts in sync");
            *leaders.entry(p.leader.node_id).or_insert(0) += 1;
        }
        assert_eq!(leaders.get(&1), Some(&2));
        assert_eq!(leaders.get(&2), Some(&2));
    }

    /// apply rejects a create whose name was taken after planning, and a
    /// delete or partition growth whose topic id no longer matches.
    #[test]
    fn apply_rechecks_state() {
        let mut m = with_brokers(&[(1, 1)]);
        let t = plan_create_topics(&m, &[req("a", 1, 1)])
            .remove(0)
            .expect("planned");
        let v0 = m.version;
        let r = apply_command(&mut m, &Command::CreateTopics(vec![t.clone()]));
        assert_eq!(r.outcomes, vec![Ok(())]);
        assert_eq!(m.version, v0 + 1);
        let r = apply_command(&mut m, &Command::CreateTopics(vec![t.clone()]));
        assert!(matches!(
            r.outcomes[0],
            Err(Rejection::TopicAlreadyExists(_))
        ));
        assert_eq!(m.version, v0 + 1, "a rejected command changes nothing");
        let r = apply_command(
            &mut m,
            &Command::DeleteTopics(vec![("a".into(), Uuid::new_v4())]),
        );
        assert!(matches!(r.outcomes[0], Err(Rejection::UnknownTopic(_))));
        let cmd = plan_create_partitions(&m, "a", 3).expect("planned");
        let r = apply_command(&mut m, &cmd);
        assert_eq!(r.outcomes, vec![Ok(())]);
        let r = apply_command(&mut m, &cmd);
        assert!(matches!(
            r.outcomes[0],
            Err(Rejection::InvalidPartitions(_))
        ));
        assert_eq!(m.topic("a").map(|t| t.partitions.len()), Some(3));
    }

    /// A new topic is striped over the brokers even when one broker is new
    /// and empty (it does not take every partition), and a fenced broker
    /// gets none.
    #[test]
    fn new_topics_stripe_over_brokers_and_skip_fenced_ones() {
        let mut m = with_brokers(&[(1, 1), (2, 1)]);
        let old = plan_create_topics(&m, &[req("old", 8, 1)]).remove(0).expect("planned");
        apply_command(&mut m, &Command::CreateTopics(vec![old]));
        apply_command(&mut m, &Command::RegisterBroker(broker(3, 1)));
        let t = plan_create_topics(&m, &[req("new", 6, 1)]).remove(0).expect("planned");
        let mut per_broker = BTreeMap::new();
        for p in &t.partitions {
            *per_broker.entry(p.leader.node_id).or_insert(0) += 1;
        }
        assert_eq!(per_broker, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        apply_command(&mut m, &Command::FenceBroker { node_id: 3, incarnation: Uuid::nil() });
        let t = plan_create_topics(&m, &[req("after-fence", 4, 1)]).remove(0).expect("planned");
        assert!(t.partitions.iter().all(|p| p.leader.node_id != 3), "a fenced broker gets no replicas");
        assert!(matches!(
            plan_create_topics(&m, &[req("rf3", 1, 3)]).remove(0),
            Err(ControllerError::InvalidReplicationFactor(_))
        ));
    }

    /// UnregisterBroker of a live leader moves its leadership away first,
    /// then forgets it; an unknown id is refused.
    #[test]
    fn unregister_broker_fences_then_forgets_and_refuses_unknown_ids() {
        let mut m = with_brokers(&[(1, 1), (2, 1)]);
        let t = plan_create_topics(&m, &[req("t", 4, 2)]).remove(0).expect("planned");
        apply_command(&mut m, &Command::CreateTopics(vec![t]));
        let r = apply_command(&mut m, &Command::UnregisterBroker { node_id: 2 });
        assert_eq!(r.outcomes, vec![Ok(())]);
        assert!(!m.brokers.contains_key(&2));
        let t = m.topic("t").expect("topic");
        assert!(t.partitions.iter().all(|p| p.leader.node_id == 1 && p.isr == vec![1]), "{:?}", t.partitions);
        let r = apply_command(&mut m, &Command::UnregisterBroker { node_id: 2 });
        assert!(matches!(&r.outcomes[0], Err(Rejection::BrokerNotRegistered(_))));
    }

    /// Racks: no two replicas of a partition on one rack while unused racks remain.
    #[test]
    fn rack_aware_placement() {
        let mut m = ClusterMetadata::default();
        for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "c")] {
            let b = BrokerMeta { rack: Some(rack.into()), ..broker(id, 1) };
            apply_command(&mut m, &Command::RegisterBroker(b));
        }
        let t = plan_create_topics(&m, &[req("r", 8, 3)]).remove(0).expect("planned");
        for p in &t.partitions {
            let racks: BTreeSet<String> =
                p.replicas.iter().map(|r| m.brokers[&r.node_id].rack.clone().unwrap_or_default()).collect();
            assert_eq!(racks.len(), 3, "three racks for three replicas: {:?}", p.replicas);
        }
    }

    /// Names that differ only by '.' and '_' collide, as in Kafka.
    #[test]
    fn dot_underscore_collision() {
        let m = with_brokers(&[(1, 1)]);
        let plan = plan_create_topics(&m, &[req("a.b", 1, 1), req("a_b", 1, 1)]);
        assert!(plan[0].is_ok());
        assert!(matches!(plan[1], Err(ControllerError::InvalidTopic(_))));
    }
}
