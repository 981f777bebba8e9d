//! openraft's type configuration for the controller group: what goes in the
//! log (`state::Command`), what an apply answers (`state::CommandResponse`),
//! node ids and addresses. Used on the controller thread only.

use std::io::Cursor;

use openraft::{BasicNode, TokioRuntime};

use super::state::{Command, CommandResponse};

/// Raft node ids are the broker node ids (`metadata::NodeId`, never
/// negative) widened to what openraft wants.
pub type RaftNodeId = u64;

openraft::declare_raft_types!(
    /// The controller group's openraft types.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = RaftNodeId,
        // `addr` is the node's controller RPC address once there are several voters.
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);
