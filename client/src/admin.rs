//! `Admin`: topic and offset administration over the wire, as RocketMQ's `mqadmin` does it.

use std::collections::BTreeMap;
use std::time::Duration;

use ferrum_protocol::message::{self, MessageExt};
use ferrum_protocol::replica::BrokerReplicaStatus;
use ferrum_protocol::route::{
    ClusterInfo, KVTable, TopicConfig, TopicConfigSerializeWrapper, TopicRouteData,
};
use ferrum_protocol::{RequestCode, ResponseCode};
use serde::Serialize;

use crate::connection::{ConnectOptions, ConnectionPool, DEFAULT_REQUEST_TIMEOUT, response_error};
use crate::consumer::{query_consumer_offset, queue_offset, readable_queues};
use crate::error::{ClientError, Result};
use crate::message::MessageQueue;
use crate::namesrv::{NameServerClient, decode_body, request};
pub use ferrum_protocol::replica::{RaftPeerStatus, RaftStatus, RaftTransferResult};

/// Min and max offset of one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    pub queue: String,
    pub broker_name: String,
    pub queue_id: i32,
    pub min_offset: i64,
    pub max_offset: i64,
}

/// A consumer group's progress on one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueProgress {
    pub broker_name: String,
    pub queue_id: i32,
    pub broker_offset: i64,
    /// `None` when the group has never committed an offset for the queue.
    pub consumer_offset: Option<i64>,
    pub lag: i64,
}

/// How far behind a consumer is: messages from its committed offset (or the queue's start when
/// it has none) to the queue's end.
pub fn lag(min_offset: i64, max_offset: i64, consumer_offset: Option<i64>) -> i64 {
    let from = consumer_offset.unwrap_or(min_offset).max(min_offset);
    (max_offset - from).max(0)
}

/// An admin client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admin {
    namesrv: NameServerClient,
    pool: ConnectionPool,
    timeout: Duration,
}

impl Admin {
    pub fn new<S: AsRef<str>>(namesrv_addrs: impl IntoIterator<Item = S>) -> Self {
        Self::with_options(namesrv_addrs, ConnectOptions::default())
    }

    /// Like [`new`](Self::new) with the given connection options (e.g. ROCKETMQ headers).
    pub fn with_options<S: AsRef<str>>(
        namesrv_addrs: impl IntoIterator<Item = S>,
        options: ConnectOptions,
    ) -> Self {
        let pool = ConnectionPool::new(options);
        Admin {
            namesrv: NameServerClient::with_pool(namesrv_addrs, pool.clone()),
            pool,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn namesrv(&self) -> &NameServerClient {
        &self.namesrv
    }

    /// UPDATE_AND_CREATE_TOPIC on one broker.
    pub async fn create_topic(&self, broker_addr: &str, config: &TopicConfig) -> Result<()> {
        let cmd = request(
            RequestCode::UPDATE_AND_CREATE_TOPIC,
            &[
                ("topic", config.topic_name.clone()),
                (
                    "defaultTopic",
                    crate::producer::AUTO_CREATE_TOPIC.to_owned(),
                ),
                ("readQueueNums", config.read_queue_nums.to_string()),
                ("writeQueueNums", config.write_queue_nums.to_string()),
                ("perm", config.perm.to_string()),
                ("topicFilterType", config.topic_filter_type.clone()),
                ("topicSysFlag", config.topic_sys_flag.to_string()),
                ("order", config.order.to_string()),
            ],
        );
        self.pool.invoke_ok(broker_addr, cmd, self.timeout).await?;
        Ok(())
    }

    /// UPDATE_AND_CREATE_TOPIC on one broker, carrying `config.attributes` in RocketMQ 5's
    /// modification form (`+key=value,...`); without attributes it is [`create_topic`](Self::create_topic).
    pub async fn create_topic_with_attributes(
        &self,
        broker_addr: &str,
        config: &TopicConfig,
    ) -> Result<()> {
        if config.attributes.is_empty() {
            return self.create_topic(broker_addr, config).await;
        }
        let attributes = config
            .attributes
            .iter()
            .map(|(k, v)| format!("+{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let cmd = request(
            RequestCode::UPDATE_AND_CREATE_TOPIC,
            &[
                ("topic", config.topic_name.clone()),
                (
                    "defaultTopic",
                    crate::producer::AUTO_CREATE_TOPIC.to_owned(),
                ),
                ("readQueueNums", config.read_queue_nums.to_string()),
                ("writeQueueNums", config.write_queue_nums.to_string()),
                ("perm", config.perm.to_string()),
                ("topicFilterType", config.topic_filter_type.clone()),
                ("topicSysFlag", config.topic_sys_flag.to_string()),
                ("order", config.order.to_string()),
                ("attributes", attributes),
            ],
        );
        self.pool.invoke_ok(broker_addr, cmd, self.timeout).await?;
        Ok(())
    }

    /// DELETE_TOPIC_IN_BROKER on one broker.
    pub async fn delete_topic_in_broker(&self, broker_addr: &str, topic: &str) -> Result<()> {
        let cmd = request(
            RequestCode::DELETE_TOPIC_IN_BROKER,
            &[("topic", topic.to_owned())],
        );
        self.pool.invoke_ok(broker_addr, cmd, self.timeout).await?;
        Ok(())
    }

    /// The master addresses of a cluster's broker groups (every cluster when `None`).
    pub async fn master_addrs(&self, cluster: Option<&str>) -> Result<Vec<String>> {
        let info = self.namesrv.cluster_info().await?;
        masters_of(&info, cluster)
    }

    /// Creates (or updates) a topic on every master of `cluster`; returns the brokers used.
    pub async fn create_topic_in_cluster(
        &self,
        cluster: &str,
        config: &TopicConfig,
    ) -> Result<Vec<String>> {
        let masters = self.master_addrs(Some(cluster)).await?;
        for addr in &masters {
            self.create_topic(addr, config).await?;
        }
        Ok(masters)
    }

    /// Deletes a topic: DELETE_TOPIC_IN_BROKER on each master holding it (of `cluster` when
    /// given), then DELETE_TOPIC_IN_NAMESRV on every NameServer.
    pub async fn delete_topic(&self, topic: &str, cluster: Option<&str>) -> Result<()> {
        let info = self.namesrv.cluster_info().await?;
        let masters = masters_of(&info, cluster)?;
        for addr in &masters {
            let cmd = request(
                RequestCode::DELETE_TOPIC_IN_BROKER,
                &[("topic", topic.to_owned())],
            );
            self.pool.invoke_ok(addr, cmd, self.timeout).await?;
        }
        self.namesrv.delete_topic(topic, cluster).await
    }

    /// Sends a header-less request to a broker and decodes its JSON answer body as `what`.
    async fn broker_body<T: serde::de::DeserializeOwned>(
        &self,
        broker_addr: &str,
        code: RequestCode,
        what: &'static str,
    ) -> Result<T> {
        let answer = self
            .pool
            .invoke_ok(broker_addr, request(code, &[]), self.timeout)
            .await?;
        decode_body(broker_addr, &answer.body, what)
    }

    /// GET_ALL_TOPIC_CONFIG from one broker.
    pub async fn topic_configs(&self, broker_addr: &str) -> Result<TopicConfigSerializeWrapper> {
        self.broker_body(
            broker_addr,
            RequestCode::GET_ALL_TOPIC_CONFIG,
            "TopicConfigSerializeWrapper",
        )
        .await
    }

    /// One topic's config on one broker, `None` when the broker does not hold it.
    pub async fn topic_config(
        &self,
        broker_addr: &str,
        topic: &str,
    ) -> Result<Option<TopicConfig>> {
        Ok(self
            .topic_configs(broker_addr)
            .await?
            .topic_config_table
            .remove(topic))
    }

    /// GET_MAX_OFFSET for one queue on a broker.
    pub async fn max_offset(&self, broker_addr: &str, mq: &MessageQueue) -> Result<i64> {
        queue_offset(
            &self.pool,
            broker_addr,
            RequestCode::GET_MAX_OFFSET,
            mq,
            self.timeout,
        )
        .await
    }

    /// GET_MIN_OFFSET for one queue on a broker.
    pub async fn min_offset(&self, broker_addr: &str, mq: &MessageQueue) -> Result<i64> {
        queue_offset(
            &self.pool,
            broker_addr,
            RequestCode::GET_MIN_OFFSET,
            mq,
            self.timeout,
        )
        .await
    }

    /// QUERY_CONSUMER_OFFSET; `None` when the group has no offset there.
    pub async fn consumer_offset(
        &self,
        broker_addr: &str,
        group: &str,
        mq: &MessageQueue,
    ) -> Result<Option<i64>> {
        query_consumer_offset(&self.pool, broker_addr, group, mq, self.timeout).await
    }

    /// GET_BROKER_RUNTIME_INFO: the broker's statistics table.
    pub async fn broker_runtime_info(&self, broker_addr: &str) -> Result<BTreeMap<String, String>> {
        let table: KVTable = self
            .broker_body(broker_addr, RequestCode::GET_BROKER_RUNTIME_INFO, "KVTable")
            .await?;
        Ok(table.table)
    }

    /// FERRUM_GET_BROKER_REPLICA_STATUS (a Ferrum extension): role, epoch, offsets and the lag
    /// of every slave of a master.
    pub async fn broker_replica_status(&self, broker_addr: &str) -> Result<BrokerReplicaStatus> {
        self.broker_body(
            broker_addr,
            RequestCode::FERRUM_GET_BROKER_REPLICA_STATUS,
            "BrokerReplicaStatus",
        )
        .await
    }

    /// FERRUM_GET_RAFT_STATUS (a Ferrum extension): term, leader, applied index and each
    /// peer's match index and lag of a broker running in Raft mode.
    pub async fn raft_status(&self, broker_addr: &str) -> Result<RaftStatus> {
        self.broker_body(
            broker_addr,
            RequestCode::FERRUM_GET_RAFT_STATUS,
            "RaftStatus",
        )
        .await
    }

    /// FERRUM_RAFT_TRANSFER_LEADER (a Ferrum extension): asks the Raft leader at `leader_addr`
    /// to hand its leadership to the replica whose dLegerSelfId is `target`, or to its most
    /// up-to-date follower. Answered once the target leads (the broker bounds a transfer at
    /// 10 s, so the timeout is at least 15 s); a broker that is not the leader refuses and
    /// names the leader. The answer's term and leader id tell the caller which registration to
    /// wait for on the NameServers.
    pub async fn transfer_leader(
        &self,
        leader_addr: &str,
        target: Option<&str>,
    ) -> Result<RaftTransferResult> {
        let fields: Vec<(&str, String)> = target
            .map(|t| vec![("targetId", t.to_owned())])
            .unwrap_or_default();
        let answer = self
            .pool
            .invoke_ok(
                leader_addr,
                request(RequestCode::FERRUM_RAFT_TRANSFER_LEADER, &fields),
                self.timeout.max(Duration::from_secs(15)),
            )
            .await?;
        decode_body(leader_addr, &answer.body, "RaftTransferResult")
    }

    /// FERRUM_PROMOTE_BROKER (a Ferrum extension): makes the slave at `broker_addr` its group's
    /// master in a new epoch, as ASYNC_MASTER or, with `sync_master`, SYNC_MASTER. The broker
    /// first asks the NameServers and any registered master whether a master is live, so the
    /// timeout is at least 10 s.
    pub async fn promote_broker(
        &self,
        broker_addr: &str,
        sync_master: bool,
    ) -> Result<BrokerReplicaStatus> {
        let role = if sync_master {
            "SYNC_MASTER"
        } else {
            "ASYNC_MASTER"
        };
        let answer = self
            .pool
            .invoke_ok(
                broker_addr,
                request(
                    RequestCode::FERRUM_PROMOTE_BROKER,
                    &[("brokerRole", role.to_owned())],
                ),
                self.timeout.max(Duration::from_secs(10)),
            )
            .await?;
        decode_body(broker_addr, &answer.body, "BrokerReplicaStatus")
    }

    async fn route_and_queues(&self, topic: &str) -> Result<(TopicRouteData, Vec<MessageQueue>)> {
        let route = self.namesrv.topic_route(topic).await?;
        let queues = readable_queues(topic, &route);
        Ok((route, queues))
    }

    /// Min / max offset of every readable queue of a topic.
    pub async fn topic_status(&self, topic: &str) -> Result<Vec<QueueStatus>> {
        let (route, queues) = self.route_and_queues(topic).await?;
        let mut out = Vec::with_capacity(queues.len());
        for mq in queues {
            let addr = master_of(&route, &mq.broker_name)?;
            out.push(QueueStatus {
                queue: mq.to_string(),
                broker_name: mq.broker_name.clone(),
                queue_id: mq.queue_id,
                min_offset: self.min_offset(&addr, &mq).await?,
                max_offset: self.max_offset(&addr, &mq).await?,
            });
        }
        Ok(out)
    }

    /// A consumer group's offset and lag on every queue of a topic.
    pub async fn group_progress(&self, group: &str, topic: &str) -> Result<Vec<QueueProgress>> {
        let (route, queues) = self.route_and_queues(topic).await?;
        let mut out = Vec::with_capacity(queues.len());
        for mq in queues {
            let addr = master_of(&route, &mq.broker_name)?;
            let min = self.min_offset(&addr, &mq).await?;
            let max = self.max_offset(&addr, &mq).await?;
            let consumer_offset = self.consumer_offset(&addr, group, &mq).await?;
            out.push(QueueProgress {
                broker_name: mq.broker_name.clone(),
                queue_id: mq.queue_id,
                broker_offset: max,
                consumer_offset,
                lag: lag(min, max, consumer_offset),
            });
        }
        Ok(out)
    }

    /// QUERY_MESSAGE by key on every broker of the topic (masters and replicas), de-duplicated.
    pub async fn query_by_key(&self, topic: &str, key: &str, max: i32) -> Result<Vec<MessageExt>> {
        let route = self.namesrv.topic_route(topic).await?;
        let mut found: BTreeMap<String, MessageExt> = BTreeMap::new();
        for broker in &route.broker_datas {
            let Some(addr) = broker
                .master_addr()
                .or_else(|| broker.broker_addrs.values().next().map(String::as_str))
            else {
                continue;
            };
            let cmd = request(
                RequestCode::QUERY_MESSAGE,
                &[
                    ("topic", topic.to_owned()),
                    ("key", key.to_owned()),
                    ("maxNum", max.to_string()),
                    ("beginTimestamp", "0".to_owned()),
                    ("endTimestamp", i64::MAX.to_string()),
                ],
            );
            let answer = self.pool.invoke(addr, cmd, self.timeout).await?;
            if answer.code == ResponseCode::QUERY_NOT_FOUND.code() {
                continue;
            }
            if answer.code != ResponseCode::SUCCESS.code() {
                return Err(response_error(addr, &answer));
            }
            let messages =
                message::decode_all(&answer.body, false).map_err(|e| ClientError::BadResponse {
                    addr: addr.to_owned(),
                    reason: format!("undecodable QUERY_MESSAGE body: {e}"),
                })?;
            for m in messages {
                // The index may hold hash collisions; keep only real matches.
                if m.keys().any(|k| k == key) {
                    found.insert(m.msg_id(), m);
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// VIEW_MESSAGE_BY_ID: the message with an offset message id, from the broker the id names.
    pub async fn view_message(&self, msg_id: &str) -> Result<MessageExt> {
        let (store_host, offset) = message::parse_message_id(msg_id)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let addr = store_host.to_string();
        let cmd = request(
            RequestCode::VIEW_MESSAGE_BY_ID,
            &[("offset", offset.to_string())],
        );
        let answer = self.pool.invoke_ok(&addr, cmd, self.timeout).await?;
        let (m, _) = MessageExt::decode(&answer.body).map_err(|e| ClientError::BadResponse {
            addr: addr.clone(),
            reason: format!("undecodable VIEW_MESSAGE_BY_ID body: {e}"),
        })?;
        Ok(m)
    }
}

fn masters_of(info: &ClusterInfo, cluster: Option<&str>) -> Result<Vec<String>> {
    let names: Vec<&String> = match cluster {
        Some(c) => info
            .cluster_addr_table
            .get(c)
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "cluster '{c}' is not registered on the NameServer"
                ))
            })?
            .iter()
            .collect(),
        None => info.broker_addr_table.keys().collect(),
    };
    Ok(names
        .into_iter()
        .filter_map(|n| info.broker_addr_table.get(n))
        .filter_map(|b| b.master_addr().map(str::to_owned))
        .collect())
}

fn master_of(route: &TopicRouteData, broker_name: &str) -> Result<String> {
    route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == broker_name)
        .and_then(|b| b.master_addr().map(str::to_owned))
        .ok_or_else(|| ClientError::BrokerNotFound(broker_name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_protocol::route::BrokerData;

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_start() {
        assert_eq!(lag(0, 100, Some(40)), 60);
        assert_eq!(lag(10, 100, None), 90);
        // An offset below the min (messages deleted) counts from the min.
        assert_eq!(lag(50, 100, Some(3)), 50);
        assert_eq!(lag(0, 100, Some(150)), 0);
    }

    #[test]
    fn masters_of_a_cluster() {
        let b = |name: &str, master: bool| BrokerData {
            cluster: "c1".into(),
            broker_name: name.into(),
            broker_addrs: if master {
                [(0, format!("{name}:1"))].into()
            } else {
                [(1, format!("{name}:2"))].into()
            },
            ..Default::default()
        };
        let info = ClusterInfo {
            broker_addr_table: [
                ("a".to_owned(), b("a", true)),
                ("b".to_owned(), b("b", false)),
                ("x".to_owned(), b("x", true)),
            ]
            .into(),
            cluster_addr_table: [("c1".to_owned(), ["a".to_owned(), "b".to_owned()].into())].into(),
        };
        assert_eq!(masters_of(&info, Some("c1")).expect("known"), vec!["a:1"]);
        assert_eq!(masters_of(&info, None).expect("all"), vec!["a:1", "x:1"]);
        assert!(masters_of(&info, Some("nope")).is_err());
    }
}
