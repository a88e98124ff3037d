//! Crash test: a child process appends under SYNC_FLUSH and is SIGKILLed at a random moment;
//! after each restart every acknowledged message reads back byte-identical and the consume
//! queues agree with the CommitLog. Rounds: `FERRUM_STORE_CRASH_ROUNDS` (default 5).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrum_protocol::message::{MessageView, parse_message_id};
use ferrum_store::{
    FlushDiskType, GetMessageStatus, MessageExtBrokerInner, MessageFilter, MessageStore,
    MessageStoreConfig, PutMessageStatus,
};

const CHILD_ENV: &str = "FERRUM_STORE_CRASH_CHILD";
const TOPIC: &str = "Crash";
const QUEUES: i32 = 4;

fn config(dir: &Path) -> MessageStoreConfig {
    let mut c = MessageStoreConfig::new(dir);
    c.mapped_file_size_commit_log = 16 * 1024;
    c.consume_queue_units_per_file = 32;
    c.flush_disk_type = FlushDiskType::SyncFlush;
    c.max_message_size = 8 * 1024;
    common::ignore_host_disk(&mut c);
    c
}

fn expected_body(queue: i32, queue_offset: i64) -> Vec<u8> {
    let len = 40 + (queue_offset as usize * 37 + queue as usize * 11) % 900;
    (0..len)
        .map(|i| (i as i64 * 31 + queue_offset * 7 + i64::from(queue)) as u8)
        .collect()
}

fn message(queue: i32, queue_offset: i64) -> MessageExtBrokerInner {
    MessageExtBrokerInner {
        topic: TOPIC.to_owned(),
        queue_id: queue,
        body: Bytes::from(expected_body(queue, queue_offset)),
        properties: BTreeMap::from([("KEYS".to_owned(), format!("{queue}-{queue_offset}"))]),
        ..Default::default()
    }
}

fn child(dir: &Path) -> Result<(), String> {
    let store = MessageStore::open(config(dir)).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "OPEN").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    for seq in 0u64.. {
        let queue = (seq % QUEUES as u64) as i32;
        let next = store.get_max_offset_in_queue(TOPIC, queue);
        let batch = if seq % 5 == 0 { 3 } else { 1 };
        let msgs = (0..batch).map(|k| message(queue, next + k)).collect();
        let r = store.put_messages_blocking(msgs);
        if r.status != PutMessageStatus::PutOk {
            return Err(format!("put failed: {r:?}"));
        }
        let a = r.append.ok_or("no append result")?;
        for (k, id) in a.msg_ids.iter().enumerate() {
            let (_, phy) = parse_message_id(id).map_err(|e| e.to_string())?;
            writeln!(out, "ACK {queue} {} {phy}", a.logics_offset + k as i64)
                .map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A small xorshift generator: kill moments only need to vary, not be cryptographic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn verify(store: &MessageStore, acked: &[(i32, i64, i64)]) -> Result<(), String> {
    for &(queue, qo, phy) in acked {
        let rec = store.lookup_message_by_offset(phy).ok_or(format!(
            "acknowledged message {queue}/{qo} at {phy} is gone"
        ))?;
        let (v, _) = MessageView::decode(&rec, true).map_err(|e| format!("{queue}/{qo}: {e}"))?;
        if v.body != expected_body(queue, qo) || v.queue_offset != qo || v.queue_id != queue {
            return Err(format!(
                "acknowledged message {queue}/{qo} at {phy} differs"
            ));
        }
        let by_key = store.query_message_by_key(TOPIC, &format!("{queue}-{qo}"), 4, 0, i64::MAX);
        if by_key != [rec.clone()] {
            return Err(format!(
                "key index lost or duplicated {queue}-{qo}: {} hits",
                by_key.len()
            ));
        }
        let r = store.get_message("g", TOPIC, queue, qo, 1, usize::MAX, &MessageFilter::All);
        if r.status != GetMessageStatus::Found || r.messages.first() != Some(&rec) {
            return Err(format!(
                "consume queue {queue} does not serve {qo}: {:?}",
                r.status
            ));
        }
    }
    // Everything the queues serve is a valid record where they say, and nothing lies past the
    // recovered CommitLog end.
    let max_phy = store.max_phy_offset();
    for queue in 0..QUEUES {
        let max = store.get_max_offset_in_queue(TOPIC, queue);
        let r = store.get_message(
            "g",
            TOPIC,
            queue,
            0,
            max as usize + 1,
            usize::MAX,
            &MessageFilter::All,
        );
        if max > 0 && r.messages.len() as i64 != max {
            return Err(format!(
                "queue {queue}: {} of {max} messages served",
                r.messages.len()
            ));
        }
        for (i, m) in r.messages.iter().enumerate() {
            let (v, n) =
                MessageView::decode(m, true).map_err(|e| format!("queue {queue}/{i}: {e}"))?;
            if v.queue_offset != i as i64 || v.body != expected_body(queue, i as i64) {
                return Err(format!("queue {queue}/{i} serves the wrong record"));
            }
            if v.commit_log_offset + n as i64 > max_phy {
                return Err(format!("queue {queue}/{i} points past the CommitLog end"));
            }
        }
    }
    Ok(())
}

fn parent() -> Result<(), String> {
    let rounds: usize = std::env::var("FERRUM_STORE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("crash test: {rounds} rounds, seed {seed}");
    let mut rng = Rng(seed);
    let mut acked: Vec<(i32, i64, i64)> = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn child: {e}"))?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "OPEN" {
                    let _ = opened_tx.send(());
                }
                let f: Vec<&str> = line.split(' ').collect();
                if let ["ACK", q, qo, phy] = f[..]
                    && let (Ok(q), Ok(qo), Ok(phy)) = (q.parse(), qo.parse(), phy.parse())
                {
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((q, qo, phy));
                }
            }
        });
        // Most kills land while appending; one round in eight may hit the child's own recovery.
        if !rng.next().is_multiple_of(8) {
            let _ = opened.recv_timeout(Duration::from_secs(30));
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 150));
        child.kill().map_err(|e| format!("kill child: {e}"))?;
        let status = child.wait().map_err(|e| e.to_string())?;
        reader.join().map_err(|_| "reader thread panicked")?;
        let new = std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));
        if status.success() {
            return Err("the child exited by itself".into());
        }
        acked.extend(new.iter().copied());
        let store = MessageStore::open(config(dir.path())).map_err(|e| e.to_string())?;
        verify(&store, &acked).map_err(|e| format!("round {round}: {e}"))?;
        // Alternate how the verifier itself stops, so both recovery paths start the next round.
        if round % 2 == 0 {
            store.shutdown().map_err(|e| e.to_string())?;
        } else {
            store.halt();
        }
        println!(
            "round {round}: {} acknowledged in total, all intact",
            acked.len()
        );
    }
    if acked.is_empty() {
        return Err("no message was acknowledged in any round".into());
    }
    Ok(())
}

fn main() {
    let result = match std::env::var_os(CHILD_ENV) {
        Some(dir) => child(Path::new(&dir)),
        None => parent(),
    };
    if let Err(e) = result {
        eprintln!("crash test failed: {e}");
        std::process::exit(1);
    }
}
