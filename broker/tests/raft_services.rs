//! Raft mode's services with three real ferrum-broker processes and a ferrum-namesrv on
//! 127.0.0.1: delayed messages (DELAY level 1 and 3) are delivered after their delay, a
//! consumer's send-back with delay level 1 returns through %RETRY% after it, a
//! transaction's half message is delivered once END_TRANSACTION commits it and never after a
//! rollback, SEND_BATCH_MESSAGE is acknowledged with consecutive queue offsets — and all of it
//! holds across a SIGKILL of the leader: a delayed and two half messages acknowledged before
//! the kill are delivered (or not) by the new leader, and every batch in flight at the kill is
//! visible whole or not at all.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferrum_client::{Admin, ConnectOptions, ConnectionPool};
use ferrum_protocol::message::sys_flag::{
    TRANSACTION_COMMIT_TYPE, TRANSACTION_PREPARED_TYPE, TRANSACTION_ROLLBACK_TYPE,
};
use ferrum_protocol::message::{self, BatchEntry, MessageExt, property};
use ferrum_protocol::route::TopicConfig;
use ferrum_protocol::{RemotingCommand, RequestCode};

use common::{Proc, eventually, request, start_broker_with_sets, start_namesrv};

const CLUSTER: &str = "RaftServices";
const NAME: &str = "raft-s";
const DELAYED: &str = "RaftDelayed";
const TX: &str = "RaftTx";
const BATCH: &str = "RaftBatch";
const TX_GROUP: &str = "RaftTxProducer";
const READER: &str = "RaftServiceReader";
const BATCH_SIZE: usize = 5;
/// Longest a delivery, election or registration may take in this test.
const STEP: Duration = Duration::from_secs(30);

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
            "slaveReadEnable=true".to_owned(),
            // The transactions here are ended by the test, never by a check.
            "transactionTimeOut=600000".to_owned(),
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

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn properties(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}\u{1}{v}\u{2}"))
        .collect()
}

/// A SEND_MESSAGE_V2 (or, with `batch`, SEND_BATCH_MESSAGE) request with short header names.
fn send_request(
    topic: &str,
    sys_flag: i32,
    props: &str,
    body: Vec<u8>,
    batch: bool,
) -> RemotingCommand {
    let code = if batch {
        RequestCode::SEND_BATCH_MESSAGE
    } else {
        RequestCode::SEND_MESSAGE_V2
    };
    let sys_flag = sys_flag.to_string();
    let born = now_millis().to_string();
    let mut fields = vec![
        ("a", TX_GROUP),
        ("b", topic),
        ("c", "TBW102"),
        ("d", "1"),
        ("e", "0"),
        ("f", sys_flag.as_str()),
        ("g", born.as_str()),
        ("h", "0"),
        ("i", props),
    ];
    if batch {
        fields.push(("m", "true"));
    }
    request(code, &fields).with_body(body)
}

struct Group {
    pool: ConnectionPool,
    admin: Admin,
    replicas: Vec<Option<Proc>>,
}

impl Group {
    async fn call(&self, addr: &str, request: RemotingCommand) -> Option<RemotingCommand> {
        self.pool
            .invoke(addr, request, Duration::from_secs(5))
            .await
            .ok()
    }

    /// The registered master's address once it is one of the live replicas.
    async fn master(&self) -> Option<String> {
        let info = self.admin.namesrv().cluster_info().await.ok()?;
        let master = info
            .broker_addr_table
            .get(NAME)?
            .broker_addrs
            .get(&0)?
            .clone();
        self.replicas
            .iter()
            .flatten()
            .any(|p| p.addr == master)
            .then_some(master)
    }

    async fn wait_for_master(&self, not: Option<&str>) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(m) = self.master().await.filter(|m| Some(m.as_str()) != not) {
                return m;
            }
            assert!(Instant::now() < deadline, "a master is registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every message of `topic` queue 0 readable on `addr`, with its queue offset.
    async fn read_all(&self, addr: &str, topic: &str) -> Vec<MessageExt> {
        let mut out = Vec::new();
        let mut offset = 0i64;
        loop {
            let offset_s = offset.to_string();
            let Some(answer) = self
                .call(
                    addr,
                    request(
                        RequestCode::PULL_MESSAGE,
                        &[
                            ("consumerGroup", READER),
                            ("topic", topic),
                            ("queueId", "0"),
                            ("queueOffset", &offset_s),
                            ("maxMsgNums", "32"),
                            ("sysFlag", "0"),
                            ("commitOffset", "0"),
                            ("suspendTimeoutMillis", "0"),
                            ("subVersion", "0"),
                        ],
                    ),
                )
                .await
            else {
                return out;
            };
            if answer.code != 0 {
                return out;
            }
            let records = message::decode_all(&answer.body, false).expect("pulled records decode");
            let next: i64 = answer
                .ext_fields
                .get("nextBeginOffset")
                .and_then(|v| v.parse().ok())
                .expect("nextBeginOffset");
            out.extend(records);
            if next <= offset {
                return out;
            }
            offset = next;
        }
    }

    async fn bodies(&self, addr: &str, topic: &str) -> Vec<String> {
        self.read_all(addr, topic)
            .await
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect()
    }

    /// Sends a delayed message; returns the time just before the send.
    async fn send_delayed(&self, addr: &str, body: &str, level: i32) -> i64 {
        let sent_at = now_millis();
        let level = level.to_string();
        let props = properties(&[(property::DELAY_TIME_LEVEL, level.as_str())]);
        let answer = self
            .call(
                addr,
                send_request(DELAYED, 0, &props, body.as_bytes().to_vec(), false),
            )
            .await
            .expect("the leader answers");
        assert_eq!(answer.code, 0, "delayed send: {:?}", answer.remark);
        sent_at
    }

    /// A prepared send; returns (commitLogOffset, tranStateTableOffset).
    async fn send_prepared(&self, addr: &str, body: &str) -> (i64, i64) {
        let props = properties(&[
            (property::TRANSACTION_PREPARED, "true"),
            (property::PRODUCER_GROUP, TX_GROUP),
            (property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, body),
        ]);
        let answer = self
            .call(
                addr,
                send_request(
                    TX,
                    TRANSACTION_PREPARED_TYPE,
                    &props,
                    body.as_bytes().to_vec(),
                    false,
                ),
            )
            .await
            .expect("the leader answers");
        assert_eq!(answer.code, 0, "prepared send: {:?}", answer.remark);
        let (_, phy) = message::parse_message_id(&answer.ext_fields["msgId"]).expect("msgId");
        let queue = answer.ext_fields["queueOffset"]
            .parse()
            .expect("queueOffset");
        (phy, queue)
    }

    async fn end_transaction(&self, addr: &str, half: (i64, i64), kind: i32) {
        let answer = self
            .call(
                addr,
                request(
                    RequestCode::END_TRANSACTION,
                    &[
                        ("producerGroup", TX_GROUP),
                        ("tranStateTableOffset", &half.1.to_string()),
                        ("commitLogOffset", &half.0.to_string()),
                        ("commitOrRollback", &kind.to_string()),
                        ("fromTransactionCheck", "false"),
                        ("msgId", "ignored"),
                    ],
                ),
            )
            .await
            .expect("the leader answers");
        assert_eq!(answer.code, 0, "END_TRANSACTION: {:?}", answer.remark);
    }

    /// Waits until `body` is delivered to DELAYED on `addr`, checks it was not delivered before
    /// its delay had passed since `sent_at` and returns its store timestamp.
    async fn expect_delivered_after(
        &self,
        addr: &str,
        body: &str,
        sent_at: i64,
        delay_ms: i64,
    ) -> i64 {
        let deadline = Instant::now() + STEP;
        loop {
            let found = self
                .read_all(addr, DELAYED)
                .await
                .into_iter()
                .find(|m| m.body == body.as_bytes());
            if let Some(m) = found {
                assert!(
                    m.store_timestamp >= sent_at + delay_ms,
                    "{body} delivered at {} but sent at {sent_at} with a {delay_ms} ms delay",
                    m.store_timestamp
                );
                assert!(!m.properties.contains_key(property::DELAY_TIME_LEVEL));
                return m.store_timestamp;
            }
            assert!(
                Instant::now() < deadline,
                "{body} is delivered to {DELAYED}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn batch_body(n: usize) -> Vec<u8> {
    let entries: Vec<BatchEntry> = (0..BATCH_SIZE)
        .map(|k| BatchEntry {
            flag: 0,
            body: format!("b{n}-{k}").into_bytes().into(),
            properties: BTreeMap::from([(
                property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX.to_owned(),
                format!("b{n}-{k}"),
            )]),
        })
        .collect();
    message::encode_batch(&entries)
        .expect("batch encodes")
        .to_vec()
}

/// Sends one batch; on success returns its first queue offset and its message ids.
async fn send_batch(group: &Group, addr: &str, n: usize) -> Option<(i64, Vec<String>)> {
    let answer = group
        .call(addr, send_request(BATCH, 0, "", batch_body(n), true))
        .await?;
    if answer.code != 0 {
        return None;
    }
    let offset = answer.ext_fields.get("queueOffset")?.parse().ok()?;
    let ids = answer
        .ext_fields
        .get("msgId")?
        .split(',')
        .map(str::to_owned)
        .collect();
    Some((offset, ids))
}

/// Batches by number, as read back: each must hold all its messages at consecutive offsets.
fn batches_seen(messages: &[MessageExt]) -> BTreeMap<usize, Vec<(usize, i64)>> {
    let mut seen: BTreeMap<usize, Vec<(usize, i64)>> = BTreeMap::new();
    for m in messages {
        let body = String::from_utf8_lossy(&m.body);
        let (n, k) = body
            .trim_start_matches('b')
            .split_once('-')
            .and_then(|(n, k)| Some((n.parse().ok()?, k.parse().ok()?)))
            .expect("a batch body");
        seen.entry(n).or_default().push((k, m.queue_offset));
    }
    seen
}

fn assert_whole(seen: &BTreeMap<usize, Vec<(usize, i64)>>) {
    for (n, parts) in seen {
        assert_eq!(
            parts.len(),
            BATCH_SIZE,
            "batch {n} is visible whole: {parts:?}"
        );
        for (i, (k, offset)) in parts.iter().enumerate() {
            assert_eq!(*k, i, "batch {n} in order");
            assert_eq!(
                *offset,
                parts[0].1 + i as i64,
                "batch {n} at consecutive offsets"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_transactions_and_batches_survive_a_leader_kill() {
    tokio::time::timeout(Duration::from_secs(300), scenario())
        .await
        .expect("scenario finishes in time");
}

async fn scenario() {
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
    let replicas = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| Some(start_replica(d.path(), &namesrv.addr, &peers, i)))
        .collect();
    let mut group = Group {
        pool: ConnectionPool::new(ConnectOptions::default()),
        admin: Admin::new([namesrv.addr.as_str()]),
        replicas,
    };
    let leader = group.wait_for_master(None).await;
    for r in group.replicas.iter().flatten() {
        for topic in [DELAYED, TX, BATCH] {
            group
                .admin
                .create_topic(&r.addr, &TopicConfig::new(topic, 1))
                .await
                .expect("topic created");
        }
    }

    // Delay level 1 (1 s), delivered by the leader through the Raft log.
    let sent_at = group.send_delayed(&leader, "delay-1", 1).await;
    assert!(
        !group
            .bodies(&leader, DELAYED)
            .await
            .contains(&"delay-1".to_owned()),
        "a delayed message is not delivered at once"
    );
    group
        .expect_delivered_after(&leader, "delay-1", sent_at, 1000)
        .await;

    // A consumer sends it back with delay level 1: it returns through %RETRY% after 1 s.
    let delivered = group
        .read_all(&leader, DELAYED)
        .await
        .into_iter()
        .find(|m| m.body == b"delay-1".as_slice())
        .expect("delivered");
    let sent_back_at = now_millis();
    let offset = delivered.commit_log_offset.to_string();
    let answer = group
        .call(
            &leader,
            request(
                RequestCode::CONSUMER_SEND_MSG_BACK,
                &[
                    ("offset", offset.as_str()),
                    ("group", READER),
                    ("delayLevel", "1"),
                    ("originTopic", DELAYED),
                    ("maxReconsumeTimes", "16"),
                ],
            ),
        )
        .await
        .expect("the leader answers");
    assert_eq!(answer.code, 0, "send back: {:?}", answer.remark);
    let retry_topic = format!("%RETRY%{READER}");
    let deadline = Instant::now() + STEP;
    let retried = loop {
        if let Some(m) = group
            .read_all(&leader, &retry_topic)
            .await
            .into_iter()
            .next()
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the sent-back message is retried"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(&retried.body[..], b"delay-1");
    assert_eq!(retried.reconsume_times, 1);
    assert!(
        retried.store_timestamp >= sent_back_at + 1000,
        "retried after its delay level"
    );

    // A committed transaction is delivered, a rolled-back one is not.
    let commit = group.send_prepared(&leader, "tx-commit").await;
    let rollback = group.send_prepared(&leader, "tx-rollback").await;
    assert!(
        group.bodies(&leader, TX).await.is_empty(),
        "half messages are invisible"
    );
    group
        .end_transaction(&leader, commit, TRANSACTION_COMMIT_TYPE)
        .await;
    group
        .end_transaction(&leader, rollback, TRANSACTION_ROLLBACK_TYPE)
        .await;
    assert_eq!(group.bodies(&leader, TX).await, ["tx-commit"]);

    // A batch is acknowledged with one id per message at consecutive queue offsets.
    let (first, ids) = send_batch(&group, &leader, 0)
        .await
        .expect("batch acknowledged");
    assert_eq!(ids.len(), BATCH_SIZE);
    let seen = batches_seen(&group.read_all(&leader, BATCH).await);
    assert_whole(&seen);
    assert_eq!(seen[&0][0].1, first);

    // Acknowledged before the kill, resolved only after it.
    // Level 3 (10 s): due well after the kill below.
    let sent_at = group.send_delayed(&leader, "delay-3", 3).await;
    let commit_later = group.send_prepared(&leader, "tx-commit-after-kill").await;
    let rollback_later = group.send_prepared(&leader, "tx-rollback-after-kill").await;

    // Batches keep going to the leader from four senders while it is killed.
    let acked = Arc::new(Mutex::new(BTreeSet::<usize>::new()));
    let next = Arc::new(AtomicUsize::new(1));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (acked, next, leader) = (acked.clone(), next.clone(), leader.clone());
        let sender = Group {
            pool: group.pool.clone(),
            admin: Admin::new([namesrv.addr.as_str()]),
            replicas: Vec::new(),
        };
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if send_batch(&sender, &leader, n).await.is_none() {
                    return;
                }
                lock(&acked).insert(n);
            }
        }));
    }
    let enough = eventually(STEP, || {
        let acked = acked.clone();
        async move { lock(&acked).len() >= 20 }
    })
    .await;
    assert!(enough, "batches are acknowledged before the kill");
    let old = group
        .replicas
        .iter()
        .position(|r| r.as_ref().is_some_and(|p| p.addr == leader))
        .expect("the leader is a replica");
    if let Some(mut p) = group.replicas[old].take() {
        p.kill();
    }
    let killed_at = now_millis();
    for sender in senders {
        sender.await.expect("sender task");
    }
    let attempted = next.load(Ordering::Relaxed);
    let acked = lock(&acked).clone();

    let leader = group.wait_for_master(Some(&leader)).await;
    // The new leader's commit index covers the previous term once its first entry commits.
    let deadline = Instant::now() + STEP;
    let seen = loop {
        let seen = batches_seen(&group.read_all(&leader, BATCH).await);
        if acked.iter().all(|n| seen.contains_key(n)) {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "every acknowledged batch is readable on the new leader: {:?} missing",
            acked
                .iter()
                .filter(|n| !seen.contains_key(n))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_whole(&seen);
    let unacked_visible = seen.keys().filter(|n| !acked.contains(n)).count();
    println!(
        "batches: {} acknowledged, {} sent in all, {unacked_visible} unacknowledged ones visible whole",
        acked.len(),
        attempted - 1
    );

    // The new leader delivers the delayed message after its delay and ends both transactions.
    let delivered = group
        .expect_delivered_after(&leader, "delay-3", sent_at, 10_000)
        .await;
    if killed_at < sent_at + 10_000 {
        assert!(
            delivered > killed_at,
            "due after the kill, so the new leader delivered it"
        );
    } else {
        println!("the machine was slow: the old leader delivered delay-3 before the kill");
    }
    group
        .end_transaction(&leader, commit_later, TRANSACTION_COMMIT_TYPE)
        .await;
    group
        .end_transaction(&leader, rollback_later, TRANSACTION_ROLLBACK_TYPE)
        .await;
    assert_eq!(
        group.bodies(&leader, TX).await,
        ["tx-commit", "tx-commit-after-kill"]
    );
    let delayed = group.bodies(&leader, DELAYED).await;
    for body in ["delay-1", "delay-3"] {
        assert!(delayed.contains(&body.to_owned()), "{body} in {delayed:?}");
    }
    // A new leader resumes from the delay offsets it last copied from the old one, so a
    // delivery made just before the kill may be repeated (at least once, as RocketMQ).
    println!(
        "delayed deliveries on the new leader: {} for 2 messages",
        delayed.len()
    );

    // The killed replica rejoins from its own files and holds the same committed messages.
    group.replicas[old] = Some(start_replica(dirs[old].path(), &namesrv.addr, &peers, old));
    let rejoined = group.replicas[old]
        .as_ref()
        .expect("restarted")
        .addr
        .clone();
    let tx_on_rejoined = eventually(STEP, || {
        let (group, rejoined) = (&group, rejoined.clone());
        async move { group.bodies(&rejoined, TX).await == ["tx-commit", "tx-commit-after-kill"] }
    })
    .await;
    assert!(
        tx_on_rejoined,
        "the rejoined replica serves the committed transactions"
    );
    let on_rejoined = batches_seen(&group.read_all(&rejoined, BATCH).await);
    assert_whole(&on_rejoined);
    assert_eq!(
        on_rejoined.keys().collect::<Vec<_>>(),
        seen.keys().collect::<Vec<_>>(),
        "the rejoined replica holds exactly the batches the new leader holds"
    );
}
