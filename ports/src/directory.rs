//! The directory: the live source of truth for conversation metadata and membership. Writes are
//! durable and visible to every node before the call returns (unlike the store, which follows
//! the log).

use async_trait::async_trait;
use wire::log::ConversationRecord;
use wire::{ConversationId, UserId};

use crate::{PortError, StoredConversation};

#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created(ConversationRecord),
    /// A `direct` conversation for the same pair already existed; this is it.
    Existing(ConversationRecord),
}

#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Creates `record` (version 1). For a direct conversation, atomically returns the existing
    /// conversation of the same pair instead of creating a second one.
    async fn create(&self, record: ConversationRecord) -> Result<CreateOutcome, PortError>;

    async fn get(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, PortError>;

    /// Replaces the record when the stored version is exactly `record.version - 1`;
    /// otherwise fails with `PortError::Conflict`.
    async fn update(&self, record: ConversationRecord) -> Result<(), PortError>;

    /// Records that the conversation accepted messages up to `last_seq` at `at`, for the
    /// ordering of `list_for_user`. Adapters whose activity comes from the store (the embedded
    /// one, fed by ingest) may ignore it.
    async fn record_activity(
        &self,
        conversation_id: &ConversationId,
        last_seq: wire::Seq,
        at: wire::Timestamp,
    ) -> Result<(), PortError> {
        let _ = (conversation_id, last_seq, at);
        Ok(())
    }

    /// The user's conversations, most recent activity first, paging after `after`.
    async fn list_for_user(
        &self,
        user_id: &UserId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<StoredConversation>, PortError>;
}
