#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use ferrum_store::{FlushDiskType, MessageExtBrokerInner, MessageStoreConfig};

/// Small files so that roll-over happens every few messages.
pub fn small_config(dir: &Path, flush: FlushDiskType) -> MessageStoreConfig {
    let mut c = MessageStoreConfig::new(dir);
    c.mapped_file_size_commit_log = 4096;
    c.consume_queue_units_per_file = 8;
    c.flush_disk_type = flush;
    c.flush_interval_commit_log = std::time::Duration::from_millis(20);
    c.max_message_size = 4000;
    c
}

pub fn msg(
    topic: &str,
    queue_id: i32,
    body: &[u8],
    tags: Option<&str>,
    keys: Option<&str>,
) -> MessageExtBrokerInner {
    let mut properties = BTreeMap::new();
    if let Some(t) = tags {
        properties.insert("TAGS".to_owned(), t.to_owned());
    }
    if let Some(k) = keys {
        properties.insert("KEYS".to_owned(), k.to_owned());
    }
    MessageExtBrokerInner {
        topic: topic.to_owned(),
        queue_id,
        born_timestamp: 1,
        body: Bytes::copy_from_slice(body),
        properties,
        ..Default::default()
    }
}
