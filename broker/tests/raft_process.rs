//! A Raft-mode broker group of three real ferrum-broker processes and two ferrum-namesrv on
//! 127.0.0.1: the elected leader registers as brokerId 0 and the followers as slaves with both
//! NameServers; after SIGKILL of the leader a new one is registered as brokerId 0 with both and
//! takes sends; the killed replica restarts from its own files and rejoins as a slave; every
//! acknowledged message is readable at the end.
//!
//! Prints the group failover time (kill → new master listed by every NameServer and the first
//! send to it acknowledged) per kill and its median / max, with where the time went, read from
//! the replicas' own log lines: the first election started, the winner leading, its first
//! quorum acknowledgement, its role change, its registration answered by every NameServer, each
//! NameServer listing it, the send acknowledged. Each kill hits a group whose replicas have all
//! caught up (the one restarted after the previous kill included). `FERRUM_RAFT_KILLS=N` sets
//! the number of kills (default 3); `FERRUM_RAFT_KILL_LAGGING=1` kills as soon as the restarted
//! replica is registered, before it has caught up.

use std::collections::BTreeSet;
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrum_client::{
    Admin, ConnectOptions, ConnectionPool, Message, MessageQueue, Producer, PullConsumer,
    PullStatus, SendStatus,
};
use ferrum_protocol::route::TopicConfig;
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

use common::{Proc, START_LINE_TIMEOUT, start_namesrv};

const STEP: Duration = Duration::from_secs(10);
const CLUSTER: &str = "RaftCluster";
const NAME: &str = "raft-a";
const TOPIC: &str = "RaftTopic";
const QUEUES: i32 = 2;

/// A step of an election as a replica logged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Candidate,
    Leader,
    QuorumAck,
    Master,
    RegisteredAsMaster,
}

/// One logged step: which replica, when (microseconds of the UTC day) and what.
#[derive(Debug, Clone, Copy)]
struct Event {
    replica: usize,
    micros_of_day: i64,
    step: Step,
}

type Events = Arc<Mutex<Vec<Event>>>;

const DAY_MICROS: i64 = 86_400_000_000;

/// The step a broker log line reports, if any, and its time of day. The lines are
/// tracing-subscriber's: `2026-01-02T03:04:05.678901Z  INFO target: message fields`.
fn parse_event(line: &str) -> Option<(i64, Step)> {
    let line: String = strip_ansi(line);
    let step = if line.contains("Raft server state") && line.contains("state=Candidate") {
        Step::Candidate
    } else if line.contains("Raft server state") && line.contains("state=Leader") {
        Step::Leader
    } else if line.contains("Raft leadership acknowledged by a quorum") {
        Step::QuorumAck
    } else if line.contains("Raft role change") && line.contains("broker_id=0") {
        Step::Master
    } else if line.contains("registered with every NameServer") && line.contains("broker_id=0") {
        Step::RegisteredAsMaster
    } else {
        return None;
    };
    let time = line.split_whitespace().next()?.split('T').nth(1)?;
    let time = time.strip_suffix('Z')?;
    let mut parts = time.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let (sec, frac) = parts.next()?.split_once('.')?;
    let sec: i64 = sec.parse().ok()?;
    let micros: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    Some((((h * 60 + m) * 60 + sec) * 1_000_000 + micros, step))
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn now_micros_of_day() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    (since.as_micros() % DAY_MICROS as u128) as i64
}

/// `at - since` in milliseconds on a clock of the day (an event just after midnight follows a
/// kill just before it).
fn millis_after(since: i64, at: i64) -> i64 {
    let d = (at - since).rem_euclid(DAY_MICROS);
    let d = if d > DAY_MICROS / 2 {
        d - DAY_MICROS
    } else {
        d
    };
    d / 1000
}

/// Replica `n{i}` of the group, on its own store directory; its election steps go to `events`.
fn start_replica(store: &Path, namesrv: &str, peers: &str, i: usize, events: &Events) -> Proc {
    start_logged_broker(
        namesrv,
        i,
        events,
        &[
            "listenPort=0".to_owned(),
            "metricsPort=0".to_owned(),
            "bindAddress=127.0.0.1".to_owned(),
            format!("storePathRootDir={}", store.display()),
            "mappedFileSizeCommitLog=1048576".to_owned(),
            format!("brokerName={NAME}"),
            format!("brokerClusterName={CLUSTER}"),
            "registerNameServerPeriod=1000".to_owned(),
            "ferrumSlaveSyncInterval=300".to_owned(),
            "enableDLegerCommitLog=true".to_owned(),
            format!("dLegerGroup={NAME}"),
            format!("dLegerPeers={peers}"),
            format!("dLegerSelfId=n{i}"),
        ],
    )
}

/// A ferrum-broker configured by `sets`, whose log lines are read for election steps (and shown
/// when `FERRUM_TEST_BROKER_LOG` is set).
fn start_logged_broker(namesrv: &str, replica: usize, events: &Events, sets: &[String]) -> Proc {
    let mut cmd = common::broker_command();
    cmd.args(["-n", namesrv]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    // The steps are logged at info; a filter of the caller's own is kept.
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrum-broker");
    let stderr = child.stderr.take().expect("stderr");
    let show = std::env::var_os("FERRUM_TEST_BROKER_LOG").is_some();
    let events = events.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if show {
                eprintln!("n{replica}: {line}");
            }
            if let Some((micros_of_day, step)) = parse_event(&line) {
                events.lock().expect("events").push(Event {
                    replica,
                    micros_of_day,
                    step,
                });
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(START_LINE_TIMEOUT)
        .expect("the broker printed its start line");
    // "ferrum-broker <name> listening on A (VIP B), advertised as C"
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("address in the start line")
        .to_owned();
    Proc { child, addr }
}

/// Three free ports for the Raft listeners (bound, then released for the brokers).
fn free_ports() -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

fn pool() -> ConnectionPool {
    ConnectionPool::new(ConnectOptions::default())
}

fn send_request(queue_id: i32, body: &str) -> RemotingCommand {
    let mut request = RemotingCommand::bare_request(RequestCode::SEND_MESSAGE_V2);
    let queue = queue_id.to_string();
    for (k, v) in [
        ("a", "raft-producer"),
        ("b", TOPIC),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", queue.as_str()),
        ("f", "0"),
        ("g", "1700000000000"),
        ("h", "0"),
        ("i", ""),
    ] {
        request.ext_fields.insert(k.to_owned(), v.to_owned());
    }
    request.with_body(body.as_bytes().to_vec())
}

/// One send straight to `addr`; the answer, or `None` if the broker did not answer.
async fn send_raw(addr: &str, queue_id: i32, body: &str) -> Option<RemotingCommand> {
    pool()
        .invoke(addr, send_request(queue_id, body), Duration::from_secs(3))
        .await
        .ok()
}

/// The group's members as the NameServer of `admin` lists them, by brokerId.
async fn members(admin: &Admin) -> std::collections::HashMap<i64, String> {
    admin
        .namesrv()
        .cluster_info()
        .await
        .ok()
        .and_then(|info| info.broker_addr_table.get(NAME).cloned())
        .map(|b| b.broker_addrs.into_iter().collect())
        .unwrap_or_default()
}

/// The index of the master if every NameServer lists exactly the live replicas: one master
/// and the rest as slaves with brokerId = position + 1.
async fn roles(admins: &[Admin], replicas: &[Option<Proc>]) -> Option<usize> {
    let mut found = None;
    for admin in admins {
        let leader = roles_at(admin, replicas).await?;
        if found.is_some_and(|f| f != leader) {
            return None;
        }
        found = Some(leader);
    }
    found
}

async fn roles_at(admin: &Admin, replicas: &[Option<Proc>]) -> Option<usize> {
    let m = members(admin).await;
    let master = m.get(&0)?;
    let leader = replicas
        .iter()
        .position(|r| r.as_ref().is_some_and(|p| &p.addr == master))?;
    replicas
        .iter()
        .enumerate()
        .all(|(i, r)| match r {
            Some(p) if i != leader => m.get(&(i as i64 + 1)) == Some(&p.addr),
            _ => true,
        })
        .then_some(leader)
}

/// Waits until [`roles`] finds one master and its slaves; returns the master's index.
async fn wait_for_roles(admins: &[Admin], replicas: &[Option<Proc>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = roles(admins, replicas).await {
            return leader;
        }
        let mut listed = Vec::new();
        for admin in admins {
            listed.push(members(admin).await);
        }
        assert!(
            Instant::now() < deadline,
            "one master and its slaves registered with every NameServer: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The index of the master `admin`'s NameServer lists if it is a live replica other than
/// `old_addr`.
async fn new_master(admin: &Admin, replicas: &[Option<Proc>], old_addr: &str) -> Option<usize> {
    let m = members(admin).await;
    let master = m.get(&0).filter(|a| *a != old_addr)?;
    replicas
        .iter()
        .position(|r| r.as_ref().is_some_and(|p| &p.addr == master))
}

/// Waits until the leader at `leader_addr` reports every peer caught up and everything applied.
async fn wait_caught_up(admin: &Admin, leader_addr: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let status = admin
            .raft_status(leader_addr)
            .await
            .expect("the leader reports its Raft status");
        assert_eq!(status.role, "Leader");
        assert_eq!(status.leader, Some(status.node_id));
        assert!(status.term >= 1);
        assert_eq!(status.peers.len(), 3);
        if status.peers.iter().all(|p| p.lag == Some(0))
            && status.applied_index == status.last_log_index
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "every peer catches up with the leader: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `ferrumctl [--json] raft status -b <addr>`; its stdout.
async fn ferrumctl(namesrv: &str, json: bool, addr: &str) -> String {
    let mut args = vec!["-n", namesrv];
    if json {
        args.push("--json");
    }
    args.extend(["raft", "status", "-b", addr]);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::sibling_binary("ferrum-client", "ferrumctl"))
            .args(&args)
            .output()
            .expect("run ferrumctl")
    })
    .await
    .expect("ferrumctl ran");
    assert!(
        out.status.success(),
        "ferrumctl raft status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ferrumctl prints UTF-8")
}

/// `ferrumctl raft status` on the caught-up leader `n{leader}` prints the commit index the
/// leader reports (not the applied index under its name), in text and in JSON.
async fn ferrumctl_raft_status(namesrv: &str, leader_addr: &str, leader: usize) {
    let json: serde_json::Value =
        serde_json::from_str(&ferrumctl(namesrv, true, leader_addr).await)
            .expect("ferrumctl --json prints JSON");
    let last = json["lastLogIndex"].as_u64().expect("lastLogIndex");
    assert_eq!(json["role"], "Leader");
    assert_eq!(json["selfId"], format!("n{leader}"));
    assert_eq!(json["commitIndex"].as_u64(), Some(last), "{json}");
    assert_eq!(json["appliedIndex"].as_u64(), Some(last), "{json}");
    let peers = json["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 3);
    assert!(
        peers
            .iter()
            .all(|p| p["matchIndex"].as_u64() == Some(last) && p["lag"].as_u64() == Some(0)),
        "{json}"
    );

    let text = ferrumctl(namesrv, false, leader_addr).await;
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("node=n{leader} (")), "{text}");
    assert!(first.contains(" role=Leader "), "{text}");
    assert!(
        first.contains(&format!(
            "last_log_index={last} commit_index={last} applied_index={last}"
        )),
        "{text}"
    );
    let peer_lines: Vec<&str> = text.lines().filter(|l| l.contains("peer node=")).collect();
    assert_eq!(peer_lines.len(), 3, "{text}");
    assert!(
        peer_lines
            .iter()
            .all(|l| l.ends_with(&format!("match_index={last} lag=0"))),
        "{text}"
    );
}

/// Where one failover's time went, in ms after the kill.
#[derive(Debug, Default)]
struct Phases {
    first_election: Option<i64>,
    elections: usize,
    leader: Option<i64>,
    quorum_ack: Option<i64>,
    master: Option<i64>,
    registered: Option<i64>,
    /// When each NameServer first listed the new master.
    listed: Vec<i64>,
    acked: i64,
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |v: Option<i64>| v.map_or("?".to_owned(), |v| v.to_string());
        write!(
            f,
            "election {} ms ({} started), leader {}, quorum ack {}, master role {}, \
             registered {}, listed by the NameServers {:?}, send acknowledged {}",
            ms(self.first_election),
            self.elections,
            ms(self.leader),
            ms(self.quorum_ack),
            ms(self.master),
            ms(self.registered),
            self.listed,
            self.acked
        )
    }
}

/// The steps logged after `killed_at` (time of day): the first election any replica started,
/// how many were started, and the new leader's own steps.
async fn phases(events: &Events, killed_at: i64, new_leader: usize) -> Phases {
    // The winner's registration line follows its NameServer's answer by a few microseconds;
    // the log reader may not have passed it on yet.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let after: Vec<(i64, Event)> = events
            .lock()
            .expect("events")
            .iter()
            .map(|e| (millis_after(killed_at, e.micros_of_day), *e))
            .filter(|(ms, _)| *ms >= 0)
            .collect();
        let first = |step: Step| {
            after
                .iter()
                .filter(|(_, e)| e.step == step && e.replica == new_leader)
                .map(|(ms, _)| *ms)
                .min()
        };
        let found = Phases {
            first_election: after
                .iter()
                .filter(|(_, e)| e.step == Step::Candidate)
                .map(|(ms, _)| *ms)
                .min(),
            elections: after
                .iter()
                .filter(|(_, e)| e.step == Step::Candidate)
                .count(),
            leader: first(Step::Leader),
            quorum_ack: first(Step::QuorumAck),
            master: first(Step::Master),
            registered: first(Step::RegisteredAsMaster),
            ..Phases::default()
        };
        if found.registered.is_some() || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_elects_a_new_master_and_loses_nothing() {
    let kills: usize = std::env::var("FERRUM_RAFT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // Each kill is bounded by the waits below (about 80 s at worst).
    let limit = Duration::from_secs(120 + 90 * kills as u64);
    tokio::time::timeout(limit, scenario(kills))
        .await
        .expect("scenario finishes in time");
}

async fn scenario(kills: usize) {
    let kill_lagging = std::env::var_os("FERRUM_RAFT_KILL_LAGGING").is_some();
    let namesrvs = [start_namesrv(), start_namesrv()];
    let namesrv_list = format!("{};{}", namesrvs[0].addr, namesrvs[1].addr);
    let ports = free_ports();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";");
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let events: Events = Arc::default();
    let mut replicas: Vec<Option<Proc>> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| Some(start_replica(d.path(), &namesrv_list, &peers, i, &events)))
        .collect();
    let admins: Vec<Admin> = namesrvs
        .iter()
        .map(|n| Admin::new([n.addr.as_str()]))
        .collect();
    let admin = &admins[0];
    let mut leader = wait_for_roles(&admins, &replicas).await;

    // The topic on every replica, so whoever leads next can take it.
    for r in replicas.iter().flatten() {
        admin
            .create_topic(&r.addr, &TopicConfig::new(TOPIC, QUEUES))
            .await
            .expect("topic created");
    }

    // A follower refuses sends and names the leader.
    let follower = (leader + 1) % 3;
    let refused = send_raw(
        &replicas[follower].as_ref().expect("follower runs").addr,
        0,
        "to a follower",
    )
    .await
    .expect("the follower answers");
    assert_eq!(refused.code, ResponseCode::SERVICE_NOT_AVAILABLE.code());
    assert!(
        refused
            .remark
            .as_deref()
            .is_some_and(|r| r.contains("leader is")),
        "remark names the leader: {:?}",
        refused.remark
    );

    let mut acked: BTreeSet<String> = BTreeSet::new();
    let producer = Producer::new(namesrvs.iter().map(|n| n.addr.as_str()), "raft-producer");
    for i in 0..20 {
        let body = format!("first-{i}");
        let result = producer
            .send_to_queue(TOPIC, Message::new(body.clone()), i % QUEUES)
            .await
            .expect("send through the producer");
        assert_eq!(result.status, SendStatus::SendOk);
        acked.insert(body);
    }

    // The leader's Raft status (what `ferrumctl raft status` prints): every peer caught up.
    let leader_addr = replicas[leader].as_ref().expect("leader runs").addr.clone();
    wait_caught_up(admin, &leader_addr).await;
    let follower_status = admin
        .raft_status(&replicas[follower].as_ref().expect("follower runs").addr)
        .await
        .expect("a follower reports its Raft status");
    assert_eq!(follower_status.role, "Follower");
    ferrumctl_raft_status(&namesrvs[0].addr, &leader_addr, leader).await;

    let mut failovers = Vec::new();
    let mut all_listed = Vec::new();
    for round in 0..kills {
        let old = leader;
        let old_addr = replicas[old].as_ref().expect("leader runs").addr.clone();
        for i in 0..10 {
            let body = format!("round-{round}-{i}");
            let answer = send_raw(&old_addr, i % QUEUES, &body)
                .await
                .expect("the leader answers");
            assert_eq!(answer.code, 0, "send to the leader: {:?}", answer.remark);
            acked.insert(body);
        }

        let mut killed = replicas[old].take().expect("leader runs");
        let killed_at = Instant::now();
        let killed_at_of_day = now_micros_of_day();
        killed.kill();
        let deadline = killed_at + Duration::from_secs(30);
        let mut attempt = 0;
        let mut listed: Vec<Option<(usize, Duration)>> = vec![None; admins.len()];
        let new_leader = loop {
            attempt += 1;
            for (n, admin) in admins.iter().enumerate() {
                if listed[n].is_none()
                    && let Some(idx) = new_master(admin, &replicas, &old_addr).await
                {
                    listed[n] = Some((idx, killed_at.elapsed()));
                }
            }
            let listed_by_all: Vec<usize> = listed.iter().flatten().map(|(i, _)| *i).collect();
            if listed_by_all.len() == admins.len() {
                let idx = listed_by_all[0];
                assert!(
                    listed_by_all.iter().all(|i| *i == idx),
                    "the NameServers list one master: {listed:?}"
                );
                let body = format!("failover-{round}-{attempt}");
                let addr = &replicas[idx].as_ref().expect("listed replica runs").addr;
                if send_raw(addr, 0, &body).await.is_some_and(|a| a.code == 0) {
                    acked.insert(body);
                    break Some(idx);
                }
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let took = killed_at.elapsed();
        let Some(new_leader) = new_leader else {
            panic!("a new master registered and took a send after kill {round}");
        };
        let mut steps = phases(&events, killed_at_of_day, new_leader).await;
        steps.listed = listed
            .iter()
            .flatten()
            .map(|(_, at)| at.as_millis() as i64)
            .collect();
        all_listed.push(
            listed
                .iter()
                .flatten()
                .map(|(_, at)| *at)
                .max()
                .unwrap_or(took),
        );
        steps.acked = took.as_millis() as i64;
        println!("raft failover {round}: {} ms: {steps}", took.as_millis());
        failovers.push(took);
        leader = new_leader;

        // The killed replica restarts from its own files and rejoins as a slave; the next kill
        // waits until it has caught up, so every kill hits a healthy group.
        replicas[old] = Some(start_replica(
            dirs[old].path(),
            &namesrv_list,
            &peers,
            old,
            &events,
        ));
        let again = wait_for_roles(&admins, &replicas).await;
        assert_eq!(again, leader, "the restarted replica does not take over");
        if !kill_lagging {
            let leader_addr = replicas[leader].as_ref().expect("leader runs").addr.clone();
            wait_caught_up(admin, &leader_addr).await;
        }
    }
    if !failovers.is_empty() {
        let max = failovers.iter().max().copied().unwrap_or_default();
        let med = median(&mut failovers);
        let listed_max = all_listed.iter().max().copied().unwrap_or_default();
        let listed_med = median(&mut all_listed);
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "raft failover over {kills} kills: median {} ms, max {} ms; new master listed by \
             both NameServers: median {} ms, max {} ms (load average {})",
            med.as_millis(),
            max.as_millis(),
            listed_med.as_millis(),
            listed_max.as_millis(),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    // A fresh producer finds the current master through the NameServer.
    let producer = Producer::new([namesrvs[1].addr.as_str()], "raft-producer-2");
    let result = producer
        .send_to_queue(TOPIC, Message::new("last".to_owned()), 1)
        .await
        .expect("send to the new master");
    assert_eq!(result.status, SendStatus::SendOk);
    acked.insert("last".to_owned());

    // Every acknowledged message is readable from the master.
    let consumer = PullConsumer::new([namesrvs[1].addr.as_str()], "raft-readers");
    let mut got = BTreeSet::new();
    for queue_id in 0..QUEUES {
        let mq = MessageQueue {
            topic: TOPIC.to_owned(),
            broker_name: NAME.to_owned(),
            queue_id,
        };
        let mut offset = 0;
        loop {
            let result = consumer.pull(&mq, offset, 32).await.expect("pull");
            for msg in &result.messages {
                got.insert(String::from_utf8_lossy(&msg.body).into_owned());
            }
            if result.status != PullStatus::Found || result.next_begin_offset <= offset {
                break;
            }
            offset = result.next_begin_offset;
        }
    }
    let missing: Vec<&String> = acked.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not readable: {missing:?}"
    );
}

#[test]
fn broker_log_lines_give_steps_and_times() {
    let line = "\u{1b}[2m2026-11-24T23:59:59.999500Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
                ferrum_broker::raft::broker: Raft server state state=Candidate term=3";
    let (at, step) = parse_event(line).expect("a step");
    assert_eq!(step, Step::Candidate);
    assert_eq!(at, DAY_MICROS - 500);
    let line = "2026-11-25T00:00:00.1Z  INFO ferrum_broker::register: registered with every \
                NameServer broker_id=0 namesrvs=1";
    let (next, step) = parse_event(line).expect("a step");
    assert_eq!(step, Step::RegisteredAsMaster);
    assert_eq!(millis_after(at, next), 100);
    assert!(
        parse_event("2026-11-25T00:00:00.1Z  INFO x: Raft server state state=Follower").is_none()
    );
    assert!(parse_event("2026-11-25T00:00:00.1Z  INFO x: Raft role change broker_id=2").is_none());
}
