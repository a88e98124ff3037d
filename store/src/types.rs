//! Configuration, statuses and results of the store API.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

/// When a put is acknowledged relative to the fsync of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDiskType {
    /// Acknowledge after the write to the page cache; a background thread fsyncs.
    AsyncFlush,
    /// Acknowledge after a group-commit fsync covers the message.
    SyncFlush,
}

/// `MessageStoreConfig`: names and defaults follow RocketMQ's.
#[derive(Debug, Clone)]
pub struct MessageStoreConfig {
    pub store_path_root_dir: PathBuf,
    /// Bytes per CommitLog file (1 GiB).
    pub mapped_file_size_commit_log: usize,
    /// Units per ConsumeQueue file (300,000 = 6,000,000 bytes).
    pub consume_queue_units_per_file: usize,
    pub flush_disk_type: FlushDiskType,
    pub flush_interval_commit_log: Duration,
    pub flush_commit_log_least_pages: usize,
    pub flush_commit_log_thorough_interval: Duration,
    pub sync_flush_timeout: Duration,
    /// Largest stored record accepted (4 MiB).
    pub max_message_size: usize,
    /// Age after which CommitLog files are deleted (72 h).
    pub file_reserved_time: Duration,
    /// Hours of the day (UTC) when expired files are deleted, `;`-separated ("04").
    pub delete_when: String,
    pub disk_max_used_space_ratio: u8,
    pub disk_space_clean_forcibly_ratio: u8,
    pub disk_space_warning_level_ratio: u8,
    pub clean_file_forcibly_enable: bool,
    pub clean_resource_interval: Duration,
    /// The address written as STOREHOST into every record.
    pub store_host: SocketAddr,
    /// Memory assumed available for page cache when suggesting reads from a slave.
    pub total_physical_memory: u64,
    pub access_message_in_memory_max_ratio: u8,
    pub max_filter_message_count: usize,
    /// Hash slots per index file (5,000,000).
    pub max_hash_slot_num: usize,
    /// Entries per index file (20,000,000); a full file rolls to a new one.
    pub max_index_num: usize,
    /// Index `KEYS` and `UNIQ_KEY` for query by key (true).
    pub message_index_enable: bool,
    /// After a crash, rebuild the newest index file from the CommitLog unless it was full
    /// instead of keeping its checkpointed prefix (false).
    pub message_index_safe: bool,
}

impl MessageStoreConfig {
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self {
            store_path_root_dir: root.as_ref().to_path_buf(),
            mapped_file_size_commit_log: 1024 * 1024 * 1024,
            consume_queue_units_per_file: 300_000,
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_commit_log: Duration::from_millis(500),
            flush_commit_log_least_pages: 4,
            flush_commit_log_thorough_interval: Duration::from_secs(10),
            sync_flush_timeout: Duration::from_secs(5),
            max_message_size: 4 * 1024 * 1024,
            file_reserved_time: Duration::from_secs(72 * 3600),
            delete_when: "04".to_owned(),
            disk_max_used_space_ratio: 75,
            disk_space_clean_forcibly_ratio: 85,
            disk_space_warning_level_ratio: 90,
            clean_file_forcibly_enable: true,
            clean_resource_interval: Duration::from_secs(10),
            store_host: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10911),
            total_physical_memory: 8 * 1024 * 1024 * 1024,
            access_message_in_memory_max_ratio: 40,
            max_filter_message_count: 16_000,
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            message_index_enable: true,
            message_index_safe: false,
        }
    }
}

/// A message to store (`MessageExtBrokerInner`).
#[derive(Debug, Clone, Default)]
pub struct MessageExtBrokerInner {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: Option<SocketAddr>,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub properties: BTreeMap<String, String>,
    /// The consume-queue tag code; `None` derives it from the TAGS property.
    pub tags_code: Option<i64>,
}

/// `PutMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMessageStatus {
    PutOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
    ServiceNotAvailable,
    CreateMappedFileFailed,
    MessageIllegal,
    PropertiesSizeExceeded,
    OsPageCacheBusy,
    UnknownError,
}

impl PutMessageStatus {
    /// Whether the message was written (possibly without the requested durability).
    pub fn is_written(self) -> bool {
        matches!(
            self,
            Self::PutOk
                | Self::FlushDiskTimeout
                | Self::FlushSlaveTimeout
                | Self::SlaveNotAvailable
        )
    }
}

/// `AppendMessageResult`: where a put landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessageResult {
    pub wrote_offset: i64,
    pub wrote_bytes: usize,
    /// Offset message ids, one per message.
    pub msg_ids: Vec<String>,
    pub store_timestamp: i64,
    /// Queue offset of the first message.
    pub logics_offset: i64,
    pub msg_num: usize,
}

/// `PutMessageResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutMessageResult {
    pub status: PutMessageStatus,
    pub append: Option<AppendMessageResult>,
    /// Why the put was refused, fit for a response remark.
    pub remark: Option<String>,
}

impl PutMessageResult {
    pub fn refused(status: PutMessageStatus, remark: impl Into<String>) -> Self {
        Self {
            status,
            append: None,
            remark: Some(remark.into()),
        }
    }
}

/// `GetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMessageStatus {
    Found,
    NoMatchedMessage,
    MessageWasRemoving,
    OffsetFoundNull,
    OffsetOverflowBadly,
    OffsetOverflowOne,
    OffsetTooSmall,
    NoMatchedLogicQueue,
    NoMessageInQueue,
    OffsetReset,
}

/// Which consume-queue units a pull wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MessageFilter {
    #[default]
    All,
    /// Only units whose tag code is one of these (`SubscriptionData.codeSet`).
    TagCodes(Vec<i64>),
}

impl MessageFilter {
    pub fn matches(&self, tags_code: i64) -> bool {
        match self {
            Self::All => true,
            Self::TagCodes(codes) => codes.contains(&tags_code),
        }
    }
}

/// `GetMessageResult`: zero-copy record slices ready to be written to a socket.
#[derive(Debug, Clone)]
pub struct GetMessageResult {
    pub status: GetMessageStatus,
    pub messages: Vec<Bytes>,
    /// Queue offset of each returned message.
    pub queue_offsets: Vec<i64>,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub suggest_pulling_from_slave: bool,
}

impl GetMessageResult {
    pub fn buffer_total_size(&self) -> usize {
        self.messages.iter().map(Bytes::len).sum()
    }
}
