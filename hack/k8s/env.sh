# Shared settings of the control-plane harness; sourced by up.sh and down.sh.
K8S_VERSION="${K8S_VERSION:-1.34.4}"
FERRUM_K8S_CACHE="${FERRUM_K8S_CACHE:-$HOME/.cache/ferrum}"
K8S_BIN="${K8S_BIN:-$FERRUM_K8S_CACHE/k8s-$K8S_VERSION/bin}"
# Runtime state (certs, etcd data, logs, kubeconfig, pids) of one local control plane.
FERRUM_K8S_DIR="${FERRUM_K8S_DIR:-${TMPDIR:-/tmp}/ferrum-k8s}"
