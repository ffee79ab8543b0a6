//! `conversation.create`: a direct conversation (two users; creating it again returns the
//! existing one) or a group. Runs against the ports: the directory first, then the log for
//! the store, then the members' nodes are told to route it and the members are told.

use chrono::Utc;
use futures::FutureExt;
use ports::CreateOutcome;
use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::{ConversationRecord, LogEventBody, Participant, ParticipantRole};
use wire::ops::{ConversationResult, CreateConversationArgs};
use wire::{Conversation, ConversationId, ConversationKind, Seq, UserId};

use super::conversation_update::MAX_TITLE_BYTES;
use super::shared::{check_text, check_user_id, decode, json, Answer};
use crate::conversation::{announce_membership, log_event_for, publish_to_users};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: CreateConversationArgs = decode(request)?;
    let creator = caller.user_id.clone();
    let node = node.clone();
    Ok(async move {
        json(&ConversationResult {
            conversation: create(&node, creator, args).await?,
        })
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

/// Checks the members and title for the kind: returns the members other than the creator
/// (each once) and the title, if the conversation has one.
fn check_members(
    node: &Node,
    creator: &UserId,
    members: Vec<UserId>,
    kind: ConversationKind,
    title: Option<String>,
) -> Result<(Vec<UserId>, Option<String>), OpError> {
    let mut others: Vec<UserId> = Vec::new();
    for member in members {
        check_user_id(&member)?;
        if &member != creator && !others.contains(&member) {
            others.push(member);
        }
    }
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
