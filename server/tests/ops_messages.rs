//! Message operations of docs/protocol.md §7.8–§7.13 (send, edit, delete, forward,
//! reactions, history) and their events, checked against the real server.

mod common;

use std::time::Duration;

use common::{
    assert_code, create_conversation, send, seqs, unthrottled_server as server, Client, ABSENT,
};
use serde_json::{json, Value};

/// A conversation of `creator` with `others`, after everybody consumed the member.joined.
async fn group(creator: &mut Client, others: &mut [&mut Client]) -> String {
    let members: Vec<String> = others.iter().map(|c| c.user_id().to_owned()).collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let id = create_conversation(creator, "group", &members).await;
    creator.event("member.joined").await;
    for other in others.iter_mut() {
        other.event("member.joined").await;
    }
    id
}

async fn history(client: &mut Client, args: Value) -> Value {
    client.ok("history.get", args).await
}

#[tokio::test]
async fn send_acks_and_delivers_message_new_to_every_member_session() {
    let server = server().await;
    let mut alice1 = server.connect("alice").await;
    let mut alice2 = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let id = group(&mut alice1, &mut [&mut bob]).await;
    alice2.event("member.joined").await;

    let ack = alice1
        .ok(
            "message.send",
            json!({ "conversation_id": id, "client_msg_id": "cm-1", "text": "Train leaves at 9" }),
        )
        .await;
    let mut keys: Vec<&String> = ack.as_object().expect("ack object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "message_id", "seq"], "ack: {ack}");
    assert_eq!(ack["seq"], 1);
    assert!(ack["message_id"].is_string());
    assert!(ack["created_at"].is_string());

    let expected = json!({
        "message_id": ack["message_id"],
        "conversation_id": id,
        "seq": 1,
        "sender_id": "alice",
        "client_msg_id": "cm-1",
        "text": "Train leaves at 9",
        "reply_to": null,
        "forwarded_from": null,
        "attachments": [],
        "reactions": {},
        "created_at": ack["created_at"],
        "edited_at": null,
        "deleted": false,
    });
    // The sending session, the sender's other session, and the other member.
    for client in [&mut alice1, &mut alice2, &mut bob] {
        let new = client.event("message.new").await;
        assert_eq!(
            new["message"],
            expected,
            "message.new to {}",
            client.user_id()
        );
    }
    // message.stored to each of the sender's sessions.
    let stored_expected =
        json!({ "conversation_id": id, "message_id": ack["message_id"], "seq": 1 });
    for client in [&mut alice1, &mut alice2] {
        let stored = client.event("message.stored").await;
        assert_eq!(stored, stored_expected);
    }
    // Not to other members, and nothing to non-members.
    bob.no_event("message.stored", ABSENT).await;
    carol.no_event("message.new", Duration::ZERO).await;

    // A second message gets the next seq.
    let second = send(&mut bob, &id, "cm-1", "same key, other sender").await;
    assert_eq!(second["seq"], 2);
    assert_ne!(second["message_id"], ack["message_id"]);
}

#[tokio::test]
async fn send_with_the_same_client_msg_id_returns_the_original_ack_and_creates_nothing() {
    let server = server().await;
    let mut alice1 = server.connect("alice").await;
    let mut alice2 = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let id = group(&mut alice1, &mut [&mut bob]).await;

    let first = send(&mut alice1, &id, "retry-me", "hello").await;
    bob.event("message.new").await;
    alice1.event("message.new").await;
    alice2.event("message.new").await;

    // Retry from another session of the same sender, even with a different text.
    let retry = send(&mut alice2, &id, "retry-me", "hello (retried)").await;
    assert_eq!(retry, first);
    bob.no_event("message.new", ABSENT).await;
    alice1.no_event("message.new", Duration::ZERO).await;
    alice2.no_event("message.new", Duration::ZERO).await;

    let page = history(&mut bob, json!({ "conversation_id": id })).await;
    assert_eq!(seqs(&page["messages"]), vec![1]);
    assert_eq!(page["messages"][0]["text"], "hello");

    let next = send(&mut alice1, &id, "another", "second").await;
    assert_eq!(next["seq"], 2);
    let got = bob
        .ok("conversation.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(got["conversation"]["last_seq"], 2);
}

#[tokio::test]
async fn send_reply_to_and_argument_errors() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let id = group(&mut alice, &mut [&mut bob]).await;
    let other = create_conversation(&mut alice, "group", &[]).await;
    let original = send(&mut bob, &id, "b1", "When do we leave?").await;
    let elsewhere = send(&mut alice, &other, "o1", "elsewhere").await;

    let reply = alice
        .ok(
            "message.send",
            json!({ "conversation_id": id, "client_msg_id": "a1", "text": "At 9",
                    "reply_to": original["message_id"] }),
        )
        .await;
    assert_eq!(reply["seq"], 2);
    let new = loop {
        let new = bob.event("message.new").await;
        if new["message"]["seq"] == 2 {
            break new;
        }
    };
    assert_eq!(new["message"]["reply_to"], original["message_id"]);

    // reply_to unknown, or of another conversation → not_found.
    for reply_to in [json!("msg_does_not_exist"), elsewhere["message_id"].clone()] {
        let error = alice
            .err(
                "message.send",
                json!({ "conversation_id": id, "client_msg_id": "a2", "text": "x",
                        "reply_to": reply_to }),
            )
            .await;
        assert_code(&error, "not_found");
    }
    // Empty text, missing text or client_msg_id, empty/too long client_msg_id → bad_request.
    let long_key = "k".repeat(129);
    for args in [
        json!({ "conversation_id": id, "client_msg_id": "a3", "text": "" }),
        json!({ "conversation_id": id, "client_msg_id": "a3" }),
        json!({ "conversation_id": id, "text": "x" }),
        json!({ "conversation_id": id, "client_msg_id": "", "text": "x" }),
        json!({ "conversation_id": id, "client_msg_id": long_key, "text": "x" }),
    ] {
        let error = alice.err("message.send", args.clone()).await;
        assert_eq!(error["code"], "bad_request", "{args}: {error}");
    }
    // None of the failures created a message.
    let page = history(&mut alice, json!({ "conversation_id": id })).await;
    assert_eq!(seqs(&page["messages"]), vec![1, 2]);
}

#[tokio::test]
async fn edit_by_the_sender_sends_message_edited() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let id = group(&mut alice, &mut [&mut bob]).await;
    let ack = send(&mut alice, &id, "a1", "Train leaves at 9").await;
    let original = alice.event("message.new").await["message"].clone();
    bob.event("message.new").await;

    let error = bob
        .err(
            "message.edit",
            json!({ "conversation_id": id, "message_id": ack["message_id"], "text": "hacked" }),
        )
        .await;
    assert_code(&error, "forbidden");

    let result = alice
        .ok(
            "message.edit",
            json!({ "conversation_id": id, "message_id": ack["message_id"], "text": "Train leaves at 9:15" }),
        )
        .await;
    let edited = result["message"].clone();
    assert_eq!(edited["text"], "Train leaves at 9:15");
    assert_eq!(edited["seq"], 1);
    assert!(edited["edited_at"].is_string(), "{edited}");
    let mut expected = original.clone();
    expected["text"] = json!("Train leaves at 9:15");
    expected["edited_at"] = edited["edited_at"].clone();
    assert_eq!(edited, expected);
    for client in [&mut alice, &mut bob] {
        let event = client.event("message.edited").await;
        assert_eq!(event["message"], expected);
    }
    carol.no_event("message.edited", ABSENT).await;

    let page = history(&mut bob, json!({ "conversation_id": id })).await;
    assert_eq!(page["messages"][0], expected);

    for (args, code) in [
        (
            json!({ "conversation_id": id, "message_id": ack["message_id"], "text": "" }),
            "bad_request",
        ),
        (
            json!({ "conversation_id": id, "message_id": "msg_nope", "text": "x" }),
            "not_found",
        ),
    ] {
        let error = alice.err("message.edit", args).await;
        assert_code(&error, code);
    }

    // Edit of a deleted message → conflict.
    alice
        .ok(
            "message.delete",
            json!({ "conversation_id": id, "message_id": ack["message_id"] }),
        )
        .await;
    let error = alice
        .err(
            "message.edit",
            json!({ "conversation_id": id, "message_id": ack["message_id"], "text": "again" }),
        )
        .await;
    assert_code(&error, "conflict");
}

#[tokio::test]
async fn delete_by_the_sender_keeps_the_seq_and_empties_the_message() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let id = group(&mut alice, &mut [&mut bob]).await;
    let other = create_conversation(&mut alice, "group", &[]).await;
    let first = send(&mut alice, &id, "a1", "oops").await;
    send(&mut alice, &id, "a2", "fine").await;
    bob.ok(
        "reaction.add",
        json!({ "conversation_id": id, "message_id": first["message_id"], "emoji": "👍" }),
    )
    .await;

    let error = bob
        .err(
            "message.delete",
            json!({ "conversation_id": id, "message_id": first["message_id"] }),
        )
        .await;
    assert_code(&error, "forbidden");
    // The message exists, but not in that conversation.
    let error = alice
        .err(
            "message.delete",
            json!({ "conversation_id": other, "message_id": first["message_id"] }),
        )
        .await;
    assert_code(&error, "not_found");
    let error = alice
        .err(
            "message.delete",
            json!({ "conversation_id": id, "message_id": "msg_nope" }),
        )
        .await;
    assert_code(&error, "not_found");

    let result = alice
        .ok(
            "message.delete",
            json!({ "conversation_id": id, "message_id": first["message_id"] }),
        )
        .await;
    assert_eq!(result, json!({}));
    let expected = json!({ "conversation_id": id, "message_id": first["message_id"], "seq": 1 });
    for client in [&mut alice, &mut bob] {
        let deleted = client.event("message.deleted").await;
        assert_eq!(deleted, expected);
    }
    carol.no_event("message.deleted", ABSENT).await;

    let page = history(&mut bob, json!({ "conversation_id": id })).await;
    assert_eq!(seqs(&page["messages"]), vec![1, 2], "seqs stay dense");
    let gone = &page["messages"][0];
    assert_eq!(gone["message_id"], first["message_id"]);
    assert_eq!(gone["deleted"], true);
    assert_eq!(gone["text"], "");
    assert_eq!(gone["reactions"], json!({}), "reactions are emptied");
    assert_eq!(page["messages"][1]["deleted"], false);

    // Deleting again: {} and no event.
    let again = alice
        .ok(
            "message.delete",
            json!({ "conversation_id": id, "message_id": first["message_id"] }),
        )
        .await;
    assert_eq!(again, json!({}));
    bob.no_event("message.deleted", ABSENT).await;
    alice.no_event("message.deleted", Duration::ZERO).await;

    // Replying to a deleted message is allowed.
    let reply = alice
        .ok(
            "message.send",
            json!({ "conversation_id": id, "client_msg_id": "a3", "text": "sorry",
                    "reply_to": first["message_id"] }),
        )
        .await;
    assert_eq!(reply["seq"], 3);
}

#[tokio::test]
async fn forward_copies_the_message_into_another_conversation() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let source = group(&mut alice, &mut [&mut bob]).await;
    let target = group(&mut alice, &mut [&mut carol]).await;
    let original = send(&mut bob, &source, "b1", "Train leaves at 9").await;
    send(&mut carol, &target, "c1", "first in target").await;
    // Drain what these sends caused.
    for _ in 0..2 {
        alice.event("message.new").await;
    }
    bob.event("message.new").await;
    carol.event("message.new").await;

    let ack = alice
        .ok(
            "message.forward",
            json!({ "conversation_id": source, "message_id": original["message_id"],
                    "to_conversation_id": target, "client_msg_id": "fw-1" }),
        )
        .await;
    assert_eq!(ack["seq"], 2);
    assert!(ack["message_id"].is_string());
    assert!(ack["created_at"].is_string());
    let expected = json!({
        "message_id": ack["message_id"],
        "conversation_id": target,
        "seq": 2,
        "sender_id": "alice",
        "client_msg_id": "fw-1",
        "text": "Train leaves at 9",
        "reply_to": null,
        "forwarded_from": { "conversation_id": source, "message_id": original["message_id"] },
        "reactions": {},
        "created_at": ack["created_at"],
        "edited_at": null,
        "deleted": false,
        "attachments": [],
    });
    for client in [&mut alice, &mut carol] {
        let new = client.event("message.new").await;
        assert_eq!(new["message"], expected);
    }
    let stored = alice.event("message.stored").await;
    // alice's own earlier sends: none; so this is the forward's.
    assert_eq!(
        stored,
        json!({ "conversation_id": target, "message_id": ack["message_id"], "seq": 2 })
    );
    bob.no_event("message.new", ABSENT).await;

    // Same client_msg_id in the target → the same ack, nothing new.
    let retry = alice
        .ok(
            "message.forward",
            json!({ "conversation_id": source, "message_id": original["message_id"],
                    "to_conversation_id": target, "client_msg_id": "fw-1" }),
        )
        .await;
    assert_eq!(retry, ack);
    carol.no_event("message.new", ABSENT).await;

    // Membership in both conversations is needed.
    let error = bob
        .err(
            "message.forward",
            json!({ "conversation_id": source, "message_id": original["message_id"],
                    "to_conversation_id": target, "client_msg_id": "fw-b" }),
        )
        .await;
    assert_code(&error, "not_member");
    let error = carol
        .err(
            "message.forward",
            json!({ "conversation_id": source, "message_id": original["message_id"],
                    "to_conversation_id": target, "client_msg_id": "fw-c" }),
        )
        .await;
    assert_code(&error, "not_member");
    // Missing target, or message not in the source conversation → not_found.
    let error = alice
        .err(
            "message.forward",
            json!({ "conversation_id": source, "message_id": original["message_id"],
                    "to_conversation_id": "conv_nope", "client_msg_id": "fw-2" }),
        )
        .await;
    assert_code(&error, "not_found");
    let error = alice
        .err(
            "message.forward",
            json!({ "conversation_id": target, "message_id": original["message_id"],
                    "to_conversation_id": source, "client_msg_id": "fw-3" }),
        )
        .await;
    assert_code(&error, "not_found");

    // A deleted message cannot be forwarded.
    bob.ok(
        "message.delete",
        json!({ "conversation_id": source, "message_id": original["message_id"] }),
    )
    .await;
    let error = alice
        .err(
            "message.forward",
            json!({ "conversation_id": source, "message_id": original["message_id"],
                    "to_conversation_id": target, "client_msg_id": "fw-4" }),
        )
        .await;
    assert_code(&error, "conflict");
    let page = history(&mut carol, json!({ "conversation_id": target })).await;
    assert_eq!(seqs(&page["messages"]), vec![1, 2]);
}

#[tokio::test]
async fn reactions_are_idempotent_and_send_reaction_updated_on_change() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let mut dave = server.connect("dave").await;
    let id = group(&mut alice, &mut [&mut bob, &mut carol]).await;
    let ack = send(&mut alice, &id, "a1", "When do we leave?").await;
    let message_id = ack["message_id"].clone();
    let args =
        |emoji: &str| json!({ "conversation_id": id, "message_id": message_id, "emoji": emoji });

    let result = bob.ok("reaction.add", args("👍")).await;
    assert_eq!(result["message"]["message_id"], message_id);
    assert_eq!(result["message"]["text"], "When do we leave?");
    assert_eq!(result["message"]["reactions"], json!({ "👍": ["bob"] }));
    let expected =
        json!({ "conversation_id": id, "message_id": message_id, "reactions": { "👍": ["bob"] } });
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(client.event("reaction.updated").await, expected);
    }
    dave.no_event("reaction.updated", Duration::ZERO).await;

    // In the order they reacted.
    let result = alice.ok("reaction.add", args("👍")).await;
    assert_eq!(
        result["message"]["reactions"],
        json!({ "👍": ["bob", "alice"] })
    );
    for client in [&mut alice, &mut bob, &mut carol] {
        let updated = client.event("reaction.updated").await;
        assert_eq!(updated["reactions"], json!({ "👍": ["bob", "alice"] }));
    }

    // Adding again keeps one and sends nothing; removing what one does not have likewise.
    let result = bob.ok("reaction.add", args("👍")).await;
    assert_eq!(
        result["message"]["reactions"],
        json!({ "👍": ["bob", "alice"] })
    );
    let result = carol.ok("reaction.remove", args("👍")).await;
    assert_eq!(
        result["message"]["reactions"],
        json!({ "👍": ["bob", "alice"] })
    );
    alice.no_event("reaction.updated", ABSENT).await;

    let result = bob.ok("reaction.remove", args("👍")).await;
    assert_eq!(result["message"]["reactions"], json!({ "👍": ["alice"] }));
    let updated = carol.event("reaction.updated").await;
    assert_eq!(updated["reactions"], json!({ "👍": ["alice"] }));
    // The last user leaves: the emoji disappears.
    let result = alice.ok("reaction.remove", args("👍")).await;
    assert_eq!(result["message"]["reactions"], json!({}));
    let updated = carol.event("reaction.updated").await;
    assert_eq!(updated["reactions"], json!({}));

    // emoji: 1 to 64 bytes.
    let max = "x".repeat(64);
    bob.ok("reaction.add", args(&max)).await;
    for emoji in ["".to_owned(), "x".repeat(65)] {
        let error = bob.err("reaction.add", args(&emoji)).await;
        assert_code(&error, "bad_request");
    }
    let error = bob
        .err(
            "reaction.add",
            json!({ "conversation_id": id, "message_id": "msg_nope", "emoji": "👍" }),
        )
        .await;
    assert_code(&error, "not_found");

    // On a deleted message → conflict.
    alice
        .ok(
            "message.delete",
            json!({ "conversation_id": id, "message_id": message_id }),
        )
        .await;
    for op in ["reaction.add", "reaction.remove"] {
        let error = bob.err(op, args("🎉")).await;
        assert_eq!(error["code"], "conflict", "{op}: {error}");
    }
}

#[tokio::test]
async fn history_pages_both_ways_in_ascending_order() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let id = group(&mut alice, &mut [&mut bob]).await;
    for n in 1..=10 {
        send(&mut alice, &id, &format!("m{n}"), &format!("message {n}")).await;
    }
    let args = |extra: Value| {
        let mut args = json!({ "conversation_id": id });
        for (key, value) in extra.as_object().unwrap() {
            args[key] = value.clone();
        }
        args
    };

    let page = history(&mut bob, args(json!({}))).await;
    assert_eq!(seqs(&page["messages"]), (1..=10).collect::<Vec<_>>());
    assert_eq!(page["has_more"], false);
    assert_eq!(page["messages"][4]["text"], "message 5");
    assert_eq!(page["messages"][4]["client_msg_id"], "m5");
    assert_eq!(page["messages"][4]["sender_id"], "alice");
    assert_eq!(page["messages"][4]["conversation_id"], id.as_str());

    // Newest `limit` messages, backward paging.
    let cases: Vec<(Value, Vec<u64>, bool)> = vec![
        (json!({ "limit": 3 }), vec![8, 9, 10], true),
        (json!({ "limit": 3, "before_seq": 8 }), vec![5, 6, 7], true),
        (json!({ "limit": 5, "before_seq": 3 }), vec![1, 2], false),
        (json!({ "limit": 2, "before_seq": 3 }), vec![1, 2], false),
        (json!({ "before_seq": 1 }), vec![], false),
        // Forward paging: the oldest `limit` after after_seq.
        (json!({ "limit": 3, "after_seq": 2 }), vec![3, 4, 5], true),
        (json!({ "limit": 3, "after_seq": 7 }), vec![8, 9, 10], false),
        (json!({ "after_seq": 10 }), vec![], false),
        (
            json!({ "after_seq": 0, "limit": 10 }),
            (1..=10).collect(),
            false,
        ),
        // Both bounds.
        (
            json!({ "after_seq": 2, "before_seq": 6, "limit": 10 }),
            vec![3, 4, 5],
            false,
        ),
        (
            json!({ "after_seq": 2, "before_seq": 6, "limit": 2 }),
            vec![3, 4],
            true,
        ),
        (json!({ "limit": 100 }), (1..=10).collect(), false),
        (json!({ "limit": 1 }), vec![10], true),
    ];
    for (extra, expected, has_more) in cases {
        let page = history(&mut bob, args(extra.clone())).await;
        assert_eq!(seqs(&page["messages"]), expected, "{extra}");
        assert_eq!(page["has_more"], has_more, "{extra}: {page}");
    }

    for limit in [0, 101] {
        let error = bob
            .err("history.get", args(json!({ "limit": limit })))
            .await;
        assert_code(&error, "bad_request");
    }
}

#[tokio::test]
async fn history_limit_defaults_to_50() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let id = create_conversation(&mut alice, "group", &[]).await;
    for n in 1..=55 {
        send(&mut alice, &id, &format!("m{n}"), "x").await;
    }
    let page = history(&mut alice, json!({ "conversation_id": id })).await;
    assert_eq!(seqs(&page["messages"]), (6..=55).collect::<Vec<_>>());
    assert_eq!(page["has_more"], true);
}
