//! Processors over the message store: SEND_MESSAGE 10 / SEND_MESSAGE_V2 310 /
//! SEND_BATCH_MESSAGE 320, PULL_MESSAGE 11 / LITE_PULL_MESSAGE 361 with long polling, the
//! queue offset queries (29, 30, 31, 32), QUERY_MESSAGE 12 and VIEW_MESSAGE_BY_ID 33.
//!
//! Pull answers carry the stored records as `Bytes` slices of the mapped CommitLog, written to
//! the socket after the header without being copied into one buffer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrum_protocol::headers::BoundaryType;
use ferrum_protocol::headers::ConsumerSendMsgBackRequestHeader;
use ferrum_protocol::headers::flags::pull_sys_flag;
use ferrum_protocol::headers::{
    GetEarliestMsgStoretimeRequestHeader, GetEarliestMsgStoretimeResponseHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryMessageRequestHeader, QueryMessageResponseHeader, SearchOffsetRequestHeader,
    SearchOffsetResponseHeader, SendMessageRequestHeader, SendMessageResponseHeader,
    ViewMessageRequestHeader,
};
use ferrum_protocol::message::{self, MessageView, property};
use ferrum_protocol::route::{PERM_READ, PERM_WRITE};
use ferrum_protocol::{RemotingCommand, ResponseCode};
use ferrum_store::{
    GetMessageStatus, MessageExtBrokerInner, MessageFilter, PutMessageResult, PutMessageStatus,
};
use tokio::sync::Notify;

use crate::processor::BrokerCore;
use crate::schedule::divert_if_delayed;
use crate::server::{Channel, Reply, WorkPermit};
use crate::topic::{AutoCreate, DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX, now_millis};

/// Most bytes one pull answer carries; the frame limit is 16 MiB.
const MAX_PULL_BYTES: usize = 4 * 1024 * 1024;
/// Longest a pull is held, below every client's 30 s request timeout.
const MAX_SUSPEND: Duration = Duration::from_secs(25);
/// Hold time when long polling is off (`shortPollingTimeMills`).
const SHORT_POLLING: Duration = Duration::from_secs(1);

/// Wakes held pulls of a queue when a message arrives there (`PullRequestHoldService`).
#[derive(Debug, Default)]
pub struct PullWaiters {
    queues: Mutex<HashMap<(String, i32), Arc<Notify>>>,
}

impl PullWaiters {
    fn get(&self, topic: &str, queue_id: i32) -> Arc<Notify> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry((topic.to_owned(), queue_id))
            .or_default()
            .clone()
    }

    pub fn wake(&self, topic: &str, queue_id: i32) {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = queues.get(&(topic.to_owned(), queue_id)) {
            notify.notify_waiters();
        }
    }
}

/// The answer code for a store put status, with RocketMQ's remark where it has one.
pub fn put_status_code(status: PutMessageStatus) -> (ResponseCode, Option<&'static str>) {
    match status {
        PutMessageStatus::PutOk => (ResponseCode::SUCCESS, None),
        PutMessageStatus::FlushDiskTimeout => (ResponseCode::FLUSH_DISK_TIMEOUT, None),
        PutMessageStatus::FlushSlaveTimeout => (ResponseCode::FLUSH_SLAVE_TIMEOUT, None),
        PutMessageStatus::SlaveNotAvailable => (ResponseCode::SLAVE_NOT_AVAILABLE, None),
        PutMessageStatus::CreateMappedFileFailed => (
            ResponseCode::SYSTEM_ERROR,
            Some("create mapped file failed, server is busy or broken."),
        ),
        PutMessageStatus::MessageIllegal | PutMessageStatus::PropertiesSizeExceeded => (
            ResponseCode::MESSAGE_ILLEGAL,
            Some("the message is illegal, maybe msg body or properties length not matched."),
        ),
        PutMessageStatus::ServiceNotAvailable => (
            ResponseCode::SERVICE_NOT_AVAILABLE,
            Some(
                "service not available now. It may be caused by one of the following reasons: the broker's disk is full, messages are put to the slave, permission denied",
            ),
        ),
        PutMessageStatus::OsPageCacheBusy => (
            ResponseCode::SYSTEM_BUSY,
            Some("[PC_SYNCHRONIZED]broker busy, start flow control for a while"),
        ),
        PutMessageStatus::UnknownError => (ResponseCode::SYSTEM_ERROR, Some("UNKNOWN_ERROR")),
    }
}

/// The pull answer code for a store status (`PullMessageProcessor`).
pub fn pull_status_code(status: GetMessageStatus, requested_offset: i64) -> ResponseCode {
    match status {
        GetMessageStatus::Found => ResponseCode::SUCCESS,
        GetMessageStatus::NoMatchedMessage | GetMessageStatus::MessageWasRemoving => {
            ResponseCode::PULL_RETRY_IMMEDIATELY
        }
        GetMessageStatus::NoMatchedLogicQueue | GetMessageStatus::NoMessageInQueue => {
            if requested_offset != 0 {
                ResponseCode::PULL_OFFSET_MOVED
            } else {
                ResponseCode::PULL_NOT_FOUND
            }
        }
        GetMessageStatus::OffsetFoundNull | GetMessageStatus::OffsetOverflowOne => {
            ResponseCode::PULL_NOT_FOUND
        }
        GetMessageStatus::OffsetOverflowBadly
        | GetMessageStatus::OffsetTooSmall
        | GetMessageStatus::OffsetReset => ResponseCode::PULL_OFFSET_MOVED,
    }
}

/// A TAG subscription expression as a store filter: `*` or empty is everything, otherwise the
/// `||`-separated tags by their Java hash codes.
pub fn tag_filter(expression: Option<&str>) -> MessageFilter {
    let expression = expression.map(str::trim).unwrap_or("");
    if expression.is_empty() || expression == "*" {
        return MessageFilter::All;
    }
    let codes: Vec<i64> = expression
        .split("||")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(message::tags_code)
        .collect();
    if codes.is_empty() {
        MessageFilter::All
    } else {
        MessageFilter::TagCodes(codes)
    }
}

fn header_error(request: &RemotingCommand, error: impl std::fmt::Display) -> Reply {
    Reply::Command(request.error_to(ResponseCode::SYSTEM_ERROR, error.to_string()))
}

impl BrokerCore {
    pub(crate) async fn send_message(&self, channel: &Channel, request: &RemotingCommand) -> Reply {
        let header = match SendMessageRequestHeader::decode_any(request) {
            Ok(header) => header,
            Err(error) => return header_error(request, error),
        };
        let fail =
            |code: ResponseCode, remark: String| Reply::Command(request.error_to(code, remark));
        if self.ha.is_slave() {
            let leader = self
                .raft
                .get()
                .map(|raft| match raft.leader_hint() {
                    Some(leader) => format!(" (Raft follower; the leader is {leader})"),
                    None => " (Raft follower; no leader elected yet)".to_owned(),
                })
                .unwrap_or_default();
            return fail(
                ResponseCode::SERVICE_NOT_AVAILABLE,
                format!(
                    "the broker[{}] is a slave: sending message is forbidden{leader}",
                    self.broker_addr
                ),
            );
        }
        if self.config.broker_permission & PERM_WRITE == 0 {
            return fail(
                ResponseCode::NO_PERMISSION,
                format!(
                    "the broker[{}] sending message is forbidden",
                    self.broker_addr
                ),
            );
        }
        if request.body.len() > self.config.max_message_size {
            return fail(
                ResponseCode::MESSAGE_ILLEGAL,
                format!(
                    "the message body size {} is over the max value {}",
                    request.body.len(),
                    self.config.max_message_size
                ),
            );
        }
        let created = if header.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            self.topics
                .create_if_absent(&header.topic, 1, PERM_READ | PERM_WRITE)
                .map(AutoCreate::Existing)
        } else {
            self.topics.create_from_default(
                &header.topic,
                &header.default_topic,
                header.default_topic_queue_nums,
            )
        };
        let topic = match created {
            Ok(AutoCreate::Existing(topic) | AutoCreate::Created(topic)) => topic,
            Ok(AutoCreate::Refused(remark)) => return fail(ResponseCode::TOPIC_NOT_EXIST, remark),
            Err(error) => return fail(ResponseCode::SYSTEM_ERROR, error.to_string()),
        };
        if topic.perm & PERM_WRITE == 0 {
            return fail(
                ResponseCode::NO_PERMISSION,
                format!("the topic[{}] sending message is forbidden", header.topic),
            );
        }
        let queue_nums = topic.write_queue_nums.max(topic.read_queue_nums);
        let queue_id = if header.queue_id < 0 {
            // RocketMQ picks a random queue; a rotating pick spreads as well.
            (self.stats.msg_put_total.load(Ordering::Relaxed) % queue_nums.max(1) as u64) as i32
        } else {
            header.queue_id
        };
        if queue_id >= queue_nums {
            return fail(
                ResponseCode::SYSTEM_ERROR,
                format!(
                    "request queueId[{queue_id}] is illegal, topic[{}] has {queue_nums} queues, producer: {}",
                    header.topic, channel.remote
                ),
            );
        }
        let template = MessageExtBrokerInner {
            topic: header.topic.clone(),
            queue_id,
            flag: header.flag,
            sys_flag: header.sys_flag,
            born_timestamp: header.born_timestamp,
            born_host: Some(channel.remote),
            reconsume_times: header.reconsume_times.unwrap_or(0),
            ..Default::default()
        };
        let messages = if header.is_batch(request.code) {
            match message::decode_batch(&request.body) {
                Ok(entries) if !entries.is_empty() => entries
                    .into_iter()
                    .map(|entry| MessageExtBrokerInner {
                        flag: entry.flag,
                        body: entry.body,
                        properties: entry.properties,
                        ..template.clone()
                    })
                    .collect(),
                Ok(_) => {
                    return fail(
                        ResponseCode::MESSAGE_ILLEGAL,
                        "the batch body is empty".into(),
                    );
                }
                Err(error) => {
                    return fail(
                        ResponseCode::MESSAGE_ILLEGAL,
                        format!("the batch body cannot be decoded: {error}"),
                    );
                }
            }
        } else {
            let properties = header
                .properties
                .as_deref()
                .map(message::string_to_properties)
                .unwrap_or_default();
            vec![MessageExtBrokerInner {
                body: request.body.clone(),
                properties,
                ..template
            }]
        };
        let mut messages: Vec<MessageExtBrokerInner> = messages;
        let transaction = message::sys_flag::transaction_value(header.sys_flag);
        let delayed = (transaction == message::sys_flag::TRANSACTION_NOT_TYPE
            || transaction == message::sys_flag::TRANSACTION_COMMIT_TYPE)
            && messages.len() == 1;
        if delayed {
            for msg in &mut messages {
                divert_if_delayed(msg);
            }
        }
        if messages.len() == 1 && crate::transaction::is_prepared(&messages[0].properties) {
            crate::transaction::divert_half(&mut messages[0]);
        }
        let stored_topic = messages[0].topic.clone();
        let count = messages.len() as u64;
        let mut result: PutMessageResult = self.put_through_log(messages).await;
        if result.status == PutMessageStatus::PutOk
            && let Some(append) = result.append.as_ref()
        {
            self.ha.appended.notify_waiters();
            result.status = self
                .ha
                .wait_for_replica(
                    append.wrote_offset + append.wrote_bytes as i64,
                    self.store.max_phy_offset(),
                    self.config.ha_max_gap_not_in_sync,
                    std::time::Duration::from_millis(self.config.sync_flush_timeout),
                )
                .await;
        }
        let (code, remark) = put_status_code(result.status);
        let Some(append) = result.append.filter(|_| result.status.is_written()) else {
            let remark = result
                .remark
                .or(remark.map(str::to_owned))
                .unwrap_or_else(|| format!("{:?}", result.status));
            return fail(code, remark);
        };
        self.stats.msg_put_total.fetch_add(count, Ordering::Relaxed);
        self.metrics
            .message_in(&header.topic, count, request.body.len() as u64);
        if stored_topic == header.topic {
            self.pull_waiters.wake(&header.topic, queue_id);
        } else {
            self.schedule_wakeup.notify_one();
        }
        let response = request
            .response_to(code, remark.map(str::to_owned))
            .with_header(&SendMessageResponseHeader {
                msg_id: append.msg_ids.join(","),
                queue_id,
                queue_offset: append.logics_offset,
                transaction_id: None,
                batch_uniq_id: None,
                recall_handle: None,
                msg_region: Some("DefaultRegion".to_owned()),
                trace_on: Some("true".to_owned()),
            });
        Reply::Command(response)
    }

    pub(crate) async fn pull_message(
        &self,
        request: &RemotingCommand,
        permit: WorkPermit,
    ) -> Reply {
        let mut permit = Some(permit);
        let header: PullMessageRequestHeader = match request.decode_header() {
            Ok(header) => header,
            Err(error) => return header_error(request, error),
        };
        let fail =
            |code: ResponseCode, remark: String| Reply::Command(request.error_to(code, remark));
        let group = match self.groups.find_or_create(&header.consumer_group) {
            Ok(Some(group)) => group,
            Ok(None) => {
                return fail(
                    ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
                    format!(
                        "subscription group [{}] does not exist",
                        header.consumer_group
                    ),
                );
            }
            Err(error) => return fail(ResponseCode::SYSTEM_ERROR, error.to_string()),
        };
        if !group.consume_enable {
            return fail(
                ResponseCode::NO_PERMISSION,
                format!(
                    "subscription group no permission, {}",
                    header.consumer_group
                ),
            );
        }
        let Some(topic) = self.topics.get(&header.topic) else {
            return fail(
                ResponseCode::TOPIC_NOT_EXIST,
                format!("topic[{}] not exist, apply first please!", header.topic),
            );
        };
        if topic.perm & PERM_READ == 0 {
            return fail(
                ResponseCode::NO_PERMISSION,
                format!("the topic[{}] pulling message is forbidden", header.topic),
            );
        }
        if header.queue_id < 0 || header.queue_id >= topic.read_queue_nums {
            return fail(
                ResponseCode::SYSTEM_ERROR,
                format!(
                    "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}] consumer:[{}]",
                    header.queue_id, header.topic, topic.read_queue_nums, header.consumer_group
                ),
            );
        }
        let expression_type = header.expression_type.as_deref().unwrap_or("TAG");
        if !expression_type.eq_ignore_ascii_case("TAG") {
            return fail(
                ResponseCode::SYSTEM_ERROR,
                format!(
                    "The broker does not support consumer to filter message by {expression_type}"
                ),
            );
        }
        let filter = if pull_sys_flag::has_subscription(header.sys_flag) {
            tag_filter(header.subscription.as_deref())
        } else {
            let registered = self
                .clients
                .consumer_data(&header.consumer_group)
                .and_then(|data| {
                    data.subscription_data_set.into_iter().find(|s| {
                        s.get("topic").and_then(serde_json::Value::as_str)
                            == Some(header.topic.as_str())
                    })
                });
            tag_filter(
                registered
                    .as_ref()
                    .and_then(|s| s.get("subString"))
                    .and_then(serde_json::Value::as_str),
            )
        };
        if pull_sys_flag::has_commit_offset(header.sys_flag)
            && !self.ha.is_slave()
            && header.commit_offset >= 0
        {
            self.offsets.commit(
                &header.consumer_group,
                &header.topic,
                header.queue_id,
                header.commit_offset,
            );
        }
        let max_msgs = header.max_msg_nums.clamp(1, 1024) as usize;
        let max_bytes = header
            .max_msg_bytes
            .filter(|b| *b > 0)
            .map_or(MAX_PULL_BYTES, |b| (b as usize).min(MAX_PULL_BYTES));
        let hold = if !pull_sys_flag::has_suspend(header.sys_flag) {
            Duration::ZERO
        } else if self.config.long_polling_enable {
            Duration::from_millis(header.suspend_timeout_millis.max(0) as u64).min(MAX_SUSPEND)
        } else {
            SHORT_POLLING
        };
        let deadline = tokio::time::Instant::now() + hold;
        let waiters = self.pull_waiters.get(&header.topic, header.queue_id);
        let result = loop {
            // Registered before the read, so a put landing between the read and the wait
            // still wakes this pull.
            let notified = waiters.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let result = self.store.get_message(
                &header.consumer_group,
                &header.topic,
                header.queue_id,
                header.queue_offset,
                max_msgs,
                max_bytes,
                &filter,
            );
            let code = pull_status_code(result.status, header.queue_offset);
            if code != ResponseCode::PULL_NOT_FOUND || tokio::time::Instant::now() >= deadline {
                break result;
            }
            // A held pull is waiting, not working: it must not count towards SYSTEM_BUSY.
            drop(permit.take());
            let _held = self.metrics.hold_pull();
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        };
        let mut code = pull_status_code(result.status, header.queue_offset);
        let suggest = crate::slave_sync::suggest_which_broker_id(
            self.ha.is_slave(),
            self.config.slave_read_enable,
            result.suggest_pulling_from_slave,
            group.broker_id,
            group.which_broker_when_consume_slowly,
        );
        if suggest.retry_immediately {
            code = ResponseCode::PULL_RETRY_IMMEDIATELY;
        }
        // A slave that may not serve reads sends the consumer back to the master without
        // moving it on: clients take nextBeginOffset of a RETRY_IMMEDIATELY answer as their
        // next offset, so the store's would skip every message this answer did not carry.
        let next_begin_offset = if suggest.retry_immediately {
            header.queue_offset
        } else {
            result.next_begin_offset
        };
        let response = request
            .response_to(code, None)
            .with_header(&PullMessageResponseHeader {
                suggest_which_broker_id: suggest.which_broker_id,
                next_begin_offset,
                min_offset: result.min_offset,
                max_offset: result.max_offset,
                offset_delta: None,
                topic_sys_flag: Some(topic.topic_sys_flag),
                group_sys_flag: Some(group.group_sys_flag),
                forbidden_type: None,
            });
        if code == ResponseCode::SUCCESS {
            self.stats
                .msg_get_total
                .fetch_add(result.messages.len() as u64, Ordering::Relaxed);
            self.metrics.message_out(
                &header.topic,
                &header.consumer_group,
                result.messages.len() as u64,
                result.messages.iter().map(|m| m.len() as u64).sum(),
            );
            return Reply::HeaderAndBody(response, result.messages);
        }
        Reply::Command(response)
    }

    /// CONSUMER_SEND_MSG_BACK: a consumer failed a message; it comes back through
    /// `%RETRY%group` after a delay, or goes to `%DLQ%group` once it has been retried
    /// `retryMaxTimes` times (or the consumer asks for it with a negative delay level).
    pub(crate) async fn consumer_send_msg_back(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
    ) -> Reply {
        let header: ConsumerSendMsgBackRequestHeader = match request.decode_header() {
            Ok(header) => header,
            Err(error) => return header_error(request, error),
        };
        let fail =
            |code: ResponseCode, remark: String| Reply::Command(request.error_to(code, remark));
        let group = match self.groups.find_or_create(&header.group) {
            Ok(Some(group)) => group,
            Ok(None) => {
                return fail(
                    ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
                    format!("subscription group not exist, {}", header.group),
                );
            }
            Err(error) => return fail(ResponseCode::SYSTEM_ERROR, error.to_string()),
        };
        let Some(record) = self.store.lookup_message_by_offset(header.offset) else {
            return fail(
                ResponseCode::SYSTEM_ERROR,
                format!("look message by offset failed, {}", header.offset),
            );
        };
        let stored = match message::MessageExt::decode(&record) {
            Ok((stored, _)) => stored,
            Err(error) => {
                return fail(
                    ResponseCode::SYSTEM_ERROR,
                    format!(
                        "the message at offset {} cannot be decoded: {error}",
                        header.offset
                    ),
                );
            }
        };
        let max_times = header.max_reconsume_times.unwrap_or(group.retry_max_times);
        let reconsume_times = stored.reconsume_times;
        let to_dlq = reconsume_times >= max_times || header.delay_level < 0;
        let (topic, queues) = if to_dlq {
            (format!("{DLQ_GROUP_TOPIC_PREFIX}{}", header.group), 1)
        } else {
            (
                format!("{RETRY_GROUP_TOPIC_PREFIX}{}", header.group),
                group.retry_queue_nums.max(1),
            )
        };
        if let Err(error) = self
            .topics
            .create_if_absent(&topic, queues, PERM_READ | PERM_WRITE)
        {
            return fail(ResponseCode::SYSTEM_ERROR, error.to_string());
        }
        let mut properties = stored.properties.clone();
        properties
            .entry(property::RETRY_TOPIC.to_owned())
            .or_insert_with(|| stored.topic.clone());
        let origin_id = header
            .origin_msg_id
            .clone()
            .or_else(|| {
                properties
                    .get(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
                    .cloned()
            })
            .unwrap_or_else(|| stored.msg_id());
        properties
            .entry(property::ORIGIN_MESSAGE_ID.to_owned())
            .or_insert(origin_id);
        if to_dlq {
            properties.remove(property::DELAY_TIME_LEVEL);
        } else {
            // The count comes from the sender's header, so it can be anything an i32 holds.
            let level = if header.delay_level == 0 {
                reconsume_times.max(0).saturating_add(3)
            } else {
                header.delay_level
            };
            properties.insert(property::DELAY_TIME_LEVEL.to_owned(), level.to_string());
        }
        let queue_id = (reconsume_times.unsigned_abs() % queues as u32) as i32;
        let mut retry = MessageExtBrokerInner {
            topic: topic.clone(),
            queue_id,
            flag: stored.flag,
            sys_flag: stored.sys_flag,
            born_timestamp: stored.born_timestamp,
            born_host: Some(channel.remote),
            reconsume_times: reconsume_times.saturating_add(1),
            prepared_transaction_offset: 0,
            body: stored.body.clone(),
            properties,
            tags_code: None,
        };
        divert_if_delayed(&mut retry);
        let diverted = retry.topic != topic;
        let result = self.put_through_log(vec![retry]).await;
        if !result.status.is_written() {
            let (code, remark) = put_status_code(result.status);
            return fail(
                code,
                result
                    .remark
                    .or(remark.map(str::to_owned))
                    .unwrap_or_else(|| format!("{:?}", result.status)),
            );
        }
        if diverted {
            self.schedule_wakeup.notify_one();
        } else {
            self.pull_waiters.wake(&topic, queue_id);
        }
        Reply::Command(request.success_to())
    }

    pub(crate) fn get_max_offset(&self, request: &RemotingCommand) -> Reply {
        match request.decode_header::<GetMaxOffsetRequestHeader>() {
            Ok(h) => Reply::Command(request.success_to().with_header(
                &GetMaxOffsetResponseHeader {
                    offset: self.store.get_max_offset_in_queue(&h.topic, h.queue_id),
                },
            )),
            Err(error) => header_error(request, error),
        }
    }

    pub(crate) fn get_min_offset(&self, request: &RemotingCommand) -> Reply {
        match request.decode_header::<GetMinOffsetRequestHeader>() {
            Ok(h) => Reply::Command(request.success_to().with_header(
                &GetMinOffsetResponseHeader {
                    offset: self.store.get_min_offset_in_queue(&h.topic, h.queue_id),
                },
            )),
            Err(error) => header_error(request, error),
        }
    }

    pub(crate) fn search_offset(&self, request: &RemotingCommand) -> Reply {
        let header = match request.decode_header::<SearchOffsetRequestHeader>() {
            Ok(h) => h,
            Err(error) => return header_error(request, error),
        };
        let boundary = match header.boundary() {
            Ok(boundary) => boundary,
            Err(error) => return header_error(request, error),
        };
        let offset = match boundary {
            // The first message stored at or after the timestamp (the max offset if none was).
            BoundaryType::Lower => self.store.get_offset_in_queue_by_time(
                &header.topic,
                header.queue_id,
                header.timestamp,
            ),
            // The last message stored at or before it: the one before the first stored after
            // it. With none, Apache answers 0; the queue's min offset is that where the queue
            // starts at 0 and stays an offset that exists where it does not.
            BoundaryType::Upper => {
                let after = self.store.get_offset_in_queue_by_time(
                    &header.topic,
                    header.queue_id,
                    header.timestamp.saturating_add(1),
                );
                let min = self
                    .store
                    .get_min_offset_in_queue(&header.topic, header.queue_id);
                (after - 1).max(min)
            }
        };
        Reply::Command(
            request
                .success_to()
                .with_header(&SearchOffsetResponseHeader { offset }),
        )
    }

    /// The store time of the oldest message still in the queue, -1 when it has none.
    pub(crate) fn earliest_msg_store_time(&self, request: &RemotingCommand) -> Reply {
        let header = match request.decode_header::<GetEarliestMsgStoretimeRequestHeader>() {
            Ok(h) => h,
            Err(error) => return header_error(request, error),
        };
        let min = self
            .store
            .get_min_offset_in_queue(&header.topic, header.queue_id);
        let timestamp = self
            .store
            .get_commit_log_offset_in_queue(&header.topic, header.queue_id, min)
            .and_then(|phy| self.store.lookup_message_by_offset(phy))
            .and_then(|record| {
                MessageView::decode(&record, false)
                    .ok()
                    .map(|(v, _)| v.store_timestamp)
            })
            .unwrap_or(-1);
        Reply::Command(
            request
                .success_to()
                .with_header(&GetEarliestMsgStoretimeResponseHeader { timestamp }),
        )
    }

    pub(crate) fn query_message(&self, request: &RemotingCommand) -> Reply {
        let header = match request.decode_header::<QueryMessageRequestHeader>() {
            Ok(h) => h,
            Err(error) => return header_error(request, error),
        };
        let records: Vec<Bytes> = self.store.query_message_by_key(
            &header.topic,
            &header.key,
            header.max_num.clamp(1, 64 * 1024) as usize,
            header.begin_timestamp,
            header.end_timestamp,
        );
        // Keep the answer inside a client's frame limit however many records match.
        let mut total = 0;
        let records: Vec<Bytes> = records
            .into_iter()
            .take_while(|r| {
                total += r.len();
                total <= MAX_PULL_BYTES
            })
            .collect();
        if records.is_empty() {
            return Reply::Command(request.error_to(
                ResponseCode::QUERY_NOT_FOUND,
                "can not find message, maybe time range not correct",
            ));
        }
        let response = request
            .success_to()
            .with_header(&QueryMessageResponseHeader {
                index_last_update_timestamp: now_millis(),
                index_last_update_phyoffset: self.store.max_phy_offset(),
            });
        Reply::HeaderAndBody(response, records)
    }

    pub(crate) fn view_message_by_id(&self, request: &RemotingCommand) -> Reply {
        let header = match request.decode_header::<ViewMessageRequestHeader>() {
            Ok(h) => h,
            Err(error) => return header_error(request, error),
        };
        match self.store.lookup_message_by_offset(header.offset) {
            Some(record) => Reply::HeaderAndBody(request.success_to(), vec![record]),
            None => Reply::Command(request.error_to(
                ResponseCode::SYSTEM_ERROR,
                format!("can not find message by the offset, {}", header.offset),
            )),
        }
    }

    /// RocketMQ's QUERY_CONSUMER_OFFSET quirk: with nothing stored, a queue whose message 0 is
    /// still present answers offset 0 rather than QUERY_NOT_FOUND.
    pub(crate) fn offset_zero_if_fresh(&self, topic: &str, queue_id: i32) -> bool {
        self.store.get_min_offset_in_queue(topic, queue_id) <= 0
            && self.store.get_max_offset_in_queue(topic, queue_id) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_codes_follow_rocketmq() {
        assert_eq!(
            pull_status_code(GetMessageStatus::OffsetOverflowOne, 5),
            ResponseCode::PULL_NOT_FOUND
        );
        assert_eq!(
            pull_status_code(GetMessageStatus::NoMessageInQueue, 0),
            ResponseCode::PULL_NOT_FOUND
        );
        assert_eq!(
            pull_status_code(GetMessageStatus::NoMessageInQueue, 3),
            ResponseCode::PULL_OFFSET_MOVED
        );
        assert_eq!(
            pull_status_code(GetMessageStatus::OffsetTooSmall, 3),
            ResponseCode::PULL_OFFSET_MOVED
        );
        assert_eq!(
            pull_status_code(GetMessageStatus::NoMatchedMessage, 3),
            ResponseCode::PULL_RETRY_IMMEDIATELY
        );
    }

    #[test]
    fn tag_expressions() {
        assert_eq!(tag_filter(None), MessageFilter::All);
        assert_eq!(tag_filter(Some(" * ")), MessageFilter::All);
        assert_eq!(
            tag_filter(Some("a || b")),
            MessageFilter::TagCodes(vec![message::tags_code("a"), message::tags_code("b")])
        );
    }

    #[test]
    fn put_codes() {
        assert_eq!(
            put_status_code(PutMessageStatus::PutOk).0,
            ResponseCode::SUCCESS
        );
        assert_eq!(
            put_status_code(PutMessageStatus::OsPageCacheBusy).0,
            ResponseCode::SYSTEM_BUSY
        );
    }
}
