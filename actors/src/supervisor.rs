//! The conversation supervisor: one per node. Starts a conversation actor on first use, starts
//! a fresh one when the previous one failed (its mailbox closed), and forgets actors that
//! stopped because they were idle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::{Actor, Addr};
use wire::ConversationId;

use crate::conversation::{
    refuse_overloaded, CheckIdle, Conversation, ConversationHandle, ConversationOp, Refused,
};
use crate::node::Node;

#[derive(Clone, Default)]
pub struct Supervisor {
    actors: Arc<Mutex<HashMap<ConversationId, Addr<Conversation>>>>,
}

impl Supervisor {
    fn actors(&self) -> MutexGuard<'_, HashMap<ConversationId, Addr<Conversation>>> {
        self.actors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The running actor of a conversation, started if there is none (or it failed): on this
    /// arbiter when a local session of the conversation runs here or none does, else on a
    /// local session's ([`crate::registry::LocalRegistry::arbiter_near_sessions`]).
    /// Must be called on an actix arbiter.
    pub fn conversation(
        &self,
        node: &Node,
        conversation_id: &ConversationId,
    ) -> ConversationHandle {
        let mut actors = self.actors();
        if let Some(addr) = actors.get(conversation_id) {
            if addr.connected() {
                return ConversationHandle::new(addr.clone());
            }
        }
        let conversation = Conversation::new(node.clone(), conversation_id.clone());
        let addr = match node.registry().arbiter_near_sessions(conversation_id) {
            Some(arbiter) => Conversation::start_in_arbiter(&arbiter, move |_| conversation),
            None => conversation.start(),
        };
        actors.insert(conversation_id.clone(), addr.clone());
        ConversationHandle::new(addr)
    }

    /// The running actor of a conversation, if there is one (never starts one).
    pub fn running(&self, conversation_id: &ConversationId) -> Option<ConversationHandle> {
        self.actors()
            .get(conversation_id)
            .filter(|addr| addr.connected())
            .map(|addr| ConversationHandle::new(addr.clone()))
    }

    /// Queues `op`, restarting the actor once if it has just stopped. An overloaded
    /// conversation answers `op` with `unavailable` and a `retry_after_ms`.
    pub fn enqueue(&self, node: &Node, conversation_id: &ConversationId, op: ConversationOp) {
        let op = match self.conversation(node, conversation_id).enqueue(op) {
            Ok(()) => return,
            Err(Refused::Full(op)) => return refuse_overloaded(node, *op),
            Err(Refused::Stopped(op)) => op,
        };
        self.forget_dead(conversation_id);
        match self.conversation(node, conversation_id).enqueue(*op) {
            Ok(()) => {}
            Err(Refused::Full(op)) => refuse_overloaded(node, *op),
            Err(Refused::Stopped(op)) => op.fail(crate::OpError::unavailable(
                "conversation actor unavailable, retry",
            )),
        }
    }

    /// Removes `addr` if it is the registered actor of the conversation. Returns whether it was.
    pub fn forget(&self, conversation_id: &ConversationId, addr: &Addr<Conversation>) -> bool {
        let mut actors = self.actors();
        match actors.get(conversation_id) {
            Some(current) if current == addr => {
                actors.remove(conversation_id);
                true
            }
            _ => false,
        }
    }

    fn forget_dead(&self, conversation_id: &ConversationId) {
        let mut actors = self.actors();
        if actors
            .get(conversation_id)
            .is_some_and(|addr| !addr.connected())
        {
            actors.remove(conversation_id);
        }
    }

    pub fn active(&self) -> usize {
        self.actors().len()
    }

    /// How many conversation actors have a batch in flight or operations queued. An actor
    /// that stopped counts as idle.
    pub async fn busy(&self) -> usize {
        let addrs: Vec<Addr<Conversation>> = self.actors().values().cloned().collect();
        let answers =
            futures::future::join_all(addrs.iter().map(|addr| addr.send(CheckIdle))).await;
        answers
            .into_iter()
            .filter(|answer| matches!(answer, Ok(false)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::thread::ThreadId;

    use tokio::sync::oneshot;
    use wire::UserId;

    use crate::conversation::ThreadOf;
    use crate::node::Limits;
    use crate::session::{DetachedSession, SessionHandle};
    use crate::testing::Harness;

    /// A session made on `arbiter`'s thread (as a connection's is on its HTTP worker), and that
    /// thread.
    async fn session_on(
        arbiter: &actix::Arbiter,
        harness: &Harness,
        user: &str,
    ) -> ((SessionHandle, DetachedSession), ThreadId) {
        let (made, answer) = oneshot::channel();
        let (user, metrics) = (UserId::new(user), harness.node.metrics().clone());
        arbiter.spawn(async move {
            let session = SessionHandle::detached(user, 16, metrics);
            let _ = made.send((session, std::thread::current().id()));
        });
        answer.await.expect("made on the arbiter")
    }

    async fn thread_of_actor(harness: &Harness, conversation: &wire::ConversationId) -> ThreadId {
        let handle = harness
            .node
            .supervisor()
            .conversation(&harness.node, conversation);
        handle
            .addr()
            .send(ThreadOf)
            .await
            .expect("the actor answers")
    }

    /// Issue #14: a conversation actor started from a thread none of the conversation's local
    /// sessions runs on (the router's, for a bus event) runs on a local session's arbiter; one
    /// started where a local session runs stays there.
    #[actix_rt::test]
    async fn an_actor_starts_near_its_conversations_local_sessions() {
        let harness = Harness::new(Limits::default());
        let worker = actix::Arbiter::new();
        let here = std::thread::current().id();

        let away = harness.group("away", &["alice", "bob"]);
        let both = harness.group("both", &["alice", "bob"]);
        let ((bob, _bob_out), worker_thread) = session_on(&worker, &harness, "bob").await;
        let (alice, _alice_out) =
            SessionHandle::detached(UserId::new("alice"), 16, harness.node.metrics().clone());
        let registry = harness.node.registry();
        registry
            .register_session(&bob, &[away.clone(), both.clone()], None)
            .await
            .unwrap();
        registry
            .register_session(&alice, std::slice::from_ref(&both), None)
            .await
            .unwrap();
        assert_ne!(worker_thread, here);
        assert_eq!(
            thread_of_actor(&harness, &away).await,
            worker_thread,
            "only bob's session, on the worker"
        );
        assert_eq!(
            thread_of_actor(&harness, &both).await,
            here,
            "alice's session runs here"
        );

        let nobody = harness.group("nobody", &["carol"]);
        assert_eq!(thread_of_actor(&harness, &nobody).await, here);
        worker.stop();
    }
}
