//! Sizing glommio's `io_memory` (buffers registered with io_uring, which count
//! against RLIMIT_MEMLOCK) so that every shard fits under the process limit.

use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};

/// glommio's own default per executor.
const IO_MEMORY_DEFAULT_BYTES: usize = 10 << 20;
/// Smallest io_memory we hand glommio; below this it is not worth registering.
const IO_MEMORY_MIN_BYTES: usize = 128 << 10;
/// Each executor registers io_memory on its rings; measured here: 2 shards x
/// 1 MiB fit in 8 MiB, 2 x 2 MiB do not, so budget 3 registrations per shard.
const REGISTRATIONS_PER_SHARD: usize = 3;
const ROUNDING_BYTES: usize = 64 << 10;

/// The soft memlock limit in bytes, `None` when unlimited.
pub fn memlock_limit_bytes() -> Option<u64> {
    match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _hard)) if soft == RLIM_INFINITY => None,
        Ok((soft, _hard)) => Some(soft),
        Err(_) => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoMemoryChoice {
    pub io_memory_bytes: usize,
    pub memlock_limit_bytes: Option<u64>,
    /// True when even the minimum does not fit; glommio will then run with
    /// unregistered buffers (slower) and log a warning.
    pub below_minimum: bool,
}

/// io_memory per shard: glommio's default when memlock is unlimited, else
/// three quarters of the limit split over `shards x 3` registrations.
pub fn io_memory_for_limit(limit_bytes: Option<u64>, shards: usize) -> IoMemoryChoice {
    let shards = shards.max(1);
    let Some(limit) = limit_bytes else {
        return IoMemoryChoice {
            io_memory_bytes: IO_MEMORY_DEFAULT_BYTES,
            memlock_limit_bytes: None,
            below_minimum: false,
        };
    };
    let budget = (limit as usize).saturating_mul(3) / 4;
    let per = budget / (shards * REGISTRATIONS_PER_SHARD);
    let per = (per / ROUNDING_BYTES) * ROUNDING_BYTES;
    let per = per.min(IO_MEMORY_DEFAULT_BYTES);
    IoMemoryChoice {
        io_memory_bytes: per.max(IO_MEMORY_MIN_BYTES),
        memlock_limit_bytes: Some(limit),
        below_minimum: per < IO_MEMORY_MIN_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The measured fit on this kind of machine: 8 MiB and 2 shards gives 1 MiB each.
    #[test]
    fn eight_mib_two_shards_gives_one_mib() {
        let c = io_memory_for_limit(Some(8 << 20), 2);
        assert_eq!(c.io_memory_bytes, 1 << 20);
        assert!(!c.below_minimum);
        let one = io_memory_for_limit(Some(8 << 20), 1);
        assert_eq!(one.io_memory_bytes, 2 << 20);
    }

    /// Unlimited memlock keeps glommio's default; tiny limits are flagged.
    #[test]
    fn unlimited_and_tiny_limits() {
        assert_eq!(io_memory_for_limit(None, 4).io_memory_bytes, IO_MEMORY_DEFAULT_BYTES);
        let tiny = io_memory_for_limit(Some(512 << 10), 8);
        assert!(tiny.below_minimum);
        assert_eq!(tiny.io_memory_bytes, IO_MEMORY_MIN_BYTES);
    }
}
