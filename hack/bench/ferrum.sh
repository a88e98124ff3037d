# Ferrum's side of `make bench`: sourced by hack/bench/run.sh, which provides free_port,
# track_pid, wait_for_line, $BENCH_CLUSTER, $BIN and the peer's $WORK and $DATA directories.
# Starts ferrum-namesrv + ferrum-broker and sets NAMESRV, NAMESRV_PID and BROKER_PID.

ferrum_start() {
    local ns_port broker_port
    ns_port=$(free_port)
    NAMESRV=127.0.0.1:$ns_port
    "$BIN/ferrum-namesrv" --listen "$NAMESRV" >"$WORK/namesrv.out" 2>&1 &
    NAMESRV_PID=$!
    track_pid "$NAMESRV_PID"
    wait_for_line "$WORK/namesrv.out" 'listening on' 30 "$NAMESRV_PID" || return 1
    [ "$BENCH_PHASES" = route ] && return 0

    broker_port=$(free_port)
    # The same keys and values apache.sh gives the Java broker, so both stores work alike.
    cat >"$WORK/broker.conf" <<CONF
brokerClusterName=$BENCH_CLUSTER
brokerName=bench-ferrum
brokerId=0
namesrvAddr=$NAMESRV
brokerIP1=127.0.0.1
listenPort=$broker_port
storePathRootDir=$DATA
storePathCommitLog=$DATA/commitlog
brokerRole=ASYNC_MASTER
flushDiskType=ASYNC_FLUSH
autoCreateTopicEnable=true
CONF
    RUST_LOG=${RUST_LOG:-warn} "$BIN/ferrum-broker" -c "$WORK/broker.conf" >"$WORK/broker.out" 2>&1 &
    BROKER_PID=$!
    track_pid "$BROKER_PID"
    wait_for_line "$WORK/broker.out" 'listening on' 60 "$BROKER_PID" || return 1
}
