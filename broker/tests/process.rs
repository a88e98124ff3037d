//! The real `ferrum-broker` binary over real TCP on 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferrum_protocol::route::{KVTable, TopicConfigSerializeWrapper};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tokio::net::TcpStream;

use common::{Conn, Proc, pull, request, send_v2, spawn_reading_first_line, start_namesrv_with};

const STEP: Duration = Duration::from_secs(10);

/// A broker process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct BrokerProcess {
    child: Child,
    addr: String,
    vip: String,
}

impl BrokerProcess {
    fn start(store: &Path, extra: &[&str]) -> BrokerProcess {
        let mut args = vec![
            "--set".to_owned(),
            "listenPort=0".to_owned(),
            "--set".to_owned(),
            "bindAddress=127.0.0.1".to_owned(),
            "--set".to_owned(),
            format!("storePathRootDir={}", store.display()),
            "--set".to_owned(),
            "mappedFileSizeCommitLog=1048576".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut cmd = common::broker_command();
        cmd.args(&args);
        let (child, line) = spawn_reading_first_line(cmd);
        // "ferrum-broker <name> listening on A (VIP B), advertised as C"
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .expect("address in the start line")
            .to_owned();
        let vip = line
            .split("(VIP ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .expect("VIP address in the start line")
            .to_owned();
        BrokerProcess { child, addr, vip }
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "clean shutdown, got {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("broker did not stop after SIGTERM");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn heartbeat(client: &str, group: &str, topic: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": client,
        "producerDataSet": [{"groupName": "P"}],
        "consumerDataSet": [{
            "groupName": group,
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{"topic": topic, "subString": "*", "tagsSet": [], "codeSet": [], "subVersion": 1, "expressionType": "TAG", "classFilterMode": false}],
            "unitMode": false
        }]
    });
    request(RequestCode::HEART_BEAT, &[]).with_body(serde_json::to_vec(&body).expect("json"))
}

async fn topics(conn: &mut Conn) -> TopicConfigSerializeWrapper {
    let answer = conn
        .call(request(RequestCode::GET_ALL_TOPIC_CONFIG, &[]))
        .await;
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    serde_json::from_slice(&answer.body).expect("TopicConfigSerializeWrapper")
}

async fn query_offset(conn: &mut Conn, queue: &str) -> RemotingCommand {
    conn.call(request(
        RequestCode::QUERY_CONSUMER_OFFSET,
        &[
            ("consumerGroup", "G"),
            ("topic", "Orders"),
            ("queueId", queue),
        ],
    ))
    .await
}

#[test]
fn config_errors_exit_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("broker.conf");
    std::fs::write(&conf, "brokerName=b\nbrokerRole=LEADER\n").expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--set".into(), "listenPort=abc".into()], "listenPort"),
        (vec!["-c".into(), conf.display().to_string()], "brokerRole"),
        (vec!["-n".into(), "no-port-here".into()], "namesrvAddr"),
        (
            vec![
                "-c".into(),
                dir.path().join("missing.conf").display().to_string(),
            ],
            "missing.conf",
        ),
    ];
    for (args, key) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_ferrum-broker"))
            .args(&args)
            .output()
            .expect("run");
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn admin_offsets_heartbeat_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;

    let created = conn
        .call(request(
            RequestCode::UPDATE_AND_CREATE_TOPIC,
            &[
                ("topic", "Orders"),
                ("defaultTopic", "TBW102"),
                ("readQueueNums", "8"),
                ("writeQueueNums", "8"),
                ("perm", "6"),
                ("topicFilterType", "SINGLE_TAG"),
                ("topicSysFlag", "0"),
                ("order", "false"),
            ],
        ))
        .await;
    assert_eq!(created.code, 0, "{:?}", created.remark);
    let all = topics(&mut conn).await;
    assert_eq!(all.topic_config_table["Orders"].write_queue_nums, 8);
    assert!(all.topic_config_table.contains_key("TBW102"));

    let one = conn
        .call(request(
            RequestCode::GET_TOPIC_CONFIG,
            &[("topic", "Orders")],
        ))
        .await;
    assert_eq!(one.code, 0, "{:?}", one.remark);
    let one: serde_json::Value = serde_json::from_slice(&one.body).expect("json");
    assert_eq!(one["writeQueueNums"], 8);

    // A required header field missing: an error naming it, not a dropped connection.
    let missing = conn
        .call(request(
            RequestCode::UPDATE_AND_CREATE_TOPIC,
            &[("topic", "X")],
        ))
        .await;
    assert_eq!(missing.code, ResponseCode::SYSTEM_ERROR.code());
    assert!(
        missing
            .remark
            .as_deref()
            .unwrap_or("")
            .contains("readQueueNums")
    );

    // Heartbeat creates %RETRY%G and lists the consumer.
    let answer = conn.call(heartbeat("client-1", "G", "Orders")).await;
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    assert!(
        topics(&mut conn)
            .await
            .topic_config_table
            .contains_key("%RETRY%G")
    );
    let list = conn
        .call(request(
            RequestCode::GET_CONSUMER_LIST_BY_GROUP,
            &[("consumerGroup", "G")],
        ))
        .await;
    assert_eq!(list.code, 0);
    let body: serde_json::Value = serde_json::from_slice(&list.body).expect("json");
    assert_eq!(body["consumerIdList"], serde_json::json!(["client-1"]));

    // A second consumer joining makes the broker notify the first.
    let mut other = Conn::open(&broker.addr).await;
    assert_eq!(
        other.call(heartbeat("client-2", "G", "Orders")).await.code,
        0
    );
    let notify = loop {
        let frame = conn.next().await;
        if !frame.is_response() {
            break frame;
        }
    };
    assert_eq!(notify.code, RequestCode::NOTIFY_CONSUMER_IDS_CHANGED.code());
    assert!(notify.is_oneway());
    assert_eq!(
        notify.ext_fields.get("consumerGroup").map(String::as_str),
        Some("G")
    );

    // Offsets: unknown → QUERY_NOT_FOUND; a oneway update gets no answer; then it reads back.
    assert_eq!(
        query_offset(&mut conn, "3").await.code,
        ResponseCode::QUERY_NOT_FOUND.code()
    );
    let oneway = conn
        .send(
            request(
                RequestCode::UPDATE_CONSUMER_OFFSET,
                &[
                    ("consumerGroup", "G"),
                    ("topic", "Orders"),
                    ("queueId", "3"),
                    ("commitOffset", "42"),
                ],
            )
            .into_oneway(),
        )
        .await;
    let answer = query_offset(&mut conn, "3").await;
    assert_ne!(answer.opaque, oneway);
    assert_eq!(
        answer.ext_fields.get("offset").map(String::as_str),
        Some("42")
    );

    // The admin tool's consumer-progress and topic-status queries.
    let stats = conn
        .call(request(
            RequestCode::GET_CONSUME_STATS,
            &[("consumerGroup", "G")],
        ))
        .await;
    assert_eq!(stats.code, 0, "{:?}", stats.remark);
    let text = String::from_utf8_lossy(&stats.body).into_owned();
    assert!(
        text.contains(r#"{"brokerName":"broker-a","queueId":3,"topic":"Orders"}:{"brokerOffset":0,"consumerOffset":42"#),
        "{text}"
    );
    let connections = conn
        .call(request(
            RequestCode::GET_CONSUMER_CONNECTION_LIST,
            &[("consumerGroup", "G")],
        ))
        .await;
    assert_eq!(connections.code, 0);
    let body: serde_json::Value = serde_json::from_slice(&connections.body).expect("json");
    assert_eq!(body["connectionSet"].as_array().map(Vec::len), Some(2));
    let who = conn
        .call(request(
            RequestCode::QUERY_TOPIC_CONSUME_BY_WHO,
            &[("topic", "Orders")],
        ))
        .await;
    let body: serde_json::Value = serde_json::from_slice(&who.body).expect("json");
    assert_eq!(body["groupList"], serde_json::json!(["G"]));
    let topic_stats = conn
        .call(request(
            RequestCode::GET_TOPIC_STATS_INFO,
            &[("topic", "Orders")],
        ))
        .await;
    assert_eq!(topic_stats.code, 0);
    assert!(
        String::from_utf8_lossy(&topic_stats.body).contains(r#""queueId":7,"topic":"Orders"}"#)
    );
    let offline = conn
        .call(request(
            RequestCode::GET_CONSUMER_CONNECTION_LIST,
            &[("consumerGroup", "Nobody")],
        ))
        .await;
    assert_eq!(offline.code, ResponseCode::CONSUMER_NOT_ONLINE.code());

    // Unknown code → REQUEST_CODE_NOT_SUPPORTED naming the code, in the request's (binary)
    // serialization.
    let unknown = conn
        .call(request(9999, &[]).with_serialize_type(SerializeType::RocketMq))
        .await;
    assert_eq!(
        unknown.code,
        ResponseCode::REQUEST_CODE_NOT_SUPPORTED.code()
    );
    assert_eq!(unknown.serialize_type, SerializeType::RocketMq);
    assert!(unknown.remark.as_deref().unwrap_or("").contains("9999"));

    // The VIP port serves the same broker.
    let mut vip = Conn::open(&broker.vip).await;
    let info = vip
        .call(request(RequestCode::GET_BROKER_RUNTIME_INFO, &[]))
        .await;
    assert_eq!(info.code, 0);
    let kv: KVTable = serde_json::from_slice(&info.body).expect("KVTable");
    assert!(kv.table.contains_key("msgPutTotalTodayNow"));
    assert_eq!(kv.table["brokerVersionDesc"], "V5_3_3");

    // Locks are exclusive between clients.
    let lock_body = |client: &str| {
        serde_json::to_vec(&serde_json::json!({
            "consumerGroup": "G", "clientId": client, "onlyThisBroker": true,
            "mqSet": [{"topic": "Orders", "brokerName": "broker-a", "queueId": 0}]
        }))
        .expect("json")
    };
    let first = conn
        .call(request(RequestCode::LOCK_BATCH_MQ, &[]).with_body(lock_body("client-1")))
        .await;
    let second = other
        .call(request(RequestCode::LOCK_BATCH_MQ, &[]).with_body(lock_body("client-2")))
        .await;
    let locked = |c: &RemotingCommand| -> usize {
        let v: serde_json::Value = serde_json::from_slice(&c.body).expect("json");
        v["lockOKMQSet"].as_array().map_or(0, Vec::len)
    };
    assert_eq!((locked(&first), locked(&second)), (1, 0));

    drop((conn, other, vip));
    broker.stop();

    // Topics and offsets survive a restart.
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;
    let answer = query_offset(&mut conn, "3").await;
    assert_eq!(
        answer.ext_fields.get("offset").map(String::as_str),
        Some("42")
    );
    let all = topics(&mut conn).await;
    assert!(all.topic_config_table.contains_key("Orders"));
    assert!(all.topic_config_table.contains_key("%RETRY%G"));
    let deleted = conn
        .call(request(
            RequestCode::DELETE_TOPIC_IN_BROKER,
            &[("topic", "Orders")],
        ))
        .await;
    assert_eq!(deleted.code, 0);
    assert!(
        !topics(&mut conn)
            .await
            .topic_config_table
            .contains_key("Orders")
    );
    drop(conn);
    broker.stop();
}

#[tokio::test]
async fn malformed_frame_closes_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut raw = TcpStream::connect(&broker.addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut raw, &[0, 0, 0, 6, 0, 0, 0, 2, b'{', b'x'])
        .await
        .expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        STEP,
        tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut rest),
    )
    .await
    .expect("closed in time");
    assert!(read.is_ok() && rest.is_empty());
    let mut conn = Conn::open(&broker.addr).await;
    assert_eq!(
        conn.call(request(RequestCode::GET_ALL_TOPIC_CONFIG, &[]))
            .await
            .code,
        0
    );
    drop(conn);
    broker.stop();
}

fn start_namesrv() -> Proc {
    // Without drop-on-close only UNREGISTER_BROKER can remove the broker, so the test sees
    // the unregistration itself rather than the connection closing.
    start_namesrv_with(&["--drop-on-close", "false"])
}

/// Polls `check` every 100 ms, up to 100 times.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn registers_with_a_real_namesrv_and_unregisters_on_sigterm() {
    let namesrv = start_namesrv();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        dir.path(),
        &["-n", &namesrv.addr, "--set", "brokerName=broker-r"],
    );
    let ns_addr = namesrv.addr.clone();
    let broker_addr = broker.addr.clone();
    let cluster_has_broker = || {
        let ns_addr = ns_addr.clone();
        let broker_addr = broker_addr.clone();
        async move {
            let mut ns = Conn::open(&ns_addr).await;
            let answer = ns
                .call(request(RequestCode::GET_BROKER_CLUSTER_INFO, &[]))
                .await;
            let info: ferrum_protocol::route::ClusterInfo =
                match ferrum_protocol::route::from_json(&answer.body, "ClusterInfo") {
                    Ok(info) => info,
                    Err(_) => return false,
                };
            info.broker_addr_table
                .get("broker-r")
                .and_then(|b| b.master_addr())
                == Some(broker_addr.as_str())
        }
    };
    assert!(eventually(&cluster_has_broker).await, "broker registered");

    // A new topic reaches the NameServer without waiting for the 30 s period.
    let mut conn = Conn::open(&broker.addr).await;
    let created = conn
        .call(request(
            RequestCode::UPDATE_AND_CREATE_TOPIC,
            &[
                ("topic", "Routed"),
                ("readQueueNums", "2"),
                ("writeQueueNums", "2"),
                ("perm", "6"),
            ],
        ))
        .await;
    assert_eq!(created.code, 0, "{:?}", created.remark);
    let ns_addr2 = namesrv.addr.clone();
    let routed = eventually(|| {
        let ns_addr = ns_addr2.clone();
        async move {
            let mut ns = Conn::open(&ns_addr).await;
            let answer = ns
                .call(request(
                    RequestCode::GET_ROUTEINFO_BY_TOPIC,
                    &[("topic", "Routed")],
                ))
                .await;
            answer.code == 0
        }
    })
    .await;
    assert!(routed, "topic route visible on the NameServer");
    drop(conn);

    broker.stop();
    assert!(
        eventually(|| {
            let check = cluster_has_broker();
            async move { !check.await }
        })
        .await,
        "broker unregistered on SIGTERM"
    );
}

#[tokio::test]
async fn send_pull_long_poll_and_lookups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;

    // Auto-created from TBW102 on first send.
    let props = "TAGS\u{1}tagA\u{2}KEYS\u{1}order-1\u{2}";
    let sent = conn.call(send_v2("Auto", 1, b"hello", props)).await;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    assert_eq!(
        sent.ext_fields.get("queueOffset").map(String::as_str),
        Some("0")
    );
    let msg_id = sent.ext_fields.get("msgId").cloned().expect("msgId");
    assert_eq!(msg_id.len(), 32);

    // A batch lands with consecutive offsets.
    let batch = ferrum_protocol::message::encode_batch(&[
        ferrum_protocol::message::BatchEntry {
            flag: 0,
            body: bytes::Bytes::from_static(b"b1"),
            properties: Default::default(),
        },
        ferrum_protocol::message::BatchEntry {
            flag: 0,
            body: bytes::Bytes::from_static(b"b2"),
            properties: Default::default(),
        },
    ])
    .expect("batch");
    let mut batch_request = send_v2("Auto", 1, b"", "");
    batch_request.code = RequestCode::SEND_BATCH_MESSAGE.code();
    let sent = conn.call(batch_request.with_body(batch)).await;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    assert_eq!(
        sent.ext_fields.get("queueOffset").map(String::as_str),
        Some("1")
    );

    let pulled = conn.call(pull("Auto", 1, 0, 0)).await;
    assert_eq!(pulled.code, 0, "{:?}", pulled.remark);
    assert_eq!(
        pulled.ext_fields.get("nextBeginOffset").map(String::as_str),
        Some("3")
    );
    let records = ferrum_protocol::message::decode_all(&pulled.body, true).expect("records");
    let bodies: Vec<&[u8]> = records.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, [&b"hello"[..], b"b1", b"b2"]);
    assert_eq!(records[0].tags(), Some("tagA"));

    // Caught up: PULL_NOT_FOUND at once without the suspend flag.
    assert_eq!(
        conn.call(pull("Auto", 1, 3, 0)).await.code,
        ResponseCode::PULL_NOT_FOUND.code()
    );
    // Impossible queue id: a true error, not a panic.
    let bad = conn.call(pull("Auto", 99, 0, 0)).await;
    assert_eq!(bad.code, ResponseCode::SYSTEM_ERROR.code());
    assert!(bad.remark.as_deref().unwrap_or("").contains("queueId[99]"));

    // Long polling: a held pull is answered when a message arrives (its hold is 20 s, longer
    // than this test waits, so only the wake-up can answer it in time).
    let held = conn.send(pull("Auto", 1, 3, 20_000)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut producer = Conn::open(&broker.addr).await;
    assert_eq!(producer.call(send_v2("Auto", 1, b"late", "")).await.code, 0);
    let answer = conn.next().await;
    assert_eq!(answer.opaque, held);
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    let records = ferrum_protocol::message::decode_all(&answer.body, true).expect("records");
    assert_eq!(&records[0].body[..], b"late");

    // Offsets and lookups.
    let max = conn
        .call(request(
            RequestCode::GET_MAX_OFFSET,
            &[("topic", "Auto"), ("queueId", "1")],
        ))
        .await;
    assert_eq!(max.ext_fields.get("offset").map(String::as_str), Some("4"));
    let fresh = conn
        .call(request(
            RequestCode::QUERY_CONSUMER_OFFSET,
            &[
                ("consumerGroup", "NewGroup"),
                ("topic", "Auto"),
                ("queueId", "1"),
            ],
        ))
        .await;
    assert_eq!(
        (
            fresh.code,
            fresh.ext_fields.get("offset").map(String::as_str)
        ),
        (0, Some("0")),
        "a new group on a young queue starts at 0, as RocketMQ answers"
    );
    let (_, phy) = ferrum_protocol::message::parse_message_id(&msg_id).expect("msg id");
    let viewed = conn
        .call(request(
            RequestCode::VIEW_MESSAGE_BY_ID,
            &[("offset", &phy.to_string())],
        ))
        .await;
    assert_eq!(viewed.code, 0);
    let (message, _) = ferrum_protocol::message::MessageExt::decode(&viewed.body).expect("record");
    assert_eq!(&message.body[..], b"hello");
    let by_key = conn
        .call(request(
            RequestCode::QUERY_MESSAGE,
            &[
                ("topic", "Auto"),
                ("key", "order-1"),
                ("maxNum", "32"),
                ("beginTimestamp", "0"),
                ("endTimestamp", &i64::MAX.to_string()),
            ],
        ))
        .await;
    assert_eq!(by_key.code, 0, "{:?}", by_key.remark);
    assert_eq!(
        ferrum_protocol::message::decode_all(&by_key.body, true)
            .expect("records")
            .len(),
        1
    );

    drop((conn, producer));
    broker.stop();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;
    let pulled = conn.call(pull("Auto", 1, 0, 0)).await;
    assert_eq!(pulled.code, 0, "messages survive a restart");
    drop(conn);
    broker.stop();
}

#[tokio::test]
async fn delayed_messages_and_send_back_to_retry_and_dlq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;

    // DELAY=1 (1 s): parked in SCHEDULE_TOPIC_XXXX queue 0, then delivered to its queue, where a
    // held pull receives it.
    let sent = conn
        .call(send_v2("Later", 0, b"delayed", "DELAY\u{1}1\u{2}"))
        .await;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    let parked = conn
        .call(request(
            RequestCode::GET_MAX_OFFSET,
            &[("topic", "SCHEDULE_TOPIC_XXXX"), ("queueId", "0")],
        ))
        .await;
    assert_eq!(
        parked.ext_fields.get("offset").map(String::as_str),
        Some("1")
    );
    let delivered = conn.call(pull("Later", 0, 0, 20_000)).await;
    assert_eq!(delivered.code, 0, "{:?}", delivered.remark);
    let records = ferrum_protocol::message::decode_all(&delivered.body, true).expect("records");
    assert_eq!(&records[0].body[..], b"delayed");
    assert!(!records[0].properties.contains_key("DELAY"));

    // A failed message sent back with level 1 returns through %RETRY%CG.
    let back = conn
        .call(request(
            RequestCode::CONSUMER_SEND_MSG_BACK,
            &[
                ("offset", &records[0].commit_log_offset.to_string()),
                ("group", "CG"),
                ("delayLevel", "1"),
                ("originMsgId", "ORIGIN"),
            ],
        ))
        .await;
    assert_eq!(back.code, 0, "{:?}", back.remark);
    let retried = conn.call(pull("%RETRY%CG", 0, 0, 20_000)).await;
    assert_eq!(retried.code, 0, "{:?}", retried.remark);
    let retry = ferrum_protocol::message::decode_all(&retried.body, true).expect("records");
    assert_eq!(retry[0].reconsume_times, 1);
    assert_eq!(
        retry[0].properties.get("RETRY_TOPIC").map(String::as_str),
        Some("Later")
    );
    assert_eq!(
        retry[0]
            .properties
            .get("ORIGIN_MESSAGE_ID")
            .map(String::as_str),
        Some("ORIGIN")
    );

    // Past the maximum reconsume times it lands in %DLQ%CG at once.
    let dead = conn
        .call(request(
            RequestCode::CONSUMER_SEND_MSG_BACK,
            &[
                ("offset", &retry[0].commit_log_offset.to_string()),
                ("group", "CG"),
                ("delayLevel", "0"),
                ("maxReconsumeTimes", "1"),
            ],
        ))
        .await;
    assert_eq!(dead.code, 0, "{:?}", dead.remark);
    let dlq = conn.call(pull("%DLQ%CG", 0, 0, 0)).await;
    assert_eq!(dlq.code, 0, "{:?}", dlq.remark);
    let dlq = ferrum_protocol::message::decode_all(&dlq.body, true).expect("records");
    assert_eq!(&dlq[0].body[..], b"delayed");
    drop(conn);
    broker.stop();
}

/// reconsumeTimes is whatever the sender put in its header; the largest i32 must neither
/// panic the send-back nor wrap to a negative count in the DLQ record.
#[tokio::test]
async fn send_back_of_a_message_with_the_largest_reconsume_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;
    let max = i32::MAX.to_string();
    let mut send = send_v2("Worn", 0, b"worn out", "");
    send.ext_fields.insert("j".to_owned(), max.clone());
    let sent = conn.call(send).await;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    let pulled = conn.call(pull("Worn", 0, 0, 0)).await;
    assert_eq!(pulled.code, 0, "{:?}", pulled.remark);
    let records = ferrum_protocol::message::decode_all(&pulled.body, true).expect("records");
    assert_eq!(records[0].reconsume_times, i32::MAX);

    for delay_level in ["0", "2"] {
        let back = conn
            .call(request(
                RequestCode::CONSUMER_SEND_MSG_BACK,
                &[
                    ("offset", &records[0].commit_log_offset.to_string()),
                    ("group", "CG"),
                    ("delayLevel", delay_level),
                    ("maxReconsumeTimes", &max),
                ],
            ))
            .await;
        assert_eq!(back.code, 0, "delayLevel {delay_level}: {:?}", back.remark);
    }
    let dlq = conn.call(pull("%DLQ%CG", 0, 0, 0)).await;
    assert_eq!(dlq.code, 0, "{:?}", dlq.remark);
    let dlq = ferrum_protocol::message::decode_all(&dlq.body, true).expect("records");
    assert_eq!(dlq.len(), 2);
    for record in &dlq {
        assert_eq!(&record.body[..], b"worn out");
        assert_eq!(record.reconsume_times, i32::MAX);
    }

    // One short of the limit: a retry whose delay level (3 + count) is capped at the longest
    // level, 18, so it waits in SCHEDULE_TOPIC_XXXX queue 17.
    let mut send = send_v2("Worn", 0, b"nearly", "");
    send.ext_fields
        .insert("j".to_owned(), (i32::MAX - 1).to_string());
    let sent = conn.call(send).await;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    let pulled = conn.call(pull("Worn", 0, 1, 0)).await;
    let nearly = ferrum_protocol::message::decode_all(&pulled.body, true).expect("records");
    let back = conn
        .call(request(
            RequestCode::CONSUMER_SEND_MSG_BACK,
            &[
                ("offset", &nearly[0].commit_log_offset.to_string()),
                ("group", "CG"),
                ("delayLevel", "0"),
                ("maxReconsumeTimes", &max),
            ],
        ))
        .await;
    assert_eq!(back.code, 0, "{:?}", back.remark);
    let parked = conn
        .call(request(
            RequestCode::GET_MAX_OFFSET,
            &[("topic", "SCHEDULE_TOPIC_XXXX"), ("queueId", "17")],
        ))
        .await;
    assert_eq!(
        parked.ext_fields.get("offset").map(String::as_str),
        Some("1")
    );
    drop(conn);
    broker.stop();
}

#[test]
fn unknown_keys_are_warned_about_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("broker.conf");
    std::fs::write(&conf, "brokerName=warned\nmysteryKnob=11\n").expect("write");
    let mut child = common::broker_command()
        .args(["-c", &conf.display().to_string()])
        .args(["--set", "listenPort=0", "--set", "bindAddress=127.0.0.1"])
        .args([
            "--set",
            &format!("storePathRootDir={}", dir.path().display()),
        ])
        .args(["--set", "mappedFileSizeCommitLog=1048576"])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = rx.recv_timeout(STEP).expect("start line");
    assert!(started.contains("warned"), "{started}");
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut log).expect("stderr");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert!(
        log.lines()
            .any(|l| l.contains("unknown configuration key") && l.contains("mysteryKnob")),
        "{log}"
    );
}
