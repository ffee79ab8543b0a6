//! `sync`: the messages after the last seq a client saw, for several conversations at once.

use std::collections::BTreeMap;

use futures::future::join_all;
use futures::FutureExt;
use ports::MessageQuery;
use wire::frames::Request;
use wire::ops::{AtLeast, HistoryResult, Keep, SyncArgs, SyncResult, REPLY_MESSAGE_BYTES};
use wire::{ConversationId, ErrorCode, Seq, UserId};

use super::history_get::{PageBudget, ReadHistory};
use super::shared::{ask, decode, json, Answer};
use crate::conversation::ConversationOp;
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Most conversations one `sync` may list.
pub const MAX_SYNC_CONVERSATIONS: usize = 1000;

/// How many conversations a `sync` reads at once. Each read is given what is left of the
/// reply's byte budget, so a sync holds at most this many budgets of messages at a time, not
/// one per listed conversation.
const SYNC_READS_AT_ONCE: usize = 16;

/// The reply being gathered, and what is left of its one byte budget: once it is spent, the
/// remaining conversations answer `has_more` with fewer (or no) messages, to be paged with
/// `history.get`.
struct SyncReply {
    conversations: BTreeMap<ConversationId, HistoryResult>,
    budget_left: usize,
}

impl Default for SyncReply {
    fn default() -> Self {
        Self {
            conversations: BTreeMap::new(),
            budget_left: REPLY_MESSAGE_BYTES,
        }
    }
}

impl SyncReply {
    /// The first conversation read may return one message larger than the whole budget.
    fn budget(&self) -> PageBudget {
        let at_least = if self.budget_left == REPLY_MESSAGE_BYTES {
            AtLeast::OneMessage
        } else {
            AtLeast::Nothing
        };
        PageBudget {
            bytes: self.budget_left,
            at_least,
        }
    }

    fn read_after(&self, node: &Node, user_id: &UserId, last_seen: Seq) -> ReadHistory {
        ReadHistory {
            user_id: Some(user_id.clone()),
            query: MessageQuery {
                after_seq: Some(last_seen),
                before_seq: None,
                limit: node.limits().sync_page,
            },
            budget: self.budget(),
        }
    }

    /// Adds one conversation's page, trimmed to what is left of the budget. Conversations
    /// the user left or that are gone are left out; any other error fails the sync.
    fn take(
        &mut self,
        conversation_id: ConversationId,
        answer: Result<HistoryResult, OpError>,
    ) -> Result<(), OpError> {
        match answer {
            Ok(mut history) => {
                let budget = self.budget();
                let used = history.keep_within(Keep::Oldest, budget.bytes, budget.at_least);
                self.budget_left = self.budget_left.saturating_sub(used);
                self.conversations.insert(conversation_id, history);
                Ok(())
            }
            Err(error) if matches!(error.code, ErrorCode::NotMember | ErrorCode::NotFound) => {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

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
    let node = node.clone();
    let user_id = caller.user_id.clone();
    Ok(async move {
        let mut reply = SyncReply::default();
        let wanted: Vec<(ConversationId, Seq)> = conversations.into_iter().collect();
        for chunk in wanted.chunks(SYNC_READS_AT_ONCE) {
            let reads = chunk.iter().map(|(conversation_id, last_seen)| {
                let read = reply.read_after(&node, &user_id, *last_seen);
                let answer = ask(&node, conversation_id, ConversationOp::History, read);
                async move { (conversation_id.clone(), answer.await) }
            });
            for (conversation_id, answer) in join_all(reads).await {
                reply.take(conversation_id, answer)?;
            }
        }
        json(&SyncResult {
            conversations: reply.conversations,
        })
    }
    .boxed_local())
}
