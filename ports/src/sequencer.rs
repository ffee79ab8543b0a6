//! Sequencing and dedup: dense per-conversation seq and `client_msg_id` → ack.

use std::time::Duration;

use async_trait::async_trait;
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, MessageId, Seq, Timestamp, UserId};

use crate::PortError;

/// The idempotency key of a send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub sender_id: UserId,
    pub client_msg_id: ClientMsgId,
}

/// A send asking for a seq: its idempotency key, and the id and creation time its message gets
/// if it is accepted. A cluster sequencer keeps them with the reservation, so that a retry
/// after the reserving node died can tombstone that first send ([`Reservation::Resent`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SendIntent {
    pub key: DedupKey,
    pub message_id: MessageId,
    pub created_at: Timestamp,
}

impl SendIntent {
    /// The intent of a send made at `created_at`, with a new message id (UUIDv7).
    pub fn new(key: DedupKey, created_at: Timestamp) -> Self {
        Self {
            key,
            message_id: MessageId::new(uuid::Uuid::now_v7().to_string()),
            created_at,
        }
    }
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
    /// A fresh seq for a retry whose first send was reserved by a batch that never confirmed
    /// nor abandoned it within [`IN_FLIGHT_TTL`] (its node died, maybe after appending it to
    /// the log), and which the store does not hold: `abandoned` is the ack that first send
    /// would have had. The caller appends its tombstone with this send, so that whichever
    /// reaches the store first, the key ends with one message, then settles it
    /// ([`Sequencer::settle_abandoned`]): the first send is claimed for the caller like a
    /// [`Reaped::Claimed`] one, for [`IN_FLIGHT_TTL`].
    Resent { seq: Seq, abandoned: SendAck },
}

/// What [`Sequencer::reserve_reporting_last`] answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservations {
    /// One per send, as [`Sequencer::reserve`] answers.
    pub each: Vec<Reservation>,
    /// The highest seq allocated in the conversation before this call's fresh ones: the
    /// caller's messages to catch up on (other nodes' sends) are those up to it.
    pub last_before: Seq,
}

/// A reservation whose batch neither confirmed nor abandoned it within [`IN_FLIGHT_TTL`], and
/// that no retry replaced: its node died, and its client never retried (or not yet).
#[derive(Debug, Clone, PartialEq)]
pub struct AbandonedSend {
    pub conversation_id: ConversationId,
    pub key: DedupKey,
    /// The ack the send would have had (or, [`Reaped::Stored`], the stored message's).
    pub ack: SendAck,
}

/// What [`Sequencer::claim_abandoned`] made of an abandoned reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reaped {
    /// The store holds the send (its node died after the log append): the key now answers
    /// with its ack, as if the batch had confirmed it. Nothing more to do.
    Stored(AbandonedSend),
    /// Claimed: the caller appends the send's tombstone, then calls
    /// [`Sequencer::settle_abandoned`]. A retry of the key now gets a fresh seq (not
    /// [`Reservation::Resent`]: the claimer tombstones). A claim not settled within its lease
    /// (the claimer died) is handed out again.
    Claimed(AbandonedSend),
}

/// How long a reservation holds its key for a batch that neither confirms nor abandons it
/// (its node died between the two): retries get [`Reservation::InFlight`] until then, and a
/// fresh seq after ([`Reservation::Resent`] from a sequencer shared by several nodes). Longer than any append may take (`kafka.message_timeout_ms` and more).
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(60);

#[async_trait]
pub trait Sequencer: Send + Sync + 'static {
    /// For each send, in order, either the ack recorded for its key, a freshly allocated seq
    /// (the key is then held for this batch until `confirm` or `abandon`, at most
    /// [`IN_FLIGHT_TTL`]), or `InFlight` when another batch holds it. The fresh seqs of one
    /// call are consecutive and follow every seq allocated before.
    async fn reserve(
        &self,
        conversation_id: &ConversationId,
        sends: &[SendIntent],
    ) -> Result<Vec<Reservation>, PortError>;

    /// [`Sequencer::reserve`], and the highest seq allocated before it, so that a batch of
    /// sends learns of other nodes' messages without asking [`Sequencer::last_seq`] first. A
    /// sequencer shared over the network answers both in one round trip; this default asks
    /// twice (a seq another batch allocates between the two calls is not reported: the caller
    /// then finds a gap below its fresh seqs, which costs it its window, not correctness).
    async fn reserve_reporting_last(
        &self,
        conversation_id: &ConversationId,
        sends: &[SendIntent],
    ) -> Result<Reservations, PortError> {
        let last_before = self.last_seq(conversation_id).await?;
        let each = self.reserve(conversation_id, sends).await?;
        Ok(Reservations { each, last_before })
    }

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

    /// Settles up to `limit` abandoned reservations of any conversation, cluster-wide, each
    /// exactly once against concurrent retries and other claimers: those the store holds
    /// become acks ([`Reaped::Stored`]); the others are claimed for `lease`
    /// ([`Reaped::Claimed`]), with the claims whose lease ran out. A sequencer that lives and
    /// dies with its only node has none.
    async fn claim_abandoned(
        &self,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Reaped>, PortError>;

    /// The tombstone of a claimed send ([`Reaped::Claimed`], or the `abandoned` send of
    /// [`Reservation::Resent`]) is in the log: the claim is done.
    async fn settle_abandoned(&self, send: &AbandonedSend) -> Result<(), PortError>;

    /// Highest seq allocated in the conversation (`Seq::ZERO` when none).
    async fn last_seq(&self, conversation_id: &ConversationId) -> Result<Seq, PortError>;
}
