//! The embedded log's consumer group offsets: `offsets.redb` in the log's directory, group →
//! next offset to read. Holding it open also keeps a second process off the log (redb locks
//! its file).
//!
//! A commit only updates the offsets in memory; at most every [`DURABLE_EVERY`] one of them
//! writes them all to the file in one durable transaction (an fsync), and closing the log writes
//! the last ones. A crash can therefore take back the last second of commits, so a group reads
//! a few records again — the at-least-once delivery a Kafka consumer group has between
//! processing and committing, which every consumer tolerates (the store's writes are
//! idempotent). In a standalone node at 2 000 sends/s the consumers' commits were ≈ 600 of
//! ≈ 1 900 fdatasyncs a second when each was durable, and a redb transaction on the blocking
//! pool each (≈ 4 % of the node's CPU) when they were not (docs/benchmarks.md).
//!
//! A consumer may also write what it read without an fsync of its own (the embedded store's
//! `apply`): then that must be durable before any offset past it is. Such work registers a
//! [`MakeDurable`] ([`crate::EmbeddedLog::make_durable_first`]), which every durable write of
//! the offsets runs first; if it fails, the offsets are not written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::PersistenceError;

/// Consumer group → next offset to read.
pub(crate) const GROUP_OFFSETS: TableDefinition<&str, u64> = TableDefinition::new("group_offsets");

/// How often the offsets are written durably at most.
pub(crate) const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// Makes durable what consumers wrote from the log without an fsync of their own; runs before
/// every durable write of the offsets.
pub type MakeDurable = Arc<dyn Fn() -> Result<(), PersistenceError> + Send + Sync>;

pub(crate) struct GroupOffsets {
    database: Database,
    state: Mutex<Committed>,
    /// Serialises durable writes, so an older snapshot never overwrites a newer one.
    writing: Mutex<()>,
    /// What must be durable before the offsets are.
    durable_first: Mutex<Vec<MakeDurable>>,
}

/// The offsets as committed, the ones a crash keeps, and when they were last written durably.
struct Committed {
    next: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    last_durable: Instant,
}

impl GroupOffsets {
    pub(crate) fn open(path: &Path) -> Result<Self, PersistenceError> {
        let database = Database::create(path)?;
        let write = database.begin_write()?;
        write.open_table(GROUP_OFFSETS)?;
        write.commit()?;
        let mut next = BTreeMap::new();
        {
            let read = database.begin_read()?;
            for row in read.open_table(GROUP_OFFSETS)?.iter()? {
                let (group, offset) = row?;
                next.insert(group.value().to_owned(), offset.value());
            }
        }
        Ok(Self {
            database,
            state: Mutex::new(Committed {
                durable: next.clone(),
                next,
                last_durable: Instant::now(),
            }),
            writing: Mutex::new(()),
            durable_first: Mutex::new(Vec::new()),
        })
    }

    fn state(&self) -> MutexGuard<'_, Committed> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `make_durable` to run before every durable write from now on.
    pub(crate) fn make_durable_first(&self, make_durable: MakeDurable) {
        self.durable_first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(make_durable);
    }

    /// Every group's committed offset.
    fn all(&self) -> Vec<(String, u64)> {
        let state = self.state();
        state
            .next
            .iter()
            .map(|(group, next)| (group.clone(), *next))
            .collect()
    }

    /// The first offset some group may read again after a crash: the least of the groups'
    /// durable offsets (0 for a group none of whose commits is durable yet). `None` without
    /// groups.
    pub(crate) fn read_by_all_durably(&self) -> Option<u64> {
        let state = self.state();
        state
            .next
            .keys()
            .map(|group| state.durable.get(group).copied().unwrap_or(0))
            .min()
    }

    pub(crate) fn get(&self, group: &str) -> Option<u64> {
        self.state().next.get(group).copied()
    }

    /// Commits `next` for `group` unless it already has a later one, in memory. Returns
    /// whether the offsets are due to be written durably ([`Self::write_durably`]): the turn
    /// is then taken, so one commit a second is the durable one.
    pub(crate) fn advance(&self, group: &str, next: u64) -> bool {
        let mut state = self.state();
        match state.next.get_mut(group) {
            Some(stored) => *stored = (*stored).max(next),
            None => {
                state.next.insert(group.to_owned(), next);
            }
        }
        let due = state.last_durable.elapsed() >= DURABLE_EVERY;
        if due {
            state.last_durable = Instant::now();
        }
        due
    }

    /// Writes every group's offset in one durable transaction, after what must be durable
    /// first. Blocking. On failure nothing is written; a later write carries these offsets.
    pub(crate) fn write_durably(&self) -> Result<(), PersistenceError> {
        let _one_at_a_time = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The snapshot is taken before the work that must precede it, so it never holds an
        // offset past what that work made durable.
        let snapshot = self.all();
        self.run_durable_first()?;
        let write = self.database.begin_write()?;
        {
            let mut table = write.open_table(GROUP_OFFSETS)?;
            for (group, next) in &snapshot {
                table.insert(group.as_str(), *next)?;
            }
        }
        write.commit()?;
        let mut state = self.state();
        for (group, next) in snapshot {
            let durable = state.durable.entry(group).or_insert(next);
            *durable = (*durable).max(next);
        }
        Ok(())
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

    /// Sets `groups` and writes them durably (a migration).
    pub(crate) fn import(&self, groups: &[(String, u64)]) -> Result<(), PersistenceError> {
        {
            let mut state = self.state();
            for (group, next) in groups {
                state.next.insert(group.clone(), *next);
            }
        }
        self.write_durably()
    }
}

#[cfg(test)]
mod tests {
    use super::GroupOffsets;

    #[test]
    fn only_durable_commits_count_as_read_by_all() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let offsets = GroupOffsets::open(&directory.path().join("offsets.redb")).expect("open");
        assert_eq!(offsets.read_by_all_durably(), None, "no groups yet");

        offsets.advance("store", 10);
        offsets.advance("search", 7);
        assert_eq!(offsets.get("store"), Some(10), "committed in memory");
        assert_eq!(
            offsets.read_by_all_durably(),
            Some(0),
            "nothing durable yet"
        );

        offsets.write_durably().expect("write");
        assert_eq!(offsets.read_by_all_durably(), Some(7));

        offsets.advance("search", 20);
        assert_eq!(
            offsets.read_by_all_durably(),
            Some(7),
            "20 is not durable yet"
        );
        offsets.write_durably().expect("write");
        assert_eq!(offsets.read_by_all_durably(), Some(10));
    }

    #[test]
    fn a_reopened_file_holds_the_durable_offsets_only() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("offsets.redb");
        {
            let offsets = GroupOffsets::open(&path).expect("open");
            offsets.advance("store", 5);
            offsets.write_durably().expect("write");
            offsets.advance("store", 9);
        }
        let reopened = GroupOffsets::open(&path).expect("reopen");
        assert_eq!(reopened.get("store"), Some(5));
        assert_eq!(reopened.read_by_all_durably(), Some(5));
    }
}
