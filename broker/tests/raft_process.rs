//! A Raft-mode broker group of three real ferrum-broker processes and a ferrum-namesrv on
//! 127.0.0.1: the elected leader registers as brokerId 0 and the followers as slaves; after
//! SIGKILL of the leader a new one is registered as brokerId 0 and takes sends; the killed
//! replica restarts from its own files and rejoins as a slave; every acknowledged message is
//! readable at the end.
//!
//! Prints the group failover time (kill → new master registered with the NameServer and the
//! first send to it acknowledged) per kill and its median / max. `FERRUM_RAFT_KILLS=N` sets the
//! number of kills (default 3).

use std::collections::BTreeSet;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use ferrum_client::{
    Admin, ConnectOptions, ConnectionPool, Message, MessageQueue, Producer, PullConsumer,
    PullStatus, SendStatus,
};
use ferrum_protocol::route::TopicConfig;
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

use common::{Proc, start_broker_with_sets, start_namesrv};

const STEP: Duration = Duration::from_secs(10);
const CLUSTER: &str = "RaftCluster";
const NAME: &str = "raft-a";
const TOPIC: &str = "RaftTopic";
const QUEUES: i32 = 2;

/// Replica `n{i}` of the group, on its own store directory.
fn start_replica(store: &Path, namesrv: &str, peers: &str, i: usize) -> Proc {
    start_broker_with_sets(
        namesrv,
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

/// The group's members as the NameServer lists them, by brokerId.
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

/// The index of the master if the NameServer lists exactly the live replicas: one master
/// and the rest as slaves with brokerId = position + 1.
async fn roles(admin: &Admin, replicas: &[Option<Proc>]) -> Option<usize> {
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
async fn wait_for_roles(admin: &Admin, replicas: &[Option<Proc>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = roles(admin, replicas).await {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "one master and its slaves registered: {:?}",
            members(admin).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The index of a registered master other than `old_addr` that acknowledged `body`.
async fn new_master_took(
    admin: &Admin,
    replicas: &[Option<Proc>],
    old_addr: &str,
    body: &str,
) -> Option<usize> {
    let m = members(admin).await;
    let master = m.get(&0).filter(|a| *a != old_addr)?;
    let idx = replicas
        .iter()
        .position(|r| r.as_ref().is_some_and(|p| &p.addr == master))?;
    let answer = send_raw(master, 0, body).await?;
    (answer.code == 0).then_some(idx)
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
    let namesrv = start_namesrv();
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
    let mut replicas: Vec<Option<Proc>> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| Some(start_replica(d.path(), &namesrv.addr, &peers, i)))
        .collect();
    let admin = Admin::new([namesrv.addr.as_str()]);
    let mut leader = wait_for_roles(&admin, &replicas).await;

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
    let producer = Producer::new([namesrv.addr.as_str()], "raft-producer");
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
    let deadline = Instant::now() + STEP;
    loop {
        let status = admin
            .raft_status(&leader_addr)
            .await
            .expect("the leader reports its Raft status");
        assert_eq!(status.role, "Leader");
        assert_eq!(status.leader, Some(status.node_id));
        assert!(status.term >= 1);
        assert_eq!(status.peers.len(), 3);
        if status.peers.iter().all(|p| p.lag == Some(0))
            && status.applied_index == status.last_log_index
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "every peer catches up with the leader: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let follower_status = admin
        .raft_status(&replicas[follower].as_ref().expect("follower runs").addr)
        .await
        .expect("a follower reports its Raft status");
    assert_eq!(follower_status.role, "Follower");

    let mut failovers = Vec::new();
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

        if let Some(mut p) = replicas[old].take() {
            p.kill();
        }
        let killed_at = Instant::now();
        let deadline = killed_at + Duration::from_secs(30);
        let mut attempt = 0;
        let new_leader = loop {
            attempt += 1;
            let body = format!("failover-{round}-{attempt}");
            if let Some(idx) = new_master_took(&admin, &replicas, &old_addr, &body).await {
                acked.insert(body);
                break Some(idx);
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let elected = new_leader.is_some();
        let took = killed_at.elapsed();
        assert!(
            elected,
            "a new master registered and took a send after kill {round}"
        );
        println!("raft failover {round}: {} ms", took.as_millis());
        failovers.push(took);
        leader = new_leader.expect("a new leader");

        // The killed replica restarts from its own files and rejoins as a slave.
        replicas[old] = Some(start_replica(dirs[old].path(), &namesrv.addr, &peers, old));
        let again = wait_for_roles(&admin, &replicas).await;
        assert_eq!(again, leader, "the restarted replica does not take over");
    }
    if !failovers.is_empty() {
        let max = failovers.iter().max().copied().unwrap_or_default();
        let med = median(&mut failovers);
        println!(
            "raft failover over {kills} kills: median {} ms, max {} ms",
            med.as_millis(),
            max.as_millis()
        );
    }

    // A fresh producer finds the current master through the NameServer.
    let producer = Producer::new([namesrv.addr.as_str()], "raft-producer-2");
    let result = producer
        .send_to_queue(TOPIC, Message::new("last".to_owned()), 1)
        .await
        .expect("send to the new master");
    assert_eq!(result.status, SendStatus::SendOk);
    acked.insert("last".to_owned());

    // Every acknowledged message is readable from the master.
    let consumer = PullConsumer::new([namesrv.addr.as_str()], "raft-readers");
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
