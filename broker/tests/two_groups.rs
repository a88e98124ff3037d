//! One topic spread over two broker groups (two masters, one cluster), real processes on
//! 127.0.0.1: producers spread sends over both groups, a consumer group sees every message once,
//! and when one master dies the producer keeps sending to the other group.

use std::collections::{BTreeMap, BTreeSet};
mod common;

use std::path::Path;
use std::time::Duration;

use ferrum_client::{Admin, Message, MessageQueue, Producer, PullConsumer, PullStatus, SendStatus};
use ferrum_protocol::route::TopicConfig;

use common::{Proc, start_broker_with_sets, start_namesrv};

const CLUSTER: &str = "TwoGroupCluster";
const TOPIC: &str = "SpreadTopic";
const QUEUES: i32 = 4;

fn start_broker(store: &Path, namesrv: &str, name: &str) -> Proc {
    start_broker_with_sets(
        namesrv,
        &[
            "listenPort=0".to_owned(),
            "bindAddress=127.0.0.1".to_owned(),
            format!("storePathRootDir={}", store.display()),
            "mappedFileSizeCommitLog=1048576".to_owned(),
            format!("brokerName={name}"),
            format!("brokerClusterName={CLUSTER}"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_topic_spread_over_two_broker_groups() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("scenario finishes in time");
}

async fn scenario() {
    let namesrv = start_namesrv();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let broker_a = start_broker(dir_a.path(), &namesrv.addr, "broker-a");
    let mut broker_b = start_broker(dir_b.path(), &namesrv.addr, "broker-b");

    let admin = Admin::new([namesrv.addr.as_str()]);
    let mut masters = Vec::new();
    for _ in 0..600 {
        masters = admin.master_addrs(Some(CLUSTER)).await.unwrap_or_default();
        if masters.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    masters.sort();
    let mut expected = vec![broker_a.addr.clone(), broker_b.addr.clone()];
    expected.sort();
    assert_eq!(masters, expected, "both masters registered in the cluster");

    admin
        .create_topic_in_cluster(CLUSTER, &TopicConfig::new(TOPIC, QUEUES))
        .await
        .expect("create topic on every master");

    let mut groups = BTreeSet::new();
    for _ in 0..600 {
        if let Ok(route) = admin.namesrv().topic_route(TOPIC).await {
            groups = route
                .queue_datas
                .iter()
                .filter(|q| q.write_queue_nums == QUEUES)
                .map(|q| q.broker_name.clone())
                .collect();
            if groups.len() == 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        groups,
        BTreeSet::from(["broker-a".to_owned(), "broker-b".to_owned()]),
        "the route lists the topic's queues on both groups"
    );

    let producer = Producer::new([namesrv.addr.as_str()], "two-groups-producer");

    // Round robin over all writable queues of both groups.
    let mut sent: BTreeMap<String, String> = BTreeMap::new();
    let mut per_queue: BTreeMap<MessageQueue, usize> = BTreeMap::new();
    for i in 0..40 {
        let body = format!("rr-{i}");
        let result = producer
            .send(TOPIC, Message::new(body.clone()))
            .await
            .expect("round-robin send");
        assert_eq!(result.status, SendStatus::SendOk);
        *per_queue.entry(result.queue.clone()).or_default() += 1;
        assert!(sent.insert(result.unique_id, body).is_none(), "unique ids");
    }
    let used_groups: BTreeSet<&str> = per_queue.keys().map(|q| q.broker_name.as_str()).collect();
    assert_eq!(
        used_groups,
        BTreeSet::from(["broker-a", "broker-b"]),
        "round robin reaches both groups: {per_queue:?}"
    );
    assert_eq!(
        per_queue.len(),
        2 * QUEUES as usize,
        "round robin reaches every writable queue: {per_queue:?}"
    );

    // One sharding key always lands on one queue.
    for key in ["order-1", "order-2", "order-3"] {
        let mut queues = BTreeSet::new();
        for i in 0..5 {
            let body = format!("{key}-{i}");
            let result = producer
                .send_with_key(TOPIC, Message::new(body.clone()), key)
                .await
                .expect("keyed send");
            assert_eq!(result.status, SendStatus::SendOk);
            queues.insert(result.queue.clone());
            assert!(sent.insert(result.unique_id, body).is_none(), "unique ids");
        }
        assert_eq!(queues.len(), 1, "key {key} went to one queue: {queues:?}");
    }

    // A consumer group pulling every queue of both groups sees each message exactly once.
    let consumer = PullConsumer::new([namesrv.addr.as_str()], "two-groups-consumer");
    let queues = consumer.queues(TOPIC).await.expect("consumer queues");
    let consumer_groups: BTreeSet<&str> = queues.iter().map(|q| q.broker_name.as_str()).collect();
    assert_eq!(consumer_groups, BTreeSet::from(["broker-a", "broker-b"]));
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for mq in &queues {
        let mut offset = 0;
        for _ in 0..100 {
            let result = consumer.pull(mq, offset, 32).await.expect("pull");
            if result.status != PullStatus::Found {
                break;
            }
            for msg in &result.messages {
                let uniq = msg
                    .properties
                    .get("UNIQ_KEY")
                    .cloned()
                    .expect("UNIQ_KEY on every message");
                assert_eq!(
                    sent.get(&uniq).map(String::as_bytes),
                    Some(msg.body.as_ref()),
                    "body matches what was sent"
                );
                *received.entry(uniq).or_default() += 1;
            }
            offset = result.next_begin_offset;
        }
    }
    assert_eq!(received.len(), sent.len(), "every sent message received");
    assert!(
        received.values().all(|&n| n == 1),
        "each message received exactly once"
    );

    // broker-b's master dies; every further send succeeds on broker-a within the retries.
    broker_b.kill();
    for i in 0..30 {
        let result = producer
            .send(TOPIC, Message::new(format!("after-kill-{i}")))
            .await
            .expect("send after broker-b died");
        assert_eq!(result.status, SendStatus::SendOk);
        assert_eq!(
            result.queue.broker_name, "broker-a",
            "send {i} went to the survivor"
        );
        assert_eq!(result.broker_addr, broker_a.addr);
    }
    drop(broker_a);
}
