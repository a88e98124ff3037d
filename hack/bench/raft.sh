#!/usr/bin/env bash
# Raft figures (`BENCH_PHASES=raft make bench`, or run directly): release ferrum-namesrv and
# ferrum-broker on 127.0.0.1, driven by the same `ferrumctl bench produce` load twice:
#   1. a Raft group of 3 replicas (enableDLegerCommitLog=true, dLegerPeers on loopback);
#   2. an ASYNC_MASTER with one slave (master-slave replication).
# For each: msgs/s, p99, and write amplification = bytes the broker processes caused to be
# written to disk (write_bytes of /proc/<pid>/io, read before and after the load: every page
# of the CommitLog, consume queues, index files, Raft sidecar and checkpoint the process
# dirtied, counted again each time a page is dirtied after a flush cleaned it) divided by the
# message body bytes acknowledged to the producers, per replica and for the whole group. Store
# directory growth is no measure here: CommitLog files are fallocated whole when created.
# Then the Raft/ASYNC ratios of msgs/s and p99.
# A benchmark, never a test: nothing here asserts on the figures. Every replica and the load
# generator share this machine's cores, so the figures measure the whole group on one box.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [20]      length of each produce run
#   BENCH_CONCURRENCY [32]  concurrent synchronous producers
#   BENCH_SIZE [1024]       message body bytes
#   BENCH_QUEUES [8]        queues of the bench topic
#   BENCH_DATA [target/bench]  where the stores go (a fresh subdirectory, removed at exit)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

BENCH_SECONDS=${BENCH_SECONDS:-20}
BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-32}
BENCH_SIZE=${BENCH_SIZE:-1024}
BENCH_QUEUES=${BENCH_QUEUES:-8}
for n in BENCH_SECONDS BENCH_CONCURRENCY BENCH_SIZE BENCH_QUEUES; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "raft bench: $n must be a positive integer, got '${!n}'" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "raft bench: jq is required" >&2; exit 2; }
command -v python3 >/dev/null || { echo "raft bench: python3 is required (free ports)" >&2; exit 2; }

BIN=$ROOT/target/release
OUT=$ROOT/target/bench/raft
CLUSTER=RaftBenchCluster
GROUP=raft-bench
TOPIC=RaftBenchTopic
mkdir -p "$OUT" "${BENCH_DATA:-$ROOT/target/bench}"
DATA=$(mktemp -d "${BENCH_DATA:-$ROOT/target/bench}/raft.XXXXXX")

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for_line FILE REGEX SECONDS PID
wait_for_line() {
    local deadline=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$deadline" ]; do
        grep -Eq "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || { echo "process $4 exited; last lines of $1:" >&2; tail -20 "$1" >&2; return 1; }
        sleep 0.2
    done
    echo "no /$2/ in $1 within $3 s" >&2
    tail -20 "$1" >&2
    return 1
}

ctl() { timeout 30 "$BIN/ferrumctl" -n "$NAMESRV" "$@"; }

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

start_namesrv() { # dir
    "$BIN/ferrum-namesrv" --listen 127.0.0.1:0 >"$1/namesrv.log" 2>&1 &
    NS_PID=$!
    PIDS+=("$NS_PID")
    wait_for_line "$1/namesrv.log" "listening on" 30 "$NS_PID"
    NAMESRV=$(grep -Eo 'listening on [0-9.]+:[0-9]+' "$1/namesrv.log" | head -1 | awk '{print $3}')
}

# start_broker DIR NAME SETTINGS... -> sets LAST_PID, LAST_ADDR
start_broker() {
    local dir=$1/$2
    shift 2
    mkdir -p "$dir"
    local sets=() kv
    for kv in "$@"; do sets+=(--set "$kv"); done
    "$BIN/ferrum-broker" -n "$NAMESRV" \
        --set brokerClusterName=$CLUSTER --set brokerName=$GROUP \
        --set listenPort=0 --set bindAddress=127.0.0.1 --set metricsPort=0 \
        --set storePathRootDir="$dir/store" --set mappedFileSizeCommitLog=268435456 \
        --set registerNameServerPeriod=2000 "${sets[@]}" \
        >"$dir/broker.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_for_line "$dir/broker.log" "listening on" 60 "$LAST_PID"
    LAST_ADDR=$(grep -Eo 'listening on [0-9.]+:[0-9]+' "$dir/broker.log" | head -1 | awk '{print $3}')
}

free_ports() { # n
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()' "$1"
}

write_bytes() { awk '/^write_bytes:/ { print $2 }' "/proc/$1/io"; }

wait_master_route() {
    for _ in $(seq 1 150); do
        MASTER=$(ctl --json topic route $TOPIC 2>/dev/null | jq -r '.brokerDatas[0].brokerAddrs["0"] // empty' 2>/dev/null || true)
        [ -n "$MASTER" ] && return 0
        sleep 0.2
    done
    echo "no master in the route of $TOPIC" >&2
    return 1
}

# measure NAME PID... : runs the load and prints msgs/s, p99 and write amplification of the
# brokers PID... (their roles in $OUT/NAME.role.<i>). Sets RATE, P99_MS, AMP_IO.
measure() {
    local name=$1
    shift
    local pids=("$@") pid before=()
    for pid in "${pids[@]}"; do before+=("$(write_bytes "$pid")"); done
    note "$name: ${BENCH_SECONDS}s x ${BENCH_CONCURRENCY} producers, ${BENCH_SIZE} B, master $MASTER"
    ctl --json bench produce $TOPIC -c "$BENCH_CONCURRENCY" -s "$BENCH_SIZE" -d "$BENCH_SECONDS" \
        >"$OUT/$name.json" 2>"$OUT/$name.err" || { echo "ferrumctl bench failed:" >&2; cat "$OUT/$name.err" >&2; return 1; }
    # Let the flush thread write what the load dirtied (flushIntervalCommitLog 500 ms, the
    # checkpoint every second) before reading the counters.
    sleep 3
    local acked total=0 i=0 written
    acked=$(jq -r '.messages' "$OUT/$name.json")
    RATE=$(jq -r '.msgs_per_sec | floor' "$OUT/$name.json")
    P99_MS=$(jq -r '.latency_us.p99_us / 1000' "$OUT/$name.json")
    local body=$((acked * BENCH_SIZE))
    note "$RATE msgs/s, $(jq -r '.errors' "$OUT/$name.json") errors, p99 $P99_MS ms; $acked acknowledged = $body body bytes"
    for pid in "${pids[@]}"; do
        written=$(($(write_bytes "$pid") - before[i]))
        total=$((total + written))
        note "  $(cat "$OUT/$name.role.$i") (pid $pid): $written bytes written = $(awk "BEGIN { printf \"%.2f\", $written / $body }") per body byte"
        i=$((i + 1))
    done
    AMP_IO=$(awk "BEGIN { printf \"%.2f\", $total / $body }")
    note "  all ${#pids[@]} replicas: $total bytes written = $AMP_IO per body byte"
}

step "machine"
note "$(nproc) cores; load: $(uptime | sed 's/.*load average/load average/')"

step "building release binaries (ferrum-namesrv, ferrum-broker, ferrumctl)"
cargo build --release -q -p ferrum-namesrv -p ferrum-broker -p ferrum-client --bins

step "Raft group: 3 replicas"
mkdir -p "$DATA/raft"
start_namesrv "$DATA/raft"
read -r -a PORTS <<<"$(free_ports 3)"
PEERS="n0-127.0.0.1:${PORTS[0]};n1-127.0.0.1:${PORTS[1]};n2-127.0.0.1:${PORTS[2]}"
RAFT_PIDS=() RAFT_ADDRS=()
for i in 0 1 2; do
    start_broker "$DATA/raft" "n$i" enableDLegerCommitLog=true dLegerGroup=$GROUP \
        "dLegerPeers=$PEERS" "dLegerSelfId=n$i"
    RAFT_PIDS+=("$LAST_PID") RAFT_ADDRS+=("$LAST_ADDR")
done
for addr in "${RAFT_ADDRS[@]}"; do
    ctl topic create $TOPIC -b "$addr" -r "$BENCH_QUEUES" -w "$BENCH_QUEUES" >/dev/null
done
wait_master_route
for i in 0 1 2; do
    if [ "${RAFT_ADDRS[i]}" = "$MASTER" ]; then echo "leader n$i" >"$OUT/raft.role.$i"; else echo "follower n$i" >"$OUT/raft.role.$i"; fi
done
measure raft "${RAFT_PIDS[@]}"
RAFT_RATE=$RATE RAFT_P99=$P99_MS RAFT_AMP_IO=$AMP_IO
ctl --json raft status -b "$MASTER" >"$OUT/raft-status.json" 2>/dev/null || true
stop_all

step "ASYNC_MASTER + 1 slave"
mkdir -p "$DATA/async"
start_namesrv "$DATA/async"
start_broker "$DATA/async" master brokerRole=ASYNC_MASTER brokerId=0 haListenPort=0 haSecret=bench
MASTER_PID=$LAST_PID MASTER_ADDR=$LAST_ADDR
ctl topic create $TOPIC -b "$LAST_ADDR" -r "$BENCH_QUEUES" -w "$BENCH_QUEUES" >/dev/null
start_broker "$DATA/async" slave brokerRole=SLAVE brokerId=1 haListenPort=0 haSecret=bench
SLAVE_PID=$LAST_PID
for _ in $(seq 1 150); do
    [ "$(ctl --json broker status -b "$MASTER_ADDR" 2>/dev/null | jq '.[0].slaves | length' 2>/dev/null || echo 0)" = 1 ] && break
    sleep 0.2
done
wait_master_route
echo "ASYNC_MASTER" >"$OUT/async.role.0"
echo "SLAVE" >"$OUT/async.role.1"
measure async "$MASTER_PID" "$SLAVE_PID"
ASYNC_RATE=$RATE ASYNC_P99=$P99_MS ASYNC_AMP_IO=$AMP_IO
stop_all

step "Raft figures"
{
    echo "Raft 3 replicas:       $RAFT_RATE msgs/s, p99 $RAFT_P99 ms; bytes written per acknowledged body byte $RAFT_AMP_IO (all replicas)"
    echo "ASYNC_MASTER + slave:  $ASYNC_RATE msgs/s, p99 $ASYNC_P99 ms; bytes written per acknowledged body byte $ASYNC_AMP_IO (master + slave)"
    echo "Raft/ASYNC msgs/s: $(awk "BEGIN { if ($ASYNC_RATE > 0) printf \"%.3f\", $RAFT_RATE / $ASYNC_RATE; else print \"n/a\" }"); Raft/ASYNC p99: $(awk "BEGIN { if ($ASYNC_P99 > 0) printf \"%.2f\", $RAFT_P99 / $ASYNC_P99; else print \"n/a\" }")"
    echo "load after: $(uptime | sed 's/.*load average/load average/')"
} | tee "$OUT/summary.txt" | sed 's/^/    /'
