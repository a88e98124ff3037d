#!/usr/bin/env bash
# Turns the control plane of up.sh into a single-node cluster whose pods really run:
# containerd (Debian, CRI plugin, runc, overlayfs) + CNI bridge, our own pause image, kubelet,
# kube-proxy (iptables), kube-scheduler, and CoreDNS as a host process behind the kube-dns
# Service. Everything it starts or changes is recorded under $FERRUM_K8S_DIR/node so that
# node-down.sh undoes exactly that. Run as root (containerd, iptables, mounts).
#
# Start the control plane with the host's address advertised, so pods reach the apiserver
# through the `kubernetes` Service:
#   FERRUM_K8S_ADVERTISE_ADDRESS=$(hack/k8s/node-ip.sh) hack/k8s/up.sh && hack/k8s/node-up.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
. "$here/node-env.sh"

trap 'echo "node-up.sh failed; hack/k8s/node-down.sh removes what was started (logs in $N/logs)" >&2' ERR
t0=$(date +%s%N)
since() { local ms=$(( ($(date +%s%N) - t0) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
say() { echo "node-up [$(since) s] $*"; }

if [ "$(id -u)" != 0 ]; then
  echo "node-up.sh: must run as root (containerd, iptables, mounts)" >&2
  exit 1
fi
for b in kubelet kube-proxy kube-scheduler kubectl; do
  if [ ! -x "$K8S_BIN/$b" ]; then
    echo "node-up.sh: $K8S_BIN/$b is missing; run hack/k8s/build.sh first" >&2
    exit 1
  fi
done
if [ ! -x "$COREDNS_BIN" ]; then
  echo "node-up.sh: $COREDNS_BIN is missing; run hack/k8s/build.sh first" >&2
  exit 1
fi
if ! { [ -f "$D/apiserver.pid" ] && kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null; }; then
  echo "node-up.sh: no control plane in $D; run hack/k8s/up.sh first" >&2
  exit 1
fi
if [ -f "$N/kubelet.pid" ] && kill -0 "$(cat "$N/kubelet.pid")" 2>/dev/null; then
  echo "node-up.sh: a node is already running in $N (run node-down.sh first)" >&2
  exit 1
fi

missing_pkgs=()
command -v containerd >/dev/null || missing_pkgs+=(containerd)
command -v conntrack >/dev/null || missing_pkgs+=(conntrack)
[ -x /usr/sbin/runc ] || missing_pkgs+=(runc)
[ -x /usr/lib/cni/bridge ] || missing_pkgs+=(containernetworking-plugins)
command -v podman >/dev/null || missing_pkgs+=(podman)
if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  say "installing ${missing_pkgs[*]} (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_pkgs[@]}"
fi

NODE_IP="${FERRUM_NODE_IP:-$("$here/node-ip.sh")}"
API_PORT="$(cat "$D/apiserver.port")"
KUBECTL=("$K8S_BIN/kubectl" --kubeconfig "$D/kubeconfig")

rm -rf "$N"
mkdir -p "$N/pki" "$N/containerd" "$N/cni/net.d" "$N/cni/ipam" "$N/kubelet" "$N/images" "$N/logs"
echo "$NODE_IP" > "$N/node-ip"
# Host settings this script may change; node-down.sh puts back what is recorded here.
for k in vm.overcommit_memory kernel.panic kernel.panic_on_oops net.bridge.bridge-nf-call-iptables net.ipv4.ip_forward; do
  echo "$k=$(sysctl -n "$k")"
done > "$N/sysctl.before"
ls /var/run/netns 2>/dev/null | sort > "$N/netns.before" || true
# Chains that exist now are not ours; node-down.sh removes the ones created after this point.
for cmd in iptables ip6tables; do
  for table in filter nat mangle; do
    "$cmd" -w -t "$table" -S 2>/dev/null | awk -v t="$table" '$1 == "-N" {print t, $2}'
  done > "$N/$cmd.chains.before"
done
ip link show "$BRIDGE" >/dev/null 2>&1 && echo "$BRIDGE" > "$N/bridge.before"

start() { # name, then the command; the pid goes to $N/<name>.pid
  local name=$1; shift
  setsid "$@" >"$N/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$N/$name.pid"
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# --- credentials: client certs from up.sh's CA, one kubeconfig per component -------------
issue() { # file name, CN, O (may be empty), extra SAN line (may be empty)
  local f=$1 cn=$2 o=$3 san=$4 subj="/CN=$2"
  [ -n "$o" ] && subj="/O=$o/CN=$cn"
  openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$N/pki/$f.key" -out "$N/pki/$f.csr" 2>/dev/null
  if [ -n "$san" ]; then printf '%s\n' "$san" > "$N/pki/$f.ext"; else : > "$N/pki/$f.ext"; fi
  openssl x509 -req -in "$N/pki/$f.csr" -CA "$D/pki/ca.crt" -CAkey "$D/pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$N/pki/$f.ext" -out "$N/pki/$f.crt" 2>/dev/null
}
kubeconfig() { # file name (cert of the same name)
  cat > "$N/$1.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: ferrum
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $D/pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $N/pki/$1.crt
    client-key: $N/pki/$1.key
contexts:
- name: ferrum
  context: { cluster: ferrum, user: $1 }
current-context: ferrum
KCFG
}
issue kubelet "system:node:$NODE_NAME" system:nodes ""
kubeconfig kubelet
issue kubelet-serving "$NODE_NAME" "" "subjectAltName=IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME"
issue kube-proxy system:kube-proxy "" ""
kubeconfig kube-proxy
issue kube-scheduler system:kube-scheduler "" ""
kubeconfig kube-scheduler
issue coredns ferrum:coredns "" ""
kubeconfig coredns
say "certificates issued"

# The apiserver authorizes with RBAC only (no Node authorizer), so the node's group gets the
# bootstrap `system:node` role; kube-proxy and kube-scheduler have default bindings.
"${KUBECTL[@]}" apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: "ferrum:nodes" }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:node" }
subjects: [ { apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes" } ]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: "ferrum:coredns" }
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: "ferrum:coredns" }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "ferrum:coredns" }
subjects: [ { apiGroup: rbac.authorization.k8s.io, kind: User, name: "ferrum:coredns" } ]
YAML

# --- containerd ---------------------------------------------------------------------------
# Our own root, state and socket, so a containerd of the host (if any) is untouched. runc with
# the cgroupfs driver: this host has hybrid cgroups v1 and no systemd as PID 1.
cat > "$N/containerd/config.toml" <<TOML
version = 2
root = "$N/containerd/root"
state = "$N/containerd/state"

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$N/containerd/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    # Pod network namespaces under our state dir, not /var/run/netns: node-down.sh finds them.
    netns_mounts_under_state_dir = true
    # This host withholds CAP_SYS_RESOURCE even from root, so no process may lower its
    # oom_score_adj; without this every sandbox fails ("nsexec: failed to update
    # /proc/self/oom_score_adj: Permission denied") as the kubelet asks -998 for pause.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = "$N/containerd/runc"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$N/cni/net.d"
TOML
start containerd containerd --config "$N/containerd/config.toml"
for _ in $(seq 1 100); do
  ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 && break
  kill -0 "$(cat "$N/containerd.pid")" 2>/dev/null || { tail -20 "$N/logs/containerd.log" >&2; exit 1; }
  sleep 0.2
done
say "containerd $(containerd --version | awk '{print $3}') up ($CONTAINERD_SOCK)"

# --- images: pause (sandbox) and testbox (smoke workload), static Go, FROM scratch ----------
"$here/node-images.sh" "$N/images"
for img in pause testbox; do
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$N/images/$img.tar" >/dev/null
done
say "images imported: $(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q | grep '^localhost/' | tr '\n' ' ')"

# --- CNI: one bridge, host-local addresses, masquerade out, portmap -------------------------
cat > "$N/cni/net.d/10-ferrum.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "ferrum-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$N/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
# Service traffic between two pods on the bridge must pass iptables (kube-proxy's DNAT).
sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1

# --- kube-scheduler (up.sh runs none) --------------------------------------------------------
start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$N/kube-scheduler.kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --secure-port=0

# --- kubelet ---------------------------------------------------------------------------------
KUBELET_PORT=$(free_port)
KUBELET_HEALTHZ=$(free_port)
cat > "$N/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ
tlsCertFile: $N/pki/kubelet-serving.crt
tlsPrivateKeyFile: $N/pki/kubelet-serving.key
# Test node: the apiserver (logs, exec) and anyone on this host may call the kubelet API.
authentication:
  anonymous: { enabled: true }
  webhook: { enabled: false }
  x509: { clientCAFile: $D/pki/ca.crt }
authorization: { mode: AlwaysAllow }
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
# QoS cgroups would be created at the top of every v1 hierarchy of a host we share; pods get
# plain per-container cgroups instead.
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# No CAP_SYS_RESOURCE here (see restrict_oom_score_adj above): keep the kubelet's own at 0.
oomScoreAdj: 0
clusterDNS: [$CLUSTER_DNS]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# Images here are imported, never pulled: image GC would delete what cannot come back.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
registerNode: true
rotateCertificates: false
serializeImagePulls: false
YAML
start kubelet "$K8S_BIN/kubelet" --config="$N/kubelet/config.yaml" \
  --kubeconfig="$N/kubelet.kubeconfig" --root-dir="$N/kubelet/root" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=2

# --- kube-proxy --------------------------------------------------------------------------------
cat > "$N/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: { kubeconfig: $N/kube-proxy.kubeconfig }
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
iptables:
  # No route_localnet change on the host: NodePorts are not served on 127.0.0.1.
  localhostNodePorts: false
# Leave the host's conntrack sysctls as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
YAML
start kube-proxy "$K8S_BIN/kube-proxy" --config="$N/kube-proxy.yaml" --v=2

# --- CoreDNS: a host process, reached through the kube-dns Service ----------------------------
COREDNS_HEALTH=$(free_port)
COREDNS_READY=$(free_port)
cat > "$N/Corefile" <<COREFILE
.:$COREDNS_PORT {
    bind $NODE_IP
    errors
    health 127.0.0.1:$COREDNS_HEALTH
    ready 127.0.0.1:$COREDNS_READY
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $N/coredns.kubeconfig ferrum
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
    loop
}
COREFILE
start coredns "$COREDNS_BIN" -conf "$N/Corefile"
"${KUBECTL[@]}" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: { k8s-app: kube-dns }
spec:
  clusterIP: $CLUSTER_DNS
  ports:
  - { name: dns, port: 53, protocol: UDP, targetPort: $COREDNS_PORT }
  - { name: dns-tcp, port: 53, protocol: TCP, targetPort: $COREDNS_PORT }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: node-up.ferrum.dev
addressType: IPv4
ports:
- { name: dns, port: $COREDNS_PORT, protocol: UDP }
- { name: dns-tcp, port: $COREDNS_PORT, protocol: TCP }
endpoints:
- addresses: ["$NODE_IP"]
  conditions: { ready: true }
YAML

# --- wait: node Ready, CoreDNS ready ----------------------------------------------------------
ok=0
for _ in $(seq 1 180); do
  for p in containerd kubelet kube-proxy coredns; do
    if ! kill -0 "$(cat "$N/$p.pid")" 2>/dev/null; then
      echo "node-up.sh: $p exited; last log lines:" >&2
      tail -30 "$N/logs/$p.log" >&2
      exit 1
    fi
  done
  st="$("${KUBECTL[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
  if [ "$st" = True ] && curl -sf "http://127.0.0.1:$COREDNS_READY/ready" >/dev/null 2>&1; then
    ok=1; break
  fi
  sleep 1
done
if [ "$ok" != 1 ]; then
  echo "node-up.sh: node $NODE_NAME not Ready with CoreDNS within 180 s" >&2
  "${KUBECTL[@]}" get node "$NODE_NAME" -o yaml >&2 2>/dev/null || true
  tail -30 "$N/logs/kubelet.log" >&2
  exit 1
fi
say "node $NODE_NAME Ready (ip $NODE_IP, pods $POD_CIDR, DNS $CLUSTER_DNS -> $NODE_IP:$COREDNS_PORT)"
echo "$(since)" > "$N/up-seconds"
