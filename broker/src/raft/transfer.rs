//! Leader transfer (`FERRUM_RAFT_TRANSFER_LEADER`, `ferrumctl raft transfer-leader`): the
//! leader hands its leadership to a chosen follower, as rolling upgrades need before the
//! leader's pod restarts.
//!
//! openraft 0.9 has no transfer of its own, so it is built from what it offers:
//!
//! 1. The leader waits, still taking writes, until the target's match index reaches its last
//!    log index of that moment, so a target that is down or far behind is refused without
//!    stopping anyone's sends.
//! 2. It closes its write gate: new proposals wait (at most [`WRITE_HOLD`], then SYSTEM_BUSY),
//!    proposals already in openraft finish (committed by a majority or failed), so the log
//!    stops growing; then it waits (at most [`GATED_CATCH_UP`]) until the target's match index
//!    equals its last log index. A target that does not catch up in time is refused and
//!    nothing else changed.
//! 3. It stops its heartbeats (`runtime_config().heartbeat(false)`), so the followers' leader
//!    lease — openraft refuses votes for the maximum election timeout after the last message
//!    from a leader — runs out instead of being renewed, and its own elections
//!    (`runtime_config().elect(false)`), so that once it sees the target's higher term and
//!    steps down it does not campaign against the target with the very same log.
//! 4. It sends Ferrum's `TimeoutNow` RPC over the Raft transport; the target checks it still
//!    follows that leader in that term with the whole log, then campaigns at once
//!    (`trigger().elect()`, which ignores the election timer) and again every half heartbeat
//!    interval until it leads or the bound passes. The old leader grants its vote as soon as
//!    its own lease (counted from its election) is over, so a leader that has led for a while
//!    hands over in one campaign. A leader elected less than a lease ago refuses; for that
//!    case it keeps sending an explicit heartbeat every quarter heartbeat interval while it
//!    still leads: the target answers it with its higher term, the old leader steps down and
//!    adopts that term (no lease then) and grants the target's next campaign. Without the old
//!    leader the target needs followers whose lease has run out (at most the maximum election
//!    timeout after the last heartbeat).
//! 5. The old leader waits until it sees the target lead, then restores heartbeats and
//!    elections and opens the gate; held proposals reach openraft, which now refuses them with
//!    the new leader's name (SERVICE_NOT_AVAILABLE, as any follower answers a send). If the
//!    target does not win within the bound, heartbeats and elections are restored at once and
//!    the caller gets an error naming the leader of the moment (the old one, or whoever won an
//!    ordinary election meanwhile).
//!
//! Safety is openraft's: the gate and the paused heartbeats and elections only change who
//! campaigns when; votes, terms and commit rules are untouched, so no write is acknowledged
//! without a majority and no committed write is lost, whatever happens during a transfer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrum_protocol::replica::RaftTransferResult;
use ferrum_protocol::{RemotingCommand, ResponseCode};
use openraft::{BasicNode, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::{RwLock, RwLockReadGuard};

use crate::processor::BrokerCore;

use super::RaftNode;
use super::config::{RaftConfig, RaftPeer};
use super::network::{NetworkSwitch, timeout_now};

/// How long a transfer may take from the request to the target leading.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a send waits at the closed gate before it is answered SYSTEM_BUSY.
pub const WRITE_HOLD: Duration = Duration::from_secs(2);
/// How long proposals in flight may take to finish once the gate closes, and how long the gate
/// then stays closed for the target to receive the last entries (it has already reached the
/// last log index of the moment before the gate closes).
pub const GATED_CATCH_UP: Duration = Duration::from_secs(2);
/// The header naming the target (a dLegerSelfId); absent = the most up-to-date follower.
pub const TARGET_ID: &str = "targetId";

/// The leader's side of a transfer: the write gate and the one-transfer-at-a-time flag.
#[derive(Debug, Default)]
pub struct LeaderTransfer {
    gate: RwLock<()>,
    running: AtomicBool,
}

impl LeaderTransfer {
    /// Lets a proposal through the gate; the guard must live until openraft answered it.
    /// `None` when a transfer kept the gate closed for [`WRITE_HOLD`].
    pub async fn hold_writes(&self) -> Option<RwLockReadGuard<'_, ()>> {
        tokio::time::timeout(WRITE_HOLD, self.gate.read())
            .await
            .ok()
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    fn begin(&self) -> Result<RunningGuard<'_>, TransferError> {
        self.running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| RunningGuard(&self.running))
            .map_err(|_| TransferError::AlreadyRunning)
    }
}

struct RunningGuard<'a>(&'a AtomicBool);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Heartbeats and this replica's own elections stay off while this lives; dropping it turns
/// them on again on every path out of a transfer, because a replica that later leads without
/// heartbeats would lose its followers. Elections are off because the old leader steps down as
/// soon as it sees the target's higher term, and campaigning itself then would only compete
/// with the target (it holds the same log, so it could win and take leadership back).
struct Handover<'a>(&'a RaftNode);

impl<'a> Handover<'a> {
    fn new(raft: &'a RaftNode) -> Self {
        raft.runtime_config().heartbeat(false);
        raft.runtime_config().elect(false);
        Self(raft)
    }
}

impl Drop for Handover<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().elect(true);
        self.0.runtime_config().heartbeat(true);
    }
}

/// Why a transfer was refused or did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("this replica is not the Raft leader of {group}: leader is {leader}")]
    NotLeader { group: String, leader: String },
    #[error("targetId {target} is not a replica of {group} (dLegerPeers ids: {ids})")]
    UnknownTarget {
        group: String,
        target: String,
        ids: String,
    },
    #[error("a leadership transfer of this group is already running")]
    AlreadyRunning,
    #[error("proposals in flight did not finish within {0:?}")]
    WritesInFlight(Duration),
    #[error(
        "{target} did not catch up within {waited:?}: its match index is {matched}, the leader's last log index {last}"
    )]
    TargetBehind {
        target: String,
        matched: String,
        last: String,
        waited: Duration,
    },
    #[error("{target} did not become leader: {reason}; leader is now {leader}")]
    TargetLost {
        target: String,
        reason: String,
        leader: String,
    },
}

impl TransferError {
    /// The RocketMQ response code the request is answered with.
    pub fn code(&self) -> ResponseCode {
        match self {
            Self::NotLeader { .. } => ResponseCode::SERVICE_NOT_AVAILABLE,
            Self::UnknownTarget { .. } => ResponseCode::INVALID_PARAMETER,
            Self::AlreadyRunning | Self::WritesInFlight(_) | Self::TargetBehind { .. } => {
                ResponseCode::SYSTEM_BUSY
            }
            Self::TargetLost { .. } => ResponseCode::SYSTEM_ERROR,
        }
    }
}

/// Ferrum's `TimeoutNow` RPC: "campaign now; I, `leader` in `term`, stopped taking writes and
/// you hold my whole log up to `last_log_index`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutNowRequest {
    pub leader: u64,
    pub term: u64,
    pub last_log_index: Option<u64>,
    /// How long the target may keep campaigning.
    pub within_ms: u64,
}

/// The target's answer, sent once it leads or gave up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutNowResponse {
    pub won: bool,
    pub term: u64,
    pub leader: Option<u64>,
    /// Why it did not campaign or did not win.
    pub reason: Option<String>,
}

fn matched(m: &RaftMetrics<u64, BasicNode>, node: u64) -> Option<u64> {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&node).copied().flatten())
        .map(|l| l.index)
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

/// `n1 (host:port)` for a node id, or the bare id when it is not in `dLegerPeers`.
fn describe(peers: &[RaftPeer], node: Option<u64>) -> String {
    match node {
        None => "unknown".to_owned(),
        Some(n) => peers
            .iter()
            .find(|p| p.node_id == n)
            .map_or_else(|| format!("node {n}"), |p| format!("{} ({})", p.id, p.addr)),
    }
}

/// The follower to hand over to: the one named `wanted`, or else the one with the highest match
/// index (the first in `dLegerPeers` order on a tie). `Ok(None)` when `wanted` is this replica.
pub fn pick_target<'a>(
    config: &'a RaftConfig,
    matched: &BTreeMap<u64, Option<u64>>,
    wanted: Option<&str>,
) -> Result<Option<&'a RaftPeer>, TransferError> {
    let self_node = config.self_node_id();
    if let Some(wanted) = wanted {
        let peer = config
            .peers
            .iter()
            .find(|p| p.id == wanted)
            .ok_or_else(|| TransferError::UnknownTarget {
                group: config.group.clone(),
                target: wanted.to_owned(),
                ids: config
                    .peers
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        return Ok((peer.node_id != self_node).then_some(peer));
    }
    let mut best: Option<&RaftPeer> = None;
    for peer in config.peers.iter().filter(|p| p.node_id != self_node) {
        let m = matched.get(&peer.node_id).copied().flatten();
        if best.is_none_or(|b| m > matched.get(&b.node_id).copied().flatten()) {
            best = Some(peer);
        }
    }
    Ok(best)
}

/// Hands the leadership of the group `raft` leads to `wanted` (or the most up-to-date follower)
/// within `bound`, with `state` as this replica's gate; see the module docs for the steps.
pub async fn transfer(
    raft: &RaftNode,
    config: &RaftConfig,
    state: &LeaderTransfer,
    wanted: Option<&str>,
    bound: Duration,
) -> Result<RaftTransferResult, TransferError> {
    let started = Instant::now();
    let deadline = started + bound;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let self_node = config.self_node_id();
    let not_leader = |m: &RaftMetrics<u64, BasicNode>| TransferError::NotLeader {
        group: config.group.clone(),
        leader: describe(&config.peers, m.current_leader),
    };
    let metrics = raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Err(not_leader(&metrics));
    }
    let matches: BTreeMap<u64, Option<u64>> = config
        .peers
        .iter()
        .map(|p| (p.node_id, matched(&metrics, p.node_id)))
        .collect();
    let self_id = config.self_id.clone();
    let Some(target) = pick_target(config, &matches, wanted)? else {
        return Ok(RaftTransferResult {
            term: metrics.current_term,
            leader_id: self_id.clone(),
            leader_node_id: self_node,
            leader_raft_addr: config.self_addr().to_owned(),
            previous_leader_id: self_id,
            elapsed_millis: started.elapsed().as_millis() as u64,
        });
    };
    let _running = state.begin()?;
    let behind = |last: Option<u64>| {
        let now = raft.metrics().borrow().clone();
        TransferError::TargetBehind {
            target: target.id.clone(),
            matched: opt(matched(&now, target.node_id)),
            last: opt(last),
            waited: started.elapsed(),
        }
    };
    // First with the gate open: a target that is down or far behind is refused without
    // holding anyone's sends.
    let last = metrics.last_log_index;
    raft.wait(Some(remaining()))
        .metrics(
            |m| m.state != ServerState::Leader || matched(m, target.node_id) >= last,
            "the transfer target is close behind",
        )
        .await
        .map_err(|_| behind(last))?;

    tracing::info!(target = %target.id, "Raft leader transfer: closing the write gate");
    // Waiting for the gate already holds new sends back, so this wait is short too.
    let closing = remaining().min(GATED_CATCH_UP);
    let gate = tokio::time::timeout(closing, state.gate.write())
        .await
        .map_err(|_| TransferError::WritesInFlight(closing))?;
    let metrics = raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Err(not_leader(&metrics));
    }
    let last = metrics.last_log_index;
    let metrics = raft
        .wait(Some(remaining().min(GATED_CATCH_UP)))
        .metrics(
            |m| m.state != ServerState::Leader || matched(m, target.node_id) >= last,
            "the transfer target holds the whole log",
        )
        .await
        .map_err(|_| behind(last))?;
    if metrics.state != ServerState::Leader {
        return Err(not_leader(&metrics));
    }

    let handover = Handover::new(raft);
    let within = remaining();
    tracing::info!(target = %target.id, term = metrics.current_term, ?last, "Raft leader transfer: asking the target to campaign");
    let switch = NetworkSwitch::default();
    let call = timeout_now(
        &target.addr,
        TimeoutNowRequest {
            leader: self_node,
            term: metrics.current_term,
            last_log_index: last,
            within_ms: within.as_millis() as u64,
        },
        within + Duration::from_secs(1),
        &switch,
    );
    let answer = tokio::select! {
        answer = call => answer,
        never = nudge_until_deposed(raft) => match never {},
    };
    let lost = |reason: String| {
        let now = raft.metrics().borrow().clone();
        TransferError::TargetLost {
            target: target.id.clone(),
            reason,
            leader: describe(&config.peers, now.current_leader),
        }
    };
    let answer = match answer {
        Ok(a) if a.won => a,
        Ok(a) => {
            drop(handover);
            return Err(lost(
                a.reason.unwrap_or_else(|| "it lost the election".into()),
            ));
        }
        Err(e) => {
            drop(handover);
            return Err(lost(format!("TimeoutNow failed: {e}")));
        }
    };
    // Held proposals must meet a replica that knows it no longer leads, so they are refused
    // with the new leader's name instead of being appended in the old term.
    let seen = raft
        .wait(Some(remaining().max(Duration::from_secs(1))))
        .metrics(
            |m| m.state != ServerState::Leader && m.current_leader == Some(target.node_id),
            "the new leader is known here",
        )
        .await;
    drop(handover);
    drop(gate);
    if let Err(e) = seen {
        tracing::warn!(error = %e, "Raft leader transfer: the target won but this replica has not heard from it yet");
    }
    tracing::info!(target = %target.id, term = answer.term, elapsed_ms = started.elapsed().as_millis() as u64, "Raft leader transfer done");
    Ok(RaftTransferResult {
        term: answer.term,
        leader_id: target.id.clone(),
        leader_node_id: target.node_id,
        leader_raft_addr: target.addr.clone(),
        previous_leader_id: self_id,
        elapsed_millis: started.elapsed().as_millis() as u64,
    })
}

/// While this replica still leads, a heartbeat every quarter heartbeat interval (`trigger()` is not
/// affected by the paused ones). A leader elected less than a lease ago refuses the target's
/// vote, but the target answers the heartbeat with its higher term, which makes this replica
/// step down and adopt that term without a lease, so it grants the target's next campaign
/// instead of the target waiting for every follower's lease to run out. Never returns; the
/// caller drops it once the target answered.
async fn nudge_until_deposed(raft: &RaftNode) -> std::convert::Infallible {
    let every = Duration::from_millis((raft.config().heartbeat_interval / 4).max(10));
    loop {
        tokio::time::sleep(every).await;
        let leads = raft.metrics().borrow().state == ServerState::Leader;
        if leads && let Err(e) = raft.trigger().heartbeat().await {
            tracing::debug!(error = %e, "Raft leader transfer: heartbeat not sent");
        }
    }
}

/// The target's side of `TimeoutNow`: campaigns until it leads or `within_ms` passes.
pub async fn campaign(raft: &RaftNode, req: TimeoutNowRequest) -> TimeoutNowResponse {
    let answer =
        |won: bool, m: &RaftMetrics<u64, BasicNode>, reason: Option<String>| TimeoutNowResponse {
            won,
            term: m.current_term,
            leader: m.current_leader,
            reason,
        };
    let metrics = raft.metrics().borrow().clone();
    if metrics.state == ServerState::Leader {
        return answer(true, &metrics, None);
    }
    if metrics.current_leader != Some(req.leader) || metrics.current_term != req.term {
        let why = format!(
            "node {} follows {} in term {}, not node {} in term {}",
            metrics.id,
            opt(metrics.current_leader),
            metrics.current_term,
            req.leader,
            req.term
        );
        return answer(false, &metrics, Some(why));
    }
    if metrics.last_log_index < req.last_log_index {
        let why = format!(
            "node {} holds the log up to {}, the leader up to {}",
            metrics.id,
            opt(metrics.last_log_index),
            opt(req.last_log_index)
        );
        return answer(false, &metrics, Some(why));
    }
    let deadline = Instant::now() + Duration::from_millis(req.within_ms);
    // A voter refuses while its lease runs (the old leader's since its election, the others'
    // since the last heartbeat, at most the maximum election timeout), so campaigns are
    // repeated often rather than waiting a whole election timeout each time.
    let retry = Duration::from_millis((raft.config().heartbeat_interval / 2).max(25));
    let self_node = metrics.id;
    loop {
        if let Err(e) = raft.trigger().elect().await {
            let now = raft.metrics().borrow().clone();
            return answer(false, &now, Some(format!("cannot campaign: {e}")));
        }
        let round = deadline
            .saturating_duration_since(Instant::now())
            .min(retry);
        let outcome = raft
            .wait(Some(round))
            .metrics(
                |m| {
                    m.state == ServerState::Leader
                        || m.current_leader
                            .is_some_and(|l| l != self_node && l != req.leader)
                },
                "this replica leads",
            )
            .await;
        if let Ok(m) = outcome {
            if m.state == ServerState::Leader {
                return answer(true, &m, None);
            }
            return answer(false, &m, Some("another replica won the election".into()));
        }
        if Instant::now() >= deadline {
            let now = raft.metrics().borrow().clone();
            return answer(
                false,
                &now,
                Some(format!("no election won within {} ms", req.within_ms)),
            );
        }
    }
}

/// FERRUM_RAFT_TRANSFER_LEADER: answered SUCCESS with a [`RaftTransferResult`] once the target
/// leads, else with the [`TransferError`]'s code and text.
pub async fn handle_transfer(core: &BrokerCore, request: &RemotingCommand) -> RemotingCommand {
    let Some(raft) = core.raft.get() else {
        return request.error_to(
            ResponseCode::SERVICE_NOT_AVAILABLE,
            format!(
                "the broker[{}] does not run in Raft mode (enableDLegerCommitLog=false)",
                core.broker_addr
            ),
        );
    };
    let wanted = request
        .ext_fields
        .get(TARGET_ID)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty());
    match transfer(
        &raft.raft,
        &raft.config,
        &raft.transfer,
        wanted,
        TRANSFER_TIMEOUT,
    )
    .await
    {
        Ok(result) => match serde_json::to_vec(&result) {
            Ok(body) => request.success_to().with_body(body),
            Err(e) => request.error_to(ResponseCode::SYSTEM_ERROR, e.to_string()),
        },
        Err(e) => request.error_to(
            e.code(),
            format!(
                "the broker[{}] did not transfer leadership: {e}",
                core.broker_addr
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    fn config(self_id: &str) -> RaftConfig {
        let mut broker = BrokerConfig::default();
        for (k, v) in [
            ("enableDLegerCommitLog", "true"),
            ("dLegerGroup", "g"),
            (
                "dLegerPeers",
                "n0-127.0.0.1:1;n1-127.0.0.1:2;n2-127.0.0.1:3",
            ),
            ("dLegerSelfId", self_id),
        ] {
            assert!(broker.set(k, v).expect("valid"));
        }
        RaftConfig::from_broker_config(&broker)
            .expect("valid")
            .expect("enabled")
    }

    fn matches(c: &RaftConfig, m: [Option<u64>; 3]) -> BTreeMap<u64, Option<u64>> {
        c.peers.iter().map(|p| p.node_id).zip(m).collect()
    }

    #[test]
    fn a_named_target_must_be_a_peer() {
        let c = config("n0");
        let m = matches(&c, [Some(9), Some(3), Some(9)]);
        let t = pick_target(&c, &m, Some("n1"))
            .expect("known")
            .expect("other");
        assert_eq!(t.id, "n1");
        assert_eq!(pick_target(&c, &m, Some("n0")).expect("known"), None);
        let err = pick_target(&c, &m, Some("n7")).expect_err("unknown");
        assert_eq!(err.code(), ResponseCode::INVALID_PARAMETER);
        assert!(err.to_string().contains("n0, n1, n2"), "{err}");
    }

    #[test]
    fn without_a_name_the_most_up_to_date_follower_is_chosen() {
        let c = config("n1");
        let pick = |m| {
            pick_target(&c, &matches(&c, m), None)
                .expect("no name")
                .expect("a follower")
                .id
                .clone()
        };
        assert_eq!(pick([Some(5), Some(9), Some(7)]), "n2");
        assert_eq!(
            pick([Some(7), Some(9), Some(7)]),
            "n0",
            "ties go to the first"
        );
        assert_eq!(pick([None, Some(9), Some(0)]), "n2");
        assert_eq!(pick([None, Some(9), None]), "n0");
    }

    #[test]
    fn refusals_map_to_rocketmq_codes() {
        let behind = TransferError::TargetBehind {
            target: "n2".into(),
            matched: "3".into(),
            last: "9".into(),
            waited: Duration::from_secs(10),
        };
        assert_eq!(behind.code(), ResponseCode::SYSTEM_BUSY);
        assert!(behind.to_string().contains("match index is 3"));
        assert_eq!(
            TransferError::AlreadyRunning.code(),
            ResponseCode::SYSTEM_BUSY
        );
        let not_leader = TransferError::NotLeader {
            group: "g".into(),
            leader: "n1 (127.0.0.1:2)".into(),
        };
        assert_eq!(not_leader.code(), ResponseCode::SERVICE_NOT_AVAILABLE);
        assert!(
            not_leader
                .to_string()
                .contains("leader is n1 (127.0.0.1:2)")
        );
    }

    #[tokio::test]
    async fn the_gate_holds_writes_while_a_transfer_runs() {
        let state = LeaderTransfer::default();
        let running = state.begin().expect("first");
        assert_eq!(
            state.begin().err(),
            Some(TransferError::AlreadyRunning),
            "one at a time"
        );
        let closed = state.gate.write().await;
        assert!(
            state.hold_writes().await.is_none(),
            "refused after WRITE_HOLD"
        );
        drop(closed);
        assert!(state.hold_writes().await.is_some());
        drop(running);
        assert!(!state.is_running());
        assert!(state.begin().is_ok());
    }
}
