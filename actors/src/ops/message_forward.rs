//! `message.forward`: reads a message from one conversation (as a member of it) and sends its
//! text to another, marked with where it came from.

use futures::FutureExt;
use wire::frames::Request;
use wire::ops::ForwardArgs;
use wire::{ForwardedFrom, Message, MessageId, UserId};

use super::message_send::SendMessage;
use super::shared::{ask, check_client_msg_id, decode, json, Answer};
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
        let send = SendMessage {
            actor: Actor::Member(user_id),
            client_msg_id: args.client_msg_id,
            text: original.text,
            reply_to: None,
            forwarded_from: Some(ForwardedFrom {
                conversation_id: args.conversation_id,
                message_id: args.message_id,
            }),
        };
        let ack = ask(&node, &args.to_conversation_id, ConversationOp::Send, send).await?;
        json(&ack)
    }
    .boxed_local())
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
