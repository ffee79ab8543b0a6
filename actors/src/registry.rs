//! The local registry: which sessions on this node belong to which user and conversation.
//! It keeps this node's bus subscriptions in step: a topic is subscribed when its first local
//! session appears and unsubscribed when the last one goes, so a node only receives traffic
//! for conversations and users it has sessions for.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use ports::{Bus, BusTopic, MessageCache, Sequencer};
use tokio::sync::{mpsc, oneshot};
use wire::{ConversationId, Seq, SessionId, UserId};

use crate::delivery_floor::{delivery_floor, Subscription};
use crate::session::SessionHandle;

enum SubscriptionChange {
    Subscribe {
        topics: Vec<BusTopic>,
        done: oneshot::Sender<Result<(), ports::PortError>>,
    },
    Unsubscribe {
        topics: Vec<BusTopic>,
    },
}

#[derive(Default)]
struct Maps {
    sessions_by_user: HashMap<UserId, Vec<SessionHandle>>,
    sessions_by_conversation: HashMap<ConversationId, Vec<SessionHandle>>,
    conversations_by_session: HashMap<SessionId, HashSet<ConversationId>>,
    /// Per subscribed conversation: the subscription's generation, its delivery floor
    /// ([`crate::delivery_floor`]; `None` until it is known) and how far it delivered.
    delivery_floors: HashMap<ConversationId, Subscription>,
    next_generation: u64,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct LocalRegistry {
    maps: Arc<Mutex<Maps>>,
    changes: mpsc::UnboundedSender<SubscriptionChange>,
    sequencer: Arc<dyn Sequencer>,
    cache: Arc<dyn MessageCache>,
}

impl LocalRegistry {
    /// Creates the registry and its subscription worker, which applies subscription changes to
    /// the bus in the order they were made.
    pub fn start(
        bus: Arc<dyn Bus>,
        sequencer: Arc<dyn Sequencer>,
        cache: Arc<dyn MessageCache>,
    ) -> Self {
        let (changes, mut receiver) = mpsc::unbounded_channel::<SubscriptionChange>();
        tokio::spawn(async move {
            while let Some(change) = receiver.recv().await {
                match change {
                    SubscriptionChange::Subscribe { topics, done } => {
                        let result = bus.subscribe(topics).await;
                        let _ = done.send(result);
                    }
                    SubscriptionChange::Unsubscribe { mut topics } => {
                        // Coalesce the unsubscribes queued behind this one.
                        while let Ok(next) = receiver.try_recv() {
                            match next {
                                SubscriptionChange::Unsubscribe { topics: more } => {
                                    topics.extend(more)
                                }
                                subscribe @ SubscriptionChange::Subscribe { .. } => {
                                    apply_unsubscribe(&*bus, std::mem::take(&mut topics)).await;
                                    if let SubscriptionChange::Subscribe { topics, done } =
                                        subscribe
                                    {
                                        let _ = done.send(bus.subscribe(topics).await);
                                    }
                                }
                            }
                        }
                        apply_unsubscribe(&*bus, topics).await;
                    }
                }
            }
        });
        Self {
            maps: Arc::default(),
            changes,
            sequencer,
            cache,
        }
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        self.maps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a session for its user and the given conversations, queuing `first_frame`
    /// (the welcome) before any event can reach the session. Returns once the bus subscriptions
    /// it needed are in place.
    pub async fn register_session(
        &self,
        session: &SessionHandle,
        conversations: &[ConversationId],
        first_frame: Option<bytestring::ByteString>,
    ) -> Result<(), ports::PortError> {
        let receiver = {
            let mut maps = self.maps();
            if let Some(frame) = first_frame {
                session.deliver(frame);
            }
            let mut new_topics = Vec::new();
            let user_sessions = maps
                .sessions_by_user
                .entry(session.user_id().clone())
                .or_default();
            if user_sessions.is_empty() {
                new_topics.push(BusTopic::User(session.user_id().clone()));
            }
            // Most users have one or two sessions: grow one slot at a time (a first push would
            // reserve four).
            user_sessions.reserve_exact(1);
            user_sessions.push(session.clone());
            let mut new_conversations = Vec::new();
            for conversation_id in conversations {
                if add_to_conversation(&mut maps, conversation_id, session) {
                    new_topics.push(BusTopic::Conversation(conversation_id.clone()));
                    new_conversations.push(conversation_id.clone());
                }
            }
            let generations = start_floors(&mut maps, &new_conversations);
            (self.subscribe_locked(new_topics), generations)
        };
        await_subscription(receiver.0).await?;
        self.record_floors(receiver.1).await
    }

    /// After a conversation's subscription took effect, records its delivery floor: every seq
    /// above it reaches this node (or is repaired from the cache), so fan-out starts right
    /// after it.
    async fn record_floors(
        &self,
        generations: Vec<(ConversationId, u64)>,
    ) -> Result<(), ports::PortError> {
        for (conversation_id, generation) in generations {
            let floor = delivery_floor(&*self.sequencer, &*self.cache, &conversation_id).await?;
            let mut maps = self.maps();
            if let Some(subscription) = maps.delivery_floors.get_mut(&conversation_id) {
                if subscription.generation == generation {
                    subscription.floor = Some(floor);
                }
            }
        }
        Ok(())
    }

    /// A conversation actor that stops (idle) hands on how far it delivered: the next one for
    /// the same subscription starts after `delivered`, not at the subscription's floor (which
    /// would re-deliver everything since, after a `gap_wait` stall).
    pub fn advance_floor(&self, conversation_id: &ConversationId, generation: u64, delivered: Seq) {
        if let Some(subscription) = self.maps().delivery_floors.get_mut(conversation_id) {
            if let (true, Some(floor)) = (
                subscription.generation == generation,
                subscription.floor.as_mut(),
            ) {
                *floor = (*floor).max(delivered);
            }
        }
    }

    /// The current subscription generation of a conversation and where its fan-out goes on
    /// from: the floor, or the last seq delivered when higher (`None` while the floor is being
    /// determined); `None` when the conversation is not subscribed.
    pub fn delivery_floor(&self, conversation_id: &ConversationId) -> Option<(u64, Option<Seq>)> {
        self.maps()
            .delivery_floors
            .get(conversation_id)
            .map(|subscription| (subscription.generation, subscription.position()))
    }

    /// Adds the local sessions of `users` to a conversation (they became members).
    pub async fn add_members(
        &self,
        conversation_id: &ConversationId,
        users: &[UserId],
    ) -> Result<(), ports::PortError> {
        let receiver = {
            let mut maps = self.maps();
            let sessions: Vec<SessionHandle> = users
                .iter()
                .filter_map(|user| maps.sessions_by_user.get(user))
                .flatten()
                .cloned()
                .collect();
            let mut new_topics = Vec::new();
            for session in &sessions {
                if add_to_conversation(&mut maps, conversation_id, session) {
                    new_topics.push(BusTopic::Conversation(conversation_id.clone()));
                }
            }
            let generations = if new_topics.is_empty() {
                Vec::new()
            } else {
                start_floors(&mut maps, std::slice::from_ref(conversation_id))
            };
            (self.subscribe_locked(new_topics), generations)
        };
        await_subscription(receiver.0).await?;
        self.record_floors(receiver.1).await
    }

    /// Removes the local sessions of `users` from a conversation (they stopped being members).
    pub fn remove_members(&self, conversation_id: &ConversationId, users: &[UserId]) {
        let mut maps = self.maps();
        let users: HashSet<&UserId> = users.iter().collect();
        let mut emptied = false;
        let mut removed_sessions = Vec::new();
        if let Some(sessions) = maps.sessions_by_conversation.get_mut(conversation_id) {
            sessions.retain(|session| {
                let keep = !users.contains(session.user_id());
                if !keep {
                    removed_sessions.push(session.session_id().clone());
                }
                keep
            });
            emptied = sessions.is_empty();
        }
        for session_id in removed_sessions {
            if let Some(conversations) = maps.conversations_by_session.get_mut(&session_id) {
                conversations.remove(conversation_id);
            }
        }
        if emptied {
            maps.sessions_by_conversation.remove(conversation_id);
            maps.delivery_floors.remove(conversation_id);
            let _ = self.changes.send(SubscriptionChange::Unsubscribe {
                topics: vec![BusTopic::Conversation(conversation_id.clone())],
            });
        }
    }

    /// Forgets a session everywhere; unsubscribes topics it was the last local session of.
    pub fn unregister_session(&self, session: &SessionHandle) {
        let mut maps = self.maps();
        let mut gone = Vec::new();
        if let Some(sessions) = maps.sessions_by_user.get_mut(session.user_id()) {
            sessions.retain(|other| other.session_id() != session.session_id());
            if sessions.is_empty() {
                maps.sessions_by_user.remove(session.user_id());
                gone.push(BusTopic::User(session.user_id().clone()));
            }
        }
        let conversations = maps
            .conversations_by_session
            .remove(session.session_id())
            .unwrap_or_default();
        for conversation_id in conversations {
            if let Some(sessions) = maps.sessions_by_conversation.get_mut(&conversation_id) {
                sessions.retain(|other| other.session_id() != session.session_id());
                if sessions.is_empty() {
                    maps.sessions_by_conversation.remove(&conversation_id);
                    maps.delivery_floors.remove(&conversation_id);
                    gone.push(BusTopic::Conversation(conversation_id));
                }
            }
        }
        if !gone.is_empty() {
            let _ = self
                .changes
                .send(SubscriptionChange::Unsubscribe { topics: gone });
        }
    }

    /// Queues the `message.new` frame of `seq` to every local session of a conversation, unless
    /// this subscription already delivered `seq` or a later one ([`Subscription::admit`]).
    /// Returns how many sessions took it, `None` when it was refused as a re-delivery.
    pub fn deliver_sequenced(
        &self,
        conversation_id: &ConversationId,
        seq: Seq,
        frame: &bytestring::ByteString,
    ) -> Option<u64> {
        let mut guard = self.maps();
        let maps = &mut *guard;
        let Some(sessions) = maps.sessions_by_conversation.get(conversation_id) else {
            return Some(0);
        };
        if let Some(subscription) = maps.delivery_floors.get_mut(conversation_id) {
            if !subscription.admit(seq) {
                return None;
            }
        }
        Some(deliver_all(sessions, frame, None))
    }

    /// Queues `frame` to every local session of a conversation (except `exclude`'s), under the
    /// registry's lock and without copying the session list. Returns how many took it.
    pub fn deliver_to_conversation(
        &self,
        conversation_id: &ConversationId,
        frame: &bytestring::ByteString,
        exclude: Option<&UserId>,
    ) -> u64 {
        let maps = self.maps();
        let Some(sessions) = maps.sessions_by_conversation.get(conversation_id) else {
            return 0;
        };
        deliver_all(sessions, frame, exclude)
    }

    /// Queues `frame` to every local session of a user. Returns how many took it.
    pub fn deliver_to_user(&self, user_id: &UserId, frame: &bytestring::ByteString) -> u64 {
        let maps = self.maps();
        let Some(sessions) = maps.sessions_by_user.get(user_id) else {
            return 0;
        };
        deliver_all(sessions, frame, None)
    }

    /// The user's sessions on this node.
    pub fn user_sessions(&self, user_id: &UserId) -> Vec<SessionHandle> {
        self.maps()
            .sessions_by_user
            .get(user_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The conversations one of the user's sessions on this node is registered for; `None`
    /// when the user has no session here.
    pub fn sibling_conversations(&self, user_id: &UserId) -> Option<Vec<ConversationId>> {
        let maps = self.maps();
        let sibling = maps.sessions_by_user.get(user_id)?.first()?;
        let conversations = maps
            .conversations_by_session
            .get(sibling.session_id())
            .map(|conversations| conversations.iter().cloned().collect())
            .unwrap_or_default();
        Some(conversations)
    }

    /// How many conversations the session is registered for (its user's conversations).
    pub fn session_conversation_count(&self, session_id: &SessionId) -> usize {
        self.maps()
            .conversations_by_session
            .get(session_id)
            .map_or(0, HashSet::len)
    }

    /// Whether the session is registered for the conversation: the conversations its user was
    /// a member of when it connected, kept up to date by membership changes (`sync` asks only
    /// these).
    pub fn session_in_conversation(
        &self,
        session_id: &SessionId,
        conversation_id: &ConversationId,
    ) -> bool {
        self.maps()
            .conversations_by_session
            .get(session_id)
            .is_some_and(|conversations| conversations.contains(conversation_id))
    }

    /// Where a conversation actor started from this thread should run instead, near the
    /// conversation's local sessions: `None` when one of them runs on this thread (or none has
    /// an arbiter), else the arbiter of the first. A bus event that reaches the router first
    /// would otherwise start the actor on the router's thread, away from every session it
    /// serves (issue #14).
    pub fn arbiter_near_sessions(
        &self,
        conversation_id: &ConversationId,
    ) -> Option<actix::ArbiterHandle> {
        let maps = self.maps();
        let sessions = maps.sessions_by_conversation.get(conversation_id)?;
        let here = std::thread::current().id();
        let mut homes = sessions.iter().filter_map(SessionHandle::home);
        if homes.clone().any(|home| home.thread == here) {
            return None;
        }
        homes.next().map(|home| home.arbiter.clone())
    }

    pub fn has_local_sessions(&self, conversation_id: &ConversationId) -> bool {
        self.maps()
            .sessions_by_conversation
            .contains_key(conversation_id)
    }

    /// Every local session (drain).
    pub fn all_sessions(&self) -> Vec<SessionHandle> {
        self.maps()
            .sessions_by_user
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    fn subscribe_locked(
        &self,
        topics: Vec<BusTopic>,
    ) -> Option<oneshot::Receiver<Result<(), ports::PortError>>> {
        if topics.is_empty() {
            return None;
        }
        let (done, receiver) = oneshot::channel();
        let _ = self
            .changes
            .send(SubscriptionChange::Subscribe { topics, done });
        Some(receiver)
    }
}

fn deliver_all(
    sessions: &[SessionHandle],
    frame: &bytestring::ByteString,
    exclude: Option<&UserId>,
) -> u64 {
    let mut delivered = 0;
    for session in sessions {
        if Some(session.user_id()) != exclude && session.deliver(frame.clone()) {
            delivered += 1;
        }
    }
    delivered
}

/// Opens a new subscription generation (floor not yet known) for each conversation.
fn start_floors(maps: &mut Maps, conversations: &[ConversationId]) -> Vec<(ConversationId, u64)> {
    conversations
        .iter()
        .map(|conversation_id| {
            maps.next_generation += 1;
            let generation = maps.next_generation;
            maps.delivery_floors
                .insert(conversation_id.clone(), Subscription::new(generation));
            (conversation_id.clone(), generation)
        })
        .collect()
}

/// Adds `session` to the conversation; true when it is the conversation's first local session.
fn add_to_conversation(
    maps: &mut Maps,
    conversation_id: &ConversationId,
    session: &SessionHandle,
) -> bool {
    let newly_tracked = maps
        .conversations_by_session
        .entry(session.session_id().clone())
        .or_default()
        .insert(conversation_id.clone());
    if !newly_tracked {
        return false;
    }
    let sessions = maps
        .sessions_by_conversation
        .entry(conversation_id.clone())
        .or_default();
    sessions.push(session.clone());
    sessions.len() == 1
}

async fn await_subscription(
    receiver: Option<oneshot::Receiver<Result<(), ports::PortError>>>,
) -> Result<(), ports::PortError> {
    match receiver {
        None => Ok(()),
        Some(receiver) => receiver
            .await
            .unwrap_or_else(|_| Err(ports::PortError::internal("subscription worker stopped"))),
    }
}

async fn apply_unsubscribe(bus: &dyn Bus, topics: Vec<BusTopic>) {
    if topics.is_empty() {
        return;
    }
    if let Err(error) = bus.unsubscribe(topics).await {
        tracing::warn!(error = %error, "bus unsubscribe failed");
    }
}
