//! The bus: cross-node delivery of events to the nodes that have interested sessions.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::Receiver;
use wire::events::ServerEvent;
use wire::{ConversationId, NodeId, Seq, UserId};

use crate::PortError;

/// What a node subscribes to: a conversation's events, or one user's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum BusTopic {
    Conversation(ConversationId),
    User(UserId),
}

// Events dominate the traffic, so boxing them would add an allocation per delivery for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BusPayload {
    /// An event for the topic's sessions. `seq` is set for events that must reach sessions in
    /// seq order (`message.new`).
    Event {
        seq: Option<Seq>,
        event: ServerEvent,
    },
    /// Membership of a conversation changed: nodes with sessions of these users start or stop
    /// routing the conversation to them.
    MembershipChanged {
        conversation_id: ConversationId,
        added: Vec<UserId>,
        removed: Vec<UserId>,
    },
    /// Retention purged the topic's conversation up to `through_seq`: its actors drop those
    /// messages and answer `first_seq = through_seq + 1` from then on.
    MessagesPurged { through_seq: Seq },
    /// An operator ended the sessions of the topic's user (admin API): every node closes its
    /// sessions of that user.
    CloseSessions { reason: SessionCloseReason },
    /// Never published: a bus that lost its connection and subscribed the topic again hands
    /// this to its own node ([`RESUBSCRIBED_ORIGIN`]), since whatever was published meanwhile
    /// is lost; the conversation's actor catches up from the shared cache.
    Resubscribed,
}

/// The origin of [`BusPayload::Resubscribed`]: the receiving node's own bus.
pub const RESUBSCRIBED_ORIGIN: &str = "bus";

/// Why an operator closes a user's sessions; decides the close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionCloseReason {
    /// `disconnect`: close 4003.
    Disconnected,
    /// `ban`: close 4003.
    Banned,
    /// `revoke_tokens`: close 4001.
    TokensRevoked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusEnvelope {
    pub topic: BusTopic,
    pub origin: NodeId,
    pub payload: BusPayload,
}

/// What [`Bus::route_here`] made of an envelope.
pub enum Publishing {
    /// The bus reaches this node only and the node is subscribed to the topic: the publisher
    /// routes the envelope itself, as the node's router would have.
    RouteHere(BusEnvelope),
    /// The bus reaches this node only and the node is not subscribed to the topic: dropped, as
    /// `publish` drops it.
    Dropped,
    /// The bus reaches other nodes: [`Bus::publish`] it.
    Publish(BusEnvelope),
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes to every node subscribed to `envelope.topic` (this one included).
    async fn publish(&self, envelope: BusEnvelope) -> Result<(), PortError>;

    /// Lets a bus that reaches this node only hand a publish back to the publisher, to be
    /// routed on the publisher's task instead of through [`Bus::take_incoming`]'s channel;
    /// counted as published (and delivered or dropped) as `publish` counts it. Buses that reach
    /// other nodes answer [`Publishing::Publish`] (the default).
    fn route_here(&self, envelope: BusEnvelope) -> Publishing {
        Publishing::Publish(envelope)
    }

    async fn subscribe(&self, topics: Vec<BusTopic>) -> Result<(), PortError>;

    async fn unsubscribe(&self, topics: Vec<BusTopic>) -> Result<(), PortError>;

    /// The envelopes of this node's subscriptions. Can be taken once.
    fn take_incoming(&self) -> Option<Receiver<BusEnvelope>>;
}
