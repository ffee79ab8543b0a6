//! The `Directory` port over the embedded store: conversation metadata writes that are durable
//! before they return, with an atomic direct-pair check and optimistic concurrency on update.

use async_trait::async_trait;
use ports::{CreateOutcome, Directory, PortError, StoredConversation};
use redb::ReadableTable;
use wire::log::ConversationRecord;
use wire::{ConversationId, UserId};

use super::read::{direct_pair, load_conversation};
use super::tables::CONVERSATIONS;
use super::EmbeddedStore;
use crate::error::PersistenceError;

#[async_trait]
impl Directory for EmbeddedStore {
    async fn create(&self, record: ConversationRecord) -> Result<CreateOutcome, PortError> {
        self.write(move |tables| {
            if let Some(pair) = direct_pair(&record) {
                let existing_id = tables
                    .direct_pairs
                    .get(pair)?
                    .map(|value| value.value().to_owned());
                if let Some(existing_id) = existing_id {
                    if let Some(existing) = load_conversation(&tables.conversations, &existing_id)?
                    {
                        return Ok(CreateOutcome::Existing(existing));
                    }
                }
            }
            let conversation_id = record.conversation.conversation_id.as_str();
            if load_conversation(&tables.conversations, conversation_id)?.is_some() {
                return Err(PersistenceError::Conflict(format!(
                    "conversation {conversation_id} already exists"
                )));
            }
            tables.put_conversation(&record)?;
            Ok(CreateOutcome::Created(record))
        })
        .await
    }

    async fn get(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, PortError> {
        let conversation_id = conversation_id.clone();
        self.read(move |read| {
            let conversations = read.open_table(CONVERSATIONS)?;
            load_conversation(&conversations, conversation_id.as_str())
        })
        .await
    }

    async fn update(&self, record: ConversationRecord) -> Result<(), PortError> {
        self.write(move |tables| {
            let conversation_id = record.conversation.conversation_id.as_str();
            let stored_version = load_conversation(&tables.conversations, conversation_id)?
                .map(|stored| stored.version);
            let expected = record.version.checked_sub(1);
            if stored_version != expected || expected.is_none() {
                return Err(PersistenceError::Conflict(format!(
                    "conversation {conversation_id}: stored version {stored_version:?}, update to version {}",
                    record.version
                )));
            }
            tables.put_conversation(&record)?;
            Ok(())
        })
        .await
    }

    async fn list_for_user(
        &self,
        user_id: &UserId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<StoredConversation>, PortError> {
        self.list_conversations(user_id, after, limit).await
    }
}
