//! The guarantees of docs/protocol.md §7.8, §11 and DESIGN.md "Guarantees", checked from the
//! outside: dense per-conversation seq, idempotent sends, durability of acks across kill -9,
//! and exact recovery with `sync`.

mod common;

use std::collections::{HashMap, HashSet};

use common::{create_conversation, metric, send, Client, TestServer, API_KEY};
use serde_json::{json, Value};

/// Lifts the per-user rate limit so that pipelined bursts are not rejected (§12.2).
const FAST: &[(&str, &str)] = &[
    ("PARLEY__RATE_LIMIT__PER_SECOND", "100000"),
    ("PARLEY__RATE_LIMIT__BURST", "100000"),
];

/// Reads frames until every id in `ids` got its reply; events are kept in `client.events`.
async fn replies(client: &mut Client, ids: &[i64]) -> HashMap<i64, Value> {
    let mut wanted: HashSet<i64> = ids.iter().copied().collect();
    let mut out = HashMap::new();
    while !wanted.is_empty() {
        let frame = client.next_frame().await;
        if frame.get("ev").is_some() {
            client.events.push_back(frame);
            continue;
        }
        let re = frame["re"]
            .as_i64()
            .unwrap_or_else(|| panic!("reply without an id: {frame}"));
        assert!(wanted.remove(&re), "unexpected or duplicate reply: {frame}");
        out.insert(re, frame);
    }
    out
}

/// The seqs of the next `count` `message.new` events of `conversation_id`, in arrival order
/// (queued events first). Other events are dropped.
async fn message_new_seqs(client: &mut Client, conversation_id: &str, count: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    let queued: Vec<Value> = client.events.drain(..).collect();
    for frame in queued {
        if seqs.len() < count
            && frame["ev"] == "message.new"
            && frame["data"]["message"]["conversation_id"] == conversation_id
        {
            seqs.push(frame["data"]["message"]["seq"].as_u64().expect("seq"));
        }
    }
    while seqs.len() < count {
        let frame = client.next_frame().await;
        assert!(frame.get("ev").is_some(), "unexpected reply: {frame}");
        if frame["ev"] == "message.new"
            && frame["data"]["message"]["conversation_id"] == conversation_id
        {
            seqs.push(frame["data"]["message"]["seq"].as_u64().expect("seq"));
        }
    }
    seqs
}

/// The whole history of a conversation, paged forward with `after_seq`.
async fn full_history(client: &mut Client, conversation_id: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut after = 0u64;
    loop {
        let page = client
            .ok(
                "history.get",
                json!({ "conversation_id": conversation_id, "after_seq": after, "limit": 100 }),
            )
            .await;
        let batch = page["messages"].as_array().expect("messages").clone();
        if let Some(last) = batch.last() {
            after = last["seq"].as_u64().expect("seq");
        }
        messages.extend(batch);
        if page["has_more"] != true {
            return messages;
        }
    }
}

fn seqs_of(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|message| message["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_get_dense_distinct_seqs_delivered_in_order() {
    const PER_USER: i64 = 50;
    let users = ["alice", "bob", "carol", "dave"];
    let server = TestServer::start_with(FAST).await;
    let mut clients = Vec::new();
    for user in users {
        clients.push(server.connect(user).await);
    }
    let conversation_id = create_conversation(&mut clients[0], "group", &users[1..]).await;
    // Everybody knows about the group before the sends start.
    for client in clients.iter_mut().skip(1) {
        client.event("member.joined").await;
    }

    let total = PER_USER as usize * users.len();
    let mut tasks = Vec::new();
    for (index, mut client) in clients.into_iter().enumerate() {
        let conversation_id = conversation_id.clone();
        tasks.push(tokio::spawn(async move {
            let user = users[index];
            let ids: Vec<i64> = (1000..1000 + PER_USER).collect();
            // Pipelined: all 50 frames go out before any reply is read.
            for id in &ids {
                client
                    .send_text(
                        json!({"id": id, "op": "message.send", "args": {
                            "conversation_id": conversation_id,
                            "client_msg_id": format!("{user}-{id}"),
                            "text": format!("{user} says {id}"),
                        }})
                        .to_string(),
                    )
                    .await;
            }
            let replies = replies(&mut client, &ids).await;
            let acks: Vec<(String, Value)> = ids
                .iter()
                .map(|id| {
                    let frame = &replies[id];
                    assert!(frame.get("result").is_some(), "send failed: {frame}");
                    (format!("{user} says {id}"), frame["result"].clone())
                })
                .collect();
            let seqs = message_new_seqs(&mut client, &conversation_id, total).await;
            (client, acks, seqs)
        }));
    }

    let mut all_acks = Vec::new();
    let mut clients = Vec::new();
    for task in tasks {
        let (client, acks, seqs) = task.await.expect("sender task");
        let expected: Vec<u64> = (1..=total as u64).collect();
        assert_eq!(
            seqs,
            expected,
            "{} must receive message.new in seq order, no gap, no duplicate",
            client.user_id()
        );
        all_acks.extend(acks);
        clients.push(client);
    }

    let mut ack_seqs: Vec<u64> = all_acks
        .iter()
        .map(|(_, ack)| ack["seq"].as_u64().expect("ack seq"))
        .collect();
    ack_seqs.sort_unstable();
    assert_eq!(ack_seqs, (1..=total as u64).collect::<Vec<_>>());
    let message_ids: HashSet<&str> = all_acks
        .iter()
        .map(|(_, ack)| ack["message_id"].as_str().expect("message_id"))
        .collect();
    assert_eq!(message_ids.len(), total, "message ids must be unique");

    let history = full_history(&mut clients[1], &conversation_id).await;
    assert_eq!(seqs_of(&history), (1..=total as u64).collect::<Vec<_>>());
    for (text, ack) in &all_acks {
        let message = &history[ack["seq"].as_u64().unwrap() as usize - 1];
        assert_eq!(message["message_id"], ack["message_id"]);
        assert_eq!(message["text"], text.as_str());
    }
}

#[tokio::test]
async fn same_client_msg_id_returns_the_original_ack_even_after_kill_9() {
    let mut server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let conversation_id = create_conversation(&mut alice, "direct", &["bob"]).await;

    // Sequential retry.
    let first = send(&mut alice, &conversation_id, "dup-1", "hello").await;
    let retry = send(&mut alice, &conversation_id, "dup-1", "hello").await;
    assert_eq!(retry, first, "a retry must return the original ack");
    assert_eq!(first["seq"], 1);

    // Two frames back to back, the second sent before the first is answered.
    for id in [500, 501] {
        alice
            .send_text(
                json!({"id": id, "op": "message.send", "args": {
                    "conversation_id": conversation_id, "client_msg_id": "dup-2", "text": "twice"}})
                .to_string(),
            )
            .await;
    }
    let both = replies(&mut alice, &[500, 501]).await;
    assert!(both[&500].get("result").is_some(), "{}", both[&500]);
    assert_eq!(
        both[&500]["result"], both[&501]["result"],
        "concurrent duplicates must get the same ack"
    );
    let second = both[&500]["result"].clone();
    assert_eq!(second["seq"], 2);

    // A different sender may use the same key: it is a new message.
    let bobs = send(&mut bob, &conversation_id, "dup-1", "bob's own").await;
    assert_eq!(bobs["seq"], 3);
    assert_ne!(bobs["message_id"], first["message_id"]);

    // Bob saw exactly one message.new per message: 1, 2, 3 with nothing in between.
    assert_eq!(
        message_new_seqs(&mut bob, &conversation_id, 3).await,
        vec![1, 2, 3]
    );
    let history = full_history(&mut bob, &conversation_id).await;
    assert_eq!(seqs_of(&history), vec![1, 2, 3]);
    assert_eq!(history[0]["client_msg_id"], "dup-1");
    assert_eq!(history[1]["client_msg_id"], "dup-2");
    assert_eq!(history[1]["message_id"], second["message_id"]);

    server.kill9();
    server.restart().await;
    let mut alice = server.connect("alice").await;
    let after = send(&mut alice, &conversation_id, "dup-1", "hello").await;
    assert_eq!(
        after, first,
        "after kill -9 the retry returns the original ack"
    );
    let after = send(&mut alice, &conversation_id, "dup-2", "twice").await;
    assert_eq!(after, second);
    let history = full_history(&mut alice, &conversation_id).await;
    assert_eq!(seqs_of(&history), vec![1, 2, 3], "no message was created");
    let next = send(&mut alice, &conversation_id, "fresh", "new one").await;
    assert_eq!(next["seq"], 4);
}

#[tokio::test]
async fn acked_messages_survive_kill_9() {
    const COUNT: i64 = 50;
    let mut server = TestServer::start_with(FAST).await;
    let mut alice = server.connect("alice").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    let ids: Vec<i64> = (100..100 + COUNT).collect();
    for id in &ids {
        alice
            .send_text(
                json!({"id": id, "op": "message.send", "args": {
                    "conversation_id": conversation_id,
                    "client_msg_id": format!("k-{id}"),
                    "text": format!("durable {id}"),
                }})
                .to_string(),
            )
            .await;
    }
    let replies = replies(&mut alice, &ids).await;
    // kill -9 as soon as the last ack is in.
    server.kill9();

    let mut acks = Vec::new();
    for id in &ids {
        let frame = &replies[id];
        assert!(frame.get("result").is_some(), "send failed: {frame}");
        acks.push((format!("durable {id}"), frame["result"].clone()));
    }
    let mut ack_seqs: Vec<u64> = acks
        .iter()
        .map(|(_, a)| a["seq"].as_u64().unwrap())
        .collect();
    ack_seqs.sort_unstable();
    assert_eq!(ack_seqs, (1..=COUNT as u64).collect::<Vec<_>>());

    server.restart().await;
    let mut bob = server.connect("bob").await;
    let history = full_history(&mut bob, &conversation_id).await;
    assert_eq!(
        seqs_of(&history),
        (1..=COUNT as u64).collect::<Vec<_>>(),
        "every acked message is in history after kill -9"
    );
    for (text, ack) in &acks {
        let message = &history[ack["seq"].as_u64().unwrap() as usize - 1];
        assert_eq!(message["message_id"], ack["message_id"], "{message}");
        assert_eq!(message["text"], text.as_str(), "{message}");
        assert_eq!(message["sender_id"], "alice");
    }
    // The REST API sees the same.
    let (status, body) = server
        .http(
            "GET",
            &format!("/api/v1/conversations/{conversation_id}/messages?after_seq=0&limit=100"),
            &[("X-Api-Key", API_KEY)],
            None,
        )
        .await
        .expect("http");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["messages"].as_array().map(Vec::len),
        Some(COUNT as usize)
    );
    // New sends continue the sequence.
    let next = send(&mut bob, &conversation_id, "b-1", "after restart").await;
    assert_eq!(next["seq"], COUNT + 1);
}

#[tokio::test]
async fn sync_after_reconnect_returns_exactly_the_missed_messages() {
    let mut server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let conversation_id = create_conversation(&mut alice, "direct", &["bob"]).await;
    for i in 1..=3 {
        send(
            &mut alice,
            &conversation_id,
            &format!("a-{i}"),
            &format!("seen {i}"),
        )
        .await;
    }
    assert_eq!(
        message_new_seqs(&mut bob, &conversation_id, 3).await,
        vec![1, 2, 3]
    );
    let last_seen = 3;
    drop(bob);

    let mut acks = Vec::new();
    for i in 1..=7 {
        acks.push(
            send(
                &mut alice,
                &conversation_id,
                &format!("m-{i}"),
                &format!("missed {i}"),
            )
            .await,
        );
    }

    let check = |result: &Value| {
        let entry = &result["conversations"][conversation_id.as_str()];
        let messages = entry["messages"].as_array().expect("messages");
        assert_eq!(
            seqs_of(messages),
            (4..=10).collect::<Vec<_>>(),
            "sync returns exactly the missed messages: {result}"
        );
        for (i, (message, ack)) in messages.iter().zip(&acks).enumerate() {
            assert_eq!(message["message_id"], ack["message_id"]);
            assert_eq!(message["text"], format!("missed {}", i + 1));
            assert_eq!(message["conversation_id"], conversation_id.as_str());
        }
        assert_eq!(entry["has_more"], false);
    };

    let mut bob = server.connect("bob").await;
    let result = bob
        .ok(
            "sync",
            json!({ "conversations": { conversation_id.as_str(): last_seen } }),
        )
        .await;
    check(&result);

    server.kill9();
    server.restart().await;
    let mut bob = server.connect("bob").await;
    let result = bob
        .ok(
            "sync",
            json!({ "conversations": { conversation_id.as_str(): last_seen } }),
        )
        .await;
    check(&result);
}

#[tokio::test]
async fn rest_posted_message_survives_kill_9() {
    let mut server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    let path = format!("/api/v1/conversations/{conversation_id}/messages");
    let body =
        json!({"sender_id": "trip-bot", "client_msg_id": "bot-1", "text": "from the backend"});
    let (status, ack) = server
        .http("POST", &path, &[("X-Api-Key", API_KEY)], Some(&body))
        .await
        .expect("http");
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["seq"], 1);

    server.kill9();
    server.restart().await;

    let (status, page) = server
        .http("GET", &path, &[("X-Api-Key", API_KEY)], None)
        .await
        .expect("http");
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{page}");
    assert_eq!(messages[0]["message_id"], ack["message_id"]);
    assert_eq!(messages[0]["seq"], 1);
    assert_eq!(messages[0]["sender_id"], "trip-bot");
    assert_eq!(messages[0]["text"], "from the backend");

    let mut bob = server.connect("bob").await;
    let history = full_history(&mut bob, &conversation_id).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["message_id"], ack["message_id"]);

    // The same client_msg_id from the same sender returns the original result.
    let (status, again) = server
        .http("POST", &path, &[("X-Api-Key", API_KEY)], Some(&body))
        .await
        .expect("http");
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, ack);
}

#[tokio::test]
async fn sync_from_the_store_pages_at_100_and_history_continues() {
    // A tiny in-memory window and a short idle time, so sync and dedup must use the store.
    let server = TestServer::start_with(&[
        ("PARLEY__RATE_LIMIT__PER_SECOND", "100000"),
        ("PARLEY__RATE_LIMIT__BURST", "100000"),
        ("PARLEY__LIMITS__RECENT_MESSAGES", "4"),
        ("PARLEY__LIMITS__CONVERSATION_IDLE_MS", "100"),
    ])
    .await;
    let mut alice = server.connect("alice").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    let ids: Vec<i64> = (1..=105).map(|i| 1000 + i).collect();
    for id in &ids {
        alice
            .send_text(
                json!({"id": id, "op": "message.send", "args": {
                    "conversation_id": conversation_id,
                    "client_msg_id": format!("s-{id}"),
                    "text": format!("text {id}"),
                }})
                .to_string(),
            )
            .await;
    }
    let replies = replies(&mut alice, &ids).await;
    let first_ack = replies[&ids[0]]["result"].clone();
    assert_eq!(first_ack["seq"], 1, "{}", replies[&ids[0]]);
    drop(alice);

    // Wait until the conversation is unloaded from memory.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while metric(&server, "parley_conversation_actors_active").await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle conversation is never unloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let mut bob = server.connect("bob").await;
    let result = bob
        .ok(
            "sync",
            json!({"conversations": {conversation_id.as_str(): 0}}),
        )
        .await;
    let entry = &result["conversations"][conversation_id.as_str()];
    let messages = entry["messages"].as_array().expect("messages");
    assert_eq!(seqs_of(messages), (1..=100).collect::<Vec<_>>());
    assert_eq!(entry["has_more"], true, "sync pages at 100");
    for message in messages {
        let seq = message["seq"].as_i64().unwrap();
        let id = 1000 + seq;
        assert_eq!(message["text"], format!("text {id}"));
        assert_eq!(message["message_id"], replies[&id]["result"]["message_id"]);
    }
    let page = bob
        .ok(
            "history.get",
            json!({"conversation_id": conversation_id, "after_seq": 100}),
        )
        .await;
    assert_eq!(
        seqs_of(page["messages"].as_array().unwrap()),
        vec![101, 102, 103, 104, 105]
    );
    assert_eq!(page["has_more"], false);

    // Dedup of an old message is answered from the store too.
    let mut alice = server.connect("alice").await;
    let again = send(&mut alice, &conversation_id, "s-1001", "text 1001").await;
    assert_eq!(again, first_ack);
    let next = send(&mut alice, &conversation_id, "s-new", "new").await;
    assert_eq!(next["seq"], 106);
}
