//! Several real parley-server nodes sharing one real Redis behave as one.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{create_conversation, send, seqs, Client, TestCluster, TestServer, WAIT};
use serde_json::{json, Value};

/// A sample of a metric with exactly these labels, 0 when never exported.
async fn sample(server: &TestServer, series: &str) -> f64 {
    let (_, body) = server.http("GET", "/metrics", &[], None).await.unwrap();
    body.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Reads `count` message.new events of one conversation and returns their seqs.
async fn receive_seqs(client: &mut Client, conversation_id: &str, count: usize) -> Vec<u64> {
    let mut received = Vec::new();
    while received.len() < count {
        let event = client.event("message.new").await;
        if event["message"]["conversation_id"] == conversation_id {
            received.push(event["message"]["seq"].as_u64().unwrap());
        }
    }
    received
}

#[tokio::test]
async fn users_on_two_nodes_use_every_operation() {
    let cluster = TestCluster::start(2, &[]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    assert_ne!(alice.welcome["node_id"], bob.welcome["node_id"]);

    let direct = create_conversation(&mut alice, "direct", &["bob"]).await;
    bob.event("member.joined").await;
    // The same pair from the other node finds the same conversation.
    let again = create_conversation(&mut bob, "direct", &["alice"]).await;
    assert_eq!(again, direct);

    let ack = send(&mut alice, &direct, "m1", "hello from A").await;
    let new = bob.event("message.new").await;
    assert_eq!(new["message"]["message_id"], ack["message_id"]);
    alice.event("message.stored").await;
    assert_eq!(
        alice.event("message.new").await["message"]["seq"],
        1,
        "her own message"
    );
    let reply = send(&mut bob, &direct, "m2", "hello from B").await;
    assert_eq!(reply["seq"], 2);
    assert_eq!(alice.event("message.new").await["message"]["seq"], 2);

    // Mutations of a message accepted on the other node.
    alice
        .ok(
            "message.edit",
            json!({"conversation_id": direct, "message_id": ack["message_id"], "text": "edited"}),
        )
        .await;
    assert_eq!(
        bob.event("message.edited").await["message"]["text"],
        "edited"
    );
    bob.ok(
        "reaction.add",
        json!({"conversation_id": direct, "message_id": ack["message_id"], "emoji": "👍"}),
    )
    .await;
    assert_eq!(
        alice.event("reaction.updated").await["reactions"]["👍"],
        json!(["bob"])
    );
    // (Sending raised each sender's own watermarks; alice has not read bob's seq 2 yet.)
    alice
        .ok("receipt.read", json!({"conversation_id": direct, "seq": 2}))
        .await;
    let receipt = bob.event("receipt.updated").await;
    assert_eq!(receipt["user_id"], "alice");
    assert_eq!(receipt["read_seq"], 2);
    bob.ok("typing.start", json!({"conversation_id": direct}))
        .await;
    assert_eq!(alice.event("typing").await["user_id"], "bob");
    let history = bob
        .ok("history.get", json!({"conversation_id": direct}))
        .await;
    assert_eq!(seqs(&history["messages"]), vec![1, 2]);
    assert_eq!(history["messages"][0]["text"], "edited");

    // Membership changes made on one node reach sessions on the other.
    let mut carol = a.connect("carol").await;
    let group = create_conversation(&mut bob, "group", &[]).await;
    bob.ok(
        "conversation.add_members",
        json!({"conversation_id": group, "user_ids": ["carol"]}),
    )
    .await;
    assert_eq!(
        carol.event("member.joined").await["conversation_id"],
        group.as_str()
    );
    send(&mut bob, &group, "g1", "welcome carol").await;
    assert_eq!(
        carol.event("message.new").await["message"]["text"],
        "welcome carol"
    );
    carol
        .ok("conversation.leave", json!({"conversation_id": group}))
        .await;
    assert_eq!(bob.event("member.left").await["user_ids"], json!(["carol"]));
    let error = carol
        .err(
            "message.send",
            json!({"conversation_id": group, "client_msg_id": "x", "text": "still here?"}),
        )
        .await;
    assert_eq!(error["code"], "not_member");

    // The rest of the operations across nodes: title, remove, forward, delete.
    let mut dave = b.connect("dave").await;
    let team = create_conversation(&mut alice, "group", &["bob", "dave"]).await;
    bob.event("member.joined").await;
    dave.event("member.joined").await;
    bob.ok(
        "conversation.update",
        json!({"conversation_id": team, "title": "team"}),
    )
    .await;
    assert_eq!(
        alice.event("conversation.updated").await["conversation"]["title"],
        "team"
    );
    alice
        .ok(
            "conversation.remove_members",
            json!({"conversation_id": team, "user_ids": ["dave"]}),
        )
        .await;
    assert_eq!(dave.event("member.left").await["user_ids"], json!(["dave"]));
    let forwarded = bob
        .ok(
            "message.forward",
            json!({"conversation_id": direct, "message_id": ack["message_id"],
                   "to_conversation_id": team, "client_msg_id": "f1"}),
        )
        .await;
    let new = alice.event("message.new").await;
    assert_eq!(
        new["message"]["forwarded_from"]["message_id"],
        ack["message_id"]
    );
    assert_eq!(new["message"]["text"], "edited");
    dave.no_event("message.new", Duration::from_millis(300))
        .await;
    bob.ok(
        "message.delete",
        json!({"conversation_id": team, "message_id": forwarded["message_id"]}),
    )
    .await;
    let deleted = alice.event("message.deleted").await;
    assert_eq!(deleted["seq"], forwarded["seq"]);

    // Presence across nodes.
    let presence = carol
        .ok("presence.get", json!({"user_ids": ["alice", "bob", "zoe"]}))
        .await;
    assert_eq!(presence["presence"]["bob"]["online"], true);
    assert_eq!(presence["presence"]["zoe"]["online"], false);
    drop(bob);
    let offline = alice.event("presence").await;
    assert_eq!(offline["user_id"], "bob");
    assert_eq!(offline["online"], false);

    // Every node runs the abandoned-send reaper (issue #19); none was needed here.
    let (_, metrics) = a.http("GET", "/metrics", &[], None).await.unwrap();
    for outcome in ["tombstoned", "stored"] {
        let series = format!("parley_abandoned_sends_settled_total{{outcome=\"{outcome}\"}} 0");
        assert!(
            metrics.as_str().unwrap_or_default().contains(&series),
            "{series} exported"
        );
    }
}

#[tokio::test]
async fn racing_senders_on_three_nodes_give_every_recipient_dense_ordered_seqs() {
    let cluster = TestCluster::start(3, &[]).await;
    let nodes = &cluster.nodes;
    let users = ["s0", "s1", "s2", "s3"];
    let mut owner = nodes[0].connect("owner").await;
    let group = create_conversation(&mut owner, "group", &users).await;
    // One listener per node.
    let mut listeners = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        listeners.push(node.connect(&format!("listener{index}")).await);
    }
    owner
        .ok(
            "conversation.add_members",
            json!({"conversation_id": group, "user_ids": ["listener0", "listener1", "listener2"]}),
        )
        .await;
    for listener in &mut listeners {
        listener.event("member.joined").await;
    }
    const EACH: usize = 25;
    let mut senders = Vec::new();
    for (index, user) in users.iter().enumerate() {
        let client = nodes[index % nodes.len()].connect(user).await;
        let group = group.clone();
        senders.push(tokio::spawn(async move {
            let mut client = client;
            let mut acks = Vec::new();
            for number in 0..EACH {
                let ack = send(&mut client, &group, &format!("{index}-{number}"), "race").await;
                acks.push(ack["seq"].as_u64().unwrap());
            }
            acks
        }));
    }
    let mut all_acks = Vec::new();
    for sender in senders {
        all_acks.extend(sender.await.unwrap());
    }
    let total = users.len() * EACH;
    let distinct: HashSet<u64> = all_acks.iter().copied().collect();
    assert_eq!(distinct.len(), total, "every ack has its own seq");
    assert_eq!(distinct, (1..=total as u64).collect());
    for listener in &mut listeners {
        let received = receive_seqs(listener, &group, total).await;
        assert_eq!(
            received,
            (1..=total as u64).collect::<Vec<_>>(),
            "strictly increasing, no gap, no duplicate"
        );
    }
}

#[tokio::test]
async fn a_retry_through_another_node_returns_the_original_ack() {
    let cluster = TestCluster::start(2, &[]).await;
    let mut alice_a = cluster.nodes[0].connect("alice").await;
    let mut alice_b = cluster.nodes[1].connect("alice").await;
    let mut bob = cluster.nodes[1].connect("bob").await;
    let direct = create_conversation(&mut alice_a, "direct", &["bob"]).await;
    let first = send(&mut alice_a, &direct, "once", "only once").await;
    let retry = send(&mut alice_b, &direct, "once", "only once").await;
    assert_eq!(first, retry);
    assert_eq!(bob.event("message.new").await["message"]["seq"], 1);
    bob.no_event("message.new", Duration::from_millis(300))
        .await;
    let history = bob
        .ok("history.get", json!({"conversation_id": direct}))
        .await;
    assert_eq!(seqs(&history["messages"]), vec![1]);
}

#[tokio::test]
async fn a_node_without_members_receives_none_of_the_traffic() {
    let cluster = TestCluster::start(3, &[]).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let _carol = c.connect("carol").await;
    let direct = create_conversation(&mut alice, "direct", &["bob"]).await;
    // Bob's node fans out what is sent once its subscription took effect (the seqs before
    // are `sync`'s: actors/src/delivery_floor.rs); under the suite's load the sends could
    // outrun it (one failed run: bob waited for a message.new that was not live for him).
    bob.event("member.joined").await;
    for number in 0..10 {
        send(&mut alice, &direct, &format!("m{number}"), "not for C").await;
    }
    receive_seqs(&mut bob, &direct, 10).await;
    let series = "parley_bus_envelopes_received_total{topic=\"conversation\"}";
    assert!(
        sample(b, series).await >= 10.0,
        "B receives the conversation"
    );
    assert_eq!(
        sample(c, series).await,
        0.0,
        "C has no member: it receives nothing"
    );
}

#[tokio::test]
async fn clients_of_a_killed_node_reconnect_elsewhere_and_sync() {
    let mut cluster = TestCluster::start(2, &[("PARLEY__REDIS__PRESENCE_TTL_MS", "900")]).await;
    let mut alice = cluster.nodes[0].connect("alice").await;
    let mut bob = cluster.nodes[1].connect("bob").await;
    let direct = create_conversation(&mut alice, "direct", &["bob"]).await;
    bob.event("member.joined").await;
    send(&mut alice, &direct, "m1", "before the crash").await;
    bob.event("message.new").await;
    cluster.nodes[0].kill9();
    drop(alice);
    // Bob's node notices the dead node's user within the presence TTL.
    let offline = bob.event("presence").await;
    assert_eq!(offline["user_id"], "alice");
    assert_eq!(offline["online"], false);
    for number in 0..3 {
        send(
            &mut bob,
            &direct,
            &format!("b{number}"),
            "while alice is away",
        )
        .await;
    }
    let mut alice = cluster.nodes[1]
        .connect_to("alice", &cluster.nodes[1])
        .await;
    let synced = alice
        .ok("sync", json!({"conversations": {direct.clone(): 1}}))
        .await;
    let missed = &synced["conversations"][&direct];
    assert_eq!(seqs(&missed["messages"]), vec![2, 3, 4]);
    assert_eq!(missed["has_more"], false);
}

#[tokio::test]
async fn a_redis_outage_fails_operations_with_unavailable_and_the_nodes_recover() {
    let cluster = TestCluster::start(2, &[("PARLEY__REDIS__COMMAND_TIMEOUT_MS", "300")]).await;
    let mut alice = cluster.nodes[0].connect("alice").await;
    let mut bob = cluster.nodes[1].connect("bob").await;
    let direct = create_conversation(&mut alice, "direct", &["bob"]).await;
    send(&mut alice, &direct, "m1", "before").await;
    bob.event("message.new").await;

    cluster.redis.stop();
    let error = alice
        .err(
            "message.send",
            json!({"conversation_id": direct, "client_msg_id": "m2", "text": "during"}),
        )
        .await;
    assert_eq!(error["code"], "unavailable", "{error}");
    let (status, _) = cluster.nodes[0]
        .http("GET", "/readyz", &[], None)
        .await
        .unwrap();
    assert_eq!(status, 503, "not ready without Redis");

    cluster.redis.resume();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = cluster.nodes[1]
            .http("GET", "/readyz", &[], None)
            .await
            .unwrap();
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node B never became ready again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same processes serve again; the retried send is accepted exactly once.
    let mut accepted: Option<Value> = None;
    while accepted.is_none() {
        let frame = alice
            .request(
                "message.send",
                json!({"conversation_id": direct, "client_msg_id": "m2", "text": "during"}),
            )
            .await;
        if frame.get("result").is_some() {
            accepted = Some(frame["result"].clone());
        } else {
            assert_eq!(frame["error"]["code"], "unavailable", "{frame}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "sends never recovered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(accepted.unwrap()["seq"], 2);
    assert_eq!(bob.event("message.new").await["message"]["seq"], 2);
    let history = bob
        .ok("history.get", json!({"conversation_id": direct}))
        .await;
    assert_eq!(seqs(&history["messages"]), vec![1, 2]);
}

#[tokio::test]
async fn a_node_started_before_redis_waits_and_becomes_ready_on_its_own() {
    let redis = common::TestRedis::start();
    redis.stop();
    let url = redis.url();
    let node = TestServer::start_listening(&[
        ("PARLEY__REDIS__URL", url.as_str()),
        ("PARLEY__REDIS__COMMAND_TIMEOUT_MS", "200"),
    ])
    .await;
    let (status, body) = node.http("GET", "/readyz", &[], None).await.unwrap();
    assert_eq!(status, 503, "{body}");
    let (status, _) = node.http("GET", "/healthz", &[], None).await.unwrap();
    assert_eq!(status, 200, "the process is up while it waits");
    redis.resume();
    node.wait_ready(WAIT).await;
    let mut alice = node.connect("alice").await;
    let direct = create_conversation(&mut alice, "direct", &["bob"]).await;
    assert_eq!(send(&mut alice, &direct, "m1", "hello").await["seq"], 1);
}

/// Issue #19: a send whose node died right after reserving its seq, and that nobody retried,
/// becomes a deleted message the members read in its place (the node's abandoned-send reaper),
/// instead of a hole no `sync` can fill.
#[tokio::test]
async fn a_send_whose_node_died_and_nobody_retried_becomes_a_deleted_message() {
    let cluster = TestCluster::start(1, &[]).await;
    let node = &cluster.nodes[0];
    let mut alice = node.connect("alice").await;
    let conversation_id = create_conversation(&mut alice, "group", &["bob"]).await;
    // Another node reserves seq 1 for bob's send and dies before its append.
    let dir = tempfile::tempdir().expect("temporary directory");
    let empty = persistence::EmbeddedStore::open(&dir.path().join("store.redb")).expect("store");
    let client = persistence::redis::RedisClient::new(persistence::redis::RedisConfig::new(
        cluster.redis.url(),
    ))
    .expect("redis client");
    let dead = persistence::redis::RedisSequencer::new(client, std::sync::Arc::new(empty))
        .with_in_flight_ttl(Duration::from_millis(300));
    let key = ports::DedupKey {
        sender_id: wire::UserId::new("bob"),
        client_msg_id: wire::ClientMsgId::new("never-retried"),
    };
    let conversation = wire::ConversationId::new(&conversation_id);
    let intent = ports::SendIntent::new(key, chrono::Utc::now());
    let reserved = ports::Sequencer::reserve(&dead, &conversation, &[intent])
        .await
        .expect("reserve");
    assert_eq!(reserved, [ports::Reservation::Fresh(wire::Seq(1))]);
    let later = send(&mut alice, &conversation_id, "later", "after the hole").await;
    assert_eq!(later["seq"], 2);

    let series = r#"parley_abandoned_sends_settled_total{outcome="tombstoned"}"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sample(node, series).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no tombstone in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let history = alice
        .ok("history.get", json!({"conversation_id": conversation_id}))
        .await;
    assert_eq!(seqs(&history["messages"]), vec![1, 2]);
    assert_eq!(history["messages"][0]["deleted"], true);
    assert_eq!(history["messages"][0]["sender_id"], "bob");
}
