//! The BrokerGroup reconciler: read → validate (pure) → build (pure) → server-side apply in a
//! fixed order, StatefulSet last → status. Level-triggered and stateless: everything it needs
//! is in the object, its status and the cluster.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::{self, MANAGER, ROLE_LABEL, ROLE_MASTER};
use crate::crd::{BrokerGroup, BrokerGroupStatus, BrokerMode};
use crate::metrics::Metrics;
use crate::status::{Observation, conditions};
use crate::validate::{nameserver_conflict, parse_quantity, validate_spec};

/// `ferrum.dev/paused: "true"` stops the operator from touching the group's objects.
pub const PAUSE_ANNOTATION: &str = "ferrum.dev/paused";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Build(#[from] build::BuildError),
}

/// Shared by every reconcile; holds no per-object state.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Option<Metrics>,
    /// NameServer addresses that replace a cluster's in-cluster DNS names.
    pub namesrv_overrides: crate::topic_controller::NamesrvOverrides,
    /// Broker addresses (by pod name) that replace the pods' own DNS names.
    pub broker_addr_overrides: std::collections::BTreeMap<String, String>,
}

impl Context {
    pub fn with_metrics(client: Client, metrics: Metrics) -> Self {
        Context {
            metrics: Some(metrics),
            ..Context::new(client)
        }
    }

    pub fn new(client: Client) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Context {
            client,
            recorder,
            metrics: None,
            namesrv_overrides: Default::default(),
            broker_addr_overrides: Default::default(),
        }
    }

    /// Reaches the NameServers of the given clusters at these addresses instead of their
    /// Services' DNS names.
    pub fn with_namesrv_overrides(
        mut self,
        overrides: crate::topic_controller::NamesrvOverrides,
    ) -> Self {
        self.namesrv_overrides = overrides;
        self
    }

    /// Reaches these broker pods (by pod name) at these addresses instead of their DNS names.
    pub fn with_broker_addr_overrides(
        mut self,
        overrides: std::collections::BTreeMap<String, String>,
    ) -> Self {
        self.broker_addr_overrides = overrides;
        self
    }

    /// Events are for people; failing to write one must not fail the reconcile.
    pub(crate) async fn event(
        &self,
        bg: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, bg).await {
            tracing::warn!(error = %e, reason, "could not record event");
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

fn paused(bg: &BrokerGroup) -> bool {
    bg.annotations()
        .get(PAUSE_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// One pass over one BrokerGroup. A bad spec ends in `Degraded`, not in an error, so the
/// controller keeps its normal pace and the other groups are unaffected.
pub async fn reconcile(bg: Arc<BrokerGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_once(bg, ctx.clone()).await;
    if let Some(m) = &ctx.metrics {
        let outcome = match &result {
            Ok((_, true)) => "ok",
            Ok((_, false)) => "invalid",
            Err(_) => "error",
        };
        m.observe("BrokerGroup", outcome, started.elapsed());
    }
    result.map(|(action, _)| action)
}

/// The pass itself; the flag tells whether the spec was valid.
async fn reconcile_once(bg: Arc<BrokerGroup>, ctx: Arc<Context>) -> Result<(Action, bool), Error> {
    let client = &ctx.client;
    let id = build::GroupIdentity::of(&bg)?;
    let ns = id.namespace.as_str();
    let groups: Api<BrokerGroup> = Api::namespaced(client.clone(), ns);
    let is_paused = paused(&bg);

    let mut problems = validate_spec(&bg.spec);
    let mut siblings = groups.list(&ListParams::default()).await?.items;
    siblings.retain(|g| g.spec.cluster_name == bg.spec.cluster_name && g.uid().is_some());
    siblings.sort_by(|a, b| {
        (a.creation_timestamp(), a.name_any()).cmp(&(b.creation_timestamp(), b.name_any()))
    });
    if let Some(conflict) = nameserver_conflict(&bg, &siblings) {
        problems.push(conflict);
    }

    let mut master = bg
        .status
        .as_ref()
        .and_then(|s| s.master_ordinal)
        .filter(|m| (0..bg.spec.replicas).contains(m))
        .unwrap_or(0);
    let mut ready = 0;
    let mut replica_statuses = None;
    let mut notes = None;
    let mut promotion_problem = None;
    let mut storage_problem = None;
    // Raft: the replica chosen as leader this pass (see replicas::choose_leader).
    let mut raft_leader = None;
    // Raft: whether any replica answered or any pod is Ready, i.e. an election can be seen.
    let mut raft_alive = false;
    let mut roll = crate::roll::RollOutcome {
        status: bg.status.as_ref().and_then(|s| s.roll.clone()),
        new_master: None,
    };
    if !is_paused && problems.is_empty() {
        let namesrv = match ctx.namesrv_overrides.get(&bg.spec.cluster_name) {
            Some(addrs) => addrs.to_vec(),
            None => ferrum_client::namesrv::parse_addrs(&build::namesrv_addr(
                &bg.spec.cluster_name,
                ns,
                bg.spec.name_server.replicas,
            )),
        };
        let admin = crate::replicas::admin(&namesrv);
        // Raft: ready pods are also asked by their own DNS names, so the leader is found even
        // while the master Service selects no pod.
        let raft_fallback = if bg.spec.mode == BrokerMode::Raft {
            let ready = ready_ordinals(client, ns, &id.name).await?;
            crate::replicas::pod_addrs(&id.name, ns, &ready)
        } else {
            Default::default()
        };
        let observe = |master: i32| {
            crate::replicas::observe(
                &admin,
                &namesrv,
                &bg.spec.cluster_name,
                &id.name,
                bg.spec.mode,
                bg.spec.replicas,
                master,
                &raft_fallback,
            )
        };
        let mut observed = observe(master).await;
        raft_leader = observed.leader;
        raft_alive = !observed.raft.is_empty() || !raft_fallback.is_empty();
        if bg.spec.mode == BrokerMode::MasterSlave
            && let Some(target) = bg.spec.promote.filter(|p| *p != master)
        {
            // The cached object can predate the status written right after a promotion (a
            // pass started by the pod label change that promotion made): promoting again
            // would be refused, since the target is master by now, and the old master
            // written back. The stored status, as listed at the start of this pass, decides.
            let stored = siblings
                .iter()
                .find(|g| g.uid() == bg.uid())
                .and_then(|g| g.status.as_ref())
                .and_then(|s| s.master_ordinal);
            if stored == Some(target) {
                master = target;
                observed = observe(master).await;
            } else {
                match promote(&ctx, &bg, &admin, &observed, target).await {
                    Ok(()) => {
                        master = target;
                        // Recorded at once: a later step of this pass may fail, and the
                        // next pass must not take the old master for the current one.
                        let patch = serde_json::json!({ "status": {
                            "masterOrdinal": target,
                            "master": build::pod_name(&id.name, target),
                        }});
                        groups
                            .patch_status(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                        observed = observe(master).await;
                    }
                    Err(why) => promotion_problem = Some(why),
                }
            }
        }
        let owners = siblings
            .iter()
            .filter_map(|g| g.controller_owner_ref(&()))
            .collect();
        let ns_objs =
            build::build_nameservers(&bg.spec.cluster_name, ns, &bg.spec.name_server, owners);
        for svc in &ns_objs.services {
            apply(client, ns, svc).await?;
        }
        for d in &ns_objs.deployments {
            apply::<Deployment>(client, ns, d).await?;
        }

        let objs = build::build_broker_group(&bg)?;
        apply::<ConfigMap>(client, ns, &objs.config).await?;
        apply::<Service>(client, ns, &objs.headless).await?;
        apply::<Service>(client, ns, &objs.master).await?;
        for svc in &objs.external {
            apply::<Service>(client, ns, svc).await?;
        }
        apply::<PodDisruptionBudget>(client, ns, &objs.pdb).await?;
        let mut desired_sts = objs.statefulset.clone();
        let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        if let Some(live) = sts_api.get_opt(&id.name).await? {
            // volumeClaimTemplates are immutable: keep the live ones and grow each PVC.
            if let (Some(d), Some(l)) = (desired_sts.spec.as_mut(), live.spec.as_ref()) {
                d.volume_claim_templates = l.volume_claim_templates.clone();
            }
            let growth = grow_pvcs(
                client,
                ns,
                &id.name,
                bg.spec.replicas,
                &bg.spec.storage.size,
            )
            .await?;
            let oref = bg.object_ref(&());
            if !growth.expanding.is_empty() {
                ctx.event(
                    &oref,
                    EventType::Normal,
                    "VolumeExpanding",
                    format!(
                        "asked {} to grow to {}",
                        growth.expanding.join(", "),
                        bg.spec.storage.size
                    ),
                )
                .await;
            }
            if !growth.refused.is_empty() {
                let why = growth.refused.join("; ");
                let told = bg.status.as_ref().is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == crate::status::DEGRADED
                            && c.status == "True"
                            && c.message.contains(&why)
                    })
                });
                if !told {
                    ctx.event(
                        &oref,
                        EventType::Warning,
                        "VolumeExpansionFailed",
                        why.clone(),
                    )
                    .await;
                }
                storage_problem = Some(why);
            }
        }
        let sts = apply::<StatefulSet>(client, ns, &desired_sts).await?;
        // What an earlier spec asked for and this one does not (fewer NameServers, no or
        // less external access) goes, once everything wanted is in place.
        let wanted: std::collections::BTreeSet<String> = ns_objs
            .services
            .iter()
            .map(|o| o.name_any())
            .chain(ns_objs.deployments.iter().map(|o| o.name_any()))
            .chain(
                [&objs.headless, &objs.master]
                    .into_iter()
                    .map(|o| o.name_any()),
            )
            .chain(objs.external.iter().map(|o| o.name_any()))
            .collect();
        let cluster_uids = siblings.iter().filter_map(|g| g.uid()).collect();
        let group_uid = bg.uid().unwrap_or_default();
        let owner = crate::prune::Owner {
            group: &id.name,
            group_uid: &group_uid,
            cluster: &bg.spec.cluster_name,
            cluster_uids: &cluster_uids,
        };
        let pruned = crate::prune::prune(client, ns, &owner, &wanted).await?;
        if !pruned.is_empty() {
            ctx.event(
                &bg.object_ref(&()),
                EventType::Normal,
                "Pruned",
                format!("deleted {} (no longer in the spec)", pruned.join(", ")),
            )
            .await;
        }
        ready = sts
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if bg.spec.mode == BrokerMode::MasterSlave {
            label_master(client, ns, &id.name, bg.spec.replicas, master).await?;
        }
        // Raft: the label follows the elected leader. With none observed it stays where it
        // is (the brokers may only be unreachable from here) and the pass comes back soon.
        if let Some(leader) = raft_leader {
            master = leader;
            label_master(client, ns, &id.name, bg.spec.replicas, leader).await?;
            let previous = bg.status.as_ref().and_then(|s| s.master.as_deref());
            if let Some(note) =
                master_change(&id.name, previous, &build::pod_name(&id.name, leader))
            {
                ctx.event(
                    &bg.object_ref(&()),
                    EventType::Normal,
                    "MasterChanged",
                    note,
                )
                .await;
            }
        }
        let ready_pods = ready_ordinals(client, ns, &id.name).await?;
        replica_statuses = Some(crate::replicas::replica_statuses(
            &id.name,
            bg.spec.mode,
            bg.spec.replicas,
            match bg.spec.mode {
                BrokerMode::MasterSlave => master,
                BrokerMode::Raft => raft_leader.unwrap_or(-1),
            },
            &observed.registered,
            &observed.views,
            &ready_pods,
        ));
        notes = observed.note;
        // Rolling restarts: one step per pass, after the objects and status reads above.
        if let Some(statuses) = replica_statuses.as_deref() {
            roll = crate::roll::drive(crate::roll::RollContext {
                ctx: &ctx,
                bg: &bg,
                id: &id,
                sts: &sts,
                replicas: statuses,
                addrs: &observed.addrs,
                admin: &admin,
                siblings: &siblings,
            })
            .await?;
            if let Some(m) = roll.new_master.filter(|m| *m != master) {
                master = m;
                label_master(client, ns, &id.name, bg.spec.replicas, master).await?;
            }
        }
    }

    let previous = bg
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let was = |t: &str| previous.iter().any(|c| c.type_ == t && c.status == "True");
    let new_generation =
        bg.status.as_ref().and_then(|s| s.observed_generation) != bg.metadata.generation;
    if !problems.is_empty() {
        if new_generation || !was(crate::status::DEGRADED) {
            ctx.event(
                &bg.object_ref(&()),
                EventType::Warning,
                "InvalidSpec",
                problems.join("; "),
            )
            .await;
        }
    } else if is_paused {
        if !was(crate::status::PAUSED) {
            ctx.event(
                &bg.object_ref(&()),
                EventType::Normal,
                "Paused",
                format!("{PAUSE_ANNOTATION} is set; objects are left as they are"),
            )
            .await;
        }
    } else if new_generation {
        ctx.event(
            &bg.object_ref(&()),
            EventType::Normal,
            "Applied",
            format!(
                "applied generation {} ({} replicas, {:?})",
                bg.metadata.generation.unwrap_or_default(),
                bg.spec.replicas,
                bg.spec.mode
            ),
        )
        .await;
    }
    let obs = Observation {
        generation: bg.metadata.generation,
        desired_replicas: bg.spec.replicas,
        ready_replicas: ready,
        problems: problems.clone(),
        paused: is_paused,
        notes,
        promotion: promotion_problem,
        rolling: roll.progress(),
        storage: storage_problem,
    };
    // The broker's own word on who is master wins over the operator's memory (Raft elects:
    // the leader chosen from the replicas' Raft status, which is the pod the label is on).
    let observed_master = match bg.spec.mode {
        BrokerMode::Raft => raft_leader.map(|l| build::pod_name(&id.name, l)),
        BrokerMode::MasterSlave => replica_statuses
            .as_deref()
            .and_then(crate::replicas::observed_master),
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let electing = raft_electing(&bg, is_paused, &problems, raft_leader);
    let mut conditions = conditions(&obs, &previous, &now);
    if electing {
        crate::replicas::electing_condition(
            &mut conditions,
            &id.name,
            bg.metadata.generation,
            &previous,
            &now,
        );
    }
    let replica_statuses_observed = replica_statuses.is_some();
    let status = BrokerGroupStatus {
        observed_generation: bg.metadata.generation,
        conditions,
        master: observed_master.or_else(|| {
            (bg.spec.mode == BrokerMode::MasterSlave).then(|| build::pod_name(&id.name, master))
        }),
        master_ordinal: (bg.spec.mode == BrokerMode::MasterSlave).then_some(master),
        ready_replicas: ready,
        roll: roll.status.clone(),
        replicas: replica_statuses.unwrap_or_else(|| {
            bg.status
                .as_ref()
                .map(|s| s.replicas.clone())
                .unwrap_or_default()
        }),
    };
    // A pod turns Ready before its broker has registered with the NameServers and before it
    // answers for its role, and the pod event that started this pass does not come again:
    // look again soon until the status has settled. Only what this pass observed counts (a
    // paused or invalid group keeps its last status and is not looked at sooner).
    let settling = replica_statuses_observed && crate::replicas::settling(&status.replicas);
    let patch = serde_json::json!({
        "apiVersion": "ferrum.dev/v1alpha1",
        "kind": "BrokerGroup",
        "status": status,
    });
    groups
        .patch_status(
            &id.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;

    if electing {
        tracing::info!(group = %id.name, namespace = ns, "no Raft leader observed yet");
        let wait = if raft_alive {
            RAFT_ELECTION_RECHECK
        } else {
            RAFT_STARTING_RECHECK
        };
        return Ok((Action::requeue(wait), true));
    }
    if problems.is_empty() {
        tracing::info!(group = %id.name, namespace = ns, ready, "reconciled");
        // A roll waits on pods and brokers the controller does not watch, and a Raft
        // leadership can move with no pod changing (a partition, a transfer by hand): the
        // master Service must follow it, so look again soon.
        let period = if roll.status.is_some() || bg.spec.mode == BrokerMode::Raft || settling {
            5
        } else {
            60
        };
        Ok((Action::requeue(Duration::from_secs(period)), true))
    } else {
        tracing::warn!(group = %id.name, namespace = ns, ?problems, "invalid spec");
        Ok((Action::requeue(Duration::from_secs(300)), false))
    }
}

/// How soon a Raft group without an observed leader is looked at again: an election takes
/// about a second, and clients reach the new leader through the master Service only once the
/// label is on it.
pub const RAFT_ELECTION_RECHECK: Duration = Duration::from_millis(700);

/// The same while no replica answers and no pod is Ready (a group still starting): nothing
/// can be elected yet, and a pod turning Ready starts a pass through the pod watch anyway.
pub const RAFT_STARTING_RECHECK: Duration = Duration::from_secs(5);

/// The note of a `MasterChanged` Event when the Raft leader seen this pass is not the pod
/// the status named master (the label has just moved to it), else `None`.
pub fn master_change(group: &str, previous: Option<&str>, leader: &str) -> Option<String> {
    let service = build::master_service(group);
    match previous {
        Some(p) if p == leader => None,
        Some(p) => Some(format!(
            "Raft leader moved from {p} to {leader}; {service} now selects {leader}"
        )),
        None => Some(format!(
            "Raft leader {leader} elected; {service} now selects it"
        )),
    }
}

/// Whether this pass found a valid, unpaused Raft group without a leader to label.
fn raft_electing(bg: &BrokerGroup, paused: bool, problems: &[String], leader: Option<i32>) -> bool {
    bg.spec.mode == BrokerMode::Raft && !paused && problems.is_empty() && leader.is_none()
}

/// The BrokerGroup a broker pod belongs to (its `app.kubernetes.io/instance` label), so a pod
/// that dies, restarts or turns Ready triggers a pass: that is when a Raft group elects.
pub fn group_of_pod(pod: &Pod) -> Option<ObjectRef<DeserializeGuard<BrokerGroup>>> {
    let labels = pod.metadata.labels.as_ref()?;
    if labels.get("app.kubernetes.io/name").map(String::as_str) != Some("ferrum-broker") {
        return None;
    }
    let group = labels.get("app.kubernetes.io/instance")?;
    let ns = pod.metadata.namespace.as_deref()?;
    Some(ObjectRef::new(group).within(ns))
}

/// Promotes replica `target` (MasterSlave) with FERRUM_PROMOTE_BROKER once it is a caught-up
/// slave; the caller then moves the master label and records the new master. `Err` is the
/// reason for `Degraded`; an Event tells either outcome (a refusal only when it is news).
async fn promote(
    ctx: &Context,
    bg: &BrokerGroup,
    admin: &ferrum_client::Admin,
    observed: &crate::replicas::Observed,
    target: i32,
) -> Result<(), String> {
    let group = bg.name_any();
    let pod = build::pod_name(&group, target);
    let oref = bg.object_ref(&());
    let result = match crate::replicas::promotion_check(&group, target, &observed.views) {
        Err(why) => Err(format!("promotion of {pod} refused: {why}")),
        Ok(()) => {
            let addr = observed.addrs.get(&target).cloned().unwrap_or_default();
            let sync = bg.spec.replication.broker_role == crate::crd::MasterRole::SYNC_MASTER;
            admin
                .promote_broker(&addr, sync)
                .await
                .map_err(|e| format!("promotion of {pod} ({addr}) failed: {e}"))
        }
    };
    match result {
        Ok(status) => {
            ctx.event(
                &oref,
                EventType::Normal,
                "Promoted",
                format!(
                    "{pod} promoted to {} in epoch {} at commit-log offset {}",
                    status.role, status.epoch, status.epoch_start_offset
                ),
            )
            .await;
            Ok(())
        }
        Err(why) => {
            let told = bg.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == crate::status::DEGRADED && c.message == why)
            });
            if !told {
                ctx.event(&oref, EventType::Warning, "PromotionRefused", why.clone())
                    .await;
            }
            Err(why)
        }
    }
}

/// What [`grow_pvcs`] did: claims asked to grow, and the growth the API server refused.
#[derive(Debug, Default)]
struct Growth {
    expanding: Vec<String>,
    refused: Vec<String>,
}

/// Expands the data PVC of each replica to `size` when it is smaller (never shrinks; the
/// CRD refuses that at admission). Missing PVCs are left to the StatefulSet controller. A
/// patch the API server refuses (a StorageClass without `allowVolumeExpansion`) is reported,
/// not returned as an error: the rest of the group must still be applied.
async fn grow_pvcs(
    client: &Client,
    ns: &str,
    group: &str,
    replicas: i32,
    size: &str,
) -> Result<Growth, kube::Error> {
    let mut growth = Growth::default();
    let Some(want) = parse_quantity(size) else {
        return Ok(growth);
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for i in 0..replicas {
        let name = format!("data-{}", build::pod_name(group, i));
        let Some(pvc) = pvcs.get_opt(&name).await? else {
            continue;
        };
        // Only a bound claim can be resized; a pending one still gets the new template size
        // when its StatefulSet is recreated, which is out of this pass's reach.
        if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
            continue;
        }
        let have = pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| parse_quantity(&q.0));
        if have.is_some_and(|h| h < want) {
            let patch = serde_json::json!({
                "spec": { "resources": { "requests": { "storage": size } } }
            });
            match pvcs
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(pvc = %name, size, "expanding volume");
                    growth.expanding.push(name);
                }
                Err(kube::Error::Api(e)) => {
                    tracing::warn!(pvc = %name, size, error = %e.message, "volume expansion refused");
                    growth.refused.push(format!(
                        "volume expansion of {name} to {size} refused: {}",
                        e.message
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(growth)
}

/// Ordinals of the group's pods whose Ready condition is true.
async fn ready_ordinals(
    client: &Client,
    ns: &str,
    group: &str,
) -> Result<std::collections::BTreeSet<i32>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = build::broker_selector(group)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    let prefix = format!("{group}-");
    Ok(list
        .items
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.name_any().strip_prefix(&prefix)?.parse().ok())
        .collect())
}

/// Keeps the role label on exactly the master pod, so `<group>-master` selects it. Pods that
/// do not exist yet are skipped; the next pass labels them.
async fn label_master(
    client: &Client,
    ns: &str,
    group: &str,
    replicas: i32,
    master: i32,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for i in 0..replicas {
        let value = if i == master {
            serde_json::Value::from(ROLE_MASTER)
        } else {
            serde_json::Value::Null
        };
        let patch = serde_json::json!({ "metadata": { "labels": { ROLE_LABEL: value } } });
        match pods
            .patch(
                &build::pod_name(group, i),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The controller watches through a [`DeserializeGuard`], so one object that no longer
/// matches our types is reported and skipped instead of breaking the watch for all others.
async fn guarded_reconcile(
    obj: Arc<DeserializeGuard<BrokerGroup>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match &obj.0 {
        Ok(bg) => reconcile(Arc::new(bg.clone()), ctx).await,
        Err(invalid) => {
            tracing::warn!(
                name = ?invalid.metadata.name,
                namespace = ?invalid.metadata.namespace,
                error = %invalid.error,
                "unreadable BrokerGroup skipped"
            );
            if let Some(m) = &ctx.metrics {
                m.observe("BrokerGroup", "invalid", Duration::ZERO);
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
    obj: Arc<DeserializeGuard<BrokerGroup>>,
    err: &Error,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(group = %obj.name_any(), error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// Runs the BrokerGroup controller until a shutdown signal.
pub async fn run(client: Client) {
    run_with(Context::new(client)).await
}

/// Like [`run`], with a prepared context (e.g. one that records metrics).
pub async fn run_with(ctx: Context) {
    run_scoped(ctx, None).await
}

/// Like [`run_with`], limited to one namespace, so a Role there is all the operator needs.
pub async fn run_namespaced(ctx: Context, namespace: &str) {
    run_scoped(ctx, Some(namespace)).await
}

/// Every namespace, or only `namespace`.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn run_scoped(ctx: Context, namespace: Option<&str>) {
    let client = ctx.client.clone();
    let ctx = Arc::new(ctx);
    let cfg = watcher::Config::default();
    let controller = Controller::new(
        scoped::<DeserializeGuard<BrokerGroup>>(&client, namespace),
        cfg.clone(),
    );
    if let Some(m) = &ctx.metrics {
        let groups = controller.store();
        m.track_managed("BrokerGroup", move || groups.state().len());
    }
    controller
        .owns(scoped::<StatefulSet>(&client, namespace), cfg.clone())
        // Broker pods are owned by the StatefulSet, not the group: mapped through their labels.
        .watches(
            scoped::<Pod>(&client, namespace),
            watcher::Config::default().labels(&format!(
                "app.kubernetes.io/name=ferrum-broker,app.kubernetes.io/managed-by={MANAGER}"
            )),
            |pod| group_of_pod(&pod),
        )
        .owns(scoped::<ConfigMap>(&client, namespace), cfg.clone())
        .owns(scoped::<Service>(&client, namespace), cfg.clone())
        .owns(scoped::<PodDisruptionBudget>(&client, namespace), cfg)
        .shutdown_on_signal()
        .run(guarded_reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_object_keeps_its_identity() {
        let raw = serde_json::json!({
            "apiVersion": "ferrum.dev/v1alpha1",
            "kind": "BrokerGroup",
            "metadata": { "name": "broken", "namespace": "mq" },
            "spec": { "clusterName": "c", "mode": "Sideways", "replicas": 3 }
        });
        let guard: DeserializeGuard<BrokerGroup> =
            serde_json::from_value(raw).expect("the guard itself always deserializes");
        assert!(guard.0.is_err());
        assert_eq!(guard.name_any(), "broken");
        assert_eq!(guard.object_ref(&()).kind.as_deref(), Some("BrokerGroup"));
    }

    #[test]
    fn the_master_label_moving_is_told_once() {
        assert_eq!(master_change("g", Some("g-1"), "g-1"), None);
        assert_eq!(
            master_change("g", Some("g-0"), "g-2").as_deref(),
            Some("Raft leader moved from g-0 to g-2; g-master now selects g-2")
        );
        assert_eq!(
            master_change("g", None, "g-1").as_deref(),
            Some("Raft leader g-1 elected; g-master now selects it")
        );
    }

    #[test]
    fn a_broker_pod_maps_to_its_group() {
        let pod = |labels: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": "orders-1", "namespace": "mq", "labels": labels }
            }))
            .expect("pod")
        };
        let broker = pod(serde_json::json!({
            "app.kubernetes.io/name": "ferrum-broker",
            "app.kubernetes.io/instance": "orders"
        }));
        let target = group_of_pod(&broker).expect("a group");
        assert_eq!(target.name, "orders");
        assert_eq!(target.namespace.as_deref(), Some("mq"));
        let other = pod(serde_json::json!({
            "app.kubernetes.io/name": "ferrum-namesrv",
            "app.kubernetes.io/instance": "c-namesrv"
        }));
        assert!(group_of_pod(&other).is_none());
        assert!(group_of_pod(&pod(serde_json::json!({}))).is_none());
    }
}
