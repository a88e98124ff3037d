#!/usr/bin/env bash
# Store append/read throughput beside the raw sequential write bandwidth of the same filesystem.
# Usage: hack/bench/store.sh [dir] [total-mib]
# The key index line (INDEX_MESSAGES 1 KiB messages, each with a UNIQ_KEY) compares append
# throughput with messageIndexEnable off and on, and gives query-by-key latency;
# STORE_BENCH_INDEX_ONLY=1 runs only that.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${1:-$(mktemp -d)}"
MIB="${2:-512}"
mkdir -p "$DIR"
cargo build -q --release -p ferrum-store --example store_bench
BIN=target/release/examples/store_bench
cargo build -q --release -p ferrum-store --example index_bench
INDEX_BIN=target/release/examples/index_bench
INDEX_MESSAGES="${INDEX_MESSAGES:-300000}"

# Key index: the same 1 KiB messages with messageIndexEnable off, then on, twice; the first
# pair warms the filesystem up (the first run is always slower), the second pair is compared.
off_rate=""
for index in off on off on; do
  rm -rf "$DIR/store"
  out=$("$INDEX_BIN" "$DIR/store" "$INDEX_MESSAGES" "$index")
  echo "key index: $out"
  rate=$(echo "$out" | sed -E 's/.*append_msgs_s=([0-9.]+).*/\1/')
  if [ "$index" = off ]; then
    off_rate=$rate
  fi
done
echo "key index: append rate with the index on / off = $(awk -v a="$rate" -v b="$off_rate" 'BEGIN { printf "%.0f", 100 * a / b }')%"
rm -rf "$DIR/store"
if [ "${STORE_BENCH_INDEX_ONLY:-0}" = 1 ]; then
  exit 0
fi

raw=$(dd if=/dev/zero of="$DIR/dd.raw" bs=1M count="$MIB" conv=fdatasync 2>&1 | tail -1)
rm -f "$DIR/dd.raw"
# dd prints e.g. "536870912 bytes (537 MB, 512 MiB) copied, 1.2 s, 447 MB/s"
secs=$(echo "$raw" | sed -E 's/.* copied, ([0-9.]+) s.*/\1/')
raw_mib=$(awk -v m="$MIB" -v s="$secs" 'BEGIN { printf "%.1f", m / s }')
echo "raw dd conv=fdatasync: ${raw_mib} MiB/s ($raw)"

for size in 128 1024 16384; do
  for mode in async sync; do
    writers=1
    [ "$mode" = sync ] && writers=32
    total=$MIB
    # Sync appends of small messages are bounded by fsync latency; keep their runs short.
    [ "$mode" = sync ] && total=$(( MIB / 8 ))
    rm -rf "$DIR/store"
    out=$("$BIN" "$DIR/store" "$size" "$total" "$mode" "$writers")
    append=$(echo "$out" | sed -E 's/.*append_mib_s=([0-9.]+).*/\1/')
    ratio=$(awk -v a="$append" -v r="$raw_mib" 'BEGIN { printf "%.0f", 100 * a / r }')
    echo "size=$size mode=$mode writers=$writers $out append/raw=${ratio}%"
  done
done
rm -rf "$DIR/store"
