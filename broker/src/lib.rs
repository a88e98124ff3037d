//! ferrum-broker owns a RocketMQ-compatible broker: the remoting server on listenPort and the VIP
//! port, the request processors (send, pull with long polling, offsets, topics, subscription
//! groups, client management), NameServer registration, master–slave replication, Raft mode,
//! and the metrics and health endpoints.
//!
//! Persistence belongs to ferrum-store and the wire format to ferrum-protocol; this crate wires
//! them to the network and must not reach around either.

pub mod admin_processor;
pub mod client_manager;
pub mod config;
pub mod controller;
pub mod ha;
pub mod headers;
pub mod message_processor;
pub mod metrics;
pub mod persist;
pub mod processor;
pub mod raft;
pub mod register;
pub mod schedule;
pub mod server;
pub mod slave_sync;
pub mod subscription;
pub mod topic;
pub mod transaction;
