#!/usr/bin/env bash
# Replication figures (`BENCH_PHASES=replication make bench`, or run directly): release
# ferrum-namesrv, a master and one slave on 127.0.0.1, driven by `ferrumctl bench produce`.
#   1. ASYNC_MASTER + slave, then SYNC_MASTER + slave: msgs/s, errors, and the replication lag
#      sampled from FERRUM_GET_BROKER_REPLICA_STATUS (`ferrumctl --json broker status`) while
#      the load runs; the SYNC/ASYNC throughput ratio.
#   2. failover: kill -9 of the ASYNC master, `ferrumctl broker promote` of the slave, then
#      one-message sends (a fresh ferrumctl each time: process start, route query, send) until
#      one succeeds; prints promote -> first successful send in ms.
# A benchmark, never a test: nothing here asserts on the figures. Lag sampling spawns a
# ferrumctl every REPL_SAMPLE_MS, which costs the load some CPU on a small machine.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [20]      length of each produce run
#   BENCH_CONCURRENCY [32]  concurrent synchronous producers
#   BENCH_SIZE [1024]       message body bytes
#   BENCH_QUEUES [8]        queues of the bench topic
#   REPL_SAMPLE_MS [200]    lag sampling period
#   BENCH_DATA [target/bench]  where the stores go (a fresh subdirectory, removed at exit)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

BENCH_SECONDS=${BENCH_SECONDS:-20}
BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-32}
BENCH_SIZE=${BENCH_SIZE:-1024}
BENCH_QUEUES=${BENCH_QUEUES:-8}
REPL_SAMPLE_MS=${REPL_SAMPLE_MS:-200}
for n in BENCH_SECONDS BENCH_CONCURRENCY BENCH_SIZE BENCH_QUEUES REPL_SAMPLE_MS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "replication bench: $n must be a positive integer, got '${!n}'" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "replication bench: jq is required" >&2; exit 2; }

BIN=$ROOT/target/release
OUT=$ROOT/target/bench/replication
CLUSTER=ReplBenchCluster
GROUP=repl-bench
TOPIC=ReplBenchTopic
SECRET=bench-secret
mkdir -p "$OUT" "${BENCH_DATA:-$ROOT/target/bench}"
DATA=$(mktemp -d "${BENCH_DATA:-$ROOT/target/bench}/repl.XXXXXX")

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

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

start_namesrv() { # dir
    "$BIN/ferrum-namesrv" --listen 127.0.0.1:0 >"$1/namesrv.log" 2>&1 &
    NS_PID=$!
    PIDS+=("$NS_PID")
    wait_for_line "$1/namesrv.log" "listening on" 30 "$NS_PID"
    NAMESRV=$(grep -Eo 'listening on [0-9.]+:[0-9]+' "$1/namesrv.log" | head -1 | awk '{print $3}')
}

# start_broker DIR NAME ROLE ID -> sets LAST_PID, LAST_ADDR
start_broker() {
    local dir=$1/$2
    mkdir -p "$dir"
    "$BIN/ferrum-broker" -n "$NAMESRV" \
        --set brokerClusterName=$CLUSTER --set brokerName=$GROUP \
        --set brokerRole="$3" --set brokerId="$4" \
        --set listenPort=0 --set haListenPort=0 --set bindAddress=127.0.0.1 --set metricsPort=0 \
        --set storePathRootDir="$dir/store" --set mappedFileSizeCommitLog=268435456 \
        --set registerNameServerPeriod=2000 --set haSecret=$SECRET \
        >"$dir/broker.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_for_line "$dir/broker.log" "listening on" 60 "$LAST_PID"
    LAST_ADDR=$(grep -Eo 'listening on [0-9.]+:[0-9]+' "$dir/broker.log" | head -1 | awk '{print $3}')
}

status_json() { ctl --json broker status -b "$1" 2>/dev/null; }

wait_slave_connected() { # master
    for _ in $(seq 1 150); do
        [ "$(status_json "$1" | jq '.[0].slaves | length' 2>/dev/null || echo 0)" = 1 ] && return 0
        sleep 0.2
    done
    echo "the slave did not connect to $1" >&2
    return 1
}

# run_pair ROLE -> figures in RATE, ERRORS, LAG_BYTES, LAG_MS, SAMPLES; leaves the pair running
# with MASTER_PID, MASTER, SLAVE
run_pair() {
    local role=$1 dir=$DATA/$1
    mkdir -p "$dir"
    start_namesrv "$dir"
    start_broker "$dir" master "$role" 0
    MASTER_PID=$LAST_PID MASTER=$LAST_ADDR
    start_broker "$dir" slave SLAVE 1
    SLAVE=$LAST_ADDR
    ctl topic create $TOPIC -b "$MASTER" -r "$BENCH_QUEUES" -w "$BENCH_QUEUES" >/dev/null
    wait_slave_connected "$MASTER"
    for _ in $(seq 1 100); do ctl topic route $TOPIC >/dev/null 2>&1 && break; sleep 0.2; done
    note "$role $MASTER + SLAVE $SLAVE: ${BENCH_SECONDS}s x ${BENCH_CONCURRENCY} producers, ${BENCH_SIZE} B"
    ctl --json bench produce $TOPIC -c "$BENCH_CONCURRENCY" -s "$BENCH_SIZE" -d "$BENCH_SECONDS" \
        >"$OUT/$role.json" 2>"$OUT/$role.err" &
    local bench=$!
    LAG_BYTES=0 LAG_MS=0 SAMPLES=0
    local sample b m
    while kill -0 "$bench" 2>/dev/null; do
        if sample=$(status_json "$MASTER" | jq -r '.[0].slaves[0] | "\(.lagBytes) \(.lagMillis)"' 2>/dev/null) &&
            [ -n "$sample" ] && [ "$sample" != "null null" ]; then
            read -r b m <<<"$sample"
            [ "$b" -gt "$LAG_BYTES" ] && LAG_BYTES=$b
            [ "$m" -gt "$LAG_MS" ] && LAG_MS=$m
            SAMPLES=$((SAMPLES + 1))
        fi
        sleep "$(awk "BEGIN { print $REPL_SAMPLE_MS / 1000 }")"
    done
    wait "$bench" || { echo "ferrumctl bench failed:" >&2; cat "$OUT/$role.err" >&2; return 1; }
    RATE=$(jq -r '.msgs_per_sec | floor' "$OUT/$role.json")
    ERRORS=$(jq -r '.errors' "$OUT/$role.json")
    note "$RATE msgs/s, $ERRORS errors, p99 $(jq -r '.latency_us.p99_us / 1000' "$OUT/$role.json") ms; lag max $LAG_BYTES bytes / $LAG_MS ms over $SAMPLES samples"
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

step "machine"
note "$(nproc) cores; load: $(uptime | sed 's/.*load average/load average/')"

step "building release binaries (ferrum-namesrv, ferrum-broker, ferrumctl)"
cargo build --release -q -p ferrum-namesrv -p ferrum-broker -p ferrum-client --bins

step "ASYNC_MASTER + 1 slave"
run_pair ASYNC_MASTER
ASYNC_RATE=$RATE ASYNC_ERRORS=$ERRORS ASYNC_LAG_BYTES=$LAG_BYTES ASYNC_LAG_MS=$LAG_MS

step "failover: kill -9 the master, promote the slave, send until SEND_OK"
kill -9 "$MASTER_PID"
wait "$MASTER_PID" 2>/dev/null || true
t0=$(now_ms)
ctl broker promote -b "$SLAVE" >"$OUT/promote.txt" 2>&1 || { echo "promote failed:" >&2; cat "$OUT/promote.txt" >&2; exit 1; }
t_promoted=$(now_ms)
FIRST_OK=""
attempts=0
while [ $(($(now_ms) - t0)) -lt 60000 ]; do
    attempts=$((attempts + 1))
    if ctl message send $TOPIC after-promote >/dev/null 2>&1; then
        FIRST_OK=$(($(now_ms) - t0))
        break
    fi
    sleep 0.02
done
[ -n "$FIRST_OK" ] || { echo "no send succeeded within 60 s of the promotion" >&2; exit 1; }
note "promote answered after $((t_promoted - t0)) ms; first SEND_OK $FIRST_OK ms after the promote started ($attempts send attempts, each a fresh ferrumctl)"
stop_all

step "SYNC_MASTER + 1 slave"
run_pair SYNC_MASTER
SYNC_RATE=$RATE SYNC_ERRORS=$ERRORS SYNC_LAG_BYTES=$LAG_BYTES SYNC_LAG_MS=$LAG_MS
stop_all

step "replication figures"
RATIO=$(awk "BEGIN { if ($ASYNC_RATE > 0) printf \"%.3f\", $SYNC_RATE / $ASYNC_RATE; else print \"n/a\" }")
{
    echo "ASYNC_MASTER + slave: $ASYNC_RATE msgs/s ($ASYNC_ERRORS errors), lag max $ASYNC_LAG_BYTES bytes / $ASYNC_LAG_MS ms"
    echo "SYNC_MASTER + slave:  $SYNC_RATE msgs/s ($SYNC_ERRORS errors), lag max $SYNC_LAG_BYTES bytes / $SYNC_LAG_MS ms"
    echo "SYNC/ASYNC throughput ratio: $RATIO"
    echo "promote -> first successful send: $FIRST_OK ms"
    echo "load after: $(uptime | sed 's/.*load average/load average/')"
} | tee "$OUT/summary.txt" | sed 's/^/    /'
