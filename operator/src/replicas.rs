//! Per-replica status of a BrokerGroup, read from the cluster's NameServers (which replicas are
//! registered, under which brokerId) and from each broker (role, commit-log offset). The
//! mapping from those answers to `status.replicas` is pure and unit-tested; an unreachable
//! NameServer or broker becomes a note for the status, never an error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferrum_client::Admin;
use ferrum_protocol::replica::BrokerReplicaStatus;

use crate::build::{broker_id, pod_name};
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

/// The brokerId replica `ordinal` registers with.
pub fn expected_broker_id(mode: BrokerMode, ordinal: i32, master: i32) -> i64 {
    match mode {
        BrokerMode::MasterSlave => i64::from(broker_id(ordinal, master)),
        BrokerMode::Raft => i64::from(ordinal),
    }
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

/// What the NameServers and the brokers said about one group.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// brokerId → address, as registered.
    pub registered: BTreeMap<i64, String>,
    /// Ordinal → what that broker said.
    pub views: BTreeMap<i32, BrokerView>,
    /// ordinal → address it answered on.
    pub addrs: BTreeMap<i32, String>,
    /// What could not be reached, as one sentence.
    pub note: Option<String>,
}

/// Asks the NameServers which replicas are registered and each registered broker for its
/// replica status (GET_BROKER_RUNTIME_INFO when it does not know Ferrum's request).
pub async fn observe(
    admin: &Admin,
    namesrv: &[String],
    cluster: &str,
    group: &str,
    mode: BrokerMode,
    replicas: i32,
    master: i32,
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
    for i in 0..replicas {
        let Some(addr) = registered.get(&expected_broker_id(mode, i, master)) else {
            continue;
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
            Ok(v) if v.broker_id.is_some_and(|b| b != id) => notes.push(format!(
                "{} is registered as brokerId {id} at {addr}, which answers as brokerId {}",
                pod_name(group, i),
                v.broker_id.unwrap_or_default()
            )),
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
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
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
}
