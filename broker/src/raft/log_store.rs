//! The Raft log over ferrum-store's CommitLog and the state machine that is the committed
//! offset (the mapping is documented in the module above).
#![allow(
    clippy::result_large_err,
    reason = "openraft's traits fix StorageError as the error type; boxing it here would only move the conversion"
)]

use std::collections::VecDeque;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Cursor, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ferrum_store::{MessageStore, PutMessageStatus};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, LogState, Membership, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use serde::{Deserialize, Serialize};

use super::snapshot::{self, QueueStart, SNAPSHOT_FILE, SnapshotHeader, Span};
use super::{RaftRequest, RaftResponse, TypeConfig};

type NodeId = u64;
type Node = openraft::BasicNode;
type SErr = StorageError<NodeId>;

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
/// index u64, term u64, leader u64, kind u8, offset i64, len u64, extra_len u32.
const SLOT_HEADER: usize = 8 + 8 + 8 + 1 + 8 + 8 + 4;
const LOG_FILE: &str = "log.idx";
const STATE_FILE: &str = "state.json";

/// One log entry's place: where its bytes are in the CommitLog and where its slot is in the
/// sidecar file.
#[derive(Debug, Clone)]
struct Slot {
    log_id: LogId<NodeId>,
    kind: u8,
    offset: i64,
    len: u64,
    /// A membership entry's JSON.
    extra: Vec<u8>,
    file_pos: u64,
}

impl Slot {
    fn end(&self) -> i64 {
        self.offset + self.len as i64
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(SLOT_HEADER + self.extra.len());
        b.extend_from_slice(&self.log_id.index.to_be_bytes());
        b.extend_from_slice(&self.log_id.leader_id.term.to_be_bytes());
        b.extend_from_slice(&self.log_id.leader_id.node_id.to_be_bytes());
        b.push(self.kind);
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.len.to_be_bytes());
        b.extend_from_slice(&(self.extra.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.extra);
        b
    }

    /// The slot at `buf[pos..]`, `None` for a torn tail.
    fn decode(buf: &[u8], pos: usize) -> Option<(Slot, usize)> {
        let h = buf.get(pos..pos + SLOT_HEADER)?;
        let u64_at = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
        let extra_len = u32::from_be_bytes(h[41..45].try_into().unwrap_or([0; 4])) as usize;
        let extra = buf.get(pos + SLOT_HEADER..pos + SLOT_HEADER + extra_len)?;
        let kind = h[24];
        if kind > KIND_MEMBERSHIP {
            return None;
        }
        let slot = Slot {
            log_id: LogId::new(CommittedLeaderId::new(u64_at(8), u64_at(16)), u64_at(0)),
            kind,
            offset: u64_at(25) as i64,
            len: u64_at(33),
            extra: extra.to_vec(),
            file_pos: pos as u64,
        };
        Some((slot, SLOT_HEADER + extra_len))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct HardState {
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

#[derive(Debug)]
struct LogInner {
    dir: PathBuf,
    store: MessageStore,
    file: File,
    file_len: u64,
    /// Ascending by index (contiguous in real use; openraft's suite also appends with gaps).
    slots: VecDeque<Slot>,
    hard: HardState,
    refusals: Refusals,
    /// Where the next snapshot starts at the earliest: the end of the CommitLog files retention
    /// is about to delete (a file start), so a snapshot never carries their bytes.
    retain_from: i64,
    /// The last index openraft reported committed (`save_committed`), for `raft status`; not
    /// persisted, so a restarted replica reports none until the leader tells it again.
    committed: Option<u64>,
}

/// Why the leader's store refused proposed messages, by log index, until applied.
type Refusals = Arc<Mutex<std::collections::HashMap<u64, (PutMessageStatus, String)>>>;

/// openraft's log storage over a [`MessageStore`]. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct RaftLogStore {
    inner: Arc<Mutex<LogInner>>,
}

/// openraft's state machine: the applied position, which bounds what consumers may read.
#[derive(Debug, Clone)]
pub struct RaftStateMachineStore {
    inner: Arc<Mutex<SmInner>>,
}

#[derive(Debug)]
struct SmInner {
    store: MessageStore,
    /// The log beside it: a snapshot's point is a log entry, and installing one resets the log.
    log: Arc<Mutex<LogInner>>,
    dir: PathBuf,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    /// End of the last applied record: the committed CommitLog offset.
    applied_end: i64,
    snapshot: Option<(SnapshotMeta<NodeId, Node>, Vec<u8>)>,
    snapshot_seq: u64,
    refusals: Refusals,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_err(what: impl std::fmt::Display) -> AnyError {
    AnyError::error(what)
}

/// Opens the Raft log kept in `store` with its sidecar files in `dir` (created if needed),
/// reconciles the two after a crash, and hides every byte not yet known committed from readers.
pub fn open_storage(
    dir: &Path,
    store: MessageStore,
) -> Result<(RaftLogStore, RaftStateMachineStore), SErr> {
    let write_err = |e: std::io::Error| SErr::from(StorageIOError::write_logs(AnyError::new(&e)));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let hard: HardState = match std::fs::read(dir.join(STATE_FILE)) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| SErr::from(StorageIOError::read_vote(AnyError::new(&e))))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HardState::default(),
        Err(e) => return Err(SErr::from(StorageIOError::read_vote(AnyError::new(&e)))),
    };
    let path = dir.join(LOG_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(write_err)?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(write_err)?;
    let purged_index = hard.last_purged.map(|l| l.index);
    let store_end = store.max_phy_offset();
    let mut slots: VecDeque<Slot> = VecDeque::new();
    let mut pos = 0;
    let mut valid_len = 0;
    while let Some((slot, n)) = Slot::decode(&buf, pos) {
        // Slots written after their CommitLog bytes were lost (a machine crash with both files
        // unflushed) end the log there.
        if slot.end() > store_end {
            break;
        }
        if let Some(prev) = slots.back()
            && slot.log_id.index <= prev.log_id.index
        {
            break;
        }
        pos += n;
        valid_len = pos;
        if purged_index.is_some_and(|p| slot.log_id.index <= p) {
            continue;
        }
        slots.push_back(slot);
    }
    file.set_len(valid_len as u64).map_err(write_err)?;
    // CommitLog bytes beyond the last slot were written by an append whose slot never made it.
    let expected_end = match (slots.back(), purged_index) {
        (Some(s), _) => Some(s.end()),
        (None, None) => Some(store.min_phy_offset()),
        (None, Some(_)) => None,
    };
    if let Some(end) = expected_end
        && store.max_phy_offset() > end
    {
        tracing::warn!(
            from = end,
            to = store.max_phy_offset(),
            "truncating CommitLog bytes no Raft log slot accounts for"
        );
        store
            .truncate_to(end)
            .map_err(|e| SErr::from(StorageIOError::write_logs(AnyError::new(&e))))?;
    }
    let committed_floor = slots
        .front()
        .map_or(store.max_phy_offset(), |s| s.offset)
        .min(store.max_phy_offset());
    store.set_committed_offset(Some(committed_floor));
    // The latest snapshot says what was applied and the membership even when the log entries
    // holding them are purged.
    let snapshot = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
        Ok(data) => {
            let (header, _) = snapshot::decode(&data)
                .map_err(|e| SErr::from(StorageIOError::read_snapshot(None, AnyError::new(&e))))?;
            Some((header.meta, data))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(SErr::from(StorageIOError::read_snapshot(
                None,
                AnyError::new(&e),
            )));
        }
    };
    let refusals = Refusals::default();
    let log = RaftLogStore {
        inner: Arc::new(Mutex::new(LogInner {
            dir: dir.to_path_buf(),
            store: store.clone(),
            file,
            file_len: valid_len as u64,
            slots,
            hard,
            refusals: Arc::clone(&refusals),
            retain_from: 0,
            committed: None,
        })),
    };
    let sm = RaftStateMachineStore {
        inner: Arc::new(Mutex::new(SmInner {
            store,
            log: Arc::clone(&log.inner),
            dir: dir.to_path_buf(),
            last_applied: snapshot.as_ref().and_then(|(m, _)| m.last_log_id),
            membership: snapshot
                .as_ref()
                .map(|(m, _)| m.last_membership.clone())
                .unwrap_or_default(),
            applied_end: committed_floor,
            snapshot: snapshot.clone(),
            snapshot_seq: 0,
            refusals,
        })),
    };
    // An install interrupted by a crash (the snapshot is written first) is finished now; a
    // store and log that already agree with the snapshot are left alone.
    if let Some((_, data)) = &snapshot {
        let (header, bytes) = snapshot::decode(data)
            .map_err(|e| SErr::from(StorageIOError::read_snapshot(None, AnyError::new(&e))))?;
        let mut inner = lock(&sm.inner);
        let (applied, applied_end) = (inner.last_applied, inner.applied_end);
        inner
            .install(&header, bytes)
            .map_err(|e| SErr::from(StorageIOError::read_snapshot(None, e)))?;
        // install() moved the applied position to the snapshot's; the log above it is applied
        // again by openraft as the leader commits.
        inner.last_applied = applied.max(header.meta.last_log_id);
        inner.applied_end = applied_end.max(header.end);
        let end = inner.applied_end;
        inner.store.set_committed_offset(Some(end));
    }
    Ok((log, sm))
}

/// Replaces `path` so that a crash leaves either the old or the new content.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl LogInner {
    fn save_hard(&self) -> std::io::Result<()> {
        let data = serde_json::to_vec(&self.hard).map_err(std::io::Error::other)?;
        write_atomically(&self.dir.join(STATE_FILE), &data)
    }

    /// Position of the first slot whose index is at least `index`.
    fn position(&self, index: u64) -> usize {
        self.slots.partition_point(|s| s.log_id.index < index)
    }

    fn read_bytes(&self, offset: i64, len: u64) -> Result<Vec<u8>, AnyError> {
        let mut out = Vec::with_capacity(len as usize);
        let mut at = offset;
        let end = offset + len as i64;
        while at < end {
            let chunk = self
                .store
                .read_raw(at, (end - at) as usize)
                .ok_or_else(|| io_err(format!("CommitLog bytes at {at} are gone")))?;
            at += chunk.len() as i64;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn entry(&self, slot: &Slot) -> Result<Entry<TypeConfig>, SErr> {
        let read_err = |e: AnyError| SErr::from(StorageIOError::read_log_entry(slot.log_id, e));
        let payload = match slot.kind {
            KIND_BLANK => EntryPayload::Blank,
            KIND_NORMAL => EntryPayload::Normal(RaftRequest::Stored {
                offset: slot.offset,
                data: self.read_bytes(slot.offset, slot.len).map_err(read_err)?,
            }),
            _ => EntryPayload::Membership(
                serde_json::from_slice::<Membership<NodeId, Node>>(&slot.extra)
                    .map_err(|e| read_err(AnyError::new(&e)))?,
            ),
        };
        Ok(Entry {
            log_id: slot.log_id,
            payload,
        })
    }

    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let from = match range.start_bound() {
            Bound::Included(&s) => self.position(s),
            Bound::Excluded(&s) => self.position(s.saturating_add(1)),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for slot in self.slots.iter().skip(from) {
            if !range.contains(&slot.log_id.index) {
                break;
            }
            // Bytes retention deleted before the log was purged: openraft takes a short answer
            // as "nothing yet" and stops the node on an error, so the readable prefix goes back
            // and the retention task purges the rest (a snapshot then replaces those entries).
            if slot.kind == KIND_NORMAL && slot.offset < self.store.min_phy_offset() {
                tracing::warn!(
                    index = slot.log_id.index,
                    offset = slot.offset,
                    min_phy_offset = self.store.min_phy_offset(),
                    "Raft log entry whose CommitLog bytes were deleted; waiting for the purge"
                );
                break;
            }
            out.push(self.entry(slot)?);
        }
        Ok(out)
    }

    fn append_one(&mut self, entry: Entry<TypeConfig>) -> Result<(), SErr> {
        let log_id = entry.log_id;
        let werr = |e: AnyError| SErr::from(StorageIOError::write_log_entry(log_id, e));
        if let Some(last) = self.slots.back()
            && last.log_id.index >= log_id.index
        {
            return Err(werr(io_err(format!(
                "entry {} does not come after the last entry {}",
                log_id.index, last.log_id.index
            ))));
        }
        let start = self.store.max_phy_offset();
        let (kind, len, extra) = match entry.payload {
            EntryPayload::Blank => (KIND_BLANK, 0, Vec::new()),
            EntryPayload::Membership(m) => (
                KIND_MEMBERSHIP,
                0,
                serde_json::to_vec(&m).map_err(|e| werr(AnyError::new(&e)))?,
            ),
            EntryPayload::Normal(request @ (RaftRequest::Message(_) | RaftRequest::Batch(_))) => {
                let messages = match request {
                    RaftRequest::Message(msg) => vec![msg.into_inner()],
                    RaftRequest::Batch(batch) => {
                        batch.into_iter().map(|m| m.into_inner()).collect()
                    }
                    RaftRequest::Stored { .. } => Vec::new(),
                };
                let put = self.store.put_messages_blocking(messages);
                match (put.status, put.append) {
                    (PutMessageStatus::PutOk, Some(a)) => {
                        let end = a.wrote_offset + a.wrote_bytes as i64;
                        (KIND_NORMAL, (end - start) as u64, Vec::new())
                    }
                    // The index is already the entry's: a refusal must not stop the node, so
                    // the entry becomes a blank one and the proposer learns why on apply.
                    (status, _) => {
                        let why = format!("{status:?}: {}", put.remark.unwrap_or_default());
                        tracing::warn!(index = log_id.index, %why, "the CommitLog refused a proposed message");
                        lock(&self.refusals).insert(log_id.index, (status, why));
                        if self.store.max_phy_offset() != start {
                            return Err(werr(io_err(
                                "the CommitLog moved while refusing a message",
                            )));
                        }
                        (KIND_BLANK, 0, Vec::new())
                    }
                }
            }
            EntryPayload::Normal(RaftRequest::Stored { offset, data }) => {
                if offset != start {
                    return Err(werr(io_err(format!(
                        "entry bytes belong at CommitLog offset {offset}, the log ends at {start}"
                    ))));
                }
                self.store
                    .append_raw_at(offset, &data)
                    .map_err(|e| werr(AnyError::new(&e)))?;
                (KIND_NORMAL, data.len() as u64, Vec::new())
            }
        };
        let slot = Slot {
            log_id,
            kind,
            offset: start,
            len,
            extra,
            file_pos: self.file_len,
        };
        let bytes = slot.encode();
        // Positional: after truncate_from cut the file, the cursor still points past its end,
        // and a cursor write would leave a hole that ends the log there on the next open.
        std::os::unix::fs::FileExt::write_all_at(&self.file, &bytes, self.file_len)
            .map_err(|e| werr(AnyError::new(&e)))?;
        self.file_len += bytes.len() as u64;
        self.slots.push_back(slot);
        Ok(())
    }

    fn truncate_from(&mut self, index: u64) -> Result<(), SErr> {
        let at = self.position(index);
        let Some(slot) = self.slots.get(at).cloned() else {
            return Ok(());
        };
        let werr = |e: AnyError| SErr::from(StorageIOError::write_logs(e));
        // The sidecar first: a crash between the two leaves bytes no slot accounts for, which
        // open() truncates.
        self.file
            .set_len(slot.file_pos)
            .map_err(|e| werr(AnyError::new(&e)))?;
        self.file_len = slot.file_pos;
        self.slots.truncate(at);
        lock(&self.refusals).retain(|i, _| *i < index);
        if self.store.max_phy_offset() > slot.offset {
            self.store
                .truncate_to(slot.offset)
                .map_err(|e| werr(AnyError::new(&e)))?;
        }
        Ok(())
    }
}

impl RaftLogStore {
    /// The commit index: the last entry openraft knows a majority holds. openraft's metrics do
    /// not carry it; entries up to it are applied right after it moves.
    pub fn committed_index(&self) -> Option<u64> {
        lock(&self.inner).committed
    }

    /// The CommitLog offset where the entries after `matched` start: the bytes a follower that
    /// holds the log up to `matched` is sent next. With no match, or a match below the oldest
    /// slot, it is the oldest slot's offset: the first byte the log refers to.
    pub fn resume_offset(&self, matched: Option<u64>) -> i64 {
        let inner = lock(&self.inner);
        let oldest = inner
            .slots
            .front()
            .map_or(inner.store.max_phy_offset(), |s| s.offset);
        let Some(index) = matched else {
            return oldest;
        };
        let at = inner.position(index);
        match inner.slots.get(at) {
            Some(slot) if slot.log_id.index == index => slot.end(),
            Some(_) | None if at == 0 => oldest,
            Some(slot) => slot.offset,
            None => inner.store.max_phy_offset(),
        }
    }
}

impl RaftLogStore {
    /// The id of the last entry that starts below CommitLog offset `first_retained` (whose
    /// bytes retention deleted or is about to delete) and no later than `applied`: what the
    /// log must purge, behind a snapshot, before the bytes go.
    /// Makes the next snapshots start at `offset` (a CommitLog file start) or later: the
    /// files below it are about to be deleted.
    pub fn set_retain_from(&self, offset: i64) {
        let mut inner = lock(&self.inner);
        inner.retain_from = inner.retain_from.max(offset);
    }

    pub fn gone_upto(&self, first_retained: i64, applied: Option<u64>) -> Option<LogId<NodeId>> {
        let inner = lock(&self.inner);
        let spans = inner.spans();
        snapshot::last_gone(&spans, first_retained, applied).map(|at| inner.slots[at].log_id)
    }
}

impl RaftLogReader<TypeConfig> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        lock(&self.inner).entries(range)
    }
}

impl RaftLogStorage<TypeConfig> for RaftLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let inner = lock(&self.inner);
        let last_purged_log_id = inner.hard.last_purged;
        let last_log_id = inner.slots.back().map(|s| s.log_id).or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        let mut inner = lock(&self.inner);
        inner.hard.vote = Some(*vote);
        inner
            .save_hard()
            .map_err(|e| SErr::from(StorageIOError::write_vote(AnyError::new(&e))))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        Ok(lock(&self.inner).hard.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        // Only reported, never read back by openraft (`read_committed` stays None): applying on
        // start stops at what the state machine holds, and the leader's next message says more.
        lock(&self.inner).committed = committed.map(|l| l.index);
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = lock(&self.inner);
        for entry in entries {
            inner.append_one(entry)?;
        }
        drop(inner);
        // The bytes are in the CommitLog mapping and the slots in the page cache: a process
        // crash keeps both (see the module docs on durability).
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        tracing::info!(index = log_id.index, "truncating the Raft log");
        lock(&self.inner).truncate_from(log_id.index)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let mut inner = lock(&self.inner);
        if inner
            .hard
            .last_purged
            .is_some_and(|p| p.index >= log_id.index)
        {
            return Ok(());
        }
        inner.hard.last_purged = Some(log_id);
        inner
            .save_hard()
            .map_err(|e| SErr::from(StorageIOError::write_logs(AnyError::new(&e))))?;
        while inner
            .slots
            .front()
            .is_some_and(|s| s.log_id.index <= log_id.index)
        {
            inner.slots.pop_front();
        }
        Ok(())
    }
}

impl LogInner {
    fn spans(&self) -> Vec<Span> {
        self.slots
            .iter()
            .map(|s| Span {
                index: s.log_id.index,
                offset: s.offset,
                len: s.len,
            })
            .collect()
    }

    /// Forgets every entry and starts the sidecar empty, with the log purged up to `upto`
    /// (installing a snapshot the local log does not contain).
    fn reset(&mut self, upto: LogId<NodeId>) -> std::io::Result<()> {
        if self.hard.last_purged.is_none_or(|p| p.index < upto.index) {
            self.hard.last_purged = Some(upto);
            self.save_hard()?;
        }
        self.file.set_len(0)?;
        self.file_len = 0;
        self.slots.clear();
        lock(&self.refusals).clear();
        Ok(())
    }
}

impl SmInner {
    /// The snapshot point: the last applied entry that starts below the first retained
    /// CommitLog byte, or the purge point, or (nothing deleted) the last applied entry.
    fn point(&self, log: &LogInner, first_retained: i64) -> (Option<LogId<NodeId>>, i64) {
        let spans = log.spans();
        let applied = self.last_applied.map(|l| l.index);
        if let Some(at) = snapshot::last_gone(&spans, first_retained, applied) {
            return (Some(log.slots[at].log_id), spans[at].end());
        }
        match log.hard.last_purged {
            Some(p) if self.last_applied.is_some_and(|a| a.index > p.index) => (
                Some(p),
                log.slots
                    .front()
                    .map_or(log.store.max_phy_offset(), |s| s.offset),
            ),
            _ => (self.last_applied, self.applied_end),
        }
    }

    fn build(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let werr = |e: AnyError| SErr::from(StorageIOError::write_snapshot(None, e));
        let log_arc = Arc::clone(&self.log);
        let log = lock(&log_arc);
        // Retention may delete the first file while the bytes are read: take the next start.
        let mut attempt = 0;
        let (last_log_id, start, end, bytes) = loop {
            let first_retained = self.store.min_phy_offset().max(log.retain_from);
            let (last_log_id, entry_end) = self.point(&log, first_retained);
            let (start, end) = snapshot::carried_range(first_retained, entry_end);
            let read = if end > start {
                log.read_bytes(start, (end - start) as u64)
            } else {
                Ok(Vec::new())
            };
            match read {
                Ok(bytes) => break (last_log_id, start, end, bytes),
                Err(e) if attempt >= 2 => return Err(werr(e)),
                Err(_) => attempt += 1,
            }
        };
        drop(log);
        self.snapshot_seq += 1;
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.snapshot_seq),
            None => format!("none-{}", self.snapshot_seq),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let header = SnapshotHeader {
            meta: meta.clone(),
            start,
            end,
            queues: self
                .store
                .queue_offsets_at(start)
                .into_iter()
                .map(|(topic, queue_id, offset)| QueueStart {
                    topic,
                    queue_id,
                    offset,
                })
                .collect(),
        };
        let data = snapshot::encode(&header, &bytes).map_err(|e| werr(AnyError::new(&e)))?;
        write_atomically(&self.dir.join(SNAPSHOT_FILE), &data)
            .map_err(|e| werr(AnyError::new(&e)))?;
        tracing::info!(?last_log_id, start, end, "built a Raft snapshot");
        self.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    /// Makes this replica's store and log start at the snapshot: kept as they are when the log
    /// already holds its last entry (with the same id and end), else reset to its start.
    fn install(&mut self, header: &SnapshotHeader, bytes: &[u8]) -> Result<(), AnyError> {
        let log_arc = Arc::clone(&self.log);
        let mut log = lock(&log_arc);
        let last = header.meta.last_log_id;
        let holds_it = match last {
            None => true,
            Some(last) => {
                let at = log.position(last.index);
                let in_log = log
                    .slots
                    .get(at)
                    .is_some_and(|s| s.log_id == last && s.end() == header.end);
                // Purged up to it, and the next entry (or the CommitLog end) is where it ends.
                let next_at = log
                    .slots
                    .front()
                    .map_or(log.store.max_phy_offset(), |s| s.offset);
                let purged_to_it = log.hard.last_purged == Some(last)
                    && next_at == header.end
                    && log.store.min_phy_offset() <= header.start;
                in_log || purged_to_it
            }
        };
        if !holds_it {
            let last = last.ok_or_else(|| io_err("a snapshot without a last entry"))?;
            tracing::warn!(
                ?last,
                start = header.start,
                end = header.end,
                "resetting this replica's CommitLog to a Raft snapshot"
            );
            // The log first: a crash in between leaves a purged log over an older store,
            // whose bytes no slot accounts for and which the next snapshot replaces.
            log.reset(last).map_err(|e| AnyError::new(&e))?;
            let queues: Vec<(String, i32, i64)> = header
                .queues
                .iter()
                .map(|q| (q.topic.clone(), q.queue_id, q.offset))
                .collect();
            self.store
                .reset_to(header.start, &queues)
                .map_err(|e| AnyError::new(&e))?;
            if !bytes.is_empty() {
                self.store
                    .append_raw_at(header.start, bytes)
                    .map_err(|e| AnyError::new(&e))?;
            }
        }
        drop(log);
        self.last_applied = last;
        self.membership = header.meta.last_membership.clone();
        self.applied_end = header.end;
        self.store.set_committed_offset(Some(header.end));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for RaftStateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        lock(&self.inner).build()
    }
}

impl RaftStateMachine<TypeConfig> for RaftStateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), SErr> {
        let inner = lock(&self.inner);
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<RaftResponse>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = lock(&self.inner);
        let mut out = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => {
                    let refusal = lock(&inner.refusals).remove(&entry.log_id.index);
                    RaftResponse {
                        offset: inner.applied_end,
                        len: 0,
                        refused_status: refusal.as_ref().map(|(status, _)| *status),
                        refused: refusal.map(|(_, why)| why),
                    }
                }
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    RaftResponse::default()
                }
                EntryPayload::Normal(RaftRequest::Stored { offset, data }) => {
                    inner.applied_end = inner.applied_end.max(offset + data.len() as i64);
                    RaftResponse {
                        offset,
                        len: data.len() as u64,
                        ..RaftResponse::default()
                    }
                }
                EntryPayload::Normal(RaftRequest::Message(_) | RaftRequest::Batch(_)) => {
                    return Err(SErr::from(StorageIOError::apply(
                        entry.log_id,
                        io_err("a proposed message reached the state machine unencoded"),
                    )));
                }
            };
            out.push(response);
        }
        let end = inner.applied_end;
        inner.store.set_committed_offset(Some(end));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let werr =
            |e: AnyError| SErr::from(StorageIOError::write_snapshot(Some(meta.signature()), e));
        let data = snapshot.into_inner();
        let (header, bytes) = snapshot::decode(&data).map_err(|e| werr(AnyError::new(&e)))?;
        if header.meta.last_log_id != meta.last_log_id {
            return Err(werr(io_err(format!(
                "snapshot data is for {:?}, its meta names {:?}",
                header.meta.last_log_id, meta.last_log_id
            ))));
        }
        let mut inner = lock(&self.inner);
        // The file first: a crash during the reset leaves the snapshot to finish it on open.
        write_atomically(&inner.dir.join(SNAPSHOT_FILE), &data)
            .map_err(|e| werr(AnyError::new(&e)))?;
        inner.install(&header, bytes).map_err(werr)?;
        inner.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let inner = lock(&self.inner);
        Ok(inner.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::testing::{StoreBuilder, Suite};

    use super::super::ProposedMessage;
    use super::*;

    fn open_store(dir: &Path) -> MessageStore {
        let mut config = ferrum_store::MessageStoreConfig::new(dir.join("store"));
        // Small files, so entries regularly cross a file end and carry the padding with them.
        config.mapped_file_size_commit_log = 16 * 1024;
        MessageStore::open(config).expect("store opens")
    }

    struct Builder;

    impl StoreBuilder<TypeConfig, RaftLogStore, RaftStateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, RaftLogStore, RaftStateMachineStore), SErr> {
            let dir = tempfile::tempdir()
                .map_err(|e| SErr::from(StorageIOError::write_logs(AnyError::new(&e))))?;
            let store = open_store(dir.path());
            let (log, sm) = open_storage(&dir.path().join("raft"), store)?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("openraft's storage suite passes");
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 0), index)
    }

    fn message(i: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(1, i as u64),
            payload: EntryPayload::Normal(RaftRequest::Message(ProposedMessage {
                topic: "TopicRaft".into(),
                queue_id: (i % 2) as i32,
                born_timestamp: 1_700_000_000_000,
                body: vec![b'x'; 1500 + 10 * i],
                properties: BTreeMap::from([("KEYS".to_owned(), format!("k{i}"))]),
                ..Default::default()
            })),
        }
    }

    fn append(log: &mut LogInner, entries: Vec<Entry<TypeConfig>>) {
        for e in entries {
            log.append_one(e).expect("append");
        }
    }

    #[test]
    fn leader_bytes_replay_identically_on_a_follower_and_truncate() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let (leader, _) = open_storage(
            &leader_dir.path().join("raft"),
            open_store(leader_dir.path()),
        )
        .expect("open");
        let (follower, _) = open_storage(
            &follower_dir.path().join("raft"),
            open_store(follower_dir.path()),
        )
        .expect("open");
        let mut l = lock(&leader.inner);
        let membership = Membership::new(vec![BTreeSet::from([0u64, 1, 2])], None);
        append(
            &mut l,
            vec![Entry {
                log_id: log_id(1, 1),
                payload: EntryPayload::Membership(membership),
            }],
        );
        // 40 records of ~1 KiB over 16 KiB files: several carry end-of-file padding.
        append(&mut l, (2..42).map(message).collect());
        let shipped = l.entries(1..42).expect("read back");
        assert_eq!(shipped.len(), 41);
        assert!(matches!(shipped[0].payload, EntryPayload::Membership(_)));
        let mut f = lock(&follower.inner);
        append(&mut f, shipped.clone());
        let end = l.store.max_phy_offset();
        assert_eq!(f.store.max_phy_offset(), end);
        assert!(end > 3 * 16 * 1024, "the log crossed file ends");
        assert_eq!(
            l.read_bytes(0, end as u64).expect("leader bytes"),
            f.read_bytes(0, end as u64).expect("follower bytes"),
            "identical bytes at identical offsets"
        );
        assert_eq!(f.entries(1..42).expect("follower entries"), shipped);

        // A conflicting suffix goes: slots, sidecar and CommitLog bytes.
        let cut = f
            .slots
            .iter()
            .find(|s| s.log_id.index == 30)
            .map(|s| s.offset);
        f.truncate_from(30).expect("truncate");
        assert_eq!(f.slots.back().map(|s| s.log_id.index), Some(29));
        assert_eq!(Some(f.store.max_phy_offset()), cut);
        assert!(f.entries(30..).expect("read").is_empty());
        // and the follower takes the leader's entries again after it.
        append(&mut f, l.entries(30..42).expect("read"));
        assert_eq!(f.store.max_phy_offset(), end);
        drop((l, f));
        leader_dir.close().expect("cleanup");
    }

    #[test]
    fn resume_offsets_for_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) =
            open_storage(&dir.path().join("raft"), open_store(dir.path())).expect("open");
        assert_eq!(
            log.resume_offset(None),
            0,
            "empty log: from the CommitLog end"
        );
        append(&mut lock(&log.inner), (1..21).map(message).collect());
        let (slot5, slot6, last_end) = {
            let l = lock(&log.inner);
            let at = |i: u64| l.slots[l.position(i)].clone();
            (at(5), at(6), l.store.max_phy_offset())
        };
        assert_eq!(log.resume_offset(None), 0, "no match: the whole log");
        assert_eq!(log.resume_offset(Some(5)), slot5.end());
        assert_eq!(
            slot5.end(),
            slot6.offset,
            "entry 6's bytes start where 5's end"
        );
        assert_eq!(
            log.resume_offset(Some(20)),
            last_end,
            "caught up: nothing needed"
        );
        assert_eq!(log.resume_offset(Some(99)), last_end);
        // After a purge, a follower matched below the oldest slot needs it all.
        futures::executor::block_on(log.clone().purge(log_id(1, 10))).expect("purge");
        let oldest = lock(&log.inner).slots[0].offset;
        assert_eq!(log.resume_offset(Some(3)), oldest);
        assert_eq!(log.resume_offset(None), oldest);
    }

    /// A snapshot at a retained start installs on a lagging follower (store reset, carried
    /// bytes appended, the leader's later entries follow at the same offsets), and an install
    /// cut short by a crash (log reset, store not) is finished when the follower reopens.
    #[test]
    fn a_snapshot_starts_a_follower_at_the_first_retained_file() {
        let file = 16 * 1024;
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (leader, mut leader_sm) = open_storage(
            &leader_dir.path().join("raft"),
            open_store(leader_dir.path()),
        )
        .expect("open");
        let entries = {
            let mut l = lock(&leader.inner);
            append(&mut l, (1..41).map(message).collect());
            l.entries(1..41).expect("read back")
        };
        futures::executor::block_on(leader_sm.apply(entries.clone())).expect("applied");
        // The files below the third are about to go.
        leader.set_retain_from(2 * file);
        let (upto, next) = {
            let l = lock(&leader.inner);
            let at = snapshot::last_gone(&l.spans(), 2 * file, Some(40)).expect("gone");
            (l.slots[at].log_id, l.slots[at + 1].clone())
        };
        assert_eq!(leader.gone_upto(2 * file, Some(40)), Some(upto));
        let snap = futures::executor::block_on(leader_sm.build_snapshot()).expect("built");
        assert_eq!(snap.meta.last_log_id, Some(upto));
        let data = snap.snapshot.into_inner();
        let (header, carried) = snapshot::decode(&data).expect("decodes");
        assert_eq!((header.start, header.end), (2 * file, next.offset));
        assert_eq!(carried.len() as i64, next.offset - 2 * file);
        assert!(header.queues.iter().all(|q| q.offset > 0));
        let later = entries[upto.index as usize..].to_vec();
        let leader_end = lock(&leader.inner).store.max_phy_offset();
        let leader_bytes = lock(&leader.inner)
            .read_bytes(2 * file, (leader_end - 2 * file) as u64)
            .expect("leader bytes");

        let check = |log: &RaftLogStore| {
            let mut f = lock(&log.inner);
            assert_eq!(f.store.min_phy_offset(), 2 * file);
            assert_eq!(f.store.max_phy_offset(), next.offset);
            append(&mut f, later.clone());
            assert_eq!(f.store.max_phy_offset(), leader_end);
            // Readers see queues up to the committed offset; applying the entries moves it.
            f.store.set_committed_offset(Some(leader_end));
            assert_eq!(
                f.read_bytes(2 * file, (leader_end - 2 * file) as u64)
                    .expect("follower bytes"),
                leader_bytes
            );
            for q in 0..2 {
                assert_eq!(
                    f.store.get_min_offset_in_queue("TopicRaft", q),
                    header
                        .queues
                        .iter()
                        .find(|x| x.queue_id == q)
                        .map(|x| x.offset)
                        .expect("queue")
                );
                assert_eq!(
                    f.store.get_max_offset_in_queue("TopicRaft", q),
                    lock(&leader.inner)
                        .store
                        .get_max_offset_in_queue("TopicRaft", q)
                );
            }
        };

        // A follower that holds the first entries installs it.
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, mut sm) =
            open_storage(&dir.path().join("raft"), open_store(dir.path())).expect("open");
        append(&mut lock(&log.inner), entries[..5].to_vec());
        futures::executor::block_on(
            sm.install_snapshot(&snap.meta, Box::new(Cursor::new(data.clone()))),
        )
        .expect("installed");
        assert_eq!(
            futures::executor::block_on(sm.applied_state())
                .expect("state")
                .0,
            Some(upto)
        );
        check(&log);

        // A crash after the log was reset but before the store was.
        let dir = tempfile::tempdir().expect("tempdir");
        let raft_dir = dir.path().join("raft");
        let store = open_store(dir.path());
        let (log, _) = open_storage(&raft_dir, store.clone()).expect("open");
        append(&mut lock(&log.inner), entries[..5].to_vec());
        write_atomically(&raft_dir.join(SNAPSHOT_FILE), &data).expect("snapshot file");
        lock(&log.inner).reset(upto).expect("log reset");
        drop(log);
        store.halt();
        let (log, mut sm) = open_storage(&raft_dir, open_store(dir.path())).expect("reopen");
        assert_eq!(
            futures::executor::block_on(sm.applied_state())
                .expect("state")
                .0,
            Some(upto)
        );
        check(&log);
        // And a clean reopen leaves an installed snapshot's store alone.
        let store = lock(&log.inner).store.clone();
        drop((log, sm));
        store.shutdown().expect("shutdown");
        let (log, _) = open_storage(&raft_dir, open_store(dir.path())).expect("reopen");
        let state = futures::executor::block_on(log.clone().get_log_state()).expect("state");
        assert_eq!(state.last_purged_log_id, Some(upto));
        assert_eq!(state.last_log_id, Some(log_id(1, 40)));
        assert_eq!(lock(&log.inner).store.max_phy_offset(), leader_end);
    }

    #[test]
    fn a_message_the_store_refuses_becomes_a_blank_entry_and_the_proposer_learns_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ferrum_store::MessageStoreConfig::new(dir.path().join("store"));
        config.mapped_file_size_commit_log = 64 * 1024;
        config.max_message_size = 8 * 1024;
        let store = MessageStore::open(config).expect("store opens");
        let (log, mut sm) = open_storage(&dir.path().join("raft"), store.clone()).expect("open");
        let mut too_big = message(1);
        if let EntryPayload::Normal(RaftRequest::Message(m)) = &mut too_big.payload {
            m.body = vec![b'y'; 16 * 1024];
        }
        let entries = {
            let mut l = lock(&log.inner);
            append(&mut l, vec![too_big, message(2)]);
            l.entries(1..3).expect("read back")
        };
        assert!(matches!(entries[0].payload, EntryPayload::Blank));
        assert!(matches!(
            entries[1].payload,
            EntryPayload::Normal(RaftRequest::Stored { offset: 0, .. })
        ));
        let responses = futures::executor::block_on(sm.apply(entries)).expect("applied");
        let why = responses[0]
            .refused
            .as_deref()
            .expect("the refusal is reported");
        assert!(
            why.contains("MessageIllegal") || why.contains("too"),
            "{why}"
        );
        assert_eq!(
            responses[0].refused_status,
            Some(PutMessageStatus::MessageIllegal)
        );
        assert_eq!(responses[1].refused, None);
        assert_eq!(responses[1].refused_status, None);
        assert!(responses[1].len > 0);
        store.shutdown().expect("store shuts down");
    }

    /// A full disk is not the message's fault: the proposer must hear ServiceNotAvailable, which
    /// producers retry on another broker, not MessageIllegal, which they give up on.
    #[test]
    fn a_full_disk_refusal_keeps_its_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ferrum_store::MessageStoreConfig::new(dir.path().join("store"));
        config.mapped_file_size_commit_log = 64 * 1024;
        config.clean_resource_interval = std::time::Duration::from_millis(20);
        config.clean_file_forcibly_enable = false;
        let store = MessageStore::open(config).expect("store opens");
        store.set_disk_ratio_override(Some(0.99));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.disk_refusal().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            store.disk_refusal().is_some(),
            "the store saw its disk full"
        );
        let (log, mut sm) = open_storage(&dir.path().join("raft"), store.clone()).expect("open");
        let entries = {
            let mut l = lock(&log.inner);
            append(&mut l, vec![message(1)]);
            l.entries(1..2).expect("read back")
        };
        assert!(matches!(entries[0].payload, EntryPayload::Blank));
        let responses = futures::executor::block_on(sm.apply(entries)).expect("applied");
        assert_eq!(
            responses[0].refused_status,
            Some(PutMessageStatus::ServiceNotAvailable)
        );
        let why = responses[0]
            .refused
            .as_deref()
            .expect("the refusal is reported");
        assert!(why.contains("diskSpaceWarningLevelRatio"), "{why}");
        store.shutdown().expect("store shuts down");
    }

    /// A deposed leader truncates its uncommitted tail and appends the new leader's entries;
    /// after a crash every slot must still be there (the sidecar once kept writing at its old
    /// end, the hole ended the log at the truncation point on reopen, and the CommitLog bytes
    /// after it were thrown away).
    #[test]
    fn appends_after_a_truncation_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raft_dir = dir.path().join("raft");
        let store = open_store(dir.path());
        let (mut log, _) = open_storage(&raft_dir, store.clone()).expect("open");
        append(&mut lock(&log.inner), (1..11).map(message).collect());
        lock(&log.inner).truncate_from(6).expect("truncate");
        let second_term = (6..16).map(|i| Entry {
            log_id: log_id(2, i as u64),
            ..message(i + 100)
        });
        append(&mut lock(&log.inner), second_term.collect());
        let end = store.max_phy_offset();
        let before = futures::executor::block_on(log.try_get_log_entries(1..16)).expect("read");
        drop(log);
        store.halt();

        let store = open_store(dir.path());
        let (mut log, _) = open_storage(&raft_dir, store.clone()).expect("reopen");
        let state = futures::executor::block_on(log.get_log_state()).expect("state");
        assert_eq!(state.last_log_id, Some(log_id(2, 15)));
        assert_eq!(store.max_phy_offset(), end, "no CommitLog byte dropped");
        let after = futures::executor::block_on(log.try_get_log_entries(1..16)).expect("read");
        assert_eq!(after, before);
        store.shutdown().expect("store shuts down");
    }

    #[test]
    fn reopen_keeps_vote_and_log_and_drops_unaccounted_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raft_dir = dir.path().join("raft");
        let store = open_store(dir.path());
        let (mut log, _) = open_storage(&raft_dir, store.clone()).expect("open");
        let vote = Vote::new(7, 2);
        futures::executor::block_on(log.save_vote(&vote)).expect("vote saved");
        append(&mut lock(&log.inner), (1..11).map(message).collect());
        let logged_end = store.max_phy_offset();
        // Bytes appended without a slot, as a crash between the two writes leaves them.
        let orphan = store.put_messages_blocking(vec![match message(99).payload {
            EntryPayload::Normal(RaftRequest::Message(m)) => m.into_inner(),
            _ => unreachable!("message() builds a message"),
        }]);
        assert_eq!(orphan.status, PutMessageStatus::PutOk);
        assert!(store.max_phy_offset() > logged_end);
        drop(log);
        store.shutdown().expect("store shuts down");

        let store = open_store(dir.path());
        let (mut log, _) = open_storage(&raft_dir, store.clone()).expect("reopen");
        assert_eq!(
            futures::executor::block_on(log.read_vote()).expect("vote"),
            Some(vote)
        );
        let state = futures::executor::block_on(log.get_log_state()).expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(10));
        assert_eq!(store.max_phy_offset(), logged_end, "orphan bytes truncated");
        store.shutdown().expect("store shuts down");
    }
}
