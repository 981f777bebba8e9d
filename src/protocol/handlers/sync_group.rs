//! SyncGroup (key 14): the leader hands in the assignment, every member gets
//! its share once the group's metadata is persisted.
//!
//! Decoded on the connection's shard, served on the coordinator shard; a
//! follower that syncs before the leader waits there (long-lived mesh call).

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::group::SyncResult;
use crate::coordinator::{self, ops};
use crate::error::group_result_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(ctx: &RequestContext, req: SyncGroupRequest) -> SyncGroupResponse {
    let params = ops::SyncParams {
        group_id: req.group_id.to_string(),
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
    };
    let result = match coordinator::validate_group_id(&params.group_id) {
        Err(e) => Err(e),
        Ok(()) => match coordinator::locate(&ctx.shard, &params.group_id, false).await {
            Err(e) => Err(e),
            Ok(route) => coordinator::call_partition(&ctx.shard, route, move |s, op| ops::sync(s, op, params)).await,
        },
    };
    let r = result.unwrap_or_else(SyncResult::error);
    SyncGroupResponse::default()
        .with_error_code(group_result_code(r.error.as_ref()))
        .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(r.protocol_name.map(StrBytes::from_string))
        .with_assignment(r.assignment)
}
