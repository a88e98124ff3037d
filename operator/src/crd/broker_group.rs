use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, PodSecurityContext, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A RocketMQ broker group: one master plus replicas, either master–slave (manual promotion)
/// or Raft (DLedger-style automatic election), run as one StatefulSet.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferrum.dev",
    version = "v1alpha1",
    kind = "BrokerGroup",
    namespaced,
    status = "BrokerGroupStatus",
    shortname = "bg",
    category = "ferrum",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterName"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Master","type":"string","jsonPath":".status.master"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.mode != 'Raft' || (self.replicas >= 3 && self.replicas % 2 == 1)")
        .message("Raft mode needs an odd number of replicas, at least 3")
        .field_path(".replicas"),
    validation = Rule::new("self.mode == 'MasterSlave' || !has(self.promote)")
        .message("promote is only for MasterSlave mode; Raft elects its leader")
        .field_path(".promote"),
    validation = Rule::new("!has(self.promote) || self.promote < self.replicas")
        .message("promote must name an existing replica ordinal (0 .. replicas-1)")
        .field_path(".promote")
)]
#[serde(rename_all = "camelCase")]
pub struct BrokerGroupSpec {
    /// RocketMQ `brokerClusterName`. Groups of one cluster share its NameServers.
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterName is immutable"))]
    #[schemars(
        length(min = 1, max = 52),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub cluster_name: String,

    /// `MasterSlave` (slaves pull from the master, promotion is manual) or `Raft`.
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("mode cannot be switched in place; create a new BrokerGroup"))]
    pub mode: BrokerMode,

    /// Number of broker pods. MasterSlave: 1 master + (replicas - 1) slaves. Raft: odd, >= 3.
    #[schemars(range(min = 1, max = 15))]
    pub replicas: i32,

    /// Broker container image.
    #[schemars(length(min = 1))]
    pub image: String,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    pub storage: StorageSpec,

    #[serde(default)]
    pub replication: ReplicationSpec,

    #[serde(default)]
    pub flush_disk_type: FlushDiskType,

    /// Extra `broker.conf` entries. Keys the operator derives itself (names, ids, roles,
    /// addresses, store path, DLedger wiring) are refused: see `Degraded`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_config: BTreeMap<String, String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_access: Option<ExternalAccess>,

    /// The cluster's NameServers. Every BrokerGroup of a cluster must agree on them.
    pub name_server: NameServerSpec,

    /// MasterSlave only: the replica ordinal that should be master. Setting it to another
    /// ordinal than `status.masterOrdinal` promotes that replica with FERRUM_PROMOTE_BROKER,
    /// without restarting pods:
    /// `kubectl patch brokergroup <group> --type merge -p '{"spec":{"promote":1}}'`.
    /// The replica must be a registered slave holding as much commit log as every replica that
    /// answers, and the broker refuses while the old master is live; until then the group is
    /// `Degraded` (reason PromotionRefused). The field states the wanted master, so there is
    /// nothing to clear afterwards, and the operator never promotes on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub promote: Option<i32>,

    #[serde(default)]
    pub upgrade: UpgradeSpec,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BrokerMode {
    MasterSlave,
    Raft,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Persistent volume of each broker (commit log, consume queues, checkpoints).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName)")
    .message("storageClassName is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// PVC size as a Kubernetes quantity, e.g. `20Gi`. May grow, never shrink.
    #[x_kube(
        validation = Rule::new("isQuantity(self)").message("size must be a quantity such as 20Gi"),
        validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0")
            .message("storage size cannot shrink")
    )]
    #[schemars(length(min = 1, max = 64))]
    pub size: String,

    /// StorageClass of the PVCs; the cluster default when unset. Fixed once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storageClassName is immutable"))]
    pub storage_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// Role of the master: acknowledge after its own write (ASYNC_MASTER) or after a slave
    /// has the message too (SYNC_MASTER). Ignored in Raft mode, where a quorum acknowledges.
    #[serde(default)]
    pub broker_role: MasterRole,
}

#[allow(non_camel_case_types)]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum MasterRole {
    #[default]
    ASYNC_MASTER,
    SYNC_MASTER,
}

impl MasterRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MasterRole::ASYNC_MASTER => "ASYNC_MASTER",
            MasterRole::SYNC_MASTER => "SYNC_MASTER",
        }
    }
}

#[allow(non_camel_case_types)]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum FlushDiskType {
    #[default]
    ASYNC_FLUSH,
    SYNC_FLUSH,
}

impl FlushDiskType {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushDiskType::ASYNC_FLUSH => "ASYNC_FLUSH",
            FlushDiskType::SYNC_FLUSH => "SYNC_FLUSH",
        }
    }
}

/// Scheduling and security settings copied into the broker pod template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Replaces the operator's default non-root pod security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One extra Service per broker pod, for clients outside the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccess {
    #[serde(rename = "type")]
    pub service_type: ExternalServiceType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalServiceType {
    LoadBalancer,
    NodePort,
}

/// NameServers of the cluster: one single-replica Deployment + Service per NameServer, so
/// brokers can list every NameServer by a stable DNS name and register with each of them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameServerSpec {
    #[serde(default = "default_namesrv_replicas")]
    #[schemars(range(min = 1, max = 7))]
    pub replicas: i32,
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_namesrv_replicas() -> i32 {
    2
}

/// How the operator rolls the group's pods when the pod template changes (image, config,
/// resources, the `ferrum.dev/roll` annotation) or a pod carries `ferrum.dev/restart`: one pod
/// at a time, unready pods first, then slaves / followers, the master / leader last.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSpec {
    /// MasterSlave: when the master's turn comes, stop it, promote the slave holding the most
    /// commit log (FERRUM_PROMOTE_BROKER) and let the old master return as a slave, so writes
    /// pause only for the promotion instead of a whole broker restart. Only for SYNC_MASTER
    /// groups whose running master says SYNC_MASTER, where every acknowledged message is on a
    /// slave: an ASYNC_MASTER master restarts in place (a promotion could drop what it
    /// acknowledged and no slave held yet). Ignored while `spec.promote` pins the master.
    #[serde(default)]
    pub promote_before_restart: bool,

    /// A replica counts as caught up, and the next pod may be restarted, once every slave or
    /// follower is at most this many bytes of commit log behind its master or leader.
    /// Default 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_lag_bytes: Option<i64>,
}

impl UpgradeSpec {
    pub const DEFAULT_MAX_LAG_BYTES: i64 = 1 << 20;

    pub fn max_lag_bytes(&self) -> i64 {
        self.max_lag_bytes.unwrap_or(Self::DEFAULT_MAX_LAG_BYTES)
    }
}

/// Observed state, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerGroupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`, `ReconciliationPaused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pod name of the current master (MasterSlave) or Raft leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Ordinal of the current master; the operator's memory across promotions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_ordinal: Option<i32>,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// The rolling restart under way; absent when every pod runs the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll: Option<RollStatus>,
}

/// Progress of a rolling restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollStatus {
    /// The pod the roll acts on or waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// What the operator did or does next, and why.
    pub reason: String,
    /// What has to happen before the roll goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Pods that run the current template and were not asked to restart.
    pub done: i32,
    pub total: i32,
    /// Pods this roll has restarted so far.
    #[serde(default)]
    pub restarted: i32,
    /// MasterSlave with promoteBeforeRestart: the ordinal being promoted while the old
    /// master is down, until its broker reports the master role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoting: Option<i32>,
    /// Pods whose last restart step failed, and when the roll may try them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<PodBackoff>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodBackoff {
    pub pod: String,
    pub failures: u32,
    pub retry_after: Time,
    pub last_error: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub pod: String,
    pub role: ReplicaRole,
    pub ready: bool,
    /// Whether every NameServer lists this broker.
    pub registered: bool,
    /// Bytes of commit log the replica is behind its master; unset on the master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_lag_bytes: Option<i64>,
    /// The replication epoch the broker's history ends in (each promotion starts one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReplicaRole {
    Master,
    Slave,
    Leader,
    Follower,
    Candidate,
    Unknown,
}
