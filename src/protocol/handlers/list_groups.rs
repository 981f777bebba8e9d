//! ListGroups (key 16): every group this broker coordinates, from all shards.
//!
//! Asks each shard (mesh) for the groups of the `__consumer_offsets`
//! partitions it owns, loading any not yet loaded (bounded wait); a partition
//! still loading makes the answer COORDINATOR_LOAD_IN_PROGRESS, as in Kafka.
//! v4 filters by state (case-insensitive), v5 by type: every group here is
//! a "classic" group.

use std::time::Duration;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::{ops, GroupError, OFFSETS_TOPIC};
use crate::error::group_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

const LOAD_WAIT: Duration = Duration::from_secs(5);

pub async fn handle(ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    let md = ctx.shard.metadata();
    let node_id = ctx.shard.config.node_id;
    let mut by_shard: std::collections::BTreeMap<usize, Vec<i32>> = Default::default();
    if let Some(t) = md.topic(OFFSETS_TOPIC) {
        for p in &t.partitions {
            if p.leader.node_id == node_id {
                by_shard.entry(ctx.shard.owner_of(p.leader.shard)).or_default().push(p.partition);
            }
        }
    }
    let mut all = Vec::new();
    let mut error: Option<GroupError> = None;
    for (shard, parts) in by_shard {
        let r = ctx
            .shard
            .mesh
            .call(shard, move |s| async move {
                let mut out = Vec::new();
                let mut err = None;
                for p in parts {
                    match s.groups.partition_loaded(&s, p, LOAD_WAIT).await {
                        Ok(op) => out.extend(ops::list(&op)),
                        Err(GroupError::NotCoordinator) => {}
                        Err(e) => err = Some(e),
                    }
                }
                (out, err)
            })
            .await;
        match r {
            Ok((groups, err)) => {
                all.extend(groups);
                error = error.or(err);
            }
            Err(_) => error = Some(GroupError::CoordinatorNotAvailable),
        }
    }
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_ascii_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_ascii_lowercase()).collect();
    all.sort();
    let groups = all
        .into_iter()
        .filter(|(_, _, state)| ctx.api_version < 4 || states.is_empty() || states.contains(&state.to_ascii_lowercase()))
        .filter(|_| ctx.api_version < 5 || types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(protocol_type))
                .with_group_state(StrBytes::from_string(state))
                .with_group_type(StrBytes::from_static_str("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_error_code(error.map_or(0, |e| group_error_code(&e))).with_groups(groups)
}
