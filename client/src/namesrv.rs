//! `NameServerClient`: route, cluster, topic-list and KV-config queries with fail-over across
//! every NameServer address.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrum_protocol::route::{self, ClusterInfo, KVTable, TopicList, TopicRouteData};
use ferrum_protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};

use crate::connection::{ConnectionPool, DEFAULT_REQUEST_TIMEOUT, response_error};
use crate::error::{ClientError, Result};

/// Splits a RocketMQ `namesrvAddr` list (`a:9876;b:9876`, commas accepted too).
pub fn parse_addrs(list: &str) -> Vec<String> {
    list.split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A client of a set of NameServers. NameServers do not talk to each other and each holds the
/// whole route table, so any one that answers will do: calls start at the last one that worked
/// and move on when one cannot be reached.
#[derive(Debug, Clone)]
pub struct NameServerClient {
    addrs: Arc<Vec<String>>,
    pool: ConnectionPool,
    preferred: Arc<AtomicUsize>,
    timeout: Duration,
}

pub(crate) fn request(code: RequestCode, fields: &[(&str, String)]) -> RemotingCommand {
    let mut cmd = RemotingCommand::bare_request(code);
    cmd.ext_fields = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect::<ExtFields>();
    cmd
}

impl NameServerClient {
    /// A client of the given addresses (`host:port` each). Nothing connects until the first call.
    pub fn new<S: AsRef<str>>(addrs: impl IntoIterator<Item = S>) -> Self {
        Self::with_pool(addrs, ConnectionPool::default())
    }

    /// Like [`new`](Self::new), sharing an existing connection pool.
    pub fn with_pool<S: AsRef<str>>(
        addrs: impl IntoIterator<Item = S>,
        pool: ConnectionPool,
    ) -> Self {
        NameServerClient {
            addrs: Arc::new(addrs.into_iter().map(|a| a.as_ref().to_owned()).collect()),
            pool,
            preferred: Arc::new(AtomicUsize::new(0)),
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Sends `cmd` to one NameServer after another until one answers; returns the answer and
    /// the address that gave it. Any answer counts, whatever its code.
    pub async fn invoke_any(&self, cmd: RemotingCommand) -> Result<(String, RemotingCommand)> {
        if self.addrs.is_empty() {
            return Err(ClientError::NoNameServer);
        }
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.addrs.len() {
            let index = (start + i) % self.addrs.len();
            let addr = &self.addrs[index];
            match self.pool.invoke(addr, cmd.clone(), self.timeout).await {
                Ok(answer) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok((addr.clone(), answer));
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "NameServer call failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(ClientError::AllNameServersFailed(Box::new(
            last.unwrap_or(ClientError::NoNameServer),
        )))
    }

    /// Sends `cmd` to every NameServer (for writes such as DELETE_TOPIC_IN_NAMESRV). Fails with
    /// the first error after trying all of them.
    pub async fn invoke_all(&self, cmd: RemotingCommand) -> Result<()> {
        if self.addrs.is_empty() {
            return Err(ClientError::NoNameServer);
        }
        let mut first_error = None;
        for addr in self.addrs.iter() {
            if let Err(e) = self.pool.invoke_ok(addr, cmd.clone(), self.timeout).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn invoke_ok_any(&self, cmd: RemotingCommand) -> Result<(String, RemotingCommand)> {
        let (addr, answer) = self.invoke_any(cmd).await?;
        if answer.code != ResponseCode::SUCCESS.code() {
            return Err(response_error(&addr, &answer));
        }
        Ok((addr, answer))
    }

    /// GET_ROUTEINFO_BY_TOPIC; TOPIC_NOT_EXIST becomes [`ClientError::TopicNotExist`].
    pub async fn topic_route(&self, topic: &str) -> Result<TopicRouteData> {
        let cmd = request(
            RequestCode::GET_ROUTEINFO_BY_TOPIC,
            &[
                ("topic", topic.to_owned()),
                ("acceptStandardJsonOnly", "true".to_owned()),
            ],
        );
        let (addr, answer) = self.invoke_any(cmd).await?;
        if answer.code == ResponseCode::TOPIC_NOT_EXIST.code() {
            return Err(ClientError::TopicNotExist(topic.to_owned()));
        }
        if answer.code != ResponseCode::SUCCESS.code() {
            return Err(response_error(&addr, &answer));
        }
        decode_body(&addr, &answer.body, "TopicRouteData")
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let (addr, answer) = self
            .invoke_ok_any(RemotingCommand::bare_request(
                RequestCode::GET_BROKER_CLUSTER_INFO,
            ))
            .await?;
        decode_body(&addr, &answer.body, "ClusterInfo")
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
    pub async fn all_topics(&self) -> Result<TopicList> {
        let (addr, answer) = self
            .invoke_ok_any(RemotingCommand::bare_request(
                RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
            ))
            .await?;
        decode_body(&addr, &answer.body, "TopicList")
    }

    /// GET_KV_CONFIG; `None` when the key is not set (QUERY_NOT_FOUND).
    pub async fn kv_config(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        let cmd = request(
            RequestCode::GET_KV_CONFIG,
            &[("namespace", namespace.to_owned()), ("key", key.to_owned())],
        );
        let (addr, answer) = self.invoke_any(cmd).await?;
        if answer.code == ResponseCode::QUERY_NOT_FOUND.code() {
            return Ok(None);
        }
        if answer.code != ResponseCode::SUCCESS.code() {
            return Err(response_error(&addr, &answer));
        }
        Ok(answer.ext_fields.get("value").cloned())
    }

    /// PUT_KV_CONFIG on every NameServer.
    pub async fn put_kv_config(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        self.invoke_all(request(
            RequestCode::PUT_KV_CONFIG,
            &[
                ("namespace", namespace.to_owned()),
                ("key", key.to_owned()),
                ("value", value.to_owned()),
            ],
        ))
        .await
    }

    /// GET_KVLIST_BY_NAMESPACE.
    pub async fn kv_list(&self, namespace: &str) -> Result<KVTable> {
        let cmd = request(
            RequestCode::GET_KVLIST_BY_NAMESPACE,
            &[("namespace", namespace.to_owned())],
        );
        let (addr, answer) = self.invoke_any(cmd).await?;
        if answer.code == ResponseCode::QUERY_NOT_FOUND.code() {
            return Ok(KVTable::default());
        }
        if answer.code != ResponseCode::SUCCESS.code() {
            return Err(response_error(&addr, &answer));
        }
        decode_body(&addr, &answer.body, "KVTable")
    }

    /// DELETE_TOPIC_IN_NAMESRV on every NameServer.
    pub async fn delete_topic(&self, topic: &str, cluster: Option<&str>) -> Result<()> {
        let mut fields = vec![("topic", topic.to_owned())];
        if let Some(cluster) = cluster {
            fields.push(("clusterName", cluster.to_owned()));
        }
        self.invoke_all(request(RequestCode::DELETE_TOPIC_IN_NAMESRV, &fields))
            .await
    }
}

pub(crate) fn decode_body<T: serde::de::DeserializeOwned>(
    addr: &str,
    body: &[u8],
    what: &'static str,
) -> Result<T> {
    route::from_json(body, what).map_err(|e| ClientError::BadResponse {
        addr: addr.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads a required numeric / string field of an answer's custom header.
#[allow(dead_code)]
pub(crate) fn header_field<T: std::str::FromStr>(
    addr: &str,
    answer: &RemotingCommand,
    name: &str,
) -> Result<T> {
    let value = answer
        .ext_fields
        .get(name)
        .ok_or_else(|| ClientError::BadResponse {
            addr: addr.to_owned(),
            reason: format!(
                "the answer to request {} lacks the header field '{name}'",
                answer.code
            ),
        })?;
    value.trim().parse().map_err(|_| ClientError::BadResponse {
        addr: addr.to_owned(),
        reason: format!("header field '{name}' has an invalid value '{value}'"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{dead_addr, serve};

    const ROUTE: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    #[test]
    fn address_lists_split_on_semicolons() {
        assert_eq!(parse_addrs(" a:1; b:2;;c:3 "), vec!["a:1", "b:2", "c:3"]);
        assert!(parse_addrs("").is_empty());
    }

    #[tokio::test]
    async fn fails_over_to_a_live_nameserver_and_types_missing_topics() {
        let live = serve(|req| {
            let topic = req.ext_fields.get("topic").cloned().unwrap_or_default();
            if topic == "T" {
                vec![req.success_to().with_body(ROUTE)]
            } else {
                vec![req.error_to(
                    ResponseCode::TOPIC_NOT_EXIST,
                    format!("No topic route info in name server for the topic: {topic}"),
                )]
            }
        })
        .await;
        let client = NameServerClient::new([dead_addr().await, live]);
        let route = client.topic_route("T").await.expect("route");
        assert_eq!(route.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        let err = client.topic_route("missing").await.expect_err("missing");
        assert!(
            matches!(err, ClientError::TopicNotExist(ref t) if t == "missing"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn every_nameserver_down_is_one_clear_error() {
        let client = NameServerClient::new([dead_addr().await, dead_addr().await]);
        let err = client.cluster_info().await.expect_err("down");
        assert!(matches!(err, ClientError::AllNameServersFailed(_)), "{err}");
        let err = NameServerClient::new(Vec::<String>::new())
            .all_topics()
            .await
            .expect_err("none");
        assert!(matches!(err, ClientError::NoNameServer), "{err}");
    }
}
