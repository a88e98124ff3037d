//! Append throughput with the key index on or off, and query-by-key latency.
//!
//! `index_bench <dir> <messages> <on|off>` appends `messages` 1 KiB messages (async flush, one
//! writer), each with a UNIQ_KEY as a Java client sets it, then with the index on queries
//! random keys. Prints one line:
//! `index=<on|off> append_msgs_s=<x> append_mib_s=<y> query_hit_us_avg=… query_hit_us_p99=…
//! query_miss_us_avg=… index_disk_mib=…`. The append figure includes the final fsync.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use ferrum_store::{FlushDiskType, MessageExtBrokerInner, MessageStore, MessageStoreConfig};

fn uniq_key(i: usize) -> String {
    // The shape of a client message id: 32 upper-case hex digits.
    format!("7F00000100002A9F0000{i:012X}")
}

/// Allocated bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, messages, mode] = &args[..] else {
        return Err("usage: index_bench <dir> <messages> <on|off>".into());
    };
    let count: usize = messages.parse()?;
    let mut cfg = MessageStoreConfig::new(dir);
    cfg.mapped_file_size_commit_log = 256 * 1024 * 1024;
    cfg.flush_disk_type = FlushDiskType::AsyncFlush;
    cfg.message_index_enable = match mode.as_str() {
        "on" => true,
        "off" => false,
        other => return Err(format!("expected on or off, not {other}").into()),
    };
    let store = MessageStore::open(cfg)?;
    let body = Bytes::from(vec![b'x'; 1024]);
    let started = Instant::now();
    for i in 0..count {
        let r = store.put_messages_blocking(vec![MessageExtBrokerInner {
            topic: "Bench".into(),
            queue_id: (i % 4) as i32,
            body: body.clone(),
            properties: BTreeMap::from([("UNIQ_KEY".to_owned(), uniq_key(i))]),
            ..Default::default()
        }]);
        if r.append.is_none() {
            return Err(format!("put {i}: {r:?}").into());
        }
    }
    let bytes = store.max_phy_offset() as f64;
    store.shutdown()?;
    let secs = started.elapsed().as_secs_f64();
    drop(store);

    let mut cfg = MessageStoreConfig::new(dir);
    cfg.mapped_file_size_commit_log = 256 * 1024 * 1024;
    cfg.message_index_enable = mode == "on";
    let store = MessageStore::open(cfg)?;
    let mut hit_us = Vec::new();
    let mut miss_us = Vec::new();
    if mode == "on" {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000.min(count * 2) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % count as u64) as usize;
            let t = Instant::now();
            let found = store.query_message_by_key("Bench", &uniq_key(i), 32, 0, i64::MAX);
            hit_us.push(t.elapsed().as_secs_f64() * 1e6);
            if found.len() != 1 {
                return Err(format!("key {i}: {} records", found.len()).into());
            }
            let t = Instant::now();
            let missing =
                store.query_message_by_key("Bench", &uniq_key(count + i), 32, 0, i64::MAX);
            miss_us.push(t.elapsed().as_secs_f64() * 1e6);
            if !missing.is_empty() {
                return Err("a missing key was found".into());
            }
        }
    }
    store.shutdown()?;
    hit_us.sort_by(f64::total_cmp);
    let avg = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let p99 = hit_us
        .get(hit_us.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0.0);
    let mib = 1024.0 * 1024.0;
    println!(
        "index={mode} messages={count} append_msgs_s={:.0} append_mib_s={:.1} \
         query_hit_us_avg={:.1} query_hit_us_p99={:.1} query_miss_us_avg={:.1} \
         index_disk_mib={:.1}",
        count as f64 / secs,
        bytes / mib / secs,
        avg(&hit_us),
        p99,
        avg(&miss_us),
        disk_bytes(&Path::new(dir).join("index")) as f64 / mib,
    );
    Ok(())
}
