#!/usr/bin/env bash
# Builds (or reuses) the control plane, starts it, runs the operator's control-plane tests
# against it and stops it again, whatever the outcome.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
"$here/build.sh"
"$here/up.sh"
trap '"$here/down.sh"' EXIT
. "$FERRUM_K8S_DIR/env"
export FERRUM_KUBECONFIG FERRUM_KUBECTL
# The Topic tests run real NameServer and broker processes on loopback.
echo "building ferrum-namesrv and ferrum-broker for the Topic tests"
cargo build -p ferrum-namesrv -p ferrum-broker
cargo test -p ferrum-operator --test control_plane -- --nocapture
