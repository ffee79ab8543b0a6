//! [`MemorySequencer`]: per-conversation seq counters and `client_msg_id` dedup in memory.
//!
//! A conversation's counter is seeded on first use from the seq of the newest stored message (0
//! when the store has none). That is only right when the store reflects the whole log, which is why a node
//! runs `IngestPipeline::catch_up` before it turns ready.
//!
//! Dedup keeps the confirmed acks of the last [`RECENT_ACK_WINDOW`] (24 h, like the Redis
//! sequencer's ack TTL), at most [`RECENT_ACKS_PER_CONVERSATION`] per conversation: older ones
//! are evicted when the conversation next reserves or confirms. On a miss it asks the store (`message_by_client_id`), so a retry after a restart still finds its
//! original ack once ingest stored the message. The store is only asked when the answer could
//! be there: when the conversation already had messages before this process first saw it, or
//! once acks were evicted from the recent set. A brand-new conversation costs no store reads.
//!
//! Callers must not pass the same key twice in one `reserve` call (the conversation actor
//! de-duplicates in-flight keys itself); debug builds assert it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use ports::{
    AbandonedSend, DedupKey, MessageQuery, PortError, Reaped, Reservation, SendIntent, Sequencer,
    Store, IN_FLIGHT_TTL,
};
use wire::ops::SendAck;
use wire::{ConversationId, Seq};

/// Confirmed acks remembered per conversation before falling back to the store.
pub const RECENT_ACKS_PER_CONVERSATION: usize = 4096;
/// How long a confirmed ack is remembered before falling back to the store.
pub const RECENT_ACK_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug)]
struct ConversationSequence {
    last_seq: Seq,
    recent: HashMap<DedupKey, SendAck>,
    /// Insertion order of `recent` with the time of each confirm, oldest first, for eviction.
    order: VecDeque<(DedupKey, Instant)>,
    /// Whether acks older than `recent` may exist (so a miss must ask the store).
    may_have_older: bool,
    /// Keys reserved fresh and neither confirmed nor abandoned yet, with when.
    in_flight: HashMap<DedupKey, Instant>,
}

type SequenceSlot = Arc<tokio::sync::Mutex<Option<ConversationSequence>>>;

pub struct MemorySequencer {
    store: Arc<dyn Store>,
    conversations: Mutex<HashMap<ConversationId, SequenceSlot>>,
    recent_capacity: usize,
    recent_window: Duration,
}

impl ConversationSequence {
    /// Forgets the acks over the capacity or older than the window, oldest first.
    fn evict(&mut self, capacity: usize, window: Duration) {
        let now = Instant::now();
        while let Some((_, confirmed_at)) = self.order.front() {
            if self.order.len() <= capacity && now.duration_since(*confirmed_at) < window {
                break;
            }
            if let Some((oldest, _)) = self.order.pop_front() {
                self.recent.remove(&oldest);
                self.may_have_older = true;
            }
        }
    }
}

impl MemorySequencer {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_recent_capacity(store, RECENT_ACKS_PER_CONVERSATION)
    }

    /// Like [`MemorySequencer::new`] with a custom dedup window (tests use a small one).
    pub fn with_recent_capacity(store: Arc<dyn Store>, recent_capacity: usize) -> Self {
        Self::with_recent_window(store, recent_capacity, RECENT_ACK_WINDOW)
    }

    /// Like [`MemorySequencer::with_recent_capacity`] with a custom age limit for acks.
    pub fn with_recent_window(
        store: Arc<dyn Store>,
        recent_capacity: usize,
        recent_window: Duration,
    ) -> Self {
        Self {
            store,
            conversations: Mutex::new(HashMap::new()),
            recent_capacity: recent_capacity.max(1),
            recent_window,
        }
    }

    fn slot(&self, conversation_id: &ConversationId) -> SequenceSlot {
        let mut conversations = self
            .conversations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(conversations.entry(conversation_id.clone()).or_default())
    }

    /// Runs `work` on the conversation's state, seeding it from the store first if needed.
    async fn with_sequence<T>(
        &self,
        conversation_id: &ConversationId,
        work: impl AsyncFnOnce(&mut ConversationSequence) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        let slot = self.slot(conversation_id);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            // The newest stored message, not `Store::conversation`: messages may be stored
            // before their conversation record.
            let newest = MessageQuery {
                after_seq: None,
                before_seq: None,
                limit: 1,
            };
            let last_seq = self
                .store
                .messages(conversation_id, newest)
                .await?
                .last()
                .map_or(Seq::ZERO, |record| record.message.seq);
            *guard = Some(ConversationSequence {
                last_seq,
                recent: HashMap::new(),
                order: VecDeque::new(),
                may_have_older: last_seq > Seq::ZERO,
                in_flight: HashMap::new(),
            });
        }
        match guard.as_mut() {
            Some(sequence) => work(sequence).await,
            None => Err(PortError::internal("sequence state missing")),
        }
    }
}

#[async_trait]
impl Sequencer for MemorySequencer {
    async fn reserve(
        &self,
        conversation_id: &ConversationId,
        sends: &[SendIntent],
    ) -> Result<Vec<Reservation>, PortError> {
        // One process: a reservation it made cannot outlive it, so none is ever `Resent`.
        let keys: Vec<&DedupKey> = sends.iter().map(|send| &send.key).collect();
        debug_assert!(
            keys.iter()
                .enumerate()
                .all(|(index, key)| !keys[..index].contains(key)),
            "the same dedup key twice in one reserve call"
        );
        let store = Arc::clone(&self.store);
        let (capacity, window) = (self.recent_capacity, self.recent_window);
        self.with_sequence(conversation_id, async |sequence| {
            sequence.evict(capacity, window);
            let now = Instant::now();
            sequence
                .in_flight
                .retain(|_, reserved_at| now.duration_since(*reserved_at) < IN_FLIGHT_TTL);
            // Look everything up before allocating, so a failed store read allocates nothing.
            let mut known = Vec::with_capacity(keys.len());
            for &key in &keys {
                let mut ack = sequence.recent.get(key).cloned();
                if ack.is_none() && sequence.may_have_older {
                    ack = store
                        .message_by_client_id(conversation_id, &key.sender_id, &key.client_msg_id)
                        .await?
                        .map(|record| SendAck {
                            message_id: record.message.message_id,
                            seq: record.message.seq,
                            created_at: record.message.created_at,
                        });
                }
                known.push(ack);
            }
            let reservations = keys
                .iter()
                .zip(known)
                .map(|(key, ack)| match ack {
                    Some(ack) => Reservation::Duplicate(ack),
                    None if sequence.in_flight.contains_key(key) => Reservation::InFlight,
                    None => {
                        sequence.in_flight.insert((*key).clone(), now);
                        sequence.last_seq = sequence.last_seq.next();
                        Reservation::Fresh(sequence.last_seq)
                    }
                })
                .collect();
            Ok(reservations)
        })
        .await
    }

    async fn confirm(
        &self,
        conversation_id: &ConversationId,
        acks: &[(DedupKey, SendAck)],
    ) -> Result<(), PortError> {
        let (capacity, window) = (self.recent_capacity, self.recent_window);
        self.with_sequence(conversation_id, async |sequence| {
            let now = Instant::now();
            for (key, ack) in acks {
                sequence.in_flight.remove(key);
                if sequence.recent.insert(key.clone(), ack.clone()).is_none() {
                    sequence.order.push_back((key.clone(), now));
                }
            }
            sequence.evict(capacity, window);
            Ok(())
        })
        .await
    }

    async fn abandon(
        &self,
        conversation_id: &ConversationId,
        keys: &[DedupKey],
    ) -> Result<(), PortError> {
        self.with_sequence(conversation_id, async |sequence| {
            for key in keys {
                sequence.in_flight.remove(key);
            }
            Ok(())
        })
        .await
    }

    async fn release(
        &self,
        conversation_id: &ConversationId,
        first: Seq,
        count: u64,
    ) -> Result<bool, PortError> {
        if count == 0 || first == Seq::ZERO {
            return Ok(false);
        }
        self.with_sequence(conversation_id, async |sequence| {
            let last = Seq(first.0 + count - 1);
            if sequence.last_seq != last {
                return Ok(false);
            }
            sequence.last_seq = Seq(first.0 - 1);
            Ok(true)
        })
        .await
    }

    /// One process cannot outlive its own reservations: none is ever abandoned.
    async fn claim_abandoned(
        &self,
        _lease: Duration,
        _limit: usize,
    ) -> Result<Vec<Reaped>, PortError> {
        Ok(Vec::new())
    }

    async fn settle_abandoned(&self, _send: &AbandonedSend) -> Result<(), PortError> {
        Ok(())
    }

    async fn last_seq(&self, conversation_id: &ConversationId) -> Result<Seq, PortError> {
        self.with_sequence(conversation_id, async |sequence| Ok(sequence.last_seq))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;
    use wire::{ClientMsgId, UserId};

    fn key(client_msg_id: &str) -> DedupKey {
        DedupKey {
            sender_id: UserId::new("alice"),
            client_msg_id: ClientMsgId::new(client_msg_id),
        }
    }

    async fn reserve_one(
        sequencer: &MemorySequencer,
        id: &ConversationId,
        name: &str,
    ) -> Reservation {
        let send = ports::SendIntent::new(key(name), chrono::Utc::now());
        let mut reserved = sequencer.reserve(id, &[send]).await.expect("reserve");
        reserved.pop().expect("one reservation")
    }

    /// Dedup state is bounded by age: an ack older than the window is forgotten (a retry then
    /// asks the store, which here never stored the message).
    #[tokio::test(start_paused = true)]
    async fn acks_older_than_the_window_are_evicted() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("open"));
        let window = Duration::from_secs(60);
        let sequencer = MemorySequencer::with_recent_window(store, 100, window);
        let id = ConversationId::new("c");
        let Reservation::Fresh(seq) = reserve_one(&sequencer, &id, "m1").await else {
            panic!("a first send is fresh");
        };
        let ack = SendAck {
            message_id: wire::MessageId::new("m1"),
            seq,
            created_at: chrono::Utc::now(),
        };
        sequencer
            .confirm(&id, &[(key("m1"), ack.clone())])
            .await
            .expect("confirm");
        assert_eq!(
            reserve_one(&sequencer, &id, "m1").await,
            Reservation::Duplicate(ack),
            "a retry within the window gets the original ack"
        );
        tokio::time::advance(window + Duration::from_secs(1)).await;
        assert!(
            matches!(
                reserve_one(&sequencer, &id, "m1").await,
                Reservation::Fresh(_)
            ),
            "past the window the ack is forgotten"
        );
        let slot = sequencer.slot(&id);
        let guard = slot.lock().await;
        let sequence = guard.as_ref().expect("seeded");
        assert!(sequence.recent.is_empty() && sequence.order.is_empty());
    }
}
