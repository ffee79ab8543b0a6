//! Recovery and realtime operations of docs/protocol.md §7.14–§7.18 (sync, receipts, typing,
//! presence, ping) and their events, checked against the real server.

mod common;

use std::time::Duration;

use common::{
    assert_code, create_conversation, send, seqs, unthrottled_server as server, Client, ABSENT,
};
use futures::StreamExt;
use serde_json::{json, Value};

/// Closes the connection from the client side and waits until it is gone.
async fn disconnect(mut client: Client) {
    client.ws.close(None).await.expect("close");
    while let Ok(Some(Ok(_))) =
        tokio::time::timeout(Duration::from_secs(10), client.ws.next()).await
    {}
}

#[tokio::test]
async fn sync_returns_exactly_the_missing_messages_per_conversation() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut carol = server.connect("carol").await;
    let big = create_conversation(&mut alice, "group", &["bob"]).await;
    let small = create_conversation(&mut alice, "group", &["bob"]).await;
    let quiet = create_conversation(&mut alice, "group", &["bob"]).await;
    let not_bobs = create_conversation(&mut carol, "group", &["alice"]).await;
    for n in 1..=105 {
        send(&mut alice, &big, &format!("b{n}"), &format!("big {n}")).await;
    }
    let mut small_acks = Vec::new();
    for n in 1..=3 {
        small_acks.push(send(&mut alice, &small, &format!("s{n}"), &format!("small {n}")).await);
    }
    alice
        .ok(
            "message.delete",
            json!({ "conversation_id": small, "message_id": small_acks[2]["message_id"] }),
        )
        .await;
    send(&mut carol, &not_bobs, "c1", "not for bob").await;

    // bob comes online and recovers.
    let mut bob = server.connect("bob").await;
    let result = bob
        .ok(
            "sync",
            json!({ "conversations": {
                big.as_str(): 0, small.as_str(): 1, quiet.as_str(): 0,
                not_bobs.as_str(): 0, "conv_does_not_exist": 0 } }),
        )
        .await;
    let conversations = result["conversations"]
        .as_object()
        .unwrap_or_else(|| panic!("conversations object: {result}"));
    let mut keys: Vec<&String> = conversations.keys().collect();
    keys.sort();
    let mut expected_keys = vec![&big, &small, &quiet];
    expected_keys.sort();
    assert_eq!(keys, expected_keys, "only bob's conversations are returned");

    let big_page = &conversations[&big];
    assert_eq!(seqs(&big_page["messages"]), (1..=100).collect::<Vec<_>>());
    assert_eq!(big_page["has_more"], true);
    assert_eq!(big_page["messages"][0]["text"], "big 1");
    assert_eq!(big_page["messages"][0]["conversation_id"], big.as_str());

    let small_page = &conversations[&small];
    assert_eq!(seqs(&small_page["messages"]), vec![2, 3]);
    assert_eq!(small_page["has_more"], false);
    assert_eq!(small_page["messages"][0]["text"], "small 2");
    // A deleted message still appears, empty.
    assert_eq!(small_page["messages"][1]["deleted"], true);
    assert_eq!(small_page["messages"][1]["text"], "");

    assert_eq!(
        conversations[&quiet],
        json!({ "messages": [], "has_more": false, "first_seq": 1 })
    );

    // Page on with history.get after the last seq received.
    let rest = bob
        .ok(
            "history.get",
            json!({ "conversation_id": big, "after_seq": 100 }),
        )
        .await;
    assert_eq!(seqs(&rest["messages"]), (101..=105).collect::<Vec<_>>());
    assert_eq!(rest["has_more"], false);

    // Up to date, and one page short of the end.
    let result = bob
        .ok(
            "sync",
            json!({ "conversations": { big.as_str(): 105, small.as_str(): 3 } }),
        )
        .await;
    assert_eq!(
        result["conversations"][&big],
        json!({ "messages": [], "has_more": false, "first_seq": 1 })
    );
    assert_eq!(
        result["conversations"][&small],
        json!({ "messages": [], "has_more": false, "first_seq": 1 })
    );
    let result = bob
        .ok("sync", json!({ "conversations": { big.as_str(): 4 } }))
        .await;
    assert_eq!(
        seqs(&result["conversations"][&big]["messages"]),
        (5..=104).collect::<Vec<_>>()
    );
    assert_eq!(result["conversations"][&big]["has_more"], true);
    let result = bob
        .ok("sync", json!({ "conversations": { big.as_str(): 5 } }))
        .await;
    assert_eq!(
        seqs(&result["conversations"][&big]["messages"]),
        (6..=105).collect::<Vec<_>>()
    );
    assert_eq!(result["conversations"][&big]["has_more"], false);

    let empty = bob.ok("sync", json!({ "conversations": {} })).await;
    assert_eq!(empty, json!({ "conversations": {} }));
    let error = bob.err("sync", json!({})).await;
    assert_code(&error, "bad_request");
}

#[tokio::test]
async fn receipts_raise_watermarks_that_never_go_back() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob1 = server.connect("bob").await;
    let mut bob2 = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let id = create_conversation(&mut alice, "group", &["bob"]).await;
    for n in 1..=3 {
        send(&mut alice, &id, &format!("m{n}"), "x").await;
    }
    // Sending raised alice's own watermarks silently.
    bob1.no_event("receipt.updated", ABSENT).await;
    let result = alice
        .ok("receipt.read", json!({ "conversation_id": id, "seq": 3 }))
        .await;
    assert_eq!(result, json!({}));

    let receipt = |delivered: u64, read: u64| {
        json!({ "conversation_id": id, "user_id": "bob",
                "delivered_seq": delivered, "read_seq": read })
    };

    let result = bob1
        .ok(
            "receipt.delivered",
            json!({ "conversation_id": id, "seq": 2 }),
        )
        .await;
    assert_eq!(result, json!({}));
    // To all members, the caller's own sessions included.
    for client in [&mut alice, &mut bob1, &mut bob2] {
        assert_eq!(client.event("receipt.updated").await, receipt(2, 0));
    }

    // read below delivered: read rises, delivered stays.
    bob1.ok("receipt.read", json!({ "conversation_id": id, "seq": 1 }))
        .await;
    for client in [&mut alice, &mut bob1, &mut bob2] {
        assert_eq!(client.event("receipt.updated").await, receipt(2, 1));
    }

    // read raises delivered too.
    bob2.ok("receipt.read", json!({ "conversation_id": id, "seq": 3 }))
        .await;
    for client in [&mut alice, &mut bob1, &mut bob2] {
        assert_eq!(client.event("receipt.updated").await, receipt(3, 3));
    }

    // At or below the watermark: {} and no event.
    for (op, seq) in [
        ("receipt.delivered", 2),
        ("receipt.delivered", 3),
        ("receipt.read", 3),
        ("receipt.read", 0),
    ] {
        let result = bob1
            .ok(op, json!({ "conversation_id": id, "seq": seq }))
            .await;
        assert_eq!(result, json!({}), "{op} {seq}");
    }
    alice.no_event("receipt.updated", ABSENT).await;
    bob2.no_event("receipt.updated", Duration::ZERO).await;
    carol.no_event("receipt.updated", Duration::ZERO).await;

    // Past last_seq → bad_request.
    for op in ["receipt.delivered", "receipt.read"] {
        let error = bob1
            .err(op, json!({ "conversation_id": id, "seq": 4 }))
            .await;
        assert_eq!(error["code"], "bad_request", "{op}: {error}");
    }
    let error = bob1
        .err("receipt.read", json!({ "conversation_id": id }))
        .await;
    assert_code(&error, "bad_request");
}

#[tokio::test]
async fn typing_goes_to_the_other_members_only() {
    let server = server().await;
    let mut alice1 = server.connect("alice").await;
    let mut alice2 = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let id = create_conversation(&mut alice1, "group", &["bob"]).await;

    let result = alice1
        .ok("typing.start", json!({ "conversation_id": id }))
        .await;
    assert_eq!(result, json!({}));
    assert_eq!(
        bob.event("typing").await,
        json!({ "conversation_id": id, "user_id": "alice", "state": "started" })
    );
    // No state on the server: every request produces an event.
    alice1
        .ok("typing.start", json!({ "conversation_id": id }))
        .await;
    assert_eq!(bob.event("typing").await["state"], "started");

    let result = alice2
        .ok("typing.stop", json!({ "conversation_id": id }))
        .await;
    assert_eq!(result, json!({}));
    assert_eq!(
        bob.event("typing").await,
        json!({ "conversation_id": id, "user_id": "alice", "state": "stopped" })
    );

    // Never to the typer's own sessions, nor to non-members.
    alice1.no_event("typing", ABSENT).await;
    alice2.no_event("typing", Duration::ZERO).await;
    carol.no_event("typing", Duration::ZERO).await;
}

#[tokio::test]
async fn presence_get_reports_online_offline_and_never_seen() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let _bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    create_conversation(&mut carol, "group", &["alice"]).await;
    disconnect(carol).await;
    // alice shares a conversation with carol: the offline event says the close was handled.
    loop {
        let presence = alice.event("presence").await;
        if presence["user_id"] == "carol" && presence["online"] == false {
            break;
        }
    }

    let result = alice
        .ok(
            "presence.get",
            json!({ "user_ids": ["bob", "carol", "zoe", "alice"] }),
        )
        .await;
    let presence = &result["presence"];
    assert_eq!(
        presence["bob"],
        json!({ "online": true, "last_seen": null }),
        "{result}"
    );
    assert_eq!(
        presence["alice"],
        json!({ "online": true, "last_seen": null }),
        "{result}"
    );
    assert_eq!(
        presence["zoe"],
        json!({ "online": false, "last_seen": null }),
        "{result}"
    );
    assert_eq!(presence["carol"]["online"], false, "{result}");
    assert!(presence["carol"]["last_seen"].is_string(), "{result}");
    assert_eq!(presence.as_object().unwrap().len(), 4, "{result}");

    let error = alice.err("presence.get", json!({})).await;
    assert_code(&error, "bad_request");
}

#[tokio::test]
async fn presence_events_follow_the_first_and_last_session() {
    let server = server().await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    // bob shares a conversation with alice (offline); carol shares none with her.
    create_conversation(&mut bob, "group", &["alice"]).await;

    let alice1 = server.connect("alice").await;
    let online = bob.event("presence").await;
    assert_eq!(online["user_id"], "alice");
    assert_eq!(online["online"], true);
    assert!(
        online.get("last_seen").is_none_or(Value::is_null),
        "last_seen only when offline: {online}"
    );

    // A second session is not a new "online", closing it is not "offline".
    let alice2 = server.connect("alice").await;
    disconnect(alice2).await;
    bob.no_event("presence", ABSENT).await;

    disconnect(alice1).await;
    let offline = bob.event("presence").await;
    assert_eq!(offline["user_id"], "alice");
    assert_eq!(offline["online"], false);
    assert!(offline["last_seen"].is_string(), "{offline}");

    carol.no_event("presence", Duration::ZERO).await;
    let result = bob
        .ok("presence.get", json!({ "user_ids": ["alice"] }))
        .await;
    assert_eq!(result["presence"]["alice"]["online"], false);
    assert_eq!(
        result["presence"]["alice"]["last_seen"],
        offline["last_seen"]
    );
}

#[tokio::test]
async fn ping_returns_an_empty_result() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    assert_eq!(alice.ok("ping", json!({})).await, json!({}));
    // Args are optional.
    alice.send_text(r#"{"id": 77, "op": "ping"}"#).await;
    assert_eq!(alice.reply_to(77).await, json!({ "re": 77, "result": {} }));
}
