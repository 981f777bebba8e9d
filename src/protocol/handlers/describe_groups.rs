//! DescribeGroups (key 15): state, protocol and members of groups, each
//! asked of its coordinator shard. An unknown group is state "Dead" with no
//! error before v6 and GROUP_ID_NOT_FOUND from v6 (KIP-1043), as Kafka does.
//! Members' metadata and assignment are shown only while the group is Stable.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::{self, ops, GroupError, OFFSETS_TOPIC};
use crate::error::{group_error_code, ResponseError};
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 6;

/// Kafka's "authorized operations were not requested" value.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

async fn describe_one(ctx: &RequestContext, group: String) -> Result<ops::GroupDescription, GroupError> {
    coordinator::validate_group_id(&group)?;
    if ctx.shard.metadata().topic(OFFSETS_TOPIC).is_none() {
        return Ok(ops::GroupDescription { found: false, state: "Dead".into(), ..Default::default() });
    }
    let route = coordinator::locate(&ctx.shard, &group, false).await?;
    coordinator::call_partition(&ctx.shard, route, move |_, op| async move { Ok(ops::describe(&op, &group)) }).await
}

pub async fn handle(ctx: &RequestContext, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let s = StrBytes::from_string;
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in &req.groups {
        let mut out = DescribedGroup::default()
            .with_group_id(g.clone())
            .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        match describe_one(ctx, g.to_string()).await {
            Err(e) => {
                out.error_code = group_error_code(&e);
                out.group_state = s("Dead".into());
            }
            Ok(d) if !d.found => {
                out.group_state = s("Dead".into());
                if ctx.api_version >= 6 {
                    out.error_code = ResponseError::GroupIdNotFound.code();
                    out.error_message = Some(s(format!("Group {} not found.", g.as_str())));
                }
            }
            Ok(d) => {
                out.group_state = s(d.state);
                out.protocol_type = s(d.protocol_type);
                out.protocol_data = s(d.protocol);
                out.members = d
                    .members
                    .into_iter()
                    .map(|(id, instance, client_id, host, meta, asg)| {
                        DescribedGroupMember::default()
                            .with_member_id(s(id))
                            .with_group_instance_id(instance.map(s))
                            .with_client_id(s(client_id))
                            .with_client_host(s(host))
                            .with_member_metadata(meta)
                            .with_member_assignment(asg)
                    })
                    .collect();
            }
        }
        groups.push(out);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
