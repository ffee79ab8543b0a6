//! [`HookedStore`]: a store that delegates to another one, except that every `apply` first goes
//! through an [`ApplyHook`] — to make writes fail, or hold them, in tests of the store's callers
//! — and every `message_by_client_id` through its read hook (to race a reader).

use std::sync::Arc;

use async_trait::async_trait;
use wire::log::MessageRecord;
use wire::{ClientMsgId, ConversationId, MessageId, UserId};

use crate::{MessageQuery, PortError, Store, StoreWrite, StoredConversation, Watermarks};

/// Runs before each `apply` of a [`HookedStore`]; an error is returned instead of applying.
#[async_trait]
pub trait ApplyHook: Send + Sync + 'static {
    async fn before_apply(&self) -> Result<(), PortError>;

    /// Runs before each `message_by_client_id`; nothing by default.
    async fn before_client_id_read(&self) {}
}

pub struct HookedStore<H> {
    pub inner: Arc<dyn Store>,
    pub hook: H,
}

#[async_trait]
impl<H: ApplyHook> Store for HookedStore<H> {
    async fn apply(&self, writes: Vec<StoreWrite>) -> Result<(), PortError> {
        self.hook.before_apply().await?;
        self.inner.apply(writes).await
    }

    async fn conversation(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<StoredConversation>, PortError> {
        self.inner.conversation(conversation_id).await
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
        self.inner.message(conversation_id, message_id).await
    }

    async fn message_by_client_id(
        &self,
        conversation_id: &ConversationId,
        sender_id: &UserId,
        client_msg_id: &ClientMsgId,
    ) -> Result<Option<MessageRecord>, PortError> {
        self.hook.before_client_id_read().await;
        self.inner
            .message_by_client_id(conversation_id, sender_id, client_msg_id)
            .await
    }

    async fn messages(
        &self,
        conversation_id: &ConversationId,
        query: MessageQuery,
    ) -> Result<Vec<MessageRecord>, PortError> {
        self.inner.messages(conversation_id, query).await
    }

    async fn is_ready(&self) -> bool {
        self.inner.is_ready().await
    }
}
