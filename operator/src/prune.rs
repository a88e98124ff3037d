//! Pruning: Services and Deployments the operator made earlier but no longer builds (a
//! NameServer replica scaled away, external access dropped or reduced). Only objects that
//! carry the operator's labels *and* an owner reference to the group (or, for the shared
//! NameServers, to a group of the cluster) are ever deleted; anything else with a similar
//! name is left alone. The choice is pure, so it is unit-tested.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::{Client, Resource};

use crate::build::{CLUSTER_LABEL, MANAGER, namesrv_service};

const NAME: &str = "app.kubernetes.io/name";
const INSTANCE: &str = "app.kubernetes.io/instance";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Who is pruning: one group, the cluster it belongs to, and every group of that cluster
/// (the owners of the shared NameServer objects).
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    pub group: &'a str,
    pub group_uid: &'a str,
    pub cluster: &'a str,
    pub cluster_uids: &'a BTreeSet<String>,
}

/// The label selector that finds every object the operator made for `cluster`.
pub fn selector(cluster: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{CLUSTER_LABEL}={cluster}")
}

/// Whether `meta` names an object this pass should delete: not in `wanted`, made by the
/// operator for this cluster, and either one of this group's broker objects (controlled by
/// it) or one of the cluster's NameServer objects (owned by a group of the cluster).
pub fn is_stale(meta: &ObjectMeta, wanted: &BTreeSet<String>, owner: &Owner<'_>) -> bool {
    let Some(name) = meta.name.as_deref() else {
        return false;
    };
    if wanted.contains(name) || meta.deletion_timestamp.is_some() {
        return false;
    }
    let labels = meta.labels.clone().unwrap_or_default();
    let label = |k: &str| labels.get(k).map(String::as_str);
    if label(MANAGED_BY) != Some(MANAGER) || label(CLUSTER_LABEL) != Some(owner.cluster) {
        return false;
    }
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    let by_group = |uid: &str| refs.iter().any(|r| r.kind == "BrokerGroup" && r.uid == uid);
    match (label(NAME), label(INSTANCE)) {
        (Some("ferrum-broker"), Some(instance)) if instance == owner.group => {
            refs.iter().any(|r| {
                r.kind == "BrokerGroup" && r.uid == owner.group_uid && r.controller == Some(true)
            })
        }
        (Some("ferrum-namesrv"), Some(instance)) if instance == namesrv_service(owner.cluster) => {
            owner.cluster_uids.iter().any(|u| by_group(u))
        }
        _ => false,
    }
}

/// Deletes the stale Services and Deployments of `owner` in `ns` and returns what went, as
/// `Kind/name`. The uid precondition makes sure a same-named object created meanwhile stays.
pub async fn prune(
    client: &Client,
    ns: &str,
    owner: &Owner<'_>,
    wanted: &BTreeSet<String>,
) -> Result<Vec<String>, kube::Error> {
    let mut gone = prune_kind::<Service>(client, ns, owner, wanted).await?;
    gone.extend(prune_kind::<Deployment>(client, ns, owner, wanted).await?);
    Ok(gone)
}

async fn prune_kind<K>(
    client: &Client,
    ns: &str,
    owner: &Owner<'_>,
    wanted: &BTreeSet<String>,
) -> Result<Vec<String>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(&selector(owner.cluster)))
        .await?;
    let mut gone = Vec::new();
    for obj in list
        .items
        .iter()
        .filter(|o| is_stale(o.meta(), wanted, owner))
    {
        let meta = obj.meta();
        let name = meta.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &params).await {
            Ok(_) => gone.push(format!("{}/{name}", K::kind(&()))),
            // Already gone, or replaced by a new object of the same name: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    fn owner_ref(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "ferrum.dev/v1alpha1".into(),
            kind: "BrokerGroup".into(),
            name: "g".into(),
            uid: uid.into(),
            controller: Some(controller),
            ..Default::default()
        }
    }

    fn meta(name: &str, app: &str, instance: &str, refs: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                [
                    (NAME, app),
                    (INSTANCE, instance),
                    (MANAGED_BY, MANAGER),
                    (CLUSTER_LABEL, "c1"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            owner_references: Some(refs),
            ..Default::default()
        }
    }

    #[test]
    fn only_unwanted_objects_the_operator_owns_are_stale() {
        let uids: BTreeSet<String> = ["u1".to_owned(), "u2".to_owned()].into();
        let owner = Owner {
            group: "orders",
            group_uid: "u1",
            cluster: "c1",
            cluster_uids: &uids,
        };
        let wanted: BTreeSet<String> =
            ["orders-headless".to_owned(), "c1-namesrv-0".to_owned()].into();

        // A per-pod Service of this group that external access no longer asks for.
        let ext = meta(
            "orders-ext-2",
            "ferrum-broker",
            "orders",
            vec![owner_ref("u1", true)],
        );
        assert!(is_stale(&ext, &wanted, &owner));
        // Wanted objects stay.
        let headless = meta(
            "orders-headless",
            "ferrum-broker",
            "orders",
            vec![owner_ref("u1", true)],
        );
        assert!(!is_stale(&headless, &wanted, &owner));
        // Another group's objects are its own business.
        let other = meta(
            "billing-ext-0",
            "ferrum-broker",
            "billing",
            vec![owner_ref("u2", true)],
        );
        assert!(!is_stale(&other, &wanted, &owner));
        // Without our controller reference, or without our labels: not ours.
        let foreign = meta("orders-ext-3", "ferrum-broker", "orders", vec![]);
        assert!(!is_stale(&foreign, &wanted, &owner));
        let mut unlabelled = ext.clone();
        unlabelled.labels.as_mut().map(|l| l.remove(MANAGED_BY));
        assert!(!is_stale(&unlabelled, &wanted, &owner));
        // A NameServer replica scaled away, owned (not controlled) by a group of the cluster.
        let ns2 = meta(
            "c1-namesrv-2",
            "ferrum-namesrv",
            "c1-namesrv",
            vec![owner_ref("u2", false)],
        );
        assert!(is_stale(&ns2, &wanted, &owner));
        let ns2_foreign = meta(
            "c1-namesrv-2",
            "ferrum-namesrv",
            "c1-namesrv",
            vec![owner_ref("zz", false)],
        );
        assert!(!is_stale(&ns2_foreign, &wanted, &owner));
        let wanted_ns = meta(
            "c1-namesrv-0",
            "ferrum-namesrv",
            "c1-namesrv",
            vec![owner_ref("u1", false)],
        );
        assert!(!is_stale(&wanted_ns, &wanted, &owner));
        // Already being deleted: nothing to do.
        let mut going = ext;
        going.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(!is_stale(&going, &wanted, &owner));
    }

    #[test]
    fn the_selector_names_manager_and_cluster() {
        assert_eq!(
            selector("c1"),
            "app.kubernetes.io/managed-by=ferrum-operator,ferrum.dev/cluster=c1"
        );
    }
}
