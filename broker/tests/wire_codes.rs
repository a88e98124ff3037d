//! Request codes and bad input over the wire against the real `ferrum-broker` binary on
//! 127.0.0.1, each answer compared with what Apache RocketMQ's broker gives for the same request.

mod common;

use std::path::Path;
use std::time::Duration;

use ferrum_protocol::body::{LockBatchRequestBody, LockBatchResponseBody, MessageQueue};
use ferrum_protocol::message::{self, MessageExt};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

use common::{Conn, Proc, pull, request, send_v2, spawn_reading_first_line};

/// A broker with its store in `store` and the given extra `key=value` settings.
fn start_broker(store: &Path, sets: &[&str]) -> Proc {
    let mut cmd = common::broker_command();
    let mut all = vec![
        "listenPort=0".to_owned(),
        "bindAddress=127.0.0.1".to_owned(),
        format!("storePathRootDir={}", store.display()),
        "mappedFileSizeCommitLog=1048576".to_owned(),
    ];
    all.extend(sets.iter().map(|s| (*s).to_owned()));
    for set in &all {
        cmd.args(["--set", set]);
    }
    let (child, line) = spawn_reading_first_line(cmd);
    // "ferrum-broker <name> listening on A (VIP B), advertised as C"
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("address in the start line")
        .to_owned();
    Proc { child, addr }
}

fn remark(answer: &RemotingCommand) -> &str {
    answer.remark.as_deref().unwrap_or("")
}

fn field<'a>(answer: &'a RemotingCommand, name: &str) -> Option<&'a str> {
    answer.ext_fields.get(name).map(String::as_str)
}

async fn pulled(conn: &mut Conn, topic: &str, queue_id: i32, offset: i64) -> Vec<MessageExt> {
    let answer = conn.call(pull(topic, queue_id, offset, 0)).await;
    assert_eq!(answer.code, 0, "pull {topic}: {:?}", answer.remark);
    message::decode_all(&answer.body, true).expect("records")
}

fn heartbeat(client: &str, group: &str, topic: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": client,
        "producerDataSet": [],
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

async fn consumer_ids(conn: &mut Conn, group: &str) -> RemotingCommand {
    conn.call(request(
        RequestCode::GET_CONSUMER_LIST_BY_GROUP,
        &[("consumerGroup", group)],
    ))
    .await
}

fn id_list(answer: &RemotingCommand) -> Vec<String> {
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    let mut ids: Vec<String> = body["consumerIdList"]
        .as_array()
        .expect("consumerIdList")
        .iter()
        .map(|v| v.as_str().expect("string id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// The next request the broker pushes on `conn` (answers to our own calls are skipped).
async fn next_pushed_request(conn: &mut Conn) -> RemotingCommand {
    loop {
        let frame = conn.next().await;
        if !frame.is_response() {
            return frame;
        }
    }
}

fn lock_body(client: &str, queues: &[MessageQueue]) -> Vec<u8> {
    serde_json::to_vec(&LockBatchRequestBody {
        consumer_group: "OrderlyGroup".to_owned(),
        client_id: client.to_owned(),
        only_this_broker: true,
        mq_set: queues.to_vec(),
    })
    .expect("json")
}

async fn lock(conn: &mut Conn, client: &str, queues: &[MessageQueue]) -> Vec<MessageQueue> {
    let answer = conn
        .call(request(RequestCode::LOCK_BATCH_MQ, &[]).with_body(lock_body(client, queues)))
        .await;
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    let body: LockBatchResponseBody = serde_json::from_slice(&answer.body).expect("json");
    let mut locked = body.lock_ok_mq_set;
    locked.sort();
    locked
}

#[tokio::test]
async fn offsets_by_time_min_offset_and_earliest_store_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;

    // Three messages whose store times are apart, so a timestamp can fall between them.
    for body in ["t0", "t1", "t2"] {
        let sent = conn.call(send_v2("Timed", 0, body.as_bytes(), "")).await;
        assert_eq!(sent.code, 0, "{:?}", sent.remark);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let records = pulled(&mut conn, "Timed", 0, 0).await;
    let stored: Vec<i64> = records.iter().map(|m| m.store_timestamp).collect();
    assert_eq!(stored.len(), 3);
    assert!(stored[0] < stored[1] && stored[1] < stored[2], "{stored:?}");

    let search = |timestamp: i64, boundary: &str| {
        let mut fields = vec![
            ("topic", "Timed".to_owned()),
            ("queueId", "0".to_owned()),
            ("timestamp", timestamp.to_string()),
        ];
        if !boundary.is_empty() {
            fields.push(("boundaryType", boundary.to_owned()));
        }
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(RequestCode::SEARCH_OFFSET_BY_TIMESTAMP, &fields)
    };
    // Apache's ConsumeQueue.getOffsetInQueueByTime: a timestamp between two store times is the
    // later message for the LOWER boundary (the default) and the earlier one for UPPER; before
    // every message it is the min offset, after every message LOWER gives the max offset.
    for (timestamp, boundary, expected) in [
        (stored[1] - 1, "", "1"),
        (stored[1] - 1, "LOWER", "1"),
        (stored[1] - 1, "UPPER", "0"),
        (stored[1], "", "1"),
        (stored[2], "UPPER", "2"),
        (stored[0] - 10_000, "", "0"),
        (stored[2] + 10_000, "", "3"),
        (stored[2] + 10_000, "UPPER", "2"),
        (stored[0] - 10_000, "UPPER", "0"),
    ] {
        let answer = conn.call(search(timestamp, boundary)).await;
        assert_eq!(answer.code, 0, "{:?}", answer.remark);
        assert_eq!(
            field(&answer, "offset"),
            Some(expected),
            "search at {timestamp} {boundary} (stored {stored:?})"
        );
    }

    let min = conn
        .call(request(
            RequestCode::GET_MIN_OFFSET,
            &[("topic", "Timed"), ("queueId", "0")],
        ))
        .await;
    assert_eq!((min.code, field(&min, "offset")), (0, Some("0")));

    let earliest = conn
        .call(request(
            RequestCode::GET_EARLIEST_MSG_STORETIME,
            &[("topic", "Timed"), ("queueId", "0")],
        ))
        .await;
    assert_eq!(earliest.code, 0, "{:?}", earliest.remark);
    assert_eq!(
        field(&earliest, "timestamp"),
        Some(stored[0].to_string().as_str())
    );
    // An empty queue has no earliest message: Apache answers SUCCESS with timestamp -1
    // (DefaultMessageStore.getEarliestMessageTime's "not found").
    let empty = conn
        .call(request(
            RequestCode::GET_EARLIEST_MSG_STORETIME,
            &[("topic", "Timed"), ("queueId", "3")],
        ))
        .await;
    assert_eq!((empty.code, field(&empty, "timestamp")), (0, Some("-1")));
}

#[tokio::test]
async fn unregister_client_shrinks_the_group_and_notifies_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path(), &[]);
    let mut first = Conn::open(&broker.addr).await;
    let mut second = Conn::open(&broker.addr).await;

    let answer = first.call(heartbeat("client-1", "Group", "Topic")).await;
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    let answer = second.call(heartbeat("client-2", "Group", "Topic")).await;
    assert_eq!(answer.code, 0, "{:?}", answer.remark);
    // The join of client-2 is announced to the group.
    let joined = next_pushed_request(&mut first).await;
    assert_eq!(joined.code, RequestCode::NOTIFY_CONSUMER_IDS_CHANGED.code());
    assert_eq!(
        id_list(&consumer_ids(&mut first, "Group").await),
        ["client-1", "client-2"]
    );

    let left = second
        .call(request(
            RequestCode::UNREGISTER_CLIENT,
            &[("clientID", "client-2"), ("consumerGroup", "Group")],
        ))
        .await;
    assert_eq!(left.code, 0, "{:?}", left.remark);
    let notified = next_pushed_request(&mut first).await;
    assert_eq!(
        notified.code,
        RequestCode::NOTIFY_CONSUMER_IDS_CHANGED.code()
    );
    assert!(notified.is_oneway(), "the notification expects no answer");
    assert_eq!(field(&notified, "consumerGroup"), Some("Group"));
    assert_eq!(
        id_list(&consumer_ids(&mut first, "Group").await),
        ["client-1"]
    );

    // The last member gone: Apache answers SYSTEM_ERROR "no consumer for this group, <group>".
    let left = first
        .call(request(
            RequestCode::UNREGISTER_CLIENT,
            &[("clientID", "client-1"), ("consumerGroup", "Group")],
        ))
        .await;
    assert_eq!(left.code, 0, "{:?}", left.remark);
    let none = consumer_ids(&mut first, "Group").await;
    assert_eq!(none.code, ResponseCode::SYSTEM_ERROR.code());
    assert!(
        remark(&none).contains("no consumer for this group"),
        "{none:?}"
    );
}

#[tokio::test]
async fn unlocked_queues_can_be_locked_by_another_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;
    let queues: Vec<MessageQueue> = (0..2)
        .map(|q| MessageQueue::new("Ordered", "broker-a", q))
        .collect();

    assert_eq!(lock(&mut conn, "client-a", &queues).await, queues);
    // Held by client-a: client-b gets nothing.
    assert!(lock(&mut conn, "client-b", &queues).await.is_empty());

    let unlocked = conn
        .call(
            request(RequestCode::UNLOCK_BATCH_MQ, &[])
                .with_body(lock_body("client-a", &queues[..1])),
        )
        .await;
    assert_eq!(unlocked.code, 0, "{:?}", unlocked.remark);
    // Only the released queue moves to client-b.
    assert_eq!(lock(&mut conn, "client-b", &queues).await, &queues[..1]);
    // An unlock by a client that does not hold the lock releases nothing.
    let foreign = conn
        .call(
            request(RequestCode::UNLOCK_BATCH_MQ, &[])
                .with_body(lock_body("client-c", &queues[1..])),
        )
        .await;
    assert_eq!(foreign.code, 0, "{:?}", foreign.remark);
    assert!(lock(&mut conn, "client-b", &queues[1..]).await.is_empty());

    let garbage = conn
        .call(request(RequestCode::UNLOCK_BATCH_MQ, &[]).with_body(&b"not json"[..]))
        .await;
    assert_eq!(garbage.code, ResponseCode::SYSTEM_ERROR.code());
}

#[tokio::test]
async fn oversized_unknown_topic_and_impossible_queue_sends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(
        dir.path(),
        &["maxMessageSize=1024", "autoCreateTopicEnable=false"],
    );
    let mut conn = Conn::open(&broker.addr).await;
    let created = conn
        .call(request(
            RequestCode::UPDATE_AND_CREATE_TOPIC,
            &[
                ("topic", "Known"),
                ("defaultTopic", "TBW102"),
                ("readQueueNums", "2"),
                ("writeQueueNums", "2"),
                ("perm", "6"),
                ("topicFilterType", "SINGLE_TAG"),
                ("topicSysFlag", "0"),
                ("order", "false"),
            ],
        ))
        .await;
    assert_eq!(created.code, 0, "{:?}", created.remark);

    // maxMessageSize bounds the whole stored record (RocketMQ 4.x's CommitLog check), so a
    // body well under it is stored; a body over it is MESSAGE_ILLEGAL naming size and limit.
    let fits = conn.call(send_v2("Known", 0, &[b'x'; 512], "")).await;
    assert_eq!(fits.code, 0, "{:?}", fits.remark);
    let over = conn.call(send_v2("Known", 0, &[b'x'; 1025], "")).await;
    assert_eq!(over.code, ResponseCode::MESSAGE_ILLEGAL.code());
    assert!(remark(&over).contains("1025"), "{over:?}");
    assert!(remark(&over).contains("1024"), "{over:?}");

    // autoCreateTopicEnable=false: an unknown topic is TOPIC_NOT_EXIST naming it, not created.
    let unknown = conn.call(send_v2("Nowhere", 0, b"x", "")).await;
    assert_eq!(unknown.code, ResponseCode::TOPIC_NOT_EXIST.code());
    assert!(remark(&unknown).contains("Nowhere"), "{unknown:?}");
    let config = conn
        .call(request(
            RequestCode::GET_TOPIC_CONFIG,
            &[("topic", "Nowhere")],
        ))
        .await;
    assert_ne!(config.code, 0, "the unknown topic was not created");

    // queueId past max(writeQueueNums, readQueueNums): SYSTEM_ERROR "request queueId[..] is
    // illegal" as Apache's msgCheck answers; nothing is stored.
    let impossible = conn.call(send_v2("Known", 2, b"x", "")).await;
    assert_eq!(impossible.code, ResponseCode::SYSTEM_ERROR.code());
    assert!(
        remark(&impossible).contains("queueId[2] is illegal"),
        "{impossible:?}"
    );
    let max = conn
        .call(request(
            RequestCode::GET_MAX_OFFSET,
            &[("topic", "Known"), ("queueId", "0")],
        ))
        .await;
    assert_eq!(field(&max, "offset"), Some("1"), "only the fitting send");
    let pulled_bodies = pulled(&mut conn, "Known", 0, 0).await;
    assert_eq!(pulled_bodies.len(), 1);
    assert_eq!(pulled_bodies[0].body.len(), 512);
}

#[tokio::test]
async fn pull_far_beyond_the_max_offset_is_moved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;
    for body in ["a", "b", "c"] {
        let sent = conn.call(send_v2("Far", 0, body.as_bytes(), "")).await;
        assert_eq!(sent.code, 0, "{:?}", sent.remark);
    }
    // Apache: OFFSET_OVERFLOW_BADLY -> PULL_OFFSET_MOVED with nextBeginOffset = the queue's
    // max offset (since 4.9.4; before, a queue whose min offset is 0 sent the consumer back to
    // 0 and it read everything again, apache/rocketmq#4215).
    let far = conn.call(pull("Far", 0, 1_000_000, 0)).await;
    assert_eq!(far.code, ResponseCode::PULL_OFFSET_MOVED.code(), "{far:?}");
    assert_eq!(field(&far, "nextBeginOffset"), Some("3"), "{far:?}");
    assert_eq!(field(&far, "minOffset"), Some("0"));
    assert_eq!(field(&far, "maxOffset"), Some("3"));
    // One past the end is only "no new message", not a moved offset.
    let next = conn.call(pull("Far", 0, 3, 0)).await;
    assert_eq!(next.code, ResponseCode::PULL_NOT_FOUND.code());
    assert_eq!(field(&next, "nextBeginOffset"), Some("3"));
}

async fn query_offset(conn: &mut Conn) -> (i32, Option<String>) {
    let answer = conn
        .call(request(
            RequestCode::QUERY_CONSUMER_OFFSET,
            &[
                ("consumerGroup", "Doomed"),
                ("topic", "T"),
                ("queueId", "0"),
            ],
        ))
        .await;
    (answer.code, answer.ext_fields.get("offset").cloned())
}

#[tokio::test]
async fn subscription_group_delete_over_the_wire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;
    let config = serde_json::json!({
        "groupName": "Doomed",
        "consumeEnable": true,
        "consumeFromMinEnable": true,
        "consumeBroadcastEnable": true,
        "retryQueueNums": 1,
        "retryMaxTimes": 16,
        "brokerId": 0,
        "whichBrokerWhenConsumeSlowly": 1,
        "notifyConsumerIdsChangedEnable": true
    });
    // Offsets are only kept for an existing topic (Apache answers TOPIC_NOT_EXIST otherwise).
    let sent = conn.call(send_v2("T", 0, b"x", "")).await;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    let created = conn
        .call(
            request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, &[])
                .with_body(serde_json::to_vec(&config).expect("json")),
        )
        .await;
    assert_eq!(created.code, 0, "{:?}", created.remark);
    let stored = conn
        .call(request(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            &[
                ("consumerGroup", "Doomed"),
                ("topic", "T"),
                ("queueId", "0"),
                ("commitOffset", "7"),
            ],
        ))
        .await;
    assert_eq!(stored.code, 0, "{:?}", stored.remark);

    assert_eq!(query_offset(&mut conn).await, (0, Some("7".to_owned())));

    let groups = |answer: &RemotingCommand| -> serde_json::Value {
        assert_eq!(answer.code, 0, "{:?}", answer.remark);
        serde_json::from_slice(&answer.body).expect("json")
    };
    let all = conn
        .call(request(RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG, &[]))
        .await;
    assert!(groups(&all)["subscriptionGroupTable"]["Doomed"].is_object());

    let deleted = conn
        .call(request(
            RequestCode::DELETE_SUBSCRIPTIONGROUP,
            &[("groupName", "Doomed"), ("cleanOffset", "true")],
        ))
        .await;
    assert_eq!(deleted.code, 0, "{:?}", deleted.remark);
    let all = conn
        .call(request(RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG, &[]))
        .await;
    assert!(
        groups(&all)["subscriptionGroupTable"]
            .get("Doomed")
            .is_none(),
        "the group is gone"
    );
    // cleanOffset=true forgot the stored 7: the group reads like a new one, which on a queue
    // still holding message 0 is offset 0 (RocketMQ's QUERY_CONSUMER_OFFSET rule).
    assert_eq!(query_offset(&mut conn).await, (0, Some("0".to_owned())));

    // A missing groupName is an error naming the field.
    let missing = conn
        .call(request(RequestCode::DELETE_SUBSCRIPTIONGROUP, &[]))
        .await;
    assert_ne!(missing.code, 0);
    assert!(remark(&missing).contains("groupName"), "{missing:?}");
}

#[tokio::test]
async fn level_one_delay_is_not_delivered_before_a_second_after_its_store_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path(), &[]);
    let mut conn = Conn::open(&broker.addr).await;

    let sent = conn
        .call(send_v2("Delayed", 0, b"later", "DELAY\u{1}1\u{2}"))
        .await;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    // Parked in SCHEDULE_TOPIC_XXXX queue 0 (level 1) with its own store time.
    let parked = pulled(&mut conn, "SCHEDULE_TOPIC_XXXX", 0, 0).await;
    assert_eq!(parked.len(), 1);
    let parked_at = parked[0].store_timestamp;
    assert_eq!(
        parked[0].properties.get("REAL_TOPIC").map(String::as_str),
        Some("Delayed")
    );

    // A held pull receives it once delivered; the delivered copy's store time is at least the
    // level's 1 s after the parked one (RocketMQ delivers at storeTimestamp + delay).
    let delivered = conn.call(pull("Delayed", 0, 0, 20_000)).await;
    assert_eq!(delivered.code, 0, "{:?}", delivered.remark);
    let records = message::decode_all(&delivered.body, true).expect("records");
    assert_eq!(&records[0].body[..], b"later");
    assert!(
        records[0].store_timestamp >= parked_at + 1_000,
        "delivered at {} but parked at {parked_at}",
        records[0].store_timestamp
    );
}
