//! Retention and legal hold (docs/protocol.md §17): the admin routes, and the sweep that purges
//! expired messages from history, sync, search, the cache, the stores and the blob store.
//! Tests make a retention day one second long (`retention.day_seconds`, for tests only).

mod common;

use common::admin::{actions, admin, audit_listing, ADMIN_ENV};
use common::{create_conversation, TestServer};
use serde_json::{json, Value};

/// `PUT` of a conversation's retention or legal hold (`what`).
async fn put_policy(
    server: &TestServer,
    conversation: &str,
    what: &str,
    body: Value,
) -> (u16, Value) {
    let path = format!("/api/v1/admin/conversations/{conversation}/{what}");
    admin(server, "PUT", &path, Some(body)).await
}

#[tokio::test]
async fn retention_and_legal_hold_are_set_checked_and_audited() {
    let server =
        TestServer::start_with(&[ADMIN_ENV, ("PARLEY__RETENTION__DEFAULT_DAYS", "30")]).await;
    let mut alice = server.connect("alice").await;
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;

    let (status, body) = put_policy(&server, &conversation, "retention", json!({"days": 7})).await;
    assert_eq!(status, 200, "{body}");
    let expected = json!({"conversation_id": conversation, "days": 7, "days_from": "conversation",
        "legal_hold": false, "first_seq": 1});
    assert_eq!(body, expected);
    let (status, body) =
        put_policy(&server, &conversation, "legal_hold", json!({"on": true})).await;
    assert_eq!(
        (status, &body["legal_hold"], &body["days"]),
        (200, &json!(true), &json!(7))
    );
    let (_, body) = put_policy(&server, &conversation, "retention", json!({"days": null})).await;
    assert_eq!(
        (&body["days"], &body["days_from"]),
        (&json!(30), &json!("default"))
    );
    let (_, body) = put_policy(&server, &conversation, "retention", json!({"days": 0})).await;
    assert_eq!(
        (&body["days"], &body["legal_hold"]),
        (&json!(0), &json!(true))
    );
    let (_, body) = put_policy(&server, &conversation, "legal_hold", json!({"on": false})).await;
    assert_eq!(body["legal_hold"], false);

    for (what, bad) in [
        ("retention", json!({})),
        ("retention", json!({"days": -1})),
        ("retention", json!({"days": 1.5})),
        ("retention", json!({"days": "7"})),
        ("retention", json!({"days": 36_501})),
        ("retention", json!({"days": 7, "extra": 1})),
        ("legal_hold", json!({})),
        ("legal_hold", json!({"on": "yes"})),
    ] {
        let (status, body) = put_policy(&server, &conversation, what, bad.clone()).await;
        assert_eq!(status, 400, "{what} {bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{what} {bad}");
    }
    let (status, body) = put_policy(
        &server,
        "no-such-conversation",
        "legal_hold",
        json!({"on": true}),
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));

    let path = format!(
        "/api/v1/admin/audit?target=conversation:{conversation}&action=admin.set_legal_hold"
    );
    let page = audit_listing(&server, &path, &["admin.set_legal_hold"; 4]).await;
    let statuses: Vec<&Value> = page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| &record["details"]["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!(200), &json!(200), &json!(400), &json!(400)]
    );
    let path = format!("/api/v1/admin/audit?target=conversation:{conversation}&limit=20");
    let (_, page) = admin(&server, "GET", &path, None).await;
    assert_eq!(
        actions(&page)[..5],
        [
            "conversation.create",
            "admin.set_retention",
            "admin.set_legal_hold",
            "admin.set_retention",
            "admin.set_retention"
        ]
    );
    assert_eq!(
        page["records"][1]["details"]["days"], 7,
        "the audit keeps what was set"
    );
}
