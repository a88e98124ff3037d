#!/usr/bin/env bash
# `make run`: a local NameServer and one broker (ASYNC_MASTER) with data under .data/.
# Ctrl-C stops both; the broker unregisters from the NameServer on the way out.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-$PWD/.data}
NAMESRV_PORT=${NAMESRV_PORT:-9876}
BROKER_PORT=${BROKER_PORT:-10911}

cargo build --release -q -p ferrum-namesrv -p ferrum-broker -p ferrum-client
mkdir -p "$DATA/broker-a"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

./target/release/ferrum-namesrv --listen "127.0.0.1:$NAMESRV_PORT" &
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
storePathRootDir=$DATA/broker-a/store
autoCreateTopicEnable=true
CONF
./target/release/ferrum-broker -c "$DATA/broker-a/broker.conf" &
pids+=($!)

cat <<MSG

Ferrum is running: NameServer 127.0.0.1:$NAMESRV_PORT, broker-a 127.0.0.1:$BROKER_PORT (data in $DATA).
In another shell:
  export FERRUM_NAMESRV=127.0.0.1:$NAMESRV_PORT
  ./target/release/ferrumctl topic create Hello
  ./target/release/ferrumctl message send Hello 'hello, ferrum' --keys greeting
  ./target/release/ferrumctl consume Hello --from-beginning --count 1
Ctrl-C stops both servers.
MSG
wait -n "${pids[@]}"
