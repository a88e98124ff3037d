//! Process helpers shared by the broker's integration tests: a child-process guard, start-line
//! reading and starting real ferrum-namesrv / ferrum-broker binaries on 127.0.0.1.
//!
//! Each test binary compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

pub mod raft;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrum_protocol::{RemotingCodec, RemotingCommand, RequestCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long a started process may take to print its start line.
pub const START_LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection or an answer on it may take.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A child process killed (SIGKILL, as `kill -9`) when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: String,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `cmd` and returns it with the first line it prints on stdout. The child's stderr is
/// shown only when `FERRUM_TEST_BROKER_LOG` is set.
pub fn spawn_reading_first_line(cmd: Command) -> (Child, String) {
    let (child, line, _) = spawn_reading_lines(cmd, START_LINE_TIMEOUT);
    (child, line)
}

/// The process, its first stdout line (waited for up to `timeout`) and the following ones.
pub fn spawn_reading_lines(
    mut cmd: Command,
    timeout: Duration,
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("FERRUM_TEST_BROKER_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(timeout)
        .expect("process printed its start line");
    (child, line, rx)
}

/// A binary of a workspace package next to this test's binary, built first if it is not there.
pub fn sibling_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let binary = profile_dir.join(bin);
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", bin])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "{bin} builds");
    }
    binary
}

/// The NameServer binary next to this test's binary.
pub fn namesrv_binary() -> PathBuf {
    sibling_binary("ferrum-namesrv", "ferrum-namesrv")
}

/// A NameServer on an ephemeral port of 127.0.0.1.
pub fn start_namesrv() -> Proc {
    start_namesrv_with(&[])
}

/// A NameServer on an ephemeral port of 127.0.0.1 with more command-line arguments.
pub fn start_namesrv_with(extra: &[&str]) -> Proc {
    let mut cmd = Command::new(namesrv_binary());
    cmd.args(["--listen", "127.0.0.1:0"]);
    cmd.args(extra);
    let (child, line) = spawn_reading_first_line(cmd);
    let addr = line
        .rsplit(' ')
        .next()
        .expect("address at the end of the line")
        .to_owned();
    Proc { child, addr }
}

/// Broker settings under which how full the machine's disk is cannot change a test's outcome:
/// writes are refused only at 98 % used (RocketMQ's default is 90 %) and no CommitLog file is
/// deleted early because the disk is full (RocketMQ forces that from 85 %, which loses messages
/// a test still reads). The test data itself is a few MiB.
pub const IGNORE_HOST_DISK: [(&str, &str); 3] = [
    ("diskSpaceWarningLevelRatio", "98"),
    ("diskSpaceCleanForciblyRatio", "97"),
    ("cleanFileForciblyEnable", "false"),
];

/// Gives a broker started by `cmd` (directly or through `ip netns exec`) the
/// [`IGNORE_HOST_DISK`] settings as `FERRUM_BROKER_*` variables. A variable already in the
/// environment (`make` exports them, or someone reproducing a disk problem) is left as it is,
/// and a test's own `--set` of these keys wins over both.
pub fn ignore_host_disk(cmd: &mut Command) -> &mut Command {
    for (key, value) in IGNORE_HOST_DISK {
        let name = ferrum_broker::config::env_var_name(key);
        if std::env::var_os(&name).is_none() {
            cmd.env(name, value);
        }
    }
    cmd
}

/// The ferrum-broker binary of this build, with [`ignore_host_disk`].
pub fn broker_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrum-broker"));
    ignore_host_disk(&mut cmd);
    cmd
}

/// The in-process counterpart of [`IGNORE_HOST_DISK`] for a store a test opens itself. Tests of
/// the disk rules keep RocketMQ's thresholds and set a ratio override instead.
pub fn ignore_host_disk_in_store(config: &mut ferrum_store::MessageStoreConfig) {
    config.disk_space_warning_level_ratio = 98;
    config.disk_space_clean_forcibly_ratio = 97;
    config.clean_file_forcibly_enable = false;
}

/// A ferrum-broker registering with `namesrv`, configured by `key=value` settings (`--set`).
pub fn start_broker_with_sets(namesrv: &str, sets: &[String]) -> Proc {
    let mut cmd = broker_command();
    cmd.args(["-n", namesrv]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let (child, line) = spawn_reading_first_line(cmd);
    // "ferrum-broker <name> listening on A (VIP B), advertised as C"
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("address in the start line")
        .to_owned();
    Proc { child, addr }
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A request with `code` and the given extFields.
pub fn request(code: impl Into<i32>, fields: &[(&str, &str)]) -> RemotingCommand {
    let mut request = RemotingCommand::bare_request(code);
    for (k, v) in fields {
        request.ext_fields.insert((*k).to_owned(), (*v).to_owned());
    }
    request
}

/// SEND_MESSAGE_V2 from producer group PG to `queue_id` of `topic` (TBW102 as the default topic).
pub fn send_v2(topic: &str, queue_id: i32, body: &[u8], properties: &str) -> RemotingCommand {
    request(
        RequestCode::SEND_MESSAGE_V2,
        &[
            ("a", "PG"),
            ("b", topic),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", &queue_id.to_string()),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("i", properties),
        ],
    )
    .with_body(body.to_vec())
}

/// PULL_MESSAGE for consumer group CG, held up to `suspend_millis` when that is above 0.
pub fn pull(topic: &str, queue_id: i32, offset: i64, suspend_millis: i64) -> RemotingCommand {
    let sys_flag = if suspend_millis > 0 { 2 } else { 0 };
    request(
        RequestCode::PULL_MESSAGE,
        &[
            ("consumerGroup", "CG"),
            ("topic", topic),
            ("queueId", &queue_id.to_string()),
            ("queueOffset", &offset.to_string()),
            ("maxMsgNums", "32"),
            ("sysFlag", &sys_flag.to_string()),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", &suspend_millis.to_string()),
            ("subVersion", "0"),
        ],
    )
}

/// One remoting connection; answers are matched to requests by opaque.
pub struct Conn {
    framed: Framed<TcpStream, RemotingCodec>,
    opaque: i32,
}

impl Conn {
    pub async fn open(addr: &str) -> Conn {
        let stream = tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Conn {
            framed: Framed::new(stream, RemotingCodec::default()),
            opaque: 0,
        }
    }

    pub async fn send(&mut self, request: RemotingCommand) -> i32 {
        self.opaque += 1;
        let opaque = self.opaque;
        self.framed
            .send(request.with_opaque(opaque))
            .await
            .expect("send");
        opaque
    }

    pub async fn next(&mut self) -> RemotingCommand {
        tokio::time::timeout(ANSWER_TIMEOUT, self.framed.next())
            .await
            .expect("answer in time")
            .expect("connection open")
            .expect("frame decodes")
    }

    pub async fn call(&mut self, request: RemotingCommand) -> RemotingCommand {
        let opaque = self.send(request).await;
        loop {
            let answer = self.next().await;
            if answer.is_response() && answer.opaque == opaque {
                return answer;
            }
        }
    }
}
