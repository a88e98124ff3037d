#!/usr/bin/env bash
# Builds a pinned helm from the Go module proxy (helm.sh/helm/v3 cmd/helm) once into
# ${FERRUM_K8S_CACHE:-$HOME/.cache/ferrum}/helm-<version>/bin/helm and prints its path.
#
# Helm v3 built without upstream's Makefile ldflags assumes Kubernetes 1.20 for
# .Capabilities.KubeVersion and for lint's deprecation checks, so the same -X flags are set
# here, pointing at the Kubernetes minor the control-plane harness runs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../k8s/env.sh"

HELM_VERSION="${HELM_VERSION:-3.21.4}"
HELM_DIR="$FERRUM_K8S_CACHE/helm-$HELM_VERSION"
HELM="$HELM_DIR/bin/helm"
MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"

if [ -x "$HELM" ]; then
  echo "$HELM"
  exit 0
fi

mkdir -p "$HELM_DIR/bin"
echo "building helm v$HELM_VERSION from the Go module proxy into $HELM_DIR" >&2
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0
# -p=1 by default: the build machines have 2 cores shared with other builds; CI, which has the
# machine to itself, sets FERRUM_GO_JOBS=2.
export GOFLAGS="-p=${FERRUM_GO_JOBS:-1}"
export GOBIN="$HELM_DIR/bin"
start=$(date +%s)
nice -n 19 go install -trimpath -ldflags "-s -w \
 -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$MINOR \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$MINOR" \
  "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
echo "built helm v$HELM_VERSION in $(( $(date +%s) - start )) s" >&2
"$HELM" version >&2
echo "$HELM"
