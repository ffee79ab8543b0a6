//! `reaction.add` and `reaction.remove`: a member adds or takes back an emoji on a message.

use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::LogEventBody;
use wire::ops::{MessageResult, ReactionArgs};
use wire::{Message, MessageId, UserId};

use super::shared::{ask_json, check_text, decode, Answer};
use crate::conversation::op::Applied;
use crate::conversation::{ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Longest reaction emoji, in bytes.
pub const MAX_EMOJI_BYTES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionChange {
    Add,
    Remove,
}

/// Adds or removes the user's reaction with one emoji.
pub struct ChangeReaction {
    pub user_id: UserId,
    pub message_id: MessageId,
    pub emoji: String,
    pub change: ReactionChange,
}

/// `reaction.add`.
pub(crate) fn add(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    start(node, caller, request, ReactionChange::Add)
}

/// `reaction.remove`.
pub(crate) fn remove(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    start(node, caller, request, ReactionChange::Remove)
}

fn start(
    node: &Node,
    caller: &Caller,
    request: &Request,
    change: ReactionChange,
) -> Result<Answer, OpError> {
    let args: ReactionArgs = decode(request)?;
    check_text("emoji", &args.emoji, MAX_EMOJI_BYTES)?;
    let react = ChangeReaction {
        user_id: caller.user_id.clone(),
        message_id: args.message_id,
        emoji: args.emoji,
        change,
    };
    Ok(ask_json(
        node,
        &args.conversation_id,
        ConversationOp::React,
        react,
        |message| MessageResult { message },
    ))
}

impl ChangeReaction {
    /// Applies the reaction to the batch's working state; an add of a reaction the user has
    /// already made (or a remove of one they have not) changes nothing.
    pub(crate) async fn apply(
        self,
        node: &Node,
        working: &mut ConversationState,
    ) -> Result<Applied<Message>, OpError> {
        working.require_member(&self.user_id)?;
        let mut record = working.find_message(node, &self.message_id).await?;
        if record.message.deleted {
            return Err(OpError::conflict("the message is deleted"));
        }
        if !self.change_reactions(&mut record.message) {
            return Ok(Applied::Answered(record.message));
        }
        record.version += 1;
        working.put_message(record.clone());
        let message = record.message.clone();
        Ok(Applied::Changed {
            bus_event: ServerEvent::ReactionUpdated {
                conversation_id: message.conversation_id.clone(),
                message_id: message.message_id.clone(),
                reactions: message.reactions.clone(),
            },
            event: LogEventBody::MessageReacted { record },
            answer: message,
        })
    }

    /// Changes the message's reactions; returns whether they changed.
    fn change_reactions(self, message: &mut Message) -> bool {
        let reactions = &mut message.reactions;
        match self.change {
            ReactionChange::Add => {
                let users = reactions.entry(self.emoji).or_default();
                if users.contains(&self.user_id) {
                    false
                } else {
                    users.push(self.user_id);
                    true
                }
            }
            ReactionChange::Remove => match reactions.get_mut(&self.emoji) {
                Some(users) if users.contains(&self.user_id) => {
                    users.retain(|user| user != &self.user_id);
                    if users.is_empty() {
                        reactions.remove(&self.emoji);
                    }
                    true
                }
                _ => false,
            },
        }
    }
}
