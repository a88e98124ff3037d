//! Master–slave replication (RocketMQ's pre-4.5 HA, pull based) with an authenticated
//! handshake, epochs and manual promotion without restart.
//!
//! - [`codec`]: the frames, as bytes only. Streaming keeps RocketMQ DefaultHA's 8-byte report and
//!   12-byte transfer header, the model every RocketMQ operator knows; a Ferrum handshake comes
//!   first because DefaultHA lets anyone on the network report offsets (apache/rocketmq#1155,
//!   #3015), which would make a SYNC_MASTER acknowledge what no slave holds.
//! - [`epoch`]: the epoch table that decides how much of a returning replica's tail diverges.
//! - [`master`]: the HA listener; one task per authenticated slave streams CommitLog bytes and
//!   records the slave's acknowledged offset.
//! - [`slave`]: finds the master (NameServer register answer or `haMasterAddress`), handshakes,
//!   truncates a divergent tail, appends at identical offsets and reports.
//! - [`remote`]: decisions that ask other processes (promotion, a returning or partitioned
//!   master's demotion when a newer-epoch master of its group is live).
//! - [`metrics`]: replication gauges and counters in the broker's registry.
//!
//! [`HaState`] is the runtime role shared by the processors: the role and brokerId can change
//! without a restart (promotion, or demotion of a returning old master), so code that asks
//! "am I a slave?" asks [`HaState::role`], not the static configuration.

pub mod codec;
pub mod epoch;
pub mod master;
pub mod metrics;
pub mod remote;
pub mod slave;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrum_protocol::replica::{BrokerReplicaStatus, SlaveReplicaStatus};
use ferrum_store::{MessageStore, PutMessageStatus};
use tokio::sync::{Notify, watch};

use crate::config::{BrokerConfig, BrokerRole};
use crate::persist::PersistError;
use epoch::EpochTable;

/// The role a broker plays now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleState {
    pub role: BrokerRole,
    pub broker_id: i64,
    /// A slave's master (remoting address), from the NameServer's register answer.
    pub master_addr: Option<String>,
    /// A slave's master HA address (register answer, else `haMasterAddress`).
    pub master_ha_addr: Option<String>,
}

impl RoleState {
    pub fn is_slave(&self) -> bool {
        self.role == BrokerRole::Slave
    }
}

/// What a master knows about one authenticated HA connection.
#[derive(Debug, Clone)]
struct SlaveProgress {
    addr: String,
    broker_id: i64,
    acked: i64,
    /// The last time this slave held everything the master had.
    caught_up_at: Instant,
}

/// Replication state shared by the processors, the registrar and the HA tasks.
#[derive(Debug)]
pub struct HaState {
    role: watch::Sender<RoleState>,
    epoch_path: PathBuf,
    epochs: Mutex<EpochTable>,
    slaves: Mutex<BTreeMap<u64, SlaveProgress>>,
    next_conn: AtomicU64,
    /// The highest offset an authenticated slave acknowledged; SYNC_MASTER sends wait on it.
    acked: watch::Sender<i64>,
    /// Woken after local appends so slave streams send at once instead of at their next poll.
    pub appended: Notify,
    truncated_messages: AtomicU64,
    truncated_bytes: AtomicU64,
    /// HELLOs this master refused (wrong secret, group, version, a slave of a newer epoch).
    handshake_rejections: AtomicU64,
    /// Times a running master found a newer-epoch master of its group and became its slave.
    demotions: AtomicU64,
    /// Serializes promotion and demotion.
    pub(crate) transition: tokio::sync::Mutex<()>,
    /// Set while a promotion fixes its epoch start: replicated bytes are refused from then on.
    promoting: AtomicBool,
    /// Held around each replicated append, so a promotion sees the offset after the last one.
    append_gate: Arc<Mutex<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HaState {
    /// The configured role and the persisted epoch table. Whether a configured master really
    /// stays master is decided at start by [`remote::startup_role`].
    pub fn load(config: &BrokerConfig) -> Result<Self, PersistError> {
        let epoch_path = epoch::epoch_file(&config.config_dir());
        let epochs = epoch::load(&epoch_path)?;
        let (role, _) = watch::channel(RoleState {
            role: config.broker_role,
            broker_id: config.broker_id,
            master_addr: None,
            master_ha_addr: config.ha_master_address.clone(),
        });
        let (acked, _) = watch::channel(-1);
        Ok(HaState {
            role,
            epoch_path,
            epochs: Mutex::new(epochs),
            slaves: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(1),
            acked,
            appended: Notify::new(),
            truncated_messages: AtomicU64::new(0),
            truncated_bytes: AtomicU64::new(0),
            handshake_rejections: AtomicU64::new(0),
            demotions: AtomicU64::new(0),
            transition: tokio::sync::Mutex::new(()),
            promoting: AtomicBool::new(false),
            append_gate: Arc::new(Mutex::new(())),
        })
    }

    pub fn role(&self) -> RoleState {
        self.role.borrow().clone()
    }

    pub fn is_slave(&self) -> bool {
        self.role.borrow().is_slave()
    }

    /// Changes of role or brokerId (the registrar re-registers at once, the slave task starts
    /// or stops).
    pub fn subscribe(&self) -> watch::Receiver<RoleState> {
        self.role.subscribe()
    }

    pub(crate) fn set_role(&self, role: BrokerRole, broker_id: i64) {
        self.role.send_modify(|r| {
            r.role = role;
            r.broker_id = broker_id;
            if role != BrokerRole::Slave {
                r.master_addr = None;
                r.master_ha_addr = None;
            }
        });
    }

    /// Records the master's addresses from a register answer (slaves only); `None` keeps the
    /// configured `haMasterAddress`.
    pub fn set_master_addrs(&self, master_addr: Option<String>, ha_addr: Option<String>) {
        self.role.send_if_modified(|r| {
            if !r.is_slave() {
                return false;
            }
            let mut changed = false;
            if master_addr.is_some() && r.master_addr != master_addr {
                r.master_addr = master_addr;
                changed = true;
            }
            if ha_addr.is_some() && r.master_ha_addr != ha_addr {
                r.master_ha_addr = ha_addr;
                changed = true;
            }
            changed
        });
    }

    pub(crate) fn set_promoting(&self, on: bool) {
        self.promoting.store(on, Ordering::Release);
    }

    pub(crate) fn append_gate(&self) -> Arc<Mutex<()>> {
        self.append_gate.clone()
    }

    /// Whether replicated bytes may be appended now (a slave not being promoted).
    pub(crate) fn accepts_replica_bytes(&self) -> bool {
        self.is_slave() && !self.promoting.load(Ordering::Acquire)
    }

    pub fn epochs(&self) -> EpochTable {
        lock(&self.epochs).clone()
    }

    pub fn current_epoch(&self) -> u32 {
        lock(&self.epochs).current_epoch()
    }

    /// Replaces the table (a slave adopting its master's history) and persists it.
    pub(crate) fn replace_epochs(&self, table: EpochTable) -> Result<(), PersistError> {
        let mut current = lock(&self.epochs);
        if *current != table {
            epoch::store(&self.epoch_path, &table)?;
            *current = table;
        }
        Ok(())
    }

    /// Opens `epoch` at `start_offset` and persists it before anyone is told.
    pub(crate) fn open_epoch(&self, epoch: u32, start_offset: i64) -> Result<(), String> {
        let mut current = lock(&self.epochs);
        let mut next = current.clone();
        next.open(epoch, start_offset).map_err(|e| e.to_string())?;
        epoch::store(&self.epoch_path, &next).map_err(|e| e.to_string())?;
        *current = next;
        Ok(())
    }

    pub(crate) fn count_truncated(&self, messages: u64, bytes: u64) {
        self.truncated_messages
            .fetch_add(messages, Ordering::Relaxed);
        self.truncated_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Messages and bytes dropped as a divergent tail since start (for metrics).
    pub fn truncated(&self) -> (u64, u64) {
        (
            self.truncated_messages.load(Ordering::Relaxed),
            self.truncated_bytes.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn count_handshake_rejection(&self) {
        self.handshake_rejections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_demotion(&self) {
        self.demotions.fetch_add(1, Ordering::Relaxed);
    }

    /// Refused handshakes and split-brain demotions since start (for metrics).
    pub fn rejections_and_demotions(&self) -> (u64, u64) {
        (
            self.handshake_rejections.load(Ordering::Relaxed),
            self.demotions.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn add_slave(&self, addr: String, broker_id: i64, acked: i64) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        lock(&self.slaves).insert(
            id,
            SlaveProgress {
                addr,
                broker_id,
                acked,
                caught_up_at: Instant::now(),
            },
        );
        self.publish_acked();
        id
    }

    /// Records an authenticated slave's report.
    pub(crate) fn slave_acked(&self, conn: u64, offset: i64, master_max: i64) {
        if let Some(s) = lock(&self.slaves).get_mut(&conn) {
            s.acked = offset;
            if offset >= master_max {
                s.caught_up_at = Instant::now();
            }
        }
        self.publish_acked();
    }

    pub(crate) fn remove_slave(&self, conn: u64) {
        lock(&self.slaves).remove(&conn);
        self.publish_acked();
    }

    fn publish_acked(&self) {
        let best = lock(&self.slaves)
            .values()
            .map(|s| s.acked)
            .max()
            .unwrap_or(-1);
        self.acked.send_if_modified(|v| {
            let changed = *v != best;
            *v = best;
            changed
        });
    }

    /// The SYNC_MASTER rule after a local write ending at `end_offset`: `PutOk` once a slave
    /// acknowledged it, `SlaveNotAvailable` when no authenticated slave is within
    /// `haMaxGapNotInSync`, `FlushSlaveTimeout` after `timeout`. Other roles return `PutOk`.
    pub async fn wait_for_replica(
        &self,
        end_offset: i64,
        master_max: i64,
        max_gap: i64,
        timeout: Duration,
    ) -> PutMessageStatus {
        if self.role.borrow().role != BrokerRole::SyncMaster {
            return PutMessageStatus::PutOk;
        }
        let mut rx = self.acked.subscribe();
        let best = *rx.borrow_and_update();
        if best < 0 || master_max - best >= max_gap {
            return PutMessageStatus::SlaveNotAvailable;
        }
        match tokio::time::timeout(timeout, rx.wait_for(|acked| *acked >= end_offset)).await {
            Ok(Ok(_)) => PutMessageStatus::PutOk,
            _ => PutMessageStatus::FlushSlaveTimeout,
        }
    }

    /// The body of FERRUM_GET_BROKER_REPLICA_STATUS.
    pub fn status(&self, config: &BrokerConfig, store: &MessageStore) -> BrokerReplicaStatus {
        let role = self.role();
        let epochs = self.epochs();
        let max = store.max_phy_offset();
        let now = Instant::now();
        let slaves = lock(&self.slaves)
            .values()
            .map(|s| SlaveReplicaStatus {
                addr: s.addr.clone(),
                broker_id: s.broker_id,
                acked_offset: s.acked,
                lag_bytes: (max - s.acked).max(0),
                lag_millis: if s.acked >= max {
                    0
                } else {
                    now.duration_since(s.caught_up_at).as_millis() as i64
                },
            })
            .collect();
        let (truncated_messages, truncated_bytes) = self.truncated();
        BrokerReplicaStatus {
            cluster_name: config.broker_cluster_name.clone(),
            broker_name: config.broker_name.clone(),
            broker_id: role.broker_id,
            role: role.role.to_string(),
            ha_server_addr: config.ha_server_addr(),
            epoch: epochs.current_epoch(),
            epoch_start_offset: epochs.current_start(),
            master_addr: role.master_addr,
            master_ha_addr: role.master_ha_addr,
            max_phy_offset: max,
            min_phy_offset: store.min_phy_offset(),
            slaves,
            truncated_messages,
            truncated_bytes,
        }
    }
}

/// Drops the CommitLog tail from `point` to the max offset, counting its messages; logs what
/// was lost, because an ASYNC_MASTER acknowledged those messages to their producers.
pub(crate) fn truncate_divergent(
    ha: &HaState,
    store: &MessageStore,
    point: i64,
    why: &str,
) -> Result<(u64, u64), ferrum_store::StoreError> {
    let max = store.max_phy_offset();
    if point >= max {
        return Ok((0, 0));
    }
    let file_size = store.config().mapped_file_size_commit_log as i64;
    let mut messages = 0u64;
    let mut at = point;
    while at < max {
        let Some(chunk) = store.read_raw(at, 4 * 1024 * 1024) else {
            break;
        };
        let walk = codec::walk_records(&chunk, at, file_size);
        messages += walk.messages;
        if walk.whole_bytes == 0 {
            match walk.next_record_size {
                Some(size) => match store.read_raw(at, size) {
                    Some(record) if record.len() == size => {
                        messages += 1;
                        at += size as i64;
                        continue;
                    }
                    _ => break,
                },
                None => break,
            }
        }
        at += walk.whole_bytes as i64;
    }
    let bytes = (max - point) as u64;
    store.truncate_to(point)?;
    ha.count_truncated(messages, bytes);
    tracing::warn!(
        from = point,
        to = max,
        truncated_messages = messages,
        truncated_bytes = bytes,
        reason = why,
        "truncated a divergent CommitLog tail: these messages were never replicated to the new master and are lost"
    );
    Ok((messages, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(role: BrokerRole) -> (tempfile::TempDir, HaState) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig {
            store_path_root_dir: dir.path().to_owned(),
            broker_role: role,
            broker_id: if role == BrokerRole::Slave { 1 } else { 0 },
            ..Default::default()
        };
        let ha = HaState::load(&config).expect("loads");
        (dir, ha)
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn sync_master_acknowledges_only_what_an_authenticated_slave_holds() {
        let (_dir, ha) = state(BrokerRole::SyncMaster);
        assert_eq!(
            ha.wait_for_replica(100, 100, 1000, SHORT).await,
            PutMessageStatus::SlaveNotAvailable,
            "no slave"
        );
        let conn = ha.add_slave("127.0.0.1:1".into(), 1, 0);
        assert_eq!(
            ha.wait_for_replica(5000, 5000, 1000, SHORT).await,
            PutMessageStatus::SlaveNotAvailable,
            "the only slave is beyond haMaxGapNotInSync"
        );
        assert_eq!(
            ha.wait_for_replica(100, 100, 1000, SHORT).await,
            PutMessageStatus::FlushSlaveTimeout,
            "within the gap but never acknowledged"
        );
        let (status, ()) = tokio::join!(
            ha.wait_for_replica(100, 100, 1000, Duration::from_secs(10)),
            async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ha.slave_acked(conn, 100, 100);
            }
        );
        assert_eq!(status, PutMessageStatus::PutOk);
        ha.remove_slave(conn);
        assert_eq!(
            ha.wait_for_replica(100, 100, 1000, SHORT).await,
            PutMessageStatus::SlaveNotAvailable,
            "a gone slave's acknowledgements do not count"
        );
        ha.set_role(BrokerRole::AsyncMaster, 0);
        assert_eq!(
            ha.wait_for_replica(100, 100, 1000, SHORT).await,
            PutMessageStatus::PutOk,
            "ASYNC_MASTER acknowledges after the local write"
        );
    }

    #[test]
    fn promotion_gate_and_master_addresses() {
        let (_dir, ha) = state(BrokerRole::Slave);
        assert!(ha.accepts_replica_bytes());
        ha.set_master_addrs(Some("m:1".into()), Some("m:2".into()));
        let role = ha.role();
        assert_eq!(role.master_addr.as_deref(), Some("m:1"));
        assert_eq!(role.master_ha_addr.as_deref(), Some("m:2"));
        ha.set_promoting(true);
        assert!(!ha.accepts_replica_bytes());
        ha.open_epoch(2, 4096).expect("opens");
        ha.set_role(BrokerRole::AsyncMaster, 0);
        ha.set_promoting(false);
        assert!(
            !ha.accepts_replica_bytes(),
            "a master takes no replica bytes"
        );
        assert_eq!(ha.role().master_addr, None);
        // A master ignores register answers naming a master.
        ha.set_master_addrs(Some("x:1".into()), None);
        assert_eq!(ha.role().master_addr, None);
        assert_eq!(ha.current_epoch(), 2);
        assert!(ha.open_epoch(2, 5000).is_err(), "an epoch opens once");
    }
}
