//! The real `ferrum-broker` binary's metrics endpoint, scraped over HTTP on 127.0.0.1 while
//! remoting traffic moves its counters.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use ferrum_protocol::{RemotingCodec, RemotingCommand, RequestCode};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use common::request;

const STEP: Duration = Duration::from_secs(10);

/// A broker process killed when dropped, with its remoting and metrics addresses.
struct Broker {
    child: Child,
    addr: String,
    metrics: String,
    _store: tempfile::TempDir,
}

impl Broker {
    fn start(extra: &[&str]) -> Broker {
        let store = tempfile::tempdir().expect("tempdir");
        let mut args: Vec<String> = [
            "listenPort=0",
            "metricsPort=0",
            "haListenPort=0",
            "bindAddress=127.0.0.1",
            "mappedFileSizeCommitLog=1048576",
        ]
        .iter()
        .flat_map(|kv| ["--set".to_owned(), (*kv).to_owned()])
        .collect();
        args.push("--set".into());
        args.push(format!("storePathRootDir={}", store.path().display()));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut child = common::broker_command()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ferrum-broker");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || metrics.is_none() {
            let line = rx.recv_timeout(STEP).expect("broker printed its addresses");
            if let Some(rest) = line.split("listening on ").nth(1) {
                addr = rest.split(' ').next().map(str::to_owned);
            }
            if let Some(rest) = line.split("metrics on http://").nth(1) {
                metrics = rest.split('/').next().map(str::to_owned);
            }
        }
        Broker {
            child,
            addr: addr.expect("address"),
            metrics: metrics.expect("metrics address"),
            _store: store,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET; returns the status code and body.
async fn get(addr: &str, path: &str) -> (u16, String) {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    };
    let out = tokio::time::timeout(STEP, exchange)
        .await
        .expect("HTTP answer in time");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// The value of the sample whose name-and-labels text is exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn call(
    framed: &mut Framed<TcpStream, RemotingCodec>,
    request: RemotingCommand,
) -> RemotingCommand {
    framed.send(request.with_opaque(7)).await.expect("send");
    tokio::time::timeout(STEP, framed.next())
        .await
        .expect("answer in time")
        .expect("connection open")
        .expect("frame decodes")
}

#[tokio::test]
async fn send_pull_and_commit_move_the_scraped_metrics() {
    let broker = Broker::start(&[]);
    assert_eq!(get(&broker.metrics, "/healthz").await.0, 200);
    // No NameServer configured: nothing to register with, ready once the store is open.
    assert_eq!(get(&broker.metrics, "/readyz").await.0, 200);
    let (status, before) = get(&broker.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let info = before
        .lines()
        .find(|l| l.starts_with("ferrum_broker_info{"))
        .expect("info gauge");
    assert!(info.contains(r#"role="ASYNC_MASTER""#), "{info}");
    assert!(sample(&before, "ferrum_broker_store_recovery_seconds").is_some());
    assert_eq!(
        sample(
            &before,
            r#"ferrum_broker_messages_in_total{topic="Metered"}"#
        ),
        None
    );

    let stream = TcpStream::connect(&broker.addr).await.expect("connect");
    let mut framed = Framed::new(stream, RemotingCodec::default());
    let sent = call(
        &mut framed,
        request(
            RequestCode::SEND_MESSAGE_V2,
            &[
                ("a", "PG"),
                ("b", "Metered"),
                ("c", "TBW102"),
                ("d", "4"),
                ("e", "0"),
                ("f", "0"),
                ("g", "1700000000000"),
                ("h", "0"),
                ("i", ""),
            ],
        )
        .with_body(b"hello metrics".to_vec()),
    )
    .await;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    let pulled = call(
        &mut framed,
        request(
            RequestCode::PULL_MESSAGE,
            &[
                ("consumerGroup", "CG"),
                ("topic", "Metered"),
                ("queueId", "0"),
                ("queueOffset", "0"),
                ("maxMsgNums", "32"),
                ("sysFlag", "0"),
                ("commitOffset", "0"),
                ("suspendTimeoutMillis", "0"),
                ("subVersion", "0"),
            ],
        ),
    )
    .await;
    assert_eq!(pulled.code, 0, "{:?}", pulled.remark);
    let committed = call(
        &mut framed,
        request(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            &[
                ("consumerGroup", "CG"),
                ("topic", "Metered"),
                ("queueId", "0"),
                ("commitOffset", "0"),
            ],
        ),
    )
    .await;
    assert_eq!(committed.code, 0, "{:?}", committed.remark);

    let (_, after) = get(&broker.metrics, "/metrics").await;
    assert_eq!(
        sample(
            &after,
            r#"ferrum_broker_messages_in_total{topic="Metered"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, r#"ferrum_broker_bytes_in_total{topic="Metered"}"#),
        Some(13.0)
    );
    assert_eq!(
        sample(
            &after,
            r#"ferrum_broker_messages_out_total{group="CG",topic="Metered"}"#
        ),
        Some(1.0)
    );
    // Committed offset 0 against max offset 1: one message not yet consumed.
    assert_eq!(
        sample(
            &after,
            r#"ferrum_broker_consumer_lag_messages{group="CG",queue_id="0",topic="Metered"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            r#"ferrum_broker_requests_total{request_code="SEND_MESSAGE_V2",response_code="SUCCESS"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "ferrum_broker_send_latency_seconds_count"),
        Some(1.0)
    );
    assert_eq!(sample(&after, "ferrum_broker_connections"), Some(1.0));
    let max = sample(&after, "ferrum_broker_commitlog_max_offset_bytes").expect("max offset");
    assert!(max > 0.0, "{max}");
}

#[tokio::test]
async fn not_ready_until_a_namesrv_accepts_the_registration() {
    // A port nobody listens on: registration fails, so the broker must not report ready.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let broker = Broker::start(&["-n", &dead]);
    assert_eq!(get(&broker.metrics, "/healthz").await.0, 200);
    let (status, body) = get(&broker.metrics, "/readyz").await;
    assert_eq!(status, 503, "{body}");
}
