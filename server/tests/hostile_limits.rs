//! A hostile but authenticated client against the limits of issue #13 (items 1, 2, 3, 5, 14):
//! what one ordinary user can make a node start, hold or compute. Standalone, and for the
//! conversation actors and the connection caps also on a two-node cluster.

mod common;

use std::time::{Duration, Instant};

use common::{assert_code, create_conversation, metric, Client, TestCluster, TestServer, WAIT};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Conversation actors running on a node.
const ACTORS: &str = "parley_conversation_actors_active";

/// Waits until `name` reads `expected` on `server` (at most 10 s); returns the last value.
async fn settles_at(server: &TestServer, name: &str, expected: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric(server, name).await;
        if value == expected || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `count` conversation ids nobody created.
fn unknown_ids(count: usize) -> serde_json::Map<String, Value> {
    (0..count)
        .map(|index| (format!("00000000-0000-7000-8000-{index:012}"), json!(0)))
        .collect()
}

/// Asks for an upgrade as `user_id` over plain TCP; the status and JSON body of the refusal
/// (a refusal ends the connection; an accepted upgrade times out here).
async fn refused(server: &TestServer, user_id: &str) -> (u16, Value) {
    let token = server.token(user_id).await;
    let mut stream = TcpStream::connect(&server.addr).await.expect("tcp");
    let upgrade = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: parley\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(upgrade.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("the upgrade is refused: the connection ends")
        .expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok());
    (
        status.expect("a status"),
        serde_json::from_str(body).expect("a JSON body"),
    )
}

/// Item 1: sync and single operations on conversations that do not exist, or that the caller
/// is not a member of, leave no conversation actor running.
async fn strangers_leave_no_actor_behind(node: &TestServer, stranger: &mut Client) {
    let synced = stranger
        .ok("sync", json!({ "conversations": unknown_ids(1000) }))
        .await;
    assert_eq!(synced["conversations"], json!({}), "{synced}");
    let unknown = "00000000-0000-7000-8000-999999999999";
    let error = stranger
        .err("history.get", json!({ "conversation_id": unknown }))
        .await;
    assert_code(&error, "not_found");
    let error = stranger
        .err(
            "message.send",
            json!({ "conversation_id": unknown, "client_msg_id": "x", "text": "hi" }),
        )
        .await;
    assert_code(&error, "not_found");
    assert_eq!(
        settles_at(node, ACTORS, 0.0).await,
        0.0,
        "conversation actors left running for conversations that do not exist"
    );
}

#[tokio::test]
async fn unknown_and_foreign_conversations_leave_no_actor_behind() {
    let server = common::unthrottled_server().await;
    let mut mallory = server.connect("mallory").await;
    strangers_leave_no_actor_behind(&server, &mut mallory).await;

    // A conversation mallory is not in, with no member connected to this node.
    let mut bob = server.connect("bob").await;
    let foreign = create_conversation(&mut bob, "group", &["carol"]).await;
    drop(bob);
    assert_eq!(
        settles_at(&server, "parley_ws_sessions_open", 1.0).await,
        1.0
    );
    let error = mallory
        .err("conversation.get", json!({ "conversation_id": foreign }))
        .await;
    assert_code(&error, "not_member");
    let synced = mallory
        .ok("sync", json!({ "conversations": { foreign.clone(): 0 } }))
        .await;
    assert_eq!(synced["conversations"], json!({}), "{synced}");
    assert_eq!(
        settles_at(&server, ACTORS, 0.0).await,
        0.0,
        "a stranger's request left the conversation loaded"
    );
}

#[tokio::test]
async fn unknown_conversations_leave_no_actor_behind_on_a_cluster() {
    let cluster = TestCluster::start(2, &[]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut on_a = a.connect("mallory").await;
    let mut on_b = a.connect_to("mallory", b).await;
    strangers_leave_no_actor_behind(a, &mut on_a).await;
    strangers_leave_no_actor_behind(b, &mut on_b).await;
    // Members still sync their own conversation across nodes.
    let mut alice = a.connect("alice").await;
    let mut bob = a.connect_to("bob", b).await;
    let conversation_id = create_conversation(&mut alice, "direct", &["bob"]).await;
    bob.event("member.joined").await;
    common::send(&mut alice, &conversation_id, "m1", "hello").await;
    let synced = bob
        .ok(
            "sync",
            json!({ "conversations": { conversation_id.clone(): 0 } }),
        )
        .await;
    assert_eq!(
        common::seqs(&synced["conversations"][&conversation_id]["messages"]),
        [1]
    );
}

/// Item 2: a members list is size-checked before it is de-duplicated (it used to be
/// de-duplicated pairwise first).
#[tokio::test]
async fn member_lists_are_size_checked_before_anything_else() {
    let server = common::unthrottled_server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    // 1001 entries naming one user: over the cap of 1000 entries, whatever they repeat.
    let repeated = vec!["bob"; 1001];
    let error = alice
        .err(
            "conversation.create",
            json!({ "kind": "group", "members": repeated }),
        )
        .await;
    assert_code(&error, "bad_request");
    let group = create_conversation(&mut alice, "group", &["bob"]).await;
    let error = alice
        .err(
            "conversation.add_members",
            json!({ "conversation_id": group, "user_ids": vec!["carol"; 1001] }),
        )
        .await;
    assert_code(&error, "bad_request");

    // Ids no token can carry are refused wherever a list of users is taken.
    for bad in ["x".repeat(129), "bell\u{7}".to_owned()] {
        let error = alice
            .err("presence.get", json!({ "user_ids": [bad] }))
            .await;
        assert_code(&error, "bad_request");
    }

    // 8000 distinct ids: refused at once; another user's ping stays quick meanwhile.
    let distinct: Vec<String> = (0..8000).map(|index| format!("u{index}")).collect();
    let started = Instant::now();
    let error = alice
        .err(
            "conversation.create",
            json!({ "kind": "group", "members": distinct }),
        )
        .await;
    assert_code(&error, "bad_request");
    let refused_after = started.elapsed();
    let started = Instant::now();
    bob.ok("ping", json!({})).await;
    let ping = started.elapsed();
    println!("8000 ids refused after {refused_after:?}; bob's ping took {ping:?}");
    assert!(ping < Duration::from_secs(1), "bob's ping took {ping:?}");
}

/// Item 3: connection caps per user and per node refuse the upgrade with the JSON error of
/// every endpoint; a closed connection frees its place.
#[tokio::test]
async fn connection_caps_refuse_upgrades_with_documented_codes() {
    let server = TestServer::start_with(&[
        ("PARLEY__LIMITS__MAX_CONNECTIONS_PER_USER", "2"),
        ("PARLEY__LIMITS__MAX_CONNECTIONS", "3"),
    ])
    .await;
    let first = server.connect("alice").await;
    let _second = server.connect("alice").await;
    let (status, body) = refused(&server, "alice").await;
    assert_eq!(status, 429, "{body}");
    assert_code(&body["error"], "rate_limited");
    assert!(body["error"]["retry_after_ms"].as_u64().is_some(), "{body}");

    let _bob = server.connect("bob").await;
    let (status, body) = refused(&server, "carol").await;
    assert_eq!(status, 503, "{body}");
    assert_code(&body["error"], "unavailable");
    for reason in ["user_connection_cap", "node_connection_cap"] {
        let name = format!("parley_ws_upgrades_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&server, &name).await, 1.0, "{name}");
    }

    // A closed connection frees its place once the server has seen the close.
    drop(first);
    assert_eq!(
        settles_at(&server, "parley_ws_sessions_open", 2.0).await,
        2.0
    );
    let _again = server.connect("alice").await;
}

#[tokio::test]
async fn connection_caps_are_per_node_on_a_cluster() {
    let cluster = TestCluster::start(2, &[("PARLEY__LIMITS__MAX_CONNECTIONS_PER_USER", "1")]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut on_a = a.connect("alice").await;
    let (status, body) = refused(a, "alice").await;
    assert_eq!(status, 429, "{body}");
    let mut on_b = a.connect_to("alice", b).await;
    // Both sessions work.
    on_a.ok("ping", json!({})).await;
    on_b.ok("ping", json!({})).await;
}

/// Item 3: a user who is a member of `max_conversations_per_user` conversations creates no
/// more.
#[tokio::test]
async fn the_conversation_quota_refuses_creation() {
    let server =
        TestServer::start_with(&[("PARLEY__LIMITS__MAX_CONVERSATIONS_PER_USER", "2")]).await;
    let mut alice = server.connect("alice").await;
    create_conversation(&mut alice, "group", &["bob"]).await;
    create_conversation(&mut alice, "direct", &["bob"]).await;
    let error = alice
        .err(
            "conversation.create",
            json!({ "kind": "group", "members": ["carol"] }),
        )
        .await;
    assert_code(&error, "forbidden");
}

/// Item 5: token issue refuses a display name that would bloat every token and user ids that
/// carry control characters into the logs.
#[tokio::test]
async fn token_issue_refuses_long_names_and_control_characters() {
    let server = TestServer::start().await;
    for body in [
        json!({ "user_id": "alice", "display_name": "x".repeat(257) }),
        json!({ "user_id": "alice", "display_name": "Alice\nINFO forged line" }),
        json!({ "user_id": "mallory\r\n2026-01-01T00:00:00Z INFO admin logged in" }),
        json!({ "user_id": "bell\u{7}" }),
    ] {
        let (status, reply) = server.token_with(body.clone()).await;
        assert_eq!(status, 400, "{body} → {reply}");
        assert_code(&reply["error"], "bad_request");
    }
    let (status, reply) = server
        .token_with(json!({ "user_id": "alice", "display_name": "x".repeat(256) }))
        .await;
    assert_eq!(status, 200, "{reply}");
}

/// Item 14: WebSocket pings take rate-limit tokens: a ping flood ends in the abuse close.
#[tokio::test]
async fn a_ping_flood_is_closed_with_4008() {
    let server = TestServer::start_with(&[
        ("PARLEY__RATE_LIMIT__PER_SECOND", "5"),
        ("PARLEY__RATE_LIMIT__BURST", "5"),
        ("PARLEY__RATE_LIMIT__ABUSE_REJECTIONS", "5"),
    ])
    .await;
    let mut mallory = server.connect("mallory").await;
    for _ in 0..200 {
        if mallory
            .ws
            .send(Message::Ping(Vec::new().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let closed = tokio::time::timeout(Duration::from_secs(15), mallory.closed())
        .await
        .expect("the ping flood is closed within 15 s");
    assert_eq!(closed.code, 4008);
}
