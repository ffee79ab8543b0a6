//! Authentication (docs/protocol.md §2, §3, §5, §10): the token endpoint's API key, token
//! checks before the WebSocket upgrade, protocol version pinning, and the 4001 close when a
//! token expires on an open connection.

mod common;

use common::raw::RawSocket;
use common::{refused, TestServer, API_KEY, JWT_SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn mint(algorithm: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode token")
}

fn hs256(claims: &Value) -> String {
    mint(Algorithm::HS256, JWT_SECRET, claims)
}

/// Base64url without padding.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for index in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * index)) & 63) as usize] as char);
        }
    }
    out
}

/// An unsigned `alg: none` token.
fn alg_none(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    )
}

async fn assert_unauthorized(server: &TestServer, token: &str, case: &str) {
    let (status, body) = refused(server.ws_url(token)).await;
    assert_eq!(status, 401, "{case}: {body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{case}: {body}");
}

async fn connects(request: impl IntoClientRequest + Unpin) -> Value {
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connects");
    use futures::StreamExt;
    loop {
        let message = tokio::time::timeout(common::WAIT, ws.next())
            .await
            .expect("welcome in time")
            .expect("open")
            .expect("ok");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(frame["ev"], "welcome", "{frame}");
            return frame["data"].clone();
        }
    }
}

#[tokio::test]
async fn token_endpoint_requires_the_api_key() {
    let server = TestServer::start().await;
    let body = json!({"user_id": "alice"});
    for (case, headers) in [
        ("missing key", vec![]),
        ("wrong key", vec![("X-Api-Key", "not-the-key")]),
        (
            "key with a suffix",
            vec![("X-Api-Key", "test-api-key-01234567890")],
        ),
        ("empty key", vec![("X-Api-Key", "")]),
    ] {
        let (status, response) = server
            .http("POST", "/api/v1/auth/token", &headers, Some(&body))
            .await
            .expect("http");
        assert_eq!(status, 401, "{case}: {response}");
        assert_eq!(
            response["error"]["code"], "unauthorized",
            "{case}: {response}"
        );
        assert!(response.get("token").is_none(), "{case}: {response}");
    }
    // The REST API needs the key as well.
    let (status, response) = server
        .http("GET", "/api/v1/conversations/conv_x/messages", &[], None)
        .await
        .expect("http");
    assert_eq!(status, 401, "{response}");
    assert_eq!(response["error"]["code"], "unauthorized", "{response}");

    // With the key: a token, and bad bodies are 400.
    let (status, response) = server
        .token_with(json!({"user_id": "alice", "ttl_secs": 60}))
        .await;
    assert_eq!(status, 200, "{response}");
    assert!(response["token"].is_string(), "{response}");
    assert!(response["socket_urls"].is_array(), "{response}");
    for bad in [
        json!({}),
        json!({"user_id": ""}),
        json!({"user_id": "x".repeat(129)}),
        json!({"user_id": "alice", "ttl_secs": 0}),
        json!({"user_id": "alice", "ttl_secs": 86401}),
    ] {
        let (status, response) = server.token_with(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {response}");
        assert_eq!(
            response["error"]["code"], "bad_request",
            "{bad}: {response}"
        );
    }
    let (status, response) = server
        .http_raw(
            "POST",
            "/api/v1/auth/token",
            &[("X-Api-Key", API_KEY)],
            "not json",
        )
        .await
        .expect("http");
    assert_eq!(status, 400, "{response}");
}

#[tokio::test]
async fn invalid_tokens_are_refused_before_the_upgrade() {
    let server = TestServer::start().await;
    let exp = now() + 600;

    let (status, body) = refused(format!("ws://{}/ws", server.addr)).await;
    assert_eq!(status, 401, "no token: {body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert_unauthorized(&server, "", "empty token").await;
    assert_unauthorized(&server, "garbage", "garbage").await;

    let forged = mint(
        Algorithm::HS256,
        "another-secret-that-is-long-enough-456",
        &json!({"sub": "alice", "exp": exp}),
    );
    assert_unauthorized(&server, &forged, "forged signature").await;
    let none = alg_none(&json!({"sub": "alice", "exp": exp, "iat": now()}));
    assert_unauthorized(&server, &none, "alg none").await;
    // alg none carrying a (valid) HS256 signature of its own header+payload is refused too.
    let valid = hs256(&json!({"sub": "alice", "exp": exp}));
    let signature = valid.rsplit('.').next().unwrap();
    let none_signed = format!("{none}{signature}");
    assert_unauthorized(&server, &none_signed, "alg none with a signature").await;
    let hs512 = mint(
        Algorithm::HS512,
        JWT_SECRET,
        &json!({"sub": "alice", "exp": exp}),
    );
    assert_unauthorized(&server, &hs512, "HS512").await;
    let hs384 = mint(
        Algorithm::HS384,
        JWT_SECRET,
        &json!({"sub": "alice", "exp": exp}),
    );
    assert_unauthorized(&server, &hs384, "HS384").await;
    // Expired beyond the 60 s leeway.
    let expired = hs256(&json!({"sub": "alice", "exp": now() - 3600, "iat": now() - 7200}));
    assert_unauthorized(&server, &expired, "expired").await;
    assert_unauthorized(&server, &hs256(&json!({"sub": "alice"})), "no exp").await;
    assert_unauthorized(&server, &hs256(&json!({"exp": exp})), "no sub").await;
    assert_unauthorized(
        &server,
        &hs256(&json!({"sub": "", "exp": exp})),
        "empty sub",
    )
    .await;
    let long = "u".repeat(129);
    assert_unauthorized(
        &server,
        &hs256(&json!({"sub": long, "exp": exp})),
        "long sub",
    )
    .await;

    // A token minted by the backend itself (no iat) is fine.
    let minted = hs256(&json!({"sub": "backend-user", "exp": exp}));
    let welcome = connects(server.ws_url(&minted)).await;
    assert_eq!(welcome["user_id"], "backend-user");
    assert_eq!(welcome["protocol"], 1);
}

#[tokio::test]
async fn protocol_version_is_checked_before_the_token() {
    let server = TestServer::start().await;
    let token = server.token("alice").await;
    let (status, body) = refused(format!("ws://{}/ws?v=2&token={token}", server.addr)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    // Before the token: no token and v=2 is 400, not 401.
    let (status, body) = refused(format!("ws://{}/ws?v=2", server.addr)).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = refused(format!("ws://{}/ws?v=banana&token={token}", server.addr)).await;
    assert_eq!(status, 400);
    let welcome = connects(format!("ws://{}/ws?v=1&token={token}", server.addr)).await;
    assert_eq!(welcome["user_id"], "alice");
}

#[tokio::test]
async fn bearer_header_works_and_the_query_parameter_wins() {
    let server = TestServer::start().await;
    let token = server.token("alice").await;
    let url = format!("ws://{}/ws", server.addr);

    let mut request = url.as_str().into_client_request().expect("request");
    request.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let welcome = connects(request).await;
    assert_eq!(welcome["user_id"], "alice");

    // Both given: the query parameter is used.
    let bob = server.token("bob").await;
    let mut request = server.ws_url(&bob).into_client_request().expect("request");
    request.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let welcome = connects(request).await;
    assert_eq!(welcome["user_id"], "bob");

    let mut request = server
        .ws_url("garbage")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (status, _) = refused(request).await;
    assert_eq!(
        status, 401,
        "an invalid query token is used even with a valid header"
    );

    let mut request = url.as_str().into_client_request().expect("request");
    request.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!(
            "Bearer {forged}",
            forged = mint(
                Algorithm::HS256,
                "another-secret-that-is-long-enough-456",
                &json!({"sub": "alice", "exp": now() + 600}),
            )
        ))
        .unwrap(),
    );
    let (status, _) = refused(request).await;
    assert_eq!(status, 401, "forged bearer token");
}

/// Reads the welcome, checks a ping works, then waits for the close; returns its code.
async fn close_code_after_expiry(mut ws: common::Socket) -> u16 {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut answered = false;
    let mut welcomed = false;
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
            .await
            .expect("closed in time")
            .expect("a close frame before the end")
            .expect("no websocket error");
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if !welcomed {
                    assert_eq!(frame["ev"], "welcome", "{frame}");
                    welcomed = true;
                    ws.send(Message::Text(r#"{"id": 1, "op": "ping"}"#.into()))
                        .await
                        .expect("send");
                } else if frame["re"] == 1 {
                    assert_eq!(frame["result"], json!({}), "usable before expiry: {frame}");
                    answered = true;
                }
            }
            Message::Close(frame) => {
                assert!(answered, "closed before the ping was answered: {frame:?}");
                return frame.map(|frame| u16::from(frame.code)).unwrap_or(1005);
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn session_is_closed_with_4001_when_the_token_expires() {
    let server = TestServer::start().await;
    let mut other = server.connect("bob").await;

    let (status, body) = server
        .token_with(json!({"user_id": "alice", "ttl_secs": 2}))
        .await;
    assert_eq!(status, 200, "{body}");
    let issued = body["token"].as_str().expect("token").to_owned();
    // A self-minted token expiring in 2 s behaves the same.
    let minted = hs256(&json!({"sub": "carol", "exp": now() + 2}));
    let (issued, _) = tokio_tungstenite::connect_async(server.ws_url(&issued))
        .await
        .expect("connects");
    let (minted, _) = tokio_tungstenite::connect_async(server.ws_url(&minted))
        .await
        .expect("connects");
    let (issued, minted) = tokio::join!(
        close_code_after_expiry(issued),
        close_code_after_expiry(minted)
    );
    assert_eq!(issued, 4001, "token from the endpoint");
    assert_eq!(minted, 4001, "self-minted token");
    // Other sessions are not affected.
    let reply = other.request("ping", json!({})).await;
    assert_eq!(reply["result"], json!({}));
}

/// The close handshake of a session the server closes (docs/protocol.md §10): after its close
/// frame the server keeps the connection open for the client's answer (so the close frame is not
/// lost to a reset), ends it as soon as the answer arrives, and gives up 2 s after its close
/// frame when no answer comes. Two frame-level clients whose tokens expire: one answers the
/// close a second late, one never does.
#[tokio::test]
async fn a_closing_session_waits_for_the_clients_close_frame_then_gives_up() {
    let server = TestServer::start().await;
    let token = |user: &str| hs256(&json!({"sub": user, "exp": now() + 2}));
    let mut late = RawSocket::connect(&server.addr, &token("late")).await;
    let mut silent = RawSocket::connect(&server.addr, &token("silent")).await;
    let answers_late = async {
        assert_eq!(late.close_frame().await.0, 4001);
        assert!(
            late.ended_within(std::time::Duration::from_secs(1))
                .await
                .is_none(),
            "the server ended the connection without waiting for the close answer"
        );
        late.send_close(1000).await;
        late.ended_within(std::time::Duration::from_secs(1))
            .await
            .expect("the connection ends once the close is answered")
            .expect("a clean end (FIN), not a reset");
    };
    let never_answers = async {
        assert_eq!(silent.close_frame().await.0, 4001);
        let sent = std::time::Instant::now();
        silent
            .ended_within(std::time::Duration::from_secs(8))
            .await
            .expect("the server gives up waiting for the close answer")
            .expect("a clean end (FIN), not a reset");
        let waited = sent.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(1500),
            "gave up after {waited:?}, before the 2 s linger"
        );
    };
    tokio::join!(answers_late, never_answers);
    // Both sessions are gone; the node serves on.
    let mut other = server.connect("bob").await;
    let reply = other.request("ping", json!({})).await;
    assert_eq!(reply["result"], json!({}));
}

/// Sends a raw HTTP/1.1 request head; returns the answer's status, its head (lowercase) and its
/// JSON body (`Null` when there is none). Reads only the head and `content-length` bytes, so it
/// also works for a 101 whose connection stays open.
async fn raw_exchange(server: &TestServer, head: &str) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let mut buffer = [0u8; 512];
    let complete = |response: &[u8]| {
        let text = String::from_utf8_lossy(response).to_ascii_lowercase();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|length| length.trim().parse::<usize>().ok())
            .unwrap_or(0);
        body.len() >= length
    };
    while !complete(&response) {
        let read = tokio::time::timeout(common::WAIT, stream.read(&mut buffer))
            .await
            .expect("answer within the wait")
            .expect("read");
        assert!(read > 0, "connection closed before the whole answer");
        response.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status");
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// The handshake the server answers itself (docs/protocol.md §2): RFC 6455's headers are
/// checked after the token, with the JSON error body of every endpoint.
#[tokio::test]
async fn the_websocket_handshake_is_checked_after_the_token() {
    let server = TestServer::start().await;
    let token = server.token("alice").await;
    let upgrade = |path: &str, extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{extra}\r\n"
        )
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let ws_path = format!("/ws?token={token}");

    // Version 13 is the only one.
    let (status, head, body) = raw_exchange(
        &server,
        &upgrade(&ws_path, &format!("{key}Sec-WebSocket-Version: 8\r\n")),
    )
    .await;
    assert_eq!(status, 426, "{head}");
    assert!(head.contains("sec-websocket-version: 13"), "{head}");
    assert_eq!(body["error"]["code"], "bad_request", "{body}");

    // No key.
    let (status, _, body) =
        raw_exchange(&server, &upgrade(&ws_path, "Sec-WebSocket-Version: 13\r\n")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request", "{body}");

    // The token comes first: a bad one is 401 whatever the handshake.
    let (status, _, body) = raw_exchange(
        &server,
        &upgrade("/ws?token=nope", "Sec-WebSocket-Version: 8\r\n"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");

    // An upgrade anywhere else is not found.
    let (status, _, body) = raw_exchange(
        &server,
        &upgrade(
            &format!("/api/v1/ws?token={token}"),
            &format!("{key}Sec-WebSocket-Version: 13\r\n"),
        ),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    // A plain GET /ws: checked the same way, then 400.
    let plain = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, _, body) = raw_exchange(&server, &plain(&ws_path)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    let (status, _, body) = raw_exchange(&server, &plain("/ws")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");

    // And the real handshake still works, with the accept key of RFC 6455's example.
    let (status, head, _) = raw_exchange(
        &server,
        &upgrade(&ws_path, &format!("{key}Sec-WebSocket-Version: 13\r\n")),
    )
    .await;
    assert_eq!(status, 101, "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
}
