#!/usr/bin/env bash
# `make k8s-node-test`: build (or reuse) the binaries, start the control plane advertising the
# host's address, bring the node up, run smoke.sh, and tear everything down whatever happens.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
"$here/build.sh" node
t0=$(date +%s)
FERRUM_K8S_ADVERTISE_ADDRESS="${FERRUM_NODE_IP:-$("$here/node-ip.sh")}" "$here/up.sh"
trap '"$here/node-down.sh"; "$here/down.sh"' EXIT
"$here/node-up.sh"
echo "node-test: control plane + node up in $(( $(date +%s) - t0 )) s"
"$here/smoke.sh"
