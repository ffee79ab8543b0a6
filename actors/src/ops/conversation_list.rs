//! `conversation.list`: the caller's conversations, most recently active first, with their
//! unread counts. Reads the directory and overlays the live counters of the running actors.

use futures::FutureExt;
use ports::StoredConversation;
use tokio::sync::oneshot;
use wire::frames::Request;
use wire::ops::{self, ConversationListItem, ConversationListResult, ListConversationsArgs};
use wire::{ConversationId, Timestamp, UserId};

use super::shared::{check_limit, decode, json, Answer};
use crate::conversation::op::{Applied, Queued};
use crate::conversation::{ConversationOp, ConversationState, Snapshot};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// The live counters of a conversation for one user (no membership check: callers listed it
/// from the user's own conversations).
pub struct TakeSnapshot {
    pub user_id: UserId,
}

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: ListConversationsArgs = decode(request)?;
    let limit = check_limit(args.limit, ops::LIST_DEFAULT_LIMIT, ops::LIST_MAX_LIMIT)?;
    let node = node.clone();
    let user_id = caller.user_id.clone();
    Ok(async move { json(&list(&node, &user_id, args.after, limit).await?) }.boxed_local())
}

impl TakeSnapshot {
    pub(crate) fn apply(self, committed: &ConversationState) -> Result<Applied<Snapshot>, OpError> {
        Ok(Applied::Answered(committed.snapshot(&self.user_id)))
    }
}

async fn list(
    node: &Node,
    user_id: &UserId,
    after: Option<ConversationId>,
    limit: usize,
) -> Result<ConversationListResult, OpError> {
    let ports = node.ports();
    if let Some(after) = &after {
        let is_own = ports
            .directory
            .get(after)
            .await?
            .is_some_and(|record| record.is_member(user_id));
        if !is_own {
            return Err(OpError::bad_request(
                "`after` is not one of your conversations",
            ));
        }
    }
    let stored = ports
        .directory
        .list_for_user(user_id, after.as_ref(), limit)
        .await?;
    // The store follows the log (by up to `ingest.linger_ms` under steady traffic);
    // conversations with a running actor on this node answer with their live counters, so a
    // client reads its own writes.
    let snapshots: Vec<_> = stored
        .iter()
        .map(|stored| live_snapshot(node, user_id, &stored.record.conversation.conversation_id))
        .collect();
    let mut items = Vec::with_capacity(stored.len());
    for (stored, snapshot) in stored.into_iter().zip(snapshots) {
        let snapshot = match snapshot {
            Some(answer) => answer.await,
            None => None,
        };
        items.push(list_item(node, user_id, stored, snapshot).await?);
    }
    // Live activity can move a conversation up within the page.
    items.sort_by(|(left_time, left), (right_time, right)| {
        right_time.cmp(left_time).then_with(|| {
            left.conversation
                .conversation_id
                .cmp(&right.conversation.conversation_id)
        })
    });
    let conversations = items.into_iter().map(|(_, item)| item).collect();
    Ok(ConversationListResult { conversations })
}

/// Asks the conversation's actor for its snapshot now, if one runs on this node.
fn live_snapshot(
    node: &Node,
    user_id: &UserId,
    conversation_id: &ConversationId,
) -> Option<impl std::future::Future<Output = Option<Snapshot>>> {
    node.supervisor().running(conversation_id).map(|handle| {
        let (reply, answer) = oneshot::channel();
        let take = TakeSnapshot {
            user_id: user_id.clone(),
        };
        let queued = handle
            .enqueue(ConversationOp::Snapshot(Queued::new(take, reply)))
            .is_ok();
        async move {
            if !queued {
                return None;
            }
            answer.await.ok().and_then(Result::ok)
        }
    })
}

/// One item of the list, with the live counters when there is a snapshot, and the time it
/// sorts by.
async fn list_item(
    node: &Node,
    user_id: &UserId,
    stored: StoredConversation,
    snapshot: Option<Snapshot>,
) -> Result<(Timestamp, ConversationListItem), OpError> {
    let ports = node.ports();
    let mut conversation = stored.record.conversation;
    let live_last_seq = ports
        .sequencer
        .last_seq(&conversation.conversation_id)
        .await?;
    let mut last_activity_at = stored.last_activity_at;
    conversation.last_seq = stored.last_seq.max(live_last_seq);
    let mut watermarks = None;
    if let Some(snapshot) = snapshot {
        conversation.last_seq = conversation.last_seq.max(snapshot.last_seq);
        last_activity_at =
            last_activity_at.max(snapshot.last_activity_at.unwrap_or(last_activity_at));
        watermarks = snapshot.watermarks;
    }
    let watermarks = match watermarks {
        Some(watermarks) => watermarks,
        None => {
            ports
                .store
                .watermarks(&conversation.conversation_id, user_id)
                .await?
        }
    };
    let unread = conversation
        .last_seq
        .0
        .saturating_sub(watermarks.read_seq.0);
    Ok((
        last_activity_at,
        ConversationListItem {
            conversation,
            unread,
        },
    ))
}
