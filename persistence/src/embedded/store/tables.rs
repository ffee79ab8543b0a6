//! The store's redb tables and their key layout.

use redb::TableDefinition;

/// (conversation_id, seq) → serde_json of the `MessageRecord`.
pub(super) const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// message_id → (conversation_id, seq).
pub(super) const MESSAGE_IDS: TableDefinition<&str, (&str, u64)> =
    TableDefinition::new("message_ids");
/// (conversation_id, sender_id, client_msg_id) → seq.
pub(super) const CLIENT_IDS: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("client_msg_ids");
/// conversation_id → serde_json of the `ConversationRecord`.
pub(super) const CONVERSATIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("conversations");
/// conversation_id → (last_seq, newest message's created_at in µs since the epoch). Kept apart
/// from the record so messages stored before their conversation still count.
pub(super) const ACTIVITY: TableDefinition<&str, (u64, i64)> = TableDefinition::new("activity");
/// (user_id, conversation_id) → (): the participation index.
pub(super) const USER_CONVERSATIONS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("user_conversations");
/// (smaller user_id, larger user_id) → conversation_id of their direct conversation.
pub(super) const DIRECT_PAIRS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("direct_pairs");
/// (conversation_id, user_id) → (delivered_seq, read_seq).
pub(super) const WATERMARKS: TableDefinition<(&str, &str), (u64, u64)> =
    TableDefinition::new("watermarks");

/// conversation_id → the highest seq retention purged (`StoreWrite::Purge`): messages at or
/// below it are gone and later writes of them are skipped.
pub(super) const PURGED: TableDefinition<&str, u64> = TableDefinition::new("purged");

/// Creates every table, so read transactions never meet a missing one.
pub(super) fn create_all(write: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    write.open_table(MESSAGES)?;
    write.open_table(MESSAGE_IDS)?;
    write.open_table(CLIENT_IDS)?;
    write.open_table(CONVERSATIONS)?;
    write.open_table(ACTIVITY)?;
    write.open_table(USER_CONVERSATIONS)?;
    write.open_table(DIRECT_PAIRS)?;
    write.open_table(WATERMARKS)?;
    write.open_table(PURGED)?;
    write.open_table(super::sanctions::SANCTIONS)?;
    write.open_table(super::audit::AUDIT)?;
    write.open_table(super::retention::RETENTION)?;
    write.open_table(super::jobs::JOBS)?;
    Ok(())
}
