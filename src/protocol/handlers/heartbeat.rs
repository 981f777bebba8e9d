//! Heartbeat (key 12): keeps a member alive; REBALANCE_IN_PROGRESS tells it to rejoin.
//!
//! Decoded on the connection's shard, answered by the coordinator shard.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::coordinator::{self, ops};
use crate::error::group_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &RequestContext, req: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = req.group_id.to_string();
    let generation = req.generation_id;
    let member_id = req.member_id.to_string();
    let instance_id = req.group_instance_id.as_ref().map(|s| s.to_string());
    let result = match coordinator::validate_group_id(&group_id) {
        Err(e) => Err(e),
        Ok(()) => match coordinator::locate(&ctx.shard, &group_id, false).await {
            Err(e) => Err(e),
            Ok(route) => {
                coordinator::call_partition(&ctx.shard, route, move |_, op| async move {
                    ops::heartbeat(&op, &group_id, generation, &member_id, instance_id.as_deref())
                })
                .await
            }
        },
    };
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| group_error_code(&e)))
}
