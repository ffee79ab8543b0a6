//! Pruning of the standalone event log: the embedded counterpart of a Kafka topic's
//! `retention.ms`, so message content does not outlive retention in `log.redb`.

use std::sync::Arc;

use ports::PortError;
use redb::{ReadableTable, ReadableTableMetadata};
use wire::log::LogEvent;
use wire::Timestamp;

use super::log::{EmbeddedLog, EVENTS, GROUP_OFFSETS};
use crate::error::{run_blocking, PersistenceError};

/// Most events one prune transaction removes (the rest go in the next).
const PRUNE_BATCH: usize = 10_000;

impl EmbeddedLog {
    /// Deletes the events appended before `before` that every consumer group has read, so no
    /// consumer misses one. The newest event always stays: offsets keep growing across
    /// restarts. A group created later starts at the oldest event left. Returns how many went.
    pub async fn prune_before(&self, before: Timestamp) -> Result<u64, PortError> {
        let mut pruned = 0;
        loop {
            let shared = Arc::clone(&self.shared);
            let removed = run_blocking(move || prune_batch(&shared.database, before)).await?;
            pruned += removed;
            if removed < PRUNE_BATCH as u64 {
                return Ok(pruned);
            }
        }
    }
}

/// One transaction of [`EmbeddedLog::prune_before`].
fn prune_batch(database: &redb::Database, before: Timestamp) -> Result<u64, PersistenceError> {
    let write = database.begin_write()?;
    let removed = {
        let groups = write.open_table(GROUP_OFFSETS)?;
        let mut read_by_all = None;
        for row in groups.iter()? {
            let (_, next) = row?;
            read_by_all = Some(read_by_all.unwrap_or(u64::MAX).min(next.value()));
        }
        let mut events = write.open_table(EVENTS)?;
        let newest = events.last()?.map(|(offset, _)| offset.value());
        let (Some(read_by_all), Some(newest)) = (read_by_all, newest) else {
            return Ok(0);
        };
        let mut doomed = Vec::new();
        if events.len()? > 1 {
            for row in events.range(..read_by_all.min(newest))?.take(PRUNE_BATCH) {
                let (offset, bytes) = row?;
                let event: LogEvent = serde_json::from_slice(bytes.value())?;
                if event.at >= before {
                    break;
                }
                doomed.push(offset.value());
            }
        }
        for offset in &doomed {
            events.remove(offset)?;
        }
        doomed.len() as u64
    };
    write.commit()?;
    Ok(removed)
}
