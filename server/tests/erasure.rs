//! Erasure (docs/protocol.md, "Compliance"): `POST /api/v1/admin/users/{user_id}/erase` runs
//! a job that deletes the user's messages (seq kept) and their reactions, receipts,
//! memberships and files from every store, cache and index, except in conversations on legal
//! hold, which the job lists as held back. Members online see `message.deleted`.

mod common;

use std::time::Duration;

use common::admin::{admin, ADMIN_ENV};
use common::durable::{find_all, wait_for_documents, DurableCluster};
use common::{create_conversation, send, Client, TestServer, ABSENT, WAIT};
use mongodb::bson::doc;
use persistence::EmbeddedStore;
use ports::{MessageQuery, Store};
use serde_json::{json, Value};
use wire::{ConversationId, UserId};

/// A word only erin's messages say.
const SECRET: &str = "quixoticpangolin";

/// Asks for erin's erasure; returns the job id.
async fn erase(server: &TestServer, user: &str) -> String {
    let path = format!("/api/v1/admin/users/{user}/erase");
    let (status, body) = admin(server, "POST", &path, None).await;
    assert_eq!(status, 202, "{body}");
    body["job_id"].as_str().expect("job_id").to_owned()
}

/// The job once it is done.
async fn finished_job(server: &TestServer, job_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let (status, job) =
            admin(server, "GET", &format!("/api/v1/admin/jobs/{job_id}"), None).await;
        assert_eq!(status, 200, "{job}");
        if job["state"] != "running" {
            assert_eq!(job["state"], "done", "{job}");
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never finished: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What erin leaves behind before her erasure: in `open`, two messages (one with a file, when
/// the node keeps files), a
/// reaction on bob's and a read receipt; in `held`, one message. Returns erin's message ids in
/// `open`.
async fn erin_talks(
    erin: &mut Client,
    bob: &mut Client,
    open: &str,
    held: &str,
    attachment: Option<&str>,
) -> Vec<String> {
    let bobs = send(bob, open, "bob-1", "hello erin").await;
    let bobs_id = bobs["message_id"].as_str().unwrap().to_owned();
    let with_file = erin
        .ok(
            "message.send",
            json!({"conversation_id": open, "client_msg_id": "erin-1",
                "text": format!("{SECRET} with a file"), "attachments": attachment.into_iter().collect::<Vec<_>>()}),
        )
        .await;
    let plain = send(erin, open, "erin-2", &format!("{SECRET} again")).await;
    erin.ok(
        "reaction.add",
        json!({"conversation_id": open, "message_id": bobs_id, "emoji": "👍"}),
    )
    .await;
    erin.ok("receipt.read", json!({"conversation_id": open, "seq": 3}))
        .await;
    send(erin, held, "erin-held", &format!("{SECRET} kept")).await;
    [with_file, plain]
        .iter()
        .map(|ack| ack["message_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The conversations of the hits of `SECRET`, once there are `want`.
async fn secret_hits(client: &mut Client, want: usize) -> Vec<String> {
    common::hit_conversations(client, SECRET, want).await
}

/// `message.deleted` for each of `ids`, in any order.
async fn deleted_events(client: &mut Client, ids: &[String]) {
    let mut seen = Vec::new();
    for _ in ids {
        let event = client.event("message.deleted").await;
        seen.push(event["message_id"].as_str().unwrap().to_owned());
    }
    seen.sort();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn erasure_forgets_a_user_on_a_standalone_node_except_under_legal_hold() {
    let mut server = TestServer::start_with(&[ADMIN_ENV]).await;
    let token = server.token("erin").await;
    let mut erin = server.connect("erin").await;
    let mut bob = server.connect("bob").await;
    let open = create_conversation(&mut erin, "group", &["bob"]).await;
    let held = create_conversation(&mut erin, "group", &["bob"]).await;
    let file = common::attachments::file_of(1000, 9);
    let attachment = common::attachments::upload(&server, &token, "secret.png", &file).await;
    let erins = erin_talks(&mut erin, &mut bob, &open, &held, Some(&attachment)).await;
    let former = create_conversation(&mut erin, "group", &["bob"]).await;
    let before_leaving = send(&mut erin, &former, "erin-former", SECRET).await;
    erin.ok("conversation.leave", json!({"conversation_id": former}))
        .await;
    bob.event("member.left").await;
    secret_hits(&mut bob, 4).await;
    let hold = format!("/api/v1/admin/conversations/{held}/legal_hold");
    let (status, _) = admin(&server, "PUT", &hold, Some(json!({"on": true}))).await;
    assert_eq!(status, 200);

    let job_id = erase(&server, "erin").await;
    let mut deleted = erins.clone();
    deleted.push(before_leaving["message_id"].as_str().unwrap().to_owned());
    deleted_events(&mut bob, &deleted).await;
    let left = bob.event("member.left").await;
    assert_eq!(
        (&left["conversation_id"], &left["user_ids"]),
        (&json!(open), &json!(["erin"]))
    );
    let job = finished_job(&server, &job_id).await;
    assert_eq!(
        (&job["kind"], &job["held_back"]),
        (&json!("erasure"), &json!([held])),
        "{job}"
    );
    assert_eq!(erin.closed().await.code, 4003, "erin's session is closed");

    let history = bob
        .ok("history.get", json!({"conversation_id": open, "limit": 10}))
        .await;
    let summary: Vec<(u64, bool, String, Value)> = (history["messages"].as_array().unwrap())
        .iter()
        .map(|message| {
            let text = message["text"].as_str().unwrap().to_owned();
            (
                message["seq"].as_u64().unwrap(),
                message["deleted"] == true,
                text,
                message["reactions"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, false, "hello erin".to_owned(), json!({})),
            (2, true, String::new(), json!({})),
            (3, true, String::new(), json!({})),
        ],
        "{history}"
    );
    common::hits_become(&mut bob, SECRET, &[held.as_str()]).await;
    assert_eq!(
        common::attachments::download(&server, &token, &attachment).await,
        Err(404),
        "erin's file is gone"
    );
    let blob = server
        .data_dir()
        .join(format!("blobs/attachments/{attachment}/blob"));
    assert!(!blob.exists(), "{} still exists", blob.display());

    let again = erase(&server, "erin").await;
    let job = finished_job(&server, &again).await;
    assert_eq!(
        job["held_back"],
        json!([held]),
        "a second run holds back the same"
    );
    bob.no_event("message.deleted", ABSENT).await;
    assert_eq!(
        common::metric(&server, "parley_erasure_messages_total").await,
        3.0
    );

    let path = "/api/v1/admin/audit?target=user:erin";
    let (_, page) = admin(&server, "GET", path, None).await;
    let steps: Vec<&str> = common::admin::actions(&page)
        .into_iter()
        .filter(|action| action.contains("eras"))
        .collect();
    assert_eq!(
        steps,
        [
            "admin.erase_user",
            "erasure.completed",
            "admin.erase_user",
            "erasure.completed"
        ],
        "{page}"
    );
    let path =
        format!("/api/v1/admin/audit?action=erasure.conversation&target=conversation:{held}");
    let (_, page) = admin(&server, "GET", &path, None).await;
    assert_eq!(page["records"][0]["details"]["held_back"], true, "{page}");
    assert_eq!(page["records"][0]["actor"], "admin", "{page}");

    server.terminate();
    assert!(server.exited_within(WAIT).await, "the node stops");
    let store = EmbeddedStore::open(&server.data_dir().join("store.redb")).expect("open the store");
    assert_eq!(stored_secrets(&store, &open).await, Vec::<String>::new());
    assert_eq!(
        stored_secrets(&store, &former).await,
        Vec::<String>::new(),
        "also where erin had left"
    );
    assert_eq!(
        stored_secrets(&store, &held).await,
        [format!("{SECRET} kept")]
    );
    let marks = store
        .watermarks(&ConversationId::new(&open), &UserId::new("erin"))
        .await
        .expect("watermarks");
    assert_eq!(
        marks,
        ports::Watermarks::default(),
        "erin's receipts are gone"
    );
}

/// The texts of the conversation's stored messages that hold `SECRET`.
async fn stored_secrets(store: &EmbeddedStore, conversation: &str) -> Vec<String> {
    let query = MessageQuery {
        after_seq: None,
        before_seq: None,
        limit: 100,
    };
    let records = store
        .messages(&ConversationId::new(conversation), query)
        .await
        .expect("read the store");
    (records.into_iter())
        .map(|record| record.message.text)
        .filter(|text| text.contains(SECRET))
        .collect()
}

/// What the cluster's Redis message cache holds for `conversation` (every cached version).
fn cached_texts(cluster: &DurableCluster, conversation: &str) -> String {
    let output = std::process::Command::new("redis-cli")
        .args([
            "-u",
            &cluster.redis.url(),
            "HVALS",
            &format!("parley:cache:{conversation}"),
        ])
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until the only MongoDB message document holding `SECRET` anywhere is the one in
/// `held` (ingest trails the job).
async fn mongo_secrets_only_in(cluster: &DurableCluster, held: &str) {
    let holding = doc! {"$or": [{"text": {"$regex": SECRET}}, {"record": {"$regex": SECRET}}]};
    wait_for_documents(
        &cluster.db,
        "messages",
        holding,
        "secrets only held",
        |found| found.len() == 1 && found[0].get_str("conversation_id") == Ok(held),
    )
    .await;
}

/// Waits until the erasure job has saved a cursor and is not done: the moment to kill its node.
/// Polls every 10 ms: the whole job took 115 ms once, between two polls 100 ms apart.
async fn job_in_progress(db: &mongodb::Database) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let jobs = find_all(db, "jobs", doc! {"kind": "erasure"}, doc! {}).await;
        let state = |job: &mongodb::bson::Document| job.get_str("state").unwrap_or("").to_owned();
        let saved_cursor = |job: &mongodb::bson::Document| {
            job.get_str("job")
                .is_ok_and(|job| job.contains("\"cursor\":\"{"))
        };
        if jobs
            .iter()
            .any(|job| saved_cursor(job) && state(job) != "done")
        {
            return;
        }
        assert!(
            !jobs.iter().any(|job| state(job) == "done"),
            "the job was done before the test saw it in progress (too few conversations for \
             this machine's speed?): {jobs:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress saved within {WAIT:?}: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Erin in `count` more groups with bob, one message in each: a job long enough to be killed.
async fn many_conversations(erin: &mut Client, count: usize) {
    for index in 0..count {
        let conversation = create_conversation(erin, "group", &["bob"]).await;
        send(
            erin,
            &conversation,
            &format!("more-{index}"),
            &format!("{SECRET} {index}"),
        )
        .await;
    }
}

#[tokio::test]
async fn erasure_survives_a_kill_of_its_node_in_a_durable_cluster() {
    let mut cluster = DurableCluster::start("parley_e2e_erasure", 2, &[ADMIN_ENV]).await;
    let mut erin = cluster.nodes[0].connect("erin").await;
    let mut bob = cluster.nodes[1].connect("bob").await;
    let open = create_conversation(&mut erin, "group", &["bob"]).await;
    let held = create_conversation(&mut erin, "group", &["bob"]).await;
    let erins = erin_talks(&mut erin, &mut bob, &open, &held, None).await;
    // 3 + MORE hits: search's default limit (20) caps it.
    const MORE: usize = 17;
    many_conversations(&mut erin, MORE).await;
    secret_hits(&mut bob, 3 + MORE).await;
    let in_open = doc! {"conversation_id": &open};
    wait_for_documents(&cluster.db, "messages", in_open, "3 messages", |found| {
        found.len() == 3
    })
    .await;
    assert!(cached_texts(&cluster, &open).contains(SECRET));
    let hold = format!("/api/v1/admin/conversations/{held}/legal_hold");
    let (status, _) = admin(&cluster.nodes[1], "PUT", &hold, Some(json!({"on": true}))).await;
    assert_eq!(status, 200);

    let job_id = erase(&cluster.nodes[0], "erin").await;
    deleted_events(&mut bob, &erins).await;
    job_in_progress(&cluster.db).await;
    cluster.nodes[0].kill9();
    let job = finished_job(&cluster.nodes[1], &job_id).await;
    assert_eq!(job["held_back"], json!([held]), "{job}");
    let taken_over = common::metric(&cluster.nodes[1], "parley_erasure_conversations_total").await;
    assert!(
        taken_over > 0.0,
        "node B finished the job of the killed node A"
    );
    cluster.nodes[0].restart().await;

    mongo_secrets_only_in(&cluster, &held).await;
    assert!(
        !cached_texts(&cluster, &open).contains(SECRET),
        "the cache forgot erin's words"
    );
    common::hits_become(&mut bob, SECRET, &[held.as_str()]).await;
    // Node A's index catches up on the log after its restart: it may pass through other
    // answers (another conversation's secret indexed before its erasure) on the way.
    let mut bob_on_a = cluster.nodes[0].connect("bob").await;
    common::hits_become(&mut bob_on_a, SECRET, &[held.as_str()]).await;
    let erins_marks = doc! {"conversation_id": &open, "user_id": "erin"};
    wait_for_documents(
        &cluster.db,
        "participants",
        erins_marks,
        "erin gone",
        |found| found.is_empty(),
    )
    .await;

    let mut bob_again = cluster.nodes[1].connect("bob").await;
    let again = erase(&cluster.nodes[0], "erin").await;
    finished_job(&cluster.nodes[0], &again).await;
    bob_again.no_event("message.deleted", ABSENT).await;
    mongo_secrets_only_in(&cluster, &held).await;
    let audit = wait_for_documents(
        &cluster.db,
        "audit",
        doc! {"target": "user:erin", "action": {"$regex": "eras"}},
        "both runs",
        |found| found.len() == 4,
    )
    .await;
    let mut steps: Vec<(String, &str, &str)> = (audit.iter())
        .map(|record| {
            let id = record.get_str("_id").map(str::to_owned).unwrap_or_default();
            (
                id,
                record.get_str("action").unwrap(),
                record.get_str("actor").unwrap(),
            )
        })
        .collect();
    steps.sort();
    let actions: Vec<(&str, &str)> = steps
        .iter()
        .map(|(_, action, actor)| (*action, *actor))
        .collect();
    assert_eq!(
        actions,
        [
            ("admin.erase_user", "admin"),
            ("erasure.completed", "admin"),
            ("admin.erase_user", "admin"),
            ("erasure.completed", "admin"),
        ]
    );
}
