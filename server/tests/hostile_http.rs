//! A hostile client against the HTTP side and the close handshake (issue #13, items 9 to 13):
//! error closes that must still deliver their code, REST calls that must authenticate before
//! reading anything, tokens that are not valid yet, development secrets on a public address,
//! and backing-service errors that must not reach clients. Standalone nodes, and a two-node
//! cluster (with Redis) where the behaviour depends on the mode.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::raw::RawSocket;
use common::{TestCluster, TestServer, API_KEY, JWT_SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A frame twice the hard limit (1 MiB): the server must close with 1009.
const OVERSIZED_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// How soon the server must end the connection once the client answered its close: well
/// under the 2 s it waits for a client that does not answer.
const CLOSE_ANSWERED_WITHIN: Duration = Duration::from_millis(1500);

/// Connects to `node` as `user_id`, sends one 2 MiB text frame, and checks that the close frame
/// with 1009 arrives (not a reset), and that the connection then ends cleanly as soon as the
/// client has answered the close (the server sees the answer behind the unread frame).
async fn oversized_frame_gets_its_close_code(node: &TestServer, user_id: &str) {
    let token = node.token(user_id).await;
    let mut socket = RawSocket::connect(&node.addr, &token).await;
    let payload = vec![b'x'; OVERSIZED_FRAME_BYTES];
    if let Err(error) = socket.send_frame(0x1, &payload).await {
        panic!("{user_id}: the server broke the connection while the frame was sent: {error}");
    }
    let (code, reason) = socket.close_frame().await;
    assert_eq!(code, 1009, "{user_id}: {reason}");
    socket.send_close(1009).await;
    match socket.ended_within(CLOSE_ANSWERED_WITHIN).await {
        Some(Ok(())) => {}
        Some(Err(error)) => panic!("{user_id}: reset after the close handshake: {error}"),
        None => panic!("{user_id}: the connection was still open {CLOSE_ANSWERED_WITHIN:?} after the client's close answer"),
    }
}

/// Several clients at once on each node, each sending a frame over the hard limit.
async fn oversized_frames_on(nodes: &[&TestServer], clients_per_node: usize) {
    let runs = nodes.iter().enumerate().flat_map(|(node_index, node)| {
        (0..clients_per_node).map(move |client| async move {
            let user_id = format!("mallory{node_index}x{client}");
            oversized_frame_gets_its_close_code(node, &user_id).await;
        })
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn a_frame_over_the_hard_limit_is_closed_with_1009_not_a_reset() {
    let server = TestServer::start().await;
    oversized_frames_on(&[&server], 8).await;
}

#[tokio::test]
async fn a_frame_over_the_hard_limit_is_closed_with_1009_on_a_cluster_node() {
    let cluster = TestCluster::start(2, &[]).await;
    let nodes: Vec<&TestServer> = cluster.nodes.iter().collect();
    oversized_frames_on(&nodes, 4).await;
}

#[tokio::test]
async fn a_protocol_error_is_closed_with_1002_not_a_reset() {
    let server = TestServer::start().await;
    let token = server.token("mallory").await;
    let mut socket = RawSocket::connect(&server.addr, &token).await;
    // A frame of a reserved opcode, then more input the server never reads as frames.
    socket.send_frame(0x3, b"reserved").await.expect("sent");
    let trailing = vec![b'y'; 512 * 1024];
    if let Err(error) = socket.send_frame(0x1, &trailing).await {
        panic!("the server broke the connection while input was sent: {error}");
    }
    let (code, reason) = socket.close_frame().await;
    assert_eq!(code, 1002, "{reason}");
    socket.send_close(1002).await;
    match socket.ended_within(CLOSE_ANSWERED_WITHIN).await {
        Some(Ok(())) => {}
        Some(Err(error)) => panic!("reset after the close handshake: {error}"),
        None => panic!("still open {CLOSE_ANSWERED_WITHIN:?} after the client's close answer"),
    }
}

#[tokio::test]
async fn the_api_key_is_checked_before_the_body_and_the_query() {
    let server = TestServer::start().await;
    let oversized = "x".repeat(70 * 1024);
    let cases: [(&str, &str, &str); 6] = [
        ("POST", "/api/v1/auth/token", "not json"),
        ("POST", "/api/v1/auth/token", "{}"),
        ("POST", "/api/v1/conversations/c1/messages", "{\"text\": 1}"),
        ("POST", "/api/v1/conversations/c1/messages", &oversized),
        ("GET", "/api/v1/conversations/c1/messages?limit=many", ""),
        ("GET", "/api/v1/conversations/c1/messages?after_seq=-1", ""),
    ];
    for (method, path, body) in cases {
        for headers in [&[][..], &[("X-Api-Key", "wrong-key-0123456789")][..]] {
            let (status, response) = server
                .http_raw(method, path, headers, body)
                .await
                .expect("answered");
            let case = format!("{method} {path} {headers:?} ({} byte body)", body.len());
            assert_eq!(status, 401, "{case}: {response}");
            assert_eq!(response["error"]["code"], "unauthorized", "{case}");
            let message = response["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.contains("field"), "{case}: {message}");
        }
    }
    // With the key, the same requests are judged on their content.
    let (status, response) = server
        .http_raw(
            "POST",
            "/api/v1/auth/token",
            &[("X-Api-Key", API_KEY)],
            "not json",
        )
        .await
        .expect("answered");
    assert_eq!(status, 400, "{response}");
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encode token")
}

/// The HTTP status and body of a WebSocket upgrade with `token`.
async fn upgrade_status(server: &TestServer, token: &str) -> (u16, Value) {
    common::upgrade_answer(server.ws_url(token)).await
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let server = TestServer::start().await;
    let exp = now() + 7200;
    let later = hs256(&json!({"sub": "alice", "exp": exp, "nbf": now() + 3600}));
    let (status, body) = upgrade_status(&server, &later).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("nbf")),
        "{body}"
    );
    // Within the 60 s leeway, and in the past: accepted.
    for nbf in [now() + 30, now() - 60] {
        let token = hs256(&json!({"sub": "alice", "exp": exp, "nbf": nbf}));
        assert_eq!(upgrade_status(&server, &token).await.0, 101, "nbf {nbf}");
    }
}

/// Runs parley-server with `env` (nothing else) until it exits; returns whether it failed and
/// its stderr. Panics if it is still running after 20 s.
fn run_to_exit(env: &[(&str, &str)]) -> (bool, String) {
    let data = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_parley-server"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PARLEY__STORAGE__DATA_DIR", data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("parley-server starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("parley-server kept running with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (
        !output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn development_secrets_are_refused_on_a_public_address() {
    let public = ("PARLEY__SERVER__BIND", "0.0.0.0:0");
    let (failed, stderr) = run_to_exit(&[public]);
    assert!(failed, "{stderr}");
    assert!(stderr.contains("auth.jwt_secret"), "{stderr}");
    let (failed, stderr) = run_to_exit(&[
        public,
        ("PARLEY__AUTH__JWT_SECRET", JWT_SECRET),
        ("PARLEY__AUTH__API_KEY", "parley-dev-api-key"),
    ]);
    assert!(failed, "{stderr}");
    assert!(stderr.contains("auth.api_key"), "{stderr}");
}

#[tokio::test]
async fn development_secrets_on_a_public_address_start_only_when_allowed_and_loudly() {
    let server = TestServer::start_with(&[
        ("PARLEY__SERVER__BIND", "0.0.0.0:0"),
        ("PARLEY__AUTH__JWT_SECRET", ""),
        ("PARLEY__AUTH__API_KEY", ""),
        ("PARLEY__AUTH__ALLOW_DEV_SECRETS_ON_PUBLIC_BIND", "true"),
    ])
    .await;
    let log = server.log();
    assert!(
        log.lines().any(|line| line.contains("WARN")
            && line.contains("PUBLIC DEVELOPMENT SECRET ON A NON-LOOPBACK ADDRESS")),
        "{log}"
    );
}

/// What a client may read in an error message: nothing naming a backing service or its
/// address.
fn assert_no_backing_detail(message: &str, redis_port: u16) {
    for detail in [
        "redis",
        "Redis",
        "127.0.0.1",
        &redis_port.to_string(),
        "refused",
    ] {
        assert!(!message.contains(detail), "{detail:?} leaked: {message}");
    }
}

#[tokio::test]
async fn backing_service_errors_reach_clients_as_a_generic_text() {
    let cluster = TestCluster::start(1, &[]).await;
    let node = &cluster.nodes[0];
    let mut alice = node.connect("alice").await;
    let conversation_id = common::create_conversation(&mut alice, "group", &["bob"]).await;
    cluster.redis.stop();
    // Every frame first takes a rate-limit token, from Redis in cluster mode.
    let error = alice.err("ping", json!({})).await;
    assert_eq!(error["code"], "unavailable", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert_no_backing_detail(message, cluster.redis.port);
    assert!(message.contains("nothing was accepted"), "{message}");
    // The REST API answers the same (a send needs a seq from Redis).
    let (status, body) = node
        .http(
            "POST",
            &format!("/api/v1/conversations/{conversation_id}/messages"),
            &[("X-Api-Key", API_KEY)],
            Some(&json!({"sender_id": "alice", "client_msg_id": "m1", "text": "hi"})),
        )
        .await
        .expect("answered");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_no_backing_detail(
        body["error"]["message"].as_str().unwrap_or_default(),
        cluster.redis.port,
    );
    // The detail is in the log, for the operator.
    let log = node.log();
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("answered `unavailable`")),
        "{log}"
    );
}
