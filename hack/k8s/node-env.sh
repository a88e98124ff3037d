# Shared settings of the single-node harness; sourced after env.sh by node-*.sh and smoke.sh.
D="$FERRUM_K8S_DIR"
# Everything node-up.sh starts or writes lives here; node-down.sh reads it back.
N="$D/node"
NODE_NAME="${FERRUM_NODE_NAME:-ferrum-node}"
# podman's default network already uses 10.88.0.0/16 on this kind of host.
POD_CIDR="${FERRUM_POD_CIDR:-10.244.0.0/24}"
BRIDGE="${FERRUM_POD_BRIDGE:-ferrum0}"
# Inside up.sh's --service-cluster-ip-range (10.0.0.0/24); 10.0.0.1 is `kubernetes`.
CLUSTER_DNS="${FERRUM_CLUSTER_DNS:-10.0.0.10}"
COREDNS_VERSION="${COREDNS_VERSION:-1.14.7}"
COREDNS_BIN="$FERRUM_K8S_CACHE/coredns-$COREDNS_VERSION/bin/coredns"
# CoreDNS listens on the node address at this port; kube-proxy maps the Service's port 53.
COREDNS_PORT="${FERRUM_COREDNS_PORT:-10053}"
CONTAINERD_SOCK="$N/containerd/containerd.sock"
PAUSE_IMAGE="localhost/ferrum/pause:1.0"
TESTBOX_IMAGE="localhost/ferrum/testbox:1.0"
