//! What one shard holds: its partitions, its view of the metadata, the mesh
//! to the other shards, and the controller handle.
//!
//! One `ShardState` per shard, created on that shard and never sent away
//! (`Rc`, not `Arc`). Other shards reach it only through `mesh.call`.

use std::rc::Rc;

use shards::{Mesh, Shutdown};

use crate::config::Config;
use crate::controller::{ControllerHandle, MetadataReceiver};
use crate::metadata::{MetadataSnapshot, ShardId};
use crate::partition::{Partition, PartitionManager};

pub struct ShardState {
    pub id: ShardId,
    pub mesh: Mesh<ShardState>,
    pub config: Config,
    pub controller: ControllerHandle,
    pub partitions: PartitionManager,
    /// This shard's block of producer ids for InitProducerId.
    pub producer_ids: crate::producer_ids::ProducerIdAllocator,
    pub shutdown: Shutdown,
    /// Consumer groups of the `__consumer_offsets` partitions this shard owns.
    pub groups: crate::coordinator::GroupCoordinator,
    /// Transactional ids of the `__transaction_state` partitions this shard owns.
    pub txns: crate::txn::TxnCoordinator,
    /// Follower fetchers of this shard's replicas, by leader broker.
    pub fetchers: crate::replication::Fetchers,
    /// The controller's published snapshots, and this shard's copy of the
    /// newest one: requests read the copy (no lock); the channel's lock is
    /// taken only when its version counter (an atomic) says a newer one exists.
    metadata_rx: std::cell::RefCell<MetadataReceiver>,
    metadata_copy: std::cell::RefCell<MetadataSnapshot>,
}

impl ShardState {
    pub fn new(
        id: ShardId,
        mesh: Mesh<ShardState>,
        config: Config,
        controller: ControllerHandle,
        shutdown: Shutdown,
    ) -> Self {
        let mut metadata_rx = controller.subscribe();
        let metadata_copy = std::cell::RefCell::new(metadata_rx.borrow_and_update().clone());
        let metadata_rx = std::cell::RefCell::new(metadata_rx);
        let partitions = PartitionManager::new(&config, id);
        ShardState { id, mesh, config, controller, partitions, producer_ids: Default::default(), shutdown, groups: crate::coordinator::GroupCoordinator::new(), txns: crate::txn::TxnCoordinator::new(), fetchers: Default::default(), metadata_rx, metadata_copy }
    }

    /// The shard of this process that serves a replica placed on `placed`.
    pub fn owner_of(&self, placed: ShardId) -> ShardId {
        crate::partition::manager::owner_of(placed, self.mesh.shard_count())
    }

    /// The newest metadata snapshot the controller has published.
    pub fn metadata(&self) -> MetadataSnapshot {
        let mut rx = self.metadata_rx.borrow_mut();
        if rx.has_changed().unwrap_or(false) {
            *self.metadata_copy.borrow_mut() = rx.borrow_and_update().clone();
        }
        self.metadata_copy.borrow().clone()
    }

    /// The partition if this shard owns it, opening it first when the
    /// newest metadata places it here but this shard has not caught up yet.
    pub async fn local_partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        if let Some(p) = self.partitions.get(topic, partition) {
            return Some(p);
        }
        let md = self.metadata();
        if md.version > self.partitions.applied_version() {
            self.partitions.sync_with(&md).await;
        }
        self.partitions.get(topic, partition)
    }

    /// Keeps the partitions in step with metadata until shutdown.
    pub async fn follow_metadata(self: Rc<Self>) {
        let mut rx = self.controller.subscribe();
        loop {
            let md = rx.borrow_and_update().clone();
            self.partitions.sync_with(&md).await;
            crate::replication::Fetchers::ensure(&self);
            // Coordinators follow leadership: load what this shard leads now.
            glommio::spawn_local(crate::coordinator::load_owned(self.clone())).detach();
            glommio::spawn_local(crate::txn::load_owned(self.clone())).detach();
            let changed = async { rx.changed().await.is_ok() };
            let stop = async {
                self.shutdown.wait().await;
                false
            };
            if !futures_lite::future::or(changed, stop).await {
                break;
            }
        }
        // Draining: logs are no longer opened or closed, but leadership
        // changes still reach the partitions. The controlled shutdown moves
        // leadership away after SIGTERM, and acks=all requests waiting here
        // must learn it (NOT_LEADER_OR_FOLLOWER, the client retries on the
        // new leader) instead of waiting out their timeout.
        while rx.changed().await.is_ok() {
            let md = rx.borrow_and_update().clone();
            self.partitions.apply_roles_only(&md);
        }
    }
}

impl ShardState {
    /// Creates the named topics with broker defaults when
    /// `auto.create.topics.enable` allows it; returns each name's outcome.
    /// Names that exist already are left alone and count as success.
    pub async fn auto_create_topics(
        &self,
        names: Vec<String>,
    ) -> Vec<(String, Result<(), crate::metadata::ControllerError>)> {
        use crate::metadata::{validate_topic_name, ControllerError, CreateTopicRequest};
        let md = self.metadata();
        let mut out = Vec::new();
        let mut reqs = Vec::new();
        for name in names {
            if md.topic(&name).is_some() {
                out.push((name, Ok(())));
            } else if let Err(e) = validate_topic_name(&name) {
                out.push((name, Err(e)));
            } else if !self.config.auto_create_topics_enable {
                out.push((name.clone(), Err(ControllerError::UnknownTopic(name))));
            } else {
                reqs.push(CreateTopicRequest {
                    name,
                    partitions: self.config.num_partitions,
                    replication_factor: self.config.default_replication_factor,
                    configs: Default::default(),
                    internal: false,
                    assignments: Vec::new(),
                });
            }
        }
        if reqs.is_empty() {
            return out;
        }
        let names: Vec<String> = reqs.iter().map(|r| r.name.clone()).collect();
        let results = self.controller.create_topics(reqs, false).await;
        for (name, r) in names.into_iter().zip(results) {
            let r = match r {
                Ok(_) | Err(ControllerError::TopicAlreadyExists(_)) => Ok(()),
                Err(e) => Err(e),
            };
            if r.is_ok() {
                tracing::info!(topic = %name, "auto-created topic");
            }
            out.push((name, r));
        }
        out
    }
}
