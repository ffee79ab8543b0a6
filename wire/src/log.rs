//! Domain events written to the durable log (embedded log in standalone, Kafka in a cluster)
//! and consumed by ingest. Versioned JSON with an event id for idempotency.

use serde::{Deserialize, Serialize};

use crate::{
    ClientMsgId, Conversation, ConversationId, ConversationKind, Message, MessageId, Seq,
    Timestamp, UserId,
};

mod erasure;
mod peek;
mod reaction;

pub use erasure::ErasedChange;
pub use peek::topic_of_serialized;
pub use reaction::{change_reaction, ReactionChange, ReactionDelta};

/// Payload schema version written by this build.
pub const LOG_EVENT_VERSION: u32 = 1;

/// Topic names (the names of the system Parley replaces, plus a few of its own).
pub mod topics {
    pub const MESSAGE_SENT: &str = "message.sent";
    pub const MESSAGE_EDITED: &str = "message.edited";
    pub const MESSAGE_DELETED: &str = "message.deleted";
    pub const MESSAGE_REACTED: &str = "message.reacted";
    pub const CONVERSATION_UPDATED: &str = "conversation.updated";
    pub const RECEIPT_UPDATED: &str = "receipt.updated";
    pub const MESSAGE_DELIVERED: &str = "message.delivered";

    pub const ALL: [&str; 7] = [
        MESSAGE_SENT,
        MESSAGE_EDITED,
        MESSAGE_DELETED,
        MESSAGE_REACTED,
        CONVERSATION_UPDATED,
        RECEIPT_UPDATED,
        MESSAGE_DELIVERED,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantRole {
    Owner,
    Member,
}

/// A member of a conversation as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub user_id: UserId,
    pub role: ParticipantRole,
    pub joined_at: Timestamp,
}

/// A conversation's metadata and membership at one `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub conversation: Conversation,
    pub participants: Vec<Participant>,
    /// Incremented on every change; writers keep the highest version.
    pub version: u64,
    pub updated_at: Timestamp,
}

impl ConversationRecord {
    pub fn is_member(&self, user_id: &UserId) -> bool {
        self.participants
            .iter()
            .any(|participant| &participant.user_id == user_id)
    }

    /// The pair a direct conversation belongs to: its distinct participants in ascending order
    /// (one user talking to themselves is the pair of them twice). `None` for groups and for
    /// malformed direct conversations (none or more than two distinct participants). Every
    /// directory keys a pair's one conversation by this.
    pub fn direct_pair(&self) -> Option<DirectPair<'_>> {
        if self.conversation.kind != ConversationKind::Direct {
            return None;
        }
        let mut users: Vec<&UserId> = self
            .participants
            .iter()
            .map(|participant| &participant.user_id)
            .collect();
        users.sort();
        users.dedup();
        match users.as_slice() {
            [only] => Some(DirectPair {
                lower: only,
                higher: only,
            }),
            [lower, higher] => Some(DirectPair { lower, higher }),
            _ => None,
        }
    }
}

/// The two users of a direct conversation, `lower <= higher` (see
/// [`ConversationRecord::direct_pair`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectPair<'a> {
    pub lower: &'a UserId,
    pub higher: &'a UserId,
}

/// A message at one `version` (1 when sent, +1 per edit, delete or reaction change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub message: Message,
    pub version: u64,
}

/// The version of an aborted send's tombstone: above any real version (and within MongoDB's
/// signed 64-bit integers), so it wins over the send whatever order they are applied in.
pub const ABORTED_VERSION: u64 = i64::MAX as u64;

impl MessageRecord {
    /// Whether this is the tombstone of a send that was never accepted (see
    /// [`LogEventBody::MessageAborted`]). Stores return it like a deleted message at its seq
    /// (seqs stay dense), but never as the message of its `client_msg_id` (the retry is).
    pub fn is_aborted(&self) -> bool {
        self.version == ABORTED_VERSION
    }

    /// Whether this version of a message replaces `other` (the same message) wherever copies
    /// are kept: a deletion is final (a deleted version replaces any live one, and no live
    /// version replaces a deleted one); otherwise the higher version wins.
    pub fn supersedes(&self, other: &MessageRecord) -> bool {
        match (self.message.deleted, other.message.deleted) {
            (true, false) => true,
            (false, true) => false,
            _ => self.version > other.version,
        }
    }

    /// The tombstone of this send: same id, conversation, seq, sender and `client_msg_id`,
    /// nothing else.
    pub fn aborted(&self) -> MessageRecord {
        let message = &self.message;
        Self::tombstone(AbortedSend {
            message_id: message.message_id.clone(),
            conversation_id: message.conversation_id.clone(),
            seq: message.seq,
            sender_id: message.sender_id.clone(),
            client_msg_id: message.client_msg_id.clone(),
            created_at: message.created_at,
        })
    }

    /// The tombstone of a send that was never accepted (see [`LogEventBody::MessageAborted`]).
    pub fn tombstone(send: AbortedSend) -> MessageRecord {
        MessageRecord {
            message: Message {
                message_id: send.message_id,
                conversation_id: send.conversation_id,
                seq: send.seq,
                sender_id: send.sender_id,
                client_msg_id: send.client_msg_id,
                text: String::new(),
                reply_to: None,
                forwarded_from: None,
                reactions: Default::default(),
                created_at: send.created_at,
                edited_at: None,
                deleted: true,
                attachments: Vec::new(),
            },
            version: ABORTED_VERSION,
        }
    }
}

/// What identifies a send that was never accepted: all its tombstone keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct AbortedSend {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: Seq,
    pub sender_id: UserId,
    pub client_msg_id: ClientMsgId,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogEventBody {
    MessageSent {
        record: MessageRecord,
    },
    MessageEdited {
        record: MessageRecord,
    },
    MessageDeleted {
        record: MessageRecord,
    },
    /// A reaction change as the whole message: what builds before reaction deltas logged.
    /// Still read (a log may hold them); no longer written.
    MessageReacted {
        record: MessageRecord,
    },
    /// One reaction added or taken back, on the `message.reacted` topic.
    ReactionChanged {
        delta: ReactionDelta,
    },
    ConversationUpdated {
        record: ConversationRecord,
    },
    ReceiptUpdated {
        conversation_id: ConversationId,
        user_id: UserId,
        delivered_seq: Seq,
        read_seq: Seq,
    },
    /// A send whose append failed in a way that may still have stored it (a broker that wrote
    /// the record but whose acknowledgment was lost): its sender got an error, so its content
    /// must never appear, and its seq is not reused. `record` is the send's tombstone
    /// ([`MessageRecord::aborted`]): a deleted message that fills the seq, on the
    /// `message.deleted` topic.
    MessageAborted {
        record: MessageRecord,
    },
    /// Retention purged every message of the conversation up to `through_seq` (protocol v1.1,
    /// "Compliance"): stores, caches and indexes forget them; their seqs are never reused. On
    /// the `message.deleted` topic. Applying it again, or an older one, changes nothing.
    MessagesPurged {
        conversation_id: ConversationId,
        through_seq: Seq,
    },
    /// Erasure (protocol v1.1, "Compliance"): every message `user_id` sent in the conversation
    /// up to `through_seq` becomes deleted (text, attachments, reactions and reply links gone;
    /// the seq kept), their reactions on the conversation's messages and their receipts go.
    /// Their membership goes by the `conversation_updated` the erasure logs before it. On the
    /// `message.deleted` topic. Applying it again changes nothing.
    UserErased {
        conversation_id: ConversationId,
        user_id: UserId,
        through_seq: Seq,
    },
    /// Written by ingest once a message is in the store: the "stored" acknowledgment.
    MessageStored {
        conversation_id: ConversationId,
        message_id: MessageId,
        seq: Seq,
        sender_id: UserId,
    },
}

impl LogEventBody {
    pub fn topic(&self) -> &'static str {
        match self {
            LogEventBody::MessageSent { .. } => topics::MESSAGE_SENT,
            LogEventBody::MessageEdited { .. } => topics::MESSAGE_EDITED,
            LogEventBody::MessageDeleted { .. }
            | LogEventBody::MessageAborted { .. }
            | LogEventBody::MessagesPurged { .. }
            | LogEventBody::UserErased { .. } => topics::MESSAGE_DELETED,
            LogEventBody::MessageReacted { .. } | LogEventBody::ReactionChanged { .. } => {
                topics::MESSAGE_REACTED
            }
            LogEventBody::ConversationUpdated { .. } => topics::CONVERSATION_UPDATED,
            LogEventBody::ReceiptUpdated { .. } => topics::RECEIPT_UPDATED,
            LogEventBody::MessageStored { .. } => topics::MESSAGE_DELIVERED,
        }
    }

    /// The partitioning key: one conversation's events stay in order.
    pub fn conversation_id(&self) -> &ConversationId {
        match self {
            LogEventBody::MessageSent { record }
            | LogEventBody::MessageEdited { record }
            | LogEventBody::MessageDeleted { record }
            | LogEventBody::MessageAborted { record }
            | LogEventBody::MessageReacted { record } => &record.message.conversation_id,
            LogEventBody::ReactionChanged { delta } => &delta.conversation_id,
            LogEventBody::ConversationUpdated { record } => &record.conversation.conversation_id,
            LogEventBody::ReceiptUpdated {
                conversation_id, ..
            }
            | LogEventBody::MessageStored {
                conversation_id, ..
            }
            | LogEventBody::MessagesPurged {
                conversation_id, ..
            }
            | LogEventBody::UserErased {
                conversation_id, ..
            } => conversation_id,
        }
    }
}

/// One event on the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Unique per event; consumers may use it to drop re-deliveries.
    pub event_id: String,
    /// Payload schema version.
    pub v: u32,
    pub at: Timestamp,
    pub body: LogEventBody,
}

impl LogEvent {
    pub fn new(event_id: impl Into<String>, at: Timestamp, body: LogEventBody) -> Self {
        Self {
            event_id: event_id.into(),
            v: LOG_EVENT_VERSION,
            at,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn record(kind: ConversationKind, users: &[&str]) -> ConversationRecord {
        let at = DateTime::from_timestamp(0, 0).expect("epoch");
        let participants = users
            .iter()
            .map(|user| Participant {
                user_id: UserId::new(*user),
                role: ParticipantRole::Member,
                joined_at: at,
            })
            .collect();
        ConversationRecord {
            conversation: Conversation {
                conversation_id: ConversationId::new("c"),
                kind,
                title: None,
                members: users.iter().map(|user| UserId::new(*user)).collect(),
                created_by: UserId::new(users.first().copied().unwrap_or("nobody")),
                created_at: at,
                last_seq: Seq::ZERO,
            },
            participants,
            version: 1,
            updated_at: at,
        }
    }

    fn pair(kind: ConversationKind, users: &[&str]) -> Option<(String, String)> {
        record(kind, users).direct_pair().map(|pair| {
            (
                pair.lower.as_str().to_owned(),
                pair.higher.as_str().to_owned(),
            )
        })
    }

    #[test]
    fn a_direct_pair_is_its_two_users_in_ascending_order() {
        let expected = Some(("alice".to_owned(), "bob".to_owned()));
        assert_eq!(pair(ConversationKind::Direct, &["alice", "bob"]), expected);
        assert_eq!(pair(ConversationKind::Direct, &["bob", "alice"]), expected);
        assert_eq!(
            pair(ConversationKind::Direct, &["bob", "alice", "bob"]),
            expected,
            "a repeated participant counts once"
        );
    }

    #[test]
    fn talking_to_oneself_is_a_pair_of_one_user_twice() {
        assert_eq!(
            pair(ConversationKind::Direct, &["alice"]),
            Some(("alice".to_owned(), "alice".to_owned()))
        );
    }

    #[test]
    fn groups_and_malformed_direct_conversations_have_no_pair() {
        assert_eq!(pair(ConversationKind::Group, &["alice", "bob"]), None);
        assert_eq!(pair(ConversationKind::Direct, &[]), None);
        assert_eq!(
            pair(ConversationKind::Direct, &["alice", "bob", "carol"]),
            None
        );
    }
}
