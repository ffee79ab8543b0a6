//! Test harness: starts the real `parley-server` binary on a free port with its own data
//! directory, and talks to it like a third-party client would — raw JSON over WebSocket
//! (tokio-tungstenite) and raw HTTP/1.1 — without importing project code. The server's log is
//! printed when a test fails.

#![allow(dead_code)]

pub mod admin;
pub mod attachments;
// The private SeaweedFS (S3) of the persistence tests, shared through its path.
pub mod durable;
pub mod export;
#[path = "../../../persistence/tests/common/free_ports.rs"]
pub mod free_ports;
pub mod raw;
#[path = "../../../persistence/tests/common/seaweedfs.rs"]
pub mod seaweedfs;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const API_KEY: &str = "test-api-key-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789-0123456789";
/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    child: Option<Child>,
    pub addr: String,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    log_path: PathBuf,
    env: Vec<(String, String)>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `PARLEY__*` settings and waits until it is ready.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        Self::launch(env, true).await
    }

    /// Starts a server and waits only until it listens (it may report not ready).
    pub async fn start_listening(env: &[(&str, &str)]) -> Self {
        Self::launch(env, false).await
    }

    async fn launch(env: &[(&str, &str)], wait_ready: bool) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let env = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let mut server = Self {
            child: None,
            addr: String::new(),
            data_dir,
            log_path: temp.path().join("server.log"),
            _temp: Some(temp),
            env,
        };
        server.spawn(wait_ready).await;
        server
    }

    async fn spawn(&mut self, wait_ready: bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_parley-server"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PARLEY__SERVER__BIND", "127.0.0.1:0")
            .env("PARLEY__SERVER__WORKERS", "2")
            .env("PARLEY__STORAGE__DATA_DIR", &self.data_dir)
            .env("PARLEY__AUTH__API_KEY", API_KEY)
            .env("PARLEY__AUTH__JWT_SECRET", JWT_SECRET)
            .env("PARLEY__LOG__LEVEL", "info,parley=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("parley-server starts");
        let stdout = child.stdout.take().expect("stdout");
        let addr = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let line = lines.next().and_then(Result::ok).unwrap_or_default();
            // Keep draining stdout so the server never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            line.strip_prefix("parley-server listening on ")
                .map(str::to_owned)
        })
        .await
        .expect("reader");
        self.child = Some(child);
        let Some(addr) = addr else {
            self.dump_log();
            panic!("parley-server did not print its address");
        };
        self.addr = addr;
        if wait_ready {
            self.wait_ready(Duration::from_secs(30)).await;
        }
    }

    /// Waits until `/readyz` answers 200 (panics with the log after `limit`).
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok((200, _)) = self.http("GET", "/readyz", &[], None).await {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                self.dump_log();
                panic!("parley-server never became ready");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// Starts the binary again on the same data directory (a new port).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn(true).await;
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn dump_log(&self) {
        eprintln!(
            "----- parley-server log ({}) -----\n{}\n-----",
            self.log_path.display(),
            self.log()
        );
    }

    /// A raw HTTP/1.1 request; returns the status and the body parsed as JSON (or a string).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        self.http_raw(method, path, headers, &body).await
    }

    pub async fn http_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<(u16, Value)> {
        let mut stream = TcpStream::connect(&self.addr).await?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
            .await
            .map_err(|_| std::io::Error::other("http timeout"))??;
        let text = String::from_utf8_lossy(&response).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        Ok((status, value))
    }

    pub async fn token_with(&self, body: Value) -> (u16, Value) {
        self.http(
            "POST",
            "/api/v1/auth/token",
            &[("X-Api-Key", API_KEY)],
            Some(&body),
        )
        .await
        .expect("token request")
    }

    pub async fn token(&self, user_id: &str) -> String {
        let (status, body) = self.token_with(json!({ "user_id": user_id })).await;
        assert_eq!(status, 200, "token: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.addr)
    }

    /// Connects as `user_id` and reads the welcome.
    pub async fn connect(&self, user_id: &str) -> Client {
        let token = self.token(user_id).await;
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url(&token))
            .await
            .expect("websocket connects");
        Client::after_connect(ws).await
    }

    /// Connects with a tiny TCP receive buffer, for clients that stop reading.
    pub async fn connect_small_buffer(&self, user_id: &str) -> Client {
        let token = self.token(user_id).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(self.addr.parse().unwrap()).await.unwrap();
        let (ws, _) =
            tokio_tungstenite::client_async(self.ws_url(&token), MaybeTlsStream::Plain(stream))
                .await
                .expect("websocket connects");
        Client::after_connect(ws).await
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_log();
        }
        self.kill9();
    }
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol v1 client written from docs/protocol.md.
pub struct Client {
    pub ws: Socket,
    next_id: i64,
    /// Events read while waiting for something else.
    pub events: VecDeque<Value>,
    pub welcome: Value,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Client {
    /// Connects to `url` (e.g. another node's `ws_url`) and reads the welcome.
    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client::after_connect(ws).await
    }

    async fn after_connect(ws: Socket) -> Client {
        let mut client = Client {
            ws,
            next_id: 1,
            events: VecDeque::new(),
            welcome: Value::Null,
        };
        let welcome = client.next_frame().await;
        assert_eq!(welcome["ev"], "welcome", "first frame: {welcome}");
        client.welcome = welcome["data"].clone();
        client
    }

    pub fn user_id(&self) -> &str {
        self.welcome["user_id"].as_str().unwrap_or_default()
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::Text(text.into().into()))
            .await
            .expect("send frame");
    }

    /// The next JSON frame (panics on timeout or close).
    pub async fn next_frame(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("websocket error");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Close(frame) => panic!("connection closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Sends `{"id", "op", "args"}` and returns the reply frame, keeping events for later.
    pub async fn request(&mut self, op: &str, args: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(json!({ "id": id, "op": op, "args": args }).to_string())
            .await;
        self.reply_to(id).await
    }

    pub async fn reply_to(&mut self, id: i64) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame.get("ev").is_some() {
                self.events.push_back(frame);
                continue;
            }
            if frame["re"] == json!(id) {
                return frame;
            }
            panic!("unexpected reply while waiting for {id}: {frame}");
        }
    }

    /// The `result` of a request that must succeed.
    pub async fn ok(&mut self, op: &str, args: Value) -> Value {
        let frame = self.request(op, args).await;
        assert!(frame.get("result").is_some(), "{op} failed: {frame}");
        frame["result"].clone()
    }

    /// The `error` of a request that must fail.
    pub async fn err(&mut self, op: &str, args: Value) -> Value {
        let frame = self.request(op, args).await;
        assert!(
            frame.get("error").is_some(),
            "{op} should have failed: {frame}"
        );
        frame["error"].clone()
    }

    /// The `data` of the next event named `name` (earlier other events stay queued).
    pub async fn event(&mut self, name: &str) -> Value {
        if let Some(index) = self.events.iter().position(|event| event["ev"] == name) {
            return self.events.remove(index).expect("index")["data"].clone();
        }
        loop {
            let frame = self.next_frame().await;
            if frame["ev"] == name {
                return frame["data"].clone();
            }
            assert!(
                frame.get("ev").is_some(),
                "unexpected reply while waiting for {name}: {frame}"
            );
            self.events.push_back(frame);
        }
    }

    /// Asserts no event named `name` arrives within `wait` (other frames are kept).
    pub async fn no_event(&mut self, name: &str, wait: Duration) {
        assert!(
            !self.events.iter().any(|event| event["ev"] == name),
            "unexpected {name}: {:?}",
            self.events
        );
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                assert_ne!(frame["ev"], name, "unexpected {name}: {frame}");
                self.events.push_back(frame);
            }
        }
    }

    /// Reads (and drops) frames until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> Closed {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("timed out waiting for the close");
            match next {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Closed {
                        code: u16::from(frame.code),
                        reason: frame.reason.to_string(),
                    }
                }
                Some(Ok(Message::Close(None))) => {
                    return Closed {
                        code: u16::from(CloseCode::Status),
                        reason: String::new(),
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("connection failed before a close frame: {error}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}

/// Creates a conversation through `client` and returns its id.
pub async fn create_conversation(client: &mut Client, kind: &str, members: &[&str]) -> String {
    let result = client
        .ok(
            "conversation.create",
            json!({ "kind": kind, "members": members }),
        )
        .await;
    result["conversation"]["conversation_id"]
        .as_str()
        .expect("conversation_id")
        .to_owned()
}

/// Searches for `query` until `done` accepts the hits' conversations (indexers trail the log),
/// and returns them; fails after [`WAIT`] with the last answer and `what` was awaited.
async fn search_until(
    client: &mut Client,
    query: &str,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let result = client
            .ok("search.messages", json!({ "query": query }))
            .await;
        let found: Vec<String> = (result["hits"].as_array().expect("hits").iter())
            .map(|hit| {
                hit["message"]["conversation_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        if done(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what} for {query}: {result}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The conversations of the `search.messages` hits of `query`, once there are `want` hits
/// (indexers trail the log).
pub async fn hit_conversations(client: &mut Client, query: &str, want: usize) -> Vec<String> {
    search_until(client, query, &format!("{want} hits"), |found| {
        found.len() == want
    })
    .await
}

/// Waits until a search for `query` hits exactly the messages of `expected` (one each), as the
/// index converges: a node catching up on its log may pass through other answers first.
pub async fn hits_become(client: &mut Client, query: &str, expected: &[&str]) {
    search_until(client, query, &format!("hits in {expected:?}"), |found| {
        found == expected
    })
    .await;
}

/// Sends a message and returns the ack result.
pub async fn send(
    client: &mut Client,
    conversation_id: &str,
    client_msg_id: &str,
    text: &str,
) -> Value {
    client
        .ok(
            "message.send",
            json!({ "conversation_id": conversation_id, "client_msg_id": client_msg_id, "text": text }),
        )
        .await
}

impl TestServer {
    /// Sends SIGTERM (a graceful stop) to the server process.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits until the server process exits; returns whether it did within `limit`.
    pub async fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().expect("try_wait").is_some() {
                    self.child = None;
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// Short wait used only to prove that an event does NOT arrive.
pub const ABSENT: Duration = Duration::from_millis(300);

/// A server whose rate limit is out of the way, for tests about the operations.
pub async fn unthrottled_server() -> TestServer {
    TestServer::start_with(&[
        ("PARLEY__RATE_LIMIT__PER_SECOND", "10000"),
        ("PARLEY__RATE_LIMIT__BURST", "10000"),
    ])
    .await
}

pub fn assert_code(error: &Value, code: &str) {
    assert_eq!(error["code"], code, "expected {code}, got {error}");
}

/// The seqs of a `messages` array.
pub fn seqs(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .unwrap_or_else(|| panic!("expected messages, got {messages}"))
        .iter()
        .map(|message| message["seq"].as_u64().expect("seq"))
        .collect()
}

/// The sum of a metric's samples in `/metrics` (all label sets).
pub async fn metric(server: &TestServer, name: &str) -> f64 {
    let (status, body) = server
        .http("GET", "/metrics", &[], None)
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    body.as_str()
        .expect("metrics text")
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|sum, value| sum + value)
        .unwrap_or_else(|| panic!("metric {name} not exposed"))
}

pub use free_ports::free_port;

/// A private redis-server started through `scripts/services/redis.sh` (AOF on, own dir).
pub struct TestRedis {
    pub port: u16,
    dir: tempfile::TempDir,
}

fn redis_script(args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/redis.sh");
    let output = Command::new(&script)
        .args(args)
        .output()
        .expect("scripts/services/redis.sh runs");
    assert!(
        output.status.success(),
        "{} {args:?} failed (is redis-server installed? run `scripts/services/redis.sh install`): {}{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl TestRedis {
    pub fn start() -> Self {
        let redis = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (its data stays in its directory).
    pub fn stop(&self) {
        redis_script(&["stop", self.dir.path().to_str().expect("utf-8 path")]);
    }

    /// Starts it again on the same port and data.
    pub fn resume(&self) {
        redis_script(&[
            "start",
            self.dir.path().to_str().expect("utf-8 path"),
            &self.port.to_string(),
        ]);
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/redis.sh");
        let _ = Command::new(script)
            .args(["stop", self.dir.path().to_str().unwrap_or_default()])
            .output();
    }
}

/// Several parley-server nodes sharing one private Redis (cluster mode).
pub struct TestCluster {
    pub nodes: Vec<TestServer>,
    pub redis: TestRedis,
}

impl TestCluster {
    pub async fn start(nodes: usize, env: &[(&str, &str)]) -> Self {
        let redis = TestRedis::start();
        let url = redis.url();
        let mut all_env: Vec<(&str, &str)> = vec![
            ("PARLEY__REDIS__URL", url.as_str()),
            ("PARLEY__RATE_LIMIT__PER_SECOND", "10000"),
            ("PARLEY__RATE_LIMIT__BURST", "10000"),
        ];
        all_env.extend_from_slice(env);
        let mut started = Vec::new();
        for _ in 0..nodes {
            started.push(TestServer::start_with(&all_env).await);
        }
        Self {
            nodes: started,
            redis,
        }
    }
}

impl TestServer {
    /// Connects as `user_id` with a token issued by this node (any node's token works on any
    /// node: they share the secret).
    pub async fn connect_to(&self, user_id: &str, other: &TestServer) -> Client {
        let token = self.token(user_id).await;
        let (ws, _) = tokio_tungstenite::connect_async(other.ws_url(&token))
            .await
            .expect("websocket connects");
        Client::after_connect(ws).await
    }
}

/// Whether a `welcome` lists the protocol v1.1 feature `name` in `features`.
pub fn has_feature(welcome: &Value, name: &str) -> bool {
    welcome["features"]
        .as_array()
        .is_some_and(|features| features.iter().any(|feature| feature == name))
}

/// Tries to open a WebSocket; returns the HTTP status and JSON body of a refused upgrade.
pub async fn refused(
    request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
) -> (u16, Value) {
    let (status, body) = upgrade_answer(request).await;
    assert_ne!(status, 101, "upgrade should be refused");
    (status, body)
}

/// Tries to open a WebSocket: `(101, null)` when it opens, else the refusal's HTTP status and
/// JSON body (`null` when it has none).
pub async fn upgrade_answer(
    request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
) -> (u16, Value) {
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => (response.status().as_u16(), Value::Null),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice(body).ok())
                .unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
        Err(error) => panic!("unexpected connect error: {error}"),
    }
}
