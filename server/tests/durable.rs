//! The durable pipeline end to end (issue 4): parley-server nodes log to a real Kafka-protocol
//! broker (Tansu, durable sqlite storage), the real `ingest` binary applies the log to a real
//! MongoDB-wire server (SecantusDB), and the tests read MongoDB and Kafka directly.
//!
//! Needs `scripts/services/{redis,tansu,secantus}.sh install` and the ingest binary
//! (`cargo build -p ingest`); the tests fail, never skip, without them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::durable::{
    committed, event_within, find_all, integer, node_settings, pipeline_env, record,
    reset_group_offsets, snapshot, wait_caught_up, wait_for_document, wait_for_documents,
    watermarks, DurableCluster, TestIngest, TestMongo, TestTansu, INGEST_GROUP, INGEST_TOPICS,
    PIPELINE_WAIT,
};
use common::{assert_code, send, Client, TestRedis, TestServer};
use mongodb::bson::{doc, Document};
use mongodb::Database;
use serde_json::{json, Value};

/// Creates a group through `client` and returns its id.
async fn create_group(client: &mut Client, members: &[&str], title: &str) -> String {
    let result = client
        .ok(
            "conversation.create",
            json!({ "kind": "group", "members": members, "title": title }),
        )
        .await;
    result["conversation"]["conversation_id"]
        .as_str()
        .expect("conversation_id")
        .to_owned()
}

/// Waits for the `message.stored` of `message_id` and checks it against the ack.
async fn expect_stored(client: &mut Client, conversation_id: &str, ack: &Value) {
    let stored = event_within(client, "message.stored", PIPELINE_WAIT, |data| {
        data["message_id"] == ack["message_id"]
    })
    .await;
    assert_eq!(stored["conversation_id"], conversation_id, "{stored}");
    assert_eq!(stored["seq"], ack["seq"], "{stored}");
}

fn text_of(value: &Value) -> &str {
    value.as_str().expect("string")
}

/// The message documents of one conversation, by seq.
async fn messages_of(db: &Database, conversation_id: &str) -> Vec<Document> {
    find_all(
        db,
        "messages",
        doc! { "conversation_id": conversation_id },
        doc! { "seq": 1 },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sent_on_node_a_is_in_mongodb_and_the_sender_gets_message_stored() {
    let cluster = DurableCluster::start("parley_e2e_sent", 2, &[]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let db = &cluster.db;
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    assert_ne!(alice.welcome["node_id"], bob.welcome["node_id"]);

    let conversation_id = create_group(&mut alice, &["bob"], "Trip").await;
    bob.event("member.joined").await;

    // A send on node A: ack, then message.stored once the message is in MongoDB.
    let ack = send(&mut alice, &conversation_id, "alice-1", "hello from A").await;
    assert_eq!(ack["seq"], 1);
    let first_id = text_of(&ack["message_id"]).to_owned();
    expect_stored(&mut alice, &conversation_id, &ack).await;
    // message.stored means "written to the database": no polling here.
    let document = db
        .collection::<Document>("messages")
        .find_one(doc! { "_id": &first_id })
        .await
        .expect("find_one")
        .unwrap_or_else(|| panic!("message.stored arrived but {first_id} is not in mongodb"));
    assert_eq!(
        document.get_str("conversation_id"),
        Ok(conversation_id.as_str())
    );
    assert_eq!(document.get_str("message_id"), Ok(first_id.as_str()));
    assert_eq!(integer(&document, "seq"), Some(1));
    assert_eq!(document.get_str("sender_id"), Ok("alice"));
    assert_eq!(document.get_str("client_msg_id"), Ok("alice-1"));
    assert_eq!(document.get_str("text"), Ok("hello from A"));
    assert_eq!(document.get_bool("deleted"), Ok(false));
    assert_eq!(record(&document)["message"]["text"], "hello from A");

    // A send on node B.
    let reply = send(&mut bob, &conversation_id, "bob-1", "hello from B").await;
    assert_eq!(reply["seq"], 2);
    let second_id = text_of(&reply["message_id"]).to_owned();
    expect_stored(&mut bob, &conversation_id, &reply).await;
    let document = db
        .collection::<Document>("messages")
        .find_one(doc! { "_id": &second_id })
        .await
        .expect("find_one")
        .unwrap_or_else(|| panic!("message.stored arrived but {second_id} is not in mongodb"));
    assert_eq!(integer(&document, "seq"), Some(2));
    assert_eq!(document.get_str("sender_id"), Ok("bob"));
    assert_eq!(document.get_str("text"), Ok("hello from B"));

    // Edit (on A), reaction (on B), delete (on B).
    alice
        .ok(
            "message.edit",
            json!({"conversation_id": conversation_id, "message_id": first_id, "text": "edited on A"}),
        )
        .await;
    let edited = wait_for_document(
        db,
        "messages",
        doc! { "_id": &first_id },
        "the edit",
        |document| document.get_str("text") == Ok("edited on A"),
    )
    .await;
    assert!(
        !record(&edited)["message"]["edited_at"].is_null(),
        "edited_at set: {edited}"
    );
    assert_eq!(integer(&edited, "seq"), Some(1), "an edit keeps the seq");

    bob.ok(
        "reaction.add",
        json!({"conversation_id": conversation_id, "message_id": first_id, "emoji": "👍"}),
    )
    .await;
    let reacted = wait_for_document(
        db,
        "messages",
        doc! { "_id": &first_id },
        "the reaction",
        |document| record(document)["message"]["reactions"] == json!({"👍": ["bob"]}),
    )
    .await;
    assert_eq!(reacted.get_str("text"), Ok("edited on A"), "{reacted}");

    bob.ok(
        "message.delete",
        json!({"conversation_id": conversation_id, "message_id": second_id}),
    )
    .await;
    let deleted = wait_for_document(
        db,
        "messages",
        doc! { "_id": &second_id },
        "the deletion",
        |document| document.get_bool("deleted") == Ok(true),
    )
    .await;
    assert_eq!(deleted.get_str("text"), Ok(""), "{deleted}");
    assert_eq!(
        integer(&deleted, "seq"),
        Some(2),
        "a deletion keeps the seq"
    );

    // Receipts: alice reads bob's message; bob's own send raised his watermarks silently.
    alice
        .ok(
            "receipt.read",
            json!({"conversation_id": conversation_id, "seq": 2}),
        )
        .await;
    wait_for_document(
        db,
        "participants",
        doc! { "conversation_id": &conversation_id, "user_id": "alice" },
        "alice's read receipt",
        |document| {
            integer(document, "read_seq") == Some(2)
                && integer(document, "delivered_seq") == Some(2)
        },
    )
    .await;
    wait_for_document(
        db,
        "participants",
        doc! { "conversation_id": &conversation_id, "user_id": "bob" },
        "bob's watermarks raised by his send",
        |document| integer(document, "read_seq") == Some(2),
    )
    .await;

    // Membership and title.
    let members = |document: &Document| -> BTreeSet<String> {
        document
            .get_array("members")
            .map(|members| {
                members
                    .iter()
                    .filter_map(|member| member.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let set = |users: &[&str]| -> BTreeSet<String> {
        users.iter().map(|user| user.to_string()).collect()
    };
    alice
        .ok(
            "conversation.add_members",
            json!({"conversation_id": conversation_id, "user_ids": ["carol"]}),
        )
        .await;
    let conversation = wait_for_document(
        db,
        "conversations",
        doc! { "_id": &conversation_id },
        "carol added",
        |document| members(document) == set(&["alice", "bob", "carol"]),
    )
    .await;
    assert_eq!(conversation.get_str("kind"), Ok("group"));
    wait_for_document(
        db,
        "participants",
        doc! { "conversation_id": &conversation_id, "user_id": "carol" },
        "carol's participant document",
        |document| document.get_bool("member") == Ok(true),
    )
    .await;

    bob.ok(
        "conversation.update",
        json!({"conversation_id": conversation_id, "title": "Lisbon"}),
    )
    .await;
    wait_for_document(
        db,
        "conversations",
        doc! { "_id": &conversation_id },
        "the new title",
        |document| document.get_str("title") == Ok("Lisbon"),
    )
    .await;

    alice
        .ok(
            "conversation.remove_members",
            json!({"conversation_id": conversation_id, "user_ids": ["carol"]}),
        )
        .await;
    let conversation = wait_for_document(
        db,
        "conversations",
        doc! { "_id": &conversation_id },
        "carol removed",
        |document| members(document) == set(&["alice", "bob"]),
    )
    .await;
    assert_eq!(
        conversation.get_str("title"),
        Ok("Lisbon"),
        "{conversation}"
    );
    assert_eq!(
        integer(&conversation, "last_seq"),
        Some(2),
        "{conversation}"
    );
    // Ingest writes the conversation document first and its participants right after (the
    // replacement checks the stored version), so the participants are waited for on their own.
    wait_for_documents(
        db,
        "participants",
        doc! { "conversation_id": &conversation_id, "member": true },
        "carol no longer a participant",
        |found| {
            let users: BTreeSet<String> = found
                .iter()
                .filter_map(|document| document.get_str("user_id").ok().map(str::to_owned))
                .collect();
            users == set(&["alice", "bob"])
        },
    )
    .await;
}

/// What one sender of the kill -9 stream got back.
struct SenderOutcome {
    /// conversation id → (seq, message_id, text) of every accepted send.
    accepted: Vec<(String, u64, String, String)>,
    /// Sends answered with an error.
    errors: Vec<Value>,
    /// Accepted message ids whose `message.stored` never arrived.
    never_stored: BTreeSet<String>,
}

/// Sends `count` messages alternating over `conversations`, pacing them so the stream spans
/// the ingest restart, then waits for the `message.stored` of each.
async fn send_stream(
    mut client: Client,
    conversations: Vec<String>,
    count: usize,
    acked: Arc<AtomicUsize>,
) -> SenderOutcome {
    let user = client.user_id().to_owned();
    let mut outcome = SenderOutcome {
        accepted: Vec::new(),
        errors: Vec::new(),
        never_stored: BTreeSet::new(),
    };
    for index in 0..count {
        let conversation_id = &conversations[index % conversations.len()];
        let text = format!("{user} #{index}");
        let frame = client
            .request(
                "message.send",
                json!({
                    "conversation_id": conversation_id,
                    "client_msg_id": format!("{user}-{index}"),
                    "text": text,
                }),
            )
            .await;
        match frame.get("result") {
            Some(result) => {
                outcome.accepted.push((
                    conversation_id.clone(),
                    result["seq"].as_u64().expect("seq"),
                    text_of(&result["message_id"]).to_owned(),
                    text,
                ));
                acked.fetch_add(1, Ordering::SeqCst);
            }
            None => outcome.errors.push(frame),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut waiting: BTreeSet<String> = outcome
        .accepted
        .iter()
        .map(|(_, _, message_id, _)| message_id.clone())
        .collect();
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
        let left = deadline - tokio::time::Instant::now();
        // The outer timeout fires first: running out of time is an outcome, not a panic.
        let next = tokio::time::timeout(
            left,
            event_within(
                &mut client,
                "message.stored",
                left + Duration::from_secs(5),
                |_| true,
            ),
        )
        .await;
        match next {
            Ok(stored) => {
                waiting.remove(text_of(&stored["message_id"]));
            }
            Err(_) => break,
        }
    }
    outcome.never_stored = waiting;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_ingest_mid_stream_loses_and_duplicates_nothing() {
    const PER_SENDER: usize = 100;
    let mut cluster = DurableCluster::start("parley_e2e_kill9", 2, &[]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let bob = b.connect("bob").await;
    let carol = a.connect("carol").await;
    let first = create_group(&mut alice, &["bob", "carol"], "first").await;
    let second = create_group(&mut alice, &["bob", "carol"], "second").await;
    let conversations = vec![first.clone(), second.clone()];

    let acked = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = [alice, bob, carol]
        .into_iter()
        .map(|client| {
            tokio::spawn(send_stream(
                client,
                conversations.clone(),
                PER_SENDER,
                acked.clone(),
            ))
        })
        .collect();

    // Kill ingest once it is mid-stream: some messages are in MongoDB, more are coming.
    let db = cluster.db.clone();
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    loop {
        let stored = db
            .collection::<Document>("messages")
            .count_documents(doc! {})
            .await
            .expect("count");
        if stored >= 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest never got going ({stored} messages in mongodb, {} acked)",
            acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked_at_kill = acked.load(Ordering::SeqCst);
    cluster.ingest.kill9();
    eprintln!("ingest killed with {acked_at_kill} sends acked");
    assert!(
        acked_at_kill < 3 * PER_SENDER,
        "the stream ended before ingest was killed: pace the senders more"
    );
    // Let the log grow while no ingest runs, then restart it.
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    while acked.load(Ordering::SeqCst) < (acked_at_kill + 60).min(3 * PER_SENDER) {
        assert!(tokio::time::Instant::now() < deadline, "sends stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "ingest restarted with {} sends acked",
        acked.load(Ordering::SeqCst)
    );
    cluster.ingest.restart().await;
    cluster.ingest.wait_ready(PIPELINE_WAIT).await;

    let mut outcomes = Vec::new();
    for sender in senders {
        outcomes.push(sender.await.expect("sender task"));
    }
    let errors: Vec<&Value> = outcomes
        .iter()
        .flat_map(|outcome| &outcome.errors)
        .collect();
    assert!(errors.is_empty(), "sends failed: {errors:?}");

    // MongoDB: per conversation exactly one document per accepted seq, seqs dense 1..=n.
    let mut expected: BTreeMap<String, BTreeMap<u64, (String, String)>> = BTreeMap::new();
    for (conversation_id, seq, message_id, text) in
        outcomes.iter().flat_map(|outcome| &outcome.accepted)
    {
        let previous = expected
            .entry(conversation_id.clone())
            .or_default()
            .insert(*seq, (message_id.clone(), text.clone()));
        assert!(
            previous.is_none(),
            "seq {seq} acked twice in {conversation_id}"
        );
    }
    assert_eq!(expected.len(), 2);
    for (conversation_id, acks) in &expected {
        let count = acks.len() as u64;
        let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
        loop {
            let stored = db
                .collection::<Document>("messages")
                .count_documents(doc! { "conversation_id": conversation_id })
                .await
                .expect("count");
            if stored >= count {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{conversation_id}: {stored} of {count} acked messages in mongodb"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let documents = messages_of(&db, conversation_id).await;
        let seqs: Vec<u64> = documents
            .iter()
            .map(|document| integer(document, "seq").expect("seq") as u64)
            .collect();
        assert_eq!(
            seqs,
            (1..=count).collect::<Vec<u64>>(),
            "{conversation_id}: one document per acked seq, dense from 1"
        );
        for document in &documents {
            let seq = integer(document, "seq").expect("seq") as u64;
            let (message_id, text) = &acks[&seq];
            assert_eq!(document.get_str("message_id"), Ok(message_id.as_str()));
            assert_eq!(document.get_str("text"), Ok(text.as_str()));
        }
    }
    assert_eq!(
        expected.values().map(BTreeMap::len).sum::<usize>(),
        3 * PER_SENDER
    );

    // And every sender was told "stored" for each of its messages (at least once).
    let never_stored: Vec<&String> = outcomes
        .iter()
        .flat_map(|outcome| &outcome.never_stored)
        .collect();
    assert!(
        never_stored.is_empty(),
        "no message.stored for {} acked messages (they are in mongodb): {never_stored:?}",
        never_stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offsets_and_reingest_changes_nothing() {
    let mut cluster = DurableCluster::start("parley_e2e_reingest", 1, &[]).await;
    let node = &cluster.nodes[0];
    let mut alice = node.connect("alice").await;
    let mut bob = node.connect("bob").await;
    let group = create_group(&mut alice, &["bob", "carol"], "Plans").await;
    let direct = common::create_conversation(&mut alice, "direct", &["bob"]).await;

    // A workload touching every kind of event.
    let mut ids = Vec::new();
    for index in 0..12 {
        let (client, conversation_id) = match index % 3 {
            0 => (&mut alice, &group),
            1 => (&mut bob, &group),
            _ => (&mut alice, &direct),
        };
        let ack = send(
            client,
            conversation_id,
            &format!("w-{index}"),
            &format!("message {index}"),
        )
        .await;
        ids.push((
            conversation_id.clone(),
            text_of(&ack["message_id"]).to_owned(),
        ));
    }
    let op = |conversation_id: &str, message_id: &str, extra: Value| {
        let mut args = json!({"conversation_id": conversation_id, "message_id": message_id});
        args.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        args
    };
    let (group_0, direct_2) = (&ids[0], &ids[2]);
    alice
        .ok(
            "message.edit",
            op(&group_0.0, &group_0.1, json!({"text": "edit 1"})),
        )
        .await;
    alice
        .ok(
            "message.edit",
            op(&group_0.0, &group_0.1, json!({"text": "edit 2"})),
        )
        .await;
    bob.ok(
        "reaction.add",
        op(&group_0.0, &group_0.1, json!({"emoji": "👍"})),
    )
    .await;
    alice
        .ok(
            "reaction.add",
            op(&group_0.0, &group_0.1, json!({"emoji": "🎉"})),
        )
        .await;
    bob.ok(
        "reaction.remove",
        op(&group_0.0, &group_0.1, json!({"emoji": "👍"})),
    )
    .await;
    let (group_1, group_3) = (&ids[1], &ids[3]);
    alice
        .ok(
            "reaction.add",
            op(&group_1.0, &group_1.1, json!({"emoji": "❤"})),
        )
        .await;
    bob.ok("message.delete", op(&group_1.0, &group_1.1, json!({})))
        .await;
    alice
        .ok("message.delete", op(&group_3.0, &group_3.1, json!({})))
        .await;
    alice
        .ok(
            "message.edit",
            op(&direct_2.0, &direct_2.1, json!({"text": "direct edit"})),
        )
        .await;
    bob.ok("receipt.read", json!({"conversation_id": group, "seq": 7}))
        .await;
    bob.ok(
        "receipt.delivered",
        json!({"conversation_id": direct, "seq": 4}),
    )
    .await;
    alice
        .ok(
            "conversation.add_members",
            json!({"conversation_id": group, "user_ids": ["dave", "erin"]}),
        )
        .await;
    alice
        .ok(
            "conversation.update",
            json!({"conversation_id": group, "title": "Plans, v2"}),
        )
        .await;
    alice
        .ok(
            "conversation.remove_members",
            json!({"conversation_id": group, "user_ids": ["dave"]}),
        )
        .await;
    let last = send(&mut bob, &group, "w-last", "after the changes").await;
    expect_stored(&mut bob, &group, &last).await;

    let brokers = cluster.tansu.brokers();
    let total = wait_caught_up(&brokers, INGEST_GROUP, &INGEST_TOPICS, PIPELINE_WAIT).await;
    let db = cluster.db.clone();
    let before = snapshot(&db).await;
    assert_eq!(before["messages"].len(), 13, "{:#?}", before["messages"]);
    assert_eq!(before["conversations"].len(), 2);
    assert!(!before["participants"].is_empty());

    // Stop ingest gracefully, rewind its group to the start of every topic, start it again.
    cluster.ingest.terminate();
    let status = cluster
        .ingest
        .exited_within(Duration::from_secs(20))
        .await
        .expect("ingest exits on SIGTERM");
    assert!(status.success(), "ingest exit status on SIGTERM: {status}");
    reset_group_offsets(&brokers, INGEST_GROUP, &INGEST_TOPICS).await;
    let rewound = committed(&brokers, INGEST_GROUP, &INGEST_TOPICS).await;
    let marks = watermarks(&brokers, &INGEST_TOPICS).await;
    for (key, (low, _)) in &marks {
        assert_eq!(
            rewound.get(key).copied().flatten(),
            Some(*low),
            "offset of {key:?} after the reset"
        );
    }
    cluster.ingest.restart().await;
    cluster.ingest.wait_ready(PIPELINE_WAIT).await;
    wait_caught_up(&brokers, INGEST_GROUP, &INGEST_TOPICS, PIPELINE_WAIT).await;
    let consumed = cluster
        .ingest
        .metric("parley_ingest_events_consumed_total")
        .await
        .expect("ingest exposes parley_ingest_events_consumed_total");
    assert!(
        consumed >= total as f64,
        "the restarted ingest consumed {consumed} records, the log holds {total}: it did not \
         read everything again"
    );

    let after = snapshot(&db).await;
    for (collection, documents) in &before {
        let again = &after[collection];
        let changed: Vec<(Option<&Document>, Option<&Document>)> =
            (0..documents.len().max(again.len()))
                .filter(|index| documents.get(*index) != again.get(*index))
                .map(|index| (documents.get(index), again.get(index)))
                .collect();
        assert!(
            changed.is_empty(),
            "re-ingesting changed {collection} ({} documents before, {} after); (before, after): \
             {changed:#?}",
            documents.len(),
            again.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_stop_gives_unavailable_and_traffic_resumes() {
    const MESSAGE_TIMEOUT_MS: u64 = 2000;
    let timeout = MESSAGE_TIMEOUT_MS.to_string();
    let mut cluster = DurableCluster::start(
        "parley_e2e_outage",
        2,
        &[("PARLEY__KAFKA__MESSAGE_TIMEOUT_MS", timeout.as_str())],
    )
    .await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let conversation_id = common::create_conversation(&mut alice, "direct", &["bob"]).await;

    let mut acks = send_numbered(&mut alice, &conversation_id, 3, "before", "before").await;
    expect_stored(&mut alice, &conversation_id, &acks[2]).await;

    // The broker goes away: a send fails with `unavailable` within the message timeout.
    cluster.tansu.stop();
    let started = tokio::time::Instant::now();
    let args = json!({
        "conversation_id": conversation_id,
        "client_msg_id": "during-outage",
        "text": "sent while kafka is down",
    });
    let frame = alice.request("message.send", args.clone()).await;
    let elapsed = started.elapsed();
    let error = frame
        .get("error")
        .unwrap_or_else(|| panic!("a send without kafka was accepted: {frame}"));
    assert_code(error, "unavailable");
    assert!(
        elapsed < Duration::from_millis(3 * MESSAGE_TIMEOUT_MS + 2000),
        "unavailable took {elapsed:?} (message timeout {MESSAGE_TIMEOUT_MS} ms)"
    );
    for node in [a, b] {
        wait_readyz(node, 503, "while kafka is down").await;
    }

    // The broker comes back on the same port and data; nodes and ingest were not restarted.
    cluster.tansu.resume();
    for node in [a, b] {
        wait_readyz(node, 200, "after kafka came back").await;
    }
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    let retried = loop {
        let frame = alice.request("message.send", args.clone()).await;
        if let Some(result) = frame.get("result") {
            break result.clone();
        }
        assert_code(&frame["error"], "unavailable");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retried send was still refused after {PIPELINE_WAIT:?}: {frame}{}",
            if cluster.tansu.panicked_since_start() {
                "\n(tansu's log shows a panic: with Tansu 0.6 an idempotent producer whose \
                 message timed out bumps its epoch, and the broker's storage task dies on the \
                 next produce; see the tansu log below)"
            } else {
                ""
            }
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A failed Kafka append is ambiguous, so its seq is never reused (docs/architecture.md,
    // "Outages"): the retry gets a later seq, and MongoDB never sees two messages with one seq.
    assert!(
        retried["seq"].as_u64().expect("seq") > 3,
        "the retry reused an accepted seq: {retried}"
    );
    expect_stored(&mut alice, &conversation_id, &retried).await;
    // Once accepted, the same client_msg_id gets the same ack again.
    let again = alice.ok("message.send", args.clone()).await;
    assert_eq!(again, retried, "a retry after the acceptance");
    let after = send(&mut bob, &conversation_id, "after-1", "after, from B").await;
    expect_stored(&mut bob, &conversation_id, &after).await;
    acks.push(retried);
    acks.push(after);

    // Every accepted message is in MongoDB exactly once; the failed send's tombstone aside.
    let tombstones = assert_exactly_accepted(&cluster.db, &conversation_id, &acks).await;
    for tombstone in &tombstones {
        assert_eq!(tombstone.get_str("client_msg_id"), Ok("during-outage"));
        assert_eq!(tombstone.get_bool("deleted"), Ok(true));
        assert_eq!(tombstone.get_str("text"), Ok(""));
    }
    assert!(cluster.ingest.is_running(), "ingest survived the outage");
}

/// Asserts that the messages of `conversation_id` in MongoDB are exactly the accepted `acks`
/// (seq and message id, once each). Returns the tombstones of failed sends (documents at
/// version i64::MAX, docs/architecture.md "Outages"), which are not messages.
async fn assert_exactly_accepted(
    db: &Database,
    conversation_id: &str,
    acks: &[Value],
) -> Vec<Document> {
    let (tombstones, messages): (Vec<Document>, Vec<Document>) = messages_of(db, conversation_id)
        .await
        .into_iter()
        .partition(|document| integer(document, "version") == Some(i64::MAX));
    let stored: Vec<(i64, String)> = messages
        .iter()
        .map(|document| {
            (
                integer(document, "seq").expect("seq"),
                document
                    .get_str("message_id")
                    .expect("message_id")
                    .to_owned(),
            )
        })
        .collect();
    let mut accepted: Vec<(i64, String)> = acks
        .iter()
        .map(|ack| {
            (
                ack["seq"].as_i64().expect("seq"),
                text_of(&ack["message_id"]).to_owned(),
            )
        })
        .collect();
    accepted.sort();
    assert_eq!(
        stored, accepted,
        "mongodb holds exactly the accepted messages of {conversation_id} (tombstones aside: \
         {tombstones:#?})"
    );
    tombstones
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_between_sends_is_survived_without_restarting_nodes_or_ingest() {
    // The part of the outage test that does not need a send to time out: the broker stops and
    // starts again on the same data while nothing is sent; nodes and ingest carry on.
    let mut cluster = DurableCluster::start("parley_e2e_restart", 2, &[]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let conversation_id = common::create_conversation(&mut alice, "direct", &["bob"]).await;
    let mut acks = send_numbered(&mut alice, &conversation_id, 2, "before", "before").await;
    expect_stored(&mut alice, &conversation_id, &acks[1]).await;

    cluster.tansu.stop();
    for node in [a, b] {
        wait_readyz(node, 503, "while kafka is down").await;
    }
    cluster.tansu.resume();
    for node in [a, b] {
        wait_readyz(node, 200, "after kafka came back").await;
    }
    cluster.ingest.wait_ready(PIPELINE_WAIT).await;

    let from_a = send(&mut alice, &conversation_id, "after-a", "after, from A").await;
    expect_stored(&mut alice, &conversation_id, &from_a).await;
    let from_b = send(&mut bob, &conversation_id, "after-b", "after, from B").await;
    expect_stored(&mut bob, &conversation_id, &from_b).await;
    acks.push(from_a);
    acks.push(from_b);
    let seqs: Vec<u64> = acks
        .iter()
        .map(|ack| ack["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4], "nothing failed, so seqs stay dense");
    let tombstones = assert_exactly_accepted(&cluster.db, &conversation_id, &acks).await;
    assert!(tombstones.is_empty(), "{tombstones:#?}");
    assert!(
        cluster.ingest.is_running(),
        "ingest survived the broker restart"
    );
}

/// Polls a node's `/readyz` until it answers `status`.
async fn wait_readyz(node: &TestServer, status: u16, when: &str) {
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    loop {
        let answer = node
            .http("GET", "/readyz", &[], None)
            .await
            .map(|(status, _)| status)
            .unwrap_or(0);
        if answer == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz of {} answered {answer}, not {status}, {when}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_ingest_started_before_kafka_and_mongodb_wait_and_become_ready() {
    let redis = TestRedis::start();
    let tansu = TestTansu::unstarted();
    let mongo = TestMongo::unstarted("parley_e2e_late");
    let pipeline = pipeline_env(&tansu, &mongo);
    let mut ingest = TestIngest::start(&pipeline).await;
    let node_env = node_settings(&redis, &pipeline);
    let node_env: Vec<(&str, &str)> = node_env
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let node = TestServer::start_listening(&node_env).await;

    // Neither Kafka nor MongoDB exists: both processes stay up and report not ready (observed
    // for a few seconds; each /readyz may take the services' connect timeout to answer).
    let observe_until = tokio::time::Instant::now() + Duration::from_secs(4);
    loop {
        assert!(ingest.is_running(), "ingest exited without kafka/mongodb");
        assert_eq!(
            ingest.readyz().await,
            503,
            "ingest /readyz without services"
        );
        let (status, _) = node
            .http("GET", "/readyz", &[], None)
            .await
            .expect("node answers");
        assert_eq!(status, 503, "node /readyz without services");
        let (status, _) = node
            .http("GET", "/healthz", &[], None)
            .await
            .expect("node answers");
        assert_eq!(status, 200, "node /healthz without services");
        if tokio::time::Instant::now() > observe_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ingest.is_running(), "ingest exited without kafka/mongodb");

    // The services appear and get set up: both turn ready on their own.
    tansu.resume();
    mongo.resume();
    TestIngest::setup(&pipeline, PIPELINE_WAIT).await;
    ingest.wait_ready(PIPELINE_WAIT).await;
    node.wait_ready(PIPELINE_WAIT).await;

    let mut alice = node.connect("alice").await;
    let conversation_id = common::create_conversation(&mut alice, "direct", &["bob"]).await;
    let ack = send(
        &mut alice,
        &conversation_id,
        "late-1",
        "after the services came",
    )
    .await;
    expect_stored(&mut alice, &conversation_id, &ack).await;
    let db = mongo.database().await;
    let document = wait_for_document(
        &db,
        "messages",
        doc! { "_id": text_of(&ack["message_id"]) },
        "the message sent once ready",
        |_| true,
    )
    .await;
    assert_eq!(document.get_str("text"), Ok("after the services came"));
    assert_eq!(integer(&document, "seq"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_history_is_served_from_mongodb_after_caches_are_gone() {
    // A window and cache of 4 messages: everything older comes from MongoDB.
    let mut cluster = DurableCluster::start(
        "parley_e2e_history",
        1,
        &[("PARLEY__LIMITS__RECENT_MESSAGES", "4")],
    )
    .await;
    let mut alice = cluster.nodes[0].connect("alice").await;
    let conversation_id = create_group(&mut alice, &["bob", "carol"], "history").await;
    let acks = send_numbered(&mut alice, &conversation_id, 12, "h", "text").await;
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    while messages_of(&cluster.db, &conversation_id).await.len() < acks.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest did not store the {} messages within {PIPELINE_WAIT:?}",
            acks.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected: Vec<(u64, String)> = (1..=12).map(|seq| (seq, format!("text {seq}"))).collect();
    let texts = |messages: &Value| -> Vec<(u64, String)> {
        messages
            .as_array()
            .expect("messages")
            .iter()
            .map(|message| {
                (
                    message["seq"].as_u64().expect("seq"),
                    text_of(&message["text"]).to_owned(),
                )
            })
            .collect()
    };

    // The cached messages expire, the sequence and the recorded acks are lost, and the node
    // restarts: only MongoDB knows the old messages (the conversation directory stays in Redis).
    for pattern in ["parley:cache*", "parley:seq:*", "parley:ack:*"] {
        let deleted = std::process::Command::new("redis-cli")
            .args(["-p", &cluster.redis.port.to_string(), "EVAL"])
            .arg("local keys = redis.call('KEYS', ARGV[1]) for _, key in ipairs(keys) do redis.call('DEL', key) end return #keys")
            .args(["0", pattern])
            .output()
            .expect("redis-cli runs");
        let count = String::from_utf8_lossy(&deleted.stdout).trim().to_owned();
        assert!(
            deleted.status.success() && count.parse::<u64>().is_ok_and(|count| count > 0),
            "deleting {pattern}: {deleted:?}"
        );
    }
    cluster.nodes[0].restart().await;
    let mut alice = cluster.nodes[0].connect("alice").await;
    let mut bob = cluster.nodes[0].connect("bob").await;

    let history = bob
        .ok(
            "history.get",
            json!({ "conversation_id": conversation_id, "limit": 100 }),
        )
        .await;
    assert_eq!(texts(&history["messages"]), expected, "{history}");
    assert_eq!(history["has_more"], false);
    let older = bob
        .ok(
            "history.get",
            json!({ "conversation_id": conversation_id, "before_seq": 6, "limit": 3 }),
        )
        .await;
    assert_eq!(
        texts(&older["messages"]),
        expected[2..5].to_vec(),
        "{older}"
    );
    let synced = bob
        .ok(
            "sync",
            json!({ "conversations": { conversation_id.as_str(): 2 } }),
        )
        .await;
    assert_eq!(
        texts(&synced["conversations"][conversation_id.as_str()]["messages"]),
        expected[2..].to_vec(),
        "{synced}"
    );

    // The sequence restarts from MongoDB's newest seq: the next message is 13, and a retry of
    // an old client_msg_id is found in MongoDB instead of becoming a second message.
    let next = send(&mut bob, &conversation_id, "h-13", "text 13").await;
    assert_eq!(next["seq"], 13, "{next}");
    let retried = send(&mut alice, &conversation_id, "h-1", "text 1").await;
    assert_eq!(retried["message_id"], acks[0]["message_id"], "{retried}");
    assert_eq!(retried["seq"], 1, "{retried}");
}

/// Sends `count` messages numbered from 1 (`client_msg_id` "{id_prefix}-N", text
/// "{text_prefix} N") to one conversation; returns the acks in order.
async fn send_numbered(
    client: &mut Client,
    conversation_id: &str,
    count: usize,
    id_prefix: &str,
    text_prefix: &str,
) -> Vec<Value> {
    let mut acks = Vec::with_capacity(count);
    for index in 1..=count {
        let client_msg_id = format!("{id_prefix}-{index}");
        acks.push(
            send(
                client,
                conversation_id,
                &client_msg_id,
                &format!("{text_prefix} {index}"),
            )
            .await,
        );
    }
    acks
}

/// Sends `count` messages from `client`, round robin over `conversations`; returns the acks.
async fn send_round_robin(
    client: &mut Client,
    conversations: &[String],
    count: usize,
    tag: &str,
) -> Vec<(String, Value)> {
    let mut acks = Vec::with_capacity(count);
    for index in 0..count {
        let conversation_id = &conversations[index % conversations.len()];
        let ack = send(
            client,
            conversation_id,
            &format!("{tag}-{index}"),
            &format!("{tag} {index}"),
        )
        .await;
        acks.push((conversation_id.clone(), ack));
    }
    acks
}

/// Waits until MongoDB holds `expected` message documents in total.
async fn wait_for_message_count(db: &Database, expected: u64) {
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    loop {
        let stored = db
            .collection::<Document>("messages")
            .count_documents(doc! {})
            .await
            .expect("count");
        if stored == expected {
            return;
        }
        assert!(
            stored < expected,
            "{stored} documents for {expected} accepted messages"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stored} of {expected} messages in mongodb after {PIPELINE_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn events_applied(ingest: &TestIngest) -> f64 {
    ingest
        .metric("parley_ingest_events_applied_total")
        .await
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_processes_share_the_partitions_and_one_takes_over_when_the_other_stops() {
    let cluster = DurableCluster::start("parley_e2e_two_ingest", 1, &[]).await;
    let mut second = TestIngest::start(&cluster.pipeline_env()).await;
    second.wait_ready(PIPELINE_WAIT).await;
    // The group has rebalanced once both members report partitions of their own, unchanged
    // over more than one refresh of the gauge (every 5 s): a join in progress may hand a member
    // partitions it loses again.
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    let mut shared_since: Option<tokio::time::Instant> = None;
    loop {
        let shared = assigned_partitions(&cluster.ingest).await > 0.0
            && assigned_partitions(&second).await > 0.0;
        shared_since = if shared {
            shared_since.or(Some(tokio::time::Instant::now()))
        } else {
            None
        };
        if shared_since.is_some_and(|since| since.elapsed() > Duration::from_secs(6)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ingests did not share the partitions within {PIPELINE_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut alice = cluster.nodes[0].connect("alice").await;
    // Many conversations, so their keys spread over the partitions of both group members.
    let mut conversations = Vec::new();
    for index in 0..12 {
        conversations.push(create_group(&mut alice, &["bob"], &format!("shared {index}")).await);
    }
    let mut acks = send_round_robin(&mut alice, &conversations, 48, "shared").await;
    wait_for_message_count(&cluster.db, acks.len() as u64).await;
    // A member counts a batch's writes once the batch is committed, after its stored acks are
    // appended: the documents can be in MongoDB a moment before the counters move.
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    loop {
        let applied = [
            events_applied(&cluster.ingest).await,
            events_applied(&second).await,
        ];
        if applied.iter().all(|count| *count > 0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both group members applied writes ({applied:?} after {PIPELINE_WAIT:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One member stops (SIGTERM: it finishes its batch and leaves the group): the other takes
    // its partitions over and every message, older or newer, is stored exactly once. (A member
    // killed with -9 is taken over once its session expires on Apache Kafka; Tansu 0.6 does not
    // rebalance the survivors then, only at the next join: see docs/operations.md.)
    second.terminate();
    assert!(
        second.exited_within(PIPELINE_WAIT).await.is_some(),
        "the second ingest exits on SIGTERM"
    );
    acks.extend(send_round_robin(&mut alice, &conversations, 24, "after-kill").await);
    wait_for_message_count(&cluster.db, acks.len() as u64).await;
    for conversation_id in &conversations {
        let expected: Vec<(i64, String)> = acks
            .iter()
            .filter(|(id, _)| id == conversation_id)
            .map(|(_, ack)| {
                (
                    ack["seq"].as_i64().expect("seq"),
                    text_of(&ack["message_id"]).to_owned(),
                )
            })
            .collect();
        let stored: Vec<(i64, String)> = messages_of(&cluster.db, conversation_id)
            .await
            .iter()
            .map(|document| {
                (
                    integer(document, "seq").expect("seq"),
                    document
                        .get_str("message_id")
                        .expect("message_id")
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(stored, expected, "{conversation_id}");
    }
}

async fn assigned_partitions(ingest: &TestIngest) -> f64 {
    ingest
        .metric("parley_ingest_assigned_partitions")
        .await
        .unwrap_or(0.0)
}

/// Polls a node's `/readyz` until `check` accepts its status and JSON body.
async fn wait_readyz_body(node: &TestServer, when: &str, check: impl Fn(u16, &Value) -> bool) {
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    loop {
        let answer = node.http("GET", "/readyz", &[], None).await;
        if let Ok((status, body)) = &answer {
            if check(*status, body) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz of {} answered {answer:?} {when}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_outage_pauses_ingest_while_nodes_keep_accepting_then_everything_is_stored() {
    let mut cluster = DurableCluster::start("parley_e2e_mongo_outage", 1, &[]).await;
    let node = &cluster.nodes[0];
    let mut alice = node.connect("alice").await;
    let conversation_id = common::create_conversation(&mut alice, "direct", &["bob"]).await;
    let mut acks = vec![send(&mut alice, &conversation_id, "before", "before the outage").await];
    expect_stored(&mut alice, &conversation_id, &acks[0]).await;

    // MongoDB goes away: ingest is not ready and pauses; the node stays ready, degraded, and
    // keeps accepting sends (they need only Kafka and Redis).
    cluster.mongo.stop();
    wait_readyz_body(node, "while mongodb is down", |status, body| {
        status == 200
            && body["degraded"]
                .as_str()
                .is_some_and(|reason| reason.contains("store"))
    })
    .await;
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    while cluster.ingest.readyz().await != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest stayed ready without mongodb"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acks.extend(
        send_numbered(
            &mut alice,
            &conversation_id,
            5,
            "during",
            "during the outage",
        )
        .await,
    );

    // MongoDB returns on the same data: ingest resumes without a restart, every sender gets
    // its `message.stored`, and MongoDB holds each accepted message once.
    cluster.mongo.resume();
    for ack in &acks[1..] {
        expect_stored(&mut alice, &conversation_id, ack).await;
    }
    cluster.ingest.wait_ready(PIPELINE_WAIT).await;
    wait_readyz_body(node, "after mongodb came back", |status, body| {
        status == 200 && body.get("degraded").is_none()
    })
    .await;
    let tombstones = assert_exactly_accepted(&cluster.db, &conversation_id, &acks).await;
    assert!(tombstones.is_empty(), "{tombstones:#?}");
    assert!(cluster.ingest.is_running(), "ingest survived the outage");
}

/// Issue 6: the Grafana dashboard and the alerting rules reference only metrics that a live node
/// and a live ingest export, and docs/operations.md lists every metric they export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_live_metrics_and_the_docs_list_every_one() {
    /// Metric names referenced by a PromQL expression: identifiers that are not functions,
    /// aggregations, keywords, grouping labels, label matchers, ranges, numbers, durations,
    /// strings or Grafana variables.
    fn metric_names(promql: &str) -> BTreeSet<String> {
        const KEYWORDS: [&str; 8] = [
            "and", "or", "unless", "offset", "bool", "inf", "nan", "atan2",
        ];
        const GROUPING: [&str; 6] = [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ];
        let chars: Vec<char> = promql.chars().collect();
        let skip_past = |from: usize, open: char, close: char| {
            let mut depth = 0;
            let mut index = from;
            let mut quote = None;
            while index < chars.len() {
                let char = chars[index];
                match quote {
                    Some(_) if char == '\\' => index += 1,
                    Some(quoted) if char == quoted => quote = None,
                    Some(_) => {}
                    None if matches!(char, '"' | '\'' | '`') => quote = Some(char),
                    None if char == open => depth += 1,
                    None if char == close => {
                        depth -= 1;
                        if depth == 0 {
                            return index + 1;
                        }
                    }
                    None => {}
                }
                index += 1;
            }
            panic!("unbalanced {open}{close} in {promql}")
        };
        let is_identifier = |char: char| char.is_ascii_alphanumeric() || char == '_' || char == ':';
        let mut names = BTreeSet::new();
        let mut index = 0;
        while index < chars.len() {
            let char = chars[index];
            if matches!(char, '"' | '\'' | '`') {
                let mut end = index + 1;
                while chars[end] != char {
                    end += if chars[end] == '\\' { 2 } else { 1 };
                }
                index = end + 1;
            } else if char == '{' {
                index = skip_past(index, '{', '}');
            } else if char == '[' {
                index = skip_past(index, '[', ']');
            } else if char.is_ascii_digit()
                || (char == '.' && chars.get(index + 1).is_some_and(char::is_ascii_digit))
            {
                // A number or a duration (0.99, 1e3, 15m).
                while index < chars.len() && (is_identifier(chars[index]) || chars[index] == '.') {
                    index += 1;
                }
            } else if char == '$' {
                index += 1;
                while index < chars.len()
                    && (is_identifier(chars[index]) || "{}".contains(chars[index]))
                {
                    index += 1;
                }
            } else if char.is_ascii_alphabetic() || char == '_' || char == ':' {
                let start = index;
                while index < chars.len() && is_identifier(chars[index]) {
                    index += 1;
                }
                let identifier: String = chars[start..index].iter().collect();
                let mut next = index;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let before_parenthesis = chars.get(next) == Some(&'(');
                // `sum by (le) (...)`: an aggregation whose grouping comes first.
                let next_word: String = chars[next..]
                    .iter()
                    .take_while(|char| is_identifier(**char))
                    .collect();
                let before_grouping = next_word == "by" || next_word == "without";
                if before_grouping {
                    // Skipped: the grouping keyword and its labels come next.
                } else if GROUPING.contains(&identifier.as_str()) {
                    if before_parenthesis {
                        index = skip_past(next, '(', ')');
                    }
                } else if !before_parenthesis && !KEYWORDS.contains(&identifier.as_str()) {
                    names.insert(identifier);
                }
            } else {
                index += 1;
            }
        }
        names
    }

    /// `name → type` of every `# TYPE` line of a Prometheus text exposition.
    fn exported_types(exposition: &str) -> BTreeMap<String, String> {
        exposition
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
            .collect()
    }

    /// Whether `name` (a series name, maybe a histogram's `_bucket`/`_sum`/`_count`) is exported.
    fn is_exported(types: &BTreeMap<String, String>, name: &str) -> bool {
        name == "up"
            || types.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix).is_some_and(|family| {
                    types.get(family).is_some_and(|kind| {
                        kind == "histogram" || (kind == "summary" && *suffix != "_bucket")
                    })
                })
            })
    }

    /// The Markdown anchor of a heading, as GitHub makes it.
    fn anchor(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|char| char.is_alphanumeric() || matches!(char, ' ' | '-' | '_'))
            .map(|char| if char == ' ' { '-' } else { char })
            .collect()
    }

    /// Every `targets[].expr` of the dashboard's panels, rows' nested panels included.
    fn panel_exprs(panels: &[Value], exprs: &mut Vec<String>) {
        const DATASOURCE: &str = r#"{"type":"prometheus","uid":"prometheus"}"#;
        let datasource: Value = serde_json::from_str(DATASOURCE).expect("datasource");
        for panel in panels {
            if panel["type"] != "row" {
                assert_eq!(panel["datasource"], datasource, "panel {}", panel["title"]);
                let targets = panel["targets"].as_array().expect("targets");
                assert!(
                    !targets.is_empty(),
                    "panel {} has no target",
                    panel["title"]
                );
                for target in targets {
                    assert_eq!(target["datasource"], datasource, "{target}");
                    exprs.push(target["expr"].as_str().expect("expr").to_owned());
                }
            }
            if let Some(nested) = panel["panels"].as_array() {
                panel_exprs(nested, exprs);
            }
        }
    }

    // The extraction itself, on what the dashboard and the rules use.
    let sample = r#"histogram_quantile(0.99, sum by (le, op) (rate(parley_x_seconds_bucket{job=~"$job",op="a{b}"}[$__rate_interval]))) / ignoring (code) group_left sum without (code) (parley_y_total offset 15m) > 1e3 and on (instance) up"#;
    assert_eq!(
        metric_names(sample),
        ["parley_x_seconds_bucket", "parley_y_total", "up"]
            .map(String::from)
            .into(),
    );

    // A little traffic on two nodes, one failing request, and the pipeline through ingest.
    let cluster = DurableCluster::start("parley_e2e_metrics", 2, &[]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let conversation_id = create_group(&mut alice, &["bob"], "Metrics").await;
    bob.event("member.joined").await;
    for number in 0..3 {
        let ack = send(
            &mut alice,
            &conversation_id,
            &format!("metrics-{number}"),
            "hi",
        )
        .await;
        expect_stored(&mut alice, &conversation_id, &ack).await;
        bob.event("message.new").await;
    }
    let error = alice
        .err(
            "conversation.get",
            json!({ "conversation_id": "no-such-conversation" }),
        )
        .await;
    let error_code = error["code"].as_str().expect("error code").to_owned();

    // Live expositions: both nodes and ingest, once ingest has published its partition lag.
    let scrape = |addr: String| async move {
        let (status, body) = common::durable::http_get(&addr, "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        body
    };
    let node_a = scrape(a.addr.clone()).await;
    let node_b = scrape(b.addr.clone()).await;
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    let ingest = loop {
        let body = scrape(cluster.ingest.addr.clone()).await;
        if body.contains("parley_ingest_consumer_lag{") {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest never exported parley_ingest_consumer_lag:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let failed = format!(r#"parley_errors_total{{code="{error_code}"}} 1"#);
    assert!(node_a.contains(&failed), "{failed} missing:\n{node_a}");
    let accepted = [&node_a, &node_b].map(|body| {
        common::durable::metric_in(body, "parley_messages_accepted_total").unwrap_or(0.0)
    });
    assert!(accepted.iter().sum::<f64>() >= 3.0, "{accepted:?}");
    assert!(common::durable::metric_in(&ingest, "parley_ingest_acks_emitted_total") >= Some(3.0));
    let node_types = exported_types(&format!("{node_a}{node_b}"));
    let ingest_types = exported_types(&ingest);
    for expected in [
        "parley_redis_bus_reconnects_total",
        "parley_kafka_producer_restarts_total",
        "parley_node_ready",
        "process_resident_memory_bytes",
    ] {
        assert!(node_types.contains_key(expected), "node lacks {expected}");
    }
    assert!(ingest_types.contains_key("parley_ingest_ready"));
    let mut live = node_types.clone();
    live.extend(ingest_types.clone());

    // The dashboard: Grafana JSON, every expression on live metrics.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dashboard_text =
        std::fs::read_to_string(format!("{root}/deploy/grafana/dashboards/parley.json"))
            .expect("dashboard file");
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("dashboard JSON");
    assert!(dashboard["schemaVersion"].as_u64() >= Some(39));
    let mut exprs = Vec::new();
    panel_exprs(dashboard["panels"].as_array().expect("panels"), &mut exprs);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .expect("variable query");
        let query = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map_or(query, |(selector, _label)| selector);
        exprs.push(query.to_owned());
    }
    assert!(exprs.len() > 20, "{exprs:?}");

    // The alerting rules: complete rules, runbooks that exist in the docs.
    let operations =
        std::fs::read_to_string(format!("{root}/docs/operations.md")).expect("operations.md");
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| anchor(heading.trim_start_matches('#')))
        .collect();
    let alerts_text = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml"))
        .expect("alerts file");
    let alerts: Value = serde_norway::from_str(&alerts_text).expect("alerts YAML");
    let mut alert_exprs = Vec::new();
    for group in alerts["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name");
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("critical" | "warning")
                ),
                "{name}: severity"
            );
            for annotation in ["summary", "description"] {
                assert!(
                    rule["annotations"][annotation].is_string(),
                    "{name}: {annotation}"
                );
            }
            let runbook = rule["annotations"]["runbook_url"]
                .as_str()
                .expect("runbook_url");
            let (_, fragment) = runbook
                .split_once("docs/operations.md#")
                .unwrap_or_else(|| panic!("{name}: runbook {runbook}"));
            assert!(
                anchors.contains(fragment),
                "{name}: no heading for #{fragment}"
            );
            alert_exprs.push(rule["expr"].as_str().expect("expr").to_owned());
        }
    }
    let alerted: BTreeSet<String> = alert_exprs
        .iter()
        .flat_map(|expr| metric_names(expr))
        .collect();
    for required in [
        "up",
        "parley_ingest_consumer_lag",
        "parley_errors_total",
        "parley_ws_closes_total",
        "parley_redis_bus_reconnects_total",
        "parley_log_append_failures_total",
        "parley_kafka_producer_restarts_total",
        "parley_ingest_retries_total",
    ] {
        assert!(alerted.contains(required), "no alert on {required}");
    }
    assert!(alert_exprs
        .iter()
        .any(|expr| expr.contains(r#"code="unavailable""#)));
    assert!(alert_exprs
        .iter()
        .any(|expr| expr.contains(r#"code="4009""#)));

    // Every referenced metric is exported live.
    let mut missing = Vec::new();
    for expr in exprs.iter().chain(&alert_exprs) {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric found in {expr}");
        for name in names {
            if !is_exported(&live, &name) {
                missing.push(format!("{name} (in {expr})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exported by node or ingest: {missing:#?}"
    );

    // And docs/operations.md lists every metric they export.
    let undocumented: Vec<&String> = live
        .keys()
        .filter(|name| {
            !operations.contains(&format!("`{name}`"))
                && !operations.contains(&format!("`{name}{{"))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/operations.md: {undocumented:?}"
    );
}
