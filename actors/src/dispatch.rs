//! Turns a decoded request into work: validates the arguments, queues conversation operations
//! on their actor (synchronously, so one session's operations keep their order) and runs the
//! others against the ports. Every answer is the result object serialized as JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use chrono::Utc;
use futures::future::{join_all, LocalBoxFuture};
use futures::FutureExt;
use ports::{CreateOutcome, MessageQuery, StoredConversation};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use wire::events::ServerEvent;
use wire::frames::{decode_args, Request};
use wire::log::{ConversationRecord, LogEventBody, Participant, ParticipantRole};
use wire::ops::{self, Op, SendAck};
use wire::{
    ClientMsgId, Conversation, ConversationId, ConversationKind, ErrorCode, ForwardedFrom,
    MessageId, Seq, SessionId, UserId,
};

use crate::conversation::{
    announce_membership, publish, publish_to_users, ConversationOp, OpActor, Reply,
};
use crate::node::Node;
use crate::session::SessionHandle;
use crate::OpError;

/// Longest user id, client message id, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest reaction emoji, in bytes.
pub const MAX_EMOJI_BYTES: usize = 64;
/// Most users one `presence.get` may ask about.
pub const MAX_PRESENCE_USERS: usize = 500;
/// Most conversations one `sync` may list.
pub const MAX_SYNC_CONVERSATIONS: usize = 1000;

/// Who sent the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub session_id: SessionId,
}

type Answer = LocalBoxFuture<'static, Result<String, OpError>>;

fn ready(result: Result<String, OpError>) -> Answer {
    futures::future::ready(result).boxed_local()
}

fn json<T: Serialize>(value: &T) -> Result<String, OpError> {
    serde_json::to_string(value).map_err(|error| OpError::internal(error.to_string()))
}

fn args<T: DeserializeOwned>(request: &Request) -> Result<T, OpError> {
    decode_args(request).map_err(|body| OpError::new(body.code, body.message))
}

/// Queues a conversation operation now and returns its answer.
fn ask<T: 'static>(
    node: &Node,
    conversation_id: &ConversationId,
    make: impl FnOnce(Reply<T>) -> ConversationOp,
) -> impl Future<Output = Result<T, OpError>> + 'static {
    let (reply, answer) = oneshot::channel();
    node.supervisor()
        .enqueue(node, conversation_id, make(reply));
    async move {
        answer.await.unwrap_or_else(|_| {
            Err(OpError::internal(
                "the conversation actor failed while handling the request",
            ))
        })
    }
}

/// Asks, then serializes the answer with `to_result`.
fn ask_json<T: 'static, R: Serialize>(
    node: &Node,
    conversation_id: &ConversationId,
    make: impl FnOnce(Reply<T>) -> ConversationOp,
    to_result: impl FnOnce(T) -> R + 'static,
) -> Answer {
    let answer = ask(node, conversation_id, make);
    async move { json(&to_result(answer.await?)) }.boxed_local()
}

/// Starts the work of one request. Conversation operations are queued before this returns.
pub fn start(node: &Node, caller: &Caller, request: Request) -> Answer {
    let Some(op) = Op::parse(&request.op) else {
        return ready(Err(OpError::new(
            ErrorCode::UnknownOp,
            format!("unknown op `{}`", request.op),
        )));
    };
    match start_op(node, caller, op, &request) {
        Ok(answer) => answer,
        Err(error) => ready(Err(error)),
    }
}

fn start_op(node: &Node, caller: &Caller, op: Op, request: &Request) -> Result<Answer, OpError> {
    let user_id = caller.user_id.clone();
    Ok(match op {
        Op::Ping => ready(Ok("{}".to_owned())),
        Op::ConversationCreate => {
            let args: ops::CreateConversationArgs = args(request)?;
            let node = node.clone();
            async move {
                json(&ops::ConversationResult {
                    conversation: create(&node, user_id, args).await?,
                })
            }
            .boxed_local()
        }
        Op::ConversationGet => {
            let args: ops::ConversationRef = args(request)?;
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::Get { user_id, reply },
                |conversation| ops::ConversationResult { conversation },
            )
        }
        Op::ConversationList => {
            let args: ops::ListConversationsArgs = args(request)?;
            let limit = check_limit(args.limit, ops::LIST_DEFAULT_LIMIT, ops::LIST_MAX_LIMIT)?;
            let node = node.clone();
            async move { json(&list(&node, &user_id, args.after, limit).await?) }.boxed_local()
        }
        Op::ConversationUpdate => {
            let args: ops::UpdateConversationArgs = args(request)?;
            check_text("title", &args.title, crate::conversation::MAX_TITLE_BYTES)?;
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::UpdateTitle {
                    user_id,
                    title: args.title,
                    reply,
                },
                |conversation| ops::ConversationResult { conversation },
            )
        }
        Op::ConversationAddMembers | Op::ConversationRemoveMembers => {
            let args: ops::MembersArgs = args(request)?;
            if args.user_ids.is_empty() {
                return Err(OpError::bad_request("`user_ids` must not be empty"));
            }
            for user in &args.user_ids {
                check_user_id(user)?;
            }
            ask_json(
                node,
                &args.conversation_id,
                |reply| {
                    if op == Op::ConversationAddMembers {
                        ConversationOp::AddMembers {
                            user_id,
                            user_ids: args.user_ids,
                            reply,
                        }
                    } else {
                        ConversationOp::RemoveMembers {
                            user_id,
                            user_ids: args.user_ids,
                            reply,
                        }
                    }
                },
                |conversation| ops::ConversationResult { conversation },
            )
        }
        Op::ConversationLeave => {
            let args: ops::ConversationRef = args(request)?;
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::RemoveMembers {
                    user_ids: vec![user_id.clone()],
                    user_id,
                    reply,
                },
                |_| ops::Empty {},
            )
        }
        Op::MessageSend => {
            let args: ops::SendArgs = args(request)?;
            check_client_msg_id(&args.client_msg_id)?;
            check_text("text", &args.text, usize::MAX)?;
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::Send {
                    actor: OpActor::Member(user_id),
                    client_msg_id: args.client_msg_id,
                    text: args.text,
                    reply_to: args.reply_to,
                    forwarded_from: None,
                    reply,
                },
                |ack| ack,
            )
        }
        Op::MessageEdit => {
            let args: ops::EditArgs = args(request)?;
            check_text("text", &args.text, usize::MAX)?;
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::Edit {
                    user_id,
                    message_id: args.message_id,
                    text: args.text,
                    reply,
                },
                |message| ops::MessageResult { message },
            )
        }
        Op::MessageDelete => {
            let args: ops::MessageRef = args(request)?;
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::Delete {
                    user_id,
                    message_id: args.message_id,
                    reply,
                },
                |()| ops::Empty {},
            )
        }
        Op::MessageForward => {
            let args: ops::ForwardArgs = args(request)?;
            check_client_msg_id(&args.client_msg_id)?;
            let source = ask(node, &args.conversation_id, |reply| {
                ConversationOp::ReadMessage {
                    user_id: user_id.clone(),
                    message_id: args.message_id.clone(),
                    reply,
                }
            });
            let node = node.clone();
            async move {
                let original = source.await?;
                if original.deleted {
                    return Err(OpError::conflict("the message is deleted"));
                }
                let ack = ask(&node, &args.to_conversation_id, |reply| {
                    ConversationOp::Send {
                        actor: OpActor::Member(user_id),
                        client_msg_id: args.client_msg_id,
                        text: original.text,
                        reply_to: None,
                        forwarded_from: Some(ForwardedFrom {
                            conversation_id: args.conversation_id,
                            message_id: args.message_id,
                        }),
                        reply,
                    }
                })
                .await?;
                json(&ack)
            }
            .boxed_local()
        }
        Op::ReactionAdd | Op::ReactionRemove => {
            let args: ops::ReactionArgs = args(request)?;
            check_text("emoji", &args.emoji, MAX_EMOJI_BYTES)?;
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::React {
                    user_id,
                    message_id: args.message_id,
                    emoji: args.emoji,
                    add: op == Op::ReactionAdd,
                    reply,
                },
                |message| ops::MessageResult { message },
            )
        }
        Op::HistoryGet => {
            let args: ops::HistoryArgs = args(request)?;
            let limit = check_limit(
                args.limit,
                ops::HISTORY_DEFAULT_LIMIT,
                ops::HISTORY_MAX_LIMIT,
            )?;
            let query = MessageQuery {
                after_seq: args.after_seq,
                before_seq: args.before_seq,
                limit,
            };
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::History {
                    user_id: Some(user_id),
                    query,
                    reply,
                },
                |history| history,
            )
        }
        Op::Sync => {
            let args: ops::SyncArgs = args(request)?;
            if args.conversations.len() > MAX_SYNC_CONVERSATIONS {
                return Err(OpError::bad_request(format!(
                    "at most {MAX_SYNC_CONVERSATIONS} conversations per sync"
                )));
            }
            let page = node.limits().sync_page;
            let answers: Vec<_> = args
                .conversations
                .into_iter()
                .map(|(conversation_id, last_seen)| {
                    let user_id = user_id.clone();
                    let answer = ask(node, &conversation_id, move |reply| {
                        ConversationOp::History {
                            user_id: Some(user_id),
                            query: MessageQuery {
                                after_seq: Some(last_seen),
                                before_seq: None,
                                limit: page,
                            },
                            reply,
                        }
                    });
                    async move { (conversation_id, answer.await) }
                })
                .collect();
            async move {
                let mut conversations = BTreeMap::new();
                for (conversation_id, answer) in join_all(answers).await {
                    match answer {
                        Ok(history) => {
                            conversations.insert(conversation_id, history);
                        }
                        Err(error)
                            if matches!(error.code, ErrorCode::NotMember | ErrorCode::NotFound) => {
                        }
                        Err(error) => return Err(error),
                    }
                }
                json(&ops::SyncResult { conversations })
            }
            .boxed_local()
        }
        Op::ReceiptDelivered | Op::ReceiptRead => {
            let args: ops::ReceiptArgs = args(request)?;
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::Receipt {
                    user_id,
                    seq: args.seq,
                    read: op == Op::ReceiptRead,
                    reply,
                },
                |()| ops::Empty {},
            )
        }
        Op::TypingStart | Op::TypingStop => {
            let args: ops::ConversationRef = args(request)?;
            ask_json(
                node,
                &args.conversation_id,
                |reply| ConversationOp::Typing {
                    user_id,
                    started: op == Op::TypingStart,
                    reply,
                },
                |()| ops::Empty {},
            )
        }
        Op::PresenceGet => {
            let args: ops::PresenceGetArgs = args(request)?;
            if args.user_ids.len() > MAX_PRESENCE_USERS {
                return Err(OpError::bad_request(format!(
                    "at most {MAX_PRESENCE_USERS} users per presence.get"
                )));
            }
            let node = node.clone();
            async move {
                let presence = node.ports().presence.get(&args.user_ids).await?;
                json(&ops::PresenceResult { presence })
            }
            .boxed_local()
        }
    })
}

fn check_limit(limit: Option<u32>, default: u32, max: u32) -> Result<usize, OpError> {
    match limit {
        None => Ok(default as usize),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit as usize),
        Some(limit) => Err(OpError::bad_request(format!(
            "`limit` must be between 1 and {max}, got {limit}"
        ))),
    }
}

fn check_text(field: &str, text: &str, max_bytes: usize) -> Result<(), OpError> {
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

pub fn check_user_id(user_id: &UserId) -> Result<(), OpError> {
    if user_id.as_str().is_empty() || user_id.as_str().len() > MAX_ID_BYTES {
        return Err(OpError::bad_request(format!(
            "user ids must be 1 to {MAX_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

pub fn check_client_msg_id(client_msg_id: &ClientMsgId) -> Result<(), OpError> {
    if client_msg_id.as_str().is_empty() || client_msg_id.as_str().len() > MAX_ID_BYTES {
        return Err(OpError::bad_request(format!(
            "`client_msg_id` must be 1 to {MAX_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

/// `conversation.create`.
async fn create(
    node: &Node,
    creator: UserId,
    args: ops::CreateConversationArgs,
) -> Result<Conversation, OpError> {
    let mut others: Vec<UserId> = Vec::new();
    for member in args.members {
        check_user_id(&member)?;
        if member != creator && !others.contains(&member) {
            others.push(member);
        }
    }
    let title = match args.kind {
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
            match args.title {
                Some(title) if !title.trim().is_empty() => {
                    check_text("title", &title, crate::conversation::MAX_TITLE_BYTES)?;
                    Some(title)
                }
                _ => None,
            }
        }
    };
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
    members.extend(others.iter().cloned());
    let record = ConversationRecord {
        conversation: Conversation {
            conversation_id: ConversationId::new(uuid::Uuid::now_v7().to_string()),
            kind: args.kind,
            title,
            members: members.clone(),
            created_by: creator.clone(),
            created_at: now,
            last_seq: Seq::ZERO,
        },
        participants,
        version: 1,
        updated_at: now,
    };
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
    let event = crate::conversation::log_event_for(LogEventBody::ConversationUpdated { record });
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

/// `conversation.list`.
async fn list(
    node: &Node,
    user_id: &UserId,
    after: Option<ConversationId>,
    limit: usize,
) -> Result<ops::ConversationListResult, OpError> {
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
    // The store follows the log by a few milliseconds; conversations with a running actor on
    // this node answer with their live counters, so a client reads its own writes.
    let snapshots: Vec<_> = stored
        .iter()
        .map(|stored| {
            let conversation_id = &stored.record.conversation.conversation_id;
            node.supervisor().running(conversation_id).map(|handle| {
                let (reply, answer) = oneshot::channel();
                let op = ConversationOp::Snapshot {
                    user_id: user_id.clone(),
                    reply,
                };
                let queued = handle.enqueue(op).is_ok();
                async move {
                    if !queued {
                        return None;
                    }
                    answer.await.ok().and_then(Result::ok)
                }
            })
        })
        .collect();
    let mut items = Vec::with_capacity(stored.len());
    for (stored, snapshot) in stored.into_iter().zip(snapshots) {
        let snapshot = match snapshot {
            Some(answer) => answer.await,
            None => None,
        };
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
        items.push((
            last_activity_at,
            ops::ConversationListItem {
                conversation,
                unread,
            },
        ));
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
    Ok(ops::ConversationListResult { conversations })
}

/// All conversations of a user.
async fn all_conversations(
    node: &Node,
    user_id: &UserId,
) -> Result<Vec<StoredConversation>, OpError> {
    // One call, one snapshot: paging by the activity cursor could skip a conversation whose
    // activity changed between two pages (the adapters load a user's whole list per call).
    const EVERY: usize = 1_000_000;
    Ok(node
        .ports()
        .directory
        .list_for_user(user_id, None, EVERY)
        .await?)
}

fn co_members(user_id: &UserId, conversations: &[StoredConversation]) -> BTreeSet<UserId> {
    conversations
        .iter()
        .flat_map(|stored| stored.record.conversation.members.iter())
        .filter(|member| *member != user_id)
        .cloned()
        .collect()
}

/// Tells co-members a user came online (`last_seen: None`) or went offline at `last_seen`.
async fn announce_presence(
    node: &Node,
    user_id: &UserId,
    last_seen: Option<wire::Timestamp>,
    co_members: BTreeSet<UserId>,
) {
    let online = last_seen.is_none();
    for member in co_members {
        publish(
            node,
            ports::BusTopic::User(member),
            ServerEvent::Presence {
                user_id: user_id.clone(),
                online,
                last_seen,
            },
        )
        .await;
    }
}

/// Registers a new session: queues `welcome` as its first frame, routes its user's
/// conversations to it and marks the user online.
pub async fn open_session(
    node: &Node,
    session: &SessionHandle,
    welcome: bytestring::ByteString,
) -> Result<(), OpError> {
    let user_id = session.user_id();
    let conversations = all_conversations(node, user_id).await?;
    let ids: Vec<ConversationId> = conversations
        .iter()
        .map(|stored| stored.record.conversation.conversation_id.clone())
        .collect();
    node.registry()
        .register_session(session, &ids, Some(welcome))
        .await?;
    let came_online = node
        .ports()
        .presence
        .connect(user_id, session.session_id(), node.node_id())
        .await?;
    if came_online {
        announce_presence(node, user_id, None, co_members(user_id, &conversations)).await;
    }
    Ok(())
}

/// Unregisters a closed session; announces the user offline when it was their last.
pub async fn close_session(node: &Node, session: &SessionHandle) {
    node.registry().unregister_session(session);
    let user_id = session.user_id();
    let went_offline = match node
        .ports()
        .presence
        .disconnect(user_id, session.session_id(), node.node_id())
        .await
    {
        Ok(went_offline) => went_offline,
        Err(error) => {
            tracing::warn!(user_id = %user_id, error = %error, "presence disconnect failed");
            return;
        }
    };
    if went_offline {
        announce_offline(node, user_id).await;
    }
}

/// Tells the user's co-members that the user went offline, with the recorded `last_seen`.
pub async fn announce_offline(node: &Node, user_id: &UserId) {
    let conversations = match all_conversations(node, user_id).await {
        Ok(conversations) => conversations,
        Err(error) => {
            tracing::warn!(user_id = %user_id, error = %error, "announcing offline failed");
            return;
        }
    };
    let last_seen = node
        .ports()
        .presence
        .get(std::slice::from_ref(user_id))
        .await
        .ok()
        .and_then(|mut presence| presence.remove(user_id))
        .and_then(|info| info.last_seen)
        .unwrap_or_else(Utc::now);
    announce_presence(
        node,
        user_id,
        Some(last_seen),
        co_members(user_id, &conversations),
    )
    .await
}

/// A message from the app backend (REST, API key): same guarantees as `message.send`, the
/// sender need not be a member.
pub async fn backend_send(
    node: &Node,
    conversation_id: &ConversationId,
    sender_id: UserId,
    client_msg_id: ClientMsgId,
    text: String,
    reply_to: Option<MessageId>,
) -> Result<SendAck, OpError> {
    check_user_id(&sender_id)?;
    check_client_msg_id(&client_msg_id)?;
    check_text("text", &text, usize::MAX)?;
    ask(node, conversation_id, |reply| ConversationOp::Send {
        actor: OpActor::Backend(sender_id),
        client_msg_id,
        text,
        reply_to,
        forwarded_from: None,
        reply,
    })
    .await
}

/// History for the app backend (REST, API key).
pub async fn backend_history(
    node: &Node,
    conversation_id: &ConversationId,
    before_seq: Option<Seq>,
    after_seq: Option<Seq>,
    limit: Option<u32>,
) -> Result<ops::HistoryResult, OpError> {
    let limit = check_limit(limit, ops::HISTORY_DEFAULT_LIMIT, ops::HISTORY_MAX_LIMIT)?;
    ask(node, conversation_id, |reply| ConversationOp::History {
        user_id: None,
        query: MessageQuery {
            after_seq,
            before_seq,
            limit,
        },
        reply,
    })
    .await
}
