//! The embedded log's consumer group offsets: `offsets.redb` in the log's directory, group →
//! next offset to read. Holding it open also keeps a second process off the log (redb locks
//! its file).
//!
//! A commit is not fsync'd on its own (redb's `Durability::None`) unless the last fsync'd one is
//! more than [`DURABLE_EVERY`] old, and closing the log makes the last one durable. A crash can
//! therefore take back the last second of commits, so a group reads a few records again — the
//! at-least-once delivery a Kafka consumer group has between processing and committing, which
//! every consumer tolerates (the store's writes are idempotent). In a standalone node at 2 000
//! sends/s the consumers' commits were ≈ 600 of ≈ 1 900 fdatasyncs a second when each was
//! durable (docs/benchmarks.md).
//!
//! A consumer may also write what it read without an fsync of its own (the embedded store's
//! `apply`): then that must be durable before any offset past it is. Such work registers a
//! [`MakeDurable`] ([`crate::EmbeddedLog::make_durable_first`]), which every durable commit of
//! the offsets runs first; if it fails, the offsets are not committed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::PersistenceError;

/// Consumer group → next offset to read.
pub(crate) const GROUP_OFFSETS: TableDefinition<&str, u64> = TableDefinition::new("group_offsets");

/// How often a commit is made durable at most.
pub(crate) const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// Makes durable what consumers wrote from the log without an fsync of their own; runs before
/// every durable commit of the offsets.
pub type MakeDurable = Arc<dyn Fn() -> Result<(), PersistenceError> + Send + Sync>;

pub(crate) struct GroupOffsets {
    database: Database,
    /// When a commit was last fsync'd (`None`: not yet).
    last_durable: Mutex<Option<Instant>>,
    /// What must be durable before the offsets are.
    durable_first: Mutex<Vec<MakeDurable>>,
}

impl GroupOffsets {
    pub(crate) fn open(path: &Path) -> Result<Self, PersistenceError> {
        let database = Database::create(path)?;
        let write = database.begin_write()?;
        write.open_table(GROUP_OFFSETS)?;
        write.commit()?;
        Ok(Self {
            database,
            last_durable: Mutex::new(Some(Instant::now())),
            durable_first: Mutex::new(Vec::new()),
        })
    }

    /// Registers `make_durable` to run before every durable commit from now on.
    pub(crate) fn make_durable_first(&self, make_durable: MakeDurable) {
        self.durable_first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(make_durable);
    }

    /// Runs what must be durable before the offsets, in the order it was registered.
    fn run_durable_first(&self) -> Result<(), PersistenceError> {
        let hooks = self
            .durable_first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        hooks.iter().try_for_each(|make_durable| make_durable())
    }

    /// Every group's committed offset.
    pub(crate) fn all(&self) -> Result<Vec<(String, u64)>, PersistenceError> {
        let read = self.database.begin_read()?;
        let groups = read.open_table(GROUP_OFFSETS)?;
        let mut all = Vec::new();
        for row in groups.iter()? {
            let (group, next) = row?;
            all.push((group.value().to_owned(), next.value()));
        }
        Ok(all)
    }

    pub(crate) fn get(&self, group: &str) -> Result<Option<u64>, PersistenceError> {
        let read = self.database.begin_read()?;
        let groups = read.open_table(GROUP_OFFSETS)?;
        Ok(groups.get(group)?.map(|next| next.value()))
    }

    /// Stores `next` for `group` unless it already has a later one.
    pub(crate) fn advance(&self, group: &str, next: u64) -> Result<(), PersistenceError> {
        let mut write = self.database.begin_write()?;
        if self.take_durable_turn() {
            // On failure the turn is spent: the next commit a second later tries again.
            self.run_durable_first()?;
        } else {
            write.set_durability(redb::Durability::None)?;
        }
        {
            let mut groups = write.open_table(GROUP_OFFSETS)?;
            let stored = groups.get(group)?.map(|value| value.value());
            if stored.is_none_or(|stored| stored < next) {
                groups.insert(group, next)?;
            }
        }
        write.commit()?;
        Ok(())
    }

    /// Whether this commit should be the durable one of the current second.
    fn take_durable_turn(&self) -> bool {
        let mut last = self
            .last_durable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = last.is_none_or(|at| at.elapsed() >= DURABLE_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// Makes every commit so far durable (at close), after what must be durable first.
    pub(crate) fn flush(&self) -> Result<(), PersistenceError> {
        self.run_durable_first()?;
        let write = self.database.begin_write()?;
        write.commit()?;
        Ok(())
    }

    /// Copies `groups` in one durable transaction (a migration).
    pub(crate) fn import(&self, groups: &[(String, u64)]) -> Result<(), PersistenceError> {
        let write = self.database.begin_write()?;
        {
            let mut table = write.open_table(GROUP_OFFSETS)?;
            for (group, next) in groups {
                table.insert(group.as_str(), *next)?;
            }
        }
        write.commit()?;
        Ok(())
    }
}
