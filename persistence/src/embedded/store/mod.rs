//! [`EmbeddedStore`]: the standalone store and directory over one redb file.
//!
//! - [`tables`]: table definitions and key layout.
//! - [`read`]: lookups shared by read and write transactions.
//! - [`write`]: the idempotent writes of `Store::apply` and the directory.
//! - [`directory`]: the `Directory` implementation.
//! - [`audit`]: the `AuditLog` implementation (append-only audit records).
//! - [`sanctions`]: the `Sanctions` implementation (bans and token revocations).
//! - [`retention`]: the `RetentionPolicies` implementation (periods, legal holds, purges).
//! - [`jobs`]: the `Jobs` implementation (export and erasure job records).
//! - [`user_data`]: the `UserDataScan` implementation (a user's messages, for exports).
//!
//! Every call runs its redb transaction on tokio's blocking pool; every write transaction
//! commits durably (redb's default `Durability::Immediate`, an fsync) before the call returns,
//! except `Store::apply` once the store is [`EmbeddedStore::apply_behind`] a log: the writes
//! ingest applies from the log then commit without an fsync (visible at once, durable with the
//! next durable commit), and the log makes them durable before it makes any consumer offset
//! past them durable. A crash takes back at most the last second of them, and ingest applies
//! those records again from the log (every write is idempotent). One fsync a second instead of
//! one per ingest batch.

mod audit;
mod directory;
mod jobs;
mod read;
mod retention;
mod sanctions;
mod tables;
mod user_data;
mod write;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use ports::{MessageQuery, PortError, Store, StoreWrite, StoredConversation, Watermarks};
use redb::{Database, ReadableDatabase};
use tracing::info;
use wire::log::MessageRecord;
use wire::{ClientMsgId, ConversationId, MessageId, UserId};

use self::read::{load_message, load_stored_conversation, load_watermarks};
use self::tables::{
    ACTIVITY, CLIENT_IDS, CONVERSATIONS, MESSAGES, MESSAGE_IDS, USER_CONVERSATIONS, WATERMARKS,
};
use self::write::WriteTables;
use super::EmbeddedLog;
use crate::error::{run_blocking, PersistenceError};

/// What a store opened with [`EmbeddedStore::open`] keeps of its file in memory, in bytes: redb
/// caches the pages it reads and writes up to this (with its own default, 1 GiB, a node's heap
/// grew with its store, ≈ 2 KB per message stored: docs/reliability.md).
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The standalone store and directory. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct EmbeddedStore {
    database: Arc<Database>,
    /// Whether `apply` commits without an fsync ([`Self::apply_behind`]).
    apply_lazily: Arc<AtomicBool>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`, e.g. `<data_dir>/store.redb`, caching up to
    /// [`DEFAULT_CACHE_BYTES`] of it. Blocking: call it at start-up, or from `spawn_blocking`.
    pub fn open(path: &Path) -> Result<Self, PersistenceError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`Self::open`] with a cache of `cache_bytes` (`storage.cache_mb`): pages read and
    /// written stay in memory up to this, half of it at most for the writes not yet in the file.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, PersistenceError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let database = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let write = database.begin_write()?;
        tables::create_all(&write)?;
        write.commit()?;
        info!(path = %path.display(), "embedded store opened");
        Ok(Self {
            database: Arc::new(database),
            apply_lazily: Arc::new(AtomicBool::new(false)),
        })
    }

    /// From now on `apply` commits without an fsync, and `log` makes what it applied durable
    /// before any consumer offset (see the module docs). For the store ingest fills from `log`.
    pub fn apply_behind(&self, log: &EmbeddedLog) {
        let store = self.clone();
        log.make_durable_first(Arc::new(move || store.make_durable()));
        self.apply_lazily.store(true, Ordering::Release);
    }

    /// Makes every commit so far durable: an empty durable commit (an fsync). Blocking.
    pub fn make_durable(&self) -> Result<(), PersistenceError> {
        self.database.begin_write()?.commit()?;
        Ok(())
    }

    /// Runs `work` in one durable write transaction on the blocking pool.
    async fn write<T, F>(&self, work: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTables<'_>) -> Result<T, PersistenceError> + Send + 'static,
    {
        self.write_with(redb::Durability::Immediate, work).await
    }

    /// Runs `work` in one write transaction committed with `durability`, on the blocking pool.
    async fn write_with<T, F>(&self, durability: redb::Durability, work: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTables<'_>) -> Result<T, PersistenceError> + Send + 'static,
    {
        let database = Arc::clone(&self.database);
        run_blocking(move || {
            let mut write = database.begin_write()?;
            write.set_durability(durability)?;
            let outcome = {
                let mut tables = WriteTables::open(&write)?;
                work(&mut tables)?
            };
            write.commit()?;
            Ok(outcome)
        })
        .await
    }

    /// Runs `work` against a read transaction on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, PersistenceError> + Send + 'static,
    {
        let database = Arc::clone(&self.database);
        run_blocking(move || {
            let read = database.begin_read()?;
            work(&read)
        })
        .await
    }

    /// The user's conversations ordered by activity (newest first, then id ascending), after
    /// the `after` conversation when given.
    async fn list_conversations(
        &self,
        user_id: &UserId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<StoredConversation>, PortError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let user_id = user_id.clone();
        let after = after.cloned();
        self.read(move |read| {
            let participation = read.open_table(USER_CONVERSATIONS)?;
            let conversations = read.open_table(CONVERSATIONS)?;
            let activity = read.open_table(ACTIVITY)?;
            let mut listed = Vec::new();
            for entry in participation.range((user_id.as_str(), "")..)? {
                let (key, _) = entry?;
                let (member, conversation_id) = key.value();
                if member != user_id.as_str() {
                    break;
                }
                if let Some(stored) =
                    load_stored_conversation(&conversations, &activity, conversation_id)?
                {
                    listed.push(stored);
                }
            }
            let cursor = match &after {
                None => None,
                Some(after_id) => {
                    match load_stored_conversation(&conversations, &activity, after_id.as_str())? {
                        Some(cursor) => Some(cursor),
                        None => return Ok(Vec::new()),
                    }
                }
            };
            Ok(ports::store::page_by_activity(
                listed,
                cursor.as_ref(),
                limit,
            ))
        })
        .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn apply(&self, writes: Vec<StoreWrite>) -> Result<(), PortError> {
        if writes.is_empty() {
            return Ok(());
        }
        let durability = if self.apply_lazily.load(Ordering::Acquire) {
            redb::Durability::None
        } else {
            redb::Durability::Immediate
        };
        self.write_with(durability, move |tables| {
            for write in &writes {
                tables.apply(write)?;
            }
            Ok(())
        })
        .await
    }

    async fn conversation(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<StoredConversation>, PortError> {
        let conversation_id = conversation_id.clone();
        self.read(move |read| {
            let conversations = read.open_table(CONVERSATIONS)?;
            let activity = read.open_table(ACTIVITY)?;
            load_stored_conversation(&conversations, &activity, conversation_id.as_str())
        })
        .await
    }

    async fn watermarks(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
    ) -> Result<Watermarks, PortError> {
        let conversation_id = conversation_id.clone();
        let user_id = user_id.clone();
        self.read(move |read| {
            let watermarks = read.open_table(WATERMARKS)?;
            load_watermarks(&watermarks, conversation_id.as_str(), user_id.as_str())
        })
        .await
    }

    async fn message(
        &self,
        conversation_id: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, PortError> {
        let conversation_id = conversation_id.clone();
        let message_id = message_id.clone();
        self.read(move |read| {
            let message_ids = read.open_table(MESSAGE_IDS)?;
            let seq = match message_ids.get(message_id.as_str())? {
                Some(value) => {
                    let (stored_conversation, seq) = value.value();
                    if stored_conversation != conversation_id.as_str() {
                        return Ok(None);
                    }
                    seq
                }
                None => return Ok(None),
            };
            let messages = read.open_table(MESSAGES)?;
            load_message(&messages, conversation_id.as_str(), seq)
        })
        .await
    }

    async fn message_by_client_id(
        &self,
        conversation_id: &ConversationId,
        sender_id: &UserId,
        client_msg_id: &ClientMsgId,
    ) -> Result<Option<MessageRecord>, PortError> {
        let conversation_id = conversation_id.clone();
        let sender_id = sender_id.clone();
        let client_msg_id = client_msg_id.clone();
        self.read(move |read| {
            let client_ids = read.open_table(CLIENT_IDS)?;
            let key = (
                conversation_id.as_str(),
                sender_id.as_str(),
                client_msg_id.as_str(),
            );
            let Some(seq) = client_ids.get(key)?.map(|value| value.value()) else {
                return Ok(None);
            };
            let messages = read.open_table(MESSAGES)?;
            Ok(load_message(&messages, conversation_id.as_str(), seq)?
                .filter(|record| !record.is_aborted()))
        })
        .await
    }

    async fn messages(
        &self,
        conversation_id: &ConversationId,
        query: MessageQuery,
    ) -> Result<Vec<MessageRecord>, PortError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let conversation_id = conversation_id.clone();
        self.read(move |read| {
            let messages = read.open_table(MESSAGES)?;
            let id = conversation_id.as_str();
            // Exclusive upper bound on seq; `u64::MAX` is never a real seq.
            let upper = query.before_seq.map_or(u64::MAX, |before| before.0);
            let mut found = Vec::with_capacity(query.limit.min(1024));
            match query.after_seq {
                Some(after) => {
                    let lower = after.0.saturating_add(1);
                    if lower >= upper {
                        return Ok(found);
                    }
                    for entry in messages.range((id, lower)..(id, upper))?.take(query.limit) {
                        let (_, bytes) = entry?;
                        found.push(serde_json::from_slice(bytes.value())?);
                    }
                }
                None => {
                    for entry in messages
                        .range((id, 0)..(id, upper))?
                        .rev()
                        .take(query.limit)
                    {
                        let (_, bytes) = entry?;
                        found.push(serde_json::from_slice(bytes.value())?);
                    }
                    found.reverse();
                }
            }
            Ok(found)
        })
        .await
    }

    async fn is_ready(&self) -> bool {
        let database = Arc::clone(&self.database);
        run_blocking(move || Ok(database.begin_read().is_ok()))
            .await
            .unwrap_or(false)
    }
}
