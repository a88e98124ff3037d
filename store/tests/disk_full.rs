//! Disk-full behaviour on a real small filesystem (a 192 KiB tmpfs mounted for the test; needs
//! root). Without the mount the same refusal / resume path runs against a simulated usage ratio.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::msg;
use ferrum_store::{
    FlushDiskType, GetMessageStatus, MessageFilter, MessageStore, MessageStoreConfig,
    PutMessageStatus,
};

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not unmount the test tmpfs at {}", self.0.display());
        }
    }
}

fn config(dir: &Path) -> MessageStoreConfig {
    let mut c = MessageStoreConfig::new(dir);
    c.mapped_file_size_commit_log = 16 * 1024;
    c.consume_queue_units_per_file = 64;
    c.flush_disk_type = FlushDiskType::AsyncFlush;
    c.flush_interval_commit_log = Duration::from_millis(20);
    c.clean_resource_interval = Duration::from_millis(100);
    // Deleting unexpired data would free space by itself; this test frees it from outside.
    c.clean_file_forcibly_enable = false;
    c
}

#[test]
fn full_disk_refuses_writes_serves_reads_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = Mount::tmpfs(tmp.path(), "192k");
    // Every slice read from the store maps its files; all are dropped when `run` returns, so the
    // filesystem can be unmounted.
    run(tmp.path(), mount.is_some());
    drop(mount);
}

fn run(dir: &Path, mounted: bool) {
    let root = dir.join("store");
    let store = MessageStore::open(config(&root)).expect("open");
    let ballast = dir.join("ballast");
    if mounted {
        std::fs::write(&ballast, vec![1u8; 48 * 1024]).expect("ballast");
    }
    let mut written = 0;
    let mut refusal = None;
    for i in 0..2000 {
        if !mounted && i == 50 {
            store.set_disk_ratio_override(Some(0.93));
            store.clean_now().expect("clean");
        }
        let r = store.put_messages_blocking(vec![msg("F", 0, &[i as u8; 1000], None, None)]);
        if r.status == PutMessageStatus::PutOk {
            written += 1;
            continue;
        }
        refusal = Some(r);
        break;
    }
    let refusal = refusal.expect("the disk filled up");
    assert!(written > 0);
    let remark = refusal.remark.clone().expect("a refusal names its cause");
    eprintln!(
        "refused after {written} messages: {:?}: {remark}",
        refusal.status
    );
    match refusal.status {
        PutMessageStatus::ServiceNotAvailable => assert!(remark.contains("full"), "{remark}"),
        PutMessageStatus::CreateMappedFileFailed => {
            assert!(remark.contains("No space left"), "{remark}")
        }
        other => panic!("unexpected refusal {other:?}: {remark}"),
    }
    // Give the clean-up thread a pass so the refusal reflects the measured ratio.
    std::thread::sleep(Duration::from_millis(300));
    let r = store.put_messages_blocking(vec![msg("F", 0, b"x", None, None)]);
    assert_ne!(r.status, PutMessageStatus::PutOk);
    if mounted {
        assert!(
            store.disk_refusal().is_some(),
            "the ratio check saw the full disk"
        );
    }
    // Reads go on.
    let r = store.get_message("g", "F", 0, 0, 1000, usize::MAX, &MessageFilter::All);
    assert_eq!(r.status, GetMessageStatus::Found);
    assert_eq!(r.messages.len(), written);

    // Free space from outside; writes resume without a restart.
    if mounted {
        std::fs::remove_file(&ballast).expect("remove ballast");
    } else {
        store.set_disk_ratio_override(Some(0.5));
    }
    let mut resumed = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let r = store.put_messages_blocking(vec![msg("F", 0, b"back", None, None)]);
        if r.status == PutMessageStatus::PutOk {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "writes resumed once space was freed");
    assert!(store.disk_refusal().is_none());
    store.shutdown().expect("shutdown");
}
