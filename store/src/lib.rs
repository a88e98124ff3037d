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
//! - `index/keys`: the key index log.
//! - `checkpoint`: fsynced CommitLog offset and dispatched offset (with a CRC).
//! - `abort`: present while the store is open; found at start it means a crash.
//!
//! # Key index
//! The index by `KEYS` and `UNIQ_KEY` maps `topic#key` to CommitLog offsets in memory and is
//! persisted as an append-only, CRC-checked log (`index/keys`) fsynced with each checkpoint; see
//! the `index` module for its cost compared with RocketMQ's IndexFile.
//!
//! # Entry point
//! [`MessageStore::open`] recovers and starts the store; `put_message(s)` are async (the SYNC_FLUSH
//! wait never blocks a tokio worker) and `put_messages_blocking` serves plain threads.

pub mod consume_queue;
mod disk;
mod index;
pub mod mapped_file;
pub mod mapped_file_queue;
mod store;
mod types;

use std::path::{Path, PathBuf};

pub use store::MessageStore;
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
