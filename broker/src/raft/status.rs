//! What `ferrumctl raft status` will show, read from openraft's metrics: term, role, leader,
//! applied index and, on the leader, each peer's match index and lag in entries. The commit
//! index is not in openraft's metrics; the broker adds it from the log store.

pub use ferrum_protocol::replica::{RaftPeerStatus, RaftStatus};
use openraft::{BasicNode, RaftMetrics, ServerState};

use super::config::RaftPeer;

/// The status in `metrics` (from `RaftNode::metrics()`), without dLeger ids.
pub fn status(metrics: &RaftMetrics<u64, BasicNode>) -> RaftStatus {
    named_status(metrics, &[])
}

/// The status in `metrics`, node ids named after `peers` (`dLegerPeers`).
pub fn named_status(metrics: &RaftMetrics<u64, BasicNode>, peers: &[RaftPeer]) -> RaftStatus {
    let id_of = |node: u64| {
        peers
            .iter()
            .find(|p| p.node_id == node)
            .map(|p| p.id.clone())
            .unwrap_or_default()
    };
    let last = metrics.last_log_index;
    let replication = metrics.replication.as_ref();
    let peers = metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| {
            let match_index = if *id == metrics.id {
                last
            } else {
                replication
                    .and_then(|r| r.get(id))
                    .and_then(|m| m.map(|l| l.index))
            };
            let known = *id == metrics.id || replication.is_some_and(|r| r.contains_key(id));
            RaftPeerStatus {
                node_id: *id,
                id: id_of(*id),
                addr: node.addr.clone(),
                match_index,
                lag: (metrics.state == ServerState::Leader && known)
                    .then(|| lag(last, match_index)),
            }
        })
        .collect();
    RaftStatus {
        node_id: metrics.id,
        self_id: id_of(metrics.id),
        term: metrics.current_term,
        role: format!("{:?}", metrics.state),
        leader: metrics.current_leader,
        last_log_index: last,
        commit_index: None,
        applied_index: metrics.last_applied.map(|l| l.index),
        peers,
    }
}

/// Entries in `0..=last` the peer does not hold; with no match it holds none of them.
fn lag(last: Option<u64>, matched: Option<u64>) -> u64 {
    match (last, matched) {
        (Some(l), Some(m)) => l.saturating_sub(m),
        (Some(l), None) => l + 1,
        (None, _) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_missing_entries() {
        assert_eq!(lag(None, None), 0);
        assert_eq!(lag(Some(0), None), 1);
        assert_eq!(lag(Some(10), Some(10)), 0);
        assert_eq!(lag(Some(10), Some(7)), 3);
        assert_eq!(lag(Some(10), None), 11);
    }
}
