//! Object names, DNS names, ports and labels shared by the builders and the reconciler.

use std::collections::BTreeMap;

/// Broker remoting port (RocketMQ `listenPort`).
pub const BROKER_PORT: i32 = 10911;
/// Master–slave replication port (`haListenPort`, listenPort + 1 as in RocketMQ).
pub const HA_PORT: i32 = 10912;
/// Raft peer port (DLedger's conventional 40911).
pub const RAFT_PORT: i32 = 40911;
/// NameServer remoting port.
pub const NAMESRV_PORT: i32 = 9876;
/// HTTP port of `/healthz`, `/readyz` and `/metrics` in every Ferrum binary.
pub const HEALTH_PORT: i32 = 8080;

pub const DATA_DIR: &str = "/data";
pub const CONFIG_DIR: &str = "/etc/ferrum";

/// Label the operator keeps on the pod that is master (or Raft leader) right now.
pub const ROLE_LABEL: &str = "ferrum.dev/role";
pub const ROLE_MASTER: &str = "master";
pub const CLUSTER_LABEL: &str = "ferrum.dev/cluster";
pub const NAMESRV_ORDINAL_LABEL: &str = "ferrum.dev/namesrv-ordinal";
pub const CONFIG_HASH_ANNOTATION: &str = "ferrum.dev/config-hash";
pub const MANAGER: &str = "ferrum-operator";

pub fn headless_service(group: &str) -> String {
    format!("{group}-headless")
}

pub fn master_service(group: &str) -> String {
    format!("{group}-master")
}

pub fn config_map(group: &str) -> String {
    format!("{group}-config")
}

pub fn pod_name(group: &str, ordinal: i32) -> String {
    format!("{group}-{ordinal}")
}

pub fn external_service(group: &str, ordinal: i32) -> String {
    format!("{group}-{ordinal}-external")
}

/// Stable DNS name of one broker pod through the headless Service.
pub fn pod_dns(group: &str, ordinal: i32, namespace: &str) -> String {
    format!(
        "{}.{}.{namespace}.svc",
        pod_name(group, ordinal),
        headless_service(group)
    )
}

pub fn master_dns(group: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc", master_service(group))
}

/// The Service that balances over all NameServers of a cluster (for clients).
pub fn namesrv_service(cluster: &str) -> String {
    format!("{cluster}-namesrv")
}

/// Deployment and Service of one NameServer.
pub fn namesrv_instance(cluster: &str, ordinal: i32) -> String {
    format!("{cluster}-namesrv-{ordinal}")
}

/// `namesrvAddr` for brokers: every NameServer by its own Service, since a broker must
/// register with each of them and one load-balanced address would reach only one.
pub fn namesrv_addr(cluster: &str, namespace: &str, replicas: i32) -> String {
    (0..replicas)
        .map(|i| {
            format!(
                "{}.{namespace}.svc:{NAMESRV_PORT}",
                namesrv_instance(cluster, i)
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Labels that select a broker group's pods; never change once a StatefulSet exists.
pub fn broker_selector(group: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "ferrum-broker".into()),
        ("app.kubernetes.io/instance".into(), group.into()),
    ])
}

pub fn broker_labels(group: &str, cluster: &str) -> BTreeMap<String, String> {
    let mut l = broker_selector(group);
    l.insert("app.kubernetes.io/component".into(), "broker".into());
    l.insert("app.kubernetes.io/part-of".into(), "ferrum".into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l.insert(CLUSTER_LABEL.into(), cluster.into());
    l
}

pub fn namesrv_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "ferrum-namesrv".into()),
        (
            "app.kubernetes.io/instance".into(),
            namesrv_service(cluster),
        ),
    ])
}

pub fn namesrv_labels(cluster: &str) -> BTreeMap<String, String> {
    let mut l = namesrv_selector(cluster);
    l.insert("app.kubernetes.io/component".into(), "namesrv".into());
    l.insert("app.kubernetes.io/part-of".into(), "ferrum".into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l.insert(CLUSTER_LABEL.into(), cluster.into());
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_stable_service_names() {
        assert_eq!(
            pod_dns("orders", 2, "mq"),
            "orders-2.orders-headless.mq.svc"
        );
        assert_eq!(master_dns("orders", "mq"), "orders-master.mq.svc");
        assert_eq!(
            namesrv_addr("prod", "mq", 2),
            "prod-namesrv-0.mq.svc:9876;prod-namesrv-1.mq.svc:9876"
        );
    }
}
