//! One batch of a conversation actor: validate, reserve seqs, append every resulting event to
//! the log in one call, and only then answer and fan out. Only one batch of a conversation is
//! in flight at a time, so when the append fails the seqs it reserved are given back and seq
//! stays dense.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::Utc;
use ports::{BusEnvelope, BusPayload, BusTopic, DedupKey, Reservation, Watermarks};
use wire::events::{ServerEvent, TypingState};
use wire::log::{LogEvent, LogEventBody, MessageRecord};
use wire::ops::SendAck;
use wire::{Message, MessageId, Seq, UserId};

use super::op::{Actor, ConversationOp, Reply};
use super::state::ConversationState;
use crate::node::Node;
use crate::OpError;

/// An answer that waits for the log append.
enum Pending {
    Sent {
        reply: Reply<SendAck>,
        followers: Vec<Reply<SendAck>>,
        key: DedupKey,
        ack: SendAck,
    },
    Message {
        reply: Reply<Message>,
        message: Message,
    },
    Unit {
        reply: Reply<()>,
    },
}

impl Pending {
    fn fail(self, error: &OpError) {
        match self {
            Pending::Sent {
                reply, followers, ..
            } => {
                let _ = reply.send(Err(error.clone()));
                for follower in followers {
                    let _ = follower.send(Err(error.clone()));
                }
            }
            Pending::Message { reply, .. } => drop(reply.send(Err(error.clone()))),
            Pending::Unit { reply } => drop(reply.send(Err(error.clone()))),
        }
    }
}

/// A send that passed validation, waiting for its reservation.
struct ValidSend {
    key: DedupKey,
    text: String,
    reply_to: Option<MessageId>,
    forwarded_from: Option<wire::ForwardedFrom>,
    raise_watermarks: bool,
    reply: Reply<SendAck>,
    followers: Vec<Reply<SendAck>>,
}

pub(super) async fn run(
    node: &Node,
    committed: ConversationState,
    ops: Vec<ConversationOp>,
) -> ConversationState {
    let conversation_id = committed.record.conversation.conversation_id.clone();
    let mut working = committed.clone();
    let now = Utc::now();

    // Pass 1: validate sends and reserve their seqs in one call.
    let mut slots: Vec<Option<ConversationOp>> = Vec::with_capacity(ops.len());
    let mut sends: Vec<ValidSend> = Vec::new();
    let mut send_slot: HashMap<usize, usize> = HashMap::new();
    let mut key_index: HashMap<DedupKey, usize> = HashMap::new();
    for op in ops {
        let ConversationOp::Send {
            actor,
            client_msg_id,
            text,
            reply_to,
            forwarded_from,
            reply,
        } = op
        else {
            slots.push(Some(op));
            continue;
        };
        let (sender_id, raise_watermarks) = match &actor {
            Actor::Member(user_id) => (user_id.clone(), true),
            Actor::Backend(user_id) => (user_id.clone(), committed.is_member(user_id)),
        };
        if let Actor::Member(user_id) = &actor {
            if let Err(error) = committed.require_member(user_id) {
                let _ = reply.send(Err(error));
                continue;
            }
        }
        if let Some(reply_to) = &reply_to {
            if let Err(error) = committed.find_message(node, reply_to).await {
                let _ = reply.send(Err(error));
                continue;
            }
        }
        let key = DedupKey {
            sender_id,
            client_msg_id,
        };
        if let Some(first) = key_index.get(&key) {
            sends[*first].followers.push(reply);
            continue;
        }
        key_index.insert(key.clone(), sends.len());
        send_slot.insert(slots.len(), sends.len());
        slots.push(None);
        sends.push(ValidSend {
            key,
            text,
            reply_to,
            forwarded_from,
            raise_watermarks,
            reply,
            followers: Vec::new(),
        });
    }
    let keys: Vec<DedupKey> = sends.iter().map(|send| send.key.clone()).collect();
    let reservations = if keys.is_empty() {
        Ok(Vec::new())
    } else {
        node.ports()
            .sequencer
            .reserve(&conversation_id, &keys)
            .await
            .map_err(OpError::from)
    };
    let reservations = match reservations {
        Ok(reservations) => reservations,
        Err(error) => {
            for send in sends.drain(..) {
                Pending::Sent {
                    reply: send.reply,
                    followers: send.followers,
                    key: send.key,
                    ack: placeholder_ack(),
                }
                .fail(&error);
            }
            Vec::new()
        }
    };
    let mut sends: Vec<Option<(ValidSend, Reservation)>> =
        sends.into_iter().zip(reservations).map(Some).collect();

    // Pass 2: apply every operation in order to the working state.
    let mut events: Vec<LogEvent> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut publish: Vec<BusEnvelope> = Vec::new();
    let mut fresh: Vec<Seq> = Vec::new();
    let mut own_watermarks: BTreeMap<UserId, Seq> = BTreeMap::new();
    let envelope = |seq: Option<Seq>, event: ServerEvent| BusEnvelope {
        topic: BusTopic::Conversation(conversation_id.clone()),
        origin: node.node_id().clone(),
        payload: BusPayload::Event { seq, event },
    };
    for (index, slot) in slots.into_iter().enumerate() {
        let op = match slot {
            Some(op) => op,
            None => {
                let Some(Some((send, reservation))) = send_slot
                    .get(&index)
                    .and_then(|at| sends.get_mut(*at))
                    .map(Option::take)
                else {
                    continue;
                };
                match reservation {
                    Reservation::Duplicate(ack) => {
                        let _ = send.reply.send(Ok(ack.clone()));
                        for follower in send.followers {
                            let _ = follower.send(Ok(ack.clone()));
                        }
                    }
                    Reservation::Fresh(seq) => {
                        fresh.push(seq);
                        let message = Message {
                            message_id: MessageId::new(uuid::Uuid::now_v7().to_string()),
                            conversation_id: conversation_id.clone(),
                            seq,
                            sender_id: send.key.sender_id.clone(),
                            client_msg_id: send.key.client_msg_id.clone(),
                            text: send.text,
                            reply_to: send.reply_to,
                            forwarded_from: send.forwarded_from,
                            reactions: Default::default(),
                            created_at: now,
                            edited_at: None,
                            deleted: false,
                        };
                        let record = MessageRecord {
                            message: message.clone(),
                            version: 1,
                        };
                        working.put_message(record.clone());
                        events.push(log_event(LogEventBody::MessageSent { record }));
                        if send.raise_watermarks {
                            own_watermarks.insert(send.key.sender_id.clone(), seq);
                        }
                        let ack = SendAck {
                            message_id: message.message_id.clone(),
                            seq,
                            created_at: now,
                        };
                        publish.push(envelope(Some(seq), ServerEvent::MessageNew { message }));
                        pending.push(Pending::Sent {
                            reply: send.reply,
                            followers: send.followers,
                            key: send.key,
                            ack,
                        });
                    }
                }
                continue;
            }
        };
        match apply(node, &committed, &mut working, op, now).await {
            Applied::Done => {}
            Applied::Changed {
                event,
                bus_event,
                pending: answer,
            } => {
                events.push(log_event(event));
                publish.push(envelope(None, bus_event));
                pending.push(answer);
            }
            Applied::Relay { bus_event, reply } => {
                publish.push(envelope(None, bus_event));
                pending.push(Pending::Unit { reply });
            }
        }
    }
    for (user_id, seq) in own_watermarks {
        let Ok(current) = working.watermarks(node, &user_id).await else {
            continue;
        };
        let raised = Watermarks {
            delivered_seq: current.delivered_seq.max(seq),
            read_seq: current.read_seq.max(seq),
        };
        if raised != current {
            working.set_watermarks(&user_id, raised);
            events.push(log_event(LogEventBody::ReceiptUpdated {
                conversation_id: conversation_id.clone(),
                user_id,
                delivered_seq: raised.delivered_seq,
                read_seq: raised.read_seq,
            }));
        }
    }

    let changed: Vec<MessageRecord> = events
        .iter()
        .filter_map(|event| match &event.body {
            LogEventBody::MessageSent { record }
            | LogEventBody::MessageEdited { record }
            | LogEventBody::MessageDeleted { record }
            | LogEventBody::MessageReacted { record } => Some(record.clone()),
            _ => None,
        })
        .collect();
    if !events.is_empty() {
        let metrics = node.metrics();
        metrics.log_batch_events.observe(events.len() as f64);
        let started = Instant::now();
        let appended = node.ports().log.append(events).await;
        metrics
            .log_append_duration
            .observe(started.elapsed().as_secs_f64());
        if let Err(error) = appended {
            metrics.log_append_failures.inc();
            tracing::warn!(conversation_id = %conversation_id, error = %error, "log append failed");
            // A failure the log calls ambiguous may have stored the events anyway: their seqs
            // stay used (a gap), so no other message can ever claim one of them.
            let may_be_durable = node.ports().log.failed_appends_may_be_durable();
            if may_be_durable {
                // Such a send may surface in the store later: its tombstone hides it for good.
                let tombstones: Vec<LogEvent> = changed
                    .iter()
                    .filter(|record| record.version == 1 && fresh.contains(&record.message.seq))
                    .map(|record| {
                        log_event(LogEventBody::MessageAborted {
                            record: record.aborted(),
                        })
                    })
                    .collect();
                if !tombstones.is_empty() {
                    let tracked = node.track_background_append();
                    let tombstone_node = node.clone();
                    actix_rt::spawn(async move {
                        append_tombstones(tombstone_node, tombstones).await;
                        drop(tracked);
                    });
                }
            }
            if let Some(first) = fresh.first().filter(|_| !may_be_durable) {
                let released = node
                    .ports()
                    .sequencer
                    .release(&conversation_id, *first, fresh.len() as u64)
                    .await;
                if !matches!(released, Ok(true)) {
                    tracing::error!(conversation_id = %conversation_id, first_seq = %first, "could not give back reserved seqs");
                }
            }
            let error = OpError::from(error);
            for answer in pending {
                answer.fail(&error);
            }
            return committed;
        }
    }

    // Durable: share the new versions with the other nodes, record the acks, answer, then fan
    // out.
    if !changed.is_empty() {
        if let Err(error) = node.ports().cache.put(&conversation_id, &changed).await {
            tracing::warn!(conversation_id = %conversation_id, error = %error, "updating the message cache failed");
        }
    }
    if !fresh.is_empty() {
        if let Err(error) = node
            .ports()
            .directory
            .record_activity(&conversation_id, working.last_seq, now)
            .await
        {
            tracing::warn!(conversation_id = %conversation_id, error = %error, "recording activity failed");
        }
    }
    // Record the acks before answering: a retry through another node must find them as soon
    // as the client holds an ack.
    let acks: Vec<(DedupKey, SendAck)> = pending
        .iter()
        .filter_map(|answer| match answer {
            Pending::Sent { key, ack, .. } => Some((key.clone(), ack.clone())),
            _ => None,
        })
        .collect();
    if !acks.is_empty() {
        if let Err(error) = node
            .ports()
            .sequencer
            .confirm(&conversation_id, &acks)
            .await
        {
            tracing::warn!(conversation_id = %conversation_id, error = %error, "recording send acks failed; retries fall back to the store");
        }
    }
    for answer in pending {
        match answer {
            Pending::Sent {
                reply,
                followers,
                ack,
                ..
            } => {
                node.metrics().messages_accepted.inc();
                let _ = reply.send(Ok(ack.clone()));
                for follower in followers {
                    let _ = follower.send(Ok(ack.clone()));
                }
            }
            Pending::Message { reply, message } => drop(reply.send(Ok(message))),
            Pending::Unit { reply } => drop(reply.send(Ok(()))),
        }
    }
    for envelope in publish {
        if let Err(error) = node.ports().bus.publish(envelope).await {
            tracing::warn!(conversation_id = %conversation_id, error = %error, "bus publish failed");
        }
    }
    working
}

fn placeholder_ack() -> SendAck {
    SendAck {
        message_id: MessageId::new(""),
        seq: Seq::ZERO,
        created_at: Utc::now(),
    }
}

/// Appends the tombstones of sends whose append failed ambiguously, retrying with backoff
/// while the log is down (for up to an hour: after that the sends, if the log has them, stay
/// visible in the store and the failure is logged).
async fn append_tombstones(node: Node, tombstones: Vec<LogEvent>) {
    const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
    let started = Instant::now();
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        match node.ports().log.append(tombstones.clone()).await {
            Ok(()) => {
                tracing::info!(
                    sends = tombstones.len(),
                    "aborted sends recorded in the log"
                );
                return;
            }
            Err(error) if started.elapsed() < GIVE_UP_AFTER => {
                tracing::debug!(error = %error, "recording aborted sends failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
            Err(error) => {
                tracing::error!(error = %error, sends = tombstones.len(), "gave up recording aborted sends; if the log stored them they stay visible");
                return;
            }
        }
    }
}

pub(crate) fn log_event(body: LogEventBody) -> LogEvent {
    LogEvent::new(uuid::Uuid::now_v7().to_string(), Utc::now(), body)
}

// Short-lived per operation; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
enum Applied {
    /// Answered already (an error, a read, or nothing changed).
    Done,
    /// A change that goes to the log, then to the members.
    Changed {
        event: LogEventBody,
        bus_event: ServerEvent,
        pending: Pending,
    },
    /// Not persisted, relayed after the batch.
    Relay {
        bus_event: ServerEvent,
        reply: Reply<()>,
    },
}

/// Applies one non-send operation. Reads see `committed`, changes go to `working`.
async fn apply(
    node: &Node,
    committed: &ConversationState,
    working: &mut ConversationState,
    op: ConversationOp,
    now: wire::Timestamp,
) -> Applied {
    macro_rules! check {
        ($reply:expr, $result:expr) => {
            match $result {
                Ok(value) => value,
                Err(error) => {
                    let _ = $reply.send(Err(error));
                    return Applied::Done;
                }
            }
        };
    }
    match op {
        ConversationOp::Edit {
            user_id,
            message_id,
            text,
            reply,
        } => {
            check!(reply, working.require_member(&user_id));
            let mut record = check!(reply, working.find_message(node, &message_id).await);
            check!(reply, require_sender(&record, &user_id));
            if record.message.deleted {
                let _ = reply.send(Err(OpError::conflict("the message is deleted")));
                return Applied::Done;
            }
            record.message.text = text;
            record.message.edited_at = Some(now);
            record.version += 1;
            working.put_message(record.clone());
            let message = record.message.clone();
            Applied::Changed {
                event: LogEventBody::MessageEdited { record },
                bus_event: ServerEvent::MessageEdited {
                    message: message.clone(),
                },
                pending: Pending::Message { reply, message },
            }
        }
        ConversationOp::Delete {
            user_id,
            message_id,
            reply,
        } => {
            check!(reply, working.require_member(&user_id));
            let mut record = check!(reply, working.find_message(node, &message_id).await);
            check!(reply, require_sender(&record, &user_id));
            if record.message.deleted {
                let _ = reply.send(Ok(()));
                return Applied::Done;
            }
            record.message.deleted = true;
            record.message.text.clear();
            record.message.reactions.clear();
            record.version += 1;
            working.put_message(record.clone());
            let message = &record.message;
            Applied::Changed {
                bus_event: ServerEvent::MessageDeleted {
                    conversation_id: message.conversation_id.clone(),
                    message_id: message.message_id.clone(),
                    seq: message.seq,
                },
                event: LogEventBody::MessageDeleted { record },
                pending: Pending::Unit { reply },
            }
        }
        ConversationOp::React {
            user_id,
            message_id,
            emoji,
            add,
            reply,
        } => {
            check!(reply, working.require_member(&user_id));
            let mut record = check!(reply, working.find_message(node, &message_id).await);
            if record.message.deleted {
                let _ = reply.send(Err(OpError::conflict("the message is deleted")));
                return Applied::Done;
            }
            let reactions = &mut record.message.reactions;
            let changed = if add {
                let users = reactions.entry(emoji).or_default();
                if users.contains(&user_id) {
                    false
                } else {
                    users.push(user_id);
                    true
                }
            } else {
                match reactions.get_mut(&emoji) {
                    Some(users) if users.contains(&user_id) => {
                        users.retain(|user| user != &user_id);
                        if users.is_empty() {
                            reactions.remove(&emoji);
                        }
                        true
                    }
                    _ => false,
                }
            };
            if !changed {
                let _ = reply.send(Ok(record.message));
                return Applied::Done;
            }
            record.version += 1;
            working.put_message(record.clone());
            let message = record.message.clone();
            Applied::Changed {
                bus_event: ServerEvent::ReactionUpdated {
                    conversation_id: message.conversation_id.clone(),
                    message_id: message.message_id.clone(),
                    reactions: message.reactions.clone(),
                },
                event: LogEventBody::MessageReacted { record },
                pending: Pending::Message { reply, message },
            }
        }
        ConversationOp::Receipt {
            user_id,
            seq,
            read,
            reply,
        } => {
            check!(reply, working.require_member(&user_id));
            if seq > working.last_seq {
                let _ = reply.send(Err(OpError::bad_request(format!(
                    "seq {seq} is past the conversation's last seq {}",
                    working.last_seq
                ))));
                return Applied::Done;
            }
            let current = check!(reply, working.watermarks(node, &user_id).await);
            let raised = Watermarks {
                delivered_seq: current.delivered_seq.max(seq),
                read_seq: if read {
                    current.read_seq.max(seq)
                } else {
                    current.read_seq
                },
            };
            if raised == current {
                let _ = reply.send(Ok(()));
                return Applied::Done;
            }
            working.set_watermarks(&user_id, raised);
            let conversation_id = working.record.conversation.conversation_id.clone();
            Applied::Changed {
                event: LogEventBody::ReceiptUpdated {
                    conversation_id: conversation_id.clone(),
                    user_id: user_id.clone(),
                    delivered_seq: raised.delivered_seq,
                    read_seq: raised.read_seq,
                },
                bus_event: ServerEvent::ReceiptUpdated {
                    conversation_id,
                    user_id,
                    delivered_seq: raised.delivered_seq,
                    read_seq: raised.read_seq,
                },
                pending: Pending::Unit { reply },
            }
        }
        ConversationOp::Typing {
            user_id,
            started,
            reply,
        } => {
            check!(reply, committed.require_member(&user_id));
            Applied::Relay {
                bus_event: ServerEvent::Typing {
                    conversation_id: committed.record.conversation.conversation_id.clone(),
                    user_id,
                    state: if started {
                        TypingState::Started
                    } else {
                        TypingState::Stopped
                    },
                },
                reply,
            }
        }
        ConversationOp::Snapshot { user_id, reply } => {
            let _ = reply.send(Ok(committed.snapshot(&user_id)));
            Applied::Done
        }
        ConversationOp::Get { user_id, reply } => {
            check!(reply, committed.require_member(&user_id));
            let _ = reply.send(Ok(committed.conversation()));
            Applied::Done
        }
        ConversationOp::History {
            user_id,
            query,
            reply,
        } => {
            if let Some(user_id) = &user_id {
                check!(reply, committed.require_member(user_id));
            }
            let _ = reply.send(committed.history(node, query).await);
            Applied::Done
        }
        ConversationOp::ReadMessage {
            user_id,
            message_id,
            reply,
        } => {
            check!(reply, committed.require_member(&user_id));
            let record = check!(reply, committed.find_message(node, &message_id).await);
            let _ = reply.send(Ok(record.message));
            Applied::Done
        }
        membership_op @ (ConversationOp::UpdateTitle { .. }
        | ConversationOp::AddMembers { .. }
        | ConversationOp::RemoveMembers { .. }
        | ConversationOp::Send { .. }) => {
            membership_op.fail(OpError::internal("operation routed to the wrong batch"));
            Applied::Done
        }
    }
}

fn require_sender(record: &MessageRecord, user_id: &UserId) -> Result<(), OpError> {
    if &record.message.sender_id == user_id {
        Ok(())
    } else {
        Err(OpError::forbidden(
            "only the sender may change this message",
        ))
    }
}
