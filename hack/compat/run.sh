#!/usr/bin/env bash
# Real-client compatibility: Apache RocketMQ's admin tool (MQAdminStartup from
# org.apache.rocketmq:rocketmq-tools on Maven Central, run on Java 17) against ferrum-namesrv.
#
# Steps: build ferrum-namesrv and the register_broker example, start the NameServer on a free
# port, register a broker holding one topic, then run `clusterList` and `topicRoute` and check
# what they print. Exits non-zero on the first failed check.
#
# Environment: ROCKETMQ_VERSION (default 5.3.3), FERRUM_M2 (local Maven repository, default
# ~/.cache/ferrum/m2), CARGO (default cargo), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
M2=${FERRUM_M2:-$HOME/.cache/ferrum/m2}
ROCKETMQ_VERSION=${ROCKETMQ_VERSION:-5.3.3}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CLUSTER=FerrumCompatCluster
BROKER=ferrum-compat-broker
# Nothing listens on port 1 (binding it needs privileges), so the tool's per-broker runtime
# query fails fast with "connect ... failed"; the NameServer's own answers are what is checked.
BROKER_ADDR=127.0.0.1:1
TOPIC=FerrumCompatTopic
QUEUES=6

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '==> %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
# check FILE PATTERN DESCRIPTION: an extended regex that must match a line of FILE.
check() {
    if grep -Eq -- "$2" "$1"; then
        printf '  ok: %s\n' "$3"
    else
        printf -- '--- %s ---\n' "$1" >&2
        cat "$1" >&2
        fail "$3 (no line matches /$2/)"
    fi
}

command -v java >/dev/null || fail "java (17+) is not installed"
command -v mvn >/dev/null || fail "mvn is not installed"

step "building ferrum-namesrv and the register_broker helper"
"$CARGO" build --quiet -p ferrum-namesrv --bin ferrum-namesrv --example register_broker

step "resolving rocketmq-tools $ROCKETMQ_VERSION from Maven Central (cache: $M2)"
mkdir -p "$M2"
mvn -q -B -f hack/compat/pom.xml -Dmaven.repo.local="$M2" \
    -Drocketmq.version="$ROCKETMQ_VERSION" \
    dependency:build-classpath -Dmdep.outputFile="$WORK/classpath.txt" >"$WORK/mvn.log" 2>&1 ||
    { cat "$WORK/mvn.log" >&2; fail "Maven could not resolve rocketmq-tools $ROCKETMQ_VERSION"; }
CLASSPATH_JARS=$(cat "$WORK/classpath.txt")

step "starting ferrum-namesrv on a free port"
"$TARGET_DIR/debug/ferrum-namesrv" --listen 127.0.0.1:0 >"$WORK/namesrv.out" 2>"$WORK/namesrv.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
    grep -q 'listening on' "$WORK/namesrv.out" 2>/dev/null && break
    sleep 0.1
done
NAMESRV=$(sed -n 's/^ferrum-namesrv listening on //p' "$WORK/namesrv.out")
[ -n "$NAMESRV" ] || { cat "$WORK/namesrv.log" >&2; fail "ferrum-namesrv did not start"; }
printf '  ferrum-namesrv at %s\n' "$NAMESRV"

step "registering broker $BROKER ($BROKER_ADDR) in $CLUSTER with topic $TOPIC"
"$TARGET_DIR/debug/examples/register_broker" --namesrv "$NAMESRV" --cluster "$CLUSTER" \
    --broker-name "$BROKER" --broker-addr "$BROKER_ADDR" --topic "$TOPIC" --queues "$QUEUES" \
    >"$WORK/register.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    grep -q '^registered' "$WORK/register.out" 2>/dev/null && break
    sleep 0.1
done
check "$WORK/register.out" '^registered' "REGISTER_BROKER accepted"

mqadmin() {
    java -cp "$CLASSPATH_JARS" org.apache.rocketmq.tools.command.MQAdminStartup "$@"
}

step "mqadmin clusterList -n $NAMESRV"
mqadmin clusterList -n "$NAMESRV" >"$WORK/clusterList.out" 2>"$WORK/clusterList.err" || true
cat "$WORK/clusterList.out"
check "$WORK/clusterList.out" '^#Cluster Name +#Broker Name +#BID +#Addr' "clusterList prints its table"
check "$WORK/clusterList.out" "^$CLUSTER +$BROKER +0 +$BROKER_ADDR( |\$)" \
    "clusterList shows $CLUSTER / $BROKER / brokerId 0 / $BROKER_ADDR"

step "mqadmin topicRoute -n $NAMESRV -t $TOPIC"
mqadmin topicRoute -n "$NAMESRV" -t "$TOPIC" >"$WORK/topicRoute.out" 2>"$WORK/topicRoute.err" || true
cat "$WORK/topicRoute.out"
check "$WORK/topicRoute.out" "\"cluster\":\"$CLUSTER\"" "route names the cluster"
check "$WORK/topicRoute.out" "\"brokerAddrs\":\{\"?0\"?:\"$BROKER_ADDR\"" "route has the master address under brokerId 0"
check "$WORK/topicRoute.out" "\"brokerName\":\"$BROKER\"" "route names the broker"
check "$WORK/topicRoute.out" "\"readQueueNums\":$QUEUES" "queue data has $QUEUES read queues"
check "$WORK/topicRoute.out" "\"writeQueueNums\":$QUEUES" "queue data has $QUEUES write queues"
check "$WORK/topicRoute.out" '"perm":6' "queue data has perm 6 (read+write)"

step "mqadmin topicRoute -l (list form)"
mqadmin topicRoute -n "$NAMESRV" -t "$TOPIC" -l >"$WORK/topicRouteList.out" 2>&1 || true
cat "$WORK/topicRouteList.out"
check "$WORK/topicRouteList.out" "^$CLUSTER +$BROKER +\{0=$BROKER_ADDR\} +$QUEUES +$QUEUES +6" \
    "list form: cluster, broker, addresses, $QUEUES/$QUEUES queues, perm 6"

step "mqadmin topicList -n $NAMESRV"
mqadmin topicList -n "$NAMESRV" >"$WORK/topicList.out" 2>"$WORK/topicList.err" || true
cat "$WORK/topicList.out"
check "$WORK/topicList.out" "^$TOPIC\$" "topicList lists $TOPIC"
check "$WORK/topicList.out" '^TBW102$' "topicList lists the broker's TBW102"

step "mqadmin topicRoute for an unknown topic"
mqadmin topicRoute -n "$NAMESRV" -t NoSuchFerrumTopic >"$WORK/unknown.out" 2>&1 || true
check "$WORK/unknown.out" 'CODE: 17 +DESC: No topic route info in name server for the topic: NoSuchFerrumTopic' \
    "unknown topic answers TOPIC_NOT_EXIST (17) with a true remark"

step "compat: all checks passed"
