#!/usr/bin/env bash
# Installs what `make test`, `make compat` and the fuzz smoke need on a fresh machine. Idempotent:
# each step checks first. Heavy artefacts are cached under ~/.cache/ferrum/, keyed by version.
set -euo pipefail

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_apt+=(maven)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
# The control-plane harness builds Kubernetes from the Go module proxy; cargo-fuzz needs nightly.
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go
}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
echo "toolchain: $(cargo --version), $(java -version 2>&1 | head -1), $(mvn -v 2>/dev/null | head -1)"
