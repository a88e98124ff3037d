//! Raft leader transfer and the replacement of a replica whose disk was lost, with three real
//! ferrum-broker processes and a ferrum-namesrv on 127.0.0.1.
//!
//! - `transfer_under_load_loses_nothing`: while a sender keeps sending to whoever the
//!   NameServer lists as master, leadership is handed to a named follower and to "the most
//!   up-to-date follower" (alternately, `FERRUM_RAFT_TRANSFERS=N` rounds, default 4); each time
//!   the target leads, is registered as brokerId 0 and the sender goes on; a transfer sent to a
//!   follower is refused naming the leader, an unknown target is refused; every acknowledged
//!   message is read back. Prints each transfer's time (request → SUCCESS, and request → the
//!   NameServer lists the new master) and their median / max.
//! - `five_replicas_hand_over_leadership`: four transfers in a group of five under load, every
//!   acknowledged message read back; prints each transfer's time.
//! - `a_replica_whose_disk_was_lost_catches_up_from_the_leader`: a follower is killed; a transfer
//!   to it fails and the leader keeps leading in its term; once it is behind, a transfer to it
//!   is refused at its bound while sends made meanwhile are acknowledged; with that replica down leadership
//!   still moves to the third one; the killed replica's whole store directory is deleted and it
//!   is restarted with the same dLegerSelfId; it catches up from the leader (identical CommitLog
//!   bytes at identical offsets), serves reads and then becomes leader by a transfer and takes
//!   sends.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrum_client::{Admin, ConnectOptions, ConnectionPool};
use ferrum_protocol::headers::PullMessageRequestHeader;
use ferrum_protocol::route::TopicConfig;
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

use common::{Proc, eventually, request, sibling_binary, start_broker_with_sets, start_namesrv};

const CLUSTER: &str = "RaftCluster";
const NAME: &str = "raft-t";
const TOPIC: &str = "RaftTransferTopic";
const QUEUES: i32 = 2;
const STEP: Duration = Duration::from_secs(30);

/// The tests of this file run one at a time: each starts three to five brokers, and on a
/// two-core machine running them side by side starves heartbeats into ordinary elections,
/// which the term checks here would take for a fault of the transfer.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start_replica(store: &Path, namesrv: &str, peers: &str, i: usize) -> Proc {
    start_broker_with_sets(
        namesrv,
        &[
            "listenPort=0".to_owned(),
            "metricsPort=0".to_owned(),
            "bindAddress=127.0.0.1".to_owned(),
            format!("storePathRootDir={}", store.display()),
            // One CommitLog file holds all of a test's messages: retention never deletes the
            // file being written, and on a well-filled disk (RocketMQ's forced cleaning starts
            // at 85 % used) it would delete older ones under the test.
            "mappedFileSizeCommitLog=8388608".to_owned(),
            format!("brokerName={NAME}"),
            format!("brokerClusterName={CLUSTER}"),
            "registerNameServerPeriod=1000".to_owned(),
            "ferrumSlaveSyncInterval=300".to_owned(),
            // Followers serve pulls themselves instead of sending consumers to the master.
            "slaveReadEnable=true".to_owned(),
            "enableDLegerCommitLog=true".to_owned(),
            format!("dLegerGroup={NAME}"),
            format!("dLegerPeers={peers}"),
            format!("dLegerSelfId=n{i}"),
        ],
    )
}

/// A NameServer and its replicas `n0, n1, …`, each on its own store directory.
struct Group {
    namesrv: Proc,
    peers: String,
    dirs: Vec<tempfile::TempDir>,
    replicas: Vec<Option<Proc>>,
    admin: Admin,
}

impl Group {
    fn start() -> Group {
        Group::start_n(3)
    }

    /// A NameServer and `n` replicas `n0..n{n-1}`.
    fn start_n(n: usize) -> Group {
        let namesrv = start_namesrv();
        // Bound together, then released for the brokers, so the three ports differ.
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let peers = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| format!("n{i}-127.0.0.1:{}", l.local_addr().expect("addr").port()))
            .collect::<Vec<_>>()
            .join(";");
        drop(listeners);
        let dirs: Vec<tempfile::TempDir> = (0..n)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let replicas = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| Some(start_replica(d.path(), &namesrv.addr, &peers, i)))
            .collect();
        let admin = Admin::new([namesrv.addr.as_str()]);
        Group {
            namesrv,
            peers,
            dirs,
            replicas,
            admin,
        }
    }

    fn addr(&self, i: usize) -> String {
        self.replicas[i]
            .as_ref()
            .expect("replica runs")
            .addr
            .clone()
    }

    fn restart(&mut self, i: usize) {
        self.replicas[i] = Some(start_replica(
            self.dirs[i].path(),
            &self.namesrv.addr,
            &self.peers,
            i,
        ));
    }

    /// The NameServer's brokerId → address table of the group.
    async fn members(&self) -> HashMap<i64, String> {
        members(&self.admin).await
    }

    /// The master's index when the NameServer lists every running replica in its role.
    async fn roles(&self) -> Option<usize> {
        let m = self.members().await;
        let master = m.get(&0)?;
        let leader = self
            .replicas
            .iter()
            .position(|r| r.as_ref().is_some_and(|p| &p.addr == master))?;
        self.replicas
            .iter()
            .enumerate()
            .all(|(i, r)| match r {
                Some(p) if i != leader => m.get(&(i as i64 + 1)) == Some(&p.addr),
                _ => true,
            })
            .then_some(leader)
    }

    async fn wait_for_roles(&self) -> usize {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(leader) = self.roles().await {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "one master and its slaves registered: {:?}",
                self.members().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the leader at `leader` reports every peer caught up and everything applied.
    async fn wait_caught_up(&self, leader: usize) {
        let addr = self.addr(leader);
        let ok = eventually(STEP, || async {
            self.admin.raft_status(&addr).await.is_ok_and(|s| {
                s.role == "Leader"
                    && s.peers.iter().all(|p| p.lag == Some(0))
                    && s.applied_index == s.last_log_index
            })
        })
        .await;
        assert!(
            ok,
            "every peer catches up: {:?}",
            self.admin.raft_status(&addr).await
        );
    }
}

async fn members(admin: &Admin) -> HashMap<i64, String> {
    admin
        .namesrv()
        .cluster_info()
        .await
        .ok()
        .and_then(|info| info.broker_addr_table.get(NAME).cloned())
        .map(|b| b.broker_addrs.into_iter().collect())
        .unwrap_or_default()
}

fn pool() -> ConnectionPool {
    ConnectionPool::new(ConnectOptions::default())
}

fn send_request(queue_id: i32, body: &str) -> RemotingCommand {
    let queue = queue_id.to_string();
    request(
        RequestCode::SEND_MESSAGE_V2,
        &[
            ("a", "raft-transfer-producer"),
            ("b", TOPIC),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", &queue),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("i", ""),
        ],
    )
    .with_body(body.as_bytes().to_vec())
}

async fn send_raw(pool: &ConnectionPool, addr: &str, queue_id: i32, body: &str) -> Option<i32> {
    pool.invoke(addr, send_request(queue_id, body), Duration::from_secs(5))
        .await
        .ok()
        .map(|a| a.code)
}

async fn transfer_raw(addr: &str, target: Option<&str>) -> RemotingCommand {
    let fields: Vec<(&str, &str)> = target.map(|t| vec![("targetId", t)]).unwrap_or_default();
    pool()
        .invoke(
            addr,
            request(RequestCode::FERRUM_RAFT_TRANSFER_LEADER, &fields),
            Duration::from_secs(15),
        )
        .await
        .expect("the broker answers")
}

/// Every message body of `TOPIC` that the broker at `addr` serves, by pulling each queue from
/// offset 0 straight from that broker (master or slave).
async fn read_all_from(addr: &str) -> Vec<(i32, i64, String)> {
    let pool = pool();
    let mut out = Vec::new();
    for queue_id in 0..QUEUES {
        let mut offset = 0;
        loop {
            let header = PullMessageRequestHeader {
                consumer_group: "raft-transfer-readers".to_owned(),
                topic: TOPIC.to_owned(),
                queue_id,
                queue_offset: offset,
                max_msg_nums: 64,
                // FLAG_SUBSCRIPTION: the subscription travels with the request.
                sys_flag: 0x4,
                commit_offset: 0,
                suspend_timeout_millis: 0,
                subscription: Some("*".to_owned()),
                sub_version: 0,
                expression_type: Some("TAG".to_owned()),
                ..Default::default()
            };
            let cmd = RemotingCommand::request(RequestCode::PULL_MESSAGE, &header);
            let Ok(answer) = pool.invoke(addr, cmd, Duration::from_secs(5)).await else {
                break;
            };
            if answer.code != ResponseCode::SUCCESS.code() {
                break;
            }
            let msgs = ferrum_protocol::message::decode_all(&answer.body, true)
                .expect("pulled records decode");
            if msgs.is_empty() {
                break;
            }
            for m in &msgs {
                out.push((
                    queue_id,
                    m.queue_offset,
                    String::from_utf8_lossy(&m.body).into_owned(),
                ));
            }
            offset = msgs.last().map_or(offset, |m| m.queue_offset + 1);
        }
    }
    out
}

/// Sends to whoever the NameServer lists as master until stopped; keeps the acknowledged bodies
/// and when each was acknowledged.
struct Sender {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(Instant, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sender {
    fn start(namesrv: &str) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let admin = Admin::new([namesrv]);
        let task = {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let pool = pool();
                let mut master: Option<String> = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let Some(addr) = master.clone() else {
                        master = members(&admin).await.get(&0).cloned();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    n += 1;
                    let body = format!("load-{n}");
                    match send_raw(&pool, &addr, (n % QUEUES as u64) as i32, &body).await {
                        Some(0) => acked.lock().expect("acked").push((Instant::now(), body)),
                        _ => {
                            master = None;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            })
        };
        Sender { stop, acked, task }
    }

    fn count(&self) -> usize {
        self.acked.lock().expect("acked").len()
    }

    async fn wait_for_more(&self, than: usize) {
        let ok = eventually(STEP, || async { self.count() > than + 5 }).await;
        assert!(ok, "sends are acknowledged again after the transfer");
    }

    async fn finish(self) -> Vec<(Instant, String)> {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("sender ends");
        Arc::try_unwrap(self.acked)
            .expect("sender gone")
            .into_inner()
            .expect("acked")
    }
}

fn median_max(v: &[Duration]) -> (u128, u128) {
    let mut v = v.to_vec();
    v.sort();
    (
        v[v.len() / 2].as_millis(),
        v.last().copied().unwrap_or_default().as_millis(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_under_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let rounds: usize = std::env::var("FERRUM_RAFT_TRANSFERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(2);
    let limit = Duration::from_secs(120 + 40 * rounds as u64);
    tokio::time::timeout(limit, transfers(rounds))
        .await
        .expect("scenario finishes in time");
}

async fn transfers(rounds: usize) {
    let group = Group::start();
    let mut leader = group.wait_for_roles().await;
    for i in 0..3 {
        group
            .admin
            .create_topic(&group.addr(i), &TopicConfig::new(TOPIC, QUEUES))
            .await
            .expect("topic created");
    }

    // Refusals: a follower names the leader, an unknown target is refused, nothing changes.
    let follower = (leader + 1) % 3;
    let refused = transfer_raw(&group.addr(follower), Some(&format!("n{follower}"))).await;
    assert_eq!(refused.code, ResponseCode::SERVICE_NOT_AVAILABLE.code());
    let remark = refused.remark.unwrap_or_default();
    assert!(
        remark.contains(&format!("leader is n{leader} (127.0.0.1:")),
        "the follower names the leader's id and address: {remark}"
    );
    let unknown = transfer_raw(&group.addr(leader), Some("n9")).await;
    assert_eq!(unknown.code, ResponseCode::INVALID_PARAMETER.code());
    let remark = unknown.remark.unwrap_or_default();
    assert!(
        remark.contains("targetId n9") && remark.contains("n0, n1, n2"),
        "{remark}"
    );
    let same = transfer_raw(&group.addr(leader), Some(&format!("n{leader}"))).await;
    assert_eq!(same.code, 0, "the leader itself is already the target");
    assert_eq!(group.wait_for_roles().await, leader);

    let sender = Sender::start(&group.namesrv.addr);
    sender.wait_for_more(0).await;
    let mut answered = Vec::new();
    let mut registered = Vec::new();
    for round in 0..rounds {
        group.wait_caught_up(leader).await;
        let named = round % 2 == 0;
        let target = named.then(|| format!("n{}", (leader + 1 + round / 2 % 2) % 3));
        let old_addr = group.addr(leader);
        let before = sender.count();
        let started = Instant::now();
        let result = group
            .admin
            .transfer_leader(&old_addr, target.as_deref())
            .await
            .expect("the transfer succeeds");
        let answer_took = started.elapsed();
        if let Some(t) = &target {
            assert_eq!(&result.leader_id, t, "the named follower leads");
        }
        assert_ne!(result.leader_id, format!("n{leader}"), "leadership moved");
        assert_eq!(result.previous_leader_id, format!("n{leader}"));
        let new_leader: usize = result.leader_id[1..].parse().expect("nN");
        // The new leader is registered as brokerId 0 with the NameServer, the old as a slave.
        // Polled every 10 ms: this is the figure printed below.
        let registered_by = started + STEP;
        while group.roles().await != Some(new_leader) {
            assert!(
                Instant::now() < registered_by,
                "new master registered: {:?}",
                group.members().await
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let registered_took = started.elapsed();
        let status = group
            .admin
            .raft_status(&group.addr(new_leader))
            .await
            .expect("status");
        assert_eq!(status.role, "Leader");
        assert!(status.term >= result.term);
        assert_eq!(
            status.self_id, result.leader_id,
            "status names replicas by dLegerSelfId"
        );
        let mut ids: Vec<&str> = status.peers.iter().map(|p| p.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["n0", "n1", "n2"]);
        println!(
            "raft transfer {round} ({}): n{leader} -> {} term {}: answered {} ms, registered {} ms (broker-side {} ms)",
            if named { "named" } else { "most up to date" },
            result.leader_id,
            result.term,
            answer_took.as_millis(),
            registered_took.as_millis(),
            result.elapsed_millis
        );
        answered.push(answer_took);
        registered.push(registered_took);
        sender.wait_for_more(before).await;
        leader = new_leader;
    }
    // The same through ferrumctl, as an operator would run it.
    group.wait_caught_up(leader).await;
    let namesrv = group.namesrv.addr.clone();
    let leader_addr = group.addr(leader);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(sibling_binary("ferrum-client", "ferrumctl"))
            .args(["-n", &namesrv, "--json", "raft", "transfer-leader", "-b"])
            .arg(&leader_addr)
            .output()
            .expect("run ferrumctl")
    })
    .await
    .expect("ferrumctl ran");
    assert!(
        out.status.success(),
        "ferrumctl raft transfer-leader: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("ferrumctl prints JSON");
    assert_eq!(result["previousLeaderId"], format!("n{leader}"));
    let new_leader: usize = result["leaderId"]
        .as_str()
        .and_then(|id| id.strip_prefix('n'))
        .and_then(|n| n.parse().ok())
        .expect("leaderId nN");
    assert_ne!(new_leader, leader);
    let ok = eventually(STEP, || async { group.roles().await == Some(new_leader) }).await;
    assert!(ok, "ferrumctl's new master registered");
    leader = new_leader;

    let acked = sender.finish().await;
    let (am, ax) = median_max(&answered);
    let (rm, rx) = median_max(&registered);
    let gap = acked
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    println!(
        "raft transfer over {rounds} transfers: answered median {am} ms, max {ax} ms; registered as master median {rm} ms, max {rx} ms; {} sends acknowledged, longest pause between acknowledgements {} ms",
        acked.len(),
        gap.as_millis()
    );

    // Every acknowledged message is served by the leader, at one offset each.
    group.wait_caught_up(leader).await;
    let read = read_all_from(&group.addr(leader)).await;
    let got: BTreeSet<&str> = read.iter().map(|(_, _, b)| b.as_str()).collect();
    let missing: Vec<&String> = acked
        .iter()
        .map(|(_, b)| b)
        .filter(|b| !got.contains(b.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not readable: {missing:?}"
    );
    let mut at: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    for (q, o, b) in &read {
        assert!(at.insert((*q, *o), b).is_none(), "one message per offset");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_replicas_hand_over_leadership() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(180), five_replicas())
        .await
        .expect("scenario finishes in time");
}

/// With five replicas the target needs two votes besides its own, so at least one follower
/// whose lease ran out when the old leader was elected recently.
async fn five_replicas() {
    let group = Group::start_n(5);
    let mut leader = group.wait_for_roles().await;
    for i in 0..5 {
        group
            .admin
            .create_topic(&group.addr(i), &TopicConfig::new(TOPIC, QUEUES))
            .await
            .expect("topic created");
    }
    let sender = Sender::start(&group.namesrv.addr);
    sender.wait_for_more(0).await;
    for round in 0..4 {
        group.wait_caught_up(leader).await;
        let target = (round % 2 == 0).then(|| format!("n{}", (leader + 2) % 5));
        let before = sender.count();
        let started = Instant::now();
        let result = group
            .admin
            .transfer_leader(&group.addr(leader), target.as_deref())
            .await
            .expect("the transfer succeeds");
        let took = started.elapsed();
        if let Some(t) = &target {
            assert_eq!(&result.leader_id, t);
        }
        let new_leader: usize = result.leader_id[1..].parse().expect("nN");
        assert_ne!(new_leader, leader);
        let ok = eventually(STEP, || async { group.roles().await == Some(new_leader) }).await;
        assert!(ok, "new master registered: {:?}", group.members().await);
        println!(
            "raft transfer of five replicas {round}: n{leader} -> {} term {}: answered {} ms",
            result.leader_id,
            result.term,
            took.as_millis()
        );
        sender.wait_for_more(before).await;
        leader = new_leader;
    }
    let acked = sender.finish().await;
    group.wait_caught_up(leader).await;
    let got: BTreeSet<String> = read_all_from(&group.addr(leader))
        .await
        .into_iter()
        .map(|(_, _, b)| b)
        .collect();
    let missing = acked.iter().filter(|(_, b)| !got.contains(b)).count();
    assert_eq!(missing, 0, "every acknowledged message is readable");
}

/// The CommitLog files of a store directory by name, with their bytes.
fn commit_log(root: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(root.join("commitlog"))
        .expect("commitlog dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

/// Sends `n` messages of 4 KiB to `to`, each of which must be acknowledged.
async fn send_n(to: &str, n: usize, tag: &str, acked: &mut Vec<String>) {
    let pool = pool();
    let pad = "x".repeat(4096);
    for i in 0..n {
        let body = format!("{tag}-{i}-{pad}");
        let code = send_raw(&pool, to, (i % 2) as i32, &body).await;
        assert_eq!(code, Some(0), "send {tag}-{i} acknowledged");
        acked.push(body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_disk_was_lost_catches_up_from_the_leader() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(240), replace_replica())
        .await
        .expect("scenario finishes in time");
}

async fn replace_replica() {
    let mut group = Group::start();
    let mut leader = group.wait_for_roles().await;
    for i in 0..3 {
        group
            .admin
            .create_topic(&group.addr(i), &TopicConfig::new(TOPIC, QUEUES))
            .await
            .expect("topic created");
    }
    let mut acked = Vec::new();
    send_n(&group.addr(leader), 300, "before", &mut acked).await;

    let lost = (leader + 1) % 3;
    group.replicas[lost].take().expect("follower runs").kill();
    // A transfer to the stopped replica fails within its bound and leaves the leader leading
    // in its term (heartbeats and elections back on).
    let term_before = group
        .admin
        .raft_status(&group.addr(leader))
        .await
        .expect("status")
        .term;
    let failed = transfer_raw(&group.addr(leader), Some(&format!("n{lost}"))).await;
    assert!(
        [
            ResponseCode::SYSTEM_ERROR.code(),
            ResponseCode::SYSTEM_BUSY.code()
        ]
        .contains(&failed.code),
        "a transfer to a stopped replica fails: {} {:?}",
        failed.code,
        failed.remark
    );
    let remark = failed.remark.unwrap_or_default();
    assert!(remark.contains(&format!("n{lost}")), "{remark}");
    // Once it is behind, the transfer waits for it with the gate open: sends made meanwhile are
    // acknowledged, and the transfer is refused when its bound passes.
    let leader_addr = group.addr(leader);
    let lost_id = format!("n{lost}");
    send_n(&leader_addr, 5, "behind", &mut acked).await;
    let (behind, ()) = tokio::join!(
        transfer_raw(&leader_addr, Some(&lost_id)),
        send_n(&leader_addr, 20, "during-refused-transfer", &mut acked)
    );
    let remark = behind.remark.unwrap_or_default();
    assert_eq!(behind.code, ResponseCode::SYSTEM_BUSY.code(), "{remark}");
    assert!(
        remark.contains(&format!("n{lost} did not catch up")),
        "{remark}"
    );
    let dir = group.dirs[lost].path().to_owned();
    std::fs::remove_dir_all(&dir).expect("the follower's store is deleted");
    assert!(!dir.exists());
    send_n(&group.addr(leader), 25, "while-down", &mut acked).await;
    let status = group
        .admin
        .raft_status(&group.addr(leader))
        .await
        .expect("status");
    assert_eq!(
        (status.role.as_str(), status.term),
        ("Leader", term_before),
        "the leader kept leading after the failed transfer"
    );

    // With one replica of three down, leadership still moves: the target needs the old
    // leader's own vote.
    let third = 3 - leader - lost;
    let moved = group
        .admin
        .transfer_leader(&group.addr(leader), Some(&format!("n{third}")))
        .await
        .expect("transfer with one replica down");
    assert_eq!(moved.leader_id, format!("n{third}"));
    let ok = eventually(STEP, || async { group.roles().await == Some(third) }).await;
    assert!(ok, "the third replica registered as master");
    leader = third;
    send_n(&group.addr(leader), 25, "while-down-moved", &mut acked).await;

    // Same dLegerSelfId, empty disk: it rejoins as a slave and is repaired from the leader's log.
    group.restart(lost);
    assert_eq!(group.wait_for_roles().await, leader, "the leader stays");
    send_n(&group.addr(leader), 20, "after", &mut acked).await;
    group.wait_caught_up(leader).await;

    let theirs = commit_log(group.dirs[leader].path());
    let ours = commit_log(&dir);
    assert!(!theirs.is_empty(), "the leader has CommitLog files");
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "same CommitLog files"
    );
    for (name, bytes) in &theirs {
        assert!(
            ours[name] == *bytes,
            "CommitLog file {name} is byte-identical"
        );
    }

    // It serves reads of everything, old and new.
    let lost_addr = group.addr(lost);
    let ok = eventually(STEP, || async {
        let got: BTreeSet<String> = read_all_from(&lost_addr)
            .await
            .into_iter()
            .map(|(_, _, b)| b)
            .collect();
        acked.iter().all(|b| got.contains(b))
    })
    .await;
    assert!(ok, "the replaced replica serves every acknowledged message");

    // And it can lead.
    let result = group
        .admin
        .transfer_leader(&group.addr(leader), Some(&format!("n{lost}")))
        .await
        .expect("transfer to the replaced replica");
    assert_eq!(result.leader_id, format!("n{lost}"));
    let ok = eventually(STEP, || async { group.roles().await == Some(lost) }).await;
    assert!(ok, "the replaced replica registered as master");
    send_n(&lost_addr, 10, "on-replaced", &mut acked).await;
    let got: BTreeSet<String> = read_all_from(&lost_addr)
        .await
        .into_iter()
        .map(|(_, _, b)| b)
        .collect();
    let missing = acked.iter().filter(|b| !got.contains(*b)).count();
    assert_eq!(missing, 0, "every acknowledged message is readable");
}
