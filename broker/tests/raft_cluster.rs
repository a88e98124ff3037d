//! Three Raft replicas in one process, each with its own CommitLog, talking over real TCP on
//! 127.0.0.1: election, majority commit, identical bytes at identical offsets on every replica,
//! a deposed leader's uncommitted tail truncated, and failover when the leader stops.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrum_broker::config::BrokerConfig;
use ferrum_broker::raft::config::node_id;
use ferrum_broker::raft::status::status;
use ferrum_broker::raft::{
    NetworkSwitch, ProposedMessage, RaftConfig, RaftNetworkFactoryImpl, RaftNode, RaftRequest,
    RaftRpcServer, open_storage, openraft_config,
};
use ferrum_protocol::message::MessageExt;
use ferrum_store::{GetMessageStatus, MessageFilter, MessageStore, MessageStoreConfig};
use openraft::BasicNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOPIC: &str = "TopicRaft";
const WAIT: Duration = Duration::from_secs(20);

struct Replica {
    id: u64,
    raft: RaftNode,
    store: MessageStore,
    server: RaftRpcServer,
    switch: NetworkSwitch,
    dir: tempfile::TempDir,
}

struct Cluster {
    replicas: Vec<Replica>,
}

/// Raft settings of replica `n{i}`: shorter timeouts than the defaults unless `defaults`.
fn raft_config_with(peers: &str, i: usize, defaults: bool) -> RaftConfig {
    let mut broker = BrokerConfig::default();
    let mut keys = vec![
        ("enableDLegerCommitLog", "true"),
        ("dLegerGroup", "broker-raft"),
        ("dLegerPeers", peers),
    ];
    if !defaults {
        keys.extend([
            ("ferrumRaftHeartbeatIntervalMs", "50"),
            ("ferrumRaftElectionTimeoutMinMs", "300"),
            ("ferrumRaftElectionTimeoutMaxMs", "600"),
        ]);
    }
    let self_id = format!("n{i}");
    keys.push(("dLegerSelfId", &self_id));
    for (k, v) in keys {
        assert!(broker.set(k, v).expect("valid value"), "{k} known");
    }
    let config = RaftConfig::from_broker_config(&broker)
        .expect("valid Raft config")
        .expect("Raft mode enabled");
    assert_eq!(config.self_node_id(), node_id(&format!("n{i}")));
    config
}

fn raft_config(peers: &str, i: usize) -> RaftConfig {
    raft_config_with(peers, i, false)
}

/// Starts (or restarts, on the same directory) replica `n{i}`.
async fn start_replica(
    config: &RaftConfig,
    listener: TcpListener,
    dir: tempfile::TempDir,
) -> Replica {
    let mut store_config = MessageStoreConfig::new(dir.path().join("store"));
    // Small files, so entries cross file ends and carry the store's padding with them.
    store_config.mapped_file_size_commit_log = 64 * 1024;
    common::ignore_host_disk_in_store(&mut store_config);
    let store = MessageStore::open(store_config).expect("store opens");
    let (log, sm) = open_storage(&dir.path().join("raft"), store.clone()).expect("log opens");
    let switch = NetworkSwitch::default();
    let raft = RaftNode::new(
        config.self_node_id(),
        Arc::new(openraft_config(config).validate().expect("openraft config")),
        RaftNetworkFactoryImpl::new(switch.clone()),
        log,
        sm,
    )
    .await
    .expect("raft starts");
    let server = RaftRpcServer::start(listener, raft.clone(), switch.clone()).expect("rpc server");
    Replica {
        id: config.self_node_id(),
        raft,
        store,
        server,
        switch,
        dir,
    }
}

async fn start_cluster() -> (Cluster, String) {
    start_cluster_with(false).await
}

async fn start_cluster_with(defaults: bool) -> (Cluster, String) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let peers: Vec<String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| format!("n{i}-{}", l.local_addr().expect("addr")))
        .collect();
    let peers = peers.join(";");
    let mut replicas = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let config = raft_config_with(&peers, i, defaults);
        let dir = tempfile::tempdir().expect("tempdir");
        replicas.push(start_replica(&config, listener, dir).await);
    }
    let members: BTreeMap<u64, BasicNode> = raft_config(&peers, 0)
        .members()
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect();
    replicas[0]
        .raft
        .initialize(members)
        .await
        .expect("membership initialized");
    (Cluster { replicas }, peers)
}

impl Cluster {
    fn get(&self, id: u64) -> &Replica {
        self.replicas
            .iter()
            .find(|r| r.id == id)
            .expect("a replica of the cluster")
    }

    /// Waits until every replica in `ids` names the same leader, one not in `not`, and returns it.
    async fn agreed_leader(&self, ids: &[u64], not: &[u64]) -> u64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leaders: Vec<Option<u64>> = ids
                .iter()
                .map(|id| self.get(*id).raft.metrics().borrow().current_leader)
                .collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && !not.contains(l)
                && ids.contains(l)
            {
                return *l;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader among {ids:?} (excluding {not:?}): {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until each replica in `ids` has applied `index` and holds `end` CommitLog bytes.
    async fn wait_applied(&self, ids: &[u64], index: u64, end: i64) {
        for id in ids {
            let r = self.get(*id);
            r.raft
                .wait(Some(WAIT))
                .applied_index_at_least(Some(index), "entries applied")
                .await
                .unwrap_or_else(|e| panic!("replica {id} did not apply {index}: {e}"));
            let deadline = tokio::time::Instant::now() + WAIT;
            while r.store.max_phy_offset() != end {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "replica {id} holds {} bytes, expected {end}",
                    r.store.max_phy_offset()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn message(body: String) -> RaftRequest {
    RaftRequest::Message(ProposedMessage {
        topic: TOPIC.into(),
        queue_id: 0,
        born_timestamp: 1_700_000_000_000,
        body: body.into_bytes(),
        ..Default::default()
    })
}

/// Writes `bodies` through `leader`; returns the last log index and the CommitLog end.
async fn write(leader: &RaftNode, bodies: impl IntoIterator<Item = String>) -> (u64, i64) {
    let mut last = (0, 0);
    for body in bodies {
        let r = leader
            .client_write(message(body))
            .await
            .expect("write committed by a majority");
        last = (r.log_id.index, r.data.offset + r.data.len as i64);
    }
    last
}

fn all_bytes(store: &MessageStore) -> Vec<u8> {
    let end = store.max_phy_offset();
    let mut at = store.min_phy_offset();
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

/// Bodies a consumer reads from queue 0 of `store` (bounded by its committed offset).
fn consumed_bodies(store: &MessageStore) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut offset = 0;
    loop {
        let got = store.get_message(
            "g",
            TOPIC,
            0,
            offset,
            1024,
            64 * 1024 * 1024,
            &MessageFilter::All,
        );
        if got.messages.is_empty() {
            return bodies;
        }
        for b in &got.messages {
            let (m, _) = MessageExt::decode(b).expect("a stored record decodes");
            bodies.push(String::from_utf8_lossy(&m.body).into_owned());
        }
        offset = got.next_begin_offset;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_elect_commit_truncate_and_fail_over() {
    let (cluster, _) = start_cluster().await;
    let all: Vec<u64> = cluster.replicas.iter().map(|r| r.id).collect();

    // 1. A leader is elected; writes commit on a majority and reach every replica's
    // CommitLog at identical offsets.
    let l1 = cluster.agreed_leader(&all, &[]).await;
    let (index, end) = write(
        &cluster.get(l1).raft,
        (0..30).map(|i| format!("committed-{i:03}-{}", "p".repeat(3000))),
    )
    .await;
    cluster.wait_applied(&all, index, end).await;
    let reference = all_bytes(&cluster.get(l1).store);
    assert!(end > 64 * 1024, "the log spans several CommitLog files");
    for id in &all {
        assert_eq!(
            all_bytes(&cluster.get(*id).store),
            reference,
            "replica {id}"
        );
        assert_eq!(consumed_bodies(&cluster.get(*id).store).len(), 30);
    }
    cluster
        .get(l1)
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| status(m).peers.iter().all(|p| p.lag == Some(0)),
            "every peer caught up",
        )
        .await
        .expect("the leader sees every peer caught up");
    let report = status(&cluster.get(l1).raft.metrics().borrow());
    assert_eq!(report.role, "Leader");
    assert_eq!(report.leader, Some(l1));
    assert_eq!(report.applied_index, Some(index));
    assert_eq!(report.last_log_index, Some(index));
    let mut peer_ids: Vec<u64> = report.peers.iter().map(|p| p.node_id).collect();
    peer_ids.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(peer_ids, sorted);
    assert!(report.peers.iter().all(|p| p.match_index == Some(index)));
    let follower = all
        .iter()
        .copied()
        .find(|id| *id != l1)
        .expect("a follower");
    let follower_report = status(&cluster.get(follower).raft.metrics().borrow());
    assert_eq!(follower_report.role, "Follower");
    assert_eq!(follower_report.leader, Some(l1));
    assert!(follower_report.peers.iter().all(|p| p.lag.is_none()));

    // Garbage on the Raft port closes that connection and nothing else.
    for garbage in [
        &b"\x00\x00\x00\x05hello"[..],
        &b"\x00\x00\x00\x0a\x00\x00\x00\x02{]\x00\x00\x00\x00"[..],
        &b"\xff\xff\xff\xff"[..],
    ] {
        let mut s = tokio::net::TcpStream::connect(cluster.get(follower).server.local_addr())
            .await
            .expect("connect");
        s.write_all(garbage).await.expect("write");
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the server answers garbage by closing")
            .unwrap_or(0);
        assert_eq!(n, 0, "no answer to a malformed frame");
    }

    // 2. The leader is cut off; what it appends alone is never committed.
    cluster.get(l1).switch.set_isolated(true);
    let deposed = cluster.get(l1).raft.clone();
    let pending = tokio::spawn(async move {
        let mut results = Vec::new();
        for i in 0..3 {
            results.push(
                tokio::time::timeout(
                    WAIT,
                    deposed.client_write(message(format!("uncommitted-{i}"))),
                )
                .await,
            );
        }
        results
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    while cluster.get(l1).store.max_phy_offset() == end {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the isolated leader appends locally"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(contains(
        &all_bytes(&cluster.get(l1).store),
        b"uncommitted-0"
    ));
    assert_eq!(
        consumed_bodies(&cluster.get(l1).store).len(),
        30,
        "consumers never see uncommitted bytes"
    );
    // Nor do the side paths: GET_MAX_OFFSET, the pull reply's max offset, view by id, search
    // by time.
    let isolated = &cluster.get(l1).store;
    assert_eq!(isolated.get_max_offset_in_queue(TOPIC, 0), 30);
    let pull = isolated.get_message("g", TOPIC, 0, 0, 1024, 64 << 20, &MessageFilter::All);
    assert_eq!(pull.max_offset, 30);
    let waiting = isolated.get_message("g", TOPIC, 0, 30, 1024, 64 << 20, &MessageFilter::All);
    assert_eq!(waiting.status, GetMessageStatus::OffsetOverflowOne);
    assert_eq!(isolated.get_offset_in_queue_by_time(TOPIC, 0, i64::MAX), 30);
    assert_eq!(isolated.get_commit_log_offset_in_queue(TOPIC, 0, 30), None);
    // The uncommitted record starts at the old end, or at the next file when it did not fit.
    let uncommitted_at = [end, (end / (64 * 1024) + 1) * (64 * 1024)]
        .into_iter()
        .find(|at| {
            isolated
                .read_raw(*at, 64 * 1024)
                .and_then(|b| MessageExt::decode(&b).ok())
                .is_some_and(|(m, _)| m.body.starts_with(b"uncommitted-0"))
        })
        .expect("the isolated leader holds the uncommitted record");
    assert!(
        isolated.lookup_message_by_offset(uncommitted_at).is_none(),
        "view by id serves an uncommitted record"
    );

    // The other two elect a new leader and commit more.
    let others: Vec<u64> = all.iter().copied().filter(|id| *id != l1).collect();
    let l2 = cluster.agreed_leader(&others, &[l1]).await;
    let (index, end) = write(
        &cluster.get(l2).raft,
        (0..5).map(|i| format!("second-term-{i}")),
    )
    .await;
    cluster.wait_applied(&others, index, end).await;

    // 3. Healed, the deposed leader truncates its uncommitted tail and takes the new log.
    cluster.get(l1).switch.set_isolated(false);
    cluster.wait_applied(&all, index, end).await;
    let reference = all_bytes(&cluster.get(l2).store);
    for id in &all {
        let bytes = all_bytes(&cluster.get(*id).store);
        assert_eq!(bytes, reference, "replica {id} after healing");
        assert!(!contains(&bytes, b"uncommitted-"), "replica {id}");
        assert_eq!(consumed_bodies(&cluster.get(*id).store).len(), 35);
    }
    for result in pending.await.expect("writer task") {
        assert!(
            !matches!(result, Ok(Ok(_))),
            "a write on the isolated leader was acknowledged: {result:?}"
        );
    }

    // 4. The leader stops; the survivors elect another and every committed entry is there.
    let stopped = cluster.get(l2);
    stopped.server.shutdown();
    stopped.switch.set_isolated(true);
    stopped.raft.shutdown().await.expect("leader stops");
    let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != l2).collect();
    let l3 = cluster.agreed_leader(&survivors, &[l2]).await;
    for id in &survivors {
        let bytes = all_bytes(&cluster.get(*id).store);
        assert_eq!(&bytes[..reference.len()], &reference[..], "replica {id}");
    }
    let (index, end) = write(&cluster.get(l3).raft, ["third-term".to_owned()]).await;
    cluster.wait_applied(&survivors, index, end).await;
    for id in &survivors {
        let bodies = consumed_bodies(&cluster.get(*id).store);
        assert_eq!(bodies.len(), 36, "replica {id}");
        assert_eq!(bodies.last().map(String::as_str), Some("third-term"));
        assert!(bodies[0].starts_with("committed-000-"));
    }

    for r in &cluster.replicas {
        if r.id != l2 {
            r.raft.shutdown().await.expect("shutdown");
        }
        r.store.shutdown().expect("store shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_follower_restarts_from_its_own_log_and_catches_up() {
    let (mut cluster, peers) = start_cluster().await;
    let all: Vec<u64> = cluster.replicas.iter().map(|r| r.id).collect();
    let leader = cluster.agreed_leader(&all, &[]).await;
    let (index, end) = write(
        &cluster.get(leader).raft,
        (0..10).map(|i| format!("before-{i}")),
    )
    .await;
    cluster.wait_applied(&all, index, end).await;

    // A follower crashes: no store checkpoint, so its CommitLog goes through crash recovery.
    let pos = cluster
        .replicas
        .iter()
        .position(|r| r.id != leader)
        .expect("a follower");
    let i = (0..3)
        .find(|i| node_id(&format!("n{i}")) == cluster.replicas[pos].id)
        .expect("a peer index");
    let crashed = cluster.replicas.remove(pos);
    let term_before = crashed.raft.metrics().borrow().current_term;
    crashed.server.shutdown();
    crashed.raft.shutdown().await.expect("raft stops");
    crashed.store.halt();
    let Replica {
        id: crashed_id,
        dir,
        ..
    } = crashed;

    // The two others still form a majority and commit.
    let (index, end) = write(
        &cluster.get(leader).raft,
        (0..10).map(|i| format!("while-down-{i}")),
    )
    .await;

    let config = raft_config(&peers, i);
    let listener = TcpListener::bind(config.self_addr())
        .await
        .expect("the replica's address is free again");
    let restarted = start_replica(&config, listener, dir).await;
    restarted
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.current_term >= term_before, "term restored")
        .await
        .expect("the restarted replica is back in the current term");
    cluster.replicas.push(restarted);
    cluster.wait_applied(&all, index, end).await;
    let reference = all_bytes(&cluster.get(leader).store);
    for id in &all {
        assert_eq!(
            all_bytes(&cluster.get(*id).store),
            reference,
            "replica {id}"
        );
        assert_eq!(consumed_bodies(&cluster.get(*id).store).len(), 20);
    }
    assert_eq!(
        cluster.agreed_leader(&all, &[]).await,
        leader,
        "no needless election"
    );
    assert!(all.contains(&crashed_id));
    for r in &cluster.replicas {
        r.raft.shutdown().await.expect("shutdown");
        r.store.shutdown().expect("store shutdown");
    }
}

/// Many concurrent proposers: every write commits exactly once and every replica ends with the
/// same bytes. Prints the throughput (`--nocapture`), a figure, not an assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_proposers_commit_everything_once() {
    const PROPOSERS: usize = 32;
    const PER_PROPOSER: usize = 64;
    const BODY: usize = 1024;
    let (cluster, _) = start_cluster().await;
    let all: Vec<u64> = cluster.replicas.iter().map(|r| r.id).collect();
    let leader = cluster.agreed_leader(&all, &[]).await;
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..PROPOSERS {
        let raft = cluster.get(leader).raft.clone();
        tasks.spawn(async move {
            let mut last = (0, 0);
            for i in 0..PER_PROPOSER {
                let tag = format!("p{p:02}-{i:03}-");
                let body = format!("{tag}{}", "b".repeat(BODY - tag.len()));
                let r = raft
                    .client_write(message(body))
                    .await
                    .expect("write committed by a majority");
                assert_eq!(r.data.refused, None);
                last = last.max((r.log_id.index, r.data.offset + r.data.len as i64));
            }
            last
        });
    }
    let mut last = (0, 0);
    while let Some(r) = tasks.join_next().await {
        last = last.max(r.expect("proposer task"));
    }
    let elapsed = started.elapsed();
    let total = PROPOSERS * PER_PROPOSER;
    eprintln!(
        "raft 3 replicas, 127.0.0.1: {total} messages of {BODY} B by {PROPOSERS} proposers committed in {elapsed:?} ({:.0} msg/s)",
        total as f64 / elapsed.as_secs_f64()
    );
    cluster.wait_applied(&all, last.0, last.1).await;
    let reference = all_bytes(&cluster.get(leader).store);
    for id in &all {
        assert_eq!(
            all_bytes(&cluster.get(*id).store),
            reference,
            "replica {id}"
        );
        let mut bodies = consumed_bodies(&cluster.get(*id).store);
        assert_eq!(bodies.len(), total, "replica {id}");
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), total, "no message stored twice");
    }
    for r in &cluster.replicas {
        r.raft.shutdown().await.expect("shutdown");
        r.store.shutdown().expect("store shutdown");
    }
}

/// Stops the leader (crash-like: the store is halted) 10 times with the default timeouts and
/// prints how long until a new leader commits a write, median and maximum (`--nocapture`); the
/// stopped replica restarts from its own files and catches up each round. A figure, not an
/// assertion: the checks are that every committed write survives every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_leader_stops_keep_every_write_and_report_failover_time() {
    const ROUNDS: usize = 10;
    let (mut cluster, peers) = start_cluster_with(true).await;
    let all: Vec<u64> = cluster.replicas.iter().map(|r| r.id).collect();
    let mut leader = cluster.agreed_leader(&all, &[]).await;
    let mut written = 0;
    let mut failovers = Vec::new();
    for round in 0..ROUNDS {
        let (index, end) = write(
            &cluster.get(leader).raft,
            (0..5).map(|i| format!("round-{round:02}-{i}")),
        )
        .await;
        written += 5;
        cluster.wait_applied(&all, index, end).await;

        let pos = cluster
            .replicas
            .iter()
            .position(|r| r.id == leader)
            .expect("the leader");
        let i = (0..3)
            .find(|i| node_id(&format!("n{i}")) == leader)
            .expect("a peer index");
        let stopped = cluster.replicas.remove(pos);
        let started = std::time::Instant::now();
        stopped.switch.set_isolated(true);
        stopped.server.shutdown();
        stopped.raft.shutdown().await.expect("raft stops");
        stopped.store.halt();
        let dir = stopped.dir;
        let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
        let new_leader = cluster.agreed_leader(&survivors, &[leader]).await;
        let (index, end) = write(
            &cluster.get(new_leader).raft,
            [format!("round-{round:02}-after")],
        )
        .await;
        failovers.push(started.elapsed());
        written += 1;

        let config = raft_config_with(&peers, i, true);
        let listener = TcpListener::bind(config.self_addr())
            .await
            .expect("the replica's address is free again");
        cluster
            .replicas
            .push(start_replica(&config, listener, dir).await);
        cluster.wait_applied(&all, index, end).await;
        for id in &all {
            assert_eq!(
                consumed_bodies(&cluster.get(*id).store).len(),
                written,
                "replica {id}, round {round}"
            );
        }
        leader = new_leader;
    }
    failovers.sort();
    eprintln!(
        "raft failover (leader stopped -> new leader committed a write), default timeouts, {ROUNDS} rounds: median {:?}, max {:?}",
        failovers[ROUNDS / 2],
        failovers[ROUNDS - 1]
    );
    for r in &cluster.replicas {
        r.raft.shutdown().await.expect("shutdown");
        r.store.shutdown().expect("store shutdown");
    }
}
