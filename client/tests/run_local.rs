//! `make run` smoke: hack/run-local.sh with a temporary data directory and free ports, then the
//! README's ferrumctl commands against it, then SIGTERM to the script, which stops both servers.
//!
//! The script gets this build's binaries (BIN_DIR), so it skips its release build.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A binary of a workspace package next to this test's binary, built first if it is not there.
fn sibling_binary(package: &str, bin: &str) -> PathBuf {
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

/// A free port of 127.0.0.1 (free when asked; the script binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port()
}

/// A broker port whose VIP port (port - 2) and replication port (port + 1) are free too.
fn free_broker_port() -> u16 {
    for _ in 0..50 {
        let port = free_port();
        let neighbours_free = [port.checked_sub(2), port.checked_add(1)]
            .into_iter()
            .all(|p| p.is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()));
        if neighbours_free {
            return port;
        }
    }
    panic!("no broker port with free neighbours found");
}

/// The script, in its own process group so that a failing test can stop everything it started.
struct Script {
    child: Child,
}

impl Script {
    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .status();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal_group("-KILL");
            let _ = self.child.wait();
        }
    }
}

fn ferrumctl(namesrv: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrumctl"))
        .args(args)
        .env("FERRUM_NAMESRV", namesrv)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ferrumctl")
}

/// Retries a README command until it succeeds (the broker registers, then routes appear).
fn until_ok(namesrv: &str, args: &[&str]) -> String {
    until(namesrv, args, |_| true)
}

/// Retries a command until it succeeds with an output `accept` takes.
fn until(namesrv: &str, args: &[&str], accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ferrumctl(namesrv, args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && accept(&stdout) {
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "ferrumctl {args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn make_run_then_the_readme_commands() {
    let namesrv_bin = sibling_binary("ferrum-namesrv", "ferrum-namesrv");
    sibling_binary("ferrum-broker", "ferrum-broker");
    let bin_dir = namesrv_bin.parent().expect("binary directory").to_owned();
    let data = tempfile::tempdir().expect("tempdir");
    let namesrv_port = free_port();
    let broker_port = free_broker_port();
    let namesrv = format!("127.0.0.1:{namesrv_port}");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/run-local.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .env("DATA", data.path())
        .env("NAMESRV_PORT", namesrv_port.to_string())
        .env("BROKER_PORT", broker_port.to_string())
        .env("METRICS_PORT", "0")
        .env("BIN_DIR", &bin_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Writes are refused at 90 % disk use by default; the host's disk is not under test.
    for (key, value) in [
        ("FERRUM_BROKER_DISK_SPACE_WARNING_LEVEL_RATIO", "98"),
        ("FERRUM_BROKER_DISK_SPACE_CLEAN_FORCIBLY_RATIO", "97"),
        ("FERRUM_BROKER_CLEAN_FILE_FORCIBLY_ENABLE", "false"),
    ] {
        if std::env::var_os(key).is_none() {
            cmd.env(key, value);
        }
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut script = Script {
        child: cmd.spawn().expect("run hack/run-local.sh"),
    };
    let stdout = script.child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut banner = Vec::new();
    while !banner
        .iter()
        .any(|l: &String| l.starts_with("Ctrl-C stops"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        banner.push(
            rx.recv_timeout(left)
                .expect("the script prints how to use it"),
        );
    }
    let banner = banner.join("\n");
    assert!(
        banner.contains(&format!("export FERRUM_NAMESRV={namesrv}")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("broker-a 127.0.0.1:{broker_port}")),
        "{banner}"
    );

    // The README's commands, as printed.
    // The broker registers shortly after it starts.
    let clusters = until(&namesrv, &["cluster", "list"], |out| {
        out.contains("broker-a")
    });
    assert!(
        clusters.contains("DefaultCluster") && clusters.contains("broker-a"),
        "{clusters}"
    );
    assert!(
        clusters.contains(&format!("127.0.0.1:{broker_port}")),
        "{clusters}"
    );
    let created = until_ok(&namesrv, &["topic", "create", "Hello"]);
    assert!(created.starts_with("created topic Hello on"), "{created}");
    let sent = until_ok(
        &namesrv,
        &[
            "message",
            "send",
            "Hello",
            "hello, ferrum",
            "--keys",
            "greeting",
        ],
    );
    assert!(sent.starts_with("SendOk msgId="), "{sent}");
    let consumed = until_ok(
        &namesrv,
        &["consume", "Hello", "--from-beginning", "--count", "1"],
    );
    assert!(consumed.contains("\n  hello, ferrum\n"), "{consumed}");
    assert!(consumed.contains("KEYS=greeting"), "{consumed}");

    // SIGTERM to the script (as Ctrl-C): it stops both servers and exits.
    let status = Command::new("kill")
        .args(["-TERM", &script.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while script.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the script stopped on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both servers are gone: their ports accept nobody.
    for port in [namesrv_port, broker_port] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still served after the script stopped"
        );
    }
    assert!(data.path().join("broker-a/store").is_dir());
}
