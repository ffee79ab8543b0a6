//! Per-client bookkeeping of what arrived, per conversation, to check the protocol's delivery
//! guarantees: within a session, `message.new` of one conversation arrives once and in seq
//! order; across reconnects, `sync` fills exactly what was missed.

use std::collections::{BTreeSet, HashMap};

use wire::ConversationId;

/// What happened to one arriving seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// New and next in line (or filling a hole).
    Applied,
    /// New, but more than one above the previous live seq of this session: `sync` should
    /// fill the hole.
    AppliedAfterGap,
    /// Received live twice in the same session: a protocol violation.
    Duplicate,
    /// Received live below the last live seq of the session: a protocol violation.
    OutOfOrder,
    /// Already had it from the other source (live vs `sync`): fine.
    Overlap,
}

#[derive(Debug, Default, Clone)]
struct ConversationTrack {
    /// Highest seq with every seq up to it received.
    applied: u64,
    /// Received seqs above `applied` (there is a hole below them).
    ahead: BTreeSet<u64>,
    /// Last seq received live in the current session (0: none yet).
    live_last: u64,
}

impl ConversationTrack {
    fn has(&self, seq: u64) -> bool {
        seq <= self.applied || self.ahead.contains(&seq)
    }

    fn insert(&mut self, seq: u64) {
        if seq == self.applied + 1 {
            self.applied = seq;
            while self.ahead.remove(&(self.applied + 1)) {
                self.applied += 1;
            }
        } else {
            self.ahead.insert(seq);
        }
    }
}

/// One simulated user's view of its conversations.
#[derive(Debug, Default)]
pub struct Tracker {
    conversations: HashMap<ConversationId, ConversationTrack>,
}

impl Tracker {
    /// Starts tracking a conversation whose messages up to `seq` the user does not care about.
    pub fn watch(&mut self, conversation_id: &ConversationId, seq: u64) {
        let track = self
            .conversations
            .entry(conversation_id.clone())
            .or_default();
        if track.applied < seq && track.ahead.is_empty() {
            track.applied = seq;
        }
    }

    /// The user was added to the conversation (`member.joined`): its messages up to `seq`
    /// (the event's `last_seq`) are history; only later ones are expected live.
    pub fn adopt(&mut self, conversation_id: &ConversationId, seq: u64) {
        let track = self
            .conversations
            .entry(conversation_id.clone())
            .or_default();
        if track.applied >= seq {
            return;
        }
        track.applied = seq;
        track.ahead.retain(|&ahead| ahead > seq);
        while track.ahead.remove(&(track.applied + 1)) {
            track.applied += 1;
        }
    }

    /// A new session starts: live order is checked afresh.
    pub fn new_session(&mut self) {
        for track in self.conversations.values_mut() {
            track.live_last = 0;
        }
    }

    /// A `message.new` arrived on the current session.
    pub fn live(&mut self, conversation_id: &ConversationId, seq: u64) -> Arrival {
        let track = self
            .conversations
            .entry(conversation_id.clone())
            .or_default();
        if track.live_last != 0 && seq == track.live_last {
            return Arrival::Duplicate;
        }
        if track.live_last != 0 && seq < track.live_last {
            return Arrival::OutOfOrder;
        }
        let gap = track.live_last != 0 && seq > track.live_last + 1;
        track.live_last = seq;
        if track.has(seq) {
            return Arrival::Overlap;
        }
        track.insert(seq);
        if gap {
            Arrival::AppliedAfterGap
        } else {
            Arrival::Applied
        }
    }

    /// A message arrived in a `sync` or `history.get` reply.
    pub fn recovered(&mut self, conversation_id: &ConversationId, seq: u64) -> Arrival {
        let track = self
            .conversations
            .entry(conversation_id.clone())
            .or_default();
        if track.has(seq) {
            return Arrival::Overlap;
        }
        track.insert(seq);
        Arrival::Applied
    }

    /// `conversation_id → applied seq`, the argument of `sync`.
    pub fn sync_points(&self) -> Vec<(ConversationId, u64)> {
        self.conversations
            .iter()
            .map(|(id, track)| (id.clone(), track.applied))
            .collect()
    }

    pub fn applied(&self, conversation_id: &ConversationId) -> u64 {
        self.conversations
            .get(conversation_id)
            .map_or(0, |track| track.applied)
    }

    pub fn conversation_ids(&self) -> Vec<ConversationId> {
        self.conversations.keys().cloned().collect()
    }

    /// How many of `acked` the user lacks in a conversation, and the lowest of them (None:
    /// it lacks none). A hole that is no acked seq (a failed send's tombstone) is not counted:
    /// the server delivers it to nobody live.
    pub fn lacking(
        &self,
        conversation_id: &ConversationId,
        acked: &BTreeSet<u64>,
    ) -> Option<(u64, u64)> {
        let track = self.conversations.get(conversation_id)?;
        let mut missing = acked
            .range(track.applied + 1..)
            .filter(|seq| !track.ahead.contains(seq));
        let first = *missing.next()?;
        Some((1 + missing.count() as u64, first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> ConversationId {
        ConversationId::new("c")
    }

    #[test]
    fn only_acked_seqs_the_user_lacks_count() {
        let mut tracker = Tracker::default();
        for seq in [1, 2, 4, 5, 7] {
            tracker.live(&conversation(), seq);
        }
        // 3 is a failed send's tombstone (never acked); 6 and 8 were acked and not received.
        let acked = BTreeSet::from([1, 2, 4, 5, 6, 7, 8]);
        assert_eq!(tracker.lacking(&conversation(), &acked), Some((2, 6)));
        tracker.recovered(&conversation(), 6);
        tracker.recovered(&conversation(), 8);
        assert_eq!(tracker.lacking(&conversation(), &acked), None);
        assert_eq!(tracker.lacking(&ConversationId::new("other"), &acked), None);
    }

    #[test]
    fn in_order_live_messages_apply() {
        let mut tracker = Tracker::default();
        tracker.watch(&conversation(), 0);
        for seq in 1..=3 {
            assert_eq!(tracker.live(&conversation(), seq), Arrival::Applied);
        }
        assert_eq!(tracker.applied(&conversation()), 3);
    }

    #[test]
    fn duplicates_and_reordering_are_caught() {
        let mut tracker = Tracker::default();
        tracker.live(&conversation(), 1);
        tracker.live(&conversation(), 2);
        assert_eq!(tracker.live(&conversation(), 2), Arrival::Duplicate);
        assert_eq!(tracker.live(&conversation(), 1), Arrival::OutOfOrder);
    }

    #[test]
    fn a_gap_is_filled_by_sync() {
        let mut tracker = Tracker::default();
        tracker.live(&conversation(), 1);
        assert_eq!(tracker.live(&conversation(), 4), Arrival::AppliedAfterGap);
        assert_eq!(tracker.applied(&conversation()), 1);
        assert_eq!(tracker.recovered(&conversation(), 2), Arrival::Applied);
        assert_eq!(tracker.recovered(&conversation(), 3), Arrival::Applied);
        assert_eq!(tracker.recovered(&conversation(), 4), Arrival::Overlap);
        assert_eq!(tracker.applied(&conversation()), 4);
    }

    #[test]
    fn after_reconnect_live_and_sync_may_overlap() {
        let mut tracker = Tracker::default();
        tracker.live(&conversation(), 1);
        tracker.new_session();
        assert_eq!(tracker.live(&conversation(), 3), Arrival::Applied);
        assert_eq!(tracker.applied(&conversation()), 1);
        assert_eq!(tracker.recovered(&conversation(), 2), Arrival::Applied);
        assert_eq!(tracker.recovered(&conversation(), 3), Arrival::Overlap);
        assert_eq!(tracker.live(&conversation(), 4), Arrival::Applied);
        assert_eq!(tracker.applied(&conversation()), 4);
    }

    #[test]
    fn a_member_added_expects_live_only_what_follows_its_member_joined() {
        let mut tracker = Tracker::default();
        tracker.watch(&conversation(), 0);
        // Seq 3 reached the new member live before its `member.joined` said "history up to 2".
        assert_eq!(tracker.live(&conversation(), 3), Arrival::Applied);
        tracker.adopt(&conversation(), 2);
        assert_eq!(tracker.applied(&conversation()), 3);
        tracker.adopt(&conversation(), 1);
        assert_eq!(tracker.applied(&conversation()), 3, "never lowered");
        assert_eq!(tracker.live(&conversation(), 4), Arrival::Applied);
    }
}
