//! Retention under a floor (what Raft mode still needs): expired CommitLog files holding bytes
//! at or above the retention floor stay, a forced clean (disk at diskSpaceCleanForciblyRatio)
//! still deletes the oldest one, and without a floor every expired file but the last goes.

use bytes::Bytes;
use ferrum_store::{MessageExtBrokerInner, MessageStore, MessageStoreConfig, PutMessageStatus};

const FILE: i64 = 4096;

fn put(store: &MessageStore, i: usize) {
    let m = MessageExtBrokerInner {
        topic: "Retained".to_owned(),
        queue_id: 0,
        born_timestamp: 1,
        body: Bytes::from(vec![b'r'; 700 + i % 7]),
        ..Default::default()
    };
    assert_eq!(
        store.put_messages_blocking(vec![m]).status,
        PutMessageStatus::PutOk
    );
}

#[test]
fn the_floor_holds_expired_files_until_the_disk_forces_a_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = MessageStoreConfig::new(dir.path());
    config.mapped_file_size_commit_log = FILE as usize;
    config.consume_queue_units_per_file = 64;
    // Every file is expired and every hour is a deletion hour.
    config.file_reserved_time = std::time::Duration::ZERO;
    config.delete_when = (0..24).map(|h| h.to_string()).collect::<Vec<_>>().join(";");
    let store = MessageStore::open(config).expect("open");
    store.set_disk_ratio_override(Some(0.10));
    for i in 0..60 {
        put(&store, i);
    }
    let max = store.max_phy_offset();
    assert!(max > 8 * FILE, "the log spans many files: {max}");

    // A follower needs bytes from the middle of the fourth file on.
    let floor = 3 * FILE + 100;
    store.set_retention_floor(Some(floor));
    assert_eq!(store.retention_floor(), Some(floor));
    store.clean_now().expect("clean");
    assert_eq!(
        store.min_phy_offset(),
        3 * FILE,
        "files below the floor go, the one holding it stays"
    );
    store.clean_now().expect("clean again");
    assert_eq!(
        store.min_phy_offset(),
        3 * FILE,
        "and stays on later passes"
    );
    // The consume queue no longer points below the CommitLog.
    assert!(store.get_min_offset_in_queue("Retained", 0) > 0);

    // A disk at diskSpaceCleanForciblyRatio (85 %) deletes the oldest file despite the floor.
    store.set_disk_ratio_override(Some(0.86));
    store.clean_now().expect("forced clean");
    assert_eq!(store.min_phy_offset(), 4 * FILE, "a full disk wins");
    store.set_disk_ratio_override(Some(0.10));

    // The follower caught up (or left): without a floor every expired file but the last goes.
    store.set_retention_floor(None);
    // A pass deletes at most 10 files.
    for _ in 0..3 {
        store.clean_now().expect("clean");
    }
    let last_file = (store.max_phy_offset() - 1) / FILE * FILE;
    assert_eq!(
        store.min_phy_offset(),
        last_file,
        "expired files deleted up to the newest"
    );
    store.shutdown().expect("shutdown");
}
