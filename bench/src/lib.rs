//! fjord-bench: a Kafka load generator and benchmark runner that speaks the
//! Kafka protocol to any broker (Fjord or not).
//!
//! | module | what it owns |
//! |---|---|
//! | `batch` | RecordBatch v2 building (CRC32C, gzip/snappy) and parsing |
//! | `client` | pipelined Kafka connection on tokio; admin calls |
//! | `producer` | open-loop producer task, publish-to-ack latency |
//! | `consumer` | explicit-assignment consumer task, e2e latency |
//! | `run` | one produce/consume/e2e run against one bootstrap |
//! | `stats` | clock, histograms, progress line, CPU/RSS probes |
//! | `report` | `RunResult` JSON and Markdown |
//! | `limits` | machine ceilings: O_DIRECT disk, loopback TCP |
//! | `compare` | one workload against several targets, repeated |
//! | `charts` | PNG charts for `compare` (no fonts needed) |
//! | `scenario` | scenario TOML files |
//! | `workload` | the workload parameters shared by CLI and files |
//!
//! Everything runs in the bench process on one multi-threaded tokio runtime,
//! except `limits`, which uses plain threads.

pub mod batch;
pub mod charts;
pub mod client;
pub mod compare;
pub mod consumer;
pub mod limits;
pub mod producer;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod workload;

/// Errors of a bench run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("client: {0}")]
    Client(#[from] client::ClientError),
    #[error("batch: {0}")]
    Batch(#[from] batch::BatchError),
    #[error("broker process: {0}")]
    Proc(#[from] stats::ProcError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("JSON: {0}")]
    Json(String),
    #[error("task failed: {0}")]
    Task(String),
    #[error("target {name}: {message}")]
    Target { name: String, message: String },
    #[error("chart: {0}")]
    Chart(String),
}
