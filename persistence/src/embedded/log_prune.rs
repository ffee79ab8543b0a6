//! Pruning of the standalone event log: the embedded counterpart of a Kafka topic's
//! `retention.ms`, so message content does not outlive retention in the log's segments.
//!
//! A prune finds the first offset to keep (the oldest event appended at or after the cut-off,
//! or the first one some group has not read durably, and never past the newest), asks the
//! writer to start a new segment if its own holds older events, then deletes every segment
//! wholly before that offset and rewrites the one it falls in to keep only its tail. The rewrite goes to a
//! temporary file named after both segments (`<new>.from-<old>.tmp`), fsync'd, then the old
//! segment is deleted and the new one renamed in place: opening the log after a crash finishes
//! or undoes it (`super::segment::list_segments`). Readers in the middle of a replaced segment
//! finish it through their open handle.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use ports::PortError;
use serde::Deserialize;
use wire::Timestamp;

use super::log::{EmbeddedLog, LogShared};
use super::segment::{self, Segment};
use crate::error::{run_blocking, PersistenceError};

/// Records one read of a prune's scan looks at.
const SCAN_BATCH: usize = 4096;

/// The one field of a `LogEvent` a prune needs.
#[derive(Deserialize)]
struct AppendedAt {
    at: Timestamp,
}

impl EmbeddedLog {
    /// Deletes the events appended before `before` that every consumer group has read, so no
    /// consumer misses one. The newest event always stays. A group created later starts at the
    /// oldest event left. Returns how many went.
    pub async fn prune_before(&self, before: Timestamp) -> Result<u64, PortError> {
        let _one_at_a_time = self.shared.prune_lock.lock().await;
        let shared = Arc::clone(&self.shared);
        let Some((first, keep_from)) =
            run_blocking(move || first_offset_to_keep(&shared, before)).await?
        else {
            return Ok(0);
        };
        self.roll_segment_before(keep_from).await?;
        self.shared.recent.forget_before(keep_from);
        let shared = Arc::clone(&self.shared);
        run_blocking(move || drop_segments_before(&shared, keep_from)).await?;
        Ok(keep_from - first)
    }
}

/// The log's first offset and the first one to keep, when they differ.
fn first_offset_to_keep(
    shared: &LogShared,
    before: Timestamp,
) -> Result<Option<(u64, u64)>, PersistenceError> {
    // Only what every group has read durably goes: after a crash a group reads again from its
    // durable offset. Writing the offsets first makes that everything committed so far.
    shared.offsets.write_durably()?;
    let Some(read_by_all) = shared.offsets.read_by_all_durably() else {
        return Ok(None);
    };
    let end = *shared.end_offset.borrow();
    let limit = read_by_all.min(end.saturating_sub(1));
    let mut offset = 0;
    let mut segment = shared.open_segment_for(&mut offset)?;
    let first = offset;
    let mut position = 0;
    while offset < limit {
        let read = segment.read(position, offset, limit, SCAN_BATCH)?;
        if read.at_end_of_file {
            segment = open_segment_starting_at(shared, offset)?;
            position = 0;
            continue;
        }
        for raw in read.records {
            let appended: AppendedAt = serde_json::from_slice(&raw.payload)?;
            if appended.at >= before {
                return Ok((raw.offset > first).then_some((first, raw.offset)));
            }
            offset = raw.offset + 1;
        }
        position = read.next_position;
    }
    Ok((offset > first).then_some((first, offset)))
}

/// The segment starting at `offset` (prunes run one at a time, so none disappears meanwhile).
fn open_segment_starting_at(shared: &LogShared, offset: u64) -> Result<Segment, PersistenceError> {
    let mut found = offset;
    let segment = shared.open_segment_for(&mut found)?;
    if segment.base != offset {
        return Err(missing_segment(offset));
    }
    Ok(segment)
}

fn missing_segment(offset: u64) -> PersistenceError {
    PersistenceError::Corrupted(format!(
        "embedded log: no segment starts at offset {offset}"
    ))
}

/// Deletes the segments that end at or before `keep_from` and rewrites the one holding it.
/// The writer's segment starts at or after `keep_from` (the caller rolled it).
fn drop_segments_before(shared: &LogShared, keep_from: u64) -> Result<(), PersistenceError> {
    let bases = shared.segment_bases();
    for pair in bases.windows(2) {
        let (base, segment_end) = (pair[0], pair[1]);
        if base >= keep_from {
            break;
        }
        if segment_end <= keep_from {
            shared.change_segments(|segments| {
                std::fs::remove_file(segment::segment_path(&shared.dir, base))?;
                segments.remove(&base);
                Ok(())
            })?;
        } else {
            let segment = Segment::open(&shared.dir, base)?;
            rewrite_tail(shared, &segment, keep_from, segment_end)?;
        }
    }
    segment::sync_directory(&shared.dir)
}

/// Replaces `segment` by a segment of its records from `keep_from` to `segment_end`.
fn rewrite_tail(
    shared: &LogShared,
    segment: &Segment,
    keep_from: u64,
    segment_end: u64,
) -> Result<(), PersistenceError> {
    let dir = &shared.dir;
    let temporary = segment::rewrite_path(dir, keep_from, segment.base);
    let mut file = File::create(&temporary)?;
    let mut offset = keep_from;
    let mut position = segment.locate(keep_from)?;
    let mut buffer = Vec::new();
    while offset < segment_end {
        let read = segment.read(position, offset, segment_end, SCAN_BATCH)?;
        if read.at_end_of_file {
            return Err(missing_segment(offset));
        }
        buffer.clear();
        for raw in &read.records {
            segment::encode_record(&mut buffer, raw.offset, &raw.payload);
        }
        file.write_all(&buffer)?;
        offset += read.records.len() as u64;
        position = read.next_position;
    }
    file.sync_all()?;
    // The temporary file's name is durable before the old segment goes.
    segment::sync_directory(dir)?;
    // Old first, then the new name: a crash in between leaves the temporary file and no old
    // segment, which opening the log completes.
    shared.change_segments(|segments| {
        std::fs::remove_file(segment::segment_path(dir, segment.base))?;
        segments.remove(&segment.base);
        std::fs::rename(&temporary, segment::segment_path(dir, keep_from))?;
        segments.insert(keep_from);
        Ok(())
    })?;
    segment::sync_directory(dir)
}
