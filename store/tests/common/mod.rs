#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use ferrum_store::{FlushDiskType, MessageExtBrokerInner, MessageStoreConfig};

/// Small files so that roll-over happens every few messages, with [`ignore_host_disk`].
pub fn small_config(dir: &Path, flush: FlushDiskType) -> MessageStoreConfig {
    let mut c = MessageStoreConfig::new(dir);
    c.mapped_file_size_commit_log = 4096;
    c.consume_queue_units_per_file = 8;
    c.flush_disk_type = flush;
    c.flush_interval_commit_log = std::time::Duration::from_millis(20);
    c.max_message_size = 4000;
    ignore_host_disk(&mut c);
    c
}

/// How full the machine's disk is must not change a test's outcome: the periodic retention
/// pass measures the real disk, and with RocketMQ's thresholds a shared disk at 85 % would
/// delete files a test still reads and at 90 % refuse its writes. With these, writes are
/// refused only at 98 % and nothing is deleted because the disk is full.
pub fn ignore_host_disk(c: &mut MessageStoreConfig) {
    c.disk_space_warning_level_ratio = 98;
    c.disk_space_clean_forcibly_ratio = 97;
    c.clean_file_forcibly_enable = false;
}

/// RocketMQ's disk thresholds back (warning 90 %, forced clean from 85 %), for tests of those
/// rules; they set a ratio override, so the real disk plays no part.
pub fn with_rocketmq_disk_rules(mut c: MessageStoreConfig) -> MessageStoreConfig {
    let defaults = MessageStoreConfig::new(&c.store_path_root_dir);
    c.disk_space_warning_level_ratio = defaults.disk_space_warning_level_ratio;
    c.disk_space_clean_forcibly_ratio = defaults.disk_space_clean_forcibly_ratio;
    c.clean_file_forcibly_enable = defaults.clean_file_forcibly_enable;
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
