//! Fan-out's repairs from the shared message cache (and the store): a gap that a publish this node missed left
//! (bridged after the gap wait, in `mod.rs`), and the catch-up after this node's bus lost its
//! connection: what was published meanwhile never arrives, and a client would learn of it only
//! from a later message of the same conversation, or not at all (chaos run, 2026-12-03: acked
//! messages connected clients got only from their final `sync`).

use std::collections::BTreeMap;
use tokio::time::Instant;

use actix::{ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use bytestring::ByteString;
use ports::MessageQuery;
use wire::log::MessageRecord;
use wire::{ConversationId, Seq};

use super::Conversation;
use crate::node::Node;

/// Seqs one repair or catch-up reads from the cache at most.
pub(super) const MAX_REPAIR: u64 = 256;

/// This node's bus subscribed the conversation again after losing its connection: deliver
/// what was accepted since the last delivery, and reload the record and messages before the
/// next batch (changes made elsewhere meanwhile were announced on the lost connection).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct CatchUp;

impl Handler<CatchUp> for Conversation {
    type Result = ();

    fn handle(&mut self, _message: CatchUp, ctx: &mut Context<Self>) {
        self.record_stale = true;
        self.window_stale = true;
        // A subscription that started meanwhile moves the position first (its sessions synced
        // up to its floor), else a later event would move it back under what this delivers.
        let (true, Some(from)) = (self.follow_subscription(), self.next_delivery) else {
            return; // nothing delivered yet, or the floor is pending: no position yet
        };
        let node = self.node.clone();
        let conversation_id = self.conversation_id.clone();
        let fetch = async move {
            let last = match node.ports().sequencer.last_seq(&conversation_id).await {
                Ok(last) => last,
                Err(error) => {
                    tracing::warn!(conversation_id = %conversation_id, error = %error, "catch-up after resubscribing failed");
                    return Vec::new();
                }
            };
            if last < from {
                return Vec::new();
            }
            let to = Seq(last.0.min(from.0 + MAX_REPAIR - 1));
            accepted_messages(&node, &conversation_id, from, to).await
        };
        ctx.spawn(fetch.into_actor(self).map(|found, act, ctx| {
            for record in found {
                act.buffer_message(record);
            }
            act.drain_in_order();
            // Seqs still missing between those found are left to the gap wait: they may be in
            // flight, not lost.
            act.arm_gap_timer(ctx);
        }));
    }
}

/// The accepted messages among `from..=to` that the shared cache holds (one read per seq: a
/// range read fails as a whole when one is missing), then those the store holds of the seqs
/// still missing (a batch whose node died after the log append never cached them; in durable
/// mode the store has them once ingest wrote them).
pub(super) async fn accepted_messages(
    node: &Node,
    conversation_id: &ConversationId,
    from: Seq,
    to: Seq,
) -> Vec<MessageRecord> {
    let ports = node.ports();
    let mut found = BTreeMap::new();
    for seq in from.0..=to.0 {
        if let Ok(Some(records)) = ports.cache.range(conversation_id, Seq(seq), Seq(seq)).await {
            found.extend(
                records
                    .into_iter()
                    .map(|record| (record.message.seq, record)),
            );
        }
    }
    if found.len() as u64 == to.0 - from.0 + 1 {
        return found.into_values().collect();
    }
    let query = MessageQuery {
        after_seq: Some(Seq(from.0 - 1)),
        before_seq: Some(to.next()),
        limit: (to.0 - from.0 + 1) as usize,
    };
    match ports.store.messages(conversation_id, query).await {
        Ok(stored) => {
            for record in stored {
                found.entry(record.message.seq).or_insert(record);
            }
        }
        Err(error) => {
            tracing::warn!(conversation_id = %conversation_id, error = %error, "reading missed messages from the store failed");
        }
    }
    found.into_values().collect()
}

impl Conversation {
    /// Buffers a message read from the cache for in-order fan-out, unless it was delivered.
    pub(super) fn buffer_message(&mut self, record: MessageRecord) {
        let seq = record.message.seq;
        if self.next_delivery.is_some_and(|next| seq < next) {
            return;
        }
        let event = wire::events::ServerEvent::MessageNew {
            message: record.message,
        };
        let frame = ByteString::from(wire::frames::encode_event(&event));
        if self.reorder.is_empty() {
            // Fan-out waits from now for what is missing before it.
            self.stalled_since = Instant::now();
        }
        self.reorder.entry(seq).or_insert(frame);
    }
}
