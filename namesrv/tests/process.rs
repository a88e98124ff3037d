//! The real `ferrum-namesrv` binary over real TCP on loopback.

mod support;

use ferrum_protocol::route::{ClusterInfo, TopicList, TopicRouteData, from_json};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Conn, NameSrv, STEP, register_request, wait_for_route_code};

const NOT_EXIST: i32 = ResponseCode::TOPIC_NOT_EXIST as i32;

#[tokio::test]
async fn an_answer_beyond_the_frame_limit_becomes_a_system_error() {
    use ferrum_protocol::headers::{GetKvListByNamespaceRequestHeader, PutKvConfigRequestHeader};
    let ns = NameSrv::start(&[]);
    let mut conn = Conn::connect(ns.addr).await;
    // Two values that each fit a request but together overflow the 16 MiB answer.
    for key in ["a", "b"] {
        let put = RemotingCommand::request(
            RequestCode::PUT_KV_CONFIG,
            &PutKvConfigRequestHeader {
                namespace: "big".into(),
                key: key.into(),
                value: "v".repeat(9 << 20),
            },
        );
        assert_eq!(conn.call(put).await.code, ResponseCode::SUCCESS as i32);
    }
    let list = RemotingCommand::request(
        RequestCode::GET_KVLIST_BY_NAMESPACE,
        &GetKvListByNamespaceRequestHeader {
            namespace: "big".into(),
        },
    );
    let answer = conn.call(list).await;
    assert_eq!(answer.code, ResponseCode::SYSTEM_ERROR as i32);
    let remark = answer.remark.unwrap_or_default();
    assert!(remark.contains("exceeds the limit"), "{remark}");
    // The same connection keeps serving.
    assert_eq!(conn.route("Nothing").await.code, NOT_EXIST);
}

#[tokio::test]
async fn register_then_route() {
    let ns = NameSrv::start(&[]);
    let mut broker = Conn::connect(ns.addr).await;
    let resp = broker
        .call(register_request(
            "DefaultCluster",
            "broker-a",
            "127.0.0.1:10911",
            0,
            &["TopicTest"],
        ))
        .await;
    assert_eq!(resp.code, 0, "{:?}", resp.remark);

    let mut client = Conn::connect(ns.addr).await;
    let resp = client.route("TopicTest").await;
    assert_eq!(resp.code, 0, "{:?}", resp.remark);
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    assert!(
        text.contains(r#""brokerAddrs":{"0":"127.0.0.1:10911"}"#),
        "{text}"
    );
    let route: TopicRouteData = from_json(&resp.body, "TopicRouteData").expect("route JSON");
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].broker_name, "broker-a");
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert_eq!(route.broker_datas[0].cluster, "DefaultCluster");

    let resp = client.route("NoSuchTopic").await;
    assert_eq!(resp.code, NOT_EXIST);
    assert!(resp.remark.unwrap_or_default().contains("NoSuchTopic"));

    let resp = client
        .call(RemotingCommand::bare_request(
            RequestCode::GET_BROKER_CLUSTER_INFO,
        ))
        .await;
    let info: ClusterInfo = from_json(&resp.body, "ClusterInfo").expect("cluster JSON");
    assert!(info.cluster_addr_table["DefaultCluster"].contains("broker-a"));
    assert_eq!(
        info.broker_addr_table["broker-a"].master_addr(),
        Some("127.0.0.1:10911")
    );

    let resp = client
        .call(RemotingCommand::bare_request(
            RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        ))
        .await;
    let list: TopicList = from_json(&resp.body, "TopicList").expect("topic list JSON");
    assert!(list.topic_list.contains("TopicTest"));

    // A slave learns its master from the answer.
    let mut slave = Conn::connect(ns.addr).await;
    let resp = slave
        .call(register_request(
            "DefaultCluster",
            "broker-a",
            "127.0.0.1:20911",
            1,
            &["TopicTest"],
        ))
        .await;
    assert_eq!(
        resp.ext_fields.get("masterAddr").map(String::as_str),
        Some("127.0.0.1:10911")
    );
    assert_eq!(
        resp.ext_fields.get("haServerAddr").map(String::as_str),
        Some("127.0.0.1:10912")
    );
}

#[tokio::test]
async fn silent_broker_expires() {
    let ns = NameSrv::start(&[
        "--scan-interval-ms",
        "200",
        "--broker-expiry-ms",
        "1000",
        "--drop-on-close",
        "false",
    ]);
    let mut broker = Conn::connect(ns.addr).await;
    let resp = broker
        .call(register_request(
            "C",
            "b",
            "127.0.0.1:10911",
            0,
            &["Expiring"],
        ))
        .await;
    assert_eq!(resp.code, 0);
    // The broker's connection stays open: only silence can remove it.
    let mut client = Conn::connect(ns.addr).await;
    wait_for_route_code(&mut client, "Expiring", NOT_EXIST).await;
    let resp = client
        .call(RemotingCommand::bare_request(
            RequestCode::GET_BROKER_CLUSTER_INFO,
        ))
        .await;
    let info: ClusterInfo = from_json(&resp.body, "ClusterInfo").expect("cluster JSON");
    assert!(info.broker_addr_table.is_empty());
    drop(broker);
}

/// Registers a broker serving `topic`, keeps its connection open without heartbeats and waits
/// for the shortened expiry to drop the route (drop-on-close is off in these settings).
async fn expires_while_connected(ns: &NameSrv, topic: &str) {
    let mut broker = Conn::connect(ns.addr).await;
    broker
        .call(register_request("C", "b", "127.0.0.1:10911", 0, &[topic]))
        .await;
    let mut client = Conn::connect(ns.addr).await;
    wait_for_route_code(&mut client, topic, NOT_EXIST).await;
    drop(broker);
}

#[tokio::test]
async fn liveness_settings_from_environment() {
    let ns = NameSrv::start_with_env(
        &[],
        &[
            ("FERRUM_NAMESRV_SCAN_INTERVAL_MS", "200"),
            ("FERRUM_NAMESRV_BROKER_EXPIRY_MS", "1000"),
            ("FERRUM_NAMESRV_DROP_ON_CLOSE", "false"),
        ],
    );
    expires_while_connected(&ns, "FromEnv").await;
}

#[tokio::test]
async fn binary_header_request_gets_binary_header_answer() {
    let ns = NameSrv::start(&[]);
    let mut broker = Conn::connect(ns.addr).await;
    broker
        .call(
            register_request("C", "b", "127.0.0.1:10911", 0, &["Binary"])
                .with_serialize_type(SerializeType::RocketMq),
        )
        .await;
    let resp = broker
        .call(support::route_request("Binary").with_serialize_type(SerializeType::RocketMq))
        .await;
    assert_eq!(resp.code, 0, "{:?}", resp.remark);
    assert_eq!(resp.serialize_type, SerializeType::RocketMq);
    let route: TopicRouteData = from_json(&resp.body, "TopicRouteData").expect("route JSON");
    assert_eq!(route.queue_datas[0].broker_name, "b");
}

#[tokio::test]
async fn broker_dropped_when_its_connection_closes() {
    // Default scan and expiry (10 s / 120 s): only the close can explain a quick removal.
    let ns = NameSrv::start(&[]);
    let mut broker = Conn::connect(ns.addr).await;
    broker
        .call(register_request(
            "C",
            "b",
            "127.0.0.1:10911",
            0,
            &["Closing"],
        ))
        .await;
    let mut client = Conn::connect(ns.addr).await;
    assert_eq!(client.route("Closing").await.code, 0);
    drop(broker);
    wait_for_route_code(&mut client, "Closing", NOT_EXIST).await;
}

#[tokio::test]
async fn two_nameservers_are_independent() {
    let first = NameSrv::start(&[]);
    let second = NameSrv::start(&[]);
    let mut to_first = Conn::connect(first.addr).await;
    let mut to_second = Conn::connect(second.addr).await;
    to_first
        .call(register_request(
            "C",
            "only-first",
            "127.0.0.1:1",
            0,
            &["OnFirst"],
        ))
        .await;
    to_second
        .call(register_request(
            "C",
            "only-second",
            "127.0.0.1:2",
            0,
            &["OnSecond"],
        ))
        .await;
    assert_eq!(to_first.route("OnFirst").await.code, 0);
    assert_eq!(to_first.route("OnSecond").await.code, NOT_EXIST);
    assert_eq!(to_second.route("OnSecond").await.code, 0);
    assert_eq!(to_second.route("OnFirst").await.code, NOT_EXIST);
}

/// Reads until the server closes the connection; panics if it stays open.
async fn expect_closed(mut stream: TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(STEP, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept a connection with a malformed frame open"),
        }
    }
}

async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

#[tokio::test]
async fn bad_input_is_refused_while_others_are_served() {
    let ns = NameSrv::start(&[]);
    let mut good = Conn::connect(ns.addr).await;
    good.call(register_request(
        "C",
        "b",
        "127.0.0.1:10911",
        0,
        &["Served"],
    ))
    .await;

    // A length prefix far beyond the 16 MiB limit.
    expect_closed(raw(ns.addr, &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]).await).await;
    assert_eq!(good.route("Served").await.code, 0);

    // A header length that overruns its frame.
    expect_closed(raw(ns.addr, &[0, 0, 0, 8, 0, 0, 0, 100, b'{', b'}', 0, 0]).await).await;
    assert_eq!(good.route("Served").await.code, 0);

    // A JSON header that is not JSON.
    let header = b"{not json";
    let mut frame = Vec::new();
    frame.extend_from_slice(&(4 + header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    expect_closed(raw(ns.addr, &frame).await).await;
    assert_eq!(good.route("Served").await.code, 0);

    // An unknown serialization type.
    expect_closed(raw(ns.addr, &[0, 0, 0, 6, 9, 0, 0, 2, b'{', b'}']).await).await;

    // Well-formed frames with bad content get an error answer and the connection stays usable.
    let mut other = Conn::connect(ns.addr).await;
    let bad_body = register_request("C", "x", "127.0.0.1:1", 0, &[]).with_body(&b"{oops"[..]);
    let resp = other.call(bad_body).await;
    assert_eq!(resp.code, ResponseCode::INVALID_PARAMETER as i32);
    assert!(
        resp.remark
            .unwrap_or_default()
            .contains("RegisterBrokerBody")
    );

    let mut missing = support::route_request("Served");
    missing.ext_fields.clear();
    let resp = other.call(missing).await;
    assert_eq!(resp.code, ResponseCode::INVALID_PARAMETER as i32);
    assert!(resp.remark.unwrap_or_default().contains("topic"));

    let resp = other.call(RemotingCommand::bare_request(31337)).await;
    assert_eq!(resp.code, ResponseCode::REQUEST_CODE_NOT_SUPPORTED as i32);
    assert!(resp.remark.unwrap_or_default().contains("31337"));

    // Oneway requests get no answer: the next answer on the connection is for the next request.
    let mut oneway = Conn::connect(ns.addr).await;
    let silent = RemotingCommand::bare_request(31337).into_oneway();
    let answered = oneway
        .call_after_oneway(silent, support::route_request("Served"))
        .await;
    assert_eq!(answered.code, 0);

    assert_eq!(other.route("Served").await.code, 0);
    assert_eq!(good.route("Served").await.code, 0);
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let mut ns = NameSrv::start(&[]);
    let _conn = Conn::connect(ns.addr).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &ns.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = ns.wait_exit();
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn bad_config_file_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("namesrv.properties");
    std::fs::write(&path, "scanIntervalMs=often\n").expect("write config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferrum-namesrv"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .expect("run ferrum-namesrv");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("scanIntervalMs"), "{stderr}");
}

#[tokio::test]
async fn config_file_settings_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("namesrv.toml");
    std::fs::write(
        &path,
        "# shortened liveness\nscanIntervalMs = 200\nbrokerExpiryMs = \"1000\"\ndropOnClose = false\n",
    )
    .expect("write config");
    let path = path.to_string_lossy().into_owned();
    let ns = NameSrv::start(&["--config", &path]);
    expires_while_connected(&ns, "FromFile").await;
}
