//! Reconcile call sequences against a mocked API server (tower-test): every
//! request the reconciler makes is recorded and answered, then the order is checked —
//! NameServer objects, ConfigMap, Services, PodDisruptionBudget, the StatefulSet last of the
//! applied objects, then the master label, pod readiness, the Event and the status patch.
//! For a Topic: the finalizer comes first, and an unreachable NameServer ends in a Degraded
//! status rather than an error. The real apiserver tests (control_plane.rs) check the same
//! reconcilers end to end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrum_operator::build::{namesrv_instance, namesrv_service};
use ferrum_operator::controller::{Context, reconcile};
use ferrum_operator::crd::BrokerGroup;
use ferrum_operator::topic_controller::NamesrvOverrides;
use http::{Request, Response, StatusCode};
use kube::client::Body;

const NS: &str = "mq";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    method: String,
    path: String,
    content_type: String,
    query: String,
    body: serde_json::Value,
}

fn group(extra_spec: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "clusterName": "c1",
        "mode": "MasterSlave",
        "replicas": 2,
        "image": "ferrum/broker:test",
        "storage": { "size": "1Gi" },
        "nameServer": { "replicas": 2, "image": "ferrum/namesrv:test" }
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(e.clone());
    }
    serde_json::json!({
        "apiVersion": "ferrum.dev/v1alpha1",
        "kind": "BrokerGroup",
        "metadata": {
            "name": "orders",
            "namespace": NS,
            "uid": "0b1c2d3e-0000-4000-8000-000000000001",
            "generation": 1,
            "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z"
        },
        "spec": spec
    })
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

/// Answers like an empty apiserver holding only `bg`: applies echo their object, gets of
/// missing objects are 404, lists are empty but for the BrokerGroups.
fn answer(call: &Call, body: &[u8], bg: &serde_json::Value) -> (StatusCode, serde_json::Value) {
    let sent: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match call.method.as_str() {
        "GET" if call.path.ends_with("/brokergroups") => (
            StatusCode::OK,
            serde_json::json!({
                "apiVersion": "ferrum.dev/v1alpha1", "kind": "BrokerGroupList",
                "metadata": { "resourceVersion": "7" }, "items": [bg]
            }),
        ),
        "GET" if call.path.ends_with("/pods") => (
            StatusCode::OK,
            serde_json::json!({
                "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []
            }),
        ),
        "GET" if call.path.ends_with("/services") || call.path.ends_with("/deployments") => (
            StatusCode::OK,
            serde_json::json!({ "metadata": {}, "items": [] }),
        ),
        "GET" => not_found(),
        "PATCH" if call.path.ends_with("/status") => (StatusCode::OK, bg.clone()),
        // A JSON patch (the finalizer) answers with the stored object.
        "PATCH" if sent.is_array() => (StatusCode::OK, bg.clone()),
        "PATCH" if call.path.contains("/pods/") => not_found(),
        "PATCH" | "POST" => (StatusCode::CREATED, sent),
        _ => not_found(),
    }
}

/// Answers a test gives for the requests it cares about; `None` falls back to [`answer`].
type Hook = Arc<dyn Fn(&Call) -> Option<(StatusCode, serde_json::Value)> + Send + Sync>;

/// A mocked API server answering like [`answer`] with `obj` as the one stored object.
fn mock_server(
    obj: serde_json::Value,
) -> (
    kube::Client,
    Arc<Mutex<Vec<Call>>>,
    tokio::task::JoinHandle<()>,
) {
    mock_server_with(obj, Arc::new(|_| None))
}

/// Like [`mock_server`], with `hook` answering first.
fn mock_server_with(
    obj: serde_json::Value,
    hook: Hook,
) -> (
    kube::Client,
    Arc<Mutex<Vec<Call>>>,
    tokio::task::JoinHandle<()>,
) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, NS);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn({
        let calls = calls.clone();
        let bg = obj;
        async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body: serde_json::from_slice(&bytes).unwrap_or_default(),
                };
                let (status, json) = hook(&call).unwrap_or_else(|| answer(&call, &bytes, &bg));
                calls.lock().expect("calls").push(call);
                let response = Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(serde_json::to_vec(&json).unwrap_or_default()))
                    .expect("response");
                send.send_response(response);
            }
        }
    });
    (client, calls, server)
}

/// Runs one reconcile of `bg` against the mock and returns every call in order.
async fn calls_of_one_reconcile(bg: serde_json::Value) -> Vec<Call> {
    calls_of_one_reconcile_with(bg, Arc::new(|_| None)).await
}

/// Like [`calls_of_one_reconcile`], with `hook` answering first.
async fn calls_of_one_reconcile_with(bg: serde_json::Value, hook: Hook) -> Vec<Call> {
    let (client, calls, server) = mock_server_with(bg.clone(), hook);
    // Port 1 on loopback refuses at once: the replica read fails fast and must not fail the
    // reconcile.
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

fn core(kind: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/{kind}/{name}")
}

fn group_path(api: &str, kind: &str, name: &str) -> String {
    format!("/apis/{api}/namespaces/{NS}/{kind}/{name}")
}

#[tokio::test]
async fn broker_group_objects_are_applied_in_order_statefulset_last_then_status() {
    let calls = calls_of_one_reconcile(group(serde_json::json!({}))).await;
    let seen: Vec<(String, String)> = calls
        .iter()
        .map(|c| (c.method.clone(), c.path.clone()))
        .collect();
    let p = |m: &str, path: String| (m.to_owned(), path);
    let mut want = vec![p(
        "GET",
        format!("/apis/ferrum.dev/v1alpha1/namespaces/{NS}/brokergroups"),
    )];
    for i in 0..2 {
        want.push(p("PATCH", core("services", &namesrv_instance("c1", i))));
    }
    want.push(p("PATCH", core("services", &namesrv_service("c1"))));
    for i in 0..2 {
        want.push(p(
            "PATCH",
            group_path("apps/v1", "deployments", &namesrv_instance("c1", i)),
        ));
    }
    want.extend([
        p("PATCH", core("configmaps", "orders-config")),
        p("PATCH", core("services", "orders-headless")),
        p("PATCH", core("services", "orders-master")),
        p(
            "PATCH",
            group_path("policy/v1", "poddisruptionbudgets", "orders"),
        ),
        p("GET", group_path("apps/v1", "statefulsets", "orders")),
        p("PATCH", group_path("apps/v1", "statefulsets", "orders")),
        p("GET", format!("/api/v1/namespaces/{NS}/services")),
        p("GET", format!("/apis/apps/v1/namespaces/{NS}/deployments")),
        p("PATCH", core("pods", "orders-0")),
        p("PATCH", core("pods", "orders-1")),
        p("GET", format!("/api/v1/namespaces/{NS}/pods")),
        p(
            "POST",
            format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
        ),
        p(
            "PATCH",
            group_path("ferrum.dev/v1alpha1", "brokergroups", "orders/status"),
        ),
    ]);
    assert_eq!(seen, want);

    // Objects go through server-side apply with the operator's field manager; the master
    // label is a plain merge patch on the pod.
    for c in &calls {
        if c.method != "PATCH" {
            continue;
        }
        if c.path.contains("/pods/") {
            assert_eq!(c.content_type, "application/merge-patch+json", "{c:?}");
        } else {
            assert_eq!(c.content_type, "application/apply-patch+yaml", "{c:?}");
            assert!(
                c.query.contains("fieldManager=ferrum-operator") && c.query.contains("force=true"),
                "{c:?}"
            );
        }
    }
    let pods = calls
        .iter()
        .find(|c| c.method == "GET" && c.path.ends_with("/pods"))
        .expect("pod list");
    assert!(
        pods.query.contains("labelSelector="),
        "readiness is read only for the group's pods: {pods:?}"
    );
}

#[tokio::test]
async fn an_invalid_group_applies_nothing_and_reports_status() {
    let calls = calls_of_one_reconcile(group(
        serde_json::json!({ "brokerConfig": { "brokerId": "3" } }),
    ))
    .await;
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str()))
        .collect();
    let status = group_path("ferrum.dev/v1alpha1", "brokergroups", "orders/status");
    let list = format!("/apis/ferrum.dev/v1alpha1/namespaces/{NS}/brokergroups");
    let events = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
    assert_eq!(
        seen,
        vec![
            ("GET", list.as_str()),
            ("POST", events.as_str()),
            ("PATCH", status.as_str()),
        ]
    );
}

fn topic(finalizers: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "ferrum.dev/v1alpha1",
        "kind": "Topic",
        "metadata": {
            "name": "orders", "namespace": NS, "uid": "0b1c2d3e-0000-4000-8000-000000000002",
            "generation": 1, "resourceVersion": "9", "finalizers": finalizers
        },
        "spec": { "clusterName": "c1", "topicName": "Orders", "readQueueNums": 4,
                  "writeQueueNums": 4, "perm": 6, "order": false }
    })
}

async fn topic_calls(obj: serde_json::Value) -> Vec<Call> {
    let (client, calls, server) = mock_server(obj.clone());
    let ctx = Context::new(client)
        .with_namesrv_overrides(NamesrvOverrides::parse(&["c1=127.0.0.1:1"]).expect("override"));
    let t: ferrum_operator::crd::Topic = serde_json::from_value(obj).expect("topic");
    tokio::time::timeout(
        Duration::from_secs(30),
        ferrum_operator::topic_controller::reconcile(Arc::new(t), Arc::new(ctx)),
    )
    .await
    .expect("reconcile in time")
    .expect("an unreachable NameServer is a status, not an error");
    server.abort();
    calls.lock().expect("calls").clone()
}

#[tokio::test]
async fn a_new_topic_first_gets_its_finalizer() {
    let calls = topic_calls(topic(&[])).await;
    let topic_path = group_path("ferrum.dev/v1alpha1", "topics", "orders");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("PATCH", topic_path.as_str())
    );
    assert!(
        calls[0]
            .body
            .to_string()
            .contains(ferrum_operator::topic_controller::TOPIC_FINALIZER),
        "{:?}",
        calls[0].body
    );
}

#[tokio::test]
async fn an_unreachable_nameserver_is_a_degraded_status() {
    let calls = topic_calls(topic(&[ferrum_operator::topic_controller::TOPIC_FINALIZER])).await;
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str()))
        .collect();
    let events = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
    let status = group_path("ferrum.dev/v1alpha1", "topics", "orders/status");
    assert_eq!(
        seen,
        vec![("POST", events.as_str()), ("PATCH", status.as_str())]
    );
    let conditions = calls[1].body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .clone();
    let degraded = conditions
        .iter()
        .find(|c| c["type"] == "Degraded")
        .expect("Degraded");
    assert_eq!(degraded["status"], "True");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1:1 unreachable"),
        "{degraded}"
    );
    assert_eq!(degraded["observedGeneration"], 1);
    let ready = conditions
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready");
    assert_eq!(ready["status"], "False");
}

#[tokio::test]
async fn a_raft_group_without_a_leader_labels_no_pod_and_comes_back_soon() {
    use ferrum_operator::controller::RAFT_STARTING_RECHECK;
    use kube::runtime::controller::Action;

    let bg = group(serde_json::json!({ "mode": "Raft", "replicas": 3 }));
    let (client, calls, server) = mock_server(bg.clone());
    // No broker answers: no replica can claim leadership.
    let ctx = Context::new(client)
        .with_namesrv_overrides(NamesrvOverrides::parse(&["c1=127.0.0.1:1"]).expect("override"));
    let bg: BrokerGroup = serde_json::from_value(bg).expect("group");
    let action = tokio::time::timeout(
        Duration::from_secs(30),
        reconcile(Arc::new(bg), Arc::new(ctx)),
    )
    .await
    .expect("reconcile in time")
    .expect("reconcile succeeds");
    server.abort();
    let calls = calls.lock().expect("calls").clone();
    // Nothing answers and no pod is Ready: a group still starting is not polled every 700 ms.
    assert_eq!(action, Action::requeue(RAFT_STARTING_RECHECK));

    // The pods are read first (their own DNS names are where a leader is looked for), then
    // the objects are applied as in master-slave mode, and no pod is labelled.
    let pod_lists: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.method == "GET" && c.path.ends_with("/pods"))
        .map(|(i, _)| i)
        .collect();
    let config_map = calls
        .iter()
        .position(|c| c.path == core("configmaps", "orders-config"))
        .expect("ConfigMap applied");
    assert_eq!(pod_lists.len(), 2, "{calls:?}");
    assert!(pod_lists[0] < config_map, "{calls:?}");
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "PATCH" && c.path.contains("/pods/")),
        "no leader, no label: {calls:?}"
    );
    let status = calls
        .iter()
        .find(|c| c.path.ends_with("/orders/status"))
        .expect("status patch");
    assert!(status.body["status"]["master"].is_null(), "{status:?}");
    let progressing = status.body["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"))
        .cloned()
        .expect("Progressing");
    assert_eq!(progressing["status"], "True", "{progressing}");
}

/// A live StatefulSet of the group and bound 1Gi data claims; `refuse` decides which claims'
/// growth the API server refuses, as it does for a StorageClass without
/// `allowVolumeExpansion`.
fn grown_storage_hook(refuse: fn(&str) -> bool) -> Hook {
    Arc::new(move |call: &Call| {
        let sts = group_path("apps/v1", "statefulsets", "orders");
        if call.method == "GET" && call.path == sts {
            return Some((
                StatusCode::OK,
                serde_json::json!({
                    "apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": { "name": "orders", "namespace": NS },
                    "spec": {
                        "serviceName": "orders-headless",
                        "selector": { "matchLabels": { "app.kubernetes.io/instance": "orders" } },
                        "template": {},
                        "volumeClaimTemplates": [{
                            "metadata": { "name": "data" },
                            "spec": { "resources": { "requests": { "storage": "1Gi" } } }
                        }]
                    }
                }),
            ));
        }
        let claim = call
            .path
            .strip_prefix(&format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/"))?
            .to_owned();
        match call.method.as_str() {
            "GET" => Some((
                StatusCode::OK,
                serde_json::json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": { "name": claim, "namespace": NS },
                    "spec": { "resources": { "requests": { "storage": "1Gi" } } },
                    "status": { "phase": "Bound" }
                }),
            )),
            "PATCH" if refuse(&claim) => Some((
                StatusCode::FORBIDDEN,
                serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": "Forbidden", "code": 403,
                    "message": format!(
                        "persistentvolumeclaims \"{claim}\" is forbidden: only dynamically \
                         provisioned pvc can be resized and the storageclass that provisions \
                         the pvc must support resize"
                    )
                }),
            )),
            "PATCH" => Some((StatusCode::OK, call.body.clone())),
            _ => None,
        }
    })
}

fn events_with_reason<'a>(calls: &'a [Call], reason: &str) -> Vec<&'a Call> {
    calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/events") && c.body["reason"] == reason)
        .collect()
}

fn status_condition(calls: &[Call], type_: &str) -> serde_json::Value {
    let status = calls
        .iter()
        .rfind(|c| c.path.ends_with("/orders/status"))
        .expect("status patch");
    status.body["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_else(|| panic!("{type_} in {status:?}"))
}

#[tokio::test]
async fn refused_volume_growth_is_degraded_and_the_statefulset_is_still_applied() {
    let bg = group(serde_json::json!({ "storage": { "size": "2Gi" } }));
    let calls = calls_of_one_reconcile_with(bg, grown_storage_hook(|_| true)).await;
    let pvc_patches: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.method == "PATCH" && c.path.contains("/persistentvolumeclaims/"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(pvc_patches.len(), 2, "{calls:?}");
    let sts_apply = calls
        .iter()
        .position(|c| {
            c.method == "PATCH" && c.path == group_path("apps/v1", "statefulsets", "orders")
        })
        .expect("the StatefulSet is applied although growth was refused");
    assert!(pvc_patches.iter().all(|i| *i < sts_apply), "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|c| c.method == "PATCH" && c.path == core("pods", "orders-0")),
        "the master label is still kept: {calls:?}"
    );

    let warnings = events_with_reason(&calls, "VolumeExpansionFailed");
    assert_eq!(warnings.len(), 1, "{calls:?}");
    assert_eq!(warnings[0].body["type"], "Warning");
    let note = warnings[0].body["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("data-orders-0 to 2Gi refused") && note.contains("must support resize"),
        "{note}"
    );
    assert!(events_with_reason(&calls, "VolumeExpanding").is_empty());

    let degraded = status_condition(&calls, "Degraded");
    assert_eq!(degraded["status"], "True", "{degraded}");
    assert_eq!(degraded["reason"], "VolumeExpansionFailed");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or_default()
            .contains("data-orders-1 to 2Gi refused"),
        "{degraded}"
    );
}

#[tokio::test]
async fn volume_growth_is_asked_for_and_told_in_an_event() {
    let bg = group(serde_json::json!({ "storage": { "size": "2Gi" } }));
    let calls = calls_of_one_reconcile_with(bg, grown_storage_hook(|_| false)).await;
    let patches: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.contains("/persistentvolumeclaims/"))
        .collect();
    assert_eq!(patches.len(), 2, "{calls:?}");
    for p in &patches {
        assert_eq!(
            p.body["spec"]["resources"]["requests"]["storage"], "2Gi",
            "{p:?}"
        );
    }
    let told = events_with_reason(&calls, "VolumeExpanding");
    assert_eq!(told.len(), 1, "{calls:?}");
    assert_eq!(
        told[0].body["note"],
        "asked data-orders-0, data-orders-1 to grow to 2Gi"
    );
    assert_eq!(status_condition(&calls, "Degraded")["status"], "False");
}

const GROUP_UID: &str = "0b1c2d3e-0000-4000-8000-000000000001";

/// An object as the operator labelled it earlier: `app` is ferrum-broker or ferrum-namesrv.
fn owned(kind: &str, name: &str, app: &str, instance: &str, controller: bool) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": if kind == "Deployment" { "apps/v1" } else { "v1" },
        "kind": kind,
        "metadata": {
            "name": name, "namespace": NS, "uid": format!("uid-{name}"),
            "labels": {
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/instance": instance,
                "app.kubernetes.io/managed-by": "ferrum-operator",
                "ferrum.dev/cluster": "c1"
            },
            "ownerReferences": [{
                "apiVersion": "ferrum.dev/v1alpha1", "kind": "BrokerGroup", "name": "orders",
                "uid": GROUP_UID, "controller": controller
            }]
        }
    })
}

#[tokio::test]
async fn objects_no_longer_in_the_spec_are_pruned_and_told() {
    // Earlier: three NameServers and external access for both pods. Now: one NameServer and
    // no external access.
    let bg = group(serde_json::json!({
        "nameServer": { "replicas": 1, "image": "ferrum/namesrv:test" }
    }));
    let hook: Hook = Arc::new(|call: &Call| {
        let list = |items: Vec<serde_json::Value>| {
            Some((
                StatusCode::OK,
                serde_json::json!({ "metadata": {}, "items": items }),
            ))
        };
        match (call.method.as_str(), call.path.as_str()) {
            ("GET", p) if p.ends_with("/services") => {
                let mut foreign = owned(
                    "Service",
                    "orders-9-external",
                    "ferrum-broker",
                    "orders",
                    true,
                );
                foreign["metadata"]["ownerReferences"] = serde_json::json!([]);
                list(vec![
                    owned(
                        "Service",
                        "c1-namesrv",
                        "ferrum-namesrv",
                        "c1-namesrv",
                        false,
                    ),
                    owned(
                        "Service",
                        "c1-namesrv-0",
                        "ferrum-namesrv",
                        "c1-namesrv",
                        false,
                    ),
                    owned(
                        "Service",
                        "c1-namesrv-1",
                        "ferrum-namesrv",
                        "c1-namesrv",
                        false,
                    ),
                    owned(
                        "Service",
                        "c1-namesrv-2",
                        "ferrum-namesrv",
                        "c1-namesrv",
                        false,
                    ),
                    owned(
                        "Service",
                        "orders-headless",
                        "ferrum-broker",
                        "orders",
                        true,
                    ),
                    owned("Service", "orders-master", "ferrum-broker", "orders", true),
                    owned(
                        "Service",
                        "orders-0-external",
                        "ferrum-broker",
                        "orders",
                        true,
                    ),
                    owned(
                        "Service",
                        "orders-1-external",
                        "ferrum-broker",
                        "orders",
                        true,
                    ),
                    owned(
                        "Service",
                        "billing-0-external",
                        "ferrum-broker",
                        "billing",
                        true,
                    ),
                    foreign,
                ])
            }
            ("GET", p) if p.ends_with("/deployments") => list(vec![
                owned(
                    "Deployment",
                    "c1-namesrv-0",
                    "ferrum-namesrv",
                    "c1-namesrv",
                    false,
                ),
                owned(
                    "Deployment",
                    "c1-namesrv-1",
                    "ferrum-namesrv",
                    "c1-namesrv",
                    false,
                ),
                owned(
                    "Deployment",
                    "c1-namesrv-2",
                    "ferrum-namesrv",
                    "c1-namesrv",
                    false,
                ),
            ]),
            ("DELETE", _) => Some((
                StatusCode::OK,
                serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"
                }),
            )),
            _ => None,
        }
    });
    let calls = calls_of_one_reconcile_with(bg, hook).await;
    let lists: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            c.method == "GET" && (c.path.ends_with("/services") || c.path.ends_with("/deployments"))
        })
        .collect();
    assert_eq!(lists.len(), 2, "{calls:?}");
    for l in &lists {
        assert!(
            l.query
                .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dferrum-operator")
                && l.query.contains("ferrum.dev%2Fcluster%3Dc1"),
            "{l:?}"
        );
    }
    let deleted: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        deleted,
        vec![
            core("services", "c1-namesrv-1"),
            core("services", "c1-namesrv-2"),
            core("services", "orders-0-external"),
            core("services", "orders-1-external"),
            group_path("apps/v1", "deployments", "c1-namesrv-1"),
            group_path("apps/v1", "deployments", "c1-namesrv-2"),
        ]
    );
    let delete = calls
        .iter()
        .find(|c| c.method == "DELETE")
        .expect("a delete");
    assert_eq!(
        delete.body["preconditions"]["uid"], "uid-c1-namesrv-1",
        "only the object that was listed is deleted: {delete:?}"
    );
    let sts_apply = calls
        .iter()
        .position(|c| c.method == "PATCH" && c.path.ends_with("/statefulsets/orders"))
        .expect("StatefulSet applied");
    let first_delete = calls
        .iter()
        .position(|c| c.method == "DELETE")
        .expect("deletes");
    assert!(
        sts_apply < first_delete,
        "pruning comes after everything wanted is applied"
    );
    let told = events_with_reason(&calls, "Pruned");
    assert_eq!(told.len(), 1, "{calls:?}");
    assert_eq!(
        told[0].body["note"],
        "deleted Service/c1-namesrv-1, Service/c1-namesrv-2, Service/orders-0-external, \
         Service/orders-1-external, Deployment/c1-namesrv-1, Deployment/c1-namesrv-2 \
         (no longer in the spec)"
    );
}

#[tokio::test]
async fn an_unreadable_topic_is_reported_and_skipped() {
    use kube::core::DeserializeGuard;
    let raw = serde_json::json!({
        "apiVersion": "ferrum.dev/v1alpha1",
        "kind": "Topic",
        "metadata": {
            "name": "broken", "namespace": NS, "uid": "0b1c2d3e-0000-4000-8000-000000000003",
            "generation": 1, "resourceVersion": "11"
        },
        "spec": { "clusterName": "c1", "readQueueNums": "many" }
    });
    let (client, calls, server) = mock_server(raw.clone());
    let guard: DeserializeGuard<ferrum_operator::crd::Topic> =
        serde_json::from_value(raw).expect("the guard always deserializes");
    assert!(guard.0.is_err());
    let action = tokio::time::timeout(
        Duration::from_secs(30),
        ferrum_operator::topic_controller::guarded_reconcile(
            Arc::new(guard),
            Arc::new(Context::new(client)),
        ),
    )
    .await
    .expect("in time")
    .expect("an unreadable object is not an error");
    server.abort();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let calls = calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 1, "only an Event: {calls:?}");
    let ev = &calls[0];
    assert_eq!(
        (ev.method.as_str(), ev.path.as_str()),
        (
            "POST",
            format!("/apis/events.k8s.io/v1/namespaces/{NS}/events").as_str()
        )
    );
    assert_eq!(ev.body["reason"], "Unreadable");
    assert_eq!(ev.body["type"], "Warning");
    assert_eq!(ev.body["regarding"]["name"], "broken");
    assert_eq!(ev.body["regarding"]["kind"], "Topic");
}

#[tokio::test]
async fn a_topic_of_a_cluster_being_deleted_does_not_block_its_deletion() {
    let mut t = topic(&[ferrum_operator::topic_controller::TOPIC_FINALIZER]);
    t["metadata"]["deletionTimestamp"] = serde_json::json!("2026-01-01T00:00:00Z");
    let mut bg = group(serde_json::json!({}));
    bg["metadata"]["deletionTimestamp"] = serde_json::json!("2026-01-01T00:00:00Z");
    bg["metadata"]["finalizers"] = serde_json::json!(["foregroundDeletion"]);
    let hook: Hook = Arc::new(move |call: &Call| {
        (call.method == "GET" && call.path.ends_with("/brokergroups")).then(|| {
            (
                StatusCode::OK,
                serde_json::json!({
                    "apiVersion": "ferrum.dev/v1alpha1", "kind": "BrokerGroupList",
                    "metadata": { "resourceVersion": "7" }, "items": [bg]
                }),
            )
        })
    });
    let (client, calls, server) = mock_server_with(t.clone(), hook);
    // The NameServer address refuses at once: without the check the cleanup would fail (and
    // be retried for as long as the group is being deleted).
    let ctx = Context::new(client)
        .with_namesrv_overrides(NamesrvOverrides::parse(&["c1=127.0.0.1:1"]).expect("override"));
    let t: ferrum_operator::crd::Topic = serde_json::from_value(t).expect("topic");
    tokio::time::timeout(
        Duration::from_secs(30),
        ferrum_operator::topic_controller::reconcile(Arc::new(t), Arc::new(ctx)),
    )
    .await
    .expect("reconcile in time")
    .expect("the cleanup succeeds");
    server.abort();
    let calls = calls.lock().expect("calls").clone();
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str()))
        .collect();
    let groups = format!("/apis/ferrum.dev/v1alpha1/namespaces/{NS}/brokergroups");
    let events = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
    let topic_path = group_path("ferrum.dev/v1alpha1", "topics", "orders");
    assert_eq!(
        seen,
        vec![
            ("GET", groups.as_str()),
            ("POST", events.as_str()),
            ("PATCH", topic_path.as_str()),
        ]
    );
    assert_eq!(calls[1].body["reason"], "ClusterDeleting");
    // The finalizer goes (a JSON patch that removes it).
    assert!(calls[2].body.is_array(), "{:?}", calls[2]);
    assert!(
        calls[2].body.to_string().contains("remove"),
        "{:?}",
        calls[2].body
    );
}

#[tokio::test]
async fn a_paused_group_applies_nothing_and_says_so() {
    let mut bg = group(serde_json::json!({}));
    bg["metadata"]["annotations"] = serde_json::json!({ "ferrum.dev/paused": "true" });
    let calls = calls_of_one_reconcile(bg).await;
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str()))
        .collect();
    let list = format!("/apis/ferrum.dev/v1alpha1/namespaces/{NS}/brokergroups");
    let events = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
    let status = group_path("ferrum.dev/v1alpha1", "brokergroups", "orders/status");
    // Only the sibling list (a read), the Event and the group's own status: no object is
    // applied, no pod labelled, no claim grown, nothing pruned.
    assert_eq!(
        seen,
        vec![
            ("GET", list.as_str()),
            ("POST", events.as_str()),
            ("PATCH", status.as_str()),
        ]
    );
    assert_eq!(calls[1].body["reason"], "Paused");
    let paused = status_condition(&calls, "ReconciliationPaused");
    assert_eq!(paused["status"], "True", "{paused}");
    assert_eq!(status_condition(&calls, "Progressing")["reason"], "Paused");
}

/// A pass started from a cached object older than the status written right after a
/// promotion: the stored status already names the promoted replica, so it is not promoted
/// again (which would be refused, the target being master by then) and the status keeps it.
#[tokio::test]
async fn a_stale_cached_status_does_not_undo_a_promotion() {
    let mut bg = group(serde_json::json!({ "promote": 1 }));
    bg["status"] = serde_json::json!({ "masterOrdinal": 0, "master": "orders-0" });
    let mut fresh = bg.clone();
    fresh["status"] = serde_json::json!({ "masterOrdinal": 1, "master": "orders-1" });
    // The pass lists the groups from the API server; that list holds the stored status.
    let hook: Hook = Arc::new(move |call: &Call| {
        (call.method == "GET" && call.path.ends_with("/brokergroups")).then(|| {
            (
                StatusCode::OK,
                serde_json::json!({
                    "apiVersion": "ferrum.dev/v1alpha1", "kind": "BrokerGroupList",
                    "metadata": { "resourceVersion": "8" }, "items": [fresh.clone()]
                }),
            )
        })
    });
    let calls = calls_of_one_reconcile_with(bg, hook).await;
    assert!(
        events_with_reason(&calls, "PromotionRefused").is_empty(),
        "{calls:?}"
    );
    assert!(
        events_with_reason(&calls, "Promoted").is_empty(),
        "{calls:?}"
    );
    let status = calls
        .iter()
        .rfind(|c| c.method == "PATCH" && c.path.ends_with("/orders/status"))
        .expect("status patch");
    assert_eq!(status.body["status"]["masterOrdinal"], 1, "{status:?}");
    assert_eq!(status.body["status"]["master"], "orders-1", "{status:?}");
}

/// Without a promotion recorded anywhere, a target that does not answer is refused and told
/// in an Event, and the status keeps the old master.
#[tokio::test]
async fn an_unreachable_promotion_target_is_refused_and_the_master_kept() {
    let mut bg = group(serde_json::json!({ "promote": 1 }));
    bg["status"] = serde_json::json!({ "masterOrdinal": 0, "master": "orders-0" });
    let calls = calls_of_one_reconcile(bg).await;
    assert_eq!(
        events_with_reason(&calls, "PromotionRefused").len(),
        1,
        "{calls:?}"
    );
    let status = calls
        .iter()
        .rfind(|c| c.method == "PATCH" && c.path.ends_with("/orders/status"))
        .expect("status patch");
    assert_eq!(status.body["status"]["masterOrdinal"], 0, "{status:?}");
}
