//! ferrum-client speaks RocketMQ remoting as a client: a connection that multiplexes requests by
//! `opaque`, NameServer route look-ups, a producer with queue selection and retry on another
//! broker, a pull consumer and admin calls. `ferrumctl` is built on it, and so are the tests and
//! the operator.
//!
//! It talks only the wire protocol, so it can drive any RocketMQ broker; it never links the
//! broker or the store.

pub mod connection;
pub mod error;
pub mod namesrv;

#[cfg(test)]
mod testutil;

pub use connection::{ConnectOptions, Connection, ConnectionPool, RequestHandler};
pub use error::ClientError;
pub use namesrv::NameServerClient;
pub mod admin;
pub mod consumer;
pub mod fault;
pub mod message;
pub mod producer;
pub mod stats;

pub use admin::Admin;
pub use consumer::{PullConsumer, PullResult, PullStatus};
pub use message::{Message, MessageQueue, SendResult, SendStatus};
pub use producer::{Producer, ProducerConfig};
