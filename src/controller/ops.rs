//! What a node asks of the active controller, and what it answers: one
//! serializable enum each, so the same request is handled locally on the
//! active controller or forwarded to it over the controller RPC from any
//! other node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::{BrokerMeta, ControllerError, CreateTopicRequest, NodeId, TopicMeta};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    CreateTopics {
        reqs: Vec<CreateTopicRequest>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topic: String,
        new_total: i32,
        validate_only: bool,
    },
    AlterTopicConfigs {
        topic: String,
        changes: BTreeMap<String, Option<String>>,
        validate_only: bool,
    },
    /// Hand out a block of `count` producer ids; answers the first.
    AllocateProducerIds { count: i64 },
    /// A broker is alive: registers it (or re-registers a new incarnation, or
    /// unfences it) and restarts its session timer.
    Heartbeat(Heartbeat),
    /// A broker is stopping (SIGTERM): fence it now rather than after its
    /// session times out.
    ControlledShutdown { node_id: NodeId, incarnation: Uuid },
    /// Take a snapshot now and purge the log behind it (on the node asked; never forwarded).
    Snapshot,
    /// A partition leader shrinks or expands its ISR.
    AlterPartition(crate::controller::election::AlterPartition),
    /// Preferred leader election (ElectLeaders, or the automatic rebalance);
    /// None: every partition.
    ElectPreferredLeaders { partitions: Option<Vec<(String, i32)>> },
    /// The Raft quorum as the active controller sees it (DescribeQuorum).
    DescribeQuorum,
    /// Forget a broker's registration (UnregisterBroker).
    UnregisterBroker { node_id: NodeId },
}

/// The metadata quorum as the active controller sees it, in Kafka's
/// DescribeQuorum terms: offsets are Raft log indexes + 1 (the next entry),
/// the epoch is the Raft term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub leader_id: NodeId,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<QuorumReplica>,
    /// Learners: broker-only nodes that receive the metadata log.
    pub observers: Vec<QuorumReplica>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumReplica {
    pub node_id: NodeId,
    /// HOST:PORT of its controller listener, if known.
    pub addr: Option<String>,
    /// -1: unknown (not replicated to yet).
    pub log_end_offset: i64,
    /// Unix ms; -1: unknown.
    pub last_fetch_timestamp_ms: i64,
    pub last_caught_up_timestamp_ms: i64,
}

/// A broker's heartbeat: everything it registers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// `fenced` is ignored: a heartbeat is a request to be unfenced.
    pub broker: BrokerMeta,
    /// The node's controller RPC address, so the controller can add a
    /// broker-only node to the Raft group as a learner (it then receives the
    /// metadata log like the voters). None in single-node mode.
    pub controller_addr: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OpResult {
    Topics(Vec<Result<TopicMeta, ControllerError>>),
    Deleted(Vec<Result<Uuid, ControllerError>>),
    Done(Result<(), ControllerError>),
    ProducerIds(Result<i64, ControllerError>),
    Quorum(Result<QuorumDescription, ControllerError>),
}

impl OpResult {
    /// The result every item of `op` gets when the op could not be handled at all.
    pub fn failed(op: &Op, e: ControllerError) -> OpResult {
        match op {
            Op::CreateTopics { reqs, .. } => OpResult::Topics(vec![Err(e); reqs.len()]),
            Op::DeleteTopics { names } => OpResult::Deleted(vec![Err(e); names.len()]),
            Op::AllocateProducerIds { .. } => OpResult::ProducerIds(Err(e)),
            Op::DescribeQuorum => OpResult::Quorum(Err(e)),
            Op::CreatePartitions { .. }
            | Op::AlterTopicConfigs { .. }
            | Op::Heartbeat(_)
            | Op::ControlledShutdown { .. }
            | Op::AlterPartition(_)
            | Op::ElectPreferredLeaders { .. }
            | Op::UnregisterBroker { .. }
            | Op::Snapshot => OpResult::Done(Err(e)),
        }
    }

    /// The error of a result that failed as a whole (`failed`), if it is one.
    pub fn whole_error(&self) -> Option<&ControllerError> {
        match self {
            OpResult::Topics(v) => v.first().and_then(|r| r.as_ref().err()).filter(|_| v.iter().all(|r| r.is_err())),
            OpResult::Deleted(v) => v.first().and_then(|r| r.as_ref().err()).filter(|_| v.iter().all(|r| r.is_err())),
            OpResult::Done(r) => r.as_ref().err(),
            OpResult::ProducerIds(r) => r.as_ref().err(),
            OpResult::Quorum(r) => r.as_ref().err(),
        }
    }
}
