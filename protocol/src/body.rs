//! JSON bodies other than routes: heartbeats, consumer lists, queue locks, consume statistics,
//! connections and KV tables, with RocketMQ's field names.
//!
//! Reading is lenient: unknown fields are ignored and missing ones take their default, because
//! every client version adds or drops a few. Java's fastjson also writes JSON that is not JSON:
//! a map whose keys are objects (`Map<MessageQueue, OffsetWrapper>` becomes
//! `{{"brokerName":"b","queueId":0,"topic":"t"}:{...}}`) or numbers (`{0:"addr"}`). [`from_json`]
//! accepts those by quoting such keys first, and the bodies keyed by [`MessageQueue`] are written
//! in fastjson's form because Java's admin tool reads them with fastjson into `MessageQueue` keys.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

/// Why a body could not be read; the message is fit for a response remark.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the {what} body is not UTF-8 text")]
    NotUtf8 { what: &'static str },
    #[error("the body is not valid {what} JSON: {reason}")]
    Json { what: &'static str, reason: String },
}

fn json_error(what: &'static str, err: impl std::fmt::Display) -> BodyError {
    BodyError::Json {
        what,
        reason: err.to_string(),
    }
}

/// Reads `bytes` as `T`, accepting fastjson's bare numeric and object map keys.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, BodyError> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| BodyError::NotUtf8 { what })?;
    let normalized = normalize_fastjson(text).map_err(|reason| json_error(what, reason))?;
    serde_json::from_str(&normalized).map_err(|e| json_error(what, e))
}

/// Writes `value` as standard JSON.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Every body here is made of strings, numbers, sequences and string-keyed maps, which
    // serde_json always serializes.
    serde_json::to_vec(value).unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
enum Container {
    Object { expect_key: bool },
    Array,
}

/// Rewrites fastjson's non-standard object keys (bare tokens, nested objects or arrays) as JSON
/// strings holding their text, leaving everything else byte for byte.
pub fn normalize_fastjson(text: &str) -> Result<Cow<'_, str>, &'static str> {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len() + 16);
    let mut stack: Vec<Container> = Vec::new();
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let expect_key = matches!(stack.last(), Some(Container::Object { expect_key: true }));
        if expect_key && !c.is_ascii_whitespace() && c != b'"' && c != b'}' {
            let end = if c == b'{' || c == b'[' {
                scan_balanced(bytes, i)?
            } else {
                scan_bare(bytes, i)
            };
            if end == i {
                return Err("an object key is missing");
            }
            let key = text.get(i..end).ok_or("a key splits a character")?.trim();
            out.extend_from_slice(quote(key).as_bytes());
            set_expect_key(&mut stack, false);
            changed = true;
            i = end;
            continue;
        }
        match c {
            b'"' => {
                let end = scan_string(bytes, i)?;
                out.extend_from_slice(&bytes[i..end]);
                set_expect_key(&mut stack, false);
                i = end;
                continue;
            }
            b'{' => stack.push(Container::Object { expect_key: true }),
            b'[' => stack.push(Container::Array),
            b'}' | b']' => {
                stack.pop();
            }
            b':' => set_expect_key(&mut stack, false),
            b',' => set_expect_key(&mut stack, true),
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    if !changed {
        return Ok(Cow::Borrowed(text));
    }
    // Only whole UTF-8 sequences were copied and only ASCII was added.
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "the text is not UTF-8")
}

fn set_expect_key(stack: &mut [Container], expect: bool) {
    if let Some(Container::Object { expect_key }) = stack.last_mut() {
        *expect_key = expect;
    }
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""))
}

/// The index just past the string that starts with the quote at `start`.
fn scan_string(bytes: &[u8], start: usize) -> Result<usize, &'static str> {
    let mut j = start + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            b'"' => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err("a string is not terminated")
}

/// The index just past the object or array that starts at `start`.
fn scan_balanced(bytes: &[u8], start: usize) -> Result<usize, &'static str> {
    let mut depth = 0usize;
    let mut j = start;
    while j < bytes.len() {
        match bytes[j] {
            b'"' => {
                j = scan_string(bytes, j)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err("an object key is not terminated")
}

/// The index just past a bare key token such as `0` or `-1`.
fn scan_bare(bytes: &[u8], start: usize) -> usize {
    let mut j = start;
    while j < bytes.len()
        && !matches!(bytes[j], b':' | b',' | b'}' | b']')
        && !bytes[j].is_ascii_whitespace()
    {
        j += 1;
    }
    j
}

/// Accepts a string, number or boolean as text: clients disagree on how enums travel.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// `MessageQueue`: one queue of a topic on one broker group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    pub broker_name: String,
    pub queue_id: i32,
    pub topic: String,
}

impl MessageQueue {
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        MessageQueue {
            broker_name: broker_name.into(),
            queue_id,
            topic: topic.into(),
        }
    }
}

/// `ProducerData`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    pub group_name: String,
}

/// `SubscriptionData`: one topic a consumer group subscribes to and its filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    pub class_filter_mode: bool,
    pub topic: String,
    /// The filter expression: `*`, `TagA || TagB`, or SQL92 text.
    pub sub_string: String,
    pub tags_set: Vec<String>,
    /// Java `String.hashCode` of each tag.
    pub code_set: Vec<i32>,
    pub sub_version: i64,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        SubscriptionData {
            class_filter_mode: false,
            topic: String::new(),
            sub_string: String::new(),
            tags_set: Vec::new(),
            code_set: Vec::new(),
            sub_version: 0,
            expression_type: String::from("TAG"),
        }
    }
}

/// `ConsumerData`: one consumer group as a client describes it in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    pub group_name: String,
    /// `CONSUME_ACTIVELY` (pull), `CONSUME_PASSIVELY` (push) or `CONSUME_POP`.
    #[serde(deserialize_with = "lenient_string")]
    pub consume_type: String,
    /// `CLUSTERING` or `BROADCASTING`.
    #[serde(deserialize_with = "lenient_string")]
    pub message_model: String,
    /// `CONSUME_FROM_LAST_OFFSET`, `CONSUME_FROM_FIRST_OFFSET`, `CONSUME_FROM_TIMESTAMP`, ...
    #[serde(deserialize_with = "lenient_string")]
    pub consume_from_where: String,
    pub subscription_data_set: Vec<SubscriptionData>,
    pub unit_mode: bool,
}

/// `HeartbeatData`, the HEART_BEAT (34) body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub producer_data_set: Vec<ProducerData>,
    pub consumer_data_set: Vec<ConsumerData>,
    pub heartbeat_fingerprint: i32,
    /// Java's field is `isWithoutSub`, but fastjson names it after the getter `isWithoutSub()`.
    #[serde(alias = "isWithoutSub")]
    pub without_sub: bool,
}

/// `GetConsumerListByGroupResponseBody`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerListByGroupResponseBody {
    pub consumer_id_list: Vec<String>,
}

/// `LockBatchRequestBody` (LOCK_BATCH_MQ 41).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    pub consumer_group: String,
    pub client_id: String,
    pub only_this_broker: bool,
    pub mq_set: Vec<MessageQueue>,
}

/// `LockBatchResponseBody`: the queues now locked by the asking client.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// `UnlockBatchRequestBody` (UNLOCK_BATCH_MQ 42).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UnlockBatchRequestBody {
    pub consumer_group: String,
    pub client_id: String,
    pub only_this_broker: bool,
    pub mq_set: Vec<MessageQueue>,
}

/// `OffsetWrapper`: one queue's progress in [`ConsumeStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetWrapper {
    pub broker_offset: i64,
    pub consumer_offset: i64,
    pub pull_offset: i64,
    pub last_timestamp: i64,
}

/// `ConsumeStats`, the GET_CONSUME_STATS (208) body the admin tool's `consumerProgress` reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsumeStats {
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
    pub consume_tps: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConsumeStats {
    offset_table: BTreeMap<String, OffsetWrapper>,
    consume_tps: f64,
}

impl Default for RawConsumeStats {
    fn default() -> Self {
        RawConsumeStats {
            offset_table: BTreeMap::new(),
            consume_tps: 0.0,
        }
    }
}

impl ConsumeStats {
    /// Sum over queues of broker offset minus consumer offset (`computeTotalDiff`).
    pub fn total_diff(&self) -> i64 {
        self.offset_table
            .values()
            .map(|w| w.broker_offset - w.consumer_offset)
            .sum()
    }

    /// fastjson's form, with [`MessageQueue`] objects as keys.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::from("{\"consumeTps\":");
        out.push_str(&number_text(self.consume_tps));
        out.push_str(",\"offsetTable\":");
        write_queue_map(&mut out, &self.offset_table);
        out.push('}');
        out.into_bytes()
    }

    /// Reads fastjson's form or standard JSON with the keys as strings holding queue objects.
    pub fn decode(bytes: &[u8]) -> Result<Self, BodyError> {
        let raw: RawConsumeStats = from_json(bytes, "ConsumeStats")?;
        Ok(ConsumeStats {
            offset_table: queue_keys(raw.offset_table, "ConsumeStats")?,
            consume_tps: raw.consume_tps,
        })
    }
}

/// `TopicOffset`: one queue's bounds in [`TopicStatsTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicOffset {
    pub min_offset: i64,
    pub max_offset: i64,
    pub last_update_timestamp: i64,
}

/// `TopicStatsTable`, the GET_TOPIC_STATS_INFO (202) body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicStatsTable {
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawTopicStatsTable {
    offset_table: BTreeMap<String, TopicOffset>,
}

impl TopicStatsTable {
    /// fastjson's form, with [`MessageQueue`] objects as keys.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::from("{\"offsetTable\":");
        write_queue_map(&mut out, &self.offset_table);
        out.push('}');
        out.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, BodyError> {
        let raw: RawTopicStatsTable = from_json(bytes, "TopicStatsTable")?;
        Ok(TopicStatsTable {
            offset_table: queue_keys(raw.offset_table, "TopicStatsTable")?,
        })
    }
}

fn number_text(value: f64) -> String {
    // fastjson writes NaN and infinities as null, which Java reads back as 0 for a double.
    if value.is_finite() {
        serde_json::Value::from(value).to_string()
    } else {
        String::from("0.0")
    }
}

fn write_queue_map<V: Serialize>(out: &mut String, map: &BTreeMap<MessageQueue, V>) {
    out.push('{');
    for (n, (queue, value)) in map.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&String::from_utf8_lossy(&to_json(queue)));
        out.push(':');
        out.push_str(&String::from_utf8_lossy(&to_json(value)));
    }
    out.push('}');
}

fn queue_keys<V>(
    raw: BTreeMap<String, V>,
    what: &'static str,
) -> Result<BTreeMap<MessageQueue, V>, BodyError> {
    raw.into_iter()
        .map(|(key, value)| Ok((from_json::<MessageQueue>(key.as_bytes(), what)?, value)))
        .collect()
}

/// `Connection`: one client connection of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Connection {
    pub client_id: String,
    pub client_addr: String,
    /// The `LanguageCode` name, e.g. `JAVA`.
    #[serde(deserialize_with = "lenient_string")]
    pub language: String,
    pub version: i32,
}

/// `ConsumerConnection`, the GET_CONSUMER_CONNECTION_LIST (203) body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerConnection {
    pub connection_set: Vec<Connection>,
    /// topic → subscription.
    pub subscription_table: BTreeMap<String, SubscriptionData>,
    #[serde(deserialize_with = "lenient_string")]
    pub consume_type: String,
    #[serde(deserialize_with = "lenient_string")]
    pub message_model: String,
    #[serde(deserialize_with = "lenient_string")]
    pub consume_from_where: String,
}

impl ConsumerConnection {
    /// The lowest client version among the connections (`computeMinVersion`).
    pub fn min_version(&self) -> Option<i32> {
        self.connection_set.iter().map(|c| c.version).min()
    }
}

/// `GroupList`, the QUERY_TOPIC_CONSUME_BY_WHO (300) body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupList {
    pub group_list: Vec<String>,
}

/// `KVTable`: the GET_KVLIST_BY_NAMESPACE (219) body, the REGISTER_BROKER answer and the
/// broker's runtime info (`route::KVTable` names the same type).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KvTable {
    pub table: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_heartbeat_is_read() {
        // Shape of a Java 4.9 push consumer's heartbeat as fastjson writes it.
        let body = br#"{"clientID":"10.0.0.5@1234","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"cg","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"TopicTest"},{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1,"tagsSet":[],"topic":"%RETRY%cg"}],"unitMode":false}],"heartbeatFingerprint":0,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],"withoutSub":false,"futureField":{"x":1}}"#;
        let hb: HeartbeatData = from_json(body, "HeartbeatData").unwrap();
        assert_eq!(hb.client_id, "10.0.0.5@1234");
        assert_eq!(hb.producer_data_set[0].group_name, "CLIENT_INNER_PRODUCER");
        let consumer = &hb.consumer_data_set[0];
        assert_eq!(consumer.consume_type, "CONSUME_PASSIVELY");
        assert_eq!(consumer.subscription_data_set[0].code_set, [2_598_919]);
        assert_eq!(consumer.subscription_data_set[1].topic, "%RETRY%cg");
        let again: HeartbeatData = from_json(&to_json(&hb), "HeartbeatData").unwrap();
        assert_eq!(again, hb);
    }

    #[test]
    fn minimal_heartbeat_takes_defaults() {
        let hb: HeartbeatData =
            from_json(br#"{"clientID":"c","isWithoutSub":true,"consumerDataSet":[{"groupName":"g","consumeFromWhere":1}]}"#, "HeartbeatData")
                .unwrap();
        assert!(hb.without_sub);
        assert!(hb.producer_data_set.is_empty());
        assert_eq!(hb.consumer_data_set[0].consume_from_where, "1");
    }

    #[test]
    fn lock_bodies_use_java_names() {
        let body = LockBatchResponseBody {
            lock_ok_mq_set: vec![MessageQueue::new("T", "broker-a", 1)],
        };
        assert_eq!(
            String::from_utf8(to_json(&body)).unwrap(),
            r#"{"lockOKMQSet":[{"brokerName":"broker-a","queueId":1,"topic":"T"}]}"#
        );
        let req: LockBatchRequestBody = from_json(
            br#"{"consumerGroup":"g","clientId":"c","onlyThisBroker":true,"mqSet":[{"topic":"T","brokerName":"b","queueId":0}]}"#,
            "LockBatchRequestBody",
        )
        .unwrap();
        assert!(req.only_this_broker);
        assert_eq!(req.mq_set, [MessageQueue::new("T", "b", 0)]);
    }

    #[test]
    fn consume_stats_in_fastjson_form() {
        let mut stats = ConsumeStats {
            consume_tps: 1.5,
            ..Default::default()
        };
        stats.offset_table.insert(
            MessageQueue::new("T", "broker-a", 0),
            OffsetWrapper {
                broker_offset: 10,
                consumer_offset: 7,
                pull_offset: 9,
                last_timestamp: 1_700_000_000_000,
            },
        );
        let text = String::from_utf8(stats.encode()).unwrap();
        assert_eq!(
            text,
            r#"{"consumeTps":1.5,"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"brokerOffset":10,"consumerOffset":7,"pullOffset":9,"lastTimestamp":1700000000000}}}"#
        );
        assert_eq!(ConsumeStats::decode(text.as_bytes()).unwrap(), stats);
        assert_eq!(stats.total_diff(), 3);
        // A standards-minded writer quotes the key object; that reads the same.
        let quoted = r#"{"offsetTable":{"{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"T\"}":{"brokerOffset":10,"consumerOffset":7,"pullOffset":9,"lastTimestamp":1700000000000}},"consumeTps":1.5}"#;
        assert_eq!(ConsumeStats::decode(quoted.as_bytes()).unwrap(), stats);
        // Pretty-printed, as Java tools dump it (apache/rocketmq-dashboard#297 shows this shape).
        let pretty = "{\n  \"offsetTable\": {\n    {\n      \"brokerName\": \"broker-a\",\n      \"queueId\": 0,\n      \"topic\": \"T\"\n    }: {\"brokerOffset\": 10, \"consumerOffset\": 7,\n \"pullOffset\": 9, \"lastTimestamp\": 1700000000000}\n  },\n  \"consumeTps\": 1.5\n}";
        assert_eq!(ConsumeStats::decode(pretty.as_bytes()).unwrap(), stats);
    }

    #[test]
    fn topic_stats_round_trip() {
        let mut table = TopicStatsTable::default();
        table.offset_table.insert(
            MessageQueue::new("T", "b", 3),
            TopicOffset {
                min_offset: 0,
                max_offset: 5,
                last_update_timestamp: 9,
            },
        );
        assert_eq!(TopicStatsTable::decode(&table.encode()).unwrap(), table);
    }

    #[test]
    fn bare_numeric_keys_are_quoted() {
        let text = r#"{"table":{0:"zero", -1 : "minus"},"s":"{0:not a key}"}"#;
        let normalized = normalize_fastjson(text).unwrap();
        assert_eq!(
            normalized,
            r#"{"table":{"0":"zero", "-1" : "minus"},"s":"{0:not a key}"}"#
        );
        assert!(matches!(
            normalize_fastjson(r#"{"a":1}"#),
            Ok(Cow::Borrowed(_))
        ));
        assert!(normalize_fastjson(r#"{{"a":"#).is_err());
        assert!(normalize_fastjson(r#"{"a"#).is_err());
    }

    #[test]
    fn bare_keys_are_quoted_outside_strings_only() {
        let raw = r#"{0:"a:1",1 : "b", "x":[1,2], "s":"{3:4}", -1:{2:"c"}}"#;
        assert_eq!(
            normalize_fastjson(raw).unwrap(),
            r#"{"0":"a:1","1" : "b", "x":[1,2], "s":"{3:4}", "-1":{"2":"c"}}"#
        );
        let standard = r#"{"0":"a","list":[0,1],"esc":"\"{5:6}"}"#;
        assert!(matches!(normalize_fastjson(standard), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn consumer_connection_and_kv() {
        let body = br#"{"connectionSet":[{"clientAddr":"10.0.0.5:5555","clientId":"c1","language":"JAVA","version":401},{"clientId":"c2","language":"GO","version":317}],"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","subscriptionTable":{"T":{"subString":"*","topic":"T"}}}"#;
        let conn: ConsumerConnection = from_json(body, "ConsumerConnection").unwrap();
        assert_eq!(conn.min_version(), Some(317));
        assert_eq!(conn.subscription_table["T"].expression_type, "TAG");
        let kv: KvTable = from_json(br#"{"table":{"a":"1"}}"#, "KVTable").unwrap();
        assert_eq!(kv.table["a"], "1");
        assert!(from_json::<KvTable>(b"\xff", "KVTable").is_err());
        let list: ConsumerListByGroupResponseBody =
            from_json(br#"{"consumerIdList":["a","b"]}"#, "list").unwrap();
        assert_eq!(list.consumer_id_list.len(), 2);
    }
}
