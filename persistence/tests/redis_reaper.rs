//! Issue #19: a send whose node died after reserving its seq, and that nobody retried, is
//! settled by the reaper (`Sequencer::claim_abandoned`) exactly once, against retries, other
//! reapers and a trailing store, on a real Redis.

mod abandoned;
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use abandoned::{ack_of, claim, key_of, reserve_and_die, reserve_one, two_nodes, IN_FLIGHT, LEASE};
use chrono::Utc;
use ports::contract::fixtures::unique;
use ports::{AbandonedSend, DedupKey, Reaped, Reservation, SendIntent, Sequencer};
use wire::UserId;
use wire::{ConversationId, Seq};

/// Issue #19: a send whose node died and that nobody retries is claimed by one reaper, once;
/// a later retry is a plain new send; a claim not settled in time is handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_claims_an_abandoned_send_once() {
    let nodes = two_nodes();
    let conversation = ConversationId::new(unique("reaped"));
    let key = key_of(&UserId::new(unique("sender")), "given-up");
    let first = reserve_and_die(&nodes, &conversation, &key).await;
    let confirmed = key_of(&UserId::new(unique("sender")), "confirmed");
    let Reservation::Fresh(seq) = reserve_one(&nodes.surviving, &conversation, &confirmed).await
    else {
        panic!("a fresh seq");
    };
    let ack = ack_of(&first, seq.0);
    nodes
        .surviving
        .confirm(&conversation, &[(confirmed, ack)])
        .await
        .expect("confirm");
    assert_eq!(claim(&nodes.surviving).await, [], "still in flight");

    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    let abandoned = AbandonedSend {
        conversation_id: conversation.clone(),
        key: key.clone(),
        ack: ack_of(&first, 1),
    };
    assert_eq!(
        claim(&nodes.surviving).await,
        [Reaped::Claimed(abandoned.clone())],
        "only the abandoned send, not the confirmed one"
    );
    assert_eq!(claim(&nodes.dying).await, [], "claimed once");
    let retry = SendIntent::new(key.clone(), Utc::now());
    let reserved = nodes
        .surviving
        .reserve(&conversation, std::slice::from_ref(&retry))
        .await
        .expect("reserve the retry");
    assert_eq!(
        reserved,
        [Reservation::Fresh(Seq(3))],
        "a retry after the claim is a new send, with nothing to tombstone"
    );
    nodes
        .surviving
        .confirm(&conversation, &[(key.clone(), ack_of(&retry, 3))])
        .await
        .expect("confirm the retry");

    tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
    assert_eq!(
        claim(&nodes.dying).await,
        [Reaped::Claimed(abandoned.clone())],
        "a claim not settled within its lease is handed out again"
    );
    nodes
        .dying
        .settle_abandoned(&abandoned)
        .await
        .expect("settle");
    tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
    assert_eq!(claim(&nodes.surviving).await, [], "settled for good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_leaves_a_send_a_retry_replaced_to_the_retry() {
    let nodes = two_nodes();
    let conversation = ConversationId::new(unique("reaped-resent"));
    let key = key_of(&UserId::new(unique("sender")), "retried");
    let first = reserve_and_die(&nodes, &conversation, &key).await;
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    assert_eq!(
        reserve_one(&nodes.surviving, &conversation, &key).await,
        Reservation::Resent {
            seq: Seq(2),
            abandoned: ack_of(&first, 1)
        }
    );
    assert_eq!(
        claim(&nodes.surviving).await,
        [],
        "the retry tombstones the first send"
    );
    // The retry's node died too before its append: its claim of the first send lapses to the
    // reaper, and its own reservation is abandoned in turn.
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    let claimed: Vec<(Seq, DedupKey)> = claim(&nodes.surviving)
        .await
        .into_iter()
        .map(|reaped| match reaped {
            Reaped::Claimed(send) => (send.ack.seq, send.key),
            Reaped::Stored(send) => panic!("not stored: {send:?}"),
        })
        .collect();
    assert_eq!(
        claimed,
        [(Seq(1), key.clone()), (Seq(2), key)],
        "the reaper tombstones both sends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_records_the_ack_of_an_abandoned_send_the_store_holds() {
    let nodes = two_nodes();
    let conversation = ConversationId::new(unique("reaped-stored"));
    let sender = UserId::new(unique("sender"));
    let key = key_of(&sender, "client-1");
    reserve_and_die(&nodes, &conversation, &key).await;
    let ack = nodes.store_send(&conversation, &sender, 1).await;
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    let settled = AbandonedSend {
        conversation_id: conversation.clone(),
        key: key.clone(),
        ack: ack.clone(),
    };
    assert_eq!(claim(&nodes.surviving).await, [Reaped::Stored(settled)]);
    assert_eq!(claim(&nodes.surviving).await, []);
    assert_eq!(
        reserve_one(&nodes.surviving, &conversation, &key).await,
        Reservation::Duplicate(ack)
    );
}

/// A retry through another node lands while the reaper asks the store about the abandoned
/// send: the retry replaces it (`Resent`), and the reaper's claim, finding the key changed,
/// leaves it to the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_during_the_reapers_store_read_wins() {
    let nodes = two_nodes();
    let conversation = ConversationId::new(unique("race-retry"));
    let key = key_of(&UserId::new(unique("sender")), "raced");
    let first = reserve_and_die(&nodes, &conversation, &key).await;
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    let retried = Arc::new(Mutex::new(None));
    let retry = {
        let (node, retried) = (nodes.node(nodes.store.clone()), retried.clone());
        let (conversation, key) = (conversation.clone(), key.clone());
        async move {
            let reserved = reserve_one(&node, &conversation, &key).await;
            *retried.lock().unwrap() = Some(reserved);
        }
    };
    let reaper = nodes.node_racing(retry);
    assert_eq!(claim(&reaper).await, [], "the retry came first");
    assert_eq!(
        retried.lock().unwrap().take(),
        Some(Reservation::Resent {
            seq: Seq(2),
            abandoned: ack_of(&first, 1)
        })
    );
}

/// The reaper claims the abandoned send while a retry asks the store: the retry is a plain
/// new send (the reaper tombstones the first one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_during_a_retrys_store_read_wins() {
    let nodes = two_nodes();
    let conversation = ConversationId::new(unique("race-claim"));
    let key = key_of(&UserId::new(unique("sender")), "raced");
    let first = reserve_and_die(&nodes, &conversation, &key).await;
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    let reaped = Arc::new(Mutex::new(None));
    let reap = {
        let (reaper, reaped) = (nodes.node(nodes.store.clone()), reaped.clone());
        async move {
            let claimed = claim(&reaper).await;
            *reaped.lock().unwrap() = Some(claimed);
        }
    };
    let retrying = nodes.node_racing(reap);
    assert_eq!(
        reserve_one(&retrying, &conversation, &key).await,
        Reservation::Fresh(Seq(2)),
        "the reaper came first"
    );
    let abandoned = AbandonedSend {
        conversation_id: conversation,
        key,
        ack: ack_of(&first, 1),
    };
    assert_eq!(
        reaped.lock().unwrap().take(),
        Some(vec![Reaped::Claimed(abandoned)])
    );
}

/// Ingest may trail the log: "not in the store" is trusted once the store holds a later seq of
/// the conversation (or after the ingest grace), so a stored-late send is never tombstoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_waits_for_the_store_to_pass_an_abandoned_seq() {
    let nodes = two_nodes();
    let conversation = ConversationId::new(unique("reaped-trailing"));
    let sender = UserId::new(unique("sender"));
    let key = key_of(&sender, "client-1");
    let first = reserve_and_die(&nodes, &conversation, &key).await;
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    let patient = nodes
        .node(nodes.store.clone())
        .with_ingest_grace(Duration::from_secs(3600));
    assert_eq!(claim(&patient).await, [], "the store may still get it");
    // Ingest stored a later send of the conversation: the first one never reached the log.
    nodes.store_send(&conversation, &sender, 2).await;
    let abandoned = AbandonedSend {
        conversation_id: conversation,
        key,
        ack: ack_of(&first, 1),
    };
    assert_eq!(claim(&patient).await, [Reaped::Claimed(abandoned)]);
}

/// A retry's batch that appended the first send's tombstone settles the claim: nothing is
/// left for the reaper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_settles_its_claim_leaves_nothing_to_the_reaper() {
    let nodes = two_nodes();
    let conversation = ConversationId::new(unique("resent-settled"));
    let key = key_of(&UserId::new(unique("sender")), "retried");
    let first = reserve_and_die(&nodes, &conversation, &key).await;
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    let retry = SendIntent::new(key.clone(), Utc::now());
    let reserved = nodes
        .surviving
        .reserve(&conversation, std::slice::from_ref(&retry))
        .await
        .expect("reserve the retry");
    let abandoned = ack_of(&first, 1);
    assert_eq!(
        reserved,
        [Reservation::Resent {
            seq: Seq(2),
            abandoned: abandoned.clone()
        }]
    );
    let sequencer = &nodes.surviving;
    let acks = [(key.clone(), ack_of(&retry, 2))];
    sequencer
        .confirm(&conversation, &acks)
        .await
        .expect("confirm");
    let claimed = AbandonedSend {
        conversation_id: conversation,
        key,
        ack: abandoned,
    };
    sequencer.settle_abandoned(&claimed).await.expect("settle");
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    assert_eq!(claim(sequencer).await, []);
}
