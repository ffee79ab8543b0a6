//! Fake ports for the actors' unit tests: in-memory, inspectable, with failure injection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ports::{
    AbandonedSend, Bus, BusEnvelope, BusTopic, CreateOutcome, DedupKey, Directory, EventLog,
    LogConsumer, MessageCache, MessageQuery, PortError, Presence, Publishing, RateDecision,
    RateLimiter, Reaped, Reservation, SendIntent, Sequencer, Service, Store, StoreWrite,
    StoredConversation, Watermarks,
};
use tokio::sync::mpsc;
use wire::log::{
    ConversationRecord, LogEvent, LogEventBody, MessageRecord, Participant, ParticipantRole,
};
use wire::ops::{PresenceInfo, SendAck};
use wire::{
    ClientMsgId, Conversation, ConversationId, ConversationKind, MessageId, NodeId, Seq, SessionId,
    UserId,
};

use crate::metrics::Metrics;
use crate::node::{Limits, Node, Ports};

#[derive(Default)]
pub struct FakeLog {
    pub events: Mutex<Vec<LogEvent>>,
    pub appends: AtomicUsize,
    pub fail: AtomicBool,
    /// Failed appends are ambiguous (like Kafka's) instead of definite (like the embedded log's).
    pub ambiguous_failures: AtomicBool,
    /// Appends wait while this is set (a log that hangs): the batch in flight holds its
    /// conversation until it is cleared.
    pub stall: AtomicBool,
    /// Appends called, stalled ones included.
    pub appends_started: AtomicUsize,
    /// What `consumer` hands out, in order; with none left it fails.
    pub consumers: Mutex<Vec<Box<dyn LogConsumer>>>,
    /// How many consumers were asked for.
    pub consumers_opened: AtomicUsize,
}

impl FakeLog {
    /// The bodies of the appended events, in order.
    pub fn bodies(&self) -> Vec<LogEventBody> {
        let events = self.events.lock().unwrap();
        events.iter().map(|event| event.body.clone()).collect()
    }
}

#[async_trait]
impl EventLog for FakeLog {
    async fn append(&self, events: Vec<LogEvent>) -> Result<(), PortError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(PortError::unavailable(
                Service::InProcess,
                "injected log failure",
            ));
        }
        self.appends_started.fetch_add(1, Ordering::SeqCst);
        while self.stall.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.appends.fetch_add(1, Ordering::SeqCst);
        // Yield so concurrent callers queue up behind this append, like a real fsync.
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.events.lock().unwrap().extend(events);
        Ok(())
    }

    async fn consumer(
        &self,
        _group: &str,
        _topics: &[&str],
    ) -> Result<Box<dyn LogConsumer>, PortError> {
        self.consumers_opened.fetch_add(1, Ordering::SeqCst);
        let mut consumers = self.consumers.lock().unwrap();
        if consumers.is_empty() {
            return Err(PortError::unavailable(
                Service::InProcess,
                "fake log has no consumers",
            ));
        }
        Ok(consumers.remove(0))
    }

    async fn is_ready(&self) -> bool {
        true
    }

    fn failed_appends_may_be_durable(&self) -> bool {
        self.ambiguous_failures.load(Ordering::SeqCst)
    }
}

/// Store and directory in one map; messages only what tests put there.
#[derive(Default)]
pub struct FakeStore {
    pub conversations: Mutex<HashMap<ConversationId, ConversationRecord>>,
    pub messages: Mutex<BTreeMap<(ConversationId, Seq), MessageRecord>>,
}

#[async_trait]
impl Store for FakeStore {
    async fn apply(&self, writes: Vec<StoreWrite>) -> Result<(), PortError> {
        for write in writes {
            if let StoreWrite::Message(record) = write {
                let key = (record.message.conversation_id.clone(), record.message.seq);
                self.messages.lock().unwrap().insert(key, record);
            }
        }
        Ok(())
    }

    async fn conversation(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<StoredConversation>, PortError> {
        Ok(self
            .conversations
            .lock()
            .unwrap()
            .get(conversation_id)
            .map(|record| StoredConversation {
                record: record.clone(),
                last_seq: Seq::ZERO,
                last_activity_at: record.updated_at,
            }))
    }

    async fn watermarks(
        &self,
        _conversation_id: &ConversationId,
        _user_id: &UserId,
    ) -> Result<Watermarks, PortError> {
        Ok(Watermarks::default())
    }

    async fn message(
        &self,
        conversation_id: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, PortError> {
        Ok(self
            .messages
            .lock()
            .unwrap()
            .iter()
            .find(|((conversation, _), record)| {
                conversation == conversation_id && &record.message.message_id == message_id
            })
            .map(|(_, record)| record.clone()))
    }

    async fn message_by_client_id(
        &self,
        _conversation_id: &ConversationId,
        _sender_id: &UserId,
        _client_msg_id: &ClientMsgId,
    ) -> Result<Option<MessageRecord>, PortError> {
        Ok(None)
    }

    async fn messages(
        &self,
        conversation_id: &ConversationId,
        query: MessageQuery,
    ) -> Result<Vec<MessageRecord>, PortError> {
        let messages = self.messages.lock().unwrap();
        let mut selected: Vec<MessageRecord> = messages
            .iter()
            .filter(|((conversation, seq), _)| {
                conversation == conversation_id
                    && query.after_seq.is_none_or(|after| *seq > after)
                    && query.before_seq.is_none_or(|before| *seq < before)
            })
            .map(|(_, record)| record.clone())
            .collect();
        if query.after_seq.is_some() {
            selected.truncate(query.limit);
        } else {
            let skip = selected.len().saturating_sub(query.limit);
            selected.drain(..skip);
        }
        Ok(selected)
    }

    async fn is_ready(&self) -> bool {
        true
    }
}

#[async_trait]
impl Directory for FakeStore {
    async fn create(&self, record: ConversationRecord) -> Result<CreateOutcome, PortError> {
        let id = record.conversation.conversation_id.clone();
        self.conversations
            .lock()
            .unwrap()
            .insert(id, record.clone());
        Ok(CreateOutcome::Created(record))
    }

    async fn get(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, PortError> {
        Ok(self
            .conversations
            .lock()
            .unwrap()
            .get(conversation_id)
            .cloned())
    }

    async fn update(&self, record: ConversationRecord) -> Result<(), PortError> {
        let id = record.conversation.conversation_id.clone();
        let mut conversations = self.conversations.lock().unwrap();
        let current = conversations
            .get(&id)
            .map(|stored| stored.version)
            .unwrap_or(0);
        if current + 1 != record.version {
            return Err(PortError::conflict("version"));
        }
        conversations.insert(id, record);
        Ok(())
    }

    async fn list_for_user(
        &self,
        user_id: &UserId,
        _after: Option<&ConversationId>,
        _limit: usize,
    ) -> Result<Vec<StoredConversation>, PortError> {
        Ok(self
            .conversations
            .lock()
            .unwrap()
            .values()
            .filter(|record| record.is_member(user_id))
            .map(|record| StoredConversation {
                record: record.clone(),
                last_seq: Seq::ZERO,
                last_activity_at: record.updated_at,
            })
            .collect())
    }
}

/// Seqs and acks in memory, like a sequencer shared by nodes: a reservation that
/// [`FakeSequencer::expire_reservations`] ended (its node "died") makes the key's next
/// reservation [`Reservation::Resent`], unless the reaper claimed it first
/// ([`Sequencer::claim_abandoned`]). Claims (the reaper's and those of `Resent`) have no
/// lease here: each call of `claim_abandoned` hands out again every claim not settled yet.
#[derive(Default)]
pub struct FakeSequencer {
    counters: Mutex<HashMap<ConversationId, u64>>,
    acks: Mutex<HashMap<(ConversationId, DedupKey), SendAck>>,
    in_flight: Mutex<HashMap<(ConversationId, DedupKey), SendAck>>,
    abandoned: Mutex<HashMap<(ConversationId, DedupKey), SendAck>>,
    claimed: Mutex<Vec<AbandonedSend>>,
}

impl FakeSequencer {
    /// Every reservation not confirmed yet runs out, as if its node had died.
    pub fn expire_reservations(&self) {
        let expired = std::mem::take(&mut *self.in_flight.lock().unwrap());
        self.abandoned.lock().unwrap().extend(expired);
    }

    /// Claims handed out and not settled yet.
    pub fn unsettled_claims(&self) -> usize {
        self.claimed.lock().unwrap().len()
    }
}

#[async_trait]
impl Sequencer for FakeSequencer {
    async fn reserve(
        &self,
        conversation_id: &ConversationId,
        sends: &[SendIntent],
    ) -> Result<Vec<Reservation>, PortError> {
        let acks = self.acks.lock().unwrap();
        let mut in_flight = self.in_flight.lock().unwrap();
        let mut abandoned = self.abandoned.lock().unwrap();
        let mut claimed = self.claimed.lock().unwrap();
        let mut counters = self.counters.lock().unwrap();
        let counter = counters.entry(conversation_id.clone()).or_default();
        Ok(sends
            .iter()
            .map(|send| {
                let slot = (conversation_id.clone(), send.key.clone());
                if let Some(ack) = acks.get(&slot) {
                    return Reservation::Duplicate(ack.clone());
                }
                if in_flight.contains_key(&slot) {
                    return Reservation::InFlight;
                }
                *counter += 1;
                let seq = Seq(*counter);
                let ack = SendAck {
                    message_id: send.message_id.clone(),
                    seq,
                    created_at: send.created_at,
                };
                let earlier = abandoned.remove(&slot);
                in_flight.insert(slot.clone(), ack);
                match earlier {
                    Some(abandoned) => {
                        let (conversation_id, key) = slot;
                        claimed.push(AbandonedSend {
                            conversation_id,
                            key,
                            ack: abandoned.clone(),
                        });
                        Reservation::Resent { seq, abandoned }
                    }
                    None => Reservation::Fresh(seq),
                }
            })
            .collect())
    }

    async fn confirm(
        &self,
        conversation_id: &ConversationId,
        acks: &[(DedupKey, SendAck)],
    ) -> Result<(), PortError> {
        let mut stored = self.acks.lock().unwrap();
        let mut in_flight = self.in_flight.lock().unwrap();
        for (key, ack) in acks {
            in_flight.remove(&(conversation_id.clone(), key.clone()));
            stored.insert((conversation_id.clone(), key.clone()), ack.clone());
        }
        Ok(())
    }

    async fn abandon(
        &self,
        conversation_id: &ConversationId,
        keys: &[DedupKey],
    ) -> Result<(), PortError> {
        let mut in_flight = self.in_flight.lock().unwrap();
        for key in keys {
            in_flight.remove(&(conversation_id.clone(), key.clone()));
        }
        Ok(())
    }

    async fn release(
        &self,
        conversation_id: &ConversationId,
        first: Seq,
        count: u64,
    ) -> Result<bool, PortError> {
        let mut counters = self.counters.lock().unwrap();
        let counter = counters.entry(conversation_id.clone()).or_default();
        if *counter == first.0 + count - 1 {
            *counter = first.0 - 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn claim_abandoned(
        &self,
        _lease: Duration,
        limit: usize,
    ) -> Result<Vec<Reaped>, PortError> {
        let mut claimed = self.claimed.lock().unwrap();
        let expired = std::mem::take(&mut *self.abandoned.lock().unwrap());
        claimed.extend(
            expired
                .into_iter()
                .map(|((conversation_id, key), ack)| AbandonedSend {
                    conversation_id,
                    key,
                    ack,
                }),
        );
        Ok(claimed
            .iter()
            .take(limit)
            .cloned()
            .map(Reaped::Claimed)
            .collect())
    }

    async fn settle_abandoned(&self, send: &AbandonedSend) -> Result<(), PortError> {
        self.claimed.lock().unwrap().retain(|claim| claim != send);
        Ok(())
    }

    async fn last_seq(&self, conversation_id: &ConversationId) -> Result<Seq, PortError> {
        Ok(Seq(*self
            .counters
            .lock()
            .unwrap()
            .get(conversation_id)
            .unwrap_or(&0)))
    }
}

#[derive(Default)]
pub struct FakePresence;

#[async_trait]
impl Presence for FakePresence {
    async fn connect(&self, _: &UserId, _: &SessionId, _: &NodeId) -> Result<bool, PortError> {
        Ok(true)
    }

    async fn disconnect(&self, _: &UserId, _: &SessionId, _: &NodeId) -> Result<bool, PortError> {
        Ok(true)
    }

    async fn get(&self, users: &[UserId]) -> Result<BTreeMap<UserId, PresenceInfo>, PortError> {
        Ok(users
            .iter()
            .map(|user| {
                (
                    user.clone(),
                    PresenceInfo {
                        online: false,
                        last_seen: None,
                    },
                )
            })
            .collect())
    }

    async fn session_count(&self, _: &UserId) -> Result<usize, PortError> {
        Ok(0)
    }
}

/// Records what is published; delivers subscribed topics to the incoming channel, or, once
/// [`FakeBus::reach_this_node_only`] is called, hands them back to publishers to route
/// ([`Bus::route_here`]), as the standalone bus does.
pub struct FakeBus {
    pub published: Mutex<Vec<BusEnvelope>>,
    this_node_only: AtomicBool,
    subscribed: Mutex<HashSet<BusTopic>>,
    sender: mpsc::Sender<BusEnvelope>,
    receiver: Mutex<Option<mpsc::Receiver<BusEnvelope>>>,
}

impl Default for FakeBus {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel(4096);
        Self {
            published: Mutex::default(),
            this_node_only: AtomicBool::new(false),
            subscribed: Mutex::default(),
            sender,
            receiver: Mutex::new(Some(receiver)),
        }
    }
}

#[async_trait]
impl Bus for FakeBus {
    async fn publish(&self, envelope: BusEnvelope) -> Result<(), PortError> {
        self.published.lock().unwrap().push(envelope.clone());
        let subscribed = self.subscribed.lock().unwrap().contains(&envelope.topic);
        if subscribed {
            let _ = self.sender.send(envelope).await;
        }
        Ok(())
    }

    async fn subscribe(&self, topics: Vec<BusTopic>) -> Result<(), PortError> {
        self.subscribed.lock().unwrap().extend(topics);
        Ok(())
    }

    async fn unsubscribe(&self, topics: Vec<BusTopic>) -> Result<(), PortError> {
        let mut subscribed = self.subscribed.lock().unwrap();
        for topic in topics {
            subscribed.remove(&topic);
        }
        Ok(())
    }

    fn route_here(&self, envelope: BusEnvelope) -> Publishing {
        if !self.this_node_only.load(Ordering::SeqCst) {
            return Publishing::Publish(envelope);
        }
        self.published.lock().unwrap().push(envelope.clone());
        if self.subscribed.lock().unwrap().contains(&envelope.topic) {
            Publishing::RouteHere(envelope)
        } else {
            Publishing::Dropped
        }
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<BusEnvelope>> {
        self.receiver.lock().unwrap().take()
    }
}

impl FakeBus {
    /// From now on the bus reaches this node only: publishers route what it hands back.
    pub fn reach_this_node_only(&self) {
        self.this_node_only.store(true, Ordering::SeqCst);
    }
}

/// Every message ever put, newest version kept.
#[derive(Default)]
pub struct FakeCache {
    records: Mutex<BTreeMap<(ConversationId, Seq), MessageRecord>>,
}

#[async_trait]
impl MessageCache for FakeCache {
    async fn put(
        &self,
        conversation_id: &ConversationId,
        records: &[MessageRecord],
    ) -> Result<(), PortError> {
        let mut cached = self.records.lock().unwrap();
        for record in records {
            let key = (conversation_id.clone(), record.message.seq);
            if cached
                .get(&key)
                .is_none_or(|old| old.version < record.version)
            {
                cached.insert(key, record.clone());
            }
        }
        Ok(())
    }

    async fn range(
        &self,
        conversation_id: &ConversationId,
        from: Seq,
        to: Seq,
    ) -> Result<Option<Vec<MessageRecord>>, PortError> {
        let cached = self.records.lock().unwrap();
        let mut records = Vec::new();
        for seq in from.0..=to.0 {
            match cached.get(&(conversation_id.clone(), Seq(seq))) {
                Some(record) => records.push(record.clone()),
                None => return Ok(None),
            }
        }
        Ok(Some(records))
    }

    async fn held(
        &self,
        conversation_id: &ConversationId,
        from: Seq,
        to: Seq,
    ) -> Result<Vec<MessageRecord>, PortError> {
        let cached = self.records.lock().unwrap();
        Ok((from.0..=to.0)
            .filter_map(|seq| cached.get(&(conversation_id.clone(), Seq(seq))).cloned())
            .collect())
    }

    async fn forget_through(
        &self,
        conversation_id: &ConversationId,
        through: Seq,
    ) -> Result<(), PortError> {
        self.records
            .lock()
            .unwrap()
            .retain(|(cached_in, seq), _| cached_in != conversation_id || *seq > through);
        Ok(())
    }
}

pub struct AllowAll;

#[async_trait]
impl RateLimiter for AllowAll {
    async fn check(&self, _user_id: &UserId, _cost: u32) -> Result<RateDecision, PortError> {
        Ok(RateDecision::Allowed)
    }
}

/// A node over fake ports, with handles to inspect them.
pub struct Harness {
    pub node: Node,
    pub log: Arc<FakeLog>,
    pub store: Arc<FakeStore>,
    pub bus: Arc<FakeBus>,
    pub sequencer: Arc<FakeSequencer>,
}

impl Harness {
    pub fn new(limits: Limits) -> Self {
        let log = Arc::new(FakeLog::default());
        let store = Arc::new(FakeStore::default());
        let bus = Arc::new(FakeBus::default());
        let sequencer = Arc::new(FakeSequencer::default());
        let ports = Ports {
            log: log.clone(),
            store: store.clone(),
            directory: store.clone(),
            sequencer: sequencer.clone(),
            presence: Arc::new(FakePresence),
            bus: bus.clone(),
            rate_limiter: Arc::new(AllowAll),
            cache: Arc::new(FakeCache::default()),
            blobs: None,
            search: None,
            audit: None,
            retention: None,
        };
        let node = Node::new(
            NodeId::new("test-node"),
            ports,
            limits,
            Metrics::unregistered(),
        );
        Self {
            node,
            log,
            store,
            bus,
            sequencer,
        }
    }

    /// Puts a group conversation with these members (the first is the owner) in the directory.
    pub fn group(&self, id: &str, members: &[&str]) -> ConversationId {
        let now = chrono::Utc::now();
        let conversation_id = ConversationId::new(id);
        let record = ConversationRecord {
            conversation: Conversation {
                conversation_id: conversation_id.clone(),
                kind: ConversationKind::Group,
                title: None,
                members: members.iter().map(|member| UserId::new(*member)).collect(),
                created_by: UserId::new(members[0]),
                created_at: now,
                last_seq: Seq::ZERO,
            },
            participants: members
                .iter()
                .enumerate()
                .map(|(index, member)| Participant {
                    user_id: UserId::new(*member),
                    role: if index == 0 {
                        ParticipantRole::Owner
                    } else {
                        ParticipantRole::Member
                    },
                    joined_at: now,
                })
                .collect(),
            version: 1,
            updated_at: now,
        };
        self.store
            .conversations
            .lock()
            .unwrap()
            .insert(conversation_id.clone(), record);
        conversation_id
    }
}
