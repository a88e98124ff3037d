#!/usr/bin/env bash
# Apache RocketMQ's admin tool (MQAdminStartup, rocketmq-tools) against a real ferrum-broker:
# updateTopic, topicRoute, clusterList, topicList, topicStatus, consumerProgress, queryMsgByKey.
#
# Expects the release binaries (ferrum-namesrv, ferrum-broker, ferrumctl) to be built and the
# rocketmq-tools classpath to be resolvable with hack/compat/pom.xml (run.sh does both first).
# Exits non-zero on the first failed check.
#
# Environment: ROCKETMQ_VERSION (default 5.3.3), FERRUM_M2, CARGO_TARGET_DIR, FERRUM_COMPAT_KEEP.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
M2=${FERRUM_M2:-$HOME/.cache/ferrum/m2}
ROCKETMQ_VERSION=${ROCKETMQ_VERSION:-5.3.3}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET_DIR/release"
CLUSTER=FerrumAdminCluster
BROKER_NAME=ferrum-admin-broker
TOPIC=FerrumAdminTopic
GROUP=FerrumAdminGroup
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

for b in ferrum-namesrv ferrum-broker ferrumctl; do
    [ -x "$BIN/$b" ] || fail "$BIN/$b is not built (cargo build --release -p ...)"
done

step "resolving rocketmq-tools $ROCKETMQ_VERSION (cache: $M2)"
mkdir -p "$M2"
mvn -q -B -f hack/compat/pom.xml -Dmaven.repo.local="$M2" \
    -Drocketmq.version="$ROCKETMQ_VERSION" \
    dependency:build-classpath -Dmdep.outputFile="$WORK/classpath.txt" >"$WORK/mvn.log" 2>&1 ||
    { cat "$WORK/mvn.log" >&2; fail "Maven could not resolve rocketmq-tools $ROCKETMQ_VERSION"; }
CLASSPATH_JARS=$(cat "$WORK/classpath.txt")
# The 4.9.x tool stops before its command unless it can read $ROCKETMQ_HOME/conf/logback_tools.xml;
# an empty configuration satisfies it (5.x does not read the file).
mkdir -p "$WORK/tools-home/conf"
printf '<configuration/>\n' >"$WORK/tools-home/conf/logback_tools.xml"
mqadmin() {
    java -Drocketmq.home.dir="$WORK/tools-home" -cp "$CLASSPATH_JARS" \
        org.apache.rocketmq.tools.command.MQAdminStartup "$@"
}

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
    --set brokerClusterName=$CLUSTER --set brokerName=$BROKER_NAME \
    --set listenPort=0 --set bindAddress=127.0.0.1 \
    --set storePathRootDir="$WORK/store" --set mappedFileSizeCommitLog=67108864 \
    >"$WORK/broker.out" 2>"$WORK/broker.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
    grep -q 'listening on' "$WORK/broker.out" 2>/dev/null && break
    sleep 0.1
done
BROKER=$(sed -n 's/^ferrum-broker .* listening on \([^ ]*\) .*/\1/p' "$WORK/broker.out")
[ -n "$BROKER" ] || { cat "$WORK/broker.log" >&2; fail "ferrum-broker did not start"; }
printf '  ferrum-broker at %s\n' "$BROKER"
ferrumctl() { "$BIN/ferrumctl" -n "$NAMESRV" "$@"; }

step "mqadmin updateTopic -b $BROKER -t $TOPIC -r 4 -w 4"
mqadmin updateTopic -n "$NAMESRV" -b "$BROKER" -t "$TOPIC" -r 4 -w 4 >"$WORK/updateTopic.out" 2>&1 || true
check "$WORK/updateTopic.out" "create topic to $BROKER success" "updateTopic reports success"

step "mqadmin topicRoute -t $TOPIC"
for _ in $(seq 1 50); do
    mqadmin topicRoute -n "$NAMESRV" -t "$TOPIC" >"$WORK/topicRoute.out" 2>&1 || true
    grep -q '"writeQueueNums":4' "$WORK/topicRoute.out" && break
    sleep 0.2
done
check "$WORK/topicRoute.out" '"readQueueNums":4' "route has 4 read queues"
check "$WORK/topicRoute.out" '"writeQueueNums":4' "route has 4 write queues"
check "$WORK/topicRoute.out" "\"brokerName\":\"$BROKER_NAME\"" "route names the broker"

step "mqadmin clusterList / topicList"
mqadmin clusterList -n "$NAMESRV" >"$WORK/clusterList.out" 2>&1 || true
check "$WORK/clusterList.out" "^$CLUSTER +$BROKER_NAME +0 +$BROKER( |\$)" "clusterList lists the broker as master"
mqadmin topicList -n "$NAMESRV" >"$WORK/topicList.out" 2>&1 || true
check "$WORK/topicList.out" "^$TOPIC\$" "topicList lists $TOPIC"

step "sending 8 messages with key k1 and 1 with key k2 (ferrumctl)"
ferrumctl message send "$TOPIC" body-k1 --keys k1 --count 8 >"$WORK/send1.out" 2>&1 ||
    { cat "$WORK/send1.out" >&2; fail "ferrumctl send failed"; }
ferrumctl message send "$TOPIC" body-k2 --keys k2 >"$WORK/send2.out" 2>&1 ||
    { cat "$WORK/send2.out" >&2; fail "ferrumctl send failed"; }

step "mqadmin topicStatus -t $TOPIC"
mqadmin topicStatus -n "$NAMESRV" -t "$TOPIC" >"$WORK/topicStatus.out" 2>&1 || true
check "$WORK/topicStatus.out" '#Broker Name +#QID +#Min Offset +#Max Offset' "topicStatus prints its table"
# Sum of the max offsets over the 4 queues must be the 9 messages sent.
TOTAL=$(awk -v b="$BROKER_NAME" '$1 == b { s += $4 } END { print s + 0 }' "$WORK/topicStatus.out")
[ "$(grep -c "^$BROKER_NAME " "$WORK/topicStatus.out")" = 4 ] || { cat "$WORK/topicStatus.out" >&2; fail "topicStatus does not list 4 queues"; }
[ "$TOTAL" = 9 ] || { cat "$WORK/topicStatus.out" >&2; fail "topicStatus max offsets sum to $TOTAL, not 9"; }
printf '  ok: topicStatus lists 4 queues whose max offsets sum to 9\n'

step "consuming 5 messages with group $GROUP, committing offsets (ferrumctl)"
ferrumctl consume "$TOPIC" -g "$GROUP" --from-beginning --count 5 --commit >"$WORK/consume.out" 2>&1 ||
    { cat "$WORK/consume.out" >&2; fail "ferrumctl consume failed"; }

# consumerProgress routes %RETRY%group first. The broker creates that topic on a consumer's
# HEART_BEAT (as Apache's does); `ferrumctl consume` pulls without heartbeats, so create it here.
step "mqadmin updateTopic -t %RETRY%$GROUP (what a push consumer's heartbeat would create)"
mqadmin updateTopic -n "$NAMESRV" -b "$BROKER" -t "%RETRY%$GROUP" -r 1 -w 1 >"$WORK/retry.out" 2>&1 || true
check "$WORK/retry.out" "create topic to $BROKER success" "retry topic created"
for _ in $(seq 1 50); do
    mqadmin topicRoute -n "$NAMESRV" -t "%RETRY%$GROUP" >"$WORK/retryRoute.out" 2>&1 || true
    grep -q '"writeQueueNums":1' "$WORK/retryRoute.out" && break
    sleep 0.2
done

step "mqadmin consumerProgress -g $GROUP"
mqadmin consumerProgress -n "$NAMESRV" -g "$GROUP" >"$WORK/progress.out" 2>&1 || true
check "$WORK/progress.out" '#Topic +#Broker Name +#QID +#Broker Offset +#Consumer Offset' "consumerProgress prints its table"
[ "$(grep -Ec "^$TOPIC +$BROKER_NAME +[0-9]+ " "$WORK/progress.out")" = 4 ] ||
    { cat "$WORK/progress.out" >&2; fail "consumerProgress does not list the topic's 4 queues"; }
# Per row: broker offset - consumer offset = diff; the consumed total is what was committed.
awk -v t="$TOPIC" '$1 == t { if ($4 - $5 != $6) bad = 1; b += $4; c += $5 }
    END { if (bad || b != 9) exit 1; print c }' "$WORK/progress.out" >"$WORK/consumed" ||
    { cat "$WORK/progress.out" >&2; fail "consumerProgress offsets/diff do not add up"; }
CONSUMED=$(cat "$WORK/consumed")
# ferrumctl printed 5 messages and commits exactly those, not the rest of their pull batches.
[ "$CONSUMED" = 5 ] ||
    { cat "$WORK/progress.out" >&2; fail "consumerProgress shows $CONSUMED consumed, not the 5 committed"; }
# 4.9.x prints "Diff Total:", 5.x "Consume Diff Total:".
check "$WORK/progress.out" "^(Consume )?Diff Total: $((9 - CONSUMED))\$" "Consume Diff Total is $((9 - CONSUMED))"
printf '  ok: 4 queues, broker offsets sum to 9, consumer offsets sum to %s, diffs match\n' "$CONSUMED"

step "mqadmin queryMsgByKey -t $TOPIC -k k2"
mqadmin queryMsgByKey -n "$NAMESRV" -t "$TOPIC" -k k2 >"$WORK/queryKey.out" 2>&1 || true
check "$WORK/queryKey.out" '#Message ID +#QID +#Offset' "queryMsgByKey prints its table"
[ "$(grep -Ec '^[0-9A-F]{32} +[0-9]+ +[0-9]+' "$WORK/queryKey.out")" = 1 ] ||
    { cat "$WORK/queryKey.out" >&2; fail "queryMsgByKey k2 did not find exactly one message"; }
printf '  ok: queryMsgByKey k2 finds one message id\n'
mqadmin queryMsgByKey -n "$NAMESRV" -t "$TOPIC" -k k1 >"$WORK/queryKey1.out" 2>&1 || true
[ "$(grep -Ec '^[0-9A-F]{32} +[0-9]+ +[0-9]+' "$WORK/queryKey1.out")" = 8 ] ||
    { cat "$WORK/queryKey1.out" >&2; fail "queryMsgByKey k1 did not find 8 messages"; }
printf '  ok: queryMsgByKey k1 finds 8 message ids\n'

step "admin-broker compat passed in $((SECONDS - STARTED)) s"
