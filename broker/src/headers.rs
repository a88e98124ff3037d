//! Custom headers of the requests this broker serves and sends, with RocketMQ's field names.

use ferrum_protocol::command_header;

command_header! {
    /// `CreateTopicRequestHeader` (UPDATE_AND_CREATE_TOPIC 17).
    pub struct CreateTopicRequestHeader {
        topic: String = "topic",
        default_topic: Option<String> = "defaultTopic",
        read_queue_nums: i32 = "readQueueNums",
        write_queue_nums: i32 = "writeQueueNums",
        perm: i32 = "perm",
        topic_filter_type: Option<String> = "topicFilterType",
        topic_sys_flag: Option<i32> = "topicSysFlag",
        order: Option<bool> = "order",
    }
}

command_header! {
    /// `DeleteTopicRequestHeader` (DELETE_TOPIC_IN_BROKER 215).
    pub struct DeleteTopicRequestHeader {
        topic: String = "topic",
    }
}

command_header! {
    /// `DeleteSubscriptionGroupRequestHeader` (DELETE_SUBSCRIPTIONGROUP 207).
    pub struct DeleteSubscriptionGroupRequestHeader {
        group_name: String = "groupName",
        clean_offset: Option<bool> = "cleanOffset",
    }
}

command_header! {
    /// `QueryConsumerOffsetRequestHeader` (QUERY_CONSUMER_OFFSET 14).
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
    }
}

command_header! {
    /// `QueryConsumerOffsetResponseHeader`.
    pub struct QueryConsumerOffsetResponseHeader {
        offset: i64 = "offset",
    }
}

command_header! {
    /// `UpdateConsumerOffsetRequestHeader` (UPDATE_CONSUMER_OFFSET 15).
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        commit_offset: i64 = "commitOffset",
    }
}

command_header! {
    /// `UnregisterClientRequestHeader` (UNREGISTER_CLIENT 35).
    pub struct UnregisterClientRequestHeader {
        client_id: String = "clientID",
        producer_group: Option<String> = "producerGroup",
        consumer_group: Option<String> = "consumerGroup",
    }
}

command_header! {
    /// `GetConsumerListByGroupRequestHeader` (38) and `NotifyConsumerIdsChangedRequestHeader`
    /// (40) share this one field.
    pub struct ConsumerGroupHeader {
        consumer_group: String = "consumerGroup",
    }
}

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
        compressed: bool = "compressed",
        body_crc32: i32 = "bodyCrc32",
    }
}

command_header! {
    /// `RegisterBrokerResponseHeader`.
    pub struct RegisterBrokerResponseHeader {
        ha_server_addr: Option<String> = "haServerAddr",
        master_addr: Option<String> = "masterAddr",
    }
}

command_header! {
    /// `UnRegisterBrokerRequestHeader` (UNREGISTER_BROKER 104).
    pub struct UnRegisterBrokerRequestHeader {
        broker_name: String = "brokerName",
        broker_addr: String = "brokerAddr",
        cluster_name: String = "clusterName",
        broker_id: i64 = "brokerId",
    }
}
