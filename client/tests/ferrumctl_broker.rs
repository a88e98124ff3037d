//! `ferrumctl` subcommands against a real ferrum-namesrv and ferrum-broker on 127.0.0.1:
//! topic create / list / delete, message send / get / query-key / view-id, group progress and a
//! short bench consume, each checked in its text and its --json output.
//!
//! The server binaries belong to other packages of the workspace; they are taken from this
//! build's target directory and built there first when missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CLUSTER: &str = "CtlCluster";
const TOPIC: &str = "CtlTopic";
const KEY: &str = "order-7";

/// A child process killed when dropped.
struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary of a workspace package next to this test's binary, built first if it is not there.
fn sibling_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let binary = profile_dir.join(bin);
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", bin])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "{bin} builds");
    }
    binary
}

/// Starts `cmd` and returns it with its first stdout line; stdout keeps being drained.
fn spawn(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("process printed its start line");
    (child, line)
}

fn start_namesrv() -> Proc {
    let mut cmd = Command::new(sibling_binary("ferrum-namesrv", "ferrum-namesrv"));
    cmd.args(["--listen", "127.0.0.1:0"]);
    let (child, line) = spawn(cmd);
    let addr = line.rsplit(' ').next().expect("address").to_owned();
    Proc { child, addr }
}

fn start_broker(namesrv: &str, store: &Path) -> Proc {
    let mut cmd = Command::new(sibling_binary("ferrum-broker", "ferrum-broker"));
    cmd.args(["-n", namesrv]);
    for set in [
        "listenPort=0".to_owned(),
        "haListenPort=0".to_owned(),
        "metricsPort=0".to_owned(),
        "bindAddress=127.0.0.1".to_owned(),
        format!("storePathRootDir={}", store.display()),
        "mappedFileSizeCommitLog=1048576".to_owned(),
        "brokerName=ctl-broker".to_owned(),
        format!("brokerClusterName={CLUSTER}"),
        "registerNameServerPeriod=1000".to_owned(),
        // How full the machine's disk is must not refuse the test's few messages.
        "diskSpaceWarningLevelRatio=98".to_owned(),
        "diskSpaceCleanForciblyRatio=97".to_owned(),
        "cleanFileForciblyEnable=false".to_owned(),
    ] {
        cmd.args(["--set", &set]);
    }
    let (child, line) = spawn(cmd);
    // "ferrum-broker <name> listening on A (VIP B), advertised as C"
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("address in the start line")
        .to_owned();
    Proc { child, addr }
}

/// Runs `ferrumctl -n <namesrv> <args>` (in a blocking task, so the servers' answers are not
/// held up) and returns its output.
async fn ferrumctl(namesrv: &str, args: &[&str]) -> Output {
    let mut all = vec!["-n".to_owned(), namesrv.to_owned()];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ferrumctl"))
            .args(&all)
            .env_remove("FERRUM_NAMESRV")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run ferrumctl")
    });
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("ferrumctl finished in time")
        .expect("join")
}

/// `ferrumctl` that must succeed; its stdout.
async fn ok(namesrv: &str, args: &[&str]) -> String {
    let out = ferrumctl(namesrv, args).await;
    assert!(
        out.status.success(),
        "ferrumctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `ferrumctl --json` that must succeed; every JSON value it printed.
async fn ok_json(namesrv: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let stdout = ok(namesrv, &all).await;
    serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("JSON from ferrumctl {args:?} ({e}): {stdout}"))
}

/// Retries `ferrumctl args` until it succeeds and `accept` holds for its stdout.
async fn until(namesrv: &str, args: &[&str], accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ferrumctl(namesrv, args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && accept(&stdout) {
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "ferrumctl {args:?} never gave the expected answer: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn topics_in(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("topic list is an array")
        .iter()
        .map(|t| t.as_str().expect("topic name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subcommands_against_a_real_namesrv_and_broker() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("scenario finishes in time");
}

async fn scenario() {
    let namesrv = start_namesrv();
    let store = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(&namesrv.addr, store.path());
    let ns = namesrv.addr.as_str();

    // topic create (retried until the broker's registration reached the NameServer).
    let created = until(
        ns,
        &[
            "topic", "create", TOPIC, "-c", CLUSTER, "-r", "1", "-w", "1",
        ],
        |_| true,
    )
    .await;
    assert_eq!(
        created.trim(),
        format!("created topic {TOPIC} on {}", broker.addr)
    );

    // topic list: the topic once the broker's next registration carried it.
    let text = until(ns, &["topic", "list"], |out| {
        out.lines().any(|l| l == TOPIC)
    })
    .await;
    assert!(text.lines().any(|l| l == "TBW102"), "{text}");
    let list = ok_json(ns, &["topic", "list"]).await;
    assert_eq!(list.len(), 1);
    assert!(topics_in(&list[0]).contains(&TOPIC.to_owned()), "{list:?}");

    // message send: three messages with one key into the topic's only queue.
    let sent = ok_json(
        ns,
        &[
            "message", "send", TOPIC, "hello", "--keys", KEY, "--tags", "tagA", "--count", "3",
        ],
    )
    .await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    let offsets: Vec<i64> = sent
        .iter()
        .map(|s| s["queue_offset"].as_i64().expect("queue_offset"))
        .collect();
    assert_eq!(offsets, [0, 1, 2]);
    let msg_id = sent[1]["msg_id"].as_str().expect("msg_id").to_owned();

    // message get: text and JSON of queue 0 from offset 1.
    let text = ok(
        ns,
        &["message", "get", TOPIC, "-q", "0", "-o", "1", "-m", "2"],
    )
    .await;
    assert!(
        text.contains("offset=1") && text.contains("offset=2"),
        "{text}"
    );
    assert!(!text.contains("offset=0"), "{text}");
    assert!(
        text.contains("TAGS=tagA") && text.contains("\n  hello\n"),
        "{text}"
    );
    let got = ok_json(
        ns,
        &["message", "get", TOPIC, "-q", "0", "-o", "0", "-m", "3"],
    )
    .await;
    let got = got[0].as_array().expect("array of messages");
    assert_eq!(got.len(), 3);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["queue_offset"], i as i64);
        assert_eq!(m["body"], "hello");
        assert_eq!(m["topic"], TOPIC);
        assert_eq!(m["properties"]["KEYS"], KEY);
    }
    // Past the end: a clear error naming the queue's offsets.
    let past = ferrumctl(ns, &["message", "get", TOPIC, "-o", "3"]).await;
    assert_eq!(past.status.code(), Some(1));
    let err = String::from_utf8_lossy(&past.stderr);
    assert!(
        err.contains("no message at offset 3") && err.contains("0..3"),
        "{err}"
    );

    // message query-key: all three by their key.
    let text = until(ns, &["message", "query-key", TOPIC, KEY], |out| {
        out.matches("msgId=").count() == 3
    })
    .await;
    assert!(text.contains(&format!("msgId={msg_id}")), "{text}");
    let found = ok_json(ns, &["message", "query-key", TOPIC, KEY]).await;
    assert_eq!(found[0].as_array().expect("array").len(), 3);
    let none = ok_json(ns, &["message", "query-key", TOPIC, "no-such-key"]).await;
    assert_eq!(none[0].as_array().expect("array").len(), 0);

    // message view-id: the second message by its offset message id.
    let text = ok(ns, &["message", "view-id", &msg_id]).await;
    assert!(text.starts_with(&format!("msgId={msg_id} topic={TOPIC} queue=0 offset=1 ")));
    let viewed = ok_json(ns, &["message", "view-id", &msg_id]).await;
    let viewed = &viewed[0].as_array().expect("array")[0];
    assert_eq!(viewed["msg_id"], msg_id.as_str());
    assert_eq!(viewed["queue_offset"], 1);
    assert_eq!(viewed["body"], "hello");

    // group progress before the group consumed anything: lag 3. The broker answers a group
    // without an offset with 0 while the queue still holds message 0 (RocketMQ's
    // QUERY_CONSUMER_OFFSET rule), so the table shows 0 rather than "-".
    let rows = ok_json(ns, &["group", "progress", "CtlGroup", TOPIC]).await;
    let rows = rows[0].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["broker_name"], "ctl-broker");
    assert_eq!(rows[0]["broker_offset"], 3);
    assert_eq!(rows[0]["consumer_offset"], 0);
    assert_eq!(rows[0]["lag"], 3);

    // bench consume: reads the three messages and commits the group's offsets.
    let report = ok_json(
        ns,
        &[
            "bench", "consume", TOPIC, "-g", "CtlGroup", "-d", "20", "--count", "3",
        ],
    )
    .await;
    assert_eq!(report[0]["messages"], 3, "{report:?}");
    assert_eq!(report[0]["errors"], 0, "{report:?}");
    assert_eq!(report[0]["message_size"], 5, "{report:?}");
    // Latency is per pull round trip; the per-second series counts messages.
    let pulls = report[0]["latency_us"]["count"].as_u64().expect("count");
    assert!((1..=3).contains(&pulls), "{report:?}");
    let per_second: u64 = report[0]["per_second"]
        .as_array()
        .expect("per_second")
        .iter()
        .map(|n| n.as_u64().expect("count"))
        .sum();
    assert_eq!(per_second, 3, "{report:?}");

    // group progress after: committed at the end, no lag (text and JSON).
    let text = ok(ns, &["group", "progress", "CtlGroup", TOPIC]).await;
    let cells: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(cells[1], ["ctl-broker", "0", "3", "3", "0"], "{text}");
    assert!(
        text.contains("total lag: 0 over 1 broker(s), 1 queue(s)"),
        "{text}"
    );
    let rows = ok_json(ns, &["group", "progress", "CtlGroup", TOPIC]).await;
    assert_eq!(rows[0][0]["consumer_offset"], 3);
    assert_eq!(rows[0][0]["lag"], 0);

    // A second short bench consume of the same group starts at the committed offset: nothing
    // is left to read.
    let report = ok_json(
        ns,
        &["bench", "consume", TOPIC, "-g", "CtlGroup", "-d", "2"],
    )
    .await;
    assert_eq!(report[0]["messages"], 0, "{report:?}");

    // topic delete: gone from the NameServer and from the broker.
    let text = ok(ns, &["topic", "delete", TOPIC, "-c", CLUSTER]).await;
    assert_eq!(text.trim(), format!("deleted topic {TOPIC}"));
    let list = ok_json(ns, &["topic", "list"]).await;
    assert!(!topics_in(&list[0]).contains(&TOPIC.to_owned()), "{list:?}");
    // The broker's next registrations do not bring it back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let list = ok_json(ns, &["topic", "list"]).await;
    assert!(!topics_in(&list[0]).contains(&TOPIC.to_owned()), "{list:?}");
    let gone = ferrumctl(ns, &["topic", "route", TOPIC]).await;
    assert_eq!(gone.status.code(), Some(1), "no route for a deleted topic");
    let deleted = ok_json(ns, &["topic", "delete", TOPIC, "-c", CLUSTER]).await;
    assert_eq!(
        deleted[0], TOPIC,
        "deleting again is harmless, as in RocketMQ"
    );
    drop(broker);
}
