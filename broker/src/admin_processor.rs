//! The consumer-progress and topic-status queries of the admin tool: GET_TOPIC_STATS_INFO 202,
//! GET_CONSUMER_CONNECTION_LIST 203, GET_CONSUME_STATS 208, QUERY_TOPIC_CONSUME_BY_WHO 300 and
//! GET_ALL_CONSUMER_OFFSET 43.
//!
//! `ConsumeStats` and `TopicStatsTable` are maps keyed by a `MessageQueue` object, which fastjson
//! writes as an object used as a key (`{{"brokerName":..}:{..}}`). That is not JSON, but it is
//! what Java's admin tool parses, so those bodies are written by hand here.

use std::collections::{BTreeMap, BTreeSet};

use ferrum_protocol::headers::{
    GetConsumeStatsRequestHeader, GetConsumerConnectionListRequestHeader,
    GetTopicStatsInfoRequestHeader, QueryTopicConsumeByWhoRequestHeader,
};
use ferrum_protocol::message::MessageView;
use ferrum_protocol::route::to_json;
use ferrum_protocol::{RemotingCommand, ResponseCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client_manager::MessageQueue;
use crate::processor::BrokerCore;

/// Writes `{mq:value,...}` with each `MessageQueue` key as a JSON object, as fastjson does.
pub fn fastjson_mq_map(entries: &[(MessageQueue, Value)]) -> String {
    let mut out = String::from("{");
    for (i, (mq, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // fastjson orders fields alphabetically: brokerName, queueId, topic.
        let key = json!({"brokerName": mq.broker_name, "queueId": mq.queue_id, "topic": mq.topic});
        out.push_str(&key.to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

impl BrokerCore {
    fn mq(&self, topic: &str, queue_id: i32) -> MessageQueue {
        MessageQueue {
            topic: topic.to_owned(),
            broker_name: self.config.broker_name.clone(),
            queue_id,
        }
    }

    /// Store time of the message before `offset` in a queue (0 if there is none).
    fn store_time_before(&self, topic: &str, queue_id: i32, offset: i64) -> i64 {
        if offset <= 0 {
            return 0;
        }
        self.store
            .get_commit_log_offset_in_queue(topic, queue_id, offset - 1)
            .and_then(|phy| self.store.lookup_message_by_offset(phy))
            .and_then(|r| {
                MessageView::decode(&r, false)
                    .ok()
                    .map(|(v, _)| v.store_timestamp)
            })
            .unwrap_or(0)
    }

    pub(crate) fn topic_stats(&self, request: &RemotingCommand) -> RemotingCommand {
        let header: GetTopicStatsInfoRequestHeader = match request.decode_header() {
            Ok(h) => h,
            Err(e) => return request.error_to(ResponseCode::SYSTEM_ERROR, e.to_string()),
        };
        let Some(topic) = self.topics.get(&header.topic) else {
            return request.error_to(
                ResponseCode::TOPIC_NOT_EXIST,
                format!("topic[{}] not exist", header.topic),
            );
        };
        let entries: Vec<(MessageQueue, Value)> = (0..topic.write_queue_nums)
            .map(|q| {
                let max = self.store.get_max_offset_in_queue(&header.topic, q);
                let min = self.store.get_min_offset_in_queue(&header.topic, q);
                let last = self.store_time_before(&header.topic, q, max);
                (
                    self.mq(&header.topic, q),
                    json!({"lastUpdateTimestamp": last, "maxOffset": max, "minOffset": min}),
                )
            })
            .collect();
        let body = format!("{{\"offsetTable\":{}}}", fastjson_mq_map(&entries));
        request.success_to().with_body(body.into_bytes())
    }

    pub(crate) fn consumer_connections(&self, request: &RemotingCommand) -> RemotingCommand {
        let header: GetConsumerConnectionListRequestHeader = match request.decode_header() {
            Ok(h) => h,
            Err(e) => return request.error_to(ResponseCode::SYSTEM_ERROR, e.to_string()),
        };
        let Some((data, connections)) = self.clients.consumer_connections(&header.consumer_group)
        else {
            return request.error_to(
                ResponseCode::CONSUMER_NOT_ONLINE,
                format!("the consumer group[{}] not online", header.consumer_group),
            );
        };
        let subscription_table: BTreeMap<String, Value> = data
            .subscription_data_set
            .iter()
            .filter_map(|s| {
                let topic = s.get("topic")?.as_str()?;
                Some((topic.to_owned(), s.clone()))
            })
            .collect();
        let body = json!({
            "connectionSet": connections,
            "subscriptionTable": subscription_table,
            "consumeType": data.consume_type,
            "messageModel": data.message_model,
            "consumeFromWhere": data.consume_from_where,
        });
        request
            .success_to()
            .with_body(body.to_string().into_bytes())
    }

    pub(crate) fn consume_stats(&self, request: &RemotingCommand) -> RemotingCommand {
        let header: GetConsumeStatsRequestHeader = match request.decode_header() {
            Ok(h) => h,
            Err(e) => return request.error_to(ResponseCode::SYSTEM_ERROR, e.to_string()),
        };
        let group = &header.consumer_group;
        let topics: BTreeSet<String> = match header.topic.filter(|t| !t.is_empty()) {
            Some(topic) => [topic].into(),
            None => {
                let mut topics: BTreeSet<String> =
                    self.offsets.topics_of_group(group).into_iter().collect();
                if let Some(data) = self.clients.consumer_data(group) {
                    topics.extend(data.topics().map(str::to_owned));
                }
                topics
            }
        };
        let mut entries = Vec::new();
        for topic in &topics {
            let Some(config) = self.topics.get(topic) else {
                continue;
            };
            for q in 0..config.read_queue_nums {
                let broker_offset = self.store.get_max_offset_in_queue(topic, q);
                let consumer_offset = self.offsets.query(group, topic, q).unwrap_or(0).max(0);
                let last = self.store_time_before(topic, q, consumer_offset);
                entries.push((
                    self.mq(topic, q),
                    json!({
                        "brokerOffset": broker_offset,
                        "consumerOffset": consumer_offset,
                        "lastTimestamp": last,
                        // Pull positions are not tracked apart from commits, so nothing
                        // reads as in flight rather than a negative count.
                        "pullOffset": consumer_offset,
                    }),
                ));
            }
        }
        let body = format!(
            "{{\"consumeTps\":0.0,\"offsetTable\":{}}}",
            fastjson_mq_map(&entries)
        );
        request.success_to().with_body(body.into_bytes())
    }

    pub(crate) fn consumed_by_who(&self, request: &RemotingCommand) -> RemotingCommand {
        let header: QueryTopicConsumeByWhoRequestHeader = match request.decode_header() {
            Ok(h) => h,
            Err(e) => return request.error_to(ResponseCode::SYSTEM_ERROR, e.to_string()),
        };
        let mut groups: BTreeSet<String> = self
            .clients
            .groups_subscribing(&header.topic)
            .into_iter()
            .collect();
        groups.extend(self.offsets.groups_of_topic(&header.topic));
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct GroupList {
            group_list: BTreeSet<String>,
        }
        request
            .success_to()
            .with_body(to_json(&GroupList { group_list: groups }))
    }

    pub(crate) fn all_consumer_offsets(&self, request: &RemotingCommand) -> RemotingCommand {
        request
            .success_to()
            .with_body(to_json(&self.offsets.snapshot()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_queue_keys_are_written_as_objects() {
        let mq = MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: 1,
        };
        let text = fastjson_mq_map(&[(mq, json!({"maxOffset": 3}))]);
        assert_eq!(
            text,
            r#"{{"brokerName":"b","queueId":1,"topic":"T"}:{"maxOffset":3}}"#
        );
        assert_eq!(fastjson_mq_map(&[]), "{}");
    }
}
