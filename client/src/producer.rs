//! `Producer`: sends messages to the writable queues of a topic's master brokers, with round-robin
//! or sharding-key selection, retry on another broker and latency-based fault avoidance.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrum_protocol::headers::{
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use ferrum_protocol::message::{self, BatchEntry, java_string_hash, property};
use ferrum_protocol::route::{PERM_WRITE, TopicRouteData};
use ferrum_protocol::{CommandHeader, ExtFields, RemotingCommand, RequestCode, ResponseCode};

use crate::connection::{ConnectOptions, ConnectionPool, DEFAULT_REQUEST_TIMEOUT, response_error};
use crate::error::{ClientError, Result};
use crate::fault::LatencyFaultTolerance;
use crate::message::{Message, MessageQueue, SendResult, SendStatus, new_unique_id};
use crate::namesrv::NameServerClient;

/// The topic whose route a producer borrows for a topic that does not exist yet (auto-create).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
/// Queues a producer asks the broker to auto-create (`defaultTopicQueueNums`).
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

/// Answer codes after which RocketMQ's producer tries another broker.
const RETRY_CODES: [ResponseCode; 8] = [
    ResponseCode::TOPIC_NOT_EXIST,
    ResponseCode::SERVICE_NOT_AVAILABLE,
    ResponseCode::SYSTEM_ERROR,
    ResponseCode::SYSTEM_BUSY,
    ResponseCode::NO_PERMISSION,
    ResponseCode::NO_BUYER_ID,
    ResponseCode::NOT_IN_CURRENT_UNIT,
    ResponseCode::GO_AWAY,
];

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub send_timeout: Duration,
    /// Extra attempts after a failed send, each on another broker when there is one.
    pub retry_times: u32,
    /// How long a fetched route is trusted.
    pub route_ttl: Duration,
    /// Avoid brokers that failed or answered slowly (RocketMQ's `sendLatencyFaultEnable`).
    pub fault_avoidance: bool,
    /// SEND_MESSAGE_V2 (310, short header names) as the Java client; false sends SEND_MESSAGE (10).
    pub use_send_v2: bool,
    /// Header serialization and handler of the connections to NameServers and brokers.
    pub connect: ConnectOptions,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            send_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry_times: 2,
            route_ttl: Duration::from_secs(30),
            fault_avoidance: true,
            use_send_v2: true,
            connect: ConnectOptions::default(),
        }
    }
}

/// The queues a topic can be written to and the master of each broker group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishInfo {
    pub queues: Vec<MessageQueue>,
    pub master_addrs: HashMap<String, String>,
}

impl PublishInfo {
    /// Every writable queue of every broker group with a live master. With `queue_limit` (used
    /// for auto-create through TBW102) each group contributes at most that many queues.
    pub fn from_route(topic: &str, route: &TopicRouteData, queue_limit: Option<i32>) -> Self {
        let masters: HashMap<String, String> = route
            .broker_datas
            .iter()
            .filter_map(|b| {
                b.master_addr()
                    .map(|a| (b.broker_name.clone(), a.to_owned()))
            })
            .collect();
        let mut queue_datas: Vec<_> = route.queue_datas.iter().collect();
        queue_datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        let mut queues = Vec::new();
        for qd in queue_datas {
            if qd.perm & PERM_WRITE == 0 || !masters.contains_key(&qd.broker_name) {
                continue;
            }
            let n = queue_limit.map_or(qd.write_queue_nums, |l| qd.write_queue_nums.min(l));
            for queue_id in 0..n.max(0) {
                queues.push(MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: qd.broker_name.clone(),
                    queue_id,
                });
            }
        }
        PublishInfo {
            queues,
            master_addrs: masters,
        }
    }
}

/// Picks a queue round robin from `counter`, skipping brokers the fault table avoids and, on a
/// retry, the broker that just failed. Falls back step by step so some queue is always picked.
pub fn select_queue<'a>(
    queues: &'a [MessageQueue],
    counter: usize,
    last_broker: Option<&str>,
    fault: Option<&LatencyFaultTolerance>,
    now: Instant,
) -> Option<&'a MessageQueue> {
    if queues.is_empty() {
        return None;
    }
    let n = queues.len();
    let nth = |i: usize| &queues[(counter.wrapping_add(i)) % n];
    let available = |mq: &MessageQueue| fault.is_none_or(|f| f.is_available(&mq.broker_name, now));
    let not_last = |mq: &MessageQueue| last_broker != Some(mq.broker_name.as_str());
    (0..n)
        .map(nth)
        .find(|mq| available(mq) && not_last(mq))
        .or_else(|| (0..n).map(nth).find(|mq| available(mq)))
        .or_else(|| {
            let least_bad = fault.and_then(LatencyFaultTolerance::least_bad)?;
            (0..n).map(nth).find(|mq| mq.broker_name == least_bad)
        })
        .or_else(|| (0..n).map(nth).find(|mq| not_last(mq)))
        .or_else(|| Some(nth(0)))
}

/// The queue for a sharding key: messages with one key always go to one queue (while the route
/// does not change), so they stay in order. Uses Java's `String.hashCode` like
/// `SelectMessageQueueByHash`.
pub fn select_queue_by_key<'a>(queues: &'a [MessageQueue], key: &str) -> Option<&'a MessageQueue> {
    if queues.is_empty() {
        return None;
    }
    let hash = java_string_hash(key).unsigned_abs() as usize;
    Some(&queues[hash % queues.len()])
}

/// A message producer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    namesrv: NameServerClient,
    pool: ConnectionPool,
    group: String,
    config: ProducerConfig,
    routes: Mutex<HashMap<String, (Instant, Arc<PublishInfo>)>>,
    counter: AtomicUsize,
    fault: Mutex<LatencyFaultTolerance>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since the Unix epoch, as RocketMQ stamps `bornTimestamp`.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

enum Selection<'a> {
    RoundRobin,
    Key(&'a str),
    Queue(i32),
}

impl Producer {
    /// A producer of `group` using the NameServers in `namesrv_addrs`.
    pub fn new<S: AsRef<str>>(namesrv_addrs: impl IntoIterator<Item = S>, group: &str) -> Self {
        Self::with_config(namesrv_addrs, group, ProducerConfig::default())
    }

    pub fn with_config<S: AsRef<str>>(
        namesrv_addrs: impl IntoIterator<Item = S>,
        group: &str,
        config: ProducerConfig,
    ) -> Self {
        let pool = ConnectionPool::new(config.connect.clone());
        Producer {
            inner: Arc::new(Inner {
                namesrv: NameServerClient::with_pool(namesrv_addrs, pool.clone()),
                pool,
                group: group.to_owned(),
                config,
                routes: Mutex::new(HashMap::new()),
                counter: AtomicUsize::new(rand_seed()),
                fault: Mutex::new(LatencyFaultTolerance::default()),
            }),
        }
    }

    /// The topic's writable queues, from the cache or the NameServer.
    pub async fn publish_info(&self, topic: &str) -> Result<Arc<PublishInfo>> {
        if let Some((at, info)) = lock(&self.inner.routes).get(topic)
            && at.elapsed() < self.inner.config.route_ttl
        {
            return Ok(info.clone());
        }
        let info = match self.inner.namesrv.topic_route(topic).await {
            Ok(route) => PublishInfo::from_route(topic, &route, None),
            Err(ClientError::TopicNotExist(_)) => {
                // Like RocketMQ: send through TBW102's brokers, which create the topic.
                let route = self
                    .inner
                    .namesrv
                    .topic_route(AUTO_CREATE_TOPIC)
                    .await
                    .map_err(|_| ClientError::TopicNotExist(topic.to_owned()))?;
                PublishInfo::from_route(topic, &route, Some(DEFAULT_TOPIC_QUEUE_NUMS))
            }
            Err(e) => return Err(e),
        };
        if info.queues.is_empty() {
            return Err(ClientError::NoWritableQueue(topic.to_owned()));
        }
        let info = Arc::new(info);
        lock(&self.inner.routes).insert(topic.to_owned(), (Instant::now(), info.clone()));
        Ok(info)
    }

    /// Sends one message to the next queue round robin, retrying on another broker on failure.
    pub async fn send(&self, topic: &str, msg: Message) -> Result<SendResult> {
        self.send_selected(topic, msg, Selection::RoundRobin).await
    }

    /// Sends to the queue chosen by hashing `sharding_key`, so messages with one key keep order.
    pub async fn send_with_key(
        &self,
        topic: &str,
        msg: Message,
        sharding_key: &str,
    ) -> Result<SendResult> {
        self.send_selected(topic, msg, Selection::Key(sharding_key))
            .await
    }

    /// Sends to one queue (by index in the topic's writable queues, modulo their number).
    pub async fn send_to_queue(
        &self,
        topic: &str,
        msg: Message,
        queue_index: i32,
    ) -> Result<SendResult> {
        self.send_selected(topic, msg, Selection::Queue(queue_index))
            .await
    }

    /// Sends several messages as one SEND_BATCH_MESSAGE (320) to a single queue.
    pub async fn send_batch(&self, topic: &str, msgs: Vec<Message>) -> Result<SendResult> {
        if msgs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a batch needs at least one message".into(),
            ));
        }
        let mut unique_ids = Vec::with_capacity(msgs.len());
        let entries: Vec<BatchEntry> = msgs
            .into_iter()
            .map(|m| {
                let mut properties = m.properties;
                let id = new_unique_id();
                properties.insert(
                    property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX.to_owned(),
                    id.clone(),
                );
                unique_ids.push(id);
                BatchEntry {
                    flag: m.flag,
                    body: m.body,
                    properties,
                }
            })
            .collect();
        let body = message::encode_batch(&entries)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let batch = Outgoing {
            body,
            flag: 0,
            properties: BTreeMap::new(),
            unique_id: unique_ids.join(","),
            batch: true,
        };
        self.send_with_retry(topic, &batch, Selection::RoundRobin)
            .await
    }

    async fn send_selected(
        &self,
        topic: &str,
        msg: Message,
        selection: Selection<'_>,
    ) -> Result<SendResult> {
        let mut properties = msg.properties;
        let unique_id = properties
            .entry(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX.to_owned())
            .or_insert_with(new_unique_id)
            .clone();
        let outgoing = Outgoing {
            body: msg.body,
            flag: msg.flag,
            properties,
            unique_id,
            batch: false,
        };
        self.send_with_retry(topic, &outgoing, selection).await
    }

    async fn send_with_retry(
        &self,
        topic: &str,
        msg: &Outgoing,
        selection: Selection<'_>,
    ) -> Result<SendResult> {
        let info = self.publish_info(topic).await?;
        let attempts = 1 + self.inner.config.retry_times;
        let mut last_broker: Option<String> = None;
        let mut last_error = None;
        for _ in 0..attempts {
            let mq = match selection {
                Selection::Key(key) => select_queue_by_key(&info.queues, key),
                Selection::Queue(i) => {
                    let n = info.queues.len() as i64;
                    info.queues.get(i64::from(i).rem_euclid(n.max(1)) as usize)
                }
                Selection::RoundRobin => {
                    let counter = self.inner.counter.fetch_add(1, Ordering::Relaxed);
                    let fault = lock(&self.inner.fault);
                    let fault = self.inner.config.fault_avoidance.then_some(&*fault);
                    select_queue(
                        &info.queues,
                        counter,
                        last_broker.as_deref(),
                        fault,
                        Instant::now(),
                    )
                }
            }
            .ok_or_else(|| ClientError::NoWritableQueue(topic.to_owned()))?;
            let addr = info
                .master_addrs
                .get(&mq.broker_name)
                .ok_or_else(|| ClientError::BrokerNotFound(mq.broker_name.clone()))?;
            let started = Instant::now();
            let result = self.send_once(addr, mq, msg).await;
            let latency = started.elapsed();
            match result {
                Ok(result) => {
                    self.record(&mq.broker_name, latency, false);
                    return Ok(result);
                }
                Err(e) => {
                    let retryable = e.is_transport()
                        || e.response_code()
                            .is_some_and(|c| RETRY_CODES.iter().any(|r| r.code() == c));
                    self.record(&mq.broker_name, latency, e.is_transport());
                    tracing::debug!(broker = %mq.broker_name, error = %e, retryable, "send failed");
                    if !retryable {
                        return Err(e);
                    }
                    if e.is_transport() {
                        lock(&self.inner.routes).remove(topic);
                    }
                    last_broker = Some(mq.broker_name.clone());
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::NoWritableQueue(topic.to_owned())))
    }

    fn record(&self, broker: &str, latency: Duration, isolation: bool) {
        if self.inner.config.fault_avoidance {
            lock(&self.inner.fault).update(broker, latency, isolation, Instant::now());
        }
    }

    async fn send_once(&self, addr: &str, mq: &MessageQueue, msg: &Outgoing) -> Result<SendResult> {
        let code = if msg.batch {
            RequestCode::SEND_BATCH_MESSAGE
        } else if self.inner.config.use_send_v2 {
            RequestCode::SEND_MESSAGE_V2
        } else {
            RequestCode::SEND_MESSAGE
        };
        let short = code != RequestCode::SEND_MESSAGE;
        let mut cmd = RemotingCommand::bare_request(code);
        cmd.ext_fields = send_header(&self.inner.group, mq, msg, short);
        cmd.body = msg.body.clone();
        let answer = self
            .inner
            .pool
            .invoke(addr, cmd, self.inner.config.send_timeout)
            .await?;
        let Some(status) = SendStatus::from_code(answer.code) else {
            return Err(response_error(addr, &answer));
        };
        let header: SendMessageResponseHeader =
            answer
                .decode_header()
                .map_err(|e| ClientError::BadResponse {
                    addr: addr.to_owned(),
                    reason: e.to_string(),
                })?;
        Ok(SendResult {
            status,
            msg_id: header.msg_id,
            unique_id: msg.unique_id.clone(),
            queue: MessageQueue {
                topic: mq.topic.clone(),
                broker_name: mq.broker_name.clone(),
                queue_id: header.queue_id,
            },
            queue_offset: header.queue_offset,
            broker_addr: addr.to_owned(),
        })
    }
}

struct Outgoing {
    body: Bytes,
    flag: i32,
    properties: BTreeMap<String, String>,
    unique_id: String,
    batch: bool,
}

/// The send header: `SendMessageRequestHeaderV2`'s one-letter names (310 / 320) or
/// `SendMessageRequestHeader`'s long names (10).
fn send_header(group: &str, mq: &MessageQueue, msg: &Outgoing, short: bool) -> ExtFields {
    let header = SendMessageRequestHeader {
        producer_group: group.to_owned(),
        topic: mq.topic.clone(),
        default_topic: AUTO_CREATE_TOPIC.to_owned(),
        default_topic_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
        queue_id: mq.queue_id,
        sys_flag: 0,
        born_timestamp: now_millis(),
        flag: msg.flag,
        properties: Some(message::properties_to_string(&msg.properties)),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(msg.batch),
        broker_name: Some(mq.broker_name.clone()),
        ..Default::default()
    };
    if short {
        SendMessageRequestHeaderV2::from(header).to_ext_fields()
    } else {
        header.to_ext_fields()
    }
}

fn rand_seed() -> usize {
    // Producers started together should not all begin on the same queue.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize)
        ^ std::process::id() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_protocol::route::{BrokerData, QueueData};

    fn route(groups: &[(&str, bool, i32, i32)]) -> TopicRouteData {
        TopicRouteData {
            broker_datas: groups
                .iter()
                .map(|&(name, has_master, _, _)| BrokerData {
                    cluster: "c".into(),
                    broker_name: name.into(),
                    broker_addrs: if has_master {
                        [(0, format!("{name}:10911")), (1, format!("{name}-s:10911"))].into()
                    } else {
                        [(1, format!("{name}-s:10911"))].into()
                    },
                    ..Default::default()
                })
                .collect(),
            queue_datas: groups
                .iter()
                .map(|&(name, _, perm, n)| QueueData {
                    broker_name: name.into(),
                    read_queue_nums: n,
                    write_queue_nums: n,
                    perm,
                    topic_sys_flag: 0,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn publish_info_keeps_writable_queues_of_live_masters() {
        let r = route(&[
            ("b", true, 6, 2),
            ("a", true, 6, 3),
            ("ro", true, 4, 4),
            ("nomaster", false, 6, 4),
        ]);
        let info = PublishInfo::from_route("T", &r, None);
        let names: Vec<String> = info.queues.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["T@a#0", "T@a#1", "T@a#2", "T@b#0", "T@b#1"]);
        assert_eq!(
            info.master_addrs.get("a").map(String::as_str),
            Some("a:10911")
        );
        let limited = PublishInfo::from_route("T", &r, Some(1));
        assert_eq!(limited.queues.len(), 2);
    }

    fn queues() -> Vec<MessageQueue> {
        PublishInfo::from_route("T", &route(&[("a", true, 6, 2), ("b", true, 6, 2)]), None).queues
    }

    #[test]
    fn round_robin_visits_every_queue_evenly() {
        let qs = queues();
        let now = Instant::now();
        let mut counts = HashMap::new();
        for counter in 0..400 {
            let mq = select_queue(&qs, counter, None, None, now).expect("a queue");
            *counts.entry(mq.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        assert!(counts.values().all(|&c| c == 100));
    }

    #[test]
    fn retry_goes_to_another_broker_and_avoids_failed_ones() {
        let qs = queues();
        let now = Instant::now();
        // counter 0 would pick broker a; after a failure on a the retry goes to b.
        let mq = select_queue(&qs, 0, Some("a"), None, now).expect("queue");
        assert_eq!(mq.broker_name, "b");
        let mut fault = LatencyFaultTolerance::default();
        fault.update("a", Duration::ZERO, true, now);
        for counter in 0..10 {
            let mq = select_queue(&qs, counter, None, Some(&fault), now).expect("queue");
            assert_eq!(mq.broker_name, "b");
        }
        // Once the isolation has passed, a is used again.
        let later = now + Duration::from_secs(601);
        let picked: Vec<_> = (0..4)
            .filter_map(|c| select_queue(&qs, c, None, Some(&fault), later))
            .map(|mq| mq.broker_name.clone())
            .collect();
        assert!(picked.iter().any(|b| b == "a"));
        // All avoided: still some queue, the least bad broker's.
        fault.update("b", Duration::from_millis(600), false, now);
        let mq = select_queue(&qs, 0, None, Some(&fault), now).expect("queue");
        assert_eq!(mq.broker_name, "b");
        assert!(select_queue(&[], 0, None, None, now).is_none());
    }

    #[test]
    fn sharding_key_is_stable() {
        let qs = queues();
        let first = select_queue_by_key(&qs, "order-42").expect("queue").clone();
        for _ in 0..5 {
            assert_eq!(select_queue_by_key(&qs, "order-42"), Some(&first));
        }
        let distinct: std::collections::HashSet<_> = (0..100)
            .filter_map(|i| select_queue_by_key(&qs, &format!("k{i}")))
            .collect();
        assert!(distinct.len() > 1);
    }

    #[test]
    fn send_header_uses_short_or_long_names() {
        let mq = MessageQueue {
            topic: "T".into(),
            broker_name: "a".into(),
            queue_id: 3,
        };
        let msg = Outgoing {
            body: Bytes::from_static(b"x"),
            flag: 0,
            properties: [("TAGS".to_owned(), "t".to_owned())].into(),
            unique_id: "u".into(),
            batch: false,
        };
        let short = send_header("g", &mq, &msg, true);
        assert_eq!(short.get("b").map(String::as_str), Some("T"));
        assert_eq!(short.get("e").map(String::as_str), Some("3"));
        assert_eq!(short.get("i").map(String::as_str), Some("TAGS\u{1}t\u{2}"));
        let long = send_header("g", &mq, &msg, false);
        assert_eq!(long.get("producerGroup").map(String::as_str), Some("g"));
        assert_eq!(long.get("queueId").map(String::as_str), Some("3"));
    }

    mod network {
        use super::*;
        use crate::testutil::{dead_addr, serve};

        fn route_json(groups: &[(&str, &str)]) -> String {
            let brokers: Vec<String> = groups
                .iter()
                .map(|(n, a)| {
                    format!(r#"{{"brokerAddrs":{{"0":"{a}"}},"brokerName":"{n}","cluster":"c"}}"#)
                })
                .collect();
            let queues: Vec<String> = groups
                .iter()
                .map(|(n, _)| {
                    format!(
                        r#"{{"brokerName":"{n}","perm":6,"readQueueNums":2,"writeQueueNums":2}}"#
                    )
                })
                .collect();
            format!(
                r#"{{"brokerDatas":[{}],"queueDatas":[{}]}}"#,
                brokers.join(","),
                queues.join(",")
            )
        }

        async fn broker(code: ResponseCode) -> String {
            serve(move |req| {
                let mut answer = req.response_to(code, Some("from the test broker".to_owned()));
                if code == ResponseCode::SUCCESS {
                    let f = &req.ext_fields;
                    answer
                        .ext_fields
                        .insert("msgId".into(), "7F00000100002A9F0000000000000000".into());
                    answer
                        .ext_fields
                        .insert("queueId".into(), f.get("e").cloned().unwrap_or_default());
                    answer.ext_fields.insert("queueOffset".into(), "5".into());
                    assert_eq!(f.get("b").map(String::as_str), Some("T"));
                    assert!(f.get("i").is_some_and(|p| p.contains("UNIQ_KEY")));
                }
                vec![answer]
            })
            .await
        }

        #[tokio::test]
        async fn a_dead_broker_is_retried_elsewhere_and_then_avoided() {
            let live = broker(ResponseCode::SUCCESS).await;
            let dead = dead_addr().await;
            let route = route_json(&[("a", &dead), ("b", &live)]);
            let namesrv = serve(move |req| vec![req.success_to().with_body(route.clone())]).await;
            let producer = Producer::new([namesrv], "pg");
            for _ in 0..6 {
                let result = producer
                    .send("T", Message::new("hello"))
                    .await
                    .expect("sent");
                assert_eq!(result.queue.broker_name, "b");
                assert_eq!(result.queue_offset, 5);
                assert_eq!(result.status, SendStatus::SendOk);
                assert_eq!(result.broker_addr, live);
            }
            assert!(!lock(&producer.inner.fault).is_available("a", Instant::now()));
        }

        #[tokio::test]
        async fn batches_go_out_as_one_send_batch_request() {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let live = serve(move |req| {
                let _ = tx.send((req.code, req.ext_fields.get("m").cloned(), req.body.clone()));
                let mut answer = req.success_to();
                answer.ext_fields.insert("msgId".into(), "A,B".into());
                answer.ext_fields.insert("queueId".into(), "0".into());
                answer.ext_fields.insert("queueOffset".into(), "9".into());
                vec![answer]
            })
            .await;
            let route = route_json(&[("a", &live)]);
            let namesrv = serve(move |req| vec![req.success_to().with_body(route.clone())]).await;
            let producer = Producer::new([namesrv], "pg");
            let result = producer
                .send_batch(
                    "T",
                    vec![Message::new("one"), Message::new("two").with_tags("t")],
                )
                .await
                .expect("sent");
            assert_eq!(result.msg_id, "A,B");
            assert_eq!(result.unique_id.split(',').count(), 2);
            let (code, batch_flag, body) = rx.recv().await.expect("request seen");
            assert_eq!(code, RequestCode::SEND_BATCH_MESSAGE.code());
            assert_eq!(batch_flag.as_deref(), Some("true"));
            let entries = message::decode_batch(&body).expect("batch body");
            assert_eq!(entries.len(), 2);
            assert_eq!(&entries[1].body[..], b"two");
            assert!(
                entries
                    .iter()
                    .all(|e| e.properties.contains_key("UNIQ_KEY"))
            );
            assert!(producer.send_batch("T", Vec::new()).await.is_err());
        }

        #[tokio::test]
        async fn definite_refusals_are_not_retried() {
            let bad = broker(ResponseCode::MESSAGE_ILLEGAL).await;
            let route = route_json(&[("a", &bad)]);
            let namesrv = serve(move |req| vec![req.success_to().with_body(route.clone())]).await;
            let producer = Producer::new([namesrv], "pg");
            let err = producer
                .send("T", Message::new("x"))
                .await
                .expect_err("refused");
            assert_eq!(err.response_code(), Some(13));
            assert!(err.to_string().contains("from the test broker"), "{err}");
        }
    }
}
