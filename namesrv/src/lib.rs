//! ferrum-namesrv owns a RocketMQ-compatible NameServer: the route table built from broker
//! registrations, broker liveness (periodic scan, expiry, drop on connection close), KV config,
//! and the metrics and health endpoints.
//!
//! NameServers never talk to each other and keep nothing on disk: routes are rebuilt from
//! registrations.

pub mod config;
pub mod metrics;
pub mod processor;
pub mod route_info;
pub mod server;

pub use config::{ConfigError, PartialSettings, Settings};
pub use processor::NameServer;
pub use route_info::RouteInfoManager;
pub use server::{serve, serve_with_metrics};
