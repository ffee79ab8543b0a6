//! [`FreshStore`]: the node's view of the embedded store, which its in-process ingest fills
//! from the log a little later (up to `ingest.linger_ms` under steady traffic). A read that
//! finds nothing, and every range read, first waits for ingest to have written what the log
//! held when the read began ([`IngestBarrier`]), so a message the node acknowledged is never
//! missing from what it reads: a reaction to a message just out of the conversation's window,
//! a history page, an export. Reads that find what they ask for do not wait.
//!
//! The wait is bounded by [`LONGEST_WAIT`]: a stopped or failing ingest (reported by
//! `/readyz`) leaves reads as they were before, behind the log.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ingest::IngestBarrier;
use ports::{MessageQuery, PortError, Store, StoreWrite, StoredConversation, Watermarks};
use wire::log::MessageRecord;
use wire::{ClientMsgId, ConversationId, MessageId, UserId};

/// Longest a read waits for ingest before it reads what the store has.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct FreshStore {
    inner: Arc<dyn Store>,
    barrier: IngestBarrier,
}

impl FreshStore {
    pub(crate) fn new(inner: Arc<dyn Store>, barrier: IngestBarrier) -> Self {
        Self { inner, barrier }
    }

    /// What `read` finds; when it finds nothing, what it finds once ingest caught up.
    async fn found_or_after_ingest<T, F, Fut>(&self, read: F) -> Result<Option<T>, PortError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<T>, PortError>>,
    {
        if let Some(found) = read().await? {
            return Ok(Some(found));
        }
        self.caught_up().await;
        read().await
    }

    async fn caught_up(&self) {
        if tokio::time::timeout(LONGEST_WAIT, self.barrier.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "store read without waiting for ingest any longer (ingest stopped or failing)"
            );
        }
    }
}

#[async_trait]
impl Store for FreshStore {
    async fn apply(&self, writes: Vec<StoreWrite>) -> Result<(), PortError> {
        self.inner.apply(writes).await
    }

    async fn conversation(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<StoredConversation>, PortError> {
        self.found_or_after_ingest(|| self.inner.conversation(conversation_id))
            .await
    }

    async fn watermarks(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
    ) -> Result<Watermarks, PortError> {
        self.inner.watermarks(conversation_id, user_id).await
    }

    async fn message(
        &self,
        conversation_id: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, PortError> {
        self.found_or_after_ingest(|| self.inner.message(conversation_id, message_id))
            .await
    }

    async fn message_by_client_id(
        &self,
        conversation_id: &ConversationId,
        sender_id: &UserId,
        client_msg_id: &ClientMsgId,
    ) -> Result<Option<MessageRecord>, PortError> {
        self.found_or_after_ingest(|| {
            self.inner
                .message_by_client_id(conversation_id, sender_id, client_msg_id)
        })
        .await
    }

    async fn messages(
        &self,
        conversation_id: &ConversationId,
        query: MessageQuery,
    ) -> Result<Vec<MessageRecord>, PortError> {
        self.caught_up().await;
        self.inner.messages(conversation_id, query).await
    }

    async fn is_ready(&self) -> bool {
        self.inner.is_ready().await
    }

    async fn wait_for_log(&self) {
        self.caught_up().await;
    }
}
