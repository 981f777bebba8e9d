//! LeaveGroup (key 13): members leave at once instead of waiting for their
//! session to expire. v0–2 name one member; v3+ a batch (KIP-345), by member
//! id or by group instance id.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::{self, ops};
use crate::error::group_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = req.group_id.to_string();
    let members: Vec<(String, Option<String>)> = if ctx.api_version >= 3 {
        req.members.iter().map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string()))).collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let asked = members.clone();
    let result = match coordinator::validate_group_id(&group_id) {
        Err(e) => Err(e),
        Ok(()) => match coordinator::locate(&ctx.shard, &group_id, false).await {
            Err(e) => Err(e),
            Ok(route) => {
                coordinator::call_partition(&ctx.shard, route, move |s, op| ops::leave(s, op, group_id, members)).await
            }
        },
    };
    let mut resp = LeaveGroupResponse::default();
    match result {
        Err(e) => resp.error_code = group_error_code(&e),
        Ok(results) => {
            if ctx.api_version < 3 {
                // One member: its error is the response's error.
                resp.error_code = results.first().and_then(|r| r.err()).map_or(0, |e| group_error_code(&e));
            } else {
                resp.members = asked
                    .into_iter()
                    .zip(results)
                    .map(|((id, instance), r)| {
                        MemberResponse::default()
                            .with_member_id(StrBytes::from_string(id))
                            .with_group_instance_id(instance.map(StrBytes::from_string))
                            .with_error_code(r.err().map_or(0, |e| group_error_code(&e)))
                    })
                    .collect();
            }
        }
    }
    resp
}
