#!/usr/bin/env bash
# `make run`: a local NameServer and one broker (ASYNC_MASTER) with data under .data/.
# Ctrl-C stops both; the broker unregisters from the NameServer on the way out.
#
# Settings (environment): DATA, NAMESRV_PORT, BROKER_PORT (the broker also takes BROKER_PORT - 2
# for old clients' VIP channel and BROKER_PORT + 1 for replication), METRICS_PORT (0 picks a
# free one) and BIN_DIR: a directory that already holds ferrum-namesrv, ferrum-broker and
# ferrumctl, skipping the release build (the smoke test runs this script on its debug build).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-$PWD/.data}
NAMESRV_PORT=${NAMESRV_PORT:-9876}
BROKER_PORT=${BROKER_PORT:-10911}
METRICS_PORT=${METRICS_PORT:-5557}

if [[ -n "${BIN_DIR:-}" ]]; then
  echo "using the binaries in $BIN_DIR"
else
  echo "building ferrum-namesrv, ferrum-broker and ferrumctl (release)"
  cargo build --release -q -p ferrum-namesrv -p ferrum-broker -p ferrum-client
  BIN_DIR=./target/release
fi
mkdir -p "$DATA/broker-a"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

"$BIN_DIR/ferrum-namesrv" --listen "127.0.0.1:$NAMESRV_PORT" &
pids+=($!)

cat > "$DATA/broker-a/broker.conf" <<CONF
brokerClusterName=DefaultCluster
brokerName=broker-a
brokerId=0
brokerRole=ASYNC_MASTER
flushDiskType=ASYNC_FLUSH
namesrvAddr=127.0.0.1:$NAMESRV_PORT
brokerIP1=127.0.0.1
listenPort=$BROKER_PORT
metricsPort=$METRICS_PORT
storePathRootDir=$DATA/broker-a/store
autoCreateTopicEnable=true
CONF
"$BIN_DIR/ferrum-broker" -c "$DATA/broker-a/broker.conf" &
pids+=($!)

cat <<MSG

Ferrum is running: NameServer 127.0.0.1:$NAMESRV_PORT, broker-a 127.0.0.1:$BROKER_PORT (data in $DATA).
In another shell:
  export FERRUM_NAMESRV=127.0.0.1:$NAMESRV_PORT
  $BIN_DIR/ferrumctl topic create Hello
  $BIN_DIR/ferrumctl message send Hello 'hello, ferrum' --keys greeting
  $BIN_DIR/ferrumctl consume Hello --from-beginning --count 1
Ctrl-C stops both servers.
MSG
wait -n "${pids[@]}"
