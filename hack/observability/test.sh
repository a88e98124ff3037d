#!/usr/bin/env bash
# Checks the metrics, dashboards and alert rules with a real Prometheus:
#   1. installs Debian's `prometheus` package if missing (it brings promtool);
#   2. `promtool check rules` on charts/ferrum/files/prometheus-rules.yaml;
#   3. starts ferrum-namesrv, two ferrum-brokers (groups broker-a and broker-b), a slave of
#      broker-a (so the replication panels and alerts have series), a three-replica Raft
#      group raft-obs (enableDLegerCommitLog, so the Raft panels and alerts have series) and, on a
#      local control plane (hack/k8s), ferrum-operator with two Topic objects (one reconciles,
#      one cannot reach its cluster and errors) and a BrokerGroup (its pods never run without a
#      kubelet, but its roll gauges are published), each with its metrics endpoint;
#   4. drives load with `ferrumctl bench produce` and a committing consumer;
#   5. runs Prometheus (scrape and evaluation every 1 s) on a copy of the real rule file whose
#      `for:` durations are shortened to FOR (default 2s), so alerts fire within the test;
#   6. runs `promtool check metrics` on every /metrics (errors fail, lint findings are printed);
#      scrapes under the job names the chart's PodMonitors produce (hack/observability/jobs.py);
#      asserts through Prometheus' HTTP API that every dashboard panel/variable query and every
#      alert expression returns data (hack/observability/check.py; allow-list.txt lists what may
#      not), that produce traffic moves ferrum_broker_messages_in_total and the Raft commit
#      index, that kill -9 of a broker fires FerrumBrokerDown, that kill -9 of broker-a's master
#      fires FerrumNoMasterInBrokerGroup for broker-a (master-slave), that kill -9 of the Raft
#      leader shows a new leader in a higher term and moves ferrum_broker_raft_elections_total,
#      and that killing a second replica (no majority left) fires FerrumRaftNoLeader.
# Env: PROFILE=debug|release (binaries from target/<profile>, built if needed), FOR=2s.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PROFILE="${PROFILE:-debug}"
FOR="${FOR:-2s}"
RULES="$root/charts/ferrum/files/prometheus-rules.yaml"
DASHBOARDS="$root/charts/ferrum/files/dashboards"
started=$(date +%s)

say() { printf '== %s\n' "$*"; }

# 1. Prometheus and promtool from Debian.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  say "installing Debian's prometheus package"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
say "$(prometheus --version 2>&1 | head -1)"

# 2. The rule file as shipped, and dashboards that match their generator.
say "promtool check rules $(basename "$RULES")"
promtool check rules "$RULES"
fresh="$(mktemp -d "${TMPDIR:-/tmp}/ferrum-dashboards.XXXXXX")"
DASHBOARDS_OUT="$fresh" python3 "$here/dashboards.py" 2>/dev/null
if ! diff -r "$fresh" "$DASHBOARDS" >/dev/null; then
  rm -rf "$fresh"
  echo "charts/ferrum/files/dashboards differ from hack/observability/dashboards.py: run it and commit" >&2
  exit 1
fi
rm -rf "$fresh"
say "dashboards match hack/observability/dashboards.py"

# 3. Binaries.
cargo_flags=(-q -p ferrum-namesrv -p ferrum-broker -p ferrum-client -p ferrum-operator --bins)
[ "$PROFILE" = release ] && cargo_flags+=(--release)
say "building the binaries ($PROFILE)"
(cd "$root" && cargo build "${cargo_flags[@]}")
bin="$root/target/$PROFILE"

W="$(mktemp -d "${TMPDIR:-/tmp}/ferrum-observability.XXXXXX")"
pids=()
k8s_up=0
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$k8s_up" = 1 ]; then FERRUM_K8S_DIR="$W/k8s" "$root/hack/k8s/down.sh" >/dev/null 2>&1 || true; fi
  if [ "$rc" -ne 0 ]; then
    echo "--- logs (tail) in $W"
    for f in "$W"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done
  fi
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_for_line() { # file pattern
  for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; return 1
}

NS=$(free_port); NS_M=$(free_port); A_M=$(free_port); B_M=$(free_port); OP_M=$(free_port)
AS_M=$(free_port)
R_M=($(free_port) $(free_port) $(free_port)); R_P=($(free_port) $(free_port) $(free_port))
DEAD=$(free_port); PROM=$(free_port)
CLUSTER=ObsCluster

say "starting ferrum-namesrv on $NS (metrics $NS_M)"
"$bin/ferrum-namesrv" --listen "127.0.0.1:$NS" --metrics-listen "127.0.0.1:$NS_M" \
  --scan-interval-ms 1000 --broker-expiry-ms 10000 >"$W/namesrv.log" 2>&1 &
pids+=($!)
wait_for_line "$W/namesrv.log" "metrics on"

declare -A broker_pid
for name in a b; do
  port_var="${name^^}_M"
  say "starting ferrum-broker broker-$name (metrics ${!port_var})"
  "$bin/ferrum-broker" -n "127.0.0.1:$NS" \
    --set brokerClusterName=$CLUSTER --set brokerName="broker-$name" \
    --set listenPort=0 --set haListenPort=0 --set bindAddress=127.0.0.1 \
    --set metricsPort="${!port_var}" --set storePathRootDir="$W/store-$name" \
    --set mappedFileSizeCommitLog=67108864 --set registerNameServerPeriod=2000 \
    >"$W/broker-$name.log" 2>&1 &
  broker_pid[$name]=$!
  pids+=($!)
  wait_for_line "$W/broker-$name.log" "metrics on"
done
say "starting ferrum-broker broker-a slave (brokerId 1, metrics $AS_M)"
"$bin/ferrum-broker" -n "127.0.0.1:$NS" \
  --set brokerClusterName=$CLUSTER --set brokerName=broker-a \
  --set brokerRole=SLAVE --set brokerId=1 \
  --set listenPort=0 --set haListenPort=0 --set bindAddress=127.0.0.1 \
  --set metricsPort="$AS_M" --set storePathRootDir="$W/store-a-slave" \
  --set mappedFileSizeCommitLog=67108864 --set registerNameServerPeriod=2000 \
  >"$W/broker-a-slave.log" 2>&1 &
pids+=($!)
wait_for_line "$W/broker-a-slave.log" "metrics on"

RAFT_PEERS="n0-127.0.0.1:${R_P[0]};n1-127.0.0.1:${R_P[1]};n2-127.0.0.1:${R_P[2]}"
declare -A raft_pid
for i in 0 1 2; do
  say "starting Raft replica n$i of raft-obs (Raft port ${R_P[$i]}, metrics ${R_M[$i]})"
  "$bin/ferrum-broker" -n "127.0.0.1:$NS" \
    --set brokerClusterName=$CLUSTER --set brokerName=raft-obs \
    --set enableDLegerCommitLog=true --set dLegerGroup=raft-obs \
    --set dLegerPeers="$RAFT_PEERS" --set dLegerSelfId="n$i" \
    --set listenPort=0 --set bindAddress=127.0.0.1 \
    --set metricsPort="${R_M[$i]}" --set storePathRootDir="$W/store-raft-$i" \
    --set mappedFileSizeCommitLog=67108864 --set registerNameServerPeriod=2000 \
    >"$W/raft-$i.log" 2>&1 &
  raft_pid["127.0.0.1:${R_M[$i]}"]=$!
  pids+=($!)
done
for i in 0 1 2; do wait_for_line "$W/raft-$i.log" "metrics on"; done

# The operator needs an apiserver; hack/k8s builds (cached) and runs one without a kubelet.
. "$root/hack/k8s/env.sh"
if [ ! -x "$K8S_BIN/kube-apiserver" ]; then
  say "building the local control plane (hack/k8s/build.sh, cached under $FERRUM_K8S_CACHE)"
  "$root/hack/k8s/build.sh"
fi
say "starting a local control plane for the operator"
k8s_up=1
FERRUM_K8S_DIR="$W/k8s" "$root/hack/k8s/up.sh" >"$W/k8s-up.log" 2>&1
. "$W/k8s/env"
"$FERRUM_KUBECTL" --kubeconfig "$FERRUM_KUBECONFIG" apply -f "$root/crds/ferrum.dev.yaml" >/dev/null
# Right after apply the CRD may have no conditions yet, which `kubectl wait` treats as an error.
for i in $(seq 1 60); do
  "$FERRUM_KUBECTL" --kubeconfig "$FERRUM_KUBECONFIG" wait --for condition=established --timeout=10s \
    crd/topics.ferrum.dev >/dev/null 2>&1 && break
  [ "$i" -lt 60 ] || { echo "CRD topics.ferrum.dev not established" >&2; exit 1; }
  sleep 0.5
done
say "starting ferrum-operator (metrics $OP_M); cluster 'ghost' points at a closed port, its topic is deleted"
KUBECONFIG="$FERRUM_KUBECONFIG" "$bin/ferrum-operator" run --metrics-listen "127.0.0.1:$OP_M" \
  --namesrv-override "$CLUSTER=127.0.0.1:$NS" --namesrv-override "ghost=127.0.0.1:$DEAD" \
  --namesrv-override "obs-k8s=127.0.0.1:$NS" \
  >"$W/operator.log" 2>&1 &
pids+=($!)
"$FERRUM_KUBECTL" --kubeconfig "$FERRUM_KUBECONFIG" apply -f - >/dev/null <<EOF
apiVersion: ferrum.dev/v1alpha1
kind: Topic
metadata: {name: obs-operator-topic, namespace: default}
spec: {clusterName: $CLUSTER, topicName: ObsOperatorTopic, readQueueNums: 4, writeQueueNums: 4, perm: 6}
---
apiVersion: ferrum.dev/v1alpha1
kind: Topic
metadata: {name: obs-ghost-topic, namespace: default}
spec: {clusterName: ghost, topicName: ObsGhostTopic, readQueueNums: 4, writeQueueNums: 4, perm: 6}
EOF
# A BrokerGroup (its cluster's NameServer is the test's): without a kubelet its pods never run, but the operator
# reconciles it every pass and publishes its roll gauges (ferrum_operator_roll_*).
"$FERRUM_KUBECTL" --kubeconfig "$FERRUM_KUBECONFIG" apply -f - >/dev/null <<EOF
apiVersion: ferrum.dev/v1alpha1
kind: BrokerGroup
metadata: {name: obs-group, namespace: default}
spec:
  clusterName: obs-k8s
  mode: MasterSlave
  replicas: 2
  image: ferrum/broker:0.1.0
  replication: {brokerRole: ASYNC_MASTER}
  storage: {size: 1Gi}
  nameServer: {replicas: 1, image: ferrum/namesrv:0.1.0}
EOF
# Deleting the ghost topic runs its finalizer, which cannot reach the ghost cluster's
# NameServer: those reconciles fail and are retried, feeding result="error".
for _ in $(seq 1 50); do
  "$FERRUM_KUBECTL" --kubeconfig "$FERRUM_KUBECONFIG" get topic obs-ghost-topic -o jsonpath='{.metadata.finalizers}' 2>/dev/null | grep -q . && break
  sleep 0.2
done
"$FERRUM_KUBECTL" --kubeconfig "$FERRUM_KUBECONFIG" delete topic obs-ghost-topic --wait=false >/dev/null

# 5. Prometheus on the real rules, `for:` shortened, scraping under the job names the chart's
# PodMonitors give brokers, NameServers and the operator in a cluster (jobLabel / relabelings),
# so the queries checked here are the ones that work there.
say "rendering the chart's monitors for their scrape job names (helm from hack/chart/helm.sh)"
HELM="$("$root/hack/chart/helm.sh")"
"$HELM" template ferrum "$root/charts/ferrum" --set monitoring.podMonitor.enabled=true \
  --set monitoring.clusterPodMonitors.enabled=true --set monitoring.serviceMonitor.enabled=true \
  >"$W/monitors.yaml"
python3 "$here/jobs.py" "$W/monitors.yaml" | sed 's/^/   /'
JOB_NAMESRV="$(python3 "$here/jobs.py" "$W/monitors.yaml" --job ferrum-namesrv)"
JOB_BROKER="$(python3 "$here/jobs.py" "$W/monitors.yaml" --job ferrum-broker)"
JOB_OPERATOR="$(python3 "$here/jobs.py" "$W/monitors.yaml" --job ferrum-operator)"

sed -E "s/^([[:space:]]*for:).*/\1 $FOR/" "$RULES" >"$W/rules.yaml"
say "rule file copied with every 'for:' set to $FOR so alerts can fire within the test"
promtool check rules "$W/rules.yaml" >/dev/null
cat >"$W/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ["$W/rules.yaml"]
scrape_configs:
  - job_name: $JOB_NAMESRV
    static_configs: [{targets: ["127.0.0.1:$NS_M"]}]
  - job_name: $JOB_BROKER
    static_configs: [{targets: ["127.0.0.1:$A_M", "127.0.0.1:$B_M", "127.0.0.1:$AS_M", "127.0.0.1:${R_M[0]}", "127.0.0.1:${R_M[1]}", "127.0.0.1:${R_M[2]}"]}]
  - job_name: $JOB_OPERATOR
    static_configs: [{targets: ["127.0.0.1:$OP_M"]}]
EOF
say "starting Prometheus on $PROM"
prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/prom" \
  --web.listen-address="127.0.0.1:$PROM" --log.level=warn >"$W/prometheus.log" 2>&1 &
pids+=($!)
P="http://127.0.0.1:$PROM"

promql() { # expr -> first value, or empty
  curl -fsS --get "$P/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
wait_promql() { # expr wanted-predicate(python, on float v) timeout-seconds
  for _ in $(seq 1 "$3"); do
    v="$(promql "$1" 2>/dev/null || true)"
    if [ -n "$v" ] && python3 -c "import sys; v=float('$v'); sys.exit(0 if ($2) else 1)"; then
      echo "$v"; return 0
    fi
    sleep 1
  done
  echo "timed out: $1 (last value '${v:-}')" >&2; return 1
}

say "waiting until Prometheus scrapes all 8 targets"
wait_promql 'sum(up)' 'v == 8' 60 >/dev/null
say "waiting for raft-obs to elect a leader (one replica with role leader)"
wait_promql 'sum(ferrum_broker_raft_role{role="leader"})' 'v == 1' 30 >/dev/null

# 4. Load.
export FERRUM_NAMESRV="127.0.0.1:$NS"
say "creating ObsTopic on $CLUSTER (broker-a, broker-b and the Raft leader) and producing for 5 s"
"$bin/ferrumctl" topic create ObsTopic -c $CLUSTER -r 4 -w 4 >/dev/null
"$bin/ferrumctl" bench produce ObsTopic -c 4 -s 512 -d 5 >"$W/bench.log" 2>&1
say "consuming 200 messages with committed offsets (group obs-consumer); a tail holds pulls"
timeout 60 "$bin/ferrumctl" consume ObsTopic -g obs-consumer --from-beginning --commit --count 200 \
  >/dev/null 2>"$W/consume.log"
"$bin/ferrumctl" consume ObsTopic -g obs-tail >/dev/null 2>"$W/tail.log" &
pids+=($!)

say "waiting for the operator's reconciles (ok and error) and for rate windows to fill"
wait_promql 'sum(ferrum_operator_reconciles_total{result="error"})' 'v >= 1' 60 >/dev/null
say "waiting for the operator's roll gauges of BrokerGroup obs-group"
wait_promql 'count(ferrum_operator_roll_pods_pending{group="obs-group"})' 'v >= 1' 60 >/dev/null
wait_promql 'sum(ferrum_broker_consumer_lag_messages)' 'v > 0' 30 >/dev/null
say "waiting for broker-a's slave to be connected"
wait_promql 'sum(ferrum_broker_ha_slaves_connected)' 'v >= 1' 30 >/dev/null
say "waiting for raft-obs to commit the produced messages on every replica"
wait_promql 'min(ferrum_broker_raft_commit_index{raft_group="raft-obs"})' 'v >= 1' 30 >/dev/null
wait_promql 'count(ferrum_broker_raft_peer_lag_entries{raft_group="raft-obs"})' 'v == 2' 30 >/dev/null
sleep 5

# 6a. The exposition of every endpoint as promtool reads it: parse errors fail, lint
# findings (naming conventions) are printed.
say "promtool check metrics on the /metrics of all 8 endpoints"
lint_findings=0
for target in "namesrv 127.0.0.1:$NS_M" "broker-a 127.0.0.1:$A_M" "broker-b 127.0.0.1:$B_M" \
  "broker-a-slave 127.0.0.1:$AS_M" "raft-n0 127.0.0.1:${R_M[0]}" "raft-n1 127.0.0.1:${R_M[1]}" \
  "raft-n2 127.0.0.1:${R_M[2]}" "operator 127.0.0.1:$OP_M"; do
  read -r name addr <<<"$target"
  curl -fsS "http://$addr/metrics" >"$W/metrics-$name.txt"
  rc=0
  promtool check metrics <"$W/metrics-$name.txt" >"$W/promtool-$name.txt" 2>&1 || rc=$?
  case "$rc" in
    0) echo "   $name: $(grep -c '^# TYPE' "$W/metrics-$name.txt") metric families, no findings" ;;
    3) lint_findings=$(( lint_findings + $(wc -l <"$W/promtool-$name.txt") ))
       echo "   $name: lint findings (warnings):"; sed 's/^/     /' "$W/promtool-$name.txt" ;;
    *) echo "promtool check metrics failed on $name's /metrics (exit $rc):" >&2
       cat "$W/promtool-$name.txt" >&2; exit 1 ;;
  esac
done

# 6b. Every dashboard and alert query.
say "checking every dashboard and alert query"
python3 "$here/check.py" "$P" "$DASHBOARDS" "$here/allow-list.txt" | tee "$W/check.txt"
summary_queries="$(tail -n 1 "$W/check.txt")"

# 6c. Produce traffic moves the counters.
before="$(promql 'sum(ferrum_broker_messages_in_total)')"
commit_before="$(promql 'max(ferrum_broker_raft_commit_index{raft_group="raft-obs"})')"
"$bin/ferrumctl" bench produce ObsTopic -c 2 -s 128 --count 500 -d 30 >>"$W/bench.log" 2>&1
after="$(wait_promql 'sum(ferrum_broker_messages_in_total)' "v >= $before + 500" 20)"
say "messages in: $before -> $after after producing 500 more"
commit_after="$(wait_promql 'max(ferrum_broker_raft_commit_index{raft_group="raft-obs"})' "v > $commit_before" 20)"
say "raft-obs commit index: $commit_before -> $commit_after"

# 6d. kill -9 of a broker fires FerrumBrokerDown.
say "kill -9 broker-b; waiting for FerrumBrokerDown to fire"
kill -9 "${broker_pid[b]}"
{ wait "${broker_pid[b]}"; } 2>/dev/null || true
t0=$(date +%s)
wait_promql 'count(ALERTS{alertname="FerrumBrokerDown", alertstate="firing"})' 'v >= 1' 60 >/dev/null
fired_after=$(( $(date +%s) - t0 ))
instance="$(curl -fsS --get "$P/api/v1/query" --data-urlencode 'query=ALERTS{alertname="FerrumBrokerDown",alertstate="firing"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["metric"]["instance"])')"
[ "$instance" = "127.0.0.1:$B_M" ] || { echo "FerrumBrokerDown fired for $instance, expected 127.0.0.1:$B_M" >&2; exit 1; }

# 6e. kill -9 of broker-a's master leaves its slave: FerrumNoMasterInBrokerGroup (master-slave).
say "kill -9 broker-a's master; waiting for FerrumNoMasterInBrokerGroup{broker_name=broker-a}"
kill -9 "${broker_pid[a]}"
{ wait "${broker_pid[a]}"; } 2>/dev/null || true
t0=$(date +%s)
wait_promql 'count(ALERTS{alertname="FerrumNoMasterInBrokerGroup", broker_name="broker-a", alertstate="firing"})' 'v >= 1' 60 >/dev/null
no_master_after=$(( $(date +%s) - t0 ))

# 6f. kill -9 of the Raft leader: a new leader in a higher term, the election counted.
leader_q='ferrum_broker_raft_role{raft_group="raft-obs", role="leader"} == 1'
first_instance() { # expr -> instance label of its first series, or empty
  curl -fsS --get "$P/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["metric"]["instance"] if r else "")'
}
old_leader="$(first_instance "$leader_q")"
[ -n "$old_leader" ] || { echo "no Raft leader before the kill" >&2; exit 1; }
term_before="$(promql 'max(ferrum_broker_raft_term{raft_group="raft-obs"})')"
elections_before="$(promql 'max(ferrum_broker_raft_elections_total{raft_group="raft-obs"})')"
say "kill -9 the Raft leader $old_leader (term $term_before, elections seen $elections_before)"
kill -9 "${raft_pid[$old_leader]}"
{ wait "${raft_pid[$old_leader]}"; } 2>/dev/null || true
t0=$(date +%s)
new_leader=""
for _ in $(seq 1 60); do
  new_leader="$(first_instance "$leader_q" 2>/dev/null || true)"
  [ -n "$new_leader" ] && [ "$new_leader" != "$old_leader" ] && break
  new_leader=""
  sleep 1
done
[ -n "$new_leader" ] || { echo "Prometheus saw no new Raft leader after killing $old_leader" >&2; exit 1; }
elected_after=$(( $(date +%s) - t0 ))
term_after="$(wait_promql 'max(ferrum_broker_raft_term{raft_group="raft-obs"})' "v > $term_before" 20)"
elections_after="$(wait_promql 'max(ferrum_broker_raft_elections_total{raft_group="raft-obs"})' "v > $elections_before" 20)"
say "new Raft leader $new_leader seen by Prometheus ${elected_after}s after the kill; term $term_before -> $term_after, elections $elections_before -> $elections_after"

# 6g. One replica of three left: no majority, no leader, FerrumRaftNoLeader fires.
say "kill -9 the new leader $new_leader; waiting for FerrumRaftNoLeader{raft_group=raft-obs}"
kill -9 "${raft_pid[$new_leader]}"
{ wait "${raft_pid[$new_leader]}"; } 2>/dev/null || true
t0=$(date +%s)
wait_promql 'count(ALERTS{alertname="FerrumRaftNoLeader", raft_group="raft-obs", alertstate="firing"})' 'v >= 1' 60 >/dev/null
no_leader_after=$(( $(date +%s) - t0 ))

echo
echo "observability test passed in $(( $(date +%s) - started )) s"
echo "  rules:       promtool check rules OK ($(grep -c '^ *- alert:' "$RULES") alerts)"
echo "  exposition:  promtool check metrics on 8 endpoints: no errors, $lint_findings lint findings"
echo "  queries:     $summary_queries"
echo "  counters:    ferrum_broker_messages_in_total $before -> $after"
echo "  broker down: FerrumBrokerDown firing for $instance ${fired_after}s after kill -9 (for: $FOR in the test copy)"
echo "  no master:   FerrumNoMasterInBrokerGroup firing for broker-a ${no_master_after}s after kill -9 of its master"
echo "  raft:        commit index $commit_before -> $commit_after under produce; leader $old_leader killed ->"
echo "               new leader $new_leader in Prometheus after ${elected_after}s, term $term_before -> $term_after,"
echo "               elections seen $elections_before -> $elections_after"
echo "  no leader:   FerrumRaftNoLeader firing ${no_leader_after}s after killing the second replica of three"
