//! `message.forward`: reads a message from one conversation (as a member of it) and sends its
//! text to another, marked with where it came from. The forwarded message carries the
//! original's attachments (the references, not copies of the bytes) and the caller's own
//! uploads listed in `attachments`.

use futures::FutureExt;
use wire::frames::Request;
use wire::ops::{ForwardArgs, MAX_ATTACHMENTS};
use wire::{AttachmentId, AttachmentRef, ForwardedFrom, Message, MessageId, UserId};

use super::message_send::{send_with_attachments, SendMessage};
use super::shared::{ask, check_client_msg_id, decode, json, Answer};
use crate::attachments::Attachments;
use crate::conversation::op::{Actor, Applied};
use crate::conversation::{ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Reads one message for forwarding (membership checked).
pub struct ReadMessage {
    pub user_id: UserId,
    pub message_id: MessageId,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: ForwardArgs = decode(request)?;
    check_client_msg_id(&args.client_msg_id)?;
    if !args.attachments.is_empty() {
        Attachments::of(node)?;
    }
    let user_id = caller.user_id.clone();
    let read = ReadMessage {
        user_id: user_id.clone(),
        message_id: args.message_id.clone(),
    };
    let source = ask(
        node,
        &args.conversation_id,
        ConversationOp::ReadMessage,
        read,
    );
    let node = node.clone();
    Ok(async move {
        let original = source.await?;
        if original.deleted {
            return Err(OpError::conflict("the message is deleted"));
        }
        let carried =
            carried_attachments(&node, &user_id, original.attachments, &args.attachments).await?;
        let send = SendMessage {
            actor: Actor::Member(user_id),
            client_msg_id: args.client_msg_id,
            text: original.text,
            reply_to: None,
            forwarded_from: Some(ForwardedFrom {
                conversation_id: args.conversation_id,
                message_id: args.message_id,
            }),
            attachments: carried,
        };
        if send.attachments.is_empty() {
            let ack = ask(&node, &args.to_conversation_id, ConversationOp::Send, send).await?;
            return json(&ack);
        }
        let attachments = Attachments::of(&node)?;
        json(&send_with_attachments(&node, &attachments, &args.to_conversation_id, send).await?)
    }
    .boxed_local())
}

/// The original's attachments, then the caller's own `added` ones (checked); at most
/// [`MAX_ATTACHMENTS`] in all.
async fn carried_attachments(
    node: &Node,
    user_id: &UserId,
    mut original: Vec<AttachmentRef>,
    added: &[AttachmentId],
) -> Result<Vec<AttachmentRef>, OpError> {
    if added.is_empty() {
        return Ok(original);
    }
    if original.len() + added.len() > MAX_ATTACHMENTS {
        return Err(OpError::bad_request(format!(
            "a message carries at most {MAX_ATTACHMENTS} attachments, the original has {}",
            original.len()
        )));
    }
    let resolved = Attachments::of(node)?
        .resolve_for_send(user_id, added)
        .await?;
    original.extend(resolved);
    Ok(original)
}

impl ReadMessage {
    pub(crate) async fn apply(
        self,
        node: &Node,
        committed: &ConversationState,
    ) -> Result<Applied<Message>, OpError> {
        committed.require_member(&self.user_id)?;
        let record = committed.find_message(node, &self.message_id).await?;
        Ok(Applied::Answered(record.message))
    }
}
