//! Search in the durable cluster: every node indexes the whole Kafka log with a consumer group
//! of its own, or the nodes query the search role (`ingest search`, a replica with its own
//! group); either way a message sent through one node is found by a member on another.
//!
//! Needs `scripts/services/{redis,tansu,secantus}.sh install` and the ingest binary
//! (`cargo build -p ingest`), like `durable.rs`.

mod common;

use std::time::{Duration, Instant};

use common::durable::{wait_for_document, DurableCluster, TestIngest, PIPELINE_WAIT};
use common::{create_conversation, send, Client};
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

/// The first search of a node also waits for its indexer to join its group.
const FIRST_INDEXING: Duration = Duration::from_secs(30);

async fn hit_count(client: &mut Client, query: &str) -> usize {
    let result: Value = client
        .ok("search.messages", json!({ "query": query }))
        .await;
    result["hits"].as_array().expect("hits").len()
}

#[tokio::test]
async fn a_message_sent_on_one_node_is_found_by_a_member_on_another() {
    let mut cluster = DurableCluster::start("search_durable", 2, &[]).await;
    let (mut alice, mut bob, mut carol, conversation_id) = alice_bob_and_carol(&cluster).await;
    send(
        &mut alice,
        &conversation_id,
        "d-1",
        "replicated through kafka",
    )
    .await;
    wait_for_hits(&mut bob, "replicated", 1).await;
    assert_eq!(hit_count(&mut carol, "replicated").await, 0, "non-member");
    // Node A indexes too, with its own consumer group: it may trail node B a moment.
    wait_for_hits(&mut alice, "replicated", 1).await;

    // kill -9 of node B; a message sent meanwhile is indexed once B is back, nothing twice.
    drop((bob, carol));
    cluster.nodes[1].kill9();
    send(
        &mut alice,
        &conversation_id,
        "d-2",
        "replicated while B was down",
    )
    .await;
    cluster.nodes[1].restart().await;
    let mut bob = cluster.nodes[1].connect("bob").await;
    wait_for_hits(&mut bob, "replicated", 2).await;
}

/// Alice on node A and Bob on node B in a group conversation, and Carol (not a member) on B.
async fn alice_bob_and_carol(cluster: &DurableCluster) -> (Client, Client, Client, String) {
    let mut alice = cluster.nodes[0].connect("alice").await;
    let bob = cluster.nodes[1].connect("bob").await;
    let carol = cluster.nodes[1].connect("carol").await;
    assert!(
        common::has_feature(&bob.welcome, "search"),
        "{}",
        bob.welcome
    );
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    (alice, bob, carol, conversation_id)
}

/// Searches until `want` hits (or fails after [`FIRST_INDEXING`]).
async fn wait_for_hits(client: &mut Client, query: &str, want: usize) {
    let started = Instant::now();
    loop {
        let found = hit_count(client, query).await;
        if found == want {
            return;
        }
        assert!(found < want, "{found} hits for {query:?}, more than {want}");
        assert!(
            started.elapsed() < FIRST_INDEXING,
            "{found} hits for {query:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn nodes_query_the_search_role_which_catches_up_after_kill_9() {
    let role_address = free_local_address();
    let url = format!("http://{role_address}");
    let cluster =
        DurableCluster::start("search_role", 2, &[("PARLEY__SEARCH__URL", url.as_str())]).await;
    let data = tempfile::tempdir().expect("search role directory");
    let role_env = role_env(&cluster, &role_address, data.path());
    let mut role = TestIngest::start_search_role(&role_env).await;
    role.wait_ready(PIPELINE_WAIT).await;

    let (mut alice, mut bob, mut carol, conversation_id) = alice_bob_and_carol(&cluster).await;
    send(&mut alice, &conversation_id, "r-1", "answered by the role").await;
    wait_for_hits(&mut bob, "answered", 1).await;
    assert_eq!(
        hit_count(&mut alice, "answered").await,
        1,
        "node A asks the role too"
    );
    assert_eq!(hit_count(&mut carol, "answered").await, 0, "non-member");
    let indexed = role.metric("parley_search_indexed_events_total").await;
    assert!(indexed.is_some_and(|count| count >= 1.0), "{indexed:?}");

    // Without the role a search is unavailable (retryable); a message sent meanwhile is
    // indexed once the role is back, from its committed position, and nothing twice.
    role.kill9();
    let error = bob
        .err("search.messages", json!({ "query": "answered" }))
        .await;
    assert_eq!(error["code"], "unavailable", "{error}");
    send(
        &mut alice,
        &conversation_id,
        "r-2",
        "answered after a crash",
    )
    .await;
    role.restart().await;
    role.wait_ready(PIPELINE_WAIT).await;
    wait_for_hits(&mut bob, "answered", 2).await;
    assert_eq!(hit_count(&mut bob, "crash").await, 1);
}

/// `ingest reindex` rebuilds the role's index from MongoDB. To tell what came from MongoDB from
/// what the role replays from the log, the stored copy of a message is rewritten directly in
/// MongoDB (as for history the log no longer holds): after the reindex the role finds the
/// message by the stored words, and finds a message sent after the reindex from the log.
#[tokio::test]
async fn reindex_rebuilds_the_role_index_from_mongodb() {
    let role_address = free_local_address();
    let url = format!("http://{role_address}");
    let cluster = DurableCluster::start(
        "search_reindex",
        1,
        &[("PARLEY__SEARCH__URL", url.as_str())],
    )
    .await;
    let data = tempfile::tempdir().expect("search role directory");
    let role_env = role_env(&cluster, &role_address, data.path());
    let mut alice = cluster.nodes[0].connect("alice").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    send(&mut alice, &conversation_id, "x-1", "written to the log").await;
    let stored = wait_for_document(
        &cluster.db,
        "messages",
        doc! { "client_msg_id": "x-1" },
        "the message in mongodb",
        |_| true,
    )
    .await;
    let record = stored
        .get_str("record")
        .expect("record")
        .replace("written to the log", "archived in the store");
    cluster
        .db
        .collection::<Document>("messages")
        .update_one(
            doc! { "client_msg_id": "x-1" },
            doc! { "$set": { "record": record, "text": "archived in the store" } },
        )
        .await
        .expect("rewrite the stored copy");

    let printed = TestIngest::run_once(&role_env, "reindex", PIPELINE_WAIT).await;
    assert!(printed.contains("done: 1 messages"), "{printed}");
    send(
        &mut alice,
        &conversation_id,
        "x-2",
        "sent after the reindex",
    )
    .await;
    let role = TestIngest::start_search_role(&role_env).await;
    role.wait_ready(PIPELINE_WAIT).await;
    wait_for_hits(&mut alice, "reindex", 1).await;
    assert_eq!(hit_count(&mut alice, "archived").await, 1, "from mongodb");
    assert_eq!(
        hit_count(&mut alice, "written").await,
        0,
        "the log's older copy replaced nothing"
    );
}

/// The search role's settings: the cluster's Kafka and MongoDB, its address and directory.
fn role_env(
    cluster: &DurableCluster,
    address: &str,
    data_dir: &std::path::Path,
) -> Vec<(String, String)> {
    let mut env = cluster.pipeline_env();
    env.extend([
        ("PARLEY__SEARCH__BIND".to_owned(), address.to_owned()),
        (
            "PARLEY__SEARCH__DATA_DIR".to_owned(),
            data_dir.display().to_string(),
        ),
    ]);
    env
}

/// A local address nobody listens on yet (the search role binds it after the nodes start).
fn free_local_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}
