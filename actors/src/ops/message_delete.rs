//! `message.delete`: the sender deletes one of their messages (its text and reactions go; its
//! seq stays).

use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::LogEventBody;
use wire::ops::{Empty, MessageRef};
use wire::{MessageId, UserId};

use super::shared::{ask_json, decode, require_sender, Answer};
use crate::conversation::op::Applied;
use crate::conversation::{ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Deletes a message; only its sender may, or an operator. Deleting it again changes nothing.
pub struct DeleteMessage {
    pub deleter: Deleter,
    pub message_id: MessageId,
}

/// Who deletes a message.
pub enum Deleter {
    /// The sender (`message.delete`): must be a member and the message's sender.
    Sender(UserId),
    /// An operator (admin API moderation delete): no membership needed.
    Moderator,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: MessageRef = decode(request)?;
    let delete = DeleteMessage {
        deleter: Deleter::Sender(caller.user_id.clone()),
        message_id: args.message_id,
    };
    Ok(ask_json(
        node,
        &args.conversation_id,
        ConversationOp::Delete,
        delete,
        |()| Empty {},
    ))
}

impl DeleteMessage {
    /// Applies the deletion to the batch's working state.
    pub(crate) async fn apply(
        self,
        node: &Node,
        working: &mut ConversationState,
    ) -> Result<Applied<()>, OpError> {
        if let Deleter::Sender(user_id) = &self.deleter {
            working.require_member(user_id)?;
        }
        let mut record = working.find_message(node, &self.message_id).await?;
        if let Deleter::Sender(user_id) = &self.deleter {
            require_sender(&record, user_id)?;
        }
        if record.message.deleted {
            return Ok(Applied::Answered(()));
        }
        record.message.deleted = true;
        record.message.text.clear();
        record.message.reactions.clear();
        // Its files are no longer served (`GET /api/v1/attachments/{id}` answers 404).
        record.message.attachments.clear();
        record.version += 1;
        working.put_message(record.clone());
        let message = &record.message;
        Ok(Applied::Changed {
            bus_event: ServerEvent::MessageDeleted {
                conversation_id: message.conversation_id.clone(),
                message_id: message.message_id.clone(),
                seq: message.seq,
            },
            event: LogEventBody::MessageDeleted { record },
            answer: (),
        })
    }
}
