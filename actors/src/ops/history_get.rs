//! `history.get` (and the backend's REST history): a page of a conversation's messages.

use ports::MessageQuery;
use wire::frames::Request;
use wire::ops::{self, AtLeast, HistoryArgs, HistoryResult, Keep, REPLY_MESSAGE_BYTES};
use wire::{ConversationId, Seq, UserId};

use super::shared::{ask, ask_json, check_limit, decode, Answer};
use crate::conversation::op::Applied;
use crate::conversation::{ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Reads messages, from the actor's window when it covers the range, else the cache or store;
/// a page holds at most `limit` messages and `budget` bytes of them.
pub struct ReadHistory {
    /// `None` for the app backend, which may read any conversation.
    pub user_id: Option<UserId>,
    pub query: MessageQuery,
    pub budget: PageBudget,
}

/// How many bytes of messages a page may hold, and whether one message is kept even when
/// it alone is larger.
#[derive(Debug, Clone, Copy)]
pub struct PageBudget {
    pub bytes: usize,
    pub at_least: AtLeast,
}

impl PageBudget {
    /// A whole reply's: [`REPLY_MESSAGE_BYTES`], at least one message.
    pub const REPLY: PageBudget = PageBudget {
        bytes: REPLY_MESSAGE_BYTES,
        at_least: AtLeast::OneMessage,
    };
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: HistoryArgs = decode(request)?;
    let limit = check_limit(
        args.limit,
        ops::HISTORY_DEFAULT_LIMIT,
        ops::HISTORY_MAX_LIMIT,
    )?;
    let read = ReadHistory {
        user_id: Some(caller.user_id.clone()),
        query: MessageQuery {
            after_seq: args.after_seq,
            before_seq: args.before_seq,
            limit,
        },
        budget: PageBudget::REPLY,
    };
    Ok(ask_json(
        node,
        &args.conversation_id,
        ConversationOp::History,
        read,
        |history| history,
    ))
}

/// History for the app backend (REST, API key).
pub async fn backend_history(
    node: &Node,
    conversation_id: &ConversationId,
    before_seq: Option<Seq>,
    after_seq: Option<Seq>,
    limit: Option<u32>,
) -> Result<HistoryResult, OpError> {
    let limit = check_limit(limit, ops::HISTORY_DEFAULT_LIMIT, ops::HISTORY_MAX_LIMIT)?;
    let read = ReadHistory {
        user_id: None,
        query: MessageQuery {
            after_seq,
            before_seq,
            limit,
        },
        budget: PageBudget::REPLY,
    };
    ask(node, conversation_id, ConversationOp::History, read).await
}

impl ReadHistory {
    pub(crate) async fn apply(
        self,
        node: &Node,
        committed: &ConversationState,
    ) -> Result<Applied<HistoryResult>, OpError> {
        if let Some(user_id) = &self.user_id {
            committed.require_member(user_id)?;
        }
        // Forward pages keep their oldest messages, backward pages their newest.
        let keep = match self.query.after_seq {
            Some(_) => Keep::Oldest,
            None => Keep::Newest,
        };
        let mut page = committed.history(node, self.query).await?;
        page.keep_within(keep, self.budget.bytes, self.budget.at_least);
        Ok(Applied::Answered(page))
    }
}
