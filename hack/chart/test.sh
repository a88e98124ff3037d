#!/usr/bin/env bash
# `make chart-test`: checks charts/ferrum and examples/ with a real helm and a real
# kube-apiserver.
#   1. the chart's CRDs are the same bytes as crds/ (`make crds` writes both)
#   2. helm lint --strict and helm template: default values, namespaced watch, monitoring on;
#      the scrape jobs the monitors produce are the ones the alert rules match
#   3. the RBAC covers what the operator's code uses and no more (rbac_check.py), first on
#      the rendered YAML, then as `kubectl auth can-i` answers of a real apiserver
#   4. the CRDs (and the Prometheus Operator's, from the Go module proxy) applied for real,
#      every rendered manifest and examples/ with `kubectl apply --dry-run=server`; the
#      brokers' and NameServers' PodMonitors select the pod templates the operator builds
# Starts its own control plane with hack/k8s/up.sh in its own directory and stops it on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export FERRUM_K8S_DIR="${FERRUM_K8S_DIR:-${TMPDIR:-/tmp}/ferrum-chart-k8s}"
. "$repo/hack/k8s/env.sh"
PROM_OPERATOR_VERSION="${PROM_OPERATOR_VERSION:-v0.85.0}"

chart="$repo/charts/ferrum"
NS=ferrum-system
WATCH=(team-a team-b)
HELM="$("$here/helm.sh")"
out="$(mktemp -d "${TMPDIR:-/tmp}/ferrum-chart-test.XXXXXX")"
started=0
cleanup() {
  if [ "$started" = 1 ]; then "$repo/hack/k8s/down.sh" >/dev/null 2>&1 || true; fi
  rm -rf "$out"
}
trap cleanup EXIT
step() { echo "== $*"; }

step "the chart's CRDs are crds/ferrum.dev.yaml byte for byte"
if ! cmp "$repo/crds/ferrum.dev.yaml" "$chart/crds/ferrum.dev.yaml"; then
  echo "charts/ferrum/crds/ferrum.dev.yaml differs from crds/ferrum.dev.yaml: run make crds" >&2
  exit 1
fi

monitoring=(--set monitoring.serviceMonitor.enabled=true --set monitoring.podMonitor.enabled=true
  --set monitoring.clusterPodMonitors.enabled=true
  --set monitoring.prometheusRule.enabled=true --set monitoring.grafanaDashboards.enabled=true)
namespaced=(--set "watchNamespaces={$(IFS=,; echo "${WATCH[*]}")}")
declare -A variants=(
  [default]=""
  [namespaced]="${namespaced[*]}"
  [monitoring]="${monitoring[*]}"
  [single]="--set leaderElection.enabled=false --set metrics.service.enabled=false"
)
for v in default namespaced monitoring single; do
  # shellcheck disable=SC2086 # the variant's flags are words on purpose
  step "helm lint --strict ($v)"
  "$HELM" lint --strict "$chart" --namespace "$NS" ${variants[$v]} >"$out/lint-$v.log" \
    || { cat "$out/lint-$v.log" >&2; exit 1; }
  step "helm template ($v)"
  # shellcheck disable=SC2086
  "$HELM" template ferrum "$chart" --namespace "$NS" ${variants[$v]} >"$out/$v.yaml"
  kinds="$(grep -h '^kind:' "$out/$v.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')"
  echo "   ${kinds%, }"
done

step "values that cannot work are refused"
if "$HELM" template ferrum "$chart" --set operator.replicas=2 --set leaderElection.enabled=false \
     >/dev/null 2>"$out/refused.log"; then
  echo "two replicas without leader election rendered" >&2; exit 1
fi
grep -q 'needs leaderElection.enabled' "$out/refused.log" \
  || { cat "$out/refused.log" >&2; exit 1; }

step "the rendered YAML has what each variant promises"
has() { grep -q -- "$2" "$out/$1.yaml" || { echo "$1: expected '$2' in the rendered YAML" >&2; exit 1; }; }
lacks() { if grep -q -- "$2" "$out/$1.yaml"; then echo "$1: unexpected '$2' in the rendered YAML" >&2; exit 1; fi; }
has default 'readOnlyRootFilesystem: true'
has default 'runAsNonRoot: true'
has default 'path: /healthz'
has default '^kind: ClusterRole$'
has default 'name: POD_NAMESPACE'
lacks namespaced '^kind: ClusterRole'
has namespaced 'name: FERRUM_WATCH_NAMESPACES'
roles="$(grep -c '^kind: Role$' "$out/namespaced.yaml")"
[ "$roles" = $(( ${#WATCH[@]} + 1 )) ] || { echo "namespaced: $roles Roles, want one per namespace + the Lease's" >&2; exit 1; }
lacks single 'name: POD_NAMESPACE'
lacks single 'leader-election'
lacks single '^kind: Service$'
has monitoring '^kind: ServiceMonitor$'
monitors="$(grep -c '^kind: PodMonitor$' "$out/monitoring.yaml")"
[ "$monitors" = 3 ] || { echo "monitoring: $monitors PodMonitors, want the operator's, the brokers' and the NameServers'" >&2; exit 1; }
step "every scrape job the alert rules expect is one the monitors produce (hack/observability/jobs.py)"
python3 "$repo/hack/observability/jobs.py" "$out/monitoring.yaml" | sed 's/^/   /'
python3 - "$out/monitoring.yaml" "$chart/files/prometheus-rules.yaml" "$repo/hack/observability" <<'PY'
import re, sys
sys.path.insert(0, sys.argv[3])
import jobs
produced = {jobs.job_of(m) for m in jobs.monitors(sys.argv[1])}
wanted = sorted(set(re.findall(r'job=~"([^"]+)"', open(sys.argv[2]).read())))
missing = [w for w in wanted if not any(re.fullmatch(w, j) for j in produced)]
if not wanted or missing:
    sys.exit(f"rule job patterns {missing or '(none found)'} match no monitor's job {sorted(produced)}")
print(f"   rule job patterns {wanted} each match a monitor's job")
PY
for v in default namespaced single; do
  lacks "$v" '^kind: \(ServiceMonitor\|PodMonitor\|PrometheusRule\)$'
  lacks "$v" 'grafana_dashboard'
done
if find "$chart/files" -name '*.json' 2>/dev/null | grep -q .; then
  has monitoring 'grafana_dashboard: "1"'
else
  echo "   (no dashboards in charts/ferrum/files yet: no dashboard ConfigMap expected)"
fi
if find "$chart/files" \( -name '*rules*.y*ml' -o -name '*alerts*.y*ml' \) 2>/dev/null | grep -q .; then
  has monitoring '^kind: PrometheusRule$'
else
  echo "   (no rule files in charts/ferrum/files yet: no PrometheusRule expected)"
fi

step "RBAC against the operator's code (rendered YAML)"
python3 "$here/rbac_check.py" "$out/default.yaml" --src "$repo/operator/src" --release-ns "$NS" --leader
python3 "$here/rbac_check.py" "$out/namespaced.yaml" --src "$repo/operator/src" --release-ns "$NS" \
  --leader --watch "$(IFS=,; echo "${WATCH[*]}")"
python3 "$here/rbac_check.py" "$out/single.yaml" --src "$repo/operator/src" --release-ns "$NS"
# The check must be able to fail: drop the pods rule and expect a complaint.
python3 - "$out/default.yaml" "$out/broken.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] == "ClusterRole":
        d["rules"] = [r for r in d["rules"] if "pods" not in r["resources"]]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
if python3 "$here/rbac_check.py" "$out/broken.yaml" --src "$repo/operator/src" --release-ns "$NS" \
     --leader 2>"$out/broken.log"; then
  echo "rbac_check.py accepted a ClusterRole without the pods rule" >&2; exit 1
fi
grep -q 'pods.core lacks' "$out/broken.log" || { cat "$out/broken.log" >&2; exit 1; }

step "a real kube-apiserver (hack/k8s/up.sh in $FERRUM_K8S_DIR)"
for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [ -x "$K8S_BIN/$b" ] || { "$repo/hack/k8s/build.sh"; break; }
done
"$repo/hack/k8s/down.sh" >/dev/null 2>&1 || true
"$repo/hack/k8s/up.sh" >"$out/up.log" || { cat "$out/up.log" >&2; exit 1; }
started=1
. "$FERRUM_K8S_DIR/env"
k() { "$FERRUM_KUBECTL" --kubeconfig "$FERRUM_KUBECONFIG" "$@"; }

step "CRDs: ferrum.dev from the chart, monitoring.coreos.com $PROM_OPERATOR_VERSION from the Go module proxy"
k apply --server-side -f "$chart/crds/ferrum.dev.yaml" >/dev/null
prom_dir="$(GOFLAGS= go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
for crd in servicemonitors podmonitors prometheusrules; do
  k apply --server-side -f "$prom_dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" >/dev/null
done
k wait --for=condition=Established --timeout=60s \
  crd/brokergroups.ferrum.dev crd/topics.ferrum.dev crd/servicemonitors.monitoring.coreos.com \
  crd/podmonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com >/dev/null
for ns in "$NS" "${WATCH[@]}" examples; do k create namespace "$ns" >/dev/null; done

for v in default namespaced monitoring single; do
  step "kubectl apply --dry-run=server ($v)"
  k apply --dry-run=server -f "$out/$v.yaml" | sed 's/^/   /'
done
step "kubectl apply --dry-run=server -f examples/"
k apply --dry-run=server -n examples -f "$repo/examples/" | sed 's/^/   /'

step "RBAC as the apiserver decides it (kubectl auth can-i)"
k apply --server-side -f "$out/default.yaml" --field-manager=chart-test >/dev/null
python3 "$here/rbac_check.py" "$out/default.yaml" --src "$repo/operator/src" --release-ns "$NS" \
  --leader --kubectl "$FERRUM_KUBECTL" --kubeconfig "$FERRUM_KUBECONFIG"
k delete -f "$out/default.yaml" --wait=true >/dev/null
k apply --server-side -f "$out/namespaced.yaml" --field-manager=chart-test >/dev/null
python3 "$here/rbac_check.py" "$out/namespaced.yaml" --src "$repo/operator/src" --release-ns "$NS" \
  --leader --watch "$(IFS=,; echo "${WATCH[*]}")" --kubectl "$FERRUM_KUBECTL" --kubeconfig "$FERRUM_KUBECONFIG"

# The real operator binary, authenticated as the chart's ServiceAccount, in both RBAC modes:
# any call its rules do not allow shows up as "forbidden" in its log.
run_operator() { # mode, namespace of the example, extra flags...
  local mode=$1 ns=$2; shift 2
  local token kcfg="$out/operator-$mode.kubeconfig" log="$out/operator-$mode.log"
  token="$(k -n "$NS" create token ferrum --duration=1h)"
  python3 - "$FERRUM_KUBECONFIG" "$token" "$NS" >"$kcfg" <<'PY'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg["users"] = [{"name": "operator", "user": {"token": sys.argv[2]}}]
cfg["contexts"] = [{"name": "operator", "context": {"cluster": cfg["clusters"][0]["name"],
                    "user": "operator", "namespace": sys.argv[3]}}]
cfg["current-context"] = "operator"
print(yaml.safe_dump(cfg))
PY
  KUBECONFIG="$kcfg" POD_NAMESPACE="$NS" POD_NAME="chart-test-$mode" RUST_LOG=info \
    "$OPERATOR_BIN" run --metrics-listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
  local pid=$!
  k apply -n "$ns" -f "$repo/examples/broker-group-master-slave.yaml" -f "$repo/examples/topic.yaml" >/dev/null
  local ok=0
  for _ in $(seq 1 120); do
    if k -n "$ns" get statefulset orders-a >/dev/null 2>&1 \
       && [ -n "$(k -n "$ns" get brokergroup orders-a -o jsonpath='{.status.observedGeneration}')" ] \
       && [ -n "$(k -n "$ns" get topic order-events -o jsonpath='{.status.conditions}')" ] \
       && k -n "$NS" get lease ferrum-operator >/dev/null 2>&1; then
      ok=1; break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ "$ok" != 1 ] || grep -qi forbidden "$log"; then
    echo "operator ($mode) as the chart's ServiceAccount:" >&2
    grep -i 'forbidden\|error' "$log" | head -20 >&2 || tail -20 "$log" >&2
    exit 1
  fi
  if [ "$mode" = cluster-wide ]; then
    # The PodMonitors select the pods the operator really builds, on a port they really name.
    mkdir -p "$out/pods"
    k -n "$ns" get statefulset orders-a -o json >"$out/pods/broker.json"
    local d
    for _ in $(seq 1 60); do
      d="$(k -n "$ns" get deployment -l app.kubernetes.io/name=ferrum-namesrv -o json)"
      python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["items"] else 1)' <<<"$d" && break
      sleep 0.5
    done
    printf '%s\n' "$d" >"$out/pods/namesrv.json"
    # The chart's own Deployment (applied from the default variant) for the operator's PodMonitor.
    k -n "$NS" get deployment -l app.kubernetes.io/component=operator -o json >"$out/pods/operator.json"
    python3 "$repo/hack/observability/jobs.py" "$out/monitoring.yaml" --pods "$out/pods" >/dev/null
    echo "   the PodMonitors select the pod templates of the brokers and NameServers the operator"
    echo "   builds (port health) and of the chart's operator Deployment (port metrics)"
  fi
  # Topics carry a finalizer; without an operator running it would block the namespace's cleanup.
  k -n "$ns" patch topic order-events --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null
  k -n "$ns" delete -f "$repo/examples/topic.yaml" -f "$repo/examples/broker-group-master-slave.yaml" >/dev/null
  k -n "$NS" delete lease ferrum-operator >/dev/null
  echo "   $mode: StatefulSet applied, BrokerGroup and Topic status written, Lease held; nothing forbidden"
}
OPERATOR_BIN="${OPERATOR_BIN:-$repo/target/debug/ferrum-operator}"
if [ ! -x "$OPERATOR_BIN" ] || [ -n "$(find "$repo/operator/src" -newer "$OPERATOR_BIN" -name '*.rs' | head -1)" ]; then
  cargo build -q -p ferrum-operator --bin ferrum-operator
fi
step "the operator binary as the chart's ServiceAccount (namespaced: ${WATCH[*]})"
run_operator namespaced "${WATCH[0]}" --watch-namespaces "$(IFS=,; echo "${WATCH[*]}")"
k delete -f "$out/namespaced.yaml" --wait=true >/dev/null
k apply --server-side -f "$out/default.yaml" --field-manager=chart-test >/dev/null
step "the operator binary as the chart's ServiceAccount (cluster-wide)"
run_operator cluster-wide examples

echo "chart-test: all checks passed"
