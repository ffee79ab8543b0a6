//! Stage 2 of a batch: every operation's apply step (from its file in [`crate::ops`]), in
//! queue order, against the working state; then the senders' own watermarks rise.

use std::collections::BTreeMap;

use ports::{AbandonedSend, BusEnvelope, BusPayload, BusTopic, DedupKey, Reservation, Watermarks};
use wire::events::ServerEvent;
use wire::log::{AbortedSend, LogEvent, LogEventBody, MessageRecord};
use wire::ops::SendAck;
use wire::{Seq, Timestamp, UserId};

use super::{log_event, Pending, Reserved, SendReplies};
use crate::conversation::op::{Applied, ConversationOp, Queued, Reply};
use crate::conversation::state::ConversationState;
use crate::node::Node;
use crate::ops::message_send::ValidSend;
use crate::OpError;

/// What the apply stage produced: the new state and everything that waits for the append.
pub(super) struct Staged {
    pub(super) working: ConversationState,
    pub(super) events: Vec<LogEvent>,
    pub(super) pending: Vec<Pending>,
    pub(super) envelopes: Vec<BusEnvelope>,
    /// The seqs reserved fresh in this batch, ascending.
    pub(super) fresh: Vec<Seq>,
    /// New message versions whose events carry only the change (reactions): the message
    /// cache still gets the whole version.
    pub(super) logged_as_deltas: Vec<MessageRecord>,
    /// Abandoned sends tombstoned in this batch: their claims are settled after the append.
    pub(super) abandoned: Vec<AbandonedSend>,
    /// Members' sends raise their own watermarks to their newest send.
    own_watermarks: BTreeMap<UserId, Seq>,
}

/// Stage 2: applies every operation in queue order to the working state (reads see
/// `committed`), then raises the senders' own watermarks.
pub(super) async fn apply(
    node: &Node,
    committed: &ConversationState,
    reserved: Vec<Reserved>,
    now: Timestamp,
) -> Staged {
    let mut staged = Staged {
        working: committed.clone(),
        events: Vec::new(),
        pending: Vec::new(),
        envelopes: Vec::new(),
        fresh: Vec::new(),
        logged_as_deltas: Vec::new(),
        abandoned: Vec::new(),
        own_watermarks: BTreeMap::new(),
    };
    for item in reserved {
        match item {
            Reserved::Send {
                send,
                replies,
                reservation,
            } => staged.apply_send(node, send, replies, reservation, now),
            Reserved::Op(op) => apply_op(node, committed, &mut staged, op, now).await,
        }
    }
    staged.raise_own_watermarks(node).await;
    staged
}

/// How long a send whose `client_msg_id` another node's batch holds should wait before its
/// retry (that batch confirms or abandons within an append).
const IN_FLIGHT_RETRY_AFTER_MS: u64 = 250;

/// What an apply step read: the working state (with the changes of the operations before it
/// in the batch) or the committed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Basis {
    Working,
    Committed,
}

/// Calls the apply step of the operation's file.
async fn apply_op(
    node: &Node,
    committed: &ConversationState,
    staged: &mut Staged,
    op: ConversationOp,
    now: Timestamp,
) {
    let working = &mut staged.working;
    match op {
        ConversationOp::Edit(Queued { command, reply }) => {
            let outcome = command.apply(node, working, now).await;
            staged.settle(node, Basis::Working, reply, outcome);
        }
        ConversationOp::Delete(Queued { command, reply }) => {
            let outcome = command.apply(node, working).await;
            staged.settle(node, Basis::Working, reply, outcome);
        }
        ConversationOp::React(Queued { command, reply }) => {
            let outcome = command.apply(node, working).await;
            if let Ok(Applied::Changed { answer, .. }) = &outcome {
                staged.logged_as_deltas.push(answer.clone());
            }
            staged.settle(node, Basis::Working, reply, outcome);
        }
        ConversationOp::Receipt(Queued { command, reply }) => {
            let outcome = command.apply(node, working).await;
            staged.settle(node, Basis::Working, reply, outcome);
        }
        ConversationOp::Typing(Queued { command, reply }) => {
            staged.settle(node, Basis::Committed, reply, command.apply(committed));
        }
        ConversationOp::Snapshot(Queued { command, reply }) => {
            staged.settle(node, Basis::Committed, reply, command.apply(committed));
        }
        ConversationOp::Get(Queued { command, reply }) => {
            staged.settle(node, Basis::Committed, reply, command.apply(committed));
        }
        ConversationOp::History(Queued { command, reply }) => {
            let outcome = command.apply(node, committed).await;
            staged.settle(node, Basis::Committed, reply, outcome);
        }
        ConversationOp::ReadMessage(Queued { command, reply }) => {
            let outcome = command.apply(node, committed).await;
            staged.settle(node, Basis::Committed, reply, outcome);
        }
        ConversationOp::TombstoneAbandoned(Queued { command, reply }) => {
            staged.tombstone_abandoned(&command.send.key, command.send.ack);
            staged.pending.push(Pending::answer(reply, ()));
        }
        misrouted @ (ConversationOp::UpdateTitle(_)
        | ConversationOp::AddMembers(_)
        | ConversationOp::RemoveMembers(_)
        | ConversationOp::Send(_)) => {
            misrouted.fail(OpError::internal("operation routed to the wrong batch"));
        }
    }
}

impl Staged {
    fn envelope(&self, node: &Node, seq: Option<Seq>, event: ServerEvent) -> BusEnvelope {
        BusEnvelope {
            topic: BusTopic::Conversation(self.working.record.conversation.conversation_id.clone()),
            origin: node.node_id().clone(),
            payload: BusPayload::Event { seq, event },
        }
    }

    /// Creates a send's message under its fresh seq, or answers a retry with its first ack.
    fn apply_send(
        &mut self,
        node: &Node,
        send: ValidSend,
        replies: SendReplies,
        reservation: Reservation,
        now: Timestamp,
    ) {
        let seq = match reservation {
            Reservation::Duplicate(ack) => return replies.answer(&Ok(ack)),
            Reservation::InFlight => {
                let error = OpError::unavailable_retry_after(
                    "this client_msg_id is being sent through another node: retry shortly",
                    IN_FLIGHT_RETRY_AFTER_MS,
                );
                return replies.answer(&Err(error));
            }
            Reservation::Fresh(seq) => seq,
            Reservation::Resent { seq, abandoned } => {
                let conversation_id = &self.working.record.conversation.conversation_id;
                tracing::warn!(conversation_id = %conversation_id, abandoned_seq = %abandoned.seq, "a retry replaces a send whose node died before answering");
                self.tombstone_abandoned(&send.key, abandoned);
                seq
            }
        };
        self.fresh.push(seq);
        let key = send.key.clone();
        let raise_watermarks = send.raise_watermarks;
        let accepted = send.apply(&mut self.working, seq, now);
        self.events.push(log_event(accepted.event));
        if raise_watermarks {
            self.own_watermarks.insert(key.sender_id.clone(), seq);
        }
        let envelope = self.envelope(node, Some(seq), accepted.bus_event);
        self.envelopes.push(envelope);
        self.pending.push(Pending::Sent {
            key,
            ack: accepted.ack,
            replies,
        });
    }

    /// A send was reserved on a node that died before answering, perhaps after appending it:
    /// its tombstone goes to the log (with the retry's send, or for the reaper), so the store
    /// keeps at most one message for the key whichever reaches it first, and the send's seq is
    /// settled.
    fn tombstone_abandoned(&mut self, key: &DedupKey, abandoned: SendAck) {
        let conversation_id = &self.working.record.conversation.conversation_id;
        let record = MessageRecord::tombstone(AbortedSend {
            message_id: abandoned.message_id.clone(),
            conversation_id: conversation_id.clone(),
            seq: abandoned.seq,
            sender_id: key.sender_id.clone(),
            client_msg_id: key.client_msg_id.clone(),
            created_at: abandoned.created_at,
        });
        self.abandoned.push(AbandonedSend {
            conversation_id: conversation_id.clone(),
            key: key.clone(),
            ack: abandoned,
        });
        self.working.put_message(record.clone());
        self.events
            .push(log_event(LogEventBody::MessageAborted { record }));
    }

    /// Takes an apply step's outcome: changes wait for the append; errors and unchanged
    /// answers are given now, unless they rest on changes earlier in the batch (`Basis::Working`
    /// after an event): those wait too, and become the append's error if it fails (a
    /// `conflict` for a message whose deletion then failed would be wrong).
    fn settle<T: 'static>(
        &mut self,
        node: &Node,
        basis: Basis,
        reply: Reply<T>,
        outcome: Result<Applied<T>, OpError>,
    ) {
        let uncommitted = basis == Basis::Working && !self.events.is_empty();
        match outcome {
            Err(error) if uncommitted => self.pending.push(Pending::outcome(reply, Err(error))),
            Ok(Applied::Answered(answer)) if uncommitted => {
                self.pending.push(Pending::outcome(reply, Ok(answer)));
            }
            Err(error) => drop(reply.send(Err(error))),
            Ok(Applied::Answered(answer)) => drop(reply.send(Ok(answer))),
            Ok(Applied::Changed {
                event,
                bus_event,
                answer,
            }) => {
                self.events.push(log_event(event));
                let envelope = self.envelope(node, None, bus_event);
                self.envelopes.push(envelope);
                self.pending.push(Pending::answer(reply, answer));
            }
            Ok(Applied::Relayed { bus_event, answer }) => {
                let envelope = self.envelope(node, None, bus_event);
                self.envelopes.push(envelope);
                self.pending.push(Pending::answer(reply, answer));
            }
        }
    }

    /// A member has read what they sent: their watermarks rise to their newest send.
    async fn raise_own_watermarks(&mut self, node: &Node) {
        let conversation_id = self.working.record.conversation.conversation_id.clone();
        for (user_id, seq) in std::mem::take(&mut self.own_watermarks) {
            let Ok(current) = self.working.watermarks(node, &user_id).await else {
                continue;
            };
            let raised = Watermarks {
                delivered_seq: current.delivered_seq.max(seq),
                read_seq: current.read_seq.max(seq),
            };
            if raised != current {
                self.working.set_watermarks(&user_id, raised);
                self.events.push(log_event(LogEventBody::ReceiptUpdated {
                    conversation_id: conversation_id.clone(),
                    user_id,
                    delivered_seq: raised.delivered_seq,
                    read_seq: raised.read_seq,
                }));
            }
        }
    }
}
