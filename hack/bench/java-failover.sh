#!/usr/bin/env bash
# Client-observed failover of a master–slave group through Apache's Java producer with default
# settings: a ferrum-namesrv, an ASYNC_MASTER and its slave; the producer sends every 20 ms;
# the master is killed (SIGKILL), the slave is promoted with `ferrumctl broker promote` after
# FAILOVER_PROMOTE_AFTER seconds, and the script reports how long after the promotion the
# producer's first successful send came. A stock client refreshes routes every 30 s
# (pollNameServerInterval), so this figure is bounded by that refresh, not by the promotion;
# on Kubernetes the operator's <group>-master Service removes that wait.
#
# Environment: FAILOVER_ROUNDS (default 3), FAILOVER_PROMOTE_AFTER (default 2),
# FERRUM_M2 (Maven repository, default ~/.cache/ferrum/m2), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
ROUNDS=${FAILOVER_ROUNDS:-3}
PROMOTE_AFTER=${FAILOVER_PROMOTE_AFTER:-2}
M2=${FERRUM_M2:-$HOME/.cache/ferrum/m2}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

echo "==> building release binaries"
cargo build --quiet --release -p ferrum-namesrv -p ferrum-broker -p ferrum-client \
    --bin ferrum-namesrv --bin ferrum-broker --bin ferrumctl
echo "==> resolving Apache's Java client and compiling the producer"
mkdir -p "$M2" "$WORK/classes"
mvn -q -B -f hack/compat/java-client/pom.xml -Dmaven.repo.local="$M2" \
    dependency:build-classpath -Dmdep.outputFile="$WORK/deps" >"$WORK/mvn.log" 2>&1 ||
    { cat "$WORK/mvn.log" >&2; fail "Maven could not resolve rocketmq-client"; }
javac -d "$WORK/classes" -cp "$(cat "$WORK/deps")" hack/bench/java-failover/Failover.java
CP="$WORK/classes:$(cat "$WORK/deps")"

# start NAME COMMAND...: runs it in the background and prints the address of its start line.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
    echo $! >"$WORK/$name.pid"
    for _ in $(seq 1 100); do
        grep -q 'listening on' "$WORK/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$WORK/$name.out" | head -1
}

results=()
for round in $(seq 1 "$ROUNDS"); do
    dir="$WORK/round-$round"
    mkdir -p "$dir/master" "$dir/slave"
    namesrv=$(start namesrv "$BIN/ferrum-namesrv" --listen 127.0.0.1:0)
    [ -n "$namesrv" ] || fail "ferrum-namesrv did not start"
    broker() {
        exec "$BIN/ferrum-broker" -n "$namesrv" --set brokerClusterName=FailoverCluster \
            --set brokerName=failover --set listenPort=0 --set bindAddress=127.0.0.1 \
            --set metricsPort=0 --set mappedFileSizeCommitLog=67108864 \
            --set registerNameServerPeriod=1000 --set slaveReadEnable=true "$@"
    }
    master=$(start master broker --set brokerId=0 --set brokerRole=ASYNC_MASTER \
        --set storePathRootDir="$dir/master")
    slave=$(start slave broker --set brokerId=1 --set brokerRole=SLAVE \
        --set storePathRootDir="$dir/slave")
    [ -n "$master" ] && [ -n "$slave" ] || fail "brokers did not start"
    "$BIN/ferrumctl" -n "$namesrv" topic create FailoverTopic -b "$master" -r 4 -w 4 >/dev/null
    for _ in $(seq 1 100); do
        "$BIN/ferrumctl" -n "$namesrv" topic route FailoverTopic >/dev/null 2>&1 && break
        sleep 0.1
    done
    java -Duser.home="$dir" -Drocketmq.client.logRoot="$dir/logs" -cp "$CP" Failover \
        "$namesrv" FailoverTopic $((PROMOTE_AFTER + 70)) >"$dir/producer.out" 2>"$dir/producer.err" &
    producer=$!
    PIDS+=("$producer")
    for _ in $(seq 1 300); do
        grep -q '^ok ' "$dir/producer.out" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^ok ' "$dir/producer.out" || fail "the Java producer never sent successfully"
    sleep 3
    kill -9 "$(cat "$WORK/master.pid")"
    killed=$(now_ms)
    sleep "$PROMOTE_AFTER"
    promoted=$(now_ms)
    "$BIN/ferrumctl" -n "$namesrv" broker promote -b "$slave" >"$dir/promote.out" 2>&1 ||
        { cat "$dir/promote.out" >&2; fail "promote refused"; }
    first_ok=""
    for _ in $(seq 1 700); do
        first_ok=$(awk -v t="$promoted" '$1 == "ok" && $2 >= t { print $2; exit }' "$dir/producer.out")
        [ -n "$first_ok" ] && break
        sleep 0.1
    done
    [ -n "$first_ok" ] || fail "round $round: no successful send within 70 s of the promotion"
    first_fail=$(awk -v t="$killed" '$1 == "fail" && $2 >= t - 1000 { print $2; exit }' "$dir/producer.out")
    printf '  round %d: promote -> first SEND_OK %d ms (kill -> first failure %s ms)\n' \
        "$round" $((first_ok - promoted)) "${first_fail:+$((first_fail - killed))}"
    results+=($((first_ok - promoted)))
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
done
sorted=$(printf '%s\n' "${results[@]}" | sort -n)
median=$(printf '%s\n' "$sorted" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
max=$(printf '%s\n' "$sorted" | tail -1)
printf 'java producer (default settings), promote -> first SEND_OK over %d rounds: median %d ms, max %d ms\n' \
    "$ROUNDS" "$median" "$max"
