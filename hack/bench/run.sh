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
#                            `java`: only Apache's benchmark Producer (rocketmq-example from
#                            Maven Central) against the peers in JAVA_BENCH_PEERS
#   BENCH_RATE [5000]        offered msgs/s of the fixed-rate (open-loop) produce phase
#   JAVA_BENCH_SECONDS [30]  how long Apache's benchmark Producer runs per peer (it reports every
#                            10 s; the first report is its warm-up and is not counted)
#   JAVA_BENCH_PEERS ["ferrum apache"]  the peers Apache's benchmark Producer runs against
#   ROCKETMQ_EXAMPLE_VERSION [5.5.0]  rocketmq-example from Maven Central (holds the Producer)
#   BENCH_PERF [0]           1: `perf record -g` of ferrum-broker during its produce phase,
#                            top symbols in target/bench/runs/ferrum.perf.txt
#   BENCH_OFFCPU [0]         1: `perf record -a -e sched:sched_switch -g` during ferrum's fixed-rate
#                            phase, classed by hack/bench/offcpu.py (preempted, blocked, lock
#                            waits) in target/bench/runs/ferrum.offcpu.txt
#   BENCH_LOOP_GIB [auto]    the stores go on a fresh ext4 filesystem in a sparse file of this
#                            many GiB, mounted on a loop device (needs root), removed at exit;
#                            `auto`: 16 when the data directory's filesystem is >= 70 % used
#                            (statvfs, reserved blocks counted as used: rocketmq-rust's disk check
#                            refuses writes at 90 % by that measure), else 0 = no loop filesystem
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
all | route | rate | java) ;;
# Ferrum alone, master + slave: its own script (hack/bench/replication.sh).
replication) exec bash hack/bench/replication.sh ;;
# Ferrum alone, Raft group vs master + slave: hack/bench/raft.sh.
raft) exec bash hack/bench/raft.sh ;;
*) echo "bench: BENCH_PHASES must be 'all', 'route', 'rate', 'java', 'replication' or 'raft', got '$BENCH_PHASES'" >&2; exit 2 ;;
esac
BENCH_DATA_PARENT=${BENCH_DATA:-$ROOT/target/bench}
ROCKETMQ_VERSION=${ROCKETMQ_VERSION:-5.3.3}
RR_VERSION=${RR_VERSION:-1.0.0}
RR_BUILD_TIMEOUT=${RR_BUILD_TIMEOUT:-2400}
JAVA_BENCH_SECONDS=${JAVA_BENCH_SECONDS:-30}
JAVA_BENCH_PEERS=${JAVA_BENCH_PEERS:-ferrum apache}
ROCKETMQ_EXAMPLE_VERSION=${ROCKETMQ_EXAMPLE_VERSION:-5.5.0}
BENCH_LOOP_GIB=${BENCH_LOOP_GIB:-auto}
BENCH_PERF=${BENCH_PERF:-0}
BENCH_OFFCPU=${BENCH_OFFCPU:-0}
M2=${FERRUM_M2:-$HOME/.cache/ferrum/m2}
RR_ROOT=$HOME/.cache/ferrum/rocketmq-rust-$RR_VERSION
CARGO=${CARGO:-cargo}

OUT=$ROOT/target/bench
BIN=$ROOT/target/release
BENCH_CLUSTER=BenchCluster
BENCH_TOPIC=BenchTopic
export BENCH_CLUSTER BIN

for n in BENCH_SECONDS BENCH_CONCURRENCY BENCH_SIZE BENCH_QUEUES ROUTE_SECONDS BENCH_WARMUP BENCH_RATE JAVA_BENCH_SECONDS; do
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
BENCH_DATA=
LOOP_MNT=
LOOP_IMG=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "$BENCH_DATA" ] && rm -rf "$BENCH_DATA"
    if [ -n "$LOOP_MNT" ]; then
        umount "$LOOP_MNT" 2>/dev/null || umount -l "$LOOP_MNT" 2>/dev/null || true
        rmdir "$LOOP_MNT" 2>/dev/null || true
    fi
    [ -n "$LOOP_IMG" ] && rm -f "$LOOP_IMG"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$BENCH_DATA_PARENT"

# Used percent of the filesystem holding $1, counted like statvfs-based disk checks do (blocks
# reserved for root count as used), and as df shows it (they count as neither).
used_pct_reserved() { python3 -c 'import os, sys; s = os.statvfs(sys.argv[1]); print(round(100 * (s.f_blocks - s.f_bavail) / s.f_blocks))' "$1"; }
used_pct_df() { python3 -c 'import os, sys; s = os.statvfs(sys.argv[1]); u = s.f_blocks - s.f_bfree; print(round(100 * u / (u + s.f_bavail)))' "$1"; }

# Every broker refuses writes on a nearly full disk (Apache, Ferrum and rocketmq-rust at 90 %,
# each by its own count of reserved blocks), so on a crowded filesystem the stores get a fresh
# one of their own: all peers on the same one, so the comparison stays fair.
DATA_FS_NOTE="$BENCH_DATA_PARENT: $(used_pct_reserved "$BENCH_DATA_PARENT") % used counting reserved blocks, $(used_pct_df "$BENCH_DATA_PARENT") % as df shows it"
loop_gib=$BENCH_LOOP_GIB
if [ "$loop_gib" = auto ]; then
    loop_gib=0
    [ "$(used_pct_reserved "$BENCH_DATA_PARENT")" -ge 70 ] && loop_gib=16
fi
[[ $loop_gib =~ ^[0-9]+$ ]] || { echo "bench: BENCH_LOOP_GIB must be 'auto' or a number of GiB, got '$BENCH_LOOP_GIB'" >&2; exit 2; }
if [ "$loop_gib" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v losetup >/dev/null || ! command -v mkfs.ext4 >/dev/null; then
        DATA_FS_NOTE="$DATA_FS_NOTE; a ${loop_gib} GiB loop filesystem was wanted but needs root, losetup and mkfs.ext4 (set BENCH_LOOP_GIB=0 to silence)"
    else
        LOOP_MNT=$BENCH_DATA_PARENT/loop
        LOOP_IMG=$BENCH_DATA_PARENT/loop.img
        # A mount left by a killed run is taken down first.
        mountpoint -q "$LOOP_MNT" 2>/dev/null && umount "$LOOP_MNT"
        rm -f "$LOOP_IMG"
        mkdir -p "$LOOP_MNT"
        truncate -s "${loop_gib}G" "$LOOP_IMG"
        mkfs.ext4 -q -F -m 0 "$LOOP_IMG"
        mount -o loop "$LOOP_IMG" "$LOOP_MNT"
        BENCH_DATA_PARENT=$LOOP_MNT
        DATA_FS_NOTE="$DATA_FS_NOTE; the stores use a fresh ${loop_gib} GiB ext4 loop filesystem (sparse file there), $(used_pct_reserved "$LOOP_MNT") % used"
    fi
fi
BENCH_DATA=$(mktemp -d "$BENCH_DATA_PARENT/data.XXXXXX")

# A port below the kernel's ephemeral range (so no outgoing connection can hold it as its local
# port) that, with its neighbours listenPort-2 (VIP) and listenPort+1 (HA), can be bound now.
free_port() {
    local lo port
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
    [ "$lo" -gt 12000 ] || lo=61000
    for _ in $(seq 1 100); do
        port=$((10002 + RANDOM % (lo - 10010)))
        if python3 -c 'import socket, sys
for p in (int(sys.argv[1]) - 2, int(sys.argv[1]), int(sys.argv[1]) + 1):
    s = socket.socket(); s.bind(("0.0.0.0", p)); s.close()' "$port" 2>/dev/null; then
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

# rss_sampler PID FILE: once a second while PID lives, one line
#   <seconds> <phase> <RssAnon kB> <RssFile kB> <RssShmem kB> <VmHWM kB>
# RssFile holds the pages of mapped files (the commit log and consume queues: page cache the
# kernel can drop and re-read, shared with every other reader of those files, plus the program's
# own text); RssAnon is the memory the process holds for itself (heap, stacks, buffers).
rss_sampler() {
    local pid=$1 file=$2 start=$SECONDS phase
    while kill -0 "$pid" 2>/dev/null; do
        phase=$(cat "$WORK/phase" 2>/dev/null || echo idle)
        awk -v t=$((SECONDS - start)) -v p="$phase" \
            '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } /^RssShmem:/ { s = $2 } /^VmHWM:/ { h = $2 }
             END { if (a != "") print t, p, a, f, s, h }' "/proc/$pid/status" >>"$file" 2>/dev/null || true
        sleep 1
    done
}
set_phase() { printf '%s\n' "$1" >"$WORK/phase"; }

# Keeps the first send errors of a load phase (the exact remark the broker answered) for the
# results, so a peer that fails is reported with its reason, not only with a count.
keep_errors() {
    local name=$1 phase=$2 err=$3
    grep -v -E '^\[ *[0-9]+s\] ' "$err" 2>/dev/null | grep -m 3 -E 'error|failed' | sed "s/^/$phase: /" >>"$OUT/runs/$name.errors.txt" || true
}

source hack/bench/ferrum.sh
source hack/bench/apache.sh

step "machine"
note "$(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); load: $(uptime | sed 's/.*load average/load average/')"
note "produce ${BENCH_SECONDS}s x ${BENCH_CONCURRENCY} sync producers, ${BENCH_SIZE} B bodies, ${BENCH_QUEUES} queues; route ${ROUTE_SECONDS}s"
note "data: $DATA_FS_NOTE"

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
printf '%s\n' "$DATA_FS_NOTE" >"$OUT/runs/data-fs.txt"

# Apache's own benchmark Producer (org.apache.rocketmq.example.benchmark.Producer) from
# rocketmq-example on Maven Central, resolved apart from the broker's jars (hack/bench/example-pom.xml).
EXAMPLE_CP=
java_bench_wanted() {
    case $BENCH_PHASES in all | java) ;; *) return 1 ;; esac
    local p
    for p in $JAVA_BENCH_PEERS; do
        case " $BENCH_PEERS " in *" $p "*) return 0 ;; esac
    done
    return 1
}
if java_bench_wanted; then
    step "Apache's benchmark Producer: resolving rocketmq-example $ROCKETMQ_EXAMPLE_VERSION from Maven Central"
    if ! command -v java >/dev/null; then
        echo "java is not installed: no Apache benchmark Producer phase" | tee "$OUT/runs/java-producer.skipped"
    elif timeout 900 mvn -q -B -f hack/bench/example-pom.xml -Dmaven.repo.local="$M2" \
        -Drocketmq.example.version="$ROCKETMQ_EXAMPLE_VERSION" dependency:build-classpath \
        -Dmdep.outputFile="$OUT/runs/example-classpath.txt" >"$OUT/runs/mvn-example.log" 2>&1; then
        EXAMPLE_CP=$(cat "$OUT/runs/example-classpath.txt")
        note "classpath: $(tr ':' '\n' <"$OUT/runs/example-classpath.txt" | wc -l) jars"
    else
        echo "Maven could not resolve rocketmq-example $ROCKETMQ_EXAMPLE_VERSION (see $OUT/runs/mvn-example.log)" |
            tee "$OUT/runs/java-producer.skipped"
    fi
fi

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
    # The conversion report says how each Java key was read; every key must be taken as is.
    ROCKETMQ_HOME="$WORK/home" NAMESRV_ADDR="$NAMESRV" RUST_LOG=${RUST_LOG:-warn} \
        "$RR_ROOT/bin/rocketmq-broker-rust" -c "$WORK/broker.conf" \
        --conversion-report "$WORK/broker-conf-report.json" >"$WORK/broker.out" 2>&1 &
    BROKER_PID=$!
    track_pid "$BROKER_PID"
    wait_for_port "$broker_port" 90 "$BROKER_PID" "$WORK/broker.out" || return 1
    if [ -s "$WORK/broker-conf-report.json" ]; then
        note "broker.conf as rocketmq-rust read it: $(jq -r '[.entries[] | "\(.originalKey) \(.status)/\(.valueState)"] | join(", ")' \
            "$WORK/broker-conf-report.json" 2>/dev/null)"
    fi
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

    case $BENCH_PHASES in rate | java) ;; *) route_phase "$name" ;; esac
    if [ "$BENCH_PHASES" = route ]; then
        stop_peer
        return 0
    fi

    set_phase idle
    rss_sampler "$BROKER_PID" "$OUT/runs/$name.rss.txt" &
    SAMPLER_PID=$!
    track_pid "$SAMPLER_PID"

    step "$name: warm-up produce, ${BENCH_WARMUP}s (not counted)"
    set_phase warmup
    if timeout $((BENCH_WARMUP + 120)) "$BIN/ferrumctl" -n "$NAMESRV" --json bench produce "$BENCH_TOPIC" \
        -c "$BENCH_CONCURRENCY" -s "$BENCH_SIZE" -d "$BENCH_WARMUP" --group "bench-$name-producer" \
        >"$WORK/warmup.json" 2>"$WORK/warmup.err"; then
        warm=$(jq -r '.messages // 0' "$WORK/warmup.json" 2>/dev/null || echo 0)
    else
        echo "$name: warm-up failed:"
        tail -5 "$WORK/warmup.err"
    fi
    keep_errors "$name" warmup "$WORK/warmup.err"

    case $BENCH_PHASES in
    java) ;;
    rate) rate_phase "$name" ;;
    *)
        saturation_phases "$name" "$warm"
        rate_phase "$name"
        ;;
    esac
    case $BENCH_PHASES in all | java) java_producer_phase "$name" ;; esac

    # A few idle samples after the load: what the broker keeps once the load is gone.
    set_phase after
    sleep 4
    peak_rss_kb "$BROKER_PID" >"$OUT/runs/$name.broker_rss_kb"
    anon_rss_kb "$BROKER_PID" >"$OUT/runs/$name.broker_anon_kb"
    note "broker peak RSS (VmHWM): $(cat "$OUT/runs/$name.broker_rss_kb") kB; anonymous now: $(cat "$OUT/runs/$name.broker_anon_kb") kB"
    note "RSS samples (s phase RssAnon RssFile RssShmem VmHWM, kB): $OUT/runs/$name.rss.txt"
    awk '{ if ($3 > a) a = $3; if ($4 > f) f = $4 } END { printf "    peak RssAnon %d kB, peak RssFile %d kB over %d samples\n", a, f, NR }' \
        "$OUT/runs/$name.rss.txt" 2>/dev/null || true
    set_phase stopping
    stop_peer
}

# Apache's own benchmark Producer: BENCH_CONCURRENCY sending threads, synchronous sends of
# BENCH_SIZE-byte bodies, ROCKETMQ binary headers (it sets that itself); it runs until stopped and
# prints "Send TPS / Max RT / Average RT" over the last 10 s every 10 s.
java_producer_phase() {
    local name=$1
    case " $JAVA_BENCH_PEERS " in *" $name "*) ;; *) return 0 ;; esac
    [ -n "$EXAMPLE_CP" ] || return 0
    step "$name: Apache's benchmark Producer (rocketmq-example $ROCKETMQ_EXAMPLE_VERSION), ${JAVA_BENCH_SECONDS}s, -w $BENCH_CONCURRENCY -s $BENCH_SIZE"
    set_phase java
    mkdir -p "$WORK/java-producer-home"
    # It never ends by itself; timeout's TERM is the normal end (status 124).
    timeout "$((JAVA_BENCH_SECONDS + 4))" java -Xms512m -Xmx512m -XX:+UseG1GC \
        -Duser.home="$WORK/java-producer-home" -cp "$EXAMPLE_CP" \
        org.apache.rocketmq.example.benchmark.Producer -n "$NAMESRV" -t "$BENCH_TOPIC" \
        -s "$BENCH_SIZE" -w "$BENCH_CONCURRENCY" >"$OUT/runs/$name.java-producer.txt" 2>&1 || true
    if grep -q 'Send TPS' "$OUT/runs/$name.java-producer.txt"; then
        grep 'Send TPS' "$OUT/runs/$name.java-producer.txt" | sed 's/^/    /'
    else
        echo "$name: Apache's benchmark Producer printed no report; last lines:"
        tail -5 "$OUT/runs/$name.java-producer.txt" | sed 's/^/      /'
    fi
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
    set_phase produce
    local perf_pid=
    if [ "$BENCH_PERF" = 1 ] && [ "$name" = ferrum ] && command -v perf >/dev/null; then
        perf record -q -g -F 499 -o "$WORK/perf.data" -p "$BROKER_PID" -- sleep "$BENCH_SECONDS" \
            >"$WORK/perf-record.out" 2>&1 &
        perf_pid=$!
        track_pid "$perf_pid"
    fi
    timeout $((BENCH_SECONDS + 120)) "$BIN/ferrumctl" -n "$NAMESRV" --json bench produce "$BENCH_TOPIC" \
        -c "$BENCH_CONCURRENCY" -s "$BENCH_SIZE" -d "$BENCH_SECONDS" --group "bench-$name-producer" \
        >"$OUT/runs/$name.produce.json" 2>"$WORK/produce.err" ||
        { echo "$name: produce failed:"; tail -5 "$WORK/produce.err"; }
    keep_errors "$name" produce "$WORK/produce.err"
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" 2>/dev/null || true
        perf report -q -i "$WORK/perf.data" --stdio --no-children --sort symbol 2>/dev/null |
            grep -E '^ +[0-9.]+%' | sed -E 's/ +-? +-? *$//' | cut -c1-160 | head -40 >"$OUT/runs/$name.perf.txt" || true
        note "perf: top symbols of ferrum-broker while producing (self time):"
        head -12 "$OUT/runs/$name.perf.txt" | sed 's/^/    /'
        rm -f "$WORK/perf.data"
    fi
    summary "$OUT/runs/$name.produce.json"
    produced=$(jq -r '.messages // 0' "$OUT/runs/$name.produce.json" 2>/dev/null || echo 0)

    step "$name: consume the $((warm + produced)) messages from the start (at most ${BENCH_SECONDS}s)"
    if [ "${produced:-0}" -gt 0 ]; then
        set_phase consume
        timeout $((BENCH_SECONDS + 120)) "$BIN/ferrumctl" -n "$NAMESRV" --json bench consume "$BENCH_TOPIC" \
            -g "bench-$name-consumer" -d "$BENCH_SECONDS" --count "$((warm + produced))" \
            >"$OUT/runs/$name.consume.json" 2>"$WORK/consume.err" ||
            { echo "$name: consume failed:"; tail -5 "$WORK/consume.err"; }
        keep_errors "$name" consume "$WORK/consume.err"
        summary "$OUT/runs/$name.consume.json"
    fi
}

# Open loop at BENCH_RATE msgs/s: latency counts from each send's intended time, so a broker
# that stalls is charged for the sends queued behind the stall (no coordinated omission).
rate_phase() {
    local name=$1
    step "$name: produce at a fixed offered rate of ${BENCH_RATE} msgs/s, ${BENCH_SECONDS}s"
    set_phase rate
    local offcpu_pid= tids=
    if [ "$BENCH_OFFCPU" = 1 ] && [ "$name" = ferrum ] && command -v perf >/dev/null; then
        tids=$(ls "/proc/$BROKER_PID/task" | paste -sd,)
        perf record -q -a -g -e sched:sched_switch -o "$WORK/offcpu.data" -- sleep "$BENCH_SECONDS" \
            >"$WORK/offcpu-record.out" 2>&1 &
        offcpu_pid=$!
        track_pid "$offcpu_pid"
    fi
    timeout $((BENCH_SECONDS + 120)) "$BIN/ferrumctl" -n "$NAMESRV" --json bench produce "$BENCH_TOPIC" \
        --rate "$BENCH_RATE" -c "$BENCH_CONCURRENCY" -s "$BENCH_SIZE" -d "$BENCH_SECONDS" \
        --group "bench-$name-producer" \
        >"$OUT/runs/$name.rate.json" 2>"$WORK/rate.err" ||
        { echo "$name: fixed-rate produce failed:"; tail -5 "$WORK/rate.err"; }
    keep_errors "$name" rate "$WORK/rate.err"
    if [ -n "$offcpu_pid" ]; then
        wait "$offcpu_pid" 2>/dev/null || true
        perf script -i "$WORK/offcpu.data" 2>/dev/null |
            python3 "$ROOT/hack/bench/offcpu.py" "$tids" >"$OUT/runs/$name.offcpu.txt" || true
        note "off-CPU time of ferrum-broker's threads during the fixed-rate phase ($OUT/runs/$name.offcpu.txt):"
        sed -n '1,14p' "$OUT/runs/$name.offcpu.txt" | sed 's/^/    /'
        rm -f "$WORK/offcpu.data"
    fi
    summary "$OUT/runs/$name.rate.json"
}

stop_peer() {
    [ -n "${BROKER_PID:-}" ] && stop_pid "$BROKER_PID"
    [ -n "${NAMESRV_PID:-}" ] && stop_pid "$NAMESRV_PID"
    [ -n "${SAMPLER_PID:-}" ] && stop_pid "$SAMPLER_PID"
    BROKER_PID= NAMESRV_PID= SAMPLER_PID=
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

def rss_samples(name):
    # Lines: seconds phase RssAnon RssFile RssShmem VmHWM (kB).
    rows = []
    for line in (read(name) or "").splitlines():
        f = line.split()
        if len(f) == 6 and all(x.isdigit() for x in f[2:]):
            rows.append((f[1], *map(int, f[2:])))
    if not rows:
        return None
    load = [r for r in rows if r[0] not in ("idle", "after")] or rows
    after = [r for r in rows if r[0] == "after"] or rows[-1:]
    mib = lambda kb: round(kb / 1024, 1)
    return {
        "samples": len(rows),
        "anon_peak_mib": mib(max(r[1] for r in load)),
        "file_peak_mib": mib(max(r[2] for r in load)),
        "anon_after_mib": mib(after[-1][1]),
        "file_after_mib": mib(after[-1][2]),
        "anon_peak_by_phase_mib": {
            p: mib(max(r[1] for r in rows if r[0] == p)) for p in dict.fromkeys(r[0] for r in rows)
        },
    }

def java_producer(name):
    text = read(name)
    if not text:
        return None
    reports = [
        (int(m.group(1)), int(m.group(2)), float(m.group(3)), int(m.group(4)), int(m.group(5)))
        for m in re.finditer(
            r"Send TPS: (\d+)\W+Max RT\(ms\): (\d+)\W+Average RT\(ms\):\s*([0-9.]+)\W+"
            r"Send Failed: (\d+)\W+Response Failed: (\d+)", text)
    ]
    if not reports:
        return {"reports": 0, "error": text.strip().splitlines()[-1][:300] if text.strip() else "no output"}
    # The first report covers the client's own warm-up (JIT, connections): not counted.
    steady = reports[1:] or reports
    return {
        "reports": len(reports),
        "counted": len(steady),
        "send_tps": round(sum(r[0] for r in steady) / len(steady), 1),
        "avg_rt_ms": round(sum(r[2] for r in steady) / len(steady), 3),
        # Max RT is the largest since the Producer started, warm-up included.
        "max_rt_ms": reports[-1][1],
        "send_failed": reports[-1][3],
        "response_failed": reports[-1][4],
    }

result = {"peers": {}, "data_filesystem": read("data-fs.txt"), "limits": {
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
        "broker_rss": rss_samples(peer + ".rss.txt"),
        "java_producer": java_producer(peer + ".java-producer.txt"),
        "errors": read(peer + ".errors.txt"),
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
    ("Java Producer send TPS", ("java_producer", "send_tps")),
    ("Java Producer avg RT ms", ("java_producer", "avg_rt_ms")),
    ("Java Producer max RT ms", ("java_producer", "max_rt_ms")),
    ("Java Producer failed", ("java_producer", "send_failed")),
    ("broker RssAnon peak MiB", ("broker_rss", "anon_peak_mib")),
    ("broker RssFile peak MiB", ("broker_rss", "file_peak_mib")),
    ("broker RssAnon after MiB", ("broker_rss", "anon_after_mib")),
    ("broker RssFile after MiB", ("broker_rss", "file_after_mib")),
    ("broker VmHWM MiB", ("broker_peak_rss_mib",)),
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
            r = float(f"{a / b:.3g}") if a is not None and b else None
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
print(f"data: {result['data_filesystem']}")
print("RSS goal (<= 1/10 of Apache's) is read on RssAnon peak: the memory a broker holds for itself. "
      "RssFile is mapped store pages (page cache, shared, droppable) plus program text; VmHWM counts both.")
for peer in peers:
    if result["peers"][peer]["skipped"]:
        print(f"{peer}: {result['peers'][peer]['skipped']}")
    if result["peers"][peer]["errors"]:
        print(f"{peer}: send/pull errors (first of each phase):")
        for line in result["peers"][peer]["errors"].splitlines():
            print(f"    {line}")
    jp = result["peers"][peer]["java_producer"]
    if jp and jp.get("error"):
        print(f"{peer}: Apache's benchmark Producer: {jp['error']}")
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
REPORT
note "JSON: $OUT/results.json"
