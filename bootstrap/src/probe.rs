//! `probe URL`: the container health check of both binaries (`parley-server probe`,
//! `ingest probe`), so the runtime image needs no curl or wget.
//!
//! One HTTP/1.1 GET over plain TCP (the endpoints are on the pod's own loopback); healthy
//! means a 2xx status within the timeout.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Upper bound of one probe, connect and answer included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("{0:?} is not an http://host:port/path URL")]
    BadUrl(String),
    #[error("{url}: {problem}")]
    Unreachable { url: String, problem: String },
    #[error("{url} answered {status}")]
    Unhealthy { url: String, status: u16 },
}

/// GETs `url` and returns its status if it is 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let (host_port, path) = split_url(url)?;
    let unreachable = |problem: String| ProbeError::Unreachable {
        url: url.to_owned(),
        problem,
    };
    let deadline = Instant::now() + timeout;
    let address = host_port
        .to_socket_addrs()
        .map_err(|error| unreachable(format!("cannot resolve {host_port}: {error}")))?
        .next()
        .ok_or_else(|| unreachable(format!("{host_port} resolves to nothing")))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|error| unreachable(error.to_string()))?;
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(remaining))
        .and_then(|()| stream.set_write_timeout(Some(remaining)))
        .map_err(|error| unreachable(error.to_string()))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|error| unreachable(error.to_string()))?;
    // The status line is all we need.
    let mut head = Vec::with_capacity(64);
    let mut buffer = [0u8; 256];
    while !head.contains(&b'\n') {
        let read = stream
            .read(&mut buffer)
            .map_err(|error| unreachable(error.to_string()))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let status = parse_status(&head)
        .ok_or_else(|| unreachable("the answer is not an HTTP response".to_owned()))?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Unhealthy {
            url: url.to_owned(),
            status,
        })
    }
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(&str, &str), ProbeError> {
    let bad = || ProbeError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (host_port, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if !host_port.contains(':') || host_port.starts_with(':') {
        return Err(bad());
    }
    Ok((host_port, path))
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&byte| byte == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Runs `probe URL` for a binary's command line: prints the outcome, exit code 0 if healthy.
pub fn run_probe_command(program: &str, url: &str) -> std::process::ExitCode {
    match probe(url, PROBE_TIMEOUT) {
        Ok(status) => {
            println!("{url}: {status}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{program} probe: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `response` to the first request.
    fn serve_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(response.as_bytes());
        });
        format!("http://{address}/readyz")
    }

    #[test]
    fn a_2xx_answer_is_healthy() {
        let url = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(probe(&url, PROBE_TIMEOUT), Ok(200));
    }

    #[test]
    fn a_503_answer_is_unhealthy() {
        let url = serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        assert!(matches!(
            probe(&url, PROBE_TIMEOUT),
            Err(ProbeError::Unhealthy { status: 503, .. })
        ));
    }

    #[test]
    fn nothing_listening_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        assert!(matches!(
            probe(&format!("http://{address}/healthz"), PROBE_TIMEOUT),
            Err(ProbeError::Unreachable { .. })
        ));
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let started = Instant::now();
        let outcome = probe(
            &format!("http://{address}/healthz"),
            Duration::from_millis(200),
        );
        assert!(
            matches!(outcome, Err(ProbeError::Unreachable { .. })),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
    }

    #[test]
    fn urls_are_checked() {
        for url in [
            "https://a:1/x",
            "127.0.0.1:8080/healthz",
            "http://host/x",
            "http://:80/",
        ] {
            assert_eq!(split_url(url), Err(ProbeError::BadUrl(url.to_owned())));
        }
        assert_eq!(split_url("http://a:1"), Ok(("a:1", "/")));
        assert_eq!(split_url("http://a:1/readyz"), Ok(("a:1", "/readyz")));
    }
}
