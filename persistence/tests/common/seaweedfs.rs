//! A private SeaweedFS (master, volume, filer and S3 gateway) for one test, started and stopped
//! by `scripts/services/seaweedfs.sh` on free ports, in a temporary directory; stopped when the
//! guard drops (also when the test panics). The script must have been installed
//! (`seaweedfs.sh install`); when it is missing the test fails, it never skips.

// Every test crate that includes `common` compiles this; only the object storage tests use it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

pub const BUCKET: &str = "parley";
pub const ACCESS_KEY: &str = "parley-test";
pub const SECRET_KEY: &str = "parley-test-secret";

pub struct SeaweedServer {
    dir: TempDir,
    s3_port: u16,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/seaweedfs.sh")
}

/// A base port `p` with `p..p+3` and `p+10000..p+10003` free (the S3, master, volume and filer
/// ports and their gRPC neighbours), below the ephemeral range (see `free_ports`).
fn free_port_block() -> u16 {
    super::free_ports::free_block(4, 10_000)
}

impl SeaweedServer {
    /// Starts it and waits until the bucket exists.
    pub fn start() -> SeaweedServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let s3_port = free_port_block();
        let output = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .arg(s3_port.to_string())
            .env("S3_BUCKET", BUCKET)
            .env("S3_ACCESS_KEY", ACCESS_KEY)
            .env("S3_SECRET_KEY", SECRET_KEY)
            .output()
            .expect("run seaweedfs.sh (run `scripts/services/seaweedfs.sh install` first)");
        let server = SeaweedServer { dir, s3_port };
        assert!(
            output.status.success(),
            "seaweedfs.sh start failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The last `lines` lines of its log (master, volume, filer and S3 gateway together).
    pub fn log_tail(&self, lines: usize) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("seaweedfs.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for SeaweedServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- seaweedfs log (tail) -----\n{}\n-----",
                self.log_tail(40)
            );
        }
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
