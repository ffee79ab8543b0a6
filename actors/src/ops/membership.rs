//! What the membership and title changes (`conversation.update`, `conversation.add_members`,
//! `conversation.remove_members`, `conversation.leave`) share: the check of a members list and
//! the commit step. Each change runs alone in its batch (`conversation/members.rs`): the
//! directory, the source of truth for membership, is written first, then the change is logged
//! for the store, answered and announced.

use std::sync::Arc;

use chrono::Utc;
use ports::PortError;
use wire::frames::Request;
use wire::log::{ConversationRecord, LogEventBody};
use wire::ops::MembersArgs;
use wire::Conversation;

use super::shared::{check_members_list_length, check_user_id, decode};
use crate::conversation::op::Reply;
use crate::conversation::{log_event_for, ConversationState};
use crate::node::Node;
use crate::OpError;

/// Decodes and checks the arguments of `conversation.add_members` and `.remove_members`.
pub(crate) fn decode_members(node: &Node, request: &Request) -> Result<MembersArgs, OpError> {
    let args: MembersArgs = decode(request)?;
    if args.user_ids.is_empty() {
        return Err(OpError::bad_request("`user_ids` must not be empty"));
    }
    check_members_list_length(node, args.user_ids.len())?;
    for user in &args.user_ids {
        check_user_id(user)?;
    }
    Ok(args)
}

/// Writes the new record to the directory, then the log, then answers. On failure answers with
/// the error and returns `None` (the caller reloads).
pub(crate) async fn commit(
    node: &Node,
    previous: ConversationState,
    mut next: ConversationState,
    reply: Reply<Conversation>,
) -> Option<ConversationState> {
    let record = Arc::make_mut(&mut next.record);
    record.version = previous.record.version + 1;
    record.updated_at = Utc::now();
    let conversation_id = next.record.conversation.conversation_id.clone();
    match node
        .ports()
        .directory
        .update(ConversationRecord::clone(&next.record))
        .await
    {
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
    let event = log_event_for(LogEventBody::ConversationUpdated {
        record: ConversationRecord::clone(&next.record),
    });
    if let Err(error) = node.ports().log.append(vec![event]).await {
        tracing::warn!(conversation_id = %conversation_id, error = %error, "logging a conversation change failed; the store catches up with the next change");
    }
    let _ = reply.send(Ok(next.conversation()));
    Some(next)
}
