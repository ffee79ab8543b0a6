//! What the `ingest` binary's tests share: the settings they give it, an [`IngestProcess`]
//! that prints its log when a test fails, and small HTTP and metrics helpers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use persistence::kafka::KafkaConfig;
use ports::contract::fixtures::unique;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

pub const PARTITIONS: i32 = 2;
/// Upper bound for anything the tests wait for (not a timing assertion: a failure bound).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The settings every test's ingest gets: Tansu needs one record per batch and accepts short
/// sessions (fast group joins); short backoffs keep the waits short.
pub fn ingest_env(brokers: &str, mongo_uri: &str, database: &str) -> Vec<(String, String)> {
    [
        ("PARLEY__KAFKA__BROKERS", brokers),
        ("PARLEY__KAFKA__MAX_BATCH_RECORDS", "1"),
        ("PARLEY__KAFKA__SESSION_TIMEOUT_MS", "6000"),
        ("PARLEY__KAFKA__PARTITIONS", &PARTITIONS.to_string()),
        ("PARLEY__MONGO__URI", mongo_uri),
        ("PARLEY__MONGO__DATABASE", database),
        ("PARLEY__MONGO__SERVER_SELECTION_TIMEOUT_MS", "1000"),
        ("PARLEY__INGEST__BIND", "127.0.0.1:0"),
        ("PARLEY__INGEST__GROUP", &unique("ingest")),
        ("PARLEY__INGEST__MAX_BACKOFF_MS", "500"),
        ("PARLEY__LOG__LEVEL", "info,ingest=debug,persistence=debug"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

/// One `ingest` process: killed when dropped; its stderr (the log) is printed when the test
/// fails.
pub struct IngestProcess {
    child: Child,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl IngestProcess {
    pub fn start(args: &[&str], env: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log_path = dir.path().join("ingest.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("PARLEY__")) {
            command.env_remove(key);
        }
        command.envs(env.iter().map(|(key, value)| (key, value)));
        let mut child = command.spawn().expect("spawn ingest");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self {
            child,
            stdout,
            log_path,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The next stdout line.
    pub async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(PATIENCE, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("no stdout line within {PATIENCE:?}\n{}", self.log()))
            .expect("read stdout")
    }

    /// Waits for `ingest listening on <addr>`.
    pub async fn listening_address(&mut self) -> SocketAddr {
        let line = self.line().await.unwrap_or_default();
        line.strip_prefix("ingest listening on ")
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}\n{}", self.log()))
    }

    pub async fn exit_status(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("ingest still runs after {PATIENCE:?}\n{}", self.log()))
            .expect("wait for ingest")
    }

    pub fn terminate(&self) {
        let pid = self.child.id().expect("ingest still runs");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
    }
}

impl Drop for IngestProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- ingest log ----\n{}---- end ----", self.log());
        }
    }
}

/// Runs `ingest probe URL`; whether it exited 0.
pub fn probe(url: &str) -> bool {
    std::process::Command::new(env!("CARGO_BIN_EXE_ingest"))
        .args(["probe", url])
        .output()
        .expect("ingest probe runs")
        .status
        .success()
}

/// `GET path` → (status, body).
pub async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to ingest");
    let request = format!("GET {path} HTTP/1.1\r\nHost: ingest\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Calls `probe` until it returns `Some`, or panics with `what` and the ingest log.
pub async fn eventually<T, Fut>(
    ingest: &IngestProcess,
    what: &str,
    mut probe: impl FnMut() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}\n{}",
            ingest.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The samples of `name` in a Prometheus text body, by their label text.
pub fn samples(body: &str, name: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?;
            if !(labels.is_empty() || labels.starts_with('{')) {
                return None;
            }
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

pub fn test_kafka_config(brokers: String) -> KafkaConfig {
    KafkaConfig::new(brokers)
        .with_client_id(unique("ingest-test"))
        .with_max_batch_records(1)
        .with_session_timeout(Duration::from_secs(6))
}

/// The `messages` collection of `database` on the MongoDB server at `uri`.
pub async fn messages_collection(
    uri: &str,
    database: &str,
) -> mongodb::Collection<mongodb::bson::Document> {
    mongodb::Client::with_uri_str(uri)
        .await
        .expect("mongodb client")
        .database(database)
        .collection(persistence::mongo::MESSAGES_COLLECTION)
}
