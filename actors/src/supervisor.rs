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

    /// The running actor of a conversation, started if there is none (or it failed).
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
        let addr = Conversation::new(node.clone(), conversation_id.clone()).start();
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
