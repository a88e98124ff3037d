//! Torn writes and a model-based property test of append / read / truncate / restart.

mod common;

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use common::{msg, small_config};
use ferrum_protocol::message::MessageView;
use ferrum_store::{
    FlushDiskType, GetMessageStatus, MessageFilter, MessageStore, PutMessageStatus,
};
use proptest::prelude::*;

fn body(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 7 + j * 13) as u8).collect()
}

fn last_commitlog_file(root: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(root.join("commitlog"))
        .expect("commitlog dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files.pop().expect("a commitlog file")
}

fn overwrite(path: &Path, at: u64, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open file");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(data).expect("write");
    f.sync_all().expect("sync");
}

/// Writes 30 messages, damages the last record on disk with `damage(file, record_pos, size)`,
/// marks the stop as abnormal and checks recovery drops exactly that record.
fn torn_case(damage: impl Fn(&Path, u64, u64)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = small_config(dir.path(), FlushDiskType::AsyncFlush);
    let store = MessageStore::open(cfg.clone()).expect("open");
    let mut last = None;
    for i in 0..30 {
        let r = store.put_messages_blocking(vec![msg(
            "T",
            0,
            &body(i, 300),
            None,
            Some(&format!("k{i}")),
        )]);
        last = r.append;
    }
    let last = last.expect("append");
    store.shutdown().expect("shutdown");
    drop(store);
    let file = last_commitlog_file(dir.path());
    let pos = (last.wrote_offset % cfg.mapped_file_size_commit_log as i64) as u64;
    damage(&file, pos, last.wrote_bytes as u64);
    std::fs::write(dir.path().join("abort"), b"").expect("abort marker");

    let store = MessageStore::open(cfg).expect("recover");
    assert_eq!(store.max_phy_offset(), last.wrote_offset);
    assert_eq!(store.get_max_offset_in_queue("T", 0), 29);
    assert!(store.lookup_message_by_offset(last.wrote_offset).is_none());
    assert!(
        store
            .query_message_by_key("T", "k29", 1, 0, i64::MAX)
            .is_empty()
    );
    let r = store.get_message("g", "T", 0, 0, 100, usize::MAX, &MessageFilter::All);
    assert_eq!(r.messages.len(), 29);
    for (i, m) in r.messages.iter().enumerate() {
        let (v, _) = MessageView::decode(m, true).expect("only valid records are served");
        assert_eq!(v.body, &body(i, 300)[..]);
    }
    // The next append reuses the offset and reads back intact.
    let r = store.put_messages_blocking(vec![msg("T", 0, b"again", None, None)]);
    let a = r.append.expect("append");
    assert_eq!((a.wrote_offset, a.logics_offset), (last.wrote_offset, 29));
    store.shutdown().expect("shutdown");
}

#[test]
fn torn_tail_cut_is_truncated() {
    torn_case(|file, pos, size| {
        overwrite(file, pos + size / 2, &vec![0; (size - size / 2) as usize])
    });
}

#[test]
fn garbled_tail_body_is_truncated() {
    torn_case(|file, pos, _| overwrite(file, pos + 100, b"garbage!"));
}

#[test]
fn garbled_tail_length_is_truncated() {
    torn_case(|file, pos, _| overwrite(file, pos, &i32::MAX.to_be_bytes()));
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        queue: i32,
        len: usize,
        batch: usize,
    },
    Read {
        queue: i32,
        offset: i64,
        max: usize,
    },
    Truncate {
        keep_permille: u32,
    },
    Restart,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3i32, 0..900usize, 1..4usize).prop_map(|(queue, len, batch)| Op::Append { queue, len, batch }),
        3 => (0..3i32, 0..40i64, 1..10usize).prop_map(|(queue, offset, max)| Op::Read { queue, offset, max }),
        1 => (0..1000u32).prop_map(|keep_permille| Op::Truncate { keep_permille }),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
    ]
}

/// What a queue must hold: bodies by queue offset with their CommitLog offsets.
#[derive(Default, Debug)]
struct Model {
    queues: HashMap<i32, Vec<(Vec<u8>, i64)>>,
    max_phy: i64,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = small_config(dir.path(), FlushDiskType::AsyncFlush);
        let mut store = MessageStore::open(cfg.clone()).expect("open");
        let mut model = Model::default();
        let mut seq = 0usize;
        for op in ops {
            match op {
                Op::Append { queue, len, batch } => {
                    let msgs: Vec<_> = (0..batch).map(|k| msg("M", queue, &body(seq + k, len), None, None)).collect();
                    let r = store.put_messages_blocking(msgs);
                    prop_assert_eq!(r.status, PutMessageStatus::PutOk);
                    let a = r.append.expect("append");
                    let q = model.queues.entry(queue).or_default();
                    prop_assert_eq!(a.logics_offset, q.len() as i64);
                    let each = a.wrote_bytes / batch;
                    for k in 0..batch {
                        q.push((body(seq + k, len), a.wrote_offset + (k * each) as i64));
                    }
                    seq += batch;
                    model.max_phy = a.wrote_offset + a.wrote_bytes as i64;
                    prop_assert_eq!(store.max_phy_offset(), model.max_phy);
                }
                Op::Read { queue, offset, max } => {
                    let r = store.get_message("g", "M", queue, offset, max, usize::MAX, &MessageFilter::All);
                    let q = model.queues.get(&queue).map(Vec::as_slice).unwrap_or(&[]);
                    if (offset as usize) < q.len() {
                        prop_assert_eq!(r.status, GetMessageStatus::Found);
                        let want = &q[offset as usize..q.len().min(offset as usize + max)];
                        prop_assert_eq!(r.messages.len(), want.len());
                        for (m, (b, phy)) in r.messages.iter().zip(want) {
                            let (v, _) = MessageView::decode(m, true).expect("record");
                            prop_assert_eq!(v.body, &b[..]);
                            prop_assert_eq!(v.commit_log_offset, *phy);
                        }
                    } else {
                        prop_assert!(r.messages.is_empty());
                        prop_assert_ne!(r.status, GetMessageStatus::Found);
                    }
                }
                Op::Truncate { keep_permille } => {
                    let all: Vec<i64> = model.queues.values().flatten().map(|(_, p)| *p).collect();
                    if all.is_empty() { continue; }
                    let mut all = all;
                    all.sort_unstable();
                    let cut = all[all.len() * keep_permille as usize / 1000];
                    store.truncate_to(cut).expect("truncate");
                    for q in model.queues.values_mut() {
                        q.retain(|(_, p)| *p < cut);
                    }
                    model.max_phy = cut;
                    prop_assert_eq!(store.max_phy_offset(), cut);
                }
                Op::Restart => {
                    store.shutdown().expect("shutdown");
                    store = MessageStore::open(cfg.clone()).expect("reopen");
                    prop_assert_eq!(store.max_phy_offset(), model.max_phy);
                }
                Op::Crash => {
                    // A process crash keeps the page cache: everything written survives.
                    store.halt();
                    store = MessageStore::open(cfg.clone()).expect("recover");
                    prop_assert_eq!(store.max_phy_offset(), model.max_phy);
                }
            }
            for (queue, q) in &model.queues {
                prop_assert_eq!(store.get_max_offset_in_queue("M", *queue), q.len() as i64);
            }
        }
        store.shutdown().expect("shutdown");
    }
}
