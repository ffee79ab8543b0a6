//! Title and membership changes. Each runs alone in its batch: the requester must be a member
//! of a group, then the change's own file in [`crate::ops`] (`conversation_update`,
//! `conversation_add_members`, `conversation_remove_members`) commits it (the directory, the
//! source of truth for membership, first; see [`crate::ops::membership`]) and announces it.

use ports::{BusEnvelope, BusPayload, BusTopic};
use wire::events::ServerEvent;
use wire::{ConversationKind, UserId};

use super::op::ConversationOp;
use super::state::ConversationState;
use crate::node::Node;
use crate::OpError;

pub use crate::ops::conversation_update::MAX_TITLE_BYTES;

/// Runs one membership operation. Returns the new state, or `None` to reload it.
pub(super) async fn run(
    node: &Node,
    state: ConversationState,
    op: ConversationOp,
) -> Option<ConversationState> {
    let requester = match &op {
        ConversationOp::UpdateTitle(queued) => &queued.command.user_id,
        ConversationOp::AddMembers(queued) => &queued.command.user_id,
        ConversationOp::RemoveMembers(queued) => &queued.command.user_id,
        _ => {
            op.fail(OpError::internal("operation routed to the wrong batch"));
            return Some(state);
        }
    };
    // Every change needs a member of a group.
    if let Err(error) = state
        .require_member(requester)
        .and_then(|()| require_group(&state))
    {
        op.fail(error);
        return Some(state);
    }
    match op {
        ConversationOp::UpdateTitle(queued) => {
            queued.command.apply(node, state, queued.reply).await
        }
        ConversationOp::AddMembers(queued) => queued.command.apply(node, state, queued.reply).await,
        ConversationOp::RemoveMembers(queued) => {
            queued.command.apply(node, state, queued.reply).await
        }
        other => {
            other.fail(OpError::internal("operation routed to the wrong batch"));
            Some(state)
        }
    }
}

fn require_group(state: &ConversationState) -> Result<(), OpError> {
    match state.record.conversation.kind {
        ConversationKind::Group => Ok(()),
        ConversationKind::Direct => Err(OpError::forbidden(
            "direct conversations have fixed members and no title",
        )),
    }
}

pub(crate) async fn publish(node: &Node, topic: BusTopic, event: ServerEvent) {
    let envelope = BusEnvelope {
        topic,
        origin: node.node_id().clone(),
        payload: BusPayload::Event { seq: None, event },
    };
    if let Err(error) = crate::router::publish(node, envelope).await {
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
        if let Err(error) = crate::router::publish(node, envelope).await {
            tracing::warn!(conversation_id = %conversation_id, error = %error, "membership announcement failed");
        }
    }
}
