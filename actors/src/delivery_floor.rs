//! Where a new subscription's fan-out starts: the delivery floor.
//!
//! When a node subscribes to a conversation (its first local session in it), every seq
//! published afterwards reaches it; the seqs before are the sessions' `sync`. The floor is the
//! last seq `sync` can already answer: seqs above it reach the node's sessions live. It is not
//! simply the last allocated seq: a batch may be in flight (its seqs allocated, its log append
//! not finished) on this node or another one. Those seqs are published only after the
//! subscription took effect, yet they are not in the shared cache when the session syncs, so a
//! floor at the last allocated seq would drop them from both paths.
//!
//! A batch puts its messages in the shared cache before it publishes them, so the floor is the
//! seq before the first one missing from the cache among the recent allocations. Seqs missing
//! below the oldest cached one were trimmed or expired (old messages); a conversation with
//! nothing cached among its last allocations is taken as quiet (floor = last allocated): its
//! cache expired (or it has no message yet). A batch in flight in exactly such a conversation
//! while the subscription starts is the one case left to `sync` (the client's next one, after
//! the next message shows it a gap or after a reconnect).

use ports::{MessageCache, PortError, Sequencer};
use wire::{ConversationId, Seq};

/// One subscription of this node to a conversation (from its first local session to its last):
/// where its fan-out starts and how far it went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subscription {
    pub(crate) generation: u64,
    /// [`delivery_floor`] once known.
    pub(crate) floor: Option<Seq>,
    /// The highest seq fanned out to the subscription's sessions.
    delivered: Seq,
}

impl Subscription {
    pub(crate) fn new(generation: u64) -> Self {
        Self {
            generation,
            floor: None,
            delivered: Seq::ZERO,
        }
    }

    /// Where an actor starting (or following this subscription) goes on from: past the floor
    /// and past whatever another actor of this conversation already delivered. `None` while the
    /// floor is being determined.
    pub(crate) fn position(&self) -> Option<Seq> {
        self.floor.map(|floor| floor.max(self.delivered))
    }

    /// Whether `seq` may go to the sessions: only above every seq delivered before. Within a
    /// session, `message.new` of a conversation arrives once and in seq order (PROTOCOL "Ordering and
    /// recovery"),
    /// even when two actors of the conversation overlap on this node (a retired one draining
    /// its mailbox while its successor starts from an older floor) or an actor starts below
    /// what was delivered: a lower seq is a re-delivery or was skipped as missing, and `sync`
    /// is where the client gets the latter.
    pub(crate) fn admit(&mut self, seq: Seq) -> bool {
        if seq <= self.delivered {
            return false;
        }
        self.delivered = seq;
        true
    }
}

/// How many of the latest allocated seqs are looked at (one cache read). Only the batches in
/// flight matter, one per node at a time per conversation.
pub const IN_FLIGHT_WINDOW: u64 = 32;

/// The delivery floor of a conversation whose subscription just took effect.
pub async fn delivery_floor(
    sequencer: &dyn Sequencer,
    cache: &dyn MessageCache,
    conversation_id: &ConversationId,
) -> Result<Seq, PortError> {
    let last = sequencer.last_seq(conversation_id).await?;
    if last == Seq::ZERO {
        return Ok(last);
    }
    let from = Seq(last.0.saturating_sub(IN_FLIGHT_WINDOW - 1).max(1));
    match cache.held(conversation_id, from, last).await {
        Ok(records) => {
            let held: Vec<Seq> = records.iter().map(|record| record.message.seq).collect();
            Ok(floor_below_first_missing(&held, last))
        }
        Err(error) => {
            tracing::warn!(conversation_id = %conversation_id, error = %error,
                "reading the message cache for a delivery floor failed; starting at the last allocated seq");
            Ok(last)
        }
    }
}

/// `held`: the cached seqs among the window ending at `last`, ascending. The floor is the seq
/// before the first gap above the oldest cached seq; `last` when nothing is cached or nothing
/// is missing.
fn floor_below_first_missing(held: &[Seq], last: Seq) -> Seq {
    let Some(&oldest) = held.first() else {
        return last;
    };
    let mut expected = oldest;
    for &seq in held {
        if seq != expected {
            break;
        }
        expected = seq.next();
    }
    Seq(expected.0 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(values: &[u64]) -> Vec<Seq> {
        values.iter().copied().map(Seq).collect()
    }

    #[test]
    fn everything_cached_starts_after_the_last_allocated_seq() {
        assert_eq!(
            floor_below_first_missing(&seqs(&[8, 9, 10]), Seq(10)),
            Seq(10)
        );
    }

    #[test]
    fn seqs_in_flight_at_the_top_are_above_the_floor() {
        assert_eq!(
            floor_below_first_missing(&seqs(&[8, 9, 10]), Seq(12)),
            Seq(10)
        );
    }

    #[test]
    fn a_seq_in_flight_below_a_cached_one_is_above_the_floor() {
        // Another node's batch (seq 9) is still appending; seq 10's batch already finished.
        assert_eq!(
            floor_below_first_missing(&seqs(&[7, 8, 10]), Seq(10)),
            Seq(8)
        );
    }

    #[test]
    fn seqs_trimmed_below_the_oldest_cached_one_are_old() {
        assert_eq!(
            floor_below_first_missing(&seqs(&[30, 31]), Seq(31)),
            Seq(31)
        );
    }

    #[test]
    fn nothing_cached_is_a_quiet_conversation() {
        assert_eq!(floor_below_first_missing(&[], Seq(40)), Seq(40));
    }
}
