//! A send reserved by a node that died before answering (chaos run, 2026-12-03: a message
//! stored twice after `kill -9` of its node): the retry through another node, once the
//! reservation's in-flight time is over, gets the first send's ack when the store has it, and
//! otherwise a fresh seq with the first send to tombstone — never a plain second message.
//! When nobody retries, the reaper settles it: `redis_reaper.rs`.

mod abandoned;
mod common;

use std::time::Duration;

use abandoned::{ack_of, key_of, reserve_one, two_nodes, IN_FLIGHT};
use chrono::Utc;
use ports::contract::fixtures::unique;
use ports::{Reservation, SendIntent, Sequencer};
use wire::{ConversationId, Seq, UserId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_reserving_node_died_replaces_its_send() {
    let nodes = two_nodes();
    let conversation = ConversationId::new(unique("abandoned"));
    let key = key_of(&UserId::new(unique("sender")), "first");
    let first = SendIntent::new(key.clone(), Utc::now());
    let reserved = nodes
        .dying
        .reserve(&conversation, std::slice::from_ref(&first))
        .await
        .expect("reserve on the node that dies");
    assert_eq!(reserved, vec![Reservation::Fresh(Seq(1))]);
    assert_eq!(
        reserve_one(&nodes.surviving, &conversation, &key).await,
        Reservation::InFlight,
        "within the in-flight time the first send may still be answered"
    );
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    let abandoned = ack_of(&first, 1);
    assert_eq!(
        reserve_one(&nodes.surviving, &conversation, &key).await,
        Reservation::Resent {
            seq: Seq(2),
            abandoned
        },
        "the retry gets a fresh seq and the first send to tombstone"
    );
    assert_eq!(
        reserve_one(&nodes.surviving, &conversation, &key).await,
        Reservation::InFlight,
        "the retry's own reservation holds the key now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_reserving_node_died_gets_the_stored_ack() {
    let nodes = two_nodes();
    let conversation = ConversationId::new(unique("abandoned-stored"));
    let sender = UserId::new(unique("sender"));
    // The stored message of seq 1 has client_msg_id "client-1" (the fixture's naming).
    let key = key_of(&sender, "client-1");
    assert_eq!(
        reserve_one(&nodes.dying, &conversation, &key).await,
        Reservation::Fresh(Seq(1))
    );
    // The node appended the send and died; ingest stored it.
    let ack = nodes.store_send(&conversation, &sender, 1).await;
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    assert_eq!(
        reserve_one(&nodes.surviving, &conversation, &key).await,
        Reservation::Duplicate(ack.clone())
    );
    assert_eq!(
        reserve_one(&nodes.dying, &conversation, &key).await,
        Reservation::Duplicate(ack),
        "the ack is recorded for every node"
    );
    assert_eq!(
        nodes.surviving.last_seq(&conversation).await.expect("last"),
        Seq(1),
        "nothing allocated for the retries"
    );
}
