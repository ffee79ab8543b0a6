//! The `Conversation` actor: one per active conversation on this node, started on demand by the
//! [`Supervisor`](crate::supervisor::Supervisor), stopped when idle.
//!
//! Writes are queued and run in batches, one batch in flight at a time (see [`batch`]):
//! concurrent sends share one log append, and seq stays dense even when an append fails.
//! Membership and title changes run alone (see [`members`]). Fan-out of `message.new` to the
//! local sessions happens in seq order, with a bounded wait for a missing seq.

mod batch;
mod catch_up;
mod members;
pub mod op;
mod retire;
mod state;
mod window;

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::time::Instant;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, SpawnHandle,
    WrapFuture,
};
use bytestring::ByteString;
use futures::FutureExt;
use wire::{ConversationId, Seq, UserId};

pub(crate) use batch::log_event as log_event_for;
use batch::CatchUp;
pub use members::MAX_TITLE_BYTES;
pub(crate) use members::{announce_membership, publish, publish_to_users};
pub use op::{Actor as OpActor, ConversationOp, Reply};
pub use state::{ConversationState, Snapshot};

use crate::node::Node;
use crate::OpError;
use retire::Outcome;

/// Most `Enqueue` messages waiting in a conversation actor's mailbox. Past it, callers are
/// answered `unavailable` with [`OVERLOAD_RETRY_AFTER_MS`] instead of queueing.
pub const MAILBOX_CAPACITY: usize = 1024;
/// Most operations waiting in the actor's own queue behind the batch in flight (the mailbox
/// hands every operation to this queue as soon as the actor runs). Past it, the same answer.
pub const MAX_QUEUED_OPS: usize = 1024;
/// The `retry_after_ms` of an operation refused because its conversation is overloaded.
pub const OVERLOAD_RETRY_AFTER_MS: u64 = 200;

/// Why [`ConversationHandle::enqueue`] gave an operation back.
pub enum Refused {
    /// The mailbox is full: the conversation is overloaded.
    Full(Box<ConversationOp>),
    /// The actor has stopped (idle or failed): start a fresh one.
    Stopped(Box<ConversationOp>),
}

/// Answers an operation that its overloaded conversation cannot take, and counts it.
pub(crate) fn refuse_overloaded(node: &Node, op: ConversationOp) {
    node.metrics().conversation_overloads.inc();
    op.fail(OpError::overloaded(
        "the conversation is overloaded, retry later",
        OVERLOAD_RETRY_AFTER_MS,
    ));
}

/// Queue an operation.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Enqueue {
    pub op: ConversationOp,
}

/// Deliver an event of this conversation to its local sessions. Sequenced events
/// (`message.new`) go out in seq order; the others go out as they come, behind the sequenced
/// events already delivered.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub seq: Option<Seq>,
    pub frame: ByteString,
    /// A user whose sessions do not get this event (the typer of a typing event).
    pub exclude: Option<UserId>,
    /// The event changed membership or the title: reload the record before the next batch.
    pub invalidates_record: bool,
    /// Another node changed a message (edit, delete, reaction): drop the window of recent
    /// messages before the next batch, so reads see the new version from the shared cache.
    pub invalidates_messages: bool,
}

pub struct Conversation {
    node: Node,
    conversation_id: ConversationId,
    state: Option<ConversationState>,
    queue: VecDeque<ConversationOp>,
    busy: bool,
    next_delivery: Option<Seq>,
    /// The registry's subscription generation `next_delivery` was started from.
    delivery_generation: u64,
    reorder: BTreeMap<Seq, ByteString>,
    /// Another node changed the membership or title: reload the record before the next batch.
    record_stale: bool,
    /// Another node changed a message: drop the window before the next batch.
    window_stale: bool,
    /// Retention purged the conversation up to this seq: forget those messages before the next
    /// batch.
    purged_through: Option<Seq>,
    gap_timer: Option<SpawnHandle>,
    /// Since when fan-out waits at its current position: its last step, or the first event
    /// buffered out of order when nothing was buffered. A gap is repaired `gap_wait` after.
    stalled_since: Instant,
    last_activity: Instant,
    /// The supervisor forgot this actor (see [`retire`]): operations that still reach it are
    /// handed to a fresh actor, and it stops.
    retired: bool,
    /// What the node's window gauges last got from this actor: messages and estimated bytes.
    reported_window: (usize, usize),
}

/// Catches a batch's state up with what other nodes did before it runs. A batch of sends, none
/// of them a reply, learns of other nodes' messages from its reservation (one trip to a shared
/// sequencer, not two); any other batch refreshes first (a reply is validated before the
/// reservation and may answer a message accepted elsewhere a moment ago).
async fn catch_up_before(
    node: &Node,
    state: &mut ConversationState,
    ops: &[ConversationOp],
    reload_record: bool,
) -> Result<CatchUp, OpError> {
    if !reload_record && ops.iter().all(ConversationOp::is_send_without_reply) {
        return Ok(CatchUp::WithTheReservation);
    }
    state.refresh(node, reload_record).await?;
    Ok(CatchUp::Done)
}

/// Answers every operation of a batch that cannot run with the error.
fn fail_all(ops: Vec<ConversationOp>, error: OpError) {
    for op in ops {
        op.fail(error.clone());
    }
}

impl Conversation {
    pub fn new(node: Node, conversation_id: ConversationId) -> Self {
        Self {
            node,
            conversation_id,
            state: None,
            queue: VecDeque::new(),
            busy: false,
            next_delivery: None,
            delivery_generation: 0,
            reorder: BTreeMap::new(),
            record_stale: false,
            window_stale: false,
            purged_through: None,
            gap_timer: None,
            stalled_since: Instant::now(),
            last_activity: Instant::now(),
            retired: false,
            reported_window: (0, 0),
        }
    }

    /// Starts the next batch when none is in flight.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some(first) = self.queue.pop_front() else {
            return;
        };
        let mut ops = vec![];
        let membership = first.changes_membership();
        ops.push(first);
        if !membership {
            let max = self.node.limits().max_batch_ops.max(1);
            while ops.len() < max {
                match self.queue.front() {
                    Some(next) if !next.changes_membership() => {
                        ops.extend(self.queue.pop_front());
                    }
                    _ => break,
                }
            }
        }
        self.busy = true;
        let node = self.node.clone();
        let conversation_id = self.conversation_id.clone();
        let state = self.state.take();
        // Without local sessions this node hears of no membership change: always reload.
        let reload_record = std::mem::take(&mut self.record_stale)
            || !self.node.registry().has_local_sessions(&conversation_id);
        let drop_window = std::mem::take(&mut self.window_stale);
        let purged_through = self.purged_through.take();
        let work = async move {
            let mut state = match state {
                Some(state) => state,
                None => match ConversationState::load(&node, &conversation_id).await {
                    Ok(Some(state)) => state,
                    Ok(None) => {
                        fail_all(ops, OpError::not_found("no such conversation"));
                        return Outcome::Missing;
                    }
                    Err(error) => {
                        fail_all(ops, error);
                        return Outcome::Ran(None);
                    }
                },
            };
            if drop_window {
                state.forget_recent();
            }
            if let Some(through) = purged_through {
                state.purge(through);
            }
            let catch_up = match catch_up_before(&node, &mut state, &ops, reload_record).await {
                Ok(catch_up) => catch_up,
                Err(error) => {
                    fail_all(ops, error);
                    return Outcome::Ran(None);
                }
            };
            if membership {
                let op = ops.into_iter().next().expect("one membership op");
                Outcome::Ran(members::run(&node, state, op).await)
            } else {
                Outcome::Ran(Some(batch::run(&node, state, ops, catch_up).await))
            }
        };
        ctx.spawn(
            AssertUnwindSafe(work)
                .catch_unwind()
                .into_actor(self)
                .map(|outcome, act, ctx| act.finish_batch(outcome, ctx)),
        );
    }

    /// After a batch: keeps its state, retires the actor when nothing is left for it to do,
    /// or runs the next batch. A batch that panicked stops the actor (its callers got
    /// `internal`: their reply channels dropped); the supervisor starts a fresh one.
    fn finish_batch(
        &mut self,
        outcome: Result<Outcome, Box<dyn std::any::Any + Send>>,
        ctx: &mut Context<Self>,
    ) {
        self.busy = false;
        self.last_activity = Instant::now();
        match outcome {
            Ok(Outcome::Ran(state)) => {
                self.state = state;
                self.report_window();
            }
            Ok(Outcome::Missing) => return self.retire_missing(ctx),
            Err(_) => {
                tracing::error!(conversation_id = %self.conversation_id, "conversation batch panicked, restarting actor");
                self.node.metrics().conversation_restarts.inc();
                ctx.stop();
                return;
            }
        }
        if self.holds_nothing_for_local_sessions() {
            return self.retire(ctx);
        }
        self.pump(ctx);
    }

    /// Brings the node's window gauges (`parley_conversation_window_*`) up to this actor's
    /// window.
    fn report_window(&mut self) {
        let now = self.state.as_ref().map_or((0, 0), |state| {
            (state.window().len(), state.window().bytes())
        });
        let metrics = self.node.metrics();
        let change = |now: usize, before: usize| now as i64 - before as i64;
        metrics
            .window_messages
            .add(change(now.0, self.reported_window.0));
        metrics
            .window_bytes
            .add(change(now.1, self.reported_window.1));
        self.reported_window = now;
    }

    fn fan_out(&self, frame: &ByteString, exclude: Option<&UserId>) {
        let delivered =
            self.node
                .registry()
                .deliver_to_conversation(&self.conversation_id, frame, exclude);
        self.node.metrics().fanout_deliveries.inc_by(delivered);
    }

    /// Seqs up to the delivery floor were allocated before this node subscribed: its sessions
    /// get them from `sync`. Everything above it reaches this node, so fan-out waits for it.
    /// A new subscription (the node's first session after none) starts fan-out at its floor.
    /// False while that floor is being determined.
    fn follow_subscription(&mut self) -> bool {
        match self.node.registry().delivery_floor(&self.conversation_id) {
            Some((generation, Some(floor))) if generation != self.delivery_generation => {
                self.delivery_generation = generation;
                self.next_delivery = Some(floor.next());
                self.reorder = self.reorder.split_off(&floor.next());
                true
            }
            Some((_, None)) => false,
            _ => true,
        }
    }

    /// Fans out a `message.new` unless this node's sessions already got `seq` or a later one
    /// ([`crate::registry::LocalRegistry::deliver_sequenced`]).
    fn fan_out_sequenced(&self, seq: Seq, frame: &ByteString) {
        let metrics = self.node.metrics();
        match self
            .node
            .registry()
            .deliver_sequenced(&self.conversation_id, seq, frame)
        {
            Some(delivered) => metrics.fanout_deliveries.inc_by(delivered),
            None => {
                metrics.fanout_redeliveries_refused.inc();
                tracing::info!(conversation_id = %self.conversation_id, %seq, "fan-out refused a seq this node's sessions already got (or a later one)");
            }
        }
    }

    fn drain_in_order(&mut self) {
        while let Some(next) = self.next_delivery {
            let Some(frame) = self.reorder.remove(&next) else {
                break;
            };
            self.fan_out_sequenced(next, &frame);
            self.next_delivery = Some(next.next());
            self.stalled_since = Instant::now();
        }
    }

    /// Tells the registry how far this actor delivered, for the actor that takes over after
    /// it stops ([`crate::registry::LocalRegistry::advance_floor`]).
    fn hand_on_delivery_position(&self) {
        if let Some(next) = self.next_delivery {
            self.node.registry().advance_floor(
                &self.conversation_id,
                self.delivery_generation,
                Seq(next.0.saturating_sub(1)),
            );
        }
    }

    /// Repairs the gap fan-out waits at once it has stood for `gap_wait`: counted from when
    /// fan-out last moved on or, when it had nothing buffered, from when the first
    /// out-of-order event came ([`Conversation::stalled_since`]). A timer that ends after
    /// fan-out moved on starts over for the gap it waits at now: a seq a moment late on the
    /// bus is not in the shared cache yet either, and repairing it early would skip it and
    /// drop it when it came.
    fn arm_gap_timer(&mut self, ctx: &mut Context<Self>) {
        if self.gap_timer.is_some() || self.reorder.is_empty() {
            return;
        }
        let wait = self.gap_wait_left();
        self.gap_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.gap_timer = None;
            if !act.gap_wait_left().is_zero() {
                act.arm_gap_timer(ctx);
                return;
            }
            if let (None, Some((&first_buffered, _))) =
                (act.next_delivery, act.reorder.iter().next())
            {
                act.next_delivery = Some(first_buffered);
                act.drain_in_order();
            }
            match (act.next_delivery, act.reorder.keys().next().copied()) {
                (Some(expected), Some(first_buffered)) if first_buffered > expected => {
                    act.repair_gap(expected, first_buffered, ctx);
                }
                _ => act.arm_gap_timer(ctx),
            }
        }));
    }

    /// How much longer the gap fan-out waits at has to stand before it is repaired.
    fn gap_wait_left(&self) -> Duration {
        (self.stalled_since + self.node.limits().gap_wait).saturating_duration_since(Instant::now())
    }

    /// Seqs `from..until` did not arrive within the wait: fetch the ones that were accepted
    /// from the shared cache or the store (a publish this node missed, e.g. while its bus
    /// reconnected, or a send whose node died after its log append) and skip the others
    /// (allocated, not accepted, or not stored yet: their node died before the append, or
    /// ingest trails; clients get those from `sync`).
    fn repair_gap(&mut self, from: Seq, until: Seq, ctx: &mut Context<Self>) {
        let node = self.node.clone();
        let conversation_id = self.conversation_id.clone();
        let last = Seq((until.0 - 1).min(from.0 + catch_up::MAX_REPAIR - 1));
        let fetch =
            async move { catch_up::accepted_messages(&node, &conversation_id, from, last).await };
        self.gap_timer = Some(ctx.spawn(fetch.into_actor(self).map(move |found, act, ctx| {
            act.gap_timer = None;
            for record in found {
                act.buffer_message(record);
            }
            act.drain_in_order();
            if let (Some(expected), Some(&first_buffered)) =
                (act.next_delivery, act.reorder.keys().next())
            {
                if first_buffered > expected {
                    tracing::warn!(conversation_id = %act.conversation_id, missing_from = %expected, resumed_at = %first_buffered, "fan-out skipped seqs that were never accepted");
                    act.next_delivery = Some(first_buffered);
                    act.drain_in_order();
                }
            }
            act.arm_gap_timer(ctx);
        })));
    }
}

impl Actor for Conversation {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.node.metrics().conversations_active.inc();
        let idle = self.node.limits().conversation_idle;
        ctx.run_interval(idle / 2, move |act, ctx| {
            let quiet = !act.busy
                && act.queue.is_empty()
                && act.reorder.is_empty()
                && act.last_activity.elapsed() >= idle;
            if quiet && !act.retired {
                // Before the supervisor forgets this actor: the next one may start at once.
                act.hand_on_delivery_position();
                if act
                    .node
                    .supervisor()
                    .forget(&act.conversation_id, &ctx.address())
                {
                    ctx.stop();
                }
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.node.metrics().conversations_active.dec();
        self.state = None;
        self.report_window();
        self.hand_on_delivery_position();
        self.node
            .supervisor()
            .forget(&self.conversation_id, &ctx.address());
        for op in self.queue.drain(..) {
            op.fail(OpError::unavailable("conversation restarting, retry"));
        }
    }
}

impl Handler<Enqueue> for Conversation {
    type Result = ();

    fn handle(&mut self, message: Enqueue, ctx: &mut Self::Context) {
        if self.retired {
            return self.hand_on(message.op);
        }
        self.last_activity = Instant::now();
        if self.queue.len() >= MAX_QUEUED_OPS {
            refuse_overloaded(&self.node, message.op);
            return;
        }
        self.queue.push_back(message.op);
        self.pump(ctx);
    }
}

impl Handler<Deliver> for Conversation {
    type Result = ();

    fn handle(&mut self, message: Deliver, ctx: &mut Self::Context) {
        self.last_activity = Instant::now();
        self.record_stale |= message.invalidates_record;
        self.window_stale |= message.invalidates_messages;
        let Some(seq) = message.seq else {
            self.fan_out(&message.frame, message.exclude.as_ref());
            return;
        };
        if self.reorder.is_empty() {
            self.stalled_since = Instant::now();
        }
        if !self.follow_subscription() {
            // The subscription's floor is being determined: hold the event.
            self.reorder.insert(seq, message.frame);
            self.arm_gap_timer(ctx);
            return;
        }
        let expected = *self.next_delivery.get_or_insert(seq);
        if seq < expected {
            return; // already delivered (a re-delivery)
        }
        self.reorder.insert(seq, message.frame);
        self.drain_in_order();
        self.arm_gap_timer(ctx);
    }
}

/// Asks whether the actor has nothing in flight and nothing queued (a node's graceful stop
/// waits for that before it exits).
#[derive(actix::Message)]
#[rtype(result = "bool")]
pub(crate) struct CheckIdle;

impl Handler<CheckIdle> for Conversation {
    type Result = bool;

    fn handle(&mut self, _message: CheckIdle, _ctx: &mut Self::Context) -> bool {
        !self.busy && self.queue.is_empty()
    }
}

/// Asks on which thread the actor runs (tests of where actors are started).
#[cfg(test)]
#[derive(actix::Message)]
#[rtype(result = "std::thread::ThreadId")]
pub(crate) struct ThreadOf;

#[cfg(test)]
impl Handler<ThreadOf> for Conversation {
    type Result = actix::MessageResult<ThreadOf>;

    fn handle(&mut self, _message: ThreadOf, _ctx: &mut Self::Context) -> Self::Result {
        actix::MessageResult(std::thread::current().id())
    }
}

/// Another node changed the membership or title: reload the record before the next batch.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct InvalidateRecord;

impl Handler<InvalidateRecord> for Conversation {
    type Result = ();

    fn handle(&mut self, _message: InvalidateRecord, _ctx: &mut Self::Context) {
        self.record_stale = true;
    }
}

/// Retention purged the conversation up to `through_seq`: its messages are forgotten before
/// the next batch (the actor holds no copy outside batches it could answer from).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct PurgeMessages {
    pub through_seq: Seq,
}

impl Handler<PurgeMessages> for Conversation {
    type Result = ();

    fn handle(&mut self, message: PurgeMessages, _ctx: &mut Self::Context) {
        self.purged_through = self.purged_through.max(Some(message.through_seq));
    }
}

/// How the rest of the node talks to a conversation actor.
#[derive(Clone)]
pub struct ConversationHandle {
    addr: Addr<Conversation>,
}

impl ConversationHandle {
    pub(crate) fn new(addr: Addr<Conversation>) -> Self {
        Self { addr }
    }

    /// Queues an operation; its answer arrives on the reply channel inside it. Operations
    /// queued by one caller run in the order they were queued. A full mailbox refuses the
    /// operation instead of growing (see [`MAILBOX_CAPACITY`]).
    pub fn enqueue(&self, op: ConversationOp) -> Result<(), Refused> {
        match self.addr.try_send(Enqueue { op }) {
            Ok(()) => Ok(()),
            Err(actix::dev::SendError::Full(Enqueue { op })) => Err(Refused::Full(Box::new(op))),
            Err(actix::dev::SendError::Closed(Enqueue { op })) => {
                Err(Refused::Stopped(Box::new(op)))
            }
        }
    }

    /// Hands an event to the actor for fan-out, waiting when its mailbox is full.
    pub async fn deliver(&self, deliver: Deliver) {
        match self.addr.try_send(deliver) {
            Ok(()) | Err(actix::dev::SendError::Closed(_)) => {}
            Err(actix::dev::SendError::Full(message)) => {
                let _ = self.addr.send(message).await;
            }
        }
    }

    /// Marks the actor's conversation record stale (it reloads it before its next batch).
    pub fn invalidate_record(&self) {
        let _ = self.addr.try_send(InvalidateRecord);
    }

    /// Tells the actor that this node's bus subscribed its conversation again after losing
    /// its connection (what was published meanwhile is lost).
    pub fn resubscribed(&self) {
        let _ = self.addr.try_send(catch_up::CatchUp);
    }

    /// Tells the actor that retention purged its conversation up to `through_seq`.
    pub fn purged(&self, through_seq: Seq) {
        let _ = self.addr.try_send(PurgeMessages { through_seq });
    }

    pub fn addr(&self) -> &Addr<Conversation> {
        &self.addr
    }
}

/// Who an event of this conversation should not reach (the typer, for typing events).
pub fn excluded_user(event: &wire::events::ServerEvent) -> Option<&UserId> {
    match event {
        wire::events::ServerEvent::Typing { user_id, .. } => Some(user_id),
        _ => None,
    }
}

#[cfg(test)]
mod abandoned_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod overload_tests;
#[cfg(test)]
mod reaction_tests;
#[cfg(test)]
mod tests;
