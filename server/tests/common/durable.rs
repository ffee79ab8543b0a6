//! Durable cluster mode (issue 4): parley-server nodes whose event log is a real Kafka-protocol
//! broker and whose store is a real MongoDB-wire server, written by the real `ingest` binary.
//!
//! - [`TestTansu`]: a private Tansu with durable sqlite storage (`scripts/services/tansu.sh
//!   start DIR PORT --durable`); it can be stopped and started again on the same port and data.
//! - [`TestMongo`]: a private SecantusDB (`scripts/services/secantus.sh`), queried directly.
//! - [`TestIngest`]: the `ingest` binary (`cargo build -p ingest`), its endpoints, `kill -9`,
//!   SIGTERM and restarts; its log is printed when a test fails.
//! - [`DurableCluster`]: Redis + Tansu + MongoDB + `ingest setup` + ingest + N nodes.
//!
//! Like the rest of the harness it imports no project crate: MongoDB is read with the `mongodb`
//! driver and Kafka offsets are read and reset with `rdkafka`, as an operator would.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Document};
use mongodb::Database;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::{free_port, Client, TestRedis, TestServer};

/// The topics `ingest` consumes: `wire::log::topics::ALL` without its own output,
/// `message.delivered`.
pub const INGEST_TOPICS: [&str; 6] = [
    "message.sent",
    "message.edited",
    "message.deleted",
    "message.reacted",
    "conversation.updated",
    "receipt.updated",
];
/// Where ingest appends the `message.stored` acknowledgments.
pub const STORED_TOPIC: &str = "message.delivered";
/// The consumer group of ingest (the default of `ingest.group`).
pub const INGEST_GROUP: &str = "parley-ingest";
/// Partitions of each topic `ingest setup` creates in these tests.
pub const PARTITIONS: &str = "3";
/// Upper bound for anything asynchronous the durable pipeline does in a test (ingest catching
/// up, a group join, a broker restart). Generous: Tansu and SecantusDB are slow.
pub const PIPELINE_WAIT: Duration = Duration::from_secs(40);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../scripts/services/{name}"))
}

/// Runs a service script and asserts that it succeeded.
fn run_script(name: &str, args: &[&str]) -> String {
    let path = script(name);
    let output = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{} does not run: {error}", path.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed (installed? run `scripts/services/{name} install`): {}{}",
        path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The last `lines` lines of a log file, colours and timestamps removed and runs of the same
/// line collapsed (a broken broker repeats one error thousands of times).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut condensed: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        let plain = without_ansi(line);
        let plain = match plain.split_once(' ') {
            Some((time, rest)) if time.len() > 20 && time.ends_with('Z') => rest.to_owned(),
            _ => plain,
        };
        match condensed.last_mut() {
            Some((last, count)) if *last == plain => *count += 1,
            _ => condensed.push((plain, 1)),
        }
    }
    condensed[condensed.len().saturating_sub(lines)..]
        .iter()
        .map(|(line, count)| match count {
            1 => line.clone(),
            _ => format!("{line}  [x{count}]"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn without_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(character) = chars.next() {
        if character == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        plain.push(character);
    }
    plain
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A private Tansu broker with durable (sqlite) storage in its own directory.
pub struct TestTansu {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl TestTansu {
    /// Picks a port and a data directory without starting the broker.
    pub fn unstarted() -> Self {
        Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn start() -> Self {
        let tansu = Self::unstarted();
        tansu.resume();
        tansu
    }

    /// `host:port` for `bootstrap.servers` / `PARLEY__KAFKA__BROKERS`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM); its topics, records and group offsets stay in its directory.
    pub fn stop(&self) {
        run_script("tansu.sh", &["stop", utf8(self.dir.path())]);
    }

    /// `kill -9`: the broker dies mid-request; its data stays for [`TestTansu::resume`].
    pub fn kill9(&self) {
        let pid_file = self.dir.path().join("tansu.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("tansu.pid");
        let alive = || {
            Command::new("kill")
                .args(["-0", pid.trim()])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        assert!(alive(), "tansu is not running");
        let killed = Command::new("kill").args(["-KILL", pid.trim()]).status();
        assert!(killed.is_ok_and(|status| status.success()), "kill -9 tansu");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "tansu survived kill -9"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_file(&pid_file).expect("remove tansu.pid");
    }

    /// Starts it (again) on the same port and data.
    pub fn resume(&self) {
        run_script(
            "tansu.sh",
            &[
                "start",
                utf8(self.dir.path()),
                &self.port.to_string(),
                "--durable",
            ],
        );
    }

    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("tansu.log"), 80)
    }

    /// Every panic in the broker's log (message and location), each tagged with the run of the
    /// broker it happened in (0 = the first start). Tansu's storage task can die while the
    /// listener keeps answering; every request then fails.
    pub fn panics(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
        let mut run = 0;
        let mut found = Vec::new();
        let mut lines = log.lines().peekable();
        while let Some(line) = lines.next() {
            if line.starts_with("tansu broker ") {
                run += 1;
            }
            if line.contains("panicked at") {
                let message = lines.peek().copied().unwrap_or_default();
                found.push(format!("run {}: {} {message}", run - 1, without_ansi(line)));
            }
        }
        found
    }

    /// Whether the broker started last has panicked.
    pub fn panicked_since_start(&self) -> bool {
        let log = std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
        log.rsplit("tansu broker ")
            .next()
            .is_some_and(|current| current.contains("panicked at"))
    }
}

impl Drop for TestTansu {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- tansu panics -----\n{}\n----- tansu log (tail) -----\n{}\n-----",
                self.panics().join("\n"),
                self.log_tail()
            );
        }
        let _ = Command::new(script("tansu.sh"))
            .args(["stop", self.dir.path().to_str().unwrap_or_default()])
            .output();
    }
}

/// A private SecantusDB (MongoDB wire protocol), data in its own directory.
pub struct TestMongo {
    pub port: u16,
    /// The database Parley writes (`PARLEY__MONGO__DATABASE`).
    pub database_name: String,
    dir: tempfile::TempDir,
}

impl TestMongo {
    /// Picks a port and a directory without starting the server.
    pub fn unstarted(database_name: &str) -> Self {
        Self {
            port: free_port(),
            database_name: database_name.to_owned(),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn start(database_name: &str) -> Self {
        let mongo = Self::unstarted(database_name);
        mongo.resume();
        mongo
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    pub fn stop(&self) {
        run_script("secantus.sh", &["stop", utf8(self.dir.path())]);
    }

    pub fn resume(&self) {
        run_script(
            "secantus.sh",
            &["start", utf8(self.dir.path()), &self.port.to_string()],
        );
    }

    /// A driver handle on Parley's database, for direct queries.
    pub async fn database(&self) -> Database {
        let client = mongodb::Client::with_uri_str(format!(
            "{}?serverSelectionTimeoutMS=5000&connectTimeoutMS=5000",
            self.uri()
        ))
        .await
        .expect("mongodb client");
        client.database(&self.database_name)
    }

    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("secantus.log"), 40)
    }
}

impl Drop for TestMongo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- secantus log (tail) -----\n{}\n-----",
                self.log_tail()
            );
        }
        let _ = Command::new(script("secantus.sh"))
            .args(["stop", self.dir.path().to_str().unwrap_or_default()])
            .output();
    }
}

/// The `ingest` binary beside `parley-server` in the target directory (or under
/// `$CARGO_TARGET_DIR/debug`). Panics with the build command when it is missing.
pub fn ingest_binary() -> PathBuf {
    let beside_server = Path::new(env!("CARGO_BIN_EXE_parley-server")).with_file_name("ingest");
    let candidates = [
        Some(beside_server),
        std::env::var_os("CARGO_TARGET_DIR")
            .map(|dir| PathBuf::from(dir).join("debug").join("ingest")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/ingest")),
    ];
    candidates
        .iter()
        .flatten()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the ingest binary is missing (looked at {candidates:?}): build it with \
                 `cargo build -p ingest` before running the durable tests"
            )
        })
}

/// The settings both `ingest` and the nodes need to reach Kafka and MongoDB.
pub fn pipeline_env(tansu: &TestTansu, mongo: &TestMongo) -> Vec<(String, String)> {
    [
        ("PARLEY__KAFKA__BROKERS", tansu.brokers()),
        // Tansu 0.6 cannot fetch from inside a multi-record batch.
        ("PARLEY__KAFKA__MAX_BATCH_RECORDS", "1".to_owned()),
        ("PARLEY__KAFKA__SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("PARLEY__KAFKA__PARTITIONS", PARTITIONS.to_owned()),
        ("PARLEY__MONGO__URI", mongo.uri()),
        ("PARLEY__MONGO__DATABASE", mongo.database_name.clone()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// A raw `GET` against `addr`; the status and the body.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::other("http timeout"))??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// The sum of a metric's samples (all label sets) in a Prometheus text body; `None` when absent.
pub fn metric_in(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|sum, value| sum + value)
}

/// The real `ingest` binary, run with its HTTP endpoints on a free port.
pub struct TestIngest {
    child: Option<Child>,
    /// `run` (the ingest) or `search` (the search role).
    command: &'static str,
    /// `host:port` of `/healthz`, `/readyz`, `/metrics`.
    pub addr: String,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    _temp: tempfile::TempDir,
}

fn ingest_command(env: &[(String, String)], log_path: &Path) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("ingest log file");
    let mut command = Command::new(ingest_binary());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PARLEY__INGEST__BIND", "127.0.0.1:0")
        .env("PARLEY__LOG__LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

impl TestIngest {
    /// Runs `ingest setup` (it waits for Kafka and MongoDB, creates the topics and indexes) and
    /// asserts that it prints `ingest setup done` and exits 0 within `limit`.
    pub async fn setup(env: &[(String, String)], limit: Duration) {
        Self::run_once(env, "setup", limit).await;
    }

    /// Runs `ingest <command>` to its end and asserts that it prints `ingest <command> done`
    /// and exits 0 within `limit`; returns what it printed.
    pub async fn run_once(env: &[(String, String)], command: &str, limit: Duration) -> String {
        let temp = tempfile::tempdir().expect("temp dir");
        let log_path = temp.path().join(format!("ingest-{command}.log"));
        let mut child = ingest_command(env, &log_path)
            .arg(command)
            .spawn()
            .expect("ingest starts");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let deadline = tokio::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stdout = reader.join().unwrap_or_default();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let Some(status) = status else {
            panic!(
                "`ingest {command}` did not finish within {limit:?}\nstdout:\n{stdout}\nlog:\n{log}"
            );
        };
        assert!(
            status.success() && stdout.contains(&format!("ingest {command} done")),
            "`ingest {command}` failed ({status})\nstdout:\n{stdout}\nlog:\n{log}"
        );
        stdout
    }

    /// Starts `ingest run` and waits until it prints its address (not until it is ready).
    pub async fn start(env: &[(String, String)]) -> Self {
        Self::start_command("run", env).await
    }

    /// Starts the search role, `ingest search`, and waits until it prints its address.
    pub async fn start_search_role(env: &[(String, String)]) -> Self {
        Self::start_command("search", env).await
    }

    async fn start_command(command: &'static str, env: &[(String, String)]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut ingest = Self {
            child: None,
            command,
            addr: String::new(),
            env: env.to_vec(),
            log_path: temp.path().join("ingest.log"),
            _temp: temp,
        };
        ingest.spawn().await;
        ingest
    }

    async fn spawn(&mut self) {
        let mut child = ingest_command(&self.env, &self.log_path)
            .arg(self.command)
            .spawn()
            .expect("ingest starts");
        let stdout = child.stdout.take().expect("stdout");
        let log_path = self.log_path.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        // Reads stdout for the address line, then copies the rest into the log.
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("ingest listening on ") {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(addr.trim().to_owned());
                        continue;
                    }
                }
                if let Ok(mut log) = std::fs::OpenOptions::new().append(true).open(&log_path) {
                    let _ = writeln!(log, "[stdout] {line}");
                }
            }
        });
        let addr =
            tokio::task::spawn_blocking(move || receiver.recv_timeout(Duration::from_secs(30)))
                .await
                .expect("reader");
        self.child = Some(child);
        match addr {
            Ok(addr) => self.addr = addr,
            Err(_) => {
                self.dump_log();
                panic!("ingest did not print `ingest listening on <addr>`");
            }
        }
    }

    /// The status of `/readyz` (0 when it does not answer).
    pub async fn readyz(&self) -> u16 {
        http_get(&self.addr, "/readyz")
            .await
            .map_or(0, |(status, _)| status)
    }

    /// Waits until `/readyz` answers 200 (panics with the log after `limit`).
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.readyz().await != 200 {
            if tokio::time::Instant::now() > deadline {
                self.dump_log();
                panic!("ingest never became ready within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The sum of a metric's samples in `/metrics`; `None` when it is not exposed.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (status, body) = http_get(&self.addr, "/metrics").await.ok()?;
        assert_eq!(status, 200, "ingest /metrics: {body}");
        metric_in(&body, name)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().expect("try_wait").is_none())
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("wait");
        }
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("ingest runs").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit; its status, or `None` after `limit`.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Starts the binary again with the same settings (`kill -9` first if it still runs).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn dump_log(&self) {
        eprintln!(
            "----- ingest log ({}) -----\n{}\n-----",
            self.log_path.display(),
            self.log()
        );
    }
}

impl Drop for TestIngest {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_log();
        }
        self.kill9();
    }
}

/// Redis, Tansu, MongoDB, one ingest process and N parley-server nodes in durable mode.
/// Fields drop in order: the nodes and ingest stop before the services they use.
pub struct DurableCluster {
    pub nodes: Vec<TestServer>,
    pub ingest: TestIngest,
    pub tansu: TestTansu,
    pub mongo: TestMongo,
    pub redis: TestRedis,
    /// Parley's MongoDB database, for direct queries.
    pub db: Database,
    node_env: Vec<(String, String)>,
}

impl DurableCluster {
    /// Starts the services, runs `ingest setup`, then starts ingest and `nodes` nodes (each
    /// with `node_env` on top of the durable settings) and waits until all are ready.
    /// `database` names the MongoDB database (one per test).
    pub async fn start(database: &str, nodes: usize, node_env: &[(&str, &str)]) -> Self {
        Self::start_with(database, nodes, &[], node_env).await
    }

    /// [`DurableCluster::start`] with `pipeline_extra` on top of the Kafka and MongoDB settings
    /// of ingest and of every node.
    pub async fn start_with(
        database: &str,
        nodes: usize,
        pipeline_extra: &[(&str, &str)],
        node_env: &[(&str, &str)],
    ) -> Self {
        let redis = TestRedis::start();
        let tansu = TestTansu::start();
        let mongo = TestMongo::start(database);
        let mut pipeline = pipeline_env(&tansu, &mongo);
        pipeline.extend(
            pipeline_extra
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        );
        TestIngest::setup(&pipeline, PIPELINE_WAIT).await;
        let ingest = TestIngest::start(&pipeline).await;
        ingest.wait_ready(PIPELINE_WAIT).await;
        let mut all_node_env = node_settings(&redis, &pipeline);
        all_node_env.extend(
            node_env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        );
        let db = mongo.database().await;
        let mut cluster = Self {
            nodes: Vec::new(),
            ingest,
            tansu,
            mongo,
            redis,
            db,
            node_env: all_node_env,
        };
        for _ in 0..nodes {
            let node = cluster.start_node().await;
            cluster.nodes.push(node);
        }
        cluster
    }

    /// One more node with the cluster's settings, started and ready.
    pub async fn start_node(&self) -> TestServer {
        let env: Vec<(&str, &str)> = self
            .node_env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        TestServer::start_with(&env).await
    }

    /// The settings of ingest (for `ingest setup` or another ingest process).
    pub fn pipeline_env(&self) -> Vec<(String, String)> {
        pipeline_env(&self.tansu, &self.mongo)
    }
}

/// Everything a durable node needs: Redis, Kafka, MongoDB, and no rate limit in the way.
pub fn node_settings(redis: &TestRedis, pipeline: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("PARLEY__REDIS__URL".to_owned(), redis.url()),
        (
            "PARLEY__RATE_LIMIT__PER_SECOND".to_owned(),
            "10000".to_owned(),
        ),
        ("PARLEY__RATE_LIMIT__BURST".to_owned(), "10000".to_owned()),
    ];
    env.extend_from_slice(pipeline);
    env
}

/// The `data` of the first event named `name` whose data passes `check`, read for at most
/// `limit` (the durable pipeline may take longer than [`super::WAIT`]). Other frames stay queued.
pub async fn event_within(
    client: &mut Client,
    name: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let matches = |frame: &Value| frame["ev"] == name && check(&frame["data"]);
    if let Some(index) = client.events.iter().position(matches) {
        return client.events.remove(index).expect("index")["data"].clone();
    }
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, client.ws.next())
            .await
            .unwrap_or_else(|_| panic!("no matching {name} within {limit:?}"))
            .expect("connection ended")
            .expect("websocket error");
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                if matches(&frame) {
                    return frame["data"].clone();
                }
                client.events.push_back(frame);
            }
            Message::Close(frame) => {
                panic!("connection closed while waiting for {name}: {frame:?}")
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MongoDB, read directly.

/// Every document of `collection` matching `filter`, sorted by `sort`.
pub async fn find_all(
    db: &Database,
    collection: &str,
    filter: Document,
    sort: Document,
) -> Vec<Document> {
    db.collection::<Document>(collection)
        .find(filter)
        .sort(sort)
        .await
        .unwrap_or_else(|error| panic!("find in {collection}: {error}"))
        .try_collect()
        .await
        .unwrap_or_else(|error| panic!("reading {collection}: {error}"))
}

/// Polls `collection` until a document matching `filter` satisfies `check` (returns it) or
/// [`PIPELINE_WAIT`] passes (panics with what was last seen). Ingest is asynchronous.
pub async fn wait_for_document(
    db: &Database,
    collection: &str,
    filter: Document,
    what: &str,
    check: impl Fn(&Document) -> bool,
) -> Document {
    let found = wait_for_documents(db, collection, filter, what, |found| {
        found.iter().any(&check)
    })
    .await;
    found
        .into_iter()
        .find(|document| check(document))
        .expect("the check passed")
}

/// Polls `collection` until the documents matching `filter`, all together, satisfy `check`
/// (returns them) or [`PIPELINE_WAIT`] passes (panics with what was last seen). For states a
/// single document cannot show, such as one having gone.
pub async fn wait_for_documents(
    db: &Database,
    collection: &str,
    filter: Document,
    what: &str,
    check: impl Fn(&[Document]) -> bool,
) -> Vec<Document> {
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    let mut last = Vec::new();
    loop {
        match db
            .collection::<Document>(collection)
            .find(filter.clone())
            .await
        {
            Ok(cursor) => match cursor.try_collect::<Vec<Document>>().await {
                Ok(found) => last = found,
                Err(error) => eprintln!("reading {collection}: {error}"),
            },
            Err(error) => eprintln!("find in {collection}: {error}"),
        }
        if check(&last) {
            return last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the documents in {collection} matching {filter} did not pass the check \
             within {PIPELINE_WAIT:?}; last seen: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The three collections, every document in full, in a stable order.
pub async fn snapshot(db: &Database) -> BTreeMap<&'static str, Vec<Document>> {
    let mut collections = BTreeMap::new();
    collections.insert(
        "messages",
        find_all(db, "messages", doc! {}, doc! { "_id": 1 }).await,
    );
    collections.insert(
        "conversations",
        find_all(db, "conversations", doc! {}, doc! { "_id": 1 }).await,
    );
    collections.insert(
        "participants",
        find_all(
            db,
            "participants",
            doc! {},
            doc! { "conversation_id": 1, "user_id": 1 },
        )
        .await,
    );
    collections
}

/// The `record` field (the exact record as JSON) of a document.
pub fn record(document: &Document) -> serde_json::Value {
    let text = document
        .get_str("record")
        .unwrap_or_else(|_| panic!("document without a record string: {document}"));
    serde_json::from_str(text).expect("record is JSON")
}

/// An integer field stored as int32 or int64.
pub fn integer(document: &Document, field: &str) -> Option<i64> {
    match document.get(field)? {
        mongodb::bson::Bson::Int32(value) => Some(i64::from(*value)),
        mongodb::bson::Bson::Int64(value) => Some(*value),
        mongodb::bson::Bson::Double(value) => Some(*value as i64),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Kafka, read and reset directly.

/// Per topic and partition of `topics`: (low, high) watermarks.
pub async fn watermarks(brokers: &str, topics: &[&str]) -> BTreeMap<(String, i32), (i64, i64)> {
    let brokers = brokers.to_owned();
    let topics: Vec<String> = topics.iter().map(|topic| topic.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer = admin_consumer(&brokers, "parley-tests-watermarks");
        let mut marks = BTreeMap::new();
        for topic in &topics {
            for partition in partitions(&consumer, topic) {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, Duration::from_secs(10))
                    .unwrap_or_else(|error| panic!("watermarks of {topic}/{partition}: {error}"));
                marks.insert((topic.clone(), partition), (low, high));
            }
        }
        marks
    })
    .await
    .expect("watermarks task")
}

/// Per topic and partition of `topics`: the offset `group` committed (`None` when none).
pub async fn committed(
    brokers: &str,
    group: &str,
    topics: &[&str],
) -> BTreeMap<(String, i32), Option<i64>> {
    let brokers = brokers.to_owned();
    let group = group.to_owned();
    let topics: Vec<String> = topics.iter().map(|topic| topic.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer = admin_consumer(&brokers, &group);
        let mut list = TopicPartitionList::new();
        for topic in &topics {
            for partition in partitions(&consumer, topic) {
                list.add_partition(topic, partition);
            }
        }
        let offsets = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap_or_else(|error| panic!("committed offsets of {group}: {error}"));
        offsets
            .elements()
            .iter()
            .map(|element| {
                let offset = match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                };
                ((element.topic().to_owned(), element.partition()), offset)
            })
            .collect()
    })
    .await
    .expect("committed task")
}

/// Commits, for `group`, the low watermark of every partition of `topics`: the group reads
/// everything again. Only valid while the group has no member (stop ingest first).
pub async fn reset_group_offsets(brokers: &str, group: &str, topics: &[&str]) {
    let brokers = brokers.to_owned();
    let group = group.to_owned();
    let topics: Vec<String> = topics.iter().map(|topic| topic.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer = admin_consumer(&brokers, &group);
        let mut list = TopicPartitionList::new();
        for topic in &topics {
            for partition in partitions(&consumer, topic) {
                let (low, _) = consumer
                    .fetch_watermarks(topic, partition, Duration::from_secs(10))
                    .unwrap_or_else(|error| panic!("watermarks of {topic}/{partition}: {error}"));
                list.add_partition_offset(topic, partition, Offset::Offset(low))
                    .expect("offset");
            }
        }
        consumer.assign(&list).expect("assign");
        consumer
            .commit(&list, CommitMode::Sync)
            .unwrap_or_else(|error| panic!("resetting the offsets of {group}: {error}"));
    })
    .await
    .expect("reset task");
}

/// A consumer that never subscribes: metadata, watermarks and offsets of `group`.
fn admin_consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("socket.timeout.ms", "10000")
        .create()
        .expect("kafka consumer")
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("metadata of {topic}: {error}"));
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic)
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect();
    assert!(
        !partitions.is_empty(),
        "topic {topic} has no partitions (did `ingest setup` run?)"
    );
    partitions
}

/// Waits until `group` has committed, on every partition of `topics`, the high watermark: it
/// consumed (and, for ingest, applied) everything on the log. Returns the number of records on
/// those partitions (high minus low watermarks). Panics after `limit` showing the lag.
pub async fn wait_caught_up(brokers: &str, group: &str, topics: &[&str], limit: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let marks = watermarks(brokers, topics).await;
        let offsets = committed(brokers, group, topics).await;
        let behind: Vec<_> = marks
            .iter()
            .filter(|(key, (low, high))| {
                let position = offsets.get(*key).copied().flatten();
                match position {
                    Some(position) => position < *high,
                    None => high > low,
                }
            })
            .map(|(key, marks)| (key.clone(), *marks, offsets.get(key).copied().flatten()))
            .collect();
        if behind.is_empty() {
            return marks
                .values()
                .map(|(low, high)| u64::try_from(high - low).expect("watermarks"))
                .sum();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {group} did not catch up within {limit:?}; behind ((topic, partition), \
             (low, high), committed): {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until `collection` holds `count` documents matching `filter` (ingest stores a burst of
/// messages a while after their acks), for at most `limit`.
pub async fn wait_for_count(
    db: &Database,
    collection: &str,
    filter: Document,
    count: u64,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let found = db
            .collection::<Document>(collection)
            .count_documents(filter.clone())
            .await;
        if matches!(found, Ok(found) if found == count) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{collection} matching {filter}: {found:?} documents, not {count}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
