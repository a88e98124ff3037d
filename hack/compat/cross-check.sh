#!/usr/bin/env bash
# The whole cross-client byte-identity matrix: Apache's Java client (rocketmq-client 5.x and
# 4.9.x from Maven Central), rocketmq-client-go v2, rocketmq-client-rust and ferrumctl each
# produce, and each consumes what the others sent, with identical keys, tags, user properties
# and bodies. Resolves and compiles hack/compat/java-client against both Java clients, builds
# hack/compat/rust-client, then runs go-client.sh (which starts ferrum-namesrv + ferrum-broker)
# with the Java and Rust scenarios on.
#
#   producer \ consumer   go   ferrumctl   rust   java 5.x   java 4.9   (go-client.sh scenario)
#   go                    1    3           10     12         15
#   ferrumctl             2    13          14     12         15
#   rust                  9    14          9      12         15
#   java 5.x              11   11          11     11         15
#   java 4.9              15   15          15     15         15
#
# Environment: ROCKETMQ_CLIENT_VERSION (default: the pom's 5.x), FERRUM_M2 (default
# ~/.cache/ferrum/m2), FERRUM_COMPAT_RUST=0 leaves the Rust client out, FERRUM_COMPAT_CLIENT4=0
# the 4.9.x Java client, and everything rust-client.sh and go-client.sh read.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
M2=${FERRUM_M2:-$HOME/.cache/ferrum/m2}
PROJECT=$ROOT/hack/compat/java-client
CARGO=${CARGO:-cargo}
RUST_TARGET=${FERRUM_RUST_CLIENT_TARGET:-$HOME/.cache/ferrum/rust-client-target}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
command -v javac >/dev/null || fail "javac (17+) is not installed"
command -v mvn >/dev/null || fail "mvn is not installed"

# java_classpath NAME MAVEN_ARGS...: resolves rocketmq-client, compiles hack/compat/java-client
# against it into $WORK/NAME and prints the classpath to run the classes with.
java_classpath() {
    local name=$1
    shift
    mkdir -p "$WORK/$name/classes"
    mvn -q -B -f "$PROJECT/pom.xml" -Dmaven.repo.local="$M2" "$@" \
        dependency:build-classpath -Dmdep.outputFile="$WORK/$name/deps" >"$WORK/$name/mvn.log" 2>&1 ||
        { cat "$WORK/$name/mvn.log" >&2; fail "Maven could not resolve rocketmq-client ($name)"; }
    javac -d "$WORK/$name/classes" -cp "$(cat "$WORK/$name/deps")" \
        "$PROJECT"/src/main/java/io/ferrum/compat/*.java ||
        fail "hack/compat/java-client does not compile against rocketmq-client ($name)"
    printf '  %s\n' "$(tr ':' '\n' <"$WORK/$name/deps" | grep -o 'rocketmq-client-[0-9][^/]*\.jar')" >&2
    printf '%s:%s' "$WORK/$name/classes" "$(cat "$WORK/$name/deps")"
}

mkdir -p "$M2"
printf '==> resolving rocketmq-client with Maven (cache: %s) and compiling hack/compat/java-client\n' "$M2"
VERSION_ARGS=()
[ -n "${ROCKETMQ_CLIENT_VERSION:-}" ] && VERSION_ARGS+=("-Drocketmq.client.version=$ROCKETMQ_CLIENT_VERSION")
FERRUM_COMPAT_JAVA_CP=$(java_classpath client5 "${VERSION_ARGS[@]}")
export FERRUM_COMPAT_JAVA_CP
if [ "${FERRUM_COMPAT_CLIENT4:-1}" != 0 ]; then
    printf '==> resolving the 4.9.x client (pom profile rocketmq4) and compiling against it\n'
    FERRUM_COMPAT_JAVA4_CP=$(java_classpath client4 -P rocketmq4)
    export FERRUM_COMPAT_JAVA4_CP
fi

if [ "${FERRUM_COMPAT_RUST:-1}" != 0 ]; then
    printf '==> building hack/compat/rust-client (rocketmq-client-rust) into %s\n' "$RUST_TARGET"
    (cd "$ROOT/hack/compat/rust-client" && CARGO_TARGET_DIR="$RUST_TARGET" nice -n 19 "$CARGO" build --quiet)
    export FERRUM_COMPAT_RUST_CLIENT="$RUST_TARGET/debug/ferrum-compat-rust-client"
fi

bash "$ROOT/hack/compat/go-client.sh"
