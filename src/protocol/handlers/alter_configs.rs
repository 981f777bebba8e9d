//! AlterConfigs (key 33): replace a topic's whole set of config overrides.
//!
//! Runs on the connection's shard. Each TOPIC resource becomes one
//! `ControllerHandle::alter_topic_configs` call (validated there against
//! `controller::topic_config`, committed through Raft, published to every
//! shard; the owning shards then apply the new values to the open logs, see
//! `partition::manager`). Kafka semantics: AlterConfigs is not incremental —
//! overrides not named in the request are removed.
//!
//! BROKER resources: every Fjord broker setting is static (file, FJORD_*,
//! flags), so a change is refused with INVALID_REQUEST "Cannot update these
//! configs dynamically", Kafka's answer for a read-only broker config.
//! Other resource types (BROKER_LOGGER, GROUP, CLIENT_METRICS, unknown ids)
//! get INVALID_REQUEST too. `incremental_alter_configs` shares this file's
//! helpers.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error::{controller_error_code, ResponseError};
use crate::protocol::handlers::create_topics::controller_error_message;
use crate::protocol::handlers::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::protocol::RequestContext;

/// Kafka 4.0 keeps AlterConfigs v0-v2.
pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

/// The outcome of one resource: (error code, message).
pub type Outcome = (i16, Option<String>);

pub fn ok() -> Outcome {
    (0, None)
}

pub fn invalid_request(message: String) -> Outcome {
    (ResponseError::InvalidRequest.code(), Some(message))
}

pub fn invalid_config(message: String) -> Outcome {
    (ResponseError::InvalidConfig.code(), Some(message))
}

/// Indexes of resources named more than once in a request: Kafka answers
/// each of them with INVALID_REQUEST and applies none.
pub fn duplicate_resources<'a>(keys: impl Iterator<Item = (i8, &'a str)>) -> BTreeSet<usize> {
    let keys: Vec<(i8, &str)> = keys.collect();
    let mut dups = BTreeSet::new();
    for (i, k) in keys.iter().enumerate() {
        if keys.iter().enumerate().any(|(j, other)| j != i && other == k) {
            dups.insert(i);
        }
    }
    dups
}

/// The answer for a non-topic resource (nothing but topics can be altered).
pub fn refuse_non_topic(resource_type: i8, resource_name: &str, node_id: i32, keys: &[String]) -> Outcome {
    match resource_type {
        RESOURCE_BROKER => {
            let own = node_id.to_string();
            if !resource_name.is_empty() && resource_name != own {
                return invalid_request(format!(
                    "Unexpected broker id, expected {own} or empty string, but received {resource_name}"
                ));
            }
            invalid_request(format!(
                "Cannot update these configs dynamically: {}. Fjord's broker settings are static (fjord.toml, FJORD_* environment, flags).",
                keys.join(", ")
            ))
        }
        other => invalid_request(format!("Unsupported resource type {other} for altering configs; only TOPIC (2) can be altered")),
    }
}

/// Sends planned changes for `topic` to the controller.
pub async fn apply_topic_changes(
    ctx: &RequestContext,
    topic: &str,
    changes: BTreeMap<String, Option<String>>,
    validate_only: bool,
) -> Outcome {
    match ctx.shard.controller.alter_topic_configs(topic.to_string(), changes, validate_only).await {
        Ok(()) => ok(),
        Err(e) => (controller_error_code(&e), Some(controller_error_message(&e))),
    }
}

/// AlterConfigs' full replacement as changes against `current` overrides:
/// every named key is set, every current key not named is removed.
pub fn replacement_changes(
    current: &BTreeMap<String, String>,
    wanted: &[(String, Option<String>)],
) -> Result<BTreeMap<String, Option<String>>, Outcome> {
    let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (name, value) in wanted {
        let Some(value) = value else {
            return Err(invalid_request(format!("Null value not supported for : {name}")));
        };
        if changes.insert(name.clone(), Some(value.clone())).is_some() {
            return Err(invalid_request(format!("Error due to duplicate config keys: {name}")));
        }
    }
    for name in current.keys() {
        changes.entry(name.clone()).or_insert(None);
    }
    Ok(changes)
}

pub async fn handle(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let dups = duplicate_resources(req.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let mut responses = Vec::with_capacity(req.resources.len());
    for (i, r) in req.resources.iter().enumerate() {
        let name = r.resource_name.as_str();
        let wanted: Vec<(String, Option<String>)> =
            r.configs.iter().map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))).collect();
        let (code, message) = if dups.contains(&i) {
            invalid_request(format!("Duplicate resource in request: type {} name '{name}'", r.resource_type))
        } else if r.resource_type != RESOURCE_TOPIC {
            let keys: Vec<String> = wanted.iter().map(|(k, _)| k.clone()).collect();
            refuse_non_topic(r.resource_type, name, ctx.shard.config.node_id, &keys)
        } else {
            let current = ctx.shard.metadata().topic(name).map(|t| t.configs.clone());
            match current {
                None => (
                    ResponseError::UnknownTopicOrPartition.code(),
                    Some(format!("The topic '{name}' does not exist.")),
                ),
                Some(current) => match replacement_changes(&current, &wanted) {
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
    AlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_removes_unnamed_overrides_and_refuses_nulls() {
        // Proves AlterConfigs replaces the whole override set (Kafka semantics) and rejects null values and duplicate keys.
        let current: BTreeMap<String, String> =
            [("retention.ms".to_string(), "1000".to_string()), ("segment.bytes".to_string(), "1048576".to_string())].into();
        let changes = replacement_changes(&current, &[("retention.ms".into(), Some("5".into()))]).expect("plan");
        assert_eq!(changes.get("retention.ms"), Some(&Some("5".to_string())));
        assert_eq!(changes.get("segment.bytes"), Some(&None));
        let null = replacement_changes(&current, &[("retention.ms".into(), None)]);
        assert_eq!(null.map_err(|o| o.0), Err(ResponseError::InvalidRequest.code()));
        let dup = replacement_changes(&current, &[("a".into(), Some("1".into())), ("a".into(), Some("2".into()))]);
        assert_eq!(dup.map_err(|o| o.0), Err(ResponseError::InvalidRequest.code()));
    }

    #[test]
    fn broker_and_other_resources_are_refused_with_invalid_request() {
        // Proves non-topic resources answer INVALID_REQUEST naming the keys or the type.
        let (code, msg) = refuse_non_topic(RESOURCE_BROKER, "0", 0, &["log.retention.ms".into()]);
        assert_eq!(code, ResponseError::InvalidRequest.code());
        assert!(msg.unwrap_or_default().contains("log.retention.ms"));
        assert_eq!(refuse_non_topic(16, "x", 0, &[]).0, ResponseError::InvalidRequest.code());
        assert_eq!(duplicate_resources([(2, "a"), (2, "b"), (2, "a")].into_iter()), [0, 2].into());
    }
}
