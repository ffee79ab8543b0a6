//! Audit records of what users do to conversations (creation, membership changes), appended to
//! the node's audit log when it keeps one (`Ports::audit`). Never message text.

use std::sync::Arc;

use futures::FutureExt;
use ports::{AuditLog, AuditRecord};
use wire::{ConversationId, UserId};

use crate::node::Node;
use crate::ops::shared::Answer;

/// Appends `record`; a failure is logged, not answered (what it records happened).
pub async fn append(audit: &dyn AuditLog, record: AuditRecord) {
    if let Err(error) = audit.append(record).await {
        tracing::warn!(error = %error, "audit record lost");
    }
}

/// Appends `record` without holding up the operation that it records (the answer does not
/// wait for the store's round trip, nor for its timeout while the store is down). The record's
/// id and time are taken before, so the log keeps the order of the operations.
pub fn append_in_background(audit: Arc<dyn AuditLog>, record: AuditRecord) {
    tokio::spawn(async move { append(&*audit, record).await });
}

/// The record of `user_id` doing `action` to a conversation.
pub fn conversation_record(
    user_id: &UserId,
    action: &str,
    conversation_id: &ConversationId,
    details: serde_json::Value,
) -> AuditRecord {
    AuditRecord::now(
        user_id.as_str(),
        action,
        format!("conversation:{conversation_id}"),
        details,
    )
}

/// `answer`, with `record` appended to the audit log (in the background) once it succeeded.
pub fn audited(node: &Node, answer: Answer, record: AuditRecord) -> Answer {
    let audit = node.ports().audit.clone();
    async move {
        let result = answer.await?;
        if let Some(audit) = audit {
            append_in_background(audit, record);
        }
        Ok(result)
    }
    .boxed_local()
}
