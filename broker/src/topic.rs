//! `TopicConfigManager`: the broker's topics, persisted to `config/topics.json` in RocketMQ's
//! `TopicConfigSerializeWrapper` shape, with the system topics every broker carries.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use ferrum_protocol::route::{
    DataVersion, PERM_INHERIT, PERM_READ, PERM_WRITE, TopicConfig, TopicConfigSerializeWrapper,
};
use tokio::sync::Notify;

use crate::config::BrokerConfig;
use crate::persist::{self, PersistError};

/// `TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`.
pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
/// `TopicValidator.TOPIC_MAX_LENGTH`.
pub const TOPIC_MAX_LENGTH: usize = 127;

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why a topic name is refused; the text is the answer's remark.
pub fn validate_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("The specified topic is blank.".into());
    }
    if topic.len() > TOPIC_MAX_LENGTH {
        return Err(format!(
            "The specified topic is longer than topic max length {TOPIC_MAX_LENGTH}."
        ));
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'%' || b == b'|' || b == b'-' || b == b'_')
    {
        return Err(format!(
            "The specified topic[{topic}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    Ok(())
}

/// `TopicAttributes.ALL` of RocketMQ 5.x: name, whether an existing topic may change it, and
/// what it accepts. `reserve.time` needs a tiered store, which this broker does not have.
#[derive(Debug, Clone, Copy)]
struct AttributeSpec {
    name: &'static str,
    changeable: bool,
    values: &'static [&'static str],
}

const TOPIC_ATTRIBUTES: &[AttributeSpec] = &[
    AttributeSpec {
        name: "queue.type",
        changeable: false,
        values: &["BatchCQ", "SimpleCQ"],
    },
    AttributeSpec {
        name: "cleanup.policy",
        changeable: false,
        values: &["DELETE", "COMPACTION"],
    },
    AttributeSpec {
        name: "message.type",
        changeable: true,
        values: &[
            "UNSPECIFIED",
            "NORMAL",
            "FIFO",
            "DELAY",
            "TRANSACTION",
            "MIXED",
        ],
    },
    AttributeSpec {
        name: "reserve.time",
        changeable: true,
        values: &[],
    },
];

/// `TopicAttributes.TOPIC_MESSAGE_TYPE_ATTRIBUTE`'s name.
pub const MESSAGE_TYPE_ATTRIBUTE: &str = "message.type";

/// `AttributeParser.parseToMap`: `+key=value,+key2=value2,-key3` into a map whose keys keep
/// their sign. The text of an error is RocketMQ's remark.
pub fn parse_attribute_modification(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut attributes = BTreeMap::new();
    if text.is_empty() {
        return Ok(attributes);
    }
    for kv in text.split(',') {
        let (key, value) = match kv.split_once('=') {
            Some((key, value)) => {
                // Java fails on `+k=` (no value) while parsing; a clear remark instead.
                let value = value.split('=').next().unwrap_or_default();
                if value.is_empty() {
                    return Err(format!("add/alter attribute format is wrong: {key}"));
                }
                if !key.contains('+') {
                    return Err(format!("add/alter attribute format is wrong: {key}"));
                }
                (key, value)
            }
            None => {
                if !kv.contains('-') {
                    return Err(format!("delete attribute format is wrong: {kv}"));
                }
                (kv, "")
            }
        };
        if attributes
            .insert(key.to_owned(), value.to_owned())
            .is_some()
        {
            return Err(format!("key duplication: {key}"));
        }
    }
    Ok(attributes)
}

/// `AttributeUtil.alterCurrentAttributes` over [`TOPIC_ATTRIBUTES`]: applies a parsed
/// modification to a topic's stored attributes (stored keys carry no sign). On creation only
/// `+key` is allowed; unchangeable attributes are settable only then.
pub fn alter_attributes(
    create: bool,
    current: &BTreeMap<String, String>,
    modification: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut result = current.clone();
    let mut deletes = Vec::new();
    let mut sets = Vec::new();
    for (key, value) in modification {
        let mut chars = key.chars();
        let sign = chars.next();
        let real = chars.as_str();
        if real.is_empty() || real.contains('+') || real.contains('-') {
            return Err("kv string format wrong.".into());
        }
        match sign {
            Some('+') => sets.push((real, value)),
            Some('-') if !create => {
                if !current.contains_key(real) {
                    return Err(format!("attempt to delete a nonexistent key: {real}"));
                }
                deletes.push(real);
            }
            _ if create => {
                return Err(format!(
                    "only add attribute is supported while creating topic. key: {real}"
                ));
            }
            _ => return Err(format!("wrong format key: {real}")),
        }
    }
    for (real, value) in &sets {
        let spec = attribute_spec(real)?;
        if !create && !spec.changeable {
            return Err(format!(
                "attempt to update an unchangeable attribute. key: {real}"
            ));
        }
        verify_attribute(spec, value)?;
    }
    for real in &deletes {
        let spec = attribute_spec(real)?;
        if !spec.changeable {
            return Err(format!(
                "attempt to update an unchangeable attribute. key: {real}"
            ));
        }
    }
    for (real, value) in sets {
        result.insert(real.to_owned(), value.clone());
    }
    for real in deletes {
        result.remove(real);
    }
    Ok(result)
}

fn attribute_spec(key: &str) -> Result<&'static AttributeSpec, String> {
    TOPIC_ATTRIBUTES
        .iter()
        .find(|a| a.name == key)
        .ok_or_else(|| format!("unsupported key: {key}"))
}

fn verify_attribute(spec: &AttributeSpec, value: &str) -> Result<(), String> {
    if spec.name == "reserve.time" {
        // RocketMQ accepts it only with its tiered store; the default store refuses it.
        return Err("Update topic reserveTime not supported".into());
    }
    if spec.values.contains(&value) {
        return Ok(());
    }
    let mut set: Vec<&str> = spec.values.to_vec();
    set.sort_unstable();
    Err(format!("value is not in set: [{}]", set.join(", ")))
}

/// Outcome of [`TopicConfigManager::create_from_default`].
#[derive(Debug, Clone, PartialEq)]
pub enum AutoCreate {
    Existing(TopicConfig),
    Created(TopicConfig),
    Refused(String),
}

#[derive(Debug)]
pub struct TopicConfigManager {
    path: PathBuf,
    state: RwLock<TopicConfigSerializeWrapper>,
    /// Woken on every change so registration runs at once.
    pub changed: Notify,
    auto_create: bool,
}

impl TopicConfigManager {
    /// Loads topics.json (if any) and adds the system topics.
    pub fn load(config: &BrokerConfig) -> Result<Self, PersistError> {
        let path = config.config_dir().join("topics.json");
        let mut state: TopicConfigSerializeWrapper = persist::read_json(&path)?.unwrap_or_default();
        let mut system = vec![
            TopicConfig {
                perm: PERM_INHERIT | PERM_READ | PERM_WRITE,
                ..TopicConfig::new(AUTO_CREATE_TOPIC_KEY_TOPIC, config.default_topic_queue_nums)
            },
            TopicConfig::new(SELF_TEST_TOPIC, 1),
            TopicConfig::new(SCHEDULE_TOPIC, 18),
            TopicConfig::new(OFFSET_MOVED_EVENT, 1),
            TopicConfig::new(TRANS_HALF_TOPIC, 1),
            TopicConfig {
                perm: config.broker_permission,
                ..TopicConfig::new(config.broker_name.clone(), 1)
            },
        ];
        system.push(TopicConfig {
            perm: PERM_INHERIT | config.broker_permission,
            ..TopicConfig::new(config.broker_cluster_name.clone(), 16)
        });
        if !config.auto_create_topic_enable {
            // Without auto-create TBW102 must not invite clients to create topics.
            system[0].perm = PERM_READ | PERM_WRITE;
        }
        for topic in system {
            state
                .topic_config_table
                .insert(topic.topic_name.clone(), topic);
        }
        if state.data_version.timestamp == 0 {
            state.data_version.timestamp = now_millis();
        }
        Ok(TopicConfigManager {
            path,
            state: RwLock::new(state),
            changed: Notify::new(),
            auto_create: config.auto_create_topic_enable,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, TopicConfigSerializeWrapper> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.read().topic_config_table.get(topic).cloned()
    }

    /// A copy of the table and its version, for GET_ALL_TOPIC_CONFIG and registration.
    pub fn snapshot(&self) -> TopicConfigSerializeWrapper {
        self.read().clone()
    }

    pub fn data_version(&self) -> DataVersion {
        self.read().data_version
    }

    pub fn len(&self) -> usize {
        self.read().topic_config_table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies `change` under the write lock, bumps the data version, persists and notifies.
    fn mutate<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, TopicConfig>) -> (bool, R),
    ) -> Result<R, PersistError> {
        let (changed, result) = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            let (changed, result) = change(&mut state.topic_config_table);
            if changed {
                state.data_version.timestamp = now_millis();
                state.data_version.counter += 1;
                persist::write_json(&self.path, &*state)?;
            }
            (changed, result)
        };
        if changed {
            self.changed.notify_one();
        }
        Ok(result)
    }

    /// Takes a master's whole table and data version (a slave's SlaveSynchronize), persisted
    /// before it is visible; notifies so the slave re-registers with it.
    pub fn replace_all(&self, wrapper: TopicConfigSerializeWrapper) -> Result<(), PersistError> {
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            persist::write_json(&self.path, &wrapper)?;
            *state = wrapper;
        }
        self.changed.notify_one();
        Ok(())
    }

    /// Creates or replaces a topic (UPDATE_AND_CREATE_TOPIC).
    pub fn put(&self, topic: TopicConfig) -> Result<(), PersistError> {
        self.mutate(|table| {
            let changed = table.get(&topic.topic_name) != Some(&topic);
            table.insert(topic.topic_name.clone(), topic);
            (changed, ())
        })
    }

    /// UPDATE_AND_CREATE_TOPIC with RocketMQ 5.x attributes: `topic.attributes` is ignored and
    /// the stored attributes become the current ones (none when creating) altered by
    /// `modification` (already parsed, keys with their sign). `Ok(Err(remark))` when the
    /// modification is refused; nothing changes then.
    pub fn update_with_attributes(
        &self,
        mut topic: TopicConfig,
        modification: &BTreeMap<String, String>,
    ) -> Result<Result<(), String>, PersistError> {
        self.mutate(move |table| {
            let current = table.get(&topic.topic_name);
            let attributes = match alter_attributes(
                current.is_none(),
                &current.map(|t| t.attributes.clone()).unwrap_or_default(),
                modification,
            ) {
                Ok(a) => a,
                Err(remark) => return (false, Err(remark)),
            };
            topic.attributes = attributes;
            let changed = current != Some(&topic);
            table.insert(topic.topic_name.clone(), topic);
            (changed, Ok(()))
        })
    }

    /// Deletes a topic; returns whether it existed.
    pub fn delete(&self, topic: &str) -> Result<bool, PersistError> {
        self.mutate(|table| {
            let existed = table.remove(topic).is_some();
            (existed, existed)
        })
    }

    /// Creates `%RETRY%group` (or any internal topic) if absent, with the given queues and perm.
    pub fn create_if_absent(
        &self,
        topic: &str,
        queues: i32,
        perm: i32,
    ) -> Result<TopicConfig, PersistError> {
        if let Some(existing) = self.get(topic) {
            return Ok(existing);
        }
        self.mutate(|table| {
            if let Some(existing) = table.get(topic) {
                return (false, existing.clone());
            }
            let created = TopicConfig {
                perm,
                ..TopicConfig::new(topic, queues)
            };
            table.insert(topic.to_owned(), created.clone());
            (true, created)
        })
    }

    /// The send path's auto-create (`createTopicInSendMessageMethod`): an unknown topic is made
    /// from `default_topic` when auto-create is on and the default topic carries PERM_INHERIT.
    pub fn create_from_default(
        &self,
        topic: &str,
        default_topic: &str,
        requested_queues: i32,
    ) -> Result<AutoCreate, PersistError> {
        if let Some(existing) = self.get(topic) {
            return Ok(AutoCreate::Existing(existing));
        }
        if let Err(remark) = validate_topic_name(topic) {
            return Ok(AutoCreate::Refused(remark));
        }
        let Some(template) = self.get(default_topic).filter(|_| self.auto_create) else {
            return Ok(AutoCreate::Refused(format!(
                "topic[{topic}] not exist, apply first please!"
            )));
        };
        if template.perm & PERM_INHERIT == 0 {
            return Ok(AutoCreate::Refused(format!(
                "the default topic[{default_topic}] has no permission to inherit; topic[{topic}] not exist, apply first please!"
            )));
        }
        let queues = if requested_queues <= 0 {
            template.write_queue_nums
        } else {
            requested_queues.min(template.write_queue_nums)
        }
        .max(1);
        let created = TopicConfig {
            perm: template.perm & !PERM_INHERIT,
            topic_sys_flag: template.topic_sys_flag,
            ..TopicConfig::new(topic, queues)
        };
        let topic_owned = topic.to_owned();
        self.mutate(move |table| {
            if let Some(existing) = table.get(&topic_owned) {
                return (false, AutoCreate::Existing(existing.clone()));
            }
            table.insert(topic_owned, created.clone());
            (true, AutoCreate::Created(created))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> BrokerConfig {
        BrokerConfig {
            store_path_root_dir: dir.to_owned(),
            broker_name: "broker-x".into(),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn system_topics_and_persistence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        let m = TopicConfigManager::load(&c).expect("load");
        let tbw = m.get(AUTO_CREATE_TOPIC_KEY_TOPIC).expect("TBW102");
        assert_ne!(tbw.perm & PERM_INHERIT, 0);
        assert!(m.get("broker-x").is_some());
        assert!(m.get("DefaultCluster").is_some());
        assert!(m.get(SELF_TEST_TOPIC).is_some());
        let before = m.data_version();
        m.put(TopicConfig::new("Orders", 8)).expect("put");
        assert!(m.data_version().counter > before.counter);
        let reloaded = TopicConfigManager::load(&c).expect("reload");
        assert_eq!(reloaded.get("Orders").map(|t| t.write_queue_nums), Some(8));
        assert!(reloaded.delete("Orders").expect("delete"));
        assert!(!reloaded.delete("Orders").expect("delete"));
        assert!(
            TopicConfigManager::load(&c)
                .expect("reload")
                .get("Orders")
                .is_none()
        );
    }

    #[test]
    fn auto_create_from_tbw102() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config(dir.path());
        let m = TopicConfigManager::load(&c).expect("load");
        match m.create_from_default("NewTopic", "TBW102", 4).expect("ok") {
            AutoCreate::Created(t) => {
                assert_eq!(t.write_queue_nums, 4);
                assert_eq!(t.perm & PERM_INHERIT, 0);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            m.create_from_default("NewTopic", "TBW102", 4),
            Ok(AutoCreate::Existing(_))
        ));
        assert!(matches!(
            m.create_from_default("bad topic", "TBW102", 4),
            Ok(AutoCreate::Refused(_))
        ));
        c.auto_create_topic_enable = false;
        let dir2 = tempfile::tempdir().expect("tempdir");
        c.store_path_root_dir = dir2.path().to_owned();
        let off = TopicConfigManager::load(&c).expect("load");
        assert!(matches!(
            off.create_from_default("Other", "TBW102", 4),
            Ok(AutoCreate::Refused(r)) if r.contains("not exist")
        ));
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn attribute_modifications_parse_as_rocketmq_does() {
        assert_eq!(
            parse_attribute_modification("+message.type=FIFO,-cleanup.policy"),
            Ok(attrs(&[("+message.type", "FIFO"), ("-cleanup.policy", "")]))
        );
        assert_eq!(parse_attribute_modification(""), Ok(BTreeMap::new()));
        assert!(parse_attribute_modification("message.type=FIFO").is_err());
        assert!(parse_attribute_modification("message.type").is_err());
        assert!(parse_attribute_modification("+a=1,+a=2").is_err());
        assert!(parse_attribute_modification("+a=").is_err());
    }

    #[test]
    fn attributes_are_validated_against_topic_attributes() {
        let none = BTreeMap::new();
        let created = alter_attributes(
            true,
            &none,
            &attrs(&[("+message.type", "FIFO"), ("+queue.type", "SimpleCQ")]),
        )
        .expect("create");
        assert_eq!(
            created,
            attrs(&[("message.type", "FIFO"), ("queue.type", "SimpleCQ")])
        );
        let err = |r: Result<BTreeMap<String, String>, String>| r.expect_err("refused");
        assert_eq!(
            err(alter_attributes(true, &none, &attrs(&[("+color", "red")]))),
            "unsupported key: color"
        );
        assert_eq!(
            err(alter_attributes(
                true,
                &none,
                &attrs(&[("+message.type", "URGENT")])
            )),
            "value is not in set: [DELAY, FIFO, MIXED, NORMAL, TRANSACTION, UNSPECIFIED]"
        );
        assert!(
            err(alter_attributes(
                true,
                &none,
                &attrs(&[("-message.type", "")])
            ))
            .starts_with("only add attribute")
        );
        // Updating: message.type may change or go; queue.type is fixed at creation.
        let updated = alter_attributes(false, &created, &attrs(&[("+message.type", "DELAY")]))
            .expect("update");
        assert_eq!(
            updated.get("message.type").map(String::as_str),
            Some("DELAY")
        );
        let removed =
            alter_attributes(false, &created, &attrs(&[("-message.type", "")])).expect("delete");
        assert!(!removed.contains_key("message.type"));
        assert!(
            err(alter_attributes(
                false,
                &created,
                &attrs(&[("+queue.type", "SimpleCQ")])
            ))
            .starts_with("attempt to update an unchangeable attribute")
        );
        assert!(
            err(alter_attributes(
                false,
                &none,
                &attrs(&[("-message.type", "")])
            ))
            .starts_with("attempt to delete a nonexistent key")
        );
        assert_eq!(
            alter_attributes(false, &created, &BTreeMap::new()),
            Ok(created.clone())
        );
    }

    #[test]
    fn attributes_persist_and_survive_updates_without_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        let m = TopicConfigManager::load(&c).expect("load");
        m.update_with_attributes(
            TopicConfig::new("Fifo", 4),
            &attrs(&[("+message.type", "FIFO")]),
        )
        .expect("persist")
        .expect("accepted");
        let refused = m
            .update_with_attributes(TopicConfig::new("Fifo", 4), &attrs(&[("+x", "1")]))
            .expect("persist");
        assert_eq!(refused, Err("unsupported key: x".into()));
        // An update that names no attributes keeps the stored ones, as in RocketMQ.
        m.update_with_attributes(TopicConfig::new("Fifo", 8), &BTreeMap::new())
            .expect("persist")
            .expect("accepted");
        let reloaded = TopicConfigManager::load(&c).expect("reload");
        let t = reloaded.get("Fifo").expect("topic");
        assert_eq!(t.write_queue_nums, 8);
        assert_eq!(t.attributes, attrs(&[("message.type", "FIFO")]));
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("%RETRY%group-1_a|b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(128)).is_err());
    }
}
