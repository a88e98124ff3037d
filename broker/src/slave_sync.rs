//! Metadata follows the master (RocketMQ's `SlaveSynchronize`) and the read-from-slave rule.
//!
//! A slave asks its master, at start and every `ferrumSlaveSyncInterval` (10 s, RocketMQ's
//! period), for GET_ALL_TOPIC_CONFIG 21, GET_ALL_CONSUMER_OFFSET 43, GET_ALL_DELAY_OFFSET 45 and
//! GET_ALL_SUBSCRIPTIONGROUP_CONFIG 201. Topics and groups are replaced only when the master's
//! `dataVersion` differs from the one last taken; every file is written crash-safe
//! ([`crate::persist`]) before the new table is visible, so a promoted slave starts from the
//! last table it saw, whole.
//!
//! Consumer offsets have no data version, so they are merged ([`merge_offsets`]): RocketMQ 4.x
//! copies the master's entries over the slave's (`putAll`), which throws away what consumers
//! committed on the slave while the master was down as soon as an older master returns. Here an
//! entry the slave changed since the last sync keeps the larger of the two values until the
//! master reaches it; an entry nobody touched on the slave follows the master, so an admin's
//! reset on the master still reaches the slave.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferrum_protocol::route::{TopicConfigSerializeWrapper, from_json};
use ferrum_protocol::{RemotingCodec, RemotingCommand, RequestCode, ResponseCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;

use crate::persist::{self, PersistError};
use crate::processor::BrokerCore;
use crate::subscription::{OffsetTable, SubscriptionGroupWrapper};

/// How long one metadata call to the master may take (RocketMQ's BrokerOuterAPI uses 3 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// What a pull answer says about where the consumer should read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullSuggestion {
    /// `suggestWhichBrokerId` of the answer.
    pub which_broker_id: i64,
    /// A slave that may not be read answers PULL_RETRY_IMMEDIATELY instead of the messages.
    pub retry_immediately: bool,
}

/// RocketMQ's PullMessageProcessor rule. `far_behind` is the store's verdict that the pull read
/// more than `accessMessageInMemoryMaxRatio` of physical memory behind the commit log's end.
///
/// With `slaveReadEnable`, a far-behind consumer is sent to `whichBrokerWhenConsumeSlowly` (1)
/// and one that has caught up to the group's `brokerId` (0): on a slave that sends it back to
/// the master. Without it every answer says 0, and a slave refuses to serve (PULL_RETRY_
/// IMMEDIATELY), so a consumer reads from a slave only where the operator allowed it.
pub fn suggest_which_broker_id(
    is_slave: bool,
    slave_read_enable: bool,
    far_behind: bool,
    group_broker_id: i64,
    which_broker_when_consume_slowly: i64,
) -> PullSuggestion {
    if !slave_read_enable {
        return PullSuggestion {
            which_broker_id: 0,
            retry_immediately: is_slave,
        };
    }
    PullSuggestion {
        which_broker_id: if far_behind {
            which_broker_when_consume_slowly
        } else {
            group_broker_id
        },
        retry_immediately: false,
    }
}

/// The machine's total memory from `/proc/meminfo` text (`MemTotal: N kB`).
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

/// Total physical memory for the in-memory rule: the override, else the machine's, else
/// RocketMQ's fallback assumption when it cannot be read.
pub fn total_physical_memory(override_bytes: Option<u64>) -> u64 {
    override_bytes
        .or_else(|| {
            std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|text| parse_mem_total(&text))
        })
        .unwrap_or(24 * 1024 * 1024 * 1024)
}

/// One consumer offset to set on the slave: `(topic@group, queueId, offset)`.
pub type OffsetUpdate = (String, i32, i64);

/// The offsets a slave sets after fetching `master`'s table.
///
/// `applied` is the master's table as the previous sync fetched it. An entry of `local` that
/// differs from the master's last value was committed on the slave (its consumers read there
/// while the master was away) and keeps the larger value until the master reaches it; an entry
/// equal to it follows the master, backwards too. Entries only the slave has are kept, as
/// RocketMQ's `putAll` keeps them.
pub fn merge_offsets(
    master: &OffsetTable,
    local: &OffsetTable,
    applied: &OffsetTable,
) -> Vec<OffsetUpdate> {
    let mut updates = Vec::new();
    for (key, queues) in &master.offset_table {
        for (&queue_id, &master_offset) in queues {
            let local_offset = local.offset_table.get(key).and_then(|q| q.get(&queue_id));
            let applied_offset = applied.offset_table.get(key).and_then(|q| q.get(&queue_id));
            let wanted = match local_offset {
                Some(&mine) if Some(&mine) != applied_offset => mine.max(master_offset),
                _ => master_offset,
            };
            if local_offset != Some(&wanted) {
                updates.push((key.clone(), queue_id, wanted));
            }
        }
    }
    updates
}

/// Why one round of metadata sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("master {addr}: {reason}")]
    Transport { addr: String, reason: String },
    #[error("master {addr} did not answer code {code} within {CALL_TIMEOUT:?}")]
    Timeout { addr: String, code: i32 },
    #[error("master {addr} answered code {code} with {answer}: {remark}")]
    Refused {
        addr: String,
        code: i32,
        answer: i32,
        remark: String,
    },
    #[error("master {addr} sent an unreadable body for code {code}: {reason}")]
    Body {
        addr: String,
        code: i32,
        reason: String,
    },
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// One connection to the master's remoting port, reopened after any failure.
#[derive(Debug, Default)]
struct MasterLink {
    addr: String,
    conn: Option<Framed<TcpStream, RemotingCodec>>,
    next_opaque: i32,
}

impl MasterLink {
    async fn call(&mut self, addr: &str, code: RequestCode) -> Result<RemotingCommand, SyncError> {
        if self.addr != addr {
            self.addr = addr.to_owned();
            self.conn = None;
        }
        let transport = |reason: String| SyncError::Transport {
            addr: addr.to_owned(),
            reason,
        };
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        let result = tokio::time::timeout(CALL_TIMEOUT, async {
            if self.conn.is_none() {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| transport(e.to_string()))?;
                let _ = stream.set_nodelay(true);
                self.conn = Some(Framed::new(stream, RemotingCodec::default()));
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(transport("no connection".into()));
            };
            let request = RemotingCommand::bare_request(code.code()).with_opaque(opaque);
            conn.send(request)
                .await
                .map_err(|e| transport(e.to_string()))?;
            loop {
                match conn.next().await {
                    Some(Ok(answer)) if answer.is_response() && answer.opaque == opaque => {
                        return Ok(answer);
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(transport(e.to_string())),
                    None => return Err(transport("connection closed".into())),
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(SyncError::Timeout {
                addr: addr.to_owned(),
                code: code.code(),
            })
        });
        if result.is_err() {
            self.conn = None;
        }
        let answer = result?;
        if answer.code != ResponseCode::SUCCESS.code() {
            return Err(SyncError::Refused {
                addr: addr.to_owned(),
                code: code.code(),
                answer: answer.code,
                remark: answer.remark.unwrap_or_default(),
            });
        }
        Ok(answer)
    }
}

/// A slave's copy loop state.
#[derive(Debug)]
pub struct SlaveSynchronizer {
    core: Arc<BrokerCore>,
    link: MasterLink,
    /// The master's offset table as the last sync fetched it (see [`merge_offsets`]).
    applied_offsets: OffsetTable,
}

impl SlaveSynchronizer {
    pub fn new(core: Arc<BrokerCore>) -> Self {
        SlaveSynchronizer {
            core,
            link: MasterLink::default(),
            applied_offsets: OffsetTable::default(),
        }
    }

    /// Copies every table from `master_addr`; a failing table does not stop the others.
    pub async fn sync_all(&mut self, master_addr: &str) -> Result<(), SyncError> {
        let results = [
            self.sync_topics(master_addr).await,
            self.sync_offsets(master_addr).await,
            self.sync_delay_offsets(master_addr).await,
            self.sync_groups(master_addr).await,
        ];
        results.into_iter().collect()
    }

    fn body<T: serde::de::DeserializeOwned>(
        addr: &str,
        code: RequestCode,
        answer: &RemotingCommand,
    ) -> Result<T, SyncError> {
        from_json(&answer.body, code.name()).map_err(|e| SyncError::Body {
            addr: addr.to_owned(),
            code: code.code(),
            reason: e.to_string(),
        })
    }

    async fn sync_topics(&mut self, addr: &str) -> Result<(), SyncError> {
        let code = RequestCode::GET_ALL_TOPIC_CONFIG;
        let answer = self.link.call(addr, code).await?;
        let wrapper: TopicConfigSerializeWrapper = Self::body(addr, code, &answer)?;
        if wrapper.data_version != self.core.topics.data_version() {
            tracing::info!(master = addr, topics = wrapper.topic_config_table.len(), version = ?wrapper.data_version, "topic config taken from master");
            self.core.topics.replace_all(wrapper)?;
        }
        Ok(())
    }

    async fn sync_groups(&mut self, addr: &str) -> Result<(), SyncError> {
        let code = RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG;
        let answer = self.link.call(addr, code).await?;
        let wrapper: SubscriptionGroupWrapper = Self::body(addr, code, &answer)?;
        if wrapper.data_version != self.core.groups.data_version() {
            tracing::info!(master = addr, groups = wrapper.subscription_group_table.len(), version = ?wrapper.data_version, "subscription groups taken from master");
            self.core.groups.replace_all(wrapper)?;
        }
        Ok(())
    }

    async fn sync_offsets(&mut self, addr: &str) -> Result<(), SyncError> {
        let code = RequestCode::GET_ALL_CONSUMER_OFFSET;
        let answer = self.link.call(addr, code).await?;
        let master: OffsetTable = Self::body(addr, code, &answer)?;
        let local = self.core.offsets.snapshot();
        let updates = merge_offsets(&master, &local, &self.applied_offsets);
        for (key, queue_id, offset) in &updates {
            let Some((topic, group)) = key.split_once('@') else {
                tracing::warn!(
                    master = addr,
                    key,
                    "consumer offset key without topic@group skipped"
                );
                continue;
            };
            self.core.offsets.commit(group, topic, *queue_id, *offset);
        }
        if !updates.is_empty() {
            tracing::debug!(
                master = addr,
                updated = updates.len(),
                "consumer offsets taken from master"
            );
            self.core.offsets.persist()?;
        }
        self.applied_offsets = master;
        Ok(())
    }

    async fn sync_delay_offsets(&mut self, addr: &str) -> Result<(), SyncError> {
        let code = RequestCode::GET_ALL_DELAY_OFFSET;
        let answer = match self.link.call(addr, code).await {
            Ok(answer) => answer,
            // A master that never delayed a message has no table yet; nothing to copy.
            Err(SyncError::Refused { answer, .. })
                if answer == ResponseCode::SYSTEM_ERROR.code() =>
            {
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let _: serde_json::Value = Self::body(addr, code, &answer)?;
        let path = self.core.config.config_dir().join("delayOffset.json");
        if read_file(&path)?.as_deref() != Some(&answer.body[..]) {
            persist::write_atomic(&path, &answer.body)?;
            tracing::debug!(master = addr, "delay offsets taken from master");
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, PersistError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Syncs while `master_addr()` names a master (the broker is a slave and knows it), at once when
/// it first does and every `ferrumSlaveSyncInterval`, until `shutdown`.
pub async fn run(
    core: Arc<BrokerCore>,
    master_addr: impl Fn() -> Option<String> + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = Duration::from_millis(core.config.slave_sync_interval);
    // Until the first success the slave looks often: the register answer arrives after start.
    let retry = period.min(Duration::from_millis(500));
    let mut sync = SlaveSynchronizer::new(core);
    let mut synced_from: Option<String> = None;
    loop {
        let wait = match master_addr() {
            Some(addr) => match sync.sync_all(&addr).await {
                Ok(()) => {
                    if synced_from.as_deref() != Some(addr.as_str()) {
                        tracing::info!(master = %addr, "metadata synchronized from master");
                        synced_from = Some(addr);
                    }
                    period
                }
                Err(error) => {
                    tracing::warn!(%error, "metadata sync from master failed");
                    synced_from = None;
                    period
                }
            },
            None => {
                synced_from = None;
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

impl BrokerCore {
    /// GET_ALL_DELAY_OFFSET 45: the schedule service's `delayOffset.json`, as RocketMQ answers
    /// it (the encoded table; SYSTEM_ERROR when the broker has none).
    pub(crate) fn all_delay_offsets(&self, request: &RemotingCommand) -> RemotingCommand {
        let path = self.config.config_dir().join("delayOffset.json");
        match read_file(&path) {
            Ok(Some(bytes)) if !bytes.iter().all(u8::is_ascii_whitespace) => {
                request.success_to().with_body(bytes)
            }
            Ok(_) => request.error_to(ResponseCode::SYSTEM_ERROR, "No delay offset in this broker"),
            Err(error) => request.error_to(ResponseCode::SYSTEM_ERROR, error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn table(entries: &[(&str, i32, i64)]) -> OffsetTable {
        let mut t = OffsetTable::default();
        for (key, queue, offset) in entries {
            t.offset_table
                .entry((*key).to_owned())
                .or_insert_with(BTreeMap::new)
                .insert(*queue, *offset);
        }
        t
    }

    #[test]
    fn master_suggests_slave_only_when_far_behind_and_allowed() {
        let far = suggest_which_broker_id(false, true, true, 0, 1);
        assert_eq!(far.which_broker_id, 1);
        assert!(!far.retry_immediately);
        assert_eq!(
            suggest_which_broker_id(false, true, false, 0, 1).which_broker_id,
            0
        );
        let disabled = suggest_which_broker_id(false, false, true, 0, 1);
        assert_eq!(disabled.which_broker_id, 0);
        assert!(!disabled.retry_immediately);
        // A group configured to read another slave when slow gets that id.
        assert_eq!(
            suggest_which_broker_id(false, true, true, 0, 2).which_broker_id,
            2
        );
    }

    #[test]
    fn slave_sends_caught_up_consumers_back_and_refuses_when_not_readable() {
        let caught_up = suggest_which_broker_id(true, true, false, 0, 1);
        assert_eq!(caught_up.which_broker_id, 0);
        assert!(!caught_up.retry_immediately);
        let behind = suggest_which_broker_id(true, true, true, 0, 1);
        assert_eq!(behind.which_broker_id, 1);
        assert!(!behind.retry_immediately);
        let closed = suggest_which_broker_id(true, false, true, 0, 1);
        assert_eq!(closed.which_broker_id, 0);
        assert!(closed.retry_immediately);
    }

    #[test]
    fn mem_total_parsing() {
        let text = "MemTotal:       24594032 kB\nMemFree:  100 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_594_032 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 5 MB\n"), None);
        assert_eq!(total_physical_memory(Some(1234)), 1234);
        assert!(total_physical_memory(None) > 0);
    }

    #[test]
    fn untouched_offsets_follow_the_master_even_backwards() {
        let applied = table(&[("T@g", 0, 10), ("T@g", 1, 20)]);
        let local = applied.clone();
        let master = table(&[("T@g", 0, 15), ("T@g", 1, 5), ("U@g", 0, 3)]);
        let mut updates = merge_offsets(&master, &local, &applied);
        updates.sort();
        assert_eq!(
            updates,
            vec![
                ("T@g".to_owned(), 0, 15),
                ("T@g".to_owned(), 1, 5),
                ("U@g".to_owned(), 0, 3),
            ]
        );
    }

    #[test]
    fn offsets_committed_on_the_slave_survive_an_older_master() {
        // The slave last took 10 from the master; its consumers then committed 50 on it while
        // the master was down; the master came back still saying 10.
        let applied = table(&[("T@g", 0, 10)]);
        let local = table(&[("T@g", 0, 50), ("T@h", 0, 7)]);
        let master = table(&[("T@g", 0, 10)]);
        assert!(merge_offsets(&master, &local, &applied).is_empty());
        // Once the master moves past the slave's value, the master wins again.
        let master = table(&[("T@g", 0, 60)]);
        assert_eq!(
            merge_offsets(&master, &local, &applied),
            vec![("T@g".to_owned(), 0, 60)]
        );
        // A restarted slave (nothing applied yet) keeps its larger values too.
        let empty = OffsetTable::default();
        assert!(merge_offsets(&table(&[("T@g", 0, 10)]), &local, &empty).is_empty());
    }

    #[test]
    fn a_kept_slave_offset_stays_kept_over_many_rounds() {
        // Round 1 after the master returns: keep 50. Round 2 sees the same master table again.
        let master = table(&[("T@g", 0, 10)]);
        let local = table(&[("T@g", 0, 50)]);
        assert!(merge_offsets(&master, &local, &master).is_empty());
        assert!(merge_offsets(&master, &local, &master).is_empty());
        // An admin reset on the master, once the slave followed it, goes backwards too.
        let followed = table(&[("T@g", 0, 60)]);
        let reset = table(&[("T@g", 0, 5)]);
        assert_eq!(
            merge_offsets(&reset, &followed, &followed),
            vec![("T@g".to_owned(), 0, 5)]
        );
    }

    #[test]
    fn equal_tables_change_nothing() {
        let t = table(&[("T@g", 0, 10)]);
        assert!(merge_offsets(&t, &t, &t).is_empty());
    }
}
