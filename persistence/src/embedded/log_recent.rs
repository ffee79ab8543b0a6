//! [`RecentEvents`]: the embedded log's last durable events, kept in memory as they were
//! appended, so consumers at the end of the log (every in-process consumer, most of the time)
//! take them from here instead of reading the segment file and decoding each record again (in a
//! standalone node two consumers decoded every message, and a third skipped it by its topic).
//!
//! The writer adds a group's events after its fsync and before it publishes the group's end, so
//! whatever a consumer sees below the end is here or in the files; events leave from the oldest
//! once the kept ones' encoded size passes a bound. A consumer whose next offset is older than
//! what is kept reads the files, as after a restart (the memory starts empty).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use ports::{LogPosition, LogRecord};
use wire::log::LogEvent;

use super::log_consumer::PARTITION;

/// Encoded bytes of events kept by default (their decoded size is of the same order).
pub(crate) const RECENT_BYTES: usize = 8 << 20;

/// One appended event, with what the consumers filter on.
struct Recent {
    topic: &'static str,
    encoded_bytes: usize,
    event: Arc<LogEvent>,
}

struct Kept {
    /// The offset of the first kept event (the end of the log while none is kept).
    first: u64,
    events: VecDeque<Recent>,
    bytes: usize,
}

impl Kept {
    /// Drops the oldest event; false when none is kept.
    fn pop_oldest(&mut self) -> bool {
        let Some(oldest) = self.events.pop_front() else {
            return false;
        };
        self.bytes -= oldest.encoded_bytes;
        self.first += 1;
        true
    }
}

pub(crate) struct RecentEvents {
    max_bytes: usize,
    kept: Mutex<Kept>,
}

/// What [`RecentEvents::read`] found for a consumer.
pub(crate) struct RecentRead {
    pub(crate) records: Vec<LogRecord>,
    /// The consumer's next offset.
    pub(crate) next: u64,
}

impl RecentEvents {
    /// Nothing kept yet; the log's next event gets offset `end`.
    pub(crate) fn new(max_bytes: usize, end: u64) -> Self {
        Self {
            max_bytes,
            kept: Mutex::new(Kept {
                first: end,
                events: VecDeque::new(),
                bytes: 0,
            }),
        }
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps a durable group's events, the first at offset `start`, each with its encoded size;
    /// the oldest go beyond the bound. A group that does not follow the kept events (none
    /// should) replaces them.
    pub(crate) fn push(&self, start: u64, group: impl IntoIterator<Item = (LogEvent, usize)>) {
        let mut kept = self.kept();
        if kept.first + kept.events.len() as u64 != start {
            kept.events.clear();
            kept.bytes = 0;
            kept.first = start;
        }
        for (event, encoded_bytes) in group {
            kept.bytes += encoded_bytes;
            kept.events.push_back(Recent {
                topic: event.body.topic(),
                encoded_bytes,
                event: Arc::new(event),
            });
        }
        while kept.bytes > self.max_bytes && kept.pop_oldest() {}
    }

    /// Drops the events before `offset` (pruned from the files).
    pub(crate) fn forget_before(&self, offset: u64) {
        let mut kept = self.kept();
        while kept.first < offset && kept.pop_oldest() {}
    }

    /// Up to `max` records of `topics` from `offset` on and before `end`, and the offset after
    /// the last event looked at; `None` when `offset` is older than what is kept (read the
    /// files). The events are copied out of the lock, which the writer takes for every group.
    pub(crate) fn read(
        &self,
        topics: &[String],
        offset: u64,
        end: u64,
        max: usize,
    ) -> Option<RecentRead> {
        let mut found = Vec::new();
        let mut next = offset;
        {
            let kept = self.kept();
            if offset < kept.first {
                return None;
            }
            let from = usize::try_from(offset - kept.first).unwrap_or(usize::MAX);
            for recent in kept.events.range(from.min(kept.events.len())..) {
                if next >= end || found.len() >= max {
                    break;
                }
                if topics.iter().any(|topic| topic == recent.topic) {
                    found.push((next, Arc::clone(&recent.event)));
                }
                next += 1;
            }
        }
        let records = found
            .into_iter()
            .map(|(offset, event)| LogRecord {
                position: LogPosition {
                    partition: PARTITION,
                    offset,
                },
                event: Arc::unwrap_or_clone(event),
            })
            .collect();
        Some(RecentRead { records, next })
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use wire::log::LogEventBody;
    use wire::{ConversationId, MessageId, Seq, UserId};

    use super::*;

    fn stored(seq: u64) -> LogEvent {
        LogEvent::new(
            format!("e{seq}"),
            DateTime::from_timestamp(0, 0).expect("epoch"),
            LogEventBody::MessageStored {
                conversation_id: ConversationId::new("c"),
                message_id: MessageId::new(format!("m{seq}")),
                seq: Seq(seq),
                sender_id: UserId::new("u"),
            },
        )
    }

    fn offsets(read: &RecentRead) -> Vec<u64> {
        read.records
            .iter()
            .map(|record| record.position.offset)
            .collect()
    }

    #[test]
    fn a_consumer_reads_its_topics_up_to_the_end_it_saw_and_older_offsets_go_to_the_files() {
        let recent = RecentEvents::new(100, 10);
        recent.push(10, (10..16).map(|seq| (stored(seq), 10)));
        let delivered = vec![wire::log::topics::MESSAGE_DELIVERED.to_owned()];
        let read = recent.read(&delivered, 12, 15, 100).expect("kept");
        assert_eq!(offsets(&read), vec![12, 13, 14], "not past the end it saw");
        assert_eq!(read.next, 15);
        assert_eq!(read.records[0].event, stored(12));
        let read = recent.read(&delivered, 10, 16, 2).expect("kept");
        assert_eq!(
            (offsets(&read), read.next),
            (vec![10, 11], 12),
            "at most max"
        );
        let sent = vec![wire::log::topics::MESSAGE_SENT.to_owned()];
        let read = recent.read(&sent, 10, 16, 100).expect("kept");
        assert_eq!(
            (offsets(&read), read.next),
            (vec![], 16),
            "other topics skipped"
        );
        assert!(
            recent.read(&delivered, 9, 16, 100).is_none(),
            "older: files"
        );
    }

    #[test]
    fn the_oldest_events_leave_beyond_the_bound_and_a_gap_starts_over() {
        let recent = RecentEvents::new(30, 0);
        recent.push(0, (0..5).map(|seq| (stored(seq), 10)));
        let delivered = vec![wire::log::topics::MESSAGE_DELIVERED.to_owned()];
        assert!(recent.read(&delivered, 1, 5, 100).is_none(), "0 and 1 left");
        let read = recent.read(&delivered, 2, 5, 100).expect("kept");
        assert_eq!(offsets(&read), vec![2, 3, 4]);
        recent.push(7, [(stored(7), 10), (stored(8), 10)]);
        assert!(
            recent.read(&delivered, 5, 9, 100).is_none(),
            "not kept: files"
        );
        let read = recent.read(&delivered, 7, 9, 100).expect("kept");
        assert_eq!(offsets(&read), vec![7, 8]);
        recent.forget_before(8);
        assert!(recent.read(&delivered, 7, 9, 100).is_none(), "pruned");
        let read = recent.read(&delivered, 8, 9, 100).expect("kept");
        assert_eq!(offsets(&read), vec![8]);
    }
}
