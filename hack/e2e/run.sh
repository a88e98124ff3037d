#!/usr/bin/env bash
# `make e2e`: the long-running scenarios that `make test` runs only briefly.
#
#  1. store crash drill: a child process appends under SYNC_FLUSH and is SIGKILLed at random
#     moments, FERRUM_STORE_CRASH_ROUNDS times (default 200); after each restart every
#     acknowledged message must read back byte-identical and the consume queues must agree.
#  2. the operator against a real control plane (same as `make k8s-test`).
#  3. master-slave failover drill (broker/tests/master_slave.rs with FERRUM_E2E_LONG): 20 s of
#     load before kill -9 of the master, + 1 and + 2 slaves, SYNC_MASTER and ASYNC_MASTER.
#  4. master-slave partition drill in network namespaces (hack/e2e/partition.sh; root only).
#  4b. Raft safety drill: 50 seeded fault schedules (partitions, loss, slow links, kills,
#     freezes) against 3 replicas in network namespaces, with a checker (hack/e2e/raft-chaos.sh;
#     root only, see docs/e2e.md).
#  5. the cluster: images, chart, operator, BrokerGroup + Topic and 10,000 messages on a real
#     single-node Kubernetes (hack/e2e/cluster.sh; root only, see docs/e2e.md).
#  6. rolling upgrades: a Raft group of 3 and a master + 2 slaves group from image tag A to B
#     under continuous produce and consume, with a checker (hack/e2e/upgrade.sh; root only,
#     see docs/upgrades.md).
#
# `run.sh cluster` (`make e2e-cluster`, run by CI) runs only 5 and 6, each step timed:
#   FERRUM_E2E_RAFT=0      leaves the Raft group of 3 (10 leader kills) out of 5
#   FERRUM_E2E_UPGRADE=0   leaves 6 out
# Only one real node can run on a machine at a time (they share containerd, the CNI bridge
# and iptables); wrap concurrent runs in `flock /tmp/ferrum-node.lock`.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The real-node scenarios: images (host-built binaries, cached under ~/.cache/ferrum), the
# cluster scenario with its Raft step, then the rolling upgrades.
node_scenarios() {
  local t0 t
  t0=$(date +%s)
  echo "=== cluster end to end (hack/e2e/cluster.sh: images unless HEAD's are cached, then the scenario)"
  FERRUM_E2E_RAFT=${FERRUM_E2E_RAFT:-1} bash hack/e2e/cluster.sh
  t=$(date +%s)
  echo "=== cluster end to end (images, chart, MasterSlave and Raft groups, failover, GC): $(( t - t0 )) s"
  if [ "${FERRUM_E2E_UPGRADE:-1}" = 1 ]; then
    echo "=== rolling upgrades on the node (Raft group and master + 2 slaves, tag A -> B under load)"
    bash hack/e2e/upgrade.sh
    echo "=== rolling upgrades: $(( $(date +%s) - t )) s"
  fi
  echo "=== real-node scenarios: $(( $(date +%s) - t0 )) s"
}

if [ "${1:-all}" = cluster ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "run.sh cluster: needs root (containerd, iptables, mounts, podman)" >&2
    exit 1
  fi
  node_scenarios
  exit 0
fi

rounds=${FERRUM_STORE_CRASH_ROUNDS:-200}
echo "=== store crash drill: $rounds SIGKILL rounds under SYNC_FLUSH"
FERRUM_STORE_CRASH_ROUNDS=$rounds cargo test --release -p ferrum-store --test crash

echo "=== operator against a real control plane"
bash hack/k8s/test.sh

echo "=== master-slave failover drill (kill -9, promote, old master rejoins; checker)"
FERRUM_E2E_LONG=1 cargo test --release -p ferrum-broker --test master_slave -- --nocapture --test-threads=1

echo "=== master-slave partition drill in network namespaces"
bash hack/e2e/partition.sh

echo "=== Raft safety drill: 50 randomized fault schedules in network namespaces (checker)"
bash hack/e2e/raft-chaos.sh

echo "=== cluster end to end on a real node (helm chart, operator, BrokerGroup, 10,000 messages)"
if [ "$(id -u)" = 0 ]; then
  node_scenarios
else
  echo "cluster end to end and rolling upgrades skipped: need root (containerd, iptables, mounts, podman)"
fi
