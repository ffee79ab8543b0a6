//! `message.send` (and the backend's REST send): a new message under the next seq. Sends are
//! special in a batch: the reserve stage validates them and reserves their seqs in one call
//! (a retried `client_msg_id` gets its first ack back), and the apply stage creates the
//! message under its fresh seq.
//!
//! A send with attachments first checks them against the blob store
//! ([`Attachments::resolve_for_send`]), then queues the send, then records which message carries
//! them: it is queued on the conversation only after those checks, like a forward.

use ports::DedupKey;
use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::{LogEventBody, MessageRecord};
use wire::ops::{SendAck, SendArgs};
use wire::{
    AttachmentRef, ClientMsgId, ConversationId, ForwardedFrom, Message, MessageId, Seq, Timestamp,
    UserId,
};

use futures::FutureExt;

use super::shared::{
    ask, ask_json, check_client_msg_id, check_text, check_user_id, decode, json, Answer,
};
use crate::attachments::Attachments;
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
    /// Checked already ([`Attachments::resolve_for_send`]).
    pub attachments: Vec<AttachmentRef>,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: SendArgs = decode(request)?;
    check_client_msg_id(&args.client_msg_id)?;
    check_text("text", &args.text, usize::MAX)?;
    let mut send = SendMessage {
        actor: Actor::Member(caller.user_id.clone()),
        client_msg_id: args.client_msg_id,
        text: args.text,
        reply_to: args.reply_to,
        forwarded_from: None,
        attachments: Vec::new(),
    };
    if !args.attachments.is_empty() {
        let attachments = Attachments::of(node)?;
        let node = node.clone();
        let user_id = caller.user_id.clone();
        return Ok(async move {
            send.attachments = attachments
                .resolve_for_send(&user_id, &args.attachments)
                .await?;
            let ack =
                send_with_attachments(&node, &attachments, &args.conversation_id, send).await?;
            json(&ack)
        }
        .boxed_local());
    }
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
        attachments: Vec::new(),
    };
    ask(node, conversation_id, ConversationOp::Send, send).await
}

/// Sends a message whose attachments were resolved: takes them out of the sweep's reach, sends,
/// then records that the new message carries them (which lets members download them).
pub(crate) async fn send_with_attachments(
    node: &Node,
    attachments: &Attachments,
    conversation_id: &ConversationId,
    send: SendMessage,
) -> Result<SendAck, OpError> {
    let carried = send.attachments.clone();
    attachments.mark_attached(&carried).await?;
    let ack = ask(node, conversation_id, ConversationOp::Send, send).await?;
    attachments
        .record_references(conversation_id, &ack.message_id, &carried)
        .await?;
    Ok(ack)
}

/// A send that passed validation, waiting for its seq.
pub(crate) struct ValidSend {
    pub key: DedupKey,
    /// The id its message gets if accepted (the sequencer keeps it with the reservation).
    pub message_id: MessageId,
    text: String,
    reply_to: Option<MessageId>,
    forwarded_from: Option<ForwardedFrom>,
    attachments: Vec<AttachmentRef>,
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
            message_id: MessageId::new(uuid::Uuid::now_v7().to_string()),
            text: self.text,
            reply_to: self.reply_to,
            forwarded_from: self.forwarded_from,
            attachments: self.attachments,
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
            message_id: self.message_id,
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
            attachments: self.attachments,
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
