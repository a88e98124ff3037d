#!/usr/bin/env bash
# Real-client compatibility with rocketmq-client-rust (crate registry): builds the program in
# hack/compat/rust-client (its own target directory, at low priority, since the client's
# dependency tree is large), then runs go-client.sh with the Rust scenarios switched on.
#
# Environment: FERRUM_RUST_CLIENT_TARGET (default ~/.cache/ferrum/rust-client-target), CARGO,
# and everything go-client.sh reads.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CARGO=${CARGO:-cargo}
TARGET=${FERRUM_RUST_CLIENT_TARGET:-$HOME/.cache/ferrum/rust-client-target}

printf '==> building hack/compat/rust-client (rocketmq-client-rust) into %s\n' "$TARGET"
(cd "$ROOT/hack/compat/rust-client" && CARGO_TARGET_DIR="$TARGET" nice -n 19 "$CARGO" build --quiet)

FERRUM_COMPAT_RUST_CLIENT="$TARGET/debug/ferrum-compat-rust-client" exec bash "$ROOT/hack/compat/go-client.sh"
