//! Title and membership changes. Each runs alone: the directory (the source of truth for
//! membership) is updated first, then the change is logged for the store and announced.

use chrono::Utc;
use ports::{BusEnvelope, BusPayload, BusTopic, PortError};
use wire::events::ServerEvent;
use wire::log::{LogEventBody, Participant, ParticipantRole};
use wire::{Conversation, ConversationKind, UserId};

use super::batch::log_event;
use super::op::{ConversationOp, Reply};
use super::state::ConversationState;
use crate::node::Node;
use crate::OpError;

/// Longest conversation title, in bytes.
pub const MAX_TITLE_BYTES: usize = 256;

/// Runs one membership operation. Returns the new state, or `None` to reload it.
pub(super) async fn run(
    node: &Node,
    state: ConversationState,
    op: ConversationOp,
) -> Option<ConversationState> {
    let (user_id, change, reply) = match op {
        ConversationOp::UpdateTitle {
            user_id,
            title,
            reply,
        } => (user_id, Change::Title(title), reply),
        ConversationOp::AddMembers {
            user_id,
            user_ids,
            reply,
        } => (user_id, Change::Add(user_ids), reply),
        ConversationOp::RemoveMembers {
            user_id,
            user_ids,
            reply,
        } => (user_id, Change::Remove(user_ids), reply),
        other => {
            other.fail(OpError::internal("operation routed to the wrong batch"));
            return Some(state);
        }
    };
    // Every change needs a member of a group.
    if let Err(error) = state
        .require_member(&user_id)
        .and_then(|()| require_group(&state))
    {
        let _ = reply.send(Err(error));
        return Some(state);
    }
    match change {
        Change::Title(title) => update_title(node, state, title, reply).await,
        Change::Add(user_ids) => add_members(node, state, user_id, user_ids, reply).await,
        Change::Remove(user_ids) => remove_members(node, state, user_id, user_ids, reply).await,
    }
}

enum Change {
    Title(String),
    Add(Vec<UserId>),
    Remove(Vec<UserId>),
}

fn require_group(state: &ConversationState) -> Result<(), OpError> {
    match state.record.conversation.kind {
        ConversationKind::Group => Ok(()),
        ConversationKind::Direct => Err(OpError::forbidden(
            "direct conversations have fixed members and no title",
        )),
    }
}

async fn update_title(
    node: &Node,
    state: ConversationState,
    title: String,
    reply: Reply<Conversation>,
) -> Option<ConversationState> {
    let mut next = state.clone();
    next.record.conversation.title = Some(title);
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

async fn add_members(
    node: &Node,
    state: ConversationState,
    user_id: UserId,
    user_ids: Vec<UserId>,
    reply: Reply<Conversation>,
) -> Option<ConversationState> {
    let mut added: Vec<UserId> = Vec::new();
    for candidate in user_ids {
        if !state.is_member(&candidate) && !added.contains(&candidate) {
            added.push(candidate);
        }
    }
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
    for user in &added {
        next.record.participants.push(Participant {
            user_id: user.clone(),
            role: ParticipantRole::Member,
            joined_at: now,
        });
        next.record.conversation.members.push(user.clone());
    }
    let next = commit(node, state, next, reply).await?;
    let conversation = next.conversation();
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
            by: user_id,
            conversation,
        },
    )
    .await;
    Some(next)
}

async fn remove_members(
    node: &Node,
    state: ConversationState,
    user_id: UserId,
    user_ids: Vec<UserId>,
    reply: Reply<Conversation>,
) -> Option<ConversationState> {
    let mut removed: Vec<UserId> = Vec::new();
    for candidate in user_ids {
        if state.is_member(&candidate) && !removed.contains(&candidate) {
            removed.push(candidate);
        }
    }
    let removes_others = removed.iter().any(|user| user != &user_id);
    let is_owner = state.record.participants.iter().any(|participant| {
        participant.user_id == user_id && participant.role == ParticipantRole::Owner
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
    next.record
        .participants
        .retain(|participant| !removed.contains(&participant.user_id));
    next.record
        .conversation
        .members
        .retain(|member| !removed.contains(member));
    let next = commit(node, state, next, reply).await?;
    let conversation = next.conversation();
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
            by: user_id,
            conversation,
        },
    )
    .await;
    Some(next)
}

/// Writes the new record to the directory, then the log, then answers. On failure answers with
/// the error and returns `None` (the caller reloads).
async fn commit(
    node: &Node,
    previous: ConversationState,
    mut next: ConversationState,
    reply: Reply<Conversation>,
) -> Option<ConversationState> {
    next.record.version = previous.record.version + 1;
    next.record.updated_at = Utc::now();
    let conversation_id = next.record.conversation.conversation_id.clone();
    match node.ports().directory.update(next.record.clone()).await {
        Ok(()) => {}
        Err(PortError::Conflict { what: message }) => {
            let _ = reply.send(Err(OpError::conflict(format!(
                "the conversation changed concurrently, retry: {message}"
            ))));
            return None;
        }
        Err(error) => {
            let _ = reply.send(Err(error.into()));
            return Some(previous);
        }
    }
    // The directory is the source of truth; the log carries the change to the store.
    let event = log_event(LogEventBody::ConversationUpdated {
        record: next.record.clone(),
    });
    if let Err(error) = node.ports().log.append(vec![event]).await {
        tracing::warn!(conversation_id = %conversation_id, error = %error, "logging a conversation change failed; the store catches up with the next change");
    }
    let _ = reply.send(Ok(next.conversation()));
    Some(next)
}

pub(crate) async fn publish(node: &Node, topic: BusTopic, event: ServerEvent) {
    let envelope = BusEnvelope {
        topic,
        origin: node.node_id().clone(),
        payload: BusPayload::Event { seq: None, event },
    };
    if let Err(error) = node.ports().bus.publish(envelope).await {
        tracing::warn!(error = %error, "bus publish failed");
    }
}

/// Publishes a membership event on each user's topic. Membership events travel on user topics
/// (which every node with a session of the user subscribes to), not on the conversation topic,
/// which a node with a newly added member may not have subscribed yet: published after
/// `announce_membership`, the event reaches a new member only once their node routes the
/// conversation to them.
pub(crate) async fn publish_to_users(node: &Node, users: &[UserId], event: ServerEvent) {
    for user in users {
        publish(node, BusTopic::User(user.clone()), event.clone()).await;
    }
}

/// Tells the nodes with sessions of these users to start or stop routing the conversation.
pub(crate) async fn announce_membership(
    node: &Node,
    conversation_id: &wire::ConversationId,
    added: &[UserId],
    removed: &[UserId],
) {
    for user in added.iter().chain(removed) {
        let envelope = BusEnvelope {
            topic: BusTopic::User(user.clone()),
            origin: node.node_id().clone(),
            payload: BusPayload::MembershipChanged {
                conversation_id: conversation_id.clone(),
                added: added.to_vec(),
                removed: removed.to_vec(),
            },
        };
        if let Err(error) = node.ports().bus.publish(envelope).await {
            tracing::warn!(conversation_id = %conversation_id, error = %error, "membership announcement failed");
        }
    }
}
