//! Route and cluster JSON bodies exchanged with the NameServer, with RocketMQ's field names.
//!
//! Maps with numeric keys (`brokerAddrs`: brokerId → address) are written with quoted keys, which
//! every client reads. Plain fastjson writes them bare (`{0:"addr"}`), which is not JSON, so
//! [`from_json`] reads through [`crate::body::from_json`], which quotes such keys first.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::body::BodyError;
/// `to_json` and `KVTable` live in [`crate::body`]; route callers keep their old names.
pub use crate::body::{KvTable as KVTable, to_json};

/// `MixAll.MASTER_ID`: the brokerId of a group's master.
pub const MASTER_ID: i64 = 0;

/// KV namespace whose entries become a topic's `orderTopicConf` (`NamesrvUtil`).
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// Why a route body could not be read; the message is fit for a response remark.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Json(#[from] BodyError),
    #[error("compressed RegisterBrokerBody: {0}")]
    Compressed(String),
}

/// `TopicRouteData`: which broker groups hold a topic and where they listen.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// Static-topic mapping; carried through untouched because Ferrum does not create them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<serde_json::Value>,
}

/// `QueueData`: one broker group's queues of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    #[serde(default)]
    pub topic_sys_flag: i32,
}

/// `BrokerData`: one broker group, its cluster and the address of each member by brokerId.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(default)]
    pub enable_acting_master: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    /// The master's address, if the master is registered.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// `ClusterInfo`: every broker group and which cluster each belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// `DataVersion`: the broker bumps it whenever its topic configuration changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub counter: i64,
    /// 5.x only; 4.x brokers omit it, which reads as 0.
    #[serde(default)]
    pub state_version: i64,
}

/// `TopicConfig` as a broker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    pub topic_name: String,
    #[serde(default = "default_queue_nums")]
    pub read_queue_nums: i32,
    #[serde(default = "default_queue_nums")]
    pub write_queue_nums: i32,
    #[serde(default = "default_perm")]
    pub perm: i32,
    #[serde(default = "default_filter_type")]
    pub topic_filter_type: String,
    #[serde(default)]
    pub topic_sys_flag: i32,
    #[serde(default)]
    pub order: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

// Defaults of `TopicConfig.java`'s fields.
fn default_queue_nums() -> i32 {
    16
}
fn default_perm() -> i32 {
    PERM_READ | PERM_WRITE
}
fn default_filter_type() -> String {
    "SINGLE_TAG".to_owned()
}

/// `PermName`: the topic / broker permission bits.
pub const PERM_PRIORITY: i32 = 0x8;
pub const PERM_READ: i32 = 0x4;
pub const PERM_WRITE: i32 = 0x2;
pub const PERM_INHERIT: i32 = 0x1;

impl TopicConfig {
    /// A topic with RocketMQ's defaults and the given queue counts.
    pub fn new(topic_name: impl Into<String>, queues: i32) -> Self {
        TopicConfig {
            topic_name: topic_name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: default_perm(),
            topic_filter_type: default_filter_type(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }
}

/// `TopicConfigSerializeWrapper` (5.x: `TopicConfigAndMappingSerializeWrapper`; the static-topic
/// mapping fields are ignored on read).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    #[serde(default)]
    pub data_version: DataVersion,
}

/// Written in the 5.x shape a Java broker sends: `TopicConfigAndMappingSerializeWrapper`
/// initialises its static-topic maps and `mappingDataVersion`, so they are always present on the
/// wire. Readers that take them as required fields (rocketmq-rust's NameServer) refuse the body
/// without them. Ferrum creates no static topics, so the maps are empty.
impl Serialize for TopicConfigSerializeWrapper {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            topic_config_table: &'a BTreeMap<String, TopicConfig>,
            data_version: &'a DataVersion,
            topic_queue_mapping_info_map: BTreeMap<String, serde_json::Value>,
            topic_queue_mapping_detail_map: BTreeMap<String, serde_json::Value>,
            mapping_data_version: DataVersion,
        }
        Wire {
            topic_config_table: &self.topic_config_table,
            data_version: &self.data_version,
            topic_queue_mapping_info_map: BTreeMap::new(),
            topic_queue_mapping_detail_map: BTreeMap::new(),
            mapping_data_version: DataVersion::default(),
        }
        .serialize(serializer)
    }
}

/// `RegisterBrokerBody`: the body of REGISTER_BROKER.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    #[serde(default)]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    #[serde(default)]
    pub filter_server_list: Vec<String>,
}

/// Largest inflated size accepted for a compressed RegisterBrokerBody: the frame limit, so a
/// small hostile body cannot make the reader allocate without bound.
pub const MAX_INFLATED_REGISTER_BODY: usize = crate::MAX_FRAME_LENGTH;

impl RegisterBrokerBody {
    /// Reads a REGISTER_BROKER body. `compressed` is the request header's flag.
    pub fn decode(body: &[u8], compressed: bool) -> Result<Self, RouteError> {
        if compressed {
            return decode_compressed(body);
        }
        from_json(body, "RegisterBrokerBody")
    }

    /// The compressed form a broker sends with `compressedRegister=true`
    /// (`RegisterBrokerBody.encode(true)`): a zlib stream of big-endian i32-length-prefixed
    /// parts — DataVersion JSON, the topic count, each topic as `TopicConfig.encode()` text,
    /// the filter-server list JSON and (5.x) the static-topic mapping count, here always 0.
    pub fn encode_compressed(&self) -> Result<Vec<u8>, RouteError> {
        use std::io::Write;
        let wrapper = &self.topic_config_serialize_wrapper;
        let mut plain = Vec::new();
        put_part(&mut plain, &to_json(&wrapper.data_version))?;
        put_int(&mut plain, wrapper.topic_config_table.len())?;
        for config in wrapper.topic_config_table.values() {
            let text = format!(
                "{} {} {} {} {} {}",
                config.topic_name,
                config.read_queue_nums,
                config.write_queue_nums,
                config.perm,
                config.topic_filter_type,
                String::from_utf8_lossy(&to_json(&config.attributes))
            );
            put_part(&mut plain, text.as_bytes())?;
        }
        put_part(&mut plain, &to_json(&self.filter_server_list))?;
        put_int(&mut plain, 0)?;
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        encoder
            .write_all(&plain)
            .and_then(|()| encoder.finish())
            .map_err(|e| RouteError::Compressed(format!("zlib: {e}")))
    }
}

/// Writes a count or length as the big-endian i32 Java reads, refusing one that does not fit.
fn put_int(out: &mut Vec<u8>, value: usize) -> Result<(), RouteError> {
    let value = i32::try_from(value).map_err(|_| {
        RouteError::Compressed(format!("{value} does not fit an i32 length or count"))
    })?;
    out.extend_from_slice(&value.to_be_bytes());
    Ok(())
}

fn put_part(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), RouteError> {
    put_int(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

fn decode_compressed(body: &[u8]) -> Result<RegisterBrokerBody, RouteError> {
    use std::io::Read;
    let bad = |why: String| RouteError::Compressed(why);
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(body)
        .take(MAX_INFLATED_REGISTER_BODY as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| bad(format!("not a zlib stream: {e}")))?;
    if plain.len() > MAX_INFLATED_REGISTER_BODY {
        return Err(bad(format!(
            "inflates beyond {MAX_INFLATED_REGISTER_BODY} bytes"
        )));
    }
    let mut reader = PartReader { rest: &plain };
    let mut out = RegisterBrokerBody::default();
    let wrapper = &mut out.topic_config_serialize_wrapper;
    wrapper.data_version = from_json(reader.part("dataVersion")?, "DataVersion")?;
    let count = reader.int("topic count")?;
    for index in 0..count {
        let text = reader.part("topic config")?;
        let config = parse_topic_config(text).ok_or_else(|| {
            bad(format!(
                "topic config #{index} is not 'name read write perm filterType [attributes]'"
            ))
        })?;
        wrapper
            .topic_config_table
            .insert(config.topic_name.clone(), config);
    }
    out.filter_server_list = from_json(reader.part("filterServerList")?, "filterServerList")?;
    // 4.x brokers end here; 5.x adds static-topic mappings, which Ferrum does not serve.
    if !reader.rest.is_empty() {
        let mappings = reader.int("topic queue mapping count")?;
        for _ in 0..mappings {
            reader.part("topic queue mapping")?;
        }
    }
    Ok(out)
}

struct PartReader<'a> {
    rest: &'a [u8],
}

impl<'a> PartReader<'a> {
    fn int(&mut self, what: &str) -> Result<i32, RouteError> {
        let Some((head, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(RouteError::Compressed(format!("ends before the {what}")));
        };
        self.rest = rest;
        Ok(i32::from_be_bytes(*head))
    }

    fn part(&mut self, what: &str) -> Result<&'a [u8], RouteError> {
        let len = self.int(what)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= self.rest.len())
            .ok_or_else(|| {
                RouteError::Compressed(format!(
                    "{what} length {len} exceeds the {} bytes left",
                    self.rest.len()
                ))
            })?;
        let (part, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(part)
    }
}

/// `TopicConfig.decode`: space-separated name, read and write queue counts, perm, filter type,
/// then (5.x) the attributes as JSON. Sys flag and order are not carried in this form.
fn parse_topic_config(bytes: &[u8]) -> Option<TopicConfig> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut fields = text.splitn(6, ' ');
    let name = fields.next().filter(|n| !n.is_empty())?;
    let read = fields.next()?.parse().ok()?;
    let write = fields.next()?.parse().ok()?;
    let perm = fields.next()?.parse().ok()?;
    let filter = fields.next()?;
    if filter.is_empty() {
        return None;
    }
    // Java ignores attributes it cannot parse; so does this.
    let attributes = fields
        .next()
        .filter(|a| !a.trim().is_empty())
        .and_then(|a| from_json(a.as_bytes(), "attributes").ok())
        .unwrap_or_default();
    Some(TopicConfig {
        topic_name: name.to_owned(),
        read_queue_nums: read,
        write_queue_nums: write,
        perm,
        topic_filter_type: filter.to_owned(),
        topic_sys_flag: 0,
        order: false,
        attributes,
    })
}

/// `TopicList`: GET_ALL_TOPIC_LIST_FROM_NAMESERVER and friends.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    #[serde(default)]
    pub topic_list: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

/// Reads a body written either as standard JSON or by plain fastjson (bare numeric keys).
pub fn from_json<T: DeserializeOwned>(body: &[u8], what: &'static str) -> Result<T, RouteError> {
    Ok(crate::body::from_json(body, what)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_stays_an_error() {
        let err = from_json::<BrokerData>(b"{0:", "BrokerData").unwrap_err();
        assert!(err.to_string().contains("BrokerData"), "{err}");
        assert!(from_json::<BrokerData>(b"{-:1}", "BrokerData").is_err());
    }

    #[test]
    fn register_body_json_carries_the_5x_mapping_fields() {
        let mut body = RegisterBrokerBody::default();
        body.topic_config_serialize_wrapper
            .topic_config_table
            .insert("T".to_owned(), TopicConfig::new("T", 4));
        body.topic_config_serialize_wrapper.data_version = DataVersion {
            timestamp: 7,
            counter: 3,
            state_version: 1,
        };
        let json: serde_json::Value = serde_json::from_slice(&to_json(&body)).expect("valid JSON");
        let wrapper = &json["topicConfigSerializeWrapper"];
        assert_eq!(wrapper["topicQueueMappingInfoMap"], serde_json::json!({}));
        assert_eq!(wrapper["topicQueueMappingDetailMap"], serde_json::json!({}));
        assert_eq!(
            wrapper["mappingDataVersion"],
            serde_json::json!({"timestamp": 0, "counter": 0, "stateVersion": 0})
        );
        assert_eq!(wrapper["dataVersion"]["counter"], 3);
        assert_eq!(json["filterServerList"], serde_json::json!([]));
        let back: RegisterBrokerBody =
            from_json(&to_json(&body), "RegisterBrokerBody").expect("reads");
        assert_eq!(back, body);
    }

    #[test]
    fn compressed_register_body_round_trips() {
        let mut body = RegisterBrokerBody::default();
        let wrapper = &mut body.topic_config_serialize_wrapper;
        wrapper.data_version = DataVersion {
            timestamp: 1_700_000_000_000,
            counter: 9,
            state_version: 0,
        };
        let mut config = TopicConfig::new("TopicTest", 8);
        config
            .attributes
            .insert("+message.type".into(), "NORMAL".into());
        wrapper
            .topic_config_table
            .insert("TopicTest".into(), config);
        wrapper
            .topic_config_table
            .insert("TBW102".into(), TopicConfig::new("TBW102", 4));
        body.filter_server_list = vec!["10.0.0.9:4000".into()];
        let packed = body.encode_compressed().expect("encode");
        assert_eq!(
            RegisterBrokerBody::decode(&packed, true).expect("decode"),
            body
        );
    }

    #[test]
    fn compressed_four_x_layout_without_mappings() {
        use std::io::Write;
        // What a 4.x broker writes: no attributes, no static-topic mapping count.
        let mut plain = Vec::new();
        put_part(&mut plain, br#"{"counter":2,"timestamp":7}"#).expect("part");
        put_int(&mut plain, 1).expect("int");
        put_part(&mut plain, b"T 4 4 6 SINGLE_TAG").expect("part");
        put_part(&mut plain, b"[]").expect("part");
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&plain).expect("write");
        let body =
            RegisterBrokerBody::decode(&enc.finish().expect("finish"), true).expect("decode");
        let wrapper = body.topic_config_serialize_wrapper;
        assert_eq!(wrapper.data_version.counter, 2);
        assert_eq!(wrapper.topic_config_table["T"], TopicConfig::new("T", 4));
    }

    #[test]
    fn lengths_beyond_i32_are_refused_not_capped() {
        let mut out = Vec::new();
        put_int(&mut out, i32::MAX as usize).expect("fits");
        let err = put_int(&mut out, i32::MAX as usize + 1).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        assert_eq!(
            out,
            i32::MAX.to_be_bytes(),
            "nothing written for the refused value"
        );
    }

    #[test]
    fn bad_compressed_bodies_are_clear_errors() {
        let err = RegisterBrokerBody::decode(b"\x00\x01", true).unwrap_err();
        assert!(err.to_string().contains("zlib"), "{err}");

        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[0x7f, 0, 0, 0, b'{']).expect("write");
        let err = RegisterBrokerBody::decode(&enc.finish().expect("finish"), true).unwrap_err();
        assert!(err.to_string().contains("dataVersion length"), "{err}");

        // A bomb: many zero bytes squeezed small must not be inflated past the limit.
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_INFLATED_REGISTER_BODY >> 20) + 1 {
            enc.write_all(&zeros).expect("write");
        }
        let err = RegisterBrokerBody::decode(&enc.finish().expect("finish"), true).unwrap_err();
        assert!(err.to_string().contains("inflates beyond"), "{err}");
    }
}
