#!/usr/bin/env bash
# Master and slave in their own network namespaces, linked through the root namespace:
#
#   ns ferrum-m (10.77.1.2) --veth-- root (10.77.1.1 / 10.77.2.1) --veth-- ns ferrum-s (10.77.2.2)
#
# The NameServer and the client (ferrumctl) run in the root namespace. The drill:
#   1. SYNC_MASTER + SLAVE, every send SEND_OK;
#   2. slow link (tc netem 100 ms each way on the slave's veth): sends still SEND_OK;
#   3. partition (iptables DROP between the two namespaces): every send answers
#      FLUSH_SLAVE_TIMEOUT or SLAVE_NOT_AVAILABLE, never SEND_OK, and every message acknowledged
#      before is on the slave (its max commit-log offset covers each SEND_OK msgId);
#   4. heal: the slave catches up to the master's max offset and sends are SEND_OK again.
#
# Needs root, `ip`, `tc` and `iptables`; without them it says so and exits 0 (skipped).
# FERRUM_BIN_DIR picks the binaries (default: target/release, built here).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null || ! command -v tc >/dev/null \
    || ! command -v iptables >/dev/null; then
    echo "partition drill skipped: needs root, ip, tc and iptables"
    exit 0
fi

bin=${FERRUM_BIN_DIR:-}
if [[ -z $bin ]]; then
    echo "=== building release binaries (broker, namesrv, ferrumctl)"
    cargo build --release -p ferrum-broker -p ferrum-namesrv -p ferrum-client
    bin=target/release
fi
for b in ferrum-broker ferrum-namesrv ferrumctl; do
    [[ -x $bin/$b ]] || { echo "missing $bin/$b" >&2; exit 1; }
done
bin=$(cd "$bin" && pwd)

work=$(mktemp -d)
pids=()
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)

# Idempotent: also clears what an interrupted earlier run left behind.
teardown_net() {
    local rule
    for rule in "-s 10.77.1.2 -d 10.77.2.2 -j DROP" "-s 10.77.2.2 -d 10.77.1.2 -j DROP" \
        "-s 10.77.0.0/16 -d 10.77.0.0/16 -j ACCEPT"; do
        # shellcheck disable=SC2086
        while iptables -D FORWARD $rule 2>/dev/null; do :; done
    done
    ip netns del ferrum-m 2>/dev/null || true
    ip netns del ferrum-s 2>/dev/null || true
    ip link del fm-root 2>/dev/null || true
    ip link del fs-root 2>/dev/null || true
}
cleanup() {
    set +e
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    teardown_net
    echo "$forward_before" >/proc/sys/net/ipv4/ip_forward
    rm -rf "$work"
}
trap cleanup EXIT
teardown_net

echo "=== network namespaces ferrum-m and ferrum-s"
for side in m s; do
    net=$([[ $side == m ]] && echo 1 || echo 2)
    ip netns add "ferrum-$side"
    ip link add "f$side-root" type veth peer name "f$side-ns"
    ip link set "f$side-ns" netns "ferrum-$side"
    ip addr add "10.77.$net.1/24" dev "f$side-root"
    ip link set "f$side-root" up
    ip netns exec "ferrum-$side" ip addr add "10.77.$net.2/24" dev "f$side-ns"
    ip netns exec "ferrum-$side" ip link set "f$side-ns" up
    ip netns exec "ferrum-$side" ip link set lo up
    ip netns exec "ferrum-$side" ip route add default via "10.77.$net.1"
done
echo 1 >/proc/sys/net/ipv4/ip_forward
# A host firewall's FORWARD policy must not decide this drill.
iptables -I FORWARD -s 10.77.0.0/16 -d 10.77.0.0/16 -j ACCEPT

echo "=== NameServer in the root namespace"
"$bin/ferrum-namesrv" --listen 0.0.0.0:19876 >"$work/namesrv.out" 2>"$work/namesrv.log" &
pids+=($!)

start_broker() { # side role id
    local side=$1 role=$2 id=$3 net
    net=$([[ $side == m ]] && echo 1 || echo 2)
    mkdir -p "$work/$side"
    ip netns exec "ferrum-$side" "$bin/ferrum-broker" -n "10.77.$net.1:19876" \
        --set "brokerIP1=10.77.$net.2" --set "bindAddress=10.77.$net.2" \
        --set listenPort=10911 --set haListenPort=10912 --set metricsPort=0 \
        --set brokerClusterName=NetnsCluster --set brokerName=netns-a \
        --set "brokerRole=$role" --set "brokerId=$id" \
        --set "storePathRootDir=$work/$side" --set mappedFileSizeCommitLog=16777216 \
        --set syncFlushTimeout=1500 --set haHousekeepingInterval=3000 \
        --set registerNameServerPeriod=2000 --set ferrumSlaveSyncInterval=1000 \
        >"$work/$side.out" 2>"$work/$side.log" &
    pids+=($!)
}
start_broker m SYNC_MASTER 0
start_broker s SLAVE 1

ctl() { "$bin/ferrumctl" -n 127.0.0.1:19876 --timeout-ms 5000 "$@"; }

wait_until() { # seconds description command...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq 1 $((limit * 5))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "FAIL: $what" >&2
    tail -n 30 "$work"/*.log >&2
    exit 1
}

slave_connected() {
    ctl --json broker status -b 10.77.1.2:10911 | tr -d '\n ' | grep -q '"slaves":\[{'
}
wait_until 30 "the slave replicates from the master" slave_connected
ctl topic create NetnsTopic -c NetnsCluster -r 4 -w 4 >/dev/null
wait_until 30 "the topic routes" ctl topic route NetnsTopic

max_offset_of() { # addr
    ctl --json broker status -b "$1" | tr -d '\n ' | sed -n 's/.*"maxPhyOffset":\([0-9-]*\).*/\1/p' | head -n1
}

send() { # count label -> prints statuses, appends msgId offsets of SendOk to $work/acked
    local count=$1 label=$2 i line
    for i in $(seq 1 "$count"); do
        line=$(ctl --json message send NetnsTopic "$label-$i" 2>&1 | tr -d '\n ' || true)
        status=$(sed -n 's/.*"status":"\([A-Za-z]*\)".*/\1/p' <<<"$line")
        echo "${status:-Error}"
        if [[ $status == SendOk ]]; then
            id=$(sed -n 's/.*"msg_id":"\([0-9A-F]*\)".*/\1/p' <<<"$line")
            echo $((16#${id: -16})) >>"$work/acked"
        fi
    done | sort | uniq -c
}

echo "=== 1. healthy link"
send 30 healthy | tee "$work/healthy"
grep -q " SendOk" "$work/healthy" && ! grep -vq " SendOk" "$work/healthy" \
    || { echo "FAIL: healthy sends must all be SendOk" >&2; exit 1; }

# netem (delay) when the kernel has it, else tbf (a 1 Mbit/s link): both make replication slow.
slow_link() { # dev [netns]
    local run=()
    [[ $# -gt 1 ]] && run=(ip netns exec "$2")
    "${run[@]}" tc qdisc add dev "$1" root netem delay 100ms 2>/dev/null \
        || "${run[@]}" tc qdisc add dev "$1" root tbf rate 1mbit burst 32kbit latency 400ms
}
echo "=== 2. slow link on the slave's veth, both ways (netem 100 ms, or tbf 1 Mbit/s)"
slow_link fs-root
slow_link fs-ns ferrum-s
tc qdisc show dev fs-root
start=$(date +%s%N)
send 10 slow | tee "$work/slow"
echo "10 sends over the slow link took $(( ($(date +%s%N) - start) / 1000000 )) ms"
grep -q " SendOk" "$work/slow" || { echo "FAIL: slow-link sends must succeed" >&2; exit 1; }

echo "=== 3. partition master from slave"
iptables -I FORWARD -s 10.77.1.2 -d 10.77.2.2 -j DROP
iptables -I FORWARD -s 10.77.2.2 -d 10.77.1.2 -j DROP
send 10 partitioned | tee "$work/partitioned"
if grep -q " SendOk" "$work/partitioned"; then
    echo "FAIL: a SYNC_MASTER acknowledged a send while no slave could hold it" >&2
    exit 1
fi
grep -Eq " (FlushSlaveTimeout|SlaveNotAvailable)" "$work/partitioned" \
    || { echo "FAIL: partitioned sends must answer FLUSH_SLAVE_TIMEOUT or SLAVE_NOT_AVAILABLE" >&2; exit 1; }
slave_max=$(max_offset_of 10.77.2.2:10911)
highest_acked=$(sort -n "$work/acked" | tail -n1)
echo "slave holds the commit log up to $slave_max; highest acknowledged message starts at $highest_acked"
if (( highest_acked >= slave_max )); then
    echo "FAIL: an acknowledged message is not on the slave" >&2
    exit 1
fi

echo "=== 4. heal"
iptables -D FORWARD -s 10.77.1.2 -d 10.77.2.2 -j DROP
iptables -D FORWARD -s 10.77.2.2 -d 10.77.1.2 -j DROP
tc qdisc del dev fs-root root
ip netns exec ferrum-s tc qdisc del dev fs-ns root
caught_up() { [[ $(max_offset_of 10.77.1.2:10911) == "$(max_offset_of 10.77.2.2:10911)" ]]; }
wait_until 60 "the slave catches up after the partition" caught_up
acked_again() { send 1 healed | grep -q " SendOk"; }
wait_until 30 "sends are acknowledged again after healing" acked_again
echo "partition drill passed: $(wc -l <"$work/acked") messages acknowledged, none lost"
