//! What a data-access export (and an erasure) asks of the store: one user's messages across
//! every conversation, paged with a cursor so that no caller holds them all at once
//! (protocol v1.1, "Compliance"). Implemented by the embedded store and MongoDB.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wire::log::MessageRecord;
use wire::{ConversationId, Seq, UserId};

use crate::PortError;

/// Which of a user's messages a scan lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserMessages {
    /// The messages the user sent (deleted ones and aborted sends' tombstones too).
    SentBy,
    /// The messages (anyone's) that carry a reaction of the user.
    ReactedBy,
}

/// Where a scan resumes: after this message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserMessageCursor {
    pub conversation_id: ConversationId,
    pub seq: Seq,
}

impl UserMessageCursor {
    /// The cursor just after `record`.
    pub fn after(record: &MessageRecord) -> Self {
        Self {
            conversation_id: record.message.conversation_id.clone(),
            seq: record.message.seq,
        }
    }
}

/// One page of a scan: records ascending by (conversation id, seq). `next` is where the next
/// page starts, `None` when the scan is complete. A page may hold fewer than `limit` records
/// (even none) while `next` is set: an adapter may bound the work of one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserMessagePage {
    pub records: Vec<MessageRecord>,
    pub next: Option<UserMessageCursor>,
}

#[async_trait]
pub trait UserDataScan: Send + Sync + 'static {
    /// Up to `limit` (at least 1) of the user's messages of kind `which`, after `after`, as
    /// stored (the current version; purged messages are gone).
    async fn user_messages(
        &self,
        user_id: &UserId,
        which: UserMessages,
        after: Option<&UserMessageCursor>,
        limit: usize,
    ) -> Result<UserMessagePage, PortError>;
}
