//! ferrum-store owns a broker's data on local disk, following RocketMQ's store design: the
//! CommitLog on fixed-size memory-mapped files, per-queue ConsumeQueues built by a dispatcher,
//! the message-key index, checkpoint and crash recovery, flush (async interval or synchronous
//! group commit) and retention. It also offers what replication and Raft mode need: append raw
//! replicated bytes at a given offset, truncate to an offset, and read committed data only.
//!
//! It has no network code and knows nothing of brokers' roles: callers decide what to append and
//! when a replica's bytes are committed.
//!
//! # Layout on disk
//! - `commitlog/{20-digit start offset}`: records in the v1 stored format, each file ended by a
//!   BLANK record when the next record does not fit.
//! - `consumequeue/{topic}/{queueId}/{20-digit start byte}`: 20-byte units.
//! - `index/{yyyyMMddHHmmssSSS}`: RocketMQ's IndexFiles (hash slots and entries).
//! - `checkpoint`: fsynced CommitLog offset, dispatched offset and the index files' fsynced
//!   point (with a CRC).
//! - `abort`: present while the store is open; found at start it means a crash.
//!
//! # Key index
//! The index by `KEYS` and `UNIQ_KEY` is RocketMQ's IndexFile: memory-mapped files holding an
//! on-disk hash table from `topic#key` to CommitLog offsets, rolled when full
//! (`maxHashSlotNum`, `maxIndexNum`), fsynced with each checkpoint, cut back to the checkpoint and
//! re-dispatched from the CommitLog after a crash, deleted once below the CommitLog's minimum
//! offset. It holds no memory per key. Its answers are hints: `query_message_by_key` serves only
//! records it has read and found to carry the key in the topic, inside the CommitLog's retained
//! (and committed) range, so hash collisions, truncated tails and deleted files never show.
//!
//! # API
//! [`MessageStore`] (cheap to clone, one store behind all clones):
//! - [`MessageStore::open`] recovers and starts the flush and clean-up threads; stop them with
//!   [`MessageStore::shutdown`] (clean) or [`MessageStore::halt`] (as a crash would): dropping the
//!   handles does not.
//! - Writes: `put_message` / `put_messages` are `async` (the SYNC_FLUSH wait never blocks a tokio
//!   worker; a timeout yields FLUSH_DISK_TIMEOUT), `put_messages_blocking` serves plain threads. A
//!   batch is one topic/queue, stored contiguously with consecutive queue offsets.
//! - Reads: `get_message` (zero-copy record slices, next/min/max offsets,
//!   `suggest_pulling_from_slave`), `get_max_offset_in_queue`, `get_min_offset_in_queue`,
//!   `get_offset_in_queue_by_time`, `get_commit_log_offset_in_queue`, `lookup_message_by_offset`,
//!   `query_message_by_key`, `get_earliest_message_time`, `min_phy_offset`, `max_phy_offset`,
//!   `flushed_phy_offset`.
//! - Replication: `read_raw`, `append_raw_at` (at the end, or at a file boundary on an empty
//!   store), `truncate_to`, `set_committed_offset` (reads stop at the committed offset).
//! - Retention: the clean-up thread; `clean_now`, `disk_refusal`, `set_disk_ratio_override`,
//!   `set_retention_floor` (files holding bytes at or above the floor stay until the disk is
//!   full enough for a forced clean).

pub mod consume_queue;
mod disk;
mod index;
pub mod mapped_file;
pub mod mapped_file_queue;
mod retention;
mod store;
mod types;

use std::path::{Path, PathBuf};

pub use store::{FlushObserver, MessageStore};
pub use types::{
    AppendMessageResult, FlushDiskType, GetMessageResult, GetMessageStatus, MessageExtBrokerInner,
    MessageFilter, MessageStoreConfig, PutMessageResult, PutMessageStatus,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store data is inconsistent: {0}")]
    Corrupt(String),
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("raw append must start at the CommitLog end {expected}, not at {got}")]
    OffsetMismatch { expected: i64, got: i64 },
    #[error(transparent)]
    Message(#[from] ferrum_protocol::message::MessageError),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
