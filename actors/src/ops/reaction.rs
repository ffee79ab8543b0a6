//! `reaction.add` and `reaction.remove`: a member adds or takes back an emoji on a message.

use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::{change_reaction, LogEventBody, MessageRecord, ReactionChange, ReactionDelta};
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
/// Most distinct emojis on one message.
pub const MAX_EMOJIS_PER_MESSAGE: usize = 20;
/// Most reactions (user and emoji pairs) on one message. With the emoji and id lengths this
/// keeps a message, and so every event and reply carrying it, well within a frame.
pub const MAX_REACTIONS_PER_MESSAGE: usize = 1000;

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
        |record: MessageRecord| MessageResult {
            message: record.message,
        },
    ))
}

impl ChangeReaction {
    /// Applies the reaction to the batch's working state; an add of a reaction the user has
    /// already made (or a remove of one they have not) changes nothing. The log gets the
    /// change alone ([`ReactionDelta`]); the answer is the whole new version, which the batch
    /// also puts in the message cache.
    pub(crate) async fn apply(
        self,
        node: &Node,
        working: &mut ConversationState,
    ) -> Result<Applied<MessageRecord>, OpError> {
        working.require_member(&self.user_id)?;
        let mut record = working.find_message(node, &self.message_id).await?;
        if record.message.deleted {
            return Err(OpError::conflict("the message is deleted"));
        }
        if self.change_reactions(&mut record.message)? == Outcome::Unchanged {
            return Ok(Applied::Answered(record));
        }
        record.version += 1;
        working.put_message(record.clone());
        let message = &record.message;
        let delta = ReactionDelta {
            conversation_id: message.conversation_id.clone(),
            message_id: message.message_id.clone(),
            seq: message.seq,
            user_id: self.user_id,
            emoji: self.emoji,
            change: self.change,
            version: record.version,
        };
        Ok(Applied::Changed {
            bus_event: ServerEvent::ReactionUpdated {
                conversation_id: message.conversation_id.clone(),
                message_id: message.message_id.clone(),
                reactions: message.reactions.clone(),
            },
            event: LogEventBody::ReactionChanged { delta },
            answer: record,
        })
    }

    /// Changes the message's reactions; an add past [`MAX_EMOJIS_PER_MESSAGE`] or
    /// [`MAX_REACTIONS_PER_MESSAGE`] is a `conflict`.
    fn change_reactions(&self, message: &mut Message) -> Result<Outcome, OpError> {
        let reactions = &message.reactions;
        if self.change == ReactionChange::Add
            && !reactions
                .get(&self.emoji)
                .is_some_and(|users| users.contains(&self.user_id))
        {
            if !reactions.contains_key(&self.emoji) && reactions.len() >= MAX_EMOJIS_PER_MESSAGE {
                return Err(OpError::conflict(format!(
                    "a message holds at most {MAX_EMOJIS_PER_MESSAGE} distinct emojis"
                )));
            }
            if reactions.values().map(Vec::len).sum::<usize>() >= MAX_REACTIONS_PER_MESSAGE {
                return Err(OpError::conflict(format!(
                    "a message holds at most {MAX_REACTIONS_PER_MESSAGE} reactions"
                )));
            }
        }
        if change_reaction(message, &self.emoji, &self.user_id, self.change) {
            Ok(Outcome::Changed)
        } else {
            Ok(Outcome::Unchanged)
        }
    }
}

/// Whether a reaction change changed the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Changed,
    Unchanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_with(reactions: &[(&str, usize)]) -> Message {
        let mut record = wire::log::MessageRecord {
            message: serde_json::from_value(serde_json::json!({
                "message_id": "m1", "conversation_id": "c1", "seq": 1, "sender_id": "alice",
                "client_msg_id": "k1", "text": "hi", "reply_to": null, "forwarded_from": null,
                "reactions": {}, "created_at": "2026-01-01T00:00:00Z", "edited_at": null,
                "deleted": false
            }))
            .expect("message"),
            version: 1,
        };
        for (emoji, users) in reactions {
            let users = (0..*users).map(|index| UserId::new(format!("u{index}")));
            record
                .message
                .reactions
                .insert(emoji.to_string(), users.collect());
        }
        record.message
    }

    fn add(user: &str, emoji: &str) -> ChangeReaction {
        ChangeReaction {
            user_id: UserId::new(user),
            message_id: MessageId::new("m1"),
            emoji: emoji.to_owned(),
            change: ReactionChange::Add,
        }
    }

    #[test]
    fn a_message_holds_at_most_the_reactions_it_may() {
        let mut full = message_with(&[("a", 500), ("b", 500)]);
        let error = add("someone", "a").change_reactions(&mut full).unwrap_err();
        assert_eq!(error.code, wire::ErrorCode::Conflict);
        // Adding one already there, and removing, still work.
        assert_eq!(
            add("u1", "a").change_reactions(&mut full).unwrap(),
            Outcome::Unchanged
        );
        let mut remove = add("u1", "a");
        remove.change = ReactionChange::Remove;
        assert_eq!(
            remove.change_reactions(&mut full).unwrap(),
            Outcome::Changed
        );
        assert_eq!(
            add("u1", "a").change_reactions(&mut full).unwrap(),
            Outcome::Changed
        );
    }
}
