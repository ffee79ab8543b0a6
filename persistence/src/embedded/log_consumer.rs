//! [`EmbeddedLogConsumer`]: one consumer of a group over some topics of an [`super::EmbeddedLog`].
//!
//! The consumer keeps its own cursor (the next offset to look at). Records whose topic is not in
//! its list are skipped. Committing stores `highest committed offset + 1` for the group in the
//! log's database; a new consumer of the group starts there.
//!
//! The commit is not fsync'd on its own (redb's `Durability::None`): the log writer's next
//! durable commit, a prune, or closing the database at shutdown makes it durable with
//! everything before it (redb keeps a prefix of its commits after a crash). A crash before then
//! leaves an older offset, so the group reads a few records again — the same at-least-once
//! delivery a Kafka consumer group has between processing and committing, which every consumer
//! already tolerates (the store's writes are idempotent). In a standalone node at 2 000 sends/s
//! the consumers' commits were ≈ 600 of the ≈ 1 900 fdatasyncs a second (docs/benchmarks.md).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ports::{LogConsumer, LogPosition, LogRecord, PortError};
use redb::{ReadableDatabase, ReadableTable};
use tokio::sync::watch;
use tracing::debug;
use wire::log::LogEvent;

use super::log::{LogShared, EVENTS, GROUP_OFFSETS};
use crate::error::{run_blocking, PersistenceError};

/// The embedded log has a single partition.
pub const PARTITION: u32 = 0;

/// Most raw records one read looks at, so a long run of other topics keeps each read short.
const MAX_SCAN_PER_READ: usize = 4096;
/// A consumer at most this many records behind the end reads on its own task instead of the
/// blocking pool: those records were just committed, so redb serves them from its page cache
/// in microseconds, and a hop to a pool thread and back (for every poll of every consumer,
/// after every commit of the writer) costs more than the read.
const INLINE_READ_RECORDS: u64 = 64;

pub struct EmbeddedLogConsumer {
    shared: Arc<LogShared>,
    group: String,
    topics: Arc<Vec<String>>,
    /// Next offset to look at.
    cursor: u64,
    end_offset: watch::Receiver<u64>,
}

struct ReadOutcome {
    records: Vec<LogRecord>,
    next_cursor: u64,
}

impl EmbeddedLogConsumer {
    pub(crate) fn new(
        shared: Arc<LogShared>,
        group: String,
        topics: Vec<String>,
        cursor: u64,
    ) -> Self {
        let end_offset = shared.end_offset.subscribe();
        Self {
            shared,
            group,
            topics: Arc::new(topics),
            cursor,
            end_offset,
        }
    }

    async fn read(&self, max: usize, end: u64) -> Result<ReadOutcome, PortError> {
        let cursor = self.cursor;
        if end.saturating_sub(cursor) <= INLINE_READ_RECORDS {
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
    cursor: u64,
    end: u64,
    max: usize,
) -> Result<ReadOutcome, PersistenceError> {
    let read = shared.database.begin_read()?;
    let events = read.open_table(EVENTS)?;
    let mut records = Vec::new();
    let mut next_cursor = cursor;
    for (scanned, entry) in events.range(cursor..end)?.enumerate() {
        if records.len() >= max || scanned >= MAX_SCAN_PER_READ {
            break;
        }
        let (offset, bytes) = entry?;
        let offset = offset.value();
        next_cursor = offset + 1;
        let event: LogEvent = serde_json::from_slice(bytes.value())?;
        if topics.iter().any(|topic| topic == event.body.topic()) {
            records.push(LogRecord {
                position: LogPosition {
                    partition: PARTITION,
                    offset,
                },
                event,
            });
        }
    }
    Ok(ReadOutcome {
        records,
        next_cursor,
    })
}

#[async_trait]
impl LogConsumer for EmbeddedLogConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<LogRecord>, PortError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Mark the current end as seen before reading, so an append that lands after the
            // read wakes the wait below.
            let end = *self.end_offset.borrow_and_update();
            if self.cursor < end {
                let outcome = self.read(max, end).await?;
                self.cursor = outcome.next_cursor;
                if !outcome.records.is_empty() {
                    return Ok(outcome.records);
                }
                if self.cursor < end {
                    // Only other topics so far; keep scanning without waiting.
                    continue;
                }
            }
            match tokio::time::timeout_at(deadline, self.end_offset.changed()).await {
                Ok(Ok(())) => continue,
                // The log was dropped: nothing more will come.
                Ok(Err(_)) => return Ok(Vec::new()),
                Err(_elapsed) => return Ok(Vec::new()),
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
        let shared = Arc::clone(&self.shared);
        let group = self.group.clone();
        run_blocking(move || {
            let mut write = shared.database.begin_write()?;
            write.set_durability(redb::Durability::None)?;
            {
                let mut groups = write.open_table(GROUP_OFFSETS)?;
                let stored = groups.get(group.as_str())?.map(|value| value.value());
                if stored.is_none_or(|stored| stored < next) {
                    groups.insert(group.as_str(), next)?;
                }
            }
            write.commit()?;
            Ok(())
        })
        .await?;
        debug!(group = %self.group, next, "log consumer committed");
        Ok(())
    }

    /// The records after this consumer's cursor, as topic `log` (the embedded log is one
    /// sequence): its group's committed position once its last batch is committed, and
    /// records of other topics it skipped count as done.
    async fn lag(&mut self) -> Result<Vec<(String, u32, u64)>, PortError> {
        let end = *self.end_offset.borrow();
        Ok(vec![(
            "log".to_owned(),
            PARTITION,
            end.saturating_sub(self.cursor),
        )])
    }
}
