//! Append and read throughput of the store on one directory.
//!
//! `store_bench <dir> <message-bytes> <total-mib> <async|sync> <writers>` prints one line:
//! `append_mib_s=<x> read_mib_s=<y> messages=<n>`. The async figure includes the final fsync.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferrum_store::{
    FlushDiskType, MessageExtBrokerInner, MessageFilter, MessageStore, MessageStoreConfig,
    PutMessageStatus,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, size, total_mib, mode, writers] = &args[..] else {
        return Err(
            "usage: store_bench <dir> <message-bytes> <total-mib> <async|sync> <writers>".into(),
        );
    };
    let size: usize = size.parse()?;
    let total: usize = total_mib.parse::<usize>()? * 1024 * 1024;
    let writers: usize = writers.parse()?;
    let mut cfg = MessageStoreConfig::new(dir);
    cfg.mapped_file_size_commit_log = 256 * 1024 * 1024;
    cfg.flush_disk_type = match mode.as_str() {
        "sync" => FlushDiskType::SyncFlush,
        "async" => FlushDiskType::AsyncFlush,
        other => return Err(format!("unknown flush mode {other}").into()),
    };
    let store = MessageStore::open(cfg.clone())?;
    let body = Bytes::from(vec![b'x'; size]);
    let count = (total / size).max(1);
    let per_writer = count.div_ceil(writers);
    let store = Arc::new(store);
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(&store);
            let body = body.clone();
            std::thread::spawn(move || {
                for _ in 0..per_writer {
                    let r = store.put_messages_blocking(vec![MessageExtBrokerInner {
                        topic: "Bench".into(),
                        queue_id: w as i32,
                        body: body.clone(),
                        ..Default::default()
                    }]);
                    if r.status != PutMessageStatus::PutOk {
                        return Err(format!("{r:?}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "writer panicked")??;
    }
    let bytes = store.max_phy_offset() as f64;
    store.shutdown()?;
    let append_secs = started.elapsed().as_secs_f64();
    drop(store);

    let started = Instant::now();
    let store = MessageStore::open(cfg.clone())?;
    let recover_clean = started.elapsed();
    let started = Instant::now();
    let mut read = 0usize;
    let mut n = 0usize;
    let mut touched = 0u8;
    for w in 0..writers as i32 {
        let mut offset = 0;
        loop {
            let r = store.get_message("g", "Bench", w, offset, 32, 1 << 20, &MessageFilter::All);
            if r.messages.is_empty() {
                break;
            }
            for m in &r.messages {
                // Touch the bytes as a socket write would.
                read += m.len();
                touched ^= m.iter().step_by(4096).fold(0u8, |a, b| a ^ b);
            }
            n += r.messages.len();
            offset = r.next_begin_offset;
        }
    }
    let read_secs = started.elapsed().as_secs_f64();
    // Crash recovery: the abort marker stays, so the tail past the checkpoint is validated.
    store.halt();
    drop(store);
    let started = Instant::now();
    let store = MessageStore::open(cfg.clone())?;
    let recover_crash = started.elapsed();
    store.halt();
    drop(store);
    // Without a checkpoint the whole CommitLog is validated (CRC of every record) and
    // re-dispatched.
    std::fs::remove_file(std::path::Path::new(dir).join("checkpoint"))?;
    let started = Instant::now();
    let store = MessageStore::open(cfg)?;
    let recover_full = started.elapsed();
    store.shutdown()?;
    let mib = 1024.0 * 1024.0;
    println!(
        "append_mib_s={:.1} read_mib_s={:.1} messages={n} recover_clean_ms={} \
         recover_crash_ms={} recover_full_scan_ms={} log_mib={:.0} xor={touched}",
        bytes / mib / append_secs,
        read as f64 / mib / read_secs,
        recover_clean.as_millis(),
        recover_crash.as_millis(),
        recover_full.as_millis(),
        bytes / mib,
    );
    Ok(())
}
