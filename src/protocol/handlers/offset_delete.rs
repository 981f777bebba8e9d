//! OffsetDelete (key 47): delete a group's committed offsets for some
//! partitions (KIP-496). Refused per partition with GROUP_SUBSCRIBED_TO_TOPIC
//! while an active consumer group subscribes to the topic; an unknown group
//! is GROUP_ID_NOT_FOUND.

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::coordinator::{self, ops, GroupError, OFFSETS_TOPIC};
use crate::error::group_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.to_string();
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), p.partition_index)))
        .collect();
    let result: Result<Vec<Result<(), GroupError>>, GroupError> = async {
        coordinator::validate_group_id(&group)?;
        if ctx.shard.metadata().topic(OFFSETS_TOPIC).is_none() {
            return Err(GroupError::GroupIdNotFound);
        }
        let route = coordinator::locate(&ctx.shard, &group, false).await?;
        coordinator::call_partition(&ctx.shard, route, move |s, op| ops::delete_offsets(s, op, group, partitions)).await
    }
    .await;
    let mut resp = OffsetDeleteResponse::default();
    let mut codes = match result {
        Err(e) => {
            resp.error_code = group_error_code(&e);
            return resp;
        }
        Ok(r) => r.into_iter().map(|r| r.err().map_or(0, |e| group_error_code(&e))),
    };
    resp.topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(codes.next().unwrap_or(0))
                    })
                    .collect(),
            )
        })
        .collect();
    resp
}
