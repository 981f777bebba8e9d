//! Fjord: a Kafka-wire-compatible broker, thread-per-core on io_uring.
//! See README.md for the module table and ../shared/DESIGN.md for the architecture.

pub mod admin;
pub mod alloc_guard;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod error;
pub mod interbroker;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod producer_ids;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod shard;
pub mod storage;
pub mod txn;
