//! `sync`: the messages after the last seq a client saw, for several conversations at once.

use std::collections::BTreeMap;

use futures::future::join_all;
use futures::FutureExt;
use ports::MessageQuery;
use wire::frames::Request;
use wire::ops::{AtLeast, Keep, SyncArgs, SyncResult, REPLY_MESSAGE_BYTES};
use wire::ErrorCode;

use super::history_get::ReadHistory;
use super::shared::{ask, decode, json, Answer};
use crate::conversation::ConversationOp;
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Most conversations one `sync` may list.
pub const MAX_SYNC_CONVERSATIONS: usize = 1000;

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: SyncArgs = decode(request)?;
    if args.conversations.len() > MAX_SYNC_CONVERSATIONS {
        return Err(OpError::bad_request(format!(
            "at most {MAX_SYNC_CONVERSATIONS} conversations per sync"
        )));
    }
    // Only the session's own conversations reach an actor: an unknown or foreign id starts
    // nothing and is left out like a conversation the user left.
    let registry = node.registry();
    let mut conversations = args.conversations;
    conversations.retain(|id, _| registry.session_in_conversation(&caller.session_id, id));
    let page = node.limits().sync_page;
    let answers: Vec<_> = conversations
        .into_iter()
        .map(|(conversation_id, last_seen)| {
            let read = ReadHistory {
                user_id: Some(caller.user_id.clone()),
                query: MessageQuery {
                    after_seq: Some(last_seen),
                    before_seq: None,
                    limit: page,
                },
            };
            let answer = ask(node, &conversation_id, ConversationOp::History, read);
            async move { (conversation_id, answer.await) }
        })
        .collect();
    Ok(async move {
        let mut conversations = BTreeMap::new();
        // One byte budget for the whole reply: once it is spent, the remaining conversations
        // answer `has_more` with fewer (or no) messages, to be paged with `history.get`.
        let mut budget_left = REPLY_MESSAGE_BYTES;
        for (conversation_id, answer) in join_all(answers).await {
            match answer {
                Ok(mut history) => {
                    let at_least = if budget_left == REPLY_MESSAGE_BYTES {
                        AtLeast::OneMessage
                    } else {
                        AtLeast::Nothing
                    };
                    let used = history.keep_within(Keep::Oldest, budget_left, at_least);
                    budget_left = budget_left.saturating_sub(used);
                    conversations.insert(conversation_id, history);
                }
                // Conversations the user left or that are gone are left out.
                Err(error) if matches!(error.code, ErrorCode::NotMember | ErrorCode::NotFound) => {}
                Err(error) => return Err(error),
            }
        }
        json(&SyncResult { conversations })
    }
    .boxed_local())
}
