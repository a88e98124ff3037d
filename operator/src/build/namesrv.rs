//! The NameServers of one cluster, shared by all its BrokerGroups.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::*;
use crate::crd::NameServerSpec;

#[derive(Debug, Clone)]
pub struct NameServerObjects {
    /// One per NameServer, each with its own Service, then the cluster-wide Service.
    pub services: Vec<Service>,
    pub deployments: Vec<Deployment>,
}

/// `owners` are every BrokerGroup of the cluster (none of them the controller), so the
/// NameServers are garbage-collected only when the last group of the cluster is deleted.
pub fn build_nameservers(
    cluster: &str,
    namespace: &str,
    spec: &NameServerSpec,
    owners: Vec<OwnerReference>,
) -> NameServerObjects {
    let owners: Vec<OwnerReference> = owners
        .into_iter()
        .map(|mut o| {
            o.controller = Some(false);
            o
        })
        .collect();
    let meta = |name: String, extra: Option<(&str, String)>| {
        let mut labels = namesrv_labels(cluster);
        if let Some((k, v)) = extra {
            labels.insert(k.into(), v);
        }
        ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            owner_references: Some(owners.clone()),
            ..Default::default()
        }
    };
    let svc_port = || ServicePort {
        name: Some("remoting".into()),
        port: NAMESRV_PORT,
        target_port: Some(IntOrString::Int(NAMESRV_PORT)),
        protocol: Some("TCP".into()),
        ..Default::default()
    };

    let mut services = Vec::new();
    let mut deployments = Vec::new();
    for i in 0..spec.replicas {
        let name = namesrv_instance(cluster, i);
        let mut selector = namesrv_selector(cluster);
        selector.insert(NAMESRV_ORDINAL_LABEL.into(), i.to_string());
        services.push(Service {
            metadata: meta(name.clone(), None),
            spec: Some(ServiceSpec {
                selector: Some(selector.clone()),
                ports: Some(vec![svc_port()]),
                ..Default::default()
            }),
            ..Default::default()
        });
        deployments.push(namesrv_deployment(
            meta(name, Some((NAMESRV_ORDINAL_LABEL, i.to_string()))),
            selector,
            spec,
        ));
    }
    services.push(Service {
        metadata: meta(namesrv_service(cluster), None),
        spec: Some(ServiceSpec {
            selector: Some(namesrv_selector(cluster)),
            ports: Some(vec![svc_port()]),
            ..Default::default()
        }),
        ..Default::default()
    });
    NameServerObjects {
        services,
        deployments,
    }
}

fn namesrv_deployment(
    meta: ObjectMeta,
    selector: BTreeMap<String, String>,
    spec: &NameServerSpec,
) -> Deployment {
    let mut pod_labels = meta.labels.clone().unwrap_or_default();
    pod_labels.extend(selector.clone());
    let container = Container {
        name: "namesrv".into(),
        image: Some(spec.image.clone()),
        args: Some(vec![
            "--listen".into(),
            format!("0.0.0.0:{NAMESRV_PORT}"),
            "--metrics-listen".into(),
            format!("0.0.0.0:{HEALTH_PORT}"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("remoting".into()),
                container_port: NAMESRV_PORT,
                ..Default::default()
            },
            ContainerPort {
                name: Some("health".into()),
                container_port: HEALTH_PORT,
                ..Default::default()
            },
        ]),
        resources: spec.resources.clone(),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("remoting".into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
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
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            // One pod per Deployment: never run two copies behind one stable name.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(super::BROKER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_deployment_and_service_per_nameserver_plus_shared_service() {
        let spec = NameServerSpec {
            replicas: 2,
            image: "ferrum/namesrv:1.0".into(),
            resources: None,
        };
        let owner = OwnerReference {
            api_version: "ferrum.dev/v1alpha1".into(),
            kind: "BrokerGroup".into(),
            name: "orders".into(),
            uid: "u1".into(),
            controller: Some(true),
            ..Default::default()
        };
        let o = build_nameservers("prod", "mq", &spec, vec![owner]);
        let names: Vec<_> = o
            .services
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        assert_eq!(
            names,
            vec!["prod-namesrv-0", "prod-namesrv-1", "prod-namesrv"]
        );
        assert_eq!(o.deployments.len(), 2);
        let d = &o.deployments[1];
        let ds = d.spec.as_ref().expect("spec");
        assert_eq!(ds.replicas, Some(1));
        let sel = ds.selector.match_labels.as_ref().expect("selector");
        assert_eq!(sel[NAMESRV_ORDINAL_LABEL], "1");
        let tl = ds
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .expect("labels");
        assert!(
            sel.iter().all(|(k, v)| tl.get(k) == Some(v)),
            "template matches selector"
        );
        let svc_sel = o.services[1]
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .expect("sel");
        assert_eq!(svc_sel, sel);
        let refs = d.metadata.owner_references.as_ref().expect("owners");
        assert_eq!(
            refs[0].controller,
            Some(false),
            "shared objects have no controller owner"
        );
        let args = ds.template.spec.as_ref().expect("pod").containers[0]
            .args
            .clone();
        assert_eq!(
            args,
            Some(vec![
                "--listen".into(),
                "0.0.0.0:9876".into(),
                "--metrics-listen".into(),
                "0.0.0.0:8080".into()
            ])
        );
    }
}
