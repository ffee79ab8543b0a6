//! Retention policies of conversations (protocol v1.1, "Compliance"): how long each keeps its
//! messages, whether a legal hold suspends that, and up to which seq retention has purged it.
//! Shared by every node of a cluster: the admin routes change a policy, the retention sweeper
//! reads them and records its purges, conversation actors read `purged_through` (their
//! `first_seq`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wire::{ConversationId, Seq, Timestamp, UserId};

use crate::PortError;

/// Whether a legal hold suspends retention (and erasure) for a conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalHold {
    #[default]
    Off,
    On,
}

/// How long a conversation keeps its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "days")]
pub enum RetentionPeriod {
    /// The node's `retention.default_days`.
    #[default]
    Default,
    /// Forever (an explicit `0` days).
    Forever,
    /// This many retention days (at least 1).
    Days(u32),
}

impl RetentionPeriod {
    /// The period `days` stands for: `0` is forever.
    pub fn of_days(days: u32) -> Self {
        match days {
            0 => RetentionPeriod::Forever,
            days => RetentionPeriod::Days(days),
        }
    }
}

/// What the policies say about one conversation. The default: the default period, no hold,
/// nothing purged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRetention {
    pub period: RetentionPeriod,
    pub legal_hold: LegalHold,
    /// Every seq at or below this was purged by retention (`0`: none).
    pub purged_through: Seq,
}

impl ConversationRetention {
    /// The oldest seq retention still keeps: `purged_through + 1` (1 when nothing was purged).
    pub fn first_seq(&self) -> Seq {
        self.purged_through.next()
    }
}

#[async_trait]
pub trait RetentionPolicies: Send + Sync + 'static {
    /// The conversation's retention (the default for one never changed).
    async fn retention(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<ConversationRetention, PortError>;

    /// Sets how long the conversation keeps its messages.
    async fn set_period(
        &self,
        conversation_id: &ConversationId,
        period: RetentionPeriod,
    ) -> Result<(), PortError>;

    /// Puts the conversation on legal hold or lifts it.
    async fn set_legal_hold(
        &self,
        conversation_id: &ConversationId,
        hold: LegalHold,
    ) -> Result<(), PortError>;

    /// Records that every seq up to `through` was purged. Never moves back: an older `through`
    /// than the one recorded changes nothing.
    async fn record_purge(
        &self,
        conversation_id: &ConversationId,
        through: Seq,
    ) -> Result<(), PortError>;

    /// Every conversation whose retention is not the default (its own period, a hold, or a
    /// purge), in any order.
    async fn changed(&self) -> Result<Vec<(ConversationId, ConversationRetention)>, PortError>;
}

/// What the retention sweep asks of the store to find expired messages, and erasure to find
/// a user's conversations (the embedded store, MongoDB).
#[async_trait]
pub trait RetentionScan: Send + Sync + 'static {
    /// Up to `limit` ids of conversations with stored messages, ascending, after `after`.
    async fn conversations_with_messages(
        &self,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<ConversationId>, PortError>;

    /// Up to `limit` ids of conversations holding stored messages `sender_id` sent (deleted
    /// ones too), ascending, after `after`: erasure walks them, also those the sender left.
    async fn conversations_with_messages_from(
        &self,
        sender_id: &UserId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<ConversationId>, PortError>;

    /// The highest seq among the conversation's stored messages older than the oldest one
    /// created at or after `before` (all of them when none is that young); `None` when no
    /// stored message is older. Seqs follow creation times, so these are the expired ones.
    async fn newest_seq_before(
        &self,
        conversation_id: &ConversationId,
        before: Timestamp,
    ) -> Result<Option<Seq>, PortError>;
}
