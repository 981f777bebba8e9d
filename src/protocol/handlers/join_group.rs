//! JoinGroup (key 11): enter a group and wait for its rebalance.
//!
//! Decoded on the connection's shard and sent to the coordinator shard; the
//! answer comes back when the rebalance completes (a long-lived mesh call).
//! v4+ dynamic members get MEMBER_ID_REQUIRED first (KIP-394). kafkajs
//! speaks v0–5, librdkafka and the Java client up to v9.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::group::JoinResult;
use crate::coordinator::{self, ops};
use crate::error::group_result_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 9;

pub async fn handle(ctx: &RequestContext, req: JoinGroupRequest) -> JoinGroupResponse {
    let params = ops::JoinParams {
        api_version: ctx.api_version,
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if ctx.api_version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
    };
    let member_id = params.member_id.clone();
    let result = match coordinator::validate_group_id(&params.group_id) {
        Err(e) => Err(e),
        Ok(()) => match coordinator::locate(&ctx.shard, &params.group_id, true).await {
            Err(e) => Err(e),
            Ok(route) => {
                coordinator::call_partition(&ctx.shard, route, move |s, op| ops::join(s, op, params)).await
            }
        },
    };
    let r = result.unwrap_or_else(|e| JoinResult::error(e, &member_id));
    to_response(r)
}

fn to_response(r: JoinResult) -> JoinGroupResponse {
    let s = StrBytes::from_string;
    JoinGroupResponse::default()
        .with_error_code(group_result_code(r.error.as_ref()))
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.map(s))
        .with_protocol_name(Some(s(r.protocol_name.unwrap_or_default())))
        .with_leader(s(r.leader))
        .with_member_id(s(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(instance.map(s))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}
