//! The operations a conversation actor performs, each with the channel its answer goes to.

use ports::MessageQuery;
use tokio::sync::oneshot;
use wire::ops::{HistoryResult, SendAck};
use wire::{ClientMsgId, Conversation, ForwardedFrom, Message, MessageId, Seq, UserId};

use crate::OpError;

pub type Reply<T> = oneshot::Sender<Result<T, OpError>>;

/// Who asks: a member's session, or the app backend (API key) acting for a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Member(UserId),
    Backend(UserId),
}

pub enum ConversationOp {
    Send {
        actor: Actor,
        client_msg_id: ClientMsgId,
        text: String,
        reply_to: Option<MessageId>,
        forwarded_from: Option<ForwardedFrom>,
        reply: Reply<SendAck>,
    },
    Edit {
        user_id: UserId,
        message_id: MessageId,
        text: String,
        reply: Reply<Message>,
    },
    Delete {
        user_id: UserId,
        message_id: MessageId,
        reply: Reply<()>,
    },
    React {
        user_id: UserId,
        message_id: MessageId,
        emoji: String,
        add: bool,
        reply: Reply<Message>,
    },
    Receipt {
        user_id: UserId,
        seq: Seq,
        read: bool,
        reply: Reply<()>,
    },
    Typing {
        user_id: UserId,
        started: bool,
        reply: Reply<()>,
    },
    Get {
        user_id: UserId,
        reply: Reply<Conversation>,
    },
    /// The live counters of a conversation (no membership check: callers listed it from the
    /// user's own conversations).
    Snapshot {
        user_id: UserId,
        reply: Reply<super::state::Snapshot>,
    },
    History {
        /// `None` for the app backend, which may read any conversation.
        user_id: Option<UserId>,
        query: MessageQuery,
        reply: Reply<HistoryResult>,
    },
    /// Reads one message for forwarding (membership checked).
    ReadMessage {
        user_id: UserId,
        message_id: MessageId,
        reply: Reply<Message>,
    },
    UpdateTitle {
        user_id: UserId,
        title: String,
        reply: Reply<Conversation>,
    },
    AddMembers {
        user_id: UserId,
        user_ids: Vec<UserId>,
        reply: Reply<Conversation>,
    },
    RemoveMembers {
        user_id: UserId,
        user_ids: Vec<UserId>,
        reply: Reply<Conversation>,
    },
}

impl ConversationOp {
    /// Membership and title changes run alone in their own batch.
    pub fn changes_membership(&self) -> bool {
        matches!(
            self,
            ConversationOp::UpdateTitle { .. }
                | ConversationOp::AddMembers { .. }
                | ConversationOp::RemoveMembers { .. }
        )
    }

    /// Answers the operation with an error, whatever its result type.
    pub fn fail(self, error: OpError) {
        match self {
            ConversationOp::Send { reply, .. } => drop(reply.send(Err(error))),
            ConversationOp::Edit { reply, .. }
            | ConversationOp::React { reply, .. }
            | ConversationOp::ReadMessage { reply, .. } => drop(reply.send(Err(error))),
            ConversationOp::Delete { reply, .. }
            | ConversationOp::Receipt { reply, .. }
            | ConversationOp::Typing { reply, .. } => drop(reply.send(Err(error))),
            ConversationOp::Get { reply, .. }
            | ConversationOp::UpdateTitle { reply, .. }
            | ConversationOp::AddMembers { reply, .. }
            | ConversationOp::RemoveMembers { reply, .. } => drop(reply.send(Err(error))),
            ConversationOp::History { reply, .. } => drop(reply.send(Err(error))),
            ConversationOp::Snapshot { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}
