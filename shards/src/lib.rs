//! `shards`: Fjord's thread-per-core runtime. Knows nothing of Kafka.
//!
//! One glommio executor per core, each pinned to its CPU (a *shard*). Shards
//! share nothing; a shard reaches another through the [`Mesh`]: it sends a
//! closure that runs on the target shard with that shard's local state and
//! gets the closure's result back (Seastar's `invoke_on`). Every inbox is a
//! bounded channel, so a flood of calls to one shard applies back-pressure to
//! the callers instead of growing memory.
//!
//! Also here: sizing glommio's locked `io_memory` to the memlock limit,
//! process-wide shutdown on SIGINT/SIGTERM, and a check that a listening
//! address is not already taken (glommio binds with SO_REUSEPORT, so a second
//! process on the same port would otherwise silently share its connections).

mod memlock;
mod mesh;
pub mod metrics;
mod runtime;
mod shutdown;

pub use memlock::{io_memory_for_limit, memlock_limit_bytes, IoMemoryChoice};
pub use mesh::{Mesh, MeshError};
pub use runtime::{allowed_cpus, check_address_free, start, RuntimeConfig, RuntimeError, Shard};
pub use shutdown::{install_signal_handler, Shutdown, ShutdownTrigger};

/// Index of a shard within this process: 0..shard_count.
pub type ShardId = usize;
