//! A private Tansu broker (Kafka protocol) for one test: its own free port, in-memory storage,
//! killed when the guard drops (also when the test panics).
//!
//! The binary is the one `scripts/services/tansu.sh bin` names (`scripts/services/tansu.sh install`
//! installs it). When it is missing the test fails (it never skips silently).

// Every test crate that includes `common` compiles this; only the Kafka tests use it.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use super::free_ports::free_port;

const START_WITHIN: Duration = Duration::from_secs(10);

pub struct TansuBroker {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl TansuBroker {
    /// Starts a fresh broker and waits until it accepts connections.
    pub fn start() -> TansuBroker {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(broker) => return broker,
                Err(error) => last_error = error,
            }
        }
        panic!("could not start tansu: {last_error}");
    }

    fn try_start() -> Result<TansuBroker, String> {
        let binary = tansu_binary();
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let port = free_port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log"))
            .map_err(|error| format!("creating the log: {error}"))?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("cloning the log: {error}"))?;
        let spawned = Command::new(&binary)
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => return Err(format!("spawning {}: {error}", binary.display())),
        };
        let mut broker = TansuBroker {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = broker.child.as_mut().map(Child::try_wait) {
                return Err(format!("tansu exited with {status}: {}", broker.log()));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(broker);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "tansu did not listen within {START_WITHIN:?}: {}",
            broker.log()
        ))
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker now (the outage tests); dropping the guard afterwards is fine.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The broker's output so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The broker binary `scripts/services/tansu.sh bin` names (the cached sqlite-capable build, else
/// one on PATH); panics naming the install script when there is none.
fn tansu_binary() -> PathBuf {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/tansu.sh");
    let output = std::process::Command::new(&script)
        .arg("bin")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || path.is_empty() {
        panic!(
            "tansu is not installed: run `scripts/services/tansu.sh install` \
             (the Kafka tests need a real Kafka-protocol broker; they do not skip)"
        )
    }
    PathBuf::from(path)
}

/// Produces `payload` to `topic` with `key`, the way a broken producer would (not a log event).
pub async fn produce_raw(brokers: &str, topic: &str, key: &str, payload: &[u8]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("batch.num.messages", "1")
        .create()
        .expect("raw producer");
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("produce a raw record");
}
