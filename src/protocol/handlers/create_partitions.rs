//! CreatePartitions (key 37): grows topics to a new partition count.
//!
//! Runs on whichever shard holds the connection. Each entry is checked
//! against this shard's newest metadata snapshot first, so the common
//! mistakes get Kafka's own messages; then the controller
//! (`ControllerHandle::create_partitions`, one call per topic) re-checks
//! against the committed state, places the new partitions on (broker, shard)
//! pairs and returns after the metadata is published. Answers:
//! - a topic given twice: INVALID_REQUEST "Duplicate topic name.", once,
//! - manual assignments: INVALID_REQUEST (Fjord places replicas itself);
//!   an empty assignment list counts as none,
//! - an unknown topic: UNKNOWN_TOPIC_OR_PARTITION,
//! - a count not above the current one: INVALID_PARTITIONS.
//!
//! `validate_only` is passed to the controller; `timeout_ms` is ignored.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::{controller_error_code, ResponseError};
use crate::metadata::{ClusterMetadata, ControllerError};
use crate::protocol::handlers::create_topics::controller_error_message;
use crate::protocol::RequestContext;

/// Kafka 4.0 keeps v0; v3 is the newest kafka-protocol 0.18 knows.
pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 3;

/// What the handler decided for one entry before the controller call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Refused {
        code: i16,
        message: String,
    },
    /// Ask the controller to grow `name` to `count` partitions.
    Forward {
        count: i32,
    },
}

/// Checks one entry against the snapshot (duplicates are handled by `plan`).
pub fn check_topic(t: &CreatePartitionsTopic, metadata: &ClusterMetadata) -> Check {
    let name = t.name.0.as_str();
    if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
        return Check::Refused {
            code: ResponseError::InvalidRequest.code(),
            message: "Fjord does not support manual replica assignment: send no assignments and \
                      the new partitions are placed by the controller."
                .into(),
        };
    }
    let Some(topic) = metadata.topic(name) else {
        return Check::Refused {
            code: ResponseError::UnknownTopicOrPartition.code(),
            message: format!("The topic '{name}' does not exist."),
        };
    };
    let current = topic.partitions.len();
    let requested = t.count;
    if usize::try_from(requested).is_ok_and(|c| c == current) {
        return Check::Refused {
            code: ResponseError::InvalidPartitions.code(),
            message: format!("Topic already has {current} partition(s)."),
        };
    }
    if usize::try_from(requested).map_or(true, |c| c < current) {
        return Check::Refused {
            code: ResponseError::InvalidPartitions.code(),
            message: format!(
                "The topic {name} currently has {current} partition(s); {requested} would not be an increase."
            ),
        };
    }
    Check::Forward { count: requested }
}

/// One `(name, check)` per distinct topic, in request order; a name that
/// occurs more than once is refused once with INVALID_REQUEST.
pub fn plan(topics: &[CreatePartitionsTopic], metadata: &ClusterMetadata) -> Vec<(String, Check)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in topics {
        *counts.entry(t.name.0.as_str()).or_default() += 1;
    }
    let mut answered: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let name = t.name.0.as_str();
        if !answered.insert(name) {
            continue;
        }
        let check = if counts.get(name).copied().unwrap_or(0) > 1 {
            Check::Refused {
                code: ResponseError::InvalidRequest.code(),
                message: "Duplicate topic name.".into(),
            }
        } else {
            check_topic(t, metadata)
        };
        out.push((name.to_string(), check));
    }
    out
}

pub fn result(name: String, outcome: Result<(), (i16, String)>) -> CreatePartitionsTopicResult {
    let base =
        CreatePartitionsTopicResult::default().with_name(TopicName(StrBytes::from_string(name)));
    match outcome {
        Ok(()) => base.with_error_code(0).with_error_message(None),
        Err((code, message)) => base
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message))),
    }
}

fn controller_outcome(r: Result<(), ControllerError>) -> Result<(), (i16, String)> {
    r.map_err(|e| (controller_error_code(&e), controller_error_message(&e)))
}

pub async fn handle(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let metadata = ctx.shard.metadata();
    let mut results = Vec::with_capacity(req.topics.len());
    for (name, check) in plan(&req.topics, &metadata) {
        let outcome = match check {
            Check::Refused { code, message } => Err((code, message)),
            Check::Forward { count } => controller_outcome(
                ctx.shard
                    .controller
                    .create_partitions(name.clone(), count, req.validate_only)
                    .await,
            ),
        };
        results.push(result(name, outcome));
    }
    CreatePartitionsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionMeta, ReplicaPlacement, TopicMeta};
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;

    fn metadata(name: &str, partitions: i32) -> ClusterMetadata {
        let placement = ReplicaPlacement {
            node_id: 0,
            shard: 0,
        };
        let mut md = ClusterMetadata::default();
        md.topics.insert(
            name.to_string(),
            TopicMeta {
                name: name.to_string(),
                id: uuid::Uuid::new_v4(),
                partitions: (0..partitions)
                    .map(|p| PartitionMeta {
                        partition: p,
                        leader: placement,
                        leader_epoch: 0,
                        replicas: vec![placement],
                        isr: vec![0],
                        partition_epoch: 0,
                    })
                    .collect(),
                configs: BTreeMap::new(),
                internal: false,
            },
        );
        md
    }

    fn topic(name: &str, count: i32) -> CreatePartitionsTopic {
        CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_count(count)
    }

    fn code(c: &Check) -> i16 {
        match c {
            Check::Refused { code, .. } => *code,
            Check::Forward { .. } => 0,
        }
    }

    /// A count above the current one goes to the controller; equal, lower and
    /// negative counts are INVALID_PARTITIONS with Kafka's messages.
    #[test]
    fn count_must_increase() {
        let md = metadata("t", 3);
        assert_eq!(
            check_topic(&topic("t", 5), &md),
            Check::Forward { count: 5 }
        );
        assert_eq!(
            check_topic(&topic("t", 3), &md),
            Check::Refused {
                code: 37,
                message: "Topic already has 3 partition(s).".into()
            }
        );
        assert_eq!(
            check_topic(&topic("t", 2), &md),
            Check::Refused {
                code: 37,
                message: "The topic t currently has 3 partition(s); 2 would not be an increase."
                    .into()
            }
        );
        assert_eq!(code(&check_topic(&topic("t", -1), &md)), 37);
    }

    /// Unknown topics, manual assignments and duplicates are refused; an
    /// empty assignment list is no assignment.
    #[test]
    fn refusals() {
        let md = metadata("t", 1);
        assert_eq!(code(&check_topic(&topic("nope", 2), &md)), 3);
        let manual =
            topic("t", 2).with_assignments(Some(vec![CreatePartitionsAssignment::default()]));
        assert_eq!(code(&check_topic(&manual, &md)), 42);
        let empty = topic("t", 2).with_assignments(Some(Vec::new()));
        assert_eq!(check_topic(&empty, &md), Check::Forward { count: 2 });
        let p = plan(&[topic("t", 2), topic("nope", 2), topic("t", 3)], &md);
        let codes: Vec<(&str, i16)> = p.iter().map(|(n, c)| (n.as_str(), code(c))).collect();
        assert_eq!(codes, vec![("t", 42), ("nope", 3)]);
    }

    /// Results encode at every advertised version, success with a null message.
    #[test]
    fn encodes_at_every_version() {
        use kafka_protocol::protocol::Encodable;
        let resp = CreatePartitionsResponse::default().with_results(vec![
            result("a".into(), Ok(())),
            result(
                "b".into(),
                controller_outcome(Err(ControllerError::InvalidPartitions("x".into()))),
            ),
        ]);
        assert_eq!(resp.results[0].error_message, None);
        assert_eq!(resp.results[1].error_code, 37);
        for v in MIN_VERSION..=MAX_VERSION {
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
