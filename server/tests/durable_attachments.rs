//! Attachments in the durable cluster: S3 object storage (a private SeaweedFS), Redis, Kafka
//! (Tansu), MongoDB (SecantusDB) and the ingest binary. An attachment uploaded through node A
//! and sent there is downloaded by a member on node B straight from SeaweedFS, and the MongoDB
//! document of the message carries its metadata. An upload no message carries is swept once,
//! by one node per round (the Redis lease).
//!
//! Needs `scripts/services/{redis,tansu,secantus,seaweedfs}.sh install` and the ingest binary
//! (`cargo build -p ingest`); it fails, never skips, without them.

mod common;

use std::time::Duration;

use common::attachments::{download, file_of, sha256, upload};
use common::durable::{event_within, wait_for_document, DurableCluster, PIPELINE_WAIT};
use common::seaweedfs::{SeaweedServer, ACCESS_KEY, BUCKET, SECRET_KEY};
use common::{create_conversation, metric, TestServer};
use mongodb::bson::{doc, Document};
use serde_json::json;

/// How often each node sweeps orphans (a round's lease lasts 90 % of it).
const SWEEP_INTERVAL: Duration = Duration::from_secs(3);
/// Uploads no message carried for this long are swept; a send takes one only in its first
/// 4.5 s. (With 2 s, a first upload slow to land, 5 s from upload to send, was swept under
/// its send: counted as a second orphan, before sends refused such uploads.)
const ORPHAN_TTL: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_on_node_a_downloaded_on_node_b_from_s3_and_stored_in_mongodb() {
    let seaweed = SeaweedServer::start();
    let endpoint = seaweed.endpoint();
    let settings = [
        ("PARLEY__ATTACHMENTS__STORE", "s3"),
        ("PARLEY__ATTACHMENTS__S3_ENDPOINT", endpoint.as_str()),
        ("PARLEY__ATTACHMENTS__S3_BUCKET", BUCKET),
        ("PARLEY__ATTACHMENTS__S3_ACCESS_KEY", ACCESS_KEY),
        ("PARLEY__ATTACHMENTS__S3_SECRET_KEY", SECRET_KEY),
        (
            "PARLEY__ATTACHMENTS__ORPHAN_TTL_SECS",
            &ORPHAN_TTL.as_secs().to_string(),
        ),
        (
            "PARLEY__ATTACHMENTS__SWEEP_INTERVAL_SECS",
            &SWEEP_INTERVAL.as_secs().to_string(),
        ),
    ];
    let cluster = DurableCluster::start("parley_e2e_attachments", 2, &settings).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    assert!(
        common::has_feature(&bob.welcome, "attachments"),
        "{}",
        bob.welcome
    );
    let conversation = create_conversation(&mut alice, "group", &["bob"]).await;
    bob.event("member.joined").await;

    let bytes = file_of(1024 * 1024, 3);
    let alice_token = a.token("alice").await;
    let attachment_id = upload(a, &alice_token, "plan.png", &bytes).await;
    let ack = alice
        .ok(
            "message.send",
            json!({ "conversation_id": conversation, "client_msg_id": "a1", "text": "the plan",
                    "attachments": [attachment_id] }),
        )
        .await;
    let new = bob.event("message.new").await;
    assert_eq!(new["message"]["attachments"][0]["size"], 1024 * 1024);

    let bob_token = b.token("bob").await;
    let downloaded = download(b, &bob_token, &attachment_id)
        .await
        .expect("bob downloads on B");
    assert_eq!(sha256(&downloaded), sha256(&bytes));
    assert_eq!(
        download(b, &b.token("carol").await, &attachment_id).await,
        Err(404)
    );
    assert_eq!(metric(b, "parley_attachment_downloads_total").await, 1.0);

    let message_id = ack["message_id"].as_str().expect("message_id").to_owned();
    event_within(&mut alice, "message.stored", PIPELINE_WAIT, |data| {
        data["message_id"] == ack["message_id"]
    })
    .await;
    let document: Document = wait_for_document(
        &cluster.db,
        "messages",
        doc! { "_id": &message_id },
        "the message",
        |_| true,
    )
    .await;
    let attachments = document
        .get_array("attachments")
        .expect("an attachments field");
    let first = attachments[0].as_document().expect("a document");
    assert_eq!(first.get_str("attachment_id"), Ok(attachment_id.as_str()));
    assert_eq!(first.get_str("name"), Ok("plan.png"));
    assert_eq!(first.get_str("content_type"), Ok("image/png"));

    swept_once_by_one_node_per_round(&cluster, &alice_token).await;
}

/// An orphan uploaded through A disappears, deleted once, by one node; each round one node
/// sweeps and the other finds the lease taken (it lasts 90 % of the interval and is renewed
/// while a sweep runs).
async fn swept_once_by_one_node_per_round(cluster: &DurableCluster, alice_token: &str) {
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let orphan = upload(a, alice_token, "orphan.png", b"never sent").await;
    let deadline = tokio::time::Instant::now() + ORPHAN_TTL + Duration::from_secs(20);
    // Swept means 404; any other refusal (a node or S3 slow to answer on a loaded machine) is
    // not, and is tried again (it once ended this wait with nothing swept).
    while download(b, alice_token, &orphan).await != Err(404) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the orphan was not swept"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A sweep counts what it deleted once its round ends, after the deletions a download
    // already sees: wait for the count, then check it is one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let swept = loop {
        let swept = swept_total(a, b).await;
        if swept >= 1.0 || tokio::time::Instant::now() >= deadline {
            break swept;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // That the lease turns the other node away is checked below.
    assert_eq!(swept, 1.0, "deleted once, by one node");
    let skipped = |body: String| {
        body.lines()
            .filter(|line| line.starts_with("parley_attachment_sweeps_total{result=\"skipped\"}"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    // The orphan can vanish on the first round before the other node's first tick: wait for
    // that tick (within two intervals) rather than reading the counters at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut skipped_rounds = 0.0;
        for node in [a, b] {
            let (_, body) = node
                .http("GET", "/metrics", &[], None)
                .await
                .expect("metrics");
            skipped_rounds += skipped(body.as_str().expect("text").to_owned());
        }
        if skipped_rounds >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no node found the sweep lease taken"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(SWEEP_INTERVAL).await;
    assert_eq!(
        swept_total(a, b).await,
        1.0,
        "the rounds after the one that swept the orphan delete nothing more"
    );
}

/// Orphans deleted by both nodes, by their `parley_attachment_swept_total`.
async fn swept_total(a: &TestServer, b: &TestServer) -> f64 {
    metric(a, "parley_attachment_swept_total").await
        + metric(b, "parley_attachment_swept_total").await
}
