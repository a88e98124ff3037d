//! `broker.conf`: RocketMQ's Java properties file, read into a typed [`BrokerConfig`].
//!
//! Precedence, lowest first: defaults, the properties file, `FERRUM_BROKER_<KEY>` environment
//! variables, `-n`, then each `--set key=value`. Keys keep RocketMQ's names so an existing
//! `broker.conf` works unchanged; a key we do not know is warned about rather than refused,
//! because RocketMQ files carry many tuning keys that have no meaning here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Why a configuration could not be built; every message names the key and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value '{value}' for key '{key}': {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("'{0}' is not of the form key=value")]
    NotKeyValue(String),
    #[error("line {line}: malformed unicode escape in the properties file")]
    BadEscape { line: usize },
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// `BrokerRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerRole {
    AsyncMaster,
    SyncMaster,
    Slave,
}

impl FromStr for BrokerRole {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ASYNC_MASTER" => Ok(BrokerRole::AsyncMaster),
            "SYNC_MASTER" => Ok(BrokerRole::SyncMaster),
            "SLAVE" => Ok(BrokerRole::Slave),
            _ => Err("expected ASYNC_MASTER, SYNC_MASTER or SLAVE"),
        }
    }
}

impl fmt::Display for BrokerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        })
    }
}

/// `FlushDiskType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDiskType {
    AsyncFlush,
    SyncFlush,
}

impl FromStr for FlushDiskType {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ASYNC_FLUSH" => Ok(FlushDiskType::AsyncFlush),
            "SYNC_FLUSH" => Ok(FlushDiskType::SyncFlush),
            _ => Err("expected ASYNC_FLUSH or SYNC_FLUSH"),
        }
    }
}

impl fmt::Display for FlushDiskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
            FlushDiskType::SyncFlush => "SYNC_FLUSH",
        })
    }
}

/// The broker's configuration with RocketMQ's key names (`BrokerConfig`, `MessageStoreConfig`,
/// `NettyServerConfig` merged, as `broker.conf` merges them).
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    pub broker_cluster_name: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub namesrv_addr: Vec<String>,
    pub listen_port: u16,
    /// The local interface the server binds (Ferrum key `bindAddress`; RocketMQ binds all).
    pub bind_address: std::net::IpAddr,
    /// The address advertised to NameServers and clients; may be a DNS name.
    pub broker_ip1: String,
    pub ha_listen_port: u16,
    /// Port of the Prometheus `/metrics`, `/healthz` and `/readyz` endpoint (Ferrum key
    /// `metricsPort`; RocketMQ 5's exporter listens on 5557 too). 0 picks a free port.
    pub metrics_port: u16,
    pub store_path_root_dir: PathBuf,
    pub store_path_commit_log_override: Option<PathBuf>,
    pub broker_role: BrokerRole,
    pub flush_disk_type: FlushDiskType,
    pub auto_create_topic_enable: bool,
    pub auto_create_subscription_group: bool,
    pub default_topic_queue_nums: i32,
    pub broker_permission: i32,
    pub mapped_file_size_commit_log: u64,
    pub mapped_file_size_consume_queue: u64,
    pub file_reserved_time: u32,
    pub delete_when: String,
    pub disk_max_used_space_ratio: u32,
    /// Percent of the store's disk in use at which writes are refused with
    /// SERVICE_NOT_AVAILABLE until space is freed (`diskSpaceWarningLevelRatio`).
    pub disk_space_warning_level_ratio: u8,
    /// Percent of the store's disk in use at which retention deletes the oldest CommitLog files
    /// whether they expired or not (`diskSpaceCleanForciblyRatio`), when
    /// `cleanFileForciblyEnable` is on.
    pub disk_space_clean_forcibly_ratio: u8,
    pub clean_file_forcibly_enable: bool,
    pub register_name_server_period: u64,
    pub register_broker_timeout_mills: u64,
    pub slave_read_enable: bool,
    /// Percent of physical memory a pull may lag behind the commit log's end before the master
    /// suggests a slave (`accessMessageInMemoryMaxRatio`).
    pub access_message_in_memory_max_ratio: u8,
    /// Overrides the machine's total physical memory in that rule, so tests can make any
    /// consumer "far behind" (Ferrum key `ferrumTotalPhysicalMemoryBytes`; `None` reads the
    /// machine's).
    pub total_physical_memory_bytes: Option<u64>,
    /// How often a slave copies topics, groups and offsets from its master, ms (Ferrum key
    /// `ferrumSlaveSyncInterval`; RocketMQ's SlaveSynchronize runs every 10 s).
    pub slave_sync_interval: u64,
    pub max_message_size: usize,
    /// Key index sizes and switches (`maxHashSlotNum`, `maxIndexNum`, `messageIndexEnable`,
    /// `messageIndexSafe`), passed to the store.
    pub max_hash_slot_num: usize,
    pub max_index_num: usize,
    pub message_index_enable: bool,
    pub message_index_safe: bool,
    pub send_message_thread_pool_nums: usize,
    pub pull_message_thread_pool_nums: usize,
    pub long_polling_enable: bool,
    pub flush_consumer_offset_interval: u64,
    /// How long a request may wait for a processing slot before SYSTEM_BUSY.
    pub wait_time_mills_in_send_queue: u64,
    /// Requests processed at once across all connections (Ferrum's equivalent of the thread
    /// pools' queue capacity).
    pub server_request_queue_capacity: usize,
    /// Requests in flight per connection; beyond it the connection is not read (backpressure).
    pub server_max_in_flight_per_connection: usize,
    /// Shared secret of a broker group's HA handshake (Ferrum key `haSecret`); empty means any
    /// host that knows the group name may replicate.
    pub ha_secret: HaSecret,
    /// A slave's master HA address when the NameServer does not give one (`haMasterAddress`).
    pub ha_master_address: Option<String>,
    /// Bytes per replication frame (`haTransferBatchSize`).
    pub ha_transfer_batch_size: usize,
    /// A silent HA peer is dropped after this many ms (`haHousekeepingInterval`).
    pub ha_housekeeping_interval: u64,
    /// A slave reports its offset at least this often, ms (`haSendHeartbeatInterval`).
    pub ha_send_heartbeat_interval: u64,
    /// SLAVE_NOT_AVAILABLE when no slave is within this many bytes (`haMaxGapNotInSync`).
    pub ha_max_gap_not_in_sync: i64,
    /// Unacknowledged bytes a master streams to one slave before waiting for its report
    /// (Ferrum key `haMaxBytesInFlight`).
    pub ha_max_bytes_in_flight: usize,
    /// How long a SYNC_MASTER send (and a SYNC_FLUSH write) waits, ms (`syncFlushTimeout`).
    pub sync_flush_timeout: u64,
    /// A half message younger than this (ms) is not checked yet (`transactionTimeOut`).
    pub transaction_timeout: u64,
    /// Checks of one half message before it is discarded (`transactionCheckMax`).
    pub transaction_check_max: u32,
    /// Period of the transaction check service, ms (`transactionCheckInterval`).
    pub transaction_check_interval: u64,
    /// The brokerId a master that finds a newer master takes as a slave (`brokerIdWhenDemoted`);
    /// `None` picks 1 + the highest id the NameServers report.
    pub broker_id_when_demoted: Option<i64>,
    /// Raft mode (`enableDLegerCommitLog`); the keys below are read by `raft::RaftConfig`.
    pub enable_dleger_commit_log: bool,
    /// `dLegerGroup`; empty means the brokerName.
    pub dleger_group: String,
    /// `dLegerPeers`: `n0-host:port;n1-host:port;…`, validated by `raft::RaftConfig`.
    pub dleger_peers: String,
    /// `dLegerSelfId`: this replica's id among `dLegerPeers`.
    pub dleger_self_id: String,
    /// The host a Raft replica advertises instead of `brokerIP1` while it is the leader
    /// (Ferrum key `dLegerLeaderBrokerIP`; Raft mode only). On Kubernetes it names the
    /// `<group>-master` Service that follows the leader, so the brokerId-0 address clients
    /// cache stays valid across elections; followers keep `brokerIP1`.
    pub dleger_leader_broker_ip: Option<String>,
    /// Leader heartbeat period, ms (Ferrum key `ferrumRaftHeartbeatIntervalMs`).
    pub raft_heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout, ms (`ferrumRaftElectionTimeoutMinMs`).
    pub raft_election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout, ms (`ferrumRaftElectionTimeoutMaxMs`).
    /// Followers refuse votes for this long after the last heartbeat (openraft's leader
    /// lease), so a failover takes about twice it; 600 ms keeps the group failover under 2 s.
    pub raft_election_timeout_max_ms: u64,
}

/// The HA shared secret; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HaSecret(pub String);

impl fmt::Debug for HaSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "HaSecret(empty)"
        } else {
            "HaSecret(***)"
        })
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        BrokerConfig {
            broker_cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            namesrv_addr: Vec::new(),
            listen_port: 10911,
            bind_address: std::net::IpAddr::from([0, 0, 0, 0]),
            broker_ip1: "127.0.0.1".into(),
            ha_listen_port: 10912,
            metrics_port: 5557,
            store_path_root_dir: home.join("store"),
            store_path_commit_log_override: None,
            broker_role: BrokerRole::AsyncMaster,
            flush_disk_type: FlushDiskType::AsyncFlush,
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 4,
            broker_permission: 6,
            mapped_file_size_commit_log: 1024 * 1024 * 1024,
            mapped_file_size_consume_queue: 300_000 * 20,
            file_reserved_time: 72,
            delete_when: "04".into(),
            disk_max_used_space_ratio: 75,
            disk_space_warning_level_ratio: 90,
            disk_space_clean_forcibly_ratio: 85,
            clean_file_forcibly_enable: true,
            register_name_server_period: 30_000,
            register_broker_timeout_mills: 24_000,
            slave_read_enable: false,
            access_message_in_memory_max_ratio: 40,
            total_physical_memory_bytes: None,
            slave_sync_interval: 10_000,
            max_message_size: 4 * 1024 * 1024,
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            message_index_enable: true,
            message_index_safe: false,
            send_message_thread_pool_nums: 1,
            pull_message_thread_pool_nums: 16,
            long_polling_enable: true,
            flush_consumer_offset_interval: 5_000,
            wait_time_mills_in_send_queue: 200,
            server_request_queue_capacity: 10_000,
            server_max_in_flight_per_connection: 1_024,
            ha_secret: HaSecret::default(),
            ha_master_address: None,
            ha_transfer_batch_size: 32 * 1024,
            ha_housekeeping_interval: 20_000,
            ha_send_heartbeat_interval: 5_000,
            ha_max_gap_not_in_sync: 256 * 1024 * 1024,
            ha_max_bytes_in_flight: 4 * 1024 * 1024,
            sync_flush_timeout: 5_000,
            transaction_timeout: 6_000,
            transaction_check_max: 15,
            transaction_check_interval: 30_000,
            broker_id_when_demoted: None,
            enable_dleger_commit_log: false,
            dleger_group: String::new(),
            dleger_peers: String::new(),
            dleger_self_id: String::new(),
            dleger_leader_broker_ip: None,
            raft_heartbeat_interval_ms: 100,
            raft_election_timeout_min_ms: 300,
            raft_election_timeout_max_ms: 600,
        }
    }
}

/// Every key this broker understands, in RocketMQ spelling.
pub const KNOWN_KEYS: &[&str] = &[
    "brokerClusterName",
    "brokerName",
    "brokerId",
    "namesrvAddr",
    "listenPort",
    "bindAddress",
    "brokerIP1",
    "haListenPort",
    "metricsPort",
    "storePathRootDir",
    "storePathCommitLog",
    "brokerRole",
    "flushDiskType",
    "autoCreateTopicEnable",
    "autoCreateSubscriptionGroup",
    "defaultTopicQueueNums",
    "brokerPermission",
    "mappedFileSizeCommitLog",
    "mappedFileSizeConsumeQueue",
    "fileReservedTime",
    "deleteWhen",
    "diskMaxUsedSpaceRatio",
    "diskSpaceWarningLevelRatio",
    "diskSpaceCleanForciblyRatio",
    "cleanFileForciblyEnable",
    "registerNameServerPeriod",
    "registerBrokerTimeoutMills",
    "slaveReadEnable",
    "accessMessageInMemoryMaxRatio",
    "ferrumTotalPhysicalMemoryBytes",
    "ferrumSlaveSyncInterval",
    "maxMessageSize",
    "maxHashSlotNum",
    "maxIndexNum",
    "messageIndexEnable",
    "messageIndexSafe",
    "sendMessageThreadPoolNums",
    "pullMessageThreadPoolNums",
    "longPollingEnable",
    "flushConsumerOffsetInterval",
    "waitTimeMillsInSendQueue",
    "serverRequestQueueCapacity",
    "serverMaxInFlightPerConnection",
    "haSecret",
    "haMasterAddress",
    "haTransferBatchSize",
    "haHousekeepingInterval",
    "haSendHeartbeatInterval",
    "haMaxGapNotInSync",
    "haMaxBytesInFlight",
    "syncFlushTimeout",
    "brokerIdWhenDemoted",
    "enableDLegerCommitLog",
    "dLegerGroup",
    "dLegerPeers",
    "dLegerSelfId",
    "dLegerLeaderBrokerIP",
    "ferrumRaftHeartbeatIntervalMs",
    "ferrumRaftElectionTimeoutMinMs",
    "ferrumRaftElectionTimeoutMaxMs",
];

fn parse_num<T: FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| invalid(key, value, "not a valid number"))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

fn parse_range<T: FromStr + PartialOrd + fmt::Display>(
    key: &str,
    value: &str,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    let v: T = parse_num(key, value)?;
    if v < min || v > max {
        return Err(invalid(
            key,
            value,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(v)
}

/// Checks `host:port` without resolving the host (it may be a DNS name not yet resolvable).
fn check_host_port(key: &str, addr: &str) -> Result<(), ConfigError> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(invalid(key, addr, "expected host:port"));
    };
    if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(invalid(
            key,
            addr,
            "expected host:port with a port in 1..65535",
        ));
    }
    Ok(())
}

impl BrokerConfig {
    /// The commit log directory: `storePathCommitLog`, or `storePathRootDir/commitlog`.
    pub fn store_path_commit_log(&self) -> PathBuf {
        self.store_path_commit_log_override
            .clone()
            .unwrap_or_else(|| self.store_path_root_dir.join("commitlog"))
    }

    /// Where topics.json, subscriptionGroup.json and consumerOffset.json live.
    pub fn config_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("config")
    }

    /// The address clients use: `brokerIP1:listenPort`.
    pub fn broker_addr(&self) -> String {
        format!("{}:{}", self.broker_ip1, self.listen_port)
    }

    /// The address registered with the NameServers under `broker_id`: in Raft mode with
    /// `dLegerLeaderBrokerIP`, the leader (brokerId 0) registers `dLegerLeaderBrokerIP:listenPort`
    /// so every leader of the group shares one master address; otherwise `brokerIP1:listenPort`.
    pub fn registered_addr(&self, broker_id: i64) -> String {
        match &self.dleger_leader_broker_ip {
            Some(host) if self.enable_dleger_commit_log && broker_id == 0 => {
                format!("{host}:{}", self.listen_port)
            }
            _ => self.broker_addr(),
        }
    }

    /// The address slaves replicate from: `brokerIP1:haListenPort`.
    pub fn ha_server_addr(&self) -> String {
        format!("{}:{}", self.broker_ip1, self.ha_listen_port)
    }

    /// Sets one key. `Ok(false)` means the key is unknown (the caller warns); a known key with a
    /// bad value is an error naming both.
    pub fn set(&mut self, key: &str, raw: &str) -> Result<bool, ConfigError> {
        let value = raw.trim();
        match key {
            "brokerClusterName" => self.broker_cluster_name = non_empty(key, value)?,
            "brokerName" => self.broker_name = non_empty(key, value)?,
            "brokerId" => self.broker_id = parse_range(key, value, 0, i64::MAX)?,
            "namesrvAddr" => {
                let addrs: Vec<String> = value
                    .split(';')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect();
                for addr in &addrs {
                    check_host_port(key, addr)?;
                }
                self.namesrv_addr = addrs;
            }
            // listenPort − 2 is the VIP port, so the port must leave room for it; 0 asks for an
            // ephemeral port (tests), the VIP port then being found next to it.
            "listenPort" => {
                let port: u16 = parse_num(key, value)?;
                if (1..3).contains(&port) {
                    return Err(invalid(
                        key,
                        value,
                        "must be 0 (any) or between 3 and 65535",
                    ));
                }
                self.listen_port = port;
            }
            "bindAddress" => {
                self.bind_address = value
                    .parse()
                    .map_err(|_| invalid(key, value, "not an IP address"))?;
            }
            "brokerIP1" => self.broker_ip1 = non_empty(key, value)?,
            // 0 asks for an ephemeral port (tests); the bound port is advertised.
            "haListenPort" => self.ha_listen_port = parse_range(key, value, 0, u16::MAX)?,
            "metricsPort" => self.metrics_port = parse_range(key, value, 0, u16::MAX)?,
            "storePathRootDir" => self.store_path_root_dir = PathBuf::from(non_empty(key, value)?),
            "storePathCommitLog" => {
                self.store_path_commit_log_override = Some(PathBuf::from(non_empty(key, value)?));
            }
            "brokerRole" => {
                self.broker_role = value.parse().map_err(|e| invalid(key, value, e))?;
            }
            "flushDiskType" => {
                self.flush_disk_type = value.parse().map_err(|e| invalid(key, value, e))?;
            }
            "autoCreateTopicEnable" => self.auto_create_topic_enable = parse_bool(key, value)?,
            "autoCreateSubscriptionGroup" => {
                self.auto_create_subscription_group = parse_bool(key, value)?;
            }
            "defaultTopicQueueNums" => {
                self.default_topic_queue_nums = parse_range(key, value, 1, 1024)?;
            }
            "brokerPermission" => self.broker_permission = parse_range(key, value, 0, 15)?,
            "mappedFileSizeCommitLog" => {
                self.mapped_file_size_commit_log = parse_range(key, value, 4096, 1 << 40)?;
            }
            "mappedFileSizeConsumeQueue" => {
                let v: u64 = parse_range(key, value, 20, 1 << 32)?;
                if !v.is_multiple_of(20) {
                    return Err(invalid(
                        key,
                        value,
                        "must be a multiple of 20 (the unit size)",
                    ));
                }
                self.mapped_file_size_consume_queue = v;
            }
            "fileReservedTime" => self.file_reserved_time = parse_range(key, value, 1, 24 * 3650)?,
            "deleteWhen" => {
                for hour in value.split(';') {
                    parse_range::<u8>(key, hour.trim(), 0, 23).map_err(|_| {
                        invalid(key, value, "expected hours 00-23 separated by ';'")
                    })?;
                }
                self.delete_when = value.to_owned();
            }
            "diskMaxUsedSpaceRatio" => {
                self.disk_max_used_space_ratio = parse_range(key, value, 10, 95)?;
            }
            // RocketMQ clamps these into 35-90 and 30-85 without a word; Ferrum refuses a value
            // outside its range instead, and lets both go up to 99 so a volume that holds only
            // the store (or a test machine's shared disk) can be filled further. Every CommitLog
            // and ConsumeQueue file is preallocated, so writing near a full disk cannot SIGBUS.
            "diskSpaceWarningLevelRatio" => {
                self.disk_space_warning_level_ratio = parse_range(key, value, 35, 99)?;
            }
            "diskSpaceCleanForciblyRatio" => {
                self.disk_space_clean_forcibly_ratio = parse_range(key, value, 30, 99)?;
            }
            "cleanFileForciblyEnable" => self.clean_file_forcibly_enable = parse_bool(key, value)?,
            "registerNameServerPeriod" => {
                self.register_name_server_period = parse_range(key, value, 1, u64::MAX)?;
            }
            "registerBrokerTimeoutMills" => {
                self.register_broker_timeout_mills = parse_range(key, value, 1, u64::MAX)?;
            }
            "slaveReadEnable" => self.slave_read_enable = parse_bool(key, value)?,
            "accessMessageInMemoryMaxRatio" => {
                self.access_message_in_memory_max_ratio = parse_range(key, value, 0, 100)?;
            }
            "ferrumTotalPhysicalMemoryBytes" => {
                self.total_physical_memory_bytes = if value.is_empty() {
                    None
                } else {
                    Some(parse_range(key, value, 1, u64::MAX)?)
                };
            }
            "ferrumSlaveSyncInterval" => {
                self.slave_sync_interval = parse_range(key, value, 100, u64::MAX)?;
            }
            // One index file is 40 + 4 × slots + 20 × entries bytes; entry numbers are i32.
            "maxHashSlotNum" => self.max_hash_slot_num = parse_range(key, value, 1, 100_000_000)?,
            "maxIndexNum" => self.max_index_num = parse_range(key, value, 2, 100_000_000)?,
            "messageIndexEnable" => self.message_index_enable = parse_bool(key, value)?,
            "messageIndexSafe" => self.message_index_safe = parse_bool(key, value)?,
            "maxMessageSize" => {
                self.max_message_size = parse_range(key, value, 1, protocol_frame_limit())?;
            }
            "sendMessageThreadPoolNums" => {
                self.send_message_thread_pool_nums = parse_range(key, value, 1, 1024)?;
            }
            "pullMessageThreadPoolNums" => {
                self.pull_message_thread_pool_nums = parse_range(key, value, 1, 1024)?;
            }
            "longPollingEnable" => self.long_polling_enable = parse_bool(key, value)?,
            "flushConsumerOffsetInterval" => {
                self.flush_consumer_offset_interval = parse_range(key, value, 1, u64::MAX)?;
            }
            "waitTimeMillsInSendQueue" => {
                self.wait_time_mills_in_send_queue = parse_range(key, value, 1, u64::MAX)?;
            }
            "serverRequestQueueCapacity" => {
                self.server_request_queue_capacity = parse_range(key, value, 1, 1 << 24)?;
            }
            "serverMaxInFlightPerConnection" => {
                self.server_max_in_flight_per_connection = parse_range(key, value, 1, 1 << 20)?;
            }
            "haSecret" => self.ha_secret = HaSecret(value.to_owned()),
            "haMasterAddress" => {
                if value.is_empty() {
                    self.ha_master_address = None;
                } else {
                    check_host_port(key, value)?;
                    self.ha_master_address = Some(value.to_owned());
                }
            }
            "haTransferBatchSize" => {
                self.ha_transfer_batch_size = parse_range(key, value, 1024, 16 * 1024 * 1024)?;
            }
            "haHousekeepingInterval" => {
                self.ha_housekeeping_interval = parse_range(key, value, 100, u64::MAX)?;
            }
            "haSendHeartbeatInterval" => {
                self.ha_send_heartbeat_interval = parse_range(key, value, 10, u64::MAX)?;
            }
            "haMaxGapNotInSync" => {
                self.ha_max_gap_not_in_sync = parse_range(key, value, 0, i64::MAX)?;
            }
            "haMaxBytesInFlight" => {
                self.ha_max_bytes_in_flight = parse_range(key, value, 4096, 1 << 32)?;
            }
            "syncFlushTimeout" => self.sync_flush_timeout = parse_range(key, value, 1, u64::MAX)?,
            "transactionTimeOut" => {
                self.transaction_timeout = parse_range(key, value, 0, u64::MAX)?;
            }
            "transactionCheckMax" => {
                self.transaction_check_max = parse_range(key, value, 1, u32::MAX)?;
            }
            "transactionCheckInterval" => {
                self.transaction_check_interval = parse_range(key, value, 10, u64::MAX)?;
            }
            "brokerIdWhenDemoted" => {
                self.broker_id_when_demoted = Some(parse_range(key, value, 1, i64::MAX)?);
            }
            "enableDLegerCommitLog" => self.enable_dleger_commit_log = parse_bool(key, value)?,
            "dLegerGroup" => self.dleger_group = value.to_owned(),
            "dLegerPeers" => self.dleger_peers = value.to_owned(),
            "dLegerSelfId" => self.dleger_self_id = value.to_owned(),
            "dLegerLeaderBrokerIP" => {
                if value.is_empty() {
                    self.dleger_leader_broker_ip = None;
                } else if value.contains(|c: char| c.is_whitespace() || c == ';' || c == '/') {
                    return Err(invalid(key, value, "must be a host name or IP address"));
                } else {
                    self.dleger_leader_broker_ip = Some(value.to_owned());
                }
            }
            "ferrumRaftHeartbeatIntervalMs" => {
                self.raft_heartbeat_interval_ms = parse_range(key, value, 1, 60_000)?;
            }
            "ferrumRaftElectionTimeoutMinMs" => {
                self.raft_election_timeout_min_ms = parse_range(key, value, 1, 600_000)?;
            }
            "ferrumRaftElectionTimeoutMaxMs" => {
                self.raft_election_timeout_max_ms = parse_range(key, value, 1, 600_000)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks constraints that span keys, after every source has been applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::raft::config::RaftConfig::from_broker_config(self)?;
        if let Some(host) = &self.dleger_leader_broker_ip
            && !self.enable_dleger_commit_log
        {
            return Err(invalid(
                "dLegerLeaderBrokerIP",
                host,
                "only a Raft replica (enableDLegerCommitLog=true) advertises a leader address",
            ));
        }
        match self.broker_role {
            BrokerRole::Slave if self.broker_id == 0 => Err(invalid(
                "brokerId",
                "0",
                "a SLAVE needs a brokerId greater than 0 (0 is the master's id)",
            )),
            BrokerRole::AsyncMaster | BrokerRole::SyncMaster if self.broker_id != 0 => {
                Err(invalid(
                    "brokerId",
                    &self.broker_id.to_string(),
                    format!("a {} must have brokerId 0", self.broker_role),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Applies every `key=value` of `props`; unknown keys are returned for the caller to warn.
    pub fn apply_all<'a>(
        &mut self,
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut unknown = Vec::new();
        for (key, value) in props {
            if !self.set(key, value)? {
                unknown.push(key.to_owned());
            }
        }
        Ok(unknown)
    }
}

fn protocol_frame_limit() -> usize {
    ferrum_protocol::MAX_FRAME_LENGTH
}

fn non_empty(key: &str, value: &str) -> Result<String, ConfigError> {
    if value.is_empty() {
        return Err(invalid(key, value, "must not be empty"));
    }
    Ok(value.to_owned())
}

/// Parses Java `.properties` text: `#`/`!` comments, `=`, `:` or whitespace separators,
/// backslash line continuations and escapes (`\t`, `\n`, `\uXXXX`, ...). Later keys win.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes continues the line.
        let mut logical = trimmed.to_owned();
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        let key = unescape(key, index + 1)?;
        let value = unescape(value, index + 1)?;
        out.insert(key, value);
    }
    Ok(out)
}

fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => return (&line[..i], line[i + 1..].trim_start()),
            c if c.is_whitespace() => {
                let rest = line[i..].trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest);
                return (&line[..i], rest.trim_start());
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(s: &str, line: usize) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or(ConfigError::BadEscape { line })?;
                out.push(code);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out.trim_end().to_owned())
}

/// The environment variable for a key: `FERRUM_BROKER_` + the key in SCREAMING_SNAKE_CASE
/// (`listenPort` → `FERRUM_BROKER_LISTEN_PORT`, `brokerIP1` → `FERRUM_BROKER_BROKER_IP1`).
pub fn env_var_name(key: &str) -> String {
    let mut out = String::from("FERRUM_BROKER_");
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The sources a configuration is built from, in precedence order.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    pub file_text: Option<String>,
    pub env: Vec<(String, String)>,
    pub namesrv: Option<String>,
    pub overrides: Vec<String>,
}

/// A built configuration and the keys nobody understood.
#[derive(Debug)]
pub struct Loaded {
    pub config: BrokerConfig,
    pub unknown_keys: Vec<String>,
}

/// Builds the configuration from all sources. Environment variables with the prefix that match
/// no key are reported as unknown under their variable name.
pub fn load(sources: &ConfigSources) -> Result<Loaded, ConfigError> {
    let mut config = BrokerConfig::default();
    let mut unknown = Vec::new();
    if let Some(text) = &sources.file_text {
        let props = parse_properties(text)?;
        unknown.extend(config.apply_all(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))?);
    }
    let by_env: BTreeMap<String, &str> = KNOWN_KEYS.iter().map(|k| (env_var_name(k), *k)).collect();
    for (name, value) in &sources.env {
        if !name.starts_with("FERRUM_BROKER_") {
            continue;
        }
        match by_env.get(name) {
            Some(key) => {
                config.set(key, value)?;
            }
            None => unknown.push(name.clone()),
        }
    }
    if let Some(namesrv) = &sources.namesrv {
        config.set("namesrvAddr", namesrv)?;
    }
    for item in &sources.overrides {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| ConfigError::NotKeyValue(item.clone()))?;
        if !config.set(key.trim(), value)? {
            unknown.push(key.trim().to_owned());
        }
    }
    let ha_port_explicit = sources
        .file_text
        .as_deref()
        .and_then(|text| parse_properties(text).ok())
        .is_some_and(|props| props.contains_key("haListenPort"))
        || sources
            .env
            .iter()
            .any(|(name, _)| *name == env_var_name("haListenPort"))
        || sources.overrides.iter().any(|item| {
            item.split_once('=')
                .is_some_and(|(k, _)| k.trim() == "haListenPort")
        });
    if !ha_port_explicit {
        // RocketMQ's BrokerStartup puts the HA port next to listenPort unless it is configured;
        // an ephemeral listenPort gets an ephemeral HA port so brokers side by side never clash.
        config.ha_listen_port = match config.listen_port {
            0 => 0,
            port => port.checked_add(1).ok_or_else(|| {
                invalid(
                    "haListenPort",
                    "",
                    "listenPort + 1 overflows; set haListenPort explicitly",
                )
            })?,
        };
    }
    config.validate()?;
    Ok(Loaded {
        config,
        unknown_keys: unknown,
    })
}

/// Reads the file (if any) and the process environment, then [`load`]s.
pub fn load_from(
    file: Option<&std::path::Path>,
    namesrv: Option<String>,
    overrides: Vec<String>,
) -> Result<Loaded, ConfigError> {
    let file_text = file
        .map(|path| {
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })
        })
        .transpose()?;
    let loaded = load(&ConfigSources {
        file_text,
        env: std::env::vars().collect(),
        namesrv,
        overrides,
    })?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key = %key, "unknown configuration key ignored");
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(text: &str) -> ConfigSources {
        ConfigSources {
            file_text: Some(text.to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_rocketmq_defaults() {
        let c = BrokerConfig::default();
        assert_eq!(c.broker_cluster_name, "DefaultCluster");
        assert_eq!(c.listen_port, 10911);
        assert_eq!(c.default_topic_queue_nums, 4);
        assert_eq!(c.file_reserved_time, 72);
        assert_eq!(c.delete_when, "04");
        assert_eq!(c.disk_max_used_space_ratio, 75);
        assert_eq!(c.disk_space_warning_level_ratio, 90);
        assert_eq!(c.disk_space_clean_forcibly_ratio, 85);
        assert!(c.clean_file_forcibly_enable);
        assert_eq!(c.register_name_server_period, 30_000);
        assert!(c.auto_create_topic_enable);
        assert_eq!(c.broker_role, BrokerRole::AsyncMaster);
    }

    #[test]
    fn ha_listen_port_follows_listen_port_unless_configured() {
        let port = |text: &str| load(&sources(text)).expect("valid").config.ha_listen_port;
        assert_eq!(port(""), 10912);
        assert_eq!(port("listenPort=20911"), 20912);
        assert_eq!(port("listenPort=0"), 0);
        assert_eq!(port("listenPort=20911\nhaListenPort=30000"), 30000);
        let by_flag = load(&ConfigSources {
            overrides: vec!["listenPort=0".into(), "haListenPort=31000".into()],
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(by_flag.config.ha_listen_port, 31000);
        assert!(load(&sources("listenPort=65535")).is_err());
    }

    #[test]
    fn parses_a_rocketmq_broker_conf() {
        let text = "# comment\n! another\nbrokerClusterName = ClusterX\nbrokerName:broker-b\n\
                    brokerId 0\nnamesrvAddr=ns1:9876;ns2.example.svc:9876\n\
                    brokerIP1=broker-b-0.broker.ns.svc\nstorePathRootDir=/data/st\\\n  ore\n\
                    brokerRole=SYNC_MASTER\nflushDiskType=SYNC_FLUSH\ndeleteWhen=04;16\n\
                    listenPort=20911\n";
        let loaded = load(&sources(text)).expect("valid");
        let c = loaded.config;
        assert!(loaded.unknown_keys.is_empty());
        assert_eq!(c.broker_cluster_name, "ClusterX");
        assert_eq!(c.broker_name, "broker-b");
        assert_eq!(c.namesrv_addr, vec!["ns1:9876", "ns2.example.svc:9876"]);
        assert_eq!(c.broker_addr(), "broker-b-0.broker.ns.svc:20911");
        assert_eq!(c.store_path_root_dir, PathBuf::from("/data/store"));
        assert_eq!(
            c.store_path_commit_log(),
            PathBuf::from("/data/store/commitlog")
        );
        assert_eq!(c.broker_role, BrokerRole::SyncMaster);
        assert_eq!(c.flush_disk_type, FlushDiskType::SyncFlush);
    }

    #[test]
    fn escapes_and_separators() {
        let p = parse_properties("a\\=b=c\\td\nkey\\ with\\ space   value \nu=\\u0041x\nempty\n")
            .expect("valid");
        assert_eq!(p["a=b"], "c\td");
        assert_eq!(p["key with space"], "value");
        assert_eq!(p["u"], "Ax");
        assert_eq!(p["empty"], "");
        assert!(parse_properties("x=\\u00zz").is_err());
    }

    #[test]
    fn invalid_values_name_key_and_value() {
        for (text, key) in [
            ("listenPort=abc", "listenPort"),
            ("brokerRole=LEADER", "brokerRole"),
            ("flushDiskType=SOMETIMES", "flushDiskType"),
            ("autoCreateTopicEnable=yes", "autoCreateTopicEnable"),
            ("namesrvAddr=nohostport", "namesrvAddr"),
            ("diskMaxUsedSpaceRatio=120", "diskMaxUsedSpaceRatio"),
            ("brokerRole=SLAVE", "brokerId"),
        ] {
            let err = load(&sources(text)).expect_err(text).to_string();
            assert!(err.contains(key), "{err}");
        }
        let err = load(&sources("listenPort=abc"))
            .expect_err("bad")
            .to_string();
        assert!(err.contains("'abc'"), "{err}");
    }

    #[test]
    fn disk_space_keys_from_every_source_and_their_ranges() {
        let loaded = load(&ConfigSources {
            file_text: Some(
                "diskSpaceWarningLevelRatio=95\ncleanFileForciblyEnable=false\n".into(),
            ),
            env: vec![(
                "FERRUM_BROKER_DISK_SPACE_CLEAN_FORCIBLY_RATIO".into(),
                "97".into(),
            )],
            overrides: vec!["diskSpaceWarningLevelRatio=98".into()],
            ..Default::default()
        })
        .expect("valid");
        assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
        let c = &loaded.config;
        assert_eq!(c.disk_space_warning_level_ratio, 98);
        assert_eq!(c.disk_space_clean_forcibly_ratio, 97);
        assert!(!c.clean_file_forcibly_enable);
        assert_eq!(
            env_var_name("diskSpaceWarningLevelRatio"),
            "FERRUM_BROKER_DISK_SPACE_WARNING_LEVEL_RATIO"
        );
        assert_eq!(
            env_var_name("cleanFileForciblyEnable"),
            "FERRUM_BROKER_CLEAN_FILE_FORCIBLY_ENABLE"
        );

        let mut edges = BrokerConfig::default();
        for (key, value) in [
            ("diskSpaceWarningLevelRatio", "35"),
            ("diskSpaceWarningLevelRatio", "99"),
            ("diskSpaceCleanForciblyRatio", "30"),
            ("diskSpaceCleanForciblyRatio", "99"),
            ("cleanFileForciblyEnable", "TRUE"),
        ] {
            assert!(edges.set(key, value).expect(value), "{key} known");
        }
        for (key, value, reason) in [
            ("diskSpaceWarningLevelRatio", "34", "between 35 and 99"),
            ("diskSpaceWarningLevelRatio", "100", "between 35 and 99"),
            ("diskSpaceWarningLevelRatio", "90%", "not a valid number"),
            ("diskSpaceWarningLevelRatio", "0.9", "not a valid number"),
            ("diskSpaceCleanForciblyRatio", "29", "between 30 and 99"),
            ("diskSpaceCleanForciblyRatio", "-1", "not a valid number"),
            ("diskSpaceCleanForciblyRatio", "", "not a valid number"),
            ("cleanFileForciblyEnable", "1", "expected true or false"),
        ] {
            let err = load(&sources(&format!("{key}={value}")))
                .expect_err(value)
                .to_string();
            assert!(
                err.contains(key) && err.contains(&format!("'{value}'")) && err.contains(reason),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_reported_not_refused() {
        let loaded = load(&sources("brokerName=b\nmysteryKnob=11\n")).expect("valid");
        assert_eq!(loaded.unknown_keys, vec!["mysteryKnob"]);
    }

    #[test]
    fn precedence_file_env_flag_set() {
        let s = ConfigSources {
            file_text: Some("listenPort=1000\nbrokerName=file\nnamesrvAddr=a:1".into()),
            env: vec![
                ("FERRUM_BROKER_LISTEN_PORT".into(), "2000".into()),
                ("FERRUM_BROKER_BROKER_NAME".into(), "env".into()),
                ("FERRUM_BROKER_NOPE".into(), "1".into()),
                ("PATH".into(), "/bin".into()),
            ],
            namesrv: Some("b:2".into()),
            overrides: vec!["listenPort=3000".into()],
        };
        let loaded = load(&s).expect("valid");
        assert_eq!(loaded.config.listen_port, 3000);
        assert_eq!(loaded.config.broker_name, "env");
        assert_eq!(loaded.config.namesrv_addr, vec!["b:2"]);
        assert_eq!(loaded.unknown_keys, vec!["FERRUM_BROKER_NOPE"]);
        assert!(matches!(
            load(&ConfigSources {
                overrides: vec!["novalue".into()],
                ..Default::default()
            }),
            Err(ConfigError::NotKeyValue(_))
        ));
    }

    #[test]
    fn env_names() {
        assert_eq!(env_var_name("listenPort"), "FERRUM_BROKER_LISTEN_PORT");
        assert_eq!(env_var_name("brokerIP1"), "FERRUM_BROKER_BROKER_IP1");
        assert_eq!(
            env_var_name("mappedFileSizeCommitLog"),
            "FERRUM_BROKER_MAPPED_FILE_SIZE_COMMIT_LOG"
        );
    }

    #[test]
    fn ha_keys_and_a_secret_from_the_environment_that_debug_never_prints() {
        let loaded = load(&ConfigSources {
            file_text: Some("haMasterAddress=10.0.0.1:10912\nhaTransferBatchSize=65536\n".into()),
            env: vec![("FERRUM_BROKER_HA_SECRET".into(), "hunter2".into())],
            namesrv: None,
            overrides: vec![
                "brokerIdWhenDemoted=3".into(),
                "syncFlushTimeout=1500".into(),
            ],
        })
        .expect("valid");
        let c = &loaded.config;
        assert_eq!(c.ha_secret.0, "hunter2");
        assert_eq!(c.ha_master_address.as_deref(), Some("10.0.0.1:10912"));
        assert_eq!(c.ha_transfer_batch_size, 65536);
        assert_eq!(c.broker_id_when_demoted, Some(3));
        assert_eq!(c.sync_flush_timeout, 1500);
        assert!(!format!("{c:?}").contains("hunter2"));
        let mut bad = BrokerConfig::default();
        assert!(bad.set("haMasterAddress", "nohost").is_err());
        assert!(bad.set("brokerIdWhenDemoted", "0").is_err());
    }

    #[test]
    fn a_raft_leader_registers_the_leader_address_followers_their_own() {
        let peers = "n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913";
        let loaded = load(&ConfigSources {
            file_text: Some(format!(
                "enableDLegerCommitLog=true\ndLegerPeers={peers}\ndLegerSelfId=n1\n\
                 brokerIP1=g-1.g-headless.mq.svc\nbrokerRole=SLAVE\nbrokerId=2\n"
            )),
            env: vec![(
                "FERRUM_BROKER_D_LEGER_LEADER_BROKER_IP".into(),
                "g-master.mq.svc".into(),
            )],
            ..Default::default()
        })
        .expect("valid");
        let c = &loaded.config;
        assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
        assert_eq!(c.registered_addr(0), "g-master.mq.svc:10911");
        assert_eq!(c.registered_addr(2), "g-1.g-headless.mq.svc:10911");
        let by_flag = load(&ConfigSources {
            file_text: Some(format!(
                "enableDLegerCommitLog=true\ndLegerPeers={peers}\ndLegerSelfId=n0\n\
                 brokerRole=SLAVE\nbrokerId=1\n"
            )),
            overrides: vec!["dLegerLeaderBrokerIP=localhost".into()],
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(by_flag.config.registered_addr(0), "localhost:10911");

        // Outside Raft mode the key is refused, and every id registers brokerIP1.
        let err = load(&sources("dLegerLeaderBrokerIP=g-master.mq.svc"))
            .expect_err("not Raft")
            .to_string();
        assert!(err.contains("dLegerLeaderBrokerIP"), "{err}");
        assert_eq!(
            BrokerConfig::default().registered_addr(0),
            "127.0.0.1:10911"
        );
        let mut bad = BrokerConfig::default();
        assert!(bad.set("dLegerLeaderBrokerIP", "a b").is_err());
        assert!(bad.set("dLegerLeaderBrokerIP", "a;b").is_err());
        assert!(bad.set("dLegerLeaderBrokerIP", "").expect("known"));
        assert_eq!(bad.dleger_leader_broker_ip, None);
    }
}
