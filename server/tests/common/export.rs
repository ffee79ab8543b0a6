//! Exports in the end-to-end tests (docs/protocol.md §18): a user with a bit of everything,
//! starting an export, waiting for its job and reading the file it links to.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::admin::{admin, final_job};
use super::attachments::{fetch, file_of, upload};
use super::seaweedfs::{SeaweedServer, ACCESS_KEY, BUCKET, SECRET_KEY};
use super::{create_conversation, send, Client, TestServer};

/// What alice's export must hold, besides its line counts.
pub struct AliceData {
    pub conversation_id: String,
    pub attachment_id: String,
    /// The seq of bob's message alice reacted to and read up to.
    pub bobs_seq: u64,
    pub deleted_message_id: String,
}

/// The line counts by type of alice's export.
pub fn alice_counts() -> BTreeMap<String, usize> {
    [
        ("conversation", 1),
        ("membership", 1),
        ("message", 3),
        ("reaction", 1),
        ("receipt", 1),
    ]
    .into_iter()
    .map(|(kind, count)| (kind.to_owned(), count))
    .collect()
}

/// Text that belongs to other users (or to no export of alice's).
pub const NOT_ALICES: [&str; 3] = ["bob secret", "not for alice", "🎉"];

/// Alice, in a group with bob, sends two texts and one with a file, deletes one, reacts to
/// bob's message and reads it; bob reacts to hers; bob and carol talk without her. `upload_node`
/// takes alice's file.
pub async fn alice_does_everything(
    upload_node: &TestServer,
    alice: &mut Client,
    bob: &mut Client,
) -> AliceData {
    let conversation_id = create_conversation(alice, "group", &["bob"]).await;
    send(alice, &conversation_id, "a1", "alice one").await;
    let deleted = send(alice, &conversation_id, "a2", "alice two").await;
    let token = upload_node.token("alice").await;
    let attachment_id = upload(upload_node, &token, "notes.png", &file_of(2048, 5)).await;
    let with_file = json!({ "conversation_id": conversation_id, "client_msg_id": "a3",
                            "text": "alice with file", "attachments": [attachment_id] });
    alice.ok("message.send", with_file).await;
    let bobs = send(bob, &conversation_id, "b1", "bob secret").await;
    let bobs_seq = bobs["seq"].as_u64().expect("seq");
    let on_bobs = json!({ "conversation_id": conversation_id, "message_id": bobs["message_id"], "emoji": "👍" });
    alice.ok("reaction.add", on_bobs).await;
    let on_alices = json!({ "conversation_id": conversation_id, "message_id": deleted["message_id"], "emoji": "🎉" });
    bob.ok("reaction.add", on_alices).await;
    let deletion =
        json!({ "conversation_id": conversation_id, "message_id": deleted["message_id"] });
    alice.ok("message.delete", deletion).await;
    let read = json!({ "conversation_id": conversation_id, "seq": bobs_seq });
    alice.ok("receipt.read", read).await;
    let elsewhere = create_conversation(bob, "direct", &["carol"]).await;
    send(bob, &elsewhere, "b2", "not for alice").await;
    AliceData {
        conversation_id,
        attachment_id,
        bobs_seq,
        deleted_message_id: deleted["message_id"].as_str().expect("id").to_owned(),
    }
}

/// The settings of nodes that keep files and exports in `seaweed`'s bucket.
pub fn s3_settings(seaweed: &SeaweedServer) -> Vec<(&'static str, String)> {
    vec![
        ("PARLEY__ATTACHMENTS__STORE", "s3".to_owned()),
        ("PARLEY__ATTACHMENTS__S3_ENDPOINT", seaweed.endpoint()),
        ("PARLEY__ATTACHMENTS__S3_BUCKET", BUCKET.to_owned()),
        ("PARLEY__ATTACHMENTS__S3_ACCESS_KEY", ACCESS_KEY.to_owned()),
        ("PARLEY__ATTACHMENTS__S3_SECRET_KEY", SECRET_KEY.to_owned()),
    ]
}

/// `settings` as the harness takes them.
pub fn as_env<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    settings
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect()
}

/// `POST .../users/{user}/export` at `node`: the job id.
pub async fn start_export(node: &TestServer, user: &str) -> String {
    let path = format!("/api/v1/admin/users/{user}/export");
    let (status, body) = admin(node, "POST", &path, None).await;
    assert_eq!(status, 202, "{body}");
    body["job_id"].as_str().expect("job_id").to_owned()
}

/// Polls the export job at `node` until it is final: its last answer. Every answer before is
/// `running`.
pub async fn finished_job(node: &TestServer, job_id: &str, limit: Duration) -> Value {
    final_job(node, job_id, "export", limit).await
}

/// The file at the job's `download_url`, one JSON value per line.
pub async fn download_lines(job: &Value) -> Vec<Value> {
    let url = job["download_url"].as_str().expect("download_url");
    let bytes = fetch(url).await.expect("the file downloads");
    let text = String::from_utf8(bytes).expect("utf-8");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

pub fn counts(lines: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        let kind = line["type"].as_str().expect("type").to_owned();
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

/// Exports alice until her file holds all she did (the store follows the log a moment
/// behind: her last acts, the deletion and the read receipt, may not be in it yet): the
/// finished job and its lines.
pub async fn alice_export(
    node: &TestServer,
    data: &AliceData,
    limit: Duration,
) -> (Value, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let job_id = start_export(node, "alice").await;
        let job = finished_job(node, &job_id, limit).await;
        assert_eq!(job["state"], "done", "{job}");
        let lines = download_lines(&job).await;
        if holds_alices_last_acts(&lines, data) || tokio::time::Instant::now() > deadline {
            return (job, lines);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the file has every line of alice's, her deletion and her receipt.
fn holds_alices_last_acts(lines: &[Value], data: &AliceData) -> bool {
    let of_type = |kind: &'static str| lines.iter().filter(move |line| line["type"] == kind);
    counts(lines) == alice_counts()
        && of_type("message").any(|line| line["deleted"] == true)
        && of_type("receipt").any(|line| line["read_seq"] == data.bobs_seq)
}

/// The file holds exactly alice's data: the counts, her texts and file, the deleted message
/// without text, her reaction and receipt, nothing of anyone else's.
pub fn assert_alices_file(lines: &[Value], data: &AliceData) {
    assert_eq!(counts(lines), alice_counts(), "{lines:#?}");
    let of_type = |kind: &'static str| lines.iter().filter(move |line| line["type"] == kind);
    let texts: Vec<&str> = of_type("message")
        .filter_map(|line| line["text"].as_str())
        .collect();
    assert_eq!(texts, ["alice one", "alice with file"]);
    let deleted = of_type("message")
        .find(|line| line["deleted"] == true)
        .expect("the deleted message");
    assert_eq!(deleted["message_id"], data.deleted_message_id.as_str());
    assert!(deleted.get("text").is_none(), "{deleted}");
    let with_file = of_type("message")
        .find(|line| line["text"] == "alice with file")
        .expect("the message with a file");
    assert_eq!(
        with_file["attachments"],
        json!([{ "attachment_id": data.attachment_id, "name": "notes.png",
                 "content_type": "image/png", "size": 2048 }])
    );
    let reaction = of_type("reaction").next().expect("reaction");
    assert_eq!(
        (&reaction["emoji"], &reaction["seq"]),
        (&json!("👍"), &json!(data.bobs_seq))
    );
    let receipt = of_type("receipt").next().expect("receipt");
    assert_eq!(receipt["read_seq"], data.bobs_seq, "{receipt}");
    assert_eq!(
        of_type("conversation").next().expect("conversation")["conversation_id"],
        data.conversation_id.as_str()
    );
    let whole = serde_json::to_string(lines).expect("json");
    for other in NOT_ALICES {
        assert!(!whole.contains(other), "{other:?} is not alice's: {whole}");
    }
}

/// The actions of the audit records of job `job_id` of `user`, oldest first.
pub async fn job_actions(node: &TestServer, user: &str, job_id: &str) -> Vec<String> {
    export_records(node, user)
        .await
        .into_iter()
        .filter(|(_, details)| details["job_id"] == job_id)
        .map(|(action, _)| action)
        .collect()
}

/// `url` with its last character (the signature's, in local and S3 URLs) changed.
fn tampered(url: &str) -> String {
    let mut tampered = url.to_owned();
    let last = tampered.pop().expect("a url");
    tampered.push(if last == '0' { '1' } else { '0' });
    tampered
}

/// A download link refuses a changed signature at once, and itself once `ttl` has passed.
pub async fn assert_link_refused_when_tampered_or_expired(url: &str, ttl: Duration) {
    assert_eq!(
        fetch(&tampered(url)).await.err(),
        Some(403),
        "a bad signature"
    );
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    assert_eq!(fetch(url).await.err(), Some(403), "an expired link");
}

/// The `action` of each audit record of `user`'s exports (`export.*`), oldest first, with
/// their details.
pub async fn export_records(node: &TestServer, user: &str) -> Vec<(String, Value)> {
    let path = format!("/api/v1/admin/audit?target=user:{user}&limit=1000");
    let (status, page) = admin(node, "GET", &path, None).await;
    assert_eq!(status, 200, "{page}");
    page["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|record| {
            record["action"]
                .as_str()
                .is_some_and(|action| action.starts_with("export."))
        })
        .map(|record| {
            (
                record["action"].as_str().unwrap().to_owned(),
                record["details"].clone(),
            )
        })
        .collect()
}

/// Sends `count` messages (texts `bulk <n>`) to `conversation_id`, `WINDOW` requests in flight
/// at a time: a user with much to export. Events that arrive meanwhile are dropped.
pub async fn send_many(client: &mut Client, conversation_id: &str, count: usize) {
    const WINDOW: usize = 50;
    for first in (0..count).step_by(WINDOW) {
        let mut waiting = std::collections::HashSet::new();
        for index in first..(first + WINDOW).min(count) {
            let id = client.next_id;
            client.next_id += 1;
            let args = json!({ "conversation_id": conversation_id,
                               "client_msg_id": format!("bulk-{index}"), "text": format!("bulk {index}") });
            let request = json!({ "id": id, "op": "message.send", "args": args });
            client.send_text(request.to_string()).await;
            waiting.insert(id);
        }
        while !waiting.is_empty() {
            let frame = client.next_frame().await;
            if frame.get("ev").is_some() {
                continue;
            }
            assert!(frame.get("result").is_some(), "a send failed: {frame}");
            let id = frame["re"].as_i64().expect("re");
            assert!(waiting.remove(&id), "an unexpected reply: {frame}");
        }
    }
}
