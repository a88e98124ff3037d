//! ferrum-client speaks RocketMQ remoting as a client: a connection that multiplexes requests by
//! `opaque`, NameServer route look-ups, a producer with queue selection and retry on another
//! broker, a pull consumer and admin calls. `ferrumctl` is built on it, and so are the tests and
//! the operator.
//!
//! It talks only the wire protocol, so it can drive any RocketMQ broker; it never links the
//! broker or the store.
//!
//! ```no_run
//! use std::time::Duration;
//! use ferrum_client::{Admin, Connection, Message, Producer, PullConsumer, PullStatus};
//! use ferrum_protocol::{RemotingCommand, RequestCode};
//!
//! # async fn demo() -> Result<(), ferrum_client::ClientError> {
//! let namesrv = ["127.0.0.1:9876"];
//!
//! // Raw requests on one multiplexed connection.
//! let conn = Connection::connect("127.0.0.1:9876").await?;
//! let answer = conn
//!     .invoke(RemotingCommand::bare_request(RequestCode::GET_BROKER_CLUSTER_INFO), Duration::from_secs(3))
//!     .await?;
//! assert_eq!(answer.code, 0);
//!
//! // Topic administration.
//! let admin = Admin::new(namesrv);
//! let config = ferrum_protocol::route::TopicConfig::new("Orders", 8);
//! admin.create_topic_in_cluster("DefaultCluster", &config).await?;
//!
//! // Produce: round robin over every writable queue of every master, retry elsewhere on failure.
//! let producer = Producer::new(namesrv, "my-producer-group");
//! let sent = producer.send("Orders", Message::new("hello").with_tags("new")).await?;
//! println!("{} at {} offset {}", sent.msg_id, sent.queue, sent.queue_offset);
//!
//! // Pull and commit.
//! let consumer = PullConsumer::new(namesrv, "my-consumer-group");
//! for mq in consumer.queues("Orders").await? {
//!     let start = consumer.committed_offset(&mq).await?.unwrap_or(0);
//!     let pulled = consumer.pull(&mq, start, 32).await?;
//!     if pulled.status == PullStatus::Found {
//!         consumer.commit_offset(&mq, pulled.next_begin_offset).await?;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod fault;
pub mod message;
pub mod namesrv;
pub mod producer;
pub mod stats;

#[cfg(test)]
mod testutil;

pub use admin::Admin;
pub use connection::{ConnectOptions, Connection, ConnectionPool, RequestHandler};
pub use consumer::{PullConfig, PullConsumer, PullResult, PullStatus};
pub use error::ClientError;
pub use message::{Message, MessageQueue, SendResult, SendStatus};
pub use namesrv::NameServerClient;
pub use producer::{Producer, ProducerConfig};
