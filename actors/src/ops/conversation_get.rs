//! `conversation.get`: a conversation as its actor knows it (members only).

use wire::frames::Request;
use wire::ops::{ConversationRef, ConversationResult};
use wire::{Conversation, UserId};

use super::shared::{ask_json, decode, Answer};
use crate::conversation::op::Applied;
use crate::conversation::{ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Reads the conversation for one of its members.
pub struct GetConversation {
    pub user_id: UserId,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: ConversationRef = decode(request)?;
    let get = GetConversation {
        user_id: caller.user_id.clone(),
    };
    Ok(ask_json(
        node,
        &args.conversation_id,
        ConversationOp::Get,
        get,
        |conversation| ConversationResult { conversation },
    ))
}

impl GetConversation {
    pub(crate) fn apply(
        self,
        committed: &ConversationState,
    ) -> Result<Applied<Conversation>, OpError> {
        committed.require_member(&self.user_id)?;
        Ok(Applied::Answered(committed.conversation()))
    }
}
