//! Operations: names, arguments and results (protocol v1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    ClientMsgId, Conversation, ConversationId, ConversationKind, Message, MessageId, Seq,
    Timestamp, UserId,
};

/// Largest `limit` accepted by `history.get` (and the page size of `sync`).
pub const HISTORY_MAX_LIMIT: u32 = 100;
/// `limit` of `history.get` when the client gives none.
pub const HISTORY_DEFAULT_LIMIT: u32 = 50;
/// Largest `limit` accepted by `conversation.list`.
pub const LIST_MAX_LIMIT: u32 = 200;
/// `limit` of `conversation.list` when the client gives none.
pub const LIST_DEFAULT_LIMIT: u32 = 50;

macro_rules! ops {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every operation of protocol v1.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op { $($variant),* }

        impl Op {
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];

            pub fn parse(name: &str) -> Option<Op> {
                match name {
                    $($name => Some(Op::$variant),)*
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Op::$variant => $name),*
                }
            }
        }
    };
}

ops! {
    Ping => "ping",
    ConversationCreate => "conversation.create",
    ConversationGet => "conversation.get",
    ConversationList => "conversation.list",
    ConversationUpdate => "conversation.update",
    ConversationAddMembers => "conversation.add_members",
    ConversationRemoveMembers => "conversation.remove_members",
    ConversationLeave => "conversation.leave",
    MessageSend => "message.send",
    MessageEdit => "message.edit",
    MessageDelete => "message.delete",
    MessageForward => "message.forward",
    ReactionAdd => "reaction.add",
    ReactionRemove => "reaction.remove",
    HistoryGet => "history.get",
    Sync => "sync",
    ReceiptDelivered => "receipt.delivered",
    ReceiptRead => "receipt.read",
    TypingStart => "typing.start",
    TypingStop => "typing.stop",
    PresenceGet => "presence.get",
}

// ---- arguments -------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateConversationArgs {
    pub kind: ConversationKind,
    pub members: Vec<UserId>,
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationRef {
    pub conversation_id: ConversationId,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListConversationsArgs {
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `conversation_id` of the last item of the previous page.
    #[serde(default)]
    pub after: Option<ConversationId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateConversationArgs {
    pub conversation_id: ConversationId,
    pub title: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembersArgs {
    pub conversation_id: ConversationId,
    pub user_ids: Vec<UserId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendArgs {
    pub conversation_id: ConversationId,
    pub client_msg_id: ClientMsgId,
    pub text: String,
    #[serde(default)]
    pub reply_to: Option<MessageId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EditArgs {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRef {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardArgs {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub to_conversation_id: ConversationId,
    pub client_msg_id: ClientMsgId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReactionArgs {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub emoji: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryArgs {
    pub conversation_id: ConversationId,
    #[serde(default)]
    pub before_seq: Option<Seq>,
    #[serde(default)]
    pub after_seq: Option<Seq>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncArgs {
    pub conversations: BTreeMap<ConversationId, Seq>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptArgs {
    pub conversation_id: ConversationId,
    pub seq: Seq,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceGetArgs {
    pub user_ids: Vec<UserId>,
}

// ---- results ---------------------------------------------------------------------------

/// `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationResult {
    pub conversation: Conversation,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationListItem {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// Messages after the caller's `read_seq`.
    pub unread: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationListResult {
    pub conversations: Vec<ConversationListItem>,
}

/// The "accepted" ack of `message.send` / `message.forward`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendAck {
    pub message_id: MessageId,
    pub seq: Seq,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageResult {
    pub message: Message,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryResult {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncResult {
    pub conversations: BTreeMap<ConversationId, HistoryResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceInfo {
    pub online: bool,
    pub last_seen: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceResult {
    pub presence: BTreeMap<UserId, PresenceInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.as_str()), Some(*op));
        }
        assert_eq!(Op::parse("message.explode"), None);
        assert_eq!(Op::ALL.len(), 21);
    }
}
