//! One typed configuration for `fjord serve`.
//!
//! Precedence: defaults < file (`--config fjord.toml`) < environment
//! (`FJORD_<NAME>`) < command-line flags. Every setting has one canonical
//! name: Fjord's own use underscores (`data_dir`, flag `--data-dir`), broker
//! settings borrowed from Kafka keep Kafka's dotted names
//! (`log.segment.bytes`, flag `--log.segment.bytes`). The environment name is
//! the canonical name upper-cased with dots and dashes as underscores
//! (`FJORD_LOG_SEGMENT_BYTES`), the convention of Kafka's container images.
//! In the TOML file both `data_dir = "…"` and dotted keys
//! (`log.segment.bytes = 1024`, which TOML reads as nested tables) work.
//!
//! A bad value is refused with a message naming the setting; nothing falls
//! back silently. Parsed once in `main`, then read-only and cloned to shards.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Kafka's default `socket.request.max.bytes`.
const SOCKET_REQUEST_MAX_BYTES_DEFAULT: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub kafka_addr: SocketAddr,
    /// Host and port clients are told to connect to (Metadata responses).
    pub advertised_kafka_host: String,
    pub advertised_kafka_port: u16,
    pub admin_addr: SocketAddr,
    /// The admin HTTP API's write endpoints (controlled shutdown, replica moves) answer; off: 403.
    pub admin_api_writes_enabled: bool,
    pub shards: usize,
    /// Shards are not pinned to cores (Redpanda's `--overprovisioned`).
    pub overprovisioned: bool,
    pub node_id: i32,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub log_segment_bytes: u64,
    pub log_roll_ms: i64,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval_ms: u64,
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: memory (per shard) for the compaction key map.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `log.cleaner.min.compaction.lag.ms`: default of the topic's `min.compaction.lag.ms`.
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// `log.cleaner.max.compaction.lag.ms`: default of the topic's `max.compaction.lag.ms`.
    pub log_cleaner_max_compaction_lag_ms: i64,
    pub log_index_interval_bytes: u32,
    pub socket_request_max_bytes: u64,
    pub message_max_bytes: i32,
    /// Per-shard bound of the cache of recent batches served to fetches.
    pub batch_cache_bytes: usize,
    /// Bound on connections per shard; more are refused (closed at accept).
    pub max_connections_per_shard: usize,
    /// Open segment files for the whole node (0: half the open-file limit).
    pub segment_files_open_max: usize,
    /// `producer.id.expiration.ms`: idempotent producers idle this long are forgotten.
    pub producer_id_expiration_ms: i64,
    /// Idempotent producers remembered per partition (least recently written forgotten first).
    pub producer_state_entries_max: usize,
    /// Partitions of `__consumer_offsets` when the broker creates it.
    pub offsets_topic_num_partitions: i32,
    /// Committed offsets of an empty group expire this long after it became
    /// empty (standalone groups: after the commit).
    pub offsets_retention_minutes: i64,
    /// The same in milliseconds; when set it wins (Redpanda has a seconds
    /// setting for the same reason: minutes are coarse for short-lived groups).
    pub fjord_offsets_retention_ms: Option<i64>,
    /// How often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: i64,
    /// Partitions of `__transaction_state` when the broker creates it.
    pub transaction_state_log_num_partitions: i32,
    /// Largest `transaction.timeout.ms` a transactional producer may ask for.
    pub transaction_max_timeout_ms: i64,
    /// A transactional id with no transaction open and no request for this
    /// long is forgotten (tombstoned in `__transaction_state`).
    pub transactional_id_expiration_ms: i64,
    /// How often the coordinator looks for expired transactional ids.
    pub transaction_remove_expired_transaction_cleanup_interval_ms: i64,
    /// How long an empty group waits for more members before its first rebalance.
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// Members per consumer group; joins beyond it get GROUP_MAX_SIZE_REACHED.
    pub group_max_size: usize,
    /// Protocol metadata bytes one JoinGroup may carry (sum over its protocols).
    pub group_member_metadata_max_bytes: usize,
    /// `process.roles`: this node is a broker (serves Kafka clients).
    pub role_broker: bool,
    /// `process.roles`: this node is a controller (a voter when voters are given).
    pub role_controller: bool,
    /// `controller.quorum.voters` (`ID@HOST:PORT,...`); empty: single-node mode.
    pub controller_quorum_voters: Vec<crate::controller::Voter>,
    /// Where this node's controller RPC listens (`--controller-addr`).
    pub controller_addr: Option<SocketAddr>,
    /// `broker.rack`: replicas of a partition go to different racks while racks remain.
    pub broker_rack: Option<String>,
    pub broker_heartbeat_interval_ms: u64,
    pub broker_session_timeout_ms: u64,
    /// Replication factor of `__consumer_offsets` when the broker creates it.
    pub offsets_topic_replication_factor: i16,
    /// Replication factor of `__transaction_state` when the broker creates it.
    pub transaction_state_log_replication_factor: i16,
    /// `min.insync.replicas` of `__transaction_state` when the broker creates it.
    pub transaction_state_log_min_isr: i32,
    /// Broker default of the topic setting `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// A follower not caught up with its leader for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// Longest a follower's fetch waits at the leader for new data.
    pub replica_fetch_wait_max_ms: u64,
    /// Bytes a follower asks for per partition and per fetch.
    pub replica_fetch_max_bytes: i32,
    pub replica_fetch_response_max_bytes: i32,
    /// How often each partition's high watermark is checkpointed.
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// Moves leadership back to preferred replicas periodically.
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_seconds: u64,
    /// Broker default of the topic setting `unclean.leader.election.enable`.
    pub unclean_leader_election_enable: bool,
    /// Every Kafka listener this broker binds, with what it advertises.
    /// Built by `resolve` from `listeners`/`advertised.listeners`, or from
    /// `kafka_addr`/`advertised_kafka_addr` (one PLAINTEXT listener).
    pub listeners: Vec<Listener>,
    /// `inter.broker.listener.name`: the listener brokers use to reach each other.
    pub inter_broker_listener_name: String,
    /// The listener settings as given; `resolve` turns them into
    /// `listeners`, `inter_broker_listener_name` and maybe `controller_addr`.
    /// Read those, not these.
    pub listener_settings: ListenerSettings,
}

/// The raw values of the listener settings (see `Config::listener_settings`).
#[derive(Debug, Clone, Default)]
pub struct ListenerSettings {
    pub listeners: Option<String>,
    pub advertised_listeners: Option<String>,
    pub security_protocol_map: Option<String>,
    pub inter_broker_listener_name: Option<String>,
    pub controller_listener_names: Option<String>,
}

/// One named Kafka listener (`listeners=NAME://HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    /// What Metadata tells clients that came in on this listener.
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Env,
    Flag,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    UnknownSetting { name: String, source: Source },
    InvalidValue { name: String, value: String, expected: String, source: Source },
    MissingValue { flag: String },
    File { path: PathBuf, reason: String },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::UnknownSetting { name, source } => {
                write!(f, "unknown setting '{name}' ({})", source_text(*source))
            }
            ConfigError::InvalidValue { name, value, expected, source } => write!(
                f,
                "invalid value '{value}' for setting {name} (flag --{}, env {}, {}): expected {expected}",
                name.replace('_', "-"),
                env_name(name),
                source_text(*source)
            ),
            ConfigError::MissingValue { flag } => write!(f, "flag {flag} needs a value"),
            ConfigError::File { path, reason } => {
                write!(f, "config file {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn source_text(s: Source) -> &'static str {
    match s {
        Source::File => "from the config file",
        Source::Env => "from the environment",
        Source::Flag => "from the command line",
    }
}

/// Every setting's canonical name, in help order.
pub const SETTINGS: &[(&str, &str)] = &[
    ("config", "path of a TOML config file"),
    ("data_dir", "directory for logs and controller state [./data]"),
    ("kafka_addr", "Kafka listener address [127.0.0.1:9092]"),
    ("advertised_kafka_addr", "address given to clients in metadata [kafka_addr]"),
    ("admin_addr", "admin HTTP address (/health, /metrics, the /v1 API and the web console at /) [127.0.0.1:9644]"),
    ("admin_api_writes_enabled", "accept the admin API's write endpoints (controlled shutdown, replica moves); false: they answer 403 [false]"),
    ("shards", "number of shards, one per core [all allowed cores]"),
    ("overprovisioned", "true: shards float over the cores, for machines shared with other work (laptops, CI, containers); false: each shard pinned to its own core, for hosts dedicated to the broker [true]"),
    ("node_id", "this broker's node id [0]"),
    ("auto.create.topics.enable", "create topics on first produce/metadata [true]"),
    ("num.partitions", "partitions of auto-created topics [1]"),
    ("default.replication.factor", "replication factor when a client asks for the default [1]"),
    ("log.segment.bytes", "segment size before rolling [1073741824]"),
    ("log.roll.ms", "segment age before rolling [604800000]"),
    ("log.retention.ms", "retention by age, -1 for none [604800000]"),
    ("log.retention.bytes", "retention by size per partition, -1 for none [-1]"),
    ("log.retention.check.interval.ms", "how often retention runs [300000]"),
    ("log.cleaner.backoff.ms", "compaction idle backoff [15000]"),
    ("log.cleaner.dedupe.buffer.size", "per-shard memory for the compaction key map [33554432]"),
    ("log.cleaner.min.compaction.lag.ms", "default min.compaction.lag.ms of compacted topics [0]"),
    ("log.cleaner.max.compaction.lag.ms", "default max.compaction.lag.ms of compacted topics [9223372036854775807]"),
    ("log.index.interval.bytes", "bytes between offset index entries [4096]"),
    ("socket.request.max.bytes", "largest request frame accepted [104857600]"),
    ("message.max.bytes", "largest record batch accepted [1048588]"),
    ("fjord.batch.cache.bytes", "per-shard cache of recent batches for fetch [67108864]"),
    ("fjord.max.connections.per.shard", "connections accepted per shard [10000]"),
    ("fjord.segment.files.open.max", "segment files the node keeps open; idle ones close and reopen on use, 0 = half the open-file limit [0]"),
    ("producer.id.expiration.ms", "forget an idempotent producer idle this long [86400000]"),
    ("fjord.producer.state.entries.max", "idempotent producers remembered per partition [100000]"),
    ("offsets.topic.num.partitions", "partitions of __consumer_offsets, fixed once created [16]"),
    ("offsets.retention.minutes", "committed offsets of an empty group expire after this [10080]"),
    ("offsets.retention.check.interval.ms", "how often expired offsets are looked for [600000]"),
    ("fjord.offsets.retention.ms", "offsets.retention.minutes in milliseconds; wins when set [unset]"),
    ("transaction.state.log.num.partitions", "partitions of __transaction_state, fixed once created [16]"),
    ("transaction.max.timeout.ms", "largest transaction timeout a producer may ask for [900000]"),
    ("transactional.id.expiration.ms", "forget a transactional id idle this long with no open transaction [604800000]"),
    ("transaction.remove.expired.transaction.cleanup.interval.ms", "how often expired transactional ids are looked for [3600000]"),
    ("group.initial.rebalance.delay.ms", "wait for more members before an empty group's first rebalance [3000]"),
    ("group.min.session.timeout.ms", "smallest session timeout a member may ask for [6000]"),
    ("group.max.session.timeout.ms", "largest session timeout a member may ask for [1800000]"),
    ("group.max.size", "members per consumer group [1000]"),
    ("fjord.group.member.metadata.max.bytes", "protocol metadata bytes per JoinGroup [262144]"),
    ("process.roles", "broker, controller, or broker,controller [broker,controller]"),
    ("controller.quorum.voters", "the controller quorum, ID@HOST:PORT,... (Kafka's format) [none: single node]"),
    ("controller_addr", "this node's controller RPC listener HOST:PORT [needed with voters]"),
    ("broker.rack", "this broker's rack, for rack-aware replica placement [none]"),
    ("broker.heartbeat.interval.ms", "how often a broker heartbeats to the active controller [200]"),
    ("broker.session.timeout.ms", "a broker silent this long is fenced [1000]"),
    ("offsets.topic.replication.factor", "replication factor of __consumer_offsets [1]"),
    ("transaction.state.log.replication.factor", "replication factor of __transaction_state [1]"),
    ("transaction.state.log.min.isr", "min.insync.replicas of __transaction_state [1]"),
    ("min.insync.replicas", "default min.insync.replicas of topics [1]"),
    ("replica.lag.time.max.ms", "a follower not caught up for this long leaves the ISR [30000]"),
    ("replica.fetch.wait.max.ms", "longest a follower's fetch waits at the leader [500]"),
    ("replica.fetch.max.bytes", "bytes per partition per follower fetch [1048576]"),
    ("replica.fetch.response.max.bytes", "bytes per follower fetch response [10485760]"),
    ("replica.high.watermark.checkpoint.interval.ms", "how often high watermarks are checkpointed [5000]"),
    ("auto.leader.rebalance.enable", "move leadership back to preferred replicas [true]"),
    ("leader.imbalance.check.interval.seconds", "how often the controller checks leadership balance [300]"),
    ("unclean.leader.election.enable", "default unclean.leader.election.enable of topics [false]"),
    ("listeners", "named Kafka listeners NAME://HOST:PORT,... [PLAINTEXT://kafka_addr]"),
    ("advertised.listeners", "what each listener tells clients, NAME://HOST:PORT,... [the listeners]"),
    ("listener.security.protocol.map", "NAME:PROTOCOL,... (PLAINTEXT only for now) [PLAINTEXT:PLAINTEXT]"),
    ("inter.broker.listener.name", "the listener brokers use to reach each other [the first listener]"),
    ("controller.listener.names", "listener names in `listeners` that are the controller's (its address becomes controller_addr) [none]"),
];

/// `FJORD_` + name upper-cased, dots and dashes as underscores.
pub fn env_name(name: &str) -> String {
    format!("FJORD_{}", name.to_ascii_uppercase().replace(['.', '-'], "_"))
}

/// Flags and file keys: lower-case, dashes as underscores (`--data-dir` = `data_dir`).
fn canonical(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('-', "_")
}

fn known(name: &str) -> bool {
    SETTINGS.iter().any(|(n, _)| *n == name)
}

impl Default for Config {
    fn default() -> Self {
        let kafka_addr: SocketAddr = ([127, 0, 0, 1], 9092).into();
        Config {
            data_dir: PathBuf::from("data"),
            kafka_addr,
            advertised_kafka_host: "127.0.0.1".into(),
            advertised_kafka_port: 9092,
            admin_addr: ([127, 0, 0, 1], 9644).into(),
            admin_api_writes_enabled: false,
            shards: shards::allowed_cpus().len().max(1),
            overprovisioned: true,
            node_id: 0,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            log_segment_bytes: 1 << 30,
            log_roll_ms: 7 * 24 * 3600 * 1000,
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_size: 32 << 20,
            log_cleaner_min_compaction_lag_ms: 0,
            log_cleaner_max_compaction_lag_ms: i64::MAX,
            log_index_interval_bytes: 4096,
            socket_request_max_bytes: SOCKET_REQUEST_MAX_BYTES_DEFAULT,
            message_max_bytes: 1_048_588,
            batch_cache_bytes: 64 << 20,
            max_connections_per_shard: 10_000,
            segment_files_open_max: 0,
            producer_id_expiration_ms: 86_400_000,
            producer_state_entries_max: 100_000,
            // Redpanda's default; Kafka's is 50. Every partition is a log and a
            // load task on some shard, and groups are few per broker here:
            // 16 spreads them over the shards of one host at a fraction of the cost.
            offsets_topic_num_partitions: 16,
            offsets_retention_minutes: 10_080,
            fjord_offsets_retention_ms: None,
            offsets_retention_check_interval_ms: 600_000,
            transaction_state_log_num_partitions: 16,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            transaction_remove_expired_transaction_cleanup_interval_ms: 3_600_000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            // Kafka's default is Integer.MAX_VALUE. A group's members and their
            // subscriptions/assignments all go into one GroupMetadataValue record and
            // all subscriptions into the leader's JoinGroup response: 1000 members of
            // typical (KiB-sized) metadata keep both within message.max.bytes-scale sizes.
            group_max_size: 1000,
            group_member_metadata_max_bytes: 256 << 10,
            role_broker: true,
            role_controller: true,
            controller_quorum_voters: Vec::new(),
            controller_addr: None,
            broker_rack: None,
            // Fast failover: a dead broker is fenced ~1 s after its last
            // heartbeat (Kafka: 2 s / 9 s). The controller thread is not a
            // shard, so shard stalls do not delay heartbeats; 5 heartbeats
            // fit in a session, so one or two lost ones never fence.
            broker_heartbeat_interval_ms: 200,
            broker_session_timeout_ms: 1000,
            // Kafka's defaults are 3 and refuse to create the topic on fewer
            // brokers; 1 keeps `fjord serve` a working single node. Clusters set 3.
            offsets_topic_replication_factor: 1,
            transaction_state_log_replication_factor: 1,
            transaction_state_log_min_isr: 1,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1 << 20,
            replica_fetch_response_max_bytes: 10 << 20,
            replica_high_watermark_checkpoint_interval_ms: 5000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            unclean_leader_election_enable: false,
            listeners: Vec::new(),
            inter_broker_listener_name: "PLAINTEXT".into(),
            listener_settings: ListenerSettings::default(),
        }
    }
}

impl Config {
    /// Builds the config from `serve`'s arguments and the process environment.
    pub fn from_args_and_env(args: &[String]) -> Result<Config, ConfigError> {
        let flags = parse_flags(args)?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::resolve(&flags, &env)
    }

    /// Applies file, then env, then flags over the defaults.
    pub fn resolve(flags: &[(String, String)], env: &[(String, String)]) -> Result<Config, ConfigError> {
        let env_settings = settings_from_env(env);
        // The config file path itself may come from env or flags.
        let file_path = flags
            .iter()
            .rev()
            .find(|(k, _)| k == "config")
            .map(|(_, v)| v.clone())
            .or_else(|| env_settings.iter().rev().find(|(k, _)| k == "config").map(|(_, v)| v.clone()));
        let mut config = Config::default();
        let mut advertised_set = false;
        if let Some(path) = file_path {
            for (name, value) in read_file(&PathBuf::from(path))? {
                advertised_set |= name == "advertised_kafka_addr";
                config.set(&name, &value, Source::File)?;
            }
        }
        for (name, value) in &env_settings {
            advertised_set |= name == "advertised_kafka_addr";
            config.set(name, value, Source::Env)?;
        }
        for (name, value) in flags {
            advertised_set |= name == "advertised_kafka_addr";
            config.set(name, value, Source::Flag)?;
        }
        config.resolve_listeners(advertised_set)?;
        config.check_cluster_settings()?;
        Ok(config)
    }

    /// Every setting of [`SETTINGS`] (but `config`) with its effective value,
    /// as text: what `GET /v1/config` shows. None: unset and without a default.
    pub fn values(&self) -> Vec<(&'static str, Option<String>)> {
        SETTINGS.iter().filter(|(n, _)| *n != "config").map(|(n, _)| (*n, self.value(n))).collect()
    }

    fn value(&self, name: &str) -> Option<String> {
        let s = |v: &dyn std::fmt::Display| Some(v.to_string());
        let ls = &self.listener_settings;
        match name {
            "data_dir" => Some(self.data_dir.display().to_string()),
            "kafka_addr" => s(&self.kafka_addr),
            "advertised_kafka_addr" => Some(format!("{}:{}", self.advertised_kafka_host, self.advertised_kafka_port)),
            "admin_addr" => s(&self.admin_addr),
            "admin_api_writes_enabled" => s(&self.admin_api_writes_enabled),
            "shards" => s(&self.shards),
            "overprovisioned" => s(&self.overprovisioned),
            "node_id" => s(&self.node_id),
            "auto.create.topics.enable" => s(&self.auto_create_topics_enable),
            "num.partitions" => s(&self.num_partitions),
            "default.replication.factor" => s(&self.default_replication_factor),
            "log.segment.bytes" => s(&self.log_segment_bytes),
            "log.roll.ms" => s(&self.log_roll_ms),
            "log.retention.ms" => s(&self.log_retention_ms),
            "log.retention.bytes" => s(&self.log_retention_bytes),
            "log.retention.check.interval.ms" => s(&self.log_retention_check_interval_ms),
            "log.cleaner.backoff.ms" => s(&self.log_cleaner_backoff_ms),
            "log.cleaner.dedupe.buffer.size" => s(&self.log_cleaner_dedupe_buffer_size),
            "log.cleaner.min.compaction.lag.ms" => s(&self.log_cleaner_min_compaction_lag_ms),
            "log.cleaner.max.compaction.lag.ms" => s(&self.log_cleaner_max_compaction_lag_ms),
            "log.index.interval.bytes" => s(&self.log_index_interval_bytes),
            "socket.request.max.bytes" => s(&self.socket_request_max_bytes),
            "message.max.bytes" => s(&self.message_max_bytes),
            "fjord.batch.cache.bytes" => s(&self.batch_cache_bytes),
            "fjord.max.connections.per.shard" => s(&self.max_connections_per_shard),
            "fjord.segment.files.open.max" => s(&self.segment_files_open_max),
            "producer.id.expiration.ms" => s(&self.producer_id_expiration_ms),
            "fjord.producer.state.entries.max" => s(&self.producer_state_entries_max),
            "offsets.topic.num.partitions" => s(&self.offsets_topic_num_partitions),
            "offsets.retention.minutes" => s(&self.offsets_retention_minutes),
            "offsets.retention.check.interval.ms" => s(&self.offsets_retention_check_interval_ms),
            "fjord.offsets.retention.ms" => self.fjord_offsets_retention_ms.map(|v| v.to_string()),
            "transaction.state.log.num.partitions" => s(&self.transaction_state_log_num_partitions),
            "transaction.max.timeout.ms" => s(&self.transaction_max_timeout_ms),
            "transactional.id.expiration.ms" => s(&self.transactional_id_expiration_ms),
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                s(&self.transaction_remove_expired_transaction_cleanup_interval_ms)
            }
            "group.initial.rebalance.delay.ms" => s(&self.group_initial_rebalance_delay_ms),
            "group.min.session.timeout.ms" => s(&self.group_min_session_timeout_ms),
            "group.max.session.timeout.ms" => s(&self.group_max_session_timeout_ms),
            "group.max.size" => s(&self.group_max_size),
            "fjord.group.member.metadata.max.bytes" => s(&self.group_member_metadata_max_bytes),
            "process.roles" => Some(
                [(self.role_broker, "broker"), (self.role_controller, "controller")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, r)| *r)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            "controller.quorum.voters" => (!self.controller_quorum_voters.is_empty()).then(|| {
                self.controller_quorum_voters.iter().map(|v| format!("{}@{}", v.node_id, v.addr)).collect::<Vec<_>>().join(",")
            }),
            "controller_addr" => self.controller_addr.map(|a| a.to_string()),
            "broker.rack" => self.broker_rack.clone(),
            "broker.heartbeat.interval.ms" => s(&self.broker_heartbeat_interval_ms),
            "broker.session.timeout.ms" => s(&self.broker_session_timeout_ms),
            "offsets.topic.replication.factor" => s(&self.offsets_topic_replication_factor),
            "transaction.state.log.replication.factor" => s(&self.transaction_state_log_replication_factor),
            "transaction.state.log.min.isr" => s(&self.transaction_state_log_min_isr),
            "min.insync.replicas" => s(&self.min_insync_replicas),
            "replica.lag.time.max.ms" => s(&self.replica_lag_time_max_ms),
            "replica.fetch.wait.max.ms" => s(&self.replica_fetch_wait_max_ms),
            "replica.fetch.max.bytes" => s(&self.replica_fetch_max_bytes),
            "replica.fetch.response.max.bytes" => s(&self.replica_fetch_response_max_bytes),
            "replica.high.watermark.checkpoint.interval.ms" => s(&self.replica_high_watermark_checkpoint_interval_ms),
            "auto.leader.rebalance.enable" => s(&self.auto_leader_rebalance_enable),
            "leader.imbalance.check.interval.seconds" => s(&self.leader_imbalance_check_interval_seconds),
            "unclean.leader.election.enable" => s(&self.unclean_leader_election_enable),
            "listeners" => Some(
                self.listeners.iter().map(|l| format!("{}://{}", l.name, l.bind)).collect::<Vec<_>>().join(","),
            ),
            "advertised.listeners" => Some(
                self.listeners
                    .iter()
                    .map(|l| format!("{}://{}:{}", l.name, l.advertised_host, l.advertised_port))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            "listener.security.protocol.map" => ls.security_protocol_map.clone(),
            "inter.broker.listener.name" => Some(self.inter_broker_listener_name.clone()),
            "controller.listener.names" => ls.controller_listener_names.clone(),
            _ => None,
        }
    }

    /// Settings that only make sense together.
    fn check_cluster_settings(&self) -> Result<(), ConfigError> {
        let invalid = |name: &str, value: String, expected: String| ConfigError::InvalidValue {
            name: name.to_string(),
            value,
            expected,
            source: Source::Flag,
        };
        let voters = &self.controller_quorum_voters;
        if !voters.is_empty() {
            let listed = voters.iter().any(|v| v.node_id == self.node_id);
            if self.role_controller && !listed {
                return Err(invalid(
                    "controller.quorum.voters",
                    voters.iter().map(|v| format!("{}@{}", v.node_id, v.addr)).collect::<Vec<_>>().join(","),
                    format!("a voter list that names this node ({}), since process.roles includes controller", self.node_id),
                ));
            }
            if !self.role_controller && listed {
                return Err(invalid(
                    "process.roles",
                    "broker".into(),
                    format!("controller too: node {} is in controller.quorum.voters", self.node_id),
                ));
            }
            if self.controller_addr.is_none() {
                return Err(invalid("controller_addr", String::new(), "HOST:PORT: controller.quorum.voters is set".into()));
            }
        } else if !self.role_broker || !self.role_controller {
            return Err(invalid(
                "process.roles",
                if self.role_broker { "broker" } else { "controller" }.into(),
                "broker,controller without controller.quorum.voters (single-node mode)".into(),
            ));
        }
        if self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms {
            return Err(invalid(
                "broker.session.timeout.ms",
                self.broker_session_timeout_ms.to_string(),
                format!("more than broker.heartbeat.interval.ms ({})", self.broker_heartbeat_interval_ms),
            ));
        }
        Ok(())
    }

    fn set(&mut self, name: &str, value: &str, source: Source) -> Result<(), ConfigError> {
        let bad = |expected: &str| ConfigError::InvalidValue {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
            source,
        };
        let v = value.trim();
        match name {
            "config" => {}
            "data_dir" => {
                if v.is_empty() {
                    return Err(bad("a directory path"));
                }
                self.data_dir = PathBuf::from(v);
            }
            "kafka_addr" => self.kafka_addr = parse_addr(v).ok_or_else(|| bad("HOST:PORT"))?,
            "admin_addr" => self.admin_addr = parse_addr(v).ok_or_else(|| bad("HOST:PORT"))?,
            "admin_api_writes_enabled" => {
                self.admin_api_writes_enabled = parse_bool(v).ok_or_else(|| bad("true or false"))?
            }
            "advertised_kafka_addr" => {
                let (host, port) = v.rsplit_once(':').ok_or_else(|| bad("HOST:PORT"))?;
                let port: u16 = port.parse().map_err(|_| bad("HOST:PORT with a port 1-65535"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() || port == 0 {
                    return Err(bad("HOST:PORT with a port 1-65535"));
                }
                self.advertised_kafka_host = host.to_string();
                self.advertised_kafka_port = port;
            }
            "shards" => {
                let n: usize = v.parse().map_err(|_| bad("a positive integer"))?;
                if n == 0 {
                    return Err(bad("a positive integer"));
                }
                self.shards = n;
            }
            "overprovisioned" => self.overprovisioned = parse_bool(v).ok_or_else(|| bad("true or false"))?,
            "node_id" => {
                let n: i32 = v.parse().map_err(|_| bad("an integer 0..2147483647"))?;
                if n < 0 {
                    return Err(bad("an integer 0..2147483647"));
                }
                self.node_id = n;
            }
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse_bool(v).ok_or_else(|| bad("true or false"))?,
            "num.partitions" => self.num_partitions = parse_range(v, 1, 1_000_000).ok_or_else(|| bad("an integer >= 1"))? as i32,
            "default.replication.factor" => {
                self.default_replication_factor = parse_range(v, 1, i16::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as i16
            }
            "log.segment.bytes" => {
                self.log_segment_bytes = parse_range(v, 14, i32::MAX as i64).ok_or_else(|| bad("an integer 14..2147483647"))? as u64
            }
            "log.roll.ms" => self.log_roll_ms = parse_range(v, 1, i64::MAX).ok_or_else(|| bad("an integer >= 1"))?,
            "log.retention.ms" => self.log_retention_ms = parse_range(v, -1, i64::MAX).ok_or_else(|| bad("an integer >= -1"))?,
            "log.retention.bytes" => self.log_retention_bytes = parse_range(v, -1, i64::MAX).ok_or_else(|| bad("an integer >= -1"))?,
            "log.retention.check.interval.ms" => {
                self.log_retention_check_interval_ms = parse_range(v, 1, i64::MAX).ok_or_else(|| bad("an integer >= 1"))? as u64
            }
            "log.cleaner.backoff.ms" => {
                self.log_cleaner_backoff_ms = parse_range(v, 0, i64::MAX).ok_or_else(|| bad("an integer >= 0"))? as u64
            }
            "log.cleaner.min.compaction.lag.ms" => {
                self.log_cleaner_min_compaction_lag_ms = parse_range(v, 0, i64::MAX).ok_or_else(|| bad("an integer >= 0"))?
            }
            "log.cleaner.max.compaction.lag.ms" => {
                self.log_cleaner_max_compaction_lag_ms = parse_range(v, 1, i64::MAX).ok_or_else(|| bad("an integer >= 1"))?
            }
            "log.cleaner.dedupe.buffer.size" => {
                self.log_cleaner_dedupe_buffer_size = parse_range(v, 1024, i64::MAX).ok_or_else(|| bad("an integer >= 1024"))? as usize
            }
            "log.index.interval.bytes" => {
                self.log_index_interval_bytes = parse_range(v, 0, i32::MAX as i64).ok_or_else(|| bad("an integer >= 0"))? as u32
            }
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer 1..2147483647"))? as u64
            }
            "message.max.bytes" => self.message_max_bytes = parse_range(v, 0, i32::MAX as i64).ok_or_else(|| bad("an integer >= 0"))? as i32,
            "fjord.batch.cache.bytes" => {
                self.batch_cache_bytes = parse_range(v, 0, i64::MAX).ok_or_else(|| bad("an integer >= 0"))? as usize
            }
            "fjord.segment.files.open.max" => {
                self.segment_files_open_max = parse_range(v, 0, i32::MAX as i64).ok_or_else(|| bad("an integer >= 0"))? as usize
            }
            "fjord.max.connections.per.shard" => {
                self.max_connections_per_shard = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as usize
            }
            "producer.id.expiration.ms" => {
                self.producer_id_expiration_ms = parse_range(v, 1, i64::MAX).ok_or_else(|| bad("an integer >= 1"))?
            }
            "fjord.producer.state.entries.max" => {
                self.producer_state_entries_max = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as usize
            }
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions = parse_range(v, 1, 10_000).ok_or_else(|| bad("an integer 1..10000"))? as i32
            }
            "offsets.retention.minutes" => {
                self.offsets_retention_minutes = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer 1..2147483647"))?
            }
            "fjord.offsets.retention.ms" => {
                self.fjord_offsets_retention_ms = Some(parse_range(v, 1, i64::MAX / 2).ok_or_else(|| bad("an integer >= 1"))?)
            }
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms =
                    parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer 1..2147483647"))?
            }
            "transaction.state.log.num.partitions" => {
                self.transaction_state_log_num_partitions = parse_range(v, 1, 10_000).ok_or_else(|| bad("an integer 1..10000"))? as i32
            }
            "transaction.max.timeout.ms" => {
                self.transaction_max_timeout_ms = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer 1..2147483647"))?
            }
            "transactional.id.expiration.ms" => {
                self.transactional_id_expiration_ms = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer 1..2147483647"))?
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                self.transaction_remove_expired_transaction_cleanup_interval_ms =
                    parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer 1..2147483647"))?
            }
            "group.initial.rebalance.delay.ms" => {
                self.group_initial_rebalance_delay_ms = parse_range(v, 0, i32::MAX as i64).ok_or_else(|| bad("an integer >= 0"))? as u64
            }
            "group.min.session.timeout.ms" => {
                self.group_min_session_timeout_ms = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as i32
            }
            "group.max.session.timeout.ms" => {
                self.group_max_session_timeout_ms = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as i32
            }
            "group.max.size" => self.group_max_size = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as usize,
            "fjord.group.member.metadata.max.bytes" => {
                self.group_member_metadata_max_bytes = parse_range(v, 1, i32::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as usize
            }
            "process.roles" => {
                let mut roles = (false, false);
                for r in v.split(',').map(str::trim) {
                    match r {
                        "broker" => roles.0 = true,
                        "controller" => roles.1 = true,
                        _ => return Err(bad("broker, controller, or broker,controller")),
                    }
                }
                if !roles.0 && !roles.1 {
                    return Err(bad("broker, controller, or broker,controller"));
                }
                (self.role_broker, self.role_controller) = roles;
            }
            "controller.quorum.voters" => {
                self.controller_quorum_voters = parse_voters(v).ok_or_else(|| bad("ID@HOST:PORT,... with distinct node ids"))?
            }
            "controller_addr" => self.controller_addr = Some(parse_addr(v).ok_or_else(|| bad("HOST:PORT"))?),
            "broker.rack" => self.broker_rack = (!v.is_empty()).then(|| v.to_string()),
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse_range(v, 1, 3_600_000).ok_or_else(|| bad("an integer 1..3600000"))? as u64
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout_ms = parse_range(v, 1, 3_600_000).ok_or_else(|| bad("an integer 1..3600000"))? as u64
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = parse_range(v, 1, i16::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as i16
            }
            "transaction.state.log.replication.factor" => {
                self.transaction_state_log_replication_factor =
                    parse_range(v, 1, i16::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as i16
            }
            "transaction.state.log.min.isr" => {
                self.transaction_state_log_min_isr = parse_range(v, 1, i16::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as i32
            }
            "min.insync.replicas" => self.min_insync_replicas = parse_range(v, 1, i16::MAX as i64).ok_or_else(|| bad("an integer >= 1"))? as i32,
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = parse_range(v, 1, i64::from(i32::MAX)).ok_or_else(|| bad("an integer >= 1"))? as u64,
            "replica.fetch.wait.max.ms" => self.replica_fetch_wait_max_ms = parse_range(v, 0, 60_000).ok_or_else(|| bad("an integer in 0..=60000"))? as u64,
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes = parse_range(v, 1024, 64 << 20).ok_or_else(|| bad("an integer in 1024..=67108864"))? as i32,
            "replica.fetch.response.max.bytes" => self.replica_fetch_response_max_bytes = parse_range(v, 1024, 64 << 20).ok_or_else(|| bad("an integer in 1024..=67108864"))? as i32,
            "replica.high.watermark.checkpoint.interval.ms" => self.replica_high_watermark_checkpoint_interval_ms = parse_range(v, 1, 86_400_000).ok_or_else(|| bad("an integer >= 1"))? as u64,
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable = parse_bool(v).ok_or_else(|| bad("true or false"))?,
            "leader.imbalance.check.interval.seconds" => self.leader_imbalance_check_interval_seconds = parse_range(v, 1, 86_400).ok_or_else(|| bad("an integer in 1..=86400"))? as u64,
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = parse_bool(v).ok_or_else(|| bad("true or false"))?
            }
            "listeners" => self.listener_settings.listeners = Some(v.to_string()),
            "advertised.listeners" => self.listener_settings.advertised_listeners = Some(v.to_string()),
            "listener.security.protocol.map" => self.listener_settings.security_protocol_map = Some(v.to_string()),
            "inter.broker.listener.name" => self.listener_settings.inter_broker_listener_name = Some(v.to_string()),
            "controller.listener.names" => self.listener_settings.controller_listener_names = Some(v.to_string()),
            _ => return Err(ConfigError::UnknownSetting { name: name.to_string(), source }),
        }
        Ok(())
    }

    /// Turns the listener settings into `listeners` (and, for a controller
    /// listener named in `controller.listener.names`, `controller_addr`).
    fn resolve_listeners(&mut self, advertised_set: bool) -> Result<(), ConfigError> {
        let invalid = |name: &str, value: &str, expected: &str| ConfigError::InvalidValue {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
            source: Source::Flag,
        };
        let Some(raw) = self.listener_settings.listeners.clone() else {
            // The shorthand: one PLAINTEXT listener on kafka_addr.
            if !advertised_set {
                if self.kafka_addr.ip().is_unspecified() {
                    return Err(invalid(
                        "advertised_kafka_addr",
                        "",
                        &format!("an address clients can reach, because kafka_addr {} listens on all interfaces", self.kafka_addr),
                    ));
                }
                self.advertised_kafka_host = self.kafka_addr.ip().to_string();
                self.advertised_kafka_port = self.kafka_addr.port();
            }
            self.listeners = vec![Listener {
                name: "PLAINTEXT".into(),
                bind: self.kafka_addr,
                advertised_host: self.advertised_kafka_host.clone(),
                advertised_port: self.advertised_kafka_port,
            }];
            self.inter_broker_listener_name = self.listener_settings.inter_broker_listener_name.clone().unwrap_or_else(|| "PLAINTEXT".into()).to_ascii_uppercase();
            if self.inter_broker_listener_name != "PLAINTEXT" {
                return Err(invalid("inter.broker.listener.name", &self.inter_broker_listener_name, "a listener named in `listeners`"));
            }
            return Ok(());
        };
        let expected = "NAME://HOST:PORT,... with distinct names";
        let parsed = parse_listener_list(&raw).ok_or_else(|| invalid("listeners", &raw, expected))?;
        let advertised = match &self.listener_settings.advertised_listeners {
            Some(a) => parse_listener_list(a).ok_or_else(|| invalid("advertised.listeners", a, expected))?,
            None => Vec::new(),
        };
        let controller_names: Vec<String> = self
            .listener_settings.controller_listener_names
            .iter()
            .flat_map(|v| v.split(','))
            .map(|n| n.trim().to_ascii_uppercase())
            .filter(|n| !n.is_empty())
            .collect();
        let map: Vec<(String, String)> = match &self.listener_settings.security_protocol_map {
            Some(m) => m
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(|i| i.split_once(':').map(|(a, b)| (a.trim().to_ascii_uppercase(), b.trim().to_ascii_uppercase())))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("listener.security.protocol.map", m, "NAME:PROTOCOL,..."))?,
            None => Vec::new(),
        };
        let adv_raw = self.listener_settings.advertised_listeners.clone().unwrap_or_default();
        for (name, host, _) in &advertised {
            // Kafka's rules: advertised names are a subset of `listeners`, never a
            // controller listener, and never a wildcard address.
            if !parsed.iter().any(|(n, _, _)| n == name) {
                return Err(invalid("advertised.listeners", &adv_raw, &format!("listener names that are in `listeners` ({name} is not)")));
            }
            if controller_names.contains(name) {
                return Err(invalid("advertised.listeners", &adv_raw, &format!("no controller listener ({name} is in controller.listener.names)")));
            }
            if host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
                return Err(invalid("advertised.listeners", &adv_raw, &format!("an address clients can reach for {name}, not {host}")));
            }
        }
        if let Some(missing) = controller_names.iter().find(|c| !parsed.iter().any(|(n, _, _)| n == *c)) {
            return Err(invalid(
                "controller.listener.names",
                self.listener_settings.controller_listener_names.as_deref().unwrap_or(""),
                &format!("names of listeners in `listeners` ({missing} is not)"),
            ));
        }
        let mut listeners = Vec::new();
        for (name, host, port) in parsed {
            let protocol = map.iter().find(|(n, _)| *n == name).map(|(_, p)| p.clone()).or_else(|| (name == "PLAINTEXT").then(|| "PLAINTEXT".to_string()));
            match protocol.as_deref() {
                Some("PLAINTEXT") => {}
                Some(other) => {
                    return Err(invalid(
                        "listener.security.protocol.map",
                        &format!("{name}:{other}"),
                        "PLAINTEXT (TLS and SASL listeners are not supported yet)",
                    ))
                }
                None => {
                    return Err(invalid(
                        "listener.security.protocol.map",
                        self.listener_settings.security_protocol_map.as_deref().unwrap_or(""),
                        &format!("an entry for listener {name} (e.g. {name}:PLAINTEXT)"),
                    ))
                }
            }
            let bind = parse_addr(&format!("{}:{port}", if host.is_empty() { "0.0.0.0" } else { host.as_str() }))
                .ok_or_else(|| invalid("listeners", &raw, "listeners with resolvable HOST:PORT"))?;
            if controller_names.contains(&name) {
                // Kafka puts the controller's listener in `listeners`; Fjord's controller RPC takes its address.
                self.controller_addr.get_or_insert(bind);
                continue;
            }
            let (advertised_host, advertised_port) = match advertised.iter().find(|(n, _, _)| *n == name) {
                Some((_, h, p)) if !h.is_empty() => (h.clone(), *p),
                _ if bind.ip().is_unspecified() => {
                    return Err(invalid(
                        "advertised.listeners",
                        self.listener_settings.advertised_listeners.as_deref().unwrap_or(""),
                        &format!("an address for listener {name}, which listens on all interfaces"),
                    ))
                }
                _ => (bind.ip().to_string(), bind.port()),
            };
            listeners.push(Listener { name, bind, advertised_host, advertised_port });
        }
        let first = listeners.first().ok_or_else(|| invalid("listeners", &raw, "at least one listener that is not a controller listener"))?;
        self.kafka_addr = first.bind;
        self.advertised_kafka_host = first.advertised_host.clone();
        self.advertised_kafka_port = first.advertised_port;
        self.inter_broker_listener_name = match &self.listener_settings.inter_broker_listener_name {
            Some(n) => n.trim().to_ascii_uppercase(),
            None => first.name.clone(),
        };
        if !listeners.iter().any(|l| l.name == self.inter_broker_listener_name) {
            return Err(invalid("inter.broker.listener.name", &self.inter_broker_listener_name, "the name of a listener in `listeners`"));
        }
        self.listeners = listeners;
        Ok(())
    }
}

fn parse_addr(v: &str) -> Option<SocketAddr> {
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Some(a);
    }
    // Host names (e.g. localhost:9092) resolve once, at start.
    if !v.contains(':') {
        return None;
    }
    v.to_socket_addrs().ok()?.next()
}

/// `NAME://HOST:PORT,...` (names upper-cased; an empty host means all interfaces).
fn parse_listener_list(v: &str) -> Option<Vec<(String, String, u16)>> {
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, addr) = item.split_once("://")?;
        let name = name.trim().to_ascii_uppercase();
        let (host, port) = addr.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if name.is_empty() || out.iter().any(|(n, _, _)| *n == name) {
            return None;
        }
        out.push((name, host, port));
    }
    (!out.is_empty()).then_some(out)
}

/// `ID@HOST:PORT,...`: node ids distinct and >= 0; the address is kept as
/// written (host names resolve when a peer is dialled).
fn parse_voters(v: &str) -> Option<Vec<crate::controller::Voter>> {
    let mut voters: Vec<crate::controller::Voter> = Vec::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) = item.split_once('@')?;
        let node_id: i32 = id.trim().parse().ok().filter(|n| *n >= 0)?;
        let (host, port) = addr.rsplit_once(':')?;
        port.parse::<u16>().ok().filter(|p| *p > 0)?;
        if host.is_empty() || voters.iter().any(|x| x.node_id == node_id) {
            return None;
        }
        voters.push(crate::controller::Voter { node_id, addr: addr.trim().to_string() });
    }
    (!voters.is_empty()).then_some(voters)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_range(v: &str, min: i64, max: i64) -> Option<i64> {
    let n: i64 = v.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}

/// Boolean settings whose flag may stand alone (no value: true).
const BARE_TRUE_FLAGS: &[&str] = &["admin_api_writes_enabled", "overprovisioned"];

/// `--name value` and `--name=value`; names canonicalised.
fn parse_flags(args: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let Some(stripped) = arg.strip_prefix("--") else {
            return Err(ConfigError::UnknownSetting { name: arg.clone(), source: Source::Flag });
        };
        let (name, value) = match stripped.split_once('=') {
            Some((n, v)) => (canonical(n), v.to_string()),
            None if BARE_TRUE_FLAGS.contains(&canonical(stripped).as_str())
                && args.get(i + 1).is_none_or(|next| next.starts_with("--")) =>
            {
                // `--admin-api-writes-enabled` alone means true.
                (canonical(stripped), "true".to_string())
            }
            None => {
                let v = args.get(i + 1).ok_or_else(|| ConfigError::MissingValue { flag: arg.clone() })?;
                i += 1;
                (canonical(stripped), v.clone())
            }
        };
        if !known(&name) {
            return Err(ConfigError::UnknownSetting { name: arg.clone(), source: Source::Flag });
        }
        out.push((name, value));
        i += 1;
    }
    Ok(out)
}

fn settings_from_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, _) in SETTINGS {
        let key = env_name(name);
        if let Some((_, v)) = env.iter().find(|(k, _)| *k == key) {
            out.push((name.to_string(), v.clone()));
        }
    }
    out
}

fn read_file(path: &PathBuf) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File { path: path.clone(), reason: e.to_string() })?;
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| ConfigError::File { path: path.clone(), reason: e.to_string() })?;
    let mut out = Vec::new();
    flatten("", &table, &mut out);
    for (name, _) in &out {
        if !known(name) || name == "config" {
            return Err(ConfigError::UnknownSetting { name: name.clone(), source: Source::File });
        }
    }
    Ok(out)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => out.push((canonical_file_key(&key), s.clone())),
            other => out.push((canonical_file_key(&key), other.to_string())),
        }
    }
}

/// File keys keep dots (Kafka names) but accept dashes for Fjord's own names.
fn canonical_file_key(key: &str) -> String {
    if key.contains('.') {
        key.to_ascii_lowercase()
    } else {
        canonical(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// Flags beat the environment, which beats defaults; the advertised address follows kafka_addr.
    #[test]
    fn precedence_and_advertised_default() {
        let flags = parse_flags(&["--kafka-addr".into(), "127.0.0.1:19092".into(), "--shards=1".into()]).unwrap();
        let env = s(&[("FJORD_KAFKA_ADDR", "127.0.0.1:1"), ("FJORD_NUM_PARTITIONS", "3"), ("FJORD_BIN", "x")]);
        let c = Config::resolve(&flags, &env).unwrap();
        assert_eq!(c.kafka_addr.port(), 19092);
        assert_eq!(c.advertised_kafka_port, 19092);
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.shards, 1);
    }

    /// A bad value is refused with a message naming the setting.
    #[test]
    fn bad_values_name_the_setting() {
        let flags = parse_flags(&["--shards".into(), "abc".into()]).unwrap();
        let err = Config::resolve(&flags, &[]).unwrap_err().to_string();
        assert!(err.contains("shards"), "{err}");
        let err = Config::resolve(&[], &s(&[("FJORD_KAFKA_ADDR", "nonsense")])).unwrap_err().to_string();
        assert!(err.contains("kafka_addr") && err.contains("FJORD_KAFKA_ADDR"), "{err}");
        assert!(parse_flags(&["--no-such-flag".into(), "1".into()]).is_err());
        assert!(parse_flags(&["--data-dir".into()]).is_err());
        let err = Config::resolve(&[], &s(&[("FJORD_AUTO_CREATE_TOPICS_ENABLE", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("auto.create.topics.enable"));
    }

    /// Every setting with a default reports a value, and a bare boolean flag means true.
    #[test]
    fn values_cover_the_settings_and_bare_flags_are_true() {
        let flags = parse_flags(&["--admin-api-writes-enabled".into(), "--shards".into(), "2".into()]).unwrap();
        let c = Config::resolve(&flags, &[]).unwrap();
        assert!(c.admin_api_writes_enabled);
        let values = c.values();
        assert_eq!(values.len(), SETTINGS.len() - 1);
        let optional = ["fjord.offsets.retention.ms", "controller.quorum.voters", "controller_addr", "broker.rack",
            "listener.security.protocol.map", "controller.listener.names"];
        for (name, value) in &values {
            assert!(value.is_some() || optional.contains(name), "{name} has no value");
        }
        assert!(values.contains(&("shards", Some("2".into()))));
        assert!(!Config::default().admin_api_writes_enabled);
    }

    /// The TOML file takes both Fjord names and Kafka's dotted names.
    #[test]
    fn file_with_dotted_kafka_names() {
        let dir = std::env::temp_dir().join(format!("fjord-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fjord.toml");
        std::fs::write(&path, "data-dir = \"/tmp/x\"\nnode_id = 7\nlog.segment.bytes = 4096\n\"num.partitions\" = 2\n").unwrap();
        let flags = vec![("config".to_string(), path.display().to_string())];
        let c = Config::resolve(&flags, &[]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.node_id, 7);
        assert_eq!(c.log_segment_bytes, 4096);
        assert_eq!(c.num_partitions, 2);
        std::fs::write(&path, "bogus = 1\n").unwrap();
        assert!(Config::resolve(&flags, &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
