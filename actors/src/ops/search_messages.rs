//! `search.messages`: full-text search over the messages of the caller's conversations.
//!
//! Authorization is decided at query time from the directory (the caller's conversations now),
//! never from the index: a removed member stops finding a conversation at once, an added one
//! finds its whole history. The index is exact as of its last commit (edits replace, deletes
//! remove); each hit is also read from its conversation (the actor's window, else the store),
//! which drops a message deleted since the index last saw it and returns the current version
//! (reactions included).

use futures::FutureExt;
use ports::{SearchCursor, SearchQuery};
use wire::frames::Request;
use wire::log::MessageRecord;
use wire::search::{
    SearchArgs, SearchHit, SearchResult, SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT,
    SEARCH_MAX_QUERY_BYTES,
};
use wire::{ConversationId, Message, Seq, UserId};

use super::history_get::backend_history;
use super::shared::{check_limit, decode, json, Answer};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Conversations read from the directory per call while listing the caller's.
const DIRECTORY_PAGE: usize = 1000;

/// A checked search: what [`search`] runs.
#[derive(Debug, Clone)]
pub struct ValidSearch {
    pub query: String,
    pub conversation_id: Option<ConversationId>,
    pub limit: usize,
    pub after: Option<SearchCursor>,
}

impl ValidSearch {
    /// Checks the arguments: the only place `search.messages` (and the REST search) answers
    /// `bad_request` for them.
    pub fn check(args: SearchArgs) -> Result<Self, OpError> {
        if args.query.trim().is_empty() {
            return Err(OpError::bad_request("`query` must not be empty"));
        }
        if args.query.len() > SEARCH_MAX_QUERY_BYTES {
            return Err(OpError::bad_request(format!(
                "`query` must be at most {SEARCH_MAX_QUERY_BYTES} bytes, got {}",
                args.query.len()
            )));
        }
        let limit = check_limit(args.limit, SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT)?;
        let after = args
            .cursor
            .map(|cursor| {
                SearchCursor::decode(&cursor)
                    .map_err(|_| OpError::bad_request("`cursor` is not a search cursor"))
            })
            .transpose()?;
        Ok(Self {
            query: args.query,
            conversation_id: args.conversation_id,
            limit,
            after,
        })
    }
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: SearchArgs = decode(request)?;
    let search_args = ValidSearch::check(args)?;
    let node = node.clone();
    let user_id = caller.user_id.clone();
    Ok(async move { json(&search(&node, &user_id, search_args).await?) }.boxed_local())
}

/// Runs a checked search for `user_id` (also the REST search's entry point).
pub async fn search(
    node: &Node,
    user_id: &UserId,
    search_args: ValidSearch,
) -> Result<SearchResult, OpError> {
    let Some(index) = node.ports().search.as_ref() else {
        return Err(OpError::new(
            wire::ErrorCode::UnknownOp,
            "search is not enabled on this node",
        ));
    };
    let conversations = match &search_args.conversation_id {
        Some(conversation_id) => vec![member_conversation(node, user_id, conversation_id).await?],
        None => member_conversations(node, user_id).await?,
    };
    let page = index
        .search(SearchQuery {
            text: search_args.query,
            conversations,
            limit: search_args.limit,
            after: search_args.after,
        })
        .await?;
    let checked = futures::future::join_all(page.hits.into_iter().map(|hit| async move {
        current_version(node, hit.record)
            .await
            .map(|record| (record, hit.score))
    }))
    .await;
    let mut hits = Vec::with_capacity(checked.len());
    for checked in checked {
        if let (Some(message), score) = checked? {
            hits.push(SearchHit { message, score });
        }
    }
    Ok(SearchResult {
        hits,
        next_cursor: page.next.map(|cursor| cursor.encode()),
    })
}

async fn member_conversation(
    node: &Node,
    user_id: &UserId,
    conversation_id: &ConversationId,
) -> Result<ConversationId, OpError> {
    let record = node.ports().directory.get(conversation_id).await?;
    match record {
        Some(record) if record.is_member(user_id) => Ok(conversation_id.clone()),
        _ => Err(OpError::not_member()),
    }
}

/// Every conversation `user_id` is a member of now, from the directory.
async fn member_conversations(
    node: &Node,
    user_id: &UserId,
) -> Result<Vec<ConversationId>, OpError> {
    let directory = &node.ports().directory;
    let mut conversations = Vec::new();
    loop {
        let page = directory
            .list_for_user(user_id, conversations.last(), DIRECTORY_PAGE)
            .await?;
        let full = page.len() == DIRECTORY_PAGE;
        conversations.extend(
            page.into_iter()
                .map(|stored| stored.record.conversation.conversation_id),
        );
        if !full {
            return Ok(conversations);
        }
    }
}

/// The hit's message as its conversation has it now (the actor's window, else the store):
/// `None` when it is deleted there, even if the index has not seen the deletion yet.
async fn current_version(node: &Node, indexed: MessageRecord) -> Result<Option<Message>, OpError> {
    let message = indexed.message;
    let just_before = Seq(message.seq.0.saturating_sub(1));
    let page = backend_history(
        node,
        &message.conversation_id,
        None,
        Some(just_before),
        Some(1),
    )
    .await?;
    let current = page
        .messages
        .into_iter()
        .find(|current| current.message_id == message.message_id)
        .unwrap_or(message);
    Ok((!current.deleted).then_some(current))
}
