//! Typed custom headers of the requests Ferrum serves or sends, with RocketMQ's Java field names.
//!
//! Required fields are the ones Java marks `@CFNotNull`; Java itself only logs a missing one and
//! then tends to fail later on a null, so refusing them up front gives the peer a clearer remark.
//! Every header also carries the optional `RpcRequestHeader` fields where a client is known to
//! send them (`bname` from rocketmq-client-go and 5.x Java, `lo` for static topics).

use crate::code::RequestCode;
use crate::command::{ExtFields, RemotingCommand};
use crate::command_header;
use crate::header::{CommandHeader, HeaderError};

/// Bit flags that travel inside headers.
pub mod flags {
    /// `PullSysFlag`: the `sysFlag` of a pull request.
    pub mod pull_sys_flag {
        pub const COMMIT_OFFSET: i32 = 0x1;
        pub const SUSPEND: i32 = 0x2;
        pub const SUBSCRIPTION: i32 = 0x4;
        pub const CLASS_FILTER: i32 = 0x8;
        pub const LITE_PULL_MESSAGE: i32 = 0x10;

        /// Builds a pull `sysFlag` from its parts.
        pub fn build(
            commit_offset: bool,
            suspend: bool,
            subscription: bool,
            class_filter: bool,
        ) -> i32 {
            let mut flag = 0;
            if commit_offset {
                flag |= COMMIT_OFFSET;
            }
            if suspend {
                flag |= SUSPEND;
            }
            if subscription {
                flag |= SUBSCRIPTION;
            }
            if class_filter {
                flag |= CLASS_FILTER;
            }
            flag
        }

        /// The flag with the commit-offset bit cleared: the broker does so when it must not
        /// store the consumer's offset (e.g. on a slave).
        pub fn clear_commit_offset(flag: i32) -> i32 {
            flag & !COMMIT_OFFSET
        }

        pub fn has_commit_offset(flag: i32) -> bool {
            flag & COMMIT_OFFSET != 0
        }
        pub fn has_suspend(flag: i32) -> bool {
            flag & SUSPEND != 0
        }
        pub fn has_subscription(flag: i32) -> bool {
            flag & SUBSCRIPTION != 0
        }
        pub fn has_class_filter(flag: i32) -> bool {
            flag & CLASS_FILTER != 0
        }
        pub fn has_lite_pull(flag: i32) -> bool {
            flag & LITE_PULL_MESSAGE != 0
        }
    }

    /// `MessageSysFlag`: the `sysFlag` of a message (send header and stored record).
    pub mod message_sys_flag {
        pub const COMPRESSED: i32 = 0x1;
        pub const MULTI_TAGS: i32 = 0x2;
        pub const TRANSACTION_NOT_TYPE: i32 = 0;
        pub const TRANSACTION_PREPARED_TYPE: i32 = 0x1 << 2;
        pub const TRANSACTION_COMMIT_TYPE: i32 = 0x2 << 2;
        pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0x3 << 2;
        pub const BORNHOST_V6: i32 = 0x1 << 4;
        pub const STOREHOSTADDRESS_V6: i32 = 0x1 << 5;
        pub const NEED_UNWRAP: i32 = 0x1 << 6;
        pub const INNER_BATCH: i32 = 0x1 << 7;
        /// Bits 8–10 name the compression algorithm when `COMPRESSED` is set.
        pub const COMPRESSION_TYPE_MASK: i32 = 0x7 << 8;
        pub const COMPRESSION_LZ4_TYPE: i32 = 0x1 << 8;
        pub const COMPRESSION_ZSTD_TYPE: i32 = 0x2 << 8;
        pub const COMPRESSION_ZLIB_TYPE: i32 = 0x3 << 8;

        /// The transaction type bits (`TRANSACTION_*_TYPE`).
        pub fn transaction_value(flag: i32) -> i32 {
            flag & TRANSACTION_ROLLBACK_TYPE
        }

        /// `flag` with its transaction type replaced by `kind`.
        pub fn reset_transaction_value(flag: i32, kind: i32) -> i32 {
            (flag & !TRANSACTION_ROLLBACK_TYPE) | (kind & TRANSACTION_ROLLBACK_TYPE)
        }
    }

    /// `PermName`: topic and broker permissions.
    pub mod perm_name {
        pub const PERM_PRIORITY: i32 = 0x1 << 3;
        pub const PERM_READ: i32 = 0x1 << 2;
        pub const PERM_WRITE: i32 = 0x1 << 1;
        pub const PERM_INHERIT: i32 = 0x1;

        pub fn is_readable(perm: i32) -> bool {
            perm & PERM_READ != 0
        }
        pub fn is_writeable(perm: i32) -> bool {
            perm & PERM_WRITE != 0
        }
        pub fn is_inherited(perm: i32) -> bool {
            perm & PERM_INHERIT != 0
        }

        /// The `RW-`-style text the admin tool prints.
        pub fn to_text(perm: i32) -> String {
            let mut text = String::with_capacity(3);
            text.push(if is_readable(perm) { 'R' } else { '-' });
            text.push(if is_writeable(perm) { 'W' } else { '-' });
            text.push(if is_inherited(perm) { 'X' } else { '-' });
            text
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Produce
// ---------------------------------------------------------------------------------------------

command_header! {
    /// `SendMessageRequestHeader`, the long-name form of SEND_MESSAGE (10) and
    /// SEND_REPLY_MESSAGE (324). rocketmq-client-go always sends this one.
    pub struct SendMessageRequestHeader {
        producer_group: String = "producerGroup",
        topic: String = "topic",
        default_topic: String = "defaultTopic",
        default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        queue_id: i32 = "queueId",
        sys_flag: i32 = "sysFlag",
        born_timestamp: i64 = "bornTimestamp",
        flag: i32 = "flag",
        properties: Option<String> = "properties",
        reconsume_times: Option<i32> = "reconsumeTimes",
        unit_mode: Option<bool> = "unitMode",
        batch: Option<bool> = "batch",
        max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `SendMessageRequestHeaderV2`: the same fields under one-letter names, used by Java and
    /// rocketmq-rust for SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
    /// SEND_REPLY_MESSAGE_V2 (325).
    pub struct SendMessageRequestHeaderV2 {
        a: String = "a",
        b: String = "b",
        c: String = "c",
        d: i32 = "d",
        e: i32 = "e",
        f: i32 = "f",
        g: i64 = "g",
        h: i32 = "h",
        i: Option<String> = "i",
        j: Option<i32> = "j",
        k: Option<bool> = "k",
        l: Option<i32> = "l",
        m: Option<bool> = "m",
        n: Option<String> = "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> Self {
        SendMessageRequestHeader {
            producer_group: v2.a,
            topic: v2.b,
            default_topic: v2.c,
            default_topic_queue_nums: v2.d,
            queue_id: v2.e,
            sys_flag: v2.f,
            born_timestamp: v2.g,
            flag: v2.h,
            properties: v2.i,
            reconsume_times: v2.j,
            unit_mode: v2.k,
            max_reconsume_times: v2.l,
            batch: v2.m,
            broker_name: v2.n,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v1: SendMessageRequestHeader) -> Self {
        SendMessageRequestHeaderV2 {
            a: v1.producer_group,
            b: v1.topic,
            c: v1.default_topic,
            d: v1.default_topic_queue_nums,
            e: v1.queue_id,
            f: v1.sys_flag,
            g: v1.born_timestamp,
            h: v1.flag,
            i: v1.properties,
            j: v1.reconsume_times,
            k: v1.unit_mode,
            l: v1.max_reconsume_times,
            m: v1.batch,
            n: v1.broker_name,
        }
    }
}

impl SendMessageRequestHeader {
    /// Decodes the send header of `command` in whichever form its code uses: the short names for
    /// 310/320/325, the long names for 10/324. For any other code the form is recognised by its
    /// fields, so a proxy-style request still decodes.
    pub fn decode_any(command: &RemotingCommand) -> Result<Self, HeaderError> {
        decode_send_fields(command.code, &command.ext_fields)
    }

    /// Whether the message is a batch: the header says so, or the code is SEND_BATCH_MESSAGE.
    pub fn is_batch(&self, code: i32) -> bool {
        self.batch.unwrap_or(false) || code == RequestCode::SEND_BATCH_MESSAGE.code()
    }
}

/// [`SendMessageRequestHeader::decode_any`] over a bare `extFields` map.
pub fn decode_send_fields(
    code: i32,
    fields: &ExtFields,
) -> Result<SendMessageRequestHeader, HeaderError> {
    let short = match RequestCode::from_code(code) {
        Some(
            RequestCode::SEND_MESSAGE_V2
            | RequestCode::SEND_BATCH_MESSAGE
            | RequestCode::SEND_REPLY_MESSAGE_V2,
        ) => true,
        Some(RequestCode::SEND_MESSAGE | RequestCode::SEND_REPLY_MESSAGE) => false,
        _ => !fields.contains_key("topic") && fields.contains_key("b"),
    };
    if short {
        SendMessageRequestHeaderV2::decode(fields).map(Into::into)
    } else {
        SendMessageRequestHeader::decode(fields)
    }
}

command_header! {
    /// `SendMessageResponseHeader`. The Java client reads `extFields` without a null check, so a
    /// SEND success always carries this header.
    pub struct SendMessageResponseHeader {
        msg_id: String = "msgId",
        queue_id: i32 = "queueId",
        queue_offset: i64 = "queueOffset",
        transaction_id: Option<String> = "transactionId",
        batch_uniq_id: Option<String> = "batchUniqId",
        recall_handle: Option<String> = "recallHandle",
        msg_region: Option<String> = "MSG_REGION",
        trace_on: Option<String> = "TRACE_ON",
    }
}

command_header! {
    /// `EndTransactionRequestHeader` (END_TRANSACTION, 37).
    pub struct EndTransactionRequestHeader {
        topic: Option<String> = "topic",
        producer_group: String = "producerGroup",
        tran_state_table_offset: i64 = "tranStateTableOffset",
        commit_log_offset: i64 = "commitLogOffset",
        commit_or_rollback: i32 = "commitOrRollback",
        from_transaction_check: Option<bool> = "fromTransactionCheck",
        msg_id: String = "msgId",
        transaction_id: Option<String> = "transactionId",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `CheckTransactionStateRequestHeader` (CHECK_TRANSACTION_STATE 39, broker → producer,
    /// oneway): asks the producer to resolve a half message.
    pub struct CheckTransactionStateRequestHeader {
        topic: Option<String> = "topic",
        tran_state_table_offset: i64 = "tranStateTableOffset",
        commit_log_offset: i64 = "commitLogOffset",
        msg_id: Option<String> = "msgId",
        transaction_id: Option<String> = "transactionId",
        offset_msg_id: Option<String> = "offsetMsgId",
        broker_name: Option<String> = "bname",
    }
}

// ---------------------------------------------------------------------------------------------
// Consume
// ---------------------------------------------------------------------------------------------

command_header! {
    /// `PullMessageRequestHeader` (PULL_MESSAGE 11, LITE_PULL_MESSAGE 361).
    pub struct PullMessageRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        queue_offset: i64 = "queueOffset",
        max_msg_nums: i32 = "maxMsgNums",
        sys_flag: i32 = "sysFlag",
        commit_offset: i64 = "commitOffset",
        suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        subscription: Option<String> = "subscription",
        sub_version: i64 = "subVersion",
        expression_type: Option<String> = "expressionType",
        max_msg_bytes: Option<i32> = "maxMsgBytes",
        request_source: Option<i32> = "requestSource",
        /// Java's spelling, typo included.
        proxy_forward_client_id: Option<String> = "proxyFrowardClientId",
        logical: Option<bool> = "lo",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `PullMessageResponseHeader`.
    pub struct PullMessageResponseHeader {
        suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        next_begin_offset: i64 = "nextBeginOffset",
        min_offset: i64 = "minOffset",
        max_offset: i64 = "maxOffset",
        offset_delta: Option<i64> = "offsetDelta",
        topic_sys_flag: Option<i32> = "topicSysFlag",
        group_sys_flag: Option<i32> = "groupSysFlag",
        forbidden_type: Option<i32> = "forbiddenType",
    }
}

command_header! {
    /// `QueryConsumerOffsetRequestHeader` (14).
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `QueryConsumerOffsetResponseHeader`. Java unboxes `offset` without a check: always send it.
    pub struct QueryConsumerOffsetResponseHeader {
        offset: i64 = "offset",
    }
}

command_header! {
    /// `UpdateConsumerOffsetRequestHeader` (15), usually oneway.
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        commit_offset: i64 = "commitOffset",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `UpdateConsumerOffsetResponseHeader`: no fields.
    pub struct UpdateConsumerOffsetResponseHeader {}
}

command_header! {
    /// `GetMaxOffsetRequestHeader` (30). `committed` defaults to true in Java.
    pub struct GetMaxOffsetRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
        committed: Option<bool> = "committed",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `GetMaxOffsetResponseHeader`.
    pub struct GetMaxOffsetResponseHeader {
        offset: i64 = "offset",
    }
}

command_header! {
    /// `GetMinOffsetRequestHeader` (31).
    pub struct GetMinOffsetRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `GetMinOffsetResponseHeader`.
    pub struct GetMinOffsetResponseHeader {
        offset: i64 = "offset",
    }
}

command_header! {
    /// `SearchOffsetRequestHeader` (SEARCH_OFFSET_BY_TIMESTAMP 29). `boundaryType` is `LOWER` or
    /// `UPPER`, case-insensitive; see [`BoundaryType`].
    pub struct SearchOffsetRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
        timestamp: i64 = "timestamp",
        boundary_type: Option<String> = "boundaryType",
        broker_name: Option<String> = "bname",
    }
}

/// `BoundaryType`: which end of a run of equal timestamps a search answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoundaryType {
    #[default]
    Lower,
    Upper,
}

impl SearchOffsetRequestHeader {
    /// The boundary asked for; absent means LOWER, as in Java.
    pub fn boundary(&self) -> Result<BoundaryType, HeaderError> {
        match self.boundary_type.as_deref().map(str::trim) {
            None => Ok(BoundaryType::Lower),
            Some(v) if v.eq_ignore_ascii_case("lower") => Ok(BoundaryType::Lower),
            Some(v) if v.eq_ignore_ascii_case("upper") => Ok(BoundaryType::Upper),
            Some(other) => Err(HeaderError::Invalid {
                field: "boundaryType",
                value: other.chars().take(64).collect(),
                reason: "expected LOWER or UPPER",
            }),
        }
    }
}

command_header! {
    /// `SearchOffsetResponseHeader`.
    pub struct SearchOffsetResponseHeader {
        offset: i64 = "offset",
    }
}

command_header! {
    /// `GetEarliestMsgStoretimeRequestHeader` (32).
    pub struct GetEarliestMsgStoretimeRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `GetEarliestMsgStoretimeResponseHeader`.
    pub struct GetEarliestMsgStoretimeResponseHeader {
        timestamp: i64 = "timestamp",
    }
}

command_header! {
    /// `ConsumerSendMsgBackRequestHeader` (CONSUMER_SEND_MSG_BACK 36). `offset` is the
    /// commit-log offset of the message being returned.
    pub struct ConsumerSendMsgBackRequestHeader {
        offset: i64 = "offset",
        group: String = "group",
        delay_level: i32 = "delayLevel",
        origin_msg_id: Option<String> = "originMsgId",
        origin_topic: Option<String> = "originTopic",
        unit_mode: Option<bool> = "unitMode",
        max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `QueryMessageRequestHeader` (QUERY_MESSAGE 12): messages by key in a time range.
    pub struct QueryMessageRequestHeader {
        topic: String = "topic",
        key: String = "key",
        max_num: i32 = "maxNum",
        begin_timestamp: i64 = "beginTimestamp",
        end_timestamp: i64 = "endTimestamp",
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// `QueryMessageResponseHeader`.
    pub struct QueryMessageResponseHeader {
        index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

command_header! {
    /// `ViewMessageRequestHeader` (VIEW_MESSAGE_BY_ID 33): `offset` is a commit-log offset.
    pub struct ViewMessageRequestHeader {
        topic: Option<String> = "topic",
        offset: i64 = "offset",
        broker_name: Option<String> = "bname",
    }
}

// ---------------------------------------------------------------------------------------------
// Client management
// ---------------------------------------------------------------------------------------------

command_header! {
    /// `UnregisterClientRequestHeader` (35).
    pub struct UnregisterClientRequestHeader {
        client_id: String = "clientID",
        producer_group: Option<String> = "producerGroup",
        consumer_group: Option<String> = "consumerGroup",
    }
}

command_header! {
    /// `GetConsumerListByGroupRequestHeader` (38).
    pub struct GetConsumerListByGroupRequestHeader {
        consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// `NotifyConsumerIdsChangedRequestHeader` (40, broker → client, oneway).
    pub struct NotifyConsumerIdsChangedRequestHeader {
        consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// `GetConsumerRunningInfoRequestHeader` (GET_CONSUMER_RUNNING_INFO 307, admin → broker →
    /// client).
    pub struct GetConsumerRunningInfoRequestHeader {
        consumer_group: String = "consumerGroup",
        client_id: String = "clientId",
        jstack_enable: Option<bool> = "jstackEnable",
    }
}

// ---------------------------------------------------------------------------------------------
// Topic and group administration
// ---------------------------------------------------------------------------------------------

command_header! {
    /// `CreateTopicRequestHeader` (UPDATE_AND_CREATE_TOPIC 17).
    pub struct CreateTopicRequestHeader {
        topic: String = "topic",
        default_topic: String = "defaultTopic",
        read_queue_nums: i32 = "readQueueNums",
        write_queue_nums: i32 = "writeQueueNums",
        perm: i32 = "perm",
        /// `SINGLE_TAG` or `MULTI_TAG`.
        topic_filter_type: String = "topicFilterType",
        topic_sys_flag: Option<i32> = "topicSysFlag",
        order: bool = "order",
        attributes: Option<String> = "attributes",
        force: Option<bool> = "force",
    }
}

command_header! {
    /// `DeleteTopicRequestHeader` (DELETE_TOPIC_IN_BROKER 215).
    pub struct DeleteTopicRequestHeader {
        topic: String = "topic",
    }
}

command_header! {
    /// `DeleteTopicFromNamesrvRequestHeader` (DELETE_TOPIC_IN_NAMESRV 216).
    pub struct DeleteTopicFromNamesrvRequestHeader {
        topic: String = "topic",
        cluster_name: Option<String> = "clusterName",
    }
}

command_header! {
    /// `GetTopicConfigRequestHeader` (GET_TOPIC_CONFIG 351).
    pub struct GetTopicConfigRequestHeader {
        topic: String = "topic",
        logical: Option<bool> = "lo",
    }
}

command_header! {
    /// `GetTopicStatsInfoRequestHeader` (GET_TOPIC_STATS_INFO 202).
    pub struct GetTopicStatsInfoRequestHeader {
        topic: String = "topic",
    }
}

command_header! {
    /// `QueryTopicConsumeByWhoRequestHeader` (QUERY_TOPIC_CONSUME_BY_WHO 300).
    pub struct QueryTopicConsumeByWhoRequestHeader {
        topic: String = "topic",
    }
}

command_header! {
    /// `GetTopicsByClusterRequestHeader` (GET_TOPICS_BY_CLUSTER 224).
    pub struct GetTopicsByClusterRequestHeader {
        cluster: String = "cluster",
    }
}

command_header! {
    /// `GetConsumeStatsRequestHeader` (GET_CONSUME_STATS 208); no topic means every topic the
    /// group subscribes to.
    pub struct GetConsumeStatsRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: Option<String> = "topic",
    }
}

command_header! {
    /// `GetConsumerConnectionListRequestHeader` (GET_CONSUMER_CONNECTION_LIST 203).
    pub struct GetConsumerConnectionListRequestHeader {
        consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// `DeleteSubscriptionGroupRequestHeader` (DELETE_SUBSCRIPTIONGROUP 207).
    pub struct DeleteSubscriptionGroupRequestHeader {
        group_name: String = "groupName",
        clean_offset: Option<bool> = "cleanOffset",
    }
}

// ---------------------------------------------------------------------------------------------
// NameServer
// ---------------------------------------------------------------------------------------------

command_header! {
    /// `RegisterBrokerRequestHeader` (REGISTER_BROKER 103).
    pub struct RegisterBrokerRequestHeader {
        broker_name: String = "brokerName",
        broker_addr: String = "brokerAddr",
        cluster_name: String = "clusterName",
        ha_server_addr: String = "haServerAddr",
        broker_id: i64 = "brokerId",
        heartbeat_timeout_millis: Option<i64> = "heartbeatTimeoutMillis",
        enable_acting_master: Option<bool> = "enableActingMaster",
        compressed: Option<bool> = "compressed",
        body_crc32: Option<i32> = "bodyCrc32",
    }
}

command_header! {
    /// `RegisterBrokerResponseHeader`: where a slave finds its master.
    pub struct RegisterBrokerResponseHeader {
        ha_server_addr: Option<String> = "haServerAddr",
        master_addr: Option<String> = "masterAddr",
    }
}

command_header! {
    /// `UnRegisterBrokerRequestHeader` (UNREGISTER_BROKER 104).
    pub struct UnregisterBrokerRequestHeader {
        broker_name: String = "brokerName",
        broker_addr: String = "brokerAddr",
        cluster_name: String = "clusterName",
        broker_id: i64 = "brokerId",
    }
}

command_header! {
    /// `GetRouteInfoRequestHeader` (GET_ROUTEINFO_BY_TOPIC 105).
    pub struct GetRouteInfoRequestHeader {
        topic: String = "topic",
        accept_standard_json_only: Option<bool> = "acceptStandardJsonOnly",
    }
}

command_header! {
    /// `PutKVConfigRequestHeader` (PUT_KV_CONFIG 100).
    pub struct PutKvConfigRequestHeader {
        namespace: String = "namespace",
        key: String = "key",
        value: String = "value",
    }
}

command_header! {
    /// `GetKVConfigRequestHeader` (GET_KV_CONFIG 101).
    pub struct GetKvConfigRequestHeader {
        namespace: String = "namespace",
        key: String = "key",
    }
}

command_header! {
    /// `GetKVConfigResponseHeader`; absent value comes with QUERY_NOT_FOUND.
    pub struct GetKvConfigResponseHeader {
        value: Option<String> = "value",
    }
}

command_header! {
    /// `DeleteKVConfigRequestHeader` (DELETE_KV_CONFIG 102).
    pub struct DeleteKvConfigRequestHeader {
        namespace: String = "namespace",
        key: String = "key",
    }
}

command_header! {
    /// `GetKVListByNamespaceRequestHeader` (GET_KVLIST_BY_NAMESPACE 219).
    pub struct GetKvListByNamespaceRequestHeader {
        namespace: String = "namespace",
    }
}

/// Tries every typed header in this module on `fields`, discarding the results. The fuzz target
/// uses it to prove that no header decoder panics on hostile input.
pub fn decode_all(code: i32, fields: &ExtFields) -> usize {
    fn ok<H: CommandHeader>(fields: &ExtFields) -> usize {
        usize::from(H::decode(fields).is_ok())
    }
    let mut decoded = usize::from(decode_send_fields(code, fields).is_ok());
    decoded += ok::<SendMessageRequestHeader>(fields);
    decoded += ok::<SendMessageRequestHeaderV2>(fields);
    decoded += ok::<SendMessageResponseHeader>(fields);
    decoded += ok::<EndTransactionRequestHeader>(fields);
    decoded += ok::<CheckTransactionStateRequestHeader>(fields);
    decoded += ok::<GetConsumerRunningInfoRequestHeader>(fields);
    decoded += ok::<PullMessageRequestHeader>(fields);
    decoded += ok::<PullMessageResponseHeader>(fields);
    decoded += ok::<QueryConsumerOffsetRequestHeader>(fields);
    decoded += ok::<QueryConsumerOffsetResponseHeader>(fields);
    decoded += ok::<UpdateConsumerOffsetRequestHeader>(fields);
    decoded += ok::<UpdateConsumerOffsetResponseHeader>(fields);
    decoded += ok::<GetMaxOffsetRequestHeader>(fields);
    decoded += ok::<GetMaxOffsetResponseHeader>(fields);
    decoded += ok::<GetMinOffsetRequestHeader>(fields);
    decoded += ok::<GetMinOffsetResponseHeader>(fields);
    if let Ok(search) = SearchOffsetRequestHeader::decode(fields) {
        decoded += 1 + usize::from(search.boundary().is_ok());
    }
    decoded += ok::<SearchOffsetResponseHeader>(fields);
    decoded += ok::<GetEarliestMsgStoretimeRequestHeader>(fields);
    decoded += ok::<GetEarliestMsgStoretimeResponseHeader>(fields);
    decoded += ok::<ConsumerSendMsgBackRequestHeader>(fields);
    decoded += ok::<QueryMessageRequestHeader>(fields);
    decoded += ok::<QueryMessageResponseHeader>(fields);
    decoded += ok::<ViewMessageRequestHeader>(fields);
    decoded += ok::<UnregisterClientRequestHeader>(fields);
    decoded += ok::<GetConsumerListByGroupRequestHeader>(fields);
    decoded += ok::<NotifyConsumerIdsChangedRequestHeader>(fields);
    decoded += ok::<CreateTopicRequestHeader>(fields);
    decoded += ok::<DeleteTopicRequestHeader>(fields);
    decoded += ok::<DeleteTopicFromNamesrvRequestHeader>(fields);
    decoded += ok::<GetTopicConfigRequestHeader>(fields);
    decoded += ok::<GetTopicStatsInfoRequestHeader>(fields);
    decoded += ok::<QueryTopicConsumeByWhoRequestHeader>(fields);
    decoded += ok::<GetTopicsByClusterRequestHeader>(fields);
    decoded += ok::<GetConsumeStatsRequestHeader>(fields);
    decoded += ok::<GetConsumerConnectionListRequestHeader>(fields);
    decoded += ok::<DeleteSubscriptionGroupRequestHeader>(fields);
    decoded += ok::<RegisterBrokerRequestHeader>(fields);
    decoded += ok::<RegisterBrokerResponseHeader>(fields);
    decoded += ok::<UnregisterBrokerRequestHeader>(fields);
    decoded += ok::<GetRouteInfoRequestHeader>(fields);
    decoded += ok::<PutKvConfigRequestHeader>(fields);
    decoded += ok::<GetKvConfigRequestHeader>(fields);
    decoded += ok::<GetKvConfigResponseHeader>(fields);
    decoded += ok::<DeleteKvConfigRequestHeader>(fields);
    decoded += ok::<GetKvListByNamespaceRequestHeader>(fields);
    decoded
}

#[cfg(test)]
mod tests {
    use super::flags::{message_sys_flag, perm_name, pull_sys_flag};
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> ExtFields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The extFields a Java 4.9 producer sends with SEND_MESSAGE_V2.
    fn java_v2_fields() -> ExtFields {
        fields(&[
            ("a", "pg"),
            ("b", "TopicTest"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "2"),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("i", "KEYS\u{1}k1\u{2}TAGS\u{1}TagA\u{2}"),
            ("j", "0"),
            ("k", "false"),
            ("l", "16"),
            ("m", "false"),
        ])
    }

    #[test]
    fn v2_decodes_by_code_and_converts_to_long_names() {
        let mut command = RemotingCommand::bare_request(RequestCode::SEND_MESSAGE_V2);
        command.ext_fields = java_v2_fields();
        let header = SendMessageRequestHeader::decode_any(&command).unwrap();
        assert_eq!(header.producer_group, "pg");
        assert_eq!(header.topic, "TopicTest");
        assert_eq!(header.queue_id, 2);
        assert_eq!(header.born_timestamp, 1_700_000_000_000);
        assert_eq!(header.max_reconsume_times, Some(16));
        assert_eq!(header.batch, Some(false));
        assert!(!header.is_batch(RequestCode::SEND_MESSAGE_V2.code()));
        assert!(header.is_batch(RequestCode::SEND_BATCH_MESSAGE.code()));
        // Back to the short form gives the exact same map.
        let v2: SendMessageRequestHeaderV2 = header.into();
        assert_eq!(v2.to_ext_fields(), java_v2_fields());
    }

    #[test]
    fn go_style_long_names_decode_for_code_10() {
        let go = fields(&[
            ("producerGroup", "pg"),
            ("topic", "T"),
            ("queueId", "1"),
            ("sysFlag", "0"),
            ("bornTimestamp", "5"),
            ("flag", "0"),
            ("properties", ""),
            ("reconsumeTimes", "0"),
            ("unitMode", "false"),
            ("maxReconsumeTimes", "0"),
            ("batch", "false"),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "4"),
            ("bname", "broker-a"),
        ]);
        let header = decode_send_fields(10, &go).unwrap();
        assert_eq!(header.broker_name.as_deref(), Some("broker-a"));
        assert_eq!(header.to_ext_fields(), go);
        // The same map under code 310 lacks the short names.
        assert_eq!(decode_send_fields(310, &go), Err(HeaderError::Missing("a")));
        // An unknown code falls back to recognising the fields.
        assert!(decode_send_fields(9999, &go).is_ok());
        assert!(decode_send_fields(9999, &java_v2_fields()).is_ok());
    }

    #[test]
    fn required_fields_are_required() {
        let err = PullMessageRequestHeader::decode(&fields(&[("topic", "T")])).unwrap_err();
        assert_eq!(err, HeaderError::Missing("consumerGroup"));
        let err = QueryConsumerOffsetResponseHeader::decode(&ExtFields::new()).unwrap_err();
        assert_eq!(err, HeaderError::Missing("offset"));
    }

    #[test]
    fn search_boundary() {
        let mut h = SearchOffsetRequestHeader::default();
        assert_eq!(h.boundary(), Ok(BoundaryType::Lower));
        h.boundary_type = Some("upper".into());
        assert_eq!(h.boundary(), Ok(BoundaryType::Upper));
        h.boundary_type = Some("middle".into());
        assert!(h.boundary().is_err());
    }

    #[test]
    fn flags() {
        let f = pull_sys_flag::build(true, true, true, false);
        assert_eq!(f, 0x7);
        assert!(pull_sys_flag::has_suspend(f));
        assert!(!pull_sys_flag::has_commit_offset(
            pull_sys_flag::clear_commit_offset(f)
        ));
        assert!(pull_sys_flag::has_lite_pull(
            pull_sys_flag::LITE_PULL_MESSAGE
        ));
        assert!(!pull_sys_flag::has_class_filter(f));
        assert!(pull_sys_flag::has_subscription(f));
        let m = message_sys_flag::reset_transaction_value(
            message_sys_flag::MULTI_TAGS | message_sys_flag::TRANSACTION_PREPARED_TYPE,
            message_sys_flag::TRANSACTION_COMMIT_TYPE,
        );
        assert_eq!(
            message_sys_flag::transaction_value(m),
            message_sys_flag::TRANSACTION_COMMIT_TYPE
        );
        assert_eq!(
            m & message_sys_flag::MULTI_TAGS,
            message_sys_flag::MULTI_TAGS
        );
        assert_eq!(perm_name::to_text(6), "RW-");
        assert_eq!(perm_name::to_text(7), "RWX");
    }

    #[test]
    fn register_broker_header_names() {
        let header = RegisterBrokerRequestHeader {
            broker_name: "broker-a".into(),
            broker_addr: "10.0.0.1:10911".into(),
            cluster_name: "DefaultCluster".into(),
            ha_server_addr: "10.0.0.1:10912".into(),
            broker_id: 0,
            heartbeat_timeout_millis: Some(120_000),
            enable_acting_master: Some(false),
            compressed: Some(false),
            body_crc32: Some(-5),
        };
        let ext = header.to_ext_fields();
        let keys: Vec<&str> = ext.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "bodyCrc32",
                "brokerAddr",
                "brokerId",
                "brokerName",
                "clusterName",
                "compressed",
                "enableActingMaster",
                "haServerAddr",
                "heartbeatTimeoutMillis"
            ]
        );
        assert_eq!(RegisterBrokerRequestHeader::decode(&ext), Ok(header));
    }

    #[test]
    fn decode_all_never_fails_loudly() {
        // The send helper, the V2 header itself, and the three headers without required fields.
        assert_eq!(decode_all(310, &java_v2_fields()), 5);
        // Only the three headers without required fields accept an empty map.
        assert_eq!(decode_all(0, &ExtFields::new()), 3);
    }
}
