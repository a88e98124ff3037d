//! A clean stop of the Raft leader (SIGTERM, what Kubernetes sends on a pod delete) with three
//! real ferrum-broker processes sharing one leader address, as on Kubernetes where every
//! replica's leader address is the `<group>-master` Service: here each replica binds its own
//! loopback address (127.0.0.1-3) on the same ports, and `dLegerLeaderBrokerIP=localhost` makes
//! brokerId 0 the same `localhost:<port>` whoever leads.
//!
//! The stopping leader hands the group to a follower before it goes, and its unregistration
//! must not take the new leader's registration of that shared address with it: right after the
//! old leader exited, and for a while after, the NameServer lists brokerId 0 (the registration
//! period is left at 30 s, so nothing re-registers it by chance), and every acknowledged send
//! reads back.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferrum_client::Admin;
use ferrum_protocol::RequestCode;
use ferrum_protocol::route::TopicConfig;

use common::{Conn, Proc, request, start_broker_with_sets, start_namesrv};

const CLUSTER: &str = "RaftHandoverCluster";
const NAME: &str = "raft-handover";
const TOPIC: &str = "RaftHandoverTopic";
const STEP: Duration = Duration::from_secs(30);

fn ip(i: usize) -> String {
    format!("127.0.0.{}", i + 1)
}

fn start_replica(store: &Path, namesrv: &str, peers: &str, port: u16, i: usize) -> Proc {
    start_broker_with_sets(
        namesrv,
        &[
            format!("listenPort={port}"),
            "metricsPort=0".to_owned(),
            format!("bindAddress={}", ip(i)),
            format!("brokerIP1={}", ip(i)),
            "dLegerLeaderBrokerIP=localhost".to_owned(),
            format!("storePathRootDir={}", store.display()),
            "mappedFileSizeCommitLog=1048576".to_owned(),
            format!("brokerName={NAME}"),
            format!("brokerClusterName={CLUSTER}"),
            "enableDLegerCommitLog=true".to_owned(),
            format!("dLegerGroup={NAME}"),
            format!("dLegerPeers={peers}"),
            format!("dLegerSelfId=n{i}"),
        ],
    )
}

/// A port free on 127.0.0.1 together with the two below it (the VIP port is listenPort - 2)
/// and the one above it.
fn free_port() -> u16 {
    for _ in 0..100 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        if !(1030..=65000).contains(&port) {
            continue;
        }
        let all_free = (0..3).all(|i| {
            [port - 2, port, port + 1]
                .iter()
                .all(|p| std::net::TcpListener::bind((ip(i).as_str(), *p)).is_ok())
        });
        if all_free {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1-3");
}

async fn members(admin: &Admin) -> BTreeMap<i64, String> {
    admin
        .namesrv()
        .cluster_info()
        .await
        .ok()
        .and_then(|info| info.broker_addr_table.get(NAME).cloned())
        .map(|b| b.broker_addrs.into_iter().collect())
        .unwrap_or_default()
}

/// The replica whose Raft status says it leads.
async fn leader_of(admin: &Admin, replicas: &[Option<Proc>]) -> Option<usize> {
    for (i, r) in replicas.iter().enumerate() {
        let Some(p) = r else { continue };
        if let Ok(status) = admin.raft_status(&p.addr).await
            && status.role == "Leader"
        {
            return Some(i);
        }
    }
    None
}

/// SEND_MESSAGE_V2 of `body` to queue 0 straight at `addr`: whether it was acknowledged.
/// (Loopback has no Service that follows the leader, so sends name the leader's own address.)
async fn send_to(addr: &str, body: &str) -> bool {
    let Ok(Ok(stream)) =
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    drop(stream);
    let mut conn = Conn::open(addr).await;
    let answer = conn
        .call(
            request(
                RequestCode::SEND_MESSAGE_V2,
                &[
                    ("a", "handover-p"),
                    ("b", TOPIC),
                    ("c", "TBW102"),
                    ("d", "4"),
                    ("e", "0"),
                    ("f", "0"),
                    ("g", "1700000000000"),
                    ("h", "0"),
                    ("i", ""),
                ],
            )
            .with_body(body.as_bytes().to_vec()),
        )
        .await;
    answer.code == 0
}

/// Every body in queue 0 of `addr`.
async fn read_all(addr: &str) -> Vec<String> {
    let mut conn = Conn::open(addr).await;
    let mut read = Vec::new();
    let mut offset = 0i64;
    loop {
        let answer = conn
            .call(request(
                RequestCode::PULL_MESSAGE,
                &[
                    ("consumerGroup", "handover-c"),
                    ("topic", TOPIC),
                    ("queueId", "0"),
                    ("queueOffset", &offset.to_string()),
                    ("maxMsgNums", "32"),
                    ("sysFlag", "0"),
                    ("subVersion", "0"),
                    ("commitOffset", "0"),
                    ("suspendTimeoutMillis", "0"),
                ],
            ))
            .await;
        if answer.code != 0 {
            return read;
        }
        let records =
            ferrum_protocol::message::decode_all(&answer.body, true).expect("records decode");
        if records.is_empty() {
            return read;
        }
        offset += records.len() as i64;
        read.extend(
            records
                .iter()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned()),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_hands_over_and_keeps_the_new_registration() {
    tokio::time::timeout(Duration::from_secs(180), scenario())
        .await
        .expect("scenario finishes in time");
}

async fn scenario() {
    let namesrv = start_namesrv();
    let port = free_port();
    let raft_port = free_port();
    let peers = (0..3)
        .map(|i| format!("n{i}-{}:{raft_port}", ip(i)))
        .collect::<Vec<_>>()
        .join(";");
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut replicas: Vec<Option<Proc>> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| Some(start_replica(d.path(), &namesrv.addr, &peers, port, i)))
        .collect();
    let admin = Admin::new([namesrv.addr.as_str()]);
    let shared = format!("localhost:{port}");

    let deadline = Instant::now() + STEP;
    let leader = loop {
        if let Some(leader) = leader_of(&admin, &replicas).await
            && members(&admin).await.get(&0) == Some(&shared)
        {
            break leader;
        }
        assert!(Instant::now() < deadline, "a leader registered as {shared}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for r in replicas.iter().flatten() {
        admin
            .create_topic(&r.addr, &TopicConfig::new(TOPIC, 1))
            .await
            .expect("topic created");
    }
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + STEP;
    while acknowledged.is_empty() {
        let addr = replicas[leader].as_ref().expect("leader runs").addr.clone();
        if send_to(&addr, "before").await {
            acknowledged.push("before".to_owned());
        }
        assert!(Instant::now() < deadline, "a send before the stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut old = replicas[leader].take().expect("leader runs");
    let stopped_at = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &old.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = old.child.wait().expect("the old leader exits");
    assert!(exit.success(), "a clean stop: {exit}");
    let exited_after = stopped_at.elapsed();

    // The old leader has exited and unregistered: brokerId 0 is the new leader's, at once.
    let new_leader = leader_of(&admin, &replicas)
        .await
        .expect("a follower leads by the time the old leader exited");
    assert_ne!(new_leader, leader);
    let seen = members(&admin).await;
    assert_eq!(
        seen.get(&0),
        Some(&shared),
        "brokerId 0 stays registered after the old leader's unregistration: {seen:?}"
    );
    // And stays so: nothing re-registers it for 30 s, so a removal would show here.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = members(&admin).await;
        assert_eq!(seen.get(&0), Some(&shared), "brokerId 0 listed: {seen:?}");
    }
    let deadline = Instant::now() + STEP;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let body = format!("after-{attempt}");
        let addr = replicas[new_leader].as_ref().expect("runs").addr.clone();
        if send_to(&addr, &body).await {
            acknowledged.push(body);
            break;
        }
        assert!(Instant::now() < deadline, "a send to the new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "raft handover: SIGTERM -> old leader n{leader} exited in {} ms with n{new_leader} leading and registered as brokerId 0; a send to it acknowledged at attempt {attempt}",
        exited_after.as_millis()
    );

    // Every acknowledged message reads back from the new leader.
    let new_addr = replicas[new_leader].as_ref().expect("runs").addr.clone();
    let read = read_all(&new_addr).await;
    for body in &acknowledged {
        assert!(read.contains(body), "{body} read back: {read:?}");
    }
}
