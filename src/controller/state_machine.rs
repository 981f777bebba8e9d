//! The controller's Raft state machine: openraft's `RaftStateMachine` and
//! `RaftSnapshotBuilder` over `ClusterMetadata`. Applies committed commands
//! (`state::apply_command`) and publishes every new metadata version into
//! the watch channel that the shards read.
//!
//! The state lives in memory. Its durable form is `snapshot.json` in the
//! controller dir (JSON of `{meta, data}`, replaced atomically with
//! fdatasync) plus the Raft log after it: at start the state is loaded from
//! the snapshot and openraft re-applies the log entries that follow.
//!
//! Runs on the controller thread only; the shards see nothing but the
//! `Arc<ClusterMetadata>` values it publishes.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::log_store::{read_json, write_json_atomic, StoreError};
use super::state::{apply_command, apply_leader_change, CommandResponse};
use super::types::{RaftNodeId, TypeConfig};
use crate::metadata::{ClusterMetadata, MetadataSnapshot, NodeId};

const SNAPSHOT_FILE: &str = "snapshot.json";

/// Everything the state machine holds; also the snapshot payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateMachineData {
    pub last_applied: Option<LogId<RaftNodeId>>,
    pub last_membership: StoredMembership<RaftNodeId, BasicNode>,
    pub metadata: ClusterMetadata,
}

/// The snapshot file's content.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<RaftNodeId, BasicNode>,
    data: StateMachineData,
}

/// Where new metadata versions go: one sender, a receiver per shard.
pub type Publisher = Arc<watch::Sender<MetadataSnapshot>>;

pub struct MetadataStateMachine {
    dir: PathBuf,
    data: StateMachineData,
    publisher: Publisher,
}

impl MetadataStateMachine {
    /// Loads the last snapshot from `dir` (if any) and publishes its metadata.
    pub fn open(dir: &Path, publisher: Publisher) -> Result<MetadataStateMachine, StoreError> {
        let data = read_json::<StoredSnapshot>(&dir.join(SNAPSHOT_FILE))?
            .map(|s| s.data)
            .unwrap_or_default();
        publisher.send_replace(Arc::new(data.metadata.clone()));
        Ok(MetadataStateMachine {
            dir: dir.to_path_buf(),
            data,
            publisher,
        })
    }

    fn publish(&self) {
        self.publisher
            .send_replace(Arc::new(self.data.metadata.clone()));
    }
}

fn snapshot_error(e: StoreError) -> StorageError<RaftNodeId> {
    StorageIOError::write_snapshot(None, &e).into()
}

fn new_snapshot_id(last: Option<LogId<RaftNodeId>>) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    match last {
        Some(l) => format!("{}-{}-{nanos}", l.leader_id.term, l.index),
        None => format!("none-{nanos}"),
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<RaftNodeId>>,
            StoredMembership<RaftNodeId, BasicNode>,
        ),
        StorageError<RaftNodeId>,
    > {
        Ok((self.data.last_applied, self.data.last_membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<CommandResponse>, StorageError<RaftNodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let version_before = self.data.metadata.version;
        let mut responses = Vec::new();
        for entry in entries {
            self.data.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => {
                    match NodeId::try_from(entry.log_id.leader_id.node_id) {
                        Ok(leader) => {
                            apply_leader_change(&mut self.data.metadata, leader);
                        }
                        Err(_) => tracing::error!(
                            leader = entry.log_id.leader_id.node_id,
                            "controller leader id does not fit a broker node id"
                        ),
                    }
                    CommandResponse::default()
                }
                EntryPayload::Normal(cmd) => apply_command(&mut self.data.metadata, &cmd),
                EntryPayload::Membership(m) => {
                    self.data.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResponse::default()
                }
            };
            responses.push(response);
        }
        if self.data.metadata.version != version_before {
            self.publish();
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            data: self.data.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<RaftNodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<RaftNodeId>> {
        let mut data: StateMachineData = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        data.last_applied = meta.last_log_id;
        data.last_membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        write_json_atomic(&self.dir, SNAPSHOT_FILE, &stored, true).map_err(snapshot_error)?;
        self.data = stored.data;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<RaftNodeId>> {
        let stored = read_json::<StoredSnapshot>(&self.dir.join(SNAPSHOT_FILE))
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, &e)))?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let bytes = serde_json::to_vec(&stored.data)
            .map_err(|e| StorageIOError::read_snapshot(Some(stored.meta.signature()), &e))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

/// Writes a snapshot of the state as it was when the builder was taken.
pub struct SnapshotBuilder {
    dir: PathBuf,
    data: StateMachineData,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<RaftNodeId>> {
        let meta = SnapshotMeta {
            last_log_id: self.data.last_applied,
            last_membership: self.data.last_membership.clone(),
            snapshot_id: new_snapshot_id(self.data.last_applied),
        };
        let bytes = serde_json::to_vec(&self.data)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: self.data.clone(),
        };
        write_json_atomic(&self.dir, SNAPSHOT_FILE, &stored, true).map_err(snapshot_error)?;
        tracing::debug!(snapshot = %meta.snapshot_id, "controller snapshot written");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}
