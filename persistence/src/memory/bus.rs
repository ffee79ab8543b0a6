//! [`InProcessBus`]: the node-local bus of standalone mode.
//!
//! It mirrors Redis pub/sub for one node: `publish` delivers an envelope to this node's incoming
//! channel only when the node subscribed to its topic, so code that forgets to subscribe fails
//! in standalone exactly as it would in a cluster. Subscriptions are a set, not reference
//! counted: subscribing twice and unsubscribing once leaves the topic unsubscribed.
//!
//! The incoming channel is bounded. When it is full, `publish` waits until the consumer makes
//! room (backpressure on the publisher); it never drops a subscribed envelope. If the incoming
//! receiver was taken and dropped, `publish` fails with `PortError::Unavailable`.
//!
//! Since the bus reaches no other node, `route_here` hands a subscribed envelope back to its
//! publisher, which routes it on its own task (`actors::router::publish`): no trip through the
//! channel to the router's thread.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use ports::{Bus, BusEnvelope, BusTopic, PortError, Publishing, Service};
use tokio::sync::mpsc;

/// Default capacity of the incoming channel.
pub const DEFAULT_INCOMING_CAPACITY: usize = 65_536;

/// What the bus did, for tests and metrics.
#[derive(Debug, Default)]
pub struct BusCounters {
    /// `publish` calls.
    pub published: AtomicU64,
    /// Envelopes put on the incoming channel.
    pub delivered: AtomicU64,
    /// Envelopes handed back to their publisher to route (`route_here`).
    pub routed_here: AtomicU64,
    /// Envelopes dropped because this node was not subscribed to their topic.
    pub dropped_unsubscribed: AtomicU64,
}

pub struct InProcessBus {
    subscriptions: Mutex<HashSet<BusTopic>>,
    sender: mpsc::Sender<BusEnvelope>,
    incoming: Mutex<Option<mpsc::Receiver<BusEnvelope>>>,
    counters: BusCounters,
}

impl InProcessBus {
    pub fn new(incoming_capacity: usize) -> Self {
        let (sender, receiver) = mpsc::channel(incoming_capacity.max(1));
        Self {
            subscriptions: Mutex::new(HashSet::new()),
            sender,
            incoming: Mutex::new(Some(receiver)),
            counters: BusCounters::default(),
        }
    }

    pub fn counters(&self) -> &BusCounters {
        &self.counters
    }

    fn is_subscribed(&self, topic: &BusTopic) -> bool {
        lock(&self.subscriptions).contains(topic)
    }

    /// Counts a publish; false (and counted dropped) when no one here is subscribed.
    fn count_published(&self, topic: &BusTopic) -> bool {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let subscribed = self.is_subscribed(topic);
        if !subscribed {
            self.counters
                .dropped_unsubscribed
                .fetch_add(1, Ordering::Relaxed);
        }
        subscribed
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(DEFAULT_INCOMING_CAPACITY)
    }
}

/// Locks a mutex, recovering from poisoning: every critical section here leaves the data valid.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, envelope: BusEnvelope) -> Result<(), PortError> {
        if !self.count_published(&envelope.topic) {
            return Ok(());
        }
        self.sender.send(envelope).await.map_err(|_| {
            PortError::unavailable(Service::InProcess, "bus incoming channel closed")
        })?;
        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe(&self, topics: Vec<BusTopic>) -> Result<(), PortError> {
        lock(&self.subscriptions).extend(topics);
        Ok(())
    }

    async fn unsubscribe(&self, topics: Vec<BusTopic>) -> Result<(), PortError> {
        let mut subscriptions = lock(&self.subscriptions);
        for topic in &topics {
            subscriptions.remove(topic);
        }
        Ok(())
    }

    fn route_here(&self, envelope: BusEnvelope) -> Publishing {
        if !self.count_published(&envelope.topic) {
            return Publishing::Dropped;
        }
        self.counters.routed_here.fetch_add(1, Ordering::Relaxed);
        Publishing::RouteHere(envelope)
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<BusEnvelope>> {
        lock(&self.incoming).take()
    }
}

#[cfg(test)]
mod tests {
    use ports::BusPayload;
    use wire::{ConversationId, NodeId};

    use super::*;

    #[tokio::test]
    async fn counters_tell_delivered_from_dropped() {
        let bus = InProcessBus::new(4);
        let topic = BusTopic::Conversation(ConversationId::new("c"));
        let envelope = BusEnvelope {
            topic: topic.clone(),
            origin: NodeId::new("n"),
            payload: BusPayload::MembershipChanged {
                conversation_id: ConversationId::new("c"),
                added: Vec::new(),
                removed: Vec::new(),
            },
        };
        bus.publish(envelope.clone()).await.expect("publish");
        bus.subscribe(vec![topic]).await.expect("subscribe");
        bus.publish(envelope).await.expect("publish");
        let counters = bus.counters();
        assert_eq!(counters.published.load(Ordering::Relaxed), 2);
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 1);
        assert_eq!(counters.dropped_unsubscribed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn route_here_hands_back_subscribed_envelopes_and_drops_the_others() {
        let bus = InProcessBus::new(4);
        let mut incoming = bus.take_incoming().expect("incoming");
        let topic = BusTopic::Conversation(ConversationId::new("c"));
        let envelope = BusEnvelope {
            topic: topic.clone(),
            origin: NodeId::new("n"),
            payload: BusPayload::MessagesPurged {
                through_seq: wire::Seq(3),
            },
        };
        assert!(matches!(
            bus.route_here(envelope.clone()),
            Publishing::Dropped
        ));
        bus.subscribe(vec![topic]).await.expect("subscribe");
        match bus.route_here(envelope.clone()) {
            Publishing::RouteHere(handed_back) => assert_eq!(handed_back, envelope),
            _ => panic!("a subscribed envelope is handed back"),
        }
        assert!(
            incoming.try_recv().is_err(),
            "nothing went through the channel"
        );
        let counters = bus.counters();
        assert_eq!(counters.published.load(Ordering::Relaxed), 2);
        assert_eq!(counters.dropped_unsubscribed.load(Ordering::Relaxed), 1);
        assert_eq!(counters.routed_here.load(Ordering::Relaxed), 1);
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 0);
    }
}
