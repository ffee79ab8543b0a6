//! Hostile-client regressions (issue #13, items 4, 6, 7 and 8): what one member sends or asks
//! must never cut another member off, overflow the server's arithmetic, or leave a reader on
//! another node with an old version of a message.

mod common;

use common::durable::DurableCluster;
use common::{
    assert_code, create_conversation, send, seqs, unthrottled_server, Client, TestCluster,
    TestServer, API_KEY,
};
use serde_json::{json, Value};

/// The largest JSON integer `after_seq` may carry is 2^53 - 1; this is u64::MAX.
const U64_MAX: &str = "18446744073709551615";

/// Reads a conversation forward with `history.get` pages of `limit`; returns the seqs and the
/// number of pages.
async fn read_forward(client: &mut Client, conversation_id: &str, limit: u64) -> (Vec<u64>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let after = all.last().copied().unwrap_or(0);
        let page = client
            .ok(
                "history.get",
                json!({"conversation_id": conversation_id, "after_seq": after, "limit": limit}),
            )
            .await;
        pages += 1;
        let page_seqs = seqs(&page["messages"]);
        assert!(!page_seqs.is_empty() || page["has_more"] == false, "{page}");
        all.extend(page_seqs);
        if page["has_more"] == false {
            return (all, pages);
        }
    }
}

/// The encoded size of a reply's messages, as the server counts its byte budget.
fn messages_bytes(messages: &Value) -> usize {
    messages
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| message.to_string().len())
        .sum()
}

#[tokio::test]
async fn seqs_past_the_json_maximum_are_bad_requests() {
    let server = unthrottled_server().await;
    let mut alice = server.connect("alice").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    send(&mut alice, &conversation_id, "m1", "one").await;
    send(&mut alice, &conversation_id, "m2", "two").await;

    // Raw frames: the number must reach the server as written.
    for (op, args) in [
        (
            "history.get",
            format!(r#"{{"conversation_id":"{conversation_id}","after_seq":{U64_MAX}}}"#),
        ),
        (
            "history.get",
            format!(r#"{{"conversation_id":"{conversation_id}","before_seq":{U64_MAX}}}"#),
        ),
        (
            "sync",
            format!(r#"{{"conversations":{{"{conversation_id}":{U64_MAX}}}}}"#),
        ),
        (
            "receipt.read",
            format!(r#"{{"conversation_id":"{conversation_id}","seq":9007199254740992}}"#),
        ),
    ] {
        alice
            .send_text(format!(r#"{{"id":900,"op":"{op}","args":{args}}}"#))
            .await;
        let reply = alice.reply_to(900).await;
        assert_code(&reply["error"], "bad_request");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("out of range"),
            "{op}: {reply}"
        );
    }
    // The largest seq is accepted, and nothing comes after it.
    let page = alice
        .ok(
            "history.get",
            json!({"conversation_id": conversation_id, "after_seq": 9_007_199_254_740_991_u64}),
        )
        .await;
    assert_eq!(seqs(&page["messages"]), Vec::<u64>::new());
    assert_eq!(page["has_more"], false);

    let (status, body) = server
        .http(
            "GET",
            &format!("/api/v1/conversations/{conversation_id}/messages?after_seq={U64_MAX}"),
            &[("X-Api-Key", API_KEY)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_code(&body["error"], "bad_request");
}

#[tokio::test]
async fn large_messages_never_make_a_reply_too_large_to_write() {
    let server = unthrottled_server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    let text = "x".repeat(60 * 1024);
    for index in 0..40 {
        send(&mut alice, &conversation_id, &format!("big-{index}"), &text).await;
    }

    // One page: as many messages as fit the byte budget, the rest announced by has_more.
    let page = bob
        .ok(
            "history.get",
            json!({"conversation_id": conversation_id, "limit": 40}),
        )
        .await;
    let newest = seqs(&page["messages"]);
    assert!(!newest.is_empty() && newest.len() < 40, "{newest:?}");
    assert_eq!(
        newest.last(),
        Some(&40),
        "the newest page ends at the newest"
    );
    assert_eq!(page["has_more"], true);
    assert!(messages_bytes(&page["messages"]) <= 512 * 1024);

    // Paging forward by the returned seqs reads everything exactly once.
    let (all, pages) = read_forward(&mut bob, &conversation_id, 100).await;
    assert_eq!(all, (1..=40).collect::<Vec<u64>>());
    assert!(pages > 1);

    // sync: the same budget across the whole reply.
    let other = create_conversation(&mut alice, "group", &["bob"]).await;
    send(&mut alice, &other, "small", "hello").await;
    let synced = bob
        .ok(
            "sync",
            json!({"conversations": {conversation_id.clone(): 0, other.clone(): 0}}),
        )
        .await;
    let conversations = &synced["conversations"];
    let total: usize = [&conversation_id, &other]
        .iter()
        .map(|id| messages_bytes(&conversations[id.as_str()]["messages"]))
        .sum();
    assert!(total <= 512 * 1024, "{total}");
    let big = &conversations[conversation_id.as_str()];
    assert!(!seqs(&big["messages"]).is_empty());
    assert_eq!(big["has_more"], true);
    // The connection still works.
    bob.ok("ping", json!({})).await;
}

#[tokio::test]
async fn too_many_distinct_reactions_are_refused() {
    let server = unthrottled_server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    let ack = send(&mut alice, &conversation_id, "m1", "react to me").await;
    let react = |emoji: String| json!({"conversation_id": conversation_id, "message_id": ack["message_id"], "emoji": emoji});
    for index in 0..20 {
        alice.ok("reaction.add", react(format!("e{index}"))).await;
    }
    let error = alice.err("reaction.add", react("e20".into())).await;
    assert_code(&error, "conflict");
    // An emoji already on the message can still be added by someone else.
    let message = bob.ok("reaction.add", react("e0".into())).await;
    assert_eq!(
        message["message"]["reactions"]["e0"],
        json!(["alice", "bob"])
    );
    assert_eq!(
        message["message"]["reactions"]
            .as_object()
            .map(|reactions| reactions.len()),
        Some(20)
    );
}

/// Alice on node `a` edits and deletes messages bob (on node `b`) reacted to: once bob is told,
/// both read the new versions.
async fn changes_on_one_node_are_read_on_the_other(a: &TestServer, b: &TestServer) {
    let mut alice = a.connect("alice").await;
    let mut bob = a.connect_to("bob", b).await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    bob.event("member.joined").await;
    let first = send(&mut alice, &conversation_id, "m1", "first").await;
    let second = send(&mut alice, &conversation_id, "m2", "second").await;
    // Both are in A's store (A's reads may find them there).
    for _ in 0..2 {
        alice.event("message.stored").await;
    }
    for message in [&first, &second] {
        bob.ok(
            "reaction.add",
            json!({"conversation_id": conversation_id, "message_id": message["message_id"], "emoji": "👍"}),
        )
        .await;
        alice.event("reaction.updated").await;
    }

    alice
        .ok(
            "message.edit",
            json!({"conversation_id": conversation_id, "message_id": first["message_id"], "text": "first, edited"}),
        )
        .await;
    alice
        .ok(
            "message.delete",
            json!({"conversation_id": conversation_id, "message_id": second["message_id"]}),
        )
        .await;
    bob.event("message.edited").await;
    bob.event("message.deleted").await;

    for reader in [&mut bob, &mut alice] {
        let page = reader
            .ok("history.get", json!({"conversation_id": conversation_id}))
            .await;
        let messages = page["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{page}");
        assert_eq!(messages[0]["text"], "first, edited", "{page}");
        assert_eq!(messages[0]["reactions"], json!({"👍": ["bob"]}), "{page}");
        assert_eq!(messages[1]["deleted"], true, "{page}");
        assert_eq!(messages[1]["text"], "", "{page}");
    }
}

/// Alice on node `a` edits a message that left the window and the cache (of 4) long ago; bob
/// reads it on node `b`, whose store never had it (cluster mode) or has it only once ingest
/// wrote the edit (durable mode).
async fn a_change_to_an_older_message_is_read_on_the_other_node(a: &TestServer, b: &TestServer) {
    let mut alice = a.connect("alice").await;
    let mut bob = a.connect_to("bob", b).await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    bob.event("member.joined").await;
    let first = send(&mut alice, &conversation_id, "old", "old text").await;
    alice.event("message.stored").await;
    for index in 0..6 {
        send(&mut bob, &conversation_id, &format!("b{index}"), "later").await;
        bob.event("message.stored").await;
    }
    alice
        .ok(
            "message.edit",
            json!({"conversation_id": conversation_id, "message_id": first["message_id"], "text": "new text"}),
        )
        .await;
    bob.event("message.edited").await;

    // B's store never had seq 1 (it was accepted on A); the shared cache has its new version.
    let page = bob
        .ok(
            "history.get",
            json!({"conversation_id": conversation_id, "after_seq": 0, "limit": 10}),
        )
        .await;
    assert_eq!(
        seqs(&page["messages"]),
        (1..=7).collect::<Vec<u64>>(),
        "{page}"
    );
    assert_eq!(page["messages"][0]["text"], "new text", "{page}");
}

/// Nodes whose window and cache hold 4 messages.
const SMALL_WINDOW: (&str, &str) = ("PARLEY__LIMITS__RECENT_MESSAGES", "4");

#[tokio::test]
async fn changes_made_on_one_cluster_node_are_read_on_the_other() {
    let cluster = TestCluster::start(2, &[SMALL_WINDOW]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    changes_on_one_node_are_read_on_the_other(a, b).await;
    a_change_to_an_older_message_is_read_on_the_other_node(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_on_one_durable_node_are_read_on_the_other() {
    let cluster = DurableCluster::start("parley_e2e_hostile_readers", 2, &[SMALL_WINDOW]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    changes_on_one_node_are_read_on_the_other(a, b).await;
    a_change_to_an_older_message_is_read_on_the_other_node(a, b).await;
}

#[tokio::test]
async fn concurrent_reactions_to_an_older_message_are_all_kept() {
    // A window of 2: seq 1 is outside it, so each change reads it from the store.
    let server = common::TestServer::start_with(&[
        ("PARLEY__LIMITS__RECENT_MESSAGES", "2"),
        ("PARLEY__RATE_LIMIT__PER_SECOND", "10000"),
        ("PARLEY__RATE_LIMIT__BURST", "10000"),
    ])
    .await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    let first = send(&mut alice, &conversation_id, "m1", "old").await;
    for index in 0..4 {
        send(
            &mut alice,
            &conversation_id,
            &format!("m{}", index + 2),
            "newer",
        )
        .await;
    }
    // Both users' reactions queued at once (their answers are read afterwards).
    let emojis = 8;
    for index in 0..emojis {
        for (client, id_base) in [(&mut alice, 1000), (&mut bob, 2000)] {
            let frame = json!({"id": id_base + index, "op": "reaction.add", "args": {
                "conversation_id": conversation_id, "message_id": first["message_id"],
                "emoji": format!("e{index}")}});
            client.send_text(frame.to_string()).await;
        }
    }
    // Answers to one session's requests may come in any order.
    for client in [&mut alice, &mut bob] {
        let mut answered = 0;
        while answered < emojis {
            let frame = client.next_frame().await;
            if frame.get("re").is_some() {
                assert!(frame.get("result").is_some(), "{frame}");
                answered += 1;
            }
        }
    }
    let page = bob
        .ok(
            "history.get",
            json!({"conversation_id": conversation_id, "after_seq": 0, "limit": 1}),
        )
        .await;
    let reactions = page["messages"][0]["reactions"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(reactions.len(), emojis as usize, "{page}");
    for users in reactions.values() {
        assert_eq!(users.as_array().unwrap().len(), 2, "{page}");
    }
}
