//! Per-replica status of a BrokerGroup, read from the cluster's NameServers (which replicas are
//! registered, under which brokerId) and from each broker (role, commit-log offset). The
//! mapping from those answers to `status.replicas` is pure and unit-tested; an unreachable
//! NameServer or broker becomes a note for the status, never an error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferrum_client::Admin;

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
            let lag = if i == master_ordinal {
                None
            } else {
                match (master_offset, views.get(&i).and_then(|v| v.max_offset)) {
                    (Some(m), Some(own)) => Some((m - own).max(0)),
                    _ => None,
                }
            };
            ReplicaStatus {
                pod: pod_name(group, i),
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

/// Asks the NameServers and each registered broker. Returns the statuses and, when something
/// could not be reached, a sentence for the status.
pub async fn observe(
    namesrv: &[String],
    cluster: &str,
    group: &str,
    mode: BrokerMode,
    replicas: i32,
    master: i32,
    ready: &BTreeSet<i32>,
) -> (Vec<ReplicaStatus>, Option<String>) {
    let admin = Admin::new(namesrv).with_timeout(REQUEST_TIMEOUT);
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
    for i in 0..replicas {
        let Some(addr) = registered.get(&expected_broker_id(mode, i, master)) else {
            continue;
        };
        match admin.broker_runtime_info(addr).await {
            Ok(table) => {
                views.insert(
                    i,
                    BrokerView {
                        role: table.get("brokerRole").cloned(),
                        max_offset: table.get("commitLogMaxOffset").and_then(|v| v.parse().ok()),
                    },
                );
            }
            Err(e) => notes.push(format!("{} ({addr}) unreachable: {e}", pod_name(group, i))),
        }
    }
    let statuses = replica_statuses(group, mode, replicas, master, &registered, &views, ready);
    (statuses, (!notes.is_empty()).then(|| notes.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(role: &str, offset: i64) -> BrokerView {
        BrokerView {
            role: Some(role.into()),
            max_offset: Some(offset),
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
