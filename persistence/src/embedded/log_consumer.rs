//! [`EmbeddedLogConsumer`]: one consumer of a group over some topics of an [`super::EmbeddedLog`].
//!
//! The consumer keeps its own cursor (the next offset to look at) and where that offset is in
//! which segment file, and reads the files directly up to the end offset the writer published
//! (everything before it is fsync'd and whole). Records whose topic is not in its list are
//! skipped, their topic read from the body's `type` without decoding the rest
//! ([`wire::log::topic_of_serialized`]), as a Kafka consumer never sees other topics' records
//! (even one whose rest would not decode: the consumers of its topic meet that); a record
//! without a known type is decoded, so one that is not a log event fails every consumer's
//! poll. Committing stores `highest committed offset + 1` for the group
//! ([`super::log_offsets`]); a new consumer of the group starts there.
//!
//! A consumer at the end of the log takes the last events from memory instead
//! ([`super::log_recent`]): the same events, decoded once by their appender.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ports::{LogConsumer, LogPosition, LogRecord, PortError};
use tracing::debug;
use wire::log::{topic_of_serialized, LogEvent};

use super::log::LogShared;
use super::log_topics::TopicWatch;
use super::segment::Segment;
use crate::error::{run_blocking, PersistenceError};

/// The embedded log has a single partition.
pub const PARTITION: u32 = 0;

/// Most raw records one read looks at, so a long run of other topics keeps each read short.
const MAX_SCAN_PER_READ: usize = 4096;
/// A consumer at most this many records behind the end reads on its own task instead of the
/// blocking pool: those records were just written, so the kernel serves them from its page
/// cache in microseconds, and a hop to a pool thread and back (for every poll of every consumer,
/// after every group of the writer) costs more than the read.
const INLINE_READ_RECORDS: u64 = 64;

pub struct EmbeddedLogConsumer {
    shared: Arc<LogShared>,
    group: String,
    topics: Arc<Vec<String>>,
    /// Next offset to look at, and where it is once known.
    cursor: Cursor,
    /// Where the last group with one of its topics ended: what it waits on.
    topic_ends: TopicWatch,
}

/// A consumer's place in the log.
#[derive(Clone)]
struct Cursor {
    offset: u64,
    /// The segment holding `offset` and its byte position there.
    place: Option<(Arc<Segment>, u64)>,
}

struct ReadOutcome {
    records: Vec<LogRecord>,
    cursor: Cursor,
}

impl EmbeddedLogConsumer {
    pub(crate) fn new(
        shared: Arc<LogShared>,
        group: String,
        topics: Vec<String>,
        offset: u64,
    ) -> Self {
        let topic_ends = shared.topic_ends.watch(&topics);
        Self {
            shared,
            group,
            topics: Arc::new(topics),
            cursor: Cursor {
                offset,
                place: None,
            },
            topic_ends,
        }
    }

    async fn read(&self, max: usize, end: u64) -> Result<ReadOutcome, PortError> {
        let recent = (self.shared.recent).read(&self.topics, self.cursor.offset, end, max);
        if let Some(recent) = recent {
            // The file position is looked up again should this consumer fall behind.
            let cursor = Cursor {
                offset: recent.next,
                place: None,
            };
            return Ok(ReadOutcome {
                records: recent.records,
                cursor,
            });
        }
        let cursor = self.cursor.clone();
        if end.saturating_sub(cursor.offset) <= INLINE_READ_RECORDS && cursor.place.is_some() {
            return read_records(&self.shared, &self.topics, cursor, end, max)
                .map_err(PortError::from);
        }
        let shared = Arc::clone(&self.shared);
        let topics = Arc::clone(&self.topics);
        run_blocking(move || read_records(&shared, &topics, cursor, end, max)).await
    }
}

fn read_records(
    shared: &LogShared,
    topics: &[String],
    mut cursor: Cursor,
    end: u64,
    max: usize,
) -> Result<ReadOutcome, PersistenceError> {
    let mut records = Vec::new();
    let mut scanned = 0;
    while cursor.offset < end && records.len() < max && scanned < MAX_SCAN_PER_READ {
        let (segment, position) = match cursor.place.take() {
            Some(place) => place,
            None => find(shared, &mut cursor.offset)?,
        };
        let most = (max - records.len()).min(MAX_SCAN_PER_READ - scanned);
        let read = segment.read(position, cursor.offset, end, most)?;
        if read.at_end_of_file {
            cursor.place = Some(next_segment(shared, &segment, &mut cursor.offset)?);
            continue;
        }
        scanned += read.records.len();
        for raw in read.records {
            cursor.offset = raw.offset + 1;
            let peeked = topic_of_serialized(&raw.payload);
            if peeked.is_some_and(|peeked| !topics.iter().any(|topic| topic == peeked)) {
                continue;
            }
            let event: LogEvent = serde_json::from_slice(&raw.payload)?;
            if topics.iter().any(|topic| topic == event.body.topic()) {
                records.push(LogRecord {
                    position: LogPosition {
                        partition: PARTITION,
                        offset: raw.offset,
                    },
                    event,
                });
            }
        }
        cursor.place = Some((segment, read.next_position));
    }
    Ok(ReadOutcome { records, cursor })
}

/// The segment after `finished`, which ended before `offset`: the one starting there, or, when
/// a prune removed it while this consumer was reading an older one, the oldest segment left
/// (the consumer moves up to its first offset, as one starting at a pruned offset does).
fn next_segment(
    shared: &LogShared,
    finished: &Segment,
    offset: &mut u64,
) -> Result<(Arc<Segment>, u64), PersistenceError> {
    let (segment, position) = find(shared, offset)?;
    if segment.base == finished.base {
        return Err(PersistenceError::Corrupted(format!(
            "embedded log: no segment starts at offset {offset} after segment {}",
            finished.base
        )));
    }
    Ok((segment, position))
}

/// The segment and byte position of `offset`, moved up to the oldest offset left if it was
/// pruned.
fn find(shared: &LogShared, offset: &mut u64) -> Result<(Arc<Segment>, u64), PersistenceError> {
    let segment = shared.open_segment_for(offset)?;
    let position = segment.locate(*offset)?;
    Ok((Arc::new(segment), position))
}

#[async_trait]
impl LogConsumer for EmbeddedLogConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<LogRecord>, PortError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Mark its topics' ends as seen before reading, so an append that lands after the
            // read wakes the wait below; then the log's end, which the writer moves first.
            let ours = self.topic_ends.seen_end();
            let end = *self.shared.end_offset.borrow();
            if self.cursor.offset < ours {
                let outcome = self.read(max, end).await?;
                self.cursor = outcome.cursor;
                if !outcome.records.is_empty() {
                    return Ok(outcome.records);
                }
                if self.cursor.offset < end {
                    // Only other topics so far; keep scanning without waiting.
                    continue;
                }
            }
            // Until a group with one of its topics: records of others wait, unread, for the
            // next read (or count as done, see `lag`).
            if tokio::time::timeout_at(deadline, self.topic_ends.changed())
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    async fn commit(&mut self, positions: &[LogPosition]) -> Result<(), PortError> {
        if let Some(position) = positions
            .iter()
            .find(|position| position.partition != PARTITION)
        {
            return Err(PortError::internal(format!(
                "embedded log has one partition, got a position in partition {}",
                position.partition
            )));
        }
        let Some(highest) = positions.iter().map(|position| position.offset).max() else {
            return Ok(());
        };
        let next = highest + 1;
        if self.shared.offsets.advance(&self.group, next) {
            let shared = Arc::clone(&self.shared);
            run_blocking(move || shared.offsets.write_durably()).await?;
        }
        debug!(group = %self.group, next, "log consumer committed");
        Ok(())
    }

    /// The records after this consumer's cursor, as topic `log` (the embedded log is one
    /// sequence): its group's committed position once its last batch is committed, and
    /// records of other topics it skipped, or has not read because none of its own follow
    /// them, count as done.
    async fn lag(&mut self) -> Result<Vec<(String, u32, u64)>, PortError> {
        let end = *self.shared.end_offset.borrow();
        let behind = if self.cursor.offset < self.topic_ends.end() {
            end.saturating_sub(self.cursor.offset)
        } else {
            0
        };
        Ok(vec![("log".to_owned(), PARTITION, behind)])
    }
}
