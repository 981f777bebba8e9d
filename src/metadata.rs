//! Cluster metadata: the versioned, immutable snapshot that the controller
//! publishes to every shard (topics, partitions, their placement on
//! (broker, shard), topic configs, brokers).
//!
//! Built and owned by the controller thread (`controller/`); every shard holds
//! an `Arc<ClusterMetadata>` it received by message and only reads it. Nothing
//! here does I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub type NodeId = i32;
pub type ShardId = usize;

/// Where one partition replica lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaPlacement {
    pub node_id: NodeId,
    pub shard: ShardId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub partition: i32,
    /// The leader's placement; replicas[0] in single-replica topics.
    pub leader: ReplicaPlacement,
    pub leader_epoch: i32,
    pub replicas: Vec<ReplicaPlacement>,
    pub isr: Vec<NodeId>,
    /// Bumped by every leader or ISR change (AlterPartition's fencing).
    #[serde(default)]
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    /// Index = partition number.
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level config overrides only (what the user set); broker defaults are not copied in.
    pub configs: BTreeMap<String, String>,
    /// Internal topics (`__consumer_offsets`, `__transaction_state`).
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub node_id: NodeId,
    /// Advertised Kafka address of the default listener.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub shard_count: usize,
    /// Every advertised listener (name, host, port); the first is the default.
    /// Empty in metadata written before named listeners: `host`/`port` then stand alone.
    #[serde(default)]
    pub listeners: Vec<ListenerEndpoint>,
    /// A fresh id per process start: a heartbeat from an older process of the
    /// same node id is told apart from the running one.
    #[serde(default)]
    pub incarnation: Uuid,
    /// Fenced by the controller (missed heartbeats or controlled shutdown):
    /// not in Metadata's brokers, leads nothing, gets no new replicas.
    #[serde(default)]
    pub fenced: bool,
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl BrokerMeta {
    /// The address clients that came in on `listener` are told to use, or
    /// None when this broker has no listener of that name (Kafka leaves such
    /// brokers out of the answer).
    pub fn endpoint(&self, listener: &str) -> Option<(&str, i32)> {
        if self.listeners.is_empty() {
            return Some((self.host.as_str(), self.port));
        }
        self.listeners
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(listener))
            .map(|l| (l.host.as_str(), l.port))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Increases by one with every applied change; shards ignore older snapshots.
    pub version: u64,
    pub cluster_id: String,
    pub controller_id: NodeId,
    pub brokers: BTreeMap<NodeId, BrokerMeta>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// The first producer id not yet handed out in a block
    /// (`ControllerHandle::allocate_producer_ids`); ids are never reused.
    #[serde(default)]
    pub next_producer_id: i64,
}

impl ClusterMetadata {
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.id == id)
    }

    /// A registered broker that is not fenced.
    pub fn live_broker(&self, node_id: NodeId) -> Option<&BrokerMeta> {
        self.brokers.get(&node_id).filter(|b| !b.fenced)
    }

    /// The controller id clients are told (Metadata, DescribeCluster): the
    /// active controller when it is a live broker, else a live broker (any
    /// broker forwards controller writes; a controller-only node is not
    /// reachable by clients, so Kafka also answers with a broker here).
    pub fn client_controller_id(&self) -> NodeId {
        if self.live_broker(self.controller_id).is_some() {
            return self.controller_id;
        }
        self.live_brokers().next().map_or(-1, |b| b.node_id)
    }

    /// Registered brokers that are not fenced, by node id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerMeta> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionMeta> {
        let t = self.topics.get(topic)?;
        usize::try_from(partition).ok().and_then(|p| t.partitions.get(p))
    }
}

pub type MetadataSnapshot = Arc<ClusterMetadata>;

/// What a CreateTopics entry asks of the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicRequest {
    pub name: String,
    /// Already defaulted by the caller (`num.partitions` when the client sent -1).
    pub partitions: i32,
    /// Already defaulted by the caller (`default.replication.factor` when -1).
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
    /// CreateTopics' manual assignment: the broker ids of each partition's
    /// replicas (index = partition, the first id is the preferred leader);
    /// empty: the controller places replicas itself.
    #[serde(default)]
    pub assignments: Vec<Vec<NodeId>>,
}

/// Errors of metadata changes. Each maps to exactly one Kafka error code in
/// `crate::error`. Serializable: they travel back to a forwarding broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerError {
    TopicAlreadyExists(String),
    UnknownTopic(String),
    InvalidTopic(String),
    InvalidPartitions(String),
    InvalidReplicationFactor(String),
    /// A manual replica assignment Kafka would refuse (INVALID_REPLICA_ASSIGNMENT).
    InvalidReplicaAssignment(String),
    InvalidConfig(String),
    /// This node is not the controller leader (multi-node, later).
    NotController,
    /// The controller could not commit (storage failure, shutting down).
    Unavailable(String),
    /// An AlterPartition refused by the controller's fencing rules.
    AlterPartition(crate::controller::election::AlterPartitionError),
    /// UnregisterBroker of a node id that is not registered.
    BrokerNotRegistered(String),
}

impl std::fmt::Display for ControllerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControllerError::TopicAlreadyExists(m) => write!(f, "topic already exists: {m}"),
            ControllerError::UnknownTopic(m) => write!(f, "unknown topic: {m}"),
            ControllerError::InvalidTopic(m) => write!(f, "invalid topic: {m}"),
            ControllerError::InvalidPartitions(m) => write!(f, "invalid partitions: {m}"),
            ControllerError::InvalidReplicationFactor(m) => {
                write!(f, "invalid replication factor: {m}")
            }
            ControllerError::InvalidReplicaAssignment(m) => write!(f, "invalid replica assignment: {m}"),
            ControllerError::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            ControllerError::NotController => write!(f, "not the controller"),
            ControllerError::Unavailable(m) => write!(f, "controller unavailable: {m}"),
            ControllerError::AlterPartition(e) => write!(f, "AlterPartition refused: {e:?}"),
            ControllerError::BrokerNotRegistered(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ControllerError {}

/// Kafka's topic name rule: 1..=249 chars of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    if name.is_empty() {
        return Err(ControllerError::InvalidTopic("topic name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(ControllerError::InvalidTopic(format!("topic name cannot be '{name}'")));
    }
    if name.len() > 249 {
        return Err(ControllerError::InvalidTopic(format!(
            "topic name is {} characters, the maximum is 249",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(ControllerError::InvalidTopic(format!(
            "topic name '{name}' contains '{c}': only ASCII letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Topic names follow Kafka's legal-character and length rules.
    #[test]
    fn topic_name_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(".").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
