//! The controller's Raft transport: openraft's `RaftNetworkFactory` and
//! `RaftNetwork` over the framed TCP protocol of `rpc`. Runs on the
//! controller thread.
//!
//! Each peer client keeps one connection, reopened after any error; every
//! call is bounded by openraft's per-RPC time to live. A peer that cannot be
//! reached, times out, or belongs to another cluster answers `Unreachable`,
//! which openraft handles by backing off and retrying.

use std::io;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use super::rpc::{Call, Connection, Envelope, Reply, RpcError};
use super::state_machine::Publisher;
use super::types::{RaftNodeId, TypeConfig};
use crate::metadata::NodeId;

/// Who this node is, for the envelope of every call it sends.
#[derive(Clone)]
pub struct Sender {
    pub node_id: NodeId,
    pub publisher: Publisher,
}

impl Sender {
    pub fn envelope(&self, call: Call) -> Envelope {
        Envelope {
            from: self.node_id,
            cluster_id: self.publisher.borrow().cluster_id.clone(),
            call,
        }
    }
}

/// Creates a client per peer controller.
#[derive(Clone)]
pub struct Network {
    pub sender: Sender,
}

/// A client for one peer controller.
pub struct PeerClient {
    target: RaftNodeId,
    sender: Sender,
    connection: Connection,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            sender: self.sender.clone(),
            connection: Connection::new(node.addr.clone()),
        }
    }
}

fn unreachable<E: std::error::Error>(target: RaftNodeId, addr: &str, what: E) -> Unreachable {
    Unreachable::new(&io::Error::new(
        io::ErrorKind::NotConnected,
        format!("controller {target} at {addr}: {what}"),
    ))
}

impl PeerClient {
    async fn call(&mut self, call: Call, option: &RPCOption) -> Result<Reply, Unreachable> {
        let envelope = self.sender.envelope(call);
        match self.connection.call(&envelope, option.hard_ttl()).await {
            Ok(Reply::ClusterIdMismatch { ours }) => {
                tracing::error!(
                    peer = self.target,
                    peer_cluster_id = %ours,
                    cluster_id = %envelope.cluster_id,
                    "controller peer belongs to another cluster; ignoring it"
                );
                Err(unreachable(
                    self.target,
                    self.connection.addr(),
                    RpcError::Protocol(format!("peer is in cluster {ours}")),
                ))
            }
            Ok(reply) => Ok(reply),
            Err(e) => Err(unreachable(self.target, self.connection.addr(), e)),
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<RaftNodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&io::Error::new(
            io::ErrorKind::InvalidData,
            format!("controller {} answered with the wrong reply type", self.target),
        )))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>,
    > {
        match self.call(Call::AppendEntries(rpc), &option).await {
            Ok(Reply::AppendEntries(r)) => r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))),
            Ok(_) => Err(self.unexpected()),
            Err(u) => Err(RPCError::Unreachable(u)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        match self.call(Call::InstallSnapshot(rpc), &option).await {
            Ok(Reply::InstallSnapshot(r)) => r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))),
            Ok(_) => Err(self.unexpected()),
            Err(u) => Err(RPCError::Unreachable(u)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>>
    {
        match self.call(Call::Vote(rpc), &option).await {
            Ok(Reply::Vote(r)) => r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))),
            Ok(_) => Err(self.unexpected()),
            Err(u) => Err(RPCError::Unreachable(u)),
        }
    }
}
