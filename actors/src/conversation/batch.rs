//! One batch of a conversation actor, as named stages:
//! [`reserve`] (validate the sends and reserve their seqs in one call) → [`apply`] (every
//! operation's apply step, from its file in [`crate::ops`], in queue order) → [`append`] every
//! resulting event to the log in one call, or [`give_back`] the seqs when that fails →
//! [`confirm`] (message cache, activity, send acks, answers) → [`publish`] to the bus. Only one
//! batch of a conversation is in flight at a time, so when the append fails the seqs it
//! reserved are given back and seq stays dense.

use std::collections::HashMap;
use std::time::Instant;

use chrono::Utc;
use ports::{AbandonedSend, Backoff, BusEnvelope, DedupKey, PortError, Reservation, SendIntent};
use wire::log::{LogEvent, LogEventBody, MessageRecord};
use wire::ops::SendAck;
use wire::{ConversationId, Seq, Timestamp};

mod apply;

use apply::{apply, Staged};

use super::op::{ConversationOp, Queued, Reply};
use super::state::ConversationState;
use crate::node::Node;
use crate::ops::message_send::ValidSend;
use crate::OpError;

/// Whether a batch's state has caught up with other nodes' messages before it runs.
pub(super) enum CatchUp {
    /// `ConversationState::refresh` ran.
    Done,
    /// A batch of sends only: it catches up with what its reservation reports.
    WithTheReservation,
}

pub(super) async fn run(
    node: &Node,
    mut committed: ConversationState,
    ops: Vec<ConversationOp>,
    catch_up: CatchUp,
) -> ConversationState {
    let conversation_id = committed.record.conversation.conversation_id.clone();
    let now = Utc::now();
    let reserved = reserve(node, &mut committed, ops, now, catch_up).await;
    let Staged {
        working,
        events,
        pending,
        envelopes,
        fresh,
        logged_as_deltas,
        abandoned,
        ..
    } = apply(node, &committed, reserved, now).await;
    let mut changed = changed_records(&events);
    changed.extend(logged_as_deltas);
    if let Err(error) = append(node, &conversation_id, events).await {
        give_back(node, &conversation_id, &changed, &fresh).await;
        abandon_sends(node, &conversation_id, &pending).await;
        let error = OpError::from(error);
        for answer in pending {
            answer.fail(&error);
        }
        return committed;
    }
    // Durable: share the new versions with the other nodes, record the acks, answer, then fan
    // out.
    confirm(node, &working, &changed, &fresh, pending, now).await;
    settle_abandoned(node, &abandoned).await;
    publish(node, &conversation_id, envelopes).await;
    working
}

/// The answers a send owes: its own, and those of repeats of its key in the same batch.
struct SendReplies {
    first: Reply<SendAck>,
    repeats: Vec<Reply<SendAck>>,
}

impl SendReplies {
    fn answer(self, result: &Result<SendAck, OpError>) {
        let _ = self.first.send(result.clone());
        for repeat in self.repeats {
            let _ = repeat.send(result.clone());
        }
    }
}

/// An answer that waits for the log append.
enum Pending {
    /// An accepted send: its ack is recorded with the sequencer before it is answered.
    Sent {
        key: DedupKey,
        ack: SendAck,
        replies: SendReplies,
    },
    /// Any other change: answered with its result, or with the append's error.
    Answer(Box<dyn FnOnce(Result<(), OpError>)>),
}

impl Pending {
    fn answer<T: 'static>(reply: Reply<T>, answer: T) -> Self {
        Self::outcome(reply, Ok(answer))
    }

    /// An answer (a result or an error) given once the append succeeded; the append's error
    /// when it failed.
    fn outcome<T: 'static>(reply: Reply<T>, outcome: Result<T, OpError>) -> Self {
        Pending::Answer(Box::new(move |appended: Result<(), OpError>| {
            let _ = reply.send(appended.and(outcome));
        }))
    }

    fn fail(self, error: &OpError) {
        match self {
            Pending::Sent { replies, .. } => replies.answer(&Err(error.clone())),
            Pending::Answer(answer) => answer(Err(error.clone())),
        }
    }
}

/// An operation of the batch after the reserve stage, in queue order.
enum Reserved {
    Op(ConversationOp),
    Send {
        send: ValidSend,
        replies: SendReplies,
        reservation: Reservation,
    },
}

/// Stage 1: validates the sends (answering the invalid ones at once) and reserves the seqs of
/// their dedup keys in one call. A key repeated within the batch shares its first send's
/// answer. When the reservation fails every send is answered with the error and left out.
async fn reserve(
    node: &Node,
    committed: &mut ConversationState,
    ops: Vec<ConversationOp>,
    now: Timestamp,
    catch_up: CatchUp,
) -> Vec<Reserved> {
    enum Slot {
        Op(ConversationOp),
        Send(usize),
    }
    let mut slots: Vec<Slot> = Vec::with_capacity(ops.len());
    let mut sends: Vec<(ValidSend, SendReplies)> = Vec::new();
    let mut first_of_key: HashMap<DedupKey, usize> = HashMap::new();
    for op in ops {
        let ConversationOp::Send(Queued { command, reply }) = op else {
            slots.push(Slot::Op(op));
            continue;
        };
        let send = match command.validate(node, committed).await {
            Ok(send) => send,
            Err(error) => {
                let _ = reply.send(Err(error));
                continue;
            }
        };
        if let Some(first) = first_of_key.get(&send.key) {
            sends[*first].1.repeats.push(reply);
            continue;
        }
        first_of_key.insert(send.key.clone(), sends.len());
        slots.push(Slot::Send(sends.len()));
        let replies = SendReplies {
            first: reply,
            repeats: Vec::new(),
        };
        sends.push((send, replies));
    }
    let reserved_seqs = reserve_seqs(node, committed, &sends, now, catch_up).await;
    let mut reserved_sends: Vec<Option<_>> = match reserved_seqs {
        Ok(reservations) => sends.into_iter().zip(reservations).map(Some).collect(),
        Err(error) => {
            for (_, replies) in sends {
                replies.answer(&Err(error.clone()));
            }
            Vec::new()
        }
    };
    let mut take_send = |index: usize| reserved_sends.get_mut(index).and_then(Option::take);
    slots
        .into_iter()
        .filter_map(|slot| match slot {
            Slot::Op(op) => Some(Reserved::Op(op)),
            Slot::Send(index) => {
                take_send(index).map(|((send, replies), reservation)| Reserved::Send {
                    send,
                    replies,
                    reservation,
                })
            }
        })
        .collect()
}

async fn reserve_seqs(
    node: &Node,
    committed: &mut ConversationState,
    sends: &[(ValidSend, SendReplies)],
    now: Timestamp,
    catch_up: CatchUp,
) -> Result<Vec<Reservation>, OpError> {
    let intents: Vec<SendIntent> = sends
        .iter()
        .map(|(send, _)| SendIntent {
            key: send.key.clone(),
            message_id: send.message_id.clone(),
            created_at: now,
        })
        .collect();
    if intents.is_empty() {
        return Ok(Vec::new());
    }
    let conversation_id = committed.record.conversation.conversation_id.clone();
    let sequencer = &node.ports().sequencer;
    match catch_up {
        CatchUp::Done => Ok(sequencer.reserve(&conversation_id, &intents).await?),
        CatchUp::WithTheReservation => {
            let reserved = sequencer
                .reserve_reporting_last(&conversation_id, &intents)
                .await?;
            committed
                .catch_up_after_reserving(node, reserved.last_before)
                .await;
            Ok(reserved.each)
        }
    }
}

/// The message versions among the events (for the cache, and the tombstones of failed sends).
/// The tombstones of abandoned sends go to the cache too: readers and gap repair find their
/// seq settled before ingest stores it.
fn changed_records(events: &[LogEvent]) -> Vec<MessageRecord> {
    events
        .iter()
        .filter_map(|event| match &event.body {
            LogEventBody::MessageSent { record }
            | LogEventBody::MessageEdited { record }
            | LogEventBody::MessageDeleted { record }
            | LogEventBody::MessageReacted { record }
            | LogEventBody::MessageAborted { record } => Some(record.clone()),
            _ => None,
        })
        .collect()
}

/// Stage 3: appends the batch's events to the log in one call (nothing to do without events).
async fn append(
    node: &Node,
    conversation_id: &ConversationId,
    events: Vec<LogEvent>,
) -> Result<(), PortError> {
    if events.is_empty() {
        return Ok(());
    }
    let metrics = node.metrics();
    metrics.log_batch_events.observe(events.len() as f64);
    let started = Instant::now();
    let appended = node.ports().log.append(events).await;
    metrics
        .log_append_duration
        .observe(started.elapsed().as_secs_f64());
    if let Err(error) = &appended {
        metrics.log_append_failures.inc();
        tracing::warn!(conversation_id = %conversation_id, error = %error, "log append failed");
    }
    appended
}

/// Stage 3 when the append failed: gives the fresh seqs back, or, when the log says a failed
/// append may have stored the events anyway, keeps them used (a gap, so no other message can
/// ever claim one of them) and tombstones the sends.
async fn give_back(
    node: &Node,
    conversation_id: &ConversationId,
    changed: &[MessageRecord],
    fresh: &[Seq],
) {
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
            let conversation_id = conversation_id.clone();
            actix_rt::spawn(async move {
                append_tombstones(tombstone_node, conversation_id, tombstones).await;
                drop(tracked);
            });
        }
    }
    if let Some(first) = fresh.first().filter(|_| !may_be_durable) {
        let released = node
            .ports()
            .sequencer
            .release(conversation_id, *first, fresh.len() as u64)
            .await;
        if !matches!(released, Ok(true)) {
            tracing::error!(conversation_id = %conversation_id, first_seq = %first, "could not give back reserved seqs");
        }
    }
}

/// Stage 3 when the append failed: the failed sends' keys are no longer held for this batch,
/// so their retries (on any node) may be sent again.
async fn abandon_sends(node: &Node, conversation_id: &ConversationId, pending: &[Pending]) {
    let keys: Vec<DedupKey> = pending
        .iter()
        .filter_map(|answer| match answer {
            Pending::Sent { key, .. } => Some(key.clone()),
            Pending::Answer(_) => None,
        })
        .collect();
    if keys.is_empty() {
        return;
    }
    if let Err(error) = node.ports().sequencer.abandon(conversation_id, &keys).await {
        // Their retries get `unavailable` until the reservations time out.
        tracing::warn!(conversation_id = %conversation_id, error = %error, "could not abandon the failed sends' keys");
    }
}

/// Stage 4: shares the new versions with the other nodes, records the activity and the send
/// acks — the three at once: they are independent, and in a cluster each is a round trip to
/// Redis — then answers. The acks are recorded before answering: a retry through another node
/// must find them as soon as the client holds an ack.
async fn confirm(
    node: &Node,
    working: &ConversationState,
    changed: &[MessageRecord],
    fresh: &[Seq],
    pending: Vec<Pending>,
    now: Timestamp,
) {
    let conversation_id = &working.record.conversation.conversation_id;
    let acks: Vec<(DedupKey, SendAck)> = pending
        .iter()
        .filter_map(|answer| match answer {
            Pending::Sent { key, ack, .. } => Some((key.clone(), ack.clone())),
            Pending::Answer(_) => None,
        })
        .collect();
    let activity = (!fresh.is_empty()).then_some(working.last_seq);
    futures::join!(
        share_versions(node, conversation_id, changed),
        record_activity(node, conversation_id, activity, now),
        record_acks(node, conversation_id, &acks),
    );
    for answer in pending {
        match answer {
            Pending::Sent { ack, replies, .. } => {
                node.metrics().messages_accepted.inc();
                replies.answer(&Ok(ack));
            }
            Pending::Answer(answer) => answer(Ok(())),
        }
    }
}

/// The new versions into the shared message cache.
async fn share_versions(node: &Node, conversation_id: &ConversationId, changed: &[MessageRecord]) {
    if changed.is_empty() {
        return;
    }
    if let Err(error) = node.ports().cache.put(conversation_id, changed).await {
        tracing::warn!(conversation_id = %conversation_id, error = %error, "updating the message cache failed");
    }
}

/// The conversation's newest seq and its time, when the batch accepted new messages.
async fn record_activity(
    node: &Node,
    conversation_id: &ConversationId,
    last_seq: Option<Seq>,
    now: Timestamp,
) {
    let Some(last_seq) = last_seq else {
        return;
    };
    let recorded = node
        .ports()
        .directory
        .record_activity(conversation_id, last_seq, now)
        .await;
    if let Err(error) = recorded {
        tracing::warn!(conversation_id = %conversation_id, error = %error, "recording activity failed");
    }
}

/// The sends' acks, so retries through any node get them.
async fn record_acks(node: &Node, conversation_id: &ConversationId, acks: &[(DedupKey, SendAck)]) {
    if acks.is_empty() {
        return;
    }
    if let Err(error) = node.ports().sequencer.confirm(conversation_id, acks).await {
        tracing::warn!(conversation_id = %conversation_id, error = %error, "recording send acks failed; retries fall back to the store");
    }
}

/// Stage 4, continued: the tombstones of abandoned sends are in the log, their claims are
/// settled. One left unsettled (an error here, or the append failed) lapses: the reaper
/// appends the same tombstone again, which changes nothing.
async fn settle_abandoned(node: &Node, abandoned: &[AbandonedSend]) {
    for send in abandoned {
        if let Err(error) = node.ports().sequencer.settle_abandoned(send).await {
            tracing::warn!(conversation_id = %send.conversation_id, abandoned_seq = %send.ack.seq, error = %error, "settling an abandoned send's claim failed; the reaper settles it");
        }
    }
}

/// Stage 5: fans the batch's events out through the bus.
async fn publish(node: &Node, conversation_id: &ConversationId, envelopes: Vec<BusEnvelope>) {
    for envelope in envelopes {
        if let Err(error) = crate::router::publish(node, envelope).await {
            tracing::warn!(conversation_id = %conversation_id, error = %error, "bus publish failed");
        }
    }
}

/// Appends the tombstones of sends whose append failed ambiguously, retrying with backoff
/// while the log is down (for up to an hour: after that the sends, if the log has them, stay
/// visible in the store and the failure is logged). Once appended they go to the shared
/// cache, as every accepted version does: a `sync` or a session's gap repair then finds the
/// seq settled before ingest stores it (otherwise a client that synced in between kept a hole
/// the store does not have).
async fn append_tombstones(node: Node, conversation_id: ConversationId, tombstones: Vec<LogEvent>) {
    const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
    let started = Instant::now();
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
    );
    loop {
        match node.ports().log.append(tombstones.clone()).await {
            Ok(()) => {
                tracing::info!(
                    conversation_id = %conversation_id,
                    sends = tombstones.len(),
                    "aborted sends recorded in the log"
                );
                share_versions(&node, &conversation_id, &changed_records(&tombstones)).await;
                return;
            }
            Err(error) if started.elapsed() < GIVE_UP_AFTER => {
                tracing::debug!(error = %error, "recording aborted sends failed, retrying");
                tokio::time::sleep(backoff.next_delay()).await;
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
