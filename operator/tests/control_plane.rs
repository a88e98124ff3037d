//! Admission checks of the CRDs against a real kube-apiserver.
//!
//! Needs a control plane: `hack/k8s/build.sh && hack/k8s/up.sh`, then
//! `FERRUM_KUBECONFIG=... [FERRUM_KUBECTL=...] cargo test -p ferrum-operator --test control_plane`
//! (or `make k8s-test`). Without FERRUM_KUBECONFIG the test says so and passes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferrum_operator::crd::{BrokerGroup, BrokerGroupSpec};
use ferrum_operator::leader::LeaderElector;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

struct Cluster {
    kubeconfig: String,
    kubectl: String,
    namespace: String,
}

impl Cluster {
    fn from_env() -> Option<Cluster> {
        let kubeconfig = std::env::var("FERRUM_KUBECONFIG").ok()?;
        let kubectl = std::env::var("FERRUM_KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let namespace = format!("ferrum-it-{}-{nanos}", std::process::id());
        Some(Cluster {
            kubeconfig,
            kubectl,
            namespace,
        })
    }

    /// Runs kubectl, feeding `stdin`; returns (success, stdout + stderr).
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl starts (set FERRUM_KUBECTL)");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        let out = child.wait_with_output().expect("kubectl finishes");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Installs the CRDs and a namespace of this test's own.
    fn setup(&self) {
        let c = self;
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/ferrum.dev.yaml");
        let (ok, out) = c.kubectl(&["apply", "--server-side", "-f", crds], None);
        assert!(ok, "CRDs apply: {out}");
        // `kubectl wait` errors out instead of waiting while a fresh CRD has no conditions
        // yet, so it is retried a bounded number of times.
        let mut established = (false, String::new());
        for _ in 0..30 {
            established = c.kubectl(
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd/brokergroups.ferrum.dev",
                    "crd/topics.ferrum.dev",
                ],
                None,
            );
            if established.0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(established.0, "CRDs established: {}", established.1);
        let (ok, out) = c.kubectl(&["create", "namespace", &c.namespace], None);
        assert!(ok, "namespace: {out}");
    }

    async fn client(&self) -> kube::Client {
        let config = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    fn apply(&self, yaml: &str) -> (bool, String) {
        self.kubectl(&["apply", "-n", &self.namespace, "-f", "-"], Some(yaml))
    }

    fn must_apply(&self, yaml: &str) {
        let (ok, out) = self.apply(yaml);
        assert!(ok, "expected the apiserver to accept:\n{yaml}\n{out}");
    }

    fn must_reject(&self, yaml: &str, why: &str) {
        let (ok, out) = self.apply(yaml);
        assert!(!ok, "expected a rejection ({why}), got:\n{out}");
        assert!(
            out.contains(why),
            "rejection should say {why:?}, said:\n{out}"
        );
    }
}

fn broker_group(name: &str, mode: &str, replicas: i32, size: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: ferrum.dev/v1alpha1
kind: BrokerGroup
metadata: {{ name: {name} }}
spec:
  clusterName: it
  mode: {mode}
  replicas: {replicas}
  image: ferrum/broker:it
  storage: {{ size: {size} }}
  nameServer: {{ image: ferrum/namesrv:it }}
{extra}"#
    )
}

#[tokio::test]
async fn crds_refuse_impossible_specs_and_accept_valid_ones() {
    let Some(c) = Cluster::from_env() else {
        eprintln!(
            "SKIPPED control_plane: FERRUM_KUBECONFIG is not set (start one with hack/k8s/up.sh)"
        );
        return;
    };
    c.setup();

    c.must_reject(&broker_group("even", "Raft", 4, "10Gi", ""), "odd number");
    c.must_reject(&broker_group("small", "Raft", 1, "10Gi", ""), "odd number");
    c.must_reject(
        &broker_group("unknown", "MasterSlave", 2, "10Gi", "  bogus: 1\n"),
        "unknown field",
    );
    c.must_reject(
        &broker_group("badsize", "MasterSlave", 2, "lots", ""),
        "quantity",
    );
    c.must_reject(
        &broker_group("raftpromote", "Raft", 3, "10Gi", "  promote: 1\n"),
        "only for MasterSlave",
    );

    c.must_apply(&broker_group("orders", "MasterSlave", 2, "20Gi", ""));
    c.must_reject(
        &broker_group("orders", "Raft", 3, "20Gi", ""),
        "cannot be switched",
    );
    c.must_reject(
        &broker_group("orders", "MasterSlave", 2, "10Gi", ""),
        "cannot shrink",
    );
    c.must_apply(&broker_group("orders", "MasterSlave", 2, "30Gi", ""));
    c.must_apply(&broker_group(
        "orders",
        "MasterSlave",
        2,
        "30Gi",
        "  promote: 1\n",
    ));

    let (ok, out) = c.kubectl(&["get", "brokergroups", "-n", &c.namespace], None);
    assert!(
        ok && out.contains("MODE") && out.contains("MasterSlave"),
        "{out}"
    );

    let topic = |perm: i32| {
        format!(
            "apiVersion: ferrum.dev/v1alpha1\nkind: Topic\nmetadata: {{ name: t1 }}\nspec: {{ clusterName: it, perm: {perm}, topicName: Orders_Topic }}\n"
        )
    };
    c.must_reject(&topic(5), "perm must be");
    c.must_apply(&topic(6));

    // The Rust types round-trip through the real apiserver, defaults included.
    let client = c.client().await;
    let api: Api<BrokerGroup> = Api::namespaced(client, &c.namespace);
    let spec: BrokerGroupSpec = serde_yaml::from_str(
        "clusterName: it\nmode: Raft\nreplicas: 3\nimage: ferrum/broker:it\nstorage: { size: 5Gi }\nnameServer: { image: ferrum/namesrv:it }\n",
    )
    .expect("spec");
    let created = tokio::time::timeout(
        Duration::from_secs(30),
        api.create(
            &PostParams::default(),
            &BrokerGroup::new("raft", spec.clone()),
        ),
    )
    .await
    .expect("create in time")
    .expect("created");
    assert_eq!(created.spec, spec);

    let (ok, out) = c.kubectl(&["delete", "namespace", &c.namespace, "--wait=false"], None);
    assert!(ok, "cleanup: {out}");
}

/// One reconcile pass creates every object of a group with owner references, writes status,
/// and kube-controller-manager's garbage collector removes the objects with the group.
#[tokio::test]
async fn reconcile_creates_owned_objects_and_deletion_collects_them() {
    let Some(c) = Cluster::from_env() else {
        eprintln!(
            "SKIPPED control_plane: FERRUM_KUBECONFIG is not set (start one with hack/k8s/up.sh)"
        );
        return;
    };
    c.setup();
    let client = c.client().await;
    let ns = c.namespace.as_str();
    let api: Api<BrokerGroup> = Api::namespaced(client.clone(), ns);
    let spec: BrokerGroupSpec = serde_yaml::from_str(
        "clusterName: rc\nmode: MasterSlave\nreplicas: 2\nimage: ferrum/broker:it\nstorage: { size: 1Gi }\nnameServer: { replicas: 2, image: ferrum/namesrv:it }\n",
    )
    .expect("spec");
    let bg = api
        .create(&PostParams::default(), &BrokerGroup::new("orders", spec))
        .await
        .expect("created");
    let ctx = std::sync::Arc::new(ferrum_operator::controller::Context::new(client.clone()));
    tokio::time::timeout(
        Duration::from_secs(60),
        ferrum_operator::controller::reconcile(std::sync::Arc::new(bg), ctx),
    )
    .await
    .expect("reconcile in time")
    .expect("reconcile succeeds");

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let svc: Api<Service> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let s = sts.get("orders").await.expect("statefulset");
    assert_eq!(
        s.spec
            .as_ref()
            .and_then(|x| x.update_strategy.as_ref())
            .and_then(|u| u.type_.clone()),
        Some("OnDelete".into())
    );
    for name in [
        "orders-headless",
        "orders-master",
        "rc-namesrv",
        "rc-namesrv-0",
        "rc-namesrv-1",
    ] {
        svc.get(name)
            .await
            .unwrap_or_else(|e| panic!("service {name}: {e}"));
    }
    let cm = cms.get("orders-config").await.expect("configmap");
    let conf = cm.data.unwrap_or_default();
    assert!(conf["orders-1.conf"].contains("brokerRole=SLAVE"));
    pdbs.get("orders").await.expect("pdb");
    deps.get("rc-namesrv-0").await.expect("namesrv deployment");

    // Growing storage must not trip over the StatefulSet's immutable volumeClaimTemplates.
    let patch = serde_json::json!({ "spec": { "storage": { "size": "2Gi" } } });
    let grown = api
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("storage grows");
    let ctx = std::sync::Arc::new(ferrum_operator::controller::Context::new(client.clone()));
    tokio::time::timeout(
        Duration::from_secs(60),
        ferrum_operator::controller::reconcile(std::sync::Arc::new(grown), ctx),
    )
    .await
    .expect("reconcile in time")
    .expect("reconcile after growth succeeds");

    let got = api.get("orders").await.expect("group");
    let status = got.status.expect("status written");
    assert_eq!(status.observed_generation, got.metadata.generation);
    assert_eq!(status.master.as_deref(), Some("orders-0"));
    assert!(status.conditions.iter().any(|x| x.type_ == "Ready"));

    // What CEL cannot see ends in Degraded, and nothing is applied for that group.
    let bad: BrokerGroupSpec = serde_yaml::from_str(
        "clusterName: rc\nmode: MasterSlave\nreplicas: 1\nimage: ferrum/broker:it\nstorage: { size: 1Gi }\nnameServer: { replicas: 2, image: ferrum/namesrv:it }\nbrokerConfig: { brokerId: \"3\" }\n",
    )
    .expect("spec");
    let bad = api
        .create(
            &PostParams::default(),
            &BrokerGroup::new("managed-key", bad),
        )
        .await
        .expect("admitted: the key check is the operator's");
    let ctx = std::sync::Arc::new(ferrum_operator::controller::Context::new(client.clone()));
    tokio::time::timeout(
        Duration::from_secs(60),
        ferrum_operator::controller::reconcile(std::sync::Arc::new(bad), ctx),
    )
    .await
    .expect("reconcile in time")
    .expect("an invalid spec is a status, not an error");
    let bad = api.get("managed-key").await.expect("group");
    let degraded = bad
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
        .expect("Degraded condition");
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("brokerConfig.brokerId"),
        "{}",
        degraded.message
    );
    assert!(sts.get_opt("managed-key").await.expect("get").is_none());
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "InvalidSpec"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Applied"), "{reasons:?}");

    api.delete("orders", &Default::default())
        .await
        .expect("delete");
    let gone = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let left = sts.get_opt("orders").await.expect("get").is_some()
                || deps.get_opt("rc-namesrv-0").await.expect("get").is_some();
            if !left {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "garbage collector did not remove the group's objects"
    );
    let (ok, out) = c.kubectl(&["delete", "namespace", &c.namespace, "--wait=false"], None);
    assert!(ok, "cleanup: {out}");
}

/// The controller loop itself picks up a group created with kubectl, with no direct call.
#[tokio::test]
async fn controller_loop_reconciles_a_group_created_with_kubectl() {
    let Some(c) = Cluster::from_env() else {
        eprintln!(
            "SKIPPED control_plane: FERRUM_KUBECONFIG is not set (start one with hack/k8s/up.sh)"
        );
        return;
    };
    c.setup();
    let client = c.client().await;
    let controller = tokio::spawn(ferrum_operator::controller::run(client.clone()));
    c.must_apply(&broker_group("loop", "Raft", 3, "1Gi", ""));

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &c.namespace);
    let groups: Api<BrokerGroup> = Api::namespaced(client.clone(), &c.namespace);
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let has_sts = sts.get_opt("loop").await.expect("get").is_some();
            let observed = groups
                .get("loop")
                .await
                .expect("group")
                .status
                .and_then(|s| s.observed_generation)
                .is_some();
            if has_sts && observed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    controller.abort();
    assert!(
        seen.is_ok(),
        "the controller did not reconcile the new group in time"
    );
    let (ok, out) = c.kubectl(&["delete", "namespace", &c.namespace, "--wait=false"], None);
    assert!(ok, "cleanup: {out}");
}

/// Two candidates: one leads, the other waits, and takes over once the lease expires.
#[tokio::test]
async fn leader_lease_has_one_holder_and_fails_over() {
    let Some(c) = Cluster::from_env() else {
        eprintln!(
            "SKIPPED control_plane: FERRUM_KUBECONFIG is not set (start one with hack/k8s/up.sh)"
        );
        return;
    };
    c.setup();
    let client = c.client().await;
    let api: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client, &c.namespace);
    let lease = Duration::from_secs(2);
    let a = LeaderElector::new(api.clone(), "ferrum-operator", "a", lease);
    let b = LeaderElector::new(api, "ferrum-operator", "b", lease);
    assert!(a.try_lead().await.expect("a tries"), "a leads first");
    assert!(!b.try_lead().await.expect("b tries"), "b waits");
    assert!(a.try_lead().await.expect("a renews"), "a renews");
    // a stops renewing; after the lease duration b takes over and a is out.
    let took_over = tokio::time::timeout(Duration::from_secs(30), async {
        while !b.try_lead().await.expect("b tries") {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(took_over.is_ok(), "b never took over the expired lease");
    assert!(!a.try_lead().await.expect("a tries"), "a no longer leads");
    let (ok, out) = c.kubectl(&["delete", "namespace", &c.namespace, "--wait=false"], None);
    assert!(ok, "cleanup: {out}");
}
