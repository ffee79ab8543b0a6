//! What the tests of abandoned sends share: two nodes' sequencers over one real Redis (one
//! "dies" by never confirming), and a store hook that interleaves another node's step.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use persistence::redis::{RedisClient, RedisConfig, RedisSequencer};
use persistence::EmbeddedStore;
use ports::contract::fixtures::{at, message_record};
use ports::contract::{ApplyHook, HookedStore};
use ports::{DedupKey, PortError, Reaped, Reservation, SendIntent, Sequencer, Store, StoreWrite};
use tempfile::TempDir;
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, Seq, UserId};

use crate::common::redis::RedisServer;

/// How long a reservation holds its key here (a node "dies" by never confirming).
pub const IN_FLIGHT: Duration = Duration::from_millis(300);

/// Two nodes' sequencers over one Redis and one store.
pub struct TwoNodes {
    pub dying: RedisSequencer,
    pub surviving: RedisSequencer,
    pub store: Arc<EmbeddedStore>,
    _dir: TempDir,
    server: RedisServer,
}

impl TwoNodes {
    /// Another node's sequencer, over `store`.
    pub fn node(&self, store: Arc<dyn Store>) -> RedisSequencer {
        let client = RedisClient::new(RedisConfig::new(self.server.url())).expect("redis client");
        RedisSequencer::new(client, store)
            .with_in_flight_ttl(IN_FLIGHT)
            .with_ingest_grace(Duration::ZERO)
    }

    /// Ingest stores a send of `sender` at `seq` (client_msg_id `client-<seq>`, the fixture's
    /// naming); returns its ack.
    pub async fn store_send(
        &self,
        conversation: &ConversationId,
        sender: &UserId,
        seq: u64,
    ) -> SendAck {
        let stored = message_record(conversation, seq, sender, 1, at(seq as i64));
        self.store
            .apply(vec![StoreWrite::Message(stored.clone())])
            .await
            .expect("store the send");
        SendAck {
            message_id: stored.message.message_id,
            seq: Seq(seq),
            created_at: stored.message.created_at,
        }
    }

    /// Another node's sequencer, whose first store read of a `client_msg_id` runs `during`
    /// first (to interleave another node's work with its reservation or claim).
    pub fn node_racing(&self, during: impl Future<Output = ()> + Send + 'static) -> RedisSequencer {
        let hook = Interleave(Mutex::new(Some(Box::pin(during))));
        self.node(Arc::new(HookedStore {
            inner: self.store.clone(),
            hook,
        }))
    }
}

/// Runs its future once, before the first `message_by_client_id`.
pub struct Interleave(Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>);

#[async_trait]
impl ApplyHook for Interleave {
    async fn before_apply(&self) -> Result<(), PortError> {
        Ok(())
    }

    async fn before_client_id_read(&self) {
        let during = self.0.lock().expect("hook").take();
        if let Some(during) = during {
            during.await;
        }
    }
}

pub fn two_nodes() -> TwoNodes {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("open store"));
    let node = || {
        let client = RedisClient::new(RedisConfig::new(server.url())).expect("redis client");
        RedisSequencer::new(client, store.clone())
            .with_in_flight_ttl(IN_FLIGHT)
            .with_ingest_grace(Duration::ZERO)
    };
    TwoNodes {
        dying: node(),
        surviving: node(),
        store,
        _dir: dir,
        server,
    }
}

pub fn key_of(sender: &UserId, client_msg_id: &str) -> DedupKey {
    DedupKey {
        sender_id: sender.clone(),
        client_msg_id: ClientMsgId::new(client_msg_id),
    }
}

pub async fn reserve_one(
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

/// How long the reaper's claims last here.
pub const LEASE: Duration = Duration::from_millis(400);

/// The ack of `send` under `seq`.
pub fn ack_of(send: &SendIntent, seq: u64) -> SendAck {
    SendAck {
        message_id: send.message_id.clone(),
        seq: Seq(seq),
        created_at: send.created_at,
    }
}

pub async fn claim(sequencer: &RedisSequencer) -> Vec<Reaped> {
    sequencer.claim_abandoned(LEASE, 10).await.expect("claim")
}

pub async fn reserve_and_die(
    nodes: &TwoNodes,
    conversation: &ConversationId,
    key: &DedupKey,
) -> SendIntent {
    let first = SendIntent::new(key.clone(), Utc::now());
    nodes
        .dying
        .reserve(conversation, std::slice::from_ref(&first))
        .await
        .expect("reserve on the node that dies");
    first
}
