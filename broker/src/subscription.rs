//! `SubscriptionGroupManager` (`config/subscriptionGroup.json`) and `ConsumerOffsetManager`
//! (`config/consumerOffset.json`), in RocketMQ's file shapes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrum_protocol::route::DataVersion;
use serde::{Deserialize, Serialize};

use crate::config::BrokerConfig;
use crate::persist::{self, PersistError};
use crate::topic::now_millis;

fn yes() -> bool {
    true
}
fn one() -> i32 {
    1
}
fn one_i64() -> i64 {
    1
}
fn sixteen() -> i32 {
    16
}
fn fifteen() -> i64 {
    15
}

/// `SubscriptionGroupConfig`. Fields this broker does not interpret are kept in `extra` so an
/// admin tool's settings survive a round trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    pub group_name: String,
    #[serde(default = "yes")]
    pub consume_enable: bool,
    #[serde(default = "yes")]
    pub consume_from_min_enable: bool,
    #[serde(default = "yes")]
    pub consume_broadcast_enable: bool,
    #[serde(default = "one")]
    pub retry_queue_nums: i32,
    #[serde(default = "sixteen")]
    pub retry_max_times: i32,
    #[serde(default)]
    pub broker_id: i64,
    #[serde(default = "one_i64")]
    pub which_broker_when_consume_slowly: i64,
    #[serde(default = "yes")]
    pub notify_consumer_ids_changed_enable: bool,
    #[serde(default)]
    pub group_sys_flag: i32,
    #[serde(default = "fifteen")]
    pub consume_timeout_minute: i64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl SubscriptionGroupConfig {
    pub fn new(group_name: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            group_name: group_name.into(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            extra: BTreeMap::new(),
        }
    }
}

/// `SubscriptionGroupWrapper`: the file and the GET_ALL_SUBSCRIPTIONGROUP_CONFIG body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    #[serde(default)]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    #[serde(default)]
    pub data_version: DataVersion,
}

/// RocketMQ's built-in groups (`MixAll`), present on every broker.
const SYSTEM_GROUPS: &[&str] = &[
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "__MONITOR_CONSUMER",
    "CLIENT_INNER_PRODUCER",
    "SELF_TEST_P_GROUP",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_ONSAPI_PULL",
    "CID_RMQ_SYS_TRANS",
];

#[derive(Debug)]
pub struct SubscriptionGroupManager {
    path: PathBuf,
    state: Mutex<SubscriptionGroupWrapper>,
    auto_create: bool,
}

impl SubscriptionGroupManager {
    pub fn load(config: &BrokerConfig) -> Result<Self, PersistError> {
        let path = config.config_dir().join("subscriptionGroup.json");
        let mut state: SubscriptionGroupWrapper = persist::read_json(&path)?.unwrap_or_default();
        for group in SYSTEM_GROUPS {
            state
                .subscription_group_table
                .entry((*group).to_owned())
                .or_insert_with(|| SubscriptionGroupConfig::new(*group));
        }
        Ok(SubscriptionGroupManager {
            path,
            state: Mutex::new(state),
            auto_create: config.auto_create_subscription_group,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SubscriptionGroupWrapper> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.lock().subscription_group_table.get(group).cloned()
    }

    pub fn snapshot(&self) -> SubscriptionGroupWrapper {
        self.lock().clone()
    }

    fn save(&self, state: &mut SubscriptionGroupWrapper) -> Result<(), PersistError> {
        state.data_version.timestamp = now_millis();
        state.data_version.counter += 1;
        persist::write_json(&self.path, &*state)
    }

    /// Takes a master's whole table and data version (a slave's SlaveSynchronize), persisted
    /// before it is visible.
    pub fn replace_all(&self, wrapper: SubscriptionGroupWrapper) -> Result<(), PersistError> {
        let mut state = self.lock();
        persist::write_json(&self.path, &wrapper)?;
        *state = wrapper;
        Ok(())
    }

    pub fn data_version(&self) -> DataVersion {
        self.lock().data_version
    }

    pub fn put(&self, config: SubscriptionGroupConfig) -> Result<(), PersistError> {
        let mut state = self.lock();
        state
            .subscription_group_table
            .insert(config.group_name.clone(), config);
        self.save(&mut state)
    }

    pub fn delete(&self, group: &str) -> Result<bool, PersistError> {
        let mut state = self.lock();
        let existed = state.subscription_group_table.remove(group).is_some();
        if existed {
            self.save(&mut state)?;
        }
        Ok(existed)
    }

    /// The group's config, created with defaults when `autoCreateSubscriptionGroup` allows.
    pub fn find_or_create(
        &self,
        group: &str,
    ) -> Result<Option<SubscriptionGroupConfig>, PersistError> {
        let mut state = self.lock();
        if let Some(found) = state.subscription_group_table.get(group) {
            return Ok(Some(found.clone()));
        }
        if !self.auto_create {
            return Ok(None);
        }
        let created = SubscriptionGroupConfig::new(group);
        state
            .subscription_group_table
            .insert(group.to_owned(), created.clone());
        self.save(&mut state)?;
        Ok(Some(created))
    }
}

/// `ConsumerOffsetManager`'s file: `topic@group` → queueId → offset.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetTable {
    #[serde(default)]
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// Consumer offsets. Updates arrive every few seconds per queue per client, so they are kept in
/// memory and persisted on an interval and at shutdown rather than one fsync per update.
#[derive(Debug)]
pub struct ConsumerOffsetManager {
    path: PathBuf,
    table: Mutex<OffsetTable>,
    dirty: AtomicBool,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsetManager {
    pub fn load(config: &BrokerConfig) -> Result<Self, PersistError> {
        let path = config.config_dir().join("consumerOffset.json");
        let table = persist::read_json(&path)?.unwrap_or_default();
        Ok(ConsumerOffsetManager {
            path,
            table: Mutex::new(table),
            dirty: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OffsetTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.lock()
            .offset_table
            .get(&key(topic, group))
            .and_then(|queues| queues.get(&queue_id).copied())
    }

    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.lock()
            .offset_table
            .entry(key(topic, group))
            .or_default()
            .insert(queue_id, offset);
        self.dirty.store(true, Ordering::Release);
    }

    /// Topics `group` has offsets for (`whichTopicByConsumer`).
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        let suffix = format!("@{group}");
        self.lock()
            .offset_table
            .keys()
            .filter_map(|k| k.strip_suffix(&suffix).map(str::to_owned))
            .collect()
    }

    /// Groups with offsets for `topic` (`whichGroupByTopic`).
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        let prefix = format!("{topic}@");
        self.lock()
            .offset_table
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// A copy of the whole table (GET_ALL_CONSUMER_OFFSET).
    pub fn snapshot(&self) -> OffsetTable {
        self.lock().clone()
    }

    /// Forgets every group's offsets of `topic` (DELETE_TOPIC_IN_BROKER).
    pub fn remove_topic(&self, topic: &str) {
        let prefix = format!("{topic}@");
        self.lock()
            .offset_table
            .retain(|k, _| !k.starts_with(&prefix));
        self.dirty.store(true, Ordering::Release);
    }

    /// Forgets every offset of `group` (DELETE_SUBSCRIPTIONGROUP with cleanOffset).
    pub fn remove_group(&self, group: &str) {
        let suffix = format!("@{group}");
        self.lock()
            .offset_table
            .retain(|k, _| !k.ends_with(&suffix));
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes the table if it changed since the last write.
    pub fn persist(&self) -> Result<(), PersistError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snapshot = self.lock().clone();
        persist::write_json(&self.path, &snapshot).inspect_err(|_| {
            self.dirty.store(true, Ordering::Release);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> BrokerConfig {
        BrokerConfig {
            store_path_root_dir: dir.to_owned(),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn groups_persist_and_keep_unknown_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        let m = SubscriptionGroupManager::load(&c).expect("load");
        assert!(m.get("TOOLS_CONSUMER").is_some());
        let mut g: SubscriptionGroupConfig = serde_json::from_str(
            r#"{"groupName":"G","retryMaxTimes":3,"consumeMessageOrderly":true}"#,
        )
        .expect("json");
        assert_eq!(g.retry_queue_nums, 1);
        g.retry_queue_nums = 2;
        m.put(g).expect("put");
        assert!(m.find_or_create("auto").expect("ok").is_some());
        let m = SubscriptionGroupManager::load(&c).expect("reload");
        let g = m.get("G").expect("G");
        assert_eq!((g.retry_max_times, g.retry_queue_nums), (3, 2));
        assert_eq!(
            g.extra["consumeMessageOrderly"],
            serde_json::Value::Bool(true)
        );
        assert!(m.get("auto").is_some());
        assert!(m.delete("G").expect("delete"));
        assert!(
            SubscriptionGroupManager::load(&c)
                .expect("reload")
                .get("G")
                .is_none()
        );
    }

    #[test]
    fn no_auto_create_when_disabled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = BrokerConfig {
            auto_create_subscription_group: false,
            ..config(dir.path())
        };
        let m = SubscriptionGroupManager::load(&c).expect("load");
        assert_eq!(m.find_or_create("nope").expect("ok"), None);
    }

    #[test]
    fn offsets_round_trip_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        let m = ConsumerOffsetManager::load(&c).expect("load");
        m.commit("G", "T", 0, 5);
        m.commit("G", "T", 1, 9);
        m.commit("H", "U", 0, 1);
        m.persist().expect("persist");
        let m = ConsumerOffsetManager::load(&c).expect("reload");
        assert_eq!(m.query("G", "T", 1), Some(9));
        assert_eq!(m.query("G", "T", 2), None);
        m.remove_topic("T");
        m.remove_group("H");
        assert_eq!(m.query("G", "T", 0), None);
        assert_eq!(m.query("H", "U", 0), None);
        let text =
            std::fs::read_to_string(dir.path().join("config/consumerOffset.json")).expect("file");
        assert!(text.contains("\"T@G\""), "{text}");
    }
}
