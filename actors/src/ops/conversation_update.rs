//! `conversation.update`: a member of a group changes its title.

use std::sync::Arc;

use ports::BusTopic;
use wire::events::ServerEvent;
use wire::frames::Request;
use wire::ops::{ConversationResult, UpdateConversationArgs};
use wire::{Conversation, UserId};

use super::membership::commit;
use super::shared::{ask_json, check_text, decode, Answer};
use crate::conversation::op::Reply;
use crate::conversation::{publish, ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Longest conversation title, in bytes.
pub const MAX_TITLE_BYTES: usize = 256;

/// Sets the title of a group.
pub struct UpdateTitle {
    pub user_id: UserId,
    pub title: String,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: UpdateConversationArgs = decode(request)?;
    check_text("title", &args.title, MAX_TITLE_BYTES)?;
    let update = UpdateTitle {
        user_id: caller.user_id.clone(),
        title: args.title,
    };
    Ok(ask_json(
        node,
        &args.conversation_id,
        ConversationOp::UpdateTitle,
        update,
        |conversation| ConversationResult { conversation },
    ))
}

impl UpdateTitle {
    /// Commits the new title (the caller checked the requester), then announces it on the
    /// conversation topic. Returns the new state, or `None` to reload it.
    pub(crate) async fn apply(
        self,
        node: &Node,
        state: ConversationState,
        reply: Reply<Conversation>,
    ) -> Option<ConversationState> {
        let mut next = state.clone();
        Arc::make_mut(&mut next.record).conversation.title = Some(self.title);
        let next = commit(node, state, next, reply).await?;
        let conversation = next.conversation();
        publish(
            node,
            BusTopic::Conversation(conversation.conversation_id.clone()),
            ServerEvent::ConversationUpdated { conversation },
        )
        .await;
        Some(next)
    }
}
