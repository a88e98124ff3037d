//! Raft-mode metrics in the broker registry: term, role, log / commit / applied indexes, apply
//! lag, leader changes and, on the leader, each peer's match index and lag.
//!
//! Most values are read from openraft's metrics watch when Prometheus scrapes. Two cannot be:
//! leader changes happen between scrapes, so a task following the watch counts them, and
//! openraft's metrics carry no commit index, so the same task samples it from the Raft state.
//! Every series carries the group (`raft_group` = `dLegerGroup`) so alerts can ask "does any
//! replica of this group lead?"; per-peer series add `peer` (the DLedger id), bounded by the
//! group's size. A broker outside Raft mode exports none of them.
//!
//! This module must not change the node's behaviour: it only reads openraft's state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{BasicNode, RaftMetrics, ServerState};
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::watch;

use crate::metrics::BrokerMetrics;
use crate::processor::BrokerCore;

use super::RaftNode;
use super::config::RaftConfig;

/// How often the commit index is sampled from openraft's state.
pub const COMMIT_SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// The `role` label values, one series each, so a role change never leaves a stale series.
pub const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

/// The Raft series of one broker.
#[derive(Clone)]
pub struct RaftMetricSet {
    term: IntGaugeVec,
    role: IntGaugeVec,
    last_log_index: IntGaugeVec,
    commit_index: IntGaugeVec,
    applied_index: IntGaugeVec,
    apply_lag: IntGaugeVec,
    elections: IntCounterVec,
    peer_match_index: IntGaugeVec,
    peer_lag: IntGaugeVec,
    quorum_ack_age: GaugeVec,
    /// Shared by the scrape hook and [`follow`], so a scrape that shows a new leader also
    /// shows it counted, whichever of the two saw it first.
    seen: Arc<Mutex<LeaderSeen>>,
}

impl std::fmt::Debug for RaftMetricSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftMetricSet").finish_non_exhaustive()
    }
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

impl RaftMetricSet {
    /// The series, not yet registered (see [`install`]).
    pub fn new() -> Result<Self, prometheus::Error> {
        let g = &["raft_group"];
        Ok(RaftMetricSet {
            term: gauge(
                "ferrum_broker_raft_term",
                "The Raft term this replica is in",
                g,
            )?,
            role: gauge(
                "ferrum_broker_raft_role",
                "1 for this replica's current Raft role (leader, follower, candidate, learner, shutdown), 0 for the others",
                &["raft_group", "role"],
            )?,
            last_log_index: gauge(
                "ferrum_broker_raft_last_log_index",
                "Index of the newest entry in this replica's Raft log (-1 when empty)",
                g,
            )?,
            commit_index: gauge(
                "ferrum_broker_raft_commit_index",
                "Index of the newest entry this replica knows a majority holds (-1 when none), sampled every 500 ms",
                g,
            )?,
            applied_index: gauge(
                "ferrum_broker_raft_applied_index",
                "Index of the newest entry applied (its messages visible to consumers; -1 when none)",
                g,
            )?,
            apply_lag: gauge(
                "ferrum_broker_raft_apply_lag_entries",
                "Committed entries not yet applied, at the last commit-index sample",
                g,
            )?,
            elections: IntCounterVec::new(
                Opts::new(
                    "ferrum_broker_raft_elections_total",
                    "Leaders this replica has seen elected (a new leader, or a new term of the same one), the first after start included",
                ),
                g,
            )?,
            peer_match_index: gauge(
                "ferrum_broker_raft_peer_match_index",
                "On the leader: the newest entry each other replica holds (-1 when none)",
                &["raft_group", "peer"],
            )?,
            peer_lag: gauge(
                "ferrum_broker_raft_peer_lag_entries",
                "On the leader: entries of its log each other replica does not hold yet",
                &["raft_group", "peer"],
            )?,
            quorum_ack_age: GaugeVec::new(
                Opts::new(
                    "ferrum_broker_raft_leader_quorum_ack_age_seconds",
                    "On the leader: time since a majority last acknowledged it (grows when it is cut off)",
                ),
                g,
            )?,
            seen: Arc::default(),
        })
    }
}

/// Registers `metrics.raft` and the hook that sets its scrape-time series.
pub fn install(metrics: &BrokerMetrics) {
    let set = metrics.raft.clone();
    metrics.register(set.term.clone());
    metrics.register(set.role.clone());
    metrics.register(set.last_log_index.clone());
    metrics.register(set.commit_index.clone());
    metrics.register(set.applied_index.clone());
    metrics.register(set.apply_lag.clone());
    metrics.register(set.elections.clone());
    metrics.register(set.peer_match_index.clone());
    metrics.register(set.peer_lag.clone());
    metrics.register(set.quorum_ack_age.clone());
    metrics.on_scrape(Box::new(move |core: &BrokerCore| {
        if let Some(raft) = core.raft.get() {
            set.observe(&raft.config, &raft.raft.metrics().borrow());
        }
    }));
}

fn index(i: Option<u64>) -> i64 {
    i.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX))
}

/// The `role` label of openraft's state.
pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// One peer's match index and lag as the leader sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The DLedger id (`n1`), or openraft's node id for a member not in `dLegerPeers`.
    pub peer: String,
    pub match_index: Option<u64>,
    pub lag: u64,
}

/// Every other member's progress, when `m` is a leader's metrics; empty otherwise.
pub fn peer_progress(config: &RaftConfig, m: &RaftMetrics<u64, BasicNode>) -> Vec<PeerProgress> {
    let Some(replication) = m
        .replication
        .as_ref()
        .filter(|_| m.state == ServerState::Leader)
    else {
        return Vec::new();
    };
    let last = m.last_log_index;
    m.membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id != m.id)
        .map(|(id, _)| {
            let match_index = replication.get(id).copied().flatten().map(|l| l.index);
            let peer = config
                .peers
                .iter()
                .find(|p| p.node_id == *id)
                .map_or_else(|| id.to_string(), |p| p.id.clone());
            let lag = match (last, match_index) {
                (Some(l), Some(mi)) => l.saturating_sub(mi),
                (Some(l), None) => l + 1,
                (None, _) => 0,
            };
            PeerProgress {
                peer,
                match_index,
                lag,
            }
        })
        .collect()
}

impl RaftMetricSet {
    /// Sets the scrape-time series from openraft's metrics.
    pub fn observe(&self, config: &RaftConfig, m: &RaftMetrics<u64, BasicNode>) {
        let group = config.group.as_str();
        self.note_leader(group, m.current_term, m.current_leader);
        self.term
            .with_label_values(&[group])
            .set(i64::try_from(m.current_term).unwrap_or(i64::MAX));
        let current = role_name(m.state);
        for role in ROLES {
            self.role
                .with_label_values(&[group, role])
                .set(i64::from(role == current));
        }
        self.last_log_index
            .with_label_values(&[group])
            .set(index(m.last_log_index));
        self.applied_index
            .with_label_values(&[group])
            .set(index(m.last_applied.map(|l| l.index)));
        // Reset so a replica that stopped leading does not keep reporting its followers.
        self.peer_match_index.reset();
        self.peer_lag.reset();
        for p in peer_progress(config, m) {
            self.peer_match_index
                .with_label_values(&[group, &p.peer])
                .set(index(p.match_index));
            self.peer_lag
                .with_label_values(&[group, &p.peer])
                .set(i64::try_from(p.lag).unwrap_or(i64::MAX));
        }
        self.quorum_ack_age.reset();
        if let Some(ms) = m
            .millis_since_quorum_ack
            .filter(|_| m.state == ServerState::Leader)
        {
            self.quorum_ack_age
                .with_label_values(&[group])
                .set(ms as f64 / 1000.0);
        }
    }

    /// Counts `(term, leader)` in `ferrum_broker_raft_elections_total` if it is new; the series
    /// exists from the first call, so increase() sees the first election too.
    fn note_leader(&self, group: &str, term: u64, leader: Option<u64>) {
        let counter = self.elections.with_label_values(&[group]);
        if self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(term, leader)
        {
            counter.inc();
        }
    }

    fn record_commit(&self, group: &str, committed: Option<u64>, applied: Option<u64>) {
        self.commit_index
            .with_label_values(&[group])
            .set(index(committed));
        let lag = match (committed, applied) {
            (Some(c), Some(a)) => c.saturating_sub(a),
            (Some(c), None) => c + 1,
            (None, _) => 0,
        };
        self.apply_lag
            .with_label_values(&[group])
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }
}

/// Remembers the last leader seen, to count elections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LeaderSeen(Option<(u64, u64)>);

impl LeaderSeen {
    /// Whether `(term, leader)` is a leader not seen before; an unknown leader (an election
    /// in progress) is not one and keeps the last one remembered.
    pub fn observe(&mut self, term: u64, leader: Option<u64>) -> bool {
        let Some(leader) = leader else {
            return false;
        };
        let now = Some((term, leader));
        if self.0 == now {
            return false;
        }
        self.0 = now;
        true
    }
}

/// Counts leader changes from openraft's metrics watch and samples the commit index, until the
/// node shuts down.
pub async fn follow(set: RaftMetricSet, group: String, raft: RaftNode) {
    let mut watch: watch::Receiver<RaftMetrics<u64, BasicNode>> = raft.metrics();
    let mut tick = tokio::time::interval(COMMIT_SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        {
            let m = watch.borrow_and_update();
            set.note_leader(&group, m.current_term, m.current_leader);
        }
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {
                let Ok(committed) = raft.with_raft_state(|st| st.committed.map(|l| l.index)).await
                else {
                    return;
                };
                let applied = raft.metrics().borrow().last_applied.map(|l| l.index);
                set.record_commit(&group, committed, applied);
            }
        }
    }
}

/// Starts [`follow`] for the broker's replica; it ends with the node.
pub fn spawn(core: &Arc<BrokerCore>, raft: &super::broker::RaftBroker) {
    tokio::spawn(follow(
        core.metrics.raft.clone(),
        raft.config.group.clone(),
        raft.raft.clone(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_counts_once_per_term_and_not_while_unknown() {
        let mut seen = LeaderSeen::default();
        assert!(!seen.observe(1, None));
        assert!(seen.observe(1, Some(7)));
        assert!(!seen.observe(1, Some(7)));
        assert!(!seen.observe(2, None), "an election in progress");
        assert!(seen.observe(2, Some(8)));
        assert!(seen.observe(3, Some(8)), "re-elected in a new term");
        assert!(!seen.observe(3, Some(8)));
    }

    #[test]
    fn roles_cover_every_server_state() {
        for state in [
            ServerState::Leader,
            ServerState::Follower,
            ServerState::Candidate,
            ServerState::Learner,
            ServerState::Shutdown,
        ] {
            assert!(ROLES.contains(&role_name(state)));
        }
    }

    fn config() -> RaftConfig {
        let mut broker = crate::config::BrokerConfig::default();
        for (k, v) in [
            ("enableDLegerCommitLog", "true"),
            ("dLegerGroup", "raft-a"),
            (
                "dLegerPeers",
                "n0-127.0.0.1:1;n1-127.0.0.1:2;n2-127.0.0.1:3",
            ),
            ("dLegerSelfId", "n0"),
        ] {
            assert!(broker.set(k, v).expect("valid"));
        }
        RaftConfig::from_broker_config(&broker)
            .expect("valid")
            .expect("enabled")
    }

    /// A leader's metrics as openraft reports them: n1 holds entry 8, n2 nothing yet.
    fn leader_metrics(config: &RaftConfig) -> RaftMetrics<u64, BasicNode> {
        use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};
        use std::collections::{BTreeMap, BTreeSet};
        let ids: Vec<u64> = config.peers.iter().map(|p| p.node_id).collect();
        let me = config.self_node_id();
        let nodes: BTreeMap<u64, BasicNode> = config
            .peers
            .iter()
            .map(|p| (p.node_id, BasicNode::new(&p.addr)))
            .collect();
        let voters: BTreeSet<u64> = ids.iter().copied().collect();
        let log_id = |i| LogId::new(CommittedLeaderId::new(3, me), i);
        let mut m = RaftMetrics::new_initial(me);
        m.current_term = 3;
        m.state = ServerState::Leader;
        m.current_leader = Some(me);
        m.last_log_index = Some(10);
        m.last_applied = Some(log_id(10));
        m.millis_since_quorum_ack = Some(40);
        m.membership_config = Arc::new(StoredMembership::new(
            None,
            Membership::new(vec![voters], nodes),
        ));
        m.replication = Some(BTreeMap::from([
            (me, Some(log_id(10))),
            (ids[1], Some(log_id(8))),
            (ids[2], None),
        ]));
        m
    }

    #[test]
    fn the_leader_reports_each_other_peer_by_its_dleger_id() {
        let config = config();
        let m = leader_metrics(&config);
        let mut progress = peer_progress(&config, &m);
        progress.sort_by(|a, b| a.peer.cmp(&b.peer));
        assert_eq!(
            progress,
            vec![
                PeerProgress {
                    peer: "n1".into(),
                    match_index: Some(8),
                    lag: 2
                },
                PeerProgress {
                    peer: "n2".into(),
                    match_index: None,
                    lag: 11
                },
            ]
        );
        let mut follower = m.clone();
        follower.state = ServerState::Follower;
        assert!(peer_progress(&config, &follower).is_empty());
    }

    #[test]
    fn a_scrape_renders_the_raft_series() {
        let config = config();
        let metrics = BrokerMetrics::new();
        metrics.raft.observe(&config, &leader_metrics(&config));
        let mut buf = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &metrics.registry().gather(),
            &mut buf,
        )
        .expect("encode");
        let text = String::from_utf8(buf).expect("utf8");
        for line in [
            r#"ferrum_broker_raft_term{raft_group="raft-a"} 3"#,
            r#"ferrum_broker_raft_role{raft_group="raft-a",role="leader"} 1"#,
            r#"ferrum_broker_raft_role{raft_group="raft-a",role="follower"} 0"#,
            r#"ferrum_broker_raft_last_log_index{raft_group="raft-a"} 10"#,
            r#"ferrum_broker_raft_applied_index{raft_group="raft-a"} 10"#,
            r#"ferrum_broker_raft_elections_total{raft_group="raft-a"} 1"#,
            r#"ferrum_broker_raft_peer_match_index{peer="n1",raft_group="raft-a"} 8"#,
            r#"ferrum_broker_raft_peer_lag_entries{peer="n2",raft_group="raft-a"} 11"#,
            r#"ferrum_broker_raft_leader_quorum_ack_age_seconds{raft_group="raft-a"} 0.04"#,
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        // Stepping down drops the per-peer series instead of freezing them.
        let mut follower = leader_metrics(&config);
        follower.state = ServerState::Follower;
        follower.replication = None;
        metrics.raft.observe(&config, &follower);
        let names: Vec<String> = metrics
            .registry()
            .gather()
            .iter()
            .filter(|f| !f.get_metric().is_empty())
            .map(|f| f.name().to_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n == "ferrum_broker_raft_peer_lag_entries")
        );
        assert!(
            !names
                .iter()
                .any(|n| n == "ferrum_broker_raft_leader_quorum_ack_age_seconds")
        );
    }

    #[test]
    fn commit_sample_sets_index_and_lag() {
        let m = BrokerMetrics::new();
        let set = m.raft.clone();
        set.record_commit("g", Some(10), Some(7));
        assert_eq!(set.commit_index.with_label_values(&["g"]).get(), 10);
        assert_eq!(set.apply_lag.with_label_values(&["g"]).get(), 3);
        set.record_commit("g", Some(10), Some(12));
        assert_eq!(set.apply_lag.with_label_values(&["g"]).get(), 0);
        set.record_commit("g", None, None);
        assert_eq!(set.commit_index.with_label_values(&["g"]).get(), -1);
    }
}
