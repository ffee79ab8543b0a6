//! Smoke runs: each scenario, briefly (a few connections, a couple of seconds), against a real
//! `parley-server`, through the real `parley-loadtest` binary. Correctness only: the run must
//! pass its exactly-once / in-order checks; no timing is asserted.
//!
//! The server binary belongs to another package, so `CARGO_BIN_EXE_parley-server` is not
//! available here. The test looks for it beside this test's own executable
//! (`target/<profile>/parley-server`, which `cargo nextest run --workspace` and
//! `cargo test --workspace` build before running tests, since the server package's own
//! integration tests need it), or at `$PARLEY_SERVER_BIN`. If it is missing, the test fails
//! with a message saying how to build it, rather than building it itself (a release-size build
//! inside a test would outlast any test timeout).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const API_KEY: &str = "smoke-api-key-0123456789";

fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PARLEY_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/smoke-<hash> → target/<profile>/parley-server
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let candidate = profile_dir.join("parley-server");
    assert!(
        candidate.exists(),
        "parley-server not found at {}: build it first (`cargo build -p server --bin parley-server`, \
         or run the whole workspace with `cargo nextest run --workspace`), or point \
         PARLEY_SERVER_BIN at it",
        candidate.display()
    );
    candidate
}

/// A child process killed when dropped; its stderr log is printed if the test fails.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("----- {} -----\n{log}\n-----", self.log.display());
        }
    }
}

/// Starts a binary that prints `<prefix> ADDR` as its first stdout line; returns it and ADDR.
fn start(mut command: Command, prefix: &str, log: PathBuf) -> (Process, String) {
    let log_file = std::fs::File::create(&log).expect("log file");
    command.stdout(Stdio::piped()).stderr(Stdio::from(log_file));
    let mut child = command.spawn().expect("process starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    // Keep draining stdout so the child never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let process = Process { child, log };
    let addr = first
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected `{prefix} ADDR`, got {first:?}"))
        .trim()
        .to_owned();
    (process, addr)
}

fn start_parley(temp: &Path) -> (Process, String) {
    let mut command = Command::new(server_binary());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PARLEY__SERVER__BIND", "127.0.0.1:0")
        .env("PARLEY__SERVER__WORKERS", "2")
        .env("PARLEY__STORAGE__DATA_DIR", temp.join("data"))
        .env("PARLEY__AUTH__API_KEY", API_KEY)
        .env(
            "PARLEY__AUTH__JWT_SECRET",
            "smoke-jwt-secret-0123456789-0123456789",
        )
        .env("PARLEY__RATE_LIMIT__PER_SECOND", "1000000")
        .env("PARLEY__RATE_LIMIT__BURST", "1000000")
        .env("PARLEY__LOG__LEVEL", "info");
    start(
        command,
        "parley-server listening on",
        temp.join("parley-server.log"),
    )
}

/// Runs `parley-loadtest` and returns its JSON report; fails the test if the run failed.
fn run_loadtest(temp: &Path, scenario: &str, args: &[&str]) -> serde_json::Value {
    let report = temp.join(format!("{scenario}.json"));
    let scenario_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{scenario}.toml"));
    let output = Command::new(env!("CARGO_BIN_EXE_parley-loadtest"))
        .arg("--scenario")
        .arg(&scenario_path)
        .args(["--api-key", API_KEY, "--quiet", "--source-addrs", "3"])
        .arg("--report")
        .arg(&report)
        .args(args)
        .output()
        .expect("parley-loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "parley-loadtest {scenario} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let text = std::fs::read_to_string(&report).expect("report written");
    let value: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");
    assert_eq!(value["passed"], true, "{stdout}");
    for phase in value["phases"].as_array().expect("phases") {
        let correctness = &phase["correctness"];
        for check in ["duplicates", "out_of_order", "missed_live", "missing"] {
            assert_eq!(correctness[check], 0, "{check} in {stdout}");
        }
    }
    value
}

#[test]
fn idle_holds_every_connection_and_reports_rss() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (server, addr) = start_parley(temp.path());
    let url = format!("ws://{addr}/ws");
    let pid = server.child.id().to_string();
    let report = run_loadtest(
        temp.path(),
        "idle",
        &[
            "--url",
            &url,
            "--server-pid",
            &pid,
            "--connections",
            "30",
            "--set",
            "hold_secs=1",
        ],
    );
    let phase = &report["phases"][0];
    assert_eq!(phase["connections_opened"], 30);
    assert!(phase["extra"]["rss_per_connection_bytes"].is_number());
}

#[test]
fn fanout_against_parley_and_the_ceiling_delivers_everything_once() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (_server, addr) = start_parley(temp.path());
    let mut ceiling_command = Command::new(env!("CARGO_BIN_EXE_ws-ceiling"));
    ceiling_command.args(["--bind", "127.0.0.1:0"]);
    let (_ceiling, ceiling_addr) = start(
        ceiling_command,
        "ws-ceiling listening on",
        temp.path().join("ws-ceiling.log"),
    );
    let url = format!("ws://{addr}/ws");
    let ceiling_url = format!("ws://{ceiling_addr}/ws");
    let report = run_loadtest(
        temp.path(),
        "fanout",
        &[
            "--url",
            &url,
            "--target",
            "both",
            "--ceiling-url",
            &ceiling_url,
            "--rooms",
            "3",
            "--members",
            "4",
            "--rate",
            "10",
            "--duration",
            "2",
            "--set",
            "drain_secs=10",
        ],
    );
    for phase in report["phases"].as_array().expect("phases") {
        assert!(phase["deliveries"].as_u64().unwrap() > 0, "{phase}");
    }
    assert!(report["ratio_of_ceiling"].is_number());
}

#[test]
fn chat_mix_with_reconnects_delivers_everything_once() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (_server, addr) = start_parley(temp.path());
    let url = format!("ws://{addr}/ws");
    let report = run_loadtest(
        temp.path(),
        "chat",
        &[
            "--url",
            &url,
            "--connections",
            "12",
            "--rate",
            "5",
            "--duration",
            "2",
            "--set",
            "group_size=4",
            "--set",
            "weight_reconnect=1.0",
            "--set",
            "drain_secs=10",
        ],
    );
    assert!(report["phases"][0]["acks"].as_u64().unwrap() > 0);
}

/// Sends a command to a `fault-proxy`'s control endpoint (`POST /drop`, ...).
fn control_proxy(control: &str, path: &str) {
    let mut stream = TcpStream::connect(control).expect("connect to the proxy's control");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {control}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write the command");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
}

/// Clients resend what a dead connection left unacked, with the same `client_msg_id`: with a
/// `fault-proxy` between the clients and the node that delays, then drops, every connection
/// three times (replies of sends the node did store are lost on the way), every message is
/// still acked, once, and no seq is acked for two messages.
#[test]
fn sends_lost_with_their_connection_are_resent_and_acked_once() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (_server, addr) = start_parley(temp.path());
    let mut proxy_command = Command::new(env!("CARGO_BIN_EXE_fault-proxy"));
    proxy_command.args(["--listen", "127.0.0.1:0", "--target", &addr]);
    proxy_command.args(["--control", "127.0.0.1:0"]);
    let (_proxy, announced) = start(
        proxy_command,
        "fault-proxy listening on",
        temp.path().join("fault-proxy.log"),
    );
    let words: Vec<&str> = announced.split_whitespace().collect();
    let (listen, control) = (words[0].to_owned(), words[3].to_owned());
    let faults = std::thread::spawn(move || {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(700));
            control_proxy(&control, "/latency?ms=300");
            std::thread::sleep(Duration::from_millis(450));
            control_proxy(&control, "/drop");
            control_proxy(&control, "/pass");
        }
    });
    let url = format!("ws://{listen}/ws");
    let ledger_path = temp.path().join("ledger.json");
    let report = run_loadtest(
        temp.path(),
        "chat",
        &[
            "--url",
            &url,
            "--connections",
            "8",
            "--rate",
            "10",
            "--duration",
            "4",
            "--ledger",
            ledger_path.to_str().expect("utf-8 path"),
            "--set",
            "group_size=4",
            "--set",
            "weight_reconnect=0",
            "--set",
            "drain_secs=20",
        ],
    );
    faults.join().expect("fault thread");
    let phase = &report["phases"][0];
    assert_eq!(
        phase["acks"], phase["sends"],
        "every message acked: {phase}"
    );
    assert_eq!(phase["gave_up"], 0, "{phase}");
    assert!(phase["resends"].as_u64().unwrap() > 0, "{phase}");
    let ledger: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ledger_path).expect("ledger written"))
            .expect("ledger is JSON");
    let mut owners = HashMap::new();
    for client in ledger["clients"].as_array().expect("clients") {
        for ack in client["acked"].as_array().expect("acked") {
            let seat = (ack["conversation_id"].to_string(), ack["seq"].as_u64());
            let key = ack["client_msg_id"].to_string();
            if let Some(other) = owners.insert(seat.clone(), key.clone()) {
                panic!("{seat:?} acked for {other} and {key}");
            }
        }
    }
    assert_eq!(owners.len() as u64, phase["acks"].as_u64().unwrap());
}

#[test]
fn reconnect_storm_misses_nothing() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (_server, addr) = start_parley(temp.path());
    let url = format!("ws://{addr}/ws");
    let report = run_loadtest(
        temp.path(),
        "reconnect-storm",
        &[
            "--url",
            &url,
            "--connections",
            "20",
            "--rate",
            "20",
            "--duration",
            "2",
            "--set",
            "storm_group_size=5",
            "--set",
            "drain_secs=10",
        ],
    );
    let phase = &report["phases"][0];
    assert!(phase["reconnects"].as_u64().unwrap() >= 16, "{phase}");
}
