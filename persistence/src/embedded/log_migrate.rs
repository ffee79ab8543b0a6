//! Moving an embedded log from its first shape — one redb file, `log.redb`, offset → event and
//! group → offset tables — to a directory of segment files, at start-up.
//!
//! The new directory is built beside it under another name (`<dir>.migrating`), fsync'd, then
//! renamed into place, and only then is the old file deleted: a crash at any point leaves either
//! the old file alone (the migration starts over) or a complete directory marked as made from it
//! (the old file, if still there, is deleted). A `log.redb` beside a directory not made from it
//! (a node of the old version run on the data directory after the upgrade) stops the start-up:
//! deleting either would lose events.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::info;

use super::log::DEFAULT_SEGMENT_BYTES;
use super::log_offsets::GroupOffsets;
use super::segment;
use crate::error::PersistenceError;

const LEGACY_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const LEGACY_GROUP_OFFSETS: TableDefinition<&str, u64> = TableDefinition::new("group_offsets");
/// A file in the new directory saying it was made from a `log.redb`: finding both, a start-up
/// deletes the old file only then (a crash after the rename), and refuses otherwise.
const MIGRATED_MARKER: &str = "migrated-from-log.redb";
/// Bytes the migration gathers before each write.
const WRITE_BYTES: usize = 1 << 20;

/// What a migration moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub events: u64,
    pub groups: usize,
}

/// Moves the log in the redb file `legacy` (if there is one) into the new log directory `dir`,
/// then deletes `legacy`. Returns what it moved; `None` when there was nothing to move.
/// Blocking: call it at start-up, before opening the log.
pub fn migrate_redb_log(legacy: &Path, dir: &Path) -> Result<Option<Migrated>, PersistenceError> {
    if !legacy.exists() {
        return Ok(None);
    }
    if dir.exists() {
        if !dir.join(MIGRATED_MARKER).exists() {
            return Err(PersistenceError::Conflict(format!(
                "both {} and {} exist and the directory was not made from the file: move one \
                 of them away",
                legacy.display(),
                dir.display()
            )));
        }
        // A migration completed and stopped before deleting the old file.
        std::fs::remove_file(legacy)?;
        return Ok(None);
    }
    let staging = dir.with_extension("migrating");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    let migrated = copy_legacy(legacy, &staging)?;
    std::fs::write(staging.join(MIGRATED_MARKER), b"")?;
    segment::sync_directory(&staging)?;
    std::fs::rename(&staging, dir)?;
    if let Some(parent) = dir.parent() {
        segment::sync_directory(parent)?;
    }
    std::fs::remove_file(legacy)?;
    info!(
        from = %legacy.display(),
        to = %dir.display(),
        events = migrated.events,
        groups = migrated.groups,
        "embedded log moved to segment files"
    );
    Ok(Some(migrated))
}

fn copy_legacy(legacy: &Path, staging: &Path) -> Result<Migrated, PersistenceError> {
    let database = Database::open(legacy)?;
    let read = database.begin_read()?;
    let events = read.open_table(LEGACY_EVENTS)?;
    let first = events.first()?.map_or(0, |(offset, _)| offset.value());
    let mut output = SegmentOutput::start(staging, first)?;
    for row in events.iter()? {
        let (offset, bytes) = row?;
        output.push(offset.value(), bytes.value())?;
    }
    let moved = output.finish()?;
    let mut groups = Vec::new();
    for row in read.open_table(LEGACY_GROUP_OFFSETS)?.iter()? {
        let (group, next) = row?;
        groups.push((group.value().to_owned(), next.value()));
    }
    GroupOffsets::open(&staging.join(super::log::OFFSETS_FILE))?.import(&groups)?;
    Ok(Migrated {
        events: moved,
        groups: groups.len(),
    })
}

/// Segment files being filled in order.
struct SegmentOutput<'a> {
    dir: &'a Path,
    file: File,
    written: u64,
    buffer: Vec<u8>,
    next: u64,
    first: u64,
}

impl<'a> SegmentOutput<'a> {
    fn start(dir: &'a Path, first: u64) -> Result<Self, PersistenceError> {
        Ok(Self {
            dir,
            file: segment::create_segment(dir, first)?,
            written: 0,
            buffer: Vec::with_capacity(WRITE_BYTES),
            next: first,
            first,
        })
    }

    fn push(&mut self, offset: u64, payload: &[u8]) -> Result<(), PersistenceError> {
        if offset != self.next {
            return Err(PersistenceError::Corrupted(format!(
                "log.redb: offset {offset} follows {}",
                self.next.wrapping_sub(1)
            )));
        }
        if self.written + self.buffer.len() as u64 >= DEFAULT_SEGMENT_BYTES {
            self.flush()?;
            self.file.sync_all()?;
            self.file = segment::create_segment(self.dir, offset)?;
            self.written = 0;
        }
        segment::encode_record(&mut self.buffer, offset, payload);
        self.next += 1;
        if self.buffer.len() >= WRITE_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PersistenceError> {
        self.file.write_all(&self.buffer)?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Writes what is left and fsyncs; returns how many events went in.
    fn finish(mut self) -> Result<u64, PersistenceError> {
        self.flush()?;
        self.file.sync_all()?;
        Ok(self.next - self.first)
    }
}
