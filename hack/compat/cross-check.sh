#!/usr/bin/env bash
# The whole cross-client byte-identity matrix: Apache's Java client (rocketmq-client 5.x from
# Maven Central), rocketmq-client-go v2, rocketmq-client-rust and ferrumctl each produce, and
# each consumes what the others sent, with identical keys, tags, user properties and bodies.
# Resolves and compiles hack/compat/java-client, builds hack/compat/rust-client, then runs
# go-client.sh (which starts ferrum-namesrv + ferrum-broker) with the Java and Rust scenarios on.
#
# Environment: ROCKETMQ_CLIENT_VERSION (default: the pom's 5.x), FERRUM_M2 (default
# ~/.cache/ferrum/m2), FERRUM_COMPAT_RUST=0 leaves the Rust client out, and everything
# rust-client.sh and go-client.sh read.
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

printf '==> resolving rocketmq-client with Maven (cache: %s) and compiling hack/compat/java-client\n' "$M2"
mkdir -p "$M2" "$WORK/classes"
VERSION_ARGS=()
[ -n "${ROCKETMQ_CLIENT_VERSION:-}" ] && VERSION_ARGS+=("-Drocketmq.client.version=$ROCKETMQ_CLIENT_VERSION")
mvn -q -B -f "$PROJECT/pom.xml" -Dmaven.repo.local="$M2" "${VERSION_ARGS[@]}" \
    dependency:build-classpath -Dmdep.outputFile="$WORK/deps" >"$WORK/mvn.log" 2>&1 ||
    { cat "$WORK/mvn.log" >&2; fail "Maven could not resolve rocketmq-client"; }
javac -d "$WORK/classes" -cp "$(cat "$WORK/deps")" "$PROJECT"/src/main/java/io/ferrum/compat/*.java ||
    fail "hack/compat/java-client does not compile against rocketmq-client"
printf '  %s\n' "$(tr ':' '\n' <"$WORK/deps" | grep -o 'rocketmq-client-[^/]*\.jar')"
export FERRUM_COMPAT_JAVA_CP="$WORK/classes:$(cat "$WORK/deps")"

if [ "${FERRUM_COMPAT_RUST:-1}" != 0 ]; then
    printf '==> building hack/compat/rust-client (rocketmq-client-rust) into %s\n' "$RUST_TARGET"
    (cd "$ROOT/hack/compat/rust-client" && CARGO_TARGET_DIR="$RUST_TARGET" nice -n 19 "$CARGO" build --quiet)
    export FERRUM_COMPAT_RUST_CLIENT="$RUST_TARGET/debug/ferrum-compat-rust-client"
fi

bash "$ROOT/hack/compat/go-client.sh"
