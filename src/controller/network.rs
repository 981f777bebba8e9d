//! The controller's Raft transport: openraft's `RaftNetworkFactory` and
//! `RaftNetwork`. Runs on the controller thread.
//!
//! Fjord's controller has a single voter so far, so openraft never sends an
//! RPC. The trait is implemented for real so that adding voters means
//! filling in a transport here, nothing else: today every call answers
//! `Unreachable`, which openraft handles by backing off and retrying.

use std::io;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use super::types::{RaftNodeId, TypeConfig};

/// Creates a client per peer controller.
#[derive(Debug, Clone, Default)]
pub struct Network;

/// A client for one peer controller.
#[derive(Debug, Clone)]
pub struct PeerClient {
    target: RaftNodeId,
    addr: String,
}

impl PeerClient {
    fn unreachable(&self) -> Unreachable {
        Unreachable::new(&io::Error::new(
            io::ErrorKind::NotConnected,
            format!(
                "no controller transport yet: cannot reach node {} at {:?}",
                self.target, self.addr
            ),
        ))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>,
    > {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<RaftNodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>>
    {
        Err(RPCError::Unreachable(self.unreachable()))
    }
}
