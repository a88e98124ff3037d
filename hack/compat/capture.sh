#!/usr/bin/env bash
# Regenerates protocol/tests/vectors/: RocketMQ frames captured from real clients talking to
# ferrum-namesrv / ferrum-broker, and from a real Apache broker registering with
# ferrum-namesrv. A regeneration tool, not part of CI: the vectors are committed and
# protocol/tests/captured_vectors.rs decodes them.
#
# How: hack/compat/capture.py proxy records every frame of every connection that passes it.
# The broker binds 127.0.0.2:P (and its VIP port P-2) but advertises brokerIP1=127.0.0.1 with
# the same port, where the proxy listens, so clients that follow the route reach the broker
# through the proxy as well. Clients get the proxy's NameServer port. One proxy run per
# client, each into its own directory; capture.py curate then picks the route query,
# heartbeat, sends, pull, consumer offsets (or REGISTER_BROKER for the Apache broker) with
# their answers and writes them with a MANIFEST to protocol/tests/vectors/<client>-<version>/.
#
# Clients: Apache rocketmq-client 5.3.3 (JSON headers, then -Drocketmq.serialize.type=ROCKETMQ
# for the binary header), rocketmq-client 4.9.8, rocketmq-client-go v2 (hack/compat/go-client),
# rocketmq-client-rust 1.0.0 (hack/compat/rust-client), rocketmq-broker 5.3.3 (plain and
# compressedRegister=true).
#
# Environment: FERRUM_M2 (default ~/.cache/ferrum/m2), CARGO, CARGO_TARGET_DIR, GO,
# FERRUM_CAPTURE_KEEP=1 keeps the raw captures, FERRUM_CAPTURE_OUT (default
# protocol/tests/vectors).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
GO=${GO:-go}
M2=${FERRUM_M2:-$HOME/.cache/ferrum/m2}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUST_CLIENT_TARGET=${FERRUM_RUST_CLIENT_TARGET:-$HOME/.cache/ferrum/rust-client-target}
OUT=${FERRUM_CAPTURE_OUT:-$ROOT/protocol/tests/vectors}
export GOMODCACHE=${GOMODCACHE:-$HOME/.cache/ferrum/gomod}
export GOCACHE=${GOCACHE:-$HOME/.cache/ferrum/gocache}
export GOFLAGS=${GOFLAGS:--mod=mod}
CAPTURE="python3 $ROOT/hack/compat/capture.py"
STARTED=$SECONDS

WORK=$(mktemp -d)
PIDS=()
PROXY_PID=
cleanup() {
    [ -n "$PROXY_PID" ] && { kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; }
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${FERRUM_CAPTURE_KEEP:-0}" = 1 ]; then
        printf 'raw captures kept in %s\n' "$WORK"
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
wait_line() {
    for _ in $(seq 1 200); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
port_free() { ! (: <"/dev/tcp/$1/$2") 2>/dev/null; }
# free_port: P with P-2, P and P+1 free on 127.0.0.1 and 127.0.0.2 (listen, VIP, HA ports).
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        if port_free 127.0.0.1 $((port - 2)) && port_free 127.0.0.1 "$port" &&
            port_free 127.0.0.1 $((port + 1)) && port_free 127.0.0.2 $((port - 2)) &&
            port_free 127.0.0.2 "$port" && port_free 127.0.0.2 $((port + 1)); then
            echo "$port"
            return
        fi
    done
    fail "no free port found"
}

for tool in python3 java javac mvn "$GO"; do
    command -v "$tool" >/dev/null || fail "$tool is not installed"
done

step "building ferrum-namesrv, ferrum-broker and ferrumctl"
"$CARGO" build --quiet -p ferrum-namesrv -p ferrum-broker -p ferrum-client \
    --bin ferrum-namesrv --bin ferrum-broker --bin ferrumctl
BIN=$TARGET_DIR/debug

step "building the Go program (rocketmq-client-go v2)"
(cd hack/compat/go-client && "$GO" build -o "$WORK/go-client" .)
step "building the Rust program (rocketmq-client-rust) into $RUST_CLIENT_TARGET"
(cd hack/compat/rust-client && CARGO_TARGET_DIR="$RUST_CLIENT_TARGET" nice -n 19 "$CARGO" build --quiet)
RUST_CLIENT=$RUST_CLIENT_TARGET/debug/ferrum-compat-rust-client

# java_classpath NAME MAVEN_ARGS...: $WORK/NAME/cp runs the scenarios of hack/compat/java-client.
java_classpath() {
    local name=$1
    shift
    mkdir -p "$WORK/$name/classes"
    mvn -q -B -f hack/compat/java-client/pom.xml -Dmaven.repo.local="$M2" "$@" \
        dependency:build-classpath -Dmdep.outputFile="$WORK/$name/deps" >"$WORK/$name/mvn.log" 2>&1 ||
        { cat "$WORK/$name/mvn.log" >&2; fail "Maven could not resolve rocketmq-client ($name)"; }
    javac -d "$WORK/$name/classes" -cp "$(cat "$WORK/$name/deps")" \
        hack/compat/java-client/src/main/java/io/ferrum/compat/*.java
    printf '%s:%s' "$WORK/$name/classes" "$(cat "$WORK/$name/deps")" >"$WORK/$name/cp"
    printf '  %s\n' "$(tr ':' '\n' <"$WORK/$name/deps" | grep -o 'rocketmq-client-[^/]*\.jar')"
}
mkdir -p "$M2"
step "resolving rocketmq-client 5.3.3 and 4.9.8, rocketmq-broker 5.3.3 (cache: $M2)"
java_classpath client5 -Drocketmq.client.version=5.3.3
java_classpath client4 -P rocketmq4
mvn -q -B -f hack/compat/pom.xml -P apache-broker -Dmaven.repo.local="$M2" -Drocketmq.version=5.3.3 \
    dependency:build-classpath -Dmdep.outputFile="$WORK/broker-classpath.txt" >"$WORK/mvn-broker.log" 2>&1 ||
    { cat "$WORK/mvn-broker.log" >&2; fail "Maven could not resolve rocketmq-broker 5.3.3"; }
grep -q 'rocketmq-client-4.9.8.jar' "$WORK/client4/deps" || fail "the rocketmq4 profile is not 4.9.8"

step "starting ferrum-namesrv and ferrum-broker (bound on 127.0.0.2, advertised on 127.0.0.1)"
"$BIN/ferrum-namesrv" --listen 127.0.0.1:0 >"$WORK/namesrv.out" 2>"$WORK/namesrv.log" &
PIDS+=($!)
wait_line "$WORK/namesrv.out" 'listening on' || { cat "$WORK/namesrv.log" >&2; fail "ferrum-namesrv did not start"; }
NAMESRV=$(sed -n 's/^.*listening on //p' "$WORK/namesrv.out" | head -1)
PORT=$(free_port)
mkdir -p "$WORK/store"
"$BIN/ferrum-broker" -n "$NAMESRV" \
    --set brokerClusterName=FerrumCapture --set brokerName=ferrum-capture \
    --set bindAddress=127.0.0.2 --set brokerIP1=127.0.0.1 --set listenPort="$PORT" \
    --set haListenPort=$((PORT + 1)) \
    --set storePathRootDir="$WORK/store" --set mappedFileSizeCommitLog=16777216 \
    >"$WORK/broker.out" 2>"$WORK/broker.log" &
PIDS+=($!)
wait_line "$WORK/broker.out" 'listening on' || { cat "$WORK/broker.log" >&2; fail "ferrum-broker did not start"; }
printf '  ferrum-namesrv %s; %s\n' "$NAMESRV" "$(head -1 "$WORK/broker.out")"
NS_PROXY_PORT=$(free_port)
NS_PROXY=127.0.0.1:$NS_PROXY_PORT

ctl() { "$BIN/ferrumctl" -n "$NAMESRV" "$@"; }
# create_topic TOPIC: created on the broker's bound address (the advertised one is the proxy's).
create_topic() {
    local deadline=$((SECONDS + 30))
    until ctl topic create -b "127.0.0.2:$PORT" -r 2 -w 2 "$1" >"$WORK/create-$1.out" 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK/create-$1.out" >&2; fail "topic create $1"; }
        sleep 0.5
    done
    until ctl topic route "$1" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$1 never routed"
        sleep 0.5
    done
}

# start_proxy LABEL PAIRS...: records into $WORK/raw/LABEL until stop_proxy.
start_proxy() {
    local label=$1
    shift
    mkdir -p "$WORK/raw/$label"
    $CAPTURE proxy --out "$WORK/raw/$label" "$@" >"$WORK/proxy-$label.out" 2>&1 &
    PROXY_PID=$!
    wait_line "$WORK/proxy-$label.out" 'capture proxy ready' ||
        { cat "$WORK/proxy-$label.out" >&2; fail "the capture proxy did not start"; }
}
stop_proxy() {
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
}
client_proxy() {
    start_proxy "$1" "$NS_PROXY=$NAMESRV" "127.0.0.1:$PORT=127.0.0.2:$PORT" \
        "127.0.0.1:$((PORT - 2))=127.0.0.2:$((PORT - 2))"
}
# curate LABEL DIR CLIENT VERSION TOPIC REQUIRED HOW
curate() {
    step "curating $1 into $2/"
    $CAPTURE curate --from "$WORK/raw/$1" --to "$WORK/vectors/$2" --client "$3" \
        --version "$4" --topic "$5" --require "$6" --how "$7"
}

# java_run LABEL CLIENT TOPIC JAVA_OPTS...: the ProduceConsume scenario, sync sends and batches.
java_run() {
    local label=$1 client=$2 topic=$3
    shift 3
    client_proxy "$label"
    mkdir -p "$WORK/$label"
    timeout 180 java "$@" -Duser.home="$WORK/$label" -Drocketmq.client.logRoot="$WORK/$label/logs" \
        -cp "$(cat "$WORK/$client/cp")" io.ferrum.compat.ProduceConsume "$NS_PROXY" "$topic" \
        "Capture$topic" "$KINDS" >"$WORK/$label/run.out" 2>&1 ||
        { tail -30 "$WORK/$label/run.out" >&2; fail "Java scenario $label"; }
    stop_proxy
}

REQUIRED_CLIENT="route,heartbeat,send-v2,pull,update-consumer-offset"

step "creating the topics"
for topic in CaptureJava5 CaptureJava5Binary CaptureJava4 CaptureGo CaptureRust; do
    create_topic "$topic"
done

step "Java rocketmq-client 5.3.3, JSON headers"
KINDS=sync,batch
java_run java5-json client5 CaptureJava5
curate java5-json java-client-5.3.3 java-client 5.3.3 CaptureJava5 "$REQUIRED_CLIENT,send-batch" \
    "rocketmq-client 5.3.3 ProduceConsume sync+batch, JSON headers (default)"

step "Java rocketmq-client 5.3.3, -Drocketmq.serialize.type=ROCKETMQ"
java_run java5-binary client5 CaptureJava5Binary -Drocketmq.serialize.type=ROCKETMQ
curate java5-binary java-client-5.3.3-rocketmq-serialize java-client 5.3.3 CaptureJava5Binary \
    "$REQUIRED_CLIENT,send-batch" \
    "rocketmq-client 5.3.3 ProduceConsume sync+batch, -Drocketmq.serialize.type=ROCKETMQ"

step "Java rocketmq-client 4.9.8"
KINDS=sync
java_run java4 client4 CaptureJava4
curate java4 java-client-4.9.8 java-client 4.9.8 CaptureJava4 "$REQUIRED_CLIENT" \
    "rocketmq-client 4.9.8 ProduceConsume sync, JSON headers (default)"

step "Go rocketmq-client-go v2"
client_proxy go
"$WORK/go-client" produce -n "$NS_PROXY" -t CaptureGo -count 4 -run cap -out "$WORK/go-sent1.txt" >"$WORK/go.log" 2>&1 ||
    { tail -20 "$WORK/go.log" >&2; fail "Go producer"; }
"$WORK/go-client" produce -n "$NS_PROXY" -t CaptureGo -count 4 -batch 4 -run capb -out "$WORK/go-sent2.txt" >>"$WORK/go.log" 2>&1 ||
    { tail -20 "$WORK/go.log" >&2; fail "Go batch producer"; }
cat "$WORK/go-sent1.txt" "$WORK/go-sent2.txt" >"$WORK/go-sent.txt"
"$WORK/go-client" consume -n "$NS_PROXY" -t CaptureGo -g CaptureGoConsumer -count 8 -timeout 60s \
    -expect "$WORK/go-sent.txt" -out "$WORK/go-got.txt" >>"$WORK/go.log" 2>&1 ||
    { tail -20 "$WORK/go.log" >&2; fail "Go consumer"; }
stop_proxy
GO_VERSION=$(sed -n 's#^\(require\)\{0,1\}[[:space:]]*github.com/apache/rocketmq-client-go/v2 \(v[^ ]*\).*#\2#p' hack/compat/go-client/go.mod | head -1)
curate go go-client-v2 go-client "${GO_VERSION:-v2}" CaptureGo "route,heartbeat,send,send-batch,pull,update-consumer-offset" \
    "rocketmq-client-go ${GO_VERSION:-v2} produce (single and batch of 4) then push consume"

step "Rust rocketmq-client-rust"
client_proxy rust
"$RUST_CLIENT" produce "$NS_PROXY" CaptureRust 4 cap "$WORK/rust-sent.jsonl" >"$WORK/rust.log" 2>&1 ||
    { tail -20 "$WORK/rust.log" >&2; fail "Rust producer"; }
"$RUST_CLIENT" consume "$NS_PROXY" CaptureRust CaptureRustConsumer 4 60 "$WORK/rust-got.jsonl" >>"$WORK/rust.log" 2>&1 ||
    { tail -20 "$WORK/rust.log" >&2; fail "Rust consumer"; }
stop_proxy
RUST_VERSION=$(sed -n 's/^rocketmq-client-rust = .*version = "=\{0,1\}\([^"]*\)".*/\1/p; s/^rocketmq-client-rust = "=\{0,1\}\([^"]*\)"/\1/p' hack/compat/rust-client/Cargo.toml | head -1)
curate rust "rust-client-${RUST_VERSION:-1.0.0}" rust-client "${RUST_VERSION:-1.0.0}" CaptureRust "route,heartbeat,pull" \
    "rocketmq-client-rust ${RUST_VERSION:-1.0.0} produce 4 then push consume"

# apache_broker LABEL EXTRA_CONF: starts rocketmq-broker 5.3.3 against the proxied NameServer
# and stops it once its first REGISTER_BROKER has been answered.
apache_broker() {
    local label=$1 extra=$2 port
    port=$(free_port)
    mkdir -p "$WORK/$label/home" "$WORK/$label/store"
    cat >"$WORK/$label/broker.conf" <<CONF
brokerClusterName=CaptureJavaCluster
brokerName=capture-java-broker
brokerId=0
namesrvAddr=$NS_PROXY
brokerIP1=127.0.0.1
listenPort=$port
storePathRootDir=$WORK/$label/store
storePathCommitLog=$WORK/$label/store/commitlog
mappedFileSizeCommitLog=16777216
$extra
CONF
    start_proxy "$label" "$NS_PROXY=$NAMESRV"
    ROCKETMQ_HOME="$WORK/$label/home" java -Xms256m -Xmx256m -XX:MaxDirectMemorySize=256m \
        -Duser.home="$WORK/$label/home" -cp "$(cat "$WORK/broker-classpath.txt")" \
        org.apache.rocketmq.broker.BrokerStartup -c "$WORK/$label/broker.conf" >"$WORK/$label/broker.out" 2>&1 &
    local pid=$!
    local deadline=$((SECONDS + 120))
    until compgen -G "$WORK/raw/$label/*resp-103-*" >/dev/null; do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$WORK/$label/broker.out" >&2; fail "the Apache broker exited"; }
        [ "$SECONDS" -lt "$deadline" ] || fail "the Apache broker did not register within 120 s"
        sleep 0.5
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    stop_proxy
}

step "Apache rocketmq-broker 5.3.3 REGISTER_BROKER (plain, then compressedRegister=true)"
apache_broker broker-plain ""
curate broker-plain apache-broker-5.3.3 apache-broker 5.3.3 - "register-broker" \
    "rocketmq-broker 5.3.3 BrokerStartup registering with ferrum-namesrv (compressedRegister=false)"
apache_broker broker-compressed "compressedRegister=true"
curate broker-compressed apache-broker-5.3.3 apache-broker 5.3.3 - "register-broker-compressed" \
    "rocketmq-broker 5.3.3 BrokerStartup registering with ferrum-namesrv (compressedRegister=true)"

step "replacing $OUT"
mkdir -p "$OUT"
find "$OUT" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
cp -r "$WORK/vectors/." "$OUT/"
du -sh "$OUT"
step "done: $(find "$OUT" -name '*.bin' | wc -l) frames in $(find "$OUT" -name MANIFEST | wc -l) directories"
