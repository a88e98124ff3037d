//! Headers the broker reads more leniently than `ferrum_protocol::headers` does; every other
//! header comes from there.

use ferrum_protocol::command_header;

command_header! {
    /// `CreateTopicRequestHeader` (UPDATE_AND_CREATE_TOPIC 17). Java marks `defaultTopic`,
    /// `topicFilterType` and `order` required, but tools and older clients omit them and the
    /// broker has sensible defaults for each, so their absence is not refused.
    pub struct CreateTopicRequestHeader {
        topic: String = "topic",
        default_topic: Option<String> = "defaultTopic",
        read_queue_nums: i32 = "readQueueNums",
        write_queue_nums: i32 = "writeQueueNums",
        perm: i32 = "perm",
        topic_filter_type: Option<String> = "topicFilterType",
        topic_sys_flag: Option<i32> = "topicSysFlag",
        order: Option<bool> = "order",
        /// RocketMQ 5.x: `+key=value,-key` changes to the topic's attributes.
        attributes: Option<String> = "attributes",
    }
}
