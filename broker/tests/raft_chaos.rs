//! Raft safety under randomized faults: a Raft-mode group of real ferrum-broker processes and a
//! ferrum-namesrv, with producers and a consumer running throughout while seeded fault
//! schedules hit the group, one after the other; after each schedule the faults are healed,
//! the group must elect a leader and acknowledge sends again, and every replica is read back.
//! The checker (`chaos/checker.rs`) judges: no acknowledged message lost, never two different
//! messages at one (topic, queue, queue offset) across replicas and time, offsets monotonic.
//!
//! Two fabrics:
//! - **loopback** (default, `cargo test`): processes on 127.0.0.1; faults are SIGKILL + restart,
//!   kill loops and SIGSTOP/SIGCONT (a frozen replica is cut off from everyone and resumes with
//!   stale state). 6 schedules unless `FERRUM_RAFT_CHAOS_SCHEDULES` says otherwise.
//! - **network namespaces** (`FERRUM_RAFT_CHAOS_NETNS=1`, root, set up by
//!   `hack/e2e/raft-chaos.sh`): replica `i` runs in namespace `ferrum-raft{i}` at
//!   `10.79.{i+1}.2` (veth `frv{i}-ns`, gateway `10.79.{i+1}.1` in the root namespace, where the
//!   NameServer and the clients run); also partitions (leader isolated, minority/majority
//!   splits) and random packet loss with iptables in each namespace, and slow links with tc
//!   (netem when the kernel has it, else tbf).
//!
//! `FERRUM_RAFT_CHAOS_SEED` replays a run (the seed is printed first); `FERRUM_RAFT_CHAOS_REPLICAS`
//! is 3 (default) or 5.

mod chaos;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrum_client::{
    Admin, ConnectOptions, ConnectionPool, Message, MessageQueue, Producer, ProducerConfig,
    PullConfig, PullConsumer, PullStatus, SendStatus,
};
use ferrum_protocol::headers::PullMessageRequestHeader;
use ferrum_protocol::message::decode_all;
use ferrum_protocol::replica::{RaftStatus, raft_node_id};
use ferrum_protocol::route::TopicConfig;
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

use chaos::checker::{Ack, Checker, Position, Read, Report};
use chaos::schedule::{Abilities, Fault, Rng, Schedule, Target, schedules};
use common::{Proc, spawn_reading_lines};

const CLUSTER: &str = "ChaosCluster";
const GROUP: &str = "raft-chaos";
const TOPIC: &str = "ChaosTopic";
const QUEUES: i32 = 4;
const PRODUCERS: u32 = 2;
/// How long a healed group may take to name one leader that every replica follows.
const HEAL_LIMIT: Duration = Duration::from_secs(60);
/// How long a healed group may take to acknowledge a send again.
const ACK_LIMIT: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a command and says what went wrong, if anything; fault commands that fail are reported,
/// not fatal (healing flushes whatever was applied).
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn signal(pid: u32, sig: &str) {
    if let Err(e) = run("kill", &[sig, &pid.to_string()]) {
        eprintln!("chaos: {e}");
    }
}

/// Where the replicas run.
#[derive(Debug, Clone)]
enum Fabric {
    Loopback,
    Netns,
}

impl Fabric {
    fn ns(i: usize) -> String {
        format!("ferrum-raft{i}")
    }

    fn ip(&self, i: usize) -> String {
        match self {
            Fabric::Loopback => "127.0.0.1".to_owned(),
            Fabric::Netns => format!("10.79.{}.2", i + 1),
        }
    }

    fn in_ns(i: usize, program: &str, args: &[&str]) -> Result<(), String> {
        let ns = Self::ns(i);
        let mut all = vec!["netns", "exec", ns.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

struct Replica {
    index: usize,
    node_id: u64,
    addr: String,
    listen_port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
    frozen: bool,
}

struct Group {
    fabric: Fabric,
    namesrv_for_brokers: Vec<String>,
    peers: String,
    replicas: Vec<Replica>,
    /// Whether the kernel refused netem (then slow links use tbf).
    netem_refused: Option<String>,
}

/// `n` listen ports `p` with `p - 2` free too (the broker binds its VIP port there) and `n`
/// Raft ports, all distinct, on 127.0.0.1 (held until all are picked).
fn free_port_pairs(n: usize) -> (Vec<u16>, Vec<u16>) {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        if p < 1026 {
            continue;
        }
        if let Ok(vip) = std::net::TcpListener::bind(("127.0.0.1", p - 2)) {
            ports.push(p);
            held.push(vip);
        }
        held.push(l);
    }
    let raft = (0..n)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let p = l.local_addr().expect("addr").port();
            held.push(l);
            p
        })
        .collect();
    (ports, raft)
}

fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

impl Group {
    fn start(fabric: Fabric, n: usize, namesrv_port: u16, root: &Path) -> Group {
        let (listen, raft) = match fabric {
            Fabric::Loopback => free_port_pairs(n),
            Fabric::Netns => (vec![10911; n], vec![10920; n]),
        };
        let peers = (0..n)
            .map(|i| format!("n{i}-{}:{}", fabric.ip(i), raft[i]))
            .collect::<Vec<_>>()
            .join(";");
        let namesrv_for_brokers = (0..n)
            .map(|i| match fabric {
                Fabric::Loopback => format!("127.0.0.1:{namesrv_port}"),
                Fabric::Netns => format!("10.79.{}.1:{namesrv_port}", i + 1),
            })
            .collect();
        let replicas = (0..n)
            .map(|i| Replica {
                index: i,
                node_id: raft_node_id(&format!("n{i}")),
                addr: format!("{}:{}", fabric.ip(i), listen[i]),
                listen_port: listen[i],
                dir: root.join(format!("n{i}")),
                proc: None,
                frozen: false,
            })
            .collect();
        let mut group = Group {
            fabric,
            namesrv_for_brokers,
            peers,
            replicas,
            netem_refused: None,
        };
        for i in 0..n {
            group.launch(i);
        }
        group
    }

    fn launch(&mut self, i: usize) {
        let r = &self.replicas[i];
        // Next to the test binary (cargo puts it there; hack/e2e/raft-chaos.sh runs copies of
        // both, so a rebuild elsewhere during the drill cannot swap the broker under it).
        let broker = common::sibling_binary("ferrum-broker", "ferrum-broker");
        let broker = broker.as_os_str();
        let mut cmd = match self.fabric {
            Fabric::Loopback => Command::new(broker),
            Fabric::Netns => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &Fabric::ns(i)]).arg(broker);
                c
            }
        };
        common::ignore_host_disk(&mut cmd);
        let ip = self.fabric.ip(i);
        cmd.args(["-n", &self.namesrv_for_brokers[i]]);
        for set in [
            format!("listenPort={}", r.listen_port),
            "metricsPort=0".to_owned(),
            format!("bindAddress={ip}"),
            format!("brokerIP1={ip}"),
            format!("storePathRootDir={}", r.dir.display()),
            "mappedFileSizeCommitLog=4194304".to_owned(),
            format!("brokerName={GROUP}"),
            format!("brokerClusterName={CLUSTER}"),
            "registerNameServerPeriod=1000".to_owned(),
            // Followers serve reads, so each replica's own view can be scanned.
            "slaveReadEnable=true".to_owned(),
            "enableDLegerCommitLog=true".to_owned(),
            format!("dLegerGroup={GROUP}"),
            format!("dLegerPeers={}", self.peers),
            format!("dLegerSelfId=n{i}"),
        ] {
            cmd.args(["--set", &set]);
        }
        let (child, _line, _rest) = spawn_reading_lines(cmd, Duration::from_secs(20));
        let r = &mut self.replicas[i];
        r.proc = Some(Proc {
            child,
            addr: r.addr.clone(),
        });
        r.frozen = false;
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.replicas[i].proc.take() {
            p.kill();
        }
        self.replicas[i].frozen = false;
    }

    fn freeze(&mut self, i: usize) {
        if let Some(p) = &self.replicas[i].proc {
            signal(p.child.id(), "-STOP");
            self.replicas[i].frozen = true;
        }
    }

    fn thaw(&mut self, i: usize) {
        if self.replicas[i].frozen
            && let Some(p) = &self.replicas[i].proc
        {
            signal(p.child.id(), "-CONT");
        }
        self.replicas[i].frozen = false;
    }

    fn reachable(&self) -> Vec<usize> {
        self.replicas
            .iter()
            .filter(|r| r.proc.is_some() && !r.frozen)
            .map(|r| r.index)
            .collect()
    }

    /// Drops every packet between replica `i` and each replica in `others`, both ways.
    fn cut(&self, i: usize, others: &[usize]) {
        for j in others {
            let ip = self.fabric.ip(*j);
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                if let Err(e) = Fabric::in_ns(i, "iptables", &["-A", chain, dir, &ip, "-j", "DROP"])
                {
                    eprintln!("chaos: {e}");
                }
            }
        }
    }

    fn lose(&self, percent: u32) {
        let p = format!("{:.2}", f64::from(percent) / 100.0);
        let n = self.replicas.len();
        for i in 0..n {
            for j in (0..n).filter(|j| *j != i) {
                let ip = self.fabric.ip(j);
                let args = [
                    "-A",
                    "INPUT",
                    "-s",
                    &ip,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ];
                if let Err(e) = Fabric::in_ns(i, "iptables", &args) {
                    eprintln!("chaos: {e}");
                }
            }
        }
    }

    fn slow(&mut self) {
        for i in 0..self.replicas.len() {
            let dev = format!("frv{i}-ns");
            if self.netem_refused.is_none() {
                match Fabric::in_ns(
                    i,
                    "tc",
                    &[
                        "qdisc", "add", "dev", &dev, "root", "netem", "delay", "40ms", "20ms",
                    ],
                ) {
                    Ok(()) => continue,
                    Err(e) => {
                        eprintln!("chaos: netem refused, slow links use tbf: {e}");
                        self.netem_refused = Some(e);
                    }
                }
            }
            let tbf = [
                "qdisc", "add", "dev", &dev, "root", "tbf", "rate", "1mbit", "burst", "16kbit",
                "latency", "300ms",
            ];
            if let Err(e) = Fabric::in_ns(i, "tc", &tbf) {
                eprintln!("chaos: {e}");
            }
        }
    }

    /// Undoes every network fault and resumes frozen replicas; killed ones are restarted.
    fn heal(&mut self) {
        if matches!(self.fabric, Fabric::Netns) {
            for i in 0..self.replicas.len() {
                for chain in ["INPUT", "OUTPUT"] {
                    if let Err(e) = Fabric::in_ns(i, "iptables", &["-F", chain]) {
                        eprintln!("chaos: {e}");
                    }
                }
                let dev = format!("frv{i}-ns");
                // No qdisc to delete is the usual case.
                let _ = Fabric::in_ns(i, "tc", &["qdisc", "del", "dev", &dev, "root"]);
            }
        }
        for i in 0..self.replicas.len() {
            self.thaw(i);
            if self.replicas[i].proc.is_none() {
                self.launch(i);
            }
        }
    }
}

fn admin(namesrv: &str) -> Admin {
    Admin::new([namesrv])
}

/// The Raft status of every reachable replica, by index (`None`: it did not answer).
async fn statuses(admin: &Admin, group: &Group) -> BTreeMap<usize, Option<RaftStatus>> {
    let mut out = BTreeMap::new();
    for i in group.reachable() {
        let addr = group.replicas[i].addr.clone();
        let status = tokio::time::timeout(Duration::from_secs(3), admin.raft_status(&addr))
            .await
            .ok()
            .and_then(Result::ok);
        out.insert(i, status);
    }
    out
}

/// The index of the leader a majority of the group follows, among the reachable replicas.
async fn leader(admin: &Admin, group: &Group) -> Option<usize> {
    let s = statuses(admin, group).await;
    let n = group.replicas.len();
    let leader_node = s.values().flatten().find(|st| st.role == "Leader")?.node_id;
    let followers = s
        .values()
        .flatten()
        .filter(|st| st.leader == Some(leader_node))
        .count();
    (followers > n / 2)
        .then(|| group.replicas.iter().position(|r| r.node_id == leader_node))
        .flatten()
}

/// Waits until every replica follows one leader that sees every peer replicating.
async fn wait_whole(admin: &Admin, group: &Group, limit: Duration) -> Result<usize, String> {
    let deadline = Instant::now() + limit;
    loop {
        let s = statuses(admin, group).await;
        let all_answer = s.len() == group.replicas.len() && s.values().all(Option::is_some);
        if all_answer {
            let st: Vec<&RaftStatus> = s.values().flatten().collect();
            if let Some(l) = st.iter().find(|x| x.role == "Leader")
                && st.iter().all(|x| x.leader == Some(l.node_id))
                && l.peers.iter().all(|p| p.match_index.is_some())
                && let Some(i) = group.replicas.iter().position(|r| r.node_id == l.node_id)
            {
                return Ok(i);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no leader followed by every replica: {s:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn resolve(target: Target, leader: usize, n: usize) -> usize {
    match target {
        Target::Leader => leader,
        Target::Follower(k) => {
            let followers: Vec<usize> = (0..n).filter(|i| *i != leader).collect();
            followers[k % followers.len()]
        }
    }
}

/// Shared state of the clients.
struct Traffic {
    checker: Mutex<Checker>,
    stop_producing: AtomicBool,
    stop_consuming: AtomicBool,
    acked: AtomicU64,
    send_errors: AtomicU64,
    reads: AtomicU64,
}

/// The CommitLog offset in an offset msgId (the last 16 hex digits).
fn commit_log_offset(msg_id: &str) -> Option<i64> {
    let hex = msg_id.get(msg_id.len().checked_sub(16)?..)?;
    u64::from_str_radix(hex, 16).ok().map(|v| v as i64)
}

async fn produce(traffic: Arc<Traffic>, namesrv: String, producer: u32, seed: u64) {
    let config = ProducerConfig {
        send_timeout: Duration::from_secs(3),
        retry_times: 0,
        route_ttl: Duration::from_millis(500),
        ..Default::default()
    };
    let client = Producer::with_config([namesrv.as_str()], "chaos-producer", config);
    let mut rng = Rng::new(seed ^ u64::from(producer).wrapping_mul(0x9E37));
    let mut n = 0u64;
    while !traffic.stop_producing.load(Ordering::Acquire) {
        n += 1;
        let queue = (n % QUEUES as u64) as i32;
        let pad = "x".repeat(rng.below(600) as usize);
        let body = format!("seed{seed}-p{producer}-{n:07}-{pad}");
        match client
            .send_to_queue(TOPIC, Message::new(body.clone()), queue)
            .await
        {
            Ok(r) if r.status == SendStatus::SendOk => {
                let Some(offset) = commit_log_offset(&r.msg_id) else {
                    traffic.send_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("chaos: unreadable msgId {:?}", r.msg_id);
                    continue;
                };
                lock(&traffic.checker).ack(Ack {
                    producer,
                    topic: TOPIC.to_owned(),
                    queue_id: r.queue.queue_id,
                    queue_offset: r.queue_offset,
                    commit_log_offset: offset,
                    body: body.into_bytes(),
                });
                traffic.acked.fetch_add(1, Ordering::Release);
            }
            Ok(_) | Err(_) => {
                traffic.send_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn consume(traffic: Arc<Traffic>, namesrv: String) {
    let config = PullConfig {
        timeout: Duration::from_secs(3),
        route_ttl: Duration::from_millis(500),
        ..Default::default()
    };
    let consumer = PullConsumer::with_config([namesrv.as_str()], "chaos-readers", config);
    let mut cursors = [0i64; QUEUES as usize];
    while !traffic.stop_consuming.load(Ordering::Acquire) {
        let mut found = false;
        for queue_id in 0..QUEUES {
            let mq = MessageQueue {
                topic: TOPIC.to_owned(),
                broker_name: GROUP.to_owned(),
                queue_id,
            };
            let at = cursors[queue_id as usize];
            let Ok(Ok(result)) =
                tokio::time::timeout(Duration::from_secs(5), consumer.pull(&mq, at, 32)).await
            else {
                continue;
            };
            if result.status != PullStatus::Found {
                continue;
            }
            found = true;
            let run: Vec<Read> = result
                .messages
                .iter()
                .map(|m| Read {
                    queue_offset: m.queue_offset,
                    commit_log_offset: m.commit_log_offset,
                    body: m.body.to_vec(),
                })
                .collect();
            traffic.reads.fetch_add(run.len() as u64, Ordering::Relaxed);
            lock(&traffic.checker).reads("consumer", TOPIC, queue_id, at, &run);
            cursors[queue_id as usize] = run.last().map_or(at, |r| r.queue_offset + 1);
        }
        if !found {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Everything `addr` serves of `queue_id` from `from` on, in order (a replica's own view: the
/// pull goes to that broker, leader or follower).
async fn scan_queue(
    pool: &ConnectionPool,
    addr: &str,
    queue_id: i32,
    from: i64,
) -> Result<Vec<Read>, String> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let header = PullMessageRequestHeader {
            consumer_group: "chaos-scanner".to_owned(),
            topic: TOPIC.to_owned(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: 64,
            sys_flag: 0x4,
            subscription: Some("*".to_owned()),
            expression_type: Some("TAG".to_owned()),
            broker_name: Some(GROUP.to_owned()),
            ..Default::default()
        };
        let cmd = RemotingCommand::request(RequestCode::PULL_MESSAGE, &header);
        let answer = pool
            .invoke(addr, cmd, Duration::from_secs(5))
            .await
            .map_err(|e| format!("pull from {addr}: {e}"))?;
        if answer.code != ResponseCode::SUCCESS.code() {
            let quiet = [
                ResponseCode::PULL_NOT_FOUND,
                ResponseCode::PULL_RETRY_IMMEDIATELY,
            ];
            if !quiet.iter().any(|c| c.code() == answer.code) {
                eprintln!(
                    "chaos: pull of queue {queue_id} at {offset} from {addr}: code {} {:?}",
                    answer.code, answer.remark
                );
            }
            return Ok(out);
        }
        let records = decode_all(&answer.body, false)
            .map_err(|e| format!("undecodable pull body from {addr}: {e}"))?;
        if records.is_empty() {
            return Ok(out);
        }
        for m in records {
            offset = m.queue_offset + 1;
            out.push(Read {
                queue_offset: m.queue_offset,
                commit_log_offset: m.commit_log_offset,
                body: m.body.to_vec(),
            });
        }
    }
}

/// Reads every replica from its cursor on and feeds the checker; returns each replica's runs.
async fn scan_all(
    pool: &ConnectionPool,
    group: &Group,
    traffic: &Traffic,
    cursors: &mut BTreeMap<(usize, i32), i64>,
) -> Result<(), String> {
    for r in &group.replicas {
        for queue_id in 0..QUEUES {
            let from = cursors.get(&(r.index, queue_id)).copied().unwrap_or(0);
            let run = scan_queue(pool, &r.addr, queue_id, from).await?;
            let source = format!("scan of n{}", r.index);
            lock(&traffic.checker).reads(&source, TOPIC, queue_id, from, &run);
            if let Some(last) = run.last() {
                cursors.insert((r.index, queue_id), last.queue_offset + 1);
            }
        }
    }
    Ok(())
}

async fn final_scans(
    pool: &ConnectionPool,
    group: &Group,
) -> Result<BTreeMap<String, BTreeMap<Position, Read>>, String> {
    let mut out = BTreeMap::new();
    for r in &group.replicas {
        let mut records = BTreeMap::new();
        for queue_id in 0..QUEUES {
            for read in scan_queue(pool, &r.addr, queue_id, 0).await? {
                records.insert((TOPIC.to_owned(), queue_id, read.queue_offset), read);
            }
        }
        out.insert(format!("n{}", r.index), records);
    }
    Ok(out)
}

/// What one drill did.
struct Outcome {
    report: Report,
    schedules: usize,
    send_errors: u64,
    consumed: u64,
    elapsed: Duration,
}

async fn apply(admin: &Admin, group: &mut Group, schedule: &Schedule, current: usize) {
    let n = group.replicas.len();
    match &schedule.fault {
        Fault::IsolateLeader => {
            let others: Vec<usize> = (0..n).filter(|i| *i != current).collect();
            group.cut(current, &others);
            for o in &others {
                group.cut(*o, &[current]);
            }
        }
        Fault::Split { minority } => {
            let mut side: Vec<usize> = minority.iter().map(|t| resolve(*t, current, n)).collect();
            side.sort_unstable();
            side.dedup();
            let rest: Vec<usize> = (0..n).filter(|i| !side.contains(i)).collect();
            for a in &side {
                group.cut(*a, &rest);
            }
            for b in &rest {
                group.cut(*b, &side);
            }
        }
        Fault::Loss { percent } => group.lose(*percent),
        Fault::Slow => group.slow(),
        Fault::Kill(t) => group.kill(resolve(*t, current, n)),
        Fault::KillLoop { target, times } => {
            let mut victim = resolve(*target, current, n);
            for k in 0..*times {
                group.kill(victim);
                tokio::time::sleep(Duration::from_millis(300)).await;
                if k + 1 < *times {
                    group.launch(victim);
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    // A leader kill loop follows the leadership wherever it goes.
                    if *target == Target::Leader
                        && let Some(l) = leader(admin, group).await
                    {
                        victim = l;
                    }
                }
            }
        }
        Fault::Freeze(t) => group.freeze(resolve(*t, current, n)),
    }
    tokio::time::sleep(schedule.hold).await;
}

async fn drill(fabric: Fabric, seed: u64, count: usize, n: usize) -> Result<Outcome, String> {
    let started = Instant::now();
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let abilities = Abilities {
        replicas: n,
        partitions: matches!(fabric, Fabric::Netns),
    };
    let plan = schedules(seed, count, abilities);

    let namesrv_port = free_ports(1)[0];
    let listen = match fabric {
        Fabric::Loopback => format!("127.0.0.1:{namesrv_port}"),
        Fabric::Netns => format!("0.0.0.0:{namesrv_port}"),
    };
    let mut ns_cmd = Command::new(common::namesrv_binary());
    ns_cmd.args(["--listen", &listen]);
    let (ns_child, _, _) = spawn_reading_lines(ns_cmd, Duration::from_secs(10));
    let namesrv_addr = format!("127.0.0.1:{namesrv_port}");
    let _namesrv = Proc {
        child: ns_child,
        addr: namesrv_addr.clone(),
    };
    let admin = admin(&namesrv_addr);
    let mut group = Group::start(fabric, n, namesrv_port, root.path());
    wait_whole(&admin, &group, HEAL_LIMIT).await?;
    for r in &group.replicas {
        admin
            .create_topic(&r.addr, &TopicConfig::new(TOPIC, QUEUES))
            .await
            .map_err(|e| format!("topic on {}: {e}", r.addr))?;
    }

    let traffic = Arc::new(Traffic {
        checker: Mutex::new(Checker::new(seed)),
        stop_producing: AtomicBool::new(false),
        stop_consuming: AtomicBool::new(false),
        acked: AtomicU64::new(0),
        send_errors: AtomicU64::new(0),
        reads: AtomicU64::new(0),
    });
    let mut clients = tokio::task::JoinSet::new();
    for p in 0..PRODUCERS {
        clients.spawn(produce(traffic.clone(), namesrv_addr.clone(), p, seed));
    }
    let consumer = tokio::spawn(consume(traffic.clone(), namesrv_addr.clone()));
    let pool = ConnectionPool::new(ConnectOptions::default());
    let mut cursors = BTreeMap::new();

    let mut failure = None;
    for (k, schedule) in plan.iter().enumerate() {
        let Ok(l) = wait_whole(&admin, &group, HEAL_LIMIT).await else {
            failure = Some(format!("schedule {k}: no leader before the fault"));
            break;
        };
        let acked_before = traffic.acked.load(Ordering::Acquire);
        println!(
            "chaos seed {seed} schedule {k}/{count}: {:?} for {} ms (leader n{l}, {} acked so far)",
            schedule.fault,
            schedule.hold.as_millis(),
            acked_before
        );
        apply(&admin, &mut group, schedule, l).await;
        group.heal();
        let healed_at = Instant::now();
        if let Err(e) = wait_whole(&admin, &group, HEAL_LIMIT).await {
            failure = Some(format!(
                "schedule {k} ({:?}): after healing, {e}",
                schedule.fault
            ));
            break;
        }
        let acked_at_heal = traffic.acked.load(Ordering::Acquire);
        while traffic.acked.load(Ordering::Acquire) == acked_at_heal {
            if healed_at.elapsed() > ACK_LIMIT {
                failure = Some(format!(
                    "schedule {k} ({:?}): no send acknowledged within {ACK_LIMIT:?} of healing",
                    schedule.fault
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if failure.is_some() {
            break;
        }
        if let Err(e) = scan_all(&pool, &group, &traffic, &mut cursors).await {
            failure = Some(format!("schedule {k}: scan: {e}"));
            break;
        }
        if !lock(&traffic.checker).violations().is_empty() {
            failure = Some(format!(
                "schedule {k} ({:?}): safety violated",
                schedule.fault
            ));
            break;
        }
    }

    traffic.stop_producing.store(true, Ordering::Release);
    while clients.join_next().await.is_some() {}
    group.heal();
    let final_check = async {
        wait_whole(&admin, &group, HEAL_LIMIT).await?;
        // Followers learn the last commit index with the next heartbeat: scan until every
        // replica serves the same positions (or the limit passes and the checker says which).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let scans = final_scans(&pool, &group).await?;
            let sizes: Vec<usize> = scans.values().map(BTreeMap::len).collect();
            if sizes.windows(2).all(|w| w[0] == w[1]) || Instant::now() >= deadline {
                return Ok::<_, String>(scans);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let scans = final_check.await;
    // The consumer reads up to the end before it stops.
    let end = Instant::now() + Duration::from_secs(10);
    let total: u64 = scans
        .as_ref()
        .map(|s| s.values().next().map_or(0, |m| m.len() as u64))
        .unwrap_or(0);
    while Instant::now() < end && traffic.reads.load(Ordering::Acquire) < total {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    traffic.stop_consuming.store(true, Ordering::Release);
    let _ = consumer.await;
    let scans = scans?;
    let checker = std::mem::replace(&mut *lock(&traffic.checker), Checker::new(seed));
    let report = checker.finish(&scans);
    for i in 0..group.replicas.len() {
        group.kill(i);
    }
    if let Some(f) = failure {
        return Err(format!("seed {seed}: {f}\n{report}"));
    }
    Ok(Outcome {
        report,
        schedules: plan.len(),
        send_errors: traffic.send_errors.load(Ordering::Relaxed),
        consumed: traffic.reads.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_fault_schedules_lose_nothing_and_never_diverge() {
    let netns = std::env::var_os("FERRUM_RAFT_CHAOS_NETNS").is_some_and(|v| v == "1");
    let fabric = if netns {
        Fabric::Netns
    } else {
        Fabric::Loopback
    };
    let seed = env_or(
        "FERRUM_RAFT_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    let count = env_or("FERRUM_RAFT_CHAOS_SCHEDULES", if netns { 50 } else { 6 });
    let replicas = env_or("FERRUM_RAFT_CHAOS_REPLICAS", 3usize);
    assert!(replicas >= 3, "a Raft group needs at least 3 replicas");
    println!(
        "chaos: seed {seed} (replay with FERRUM_RAFT_CHAOS_SEED={seed}), {count} schedules, {replicas} replicas, {fabric:?}"
    );
    // Each schedule holds its fault for at most 4 s, a kill loop adds 4 s, and healing is
    // bounded by HEAL_LIMIT + ACK_LIMIT and the scans; the whole run by this limit.
    let limit = Duration::from_secs(120 + 150 * count as u64);
    let outcome = tokio::time::timeout(limit, drill(fabric, seed, count, replicas))
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: the drill did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "chaos result: {} schedules in {:.1} s; {}; {} sends not acknowledged (errors or timeouts); {} records consumed",
        outcome.schedules,
        outcome.elapsed.as_secs_f64(),
        outcome.report,
        outcome.send_errors,
        outcome.consumed
    );
    assert!(outcome.report.is_safe(), "{}", outcome.report);
    assert!(
        outcome.report.acknowledged > 0,
        "seed {seed}: nothing was acknowledged"
    );
    // The live consumer's reads are checked too; a drill where it read nothing checked none.
    assert!(
        outcome.consumed > 0,
        "seed {seed}: the consumer read nothing"
    );
}

#[test]
fn msg_ids_name_their_commit_log_offset_and_targets_resolve() {
    // store host 127.0.0.1:10911, CommitLog offset 0x1234.
    assert_eq!(
        commit_log_offset("7F00000100002A9F0000000000001234"),
        Some(0x1234)
    );
    assert_eq!(commit_log_offset("1234"), None);
    assert_eq!(commit_log_offset("7F00000100002A9FZZZZZZZZZZZZZZZZ"), None);
    assert_eq!(resolve(Target::Leader, 1, 3), 1);
    assert_eq!(resolve(Target::Follower(0), 1, 3), 0);
    assert_eq!(resolve(Target::Follower(1), 1, 3), 2);
    assert_eq!(resolve(Target::Follower(5), 0, 5), 2);
}
