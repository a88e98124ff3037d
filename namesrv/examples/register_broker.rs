//! Registers a (pretend) broker with a NameServer the way a Java broker does, then holds the
//! connection open and re-registers every 30 s until killed, so the NameServer keeps it.
//!
//! Used by the Java compat runner: `register_broker --namesrv 127.0.0.1:9876 --topic T`.
//!
//! Like a real broker it also reports TBW102, the auto-create template topic. That matters
//! beyond realism: Apache's 5.x NameServer refuses a first registration that carries exactly one
//! topic (it takes it for a single-topic update from a broker it does not know yet).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use ferrum_protocol::headers::RegisterBrokerRequestHeader;
use ferrum_protocol::route::{
    DataVersion, PERM_INHERIT, PERM_READ, PERM_WRITE, RegisterBrokerBody, TopicConfig,
    TopicConfigSerializeWrapper, to_json,
};
use ferrum_protocol::{RemotingCodec, RemotingCommand, RequestCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// `TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`.
const AUTO_CREATE_TOPIC: &str = "TBW102";

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    namesrv: String,
    #[arg(long, default_value = "DefaultCluster")]
    cluster: String,
    #[arg(long, default_value = "broker-a")]
    broker_name: String,
    #[arg(long, default_value = "127.0.0.1:10911")]
    broker_addr: String,
    #[arg(long, default_value_t = 0)]
    broker_id: i64,
    /// Topics the broker reports (repeatable).
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
    #[arg(long, default_value_t = 8)]
    queues: i32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stream = TcpStream::connect(&args.namesrv)
        .await
        .with_context(|| format!("connecting to {}", args.namesrv))?;
    let mut framed = Framed::new(stream, RemotingCodec::default());
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: args
                .topics
                .iter()
                .map(|t| (t.clone(), TopicConfig::new(t.clone(), args.queues)))
                .chain(std::iter::once((
                    AUTO_CREATE_TOPIC.to_owned(),
                    TopicConfig {
                        perm: PERM_READ | PERM_WRITE | PERM_INHERIT,
                        ..TopicConfig::new(AUTO_CREATE_TOPIC, args.queues)
                    },
                )))
                .collect(),
            data_version: DataVersion {
                timestamp: 1,
                counter: 1,
                state_version: 0,
            },
        },
        filter_server_list: vec![],
    };
    let header = RegisterBrokerRequestHeader {
        broker_name: args.broker_name.clone(),
        broker_addr: args.broker_addr.clone(),
        cluster_name: args.cluster.clone(),
        ha_server_addr: args.broker_addr.clone(),
        broker_id: args.broker_id,
        ..Default::default()
    };
    let body = to_json(&body);
    for opaque in 1.. {
        let request = RemotingCommand::request(RequestCode::REGISTER_BROKER, &header)
            .with_body(body.clone())
            .with_opaque(opaque);
        framed
            .send(request)
            .await
            .context("sending REGISTER_BROKER")?;
        let response = tokio::time::timeout(Duration::from_secs(10), framed.next())
            .await
            .context("no answer to REGISTER_BROKER within 10 s")?
            .context("the NameServer closed the connection")?
            .context("unreadable answer")?;
        if response.code != 0 {
            bail!(
                "REGISTER_BROKER refused: code {} {:?}",
                response.code,
                response.remark
            );
        }
        if opaque == 1 {
            println!(
                "registered {} ({}) in {} with {} topic(s)",
                args.broker_name,
                args.broker_addr,
                args.cluster,
                args.topics.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    Ok(())
}
