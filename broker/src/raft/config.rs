//! Raft mode's configuration: RocketMQ's DLedger keys parsed into a typed [`RaftConfig`].
//!
//! Pure: no I/O, so every refusal is unit-tested. DLedger peer ids are free-form strings
//! (`n0`, `n1`, …); openraft wants integer node ids, so each id maps to a stable 64-bit hash of
//! its text. The mapping depends on the id alone, never on its position in `dLegerPeers`, so
//! replicas that list their peers in different orders still agree on every node id.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{BrokerConfig, ConfigError};

/// A Raft group needs a majority that survives one failure.
pub const MIN_PEERS: usize = 3;

/// One replica of the group, as `dLegerPeers` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftPeer {
    /// The DLedger id (`n0`).
    pub id: String,
    /// openraft's node id for `id` (see [`node_id`]).
    pub node_id: u64,
    /// `host:port` of the replica's Raft RPC listener.
    pub addr: String,
}

/// The validated Raft-mode configuration of one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// `dLegerGroup`: the group's name (RocketMQ sets it to the brokerName).
    pub group: String,
    /// `dLegerPeers` in the order given.
    pub peers: Vec<RaftPeer>,
    /// `dLegerSelfId`.
    pub self_id: String,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
}

impl RaftConfig {
    /// The Raft settings of `config`, `None` when `enableDLegerCommitLog` is false.
    pub fn from_broker_config(config: &BrokerConfig) -> Result<Option<Self>, ConfigError> {
        if !config.enable_dleger_commit_log {
            return Ok(None);
        }
        let group = if config.dleger_group.trim().is_empty() {
            config.broker_name.clone()
        } else {
            config.dleger_group.trim().to_owned()
        };
        let peers = parse_peers(&config.dleger_peers)?;
        let self_id = config.dleger_self_id.trim();
        if !peers.iter().any(|p| p.id == self_id) {
            let ids: Vec<&str> = peers.iter().map(|p| p.id.as_str()).collect();
            return Err(invalid(
                "dLegerSelfId",
                self_id,
                format!("must be one of the ids in dLegerPeers ({})", ids.join(", ")),
            ));
        }
        let (min, max) = (
            config.raft_election_timeout_min_ms,
            config.raft_election_timeout_max_ms,
        );
        if min >= max {
            return Err(invalid(
                "ferrumRaftElectionTimeoutMaxMs",
                &max.to_string(),
                format!("must exceed ferrumRaftElectionTimeoutMinMs ({min})"),
            ));
        }
        let hb = config.raft_heartbeat_interval_ms;
        if hb == 0 || hb >= min {
            return Err(invalid(
                "ferrumRaftHeartbeatIntervalMs",
                &hb.to_string(),
                format!("must be above 0 and below ferrumRaftElectionTimeoutMinMs ({min})"),
            ));
        }
        Ok(Some(RaftConfig {
            group,
            peers,
            self_id: self_id.to_owned(),
            heartbeat_interval: Duration::from_millis(hb),
            election_timeout_min: Duration::from_millis(min),
            election_timeout_max: Duration::from_millis(max),
        }))
    }

    /// This replica's node id.
    pub fn self_node_id(&self) -> u64 {
        node_id(&self.self_id)
    }

    /// Every replica by node id, as the initial membership.
    pub fn members(&self) -> BTreeMap<u64, String> {
        self.peers
            .iter()
            .map(|p| (p.node_id, p.addr.clone()))
            .collect()
    }

    /// The address this replica's Raft RPC listener binds.
    pub fn self_addr(&self) -> &str {
        self.peers
            .iter()
            .find(|p| p.id == self.self_id)
            .map_or("", |p| p.addr.as_str())
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// FNV-1a over the id's bytes: stable across versions and platforms, unlike `DefaultHasher`.
pub fn node_id(id: &str) -> u64 {
    ferrum_protocol::replica::raft_node_id(id)
}

/// Parses `n0-host:port;n1-host:port;…` (DLedger's format; the id ends at the first `-`).
pub fn parse_peers(raw: &str) -> Result<Vec<RaftPeer>, ConfigError> {
    const KEY: &str = "dLegerPeers";
    let mut peers: Vec<RaftPeer> = Vec::new();
    for entry in raw.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |why: &str| invalid(KEY, raw, format!("entry '{entry}' {why}"));
        let (id, addr) = entry
            .split_once('-')
            .ok_or_else(|| bad("is not of the form id-host:port"))?;
        if id.is_empty() {
            return Err(bad("has an empty id"));
        }
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("has no :port"))?;
        if host.is_empty() {
            return Err(bad("has an empty host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(bad("has a port that is not in 1..65535")),
        }
        let node = node_id(id);
        if let Some(other) = peers.iter().find(|p| p.id == id || p.node_id == node) {
            return Err(bad(&format!("repeats the id of '{}'", other.id)));
        }
        if peers.iter().any(|p| p.addr == addr) {
            return Err(bad("repeats an address"));
        }
        peers.push(RaftPeer {
            id: id.to_owned(),
            node_id: node,
            addr: addr.to_owned(),
        });
    }
    if peers.len() < MIN_PEERS {
        return Err(invalid(
            KEY,
            raw,
            format!(
                "Raft mode needs at least {MIN_PEERS} peers, {} given",
                peers.len()
            ),
        ));
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(pairs: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
        let mut c = BrokerConfig::default();
        for (k, v) in pairs {
            assert!(c.set(k, v)?, "{k} is a known key");
        }
        Ok(c)
    }

    const PEERS: &str = "n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-broker-2.svc:40913";

    #[test]
    fn disabled_by_default() {
        let c = BrokerConfig::default();
        assert!(!c.enable_dleger_commit_log);
        assert_eq!(RaftConfig::from_broker_config(&c).expect("valid"), None);
    }

    #[test]
    fn parses_rocketmq_dleger_keys() {
        let c = broker(&[
            ("enableDLegerCommitLog", "true"),
            ("dLegerGroup", "RaftNode00"),
            ("dLegerPeers", PEERS),
            ("dLegerSelfId", "n1"),
        ])
        .expect("keys accepted");
        let r = RaftConfig::from_broker_config(&c)
            .expect("valid")
            .expect("enabled");
        assert_eq!(r.group, "RaftNode00");
        assert_eq!(r.self_id, "n1");
        assert_eq!(r.self_addr(), "127.0.0.1:40912");
        let ids: Vec<&str> = r.peers.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["n0", "n1", "n2"]);
        assert_eq!(r.peers[2].addr, "broker-2.svc:40913");
        assert_eq!(r.self_node_id(), node_id("n1"));
        assert_eq!(r.members().len(), 3);
        assert!(r.heartbeat_interval < r.election_timeout_min);
        assert!(r.election_timeout_min < r.election_timeout_max);
    }

    #[test]
    fn group_defaults_to_broker_name() {
        let c = broker(&[
            ("brokerName", "broker-b"),
            ("enableDLegerCommitLog", "true"),
            ("dLegerPeers", PEERS),
            ("dLegerSelfId", "n0"),
        ])
        .expect("keys accepted");
        let r = RaftConfig::from_broker_config(&c).expect("valid");
        assert_eq!(r.map(|r| r.group).as_deref(), Some("broker-b"));
    }

    #[test]
    fn node_ids_do_not_depend_on_peer_order() {
        let a = parse_peers(PEERS).expect("valid");
        let b = parse_peers("n2-broker-2.svc:40913;n0-127.0.0.1:40911;n1-127.0.0.1:40912")
            .expect("valid");
        let id_of = |v: &[RaftPeer], id: &str| v.iter().find(|p| p.id == id).map(|p| p.node_id);
        for id in ["n0", "n1", "n2"] {
            assert_eq!(id_of(&a, id), id_of(&b, id));
        }
        assert_ne!(node_id("n0"), node_id("n1"));
    }

    #[test]
    fn fewer_than_three_peers_refused_naming_key_and_count() {
        let err = parse_peers("n0-127.0.0.1:40911;n1-127.0.0.1:40912")
            .expect_err("two peers refused")
            .to_string();
        assert!(err.contains("dLegerPeers"), "{err}");
        assert!(err.contains("at least 3 peers, 2 given"), "{err}");
        let err = parse_peers("").expect_err("none refused").to_string();
        assert!(err.contains("0 given"), "{err}");
    }

    #[test]
    fn malformed_peers_refused_naming_the_entry() {
        for (raw, bad) in [
            ("n0-127.0.0.1:1;n1127.0.0.1:2;n2-h:3", "n1127.0.0.1:2"),
            ("n0-127.0.0.1:1;n1-127.0.0.1;n2-h:3", "n1-127.0.0.1"),
            ("n0-127.0.0.1:1;n1-h:99999;n2-h:3", "n1-h:99999"),
            ("n0-127.0.0.1:1;n1-h:0;n2-h:3", "n1-h:0"),
            ("n0-127.0.0.1:1;-h:2;n2-h:3", "-h:2"),
            ("n0-127.0.0.1:1;n1-:2;n2-h:3", "n1-:2"),
            ("n0-127.0.0.1:1;n0-h:2;n2-h:3", "n0-h:2"),
            ("n0-h:1;n1-h:1;n2-h:3", "n1-h:1"),
        ] {
            let err = parse_peers(raw).expect_err(raw).to_string();
            assert!(err.contains("dLegerPeers"), "{err}");
            assert!(err.contains(&format!("entry '{bad}'")), "{raw}: {err}");
        }
    }

    #[test]
    fn self_id_must_be_a_peer() {
        let c = broker(&[
            ("enableDLegerCommitLog", "true"),
            ("dLegerPeers", PEERS),
            ("dLegerSelfId", "n7"),
        ])
        .expect("keys accepted");
        let err = RaftConfig::from_broker_config(&c)
            .expect_err("n7 is no peer")
            .to_string();
        assert!(
            err.contains("dLegerSelfId") && err.contains("n0, n1, n2"),
            "{err}"
        );
        assert!(c.validate().is_err(), "validate refuses it too");
    }

    #[test]
    fn election_timeouts_checked() {
        let base = [
            ("enableDLegerCommitLog", "true"),
            ("dLegerPeers", PEERS),
            ("dLegerSelfId", "n0"),
        ];
        let mut bad = base.to_vec();
        bad.extend([
            ("ferrumRaftElectionTimeoutMinMs", "800"),
            ("ferrumRaftElectionTimeoutMaxMs", "800"),
        ]);
        let err = RaftConfig::from_broker_config(&broker(&bad).expect("keys"))
            .expect_err("min == max")
            .to_string();
        assert!(err.contains("ferrumRaftElectionTimeoutMaxMs"), "{err}");
        let mut bad = base.to_vec();
        bad.push(("ferrumRaftHeartbeatIntervalMs", "600"));
        let err = RaftConfig::from_broker_config(&broker(&bad).expect("keys"))
            .expect_err("heartbeat above the election timeout")
            .to_string();
        assert!(err.contains("ferrumRaftHeartbeatIntervalMs"), "{err}");
        assert!(broker(&[("enableDLegerCommitLog", "maybe")]).is_err());
    }
}
