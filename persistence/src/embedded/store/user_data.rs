//! [`UserDataScan`] over the embedded store: the `messages` table has no index by user, so a
//! scan walks it in key order (conversation id, seq) from the cursor and keeps the user's
//! messages. Each call reads at most [`ROWS_PER_CALL`] rows, so one call holds its read
//! transaction briefly however large the store; a whole export reads the table once.

use std::ops::Bound;

use async_trait::async_trait;
use ports::{PortError, UserDataScan, UserMessageCursor, UserMessagePage, UserMessages};
use wire::log::MessageRecord;
use wire::{ConversationId, Seq, UserId};

use super::tables::MESSAGES;
use super::EmbeddedStore;

/// Rows of the `messages` table one call reads at most.
const ROWS_PER_CALL: usize = 20_000;

/// Whether `record` is one of the user's messages of kind `which`.
fn listed(record: &MessageRecord, user_id: &UserId, which: UserMessages) -> bool {
    match which {
        UserMessages::SentBy => &record.message.sender_id == user_id,
        UserMessages::ReactedBy => record
            .message
            .reactions
            .values()
            .any(|users| users.contains(user_id)),
    }
}

#[async_trait]
impl UserDataScan for EmbeddedStore {
    async fn user_messages(
        &self,
        user_id: &UserId,
        which: UserMessages,
        after: Option<&UserMessageCursor>,
        limit: usize,
    ) -> Result<UserMessagePage, PortError> {
        let user_id = user_id.clone();
        let after = after.cloned();
        let limit = limit.max(1);
        self.read(move |read| {
            let messages = read.open_table(MESSAGES)?;
            let start = match &after {
                Some(cursor) => Bound::Excluded((cursor.conversation_id.as_str(), cursor.seq.0)),
                None => Bound::Unbounded,
            };
            let mut page = UserMessagePage::default();
            let mut last_read = None;
            for (rows_read, row) in messages.range((start, Bound::Unbounded))?.enumerate() {
                if rows_read == ROWS_PER_CALL || page.records.len() == limit {
                    page.next = last_read;
                    return Ok(page);
                }
                let (key, bytes) = row?;
                let (conversation_id, seq) = key.value();
                last_read = Some(UserMessageCursor {
                    conversation_id: ConversationId::new(conversation_id),
                    seq: Seq(seq),
                });
                let record: MessageRecord = serde_json::from_slice(bytes.value())?;
                if listed(&record, &user_id, which) {
                    page.records.push(record);
                }
            }
            Ok(page)
        })
        .await
    }
}
