//! `dLegerLeaderBrokerIP` with three real ferrum-broker processes and a ferrum-namesrv on
//! 127.0.0.1: the elected leader registers brokerId 0 under the shared leader address
//! (`localhost:<its listenPort>` here, the `<group>-master` Service on Kubernetes) while each
//! follower registers its own `brokerIP1` address under position + 1. After SIGKILL of the
//! leader the new leader takes brokerId 0 under the same leader host, and a producer that finds
//! the group through the NameServer sends to it. The registration period is left at 30 s, so
//! every change seen here was announced at once by the role change, not by a periodic round.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ferrum_client::{Admin, Message, Producer, SendStatus};
use ferrum_protocol::route::TopicConfig;

use common::{Proc, start_broker_with_sets, start_namesrv};

const CLUSTER: &str = "RaftAddrCluster";
const NAME: &str = "raft-addr";
const TOPIC: &str = "RaftAddrTopic";
const LEADER_HOST: &str = "localhost";
const STEP: Duration = Duration::from_secs(30);

fn start_replica(store: &Path, namesrv: &str, peers: &str, i: usize) -> Proc {
    start_broker_with_sets(
        namesrv,
        &[
            "listenPort=0".to_owned(),
            "metricsPort=0".to_owned(),
            "bindAddress=127.0.0.1".to_owned(),
            "brokerIP1=127.0.0.1".to_owned(),
            format!("dLegerLeaderBrokerIP={LEADER_HOST}"),
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

fn free_ports() -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or("", |(_, p)| p)
}

/// The group's registrations, brokerId → address.
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

/// What the NameServer must list when `leader` leads: brokerId 0 under the leader host and
/// the leader's port, every other live replica under its own address as position + 1.
fn expected(replicas: &[Option<Proc>], leader: usize) -> BTreeMap<i64, String> {
    let mut want = BTreeMap::new();
    for (i, r) in replicas.iter().enumerate() {
        let Some(p) = r else { continue };
        if i == leader {
            want.insert(0, format!("{LEADER_HOST}:{}", port_of(&p.addr)));
        } else {
            want.insert(i as i64 + 1, p.addr.clone());
        }
    }
    want
}

/// Waits until the registrations are exactly [`expected`] for some live replica other than
/// `not`; returns that leader's index.
async fn wait_for_leader(admin: &Admin, replicas: &[Option<Proc>], not: Option<usize>) -> usize {
    let deadline = Instant::now() + STEP;
    loop {
        let seen = members(admin).await;
        let leader = (0..replicas.len())
            .find(|i| Some(*i) != not && replicas[*i].is_some() && seen == expected(replicas, *i));
        if let Some(leader) = leader {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "one leader under {LEADER_HOST}, followers under their own addresses: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh producer (no cached route) sends one message; the status, or the error.
async fn send_fresh(namesrv: &str, group: &str, body: &str) -> Result<SendStatus, String> {
    let producer = Producer::new([namesrv], group);
    producer
        .send_to_queue(TOPIC, Message::new(body.to_owned()), 0)
        .await
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_registers_the_shared_leader_address() {
    tokio::time::timeout(Duration::from_secs(180), scenario())
        .await
        .expect("scenario finishes in time");
}

async fn scenario() {
    let namesrv = start_namesrv();
    let peers = free_ports()
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
    let leader = wait_for_leader(&admin, &replicas, None).await;
    let leader_addr = format!(
        "{LEADER_HOST}:{}",
        port_of(&replicas[leader].as_ref().expect("leader runs").addr)
    );
    let status = admin
        .raft_status(&leader_addr)
        .await
        .expect("the leader answers at the leader address");
    assert_eq!(status.role, "Leader");

    for r in replicas.iter().flatten() {
        admin
            .create_topic(&r.addr, &TopicConfig::new(TOPIC, 1))
            .await
            .expect("topic created");
    }
    // The topic's route names the leader address as brokerId 0, and a producer that knows only
    // the NameServer reaches the leader through it.
    // The leader announces the new topic at once; the route shows it as soon as that lands.
    let deadline = Instant::now() + STEP;
    loop {
        let master = admin.namesrv().topic_route(TOPIC).await.ok().and_then(|r| {
            r.broker_datas
                .into_iter()
                .find(|b| b.broker_name == NAME)
                .and_then(|b| b.broker_addrs.get(&0).cloned())
        });
        if master.as_ref() == Some(&leader_addr) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the route lists {leader_addr} as brokerId 0: {master:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        send_fresh(&namesrv.addr, "addr-producer-1", "before")
            .await
            .expect("send"),
        SendStatus::SendOk
    );

    if let Some(mut p) = replicas[leader].take() {
        p.kill();
    }
    let killed_at = Instant::now();
    let new_leader = wait_for_leader(&admin, &replicas, Some(leader)).await;
    let registered_after = killed_at.elapsed();
    let new_addr = format!(
        "{LEADER_HOST}:{}",
        port_of(&replicas[new_leader].as_ref().expect("new leader runs").addr)
    );
    let deadline = Instant::now() + STEP;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send_fresh(
            &namesrv.addr,
            "addr-producer-2",
            &format!("after-{attempt}"),
        )
        .await
        {
            Ok(SendStatus::SendOk) => break,
            other => assert!(
                Instant::now() < deadline,
                "a send through the NameServer reaches the new leader at {new_addr}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "leader address: kill -> brokerId 0 = {new_addr} registered in {} ms, first send after {} ms",
        registered_after.as_millis(),
        killed_at.elapsed().as_millis()
    );

    // The killed replica returns as a follower under its own address; brokerId 0 stays put.
    replicas[leader] = Some(start_replica(
        dirs[leader].path(),
        &namesrv.addr,
        &peers,
        leader,
    ));
    let deadline = Instant::now() + STEP;
    loop {
        let seen = members(&admin).await;
        if seen == expected(&replicas, new_leader) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted replica registers as a follower: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
