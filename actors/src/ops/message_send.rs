//! `message.send` (and the backend's REST send): a new message under the next seq. Sends are
//! special in a batch: the reserve stage validates them and reserves their seqs in one call
//! (a retried `client_msg_id` gets its first ack back), and the apply stage creates the
//! message under its fresh seq.

use ports::DedupKey;
use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::{LogEventBody, MessageRecord};
use wire::ops::{SendAck, SendArgs};
use wire::{
    ClientMsgId, ConversationId, ForwardedFrom, Message, MessageId, Seq, Timestamp, UserId,
};

use super::shared::{
    ask, ask_json, check_client_msg_id, check_text, check_user_id, decode, Answer,
};
use crate::conversation::op::Actor;
use crate::conversation::{ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Sends a message (a retry with the same sender and `client_msg_id` gets the first ack).
pub struct SendMessage {
    pub actor: Actor,
    pub client_msg_id: ClientMsgId,
    pub text: String,
    pub reply_to: Option<MessageId>,
    pub forwarded_from: Option<ForwardedFrom>,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: SendArgs = decode(request)?;
    check_client_msg_id(&args.client_msg_id)?;
    check_text("text", &args.text, usize::MAX)?;
    let send = SendMessage {
        actor: Actor::Member(caller.user_id.clone()),
        client_msg_id: args.client_msg_id,
        text: args.text,
        reply_to: args.reply_to,
        forwarded_from: None,
    };
    Ok(ask_json(
        node,
        &args.conversation_id,
        ConversationOp::Send,
        send,
        |ack| ack,
    ))
}

/// A message from the app backend (REST, API key): same guarantees as `message.send`, the
/// sender need not be a member.
pub async fn backend_send(
    node: &Node,
    conversation_id: &ConversationId,
    sender_id: UserId,
    client_msg_id: ClientMsgId,
    text: String,
    reply_to: Option<MessageId>,
) -> Result<SendAck, OpError> {
    check_user_id(&sender_id)?;
    check_client_msg_id(&client_msg_id)?;
    check_text("text", &text, usize::MAX)?;
    let send = SendMessage {
        actor: Actor::Backend(sender_id),
        client_msg_id,
        text,
        reply_to,
        forwarded_from: None,
    };
    ask(node, conversation_id, ConversationOp::Send, send).await
}

/// A send that passed validation, waiting for its seq.
pub(crate) struct ValidSend {
    pub key: DedupKey,
    text: String,
    reply_to: Option<MessageId>,
    forwarded_from: Option<ForwardedFrom>,
    /// A member's send marks the conversation read up to it for the sender.
    pub raise_watermarks: bool,
}

/// A send applied under its fresh seq, waiting for the append.
pub(crate) struct AcceptedSend {
    pub event: LogEventBody,
    pub bus_event: ServerEvent,
    pub ack: SendAck,
}

impl SendMessage {
    /// The reserve stage's check: a member's send needs a member, and a reply an existing
    /// message.
    pub(crate) async fn validate(
        self,
        node: &Node,
        committed: &ConversationState,
    ) -> Result<ValidSend, OpError> {
        let (sender_id, raise_watermarks) = match &self.actor {
            Actor::Member(user_id) => (user_id.clone(), true),
            Actor::Backend(user_id) => (user_id.clone(), committed.is_member(user_id)),
        };
        if let Actor::Member(user_id) = &self.actor {
            committed.require_member(user_id)?;
        }
        if let Some(reply_to) = &self.reply_to {
            committed.find_message(node, reply_to).await?;
        }
        Ok(ValidSend {
            key: DedupKey {
                sender_id,
                client_msg_id: self.client_msg_id,
            },
            text: self.text,
            reply_to: self.reply_to,
            forwarded_from: self.forwarded_from,
            raise_watermarks,
        })
    }
}

impl ValidSend {
    /// The apply step of a send with a fresh seq: the new message, in the working state.
    pub(crate) fn apply(
        self,
        working: &mut ConversationState,
        seq: Seq,
        now: Timestamp,
    ) -> AcceptedSend {
        let message = Message {
            message_id: MessageId::new(uuid::Uuid::now_v7().to_string()),
            conversation_id: working.record.conversation.conversation_id.clone(),
            seq,
            sender_id: self.key.sender_id,
            client_msg_id: self.key.client_msg_id,
            text: self.text,
            reply_to: self.reply_to,
            forwarded_from: self.forwarded_from,
            reactions: Default::default(),
            created_at: now,
            edited_at: None,
            deleted: false,
        };
        let record = MessageRecord {
            message: message.clone(),
            version: 1,
        };
        working.put_message(record.clone());
        let ack = SendAck {
            message_id: message.message_id.clone(),
            seq,
            created_at: now,
        };
        AcceptedSend {
            event: LogEventBody::MessageSent { record },
            bus_event: ServerEvent::MessageNew { message },
            ack,
        }
    }
}
