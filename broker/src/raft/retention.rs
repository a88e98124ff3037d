//! CommitLog retention on the Raft leader: files holding bytes a follower still needs stay.
//!
//! Every second the leader sets the store's retention floor to the lowest CommitLog offset any
//! follower is sent next (the end of its matched entry, from openraft's replication metrics);
//! a follower with no match yet pins the whole log. Followers and candidates set no floor. The
//! bound is the disk: a forced clean (`diskSpaceCleanForciblyRatio`) deletes the oldest file
//! even below the floor, and a follower that then needs deleted bytes cannot be repaired from
//! the log (the leader cannot read those entries) — it has to be re-seeded from a peer's
//! CommitLog files. A replica keeps no floor for peers while it follows, so a new leader may
//! already have deleted files a lagging peer needs; the same re-seeding applies.
//!
//! It must not delete anything itself: the store's clean-up thread does, under the floor.

use std::time::Duration;

use ferrum_store::MessageStore;
use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::RaftLogStore;

const EVERY: Duration = Duration::from_secs(1);

/// The matched log index of every voter other than `self_id`, `None` where the leader has no
/// match for it yet; empty unless `metrics` are a leader's.
pub fn followers_matched(metrics: &RaftMetrics<u64, BasicNode>) -> Vec<Option<u64>> {
    if metrics.state != ServerState::Leader {
        return Vec::new();
    }
    let replication = metrics.replication.as_ref();
    metrics
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != metrics.id)
        .map(|id| {
            replication
                .and_then(|r| r.get(&id).copied())
                .flatten()
                .map(|l| l.index)
        })
        .collect()
}

/// The retention floor for followers matched at `matched`: the lowest offset any of them is
/// sent next; `None` (no floor) with no followers.
pub fn retention_floor(
    matched: &[Option<u64>],
    resume_offset: impl Fn(Option<u64>) -> i64,
) -> Option<i64> {
    matched.iter().map(|m| resume_offset(*m)).min()
}

/// Keeps the store's retention floor up to date until the returned task is aborted.
pub fn spawn(
    store: MessageStore,
    log: RaftLogStore,
    metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let matched = followers_matched(&metrics.borrow());
            let floor = retention_floor(&matched, |m| log.resume_offset(m));
            if store.retention_floor() != floor {
                tracing::debug!(?floor, "CommitLog retention floor for Raft followers");
                store.set_retention_floor(floor);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_follower_sets_the_floor() {
        // Entry i ends at offset 100 * i; the log starts at entry 3 (offset 200).
        let resume = |m: Option<u64>| match m {
            Some(i) if i >= 3 => 100 * i as i64,
            _ => 200,
        };
        assert_eq!(retention_floor(&[], resume), None, "no followers: no floor");
        assert_eq!(retention_floor(&[Some(9), Some(7)], resume), Some(700));
        assert_eq!(
            retention_floor(&[Some(9), None], resume),
            Some(200),
            "a follower with no match pins the whole log"
        );
        assert_eq!(retention_floor(&[Some(9), Some(9)], resume), Some(900));
    }
}
