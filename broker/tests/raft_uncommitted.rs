//! A Raft leader's uncommitted entry over the wire, with three real ferrum-broker processes and a
//! ferrum-namesrv on 127.0.0.1. Both followers are frozen (SIGSTOP), so a send the leader takes
//! is appended to its CommitLog but cannot commit. Meanwhile GET_MAX_OFFSET and
//! VIEW_MESSAGE_BY_ID on the leader answer as if the entry were not there. Once the followers
//! resume, the group settles: the entry is committed everywhere or truncated, and a send that
//! was acknowledged is never the one dropped.

mod common;

use std::path::Path;
use std::time::Duration;

use ferrum_client::{Admin, ConnectOptions, ConnectionPool, MessageQueue};
use ferrum_protocol::message::MessageExt;
use ferrum_protocol::route::TopicConfig;
use ferrum_protocol::{RemotingCommand, RequestCode};

use common::{Proc, eventually, request, start_broker_with_sets, start_namesrv};

const NAME: &str = "raft-unc";
const TOPIC: &str = "RaftUncommitted";
const STEP: Duration = Duration::from_secs(20);

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
            "brokerClusterName=RaftUncommittedCluster".to_owned(),
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

/// One request to `addr`, or `None` when it did not answer within `timeout`.
async fn invoke(addr: &str, cmd: RemotingCommand, timeout: Duration) -> Option<RemotingCommand> {
    ConnectionPool::new(ConnectOptions::default())
        .invoke(addr, cmd, timeout)
        .await
        .ok()
}

fn send_request(body: &str) -> RemotingCommand {
    request(
        RequestCode::SEND_MESSAGE_V2,
        &[
            ("a", "raft-unc-producer"),
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
    .with_body(body.as_bytes().to_vec())
}

/// VIEW_MESSAGE_BY_ID at CommitLog `offset`: the record's body when the broker serves it.
async fn view(addr: &str, offset: i64) -> Option<String> {
    let answer = invoke(
        addr,
        request(
            RequestCode::VIEW_MESSAGE_BY_ID,
            &[("offset", &offset.to_string())],
        ),
        Duration::from_secs(5),
    )
    .await
    .expect("the broker answers VIEW_MESSAGE_BY_ID");
    if answer.code != 0 {
        return None;
    }
    let (m, _) = MessageExt::decode(&answer.body).expect("a served record decodes");
    Some(String::from_utf8_lossy(&m.body).into_owned())
}

/// The index of the replica that leads with every peer caught up and everything applied.
async fn settled_leader(admin: &Admin, replicas: &[Proc]) -> Option<usize> {
    for (i, r) in replicas.iter().enumerate() {
        let Ok(s) = admin.raft_status(&r.addr).await else {
            continue;
        };
        if s.role == "Leader"
            && s.peers.len() == 3
            && s.peers.iter().all(|p| p.lag == Some(0))
            && s.applied_index == s.last_log_index
        {
            return Some(i);
        }
    }
    None
}

async fn wait_settled(admin: &Admin, replicas: &[Proc]) -> usize {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if let Some(i) = settled_leader(admin, replicas).await {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a leader with every peer caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(p: &Proc, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_entry_is_not_announced_or_viewable() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
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
    let replicas: Vec<Proc> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| start_replica(d.path(), &namesrv.addr, &peers, i))
        .collect();
    let admin = Admin::new([namesrv.addr.as_str()]);
    let leader = wait_settled(&admin, &replicas).await;
    for r in &replicas {
        admin
            .create_topic(&r.addr, &TopicConfig::new(TOPIC, 1))
            .await
            .expect("topic created");
    }
    let leader_addr = replicas[leader].addr.clone();
    for i in 0..5 {
        let answer = invoke(&leader_addr, send_request(&format!("committed-{i}")), STEP)
            .await
            .expect("the leader answers");
        assert_eq!(answer.code, 0, "send: {:?}", answer.remark);
    }
    assert_eq!(wait_settled(&admin, &replicas).await, leader);
    let mq = MessageQueue {
        topic: TOPIC.to_owned(),
        broker_name: NAME.to_owned(),
        queue_id: 0,
    };
    assert_eq!(admin.max_offset(&leader_addr, &mq).await.expect("max"), 5);
    let committed_end = admin
        .broker_replica_status(&leader_addr)
        .await
        .expect("replica status")
        .max_phy_offset;
    assert_eq!(view(&leader_addr, 0).await.as_deref(), Some("committed-0"));

    // Both followers frozen: the leader appends the next send but no majority can hold it.
    let followers: Vec<&Proc> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| &replicas[i])
        .collect();
    for f in &followers {
        signal(f, "-STOP");
    }
    let pending = {
        let addr = leader_addr.clone();
        tokio::spawn(async move {
            invoke(&addr, send_request("uncommitted"), Duration::from_secs(3)).await
        })
    };
    let appended = eventually(STEP, || async {
        admin
            .broker_replica_status(&leader_addr)
            .await
            .is_ok_and(|s| s.max_phy_offset > committed_end)
    })
    .await;
    let status = admin.raft_status(&leader_addr).await.expect("raft status");
    assert!(appended, "the leader appends the send locally: {status:?}");
    assert!(
        status.commit_index < status.last_log_index,
        "the entry is not committed: {status:?}"
    );
    assert_eq!(
        admin.max_offset(&leader_addr, &mq).await.expect("max"),
        5,
        "GET_MAX_OFFSET counts an uncommitted message"
    );
    assert_eq!(
        view(&leader_addr, committed_end).await,
        None,
        "VIEW_MESSAGE_BY_ID serves an uncommitted record"
    );
    assert_eq!(view(&leader_addr, 0).await.as_deref(), Some("committed-0"));

    // Resumed, the group commits the entry everywhere or truncates it; an acknowledged send is
    // never the one dropped.
    for f in &followers {
        signal(f, "-CONT");
    }
    let acked = pending
        .await
        .expect("sender")
        .is_some_and(|answer| answer.code == 0);
    let leader = wait_settled(&admin, &replicas).await;
    let leader_addr = &replicas[leader].addr;
    let max = admin.max_offset(leader_addr, &mq).await.expect("max");
    assert!(
        max == 6 || (max == 5 && !acked),
        "max offset {max}, send acknowledged: {acked}"
    );
    let at_end = view(leader_addr, committed_end).await;
    assert_eq!(at_end.as_deref(), (max == 6).then_some("uncommitted"));
    for r in &replicas {
        let served = eventually(STEP, || async {
            admin.max_offset(&r.addr, &mq).await.is_ok_and(|m| m == max)
        })
        .await;
        assert!(served, "{} serves max offset {max}", r.addr);
    }
}
