//! FindCoordinator (key 10): which broker coordinates a group.
//!
//! Runs on the connection's shard. Creates `__consumer_offsets` on first need,
//! finds the group's offsets partition and answers with that partition
//! leader's broker (so the same code serves a multi-broker cluster). It also
//! starts loading the partition on its owner shard and waits briefly for it,
//! so the client's next group request rarely sees COORDINATOR_LOAD_IN_PROGRESS.
//! Transaction coordinators (key type 1): the leader of the transactional
//! id's `__transaction_state` partition (created on first need).

use std::time::Duration;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::{self, GroupError, OFFSETS_TOPIC};
use crate::error::group_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 6;

/// How long FindCoordinator waits for a partition's groups to load.
const LOAD_WAIT: Duration = Duration::from_secs(5);

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The transaction coordinator of `id`: the leader of its `__transaction_state` partition.
async fn find_txn(ctx: &RequestContext, id: &str) -> Result<(i32, String, i32), GroupError> {
    let shard = &ctx.shard;
    if id.is_empty() {
        return Err(GroupError::CoordinatorNotAvailable);
    }
    crate::txn::ensure_topic(shard).await.map_err(|_| GroupError::CoordinatorNotAvailable)?;
    let (_, node, _) = crate::txn::partition_of(shard, id).map_err(|_| GroupError::CoordinatorNotAvailable)?;
    let md = shard.metadata();
    endpoint(ctx, &md, node)
}

pub async fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let keys: Vec<String> = if ctx.api_version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let found = match req.key_type {
            KEY_TYPE_GROUP => find(ctx, &key).await,
            KEY_TYPE_TRANSACTION => find_txn(ctx, &key).await,
            _ => Err(GroupError::CoordinatorNotAvailable),
        };
        let c = Coordinator::default().with_key(StrBytes::from_string(key));
        coordinators.push(match found {
            Ok((node_id, host, port)) => {
                c.with_node_id(BrokerId(node_id)).with_host(StrBytes::from_string(host)).with_port(port)
            }
            Err(e) => c
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(group_error_code(&e))
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        });
    }
    let mut resp = FindCoordinatorResponse::default();
    if ctx.api_version < 4 {
        let c = coordinators.pop().unwrap_or_default();
        resp = resp
            .with_error_code(c.error_code)
            .with_error_message(c.error_message)
            .with_node_id(c.node_id)
            .with_host(c.host)
            .with_port(c.port);
    } else {
        resp = resp.with_coordinators(coordinators);
    }
    resp
}

async fn find(ctx: &RequestContext, group: &str) -> Result<(i32, String, i32), GroupError> {
    let shard = &ctx.shard;
    coordinator::ensure_offsets_topic(shard).await?;
    let md = shard.metadata();
    let topic = md.topic(OFFSETS_TOPIC).ok_or(GroupError::CoordinatorNotAvailable)?;
    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    let partition = coordinator::records::partition_for(group, count);
    let leader = md.partition(OFFSETS_TOPIC, partition).ok_or(GroupError::CoordinatorNotAvailable)?.leader;
    if leader.node_id == shard.config.node_id {
        let route = coordinator::locate(shard, group, false).await?;
        let index = route.partition;
        // Start (and briefly await) the load; an error here is the next request's business.
        let _ = shard
            .mesh
            .call(route.shard, move |s| async move {
                s.groups.partition_loaded(&s, index, LOAD_WAIT).await.map(|_| ())
            })
            .await;
    }
    endpoint(ctx, &md, leader.node_id)
}

/// `node`'s address on the listener the client came in on.
fn endpoint(ctx: &RequestContext, md: &crate::metadata::ClusterMetadata, node: i32) -> Result<(i32, String, i32), GroupError> {
    let broker = md.live_broker(node).ok_or(GroupError::CoordinatorNotAvailable)?;
    let (host, port) = ctx.endpoint_of(broker).ok_or(GroupError::CoordinatorNotAvailable)?;
    Ok((node, host.to_string(), port))
}
