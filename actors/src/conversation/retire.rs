//! Retiring a conversation actor that should hold nothing: one whose conversation does not
//! exist, or whose conversation has no session on this node once its queue is empty (a
//! stranger's request, the app backend's REST call). Such an actor would otherwise keep its
//! state until the idle timeout, and one user could fill the node with them (issue #13, item 1).
//!
//! Retiring first makes the supervisor forget the actor, so new operations start a fresh one,
//! then queues a stop behind everything already in the mailbox. An operation that still reaches
//! the retired actor is handed on to a fresh actor, never dropped.

use actix::{ActorContext, AsyncContext, Context, Handler};

use super::{Conversation, ConversationOp, ConversationState};
use crate::OpError;

/// What a batch leaves the actor with.
// One per batch, moved once; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Outcome {
    /// The batch ran: the state to keep (`None`: reload it before the next batch).
    Ran(Option<ConversationState>),
    /// The conversation does not exist.
    Missing,
}

/// Stops a retired actor once the operations already in its mailbox were handed on.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct StopRetired;

impl Handler<StopRetired> for Conversation {
    type Result = ();

    fn handle(&mut self, _message: StopRetired, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Conversation {
    /// Nothing is queued or waiting for fan-out, and no session on this node is in the
    /// conversation: the state would serve nobody.
    pub(super) fn holds_nothing_for_local_sessions(&self) -> bool {
        self.queue.is_empty()
            && self.reorder.is_empty()
            && !self
                .node
                .registry()
                .has_local_sessions(&self.conversation_id)
    }

    /// The conversation does not exist: the operations queued behind the failed load get
    /// `not_found` too, and the actor retires.
    pub(super) fn retire_missing(&mut self, ctx: &mut Context<Self>) {
        for op in self.queue.drain(..) {
            op.fail(OpError::not_found("no such conversation"));
        }
        self.retire(ctx);
    }

    /// Drops the state and stops, after the supervisor forgot this actor. The queue is empty.
    pub(super) fn retire(&mut self, ctx: &mut Context<Self>) {
        self.state = None;
        if self
            .node
            .supervisor()
            .forget(&self.conversation_id, &ctx.address())
        {
            self.retired = true;
            // Behind every `Enqueue` already in the mailbox: those are handed on first.
            ctx.address().do_send(StopRetired);
        } else {
            // The supervisor does not hand this actor out: nothing more can reach it.
            ctx.stop();
        }
    }

    /// Gives an operation that reached the retired actor to a fresh one.
    pub(super) fn hand_on(&self, op: ConversationOp) {
        self.node
            .supervisor()
            .enqueue(&self.node, &self.conversation_id, op);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;
    use wire::{ConversationId, ErrorCode, UserId};

    use super::super::op::Queued;
    use super::super::ConversationOp;
    use crate::node::Limits;
    use crate::ops::conversation_get::GetConversation;
    use crate::testing::Harness;

    async fn get(harness: &Harness, conversation_id: &str, user: &str) -> Option<ErrorCode> {
        let (reply, answer) = oneshot::channel();
        let op = ConversationOp::Get(Queued::new(
            GetConversation {
                user_id: UserId::new(user),
            },
            reply,
        ));
        let conversation_id = ConversationId::new(conversation_id);
        harness
            .node
            .supervisor()
            .enqueue(&harness.node, &conversation_id, op);
        answer
            .await
            .expect("answered")
            .err()
            .map(|error| error.code)
    }

    /// Lets the actors run their callbacks and handle their own stop messages.
    async fn let_actors_run() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[actix_rt::test]
    async fn actors_of_missing_or_sessionless_conversations_stop_after_their_answer() {
        let harness = Harness::new(Limits::default());
        assert_eq!(
            get(&harness, "missing", "mallory").await,
            Some(ErrorCode::NotFound)
        );
        harness.group("c1", &["alice", "bob"]);
        assert_eq!(
            get(&harness, "c1", "mallory").await,
            Some(ErrorCode::NotMember)
        );
        assert_eq!(get(&harness, "c1", "alice").await, None);
        let_actors_run().await;
        assert_eq!(harness.node.supervisor().active(), 0);
        // A retired actor's conversation starts afresh on the next request.
        assert_eq!(get(&harness, "c1", "alice").await, None);
    }
}
