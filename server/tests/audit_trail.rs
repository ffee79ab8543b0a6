//! The acceptance line of issue 17, "the audit log lists every step above, in order, with actor
//! and target", on a durable cluster (two nodes, Redis, Tansu, SecantusDB, ingest, S3): every
//! admin step of the issue, spread over both nodes, then the audit log as the admin query API
//! answers it and as MongoDB's `audit` collection holds it. No record holds message text.

mod common;

use common::admin::{admin, final_job, ADMIN_ENV};
use common::durable::{find_all, DurableCluster, PIPELINE_WAIT};
use common::export::{as_env, s3_settings, start_export};
use common::seaweedfs::SeaweedServer;
use common::{create_conversation, send, TestServer};
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

/// A word only the messages say: no audit record may hold it.
const PLANTED: &str = "zyzzyvabrouhaha";

/// Records the test does not count: every connection issues a token, every poll reads a job or
/// the log.
const UNCOUNTED: [&str; 3] = ["token.issue", "admin.read_job", "admin.read_audit"];

/// One audit record as the test compares it: action, actor, target.
type Step = (String, String, String);

fn step(action: &str, actor: &str, target: &str) -> Step {
    (action.to_owned(), actor.to_owned(), target.to_owned())
}

/// The counted steps of `records` (each with `action`, `actor`, `target`), in their order;
/// a node's actor (`node:<id>`) reads `node`.
fn counted_steps<'a>(records: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> Vec<Step> {
    records
        .filter(|(action, _, _)| !UNCOUNTED.contains(action))
        .map(|(action, actor, target)| {
            let actor = if actor.starts_with("node:") {
                "node"
            } else {
                actor
            };
            step(action, actor, target)
        })
        .collect()
}

/// The audit page of the whole log (oldest first) as the admin API answers it at `node`.
async fn audit_page(node: &TestServer) -> Value {
    let (status, page) = admin(node, "GET", "/api/v1/admin/audit?limit=1000", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["next_cursor"], Value::Null, "one page: {page}");
    page
}

fn page_steps(page: &Value) -> Vec<Step> {
    let records = page["records"].as_array().expect("records");
    counted_steps(records.iter().map(|record| {
        let field = |name: &str| record[name].as_str().expect("a text field");
        (field("action"), field("actor"), field("target"))
    }))
}

fn document_steps(documents: &[Document]) -> Vec<Step> {
    counted_steps(documents.iter().map(|document| {
        let field = |name: &str| document.get_str(name).expect("a text field");
        (field("action"), field("actor"), field("target"))
    }))
}

/// The audit page at `node` once it lists `count` counted steps (ingest stores them a moment
/// after the calls).
async fn audit_page_with(node: &TestServer, count: usize) -> Value {
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    loop {
        let page = audit_page(node).await;
        if page_steps(&page).len() >= count {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {count} records: {page:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// An admin call with the admin key that must answer `status`.
async fn call(node: &TestServer, method: &str, path: &str, body: Option<Value>, status: u16) {
    let (answered, answer) = admin(node, method, path, body).await;
    assert_eq!(answered, status, "{method} {path}: {answer}");
}

/// `POST .../users/{user}/erase` at `node`: the job id.
async fn start_erasure(node: &TestServer, user: &str) -> String {
    let path = format!("/api/v1/admin/users/{user}/erase");
    let (status, body) = admin(node, "POST", &path, None).await;
    assert_eq!(status, 202, "{body}");
    body["job_id"].as_str().expect("job_id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_lists_every_admin_step_in_order_with_actor_and_target() {
    let seaweed = SeaweedServer::start();
    let s3 = s3_settings(&seaweed);
    let mut settings = as_env(&s3);
    settings.push(ADMIN_ENV);
    let cluster = DurableCluster::start("parley_e2e_audit_trail", 2, &settings).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let _bob = b.connect("bob").await;
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    let planted = send(&mut alice, &conversation, "p1", &format!("{PLANTED} one")).await;
    send(&mut alice, &conversation, "p2", &format!("{PLANTED} two")).await;
    let message_id = planted["message_id"].as_str().expect("message_id");

    let wrong_key = [("X-Admin-Key", "wrong-key-0123456789")];
    let refused_path = "/api/v1/admin/users/bob/disconnect";
    let refused = a.http("POST", refused_path, &wrong_key, None).await;
    assert_eq!(refused.expect("refused call").0, 401);
    call(b, "POST", "/api/v1/admin/users/bob/disconnect", None, 200).await;
    let ban = Some(json!({"reason": "spam"}));
    call(a, "PUT", "/api/v1/admin/users/mallory/ban", ban, 200).await;
    call(b, "DELETE", "/api/v1/admin/users/mallory/ban", None, 200).await;
    call(
        a,
        "POST",
        "/api/v1/admin/users/bob/revoke_tokens",
        None,
        200,
    )
    .await;
    let message_path = format!("/api/v1/admin/conversations/{conversation}/messages/{message_id}");
    call(b, "DELETE", &message_path, None, 200).await;
    let retention = format!("/api/v1/admin/conversations/{conversation}/retention");
    call(a, "PUT", &retention, Some(json!({"days": 30})), 200).await;
    let hold = format!("/api/v1/admin/conversations/{conversation}/legal_hold");
    call(b, "PUT", &hold, Some(json!({"on": true})), 200).await;
    call(a, "PUT", &hold, Some(json!({"on": false})), 200).await;
    let export = start_export(a, "alice").await;
    let exported = final_job(b, &export, "export", PIPELINE_WAIT).await;
    assert_eq!(exported["state"], "done", "{exported}");
    let erasure = start_erasure(b, "alice").await;
    let erased = final_job(a, &erasure, "erasure", PIPELINE_WAIT).await;
    assert_eq!(erased["state"], "done", "{erased}");

    let on_conversation = format!("conversation:{conversation}");
    let want = [
        step("conversation.create", "alice", &on_conversation),
        step("admin.disconnect", "unknown", refused_path),
        step("admin.disconnect", "admin", "user:bob"),
        step("admin.ban", "admin", "user:mallory"),
        step("admin.unban", "admin", "user:mallory"),
        step("admin.revoke_tokens", "admin", "user:bob"),
        step(
            "admin.delete_message",
            "admin",
            &format!("message:{conversation}/{message_id}"),
        ),
        step("admin.set_retention", "admin", &on_conversation),
        step("admin.set_legal_hold", "admin", &on_conversation),
        step("admin.set_legal_hold", "admin", &on_conversation),
        step("admin.export", "admin", "user:alice"),
        step("export.requested", "admin", "user:alice"),
        step("export.done", "node", "user:alice"),
        step("admin.erase_user", "admin", "user:alice"),
        step("erasure.conversation", "admin", &on_conversation),
        step("erasure.completed", "admin", "user:alice"),
    ];
    let page = audit_page_with(a, want.len()).await;
    assert_eq!(page_steps(&page), want, "the admin API: {page:#}");
    let holds: Vec<&Value> = (page["records"].as_array().expect("records").iter())
        .filter(|record| record["action"] == "admin.set_legal_hold")
        .map(|record| &record["details"]["legal_hold"])
        .collect();
    assert_eq!(holds, [true, false], "{page:#}");
    assert!(!page.to_string().contains(PLANTED), "text in {page:#}");

    let documents = find_all(&cluster.db, "audit", doc! {}, doc! { "_id": 1 }).await;
    assert_eq!(document_steps(&documents), want, "MongoDB: {documents:#?}");
    for document in &documents {
        assert!(
            !document.to_string().contains(PLANTED),
            "text in {document}"
        );
    }
}
