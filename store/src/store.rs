//! The message store: CommitLog, dispatch to ConsumeQueues and the key index, recovery, flush
//! and retention.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use ferrum_protocol::message::{
    self, BLANK_MAGIC_CODE, END_FILE_MIN_BLANK_LENGTH, MAGIC_CODE_V1, MAGIC_CODE_V2, MessageView,
    RecordParts, property,
};

use crate::StoreError;
use crate::consume_queue::{ConsumeQueue, CqUnit};
use crate::index::{IndexCheckpoint, IndexLimits, KeyIndex};
use crate::mapped_file_queue::MappedFileQueue;
use crate::types::*;

const CHECKPOINT_FILE: &str = "checkpoint";
const ABORT_FILE: &str = "abort";
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// How far past the CommitLog's write position pages are kept faulted in, and how often that is
/// checked: 8 MiB lasts about 0.3 s at 30 MB/s of appends, far longer than one check period.
const PREFAULT_WINDOW: usize = 8 << 20;
const PREFAULT_TICK: Duration = Duration::from_millis(5);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the store remembers across restarts besides the files themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    /// Every CommitLog byte below this was fsynced.
    physic_offset: i64,
    /// Every record below this is in the (fsynced) consume queues.
    dispatched_offset: i64,
    /// How far the index files were fsynced.
    index: IndexCheckpoint,
}

impl Checkpoint {
    /// `physic i64 | dispatched i64 | index file name i64 | index count i32 | crc32 u32`.
    fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&self.physic_offset.to_be_bytes());
        b[8..16].copy_from_slice(&self.dispatched_offset.to_be_bytes());
        let (name, count) = self.index.encode();
        b[16..24].copy_from_slice(&name.to_be_bytes());
        b[24..28].copy_from_slice(&count.to_be_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Also reads the earlier 20-byte form (no index state: the index is rebuilt).
    fn decode(b: &[u8]) -> Option<Self> {
        let body = b.len().checked_sub(4)?;
        if body != 16 && body != 28 {
            return None;
        }
        let crc = u32::from_be_bytes(b[body..].try_into().ok()?);
        if crc != crc32fast::hash(&b[..body]) {
            return None;
        }
        let index = if body == 28 {
            IndexCheckpoint::decode(
                i64::from_be_bytes(b[16..24].try_into().ok()?),
                i32::from_be_bytes(b[24..28].try_into().ok()?),
            )
        } else {
            IndexCheckpoint::Unknown
        };
        Some(Self {
            physic_offset: i64::from_be_bytes(b[..8].try_into().ok()?),
            dispatched_offset: i64::from_be_bytes(b[8..16].try_into().ok()?),
            index,
        })
    }
}

/// One record found while walking the CommitLog.
enum Step {
    Record {
        offset: i64,
        bytes: Bytes,
    },
    /// A BLANK record or a file end: continue at this offset.
    Skip(i64),
    /// Nothing (valid) here.
    End,
}

/// A group-commit waiter.
struct FlushRequest {
    offset: i64,
    done: Notify,
}

enum Notify {
    Async(tokio::sync::oneshot::Sender<bool>),
    Blocking(std::sync::mpsc::Sender<bool>),
}

impl Notify {
    fn send(self, ok: bool) {
        match self {
            Self::Async(tx) => {
                let _ = tx.send(ok);
            }
            Self::Blocking(tx) => {
                let _ = tx.send(ok);
            }
        }
    }
}

type QueueKey = (String, i32);

#[derive(Debug, Default)]
struct WriteState {
    /// Next queue offset per topic/queue.
    topic_queue_table: HashMap<QueueKey, i64>,
}

struct Inner {
    config: MessageStoreConfig,
    commit_log: MappedFileQueue,
    cq_root: PathBuf,
    write: Mutex<WriteState>,
    /// CommitLog offset up to which records are dispatched.
    dispatched: AtomicI64,
    consume_queues: RwLock<HashMap<QueueKey, Arc<ConsumeQueue>>>,
    /// The IndexFiles (`topic#key` → CommitLog offsets); `None` with messageIndexEnable off.
    index: Mutex<Option<KeyIndex>>,
    flushed: AtomicI64,
    /// Reads never serve records ending past this (Raft / quorum commit); `i64::MAX` by default.
    committed: AtomicI64,
    /// Retention keeps files holding bytes at or above this (Raft mode: its oldest entry);
    /// `i64::MAX` (no floor) by default.
    retention_floor: AtomicI64,
    requests: Mutex<Vec<FlushRequest>>,
    requests_cv: Condvar,
    shutdown: AtomicBool,
    /// Why writes are refused for lack of disk space, if they are.
    disk_refusal: Mutex<Option<String>>,
    /// Test hook replacing the filesystem's used ratio.
    disk_ratio_override: Mutex<Option<f64>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Told how long each CommitLog flush that wrote something took (broker metrics).
    flush_observer: std::sync::OnceLock<FlushObserver>,
}

/// Receives the duration of every CommitLog flush that made bytes durable.
pub type FlushObserver = Arc<dyn Fn(Duration) + Send + Sync>;

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("root", &self.config.store_path_root_dir)
            .field("max_phy_offset", &self.commit_log.max_offset())
            .finish_non_exhaustive()
    }
}

/// The RocketMQ-style message store. Cheap to clone; all clones share one store.
#[derive(Debug, Clone)]
pub struct MessageStore {
    inner: Arc<Inner>,
}

impl MessageStore {
    /// Opens (creating if needed) the store at `config.store_path_root_dir`, recovers it and
    /// starts its flush and clean-up threads.
    pub fn open(config: MessageStoreConfig) -> Result<Self, StoreError> {
        let started = Instant::now();
        let root = config.store_path_root_dir.clone();
        if config.mapped_file_size_commit_log < 4096 || config.consume_queue_units_per_file == 0 {
            return Err(StoreError::Config(
                "mapped_file_size_commit_log must be at least 4096 and consume queues need units"
                    .into(),
            ));
        }
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        let abort_path = root.join(ABORT_FILE);
        let crashed = abort_path.exists();
        let checkpoint = std::fs::read(root.join(CHECKPOINT_FILE))
            .ok()
            .and_then(|b| Checkpoint::decode(&b));
        let commit_log =
            MappedFileQueue::load(&root.join("commitlog"), config.mapped_file_size_commit_log)?;
        let inner = Inner {
            cq_root: root.join("consumequeue"),
            commit_log,
            write: Mutex::new(WriteState::default()),
            dispatched: AtomicI64::new(0),
            consume_queues: RwLock::new(HashMap::new()),
            index: Mutex::new(None),
            flushed: AtomicI64::new(0),
            committed: AtomicI64::new(i64::MAX),
            retention_floor: AtomicI64::new(i64::MAX),
            requests: Mutex::new(Vec::new()),
            requests_cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
            disk_refusal: Mutex::new(None),
            disk_ratio_override: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            flush_observer: std::sync::OnceLock::new(),
            config,
        };
        inner.recover(crashed, checkpoint)?;
        std::fs::write(&abort_path, b"").map_err(|e| StoreError::io(&abort_path, e))?;
        let inner = Arc::new(inner);
        let store = Self { inner };
        store.start_threads()?;
        tracing::info!(
            crashed,
            min_phy_offset = store.min_phy_offset(),
            max_phy_offset = store.max_phy_offset(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "message store recovered"
        );
        Ok(store)
    }

    fn start_threads(&self) -> Result<(), StoreError> {
        let flush = Arc::clone(&self.inner);
        let clean = Arc::clone(&self.inner);
        let spawn_err = |e: std::io::Error| StoreError::Config(format!("cannot start thread: {e}"));
        let t1 = std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || flush.flush_loop())
            .map_err(spawn_err)?;
        let t2 = std::thread::Builder::new()
            .name("store-clean".into())
            .spawn(move || clean.clean_loop())
            .map_err(spawn_err)?;
        let prefault = Arc::clone(&self.inner);
        let t3 = std::thread::Builder::new()
            .name("store-prefault".into())
            .spawn(move || prefault.prefault_loop())
            .map_err(spawn_err)?;
        lock(&self.inner.threads).extend([t1, t2, t3]);
        Ok(())
    }

    pub fn config(&self) -> &MessageStoreConfig {
        &self.inner.config
    }

    /// Appends one message; with SYNC_FLUSH waits (asynchronously) for the group commit.
    pub async fn put_message(&self, msg: MessageExtBrokerInner) -> PutMessageResult {
        self.put_messages(vec![msg]).await
    }

    /// Appends messages of one topic/queue contiguously (a batch) with consecutive queue
    /// offsets; with SYNC_FLUSH waits (asynchronously) for the group commit.
    pub async fn put_messages(&self, msgs: Vec<MessageExtBrokerInner>) -> PutMessageResult {
        let mut result = self.inner.append(&msgs);
        if result.status != PutMessageStatus::PutOk
            || self.inner.config.flush_disk_type != FlushDiskType::SyncFlush
        {
            return result;
        }
        let Some(end) = result
            .append
            .as_ref()
            .map(|a| a.wrote_offset + a.wrote_bytes as i64)
        else {
            return result;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.request_flush(end, Notify::Async(tx));
        let ok = matches!(
            tokio::time::timeout(self.inner.config.sync_flush_timeout, rx).await,
            Ok(Ok(true))
        );
        if !ok {
            result.status = PutMessageStatus::FlushDiskTimeout;
            result.remark = Some("the disk flush did not complete within syncFlushTimeout".into());
        }
        result
    }

    /// [`Self::put_messages`] for threads outside a tokio runtime: blocks the calling thread.
    pub fn put_messages_blocking(&self, msgs: Vec<MessageExtBrokerInner>) -> PutMessageResult {
        let mut result = self.inner.append(&msgs);
        if result.status != PutMessageStatus::PutOk
            || self.inner.config.flush_disk_type != FlushDiskType::SyncFlush
        {
            return result;
        }
        let Some(end) = result
            .append
            .as_ref()
            .map(|a| a.wrote_offset + a.wrote_bytes as i64)
        else {
            return result;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        self.inner.request_flush(end, Notify::Blocking(tx));
        if !matches!(
            rx.recv_timeout(self.inner.config.sync_flush_timeout),
            Ok(true)
        ) {
            result.status = PutMessageStatus::FlushDiskTimeout;
            result.remark = Some("the disk flush did not complete within syncFlushTimeout".into());
        }
        result
    }

    /// Reads up to `max_msgs` messages (and about `max_bytes`) of a queue from `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn get_message(
        &self,
        _group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msgs: usize,
        max_bytes: usize,
        filter: &MessageFilter,
    ) -> GetMessageResult {
        self.inner
            .get_message(topic, queue_id, offset, max_msgs, max_bytes, filter)
    }

    /// The next queue offset readers will see (0 if the queue does not exist): past the last
    /// unit whose record is committed, so a Raft leader's uncommitted tail is not announced.
    pub fn get_max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .find_cq(topic, queue_id)
            .map_or(0, |cq| self.inner.readable_max_offset(&cq))
    }

    pub fn get_min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .find_cq(topic, queue_id)
            .map_or(0, |cq| cq.min_offset())
    }

    /// The first queue offset whose message was stored at or after `timestamp` (ms); the max
    /// offset if none was.
    pub fn get_offset_in_queue_by_time(&self, topic: &str, queue_id: i32, timestamp: i64) -> i64 {
        self.inner.offset_by_time(topic, queue_id, timestamp)
    }

    /// The CommitLog offset of a queue position, if present.
    pub fn get_commit_log_offset_in_queue(
        &self,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
    ) -> Option<i64> {
        let committed = self.inner.committed.load(Ordering::Acquire);
        self.inner
            .find_cq(topic, queue_id)?
            .get(queue_offset)
            .filter(|u| u.is_filler() || u.phy_offset + i64::from(u.size) <= committed)
            .map(|u| u.phy_offset)
    }

    /// The committed record at a CommitLog offset (zero-copy).
    pub fn lookup_message_by_offset(&self, phy_offset: i64) -> Option<Bytes> {
        match self.inner.step(phy_offset, false) {
            Step::Record { bytes, .. }
                if phy_offset + bytes.len() as i64
                    <= self.inner.committed.load(Ordering::Acquire) =>
            {
                Some(bytes)
            }
            _ => None,
        }
    }

    /// Records whose KEYS or UNIQ_KEY include `key`, newest first, stored within
    /// `[begin, end]` ms.
    pub fn query_message_by_key(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin: i64,
        end: i64,
    ) -> Vec<Bytes> {
        let mut out = Vec::new();
        if max_num == 0 {
            return out;
        }
        let guard = lock(&self.inner.index);
        let Some(index) = guard.as_ref() else {
            return out;
        };
        let full_key = format!("{topic}#{key}");
        let committed = self.inner.committed.load(Ordering::Acquire);
        let mut seen = std::collections::HashSet::new();
        index.query(&full_key, begin, end, &mut |phy| {
            // The index is a hint: serve only a real record at `phy` (inside the CommitLog,
            // committed) that carries the key in this topic and was stored within the range.
            if !seen.insert(phy) {
                return true;
            }
            let Some(b) = self.lookup_message_by_offset(phy) else {
                return true;
            };
            if phy + b.len() as i64 > committed {
                return true;
            }
            let Ok((v, _)) = MessageView::decode(&b, false) else {
                return true;
            };
            if v.topic == topic
                && v.store_timestamp >= begin
                && v.store_timestamp <= end
                && record_has_key(&v, key)
            {
                out.push(b);
            }
            out.len() < max_num
        });
        out
    }

    /// Store timestamp of the oldest message still in the CommitLog.
    pub fn get_earliest_message_time(&self) -> Option<i64> {
        let mut off = self.min_phy_offset();
        for _ in 0..2 {
            match self.inner.step(off, false) {
                Step::Record { bytes, .. } => {
                    return MessageView::decode(&bytes, false)
                        .ok()
                        .map(|(v, _)| v.store_timestamp);
                }
                Step::Skip(next) => off = next,
                Step::End => return None,
            }
        }
        None
    }

    pub fn max_phy_offset(&self) -> i64 {
        self.inner.commit_log.max_offset()
    }

    pub fn min_phy_offset(&self) -> i64 {
        self.inner.commit_log.min_offset()
    }

    /// Installs the flush-latency observer; only the first one set is kept.
    pub fn set_flush_observer(&self, observer: FlushObserver) {
        let _ = self.inner.flush_observer.set(observer);
    }

    /// Used fraction of the store's filesystem as retention sees it (the test override included).
    pub fn disk_used_ratio(&self) -> Option<f64> {
        self.inner.disk_ratio()
    }

    /// CommitLog bytes below this are on disk.
    pub fn flushed_phy_offset(&self) -> i64 {
        self.inner.flushed.load(Ordering::Acquire)
    }

    /// Limits `get_message` to records ending at or before `offset` (bytes a quorum has
    /// committed); `None` serves everything written, the default.
    pub fn set_committed_offset(&self, offset: Option<i64>) {
        self.inner
            .committed
            .store(offset.unwrap_or(i64::MAX), Ordering::Release);
    }

    /// Keeps CommitLog files holding bytes at or above `offset` through expiry and
    /// `diskMaxUsedSpaceRatio` pressure (Raft mode sets the offset of its log's oldest entry);
    /// a forced clean (`diskSpaceCleanForciblyRatio`) still deletes them. `None` removes the
    /// floor.
    pub fn set_retention_floor(&self, offset: Option<i64>) {
        self.inner
            .retention_floor
            .store(offset.unwrap_or(i64::MAX), Ordering::Release);
    }

    /// The CommitLog offset up to which leading files are due for time-based retention now
    /// (older than `fileReservedTime`, in a `deleteWhen` hour or under `diskMaxUsedSpaceRatio`
    /// pressure), whatever the retention floor; the min offset when none is. Raft mode purges
    /// its log up to there so the floor lets those files go.
    pub fn expired_files_end(&self) -> i64 {
        let c = &self.inner.config;
        let pct = self.inner.disk_ratio().unwrap_or(0.0) * 100.0;
        let hour = ((now_ms() / 3_600_000) % 24) as u32;
        let delete_time = c
            .delete_when
            .split(';')
            .any(|h| h.trim().parse::<u32>().ok() == Some(hour));
        let mut end = self.min_phy_offset();
        if !(delete_time || pct >= f64::from(c.disk_max_used_space_ratio)) {
            return end;
        }
        let now = SystemTime::now();
        let files = self.inner.commit_log.files();
        // The last file is never deleted.
        for f in files.iter().take(files.len().saturating_sub(1)) {
            let expired = f
                .modified()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= c.file_reserved_time);
            if !expired {
                break;
            }
            end = f.file_from_offset() + f.file_size() as i64;
        }
        end
    }

    /// The floor set by [`Self::set_retention_floor`], if any.
    pub fn retention_floor(&self) -> Option<i64> {
        let floor = self.inner.retention_floor.load(Ordering::Acquire);
        (floor != i64::MAX).then_some(floor)
    }

    /// Raw CommitLog bytes from `offset` up to `max_len`, within one file, for replication.
    pub fn read_raw(&self, offset: i64, max_len: usize) -> Option<Bytes> {
        let f = self.inner.commit_log.find(offset)?;
        let pos = (offset - f.file_from_offset()) as usize;
        let len = f.wrote_position().saturating_sub(pos).min(max_len);
        if len == 0 {
            return None;
        }
        f.slice(pos, len)
    }

    /// Appends replicated CommitLog bytes that must start at the current max offset; complete
    /// records are dispatched to consume queues and the index.
    pub fn append_raw_at(&self, offset: i64, data: &[u8]) -> Result<(), StoreError> {
        self.inner.append_raw_at(offset, data)
    }

    /// Drops every CommitLog byte at or after `offset` and the consume-queue and index entries
    /// pointing there. Slices already handed out for that range must no longer be served.
    pub fn truncate_to(&self, offset: i64) -> Result<(), StoreError> {
        self.inner.truncate_to(offset)
    }

    /// Where every consume queue stands at CommitLog offset `phy` (a file start at or above the
    /// min offset): `(topic, queue id, logical offset of the first record at or after phy)`.
    /// A replica reset to `phy` with [`Self::reset_to`] starts its queues there, so the same
    /// message keeps the same queue offset on every replica.
    pub fn queue_offsets_at(&self, phy: i64) -> Vec<(String, i32, i64)> {
        let _state = lock(&self.inner.write);
        let mut out: Vec<(String, i32, i64)> = self
            .inner
            .all_cqs()
            .iter()
            .map(|cq| (cq.topic().to_owned(), cq.queue_id(), cq.offset_at_phy(phy)))
            .collect();
        out.sort();
        out
    }

    /// Throws the whole store away and starts it again empty at CommitLog offset `offset`
    /// (aligned to the CommitLog file size, as after retention deleted every file before it):
    /// every CommitLog file, consume queue and index file goes; the queues in `queues` start at
    /// their given logical offsets, so records appended from `offset` on (which carry their
    /// queue offsets) land where they are on the replica they came from. For a replica that
    /// installs a Raft snapshot.
    pub fn reset_to(&self, offset: i64, queues: &[(String, i32, i64)]) -> Result<(), StoreError> {
        self.inner.reset_to(offset, queues)
    }

    /// Heap bytes held by the key index: a fixed amount per index file, nothing per message.
    #[doc(hidden)]
    /// Drops every consume queue of `topic` (DELETE_TOPIC_IN_BROKER): their files are removed
    /// and a re-created topic starts at queue offset 0. The CommitLog keeps the records until
    /// retention removes them, as RocketMQ's `deleteTopics` does. Returns how many queues were
    /// open.
    pub fn delete_topic(&self, topic: &str) -> Result<usize, StoreError> {
        self.inner.delete_topic(topic)
    }

    pub fn index_heap_bytes(&self) -> usize {
        lock(&self.inner.index)
            .as_ref()
            .map_or(0, KeyIndex::heap_bytes)
    }

    /// Runs one retention pass now (the clean-up thread also runs it periodically).
    pub fn clean_now(&self) -> Result<(), StoreError> {
        self.inner.clean_once()
    }

    /// Replaces the measured disk usage ratio (0.0–1.0) with `ratio`, for tests.
    pub fn set_disk_ratio_override(&self, ratio: Option<f64>) {
        *lock(&self.inner.disk_ratio_override) = ratio;
    }

    /// Why writes are currently refused for lack of disk space, if they are.
    pub fn disk_refusal(&self) -> Option<String> {
        lock(&self.inner.disk_refusal).clone()
    }

    /// Stops the threads as a crash would: nothing more is flushed, no checkpoint is written and
    /// the abort marker stays, so the next open runs crash recovery. For tests and fault drills.
    pub fn halt(&self) {
        if self.inner.shutdown.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.requests_cv.notify_all();
        for t in lock(&self.inner.threads).drain(..) {
            let _ = t.join();
        }
    }

    /// Flushes everything, writes the checkpoint, removes the abort marker and stops the
    /// threads. Later puts answer SERVICE_NOT_AVAILABLE.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        if self.inner.shutdown.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.requests_cv.notify_all();
        for t in lock(&self.inner.threads).drain(..) {
            let _ = t.join();
        }
        let _guard = lock(&self.inner.write);
        self.inner.flush_commit_log(0)?;
        self.inner.checkpoint()?;
        let abort = self.inner.config.store_path_root_dir.join(ABORT_FILE);
        match std::fs::remove_file(&abort) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&abort, e)),
        }
    }
}

impl Inner {
    fn find_cq(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.consume_queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic.to_owned(), queue_id))
            .cloned()
    }

    fn find_or_create_cq(
        &self,
        topic: &str,
        queue_id: i32,
    ) -> Result<Arc<ConsumeQueue>, StoreError> {
        if let Some(cq) = self.find_cq(topic, queue_id) {
            return Ok(cq);
        }
        let mut map = self
            .consume_queues
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(cq) = map.get(&(topic.to_owned(), queue_id)) {
            return Ok(Arc::clone(cq));
        }
        let cq = Arc::new(ConsumeQueue::load(
            &self.cq_root,
            topic,
            queue_id,
            self.config.consume_queue_units_per_file,
        )?);
        map.insert((topic.to_owned(), queue_id), Arc::clone(&cq));
        Ok(cq)
    }

    fn all_cqs(&self) -> Vec<Arc<ConsumeQueue>> {
        self.consume_queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Reads what is at `offset`: a complete record (with CRC checked when `check_crc`), a
    /// BLANK / file end, or nothing valid.
    fn step(&self, offset: i64, check_crc: bool) -> Step {
        let Some(f) = self.commit_log.find(offset) else {
            return Step::End;
        };
        let pos = (offset - f.file_from_offset()) as usize;
        let file_end = f.file_from_offset() + f.file_size() as i64;
        if pos + END_FILE_MIN_BLANK_LENGTH > f.file_size() {
            return Step::Skip(file_end);
        }
        let Some(head) = f.slice(pos, 8) else {
            return Step::End;
        };
        let total = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let magic = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if magic == BLANK_MAGIC_CODE && total as i64 == file_end - offset {
            return Step::Skip(file_end);
        }
        if (magic != MAGIC_CODE_V1 && magic != MAGIC_CODE_V2) || total <= 0 {
            return Step::End;
        }
        let Some(bytes) = f.slice(pos, total as usize) else {
            return Step::End;
        };
        match MessageView::decode(&bytes, check_crc) {
            Ok((v, _)) if v.commit_log_offset == offset => Step::Record { offset, bytes },
            _ => Step::End,
        }
    }

    fn recover(&self, crashed: bool, checkpoint: Option<Checkpoint>) -> Result<(), StoreError> {
        let files = self.commit_log.files();
        let min = self.commit_log.min_offset();
        let file_size = self.config.mapped_file_size_commit_log as i64;
        // A clean stop left every file before the checkpoint's one complete; after a crash only
        // fsynced bytes are trusted, and validation starts at the file holding them.
        let start = match checkpoint {
            Some(c) if c.physic_offset >= min => c.physic_offset - c.physic_offset % file_size,
            _ => min,
        };
        let start = if files.iter().any(|f| f.file_from_offset() == start) {
            start
        } else {
            min
        };
        // Files are loaded as full; the walk below relies on positions only up to `offset`.
        let mut offset = start;
        loop {
            // After a clean stop the file was fsynced whole, so headers suffice; after a crash
            // every body is checked against its CRC.
            match self.step(offset, crashed) {
                Step::Record { bytes, .. } => offset += bytes.len() as i64,
                Step::Skip(next) => {
                    if self.commit_log.find(next).is_none() {
                        offset = next;
                        break;
                    }
                    offset = next;
                }
                Step::End => break,
            }
        }
        if offset < self.commit_log.max_offset() {
            if crashed {
                tracing::warn!(
                    valid_end = offset,
                    "truncating the CommitLog's invalid tail after an abnormal stop"
                );
                self.commit_log.truncate_to(offset)?;
            } else {
                self.commit_log.truncate_to_fast(offset)?;
            }
        }
        let max = self.commit_log.max_offset();
        self.flushed.store(max, Ordering::Release);

        // Consume queues: drop units past the CommitLog, then re-dispatch what is missing.
        if let Ok(topics) = std::fs::read_dir(&self.cq_root) {
            for topic in topics.flatten() {
                let Some(topic_name) = topic.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let Ok(queues) = std::fs::read_dir(topic.path()) else {
                    continue;
                };
                for q in queues.flatten() {
                    if let Some(qid) = q.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                        let cq = self.find_or_create_cq(&topic_name, qid)?;
                        cq.truncate_dirty(max)?;
                        cq.correct_min_offset(self.commit_log.min_offset())?;
                    }
                }
            }
        }
        // Consume queues hold everything below the checkpoint's dispatch point; records from
        // there on are dispatched again. The index keeps its checkpointed prefix (see
        // `KeyIndex::load`) and records after its newest entry are indexed again.
        let min = self.commit_log.min_offset();
        let cq_from = checkpoint
            .map_or(min, |c| c.dispatched_offset)
            .clamp(min, max);
        let mut from = cq_from;
        if self.config.message_index_enable {
            let index_dir = self.config.store_path_root_dir.join("index");
            let mut index = KeyIndex::load(
                &index_dir,
                IndexLimits {
                    slot_num: self.config.max_hash_slot_num,
                    max_index_num: self.config.max_index_num,
                },
                checkpoint.map_or(IndexCheckpoint::Unknown, |c| c.index),
                crashed,
                self.config.message_index_safe,
                max,
            )?;
            let last = index.last_indexed();
            // Every record below the checkpoint's dispatch point was indexed before it was
            // written, so an index without entries at or above `min` has nothing to catch up
            // there; one that lost checkpointed files starts over.
            let index_from = match index.resume_point() {
                None => min,
                Some(p) if p >= min => p.min(max),
                Some(_) => cq_from,
            };
            // The newest entry must name a real record to restart from; otherwise start over.
            let index_from = if index_from == min
                || index_from == cq_from
                || matches!(self.step(index_from, false), Step::Record { .. })
            {
                index_from
            } else {
                tracing::warn!(
                    last_indexed = last,
                    "the index's newest entry names no record; rebuilding the index"
                );
                index.reset()?;
                min
            };
            from = from.min(index_from);
            *lock(&self.index) = Some(index);
        }
        let dispatch_started = Instant::now();
        self.dispatch_range(from, cq_from)?;
        tracing::info!(
            from,
            cq_from,
            to = self.dispatched.load(Ordering::Acquire),
            elapsed_ms = dispatch_started.elapsed().as_millis() as u64,
            "re-dispatched the CommitLog tail to consume queues and the index"
        );
        let mut state = lock(&self.write);
        for cq in self.all_cqs() {
            state
                .topic_queue_table
                .insert((cq.topic().to_owned(), cq.queue_id()), cq.max_offset());
        }
        Ok(())
    }

    /// Dispatches complete records from `from` up to the CommitLog end; consume queues only
    /// get records at or after `cq_from`.
    fn dispatch_range(&self, from: i64, cq_from: i64) -> Result<(), StoreError> {
        let mut off = from;
        loop {
            match self.step(off, false) {
                Step::Record { offset, bytes } => {
                    self.dispatch_record(offset, &bytes, offset >= cq_from)?;
                    off = offset + bytes.len() as i64;
                }
                Step::Skip(next) => {
                    if self.commit_log.find(next).is_none() {
                        break;
                    }
                    off = next;
                }
                Step::End => break,
            }
        }
        self.dispatched.store(off, Ordering::Release);
        Ok(())
    }

    fn dispatch_record(&self, offset: i64, bytes: &[u8], to_cq: bool) -> Result<(), StoreError> {
        let Ok((v, _)) = MessageView::decode(bytes, false) else {
            return Ok(());
        };
        if to_cq {
            let tags_code = v.property(property::TAGS).map_or(0, message::tags_code);
            let cq = self.find_or_create_cq(v.topic, v.queue_id)?;
            cq.put(
                v.queue_offset,
                CqUnit {
                    phy_offset: offset,
                    size: bytes.len() as i32,
                    tags_code,
                },
            )?;
        }
        self.index_record(&v, offset);
        Ok(())
    }

    /// Indexes a record under `topic#key` for its UNIQ_KEY and each KEYS entry.
    fn index_record(&self, v: &MessageView<'_>, offset: i64) {
        let mut keys: Vec<String> = Vec::new();
        if let Some(k) = v.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
            && !k.is_empty()
        {
            keys.push(format!("{}#{k}", v.topic));
        }
        if let Some(ks) = v.property(property::KEYS) {
            keys.extend(
                ks.split(property::KEY_SEPARATOR)
                    .filter(|k| !k.is_empty())
                    .map(|k| format!("{}#{k}", v.topic)),
            );
        }
        if keys.is_empty() {
            return;
        }
        let mut index = lock(&self.index);
        let Some(index) = index.as_mut() else {
            return;
        };
        if let Err(e) = index.put_record(offset, v.store_timestamp, keys.iter().map(String::as_str))
        {
            tracing::warn!(error = %e, offset, "writing the key index failed");
        }
    }

    fn check_put(&self, msgs: &[MessageExtBrokerInner]) -> Result<(), PutMessageResult> {
        if self.shutdown.load(Ordering::Acquire) {
            return Err(PutMessageResult::refused(
                PutMessageStatus::ServiceNotAvailable,
                "the message store is shut down",
            ));
        }
        if let Some(reason) = lock(&self.disk_refusal).clone() {
            return Err(PutMessageResult::refused(
                PutMessageStatus::ServiceNotAvailable,
                reason,
            ));
        }
        let Some(first) = msgs.first() else {
            return Err(PutMessageResult::refused(
                PutMessageStatus::MessageIllegal,
                "a batch needs at least one message",
            ));
        };
        for m in msgs {
            if m.topic != first.topic || m.queue_id != first.queue_id {
                return Err(PutMessageResult::refused(
                    PutMessageStatus::MessageIllegal,
                    "every message of a batch must have the same topic and queue",
                ));
            }
            if m.topic.is_empty() || m.topic.len() > message::MAX_TOPIC_LENGTH_V1 {
                return Err(PutMessageResult::refused(
                    PutMessageStatus::MessageIllegal,
                    format!("topic length {} is not within 1..=127 bytes", m.topic.len()),
                ));
            }
            if m.queue_id < 0 {
                return Err(PutMessageResult::refused(
                    PutMessageStatus::MessageIllegal,
                    format!("queue id {} is negative", m.queue_id),
                ));
            }
        }
        Ok(())
    }

    fn append(&self, msgs: &[MessageExtBrokerInner]) -> PutMessageResult {
        if let Err(refusal) = self.check_put(msgs) {
            return refusal;
        }
        match self.append_locked(msgs) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "append to the CommitLog failed");
                PutMessageResult::refused(PutMessageStatus::UnknownError, e.to_string())
            }
        }
    }

    fn append_locked(
        &self,
        msgs: &[MessageExtBrokerInner],
    ) -> Result<PutMessageResult, StoreError> {
        let mut state = lock(&self.write);
        let topic = msgs[0].topic.as_str();
        let queue_id = msgs[0].queue_id;
        let key = (topic.to_owned(), queue_id);
        let queue_offset = match state.topic_queue_table.get(&key) {
            Some(o) => *o,
            None => self.find_or_create_cq(topic, queue_id)?.max_offset(),
        };
        let store_ts = now_ms();
        let store_host = self.config.store_host;
        let file_size = self.config.mapped_file_size_commit_log;
        let mut start = self.commit_log.max_offset();
        let created = |start| {
            self.commit_log.last_or_create(start).map_err(|e| {
                PutMessageResult::refused(
                    PutMessageStatus::CreateMappedFileFailed,
                    format!("cannot create the next CommitLog file: {e}"),
                )
            })
        };
        let mut file = match created(start) {
            Ok(f) => f,
            Err(r) => return Ok(r),
        };
        let mut buf = BytesMut::new();
        let mut sizes = Vec::with_capacity(msgs.len());
        // Encoded twice at most: once more if the batch has to move to a fresh file, since the
        // physical offsets inside the records change.
        for attempt in 0..2 {
            buf.clear();
            sizes.clear();
            let mut phy = start;
            for (i, m) in msgs.iter().enumerate() {
                let props = message::properties_to_string(&m.properties);
                if props.len() > message::MAX_PROPERTIES_LENGTH {
                    return Ok(PutMessageResult::refused(
                        PutMessageStatus::PropertiesSizeExceeded,
                        format!("properties are {} bytes, the limit is 32767", props.len()),
                    ));
                }
                let parts = RecordParts {
                    topic: &m.topic,
                    queue_id,
                    flag: m.flag,
                    queue_offset: queue_offset + i as i64,
                    commit_log_offset: phy,
                    sys_flag: m.sys_flag,
                    born_timestamp: m.born_timestamp,
                    born_host: m.born_host.unwrap_or(store_host),
                    store_timestamp: store_ts,
                    store_host,
                    reconsume_times: m.reconsume_times,
                    prepared_transaction_offset: m.prepared_transaction_offset,
                    body: &m.body,
                    properties: props.as_bytes(),
                };
                let size = parts.stored_size();
                if size > self.config.max_message_size {
                    return Ok(PutMessageResult::refused(
                        PutMessageStatus::MessageIllegal,
                        format!(
                            "message record is {size} bytes, the limit is {}",
                            self.config.max_message_size
                        ),
                    ));
                }
                message::encode_record(&mut buf, &parts).map_err(StoreError::Message)?;
                sizes.push(size);
                phy += size as i64;
            }
            if buf.len() + END_FILE_MIN_BLANK_LENGTH <= file.remaining() {
                break;
            }
            if attempt == 1 || buf.len() + END_FILE_MIN_BLANK_LENGTH > file_size {
                return Ok(PutMessageResult::refused(
                    PutMessageStatus::MessageIllegal,
                    format!(
                        "{} bytes of records do not fit in a CommitLog file of {file_size} bytes",
                        buf.len()
                    ),
                ));
            }
            file.pad_to_end();
            start = self.commit_log.max_offset();
            file = match created(start) {
                Ok(f) => f,
                Err(r) => return Ok(r),
            };
        }
        if !file.append(&buf) {
            return Err(StoreError::Corrupt("CommitLog file overflow".into()));
        }
        let mut off = start;
        let mut msg_ids = Vec::with_capacity(msgs.len());
        for (i, (m, size)) in msgs.iter().zip(&sizes).enumerate() {
            let tags_code = m.tags_code.unwrap_or_else(|| {
                m.properties
                    .get(property::TAGS)
                    .map_or(0, |t| message::tags_code(t))
            });
            let cq = self.find_or_create_cq(topic, queue_id)?;
            cq.put(
                queue_offset + i as i64,
                CqUnit {
                    phy_offset: off,
                    size: *size as i32,
                    tags_code,
                },
            )?;
            let rec = &buf[(off - start) as usize..(off - start) as usize + size];
            if let Ok((v, _)) = MessageView::decode(rec, false) {
                self.index_record(&v, off);
            }
            msg_ids.push(message::create_message_id(store_host, off));
            off += *size as i64;
        }
        self.dispatched.store(off, Ordering::Release);
        state
            .topic_queue_table
            .insert(key, queue_offset + msgs.len() as i64);
        Ok(PutMessageResult {
            status: PutMessageStatus::PutOk,
            append: Some(AppendMessageResult {
                wrote_offset: start,
                wrote_bytes: buf.len(),
                msg_ids,
                store_timestamp: store_ts,
                logics_offset: queue_offset,
                msg_num: msgs.len(),
            }),
            remark: None,
        })
    }

    fn append_raw_at(&self, offset: i64, data: &[u8]) -> Result<(), StoreError> {
        let mut state = lock(&self.write);
        let max = self.commit_log.max_offset();
        // An empty replica may start at any file boundary, as a master ships from the start of
        // its last file to a new slave.
        let file_size = self.config.mapped_file_size_commit_log as i64;
        if max == 0
            && self
                .commit_log
                .last()
                .is_none_or(|f| f.wrote_position() == 0)
            && offset > 0
            && offset % file_size == 0
        {
            self.commit_log.reset_to(offset)?;
            self.dispatched.store(offset, Ordering::Release);
        } else if offset != max {
            return Err(StoreError::OffsetMismatch {
                expected: max,
                got: offset,
            });
        }
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let f = self.commit_log.last_or_create(at)?;
            let n = rest.len().min(f.remaining());
            if !f.append(&rest[..n]) {
                return Err(StoreError::Corrupt("CommitLog file overflow".into()));
            }
            at += n as i64;
            rest = &rest[n..];
        }
        let from = self.dispatched.load(Ordering::Acquire);
        self.dispatch_range(from, from)?;
        for cq in self.all_cqs() {
            state
                .topic_queue_table
                .insert((cq.topic().to_owned(), cq.queue_id()), cq.max_offset());
        }
        Ok(())
    }

    fn delete_topic(&self, topic: &str) -> Result<usize, StoreError> {
        if topic.is_empty() || topic == "." || topic == ".." || topic.contains(['/', '\\']) {
            return Err(StoreError::Config(format!(
                "topic name {topic:?} cannot name a consume-queue directory"
            )));
        }
        // Holding the write lock keeps appends (and a slave's raw appends) from dispatching
        // into the queues while they go away.
        let mut state = lock(&self.write);
        // A restart re-dispatches records from the checkpoint on; the deleted topic's records
        // must all lie below it, or they would come back in a fresh queue. Every appended
        // record is already dispatched, so flushing the CommitLog lets the checkpoint cover
        // them.
        self.flush_commit_log(0)?;
        let removed = {
            let mut map = self
                .consume_queues
                .write()
                .unwrap_or_else(|p| p.into_inner());
            let before = map.len();
            map.retain(|(t, _), _| t != topic);
            before - map.len()
        };
        state.topic_queue_table.retain(|(t, _), _| t != topic);
        let dir = self.cq_root.join(topic);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&dir, e)),
        }
        self.checkpoint()?;
        tracing::info!(
            topic,
            queues = removed,
            "deleted the topic's consume queues"
        );
        Ok(removed)
    }

    fn truncate_to(&self, offset: i64) -> Result<(), StoreError> {
        let mut state = lock(&self.write);
        let offset = offset.max(self.commit_log.min_offset());
        self.commit_log.truncate_to(offset)?;
        for cq in self.all_cqs() {
            cq.truncate_dirty(offset)?;
        }
        if let Some(index) = lock(&self.index).as_mut() {
            index.truncate(offset)?;
        }
        let d = self.dispatched.load(Ordering::Acquire).min(offset);
        self.dispatched.store(d, Ordering::Release);
        if self.flushed.load(Ordering::Acquire) > offset {
            self.flushed.store(offset, Ordering::Release);
        }
        state.topic_queue_table.clear();
        for cq in self.all_cqs() {
            state
                .topic_queue_table
                .insert((cq.topic().to_owned(), cq.queue_id()), cq.max_offset());
        }
        Ok(())
    }

    fn reset_to(&self, offset: i64, queues: &[(String, i32, i64)]) -> Result<(), StoreError> {
        let file_size = self.config.mapped_file_size_commit_log as i64;
        if offset < 0 || offset % file_size != 0 {
            return Err(StoreError::Config(format!(
                "a store can only start at a CommitLog file boundary (multiple of {file_size}), not at {offset}"
            )));
        }
        let mut state = lock(&self.write);
        self.commit_log.reset_to(offset)?;
        let old: Vec<Arc<ConsumeQueue>> = {
            let mut map = self
                .consume_queues
                .write()
                .unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, cq)| cq).collect()
        };
        for cq in &old {
            // Unmaps and deletes its files before the directory goes.
            cq.start_at(0)?;
        }
        drop(old);
        match std::fs::remove_dir_all(&self.cq_root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&self.cq_root, e)),
        }
        state.topic_queue_table.clear();
        for (topic, queue_id, logic) in queues {
            if topic.is_empty() || topic == "." || topic == ".." || topic.contains(['/', '\\']) {
                return Err(StoreError::Config(format!(
                    "topic name {topic:?} cannot name a consume-queue directory"
                )));
            }
            let cq = self.find_or_create_cq(topic, *queue_id)?;
            cq.start_at(*logic)?;
            state
                .topic_queue_table
                .insert((topic.clone(), *queue_id), *logic);
        }
        if let Some(index) = lock(&self.index).as_mut() {
            index.reset()?;
        }
        self.dispatched.store(offset, Ordering::Release);
        self.flushed.store(offset, Ordering::Release);
        drop(state);
        // A crash from here re-dispatches from `offset`, never from the old checkpoint.
        self.checkpoint()
    }

    fn get_message(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msgs: usize,
        max_bytes: usize,
        filter: &MessageFilter,
    ) -> GetMessageResult {
        let mut r = GetMessageResult {
            status: GetMessageStatus::NoMatchedLogicQueue,
            messages: Vec::new(),
            queue_offsets: Vec::new(),
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
            suggest_pulling_from_slave: false,
        };
        let Some(cq) = self.find_cq(topic, queue_id) else {
            return r;
        };
        let min = cq.min_offset();
        let max = self.readable_max_offset(&cq);
        r.min_offset = min;
        r.max_offset = max;
        if offset >= max && offset <= cq.max_offset() && max < cq.max_offset() {
            // Written but not committed yet: wait for it as for the next message.
            r.status = GetMessageStatus::OffsetOverflowOne;
            r.next_begin_offset = offset;
            return r;
        }
        if max == 0 {
            r.status = GetMessageStatus::NoMessageInQueue;
            return r;
        }
        if offset < min {
            r.status = GetMessageStatus::OffsetTooSmall;
            r.next_begin_offset = min;
            return r;
        }
        if offset == max {
            r.status = GetMessageStatus::OffsetOverflowOne;
            r.next_begin_offset = offset;
            return r;
        }
        if offset > max {
            r.status = GetMessageStatus::OffsetOverflowBadly;
            // RocketMQ before 4.9.4 sent a queue whose min offset is 0 back to 0, which made
            // consumers read the whole queue again (apache/rocketmq#4215); since then it is max.
            r.next_begin_offset = max;
            return r;
        }
        let min_phy = self.commit_log.min_offset();
        let max_phy = self.commit_log.max_offset();
        r.status = GetMessageStatus::NoMatchedMessage;
        let mut next = offset;
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        let mut last_phy = None;
        while next < max && scanned < self.config.max_filter_message_count.max(max_msgs) {
            let Some(unit) = cq.get(next) else {
                r.status = GetMessageStatus::OffsetFoundNull;
                break;
            };
            if !r.messages.is_empty()
                && (r.messages.len() >= max_msgs || bytes + unit.size as usize > max_bytes)
            {
                break;
            }
            scanned += 1;
            if unit.phy_offset < min_phy {
                r.status = GetMessageStatus::MessageWasRemoving;
                next += 1;
                continue;
            }
            if unit.phy_offset + i64::from(unit.size) > self.committed.load(Ordering::Acquire) {
                // Not committed yet: the queue ends here for readers.
                break;
            }
            if !filter.matches(unit.tags_code) {
                next += 1;
                continue;
            }
            match self.commit_log.slice(unit.phy_offset, unit.size as usize) {
                Some(b) => {
                    bytes += b.len();
                    r.messages.push(b);
                    r.queue_offsets.push(next);
                    last_phy = Some(unit.phy_offset);
                    r.status = GetMessageStatus::Found;
                }
                None => {
                    if r.messages.is_empty() {
                        r.status = GetMessageStatus::OffsetFoundNull;
                    }
                }
            }
            next += 1;
            if r.messages.len() >= max_msgs {
                break;
            }
        }
        r.next_begin_offset = next;
        if let Some(p) = last_phy {
            let memory = self.config.total_physical_memory as f64
                * f64::from(self.config.access_message_in_memory_max_ratio)
                / 100.0;
            r.suggest_pulling_from_slave = (max_phy - p) as f64 > memory;
        }
        r
    }

    fn offset_by_time(&self, topic: &str, queue_id: i32, ts: i64) -> i64 {
        let Some(cq) = self.find_cq(topic, queue_id) else {
            return 0;
        };
        let store_ts = |logic: i64| -> Option<i64> {
            let u = cq.get(logic)?;
            let b = self.commit_log.slice(u.phy_offset, u.size as usize)?;
            MessageView::decode(&b, false)
                .ok()
                .map(|(v, _)| v.store_timestamp)
        };
        let (mut lo, mut hi) = (cq.min_offset(), self.readable_max_offset(&cq));
        // Units whose message was deleted read as None; treat them as older than anything.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match store_ts(mid) {
                Some(t) if t >= ts => hi = mid,
                _ => lo = mid + 1,
            }
        }
        lo
    }

    /// The end of a queue for readers: past its last unit whose record ends at or below the
    /// committed offset. Units follow CommitLog order, so the committed ones are a prefix.
    fn readable_max_offset(&self, cq: &ConsumeQueue) -> i64 {
        let max = cq.max_offset();
        let committed = self.committed.load(Ordering::Acquire);
        let uncommitted = |logic: i64| {
            cq.get(logic)
                .is_some_and(|u| !u.is_filler() && u.phy_offset + i64::from(u.size) > committed)
        };
        if committed == i64::MAX || max == 0 || !uncommitted(max - 1) {
            return max;
        }
        let (mut lo, mut hi) = (cq.min_offset(), max - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if uncommitted(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    fn request_flush(&self, offset: i64, done: Notify) {
        if self.flushed.load(Ordering::Acquire) >= offset {
            done.send(true);
            return;
        }
        lock(&self.requests).push(FlushRequest { offset, done });
        self.requests_cv.notify_one();
    }

    fn flush_commit_log(&self, least_pages: usize) -> Result<i64, StoreError> {
        let started = Instant::now();
        let flushed = self.commit_log.flush(least_pages)?;
        let before = self.flushed.fetch_max(flushed, Ordering::AcqRel);
        if flushed > before
            && let Some(observe) = self.flush_observer.get()
        {
            observe(started.elapsed());
        }
        Ok(flushed)
    }

    /// Flushes consume queues and records how far both logs are durable.
    fn checkpoint(&self) -> Result<(), StoreError> {
        let dispatched = self.dispatched.load(Ordering::Acquire);
        for cq in self.all_cqs() {
            cq.flush(0)?;
        }
        let (index, pending) = match lock(&self.index).as_mut() {
            Some(index) => index.begin_flush()?,
            None => (IndexCheckpoint::Unknown, Vec::new()),
        };
        // Synced without the index lock: appends index under it while holding the write lock.
        for p in &pending {
            if let Err(e) = p.sync() {
                if let Some(index) = lock(&self.index).as_mut() {
                    index.mark_dirty();
                }
                return Err(e);
            }
        }
        let c = Checkpoint {
            physic_offset: self.flushed.load(Ordering::Acquire),
            dispatched_offset: dispatched.min(self.flushed.load(Ordering::Acquire)),
            index,
        };
        let root = &self.config.store_path_root_dir;
        let tmp = root.join("checkpoint.tmp");
        let path = root.join(CHECKPOINT_FILE);
        write_synced(&tmp, &c.encode())?;
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))
    }

    fn flush_loop(&self) {
        let sync = self.config.flush_disk_type == FlushDiskType::SyncFlush;
        let mut last_thorough = Instant::now();
        let mut last_checkpoint = Instant::now();
        while !self.shutdown.load(Ordering::Acquire) {
            let result = if sync {
                let reqs = {
                    let guard = lock(&self.requests);
                    let (mut guard, _) = self
                        .requests_cv
                        .wait_timeout_while(guard, Duration::from_millis(10), |r| {
                            r.is_empty() && !self.shutdown.load(Ordering::Acquire)
                        })
                        .unwrap_or_else(|p| p.into_inner());
                    std::mem::take(&mut *guard)
                };
                // One fsync covers every waiter whose bytes were written before it.
                match self.flush_commit_log(0) {
                    Ok(flushed) => {
                        let mut pending = Vec::new();
                        for r in reqs {
                            if r.offset <= flushed {
                                r.done.send(true);
                            } else {
                                pending.push(r);
                            }
                        }
                        lock(&self.requests).extend(pending);
                        Ok(())
                    }
                    Err(e) => {
                        for r in reqs {
                            r.done.send(false);
                        }
                        Err(e)
                    }
                }
            } else {
                let guard = lock(&self.requests);
                let _ = self.requests_cv.wait_timeout_while(
                    guard,
                    self.config.flush_interval_commit_log,
                    |_| !self.shutdown.load(Ordering::Acquire),
                );
                let least =
                    if last_thorough.elapsed() >= self.config.flush_commit_log_thorough_interval {
                        last_thorough = Instant::now();
                        0
                    } else {
                        self.config.flush_commit_log_least_pages
                    };
                self.flush_commit_log(least).map(|_| ())
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "CommitLog flush failed");
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
                last_checkpoint = Instant::now();
                if let Err(e) = self.checkpoint() {
                    tracing::error!(error = %e, "writing the checkpoint failed");
                }
            }
        }
        for r in lock(&self.requests).drain(..) {
            r.done.send(false);
        }
    }

    /// Keeps the pages just past the CommitLog's write position faulted in (RocketMQ warms a
    /// whole new file in its allocation thread; a moving window costs no more memory than it
    /// needs), so appends copy into mapped pages instead of faulting under the write lock.
    fn prefault_loop(&self) {
        let window = PREFAULT_WINDOW.min(self.config.mapped_file_size_commit_log);
        // (start offset of the file, position up to which it is faulted in)
        let mut done: Option<(i64, usize)> = None;
        while !self.shutdown.load(Ordering::Acquire) {
            if let Some(file) = self.commit_log.last() {
                let start = file.file_from_offset();
                let upto = match done {
                    Some((s, upto)) if s == start => upto,
                    _ => 0,
                };
                if let Some((pos, len)) = crate::mapped_file::prefault_range(
                    file.wrote_position(),
                    upto,
                    file.file_size(),
                    window,
                ) {
                    if let Err(e) = file.prefault(pos, len) {
                        tracing::warn!(
                            error = %e,
                            file = %file.path().display(),
                            "pre-faulting CommitLog pages failed; appends fault them in themselves"
                        );
                        return;
                    }
                    done = Some((start, pos + len));
                }
            }
            std::thread::sleep(PREFAULT_TICK);
        }
    }

    fn clean_loop(&self) {
        let tick = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while !self.shutdown.load(Ordering::Acquire) {
            std::thread::sleep(tick);
            waited += tick;
            if waited < self.config.clean_resource_interval {
                continue;
            }
            waited = Duration::ZERO;
            if let Err(e) = self.clean_once() {
                tracing::error!(error = %e, "retention pass failed");
            }
        }
    }

    fn disk_ratio(&self) -> Option<f64> {
        if let Some(r) = *lock(&self.disk_ratio_override) {
            return Some(r);
        }
        crate::disk::used_ratio(&self.config.store_path_root_dir)
    }

    fn clean_once(&self) -> Result<(), StoreError> {
        let ratio = self.disk_ratio().unwrap_or(0.0);
        let pct = ratio * 100.0;
        let c = &self.config;
        {
            let mut refusal = lock(&self.disk_refusal);
            if pct >= f64::from(c.disk_space_warning_level_ratio) {
                if refusal.is_none() {
                    tracing::warn!(used_pct = pct, "disk nearly full; refusing writes");
                }
                *refusal = Some(format!(
                    "the store's disk is {pct:.1}% full, above diskSpaceWarningLevelRatio {}%; \
                     writes resume once space is freed",
                    c.disk_space_warning_level_ratio
                ));
            } else if refusal.take().is_some() {
                tracing::info!(used_pct = pct, "disk space freed; accepting writes again");
            }
        }
        let hour = ((now_ms() / 3_600_000) % 24) as u32;
        let delete_time = c
            .delete_when
            .split(';')
            .any(|h| h.trim().parse::<u32>().ok() == Some(hour));
        let space_pressure = pct >= f64::from(c.disk_max_used_space_ratio);
        let forcibly =
            c.clean_file_forcibly_enable && pct >= f64::from(c.disk_space_clean_forcibly_ratio);
        if !(delete_time || space_pressure || forcibly) {
            return Ok(());
        }
        let reserved = c.file_reserved_time;
        let now = SystemTime::now();
        let floor = self.retention_floor.load(Ordering::Acquire);
        let mut retention = crate::retention::Retention::new(floor, forcibly);
        let deleted = self.commit_log.delete_leading(10, |f| {
            let expired = f
                .modified()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= reserved);
            retention.may_delete(crate::retention::FileFacts {
                end: f.file_from_offset() + f.file_size() as i64,
                expired,
            })
        })?;
        if retention.held_for_followers > 0 {
            tracing::warn!(
                floor,
                used_pct = pct,
                "expired CommitLog files kept: their bytes are at or above the retention floor"
            );
        }
        if deleted > 0 {
            let min_phy = self.commit_log.min_offset();
            tracing::info!(deleted, min_phy, used_pct = pct, "deleted CommitLog files");
            for cq in self.all_cqs() {
                cq.correct_min_offset(min_phy)?;
            }
            if let Some(index) = lock(&self.index).as_mut() {
                let files = index.delete_expired(min_phy)?;
                if files > 0 {
                    tracing::info!(files, min_phy, "deleted index files below the CommitLog");
                }
            }
        }
        Ok(())
    }
}

/// Whether the record's UNIQ_KEY or one of its KEYS is `key`.
fn record_has_key(v: &MessageView<'_>, key: &str) -> bool {
    v.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == Some(key)
        || v.property(property::KEYS)
            .is_some_and(|ks| ks.split(property::KEY_SEPARATOR).any(|k| k == key))
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| StoreError::io(path, e))?;
    f.write_all(data).map_err(|e| StoreError::io(path, e))?;
    f.sync_all().map_err(|e| StoreError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_one(store: &MessageStore, topic: &str, queue_id: i32, body: &str) -> i64 {
        let m = MessageExtBrokerInner {
            topic: topic.to_owned(),
            queue_id,
            born_timestamp: 1,
            body: Bytes::copy_from_slice(body.as_bytes()),
            ..Default::default()
        };
        let r = store.put_messages_blocking(vec![m]);
        assert_eq!(r.status, PutMessageStatus::PutOk, "put {body}");
        r.append.map_or(-1, |a| a.wrote_offset)
    }

    #[test]
    fn deleted_topic_queues_restart_at_zero_and_stay_gone_after_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = MessageStoreConfig::new(dir.path());
        config.mapped_file_size_commit_log = 4096;
        config.consume_queue_units_per_file = 8;
        let open = || MessageStore::open(config.clone()).expect("open");
        let store = open();
        for i in 0..12 {
            put_one(&store, "Gone", i % 2, &format!("old-{i}"));
            put_one(&store, "Kept", 0, &format!("kept-{i}"));
        }
        let max_phy = store.max_phy_offset();
        assert_eq!(store.get_max_offset_in_queue("Gone", 0), 6);
        assert_eq!(store.delete_topic("Gone").expect("delete"), 2);
        assert!(!dir.path().join("consumequeue").join("Gone").exists());
        assert_eq!(store.get_max_offset_in_queue("Gone", 0), 0);
        assert_eq!(store.max_phy_offset(), max_phy, "CommitLog bytes stay");
        assert_eq!(store.get_max_offset_in_queue("Kept", 0), 12);
        assert!(store.delete_topic("../x").is_err());

        put_one(&store, "Gone", 0, "new-0");
        let got = store.get_message("g", "Gone", 0, 0, 32, 1 << 20, &MessageFilter::default());
        assert_eq!(got.messages.len(), 1);
        let (view, _) = MessageView::decode(&got.messages[0], false).expect("record");
        assert_eq!(view.body, b"new-0");
        // Without a clean shutdown the restart re-dispatches from the checkpoint: the old
        // records must not come back.
        store.halt();
        drop(store);
        let store = open();
        assert_eq!(store.get_max_offset_in_queue("Gone", 0), 1);
        assert_eq!(store.get_max_offset_in_queue("Gone", 1), 0);
        assert_eq!(store.get_max_offset_in_queue("Kept", 0), 12);
        store.shutdown().expect("shutdown");
    }

    /// A replica reset to a file boundary of another store and fed that store's bytes from
    /// there holds the same records at the same CommitLog and queue offsets, also for a queue
    /// with no record after the boundary, and keeps them across a crash.
    #[test]
    fn reset_to_a_file_boundary_keeps_queue_offsets() {
        let src_dir = tempfile::tempdir().expect("tempdir");
        let dst_dir = tempfile::tempdir().expect("tempdir");
        let config = |dir: &Path| {
            let mut c = MessageStoreConfig::new(dir);
            c.mapped_file_size_commit_log = 4096;
            c.consume_queue_units_per_file = 8;
            c
        };
        let src = MessageStore::open(config(src_dir.path())).expect("open");
        for i in 0..40 {
            put_one(
                &src,
                "T",
                i % 3,
                &format!("body-{i:03}-{}", "x".repeat(200)),
            );
        }
        put_one(&src, "Early", 0, "only before the boundary");
        let boundary = (src.max_phy_offset() / 4096 + 1) * 4096;
        for i in 40..80 {
            put_one(
                &src,
                "T",
                i % 3,
                &format!("body-{i:03}-{}", "x".repeat(200)),
            );
        }
        assert!(src.min_phy_offset() == 0 && src.max_phy_offset() > boundary + 4096);
        let queues = src.queue_offsets_at(boundary);
        let early = queues.iter().find(|(t, _, _)| t == "Early").map(|q| q.2);
        assert_eq!(
            early,
            Some(1),
            "a queue with nothing after the boundary is at its end"
        );

        let dst = MessageStore::open(config(dst_dir.path())).expect("open");
        put_one(&dst, "Stale", 0, "thrown away by the reset");
        assert!(dst.reset_to(boundary + 1, &queues).is_err(), "unaligned");
        dst.reset_to(boundary, &queues).expect("reset");
        assert_eq!(dst.get_max_offset_in_queue("Stale", 0), 0);
        assert_eq!(
            (dst.min_phy_offset(), dst.max_phy_offset()),
            (boundary, boundary)
        );
        let mut at = boundary;
        while let Some(chunk) = src.read_raw(at, 1000) {
            dst.append_raw_at(at, &chunk).expect("append");
            at += chunk.len() as i64;
        }
        let check = |dst: &MessageStore| {
            for q in 0..3 {
                let (min, max) = (
                    dst.get_min_offset_in_queue("T", q),
                    dst.get_max_offset_in_queue("T", q),
                );
                assert_eq!(max, src.get_max_offset_in_queue("T", q));
                assert!(min > 0 && min < max, "queue {q} starts mid-stream at {min}");
                for logic in min..max {
                    assert_eq!(
                        dst.get_commit_log_offset_in_queue("T", q, logic),
                        src.get_commit_log_offset_in_queue("T", q, logic),
                        "queue {q} offset {logic}"
                    );
                }
                let got = dst.get_message("g", "T", q, min, 64, 1 << 20, &MessageFilter::default());
                let want =
                    src.get_message("g", "T", q, min, 64, 1 << 20, &MessageFilter::default());
                assert_eq!(got.messages, want.messages);
                let early = dst.get_message("g", "T", q, 0, 1, 1 << 20, &MessageFilter::default());
                assert_eq!(early.status, GetMessageStatus::OffsetTooSmall);
            }
            assert_eq!(dst.get_max_offset_in_queue("Early", 0), 1);
        };
        check(&dst);
        // The next message of a queue idle since before the boundary keeps numbering.
        dst.halt();
        drop(dst);
        let dst = MessageStore::open(config(dst_dir.path())).expect("reopen");
        check(&dst);
        assert_eq!(dst.min_phy_offset(), boundary);
        put_one(&dst, "Early", 0, "after");
        assert_eq!(dst.get_max_offset_in_queue("Early", 0), 2);
        dst.shutdown().expect("shutdown");
        src.shutdown().expect("shutdown");
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_damage() {
        let c = Checkpoint {
            physic_offset: 12345,
            dispatched_offset: 12000,
            index: IndexCheckpoint::File {
                name: 20261124161500123,
                count: 42,
            },
        };
        let mut b = c.encode();
        assert_eq!(Checkpoint::decode(&b), Some(c));
        let mut legacy = [0u8; 20];
        legacy[..16].copy_from_slice(&b[..16]);
        let crc = crc32fast::hash(&legacy[..16]);
        legacy[16..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            Checkpoint::decode(&legacy).map(|c| (c.dispatched_offset, c.index)),
            Some((12000, IndexCheckpoint::Unknown))
        );
        b[3] ^= 1;
        assert_eq!(Checkpoint::decode(&b), None);
        assert_eq!(Checkpoint::decode(&b[..10]), None);
    }
}
