//! A conversation actor's window of recent messages: the newest ones (contiguous by seq, at most
//! `limits.recent_messages`) and the versions this actor made of older ones, with an estimate
//! of the memory they hold (reported as `parley_conversation_window_bytes`).

use std::collections::{BTreeMap, VecDeque};
use std::mem::size_of;
use std::ops::RangeInclusive;
use std::sync::Arc;

use wire::log::MessageRecord;
use wire::{MessageId, Seq};

#[derive(Clone)]
pub struct Window {
    /// Newest messages, ascending and contiguous by seq.
    recent: VecDeque<Arc<MessageRecord>>,
    /// Versions this actor made of messages older than `recent` (at most `capacity`, the
    /// oldest seqs dropped first): the store has them only once ingest wrote them, so the
    /// next change of the same message, and reads, must start from these.
    changed_before: BTreeMap<Seq, Arc<MessageRecord>>,
    capacity: usize,
    /// Estimated heap bytes of every record held (see [`estimated_bytes`]).
    bytes: usize,
}

impl Window {
    pub fn new(capacity: usize) -> Self {
        Self {
            recent: VecDeque::new(),
            changed_before: BTreeMap::new(),
            capacity,
            bytes: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages held (the recent ones and older changed versions).
    pub fn len(&self) -> usize {
        self.recent.len() + self.changed_before.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    pub fn newest(&self) -> Option<&MessageRecord> {
        self.recent.back().map(Arc::as_ref)
    }

    /// Appends the next message (seq one above the newest), dropping the oldest beyond the
    /// capacity. A message that does not follow the newest starts the window afresh.
    pub fn push_newest(&mut self, record: MessageRecord) {
        let follows = self
            .newest()
            .is_some_and(|newest| newest.message.seq.next() == record.message.seq);
        if !follows {
            self.clear_recent();
        }
        self.bytes += estimated_bytes(&record);
        self.recent.push_back(Arc::new(record));
        while self.recent.len() > self.capacity {
            self.pop_oldest();
        }
    }

    /// Stores a new version of a message at or below the newest seq.
    pub fn put_version(&mut self, record: MessageRecord) {
        // Counted first: the trim below may drop this very record (the oldest seq).
        self.bytes += estimated_bytes(&record);
        let record = Arc::new(record);
        let replaced = match self.slot(record.message.seq) {
            Some(slot) => Some(std::mem::replace(&mut self.recent[slot], record)),
            None => {
                let replaced = self.changed_before.insert(record.message.seq, record);
                while self.changed_before.len() > self.capacity {
                    if let Some((_, dropped)) = self.changed_before.pop_first() {
                        self.bytes -= estimated_bytes(&dropped);
                    }
                }
                replaced
            }
        };
        if let Some(replaced) = replaced {
            self.bytes -= estimated_bytes(&replaced);
        }
    }

    /// Forgets every message up to `through` (retention purged them).
    pub fn purge(&mut self, through: Seq) {
        while self
            .recent
            .front()
            .is_some_and(|oldest| oldest.message.seq <= through)
        {
            self.pop_oldest();
        }
        let kept = self.changed_before.split_off(&through.next());
        for dropped in std::mem::replace(&mut self.changed_before, kept).values() {
            self.bytes -= estimated_bytes(dropped);
        }
    }

    /// Drops the recent messages (the older changed versions stay).
    pub fn clear_recent(&mut self) {
        for dropped in self.recent.drain(..) {
            self.bytes -= estimated_bytes(&dropped);
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.clear_recent();
        self.changed_before.clear();
        self.bytes = 0;
    }

    /// The recent message at `seq`, if the window covers it.
    pub fn recent_at(&self, seq: Seq) -> Option<&MessageRecord> {
        self.slot(seq).map(|slot| self.recent[slot].as_ref())
    }

    /// The recent messages `from..=to` when the window covers both ends.
    pub fn recent_range(&self, from: Seq, to: Seq) -> Option<Vec<wire::Message>> {
        let (first, last) = (self.slot(from)?, self.slot(to)?);
        Some(
            (first..=last)
                .map(|slot| self.recent[slot].message.clone())
                .collect(),
        )
    }

    /// The version this window holds of a message, recent or older.
    pub fn find(&self, message_id: &MessageId) -> Option<&MessageRecord> {
        self.recent
            .iter()
            .chain(self.changed_before.values())
            .find(|record| &record.message.message_id == message_id)
            .map(Arc::as_ref)
    }

    /// Every record held with a seq in `seqs`: older changed versions first, then recent ones.
    pub fn records_in(&self, seqs: RangeInclusive<Seq>) -> impl Iterator<Item = &MessageRecord> {
        self.changed_before
            .range(seqs.clone())
            .map(|(_, record)| record.as_ref())
            .chain(
                self.recent
                    .iter()
                    .map(Arc::as_ref)
                    .filter(move |record| seqs.contains(&record.message.seq)),
            )
    }

    fn pop_oldest(&mut self) {
        if let Some(dropped) = self.recent.pop_front() {
            self.bytes -= estimated_bytes(&dropped);
        }
    }

    fn slot(&self, seq: Seq) -> Option<usize> {
        let first = self.recent.front()?.message.seq;
        if seq < first {
            return None;
        }
        let slot = (seq.0 - first.0) as usize;
        (slot < self.recent.len()).then_some(slot)
    }
}

/// The heap a record held in a window takes, roughly: the shared allocation and the strings
/// it owns (ids, text, reactions, attachments). An estimate for the metric, not an allocator
/// count: it leaves out allocator rounding.
pub fn estimated_bytes(record: &MessageRecord) -> usize {
    let message = &record.message;
    let reply_to = message.reply_to.as_ref().map_or(0, |id| id.as_str().len());
    let forwarded = message.forwarded_from.as_ref().map_or(0, |from| {
        from.conversation_id.as_str().len() + from.message_id.as_str().len()
    });
    let reactions: usize = message
        .reactions
        .iter()
        .map(|(emoji, users)| {
            emoji.len()
                + users
                    .iter()
                    .map(|user| user.as_str().len() + 24)
                    .sum::<usize>()
                + 64
        })
        .sum();
    let attachments = message.attachments.len() * size_of::<wire::AttachmentRef>();
    // The `Arc`'s two counts and the record itself.
    2 * size_of::<usize>()
        + size_of::<MessageRecord>()
        + message.message_id.as_str().len()
        + message.conversation_id.as_str().len()
        + message.sender_id.as_str().len()
        + message.client_msg_id.as_str().len()
        + message.text.len()
        + reply_to
        + forwarded
        + reactions
        + attachments
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{ClientMsgId, ConversationId, Message, UserId};

    fn record(seq: u64, text: &str) -> MessageRecord {
        MessageRecord {
            message: Message {
                message_id: MessageId::from(format!("m{seq}")),
                conversation_id: ConversationId::from("c".to_owned()),
                seq: Seq(seq),
                sender_id: UserId::from("u".to_owned()),
                client_msg_id: ClientMsgId::from(format!("k{seq}")),
                text: text.to_owned(),
                reply_to: None,
                forwarded_from: None,
                reactions: Default::default(),
                created_at: wire::Timestamp::default(),
                edited_at: None,
                deleted: false,
                attachments: Vec::new(),
            },
            version: 1,
        }
    }

    fn recomputed(window: &Window) -> usize {
        window
            .records_in(Seq(0)..=Seq(u64::MAX))
            .map(estimated_bytes)
            .sum()
    }

    #[test]
    fn the_byte_estimate_follows_every_change_of_the_window() {
        let mut window = Window::new(3);
        for seq in 1..=5 {
            window.push_newest(record(seq, &"x".repeat(seq as usize * 10)));
            assert_eq!(window.bytes(), recomputed(&window));
        }
        assert_eq!(window.len(), 3);
        window.put_version(record(4, "edited"));
        window.put_version(record(1, "an older message, changed"));
        assert_eq!(window.len(), 4);
        assert_eq!(window.bytes(), recomputed(&window));
        window.purge(Seq(3));
        assert_eq!(window.len(), 2);
        assert_eq!(window.bytes(), recomputed(&window));
        window.push_newest(record(9, "a gap starts the window afresh"));
        assert_eq!(window.len(), 1);
        assert_eq!(window.bytes(), recomputed(&window));
        window.clear();
        assert_eq!((window.len(), window.bytes()), (0, 0));
    }

    #[test]
    fn a_new_version_of_the_oldest_message_dropped_at_once_is_not_counted() {
        let mut window = Window::new(1);
        window.push_newest(record(5, "newest"));
        window.put_version(record(3, "short"));
        window.put_version(record(2, &"a long text ".repeat(100)));
        assert_eq!(window.len(), 2, "one recent message and one older version");
        assert_eq!(window.bytes(), recomputed(&window));
    }

    #[test]
    fn a_longer_text_is_estimated_larger() {
        assert!(estimated_bytes(&record(1, &"x".repeat(500))) > estimated_bytes(&record(1, "x")));
        assert!(estimated_bytes(&record(1, "x")) > size_of::<MessageRecord>());
    }
}
