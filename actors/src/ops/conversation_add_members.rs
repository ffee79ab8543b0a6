//! `conversation.add_members`: a member of a group adds users to it.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::{Participant, ParticipantRole};
use wire::ops::ConversationResult;
use wire::{Conversation, UserId};

use super::membership::{commit, decode_members};
use super::shared::{ask_json, Answer};
use crate::audit::{audited, conversation_record};
use crate::conversation::op::Reply;
use crate::conversation::{
    announce_membership, publish_to_users, ConversationOp, ConversationState,
};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Adds users to a group (those already in it are skipped).
pub struct AddMembers {
    /// Who adds them.
    pub user_id: UserId,
    pub user_ids: Vec<UserId>,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args = decode_members(node, request)?;
    let record = conversation_record(
        &caller.user_id,
        "conversation.add_members",
        &args.conversation_id,
        serde_json::json!({ "user_ids": args.user_ids }),
    );
    let add = AddMembers {
        user_id: caller.user_id.clone(),
        user_ids: args.user_ids,
    };
    let answer = ask_json(
        node,
        &args.conversation_id,
        ConversationOp::AddMembers,
        add,
        |conversation| ConversationResult { conversation },
    );
    Ok(audited(node, answer, record))
}

impl AddMembers {
    /// Commits the new members (the caller checked the requester), routes the conversation to
    /// them and announces them. Returns the new state, or `None` to reload it.
    pub(crate) async fn apply(
        self,
        node: &Node,
        state: ConversationState,
        reply: Reply<Conversation>,
    ) -> Option<ConversationState> {
        // Linear: the list's length was checked at decode, members are looked up in a set.
        let mut members_and_added: HashSet<UserId> = (state.record.participants.iter())
            .map(|participant| participant.user_id.clone())
            .collect();
        let added: Vec<UserId> = self
            .user_ids
            .into_iter()
            .filter(|candidate| members_and_added.insert(candidate.clone()))
            .collect();
        if added.is_empty() {
            let _ = reply.send(Ok(state.conversation()));
            return Some(state);
        }
        let limit = node.limits().max_group_members;
        if state.record.participants.len() + added.len() > limit {
            let _ = reply.send(Err(OpError::bad_request(format!(
                "too many members: a group holds at most {limit}"
            ))));
            return Some(state);
        }
        let mut next = state.clone();
        let now = Utc::now();
        let record = Arc::make_mut(&mut next.record);
        for user in &added {
            record.participants.push(Participant {
                user_id: user.clone(),
                role: ParticipantRole::Member,
                joined_at: now,
            });
            record.conversation.members.push(user.clone());
        }
        let next = commit(node, state, next, reply).await?;
        announce_added(node, next.conversation(), self.user_id, added).await;
        Some(next)
    }
}

async fn announce_added(node: &Node, conversation: Conversation, by: UserId, added: Vec<UserId>) {
    let conversation_id = conversation.conversation_id.clone();
    if let Err(error) = node.registry().add_members(&conversation_id, &added).await {
        tracing::warn!(conversation_id = %conversation_id, error = %error, "subscribing new members failed");
    }
    announce_membership(node, &conversation_id, &added, &[]).await;
    let members = conversation.members.clone();
    publish_to_users(
        node,
        &members,
        ServerEvent::MemberJoined {
            conversation_id,
            user_ids: added,
            by,
            conversation,
        },
    )
    .await;
}
