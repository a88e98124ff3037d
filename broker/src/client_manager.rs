//! Who is connected: producer and consumer groups by channel (`ProducerManager`,
//! `ConsumerManager`) and the orderly consumers' queue locks (`RebalanceLockManager`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::server::Channel;

/// `RebalanceLockManager.REBALANCE_LOCK_MAX_LIVE_TIME`.
pub const LOCK_MAX_LIVE_TIME: Duration = Duration::from_secs(60);
/// `ClientHousekeepingService`: a client silent this long is dropped.
pub const CHANNEL_EXPIRED_TIMEOUT: Duration = Duration::from_secs(120);

/// `HeartbeatData`, the body of HEART_BEAT.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(default)]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(default)]
    pub consumer_data_set: Vec<ConsumerData>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    pub group_name: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    pub group_name: String,
    #[serde(default)]
    pub consume_type: Option<String>,
    #[serde(default)]
    pub message_model: Option<String>,
    #[serde(default)]
    pub consume_from_where: Option<String>,
    /// Kept as JSON: the broker passes subscriptions through to admin queries untouched.
    #[serde(default)]
    pub subscription_data_set: Vec<serde_json::Value>,
    #[serde(default)]
    pub unit_mode: bool,
}

impl ConsumerData {
    /// The topics the group subscribes to.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.subscription_data_set
            .iter()
            .filter_map(|s| s.get("topic").and_then(serde_json::Value::as_str))
    }
}

/// `MessageQueue` as LOCK_BATCH_MQ carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

/// `LockBatchRequestBody` / `UnlockBatchRequestBody`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    #[serde(default)]
    pub consumer_group: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub only_this_broker: bool,
    #[serde(default)]
    pub mq_set: BTreeSet<MessageQueue>,
}

/// `LockBatchResponseBody`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

#[derive(Debug, Clone)]
struct ClientChannel {
    client_id: String,
    language: String,
    version: i32,
    last_update: Instant,
    channel: Channel,
}

/// Who sent a heartbeat: its client id and the language and version of its request.
#[derive(Debug, Clone, Copy)]
pub struct ClientMeta<'a> {
    pub client_id: &'a str,
    pub language: &'a str,
    pub version: i32,
}

/// One consumer connection as GET_CONSUMER_CONNECTION_LIST reports it (`Connection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    pub client_id: String,
    pub client_addr: String,
    pub language: String,
    pub version: i32,
}

#[derive(Debug, Default)]
struct ConsumerGroup {
    data: ConsumerData,
    channels: BTreeMap<u64, ClientChannel>,
}

#[derive(Debug, Default)]
struct Tables {
    producers: HashMap<String, BTreeMap<u64, ClientChannel>>,
    consumers: HashMap<String, ConsumerGroup>,
}

/// Producer and consumer groups by connection.
#[derive(Debug, Default)]
pub struct ClientManager {
    tables: Mutex<Tables>,
}

impl ClientManager {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register_producer(
        &self,
        group: &str,
        meta: ClientMeta<'_>,
        channel: &Channel,
        now: Instant,
    ) {
        self.lock()
            .producers
            .entry(group.to_owned())
            .or_default()
            .insert(
                channel.id,
                ClientChannel {
                    client_id: meta.client_id.to_owned(),
                    language: meta.language.to_owned(),
                    version: meta.version,
                    last_update: now,
                    channel: channel.clone(),
                },
            );
    }

    /// Records a consumer's heartbeat; true when the group's membership changed.
    pub fn register_consumer(
        &self,
        data: &ConsumerData,
        meta: ClientMeta<'_>,
        channel: &Channel,
        now: Instant,
    ) -> bool {
        let client_id = meta.client_id;
        let mut tables = self.lock();
        let group = tables.consumers.entry(data.group_name.clone()).or_default();
        group.data = data.clone();
        let previous = group.channels.insert(
            channel.id,
            ClientChannel {
                client_id: client_id.to_owned(),
                language: meta.language.to_owned(),
                version: meta.version,
                last_update: now,
                channel: channel.clone(),
            },
        );
        previous.is_none_or(|p| p.client_id != client_id)
    }

    pub fn unregister_producer(&self, group: &str, channel_id: u64) {
        let mut tables = self.lock();
        if let Some(channels) = tables.producers.get_mut(group) {
            channels.remove(&channel_id);
            if channels.is_empty() {
                tables.producers.remove(group);
            }
        }
    }

    /// Removes a consumer; true when it was a member.
    pub fn unregister_consumer(&self, group: &str, channel_id: u64) -> bool {
        let mut tables = self.lock();
        let Some(info) = tables.consumers.get_mut(group) else {
            return false;
        };
        let removed = info.channels.remove(&channel_id).is_some();
        if info.channels.is_empty() {
            tables.consumers.remove(group);
        }
        removed
    }

    /// Forgets a closed (or expired) connection; returns the consumer groups that lost a member.
    pub fn channel_gone(&self, channel_id: u64) -> Vec<String> {
        let mut tables = self.lock();
        tables.producers.retain(|_, channels| {
            channels.remove(&channel_id);
            !channels.is_empty()
        });
        let mut changed = Vec::new();
        tables.consumers.retain(|group, info| {
            if info.channels.remove(&channel_id).is_some() {
                changed.push(group.clone());
            }
            !info.channels.is_empty()
        });
        changed
    }

    /// Drops clients silent for longer than `timeout`; returns the consumer groups that changed.
    pub fn scan_expired(&self, now: Instant, timeout: Duration) -> Vec<String> {
        let expired: BTreeSet<u64> = {
            let tables = self.lock();
            let producers = tables.producers.values().flat_map(|c| c.values());
            let consumers = tables.consumers.values().flat_map(|g| g.channels.values());
            producers
                .chain(consumers)
                .filter(|c| now.saturating_duration_since(c.last_update) > timeout)
                .map(|c| c.channel.id)
                .collect()
        };
        let mut changed = BTreeSet::new();
        for id in expired {
            changed.extend(self.channel_gone(id));
        }
        changed.into_iter().collect()
    }

    /// Client ids of the group's consumers, `None` when the group has none online.
    pub fn consumer_ids(&self, group: &str) -> Option<Vec<String>> {
        self.lock().consumers.get(group).map(|info| {
            info.channels
                .values()
                .map(|c| c.client_id.clone())
                .collect()
        })
    }

    /// Live channels of the group's producers, for CHECK_TRANSACTION_STATE.
    pub fn producer_channels(&self, group: &str) -> Vec<Channel> {
        self.lock()
            .producers
            .get(group)
            .map(|channels| {
                channels
                    .values()
                    .filter(|c| !c.channel.is_closed())
                    .map(|c| c.channel.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Channels of the group's consumers, for NOTIFY_CONSUMER_IDS_CHANGED.
    pub fn consumer_channels(&self, group: &str) -> Vec<Channel> {
        self.lock()
            .consumers
            .get(group)
            .map(|info| info.channels.values().map(|c| c.channel.clone()).collect())
            .unwrap_or_default()
    }

    /// The group's consumer connections, `None` when it has none online.
    pub fn consumer_connections(&self, group: &str) -> Option<(ConsumerData, Vec<ConnectionInfo>)> {
        let tables = self.lock();
        let info = tables.consumers.get(group)?;
        let connections = info
            .channels
            .values()
            .map(|c| ConnectionInfo {
                client_id: c.client_id.clone(),
                client_addr: c.channel.remote.to_string(),
                language: c.language.clone(),
                version: c.version,
            })
            .collect();
        Some((info.data.clone(), connections))
    }

    /// Online consumer groups subscribing to `topic`.
    pub fn groups_subscribing(&self, topic: &str) -> Vec<String> {
        self.lock()
            .consumers
            .iter()
            .filter(|(_, g)| g.data.topics().any(|t| t == topic))
            .map(|(name, _)| name.clone())
            .collect()
    }

    pub fn consumer_data(&self, group: &str) -> Option<ConsumerData> {
        self.lock().consumers.get(group).map(|g| g.data.clone())
    }

    pub fn producer_group_count(&self) -> usize {
        self.lock().producers.len()
    }
}

#[derive(Debug, Clone)]
struct LockEntry {
    client_id: String,
    last_update: Instant,
}

/// Orderly consumers' queue locks: one client per queue per group, expiring after 60 s unless
/// renewed.
#[derive(Debug, Default)]
pub struct RebalanceLockManager {
    table: Mutex<HashMap<String, HashMap<MessageQueue, LockEntry>>>,
}

impl RebalanceLockManager {
    /// Locks what it can for `client_id`; returns the queues it now holds.
    pub fn try_lock_batch(
        &self,
        group: &str,
        mqs: &BTreeSet<MessageQueue>,
        client_id: &str,
        now: Instant,
    ) -> BTreeSet<MessageQueue> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let locks = table.entry(group.to_owned()).or_default();
        let mut ok = BTreeSet::new();
        for mq in mqs {
            let free = match locks.get(mq) {
                None => true,
                Some(entry) => {
                    entry.client_id == client_id
                        || now.saturating_duration_since(entry.last_update) > LOCK_MAX_LIVE_TIME
                }
            };
            if free {
                locks.insert(
                    mq.clone(),
                    LockEntry {
                        client_id: client_id.to_owned(),
                        last_update: now,
                    },
                );
                ok.insert(mq.clone());
            }
        }
        ok
    }

    /// Releases the queues `client_id` holds; others' locks are left alone.
    pub fn unlock_batch(&self, group: &str, mqs: &BTreeSet<MessageQueue>, client_id: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(locks) = table.get_mut(group) {
            for mq in mqs {
                if locks.get(mq).is_some_and(|e| e.client_id == client_id) {
                    locks.remove(mq);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(id: i32) -> MessageQueue {
        MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: id,
        }
    }

    fn consumer(group: &str, topic: &str) -> ConsumerData {
        ConsumerData {
            group_name: group.into(),
            subscription_data_set: vec![serde_json::json!({"topic": topic, "subString": "*"})],
            ..Default::default()
        }
    }

    fn meta(client_id: &str) -> ClientMeta<'_> {
        ClientMeta {
            client_id,
            language: "JAVA",
            version: 479,
        }
    }

    #[test]
    fn group_membership_changes_are_reported() {
        let m = ClientManager::default();
        let (a, b) = (Channel::detached(1), Channel::detached(2));
        let t0 = Instant::now();
        assert!(m.register_consumer(&consumer("G", "T"), meta("a"), &a, t0));
        assert!(
            !m.register_consumer(&consumer("G", "T"), meta("a"), &a, t0),
            "renewal"
        );
        assert!(m.register_consumer(&consumer("G", "T"), meta("b"), &b, t0));
        m.register_producer("P", meta("a"), &a, t0);
        assert_eq!(m.consumer_ids("G").map(|ids| ids.len()), Some(2));
        assert_eq!(m.groups_subscribing("T"), vec!["G".to_owned()]);
        let (_, connections) = m.consumer_connections("G").expect("online");
        assert_eq!(connections[0].language, "JAVA");

        assert_eq!(m.channel_gone(1), vec!["G".to_owned()]);
        assert_eq!(m.producer_group_count(), 0);
        assert_eq!(m.consumer_ids("G"), Some(vec!["b".to_owned()]));

        // b goes silent: after the expiry it is dropped and the group reported.
        let later = t0 + CHANNEL_EXPIRED_TIMEOUT + Duration::from_secs(1);
        assert!(m.scan_expired(t0, CHANNEL_EXPIRED_TIMEOUT).is_empty());
        assert_eq!(
            m.scan_expired(later, CHANNEL_EXPIRED_TIMEOUT),
            vec!["G".to_owned()]
        );
        assert_eq!(m.consumer_ids("G"), None);
        assert!(!m.unregister_consumer("G", 2));
    }

    #[test]
    fn locks_are_exclusive_until_they_expire() {
        let m = RebalanceLockManager::default();
        let t0 = Instant::now();
        let set: BTreeSet<_> = [mq(0), mq(1)].into();
        assert_eq!(m.try_lock_batch("G", &set, "c1", t0), set);
        assert!(m.try_lock_batch("G", &set, "c2", t0).is_empty());
        assert_eq!(m.try_lock_batch("G", &set, "c1", t0), set, "renewal");
        let later = t0 + LOCK_MAX_LIVE_TIME + Duration::from_secs(1);
        assert_eq!(m.try_lock_batch("G", &[mq(0)].into(), "c2", later).len(), 1);
        m.unlock_batch("G", &set, "c1");
        assert!(
            m.try_lock_batch("G", &[mq(0)].into(), "c1", later)
                .is_empty()
        );
        assert_eq!(m.try_lock_batch("G", &[mq(1)].into(), "c3", later).len(), 1);
    }

    #[test]
    fn heartbeat_body_from_a_java_client() {
        let body = br#"{"clientID":"10.0.0.1@123","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"G","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1,"tagsSet":[],"topic":"T"}],"unitMode":false}],"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}]}"#;
        let data: HeartbeatData = serde_json::from_slice(body).expect("json");
        assert_eq!(data.client_id, "10.0.0.1@123");
        assert_eq!(
            data.consumer_data_set[0].topics().collect::<Vec<_>>(),
            ["T"]
        );
        let lock: LockBatchRequestBody = serde_json::from_str(
            r#"{"consumerGroup":"G","clientId":"c","onlyThisBroker":false,"mqSet":[{"topic":"T","brokerName":"b","queueId":0}]}"#,
        )
        .expect("json");
        assert!(lock.mq_set.contains(&mq(0)));
        let answer = serde_json::to_string(&LockBatchResponseBody {
            lock_ok_mq_set: lock.mq_set,
        })
        .expect("json");
        assert!(
            answer.starts_with(r#"{"lockOKMQSet":[{"topic":"T""#),
            "{answer}"
        );
    }
}
