//! `ferrumctl` as a process: clear errors and exit codes, and one command against an in-test
//! NameServer on 127.0.0.1.

use std::process::{Command, Output};
use std::time::Duration;

use ferrum_protocol::route::{TopicList, to_json};
use ferrum_protocol::{RemotingCodec, RequestCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

fn ferrumctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrumctl"))
        .args(args)
        .env_remove("FERRUM_NAMESRV")
        .output()
        .expect("run ferrumctl")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn ferrumctl_async(args: Vec<String>) -> Output {
    let run = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ferrumctl(&args)
    });
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("ferrumctl finished in time")
        .expect("join")
}

async fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").to_string()
}

#[tokio::test]
async fn unreachable_nameservers_give_a_clear_error() {
    let addrs = format!("{};{}", dead_addr().await, dead_addr().await);
    let out = ferrumctl_async(vec!["-n".into(), addrs, "topic".into(), "list".into()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("every NameServer failed") && err.contains("cannot connect"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_flags_and_values_are_refused_without_panic() {
    let out = ferrumctl(&["bench", "produce", "T", "--concurrency", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--concurrency"), "{}", stderr(&out));

    let out = ferrumctl(&["-n", " ; ", "topic", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no NameServer address"),
        "{}",
        stderr(&out)
    );

    let out = ferrumctl(&["topic", "create", "bad topic"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("may only contain"),
        "{}",
        stderr(&out)
    );

    let out = ferrumctl(&["message", "view-id", "xyz"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid offset message id"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn topic_list_against_an_in_test_nameserver() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut framed = Framed::new(stream, RemotingCodec::default());
                while let Some(Ok(req)) = framed.next().await {
                    let answer =
                        if req.code == RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER.code() {
                            let list = TopicList {
                                topic_list: ["Alpha".to_owned(), "Beta".to_owned()].into(),
                                broker_addr: None,
                            };
                            req.success_to().with_body(to_json(&list))
                        } else {
                            req.error_to(
                                ferrum_protocol::ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                                "not in this test",
                            )
                        };
                    if framed.send(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let out = ferrumctl_async(vec![
        "-n".into(),
        addr,
        "topic".into(),
        "list".into(),
        "--json".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let topics: Vec<String> = serde_json::from_slice(&out.stdout).expect("JSON list");
    assert_eq!(topics, ["Alpha", "Beta"]);
}
