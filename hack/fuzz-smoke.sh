#!/usr/bin/env bash
# Fuzz smoke test: runs every cargo-fuzz target of fuzz/ for FUZZ_SECONDS (default 60) each and
# fails if any target finds a crash. Needs a nightly toolchain (cargo-fuzz builds with sanitizer
# flags that stable refuses); set FUZZ_TOOLCHAIN to pick another, or FUZZ_TOOLCHAIN=stable to try
# RUSTC_BOOTSTRAP=1 on a stable compiler.
set -euo pipefail

cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
FUZZ_MAX_LEN="${FUZZ_MAX_LEN:-65536}"
CARGO_FUZZ_VERSION="${CARGO_FUZZ_VERSION:-0.13.2}"

# Installed once per cache: CI caches ~/.cargo/bin, so this is a no-op after the first run.
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz ${CARGO_FUZZ_VERSION}"
    cargo install cargo-fuzz --locked --version "${CARGO_FUZZ_VERSION}"
fi

toolchain_args=("+${FUZZ_TOOLCHAIN}")
if [[ "${FUZZ_TOOLCHAIN}" == stable ]]; then
    export RUSTC_BOOTSTRAP=1
fi

targets=$(cd fuzz && cargo "${toolchain_args[@]}" fuzz list)
if [[ -z "${targets}" ]]; then
    echo "fuzz-smoke: no fuzz targets found" >&2
    exit 1
fi

status=0
for target in ${targets}; do
    echo "fuzz-smoke: ${target} for ${FUZZ_SECONDS}s"
    mkdir -p "fuzz/corpus/${target}"
    if ! (cd fuzz && cargo "${toolchain_args[@]}" fuzz run "${target}" -- \
        -max_total_time="${FUZZ_SECONDS}" \
        -max_len="${FUZZ_MAX_LEN}" \
        -rss_limit_mb=2048 \
        -timeout=10 \
        -print_final_stats=1); then
        echo "fuzz-smoke: ${target} FAILED; the crashing input is under fuzz/artifacts/${target}/" >&2
        status=1
    fi
done
exit "${status}"
