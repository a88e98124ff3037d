//! `broker.conf` of each replica.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::*;
use super::{GroupIdentity, fnv1a64};
use crate::crd::{BrokerGroupSpec, BrokerMode};

/// Keys the operator derives itself; a user override would break naming, addressing or
/// the Raft wiring, so validation refuses them in `brokerConfig`.
pub const MANAGED_KEYS: &[&str] = &[
    "brokerClusterName",
    "brokerName",
    "brokerId",
    "brokerRole",
    "namesrvAddr",
    "brokerIP1",
    "listenPort",
    "haListenPort",
    "metricsPort",
    "storePathRootDir",
    "storePathCommitLog",
    "flushDiskType",
    "enableDLegerCommitLog",
    "dLegerGroup",
    "dLegerPeers",
    "dLegerSelfId",
    "dLegerLeaderBrokerIP",
];

/// MasterSlave brokerId: the master is 0; the replica at ordinal 0 takes the promoted
/// master's ordinal as its id, so ids stay unique across a promotion.
pub fn broker_id(ordinal: i32, master: i32) -> i32 {
    if ordinal == master {
        0
    } else if ordinal == 0 {
        master
    } else {
        ordinal
    }
}

/// Entries of one replica's `broker.conf`. `master` is the ordinal that is master now
/// (MasterSlave; ignored in Raft mode where the election decides).
pub fn broker_conf(
    spec: &BrokerGroupSpec,
    id: &GroupIdentity,
    ordinal: i32,
    master: i32,
) -> BTreeMap<String, String> {
    let ns = &id.namespace;
    let group = &id.name;
    let mut c: BTreeMap<String, String> = spec.broker_config.clone();
    // Consumers carry on from a slave while the master is down, and a master may send a
    // lagging consumer to a slave; RocketMQ's default (false) stalls them instead. A user's
    // own value wins.
    c.entry("slaveReadEnable".to_owned())
        .or_insert_with(|| "true".to_owned());
    let mut set = |k: &str, v: String| {
        c.insert(k.to_owned(), v);
    };
    set("brokerClusterName", spec.cluster_name.clone());
    set("brokerName", group.clone());
    set(
        "namesrvAddr",
        namesrv_addr(&spec.cluster_name, ns, spec.name_server.replicas),
    );
    set("listenPort", BROKER_PORT.to_string());
    set("haListenPort", HA_PORT.to_string());
    // The pod's probes and the PodMonitor use the port named "health".
    set("metricsPort", HEALTH_PORT.to_string());
    set("storePathRootDir", format!("{DATA_DIR}/store"));
    set("storePathCommitLog", format!("{DATA_DIR}/store/commitlog"));
    set("flushDiskType", spec.flush_disk_type.as_str().to_owned());
    match spec.mode {
        BrokerMode::MasterSlave => {
            let is_master = ordinal == master;
            set("brokerId", broker_id(ordinal, master).to_string());
            set(
                "brokerRole",
                if is_master {
                    spec.replication.broker_role.as_str().to_owned()
                } else {
                    "SLAVE".to_owned()
                },
            );
            // The master advertises the Service that follows the master label, so clients
            // reach the new master after a promotion without waiting for a route refresh.
            set(
                "brokerIP1",
                if is_master {
                    master_dns(group, ns)
                } else {
                    pod_dns(group, ordinal, ns)
                },
            );
        }
        BrokerMode::Raft => {
            // The election decides the role at run time: each replica starts as a follower,
            // registered under its own pod DNS name as position in dLegerPeers + 1 (the ids
            // the broker uses), and while it leads registers brokerId 0 under the Service
            // that follows the leader label, so clients' cached master address stays valid.
            set("brokerId", (ordinal + 1).to_string());
            set("brokerRole", "SLAVE".to_owned());
            set("brokerIP1", pod_dns(group, ordinal, ns));
            set("dLegerLeaderBrokerIP", master_dns(group, ns));
            set("enableDLegerCommitLog", "true".to_owned());
            set("dLegerGroup", group.clone());
            set("dLegerPeers", raft_peers(group, ns, spec.replicas));
            set("dLegerSelfId", format!("n{ordinal}"));
        }
    }
    c
}

/// `n0-host:port;n1-host:port;...` in DLedger's peer syntax.
pub fn raft_peers(group: &str, namespace: &str, replicas: i32) -> String {
    (0..replicas)
        .map(|i| format!("n{i}-{}:{RAFT_PORT}", pod_dns(group, i, namespace)))
        .collect::<Vec<_>>()
        .join(";")
}

/// `key=value` lines, sorted, as RocketMQ's properties loader reads them.
pub fn render_conf(entries: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in entries {
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// One ConfigMap holding every replica's file as `<pod>.conf`; the container picks its own
/// through the downward-API pod name, so one pod template serves all ordinals.
pub fn config_map_for(spec: &BrokerGroupSpec, id: &GroupIdentity, master: i32) -> ConfigMap {
    let data: BTreeMap<String, String> = (0..spec.replicas)
        .map(|i| {
            (
                format!("{}.conf", pod_name(&id.name, i)),
                render_conf(&broker_conf(spec, id, i, master)),
            )
        })
        .collect();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map(&id.name)),
            namespace: Some(id.namespace.clone()),
            labels: Some(broker_labels(&id.name, &spec.cluster_name)),
            owner_references: Some(vec![id.owner.clone()]),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// Content hash for the pod template annotation. It is computed as if ordinal 0 were
/// master: a promotion rewrites the ConfigMap (so a restarted pod keeps its new role) but is
/// carried out live through the admin API, and must not mark every pod as needing a restart.
pub fn config_hash(spec: &BrokerGroupSpec, id: &GroupIdentity) -> String {
    let data = config_map_for(spec, id, 0).data.unwrap_or_default();
    fnv1a64(data.iter().flat_map(|(k, v)| [k.clone(), v.clone()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    fn conf(yaml: &str, ordinal: i32, master: i32) -> BTreeMap<String, String> {
        let bg = fixtures::group(yaml);
        let id = GroupIdentity::of(&bg).expect("identity");
        broker_conf(&bg.spec, &id, ordinal, master)
    }

    #[test]
    fn master_slave_roles_ids_and_addresses() {
        let m = conf(fixtures::MASTER_SLAVE, 0, 0);
        assert_eq!(m["brokerClusterName"], "prod");
        assert_eq!(m["brokerName"], "orders");
        assert_eq!(m["brokerId"], "0");
        assert_eq!(m["brokerRole"], "ASYNC_MASTER");
        assert_eq!(m["brokerIP1"], "orders-master.mq.svc");
        assert_eq!(
            m["namesrvAddr"],
            "prod-namesrv-0.mq.svc:9876;prod-namesrv-1.mq.svc:9876"
        );
        assert_eq!(m["listenPort"], "10911");
        assert_eq!(m["storePathRootDir"], "/data/store");
        assert_eq!(m["deleteWhen"], "04", "user overrides are kept");
        assert!(!m.contains_key("enableDLegerCommitLog"));

        let s = conf(fixtures::MASTER_SLAVE, 2, 0);
        assert_eq!(s["brokerId"], "2");
        assert_eq!(s["brokerRole"], "SLAVE");
        assert_eq!(s["brokerIP1"], "orders-2.orders-headless.mq.svc");
        assert_eq!(
            s["slaveReadEnable"], "true",
            "slaves serve reads by default"
        );
    }

    #[test]
    fn a_users_slave_read_setting_wins() {
        let bg = fixtures::group(fixtures::MASTER_SLAVE);
        let mut spec = bg.spec.clone();
        spec.broker_config
            .insert("slaveReadEnable".to_owned(), "false".to_owned());
        let id = GroupIdentity::of(&bg).expect("identity");
        assert_eq!(broker_conf(&spec, &id, 1, 0)["slaveReadEnable"], "false");
    }

    #[test]
    fn promotion_swaps_ids_so_they_stay_unique() {
        let ids: Vec<i32> = (0..3).map(|o| broker_id(o, 2)).collect();
        assert_eq!(ids, vec![2, 1, 0]);
        let promoted = conf(fixtures::MASTER_SLAVE, 2, 2);
        assert_eq!(promoted["brokerRole"], "ASYNC_MASTER");
        assert_eq!(promoted["brokerIP1"], "orders-master.mq.svc");
        assert_eq!(conf(fixtures::MASTER_SLAVE, 0, 2)["brokerRole"], "SLAVE");
        // The probes and the PodMonitor target the port named "health".
        assert_eq!(promoted["metricsPort"], HEALTH_PORT.to_string());
    }

    #[test]
    fn raft_wires_dledger_peers() {
        let r = conf(fixtures::RAFT, 1, 0);
        assert_eq!(r["enableDLegerCommitLog"], "true");
        assert_eq!(r["dLegerGroup"], "orders");
        assert_eq!(r["dLegerSelfId"], "n1");
        assert_eq!(
            r["dLegerPeers"],
            "n0-orders-0.orders-headless.mq.svc:40911;n1-orders-1.orders-headless.mq.svc:40911;n2-orders-2.orders-headless.mq.svc:40911"
        );
        assert_eq!(r["brokerIP1"], "orders-1.orders-headless.mq.svc");
        // Leader: brokerId 0 at the master Service; follower: position + 1 at its own name.
        assert_eq!(r["dLegerLeaderBrokerIP"], "orders-master.mq.svc");
        assert_eq!(r["brokerId"], "2");
        assert_eq!(r["brokerRole"], "SLAVE");
        for ordinal in 0..3 {
            let c = conf(fixtures::RAFT, ordinal, 0);
            assert_eq!(c["brokerId"], (ordinal + 1).to_string());
            assert_eq!(c["dLegerLeaderBrokerIP"], "orders-master.mq.svc");
            assert_eq!(c["dLegerSelfId"], format!("n{ordinal}"));
        }
        assert!(!conf(fixtures::MASTER_SLAVE, 0, 0).contains_key("dLegerLeaderBrokerIP"));
        assert!(MANAGED_KEYS.contains(&"dLegerLeaderBrokerIP"));
    }

    #[test]
    fn config_map_has_one_file_per_replica_and_owner() {
        let bg = fixtures::group(fixtures::MASTER_SLAVE);
        let id = GroupIdentity::of(&bg).expect("identity");
        let cm = config_map_for(&bg.spec, &id, 0);
        let data = cm.data.as_ref().expect("data");
        assert_eq!(
            data.keys().cloned().collect::<Vec<_>>(),
            vec!["orders-0.conf", "orders-1.conf", "orders-2.conf"]
        );
        assert!(data["orders-1.conf"].contains("brokerRole=SLAVE\n"));
        assert_eq!(cm.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        let promoted = config_map_for(&bg.spec, &id, 1);
        assert_ne!(cm.data, promoted.data, "a promotion rewrites the files");
        let before = config_hash(&bg.spec, &id);
        let mut changed = bg.spec.clone();
        assert_eq!(before, config_hash(&changed, &id));
        changed
            .broker_config
            .insert("fileReservedTime".into(), "48".into());
        assert_ne!(
            before,
            config_hash(&changed, &id),
            "a config change is visible"
        );
    }
}
