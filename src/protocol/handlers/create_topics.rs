//! CreateTopics (key 19): checks each entry, fills in broker defaults, asks
//! the controller to create (or, with validate_only, just validate) the
//! rest, and answers in Kafka's shape.
//!
//! Runs on whichever shard holds the connection; the only cross-thread step
//! is the controller call (`ControllerHandle::create_topics`), which returns
//! after the new metadata is published to every shard. The controller is
//! the authority on everything that depends on cluster state (a name taken,
//! replication factor vs brokers, config values); this handler only refuses
//! what is wrong in the request itself:
//! - a name given twice: INVALID_REQUEST "Duplicate topic name." (answered
//!   once for that name, as Kafka does),
//! - an illegal name: INVALID_TOPIC_EXCEPTION,
//! - manual replica assignments together with a partition count or
//!   replication factor: INVALID_REQUEST; assignments whose partitions are
//!   not numbered 0..n: INVALID_REPLICA_ASSIGNMENT (the controller checks
//!   the brokers; each replica gets the least-loaded shard of its broker),
//! - a config with a null value or named twice: INVALID_CONFIG.
//!
//! `num_partitions` / `replication_factor` of -1 become the broker's
//! `num.partitions` / `default.replication.factor`. `timeout_ms` is ignored:
//! the answer comes when the controller has committed.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::config::Config;
use crate::error::{controller_error_code, ResponseError};
use crate::metadata::{validate_topic_name, ControllerError, CreateTopicRequest, TopicMeta};
use crate::protocol::handlers::describe_configs::describe_topic_configs;
use crate::protocol::RequestContext;

/// Kafka 4.0 removed v0-1 (KIP-896); v7 is the newest kafka-protocol 0.18 knows.
pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 7;

/// The text of a controller error for an `error_message` field: the
/// message the controller wrote, without `Display`'s category prefix.
pub fn controller_error_message(e: &ControllerError) -> String {
    match e {
        ControllerError::TopicAlreadyExists(m)
        | ControllerError::UnknownTopic(m)
        | ControllerError::InvalidTopic(m)
        | ControllerError::InvalidPartitions(m)
        | ControllerError::InvalidReplicationFactor(m)
        | ControllerError::InvalidReplicaAssignment(m)
        | ControllerError::InvalidConfig(m)
        | ControllerError::Unavailable(m)
        | ControllerError::BrokerNotRegistered(m) => m.clone(),
        ControllerError::NotController => "This node is not the active controller.".into(),
        ControllerError::AlterPartition(e) => format!("{e:?}"),
    }
}

/// An error answered by the handler itself, without asking the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i16,
    pub message: String,
}

impl Refusal {
    fn new(error: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            code: error.code(),
            message: message.into(),
        }
    }
}

/// One entry of the response, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Refused {
        name: String,
        refusal: Refusal,
    },
    /// Answered by the controller's result at this index of `Plan::to_create`.
    Forward {
        index: usize,
    },
}

/// What the handler decided before the controller call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub slots: Vec<Slot>,
    pub to_create: Vec<CreateTopicRequest>,
}

/// Checks each requested topic and defaults its counts. A name that occurs
/// more than once gets a single INVALID_REQUEST slot, at its first place.
pub fn plan(topics: &[CreatableTopic], config: &Config) -> Plan {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in topics {
        *counts.entry(t.name.0.as_str()).or_default() += 1;
    }
    let mut answered: BTreeSet<&str> = BTreeSet::new();
    let mut slots = Vec::with_capacity(topics.len());
    let mut to_create = Vec::with_capacity(topics.len());
    for t in topics {
        let name = t.name.0.as_str();
        if !answered.insert(name) {
            continue;
        }
        if counts.get(name).copied().unwrap_or(0) > 1 {
            let refusal = Refusal::new(ResponseError::InvalidRequest, "Duplicate topic name.");
            slots.push(Slot::Refused {
                name: name.to_string(),
                refusal,
            });
            continue;
        }
        match check_topic(t, config) {
            Ok(req) => {
                slots.push(Slot::Forward {
                    index: to_create.len(),
                });
                to_create.push(req);
            }
            Err(refusal) => slots.push(Slot::Refused {
                name: name.to_string(),
                refusal,
            }),
        }
    }
    Plan { slots, to_create }
}

/// What is wrong in one entry by itself; otherwise the controller request.
fn check_topic(t: &CreatableTopic, config: &Config) -> Result<CreateTopicRequest, Refusal> {
    let name = t.name.0.as_str();
    if let Err(e) = validate_topic_name(name) {
        return Err(Refusal {
            code: controller_error_code(&e),
            message: controller_error_message(&e),
        });
    }
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(Refusal::new(
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. \
                 Both cannot be used at the same time.",
            ));
        }
    }
    let mut assignments: Vec<(i32, Vec<i32>)> =
        t.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect();
    assignments.sort_by_key(|(p, _)| *p);
    if assignments.iter().enumerate().any(|(i, (p, _))| usize::try_from(*p).ok() != Some(i)) {
        return Err(Refusal::new(
            ResponseError::InvalidReplicaAssignment,
            "Partitions should be numbered 0, 1, 2 ... in the manual replica assignment.",
        ));
    }
    let assignments: Vec<Vec<i32>> = assignments.into_iter().map(|(_, ids)| ids).collect();
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let key = c.name.as_str();
        let Some(value) = &c.value else {
            return Err(Refusal::new(
                ResponseError::InvalidConfig,
                format!("Null value not supported for topic configs: {key}"),
            ));
        };
        if configs
            .insert(key.to_string(), value.as_str().to_string())
            .is_some()
        {
            return Err(Refusal::new(
                ResponseError::InvalidConfig,
                format!("Duplicate config name in request: {key}"),
            ));
        }
    }
    let partitions = if !assignments.is_empty() {
        assignments.len() as i32
    } else if t.num_partitions == -1 {
        config.num_partitions
    } else {
        t.num_partitions
    };
    let replication_factor = if let Some(first) = assignments.first() {
        first.len() as i16
    } else if t.replication_factor == -1 {
        config.default_replication_factor
    } else {
        t.replication_factor
    };
    Ok(CreateTopicRequest {
        name: name.to_string(),
        partitions,
        replication_factor,
        configs,
        internal: false,
        assignments,
    })
}

fn refused_result(name: String, code: i16, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(TopicName(StrBytes::from_string(name)))
        .with_error_code(code)
        .with_error_message(Some(StrBytes::from_string(message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_configs(None)
}

fn created_result(topic: &TopicMeta, requested_rf: i16, config: &Config) -> CreatableTopicResult {
    let num_partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    let replication_factor = topic
        .partitions
        .first()
        .and_then(|p| i16::try_from(p.replicas.len()).ok())
        .unwrap_or(requested_rf);
    let configs = describe_topic_configs(&topic.configs, config)
        .into_iter()
        .map(|c| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(c.name))
                .with_value(Some(StrBytes::from_string(c.value)))
                .with_read_only(c.read_only)
                .with_config_source(c.source.id())
                .with_is_sensitive(false)
        })
        .collect();
    CreatableTopicResult::default()
        .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
        .with_topic_id(topic.id)
        .with_error_code(0)
        .with_error_message(None)
        .with_num_partitions(num_partitions)
        .with_replication_factor(replication_factor)
        .with_configs(Some(configs))
}

/// Merges the handler's refusals with the controller's outcomes (one per
/// `plan.to_create` entry, in order). A missing outcome, which the
/// controller's contract rules out, is answered as unavailable.
pub fn assemble(
    plan: Plan,
    outcomes: Vec<Result<TopicMeta, ControllerError>>,
    config: &Config,
) -> CreateTopicsResponse {
    let mut outcomes = outcomes.into_iter().map(Some).collect::<Vec<_>>();
    let topics = plan
        .slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Refused { name, refusal } => refused_result(name, refusal.code, refusal.message),
            Slot::Forward { index } => {
                let req = &plan.to_create[index];
                match outcomes.get_mut(index).and_then(Option::take) {
                    Some(Ok(topic)) => created_result(&topic, req.replication_factor, config),
                    Some(Err(e)) => refused_result(
                        req.name.clone(),
                        controller_error_code(&e),
                        controller_error_message(&e),
                    ),
                    None => {
                        let e = ControllerError::Unavailable(
                            "the controller gave no answer for this topic".into(),
                        );
                        refused_result(
                            req.name.clone(),
                            controller_error_code(&e),
                            controller_error_message(&e),
                        )
                    }
                }
            }
        })
        .collect();
    CreateTopicsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics)
}

pub async fn handle(ctx: &RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let config = &ctx.shard.config;
    let plan = plan(&req.topics, config);
    let outcomes = if plan.to_create.is_empty() {
        Vec::new()
    } else {
        ctx.shard
            .controller
            .create_topics(plan.to_create.clone(), req.validate_only)
            .await
    };
    assemble(plan, outcomes, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionMeta, ReplicaPlacement};
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopicConfig,
    };

    fn topic(name: &str, partitions: i32, rf: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
    }

    fn cfg(name: &str, value: Option<&str>) -> CreatableTopicConfig {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(name.to_string()))
            .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
    }

    fn refusal_code(slot: &Slot) -> Option<i16> {
        match slot {
            Slot::Refused { refusal, .. } => Some(refusal.code),
            Slot::Forward { .. } => None,
        }
    }

    fn meta(name: &str, partitions: i32, rf: usize, configs: &[(&str, &str)]) -> TopicMeta {
        let placement = ReplicaPlacement {
            node_id: 0,
            shard: 0,
        };
        TopicMeta {
            name: name.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions: (0..partitions)
                .map(|p| PartitionMeta {
                    partition: p,
                    leader: placement,
                    leader_epoch: 0,
                    replicas: vec![placement; rf],
                    isr: vec![0],
                    partition_epoch: 0,
                })
                .collect(),
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            internal: false,
        }
    }

    /// -1 counts take the broker's num.partitions and default.replication.factor;
    /// explicit counts (even invalid ones) go to the controller unchanged.
    #[test]
    fn defaults_fill_minus_one() {
        let config = Config {
            num_partitions: 4,
            default_replication_factor: 2,
            ..Config::default()
        };
        let p = plan(
            &[topic("a", -1, -1), topic("b", 3, 1), topic("c", 0, -2)],
            &config,
        );
        assert_eq!(
            p.slots,
            vec![
                Slot::Forward { index: 0 },
                Slot::Forward { index: 1 },
                Slot::Forward { index: 2 }
            ]
        );
        let counts: Vec<(i32, i16)> = p
            .to_create
            .iter()
            .map(|r| (r.partitions, r.replication_factor))
            .collect();
        assert_eq!(counts, vec![(4, 2), (3, 1), (0, -2)]);
    }

    /// A duplicated name is answered once with INVALID_REQUEST and never sent
    /// to the controller; the other topics still go.
    #[test]
    fn duplicates_are_invalid_request_once() {
        let p = plan(
            &[topic("d", 1, 1), topic("ok", 1, 1), topic("d", 2, 1)],
            &Config::default(),
        );
        assert_eq!(p.slots.len(), 2);
        assert_eq!(refusal_code(&p.slots[0]), Some(42));
        assert_eq!(p.slots[1], Slot::Forward { index: 0 });
        assert_eq!(
            p.to_create
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            vec!["ok"]
        );
    }

    /// Illegal names, manual assignments that are malformed or mixed with counts, and null or
    /// repeated configs are refused with Kafka's codes.
    #[test]
    fn request_errors() {
        let assignment = vec![CreatableReplicaAssignment::default().with_partition_index(0)];
        let gap = vec![CreatableReplicaAssignment::default().with_partition_index(1)];
        let topics = [
            topic("bad name", 1, 1),
            topic("m1", -1, -1).with_assignments(gap),
            topic("m2", 1, -1).with_assignments(assignment),
            topic("n", 1, 1).with_configs(vec![cfg("retention.ms", None)]),
            topic("r", 1, 1).with_configs(vec![
                cfg("retention.ms", Some("1")),
                cfg("retention.ms", Some("2")),
            ]),
            topic("good", 1, 1).with_configs(vec![cfg("cleanup.policy", Some("compact"))]),
        ];
        let p = plan(&topics, &Config::default());
        let codes: Vec<Option<i16>> = p.slots.iter().map(refusal_code).collect();
        assert_eq!(
            codes,
            vec![Some(17), Some(39), Some(42), Some(40), Some(40), None]
        );
        assert_eq!(
            p.to_create[0]
                .configs
                .get("cleanup.policy")
                .map(String::as_str),
            Some("compact")
        );
    }

    /// Results keep request order; a created topic reports its id, counts and
    /// full config list (overrides as source 1), an error -1 counts and null configs.
    #[test]
    fn assemble_merges_in_order() {
        let config = Config::default();
        let p = plan(
            &[
                topic("x", 2, 1),
                topic("dup", 1, 1),
                topic("dup", 1, 1),
                topic("y", 1, 1),
            ],
            &config,
        );
        let created = meta("x", 2, 1, &[("retention.ms", "10")]);
        let id = created.id;
        let outcomes = vec![
            Ok(created),
            Err(ControllerError::TopicAlreadyExists(
                "Topic 'y' already exists.".into(),
            )),
        ];
        let resp = assemble(p, outcomes, &config);
        let names: Vec<&str> = resp.topics.iter().map(|t| t.name.0.as_str()).collect();
        assert_eq!(names, vec!["x", "dup", "y"]);
        let x = &resp.topics[0];
        assert_eq!(
            (
                x.error_code,
                x.topic_id,
                x.num_partitions,
                x.replication_factor
            ),
            (0, id, 2, 1)
        );
        assert_eq!(x.error_message, None);
        let configs = x.configs.as_ref().expect("configs of a created topic");
        let retention = configs
            .iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .expect("retention.ms");
        assert_eq!(
            (
                retention.value.as_ref().map(|v| v.as_str()),
                retention.config_source
            ),
            (Some("10"), 1)
        );
        assert!(configs
            .iter()
            .filter(|c| c.name.as_str() != "retention.ms")
            .all(|c| c.config_source == 5));
        let y = &resp.topics[2];
        assert_eq!(
            (y.error_code, y.num_partitions, y.replication_factor),
            (36, -1, -1)
        );
        assert_eq!(
            y.error_message.as_ref().map(|m| m.as_str()),
            Some("Topic 'y' already exists.")
        );
        assert!(y.configs.is_none());
    }

    /// A controller answer shorter than the request (a broken contract) is
    /// an error entry, not a panic.
    #[test]
    fn missing_outcome_is_an_error() {
        let config = Config::default();
        let p = plan(&[topic("x", 1, 1)], &config);
        let resp = assemble(p, Vec::new(), &config);
        assert_eq!(
            resp.topics[0].error_code,
            ResponseError::RequestTimedOut.code()
        );
    }

    /// Every advertised version encodes both success and error entries.
    #[test]
    fn encodes_at_every_version() {
        use kafka_protocol::protocol::Encodable;
        let config = Config::default();
        let p = plan(&[topic("x", 1, 1), topic("bad name", 1, 1)], &config);
        let resp = assemble(p, vec![Ok(meta("x", 1, 1, &[]))], &config);
        for v in MIN_VERSION..=MAX_VERSION {
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
