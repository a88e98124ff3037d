//! `ferrum_broker_system_busy_total{source}` on the `/metrics` endpoint of real ferrum-broker
//! processes, with each SYSTEM_BUSY brought about on purpose and counted under what refused it.
//!
//! Three Raft replicas run with one processing slot (`serverRequestQueueCapacity=1`). A follower
//! is killed and one more message is committed without it, then the leader is asked to hand its
//! leadership to that dead follower: the transfer waits (holding the only slot) for the target
//! to catch up, which it never does, and is refused SYSTEM_BUSY (`raft_transfer`). While it
//! waits, sends find no free slot within `waitTimeMillsInSendQueue` and are refused SYSTEM_BUSY
//! by the remoting server (`server`). Nothing passed the write gate's hold or met a busy store,
//! so those sources stay at 0.

mod common;

use std::path::Path;
use std::time::Duration;

use ferrum_client::{Admin, ClientError, Message, Producer, SendStatus};
use ferrum_protocol::ResponseCode;
use ferrum_protocol::route::TopicConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Proc, spawn_reading_lines, start_namesrv};

const STEP: Duration = Duration::from_secs(10);
const GROUP: &str = "raft-busy";
const TOPIC: &str = "SystemBusyTopic";

struct Replica {
    proc: Proc,
    metrics: String,
}

fn start_replica(store: &Path, namesrv: &str, peers: &str, i: usize) -> Replica {
    let mut cmd = common::broker_command();
    cmd.args(["-n", namesrv]);
    for set in [
        "listenPort=0".to_owned(),
        "metricsPort=0".to_owned(),
        "bindAddress=127.0.0.1".to_owned(),
        format!("storePathRootDir={}", store.display()),
        "mappedFileSizeCommitLog=1048576".to_owned(),
        format!("brokerName={GROUP}"),
        "brokerClusterName=SystemBusyCluster".to_owned(),
        "registerNameServerPeriod=1000".to_owned(),
        "enableDLegerCommitLog=true".to_owned(),
        format!("dLegerGroup={GROUP}"),
        format!("dLegerPeers={peers}"),
        format!("dLegerSelfId=n{i}"),
        "serverRequestQueueCapacity=1".to_owned(),
        "waitTimeMillsInSendQueue=200".to_owned(),
    ] {
        cmd.args(["--set", &set]);
    }
    let (child, first, rest) = spawn_reading_lines(cmd, STEP);
    let addr = first
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("address in the start line")
        .to_owned();
    let proc = Proc { child, addr };
    let metrics = loop {
        let line = rest.recv_timeout(STEP).expect("the metrics line");
        if let Some(rest) = line.split("metrics on http://").nth(1) {
            break rest.split('/').next().expect("host:port").to_owned();
        }
    };
    Replica { proc, metrics }
}

async fn scrape(addr: &str) -> Option<String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.split("\r\n\r\n").nth(1).map(str::to_owned)
    };
    tokio::time::timeout(STEP, exchange).await.ok().flatten()
}

/// The value of the series `name{labels}`, labels in the encoder's (sorted) order.
fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
}

fn busy(text: &str, source: &str) -> f64 {
    value(
        text,
        "ferrum_broker_system_busy_total",
        &format!(r#"source="{source}""#),
    )
    .unwrap_or_else(|| panic!("system_busy_total{{source={source}}} is exported:\n{text}"))
}

fn leads(text: &str) -> bool {
    value(
        text,
        "ferrum_broker_raft_role",
        &format!(r#"raft_group="{GROUP}",role="leader""#),
    ) == Some(1.0)
}

/// Runs `attempt` every 100 ms until it gives a value or `limit` passes.
async fn until<T, F, Fut>(limit: Duration, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = attempt().await {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_busy_is_counted_by_what_refused() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("scenario finishes in time");
}

async fn scenario() {
    let namesrv = start_namesrv();
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let peers = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| format!("n{i}-{}", l.local_addr().expect("addr")))
        .collect::<Vec<_>>()
        .join(";");
    drop(listeners);
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut replicas: Vec<Replica> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| start_replica(d.path(), &namesrv.addr, &peers, i))
        .collect();

    let leader = until(Duration::from_secs(30), || async {
        for (i, r) in replicas.iter().enumerate() {
            if scrape(&r.metrics).await.is_some_and(|t| leads(&t)) {
                return Some(i);
            }
        }
        None
    })
    .await
    .expect("a replica reports the leader role");
    let before = scrape(&replicas[leader].metrics).await.expect("scrape");
    for source in ["server", "store", "raft_write_gate", "raft_transfer"] {
        assert_eq!(busy(&before, source), 0.0, "{source} before any refusal");
    }

    let admin = Admin::new([namesrv.addr.as_str()]);
    admin
        .create_topic(&replicas[leader].proc.addr, &TopicConfig::new(TOPIC, 1))
        .await
        .expect("topic created on the leader");
    let producer = Producer::new([namesrv.addr.as_str()], "system-busy-producer");
    // The route lists the leader once it registered as brokerId 0 with the topic.
    let sent = until(STEP, || async {
        producer.send(TOPIC, Message::new("first")).await.ok()
    })
    .await
    .expect("a first send is acknowledged");
    assert_eq!(sent.status, SendStatus::SendOk);

    // The target falls behind for good: dead, and one more entry committed without it.
    let target = (leader + 1) % 3;
    replicas[target].proc.kill();
    let after_kill = producer
        .send(TOPIC, Message::new("without the target"))
        .await
        .expect("a majority still commits");
    assert_eq!(after_kill.status, SendStatus::SendOk);

    let leader_addr = replicas[leader].proc.addr.clone();
    let target_id = format!("n{target}");
    let transfer = tokio::spawn(async move {
        let admin = Admin::new(Vec::<String>::new());
        admin.transfer_leader(&leader_addr, Some(&target_id)).await
    });

    // While the transfer holds the only slot, a send is refused by the server.
    let remark = until(STEP, || async {
        match producer
            .send(TOPIC, Message::new("during the transfer"))
            .await
        {
            Err(e) if e.response_code() == Some(ResponseCode::SYSTEM_BUSY.code()) => {
                Some(e.to_string())
            }
            _ => None,
        }
    })
    .await
    .expect("a send is refused SYSTEM_BUSY while the transfer waits");
    assert!(remark.contains("TIMEOUT_CLEAN_QUEUE"), "{remark}");

    let answer = transfer.await.expect("transfer task");
    match answer {
        Err(ClientError::Response { code, remark, .. }) => {
            assert_eq!(code, ResponseCode::SYSTEM_BUSY.code(), "{remark}");
        }
        other => panic!("the transfer to a dead follower is refused SYSTEM_BUSY: {other:?}"),
    }

    let after = scrape(&replicas[leader].metrics).await.expect("scrape");
    assert_eq!(busy(&after, "raft_transfer"), 1.0, "{after}");
    assert!(busy(&after, "server") >= 1.0, "{after}");
    assert_eq!(busy(&after, "raft_write_gate"), 0.0, "{after}");
    assert_eq!(busy(&after, "store"), 0.0, "{after}");
    // The answered requests carry the same code in the per-request series.
    assert_eq!(
        value(
            &after,
            "ferrum_broker_requests_total",
            r#"request_code="FERRUM_RAFT_TRANSFER_LEADER",response_code="SYSTEM_BUSY""#,
        ),
        Some(1.0),
        "{after}"
    );
}
