//! What a producer sends and what a send returns.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrum_protocol::message::property;

/// A message to send. Topic and queue are chosen at send time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub body: Bytes,
    /// The user flag, stored as is.
    pub flag: i32,
    /// User and system properties; tags and keys live here under `TAGS` / `KEYS`.
    pub properties: BTreeMap<String, String>,
}

impl Message {
    pub fn new(body: impl Into<Bytes>) -> Self {
        Message {
            body: body.into(),
            ..Default::default()
        }
    }

    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.properties
            .insert(property::TAGS.to_owned(), tags.into());
        self
    }

    /// Keys are indexed by the broker for QUERY_MESSAGE; RocketMQ joins them with spaces.
    pub fn with_keys<S: AsRef<str>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        let joined: Vec<String> = keys.into_iter().map(|k| k.as_ref().to_owned()).collect();
        if !joined.is_empty() {
            self.properties.insert(
                property::KEYS.to_owned(),
                joined.join(property::KEY_SEPARATOR),
            );
        }
        self
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// RocketMQ delay level 1..=18 (1s 5s 10s 30s 1m ... 2h).
    pub fn with_delay_level(self, level: u8) -> Self {
        self.with_property(property::DELAY_TIME_LEVEL, level.to_string())
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.get(property::TAGS).map(String::as_str)
    }
}

/// A queue of a topic on one broker group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

impl fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.topic, self.broker_name, self.queue_id)
    }
}

/// How the broker stored a sent message (`SendStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    SendOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

impl SendStatus {
    /// The status for a send answer code, `None` for codes that mean failure.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(SendStatus::SendOk),
            10 => Some(SendStatus::FlushDiskTimeout),
            11 => Some(SendStatus::SlaveNotAvailable),
            12 => Some(SendStatus::FlushSlaveTimeout),
            _ => None,
        }
    }
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// The broker's offset message id (store host + commit-log offset); `,`-joined for a batch.
    pub msg_id: String,
    /// The client-side unique id (`UNIQ_KEY`).
    pub unique_id: String,
    pub queue: MessageQueue,
    pub queue_offset: i64,
    pub broker_addr: String,
}

/// A 32-hex-digit id unique to this process and message, like RocketMQ's `UNIQ_KEY`.
pub fn new_unique_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:08X}{:08X}{:08X}{:08X}",
        std::process::id(),
        (start ^ (start >> 32)) as u32,
        now_ms as u32,
        count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_rocketmq_properties() {
        let m = Message::new("x").with_tags("TagA").with_keys(["k1", "k2"]);
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(m.properties.get("KEYS").map(String::as_str), Some("k1 k2"));
    }

    #[test]
    fn unique_ids_differ_and_have_32_hex_digits() {
        let a = new_unique_id();
        let b = new_unique_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
