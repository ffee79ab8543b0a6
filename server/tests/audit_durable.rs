//! The audit log of a durable cluster (issue 17) is carried by the log: nodes append their
//! records to the Kafka topic `audit`, the `ingest` binary writes them into MongoDB's `audit`
//! collection (queried here directly), and every node answers `GET /api/v1/admin/audit` from
//! there.

mod common;

use std::time::Duration;

use common::admin::{actions, admin, ADMIN_ENV, ADMIN_KEY};
use common::durable::{
    find_all, reset_group_offsets, wait_caught_up, wait_for_documents, watermarks, DurableCluster,
    PIPELINE_WAIT,
};
use common::{create_conversation, send, TestServer};
use mongodb::bson::{doc, Document};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::json;

/// The audit topic (no prefix in these tests) and the audit consumer's group (ingest's group,
/// `parley-ingest`, with `.audit`).
const AUDIT_TOPIC: &str = "audit";
const AUDIT_GROUP: &str = "parley-ingest.audit";
const DEAD_LETTER_TOPIC: &str = "dead.letter";

/// The `action`s of the audit documents in MongoDB, in the order of their ids (the query's
/// order), leaving out token issues (every connection makes one).
fn stored_actions(documents: &[Document]) -> Vec<String> {
    documents
        .iter()
        .filter_map(|document| document.get_str("action").ok())
        .filter(|action| *action != "token.issue")
        .map(str::to_owned)
        .collect()
}

/// Every audit document, oldest first.
async fn audit_documents(cluster: &DurableCluster) -> Vec<Document> {
    find_all(&cluster.db, "audit", doc! {}, doc! { "_id": 1 }).await
}

/// Waits until MongoDB's audit collection holds a record of `action` on `target`.
async fn wait_stored(cluster: &DurableCluster, action: &str, target: &str) -> Document {
    let filter = doc! { "action": action, "target": target };
    let found = wait_for_documents(&cluster.db, "audit", filter, action, |found| {
        !found.is_empty()
    })
    .await;
    found.into_iter().next().expect("found")
}

/// Produces `payload` to `topic` as another producer would (the same record twice, or garbage).
fn produce(brokers: &str, topic: &str, key: &str, payload: &[u8]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("kafka producer");
    producer
        .send(BaseRecord::to(topic).key(key).payload(payload))
        .map_err(|(error, _)| error)
        .expect("enqueued");
    producer.flush(Duration::from_secs(10)).expect("delivered");
}

async fn ban(node: &TestServer, user_id: &str) {
    let path = format!("/api/v1/admin/users/{user_id}/ban");
    let (status, body) = admin(node, "PUT", &path, Some(json!({"reason": "spam"}))).await;
    assert_eq!(status, 200, "{body}");
}

/// Records on `topic`, all partitions.
async fn records_on(brokers: &str, topic: &str) -> i64 {
    watermarks(brokers, &[topic])
        .await
        .values()
        .map(|(low, high)| high - low)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_goes_through_its_topic_and_ingest_into_mongodb() {
    let mut cluster = DurableCluster::start("parley_e2e_audit_log", 2, &[ADMIN_ENV]).await;
    let brokers = cluster.tansu.brokers();
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);

    // An admin call on A, a member add, an admin call on B, a refused call on B.
    let mut alice = a.connect("alice").await;
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    send(&mut alice, &conversation, "m1", "secret words").await;
    ban(a, "mallory").await;
    alice
        .ok(
            "conversation.add_members",
            json!({"conversation_id": conversation, "user_ids": ["carol"]}),
        )
        .await;
    let (status, _) = admin(b, "DELETE", "/api/v1/admin/users/mallory/ban", None).await;
    assert_eq!(status, 200);
    let refused = b
        .http(
            "POST",
            "/api/v1/admin/users/mallory/disconnect",
            &[("X-Admin-Key", "wrong-key-0123456789")],
            None,
        )
        .await
        .expect("refused call");
    assert_eq!(refused.0, 401);

    let want = [
        "conversation.create",
        "admin.ban",
        "conversation.add_members",
        "admin.unban",
        "admin.disconnect",
    ];
    let documents = wait_for_documents(&cluster.db, "audit", doc! {}, "five records", |found| {
        stored_actions(found).len() >= want.len()
    })
    .await;
    assert!(
        documents
            .iter()
            .all(|document| !document.to_string().contains("secret words")),
        "no message text in the audit log: {documents:#?}"
    );
    let ordered = audit_documents(&cluster).await;
    assert_eq!(stored_actions(&ordered), want, "in the order of the calls");
    let unban = wait_stored(&cluster, "admin.unban", "user:mallory").await;
    assert_eq!(unban.get_str("actor"), Ok("admin"));
    let add = wait_stored(
        &cluster,
        "conversation.add_members",
        &format!("conversation:{conversation}"),
    )
    .await;
    assert_eq!(add.get_str("actor"), Ok("alice"));
    let refused = wait_stored(
        &cluster,
        "admin.disconnect",
        "/api/v1/admin/users/mallory/disconnect",
    )
    .await;
    assert_eq!(refused.get_str("actor"), Ok("unknown"));

    // Either node answers the query from MongoDB, in the same order.
    let (status, page) = admin(a, "GET", "/api/v1/admin/audit?actor=admin", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(actions(&page), ["admin.ban", "admin.unban"]);

    // With ingest stopped (once it stored everything, the query above included) a new record
    // reaches the topic but not MongoDB…
    wait_caught_up(&brokers, AUDIT_GROUP, &[AUDIT_TOPIC], PIPELINE_WAIT).await;
    cluster.ingest.terminate();
    let stopped = cluster
        .ingest
        .exited_within(Duration::from_secs(20))
        .await
        .expect("ingest exits on SIGTERM");
    assert!(stopped.success(), "{stopped}");
    let on_topic = records_on(&brokers, AUDIT_TOPIC).await;
    ban(b, "eve").await;
    assert_eq!(records_on(&brokers, AUDIT_TOPIC).await, on_topic + 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let eve = doc! { "target": "user:eve" };
    assert!(
        find_all(&cluster.db, "audit", eve.clone(), doc! {})
            .await
            .is_empty(),
        "only ingest writes the audit collection"
    );
    // … and is stored once ingest runs again, which here reads the whole topic again (its
    // offsets reset, as after a crash before a commit), plus one record produced twice: every
    // record is still stored once.
    let before = audit_documents(&cluster).await;
    let copy = before
        .last()
        .expect("records")
        .get_str("record")
        .expect("record");
    produce(&brokers, AUDIT_TOPIC, "admin", copy.as_bytes());
    reset_group_offsets(&brokers, AUDIT_GROUP, &[AUDIT_TOPIC]).await;
    cluster.ingest.restart().await;
    wait_stored(&cluster, "admin.ban", "user:eve").await;
    wait_caught_up(&brokers, AUDIT_GROUP, &[AUDIT_TOPIC], PIPELINE_WAIT).await;
    let after = audit_documents(&cluster).await;
    assert_eq!(
        after.len(),
        before.len() + 1,
        "redelivered records stored once: {before:#?} then {after:#?}"
    );

    // A malformed record is set aside in the dead-letter topic; the next one is stored.
    let dead_before = records_on(&brokers, DEAD_LETTER_TOPIC).await;
    produce(&brokers, AUDIT_TOPIC, "admin", b"{not an audit record");
    ban(a, "trudy").await;
    wait_stored(&cluster, "admin.ban", "user:trudy").await;
    let dead_after = records_on(&brokers, DEAD_LETTER_TOPIC).await;
    assert_eq!(dead_after, dead_before + 1, "one record dead-lettered");
    let dead = cluster
        .ingest
        .metric("parley_ingest_audit_dead_letters_total")
        .await;
    assert_eq!(dead, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_record_the_brokers_do_not_take_is_counted_lost_and_the_call_answered() {
    let cluster = DurableCluster::start_with(
        "parley_e2e_audit_lost",
        1,
        &[("PARLEY__KAFKA__MESSAGE_TIMEOUT_MS", "1000")],
        &[ADMIN_ENV],
    )
    .await;
    let node = &cluster.nodes[0];
    let lost = || common::metric(node, "parley_audit_records_lost_total");
    assert_eq!(lost().await, 0.0);
    cluster.tansu.stop();
    let (status, body) = node
        .http(
            "PUT",
            "/api/v1/admin/users/mallory/ban",
            &[("X-Admin-Key", ADMIN_KEY)],
            Some(&json!({"reason": "spam"})),
        )
        .await
        .expect("ban");
    assert_eq!(
        status, 200,
        "the ban holds without its audit record: {body}"
    );
    assert_eq!(lost().await, 1.0);
}
