mod common;

use common::{msg, small_config, with_rocketmq_disk_rules};
use ferrum_protocol::message::{MessageView, java_string_hash};
use ferrum_store::{
    FlushDiskType, GetMessageStatus, MessageFilter, MessageStore, PutMessageStatus,
};

fn body(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

#[test]
fn put_get_roll_over_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).expect("open");
    let mut phys = Vec::new();
    for i in 0..100 {
        let tags = if i % 2 == 0 { "even" } else { "odd" };
        let r = store.put_messages_blocking(vec![msg(
            "T",
            (i % 3) as i32,
            &body(i, 100 + i * 7),
            Some(tags),
            Some(&format!("k{i}")),
        )]);
        assert_eq!(r.status, PutMessageStatus::PutOk, "{r:?}");
        let a = r.append.expect("append result");
        assert_eq!(a.logics_offset, (i / 3) as i64);
        phys.push(a.wrote_offset);
    }
    // Records never straddle files.
    for p in &phys {
        assert!(p % 4096 + 91 <= 4096);
    }
    let check = |store: &MessageStore| {
        assert_eq!(store.get_max_offset_in_queue("T", 0), 34);
        let r = store.get_message("g", "T", 0, 0, 1000, usize::MAX, &MessageFilter::All);
        assert_eq!(r.status, GetMessageStatus::Found);
        assert_eq!(r.messages.len(), 34);
        assert_eq!(r.next_begin_offset, 34);
        for (n, m) in r.messages.iter().enumerate() {
            let (v, _) = MessageView::decode(m, true).expect("record");
            assert_eq!(v.queue_offset, n as i64);
            assert_eq!(v.body, &body(n * 3, 100 + n * 3 * 7)[..]);
        }
        let even = MessageFilter::TagCodes(vec![i64::from(java_string_hash("even"))]);
        let r = store.get_message("g", "T", 1, 0, 1000, usize::MAX, &even);
        // queue 1 holds i = 1, 4, 7, ...; even ones are i = 4, 10, 16, ...
        assert!(r.messages.iter().all(|m| {
            MessageView::decode(m, true)
                .expect("record")
                .0
                .property("TAGS")
                == Some("even")
        }));
        assert_eq!(r.messages.len(), 16);
        let found = store.query_message_by_key("T", "k42", 10, 0, i64::MAX);
        assert_eq!(found.len(), 1);
        assert_eq!(
            MessageView::decode(&found[0], true).expect("record").0.body,
            &body(42, 100 + 42 * 7)[..]
        );
        let r = store.get_message("g", "T", 0, 34, 10, usize::MAX, &MessageFilter::All);
        assert_eq!(r.status, GetMessageStatus::OffsetOverflowOne);
        let r = store.get_message("g", "T", 0, 99, 10, usize::MAX, &MessageFilter::All);
        assert_eq!(r.status, GetMessageStatus::OffsetOverflowBadly);
        let r = store.get_message("g", "X", 0, 0, 10, usize::MAX, &MessageFilter::All);
        assert_eq!(r.status, GetMessageStatus::NoMatchedLogicQueue);
        assert_eq!(store.get_offset_in_queue_by_time("T", 0, 0), 0);
        assert_eq!(store.get_offset_in_queue_by_time("T", 0, i64::MAX), 34);
        let rec = store
            .lookup_message_by_offset(phys[5])
            .expect("record at offset");
        assert_eq!(
            MessageView::decode(&rec, true).expect("record").0.body,
            &body(5, 135)[..]
        );
    };
    check(&store);
    let max = store.max_phy_offset();
    store.shutdown().expect("shutdown");
    let r = store.put_messages_blocking(vec![msg("T", 0, b"x", None, None)]);
    assert_eq!(r.status, PutMessageStatus::ServiceNotAvailable);
    drop(store);
    let store =
        MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).expect("reopen");
    assert_eq!(store.max_phy_offset(), max);
    check(&store);
    let r = store.put_messages_blocking(vec![msg("T", 0, b"after", None, None)]);
    assert_eq!(r.append.expect("append").logics_offset, 34);
    store.shutdown().expect("shutdown");
}

#[test]
fn limits_are_refused_with_clear_statuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).expect("open");
    let r = store.put_messages_blocking(vec![msg("T", 0, &[0; 5000], None, None)]);
    assert_eq!(r.status, PutMessageStatus::MessageIllegal);
    assert!(r.remark.expect("remark").contains("limit"));
    let mut m = msg("T", 0, b"x", None, None);
    m.properties.insert("P".into(), "v".repeat(40_000));
    assert_eq!(
        store.put_messages_blocking(vec![m]).status,
        PutMessageStatus::PropertiesSizeExceeded
    );
    let r = store.put_messages_blocking(vec![msg(&"t".repeat(128), 0, b"x", None, None)]);
    assert_eq!(r.status, PutMessageStatus::MessageIllegal);
    store.shutdown().expect("shutdown");
}

#[tokio::test]
async fn sync_flush_group_commit_acknowledges_after_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        MessageStore::open(small_config(dir.path(), FlushDiskType::SyncFlush)).expect("open");
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let r = s
                    .put_message(msg("S", w, format!("{w}-{i}").as_bytes(), None, None))
                    .await;
                assert_eq!(r.status, PutMessageStatus::PutOk);
                let a = r.append.expect("append");
                assert!(s.flushed_phy_offset() >= a.wrote_offset + a.wrote_bytes as i64);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    for w in 0..4 {
        assert_eq!(store.get_max_offset_in_queue("S", w), 25);
    }
    store.shutdown().expect("shutdown");
}

#[test]
fn batch_put_is_contiguous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).expect("open");
    for round in 0..10 {
        let batch = (0..5)
            .map(|i| msg("B", 0, &body(round * 5 + i, 150), None, None))
            .collect();
        let r = store.put_messages_blocking(batch);
        let a = r.append.expect("append");
        assert_eq!(a.msg_num, 5);
        assert_eq!(a.logics_offset, round as i64 * 5);
        assert_eq!(a.msg_ids.len(), 5);
    }
    let r = store.get_message("g", "B", 0, 0, 100, usize::MAX, &MessageFilter::All);
    assert_eq!(r.messages.len(), 50);
    let r = store.get_message("g", "B", 0, 0, 100, 1000, &MessageFilter::All);
    assert!(r.buffer_total_size() <= 1000 && !r.messages.is_empty());
    assert_eq!(r.next_begin_offset, r.messages.len() as i64);
    store.shutdown().expect("shutdown");
}

#[test]
fn replica_append_raw_truncate_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leader = MessageStore::open(with_rocketmq_disk_rules(small_config(
        &dir.path().join("a"),
        FlushDiskType::AsyncFlush,
    )))
    .expect("open");
    let follower = MessageStore::open(small_config(
        &dir.path().join("b"),
        FlushDiskType::AsyncFlush,
    ))
    .expect("open");
    for i in 0..60 {
        leader.put_messages_blocking(vec![msg(
            "R",
            0,
            &body(i, 200),
            None,
            Some(&format!("k{i}")),
        )]);
    }
    // Ship in odd-sized chunks so records arrive split.
    let mut off = 0;
    while off < leader.max_phy_offset() {
        let chunk = leader.read_raw(off, 333).expect("raw bytes");
        follower.append_raw_at(off, &chunk).expect("append raw");
        off += chunk.len() as i64;
    }
    assert!(follower.append_raw_at(0, b"x").is_err());
    assert_eq!(follower.max_phy_offset(), leader.max_phy_offset());
    assert_eq!(follower.get_max_offset_in_queue("R", 0), 60);
    let a = leader.get_message("g", "R", 0, 0, 100, usize::MAX, &MessageFilter::All);
    let b = follower.get_message("g", "R", 0, 0, 100, usize::MAX, &MessageFilter::All);
    assert_eq!(a.messages, b.messages);

    let cut = follower
        .get_commit_log_offset_in_queue("R", 0, 40)
        .expect("offset");
    follower.truncate_to(cut).expect("truncate");
    assert_eq!(follower.max_phy_offset(), cut);
    assert_eq!(follower.get_max_offset_in_queue("R", 0), 40);
    assert!(
        follower
            .query_message_by_key("R", "k45", 1, 0, i64::MAX)
            .is_empty()
    );
    let r = follower.put_messages_blocking(vec![msg("R", 0, b"new", None, None)]);
    assert_eq!(r.append.expect("append").logics_offset, 40);

    // Forced clean-up deletes the oldest file even though it has not expired.
    let min_before = leader.min_phy_offset();
    leader.set_disk_ratio_override(Some(0.87));
    leader.clean_now().expect("clean");
    assert!(leader.min_phy_offset() > min_before);
    let r = leader.get_message("g", "R", 0, 0, 1, usize::MAX, &MessageFilter::All);
    assert_eq!(r.status, GetMessageStatus::OffsetTooSmall);
    assert!(r.next_begin_offset > 0);
    // Above the warning level writes are refused with the cause; reads go on; then resume.
    leader.set_disk_ratio_override(Some(0.95));
    leader.clean_now().expect("clean");
    let r = leader.put_messages_blocking(vec![msg("R", 0, b"x", None, None)]);
    assert_eq!(r.status, PutMessageStatus::ServiceNotAvailable);
    assert!(
        r.remark
            .expect("remark")
            .contains("diskSpaceWarningLevelRatio")
    );
    let r = leader.get_message(
        "g",
        "R",
        0,
        leader.get_min_offset_in_queue("R", 0),
        1,
        usize::MAX,
        &MessageFilter::All,
    );
    assert_eq!(r.status, GetMessageStatus::Found);
    leader.set_disk_ratio_override(Some(0.5));
    leader.clean_now().expect("clean");
    assert_eq!(
        leader
            .put_messages_blocking(vec![msg("R", 0, b"x", None, None)])
            .status,
        PutMessageStatus::PutOk
    );
    leader.shutdown().expect("shutdown");
    follower.shutdown().expect("shutdown");
}

#[test]
fn empty_replica_starts_at_a_file_boundary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leader = MessageStore::open(small_config(
        &dir.path().join("a"),
        FlushDiskType::AsyncFlush,
    ))
    .expect("open");
    for i in 0..80 {
        leader.put_messages_blocking(vec![msg("R", 0, &body(i, 200), None, None)]);
    }
    let start = 3 * 4096;
    assert!(leader.max_phy_offset() > start + 4096);
    let fcfg = small_config(&dir.path().join("b"), FlushDiskType::AsyncFlush);
    let follower = MessageStore::open(fcfg.clone()).expect("open");
    assert!(follower.append_raw_at(100, b"x").is_err());
    let mut off = start;
    while off < leader.max_phy_offset() {
        let chunk = leader.read_raw(off, 1000).expect("raw");
        follower.append_raw_at(off, &chunk).expect("append raw");
        off += chunk.len() as i64;
    }
    let check = |f: &MessageStore| {
        assert_eq!(f.min_phy_offset(), start);
        assert_eq!(f.max_phy_offset(), leader.max_phy_offset());
        let min = f.get_min_offset_in_queue("R", 0);
        assert!(min > 0);
        assert_eq!(f.get_max_offset_in_queue("R", 0), 80);
        let r = f.get_message("g", "R", 0, 0, 1, usize::MAX, &MessageFilter::All);
        assert_eq!(r.status, GetMessageStatus::OffsetTooSmall);
        assert_eq!(r.next_begin_offset, min);
        let a = leader.get_message("g", "R", 0, min, 100, usize::MAX, &MessageFilter::All);
        let b = f.get_message("g", "R", 0, min, 100, usize::MAX, &MessageFilter::All);
        assert_eq!(b.messages.len() as i64, 80 - min);
        assert_eq!(a.messages, b.messages);
    };
    check(&follower);
    follower.shutdown().expect("shutdown");
    let follower = MessageStore::open(fcfg.clone()).expect("reopen");
    check(&follower);
    follower.halt();
    let follower = MessageStore::open(fcfg).expect("recover");
    check(&follower);
    follower.shutdown().expect("shutdown");
    leader.shutdown().expect("shutdown");
}

#[test]
fn reads_stop_at_the_committed_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).expect("open");
    let mut ends = Vec::new();
    for i in 0..5 {
        let a = store
            .put_messages_blocking(vec![msg("C", 0, &body(i, 50), None, None)])
            .append
            .expect("append");
        ends.push(a.wrote_offset + a.wrote_bytes as i64);
    }
    store.set_committed_offset(Some(ends[2]));
    let r = store.get_message("g", "C", 0, 0, 10, usize::MAX, &MessageFilter::All);
    assert_eq!(r.messages.len(), 3);
    assert_eq!(r.next_begin_offset, 3);
    let r = store.get_message("g", "C", 0, 3, 10, usize::MAX, &MessageFilter::All);
    assert!(r.messages.is_empty());
    assert_eq!(r.next_begin_offset, 3);
    store.set_committed_offset(None);
    let r = store.get_message("g", "C", 0, 3, 10, usize::MAX, &MessageFilter::All);
    assert_eq!(r.messages.len(), 2);
    store.shutdown().expect("shutdown");
}

#[test]
fn side_readers_stop_at_the_committed_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).expect("open");
    let mut appended = Vec::new();
    for i in 0..5 {
        let a = store
            .put_messages_blocking(vec![msg(
                "C",
                0,
                &body(i, 50),
                None,
                Some(&format!("k{i}")),
            )])
            .append
            .expect("append");
        appended.push((a.wrote_offset, a.wrote_offset + a.wrote_bytes as i64));
    }
    store.set_committed_offset(Some(appended[2].1));
    assert_eq!(store.get_max_offset_in_queue("C", 0), 3);
    let r = store.get_message("g", "C", 0, 0, 10, usize::MAX, &MessageFilter::All);
    assert_eq!(
        r.max_offset, 3,
        "the pull reply announces only committed messages"
    );
    for offset in [3, 4, 5] {
        let r = store.get_message("g", "C", 0, offset, 10, usize::MAX, &MessageFilter::All);
        assert_eq!(r.status, GetMessageStatus::OffsetOverflowOne, "at {offset}");
        assert_eq!(r.next_begin_offset, offset);
        assert!(r.messages.is_empty());
    }
    assert!(store.lookup_message_by_offset(appended[2].0).is_some());
    assert!(store.lookup_message_by_offset(appended[3].0).is_none());
    assert_eq!(
        store.get_commit_log_offset_in_queue("C", 0, 2),
        Some(appended[2].0)
    );
    assert_eq!(store.get_commit_log_offset_in_queue("C", 0, 3), None);
    assert_eq!(store.get_offset_in_queue_by_time("C", 0, i64::MAX), 3);
    assert!(
        store
            .query_message_by_key("C", "k3", 10, 0, i64::MAX)
            .is_empty()
    );
    // Nothing committed: the queue looks empty, yet a pull at a written offset waits.
    store.set_committed_offset(Some(appended[0].0));
    assert_eq!(store.get_max_offset_in_queue("C", 0), 0);
    let r = store.get_message("g", "C", 0, 2, 10, usize::MAX, &MessageFilter::All);
    assert_eq!(r.status, GetMessageStatus::OffsetOverflowOne);
    store.set_committed_offset(None);
    assert_eq!(store.get_max_offset_in_queue("C", 0), 5);
    assert!(store.lookup_message_by_offset(appended[4].0).is_some());
    assert_eq!(
        store.query_message_by_key("C", "k3", 10, 0, i64::MAX).len(),
        1
    );
    store.shutdown().expect("shutdown");
}

#[test]
fn expired_files_are_deleted_at_delete_when() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = small_config(dir.path(), FlushDiskType::AsyncFlush);
    cfg.file_reserved_time = std::time::Duration::ZERO;
    cfg.delete_when = (0..24)
        .map(|h| format!("{h:02}"))
        .collect::<Vec<_>>()
        .join(";");
    let store = MessageStore::open(cfg.clone()).expect("open");
    for i in 0..60 {
        store.put_messages_blocking(vec![msg(
            "E",
            0,
            &body(i, 300),
            None,
            Some(&format!("k{i}")),
        )]);
    }
    store.set_disk_ratio_override(Some(0.1));
    store.clean_now().expect("clean");
    // Everything but the file being written has expired.
    let max = store.max_phy_offset();
    assert_eq!(store.min_phy_offset(), max - max % 4096);
    let min_q = store.get_min_offset_in_queue("E", 0);
    assert!(min_q > 0);
    assert!(
        store
            .query_message_by_key("E", "k0", 1, 0, i64::MAX)
            .is_empty()
    );
    assert_eq!(
        store.query_message_by_key("E", "k59", 1, 0, i64::MAX).len(),
        1
    );
    let r = store.get_message("g", "E", 0, min_q, 100, usize::MAX, &MessageFilter::All);
    assert_eq!(r.messages.len() as i64, 60 - min_q);
    store.shutdown().expect("shutdown");
    let store = MessageStore::open(cfg).expect("reopen");
    assert_eq!(store.get_min_offset_in_queue("E", 0), min_q);
    assert!(store.get_earliest_message_time().is_some());
    store.shutdown().expect("shutdown");
}
