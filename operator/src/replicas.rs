//! Per-replica status of a BrokerGroup, read from the cluster's NameServers (which replicas are
//! registered, under which brokerId) and from each broker (role, commit-log offset); in Raft
//! mode also each replica's Raft status, from which the leader to label is chosen. The mapping
//! from those answers to `status.replicas` and the leader choice are pure and unit-tested; an
//! unreachable NameServer or broker becomes a note for the status, never an error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferrum_client::Admin;
use ferrum_protocol::replica::{BrokerReplicaStatus, RaftStatus, raft_node_id};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::build::{BROKER_PORT, broker_id, pod_dns, pod_name};
use crate::crd::{BrokerMode, ReplicaRole, ReplicaStatus};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// What one broker said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerView {
    /// `brokerRole` (`ASYNC_MASTER`, `SYNC_MASTER`, `SLAVE`).
    pub role: Option<String>,
    /// `commitLogMaxOffset`.
    pub max_offset: Option<i64>,
    /// The replication epoch its history ends in (FERRUM_GET_BROKER_REPLICA_STATUS only).
    pub epoch: Option<u32>,
    /// A master's view of its slaves: brokerId → bytes behind.
    pub slave_lag: BTreeMap<i64, i64>,
    /// The brokerId the broker says it has now.
    pub broker_id: Option<i64>,
}

impl BrokerView {
    pub fn from_replica_status(s: &BrokerReplicaStatus) -> Self {
        BrokerView {
            role: Some(s.role.clone()),
            max_offset: Some(s.max_phy_offset),
            epoch: Some(s.epoch),
            slave_lag: s
                .slaves
                .iter()
                .map(|x| (x.broker_id, x.lag_bytes))
                .collect(),
            broker_id: Some(s.broker_id),
        }
    }

    /// From GET_BROKER_RUNTIME_INFO, for brokers without Ferrum's replica-status request.
    pub fn from_runtime_info(table: &BTreeMap<String, String>) -> Self {
        BrokerView {
            role: table.get("brokerRole").cloned(),
            max_offset: table.get("commitLogMaxOffset").and_then(|v| v.parse().ok()),
            ..Default::default()
        }
    }
}

/// Why replica `target` may not be promoted now, or `Ok` when it may: it must be registered,
/// say it is a slave, and hold at least as much commit log as every replica that answered
/// (a live master refuses the promotion itself; the broker checks that again).
pub fn promotion_check(
    group: &str,
    target: i32,
    views: &BTreeMap<i32, BrokerView>,
) -> Result<(), String> {
    let pod = pod_name(group, target);
    let Some(view) = views.get(&target) else {
        return Err(format!(
            "{pod} did not answer (not registered on the NameServer, or unreachable)"
        ));
    };
    if view.role.as_deref() != Some("SLAVE") {
        return Err(format!(
            "{pod} is {}, not a slave",
            view.role.as_deref().unwrap_or("of unknown role")
        ));
    }
    let own = view.max_offset.unwrap_or(0);
    if let Some((other, ahead)) = views
        .iter()
        .filter(|(i, _)| **i != target)
        .filter_map(|(i, v)| Some((*i, v.max_offset? - own)))
        .find(|(_, ahead)| *ahead > 0)
    {
        return Err(format!(
            "{pod} is not caught up: {} holds {ahead} more bytes of commit log",
            pod_name(group, other)
        ));
    }
    Ok(())
}

/// The brokerId replica `ordinal` registers with. In Raft mode `master` is the observed
/// leader (or none, e.g. -1): the leader registers 0, a follower its position in `dLegerPeers`
/// + 1, which is ordinal + 1 because the operator lists the peers `n0`, `n1`, … in order.
pub fn expected_broker_id(mode: BrokerMode, ordinal: i32, master: i32) -> i64 {
    match mode {
        BrokerMode::MasterSlave => i64::from(broker_id(ordinal, master)),
        BrokerMode::Raft if ordinal == master => 0,
        BrokerMode::Raft => i64::from(ordinal) + 1,
    }
}

/// What one Raft replica said about itself (FERRUM_GET_RAFT_STATUS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftView {
    pub term: u64,
    /// openraft's state: `Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`.
    pub role: String,
}

/// The ordinal of the replica whose Raft node id is `node_id`: the operator names the replicas
/// `n{ordinal}` in `dLegerPeers`, and a node id is a fixed hash of that name.
pub fn raft_ordinal(node_id: u64, replicas: i32) -> Option<i32> {
    (0..replicas).find(|i| raft_node_id(&format!("n{i}")) == node_id)
}

/// The replica to label as leader: of those that say they lead, the one in the highest term
/// (a deposed leader that has not heard of the new term yet still says `Leader`). Two claims
/// in one term cannot both be true, so they label nobody; neither does no claim at all.
pub fn choose_leader(views: &BTreeMap<i32, RaftView>) -> Option<i32> {
    let mut claims: Vec<(u64, i32)> = views
        .iter()
        .filter(|(_, v)| v.role == "Leader")
        .map(|(i, v)| (v.term, *i))
        .collect();
    claims.sort_unstable();
    match claims.as_slice() {
        [] => None,
        [.., (t1, _), (t2, _)] if t1 == t2 => None,
        [.., (_, leader)] => Some(*leader),
    }
}

/// Each listed pod's own broker address (`<pod>.<group>-headless.<ns>.svc:10911`).
pub fn pod_addrs(group: &str, namespace: &str, ordinals: &BTreeSet<i32>) -> BTreeMap<i32, String> {
    ordinals
        .iter()
        .map(|i| {
            (
                *i,
                format!("{}:{BROKER_PORT}", pod_dns(group, *i, namespace)),
            )
        })
        .collect()
}

/// `Progressing` of a Raft group without an observed leader: True with reason
/// `ElectingLeader`, unless something else (a roll, replicas starting) already holds it True.
pub fn electing_condition(
    conditions: &mut [Condition],
    group: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) {
    let progressing = crate::status::PROGRESSING;
    for c in conditions.iter_mut() {
        if c.type_ == progressing && c.status != "True" {
            *c = crate::status::condition_at(
                progressing,
                true,
                "ElectingLeader",
                format!(
                    "no replica of {group} is an acknowledged Raft leader yet; the master Service selects no new pod until one is"
                ),
                generation,
                previous,
                now,
            );
        }
    }
}

/// Addresses to ask for each Raft replica's status, in order of preference: every address the
/// NameServers list (followers under their own address, the leader under the shared master
/// address), then `fallback` (each ready pod's own DNS name) for replicas not found that way.
/// Every answer names its replica by node id, so an address that reaches a different pod than
/// expected (a master Service whose label is stale) still tells the truth about that pod.
pub fn raft_probe_order(registered: &BTreeMap<i64, String>) -> Vec<String> {
    let mut order: Vec<String> = registered
        .iter()
        .filter(|(id, _)| **id != 0)
        .map(|(_, a)| a.clone())
        .collect();
    order.extend(registered.get(&0).cloned());
    let mut seen = BTreeSet::new();
    order.retain(|a| seen.insert(a.clone()));
    order
}

fn role_of(mode: BrokerMode, view: Option<&BrokerView>) -> ReplicaRole {
    let is_master = match view.and_then(|v| v.role.as_deref()) {
        Some(r) if r.ends_with("MASTER") => true,
        Some("SLAVE") => false,
        _ => return ReplicaRole::Unknown,
    };
    match (mode, is_master) {
        (BrokerMode::MasterSlave, true) => ReplicaRole::Master,
        (BrokerMode::MasterSlave, false) => ReplicaRole::Slave,
        (BrokerMode::Raft, true) => ReplicaRole::Leader,
        (BrokerMode::Raft, false) => ReplicaRole::Follower,
    }
}

/// `status.replicas` from the registration table (brokerId → address), what each broker said
/// (by ordinal) and which pods are ready.
pub fn replica_statuses(
    group: &str,
    mode: BrokerMode,
    replicas: i32,
    master: i32,
    registered: &BTreeMap<i64, String>,
    views: &BTreeMap<i32, BrokerView>,
    ready: &BTreeSet<i32>,
) -> Vec<ReplicaStatus> {
    let roles: Vec<ReplicaRole> = (0..replicas)
        .map(|i| role_of(mode, views.get(&i)))
        .collect();
    // Lag is measured against whichever replica says it is master; failing that, the one
    // configured as master.
    let master_ordinal = roles
        .iter()
        .position(|r| matches!(r, ReplicaRole::Master | ReplicaRole::Leader))
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(master);
    let master_offset = views.get(&master_ordinal).and_then(|v| v.max_offset);
    (0..replicas)
        .map(|i| {
            let role = roles[usize::try_from(i).unwrap_or_default()];
            let reported = views
                .get(&master_ordinal)
                .and_then(|m| m.slave_lag.get(&expected_broker_id(mode, i, master)))
                .copied();
            let lag = if i == master_ordinal {
                None
            } else {
                reported.or(
                    match (master_offset, views.get(&i).and_then(|v| v.max_offset)) {
                        (Some(m), Some(own)) => Some((m - own).max(0)),
                        _ => None,
                    },
                )
            };
            ReplicaStatus {
                pod: pod_name(group, i),
                epoch: views.get(&i).and_then(|v| v.epoch),
                role,
                ready: ready.contains(&i),
                registered: registered.contains_key(&expected_broker_id(mode, i, master)),
                replication_lag_bytes: lag,
            }
        })
        .collect()
}

/// The pod whose broker reports the master (or leader) role.
pub fn observed_master(statuses: &[ReplicaStatus]) -> Option<String> {
    statuses
        .iter()
        .find(|r| matches!(r.role, ReplicaRole::Master | ReplicaRole::Leader))
        .map(|r| r.pod.clone())
}

/// Whether `status.replicas` (as computed this pass) still waits on something that changes
/// with no Kubernetes event to start another pass: a Ready pod whose broker has not
/// registered, a replica whose role is not known yet, no registered master (or leader), or a
/// slave whose lag is not known. Such a group is looked at again soon rather than at the
/// next periodic pass.
pub fn settling(statuses: &[ReplicaStatus]) -> bool {
    if statuses.is_empty() {
        return false;
    }
    let is_master = |r: &ReplicaStatus| matches!(r.role, ReplicaRole::Master | ReplicaRole::Leader);
    let registered_master = statuses.iter().any(|r| is_master(r) && r.registered);
    !registered_master
        || statuses.iter().any(|r| {
            (r.ready && !r.registered)
                || r.role == ReplicaRole::Unknown
                || (!is_master(r) && r.replication_lag_bytes.is_none())
        })
}

/// What the NameServers and the brokers said about one group.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// brokerId → address, as registered.
    pub registered: BTreeMap<i64, String>,
    /// Ordinal → what that broker said.
    pub views: BTreeMap<i32, BrokerView>,
    /// ordinal → address it answered on.
    pub addrs: BTreeMap<i32, String>,
    /// Raft mode: ordinal → what that replica said about its Raft state.
    pub raft: BTreeMap<i32, RaftView>,
    /// Raft mode: the replica chosen as leader ([`choose_leader`]).
    pub leader: Option<i32>,
    /// What could not be reached, as one sentence.
    pub note: Option<String>,
}

/// Asks the NameServers which replicas are registered and each registered broker for its
/// replica status (GET_BROKER_RUNTIME_INFO when it does not know Ferrum's request). In Raft
/// mode it first asks the replicas for their Raft status ([`observe_raft`]) and takes the
/// chosen leader as `master`; `fallback` (ordinal → own address) is used there only.
#[allow(clippy::too_many_arguments)]
pub async fn observe(
    admin: &Admin,
    namesrv: &[String],
    cluster: &str,
    group: &str,
    mode: BrokerMode,
    replicas: i32,
    master: i32,
    fallback: &BTreeMap<i32, String>,
) -> Observed {
    let mut notes = Vec::new();
    let registered = match admin.namesrv().cluster_info().await {
        Ok(info) => match info.broker_addr_table.get(group) {
            Some(b) if b.cluster == cluster => b.broker_addrs.clone(),
            Some(b) => {
                notes.push(format!(
                    "broker name {group} is registered in cluster {}, not {cluster}",
                    b.cluster
                ));
                BTreeMap::new()
            }
            None => BTreeMap::new(),
        },
        Err(e) => {
            notes.push(format!(
                "NameServers {} unreachable: {e}",
                namesrv.join(";")
            ));
            BTreeMap::new()
        }
    };
    let mut views = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    let (raft, raft_addrs, leader) = if mode == BrokerMode::Raft {
        let (raft, raft_addrs) = observe_raft(admin, &registered, fallback, replicas).await;
        let leader = choose_leader(&raft);
        if leader.is_none() {
            notes.push(format!("no Raft leader of {group} observed"));
        }
        (raft, raft_addrs, leader)
    } else {
        Default::default()
    };
    let master = match mode {
        BrokerMode::MasterSlave => master,
        BrokerMode::Raft => leader.unwrap_or(-1),
    };
    for i in 0..replicas {
        // A Raft replica is asked where it answered as itself, never through the master
        // Service when its own address is known.
        let (addr, answered_as_itself) = match raft_addrs.get(&i) {
            Some(a) => (a, true),
            None => match registered.get(&expected_broker_id(mode, i, master)) {
                Some(a) => (a, false),
                None => continue,
            },
        };
        let view = match admin.broker_replica_status(addr).await {
            Ok(s) => Ok(BrokerView::from_replica_status(&s)),
            Err(e) if e.response_code().is_some() => admin
                .broker_runtime_info(addr)
                .await
                .map(|t| BrokerView::from_runtime_info(&t)),
            Err(e) => Err(e),
        };
        let id = expected_broker_id(mode, i, master);
        match view {
            // A stale registration (a promoted slave still listed under its old id) answers
            // with another id; it says nothing about this replica.
            Ok(v) if !answered_as_itself && v.broker_id.is_some_and(|b| b != id) => {
                notes.push(format!(
                    "{} is registered as brokerId {id} at {addr}, which answers as brokerId {}",
                    pod_name(group, i),
                    v.broker_id.unwrap_or_default()
                ))
            }
            Ok(v) => {
                views.insert(i, v);
                addrs.insert(i, addr.clone());
            }
            Err(e) => notes.push(format!("{} ({addr}) unreachable: {e}", pod_name(group, i))),
        }
    }
    Observed {
        registered,
        views,
        addrs,
        raft,
        leader,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// Each Raft replica's status and the address it answered on, asking the addresses of
/// [`raft_probe_order`] and then `fallback` for replicas still unknown. Unreachable addresses
/// are skipped: a replica that is down simply has no view.
pub async fn observe_raft(
    admin: &Admin,
    registered: &BTreeMap<i64, String>,
    fallback: &BTreeMap<i32, String>,
    replicas: i32,
) -> (BTreeMap<i32, RaftView>, BTreeMap<i32, String>) {
    let mut views = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    let first = raft_probe_order(registered);
    for addr in &first {
        if let Ok(status) = admin.raft_status(addr).await {
            record_raft(&mut views, &mut addrs, status, addr, replicas);
        }
    }
    for (i, addr) in fallback {
        if addrs.contains_key(i) || first.contains(addr) {
            continue;
        }
        if let Ok(status) = admin.raft_status(addr).await {
            record_raft(&mut views, &mut addrs, status, addr, replicas);
        }
    }
    (views, addrs)
}

/// Keeps the first answer of each replica.
fn record_raft(
    views: &mut BTreeMap<i32, RaftView>,
    addrs: &mut BTreeMap<i32, String>,
    status: RaftStatus,
    addr: &str,
    replicas: i32,
) {
    let Some(i) = raft_ordinal(status.node_id, replicas) else {
        return;
    };
    if views.contains_key(&i) {
        return;
    }
    views.insert(
        i,
        RaftView {
            term: status.term,
            role: status.role,
        },
    );
    addrs.insert(i, addr.to_owned());
}

/// A client of the given NameServers with the short timeout status reads use.
pub fn admin(namesrv: &[String]) -> Admin {
    Admin::new(namesrv).with_timeout(REQUEST_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(role: &str, offset: i64) -> BrokerView {
        BrokerView {
            role: Some(role.into()),
            max_offset: Some(offset),
            ..Default::default()
        }
    }

    #[test]
    fn master_slave_after_a_promotion() {
        // Ordinal 1 was promoted: it registers as 0 and ordinal 0 takes id 1.
        let registered = BTreeMap::from([(0, "m:10911".into()), (1, "s0:10911".into())]);
        let views = BTreeMap::from([(1, view("ASYNC_MASTER", 1000)), (0, view("SLAVE", 900))]);
        let st = replica_statuses(
            "g",
            BrokerMode::MasterSlave,
            3,
            1,
            &registered,
            &views,
            &BTreeSet::from([0, 1]),
        );
        assert_eq!(st[1].role, ReplicaRole::Master);
        assert_eq!(st[1].replication_lag_bytes, None);
        assert_eq!(st[0].role, ReplicaRole::Slave);
        assert_eq!(st[0].replication_lag_bytes, Some(100));
        assert!(st[0].registered && st[1].registered);
        assert!(!st[2].registered, "id 2 is not in the table");
        assert_eq!(st[2].role, ReplicaRole::Unknown);
        assert!(!st[2].ready);
        assert_eq!(observed_master(&st).as_deref(), Some("g-1"));
    }

    #[test]
    fn raft_roles_and_a_slave_ahead_of_nothing() {
        let registered = BTreeMap::from([(0, "a".into()), (1, "b".into()), (2, "c".into())]);
        let views = BTreeMap::from([
            (0, view("SLAVE", 50)),
            (1, view("SYNC_MASTER", 40)),
            (2, BrokerView::default()),
        ]);
        let st = replica_statuses(
            "r",
            BrokerMode::Raft,
            3,
            0,
            &registered,
            &views,
            &BTreeSet::new(),
        );
        assert_eq!(st[1].role, ReplicaRole::Leader);
        assert_eq!(st[0].role, ReplicaRole::Follower);
        assert_eq!(st[0].replication_lag_bytes, Some(0), "never negative");
        assert_eq!(st[2].role, ReplicaRole::Unknown);
        assert_eq!(st[2].replication_lag_bytes, None);
    }

    #[test]
    fn only_a_caught_up_slave_may_be_promoted() {
        let views = BTreeMap::from([
            (0, view("ASYNC_MASTER", 100)),
            (1, view("SLAVE", 100)),
            (2, view("SLAVE", 60)),
        ]);
        assert_eq!(promotion_check("g", 1, &views), Ok(()));
        let behind = promotion_check("g", 2, &views).expect_err("behind");
        assert!(
            behind.contains("not caught up") && behind.contains("g-0"),
            "{behind}"
        );
        let master = promotion_check("g", 0, &views).expect_err("master");
        assert!(master.contains("ASYNC_MASTER, not a slave"), "{master}");
        let silent = promotion_check("g", 3, &views).expect_err("silent");
        assert!(silent.contains("did not answer"), "{silent}");
        // With the master gone, the most complete surviving slave is the one to promote.
        let survivors = BTreeMap::from([(1, view("SLAVE", 90)), (2, view("SLAVE", 80))]);
        assert_eq!(promotion_check("g", 1, &survivors), Ok(()));
        assert!(promotion_check("g", 2, &survivors).is_err());
    }

    #[test]
    fn a_masters_own_lag_report_wins() {
        let mut m = view("SYNC_MASTER", 1000);
        m.slave_lag.insert(1, 7);
        m.epoch = Some(3);
        let views = BTreeMap::from([(0, m), (1, view("SLAVE", 500))]);
        let registered = BTreeMap::from([(0, "m".into()), (1, "s".into())]);
        let st = replica_statuses(
            "g",
            BrokerMode::MasterSlave,
            2,
            0,
            &registered,
            &views,
            &BTreeSet::new(),
        );
        assert_eq!(st[1].replication_lag_bytes, Some(7));
        assert_eq!(st[0].epoch, Some(3));
    }

    #[test]
    fn nothing_known_is_unknown_not_an_error() {
        let st = replica_statuses(
            "g",
            BrokerMode::MasterSlave,
            2,
            0,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeSet::new(),
        );
        assert_eq!(st.len(), 2);
        assert!(
            st.iter()
                .all(|r| !r.registered && r.role == ReplicaRole::Unknown)
        );
        assert_eq!(observed_master(&st), None);
    }

    fn raft(term: u64, role: &str) -> RaftView {
        RaftView {
            term,
            role: role.into(),
        }
    }

    #[test]
    fn raft_ids_leader_zero_followers_ordinal_plus_one() {
        assert_eq!(expected_broker_id(BrokerMode::Raft, 1, 1), 0);
        assert_eq!(expected_broker_id(BrokerMode::Raft, 0, 1), 1);
        assert_eq!(expected_broker_id(BrokerMode::Raft, 2, 1), 3);
        // No leader observed: everyone is where a follower registers.
        assert_eq!(expected_broker_id(BrokerMode::Raft, 0, -1), 1);
        // The node ids the broker derives from n0, n1, n2 map back to the ordinals.
        for i in 0..5 {
            assert_eq!(raft_ordinal(raft_node_id(&format!("n{i}")), 5), Some(i));
        }
        assert_eq!(raft_ordinal(raft_node_id("n3"), 3), None);
        assert_eq!(raft_ordinal(42, 3), None);
    }

    #[test]
    fn the_leader_in_the_highest_term_wins() {
        // A deposed leader (term 4) has not yet heard of the new one (term 5).
        let views = BTreeMap::from([
            (0, raft(4, "Leader")),
            (1, raft(5, "Leader")),
            (2, raft(5, "Follower")),
        ]);
        assert_eq!(choose_leader(&views), Some(1));
        let views = BTreeMap::from([(0, raft(7, "Leader")), (2, raft(6, "Leader"))]);
        assert_eq!(choose_leader(&views), Some(0));
        // One claim is enough when the others are down.
        assert_eq!(
            choose_leader(&BTreeMap::from([(2, raft(3, "Leader"))])),
            Some(2)
        );
    }

    #[test]
    fn no_claim_or_a_tie_labels_nobody() {
        assert_eq!(choose_leader(&BTreeMap::new()), None);
        let electing = BTreeMap::from([
            (0, raft(5, "Candidate")),
            (1, raft(4, "Follower")),
            (2, raft(5, "Follower")),
        ]);
        assert_eq!(choose_leader(&electing), None);
        let tie = BTreeMap::from([(0, raft(5, "Leader")), (1, raft(5, "Leader"))]);
        assert_eq!(choose_leader(&tie), None);
    }

    #[test]
    fn raft_probes_own_addresses_before_the_master_service() {
        let registered = BTreeMap::from([
            (0, "g-master.mq.svc:10911".to_owned()),
            (1, "g-0.g-headless.mq.svc:10911".to_owned()),
            (3, "g-2.g-headless.mq.svc:10911".to_owned()),
        ]);
        assert_eq!(
            raft_probe_order(&registered),
            vec![
                "g-0.g-headless.mq.svc:10911",
                "g-2.g-headless.mq.svc:10911",
                "g-master.mq.svc:10911"
            ]
        );
        assert!(raft_probe_order(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn raft_status_after_an_election() {
        // Ordinal 2 leads: it is registered as 0, the followers as ordinal + 1.
        let registered = BTreeMap::from([
            (0, "g-master:10911".into()),
            (1, "g-0:10911".into()),
            (2, "g-1:10911".into()),
        ]);
        let views = BTreeMap::from([
            (0, view("SLAVE", 90)),
            (1, view("SLAVE", 100)),
            (2, view("ASYNC_MASTER", 100)),
        ]);
        let st = replica_statuses(
            "g",
            BrokerMode::Raft,
            3,
            2,
            &registered,
            &views,
            &BTreeSet::from([0, 1, 2]),
        );
        assert!(st.iter().all(|r| r.registered), "{st:?}");
        assert_eq!(st[2].role, ReplicaRole::Leader);
        assert_eq!(st[0].replication_lag_bytes, Some(10));
        assert_eq!(observed_master(&st).as_deref(), Some("g-2"));
    }

    #[test]
    fn a_leaderless_raft_group_is_progressing_unless_already() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let stable = crate::status::condition_at(
            crate::status::PROGRESSING,
            false,
            "Stable",
            "3/3 replicas ready".into(),
            Some(2),
            &[],
            &now,
        );
        let mut c = vec![stable.clone()];
        electing_condition(&mut c, "g", Some(2), &[], &now);
        assert_eq!(c[0].status, "True");
        assert_eq!(c[0].reason, "ElectingLeader");
        assert_eq!(c[0].observed_generation, Some(2));
        let mut rolling = stable;
        rolling.status = "True".into();
        rolling.reason = "RollingRestart".into();
        let mut c = vec![rolling.clone()];
        electing_condition(&mut c, "g", Some(2), &[], &now);
        assert_eq!(c[0], rolling, "a roll keeps its own message");
        assert_eq!(
            pod_addrs("g", "mq", &BTreeSet::from([0, 2])),
            BTreeMap::from([
                (0, "g-0.g-headless.mq.svc:10911".to_owned()),
                (2, "g-2.g-headless.mq.svc:10911".to_owned())
            ])
        );
    }

    fn replica(
        role: ReplicaRole,
        ready: bool,
        registered: bool,
        lag: Option<i64>,
    ) -> ReplicaStatus {
        ReplicaStatus {
            pod: "g-0".into(),
            role,
            ready,
            registered,
            replication_lag_bytes: lag,
            epoch: None,
        }
    }

    #[test]
    fn settling_until_every_replica_is_known_and_a_master_registered() {
        use ReplicaRole::*;
        let settled = [
            replica(Master, true, true, None),
            replica(Slave, true, true, Some(0)),
        ];
        assert!(!settling(&settled));
        assert!(!settling(&[]), "no replicas: nothing to wait for");
        assert!(!settling(&[
            replica(Leader, true, true, None),
            replica(Follower, true, true, Some(3)),
        ]));
        // A fresh replica: Ready, registered, but its role not read yet.
        assert!(settling(&[
            replica(Master, true, true, None),
            replica(Unknown, true, true, None),
        ]));
        // A Ready pod whose broker has not registered.
        assert!(settling(&[
            replica(Master, true, true, None),
            replica(Slave, true, false, Some(0)),
        ]));
        // An in-place master restart: the pod is back, nobody claims master yet.
        assert!(settling(&[
            replica(Unknown, true, true, None),
            replica(Slave, true, true, Some(0)),
        ]));
        // The master answers but is not registered (yet).
        assert!(settling(&[
            replica(Master, true, false, None),
            replica(Slave, true, true, Some(0)),
        ]));
        // No replica claims master at all.
        assert!(settling(&[
            replica(Slave, true, true, Some(0)),
            replica(Slave, true, true, Some(0)),
        ]));
        // A slave whose lag is not known.
        assert!(settling(&[
            replica(Master, true, true, None),
            replica(Slave, true, true, None),
        ]));
    }
}
