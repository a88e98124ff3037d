//! A replica whose disk was lost comes back after the leader's retention deleted the CommitLog
//! files holding the first Raft log entries. Three replicas in one process over real TCP on
//! 127.0.0.1 with small CommitLog files; the leader's forced clean (disk use at
//! `diskSpaceCleanForciblyRatio`) deletes its oldest files. The broker's retention task builds a
//! snapshot and purges the log behind it, so the leader never reads the deleted entries (that
//! read used to stop its Raft node); the wiped replica installs the snapshot, starts its
//! CommitLog at the leader's first retained file and takes the entries after it from the log. It
//! then holds byte-identical CommitLog bytes from there on, the same queue offsets for the same
//! messages (also in a queue that got nothing after the deleted files), and can lead.
//!
//! `a_wiped_broker_catches_up_after_the_leader_deleted_expired_files` does the same with three
//! real ferrum-broker processes and a ferrum-namesrv: `fileReservedTime=1` with every hour a
//! deletion hour, and the leader's oldest CommitLog files made two hours old (their
//! modification time), so its own retention deletes them.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrum_broker::raft::retention;
use ferrum_broker::raft::{
    NetworkSwitch, ProposedMessage, RaftConfig, RaftNetworkFactoryImpl, RaftNode, RaftRequest,
    RaftRpcServer, open_storage, openraft_config,
};
use ferrum_store::{MessageFilter, MessageStore, MessageStoreConfig};
use openraft::{BasicNode, ServerState};
use tokio::net::TcpListener;

use common::raft::raft_config;

const FILE: i64 = 64 * 1024;
const WAIT: Duration = Duration::from_secs(30);

struct Replica {
    id: u64,
    raft: RaftNode,
    store: MessageStore,
    server: RaftRpcServer,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

/// How old CommitLog files go in a test.
#[derive(Clone, Copy)]
enum Retention {
    /// Never expired: only the forced clean the test causes deletes.
    Forced,
    /// Every file but the last expired and every hour a deletion hour (`fileReservedTime`).
    Time,
}

async fn start_replica(
    config: &RaftConfig,
    listener: TcpListener,
    dir: tempfile::TempDir,
    retention_kind: Retention,
) -> Replica {
    let mut store_config = MessageStoreConfig::new(dir.path().join("store"));
    store_config.mapped_file_size_commit_log = FILE as usize;
    store_config.consume_queue_units_per_file = 16;
    match retention_kind {
        Retention::Forced => store_config.file_reserved_time = Duration::from_secs(72 * 3600),
        Retention::Time => {
            store_config.file_reserved_time = Duration::ZERO;
            store_config.delete_when = (0..24).map(|h| h.to_string()).collect::<Vec<_>>().join(";");
        }
    }
    store_config.clean_file_forcibly_enable = true;
    // Retention runs when the test says so.
    store_config.clean_resource_interval = Duration::from_secs(3600);
    let store = MessageStore::open(store_config).expect("store opens");
    // The machine's own disk usage must not trigger a clean.
    store.set_disk_ratio_override(Some(0.10));
    let (log, sm) = open_storage(&dir.path().join("raft"), store.clone()).expect("log opens");
    let switch = NetworkSwitch::default();
    let raft = RaftNode::new(
        config.self_node_id(),
        Arc::new(openraft_config(config).validate().expect("openraft config")),
        RaftNetworkFactoryImpl::new(switch.clone()),
        log.clone(),
        sm,
    )
    .await
    .expect("raft starts");
    let server = RaftRpcServer::start(listener, raft.clone(), switch).expect("rpc server");
    let task = retention::spawn_with_purge(store.clone(), log, raft.clone());
    Replica {
        id: config.self_node_id(),
        raft,
        store,
        server,
        task,
        dir,
    }
}

impl Replica {
    async fn stop(self) -> tempfile::TempDir {
        self.task.abort();
        self.server.shutdown();
        self.raft.shutdown().await.expect("raft stops");
        self.store.shutdown().expect("store stops");
        self.dir
    }
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "rebind {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn write(leader: &RaftNode, topic: &str, queues: i32, from: usize, n: usize) -> u64 {
    let mut last = 0;
    for i in from..from + n {
        let r = leader
            .client_write(RaftRequest::Message(ProposedMessage {
                topic: topic.into(),
                queue_id: i as i32 % queues,
                born_timestamp: 1_700_000_000_000,
                body: format!("m{i:04}-{}", "s".repeat(4000)).into_bytes(),
                ..Default::default()
            }))
            .await
            .expect("write committed by a majority");
        assert_eq!(r.data.refused, None);
        last = r.log_id.index;
    }
    last
}

fn bytes(store: &MessageStore, from: i64, end: i64) -> Vec<u8> {
    let mut at = from;
    let mut out = Vec::new();
    while at < end {
        let chunk = store
            .read_raw(at, (end - at) as usize)
            .expect("CommitLog bytes readable");
        at += chunk.len() as i64;
        out.extend_from_slice(&chunk);
    }
    out
}

fn running(replicas: &[&Replica]) {
    for r in replicas {
        let state = r.raft.metrics().borrow().state;
        assert_ne!(state, ServerState::Shutdown, "replica {} stopped", r.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_replica_starts_from_a_snapshot_after_a_forced_clean_on_the_leader() {
    lost_disk(Retention::Forced).await;
}

/// `fileReservedTime` in Raft mode: the log is purged behind a snapshot so expired files go
/// (before snapshots the retention floor kept every file).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_replica_starts_from_a_snapshot_after_time_based_retention() {
    lost_disk(Retention::Time).await;
}

async fn lost_disk(kind: Retention) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr"))
        .collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("n{i}-{a}"))
        .collect::<Vec<_>>()
        .join(";");
    let mut replicas = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        replicas.push(Some(
            start_replica(
                &raft_config("broker-snapshot", &peers, i),
                listener,
                dir,
                kind,
            )
            .await,
        ));
    }
    let members: BTreeMap<u64, BasicNode> = raft_config("broker-snapshot", &peers, 0)
        .members()
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect();
    let first = replicas[0].as_ref().expect("replica");
    first
        .raft
        .initialize(members)
        .await
        .expect("membership initialized");
    let leader_id = first
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("a leader is elected")
        .current_leader
        .expect("leader");
    let leader_at = replicas
        .iter()
        .position(|r| r.as_ref().is_some_and(|r| r.id == leader_id))
        .expect("leader replica");
    let wiped_at = (leader_at + 1) % 3;
    let other_at = (leader_at + 2) % 3;

    // A queue that gets messages only before the files that will be deleted, then many.
    let leader = replicas[leader_at].take().expect("leader");
    write(&leader.raft, "TopicEarly", 1, 0, 3).await;
    write(&leader.raft, "TopicSnapshot", 4, 0, 40).await;

    // The follower loses its disk: stopped, its directory deleted.
    let wiped = replicas[wiped_at].take().expect("follower");
    let wiped_id = wiped.id;
    drop(wiped.stop().await);

    let last = write(&leader.raft, "TopicSnapshot", 4, 40, 60).await;
    assert!(leader.store.max_phy_offset() > 5 * FILE, "several files");

    let first_retained = match kind {
        Retention::Forced => {
            // The leader's disk fills up: each forced clean deletes its oldest file.
            leader.store.set_disk_ratio_override(Some(0.86));
            for _ in 0..3 {
                leader.store.clean_now().expect("retention pass");
            }
            leader.store.set_disk_ratio_override(Some(0.10));
            assert_eq!(
                leader.store.min_phy_offset(),
                3 * FILE,
                "three files deleted"
            );
            leader.store.min_phy_offset()
        }
        Retention::Time => {
            // The task purges the entries in expired files; then the floor lets them go.
            let deadline = tokio::time::Instant::now() + WAIT;
            while leader.store.min_phy_offset() < 3 * FILE {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "expired files deleted"
                );
                leader.store.clean_now().expect("retention pass");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            leader.store.min_phy_offset()
        }
    };
    // The broker's task snapshots and purges the log behind the deleted bytes.
    leader
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some() && m.snapshot.is_some(), "log purged")
        .await
        .expect("the leader purges its log");
    let other = replicas[other_at].take().expect("other follower");
    running(&[&leader, &other]);

    // The replica comes back empty under its old id and port.
    let dir = tempfile::tempdir().expect("tempdir");
    let back = start_replica(
        &raft_config("broker-snapshot", &peers, wiped_at),
        rebind(addrs[wiped_at]).await,
        dir,
        kind,
    )
    .await;
    assert_eq!(back.id, wiped_id);
    back.raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(last), "caught up")
        .await
        .expect("the wiped replica catches up through the snapshot");
    let m = back.raft.metrics().borrow().clone();
    assert!(m.snapshot.is_some(), "it installed a snapshot");
    assert_eq!(
        back.store.min_phy_offset(),
        first_retained,
        "starts at the leader's first file"
    );
    // The leader kept leading and takes sends.
    assert_eq!(
        leader.raft.metrics().borrow().current_leader,
        Some(leader.id)
    );
    let last = write(&leader.raft, "TopicSnapshot", 4, 100, 10).await;
    back.raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(last), "new entries")
        .await
        .expect("new entries reach it");
    running(&[&leader, &other, &back]);

    let end = leader.store.max_phy_offset();
    let deadline = tokio::time::Instant::now() + WAIT;
    while back.store.max_phy_offset() != end {
        assert!(tokio::time::Instant::now() < deadline, "follower bytes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        bytes(&back.store, first_retained, end),
        bytes(&leader.store, first_retained, end),
        "identical bytes at identical offsets from the first retained file on"
    );
    let all = MessageFilter::default();
    for q in 0..4 {
        let (min, max) = (
            back.store.get_min_offset_in_queue("TopicSnapshot", q),
            back.store.get_max_offset_in_queue("TopicSnapshot", q),
        );
        assert_eq!(
            max,
            leader.store.get_max_offset_in_queue("TopicSnapshot", q)
        );
        assert_eq!(
            min,
            leader.store.get_min_offset_in_queue("TopicSnapshot", q)
        );
        assert!(min > 0, "queue {q} starts where retention left it");
        let got = back
            .store
            .get_message("g", "TopicSnapshot", q, min, 64, 1 << 24, &all);
        let want = leader
            .store
            .get_message("g", "TopicSnapshot", q, min, 64, 1 << 24, &all);
        assert_eq!(got.queue_offsets, want.queue_offsets, "queue {q}");
        assert_eq!(got.messages, want.messages, "queue {q} byte-identical");
        assert_eq!(got.messages.len() as i64, max - min);
    }
    assert_eq!(back.store.get_max_offset_in_queue("TopicEarly", 0), 3);

    // It can lead: the next message of the early queue keeps its numbering.
    back.raft.trigger().elect().await.expect("campaign");
    back.raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.current_leader == Some(back.id) && m.state == ServerState::Leader,
            "leads",
        )
        .await
        .expect("the replica that was wiped becomes leader");
    write(&back.raft, "TopicEarly", 1, 3, 1).await;
    assert_eq!(back.store.get_max_offset_in_queue("TopicEarly", 0), 4);
    let early = back
        .store
        .get_message("g", "TopicEarly", 0, 3, 1, 1 << 20, &all);
    assert_eq!(early.queue_offsets, vec![3]);
    running(&[&leader, &other, &back]);

    for r in [leader, other, back] {
        drop(r.stop().await);
    }
}

const NAME: &str = "raft-snap";
const TOPIC: &str = "RaftSnapshotTopic";
const QUEUES: i32 = 2;
const PROCESS_FILE: usize = 64 * 1024;

fn start_broker(store: &std::path::Path, namesrv: &str, peers: &str, i: usize) -> common::Proc {
    let hours = (0..24)
        .map(|h| format!("{h:02}"))
        .collect::<Vec<_>>()
        .join(";");
    common::start_broker_with_sets(
        namesrv,
        &[
            "listenPort=0".to_owned(),
            "metricsPort=0".to_owned(),
            "bindAddress=127.0.0.1".to_owned(),
            format!("storePathRootDir={}", store.display()),
            format!("mappedFileSizeCommitLog={PROCESS_FILE}"),
            "fileReservedTime=1".to_owned(),
            format!("deleteWhen={hours}"),
            format!("brokerName={NAME}"),
            "brokerClusterName=RaftSnapshotCluster".to_owned(),
            "registerNameServerPeriod=1000".to_owned(),
            "ferrumSlaveSyncInterval=300".to_owned(),
            "slaveReadEnable=true".to_owned(),
            "enableDLegerCommitLog=true".to_owned(),
            format!("dLegerGroup={NAME}"),
            format!("dLegerPeers={peers}"),
            format!("dLegerSelfId=n{i}"),
        ],
    )
}

async fn send_n(pool: &ferrum_client::ConnectionPool, to: &str, n: usize, tag: &str) {
    let pad = "p".repeat(4096);
    for i in 0..n {
        let queue = ((i as i32) % QUEUES).to_string();
        let request = common::request(
            ferrum_protocol::RequestCode::SEND_MESSAGE_V2,
            &[
                ("a", "raft-snapshot-producer"),
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
        .with_body(format!("{tag}-{i}-{pad}").into_bytes());
        let code = pool
            .invoke(to, request, Duration::from_secs(5))
            .await
            .map(|a| a.code)
            .ok();
        assert_eq!(code, Some(0), "send {tag}-{i} acknowledged");
    }
}

/// Every `(queue, queue offset, body)` of `TOPIC` the broker at `addr` serves, each queue read
/// from its min offset (where an OFFSET_MOVED answer sends the reader).
async fn read_all(pool: &ferrum_client::ConnectionPool, addr: &str) -> Vec<(i32, i64, String)> {
    use ferrum_protocol::headers::PullMessageRequestHeader;
    use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};
    let mut out = Vec::new();
    for queue_id in 0..QUEUES {
        let mut offset = 0;
        for _ in 0..10_000 {
            let header = PullMessageRequestHeader {
                consumer_group: "raft-snapshot-readers".to_owned(),
                topic: TOPIC.to_owned(),
                queue_id,
                queue_offset: offset,
                max_msg_nums: 64,
                sys_flag: 0x4,
                subscription: Some("*".to_owned()),
                expression_type: Some("TAG".to_owned()),
                ..Default::default()
            };
            let cmd = RemotingCommand::request(RequestCode::PULL_MESSAGE, &header);
            let Ok(answer) = pool.invoke(addr, cmd, Duration::from_secs(5)).await else {
                break;
            };
            if answer.code != ResponseCode::SUCCESS.code() {
                let next = answer
                    .ext_fields
                    .get("nextBeginOffset")
                    .and_then(|v| v.parse::<i64>().ok());
                match next {
                    Some(n) if n > offset => {
                        offset = n;
                        continue;
                    }
                    _ => break,
                }
            }
            let msgs = ferrum_protocol::message::decode_all(&answer.body, true)
                .expect("pulled records decode");
            let Some(last) = msgs.last() else { break };
            offset = last.queue_offset + 1;
            for m in &msgs {
                out.push((
                    queue_id,
                    m.queue_offset,
                    String::from_utf8_lossy(&m.body).into_owned(),
                ));
            }
        }
    }
    out
}

fn commit_log_files(root: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
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

async fn registered(admin: &ferrum_client::Admin) -> std::collections::HashMap<i64, String> {
    admin
        .namesrv()
        .cluster_info()
        .await
        .ok()
        .and_then(|info| info.broker_addr_table.get(NAME).cloned())
        .map(|b| b.broker_addrs.into_iter().collect())
        .unwrap_or_default()
}

/// The index of the replica registered as master once every running one is registered.
async fn master(admin: &ferrum_client::Admin, replicas: &[Option<common::Proc>]) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = registered(admin).await;
        let running = replicas.iter().flatten().count();
        let found = m.get(&0).and_then(|master| {
            replicas
                .iter()
                .position(|r| r.as_ref().is_some_and(|p| &p.addr == master))
        });
        if let Some(i) = found
            && m.len() == running
        {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a master and its slaves registered: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_broker_catches_up_after_the_leader_deleted_expired_files() {
    tokio::time::timeout(Duration::from_secs(240), wiped_broker())
        .await
        .expect("scenario finishes in time");
}

async fn wiped_broker() {
    let namesrv = common::start_namesrv();
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let peers = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| format!("n{i}-127.0.0.1:{}", l.local_addr().expect("addr").port()))
        .collect::<Vec<_>>()
        .join(";");
    drop(listeners);
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut replicas: Vec<Option<common::Proc>> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| Some(start_broker(d.path(), &namesrv.addr, &peers, i)))
        .collect();
    let admin = ferrum_client::Admin::new([namesrv.addr.as_str()]);
    let pool = ferrum_client::ConnectionPool::new(ferrum_client::ConnectOptions::default());
    let leader = master(&admin, &replicas).await;
    let addr = |replicas: &[Option<common::Proc>], i: usize| {
        replicas[i].as_ref().expect("runs").addr.clone()
    };
    for i in 0..3 {
        admin
            .create_topic(
                &addr(&replicas, i),
                &ferrum_protocol::route::TopicConfig::new(TOPIC, QUEUES),
            )
            .await
            .expect("topic created");
    }
    let leader_addr = addr(&replicas, leader);
    send_n(&pool, &leader_addr, 40, "before").await;

    // A follower loses its disk.
    let lost = (leader + 1) % 3;
    replicas[lost].take().expect("follower").kill();
    std::fs::remove_dir_all(dirs[lost].path()).expect("its store is deleted");
    send_n(&pool, &leader_addr, 60, "while-down").await;

    // The leader's oldest files are two hours old: its own retention is due to delete them.
    let leader_store = dirs[leader].path().to_owned();
    let files = commit_log_files(&leader_store);
    assert!(files.len() >= 6, "the log spans {} files", files.len());
    let aged: Vec<String> = files.keys().take(3).cloned().collect();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    for name in &aged {
        std::fs::File::options()
            .write(true)
            .open(leader_store.join("commitlog").join(name))
            .and_then(|f| f.set_modified(two_hours_ago))
            .expect("file aged");
    }
    let first_kept = files.keys().nth(3).cloned().expect("a fourth file");
    let ok = common::eventually(Duration::from_secs(60), || async {
        commit_log_files(&leader_store).keys().next() == Some(&first_kept)
    })
    .await;
    assert!(
        ok,
        "the leader deleted its expired files: {:?}",
        commit_log_files(&leader_store).keys().collect::<Vec<_>>()
    );
    let status = admin.raft_status(&leader_addr).await.expect("status");
    assert_eq!(status.role, "Leader", "the leader keeps leading");

    // The replica comes back empty under its old id.
    let restarted = std::time::Instant::now();
    replicas[lost] = Some(start_broker(dirs[lost].path(), &namesrv.addr, &peers, lost));
    assert_eq!(master(&admin, &replicas).await, leader, "the leader stays");
    send_n(&pool, &leader_addr, 20, "after").await;
    let ok = common::eventually(WAIT, || async {
        admin.raft_status(&leader_addr).await.is_ok_and(|s| {
            s.role == "Leader"
                && s.peers.iter().all(|p| p.lag == Some(0))
                && s.applied_index == s.last_log_index
        })
    })
    .await;
    assert!(
        ok,
        "every peer catches up: {:?}",
        admin.raft_status(&leader_addr).await
    );
    eprintln!(
        "restart of the wiped broker -> the leader reports every peer at lag 0 (registration and 20 more sends included): {} ms; leader's CommitLog: {} files from {first_kept}",
        restarted.elapsed().as_millis(),
        commit_log_files(&leader_store).len(),
    );

    let theirs = commit_log_files(&leader_store);
    let ours = commit_log_files(dirs[lost].path());
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "the replaced replica starts at the leader's first retained file"
    );
    for (name, bytes) in &theirs {
        assert!(
            ours[name] == *bytes,
            "CommitLog file {name} is byte-identical"
        );
    }
    // It serves every message the leader still holds, at the same queue offsets.
    let lost_addr = addr(&replicas, lost);
    let want = read_all(&pool, &leader_addr).await;
    assert!(
        want.iter().any(|(_, _, b)| b.starts_with("while-down-"))
            && !want.iter().any(|(_, _, b)| b.starts_with("before-0-")),
        "the leader's reads start after the deleted files"
    );
    let ok = common::eventually(WAIT, || async { read_all(&pool, &lost_addr).await == want }).await;
    assert!(
        ok,
        "the replaced replica serves the same messages at the same queue offsets"
    );

    // And it can lead.
    let moved = admin
        .transfer_leader(&leader_addr, Some(&format!("n{lost}")))
        .await
        .expect("transfer to the replaced replica");
    assert_eq!(moved.leader_id, format!("n{lost}"));
    assert_eq!(master(&admin, &replicas).await, lost);
    send_n(&pool, &lost_addr, 10, "on-replaced").await;
    let got = read_all(&pool, &lost_addr).await;
    assert_eq!(got.len(), want.len() + 10);
    assert!(
        want.iter().all(|m| got.contains(m)),
        "nothing older lost or renumbered"
    );
}
