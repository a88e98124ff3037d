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

/// A real ferrum-namesrv or ferrum-broker on loopback, killed when dropped.
struct Proc {
    child: std::process::Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` from the target directory this test was built into, built first when absent
/// (hack/k8s/test.sh builds both so they are current).
fn binary(package: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target profile directory");
    let path = dir.join(package);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let ok = Command::new(cargo)
            .args(["build", "-p", package])
            .status()
            .expect("cargo build runs");
        assert!(ok.success(), "{package} builds");
    }
    path
}

/// Spawns `cmd` and returns it with the first line it prints on stdout.
fn spawn_with_first_line(mut cmd: Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("process printed its start line");
    (child, line)
}

fn start_namesrv() -> Proc {
    let mut cmd = Command::new(binary("ferrum-namesrv"));
    cmd.args(["--listen", "127.0.0.1:0"]);
    let (child, line) = spawn_with_first_line(cmd);
    let addr = line.rsplit(' ').next().expect("address").to_owned();
    Proc { child, addr }
}

fn start_broker(store: &std::path::Path, namesrv: &str, cluster: &str, name: &str) -> Proc {
    start_broker_with(store, namesrv, cluster, name, &[])
}

/// A broker with more `key=value` settings (role, id, ...).
fn start_broker_with(
    store: &std::path::Path,
    namesrv: &str,
    cluster: &str,
    name: &str,
    extra: &[&str],
) -> Proc {
    let mut cmd = Command::new(binary("ferrum-broker"));
    cmd.args(["-n", namesrv]);
    for set in [
        "listenPort=0".to_owned(),
        "bindAddress=127.0.0.1".to_owned(),
        format!("storePathRootDir={}", store.display()),
        "mappedFileSizeCommitLog=1048576".to_owned(),
        "metricsPort=0".to_owned(),
        "haListenPort=0".to_owned(),
        format!("brokerName={name}"),
        format!("brokerClusterName={cluster}"),
    ]
    .into_iter()
    .chain(extra.iter().map(|s| (*s).to_owned()))
    {
        cmd.args(["--set", &set]);
    }
    let (child, line) = spawn_with_first_line(cmd);
    // "ferrum-broker <name> listening on A (VIP B), advertised as C"
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("address in the start line")
        .to_owned();
    Proc { child, addr }
}

/// Polls `probe` every 200 ms until it returns `Some`, or fails after `limit` saying `what`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(limit, async {
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn topic_yaml(name: &str, cluster: &str, topic: &str, queues: i32) -> String {
    format!(
        "apiVersion: ferrum.dev/v1alpha1\nkind: Topic\nmetadata: {{ name: {name} }}\nspec: {{ clusterName: {cluster}, topicName: {topic}, readQueueNums: {queues}, writeQueueNums: {queues} }}\n"
    )
}

/// The Topic controller against real brokers: create, change, drift repair, a group that
/// joins later, delete (gone from brokers and NameServer) and detach (kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_lifecycle_on_real_brokers() {
    use ferrum_client::{Admin, ClientError};
    use ferrum_operator::crd::Topic;
    use ferrum_operator::topic_controller::{self, NamesrvOverrides};

    let Some(c) = Cluster::from_env() else {
        eprintln!(
            "SKIPPED control_plane: FERRUM_KUBECONFIG is not set (start one with hack/k8s/up.sh)"
        );
        return;
    };
    c.setup();
    const CLUSTER: &str = "tcluster";
    let namesrv = start_namesrv();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let broker_a = start_broker(dir_a.path(), &namesrv.addr, CLUSTER, "tc-a");
    let admin = Admin::new([namesrv.addr.as_str()]);
    let step = Duration::from_secs(30);
    eventually(step, "broker a registered", || async {
        let m = admin.master_addrs(Some(CLUSTER)).await.ok()?;
        (m.len() == 1).then_some(())
    })
    .await;

    let client = c.client().await;
    let ctx = ferrum_operator::controller::Context::new(client.clone()).with_namesrv_overrides(
        NamesrvOverrides::parse(&[format!("{CLUSTER}={}", namesrv.addr)]).expect("override"),
    );
    let controller = tokio::spawn({
        let ctx = ctx.clone();
        let ns = c.namespace.clone();
        async move { topic_controller::run_namespaced(ctx, &ns).await }
    });
    let topics: Api<Topic> = Api::namespaced(client.clone(), &c.namespace);

    // Impossible specs never reach the reconciler.
    c.must_reject(
        &topic_yaml("zero", CLUSTER, "ZeroTopic", 0),
        "greater than or equal to 1",
    );
    c.must_reject(&topic_yaml("bad-name", CLUSTER, "Bad/Name", 4), "topicName");

    c.must_apply(&topic_yaml("orders", CLUSTER, "OrdersTopic", 4));
    let on_a = |queues: i32| {
        let admin = admin.clone();
        let addr = broker_a.addr.clone();
        move || {
            let admin = admin.clone();
            let addr = addr.clone();
            async move {
                let t = admin.topic_config(&addr, "OrdersTopic").await.ok()??;
                (t.write_queue_nums == queues && t.read_queue_nums == queues).then_some(())
            }
        }
    };
    eventually(step, "OrdersTopic with 4 queues on broker a", on_a(4)).await;
    let ready = |generation_at_least: i64| {
        let topics = topics.clone();
        move || {
            let topics = topics.clone();
            async move {
                let t = topics.get("orders").await.ok()?;
                let st = t.status?;
                let ok = st.observed_generation >= Some(generation_at_least)
                    && st
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                ok.then_some(st)
            }
        }
    };
    let st = eventually(step, "orders Ready", ready(1)).await;
    assert_eq!(st.brokers, vec!["tc-a"]);
    let route = admin
        .namesrv()
        .topic_route("OrdersTopic")
        .await
        .expect("route");
    assert!(route.queue_datas.iter().any(|q| q.broker_name == "tc-a"));
    let got = topics.get("orders").await.expect("topic");
    assert!(
        got.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&topic_controller::TOPIC_FINALIZER.to_owned())
    );

    // A spec change reaches the broker.
    c.must_apply(&topic_yaml("orders", CLUSTER, "OrdersTopic", 8));
    eventually(step, "OrdersTopic with 8 queues on broker a", on_a(8)).await;
    eventually(step, "orders Ready at generation 2", ready(2)).await;

    // Drift made behind the operator's back is repaired by the next pass.
    let mut drifted = ferrum_protocol::route::TopicConfig::new("OrdersTopic", 2);
    drifted.perm = 6;
    admin
        .create_topic(&broker_a.addr, &drifted)
        .await
        .expect("drift");
    let current = topics.get("orders").await.expect("topic");
    topic_controller::reconcile(
        std::sync::Arc::new(current),
        std::sync::Arc::new(ctx.clone()),
    )
    .await
    .expect("resync pass");
    eventually(step, "drift repaired on broker a", on_a(8)).await;

    // A broker group that joins later gets the topic; a BrokerGroup event triggers the pass.
    let broker_b = start_broker(dir_b.path(), &namesrv.addr, CLUSTER, "tc-b");
    eventually(step, "broker b registered", || async {
        let m = admin.master_addrs(Some(CLUSTER)).await.ok()?;
        (m.len() == 2).then_some(())
    })
    .await;
    c.must_apply(
        &broker_group("late", "MasterSlave", 1, "1Gi", "")
            .replace("clusterName: it", &format!("clusterName: {CLUSTER}")),
    );
    eventually(step, "OrdersTopic on broker b", || async {
        admin
            .topic_config(&broker_b.addr, "OrdersTopic")
            .await
            .ok()?
            .filter(|t| t.write_queue_nums == 8)
    })
    .await;
    eventually(step, "route lists both groups", || async {
        let r = admin.namesrv().topic_route("OrdersTopic").await.ok()?;
        (r.queue_datas.len() == 2).then_some(())
    })
    .await;

    // Per-replica status comes from the NameServer and the broker: a BrokerGroup named like
    // the registered broker sees its replica 0 registered as master.
    let groups: Api<BrokerGroup> = Api::namespaced(client.clone(), &c.namespace);
    let spec: BrokerGroupSpec = serde_yaml::from_str(&format!(
        "clusterName: {CLUSTER}\nmode: MasterSlave\nreplicas: 2\nimage: ferrum/broker:it\nstorage: {{ size: 1Gi }}\nnameServer: {{ image: ferrum/namesrv:it }}\n"
    ))
    .expect("spec");
    let bg = groups
        .create(&PostParams::default(), &BrokerGroup::new("tc-a", spec))
        .await
        .expect("group tc-a");
    tokio::time::timeout(
        Duration::from_secs(60),
        ferrum_operator::controller::reconcile(
            std::sync::Arc::new(bg),
            std::sync::Arc::new(ctx.clone()),
        ),
    )
    .await
    .expect("reconcile in time")
    .expect("an unreachable replica is a status, not an error");
    let st = groups
        .get("tc-a")
        .await
        .expect("group")
        .status
        .expect("status");
    assert_eq!(st.master.as_deref(), Some("tc-a-0"));
    assert_eq!(st.replicas.len(), 2, "{st:?}");
    assert!(st.replicas[0].registered, "{st:?}");
    assert_eq!(
        st.replicas[0].role,
        ferrum_operator::crd::ReplicaRole::Master
    );
    assert!(!st.replicas[1].registered, "{st:?}");
    assert_eq!(
        st.replicas[1].role,
        ferrum_operator::crd::ReplicaRole::Unknown
    );

    // Deleting the object deletes the topic from every master and the NameServer.
    let (ok, out) = c.kubectl(
        &[
            "delete",
            "topic",
            "orders",
            "-n",
            &c.namespace,
            "--timeout=60s",
        ],
        None,
    );
    assert!(ok, "delete: {out}");
    for addr in [&broker_a.addr, &broker_b.addr] {
        assert_eq!(
            admin
                .topic_config(addr, "OrdersTopic")
                .await
                .expect("config"),
            None,
            "OrdersTopic still on {addr}"
        );
    }
    let route = admin.namesrv().topic_route("OrdersTopic").await;
    assert!(
        matches!(route, Err(ClientError::TopicNotExist(_))),
        "route after delete: {route:?}"
    );

    // A detached Topic's deletion leaves the RocketMQ topic alone.
    c.must_apply(&topic_yaml("kept", CLUSTER, "KeptTopic", 2));
    eventually(step, "KeptTopic on broker a", || async {
        admin.topic_config(&broker_a.addr, "KeptTopic").await.ok()?
    })
    .await;
    let (ok, out) = c.kubectl(
        &[
            "annotate",
            "topic",
            "kept",
            "-n",
            &c.namespace,
            "ferrum.dev/detach=true",
        ],
        None,
    );
    assert!(ok, "annotate: {out}");
    let (ok, out) = c.kubectl(
        &[
            "delete",
            "topic",
            "kept",
            "-n",
            &c.namespace,
            "--timeout=60s",
        ],
        None,
    );
    assert!(ok, "delete detached: {out}");
    assert!(topics.get_opt("kept").await.expect("get").is_none());
    for addr in [&broker_a.addr, &broker_b.addr] {
        assert!(
            admin
                .topic_config(addr, "KeptTopic")
                .await
                .expect("config")
                .is_some(),
            "KeptTopic gone from {addr}"
        );
    }
    admin
        .namesrv()
        .topic_route("KeptTopic")
        .await
        .expect("KeptTopic still routed");

    controller.abort();
    let (ok, out) = c.kubectl(&["delete", "namespace", &c.namespace, "--wait=false"], None);
    assert!(ok, "cleanup: {out}");
}

/// Manual promotion on real brokers: refused while the master lives, carried out through
/// FERRUM_PROMOTE_BROKER once it is gone, recorded in status, and never repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_promotion_on_real_brokers() {
    use ferrum_client::Admin;
    use ferrum_operator::crd::ReplicaRole;
    use ferrum_operator::topic_controller::NamesrvOverrides;

    let Some(c) = Cluster::from_env() else {
        eprintln!(
            "SKIPPED control_plane: FERRUM_KUBECONFIG is not set (start one with hack/k8s/up.sh)"
        );
        return;
    };
    c.setup();
    const CLUSTER: &str = "pcluster";
    let namesrv = start_namesrv();
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let common = [
        "registerNameServerPeriod=1000",
        "ferrumSlaveSyncInterval=300",
    ];
    let mut master = Some(start_broker_with(
        dirs[0].path(),
        &namesrv.addr,
        CLUSTER,
        "pg",
        &[&common[..], &["brokerRole=ASYNC_MASTER", "brokerId=0"]].concat(),
    ));
    let slave = start_broker_with(
        dirs[1].path(),
        &namesrv.addr,
        CLUSTER,
        "pg",
        &[&common[..], &["brokerRole=SLAVE", "brokerId=1"]].concat(),
    );
    let admin = Admin::new([namesrv.addr.as_str()]);
    let step = Duration::from_secs(30);
    let ids = |admin: Admin| async move {
        let info = admin.namesrv().cluster_info().await.ok()?;
        Some(
            info.broker_addr_table
                .get("pg")?
                .broker_addrs
                .keys()
                .copied()
                .collect::<Vec<i64>>(),
        )
    };
    eventually(step, "master and slave registered", || async {
        (ids(admin.clone()).await? == vec![0, 1]).then_some(())
    })
    .await;

    let client = c.client().await;
    let ctx = std::sync::Arc::new(
        ferrum_operator::controller::Context::new(client.clone()).with_namesrv_overrides(
            NamesrvOverrides::parse(&[format!("{CLUSTER}={}", namesrv.addr)]).expect("override"),
        ),
    );
    let groups: Api<BrokerGroup> = Api::namespaced(client.clone(), &c.namespace);
    let spec: BrokerGroupSpec = serde_yaml::from_str(&format!(
        "clusterName: {CLUSTER}\nmode: MasterSlave\nreplicas: 2\nimage: ferrum/broker:it\nstorage: {{ size: 1Gi }}\nnameServer: {{ image: ferrum/namesrv:it }}\n"
    ))
    .expect("spec");
    groups
        .create(&PostParams::default(), &BrokerGroup::new("pg", spec))
        .await
        .expect("group pg");
    let pass = || {
        let groups = groups.clone();
        let ctx = ctx.clone();
        async move {
            let bg = groups.get("pg").await.expect("group");
            tokio::time::timeout(
                Duration::from_secs(60),
                ferrum_operator::controller::reconcile(std::sync::Arc::new(bg), ctx),
            )
            .await
            .expect("reconcile in time")
            .expect("reconcile is not an error");
            groups
                .get("pg")
                .await
                .expect("group")
                .status
                .expect("status")
        }
    };
    let degraded = |st: &ferrum_operator::crd::BrokerGroupStatus| {
        st.conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .map(|c| (c.status.clone(), c.message.clone()))
            .unwrap_or_default()
    };

    let st = eventually(step, "master and slave seen with their roles", || async {
        let st = pass().await;
        let roles: Vec<ReplicaRole> = st.replicas.iter().map(|r| r.role).collect();
        (roles == vec![ReplicaRole::Master, ReplicaRole::Slave]).then_some(st)
    })
    .await;
    assert_eq!(st.master.as_deref(), Some("pg-0"));
    assert!(st.replicas.iter().all(|r| r.registered), "{st:?}");
    assert!(st.replicas[1].replication_lag_bytes.is_some(), "{st:?}");

    // The documented command: kubectl patch brokergroup pg --type merge -p '{"spec":{"promote":1}}'
    let (ok, out) = c.kubectl(
        &[
            "patch",
            "brokergroup",
            "pg",
            "-n",
            &c.namespace,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"promote":1}}"#,
        ],
        None,
    );
    assert!(ok, "patch: {out}");
    // While the master lives the broker refuses, and the operator says so.
    let st = pass().await;
    let (status, message) = degraded(&st);
    assert_eq!(status, "True", "{st:?}");
    assert!(
        message.contains("pg-1") && message.contains("live"),
        "{message}"
    );
    assert_eq!(st.master.as_deref(), Some("pg-0"));

    // The master dies; the NameServer drops it when its connection closes.
    drop(master.take());
    eventually(step, "master dropped from the NameServer", || async {
        (ids(admin.clone()).await? == vec![1]).then_some(())
    })
    .await;
    let st = pass().await;
    assert_eq!(st.master_ordinal, Some(1), "{st:?}");
    assert_eq!(degraded(&st).0, "False", "{st:?}");
    let promoted = admin
        .broker_replica_status(&slave.addr)
        .await
        .expect("replica status");
    assert!(promoted.role.ends_with("MASTER"), "{promoted:?}");
    assert_eq!(promoted.broker_id, 0);
    let epoch = promoted.epoch;

    // The promoted broker re-registers as brokerId 0 and status follows; later passes
    // promote nothing more.
    let st = eventually(step, "pg-1 reported as master", || async {
        let st = pass().await;
        (st.replicas.get(1).map(|r| r.role) == Some(ReplicaRole::Master)).then_some(st)
    })
    .await;
    assert_eq!(st.master.as_deref(), Some("pg-1"));
    assert_eq!(st.replicas[1].epoch, Some(epoch));
    assert_eq!(
        admin
            .broker_replica_status(&slave.addr)
            .await
            .expect("replica status")
            .epoch,
        epoch,
        "no second promotion"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), &c.namespace);
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "Promoted"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r == "PromotionRefused"),
        "{reasons:?}"
    );

    let (ok, out) = c.kubectl(&["delete", "namespace", &c.namespace, "--wait=false"], None);
    assert!(ok, "cleanup: {out}");
}

/// A rolling restart against the real StatefulSet controller (no kubelet: pods are created but
/// never run). Changing the image gives the StatefulSet a new update revision; the operator
/// evicts one outdated pod (unready pods first), records the roll in status with an Event,
/// then waits for the recreated pod to become Ready instead of taking a second pod down. The
/// roll pause annotation holds it; the manual-roll annotation gives a new revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_change_rolls_one_pod_and_records_it() {
    use ferrum_operator::roll::{REVISION_LABEL, ROLL_ANNOTATION, ROLL_PAUSE_ANNOTATION};
    use ferrum_operator::topic_controller::NamesrvOverrides;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;

    let Some(c) = Cluster::from_env() else {
        eprintln!(
            "SKIPPED control_plane: FERRUM_KUBECONFIG is not set (start one with hack/k8s/up.sh)"
        );
        return;
    };
    c.setup();
    let client = c.client().await;
    let ns = c.namespace.as_str();
    // Port 1 refuses at once: no broker answers, as with pods that never run.
    let ctx = std::sync::Arc::new(
        ferrum_operator::controller::Context::new(client.clone()).with_namesrv_overrides(
            NamesrvOverrides::parse(&["rl=127.0.0.1:1"]).expect("override"),
        ),
    );
    let groups: Api<BrokerGroup> = Api::namespaced(client.clone(), ns);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let spec: BrokerGroupSpec = serde_yaml::from_str(
        "clusterName: rl\nmode: MasterSlave\nreplicas: 2\nimage: ferrum/broker:a\nstorage: { size: 1Gi }\nnameServer: { replicas: 1, image: ferrum/namesrv:it }\n",
    )
    .expect("spec");
    groups
        .create(&PostParams::default(), &BrokerGroup::new("roll", spec))
        .await
        .expect("group");
    let pass = || {
        let groups = groups.clone();
        let ctx = ctx.clone();
        async move {
            let bg = groups.get("roll").await.expect("group");
            tokio::time::timeout(
                Duration::from_secs(60),
                ferrum_operator::controller::reconcile(std::sync::Arc::new(bg), ctx),
            )
            .await
            .expect("reconcile in time")
            .expect("reconcile is not an error");
            groups
                .get("roll")
                .await
                .expect("group")
                .status
                .expect("status")
        }
    };
    let step = Duration::from_secs(60);
    let update_revision = |sts: Api<StatefulSet>| async move {
        sts.get("roll")
            .await
            .ok()?
            .status?
            .update_revision
            .filter(|r| !r.is_empty())
    };
    let revisions = |pods: Api<Pod>| async move {
        let mut out = Vec::new();
        for i in 0..2 {
            let p = pods.get_opt(&format!("roll-{i}")).await.ok()??;
            if p.metadata.deletion_timestamp.is_some() {
                return None;
            }
            out.push(p.labels().get(REVISION_LABEL)?.clone());
        }
        Some(out)
    };
    pass().await;
    let first = eventually(step, "an update revision", || update_revision(sts.clone())).await;
    eventually(step, "both pods created at it", || async {
        let r = revisions(pods.clone()).await?;
        r.iter().all(|x| *x == first).then_some(())
    })
    .await;
    let st = pass().await;
    assert_eq!(st.roll, None, "nothing to roll: {st:?}");

    // A new image: a new update revision, and one pod restarted.
    let (ok, out) = c.kubectl(
        &[
            "patch",
            "brokergroup",
            "roll",
            "-n",
            ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"image":"ferrum/broker:b"}}"#,
        ],
        None,
    );
    assert!(ok, "patch: {out}");
    pass().await;
    let second = eventually(step, "a new update revision", || async {
        update_revision(sts.clone()).await.filter(|r| *r != first)
    })
    .await;
    let st = pass().await;
    let roll = st.roll.clone().expect("status.roll while rolling");
    assert_eq!(roll.pod.as_deref(), Some("roll-0"), "{roll:?}");
    assert_eq!(roll.restarted, 1, "{roll:?}");
    assert_eq!(roll.total, 2, "{roll:?}");
    assert!(roll.reason.contains("not Ready"), "{roll:?}");
    assert!(roll.started_at.is_some());
    let progressing = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("Progressing");
    assert_eq!(progressing.status, "True");
    assert_eq!(progressing.reason, "RollingRestart");

    // The StatefulSet controller recreates roll-0 at the new revision; roll-1 is left alone
    // while roll-0 is not Ready.
    eventually(step, "roll-0 recreated at the new revision", || async {
        let r = revisions(pods.clone()).await?;
        (r[0] == second && r[1] == first).then_some(())
    })
    .await;
    let st = pass().await;
    let roll = st.roll.clone().expect("still rolling");
    assert_eq!(roll.pod.as_deref(), Some("roll-0"), "{roll:?}");
    assert_eq!(roll.done, 1, "{roll:?}");
    assert_eq!(roll.restarted, 1, "no second pod taken down: {roll:?}");
    assert!(
        roll.waiting_for
            .as_deref()
            .unwrap_or_default()
            .contains("Ready"),
        "{roll:?}"
    );
    let again = revisions(pods.clone()).await.expect("pods");
    assert_eq!(again[1], first, "roll-1 untouched");

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let restarts: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Restarting"))
        .filter(|e| e.related.as_ref().and_then(|r| r.name.as_deref()) == Some("roll-0"))
        .filter_map(|e| e.note)
        .collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert!(restarts[0].contains("roll-0"), "{restarts:?}");

    // The roll pause annotation stops the roll between pods and says so.
    let (ok, out) = c.kubectl(
        &[
            "annotate",
            "brokergroup",
            "roll",
            "-n",
            ns,
            &format!("{ROLL_PAUSE_ANNOTATION}=true"),
        ],
        None,
    );
    assert!(ok, "annotate: {out}");
    let st = pass().await;
    let roll = st.roll.clone().expect("still rolling");
    assert!(roll.reason.contains("paused"), "{roll:?}");

    // The manual-roll annotation reaches the pod template: a third revision.
    let (ok, out) = c.kubectl(
        &[
            "annotate",
            "brokergroup",
            "roll",
            "-n",
            ns,
            &format!("{ROLL_ANNOTATION}=again"),
        ],
        None,
    );
    assert!(ok, "annotate: {out}");
    pass().await;
    let template = sts
        .get("roll")
        .await
        .expect("sts")
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert_eq!(
        template.get(ROLL_ANNOTATION).map(String::as_str),
        Some("again")
    );
    eventually(step, "a third update revision", || async {
        update_revision(sts.clone())
            .await
            .filter(|r| *r != first && *r != second)
    })
    .await;

    let (ok, out) = c.kubectl(&["delete", "namespace", ns, "--wait=false"], None);
    assert!(ok, "cleanup: {out}");
}

/// A Raft group of three real ferrum-broker processes (dLegerLeaderBrokerIP=localhost, so the
/// leader's brokerId-0 address is `localhost:<port>`) behind a Raft BrokerGroup whose pods the
/// StatefulSet controller creates but no kubelet runs. The operator's own controller loop
/// (namespaced) renders each replica's conf with the master Service as leader address, finds
/// the leader from the replicas' Raft status and keeps the role label on exactly that pod.
/// After SIGKILL of the leader the test marks its pod NotReady, as the kubelet would: the pod
/// watch starts a pass, and the label and status.master follow the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_group_label_follows_the_elected_leader() {
    use ferrum_client::Admin;
    use ferrum_operator::crd::ReplicaRole;
    use ferrum_operator::topic_controller::NamesrvOverrides;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;

    let Some(c) = Cluster::from_env() else {
        eprintln!(
            "SKIPPED control_plane: FERRUM_KUBECONFIG is not set (start one with hack/k8s/up.sh)"
        );
        return;
    };
    c.setup();
    const CLUSTER: &str = "rcluster";
    const GROUP: &str = "rg";
    let ns = c.namespace.clone();
    let namesrv = start_namesrv();
    let ports: Vec<u16> = {
        let l: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        l.iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect()
    };
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";");
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut replicas: Vec<Option<Proc>> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Some(start_broker_with(
                d.path(),
                &namesrv.addr,
                CLUSTER,
                GROUP,
                &[
                    "enableDLegerCommitLog=true",
                    &format!("dLegerPeers={peers}"),
                    &format!("dLegerSelfId=n{i}"),
                    "dLegerLeaderBrokerIP=localhost",
                    "brokerRole=SLAVE",
                    &format!("brokerId={}", i + 1),
                ],
            ))
        })
        .collect();
    let admin = Admin::new([namesrv.addr.as_str()]);
    let step = Duration::from_secs(60);
    // The leader's ordinal as the group itself says: brokerId 0's Raft status.
    let leader_of = |admin: Admin| async move {
        let info = admin.namesrv().cluster_info().await.ok()?;
        let addr = info
            .broker_addr_table
            .get(GROUP)?
            .broker_addrs
            .get(&0)?
            .clone();
        let status = admin.raft_status(&addr).await.ok()?;
        (status.role == "Leader")
            .then(|| ferrum_operator::replicas::raft_ordinal(status.node_id, 3))
            .flatten()
    };
    let leader = eventually(step, "a Raft leader registered as brokerId 0", || {
        leader_of(admin.clone())
    })
    .await;

    let client = c.client().await;
    let ctx = ferrum_operator::controller::Context::new(client.clone()).with_namesrv_overrides(
        NamesrvOverrides::parse(&[format!("{CLUSTER}={}", namesrv.addr)]).expect("override"),
    );
    let controller = {
        let ns = ns.clone();
        tokio::spawn(async move { ferrum_operator::controller::run_namespaced(ctx, &ns).await })
    };
    let groups: Api<BrokerGroup> = Api::namespaced(client.clone(), &ns);
    let spec: BrokerGroupSpec = serde_yaml::from_str(&format!(
        "clusterName: {CLUSTER}\nmode: Raft\nreplicas: 3\nimage: ferrum/broker:it\nstorage: {{ size: 1Gi }}\nnameServer: {{ image: ferrum/namesrv:it }}\n"
    ))
    .expect("spec");
    groups
        .create(&PostParams::default(), &BrokerGroup::new(GROUP, spec))
        .await
        .expect("group rg");

    // What the pods would run with: followers' ids, the master Service as leader address.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let data = eventually(step, "the group's ConfigMap", || async {
        cms.get_opt("rg-config").await.ok().flatten()?.data
    })
    .await;
    for i in 0..3 {
        let conf = &data[&format!("rg-{i}.conf")];
        for line in [
            format!("dLegerLeaderBrokerIP=rg-master.{ns}.svc"),
            format!("brokerIP1=rg-{i}.rg-headless.{ns}.svc"),
            format!("brokerId={}", i + 1),
            "brokerRole=SLAVE".to_owned(),
            format!("dLegerSelfId=n{i}"),
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "rg-{i}.conf lacks {line}:\n{conf}"
            );
        }
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let master_svc = eventually(step, "the master Service", || async {
        svcs.get_opt("rg-master").await.ok().flatten()
    })
    .await;
    assert_eq!(
        master_svc
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get("ferrum.dev/role").cloned())
            .as_deref(),
        Some("master")
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // Exactly `want` carries the role label, and status names it master and leader.
    let labelled = |want: i32| {
        let pods = pods.clone();
        let groups = groups.clone();
        async move {
            let list = pods
                .list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=rg"))
                .await
                .ok()?;
            let mut with_label: Vec<String> = list
                .items
                .iter()
                .filter(|p| p.labels().get("ferrum.dev/role").map(String::as_str) == Some("master"))
                .map(|p| p.name_any())
                .collect();
            with_label.sort();
            let st = groups.get(GROUP).await.ok()?.status?;
            let pod = format!("{GROUP}-{want}");
            (list.items.len() == 3
                && with_label == vec![pod.clone()]
                && st.master.as_deref() == Some(pod.as_str())
                && st.replicas.get(usize::try_from(want).ok()?)?.role == ReplicaRole::Leader
                && st.replicas.get(usize::try_from(want).ok()?)?.registered)
                .then_some(st)
        }
    };
    let st = eventually(step, "the leader's pod labelled and reported", || {
        labelled(leader)
    })
    .await;
    let followers = st
        .replicas
        .iter()
        .filter(|r| r.role == ReplicaRole::Follower && r.registered)
        .count();
    assert_eq!(followers, 2, "{st:?}");

    // SIGKILL of the leader; its pod turns NotReady as a kubelet would report.
    let old = usize::try_from(leader).expect("ordinal");
    drop(replicas[old].take());
    let killed = std::time::Instant::now();
    let not_ready = serde_json::json!({
        "status": { "conditions": [{ "type": "Ready", "status": "False", "reason": "ContainersNotReady" }] }
    });
    pods.patch_status(
        &format!("{GROUP}-{leader}"),
        &PatchParams::default(),
        &Patch::Merge(&not_ready),
    )
    .await
    .expect("pod status patch");
    let new_leader = eventually(step, "a new Raft leader registered", || async {
        leader_of(admin.clone()).await.filter(|l| *l != leader)
    })
    .await;
    eventually(step, "the label moved to the new leader", || {
        labelled(new_leader)
    })
    .await;
    println!(
        "raft leader label: kill of rg-{leader} -> label and status.master on rg-{new_leader} in {} ms",
        killed.elapsed().as_millis()
    );

    controller.abort();
    drop(replicas);
    let (ok, out) = c.kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "cleanup: {out}");
}

/// Waits until the claim is Bound (kube-controller-manager binds it to its static volume).
async fn claim_bound(client: &kube::Client, ns: &str, name: &str) {
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), ns);
    eventually(Duration::from_secs(90), &format!("{name} bound"), || {
        let pvcs = pvcs.clone();
        async move {
            let pvc = pvcs.get_opt(name).await.ok().flatten()?;
            (pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")).then_some(())
        }
    })
    .await;
}

async fn reconcile_now(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<BrokerGroup> = Api::namespaced(client.clone(), ns);
    let bg = api.get(name).await.expect("group");
    let ctx = std::sync::Arc::new(ferrum_operator::controller::Context::new(client.clone()));
    tokio::time::timeout(
        Duration::from_secs(60),
        ferrum_operator::controller::reconcile(std::sync::Arc::new(bg), ctx),
    )
    .await
    .expect("reconcile in time")
    .unwrap_or_else(|e| panic!("reconcile of {name} succeeds: {e}"));
}

async fn event_reasons(client: &kube::Client, ns: &str, about: &str) -> Vec<(String, String)> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(about))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Volume growth on a StorageClass with and without `allowVolumeExpansion` (static volumes
/// the controller manager binds), and pruning of what a smaller spec no longer asks for.
#[tokio::test]
async fn volume_growth_and_pruning_on_the_apiserver() {
    let Some(c) = Cluster::from_env() else {
        eprintln!(
            "SKIPPED control_plane: FERRUM_KUBECONFIG is not set (start one with hack/k8s/up.sh)"
        );
        return;
    };
    c.setup();
    let client = c.client().await;
    let ns = c.namespace.as_str();
    // StorageClasses and PersistentVolumes are cluster-wide: named after the namespace.
    let fixed_class = format!("{ns}-fixed");
    let grow_class = format!("{ns}-grow");
    let mut cluster_objects = String::new();
    for (class, expand, group) in [(&fixed_class, false, "fixed"), (&grow_class, true, "grow")] {
        cluster_objects.push_str(&format!(
            r#"---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{ name: {class} }}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
allowVolumeExpansion: {expand}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{ name: {class} }}
spec:
  capacity: {{ storage: 1Gi }}
  accessModes: [ReadWriteOnce]
  storageClassName: {class}
  persistentVolumeReclaimPolicy: Retain
  hostPath: {{ path: /nonexistent/{class} }}
  claimRef: {{ namespace: {ns}, name: data-{group}-0 }}
"#
        ));
    }
    let (ok, out) = c.kubectl(&["apply", "-f", "-"], Some(&cluster_objects));
    assert!(ok, "storage classes and volumes: {out}");

    c.must_apply(&format!(
        r#"apiVersion: ferrum.dev/v1alpha1
kind: BrokerGroup
metadata: {{ name: fixed }}
spec:
  clusterName: pf
  mode: MasterSlave
  replicas: 1
  image: ferrum/broker:it
  storage: {{ size: 1Gi, storageClassName: {fixed_class} }}
  nameServer: {{ replicas: 1, image: ferrum/namesrv:it }}
---
apiVersion: ferrum.dev/v1alpha1
kind: BrokerGroup
metadata: {{ name: grow }}
spec:
  clusterName: pg
  mode: MasterSlave
  replicas: 1
  image: ferrum/broker:it
  storage: {{ size: 1Gi, storageClassName: {grow_class} }}
  nameServer: {{ replicas: 2, image: ferrum/namesrv:it }}
  externalAccess: {{ type: LoadBalancer }}
"#
    ));
    reconcile_now(&client, ns, "fixed").await;
    reconcile_now(&client, ns, "grow").await;
    let svc: Api<Service> = Api::namespaced(client.clone(), ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    svc.get("grow-0-external").await.expect("external Service");
    svc.get("pg-namesrv-1")
        .await
        .expect("second NameServer Service");
    deps.get("pg-namesrv-1").await.expect("second NameServer");
    claim_bound(&client, ns, "data-fixed-0").await;
    claim_bound(&client, ns, "data-grow-0").await;

    // Both groups grow to 2Gi; "grow" also drops to one NameServer and no external access.
    let api: Api<BrokerGroup> = Api::namespaced(client.clone(), ns);
    let bigger = serde_json::json!({ "spec": { "storage": { "size": "2Gi" } } });
    api.patch("fixed", &PatchParams::default(), &Patch::Merge(&bigger))
        .await
        .expect("fixed grows");
    let smaller = serde_json::json!({ "spec": {
        "storage": { "size": "2Gi" },
        "nameServer": { "replicas": 1 },
        "externalAccess": null
    } });
    api.patch("grow", &PatchParams::default(), &Patch::Merge(&smaller))
        .await
        .expect("grow grows and shrinks");
    reconcile_now(&client, ns, "fixed").await;
    reconcile_now(&client, ns, "grow").await;

    // Without allowVolumeExpansion: Degraded with the apiserver's reason, a Warning Event,
    // and the group is still applied.
    let fixed = api.get("fixed").await.expect("fixed");
    let degraded = fixed
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
        .cloned()
        .expect("Degraded");
    assert_eq!(degraded.status, "True", "{degraded:?}");
    assert_eq!(degraded.reason, "VolumeExpansionFailed");
    assert!(
        degraded.message.contains("data-fixed-0 to 2Gi refused"),
        "{}",
        degraded.message
    );
    assert_eq!(
        fixed.status.as_ref().and_then(|s| s.observed_generation),
        fixed.metadata.generation
    );
    let fixed_events = event_reasons(&client, ns, "fixed").await;
    assert!(
        fixed_events
            .iter()
            .any(|(r, _)| r == "VolumeExpansionFailed"),
        "{fixed_events:?}"
    );

    // With it: the claim asks for 2Gi, the group is not Degraded, and the objects the
    // smaller spec no longer wants are gone.
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), ns);
    let claim = pvcs.get("data-grow-0").await.expect("claim");
    let asked = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    assert_eq!(asked.as_deref(), Some("2Gi"));
    let grow = api.get("grow").await.expect("grow");
    let degraded = grow
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
        .cloned()
        .expect("Degraded");
    assert_eq!(degraded.status, "False", "{degraded:?}");
    assert!(svc.get_opt("grow-0-external").await.expect("get").is_none());
    assert!(svc.get_opt("pg-namesrv-1").await.expect("get").is_none());
    let gone = deps.get_opt("pg-namesrv-1").await.expect("get");
    assert!(
        gone.is_none_or(|d| d.metadata.deletion_timestamp.is_some()),
        "the second NameServer goes"
    );
    svc.get("pg-namesrv-0")
        .await
        .expect("the first NameServer stays");
    svc.get("grow-headless")
        .await
        .expect("the headless Service stays");
    let grow_events = event_reasons(&client, ns, "grow").await;
    assert!(
        grow_events.iter().any(|(r, _)| r == "VolumeExpanding"),
        "{grow_events:?}"
    );
    let pruned = grow_events
        .iter()
        .find(|(r, _)| r == "Pruned")
        .unwrap_or_else(|| panic!("a Pruned Event: {grow_events:?}"));
    assert!(
        pruned.1.contains("Service/grow-0-external")
            && pruned.1.contains("Service/pg-namesrv-1")
            && pruned.1.contains("Deployment/pg-namesrv-1"),
        "{}",
        pruned.1
    );

    let (ok, out) = c.kubectl(&["delete", "namespace", ns, "--wait=false"], None);
    assert!(ok, "cleanup: {out}");
    let (ok, out) = c.kubectl(
        &[
            "delete",
            "--wait=false",
            "storageclass",
            &fixed_class,
            &grow_class,
        ],
        None,
    );
    assert!(ok, "cleanup: {out}");
    let (ok, out) = c.kubectl(
        &["delete", "--wait=false", "pv", &fixed_class, &grow_class],
        None,
    );
    assert!(ok, "cleanup: {out}");
}
