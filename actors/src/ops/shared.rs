//! What the operation files share: the answer type, argument decoding, the checks several
//! operations make, and [`ask`], which queues a command on a conversation actor.

use std::future::Future;

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use wire::frames::{decode_args, Request};
use wire::log::MessageRecord;
use wire::{ClientMsgId, ConversationId, UserId};

use crate::conversation::op::Queued;
use crate::conversation::ConversationOp;
use crate::node::Node;
use crate::OpError;

pub use wire::ids::MAX_ID_BYTES;

/// The answer to one request: its result object serialized as JSON.
pub type Answer = LocalBoxFuture<'static, Result<String, OpError>>;

/// The entry point of an operation: decodes and checks the arguments (the only place that
/// answers `bad_request` for them), then starts the work. Conversation commands are queued
/// before it returns, so one session's operations keep their order.
pub type Start = fn(&Node, &crate::dispatch::Caller, &Request) -> Result<Answer, OpError>;

pub fn ready(result: Result<String, OpError>) -> Answer {
    futures::future::ready(result).boxed_local()
}

pub fn json<T: Serialize>(value: &T) -> Result<String, OpError> {
    serde_json::to_string(value).map_err(|error| OpError::internal(error.to_string()))
}

/// Decodes the request's arguments.
pub fn decode<T: DeserializeOwned>(request: &Request) -> Result<T, OpError> {
    decode_args(request).map_err(|body| OpError::new(body.code, body.message))
}

/// Queues `command` on the conversation's actor now (as the `variant` of [`ConversationOp`]
/// it travels in) and returns its answer.
pub fn ask<C, T: 'static>(
    node: &Node,
    conversation_id: &ConversationId,
    variant: fn(Queued<C, T>) -> ConversationOp,
    command: C,
) -> impl Future<Output = Result<T, OpError>> + 'static {
    let (reply, answer) = oneshot::channel();
    node.supervisor()
        .enqueue(node, conversation_id, variant(Queued::new(command, reply)));
    async move {
        answer.await.unwrap_or_else(|_| {
            Err(OpError::internal(
                "the conversation actor failed while handling the request",
            ))
        })
    }
}

/// [`ask`]s, then serializes the answer with `to_result`.
pub fn ask_json<C, T: 'static, R: Serialize>(
    node: &Node,
    conversation_id: &ConversationId,
    variant: fn(Queued<C, T>) -> ConversationOp,
    command: C,
    to_result: impl FnOnce(T) -> R + 'static,
) -> Answer {
    let answer = ask(node, conversation_id, variant, command);
    async move { json(&to_result(answer.await?)) }.boxed_local()
}

pub fn check_limit(limit: Option<u32>, default: u32, max: u32) -> Result<usize, OpError> {
    match limit {
        None => Ok(default as usize),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit as usize),
        Some(limit) => Err(OpError::bad_request(format!(
            "`limit` must be between 1 and {max}, got {limit}"
        ))),
    }
}

pub fn check_text(field: &str, text: &str, max_bytes: usize) -> Result<(), OpError> {
    if text.trim().is_empty() {
        return Err(OpError::bad_request(format!("`{field}` must not be empty")));
    }
    if text.len() > max_bytes {
        return Err(OpError::bad_request(format!(
            "`{field}` is longer than {max_bytes} bytes"
        )));
    }
    Ok(())
}

/// A user id is 1 to [`MAX_ID_BYTES`] bytes without control characters ([`UserId::problem`]).
pub fn check_user_id(user_id: &UserId) -> Result<(), OpError> {
    match user_id.problem() {
        Some(problem) => Err(OpError::bad_request(problem)),
        None => Ok(()),
    }
}

pub fn check_client_msg_id(client_msg_id: &ClientMsgId) -> Result<(), OpError> {
    if client_msg_id.as_str().is_empty() || client_msg_id.as_str().len() > MAX_ID_BYTES {
        return Err(OpError::bad_request(format!(
            "`client_msg_id` must be 1 to {MAX_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

/// A members list (`conversation.create`'s `members`, the `user_ids` of `add_members` and
/// `remove_members`) holds at most `limits.max_group_members` entries, duplicates included.
/// Checked before anything looks at the entries.
pub fn check_members_list_length(node: &Node, entries: usize) -> Result<(), OpError> {
    let max = node.limits().max_group_members;
    if entries > max {
        return Err(OpError::bad_request(format!(
            "a members list holds at most {max} entries, got {entries}"
        )));
    }
    Ok(())
}

/// Only a message's sender may edit or delete it.
pub fn require_sender(record: &MessageRecord, user_id: &UserId) -> Result<(), OpError> {
    if &record.message.sender_id == user_id {
        Ok(())
    } else {
        Err(OpError::forbidden(
            "only the sender may change this message",
        ))
    }
}
