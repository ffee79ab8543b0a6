//! Sockets: connections spread over local source addresses and server URLs, the WebSocket
//! handshake, and a tiny HTTP/1.1 client for the token endpoint.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;

pub type Socket = WebSocketStream<TcpStream>;

/// How long one connection attempt or HTTP exchange may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Where connection number `i` goes and where it comes from: the server URLs round-robin, and
/// for each URL the local source addresses `127.0.0.1..=127.0.0.N` round-robin, so that each
/// (source, destination) pair has its own ephemeral port range.
#[derive(Debug, Clone)]
pub struct Endpoints {
    urls: Vec<String>,
    sources: Vec<IpAddr>,
}

impl Endpoints {
    pub fn new(urls: Vec<String>, source_count: usize) -> anyhow::Result<Self> {
        if urls.is_empty() {
            bail!("no server URL (give --url)");
        }
        if source_count == 0 || source_count > 254 {
            bail!("--source-addrs must be 1 to 254");
        }
        let sources = (1..=source_count as u8)
            .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .collect();
        Ok(Self { urls, sources })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    pub fn pick(&self, index: usize) -> (&str, IpAddr) {
        let url = &self.urls[index % self.urls.len()];
        let source = self.sources[(index / self.urls.len()) % self.sources.len()];
        (url, source)
    }
}

/// `host:port` of a `ws://host:port/path` URL.
pub fn authority(url: &str) -> anyhow::Result<&str> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| anyhow!("only ws:// and http:// URLs are supported: {url}"))?;
    Ok(rest.split(['/', '?']).next().unwrap_or(rest))
}

async fn resolve(authority: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("cannot resolve {authority}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| anyhow!("{authority} has no IPv4 address"))
}

/// A TCP connection from `source` (port chosen by the kernel).
pub async fn connect_tcp(authority: &str, source: IpAddr) -> anyhow::Result<TcpStream> {
    let target = resolve(authority).await?;
    let socket = TcpSocket::new_v4()?;
    if target.ip().is_loopback() {
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("cannot bind source address {source}"))?;
    }
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(target))
        .await
        .map_err(|_| anyhow!("connect to {target} timed out"))?
        .with_context(|| format!("connect to {target} from {source}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a WebSocket to `url` from `source`.
pub async fn connect_websocket(url: &str, source: IpAddr) -> anyhow::Result<Socket> {
    let stream = connect_tcp(authority(url)?, source).await?;
    let (socket, _response) =
        tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::client_async(url, stream))
            .await
            .map_err(|_| anyhow!("websocket handshake with {url} timed out"))?
            .map_err(|error| anyhow!("websocket handshake with {url}: {error}"))?;
    Ok(socket)
}

/// One HTTP/1.1 request (`Connection: close`); returns the status and the body.
pub async fn http_request(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = connect_tcp(authority, IpAddr::V4(Ipv4Addr::LOCALHOST)).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("http {method} {path} timed out"))??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("malformed http response: {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// Gets a client token for `user_id` from `POST /api/v1/auth/token`.
pub async fn fetch_token(authority: &str, api_key: &str, user_id: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"user_id": user_id, "ttl_secs": 86_400}).to_string();
    let (status, body) = http_request(
        authority,
        "POST",
        "/api/v1/auth/token",
        &[("X-Api-Key", api_key)],
        &body,
    )
    .await?;
    if status != 200 {
        bail!("token request for {user_id} failed: {status} {body}");
    }
    #[derive(serde::Deserialize)]
    struct TokenReply {
        token: String,
    }
    let reply: TokenReply = serde_json::from_str(&body).context("token reply")?;
    Ok(reply.token)
}

/// Reads `VmRSS` of a process from `/proc/<pid>/status`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_over_urls_then_sources() {
        let endpoints = Endpoints::new(vec!["ws://a/ws".into(), "ws://b/ws".into()], 3).unwrap();
        let picks: Vec<_> = (0..6)
            .map(|index| {
                let (url, source) = endpoints.pick(index);
                (url.to_owned(), source.to_string())
            })
            .collect();
        assert_eq!(picks[0], ("ws://a/ws".into(), "127.0.0.1".into()));
        assert_eq!(picks[1], ("ws://b/ws".into(), "127.0.0.1".into()));
        assert_eq!(picks[2], ("ws://a/ws".into(), "127.0.0.2".into()));
        assert_eq!(picks[5], ("ws://b/ws".into(), "127.0.0.3".into()));
    }

    #[test]
    fn authority_of_urls() {
        assert_eq!(
            authority("ws://127.0.0.1:8080/ws?room=1").unwrap(),
            "127.0.0.1:8080"
        );
        assert!(authority("wss://x/ws").is_err());
    }

    #[test]
    fn dechunks_bodies() {
        assert_eq!(dechunk("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"), "hello!");
    }
}
