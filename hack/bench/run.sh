#!/usr/bin/env bash
# `make bench`: Ferrum side by side with Apache RocketMQ (Maven Central jars on Java 17) and
# rocketmq-rust (crate registry), one peer after another on this machine, driven by the same
# load generators: `ferrumctl bench produce|consume` for the brokers and the route_bench example
# for the NameServers. A benchmark, never a test: nothing here asserts on the figures.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [20]       produce phase length; the consume phase gets the same bound
#   BENCH_CONCURRENCY [32]   concurrent synchronous producers
#   BENCH_SIZE [1024]        message body bytes
#   BENCH_QUEUES [8]         queues of the bench topic
#   BENCH_WARMUP [5]         seconds of the same produce load before the measured one (JIT, caches)
#   ROUTE_SECONDS [10]       route-query phase length per NameServer
#   BENCH_PEERS ["ferrum apache rocketmq-rust"]
#   BENCH_PHASES [all]       `route`: only the route-query phase, against each NameServer alone;
#                            `rate`: only the fixed-rate produce phase (after the warm-up)
#                            `replication`: only hack/bench/replication.sh (Ferrum ASYNC vs
#                            SYNC master with a slave, lag, promote -> first send)
#                            `raft`: only hack/bench/raft.sh (Ferrum 3-replica Raft group vs
#                            ASYNC master + slave: msgs/s, p99, write amplification)
#   BENCH_RATE [5000]        offered msgs/s of the fixed-rate (open-loop) produce phase
#                            with a pretend broker (namesrv/examples/register_broker) registering
#                            the bench topic; rocketmq-rust then needs only its NameServer built
#   BENCH_DATA [target/bench]  where the stores go (a fresh subdirectory, removed at exit;
#                              one filesystem for every peer)
#   ROCKETMQ_VERSION [5.3.3] Apache RocketMQ from Maven Central
#   RR_VERSION [1.0.0]       rocketmq-rust crates; RR_BUILD_TIMEOUT [2400] seconds to build them
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

BENCH_SECONDS=${BENCH_SECONDS:-20}
BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-32}
BENCH_SIZE=${BENCH_SIZE:-1024}
BENCH_QUEUES=${BENCH_QUEUES:-8}
ROUTE_SECONDS=${ROUTE_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-5}
BENCH_PEERS=${BENCH_PEERS:-ferrum apache rocketmq-rust}
BENCH_PHASES=${BENCH_PHASES:-all}
BENCH_RATE=${BENCH_RATE:-5000}
case $BENCH_PHASES in
all | route | rate) ;;
# Ferrum alone, master + slave: its own script (hack/bench/replication.sh).
replication) exec bash hack/bench/replication.sh ;;
# Ferrum alone, Raft group vs master + slave: hack/bench/raft.sh.
raft) exec bash hack/bench/raft.sh ;;
*) echo "bench: BENCH_PHASES must be 'all', 'route', 'rate', 'replication' or 'raft', got '$BENCH_PHASES'" >&2; exit 2 ;;
esac
BENCH_DATA_PARENT=${BENCH_DATA:-$ROOT/target/bench}
ROCKETMQ_VERSION=${ROCKETMQ_VERSION:-5.3.3}
RR_VERSION=${RR_VERSION:-1.0.0}
RR_BUILD_TIMEOUT=${RR_BUILD_TIMEOUT:-2400}
M2=${FERRUM_M2:-$HOME/.cache/ferrum/m2}
RR_ROOT=$HOME/.cache/ferrum/rocketmq-rust-$RR_VERSION
CARGO=${CARGO:-cargo}

OUT=$ROOT/target/bench
BIN=$ROOT/target/release
BENCH_CLUSTER=BenchCluster
BENCH_TOPIC=BenchTopic
export BENCH_CLUSTER BIN

for n in BENCH_SECONDS BENCH_CONCURRENCY BENCH_SIZE BENCH_QUEUES ROUTE_SECONDS BENCH_WARMUP BENCH_RATE; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "bench: $n must be a positive integer, got '${!n}'" >&2; exit 2; }
done

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

PIDS=()
track_pid() { PIDS+=("$1"); }
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$BENCH_DATA"
}
mkdir -p "$BENCH_DATA_PARENT"
BENCH_DATA=$(mktemp -d "$BENCH_DATA_PARENT/data.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free port in the kernel's ephemeral range, on 127.0.0.1.
free_port() {
    local lo hi port
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
    for _ in $(seq 1 100); do
        port=$((lo + RANDOM % (hi - lo - 4) + 2))
        if ! (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "bench: no free port found" >&2
    return 1
}

# wait_for_line FILE REGEX SECONDS PID: the process printed its start line, or it died / timed out.
wait_for_line() {
    local deadline=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$deadline" ]; do
        grep -Eq "$2" "$1" 2>/dev/null && return 0
        if ! kill -0 "$4" 2>/dev/null; then
            echo "bench: process $4 exited before printing /$2/; last lines of $1:" >&2
            tail -20 "$1" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "bench: no /$2/ in $1 within $3 s; last lines:" >&2
    tail -20 "$1" >&2
    return 1
}

ctl() { timeout 60 "$BIN/ferrumctl" -n "$NAMESRV" "$@"; }

summary() {
    jq -r '"    \(.messages) msgs, \(.msgs_per_sec | floor) msgs/s, \(.mb_per_sec * 100 | floor / 100) MB/s, p99 \(.latency_us.p99_us / 1000) ms, errors \(.errors)"' \
        "$1" 2>/dev/null || true
}

# Peak resident set of a process (kB), as the kernel tracked it.
peak_rss_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# The peak counts the mapped store files' pages each broker touched; the anonymous part (heap,
# buffers) is what the process holds apart from the page cache.
anon_rss_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

source hack/bench/ferrum.sh
source hack/bench/apache.sh

step "machine"
note "$(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); load: $(uptime | sed 's/.*load average/load average/')"
note "produce ${BENCH_SECONDS}s x ${BENCH_CONCURRENCY} sync producers, ${BENCH_SIZE} B bodies, ${BENCH_QUEUES} queues; route ${ROUTE_SECONDS}s"

step "building release binaries (ferrum-namesrv, ferrum-broker, ferrumctl, route_bench)"
"$CARGO" build --release -q -p ferrum-namesrv -p ferrum-broker -p ferrum-client --bins
"$CARGO" build --release -q -p ferrum-namesrv --example route_bench --example register_broker
ROUTE_BENCH=$BIN/examples/route_bench

rm -rf "$OUT/runs"
mkdir -p "$OUT/runs"

step "physical limits"
# Memory bandwidth as the kernel copies zero pages into a user buffer: a memcpy-class ceiling.
MEMCPY=$(dd if=/dev/zero of=/dev/null bs=1M count=8192 2>&1 | tail -1)
note "memcpy (dd /dev/zero -> /dev/null, 8 GiB in 1 MiB blocks): $MEMCPY"
DISK=$(dd if=/dev/zero of="$BENCH_DATA/ddtest" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1)
rm -f "$BENCH_DATA/ddtest"
note "disk ($BENCH_DATA, 1 GiB, conv=fdatasync): $DISK"
printf '%s\n' "$MEMCPY" >"$OUT/runs/memcpy.txt"
printf '%s\n' "$DISK" >"$OUT/runs/disk.txt"

# rocketmq-rust from the crate registry; prints why when it cannot be had.
rocketmq_rust_install() {
    if [ -x "$RR_ROOT/bin/rocketmq-namesrv-rust" ] &&
        { [ "$BENCH_PHASES" = route ] || [ -x "$RR_ROOT/bin/rocketmq-broker-rust" ]; }; then
        return 0
    fi
    note "cargo install rocketmq-namesrv@$RR_VERSION rocketmq-broker@$RR_VERSION (nice 19, at most ${RR_BUILD_TIMEOUT}s; log: $OUT/runs/rocketmq-rust-install.log)"
    local status=0
    CARGO_TARGET_DIR=$HOME/.cache/ferrum/rocketmq-rust-target timeout "$RR_BUILD_TIMEOUT" \
        nice -n 19 "$CARGO" install --locked --root "$RR_ROOT" \
        "rocketmq-namesrv@$RR_VERSION" "rocketmq-broker@$RR_VERSION" >"$OUT/runs/rocketmq-rust-install.log" 2>&1 ||
        status=$?
    if [ "$status" -ne 0 ]; then
        [ "$status" -eq 124 ] && echo "rocketmq-rust $RR_VERSION: the build did not finish within ${RR_BUILD_TIMEOUT}s"
        echo "rocketmq-rust $RR_VERSION could not be installed (exit status $status); last lines of the log:"
        tail -15 "$OUT/runs/rocketmq-rust-install.log" | sed 's/^/      /'
        return 1
    fi
}

rocketmq_rust_start() {
    local ns_port broker_port
    mkdir -p "$WORK/home"
    ns_port=$(free_port)
    NAMESRV=127.0.0.1:$ns_port
    ROCKETMQ_HOME="$WORK/home" RUST_LOG=${RUST_LOG:-warn} "$RR_ROOT/bin/rocketmq-namesrv-rust" \
        --listenPort "$ns_port" --bindAddress 127.0.0.1 --rocketmqHome "$WORK/home" \
        >"$WORK/namesrv.out" 2>&1 &
    NAMESRV_PID=$!
    track_pid "$NAMESRV_PID"
    wait_for_port "$ns_port" 60 "$NAMESRV_PID" "$WORK/namesrv.out" || return 1
    [ "$BENCH_PHASES" = route ] && return 0
    broker_port=$(apache_port) || return 1
    cat >"$WORK/broker.conf" <<CONF
brokerClusterName=$BENCH_CLUSTER
brokerName=bench-rocketmq-rust
brokerId=0
namesrvAddr=$NAMESRV
brokerIP1=127.0.0.1
listenPort=$broker_port
storePathRootDir=$DATA
storePathCommitLog=$DATA/commitlog
brokerRole=ASYNC_MASTER
flushDiskType=ASYNC_FLUSH
autoCreateTopicEnable=true
CONF
    ROCKETMQ_HOME="$WORK/home" NAMESRV_ADDR="$NAMESRV" RUST_LOG=${RUST_LOG:-warn} \
        "$RR_ROOT/bin/rocketmq-broker-rust" -c "$WORK/broker.conf" >"$WORK/broker.out" 2>&1 &
    BROKER_PID=$!
    track_pid "$BROKER_PID"
    wait_for_port "$broker_port" 90 "$BROKER_PID" "$WORK/broker.out" || return 1
}

# wait_for_port PORT SECONDS PID LOG
wait_for_port() {
    local deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        if ! kill -0 "$3" 2>/dev/null; then
            echo "bench: process $3 exited before listening on $1; last lines of $4:" >&2
            tail -20 "$4" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "bench: nothing listens on $1 after $2 s; last lines of $4:" >&2
    tail -20 "$4" >&2
    return 1
}

# Creates the bench topic on the cluster's master and waits until the NameServer routes it.
create_topic() {
    local deadline=$((SECONDS + 90))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ctl topic create "$BENCH_TOPIC" -c "$BENCH_CLUSTER" -r "$BENCH_QUEUES" -w "$BENCH_QUEUES" \
            >"$WORK/topic.out" 2>&1 &&
            ctl topic route "$BENCH_TOPIC" >"$WORK/route.out" 2>&1; then
            return 0
        fi
        sleep 1
    done
    echo "bench: $BENCH_TOPIC was not created and routed within 90 s:" >&2
    cat "$WORK/topic.out" "$WORK/route.out" >&2 2>/dev/null || true
    return 1
}

# A pretend broker that registers the bench topic the way a Java broker does and keeps it
# registered, for the route-only run.
register_pretend_broker() {
    "$BIN/examples/register_broker" --namesrv "$NAMESRV" --cluster "$BENCH_CLUSTER" \
        --broker-name "bench-$1" --topic "$BENCH_TOPIC" --queues "$BENCH_QUEUES" \
        >"$WORK/register.out" 2>&1 &
    BROKER_PID=$!
    track_pid "$BROKER_PID"
    wait_for_line "$WORK/register.out" '^registered' 30 "$BROKER_PID"
}

# run_peer NAME START_FUNCTION: one peer's phases; its results land in $OUT/runs/NAME.*
run_peer() {
    local name=$1 start=$2 produced warm=0
    WORK=$OUT/runs/$name
    DATA=$BENCH_DATA/$name
    rm -rf "$WORK" "$DATA"
    mkdir -p "$WORK" "$DATA"
    export WORK DATA
    if [ "$BENCH_PHASES" = route ]; then
        step "$name: starting the NameServer (route phase only: a pretend broker registers)"
    else
        step "$name: starting NameServer + broker"
    fi
    if ! "$start"; then
        echo "$name: did not start (logs in $WORK)" | tee "$OUT/runs/$name.skipped"
        stop_peer
        return 0
    fi
    if [ "$BENCH_PHASES" = route ]; then
        if ! register_pretend_broker "$name"; then
            echo "$name: the pretend broker could not register" | tee "$OUT/runs/$name.skipped"
            stop_peer
            return 0
        fi
    fi
    note "NameServer $NAMESRV (pid $NAMESRV_PID), broker pid $BROKER_PID"
    if [ "$BENCH_PHASES" != route ] && ! create_topic; then
        echo "$name: the bench topic could not be created" | tee "$OUT/runs/$name.skipped"
        stop_peer
        return 0
    fi

    [ "$BENCH_PHASES" = rate ] || route_phase "$name"
    if [ "$BENCH_PHASES" = route ]; then
        stop_peer
        return 0
    fi

    step "$name: warm-up produce, ${BENCH_WARMUP}s (not counted)"
    if timeout $((BENCH_WARMUP + 120)) "$BIN/ferrumctl" -n "$NAMESRV" --json bench produce "$BENCH_TOPIC" \
        -c "$BENCH_CONCURRENCY" -s "$BENCH_SIZE" -d "$BENCH_WARMUP" --group "bench-$name-producer" \
        >"$WORK/warmup.json" 2>"$WORK/warmup.err"; then
        warm=$(jq -r '.messages // 0' "$WORK/warmup.json" 2>/dev/null || echo 0)
    else
        echo "$name: warm-up failed:"
        tail -5 "$WORK/warmup.err"
    fi

    [ "$BENCH_PHASES" = rate ] || saturation_phases "$name" "$warm"
    rate_phase "$name"
    peak_rss_kb "$BROKER_PID" >"$OUT/runs/$name.broker_rss_kb"
    anon_rss_kb "$BROKER_PID" >"$OUT/runs/$name.broker_anon_kb"
    note "broker peak RSS: $(cat "$OUT/runs/$name.broker_rss_kb") kB (anonymous at the end: $(cat "$OUT/runs/$name.broker_anon_kb") kB)"
    stop_peer
}

route_phase() {
    local name=$1
    step "$name: route queries, ${ROUTE_SECONDS}s"
    timeout $((ROUTE_SECONDS + 60)) "$ROUTE_BENCH" --namesrv "$NAMESRV" --topic "$BENCH_TOPIC" \
        --seconds "$ROUTE_SECONDS" | tee "$OUT/runs/$name.route.txt" ||
        echo "$name: route_bench failed" | tee "$OUT/runs/$name.route.txt"
    note "NameServer peak RSS: $(peak_rss_kb "$NAMESRV_PID") kB"
    peak_rss_kb "$NAMESRV_PID" >"$OUT/runs/$name.namesrv_rss_kb"
}

saturation_phases() {
    local name=$1 warm=$2 produced
    step "$name: produce, ${BENCH_SECONDS}s"
    timeout $((BENCH_SECONDS + 120)) "$BIN/ferrumctl" -n "$NAMESRV" --json bench produce "$BENCH_TOPIC" \
        -c "$BENCH_CONCURRENCY" -s "$BENCH_SIZE" -d "$BENCH_SECONDS" --group "bench-$name-producer" \
        >"$OUT/runs/$name.produce.json" 2>"$WORK/produce.err" ||
        { echo "$name: produce failed:"; tail -5 "$WORK/produce.err"; }
    summary "$OUT/runs/$name.produce.json"
    produced=$(jq -r '.messages // 0' "$OUT/runs/$name.produce.json" 2>/dev/null || echo 0)

    step "$name: consume the $((warm + produced)) messages from the start (at most ${BENCH_SECONDS}s)"
    if [ "${produced:-0}" -gt 0 ]; then
        timeout $((BENCH_SECONDS + 120)) "$BIN/ferrumctl" -n "$NAMESRV" --json bench consume "$BENCH_TOPIC" \
            -g "bench-$name-consumer" -d "$BENCH_SECONDS" --count "$((warm + produced))" \
            >"$OUT/runs/$name.consume.json" 2>"$WORK/consume.err" ||
            { echo "$name: consume failed:"; tail -5 "$WORK/consume.err"; }
        summary "$OUT/runs/$name.consume.json"
    fi
}

# Open loop at BENCH_RATE msgs/s: latency counts from each send's intended time, so a broker
# that stalls is charged for the sends queued behind the stall (no coordinated omission).
rate_phase() {
    local name=$1
    step "$name: produce at a fixed offered rate of ${BENCH_RATE} msgs/s, ${BENCH_SECONDS}s"
    timeout $((BENCH_SECONDS + 120)) "$BIN/ferrumctl" -n "$NAMESRV" --json bench produce "$BENCH_TOPIC" \
        --rate "$BENCH_RATE" -c "$BENCH_CONCURRENCY" -s "$BENCH_SIZE" -d "$BENCH_SECONDS" \
        --group "bench-$name-producer" \
        >"$OUT/runs/$name.rate.json" 2>"$WORK/rate.err" ||
        { echo "$name: fixed-rate produce failed:"; tail -5 "$WORK/rate.err"; }
    summary "$OUT/runs/$name.rate.json"
}

stop_peer() {
    [ -n "${BROKER_PID:-}" ] && stop_pid "$BROKER_PID"
    [ -n "${NAMESRV_PID:-}" ] && stop_pid "$NAMESRV_PID"
    BROKER_PID= NAMESRV_PID=
    rm -rf "$DATA"
}

for peer in $BENCH_PEERS; do
    case $peer in
    ferrum) run_peer ferrum ferrum_start ;;
    apache)
        step "apache: resolving rocketmq-namesrv + rocketmq-broker $ROCKETMQ_VERSION from Maven Central"
        if ! command -v java >/dev/null; then
            echo "apache: java is not installed" | tee "$OUT/runs/apache.skipped"
            continue
        fi
        if ! timeout 900 mvn -q -B -f hack/bench/pom.xml -Dmaven.repo.local="$M2" \
            -Drocketmq.version="$ROCKETMQ_VERSION" dependency:build-classpath \
            -Dmdep.outputFile="$OUT/runs/apache-classpath.txt" >"$OUT/runs/mvn.log" 2>&1; then
            echo "apache: Maven could not resolve RocketMQ $ROCKETMQ_VERSION (see $OUT/runs/mvn.log)" |
                tee "$OUT/runs/apache.skipped"
            continue
        fi
        APACHE_CP=$(cat "$OUT/runs/apache-classpath.txt")
        note "$(java -version 2>&1 | head -1)"
        run_peer apache apache_start
        ;;
    rocketmq-rust)
        step "rocketmq-rust: rocketmq-namesrv-rust + rocketmq-broker-rust $RR_VERSION from the crate registry"
        if rocketmq_rust_install | tee "$OUT/runs/rocketmq-rust.install.txt" &&
            { [ "$BENCH_PHASES" = route ] || [ -x "$RR_ROOT/bin/rocketmq-broker-rust" ]; }; then
            run_peer rocketmq-rust rocketmq_rust_start
        else
            cp "$OUT/runs/rocketmq-rust.install.txt" "$OUT/runs/rocketmq-rust.skipped"
        fi
        ;;
    *) echo "bench: unknown peer '$peer' (known: ferrum apache rocketmq-rust)" >&2; exit 2 ;;
    esac
done

step "results (load: $(uptime | sed 's/.*load average: //'))"
BENCH_RATE=$BENCH_RATE python3 - "$OUT/runs" "$OUT/results.json" "$BENCH_PEERS" <<'REPORT'
import json, os, re, sys

runs, out, peers = sys.argv[1], sys.argv[2], sys.argv[3].split()

def read(name):
    try:
        with open(os.path.join(runs, name)) as f:
            return f.read().strip()
    except OSError:
        return None

def load(name):
    text = read(name)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None

def phase(report):
    if not report:
        return None
    lat = report["latency_us"]
    return {
        "messages": report["messages"],
        "errors": report["errors"],
        "elapsed_secs": round(report["elapsed_secs"], 2),
        "msgs_per_sec": round(report["msgs_per_sec"], 1),
        "mb_per_sec": round(report["mb_per_sec"], 2),
        "p50_ms": lat["p50_us"] / 1000,
        "p99_ms": lat["p99_us"] / 1000,
        "p999_ms": lat["p999_us"] / 1000,
    }

def dd_rate(line):
    m = re.search(r"copied, ([0-9.]+) s, ([0-9.]+) ([kMG]B)/s", line or "")
    if not m:
        return None
    scale = {"kB": 1e-3, "MB": 1.0, "GB": 1e3}[m.group(3)]
    return round(float(m.group(2)) * scale, 1)

result = {"peers": {}, "limits": {
    "memcpy_mb_per_sec": dd_rate(read("memcpy.txt")),
    "disk_fdatasync_mb_per_sec": dd_rate(read("disk.txt")),
}, "load_average": os.getloadavg()}
for peer in peers:
    skipped = read(peer + ".skipped")
    route = read(peer + ".route.txt") or ""
    m = re.search(r"= ([0-9.]+)/s", route)
    rss = read(peer + ".broker_rss_kb")
    ns_rss = read(peer + ".namesrv_rss_kb")
    anon = read(peer + ".broker_anon_kb")
    result["peers"][peer] = {
        "skipped": skipped,
        "produce": phase(load(peer + ".produce.json")),
        "consume": phase(load(peer + ".consume.json")),
        "rate": phase(load(peer + ".rate.json")),
        "route_queries_per_sec": float(m.group(1)) if m else None,
        "broker_peak_rss_mib": round(int(rss) / 1024, 1) if rss and rss.isdigit() else None,
        "broker_anon_rss_mib": round(int(anon) / 1024, 1) if anon and anon.isdigit() else None,
        "namesrv_peak_rss_mib": round(int(ns_rss) / 1024, 1) if ns_rss and ns_rss.isdigit() else None,
    }

rows = [
    ("produce msgs/s", ("produce", "msgs_per_sec")),
    ("produce MB/s", ("produce", "mb_per_sec")),
    ("produce p50 ms", ("produce", "p50_ms")),
    ("produce p99 ms", ("produce", "p99_ms")),
    ("produce p999 ms", ("produce", "p999_ms")),
    ("produce errors", ("produce", "errors")),
    ("rate msgs/s achieved", ("rate", "msgs_per_sec")),
    ("rate p50 ms", ("rate", "p50_ms")),
    ("rate p99 ms", ("rate", "p99_ms")),
    ("rate p999 ms", ("rate", "p999_ms")),
    ("rate errors", ("rate", "errors")),
    ("consume msgs/s", ("consume", "msgs_per_sec")),
    ("consume MB/s", ("consume", "mb_per_sec")),
    ("consume pull p50 ms", ("consume", "p50_ms")),
    ("consume pull p99 ms", ("consume", "p99_ms")),
    ("consume pull p999 ms", ("consume", "p999_ms")),
    ("broker peak RSS MiB", ("broker_peak_rss_mib",)),
    ("broker anon RSS MiB", ("broker_anon_rss_mib",)),
    ("route queries/s", ("route_queries_per_sec",)),
    ("namesrv peak RSS MiB", ("namesrv_peak_rss_mib",)),
]

def value(peer, path):
    v = result["peers"].get(peer)
    for key in path:
        if v is None:
            return None
        v = v.get(key)
    return v

others = [p for p in peers if p != "ferrum"]
ratios = {}
header = ["", *peers] + ["ferrum/" + p for p in others if "ferrum" in peers]
table = [header]
for label, path in rows:
    line = [label] + ["-" if value(p, path) is None else f"{value(p, path):g}" for p in peers]
    if "ferrum" in peers:
        for p in others:
            a, b = value("ferrum", path), value(p, path)
            r = round(a / b, 2) if a is not None and b else None
            ratios.setdefault("ferrum/" + p, {})[label] = r
            line.append("-" if r is None else f"{r:g}")
    table.append(line)
result["ratios"] = ratios
widths = [max(len(r[i]) for r in table) for i in range(len(header))]
for r in table:
    print("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
offered = os.environ.get("BENCH_RATE")
for p in others:
    r = ratios.get("ferrum/" + p, {}).get("rate p99 ms")
    if r is not None:
        print(f"p99 at an offered {offered} msgs/s: ferrum {value('ferrum', ('rate', 'p99_ms'))} ms, "
              f"{p} {value(p, ('rate', 'p99_ms'))} ms, ratio ferrum/{p} {r:g}")
result["offered_rate"] = int(offered) if offered else None
lim = result["limits"]
print(f"physical limits: memcpy {lim['memcpy_mb_per_sec']} MB/s, disk fdatasync {lim['disk_fdatasync_mb_per_sec']} MB/s")
for peer in peers:
    if result["peers"][peer]["skipped"]:
        print(f"{peer}: {result['peers'][peer]['skipped']}")
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
REPORT
note "JSON: $OUT/results.json"
