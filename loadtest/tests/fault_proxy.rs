//! The real `fault-proxy` process between a client and an echo server on 127.0.0.1: it forwards,
//! adds the latency it is told, stalls without closing (and the held bytes flow on after
//! `pass`), and drops every open connection while accepting new ones.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(10);

/// An echo server on a free port; returns its address.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    address
}

struct Proxy {
    _child: Child,
    listen: String,
    control: String,
}

impl Proxy {
    async fn start(target: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fault-proxy"))
            .args(["--listen", "127.0.0.1:0", "--target", target])
            .args(["--control", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fault-proxy");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("fault-proxy announces itself")
            .expect("read stdout")
            .unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"fault-proxy"), "{line}");
        Self {
            _child: child,
            listen: words[3].to_owned(),
            control: words[6].to_owned(),
        }
    }

    /// Sends a control request; the answer's status code and body.
    async fn control(&self, method: &str, target: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.control).await.expect("control");
        let request = format!("{method} {target} HTTP/1.1\r\nhost: proxy\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("answer");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = response.split_once("\r\n\r\n").unwrap_or_default().1;
        (status, body.trim().to_owned())
    }
}

/// Writes `text` and reads its echo; how long that took.
async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(text).await.expect("write");
    let mut echoed = vec![0_u8; text.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut echoed))
        .await
        .expect("echo within patience")
        .expect("read echo");
    assert_eq!(echoed, text);
    started.elapsed()
}

#[tokio::test]
async fn forwards_delays_stalls_and_drops_on_command() {
    let proxy = Proxy::start(&echo_server().await).await;
    let mut stream = TcpStream::connect(&proxy.listen).await.expect("connect");
    round_trip(&mut stream, b"hello").await;

    let (status, body) = proxy.control("POST", "/latency?ms=300").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "latency 300ms (1 connections open)")
    );
    // Held once on the way there and once on the way back.
    assert!(round_trip(&mut stream, b"slow").await >= Duration::from_millis(600));

    assert_eq!(proxy.control("POST", "/stall").await.0, 200);
    stream
        .write_all(b"held")
        .await
        .expect("write while stalled");
    let mut held = [0_u8; 4];
    let stalled = tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut held));
    assert!(stalled.await.is_err(), "nothing comes back while stalled");
    assert_eq!(proxy.control("POST", "/pass").await.0, 200);
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut held))
        .await
        .expect("the held bytes flow on after pass")
        .expect("read");
    assert_eq!(&held, b"held");

    let (status, body) = proxy.control("POST", "/drop").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("pass ("), "{body}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let mut again = TcpStream::connect(&proxy.listen).await.expect("reconnect");
    round_trip(&mut again, b"after the drop").await;

    assert_eq!(proxy.control("POST", "/latency?ms=x").await.0, 400);
    assert_eq!(proxy.control("POST", "/nonsense").await.0, 400);
}
