#!/usr/bin/env bash
# Starts etcd + kube-apiserver + kube-controller-manager on 127.0.0.1 with fresh certificates,
# a service-account key and a static admin token, and writes a kubeconfig. No kubelet: pods
# are created by the controllers but never run. Stop it with down.sh.
#
# Prints `export FERRUM_KUBECONFIG=...` on success; the same line is in $FERRUM_K8S_DIR/env.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"

for b in etcd kube-apiserver kube-controller-manager kubectl; do
  if [ ! -x "$K8S_BIN/$b" ]; then
    echo "up.sh: $K8S_BIN/$b is missing; run hack/k8s/build.sh first" >&2
    exit 1
  fi
done
if [ -f "$FERRUM_K8S_DIR/apiserver.pid" ] && kill -0 "$(cat "$FERRUM_K8S_DIR/apiserver.pid")" 2>/dev/null; then
  echo "up.sh: a control plane is already running in $FERRUM_K8S_DIR (run down.sh first)" >&2
  exit 1
fi

D="$FERRUM_K8S_DIR"
rm -rf "$D"
mkdir -p "$D/pki" "$D/etcd"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
API_PORT=$(free_port)
# 127.0.0.1 (the default) keeps the apiserver on loopback. A node (node-up.sh) needs pods to
# reach it through the `kubernetes` Service, so there it is the host's address: the apiserver
# then listens on every interface and maintains that Service's endpoints itself.
ADVERTISE="${FERRUM_K8S_ADVERTISE_ADDRESS:-127.0.0.1}"
if [ "$ADVERTISE" = 127.0.0.1 ]; then
  BIND=127.0.0.1
  RECONCILER=none
else
  BIND=0.0.0.0
  RECONCILER=lease
fi

# Certificates: a throwaway CA, the apiserver's serving cert for 127.0.0.1, and the
# service-account signing key.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ferrum-test-ca" \
  -keyout "$D/pki/ca.key" -out "$D/pki/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
  -keyout "$D/pki/apiserver.key" -out "$D/pki/apiserver.csr" 2>/dev/null
# 10.0.0.1 is the `kubernetes` Service's address in --service-cluster-ip-range (pods use it).
printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' \
  "$ADVERTISE" > "$D/pki/san.ext"
openssl x509 -req -in "$D/pki/apiserver.csr" -CA "$D/pki/ca.crt" -CAkey "$D/pki/ca.key" \
  -CAcreateserial -days 2 -extfile "$D/pki/san.ext" -out "$D/pki/apiserver.crt" 2>/dev/null
openssl genrsa -out "$D/pki/sa.key" 2048 2>/dev/null

TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
echo "$TOKEN,ferrum-admin,ferrum-admin-uid,system:masters" > "$D/tokens.csv"

start() { # name, then the command
  local name=$1; shift
  setsid "$@" >"$D/$name.log" 2>&1 < /dev/null &
  echo $! > "$D/$name.pid"
}

start etcd "$K8S_BIN/etcd" --name=ferrum --data-dir="$D/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="ferrum=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync

start apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address="$BIND" --secure-port="$API_PORT" \
  --advertise-address="$ADVERTISE" --endpoint-reconciler-type="$RECONCILER" \
  --tls-cert-file="$D/pki/apiserver.crt" --tls-private-key-file="$D/pki/apiserver.key" \
  --client-ca-file="$D/pki/ca.crt" \
  --token-auth-file="$D/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$D/pki/sa.key" --service-account-signing-key-file="$D/pki/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --allow-privileged=true \
  --kubelet-preferred-address-types=InternalIP,Hostname

cat > "$D/kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: ferrum
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 < "$D/pki/ca.crt")
users:
- name: ferrum-admin
  user:
    token: $TOKEN
contexts:
- name: ferrum
  context: { cluster: ferrum, user: ferrum-admin, namespace: default }
current-context: ferrum
KCFG

ready=0
for _ in $(seq 1 120); do
  if curl -sf --cacert "$D/pki/ca.crt" -H "Authorization: Bearer $TOKEN" \
       "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then
    ready=1; break
  fi
  if ! kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null; then break; fi
  sleep 1
done
if [ "$ready" != 1 ]; then
  echo "up.sh: kube-apiserver did not become ready; last log lines:" >&2
  tail -20 "$D/apiserver.log" >&2
  "$here/down.sh" >/dev/null 2>&1 || true
  exit 1
fi

# kube-controller-manager: garbage collection (owner references), namespaces, StatefulSets,
# Deployments, service accounts.
start controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$D/kubeconfig" --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port=0 \
  --controllers='*' \
  --service-account-private-key-file="$D/pki/sa.key" --root-ca-file="$D/pki/ca.crt"

echo "export FERRUM_KUBECONFIG=$D/kubeconfig FERRUM_KUBECTL=$K8S_BIN/kubectl" > "$D/env"
echo "$API_PORT" > "$D/apiserver.port"
echo "control plane up (apiserver https://127.0.0.1:$API_PORT, logs in $D)"
cat "$D/env"
