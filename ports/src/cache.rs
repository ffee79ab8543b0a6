//! The recent-message cache: the newest messages of each conversation, shared by every node
//! (Redis in a cluster), so any node answers `sync` and `history.get` for recent messages
//! without the store, and a conversation whose actor moved to another node keeps its window.

use async_trait::async_trait;
use wire::log::MessageRecord;
use wire::{ConversationId, Seq};

use crate::PortError;

#[async_trait]
pub trait MessageCache: Send + Sync + 'static {
    /// Stores new messages or new versions of cached ones (only a version that supersedes the
    /// cached one replaces it: [`MessageRecord::supersedes`]), then trims the conversation to
    /// the `capacity` seqs put most recently (so a changed older message stays cached a while).
    async fn put(
        &self,
        conversation_id: &ConversationId,
        records: &[MessageRecord],
    ) -> Result<(), PortError>;

    /// The messages with `from <= seq <= to`, ascending, when the cache holds every one of
    /// them; `None` when any is missing (the caller reads the store).
    async fn range(
        &self,
        conversation_id: &ConversationId,
        from: Seq,
        to: Seq,
    ) -> Result<Option<Vec<MessageRecord>>, PortError>;

    /// Whichever messages with `from <= seq <= to` the cache holds, ascending (a reader of the
    /// store overlays them: they may be newer versions than the store has yet).
    async fn held(
        &self,
        conversation_id: &ConversationId,
        from: Seq,
        to: Seq,
    ) -> Result<Vec<MessageRecord>, PortError>;

    /// Forgets the conversation's cached messages with a seq up to `through` (retention purged
    /// them).
    async fn forget_through(
        &self,
        conversation_id: &ConversationId,
        through: Seq,
    ) -> Result<(), PortError>;
}
