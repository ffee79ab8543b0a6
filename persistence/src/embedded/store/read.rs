//! Reads shared by read and write transactions of the store.

use chrono::DateTime;
use ports::{StoredConversation, Watermarks};
use redb::ReadableTable;
use wire::log::{ConversationRecord, MessageRecord};
use wire::{Seq, Timestamp};

use crate::error::PersistenceError;

pub(super) fn micros(timestamp: &Timestamp) -> i64 {
    timestamp.timestamp_micros()
}

fn from_micros(value: i64) -> Option<Timestamp> {
    DateTime::from_timestamp_micros(value)
}

pub(super) fn load_conversation(
    conversations: &impl ReadableTable<&'static str, &'static [u8]>,
    conversation_id: &str,
) -> Result<Option<ConversationRecord>, PersistenceError> {
    match conversations.get(conversation_id)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
        None => Ok(None),
    }
}

pub(super) fn load_message(
    messages: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    conversation_id: &str,
    seq: u64,
) -> Result<Option<MessageRecord>, PersistenceError> {
    match messages.get((conversation_id, seq))? {
        Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
        None => Ok(None),
    }
}

/// (last_seq, newest message time in µs); `(0, i64::MIN)` when nothing is stored.
pub(super) fn load_activity(
    activity: &impl ReadableTable<&'static str, (u64, i64)>,
    conversation_id: &str,
) -> Result<(u64, i64), PersistenceError> {
    Ok(activity
        .get(conversation_id)?
        .map(|value| value.value())
        .unwrap_or((0, i64::MIN)))
}

pub(super) fn load_stored_conversation(
    conversations: &impl ReadableTable<&'static str, &'static [u8]>,
    activity: &impl ReadableTable<&'static str, (u64, i64)>,
    conversation_id: &str,
) -> Result<Option<StoredConversation>, PersistenceError> {
    let Some(record) = load_conversation(conversations, conversation_id)? else {
        return Ok(None);
    };
    let (last_seq, last_message_micros) = load_activity(activity, conversation_id)?;
    let created_at = record.conversation.created_at;
    let last_activity_at = from_micros(last_message_micros)
        .filter(|last_message_at| *last_message_at > created_at)
        .unwrap_or(created_at);
    Ok(Some(StoredConversation {
        record,
        last_seq: Seq(last_seq),
        last_activity_at,
    }))
}

pub(super) fn load_watermarks(
    watermarks: &impl ReadableTable<(&'static str, &'static str), (u64, u64)>,
    conversation_id: &str,
    user_id: &str,
) -> Result<Watermarks, PersistenceError> {
    Ok(match watermarks.get((conversation_id, user_id))? {
        Some(value) => {
            let (delivered, read) = value.value();
            Watermarks {
                delivered_seq: Seq(delivered),
                read_seq: Seq(read),
            }
        }
        None => Watermarks::default(),
    })
}

/// The `direct_pairs` key of a direct conversation: its pair's two user ids, ascending.
pub(super) fn direct_pair(record: &ConversationRecord) -> Option<(&str, &str)> {
    record
        .direct_pair()
        .map(|pair| (pair.lower.as_str(), pair.higher.as_str()))
}
