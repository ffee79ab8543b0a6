//! Conversation operations of docs/protocol.md §7.1–§7.7 (create, get, list, update,
//! add_members, remove_members, leave) and the events they cause, checked against the real
//! server. Also the `not_member` / `not_found` rule of §7.0 for every conversation-scoped op.

mod common;

use std::time::Duration;

use common::{
    assert_code, create_conversation, send, unthrottled_server as server, Client, TestServer,
    ABSENT,
};
use serde_json::{json, Value};

/// A JSON array of strings, sorted (member lists are sets on the wire).
fn sorted(value: &Value) -> Vec<String> {
    let mut items: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|item| item.as_str().expect("string").to_owned())
        .collect();
    items.sort();
    items
}

fn names(list: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    items.sort();
    items
}

fn ids(conversations: &Value) -> Vec<String> {
    conversations
        .as_array()
        .unwrap_or_else(|| panic!("expected conversations array, got {conversations}"))
        .iter()
        .map(|c| c["conversation_id"].as_str().expect("id").to_owned())
        .collect()
}

async fn create_group(client: &mut Client, members: &[&str], title: &str) -> Value {
    client
        .ok(
            "conversation.create",
            json!({ "kind": "group", "members": members, "title": title }),
        )
        .await["conversation"]
        .clone()
}

#[tokio::test]
async fn create_group_returns_conversation_and_sends_member_joined_to_members() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let mut dave = server.connect("dave").await;

    // Duplicates are removed; the creator may be listed or not.
    let conversation = create_group(&mut alice, &["bob", "carol", "bob", "alice"], "Trip").await;
    assert_eq!(conversation["kind"], "group");
    assert_eq!(conversation["title"], "Trip");
    assert_eq!(conversation["created_by"], "alice");
    assert_eq!(conversation["last_seq"], 0);
    assert!(conversation["created_at"].is_string(), "{conversation}");
    assert!(
        conversation["conversation_id"].is_string(),
        "{conversation}"
    );
    assert_eq!(
        sorted(&conversation["members"]),
        names(&["alice", "bob", "carol"])
    );
    let id = conversation["conversation_id"].clone();

    for client in [&mut alice, &mut bob, &mut carol] {
        let joined = client.event("member.joined").await;
        assert_eq!(joined["conversation_id"], id, "{joined}");
        assert_eq!(sorted(&joined["user_ids"]), names(&["bob", "carol"]));
        assert_eq!(joined["by"], "alice");
        assert_eq!(joined["conversation"], conversation, "{joined}");
    }
    dave.no_event("member.joined", ABSENT).await;
}

#[tokio::test]
async fn create_group_without_members_is_a_group_of_one() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let result = alice
        .ok(
            "conversation.create",
            json!({ "kind": "group", "members": [] }),
        )
        .await;
    let conversation = &result["conversation"];
    assert_eq!(sorted(&conversation["members"]), names(&["alice"]));
    assert_eq!(conversation["title"], Value::Null, "title is optional");
    assert_eq!(conversation["created_by"], "alice");
}

#[tokio::test]
async fn create_direct_returns_existing_conversation_for_the_same_pair() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;

    let first = alice
        .ok(
            "conversation.create",
            json!({ "kind": "direct", "members": ["bob"], "title": "ignored" }),
        )
        .await["conversation"]
        .clone();
    assert_eq!(first["kind"], "direct");
    assert_eq!(first["title"], Value::Null, "direct title is always null");
    assert_eq!(first["created_by"], "alice");
    assert_eq!(sorted(&first["members"]), names(&["alice", "bob"]));
    for client in [&mut alice, &mut bob] {
        let joined = client.event("member.joined").await;
        assert_eq!(joined["conversation_id"], first["conversation_id"]);
        assert_eq!(sorted(&joined["user_ids"]), names(&["bob"]));
        assert_eq!(joined["by"], "alice");
        assert_eq!(joined["conversation"], first);
    }

    // Same creator again (listing herself too): the same conversation, nothing created.
    let again = alice
        .ok(
            "conversation.create",
            json!({ "kind": "direct", "members": ["bob", "alice"] }),
        )
        .await["conversation"]
        .clone();
    assert_eq!(again, first);

    // The other user creates it: still the same one, created_by stays alice.
    let from_bob = bob
        .ok(
            "conversation.create",
            json!({ "kind": "direct", "members": ["alice"] }),
        )
        .await["conversation"]
        .clone();
    assert_eq!(from_bob, first);

    // Returning an existing direct conversation sends no event.
    bob.no_event("member.joined", ABSENT).await;
    alice.no_event("member.joined", Duration::ZERO).await;

    // Exactly one conversation exists for the pair.
    let listed = bob.ok("conversation.list", json!({})).await;
    assert_eq!(
        ids(&listed["conversations"]),
        vec![first["conversation_id"].as_str().unwrap().to_owned()]
    );
}

#[tokio::test]
async fn create_rejects_bad_direct_members_and_unknown_kind() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    for members in [json!([]), json!(["alice"]), json!(["bob", "carol"])] {
        let error = alice
            .err(
                "conversation.create",
                json!({ "kind": "direct", "members": members }),
            )
            .await;
        assert_code(&error, "bad_request");
    }
    let error = alice
        .err(
            "conversation.create",
            json!({ "kind": "channel", "members": ["bob"] }),
        )
        .await;
    assert_code(&error, "bad_request");
    // Nothing was created.
    let listed = alice.ok("conversation.list", json!({})).await;
    assert_eq!(listed["conversations"], json!([]));
}

#[tokio::test]
async fn create_group_over_max_members_is_bad_request() {
    let server = TestServer::start_with(&[("PARLEY__LIMITS__MAX_GROUP_MEMBERS", "3")]).await;
    let mut alice = server.connect("alice").await;
    // alice + 2 = 3 is fine, alice + 3 = 4 is too many.
    create_conversation(&mut alice, "group", &["bob", "carol"]).await;
    let error = alice
        .err(
            "conversation.create",
            json!({ "kind": "group", "members": ["bob", "carol", "dave"] }),
        )
        .await;
    assert_code(&error, "bad_request");
}

#[tokio::test]
async fn get_returns_the_conversation_to_members_only() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let created = create_group(&mut alice, &["bob"], "Lisbon").await;
    let id = created["conversation_id"].clone();

    let got = bob
        .ok("conversation.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(got["conversation"], created);

    send(&mut alice, id.as_str().unwrap(), "m1", "hello").await;
    let got = alice
        .ok("conversation.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(got["conversation"]["last_seq"], 1);

    let error = carol
        .err("conversation.get", json!({ "conversation_id": id }))
        .await;
    assert_code(&error, "not_member");
    let error = carol
        .err(
            "conversation.get",
            json!({ "conversation_id": "conv_nope" }),
        )
        .await;
    assert_code(&error, "not_found");
}

#[tokio::test]
async fn list_orders_by_recent_activity_and_counts_unread() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let c1 = create_conversation(&mut alice, "group", &["bob"]).await;
    let c2 = create_conversation(&mut alice, "group", &["bob"]).await;
    let c3 = create_conversation(&mut alice, "group", &["bob"]).await;
    // Not alice's: must not be listed.
    let other = create_conversation(&mut bob, "group", &["carol"]).await;

    // Activity = creation time: newest first.
    let listed = alice.ok("conversation.list", json!({})).await;
    assert_eq!(
        ids(&listed["conversations"]),
        vec![c3.clone(), c2.clone(), c1.clone()]
    );

    // bob writes three messages in c1, then alice one in c2.
    for n in 1..=3 {
        send(&mut bob, &c1, &format!("b{n}"), "hi").await;
    }
    send(&mut alice, &c2, "a1", "hello").await;
    send(&mut bob, &other, "o1", "elsewhere").await;

    let listed = alice.ok("conversation.list", json!({})).await;
    let conversations = listed["conversations"].as_array().unwrap().clone();
    assert_eq!(
        ids(&listed["conversations"]),
        vec![c2.clone(), c1.clone(), c3.clone()]
    );
    let by_id = |id: &str| {
        conversations
            .iter()
            .find(|c| c["conversation_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(&c1)["last_seq"], 3);
    assert_eq!(by_id(&c1)["unread"], 3, "{listed}");
    assert_eq!(by_id(&c2)["last_seq"], 1);
    assert_eq!(
        by_id(&c2)["unread"],
        0,
        "own messages never count: {listed}"
    );
    assert_eq!(by_id(&c3)["unread"], 0);
    assert_eq!(by_id(&c1)["kind"], "group");
    assert_eq!(sorted(&by_id(&c1)["members"]), names(&["alice", "bob"]));

    // Reading up to seq 2 leaves one unread.
    alice
        .ok("receipt.read", json!({ "conversation_id": c1, "seq": 2 }))
        .await;
    let receipt = alice.event("receipt.updated").await;
    assert_eq!(receipt["read_seq"], 2, "{receipt}");
    let listed = alice.ok("conversation.list", json!({})).await;
    let c1_item = listed["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversation_id"] == c1.as_str())
        .unwrap()
        .clone();
    assert_eq!(c1_item["unread"], 1, "{listed}");

    // For bob, c2 has one unread (alice's message).
    let listed = bob.ok("conversation.list", json!({})).await;
    let c2_item = listed["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversation_id"] == c2.as_str())
        .unwrap()
        .clone();
    assert_eq!(c2_item["unread"], 1, "{listed}");
}

#[tokio::test]
async fn list_pages_with_limit_and_after_cursor() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create_conversation(&mut alice, "group", &[]).await);
    }
    let bobs = create_conversation(&mut bob, "group", &[]).await;
    // Newest first.
    let expected: Vec<String> = created.iter().rev().cloned().collect();

    let page1 = alice.ok("conversation.list", json!({ "limit": 2 })).await;
    assert_eq!(ids(&page1["conversations"]), expected[0..2].to_vec());
    let page2 = alice
        .ok(
            "conversation.list",
            json!({ "limit": 2, "after": expected[1] }),
        )
        .await;
    assert_eq!(ids(&page2["conversations"]), expected[2..4].to_vec());
    let page3 = alice
        .ok(
            "conversation.list",
            json!({ "limit": 2, "after": expected[3] }),
        )
        .await;
    assert_eq!(ids(&page3["conversations"]), expected[4..5].to_vec());
    let page4 = alice
        .ok(
            "conversation.list",
            json!({ "limit": 2, "after": expected[4] }),
        )
        .await;
    assert_eq!(page4["conversations"], json!([]));

    // Limit bounds: 1 and 200 are fine.
    let one = alice.ok("conversation.list", json!({ "limit": 1 })).await;
    assert_eq!(ids(&one["conversations"]), expected[0..1].to_vec());
    let all = alice.ok("conversation.list", json!({ "limit": 200 })).await;
    assert_eq!(ids(&all["conversations"]), expected);

    // Out of range limits.
    for limit in [0, 201] {
        let error = alice
            .err("conversation.list", json!({ "limit": limit }))
            .await;
        assert_code(&error, "bad_request");
    }
    // A cursor that is not one of the caller's conversations.
    for after in [bobs.as_str(), "conv_does_not_exist"] {
        let error = alice
            .err("conversation.list", json!({ "after": after }))
            .await;
        assert_code(&error, "bad_request");
    }
}

#[tokio::test]
async fn update_changes_the_title_and_notifies_members() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let created = create_group(&mut alice, &["bob"], "Trip").await;
    let id = created["conversation_id"].clone();
    alice.event("member.joined").await;
    bob.event("member.joined").await;

    // Any member may change the title, not only the creator.
    let result = bob
        .ok(
            "conversation.update",
            json!({ "conversation_id": id, "title": "Lisbon, May" }),
        )
        .await;
    let mut expected = created.clone();
    expected["title"] = json!("Lisbon, May");
    assert_eq!(result["conversation"], expected);
    for client in [&mut alice, &mut bob] {
        let updated = client.event("conversation.updated").await;
        assert_eq!(updated["conversation"], expected, "{updated}");
    }
    carol.no_event("conversation.updated", ABSENT).await;

    let got = alice
        .ok("conversation.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(got["conversation"]["title"], "Lisbon, May");

    // Empty title → bad_request; non-member → not_member; unknown → not_found.
    let error = alice
        .err(
            "conversation.update",
            json!({ "conversation_id": id, "title": "" }),
        )
        .await;
    assert_code(&error, "bad_request");
    let error = carol
        .err(
            "conversation.update",
            json!({ "conversation_id": id, "title": "x" }),
        )
        .await;
    assert_code(&error, "not_member");
    let error = carol
        .err(
            "conversation.update",
            json!({ "conversation_id": "conv_nope", "title": "x" }),
        )
        .await;
    assert_code(&error, "not_found");
}

#[tokio::test]
async fn direct_conversations_refuse_title_and_membership_changes() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let id = create_conversation(&mut alice, "direct", &["bob"]).await;
    let cases = [
        (
            "conversation.update",
            json!({ "conversation_id": id, "title": "x" }),
        ),
        (
            "conversation.add_members",
            json!({ "conversation_id": id, "user_ids": ["carol"] }),
        ),
        (
            "conversation.remove_members",
            json!({ "conversation_id": id, "user_ids": ["bob"] }),
        ),
        ("conversation.leave", json!({ "conversation_id": id })),
    ];
    for (op, args) in cases {
        let error = alice.err(op, args).await;
        assert_eq!(error["code"], "forbidden", "{op}: {error}");
    }
    let got = alice
        .ok("conversation.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(
        sorted(&got["conversation"]["members"]),
        names(&["alice", "bob"])
    );
    assert_eq!(got["conversation"]["title"], Value::Null);
}

#[tokio::test]
async fn add_members_notifies_everyone_and_new_members_get_history_and_messages() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let created = create_group(&mut alice, &["bob"], "Trip").await;
    let id = created["conversation_id"].as_str().unwrap().to_owned();
    alice.event("member.joined").await;
    bob.event("member.joined").await;
    let first = send(&mut alice, &id, "m1", "before carol").await;
    alice.event("message.new").await;
    bob.event("message.new").await;

    // Any member may add; users already members are ignored.
    let result = bob
        .ok(
            "conversation.add_members",
            json!({ "conversation_id": id, "user_ids": ["carol", "alice"] }),
        )
        .await;
    let conversation = result["conversation"].clone();
    assert_eq!(
        sorted(&conversation["members"]),
        names(&["alice", "bob", "carol"])
    );
    assert_eq!(conversation["created_by"], "alice");
    assert_eq!(conversation["last_seq"], 1);
    for client in [&mut alice, &mut bob, &mut carol] {
        let joined = client.event("member.joined").await;
        assert_eq!(joined["conversation_id"], id.as_str());
        assert_eq!(
            joined["user_ids"],
            json!(["carol"]),
            "only the added: {joined}"
        );
        assert_eq!(joined["by"], "bob");
        assert_eq!(joined["conversation"], conversation);
    }

    // The new member reads the whole history.
    let history = carol
        .ok("history.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 1);
    assert_eq!(history["messages"][0]["message_id"], first["message_id"]);

    // ...and receives new messages.
    let second = send(&mut alice, &id, "m2", "welcome carol").await;
    let new = carol.event("message.new").await;
    assert_eq!(new["message"]["message_id"], second["message_id"]);

    // Nobody new: the conversation comes back, no event.
    let again = alice
        .ok(
            "conversation.add_members",
            json!({ "conversation_id": id, "user_ids": ["carol"] }),
        )
        .await;
    assert_eq!(
        sorted(&again["conversation"]["members"]),
        names(&["alice", "bob", "carol"])
    );
    carol.no_event("member.joined", ABSENT).await;

    // Empty user_ids → bad_request.
    let error = alice
        .err(
            "conversation.add_members",
            json!({ "conversation_id": id, "user_ids": [] }),
        )
        .await;
    assert_code(&error, "bad_request");
}

#[tokio::test]
async fn add_members_requires_membership_and_respects_group_size() {
    let server = TestServer::start_with(&[("PARLEY__LIMITS__MAX_GROUP_MEMBERS", "3")]).await;
    let mut alice = server.connect("alice").await;
    let mut zoe = server.connect("zoe").await;
    let id = create_conversation(&mut alice, "group", &["bob"]).await;
    let error = zoe
        .err(
            "conversation.add_members",
            json!({ "conversation_id": id, "user_ids": ["zoe"] }),
        )
        .await;
    assert_code(&error, "not_member");
    let error = zoe
        .err(
            "conversation.add_members",
            json!({ "conversation_id": "conv_nope", "user_ids": ["zoe"] }),
        )
        .await;
    assert_code(&error, "not_found");
    let error = alice
        .err(
            "conversation.add_members",
            json!({ "conversation_id": id, "user_ids": ["carol", "dave"] }),
        )
        .await;
    assert_code(&error, "bad_request");
    alice
        .ok(
            "conversation.add_members",
            json!({ "conversation_id": id, "user_ids": ["carol"] }),
        )
        .await;
}

#[tokio::test]
async fn remove_members_by_creator_notifies_removed_users_who_then_stop_receiving() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let created = create_group(&mut alice, &["bob", "carol"], "Trip").await;
    let id = created["conversation_id"].as_str().unwrap().to_owned();
    for client in [&mut alice, &mut bob, &mut carol] {
        client.event("member.joined").await;
    }

    // Only the creator removes others.
    let error = bob
        .err(
            "conversation.remove_members",
            json!({ "conversation_id": id, "user_ids": ["carol"] }),
        )
        .await;
    assert_code(&error, "forbidden");
    let error = bob
        .err(
            "conversation.remove_members",
            json!({ "conversation_id": id, "user_ids": ["bob", "carol"] }),
        )
        .await;
    assert_code(&error, "forbidden");
    let error = alice
        .err(
            "conversation.remove_members",
            json!({ "conversation_id": id, "user_ids": [] }),
        )
        .await;
    assert_code(&error, "bad_request");

    let result = alice
        .ok(
            "conversation.remove_members",
            json!({ "conversation_id": id, "user_ids": ["carol", "zoe"] }),
        )
        .await;
    let conversation = result["conversation"].clone();
    assert_eq!(sorted(&conversation["members"]), names(&["alice", "bob"]));
    // Remaining members and the removed user all get member.left.
    for client in [&mut alice, &mut bob, &mut carol] {
        let left = client.event("member.left").await;
        assert_eq!(left["conversation_id"], id.as_str());
        assert_eq!(left["user_ids"], json!(["carol"]), "{left}");
        assert_eq!(left["by"], "alice");
        assert_eq!(left["conversation"], conversation);
    }

    // Carol no longer receives the conversation's messages...
    send(&mut alice, &id, "m1", "after carol").await;
    bob.event("message.new").await;
    carol.no_event("message.new", ABSENT).await;
    // ...and her requests on it fail with not_member.
    let error = carol
        .err("history.get", json!({ "conversation_id": id }))
        .await;
    assert_code(&error, "not_member");
    let error = carol
        .err(
            "message.send",
            json!({ "conversation_id": id, "client_msg_id": "c1", "text": "hi?" }),
        )
        .await;
    assert_code(&error, "not_member");
    let error = carol
        .err(
            "conversation.remove_members",
            json!({ "conversation_id": id, "user_ids": ["carol"] }),
        )
        .await;
    assert_code(&error, "not_member");
    let error = carol
        .err(
            "conversation.remove_members",
            json!({ "conversation_id": "conv_nope", "user_ids": ["carol"] }),
        )
        .await;
    assert_code(&error, "not_found");
}

#[tokio::test]
async fn a_member_may_remove_only_themselves() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let id = create_conversation(&mut alice, "group", &["bob", "carol"]).await;
    bob.event("member.joined").await;
    alice.event("member.joined").await;
    let result = bob
        .ok(
            "conversation.remove_members",
            json!({ "conversation_id": id, "user_ids": ["bob"] }),
        )
        .await;
    assert_eq!(
        sorted(&result["conversation"]["members"]),
        names(&["alice", "carol"])
    );
    for client in [&mut alice, &mut bob] {
        let left = client.event("member.left").await;
        assert_eq!(left["user_ids"], json!(["bob"]));
        assert_eq!(left["by"], "bob");
        assert_eq!(left["conversation"], result["conversation"]);
    }
}

#[tokio::test]
async fn leave_notifies_remaining_members_and_the_leaver() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let created = create_group(&mut alice, &["bob", "carol"], "Trip").await;
    let id = created["conversation_id"].as_str().unwrap().to_owned();
    for client in [&mut alice, &mut bob, &mut carol] {
        client.event("member.joined").await;
    }

    let result = bob
        .ok("conversation.leave", json!({ "conversation_id": id }))
        .await;
    assert_eq!(result, json!({}));
    for client in [&mut alice, &mut bob, &mut carol] {
        let left = client.event("member.left").await;
        assert_eq!(left["conversation_id"], id.as_str());
        assert_eq!(left["user_ids"], json!(["bob"]));
        assert_eq!(left["by"], "bob");
        assert_eq!(
            sorted(&left["conversation"]["members"]),
            names(&["alice", "carol"])
        );
        assert_eq!(left["conversation"]["created_by"], "alice");
        assert_eq!(left["conversation"]["title"], "Trip");
    }

    // Bob is out.
    send(&mut carol, &id, "c1", "bye bob").await;
    alice.event("message.new").await;
    bob.no_event("message.new", ABSENT).await;
    let error = bob
        .err("conversation.leave", json!({ "conversation_id": id }))
        .await;
    assert_code(&error, "not_member");
    let error = bob
        .err(
            "conversation.leave",
            json!({ "conversation_id": "conv_nope" }),
        )
        .await;
    assert_code(&error, "not_found");

    // The creator may leave too.
    alice
        .ok("conversation.leave", json!({ "conversation_id": id }))
        .await;
    let left = carol.event("member.left").await;
    assert_eq!(left["user_ids"], json!(["alice"]));
    assert_eq!(left["by"], "alice");
    assert_eq!(sorted(&left["conversation"]["members"]), names(&["carol"]));
    let got = carol
        .ok("conversation.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(got["conversation"]["created_by"], "alice");
}

/// §7.0: every conversation-scoped operation gives `not_member` on an existing conversation
/// the caller is not in and `not_found` on a conversation that does not exist.
#[tokio::test]
async fn every_conversation_scoped_op_checks_existence_then_membership() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let mut mallory = server.connect("mallory").await;
    let id = create_conversation(&mut alice, "group", &["bob"]).await;
    let message = send(&mut alice, &id, "m1", "secret").await;
    let message_id = message["message_id"].as_str().unwrap().to_owned();
    // Mallory has a conversation of her own, to forward into / from.
    let own = create_conversation(&mut mallory, "group", &[]).await;
    let own_message = send(&mut mallory, &own, "x1", "mine").await;

    let ops = |conversation: &str, message: &str| -> Vec<(&'static str, Value)> {
        vec![
            (
                "conversation.get",
                json!({ "conversation_id": conversation }),
            ),
            (
                "conversation.update",
                json!({ "conversation_id": conversation, "title": "t" }),
            ),
            (
                "conversation.add_members",
                json!({ "conversation_id": conversation, "user_ids": ["mallory"] }),
            ),
            (
                "conversation.remove_members",
                json!({ "conversation_id": conversation, "user_ids": ["bob"] }),
            ),
            (
                "conversation.leave",
                json!({ "conversation_id": conversation }),
            ),
            (
                "message.send",
                json!({ "conversation_id": conversation, "client_msg_id": "k", "text": "t" }),
            ),
            (
                "message.edit",
                json!({ "conversation_id": conversation, "message_id": message, "text": "t" }),
            ),
            (
                "message.delete",
                json!({ "conversation_id": conversation, "message_id": message }),
            ),
            (
                "message.forward",
                json!({ "conversation_id": conversation, "message_id": message,
                        "to_conversation_id": own, "client_msg_id": "f" }),
            ),
            (
                "reaction.add",
                json!({ "conversation_id": conversation, "message_id": message, "emoji": "👍" }),
            ),
            (
                "reaction.remove",
                json!({ "conversation_id": conversation, "message_id": message, "emoji": "👍" }),
            ),
            ("history.get", json!({ "conversation_id": conversation })),
            (
                "receipt.delivered",
                json!({ "conversation_id": conversation, "seq": 1 }),
            ),
            (
                "receipt.read",
                json!({ "conversation_id": conversation, "seq": 1 }),
            ),
            ("typing.start", json!({ "conversation_id": conversation })),
            ("typing.stop", json!({ "conversation_id": conversation })),
        ]
    };

    for (op, args) in ops(&id, &message_id) {
        let error = mallory.err(op, args.clone()).await;
        assert_eq!(error["code"], "not_member", "{op} {args}: {error}");
    }
    for (op, args) in ops("conv_does_not_exist", &message_id) {
        let error = mallory.err(op, args.clone()).await;
        assert_eq!(error["code"], "not_found", "{op} {args}: {error}");
    }
    // Forwarding from her own conversation into one she is not in.
    let error = mallory
        .err(
            "message.forward",
            json!({ "conversation_id": own, "message_id": own_message["message_id"],
                    "to_conversation_id": id, "client_msg_id": "f2" }),
        )
        .await;
    assert_code(&error, "not_member");
    let error = mallory
        .err(
            "message.forward",
            json!({ "conversation_id": own, "message_id": own_message["message_id"],
                    "to_conversation_id": "conv_does_not_exist", "client_msg_id": "f3" }),
        )
        .await;
    assert_code(&error, "not_found");

    // Nothing changed in alice's conversation.
    let got = alice
        .ok("conversation.get", json!({ "conversation_id": id }))
        .await;
    assert_eq!(got["conversation"]["last_seq"], 1);
    assert_eq!(
        sorted(&got["conversation"]["members"]),
        names(&["alice", "bob"])
    );
}
