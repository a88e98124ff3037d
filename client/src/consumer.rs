//! `PullConsumer`: pulls a queue from an offset, decodes the records and commits offsets on the
//! broker, reading from the replica the master suggests.
//!
//! A replica that does not answer (refused, closed or silent past the timeout) is avoided for
//! [`UNREACHABLE_FOR`] while another member of its group is in the route, as RocketMQ's
//! `findBrokerAddressInSubscribe` falls back to any member: a master that is down or hung —
//! still listed by the NameServers until its connection closes or its registration expires —
//! does not cost every pull, offset query and commit a timeout.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrum_protocol::headers::{PullMessageRequestHeader, PullMessageResponseHeader};
use ferrum_protocol::message::{self, MessageExt};
use ferrum_protocol::route::{MASTER_ID, PERM_READ, TopicRouteData};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::connection::{ConnectOptions, ConnectionPool, DEFAULT_REQUEST_TIMEOUT, response_error};
use crate::error::{ClientError, Result};
use crate::message::MessageQueue;
use crate::namesrv::{NameServerClient, header_field, request};

/// `PullSysFlag` bits.
const FLAG_SUSPEND: i32 = 0x2;
const FLAG_SUBSCRIPTION: i32 = 0x4;

/// How long a replica that did not answer is passed over while its group has another member.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

/// Pull-consumer settings.
#[derive(Debug, Clone)]
pub struct PullConfig {
    pub timeout: Duration,
    /// When set, the broker holds a pull that finds nothing for up to this long.
    pub long_poll: Option<Duration>,
    pub route_ttl: Duration,
    /// The tag expression sent as the subscription ("*" = all; "a || b").
    pub subscription: String,
    /// Header serialization and handler of the connections to NameServers and brokers.
    pub connect: ConnectOptions,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig {
            timeout: DEFAULT_REQUEST_TIMEOUT,
            long_poll: None,
            route_ttl: Duration::from_secs(30),
            subscription: "*".to_owned(),
            connect: ConnectOptions::default(),
        }
    }
}

/// The outcome of a pull (`PullStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    Found,
    NoNewMsg,
    NoMatchedMsg,
    OffsetIllegal,
}

/// What a pull returned.
#[derive(Debug, Clone)]
pub struct PullResult {
    pub status: PullStatus,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub messages: Vec<MessageExt>,
}

/// A pull consumer of one consumer group. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PullConsumer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    namesrv: NameServerClient,
    pool: ConnectionPool,
    group: String,
    config: PullConfig,
    routes: Mutex<HashMap<String, (Instant, Arc<TopicRouteData>)>>,
    suggested: Mutex<HashMap<MessageQueue, i64>>,
    /// Replicas that did not answer, and until when they are passed over.
    unreachable: Mutex<HashMap<String, Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The readable queues of a topic in a route.
pub fn readable_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut queues: Vec<MessageQueue> = route
        .queue_datas
        .iter()
        .filter(|qd| qd.perm & PERM_READ != 0)
        .flat_map(|qd| {
            (0..qd.read_queue_nums.max(0)).map(|queue_id| MessageQueue {
                topic: topic.to_owned(),
                broker_name: qd.broker_name.clone(),
                queue_id,
            })
        })
        .collect();
    queues.sort();
    queues
}

/// The address to pull from: the suggested broker if it is in the route, else the master, else
/// any member of the group.
pub fn pull_addr(route: &TopicRouteData, broker_name: &str, suggested: i64) -> Option<String> {
    pull_addr_avoiding(route, broker_name, suggested, |_| false)
}

/// [`pull_addr`] passing over the members `down` names as long as another one is listed: the
/// suggested broker, the master, then the others by brokerId; when every member is down, the
/// first of that order (a replica that came back is found again).
pub fn pull_addr_avoiding(
    route: &TopicRouteData,
    broker_name: &str,
    suggested: i64,
    down: impl Fn(&str) -> bool,
) -> Option<String> {
    let broker = route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == broker_name)?;
    let addrs = &broker.broker_addrs;
    let preferred = [addrs.get(&suggested), addrs.get(&MASTER_ID)];
    let candidates = preferred.into_iter().flatten().chain(addrs.values());
    first_up(candidates, down)
}

/// The first candidate `down` does not name, else the first candidate.
fn first_up<'a>(
    candidates: impl Iterator<Item = &'a String> + Clone,
    down: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut first = candidates.clone();
    candidates
        .into_iter()
        .find(|addr| !down(addr.as_str()))
        .or_else(|| first.next())
        .cloned()
}

/// Another member of the group than `failed`, lowest brokerId first: where a consumer reads
/// and commits while the replica it used (usually the master) does not answer.
pub fn fallback_addr(route: &TopicRouteData, broker_name: &str, failed: &str) -> Option<String> {
    route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == broker_name)?
        .broker_addrs
        .values()
        .find(|addr| addr.as_str() != failed)
        .cloned()
}

/// Where offsets are committed and queried: the master, else the lowest-id slave (the Java
/// client's `findBrokerAddressInAdmin`), so a group keeps its progress while the master is down.
pub fn admin_addr(route: &TopicRouteData, broker_name: &str) -> Option<String> {
    admin_addr_avoiding(route, broker_name, |_| false)
}

/// [`admin_addr`] passing over the members `down` names while another one is listed.
pub fn admin_addr_avoiding(
    route: &TopicRouteData,
    broker_name: &str,
    down: impl Fn(&str) -> bool,
) -> Option<String> {
    let broker = route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == broker_name)?;
    let addrs = &broker.broker_addrs;
    first_up(
        addrs.get(&MASTER_ID).into_iter().chain(addrs.values()),
        down,
    )
}

impl PullConsumer {
    pub fn new<S: AsRef<str>>(namesrv_addrs: impl IntoIterator<Item = S>, group: &str) -> Self {
        Self::with_config(namesrv_addrs, group, PullConfig::default())
    }

    pub fn with_config<S: AsRef<str>>(
        namesrv_addrs: impl IntoIterator<Item = S>,
        group: &str,
        config: PullConfig,
    ) -> Self {
        let pool = ConnectionPool::new(config.connect.clone());
        PullConsumer {
            inner: Arc::new(Inner {
                namesrv: NameServerClient::with_pool(namesrv_addrs, pool.clone()),
                pool,
                group: group.to_owned(),
                config,
                routes: Mutex::new(HashMap::new()),
                suggested: Mutex::new(HashMap::new()),
                unreachable: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    async fn route(&self, topic: &str) -> Result<Arc<TopicRouteData>> {
        if let Some((at, route)) = lock(&self.inner.routes).get(topic)
            && at.elapsed() < self.inner.config.route_ttl
        {
            return Ok(route.clone());
        }
        let route = Arc::new(self.inner.namesrv.topic_route(topic).await?);
        lock(&self.inner.routes).insert(topic.to_owned(), (Instant::now(), route.clone()));
        Ok(route)
    }

    /// The topic's readable queues, sorted by broker and queue id.
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        Ok(readable_queues(topic, &*self.route(topic).await?))
    }

    /// Whether `addr` did not answer within the last [`UNREACHABLE_FOR`].
    fn is_down(&self, addr: &str) -> bool {
        let mut down = lock(&self.inner.unreachable);
        match down.get(addr) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                down.remove(addr);
                false
            }
            None => false,
        }
    }

    fn mark_down(&self, addr: &str) {
        lock(&self.inner.unreachable).insert(addr.to_owned(), Instant::now() + UNREACHABLE_FOR);
    }

    fn mark_up(&self, addr: &str) {
        let mut down = lock(&self.inner.unreachable);
        if !down.is_empty() {
            down.remove(addr);
        }
    }

    async fn master_addr(&self, mq: &MessageQueue) -> Result<String> {
        let route = self.route(&mq.topic).await?;
        admin_addr_avoiding(&route, &mq.broker_name, |a| self.is_down(a))
            .ok_or_else(|| ClientError::BrokerNotFound(mq.broker_name.clone()))
    }

    /// Another member of `mq`'s group than `failed`, from a fresh route (the cached one when
    /// no NameServer answers).
    async fn other_replica(&self, mq: &MessageQueue, failed: &str) -> Option<String> {
        lock(&self.inner.suggested).remove(mq);
        let cached = lock(&self.inner.routes).remove(&mq.topic);
        let route = match self.route(&mq.topic).await {
            Ok(route) => route,
            Err(_) => cached?.1,
        };
        let broker = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == mq.broker_name)?;
        let others = broker
            .broker_addrs
            .values()
            .filter(|a| a.as_str() != failed);
        first_up(others, |a| self.is_down(a))
    }

    /// Sends `cmd` to `addr`; when `addr` does not answer, passes it over for a while, forgets
    /// the cached route (the NameServer drops a dead broker once its connection closes) and
    /// tries another member of the group, so a dead or hung master does not stop a consumer
    /// whose slave is alive.
    async fn invoke_or_fallback(
        &self,
        mq: &MessageQueue,
        addr: String,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<(String, RemotingCommand)> {
        let first = self.inner.pool.invoke(&addr, cmd.clone(), timeout).await;
        let error = match first {
            Ok(answer) => {
                self.mark_up(&addr);
                return Ok((addr, answer));
            }
            Err(error) if error.is_transport() => error,
            Err(error) => return Err(error),
        };
        self.mark_down(&addr);
        let Some(other) = self.other_replica(mq, &addr).await else {
            return Err(error);
        };
        tracing::debug!(failed = %addr, %error, next = %other, "broker unreachable; trying another replica");
        match self.inner.pool.invoke(&other, cmd, timeout).await {
            Ok(answer) => {
                self.mark_up(&other);
                Ok((other, answer))
            }
            Err(error) => {
                if error.is_transport() {
                    self.mark_down(&other);
                }
                Err(error)
            }
        }
    }

    /// GET_MIN_OFFSET / GET_MAX_OFFSET of `mq` on its master, else another member of the group.
    async fn offset_of(&self, mq: &MessageQueue, code: RequestCode) -> Result<i64> {
        let addr = self.master_addr(mq).await?;
        let (addr, answer) = self
            .invoke_or_fallback(
                mq,
                addr,
                offset_request(code, mq),
                self.inner.config.timeout,
            )
            .await?;
        if answer.code != ResponseCode::SUCCESS.code() {
            return Err(response_error(&addr, &answer));
        }
        header_field(&addr, &answer, "offset")
    }

    /// Pulls up to `max_nums` messages of `mq` starting at `offset`.
    pub async fn pull(&self, mq: &MessageQueue, offset: i64, max_nums: i32) -> Result<PullResult> {
        let route = self.route(&mq.topic).await?;
        let suggested = lock(&self.inner.suggested)
            .get(mq)
            .copied()
            .unwrap_or(MASTER_ID);
        let addr = pull_addr_avoiding(&route, &mq.broker_name, suggested, |a| self.is_down(a))
            .ok_or_else(|| ClientError::BrokerNotFound(mq.broker_name.clone()))?;
        let config = &self.inner.config;
        let (sys_flag, suspend, timeout) = match config.long_poll {
            Some(hold) => (
                FLAG_SUBSCRIPTION | FLAG_SUSPEND,
                hold,
                config.timeout + hold,
            ),
            None => (FLAG_SUBSCRIPTION, Duration::ZERO, config.timeout),
        };
        let header = PullMessageRequestHeader {
            consumer_group: self.inner.group.clone(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            queue_offset: offset,
            max_msg_nums: max_nums,
            sys_flag,
            commit_offset: 0,
            suspend_timeout_millis: suspend.as_millis() as i64,
            subscription: Some(config.subscription.clone()),
            sub_version: 0,
            expression_type: Some("TAG".to_owned()),
            broker_name: Some(mq.broker_name.clone()),
            ..Default::default()
        };
        let cmd = RemotingCommand::request(RequestCode::PULL_MESSAGE, &header);
        let (addr, answer) = self.invoke_or_fallback(mq, addr, cmd, timeout).await?;
        let status = match ResponseCode::from_code(answer.code) {
            Some(ResponseCode::SUCCESS) => PullStatus::Found,
            Some(ResponseCode::PULL_NOT_FOUND) => PullStatus::NoNewMsg,
            Some(ResponseCode::PULL_RETRY_IMMEDIATELY) => PullStatus::NoMatchedMsg,
            Some(ResponseCode::PULL_OFFSET_MOVED) => PullStatus::OffsetIllegal,
            _ => return Err(response_error(&addr, &answer)),
        };
        let header: PullMessageResponseHeader =
            answer
                .decode_header()
                .map_err(|e| ClientError::BadResponse {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        lock(&self.inner.suggested).insert(mq.clone(), header.suggest_which_broker_id);
        let messages = if status == PullStatus::Found {
            let bad = |e: message::MessageError| ClientError::BadResponse {
                addr: addr.clone(),
                reason: format!("undecodable pull body: {e}"),
            };
            let mut messages = message::decode_all(&answer.body, false).map_err(bad)?;
            for msg in &mut messages {
                let inflated = match message::uncompressed_body(msg.sys_flag, &msg.body) {
                    Ok(Cow::Owned(plain)) => Some(plain),
                    Ok(Cow::Borrowed(_)) => None,
                    Err(e) => return Err(bad(e)),
                };
                if let Some(plain) = inflated {
                    msg.body = plain.into();
                }
            }
            messages
        } else {
            Vec::new()
        };
        Ok(PullResult {
            status,
            next_begin_offset: header.next_begin_offset,
            min_offset: header.min_offset,
            max_offset: header.max_offset,
            messages,
        })
    }

    /// The group's committed offset of `mq`; `None` when the broker has none (QUERY_NOT_FOUND).
    pub async fn committed_offset(&self, mq: &MessageQueue) -> Result<Option<i64>> {
        let addr = self.master_addr(mq).await?;
        let (pool, group, timeout) = (
            &self.inner.pool,
            &self.inner.group,
            self.inner.config.timeout,
        );
        match query_consumer_offset(pool, &addr, group, mq, timeout).await {
            Err(error) if error.is_transport() => {
                self.mark_down(&addr);
                match self.other_replica(mq, &addr).await {
                    Some(other) => query_consumer_offset(pool, &other, group, mq, timeout).await,
                    None => Err(error),
                }
            }
            result => result,
        }
    }

    /// Commits `offset` (the next offset to consume) for `mq` on its master (UPDATE_CONSUMER_OFFSET).
    pub async fn commit_offset(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        let addr = self.master_addr(mq).await?;
        let cmd = request(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            &[
                ("consumerGroup", self.inner.group.clone()),
                ("topic", mq.topic.clone()),
                ("queueId", mq.queue_id.to_string()),
                ("commitOffset", offset.to_string()),
                ("bname", mq.broker_name.clone()),
            ],
        );
        let (addr, answer) = self
            .invoke_or_fallback(mq, addr, cmd, self.inner.config.timeout)
            .await?;
        if answer.code != ResponseCode::SUCCESS.code() {
            return Err(response_error(&addr, &answer));
        }
        Ok(())
    }

    /// The queue's max offset (one past the last message) on its master, else on a slave.
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<i64> {
        self.offset_of(mq, RequestCode::GET_MAX_OFFSET).await
    }

    /// The queue's min offset on its master, else on a slave.
    pub async fn min_offset(&self, mq: &MessageQueue) -> Result<i64> {
        self.offset_of(mq, RequestCode::GET_MIN_OFFSET).await
    }
}

fn offset_request(code: RequestCode, mq: &MessageQueue) -> RemotingCommand {
    request(
        code,
        &[
            ("topic", mq.topic.clone()),
            ("queueId", mq.queue_id.to_string()),
            ("bname", mq.broker_name.clone()),
        ],
    )
}

pub(crate) async fn queue_offset(
    pool: &ConnectionPool,
    addr: &str,
    code: RequestCode,
    mq: &MessageQueue,
    timeout: Duration,
) -> Result<i64> {
    let answer = pool
        .invoke_ok(addr, offset_request(code, mq), timeout)
        .await?;
    header_field(addr, &answer, "offset")
}

pub(crate) async fn query_consumer_offset(
    pool: &ConnectionPool,
    addr: &str,
    group: &str,
    mq: &MessageQueue,
    timeout: Duration,
) -> Result<Option<i64>> {
    let cmd = request(
        RequestCode::QUERY_CONSUMER_OFFSET,
        &[
            ("consumerGroup", group.to_owned()),
            ("topic", mq.topic.clone()),
            ("queueId", mq.queue_id.to_string()),
            ("bname", mq.broker_name.clone()),
        ],
    );
    let answer = pool.invoke(addr, cmd, timeout).await?;
    if answer.code == ResponseCode::QUERY_NOT_FOUND.code() {
        return Ok(None);
    }
    if answer.code != ResponseCode::SUCCESS.code() {
        return Err(response_error(addr, &answer));
    }
    header_field(addr, &answer, "offset").map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::serve;
    use ferrum_protocol::route::{BrokerData, QueueData};

    fn route(master: &str, slave: &str) -> TopicRouteData {
        TopicRouteData {
            broker_datas: vec![BrokerData {
                cluster: "c".into(),
                broker_name: "a".into(),
                broker_addrs: [(0, master.to_owned()), (1, slave.to_owned())].into(),
                ..Default::default()
            }],
            queue_datas: vec![
                QueueData {
                    broker_name: "a".into(),
                    read_queue_nums: 2,
                    write_queue_nums: 2,
                    perm: 6,
                    topic_sys_flag: 0,
                },
                QueueData {
                    broker_name: "wo".into(),
                    read_queue_nums: 2,
                    write_queue_nums: 2,
                    perm: 2,
                    topic_sys_flag: 0,
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn queues_and_pull_addresses_follow_the_route() {
        let r = route("m:1", "s:1");
        let qs = readable_queues("T", &r);
        assert_eq!(qs.len(), 2);
        assert!(qs.iter().all(|q| q.broker_name == "a"));
        assert_eq!(pull_addr(&r, "a", 0).as_deref(), Some("m:1"));
        assert_eq!(pull_addr(&r, "a", 1).as_deref(), Some("s:1"));
        assert_eq!(pull_addr(&r, "a", 7).as_deref(), Some("m:1"));
        assert_eq!(pull_addr(&r, "zz", 0), None);
        assert_eq!(fallback_addr(&r, "a", "m:1").as_deref(), Some("s:1"));
        assert_eq!(fallback_addr(&r, "a", "s:1").as_deref(), Some("m:1"));
        assert_eq!(admin_addr(&r, "a").as_deref(), Some("m:1"));
        let mut slave_only = r.clone();
        slave_only.broker_datas[0].broker_addrs.remove(&MASTER_ID);
        assert_eq!(admin_addr(&slave_only, "a").as_deref(), Some("s:1"));
        assert_eq!(pull_addr(&slave_only, "a", 0).as_deref(), Some("s:1"));
        assert_eq!(fallback_addr(&slave_only, "a", "s:1"), None);
    }

    #[tokio::test]
    async fn a_dead_master_sends_pulls_and_commits_to_the_slave() {
        let slave = serve(|req| {
            if req.code == RequestCode::PULL_MESSAGE.code() {
                vec![pull_answer(req, 1, "slave")]
            } else {
                vec![req.success_to()]
            }
        })
        .await;
        // Nothing listens on the master's address any more.
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").to_string()
        };
        let body = ferrum_protocol::route::to_json(&route(&dead, &slave));
        let namesrv = serve(move |req| vec![req.success_to().with_body(body.clone())]).await;
        let consumer = PullConsumer::new([namesrv], "cg");
        let qs = consumer.queues("T").await.expect("queues");
        let pulled = consumer.pull(&qs[0], 2, 32).await.expect("pull");
        assert_eq!(&pulled.messages[0].body[..], b"slave-2");
        consumer.commit_offset(&qs[0], 3).await.expect("commit");
    }

    #[test]
    fn replicas_that_did_not_answer_are_passed_over_while_another_is_listed() {
        let r = route("m:1", "s:1");
        let master_down = |a: &str| a == "m:1";
        assert_eq!(
            pull_addr_avoiding(&r, "a", 0, master_down).as_deref(),
            Some("s:1")
        );
        assert_eq!(
            pull_addr_avoiding(&r, "a", 1, master_down).as_deref(),
            Some("s:1")
        );
        assert_eq!(
            admin_addr_avoiding(&r, "a", master_down).as_deref(),
            Some("s:1")
        );
        let slave_down = |a: &str| a == "s:1";
        assert_eq!(
            pull_addr_avoiding(&r, "a", 1, slave_down).as_deref(),
            Some("m:1")
        );
        // Every member down: the usual choice, so a replica that came back is found again.
        let all_down = |_: &str| true;
        assert_eq!(
            pull_addr_avoiding(&r, "a", 1, all_down).as_deref(),
            Some("s:1")
        );
        assert_eq!(
            admin_addr_avoiding(&r, "a", all_down).as_deref(),
            Some("m:1")
        );
        assert_eq!(pull_addr_avoiding(&r, "zz", 0, all_down), None);
    }

    #[tokio::test]
    async fn a_hung_master_costs_one_timeout_then_the_slave_serves_offsets_and_pulls() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // A stopped master: connections are accepted (the kernel does that), nothing answers,
        // and the NameServer still lists it.
        let asked = Arc::new(AtomicUsize::new(0));
        let hung = {
            let asked = asked.clone();
            serve(move |_| {
                asked.fetch_add(1, Ordering::SeqCst);
                Vec::new()
            })
            .await
        };
        let slave = serve(|req| {
            if req.code == RequestCode::PULL_MESSAGE.code() {
                // A caught-up consumer is sent back to the master, as a slave does.
                vec![pull_answer(req, 0, "slave")]
            } else {
                let mut answer = req.success_to();
                answer.ext_fields.insert("offset".into(), "7".into());
                vec![answer]
            }
        })
        .await;
        let body = ferrum_protocol::route::to_json(&route(&hung, &slave));
        let namesrv = serve(move |req| vec![req.success_to().with_body(body.clone())]).await;
        let consumer = PullConsumer::with_config(
            [namesrv],
            "cg",
            PullConfig {
                timeout: Duration::from_millis(300),
                ..PullConfig::default()
            },
        );
        let qs = consumer.queues("T").await.expect("queues");
        assert_eq!(consumer.min_offset(&qs[0]).await.expect("min"), 7);
        assert_eq!(consumer.max_offset(&qs[1]).await.expect("max"), 7);
        for offset in 0..3 {
            let pulled = consumer.pull(&qs[1], offset, 32).await.expect("pull");
            assert_eq!(
                pulled.messages[0].body,
                format!("slave-{offset}").as_bytes()
            );
        }
        consumer.commit_offset(&qs[1], 3).await.expect("commit");
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "only the first request went to the hung master"
        );
    }

    fn pull_answer(req: &RemotingCommand, suggest: i64, who: &str) -> RemotingCommand {
        let offset: i64 = req
            .ext_fields
            .get("queueOffset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        let record = MessageExt {
            topic: "T".into(),
            queue_offset: offset,
            body: bytes::Bytes::from(format!("{who}-{offset}")),
            ..Default::default()
        };
        let mut answer = req.success_to().with_body(record.encode().expect("encode"));
        for (k, v) in [
            ("suggestWhichBrokerId", suggest.to_string()),
            ("nextBeginOffset", (offset + 1).to_string()),
            ("minOffset", "0".to_owned()),
            ("maxOffset", "10".to_owned()),
        ] {
            answer.ext_fields.insert(k.into(), v);
        }
        answer
    }

    #[tokio::test]
    async fn pulls_decode_records_and_follow_the_suggested_broker() {
        let master = serve(|req| {
            if req.code == RequestCode::PULL_MESSAGE.code() {
                assert_eq!(req.ext_fields.get("sysFlag").map(String::as_str), Some("4"));
                vec![pull_answer(req, 1, "master")]
            } else if req.code == RequestCode::QUERY_CONSUMER_OFFSET.code() {
                vec![req.response_to(ResponseCode::QUERY_NOT_FOUND, Some("Not found".into()))]
            } else {
                vec![req.success_to()]
            }
        })
        .await;
        let slave = serve(|req| vec![pull_answer(req, 0, "slave")]).await;
        let body = ferrum_protocol::route::to_json(&route(&master, &slave));
        let namesrv = serve(move |req| vec![req.success_to().with_body(body.clone())]).await;
        let consumer = PullConsumer::new([namesrv], "cg");
        let qs = consumer.queues("T").await.expect("queues");
        let first = consumer.pull(&qs[0], 3, 32).await.expect("pull");
        assert_eq!(first.status, PullStatus::Found);
        assert_eq!(&first.messages[0].body[..], b"master-3");
        assert_eq!(first.next_begin_offset, 4);
        let second = consumer.pull(&qs[0], 4, 32).await.expect("pull");
        assert_eq!(&second.messages[0].body[..], b"slave-4");
        assert_eq!(
            consumer.committed_offset(&qs[0]).await.expect("query"),
            None
        );
        consumer.commit_offset(&qs[0], 5).await.expect("commit");
    }

    #[tokio::test]
    async fn compressed_bodies_come_out_as_the_producer_wrote_them() {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"a body a Java producer compressed")
            .expect("write");
        let packed = enc.finish().expect("finish");
        let broker = serve(move |req| {
            let mut answer = pull_answer(req, 0, "x");
            let record = MessageExt {
                topic: "T".into(),
                sys_flag: message::sys_flag::COMPRESSED,
                body: bytes::Bytes::from(packed.clone()),
                ..Default::default()
            };
            answer.body = record.encode().expect("encode");
            vec![answer]
        })
        .await;
        let body = ferrum_protocol::route::to_json(&route(&broker, &broker));
        let namesrv = serve(move |req| vec![req.success_to().with_body(body.clone())]).await;
        let consumer = PullConsumer::new([namesrv], "cg");
        let qs = consumer.queues("T").await.expect("queues");
        let pulled = consumer.pull(&qs[0], 0, 32).await.expect("pull");
        assert_eq!(
            &pulled.messages[0].body[..],
            b"a body a Java producer compressed"
        );
    }
}
