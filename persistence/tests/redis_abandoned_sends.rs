//! A send reserved by a node that died before answering (chaos run, 2026-12-03: a message
//! stored twice after `kill -9` of its node): the retry through another node, once the
//! reservation's in-flight time is over, gets the first send's ack when the store has it, and
//! otherwise a fresh seq with the first send to tombstone — never a plain second message.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::redis::RedisServer;
use persistence::redis::{RedisClient, RedisConfig, RedisSequencer};
use persistence::EmbeddedStore;
use ports::contract::fixtures::{at, message_record, unique};
use ports::{DedupKey, Reservation, SendIntent, Sequencer, Store, StoreWrite};
use tempfile::TempDir;
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, Seq, UserId};

/// How long a reservation holds its key here (a node "dies" by never confirming).
const IN_FLIGHT: Duration = Duration::from_millis(300);

struct TwoNodes {
    dying: RedisSequencer,
    surviving: RedisSequencer,
    store: Arc<EmbeddedStore>,
    _dir: TempDir,
    _server: RedisServer,
}

fn two_nodes() -> TwoNodes {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("open store"));
    let node = || {
        let client = RedisClient::new(RedisConfig::new(server.url())).expect("redis client");
        RedisSequencer::new(client, store.clone()).with_in_flight_ttl(IN_FLIGHT)
    };
    TwoNodes {
        dying: node(),
        surviving: node(),
        store,
        _dir: dir,
        _server: server,
    }
}

fn key_of(sender: &UserId, client_msg_id: &str) -> DedupKey {
    DedupKey {
        sender_id: sender.clone(),
        client_msg_id: ClientMsgId::new(client_msg_id),
    }
}

async fn reserve_one(
    sequencer: &RedisSequencer,
    conversation: &ConversationId,
    key: &DedupKey,
) -> Reservation {
    let send = SendIntent::new(key.clone(), Utc::now());
    let mut reserved = sequencer
        .reserve(conversation, &[send])
        .await
        .expect("reserve");
    reserved.pop().expect("one reservation")
}

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
    let abandoned = SendAck {
        message_id: first.message_id.clone(),
        seq: Seq(1),
        created_at: first.created_at,
    };
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
    let stored = message_record(&conversation, 1, &sender, 1, at(1));
    nodes
        .store
        .apply(vec![StoreWrite::Message(stored.clone())])
        .await
        .expect("store the first send");
    tokio::time::sleep(IN_FLIGHT + Duration::from_millis(100)).await;
    let ack = SendAck {
        message_id: stored.message.message_id.clone(),
        seq: Seq(1),
        created_at: stored.message.created_at,
    };
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
