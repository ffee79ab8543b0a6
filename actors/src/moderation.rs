//! What the admin API asks of the actors (protocol v1.1): closing a user's sessions on every
//! node (disconnect, ban, token revocation), and the moderation delete of a message.
//!
//! Closing goes through the bus: a [`BusPayload::CloseSessions`] on the user's topic reaches
//! every node holding a session of that user (a node subscribes to a user's topic while it has
//! one of their sessions), whose router calls [`close_local_sessions`].

use ports::{BusEnvelope, BusPayload, BusTopic, PortError, SessionCloseReason};
use wire::{CloseCode, ConversationId, MessageId, UserId};

use crate::conversation::ConversationOp;
use crate::node::Node;
use crate::ops::message_delete::{DeleteMessage, Deleter};
use crate::ops::shared::ask;
use crate::OpError;

/// The close code and reason text a session gets for `reason`.
pub fn close_code(reason: SessionCloseReason) -> (CloseCode, &'static str) {
    match reason {
        SessionCloseReason::Disconnected => (CloseCode::Kicked, "disconnected by an operator"),
        SessionCloseReason::Banned => (CloseCode::Kicked, "banned"),
        SessionCloseReason::TokensRevoked => (CloseCode::TokenInvalid, "token revoked"),
    }
}

/// Asks every node (this one included) to close the user's sessions. Returns once the request
/// is published; nodes close within their bus delivery time.
pub async fn close_sessions_everywhere(
    node: &Node,
    user_id: &UserId,
    reason: SessionCloseReason,
) -> Result<(), PortError> {
    let envelope = BusEnvelope {
        topic: BusTopic::User(user_id.clone()),
        origin: node.node_id().clone(),
        payload: BusPayload::CloseSessions { reason },
    };
    crate::router::publish(node, envelope).await
}

/// Closes this node's sessions of the user (the frames already queued go first). Returns how
/// many were closed.
pub fn close_local_sessions(node: &Node, user_id: &UserId, reason: SessionCloseReason) -> usize {
    let (code, text) = close_code(reason);
    let sessions = node.registry().user_sessions(user_id);
    for session in &sessions {
        session.close(code, text);
    }
    tracing::info!(user_id = %user_id, ?reason, closed = sessions.len(), "operator closed sessions");
    sessions.len()
}

/// Deletes a message whoever sent it: members get `message.deleted`, and the log, the stores
/// and the caches see the deletion like a sender's own.
pub async fn delete_message(
    node: &Node,
    conversation_id: &ConversationId,
    message_id: MessageId,
) -> Result<(), OpError> {
    let delete = DeleteMessage {
        deleter: Deleter::Moderator,
        message_id,
    };
    ask(node, conversation_id, ConversationOp::Delete, delete).await
}
