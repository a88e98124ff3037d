//! Topic administration against the real `ferrum-broker` binary over TCP on 127.0.0.1:
//! RocketMQ 5.x topic attributes on UPDATE_AND_CREATE_TOPIC, and DELETE_TOPIC_IN_BROKER
//! removing the config, the consumer offsets and the consume queues (across a restart).

mod common;

use std::path::Path;
use std::process::Child;

use ferrum_protocol::route::{TopicConfig, TopicConfigSerializeWrapper};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

use common::{Conn, request, spawn_reading_first_line};

/// A broker process, killed when dropped unless stopped cleanly first.
struct BrokerProcess {
    child: Child,
    addr: String,
}

impl BrokerProcess {
    fn start(store: &Path) -> BrokerProcess {
        let args = [
            "--set".to_owned(),
            "listenPort=0".to_owned(),
            "--set".to_owned(),
            "bindAddress=127.0.0.1".to_owned(),
            "--set".to_owned(),
            format!("storePathRootDir={}", store.display()),
            "--set".to_owned(),
            "mappedFileSizeCommitLog=1048576".to_owned(),
        ];
        let mut cmd = common::broker_command();
        cmd.args(args);
        let (child, line) = spawn_reading_first_line(cmd);
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .expect("address in the start line")
            .to_owned();
        BrokerProcess { child, addr }
    }

    /// SIGKILL: no clean shutdown, so the restart runs crash recovery.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn create_topic(topic: &str, queues: &str, attributes: Option<&str>) -> RemotingCommand {
    let mut fields = vec![
        ("topic", topic),
        ("defaultTopic", "TBW102"),
        ("readQueueNums", queues),
        ("writeQueueNums", queues),
        ("perm", "6"),
        ("topicFilterType", "SINGLE_TAG"),
        ("topicSysFlag", "0"),
        ("order", "false"),
    ];
    if let Some(a) = attributes {
        fields.push(("attributes", a));
    }
    request(RequestCode::UPDATE_AND_CREATE_TOPIC, &fields)
}

fn send_v2(topic: &str, queue_id: i32, body: &[u8]) -> RemotingCommand {
    request(
        RequestCode::SEND_MESSAGE_V2,
        &[
            ("a", "PG"),
            ("b", topic),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", &queue_id.to_string()),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("i", ""),
        ],
    )
    .with_body(body.to_vec())
}

fn pull(topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    request(
        RequestCode::PULL_MESSAGE,
        &[
            ("consumerGroup", "CG"),
            ("topic", topic),
            ("queueId", &queue_id.to_string()),
            ("queueOffset", &offset.to_string()),
            ("maxMsgNums", "32"),
            ("sysFlag", "0"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "0"),
            ("subVersion", "0"),
        ],
    )
}

async fn topic_config(conn: &mut Conn, topic: &str) -> RemotingCommand {
    conn.call(request(RequestCode::GET_TOPIC_CONFIG, &[("topic", topic)]))
        .await
}

async fn all_topics(conn: &mut Conn) -> TopicConfigSerializeWrapper {
    let answer = conn
        .call(request(RequestCode::GET_ALL_TOPIC_CONFIG, &[]))
        .await;
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    serde_json::from_slice(&answer.body).expect("TopicConfigSerializeWrapper")
}

async fn max_offset(conn: &mut Conn, topic: &str, queue_id: i32) -> String {
    let answer = conn
        .call(request(
            RequestCode::GET_MAX_OFFSET,
            &[("topic", topic), ("queueId", &queue_id.to_string())],
        ))
        .await;
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    answer.ext_fields.get("offset").cloned().unwrap_or_default()
}

async fn pulled_bodies(conn: &mut Conn, topic: &str, queue_id: i32, offset: i64) -> Vec<Vec<u8>> {
    let answer = conn.call(pull(topic, queue_id, offset)).await;
    if answer.code != ResponseCode::SUCCESS.code() {
        return Vec::new();
    }
    ferrum_protocol::message::decode_all(&answer.body, true)
        .expect("records")
        .into_iter()
        .map(|m| m.body.to_vec())
        .collect()
}

fn attributes_of(config: &TopicConfig) -> Vec<(String, String)> {
    config
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[tokio::test]
async fn topic_attributes_are_validated_stored_and_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path());
    let mut conn = Conn::open(&broker.addr).await;

    let created = conn
        .call(create_topic(
            "Fifo",
            "4",
            Some("+message.type=FIFO,+queue.type=SimpleCQ"),
        ))
        .await;
    assert_eq!(created.code, 0, "{:?}", created.remark);
    let answer = topic_config(&mut conn, "Fifo").await;
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    let config: TopicConfig = serde_json::from_slice(&answer.body).expect("TopicConfig");
    let expected = vec![
        ("message.type".to_owned(), "FIFO".to_owned()),
        ("queue.type".to_owned(), "SimpleCQ".to_owned()),
    ];
    assert_eq!(attributes_of(&config), expected);

    // Refusals carry RocketMQ's remarks and change nothing.
    for (attributes, code, remark) in [
        (
            "+colour=red",
            ResponseCode::SYSTEM_ERROR,
            "unsupported key: colour",
        ),
        (
            "+message.type=URGENT",
            ResponseCode::SYSTEM_ERROR,
            "value is not in set: [DELAY, FIFO, MIXED, NORMAL, TRANSACTION, UNSPECIFIED]",
        ),
        (
            "+queue.type=BatchCQ",
            ResponseCode::SYSTEM_ERROR,
            "attempt to update an unchangeable attribute. key: queue.type",
        ),
        (
            "message.type=FIFO",
            ResponseCode::SYSTEM_ERROR,
            "add/alter attribute format is wrong: message.type",
        ),
        (
            "+message.type=MIXED",
            ResponseCode::INVALID_PARAMETER,
            "MIXED message type is not supported.",
        ),
    ] {
        let refused = conn.call(create_topic("Fifo", "4", Some(attributes))).await;
        assert_eq!(
            refused.code,
            code.code(),
            "{attributes}: {:?}",
            refused.remark
        );
        assert_eq!(refused.remark.as_deref(), Some(remark), "{attributes}");
    }

    // An update without attributes keeps them; a later one changes message.type.
    let updated = conn.call(create_topic("Fifo", "8", None)).await;
    assert_eq!(updated.code, 0, "{:?}", updated.remark);
    let updated = conn
        .call(create_topic("Fifo", "8", Some("+message.type=DELAY")))
        .await;
    assert_eq!(updated.code, 0, "{:?}", updated.remark);
    let all = all_topics(&mut conn).await;
    let config = all.topic_config_table.get("Fifo").expect("Fifo listed");
    assert_eq!(config.write_queue_nums, 8);
    assert_eq!(
        attributes_of(config),
        vec![
            ("message.type".to_owned(), "DELAY".to_owned()),
            ("queue.type".to_owned(), "SimpleCQ".to_owned()),
        ]
    );

    // Persisted in topics.json and reloaded.
    broker.kill();
    let broker = BrokerProcess::start(dir.path());
    let mut conn = Conn::open(&broker.addr).await;
    let answer = topic_config(&mut conn, "Fifo").await;
    let config: TopicConfig = serde_json::from_slice(&answer.body).expect("TopicConfig");
    assert_eq!(
        config.attributes.get("message.type").map(String::as_str),
        Some("DELAY")
    );
}

#[tokio::test]
async fn deleted_topic_comes_back_empty_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path());
    let mut conn = Conn::open(&broker.addr).await;

    let created = conn.call(create_topic("Gone", "2", None)).await;
    assert_eq!(created.code, 0, "{:?}", created.remark);
    for i in 0..10 {
        let sent = conn
            .call(send_v2("Gone", i % 2, format!("old-{i}").as_bytes()))
            .await;
        assert_eq!(sent.code, 0, "{:?}", sent.remark);
    }
    let committed = conn
        .call(request(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            &[
                ("consumerGroup", "CG"),
                ("topic", "Gone"),
                ("queueId", "0"),
                ("commitOffset", "4"),
            ],
        ))
        .await;
    assert_eq!(committed.code, 0, "{:?}", committed.remark);
    assert_eq!(max_offset(&mut conn, "Gone", 0).await, "5");
    assert!(dir.path().join("consumequeue").join("Gone").exists());

    let deleted = conn
        .call(request(
            RequestCode::DELETE_TOPIC_IN_BROKER,
            &[("topic", "Gone")],
        ))
        .await;
    assert_eq!(deleted.code, 0, "{:?}", deleted.remark);
    assert!(!dir.path().join("consumequeue").join("Gone").exists());
    assert_eq!(
        topic_config(&mut conn, "Gone").await.code,
        ResponseCode::TOPIC_NOT_EXIST.code()
    );
    let blank = conn
        .call(request(
            RequestCode::DELETE_TOPIC_IN_BROKER,
            &[("topic", " ")],
        ))
        .await;
    assert_eq!(blank.code, ResponseCode::INVALID_PARAMETER.code());
    assert_eq!(
        blank.remark.as_deref(),
        Some("The specified topic is blank.")
    );
    let traversal = conn
        .call(request(
            RequestCode::DELETE_TOPIC_IN_BROKER,
            &[("topic", "../commitlog")],
        ))
        .await;
    assert_eq!(traversal.code, ResponseCode::INVALID_PARAMETER.code());
    assert!(dir.path().join("commitlog").exists());

    let recreated = conn.call(create_topic("Gone", "2", None)).await;
    assert_eq!(recreated.code, 0, "{:?}", recreated.remark);
    for q in 0..2 {
        assert_eq!(max_offset(&mut conn, "Gone", q).await, "0");
        assert!(pulled_bodies(&mut conn, "Gone", q, 0).await.is_empty());
        assert!(pulled_bodies(&mut conn, "Gone", q, 3).await.is_empty());
    }
    let offset = conn
        .call(request(
            RequestCode::QUERY_CONSUMER_OFFSET,
            &[
                ("consumerGroup", "CG"),
                ("topic", "Gone"),
                ("queueId", "0"),
                ("setZeroIfNotFound", "false"),
            ],
        ))
        .await;
    assert_eq!(
        offset.code,
        ResponseCode::QUERY_NOT_FOUND.code(),
        "the group's offset went with the topic"
    );
    let sent = conn.call(send_v2("Gone", 0, b"new-0")).await;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    assert_eq!(
        sent.ext_fields.get("queueOffset").map(String::as_str),
        Some("0")
    );
    assert_eq!(
        pulled_bodies(&mut conn, "Gone", 0, 0).await,
        vec![b"new-0".to_vec()]
    );

    // A crash right after: recovery must not bring the old records back into the queues.
    broker.kill();
    let broker = BrokerProcess::start(dir.path());
    let mut conn = Conn::open(&broker.addr).await;
    assert_eq!(max_offset(&mut conn, "Gone", 0).await, "1");
    assert_eq!(max_offset(&mut conn, "Gone", 1).await, "0");
    assert_eq!(
        pulled_bodies(&mut conn, "Gone", 0, 0).await,
        vec![b"new-0".to_vec()]
    );
    assert!(pulled_bodies(&mut conn, "Gone", 1, 0).await.is_empty());
}
