//! Attachments end to end on a standalone node (local files, the node serves the signed URLs):
//! upload with a plain HTTP client, send, download by another member with the same bytes; who
//! gets 404; refusals before and after the bytes move; expiry; the orphan sweep; deletion.

mod common;

use std::time::Duration;

use common::attachments::{
    declare, download, download_url, fetch, file_of, put_bytes, sha256, upload,
};
use common::{assert_code, create_conversation, metric, TestServer};
use serde_json::json;

const SHORT_LIVED: &[(&str, &str)] = &[
    ("PARLEY__ATTACHMENTS__DOWNLOAD_URL_TTL_SECS", "1"),
    ("PARLEY__ATTACHMENTS__ORPHAN_TTL_SECS", "4"),
    ("PARLEY__ATTACHMENTS__SWEEP_INTERVAL_SECS", "1"),
];

#[tokio::test]
async fn a_member_downloads_the_same_bytes_and_no_one_else_does() {
    let server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    assert!(
        common::has_feature(&alice.welcome, "attachments"),
        "{}",
        alice.welcome
    );
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    let bytes = file_of(300_000, 7);
    let alice_token = server.token("alice").await;
    let attachment_id = upload(&server, &alice_token, "cat.png", &bytes).await;
    let sent = alice
        .ok(
            "message.send",
            json!({ "conversation_id": conversation, "client_msg_id": "m1", "text": "look",
                    "attachments": [attachment_id] }),
        )
        .await;
    let message = bob.event("message.new").await["message"].clone();
    assert_eq!(message["message_id"], sent["message_id"]);
    assert_eq!(
        message["attachments"],
        json!([{ "attachment_id": attachment_id, "name": "cat.png", "content_type": "image/png", "size": 300_000 }])
    );
    let bob_token = server.token("bob").await;
    let downloaded = download(&server, &bob_token, &attachment_id)
        .await
        .expect("bob downloads");
    assert_eq!(sha256(&downloaded), sha256(&bytes), "the same bytes");
    let carol_token = server.token("carol").await;
    assert_eq!(
        download(&server, &carol_token, &attachment_id).await,
        Err(404),
        "not a member"
    );
    assert_eq!(
        download(&server, &bob_token, &"0".repeat(32)).await,
        Err(404),
        "unknown id"
    );
    // A forward carries the same attachment (the reference, not a copy) to other members.
    let mut carol = server.connect("carol").await;
    let elsewhere = create_conversation(&mut alice, "group", &["carol"]).await;
    let forward = json!({ "conversation_id": conversation, "message_id": sent["message_id"],
                          "to_conversation_id": elsewhere, "client_msg_id": "f1" });
    alice.ok("message.forward", forward).await;
    let forwarded = carol.event("message.new").await["message"].clone();
    assert_eq!(forwarded["attachments"], message["attachments"]);
    assert!(
        download(&server, &carol_token, &attachment_id)
            .await
            .is_ok(),
        "a member there"
    );
    let history = bob
        .ok("history.get", json!({ "conversation_id": conversation }))
        .await;
    assert_eq!(
        history["messages"][0]["attachments"][0]["attachment_id"],
        json!(attachment_id)
    );
    alice
        .ok(
            "conversation.remove_members",
            json!({ "conversation_id": conversation, "user_ids": ["bob"] }),
        )
        .await;
    assert_eq!(
        download(&server, &bob_token, &attachment_id).await,
        Err(404),
        "removed member"
    );
    assert!(
        download(&server, &alice_token, &attachment_id)
            .await
            .is_ok(),
        "the sender still may"
    );
    assert!(metric(&server, "parley_attachment_downloads_total").await >= 2.0);
}

#[tokio::test]
async fn uploads_are_refused_before_and_after_the_bytes_move() {
    let server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    let token = server.token("alice").await;
    let declared = |size: u64, content_type: &str| json!({ "name": "f", "content_type": content_type, "size": size });
    let (status, body) =
        declare(&server, &token, declared(25 * 1024 * 1024 + 1, "image/png")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("too_large")),
        "{body}"
    );
    let (status, body) = declare(&server, &token, declared(10, "application/x-msdownload")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("bad_request")),
        "{body}"
    );
    let (status, _) = declare(&server, "not-a-token", declared(10, "image/png")).await;
    assert_eq!(status, 401);
    // The local store refuses more bytes than declared; fewer are stored but cannot be sent.
    let (_, short) = declare(&server, &token, declared(10, "image/png")).await;
    assert_eq!(put_bytes(&short, vec![1; 11]).await, 413);
    assert_eq!(put_bytes(&short, vec![1; 5]).await, 200);
    let send = |attachments: serde_json::Value| json!({ "conversation_id": conversation, "client_msg_id": "m", "text": "x", "attachments": attachments });
    let short_id = short["attachment_id"].clone();
    assert_code(
        &alice.err("message.send", send(json!([short_id]))).await,
        "bad_request",
    );
    let (_, never_sent) = declare(&server, &token, declared(3, "image/png")).await;
    assert_code(
        &alice
            .err("message.send", send(json!([never_sent["attachment_id"]])))
            .await,
        "bad_request",
    );
    let bob_token = server.token("bob").await;
    let bobs = upload(&server, &bob_token, "b.png", b"bob").await;
    assert_code(
        &alice.err("message.send", send(json!([bobs]))).await,
        "bad_request",
    );
    let eleven: Vec<String> = (0..11).map(|index| format!("{index:032x}")).collect();
    assert_code(
        &alice.err("message.send", send(json!(eleven))).await,
        "bad_request",
    );
    let mut tampered = short["upload_url"].as_str().expect("url").to_owned();
    tampered.push('0');
    let forged = json!({ "upload_method": "PUT", "upload_url": tampered, "upload_headers": {} });
    assert_eq!(
        put_bytes(&forged, vec![1; 10]).await,
        403,
        "a tampered signature"
    );
    assert!(metric(&server, "parley_attachment_refusals_total").await >= 3.0);
}

#[tokio::test]
async fn urls_expire_orphans_are_swept_and_deleted_messages_stop_serving() {
    let server = TestServer::start_with(SHORT_LIVED).await;
    let mut alice = server.connect("alice").await;
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    let alice_token = server.token("alice").await;
    let bob_token = server.token("bob").await;
    let kept = upload(&server, &alice_token, "kept.png", b"kept").await;
    let orphan = upload(&server, &alice_token, "orphan.png", b"orphan").await;
    assert!(
        download(&server, &alice_token, &orphan).await.is_ok(),
        "the uploader, while unsent"
    );
    assert_eq!(download(&server, &bob_token, &orphan).await, Err(404));
    let sent = alice
        .ok(
            "message.send",
            json!({ "conversation_id": conversation, "client_msg_id": "m1", "text": "x", "attachments": [kept] }),
        )
        .await;
    let url = download_url(&server, &bob_token, &kept)
        .await
        .expect("a download url");
    // The orphan is older than its TTL (4 s) by then; a sweep runs every second.
    tokio::time::sleep(Duration::from_millis(6_000)).await;
    assert_eq!(fetch(&url).await, Err(403), "an expired download url");
    // The sweep due by now may run late on a loaded machine: wait for it.
    wait_for_metric(&server, "parley_attachment_swept_total", 1.0).await;
    assert_eq!(
        download(&server, &alice_token, &orphan).await,
        Err(404),
        "the orphan is swept"
    );
    assert_eq!(
        download(&server, &bob_token, &kept).await.as_deref(),
        Ok(&b"kept"[..]),
        "sent: kept"
    );
    alice
        .ok(
            "message.delete",
            json!({ "conversation_id": conversation, "message_id": sent["message_id"] }),
        )
        .await;
    assert_eq!(
        download(&server, &bob_token, &kept).await,
        Err(404),
        "its message is deleted"
    );
    assert_eq!(download(&server, &alice_token, &kept).await, Err(404));
}

/// An upload the sweep may delete while a message carries it (pending in the last quarter of
/// its orphan TTL, 4 s here) is refused with a clear error, so no message carries bytes that
/// are gone; a fresh upload is sent. Its upload URL expires when sends start refusing it.
#[tokio::test]
async fn an_upload_about_to_be_swept_is_refused_not_sent() {
    let server = TestServer::start_with(&[
        ("PARLEY__ATTACHMENTS__ORPHAN_TTL_SECS", "4"),
        ("PARLEY__ATTACHMENTS__SWEEP_INTERVAL_SECS", "3600"),
    ])
    .await;
    let mut alice = server.connect("alice").await;
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    let alice_token = server.token("alice").await;
    let (status, declared) = declare(
        &server,
        &alice_token,
        json!({ "name": "stale.png", "content_type": "image/png", "size": 5 }),
    )
    .await;
    assert_eq!(status, 201, "{declared}");
    let expires_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(declared["expires_at"].clone()).expect("expires_at");
    let sendable_until = chrono::Utc::now() + chrono::Duration::seconds(3);
    assert!(
        expires_at <= sendable_until,
        "{expires_at} > {sendable_until}"
    );
    assert_eq!(put_bytes(&declared, b"stale".to_vec()).await, 200);
    let stale = declared["attachment_id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let send = |client_msg_id: &str, attachment_id: &str| {
        json!({ "conversation_id": conversation, "client_msg_id": client_msg_id, "text": "x",
                "attachments": [attachment_id] })
    };
    let refused = alice.err("message.send", send("m1", &stale)).await;
    assert_code(&refused, "bad_request");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|message| message.contains("upload it again")),
        "{refused}"
    );
    let fresh = upload(&server, &alice_token, "fresh.png", b"fresh").await;
    alice.ok("message.send", send("m2", &fresh)).await;
}

#[tokio::test]
async fn with_attachments_off_nothing_is_offered_or_accepted() {
    let server = TestServer::start_with(&[("PARLEY__ATTACHMENTS__STORE", "off")]).await;
    let mut alice = server.connect("alice").await;
    assert!(
        !common::has_feature(&alice.welcome, "attachments"),
        "{}",
        alice.welcome
    );
    let token = server.token("alice").await;
    let declared = json!({ "name": "f", "content_type": "image/png", "size": 1 });
    let (status, body) = declare(&server, &token, declared).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    let send = json!({ "conversation_id": conversation, "client_msg_id": "m", "text": "x",
                       "attachments": ["0".repeat(32)] });
    assert_code(&alice.err("message.send", send).await, "bad_request");
}

/// Bytes a PUT begun just before its URL expired may land after the sweep deleted their upload
/// (record and marker gone, nothing would ever delete them): one orphan TTL after the sweep
/// they are deleted. The late landing is made by writing the file where the standalone blob
/// store keeps it (its own PUT handler refuses an expired URL; S3 finishes a PUT it began).
#[tokio::test]
async fn bytes_that_land_after_their_upload_was_swept_are_deleted_later() {
    let server = TestServer::start_with(&[
        ("PARLEY__ATTACHMENTS__ORPHAN_TTL_SECS", "2"),
        ("PARLEY__ATTACHMENTS__SWEEP_INTERVAL_SECS", "1"),
    ])
    .await;
    let alice_token = server.token("alice").await;
    let (status, declared) = declare(
        &server,
        &alice_token,
        json!({ "name": "late.png", "content_type": "image/png", "size": 4 }),
    )
    .await;
    assert_eq!(status, 201, "{declared}");
    let id = declared["attachment_id"].as_str().expect("id");
    wait_for_metric(&server, "parley_attachment_swept_total", 1.0).await;
    let landed = server
        .data_dir()
        .join("blobs/attachments")
        .join(id)
        .join("blob");
    std::fs::create_dir_all(landed.parent().expect("dir")).expect("dir");
    std::fs::write(&landed, b"late").expect("late bytes");
    wait_for_metric(&server, "parley_attachment_late_uploads_deleted_total", 1.0).await;
    assert!(!landed.exists(), "the late bytes are deleted");
}

/// Waits up to 15 s for the counter `name` to reach `at_least` (the sweep runs every second).
async fn wait_for_metric(server: &TestServer, name: &str, at_least: f64) {
    for _ in 0..150 {
        if metric(server, name).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} stayed below {at_least}");
}
