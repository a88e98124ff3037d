#!/usr/bin/env bash
# Real-client compatibility: Apache rocketmq-client-go v2 (Go module proxy), unchanged, against
# ferrum-namesrv + ferrum-broker.
#
# Scenarios (each exits non-zero on the first mismatch or timeout):
#   1. go -> go:        the Go producer sends N messages (SendSync; keys, tags, user properties)
#                       and a Go push consumer receives every one of them identical.
#   2. ferrumctl -> go: messages sent by `ferrumctl message send` reach the Go push consumer with
#                       the same keys, tags and body bytes.
#   3. go -> ferrumctl: what the Go producer sent is read back by `ferrumctl consume --json`
#                       with the same keys, tags, user properties and body bytes.
#   4. go batch -> go:  SendSync with 10 messages per call (SEND_BATCH_MESSAGE 320).
#   5. tag filter:      a Go consumer subscribed to TagA receives exactly the TagA messages.
#   6. offsets:         the group of scenario 1, started again, receives only newer messages.
#   7. retry:           a Go listener that fails each first delivery (CONSUMER_SEND_MSG_BACK)
#                       gets every message again, identical, from %RETRY%group.
#   8. orderly:         a Go orderly push consumer (LOCK_BATCH_MQ) receives every message.
#   9, 10 (when FERRUM_COMPAT_RUST_CLIENT names the binary of hack/compat/rust-client, as
#        hack/compat/rust-client.sh does): rocketmq-client-rust produces for the Go and its own
#        consumer, and consumes what the Go producer sent.
#   11, 12 (when FERRUM_COMPAT_JAVA_CP is the classpath of hack/compat/java-client's classes
#        and rocketmq-client 5.x, as hack/compat/cross-check.sh sets it): Apache's Java client
#        produces for the Go, ferrumctl, Rust (if present) and Java consumers, and its push
#        consumer reads what the Go producer, ferrumctl and the Rust producer sent.
#   13. ferrumctl -> ferrumctl: `ferrumctl consume --json` reads what `ferrumctl message send` sent.
#   14 (with FERRUM_COMPAT_RUST_CLIENT): ferrumctl -> rust and rust -> ferrumctl, which completes
#        the matrix: every producer (Go, ferrumctl, Rust, Java) read by every consumer.
#   15 (when FERRUM_COMPAT_JAVA4_CP is the classpath of the same classes and rocketmq-client
#        4.9.x, as cross-check.sh sets it): the 4.9.x Java client produces for every consumer
#        (Go, ferrumctl, Rust, Java 5.x, Java 4.9.x) and consumes what every producer sent.
#
# Environment: GO (default go), CARGO (default cargo), CARGO_TARGET_DIR, FERRUM_GO_MESSAGES
# (default 200), GOMODCACHE / GOCACHE (default under ~/.cache/ferrum).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
GO=${GO:-go}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export GOMODCACHE=${GOMODCACHE:-$HOME/.cache/ferrum/gomod}
export GOCACHE=${GOCACHE:-$HOME/.cache/ferrum/gocache}
export GOFLAGS=${GOFLAGS:--mod=mod}
N=${FERRUM_GO_MESSAGES:-200}
CLUSTER=FerrumGoCompat
BROKER=ferrum-go-broker
QUEUES=4

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
show_logs() {
    for f in "$WORK"/namesrv.log "$WORK"/broker.log; do
        [ -s "$f" ] && { printf -- '--- %s (tail) ---\n' "$(basename "$f")" >&2; tail -20 "$f" >&2; }
    done
    return 0
}

command -v "$GO" >/dev/null || fail "go is not installed"

step "building ferrum-namesrv, ferrum-broker and ferrumctl (release)"
"$CARGO" build --quiet --release -p ferrum-namesrv -p ferrum-broker -p ferrum-client
BIN=$TARGET_DIR/release
CTL=$BIN/ferrumctl

step "building the Go programs (rocketmq-client-go v2 from the Go module proxy)"
(cd hack/compat/go-client && "$GO" build -o "$WORK/go-client" .)
GOC=$WORK/go-client

# wait_line FILE REGEX: the process writing FILE printed a matching line within 10 s.
wait_line() {
    for _ in $(seq 1 100); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

step "starting ferrum-namesrv on a free port"
"$BIN/ferrum-namesrv" --listen 127.0.0.1:0 >"$WORK/namesrv.out" 2>"$WORK/namesrv.log" &
PIDS+=($!)
wait_line "$WORK/namesrv.out" 'listening on' || { show_logs; fail "ferrum-namesrv did not start"; }
NAMESRV=$(sed -n 's/^.*listening on //p' "$WORK/namesrv.out" | head -1)
printf '  ferrum-namesrv at %s\n' "$NAMESRV"

step "starting ferrum-broker on a free port"
mkdir -p "$WORK/store"
"$BIN/ferrum-broker" -n "$NAMESRV" \
    --set listenPort=0 --set bindAddress=127.0.0.1 --set brokerIP1=127.0.0.1 \
    --set brokerClusterName="$CLUSTER" --set brokerName="$BROKER" \
    --set storePathRootDir="$WORK/store" --set mappedFileSizeCommitLog=16777216 \
    >"$WORK/broker.out" 2>"$WORK/broker.log" &
PIDS+=($!)
wait_line "$WORK/broker.out" 'listening on' || { show_logs; fail "ferrum-broker did not start"; }
printf '  %s\n' "$(head -1 "$WORK/broker.out")"

ctl() { "$CTL" -n "$NAMESRV" "$@"; }

# create_topic TOPIC: on every master of the cluster, then wait until the NameServer routes it.
create_topic() {
    local deadline=$((SECONDS + 30))
    until ctl topic create -c "$CLUSTER" -r "$QUEUES" -w "$QUEUES" "$1" >"$WORK/create-$1.out" 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK/create-$1.out" >&2; show_logs; fail "topic create $1"; }
        sleep 0.5
    done
    until ctl topic route "$1" >"$WORK/route-$1.out" 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK/route-$1.out" >&2; fail "$1 never routed"; }
        sleep 0.5
    done
    printf '  ok: topic %s created and routed\n' "$1"
}

T_GO=GoToGo
T_CTL=CtlToGo
create_topic "$T_GO"
create_topic "$T_CTL"

step "1. go -> go: Go producer sends $N messages, Go push consumer receives them"
"$GOC" produce -n "$NAMESRV" -t "$T_GO" -count "$N" -run compat -out "$WORK/go-sent.txt" ||
    { show_logs; fail "Go producer"; }
"$GOC" consume -n "$NAMESRV" -t "$T_GO" -g GoCompatConsumer -count "$N" -timeout 90s \
    -expect "$WORK/go-sent.txt" -out "$WORK/go-got.txt" || { show_logs; fail "Go push consumer"; }
printf '  ok: %s messages identical (keys, tags, properties, bodies)\n' "$N"

step "2. ferrumctl -> go: ferrumctl sends, the Go push consumer receives"
CTL_N=10
: >"$WORK/ctl-sent.txt"
send_ctl() { # TAGS KEYS BODY
    ctl message send --count "$CTL_N" --tags "$1" --keys "$2" "$T_CTL" "$3" >"$WORK/ctl-send.out" 2>&1 ||
        { cat "$WORK/ctl-send.out" >&2; fail "ferrumctl message send"; }
    "$GOC" expect -tags "$1" -keys "$2" -body "$3" -count "$CTL_N" -out "$WORK/ctl-part.txt"
    cat "$WORK/ctl-part.txt" >>"$WORK/ctl-sent.txt"
}
send_ctl TagCtl 'ctl-key-1,ctl-key-2' 'from ferrumctl: ünïcødé ✓ and "quotes"'
send_ctl OtherTag 'ctl-only' 'second body, plain ascii'
"$GOC" consume -n "$NAMESRV" -t "$T_CTL" -g GoCompatCtlConsumer -count $((2 * CTL_N)) -timeout 60s \
    -expect "$WORK/ctl-sent.txt" -out "$WORK/ctl-got.txt" || { show_logs; fail "Go consumer of ferrumctl messages"; }
printf '  ok: %s ferrumctl messages identical in the Go consumer\n' $((2 * CTL_N))

step "3. go -> ferrumctl: ferrumctl consume reads what the Go producer sent"
timeout 60 "$CTL" -n "$NAMESRV" --json consume --from-beginning --count "$N" -g CtlCompatReader "$T_GO" \
    >"$WORK/ctl-consume.jsonl" 2>"$WORK/ctl-consume.err" ||
    { cat "$WORK/ctl-consume.err" >&2; fail "ferrumctl consume"; }
"$GOC" canon -in "$WORK/ctl-consume.jsonl" -expect "$WORK/go-sent.txt" -out "$WORK/ctl-read.txt" ||
    fail "ferrumctl read different messages than the Go producer sent"
printf '  ok: %s Go messages identical in ferrumctl consume\n' "$N"

T_BATCH=GoBatch
create_topic "$T_BATCH"
step "4. go batch -> go: SendSync of 10 messages at a time (SEND_BATCH_MESSAGE)"
"$GOC" produce -n "$NAMESRV" -t "$T_BATCH" -count 100 -batch 10 -run batch -out "$WORK/batch-sent.txt" ||
    { show_logs; fail "Go batch producer"; }
"$GOC" consume -n "$NAMESRV" -t "$T_BATCH" -g GoCompatBatchConsumer -count 100 -timeout 60s \
    -expect "$WORK/batch-sent.txt" -out "$WORK/batch-got.txt" || { show_logs; fail "Go consumer of a batch"; }
printf '  ok: 100 batched messages identical\n'

step "5. tag filter: a Go consumer subscribed to TagA gets exactly the TagA messages"
grep -F 'tags="TagA"' "$WORK/go-sent.txt" >"$WORK/taga-sent.txt"
TAGA_N=$(wc -l <"$WORK/taga-sent.txt")
"$GOC" consume -n "$NAMESRV" -t "$T_GO" -g GoCompatTagA -tags TagA -count "$TAGA_N" -timeout 60s -settle 3s \
    -expect "$WORK/taga-sent.txt" -out "$WORK/taga-got.txt" || { show_logs; fail "Go TagA consumer"; }
printf '  ok: %s TagA messages, no TagB\n' "$TAGA_N"

step "6. offsets: the group of scenario 1 resumes after its committed offsets"
"$GOC" produce -n "$NAMESRV" -t "$T_GO" -count 50 -run more -out "$WORK/more-sent.txt" ||
    { show_logs; fail "Go producer (second run)"; }
"$GOC" consume -n "$NAMESRV" -t "$T_GO" -g GoCompatConsumer -count 50 -timeout 60s -settle 3s \
    -expect "$WORK/more-sent.txt" -out "$WORK/more-got.txt" || { show_logs; fail "Go consumer resuming its group"; }
printf '  ok: only the 50 new messages were delivered to the returning group\n'

T_RETRY=GoRetry
create_topic "$T_RETRY"
# The Go push consumer fetches its routes before its first heartbeat (which is what creates
# %RETRY%group on a broker, Apache's too), so for a new group the retry topic would only be
# routed at the client's next 30 s route poll; creating it first keeps this scenario short.
create_topic "%RETRY%GoCompatRetry"
step "7. retry: the Go listener fails each first delivery; every message comes back via %RETRY%"
"$GOC" produce -n "$NAMESRV" -t "$T_RETRY" -count 10 -run retry -out "$WORK/retry-sent.txt" ||
    { show_logs; fail "Go producer (retry topic)"; }
"$GOC" consume -n "$NAMESRV" -t "$T_RETRY" -g GoCompatRetry -retry-first -count 10 -timeout 90s \
    -expect "$WORK/retry-sent.txt" -out "$WORK/retry-got.txt" || { show_logs; fail "Go consumer with retries"; }
printf '  ok: 10 messages redelivered after ConsumeRetryLater, identical\n'

step "8. orderly: a Go orderly push consumer (LOCK_BATCH_MQ) receives the batched messages"
"$GOC" consume -n "$NAMESRV" -t "$T_BATCH" -g GoCompatOrderly -orderly -count 100 -timeout 60s \
    -expect "$WORK/batch-sent.txt" -out "$WORK/orderly-got.txt" || { show_logs; fail "Go orderly consumer"; }
printf '  ok: 100 messages identical through the orderly consumer\n'

if [ -n "${FERRUM_COMPAT_RUST_CLIENT:-}" ]; then
    RC=$FERRUM_COMPAT_RUST_CLIENT
    T_RUST=RustTopic
    create_topic "$T_RUST"
    step "9. rust -> go and rust -> rust: rocketmq-client-rust sends 100 messages"
    "$RC" produce "$NAMESRV" "$T_RUST" 100 compat "$WORK/rust-sent.jsonl" >"$WORK/rust-produce.log" 2>&1 ||
        { tail -20 "$WORK/rust-produce.log" >&2; show_logs; fail "Rust producer"; }
    "$GOC" canon -in "$WORK/rust-sent.jsonl" -out "$WORK/rust-sent.txt" >/dev/null
    "$GOC" consume -n "$NAMESRV" -t "$T_RUST" -g GoReadsRust -count 100 -timeout 60s \
        -expect "$WORK/rust-sent.txt" -out "$WORK/go-reads-rust.txt" || { show_logs; fail "Go consumer of Rust messages"; }
    "$RC" consume "$NAMESRV" "$T_RUST" RustReadsRust 100 60 "$WORK/rust-rust.jsonl" >"$WORK/rust-consume.log" 2>&1 ||
        { tail -20 "$WORK/rust-consume.log" >&2; show_logs; fail "Rust consumer"; }
    "$GOC" canon -in "$WORK/rust-rust.jsonl" -expect "$WORK/rust-sent.txt" -out "$WORK/rust-rust.txt" ||
        fail "the Rust consumer read different messages than the Rust producer sent"
    printf '  ok: 100 Rust messages identical in the Go and the Rust consumer\n'

    step "10. go -> rust: rocketmq-client-rust consumes what the Go producer sent"
    cat "$WORK/go-sent.txt" "$WORK/more-sent.txt" >"$WORK/go-all.txt"
    GO_ALL=$(wc -l <"$WORK/go-all.txt")
    "$RC" consume "$NAMESRV" "$T_GO" RustReadsGo "$GO_ALL" 60 "$WORK/rust-go.jsonl" >"$WORK/rust-go.log" 2>&1 ||
        { tail -20 "$WORK/rust-go.log" >&2; show_logs; fail "Rust consumer of Go messages"; }
    "$GOC" canon -in "$WORK/rust-go.jsonl" -expect "$WORK/go-all.txt" -out "$WORK/rust-go.txt" ||
        fail "the Rust consumer read different messages than the Go producer sent"
    printf '  ok: %s Go messages identical in the Rust consumer\n' "$GO_ALL"
fi

if [ -n "${FERRUM_COMPAT_JAVA_CP:-}" ]; then
    # The Java client (hack/compat/java-client, CrossCheck) writes the same JSON lines as
    # ferrumctl and the Rust program, so `canon` compares it with every other client.
    java_cross() {
        timeout 300 java -Duser.home="$WORK/java-home" -Drocketmq.client.logRoot="$WORK/java-logs" \
            -cp "$FERRUM_COMPAT_JAVA_CP" io.ferrum.compat.CrossCheck "$@"
    }
    T_JAVA=JavaCross
    create_topic "$T_JAVA"
    step "11. java -> go, ferrumctl, rust, java: Apache's Java client sends 100 messages"
    java_cross produce "$NAMESRV" "$T_JAVA" 100 cross "$WORK/java-sent.jsonl" >"$WORK/java-produce.log" 2>&1 ||
        { tail -20 "$WORK/java-produce.log" >&2; show_logs; fail "Java producer"; }
    "$GOC" canon -in "$WORK/java-sent.jsonl" -out "$WORK/java-sent.txt" >/dev/null
    "$GOC" consume -n "$NAMESRV" -t "$T_JAVA" -g GoReadsJava -count 100 -timeout 60s \
        -expect "$WORK/java-sent.txt" -out "$WORK/go-reads-java.txt" || { show_logs; fail "Go consumer of Java messages"; }
    printf '  ok: 100 Java messages identical in the Go consumer\n'
    timeout 60 "$CTL" -n "$NAMESRV" --json consume --from-beginning --count 100 -g CtlReadsJava "$T_JAVA" \
        >"$WORK/ctl-java.jsonl" 2>"$WORK/ctl-java.err" || { cat "$WORK/ctl-java.err" >&2; fail "ferrumctl consume of Java messages"; }
    "$GOC" canon -in "$WORK/ctl-java.jsonl" -expect "$WORK/java-sent.txt" -out "$WORK/ctl-java.txt" ||
        fail "ferrumctl read different messages than the Java producer sent"
    printf '  ok: 100 Java messages identical in ferrumctl consume\n'
    if [ -n "${FERRUM_COMPAT_RUST_CLIENT:-}" ]; then
        "$FERRUM_COMPAT_RUST_CLIENT" consume "$NAMESRV" "$T_JAVA" RustReadsJava 100 60 "$WORK/rust-java.jsonl" \
            >"$WORK/rust-java.log" 2>&1 || { tail -20 "$WORK/rust-java.log" >&2; show_logs; fail "Rust consumer of Java messages"; }
        "$GOC" canon -in "$WORK/rust-java.jsonl" -expect "$WORK/java-sent.txt" -out "$WORK/rust-java.txt" ||
            fail "the Rust consumer read different messages than the Java producer sent"
        printf '  ok: 100 Java messages identical in the Rust consumer\n'
    fi
    java_cross consume "$NAMESRV" "$T_JAVA" JavaReadsJava 100 60 "$WORK/java-java.jsonl" >"$WORK/java-java.log" 2>&1 ||
        { tail -20 "$WORK/java-java.log" >&2; show_logs; fail "Java consumer of Java messages"; }
    "$GOC" canon -in "$WORK/java-java.jsonl" -expect "$WORK/java-sent.txt" -out "$WORK/java-java.txt" ||
        fail "the Java consumer read different messages than the Java producer sent"
    printf '  ok: 100 Java messages identical in the Java consumer\n'

    step "12. go, ferrumctl, rust -> java: the Java push consumer reads what the others sent"
    # java_reads NAME TOPIC EXPECTED: a new Java group reads the whole topic.
    java_reads() {
        local n
        n=$(wc -l <"$3")
        java_cross consume "$NAMESRV" "$2" "JavaReads$1" "$n" 90 "$WORK/java-$1.jsonl" >"$WORK/java-$1.log" 2>&1 ||
            { tail -20 "$WORK/java-$1.log" >&2; show_logs; fail "Java consumer of $1 messages"; }
        "$GOC" canon -in "$WORK/java-$1.jsonl" -expect "$3" -out "$WORK/java-$1.txt" ||
            fail "the Java consumer read different messages than the $1 producer sent"
        printf '  ok: %s %s messages identical in the Java consumer\n' "$n" "$1"
    }
    cat "$WORK/go-sent.txt" "$WORK/more-sent.txt" >"$WORK/go-all-java.txt"
    java_reads Go "$T_GO" "$WORK/go-all-java.txt"
    java_reads Ctl "$T_CTL" "$WORK/ctl-sent.txt"
    if [ -n "${FERRUM_COMPAT_RUST_CLIENT:-}" ]; then
        java_reads Rust "$T_RUST" "$WORK/rust-sent.txt"
    fi
fi

step "13. ferrumctl -> ferrumctl: ferrumctl consume reads what ferrumctl sent"
CTL_ALL=$(wc -l <"$WORK/ctl-sent.txt")
timeout 60 "$CTL" -n "$NAMESRV" --json consume --from-beginning --count "$CTL_ALL" -g CtlReadsCtl "$T_CTL" \
    >"$WORK/ctl-ctl.jsonl" 2>"$WORK/ctl-ctl.err" || { cat "$WORK/ctl-ctl.err" >&2; fail "ferrumctl consume of ferrumctl messages"; }
"$GOC" canon -in "$WORK/ctl-ctl.jsonl" -expect "$WORK/ctl-sent.txt" -out "$WORK/ctl-ctl.txt" ||
    fail "ferrumctl consume read different messages than ferrumctl sent"
printf '  ok: %s ferrumctl messages identical in ferrumctl consume\n' "$CTL_ALL"

if [ -n "${FERRUM_COMPAT_RUST_CLIENT:-}" ]; then
    step "14. ferrumctl -> rust and rust -> ferrumctl"
    "$FERRUM_COMPAT_RUST_CLIENT" consume "$NAMESRV" "$T_CTL" RustReadsCtl "$CTL_ALL" 60 "$WORK/rust-ctl.jsonl" \
        >"$WORK/rust-ctl.log" 2>&1 || { tail -20 "$WORK/rust-ctl.log" >&2; show_logs; fail "Rust consumer of ferrumctl messages"; }
    "$GOC" canon -in "$WORK/rust-ctl.jsonl" -expect "$WORK/ctl-sent.txt" -out "$WORK/rust-ctl.txt" ||
        fail "the Rust consumer read different messages than ferrumctl sent"
    printf '  ok: %s ferrumctl messages identical in the Rust consumer\n' "$CTL_ALL"
    RUST_ALL=$(wc -l <"$WORK/rust-sent.txt")
    timeout 60 "$CTL" -n "$NAMESRV" --json consume --from-beginning --count "$RUST_ALL" -g CtlReadsRust "$T_RUST" \
        >"$WORK/ctl-rust.jsonl" 2>"$WORK/ctl-rust.err" || { cat "$WORK/ctl-rust.err" >&2; fail "ferrumctl consume of Rust messages"; }
    "$GOC" canon -in "$WORK/ctl-rust.jsonl" -expect "$WORK/rust-sent.txt" -out "$WORK/ctl-rust.txt" ||
        fail "ferrumctl read different messages than the Rust producer sent"
    printf '  ok: %s Rust messages identical in ferrumctl consume\n' "$RUST_ALL"
fi

if [ -n "${FERRUM_COMPAT_JAVA4_CP:-}" ]; then
    java4_cross() {
        timeout 300 java -Duser.home="$WORK/java4-home" -Drocketmq.client.logRoot="$WORK/java4-logs" \
            -cp "$FERRUM_COMPAT_JAVA4_CP" io.ferrum.compat.CrossCheck "$@"
    }
    # same_as NAME GOT.jsonl EXPECTED.txt: what a consumer wrote is what the producer sent.
    same_as() {
        "$GOC" canon -in "$2" -expect "$3" -out "$2.txt" || fail "$1 read different messages than were sent"
        printf '  ok: %s messages identical: %s\n' "$(wc -l <"$3")" "$1"
    }
    T_JAVA4=Java4Cross
    create_topic "$T_JAVA4"
    step "15. java 4.9 -> everyone: Apache's 4.9.x Java client sends 100 messages"
    java4_cross produce "$NAMESRV" "$T_JAVA4" 100 cross4 "$WORK/java4-sent.jsonl" >"$WORK/java4-produce.log" 2>&1 ||
        { tail -20 "$WORK/java4-produce.log" >&2; show_logs; fail "Java 4.9 producer"; }
    "$GOC" canon -in "$WORK/java4-sent.jsonl" -out "$WORK/java4-sent.txt" >/dev/null
    "$GOC" consume -n "$NAMESRV" -t "$T_JAVA4" -g GoReadsJava4 -count 100 -timeout 60s \
        -expect "$WORK/java4-sent.txt" -out "$WORK/go-reads-java4.txt" || { show_logs; fail "Go consumer of Java 4.9 messages"; }
    printf '  ok: 100 messages identical: java 4.9 -> go\n'
    timeout 60 "$CTL" -n "$NAMESRV" --json consume --from-beginning --count 100 -g CtlReadsJava4 "$T_JAVA4" \
        >"$WORK/ctl-java4.jsonl" 2>"$WORK/ctl-java4.err" || { cat "$WORK/ctl-java4.err" >&2; fail "ferrumctl consume of Java 4.9 messages"; }
    same_as "java 4.9 -> ferrumctl" "$WORK/ctl-java4.jsonl" "$WORK/java4-sent.txt"
    if [ -n "${FERRUM_COMPAT_RUST_CLIENT:-}" ]; then
        "$FERRUM_COMPAT_RUST_CLIENT" consume "$NAMESRV" "$T_JAVA4" RustReadsJava4 100 60 "$WORK/rust-java4.jsonl" \
            >"$WORK/rust-java4.log" 2>&1 || { tail -20 "$WORK/rust-java4.log" >&2; show_logs; fail "Rust consumer of Java 4.9 messages"; }
        same_as "java 4.9 -> rust" "$WORK/rust-java4.jsonl" "$WORK/java4-sent.txt"
    fi
    if [ -n "${FERRUM_COMPAT_JAVA_CP:-}" ]; then
        java_cross consume "$NAMESRV" "$T_JAVA4" JavaReadsJava4 100 90 "$WORK/java5-java4.jsonl" >"$WORK/java5-java4.log" 2>&1 ||
            { tail -20 "$WORK/java5-java4.log" >&2; show_logs; fail "Java 5.x consumer of Java 4.9 messages"; }
        same_as "java 4.9 -> java 5.x" "$WORK/java5-java4.jsonl" "$WORK/java4-sent.txt"
    fi

    step "15. everyone -> java 4.9: the 4.9.x Java push consumer reads what every producer sent"
    # java4_reads NAME TOPIC EXPECTED: a new 4.9.x group reads the whole topic.
    java4_reads() {
        java4_cross consume "$NAMESRV" "$2" "Java4Reads$1" "$(wc -l <"$3")" 90 "$WORK/java4-$1.jsonl" \
            >"$WORK/java4-$1.log" 2>&1 || { tail -20 "$WORK/java4-$1.log" >&2; show_logs; fail "Java 4.9 consumer of $1 messages"; }
        same_as "$1 -> java 4.9" "$WORK/java4-$1.jsonl" "$3"
    }
    java4_reads Java4 "$T_JAVA4" "$WORK/java4-sent.txt"
    cat "$WORK/go-sent.txt" "$WORK/more-sent.txt" >"$WORK/go-all-java4.txt"
    java4_reads Go "$T_GO" "$WORK/go-all-java4.txt"
    java4_reads Ctl "$T_CTL" "$WORK/ctl-sent.txt"
    if [ -n "${FERRUM_COMPAT_RUST_CLIENT:-}" ]; then
        java4_reads Rust "$T_RUST" "$WORK/rust-sent.txt"
    fi
    if [ -n "${FERRUM_COMPAT_JAVA_CP:-}" ]; then
        java4_reads Java5 "$T_JAVA" "$WORK/java-sent.txt"
    fi
fi

step "go-client compat: all scenarios passed"
