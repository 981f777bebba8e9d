//! IncrementalAlterConfigs (key 44): change single topic configs by
//! operation — SET (0), DELETE (1), APPEND (2) and SUBTRACT (3); the last two
//! only for LIST configs (`cleanup.policy`), working on the current value
//! (the override, else the default) as Kafka does.
//!
//! Runs on the connection's shard; each TOPIC resource becomes one
//! `ControllerHandle::alter_topic_configs` call. Non-topic resources are
//! refused as in `alter_configs` (INVALID_REQUEST; Fjord's broker settings
//! are static).

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::controller::topic_config::{self, ConfigKind};
use crate::error::ResponseError;
use crate::protocol::handlers::alter_configs::{
    apply_topic_changes, duplicate_resources, invalid_config, invalid_request, refuse_non_topic, Outcome,
};
use crate::protocol::handlers::describe_configs::RESOURCE_TOPIC;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;
pub const OP_APPEND: i8 = 2;
pub const OP_SUBTRACT: i8 = 3;

/// One requested operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub name: String,
    pub op: i8,
    pub value: Option<String>,
}

fn list_items(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Turns operations into set/delete changes against the topic's current overrides. Pure.
pub fn plan(current: &BTreeMap<String, String>, ops: &[Op]) -> Result<BTreeMap<String, Option<String>>, Outcome> {
    let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        if ops[..i].iter().any(|o| o.name == op.name) {
            return Err(invalid_request(format!("Error due to duplicate config keys: {}", op.name)));
        }
        let name = &op.name;
        match op.op {
            OP_SET => {
                let Some(v) = &op.value else {
                    return Err(invalid_request(format!("Null value not supported for : {name}")));
                };
                changes.insert(name.clone(), Some(v.clone()));
            }
            OP_DELETE => {
                changes.insert(name.clone(), None);
            }
            OP_APPEND | OP_SUBTRACT => {
                let def = topic_config::find(name)
                    .ok_or_else(|| invalid_config(format!("Unknown topic config name: {name}")))?;
                if def.kind != ConfigKind::List {
                    let what = if op.op == OP_APPEND { "append" } else { "subtract" };
                    return Err(invalid_config(format!("Config value {what} is not allowed for config key: {name}")));
                }
                let base = current.get(name).map(String::as_str).unwrap_or(def.default);
                let mut items = list_items(base);
                let given = list_items(op.value.as_deref().unwrap_or(""));
                if op.op == OP_APPEND {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                changes.insert(name.clone(), Some(items.join(",")));
            }
            other => return Err(invalid_request(format!("Unknown config operation {other} for {name}"))),
        }
    }
    Ok(changes)
}

pub async fn handle(ctx: &RequestContext, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let dups = duplicate_resources(req.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let mut responses = Vec::with_capacity(req.resources.len());
    for (i, r) in req.resources.iter().enumerate() {
        let name = r.resource_name.as_str();
        let ops: Vec<Op> = r
            .configs
            .iter()
            .map(|c| Op { name: c.name.to_string(), op: c.config_operation, value: c.value.as_ref().map(|v| v.to_string()) })
            .collect();
        let (code, message) = if dups.contains(&i) {
            invalid_request(format!("Duplicate resource in request: type {} name '{name}'", r.resource_type))
        } else if r.resource_type != RESOURCE_TOPIC {
            let keys: Vec<String> = ops.iter().map(|o| o.name.clone()).collect();
            refuse_non_topic(r.resource_type, name, ctx.shard.config.node_id, &keys)
        } else {
            let current = ctx.shard.metadata().topic(name).map(|t| t.configs.clone());
            match current {
                None => (
                    ResponseError::UnknownTopicOrPartition.code(),
                    Some(format!("The topic '{name}' does not exist.")),
                ),
                Some(current) => match plan(&current, &ops) {
                    Ok(changes) => apply_topic_changes(ctx, name, changes, req.validate_only).await,
                    Err(outcome) => outcome,
                },
            }
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone()),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, op: i8, value: Option<&str>) -> Op {
        Op { name: name.into(), op, value: value.map(str::to_string) }
    }

    #[test]
    fn set_delete_append_subtract_plan_as_kafka() {
        // Proves SET/DELETE map to set/remove and APPEND/SUBTRACT edit the list starting from the default when no override exists.
        let current: BTreeMap<String, String> = [("retention.ms".to_string(), "5".to_string())].into();
        let changes = plan(
            &current,
            &[op("segment.bytes", OP_SET, Some("1048576")), op("retention.ms", OP_DELETE, None), op("cleanup.policy", OP_APPEND, Some("compact"))],
        )
        .expect("plan");
        assert_eq!(changes["segment.bytes"], Some("1048576".to_string()));
        assert_eq!(changes["retention.ms"], None);
        assert_eq!(changes["cleanup.policy"], Some("delete,compact".to_string()));
        let both: BTreeMap<String, String> = [("cleanup.policy".to_string(), "delete,compact".to_string())].into();
        let sub = plan(&both, &[op("cleanup.policy", OP_SUBTRACT, Some("delete"))]).expect("plan");
        assert_eq!(sub["cleanup.policy"], Some("compact".to_string()));
    }

    #[test]
    fn bad_operations_get_kafka_error_codes() {
        // Proves APPEND on a non-list is INVALID_CONFIG, unknown ops / null SET / duplicate keys are INVALID_REQUEST.
        let none = BTreeMap::new();
        let code = |ops: &[Op]| plan(&none, ops).map_err(|o| o.0);
        assert_eq!(code(&[op("retention.ms", OP_APPEND, Some("1"))]), Err(ResponseError::InvalidConfig.code()));
        assert_eq!(code(&[op("retention.ms", 9, Some("1"))]), Err(ResponseError::InvalidRequest.code()));
        assert_eq!(code(&[op("retention.ms", OP_SET, None)]), Err(ResponseError::InvalidRequest.code()));
        assert_eq!(
            code(&[op("retention.ms", OP_SET, Some("1")), op("retention.ms", OP_DELETE, None)]),
            Err(ResponseError::InvalidRequest.code())
        );
    }
}
