//! Request dispatch: one decoded request in, at most one response out. No I/O, so every code
//! path is unit-testable; the server only moves frames.

use std::collections::BTreeMap;

use ferrum_protocol::command_header;
use ferrum_protocol::header::CommandHeader;
use ferrum_protocol::headers::{
    DeleteKvConfigRequestHeader, DeleteTopicFromNamesrvRequestHeader, GetKvConfigRequestHeader,
    GetKvConfigResponseHeader, GetKvListByNamespaceRequestHeader, GetRouteInfoRequestHeader,
    GetTopicsByClusterRequestHeader, PutKvConfigRequestHeader, RegisterBrokerRequestHeader,
    RegisterBrokerResponseHeader, UnregisterBrokerRequestHeader,
};
use ferrum_protocol::route::{
    self, DataVersion, KVTable, NAMESPACE_ORDER_TOPIC_CONFIG, RegisterBrokerBody,
};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::route_info::{ConnId, Registration, RouteInfoManager};

command_header! {
    /// `QueryDataVersionRequestHeader` (QUERY_DATA_VERSION 322).
    pub struct QueryDataVersionRequestHeader {
        broker_name: String = "brokerName",
        broker_addr: String = "brokerAddr",
        cluster_name: String = "clusterName",
        broker_id: i64 = "brokerId",
    }
}

command_header! {
    /// `BrokerHeartbeatRequestHeader` (5.x); only the identity fields matter here.
    pub struct BrokerHeartbeatRequestHeader {
        cluster_name: String = "clusterName",
        broker_addr: String = "brokerAddr",
        broker_name: String = "brokerName",
    }
}

command_header! {
    /// `QueryDataVersionResponseHeader`.
    pub struct QueryDataVersionResponseHeader {
        changed: Option<bool> = "changed",
    }
}

/// The NameServer's state: routes and the KV config (namespace → key → value).
#[derive(Debug, Default)]
pub struct NameServer {
    pub routes: RouteInfoManager,
    pub kv: BTreeMap<String, BTreeMap<String, String>>,
    pub metrics: crate::metrics::NamesrvMetrics,
}

/// Java's `UtilAll.crc32`: CRC-32 masked to a non-negative int.
fn java_crc32(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

impl NameServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `req`, which arrived on `conn` at `now_ms`. Oneway requests are processed but
    /// never answered.
    pub fn handle(
        &mut self,
        req: &RemotingCommand,
        conn: ConnId,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let response = self.dispatch(req, conn, now_ms);
        let code = match &response {
            Ok(ok) => ok.code,
            Err((code, _)) => code.code(),
        };
        self.metrics
            .observe(req, code, self.routes.live_broker_count());
        if req.is_oneway() {
            return None;
        }
        Some(response.unwrap_or_else(|(code, remark)| req.error_to(code, remark)))
    }

    fn dispatch(
        &mut self,
        req: &RemotingCommand,
        conn: ConnId,
        now_ms: u64,
    ) -> Result<RemotingCommand, (ResponseCode, String)> {
        let Some(code) = RequestCode::from_code(req.code) else {
            return Err(not_supported(req.code));
        };
        match code {
            RequestCode::REGISTER_BROKER => self.register_broker(req, conn, now_ms),
            RequestCode::UNREGISTER_BROKER => {
                let h: UnregisterBrokerRequestHeader = header(req)?;
                self.routes.unregister_broker(
                    &h.cluster_name,
                    &h.broker_addr,
                    &h.broker_name,
                    h.broker_id,
                );
                Ok(req.success_to())
            }
            RequestCode::GET_ROUTEINFO_BY_TOPIC => {
                let h: GetRouteInfoRequestHeader = header(req)?;
                let Some(mut route) = self.routes.topic_route(&h.topic) else {
                    return Err((
                        ResponseCode::TOPIC_NOT_EXIST,
                        format!(
                            "No topic route info in name server for the topic: {}",
                            h.topic
                        ),
                    ));
                };
                route.order_topic_conf = self
                    .kv
                    .get(NAMESPACE_ORDER_TOPIC_CONFIG)
                    .and_then(|ns| ns.get(&h.topic))
                    .cloned();
                // Quoted keys for everyone: fastjson, Go and Rust clients all read them.
                Ok(req.success_to().with_body(route::to_json(&route)))
            }
            RequestCode::GET_BROKER_CLUSTER_INFO => Ok(req
                .success_to()
                .with_body(route::to_json(&self.routes.cluster_info()))),
            RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => Ok(req
                .success_to()
                .with_body(route::to_json(&self.routes.all_topics()))),
            RequestCode::GET_TOPICS_BY_CLUSTER => {
                let h: GetTopicsByClusterRequestHeader = header(req)?;
                let list = self.routes.topics_by_cluster(&h.cluster);
                Ok(req.success_to().with_body(route::to_json(&list)))
            }
            RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_NS => Ok(req
                .success_to()
                .with_body(route::to_json(&self.routes.system_topics()))),
            RequestCode::DELETE_TOPIC_IN_NAMESRV => {
                let h: DeleteTopicFromNamesrvRequestHeader = header(req)?;
                self.routes
                    .delete_topic(&h.topic, h.cluster_name.as_deref());
                Ok(req.success_to())
            }
            RequestCode::PUT_KV_CONFIG => {
                let h: PutKvConfigRequestHeader = header(req)?;
                self.kv
                    .entry(h.namespace)
                    .or_default()
                    .insert(h.key, h.value);
                Ok(req.success_to())
            }
            RequestCode::GET_KV_CONFIG => {
                let h: GetKvConfigRequestHeader = header(req)?;
                match self.kv.get(&h.namespace).and_then(|ns| ns.get(&h.key)) {
                    Some(value) => Ok(req.success_to().with_header(&GetKvConfigResponseHeader {
                        value: Some(value.clone()),
                    })),
                    None => Err((
                        ResponseCode::QUERY_NOT_FOUND,
                        format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
                    )),
                }
            }
            RequestCode::DELETE_KV_CONFIG => {
                let h: DeleteKvConfigRequestHeader = header(req)?;
                if let Some(ns) = self.kv.get_mut(&h.namespace) {
                    ns.remove(&h.key);
                    if ns.is_empty() {
                        self.kv.remove(&h.namespace);
                    }
                }
                Ok(req.success_to())
            }
            RequestCode::GET_KVLIST_BY_NAMESPACE => {
                let h: GetKvListByNamespaceRequestHeader = header(req)?;
                match self.kv.get(&h.namespace) {
                    Some(table) => Ok(req.success_to().with_body(route::to_json(&KVTable {
                        table: table.clone(),
                    }))),
                    None => Err((
                        ResponseCode::QUERY_NOT_FOUND,
                        format!("No config item, Namespace: {}", h.namespace),
                    )),
                }
            }
            RequestCode::QUERY_DATA_VERSION => {
                let h: QueryDataVersionRequestHeader = header(req)?;
                let version: DataVersion =
                    route::from_json(&req.body, "DataVersion").map_err(invalid)?;
                let (changed, known) = self.routes.query_data_version(
                    &h.cluster_name,
                    &h.broker_addr,
                    &version,
                    now_ms,
                );
                let mut resp = req
                    .success_to()
                    .with_header(&QueryDataVersionResponseHeader {
                        changed: Some(changed),
                    });
                if let Some(known) = known {
                    resp = resp.with_body(route::to_json(&known));
                }
                Ok(resp)
            }
            RequestCode::BROKER_HEARTBEAT => {
                let h: BrokerHeartbeatRequestHeader = header(req)?;
                self.routes
                    .heartbeat(&h.cluster_name, &h.broker_addr, now_ms);
                Ok(req.success_to())
            }
            _ => Err(not_supported(req.code)),
        }
    }

    fn register_broker(
        &mut self,
        req: &RemotingCommand,
        conn: ConnId,
        now_ms: u64,
    ) -> Result<RemotingCommand, (ResponseCode, String)> {
        let h: RegisterBrokerRequestHeader = header(req)?;
        if let Some(expected) = h.body_crc32.filter(|c| *c != 0) {
            let actual = java_crc32(&req.body);
            if actual != expected {
                return Err((
                    ResponseCode::SYSTEM_ERROR,
                    format!("crc32 not match: header bodyCrc32={expected}, body crc32={actual}"),
                ));
            }
        }
        let body = if req.body.is_empty() {
            RegisterBrokerBody::default()
        } else {
            RegisterBrokerBody::decode(&req.body, h.compressed.unwrap_or(false)).map_err(invalid)?
        };
        let result = self.routes.register_broker(
            Registration {
                cluster_name: h.cluster_name,
                broker_addr: h.broker_addr,
                broker_name: h.broker_name,
                broker_id: h.broker_id,
                ha_server_addr: h.ha_server_addr,
                heartbeat_timeout_ms: h
                    .heartbeat_timeout_millis
                    .and_then(|t| u64::try_from(t).ok())
                    .filter(|t| *t > 0),
                enable_acting_master: h.enable_acting_master.unwrap_or(false),
                zone_name: req.ext_fields.get("zoneName").cloned(),
                body,
            },
            Some(conn),
            now_ms,
        );
        let mut resp = req.success_to().with_header(&RegisterBrokerResponseHeader {
            ha_server_addr: result.ha_server_addr,
            master_addr: result.master_addr,
        });
        // The broker reads the order-topic KV namespace from the answer.
        if let Some(table) = self.kv.get(NAMESPACE_ORDER_TOPIC_CONFIG) {
            resp = resp.with_body(route::to_json(&KVTable {
                table: table.clone(),
            }));
        }
        Ok(resp)
    }
}

fn header<H: CommandHeader>(req: &RemotingCommand) -> Result<H, (ResponseCode, String)> {
    req.decode_header()
        .map_err(|e| (ResponseCode::INVALID_PARAMETER, e.to_string()))
}

fn invalid(e: route::RouteError) -> (ResponseCode, String) {
    (ResponseCode::INVALID_PARAMETER, e.to_string())
}

fn not_supported(code: i32) -> (ResponseCode, String) {
    (
        ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
        format!("request code {code} is not supported by the NameServer"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_protocol::route::{TopicConfig, TopicConfigSerializeWrapper, TopicRouteData};

    fn register(id: i64, addr: &str) -> RemotingCommand {
        let body = RegisterBrokerBody {
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                topic_config_table: [("T".to_owned(), TopicConfig::new("T", 4))].into(),
                data_version: DataVersion::default(),
            },
            filter_server_list: vec![],
        };
        let body = route::to_json(&body);
        RemotingCommand::request(
            RequestCode::REGISTER_BROKER,
            &RegisterBrokerRequestHeader {
                broker_name: "a".into(),
                broker_addr: addr.into(),
                cluster_name: "C".into(),
                ha_server_addr: format!("{addr}-ha"),
                broker_id: id,
                body_crc32: Some(java_crc32(&body)),
                ..Default::default()
            },
        )
        .with_body(body)
    }

    fn route_request(topic: &str) -> RemotingCommand {
        RemotingCommand::request(
            RequestCode::GET_ROUTEINFO_BY_TOPIC,
            &GetRouteInfoRequestHeader {
                topic: topic.into(),
                accept_standard_json_only: None,
            },
        )
    }

    #[test]
    fn register_route_and_slave_answer() {
        let mut ns = NameServer::new();
        let resp = ns
            .handle(&register(0, "m:1"), ConnId(1), 0)
            .expect("answer");
        assert_eq!(resp.code, 0, "{:?}", resp.remark);
        let resp = ns
            .handle(&register(1, "s:1"), ConnId(2), 0)
            .expect("answer");
        let h: RegisterBrokerResponseHeader = resp.decode_header().expect("header");
        assert_eq!(h.master_addr.as_deref(), Some("m:1"));
        assert_eq!(h.ha_server_addr.as_deref(), Some("m:1-ha"));

        let resp = ns
            .handle(&route_request("T"), ConnId(3), 0)
            .expect("answer");
        assert_eq!(resp.code, 0);
        let text = String::from_utf8_lossy(&resp.body);
        assert!(
            text.contains(r#""brokerAddrs":{"0":"m:1","1":"s:1"}"#),
            "{text}"
        );
        let route: TopicRouteData = route::from_json(&resp.body, "route").expect("json");
        assert_eq!(route.queue_datas[0].read_queue_nums, 4);

        let resp = ns
            .handle(&route_request("U"), ConnId(3), 0)
            .expect("answer");
        assert_eq!(resp.code, ResponseCode::TOPIC_NOT_EXIST.code());
        assert!(resp.remark.unwrap_or_default().contains("topic: U"));
    }

    #[test]
    fn bad_input_gets_clear_errors() {
        let mut ns = NameServer::new();
        let mut bad = register(0, "m:1");
        bad.ext_fields.remove("brokerName");
        let resp = ns.handle(&bad, ConnId(1), 0).expect("answer");
        assert_eq!(resp.code, ResponseCode::INVALID_PARAMETER.code());
        assert!(resp.remark.unwrap_or_default().contains("brokerName"));

        let mut crc = register(0, "m:1");
        crc.ext_fields.insert("bodyCrc32".into(), "12345".into());
        let resp = ns.handle(&crc, ConnId(1), 0).expect("answer");
        assert_eq!(resp.code, ResponseCode::SYSTEM_ERROR.code());

        let mut json = register(0, "m:1").with_body(&b"{nope"[..]);
        json.ext_fields.remove("bodyCrc32");
        let resp = ns.handle(&json, ConnId(1), 0).expect("answer");
        assert_eq!(resp.code, ResponseCode::INVALID_PARAMETER.code());
        assert!(
            resp.remark
                .unwrap_or_default()
                .contains("RegisterBrokerBody")
        );

        let mut compressed = register(0, "m:1");
        compressed
            .ext_fields
            .insert("compressed".into(), "true".into());
        let resp = ns.handle(&compressed, ConnId(1), 0).expect("answer");
        assert!(resp.remark.unwrap_or_default().contains("compressed"));

        let resp = ns
            .handle(&RemotingCommand::bare_request(4242), ConnId(1), 0)
            .expect("answer");
        assert_eq!(resp.code, ResponseCode::REQUEST_CODE_NOT_SUPPORTED.code());
        assert!(resp.remark.unwrap_or_default().contains("4242"));

        let oneway = RemotingCommand::bare_request(4242).into_oneway();
        assert!(ns.handle(&oneway, ConnId(1), 0).is_none());
    }

    #[test]
    fn compressed_registration_is_decoded() {
        let mut ns = NameServer::new();
        let json = register(0, "m:1");
        let body: RegisterBrokerBody = route::from_json(&json.body, "body").expect("json");
        let packed = body.encode_compressed().expect("encode");
        let mut req = json.with_body(packed.clone());
        req.ext_fields.insert("compressed".into(), "true".into());
        req.ext_fields
            .insert("bodyCrc32".into(), java_crc32(&packed).to_string());
        let resp = ns.handle(&req, ConnId(1), 0).expect("answer");
        assert_eq!(resp.code, 0, "{:?}", resp.remark);
        let resp = ns
            .handle(&route_request("T"), ConnId(1), 0)
            .expect("answer");
        assert_eq!(resp.code, 0);
    }

    #[test]
    fn kv_config_codes() {
        let mut ns = NameServer::new();
        let put = RemotingCommand::request(
            RequestCode::PUT_KV_CONFIG,
            &PutKvConfigRequestHeader {
                namespace: NAMESPACE_ORDER_TOPIC_CONFIG.into(),
                key: "T".into(),
                value: "a:4".into(),
            },
        );
        assert_eq!(ns.handle(&put, ConnId(1), 0).map(|r| r.code), Some(0));
        let key = GetKvConfigRequestHeader {
            namespace: NAMESPACE_ORDER_TOPIC_CONFIG.into(),
            key: "T".into(),
        };
        let get = RemotingCommand::request(RequestCode::GET_KV_CONFIG, &key);
        let resp = ns.handle(&get, ConnId(1), 0).expect("answer");
        assert_eq!(
            resp.ext_fields.get("value").map(String::as_str),
            Some("a:4")
        );

        ns.handle(&register(0, "m:1"), ConnId(1), 0);
        let resp = ns
            .handle(&route_request("T"), ConnId(1), 0)
            .expect("answer");
        let route: TopicRouteData = route::from_json(&resp.body, "route").expect("json");
        assert_eq!(route.order_topic_conf.as_deref(), Some("a:4"));

        let list = RemotingCommand::request(
            RequestCode::GET_KVLIST_BY_NAMESPACE,
            &GetKvListByNamespaceRequestHeader {
                namespace: NAMESPACE_ORDER_TOPIC_CONFIG.into(),
            },
        );
        let resp = ns.handle(&list, ConnId(1), 0).expect("answer");
        let table: KVTable = route::from_json(&resp.body, "KVTable").expect("json");
        assert_eq!(table.table.get("T").map(String::as_str), Some("a:4"));

        let del = RemotingCommand::request(
            RequestCode::DELETE_KV_CONFIG,
            &DeleteKvConfigRequestHeader {
                namespace: key.namespace.clone(),
                key: key.key.clone(),
            },
        );
        assert_eq!(ns.handle(&del, ConnId(1), 0).map(|r| r.code), Some(0));
        let resp = ns.handle(&get, ConnId(1), 0).expect("answer");
        assert_eq!(resp.code, ResponseCode::QUERY_NOT_FOUND.code());
    }

    #[test]
    fn query_data_version_answers_changed() {
        let mut ns = NameServer::new();
        ns.handle(&register(0, "m:1"), ConnId(1), 0);
        let header = QueryDataVersionRequestHeader {
            broker_name: "a".into(),
            broker_addr: "m:1".into(),
            cluster_name: "C".into(),
            broker_id: 0,
        };
        let same = RemotingCommand::request(RequestCode::QUERY_DATA_VERSION, &header)
            .with_body(route::to_json(&DataVersion::default()));
        let resp = ns.handle(&same, ConnId(1), 0).expect("answer");
        assert_eq!(
            resp.ext_fields.get("changed").map(String::as_str),
            Some("false")
        );
        let newer = DataVersion {
            counter: 1,
            ..Default::default()
        };
        let changed = RemotingCommand::request(RequestCode::QUERY_DATA_VERSION, &header)
            .with_body(route::to_json(&newer));
        let resp = ns.handle(&changed, ConnId(1), 0).expect("answer");
        assert_eq!(
            resp.ext_fields.get("changed").map(String::as_str),
            Some("true")
        );
    }
}
