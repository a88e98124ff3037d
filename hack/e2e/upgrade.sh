#!/usr/bin/env bash
# Rolling upgrades on the real single-node cluster (root), under continuous produce/consume:
#
#   1. images: tag A = the archive cluster.sh would use (HEAD's sources; rebuilt when stale),
#      tag B = a second real podman build of the broker image on top of A with another label
#      (a different image ID, so containerd and the kubelet really run new containers);
#      control plane + node, both imported, `helm install` the operator (tag A)
#   2. one cluster on local PVs: a Raft group of 3 (`up-raft`) and a MasterSlave group,
#      master + 2 slaves, SYNC_MASTER (`up-ms`); without the Raft group, a one-broker group
#      that stays on A (`up-side`), so producers have another master while up-ms's restarts;
#      a Topic on every group
#   3. load: a live consumer Job (ferrumctl consume --commit) and a loop of checker Jobs
#      (ferrumctl message send --count, sequential, every acknowledged unique id printed);
#      a Job that stops at a send that failed after the client's retries counts one failure
#      and the loop starts the next one
#   4. `kubectl patch` spec.image A → B of the Raft group, wait until the roll is over (no
#      status.roll, every pod Ready on B at the update revision); then the same for the
#      MasterSlave group. Prints each upgrade's wall time and the operator's Restarting,
#      LeadershipTransferred and Promoted Events
#   5. checker: every acknowledged unique id is read back by a new group reading from the
#      beginning (asserted: 0 lost); what the live consumer got while the groups restarted is
#      reported beside it; duplicates are reported (at-least-once); prints acknowledged,
#      failed sends after retries, lost, duplicates
#   6. teardown as cluster.sh (node-down leaves no mounts or rules)
#
# Environment: FERRUM_E2E_IMAGES=reuse|build, FERRUM_E2E_KEEP=1 (as cluster.sh),
#   FERRUM_UPGRADE_BATCH=N messages per checker Job (default 200),
#   FERRUM_UPGRADE_GROUPS="raft ms" which groups to upgrade (default both).
# Run it under the node lock: flock /tmp/ferrum-node.lock bash hack/e2e/upgrade.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
k8s="$repo/hack/k8s"
export FERRUM_K8S_DIR="${FERRUM_K8S_DIR:-${TMPDIR:-/tmp}/ferrum-e2e-upgrade}"
. "$k8s/env.sh"
. "$k8s/node-env.sh"

if [ "$(id -u)" != 0 ]; then
  echo "upgrade.sh: must run as root (containerd, iptables, mounts, podman)" >&2
  exit 1
fi

OP_NS=ferrum-system
OP_DEPLOY=ferrum
NS=ferrum-upgrade
CLUSTER=up
RAFT=up-raft
MS=up-ms
SIDE=up-side
TOPIC=UpgradeCheck
SC=ferrum-upgrade-local
PV_ROOT="$N/pv/upgrade"
BATCH="${FERRUM_UPGRADE_BATCH:-200}"
UPGRADE_GROUPS="${FERRUM_UPGRADE_GROUPS:-raft ms}"
K=("$K8S_BIN/kubectl" --kubeconfig "$D/kubeconfig")
CACHE="${FERRUM_K8S_CACHE:-$HOME/.cache/ferrum}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferrum-upgrade.XXXXXX")"
STOP="$WORK/stop-load"

t_all=$(date +%s%N)
step_t=$t_all
secs() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
say() { echo "upgrade [$(secs "$t_all") s] $*"; }
pass() { echo "upgrade: PASS $* ($(secs "$step_t") s)"; step_t=$(date +%s%N); }
diagnose() {
  [ -f "$D/kubeconfig" ] || return 0
  "${K[@]}" -n "$OP_NS" logs "deployment/$OP_DEPLOY" --tail=60 >&2 2>/dev/null || true
  "${K[@]}" -n "$NS" get pods,pvc,brokergroups,topics -o wide >&2 2>/dev/null || true
  for g in "$RAFT" "$MS" "$SIDE"; do
    "${K[@]}" -n "$NS" get brokergroup "$g" -o jsonpath='{.status}' >&2 2>/dev/null && echo >&2 || true
  done
  "${K[@]}" -n "$NS" get events --sort-by=.lastTimestamp >&2 2>/dev/null | tail -40 || true
}
fail() {
  echo "upgrade: FAIL $*" >&2
  diagnose
  exit 1
}

load_pid=""
torn_down=0
cleanup() {
  local rc=$?
  touch "$STOP"
  [ -z "$load_pid" ] || kill "$load_pid" 2>/dev/null || true
  if [ "${FERRUM_E2E_KEEP:-0}" = 1 ]; then
    echo "upgrade: FERRUM_E2E_KEEP=1, left running; kubeconfig $D/kubeconfig; logs in $WORK;" \
      "remove with FERRUM_K8S_DIR=$FERRUM_K8S_DIR hack/k8s/node-down.sh && hack/k8s/down.sh"
    return
  fi
  if [ "$torn_down" != 1 ]; then
    "$k8s/node-down.sh" >/dev/null 2>&1 || echo "upgrade: node-down.sh failed" >&2
    "$k8s/down.sh" >/dev/null 2>&1 || echo "upgrade: down.sh failed" >&2
    ! mountpoint -q "$PV_ROOT" || umount "$PV_ROOT" || echo "upgrade: umount $PV_ROOT failed" >&2
    rm -rf "$PV_ROOT"
  fi
  if [ "$rc" = 0 ]; then
    rm -rf "$WORK"
  else
    echo "upgrade: client logs kept in $WORK" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT

wait_for() {
  local limit=$1
  shift
  local end=$(( $(date +%s) + limit ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 2
  done
}

# Starts ferrumctl from the tools image as Job $1 with the remaining arguments.
start_job() {
  local name=$1
  shift
  local args="" a
  for a in "$@"; do args+="$(printf '%s' "$a" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))'), "; done
  "${K[@]}" -n "$NS" delete job "$name" --ignore-not-found --wait=true >/dev/null
  "${K[@]}" -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: batch/v1
kind: Job
metadata: { name: $name, labels: { ferrum.dev/upgrade-client: "true" } }
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: ferrumctl
        image: $TOOLS_IMAGE
        imagePullPolicy: Never
        env: [ { name: FERRUM_NAMESRV, value: "$NAMESRV_ADDR" }, { name: RUST_LOG, value: warn } ]
        args: [ ${args%, } ]
YAML
}

# Waits up to $2 s for Job $1 to end; prints "ok" or "failed" (or "running" at the limit).
job_end() {
  local name=$1 limit=$2 st=""
  local end=$(( $(date +%s) + limit ))
  while [ "$(date +%s)" -lt "$end" ]; do
    st="$("${K[@]}" -n "$NS" get job "$name" -o jsonpath='{.status.succeeded}/{.status.failed}' 2>/dev/null || true)"
    case $st in 1/*) echo ok; return ;; */1) echo failed; return ;; esac
    sleep 1
  done
  echo running
}

# --- 1. images, cluster, chart ---------------------------------------------------------------
image_sources=(Cargo.toml Cargo.lock protocol store broker namesrv client operator Dockerfile .dockerignore)
archive="$(ls -t "$CACHE"/images/ferrum-images-*.tar 2>/dev/null | head -1 || true)"
mode="${FERRUM_E2E_IMAGES:-auto}"
if [ "$mode" = auto ] && [ -n "$archive" ]; then
  arev="$(basename "$archive" .tar)"
  arev="${arev##*-}"
  if git -C "$repo" diff --quiet "$arev" HEAD -- "${image_sources[@]}" 2>/dev/null; then
    mode=reuse
  else
    say "the newest archive ($(basename "$archive")) is older than HEAD's sources: rebuilding"
    mode=build
  fi
fi
if [ "$mode" = build ] || [ -z "$archive" ]; then
  say "make images (hack/images/build.sh)"
  bash "$repo/hack/images/build.sh"
  archive="$(ls -t "$CACHE"/images/ferrum-images-*.tar | head -1)"
else
  say "reusing $archive"
fi
TAG="$(basename "$archive" .tar)"
TAG="${TAG#ferrum-images-}"
IMAGE_A="ferrum/broker:$TAG"
IMAGE_B="ferrum/broker:$TAG-b"
NAMESRV_IMAGE="ferrum/namesrv:$TAG"
TOOLS_IMAGE="ferrum/tools:$TAG"
# Tag B: a second build with its own label on top of A, so the image ID differs.
cat >"$WORK/Containerfile" <<EOF
FROM docker.io/$IMAGE_A
LABEL dev.ferrum.e2e.upgrade="b" dev.ferrum.e2e.built-from="$IMAGE_A"
EOF
. "$repo/hack/images/env.sh"
podman build --runtime "$PODMAN_RUNTIME" --pull=never -q \
  -t "docker.io/$IMAGE_B" -f "$WORK/Containerfile" "$WORK" >/dev/null
id_a="$(podman image inspect --format '{{.Id}}' "docker.io/$IMAGE_A")"
id_b="$(podman image inspect --format '{{.Id}}' "docker.io/$IMAGE_B")"
[ -n "$id_a" ] && [ "$id_a" != "$id_b" ] || fail "images A and B are the same ($id_a)"
podman save -q --format docker-archive -o "$WORK/broker-b.tar" "docker.io/$IMAGE_B"
pass "1a. images: A $IMAGE_A (${id_a:0:12}), B $IMAGE_B (${id_b:0:12})"

"$k8s/build.sh" node
FERRUM_K8S_ADVERTISE_ADDRESS="${FERRUM_NODE_IP:-$("$k8s/node-ip.sh")}" "$k8s/up.sh" >/dev/null
"$k8s/node-up.sh"
"$k8s/node-load.sh" "$archive" "$WORK/broker-b.tar" >/dev/null
imported="$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q)"
for img in "docker.io/$IMAGE_A" "docker.io/$IMAGE_B" "docker.io/ferrum/operator:$TAG" "docker.io/$TOOLS_IMAGE"; do
  grep -qx "$img" <<<"$imported" || fail "$img is not in the node's containerd after import"
done
HELM="$(bash "$repo/hack/chart/helm.sh")"
"$HELM" --kubeconfig "$D/kubeconfig" install ferrum "$repo/charts/ferrum" \
  --namespace "$OP_NS" --create-namespace \
  --set "image.operator.tag=$TAG" --set image.operator.pullPolicy=Never \
  --set "image.broker.tag=$TAG" --set "image.namesrv.tag=$TAG" --set "image.tools.tag=$TAG" \
  --wait --timeout 180s >/dev/null || fail "helm install ferrum did not become Ready"
pass "1b. control plane + node up, images imported, operator installed"

# --- 2. two groups of one cluster --------------------------------------------------------------
"${K[@]}" create namespace "$NS" >/dev/null
wait_for 30 "${K[@]}" -n "$NS" get serviceaccount default || fail "no default ServiceAccount in $NS"
# The local PVs live on a tmpfs of their own: brokers refuse writes once their disk is 90%
# full (RocketMQ's diskSpaceWarningLevelRatio), and a shared build machine's disk can be.
mkdir -p "$PV_ROOT"
mountpoint -q "$PV_ROOT" || mount -t tmpfs -o size=4g ferrum-upgrade-pv "$PV_ROOT"
pvs=""
for g in "$RAFT" "$MS" "$SIDE"; do
  for i in 0 1 2; do
    [ "$g" != "$SIDE" ] || [ "$i" = 0 ] || continue
    mkdir -p "$PV_ROOT/$g-$i"
    chmod 0777 "$PV_ROOT/$g-$i"
    pvs+="---
apiVersion: v1
kind: PersistentVolume
metadata: { name: ferrum-upgrade-$g-$i, labels: { ferrum.dev/e2e: \"upgrade\" } }
spec:
  capacity: { storage: 2Gi }
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $SC
  claimRef: { namespace: $NS, name: data-$g-$i }
  local: { path: \"$PV_ROOT/$g-$i\" }
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [ { key: kubernetes.io/hostname, operator: In, values: [\"$NODE_NAME\"] } ]
"
  done
done
"${K[@]}" apply -f - >/dev/null <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: { name: $SC }
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
$pvs
YAML

group_yaml() {
  local name=$1 mode=$2 replicas=$3 image=$4 role=$5
  cat <<YAML
apiVersion: ferrum.dev/v1alpha1
kind: BrokerGroup
metadata: { name: $name }
spec:
  clusterName: $CLUSTER
  mode: $mode
  replicas: $replicas
  image: $image
  imagePullPolicy: Never
  replication: { brokerRole: $role }
  storage: { size: 2Gi, storageClassName: $SC }
  resources:
    requests: { cpu: 50m, memory: 128Mi }
    limits: { memory: 1Gi }
  brokerConfig:
    mappedFileSizeCommitLog: "67108864"
  nameServer:
    replicas: 2
    image: $NAMESRV_IMAGE
YAML
}
# The groups to upgrade, plus (without the Raft group) a one-broker group that stays on A, so
# producers always have a master to send to while the MasterSlave master restarts.
BROKER_GROUPS=()
for which in $UPGRADE_GROUPS; do
  case $which in
    raft) BROKER_GROUPS+=("$RAFT") ;;
    ms) BROKER_GROUPS+=("$MS") ;;
    *) fail "unknown group '$which' in FERRUM_UPGRADE_GROUPS" ;;
  esac
done
case " $UPGRADE_GROUPS " in *" raft "*) ;; *) BROKER_GROUPS+=("$SIDE") ;; esac
t_apply=$(date +%s%N)
{
  for g in "${BROKER_GROUPS[@]}"; do
    case $g in
      "$RAFT") group_yaml "$RAFT" Raft 3 "$IMAGE_A" ASYNC_MASTER ;;
      "$MS") group_yaml "$MS" MasterSlave 3 "$IMAGE_A" SYNC_MASTER ;;
      "$SIDE") group_yaml "$SIDE" MasterSlave 1 "$IMAGE_A" ASYNC_MASTER ;;
    esac
    echo ---
  done
  cat <<YAML
apiVersion: ferrum.dev/v1alpha1
kind: Topic
metadata: { name: upgrade-check }
spec: { clusterName: $CLUSTER, topicName: $TOPIC, readQueueNums: 4, writeQueueNums: 4, perm: 6 }
YAML
} | "${K[@]}" -n "$NS" apply -f - >/dev/null

replicas_of() { [ "$1" = "$SIDE" ] && echo 1 || echo 3; }
pods_ready() {
  local g=$1 n
  n="$("${K[@]}" -n "$NS" get pods -l "app.kubernetes.io/instance=$g" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)"
  [ "$n" = "$(replicas_of "$g")" ]
}
# One replica reports the master / leader role and the others slave / follower, all
# registered: what the roll's own gates need.
roles_ok() {
  local g=$1
  "${K[@]}" -n "$NS" get brokergroup "$g" -o json | python3 -c '
import json, sys
s = json.load(sys.stdin).get("status", {})
reps = s.get("replicas", [])
roles = sorted(r["role"] for r in reps)
ok = all(r["ready"] and r["registered"] for r in reps) and roles in (
    ["Master"], ["Master", "Slave", "Slave"], ["Follower", "Follower", "Leader"])
sys.exit(0 if ok else 1)'
}
for g in "${BROKER_GROUPS[@]}"; do
  wait_for 300 pods_ready "$g" || fail "pods of $g not Ready"
  wait_for 180 roles_ok "$g" || fail "BrokerGroup $g does not report a registered master/leader and replicas"
done
NAMESRV_ADDR="$CLUSTER-namesrv-0.$NS.svc:9876;$CLUSTER-namesrv-1.$NS.svc:9876"
topic_ready() {
  [ "$("${K[@]}" -n "$NS" get topic upgrade-check -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for 120 topic_ready || fail "Topic upgrade-check not Ready"
pass "2. groups ${BROKER_GROUPS[*]} Ready with a registered master/leader and replicas, Topic $TOPIC on all: $(secs "$t_apply") s"

# --- 3. continuous load -------------------------------------------------------------------------
# `kubectl logs` mixes ferrumctl's stderr into stdout, and `message send --json` prints each
# result as pretty JSON: every JSON object that starts a line is decoded.
cat >"$WORK/docs.py" <<'EOF'
import json, re

def docs(text):
    out, pos, dec = [], 0, json.JSONDecoder()
    for m in re.finditer(r"^\{", text, re.M):
        if m.start() < pos:
            continue
        try:
            d, end = dec.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(d, dict):
            out.append(d)
        pos = end
    return out
EOF
start_job live-consumer consume "$TOPIC" -g upgrade-live --from-beginning --commit --json
# Checker Jobs one after another until $STOP exists. Each prints one JSON line per
# acknowledged send; a Job that failed stopped at a send that failed after retries.
load_loop() {
  local i=0 st
  while [ ! -e "$STOP" ]; do
    start_job "send-$i" message send "$TOPIC" "upgrade-check-$i" --count "$BATCH" --json || { sleep 2; continue; }
    st="$(job_end "send-$i" 600)"
    "${K[@]}" -n "$NS" logs "job/send-$i" >"$WORK/send-$i.log" 2>/dev/null || true
    echo "$st" >"$WORK/send-$i.status"
    "${K[@]}" -n "$NS" delete job "send-$i" --wait=false >/dev/null 2>&1 || true
    i=$((i + 1))
  done
}
load_loop &
load_pid=$!
acked() { cat "$WORK"/send-*.log 2>/dev/null | grep -c '"unique_id"' || true; }
wait_for 120 sh -c "[ \$(cat $WORK/send-*.log 2>/dev/null | grep -c unique_id) -gt 0 ]" \
  || fail "no checker send acknowledged before the upgrades"
pass "3. load running: live consumer + checker Jobs ($BATCH sequential sends each), $(acked) acknowledged so far"

# --- 4. upgrades -----------------------------------------------------------------------------------
rolled() {
  local g=$1
  local rev
  rev="$("${K[@]}" -n "$NS" get statefulset "$g" -o jsonpath='{.status.updateRevision}')" || return 1
  [ -n "$rev" ] || return 1
  [ -z "$("${K[@]}" -n "$NS" get brokergroup "$g" -o jsonpath='{.status.roll}')" ] || return 1
  "${K[@]}" -n "$NS" get pods -l "app.kubernetes.io/instance=$g" -o json | python3 -c '
import json, sys
rev, image = sys.argv[1], sys.argv[2]
pods = json.load(sys.stdin)["items"]
ok = len(pods) == 3 and all(
    p["metadata"]["labels"].get("controller-revision-hash") == rev
    and p["spec"]["containers"][0]["image"] == image
    and p["metadata"].get("deletionTimestamp") is None
    and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    for p in pods)
sys.exit(0 if ok else 1)' "$rev" "$IMAGE_B"
}
summary=""
upgrade() {
  local g=$1
  local before
  before="$(acked)"
  local t0
  t0=$(date +%s%N)
  "${K[@]}" -n "$NS" patch brokergroup "$g" --type merge -p "{\"spec\":{\"image\":\"$IMAGE_B\"}}" >/dev/null \
    || fail "patch image of $g"
  # Progress as the operator reports it, once a second while it changes.
  local last="" now_roll
  local end=$(( $(date +%s) + 900 ))
  while ! rolled "$g" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || fail "the roll of $g did not finish in 900 s"
    now_roll="$("${K[@]}" -n "$NS" get brokergroup "$g" -o jsonpath='{.status.roll.reason} | waiting for: {.status.roll.waitingFor}' 2>/dev/null || true)"
    if [ "$now_roll" != "$last" ] && [ "$now_roll" != " | waiting for: " ]; then
      say "$g roll: $now_roll"
      last=$now_roll
    fi
    sleep 1
  done
  local took
  took=$(secs "$t0")
  wait_for 120 roles_ok "$g" || fail "$g roles not back after the roll"
  say "$g events: $("${K[@]}" -n "$NS" get events --field-selector "involvedObject.name=$g" \
    -o jsonpath='{range .items[*]}{.reason}: {.note}{.message}{"\n"}{end}' 2>/dev/null \
    | grep -E '^(Restarting|LeadershipTransferred|Promoted|RestartFailed|TransferFailed|RollFinished)' | tr '\n' '|')"
  summary+="$g: A → B in $took s ($(( $(acked) - before )) sends acknowledged meanwhile); "
  pass "4. $g upgraded $IMAGE_A → $IMAGE_B: every pod Ready on B, roll over in $took s"
}
for which in $UPGRADE_GROUPS; do
  case $which in
    raft) upgrade "$RAFT" ;;
    ms) upgrade "$MS" ;;
  esac
done

# --- 5. checker ---------------------------------------------------------------------------------
sleep 10
touch "$STOP"
wait "$load_pid" || true
load_pid=""
python3 - "$WORK" >"$WORK/acked.txt" <<'EOF'
import glob, sys
sys.path.insert(0, sys.argv[1])
from docs import docs
for f in sorted(glob.glob(sys.argv[1] + "/send-*.log")):
    for d in docs(open(f).read()):
        if "unique_id" in d:
            print(d["unique_id"])
EOF
total="$(wc -l <"$WORK/acked.txt")"
jobs_failed="$(cat "$WORK"/send-*.status | grep -c failed || true)"
jobs_total="$(cat "$WORK"/send-*.status | wc -l)"
check() {
  python3 - "$WORK/acked.txt" "$1" "$WORK" <<'EOF'
import collections, sys
sys.path.insert(0, sys.argv[3])
from docs import docs
acked = set(open(sys.argv[1]).read().split())
seen = collections.Counter()
for m in docs(open(sys.argv[2]).read()):
    uid = m.get("properties", {}).get("UNIQ_KEY")
    if uid:
        seen[uid] += 1
lost = acked - set(seen)
dups = sum(c - 1 for c in seen.values() if c > 1)
print(len(acked), len(lost), dups, len(set(seen)))
EOF
}
# The live consumer has had the whole run; give it time to catch up with the last sends.
live_ok() {
  "${K[@]}" -n "$NS" logs job/live-consumer >"$WORK/live.log" 2>/dev/null || return 1
  read -r _ lost _ _ < <(check "$WORK/live.log")
  [ "$lost" = 0 ]
}
wait_for 60 live_ok || true
read -r n_acked live_lost live_dups live_seen < <(check "$WORK/live.log")
# A new group reads everything the queues hold (acknowledged or not): that count ends it.
start_job topic-status topic status "$TOPIC" --json
[ "$(job_end topic-status 120)" = ok ] || fail "ferrumctl topic status failed"
stored="$("${K[@]}" -n "$NS" logs job/topic-status 2>/dev/null | python3 -c '
import json, re, sys
text = sys.stdin.read()
m = re.search(r"^(\{|\[)", text, re.M)
doc = json.JSONDecoder().raw_decode(text[m.start():])[0]
rows = doc if isinstance(doc, list) else doc.get("queues", [])
print(sum(int(q.get("maxOffset", q.get("max_offset", 0))) - int(q.get("minOffset", q.get("min_offset", 0))) for q in rows))')"
[ "${stored:-0}" -gt 0 ] || fail "topic status shows no stored messages"
start_job read-back consume "$TOPIC" -g upgrade-read-back --from-beginning --count "$stored" --json
[ "$(job_end read-back 600)" = ok ] || fail "read-back consumer failed"
"${K[@]}" -n "$NS" logs job/read-back >"$WORK/read-back.log" 2>/dev/null
read -r _ back_lost back_dups back_seen < <(check "$WORK/read-back.log")
first_failed="$(grep -l failed "$WORK"/send-*.status 2>/dev/null | head -1 || true)"
if [ -n "$first_failed" ]; then
  say "first failed checker Job: $(basename "$first_failed" .status): $(tail -c 600 "${first_failed%.status}.log" | tr '\n' ' ')"
fi
say "live consumer log tail: $(tail -c 400 "$WORK/live.log" | tr '\n' ' ')"
say "checker: $n_acked acknowledged in $jobs_total checker Jobs; sends failed after retries: $jobs_failed;" \
  "live consumer: $live_lost lost, $live_dups duplicates ($live_seen distinct); read-back (new group, $stored stored): $back_lost lost of $n_acked, $back_dups duplicates, $back_seen distinct"
[ "$n_acked" -gt 0 ] || fail "nothing was acknowledged"
# The live consumer is a reported figure: a consumer that stalls is a client finding, while
# a message a new group cannot read back is lost.
[ "$live_lost" = 0 ] || say "NOTE: the live consumer had not received $live_lost acknowledged messages when stopped"
[ "$back_lost" = 0 ] || fail "$back_lost acknowledged messages are missing when read back"
pass "5. 0 of $n_acked acknowledged messages lost (read back by a new group; the live consumer missed $live_lost); $jobs_failed sends failed after retries"

# --- 6. teardown ----------------------------------------------------------------------------------
"${K[@]}" -n "$NS" delete jobs --all --wait=true --timeout=60s >/dev/null
"${K[@]}" -n "$NS" delete topic upgrade-check --wait=true --timeout=60s >/dev/null || fail "Topic not deleted"
"${K[@]}" -n "$NS" delete brokergroup "${BROKER_GROUPS[@]}" --wait=true --timeout=120s >/dev/null || fail "BrokerGroups not deleted"
"$HELM" --kubeconfig "$D/kubeconfig" uninstall ferrum --namespace "$OP_NS" --wait --timeout 120s >/dev/null \
  || fail "helm uninstall failed"
"${K[@]}" delete namespace "$NS" "$OP_NS" --wait=true --timeout=120s >/dev/null || fail "namespaces not deleted"
"${K[@]}" delete pv -l ferrum.dev/e2e=upgrade --wait=true --timeout=60s >/dev/null || fail "PVs not deleted"
"${K[@]}" delete storageclass "$SC" >/dev/null
torn_down=1
"$k8s/node-down.sh" >/dev/null
"$k8s/down.sh" >/dev/null
! mountpoint -q "$PV_ROOT" || umount "$PV_ROOT"
rm -rf "$PV_ROOT"
podman rmi "docker.io/$IMAGE_B" >/dev/null 2>&1 || true
pass "6. teardown"

say "done: ${summary}$n_acked acknowledged, $jobs_failed sends failed after retries, 0 lost; scenario $(secs "$t_all") s"
