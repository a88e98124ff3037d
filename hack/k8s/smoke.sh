#!/usr/bin/env bash
# Checks that the node of node-up.sh really runs pods, step by step, each step asserted and
# timed (wall time is printed, never asserted):
#   1. a Deployment of the local testbox image reaches Ready; the host reaches its pod IP
#   2. a Service + its DNS name resolve and answer from another pod (a Job), short name too,
#      and the apiserver answers through the `kubernetes` Service with the pod's mounted CA
#   3. a StatefulSet pod with a PVC (pre-made local PV, no-provisioner StorageClass) is Ready
#      and wrote to its volume
#   4. deleting that pod → a new pod, Ready, same volume (two boots recorded); deleting the
#      Deployment's pod → a replacement pod Ready
# Leaves nothing behind (namespace, PV, StorageClass deleted) unless SMOKE_KEEP=1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
. "$here/node-env.sh"

NS=ferrum-smoke
K=("$K8S_BIN/kubectl" --kubeconfig "$D/kubeconfig")
PV_DIR="$N/pv/store-0"
t0=$(date +%s%N)
step_t=$t0
secs() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
pass() { echo "smoke: PASS $* ($(secs "$step_t") s)"; step_t=$(date +%s%N); }
fail() {
  echo "smoke: FAIL $*" >&2
  "${K[@]}" -n "$NS" get all,pvc -o wide >&2 2>/dev/null || true
  "${K[@]}" -n "$NS" get events --sort-by=.lastTimestamp >&2 2>/dev/null | tail -20 || true
  exit 1
}
# kube-proxy programs a new Service or endpoint within its sync period, so the first request
# may come too early: try for up to 30 s.
fetch() { # url
  local out
  for _ in $(seq 1 30); do
    out=$(curl -sf --max-time 3 "$1") && { echo "$out"; return 0; }
    sleep 1
  done
  return 1
}
cleanup() {
  [ "${SMOKE_KEEP:-0}" = 1 ] && return
  "${K[@]}" delete namespace "$NS" --ignore-not-found --wait=true --timeout=90s >/dev/null 2>&1 || true
  "${K[@]}" delete pv ferrum-smoke-store-0 --ignore-not-found >/dev/null 2>&1 || true
  "${K[@]}" delete storageclass ferrum-smoke-local --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT

st="$("${K[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
[ "$st" = True ] || fail "node $NODE_NAME is not Ready (run node-up.sh first)"

"${K[@]}" delete namespace "$NS" --ignore-not-found --wait=true --timeout=90s >/dev/null
"${K[@]}" create namespace "$NS" >/dev/null
# The ServiceAccount controller creates `default`; pods are refused until it exists.
for _ in $(seq 1 30); do "${K[@]}" -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 1; done

# --- 1. Deployment of a local image -------------------------------------------------------------
"${K[@]}" -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 1
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: web
        image: $TESTBOX_IMAGE
        imagePullPolicy: Never
        args: [serve, -addr, ":8080"]
        ports: [ { containerPort: 8080, name: http } ]
        readinessProbe: { httpGet: { path: /healthz, port: http }, periodSeconds: 1 }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [ { name: http, port: 80, targetPort: http } ]
YAML
"${K[@]}" -n "$NS" rollout status deployment/web --timeout=120s >/dev/null || fail "Deployment web not Ready"
web_pod=$("${K[@]}" -n "$NS" get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
web_ip=$("${K[@]}" -n "$NS" get pod "$web_pod" -o jsonpath='{.status.podIP}')
body=$(fetch "http://$web_ip:8080/") || fail "host cannot reach pod $web_pod at $web_ip:8080"
[ "$body" = "$web_pod" ] || fail "pod $web_pod answered '$body'"
pass "1. pod $web_pod of image $TESTBOX_IMAGE Ready at $web_ip, answers its name"

# --- 2. Service, DNS from another pod, apiserver through the kubernetes Service -------------------
svc_ip=$("${K[@]}" -n "$NS" get service web -o jsonpath='{.spec.clusterIP}')
body=$(fetch "http://$svc_ip/") || fail "host cannot reach Service web at $svc_ip:80"
[ "$body" = "$web_pod" ] || fail "Service web answered '$body'"
"${K[@]}" -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: batch/v1
kind: Job
metadata: { name: client }
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      initContainers:
      - name: fqdn
        image: $TESTBOX_IMAGE
        imagePullPolicy: Never
        args: [get, -timeout, 60s, "http://web.$NS.svc.cluster.local/"]
      - name: short-name
        image: $TESTBOX_IMAGE
        imagePullPolicy: Never
        args: [get, -timeout, 30s, "http://web/"]
      containers:
      - name: apiserver
        image: $TESTBOX_IMAGE
        imagePullPolicy: Never
        args: [get, -timeout, 30s, -cacert, /var/run/secrets/kubernetes.io/serviceaccount/ca.crt,
               "https://kubernetes.default.svc/readyz"]
YAML
"${K[@]}" -n "$NS" wait --for=condition=complete job/client --timeout=120s >/dev/null || {
  for c in fqdn short-name apiserver; do "${K[@]}" -n "$NS" logs job/client -c "$c" >&2 2>/dev/null || true; done
  fail "Job client did not complete (Service/DNS/apiserver from a pod)"
}
out=$("${K[@]}" -n "$NS" logs job/client -c fqdn 2>/dev/null || true)
case $out in
  *"-> 200"*"$web_pod"*) ;;
  *) fail "client's fqdn container printed '$out', not $web_pod's name" ;;
esac
pass "2. Service web ($svc_ip) answers by DNS name web.$NS.svc.cluster.local and 'web' from a pod; apiserver reachable at kubernetes.default.svc"

# --- 3. StatefulSet with a PVC on a pre-made local PV ---------------------------------------------
mkdir -p "$PV_DIR"
chmod 0777 "$PV_DIR"
"${K[@]}" apply -f - >/dev/null <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: { name: ferrum-smoke-local }
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolume
metadata: { name: ferrum-smoke-store-0 }
spec:
  capacity: { storage: 1Gi }
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ferrum-smoke-local
  local: { path: "$PV_DIR" }
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [ { key: kubernetes.io/hostname, operator: In, values: ["$NODE_NAME"] } ]
YAML
"${K[@]}" -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: { name: store }
spec:
  clusterIP: None
  selector: { app: store }
  ports: [ { name: http, port: 8080 } ]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: store }
spec:
  serviceName: store
  replicas: 1
  selector: { matchLabels: { app: store } }
  template:
    metadata: { labels: { app: store } }
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: store
        image: $TESTBOX_IMAGE
        imagePullPolicy: Never
        args: [serve, -addr, ":8080", -data, /data]
        ports: [ { containerPort: 8080, name: http } ]
        readinessProbe: { httpGet: { path: /healthz, port: http }, periodSeconds: 1 }
        volumeMounts: [ { name: data, mountPath: /data } ]
  volumeClaimTemplates:
  - metadata: { name: data }
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: ferrum-smoke-local
      resources: { requests: { storage: 1Gi } }
YAML
"${K[@]}" -n "$NS" rollout status statefulset/store --timeout=120s >/dev/null || fail "StatefulSet store not Ready"
pvc=$("${K[@]}" -n "$NS" get pvc data-store-0 -o jsonpath='{.status.phase}/{.spec.volumeName}')
[ "$pvc" = Bound/ferrum-smoke-store-0 ] || fail "PVC data-store-0 is '$pvc'"
uid1=$("${K[@]}" -n "$NS" get pod store-0 -o jsonpath='{.metadata.uid}')
ip1=$("${K[@]}" -n "$NS" get pod store-0 -o jsonpath='{.status.podIP}')
boots=$(fetch "http://$ip1:8080/boots" | wc -l)
[ "$boots" = 1 ] || fail "store-0 recorded $boots boots, expected 1"
[ "$(wc -l < "$PV_DIR/boots")" = 1 ] || fail "the PV's directory does not hold store-0's boots file"
pass "3. StatefulSet pod store-0 Ready with PVC data-store-0 bound to ferrum-smoke-store-0, wrote to it"

# --- 4. pod deletion → recreated ---------------------------------------------------------------------
"${K[@]}" -n "$NS" delete pod store-0 --wait=true --timeout=60s >/dev/null || fail "store-0 not deleted"
ok=0
for _ in $(seq 1 120); do
  uid2=$("${K[@]}" -n "$NS" get pod store-0 -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
  ready=$("${K[@]}" -n "$NS" get pod store-0 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
  if [ -n "$uid2" ] && [ "$uid2" != "$uid1" ] && [ "$ready" = True ]; then ok=1; break; fi
  sleep 1
done
[ "$ok" = 1 ] || fail "store-0 was not recreated and Ready within 120 s"
ip2=$("${K[@]}" -n "$NS" get pod store-0 -o jsonpath='{.status.podIP}')
boots=$(fetch "http://$ip2:8080/boots" | wc -l)
[ "$boots" = 2 ] || fail "recreated store-0 sees $boots boots on its volume, expected 2"
pass "4a. store-0 deleted → recreated (uid $uid1 → $uid2), Ready, same volume (2 boots)"

"${K[@]}" -n "$NS" delete pod "$web_pod" --wait=true --timeout=60s >/dev/null || fail "$web_pod not deleted"
"${K[@]}" -n "$NS" rollout status deployment/web --timeout=120s >/dev/null || fail "web not Ready again"
ok=0
for _ in $(seq 1 60); do
  # The pod not being deleted (no deletionTimestamp: one field on its line).
  new_pod=$("${K[@]}" -n "$NS" get pods -l app=web \
    -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}' 2>/dev/null |
    awk 'NF == 1 {print $1}' | head -1 || true)
  if [ -n "$new_pod" ] && [ "$new_pod" != "$web_pod" ]; then
    body=$(curl -sf --max-time 3 "http://$svc_ip/" || true)
    [ "$body" = "$new_pod" ] && { ok=1; break; }
  fi
  sleep 1
done
[ "$ok" = 1 ] || fail "Service web does not answer from a replacement of $web_pod"
pass "4b. $web_pod deleted → $new_pod Ready and behind Service web"

echo "smoke: all steps passed in $(secs "$t0") s"
