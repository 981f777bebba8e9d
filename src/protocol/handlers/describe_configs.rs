//! DescribeConfigs (key 32): the effective configs of topics and of this
//! broker, under Kafka's names, with where each value comes from.
//!
//! Runs on whichever shard holds the connection. It only reads: the shard's
//! newest metadata snapshot (topic overrides), the broker `Config` the shard
//! was started with, and the static table `controller::topic_config`. It
//! never calls the controller or another shard.
//!
//! A topic config's value is, in order: the topic's override (source
//! DYNAMIC_TOPIC_CONFIG), else the broker setting it defaults from when the
//! operator set one (STATIC_BROKER_CONFIG), else the default
//! (DEFAULT_CONFIG). Eight topic configs default from broker settings, as in
//! Kafka (`segment.bytes` from `log.segment.bytes`, …); the rest default to
//! Kafka's topic default. "The operator set it" is judged by comparing with
//! `Config::default()`: a setting given explicitly with its default value is
//! reported as DEFAULT_CONFIG, which is the same value either way.
//!
//! `describe_topic_configs` is shared with CreateTopics (v5+ returns the new
//! topic's configs).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::config::Config;
use crate::controller::topic_config::{ConfigKind, TOPIC_CONFIGS};
use crate::error::{controller_error_code, ResponseError};
use crate::metadata::{validate_topic_name, ClusterMetadata};
use crate::protocol::handlers::create_topics::controller_error_message;
use crate::protocol::RequestContext;

/// Kafka 4.0 removed v0 (KIP-896); v4 is the newest kafka-protocol 0.18 knows.
pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 4;

/// Kafka's `ConfigResource.Type` ids.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

/// Kafka's `DescribeConfigsResponse.ConfigSource` ids that Fjord reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// A topic-level override (Kafka: TOPIC_CONFIG / DYNAMIC_TOPIC_CONFIG).
    DynamicTopic = 1,
    /// Set by the operator in the broker's file, env or flags.
    StaticBroker = 4,
    /// The built-in default.
    Default = 5,
}

impl ConfigSource {
    pub fn id(self) -> i8 {
        self as i8
    }
}

/// Kafka's `DescribeConfigsResponse.ConfigType` id of a config kind.
pub fn config_type_id(kind: ConfigKind) -> i8 {
    match kind {
        ConfigKind::Boolean => 1,
        ConfigKind::String => 2,
        ConfigKind::Int => 3,
        ConfigKind::Short => 4,
        ConfigKind::Long => 5,
        ConfigKind::Double => 6,
        ConfigKind::List => 7,
        ConfigKind::Class => 8,
        ConfigKind::Password => 9,
    }
}

/// One level a config's value is defined at, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

/// One described config, independent of the wire version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    pub kind: ConfigKind,
    pub doc: &'static str,
    /// Every level that defines this config, the effective one first.
    pub synonyms: Vec<Synonym>,
}

/// A broker setting, read from `Config`, under its Kafka name.
struct BrokerSetting {
    name: &'static str,
    kind: ConfigKind,
    doc: &'static str,
    value: fn(&Config) -> String,
}

/// The Kafka release whose protocol Fjord speaks, as Kafka names it in
/// `inter.broker.protocol.version`. UIs read it to decide what the cluster
/// can do (kafka-ui: IncrementalAlterConfigs, config docs and quotas from
/// 2.3/2.6 on; without it kafka-ui shows "Unknown" and falls back to
/// legacy AlterConfigs).
pub const KAFKA_PROTOCOL_VERSION: &str = "3.9-IV0";

/// Every broker setting DescribeConfigs(BROKER) reports, by Kafka name.
const BROKER_SETTINGS: &[BrokerSetting] = &[
    BrokerSetting {
        name: "auto.create.topics.enable",
        kind: ConfigKind::Boolean,
        doc: "Enable auto creation of topics on the server.",
        value: |c| c.auto_create_topics_enable.to_string(),
    },
    BrokerSetting {
        name: "broker.id",
        kind: ConfigKind::Int,
        doc: "The broker id for this server (Fjord: the same as node.id).",
        value: |c| c.node_id.to_string(),
    },
    BrokerSetting {
        name: "default.replication.factor",
        kind: ConfigKind::Int,
        doc: "The replication factor for topics created with the default.",
        value: |c| c.default_replication_factor.to_string(),
    },
    BrokerSetting {
        name: "delete.topic.enable",
        kind: ConfigKind::Boolean,
        doc: "Topics can be deleted (Fjord: always).",
        value: |_| "true".to_string(),
    },
    BrokerSetting {
        name: "log.cleaner.backoff.ms",
        kind: ConfigKind::Long,
        doc: "The amount of time to sleep when there are no logs to clean.",
        value: |c| c.log_cleaner_backoff_ms.to_string(),
    },
    BrokerSetting {
        name: "log.cleaner.max.compaction.lag.ms",
        kind: ConfigKind::Long,
        doc: "The maximum time a message will remain ineligible for compaction in the log.",
        value: |c| c.log_cleaner_max_compaction_lag_ms.to_string(),
    },
    BrokerSetting {
        name: "log.cleaner.min.compaction.lag.ms",
        kind: ConfigKind::Long,
        doc: "The minimum time a message will remain uncompacted in the log.",
        value: |c| c.log_cleaner_min_compaction_lag_ms.to_string(),
    },
    BrokerSetting {
        name: "log.dirs",
        kind: ConfigKind::String,
        doc: "The directory in which the log data is kept (Fjord: data_dir).",
        value: |c| c.data_dir.display().to_string(),
    },
    BrokerSetting {
        name: "inter.broker.protocol.version",
        kind: ConfigKind::String,
        doc: "The Kafka protocol version the brokers speak (Fjord: fixed by the build).",
        value: |_| KAFKA_PROTOCOL_VERSION.to_string(),
    },
    BrokerSetting {
        name: "log.index.interval.bytes",
        kind: ConfigKind::Int,
        doc: "The interval with which we add an entry to the offset index.",
        value: |c| c.log_index_interval_bytes.to_string(),
    },
    BrokerSetting {
        name: "log.retention.bytes",
        kind: ConfigKind::Long,
        doc: "The maximum size of the log before deleting it.",
        value: |c| c.log_retention_bytes.to_string(),
    },
    BrokerSetting {
        name: "log.retention.check.interval.ms",
        kind: ConfigKind::Long,
        doc: "The frequency in milliseconds that the log cleaner checks whether any log is eligible for deletion.",
        value: |c| c.log_retention_check_interval_ms.to_string(),
    },
    BrokerSetting {
        name: "log.retention.ms",
        kind: ConfigKind::Long,
        doc: "The number of milliseconds to keep a log file before deleting it; -1 for no limit.",
        value: |c| c.log_retention_ms.to_string(),
    },
    BrokerSetting {
        name: "log.roll.ms",
        kind: ConfigKind::Long,
        doc: "The maximum time before a new log segment is rolled out.",
        value: |c| c.log_roll_ms.to_string(),
    },
    BrokerSetting {
        name: "log.segment.bytes",
        kind: ConfigKind::Int,
        doc: "The maximum size of a single log file.",
        value: |c| c.log_segment_bytes.to_string(),
    },
    BrokerSetting {
        name: "message.max.bytes",
        kind: ConfigKind::Int,
        doc: "The largest record batch size allowed.",
        value: |c| c.message_max_bytes.to_string(),
    },
    BrokerSetting {
        name: "node.id",
        kind: ConfigKind::Int,
        doc: "The node id of this server.",
        value: |c| c.node_id.to_string(),
    },
    BrokerSetting {
        name: "num.partitions",
        kind: ConfigKind::Int,
        doc: "The default number of log partitions per topic.",
        value: |c| c.num_partitions.to_string(),
    },
    BrokerSetting {
        name: "socket.request.max.bytes",
        kind: ConfigKind::Int,
        doc: "The maximum number of bytes in a socket request.",
        value: |c| c.socket_request_max_bytes.to_string(),
    },
];

/// The broker setting a topic config defaults from, when Fjord has one.
fn broker_synonym(topic_config: &str) -> Option<&'static BrokerSetting> {
    let broker_name = match topic_config {
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "index.interval.bytes" => "log.index.interval.bytes",
        "max.message.bytes" => "message.max.bytes",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        _ => return None,
    };
    BROKER_SETTINGS.iter().find(|s| s.name == broker_name)
}

/// A broker setting's value and synonyms: STATIC_BROKER_CONFIG when it
/// differs from the default, then the DEFAULT_CONFIG level.
fn broker_levels(setting: &BrokerSetting, config: &Config, defaults: &Config) -> Vec<Synonym> {
    let current = (setting.value)(config);
    let default = (setting.value)(defaults);
    let mut levels = Vec::with_capacity(2);
    if current != default {
        levels.push(Synonym {
            name: setting.name.to_string(),
            value: current,
            source: ConfigSource::StaticBroker,
        });
    }
    levels.push(Synonym {
        name: setting.name.to_string(),
        value: default,
        source: ConfigSource::Default,
    });
    levels
}

/// Every topic config in `TOPIC_CONFIGS` with its effective value for a
/// topic whose overrides are `overrides`. Overrides Fjord does not know
/// (none pass validation, but an old snapshot might hold one) are skipped.
pub fn describe_topic_configs(
    overrides: &BTreeMap<String, String>,
    config: &Config,
) -> Vec<DescribedConfig> {
    let defaults = Config::default();
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let mut synonyms = Vec::with_capacity(3);
            if let Some(v) = overrides.get(def.name) {
                synonyms.push(Synonym {
                    name: def.name.to_string(),
                    value: v.clone(),
                    source: ConfigSource::DynamicTopic,
                });
            }
            match broker_synonym(def.name) {
                Some(setting) => synonyms.extend(broker_levels(setting, config, &defaults)),
                None => synonyms.push(Synonym {
                    name: def.name.to_string(),
                    value: def.default.to_string(),
                    source: ConfigSource::Default,
                }),
            }
            // `synonyms` always holds at least the default level.
            let effective = &synonyms[0];
            DescribedConfig {
                name: def.name.to_string(),
                value: effective.value.clone(),
                source: effective.source,
                read_only: false,
                kind: def.kind,
                doc: def.doc,
                synonyms,
            }
        })
        .collect()
}

/// This broker's settings under Kafka names. Read-only: Fjord has no
/// AlterConfigs, so none of them can be changed at run time.
pub fn describe_broker_configs(config: &Config) -> Vec<DescribedConfig> {
    let defaults = Config::default();
    BROKER_SETTINGS
        .iter()
        .map(|setting| {
            let synonyms = broker_levels(setting, config, &defaults);
            let effective = &synonyms[0];
            DescribedConfig {
                name: setting.name.to_string(),
                value: effective.value.clone(),
                source: effective.source,
                read_only: true,
                kind: setting.kind,
                doc: setting.doc,
                synonyms,
            }
        })
        .collect()
}

/// What one DescribeConfigs resource resolves to before wire encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceOutcome {
    Configs(Vec<DescribedConfig>),
    Error { code: i16, message: String },
}

/// Resolves one requested resource against metadata and the broker config.
pub fn describe_resource(
    resource_type: i8,
    resource_name: &str,
    metadata: &ClusterMetadata,
    config: &Config,
) -> ResourceOutcome {
    match resource_type {
        RESOURCE_TOPIC => {
            if let Err(e) = validate_topic_name(resource_name) {
                return ResourceOutcome::Error { code: controller_error_code(&e), message: controller_error_message(&e) };
            }
            match metadata.topic(resource_name) {
                Some(t) => ResourceOutcome::Configs(describe_topic_configs(&t.configs, config)),
                None => ResourceOutcome::Error {
                    code: ResponseError::UnknownTopicOrPartition.code(),
                    message: format!("The topic '{resource_name}' does not exist."),
                },
            }
        }
        RESOURCE_BROKER => {
            // Kafka: "" is the cluster-wide default; Fjord's defaults are its
            // static settings, so both answer the same list.
            let own = config.node_id.to_string();
            if resource_name.is_empty() || resource_name == own {
                return ResourceOutcome::Configs(describe_broker_configs(config));
            }
            let message = if resource_name.parse::<i32>().is_err() {
                format!("Broker id must be an integer, but it is: {resource_name}")
            } else {
                format!("Unexpected broker id, expected {own} or empty string, but received {resource_name}")
            };
            ResourceOutcome::Error { code: ResponseError::InvalidRequest.code(), message }
        }
        RESOURCE_BROKER_LOGGER => ResourceOutcome::Error {
            code: ResponseError::InvalidRequest.code(),
            message: "Fjord does not expose broker loggers (resource type BROKER_LOGGER) through DescribeConfigs".into(),
        },
        other => ResourceOutcome::Error {
            code: ResponseError::InvalidRequest.code(),
            message: format!("Unsupported resource type {other} for DescribeConfigs"),
        },
    }
}

/// Keeps only the requested keys; null or an empty list means all (Kafka).
fn filter_keys(configs: Vec<DescribedConfig>, keys: Option<&[StrBytes]>) -> Vec<DescribedConfig> {
    match keys {
        Some(keys) if !keys.is_empty() => configs
            .into_iter()
            .filter(|c| keys.iter().any(|k| k.as_str() == c.name))
            .collect(),
        _ => configs,
    }
}

fn to_wire(
    c: DescribedConfig,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        c.synonyms
            .into_iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(s.name))
                    .with_value(Some(StrBytes::from_string(s.value)))
                    .with_source(s.source.id())
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(c.name))
        .with_value(Some(StrBytes::from_string(c.value)))
        .with_read_only(c.read_only)
        .with_config_source(c.source.id())
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(config_type_id(c.kind))
        .with_documentation(include_documentation.then(|| StrBytes::from_static_str(c.doc)))
}

/// The whole response, from a snapshot and the broker config. Pure.
pub fn build_response(
    req: &DescribeConfigsRequest,
    metadata: &ClusterMetadata,
    config: &Config,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r: &DescribeConfigsResource| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match describe_resource(r.resource_type, r.resource_name.as_str(), metadata, config) {
                ResourceOutcome::Configs(configs) => {
                    let configs = filter_keys(configs, r.configuration_keys.as_deref())
                        .into_iter()
                        .map(|c| to_wire(c, req.include_synonyms, req.include_documentation))
                        .collect();
                    base.with_error_code(0)
                        .with_error_message(None)
                        .with_configs(configs)
                }
                ResourceOutcome::Error { code, message } => base
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results)
}

pub async fn handle(ctx: &RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let metadata = ctx.shard.metadata();
    build_response(&req, &metadata, &ctx.shard.config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicMeta;

    fn metadata_with(topic: &str, overrides: &[(&str, &str)]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        md.topics.insert(
            topic.to_string(),
            TopicMeta {
                name: topic.to_string(),
                id: uuid::Uuid::new_v4(),
                partitions: Vec::new(),
                configs: overrides
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                internal: false,
            },
        );
        md
    }

    fn find<'a>(configs: &'a [DescribedConfig], name: &str) -> &'a DescribedConfig {
        configs
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    fn topic_request(
        name: &str,
        keys: Option<Vec<&str>>,
        synonyms: bool,
        docs: bool,
    ) -> DescribeConfigsRequest {
        DescribeConfigsRequest::default()
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(keys.map(|ks| {
                    ks.into_iter()
                        .map(|k| StrBytes::from_string(k.to_string()))
                        .collect()
                }))])
            .with_include_synonyms(synonyms)
            .with_include_documentation(docs)
    }

    /// Every known topic config is listed; an override is DYNAMIC_TOPIC_CONFIG,
    /// an untouched one the default with DEFAULT_CONFIG.
    #[test]
    fn topic_overrides_and_defaults() {
        let overrides: BTreeMap<String, String> =
            [("retention.ms".to_string(), "1000".to_string())].into();
        let configs = describe_topic_configs(&overrides, &Config::default());
        assert_eq!(configs.len(), TOPIC_CONFIGS.len());
        let r = find(&configs, "retention.ms");
        assert_eq!(
            (r.value.as_str(), r.source),
            ("1000", ConfigSource::DynamicTopic)
        );
        assert_eq!(r.synonyms[0].source, ConfigSource::DynamicTopic);
        assert_eq!(
            r.synonyms.last().map(|s| s.name.as_str()),
            Some("log.retention.ms")
        );
        let c = find(&configs, "cleanup.policy");
        assert_eq!(
            (c.value.as_str(), c.source, c.read_only),
            ("delete", ConfigSource::Default, false)
        );
        let s = find(&configs, "segment.bytes");
        assert_eq!(
            (s.value.as_str(), s.source),
            ("1073741824", ConfigSource::Default)
        );
    }

    /// A topic config that defaults from a broker setting shows the broker's
    /// value with STATIC_BROKER_CONFIG when the operator changed it.
    #[test]
    fn broker_setting_feeds_topic_default() {
        let config = Config {
            log_segment_bytes: 8 << 20,
            message_max_bytes: 2_000_000,
            ..Config::default()
        };
        let configs = describe_topic_configs(&BTreeMap::new(), &config);
        let s = find(&configs, "segment.bytes");
        assert_eq!(
            (s.value.as_str(), s.source),
            ("8388608", ConfigSource::StaticBroker)
        );
        assert_eq!(
            s.synonyms,
            vec![
                Synonym {
                    name: "log.segment.bytes".into(),
                    value: "8388608".into(),
                    source: ConfigSource::StaticBroker
                },
                Synonym {
                    name: "log.segment.bytes".into(),
                    value: "1073741824".into(),
                    source: ConfigSource::Default
                },
            ]
        );
        let m = find(&configs, "max.message.bytes");
        assert_eq!(
            (m.value.as_str(), m.source),
            ("2000000", ConfigSource::StaticBroker)
        );
    }

    /// configuration_keys filters (unknown keys are just absent), null and
    /// empty mean all; synonyms and documentation only when asked for.
    #[test]
    fn response_filtering_synonyms_and_docs() {
        let md = metadata_with("t", &[("cleanup.policy", "compact")]);
        let config = Config::default();
        let resp = build_response(
            &topic_request("t", Some(vec!["cleanup.policy", "no.such"]), false, false),
            &md,
            &config,
        );
        let r = &resp.results[0];
        assert_eq!(r.error_code, 0);
        assert_eq!(r.error_message, None);
        assert_eq!(r.configs.len(), 1);
        let c = &r.configs[0];
        assert_eq!(c.name.as_str(), "cleanup.policy");
        assert_eq!(c.value.as_ref().map(|v| v.as_str()), Some("compact"));
        assert_eq!(c.config_source, 1);
        assert_eq!(c.config_type, 7);
        assert!(c.synonyms.is_empty());
        assert_eq!(c.documentation, None);

        let all = build_response(&topic_request("t", None, true, true), &md, &config);
        assert_eq!(all.results[0].configs.len(), TOPIC_CONFIGS.len());
        assert!(all.results[0]
            .configs
            .iter()
            .all(|c| !c.synonyms.is_empty()));
        assert!(all.results[0]
            .configs
            .iter()
            .all(|c| c.documentation.as_ref().is_some_and(|d| !d.is_empty())));
        let empty = build_response(
            &topic_request("t", Some(vec![]), false, false),
            &md,
            &config,
        );
        assert_eq!(empty.results[0].configs.len(), TOPIC_CONFIGS.len());
    }

    /// An unknown topic is UNKNOWN_TOPIC_OR_PARTITION and an illegal name
    /// INVALID_TOPIC_EXCEPTION, each with a message and no configs.
    #[test]
    fn unknown_and_invalid_topics() {
        let md = ClusterMetadata::default();
        let resp = build_response(
            &topic_request("missing", None, false, false),
            &md,
            &Config::default(),
        );
        assert_eq!(resp.results[0].error_code, 3);
        assert!(resp.results[0]
            .error_message
            .as_ref()
            .is_some_and(|m| m.contains("missing")));
        assert!(resp.results[0].configs.is_empty());
        let resp = build_response(
            &topic_request("bad name", None, false, false),
            &md,
            &Config::default(),
        );
        assert_eq!(resp.results[0].error_code, 17);
    }

    /// BROKER answers for this node id and for "", refuses other ids and
    /// BROKER_LOGGER with INVALID_REQUEST.
    #[test]
    fn broker_resource() {
        let config = Config {
            node_id: 3,
            num_partitions: 6,
            ..Config::default()
        };
        let md = ClusterMetadata::default();
        for name in ["3", ""] {
            let ResourceOutcome::Configs(configs) =
                describe_resource(RESOURCE_BROKER, name, &md, &config)
            else {
                panic!("broker {name:?} refused");
            };
            let n = find(&configs, "num.partitions");
            assert_eq!(
                (n.value.as_str(), n.source, n.read_only),
                ("6", ConfigSource::StaticBroker, true)
            );
            let a = find(&configs, "auto.create.topics.enable");
            assert_eq!(
                (a.value.as_str(), a.source),
                ("true", ConfigSource::Default)
            );
            assert_eq!(find(&configs, "node.id").value, "3");
            assert_eq!(
                find(&configs, "socket.request.max.bytes").value,
                "104857600"
            );
        }
        for (ty, name) in [
            (RESOURCE_BROKER, "4"),
            (RESOURCE_BROKER, "x"),
            (RESOURCE_BROKER_LOGGER, "3"),
            (9, "3"),
        ] {
            match describe_resource(ty, name, &md, &config) {
                ResourceOutcome::Error { code, .. } => assert_eq!(code, 42, "{ty} {name}"),
                other => panic!("{ty} {name}: {other:?}"),
            }
        }
    }

    /// Every version this handler advertises encodes the response it builds.
    #[test]
    fn encodes_at_every_version() {
        use kafka_protocol::protocol::Encodable;
        let md = metadata_with("t", &[("retention.ms", "5")]);
        for docs in [false, true] {
            let resp = build_response(
                &topic_request("t", None, true, docs),
                &md,
                &Config::default(),
            );
            for v in MIN_VERSION..=MAX_VERSION {
                let mut buf = bytes::BytesMut::new();
                resp.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("v{v}: {e}"));
            }
        }
    }
}
