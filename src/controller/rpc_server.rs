//! The controller RPC listener (`controller_addr`): answers peers' Raft
//! RPCs, forwarded ops and hellos (`rpc`). One task per connection, at most
//! `rpc::SERVER_CONNECTIONS_MAX` at once. Runs on the controller thread.

use std::sync::Arc;

use openraft::Raft;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::network::Sender;
use super::ops::OpResult;
use super::rpc::{read_frame, write_frame, Call, Envelope, Reply, SERVER_CONNECTIONS_MAX};
use super::types::TypeConfig;
use super::Request;
use crate::metadata::{ControllerError, NodeId};

pub(super) async fn serve(listener: TcpListener, raft: Raft<TypeConfig>, sender: Sender, requests: mpsc::Sender<Request>) {
    let slots = Arc::new(Semaphore::new(SERVER_CONNECTIONS_MAX));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "controller listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (raft, sender, requests) = (raft.clone(), sender.clone(), requests.clone());
        tokio::spawn(async move {
            connection(stream, raft, sender, requests).await;
            drop(permit);
        });
    }
}

async fn connection(mut stream: TcpStream, raft: Raft<TypeConfig>, sender: Sender, requests: mpsc::Sender<Request>) {
    loop {
        let envelope: Envelope = match read_frame(&mut stream).await {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "controller listener: closing a connection");
                return;
            }
        };
        let reply = answer(envelope, &raft, &sender, &requests).await;
        if let Err(e) = write_frame(&mut stream, &reply).await {
            tracing::debug!(error = %e, "controller listener: cannot answer");
            return;
        }
    }
}

async fn answer(envelope: Envelope, raft: &Raft<TypeConfig>, sender: &Sender, requests: &mpsc::Sender<Request>) -> Reply {
    let ours = sender.publisher.borrow().cluster_id.clone();
    if matches!(envelope.call, Call::Hello) {
        let leader = raft.metrics().borrow().current_leader.map(|l| l as NodeId);
        return Reply::Hello { cluster_id: ours, leader };
    }
    if !ours.is_empty() && !envelope.cluster_id.is_empty() && envelope.cluster_id != ours {
        tracing::warn!(peer = envelope.from, peer_cluster_id = %envelope.cluster_id, cluster_id = %ours, "refused a controller call from a node of another cluster");
        return Reply::ClusterIdMismatch { ours };
    }
    match envelope.call {
        Call::AppendEntries(rpc) => Reply::AppendEntries(raft.append_entries(rpc).await),
        Call::Vote(rpc) => Reply::Vote(raft.vote(rpc).await),
        Call::InstallSnapshot(rpc) => Reply::InstallSnapshot(raft.install_snapshot(rpc).await),
        Call::Forward(op) => {
            let (reply, rx) = oneshot::channel();
            let failed = OpResult::failed(&op, ControllerError::Unavailable("the controller is shutting down".into()));
            if requests.send(Request { op, forwarded: true, reply }).await.is_err() {
                return Reply::Forward(failed);
            }
            Reply::Forward(rx.await.unwrap_or(failed))
        }
        Call::Hello => Reply::Hello { cluster_id: ours, leader: None },
    }
}
