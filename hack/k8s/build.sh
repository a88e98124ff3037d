#!/usr/bin/env bash
# Builds a Kubernetes control plane for the operator's integration tests from the Go module
# proxy only: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd; with
# the argument `node` also kubelet, kube-proxy (same wrapper module) and CoreDNS (node-up.sh).
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points every staging module at
# ./staging/src/... So we generate a wrapper module that requires k8s.io/kubernetes and
# replaces each staging module with its published v0.Y.Z tag. etcd is built from the same
# module graph, at the version k8s.io/apiserver itself requires.
#
# Output: ${FERRUM_K8S_CACHE:-$HOME/.cache/ferrum}/k8s-<version>/bin. Skips binaries that exist.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.4}"
MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"
STAGING_VERSION="v0.${K8S_VERSION#1.}"
CACHE="${FERRUM_K8S_CACHE:-$HOME/.cache/ferrum}"
ROOT="$CACHE/k8s-$K8S_VERSION"
BIN="$ROOT/bin"
WRAP="$ROOT/wrapper"

# The staging modules of k8s.io/kubernetes 1.32-1.35 (upstream's replace block). 1.36 adds
# cri-streaming and streaming; 1.31 lacks externaljwt. Keep this list in step with K8S_VERSION.
STAGING=(
  api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller
)
case "$MINOR" in
  32|33|34|35) ;;
  *) echo "build.sh: the staging module list is written for Kubernetes 1.32-1.35, not $K8S_VERSION" >&2; exit 2 ;;
esac

# CoreDNS is its own module (no replace directives), pinned; built in its own cache dir.
COREDNS_VERSION="${COREDNS_VERSION:-1.14.7}"
COREDNS_ROOT="$CACHE/coredns-$COREDNS_VERSION"

build_coredns() {
  if [ -x "$COREDNS_ROOT/bin/coredns" ]; then
    echo "coredns $COREDNS_VERSION already built in $COREDNS_ROOT/bin"
    return
  fi
  local s
  s=$(date +%s)
  echo "building coredns $COREDNS_VERSION"
  mkdir -p "$COREDNS_ROOT/bin"
  # `go install pkg@version` works because coredns's go.mod has no replace directives; GOBIN
  # puts the binary into the cache dir.
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-p=${FERRUM_GO_JOBS:-1}" GOBIN="$COREDNS_ROOT/bin" \
    nice -n 19 go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@v$COREDNS_VERSION"
  echo "built coredns $COREDNS_VERSION in $(( $(date +%s) - s )) s"
}

# `build.sh node` (node-up.sh's callers) adds the node components; the control-plane tests
# need none of them and do not pay for them.
NODE=0
[ "${1:-}" = node ] && NODE=1
want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
[ "$NODE" = 1 ] && want+=(kubelet kube-proxy)

mkdir -p "$CACHE"
# Several test scripts may call this at once; one builds, the others wait and find the result.
exec 9>"$CACHE/.k8s-build.lock"
flock 9

missing=0
for b in "${want[@]}"; do [ -x "$BIN/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then
  echo "k8s $K8S_VERSION already built in $BIN"
  [ "$NODE" = 1 ] && build_coredns
  exit 0
fi

mkdir -p "$BIN" "$WRAP"
cd "$WRAP"
{
  echo "module ferrum.dev/k8s-test-bins"
  echo
  # k/k 1.33/1.34 declare go 1.24.0 and godebug default=go1.24; GODEBUG defaults come from
  # the main module, so the wrapper repeats them.
  echo "go 1.24.0"
  echo
  echo "godebug default=go1.24"
  echo
  echo "require k8s.io/kubernetes v$K8S_VERSION"
  echo
  echo "replace ("
  for m in "${STAGING[@]}"; do echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
  echo ")"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO

export GOTOOLCHAIN=local CGO_ENABLED=0
# -p=1 by default: the build machines have 2 cores shared with other builds; CI, which has the
# machine to itself, sets FERRUM_GO_JOBS=2.
export GOFLAGS="-mod=mod -p=${FERRUM_GO_JOBS:-1}"

start=$(date +%s)
# tidy resolves etcd at the version already selected by k8s.io/apiserver's requirements.
nice -n 19 go mod tidy
ETCD_VERSION="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
echo "etcd from the module graph: $ETCD_VERSION"

LDFLAGS="-s -w \
 -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$MINOR \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$MINOR"

for b in "${want[@]}"; do
  [ "$b" = etcd ] && continue
  if [ ! -x "$BIN/$b" ]; then
    echo "building $b"
    bs=$(date +%s)
    nice -n 19 go build -trimpath -tags selinux,notest -ldflags "$LDFLAGS" -o "$BIN/$b" "k8s.io/kubernetes/cmd/$b"
    echo "built $b in $(( $(date +%s) - bs )) s"
  fi
done
if [ ! -x "$BIN/etcd" ]; then
  echo "building etcd $ETCD_VERSION"
  nice -n 19 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi
end=$(date +%s)
echo "built k8s $K8S_VERSION into $BIN in $((end - start)) s"
[ "$NODE" = 1 ] && build_coredns
exit 0
