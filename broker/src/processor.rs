//! Request dispatch by code and the processors that need no message store: topics,
//! subscription groups, consumer offsets, client management, queue locks and runtime info.
//!
//! Each processor takes the request and answers a command; none of them touches the socket, so
//! they are tested by calling them directly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Instant;

use ferrum_protocol::header::HeaderError;
use ferrum_protocol::route::{
    KVTable, PERM_INHERIT, PERM_READ, PERM_WRITE, TopicConfig, from_json, to_json,
};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};
use serde::Serialize;

use crate::client_manager::{
    ClientManager, ClientMeta, HeartbeatData, LockBatchRequestBody, LockBatchResponseBody,
    RebalanceLockManager,
};
use crate::config::BrokerConfig;
use crate::headers::CreateTopicRequestHeader;
use crate::message_processor::PullWaiters;
use crate::persist::PersistError;
use crate::server::{Channel, Handler, Reply, WorkPermit};
use crate::subscription::{
    ConsumerOffsetManager, SubscriptionGroupConfig, SubscriptionGroupManager,
};
use crate::topic::{
    AUTO_CREATE_TOPIC_KEY_TOPIC, RETRY_GROUP_TOPIC_PREFIX, TopicConfigManager, now_millis,
    validate_topic_name,
};
use ferrum_protocol::headers::{
    DeleteSubscriptionGroupRequestHeader, DeleteTopicRequestHeader,
    GetConsumerListByGroupRequestHeader, GetTopicConfigRequestHeader,
    NotifyConsumerIdsChangedRequestHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, UnregisterClientRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use ferrum_store::MessageStore;

/// `MQVersion.Version.V5_3_3`, matching `ferrum_protocol::CURRENT_VERSION`.
pub const BROKER_VERSION_DESC: &str = "V5_3_3";

/// Counters GET_BROKER_RUNTIME_INFO reports.
#[derive(Debug, Default)]
pub struct BrokerStats {
    pub msg_put_total: AtomicU64,
    pub msg_get_total: AtomicU64,
}

/// Everything the processors share.
#[derive(Debug)]
pub struct BrokerCore {
    pub config: BrokerConfig,
    pub topics: TopicConfigManager,
    pub groups: SubscriptionGroupManager,
    pub offsets: ConsumerOffsetManager,
    pub clients: ClientManager,
    pub locks: RebalanceLockManager,
    pub stats: BrokerStats,
    pub store: MessageStore,
    pub pull_waiters: PullWaiters,
    /// Woken when a delayed message is stored, so the schedule service looks at once.
    pub schedule_wakeup: tokio::sync::Notify,
    /// The advertised `brokerIP1:port` after binding (the port may have been ephemeral).
    pub broker_addr: String,
    /// Prometheus metrics; other modules add theirs with `metrics.register`.
    pub metrics: crate::metrics::BrokerMetrics,
    /// The runtime role (it changes on promotion), epochs and replication progress.
    pub ha: crate::ha::HaState,
    /// Set once at start in Raft mode (`enableDLegerCommitLog=true`); sends then go through it.
    pub raft: std::sync::OnceLock<std::sync::Arc<crate::raft::broker::RaftBroker>>,
    boot_millis: i64,
    next_opaque: AtomicI32,
}

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error("{0}")]
    Header(#[from] HeaderError),
    #[error("{0}")]
    Persist(#[from] PersistError),
}

fn system_error(request: &RemotingCommand, error: impl std::fmt::Display) -> RemotingCommand {
    request.error_to(ResponseCode::SYSTEM_ERROR, error.to_string())
}

fn json_body<T: Serialize>(request: &RemotingCommand, body: &T) -> RemotingCommand {
    request.success_to().with_body(to_json(body))
}

impl BrokerCore {
    pub fn load(
        config: BrokerConfig,
        broker_addr: String,
        store: MessageStore,
    ) -> Result<Self, PersistError> {
        let metrics = crate::metrics::BrokerMetrics::new();
        store.set_flush_observer(metrics.flush_observer());
        Ok(BrokerCore {
            metrics,
            ha: crate::ha::HaState::load(&config)?,
            raft: std::sync::OnceLock::new(),
            store,
            pull_waiters: PullWaiters::default(),
            schedule_wakeup: tokio::sync::Notify::new(),
            topics: TopicConfigManager::load(&config)?,
            groups: SubscriptionGroupManager::load(&config)?,
            offsets: ConsumerOffsetManager::load(&config)?,
            clients: ClientManager::default(),
            locks: RebalanceLockManager::default(),
            stats: BrokerStats::default(),
            broker_addr,
            boot_millis: now_millis(),
            next_opaque: AtomicI32::new(1),
            config,
        })
    }

    /// Runs the processor for `request.code`.
    pub async fn process(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
        permit: WorkPermit,
    ) -> Reply {
        let result = match RequestCode::from_code(request.code) {
            Some(
                RequestCode::SEND_MESSAGE
                | RequestCode::SEND_MESSAGE_V2
                | RequestCode::SEND_BATCH_MESSAGE,
            ) => return self.send_message(channel, request).await,
            Some(RequestCode::END_TRANSACTION) => return self.end_transaction(request).await,
            Some(RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE) => {
                return self.pull_message(request, permit).await;
            }
            Some(RequestCode::CONSUMER_SEND_MSG_BACK) => {
                return self.consumer_send_msg_back(channel, request).await;
            }
            Some(RequestCode::GET_MAX_OFFSET) => return self.get_max_offset(request),
            Some(RequestCode::GET_MIN_OFFSET) => return self.get_min_offset(request),
            Some(RequestCode::SEARCH_OFFSET_BY_TIMESTAMP) => return self.search_offset(request),
            Some(RequestCode::GET_EARLIEST_MSG_STORETIME) => {
                return self.earliest_msg_store_time(request);
            }
            Some(RequestCode::QUERY_MESSAGE) => return self.query_message(request),
            Some(RequestCode::VIEW_MESSAGE_BY_ID) => return self.view_message_by_id(request),
            Some(RequestCode::UPDATE_AND_CREATE_TOPIC) => self.update_and_create_topic(request),
            Some(RequestCode::DELETE_TOPIC_IN_BROKER) => self.delete_topic(request),
            Some(RequestCode::GET_ALL_TOPIC_CONFIG) => {
                Ok(json_body(request, &self.topics.snapshot()))
            }
            Some(RequestCode::QUERY_CONSUMER_OFFSET) => self.query_consumer_offset(request),
            Some(RequestCode::UPDATE_CONSUMER_OFFSET) => self.update_consumer_offset(request),
            Some(RequestCode::HEART_BEAT) => self.heart_beat(channel, request),
            Some(RequestCode::UNREGISTER_CLIENT) => self.unregister_client(channel, request),
            Some(RequestCode::GET_CONSUMER_LIST_BY_GROUP) => self.consumer_list(request),
            Some(RequestCode::LOCK_BATCH_MQ) => Ok(self.lock_batch(request)),
            Some(RequestCode::UNLOCK_BATCH_MQ) => Ok(self.unlock_batch(request)),
            Some(RequestCode::GET_TOPIC_CONFIG) => self.topic_config(request),
            Some(RequestCode::GET_TOPIC_STATS_INFO) => Ok(self.topic_stats(request)),
            Some(RequestCode::GET_CONSUMER_CONNECTION_LIST) => {
                Ok(self.consumer_connections(request))
            }
            Some(RequestCode::GET_CONSUME_STATS) => Ok(self.consume_stats(request)),
            Some(RequestCode::QUERY_TOPIC_CONSUME_BY_WHO) => Ok(self.consumed_by_who(request)),
            Some(RequestCode::GET_ALL_CONSUMER_OFFSET) => Ok(self.all_consumer_offsets(request)),
            Some(RequestCode::GET_ALL_DELAY_OFFSET) => Ok(self.all_delay_offsets(request)),
            Some(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP) => {
                self.update_subscription_group(request)
            }
            Some(RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG) => {
                Ok(json_body(request, &self.groups.snapshot()))
            }
            Some(RequestCode::DELETE_SUBSCRIPTIONGROUP) => self.delete_subscription_group(request),
            Some(RequestCode::GET_BROKER_RUNTIME_INFO) => {
                Ok(json_body(request, &self.runtime_info()))
            }
            Some(RequestCode::FERRUM_GET_BROKER_REPLICA_STATUS) => {
                Ok(crate::ha::remote::handle_status(self, request))
            }
            Some(RequestCode::FERRUM_PROMOTE_BROKER) => {
                Ok(crate::ha::remote::handle_promote(self, request).await)
            }
            Some(RequestCode::FERRUM_RAFT_TRANSFER_LEADER) => {
                Ok(crate::raft::transfer::handle_transfer(self, request).await)
            }
            Some(RequestCode::FERRUM_GET_RAFT_STATUS) => Ok(match self.raft.get() {
                Some(raft) => json_body(request, &raft.status()),
                None => request.error_to(
                    ResponseCode::SERVICE_NOT_AVAILABLE,
                    format!(
                        "the broker[{}] does not run in Raft mode (enableDLegerCommitLog=false)",
                        self.broker_addr
                    ),
                ),
            }),
            _ => Ok(request.error_to(
                ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {} not supported", request.code),
            )),
        };
        Reply::Command(result.unwrap_or_else(|error| system_error(request, error)))
    }

    fn update_and_create_topic(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, ProcessError> {
        let header: CreateTopicRequestHeader = request.decode_header()?;
        if let Err(remark) = validate_topic_name(&header.topic) {
            return Ok(system_error(request, remark));
        }
        if header.topic == AUTO_CREATE_TOPIC_KEY_TOPIC {
            return Ok(system_error(
                request,
                "The specified topic is conflict with AUTO_CREATE_TOPIC_KEY_TOPIC.",
            ));
        }
        for (name, value) in [
            ("readQueueNums", header.read_queue_nums),
            ("writeQueueNums", header.write_queue_nums),
        ] {
            if !(1..=1024).contains(&value) {
                return Ok(request.error_to(
                    ResponseCode::INVALID_PARAMETER,
                    format!("{name} {value} is out of range 1..1024"),
                ));
            }
        }
        if !(0..=(PERM_INHERIT | PERM_READ | PERM_WRITE | 0x8)).contains(&header.perm) {
            return Ok(request.error_to(
                ResponseCode::INVALID_PARAMETER,
                format!("perm {} is not a valid permission", header.perm),
            ));
        }
        let mut topic = TopicConfig::new(header.topic.clone(), header.write_queue_nums);
        topic.read_queue_nums = header.read_queue_nums;
        topic.perm = header.perm;
        if let Some(filter) = header.topic_filter_type {
            topic.topic_filter_type = filter;
        }
        topic.topic_sys_flag = header.topic_sys_flag.unwrap_or(0);
        topic.order = header.order.unwrap_or(false);
        // RocketMQ answers a malformed or refused modification with SYSTEM_ERROR and the
        // exception's text; MIXED is refused up front (enableMixedMessageType is off there by
        // default and this broker has no mixed-type support).
        let modification = match crate::topic::parse_attribute_modification(
            header.attributes.as_deref().unwrap_or(""),
        ) {
            Ok(m) => m,
            Err(remark) => return Ok(system_error(request, remark)),
        };
        let type_key = format!("+{}", crate::topic::MESSAGE_TYPE_ATTRIBUTE);
        if modification.get(&type_key).map(String::as_str) == Some("MIXED") {
            return Ok(request.error_to(
                ResponseCode::INVALID_PARAMETER,
                "MIXED message type is not supported.",
            ));
        }
        if let Err(remark) = self.topics.update_with_attributes(topic, &modification)? {
            return Ok(system_error(request, remark));
        }
        tracing::info!(topic = %header.topic, "topic created or updated");
        Ok(request.success_to())
    }

    /// GET_TOPIC_CONFIG 351: one topic as `TopicConfigAndQueueMapping` (the config's fields;
    /// static-topic mapping is never set here).
    fn topic_config(&self, request: &RemotingCommand) -> Result<RemotingCommand, ProcessError> {
        let header: GetTopicConfigRequestHeader = request.decode_header()?;
        match self.topics.get(&header.topic) {
            Some(topic) => Ok(json_body(request, &topic)),
            None => Ok(request.error_to(
                ResponseCode::TOPIC_NOT_EXIST,
                format!("No topic in this broker. topic: {}", header.topic),
            )),
        }
    }

    /// DELETE_TOPIC_IN_BROKER 215: the config, the consumer offsets and the consume queues go
    /// (RocketMQ's `deleteTopicInBroker`); the CommitLog bytes stay until retention.
    fn delete_topic(&self, request: &RemotingCommand) -> Result<RemotingCommand, ProcessError> {
        let header: DeleteTopicRequestHeader = request.decode_header()?;
        if header.topic.trim().is_empty() {
            return Ok(request.error_to(
                ResponseCode::INVALID_PARAMETER,
                "The specified topic is blank.",
            ));
        }
        // The name becomes a directory name in the store; refuse anything a topic cannot be.
        if let Err(remark) = validate_topic_name(&header.topic) {
            return Ok(request.error_to(ResponseCode::INVALID_PARAMETER, remark));
        }
        self.topics.delete(&header.topic)?;
        self.offsets.remove_topic(&header.topic);
        // Written now rather than at the next periodic flush: offsets of a deleted topic read
        // back after a crash would skip a re-created topic's first messages.
        self.offsets.persist()?;
        if let Err(e) = self.store.delete_topic(&header.topic) {
            tracing::error!(topic = %header.topic, error = %e, "deleting the topic's consume queues failed");
            return Ok(system_error(request, e.to_string()));
        }
        tracing::info!(topic = %header.topic, "topic deleted");
        Ok(request.success_to())
    }

    fn query_consumer_offset(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, ProcessError> {
        let header: QueryConsumerOffsetRequestHeader = request.decode_header()?;
        match self
            .offsets
            .query(&header.consumer_group, &header.topic, header.queue_id)
        {
            Some(offset) => Ok(request
                .success_to()
                .with_header(&QueryConsumerOffsetResponseHeader { offset })),
            None if header.set_zero_if_not_found != Some(false)
                && self.offset_zero_if_fresh(&header.topic, header.queue_id) =>
            {
                Ok(request
                    .success_to()
                    .with_header(&QueryConsumerOffsetResponseHeader { offset: 0 }))
            }
            None => Ok(request.error_to(
                ResponseCode::QUERY_NOT_FOUND,
                "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
            )),
        }
    }

    fn update_consumer_offset(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, ProcessError> {
        let header: UpdateConsumerOffsetRequestHeader = request.decode_header()?;
        if self.topics.get(&header.topic).is_none() {
            return Ok(request.error_to(
                ResponseCode::TOPIC_NOT_EXIST,
                format!("Topic {} not exist!", header.topic),
            ));
        }
        self.offsets.commit(
            &header.consumer_group,
            &header.topic,
            header.queue_id,
            header.commit_offset,
        );
        Ok(request.success_to())
    }

    fn heart_beat(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, ProcessError> {
        let data: HeartbeatData = match from_json(&request.body, "HeartbeatData") {
            Ok(data) => data,
            Err(error) => return Ok(system_error(request, error)),
        };
        let now = Instant::now();
        let language = request.language.map_or("OTHER", |l| l.name());
        let meta = ClientMeta {
            client_id: &data.client_id,
            language,
            version: request.version,
        };
        for consumer in &data.consumer_data_set {
            if let Some(group) = self.groups.find_or_create(&consumer.group_name)? {
                let retry = format!("{RETRY_GROUP_TOPIC_PREFIX}{}", consumer.group_name);
                self.topics.create_if_absent(
                    &retry,
                    group.retry_queue_nums.max(1),
                    PERM_READ | PERM_WRITE,
                )?;
                let changed = self.clients.register_consumer(consumer, meta, channel, now);
                if changed && group.notify_consumer_ids_changed_enable {
                    self.notify_consumer_ids_changed(&consumer.group_name);
                }
            }
        }
        for producer in &data.producer_data_set {
            self.clients
                .register_producer(&producer.group_name, meta, channel, now);
        }
        Ok(request.success_to())
    }

    fn unregister_client(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, ProcessError> {
        let header: UnregisterClientRequestHeader = request.decode_header()?;
        if let Some(group) = header.producer_group.filter(|g| !g.is_empty()) {
            self.clients.unregister_producer(&group, channel.id);
        }
        let left = header
            .consumer_group
            .filter(|g| !g.is_empty() && self.clients.unregister_consumer(g, channel.id));
        if let Some(group) = left {
            self.notify_consumer_ids_changed(&group);
        }
        Ok(request.success_to())
    }

    fn consumer_list(&self, request: &RemotingCommand) -> Result<RemotingCommand, ProcessError> {
        let header: GetConsumerListByGroupRequestHeader = request.decode_header()?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct GetConsumerListByGroupResponseBody {
            consumer_id_list: Vec<String>,
        }
        match self.clients.consumer_ids(&header.consumer_group) {
            Some(ids) if !ids.is_empty() => Ok(json_body(
                request,
                &GetConsumerListByGroupResponseBody {
                    consumer_id_list: ids,
                },
            )),
            _ => Ok(system_error(
                request,
                format!("no consumer for this group, {}", header.consumer_group),
            )),
        }
    }

    fn lock_batch(&self, request: &RemotingCommand) -> RemotingCommand {
        let body: LockBatchRequestBody = match from_json(&request.body, "LockBatchRequestBody") {
            Ok(body) => body,
            Err(error) => return system_error(request, error),
        };
        let locked = self.locks.try_lock_batch(
            &body.consumer_group,
            &body.mq_set,
            &body.client_id,
            Instant::now(),
        );
        json_body(
            request,
            &LockBatchResponseBody {
                lock_ok_mq_set: locked,
            },
        )
    }

    fn unlock_batch(&self, request: &RemotingCommand) -> RemotingCommand {
        let body: LockBatchRequestBody = match from_json(&request.body, "UnlockBatchRequestBody") {
            Ok(body) => body,
            Err(error) => return system_error(request, error),
        };
        self.locks
            .unlock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
        request.success_to()
    }

    fn update_subscription_group(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, ProcessError> {
        let config: SubscriptionGroupConfig =
            match from_json(&request.body, "SubscriptionGroupConfig") {
                Ok(config) => config,
                Err(error) => return Ok(system_error(request, error)),
            };
        if config.group_name.is_empty() {
            return Ok(request.error_to(
                ResponseCode::INVALID_PARAMETER,
                "the subscription group config has an empty groupName",
            ));
        }
        tracing::info!(group = %config.group_name, "subscription group created or updated");
        self.groups.put(config)?;
        Ok(request.success_to())
    }

    fn delete_subscription_group(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, ProcessError> {
        let header: DeleteSubscriptionGroupRequestHeader = request.decode_header()?;
        self.groups.delete(&header.group_name)?;
        if header.clean_offset.unwrap_or(false) {
            self.offsets.remove_group(&header.group_name);
        }
        Ok(request.success_to())
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every consumer of `group`, so they
    /// rebalance at once instead of at their next 20 s tick.
    pub fn notify_consumer_ids_changed(&self, group: &str) {
        let header = NotifyConsumerIdsChangedRequestHeader {
            consumer_group: group.to_owned(),
        };
        for channel in self.clients.consumer_channels(group) {
            let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
            let notify =
                RemotingCommand::request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED, &header)
                    .with_opaque(opaque);
            if !channel.send_oneway(notify) {
                tracing::debug!(group, remote = %channel.remote, "consumer notification dropped");
            }
        }
    }

    /// Forgets a connection's clients and tells the groups that lost a member.
    pub fn channel_gone(&self, channel_id: u64) {
        for group in self.clients.channel_gone(channel_id) {
            self.notify_consumer_ids_changed(&group);
        }
    }

    /// The KV table the admin tool's `clusterList` and `brokerStatus` read.
    pub fn runtime_info(&self) -> KVTable {
        let put = self.stats.msg_put_total.load(Ordering::Relaxed).to_string();
        let get = self.stats.msg_get_total.load(Ordering::Relaxed).to_string();
        let uptime_secs = (now_millis() - self.boot_millis).max(0) / 1000;
        let mut table = BTreeMap::new();
        let mut put_kv = |k: &str, v: String| {
            table.insert(k.to_owned(), v);
        };
        put_kv("brokerVersionDesc", BROKER_VERSION_DESC.to_owned());
        put_kv(
            "brokerVersion",
            ferrum_protocol::CURRENT_VERSION.to_string(),
        );
        let role = self.ha.role();
        put_kv("brokerId", role.broker_id.to_string());
        put_kv("brokerRole", role.role.to_string());
        put_kv("brokerActive", "true".to_owned());
        put_kv("bootTimestamp", self.boot_millis.to_string());
        put_kv(
            "runtime",
            format!(
                "[ {} days, {} hours, {} minutes, {} seconds ]",
                uptime_secs / 86_400,
                uptime_secs / 3_600 % 24,
                uptime_secs / 60 % 60,
                uptime_secs % 60
            ),
        );
        // Daily snapshots are not kept yet: every mark reads as the running total, so the
        // "today" and "yesterday" differences clusterList prints are 0, never negative.
        for key in [
            "msgPutTotalYesterdayMorning",
            "msgPutTotalTodayMorning",
            "msgPutTotalTodayNow",
        ] {
            put_kv(key, put.clone());
        }
        for key in [
            "msgGetTotalYesterdayMorning",
            "msgGetTotalTodayMorning",
            "msgGetTotalTodayNow",
        ] {
            put_kv(key, get.clone());
        }
        put_kv("putTps", "0.00 0.00 0.00".to_owned());
        put_kv("getTransferedTps", "0.00 0.00 0.00".to_owned());
        put_kv("getTransferredTps", "0.00 0.00 0.00".to_owned());
        for key in [
            "sendThreadPoolQueueSize",
            "pullThreadPoolQueueSize",
            "sendThreadPoolQueueHeadWaitTimeMills",
            "pullThreadPoolQueueHeadWaitTimeMills",
            "pageCacheLockTimeMills",
            "dispatchBehindBytes",
        ] {
            put_kv(key, "0".to_owned());
        }
        put_kv(
            "sendThreadPoolQueueCapacity",
            self.config.server_request_queue_capacity.to_string(),
        );
        put_kv("topicNums", self.topics.len().to_string());
        if let Some(earliest) = self.store.get_earliest_message_time() {
            put_kv("earliestMessageTimeStamp", earliest.to_string());
        }
        put_kv(
            "commitLogMinOffset",
            self.store.min_phy_offset().to_string(),
        );
        put_kv(
            "commitLogMaxOffset",
            self.store.max_phy_offset().to_string(),
        );
        KVTable { table }
    }
}

impl Handler for BrokerCore {
    async fn handle(
        &self,
        channel: &Channel,
        request: RemotingCommand,
        permit: WorkPermit,
    ) -> Reply {
        let started = Instant::now();
        let reply = self.process(channel, &request, permit).await;
        let response_code = match &reply {
            Reply::Command(c) | Reply::HeaderAndBody(c, _) => c.code,
            Reply::None => ResponseCode::SUCCESS.code(),
        };
        self.metrics.observe_request(
            request.code,
            response_code,
            started.elapsed(),
            self.raft.get().is_some(),
        );
        reply
    }

    fn connection_opened(&self, _channel: &Channel) {
        self.metrics.connections.inc();
        self.metrics.connections_opened.inc();
    }

    fn busy_refused(&self) {
        self.metrics.server_busy();
    }

    fn connection_closed(&self, channel: &Channel) {
        self.metrics.connections.dec();
        self.channel_gone(channel.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_protocol::SerializeType;
    use ferrum_store::MessageStoreConfig;

    /// A small deterministic generator, so a failure replays exactly.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    const FIELDS: &[&str] = &[
        "topic",
        "queueId",
        "consumerGroup",
        "commitOffset",
        "queueOffset",
        "maxMsgNums",
        "sysFlag",
        "suspendTimeoutMillis",
        "subVersion",
        "offset",
        "group",
        "delayLevel",
        "readQueueNums",
        "writeQueueNums",
        "perm",
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
        "h",
        "i",
        "j",
        "l",
        "reconsumeTimes",
        "maxReconsumeTimes",
        "originMsgId",
        "producerGroup",
        "defaultTopic",
        "defaultTopicQueueNums",
        "bornTimestamp",
        "flag",
        "key",
        "maxNum",
        "beginTimestamp",
        "endTimestamp",
        "timestamp",
        "clientID",
        "groupName",
        "expressionType",
        "subscription",
        "batch",
        "maxMsgBytes",
    ];
    const VALUES: &[&str] = &[
        "",
        "0",
        "1",
        "-1",
        "3",
        "2147483647",
        "-2147483648",
        "9223372036854775807",
        "x",
        "TBW102",
        "%RETRY%g",
        "T",
        "true",
        "DELAY\u{1}3\u{2}",
        "a || b",
        "SQL92",
        "1e9",
        "\u{0}",
        "%DLQ%g",
        "999999999999999999999",
    ];

    #[tokio::test]
    async fn garbage_requests_get_answers_not_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig {
            store_path_root_dir: dir.path().to_owned(),
            mapped_file_size_commit_log: 1 << 20,
            ..BrokerConfig::default()
        };
        let store = MessageStore::open(MessageStoreConfig {
            mapped_file_size_commit_log: 1 << 20,
            ..MessageStoreConfig::new(dir.path())
        })
        .expect("store");
        let core = BrokerCore::load(config, "127.0.0.1:10911".into(), store.clone()).expect("core");
        let channel = Channel::detached(1);
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut codes: Vec<i32> = RequestCode::ALL.iter().map(|c| c.code()).collect();
        codes.extend([-1, 0, 9999, i32::MAX]);
        for round in 0..4000 {
            let code = codes[(rng.next() % codes.len() as u64) as usize];
            let mut request = RemotingCommand::bare_request(code).with_opaque(round);
            if rng.next().is_multiple_of(2) {
                request = request.with_serialize_type(SerializeType::RocketMq);
            }
            for _ in 0..(rng.next() % 12) {
                let field = rng.pick(FIELDS);
                let value = rng.pick(VALUES);
                request
                    .ext_fields
                    .insert(field.to_owned(), value.to_owned());
            }
            // Suspended pulls would wait; garbage tests the answers, not the holds.
            request.ext_fields.remove("suspendTimeoutMillis");
            let body_len = (rng.next() % 64) as usize;
            let body: Vec<u8> = (0..body_len).map(|_| rng.next() as u8).collect();
            request.body = body.into();
            let reply = core
                .process(&channel, &request, WorkPermit::unlimited())
                .await;
            match reply {
                Reply::Command(answer) | Reply::HeaderAndBody(answer, _) => {
                    assert_eq!(answer.opaque, round);
                    assert_eq!(answer.serialize_type, request.serialize_type);
                    if answer.code != 0 {
                        assert!(
                            answer.remark.as_deref().is_some_and(|r| !r.is_empty())
                                || answer.code == ResponseCode::PULL_NOT_FOUND.code()
                                || answer.code == ResponseCode::PULL_OFFSET_MOVED.code()
                                || answer.code == ResponseCode::PULL_RETRY_IMMEDIATELY.code(),
                            "code {code} answered {} without a remark",
                            answer.code
                        );
                    }
                }
                Reply::None => panic!("code {code} gave no answer"),
            }
        }
        store.shutdown().expect("shutdown");
    }
}
