//! Graceful stop: SIGTERM → not ready, `goaway` then close 1001 for every session, the
//! conversations finish what is in flight, the log is flushed, exit. Standalone, and a durable
//! two-node cluster whose clients move to the other node.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::durable::{find_all, http_get, integer, DurableCluster, PIPELINE_WAIT};
use common::{create_conversation, Client, TestServer, API_KEY, WAIT};
use futures::{SinkExt, StreamExt};
use mongodb::bson::doc;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn sigterm_sends_goaway_then_closes_with_1001() {
    let mut server = TestServer::start_with(&[("PARLEY__SERVER__DRAIN_WINDOW_MS", "1500")]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    // The container health check (`parley-server probe URL`) follows readiness.
    let readyz = format!("http://{}/readyz", server.addr);
    assert!(probe(&readyz).await, "probe of a ready node");
    server.terminate();
    // Readiness flips before the first session is told to go.
    let goaway = alice.event("goaway").await;
    assert!(
        goaway["reconnect_after_ms"]
            .as_u64()
            .expect("reconnect_after_ms")
            > 0
    );
    let (status, body) = server.http("GET", "/readyz", &[], None).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(!probe(&readyz).await, "probe of a draining node");
    // New work is refused with `unavailable` while the node drains.
    let (status, body) = server
        .http(
            "GET",
            "/api/v1/conversations/any/messages",
            &[("X-Api-Key", API_KEY)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let token = server.token("carol").await;
    match tokio_tungstenite::connect_async(server.ws_url(&token)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!("an upgrade during the drain should be refused, got {other:?}"),
    }
    assert_eq!(alice.closed().await.code, 1001);
    let goaway = bob.event("goaway").await;
    assert!(
        goaway["reconnect_after_ms"]
            .as_u64()
            .expect("reconnect_after_ms")
            > 0
    );
    assert_eq!(bob.closed().await.code, 1001);
    assert!(
        server.exited_within(Duration::from_secs(15)).await,
        "the server exits after draining"
    );
}

/// Runs `parley-server probe URL`; whether it exited 0.
async fn probe(url: &str) -> bool {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_parley-server"))
        .args(["probe", url])
        .output()
        .await
        .expect("parley-server probe runs")
        .status
        .success()
}

/// How a request ended for a client of a draining node.
enum Answer {
    /// The reply frame (`result` or `error`).
    Reply(Value),
    /// The connection closed first, with this close code (0: no close frame).
    Closed(u16),
}

/// What a client saw of the drain.
#[derive(Debug, Default)]
struct DrainSeen {
    /// `reconnect_after_ms` of the `goaway`, if one arrived.
    reconnect_after_ms: Option<u64>,
    /// The draining node's `/readyz` status, asked right after the `goaway` arrived.
    readyz_at_goaway: Option<u16>,
    /// The close code of the draining node's connection.
    close_code: Option<u16>,
}

impl DrainSeen {
    /// Records a `goaway` and asks the node's readiness at once: it must already be 503.
    async fn goaway(&mut self, frame: &Value, node_addr: &str) {
        self.reconnect_after_ms = frame["data"]["reconnect_after_ms"].as_u64();
        let (status, _) = http_get(node_addr, "/readyz")
            .await
            .unwrap_or((0, String::new()));
        self.readyz_at_goaway = Some(status);
    }

    /// Waits `reconnect_after_ms`, as the protocol asks.
    async fn wait_before_reconnecting(&self) {
        let delay = self.reconnect_after_ms.expect("a goaway before the close");
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// Sends `frame` and reads until its reply, handing events to `on_event`; a `goaway` is
/// recorded in `seen`.
async fn request_until_closed(
    client: &mut Client,
    id: i64,
    frame: Value,
    seen: &mut DrainSeen,
    node_addr: &str,
    on_event: &mut impl FnMut(&Value),
) -> Answer {
    if client
        .ws
        .send(Message::Text(frame.to_string().into()))
        .await
        .is_err()
    {
        return Answer::Closed(0);
    }
    match next_frame_or_close(client, seen, node_addr, on_event).await {
        Ok(reply) if reply["re"] == json!(id) => Answer::Reply(reply),
        Ok(reply) => panic!("unexpected reply while waiting for {id}: {reply}"),
        Err(code) => Answer::Closed(code),
    }
}

/// The next reply frame; events go to `on_event` (a `goaway` also to `seen`). `Err(code)`
/// when the connection closes.
async fn next_frame_or_close(
    client: &mut Client,
    seen: &mut DrainSeen,
    node_addr: &str,
    on_event: &mut impl FnMut(&Value),
) -> Result<Value, u16> {
    loop {
        let message = tokio::time::timeout(WAIT, client.ws.next())
            .await
            .expect("a frame or a close within the wait");
        match message {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                if frame.get("ev").is_none() {
                    return Ok(frame);
                }
                if frame["ev"] == "goaway" {
                    seen.goaway(&frame, node_addr).await;
                }
                on_event(&frame);
            }
            Some(Ok(Message::Close(close))) => {
                let code = close.map_or(0, |close| u16::from(close.code));
                seen.close_code = Some(code);
                return Err(code);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(0),
        }
    }
}

/// One sender's run: what it saw and its accepted sends (client_msg_id → (seq, message_id)).
struct SenderRun {
    seen: DrainSeen,
    accepted: BTreeMap<String, (u64, String)>,
}

/// Sends numbered messages to `conversation_id` every few milliseconds over a connection to
/// the node that will drain; on `goaway` + close it reconnects to `other_node_url` after
/// `reconnect_after_ms`, retries its unanswered send with the same `client_msg_id`, and sends
/// `after_move` more there.
async fn run_sender(
    user: String,
    first_node_url: String,
    first_node_addr: String,
    other_node_url: String,
    conversation_id: String,
    after_move: usize,
    accepted_total: Arc<AtomicUsize>,
) -> SenderRun {
    let mut client = Client::connect_url(&first_node_url).await;
    let mut seen = DrainSeen::default();
    let mut accepted = BTreeMap::new();
    let mut moved = false;
    let mut sent_after_move = 0;
    let mut request_id = 1000;
    let mut number = 1;
    while !moved || sent_after_move < after_move {
        let client_msg_id = format!("{user}-{number}");
        request_id += 1;
        let frame = json!({ "id": request_id, "op": "message.send", "args": {
            "conversation_id": conversation_id, "client_msg_id": client_msg_id,
            "text": format!("{user} says {number}") } });
        let answer = request_until_closed(
            &mut client,
            request_id,
            frame,
            &mut seen,
            &first_node_addr,
            &mut |_| {},
        )
        .await;
        match answer {
            Answer::Reply(reply) if reply.get("result").is_some() => {
                let result = &reply["result"];
                let ack = (
                    result["seq"].as_u64().expect("seq"),
                    result["message_id"]
                        .as_str()
                        .expect("message_id")
                        .to_owned(),
                );
                if let Some(earlier) = accepted.insert(client_msg_id.clone(), ack.clone()) {
                    panic!("{client_msg_id} accepted twice: {earlier:?} then {ack:?}");
                }
                accepted_total.fetch_add(1, Ordering::Relaxed);
                number += 1;
                if moved {
                    sent_after_move += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Answer::Reply(reply) => {
                // Refused while the node drains: nothing was accepted; retry the same send.
                assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Answer::Closed(code) => {
                assert!(
                    !moved,
                    "{user}: the second node closed the connection ({code})"
                );
                assert_eq!(code, 1001, "{user}: the draining node closes with 1001");
                seen.wait_before_reconnecting().await;
                client = Client::connect_url(&other_node_url).await;
                moved = true;
                // The unanswered send is retried with the same client_msg_id.
            }
        }
    }
    SenderRun { seen, accepted }
}

/// Every message a watcher ended up with, by conversation and seq (message ids).
type Seen = BTreeMap<String, BTreeMap<u64, String>>;

/// Adds a `message.new` event or a message object to `messages`, checking that a seq seen
/// twice (live and again from `sync`) is the same message.
fn note_message(messages: &mut Seen, message: &Value) {
    let conversation_id = message["conversation_id"]
        .as_str()
        .expect("conversation_id");
    let seq = message["seq"].as_u64().expect("seq");
    let message_id = message["message_id"]
        .as_str()
        .expect("message_id")
        .to_owned();
    let known = messages
        .entry(conversation_id.to_owned())
        .or_default()
        .entry(seq)
        .or_insert_with(|| message_id.clone());
    assert_eq!(
        *known, message_id,
        "two messages at seq {seq} of {conversation_id}"
    );
}

/// A member who only reads, connected to the node that drains: it records live messages, and
/// on `goaway` + close reconnects to the other node and `sync`s from the last seq it has of
/// each conversation; it then reads live messages until it has every seq up to `until`.
async fn run_watcher(
    first_node_url: String,
    first_node_addr: String,
    other_node_url: String,
    conversations: Vec<String>,
    until: tokio::sync::watch::Receiver<BTreeMap<String, u64>>,
) -> (DrainSeen, Seen, Seen) {
    let mut client = Client::connect_url(&first_node_url).await;
    let mut seen = DrainSeen::default();
    let mut live: Seen = BTreeMap::new();
    let record_live = |live: &mut Seen, frame: &Value| {
        if frame["ev"] == "message.new" {
            note_message(live, &frame["data"]["message"]);
        }
    };
    // Until the drain closes the connection.
    let code = loop {
        let mut on_event = |frame: &Value| record_live(&mut live, frame);
        if let Err(code) =
            next_frame_or_close(&mut client, &mut seen, &first_node_addr, &mut on_event).await
        {
            break code;
        }
    };
    assert_eq!(code, 1001, "the draining node closes the watcher with 1001");
    seen.wait_before_reconnecting().await;
    client = Client::connect_url(&other_node_url).await;
    let mut synced: Seen = BTreeMap::new();
    // Sync from the highest seq with nothing missing below it, page by page.
    let mut from: BTreeMap<String, u64> = conversations
        .iter()
        .map(|conversation_id| {
            let have = live.get(conversation_id).cloned().unwrap_or_default();
            let contiguous = (1..).take_while(|seq| have.contains_key(seq)).count() as u64;
            (conversation_id.clone(), contiguous)
        })
        .collect();
    let mut request_id = 5000;
    loop {
        request_id += 1;
        let frame = json!({ "id": request_id, "op": "sync", "args": { "conversations": from } });
        let mut on_event = |frame: &Value| record_live(&mut live, frame);
        let Answer::Reply(reply) = request_until_closed(
            &mut client,
            request_id,
            frame,
            &mut DrainSeen::default(),
            "",
            &mut on_event,
        )
        .await
        else {
            panic!("the second node closed the watcher during sync");
        };
        let mut more = false;
        for (conversation_id, page) in reply["result"]["conversations"]
            .as_object()
            .unwrap_or_else(|| panic!("sync result: {reply}"))
        {
            for message in page["messages"].as_array().expect("messages") {
                note_message(&mut synced, message);
                let seq = message["seq"].as_u64().expect("seq");
                let last = from.get_mut(conversation_id).expect("asked for");
                *last = (*last).max(seq);
            }
            more |= page["has_more"] == true;
        }
        if !more {
            break;
        }
    }
    // Then live messages until every seq up to the final ones is there.
    let mut until = until;
    let targets = until
        .wait_for(|targets| !targets.is_empty())
        .await
        .expect("targets")
        .clone();
    let complete = |live: &Seen, synced: &Seen| {
        targets.iter().all(|(conversation_id, last)| {
            (1..=*last).all(|seq| {
                [live, synced].iter().any(|seen| {
                    seen.get(conversation_id)
                        .is_some_and(|m| m.contains_key(&seq))
                })
            })
        })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !complete(&live, &synced) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher is still missing messages: live {live:?} synced {synced:?} targets {targets:?}"
        );
        let mut on_live = |frame: &Value| record_live(&mut live, frame);
        let next = tokio::time::timeout(
            Duration::from_millis(200),
            next_frame_or_close(&mut client, &mut DrainSeen::default(), "", &mut on_live),
        )
        .await;
        if let Ok(Err(code)) = next {
            panic!("the second node closed the watcher ({code})");
        }
    }
    (seen, live, synced)
}

/// The issue-6 drain, with real processes in durable mode: two nodes, Kafka, ingest and
/// MongoDB. Clients on node A send continuously; node A gets SIGTERM. Every client of node A
/// gets `goaway` after node A's readiness turned 503 and a close 1001, reconnects to node B
/// and carries on; a reading member `sync`s and ends with every message exactly once; nothing
/// accepted is lost (MongoDB holds exactly the accepted sends, seqs dense); node A exits within
/// `server.shutdown_timeout_ms` of the signal after draining its conversations and flushing
/// its producer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_cluster_node_moves_its_clients_to_the_other_node_without_losing_anything() {
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(6000);
    let mut cluster = DurableCluster::start(
        "parley_drain",
        2,
        &[
            ("PARLEY__SERVER__DRAIN_WINDOW_MS", "2000"),
            ("PARLEY__SERVER__SHUTDOWN_TIMEOUT_MS", "6000"),
        ],
    )
    .await;
    let senders = ["s1", "s2", "s3", "s4"];
    let mut urls_a = BTreeMap::new();
    let mut urls_b = BTreeMap::new();
    for user in senders.iter().chain(&["watch", "peer"]) {
        let token = cluster.nodes[0].token(user).await;
        urls_a.insert(*user, cluster.nodes[0].ws_url(&token));
        urls_b.insert(*user, cluster.nodes[1].ws_url(&token));
    }
    // Two conversations, two senders each; `watch` (node A) and `peer` (node B) read both.
    let mut creator = Client::connect_url(&urls_b["peer"]).await;
    let first = create_conversation(&mut creator, "group", &["s1", "s2", "watch"]).await;
    let second = create_conversation(&mut creator, "group", &["s3", "s4", "watch"]).await;
    let conversation_of = |user: &str| {
        if user == "s1" || user == "s2" {
            first.clone()
        } else {
            second.clone()
        }
    };
    let node_a_addr = cluster.nodes[0].addr.clone();
    let (targets_tx, targets_rx) = tokio::sync::watch::channel(BTreeMap::new());
    let watcher = tokio::spawn(run_watcher(
        urls_a["watch"].clone(),
        node_a_addr.clone(),
        urls_b["watch"].clone(),
        vec![first.clone(), second.clone()],
        targets_rx,
    ));
    let accepted_total = Arc::new(AtomicUsize::new(0));
    let mut sender_tasks = Vec::new();
    for user in senders {
        sender_tasks.push(tokio::spawn(run_sender(
            user.to_owned(),
            urls_a[user].clone(),
            node_a_addr.clone(),
            urls_b[user].clone(),
            conversation_of(user),
            10,
            accepted_total.clone(),
        )));
    }
    // Traffic flows through node A, then it is told to stop.
    let deadline = tokio::time::Instant::now() + WAIT;
    while accepted_total.load(Ordering::Relaxed) < 60 {
        assert!(tokio::time::Instant::now() < deadline, "senders stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let signalled = std::time::Instant::now();
    cluster.nodes[0].terminate();
    assert!(
        cluster.nodes[0].exited_within(SHUTDOWN_TIMEOUT).await,
        "node A exits within server.shutdown_timeout_ms of SIGTERM"
    );
    let stop_took = signalled.elapsed();
    let log_a = cluster.nodes[0].log();
    for line in ["conversations drained", "log flushed", "sessions drained"] {
        assert!(
            log_a.contains(line),
            "node A's log lacks {line:?}:\n{log_a}"
        );
    }

    let mut accepted: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
    let mut accepted_ids = BTreeSet::new();
    for (user, task) in senders.iter().zip(sender_tasks) {
        let run = task.await.expect("sender");
        assert_eq!(run.seen.close_code, Some(1001), "{user}");
        assert_eq!(
            run.seen.readyz_at_goaway,
            Some(503),
            "{user}: readiness flips first"
        );
        let reconnect_after_ms = run.seen.reconnect_after_ms.expect("goaway");
        assert!(
            (250..=3000).contains(&reconnect_after_ms),
            "{reconnect_after_ms}"
        );
        let conversation = accepted.entry(conversation_of(user)).or_default();
        for (client_msg_id, (seq, message_id)) in run.accepted {
            assert!(accepted_ids.insert(client_msg_id.clone()));
            if let Some(other) = conversation.insert(seq, message_id) {
                panic!("seq {seq} acknowledged to two sends ({other}, {client_msg_id})");
            }
        }
    }
    // Seqs are dense: every seq up to the last was acknowledged to exactly one send.
    let targets: BTreeMap<String, u64> = accepted
        .iter()
        .map(|(conversation_id, by_seq)| {
            let last = *by_seq.keys().last().expect("sends");
            assert_eq!(
                by_seq.len() as u64,
                last,
                "seqs of {conversation_id}: {by_seq:?}"
            );
            (conversation_id.clone(), last)
        })
        .collect();
    targets_tx.send(targets.clone()).expect("watcher waits");
    let (watch_seen, live, synced) = watcher.await.expect("watcher");
    assert_eq!(watch_seen.close_code, Some(1001));
    assert_eq!(
        watch_seen.readyz_at_goaway,
        Some(503),
        "watcher: readiness flips first"
    );
    for (conversation_id, by_seq) in &accepted {
        let mut union = live.get(conversation_id).cloned().unwrap_or_default();
        union.extend(synced.get(conversation_id).cloned().unwrap_or_default());
        assert_eq!(&union, by_seq, "what the watcher has of {conversation_id}");
    }
    assert!(
        synced.values().any(|messages| !messages.is_empty()) || !live.is_empty(),
        "the watcher saw messages"
    );

    // Nothing accepted is lost and nothing else was stored: MongoDB ends with exactly the
    // acknowledged sends (the retries after the move included, each once).
    for (conversation_id, by_seq) in &accepted {
        let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
        loop {
            let stored: BTreeMap<u64, String> = find_all(
                &cluster.db,
                "messages",
                doc! { "conversation_id": conversation_id },
                doc! { "seq": 1 },
            )
            .await
            .iter()
            .map(|document| {
                (
                    integer(document, "seq").expect("seq") as u64,
                    document
                        .get_str("message_id")
                        .expect("message_id")
                        .to_owned(),
                )
            })
            .collect();
            if &stored == by_seq {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mongodb has {stored:?} of {conversation_id}, accepted {by_seq:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("node A stopped {stop_took:?} after SIGTERM");
}
