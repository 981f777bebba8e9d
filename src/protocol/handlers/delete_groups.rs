//! DeleteGroups (key 42): remove empty groups and their committed offsets
//! (tombstones in `__consumer_offsets`). A group with members is
//! NON_EMPTY_GROUP; an unknown one GROUP_ID_NOT_FOUND.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::coordinator::{self, ops, GroupError, OFFSETS_TOPIC};
use crate::error::group_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

async fn delete_one(ctx: &RequestContext, group: String) -> Result<(), GroupError> {
    coordinator::validate_group_id(&group)?;
    if ctx.shard.metadata().topic(OFFSETS_TOPIC).is_none() {
        return Err(GroupError::GroupIdNotFound);
    }
    let route = coordinator::locate(&ctx.shard, &group, false).await?;
    coordinator::call_partition(&ctx.shard, route, move |_, op| ops::delete_group(op, group)).await
}

pub async fn handle(ctx: &RequestContext, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in &req.groups_names {
        let code = delete_one(ctx, g.to_string()).await.err().map_or(0, |e| group_error_code(&e));
        results.push(DeletableGroupResult::default().with_group_id(g.clone()).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}
