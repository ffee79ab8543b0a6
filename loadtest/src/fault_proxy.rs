//! A fault-injecting TCP proxy (the `fault-proxy` binary): forwards every connection made to
//! its listen address to one target, and on command from its control endpoint adds latency,
//! stalls (stops forwarding while keeping every connection open) or drops every connection.
//! The chaos run puts one between the nodes and Redis, Kafka or MongoDB; no root, no real
//! network.
//!
//! # Control
//! A tiny HTTP/1.1 endpoint on its own address; every answer is `200` with the fault now in
//! force as one line (`pass`, `latency 200ms`, `stall`), or `400` with the problem:
//! - `POST /pass`: forward normally again (stalled bytes flow on);
//! - `POST /latency?ms=N`: hold every chunk N ms before forwarding it, both directions;
//! - `POST /stall`: forward nothing; connections stay open and new ones are accepted;
//! - `POST /drop`: close every open connection now (both sides), then forward as before;
//! - `GET /`: the fault in force and the connections open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the bytes it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Latency(Duration),
    Stall,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Pass => write!(formatter, "pass"),
            Fault::Latency(delay) => write!(formatter, "latency {}ms", delay.as_millis()),
            Fault::Stall => write!(formatter, "stall"),
        }
    }
}

/// A command of the control endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Set(Fault),
    DropConnections,
    Show,
}

/// Parses a request line's method and target (`POST /latency?ms=200`).
pub fn parse_command(method: &str, target: &str) -> Result<Command, String> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/") => Ok(Command::Show),
        ("POST", "/pass") => Ok(Command::Set(Fault::Pass)),
        ("POST", "/stall") => Ok(Command::Set(Fault::Stall)),
        ("POST", "/drop") => Ok(Command::DropConnections),
        ("POST", "/latency") => {
            let millis = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("ms="))
                .ok_or("latency needs ?ms=N")?;
            let millis: u64 = millis
                .parse()
                .map_err(|_| format!("ms must be a whole number, not {millis:?}"))?;
            Ok(Command::Set(Fault::Latency(Duration::from_millis(millis))))
        }
        _ => Err(format!("no such command: {method} {target}")),
    }
}

/// The proxy's shared state: the fault in force, and a counter that closes every connection
/// when it moves.
#[derive(Clone)]
pub struct Faults {
    fault: watch::Sender<Fault>,
    drops: watch::Sender<u64>,
    open: Arc<AtomicU64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fault: watch::Sender::new(Fault::Pass),
            drops: watch::Sender::new(0),
            open: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Faults {
    /// Applies `command`; the answer line of the control endpoint.
    pub fn apply(&self, command: Command) -> String {
        match command {
            Command::Set(fault) => {
                self.fault.send_replace(fault);
            }
            Command::DropConnections => {
                self.drops.send_modify(|drops| *drops += 1);
            }
            Command::Show => {}
        }
        format!(
            "{} ({} connections open)",
            *self.fault.borrow(),
            self.open.load(Ordering::Relaxed)
        )
    }
}

/// Accepts connections on `listener` and forwards each to `target` until the process ends.
pub async fn serve_proxy(listener: TcpListener, target: String, faults: Faults) {
    loop {
        let (client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("fault-proxy: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (target, faults) = (target.clone(), faults.clone());
        tokio::spawn(async move {
            // A connection made while stalled waits, like its bytes would.
            let mut fault = faults.fault.subscribe();
            if fault
                .wait_for(|fault| *fault != Fault::Stall)
                .await
                .is_err()
            {
                return;
            }
            match TcpStream::connect(&target).await {
                Ok(upstream) => forward(client, upstream, faults).await,
                Err(error) => eprintln!("fault-proxy: connect to {target} failed: {error}"),
            }
        });
    }
}

/// Forwards both directions until either side closes or the connections are dropped.
async fn forward(client: TcpStream, upstream: TcpStream, faults: Faults) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    faults.open.fetch_add(1, Ordering::Relaxed);
    let mut drops = faults.drops.subscribe();
    drops.mark_unchanged();
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    tokio::select! {
        () = pump(client_read, upstream_write, faults.fault.subscribe()) => {}
        () = pump(upstream_read, client_write, faults.fault.subscribe()) => {}
        _ = drops.changed() => {}
    }
    // Both halves of both sockets are dropped here: the peers see the connection close.
    faults.open.fetch_sub(1, Ordering::Relaxed);
}

/// Copies `from` to `to` chunk by chunk, applying the fault in force to each chunk.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut fault: watch::Receiver<Fault>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let now = match fault.wait_for(|fault| *fault != Fault::Stall).await {
            Ok(now) => *now,
            Err(_) => return,
        };
        if let Fault::Latency(delay) = now {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Answers control requests on `listener` until the process ends (see the module docs).
pub async fn serve_control(listener: TcpListener, faults: Faults) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let faults = faults.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &faults).await {
                eprintln!("fault-proxy: control request failed: {error:#}");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, faults: &Faults) -> anyhow::Result<()> {
    let mut request = Vec::new();
    let mut buffer = [0_u8; 1024];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") && request.len() < 8192 {
        let read = stream.read(&mut buffer).await.context("read request")?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&request);
    let mut words = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, body) = match parse_command(method, target) {
        Ok(command) => ("200 OK", faults.apply(command)),
        Err(problem) => ("400 Bad Request", problem),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    stream
        .write_all(response.as_bytes())
        .await
        .context("write answer")?;
    stream.shutdown().await.context("close")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse_command("GET", "/"), Ok(Command::Show));
        assert_eq!(
            parse_command("POST", "/pass"),
            Ok(Command::Set(Fault::Pass))
        );
        assert_eq!(
            parse_command("POST", "/stall"),
            Ok(Command::Set(Fault::Stall))
        );
        assert_eq!(parse_command("POST", "/drop"), Ok(Command::DropConnections));
        assert_eq!(
            parse_command("POST", "/latency?ms=250"),
            Ok(Command::Set(Fault::Latency(Duration::from_millis(250))))
        );
        assert!(parse_command("POST", "/latency").is_err());
        assert!(parse_command("POST", "/latency?ms=soon").is_err());
        assert!(parse_command("GET", "/stall").is_err());
        assert!(parse_command("DELETE", "/").is_err());
    }

    #[test]
    fn the_answer_names_the_fault_in_force() {
        let faults = Faults::default();
        assert_eq!(faults.apply(Command::Show), "pass (0 connections open)");
        let latency = Command::Set(Fault::Latency(Duration::from_millis(20)));
        assert_eq!(faults.apply(latency), "latency 20ms (0 connections open)");
        assert_eq!(
            faults.apply(Command::Set(Fault::Stall)),
            "stall (0 connections open)"
        );
    }
}
