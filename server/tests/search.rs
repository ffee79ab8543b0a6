//! `search.messages` and `GET /api/v1/search` end to end on a real standalone node: who finds
//! what (members now, never others), edits and deletes, accent/case/prefix matching, paging,
//! limits, freshness, and the index after `kill -9`.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    assert_code, create_conversation, send, unthrottled_server, Client, TestServer, API_KEY,
};
use serde_json::{json, Value};

/// How long an acknowledged change may take to become searchable.
const FRESHNESS: Duration = Duration::from_secs(2);

async fn search(client: &mut Client, args: Value) -> Value {
    client.ok("search.messages", args).await
}

/// The texts of a result's hits, in order.
fn texts(result: &Value) -> Vec<String> {
    result["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("expected hits, got {result}"))
        .iter()
        .map(|hit| hit["message"]["text"].as_str().expect("text").to_owned())
        .collect()
}

/// Searches `query` until it has `want` hits; fails after [`FRESHNESS`] from `since`.
async fn wait_for_hits(client: &mut Client, query: &str, want: usize, since: Instant) -> Value {
    loop {
        let result = search(client, json!({ "query": query })).await;
        if texts(&result).len() == want {
            return result;
        }
        assert!(
            since.elapsed() < FRESHNESS,
            "{want} hits for {query:?} not within {FRESHNESS:?}: {result}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn members_find_what_they_may_see_and_nothing_else() {
    let server = unthrottled_server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    let sent_at = Instant::now();
    let ack = send(
        &mut alice,
        &conversation_id,
        "s-1",
        "Crème brûlée at the CAFÉ",
    )
    .await;
    let message_id = ack["message_id"].as_str().expect("message_id").to_owned();

    let found = wait_for_hits(&mut bob, "creme BRULEE", 1, sent_at).await;
    assert_eq!(
        found["hits"][0]["message"]["message_id"],
        message_id.as_str()
    );
    assert!(
        found["hits"][0]["score"].as_f64().expect("score") > 0.0,
        "{found}"
    );
    assert_eq!(found["next_cursor"], Value::Null);
    assert_eq!(
        texts(&search(&mut bob, json!({ "query": "café" })).await).len(),
        1
    );
    assert_eq!(
        texts(&search(&mut bob, json!({ "query": "the caf" })).await).len(),
        1,
        "prefix"
    );
    assert_eq!(
        texts(&search(&mut carol, json!({ "query": "creme" })).await).len(),
        0,
        "non-member"
    );
    let error = carol
        .err(
            "search.messages",
            json!({ "query": "creme", "conversation_id": conversation_id }),
        )
        .await;
    assert_code(&error, "not_member");

    alice
        .ok(
            "conversation.remove_members",
            json!({ "conversation_id": conversation_id, "user_ids": ["bob"] }),
        )
        .await;
    assert_eq!(
        texts(&search(&mut bob, json!({ "query": "creme" })).await).len(),
        0,
        "removed member"
    );
    alice
        .ok(
            "conversation.add_members",
            json!({ "conversation_id": conversation_id, "user_ids": ["carol"] }),
        )
        .await;
    assert_eq!(
        texts(&search(&mut carol, json!({ "query": "creme" })).await).len(),
        1,
        "added member"
    );

    let edited_at = Instant::now();
    alice
        .ok("message.edit", json!({ "conversation_id": conversation_id, "message_id": message_id, "text": "panna cotta" }))
        .await;
    wait_for_hits(&mut carol, "panna", 1, edited_at).await;
    assert_eq!(
        texts(&search(&mut carol, json!({ "query": "creme" })).await).len(),
        0,
        "old text"
    );

    alice
        .ok(
            "reaction.add",
            json!({ "conversation_id": conversation_id, "message_id": message_id, "emoji": "👍" }),
        )
        .await;
    let found = search(&mut carol, json!({ "query": "panna" })).await;
    assert_eq!(
        found["hits"][0]["message"]["reactions"]["👍"],
        json!(["alice"]),
        "current version"
    );

    alice
        .ok(
            "message.delete",
            json!({ "conversation_id": conversation_id, "message_id": message_id }),
        )
        .await;
    let found = search(&mut carol, json!({ "query": "panna" })).await;
    assert_eq!(
        texts(&found).len(),
        0,
        "deleted: never returned, even before it is indexed"
    );
}

#[tokio::test]
async fn bad_searches_are_refused_and_the_rest_api_answers_alike() {
    let server = unthrottled_server().await;
    let mut alice = server.connect("alice").await;
    assert!(
        common::has_feature(&alice.welcome, "search"),
        "{}",
        alice.welcome
    );
    let conversation_id = create_conversation(&mut alice, "group", &[]).await;
    let sent_at = Instant::now();
    send(&mut alice, &conversation_id, "s-1", "quarterly numbers").await;
    wait_for_hits(&mut alice, "quarterly", 1, sent_at).await;
    for args in [
        json!({ "query": "" }),
        json!({ "query": "   " }),
        json!({ "query": "a".repeat(257) }),
        json!({ "query": "x", "limit": 51 }),
        json!({ "query": "x", "limit": 0 }),
        json!({ "query": "x", "cursor": "not-a-cursor" }),
        json!({ "conversation_id": conversation_id }),
    ] {
        assert_code(
            &alice.err("search.messages", args.clone()).await,
            "bad_request",
        );
    }
    assert_eq!(
        texts(&search(&mut alice, json!({ "query": "a".repeat(256) })).await).len(),
        0
    );

    let path = "/api/v1/search?user_id=alice&q=quarter";
    let (status, body) = server
        .http("GET", path, &[("X-Api-Key", API_KEY)], None)
        .await
        .expect("http");
    assert_eq!(status, 200, "{body}");
    assert_eq!(texts(&body), ["quarterly numbers"]);
    let (status, _) = server.http("GET", path, &[], None).await.expect("http");
    assert_eq!(status, 401);
    let (status, body) = server
        .http(
            "GET",
            "/api/v1/search?user_id=alice&q=",
            &[("X-Api-Key", API_KEY)],
            None,
        )
        .await
        .expect("http");
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("bad_request")),
        "{body}"
    );

    let (status, readyz) = server
        .http("GET", "/readyz", &[], None)
        .await
        .expect("readyz");
    assert_eq!(status, 200);
    assert_eq!(readyz["search"]["state"], "indexing", "{readyz}");
    let (_, metrics) = server
        .http("GET", "/metrics", &[], None)
        .await
        .expect("metrics");
    let metrics = metrics.as_str().expect("text").to_owned();
    for name in [
        "parley_search_indexer_lag_events",
        "parley_search_indexer_lag_seconds",
        "parley_search_indexed_events_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
}

/// Every page of `query` for `client`, following `next_cursor`; the message ids in order.
async fn all_pages(client: &mut Client, query: &str, limit: u64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let result = search(
            client,
            json!({ "query": query, "limit": limit, "cursor": cursor }),
        )
        .await;
        for hit in result["hits"].as_array().expect("hits") {
            ids.push(
                hit["message"]["message_id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            );
        }
        cursor = result["next_cursor"].clone();
        if cursor.is_null() {
            return ids;
        }
    }
}

/// Sends "standup N" for each N of `numbers`.
async fn send_standups(
    client: &mut Client,
    conversation_id: &str,
    numbers: std::ops::RangeInclusive<u32>,
) {
    for number in numbers {
        let text = format!("standup {number}");
        send(client, conversation_id, &format!("a-{number}"), &text).await;
    }
}

#[tokio::test]
async fn pages_return_every_hit_once_and_the_index_survives_kill_9() {
    let mut server = unthrottled_server().await;
    let mut alice = server.connect("alice").await;
    let conversation_id = create_conversation(&mut alice, "group", &[]).await;
    send_standups(&mut alice, &conversation_id, 1..=7).await;
    wait_for_hits(&mut alice, "standup", 7, Instant::now()).await;
    let paged = all_pages(&mut alice, "standup", 3).await;
    assert_eq!(paged.len(), 7, "{paged:?}");
    assert_eq!(
        paged.iter().collect::<BTreeSet<_>>().len(),
        7,
        "no hit twice: {paged:?}"
    );

    // A burst, then kill -9 at once: part of it is likely not indexed yet.
    send_standups(&mut alice, &conversation_id, 8..=40).await;
    drop(alice);
    server.kill9();
    server.restart().await;
    let mut alice = server.connect("alice").await;
    let restarted_at = Instant::now();
    loop {
        let ids = all_pages(&mut alice, "standup", 50).await;
        if ids.len() == 40 {
            assert_eq!(
                ids.iter().collect::<BTreeSet<_>>().len(),
                40,
                "no duplicates"
            );
            break;
        }
        assert!(ids.len() < 40, "more hits than messages: {}", ids.len());
        assert!(
            restarted_at.elapsed() < Duration::from_secs(10),
            "the index did not catch up: {}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_with_search_off_says_so() {
    let server = TestServer::start_with(&[("PARLEY__SEARCH__ENABLED", "false")]).await;
    let mut alice = server.connect("alice").await;
    assert!(
        !common::has_feature(&alice.welcome, "search"),
        "{}",
        alice.welcome
    );
    let error = alice
        .err("search.messages", json!({ "query": "anything" }))
        .await;
    assert_code(&error, "unknown_op");
    let (_, readyz) = server
        .http("GET", "/readyz", &[], None)
        .await
        .expect("readyz");
    assert_eq!(readyz.get("search"), None, "{readyz}");
    assert!(
        !server.data_dir().join("search").exists(),
        "no index directory"
    );
}

#[tokio::test]
async fn acked_messages_are_searchable_within_two_seconds_under_moderate_load() {
    let server = unthrottled_server().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    // The number of the last acked message and when its ack arrived.
    let acked = Arc::new(Mutex::new((0, Instant::now())));
    let sender = {
        let acked = acked.clone();
        tokio::spawn(async move {
            // About 100 messages a second for 5 seconds, each sent once the previous is acked.
            let mut ticker = tokio::time::interval(Duration::from_millis(10));
            for number in 1..=500 {
                ticker.tick().await;
                // Zero-padded, so that no probe's word is a prefix of another message's.
                let text = format!("load{number:04} status update from the build");
                send(&mut alice, &conversation_id, &format!("l-{number}"), &text).await;
                *acked.lock().expect("lock") = (number, Instant::now());
            }
        })
    };
    let mut probes = 0;
    while !sender.is_finished() {
        let (number, acked_at) = *acked.lock().expect("lock");
        if number > 0 {
            wait_for_hits(&mut bob, &format!("load{number:04}"), 1, acked_at).await;
            probes += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sender.await.expect("sender");
    // The indexer commits at most every search.commit_interval_ms (1 000 ms by default), so a
    // probe waits up to about that long: 5 seconds of load leave room for at least 3 probes.
    assert!(probes >= 3, "only {probes} probes");
}
