//! `message.edit`: the sender replaces the text of one of their messages.

use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::LogEventBody;
use wire::ops::{EditArgs, MessageResult};
use wire::{Message, MessageId, Timestamp, UserId};

use super::shared::{ask_json, check_text, decode, require_sender, Answer};
use crate::conversation::op::Applied;
use crate::conversation::{ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Replaces the text of a message; only its sender may.
pub struct EditMessage {
    pub user_id: UserId,
    pub message_id: MessageId,
    pub text: String,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: EditArgs = decode(request)?;
    check_text("text", &args.text, usize::MAX)?;
    let edit = EditMessage {
        user_id: caller.user_id.clone(),
        message_id: args.message_id,
        text: args.text,
    };
    Ok(ask_json(
        node,
        &args.conversation_id,
        ConversationOp::Edit,
        edit,
        |message| MessageResult { message },
    ))
}

impl EditMessage {
    /// Applies the edit to the batch's working state.
    pub(crate) async fn apply(
        self,
        node: &Node,
        working: &mut ConversationState,
        now: Timestamp,
    ) -> Result<Applied<Message>, OpError> {
        working.require_member(&self.user_id)?;
        let mut record = working.find_message(node, &self.message_id).await?;
        require_sender(&record, &self.user_id)?;
        if record.message.deleted {
            return Err(OpError::conflict("the message is deleted"));
        }
        record.message.text = self.text;
        record.message.edited_at = Some(now);
        record.version += 1;
        working.put_message(record.clone());
        let message = record.message.clone();
        Ok(Applied::Changed {
            event: LogEventBody::MessageEdited { record },
            bus_event: ServerEvent::MessageEdited {
                message: message.clone(),
            },
            answer: message,
        })
    }
}
