//! The rolling-restart calls of one reconcile against a mocked API server (tower-test) and,
//! where a step talks to brokers, NameServer and brokers played by small remoting servers on
//! loopback. The StatefulSet answers with an update revision some pods do not run, so the pass
//! evicts one pod through the Eviction API (never a plain DELETE), publishes a Restarting Event
//! and writes `status.roll`; a refused eviction backs off; a pause evicts nothing; with
//! `promoteBeforeRestart` the promotion is written to status before anything acts on it, and a
//! pass that finds it there finishes it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrum_operator::controller::{Context, reconcile};
use ferrum_operator::crd::BrokerGroup;
use ferrum_operator::roll::{REVISION_LABEL, ROLL_PAUSE_ANNOTATION};
use ferrum_operator::topic_controller::NamesrvOverrides;
use ferrum_protocol::body::to_json;
use ferrum_protocol::replica::{BrokerReplicaStatus, SlaveReplicaStatus};
use ferrum_protocol::route::{BrokerData, ClusterInfo};
use ferrum_protocol::{RemotingCodec, RemotingCommand, RequestCode, ResponseCode};
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

const NS: &str = "mq";

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    body: serde_json::Value,
}

/// What the mocked apiserver holds and how it answers.
struct Scenario {
    group: serde_json::Value,
    pods: serde_json::Value,
    /// The Eviction API refuses (the PodDisruptionBudget allows no disruption).
    refuse_eviction: bool,
    namesrv: String,
    brokers: BTreeMap<String, String>,
    /// Pods evicted so far: gone from later lists, as once their containers have stopped.
    evicted: Mutex<Vec<String>>,
}

impl Scenario {
    fn new(group: serde_json::Value, pods: serde_json::Value) -> Self {
        Scenario {
            group,
            pods,
            refuse_eviction: false,
            // Port 1 on loopback refuses at once: no broker answers, like pods that do not run.
            namesrv: "127.0.0.1:1".into(),
            brokers: BTreeMap::new(),
            evicted: Mutex::new(Vec::new()),
        }
    }
}

fn group(annotations: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "ferrum.dev/v1alpha1",
        "kind": "BrokerGroup",
        "metadata": {
            "name": "orders", "namespace": NS, "annotations": annotations,
            "uid": "0b1c2d3e-0000-4000-8000-000000000003",
            "generation": 2, "resourceVersion": "9",
            "creationTimestamp": "2026-01-01T00:00:00Z"
        },
        "spec": {
            "clusterName": "c1", "mode": "MasterSlave", "replicas": 2,
            "image": "ferrum/broker:new", "storage": { "size": "1Gi" },
            "nameServer": { "replicas": 1, "image": "ferrum/namesrv:test" }
        }
    })
}

/// A master + slave group, SYNC_MASTER, with promoteBeforeRestart.
fn promoting_group(status: Option<serde_json::Value>) -> serde_json::Value {
    let mut g = group(serde_json::json!({}));
    g["spec"]["replication"] = serde_json::json!({ "brokerRole": "SYNC_MASTER" });
    g["spec"]["upgrade"] = serde_json::json!({ "promoteBeforeRestart": true });
    if let Some(s) = status {
        g["status"] = s;
    }
    g
}

fn pod(i: i32, revision: &str, ready: bool) -> serde_json::Value {
    let status = if ready {
        serde_json::json!({
            "phase": "Running",
            "conditions": [ { "type": "Ready", "status": "True" } ]
        })
    } else {
        serde_json::json!({ "phase": "Pending" })
    };
    serde_json::json!({
        "metadata": {
            "name": format!("orders-{i}"), "namespace": NS,
            "uid": format!("0b1c2d3e-0000-4000-8000-00000000010{i}"),
            "labels": {
                "app.kubernetes.io/name": "ferrum-broker",
                "app.kubernetes.io/instance": "orders",
                REVISION_LABEL: revision
            }
        },
        "status": status
    })
}

fn pod_list(items: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({ "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items })
}

/// Two broker pods on revision `old`, neither Ready (they never run here).
fn unready_pods() -> serde_json::Value {
    pod_list(vec![
        pod(0, "orders-old", false),
        pod(1, "orders-old", false),
    ])
}

/// Master orders-0 still on the old revision, slave orders-1 already restarted: the master's
/// turn has come.
fn masters_turn_pods() -> serde_json::Value {
    pod_list(vec![pod(0, "orders-old", true), pod(1, "orders-new", true)])
}

fn not_found() -> (StatusCode, serde_json::Value) {
    (
        StatusCode::NOT_FOUND,
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"
        }),
    )
}

fn answer(call: &Call, sc: &Scenario) -> (StatusCode, serde_json::Value) {
    let ok = |v: serde_json::Value| (StatusCode::OK, v);
    let last = call.path.rsplit('/').next().unwrap_or_default();
    match call.method.as_str() {
        "GET" if last == "brokergroups" => ok(serde_json::json!({
            "apiVersion": "ferrum.dev/v1alpha1", "kind": "BrokerGroupList",
            "metadata": { "resourceVersion": "9" }, "items": [sc.group]
        })),
        "GET" if last == "pods" => {
            let evicted = sc.evicted.lock().expect("evicted").clone();
            let mut pods = sc.pods.clone();
            if let Some(items) = pods["items"].as_array_mut() {
                items.retain(|p| {
                    !evicted
                        .iter()
                        .any(|e| p["metadata"]["name"].as_str() == Some(e))
                });
            }
            ok(pods)
        }
        // Other lists (objects the reconciler looks through): nothing there.
        "GET"
            if [
                "services",
                "deployments",
                "configmaps",
                "poddisruptionbudgets",
                "persistentvolumeclaims",
                "statefulsets",
            ]
            .contains(&last) =>
        {
            ok(
                serde_json::json!({ "apiVersion": "v1", "kind": "List", "metadata": {}, "items": [] }),
            )
        }
        "PATCH" if call.path.contains("/statefulsets/") => {
            let mut sts = call.body.clone();
            sts["status"] = serde_json::json!({
                "replicas": 2, "updateRevision": "orders-new", "currentRevision": "orders-old"
            });
            ok(sts)
        }
        "POST" if last == "eviction" && sc.refuse_eviction => (
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": "TooManyRequests", "code": 429,
                "message": "Cannot evict pod as it would violate the pod's disruption budget."
            }),
        ),
        "POST" if last == "eviction" => {
            if let Some(name) = call.body["metadata"]["name"].as_str() {
                sc.evicted.lock().expect("evicted").push(name.to_owned());
            }
            (
                StatusCode::CREATED,
                serde_json::json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" }),
            )
        }
        "PATCH" if last == "status" => ok(sc.group.clone()),
        "PATCH" if call.path.contains("/pods/") => ok(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" }
        })),
        "PATCH" | "POST" => (StatusCode::CREATED, call.body.clone()),
        _ => not_found(),
    }
}

async fn calls_of_one_reconcile(sc: Scenario) -> Vec<Call> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, NS);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let sc = Arc::new(sc);
    let server = tokio::spawn({
        let calls = calls.clone();
        let sc = sc.clone();
        async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    body: serde_json::from_slice(&bytes).unwrap_or_default(),
                };
                let (status, json) = answer(&call, &sc);
                calls.lock().expect("calls").push(call);
                send.send_response(
                    Response::builder()
                        .status(status)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Body::from(serde_json::to_vec(&json).unwrap_or_default()))
                        .expect("response"),
                );
            }
        }
    });
    let ctx = Context::new(client)
        .with_namesrv_overrides(
            NamesrvOverrides::parse(&[format!("c1={}", sc.namesrv)]).expect("override"),
        )
        .with_broker_addr_overrides(sc.brokers.clone());
    let bg: BrokerGroup = serde_json::from_value(sc.group.clone()).expect("group");
    tokio::time::timeout(
        Duration::from_secs(30),
        reconcile(Arc::new(bg), Arc::new(ctx)),
    )
    .await
    .expect("reconcile in time")
    .expect("reconcile succeeds");
    server.abort();
    calls.lock().expect("calls").clone()
}

// --- NameServer and brokers on loopback ------------------------------------------------------

/// A broker as far as the operator asks it: its replica status, and a promotion that makes it
/// master and is remembered.
#[derive(Debug, Default)]
struct FakeBroker {
    status: BrokerReplicaStatus,
    promotions: Vec<String>,
}

type Shared = Arc<Mutex<FakeBroker>>;

async fn serve<F>(handle: F) -> String
where
    F: Fn(&RemotingCommand) -> RemotingCommand + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut framed = Framed::new(stream, RemotingCodec::default());
                while let Some(Ok(req)) = framed.next().await {
                    if framed.send(handle(&req)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn fake_broker(status: BrokerReplicaStatus) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(FakeBroker {
        status,
        promotions: Vec::new(),
    }));
    let addr = serve({
        let state = state.clone();
        move |req| {
            let mut b = state.lock().expect("broker");
            if req.code == RequestCode::FERRUM_GET_BROKER_REPLICA_STATUS.code() {
                req.success_to().with_body(to_json(&b.status))
            } else if req.code == RequestCode::FERRUM_PROMOTE_BROKER.code() {
                let role = req
                    .ext_fields
                    .get("brokerRole")
                    .cloned()
                    .unwrap_or_default();
                b.promotions.push(role.clone());
                b.status.role = role;
                b.status.broker_id = 0;
                b.status.epoch += 1;
                req.success_to().with_body(to_json(&b.status))
            } else {
                req.error_to(ResponseCode::REQUEST_CODE_NOT_SUPPORTED, "not in this test")
            }
        }
    })
    .await;
    (addr, state)
}

fn replica_status(role: &str, broker_id: i64, max: i64) -> BrokerReplicaStatus {
    BrokerReplicaStatus {
        cluster_name: "c1".into(),
        broker_name: "orders".into(),
        broker_id,
        role: role.into(),
        epoch: 1,
        max_phy_offset: max,
        slaves: if role.ends_with("MASTER") {
            vec![SlaveReplicaStatus {
                addr: "slave".into(),
                broker_id: 1,
                acked_offset: max,
                lag_bytes: 0,
                lag_millis: 0,
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// Master orders-0 (brokerId 0, `master_role`) and slave orders-1 (brokerId 1), registered
/// with a NameServer; the scenario reaches each pod at its broker's address.
async fn master_and_slave(sc: &mut Scenario, master_role: &str) -> (Shared, Shared) {
    let (a0, b0) = fake_broker(replica_status(master_role, 0, 1000)).await;
    let (a1, b1) = fake_broker(replica_status("SLAVE", 1, 1000)).await;
    let info = ClusterInfo {
        broker_addr_table: BTreeMap::from([(
            "orders".to_owned(),
            BrokerData {
                cluster: "c1".into(),
                broker_name: "orders".into(),
                broker_addrs: BTreeMap::from([(0, a0.clone()), (1, a1.clone())]),
                ..Default::default()
            },
        )]),
        cluster_addr_table: BTreeMap::from([("c1".to_owned(), ["orders".to_owned()].into())]),
    };
    sc.namesrv = serve(move |req| {
        if req.code == RequestCode::GET_BROKER_CLUSTER_INFO.code() {
            req.success_to().with_body(to_json(&info))
        } else {
            req.error_to(ResponseCode::REQUEST_CODE_NOT_SUPPORTED, "not in this test")
        }
    })
    .await;
    sc.brokers = BTreeMap::from([("orders-0".to_owned(), a0), ("orders-1".to_owned(), a1)]);
    (b0, b1)
}

// --- helpers over the recorded calls ---------------------------------------------------------

fn position(calls: &[Call], what: impl Fn(&Call) -> bool) -> Option<usize> {
    calls.iter().position(what)
}

fn is_eviction(c: &Call) -> bool {
    c.path.ends_with("/eviction")
}

fn is_status(c: &Call) -> bool {
    c.path.ends_with("/status")
}

fn event<'a>(calls: &'a [Call], reason: &str) -> Option<(usize, &'a Call)> {
    calls
        .iter()
        .enumerate()
        .find(|(_, c)| c.path.ends_with("/events") && c.body["reason"] == reason)
}

/// The ConfigMap writes, in order, each with the broker.conf of `pod`.
fn confs_of(calls: &[Call], pod: &str) -> Vec<(usize, String)> {
    calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.method == "PATCH" && c.path.contains("/configmaps/"))
        .map(|(i, c)| {
            (
                i,
                c.body["data"][format!("{pod}.conf")]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn is_master_conf(conf: &str) -> bool {
    conf.lines().any(|l| l.trim() == "brokerId=0")
}

// --- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn an_outdated_group_gets_one_eviction_then_event_then_status() {
    let calls =
        calls_of_one_reconcile(Scenario::new(group(serde_json::json!({})), unready_pods())).await;
    let evictions: Vec<&Call> = calls.iter().filter(|c| is_eviction(c)).collect();
    assert_eq!(evictions.len(), 1, "exactly one pod per pass: {calls:?}");
    assert_eq!(evictions[0].method, "POST");
    assert_eq!(
        evictions[0].path,
        format!("/api/v1/namespaces/{NS}/pods/orders-0/eviction"),
        "unready pods first, lowest ordinal"
    );
    assert_eq!(evictions[0].body["metadata"]["name"], "orders-0");
    assert!(
        calls.iter().all(|c| c.method != "DELETE"),
        "pods go through the Eviction API, never a plain delete: {calls:?}"
    );
    let sts = position(&calls, |c| {
        c.path.contains("/statefulsets/") && c.method == "PATCH"
    })
    .expect("statefulset applied");
    let evict = position(&calls, is_eviction).expect("eviction");
    let (event, restarting) = event(&calls, "Restarting").expect("Restarting event");
    let status = position(&calls, is_status).expect("status patch");
    assert!(sts < evict && evict < event && event < status, "{calls:?}");
    assert_eq!(
        restarting.body["related"]["name"], "orders-0",
        "the restarted pod is the Event's related object: {:?}",
        restarting.body
    );
    assert!(
        restarting.body["note"]
            .as_str()
            .unwrap_or_default()
            .contains("orders-0"),
        "{:?}",
        restarting.body
    );

    let roll = &calls[status].body["status"]["roll"];
    assert_eq!(roll["pod"], "orders-0", "{roll}");
    assert_eq!(roll["restarted"], 1, "{roll}");
    assert_eq!(roll["done"], 0, "{roll}");
    assert_eq!(roll["total"], 2, "{roll}");
    assert!(roll["startedAt"].is_string(), "{roll}");
    let conditions = calls[status].body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .clone();
    let progressing = conditions
        .iter()
        .find(|c| c["type"] == "Progressing")
        .expect("Progressing");
    assert_eq!(progressing["status"], "True");
    assert_eq!(progressing["reason"], "RollingRestart");
}

#[tokio::test]
async fn a_paused_roll_evicts_nothing_and_says_so() {
    let calls = calls_of_one_reconcile(Scenario::new(
        group(serde_json::json!({ ROLL_PAUSE_ANNOTATION: "true" })),
        unready_pods(),
    ))
    .await;
    assert!(calls.iter().all(|c| !is_eviction(c)), "{calls:?}");
    let status = calls.iter().find(|c| is_status(c)).expect("status patch");
    let roll = &status.body["status"]["roll"];
    assert!(
        roll["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("paused"),
        "{roll}"
    );
    assert_eq!(roll["restarted"], 0, "{roll}");
}

#[tokio::test]
async fn a_refused_eviction_backs_off_with_an_event_and_no_delete() {
    let mut sc = Scenario::new(group(serde_json::json!({})), unready_pods());
    sc.refuse_eviction = true;
    let calls = calls_of_one_reconcile(sc).await;
    assert_eq!(
        calls.iter().filter(|c| is_eviction(c)).count(),
        1,
        "{calls:?}"
    );
    assert!(
        calls.iter().all(|c| c.method != "DELETE"),
        "a refused eviction is never forced with a delete: {calls:?}"
    );
    assert!(event(&calls, "Restarting").is_none(), "{calls:?}");
    let (at, failed) = event(&calls, "RestartFailed").expect("RestartFailed event");
    assert_eq!(failed.body["type"], "Warning", "{:?}", failed.body);
    assert_eq!(
        failed.body["related"]["name"], "orders-0",
        "{:?}",
        failed.body
    );
    assert!(
        failed.body["note"]
            .as_str()
            .unwrap_or_default()
            .contains("PodDisruptionBudget"),
        "{:?}",
        failed.body
    );
    let status = position(&calls, is_status).expect("status patch");
    assert!(at < status, "{calls:?}");
    let roll = &calls[status].body["status"]["roll"];
    assert_eq!(roll["restarted"], 0, "{roll}");
    let backoff = roll["backoff"].as_array().expect("backoff").clone();
    assert_eq!(backoff.len(), 1, "{roll}");
    assert_eq!(backoff[0]["pod"], "orders-0", "{roll}");
    assert_eq!(backoff[0]["failures"], 1, "{roll}");
    assert!(backoff[0]["retryAfter"].is_string(), "{roll}");
    assert!(
        backoff[0]["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("PodDisruptionBudget"),
        "{roll}"
    );
}

#[tokio::test]
async fn promote_before_restart_writes_the_intent_before_the_eviction() {
    let mut sc = Scenario::new(promoting_group(None), masters_turn_pods());
    let (old_master, slave) = master_and_slave(&mut sc, "SYNC_MASTER").await;
    let calls = calls_of_one_reconcile(sc).await;

    let intent = position(&calls, is_status).expect("status patch");
    let roll = &calls[intent].body["status"]["roll"];
    assert_eq!(
        roll["promoting"], 1,
        "the first status write is the intent: {roll}"
    );
    assert_eq!(calls[intent].body["status"]["masterOrdinal"], 1);
    let evict = position(&calls, is_eviction).expect("eviction");
    assert_eq!(
        calls[evict].path,
        format!("/api/v1/namespaces/{NS}/pods/orders-0/eviction")
    );
    assert!(intent < evict, "status before the eviction: {calls:?}");
    // The slave's broker.conf says master before the old master stops.
    let confs = confs_of(&calls, "orders-1");
    let rendered = confs
        .iter()
        .find(|(_, conf)| is_master_conf(conf))
        .expect("orders-1 rendered as master");
    assert!(intent < rendered.0 && rendered.0 < evict, "{calls:?}");

    assert_eq!(
        slave.lock().expect("slave").promotions,
        ["SYNC_MASTER"],
        "the slave is promoted as SYNC_MASTER"
    );
    assert!(old_master.lock().expect("master").promotions.is_empty());
    let (promoted, _) = event(&calls, "Promoted").expect("Promoted event");
    assert!(evict < promoted, "{calls:?}");
    let last = calls.iter().rev().find(|c| is_status(c)).expect("status");
    assert_eq!(last.body["status"]["masterOrdinal"], 1, "{:?}", last.body);
    assert!(
        last.body["status"]["roll"]["promoting"].is_null(),
        "a confirmed promotion ends: {:?}",
        last.body
    );
}

#[tokio::test]
async fn a_pass_that_finds_the_intent_finishes_the_promotion() {
    // The operator stopped after writing the intent, before the eviction: status names the
    // slave, the old master still runs its old template and is still master.
    let status = serde_json::json!({
        "masterOrdinal": 1,
        "roll": {
            "pod": "orders-0", "reason": "promoting orders-1 to master, orders-0 stops first",
            "done": 1, "total": 2, "restarted": 1, "promoting": 1
        }
    });
    let mut sc = Scenario::new(promoting_group(Some(status)), masters_turn_pods());
    let (_, slave) = master_and_slave(&mut sc, "SYNC_MASTER").await;
    let calls = calls_of_one_reconcile(sc).await;

    // Every broker.conf this pass writes names orders-1 master.
    let confs = confs_of(&calls, "orders-1");
    assert!(!confs.is_empty(), "{calls:?}");
    assert!(confs.iter().all(|(_, c)| is_master_conf(c)), "{confs:?}");
    let evict = position(&calls, is_eviction).expect("the old master is stopped");
    assert_eq!(
        calls[evict].path,
        format!("/api/v1/namespaces/{NS}/pods/orders-0/eviction")
    );
    assert_eq!(slave.lock().expect("slave").promotions, ["SYNC_MASTER"]);
    let (promoted, ev) = event(&calls, "Promoted").expect("Promoted event");
    assert!(evict < promoted, "{calls:?}");
    assert_eq!(ev.body["related"]["name"], "orders-1", "{:?}", ev.body);
    let last = calls.iter().rev().find(|c| is_status(c)).expect("status");
    assert_eq!(last.body["status"]["masterOrdinal"], 1, "{:?}", last.body);
    assert!(
        last.body["status"]["roll"]["promoting"].is_null(),
        "{:?}",
        last.body
    );
    assert_eq!(
        last.body["status"]["roll"]["restarted"], 2,
        "{:?}",
        last.body
    );
}

#[tokio::test]
async fn a_master_running_as_async_master_restarts_in_place() {
    // The spec says SYNC_MASTER, but the master still runs an ASYNC_MASTER configuration (the
    // roll that changes the role restarts it last): promoting could drop what it acknowledged.
    let mut sc = Scenario::new(promoting_group(None), masters_turn_pods());
    let (_, slave) = master_and_slave(&mut sc, "ASYNC_MASTER").await;
    let calls = calls_of_one_reconcile(sc).await;

    assert!(slave.lock().expect("slave").promotions.is_empty());
    assert!(
        calls
            .iter()
            .filter(|c| is_status(c))
            .all(|c| c.body["status"]["roll"]["promoting"].is_null()
                && c.body["status"]["masterOrdinal"] == 0),
        "{calls:?}"
    );
    assert!(
        confs_of(&calls, "orders-0")
            .iter()
            .all(|(_, c)| is_master_conf(c)),
        "orders-0 stays master"
    );
    let evict = position(&calls, is_eviction).expect("eviction");
    assert!(calls[evict].path.ends_with("/pods/orders-0/eviction"));
    let (_, ev) = event(&calls, "Restarting").expect("Restarting event");
    let note = ev.body["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("in place") && note.contains("ASYNC_MASTER"),
        "{note}"
    );
}
