//! CommitLog retention in Raft mode: the store never deletes bytes the Raft log still refers
//! to, and the log lets go of entries in files retention wants to delete.
//!
//! openraft reads entries well below the slowest follower's match: at start it loads the log
//! ids of the whole unpurged log, and after a change of term a leader that no longer knows a
//! follower's match probes backwards towards the purge point, reading the entries it would
//! send. So every replica, whatever its role, sets the store's retention floor to the offset of
//! its oldest unpurged entry ([`spawn`]). The broker runs [`spawn_with_purge`], which also
//! watches the files due for time-based retention (`fileReservedTime`, `deleteWhen`,
//! `diskMaxUsedSpaceRatio`) and those a forced clean already deleted (`diskSpaceCleanForciblyRatio`:
//! a full disk stops the whole group, so it deletes without waiting); when entries start in
//! them, it builds a snapshot that starts after them and purges the log up to the last such
//! entry. The floor then moves past those files and the store's clean-up deletes them. A
//! follower that needed the purged entries gets the snapshot (`super::snapshot`).
//!
//! It must not delete anything itself: the store's clean-up thread does, under the floor.

use std::time::Duration;

use ferrum_store::MessageStore;
use tokio::task::JoinHandle;

use super::{RaftLogStore, RaftNode};

const EVERY: Duration = Duration::from_secs(1);

/// [`spawn`], and once CommitLog bytes the log refers to are gone (a forced clean deleted the
/// oldest file), a snapshot at the last entry starting below the first retained byte and a
/// purge of the log up to it: openraft then never reads those entries again and sends the
/// snapshot (`super::snapshot`) to a replica that needs them, instead of failing on the read.
pub fn spawn_with_purge(store: MessageStore, log: RaftLogStore, raft: RaftNode) -> JoinHandle<()> {
    let floor = spawn(store.clone(), log.clone());
    tokio::spawn(async move {
        let _floor = AbortOnDrop(floor);
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (applied, snapshot) = {
                let m = raft.metrics().borrow().clone();
                (m.last_applied.map(|l| l.index), m.snapshot.map(|l| l.index))
            };
            // Files already deleted (a forced clean) or due for time-based retention: the log
            // lets go of the entries in them, behind a snapshot that starts after them.
            let retain_from = store.min_phy_offset().max(store.expired_files_end());
            let Some(upto) = log.gone_upto(retain_from, applied) else {
                continue;
            };
            log.set_retain_from(retain_from);
            let trigger = raft.trigger();
            let result = if snapshot.is_none_or(|s| s < upto.index) {
                tracing::info!(
                    upto = upto.index,
                    retain_from,
                    min_phy_offset = store.min_phy_offset(),
                    "CommitLog files holding Raft log entries are deleted or expired; building a snapshot"
                );
                trigger.snapshot().await
            } else {
                tracing::info!(
                    upto = upto.index,
                    "purging the Raft log behind the snapshot"
                );
                trigger.purge_log(upto.index).await
            };
            if let Err(error) = result {
                tracing::warn!(%error, "the Raft node stopped; no more purges");
                return;
            }
        }
    })
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

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
