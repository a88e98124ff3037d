//! Transactional messages against the real `ferrum-broker` binary over real TCP: a prepared
//! message is invisible until END_TRANSACTION commits it, a rollback never shows, and an
//! unresolved one is checked on the producer's connection (CHECK_TRANSACTION_STATE), across a
//! broker restart, until the producer's answer commits it.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use ferrum_protocol::message::sys_flag::{TRANSACTION_COMMIT_TYPE, TRANSACTION_ROLLBACK_TYPE};
use ferrum_protocol::message::{self, MessageExt, property};
use ferrum_protocol::{RemotingCodec, RemotingCommand, RequestCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use common::{request, spawn_reading_first_line};

const STEP: Duration = Duration::from_secs(10);
const TOPIC: &str = "TxOrders";
const GROUP: &str = "TxProducer";

struct BrokerProcess {
    child: Child,
    addr: String,
}

impl BrokerProcess {
    fn start(store: &Path) -> BrokerProcess {
        let sets = [
            "listenPort=0".to_owned(),
            "bindAddress=127.0.0.1".to_owned(),
            format!("storePathRootDir={}", store.display()),
            "mappedFileSizeCommitLog=1048576".to_owned(),
            // Checked 2 s after being sent (time enough to end the others first on a busy
            // machine) and then often, so the test stays short.
            "transactionTimeOut=2000".to_owned(),
            "transactionCheckInterval=100".to_owned(),
            // A check every 100 ms must not use up the checks before the restart is over.
            "transactionCheckMax=100000".to_owned(),
        ];
        let mut cmd = common::broker_command();
        cmd.args(sets.iter().flat_map(|s| ["--set", s.as_str()]));
        let (child, line) = spawn_reading_first_line(cmd);
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .expect("address in the start line")
            .to_owned();
        BrokerProcess { child, addr }
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "clean shutdown, got {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("broker did not stop after SIGTERM");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A producer connection: answers are matched by opaque; requests the broker sends (checks)
/// are kept for `next_check`.
struct Conn {
    framed: Framed<TcpStream, RemotingCodec>,
    opaque: i32,
    checks: Vec<RemotingCommand>,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut conn = Conn {
            framed: Framed::new(stream, RemotingCodec::default()),
            opaque: 0,
            checks: Vec::new(),
        };
        let body = serde_json::json!({
            "clientID": "127.0.0.1@tx-test",
            "producerDataSet": [{"groupName": GROUP}],
            "consumerDataSet": []
        });
        let answer = conn
            .call(
                request(RequestCode::HEART_BEAT, &[])
                    .with_body(serde_json::to_vec(&body).expect("json")),
            )
            .await;
        assert_eq!(answer.code, 0, "heartbeat: {:?}", answer.remark);
        conn
    }

    async fn next(&mut self) -> RemotingCommand {
        tokio::time::timeout(STEP, self.framed.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("frame decodes")
    }

    async fn call(&mut self, request: RemotingCommand) -> RemotingCommand {
        self.opaque += 1;
        let opaque = self.opaque;
        self.framed
            .send(request.with_opaque(opaque))
            .await
            .expect("send");
        loop {
            let frame = self.next().await;
            if frame.is_response() && frame.opaque == opaque {
                return frame;
            }
            if !frame.is_response() {
                self.checks.push(frame);
            }
        }
    }

    async fn oneway(&mut self, request: RemotingCommand) {
        self.opaque += 1;
        let request = request.with_opaque(self.opaque).into_oneway();
        self.framed.send(request).await.expect("send");
    }

    async fn next_check(&mut self) -> RemotingCommand {
        if !self.checks.is_empty() {
            return self.checks.remove(0);
        }
        loop {
            let frame = self.next().await;
            if !frame.is_response() {
                return frame;
            }
        }
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A prepared send as TransactionMQProducer makes it: sysFlag TRANSACTION_PREPARED_TYPE and the
/// TRAN_MSG / PGROUP properties. Returns (commitLogOffset, tranStateTableOffset).
async fn send_prepared(conn: &mut Conn, body: &str, unique: &str) -> (i64, i64) {
    let props = format!("TRAN_MSG\u{1}true\u{2}PGROUP\u{1}{GROUP}\u{2}UNIQ_KEY\u{1}{unique}\u{2}");
    let sent = conn
        .call(
            request(
                RequestCode::SEND_MESSAGE_V2,
                &[
                    ("a", GROUP),
                    ("b", TOPIC),
                    ("c", "TBW102"),
                    ("d", "1"),
                    ("e", "0"),
                    (
                        "f",
                        &message::sys_flag::TRANSACTION_PREPARED_TYPE.to_string(),
                    ),
                    ("g", &now_millis().to_string()),
                    ("h", "0"),
                    ("i", &props),
                ],
            )
            .with_body(body.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(sent.code, 0, "prepared send: {:?}", sent.remark);
    let msg_id = sent.ext_fields.get("msgId").expect("msgId");
    let (_, commit_log_offset) = message::parse_message_id(msg_id).expect("offset msg id");
    let queue_offset = sent.ext_fields["queueOffset"].parse().expect("queueOffset");
    (commit_log_offset, queue_offset)
}

fn end_transaction(
    commit_log_offset: i64,
    queue_offset: i64,
    kind: i32,
    from_check: bool,
) -> RemotingCommand {
    request(
        RequestCode::END_TRANSACTION,
        &[
            ("producerGroup", GROUP),
            ("tranStateTableOffset", &queue_offset.to_string()),
            ("commitLogOffset", &commit_log_offset.to_string()),
            ("commitOrRollback", &kind.to_string()),
            ("fromTransactionCheck", &from_check.to_string()),
            ("msgId", "ignored"),
        ],
    )
}

/// The bodies a consumer can read from the topic's only queue.
async fn visible(conn: &mut Conn) -> Vec<String> {
    let answer = conn
        .call(request(
            RequestCode::PULL_MESSAGE,
            &[
                ("consumerGroup", "TxReader"),
                ("topic", TOPIC),
                ("queueId", "0"),
                ("queueOffset", "0"),
                ("maxMsgNums", "32"),
                ("sysFlag", "0"),
                ("commitOffset", "0"),
                ("suspendTimeoutMillis", "0"),
                ("subVersion", "0"),
            ],
        ))
        .await;
    if answer.code != 0 {
        return Vec::new();
    }
    message::decode_all(&answer.body, false)
        .expect("pulled records decode")
        .into_iter()
        .inspect(|m| {
            assert!(
                !m.properties.contains_key(property::TRANSACTION_PREPARED),
                "a consumer never sees a prepared message"
            );
        })
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

#[tokio::test]
async fn commit_rollback_and_check_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path());
    let mut conn = Conn::open(&broker.addr).await;

    let (phy, queue) = send_prepared(&mut conn, "committed", "u-commit").await;
    assert_eq!(
        visible(&mut conn).await,
        Vec::<String>::new(),
        "half messages are invisible"
    );
    let ended = conn
        .call(end_transaction(phy, queue, TRANSACTION_COMMIT_TYPE, false))
        .await;
    assert_eq!(ended.code, 0, "commit: {:?}", ended.remark);
    assert_eq!(visible(&mut conn).await, ["committed"]);

    let (phy, queue) = send_prepared(&mut conn, "rolled back", "u-rollback").await;
    let wrong = conn
        .call(end_transaction(
            phy,
            queue + 7,
            TRANSACTION_COMMIT_TYPE,
            false,
        ))
        .await;
    assert_ne!(
        wrong.code, 0,
        "an END_TRANSACTION naming the wrong offsets is refused"
    );
    // Oneway, as the Java client ends a transaction.
    conn.oneway(end_transaction(
        phy,
        queue,
        TRANSACTION_ROLLBACK_TYPE,
        false,
    ))
    .await;

    send_prepared(&mut conn, "decided later", "u-unknown").await;
    let check = conn.next_check().await;
    assert_eq!(check.code, RequestCode::CHECK_TRANSACTION_STATE.code());
    assert_eq!(
        check.ext_fields.get("transactionId").map(String::as_str),
        Some("u-unknown")
    );
    let (checked, _) = MessageExt::decode(&check.body).expect("the check carries the message");
    assert_eq!(
        (checked.topic.as_str(), &checked.body[..]),
        (TOPIC, &b"decided later"[..])
    );
    assert_eq!(
        visible(&mut conn).await,
        ["committed"],
        "rollback and unknown stay invisible"
    );

    // The broker restarts before the producer answers: the half message is still unresolved
    // (state lives in the half and op topics) and is checked again on the new connection;
    // the committed and rolled-back ones are not.
    drop(conn);
    broker.stop();
    let broker = BrokerProcess::start(dir.path());
    let mut conn = Conn::open(&broker.addr).await;
    let check = conn.next_check().await;
    assert_eq!(check.code, RequestCode::CHECK_TRANSACTION_STATE.code());
    assert_eq!(
        check.ext_fields.get("transactionId").map(String::as_str),
        Some("u-unknown"),
        "only the unresolved transaction is checked after the restart"
    );
    let phy: i64 = check.ext_fields["commitLogOffset"]
        .parse()
        .expect("commitLogOffset");
    let queue: i64 = check.ext_fields["tranStateTableOffset"]
        .parse()
        .expect("tranStateTableOffset");
    let ended = conn
        .call(end_transaction(phy, queue, TRANSACTION_COMMIT_TYPE, true))
        .await;
    assert_eq!(ended.code, 0, "commit from the check: {:?}", ended.remark);
    assert_eq!(visible(&mut conn).await, ["committed", "decided later"]);
    drop(conn);
    broker.stop();
}
