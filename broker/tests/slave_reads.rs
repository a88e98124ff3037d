//! Consumers carry on from the slave while the master is down, as real processes on 127.0.0.1:
//! a SYNC_MASTER and its slave, `ferrumctl consume --from-beginning` started only after the
//! master stopped answering. First the master is stopped (SIGSTOP: the NameServer still lists
//! it, its port accepts connections and nothing answers — like a master pod whose Service lost
//! its endpoints while its registration lives on), then killed (the NameServer drops it when
//! its connection closes). Each time a new group reads every acknowledged message.
//!
//! A slave whose reads are disabled (`slaveReadEnable=false`, RocketMQ's default) sends a
//! consumer back to the master without moving its offset, so nothing is skipped.
//!
//! ferrumctl is the sibling binary of the test's target directory (built when missing).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferrum_client::{Admin, Message, Producer, SendStatus};
use ferrum_protocol::route::TopicConfig;

use common::{
    Conn, Proc, eventually, request, sibling_binary, start_broker_with_sets, start_namesrv,
};
use ferrum_protocol::{RequestCode, ResponseCode};

const CLUSTER: &str = "SlaveReads";
const NAME: &str = "sr-a";
const TOPIC: &str = "SlaveReadTopic";
const MESSAGES: usize = 300;

fn start_broker(store: &Path, namesrv: &str, role: &str, id: i64) -> Proc {
    start_broker_reading(store, namesrv, role, id, true)
}

fn start_broker_reading(
    store: &Path,
    namesrv: &str,
    role: &str,
    id: i64,
    slave_read: bool,
) -> Proc {
    let sets = [
        "listenPort=0".to_owned(),
        "haListenPort=0".to_owned(),
        "metricsPort=0".to_owned(),
        "bindAddress=127.0.0.1".to_owned(),
        format!("storePathRootDir={}", store.display()),
        "mappedFileSizeCommitLog=1048576".to_owned(),
        format!("brokerName={NAME}"),
        format!("brokerClusterName={CLUSTER}"),
        format!("brokerRole={role}"),
        format!("brokerId={id}"),
        "registerNameServerPeriod=1000".to_owned(),
        "ferrumSlaveSyncInterval=300".to_owned(),
        format!("slaveReadEnable={slave_read}"),
    ];
    start_broker_with_sets(namesrv, &sets)
}

fn signal(proc: &Proc, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &proc.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {}", proc.child.id());
}

/// Runs `ferrumctl consume --from-beginning --count N --json` as group `group` (bounded by
/// `limit`) and returns the distinct message ids of the topic it printed.
async fn ferrumctl_consume(namesrv: &str, group: &str, limit: Duration) -> BTreeSet<String> {
    let ferrumctl = sibling_binary("ferrum-client", "ferrumctl");
    let mut cmd = tokio::process::Command::new(ferrumctl);
    cmd.args(["-n", namesrv, "--json", "consume", TOPIC, "-g", group])
        .args(["--from-beginning", "--count", &MESSAGES.to_string()])
        .env_remove("FERRUM_NAMESRV")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("ferrumctl consume as {group} ended within {limit:?}"))
        .expect("run ferrumctl");
    assert!(
        out.status.success(),
        "ferrumctl consume as {group}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["topic"] == TOPIC)
        .filter_map(|m| m["msg_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_read_from_the_slave_while_the_master_is_stopped_or_dead() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("scenario finishes in time");
}

async fn scenario() {
    let namesrv = start_namesrv();
    let master_dir = tempfile::tempdir().expect("tempdir");
    let slave_dir = tempfile::tempdir().expect("tempdir");
    let mut master = start_broker(master_dir.path(), &namesrv.addr, "SYNC_MASTER", 0);
    let slave = start_broker(slave_dir.path(), &namesrv.addr, "SLAVE", 1);
    let admin = Admin::new([namesrv.addr.as_str()]);
    let listed = |ids: &'static [i64]| {
        let admin = admin.clone();
        async move {
            admin.namesrv().cluster_info().await.is_ok_and(|info| {
                info.broker_addr_table
                    .get(NAME)
                    .is_some_and(|b| b.broker_addrs.keys().copied().eq(ids.iter().copied()))
            })
        }
    };
    assert!(
        eventually(Duration::from_secs(30), || listed(&[0, 1])).await,
        "master and slave registered"
    );
    admin
        .create_topic(&master.addr, &TopicConfig::new(TOPIC, 4))
        .await
        .expect("create the topic on the master");
    let on_slave = eventually(Duration::from_secs(30), || async {
        admin
            .topic_configs(&slave.addr)
            .await
            .is_ok_and(|t| t.topic_config_table.contains_key(TOPIC))
    })
    .await;
    assert!(on_slave, "the topic reached the slave");

    // SYNC_MASTER: every acknowledged message is on the slave.
    let producer = Producer::new([namesrv.addr.as_str()], "sr-producer");
    let mut acked = 0;
    for i in 0..MESSAGES {
        let sent = producer
            .send(TOPIC, Message::new(format!("m-{i}").into_bytes()))
            .await
            .expect("send to the master");
        assert_eq!(sent.status, SendStatus::SendOk);
        acked += 1;
    }
    assert_eq!(acked, MESSAGES);

    // Stopped: still in the route, its port accepts connections, nothing answers.
    signal(&master, "STOP");
    assert!(
        listed(&[0, 1]).await,
        "the NameServer still lists the stopped master"
    );
    let read = ferrumctl_consume(&namesrv.addr, "sr-while-stopped", Duration::from_secs(90)).await;
    assert_eq!(
        read.len(),
        MESSAGES,
        "a group started while the master is stopped read every acknowledged message"
    );

    // Dead: the NameServer drops it once its connection closes; only the slave is left.
    signal(&master, "CONT");
    master.kill();
    assert!(
        eventually(Duration::from_secs(30), || listed(&[1])).await,
        "the NameServer dropped the dead master"
    );
    let read = ferrumctl_consume(&namesrv.addr, "sr-while-dead", Duration::from_secs(90)).await;
    assert_eq!(
        read.len(),
        MESSAGES,
        "a group started while the master is dead read every acknowledged message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_that_may_not_serve_reads_never_moves_a_consumer_on() {
    tokio::time::timeout(Duration::from_secs(120), read_disabled())
        .await
        .expect("scenario finishes in time");
}

async fn read_disabled() {
    let namesrv = start_namesrv();
    let master_dir = tempfile::tempdir().expect("tempdir");
    let slave_dir = tempfile::tempdir().expect("tempdir");
    let master = start_broker_reading(master_dir.path(), &namesrv.addr, "SYNC_MASTER", 0, false);
    let slave = start_broker_reading(slave_dir.path(), &namesrv.addr, "SLAVE", 1, false);
    let admin = Admin::new([namesrv.addr.as_str()]);
    admin
        .create_topic(&master.addr, &TopicConfig::new(TOPIC, 1))
        .await
        .expect("create the topic on the master");
    let on_slave = eventually(Duration::from_secs(30), || async {
        admin
            .topic_configs(&slave.addr)
            .await
            .is_ok_and(|t| t.topic_config_table.contains_key(TOPIC))
    })
    .await;
    assert!(on_slave, "the topic reached the slave");
    let producer = Producer::new([namesrv.addr.as_str()], "sr-producer");
    for i in 0..10 {
        producer
            .send(TOPIC, Message::new(format!("m-{i}").into_bytes()))
            .await
            .expect("send to the master (SYNC_MASTER: on the slave too)");
    }
    let mut conn = Conn::open(&slave.addr).await;
    let answer = conn
        .call(request(
            RequestCode::PULL_MESSAGE,
            &[
                ("consumerGroup", "sr-disabled"),
                ("topic", TOPIC),
                ("queueId", "0"),
                ("queueOffset", "2"),
                ("maxMsgNums", "32"),
                ("sysFlag", "4"),
                ("commitOffset", "0"),
                ("suspendTimeoutMillis", "0"),
                ("subscription", "*"),
                ("subVersion", "0"),
                ("expressionType", "TAG"),
            ],
        ))
        .await;
    assert_eq!(answer.code, ResponseCode::PULL_RETRY_IMMEDIATELY.code());
    assert!(
        answer.body.is_empty(),
        "no messages from a read-disabled slave"
    );
    let field = |k: &str| answer.ext_fields.get(k).map(String::as_str);
    assert_eq!(
        field("suggestWhichBrokerId"),
        Some("0"),
        "sent to the master"
    );
    assert_eq!(
        field("nextBeginOffset"),
        Some("2"),
        "the consumer stays where it asked"
    );
    assert_eq!(field("maxOffset"), Some("10"));
}
