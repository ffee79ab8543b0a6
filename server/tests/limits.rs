//! Limits (docs/protocol.md §5, §10, §12): slow clients are closed with 4009, rate limiting
//! and abuse (4008), heartbeats and the idle timeout (1000).

mod common;

use std::time::Duration;

use common::{create_conversation, metric, send, Client, TestServer};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn healthz(server: &TestServer) {
    let (status, body) = server
        .http("GET", "/healthz", &[], None)
        .await
        .expect("healthz");
    assert_eq!(status, 200, "{body}");
}

async fn ping_ok(client: &mut Client) {
    let reply = client.request("ping", json!({})).await;
    assert_eq!(reply["result"], json!({}), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_closed_with_4009_and_others_are_unaffected() {
    let server = TestServer::start_with(&[
        ("PARLEY__LIMITS__OUTBOUND_QUEUE", "8"),
        ("PARLEY__RATE_LIMIT__PER_SECOND", "100000"),
        ("PARLEY__RATE_LIMIT__BURST", "100000"),
        // Ingest writes a linger's worth of sends at once, and their `message.stored` reach
        // alice together: more than a queue of 8 when she sends this fast on a busy machine.
        ("PARLEY__INGEST__LINGER_MS", "0"),
    ])
    .await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect_small_buffer("bob").await;
    let conversation_id = create_conversation(&mut alice, "direct", &["bob"]).await;
    // Bob stops reading now.
    let text = "b".repeat(40 * 1024);
    let mut sent = 0u64;
    let mut overflowed = false;
    for i in 0..300 {
        let ack = send(&mut alice, &conversation_id, &format!("big-{i}"), &text).await;
        sent = ack["seq"].as_u64().expect("seq");
        alice.events.clear();
        if metric(&server, "parley_ws_outbound_overflows_total").await >= 1.0 {
            overflowed = true;
            break;
        }
    }
    assert!(
        overflowed,
        "after {sent} messages of 40 KiB the server still queues for a client that does not read"
    );

    // Bob reads what was queued, then the close.
    let mut last_contiguous = 0u64;
    let closed = loop {
        let next = tokio::time::timeout(Duration::from_secs(30), bob.ws.next())
            .await
            .expect("bob is closed in time")
            .expect("a close frame before the end")
            .expect("no websocket error");
        match next {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if frame["ev"] == "message.new" {
                    let seq = frame["data"]["message"]["seq"].as_u64().expect("seq");
                    assert_eq!(
                        seq,
                        last_contiguous + 1,
                        "in order, no gap, before the close"
                    );
                    last_contiguous = seq;
                }
            }
            Message::Close(frame) => break frame.expect("close frame with a code"),
            _ => {}
        }
    };
    assert_eq!(u16::from(closed.code), 4009, "{closed:?}");
    assert!(last_contiguous < sent, "bob cannot have read everything");
    assert!(metric(&server, "parley_ws_outbound_overflows_total").await >= 1.0);

    // Alice is unaffected.
    for i in 0..5 {
        send(&mut alice, &conversation_id, &format!("after-{i}"), "small").await;
    }
    ping_ok(&mut alice).await;
    healthz(&server).await;

    // Nothing was dropped: bob reconnects and recovers the rest with sync + history.
    let mut bob = server.connect("bob").await;
    let result = bob
        .ok(
            "sync",
            json!({"conversations": {conversation_id.as_str(): last_contiguous}}),
        )
        .await;
    let entry = &result["conversations"][conversation_id.as_str()];
    let mut next = last_contiguous + 1;
    for message in entry["messages"].as_array().expect("messages") {
        assert_eq!(message["seq"], next);
        next += 1;
    }
    let mut has_more = entry["has_more"] == true;
    while has_more {
        let page = bob
            .ok(
                "history.get",
                json!({"conversation_id": conversation_id, "after_seq": next - 1, "limit": 20}),
            )
            .await;
        for message in page["messages"].as_array().expect("messages") {
            assert_eq!(message["seq"], next);
            next += 1;
        }
        has_more = page["has_more"] == true;
    }
    assert_eq!(next - 1, sent + 5, "bob recovers every message");
}

#[tokio::test]
async fn rate_limit_rejects_beyond_the_burst_and_keeps_the_connection() {
    let server = TestServer::start_with(&[
        ("PARLEY__RATE_LIMIT__PER_SECOND", "1"),
        ("PARLEY__RATE_LIMIT__BURST", "5"),
        ("PARLEY__RATE_LIMIT__ABUSE_REJECTIONS", "1000"),
    ])
    .await;
    let mut alice = server.connect("alice").await;
    let mut alice2 = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    for _ in 0..5 {
        ping_ok(&mut alice).await;
    }
    let reply = alice.request("ping", json!({})).await;
    assert_eq!(reply["re"], 6, "{reply}");
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    let retry_after = reply["error"]["retry_after_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("retry_after_ms must be a positive integer: {reply}"));
    assert!(retry_after > 0, "{reply}");

    // The bucket is the user's, shared by the user's sessions.
    let reply = alice2.request("ping", json!({})).await;
    assert_eq!(
        reply["error"]["code"], "rate_limited",
        "second session: {reply}"
    );
    // The rate limit is checked before anything else: malformed and too large frames count.
    alice.send_text("not json").await;
    let reply = alice.next_frame().await;
    assert_eq!(reply["re"], Value::Null, "{reply}");
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    let big = json!({"id": 77, "op": "ping", "args": {"pad": "p".repeat(70 * 1024)}});
    alice.send_text(big.to_string()).await;
    let reply = alice.next_frame().await;
    assert_eq!(reply["re"], 77, "{reply}");
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");

    // Other users have their own bucket.
    ping_ok(&mut bob).await;

    // The connection stays open: after retry_after_ms the next request goes through.
    let retry_after = reply["error"]["retry_after_ms"]
        .as_u64()
        .unwrap_or(retry_after);
    tokio::time::sleep(Duration::from_millis(retry_after + 50)).await;
    ping_ok(&mut alice).await;
}

#[tokio::test]
async fn rate_limit_abuse_closes_with_4008_and_the_node_stays_up() {
    let server = TestServer::start_with(&[
        ("PARLEY__RATE_LIMIT__PER_SECOND", "1"),
        ("PARLEY__RATE_LIMIT__BURST", "5"),
        ("PARLEY__RATE_LIMIT__ABUSE_REJECTIONS", "5"),
    ])
    .await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let (mut oks, mut rejections) = (0, 0);
    let mut close = None;
    // Flood, one ping after another, until the server closes.
    'flood: for id in 1..=100 {
        let frame = json!({"id": id, "op": "ping"}).to_string();
        if alice.ws.send(Message::Text(frame.into())).await.is_err() {
            break;
        }
        loop {
            let next = tokio::time::timeout(common::WAIT, alice.ws.next())
                .await
                .expect("a reply or the close in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let reply: Value = serde_json::from_str(&text).expect("JSON");
                    if reply.get("ev").is_some() {
                        continue;
                    }
                    assert_eq!(reply["re"], id, "{reply}");
                    if reply.get("result").is_some() {
                        oks += 1;
                    } else {
                        assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
                        rejections += 1;
                    }
                    break;
                }
                Some(Ok(Message::Close(frame))) => {
                    close = frame;
                    break 'flood;
                }
                Some(Ok(_)) => continue,
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    }
    let close = close.expect("the flooding session is closed");
    assert_eq!(u16::from(close.code), 4008, "{close:?}");
    assert_eq!(oks, 5, "the burst goes through");
    assert!(
        (4..=5).contains(&rejections),
        "closed after 5 rejections, got {rejections}"
    );

    healthz(&server).await;
    ping_ok(&mut bob).await;
    let mut carol = server.connect("carol").await;
    let conversation_id = create_conversation(&mut carol, "direct", &["bob"]).await;
    send(&mut carol, &conversation_id, "c-1", "still up").await;
    let new = bob.event("message.new").await;
    assert_eq!(new["message"]["text"], "still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_readers_alive_and_silent_clients_are_closed() {
    let server = TestServer::start_with(&[
        ("PARLEY__LIMITS__HEARTBEAT_MS", "200"),
        ("PARLEY__LIMITS__CLIENT_TIMEOUT_MS", "600"),
    ])
    .await;
    let mut reader = server.connect("alice").await;
    let silent_token = server.token("bob").await;
    let mut silent = common::raw::RawSocket::connect(&server.addr, &silent_token).await;
    assert_eq!(reader.welcome["heartbeat_ms"], 200, "{}", reader.welcome);

    let reading = async {
        // tokio-tungstenite answers each ping with a pong while we read; 8 pings take ~1.6 s,
        // well past the 600 ms timeout.
        let mut pings = 0;
        while pings < 8 {
            let next = tokio::time::timeout(Duration::from_secs(2), reader.ws.next())
                .await
                .expect("a WebSocket ping within the heartbeat")
                .expect("open")
                .expect("no error");
            match next {
                Message::Ping(_) => pings += 1,
                Message::Close(frame) => panic!("a client answering pings was closed: {frame:?}"),
                _ => {}
            }
        }
        ping_ok(&mut reader).await;
    };
    let silence = async {
        // Neither read nor write: not even pongs go out. (tungstenite would answer the pings as
        // soon as we read, so this client reads raw bytes and never writes.)
        tokio::time::sleep(Duration::from_millis(1500)).await;
        silent.close_frame().await
    };
    let ((), (code, reason)) = tokio::join!(reading, silence);
    assert_eq!(code, 1000, "{reason}");
    assert_eq!(reason, "idle timeout");
}
