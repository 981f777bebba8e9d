//! Partition log storage: RecordBatch v2 validation, segment files written
//! with O_DIRECT (glommio `DmaFile`), sparse offset/time indexes, recovery at
//! open, and reads for fetch (tail cache or file ranges for sendfile).
//!
//! Runs on the glommio shard that owns the partition replica. Every type here
//! is `!Send` and must only be touched from that shard's executor thread; many
//! tasks on that shard may call a `Log` concurrently (methods take `&self`, the
//! log serializes internally and never holds a `RefCell` borrow across an
//! `.await`). It knows nothing about the network, replication or the Kafka
//! request types beyond the RecordBatch v2 byte layout.
//!
//! | file | owns |
//! |---|---|
//! | `batch.rs` | v2 header parsing, CRC32C, produce validation, record walking |
//! | `index.rs` | sparse offset / time index entries and their file encoding |
//! | `segment.rs` | one segment's bookkeeping, file handles, recovery scan |
//! | `recovery.rs` | turning a directory into segments at open (truncating torn tails, finishing a committed compaction swap) |
//! | `log.rs` | the `Log`: state, open, append, durability waits, close, head truncation (retention, DeleteRecords) |
//! | `log_writer.rs` | the writer task: aligned O_DIRECT writes, group-committed fdatasync, seal/create of segments, rollback of a failed write |
//! | `log_reader.rs` | reads for Fetch (tail cache or file ranges) and timestamp lookups for ListOffsets |
//! | `retention.rs` | which old segments retention deletes; the durable log start offset checkpoint |
//! | `compaction.rs` | compaction rules: key map, record decoding (all four codecs, bounded), batch rewrite, aborted transactions, first-dirty checkpoint, the keyless-record check of produce |
//! | `log_compaction.rs` | `Log::compact`: one crash-safe compaction pass over sealed segments, merging small cleaned ones |
//! | `open_files.rs` | the shard's budget of open segment files: opened on first use, closed when not used lately (CLOCK) |
//! | `notify.rs` | a tiny single-threaded "something changed" notifier |
//! | `leader_epochs.rs` | the leader-epoch cache (epoch → first offset, Kafka's `leader-epoch-checkpoint` format) and OffsetForLeaderEpoch's rule |
//! | `log_replica.rs` | the replica side of `Log`: follower append keeping the leader's offsets, `truncate_to`, `truncate_fully`, the epoch cache and its checkpoint (written before `durable_end` moves) |

pub mod batch;
pub mod cache_budget;
pub mod compaction;
mod direct_read;
pub mod index;
pub mod leader_epochs;
pub mod log;
mod notify;
pub mod open_files;
pub mod read_ahead;
pub mod recovery;
pub mod retention;
pub mod segment;

use std::fmt;
use std::io;
use std::path::PathBuf;

pub use batch::{validate_batches, BatchError, BatchHeader};
pub use log::{AppendResult, HeadTruncation, Log, LogConfig, ReadResult};
pub use log::compaction_pass::CompactionStats;

/// Errors of the storage layer.
#[derive(Debug)]
pub enum StorageError {
    /// An I/O error (including a failed write: the offsets it covered were
    /// rolled back and will be reused by the next append).
    Io(io::Error),
    /// On-disk data that cannot be trusted, outside a torn tail.
    Corrupt { file: PathBuf, reason: String },
    /// The requested offset lies outside `[start, end]`.
    OffsetOutOfRange {
        requested: i64,
        start: i64,
        end: i64,
    },
    /// The log was closed or removed.
    Closed,
    /// `append` was called with headers that do not describe the bytes given.
    InvalidAppend(&'static str),
    /// A leader's append on a replica that follows now.
    NotLeader,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io(e) => write!(f, "storage i/o error: {e}"),
            StorageError::Corrupt { file, reason } => {
                write!(f, "corrupt log file {}: {reason}", file.display())
            }
            StorageError::OffsetOutOfRange {
                requested,
                start,
                end,
            } => {
                write!(f, "offset {requested} out of range [{start}, {end}]")
            }
            StorageError::Closed => write!(f, "log is closed"),
            StorageError::InvalidAppend(why) => write!(f, "invalid append: {why}"),
            StorageError::NotLeader => write!(f, "this replica is a follower now"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> Self {
        StorageError::Io(e)
    }
}

impl From<glommio::GlommioError<()>> for StorageError {
    fn from(e: glommio::GlommioError<()>) -> Self {
        StorageError::Io(e.into())
    }
}
