//! ferrum-namesrv owns a RocketMQ-compatible NameServer: the route table built from broker
//! registrations, broker liveness (periodic scan, expiry, drop on connection close), KV config,
//! and the metrics and health endpoints.
//!
//! NameServers never talk to each other and keep nothing on disk: routes are rebuilt from
//! registrations.
