//! Erasure (protocol v1.1, "Compliance", right to erasure) of one user from one conversation,
//! carried by the log. The job that walks a user's conversations is the server's
//! (`server/src/erasure`); this is one of its steps, each part idempotent, so a step that stops
//! half-way is finished by the next run:
//! 1. a conversation on legal hold ([`RetentionPolicies::retention`], `legal_hold == On`) is
//!    left untouched and answered as held back;
//! 2. while they are a member, their reactions on the stored messages are taken back as a
//!    `reaction.remove` of theirs would (members get `reaction.updated`); the reactions of a
//!    user who left before are erased by the log event of step 6 (stores and indexes only);
//! 3. the user leaves a group (the `conversation.leave` of the actors: the directory, the log's
//!    `conversation_updated`, `member.left` to the members); a direct conversation keeps its
//!    fixed pair;
//! 4. `through` = the conversation's last seq, once the store caught up to it (also before
//!    step 2; a store that does not within 10 s fails the step, which the job retries);
//! 5. each of their stored messages up to `through` is deleted by the conversation's actor
//!    like a moderation delete (members online get `message.deleted`, the message cache and
//!    the log follow), after its attachment references are dropped (a file no other message
//!    carries is deleted);
//! 6. [`LogEventBody::UserErased`] is appended: the stores (embedded, MongoDB via ingest) and
//!    the search indexers erase whatever is left of theirs up to `through`, their reactions
//!    (also those of a user who had left) and their receipts.

use std::time::{Duration, Instant};

use chrono::Utc;
use ports::{LegalHold, PortError, RetentionScan};
use wire::log::{ConversationRecord, LogEvent, LogEventBody, ReactionChange};
use wire::{ConversationId, ConversationKind, ErrorCode, Seq, UserId};

use crate::attachments::Attachments;
use crate::conversation::ConversationOp;
use crate::node::Node;
use crate::ops::conversation_remove_members::RemoveMembers;
use crate::ops::reaction::ChangeReaction;
use crate::ops::shared::ask;
use crate::retention::StoredPages;
use crate::OpError;

/// Messages read per page.
const PAGE: usize = 500;
/// How long step 4 waits for the store to hold the conversation's last seq.
const STORE_CATCH_UP: Duration = Duration::from_secs(10);

/// What erasing a user from one conversation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Their messages deleted (already deleted ones are not counted again).
    pub messages: u64,
    /// Attachment files deleted (no other message carried them).
    pub files_deleted: u64,
}

/// How one conversation's erasure ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Erased(Erased),
    /// On legal hold: untouched.
    HeldBack,
}

/// Erases `user_id` from `conversation_id` (see the module documentation).
pub async fn erase_from_conversation(
    node: &Node,
    conversation_id: &ConversationId,
    user_id: &UserId,
) -> Result<Verdict, OpError> {
    if let Some(policies) = &node.ports().retention {
        let retention = policies.retention(conversation_id).await?;
        if retention.legal_hold == LegalHold::On {
            return Ok(Verdict::HeldBack);
        }
    }
    let record = node.ports().directory.get(conversation_id).await?;
    if record
        .as_ref()
        .is_some_and(|record| record.is_member(user_id))
    {
        let reacted_through = stored_through(node, conversation_id).await?;
        take_back_reactions(node, conversation_id, user_id, reacted_through).await?;
    }
    if let Some(record) =
        record.filter(|record| record.conversation.kind == ConversationKind::Group)
    {
        leave_group(node, conversation_id, &record, user_id).await?;
    }
    let through = stored_through(node, conversation_id).await?;
    let erased = delete_their_messages(node, conversation_id, user_id, through).await?;
    let body = LogEventBody::UserErased {
        conversation_id: conversation_id.clone(),
        user_id: user_id.clone(),
        through_seq: through,
    };
    let event = LogEvent::new(uuid::Uuid::now_v7().to_string(), Utc::now(), body);
    node.ports().log.append(vec![event]).await?;
    tracing::info!(
        conversation_id = %conversation_id,
        user_id = %user_id,
        through_seq = through.0,
        messages = erased.messages,
        files_deleted = erased.files_deleted,
        "user erased from conversation"
    );
    Ok(Verdict::Erased(erased))
}

/// The user leaves the group when they are in it.
async fn leave_group(
    node: &Node,
    conversation_id: &ConversationId,
    record: &ConversationRecord,
    user_id: &UserId,
) -> Result<(), OpError> {
    if !record.is_member(user_id) {
        return Ok(());
    }
    let leave = RemoveMembers {
        user_id: user_id.clone(),
        user_ids: vec![user_id.clone()],
    };
    ask(node, conversation_id, ConversationOp::RemoveMembers, leave).await?;
    Ok(())
}

/// The conversation's last seq, once the store holds it (ingest trails the log). A store that
/// does not catch up within [`STORE_CATCH_UP`] fails the step (`unavailable`): the job retries
/// it, so that every message of theirs is deleted through the actor (members see it, the
/// caches follow).
async fn stored_through(node: &Node, conversation_id: &ConversationId) -> Result<Seq, OpError> {
    let through = node.ports().sequencer.last_seq(conversation_id).await?;
    let deadline = Instant::now() + STORE_CATCH_UP;
    loop {
        let stored = node.ports().store.conversation(conversation_id).await?;
        let stored_seq = stored.map_or(Seq::ZERO, |stored| stored.last_seq);
        if stored_seq >= through {
            return Ok(through);
        }
        if Instant::now() >= deadline {
            tracing::warn!(conversation_id = %conversation_id, stored_seq = stored_seq.0, through_seq = through.0, "erasure: the store has not caught up with the log");
            return Err(OpError::unavailable(
                "the store has not caught up with the log (is ingest running?)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Takes back the user's reactions on the stored messages up to `through`, through the
/// conversation's actor (the user must still be a member).
async fn take_back_reactions(
    node: &Node,
    conversation_id: &ConversationId,
    user_id: &UserId,
    through: Seq,
) -> Result<(), OpError> {
    let mut pages = StoredPages::new(conversation_id, through);
    while let Some(messages) = pages.next(node).await? {
        for message in messages.into_iter().filter(|message| !message.deleted) {
            for (emoji, users) in &message.reactions {
                if users.contains(user_id) {
                    let take_back = ChangeReaction {
                        user_id: user_id.clone(),
                        message_id: message.message_id.clone(),
                        emoji: emoji.clone(),
                        change: ReactionChange::Remove,
                    };
                    let answer = ask(node, conversation_id, ConversationOp::React, take_back).await;
                    gone_is_done(answer.map(|_| ()))?;
                }
            }
        }
    }
    Ok(())
}

/// Deletes each live message of the user up to `through` through the conversation's actor
/// (like a moderation delete), after dropping its attachment references.
async fn delete_their_messages(
    node: &Node,
    conversation_id: &ConversationId,
    user_id: &UserId,
    through: Seq,
) -> Result<Erased, OpError> {
    let attachments = Attachments::on(node);
    let mut erased = Erased::default();
    let mut pages = StoredPages::new(conversation_id, through);
    while let Some(messages) = pages.next(node).await? {
        let theirs = messages
            .into_iter()
            .filter(|message| &message.sender_id == user_id && !message.deleted);
        for message in theirs {
            if let (Some(attachments), false) = (&attachments, message.attachments.is_empty()) {
                erased.files_deleted += attachments
                    .forget_references(conversation_id, &message.message_id, &message.attachments)
                    .await?;
            }
            let deleted =
                crate::moderation::delete_message(node, conversation_id, message.message_id).await;
            gone_is_done(deleted)?;
            erased.messages += 1;
        }
    }
    Ok(erased)
}

/// A change of a message that is gone meanwhile (deleted, purged by retention) has nothing
/// left to do.
fn gone_is_done(answer: Result<(), OpError>) -> Result<(), OpError> {
    match answer {
        Err(error) if matches!(error.code, ErrorCode::NotFound | ErrorCode::Conflict) => Ok(()),
        other => other,
    }
}

/// The conversations `user_id` is a participant of, or holds messages of (`scan`: also those
/// they left), by id: the order the job walks them in.
pub async fn conversations_of(
    node: &Node,
    scan: &dyn RetentionScan,
    user_id: &UserId,
) -> Result<Vec<ConversationId>, PortError> {
    let directory = &node.ports().directory;
    let mut found = Vec::new();
    let mut after: Option<ConversationId> = None;
    loop {
        let page = directory
            .list_for_user(user_id, after.as_ref(), PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.record.conversation.conversation_id.clone());
        found.extend(
            page.into_iter()
                .map(|stored| stored.record.conversation.conversation_id),
        );
    }
    let mut after: Option<ConversationId> = None;
    loop {
        let page = scan
            .conversations_with_messages_from(user_id, after.as_ref(), PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.clone());
        found.extend(page);
    }
    found.sort();
    found.dedup();
    Ok(found)
}
