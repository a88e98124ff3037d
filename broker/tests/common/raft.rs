//! Raft-mode settings shared by the in-process Raft tests.

use ferrum_broker::config::BrokerConfig;
use ferrum_broker::raft::RaftConfig;

/// Replica `n{i}` of `group` over `peers` (`n0-host:port;…`), with heartbeats every 50 ms and
/// elections after 300–600 ms so tests on a busy machine elect quickly but not spuriously.
pub fn raft_config(group: &str, peers: &str, i: usize) -> RaftConfig {
    let mut broker = BrokerConfig::default();
    let self_id = format!("n{i}");
    for (k, v) in [
        ("enableDLegerCommitLog", "true"),
        ("dLegerGroup", group),
        ("dLegerPeers", peers),
        ("ferrumRaftHeartbeatIntervalMs", "50"),
        ("ferrumRaftElectionTimeoutMinMs", "300"),
        ("ferrumRaftElectionTimeoutMaxMs", "600"),
        ("dLegerSelfId", &self_id),
    ] {
        assert!(broker.set(k, v).expect("valid value"), "{k} known");
    }
    RaftConfig::from_broker_config(&broker)
        .expect("valid Raft config")
        .expect("Raft mode enabled")
}
