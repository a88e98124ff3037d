//! Rolling restarts of a BrokerGroup, driven by the operator (the StatefulSet is `OnDelete`).
//!
//! A pod needs a restart when its `controller-revision-hash` label differs from the
//! StatefulSet's `status.updateRevision` (image, resources, the rendered `broker.conf` hash or
//! the group's `ferrum.dev/roll` annotation changed the template) or when the pod carries
//! `ferrum.dev/restart`. [`plan`] is pure: from per-pod facts it chooses one next step —
//! restart a pod, hand Raft leadership on, promote a slave, or wait — in the order Strimzi's
//! KafkaRoller uses: unready pods first, then slaves / followers one at a time (each back
//! Ready and caught up before the next), the master / leader last. [`drive`] gathers the facts
//! from the apiserver and the brokers and carries the step out (eviction, so the PDB has the
//! last word; FERRUM_RAFT_TRANSFER_LEADER; FERRUM_PROMOTE_BROKER). Progress lives in
//! `status.roll`, so the driver is as stateless as the rest of the reconciler.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use crate::build::{self, MANAGER, pod_name};
use crate::controller::Context;
use crate::crd::{
    BrokerGroup, BrokerGroupStatus, BrokerMode, MasterRole, PodBackoff, ReplicaRole, ReplicaStatus,
    RollStatus,
};

/// On a BrokerGroup: any new value restarts every pod (it is copied into the pod template).
pub const ROLL_ANNOTATION: &str = "ferrum.dev/roll";
/// On one broker pod: restart this pod (the new pod does not carry it).
pub const RESTART_ANNOTATION: &str = "ferrum.dev/restart";
/// On a BrokerGroup: `"true"` stops a roll between pods; objects are still reconciled.
pub const ROLL_PAUSE_ANNOTATION: &str = "ferrum.dev/roll-paused";
/// Set by the StatefulSet controller on each pod it creates.
pub const REVISION_LABEL: &str = "controller-revision-hash";

const BACKOFF_BASE_SECS: i64 = 10;
const BACKOFF_MAX_SECS: i64 = 600;
/// Within one pass a promotion waits for the old master's pod to be gone and asks again every
/// `PROMOTE_RETRY`, for about `PROMOTE_IN_PASS`; later passes go on.
const PROMOTE_RETRY: Duration = Duration::from_millis(500);
const PROMOTE_IN_PASS: Duration = Duration::from_secs(10);

/// Why an ASYNC_MASTER group restarts its master in place despite promoteBeforeRestart.
const NOT_SYNC_MASTER: &str = " (promoteBeforeRestart is not used unless the master runs as SYNC_MASTER: an ASYNC_MASTER acknowledges messages no slave holds yet, and the old master would drop them when it rejoins the promoted slave's epoch)";

/// What is known about one replica of the group in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub ordinal: i32,
    pub exists: bool,
    /// Being deleted: counts as down.
    pub terminating: bool,
    pub ready: bool,
    /// Runs the StatefulSet's update revision.
    pub current: bool,
    pub restart_requested: bool,
    pub role: ReplicaRole,
    /// Listed by the NameServers under the brokerId its role implies.
    pub registered: bool,
    /// Bytes of commit log behind the master / leader; `None` when unknown.
    pub lag: Option<i64>,
}

impl PodFacts {
    fn pending(&self) -> bool {
        self.exists && !self.terminating && (!self.current || self.restart_requested)
    }

    fn leads(&self) -> bool {
        matches!(self.role, ReplicaRole::Master | ReplicaRole::Leader)
    }
}

/// Everything [`plan`] decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollInput {
    pub mode: BrokerMode,
    pub pods: Vec<PodFacts>,
    pub max_lag_bytes: i64,
    pub promote_before_restart: bool,
    /// `spec.replication.brokerRole` is SYNC_MASTER: every acknowledged message is on a slave.
    pub sync_master: bool,
    /// `spec.promote` is set: the user pins the master, so the roll never promotes.
    pub master_pinned: bool,
    pub paused: bool,
    /// Unix seconds.
    pub now: i64,
    /// Ordinal → unix second before which the pod is not tried again.
    pub backoff_until: BTreeMap<i32, i64>,
    /// Another group of the cluster rolls first (see [`cluster_blocker`]).
    pub blocked_by: Option<String>,
    /// A promotion started while the old master is down.
    pub promoting: Option<i32>,
    /// A roll was under way at the last pass: it ends only once its last pod is Ready again.
    pub in_progress: bool,
}

/// The one next step of a roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every pod runs the current template.
    Done,
    Paused,
    Wait {
        pod: Option<i32>,
        waiting_for: String,
    },
    /// Evict (delete) the pod; the StatefulSet recreates it from the current template.
    Restart {
        ordinal: i32,
        reason: String,
    },
    /// Raft: the leader's turn has come; hand leadership to the most up-to-date follower.
    TransferLeadership {
        from: i32,
        to: i32,
    },
    /// MasterSlave with promoteBeforeRestart: write the intent to status, render `target` as
    /// master, stop the old master, then promote the slave holding the most commit log.
    PromoteThenRestart {
        master: i32,
        target: i32,
    },
    /// Finish a promotion started by [`Step::PromoteThenRestart`]; `stop` is the old master
    /// when it still runs (the pass that chose the promotion ended before evicting it).
    Promote {
        target: i32,
        stop: Option<i32>,
    },
}

/// [`plan`]'s answer: the step and the counts for `status.roll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub step: Step,
    /// Ordinals still to restart.
    pub pending: Vec<i32>,
    pub total: i32,
}

fn describe(p: &PodFacts) -> String {
    if p.restart_requested {
        format!("annotation {RESTART_ANNOTATION} asks for a restart")
    } else {
        "its pod template revision is outdated (image, config or resources changed)".to_owned()
    }
}

fn role_word(mode: BrokerMode, p: &PodFacts) -> &'static str {
    match (mode, p.role) {
        (_, ReplicaRole::Master) => "master",
        (_, ReplicaRole::Leader) => "leader",
        (_, ReplicaRole::Slave) => "slave",
        (_, ReplicaRole::Follower) => "follower",
        (BrokerMode::Raft, _) => "replica of unknown Raft role",
        (BrokerMode::MasterSlave, _) => "replica of unknown role",
    }
}

/// Exponential back-off after `failures` failed attempts on one pod: 10 s, 20 s, ... 10 min.
pub fn backoff_secs(failures: u32) -> i64 {
    let shift = failures.saturating_sub(1).min(16);
    (BACKOFF_BASE_SECS << shift).min(BACKOFF_MAX_SECS)
}

/// Chooses the next step. Rules, in order:
/// 1. nothing to restart → `Done`; paused → `Paused`; another group of the cluster rolls → wait;
/// 2. a promotion under way is finished first, even when paused (the group has no master
///    until it is);
/// 3. never more than one pod down: a terminating, missing or restarted-but-unready pod is
///    waited for;
/// 4. unready pods that need a restart go first (they serve nothing, and a restart may heal them);
/// 5. then, with every pod Ready, every slave / follower must be caught up (lag ≤ max) and, in
///    Raft mode, a registered leader must exist; then slaves / followers one at a time;
/// 6. the master / leader last: Raft hands leadership on first; MasterSlave restarts it (or,
///    with promoteBeforeRestart, promotes a caught-up slave while it is down).
///
/// Pods in back-off are skipped while their time has not come.
pub fn plan(input: &RollInput) -> Plan {
    let pending: Vec<i32> = input
        .pods
        .iter()
        .filter(|p| p.pending())
        .map(|p| p.ordinal)
        .collect();
    let total = i32::try_from(input.pods.len()).unwrap_or(i32::MAX);
    let step = next_step(input, &pending);
    Plan {
        step,
        pending,
        total,
    }
}

fn wait(pod: Option<i32>, waiting_for: impl Into<String>) -> Step {
    Step::Wait {
        pod,
        waiting_for: waiting_for.into(),
    }
}

fn next_step(input: &RollInput, pending: &[i32]) -> Step {
    let pods = &input.pods;
    let settled = pods.iter().all(|p| p.exists && !p.terminating && p.ready);
    if pending.is_empty() && input.promoting.is_none() && (!input.in_progress || settled) {
        return Step::Done;
    }
    // Only the driver ends a promotion, on the promoted broker's own word: the registrations
    // the facts come from name brokers by brokerId, which a promotion moves between pods.
    if let Some(target) = input.promoting {
        let stop = pods
            .iter()
            .find(|p| p.ordinal != target && p.pending())
            .map(|p| p.ordinal);
        return Step::Promote { target, stop };
    }
    if input.paused {
        return Step::Paused;
    }
    if let Some(other) = &input.blocked_by {
        return wait(
            None,
            format!("group {other} of the cluster to finish its roll"),
        );
    }
    if let Some(p) = pods.iter().find(|p| p.terminating) {
        return wait(Some(p.ordinal), "the pod to terminate");
    }
    if let Some(p) = pods.iter().find(|p| !p.exists) {
        return wait(Some(p.ordinal), "the StatefulSet to recreate the pod");
    }
    if let Some(p) = pods.iter().find(|p| !p.pending() && !p.ready) {
        return wait(Some(p.ordinal), "the pod to become Ready");
    }
    if pending.is_empty() {
        return Step::Done;
    }
    let in_backoff = |o: i32| input.backoff_until.get(&o).is_some_and(|t| *t > input.now);
    let earliest_retry = |candidates: &[&PodFacts]| {
        candidates
            .iter()
            .filter_map(|p| input.backoff_until.get(&p.ordinal).map(|t| (*t, p.ordinal)))
            .min()
    };

    let unready: Vec<&PodFacts> = pods.iter().filter(|p| p.pending() && !p.ready).collect();
    if !unready.is_empty() {
        return match unready.iter().find(|p| !in_backoff(p.ordinal)) {
            Some(p) => Step::Restart {
                ordinal: p.ordinal,
                reason: format!("not Ready, restarted first; {}", describe(p)),
            },
            None => back_off_wait(earliest_retry(&unready), input.now),
        };
    }

    // Every pod is Ready from here on.
    for p in pods.iter().filter(|p| !p.leads()) {
        if matches!(p.role, ReplicaRole::Unknown | ReplicaRole::Candidate) && pods.len() > 1 {
            return wait(
                Some(p.ordinal),
                "the broker to report its role (registered with the NameServers)",
            );
        }
        match p.lag {
            Some(lag) if lag <= input.max_lag_bytes => {}
            Some(lag) => {
                return wait(
                    Some(p.ordinal),
                    format!(
                        "replication to catch up ({lag} bytes behind, at most {} allowed)",
                        input.max_lag_bytes
                    ),
                );
            }
            None if pods.len() > 1 => {
                return wait(Some(p.ordinal), "the replica's replication lag to be known");
            }
            None => {}
        }
    }
    let leaders: Vec<&PodFacts> = pods.iter().filter(|p| p.leads()).collect();
    if input.mode == BrokerMode::Raft {
        match leaders.as_slice() {
            [l] if l.registered => {}
            [l] => {
                return wait(
                    Some(l.ordinal),
                    "the NameServers to list the new leader as brokerId 0",
                );
            }
            [] => return wait(None, "the Raft group to elect a leader"),
            _ => return wait(None, "a single Raft leader (several replicas claim it)"),
        }
    }

    let followers: Vec<&PodFacts> = pods.iter().filter(|p| p.pending() && !p.leads()).collect();
    if !followers.is_empty() {
        return match followers.iter().find(|p| !in_backoff(p.ordinal)) {
            Some(p) => Step::Restart {
                ordinal: p.ordinal,
                reason: format!(
                    "{} before the {}; {}",
                    role_word(input.mode, p),
                    if input.mode == BrokerMode::Raft {
                        "leader"
                    } else {
                        "master"
                    },
                    describe(p)
                ),
            },
            None => back_off_wait(earliest_retry(&followers), input.now),
        };
    }

    // Only the master / leader is left.
    let Some(master) = pods.iter().find(|p| p.pending() && p.leads()) else {
        return wait(None, "the replicas' roles to be known");
    };
    if in_backoff(master.ordinal) {
        return back_off_wait(earliest_retry(&[master]), input.now);
    }
    // The most up-to-date other replica: least lag, then lowest ordinal.
    let best = pods
        .iter()
        .filter(|p| p.ordinal != master.ordinal && p.ready && p.registered)
        .filter(|p| p.lag.is_some_and(|l| l <= input.max_lag_bytes))
        .min_by_key(|p| (p.lag.unwrap_or(i64::MAX), p.ordinal));
    match input.mode {
        BrokerMode::Raft => match best {
            Some(to) => Step::TransferLeadership {
                from: master.ordinal,
                to: to.ordinal,
            },
            None => wait(
                Some(master.ordinal),
                "a Ready, registered, caught-up follower to take over leadership",
            ),
        },
        BrokerMode::MasterSlave => match best {
            Some(target)
                if input.promote_before_restart
                    && !input.master_pinned
                    && input.sync_master
                    && target.role == ReplicaRole::Slave =>
            {
                Step::PromoteThenRestart {
                    master: master.ordinal,
                    target: target.ordinal,
                }
            }
            _ => Step::Restart {
                ordinal: master.ordinal,
                reason: format!(
                    "master last, the group takes no writes until it is back{}; {}",
                    if !input.promote_before_restart {
                        ""
                    } else if input.master_pinned {
                        " (promoteBeforeRestart is ignored while spec.promote pins the master)"
                    } else if !input.sync_master {
                        NOT_SYNC_MASTER
                    } else {
                        ""
                    },
                    describe(master)
                ),
            },
        },
    }
}

fn back_off_wait(earliest: Option<(i64, i32)>, now: i64) -> Step {
    match earliest {
        Some((at, ordinal)) => wait(
            Some(ordinal),
            format!(
                "back-off after a failed attempt ({} s left)",
                (at - now).max(0)
            ),
        ),
        None => wait(None, "back-off"),
    }
}

/// What one group knows about a sibling's roll, from the sibling's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiblingRoll {
    pub name: String,
    /// Has a roll under way (`status.roll` present).
    pub active: bool,
    /// Has restarted at least one pod in that roll.
    pub restarted: bool,
}

/// Groups of one cluster roll one at a time. `siblings` are the cluster's groups in a stable
/// order (oldest first), `me` among them. A group that already restarted pods goes before one
/// that has not; between equals the older goes first. That is a total order, so two groups
/// never wait for each other.
pub fn cluster_blocker(me: &str, siblings: &[SiblingRoll]) -> Option<String> {
    let pos = |name: &str| siblings.iter().position(|s| s.name == name);
    let my_pos = pos(me)?;
    let mine = &siblings[my_pos];
    siblings
        .iter()
        .enumerate()
        .filter(|(i, s)| *i != my_pos && s.active)
        .find(|(i, s)| {
            (s.restarted, std::cmp::Reverse(*i)) > (mine.restarted, std::cmp::Reverse(my_pos))
        })
        .map(|(_, s)| s.name.clone())
}

// ---------------------------------------------------------------------------------------------
// I/O: facts from the apiserver and the brokers, and carrying a step out.
// ---------------------------------------------------------------------------------------------

/// What the reconciler hands the driver.
#[derive(Debug)]
pub struct RollContext<'a> {
    pub ctx: &'a Context,
    pub bg: &'a BrokerGroup,
    pub id: &'a build::GroupIdentity,
    pub sts: &'a StatefulSet,
    pub replicas: &'a [ReplicaStatus],
    /// Ordinal → broker address that answered this pass.
    pub addrs: &'a BTreeMap<i32, String>,
    pub admin: &'a ferrum_client::Admin,
    /// Every BrokerGroup of the same cluster, oldest first (including this one).
    pub siblings: &'a [BrokerGroup],
}

/// What the driver did, for status and the reconciler.
#[derive(Debug, Clone, Default)]
pub struct RollOutcome {
    /// `status.roll`; `None` when nothing is left to restart.
    pub status: Option<RollStatus>,
    /// A slave promoted (or being promoted) by the roll: the new master ordinal.
    pub new_master: Option<i32>,
}

impl RollOutcome {
    /// One line for the `Progressing` condition.
    pub fn progress(&self) -> Option<String> {
        let r = self.status.as_ref()?;
        Some(format!(
            "rolling restart {}/{} pods current: {}{}",
            r.done,
            r.total,
            r.reason,
            r.waiting_for
                .as_deref()
                .map(|w| format!("; waiting for {w}"))
                .unwrap_or_default()
        ))
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Per-pod facts from the group's pods, the StatefulSet's update revision and the replica
/// statuses read from the brokers this pass.
pub fn facts(
    group: &str,
    replicas: i32,
    update_revision: &str,
    pods: &[Pod],
    statuses: &[ReplicaStatus],
) -> Vec<PodFacts> {
    (0..replicas)
        .map(|i| {
            let name = pod_name(group, i);
            let pod = pods.iter().find(|p| p.name_any() == name);
            let status = statuses.iter().find(|s| s.pod == name);
            PodFacts {
                ordinal: i,
                exists: pod.is_some(),
                terminating: pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
                ready: pod.is_some_and(is_ready),
                current: pod.is_some_and(|p| {
                    p.labels().get(REVISION_LABEL).map(String::as_str) == Some(update_revision)
                }),
                restart_requested: pod
                    .is_some_and(|p| p.annotations().contains_key(RESTART_ANNOTATION)),
                role: status.map(|s| s.role).unwrap_or(ReplicaRole::Unknown),
                registered: status.is_some_and(|s| s.registered),
                lag: status.and_then(|s| {
                    if matches!(s.role, ReplicaRole::Master | ReplicaRole::Leader) {
                        Some(0)
                    } else {
                        s.replication_lag_bytes
                    }
                }),
            }
        })
        .collect()
}

fn secs(t: &Time) -> i64 {
    t.0.as_second()
}

fn time_at(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())
}

/// The sibling view of every group of the cluster, from their statuses.
fn sibling_rolls(siblings: &[BrokerGroup]) -> Vec<SiblingRoll> {
    siblings
        .iter()
        .map(|g| {
            let roll = g.status.as_ref().and_then(|s| s.roll.as_ref());
            SiblingRoll {
                name: g.name_any(),
                active: roll.is_some(),
                restarted: roll.is_some_and(|r| r.restarted > 0 || r.promoting.is_some()),
            }
        })
        .collect()
}

/// Gathers the facts, plans, carries the step out and returns the new `status.roll`. Skipped
/// (previous status kept) until the StatefulSet controller has published an update revision.
pub async fn drive(rc: RollContext<'_>) -> Result<RollOutcome, kube::Error> {
    let bg = rc.bg;
    let group = bg.name_any();
    let ns = bg.namespace().unwrap_or_default();
    let previous = bg.status.as_ref().and_then(|s| s.roll.clone());
    let Some(update_revision) = rc
        .sts
        .status
        .as_ref()
        .and_then(|s| s.update_revision.clone())
    else {
        return Ok(RollOutcome {
            status: previous,
            new_master: None,
        });
    };
    // The object this pass got may predate the last pass's status write (a pod event can
    // trigger the pass first): the roll's memory is read fresh.
    let groups: Api<BrokerGroup> = Api::namespaced(rc.ctx.client.clone(), &ns);
    // A list by name, not a get: the operator's RBAC lists and watches BrokerGroups only.
    let fresh = groups
        .list(&ListParams::default().fields(&format!("metadata.name={group}")))
        .await
        .ok()
        .and_then(|l| l.items.into_iter().find(|g| g.uid() == bg.uid()));
    let fresh_status = match fresh {
        Some(g) => g.status,
        None => bg.status.clone(),
    };
    let previous = fresh_status.as_ref().and_then(|s| s.roll.clone());
    let pods_api: Api<Pod> = Api::namespaced(rc.ctx.client.clone(), &ns);
    let selector = build::broker_selector(&group)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = pods_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut backoff: Vec<PodBackoff> = previous
        .as_ref()
        .map(|r| r.backoff.clone())
        .unwrap_or_default();
    let ordinal_of = |pod: &str| -> Option<i32> {
        pod.strip_prefix(&format!("{group}-"))
            .and_then(|s| s.parse().ok())
    };
    let input = RollInput {
        mode: bg.spec.mode,
        pods: facts(
            &group,
            bg.spec.replicas,
            &update_revision,
            &pods,
            rc.replicas,
        ),
        max_lag_bytes: bg.spec.upgrade.max_lag_bytes(),
        promote_before_restart: bg.spec.upgrade.promote_before_restart,
        sync_master: sync_master(bg),
        master_pinned: bg.spec.promote.is_some(),
        paused: bg
            .annotations()
            .get(ROLL_PAUSE_ANNOTATION)
            .is_some_and(|v| v == "true"),
        now,
        backoff_until: backoff
            .iter()
            .filter_map(|b| Some((ordinal_of(&b.pod)?, secs(&b.retry_after))))
            .collect(),
        blocked_by: cluster_blocker(&group, &sibling_rolls(rc.siblings)),
        promoting: previous.as_ref().and_then(|r| r.promoting),
        in_progress: previous.is_some(),
    };
    let plan = plan(&input);
    if let Some(m) = &rc.ctx.metrics {
        m.set_roll(&ns, &group, plan.pending.len(), plan.step != Step::Done);
    }
    if plan.step == Step::Done {
        if previous.is_some() {
            rc.ctx
                .event(
                    &bg.object_ref(&()),
                    EventType::Normal,
                    "RollFinished",
                    format!(
                        "every pod of {group} runs the current template ({} restarted)",
                        previous.as_ref().map(|r| r.restarted).unwrap_or_default()
                    ),
                )
                .await;
        }
        return Ok(RollOutcome::default());
    }

    let mut status = RollStatus {
        pod: None,
        reason: String::new(),
        waiting_for: None,
        started_at: previous
            .as_ref()
            .and_then(|r| r.started_at.clone())
            .or_else(|| Some(time_at(now))),
        done: plan.total - i32::try_from(plan.pending.len()).unwrap_or(0),
        total: plan.total,
        restarted: previous.as_ref().map(|r| r.restarted).unwrap_or_default(),
        promoting: input.promoting,
        backoff: Vec::new(),
    };
    // Back-off entries of pods that no longer need a restart are dropped.
    backoff.retain(|b| ordinal_of(&b.pod).is_some_and(|o| plan.pending.contains(&o)));
    let mut new_master = None;
    match plan.step.clone() {
        Step::Done => {}
        Step::Paused => {
            status.reason = format!("paused by annotation {ROLL_PAUSE_ANNOTATION}");
            status.waiting_for = Some(format!("{ROLL_PAUSE_ANNOTATION} to be removed"));
        }
        Step::Wait { pod, waiting_for } => {
            status.pod = pod.map(|o| pod_name(&group, o));
            status.reason = "waiting before the next restart".to_owned();
            status.waiting_for = Some(waiting_for);
        }
        Step::Restart { ordinal, reason } => {
            restart_pod(
                &rc,
                &pods_api,
                &pods,
                ordinal,
                &reason,
                &mut status,
                &mut backoff,
                now,
            )
            .await;
        }
        Step::TransferLeadership { from, to } => {
            let (from_pod, to_pod) = (pod_name(&group, from), pod_name(&group, to));
            status.pod = Some(from_pod.clone());
            let addr = rc.addrs.get(&from).cloned().unwrap_or_default();
            match transfer_leader(rc.admin, &addr, to).await {
                Ok(()) => {
                    status.reason = format!(
                        "leadership handed from {from_pod} to {to_pod} before restarting {from_pod}"
                    );
                    status.waiting_for =
                        Some("the NameServers to list the new leader as brokerId 0".to_owned());
                    pod_event(&rc, &pods, &from_pod, EventType::Normal, "LeadershipTransferred",
                            format!("Raft leadership moved from {from_pod} to {to_pod} so {from_pod} can restart"),
                        )
                        .await;
                }
                // A broker image without the transfer request: restart the leader as it
                // is, and the remaining replicas elect a new one (writes pause for the
                // election, about a second).
                Err(TransferError::Unsupported(why)) => match evict(&pods_api, &from_pod).await {
                    Ok(()) => {
                        status.restarted += 1;
                        status.reason = format!(
                            "restarted leader {from_pod} without a transfer ({why}); the followers elect a new leader"
                        );
                        status.waiting_for = Some("the pod to come back Ready".to_owned());
                        pod_event(&rc, &pods, &from_pod, EventType::Normal, "Restarting",
                                format!("restarting leader {from_pod}: its broker cannot hand leadership on ({why}); the followers elect a new leader"),
                            )
                            .await;
                        if let Some(m) = &rc.ctx.metrics {
                            m.pod_restarted(&ns, &group);
                        }
                    }
                    Err(e) => {
                        status.reason = format!("restart of leader {from_pod} failed: {e}");
                        record_failure(&mut backoff, &from_pod, now, e);
                    }
                },
                Err(TransferError::Failed(why)) => {
                    status.reason = format!(
                        "leadership transfer from {from_pod} ({addr}) to {to_pod} failed: {why}"
                    );
                    record_failure(&mut backoff, &from_pod, now, why);
                    pod_event(
                        &rc,
                        &pods,
                        &from_pod,
                        EventType::Warning,
                        "TransferFailed",
                        status.reason.clone(),
                    )
                    .await;
                }
            }
        }
        Step::PromoteThenRestart { master, target } => {
            let (old, new) = (pod_name(&group, master), pod_name(&group, target));
            status.pod = Some(old.clone());
            // The spec may say SYNC_MASTER while the master still runs an older ASYNC_MASTER
            // configuration (the roll that changes the role restarts it last): ask it.
            let master_addr = rc.addrs.get(&master).cloned().unwrap_or_default();
            let running = match rc.admin.broker_replica_status(&master_addr).await {
                Ok(s) => Ok(s.role),
                Err(e) => Err(e.to_string()),
            };
            if running.as_deref() != Ok("SYNC_MASTER") {
                let why = match &running {
                    Ok(role) => format!("{old} runs as {role}"),
                    Err(e) => format!("{old} did not say its role ({e})"),
                };
                let reason = format!(
                    "master last, restarted in place because {why}{NOT_SYNC_MASTER}; {}",
                    describe(&input.pods[usize::try_from(master).unwrap_or_default()])
                );
                restart_pod(
                    &rc,
                    &pods_api,
                    &pods,
                    master,
                    &reason,
                    &mut status,
                    &mut backoff,
                    now,
                )
                .await;
            } else {
                // Written down before anything changes, so that a pass after an operator
                // restart finishes the promotion (see Step::Promote).
                status.promoting = Some(target);
                status.reason =
                    format!("promoting {new} to master, {old} stops first (promoteBeforeRestart)");
                status.waiting_for =
                    Some(format!("{old} to stop and {new} to accept the promotion"));
                write_intent(&rc, &groups, &fresh_status, &status, target).await?;
                // The restarted pod must read a slave's broker.conf, so the files are rendered
                // with the new master before the old one stops.
                apply_config(&rc, &ns, target).await?;
                match evict(&pods_api, &old).await {
                    Ok(()) => {
                        status.restarted += 1;
                        pod_event(&rc, &pods, &old, EventType::Normal, "Restarting",
                            format!(
                                "restarting master {old} to promote {new} (promoteBeforeRestart); {}",
                                describe(&input.pods[usize::try_from(master).unwrap_or_default()])
                            ),
                        )
                        .await;
                        if let Some(m) = &rc.ctx.metrics {
                            m.pod_restarted(&ns, &group);
                        }
                        new_master = Some(
                            promote_phase(
                                &rc,
                                &pods,
                                &input.pods,
                                target,
                                &mut status,
                                &groups,
                                &fresh_status,
                            )
                            .await?,
                        );
                    }
                    Err(why) => {
                        // The old master stays master: its configuration comes back and the
                        // intent is dropped (the final status names it master again).
                        apply_config(&rc, &ns, master).await?;
                        status.promoting = None;
                        status.reason = format!("restart of master {old} failed: {why}");
                        status.waiting_for = None;
                        record_failure(&mut backoff, &old, now, why);
                        pod_event(
                            &rc,
                            &pods,
                            &old,
                            EventType::Warning,
                            "RestartFailed",
                            status.reason.clone(),
                        )
                        .await;
                    }
                }
            }
        }
        Step::Promote { target, stop } => {
            let new = pod_name(&group, target);
            status.pod = Some(new.clone());
            new_master = Some(target);
            let mut stopped = true;
            if let Some(m) = stop {
                let old = pod_name(&group, m);
                match evict(&pods_api, &old).await {
                    Ok(()) => {
                        status.restarted += 1;
                        pod_event(&rc, &pods, &old, EventType::Normal, "Restarting",
                            format!("restarting master {old} to finish promoting {new} (promoteBeforeRestart)"),
                        )
                        .await;
                        if let Some(metrics) = &rc.ctx.metrics {
                            metrics.pod_restarted(&ns, &group);
                        }
                    }
                    Err(why) => {
                        stopped = false;
                        apply_config(&rc, &ns, m).await?;
                        new_master = Some(m);
                        status.promoting = None;
                        status.pod = Some(old.clone());
                        status.reason = format!("restart of master {old} failed: {why}");
                        status.waiting_for = None;
                        record_failure(&mut backoff, &old, now, why);
                        pod_event(
                            &rc,
                            &pods,
                            &old,
                            EventType::Warning,
                            "RestartFailed",
                            status.reason.clone(),
                        )
                        .await;
                    }
                }
            }
            if stopped {
                new_master = Some(
                    promote_phase(
                        &rc,
                        &pods,
                        &input.pods,
                        target,
                        &mut status,
                        &groups,
                        &fresh_status,
                    )
                    .await?,
                );
            }
        }
    }
    status.backoff = backoff;
    Ok(RollOutcome {
        status: Some(status),
        new_master,
    })
}

/// An Event on the BrokerGroup about one of its pods: the pod is the related object, so
/// each pod's restarts form their own Event (a recorder folds repeats of one key into a
/// series and keeps the first note).
async fn pod_event(
    rc: &RollContext<'_>,
    pods: &[Pod],
    pod: &str,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Roll".into(),
        secondary: pods
            .iter()
            .find(|p| p.name_any() == pod)
            .map(|p| p.object_ref(&())),
    };
    if let Err(e) = rc.ctx.recorder.publish(&ev, &rc.bg.object_ref(&())).await {
        tracing::warn!(error = %e, reason, pod, "could not record event");
    }
}

/// Evicts one pod and records it: the Restarting Event with its reason, or the failure with
/// its back-off and a RestartFailed Event.
#[allow(clippy::too_many_arguments)]
async fn restart_pod(
    rc: &RollContext<'_>,
    pods_api: &Api<Pod>,
    pods: &[Pod],
    ordinal: i32,
    reason: &str,
    status: &mut RollStatus,
    backoff: &mut Vec<PodBackoff>,
    now: i64,
) {
    let group = rc.bg.name_any();
    let ns = rc.bg.namespace().unwrap_or_default();
    let pod = pod_name(&group, ordinal);
    status.pod = Some(pod.clone());
    match evict(pods_api, &pod).await {
        Ok(()) => {
            status.restarted += 1;
            status.reason = format!("restarted {pod}: {reason}");
            status.waiting_for = Some("the pod to come back Ready".to_owned());
            pod_event(
                rc,
                pods,
                &pod,
                EventType::Normal,
                "Restarting",
                format!("restarting {pod}: {reason}"),
            )
            .await;
            if let Some(m) = &rc.ctx.metrics {
                m.pod_restarted(&ns, &group);
            }
        }
        Err(why) => {
            status.reason = format!("restart of {pod} failed: {why}");
            status.waiting_for = None;
            record_failure(backoff, &pod, now, why);
            pod_event(
                rc,
                pods,
                &pod,
                EventType::Warning,
                "RestartFailed",
                status.reason.clone(),
            )
            .await;
        }
    }
}

/// One more failed attempt on `pod`: its back-off doubles.
fn record_failure(backoff: &mut Vec<PodBackoff>, pod: &str, now: i64, error: String) {
    let failures = backoff
        .iter()
        .find(|b| b.pod == pod)
        .map(|b| b.failures)
        .unwrap_or_default()
        + 1;
    backoff.retain(|b| b.pod != pod);
    backoff.push(PodBackoff {
        pod: pod.to_owned(),
        failures,
        retry_after: time_at(now + backoff_secs(failures)),
        last_error: error,
    });
}

/// Renders every replica's broker.conf with `master` as the master.
async fn apply_config(rc: &RollContext<'_>, ns: &str, master: i32) -> Result<(), kube::Error> {
    let cm: ConfigMap = build::config_map_for(&rc.bg.spec, rc.id, master);
    let cms: Api<ConfigMap> = Api::namespaced(rc.ctx.client.clone(), ns);
    cms.patch(
        &build::config_map(&rc.bg.name_any()),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(())
}

/// Records a promotion in the group's status before the step acts on it: `status.roll` with
/// `promoting`, and `masterOrdinal` naming the slave to promote, so the next pass renders it
/// as master and finishes the promotion even if this operator stops now. The rest of the
/// status is the one last written, applied by the same field manager as every status write.
async fn write_intent(
    rc: &RollContext<'_>,
    groups: &Api<BrokerGroup>,
    last: &Option<BrokerGroupStatus>,
    roll: &RollStatus,
    master: i32,
) -> Result<(), kube::Error> {
    let mut status = last.clone().unwrap_or_default();
    status.roll = Some(roll.clone());
    status.master_ordinal = Some(master);
    let patch = serde_json::json!({
        "apiVersion": "ferrum.dev/v1alpha1",
        "kind": "BrokerGroup",
        "status": status,
    });
    groups
        .patch_status(
            &rc.bg.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// What the replicas running the current template say during a promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromotionChoice {
    /// This replica already is master: the promotion is over.
    Done(i32),
    /// Promote this slave: it holds the most commit log.
    Promote(i32),
    /// No replica answered.
    Nobody,
}

/// Chooses whom to promote from the answers (ordinal, role, max commit-log offset) of the
/// replicas that run the current template. Once the old master is gone no slave's log grows,
/// and with SYNC_MASTER every acknowledged message is on at least one slave, so the slave with
/// the highest offset holds them all; the planned target wins ties. A replica that already
/// says master ends the promotion.
pub fn choose_promotion(target: i32, answers: &[(i32, String, i64)]) -> PromotionChoice {
    let masters: Vec<i32> = answers
        .iter()
        .filter(|(_, role, _)| role.ends_with("MASTER"))
        .map(|(o, _, _)| *o)
        .collect();
    if let Some(m) = masters.iter().find(|m| **m == target).or(masters.first()) {
        return PromotionChoice::Done(*m);
    }
    answers
        .iter()
        .filter(|(_, role, _)| role == "SLAVE")
        .max_by_key(|(o, _, offset)| (*offset, *o == target, std::cmp::Reverse(*o)))
        .map_or(PromotionChoice::Nobody, |(o, _, _)| {
            PromotionChoice::Promote(*o)
        })
}

/// The address at which a replica's broker answers as itself: its pod's DNS name (the
/// NameServers list brokers by brokerId, which a promotion moves from pod to pod).
fn own_addr(rc: &RollContext<'_>, ordinal: i32) -> String {
    let group = rc.bg.name_any();
    let pod = pod_name(&group, ordinal);
    rc.ctx
        .broker_addr_overrides
        .get(&pod)
        .cloned()
        .unwrap_or_else(|| {
            format!(
                "{}:{}",
                build::pod_dns(&group, ordinal, &rc.bg.namespace().unwrap_or_default()),
                build::BROKER_PORT
            )
        })
}

/// The promotion itself, once the old master is stopping: asks the replicas on the current
/// template, picks the slave with the most commit log (recording a change of target before
/// acting on it), and asks it to promote itself for a few seconds; later passes go on.
/// Returns the ordinal the status is to name master.
async fn promote_phase(
    rc: &RollContext<'_>,
    pods: &[Pod],
    facts: &[PodFacts],
    target: i32,
    status: &mut RollStatus,
    groups: &Api<BrokerGroup>,
    last: &Option<BrokerGroupStatus>,
) -> Result<i32, kube::Error> {
    let group = rc.bg.name_any();
    let ns = rc.bg.namespace().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + PROMOTE_IN_PASS;
    // The old template's pods other than the target, as the pass found them: the old master
    // among them. A pod object goes only once its containers have stopped, and only then does
    // no slave's commit log grow any more, so only then are the offsets compared.
    let old: Vec<(String, String)> = facts
        .iter()
        .filter(|f| f.ordinal != target && f.exists && (f.terminating || f.pending()))
        .filter_map(|f| {
            let name = pod_name(&group, f.ordinal);
            let uid = pods.iter().find(|p| p.name_any() == name)?.uid()?;
            Some((name, uid))
        })
        .collect();
    let pods_api: Api<Pod> = Api::namespaced(rc.ctx.client.clone(), &ns);
    let selector = build::broker_selector(&group)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let best = loop {
        let mut answers = Vec::new();
        for p in facts
            .iter()
            .filter(|p| p.exists && !p.terminating && !p.pending())
        {
            if let Ok(s) = rc
                .admin
                .broker_replica_status(&own_addr(rc, p.ordinal))
                .await
            {
                answers.push((p.ordinal, s.role, s.max_phy_offset));
            }
        }
        let choice = choose_promotion(target, &answers);
        if let PromotionChoice::Done(m) = choice {
            let pod = pod_name(&group, m);
            status.promoting = None;
            status.pod = Some(pod.clone());
            status.reason = format!("{pod} is master");
            status.waiting_for = None;
            return Ok(m);
        }
        let remaining: Vec<String> = match pods_api
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => old
                .iter()
                .filter(|(name, uid)| {
                    list.items
                        .iter()
                        .any(|p| p.name_any() == *name && p.uid().as_deref() == Some(uid))
                })
                .map(|(name, _)| name.clone())
                .collect(),
            Err(_) => old.iter().map(|(name, _)| name.clone()).collect(),
        };
        match choice {
            PromotionChoice::Promote(best) if remaining.is_empty() => break best,
            PromotionChoice::Nobody if remaining.is_empty() => {
                status.waiting_for = Some(
                    "a slave running the current template to answer, to be promoted".to_owned(),
                );
                return Ok(target);
            }
            _ if tokio::time::Instant::now() >= deadline => {
                status.waiting_for = Some(format!(
                    "the old pod of {} to stop, so that no slave's commit log grows any more",
                    remaining.join(", ")
                ));
                return Ok(target);
            }
            _ => tokio::time::sleep(PROMOTE_RETRY).await,
        }
    };
    let new = pod_name(&group, best);
    status.pod = Some(new.clone());
    if best != target {
        status.promoting = Some(best);
        status.reason = format!(
            "promoting {new} instead of {}: it holds the most commit log",
            pod_name(&group, target)
        );
        write_intent(rc, groups, last, status, best).await?;
        apply_config(rc, &ns, best).await?;
    }
    let addr = own_addr(rc, best);
    let sync = sync_master(rc.bg);
    let mut last_error = String::from("no answer in time");
    let attempts = async {
        loop {
            match rc.admin.promote_broker(&addr, sync).await {
                Ok(s) => break s.epoch,
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(PROMOTE_RETRY).await;
        }
    };
    // A request cut short here may still promote the broker; the next pass then finds it
    // master (PromotionChoice::Done).
    let left = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(PROMOTE_RETRY * 4);
    if let Ok(epoch) = tokio::time::timeout(left, attempts).await {
        status.promoting = None;
        status.reason = format!("{new} promoted to master in epoch {epoch}");
        status.waiting_for = None;
        pod_event(
            rc,
            pods,
            &new,
            EventType::Normal,
            "Promoted",
            format!("{new} promoted in epoch {epoch} during the roll"),
        )
        .await;
        return Ok(best);
    }
    status.reason = format!("promotion of {new} not done yet: {last_error}");
    status.waiting_for = Some(format!("{new} to accept the promotion"));
    Ok(best)
}

fn sync_master(bg: &BrokerGroup) -> bool {
    bg.spec.replication.broker_role == MasterRole::SYNC_MASTER
}

/// Eviction, not deletion: the PodDisruptionBudget decides whether the pod may go now.
async fn evict(pods: &Api<Pod>, name: &str) -> Result<(), String> {
    match pods.evict(name, &EvictParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 429 => Err(format!(
            "the PodDisruptionBudget allows no disruption now ({})",
            e.message
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Why a leadership transfer did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TransferError {
    /// The broker does not know FERRUM_RAFT_TRANSFER_LEADER (an older image).
    Unsupported(String),
    Failed(String),
}

/// FERRUM_RAFT_TRANSFER_LEADER to the leader at `addr`, naming replica `to` by its
/// dLegerSelfId (`n<ordinal>`, as the operator renders it); answered once `to` leads.
async fn transfer_leader(
    admin: &ferrum_client::Admin,
    addr: &str,
    to: i32,
) -> Result<(), TransferError> {
    use ferrum_protocol::ResponseCode;
    if addr.is_empty() {
        return Err(TransferError::Failed(
            "the leader's address is not known".to_owned(),
        ));
    }
    match admin.transfer_leader(addr, Some(&format!("n{to}"))).await {
        Ok(_) => Ok(()),
        Err(e)
            if e.response_code() == Some(i32::from(ResponseCode::REQUEST_CODE_NOT_SUPPORTED)) =>
        {
            Err(TransferError::Unsupported(e.to_string()))
        }
        Err(e) => Err(TransferError::Failed(e.to_string())),
    }
}

/// The ordinals whose pods exist, for tests and callers that only need a count.
pub fn existing(pods: &[PodFacts]) -> BTreeSet<i32> {
    pods.iter()
        .filter(|p| p.exists)
        .map(|p| p.ordinal)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ordinal: i32, role: ReplicaRole) -> PodFacts {
        PodFacts {
            ordinal,
            exists: true,
            terminating: false,
            ready: true,
            current: false,
            restart_requested: false,
            role,
            registered: true,
            lag: Some(0),
        }
    }

    fn input(mode: BrokerMode, pods: Vec<PodFacts>) -> RollInput {
        RollInput {
            mode,
            pods,
            max_lag_bytes: 1024,
            promote_before_restart: false,
            sync_master: true,
            master_pinned: false,
            paused: false,
            now: 1_000,
            backoff_until: BTreeMap::new(),
            blocked_by: None,
            promoting: None,
            in_progress: true,
        }
    }

    fn ms(master: i32, n: i32) -> RollInput {
        input(
            BrokerMode::MasterSlave,
            (0..n)
                .map(|i| {
                    pod(
                        i,
                        if i == master {
                            ReplicaRole::Master
                        } else {
                            ReplicaRole::Slave
                        },
                    )
                })
                .collect(),
        )
    }

    fn raft(leader: i32) -> RollInput {
        input(
            BrokerMode::Raft,
            (0..3)
                .map(|i| {
                    pod(
                        i,
                        if i == leader {
                            ReplicaRole::Leader
                        } else {
                            ReplicaRole::Follower
                        },
                    )
                })
                .collect(),
        )
    }

    fn restarts(step: &Step) -> Option<i32> {
        match step {
            Step::Restart { ordinal, .. } => Some(*ordinal),
            _ => None,
        }
    }

    fn waits_for(step: &Step) -> String {
        match step {
            Step::Wait { waiting_for, .. } => waiting_for.clone(),
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    /// Applies a restart as the cluster would: the pod comes back current and, if `ready`,
    /// Ready and caught up.
    fn restarted(i: &mut RollInput, ordinal: i32, ready: bool) {
        let p = &mut i.pods[usize::try_from(ordinal).expect("ordinal")];
        p.current = true;
        p.restart_requested = false;
        p.ready = ready;
    }

    #[test]
    fn nothing_outdated_is_done() {
        let mut i = ms(0, 3);
        i.pods.iter_mut().for_each(|p| p.current = true);
        let plan = plan(&i);
        assert_eq!(plan.step, Step::Done);
        assert!(plan.pending.is_empty());
        assert_eq!(plan.total, 3);
        // The last restarted pod is waited for before the roll ends...
        i.pods[1].ready = false;
        assert!(waits_for(&super::plan(&i).step).contains("Ready"));
        // ...but pods starting outside a roll (a new group) are not the roll's business.
        i.in_progress = false;
        assert_eq!(super::plan(&i).step, Step::Done);
    }

    #[test]
    fn master_slave_restarts_slaves_one_at_a_time_then_the_master() {
        let mut i = ms(0, 3);
        let mut order = Vec::new();
        for _ in 0..10 {
            let p = plan(&i);
            match p.step {
                Step::Done => break,
                Step::Restart { ordinal, .. } => {
                    order.push(ordinal);
                    // Back but not Ready: the roll waits rather than taking a second pod.
                    restarted(&mut i, ordinal, false);
                    let w = waits_for(&plan(&i).step);
                    assert!(w.contains("Ready"), "{w}");
                    i.pods[usize::try_from(ordinal).expect("o")].ready = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn the_master_restart_says_writes_pause() {
        let mut i = ms(1, 2);
        restarted(&mut i, 0, true);
        match plan(&i).step {
            Step::Restart { ordinal, reason } => {
                assert_eq!(ordinal, 1);
                assert!(reason.contains("master last"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unready_pods_go_first_even_the_master() {
        let mut i = ms(0, 3);
        i.pods[0].ready = false;
        i.pods[0].role = ReplicaRole::Unknown;
        match plan(&i).step {
            Step::Restart { ordinal, reason } => {
                assert_eq!(ordinal, 0);
                assert!(reason.contains("not Ready"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Two unready outdated pods: both are already down, the lower ordinal goes first.
        let mut i = ms(0, 3);
        i.pods[2].ready = false;
        i.pods[1].ready = false;
        assert_eq!(restarts(&plan(&i).step), Some(1));
    }

    #[test]
    fn never_more_than_one_pod_down() {
        let mut i = ms(0, 3);
        i.pods[1].terminating = true;
        assert!(waits_for(&plan(&i).step).contains("terminate"));
        let mut i = ms(0, 3);
        i.pods[2].exists = false;
        assert!(waits_for(&plan(&i).step).contains("recreate"));
        // A current pod that is not Ready (the one just restarted) blocks every other restart.
        let mut i = ms(0, 3);
        restarted(&mut i, 2, false);
        let p = plan(&i);
        assert!(waits_for(&p.step).contains("Ready"));
        assert_eq!(
            p.step,
            Step::Wait {
                pod: Some(2),
                waiting_for: "the pod to become Ready".into()
            }
        );
        assert_eq!(p.pending, vec![0, 1]);
    }

    #[test]
    fn a_lagging_slave_holds_the_roll() {
        let mut i = ms(0, 3);
        restarted(&mut i, 1, true);
        i.pods[1].lag = Some(5000);
        let w = waits_for(&plan(&i).step);
        assert!(w.contains("5000 bytes behind") && w.contains("1024"), "{w}");
        i.pods[1].lag = None;
        assert!(waits_for(&plan(&i).step).contains("lag"));
        i.pods[1].lag = Some(1024);
        assert_eq!(restarts(&plan(&i).step), Some(2));
    }

    #[test]
    fn an_unknown_role_is_waited_for() {
        let mut i = ms(0, 2);
        i.pods[1].role = ReplicaRole::Unknown;
        i.pods[1].current = true;
        assert!(waits_for(&plan(&i).step).contains("role"));
        // A group of one has no replicas to wait for.
        let mut one = ms(0, 1);
        one.pods[0].lag = None;
        assert_eq!(restarts(&plan(&one).step), Some(0));
    }

    #[test]
    fn raft_followers_first_then_transfer_then_old_leader() {
        let mut i = raft(1);
        assert_eq!(restarts(&plan(&i).step), Some(0));
        restarted(&mut i, 0, true);
        assert_eq!(restarts(&plan(&i).step), Some(2));
        restarted(&mut i, 2, true);
        // Only the leader is left: hand leadership to the most up-to-date follower.
        i.pods[0].lag = Some(10);
        i.pods[2].lag = Some(3);
        assert_eq!(plan(&i).step, Step::TransferLeadership { from: 1, to: 2 });
        // It moved, but the NameServers do not show it yet.
        i.pods[1].role = ReplicaRole::Follower;
        i.pods[2].role = ReplicaRole::Leader;
        i.pods[2].registered = false;
        assert!(waits_for(&plan(&i).step).contains("brokerId 0"));
        i.pods[2].registered = true;
        match plan(&i).step {
            Step::Restart { ordinal, reason } => {
                assert_eq!(ordinal, 1);
                assert!(reason.contains("follower before the leader"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raft_transfer_needs_a_ready_caught_up_follower() {
        let mut i = raft(0);
        restarted(&mut i, 1, true);
        restarted(&mut i, 2, true);
        i.pods[1].lag = Some(9999);
        i.pods[2].registered = false;
        // Follower 1 is too far behind: the follower gate holds the roll first.
        assert!(waits_for(&plan(&i).step).contains("catch up"));
        i.pods[1].lag = Some(0);
        assert_eq!(
            plan(&i).step,
            Step::TransferLeadership { from: 0, to: 1 },
            "the unregistered follower is never chosen"
        );
    }

    #[test]
    fn raft_without_a_single_leader_waits() {
        let mut i = raft(0);
        i.pods[0].role = ReplicaRole::Follower;
        assert!(waits_for(&plan(&i).step).contains("elect"));
        let mut i = raft(0);
        i.pods[1].role = ReplicaRole::Leader;
        assert!(waits_for(&plan(&i).step).contains("single"));
    }

    #[test]
    fn promote_before_restart_promotes_the_most_caught_up_slave() {
        let mut i = ms(0, 3);
        i.promote_before_restart = true;
        restarted(&mut i, 1, true);
        restarted(&mut i, 2, true);
        i.pods[1].lag = Some(100);
        i.pods[2].lag = Some(0);
        assert_eq!(
            plan(&i).step,
            Step::PromoteThenRestart {
                master: 0,
                target: 2
            }
        );
        // Pinned by spec.promote: restart the master in place and say why.
        i.master_pinned = true;
        match plan(&i).step {
            Step::Restart { ordinal, reason } => {
                assert_eq!(ordinal, 0);
                assert!(reason.contains("spec.promote"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // No slave at all: nothing to promote.
        let mut one = ms(0, 1);
        one.promote_before_restart = true;
        assert_eq!(restarts(&plan(&one).step), Some(0));
    }

    #[test]
    fn a_promotion_under_way_is_finished_first() {
        let mut i = ms(0, 3);
        i.promoting = Some(2);
        // Old master 0 is down (terminating); promotion comes before any waiting.
        i.pods[0].terminating = true;
        i.pods[1].current = true;
        i.pods[2].current = true;
        assert_eq!(
            plan(&i).step,
            Step::Promote {
                target: 2,
                stop: None
            }
        );
        // Paused, or with the facts saying 2 leads (registrations move with a promotion):
        // only the driver, on the promoted broker's word, ends it.
        i.paused = true;
        i.pods[2].role = ReplicaRole::Master;
        i.pods[0].role = ReplicaRole::Slave;
        assert_eq!(
            plan(&i).step,
            Step::Promote {
                target: 2,
                stop: None
            }
        );
        // Even with every pod current, an unconfirmed promotion is not Done.
        let mut j = ms(0, 2);
        j.pods.iter_mut().for_each(|p| p.current = true);
        j.promoting = Some(1);
        assert_eq!(
            plan(&j).step,
            Step::Promote {
                target: 1,
                stop: None
            }
        );
    }

    #[test]
    fn a_promotion_whose_old_master_still_runs_stops_it_first() {
        // The pass that wrote the intent ended before the eviction (an operator restart).
        let mut i = ms(0, 3);
        i.pods[1].current = true;
        i.pods[2].current = true;
        i.promoting = Some(2);
        assert_eq!(
            plan(&i).step,
            Step::Promote {
                target: 2,
                stop: Some(0)
            }
        );
        // Once it is terminating it is not evicted again.
        i.pods[0].terminating = true;
        assert_eq!(
            plan(&i).step,
            Step::Promote {
                target: 2,
                stop: None
            }
        );
    }

    #[test]
    fn promote_before_restart_needs_sync_master() {
        let mut i = ms(0, 3);
        i.promote_before_restart = true;
        i.sync_master = false;
        restarted(&mut i, 1, true);
        restarted(&mut i, 2, true);
        match plan(&i).step {
            Step::Restart { ordinal, reason } => {
                assert_eq!(ordinal, 0);
                assert!(
                    reason.contains("master last") && reason.contains("SYNC_MASTER"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    fn answer(o: i32, role: &str, offset: i64) -> (i32, String, i64) {
        (o, role.to_owned(), offset)
    }

    #[test]
    fn the_slave_with_the_most_commit_log_is_promoted() {
        // A SYNC_MASTER acknowledged once either slave had a message: 1 got the last one.
        let a = [answer(1, "SLAVE", 900), answer(2, "SLAVE", 800)];
        assert_eq!(choose_promotion(2, &a), PromotionChoice::Promote(1));
        // Equal: the planned target.
        let a = [answer(1, "SLAVE", 900), answer(2, "SLAVE", 900)];
        assert_eq!(choose_promotion(2, &a), PromotionChoice::Promote(2));
        // The old master back on the new template, as a slave holding everything.
        let a = [answer(0, "SLAVE", 1000), answer(2, "SLAVE", 900)];
        assert_eq!(choose_promotion(2, &a), PromotionChoice::Promote(0));
        // Someone already promoted: over.
        let a = [answer(1, "SYNC_MASTER", 900), answer(2, "SLAVE", 900)];
        assert_eq!(choose_promotion(2, &a), PromotionChoice::Done(1));
        assert_eq!(choose_promotion(2, &[]), PromotionChoice::Nobody);
        let a = [answer(1, "UNKNOWN", 1)];
        assert_eq!(choose_promotion(1, &a), PromotionChoice::Nobody);
    }

    #[test]
    fn pause_stops_between_pods() {
        let mut i = ms(0, 3);
        i.paused = true;
        assert_eq!(plan(&i).step, Step::Paused);
        i.pods.iter_mut().for_each(|p| p.current = true);
        assert_eq!(plan(&i).step, Step::Done, "nothing to pause");
    }

    #[test]
    fn restart_annotation_restarts_one_pod() {
        let mut i = ms(0, 3);
        i.pods.iter_mut().for_each(|p| p.current = true);
        i.pods[2].restart_requested = true;
        let p = plan(&i);
        assert_eq!(p.pending, vec![2]);
        match p.step {
            Step::Restart { ordinal, reason } => {
                assert_eq!(ordinal, 2);
                assert!(reason.contains(RESTART_ANNOTATION), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn back_off_skips_a_pod_until_its_time() {
        let mut i = ms(0, 3);
        i.backoff_until.insert(1, 1_030);
        assert_eq!(
            restarts(&plan(&i).step),
            Some(2),
            "the next slave goes first"
        );
        i.backoff_until.insert(2, 1_020);
        let w = waits_for(&plan(&i).step);
        assert!(w.contains("20 s left"), "{w}");
        i.now = 1_031;
        assert_eq!(restarts(&plan(&i).step), Some(1));
        // The master in back-off waits too.
        let mut m = ms(0, 1);
        m.backoff_until.insert(0, 2_000);
        assert!(waits_for(&plan(&m).step).contains("back-off"));
        // An unready pod in back-off as well.
        let mut u = ms(0, 2);
        u.pods[1].ready = false;
        u.backoff_until.insert(1, 1_010);
        assert!(waits_for(&plan(&u).step).contains("10 s left"));
    }

    #[test]
    fn back_off_doubles_up_to_ten_minutes() {
        assert_eq!(backoff_secs(1), 10);
        assert_eq!(backoff_secs(2), 20);
        assert_eq!(backoff_secs(4), 80);
        assert_eq!(backoff_secs(7), 600);
        assert_eq!(backoff_secs(40), 600);
    }

    #[test]
    fn another_group_of_the_cluster_blocks() {
        let mut i = ms(0, 2);
        i.blocked_by = Some("payments".into());
        assert!(waits_for(&plan(&i).step).contains("payments"));
    }

    fn sib(name: &str, active: bool, restarted: bool) -> SiblingRoll {
        SiblingRoll {
            name: name.into(),
            active,
            restarted,
        }
    }

    #[test]
    fn groups_of_a_cluster_roll_one_at_a_time() {
        // Both want to roll, neither started: the older goes first.
        let s = [sib("a", true, false), sib("b", true, false)];
        assert_eq!(cluster_blocker("a", &s), None);
        assert_eq!(cluster_blocker("b", &s).as_deref(), Some("a"));
        // A younger group already mid-roll keeps going; the older one waits for it.
        let s = [sib("a", true, false), sib("b", true, true)];
        assert_eq!(cluster_blocker("a", &s).as_deref(), Some("b"));
        assert_eq!(cluster_blocker("b", &s), None);
        // Both mid-roll (they started together): the older one wins, never a deadlock.
        let s = [
            sib("a", true, true),
            sib("b", true, true),
            sib("c", false, false),
        ];
        assert_eq!(cluster_blocker("a", &s), None);
        assert_eq!(cluster_blocker("b", &s).as_deref(), Some("a"));
        assert_eq!(cluster_blocker("c", &s).as_deref(), Some("a"));
        // Idle siblings block nobody.
        let s = [sib("a", false, false), sib("b", true, false)];
        assert_eq!(cluster_blocker("b", &s), None);
        assert_eq!(cluster_blocker("zz", &s), None);
    }

    fn k8s_pod(name: &str, rev: &str, ready: bool, annotations: &[(&str, &str)]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": { REVISION_LABEL: rev },
                "annotations": annotations.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>()
            },
            "status": { "conditions": [ { "type": "Ready", "status": if ready { "True" } else { "False" } } ] }
        }))
        .expect("pod")
    }

    #[test]
    fn facts_from_pods_and_replica_statuses() {
        let pods = vec![
            k8s_pod("g-0", "new", true, &[]),
            k8s_pod("g-1", "old", false, &[(RESTART_ANNOTATION, "x")]),
        ];
        let statuses = vec![
            ReplicaStatus {
                pod: "g-0".into(),
                role: ReplicaRole::Master,
                ready: true,
                registered: true,
                replication_lag_bytes: None,
                epoch: None,
            },
            ReplicaStatus {
                pod: "g-1".into(),
                role: ReplicaRole::Slave,
                ready: false,
                registered: false,
                replication_lag_bytes: Some(77),
                epoch: None,
            },
        ];
        let f = facts("g", 3, "new", &pods, &statuses);
        assert_eq!(f.len(), 3);
        assert!(f[0].current && f[0].ready && !f[0].restart_requested);
        assert_eq!(f[0].lag, Some(0), "a master is never behind itself");
        assert!(!f[1].current && !f[1].ready && f[1].restart_requested);
        assert_eq!(f[1].lag, Some(77));
        assert!(!f[2].exists);
        assert_eq!(f[2].role, ReplicaRole::Unknown);
        assert_eq!(existing(&f), BTreeSet::from([0, 1]));
    }

    #[test]
    fn progress_line_for_the_condition() {
        let o = RollOutcome {
            status: Some(RollStatus {
                reason: "restarted g-1".into(),
                waiting_for: Some("the pod to come back Ready".into()),
                done: 1,
                total: 3,
                ..Default::default()
            }),
            new_master: None,
        };
        assert_eq!(
            o.progress().as_deref(),
            Some(
                "rolling restart 1/3 pods current: restarted g-1; waiting for the pod to come back Ready"
            )
        );
        assert_eq!(RollOutcome::default().progress(), None);
    }
}
