//! The store: messages, conversations and participants with watermarks. Ingest writes it from
//! the log; reads serve history, sync and conversation lists.

use std::cmp::Ordering;

use async_trait::async_trait;
use wire::log::{ConversationRecord, MessageRecord, ReactionDelta};
use wire::{ClientMsgId, ConversationId, MessageId, Seq, Timestamp, UserId};

use crate::PortError;

/// One idempotent write. Applying the same write twice, or an older version after a newer
/// one, changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreWrite {
    /// Insert, or replace when `version` is higher than the stored one.
    Message(MessageRecord),
    /// Apply one reaction change to the stored message when the stored version is older than
    /// the change's ([`ReactionDelta::apply_to`]). Writes of one message arrive in log order;
    /// a change to a message the store does not hold is skipped.
    Reaction(ReactionDelta),
    /// Insert, or replace when `version` is higher. The participant set is replaced (users no
    /// longer listed stop being participants); watermarks of users who stay are kept.
    Conversation(ConversationRecord),
    /// Forget every message of the conversation with a seq up to `through_seq` (retention),
    /// with what hangs on them (reactions); a message write at or below the highest purge
    /// applied is skipped from then on. Watermarks stay. An older purge changes nothing.
    Purge {
        conversation_id: ConversationId,
        through_seq: Seq,
    },
    /// Erase `user_id` from the conversation up to `through_seq`
    /// ([`wire::log::LogEventBody::UserErased`]): their messages become deleted (one version
    /// up, seq kept; [`wire::log::MessageRecord::erase_user`]), their reactions on the others
    /// and their watermarks go. Applying it again changes nothing.
    Erase {
        conversation_id: ConversationId,
        user_id: UserId,
        through_seq: Seq,
    },
    /// Raise a participant's watermarks; each only ever goes up.
    Watermarks {
        conversation_id: ConversationId,
        user_id: UserId,
        delivered_seq: Seq,
        read_seq: Seq,
    },
}

/// A conversation as stored, with what the store derived from its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConversation {
    pub record: ConversationRecord,
    /// Highest seq among stored messages of this conversation.
    pub last_seq: Seq,
    /// Time of the newest stored message, else the conversation's creation.
    pub last_activity_at: Timestamp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermarks {
    pub delivered_seq: Seq,
    pub read_seq: Seq,
}

/// The order of a user's conversations: most recent activity first, then conversation id
/// ascending. Every adapter lists in this order.
pub fn listing_order(left: &StoredConversation, right: &StoredConversation) -> Ordering {
    right
        .last_activity_at
        .cmp(&left.last_activity_at)
        .then_with(|| {
            left.record
                .conversation
                .conversation_id
                .cmp(&right.record.conversation.conversation_id)
        })
}

/// One page of a user's conversations: sorts `listed` by [`listing_order`] and returns at most
/// `limit` of those that come after `cursor` (the conversation named by the `after` argument,
/// with its own sort key even if the user has left it since).
pub fn page_by_activity(
    mut listed: Vec<StoredConversation>,
    cursor: Option<&StoredConversation>,
    limit: usize,
) -> Vec<StoredConversation> {
    listed.sort_by(listing_order);
    let start = match cursor {
        None => 0,
        Some(cursor) => {
            listed.partition_point(|stored| listing_order(stored, cursor) != Ordering::Greater)
        }
    };
    listed.into_iter().skip(start).take(limit).collect()
}

/// Which messages of one conversation to read. Results are always ascending by seq.
/// - `after_seq` set: the oldest `limit` messages with seq > after_seq (and < before_seq if set);
/// - otherwise: the newest `limit` messages with seq < before_seq (or the newest overall).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageQuery {
    pub after_seq: Option<Seq>,
    pub before_seq: Option<Seq>,
    pub limit: usize,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies a batch of idempotent writes; returns once they are durable — or, for a store
    /// that ingest fills from a log whose consumer offsets wait for it (the embedded store
    /// behind the embedded log), once they are visible and will be durable before any offset
    /// past them is.
    async fn apply(&self, writes: Vec<StoreWrite>) -> Result<(), PortError>;

    async fn conversation(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<StoredConversation>, PortError>;

    /// Zero watermarks for a participant with none recorded.
    async fn watermarks(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
    ) -> Result<Watermarks, PortError>;

    async fn message(
        &self,
        conversation_id: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, PortError>;

    async fn message_by_client_id(
        &self,
        conversation_id: &ConversationId,
        sender_id: &UserId,
        client_msg_id: &ClientMsgId,
    ) -> Result<Option<MessageRecord>, PortError>;

    async fn messages(
        &self,
        conversation_id: &ConversationId,
        query: MessageQuery,
    ) -> Result<Vec<MessageRecord>, PortError>;

    /// Whether the store answers right now.
    async fn is_ready(&self) -> bool;

    /// Returns once the store holds what the log held when it was called, where this process
    /// can know it (the embedded store, which the node's own ingest fills); at once for the
    /// others. Call it before reading what a request must see whole (an export).
    async fn wait_for_log(&self) {}
}
