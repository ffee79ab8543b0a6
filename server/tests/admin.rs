//! The admin API (docs/protocol.md §16): the admin key, disconnect, ban, token revocation and
//! moderation delete, on a standalone node and across two nodes of a Redis cluster.

mod common;

use common::admin::{actions, admin, audit_listing, ADMIN_ENV};
use common::{create_conversation, refused, send, Client, TestCluster, TestServer, WAIT};
use serde_json::{json, Value};

/// The value of `parley_admin_calls_total` with these labels.
async fn admin_calls(server: &TestServer, action: &str, result: &str) -> f64 {
    let series = format!(r#"parley_admin_calls_total{{action="{action}",result="{result}"}}"#);
    common::metric(server, &series).await
}

/// Waits (at most `WAIT`: the server's pings would keep `closed` waiting) for the close.
async fn assert_closed_with(client: &mut Client, code: u16, case: &str) {
    let closed = tokio::time::timeout(WAIT, client.closed())
        .await
        .unwrap_or_else(|_| panic!("{case}: the session was not closed"));
    assert_eq!(closed.code, code, "{case}: {}", closed.reason);
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_key_and_needs_its_own_key() {
    let off = TestServer::start().await;
    let (status, body) = admin(&off, "POST", "/api/v1/admin/users/alice/disconnect", None).await;
    assert_eq!(status, 404, "admin API off: {body}");

    let server = TestServer::start_with(&[ADMIN_ENV]).await;
    let path = "/api/v1/admin/users/alice/disconnect";
    for (case, headers) in [
        ("no key", vec![]),
        (
            "wrong key",
            vec![("X-Admin-Key", "test-admin-key-0123456788")],
        ),
        ("the app API key", vec![("X-Admin-Key", common::API_KEY)]),
        (
            "the app API key header",
            vec![("X-Api-Key", common::API_KEY)],
        ),
    ] {
        let (status, body) = server.http("POST", path, &headers, None).await.unwrap();
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{case}");
    }
    assert_eq!(
        admin_calls(&server, "disconnect", "unauthorized").await,
        4.0
    );
    let (status, body) = admin(&server, "POST", path, None).await;
    assert_eq!((status, &body), (200, &json!({"sessions_closed": 0})));
    assert_eq!(admin_calls(&server, "disconnect", "ok").await, 1.0);
    let (status, _) = admin(&server, "GET", "/api/v1/admin/nothing", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn disconnect_ban_and_revoke_on_one_node() {
    let server = TestServer::start_with(&[ADMIN_ENV]).await;
    let mut first = server.connect("mallory").await;
    let mut second = server.connect("mallory").await;
    let (status, body) = admin(
        &server,
        "POST",
        "/api/v1/admin/users/mallory/disconnect",
        None,
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"sessions_closed": 2})));
    assert_closed_with(&mut first, 4003, "disconnect").await;
    assert_closed_with(&mut second, 4003, "disconnect").await;

    // Another user: sessions closing still count until they are gone.
    let token = server.token("trudy").await;
    let mut session = server.connect("trudy").await;
    let ban = json!({"reason": "spam"});
    let (status, body) = admin(&server, "PUT", "/api/v1/admin/users/trudy/ban", Some(ban)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions_closed"], 1);
    assert_closed_with(&mut session, 4003, "ban").await;
    let (status, body) = server.token_with(json!({"user_id": "trudy"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, body) = refused(server.ws_url(&token)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, body) = admin(&server, "DELETE", "/api/v1/admin/users/trudy/ban", None).await;
    assert_eq!((status, body["was_banned"].as_bool()), (200, Some(true)));
    let mut session = server.connect("trudy").await;

    let (status, body) = admin(
        &server,
        "POST",
        "/api/v1/admin/users/trudy/revoke_tokens",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_closed_with(&mut session, 4001, "revoke").await;
    let (status, body) = refused(server.ws_url(&token)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // A token issued after the revocation works at once.
    server.connect("trudy").await;
}

#[tokio::test]
async fn bad_admin_input_gets_bad_request() {
    let server = TestServer::start_with(&[ADMIN_ENV]).await;
    let ban = "/api/v1/admin/users/mallory/ban";
    for body in [
        json!({}),
        json!({"reason": ""}),
        json!({"reason": "x", "until": "2001-01-01T00:00:00Z"}),
        json!({"reason": "x", "until": "tomorrow"}),
        json!({"reason": "x".repeat(1025)}),
    ] {
        let (status, answer) = admin(&server, "PUT", ban, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, _) = admin(
        &server,
        "POST",
        "/api/v1/admin/users/a%0Ab/disconnect",
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = admin(
        &server,
        "DELETE",
        "/api/v1/admin/conversations/nope/messages/nope",
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn every_admin_call_holds_across_two_nodes() {
    let cluster = TestCluster::start(2, &[ADMIN_ENV]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);

    // Disconnect on A counts and closes the sessions on both nodes.
    let mut on_a = a.connect("mallory").await;
    let mut on_b = b.connect("mallory").await;
    let (status, body) = admin(a, "POST", "/api/v1/admin/users/mallory/disconnect", None).await;
    assert_eq!((status, &body), (200, &json!({"sessions_closed": 2})));
    assert_closed_with(&mut on_a, 4003, "disconnect, same node").await;
    assert_closed_with(&mut on_b, 4003, "disconnect, other node").await;

    // Ban on A: the session on B closes with 4003, B refuses the upgrade and the token.
    let token = b.token("mallory").await;
    let mut on_b = b.connect("mallory").await;
    let ban = json!({"reason": "abuse"});
    let (status, _) = admin(a, "PUT", "/api/v1/admin/users/mallory/ban", Some(ban)).await;
    assert_eq!(status, 200);
    assert_closed_with(&mut on_b, 4003, "ban on the other node").await;
    assert_eq!(refused(b.ws_url(&token)).await.0, 403);
    assert_eq!(b.token_with(json!({"user_id": "mallory"})).await.0, 403);
    let (status, _) = admin(b, "DELETE", "/api/v1/admin/users/mallory/ban", None).await;
    assert_eq!(status, 200);

    // Revoke on B closes the session on A with 4001; A refuses the old token.
    let token = a.token("mallory").await;
    let mut on_a = a.connect("mallory").await;
    let (status, _) = admin(b, "POST", "/api/v1/admin/users/mallory/revoke_tokens", None).await;
    assert_eq!(status, 200);
    assert_closed_with(&mut on_a, 4001, "revoke on the other node").await;
    assert_eq!(refused(a.ws_url(&token)).await.0, 401);

    // Moderation delete on B reaches the members on both nodes.
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect_to("bob", b).await;
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    bob.event("member.joined").await;
    let ack = send(&mut alice, &conversation, "m1", "something rude").await;
    bob.event("message.new").await;
    let message_id = ack["message_id"].as_str().unwrap();
    let path = format!("/api/v1/admin/conversations/{conversation}/messages/{message_id}");
    let (status, body) = admin(b, "DELETE", &path, None).await;
    assert_eq!(status, 200, "{body}");
    for member in [&mut alice, &mut bob] {
        let deleted = member.event("message.deleted").await;
        assert_eq!(deleted["message_id"], message_id);
    }
    let history = alice
        .ok("history.get", json!({"conversation_id": conversation}))
        .await;
    assert_eq!(history["messages"][0]["deleted"], true);
    assert_eq!(history["messages"][0]["text"], "");
}

#[tokio::test]
async fn every_admin_call_and_token_issue_is_audited_in_order() {
    let server = TestServer::start_with(&[ADMIN_ENV]).await;
    server.token("mallory").await;
    let ban = json!({"reason": "spam"});
    admin(&server, "PUT", "/api/v1/admin/users/mallory/ban", Some(ban)).await;
    assert_eq!(
        server.token_with(json!({"user_id": "mallory"})).await.0,
        403
    );
    admin(&server, "DELETE", "/api/v1/admin/users/mallory/ban", None).await;
    let refused = server
        .http(
            "POST",
            "/api/v1/admin/users/mallory/disconnect",
            &[("X-Admin-Key", "wrong-key-0123456789")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(refused.0, 401);

    let (status, page) = admin(
        &server,
        "GET",
        "/api/v1/admin/audit?target=user:mallory",
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        actions(&page),
        ["token.issue", "admin.ban", "token.issue", "admin.unban"],
        "{page}"
    );
    let records = &page["records"];
    assert_eq!(records[0]["actor"], "app");
    assert_eq!(records[1]["actor"], "admin");
    assert_eq!(records[1]["details"]["reason"], "spam");
    assert_eq!(
        records[2]["details"]["status"], 403,
        "the refused issue too"
    );
    assert_eq!(page["next_cursor"], Value::Null);

    let (_, unknown) = admin(&server, "GET", "/api/v1/admin/audit?actor=unknown", None).await;
    assert_eq!(actions(&unknown), ["admin.disconnect"]);
    assert_eq!(unknown["records"][0]["details"]["status"], 401);
    assert_eq!(
        unknown["records"][0]["target"],
        "/api/v1/admin/users/mallory/disconnect"
    );

    // Pages of two, oldest first, with a cursor.
    let (_, first) = admin(&server, "GET", "/api/v1/admin/audit?limit=2", None).await;
    assert_eq!(actions(&first), ["token.issue", "admin.ban"]);
    let cursor = first["next_cursor"].as_str().expect("more follow");
    let (_, second) = admin(
        &server,
        "GET",
        &format!("/api/v1/admin/audit?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(actions(&second), ["token.issue", "admin.unban"]);
    let (status, _) = admin(&server, "GET", "/api/v1/admin/audit?limit=0", None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn conversation_creation_and_membership_changes_are_audited() {
    let server = TestServer::start_with(&[ADMIN_ENV]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    let members =
        |user_ids: &[&str]| json!({"conversation_id": conversation, "user_ids": user_ids});
    alice
        .ok("conversation.add_members", members(&["carol"]))
        .await;
    alice
        .ok("conversation.remove_members", members(&["carol"]))
        .await;
    bob.ok(
        "conversation.leave",
        json!({"conversation_id": conversation}),
    )
    .await;
    // A refused change is not recorded.
    bob.err("conversation.add_members", members(&["dave"]))
        .await;

    let path = format!("/api/v1/admin/audit?target=conversation:{conversation}");
    let page = audit_listing(
        &server,
        &path,
        &[
            "conversation.create",
            "conversation.add_members",
            "conversation.remove_members",
            "conversation.leave",
        ],
    )
    .await;
    let actors: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["alice", "alice", "alice", "bob"]);
    assert_eq!(page["records"][1]["details"]["user_ids"], json!(["carol"]));
}
