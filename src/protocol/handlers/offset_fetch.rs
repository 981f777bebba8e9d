//! OffsetFetch (key 9): a group's committed offsets, for named partitions or
//! all of them; v8+ asks for several groups at once (each routed to its own
//! coordinator shard). A group or partition with no commit gets offset -1.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::records::OffsetValue;
use crate::coordinator::{self, ops, GroupError, OFFSETS_TOPIC};
use crate::error::group_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 9;

type Fetched = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

async fn fetch_group(ctx: &RequestContext, group: String, wanted: Option<Vec<(String, Vec<i32>)>>) -> Result<Fetched, GroupError> {
    coordinator::validate_group_id(&group)?;
    if ctx.shard.metadata().topic(OFFSETS_TOPIC).is_none() {
        // No group ever committed: every asked partition is uncommitted.
        return Ok(wanted
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
            .collect());
    }
    let route = coordinator::locate(&ctx.shard, &group, false).await?;
    coordinator::call_partition(&ctx.shard, route, move |_, op| async move { Ok(ops::fetch_offsets(&op, &group, wanted)) })
        .await
}

fn value_fields(v: &Option<OffsetValue>) -> (i64, i32, String) {
    match v {
        Some(v) => (v.offset, v.leader_epoch, v.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

pub async fn handle(ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.api_version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            let wanted = g
                .topics
                .as_ref()
                .map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect());
            let result = fetch_group(ctx, g.group_id.to_string(), wanted).await;
            let mut out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match result {
                Err(e) => out.error_code = group_error_code(&e),
                Ok(topics) => {
                    out.topics = topics
                        .into_iter()
                        .map(|(t, parts)| {
                            OffsetFetchResponseTopics::default().with_name(TopicName(StrBytes::from_string(t))).with_partitions(
                                parts
                                    .iter()
                                    .map(|(p, v)| {
                                        let (offset, epoch, meta) = value_fields(v);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(StrBytes::from_string(meta)))
                                    })
                                    .collect(),
                            )
                        })
                        .collect()
                }
            }
            groups.push(out);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect());
    let result = fetch_group(ctx, req.group_id.to_string(), wanted).await;
    let mut resp = OffsetFetchResponse::default();
    match result {
        Err(e) => {
            let code = group_error_code(&e);
            resp.error_code = code;
            // v1 has no top-level error: each asked partition carries it.
            resp.topics = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_committed_leader_epoch(-1)
                                    .with_metadata(Some(StrBytes::default()))
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
                })
                .collect();
        }
        Ok(topics) => {
            resp.topics = topics
                .into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default().with_name(TopicName(StrBytes::from_string(t))).with_partitions(
                        parts
                            .iter()
                            .map(|(p, v)| {
                                let (offset, epoch, meta) = value_fields(v);
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(StrBytes::from_string(meta)))
                            })
                            .collect(),
                    )
                })
                .collect();
        }
    }
    resp
}
