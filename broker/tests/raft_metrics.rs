//! The Raft series on the `/metrics` endpoint of three real ferrum-broker processes in Raft
//! mode: exactly one replica reports the leader role, all agree on the term, the commit and
//! applied indexes follow acknowledged sends on every replica, the leader reports each
//! follower's match index and lag, and SIGKILL of the leader shows as a new leader in a higher
//! term with the survivors' election counters moved.

mod common;

use std::path::Path;
use std::time::Duration;

use ferrum_client::{Admin, Message, Producer, SendStatus};
use ferrum_protocol::route::TopicConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Proc, spawn_reading_lines, start_namesrv};

const STEP: Duration = Duration::from_secs(10);
const GROUP: &str = "raft-m";
const TOPIC: &str = "RaftMetricsTopic";
const SENDS: usize = 30;

/// A replica and its metrics address.
struct Replica {
    proc: Proc,
    metrics: String,
}

fn start_replica(store: &Path, namesrv: &str, peers: &str, i: usize) -> Replica {
    let mut cmd = common::broker_command();
    cmd.args(["-n", namesrv]);
    for set in [
        "listenPort=0".to_owned(),
        "metricsPort=0".to_owned(),
        "bindAddress=127.0.0.1".to_owned(),
        format!("storePathRootDir={}", store.display()),
        "mappedFileSizeCommitLog=1048576".to_owned(),
        format!("brokerName={GROUP}"),
        "brokerClusterName=RaftMetricsCluster".to_owned(),
        "registerNameServerPeriod=1000".to_owned(),
        "enableDLegerCommitLog=true".to_owned(),
        format!("dLegerGroup={GROUP}"),
        format!("dLegerPeers={peers}"),
        format!("dLegerSelfId=n{i}"),
    ] {
        cmd.args(["--set", &set]);
    }
    let (child, first, rest) = spawn_reading_lines(cmd, STEP);
    let addr = first
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("address in the start line")
        .to_owned();
    let proc = Proc { child, addr };
    let metrics = loop {
        let line = rest.recv_timeout(STEP).expect("the metrics line");
        if let Some(rest) = line.split("metrics on http://").nth(1) {
            break rest.split('/').next().expect("host:port").to_owned();
        }
    };
    Replica { proc, metrics }
}

/// The `/metrics` text of `addr`, or `None` when it does not answer.
async fn scrape(addr: &str) -> Option<String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.split("\r\n\r\n").nth(1).map(str::to_owned)
    };
    tokio::time::timeout(STEP, exchange).await.ok().flatten()
}

/// The value of `name{raft_group="raft-m"<extra>}`, labels in the encoder's (sorted) order.
fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
}

fn group(extra: &str) -> String {
    format!(r#"raft_group="{GROUP}"{extra}"#)
}

fn role(text: &str, role: &str) -> Option<f64> {
    value(
        text,
        "ferrum_broker_raft_role",
        &group(&format!(r#",role="{role}""#)),
    )
}

fn gauge(text: &str, name: &str) -> f64 {
    value(text, name, &group(""))
        .unwrap_or_else(|| panic!("{name} for {GROUP} is exported:\n{text}"))
}

fn peer(text: &str, name: &str, peer: &str) -> Option<f64> {
    value(text, name, &format!(r#"peer="{peer}",{}"#, group("")))
}

/// Scrapes of the running replicas, by position.
async fn scrape_all(replicas: &[Option<Replica>]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for r in replicas {
        out.push(match r {
            Some(r) => scrape(&r.metrics).await,
            None => None,
        });
    }
    out
}

/// The position of the one replica reporting the leader role, when every running replica
/// reports one role and exactly one of them leads.
fn single_leader(texts: &[Option<String>]) -> Option<usize> {
    let mut leaders = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let Some(t) = t else { continue };
        match (role(t, "leader"), role(t, "follower")) {
            (Some(l), Some(f)) if l == 1.0 && f == 0.0 => leaders.push(i),
            (Some(l), Some(f)) if l == 0.0 && f == 1.0 => {}
            _ => return None,
        }
    }
    (leaders.len() == 1).then(|| leaders[0])
}

/// Scrapes the running replicas every 100 ms until `check` accepts the scrapes or `limit`
/// passes; the last scrapes are the error.
async fn poll<T>(
    replicas: &[Option<Replica>],
    limit: Duration,
    check: impl Fn(&[Option<String>]) -> Option<T>,
) -> Result<T, Vec<Option<String>>> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let texts = scrape_all(replicas).await;
        if let Some(found) = check(&texts) {
            return Ok(found);
        }
        if std::time::Instant::now() >= deadline {
            return Err(texts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a single leader among the running replicas and returns it with the scrapes.
async fn wait_for_leader(replicas: &[Option<Replica>]) -> (usize, Vec<Option<String>>) {
    poll(replicas, Duration::from_secs(30), |texts| {
        single_leader(texts).map(|l| (l, texts.to_vec()))
    })
    .await
    .unwrap_or_else(|texts| panic!("one replica reports the leader role: {texts:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_series_follow_sends_and_a_leader_kill() {
    tokio::time::timeout(Duration::from_secs(180), scenario())
        .await
        .expect("scenario finishes in time");
}

async fn scenario() {
    let namesrv = start_namesrv();
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let peers = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| format!("n{i}-{}", l.local_addr().expect("addr")))
        .collect::<Vec<_>>()
        .join(";");
    drop(listeners);
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut replicas: Vec<Option<Replica>> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| Some(start_replica(d.path(), &namesrv.addr, &peers, i)))
        .collect();

    // Every replica agrees on the leader's term and has counted its election (a follower
    // knows the leader once its first heartbeat arrives, so this may take a moment).
    let (leader, texts) = poll(&replicas, Duration::from_secs(30), |texts| {
        let l = single_leader(texts)?;
        let term = value(texts[l].as_deref()?, "ferrum_broker_raft_term", &group(""))?;
        texts
            .iter()
            .flatten()
            .all(|t| {
                value(t, "ferrum_broker_raft_term", &group("")) == Some(term)
                    && value(t, "ferrum_broker_raft_elections_total", &group(""))
                        .is_some_and(|e| e >= 1.0)
                    && role(t, "candidate") == Some(0.0)
            })
            .then(|| (l, texts.to_vec()))
    })
    .await
    .unwrap_or_else(|texts| panic!("one leader, one term, the election counted: {texts:?}"));
    let term = gauge(
        texts[leader].as_deref().expect("scraped"),
        "ferrum_broker_raft_term",
    );
    assert!(term >= 1.0, "a leader was elected in term {term}");

    // Acknowledged sends move the commit and applied indexes on every replica.
    let admin = Admin::new([namesrv.addr.as_str()]);
    for r in replicas.iter().flatten() {
        admin
            .create_topic(&r.proc.addr, &TopicConfig::new(TOPIC, 2))
            .await
            .expect("topic created");
    }
    let producer = Producer::new([namesrv.addr.as_str()], "raft-metrics-producer");
    for i in 0..SENDS {
        let sent = producer
            .send_to_queue(TOPIC, Message::new(format!("m-{i}")), (i % 2) as i32)
            .await
            .expect("send");
        assert_eq!(sent.status, SendStatus::SendOk);
    }
    let others: Vec<&str> = ["n0", "n1", "n2"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, p)| p)
        .collect();
    let texts = poll(&replicas, STEP, |texts| {
        let l = texts[leader].as_deref()?;
        let last_index = value(l, "ferrum_broker_raft_last_log_index", &group(""))?;
        let at = |t: &str, name: &str| value(t, name, &group(""));
        let ok = last_index >= SENDS as f64
            && texts.iter().flatten().all(|t| {
                at(t, "ferrum_broker_raft_applied_index") == Some(last_index)
                    && at(t, "ferrum_broker_raft_commit_index") == Some(last_index)
                    && at(t, "ferrum_broker_raft_apply_lag_entries") == Some(0.0)
            })
            && others.iter().all(|p| {
                peer(l, "ferrum_broker_raft_peer_lag_entries", p) == Some(0.0)
                    && peer(l, "ferrum_broker_raft_peer_match_index", p) == Some(last_index)
            });
        ok.then(|| texts.to_vec())
    })
    .await
    .unwrap_or_else(|texts| {
        panic!(
            "every replica applied and committed every entry, the leader reports each follower caught up: {texts:?}"
        )
    });
    for (i, t) in texts.iter().enumerate() {
        let t = t.as_deref().expect("scraped");
        let has_peers = t.contains("ferrum_broker_raft_peer_lag_entries{");
        assert_eq!(has_peers, i == leader, "only the leader reports peers");
        let leads = t.contains("ferrum_broker_raft_leader_quorum_ack_age_seconds{");
        assert_eq!(
            leads,
            i == leader,
            "only the leader reports its quorum ack age"
        );
    }
    let elections_before: Vec<Option<f64>> = texts
        .iter()
        .map(|t| {
            t.as_deref()
                .map(|t| gauge(t, "ferrum_broker_raft_elections_total"))
        })
        .collect();

    // SIGKILL of the leader: a survivor leads in a higher term and both counted the election.
    replicas[leader].take().expect("leader runs").proc.kill();
    let (next, texts) = wait_for_leader(&replicas).await;
    assert_ne!(next, leader);
    let t = texts[next].as_deref().expect("scraped");
    assert!(gauge(t, "ferrum_broker_raft_term") > term, "a new term");
    poll(&replicas, STEP, |texts| {
        texts
            .iter()
            .enumerate()
            .all(|(i, t)| match t {
                Some(t) => {
                    value(t, "ferrum_broker_raft_elections_total", &group("")) > elections_before[i]
                }
                None => i == leader,
            })
            .then_some(())
    })
    .await
    .unwrap_or_else(|texts| panic!("both survivors counted the new leader: {texts:?}"));
}
