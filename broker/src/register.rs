//! Registration with every NameServer: at start, every `registerNameServerPeriod`, at once when
//! the topic configuration changes, and UNREGISTER_BROKER on clean shutdown.
//!
//! Each NameServer gets one long-lived connection, because a NameServer drops a broker as soon
//! as its connection closes; a failed connection is reopened at the next round.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrum_protocol::route::{RegisterBrokerBody, to_json};
use ferrum_protocol::{RemotingCodec, RemotingCommand, RequestCode, ResponseCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;

use crate::processor::BrokerCore;
use ferrum_protocol::headers::{
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, UnregisterBrokerRequestHeader,
};

/// Why one call to a NameServer failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("cannot connect to NameServer {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("NameServer {addr}: {reason}")]
    Transport { addr: String, reason: String },
    #[error("NameServer {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("NameServer {addr} refused with code {code}: {remark}")]
    Refused {
        addr: String,
        code: i32,
        remark: String,
    },
}

/// One NameServer and the connection to it.
#[derive(Debug)]
struct NameServerLink {
    addr: String,
    conn: Option<Framed<TcpStream, RemotingCodec>>,
    next_opaque: i32,
}

impl NameServerLink {
    fn new(addr: String) -> Self {
        NameServerLink {
            addr,
            conn: None,
            next_opaque: 1,
        }
    }

    async fn call(
        &mut self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RegisterError> {
        let result = tokio::time::timeout(timeout, async {
            if self.conn.is_none() {
                let stream = TcpStream::connect(&self.addr).await.map_err(|source| {
                    RegisterError::Connect {
                        addr: self.addr.clone(),
                        source,
                    }
                })?;
                let _ = stream.set_nodelay(true);
                self.conn = Some(Framed::new(stream, RemotingCodec::default()));
            }
            let addr = self.addr.clone();
            let transport = |reason: String| RegisterError::Transport {
                addr: addr.clone(),
                reason,
            };
            let opaque = self.next_opaque;
            self.next_opaque = self.next_opaque.wrapping_add(1);
            request.opaque = opaque;
            let Some(conn) = self.conn.as_mut() else {
                return Err(transport("no connection".into()));
            };
            conn.send(request)
                .await
                .map_err(|e| transport(e.to_string()))?;
            loop {
                match conn.next().await {
                    Some(Ok(answer)) if answer.is_response() && answer.opaque == opaque => {
                        return Ok(answer);
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(transport(e.to_string())),
                    None => return Err(transport("connection closed".into())),
                }
            }
        })
        .await;
        let result = result.unwrap_or_else(|_| {
            Err(RegisterError::Timeout {
                addr: self.addr.clone(),
                timeout,
            })
        });
        if result.is_err() {
            // The stream may hold half an answer; start clean next time.
            self.conn = None;
        }
        result
    }
}

/// What the last successful registration told us (used by slaves to find their master).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RegisterResult {
    pub master_addr: Option<String>,
    pub ha_server_addr: Option<String>,
}

/// Runs the registration loop until `shutdown`, then unregisters.
#[derive(Debug)]
pub struct Registrar {
    core: Arc<BrokerCore>,
    links: Vec<NameServerLink>,
    pub last_result: Arc<Mutex<RegisterResult>>,
}

impl Registrar {
    pub fn new(core: Arc<BrokerCore>) -> Self {
        let links = core
            .config
            .namesrv_addr
            .iter()
            .cloned()
            .map(NameServerLink::new)
            .collect();
        Registrar {
            core,
            links,
            last_result: Arc::default(),
        }
    }

    fn register_request(&self) -> RemotingCommand {
        let config = &self.core.config;
        let body = RegisterBrokerBody {
            topic_config_serialize_wrapper: self.core.topics.snapshot(),
            filter_server_list: Vec::new(),
        };
        // The runtime id: a promoted slave registers as 0 without a restart.
        let broker_id = self.core.ha.role().broker_id;
        let header = RegisterBrokerRequestHeader {
            broker_name: config.broker_name.clone(),
            broker_addr: config.registered_addr(broker_id),
            cluster_name: config.broker_cluster_name.clone(),
            ha_server_addr: config.ha_server_addr(),
            broker_id,
            heartbeat_timeout_millis: None,
            enable_acting_master: None,
            compressed: Some(false),
            // 0 tells the NameServer not to check the body's CRC.
            body_crc32: Some(0),
        };
        RemotingCommand::request(RequestCode::REGISTER_BROKER, &header).with_body(to_json(&body))
    }

    /// Registers with every NameServer at once; returns how many accepted.
    pub async fn register_all(&mut self) -> usize {
        let request = self.register_request();
        let timeout = Duration::from_millis(self.core.config.register_broker_timeout_mills);
        let calls = self
            .links
            .iter_mut()
            .map(|link| {
                let request = request.clone();
                async move {
                    let addr = link.addr.clone();
                    (addr, link.call(request, timeout).await)
                }
            })
            .collect::<Vec<_>>();
        let mut accepted = 0;
        let (mut refused, mut failed) = (0, 0);
        for (addr, result) in futures::future::join_all(calls).await {
            match result {
                Ok(answer) if answer.code == ResponseCode::SUCCESS.code() => {
                    accepted += 1;
                    let header: RegisterBrokerResponseHeader =
                        answer.decode_header().unwrap_or_default();
                    let mut last = self.last_result.lock().unwrap_or_else(|e| e.into_inner());
                    let result = RegisterResult {
                        master_addr: header.master_addr.filter(|a| !a.is_empty()),
                        ha_server_addr: header.ha_server_addr.filter(|a| !a.is_empty()),
                    };
                    if *last != result {
                        tracing::info!(namesrv = %addr, master = ?result.master_addr, ha = ?result.ha_server_addr, "registered with NameServer");
                    }
                    self.core.ha.set_master_addrs(
                        result.master_addr.clone(),
                        result.ha_server_addr.clone(),
                    );
                    *last = result;
                }
                Ok(answer) => {
                    refused += 1;
                    tracing::warn!(
                        namesrv = %addr,
                        code = answer.code,
                        remark = answer.remark.as_deref().unwrap_or(""),
                        "NameServer refused the registration"
                    )
                }
                Err(error) => {
                    failed += 1;
                    tracing::warn!(%error, "registration failed")
                }
            }
        }
        self.core.metrics.registered(accepted, refused, failed);
        accepted
    }

    /// Tells every NameServer this broker is leaving.
    pub async fn unregister_all(&mut self) {
        let broker_id = self.core.ha.role().broker_id;
        self.unregister_id(broker_id).await;
    }

    /// Unregisters this broker under `broker_id` (its old id after a role change).
    async fn unregister_id(&mut self, broker_id: i64) {
        let config = &self.core.config;
        let header = UnregisterBrokerRequestHeader {
            broker_name: config.broker_name.clone(),
            broker_addr: config.registered_addr(broker_id),
            cluster_name: config.broker_cluster_name.clone(),
            broker_id,
        };
        let request = RemotingCommand::request(RequestCode::UNREGISTER_BROKER, &header);
        let timeout = Duration::from_secs(3);
        let calls = self.links.iter_mut().map(|link| {
            let request = request.clone();
            async move { link.call(request, timeout).await }
        });
        for result in futures::future::join_all(calls).await {
            if let Err(error) = result {
                tracing::warn!(%error, "unregistration failed");
            }
        }
    }

    /// Registers now, then every period and on every topic change, until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if self.links.is_empty() {
            tracing::warn!("namesrvAddr is empty: this broker registers with no NameServer");
            return;
        }
        let period = Duration::from_millis(self.core.config.register_name_server_period);
        let mut role = self.core.ha.subscribe();
        let mut registered_id = role.borrow_and_update().broker_id;
        // The id every NameServer last accepted, so a role change is logged once it is announced.
        let mut announced_id = None;
        loop {
            // A master partitioned while a slave was promoted steps down before it registers
            // as brokerId 0 again; the role change below then re-registers it as a slave.
            // In Raft mode the election decides, never an epoch comparison.
            if self.core.raft.get().is_none() {
                crate::ha::remote::demote_if_superseded(&self.core).await;
            }
            let id = self.core.ha.role().broker_id;
            let accepted = self.register_all().await;
            if accepted == self.links.len() && announced_id != Some(id) {
                announced_id = Some(id);
                tracing::info!(
                    broker_id = id,
                    namesrvs = accepted,
                    "registered with every NameServer"
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.core.topics.changed.notified() => {}
                // A promotion or demotion is announced at once, not at the next period.
                _ = role.changed() => {
                    let id = role.borrow_and_update().broker_id;
                    if id != registered_id {
                        // A shared Raft leader address is the next leader's to take over:
                        // unregistering it could remove that leader's registration.
                        let config = &self.core.config;
                        if config.registered_addr(registered_id) == config.broker_addr() {
                            self.unregister_id(registered_id).await;
                        }
                        registered_id = id;
                    }
                }
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        self.unregister_all().await;
    }
}
