use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A topic created on every master of a cluster and checked through its NameServers.
/// Deleting the object deletes the topic from every master and NameServer, unless it carries
/// the annotation `ferrum.dev/detach: "true"`
/// (`kubectl annotate topic <name> ferrum.dev/detach=true`), which leaves the topic in place.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferrum.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    category = "ferrum",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterName"}"#,
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".spec.topicName"}"#,
    printcolumn = r#"{"name":"Write","type":"integer","jsonPath":".spec.writeQueueNums"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterName is immutable"))]
    #[schemars(length(min = 1, max = 52))]
    pub cluster_name: String,

    /// RocketMQ topic name; defaults to the object's name. Kubernetes names cannot hold
    /// upper case or `_`, RocketMQ names can, hence the separate field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("topicName is immutable"))]
    #[schemars(length(min = 1, max = 127), regex(pattern = r"^[%|a-zA-Z0-9_-]+$"))]
    pub topic_name: Option<String>,

    #[serde(default = "default_queue_nums")]
    #[schemars(range(min = 1, max = 1024))]
    pub read_queue_nums: i32,

    #[serde(default = "default_queue_nums")]
    #[schemars(range(min = 1, max = 1024))]
    pub write_queue_nums: i32,

    /// RocketMQ permission bits: 2 = write, 4 = read, 6 = read + write.
    #[serde(default = "default_perm")]
    #[x_kube(validation = Rule::new("self == 2 || self == 4 || self == 6")
        .message("perm must be 2 (write), 4 (read) or 6 (read+write)"))]
    pub perm: i32,

    #[serde(default)]
    pub order: bool,

    /// Topic attributes, e.g. `message.type: NORMAL`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

fn default_queue_nums() -> i32 {
    8
}

fn default_perm() -> i32 {
    6
}

impl Topic {
    /// The name used on the wire.
    pub fn topic_name(&self) -> Option<&str> {
        self.spec
            .topic_name
            .as_deref()
            .or(self.metadata.name.as_deref())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Broker groups (brokerName) that hold the topic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<String>,
    /// The last pass's result on each broker group of the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<TopicGroupStatus>,
}

/// One broker group's copy of the topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicGroupStatus {
    pub broker_name: String,
    /// The master address the NameServer lists (its stable DNS name in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_addr: Option<String>,
    /// `InSync`, `Created`, `Updated` or `Failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
