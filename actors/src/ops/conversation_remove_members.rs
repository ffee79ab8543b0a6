//! `conversation.remove_members`: a group's creator removes members (anyone may remove
//! themselves: `conversation.leave`).

use std::collections::HashSet;
use std::sync::Arc;

use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::ParticipantRole;
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

/// Removes members from a group (users not in it are skipped).
pub struct RemoveMembers {
    /// Who removes them.
    pub user_id: UserId,
    pub user_ids: Vec<UserId>,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args = decode_members(node, request)?;
    let record = conversation_record(
        &caller.user_id,
        "conversation.remove_members",
        &args.conversation_id,
        serde_json::json!({ "user_ids": args.user_ids }),
    );
    let remove = RemoveMembers {
        user_id: caller.user_id.clone(),
        user_ids: args.user_ids,
    };
    let answer = ask_json(
        node,
        &args.conversation_id,
        ConversationOp::RemoveMembers,
        remove,
        |conversation| ConversationResult { conversation },
    );
    Ok(audited(node, answer, record))
}

impl RemoveMembers {
    /// Commits the removal (the caller checked the requester), stops routing the conversation
    /// to the removed users and announces it to the members and to them. Returns the new state,
    /// or `None` to reload it.
    pub(crate) async fn apply(
        self,
        node: &Node,
        state: ConversationState,
        reply: Reply<Conversation>,
    ) -> Option<ConversationState> {
        // Linear in the list and the members (both capped at `limits.max_group_members`).
        let members: HashSet<&UserId> = (state.record.participants.iter())
            .map(|participant| &participant.user_id)
            .collect();
        let mut seen: HashSet<UserId> = HashSet::with_capacity(self.user_ids.len());
        let mut removed: Vec<UserId> = Vec::new();
        for candidate in self.user_ids {
            if members.contains(&candidate) && seen.insert(candidate.clone()) {
                removed.push(candidate);
            }
        }
        let removes_others = removed.iter().any(|user| user != &self.user_id);
        let is_owner = state.record.participants.iter().any(|participant| {
            participant.user_id == self.user_id && participant.role == ParticipantRole::Owner
        });
        if removes_others && !is_owner {
            let _ = reply.send(Err(OpError::forbidden(
                "only the conversation's creator may remove other members",
            )));
            return Some(state);
        }
        if removed.is_empty() {
            let _ = reply.send(Ok(state.conversation()));
            return Some(state);
        }
        let mut next = state.clone();
        let record = Arc::make_mut(&mut next.record);
        record
            .participants
            .retain(|participant| !seen.contains(&participant.user_id));
        record
            .conversation
            .members
            .retain(|member| !seen.contains(member));
        let next = commit(node, state, next, reply).await?;
        announce_removed(node, next.conversation(), self.user_id, removed).await;
        Some(next)
    }
}

async fn announce_removed(
    node: &Node,
    conversation: Conversation,
    by: UserId,
    removed: Vec<UserId>,
) {
    let conversation_id = conversation.conversation_id.clone();
    node.registry().remove_members(&conversation_id, &removed);
    announce_membership(node, &conversation_id, &[], &removed).await;
    let mut recipients = conversation.members.clone();
    recipients.extend(removed.iter().cloned());
    publish_to_users(
        node,
        &recipients,
        ServerEvent::MemberLeft {
            conversation_id,
            user_ids: removed,
            by,
            conversation,
        },
    )
    .await;
}
