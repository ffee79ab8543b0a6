//! A private SecantusDB (a MongoDB-wire server) for one test: its own free port, in-memory
//! storage, a temporary directory for its log, killed when the guard drops (also when the test
//! panics).
//!
//! `secantusd-py` comes from the venv that `scripts/services/secantus.sh install` creates
//! (`$PARLEY_TOOLS_DIR/secantus-venv`, default `~/.cache/parley`), or from `$SECANTUSD` when set.
//! When it is missing the test fails (it never skips silently).

// Every test crate that includes `common` compiles this; only the MongoDB tests use it.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use super::redis::free_port;

const START_WITHIN: Duration = Duration::from_secs(20);

pub struct SecantusServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

/// Where `secantus.sh install` puts the server.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SECANTUSD") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("PARLEY_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/parley")))
        .unwrap_or_else(|| PathBuf::from(".cache/parley"));
    tools.join("secantus-venv/bin/secantusd-py")
}

/// [`binary`], or a panic naming the install script.
fn installed_binary() -> PathBuf {
    let binary = binary();
    assert!(
        binary.exists(),
        "{} is missing: run `scripts/services/secantus.sh install` (the MongoDB tests need a \
         real MongoDB-wire server; they do not skip)",
        binary.display()
    );
    binary
}

impl SecantusServer {
    /// Starts a fresh server and waits until it accepts connections.
    pub fn start() -> SecantusServer {
        let binary = installed_binary();
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(&binary) {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("could not start secantusd-py: {last_error}");
    }

    /// Starts a fresh server on `port` (chosen earlier, e.g. to start a client before the
    /// server exists) and waits until it accepts connections.
    pub fn start_on_port(port: u16) -> SecantusServer {
        let binary = installed_binary();
        Self::try_start_on(&binary, port)
            .unwrap_or_else(|error| panic!("could not start secantusd-py on port {port}: {error}"))
    }

    fn try_start(binary: &PathBuf) -> Result<SecantusServer, String> {
        Self::try_start_on(binary, free_port())
    }

    fn try_start_on(binary: &PathBuf, port: u16) -> Result<SecantusServer, String> {
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let log = std::fs::File::create(dir.path().join("secantus.log"))
            .map_err(|error| error.to_string())?;
        let log_err = log.try_clone().map_err(|error| error.to_string())?;
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--storage-path", ":memory:"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|error| format!("spawning {}: {error}", binary.display()))?;
        let mut server = SecantusServer { child, port, dir };
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "secantusd-py exited with {status}: {}",
                    server.log()
                ));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "no connection within {START_WITHIN:?}: {}",
            server.log()
        ))
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("secantus.log")).unwrap_or_default()
    }
}

impl Drop for SecantusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
