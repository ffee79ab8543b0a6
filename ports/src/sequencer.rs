//! Sequencing and dedup: dense per-conversation seq and `client_msg_id` → ack.

use async_trait::async_trait;
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, Seq, UserId};

use crate::PortError;

/// The idempotency key of a send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub sender_id: UserId,
    pub client_msg_id: ClientMsgId,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// A fresh seq for a new message.
    Fresh(Seq),
    /// This key was accepted before: answer with the original ack, create nothing.
    Duplicate(SendAck),
    /// Another batch (on another node) reserved this key and has not confirmed or abandoned
    /// it yet: its send may still be accepted, so this one must neither create a second
    /// message nor claim the first's ack. Answered `unavailable`, to be retried shortly.
    InFlight,
}

/// How long a reservation holds its key for a batch that neither confirms nor abandons it
/// (its node died between the two): retries get [`Reservation::InFlight`] until then, and a
/// fresh seq after. Longer than any append may take (`kafka.message_timeout_ms` and more).
pub const IN_FLIGHT_TTL: std::time::Duration = std::time::Duration::from_secs(60);

#[async_trait]
pub trait Sequencer: Send + Sync + 'static {
    /// For each key, in order, either the ack recorded for it, a freshly allocated seq (the key
    /// is then held for this batch until `confirm` or `abandon`, at most [`IN_FLIGHT_TTL`]), or
    /// `InFlight` when another batch holds it. The fresh seqs of one call are consecutive and
    /// follow every seq allocated before.
    async fn reserve(
        &self,
        conversation_id: &ConversationId,
        keys: &[DedupKey],
    ) -> Result<Vec<Reservation>, PortError>;

    /// Records the acks of accepted sends, so retries get them from `reserve`.
    async fn confirm(
        &self,
        conversation_id: &ConversationId,
        acks: &[(DedupKey, SendAck)],
    ) -> Result<(), PortError>;

    /// The batch that reserved these keys failed (its sends got an error): retries may
    /// reserve them again. Keys confirmed meanwhile keep their acks.
    async fn abandon(
        &self,
        conversation_id: &ConversationId,
        keys: &[DedupKey],
    ) -> Result<(), PortError>;

    /// Gives back `count` seqs starting at `first` after the batch that held them failed to
    /// reach the log. Only the latest allocation can be given back; returns whether it was.
    async fn release(
        &self,
        conversation_id: &ConversationId,
        first: Seq,
        count: u64,
    ) -> Result<bool, PortError>;

    /// Highest seq allocated in the conversation (`Seq::ZERO` when none).
    async fn last_seq(&self, conversation_id: &ConversationId) -> Result<Seq, PortError>;
}
