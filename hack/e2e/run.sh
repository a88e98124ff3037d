#!/usr/bin/env bash
# `make e2e`: the long-running scenarios that `make test` runs only briefly.
#
#  1. store crash drill: a child process appends under SYNC_FLUSH and is SIGKILLed at random
#     moments, FERRUM_STORE_CRASH_ROUNDS times (default 200); after each restart every
#     acknowledged message must read back byte-identical and the consume queues must agree.
#  2. the operator against a real control plane (same as `make k8s-test`).
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${FERRUM_STORE_CRASH_ROUNDS:-200}
echo "=== store crash drill: $rounds SIGKILL rounds under SYNC_FLUSH"
FERRUM_STORE_CRASH_ROUNDS=$rounds cargo test --release -p ferrum-store --test crash

echo "=== operator against a real control plane"
bash hack/k8s/test.sh
