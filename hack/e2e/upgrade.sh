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
#      MasterSlave group (its master restarts in place), then the MasterSlave group back
#      B → A with spec.upgrade.promoteBeforeRestart (asserted: a Promoted Event, status.master
#      changed, the old master back as a Ready, registered slave). Prints each upgrade's wall
#      time and the operator's Restarting, LeadershipTransferred and Promoted Events.
#      For each MasterSlave roll it measures the group's write gap: a probe Job (ferrumctl bench
#      produce, 20 msgs/s) sends to a topic that only the MasterSlave group serves; the gap
#      runs from the master's Restarting Event to the first second in which a probe send was
#      acknowledged again, beside the times the master pod was Ready again and the operator's
#      status showed a registered master again, and the checker sends that went to the other
#      group meanwhile
#   5. checker: every acknowledged unique id is read back by a new group reading from the
#      beginning (asserted: 0 lost); what the live consumer got while the groups restarted is
#      reported beside it; duplicates are reported (at-least-once); prints acknowledged,
#      failed sends after retries, lost, duplicates
#   6. teardown as cluster.sh (node-down leaves no mounts or rules)
#
# Environment: FERRUM_E2E_IMAGES=reuse|build, FERRUM_E2E_KEEP=1 (as cluster.sh),
#   FERRUM_UPGRADE_BATCH=N messages per checker Job (default 200),
#   FERRUM_UPGRADE_GROUPS="raft ms ms-promote" which rolls, in order (default all three:
#   raft = the Raft group A → B; ms = the MasterSlave group to the other tag, master in place;
#   ms-promote = the MasterSlave group to the other tag with promoteBeforeRestart).
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
UPGRADE_GROUPS="${FERRUM_UPGRADE_GROUPS:-raft ms ms-promote}"
PROBE_TOPIC=UpgradeProbe
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
monitor_pid=""
torn_down=0
cleanup() {
  local rc=$?
  touch "$STOP"
  [ -z "$load_pid" ] || kill "$load_pid" 2>/dev/null || true
  [ -z "$monitor_pid" ] || kill "$monitor_pid" 2>/dev/null || true
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
    ms | ms-promote) case " ${BROKER_GROUPS[*]} " in *" $MS "*) ;; *) BROKER_GROUPS+=("$MS") ;; esac ;;
    *) fail "unknown roll '$which' in FERRUM_UPGRADE_GROUPS (raft, ms, ms-promote)" ;;
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
    # With the runtime's timestamps, which place each acknowledged send in time.
    "${K[@]}" -n "$NS" logs --timestamps "job/send-$i" >"$WORK/send-$i.ts" 2>/dev/null || true
    sed -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+) //' "$WORK/send-$i.ts" >"$WORK/send-$i.log"
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
  local g=$1 image=$2
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
sys.exit(0 if ok else 1)' "$rev" "$image"
}

# The write-gap probe: a topic that only the MasterSlave group serves (created on its master;
# the slaves copy the master's topics), so an acknowledged probe send means that group takes
# writes. Its route must list only that group before a producer starts: a producer that finds
# no route sends through TBW102's brokers, which would create the topic on the other groups.
cat >"$WORK/gap.py" <<'EOF'
import calendar, glob, json, re, sys, time

TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def when(text):
    """Seconds since the epoch of an RFC 3339 time (any number of fraction digits)."""
    m = TS.match(text or "")
    if not m:
        return None
    t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    t += float("0" + m.group(2)) if m.group(2) else 0.0
    z = m.group(3)
    if z and z != "Z":
        sign = 1 if z[0] == "+" else -1
        t -= sign * (int(z[1:3]) * 3600 + int(z[4:6]) * 60)
    return t


def clock(t):
    return time.strftime("%H:%M:%S", time.gmtime(t)) + ".%03d" % int((t % 1) * 1000)


def event_time(e):
    series = e.get("series") or {}
    for t in (series.get("lastObservedTime"), e.get("eventTime"), e.get("lastTimestamp"),
              e.get("firstTimestamp"), e.get("metadata", {}).get("creationTimestamp")):
        if t:
            return when(t)
    return None


def main():
    group, old_master, t0, events_file, probe_file, monitor_file, work, label = sys.argv[1:9]
    t0 = int(t0) / 1e9
    events = json.load(open(events_file)).get("items", [])
    mine = [e for e in events if e.get("involvedObject", {}).get("name") == group]
    restarts = []
    promoted = []
    for e in mine:
        t = event_time(e)
        if t is None or t < t0 - 1:
            continue
        msg = e.get("message") or e.get("note") or ""
        related = (e.get("related") or {}).get("name")
        if e.get("reason") == "Restarting" and "master" in msg and (
                related == old_master or old_master in msg):
            restarts.append((t, msg))
        if e.get("reason") == "Promoted":
            promoted.append((t, msg))
    out = {"promoted": len(promoted)}

    # Samples of the operator's status and the pods, about twice a second.
    samples = []
    for line in open(monitor_file):
        parts = line.rstrip("\n").split("|")
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        reps = [r.split(",") for r in parts[2].split(";") if r]
        pods = {p.split(",")[0]: p.split(",") for p in parts[3].split(";") if p}
        reg_master = next((r[0] for r in reps if len(r) >= 4 and r[1] == "Master"
                           and r[2] == "true" and r[3] == "true"), None)
        pod = pods.get(old_master)
        pod_up = pod is not None and len(pod) >= 3 and pod[1] == "True" and not pod[2]
        samples.append((int(parts[0]) / 1e9, reg_master, pod_up))

    if restarts:
        t_ev, ev_msg = max(restarts)
        ev_how = "its Restarting Event"
    else:
        down = [s[0] for s in samples if s[0] >= t0 and not s[2]]
        if not down:
            print(f"{label}: no Restarting Event of {old_master} and it was never seen down")
            out["error"] = "no eviction seen"
            return out
        t_ev, ev_how = down[0], "first seen not Ready (no Restarting Event found)"
    out["evicted"] = t_ev

    probe = []
    for line in open(probe_file):
        m = re.match(r"(\S+) \[\s*(\d+)s\] sent (\d+) \((\d+) /s\), errors (\d+)", line)
        if m:
            probe.append((when(m.group(1)), int(m.group(4)), int(m.group(5))))
    probe.sort()
    # A report counts the sends of the second before it: a second without one that ends
    # after the eviction is the outage; without such a second the gap is below the probe's
    # resolution, and the first report whose whole second follows the eviction bounds it.
    zero = next((i for i, p in enumerate(probe) if p[0] > t_ev and p[1] == 0), None)
    if zero is not None:
        resume = next((i for i in range(zero, len(probe)) if probe[i][1] > 0), None)
    else:
        resume = next((i for i, p in enumerate(probe) if p[0] - 1 >= t_ev and p[1] > 0), None)
    parts = [f"{label}: {old_master} evicted at {clock(t_ev)} ({ev_how})"]
    pod_down = next((s[0] for s in samples if s[0] >= t_ev - 1 and not s[2]), None)
    if pod_down is not None:
        back = next((s[0] for s in samples if s[0] > pod_down and s[2]), None)
        if back is not None:
            parts.append(f"{old_master} Ready again +{back - t_ev:.1f} s")
            out["pod_ready"] = back - t_ev
    no_master = next((s[0] for s in samples if s[0] >= t_ev and s[1] is None), None)
    if not samples:
        parts.append("no samples of the operator's status")
    elif no_master is None:
        parts.append("the operator's status never showed the group without a registered master "
                     "(it refreshes every 5 s)")
    else:
        back = next((s for s in samples if s[0] > no_master and s[1]), None)
        if back is not None:
            parts.append(f"operator status: no registered master from +{no_master - t_ev:.1f} s, "
                         f"{back[1]} registered as master +{back[0] - t_ev:.1f} s")
            out["registered"] = back[0] - t_ev
    if resume is None:
        parts.append("no probe send acknowledged after the eviction yet")
        out["error"] = "probe did not resume"
    else:
        t_res = probe[resume][0]
        zeros = sum(1 for p in probe[zero:resume] if p[1] == 0) if zero is not None else 0
        start = zero if zero is not None else resume
        before = probe[start - 1][2] if start > 0 else 0
        failed = probe[resume][2] - before
        around = [p[1] for p in probe if t_ev - 2 <= p[0] <= t_res + 2]
        if zero is not None:
            lo = max(0.0, t_res - 1 - t_ev)
            parts.append(f"first acknowledged probe send +{lo:.1f}..{t_res - t_ev:.1f} s "
                         f"({zeros} whole seconds without one, {failed} probe sends failed)")
        else:
            parts.append(f"every second of the probe had acknowledged sends ({failed} failed): "
                         f"the gap is below its 1 s resolution, at most +{t_res - t_ev:.1f} s")
        parts.append("probe sends per second around it: " + " ".join(map(str, around)))
        out["gap"] = t_res - t_ev
        out["zero_secs"] = zeros
        # Checker sends acknowledged meanwhile, and in the 30 s after the eviction (a
        # producer's fault avoidance keeps a failed broker aside for a while), by group.
        moved, later = {}, {}
        for f in glob.glob(work + "/send-*.ts"):
            for line in open(f):
                m = re.match(r'(\S+)\s+"broker_name":\s*"([^"]*)"', line)
                t = when(m.group(1)) if m else None
                if t is not None and t_ev <= t <= t_res:
                    moved[m.group(2)] = moved.get(m.group(2), 0) + 1
                if t is not None and t_ev <= t <= t_ev + 30:
                    later[m.group(2)] = later.get(m.group(2), 0) + 1
        out["moved"] = moved
        out["moved_30s"] = later
        by = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"
        parts.append(f"checker sends acknowledged meanwhile: {by(moved)}; "
                     f"in the 30 s after the eviction: {by(later)}")
    if promoted:
        parts.append(f"Promoted: {max(promoted)[1]} at +{max(promoted)[0] - t_ev:.1f} s")
    print("; ".join(parts))
    return out


if __name__ == "__main__":
    result = main()
    json.dump(result, open(sys.argv[9], "w"))
    sys.exit(0 if "gap" in result else 3)
EOF
# The roll's order and its one-pod-down rule, from the operator's Events (the pod each is
# about is the related object) and the samples of the group's pods taken during the roll.
cat >"$WORK/order.py" <<'EOF'
import json, sys
from gap import when


def first_time(e, t0):
    # A recorder folds a pod's repeated Restarting (an earlier roll's) into a series: the
    # occurrence of this roll is the earliest time at or after its start.
    series = e.get("series") or {}
    times = [when(t) for t in (e.get("eventTime"), series.get("lastObservedTime"),
                               e.get("firstTimestamp"), e.get("lastTimestamp")) if t]
    times = [t for t in times if t is not None and t >= t0 - 1]
    return min(times) if times else None


def main():
    group, mode, old, t0, events_file, monitor_file, replicas = sys.argv[1:8]
    t0, replicas = int(t0) / 1e9, int(replicas)
    rows = []
    for e in json.load(open(events_file)).get("items", []):
        if e.get("involvedObject", {}).get("name") != group:
            continue
        if e.get("reason") not in ("Restarting", "LeadershipTransferred", "Promoted"):
            continue
        t = first_time(e, t0)
        if t is not None:
            rows.append((t, e["reason"], (e.get("related") or {}).get("name", "?")))
    rows.sort()
    print(" -> ".join(f"{r} {p}" for _, r, p in rows))
    problems = []
    restarts = [(t, p) for t, r, p in rows if r == "Restarting"]
    pods = {p for _, p in restarts}
    want = {f"{group}-{i}" for i in range(replicas)}
    if pods != want:
        problems.append(f"restarted {sorted(pods)}, expected every pod {sorted(want)}")
    old_t = [t for t, p in restarts if p == old]
    others = [t for t, p in restarts if p != old]
    role = "leader" if mode == "Raft" else "master"
    if not old_t:
        problems.append(f"no Restarting Event of the old {role} {old}")
    elif others and min(old_t) < max(others):
        problems.append(f"the old {role} {old} restarted before the other pods: not last")
    if mode == "Raft":
        moved = [t for t, r, p in rows if r == "LeadershipTransferred" and p == old]
        if not moved:
            problems.append(f"no LeadershipTransferred Event from {old}")
        elif others and moved[0] < max(others):
            problems.append("leadership moved before every follower had restarted")
        elif old_t and moved[0] > min(old_t):
            problems.append(f"{old} restarted before its leadership moved")
    # At most one pod down (not Ready, being deleted or not there) at every sample.
    worst, at = 0, None
    for line in open(monitor_file):
        parts = line.rstrip("\n").split("|")
        if len(parts) < 4 or not parts[0].isdigit() or not parts[3]:
            continue  # kubectl did not answer this time
        up = 0
        for p in parts[3].split(";"):
            f = p.split(",")
            if len(f) >= 3 and f[0] in want and f[1] == "True" and not f[2]:
                up += 1
        if replicas - up > worst:
            worst, at = replicas - up, int(parts[0]) / 1e9
    print(f"at most {worst} pod(s) of {group} down at any sample")
    if worst > 1:
        problems.append(f"{worst} pods down at once ({at - t0:.1f} s into the roll)")
    for p in problems:
        print("ORDER: " + p)
    return not problems


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
EOF
probe_route_ok() {
  start_job probe-route topic route "$PROBE_TOPIC"
  [ "$(job_end probe-route 60)" = ok ] || return 1
  local names
  names="$("${K[@]}" -n "$NS" logs job/probe-route 2>/dev/null \
    | grep -o '"brokerName": *"[^"]*"' | sed -E 's/.*"([^"]*)"$/\1/' | sort -u | tr '\n' ' ')"
  [ "$names" = "$MS " ]
}
probe_topic_done=0
probe_topic() {
  [ "$probe_topic_done" = 0 ] || return 0
  start_job probe-topic topic create "$PROBE_TOPIC" -b "$MS-master.$NS.svc:10911" -r 2 -w 2
  [ "$(job_end probe-topic 120)" = ok ] \
    || fail "topic create $PROBE_TOPIC on $MS's master: $("${K[@]}" -n "$NS" logs job/probe-topic 2>&1 | tail -5 | tr '\n' ' ')"
  wait_for 120 probe_route_ok || fail "the route of $PROBE_TOPIC does not list exactly $MS"
  probe_topic_done=1
}
probe_sending() { "${K[@]}" -n "$NS" logs "job/$1" 2>/dev/null | grep -Eq '\] sent [1-9]'; }
start_probe() {
  local name=$1 tries=0
  probe_topic
  while :; do
    start_job "$name" bench produce "$PROBE_TOPIC" -c 1 -s 64 --rate 20 -d 3600 --group upgrade-probe
    wait_for 60 probe_sending "$name" && return 0
    tries=$((tries + 1))
    [ "$tries" -lt 3 ] \
      || fail "probe $name acknowledges nothing: $("${K[@]}" -n "$NS" logs "job/$name" 2>&1 | tail -5 | tr '\n' ' ')"
  done
}
# Twice a second: the operator's view (master, each replica's role / Ready / registered) and
# the pods (Ready, being deleted), for the times the master was down and back.
monitor() {
  local g=$1 file=$2 st pods
  while [ ! -e "$WORK/monitor-stop" ]; do
    local t
    t=$(date +%s%N)
    st="$("${K[@]}" -n "$NS" get brokergroup "$g" \
      -o jsonpath='{.status.master}|{range .status.replicas[*]}{.pod},{.role},{.ready},{.registered};{end}' 2>/dev/null || true)"
    pods="$("${K[@]}" -n "$NS" get pods -l "app.kubernetes.io/instance=$g" \
      -o jsonpath='{range .items[*]}{.metadata.name},{.status.conditions[?(@.type=="Ready")].status},{.metadata.deletionTimestamp};{end}' 2>/dev/null || true)"
    echo "$t|$st|$pods" >>"$file"
    sleep 0.5
  done
}
summary=""
gaps=""
upgrade() {
  local which=$1 g promote=false how
  case $which in
    raft) g=$RAFT ;;
    ms) g=$MS how="master restarts in place" ;;
    ms-promote) g=$MS promote=true how="promoteBeforeRestart" ;;
  esac
  local from target
  from="$("${K[@]}" -n "$NS" get brokergroup "$g" -o jsonpath='{.spec.image}')"
  if [ "$from" = "$IMAGE_A" ]; then target=$IMAGE_B; else target=$IMAGE_A; fi
  local before master_before="" probe=""
  before="$(acked)"
  master_before="$("${K[@]}" -n "$NS" get brokergroup "$g" -o jsonpath='{.status.master}')"
  [ -n "$master_before" ] || fail "$g reports no master / leader before its roll"
  if [ "$g" = "$MS" ]; then
    probe="probe-$which"
    start_probe "$probe"
  fi
  rm -f "$WORK/monitor-stop"
  : >"$WORK/monitor-$which.txt"
  monitor "$g" "$WORK/monitor-$which.txt" &
  monitor_pid=$!
  local t0 patch
  t0=$(date +%s%N)
  patch="{\"spec\":{\"image\":\"$target\"}}"
  [ "$promote" = false ] || patch="{\"spec\":{\"image\":\"$target\",\"upgrade\":{\"promoteBeforeRestart\":true}}}"
  "${K[@]}" -n "$NS" patch brokergroup "$g" --type merge -p "$patch" >/dev/null || fail "patch $g: $patch"
  # Progress as the operator reports it, once a second while it changes.
  local last="" now_roll
  local end=$(( $(date +%s) + 900 ))
  while ! rolled "$g" "$target" >/dev/null 2>&1; do
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
  "${K[@]}" -n "$NS" get events -o json >"$WORK/events-$which.json" 2>/dev/null || echo '{}' >"$WORK/events-$which.json"
  local mode order
  mode="$("${K[@]}" -n "$NS" get brokergroup "$g" -o jsonpath='{.spec.mode}')"
  order="$(cd "$WORK" && python3 order.py "$g" "$mode" "$master_before" "$t0" "$WORK/events-$which.json" \
    "$WORK/monitor-$which.txt" "$(replicas_of "$g")")" || fail "$g roll order: $(tr '\n' ' ' <<<"$order")"
  say "$g order: $(tr '\n' ';' <<<"$order")"
  local extra=""
  if [ -n "$probe" ]; then
    # The probe reports once a second; give it time to report sends after the master's return.
    local label="$g write gap ($how)" ok=0 i
    for i in $(seq 1 30); do
      "${K[@]}" -n "$NS" logs --timestamps "job/$probe" >"$WORK/$probe.ts" 2>/dev/null || true
      "${K[@]}" -n "$NS" get events -o json >"$WORK/events-$which.json" 2>/dev/null || echo '{}' >"$WORK/events-$which.json"
      if python3 "$WORK/gap.py" "$g" "$master_before" "$t0" "$WORK/events-$which.json" "$WORK/$probe.ts" \
        "$WORK/monitor-$which.txt" "$WORK" "$label" "$WORK/gap-$which.json" >"$WORK/gap-$which.txt"; then
        ok=1
        break
      fi
      sleep 2
    done
    printf '%q ' "$g" "$master_before" "$t0" "$WORK/events-$which.json" "$WORK/$probe.ts" \
      "$WORK/monitor-$which.txt" "$WORK" "$label" "$WORK/gap-$which.json" >"$WORK/gap-$which.args"
    say "$(cat "$WORK/gap-$which.txt")"
    [ "$ok" = 1 ] || fail "$label: not measured"
    probe_route_ok || say "NOTE: the route of $PROBE_TOPIC no longer lists only $MS: the gap figure is void"
    "${K[@]}" -n "$NS" delete job "$probe" --wait=false >/dev/null 2>&1 || true
    local gap
    gap="$(python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print("at most %.1f s, %d whole seconds without an acknowledged probe send" % (d["gap"], d["zero_secs"]))' "$WORK/gap-$which.json")"
    gaps+="$g ($how): write gap $gap; "
    extra=", write gap $gap"
    if [ "$promote" = true ]; then
      local master_after promoted
      master_after="$("${K[@]}" -n "$NS" get brokergroup "$g" -o jsonpath='{.status.master}')"
      [ -n "$master_after" ] && [ "$master_after" != "$master_before" ] \
        || fail "$g: status.master is '$master_after' after the promoteBeforeRestart roll (was $master_before)"
      promoted="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["promoted"])' "$WORK/gap-$which.json")"
      [ "$promoted" -ge 1 ] || fail "$g: no Promoted Event during the promoteBeforeRestart roll"
      "${K[@]}" -n "$NS" get brokergroup "$g" -o json | python3 -c '
import json, sys
old = sys.argv[1]
reps = {r["pod"]: r for r in json.load(sys.stdin).get("status", {}).get("replicas", [])}
r = reps.get(old, {})
sys.exit(0 if r.get("role") == "Slave" and r.get("ready") and r.get("registered") else 1)' "$master_before" \
        || fail "$g: the old master $master_before is not back as a Ready, registered slave"
      extra+=", $master_before → $master_after promoted ($promoted Promoted Event), $master_before back as a slave"
    fi
  fi
  touch "$WORK/monitor-stop"
  wait "$monitor_pid" 2>/dev/null || true
  monitor_pid=""
  summary+="$g${how:+ ($how)}: $from → $target in $took s ($(( $(acked) - before )) sends acknowledged meanwhile$extra); "
  pass "4. $g${how:+ ($how)} upgraded $from → $target: every pod Ready, roll over in $took s$extra"
}
for which in $UPGRADE_GROUPS; do
  upgrade "$which"
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
# The checker Job that ran across a master's restart had not ended when its roll was measured:
# the sends that went to the other group are counted again with every checker log at hand.
for args in "$WORK"/gap-*.args; do
  [ -e "$args" ] || continue
  eval "set -- $(cat "$args")"
  say "$(python3 "$WORK/gap.py" "$@" || true)"
done
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
[ "$live_lost" = 0 ] || fail "the live consumer had not received $live_lost acknowledged messages when stopped"
[ "$back_lost" = 0 ] || fail "$back_lost acknowledged messages are missing when read back"
pass "5. 0 of $n_acked acknowledged messages lost (read back by a new group and by the live consumer); $jobs_failed sends failed after retries"

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

say "done: ${summary}${gaps}$n_acked acknowledged, $jobs_failed sends failed after retries, 0 lost; scenario $(secs "$t_all") s"
