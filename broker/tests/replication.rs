//! Master–slave replication with real ferrum-namesrv, ferrum-broker and ferrumctl processes on
//! 127.0.0.1: catch-up from 0 and from mid-stream with identical CommitLog bytes and consume
//! queues, SYNC_MASTER acknowledgements, strangers on the HA port, promotion without restart
//! and an old master that returns, becomes a slave and truncates its unreplicated tail; a master
//! stopped (as if partitioned) while its slave is promoted, which demotes itself on resuming.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ferrum_broker::ha::codec::{self, HandshakeFrame, Hello};
use ferrum_client::{Admin, Message, MessageQueue, Producer, SendStatus};
use ferrum_protocol::replica::BrokerReplicaStatus;
use ferrum_protocol::route::TopicConfig;

use common::{sibling_binary, spawn_reading_lines};

const STEP: Duration = Duration::from_secs(20);
const CLUSTER: &str = "HaCluster";
const GROUP: &str = "broker-ha";
const TOPIC: &str = "HaTopic";
const QUEUES: i32 = 4;
const SECRET: &str = "test-secret";
/// Small CommitLog files, so catch-up crosses file boundaries (BLANK padding included).
const FILE_SIZE: u64 = 64 * 1024;

/// A child process killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    addr: String,
    /// A broker's metrics endpoint (host:port).
    metrics: Option<String>,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_reading_first_line(cmd: Command) -> (Child, String) {
    let (child, line, _) = spawn_reading_lines(cmd, STEP);
    (child, line)
}

fn start_namesrv() -> Proc {
    let mut cmd = Command::new(sibling_binary("ferrum-namesrv", "ferrum-namesrv"));
    cmd.args(["--listen", "127.0.0.1:0"]);
    let (child, line) = spawn_reading_first_line(cmd);
    let addr = line
        .rsplit(' ')
        .next()
        .expect("address at the end of the line")
        .to_owned();
    Proc {
        child,
        addr,
        metrics: None,
    }
}

/// Starts a broker of the test group; `role` and `id` as in broker.conf, `extra` more keys.
fn start_broker(store: &Path, namesrv: &str, role: &str, id: i64, extra: &[&str]) -> Proc {
    let mut cmd = common::broker_command();
    cmd.args(["-n", namesrv]);
    let mut sets = vec![
        "listenPort=0".to_owned(),
        "haListenPort=0".to_owned(),
        "bindAddress=127.0.0.1".to_owned(),
        format!("storePathRootDir={}", store.display()),
        format!("mappedFileSizeCommitLog={FILE_SIZE}"),
        format!("brokerName={GROUP}"),
        format!("brokerClusterName={CLUSTER}"),
        format!("brokerRole={role}"),
        format!("brokerId={id}"),
        "haSendHeartbeatInterval=500".to_owned(),
        "syncFlushTimeout=3000".to_owned(),
        "metricsPort=0".to_owned(),
    ];
    sets.extend(extra.iter().map(|s| (*s).to_owned()));
    if !extra.iter().any(|s| s.starts_with("haSecret=")) {
        sets.push(format!("haSecret={SECRET}"));
    }
    for set in sets {
        cmd.args(["--set", &set]);
    }
    let (child, line, rx) = spawn_reading_lines(cmd, STEP);
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("address in the start line")
        .to_owned();
    let metrics = rx
        .recv_timeout(STEP)
        .ok()
        .and_then(|l| l.split("metrics on http://").nth(1).map(str::to_owned))
        .and_then(|rest| rest.split('/').next().map(str::to_owned));
    Proc {
        child,
        addr,
        metrics,
    }
}

/// One scrape of a broker's /metrics over plain HTTP/1.0.
async fn metrics_text(proc: &Proc) -> String {
    let addr = proc.metrics.clone().expect("metrics endpoint");
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).expect("connect to metrics");
        stream.set_read_timeout(Some(STEP)).expect("read timeout");
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("response");
        text
    })
    .await
    .expect("scrape task")
}

async fn status(admin: &Admin, addr: &str) -> BrokerReplicaStatus {
    admin
        .broker_replica_status(addr)
        .await
        .expect("replica status")
}

/// Polls `check` every 100 ms until it holds or STEP passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STEP;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn wait_caught_up(admin: &Admin, master: &str, slave: &str) {
    eventually("the slave holds everything the master has", || async {
        let m = status(admin, master).await;
        let s = status(admin, slave).await;
        s.max_phy_offset == m.max_phy_offset && m.max_phy_offset > 0
    })
    .await;
}

/// CommitLog bytes `[from, to)` read from a store's files (mapped files are read through the
/// page cache, so what a running broker wrote is visible).
fn commit_log_bytes(store: &Path, from: i64, to: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let file_start = at - at % FILE_SIZE as i64;
        let path = store.join("commitlog").join(format!("{file_start:020}"));
        let mut file = std::fs::File::open(&path).expect("commit log file");
        let mut buf = vec![0u8; FILE_SIZE as usize];
        file.read_exact(&mut buf).expect("read whole mapped file");
        let end = to.min(file_start + FILE_SIZE as i64);
        out.extend_from_slice(&buf[(at - file_start) as usize..(end - file_start) as usize]);
        at = end;
    }
    out
}

/// Same CommitLog bytes over the slave's whole range and the same consume-queue max offsets.
async fn assert_identical(admin: &Admin, master: (&str, &Path), slave: (&str, &Path)) {
    let m = status(admin, master.0).await;
    let s = status(admin, slave.0).await;
    assert_eq!(m.max_phy_offset, s.max_phy_offset);
    let from = m.min_phy_offset.max(s.min_phy_offset);
    assert!(
        commit_log_bytes(master.1, from, m.max_phy_offset)
            == commit_log_bytes(slave.1, from, s.max_phy_offset),
        "CommitLog bytes differ between master and slave in [{from}, {})",
        m.max_phy_offset
    );
    for queue_id in 0..QUEUES {
        let mq = MessageQueue {
            topic: TOPIC.to_owned(),
            broker_name: GROUP.to_owned(),
            queue_id,
        };
        let on_master = admin
            .max_offset(master.0, &mq)
            .await
            .expect("master offset");
        let on_slave = admin.max_offset(slave.0, &mq).await.expect("slave offset");
        assert_eq!(on_master, on_slave, "consume queue {queue_id} differs");
    }
}

async fn create_topic(admin: &Admin, master: &str) {
    admin
        .create_topic(master, &TopicConfig::new(TOPIC, QUEUES))
        .await
        .expect("create topic");
}

async fn wait_route(admin: &Admin) {
    eventually("the topic route is published", || async {
        admin.namesrv().topic_route(TOPIC).await.is_ok()
    })
    .await;
}

async fn send_n(producer: &Producer, n: usize, tag: &str) -> Vec<SendStatus> {
    let mut statuses = Vec::new();
    for i in 0..n {
        // ~600 bytes each, so 64 KiB files roll over every ~100 messages.
        let body = format!("{tag}-{i}-{}", "x".repeat(600));
        let result = producer
            .send(TOPIC, Message::new(body))
            .await
            .expect("send answered");
        statuses.push(result.status);
    }
    statuses
}

/// A stranger speaks the handshake with a wrong secret, then raw DefaultHA reports: the master
/// refuses it and closes, and nothing it says is counted.
fn stranger_attempt(ha_addr: &str) -> String {
    let mut stream = TcpStream::connect(ha_addr).expect("connect to the HA port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut prefix = [0u8; codec::PREFIX_LEN];
    stream.read_exact(&mut prefix).expect("challenge prefix");
    let (kind, len) = codec::decode_prefix(&prefix).expect("challenge prefix decodes");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).expect("challenge body");
    let HandshakeFrame::Challenge(challenge) =
        codec::decode_body(kind, &body).expect("challenge decodes")
    else {
        panic!("first frame is a challenge");
    };
    let mut hello = Hello {
        version: codec::HA_PROTOCOL_VERSION,
        cluster_name: CLUSTER.into(),
        broker_name: GROUP.into(),
        broker_id: 7,
        last_epoch: 1,
        last_epoch_start_offset: 0,
        max_offset: i64::MAX / 2,
        mac: [0; codec::MAC_LEN],
    };
    hello.mac = codec::hello_mac(b"wrong-secret", &challenge.nonce, &hello);
    stream
        .write_all(&codec::encode_handshake(&HandshakeFrame::Hello(hello)))
        .expect("send hello");
    // Reports a huge offset as a DefaultHA slave would; the master must not count it.
    for _ in 0..10 {
        let _ = stream.write_all(&codec::encode_report(i64::MAX / 2));
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    match codec::decode_handshake(&answer) {
        Ok(HandshakeFrame::Reject { reason }) => reason,
        other => panic!("expected a REJECT and a close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_slave_catch_up_and_strangers() {
    tokio::time::timeout(Duration::from_secs(240), sync_scenario())
        .await
        .expect("scenario finishes in time");
}

async fn sync_scenario() {
    let namesrv = start_namesrv();
    let master_dir = tempfile::tempdir().expect("tempdir");
    let slave_dir = tempfile::tempdir().expect("tempdir");
    let master = start_broker(master_dir.path(), &namesrv.addr, "SYNC_MASTER", 0, &[]);
    let admin = Admin::new([namesrv.addr.as_str()]);
    create_topic(&admin, &master.addr).await;
    wait_route(&admin).await;
    let producer = Producer::new([namesrv.addr.as_str()], "ha-producer");

    // No slave: stored, but not acknowledged as replicated.
    let statuses = send_n(&producer, 150, "before-slave").await;
    assert!(
        statuses.iter().all(|s| *s == SendStatus::SlaveNotAvailable),
        "SYNC_MASTER without a slave answers SLAVE_NOT_AVAILABLE: {statuses:?}"
    );
    let m = status(&admin, &master.addr).await;
    assert_eq!(m.epoch, 1, "a fresh master opens epoch 1");
    assert!(m.max_phy_offset > FILE_SIZE as i64, "several files written");

    // A stranger with the wrong secret is refused and cannot make a send succeed.
    let reason = stranger_attempt(&m.ha_server_addr);
    assert!(reason.contains("MAC"), "refusal names the MAC: {reason}");
    assert!(status(&admin, &master.addr).await.slaves.is_empty());
    assert_eq!(
        send_n(&producer, 1, "stranger").await,
        vec![SendStatus::SlaveNotAvailable]
    );
    // A broker of the group with the wrong secret does not count either.
    let wrong_dir = tempfile::tempdir().expect("tempdir");
    let wrong = start_broker(
        wrong_dir.path(),
        &namesrv.addr,
        "SLAVE",
        2,
        &["haSecret=not-the-secret"],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(status(&admin, &master.addr).await.slaves.is_empty());
    assert_eq!(status(&admin, &wrong.addr).await.max_phy_offset, 0);
    assert_eq!(
        send_n(&producer, 1, "wrong-secret").await,
        vec![SendStatus::SlaveNotAvailable]
    );
    drop(wrong);

    // A slave catches up from 0, across file boundaries.
    let mut slave = start_broker(slave_dir.path(), &namesrv.addr, "SLAVE", 1, &[]);
    wait_caught_up(&admin, &master.addr, &slave.addr).await;
    assert_identical(
        &admin,
        (&master.addr, master_dir.path()),
        (&slave.addr, slave_dir.path()),
    )
    .await;
    let m = status(&admin, &master.addr).await;
    assert_eq!(m.slaves.len(), 1, "one authenticated slave: {m:?}");
    assert_eq!(m.slaves[0].broker_id, 1);
    let s = status(&admin, &slave.addr).await;
    assert_eq!((s.role.as_str(), s.epoch), ("SLAVE", 1));
    assert_eq!(s.master_addr.as_deref(), Some(master.addr.as_str()));
    // While its master is live, a slave refuses to be promoted.
    let out = ferrumctl(&namesrv.addr, &["broker", "promote", "-b", &slave.addr]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is live in epoch 1"), "{stderr}");
    assert_eq!(status(&admin, &slave.addr).await.role, "SLAVE");

    // With the slave up, SYNC_MASTER acknowledges, and the slave holds the message.
    let statuses = send_n(&producer, 20, "with-slave").await;
    assert!(
        statuses.iter().all(|s| *s == SendStatus::SendOk),
        "{statuses:?}"
    );
    let acked_max = status(&admin, &master.addr).await.max_phy_offset;
    assert!(status(&admin, &slave.addr).await.max_phy_offset >= acked_max);

    // Slave down: SLAVE_NOT_AVAILABLE again.
    slave.kill();
    eventually("the master drops the dead slave", || async {
        status(&admin, &master.addr).await.slaves.is_empty()
    })
    .await;
    let statuses = send_n(&producer, 150, "slave-down").await;
    assert!(
        statuses.iter().all(|s| *s == SendStatus::SlaveNotAvailable),
        "{statuses:?}"
    );

    // The same slave restarts and catches up from mid-stream.
    let slave = start_broker(slave_dir.path(), &namesrv.addr, "SLAVE", 1, &[]);
    wait_caught_up(&admin, &master.addr, &slave.addr).await;
    assert_identical(
        &admin,
        (&master.addr, master_dir.path()),
        (&slave.addr, slave_dir.path()),
    )
    .await;
    assert_eq!(
        send_n(&producer, 1, "after-restart").await,
        vec![SendStatus::SendOk]
    );
    assert_eq!(status(&admin, &slave.addr).await.truncated_messages, 0);
}

fn ferrumctl(namesrv: &str, args: &[&str]) -> std::process::Output {
    Command::new(sibling_binary("ferrum-client", "ferrumctl"))
        .args(["-n", namesrv])
        .args(args)
        .output()
        .expect("run ferrumctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_then_old_master_rejoins_and_truncates() {
    tokio::time::timeout(Duration::from_secs(240), promote_scenario())
        .await
        .expect("scenario finishes in time");
}

async fn promote_scenario() {
    let namesrv = start_namesrv();
    let a_dir = tempfile::tempdir().expect("tempdir");
    let b_dir = tempfile::tempdir().expect("tempdir");
    let mut a = start_broker(a_dir.path(), &namesrv.addr, "ASYNC_MASTER", 0, &[]);
    let admin = Admin::new([namesrv.addr.as_str()]);
    create_topic(&admin, &a.addr).await;
    wait_route(&admin).await;
    let mut b = start_broker(b_dir.path(), &namesrv.addr, "SLAVE", 1, &[]);
    let producer = Producer::new([namesrv.addr.as_str()], "ha-producer");
    let statuses = send_n(&producer, 120, "replicated").await;
    assert!(statuses.iter().all(|s| *s == SendStatus::SendOk));
    wait_caught_up(&admin, &a.addr, &b.addr).await;

    // The slave goes away; the ASYNC_MASTER acknowledges 7 messages nobody replicates; then
    // the master dies too.
    b.kill();
    eventually("the master drops the dead slave", || async {
        status(&admin, &a.addr).await.slaves.is_empty()
    })
    .await;
    let statuses = send_n(&producer, 7, "unreplicated").await;
    assert!(statuses.iter().all(|s| *s == SendStatus::SendOk));
    let a_max = status(&admin, &a.addr).await.max_phy_offset;
    a.kill();

    // The slave comes back with no master to follow, and is promoted by hand.
    let b = start_broker(b_dir.path(), &namesrv.addr, "SLAVE", 1, &[]);
    let before = status(&admin, &b.addr).await;
    assert!(before.max_phy_offset < a_max);
    let promoted_at = Instant::now();
    let out = ferrumctl(&namesrv.addr, &["broker", "promote", "-b", &b.addr]);
    assert!(
        out.status.success(),
        "promote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ASYNC_MASTER") && text.contains("epoch=2"),
        "{text}"
    );
    // A producer resumes on the new master.
    let fresh = Producer::new([namesrv.addr.as_str()], "ha-producer-2");
    let mut first_ok = None;
    while promoted_at.elapsed() < STEP {
        if let Ok(r) = fresh.send(TOPIC, Message::new("after-promote")).await
            && r.status == SendStatus::SendOk
        {
            assert_eq!(r.broker_addr, b.addr);
            first_ok = Some(promoted_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_ok = first_ok.expect("a send succeeds on the promoted master");
    eprintln!(
        "promote → first successful send: {} ms",
        first_ok.as_millis()
    );
    let statuses = send_n(&fresh, 10, "epoch-2").await;
    assert!(statuses.iter().all(|s| *s == SendStatus::SendOk));
    let s = status(&admin, &b.addr).await;
    assert_eq!(
        (s.role.as_str(), s.broker_id, s.epoch),
        ("ASYNC_MASTER", 0, 2)
    );
    assert_eq!(s.epoch_start_offset, before.max_phy_offset);
    // Promoting again is refused: it is a master now.
    let again = ferrumctl(&namesrv.addr, &["broker", "promote", "-b", &b.addr]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("only a slave can be promoted"));

    // The old master returns as configured (ASYNC_MASTER, id 0): it finds epoch 2, becomes a
    // slave, truncates its 7 unreplicated messages and replicates.
    let a = start_broker(a_dir.path(), &namesrv.addr, "ASYNC_MASTER", 0, &[]);
    wait_caught_up(&admin, &b.addr, &a.addr).await;
    let old = status(&admin, &a.addr).await;
    assert_eq!(old.role, "SLAVE");
    assert_eq!(old.broker_id, 1);
    assert_eq!(old.epoch, 2);
    assert_eq!(old.truncated_messages, 7, "{old:?}");
    assert_eq!(old.truncated_bytes as i64, a_max - before.max_phy_offset);
    assert_identical(&admin, (&b.addr, b_dir.path()), (&a.addr, a_dir.path())).await;
    let out = ferrumctl(&namesrv.addr, &["broker", "status"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("truncated=7 msgs"), "{text}");
    assert!(text.contains("slave id=1"), "{text}");
    // The NameServer lists the new master as id 0 and the old one as id 1.
    let info = admin.namesrv().cluster_info().await.expect("cluster info");
    let members = &info.broker_addr_table[GROUP].broker_addrs;
    assert_eq!(members.get(&0), Some(&b.addr));
    assert_eq!(members.get(&1), Some(&a.addr));
}

/// SIGSTOP / SIGCONT through kill(1): a stopped process keeps its sockets, which is what a
/// partition looks like to its peers.
fn signal(proc: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &proc.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {sig}");
}

/// A raw SEND_MESSAGE straight to `addr`, bypassing the route: what a producer holding a stale
/// route does.
async fn send_direct(addr: &str) -> ferrum_protocol::RemotingCommand {
    use ferrum_protocol::headers::SendMessageRequestHeader;
    let header = SendMessageRequestHeader {
        producer_group: "stale-route".to_owned(),
        topic: TOPIC.to_owned(),
        default_topic: "TBW102".to_owned(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        born_timestamp: 1,
        broker_name: Some(GROUP.to_owned()),
        ..Default::default()
    };
    let request = ferrum_protocol::RemotingCommand::request(
        ferrum_protocol::RequestCode::SEND_MESSAGE,
        &header,
    )
    .with_body(b"after-demotion".to_vec());
    let conn = ferrum_client::Connection::connect(addr)
        .await
        .expect("connect");
    conn.invoke(request, Duration::from_secs(5))
        .await
        .expect("answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_master_demotes_itself_on_return() {
    tokio::time::timeout(Duration::from_secs(240), split_brain_scenario())
        .await
        .expect("scenario finishes in time");
}

/// Master A runs on while the slave B is promoted (A is stopped, as if partitioned, so B's
/// live-master check gets no answer). When A resumes it is a second brokerId-0 of the group in
/// an older epoch: it must step down within a registration period, refuse sends, truncate the
/// messages nobody replicated and follow B, leaving one master in the route.
async fn split_brain_scenario() {
    let namesrv = start_namesrv();
    let a_dir = tempfile::tempdir().expect("tempdir");
    let b_dir = tempfile::tempdir().expect("tempdir");
    let period = "registerNameServerPeriod=1000";
    let a = start_broker(a_dir.path(), &namesrv.addr, "ASYNC_MASTER", 0, &[period]);
    let admin = Admin::new([namesrv.addr.as_str()]);
    create_topic(&admin, &a.addr).await;
    wait_route(&admin).await;
    let mut b = start_broker(b_dir.path(), &namesrv.addr, "SLAVE", 1, &[period]);
    let producer = Producer::new([namesrv.addr.as_str()], "ha-producer");
    let statuses = send_n(&producer, 60, "replicated").await;
    assert!(statuses.iter().all(|s| *s == SendStatus::SendOk));
    wait_caught_up(&admin, &a.addr, &b.addr).await;

    // B goes away; A acknowledges 5 messages nobody replicates, then A is cut off (stopped).
    b.kill();
    eventually("the master drops the dead slave", || async {
        status(&admin, &a.addr).await.slaves.is_empty()
    })
    .await;
    let statuses = send_n(&producer, 5, "unreplicated").await;
    assert!(statuses.iter().all(|s| *s == SendStatus::SendOk));
    let a_before = status(&admin, &a.addr).await;
    signal(&a, "-STOP");

    // B returns and is promoted while A cannot answer.
    let b = start_broker(b_dir.path(), &namesrv.addr, "SLAVE", 1, &[period]);
    let out = ferrumctl(&namesrv.addr, &["broker", "promote", "-b", &b.addr]);
    assert!(
        out.status.success(),
        "promote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let promoted = status(&admin, &b.addr).await;
    assert_eq!((promoted.broker_id, promoted.epoch), (0, 2));
    assert!(promoted.epoch_start_offset < a_before.max_phy_offset);
    let fresh = Producer::new([namesrv.addr.as_str()], "ha-producer-2");
    eventually("the route lists the promoted master", || async {
        admin
            .namesrv()
            .cluster_info()
            .await
            .is_ok_and(|info| info.broker_addr_table[GROUP].broker_addrs.get(&0) == Some(&b.addr))
    })
    .await;
    let statuses = send_n(&fresh, 10, "epoch-2").await;
    assert!(statuses.iter().all(|s| *s == SendStatus::SendOk));

    // A resumes still believing it is the master of epoch 1.
    signal(&a, "-CONT");
    let resumed = Instant::now();
    eventually("the partitioned master demotes itself", || async {
        status(&admin, &a.addr).await.role == "SLAVE"
    })
    .await;
    eprintln!(
        "resume → demoted: {} ms (registerNameServerPeriod 1000 ms)",
        resumed.elapsed().as_millis()
    );
    let answer = send_direct(&a.addr).await;
    assert_eq!(
        answer.code,
        ferrum_protocol::ResponseCode::SERVICE_NOT_AVAILABLE.code()
    );
    assert!(
        answer
            .remark
            .as_deref()
            .unwrap_or("")
            .contains("is a slave"),
        "{:?}",
        answer.remark
    );
    wait_caught_up(&admin, &b.addr, &a.addr).await;
    let old = status(&admin, &a.addr).await;
    assert_eq!((old.broker_id, old.epoch), (1, 2), "{old:?}");
    assert_eq!(old.truncated_messages, 5, "{old:?}");
    assert_eq!(
        old.truncated_bytes as i64,
        a_before.max_phy_offset - promoted.epoch_start_offset
    );
    assert_identical(&admin, (&b.addr, b_dir.path()), (&a.addr, a_dir.path())).await;
    eventually("the route shows exactly one master", || async {
        let Ok(info) = admin.namesrv().cluster_info().await else {
            return false;
        };
        let members = &info.broker_addr_table[GROUP].broker_addrs;
        members.get(&0) == Some(&b.addr) && members.get(&1) == Some(&a.addr) && members.len() == 2
    })
    .await;
    let route = admin.namesrv().topic_route(TOPIC).await.expect("route");
    let masters: Vec<_> = route
        .broker_datas
        .iter()
        .filter_map(|d| d.broker_addrs.get(&0))
        .collect();
    assert_eq!(masters, vec![&b.addr]);
    // The old master's metrics say what happened.
    let text = metrics_text(&a).await;
    assert!(
        text.contains("ferrum_broker_ha_demotions_total 1"),
        "{text}"
    );
    assert!(
        text.contains("ferrum_broker_ha_truncated_messages_total 5"),
        "{text}"
    );
    assert!(text.contains("ferrum_broker_ha_epoch 2"), "{text}");
    let text = metrics_text(&b).await;
    assert!(
        text.contains("ferrum_broker_replication_lag_bytes{slave_broker_id=\"1\"}"),
        "{text}"
    );
    assert!(
        text.contains("ferrum_broker_ha_slaves_connected 1"),
        "{text}"
    );
}
