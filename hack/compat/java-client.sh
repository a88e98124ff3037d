#!/usr/bin/env bash
# Real-client compatibility: Apache RocketMQ's Java remoting client (org.apache.rocketmq:
# rocketmq-client from Maven Central, unchanged, on Java 17) produces and consumes against
# ferrum-broker registered with ferrum-namesrv.
#
# Steps: build the release binaries, resolve the client's classpath with Maven and compile the
# scenarios in hack/compat/java-client with javac, start a NameServer and a broker (free ports,
# data in a temp dir), create one topic per scenario with ferrumctl, then run each scenario as
# its own JVM. A scenario prints "ok:" per check and exits non-zero on the first failed one;
# the runner runs them all, prints a summary and exits non-zero if any failed.
#
# Scenarios (5.x client): produce-consume (sync, async, oneway, batch sends while a push
# consumer consumes), orderly (MessageQueueSelector + MessageListenerOrderly), lite-pull
# (DefaultLitePullConsumer subscribe + poll), retry-dlq (RECONSUME_LATER through %RETRY% into
# %DLQ%, about 45 s because the broker uses RocketMQ's default delay levels), transaction
# (TransactionMQProducer: commit, rollback, and UNKNOW committed later by checkLocalTransaction;
# the broker checks every 0.5 s after 1 s instead of RocketMQ's 30 s / 6 s). The same sources
# compile against the 4.9.x client (pom profile rocketmq4), whose API has every one of these
# classes, so the whole set runs again with it, on its own topics and groups (Java4*).
#
# Environment: ROCKETMQ_CLIENT_VERSION (default: the pom's 5.x), FERRUM_M2 (local Maven
# repository, default ~/.cache/ferrum/m2), CARGO (default cargo), CARGO_TARGET_DIR,
# FERRUM_COMPAT_RETRY_DLQ=0 skips the retry/DLQ scenario, FERRUM_COMPAT_CLIENT4=0 skips the
# 4.9.x client, FERRUM_COMPAT_KEEP=1 keeps the work directory (logs) after the run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
M2=${FERRUM_M2:-$HOME/.cache/ferrum/m2}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROJECT=hack/compat/java-client
BIN="$TARGET_DIR/release"
STARTED=$SECONDS

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${FERRUM_COMPAT_KEEP:-0}" = 1 ]; then
        printf 'work directory kept: %s\n' "$WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

step() { printf '==> [%3d s] %s\n' "$((SECONDS - STARTED))" "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

command -v java >/dev/null || fail "java (17+) is not installed"
command -v javac >/dev/null || fail "javac (17+) is not installed"
command -v mvn >/dev/null || fail "mvn is not installed"

step "building ferrum-namesrv, ferrum-broker and ferrumctl (release)"
"$CARGO" build --quiet --release -p ferrum-namesrv -p ferrum-broker -p ferrum-client \
    --bin ferrum-namesrv --bin ferrum-broker --bin ferrumctl

# compile_client NAME MAVEN_ARGS...: resolves rocketmq-client and compiles the scenarios into
# $WORK/NAME/classes; $WORK/NAME/cp is the classpath to run them with.
compile_client() {
    local name=$1
    shift
    mkdir -p "$WORK/$name/classes"
    mvn -q -B -f "$PROJECT/pom.xml" -Dmaven.repo.local="$M2" "$@" \
        dependency:build-classpath -Dmdep.outputFile="$WORK/$name/deps" >"$WORK/$name/mvn.log" 2>&1 ||
        { cat "$WORK/$name/mvn.log" >&2; fail "Maven could not resolve rocketmq-client ($name)"; }
    javac -d "$WORK/$name/classes" -cp "$(cat "$WORK/$name/deps")" \
        "$PROJECT"/src/main/java/io/ferrum/compat/*.java ||
        fail "the scenarios do not compile against rocketmq-client ($name)"
    printf '%s:%s' "$WORK/$name/classes" "$(cat "$WORK/$name/deps")" >"$WORK/$name/cp"
    tr ':' '\n' <"$WORK/$name/deps" | sed -n 's/.*\/\(rocketmq-client-[0-9][^/]*\)\.jar$/\1/p' >"$WORK/$name/version"
    printf '  %s\n' "$(cat "$WORK/$name/version")"
}

mkdir -p "$M2"
step "resolving and compiling against the 5.x client (cache: $M2)"
CLIENT5_ARGS=()
[ -n "${ROCKETMQ_CLIENT_VERSION:-}" ] && CLIENT5_ARGS+=("-Drocketmq.client.version=$ROCKETMQ_CLIENT_VERSION")
compile_client client5 "${CLIENT5_ARGS[@]}"
if [ "${FERRUM_COMPAT_CLIENT4:-1}" != 0 ]; then
    step "resolving and compiling against the 4.9.x client"
    compile_client client4 -P rocketmq4
fi

step "starting ferrum-namesrv on a free port"
"$BIN/ferrum-namesrv" --listen 127.0.0.1:0 >"$WORK/namesrv.out" 2>"$WORK/namesrv.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
    grep -q 'listening on' "$WORK/namesrv.out" 2>/dev/null && break
    sleep 0.1
done
NAMESRV=$(sed -n 's/^ferrum-namesrv listening on //p' "$WORK/namesrv.out")
[ -n "$NAMESRV" ] || { cat "$WORK/namesrv.log" >&2; fail "ferrum-namesrv did not start"; }
printf '  ferrum-namesrv at %s\n' "$NAMESRV"

step "starting ferrum-broker on a free port"
mkdir -p "$WORK/store"
"$BIN/ferrum-broker" -n "$NAMESRV" \
    --set brokerClusterName=FerrumJavaCompat --set brokerName=ferrum-java-compat \
    --set listenPort=0 --set bindAddress=127.0.0.1 \
    --set storePathRootDir="$WORK/store" --set mappedFileSizeCommitLog=67108864 \
    --set transactionCheckInterval=500 --set transactionTimeOut=1000 \
    >"$WORK/broker.out" 2>"$WORK/broker.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
    grep -q 'listening on' "$WORK/broker.out" 2>/dev/null && break
    sleep 0.1
done
BROKER=$(sed -n 's/^ferrum-broker .* listening on \([^ ]*\) .*/\1/p' "$WORK/broker.out")
[ -n "$BROKER" ] || { cat "$WORK/broker.log" >&2; fail "ferrum-broker did not start"; }
printf '  %s\n' "$(cat "$WORK/broker.out")"

ferrumctl() { "$BIN/ferrumctl" -n "$NAMESRV" "$@"; }
# create_topic TOPIC QUEUES: created on the broker, then visible on the NameServer.
create_topic() {
    ferrumctl topic create "$1" -b "$BROKER" -r "$2" -w "$2" >"$WORK/create-$1.out" 2>&1 ||
        { cat "$WORK/create-$1.out" >&2; fail "ferrumctl could not create topic $1"; }
    for _ in $(seq 1 100); do
        ferrumctl topic route "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "topic $1 never appeared on the NameServer"
}

# Each client version gets its own topics and groups (prefix Java for 5.x, Java4 for 4.9.x), so
# one version's consumers never see the other's messages or offsets.
PREFIXES=(Java)
if [ "${FERRUM_COMPAT_CLIENT4:-1}" != 0 ]; then PREFIXES+=(Java4); fi
step "creating topics with ferrumctl"
for prefix in "${PREFIXES[@]}"; do
    for mode in ProduceConsume Orderly LitePull RetryDlq Transaction; do
        create_topic "$prefix$mode" 4
        printf '  %s: 4 queues, routed\n' "$prefix$mode"
    done
done

PASSED=()
FAILED=()
# scenario NAME CLIENT CLASS ARGS...: one JVM; its client log goes to $WORK/NAME/logs.
scenario() {
    local name=$1 client=$2 class=$3
    shift 3
    step "scenario $name ($(cat "$WORK/$client/version"))"
    local started=$SECONDS
    mkdir -p "$WORK/$name"
    if timeout 300 java -Duser.home="$WORK/$name" -Drocketmq.client.logRoot="$WORK/$name/logs" \
        -cp "$(cat "$WORK/$client/cp")" "io.ferrum.compat.$class" "$@"; then
        PASSED+=("$name ($((SECONDS - started)) s)")
    else
        FAILED+=("$name")
        local log
        log=$(find "$WORK/$name" -name 'rocketmq_client.log' 2>/dev/null | head -1)
        if [ -n "$log" ]; then
            printf -- '--- last lines of %s client log ---\n' "$name" >&2
            grep -E 'WARN|ERROR|Exception' "$log" | tail -20 >&2 || true
        fi
        printf -- '--- last lines of the broker log ---\n' >&2
        tail -20 "$WORK/broker.log" >&2 || true
    fi
}

# run_client CLIENT SUFFIX PREFIX: every scenario with one client version; SUFFIX tells the
# versions apart in the summary, PREFIX names their topics and groups.
run_client() {
    local client=$1 suffix=$2 p=$3
    scenario "produce-consume$suffix" "$client" ProduceConsume "$NAMESRV" "${p}ProduceConsume" \
        "${p}CompatPush" sync,async,oneway,batch
    scenario "orderly$suffix" "$client" Orderly "$NAMESRV" "${p}Orderly" "${p}CompatOrderly"
    scenario "lite-pull$suffix" "$client" LitePull "$NAMESRV" "${p}LitePull" "${p}CompatLitePull"
    scenario "transaction$suffix" "$client" Transaction "$NAMESRV" "${p}Transaction" \
        "${p}CompatTransaction"
    if [ "${FERRUM_COMPAT_RETRY_DLQ:-1}" != 0 ]; then
        scenario "retry-dlq$suffix" "$client" RetryDlq "$NAMESRV" "${p}RetryDlq" "${p}CompatRetry"
    fi
}

run_client client5 "" Java
if [ "${FERRUM_COMPAT_CLIENT4:-1}" != 0 ]; then
    run_client client4 -4.9 Java4
fi

step "summary after $((SECONDS - STARTED)) s"
for s in "${PASSED[@]}"; do printf '  PASS %s\n' "$s"; done
for s in "${FAILED[@]+"${FAILED[@]}"}"; do printf '  FAIL %s\n' "$s"; done
[ "${#FAILED[@]}" -eq 0 ] || fail "${#FAILED[@]} Java client scenario(s) failed"
step "java client compat: all scenarios passed"
