#!/usr/bin/env bash
# Real-client compatibility: Apache RocketMQ's admin tool (MQAdminStartup from
# org.apache.rocketmq:rocketmq-tools on Maven Central, run on Java 17) against ferrum-namesrv.
#
# Steps: build ferrum-namesrv and the register_broker example, start the NameServer on a free
# port, register a broker holding one topic, then run `clusterList` and `topicRoute` and check
# what they print. Exits non-zero on the first failed check.
#
# Then a real Apache broker (rocketmq-broker, same version) registers with ferrum-namesrv: it
# must show up in clusterList, its topics must route, a topic created through it must appear,
# a message sent by the admin tool through the route must be stored, and the broker must
# disappear when it stops. Skip that phase with FERRUM_COMPAT_JAVA_BROKER=0.
#
# Environment: ROCKETMQ_VERSION (default 5.3.3), FERRUM_M2 (local Maven repository, default
# ~/.cache/ferrum/m2), CARGO (default cargo), CARGO_TARGET_DIR, FERRUM_COMPAT_JAVA_BROKER.
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

bash "$ROOT/hack/compat/cross-check.sh"  # Go scenarios plus the Go/Rust/Java/ferrumctl matrix
bash "$ROOT/hack/compat/java-client.sh"
bash "$ROOT/hack/compat/admin-broker.sh"
ROCKETMQ_VERSION=4.9.8 bash "$ROOT/hack/compat/admin-broker.sh"  # the last 4.9.x admin tool

if [ "${FERRUM_COMPAT_JAVA_BROKER:-1}" = 0 ]; then
    step "compat: all checks passed (Java broker phase skipped)"
    exit 0
fi

step "resolving rocketmq-broker $ROCKETMQ_VERSION"
mvn -q -B -f hack/compat/pom.xml -P apache-broker -Dmaven.repo.local="$M2" \
    -Drocketmq.version="$ROCKETMQ_VERSION" \
    dependency:build-classpath -Dmdep.outputFile="$WORK/broker-classpath.txt" >"$WORK/mvn-broker.log" 2>&1 ||
    { cat "$WORK/mvn-broker.log" >&2; fail "Maven could not resolve rocketmq-broker $ROCKETMQ_VERSION"; }

# The broker also binds listenPort-2 (VIP channel) and listenPort+1 (HA): pick a port whose
# neighbours are free too.
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        if ! (: <"/dev/tcp/127.0.0.1/$((port - 2))") 2>/dev/null &&
            ! (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
            ! (: <"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    fail "no free port found for the Java broker"
}
JAVA_CLUSTER=JavaCompatCluster
JAVA_BROKER=java-compat-broker
JAVA_PORT=$(free_port)
JAVA_TOPIC=JavaCreatedTopic
mkdir -p "$WORK/broker-home" "$WORK/broker-store"
cat >"$WORK/broker.conf" <<CONF
brokerClusterName=$JAVA_CLUSTER
brokerName=$JAVA_BROKER
brokerId=0
namesrvAddr=$NAMESRV
brokerIP1=127.0.0.1
listenPort=$JAVA_PORT
storePathRootDir=$WORK/broker-store
storePathCommitLog=$WORK/broker-store/commitlog
mappedFileSizeCommitLog=67108864
autoCreateTopicEnable=true
CONF

step "starting Apache rocketmq-broker $ROCKETMQ_VERSION on 127.0.0.1:$JAVA_PORT"
ROCKETMQ_HOME="$WORK/broker-home" java -Xms512m -Xmx512m -XX:MaxDirectMemorySize=512m \
    -Duser.home="$WORK/broker-home" -cp "$(cat "$WORK/broker-classpath.txt")" \
    org.apache.rocketmq.broker.BrokerStartup -c "$WORK/broker.conf" >"$WORK/broker.out" 2>&1 &
BROKER_PID=$!
PIDS+=("$BROKER_PID")

# wait_for_cluster_row PRESENT|ABSENT SECONDS
wait_for_cluster_row() {
    local deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        mqadmin clusterList -n "$NAMESRV" >"$WORK/javaCluster.out" 2>/dev/null || true
        if grep -Eq "^$JAVA_CLUSTER +$JAVA_BROKER +0 +127.0.0.1:$JAVA_PORT " "$WORK/javaCluster.out"; then
            [ "$1" = PRESENT ] && return 0
        else
            [ "$1" = ABSENT ] && return 0
        fi
        kill -0 "$BROKER_PID" 2>/dev/null || [ "$1" = ABSENT ] ||
            { tail -20 "$WORK/broker.out" >&2; fail "the Java broker exited"; }
        sleep 2
    done
    return 1
}

wait_for_cluster_row PRESENT 120 ||
    { tail -20 "$WORK/broker.out" >&2; fail "the Java broker did not appear in clusterList within 120 s"; }
cat "$WORK/javaCluster.out"
check "$WORK/javaCluster.out" "^$JAVA_CLUSTER +$JAVA_BROKER +0 +127.0.0.1:$JAVA_PORT +V[0-9_]+" \
    "clusterList shows the Java broker, and its runtime info (version) answers"

mqadmin topicRoute -n "$NAMESRV" -t TBW102 -l >"$WORK/javaTbw.out" 2>&1 || true
check "$WORK/javaTbw.out" "^$JAVA_CLUSTER +$JAVA_BROKER +\{0=127.0.0.1:$JAVA_PORT\} +[0-9]+ +[0-9]+ +7" \
    "the Java broker's TBW102 routes with perm 7 (inherit)"

step "mqadmin updateTopic through the Java broker, then its route"
mqadmin updateTopic -n "$NAMESRV" -c "$JAVA_CLUSTER" -t "$JAVA_TOPIC" -r 3 -w 3 >"$WORK/update.out" 2>&1 || true
check "$WORK/update.out" "create topic to 127.0.0.1:$JAVA_PORT success" "the broker created $JAVA_TOPIC"
ROUTED=
for _ in $(seq 1 30); do
    mqadmin topicRoute -n "$NAMESRV" -t "$JAVA_TOPIC" -l >"$WORK/javaRoute.out" 2>&1 || true
    if grep -Eq "^$JAVA_CLUSTER +$JAVA_BROKER .* 3 +3 +6" "$WORK/javaRoute.out"; then ROUTED=1; break; fi
    sleep 1
done
cat "$WORK/javaRoute.out"
[ -n "$ROUTED" ] || fail "$JAVA_TOPIC never routed with 3/3 queues (the broker's re-registration was not applied)"
printf '  ok: %s\n' "$JAVA_TOPIC routes with 3 read / 3 write queues, perm 6"

step "mqadmin sendMessage to $JAVA_TOPIC (route from ferrum-namesrv, message to the Java broker)"
mqadmin sendMessage -n "$NAMESRV" -t "$JAVA_TOPIC" -p hello-from-ferrum-compat >"$WORK/send.out" 2>&1 || true
cat "$WORK/send.out"
check "$WORK/send.out" "^$JAVA_BROKER +[0-2] +SEND_OK" "the message was stored by the Java broker"

step "stopping the Java broker: it must leave the cluster"
kill "$BROKER_PID" 2>/dev/null || true
wait_for_cluster_row ABSENT 60 || fail "the stopped Java broker is still listed after 60 s"
printf '  ok: %s\n' "the stopped Java broker is gone from clusterList"

step "compat: all checks passed"
