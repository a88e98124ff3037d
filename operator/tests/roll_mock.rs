//! The rolling-restart calls of one reconcile against a mocked API server (tower-test): the
//! StatefulSet answers with an update revision its pods do not run, so the pass evicts exactly
//! one pod through the Eviction API (never a plain DELETE), publishes a Restarting Event and
//! writes `status.roll`; a pass with the roll pause annotation evicts nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrum_operator::controller::{Context, reconcile};
use ferrum_operator::crd::BrokerGroup;
use ferrum_operator::roll::{REVISION_LABEL, ROLL_PAUSE_ANNOTATION};
use ferrum_operator::topic_controller::NamesrvOverrides;
use http::{Request, Response, StatusCode};
use kube::client::Body;

const NS: &str = "mq";

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    body: serde_json::Value,
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

/// Two broker pods on revision `old`, neither Ready (they never run here).
fn pods() -> serde_json::Value {
    let pod = |i: i32| {
        serde_json::json!({
            "metadata": {
                "name": format!("orders-{i}"), "namespace": NS,
                "labels": {
                    "app.kubernetes.io/name": "ferrum-broker",
                    "app.kubernetes.io/instance": "orders",
                    REVISION_LABEL: "orders-old"
                }
            },
            "status": { "phase": "Pending" }
        })
    };
    serde_json::json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod(0), pod(1)]
    })
}

fn answer(call: &Call, bg: &serde_json::Value) -> (StatusCode, serde_json::Value) {
    let ok = |v: serde_json::Value| (StatusCode::OK, v);
    match call.method.as_str() {
        "GET" if call.path.ends_with("/brokergroups") => ok(serde_json::json!({
            "apiVersion": "ferrum.dev/v1alpha1", "kind": "BrokerGroupList",
            "metadata": { "resourceVersion": "9" }, "items": [bg]
        })),
        "GET" if call.path.ends_with("/pods") => ok(pods()),
        "PATCH" if call.path.contains("/statefulsets/") => {
            let mut sts = call.body.clone();
            sts["status"] = serde_json::json!({
                "replicas": 2, "updateRevision": "orders-new", "currentRevision": "orders-old"
            });
            ok(sts)
        }
        "POST" if call.path.ends_with("/eviction") => (
            StatusCode::CREATED,
            serde_json::json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" }),
        ),
        "PATCH" if call.path.ends_with("/status") => ok(bg.clone()),
        "PATCH" if call.path.contains("/pods/") => ok(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" }
        })),
        "PATCH" | "POST" => (StatusCode::CREATED, call.body.clone()),
        _ => (
            StatusCode::NOT_FOUND,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"
            }),
        ),
    }
}

async fn calls_of_one_reconcile(bg: serde_json::Value) -> Vec<Call> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, NS);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn({
        let calls = calls.clone();
        let bg = bg.clone();
        async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    body: serde_json::from_slice(&bytes).unwrap_or_default(),
                };
                let (status, json) = answer(&call, &bg);
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
    // Port 1 on loopback refuses at once: no broker answers, like pods that do not run.
    let ctx = Context::new(client)
        .with_namesrv_overrides(NamesrvOverrides::parse(&["c1=127.0.0.1:1"]).expect("override"));
    let bg: BrokerGroup = serde_json::from_value(bg).expect("group");
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

fn position(calls: &[Call], what: impl Fn(&Call) -> bool) -> Option<usize> {
    calls.iter().position(what)
}

#[tokio::test]
async fn an_outdated_group_gets_one_eviction_then_event_then_status() {
    let calls = calls_of_one_reconcile(group(serde_json::json!({}))).await;
    let evictions: Vec<&Call> = calls
        .iter()
        .filter(|c| c.path.ends_with("/eviction"))
        .collect();
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
    let evict = position(&calls, |c| c.path.ends_with("/eviction")).expect("eviction");
    let event = position(&calls, |c| {
        c.path.ends_with("/events") && c.body["reason"] == "Restarting"
    })
    .expect("Restarting event");
    let status = position(&calls, |c| c.path.ends_with("/status")).expect("status patch");
    assert!(sts < evict && evict < event && event < status, "{calls:?}");
    assert_eq!(
        calls[event].body["related"]["name"], "orders-0",
        "the restarted pod is the Event's related object: {:?}",
        calls[event].body
    );
    assert!(
        calls[event].body["note"]
            .as_str()
            .unwrap_or_default()
            .contains("orders-0"),
        "{:?}",
        calls[event].body
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
    let calls =
        calls_of_one_reconcile(group(serde_json::json!({ ROLL_PAUSE_ANNOTATION: "true" }))).await;
    assert!(
        calls.iter().all(|c| !c.path.ends_with("/eviction")),
        "{calls:?}"
    );
    let status = calls
        .iter()
        .find(|c| c.path.ends_with("/status"))
        .expect("status patch");
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
