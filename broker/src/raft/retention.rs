//! CommitLog retention in Raft mode: the store never deletes bytes the Raft log still refers
//! to.
//!
//! openraft reads entries well below the slowest follower's match: at start it loads the log
//! ids of the whole unpurged log (reading entries from the oldest one on), and after a change
//! of term a leader that no longer knows a follower's match probes backwards towards the purge
//! point, reading the entries it would send. A read of deleted CommitLog bytes is a storage
//! error, which stops the Raft node. So every replica, whatever its role, sets the store's
//! retention floor to the offset of its oldest unpurged entry: expired files (`fileReservedTime`,
//! `diskMaxUsedSpaceRatio` pressure) are kept from there on. Nothing purges the log yet (that
//! needs snapshots carrying the applied position and membership across restarts), so in Raft
//! mode time-based retention keeps every file. The bound is the disk: a forced clean
//! (`cleanFileForciblyEnable`, disk at or above `diskSpaceCleanForciblyRatio`) deletes the
//! oldest file anyway, because a full disk stops the whole group; the replica then cannot read
//! those entries (a restart or a lagging follower's repair fails) and has to be re-seeded from a
//! peer's CommitLog files.
//!
//! It must not delete anything itself: the store's clean-up thread does, under the floor.

use std::time::Duration;

use ferrum_store::MessageStore;
use tokio::task::JoinHandle;

use super::RaftLogStore;

const EVERY: Duration = Duration::from_secs(1);

/// Keeps the store's retention floor at the oldest unpurged entry of `log` until the returned
/// task is aborted.
pub fn spawn(store: MessageStore, log: RaftLogStore) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let floor = Some(log.resume_offset(None));
            if store.retention_floor() != floor {
                tracing::debug!(
                    ?floor,
                    "CommitLog retention floor: the Raft log's oldest entry"
                );
                store.set_retention_floor(floor);
            }
        }
    })
}
