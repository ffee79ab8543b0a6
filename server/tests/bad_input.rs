//! Bad frames (docs/protocol.md §4.1–§4.3, §7.0, §9): every one gets an error with a stable
//! code, the connection stays usable and other users are unaffected.

mod common;

use std::time::Duration;

use common::{create_conversation, send, Client, TestServer};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Sends a raw text frame and returns the next non-event frame.
async fn raw_reply(client: &mut Client, text: &str) -> Value {
    client.send_text(text).await;
    next_reply(client).await
}

async fn next_reply(client: &mut Client) -> Value {
    loop {
        let frame = client.next_frame().await;
        if frame.get("ev").is_some() {
            client.events.push_back(frame);
            continue;
        }
        return frame;
    }
}

/// Asserts `frame` is a failure with `code` and `re` equal to `re`.
fn assert_error(frame: &Value, re: Value, code: &str, case: &str) {
    assert_eq!(frame["re"], re, "{case}: wrong `re` in {frame}");
    assert!(
        frame.get("re").is_some(),
        "{case}: `re` must be present: {frame}"
    );
    assert_eq!(frame["error"]["code"], code, "{case}: {frame}");
    assert!(frame.get("result").is_none(), "{case}: {frame}");
}

async fn assert_usable(client: &mut Client, case: &str) {
    let reply = client.request("ping", json!({})).await;
    assert_eq!(
        reply["result"],
        json!({}),
        "{case}: ping after it failed: {reply}"
    );
}

/// Alice and bob share a direct conversation; returns (alice, bob, conversation_id).
async fn pair(server: &TestServer) -> (Client, Client, String) {
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let conversation_id = create_conversation(&mut alice, "direct", &["bob"]).await;
    bob.event("member.joined").await;
    (alice, bob, conversation_id)
}

/// Bob still gets alice's messages (the node and the other session are fine).
async fn other_user_unaffected(
    alice: &mut Client,
    bob: &mut Client,
    conversation_id: &str,
    client_msg_id: &str,
) {
    let ack = send(alice, conversation_id, client_msg_id, "still here?").await;
    loop {
        let new = bob.event("message.new").await;
        if new["message"]["message_id"] == ack["message_id"] {
            break;
        }
    }
}

#[tokio::test]
async fn malformed_envelopes_get_bad_request_with_null_re() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, conversation_id) = pair(&server).await;
    let cases = [
        ("not JSON", "this is not json".to_owned()),
        ("truncated JSON", r#"{"id": 1, "op": "ping""#.to_owned()),
        ("JSON array", "[1, 2, 3]".to_owned()),
        ("JSON string", r#""ping""#.to_owned()),
        ("JSON number", "42".to_owned()),
        ("JSON null", "null".to_owned()),
        ("missing id", r#"{"op": "ping", "args": {}}"#.to_owned()),
        ("null id", r#"{"id": null, "op": "ping"}"#.to_owned()),
        ("missing op", r#"{"id": 9, "args": {}}"#.to_owned()),
        ("null op", r#"{"id": 9, "op": null}"#.to_owned()),
        ("op not a string", r#"{"id": 9, "op": 5}"#.to_owned()),
        ("non-integer id", r#"{"id": 1.5, "op": "ping"}"#.to_owned()),
        ("string id", r#"{"id": "7", "op": "ping"}"#.to_owned()),
        ("object id", r#"{"id": {"n": 7}, "op": "ping"}"#.to_owned()),
        ("empty object", "{}".to_owned()),
    ];
    for (case, text) in cases {
        let reply = raw_reply(&mut alice, &text).await;
        assert_error(&reply, Value::Null, "bad_request", case);
        assert_usable(&mut alice, case).await;
    }
    other_user_unaffected(&mut alice, &mut bob, &conversation_id, "after-envelopes").await;
}

#[tokio::test]
async fn bad_args_get_bad_request_with_the_request_id() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, conversation_id) = pair(&server).await;
    let cases = [
        (
            "args is an array",
            json!({"id": 11, "op": "ping", "args": [1]}),
        ),
        (
            "args is a string",
            json!({"id": 12, "op": "ping", "args": "x"}),
        ),
        (
            "args is a number",
            json!({"id": 13, "op": "message.send", "args": 3}),
        ),
        (
            "send without conversation_id",
            json!({"id": 14, "op": "message.send", "args": {"client_msg_id": "c", "text": "t"}}),
        ),
        (
            "send without args at all",
            json!({"id": 15, "op": "message.send"}),
        ),
        (
            "send with a numeric conversation_id",
            json!({"id": 16, "op": "message.send", "args": {
                "conversation_id": 5, "client_msg_id": "c", "text": "t"}}),
        ),
        (
            "send with a numeric text",
            json!({"id": 17, "op": "message.send", "args": {
                "conversation_id": conversation_id, "client_msg_id": "c", "text": 5}}),
        ),
        (
            "send with empty text",
            json!({"id": 18, "op": "message.send", "args": {
                "conversation_id": conversation_id, "client_msg_id": "c", "text": ""}}),
        ),
        (
            "send with an empty client_msg_id",
            json!({"id": 19, "op": "message.send", "args": {
                "conversation_id": conversation_id, "client_msg_id": "", "text": "t"}}),
        ),
        (
            "history with a string limit",
            json!({"id": 20, "op": "history.get", "args": {
                "conversation_id": conversation_id, "limit": "10"}}),
        ),
        (
            "history with limit 0",
            json!({"id": 21, "op": "history.get", "args": {
                "conversation_id": conversation_id, "limit": 0}}),
        ),
        (
            "send with a 129-byte client_msg_id",
            json!({"id": 23, "op": "message.send", "args": {
                "conversation_id": conversation_id, "client_msg_id": "k".repeat(129), "text": "t"}}),
        ),
        (
            "history with limit 101",
            json!({"id": 24, "op": "history.get", "args": {
                "conversation_id": conversation_id, "limit": 101}}),
        ),
        (
            "sync with conversations not an object",
            json!({"id": 22, "op": "sync", "args": {"conversations": ["x"]}}),
        ),
    ];
    for (case, frame) in cases {
        let id = frame["id"].clone();
        let reply = raw_reply(&mut alice, &frame.to_string()).await;
        assert_error(&reply, id, "bad_request", case);
        assert_usable(&mut alice, case).await;
    }
    // Missing or null args are `{}`; unknown extra fields are ignored.
    for (case, frame) in [
        ("ping without args", json!({"id": 31, "op": "ping"})),
        (
            "ping with null args",
            json!({"id": 32, "op": "ping", "args": null}),
        ),
        (
            "extra fields",
            json!({"id": 33, "op": "ping", "args": {"x": 1}, "extra": true}),
        ),
    ] {
        let reply = raw_reply(&mut alice, &frame.to_string()).await;
        assert_eq!(reply, json!({"re": frame["id"], "result": {}}), "{case}");
    }
    other_user_unaffected(&mut alice, &mut bob, &conversation_id, "after-args").await;
}

#[tokio::test]
async fn unknown_op_and_binary_frames() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, conversation_id) = pair(&server).await;
    for (case, frame) in [
        (
            "unknown op",
            json!({"id": 41, "op": "message.explode", "args": {}}),
        ),
        ("empty op", json!({"id": 42, "op": ""})),
        ("unknown op without args", json!({"id": 43, "op": "Ping"})),
    ] {
        let reply = raw_reply(&mut alice, &frame.to_string()).await;
        assert_error(&reply, frame["id"].clone(), "unknown_op", case);
        assert_usable(&mut alice, case).await;
    }

    alice
        .ws
        .send(Message::Binary(
            br#"{"id": 44, "op": "ping"}"#.to_vec().into(),
        ))
        .await
        .expect("send binary");
    let reply = next_reply(&mut alice).await;
    assert_error(&reply, Value::Null, "bad_request", "binary frame");
    assert_usable(&mut alice, "binary frame").await;
    other_user_unaffected(&mut alice, &mut bob, &conversation_id, "after-binary").await;
}

#[tokio::test]
async fn oversized_frames_get_too_large_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, conversation_id) = pair(&server).await;
    let big_text = "x".repeat(70 * 1024);

    // Over 64 KiB, readable id.
    let frame = json!({"id": 51, "op": "message.send", "args": {
        "conversation_id": conversation_id, "client_msg_id": "big", "text": big_text}});
    let reply = raw_reply(&mut alice, &frame.to_string()).await;
    assert_error(&reply, json!(51), "too_large", "big send");
    assert_usable(&mut alice, "big send").await;

    // Over 64 KiB, valid envelope but well below 1 MiB: still too_large, the op is not run.
    let frame = json!({"id": 52, "op": "ping", "args": {"pad": "y".repeat(500 * 1024)}});
    let reply = raw_reply(&mut alice, &frame.to_string()).await;
    assert_error(&reply, json!(52), "too_large", "big ping");

    // Over 64 KiB, no readable id.
    let reply = raw_reply(&mut alice, &big_text).await;
    assert_error(&reply, Value::Null, "too_large", "big non-JSON");
    let frame = json!({"id": "53", "op": "ping", "args": {"pad": big_text}});
    let reply = raw_reply(&mut alice, &frame.to_string()).await;
    assert_error(
        &reply,
        Value::Null,
        "too_large",
        "big frame with a string id",
    );
    assert_usable(&mut alice, "big frames").await;

    // None of the too_large frames was processed.
    let history = alice
        .ok("history.get", json!({"conversation_id": conversation_id}))
        .await;
    assert_eq!(
        history["messages"],
        json!([]),
        "too_large frames are not processed"
    );
    other_user_unaffected(&mut alice, &mut bob, &conversation_id, "after-big").await;
}

#[tokio::test]
async fn frame_over_1_mib_closes_with_1009_and_the_node_stays_up() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, conversation_id) = pair(&server).await;
    let mut carol = server.connect("carol").await;
    let huge = json!({"id": 61, "op": "ping", "args": {"pad": "z".repeat(1_100_000)}});
    // The server may stop reading before the whole frame is written.
    let _ = carol.ws.send(Message::Text(huge.to_string().into())).await;
    let closed = carol.closed().await;
    assert_eq!(closed.code, 1009, "{closed:?}");

    let (status, body) = server
        .http("GET", "/healthz", &[], None)
        .await
        .expect("http");
    assert_eq!(status, 200, "{body}");
    assert_usable(&mut alice, "after 1009").await;
    other_user_unaffected(&mut alice, &mut bob, &conversation_id, "after-1009").await;
    let mut carol = server.connect("carol").await;
    assert_usable(&mut carol, "carol reconnected").await;
}

#[tokio::test]
async fn non_members_get_not_member_and_strangers_messages_are_forbidden() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, conversation_id) = pair(&server).await;
    let mut carol = server.connect("carol").await;
    let alices = send(&mut alice, &conversation_id, "a-1", "alice's").await;
    let bobs = send(&mut bob, &conversation_id, "b-1", "bob's").await;
    let message_id = alices["message_id"].clone();

    let ops = [
        (
            "conversation.get",
            json!({"conversation_id": conversation_id}),
        ),
        (
            "message.send",
            json!({"conversation_id": conversation_id, "client_msg_id": "c-1", "text": "hi"}),
        ),
        ("history.get", json!({"conversation_id": conversation_id})),
        (
            "message.edit",
            json!({"conversation_id": conversation_id, "message_id": message_id, "text": "x"}),
        ),
        (
            "message.delete",
            json!({"conversation_id": conversation_id, "message_id": message_id}),
        ),
        (
            "reaction.add",
            json!({"conversation_id": conversation_id, "message_id": message_id, "emoji": "👍"}),
        ),
        (
            "receipt.read",
            json!({"conversation_id": conversation_id, "seq": 1}),
        ),
        ("typing.start", json!({"conversation_id": conversation_id})),
    ];
    for (op, args) in ops {
        let error = carol.err(op, args).await;
        assert_eq!(error["code"], "not_member", "{op}: {error}");
        assert_usable(&mut carol, op).await;
    }
    // A conversation that does not exist is not_found, not not_member.
    let error = carol
        .err(
            "history.get",
            json!({"conversation_id": "conv_does_not_exist"}),
        )
        .await;
    assert_eq!(error["code"], "not_found", "{error}");
    // Carol is not told about the conversation's traffic.
    carol
        .no_event("message.new", Duration::from_millis(100))
        .await;

    // Members may not edit or delete someone else's message.
    let error = alice
        .err(
            "message.edit",
            json!({"conversation_id": conversation_id, "message_id": bobs["message_id"], "text": "mine now"}),
        )
        .await;
    assert_eq!(error["code"], "forbidden", "{error}");
    let error = alice
        .err(
            "message.delete",
            json!({"conversation_id": conversation_id, "message_id": bobs["message_id"]}),
        )
        .await;
    assert_eq!(error["code"], "forbidden", "{error}");
    assert_usable(&mut alice, "forbidden").await;

    let history = bob
        .ok("history.get", json!({"conversation_id": conversation_id}))
        .await;
    let messages = history["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[0]["text"], "alice's");
    assert_eq!(messages[0]["deleted"], false);
    assert_eq!(messages[1]["text"], "bob's");
    assert_eq!(messages[1]["deleted"], false);
    assert_eq!(messages[1]["edited_at"], Value::Null);
}

#[tokio::test]
async fn rest_api_bad_input() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, conversation_id) = pair(&server).await;
    let path = format!("/api/v1/conversations/{conversation_id}/messages");
    let key = [("X-Api-Key", common::API_KEY)];
    for (case, body) in [
        (
            "missing text",
            json!({"sender_id": "bot", "client_msg_id": "r-1"}),
        ),
        (
            "empty text",
            json!({"sender_id": "bot", "client_msg_id": "r-1", "text": ""}),
        ),
        (
            "missing sender_id",
            json!({"client_msg_id": "r-1", "text": "t"}),
        ),
        (
            "missing client_msg_id",
            json!({"sender_id": "bot", "text": "t"}),
        ),
    ] {
        let (status, response) = server
            .http("POST", &path, &key, Some(&body))
            .await
            .expect("http");
        assert_eq!(status, 400, "{case}: {response}");
        assert_eq!(
            response["error"]["code"], "bad_request",
            "{case}: {response}"
        );
    }
    let (status, response) = server
        .http_raw("POST", &path, &key, "not json")
        .await
        .expect("http");
    assert_eq!(status, 400, "not JSON: {response}");
    assert_eq!(response["error"]["code"], "bad_request", "{response}");
    // A body over limits.max_frame_bytes is 413 too_large (resolution in §13.3).
    let big = json!({"sender_id": "bot", "client_msg_id": "r-big", "text": "x".repeat(70 * 1024)});
    let (status, response) = server
        .http("POST", &path, &key, Some(&big))
        .await
        .expect("http");
    assert_eq!(status, 413, "{response}");
    assert_eq!(response["error"]["code"], "too_large", "{response}");
    // Unknown conversation: 404 for both verbs.
    let (status, response) = server
        .http(
            "POST",
            "/api/v1/conversations/conv_nope/messages",
            &key,
            Some(&json!({"sender_id": "bot", "client_msg_id": "r-2", "text": "t"})),
        )
        .await
        .expect("http");
    assert_eq!(status, 404, "{response}");
    assert_eq!(response["error"]["code"], "not_found", "{response}");
    let (status, response) = server
        .http(
            "GET",
            "/api/v1/conversations/conv_nope/messages",
            &key,
            None,
        )
        .await
        .expect("http");
    assert_eq!(status, 404, "{response}");
    assert_eq!(response["error"]["code"], "not_found", "{response}");
    let (status, response) = server
        .http("GET", &format!("{path}?limit=0"), &key, None)
        .await
        .expect("http");
    assert_eq!(status, 400, "{response}");
    assert_eq!(response["error"]["code"], "bad_request", "{response}");

    // Nothing was posted; the node and the sessions are fine.
    let history = alice
        .ok("history.get", json!({"conversation_id": conversation_id}))
        .await;
    assert_eq!(history["messages"], json!([]));
    other_user_unaffected(&mut alice, &mut bob, &conversation_id, "after-rest").await;
}
