//! `conversation.create`: a direct conversation (two users; creating it again returns the
//! existing one) or a group. Runs against the ports: the directory first, then the log for
//! the store, then the members' nodes are told to route it and the members are told.

use std::collections::HashSet;

use chrono::Utc;
use futures::FutureExt;
use ports::CreateOutcome;
use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::{ConversationRecord, LogEventBody, Participant, ParticipantRole};
use wire::ops::{ConversationResult, CreateConversationArgs};
use wire::{Conversation, ConversationId, ConversationKind, Seq, UserId};

use super::conversation_update::MAX_TITLE_BYTES;
use super::shared::{check_members_list_length, check_text, check_user_id, decode, json, Answer};
use crate::audit::conversation_record;
use crate::conversation::{announce_membership, log_event_for, publish_to_users};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: CreateConversationArgs = decode(request)?;
    check_conversation_quota(node, caller)?;
    let creator = caller.user_id.clone();
    let node = node.clone();
    Ok(async move {
        let conversation = create(&node, creator.clone(), args).await?;
        if let Some(audit) = &node.ports().audit {
            let details = serde_json::json!({
                "kind": conversation.kind,
                "members": conversation.members,
            });
            let record = conversation_record(
                &creator,
                "conversation.create",
                &conversation.conversation_id,
                details,
            );
            crate::audit::append_in_background(audit.clone(), record);
        }
        json(&ConversationResult { conversation })
    }
    .boxed_local())
}

async fn create(
    node: &Node,
    creator: UserId,
    args: CreateConversationArgs,
) -> Result<Conversation, OpError> {
    let (others, title) = check_members(node, &creator, args.members, args.kind, args.title)?;
    let record = new_record(creator.clone(), others.clone(), args.kind, title);
    let members = record.conversation.members.clone();
    let record = match node.ports().directory.create(record).await? {
        CreateOutcome::Existing(record) => {
            let conversation_id = record.conversation.conversation_id.clone();
            let mut conversation = record.conversation;
            conversation.last_seq = node.ports().sequencer.last_seq(&conversation_id).await?;
            return Ok(conversation);
        }
        CreateOutcome::Created(record) => record,
    };
    let conversation = record.conversation.clone();
    let conversation_id = conversation.conversation_id.clone();
    let event = log_event_for(LogEventBody::ConversationUpdated { record });
    if let Err(error) = node.ports().log.append(vec![event]).await {
        tracing::warn!(conversation_id = %conversation_id, error = %error, "logging a new conversation failed; the store catches up with its next change");
    }
    node.registry()
        .add_members(&conversation_id, &members)
        .await?;
    announce_membership(node, &conversation_id, &members, &[]).await;
    publish_to_users(
        node,
        &members,
        ServerEvent::MemberJoined {
            conversation_id,
            user_ids: others,
            by: creator,
            conversation: conversation.clone(),
        },
    )
    .await;
    Ok(conversation)
}

/// A user who is a member of `limits.max_conversations_per_user` conversations creates no more
/// (`forbidden`). Counted from the conversations the caller's session is routed (every
/// conversation of the user, kept up to date by membership changes): no directory read.
fn check_conversation_quota(node: &Node, caller: &Caller) -> Result<(), OpError> {
    let max = node.limits().max_conversations_per_user;
    if node
        .registry()
        .session_conversation_count(&caller.session_id)
        >= max
    {
        return Err(OpError::forbidden(format!(
            "a user may be a member of at most {max} conversations"
        )));
    }
    Ok(())
}

/// Checks the members and title for the kind: returns the members other than the creator
/// (each once) and the title, if the conversation has one.
fn check_members(
    node: &Node,
    creator: &UserId,
    members: Vec<UserId>,
    kind: ConversationKind,
    title: Option<String>,
) -> Result<(Vec<UserId>, Option<String>), OpError> {
    // Sizes first: the list is checked and de-duplicated only when it is short enough.
    check_members_list_length(node, members.len())?;
    for member in &members {
        check_user_id(member)?;
    }
    let mut kept: HashSet<UserId> = HashSet::with_capacity(members.len());
    let others: Vec<UserId> = members
        .into_iter()
        .filter(|member| member != creator && kept.insert(member.clone()))
        .collect();
    let title = match kind {
        ConversationKind::Direct => {
            if others.len() != 1 {
                return Err(OpError::bad_request(
                    "a direct conversation takes exactly one other user",
                ));
            }
            None
        }
        ConversationKind::Group => {
            if others.len() + 1 > node.limits().max_group_members {
                return Err(OpError::bad_request(format!(
                    "too many members: a group holds at most {}",
                    node.limits().max_group_members
                )));
            }
            match title {
                Some(title) if !title.trim().is_empty() => {
                    check_text("title", &title, MAX_TITLE_BYTES)?;
                    Some(title)
                }
                _ => None,
            }
        }
    };
    Ok((others, title))
}

/// The record of a new conversation: the creator owns it, the others are members.
fn new_record(
    creator: UserId,
    others: Vec<UserId>,
    kind: ConversationKind,
    title: Option<String>,
) -> ConversationRecord {
    let now = Utc::now();
    let mut participants = vec![Participant {
        user_id: creator.clone(),
        role: ParticipantRole::Owner,
        joined_at: now,
    }];
    participants.extend(others.iter().map(|user_id| Participant {
        user_id: user_id.clone(),
        role: ParticipantRole::Member,
        joined_at: now,
    }));
    let mut members = vec![creator.clone()];
    members.extend(others);
    ConversationRecord {
        conversation: Conversation {
            conversation_id: ConversationId::new(uuid::Uuid::now_v7().to_string()),
            kind,
            title,
            members,
            created_by: creator,
            created_at: now,
            last_seq: Seq::ZERO,
        },
        participants,
        version: 1,
        updated_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;

    #[actix_rt::test]
    async fn a_members_list_over_the_cap_is_refused_before_it_is_deduplicated() {
        let harness = Harness::new(crate::node::Limits::default());
        let max = harness.node.limits().max_group_members;
        let alice = UserId::new("alice");
        let repeated = vec![UserId::new("bob"); max + 1];
        let refused = check_members(
            &harness.node,
            &alice,
            repeated,
            ConversationKind::Group,
            None,
        );
        assert_eq!(refused.unwrap_err().code, wire::ErrorCode::BadRequest);
        let repeated = vec![UserId::new("bob"); max];
        let (others, _) = check_members(
            &harness.node,
            &alice,
            repeated,
            ConversationKind::Group,
            None,
        )
        .unwrap();
        assert_eq!(others, [UserId::new("bob")]);
    }
}
