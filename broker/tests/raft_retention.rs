//! CommitLog retention in Raft mode, three replicas in one process over real TCP on 127.0.0.1,
//! every CommitLog file expired and every hour a deletion hour: the retention floor (set by the
//! task the broker runs) keeps every file the Raft log refers to on every replica, so a
//! follower cut off while the log grew over several files is repaired from the log after it
//! comes back — through the elections its return causes and the leader's backward probes —
//! with identical bytes, and no replica's Raft node stops on a read of deleted bytes (which is
//! what happened with a floor at the slowest follower's match).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrum_broker::raft::retention;
use ferrum_broker::raft::{
    NetworkSwitch, ProposedMessage, RaftConfig, RaftLogStore, RaftNetworkFactoryImpl, RaftNode,
    RaftRequest, RaftRpcServer, open_storage, openraft_config,
};
use ferrum_store::{MessageStore, MessageStoreConfig};
use openraft::{BasicNode, ServerState};
use tokio::net::TcpListener;

use common::raft::raft_config;

const FILE: i64 = 64 * 1024;
const WAIT: Duration = Duration::from_secs(20);

struct Replica {
    id: u64,
    raft: RaftNode,
    store: MessageStore,
    log: RaftLogStore,
    switch: NetworkSwitch,
    _server: RaftRpcServer,
    _floor: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start_replica(config: &RaftConfig, listener: TcpListener) -> Replica {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store_config = MessageStoreConfig::new(dir.path().join("store"));
    store_config.mapped_file_size_commit_log = FILE as usize;
    // Every file is expired and every hour is a deletion hour: only the floor keeps files.
    store_config.file_reserved_time = Duration::ZERO;
    store_config.delete_when = (0..24).map(|h| h.to_string()).collect::<Vec<_>>().join(";");
    // Retention runs when the test says so.
    store_config.clean_resource_interval = Duration::from_secs(3600);
    let store = MessageStore::open(store_config).expect("store opens");
    // The machine's own disk usage must not trigger a forced clean (which ignores the floor).
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
    let server = RaftRpcServer::start(listener, raft.clone(), switch.clone()).expect("rpc server");
    let floor = retention::spawn(store.clone(), log.clone());
    Replica {
        id: config.self_node_id(),
        raft,
        store,
        log,
        switch,
        _server: server,
        _floor: floor,
        _dir: dir,
    }
}

async fn write(leader: &RaftNode, from: usize, n: usize) -> u64 {
    let mut last = 0;
    for i in from..from + n {
        let r = leader
            .client_write(RaftRequest::Message(ProposedMessage {
                topic: "TopicRetention".into(),
                queue_id: 0,
                born_timestamp: 1_700_000_000_000,
                body: format!("m{i:04}-{}", "r".repeat(4000)).into_bytes(),
                ..Default::default()
            }))
            .await
            .expect("write committed by a majority");
        last = r.log_id.index;
    }
    last
}

fn all_bytes(store: &MessageStore, from: i64) -> Vec<u8> {
    let end = store.max_phy_offset();
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

/// Waits until the leader's retention floor is `expected`.
async fn floor_becomes(store: &MessageStore, expected: Option<i64>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.retention_floor() != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention floor {:?}, expected {expected:?}",
            store.retention_floor()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_keeps_files_a_lagging_follower_needs() {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let peers = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| format!("n{i}-{}", l.local_addr().expect("addr")))
        .collect::<Vec<_>>()
        .join(";");
    let mut replicas = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        replicas.push(start_replica(&raft_config("broker-retention", &peers, i), listener).await);
    }
    let members: BTreeMap<u64, BasicNode> = raft_config("broker-retention", &peers, 0)
        .members()
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect();
    replicas[0]
        .raft
        .initialize(members)
        .await
        .expect("membership initialized");
    let leader_id = replicas[0]
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("a leader is elected")
        .current_leader
        .expect("leader");
    let leader = replicas
        .iter()
        .find(|r| r.id == leader_id)
        .expect("leader replica");
    let lagging = replicas
        .iter()
        .find(|r| r.id != leader_id)
        .expect("a follower");

    // Everyone holds the first files; then one follower is cut off while the log grows.
    let caught_up = write(&leader.raft, 0, 20).await;
    leader
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| {
                m.replication
                    .as_ref()
                    .is_some_and(|r| r.values().all(|l| l.is_some_and(|l| l.index >= caught_up)))
            },
            "every follower matched",
        )
        .await
        .expect("every follower catches up");
    lagging.switch.set_isolated(true);
    let last = write(&leader.raft, 20, 60).await;
    assert!(
        leader.store.max_phy_offset() > 4 * FILE,
        "the log spans several files"
    );

    // Every replica's floor is its oldest entry (offset 0): a retention pass deletes nothing.
    for r in &replicas {
        assert_eq!(r.log.resume_offset(None), 0);
        floor_becomes(&r.store, Some(0)).await;
        r.store.clean_now().expect("retention pass");
        assert_eq!(
            r.store.min_phy_offset(),
            0,
            "files the Raft log refers to stay"
        );
    }

    // The follower comes back and is repaired from the leader's log.
    lagging.switch.set_isolated(false);
    lagging
        .raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(last), "caught up")
        .await
        .expect("the lagging follower catches up from the log");
    let end = leader.store.max_phy_offset();
    let deadline = tokio::time::Instant::now() + WAIT;
    while lagging.store.max_phy_offset() != end {
        assert!(tokio::time::Instant::now() < deadline, "follower bytes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        all_bytes(&lagging.store, 0),
        all_bytes(&leader.store, 0),
        "identical bytes at identical offsets"
    );
    // Its return may have caused elections; whoever leads, every node keeps running and
    // agrees on the leader.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let states: Vec<_> = replicas
            .iter()
            .map(|r| {
                let m = r.raft.metrics().borrow().clone();
                (m.state, m.current_leader)
            })
            .collect();
        assert!(
            states.iter().all(|(s, _)| *s != ServerState::Shutdown),
            "no Raft node stopped: {states:?}"
        );
        let leaders: Vec<_> = states.iter().map(|(_, l)| *l).collect();
        if leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "one agreed leader: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in &replicas {
        r.store.clean_now().expect("retention pass");
        assert_eq!(r.store.min_phy_offset(), 0);
    }
    for r in &replicas {
        r.raft.shutdown().await.expect("raft stops");
        r.store.shutdown().expect("store stops");
    }
}
