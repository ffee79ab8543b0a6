//! [`RetentionPolicies`] over the embedded store: one row per conversation whose retention is
//! not the default in the `retention` table (conversation_id → serde_json of the
//! [`ConversationRetention`]), in the same redb file as the store; and the [`RetentionScan`]
//! of the sweep over the `activity` and `messages` tables.

use std::sync::Arc;

use async_trait::async_trait;
use ports::{
    ConversationRetention, LegalHold, PortError, RetentionPeriod, RetentionPolicies, RetentionScan,
};
use redb::{Range, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};
use wire::log::MessageRecord;
use wire::{ConversationId, Seq, Timestamp, UserId};

use super::tables::{ACTIVITY, MESSAGES};
use super::EmbeddedStore;
use crate::error::{run_blocking, PersistenceError};

/// conversation_id → serde_json of the conversation's `ConversationRetention`.
pub(super) const RETENTION: TableDefinition<&str, &[u8]> = TableDefinition::new("retention");

impl EmbeddedStore {
    /// Reads the retention of `conversation_id`, changes it with `change` and writes it back,
    /// durably, in one write transaction (a row back to the default is removed).
    async fn change_retention<F>(
        &self,
        conversation_id: &ConversationId,
        change: F,
    ) -> Result<(), PortError>
    where
        F: FnOnce(&mut ConversationRetention) + Send + 'static,
    {
        let database = Arc::clone(&self.database);
        let conversation_id = conversation_id.clone();
        run_blocking(move || {
            let write = database.begin_write()?;
            {
                let mut table = write.open_table(RETENTION)?;
                let key = conversation_id.as_str();
                let mut retention = match table.get(key)? {
                    Some(bytes) => serde_json::from_slice(bytes.value())?,
                    None => ConversationRetention::default(),
                };
                change(&mut retention);
                if retention == ConversationRetention::default() {
                    table.remove(key)?;
                } else {
                    table.insert(key, serde_json::to_vec(&retention)?.as_slice())?;
                }
            }
            write.commit()?;
            Ok::<_, PersistenceError>(())
        })
        .await
    }
}

#[async_trait]
impl RetentionPolicies for EmbeddedStore {
    async fn retention(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<ConversationRetention, PortError> {
        let database = Arc::clone(&self.database);
        let conversation_id = conversation_id.clone();
        run_blocking(move || {
            let read = database.begin_read()?;
            let table = read.open_table(RETENTION)?;
            let retention = match table.get(conversation_id.as_str())? {
                Some(bytes) => serde_json::from_slice(bytes.value())?,
                None => ConversationRetention::default(),
            };
            Ok::<_, PersistenceError>(retention)
        })
        .await
    }

    async fn set_period(
        &self,
        conversation_id: &ConversationId,
        period: RetentionPeriod,
    ) -> Result<(), PortError> {
        self.change_retention(conversation_id, move |retention| retention.period = period)
            .await
    }

    async fn set_legal_hold(
        &self,
        conversation_id: &ConversationId,
        hold: LegalHold,
    ) -> Result<(), PortError> {
        self.change_retention(conversation_id, move |retention| {
            retention.legal_hold = hold
        })
        .await
    }

    async fn record_purge(
        &self,
        conversation_id: &ConversationId,
        through: Seq,
    ) -> Result<(), PortError> {
        self.change_retention(conversation_id, move |retention| {
            retention.purged_through = retention.purged_through.max(through);
        })
        .await
    }

    async fn changed(&self) -> Result<Vec<(ConversationId, ConversationRetention)>, PortError> {
        let database = Arc::clone(&self.database);
        run_blocking(move || {
            let read = database.begin_read()?;
            let table = read.open_table(RETENTION)?;
            let mut changed = Vec::new();
            for row in table.iter()? {
                let (key, bytes) = row?;
                let retention: ConversationRetention = serde_json::from_slice(bytes.value())?;
                changed.push((ConversationId::new(key.value()), retention));
            }
            Ok::<_, PersistenceError>(changed)
        })
        .await
    }
}

/// The `activity` rows (one per conversation with stored messages) after `after`, by id.
fn conversations_after<'table>(
    activity: &'table ReadOnlyTable<&'static str, (u64, i64)>,
    after: Option<&ConversationId>,
) -> Result<Range<'table, &'static str, (u64, i64)>, redb::StorageError> {
    match after {
        Some(after) => activity.range::<&str>((
            std::ops::Bound::Excluded(after.as_str()),
            std::ops::Bound::Unbounded,
        )),
        None => activity.range::<&str>(..),
    }
}

#[async_trait]
impl RetentionScan for EmbeddedStore {
    async fn conversations_with_messages(
        &self,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<ConversationId>, PortError> {
        let after = after.cloned();
        self.read(move |read| {
            let activity = read.open_table(ACTIVITY)?;
            let rows = conversations_after(&activity, after.as_ref())?;
            let mut found = Vec::new();
            for row in rows.take(limit) {
                let (key, _) = row?;
                found.push(ConversationId::new(key.value()));
            }
            Ok(found)
        })
        .await
    }

    async fn conversations_with_messages_from(
        &self,
        sender_id: &UserId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<ConversationId>, PortError> {
        let (sender_id, after) = (sender_id.clone(), after.cloned());
        // No index by sender: every message after `after` is read (erasures are rare).
        self.read(move |read| {
            let activity = read.open_table(ACTIVITY)?;
            let messages = read.open_table(MESSAGES)?;
            let rows = conversations_after(&activity, after.as_ref())?;
            let mut found = Vec::new();
            for row in rows {
                if found.len() == limit {
                    break;
                }
                let (key, _) = row?;
                let id = key.value();
                for entry in messages.range((id, 0)..=(id, u64::MAX))? {
                    let (_, bytes) = entry?;
                    let record: MessageRecord = serde_json::from_slice(bytes.value())?;
                    if record.message.sender_id == sender_id {
                        found.push(ConversationId::new(id));
                        break;
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    async fn newest_seq_before(
        &self,
        conversation_id: &ConversationId,
        before: Timestamp,
    ) -> Result<Option<Seq>, PortError> {
        let conversation_id = conversation_id.clone();
        self.read(move |read| {
            let messages = read.open_table(MESSAGES)?;
            let id = conversation_id.as_str();
            let mut newest = None;
            // Oldest first: only the expired messages and the first kept one are read.
            for entry in messages.range((id, 0)..=(id, u64::MAX))? {
                let (_, bytes) = entry?;
                let record: MessageRecord = serde_json::from_slice(bytes.value())?;
                if record.message.created_at >= before {
                    break;
                }
                newest = Some(record.message.seq);
            }
            Ok(newest)
        })
        .await
    }
}
