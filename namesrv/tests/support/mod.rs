//! Test support: the real `ferrum-namesrv` binary on a loopback port and a tiny remoting client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use ferrum_protocol::headers::{GetRouteInfoRequestHeader, RegisterBrokerRequestHeader};
use ferrum_protocol::route::{
    DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper, to_json,
};
use ferrum_protocol::{RemotingCodec, RemotingCommand, RequestCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Every network wait in these tests is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

/// A running NameServer, killed when dropped.
pub struct NameSrv {
    child: Child,
    pub addr: SocketAddr,
}

impl NameSrv {
    pub fn start(extra: &[&str]) -> NameSrv {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> NameSrv {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrum-namesrv"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferrum-namesrv");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the startup line");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in startup line {line:?}"));
        NameSrv { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ferrum-namesrv did not exit within 10 s");
    }
}

impl Drop for NameSrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One remoting connection.
pub struct Conn {
    framed: Framed<TcpStream, RemotingCodec>,
    opaque: i32,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Conn {
        let stream = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        Conn {
            framed: Framed::new(stream, RemotingCodec::default()),
            opaque: 0,
        }
    }

    pub async fn call(&mut self, mut request: RemotingCommand) -> RemotingCommand {
        self.opaque += 1;
        request.opaque = self.opaque;
        tokio::time::timeout(STEP, self.framed.send(request))
            .await
            .expect("send timed out")
            .expect("send");
        let response = tokio::time::timeout(STEP, self.framed.next())
            .await
            .expect("no answer in time")
            .expect("connection closed instead of answering")
            .expect("unreadable answer");
        assert_eq!(response.opaque, self.opaque, "answer to another request");
        assert!(response.is_response());
        response
    }

    /// Sends a oneway request, then `next` with a normal call, returning the answer to `next`.
    pub async fn call_after_oneway(
        &mut self,
        oneway: RemotingCommand,
        next: RemotingCommand,
    ) -> RemotingCommand {
        self.opaque += 1;
        let oneway = oneway.with_opaque(self.opaque);
        tokio::time::timeout(STEP, self.framed.send(oneway))
            .await
            .expect("send timed out")
            .expect("send");
        self.call(next).await
    }

    pub async fn route(&mut self, topic: &str) -> RemotingCommand {
        self.call(route_request(topic)).await
    }
}

pub fn route_request(topic: &str) -> RemotingCommand {
    RemotingCommand::request(
        RequestCode::GET_ROUTEINFO_BY_TOPIC,
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        },
    )
}

/// A REGISTER_BROKER as a Java broker sends it, holding `topics` with 4 queues each.
pub fn register_request(
    cluster: &str,
    name: &str,
    addr: &str,
    id: i64,
    topics: &[&str],
) -> RemotingCommand {
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: topics
                .iter()
                .map(|t| ((*t).to_owned(), TopicConfig::new(*t, 4)))
                .collect(),
            data_version: DataVersion {
                timestamp: 1,
                counter: 1,
                state_version: 0,
            },
        },
        filter_server_list: vec![],
    };
    RemotingCommand::request(
        RequestCode::REGISTER_BROKER,
        &RegisterBrokerRequestHeader {
            broker_name: name.into(),
            broker_addr: addr.into(),
            cluster_name: cluster.into(),
            ha_server_addr: "127.0.0.1:10912".into(),
            broker_id: id,
            ..Default::default()
        },
    )
    .with_body(Bytes::from(to_json(&body)))
}

/// Asks for `topic`'s route every 50 ms until the answer has `code`, failing after `STEP`.
pub async fn wait_for_route_code(conn: &mut Conn, topic: &str, code: i32) -> RemotingCommand {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let response = conn.route(topic).await;
        if response.code == code {
            return response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "route of {topic} still answers {} ({:?}) instead of {code}",
            response.code,
            response.remark
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
