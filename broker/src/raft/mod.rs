//! Raft mode (RocketMQ's DLedger mode): a group of three or more replicas elects its master.
//!
//! This module owns the Raft-mode configuration ([`config`]), the Raft log kept in the
//! CommitLog ([`log_store`]), the replicas' RPC transport ([`network`]) and the status report
//! read from openraft's metrics ([`status`]), and the CommitLog retention floor that keeps
//! what the Raft log refers to ([`retention`]), snapshots that start a replica at the first
//! retained CommitLog file ([`snapshot`]), and leadership transfer ([`transfer`]). It must
//! not encode messages itself (ferrum-store does) nor touch the broker's send path or
//! registration; the broker wires a [`RaftNode`] in, and the role it reports decides master or
//! slave.
//!
//! # Library: openraft 0.9
//!
//! openraft 0.9.25 (the newest stable line; 0.10 is still alpha) over raft-rs because
//! openraft is async on tokio (our runtime), its storage is two plain traits
//! (`RaftLogStorage`, `RaftStateMachine`, feature `storage-v2`) that we can put over our own
//! CommitLog, and it ships `openraft::testing::Suite`, the conformance suite its own storages
//! pass, which runs against ours in this module's tests. raft-rs leaves the driving loop,
//! message transport and persistence scheduling to the caller, which is exactly the part we
//! would get wrong.
//!
//! # One log: how Raft entries map to the CommitLog
//!
//! - **Entry ↔ byte range.** A normal entry is one CommitLog record (or a batch of one
//!   topic/queue) written once by ferrum-store's own encoder on the leader. Its bytes are the
//!   range from the CommitLog end before the append to the end after it, so any end-of-file
//!   padding the store inserted travels with the record. Followers receive exactly those bytes
//!   (`RaftRequest::Stored`) and write them with `append_raw_at` at the same offset, so every
//!   replica holds identical bytes at identical offsets: consume queues, message ids and
//!   physical offsets agree everywhere and a follower can serve reads or become master without
//!   any translation. Blank and membership entries carry no message and occupy no bytes.
//! - **Index ↔ offset.** A sidecar file `raft/log.idx` next to the CommitLog holds one small
//!   slot per entry: index, term, leader, kind, offset, length (and a membership entry's JSON).
//!   It is written after the CommitLog bytes, so on open the two are reconciled: slots whose
//!   bytes are missing are dropped and CommitLog bytes past the last slot are truncated. We
//!   chose a sidecar over an index carried in message properties because the index must exist
//!   for entries without a message (blank, membership) and because finding entry N must not
//!   mean scanning records; a fixed table is what DLedger's own index file does.
//! - **Term and vote** live in `raft/state.json`, replaced crash-safely (temporary file, fsync,
//!   rename, fsync of the directory), together with the last purged log id.
//! - **Truncation** of a conflicting, uncommitted suffix (a deposed leader's tail) is
//!   `MessageStore::truncate_to(offset of the first removed entry)`, which also drops the
//!   consume-queue and index entries pointing there, plus cutting the sidecar.
//! - **Purge and snapshots.** openraft's own snapshot policy is off (`SnapshotPolicy::Never`);
//!   the broker's retention task builds a snapshot and purges the log when CommitLog files
//!   holding entries are deleted (a forced clean) or due for time-based retention
//!   (`fileReservedTime`), so entries are forgotten before their bytes go. The snapshot
//!   ([`snapshot`]) is a starting point, not a copy of the state: the first retained file's
//!   offset, the bytes of the last purged entry that lie in it, and every consume queue's logical
//!   offset there. A follower that needs purged entries (a replaced disk, or one far behind)
//!   gets it, resets its store to that offset and takes the following entries from the log.
//!   Purge forgets slots below the purge point; the CommitLog files then go with retention.
//! - **Commit.** Applying entries moves `MessageStore::set_committed_offset` to the end of the
//!   last applied record, so consumers on any replica never see bytes a majority does not hold.
//!   Consume-queue entries for uncommitted bytes may exist, but every reader stops at the
//!   committed offset (pulls, the queue max offset of GET_MAX_OFFSET and the pull reply, view by
//!   id, query by key, search by time) and truncation removes them.
//! - **Refusal.** openraft has numbered an entry before the storage sees it, so a message the
//!   leader's store refuses (too large, disk full) is logged as a blank entry and the proposer
//!   gets the store's reason in [`RaftResponse::refused`]; the node keeps running.
//! - **Durability.** An append is reported persisted once the bytes are in the CommitLog's
//!   mapping (the page cache), as DLedger does with its default asynchronous flush: a process
//!   crash loses nothing, and a majority acknowledgement covers a single machine's power loss.
//!
//! # Limits of this layer
//!
//! - Retention ([`retention`]): every replica keeps CommitLog files from its oldest unpurged
//!   entry on (the store's retention floor), because openraft reads entries far below the
//!   slowest follower's match (log ids at start, backward probes after a term change). Files
//!   leave only after the log was purged behind a snapshot, except under a forced clean
//!   (`diskSpaceCleanForciblyRatio`, a full disk wins), which deletes first; until the next
//!   purge (at most a second later) a read of such entries returns the readable prefix, which
//!   openraft takes as "nothing to send yet" instead of stopping the node.
//! - A follower that installs a snapshot loses the messages below its start, as retention
//!   removed them from the leader; consumers asking for older offsets get the queue's min offset.
//!   The snapshot's membership is the last applied one; Ferrum groups never change membership
//!   after the first entry, so it is also the membership at the snapshot's entry.
//! - With `SYNC_FLUSH` the leader's append waits for the group commit on the Raft task and
//!   followers do not flush before acknowledging.
//! - openraft 0.9 has no leader transfer; [`transfer`] builds one from its runtime switches
//!   (write gate, paused heartbeats and elections, a `TimeoutNow` RPC to the target).
//! - A replica whose disk was lost rejoins empty under its old `dLegerSelfId` (openraft's
//!   `loosen-follower-log-revert` lets the leader accept a follower log that got shorter); it is
//!   repaired from the leader's log when the leader still holds it from offset 0, else from a
//!   snapshot at the leader's first retained file. The procedure is in `docs/raft.md`.
//! - The sidecar keeps one slot per entry in memory and on disk; purged slots are skipped, not
//!   compacted.
//!
//! # In the broker ([`broker`])
//!
//! With `enableDLegerCommitLog=true` the broker starts its replica on the port of its own
//! `dLegerPeers` entry instead of the HA listener and slave task; openraft's leader decides the
//! role (leader → master brokerId 0, others → slave with brokerId = position + 1) and each
//! change re-registers with every NameServer at once. Sends and consumer send-backs are
//! proposed with `client_write` and answered after a majority commit; a SEND_BATCH_MESSAGE
//! batch is one entry ([`RaftRequest::Batch`]), so it is committed or truncated whole. The
//! schedule (delay levels) and transaction-check services run on the leader only (they follow
//! the role) and write through the same path, so a delivered delayed message, a committed
//! transaction's message and its op message are replicated and committed before the delay
//! offset or check offset moves past them. A new leader resumes from the delay offsets it last
//! copied from the old one (`ferrumSlaveSyncInterval`), so a delivery made just before a
//! failover may be repeated: at least once, as in RocketMQ.

pub mod broker;
pub mod config;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod retention;
pub mod snapshot;
pub mod status;
pub mod transfer;

use std::collections::BTreeMap;
use std::io::Cursor;

use bytes::Bytes;
use ferrum_store::MessageExtBrokerInner;
use serde::{Deserialize, Serialize};

pub use config::RaftConfig;
pub use log_store::{RaftLogStore, RaftStateMachineStore, open_storage};
pub use network::{NetworkSwitch, RaftNetworkFactoryImpl, RaftRpcServer};

openraft::declare_raft_types!(
    /// Ferrum's openraft types: node ids are DLedger ids hashed by [`config::node_id`].
    pub TypeConfig:
        D = RaftRequest,
        R = RaftResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running Raft replica.
pub type RaftNode = openraft::Raft<TypeConfig>;

/// The application data of a normal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRequest {
    /// A message proposed to the leader; the leader's log storage encodes it into the CommitLog
    /// and from then on the entry is read back as [`RaftRequest::Stored`].
    Message(ProposedMessage),
    /// A SEND_BATCH_MESSAGE batch of one topic/queue: one entry, so it is committed (and
    /// truncated) whole, and the leader stores it as a non-Raft store stores a batch.
    Batch(Vec<ProposedMessage>),
    /// CommitLog bytes exactly as the leader wrote them at `offset`.
    Stored { offset: i64, data: Vec<u8> },
}

/// Where a committed entry's bytes are in every replica's CommitLog, or why the leader's store
/// refused the message (the entry then stays in the log as a blank one, on every replica).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftResponse {
    pub offset: i64,
    pub len: u64,
    /// The store's status and remark when it refused the message (too large, disk full, …).
    pub refused: Option<String>,
    /// The status of that refusal, so the proposer answers with the store's own code (a full
    /// disk is SERVICE_NOT_AVAILABLE, which producers retry elsewhere). Local to the node that
    /// applied the entry: responses never cross the wire.
    #[serde(skip)]
    pub refused_status: Option<ferrum_store::PutMessageStatus>,
}

/// The part of `MessageExtBrokerInner` a producer decides; the store adds the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedMessage {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: Option<std::net::SocketAddr>,
    pub reconsume_times: i32,
    pub body: Vec<u8>,
    pub properties: BTreeMap<String, String>,
    pub tags_code: Option<i64>,
    /// The half message's CommitLog offset in a committed transactional message.
    #[serde(default)]
    pub prepared_transaction_offset: i64,
}

impl From<MessageExtBrokerInner> for ProposedMessage {
    fn from(msg: MessageExtBrokerInner) -> Self {
        ProposedMessage {
            topic: msg.topic,
            queue_id: msg.queue_id,
            flag: msg.flag,
            sys_flag: msg.sys_flag,
            born_timestamp: msg.born_timestamp,
            born_host: msg.born_host,
            reconsume_times: msg.reconsume_times,
            body: msg.body.to_vec(),
            properties: msg.properties,
            tags_code: msg.tags_code,
            prepared_transaction_offset: msg.prepared_transaction_offset,
        }
    }
}

impl ProposedMessage {
    fn into_inner(self) -> MessageExtBrokerInner {
        MessageExtBrokerInner {
            topic: self.topic,
            queue_id: self.queue_id,
            flag: self.flag,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
            body: Bytes::from(self.body),
            properties: self.properties,
            tags_code: self.tags_code,
        }
    }
}

/// openraft settings from the broker's Raft keys. Snapshots are never built on openraft's own
/// schedule: the retention task builds them when CommitLog files holding entries go, and purges
/// the log behind them; a follower behind the purge point gets the snapshot (`snapshot`).
pub fn openraft_config(config: &RaftConfig) -> openraft::Config {
    openraft::Config {
        cluster_name: config.group.clone(),
        heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
        election_timeout_min: config.election_timeout_min.as_millis() as u64,
        election_timeout_max: config.election_timeout_max.as_millis() as u64,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        // openraft limits a replication batch by entries only; with messages of up to 4 MiB
        // and AppendEntries bounded by the heartbeat interval, batches stay small.
        max_payload_entries: 64,
        ..Default::default()
    }
}
