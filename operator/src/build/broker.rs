//! Services, StatefulSet and PodDisruptionBudget of one BrokerGroup.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{config_hash, config_map_for};
use super::names::*;
use super::{BuildError, GroupIdentity};
use crate::crd::{BrokerGroup, BrokerMode, ExternalServiceType};
use kube::ResourceExt;

/// UID/GID the broker runs as unless the user supplies a pod security context.
pub const BROKER_UID: i64 = 10001;

/// Everything a BrokerGroup becomes, in apply order.
#[derive(Debug, Clone)]
pub struct BrokerGroupObjects {
    pub config: ConfigMap,
    pub headless: Service,
    pub master: Service,
    pub external: Vec<Service>,
    pub pdb: PodDisruptionBudget,
    pub statefulset: StatefulSet,
}

/// Desired objects of a BrokerGroup. The current master ordinal comes from status (0 for a
/// new group), so a restarted pod comes back with the role it had.
pub fn build_broker_group(bg: &BrokerGroup) -> Result<BrokerGroupObjects, BuildError> {
    let id = GroupIdentity::of(bg)?;
    let spec = &bg.spec;
    let master = bg
        .status
        .as_ref()
        .and_then(|s| s.master_ordinal)
        .filter(|m| (0..spec.replicas).contains(m))
        .unwrap_or(0);
    Ok(BrokerGroupObjects {
        config: config_map_for(spec, &id, master),
        headless: headless_service_for(bg, &id),
        master: master_service_for(bg, &id),
        external: external_services_for(bg, &id),
        pdb: pdb_for(bg, &id),
        statefulset: statefulset_for(bg, &id),
    })
}

fn meta(bg: &BrokerGroup, id: &GroupIdentity, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(id.namespace.clone()),
        labels: Some(broker_labels(&id.name, &bg.spec.cluster_name)),
        owner_references: Some(vec![id.owner.clone()]),
        ..Default::default()
    }
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn broker_ports(mode: BrokerMode) -> Vec<(&'static str, i32)> {
    let mut p = vec![
        ("broker", BROKER_PORT),
        ("ha", HA_PORT),
        ("health", HEALTH_PORT),
    ];
    if mode == BrokerMode::Raft {
        p.push(("raft", RAFT_PORT));
    }
    p
}

/// Gives every pod a stable DNS name. Not-ready addresses are published because Raft peers
/// and slaves must reach each other before they report ready.
pub fn headless_service_for(bg: &BrokerGroup, id: &GroupIdentity) -> Service {
    Service {
        metadata: meta(bg, id, headless_service(&id.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(broker_selector(&id.name)),
            ports: Some(
                broker_ports(bg.spec.mode)
                    .into_iter()
                    .map(|(n, p)| port(n, p))
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Follows the role label the operator keeps on the current master / Raft leader.
pub fn master_service_for(bg: &BrokerGroup, id: &GroupIdentity) -> Service {
    let mut selector = broker_selector(&id.name);
    selector.insert(ROLE_LABEL.into(), ROLE_MASTER.into());
    Service {
        metadata: meta(bg, id, master_service(&id.name)),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            // RocketMQ clients with vipChannelEnabled (on by default in older 4.x releases)
            // send to the VIP port, listenPort - 2, of the master address this Service is.
            ports: Some(vec![
                port("broker", BROKER_PORT),
                port("vip", BROKER_PORT - 2),
                port("ha", HA_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn external_services_for(bg: &BrokerGroup, id: &GroupIdentity) -> Vec<Service> {
    let Some(ext) = &bg.spec.external_access else {
        return Vec::new();
    };
    (0..bg.spec.replicas)
        .map(|i| {
            let mut m = meta(bg, id, external_service(&id.name, i));
            if !ext.annotations.is_empty() {
                m.annotations = Some(ext.annotations.clone());
            }
            Service {
                metadata: m,
                spec: Some(ServiceSpec {
                    type_: Some(
                        match ext.service_type {
                            ExternalServiceType::LoadBalancer => "LoadBalancer",
                            ExternalServiceType::NodePort => "NodePort",
                        }
                        .into(),
                    ),
                    selector: Some(BTreeMap::from([(
                        "statefulset.kubernetes.io/pod-name".into(),
                        pod_name(&id.name, i),
                    )])),
                    ports: Some(vec![port("broker", BROKER_PORT)]),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}

/// At most one broker of a group down for voluntary disruptions: a Raft group of 3 keeps
/// its quorum, a master–slave group keeps a copy of the data.
pub fn pdb_for(bg: &BrokerGroup, id: &GroupIdentity) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(bg, id, id.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(broker_selector(&id.name)),
                ..Default::default()
            }),
            // A pod that is not Ready serves nothing; evicting it (the roll restarts unready
            // pods first) must not be refused because another pod is down too.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("health".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn default_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(BROKER_UID),
        run_as_group: Some(BROKER_UID),
        fs_group: Some(BROKER_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One StatefulSet per group. `OnDelete`: the operator restarts pods itself, slaves first and
/// the master last; Kubernetes' own rolling update knows nothing about roles.
pub fn statefulset_for(bg: &BrokerGroup, id: &GroupIdentity) -> StatefulSet {
    let spec = &bg.spec;
    let overrides = spec.pod.clone().unwrap_or_default();
    let mut annotations = overrides.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash(spec, id));
    // Copied into the template, so a new value gives the StatefulSet a new revision and
    // every pod is rolled.
    if let Some(v) = bg.annotations().get(crate::roll::ROLL_ANNOTATION) {
        annotations.insert(crate::roll::ROLL_ANNOTATION.into(), v.clone());
    }

    let container = Container {
        name: "broker".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_owned()),
        // $(POD_NAME) is expanded by the kubelet, so each ordinal reads its own file.
        args: Some(vec!["-c".into(), format!("{CONFIG_DIR}/$(POD_NAME).conf")]),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(
            broker_ports(spec.mode)
                .into_iter()
                .map(|(n, p)| ContainerPort {
                    name: Some(n.into()),
                    container_port: p,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        resources: spec.resources.clone(),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        // Generous: recovery of a large commit log must not be mistaken for a hang.
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(30),
            ..http_probe("/healthz", 10, 6)
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..Default::default()
            },
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map(&id.name),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        affinity: overrides.affinity.clone(),
        tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
        node_selector: (!overrides.node_selector.is_empty())
            .then(|| overrides.node_selector.clone()),
        priority_class_name: overrides.priority_class_name.clone(),
        security_context: Some(
            overrides
                .security_context
                .clone()
                .unwrap_or_else(default_pod_security),
        ),
        termination_grace_period_seconds: Some(60),
        ..Default::default()
    };

    let mut requests = BTreeMap::new();
    requests.insert("storage".to_owned(), Quantity(spec.storage.size.clone()));
    let pvc = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(broker_selector(&id.name)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    StatefulSet {
        metadata: meta(bg, id, id.name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(headless_service(&id.name)),
            // Brokers do not need ordered start-up, and Raft peers must start together.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(broker_selector(&id.name)),
                ..Default::default()
            },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(broker_labels(&id.name, &spec.cluster_name)),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![pvc]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;
    use crate::crd::{BrokerGroup, BrokerGroupStatus};
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn objects(yaml: &str) -> BrokerGroupObjects {
        build_broker_group(&fixtures::group(yaml)).expect("builds")
    }

    fn pod_spec(sts: &StatefulSet) -> &PodSpec {
        sts.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }

    #[test]
    fn statefulset_is_on_delete_with_pvc_probes_and_labels() {
        let o = objects(fixtures::MASTER_SLAVE);
        let sts = &o.statefulset;
        let s = sts.spec.as_ref().expect("spec");
        assert_eq!(sts.metadata.name.as_deref(), Some("orders"));
        assert_eq!(s.replicas, Some(3));
        assert_eq!(s.service_name.as_deref(), Some("orders-headless"));
        assert_eq!(
            s.update_strategy.as_ref().and_then(|u| u.type_.as_deref()),
            Some("OnDelete")
        );
        let pvc = &s.volume_claim_templates.as_ref().expect("pvc")[0];
        let pvc_spec = pvc.spec.as_ref().expect("pvc spec");
        assert_eq!(pvc_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            pvc_spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .map(|r| r["storage"].0.clone()),
            Some("20Gi".into())
        );
        let labels = s
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .expect("labels");
        assert_eq!(labels["app.kubernetes.io/name"], "ferrum-broker");
        assert_eq!(labels["app.kubernetes.io/instance"], "orders");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "ferrum-operator");
        assert_eq!(labels[CLUSTER_LABEL], "prod");
        assert!(
            !labels.contains_key(ROLE_LABEL),
            "the role label is per pod, not per template"
        );
        let ann = s
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .expect("ann");
        assert_eq!(ann[CONFIG_HASH_ANNOTATION].len(), 16);
        let c = &pod_spec(sts).containers[0];
        assert_eq!(c.image.as_deref(), Some("ferrum/broker:1.0"));
        assert_eq!(
            c.args.as_ref().expect("args")[1],
            "/etc/ferrum/$(POD_NAME).conf"
        );
        let ready = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("probe");
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(ready.port, IntOrString::String("health".into()));
        assert!(c.liveness_probe.is_some());
        let psc = pod_spec(sts).security_context.as_ref().expect("psc");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            sts.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].kind.clone()),
            Some("BrokerGroup".into())
        );
        assert!(o.external.is_empty());
    }

    #[test]
    fn pod_overrides_are_applied() {
        let yaml = format!(
            "{}\npod:\n  priorityClassName: brokers\n  nodeSelector: {{ disk: ssd }}\n  tolerations: [{{ key: dedicated, operator: Exists }}]\n  securityContext: {{ runAsUser: 4242 }}\n",
            fixtures::MASTER_SLAVE
        );
        let o = objects(&yaml);
        let p = pod_spec(&o.statefulset);
        assert_eq!(p.priority_class_name.as_deref(), Some("brokers"));
        assert_eq!(
            p.node_selector.as_ref().map(|n| n["disk"].clone()),
            Some("ssd".into())
        );
        assert_eq!(p.tolerations.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            p.security_context.as_ref().and_then(|s| s.run_as_user),
            Some(4242)
        );
    }

    #[test]
    fn services_and_pdb() {
        let o = objects(fixtures::RAFT);
        let h = o.headless.spec.as_ref().expect("spec");
        assert_eq!(h.cluster_ip.as_deref(), Some("None"));
        assert_eq!(h.publish_not_ready_addresses, Some(true));
        assert!(
            h.ports
                .as_ref()
                .expect("ports")
                .iter()
                .any(|p| p.port == RAFT_PORT)
        );
        let m = o.master.spec.as_ref().expect("spec");
        assert_eq!(o.master.metadata.name.as_deref(), Some("orders-master"));
        assert_eq!(
            m.selector.as_ref().map(|s| s[ROLE_LABEL].clone()),
            Some("master".into())
        );
        let master_ports: Vec<i32> = m.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(master_ports, vec![BROKER_PORT, BROKER_PORT - 2, HA_PORT]);
        let pdb = o.pdb.spec.as_ref().expect("spec");
        assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            pdb.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
    }

    fn template_annotations(bg: &BrokerGroup) -> BTreeMap<String, String> {
        build_broker_group(bg)
            .expect("builds")
            .statefulset
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .unwrap_or_default()
    }

    #[test]
    fn roll_triggers_change_the_pod_template() {
        let base = fixtures::group(fixtures::MASTER_SLAVE);
        let before = template_annotations(&base);
        assert!(!before.contains_key(crate::roll::ROLL_ANNOTATION));
        // The manual-roll annotation on the group is copied into the template.
        let mut manual = base.clone();
        manual
            .annotations_mut()
            .insert(crate::roll::ROLL_ANNOTATION.into(), "2026-11-24".into());
        assert_eq!(
            template_annotations(&manual)[crate::roll::ROLL_ANNOTATION],
            "2026-11-24"
        );
        // A config change moves the hash; image and resources are in the template itself.
        let mut conf = base.clone();
        conf.spec
            .broker_config
            .insert("fileReservedTime".into(), "48".into());
        assert_ne!(
            template_annotations(&conf)[CONFIG_HASH_ANNOTATION],
            before[CONFIG_HASH_ANNOTATION]
        );
        let mut image = base.clone();
        image.spec.image = "ferrum/broker:2.0".into();
        let sts = build_broker_group(&image).expect("builds").statefulset;
        assert_eq!(
            pod_spec(&sts).containers[0].image.as_deref(),
            Some("ferrum/broker:2.0")
        );
        // New resources change the template the StatefulSet derives its update revision from.
        let template = |g: &BrokerGroup| {
            build_broker_group(g)
                .expect("builds")
                .statefulset
                .spec
                .expect("spec")
                .template
        };
        let mut resources = base.clone();
        let wanted: ResourceRequirements = serde_json::from_value(serde_json::json!({
            "requests": { "cpu": "1500m", "memory": "3Gi" },
            "limits": { "memory": "3Gi" }
        }))
        .expect("resources");
        resources.spec.resources = Some(wanted.clone());
        let changed = template(&resources);
        assert_ne!(changed, template(&base));
        let container = &changed.spec.as_ref().expect("pod spec").containers[0];
        assert_eq!(container.resources.as_ref(), Some(&wanted));
        // A promotion alone restarts nothing: the hash ignores who is master.
        let mut promoted = base.clone();
        promoted.status = Some(BrokerGroupStatus {
            master_ordinal: Some(2),
            ..Default::default()
        });
        assert_eq!(
            template_annotations(&promoted)[CONFIG_HASH_ANNOTATION],
            before[CONFIG_HASH_ANNOTATION]
        );
    }

    #[test]
    fn external_access_adds_a_service_per_pod() {
        let yaml = format!(
            "{}\nexternalAccess: {{ type: LoadBalancer }}\n",
            fixtures::RAFT
        );
        let o = objects(&yaml);
        assert_eq!(o.external.len(), 3);
        let s = o.external[2].spec.as_ref().expect("spec");
        assert_eq!(s.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            s.selector
                .as_ref()
                .map(|x| x["statefulset.kubernetes.io/pod-name"].clone()),
            Some("orders-2".into())
        );
    }

    #[test]
    fn master_ordinal_comes_from_status_and_is_bounded() {
        let mut bg = fixtures::group(fixtures::MASTER_SLAVE);
        bg.status = Some(BrokerGroupStatus {
            master_ordinal: Some(1),
            ..Default::default()
        });
        let cm = build_broker_group(&bg).expect("builds").config;
        assert!(cm.data.as_ref().expect("data")["orders-1.conf"].contains("brokerId=0\n"));
        bg.status = Some(BrokerGroupStatus {
            master_ordinal: Some(9),
            ..Default::default()
        });
        let cm = build_broker_group(&bg).expect("builds").config;
        assert!(cm.data.as_ref().expect("data")["orders-0.conf"].contains("brokerId=0\n"));
    }
}
