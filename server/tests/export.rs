//! Exports of a user's data (docs/protocol.md §18): the file holds exactly the user's data,
//! the job goes running → done, the download link works without the admin key until it
//! expires, the audit log lists the request and the completion; a node restarted with an
//! unfinished export runs it again; the same in a durable cluster with S3 and MongoDB, where
//! another node finishes the export of a node killed mid-export; a file older than
//! `export.retain_files_secs` is deleted and its job says so. And
//! `GET /api/v1/admin/jobs/{job_id}` of an unknown job.

mod common;

use std::time::Duration;

use common::admin::{actions, admin, audit_listing, ADMIN_ENV};
use common::attachments::fetch;
use common::durable::{wait_for_count, DurableCluster, PIPELINE_WAIT};
use common::export::{
    alice_does_everything, alice_export, as_env, assert_alices_file,
    assert_link_refused_when_tampered_or_expired, counts, download_lines, export_records,
    finished_job, job_actions, s3_settings, send_many, start_export,
};
use common::seaweedfs::SeaweedServer;
use common::TestServer;
use mongodb::bson::doc;

const URL_TTL_SECS: u64 = 3;

#[tokio::test]
async fn an_export_holds_exactly_the_users_data_and_its_link_expires() {
    let ttl = URL_TTL_SECS.to_string();
    let server = TestServer::start_with(&[
        ADMIN_ENV,
        ("PARLEY__EXPORT__DOWNLOAD_URL_TTL_SECS", ttl.as_str()),
    ])
    .await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let data = alice_does_everything(&server, &mut alice, &mut bob).await;

    let (job, lines) = alice_export(&server, &data, common::WAIT).await;
    assert_alices_file(&lines, &data);
    let url = job["download_url"].as_str().expect("download_url");
    assert_link_refused_when_tampered_or_expired(url, Duration::from_secs(URL_TTL_SECS)).await;
    // Each read of the job signs a fresh link.
    let path = format!("/api/v1/admin/jobs/{}", job["job_id"].as_str().unwrap());
    let (_, again) = admin(&server, "GET", &path, None).await;
    assert_eq!(download_lines(&again).await, lines);

    let job_id = &job["job_id"];
    let job_id_text = job_id.as_str().expect("job_id");
    assert_eq!(
        job_actions(&server, "alice", job_id_text).await,
        ["export.requested", "export.done"]
    );
    let records = export_records(&server, "alice").await;
    let done = &records.last().expect("records").1;
    assert_eq!(done["counts"]["messages"], 3, "{done}");
    let (status, body) = admin(
        &server,
        "GET",
        "/api/v1/admin/audit?action=admin.export",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.to_string().contains(job_id.as_str().unwrap()),
        "{body}"
    );

    let (status, body) = admin(&server, "POST", "/api/v1/admin/users/%01/export", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &serde_json::json!("bad_request"))
    );
}

#[tokio::test]
async fn a_restarted_node_runs_its_unfinished_export_again() {
    let mut server =
        TestServer::start_with(&[ADMIN_ENV, ("PARLEY__SERVER__NODE_ID", "export-node")]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let data = alice_does_everything(&server, &mut alice, &mut bob).await;
    alice_export(&server, &data, common::WAIT).await;
    drop((alice, bob));

    // The node dies with an export running (recorded, never finished).
    server.kill9();
    let store_path = server.data_dir().join("store.redb");
    let job = ports::Job::start(
        ports::JobKind::Export,
        wire::UserId::new("alice"),
        wire::NodeId::new("export-node"),
    );
    let store = persistence::EmbeddedStore::open(&store_path).expect("open the node's store");
    ports::Jobs::create(&store, &job).await.expect("create");
    drop(store);
    server.restart().await;

    let finished = finished_job(&server, &job.job_id.to_string(), common::WAIT).await;
    assert_eq!(finished["state"], "done", "{finished}");
    assert_alices_file(&download_lines(&finished).await, &data);
    assert_eq!(
        job_actions(&server, "alice", &job.job_id.to_string()).await,
        ["export.restarted", "export.done"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_cluster_exports_from_mongodb_into_s3() {
    let seaweed = SeaweedServer::start();
    let endpoint = seaweed.endpoint();
    let ttl = URL_TTL_SECS.to_string();
    let mut s3 = s3_settings(&seaweed);
    s3.push(("PARLEY__EXPORT__DOWNLOAD_URL_TTL_SECS", ttl));
    let mut settings = as_env(&s3);
    settings.push(ADMIN_ENV);
    let cluster = DurableCluster::start("parley_e2e_export", 2, &settings).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let data = alice_does_everything(a, &mut alice, &mut bob).await;

    let (job, lines) = alice_export(a, &data, PIPELINE_WAIT).await;
    assert_alices_file(&lines, &data);
    // Node B answers about node A's job (MongoDB's `jobs`), with a link to the same S3 object.
    let job_id = job["job_id"].as_str().expect("job_id");
    let on_b = finished_job(b, job_id, common::WAIT).await;
    assert_eq!(download_lines(&on_b).await, lines);
    let url = on_b["download_url"].as_str().expect("download_url");
    assert!(url.starts_with(&endpoint), "straight from S3: {url}");
    assert_link_refused_when_tampered_or_expired(url, Duration::from_secs(URL_TTL_SECS)).await;

    assert_eq!(
        job_actions(b, "alice", job_id).await,
        ["export.requested", "export.done"]
    );
}

#[tokio::test]
async fn an_unknown_job_is_not_found_and_the_read_is_audited() {
    let server = TestServer::start_with(&[ADMIN_ENV]).await;
    let unknown = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    for job_id in [unknown, "not-a-uuid"] {
        let (status, body) = admin(
            &server,
            "GET",
            &format!("/api/v1/admin/jobs/{job_id}"),
            None,
        )
        .await;
        assert_eq!(status, 404, "{job_id}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{job_id}");
    }
    let (status, body) = server
        .http("GET", &format!("/api/v1/admin/jobs/{unknown}"), &[], None)
        .await
        .expect("request");
    assert_eq!(status, 401, "no admin key: {body}");

    let target = format!("job:{unknown}");
    let (_, page) = admin(
        &server,
        "GET",
        &format!("/api/v1/admin/audit?target={target}"),
        None,
    )
    .await;
    // The refused read is recorded under its path (it was refused before routing).
    assert_eq!(actions(&page), ["admin.read_job"], "{page}");
    assert_eq!(page["records"][0]["details"]["status"], 404);
    assert_eq!(page["records"][0]["actor"], "admin");
}

/// Messages alice sends before the export whose node is killed: enough for the export to
/// take a while (0.1–0.3 s seen). The node dies as soon as the request is answered: killed
/// 0.1 s after it, a run on a quick machine found the export already done.
const MANY: usize = 1200;

/// How long the export files of the cluster whose node is killed are kept, in seconds.
const RETAIN_FILES_SECS: &str = "5";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_durable_node_finishes_the_export_of_a_killed_node_then_its_file_expires() {
    let seaweed = SeaweedServer::start();
    let mut s3 = s3_settings(&seaweed);
    s3.push((
        "PARLEY__EXPORT__RETAIN_FILES_SECS",
        RETAIN_FILES_SECS.to_owned(),
    ));
    let mut settings = as_env(&s3);
    settings.push(ADMIN_ENV);
    let mut cluster = DurableCluster::start("parley_e2e_export_takeover", 2, &settings).await;
    let mut alice = cluster.nodes[1].connect("alice").await;
    let conversation = common::create_conversation(&mut alice, "group", &["bob"]).await;
    send_many(&mut alice, &conversation, MANY).await;
    let stored = doc! { "conversation_id": &conversation };
    wait_for_count(
        &cluster.db,
        "messages",
        stored,
        MANY as u64,
        PIPELINE_WAIT * 3,
    )
    .await;

    let job_id = start_export(&cluster.nodes[0], "alice").await;
    cluster.nodes[0].kill9();
    let b = &cluster.nodes[1];
    let path = format!("/api/v1/admin/jobs/{job_id}");
    let (_, job) = admin(b, "GET", &path, None).await;
    assert_eq!(job["state"], "running", "killed mid-export: {job}");

    let job = finished_job(b, &job_id, PIPELINE_WAIT).await;
    assert_eq!(job["state"], "done", "{job}");
    let lines = download_lines(&job).await;
    let seqs: Vec<u64> = (lines.iter())
        .filter(|line| line["type"] == "message")
        .map(|line| line["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=MANY as u64).collect::<Vec<_>>(),
        "the whole file"
    );
    assert_eq!(common::metric(b, "parley_jobs_done_total").await, 1.0);

    // The cluster's expiry sweep (node B's, under the lease) deletes the S3 object.
    let url = job["download_url"].as_str().expect("download_url");
    let expired = expired_job(b, &job_id, PIPELINE_WAIT).await;
    assert!(expired.get("download_url").is_none(), "{expired}");
    assert_eq!(fetch(url).await.err(), Some(404), "the S3 object is gone");
    let path = "/api/v1/admin/audit?target=user:alice";
    let want = [
        "token.issue",
        "admin.export",
        "export.requested",
        "export.restarted",
        "export.done",
        "export.expired",
    ];
    audit_listing(b, path, &want).await;
}

/// Polls job `job_id` at `node` until its file expired (for at most `limit`): its answer then.
async fn expired_job(node: &TestServer, job_id: &str, limit: Duration) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + limit;
    let path = format!("/api/v1/admin/jobs/{job_id}");
    loop {
        let (status, job) = admin(node, "GET", &path, None).await;
        assert_eq!(status, 200, "{job}");
        if job.get("file_expired_at").is_some() {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the file never expired: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_export_file_is_deleted_once_older_than_its_retention() {
    let server =
        TestServer::start_with(&[ADMIN_ENV, ("PARLEY__EXPORT__RETAIN_FILES_SECS", "3")]).await;
    let mut alice = server.connect("alice").await;
    let conversation = common::create_conversation(&mut alice, "direct", &["bob"]).await;
    common::send(&mut alice, &conversation, "e1", "soon gone").await;
    let job_id = start_export(&server, "alice").await;
    let job = finished_job(&server, &job_id, common::WAIT).await;
    let url = job["download_url"].as_str().expect("a fresh file's link");
    let lines = download_lines(&job).await;
    assert_eq!(counts(&lines).get("message"), Some(&1), "{lines:?}");
    let file = server
        .data_dir()
        .join(format!("blobs/exports/{job_id}.jsonl"));
    assert!(file.exists(), "{}", file.display());

    let expired = expired_job(&server, &job_id, common::WAIT).await;
    assert_eq!(expired["state"], "done", "{expired}");
    assert!(expired.get("download_url").is_none(), "{expired}");
    assert_eq!(fetch(url).await.err(), Some(404), "the old link");
    assert!(!file.exists(), "{} is deleted", file.display());
    assert_eq!(
        job_actions(&server, "alice", &job_id).await,
        ["export.requested", "export.done", "export.expired"]
    );
    let expired_files = "parley_jobs_export_files_expired_total";
    assert_eq!(common::metric(&server, expired_files).await, 1.0);
}
