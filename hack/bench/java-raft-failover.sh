#!/usr/bin/env bash
# Client-observed failover of a Raft group through Apache's Java producer with default settings,
# with the group's master address kept stable as on Kubernetes: three ferrum-broker replicas on
# 127.0.0.2-4 share one listenPort and register brokerId 0, while they lead, under
# dLegerLeaderBrokerIP=127.0.0.1. On 127.0.0.1 that port is leader_proxy.py, which stands in for
# the <group>-master Service plus the operator's leader label: it forwards new connections to the
# replica whose Raft status says Leader in the highest term, polled every FAILOVER_POLL_MS. The
# producer sends every 20 ms; the leader is killed (SIGKILL); the script reports kill -> first
# SEND_OK. The NameServer registration period stays at its 30 s default and the client never
# refreshes its route in that time, so the figure is election + re-registration + label
# switch + the client's reconnect, not a route refresh.
#
# Environment: FAILOVER_ROUNDS (default 3), FAILOVER_POLL_MS (default 500), FERRUM_M2 (Maven
# repository, default ~/.cache/ferrum/m2), FERRUM_BIN_DIR (binaries; default: a release build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
ROUNDS=${FAILOVER_ROUNDS:-3}
POLL_MS=${FAILOVER_POLL_MS:-500}
M2=${FERRUM_M2:-$HOME/.cache/ferrum/m2}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${FAILOVER_KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

if [ -n "${FERRUM_BIN_DIR:-}" ]; then
    BIN=$FERRUM_BIN_DIR
else
    echo "==> building release binaries"
    cargo build --quiet --release -p ferrum-namesrv -p ferrum-broker -p ferrum-client \
        --bin ferrum-namesrv --bin ferrum-broker --bin ferrumctl
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
echo "==> resolving Apache's Java client and compiling the producer"
mkdir -p "$M2" "$WORK/classes"
mvn -q -B -f hack/compat/java-client/pom.xml -Dmaven.repo.local="$M2" \
    dependency:build-classpath -Dmdep.outputFile="$WORK/deps" >"$WORK/mvn.log" 2>&1 ||
    { cat "$WORK/mvn.log" >&2; fail "Maven could not resolve rocketmq-client"; }
javac -d "$WORK/classes" -cp "$(cat "$WORK/deps")" hack/bench/java-failover/Failover.java
CP="$WORK/classes:$(cat "$WORK/deps")"

# A port free on 127.0.0.1-4, with its VIP port (port - 2) free on the replicas' addresses.
free_port() {
    python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 40000)
    socks = []
    try:
        for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"):
            for port in (p, p - 2):
                s = socket.socket()
                s.bind((host, port))
                socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(p)
    break
PY
}

# start NAME COMMAND...: runs it in the background, waits for its start line.
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
    mkdir -p "$dir"
    namesrv=$(start namesrv "$BIN/ferrum-namesrv" --listen 127.0.0.1:0)
    [ -n "$namesrv" ] || fail "ferrum-namesrv did not start"
    port=$(free_port)
    raft_port=$(free_port)
    [ -n "$port" ] && [ -n "$raft_port" ] || fail "no free port"
    peers="n0-127.0.0.2:$raft_port;n1-127.0.0.3:$raft_port;n2-127.0.0.4:$raft_port"
    addrs=()
    for i in 0 1 2; do
        ip=127.0.0.$((i + 2))
        mkdir -p "$dir/n$i"
        start "n$i" "$BIN/ferrum-broker" -n "$namesrv" --set brokerClusterName=RaftFailover \
            --set brokerName=raft-failover --set listenPort="$port" --set bindAddress="$ip" \
            --set brokerIP1="$ip" --set dLegerLeaderBrokerIP=127.0.0.1 --set metricsPort=0 \
            --set mappedFileSizeCommitLog=67108864 --set storePathRootDir="$dir/n$i" \
            --set enableDLegerCommitLog=true --set dLegerGroup=raft-failover \
            --set dLegerPeers="$peers" --set dLegerSelfId="n$i" >/dev/null
        addrs+=("$ip:$port")
    done
    python3 hack/bench/java-raft-failover/leader_proxy.py "$BIN/ferrumctl" "127.0.0.1:$port" \
        "$POLL_MS" "${addrs[@]}" >"$dir/proxy.out" 2>"$dir/proxy.err" &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        grep -q '^leader ' "$dir/proxy.out" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^leader ' "$dir/proxy.out" || fail "round $round: no Raft leader elected"
    for a in "${addrs[@]}"; do
        "$BIN/ferrumctl" -n "$namesrv" topic create RaftFailoverTopic -b "$a" -r 4 -w 4 >/dev/null
    done
    for _ in $(seq 1 100); do
        "$BIN/ferrumctl" -n "$namesrv" topic route RaftFailoverTopic 2>/dev/null |
            grep -q "127.0.0.1:$port" && break
        sleep 0.1
    done
    java -Duser.home="$dir" -Drocketmq.client.logRoot="$dir/logs" -cp "$CP" Failover \
        "$namesrv" RaftFailoverTopic 60 >"$dir/producer.out" 2>"$dir/producer.err" &
    PIDS+=($!)
    for _ in $(seq 1 300); do
        grep -q '^ok ' "$dir/producer.out" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^ok ' "$dir/producer.out" || fail "round $round: the Java producer never sent successfully"
    sleep 3
    old=$(awk '$1 == "leader" { a = $3 } END { print a }' "$dir/proxy.out")
    ip=${old%:*}
    victim=$(( ${ip##*.} - 2 ))
    kill -9 "$(cat "$WORK/n$victim.pid")"
    killed=$(now_ms)
    first_ok=""
    for _ in $(seq 1 400); do
        first_ok=$(awk -v t="$killed" '$1 == "ok" && $2 >= t { print $2; exit }' "$dir/producer.out")
        [ -n "$first_ok" ] && break
        sleep 0.1
    done
    [ -n "$first_ok" ] || fail "round $round: no successful send within 40 s of the kill"
    switched=$(awk -v t="$killed" '$1 == "leader" && $2 >= t { print $2; exit }' "$dir/proxy.out")
    first_fail=$(awk -v t="$killed" '$1 == "fail" && $2 >= t - 1000 { print $2; exit }' "$dir/producer.out")
    printf '  round %d: kill of n%d -> first SEND_OK %d ms (new leader chosen after %s ms, first failure after %s ms)\n' \
        "$round" "$victim" $((first_ok - killed)) "${switched:+$((switched - killed))}" \
        "${first_fail:+$((first_fail - killed))}"
    results+=($((first_ok - killed)))
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
done
sorted=$(printf '%s\n' "${results[@]}" | sort -n)
median=$(printf '%s\n' "$sorted" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
max=$(printf '%s\n' "$sorted" | tail -1)
printf 'java producer (default settings) through the shared leader address, kill -> first SEND_OK over %d rounds: median %d ms, max %d ms\n' \
    "$ROUNDS" "$median" "$max"
