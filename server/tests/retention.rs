//! Retention and legal hold (docs/protocol.md §17): the admin routes, and the sweep that purges
//! expired messages from history, sync, search, the cache, the stores and the blob store.
//! Tests make a retention day one second long (`retention.day_seconds`, for tests only).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::admin::{actions, admin, audit_listing, ADMIN_ENV};
use common::durable::{wait_for_documents, DurableCluster};
use common::{create_conversation, send, seqs, Client, TestServer, WAIT};
use mongodb::bson::doc;
use persistence::{EmbeddedLog, EmbeddedStore};
use ports::{EventLog, MessageQuery, Store};
use serde_json::{json, Value};
use wire::log::LogEventBody;
use wire::ConversationId;

/// Retention days of one second, swept every second.
const FAST_RETENTION: [(&str, &str); 3] = [
    ADMIN_ENV,
    ("PARLEY__RETENTION__DAY_SECONDS", "1"),
    ("PARLEY__RETENTION__SWEEP_INTERVAL_SECS", "1"),
];
/// A word only the old messages say.
const OLD_WORD: &str = "zephyrquokka";

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

/// `history.get` of the whole conversation.
async fn history(client: &mut Client, conversation: &str) -> Value {
    client
        .ok(
            "history.get",
            json!({"conversation_id": conversation, "limit": 100}),
        )
        .await
}

/// The conversation's history once its `first_seq` is `first_seq` (the sweep ran).
async fn history_once_purged(client: &mut Client, conversation: &str, first_seq: u64) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = history(client, conversation).await;
        if page["first_seq"] == first_seq {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{conversation} never reached first_seq {first_seq}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The conversations of the hits of `OLD_WORD`, once there are `want` hits.
async fn old_word_hits(client: &mut Client, want: usize) -> Vec<String> {
    common::hit_conversations(client, OLD_WORD, want).await
}

/// The seqs the node's embedded store holds for `conversation` (read once the node stopped).
async fn stored_seqs(store: &EmbeddedStore, conversation: &str) -> Vec<u64> {
    let newest = MessageQuery {
        after_seq: None,
        before_seq: None,
        limit: 100,
    };
    let records = store
        .messages(&ConversationId::new(conversation), newest)
        .await
        .expect("read the store");
    records.iter().map(|record| record.message.seq.0).collect()
}

#[tokio::test]
async fn expired_messages_leave_every_store_of_a_standalone_node_unless_held() {
    let mut env = FAST_RETENTION.to_vec();
    // The log keeps events for 8 "days" of 1 s: by the end the old messages must be gone from
    // it and the fresh ones, sent 5 s after them, still there (timings below). The node prunes
    // during its graceful stop too: a short drain window keeps the stop well inside the margin.
    env.push(("PARLEY__RETENTION__EMBEDDED_LOG_DAYS", "8"));
    env.push(("PARLEY__SERVER__DRAIN_WINDOW_MS", "100"));
    let mut server = TestServer::start_with(&env).await;
    let token = server.token("alice").await;
    let mut alice = server.connect("alice").await;
    let expiring = create_conversation(&mut alice, "group", &["bob"]).await;
    let held = create_conversation(&mut alice, "group", &["carol"]).await;
    let file = common::attachments::file_of(1000, 7);
    let attachment = common::attachments::upload(&server, &token, "old.png", &file).await;
    alice
        .ok(
            "message.send",
            json!({"conversation_id": expiring, "client_msg_id": "old-0",
                "text": format!("{OLD_WORD} with a file"), "attachments": [attachment]}),
        )
        .await;
    for index in 1..3 {
        send(&mut alice, &expiring, &format!("old-{index}"), OLD_WORD).await;
    }
    for index in 0..2 {
        send(&mut alice, &held, &format!("held-{index}"), OLD_WORD).await;
    }
    let old_sent = tokio::time::Instant::now();
    old_word_hits(&mut alice, 5).await;

    let (status, _) = put_policy(&server, &held, "legal_hold", json!({"on": true})).await;
    assert_eq!(status, 200);
    for conversation in [&expiring, &held] {
        let (status, body) =
            put_policy(&server, conversation, "retention", json!({"days": 1})).await;
        assert_eq!(status, 200, "{body}");
    }
    let page = history_once_purged(&mut alice, &expiring, 4).await;
    assert_eq!(seqs(&page["messages"]), Vec::<u64>::new(), "{page}");
    assert_eq!(page["has_more"], false);
    let (status, _) = put_policy(&server, &expiring, "retention", json!({"days": 3600})).await;
    assert_eq!(status, 200);
    // Fresh messages at least 5 s younger than the old ones (the log's retention: 8 s).
    tokio::time::sleep_until(old_sent + Duration::from_secs(5)).await;
    for index in 0..2 {
        send(&mut alice, &expiring, &format!("new-{index}"), "fresh news").await;
    }
    let page = history(&mut alice, &expiring).await;
    assert_eq!(
        (seqs(&page["messages"]), &page["first_seq"]),
        (vec![4, 5], &json!(4))
    );
    let synced = alice
        .ok(
            "sync",
            json!({"conversations": {expiring.clone(): 0, held.clone(): 0}}),
        )
        .await;
    let expiring_sync = &synced["conversations"][&expiring];
    assert_eq!(
        (
            seqs(&expiring_sync["messages"]),
            &expiring_sync["first_seq"]
        ),
        (vec![4, 5], &json!(4)),
        "{synced}"
    );
    let held_sync = &synced["conversations"][&held];
    assert_eq!(
        (seqs(&held_sync["messages"]), &held_sync["first_seq"]),
        (vec![1, 2], &json!(1)),
        "a held conversation keeps its messages: {synced}"
    );
    common::hits_become(&mut alice, OLD_WORD, &[held.as_str(), held.as_str()]).await;
    assert_eq!(
        common::attachments::download(&server, &token, &attachment).await,
        Err(404),
        "the purged message's file is gone"
    );
    let blob = server
        .data_dir()
        .join(format!("blobs/attachments/{attachment}/blob"));
    assert!(!blob.exists(), "{} still exists", blob.display());
    assert_eq!(
        common::metric(&server, "parley_retention_held_conversations").await,
        1.0
    );
    assert_eq!(
        common::metric(&server, "parley_retention_purged_messages_total").await,
        3.0
    );
    assert_eq!(
        common::metric(&server, "parley_retention_deleted_files_total").await,
        1.0
    );

    let (status, _) = put_policy(&server, &held, "legal_hold", json!({"on": false})).await;
    assert_eq!(status, 200);
    let page = history_once_purged(&mut alice, &held, 3).await;
    assert_eq!(seqs(&page["messages"]), Vec::<u64>::new(), "{page}");
    old_word_hits(&mut alice, 0).await;
    let path = format!("/api/v1/admin/audit?target=conversation:{held}");
    audit_listing(
        &server,
        &path,
        &[
            "conversation.create",
            "admin.set_legal_hold",
            "admin.set_retention",
            "admin.set_legal_hold",
        ],
    )
    .await;

    // 10 s after the old messages the 1 s sweeps have pruned them (8 s old) with a second to
    // spare, and the fresh ones (at most 5 s old) have 3 s left for the stop (it pruned a
    // 2-second drain window later once, with the default window, and took the fresh ones).
    tokio::time::sleep_until(old_sent + Duration::from_secs(10)).await;
    wait_for_log_prune(&server).await;
    server.terminate();
    assert!(server.exited_within(WAIT).await, "the node stops");
    let store = Arc::new(
        EmbeddedStore::open(&server.data_dir().join("store.redb")).expect("open the store"),
    );
    assert_eq!(stored_seqs(&store, &expiring).await, [4, 5]);
    assert_eq!(stored_seqs(&store, &held).await, Vec::<u64>::new());
    let logged = logged_texts(&server.data_dir().join("log")).await;
    assert!(
        logged.iter().all(|text| !text.contains(OLD_WORD)),
        "the embedded log still holds old messages: {logged:?}"
    );
    assert!(logged.iter().any(|text| text == "fresh news"), "{logged:?}");
}

/// Waits until the node has pruned its embedded log once.
async fn wait_for_log_prune(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while common::metric(server, "parley_retention_log_events_pruned_total").await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the embedded log was not pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The texts of the messages the embedded log at `path` still holds (read once the node
/// stopped).
async fn logged_texts(path: &std::path::Path) -> Vec<String> {
    let log = EmbeddedLog::open(path).expect("open the log");
    let mut consumer = log
        .consumer("retention-test", &wire::log::topics::ALL)
        .await
        .expect("consumer");
    let mut texts = Vec::new();
    loop {
        let records = consumer
            .poll(1000, Duration::from_millis(200))
            .await
            .expect("poll");
        if records.is_empty() {
            return texts;
        }
        for record in records {
            if let LogEventBody::MessageSent { record } | LogEventBody::MessageEdited { record } =
                record.event.body
            {
                texts.push(record.message.text);
            }
        }
    }
}

/// The seqs of `conversation` the cluster's Redis message cache holds.
async fn cached_seqs(cluster: &DurableCluster, conversation: &str) -> Vec<u64> {
    let output = std::process::Command::new("redis-cli")
        .args([
            "-u",
            &cluster.redis.url(),
            "HKEYS",
            &format!("parley:cache:{conversation}"),
        ])
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli: {output:?}");
    let mut seqs: Vec<u64> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(|seq| seq.parse().expect("a cached seq"))
        .collect();
    seqs.sort_unstable();
    seqs
}

#[tokio::test]
async fn expired_messages_leave_mongodb_the_cache_and_the_indexes_of_a_durable_cluster() {
    let cluster = DurableCluster::start("parley_e2e_retention", 2, &FAST_RETENTION).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let expiring = create_conversation(&mut alice, "group", &["bob"]).await;
    let held = create_conversation(&mut alice, "group", &["bob"]).await;
    for index in 0..3 {
        send(&mut alice, &expiring, &format!("old-{index}"), OLD_WORD).await;
    }
    for index in 0..2 {
        send(&mut bob, &held, &format!("held-{index}"), OLD_WORD).await;
    }
    let in_mongo = |conversation: &str| doc! {"conversation_id": conversation};
    wait_for_documents(
        &cluster.db,
        "messages",
        in_mongo(&expiring),
        "3 messages",
        |found| found.len() == 3,
    )
    .await;
    old_word_hits(&mut bob, 5).await;
    assert_eq!(cached_seqs(&cluster, &expiring).await, [1, 2, 3]);

    let (status, _) = put_policy(b, &held, "legal_hold", json!({"on": true})).await;
    assert_eq!(status, 200);
    for conversation in [&expiring, &held] {
        let (status, body) = put_policy(a, conversation, "retention", json!({"days": 1})).await;
        assert_eq!(status, 200, "{body}");
    }
    let page = history_once_purged(&mut bob, &expiring, 4).await;
    assert_eq!(seqs(&page["messages"]), Vec::<u64>::new(), "{page}");
    wait_for_documents(
        &cluster.db,
        "messages",
        in_mongo(&expiring),
        "no message",
        |found| found.is_empty(),
    )
    .await;
    assert_eq!(cached_seqs(&cluster, &expiring).await, Vec::<u64>::new());
    common::hits_become(&mut bob, OLD_WORD, &[held.as_str(), held.as_str()]).await;
    common::hits_become(&mut alice, OLD_WORD, &[held.as_str(), held.as_str()]).await;

    let (status, _) = put_policy(a, &expiring, "retention", json!({"days": 3600})).await;
    assert_eq!(status, 200);
    send(&mut alice, &expiring, "new-0", "fresh news").await;
    let synced = alice
        .ok(
            "sync",
            json!({"conversations": {expiring.clone(): 0, held.clone(): 0}}),
        )
        .await;
    let conversations = &synced["conversations"];
    assert_eq!(
        (
            seqs(&conversations[&expiring]["messages"]),
            &conversations[&expiring]["first_seq"]
        ),
        (vec![4], &json!(4)),
        "{synced}"
    );
    assert_eq!(
        (
            seqs(&conversations[&held]["messages"]),
            &conversations[&held]["first_seq"]
        ),
        (vec![1, 2], &json!(1)),
        "a held conversation keeps its messages: {synced}"
    );
    let held_documents = wait_for_documents(
        &cluster.db,
        "messages",
        in_mongo(&held),
        "2 held",
        |found| found.len() == 2,
    )
    .await;
    assert_eq!(held_documents.len(), 2);
    let conversation_document = wait_for_documents(
        &cluster.db,
        "conversations",
        doc! {"_id": &expiring},
        "purged_through 3",
        |found| {
            found
                .iter()
                .any(|document| common::durable::integer(document, "purged_through") == Some(3))
        },
    )
    .await;
    assert_eq!(conversation_document.len(), 1);

    let (status, _) = put_policy(a, &held, "legal_hold", json!({"on": false})).await;
    assert_eq!(status, 200);
    history_once_purged(&mut alice, &held, 3).await;
    wait_for_documents(
        &cluster.db,
        "messages",
        in_mongo(&held),
        "no message",
        |found| found.is_empty(),
    )
    .await;
    old_word_hits(&mut bob, 0).await;
    let audit = wait_for_documents(
        &cluster.db,
        "audit",
        doc! {"target": format!("conversation:{held}")},
        "the held conversation's audit",
        |found| found.len() >= 4,
    )
    .await;
    let mut recorded: Vec<&str> = audit
        .iter()
        .filter_map(|document| document.get_str("action").ok())
        .collect();
    recorded.sort_unstable();
    assert_eq!(
        recorded,
        [
            "admin.set_legal_hold",
            "admin.set_legal_hold",
            "admin.set_retention",
            "conversation.create"
        ]
    );
}
