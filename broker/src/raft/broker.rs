//! The broker's side of Raft mode: starts the replica next to the broker's store, turns
//! openraft's view of the leader into the broker's role (leader → master brokerId 0, follower →
//! slave with brokerId = its position in `dLegerPeers` + 1, as DLedger does) and proposes sends.
//!
//! It must not register with NameServers itself: a role change goes through `HaState`, whose
//! watch makes the registrar re-register at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrum_protocol::message::{MessageExt, create_message_id};
use ferrum_store::{
    AppendMessageResult, MessageExtBrokerInner, PutMessageResult, PutMessageStatus,
};
use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::BrokerRole;
use crate::processor::BrokerCore;

use super::status::{RaftStatus, named_status};
use super::{
    NetworkSwitch, RaftConfig, RaftNetworkFactoryImpl, RaftNode, RaftRequest, RaftRpcServer,
    open_storage, openraft_config,
};

/// How long a stopping leader tries to hand its group over before it just stops.
pub const SHUTDOWN_TRANSFER_TIMEOUT: Duration = Duration::from_secs(3);

/// A started Raft replica of this broker.
pub struct RaftBroker {
    pub config: RaftConfig,
    pub raft: RaftNode,
    server: RaftRpcServer,
    /// The log store openraft writes through, read for the commit index.
    log: super::RaftLogStore,
    role_task: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Keeps CommitLog files the Raft log still refers to (`retention`).
    retention_task: JoinHandle<()>,
    /// Write gate and state of a leadership transfer (`transfer`).
    pub transfer: super::transfer::LeaderTransfer,
}

impl std::fmt::Debug for RaftBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftBroker")
            .field("group", &self.config.group)
            .field("self_id", &self.config.self_id)
            .field("rpc", &self.server.local_addr())
            .finish()
    }
}

/// The brokerId a follower registers with: its position in `dLegerPeers` + 1.
pub fn follower_broker_id(config: &RaftConfig) -> i64 {
    config
        .peers
        .iter()
        .position(|p| p.id == config.self_id)
        .map_or(1, |i| i as i64 + 1)
}

/// The broker role for openraft's current leader as seen by `self_node`.
pub fn role_for(leader: Option<u64>, self_node: u64, follower_id: i64) -> (BrokerRole, i64) {
    if leader == Some(self_node) {
        (BrokerRole::AsyncMaster, 0)
    } else {
        (BrokerRole::Slave, follower_id)
    }
}

impl RaftBroker {
    /// Binds this replica's `dLegerPeers` port, opens the Raft log over `core.store` (sidecar
    /// files in `storePathRootDir/raft`) and starts the node. Every replica proposes the same
    /// initial membership; openraft refuses it where a log already exists, which is expected.
    pub async fn start(core: &Arc<BrokerCore>, config: RaftConfig) -> Result<Arc<Self>, String> {
        let listener = TcpListener::bind(config.self_addr())
            .await
            .map_err(|e| format!("cannot listen on the Raft port {}: {e}", config.self_addr()))?;
        let dir = core.config.store_path_root_dir.join("raft");
        let (log, sm) = open_storage(&dir, core.store.clone())
            .map_err(|e| format!("the Raft log in {} cannot be opened: {e}", dir.display()))?;
        let retention_log = log.clone();
        let status_log = log.clone();
        let switch = NetworkSwitch::default();
        let settings = openraft_config(&config)
            .validate()
            .map_err(|e| format!("Raft settings: {e}"))?;
        let raft = RaftNode::new(
            config.self_node_id(),
            Arc::new(settings),
            RaftNetworkFactoryImpl::new(switch.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| format!("the Raft node did not start: {e}"))?;
        let server = RaftRpcServer::start(listener, raft.clone(), switch)
            .map_err(|e| format!("the Raft RPC server did not start: {e}"))?;
        let members: BTreeMap<u64, BasicNode> = config
            .members()
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        if let Err(error) = raft.initialize(members).await {
            tracing::debug!(%error, "Raft membership already initialized");
        }
        let follower_id = follower_broker_id(&config);
        let self_node = config.self_node_id();
        // No writes before openraft names this replica leader.
        core.ha.set_role(BrokerRole::Slave, follower_id);
        let role_task = tokio::spawn(follow_leader(
            core.clone(),
            raft.metrics(),
            self_node,
            follower_id,
            LeaderClaim::of(&config),
        ));
        let retention_task =
            super::retention::spawn_with_purge(core.store.clone(), retention_log, raft.clone());
        Ok(Arc::new(RaftBroker {
            config,
            raft,
            server,
            log: status_log,
            role_task: std::sync::Mutex::new(Some(role_task)),
            retention_task,
            transfer: Default::default(),
        }))
    }

    /// The remoting address of the current leader, when it is known and is a peer.
    pub fn leader_hint(&self) -> Option<String> {
        let leader = self.raft.metrics().borrow().current_leader?;
        self.config
            .peers
            .iter()
            .find(|p| p.node_id == leader)
            .map(|p| format!("{} ({})", p.id, p.addr))
    }

    pub fn status(&self) -> RaftStatus {
        let mut status = named_status(&self.raft.metrics().borrow(), &self.config.peers);
        status.commit_index = self.log.committed_index();
        status
    }

    /// Proposes `messages` as one entry (a batch is committed or truncated whole); they are
    /// acknowledged only once a majority holds them. The result mirrors the store's: the first
    /// message's offsets, every message id.
    pub async fn put_messages(
        &self,
        core: &BrokerCore,
        messages: Vec<MessageExtBrokerInner>,
    ) -> PutMessageResult {
        let Some(_gate) = self.transfer.hold_writes().await else {
            return PutMessageResult::refused(
                PutMessageStatus::OsPageCacheBusy,
                format!(
                    "the Raft group {} is handing its leadership over; retry",
                    self.config.group
                ),
            );
        };
        let count = messages.len();
        let request = match <[MessageExtBrokerInner; 1]>::try_from(messages) {
            Ok([msg]) => RaftRequest::Message(msg.into()),
            Err(batch) => RaftRequest::Batch(batch.into_iter().map(Into::into).collect()),
        };
        let written = match self.raft.client_write(request).await {
            Ok(w) => w.data,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let leader = f
                    .leader_node
                    .map(|n| n.addr)
                    .unwrap_or_else(|| "unknown".into());
                return PutMessageResult::refused(
                    PutMessageStatus::ServiceNotAvailable,
                    format!(
                        "the broker[{}] is not the Raft leader of {}: leader is {leader}",
                        core.broker_addr, self.config.group
                    ),
                );
            }
            Err(e) => {
                return PutMessageResult::refused(
                    PutMessageStatus::ServiceNotAvailable,
                    format!("the Raft group {} did not commit: {e}", self.config.group),
                );
            }
        };
        if let Some(why) = written.refused {
            let status = written
                .refused_status
                .unwrap_or(PutMessageStatus::MessageIllegal);
            return PutMessageResult::refused(status, why);
        }
        let Some(records) = read_records(core, written.offset, written.len, count) else {
            return PutMessageResult::refused(
                PutMessageStatus::UnknownError,
                format!(
                    "committed at CommitLog offset {} but the records cannot be read back",
                    written.offset
                ),
            );
        };
        let first = &records[0];
        PutMessageResult {
            status: PutMessageStatus::PutOk,
            append: Some(AppendMessageResult {
                wrote_offset: first.commit_log_offset,
                wrote_bytes: (written.offset + written.len as i64 - first.commit_log_offset)
                    as usize,
                msg_ids: records
                    .iter()
                    .map(|r| create_message_id(r.store_host, r.commit_log_offset))
                    .collect(),
                store_timestamp: first.store_timestamp,
                logics_offset: first.queue_offset,
                msg_num: records.len(),
            }),
            remark: None,
        }
    }

    /// Stops the RPC server and the node.
    /// On a clean stop (SIGTERM, as Kubernetes sends on a pod delete) a leader hands its group
    /// to the most up-to-date follower first, so the group has a new master within a transfer
    /// (tens of ms) instead of a lease plus an election timeout after the leader went silent.
    /// Returns once this replica no longer claims brokerId 0, so its unregistration cannot
    /// remove the new leader's registration under the shared leader address.
    pub async fn hand_over_leadership(&self, core: &BrokerCore) {
        if self.raft.metrics().borrow().state != openraft::ServerState::Leader {
            return;
        }
        match super::transfer::transfer(
            &self.raft,
            &self.config,
            &self.transfer,
            None,
            SHUTDOWN_TRANSFER_TIMEOUT,
        )
        .await
        {
            Ok(result) => tracing::info!(
                new_leader = %result.leader_id,
                term = result.term,
                elapsed_ms = result.elapsed_millis,
                "handed the Raft leadership over before shutting down"
            ),
            Err(error) => {
                tracing::warn!(%error, "shutting down without handing the Raft leadership over");
                return;
            }
        }
        let mut role = core.ha.subscribe();
        let stepped_down = tokio::time::timeout(
            SHUTDOWN_TRANSFER_TIMEOUT,
            role.wait_for(|r| r.broker_id != 0),
        )
        .await;
        if !matches!(stepped_down, Ok(Ok(_))) {
            tracing::warn!("still registered as brokerId 0 after handing the leadership over");
        }
    }

    pub async fn shutdown(&self) {
        let task = self
            .role_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
        }
        self.retention_task.abort();
        self.server.shutdown();
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "the Raft node did not shut down cleanly");
        }
    }
}

impl BrokerCore {
    /// Stores `messages` through the Raft log in Raft mode (acknowledged after a majority
    /// commit), else straight into the store.
    pub(crate) async fn put_through_log(
        &self,
        messages: Vec<MessageExtBrokerInner>,
    ) -> PutMessageResult {
        match self.raft.get() {
            Some(raft) => raft.put_messages(self, messages).await,
            None => self.store.put_messages(messages).await,
        }
    }
}

/// The `count` records an entry wrote: its byte range may start with the padding that closed
/// the previous CommitLog file, so the records are the run of `count` that ends exactly at
/// `offset + len`.
fn read_records(core: &BrokerCore, offset: i64, len: u64, count: usize) -> Option<Vec<MessageExt>> {
    let end = offset + len as i64;
    let file_size = core.config.mapped_file_size_commit_log as i64;
    let candidates = [offset, (offset / file_size + 1) * file_size];
    candidates
        .into_iter()
        .filter(|o| *o < end)
        .find_map(|start| {
            let mut records = Vec::with_capacity(count);
            let mut at = start;
            while records.len() < count && at < end {
                let bytes = core.store.lookup_message_by_offset(at)?;
                let (ext, n) = MessageExt::decode(&bytes).ok()?;
                at += n as i64;
                records.push(ext);
            }
            (at == end && records.len() == count && count > 0).then_some(records)
        })
}

/// Keeps the broker's role equal to openraft's: every change of leader is a role change that
/// the registrar announces to every NameServer at once.
async fn follow_leader(
    core: Arc<BrokerCore>,
    mut metrics: watch::Receiver<openraft::RaftMetrics<u64, BasicNode>>,
    self_node: u64,
    follower_id: i64,
    claim: LeaderClaim,
) {
    // What was last logged, so each election step is one line with its wall-clock time.
    let mut seen_state = None;
    let mut seen_ack = false;
    // openraft computes the acknowledgement's age when it sends the metrics; it keeps ageing.
    let mut received = tokio::time::Instant::now();
    loop {
        let (leader, ack_age) = {
            let m = metrics.borrow_and_update();
            if seen_state != Some((m.state, m.current_term)) {
                seen_state = Some((m.state, m.current_term));
                tracing::info!(state = ?m.state, term = m.current_term, "Raft server state");
            }
            let ack_age = LeaderClaim::age(m.millis_since_quorum_ack, received.elapsed());
            let acked = claim.holds(m.state, ack_age);
            if acked && !seen_ack {
                tracing::info!(
                    term = m.current_term,
                    "Raft leadership acknowledged by a quorum"
                );
            }
            seen_ack = acked;
            // openraft restores a restarted leader from its vote before any peer has answered,
            // and an isolated leader keeps its state until it hears a higher term; announcing
            // either as master would overwrite the real leader's registration.
            let leader = m.current_leader.filter(|l| *l != self_node || acked);
            (leader, ack_age.filter(|_| acked))
        };
        let (role, id) = role_for(leader, self_node, follower_id);
        let now = core.ha.role();
        if now.role != role || now.broker_id != id {
            tracing::info!(?leader, ?role, broker_id = id, "Raft role change");
            core.ha.set_role(role, id);
        }
        // The quorum acknowledgement ages without any event when the leader is cut off, so
        // the claim is looked at again when it would lapse, and every heartbeat interval.
        let recheck = ack_age.map_or(claim.recheck, |age| claim.lapses_in(age));
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                received = tokio::time::Instant::now();
            }
            _ = tokio::time::sleep(recheck) => {}
        }
    }
}

/// When this replica may call itself master: openraft says it leads and a quorum acknowledged
/// it less than `election_timeout_max - heartbeat_interval` ago.
///
/// Why that bound: openraft dates a quorum acknowledgement by when the leader sent the
/// acknowledged request, and each follower in that quorum renews its leader lease
/// (`election_timeout_max`) when it receives it, later. A new leader needs votes from a
/// majority, which shares a follower with that quorum (or the old leader itself, which then
/// steps down); that follower grants no vote while its lease runs, so no other leader is elected
/// before the acknowledgement is `election_timeout_max` old. The claim lapses a heartbeat
/// interval earlier, which covers the claim being looked at late (the task wakes when the claim
/// would lapse, or on the next metrics update). Waiting for the candidate's own election timeout
/// as well would be wrong: a follower whose lease ran out long ago (cut off earlier, or just
/// restarted) campaigns at once and wins as soon as the lease of one member of the quorum ends.
#[derive(Debug, Clone, Copy)]
struct LeaderClaim {
    stale_after: Duration,
    recheck: Duration,
}

impl LeaderClaim {
    fn of(config: &RaftConfig) -> Self {
        LeaderClaim {
            // openraft's settings check keeps the heartbeat interval below the minimum election
            // timeout, so this is positive.
            stale_after: config
                .election_timeout_max
                .saturating_sub(config.heartbeat_interval),
            recheck: config.heartbeat_interval,
        }
    }

    /// The acknowledgement's age now: its age when openraft reported it plus the time since
    /// the report arrived.
    fn age(millis_since_quorum_ack: Option<u64>, since_report: Duration) -> Option<Duration> {
        millis_since_quorum_ack.map(|ms| Duration::from_millis(ms) + since_report)
    }

    fn holds(&self, state: openraft::ServerState, ack_age: Option<Duration>) -> bool {
        state == openraft::ServerState::Leader && ack_age.is_some_and(|a| a < self.stale_after)
    }

    /// How long until a claim held at `ack_age` lapses without another acknowledgement (at
    /// most the recheck interval).
    fn lapses_in(&self, ack_age: Duration) -> Duration {
        self.stale_after
            .saturating_sub(ack_age)
            .min(self.recheck)
            .max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_leader_claims_master_only_with_a_recent_quorum_acknowledgement() {
        let claim = LeaderClaim {
            stale_after: ms(500),
            recheck: ms(100),
        };
        use openraft::ServerState::{Candidate, Follower, Leader};
        assert!(claim.holds(Leader, Some(ms(0))));
        assert!(claim.holds(Leader, Some(ms(499))));
        // Restored from its vote, no peer has answered yet.
        assert!(!claim.holds(Leader, None));
        // Cut off: the lapse leaves a heartbeat interval before a follower's lease ends.
        assert!(!claim.holds(Leader, Some(ms(500))));
        assert!(!claim.holds(Follower, Some(ms(0))));
        assert!(!claim.holds(Candidate, Some(ms(0))));
        // A report 50 ms old of an acknowledgement then 460 ms old: 510 ms now.
        assert_eq!(LeaderClaim::age(Some(460), ms(50)), Some(ms(510)));
        assert!(!claim.holds(Leader, LeaderClaim::age(Some(460), ms(50))));
        assert_eq!(LeaderClaim::age(None, ms(50)), None);
        assert_eq!(claim.lapses_in(ms(450)), ms(50));
        assert_eq!(claim.lapses_in(ms(10)), ms(100));
        assert_eq!(claim.lapses_in(ms(700)), ms(1));
    }

    /// The property the claim exists for, over the allowed Raft settings: a leader cut off right
    /// after a quorum acknowledged it stops claiming master before any follower of that quorum
    /// can vote for another replica (its lease, `election_timeout_max`, runs from receiving the
    /// acknowledged request, which is no earlier than the leader sent it), even when the task
    /// looks at the claim only on its own rechecks and the metrics report arrives late.
    #[test]
    fn a_cut_off_leader_stops_claiming_before_another_can_be_elected() {
        use openraft::ServerState::Leader;
        for heartbeat in [20u64, 50, 100, 250] {
            for min in [heartbeat + 1, 2 * heartbeat, 3 * heartbeat, 1000] {
                for max in [min + 1, min + heartbeat, 2 * min, 5000] {
                    let mut broker = crate::config::BrokerConfig::default();
                    for (k, v) in [
                        ("enableDLegerCommitLog", "true".to_owned()),
                        (
                            "dLegerPeers",
                            "n0-127.0.0.1:1;n1-127.0.0.1:2;n2-127.0.0.1:3".to_owned(),
                        ),
                        ("dLegerSelfId", "n0".to_owned()),
                        ("ferrumRaftHeartbeatIntervalMs", heartbeat.to_string()),
                        ("ferrumRaftElectionTimeoutMinMs", min.to_string()),
                        ("ferrumRaftElectionTimeoutMaxMs", max.to_string()),
                    ] {
                        assert!(broker.set(k, &v).expect("valid"), "{k}");
                    }
                    let config = RaftConfig::from_broker_config(&broker)
                        .expect("valid settings")
                        .expect("Raft mode");
                    let claim = LeaderClaim::of(&config);
                    let lease = config.election_timeout_max;
                    let stale = claim.stale_after.as_millis() as u64;
                    // The last acknowledgement at 0; openraft reports its age at `reported`
                    // (while it is still fresh enough to claim) and the report reaches the
                    // task `late` after that (less than a heartbeat interval); the task then
                    // wakes as `lapses_in` says.
                    for (reported, late) in [
                        (0, 0),
                        (0, heartbeat - 1),
                        (stale / 2, heartbeat / 2),
                        (stale - 1, heartbeat - 1),
                    ] {
                        let arrived = ms(reported + late);
                        assert!(claim.holds(Leader, LeaderClaim::age(Some(reported), ms(0))));
                        let mut now = arrived;
                        let dropped = loop {
                            let age = LeaderClaim::age(Some(reported), now - arrived);
                            match age.filter(|a| claim.holds(Leader, Some(*a))) {
                                Some(a) => now += claim.lapses_in(a),
                                None => break now,
                            }
                        };
                        assert!(
                            dropped < lease,
                            "heartbeat {heartbeat}, timeouts {min}-{max}, report {reported} ms \
                             arriving {late} ms late: claimed until {dropped:?}, a follower's \
                             lease ends at {lease:?}"
                        );
                        assert!(dropped <= claim.stale_after + ms(late));
                    }
                }
            }
        }
    }

    #[test]
    fn leader_is_master_zero_followers_are_numbered_by_position() {
        assert_eq!(role_for(Some(7), 7, 2), (BrokerRole::AsyncMaster, 0));
        assert_eq!(role_for(Some(8), 7, 2), (BrokerRole::Slave, 2));
        assert_eq!(role_for(None, 7, 3), (BrokerRole::Slave, 3));
        let mut broker = crate::config::BrokerConfig::default();
        for (k, v) in [
            ("enableDLegerCommitLog", "true"),
            (
                "dLegerPeers",
                "n0-127.0.0.1:1;n1-127.0.0.1:2;n2-127.0.0.1:3",
            ),
            ("dLegerSelfId", "n2"),
        ] {
            assert!(broker.set(k, v).expect("valid"));
        }
        let config = RaftConfig::from_broker_config(&broker)
            .expect("valid")
            .expect("enabled");
        assert_eq!(follower_broker_id(&config), 3);
    }
}
