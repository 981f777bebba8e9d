//! DeleteTopics (key 20): deletes topics by name (v1-5: `topic_names`) or
//! by name or id (v6: `topics`).
//!
//! Runs on whichever shard holds the connection. Ids are resolved to names
//! against this shard's newest metadata snapshot; the deletion itself is the
//! controller's (`ControllerHandle::delete_topics`), which decides whether a
//! name exists and returns after the new metadata is published. Answers:
//! - a name or id given twice: INVALID_REQUEST ("Duplicate topic name." /
//!   "Duplicate topic id."), once, and nothing of it is deleted (Kafka),
//! - v6 entry with both a name and an id: INVALID_REQUEST,
//! - an unknown id: UNKNOWN_TOPIC_ID; an unknown name:
//!   UNKNOWN_TOPIC_OR_PARTITION (from the controller).
//!
//! `timeout_ms` is ignored: the answer comes when the controller has committed.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::error::{controller_error_code, ResponseError};
use crate::metadata::{ClusterMetadata, ControllerError};
use crate::protocol::handlers::create_topics::controller_error_message;
use crate::protocol::RequestContext;

/// Kafka 4.0 removed v0 (KIP-896); v6 is the newest kafka-protocol 0.18 knows.
pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 6;

/// One requested deletion, as the client named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(String),
    Id(Uuid),
    /// v6 entry naming both; Kafka refuses it.
    Both(String, Uuid),
}

/// One response entry, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Refused {
        name: Option<String>,
        topic_id: Uuid,
        code: i16,
        message: String,
    },
    /// Answered by the controller's result at this index of `Plan::names`.
    Forward { index: usize, name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub slots: Vec<Slot>,
    /// Names to delete, in order, each once.
    pub names: Vec<String>,
}

/// The request's entries: `topic_names` before v6, `topics` from v6.
pub fn targets(req: &DeleteTopicsRequest, version: i16) -> Vec<Target> {
    if version < 6 {
        return req
            .topic_names
            .iter()
            .map(|n| Target::Name(n.0.as_str().to_string()))
            .collect();
    }
    req.topics
        .iter()
        .map(|t| match &t.name {
            Some(n) if !t.topic_id.is_nil() => Target::Both(n.0.as_str().to_string(), t.topic_id),
            Some(n) => Target::Name(n.0.as_str().to_string()),
            None => Target::Id(t.topic_id),
        })
        .collect()
}

/// Resolves ids, refuses duplicates and malformed entries. A topic reached
/// twice (same name, same id, or a name and its id) is one INVALID_REQUEST.
pub fn plan(targets: &[Target], metadata: &ClusterMetadata) -> Plan {
    let mut name_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut id_counts: BTreeMap<Uuid, usize> = BTreeMap::new();
    for t in targets {
        match t {
            Target::Name(n) => *name_counts.entry(n.clone()).or_default() += 1,
            Target::Id(id) => {
                *id_counts.entry(*id).or_default() += 1;
                if let Some(topic) = metadata.topic_by_id(*id) {
                    *name_counts.entry(topic.name.clone()).or_default() += 1;
                }
            }
            Target::Both(..) => {}
        }
    }
    let mut answered_names: BTreeSet<String> = BTreeSet::new();
    let mut answered_ids: BTreeSet<Uuid> = BTreeSet::new();
    let mut slots = Vec::with_capacity(targets.len());
    let mut names = Vec::with_capacity(targets.len());
    let invalid = |name: Option<String>, topic_id: Uuid, message: &str| Slot::Refused {
        name,
        topic_id,
        code: ResponseError::InvalidRequest.code(),
        message: message.to_string(),
    };
    for t in targets {
        match t {
            Target::Both(name, id) => slots.push(invalid(
                Some(name.clone()),
                *id,
                "You may not specify both topic name and topic id.",
            )),
            Target::Id(id) => {
                if !answered_ids.insert(*id) {
                    continue;
                }
                if id_counts.get(id).copied().unwrap_or(0) > 1 {
                    slots.push(invalid(None, *id, "Duplicate topic id."));
                    continue;
                }
                let Some(topic) = metadata.topic_by_id(*id) else {
                    slots.push(Slot::Refused {
                        name: None,
                        topic_id: *id,
                        code: ResponseError::UnknownTopicId.code(),
                        message: format!("Topic id {id} does not exist."),
                    });
                    continue;
                };
                if !answered_names.insert(topic.name.clone()) {
                    continue;
                }
                if name_counts.get(&topic.name).copied().unwrap_or(0) > 1 {
                    slots.push(invalid(
                        Some(topic.name.clone()),
                        *id,
                        "Duplicate topic name.",
                    ));
                    continue;
                }
                slots.push(Slot::Forward {
                    index: names.len(),
                    name: topic.name.clone(),
                });
                names.push(topic.name.clone());
            }
            Target::Name(name) => {
                if !answered_names.insert(name.clone()) {
                    continue;
                }
                if name_counts.get(name).copied().unwrap_or(0) > 1 {
                    slots.push(invalid(
                        Some(name.clone()),
                        Uuid::nil(),
                        "Duplicate topic name.",
                    ));
                    continue;
                }
                slots.push(Slot::Forward {
                    index: names.len(),
                    name: name.clone(),
                });
                names.push(name.clone());
            }
        }
    }
    Plan { slots, names }
}

fn result(
    name: Option<String>,
    topic_id: Uuid,
    code: i16,
    message: Option<String>,
) -> DeletableTopicResult {
    DeletableTopicResult::default()
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(topic_id)
        .with_error_code(code)
        .with_error_message(message.map(StrBytes::from_string))
}

/// Merges refusals with the controller's outcomes (one per `plan.names`).
pub fn assemble(plan: Plan, outcomes: Vec<Result<Uuid, ControllerError>>) -> DeleteTopicsResponse {
    let mut outcomes = outcomes.into_iter().map(Some).collect::<Vec<_>>();
    let responses = plan
        .slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Refused {
                name,
                topic_id,
                code,
                message,
            } => result(name, topic_id, code, Some(message)),
            Slot::Forward { index, name } => match outcomes.get_mut(index).and_then(Option::take) {
                Some(Ok(id)) => result(Some(name), id, 0, None),
                Some(Err(e)) => result(
                    Some(name),
                    Uuid::nil(),
                    controller_error_code(&e),
                    Some(controller_error_message(&e)),
                ),
                None => {
                    let e = ControllerError::Unavailable(
                        "the controller gave no answer for this topic".into(),
                    );
                    result(
                        Some(name),
                        Uuid::nil(),
                        controller_error_code(&e),
                        Some(controller_error_message(&e)),
                    )
                }
            },
        })
        .collect();
    DeleteTopicsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses)
}

pub async fn handle(ctx: &RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let metadata = ctx.shard.metadata();
    let plan = plan(&targets(&req, ctx.api_version), &metadata);
    let outcomes = if plan.names.is_empty() {
        Vec::new()
    } else {
        ctx.shard.controller.delete_topics(plan.names.clone()).await
    };
    assemble(plan, outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicMeta;
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;

    fn metadata(names: &[&str]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for n in names {
            md.topics.insert(
                n.to_string(),
                TopicMeta {
                    name: n.to_string(),
                    id: Uuid::new_v4(),
                    partitions: Vec::new(),
                    configs: BTreeMap::new(),
                    internal: false,
                },
            );
        }
        md
    }

    fn id_of(md: &ClusterMetadata, name: &str) -> Uuid {
        md.topic(name).map(|t| t.id).unwrap_or_else(Uuid::nil)
    }

    /// v1-5 read topic_names, v6 reads topics (name, id, or both).
    #[test]
    fn targets_follow_the_version() {
        let id = Uuid::new_v4();
        let name = |s: &str| TopicName(StrBytes::from_string(s.to_string()));
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![name("a")])
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(name("b"))),
                DeleteTopicState::default().with_topic_id(id),
                DeleteTopicState::default()
                    .with_name(Some(name("c")))
                    .with_topic_id(id),
            ]);
        assert_eq!(targets(&req, 5), vec![Target::Name("a".into())]);
        assert_eq!(
            targets(&req, 6),
            vec![
                Target::Name("b".into()),
                Target::Id(id),
                Target::Both("c".into(), id)
            ]
        );
    }

    /// Ids resolve to names; unknown ids are UNKNOWN_TOPIC_ID; both set is INVALID_REQUEST.
    #[test]
    fn ids_resolve_against_metadata() {
        let md = metadata(&["t1", "t2"]);
        let unknown = Uuid::new_v4();
        let p = plan(
            &[
                Target::Id(id_of(&md, "t1")),
                Target::Id(unknown),
                Target::Name("t2".into()),
                Target::Both("x".into(), unknown),
            ],
            &md,
        );
        assert_eq!(p.names, vec!["t1".to_string(), "t2".to_string()]);
        assert_eq!(
            p.slots[0],
            Slot::Forward {
                index: 0,
                name: "t1".into()
            }
        );
        assert!(
            matches!(&p.slots[1], Slot::Refused { code: 100, topic_id, .. } if *topic_id == unknown)
        );
        assert!(matches!(&p.slots[3], Slot::Refused { code: 42, .. }));
    }

    /// A topic named twice, or by name and by its id, is one INVALID_REQUEST and is not deleted.
    #[test]
    fn duplicates_are_refused_once() {
        let md = metadata(&["a", "b"]);
        let p = plan(
            &[
                Target::Name("a".into()),
                Target::Name("a".into()),
                Target::Name("b".into()),
            ],
            &md,
        );
        assert_eq!(p.names, vec!["b".to_string()]);
        assert_eq!(p.slots.len(), 2);
        assert!(matches!(&p.slots[0], Slot::Refused { code: 42, .. }));
        let p = plan(
            &[Target::Name("a".into()), Target::Id(id_of(&md, "a"))],
            &md,
        );
        assert!(p.names.is_empty());
        assert_eq!(p.slots.len(), 1);
        let id = id_of(&md, "b");
        let p = plan(&[Target::Id(id), Target::Id(id)], &md);
        assert!(p.names.is_empty());
        assert!(matches!(&p.slots[..], [Slot::Refused { code: 42, .. }]));
    }

    /// Controller outcomes fill the forwarded slots: the id on success, the
    /// code and message on failure; every advertised version encodes it.
    #[test]
    fn assemble_and_encode() {
        use kafka_protocol::protocol::Encodable;
        let md = metadata(&["a"]);
        let p = plan(
            &[
                Target::Name("a".into()),
                Target::Name("gone".into()),
                Target::Id(Uuid::new_v4()),
            ],
            &md,
        );
        let id = id_of(&md, "a");
        let resp = assemble(
            p,
            vec![
                Ok(id),
                Err(ControllerError::UnknownTopic("no such topic".into())),
            ],
        );
        let r = &resp.responses;
        assert_eq!(
            (r[0].error_code, r[0].topic_id, r[0].error_message.clone()),
            (0, id, None)
        );
        assert_eq!(r[1].error_code, 3);
        assert_eq!(r[1].name.as_ref().map(|n| n.0.as_str()), Some("gone"));
        assert_eq!(r[2].error_code, 100);
        for v in MIN_VERSION..=MAX_VERSION {
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
