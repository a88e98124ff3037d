//! The on-disk key index through the store API: keys spread over several IndexFiles, time
//! ranges, restarts and crashes, truncation followed by different records at the same offsets,
//! retention, collisions, replicated bytes, and no per-message memory.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::{msg, small_config, with_rocketmq_disk_rules};
use ferrum_protocol::message::MessageView;
use ferrum_store::{
    FlushDiskType, MessageExtBrokerInner, MessageFilter, MessageStore, MessageStoreConfig,
};

/// Tiny index files: 16 slots (constant collisions) and 40 entries per file.
fn config(dir: &Path) -> MessageStoreConfig {
    let mut c = small_config(dir, FlushDiskType::AsyncFlush);
    c.max_hash_slot_num = 16;
    c.max_index_num = 40;
    c
}

fn keyed(topic: &str, i: usize, tag: &str) -> MessageExtBrokerInner {
    let mut m = msg(
        topic,
        (i % 3) as i32,
        format!("{tag}-body-{i}").as_bytes(),
        None,
        Some(&format!("{tag}{i} {tag}-all")),
    );
    m.properties
        .insert("UNIQ_KEY".to_owned(), format!("UNIQ-{tag}-{i:06}"));
    m
}

fn put(store: &MessageStore, m: MessageExtBrokerInner) -> (i64, i64) {
    let r = store.put_messages_blocking(vec![m]);
    let a = r
        .append
        .unwrap_or_else(|| panic!("put failed: {:?}", r.status));
    (a.wrote_offset, a.store_timestamp)
}

fn bodies(records: &[Bytes]) -> Vec<String> {
    records
        .iter()
        .map(|b| {
            let (v, _) = MessageView::decode(b, true).expect("a valid record");
            String::from_utf8_lossy(v.body).into_owned()
        })
        .collect()
}

fn find(store: &MessageStore, topic: &str, key: &str) -> Vec<String> {
    bodies(&store.query_message_by_key(topic, key, 64, 0, i64::MAX))
}

fn index_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("index"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn assert_all_found(store: &MessageStore, tag: &str, range: std::ops::Range<usize>) {
    for i in range {
        let want = vec![format!("{tag}-body-{i}")];
        assert_eq!(
            find(store, "T", &format!("{tag}{i}")),
            want,
            "KEYS {tag}{i}"
        );
        assert_eq!(
            find(store, "T", &format!("UNIQ-{tag}-{i:06}")),
            want,
            "UNIQ_KEY {tag}{i}"
        );
    }
}

#[test]
fn keys_across_many_index_files_are_all_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::open(config(dir.path())).expect("open");
    for i in 0..200 {
        put(&store, keyed("T", i, "a"));
    }
    // Another topic with the same keys must not answer for "T".
    for i in 0..20 {
        put(&store, keyed("U", i, "a"));
    }
    // 3 keys per message, 39 entries per file.
    let files = index_files(dir.path());
    assert!(files.len() >= 16, "{} index files", files.len());
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(name.len(), 17, "yyyyMMddHHmmssSSS: {name}");
        assert!(name.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            std::fs::metadata(f).expect("meta").len(),
            (40 + 16 * 4 + 40 * 20) as u64
        );
    }
    assert_all_found(&store, "a", 0..200);
    assert_eq!(find(&store, "U", "a7"), vec!["a-body-7"]);
    assert!(find(&store, "T", "a200").is_empty());
    assert!(find(&store, "T", "nothing").is_empty());
    assert!(find(&store, "V", "a1").is_empty());
    // A key shared by every message: newest first, at most maxNum.
    let shared = bodies(&store.query_message_by_key("T", "a-all", 5, 0, i64::MAX));
    assert_eq!(
        shared,
        (195..200)
            .rev()
            .map(|i| format!("a-body-{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        store
            .query_message_by_key("T", "a-all", 1000, 0, i64::MAX)
            .len(),
        200
    );
    assert!(
        store
            .query_message_by_key("T", "a-all", 0, 0, i64::MAX)
            .is_empty()
    );
    store.shutdown().expect("shutdown");
}

#[test]
fn time_range_filters_by_store_timestamp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::open(config(dir.path())).expect("open");
    let mut first = Vec::new();
    for i in 0..30 {
        first.push(put(&store, keyed("T", i, "t")).1);
    }
    // Store timestamps only need to differ between the two groups, by more than the index's
    // one-second resolution.
    let first_end = *first.iter().max().expect("timestamps");
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        <= first_end + 1100
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut second = Vec::new();
    for i in 30..60 {
        second.push(put(&store, keyed("T", i, "t")).1);
    }
    let second_begin = *second.iter().min().expect("timestamps");
    assert!(second_begin > first_end);
    let in_range = |begin, end| {
        let mut v = bodies(&store.query_message_by_key("T", "t-all", 1000, begin, end));
        v.sort();
        v
    };
    let mut want_first: Vec<String> = (0..30).map(|i| format!("t-body-{i}")).collect();
    want_first.sort();
    let mut want_second: Vec<String> = (30..60).map(|i| format!("t-body-{i}")).collect();
    want_second.sort();
    assert_eq!(in_range(0, first_end), want_first);
    assert_eq!(in_range(second_begin, i64::MAX), want_second);
    assert_eq!(in_range(0, i64::MAX).len(), 60);
    assert!(in_range(first_end + 1, second_begin - 1).is_empty());
    // A single key outside its message's time is not served.
    assert!(
        store
            .query_message_by_key("T", "t5", 10, second_begin, i64::MAX)
            .is_empty()
    );
    store.shutdown().expect("shutdown");
}

#[test]
fn restart_after_clean_stop_and_after_crash_finds_every_key_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let store = MessageStore::open(cfg.clone()).expect("open");
    for i in 0..100 {
        put(&store, keyed("T", i, "r"));
    }
    store.shutdown().expect("shutdown");
    drop(store);

    let store = MessageStore::open(cfg.clone()).expect("reopen");
    assert_all_found(&store, "r", 0..100);
    for i in 100..180 {
        put(&store, keyed("T", i, "r"));
    }
    // A crash: no final flush or checkpoint.
    store.halt();
    drop(store);
    // Whatever reached the disk of the newest index file's header and slots after the last
    // checkpoint is rebuilt; simulate pages that made it half-way.
    let last = index_files(dir.path()).pop().expect("an index file");
    let mut raw = std::fs::read(&last).expect("read");
    for (i, b) in raw[8..40 + 16 * 4].iter_mut().enumerate() {
        *b = (i * 37 + 11) as u8;
    }
    std::fs::write(&last, &raw).expect("write");

    let store = MessageStore::open(cfg.clone()).expect("recover");
    assert_all_found(&store, "r", 0..180);
    assert_eq!(
        store
            .query_message_by_key("T", "r-all", 1000, 0, i64::MAX)
            .len(),
        180,
        "no key lost or doubled"
    );
    for i in 180..200 {
        put(&store, keyed("T", i, "r"));
    }
    store.halt();
    drop(store);
    // An index directory lost entirely is rebuilt from the CommitLog.
    std::fs::remove_dir_all(dir.path().join("index")).expect("rm index");
    let store = MessageStore::open(cfg).expect("rebuild");
    assert_all_found(&store, "r", 0..200);
    store.shutdown().expect("shutdown");
}

#[test]
fn a_torn_or_foreign_index_file_never_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let store = MessageStore::open(cfg.clone()).expect("open");
    for i in 0..50 {
        put(&store, keyed("T", i, "g"));
    }
    store.halt();
    drop(store);
    let files = index_files(dir.path());
    // The newest file cut short, another garbled whole, and a stray file.
    let newest = files.last().expect("file");
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .expect("open")
        .set_len(77)
        .expect("cut");
    std::fs::write(&files[0], vec![0xA5; 40 + 16 * 4 + 40 * 20]).expect("garble");
    std::fs::write(dir.path().join("index").join("notes.txt"), b"x").expect("stray");
    let store = MessageStore::open(cfg).expect("recover");
    assert_all_found(&store, "g", 0..50);
    store.shutdown().expect("shutdown");
}

#[test]
fn truncate_then_different_records_at_the_same_offsets_hide_old_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let store = MessageStore::open(cfg.clone()).expect("open");
    let mut offsets = Vec::new();
    for i in 0..60 {
        offsets.push(put(&store, keyed("T", i, "o")).0);
    }
    store.truncate_to(offsets[30]).expect("truncate");
    // Same sizes ("o" and "n" tags), so the new records land exactly on the old offsets.
    for (i, old) in offsets.iter().enumerate().skip(30) {
        let (off, _) = put(&store, keyed("T", i, "n"));
        assert_eq!(off, *old);
    }
    let check = |store: &MessageStore| {
        assert_all_found(store, "o", 0..30);
        assert_all_found(store, "n", 30..60);
        for i in 30..60 {
            assert!(
                find(store, "T", &format!("o{i}")).is_empty(),
                "old key o{i}"
            );
            assert!(find(store, "T", &format!("UNIQ-o-{i:06}")).is_empty());
        }
        assert_eq!(
            store
                .query_message_by_key("T", "o-all", 1000, 0, i64::MAX)
                .len(),
            30
        );
    };
    check(&store);
    store.shutdown().expect("shutdown");
    drop(store);
    let store = MessageStore::open(cfg.clone()).expect("reopen");
    check(&store);
    // Truncation followed by a crash before any checkpoint.
    let off = store
        .get_commit_log_offset_in_queue("T", 0, 15)
        .expect("offset");
    store.truncate_to(off).expect("truncate");
    store.halt();
    drop(store);
    let store = MessageStore::open(cfg).expect("recover");
    let left = store
        .query_message_by_key("T", "n-all", 1000, 0, i64::MAX)
        .len()
        + store
            .query_message_by_key("T", "o-all", 1000, 0, i64::MAX)
            .len();
    let records: usize = (0..3)
        .map(|q| {
            store
                .get_message("g", "T", q, 0, 1000, usize::MAX, &MessageFilter::All)
                .messages
                .len()
        })
        .sum();
    assert_eq!(left, records, "every key found is a record still there");
    store.shutdown().expect("shutdown");
}

#[test]
fn replicated_bytes_are_indexed_and_truncation_hides_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = MessageStore::open(config(&dir.path().join("a"))).expect("open a");
    let b = MessageStore::open(config(&dir.path().join("b"))).expect("open b");
    let follower = MessageStore::open(config(&dir.path().join("f"))).expect("open f");
    for i in 0..40 {
        put(&a, keyed("T", i, "x"));
        put(&b, keyed("T", i, if i < 20 { "x" } else { "y" }));
    }
    let ship = |from: &MessageStore, start: i64| {
        let mut off = start;
        while off < from.max_phy_offset() {
            let chunk = from.read_raw(off, 333).expect("raw bytes");
            follower.append_raw_at(off, &chunk).expect("append raw");
            off += chunk.len() as i64;
        }
    };
    ship(&a, 0);
    assert_all_found(&follower, "x", 0..40);
    // The follower diverged: it truncates to the common prefix and follows `b`.
    let cut = b
        .get_commit_log_offset_in_queue("T", 20 % 3, 20 / 3)
        .expect("cut");
    follower.truncate_to(cut).expect("truncate");
    ship(&b, cut);
    assert_all_found(&follower, "x", 0..20);
    assert_all_found(&follower, "y", 20..40);
    for i in 20..40 {
        assert!(find(&follower, "T", &format!("x{i}")).is_empty());
    }
    for s in [a, b, follower] {
        s.shutdown().expect("shutdown");
    }
}

#[test]
fn retention_hides_deleted_records_and_deletes_old_index_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::open(with_rocketmq_disk_rules(config(dir.path()))).expect("open");
    for i in 0..200 {
        put(&store, keyed("T", i, "d"));
    }
    let files_before = index_files(dir.path()).len();
    store.set_disk_ratio_override(Some(0.87));
    for _ in 0..3 {
        store.clean_now().expect("clean");
    }
    store.set_disk_ratio_override(None);
    let min = store.min_phy_offset();
    assert!(min > 0);
    let files_after = index_files(dir.path()).len();
    assert!(
        files_after < files_before,
        "{files_after} of {files_before} index files left"
    );
    let mut gone = 0;
    for i in 0..200 {
        let hits = store.query_message_by_key("T", &format!("d{i}"), 4, 0, i64::MAX);
        for h in &hits {
            let (v, _) = MessageView::decode(h, true).expect("valid");
            assert!(v.commit_log_offset >= min);
        }
        if hits.is_empty() {
            gone += 1;
        }
    }
    assert!(gone > 0);
    store.shutdown().expect("shutdown");
}

#[test]
fn one_hash_slot_still_answers_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.max_hash_slot_num = 1;
    cfg.max_index_num = 1000;
    let store = MessageStore::open(cfg).expect("open");
    for i in 0..100 {
        put(&store, keyed("T", i, "c"));
    }
    assert_all_found(&store, "c", 0..100);
    store.shutdown().expect("shutdown");
}

#[test]
fn index_memory_does_not_grow_per_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.max_hash_slot_num = 1024;
    cfg.max_index_num = 50_000;
    let store = MessageStore::open(cfg).expect("open");
    for i in 0..10 {
        put(&store, keyed("T", i, "m"));
    }
    let small = store.index_heap_bytes();
    assert!(small > 0);
    for i in 10..5000 {
        put(&store, keyed("T", i, "m"));
    }
    assert_eq!(index_files(dir.path()).len(), 1);
    assert_eq!(
        store.index_heap_bytes(),
        small,
        "heap held by the index after 5000 keyed messages"
    );
    assert_all_found(&store, "m", 4990..5000);
    store.shutdown().expect("shutdown");
}

#[test]
fn message_index_disabled_builds_no_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.message_index_enable = false;
    let store = MessageStore::open(cfg.clone()).expect("open");
    for i in 0..20 {
        put(&store, keyed("T", i, "e"));
    }
    assert!(find(&store, "T", "e3").is_empty());
    assert!(index_files(dir.path()).is_empty());
    store.shutdown().expect("shutdown");
    drop(store);
    // Enabled again, the index is rebuilt from the CommitLog.
    cfg.message_index_enable = true;
    let store = MessageStore::open(cfg).expect("reopen");
    assert_all_found(&store, "e", 0..20);
    store.shutdown().expect("shutdown");
}
