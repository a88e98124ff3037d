//! The Topic reconciler: the topic exists with the spec's settings on every master of its
//! cluster (groups added later included), and every NameServer routes it to each group.
//!
//! Masters are found the way a client finds them, through the cluster's NameServers
//! (GET_BROKER_CLUSTER_INFO), so addresses are whatever the brokers advertise: their stable
//! DNS names in a cluster. A finalizer deletes the topic from brokers and NameServers, unless
//! the object carries [`DETACH_ANNOTATION`]. Unreachable brokers are a status, not an error loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrum_client::{Admin, ClientError};
use ferrum_protocol::route::{ClusterInfo, TopicConfig, TopicRouteData};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::build::{self, MANAGER};
use crate::controller::Context;
use crate::crd::{BrokerGroup, Topic, TopicGroupStatus, TopicSpec, TopicStatus};
use crate::status::{DEGRADED, READY, condition_at};

/// Finalizer that deletes the topic from brokers and NameServers before the object goes.
pub const TOPIC_FINALIZER: &str = "ferrum.dev/topic-cleanup";
/// `ferrum.dev/detach: "true"`: deleting the Topic object leaves the RocketMQ topic in place.
pub const DETACH_ANNOTATION: &str = "ferrum.dev/detach";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("topic cleanup: {0}")]
    Cleanup(String),
    #[error("finalizer: {0}")]
    Finalizer(Box<finalizer::Error<TopicError>>),
}

/// Maps a cluster name to NameServer addresses, replacing the in-cluster DNS names. For an
/// operator running outside the cluster network (tests against a bare control plane, or a
/// NameServer exposed elsewhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamesrvOverrides(BTreeMap<String, Vec<String>>);

impl NamesrvOverrides {
    /// Parses `cluster=host:port[;host:port...]` items.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for item in items {
            let item = item.as_ref();
            let (cluster, addrs) = item
                .split_once('=')
                .ok_or_else(|| format!("namesrv override {item:?} is not cluster=host:port"))?;
            let addrs: Vec<String> = ferrum_client::namesrv::parse_addrs(addrs);
            if cluster.is_empty() || addrs.is_empty() {
                return Err(format!(
                    "namesrv override {item:?} needs a cluster and at least one address"
                ));
            }
            map.insert(cluster.to_owned(), addrs);
        }
        Ok(NamesrvOverrides(map))
    }

    pub fn get(&self, cluster: &str) -> Option<&[String]> {
        self.0.get(cluster).map(Vec::as_slice)
    }
}

/// The TopicConfig a spec asks for.
pub fn desired_config(topic_name: &str, spec: &TopicSpec) -> TopicConfig {
    let mut c = TopicConfig::new(topic_name.to_owned(), spec.write_queue_nums);
    c.read_queue_nums = spec.read_queue_nums;
    c.perm = spec.perm;
    c.order = spec.order;
    c.attributes = spec.attributes.clone();
    c
}

/// How one broker's copy of the topic compares with the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicDiff {
    Missing,
    InSync,
    /// Each entry names a field and both values.
    Drift(Vec<String>),
}

pub fn diff(desired: &TopicConfig, live: Option<&TopicConfig>) -> TopicDiff {
    let Some(live) = live else {
        return TopicDiff::Missing;
    };
    let mut out = Vec::new();
    let mut field = |name: &str, want: String, have: String| {
        if want != have {
            out.push(format!("{name} {have} -> {want}"));
        }
    };
    field(
        "readQueueNums",
        desired.read_queue_nums.to_string(),
        live.read_queue_nums.to_string(),
    );
    field(
        "writeQueueNums",
        desired.write_queue_nums.to_string(),
        live.write_queue_nums.to_string(),
    );
    field("perm", desired.perm.to_string(), live.perm.to_string());
    field("order", desired.order.to_string(), live.order.to_string());
    // Only the attributes the spec sets are compared: brokers add defaults of their own.
    for (k, v) in &desired.attributes {
        let have = live.attributes.get(k).cloned().unwrap_or_default();
        field(&format!("attributes[{k}]"), v.clone(), have);
    }
    if out.is_empty() {
        TopicDiff::InSync
    } else {
        TopicDiff::Drift(out)
    }
}

/// Attributes RocketMQ accepts only when a topic is created (TopicAttributes: queue.type and
/// cleanup.policy are not changeable); an update that names them is refused by the broker.
const CREATE_ONLY_ATTRIBUTES: [&str; 2] = ["queue.type", "cleanup.policy"];

/// What to send to repair `live`: the spec's fields, with only the attributes whose values
/// differ (the broker keeps the others), or why the drift cannot be repaired in place.
pub fn update_for(desired: &TopicConfig, live: &TopicConfig) -> Result<TopicConfig, String> {
    let mut update = desired.clone();
    update.attributes = desired
        .attributes
        .iter()
        .filter(|(k, v)| live.attributes.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fixed: Vec<&str> = CREATE_ONLY_ATTRIBUTES
        .into_iter()
        .filter(|k| update.attributes.contains_key(*k))
        .collect();
    if !fixed.is_empty() {
        return Err(format!(
            "attribute(s) {} can only be set when a topic is created; delete and re-create the \
             topic to change them",
            fixed.join(", ")
        ));
    }
    Ok(update)
}

/// Each broker group of `cluster` with its master's address (`None`: no master registered).
pub fn cluster_groups(info: &ClusterInfo, cluster: &str) -> Vec<(String, Option<String>)> {
    info.cluster_addr_table
        .get(cluster)
        .into_iter()
        .flatten()
        .map(|name| {
            let master = info
                .broker_addr_table
                .get(name)
                .and_then(|b| b.master_addr())
                .map(str::to_owned);
            (name.clone(), master)
        })
        .collect()
}

/// Groups that the route does not list with the topic's queues.
pub fn missing_from_route(route: Option<&TopicRouteData>, groups: &[String]) -> Vec<String> {
    groups
        .iter()
        .filter(|g| {
            !route.is_some_and(|r| {
                r.queue_datas.iter().any(|q| &q.broker_name == *g)
                    && r.broker_datas.iter().any(|b| &b.broker_name == *g)
            })
        })
        .cloned()
        .collect()
}

pub const STATE_IN_SYNC: &str = "InSync";
pub const STATE_CREATED: &str = "Created";
pub const STATE_UPDATED: &str = "Updated";
pub const STATE_FAILED: &str = "Failed";

/// Ready / Degraded from the groups' results, the route check and a cluster-level problem.
pub fn topic_conditions(
    generation: Option<i64>,
    groups: &[TopicGroupStatus],
    not_routed: &[String],
    problem: Option<&str>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let failed: Vec<String> = groups
        .iter()
        .filter(|g| g.state == STATE_FAILED)
        .map(|g| format!("{}: {}", g.broker_name, g.message))
        .collect();
    let mut problems: Vec<String> = problem.map(str::to_owned).into_iter().collect();
    problems.extend(failed);
    let degraded = !problems.is_empty();
    let ready = !degraded && !groups.is_empty() && not_routed.is_empty();
    let (ready_reason, ready_message) = if degraded {
        ("Degraded", problems.join("; "))
    } else if groups.is_empty() {
        (
            "NoBrokerGroups",
            "the cluster has no broker group".to_owned(),
        )
    } else if !not_routed.is_empty() {
        (
            "RouteIncomplete",
            format!("the NameServer route lacks {}", not_routed.join(", ")),
        )
    } else {
        (
            "OnEveryMaster",
            format!("on {} broker group(s) and routed", groups.len()),
        )
    };
    vec![
        condition_at(
            READY,
            ready,
            ready_reason,
            ready_message,
            generation,
            previous,
            now,
        ),
        condition_at(
            DEGRADED,
            degraded,
            if degraded {
                "Unreachable"
            } else {
                "AllReached"
            },
            problems.join("; "),
            generation,
            previous,
            now,
        ),
    ]
}

fn detached(t: &Topic) -> bool {
    t.annotations()
        .get(DETACH_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// NameServer addresses of `cluster` in `ns`: the override, else every NameServer's stable
/// DNS name from a BrokerGroup of the cluster. `Err` is a sentence for the status.
async fn namesrv_addrs(
    ctx: &Context,
    cluster: &str,
    ns: &str,
) -> Result<Result<Vec<String>, String>, kube::Error> {
    if let Some(addrs) = ctx.namesrv_overrides.get(cluster) {
        return Ok(Ok(addrs.to_vec()));
    }
    let groups: Api<BrokerGroup> = Api::namespaced(ctx.client.clone(), ns);
    let found = groups
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|g| g.spec.cluster_name == cluster);
    Ok(match found {
        Some(g) => Ok(ferrum_client::namesrv::parse_addrs(&build::namesrv_addr(
            cluster,
            ns,
            g.spec.name_server.replicas,
        ))),
        None => Err(format!(
            "no BrokerGroup of cluster {cluster} in namespace {ns}, so its NameServers are unknown"
        )),
    })
}

/// Whether `cluster` has broker groups in `groups` and every one of them is being deleted.
pub fn cluster_being_deleted(groups: &[BrokerGroup], cluster: &str) -> bool {
    let mut of_cluster = groups
        .iter()
        .filter(|g| g.spec.cluster_name == cluster)
        .peekable();
    of_cluster.peek().is_some() && of_cluster.all(|g| g.metadata.deletion_timestamp.is_some())
}

fn topic_name_of(t: &Topic) -> String {
    t.topic_name().unwrap_or_default().to_owned()
}

/// One pass; the finalizer helper adds the finalizer first and runs cleanup on deletion.
pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action, TopicError> {
    let started = std::time::Instant::now();
    let ns = topic.namespace().unwrap_or_default();
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer::finalizer(&api, TOPIC_FINALIZER, topic, |event| async {
        match event {
            Finalizer::Apply(t) => apply(t, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(t, &ctx).await,
        }
    })
    .await
    .map_err(|e| TopicError::Finalizer(Box::new(e)));
    if let Some(m) = &ctx.metrics {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        m.observe("Topic", outcome, started.elapsed());
    }
    result
}

async fn apply(topic: Arc<Topic>, ctx: &Context) -> Result<Action, TopicError> {
    let ns = topic.namespace().unwrap_or_default();
    let name = topic_name_of(&topic);
    let cluster = topic.spec.cluster_name.clone();
    let desired = desired_config(&name, &topic.spec);
    let oref = topic.object_ref(&());
    let previous = topic.status.clone().unwrap_or_default();
    let new_generation = previous.observed_generation != topic.metadata.generation;

    let mut groups: Vec<TopicGroupStatus> = Vec::new();
    let mut not_routed = Vec::new();
    let mut problem = None;
    match namesrv_addrs(ctx, &cluster, &ns).await? {
        Err(p) => problem = Some(p),
        Ok(addrs) => {
            let admin = Admin::new(&addrs).with_timeout(REQUEST_TIMEOUT);
            match admin.namesrv().cluster_info().await {
                Err(e) => {
                    problem = Some(format!("NameServers {} unreachable: {e}", addrs.join(";")))
                }
                Ok(info) => {
                    for (group, master) in cluster_groups(&info, &cluster) {
                        let st = sync_group(
                            ctx,
                            &oref,
                            &admin,
                            &group,
                            master,
                            &desired,
                            new_generation,
                        )
                        .await;
                        groups.push(st);
                    }
                    if groups.is_empty() {
                        problem = Some(format!(
                            "cluster {cluster} has no broker group registered on its NameServers"
                        ));
                    }
                    let reached: Vec<String> = groups
                        .iter()
                        .filter(|g| g.state != STATE_FAILED)
                        .map(|g| g.broker_name.clone())
                        .collect();
                    match admin.namesrv().topic_route(&name).await {
                        Ok(route) => not_routed = missing_from_route(Some(&route), &reached),
                        Err(ClientError::TopicNotExist(_)) => {
                            not_routed = missing_from_route(None, &reached)
                        }
                        Err(e) => problem = Some(format!("route of {name} unreadable: {e}")),
                    }
                }
            }
        }
    }

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = topic_conditions(
        topic.metadata.generation,
        &groups,
        &not_routed,
        problem.as_deref(),
        &previous.conditions,
        &now,
    );
    let degraded = conditions
        .iter()
        .find(|c| c.type_ == DEGRADED)
        .filter(|c| c.status == "True")
        .cloned();
    let was_degraded_with = previous
        .conditions
        .iter()
        .find(|c| c.type_ == DEGRADED && c.status == "True")
        .map(|c| c.message.clone());
    if let Some(d) = &degraded
        && was_degraded_with.as_deref() != Some(d.message.as_str())
    {
        ctx.event(&oref, EventType::Warning, "Degraded", d.message.clone())
            .await;
    }
    let ready = conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True");
    let status = TopicStatus {
        observed_generation: topic.metadata.generation,
        conditions,
        brokers: groups
            .iter()
            .filter(|g| g.state != STATE_FAILED)
            .map(|g| g.broker_name.clone())
            .collect(),
        groups,
    };
    let patch = serde_json::json!({
        "apiVersion": "ferrum.dev/v1alpha1",
        "kind": "Topic",
        "status": status,
    });
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &topic.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    tracing::info!(topic = %name, namespace = %ns, ready, "topic reconciled");
    // Drift is looked for on every resync; a route that lags behind a fresh registration, or
    // an unreachable broker, is looked at again soon.
    Ok(if ready {
        Action::requeue(Duration::from_secs(60))
    } else if status.groups.is_empty() || degraded.is_some() {
        Action::requeue(Duration::from_secs(15))
    } else {
        Action::requeue(Duration::from_secs(2))
    })
}

async fn sync_group(
    ctx: &Context,
    oref: &k8s_openapi::api::core::v1::ObjectReference,
    admin: &Admin,
    group: &str,
    master: Option<String>,
    desired: &TopicConfig,
    new_generation: bool,
) -> TopicGroupStatus {
    let mut st = TopicGroupStatus {
        broker_name: group.to_owned(),
        master_addr: master.clone(),
        state: STATE_FAILED.to_owned(),
        message: String::new(),
    };
    let Some(addr) = master else {
        st.message = "no master registered on the NameServer".into();
        return st;
    };
    let live = match admin.topic_config(&addr, &desired.topic_name).await {
        Ok(live) => live,
        Err(e) => {
            st.message = format!("GET_ALL_TOPIC_CONFIG from {addr}: {e}");
            return st;
        }
    };
    let d = diff(desired, live.as_ref());
    if d == TopicDiff::InSync {
        st.state = STATE_IN_SYNC.into();
        return st;
    }
    let request = match live.as_ref() {
        Some(live) => match update_for(desired, live) {
            Ok(update) => update,
            Err(why) => {
                st.message = format!("{} on {group} ({addr}): {why}", desired.topic_name);
                return st;
            }
        },
        None => desired.clone(),
    };
    if let Err(e) = admin.create_topic_with_attributes(&addr, &request).await {
        st.message = format!("UPDATE_AND_CREATE_TOPIC on {addr}: {e}");
        return st;
    }
    let (state, reason, note) = match d {
        TopicDiff::Missing => (
            STATE_CREATED,
            "Created",
            format!("created {} on {group} ({addr})", desired.topic_name),
        ),
        TopicDiff::Drift(fields) => (
            STATE_UPDATED,
            if new_generation {
                "Updated"
            } else {
                "DriftRepaired"
            },
            format!(
                "{} on {group} ({addr}): {}",
                desired.topic_name,
                fields.join(", ")
            ),
        ),
        TopicDiff::InSync => (STATE_IN_SYNC, "InSync", String::new()),
    };
    ctx.event(oref, EventType::Normal, reason, note.clone())
        .await;
    st.state = state.into();
    st.message = note;
    st
}

async fn cleanup(topic: Arc<Topic>, ctx: &Context) -> Result<Action, TopicError> {
    let oref = topic.object_ref(&());
    let name = topic_name_of(&topic);
    if detached(&topic) {
        ctx.event(
            &oref,
            EventType::Normal,
            "Detached",
            format!("{DETACH_ANNOTATION} is set: {name} stays on the brokers and NameServers"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let ns = topic.namespace().unwrap_or_default();
    let cluster = topic.spec.cluster_name.clone();
    let groups: Api<BrokerGroup> = Api::namespaced(ctx.client.clone(), &ns);
    if cluster_being_deleted(&groups.list(&ListParams::default()).await?.items, &cluster) {
        // The brokers and NameServers go with their groups (a namespace being deleted, or the
        // cluster taken down): waiting to delete the topic from them would only hold up the
        // deletion, and could block it for good once the NameServers are gone.
        ctx.event(
            &oref,
            EventType::Normal,
            "ClusterDeleting",
            format!(
                "every BrokerGroup of cluster {cluster} is being deleted: {name} goes with its \
                 brokers"
            ),
        )
        .await;
        return Ok(Action::await_change());
    }
    let addrs = match namesrv_addrs(ctx, &cluster, &ns).await? {
        Ok(a) => a,
        Err(why) => {
            // Nothing of the cluster is left to hold the topic.
            ctx.event(
                &oref,
                EventType::Normal,
                "ClusterGone",
                format!("{why}; nothing to delete"),
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let admin = Admin::new(&addrs).with_timeout(REQUEST_TIMEOUT);
    let info = admin.namesrv().cluster_info().await.map_err(|e| {
        TopicError::Cleanup(format!(
            "NameServers unreachable: {e} (set {DETACH_ANNOTATION}=true to delete the object anyway)"
        ))
    })?;
    let mut deleted_on = Vec::new();
    for (group, master) in cluster_groups(&info, &cluster) {
        let Some(addr) = master else { continue };
        admin
            .delete_topic_in_broker(&addr, &name)
            .await
            .map_err(|e| TopicError::Cleanup(format!("DELETE_TOPIC_IN_BROKER on {addr}: {e}")))?;
        deleted_on.push(group);
    }
    admin
        .namesrv()
        .delete_topic(&name, Some(&cluster))
        .await
        .map_err(|e| TopicError::Cleanup(format!("DELETE_TOPIC_IN_NAMESRV: {e}")))?;
    ctx.event(
        &oref,
        EventType::Normal,
        "Deleted",
        format!(
            "deleted {name} from {} and from every NameServer",
            deleted_on.join(", ")
        ),
    )
    .await;
    Ok(Action::await_change())
}

/// Topics are watched through a [`DeserializeGuard`], as BrokerGroups are: one object that no
/// longer matches our types is reported on and skipped instead of breaking the watch (and so
/// the reconciling) of every other Topic.
pub async fn guarded_reconcile(
    obj: Arc<DeserializeGuard<Topic>>,
    ctx: Arc<Context>,
) -> Result<Action, TopicError> {
    match &obj.0 {
        Ok(topic) => reconcile(Arc::new(topic.clone()), ctx).await,
        Err(invalid) => {
            tracing::warn!(
                name = ?invalid.metadata.name,
                namespace = ?invalid.metadata.namespace,
                error = %invalid.error,
                "unreadable Topic skipped"
            );
            if let Some(m) = &ctx.metrics {
                m.observe("Topic", "invalid", Duration::ZERO);
            }
            ctx.event(
                &obj.object_ref(&()),
                EventType::Warning,
                "Unreadable",
                format!("the operator cannot read this object: {}", invalid.error),
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

fn error_policy(
    topic: Arc<DeserializeGuard<Topic>>,
    err: &TopicError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(topic = %topic.name_any(), error = %err, "topic reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// Runs the Topic controller until a shutdown signal. A BrokerGroup event (a group added,
/// or one whose pods came up) re-reconciles the Topics of its cluster and namespace.
pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    run_over(ctx, Api::all(client.clone()), Api::all(client)).await
}

/// Like [`run`], limited to one namespace (an operator confined to it, or a test's own).
pub async fn run_namespaced(ctx: Context, namespace: &str) {
    let client = ctx.client.clone();
    run_over(
        ctx,
        Api::namespaced(client.clone(), namespace),
        Api::namespaced(client, namespace),
    )
    .await
}

async fn run_over(
    ctx: Context,
    topic_api: Api<DeserializeGuard<Topic>>,
    group_api: Api<DeserializeGuard<BrokerGroup>>,
) {
    let cfg = watcher::Config::default();
    let controller = Controller::new(topic_api, cfg.clone());
    let topics = controller.store();
    if let Some(m) = &ctx.metrics {
        let topics = topics.clone();
        m.track_managed("Topic", move || topics.state().len());
    }
    controller
        .watches(group_api, cfg, move |guard| {
            let Ok(bg) = &guard.0 else {
                return Vec::new();
            };
            let ns = bg.namespace();
            topics
                .state()
                .iter()
                .filter_map(|guard| guard.0.as_ref().ok())
                .filter(|t| t.spec.cluster_name == bg.spec.cluster_name && t.namespace() == ns)
                .map(|t| ObjectRef::new(&t.name_any()).within(ns.as_deref().unwrap_or_default()))
                .collect()
        })
        .shutdown_on_signal()
        .run(guarded_reconcile, error_policy, Arc::new(ctx))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "topic controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_protocol::route::{BrokerData, QueueData};

    fn spec(read: i32, write: i32) -> TopicSpec {
        TopicSpec {
            cluster_name: "c".into(),
            topic_name: None,
            read_queue_nums: read,
            write_queue_nums: write,
            perm: 6,
            order: false,
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn an_unreadable_topic_keeps_its_identity() {
        let raw = serde_json::json!({
            "apiVersion": "ferrum.dev/v1alpha1",
            "kind": "Topic",
            "metadata": { "name": "broken", "namespace": "mq" },
            "spec": { "clusterName": "c", "readQueueNums": "many" }
        });
        let guard: DeserializeGuard<Topic> =
            serde_json::from_value(raw).expect("the guard itself always deserializes");
        assert!(guard.0.is_err());
        assert_eq!(guard.name_any(), "broken");
        let oref = guard.object_ref(&());
        assert_eq!(oref.kind.as_deref(), Some("Topic"));
        assert_eq!(oref.namespace.as_deref(), Some("mq"));
    }

    #[test]
    fn a_cluster_is_being_deleted_when_all_its_groups_are() {
        let group = |name: &str, cluster: &str, deleting: bool| -> BrokerGroup {
            let mut g: BrokerGroup = serde_json::from_value(serde_json::json!({
                "apiVersion": "ferrum.dev/v1alpha1", "kind": "BrokerGroup",
                "metadata": { "name": name, "namespace": "mq" },
                "spec": { "clusterName": cluster, "mode": "MasterSlave", "replicas": 1,
                          "image": "i", "storage": { "size": "1Gi" },
                          "nameServer": { "replicas": 1, "image": "n" } }
            }))
            .expect("group");
            if deleting {
                g.metadata.deletion_timestamp =
                    Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
            }
            g
        };
        assert!(!cluster_being_deleted(&[], "c"));
        assert!(cluster_being_deleted(&[group("a", "c", true)], "c"));
        assert!(cluster_being_deleted(
            &[group("a", "c", true), group("x", "other", false)],
            "c"
        ));
        assert!(!cluster_being_deleted(
            &[group("a", "c", true), group("b", "c", false)],
            "c"
        ));
        assert!(!cluster_being_deleted(&[group("x", "other", true)], "c"));
    }

    #[test]
    fn missing_in_sync_and_drift() {
        let want = desired_config("T", &spec(8, 8));
        assert_eq!(diff(&want, None), TopicDiff::Missing);
        assert_eq!(diff(&want, Some(&want.clone())), TopicDiff::InSync);
        let mut live = want.clone();
        live.write_queue_nums = 4;
        live.perm = 4;
        assert_eq!(
            diff(&want, Some(&live)),
            TopicDiff::Drift(vec!["writeQueueNums 4 -> 8".into(), "perm 4 -> 6".into()])
        );
    }

    #[test]
    fn updates_send_changed_attributes_and_refuse_create_only_ones() {
        let mut desired = TopicConfig::new("T".to_owned(), 4);
        desired
            .attributes
            .insert("message.type".into(), "FIFO".into());
        desired
            .attributes
            .insert("queue.type".into(), "SimpleCQ".into());
        let mut live = desired.clone();
        live.attributes
            .insert("message.type".into(), "NORMAL".into());
        let update = update_for(&desired, &live).expect("message.type is changeable");
        assert_eq!(
            update.attributes.into_iter().collect::<Vec<_>>(),
            vec![("message.type".to_owned(), "FIFO".to_owned())]
        );
        live.attributes
            .insert("queue.type".into(), "BatchCQ".into());
        let refused = update_for(&desired, &live).expect_err("queue.type is create-only");
        assert!(refused.contains("queue.type"), "{refused}");
        live.attributes = desired.attributes.clone();
        live.read_queue_nums = 8;
        assert!(
            update_for(&desired, &live)
                .expect("queue counts repair")
                .attributes
                .is_empty()
        );
    }

    #[test]
    fn only_spec_attributes_are_compared() {
        let mut s = spec(4, 4);
        s.attributes.insert("message.type".into(), "FIFO".into());
        let want = desired_config("T", &s);
        let mut live = want.clone();
        live.attributes
            .insert("queue.type".into(), "BatchCQ".into());
        assert_eq!(diff(&want, Some(&live)), TopicDiff::InSync);
        live.attributes
            .insert("message.type".into(), "NORMAL".into());
        assert_eq!(
            diff(&want, Some(&live)),
            TopicDiff::Drift(vec!["attributes[message.type] NORMAL -> FIFO".into()])
        );
        live.attributes.clear();
        assert!(matches!(diff(&want, Some(&live)), TopicDiff::Drift(_)));
    }

    #[test]
    fn desired_config_carries_the_spec() {
        let mut s = spec(2, 3);
        s.order = true;
        s.perm = 4;
        let c = desired_config("Orders", &s);
        assert_eq!(c.topic_name, "Orders");
        assert_eq!((c.read_queue_nums, c.write_queue_nums), (2, 3));
        assert_eq!(c.perm, 4);
        assert!(c.order);
    }

    fn info() -> ClusterInfo {
        let b = |name: &str, addrs: &[(i64, &str)]| BrokerData {
            cluster: "c".into(),
            broker_name: name.into(),
            broker_addrs: addrs.iter().map(|(i, a)| (*i, (*a).to_owned())).collect(),
            ..Default::default()
        };
        ClusterInfo {
            broker_addr_table: [
                (
                    "a".to_owned(),
                    b("a", &[(0, "a-master:10911"), (1, "a-1:10911")]),
                ),
                ("b".to_owned(), b("b", &[(1, "b-1:10911")])),
                ("x".to_owned(), b("x", &[(0, "x:10911")])),
            ]
            .into(),
            cluster_addr_table: [
                ("c".to_owned(), ["a".to_owned(), "b".to_owned()].into()),
                ("other".to_owned(), ["x".to_owned()].into()),
            ]
            .into(),
        }
    }

    #[test]
    fn groups_of_a_cluster_with_their_masters() {
        assert_eq!(
            cluster_groups(&info(), "c"),
            vec![
                ("a".to_owned(), Some("a-master:10911".to_owned())),
                ("b".to_owned(), None)
            ]
        );
        assert!(cluster_groups(&info(), "none").is_empty());
    }

    #[test]
    fn route_must_list_every_group() {
        let groups = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(missing_from_route(None, &groups), groups);
        let route = TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "a".into(),
                read_queue_nums: 8,
                write_queue_nums: 8,
                perm: 6,
                topic_sys_flag: 0,
            }],
            broker_datas: info().broker_addr_table.values().cloned().collect(),
            ..Default::default()
        };
        assert_eq!(missing_from_route(Some(&route), &groups), vec!["b"]);
    }

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("timestamp"))
    }

    fn group(name: &str, state: &str, message: &str) -> TopicGroupStatus {
        TopicGroupStatus {
            broker_name: name.into(),
            master_addr: None,
            state: state.into(),
            message: message.into(),
        }
    }

    fn get<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|x| x.type_ == t).expect("condition")
    }

    #[test]
    fn conditions_follow_groups_and_route() {
        let ok = [group("a", STATE_IN_SYNC, ""), group("b", STATE_CREATED, "")];
        let c = topic_conditions(Some(2), &ok, &[], None, &[], &at(1));
        assert_eq!(get(&c, READY).status, "True");
        assert_eq!(get(&c, DEGRADED).status, "False");
        assert!(c.iter().all(|x| x.observed_generation == Some(2)));

        let c = topic_conditions(Some(2), &ok, &["b".into()], None, &c, &at(2));
        assert_eq!(get(&c, READY).status, "False");
        assert_eq!(get(&c, READY).reason, "RouteIncomplete");
        assert_eq!(get(&c, DEGRADED).last_transition_time, at(1));

        let bad = [
            group("a", STATE_IN_SYNC, ""),
            group("b", STATE_FAILED, "timeout"),
        ];
        let c = topic_conditions(Some(3), &bad, &[], None, &c, &at(3));
        assert_eq!(get(&c, DEGRADED).status, "True");
        assert_eq!(get(&c, DEGRADED).message, "b: timeout");
        assert_eq!(get(&c, READY).status, "False");

        let c = topic_conditions(Some(3), &[], &[], Some("no NameServer"), &c, &at(4));
        assert_eq!(get(&c, DEGRADED).message, "no NameServer");
    }

    #[test]
    fn overrides_parse_and_refuse_garbage() {
        let o = NamesrvOverrides::parse(&["c1=127.0.0.1:9876;127.0.0.1:9877", "c2=h:1"])
            .expect("parses");
        assert_eq!(
            o.get("c1").expect("c1"),
            ["127.0.0.1:9876", "127.0.0.1:9877"]
        );
        assert_eq!(o.get("c2").expect("c2"), ["h:1"]);
        assert!(o.get("c3").is_none());
        assert!(NamesrvOverrides::parse(&["nocluster"]).is_err());
        assert!(NamesrvOverrides::parse(&["c="]).is_err());
    }
}
