//! Audit records of what users do to conversations (creation, membership changes), appended to
//! the node's audit log when it keeps one (`Ports::audit`). Never message text.

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

/// `answer`, with `record` appended to the audit log once it succeeded.
pub fn audited(node: &Node, answer: Answer, record: AuditRecord) -> Answer {
    let audit = node.ports().audit.clone();
    async move {
        let result = answer.await?;
        if let Some(audit) = audit {
            append(&*audit, record).await;
        }
        Ok(result)
    }
    .boxed_local()
}
