//! One broker group of a master and slaves, real processes on 127.0.0.1: metadata follows the
//! master, reads go to a slave when the master suggests it and while the master is down, and
//! the failover drill (kill -9 the master under load, promote a slave, the old master rejoins as
//! a slave) is checked message by message against what producers had acknowledged.
//!
//! `FERRUM_E2E_LONG=1` (used by `make e2e`) runs the drill longer and with two slaves too.

use std::collections::{BTreeMap, BTreeSet};
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrum_client::{
    Admin, ConnectOptions, ConnectionPool, Message, MessageQueue, Producer, ProducerConfig,
    PullConsumer, PullStatus, SendStatus,
};
use ferrum_protocol::replica::BrokerReplicaStatus;
use ferrum_protocol::route::{TopicConfig, from_json};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

use common::{Proc, eventually, request, start_broker_with_sets, start_namesrv};

const STEP: Duration = Duration::from_secs(10);
const CLUSTER: &str = "MsCluster";

/// A broker of group `name`; `role` is brokerRole, `extra` more `key=value` settings.
fn start_broker(
    store: &Path,
    namesrv: &str,
    name: &str,
    role: &str,
    id: i64,
    extra: &[&str],
) -> Proc {
    let mut sets = vec![
        "listenPort=0".to_owned(),
        "haListenPort=0".to_owned(),
        "metricsPort=0".to_owned(),
        "bindAddress=127.0.0.1".to_owned(),
        format!("storePathRootDir={}", store.display()),
        "mappedFileSizeCommitLog=1048576".to_owned(),
        format!("brokerName={name}"),
        format!("brokerClusterName={CLUSTER}"),
        format!("brokerRole={role}"),
        format!("brokerId={id}"),
        "registerNameServerPeriod=1000".to_owned(),
        "ferrumSlaveSyncInterval=300".to_owned(),
        "slaveReadEnable=true".to_owned(),
        "syncFlushTimeout=2000".to_owned(),
    ];
    sets.extend(extra.iter().map(|s| (*s).to_owned()));
    start_broker_with_sets(namesrv, &sets)
}

fn pool() -> ConnectionPool {
    ConnectionPool::new(ConnectOptions::default())
}

async fn call(addr: &str, request: RemotingCommand) -> RemotingCommand {
    pool()
        .invoke(addr, request, STEP)
        .await
        .unwrap_or_else(|e| panic!("{addr} answers: {e}"))
}

async fn replica_status(addr: &str) -> Option<BrokerReplicaStatus> {
    let answer = pool()
        .invoke(
            addr,
            request(RequestCode::FERRUM_GET_BROKER_REPLICA_STATUS, &[]),
            STEP,
        )
        .await
        .ok()?;
    if answer.code != ResponseCode::SUCCESS.code() {
        return None;
    }
    from_json(&answer.body, "BrokerReplicaStatus").ok()
}

async fn wait_for_member(admin: &Admin, name: &str, id: i64, addr: &str) {
    let registered = eventually(Duration::from_secs(30), || async {
        admin.namesrv().cluster_info().await.is_ok_and(|info| {
            info.broker_addr_table
                .get(name)
                .and_then(|b| b.broker_addrs.get(&id))
                .is_some_and(|a| a == addr)
        })
    })
    .await;
    assert!(registered, "{addr} registered as {name}/{id}");
}

async fn wait_for_topic_on(admin: &Admin, addr: &str, topic: &str) {
    let present = eventually(Duration::from_secs(30), || async {
        admin
            .topic_configs(addr)
            .await
            .is_ok_and(|t| t.topic_config_table.contains_key(topic))
    })
    .await;
    assert!(present, "topic {topic} reached {addr}");
}

fn runtime_get_total(info: &BTreeMap<String, String>) -> u64 {
    info.get("msgGetTotalTodayNow")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_follows_the_master_and_reads_go_to_the_slave() {
    tokio::time::timeout(Duration::from_secs(240), metadata_and_reads())
        .await
        .expect("scenario finishes in time");
}

async fn metadata_and_reads() {
    const NAME: &str = "ms-meta";
    const TOPIC: &str = "MsMetaTopic";
    const GROUP: &str = "ms-readers";
    let namesrv = start_namesrv();
    let master_dir = tempfile::tempdir().expect("tempdir");
    let slave_dir = tempfile::tempdir().expect("tempdir");
    // 2 KiB of "physical memory": a pull more than 40 % of it (820 bytes) behind is far behind.
    // Offsets persisted every 200 ms, so the master's file holds 30 when it is killed.
    let tiny_memory = [
        "ferrumTotalPhysicalMemoryBytes=2048",
        "flushConsumerOffsetInterval=200",
    ];
    let mut master = start_broker(
        master_dir.path(),
        &namesrv.addr,
        NAME,
        "ASYNC_MASTER",
        0,
        &tiny_memory,
    );
    let admin = Admin::new([namesrv.addr.as_str()]);
    wait_for_member(&admin, NAME, 0, &master.addr).await;
    let slave = start_broker(slave_dir.path(), &namesrv.addr, NAME, "SLAVE", 1, &[]);
    wait_for_member(&admin, NAME, 1, &slave.addr).await;

    // Topics and subscription groups created on the master appear on the slave.
    admin
        .create_topic(&master.addr, &TopicConfig::new(TOPIC, 2))
        .await
        .expect("create topic on the master");
    wait_for_topic_on(&admin, &slave.addr, TOPIC).await;
    let group_body =
        br#"{"groupName":"ms-configured","retryMaxTimes":3,"consumeBroadcastEnable":false}"#;
    let answer = call(
        &master.addr,
        request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, &[])
            .with_body(group_body.to_vec()),
    )
    .await;
    assert_eq!(answer.code, 0, "group created: {:?}", answer.remark);
    let group_synced = eventually(Duration::from_secs(30), || async {
        let answer = call(
            &slave.addr,
            request(RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG, &[]),
        )
        .await;
        let body: serde_json::Value =
            serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
        body["subscriptionGroupTable"]["ms-configured"]["retryMaxTimes"] == 3
    })
    .await;
    assert!(group_synced, "the subscription group reached the slave");

    // A slave refuses sends with SERVICE_NOT_AVAILABLE and says why.
    let refused = call(
        &slave.addr,
        request(
            RequestCode::SEND_MESSAGE_V2,
            &[
                ("a", "PG"),
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
        .with_body(b"to a slave".to_vec()),
    )
    .await;
    assert_eq!(refused.code, ResponseCode::SERVICE_NOT_AVAILABLE.code());
    assert!(
        refused
            .remark
            .as_deref()
            .is_some_and(|r| r.contains("slave")),
        "remark names the slave: {:?}",
        refused.remark
    );

    // 30 messages of ~300 bytes per queue: most of them are "far behind" for the master.
    let producer = Producer::new([namesrv.addr.as_str()], "ms-producer");
    let mut sent: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for i in 0..60 {
        let body = format!("m-{i:03}-{}", "x".repeat(280));
        let result = producer
            .send_to_queue(TOPIC, Message::new(body.clone()), i % 2)
            .await
            .expect("send to the master");
        assert_eq!(result.status, SendStatus::SendOk);
        sent.entry(result.queue.queue_id).or_default().insert(body);
    }
    let queues: Vec<MessageQueue> = (0..2)
        .map(|queue_id| MessageQueue {
            topic: TOPIC.to_owned(),
            broker_name: NAME.to_owned(),
            queue_id,
        })
        .collect();
    for mq in &queues {
        let replicated = eventually(Duration::from_secs(30), || async {
            admin.max_offset(&slave.addr, mq).await.ok() == Some(30)
        })
        .await;
        assert!(replicated, "queue {} replicated to the slave", mq.queue_id);
    }

    // Far behind on the master: it suggests the slave, which serves the same messages.
    let served_before = runtime_get_total(
        &admin
            .broker_runtime_info(&slave.addr)
            .await
            .expect("runtime"),
    );
    let consumer = PullConsumer::new([namesrv.addr.as_str()], GROUP);
    for mq in &queues {
        let mut offset = 0;
        let mut got = BTreeSet::new();
        while offset < 30 {
            let result = consumer.pull(mq, offset, 4).await.expect("pull");
            assert_eq!(result.status, PullStatus::Found);
            for msg in &result.messages {
                got.insert(String::from_utf8_lossy(&msg.body).into_owned());
            }
            offset = result.next_begin_offset;
        }
        assert_eq!(
            &got, &sent[&mq.queue_id],
            "queue {} read whole",
            mq.queue_id
        );
        consumer
            .commit_offset(mq, offset)
            .await
            .expect("commit on the master");
    }
    let served_after = runtime_get_total(
        &admin
            .broker_runtime_info(&slave.addr)
            .await
            .expect("runtime"),
    );
    assert!(
        served_after > served_before,
        "the slave served pulls the master redirected ({served_before} -> {served_after})"
    );

    // Offsets committed on the master reach the slave.
    for mq in &queues {
        let synced = eventually(Duration::from_secs(30), || async {
            admin
                .consumer_offset(&slave.addr, GROUP, mq)
                .await
                .ok()
                .flatten()
                == Some(30)
        })
        .await;
        assert!(synced, "offset of queue {} reached the slave", mq.queue_id);
    }

    // More messages, replicated but not consumed yet; then the master dies.
    for i in 60..70 {
        let body = format!("m-{i:03}");
        producer
            .send_to_queue(TOPIC, Message::new(body.clone()), 0)
            .await
            .expect("send to the master");
        sent.entry(0).or_default().insert(body);
    }
    let replicated = eventually(Duration::from_secs(30), || async {
        admin.max_offset(&slave.addr, &queues[0]).await.ok() == Some(40)
    })
    .await;
    assert!(replicated, "the new messages reached the slave");
    master.kill();

    // The consumer carries on from the slave and commits its progress there.
    let mut offset = 30;
    let mut tail = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while offset < 40 && Instant::now() < deadline {
        match consumer.pull(&queues[0], offset, 8).await {
            Ok(result) => {
                for msg in &result.messages {
                    tail.insert(String::from_utf8_lossy(&msg.body).into_owned());
                }
                offset = result.next_begin_offset.max(offset);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        offset, 40,
        "the slave served the rest while the master is down"
    );
    assert_eq!(tail.len(), 10);
    consumer
        .commit_offset(&queues[0], 40)
        .await
        .expect("commit on the slave while the master is down");
    assert_eq!(
        admin
            .consumer_offset(&slave.addr, GROUP, &queues[0])
            .await
            .expect("query"),
        Some(40)
    );

    // The old master returns with its older offset (30); the slave keeps 40 through the syncs.
    let master = start_broker(
        master_dir.path(),
        &namesrv.addr,
        NAME,
        "ASYNC_MASTER",
        0,
        &tiny_memory,
    );
    wait_for_member(&admin, NAME, 0, &master.addr).await;
    let follows = eventually(Duration::from_secs(30), || async {
        replica_status(&slave.addr)
            .await
            .is_some_and(|s| s.master_addr.as_deref() == Some(master.addr.as_str()))
    })
    .await;
    assert!(follows, "the slave follows the returned master");
    assert_eq!(
        admin
            .consumer_offset(&master.addr, GROUP, &queues[0])
            .await
            .expect("query"),
        Some(30),
        "the returned master still has the older offset"
    );
    // Several sync rounds (300 ms each).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        admin
            .consumer_offset(&slave.addr, GROUP, &queues[0])
            .await
            .expect("query"),
        Some(40),
        "the offset committed on the slave survived the older master's sync"
    );
    // A topic created now on the returned master still reaches the slave.
    admin
        .create_topic(&master.addr, &TopicConfig::new("MsLateTopic", 1))
        .await
        .expect("create topic");
    wait_for_topic_on(&admin, &slave.addr, "MsLateTopic").await;
}

/// What the producer had acknowledged, by body, with the commit-log offset from its msgId.
#[derive(Debug, Default)]
struct Ledger {
    /// Body -> (commit-log offset, broker that acknowledged, offset msgId).
    acked: BTreeMap<String, (i64, String, String)>,
    failures: usize,
    first_ok_after: Option<Instant>,
    /// The first send the broker wrote (acknowledged or FLUSH_SLAVE_TIMEOUT/SLAVE_NOT_AVAILABLE).
    first_written_after: Option<Instant>,
}

/// The commit-log offset in an offset msgId (16 hex digits of store host, 16 of offset).
fn phy_offset(msg_id: &str) -> i64 {
    msg_id
        .get(msg_id.len().saturating_sub(16)..)
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .unwrap_or(-1)
}

async fn produce(
    producer: Producer,
    topic: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let mut seq = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        let body = format!("drill-{seq:08}");
        seq += 1;
        match producer.send(&topic, Message::new(body.clone())).await {
            Ok(result) if result.status == SendStatus::SendOk => {
                let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
                ledger.acked.insert(
                    body,
                    (
                        phy_offset(&result.msg_id),
                        result.broker_addr.clone(),
                        result.msg_id.clone(),
                    ),
                );
                ledger.first_ok_after.get_or_insert_with(Instant::now);
                ledger.first_written_after.get_or_insert_with(Instant::now);
            }
            // FLUSH_SLAVE_TIMEOUT / SLAVE_NOT_AVAILABLE are written but not acknowledged.
            Ok(_) => {
                let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
                ledger.failures += 1;
                ledger.first_written_after.get_or_insert_with(Instant::now);
            }
            Err(_) => {
                ledger.lock().unwrap_or_else(|e| e.into_inner()).failures += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Reads every queue from its consumer's own offsets, forever, recording bodies.
async fn consume(
    consumer: PullConsumer,
    queues: Vec<MessageQueue>,
    received: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
) {
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for mq in &queues {
            let offset = offsets.entry(mq.queue_id).or_insert(0);
            match consumer.pull(mq, *offset, 32).await {
                Ok(result) => {
                    if !result.messages.is_empty() {
                        idle = false;
                    }
                    let mut got = received.lock().unwrap_or_else(|e| e.into_inner());
                    for msg in &result.messages {
                        got.insert(String::from_utf8_lossy(&msg.body).into_owned());
                    }
                    *offset = match result.status {
                        PullStatus::OffsetIllegal => result.next_begin_offset,
                        _ => result
                            .next_begin_offset
                            .max(*offset)
                            .min(result.max_offset.max(0)),
                    };
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn received_count(received: &Arc<Mutex<BTreeSet<String>>>) -> usize {
    received.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Every message of every queue of `topic` on `addr`, read from offset 0 by a fresh group.
async fn scan_all(namesrv: &str, queues: &[MessageQueue], group: &str) -> BTreeSet<String> {
    let consumer = PullConsumer::new([namesrv], group);
    let mut all = BTreeSet::new();
    for mq in queues {
        let mut offset = 0;
        loop {
            let result = consumer.pull(mq, offset, 32).await.expect("scan pull");
            for msg in &result.messages {
                all.insert(String::from_utf8_lossy(&msg.body).into_owned());
            }
            if result.status == PullStatus::OffsetIllegal && result.next_begin_offset > offset {
                eprintln!(
                    "scan: queue {} starts at {} now, not {offset}",
                    mq.queue_id, result.next_begin_offset
                );
                offset = result.next_begin_offset;
                continue;
            }
            if result.status != PullStatus::Found || result.next_begin_offset <= offset {
                break;
            }
            offset = result.next_begin_offset;
        }
    }
    all
}

/// The failover drill with `slaves` slaves under a `role` master, checked message by message.
async fn failover_drill(role: &str, slaves: usize, produce_for: Duration) {
    let name = format!(
        "ms-{}-{slaves}",
        role.to_ascii_lowercase().replace('_', "-")
    );
    let topic = format!("Drill{}{slaves}", role.replace('_', ""));
    let namesrv = start_namesrv();
    let admin = Admin::new([namesrv.addr.as_str()]);
    let dirs: Vec<tempfile::TempDir> = (0..=slaves)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    // One 64 MiB CommitLog file holds the whole drill, so disk-space retention (which deletes
    // whole files, never the last) cannot remove messages the checker still looks for.
    let big_files = ["mappedFileSizeCommitLog=67108864"];
    let mut master = start_broker(dirs[0].path(), &namesrv.addr, &name, role, 0, &big_files);
    wait_for_member(&admin, &name, 0, &master.addr).await;
    let mut replicas = Vec::new();
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let slave = start_broker(
            dir.path(),
            &namesrv.addr,
            &name,
            "SLAVE",
            i as i64,
            &big_files,
        );
        wait_for_member(&admin, &name, i as i64, &slave.addr).await;
        replicas.push(slave);
    }
    admin
        .create_topic(&master.addr, &TopicConfig::new(topic.clone(), 4))
        .await
        .expect("create topic");
    for slave in &replicas {
        wait_for_topic_on(&admin, &slave.addr, &topic).await;
    }
    // Every slave connected over HA before the load starts.
    let connected = eventually(Duration::from_secs(30), || async {
        replica_status(&master.addr)
            .await
            .is_some_and(|s| s.slaves.len() == slaves)
    })
    .await;
    assert!(connected, "{slaves} slave(s) replicate from the master");

    let queues: Vec<MessageQueue> = (0..4)
        .map(|queue_id| MessageQueue {
            topic: topic.clone(),
            broker_name: name.clone(),
            queue_id,
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let producer = Producer::with_config(
        [namesrv.addr.as_str()],
        "drill-producer",
        ProducerConfig {
            send_timeout: Duration::from_secs(3),
            route_ttl: Duration::from_millis(500),
            ..ProducerConfig::default()
        },
    );
    let consumer = PullConsumer::with_config(
        [namesrv.addr.as_str()],
        "drill-consumers",
        ferrum_client::PullConfig {
            timeout: Duration::from_secs(3),
            route_ttl: Duration::from_millis(500),
            ..ferrum_client::PullConfig::default()
        },
    );
    let producing = tokio::spawn(produce(
        producer,
        topic.clone(),
        ledger.clone(),
        stop.clone(),
    ));
    let consuming = tokio::spawn(consume(
        consumer,
        queues.clone(),
        received.clone(),
        stop.clone(),
    ));

    tokio::time::sleep(produce_for).await;
    // The lag the master reports just before it dies bounds what ASYNC_MASTER may lose.
    let before = replica_status(&master.addr)
        .await
        .expect("master status before the kill");
    let acked_before_kill = ledger.lock().unwrap_or_else(|e| e.into_inner()).acked.len();
    assert!(acked_before_kill > 0, "the producer got acknowledgements");
    master.kill();
    let killed_at = Instant::now();

    // A second group that starts only now reads from a slave while no master exists: with
    // SYNC_MASTER every message acknowledged before the kill, with ASYNC_MASTER some.
    let acked_then: BTreeSet<String> = ledger
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .acked
        .keys()
        .cloned()
        .collect();
    let late = PullConsumer::with_config(
        [namesrv.addr.as_str()],
        "drill-late-consumers",
        ferrum_client::PullConfig {
            timeout: Duration::from_secs(3),
            route_ttl: Duration::from_millis(500),
            ..ferrum_client::PullConfig::default()
        },
    );
    let received_late = Arc::new(Mutex::new(BTreeSet::new()));
    let consuming_late = tokio::spawn(consume(
        late,
        queues.clone(),
        received_late.clone(),
        stop.clone(),
    ));
    // With one slave it holds every acknowledged message; with more, only the most advanced
    // does, and the consumer reads the lowest brokerId.
    let whole = role == "SYNC_MASTER" && slaves == 1;
    let carried_on = eventually(Duration::from_secs(120), || async {
        let got = received_late.lock().unwrap_or_else(|e| e.into_inner());
        if whole {
            acked_then.is_subset(&got)
        } else {
            !got.is_empty()
        }
    })
    .await;
    assert!(
        carried_on,
        "a consumer read from a slave while the master was down ({} of {} acknowledged)",
        received_count(&received_late),
        acked_then.len()
    );

    // Promote the most advanced slave, as an operator reading `ferrumctl broker status` would
    // (the admin call `ferrumctl broker promote` makes).
    let mut most_advanced = (0, -1);
    for (i, slave) in replicas.iter().enumerate() {
        let max = replica_status(&slave.addr)
            .await
            .map_or(-1, |s| s.max_phy_offset);
        if max > most_advanced.1 {
            most_advanced = (i, max);
        }
    }
    let promoted = &replicas[most_advanced.0];
    {
        let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.first_ok_after = None;
        ledger.first_written_after = None;
    }
    let promote_at = Instant::now();
    let answer = call(
        &promoted.addr,
        request(RequestCode::FERRUM_PROMOTE_BROKER, &[("brokerRole", role)]),
    )
    .await;
    assert_eq!(answer.code, 0, "promotion: {:?}", answer.remark);
    let first = |pick: fn(&Ledger) -> Option<Instant>| {
        let ledger = ledger.clone();
        move || {
            let at = pick(&ledger.lock().unwrap_or_else(|e| e.into_inner()));
            async move { at.is_some() }
        }
    };
    let written = eventually(Duration::from_secs(60), first(|l| l.first_written_after)).await;
    assert!(written, "producers write to the new master");

    // The old master rejoins as a slave and truncates what diverged.
    let old = start_broker(dirs[0].path(), &namesrv.addr, &name, role, 0, &big_files);
    let rejoined = eventually(Duration::from_secs(60), || async {
        replica_status(&old.addr).await.is_some_and(|s| {
            s.role == "SLAVE" && s.master_addr.as_deref() == Some(promoted.addr.as_str())
        })
    })
    .await;
    assert!(
        rejoined,
        "the old master rejoined as a slave of the new one"
    );
    // A SYNC_MASTER acknowledges again once a slave holds its writes.
    let resumed = eventually(Duration::from_secs(60), first(|l| l.first_ok_after)).await;
    assert!(
        resumed,
        "producers get acknowledgements from the new master"
    );
    {
        let ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!(
            "{role} +{slaves}: master down {:?} before promote; promote -> first written send {:?}, -> first acknowledged send {:?}",
            promote_at.duration_since(killed_at),
            ledger
                .first_written_after
                .map(|t| t.duration_since(promote_at)),
            ledger.first_ok_after.map(|t| t.duration_since(promote_at)),
        );
    }
    tokio::time::sleep(produce_for / 2).await;
    stop.store(true, Ordering::Relaxed);
    let _ = producing.await;
    let _ = consuming.await;
    let _ = consuming_late.await;

    let ledger = std::mem::take(&mut *ledger.lock().unwrap_or_else(|e| e.into_inner()));
    let mut got = std::mem::take(&mut *received.lock().unwrap_or_else(|e| e.into_inner()));
    got.extend(std::mem::take(
        &mut *received_late.lock().unwrap_or_else(|e| e.into_inner()),
    ));
    // Consume queues are filled just after the commit log, so the last acknowledged messages
    // may become readable a moment after their acknowledgement: rescan a few times.
    for _ in 0..10 {
        got.extend(scan_all(&namesrv.addr, &queues, "drill-checker").await);
        if ledger.acked.keys().all(|body| got.contains(body)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let old_status = replica_status(&old.addr).await.expect("old master status");
    let lost: Vec<(&String, &(i64, String, String))> = ledger
        .acked
        .iter()
        .filter(|(body, _)| !got.contains(*body))
        .collect();
    let safe_below = before
        .slaves
        .iter()
        .map(|s| s.acked_offset)
        .max()
        .unwrap_or(-1);
    eprintln!(
        "{role} +{slaves}: acknowledged {}, failed sends {}, lost {}, lag before kill {:?} bytes, old master truncated {} messages / {} bytes",
        ledger.acked.len(),
        ledger.failures,
        lost.len(),
        before
            .slaves
            .iter()
            .map(|s| s.lag_bytes)
            .collect::<Vec<_>>(),
        old_status.truncated_messages,
        old_status.truncated_bytes
    );
    // Where each lost message is: its stored record by msgId, against its queue's max offset.
    for (body, (_, _, msg_id)) in &lost {
        match admin.view_message(msg_id).await {
            Ok(msg) => {
                let mq = MessageQueue {
                    topic: topic.clone(),
                    broker_name: name.clone(),
                    queue_id: msg.queue_id,
                };
                let max = admin.max_offset(&promoted.addr, &mq).await.ok();
                eprintln!(
                    "lost {body}: stored in queue {} at queue offset {}, queue max offset {max:?}",
                    msg.queue_id, msg.queue_offset
                );
            }
            Err(error) => eprintln!("lost {body}: not viewable by msgId {msg_id}: {error}"),
        }
    }
    if role == "SYNC_MASTER" {
        assert!(
            lost.is_empty(),
            "SYNC_MASTER lost acknowledged messages: {lost:?}"
        );
    } else {
        // Only what no slave had acknowledged when the lag was reported may be gone, and the
        // returning master counted at least that much as truncated.
        let new_master = replica_status(&promoted.addr)
            .await
            .expect("new master status");
        for (body, (offset, acked_by, _)) in &lost {
            assert!(
                *offset >= safe_below,
                "{body} at {offset} (acknowledged by {acked_by}) was below the replicated offset {safe_below} and is lost"
            );
        }
        assert!(
            old_status.truncated_messages >= lost.len() as u64,
            "the truncation count covers every lost message: lost {lost:?}, new master epoch {} from {}, old master {:?}",
            new_master.epoch,
            new_master.epoch_start_offset,
            old_status
        );
    }
    drop(replicas);
}

fn long_drill() -> bool {
    std::env::var_os("FERRUM_E2E_LONG").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_sync_master_loses_nothing_acknowledged() {
    let produce_for = if long_drill() {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(2)
    };
    tokio::time::timeout(Duration::from_secs(300), async {
        failover_drill("SYNC_MASTER", 1, produce_for).await;
        if long_drill() {
            failover_drill("SYNC_MASTER", 2, produce_for).await;
        }
    })
    .await
    .expect("drill finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_async_master_loses_only_the_reported_lag() {
    let produce_for = if long_drill() {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(2)
    };
    tokio::time::timeout(Duration::from_secs(300), async {
        failover_drill("ASYNC_MASTER", 1, produce_for).await;
        if long_drill() {
            failover_drill("ASYNC_MASTER", 2, produce_for).await;
        }
    })
    .await
    .expect("drill finishes in time");
}

/// A slave holds the master's delayed messages through replication; if it delivered them
/// itself its CommitLog would grow past, and then diverge from, the master's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_master_delivers_delayed_messages() {
    tokio::time::timeout(Duration::from_secs(120), async {
        const NAME: &str = "ms-delay";
        const TOPIC: &str = "MsDelayTopic";
        let namesrv = start_namesrv();
        let master_dir = tempfile::tempdir().expect("tempdir");
        let slave_dir = tempfile::tempdir().expect("tempdir");
        let master = start_broker(
            master_dir.path(),
            &namesrv.addr,
            NAME,
            "ASYNC_MASTER",
            0,
            &[],
        );
        let admin = Admin::new([namesrv.addr.as_str()]);
        wait_for_member(&admin, NAME, 0, &master.addr).await;
        let slave = start_broker(slave_dir.path(), &namesrv.addr, NAME, "SLAVE", 1, &[]);
        wait_for_member(&admin, NAME, 1, &slave.addr).await;
        admin
            .create_topic(&master.addr, &TopicConfig::new(TOPIC, 1))
            .await
            .expect("topic created");

        let producer = Producer::new([namesrv.addr.as_str()], "ms-delay-producer");
        for i in 0..3 {
            let sent = producer
                .send_to_queue(
                    TOPIC,
                    Message::new(format!("later-{i}")).with_delay_level(1),
                    0,
                )
                .await
                .expect("send to the master");
            assert_eq!(sent.status, SendStatus::SendOk);
        }
        // Level 1 is 1 s: once the master's copies sit in the topic's queue and the slave has
        // every byte of the master, both CommitLogs must end at the same offset.
        let delivered = eventually(Duration::from_secs(30), || async {
            let max = call(
                &master.addr,
                request(
                    RequestCode::GET_MAX_OFFSET,
                    &[("topic", TOPIC), ("queueId", "0")],
                ),
            )
            .await;
            max.ext_fields.get("offset").map(String::as_str) == Some("3")
        })
        .await;
        assert!(delivered, "the master delivered the three delayed messages");
        let in_step = eventually(Duration::from_secs(30), || async {
            let (Some(m), Some(s)) = (
                replica_status(&master.addr).await,
                replica_status(&slave.addr).await,
            ) else {
                return false;
            };
            m.max_phy_offset == s.max_phy_offset
        })
        .await;
        assert!(in_step, "the slave caught up with the master");
        // Give a wrongly running schedule service on the slave time to act (level 1 = 1 s).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let m = replica_status(&master.addr).await.expect("master status");
        let s = replica_status(&slave.addr).await.expect("slave status");
        assert_eq!(
            s.max_phy_offset, m.max_phy_offset,
            "the slave appended nothing of its own"
        );
        let on_slave = call(
            &slave.addr,
            request(
                RequestCode::GET_MAX_OFFSET,
                &[("topic", TOPIC), ("queueId", "0")],
            ),
        )
        .await;
        assert_eq!(
            on_slave.ext_fields.get("offset").map(String::as_str),
            Some("3"),
            "the slave's queue holds exactly the master's three deliveries"
        );
    })
    .await
    .expect("scenario finishes in time");
}
