#!/usr/bin/env bash
# Raft safety drill: a Raft-mode broker group (3 replicas, FERRUM_RAFT_CHAOS_REPLICAS=5 for 5),
# each replica in its own network namespace, routed through the root namespace where the
# NameServer and the clients run:
#
#   ns ferrum-raft{i} (10.79.{i+1}.2, veth frv{i}-ns) --veth-- root (10.79.{i+1}.1, frv{i}-root)
#
# broker/tests/raft_chaos.rs (FERRUM_RAFT_CHAOS_NETNS=1) then runs FERRUM_RAFT_CHAOS_SCHEDULES
# (default 50) seeded fault schedules under continuous produce and consume: leader isolated,
# minority/majority splits (iptables inside the namespaces), random packet loss (iptables
# statistic), slow links (tc netem if this kernel has it, else tbf), SIGKILL + restart loops and
# SIGSTOP/SIGCONT of leader and followers. After each schedule the faults are healed, a leader
# must be followed by every replica and sends acknowledged again; every replica is read back.
# The checker fails the run on any acknowledged message lost, two different messages at one
# (topic, queue, offset) across replicas or time, or non-monotonic offsets, printing the seed
# (replay with FERRUM_RAFT_CHAOS_SEED).
#
# Bounded: the drill gives up after FERRUM_RAFT_CHAOS_TIMEOUT seconds (default 3600; a
# 50-schedule run takes a few minutes). Needs root, ip, tc and iptables; without them it says
# so and exits 0 (skipped). Run it alone: flock /tmp/ferrum-node.lock bash hack/e2e/raft-chaos.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null || ! command -v tc >/dev/null \
    || ! command -v iptables >/dev/null; then
    echo "raft chaos drill skipped: needs root, ip, tc and iptables"
    exit 0
fi

replicas=${FERRUM_RAFT_CHAOS_REPLICAS:-3}
limit=${FERRUM_RAFT_CHAOS_TIMEOUT:-3600}
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
drill_pid=
work=$(mktemp -d)

# Idempotent: also clears what an interrupted earlier run left behind.
teardown_net() {
    local i pid
    for i in $(seq 0 4); do
        for pid in $(ip netns pids "ferrum-raft$i" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "ferrum-raft$i" 2>/dev/null || true
        ip link del "frv$i-root" 2>/dev/null || true
    done
    while iptables -D FORWARD -s 10.79.0.0/16 -d 10.79.0.0/16 -j ACCEPT 2>/dev/null; do :; done
}
cleanup() {
    set +e
    if [[ -n $drill_pid ]]; then
        # The drill runs in its own process group: the NameServer and the brokers with it.
        kill -9 -- "-$drill_pid" 2>/dev/null
        wait "$drill_pid" 2>/dev/null
    fi
    teardown_net
    echo "$forward_before" >/proc/sys/net/ipv4/ip_forward
    rm -rf "$work"
}
trap cleanup EXIT
teardown_net

# The drill runs copies (test binary in deps/, ferrum-broker and ferrum-namesrv beside deps/,
# where the test looks for them), so a rebuild in the tree cannot swap a binary mid-run.
# FERRUM_RAFT_CHAOS_PREBUILT names such a directory made earlier (e.g. built outside a lock).
bin=${FERRUM_RAFT_CHAOS_PREBUILT:-}
if [[ -z $bin ]]; then
    echo "=== building the drill (release): ferrum-broker, ferrum-namesrv, tests/raft_chaos.rs"
    cargo build --release -p ferrum-broker -p ferrum-namesrv
    built=$(cargo test --release -p ferrum-broker --test raft_chaos --no-run 2>&1 \
        | sed -n 's/.*Executable tests\/raft_chaos.rs (\(.*\))/\1/p' | tail -n1)
    [[ -n $built && -x $built ]] || { echo "the raft_chaos test binary was not found" >&2; exit 1; }
    bin=$work/bin
    mkdir -p "$bin/deps"
    cp "$built" "$bin/deps/raft_chaos"
    cp target/release/ferrum-broker target/release/ferrum-namesrv "$bin/"
fi
exe=$bin/deps/raft_chaos
for f in "$exe" "$bin/ferrum-broker" "$bin/ferrum-namesrv"; do
    [[ -x $f ]] || { echo "missing $f" >&2; exit 1; }
done

echo "=== network namespaces ferrum-raft0..$((replicas - 1))"
for i in $(seq 0 $((replicas - 1))); do
    net=$((i + 1))
    ip netns add "ferrum-raft$i"
    ip link add "frv$i-root" type veth peer name "frv$i-ns"
    ip link set "frv$i-ns" netns "ferrum-raft$i"
    ip addr add "10.79.$net.1/24" dev "frv$i-root"
    ip link set "frv$i-root" up
    ip netns exec "ferrum-raft$i" ip addr add "10.79.$net.2/24" dev "frv$i-ns"
    ip netns exec "ferrum-raft$i" ip link set "frv$i-ns" up
    ip netns exec "ferrum-raft$i" ip link set lo up
    ip netns exec "ferrum-raft$i" ip route add default via "10.79.$net.1"
done
echo 1 >/proc/sys/net/ipv4/ip_forward
# A host firewall's FORWARD policy must not decide this drill.
iptables -I FORWARD -s 10.79.0.0/16 -d 10.79.0.0/16 -j ACCEPT
ip netns exec ferrum-raft0 ip route get 10.79.2.2 >/dev/null \
    || { echo "FAIL: ferrum-raft0 has no route to ferrum-raft1" >&2; exit 1; }

echo "=== what this kernel offers for bad links"
if err=$(ip netns exec ferrum-raft0 tc qdisc add dev frv0-ns root netem delay 1ms 2>&1); then
    ip netns exec ferrum-raft0 tc qdisc del dev frv0-ns root
    echo "tc netem: available (slow links: netem delay 40 ms ± 20 ms)"
else
    echo "tc netem: refused ($err); slow links use tbf (1 Mbit/s)"
fi
if err=$(ip netns exec ferrum-raft0 iptables -A INPUT -s 10.79.2.2 -m statistic --mode random \
    --probability 0.1 -j DROP 2>&1); then
    ip netns exec ferrum-raft0 iptables -F INPUT
    echo "iptables statistic: available (packet loss)"
else
    echo "FAIL: iptables -m statistic refused ($err): no packet loss possible" >&2
    exit 1
fi

echo "=== drill: ${FERRUM_RAFT_CHAOS_SCHEDULES:-50} schedules, $replicas replicas, at most $limit s"
start=$(date +%s)
FERRUM_RAFT_CHAOS_NETNS=1 FERRUM_RAFT_CHAOS_REPLICAS=$replicas \
    setsid timeout -s KILL "$limit" "$exe" --exact \
    randomized_fault_schedules_lose_nothing_and_never_diverge --nocapture &
drill_pid=$!
status=0
wait "$drill_pid" || status=$?
drill_pid=
echo "raft chaos drill: exit $status after $(( $(date +%s) - start )) s"
exit "$status"
