# Apache RocketMQ's side of `make bench`: sourced by hack/bench/run.sh, which provides
# free_port, track_pid, wait_for_line, $BENCH_CLUSTER, $APACHE_CP (the classpath Maven resolved
# from hack/bench/pom.xml) and the peer's $WORK and $DATA directories.
# Starts Apache's NameServer + broker on Java 17 and sets NAMESRV, NAMESRV_PID and BROKER_PID.

APACHE_HEAP=${APACHE_HEAP:-1g}

# RocketMQ reaches into NIO internals (direct-buffer cleaning when mapped files are released);
# Java 17 refuses that without these.
APACHE_JVM_OPENS=(
    --add-opens=java.base/java.nio=ALL-UNNAMED
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens=java.base/java.lang=ALL-UNNAMED
    --add-exports=java.base/sun.nio.ch=ALL-UNNAMED
)

# A port whose neighbours are free too: the broker also binds listenPort-2 (VIP) and +1 (HA).
apache_port() {
    local port
    for _ in $(seq 1 50); do
        port=$(free_port)
        if ! (: <"/dev/tcp/127.0.0.1/$((port - 2))") 2>/dev/null &&
            ! (: <"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

apache_start() {
    local ns_port broker_port
    mkdir -p "$WORK/home"
    ns_port=$(free_port)
    NAMESRV=127.0.0.1:$ns_port
    printf 'listenPort=%s\n' "$ns_port" >"$WORK/namesrv.properties"
    ROCKETMQ_HOME="$WORK/home" java -server -Xms512m -Xmx512m -XX:+UseG1GC "${APACHE_JVM_OPENS[@]}" \
        -Duser.home="$WORK/home" -cp "$APACHE_CP" \
        org.apache.rocketmq.namesrv.NamesrvStartup -c "$WORK/namesrv.properties" >"$WORK/namesrv.out" 2>&1 &
    NAMESRV_PID=$!
    track_pid "$NAMESRV_PID"
    wait_for_line "$WORK/namesrv.out" 'boot success' 90 "$NAMESRV_PID" || return 1
    [ "$BENCH_PHASES" = route ] && return 0

    broker_port=$(apache_port) || return 1
    cat >"$WORK/broker.conf" <<CONF
brokerClusterName=$BENCH_CLUSTER
brokerName=bench-apache
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
    ROCKETMQ_HOME="$WORK/home" java -server -Xms"$APACHE_HEAP" -Xmx"$APACHE_HEAP" -XX:+UseG1GC \
        -XX:MaxDirectMemorySize="$APACHE_HEAP" "${APACHE_JVM_OPENS[@]}" \
        -Duser.home="$WORK/home" -cp "$APACHE_CP" \
        org.apache.rocketmq.broker.BrokerStartup -c "$WORK/broker.conf" >"$WORK/broker.out" 2>&1 &
    BROKER_PID=$!
    track_pid "$BROKER_PID"
    wait_for_line "$WORK/broker.out" 'boot success' 120 "$BROKER_PID" || return 1
}
