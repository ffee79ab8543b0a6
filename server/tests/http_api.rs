//! The HTTP API of docs/protocol.md §2.1 and §13: tokens, health, metrics, and the REST
//! message endpoints, checked against the real server.

mod common;

use std::time::Duration;

use common::{create_conversation, send, seqs, TestServer, ABSENT, API_KEY};
use serde_json::{json, Value};

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

fn parse_time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("time string"))
        .unwrap_or_else(|error| panic!("not RFC 3339: {value}: {error}"))
}

async fn token_request(server: &TestServer, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    server
        .http_raw("POST", "/api/v1/auth/token", headers, body)
        .await
        .expect("token request")
}

#[tokio::test]
async fn token_endpoint_issues_a_usable_token() {
    let server = TestServer::start().await;
    let before = chrono::Utc::now();
    let (status, body) = server
        .token_with(json!({ "user_id": "alice", "display_name": "Alice", "ttl_secs": 120 }))
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let expires_at = parse_time(&body["expires_at"]);
    let ttl = expires_at.signed_duration_since(before).num_seconds();
    assert!(
        (118..=122).contains(&ttl),
        "expires_at {expires_at} is not now + 120 s"
    );
    let urls = body["socket_urls"].as_array().expect("socket_urls");
    assert!(!urls.is_empty(), "{body}");
    for url in urls {
        let url = url.as_str().expect("url string");
        assert!(
            url.starts_with("ws://") || url.starts_with("wss://"),
            "{url}"
        );
    }
    // With no public_urls configured: ws://<bind address>/ws.
    assert_eq!(urls[0], format!("ws://{}/ws", server.addr).as_str());

    // The token opens a session for that user.
    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url(token))
        .await
        .expect("connect with the issued token");
    drop(ws);
    let alice = server.connect("alice").await;
    assert_eq!(alice.welcome["user_id"], "alice");
    assert_eq!(alice.welcome["protocol"], 1);

    // Default ttl is 3600 s.
    let (status, body) = server.token_with(json!({ "user_id": "bob" })).await;
    assert_eq!(status, 200, "{body}");
    let ttl = parse_time(&body["expires_at"])
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((3590..=3601).contains(&ttl), "default ttl: {body}");

    // The maximum ttl is accepted.
    let (status, body) = server
        .token_with(json!({ "user_id": "bob", "ttl_secs": 86400 }))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn token_endpoint_requires_the_api_key() {
    let server = TestServer::start().await;
    let body = r#"{"user_id": "alice"}"#;
    let (status, response) = token_request(&server, &[], body).await;
    assert_error(status, &response, 401, "unauthorized");
    let (status, response) = token_request(&server, &[("X-Api-Key", "wrong-key")], body).await;
    assert_error(status, &response, 401, "unauthorized");
    let (status, response) = token_request(&server, &[("X-Api-Key", "")], body).await;
    assert_error(status, &response, 401, "unauthorized");
}

#[tokio::test]
async fn token_endpoint_validates_the_body() {
    let server = TestServer::start().await;
    let key = [("X-Api-Key", API_KEY)];
    let long_user = "u".repeat(129);
    let bodies = [
        json!({ "user_id": "alice", "ttl_secs": 86401 }).to_string(),
        json!({ "user_id": "alice", "ttl_secs": 0 }).to_string(),
        json!({ "user_id": "" }).to_string(),
        json!({ "user_id": long_user }).to_string(),
        json!({ "display_name": "Nobody" }).to_string(),
        "this is not json".to_owned(),
    ];
    for body in bodies {
        let (status, response) = token_request(&server, &key, &body).await;
        assert_eq!(status, 400, "{body}: {response}");
        assert_eq!(
            response["error"]["code"], "bad_request",
            "{body}: {response}"
        );
    }
    // 128 bytes is still fine.
    let (status, response) = server
        .token_with(json!({ "user_id": "u".repeat(128) }))
        .await;
    assert_eq!(status, 200, "{response}");
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let (status, body) = server.http("GET", "/healthz", &[], None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "status": "ok" }));
    let (status, _) = server.http("GET", "/readyz", &[], None).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn metrics_expose_the_documented_names() {
    let server = TestServer::start().await;
    // Some activity first: a session, a message, an error.
    let mut alice = server.connect("alice").await;
    let id = create_conversation(&mut alice, "group", &["bob"]).await;
    send(&mut alice, &id, "m1", "hello").await;
    alice.event("message.new").await;
    alice
        .err(
            "conversation.get",
            json!({ "conversation_id": "conv_nope" }),
        )
        .await;

    let (status, body) = server.http("GET", "/metrics", &[], None).await.unwrap();
    assert_eq!(status, 200);
    let text = body.as_str().expect("text exposition");
    let mut missing = Vec::new();
    for name in [
        "parley_ws_sessions_open",
        "parley_messages_accepted_total",
        "parley_fanout_deliveries_total",
        "parley_request_duration_seconds",
        "parley_errors_total",
        "parley_ws_outbound_overflows_total",
        "parley_log_commits_total",
        "parley_log_delayed_commits_total",
        "parley_log_appended_events_total",
        "parley_log_fsync_duration_seconds",
    ] {
        if !text.contains(name) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "missing {missing:?} in:\n{text}");
    // One session is open right now.
    let sessions = text
        .lines()
        .find(|line| line.starts_with("parley_ws_sessions_open"))
        .expect("sessions line");
    assert!(sessions.trim_end().ends_with(" 1"), "{sessions}");
    // The conversation and the message went through the embedded log's writer.
    assert!(common::metric(&server, "parley_log_commits_total").await >= 1.0);
    assert!(common::metric(&server, "parley_log_appended_events_total").await >= 2.0);
    assert!(common::metric(&server, "parley_log_fsync_duration_seconds_count").await >= 1.0);
}

#[tokio::test]
async fn rest_history_has_the_semantics_of_history_get() {
    let server = TestServer::start_with(&[
        ("PARLEY__RATE_LIMIT__PER_SECOND", "10000"),
        ("PARLEY__RATE_LIMIT__BURST", "10000"),
    ])
    .await;
    let mut alice = server.connect("alice").await;
    let id = create_conversation(&mut alice, "group", &[]).await;
    for n in 1..=10 {
        send(&mut alice, &id, &format!("m{n}"), &format!("message {n}")).await;
    }
    let key = [("X-Api-Key", API_KEY)];
    let path = |query: &str| format!("/api/v1/conversations/{id}/messages{query}");

    let cases: Vec<(&str, Value)> = vec![
        ("", json!({})),
        ("?limit=3", json!({ "limit": 3 })),
        (
            "?before_seq=8&limit=3",
            json!({ "before_seq": 8, "limit": 3 }),
        ),
        (
            "?after_seq=2&limit=3",
            json!({ "after_seq": 2, "limit": 3 }),
        ),
        ("?after_seq=7", json!({ "after_seq": 7 })),
        (
            "?after_seq=2&before_seq=6&limit=2",
            json!({ "after_seq": 2, "before_seq": 6, "limit": 2 }),
        ),
    ];
    for (query, mut args) in cases {
        let (status, body) = server.http("GET", &path(query), &key, None).await.unwrap();
        assert_eq!(status, 200, "{query}: {body}");
        args["conversation_id"] = json!(id);
        let expected = alice.ok("history.get", args).await;
        assert_eq!(body, expected, "{query}");
    }
    let (_, body) = server
        .http("GET", &path("?after_seq=2&limit=3"), &key, None)
        .await
        .unwrap();
    assert_eq!(seqs(&body["messages"]), vec![3, 4, 5]);
    assert_eq!(body["has_more"], true);
    assert_eq!(body["messages"][0]["text"], "message 3");

    // Out of range or malformed parameters.
    for query in ["?limit=0", "?limit=101", "?after_seq=abc", "?before_seq=-1"] {
        let (status, body) = server.http("GET", &path(query), &key, None).await.unwrap();
        assert_error(status, &body, 400, "bad_request");
    }
    // Unknown conversation.
    let (status, body) = server
        .http(
            "GET",
            "/api/v1/conversations/conv_nope/messages",
            &key,
            None,
        )
        .await
        .unwrap();
    assert_error(status, &body, 404, "not_found");
    // API key required.
    let (status, body) = server.http("GET", &path(""), &[], None).await.unwrap();
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = server
        .http("GET", &path(""), &[("X-Api-Key", "wrong")], None)
        .await
        .unwrap();
    assert_error(status, &body, 401, "unauthorized");
}

#[tokio::test]
async fn rest_post_sends_like_message_send() {
    let server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let mut bot = server.connect("trip-bot").await;
    let id = create_conversation(&mut alice, "group", &["bob"]).await;
    let first = send(&mut alice, &id, "a1", "hi").await;
    alice.event("message.new").await;
    bob.event("message.new").await;
    let key = [("X-Api-Key", API_KEY)];
    let path = format!("/api/v1/conversations/{id}/messages");
    let body = json!({ "sender_id": "trip-bot", "client_msg_id": "reminder-1",
                       "text": "Check-in opens tomorrow", "reply_to": first["message_id"] });

    // The sender need not be a member.
    let (status, ack) = server.http("POST", &path, &key, Some(&body)).await.unwrap();
    assert_eq!(status, 200, "{ack}");
    let mut keys: Vec<&String> = ack.as_object().expect("ack").keys().collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "message_id", "seq"], "{ack}");
    assert_eq!(ack["seq"], 2);
    parse_time(&ack["created_at"]);

    let expected = json!({
        "message_id": ack["message_id"],
        "conversation_id": id,
        "seq": 2,
        "sender_id": "trip-bot",
        "client_msg_id": "reminder-1",
        "text": "Check-in opens tomorrow",
        "reply_to": first["message_id"],
        "forwarded_from": null,
        "reactions": {},
        "created_at": ack["created_at"],
        "edited_at": null,
        "deleted": false,
        "attachments": [],
    });
    for client in [&mut alice, &mut bob] {
        let new = client.event("message.new").await;
        assert_eq!(new["message"], expected);
    }
    // The sender's sessions get message.stored (not message.new: it is not a member).
    let stored = bot.event("message.stored").await;
    assert_eq!(
        stored,
        json!({ "conversation_id": id, "message_id": ack["message_id"], "seq": 2 })
    );
    carol.no_event("message.new", Duration::ZERO).await;

    // The same client_msg_id from the same sender → the original ack, nothing new.
    let retry_body =
        json!({ "sender_id": "trip-bot", "client_msg_id": "reminder-1", "text": "again" });
    let (status, retry) = server
        .http("POST", &path, &key, Some(&retry_body))
        .await
        .unwrap();
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry, ack);
    bob.no_event("message.new", ABSENT).await;
    let history = alice
        .ok("history.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(seqs(&history["messages"]), vec![1, 2]);
    assert_eq!(history["messages"][1], expected);

    // Errors.
    let ok_body = json!({ "sender_id": "trip-bot", "client_msg_id": "r2", "text": "x" });
    let (status, response) = server
        .http(
            "POST",
            "/api/v1/conversations/conv_nope/messages",
            &key,
            Some(&ok_body),
        )
        .await
        .unwrap();
    assert_error(status, &response, 404, "not_found");
    for headers in [vec![], vec![("X-Api-Key", "wrong")]] {
        let (status, response) = server
            .http("POST", &path, &headers, Some(&ok_body))
            .await
            .unwrap();
        assert_error(status, &response, 401, "unauthorized");
    }
    for bad in [
        json!({ "sender_id": "trip-bot", "client_msg_id": "r3", "text": "" }),
        json!({ "sender_id": "trip-bot", "client_msg_id": "r3" }),
        json!({ "client_msg_id": "r3", "text": "x" }),
        json!({ "sender_id": "trip-bot", "text": "x" }),
    ] {
        let (status, response) = server.http("POST", &path, &key, Some(&bad)).await.unwrap();
        assert_eq!(status, 400, "{bad}: {response}");
        assert_eq!(
            response["error"]["code"], "bad_request",
            "{bad}: {response}"
        );
    }
    let (status, response) = server
        .http(
            "POST",
            &path,
            &key,
            Some(
                &json!({ "sender_id": "trip-bot", "client_msg_id": "r4", "text": "x",
                          "reply_to": "msg_nope" }),
            ),
        )
        .await
        .unwrap();
    assert_error(status, &response, 404, "not_found");
    // Body over limits.max_frame_bytes.
    let huge =
        json!({ "sender_id": "trip-bot", "client_msg_id": "r5", "text": "x".repeat(70_000) });
    let (status, response) = server.http("POST", &path, &key, Some(&huge)).await.unwrap();
    assert_error(status, &response, 413, "too_large");

    // None of the failures created a message.
    let history = alice
        .ok("history.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(seqs(&history["messages"]), vec![1, 2]);
}
