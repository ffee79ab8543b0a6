//! Writes inside one store write transaction: the idempotent `StoreWrite`s and the directory's
//! conversation writes.

use std::collections::BTreeSet;

use ports::StoreWrite;
use redb::{ReadableTable, Table, WriteTransaction};
use wire::log::{ConversationRecord, ErasedChange, MessageRecord, ReactionDelta};
use wire::{ConversationId, Seq, UserId};

use super::read::{direct_pair, load_activity, load_conversation, load_message, micros};
use super::tables::{
    ACTIVITY, CLIENT_IDS, CONVERSATIONS, DIRECT_PAIRS, MESSAGES, MESSAGE_IDS, PURGED,
    USER_CONVERSATIONS, WATERMARKS,
};
use crate::error::PersistenceError;

/// Every store table, opened once per write transaction.
pub(super) struct WriteTables<'txn> {
    pub(super) messages: Table<'txn, (&'static str, u64), &'static [u8]>,
    pub(super) message_ids: Table<'txn, &'static str, (&'static str, u64)>,
    pub(super) client_ids: Table<'txn, (&'static str, &'static str, &'static str), u64>,
    pub(super) conversations: Table<'txn, &'static str, &'static [u8]>,
    pub(super) activity: Table<'txn, &'static str, (u64, i64)>,
    pub(super) user_conversations: Table<'txn, (&'static str, &'static str), ()>,
    pub(super) direct_pairs: Table<'txn, (&'static str, &'static str), &'static str>,
    pub(super) watermarks: Table<'txn, (&'static str, &'static str), (u64, u64)>,
    pub(super) purged: Table<'txn, &'static str, u64>,
}

impl<'txn> WriteTables<'txn> {
    pub(super) fn open(write: &'txn WriteTransaction) -> Result<Self, PersistenceError> {
        Ok(Self {
            messages: write.open_table(MESSAGES)?,
            message_ids: write.open_table(MESSAGE_IDS)?,
            client_ids: write.open_table(CLIENT_IDS)?,
            conversations: write.open_table(CONVERSATIONS)?,
            activity: write.open_table(ACTIVITY)?,
            user_conversations: write.open_table(USER_CONVERSATIONS)?,
            direct_pairs: write.open_table(DIRECT_PAIRS)?,
            watermarks: write.open_table(WATERMARKS)?,
            purged: write.open_table(PURGED)?,
        })
    }

    pub(super) fn apply(&mut self, write: &StoreWrite) -> Result<(), PersistenceError> {
        match write {
            StoreWrite::Message(record) => self.put_message(record),
            StoreWrite::Reaction(delta) => self.apply_reaction(delta),
            StoreWrite::Conversation(record) => self.put_conversation(record).map(|_| ()),
            StoreWrite::Watermarks {
                conversation_id,
                user_id,
                delivered_seq,
                read_seq,
            } => self.raise_watermarks(conversation_id, user_id, *delivered_seq, *read_seq),
            StoreWrite::Purge {
                conversation_id,
                through_seq,
            } => self.purge(conversation_id, *through_seq),
            StoreWrite::Erase {
                conversation_id,
                user_id,
                through_seq,
            } => self.erase_user(conversation_id, user_id, *through_seq),
        }
    }

    /// The highest seq retention purged in the conversation (0: none).
    fn purged_through(&self, conversation_id: &str) -> Result<u64, PersistenceError> {
        Ok(self
            .purged
            .get(conversation_id)?
            .map_or(0, |value| value.value()))
    }

    /// Removes the conversation's messages up to `through` (with their id and client id
    /// entries) and records the purge.
    fn purge(
        &mut self,
        conversation_id: &ConversationId,
        through: Seq,
    ) -> Result<(), PersistenceError> {
        let id = conversation_id.as_str();
        let purged = self.purged_through(id)?;
        if through.0 <= purged {
            return Ok(());
        }
        let mut doomed: Vec<MessageRecord> = Vec::new();
        for entry in self.messages.range((id, purged + 1)..=(id, through.0))? {
            let (_, bytes) = entry?;
            doomed.push(serde_json::from_slice(bytes.value())?);
        }
        for record in &doomed {
            let message = &record.message;
            let seq = message.seq.0;
            self.messages.remove((id, seq))?;
            let indexed = self
                .message_ids
                .get(message.message_id.as_str())?
                .map(|value| value.value().1);
            if indexed == Some(seq) {
                self.message_ids.remove(message.message_id.as_str())?;
            }
            let client_key = (
                id,
                message.sender_id.as_str(),
                message.client_msg_id.as_str(),
            );
            if self.client_ids.get(client_key)?.map(|value| value.value()) == Some(seq) {
                self.client_ids.remove(client_key)?;
            }
        }
        self.purged.insert(id, through.0)?;
        Ok(())
    }

    /// Erases the user from the conversation's messages up to `through` and drops their
    /// watermarks ([`StoreWrite::Erase`]).
    fn erase_user(
        &mut self,
        conversation_id: &ConversationId,
        user_id: &UserId,
        through: Seq,
    ) -> Result<(), PersistenceError> {
        let id = conversation_id.as_str();
        let mut changed: Vec<MessageRecord> = Vec::new();
        for entry in self.messages.range((id, 0)..=(id, through.0))? {
            let (_, bytes) = entry?;
            let mut record: MessageRecord = serde_json::from_slice(bytes.value())?;
            if record.erase_user(user_id, through) != ErasedChange::Unchanged {
                changed.push(record);
            }
        }
        for record in &changed {
            let bytes = serde_json::to_vec(record)?;
            self.messages
                .insert((id, record.message.seq.0), bytes.as_slice())?;
        }
        self.watermarks.remove((id, user_id.as_str()))?;
        Ok(())
    }

    /// Applies a reaction change to the stored message (skipped when it is not stored).
    fn apply_reaction(&mut self, delta: &ReactionDelta) -> Result<(), PersistenceError> {
        let conversation_id = delta.conversation_id.as_str();
        let Some(mut record) = load_message(&self.messages, conversation_id, delta.seq.0)? else {
            tracing::warn!(conversation_id, message_id = %delta.message_id, "reaction change for a message not in the store: skipped");
            return Ok(());
        };
        if delta.apply_to(&mut record) {
            self.put_message(&record)?;
        }
        Ok(())
    }

    /// Inserts the message, or replaces it when `record.version` is higher than the stored one,
    /// and raises the conversation's activity.
    fn put_message(&mut self, record: &MessageRecord) -> Result<(), PersistenceError> {
        let message = &record.message;
        let conversation_id = message.conversation_id.as_str();
        let seq = message.seq.0;
        if seq <= self.purged_through(conversation_id)? {
            return Ok(());
        }
        let stored_version =
            load_message(&self.messages, conversation_id, seq)?.map(|stored| stored.version);
        if stored_version.is_some_and(|version| version >= record.version) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(record)?;
        self.messages
            .insert((conversation_id, seq), bytes.as_slice())?;
        self.message_ids
            .insert(message.message_id.as_str(), (conversation_id, seq))?;
        // An aborted send's tombstone must not shadow a retry of the same client_msg_id.
        let client_key = (
            conversation_id,
            message.sender_id.as_str(),
            message.client_msg_id.as_str(),
        );
        if record.is_aborted() {
            if self.client_ids.get(client_key)?.map(|value| value.value()) == Some(seq) {
                self.client_ids.remove(client_key)?;
            }
        } else {
            self.client_ids.insert(client_key, seq)?;
        }
        let (last_seq, last_message_micros) = load_activity(&self.activity, conversation_id)?;
        let raised = (
            last_seq.max(seq),
            last_message_micros.max(micros(&message.created_at)),
        );
        if raised != (last_seq, last_message_micros) {
            self.activity.insert(conversation_id, raised)?;
        }
        Ok(())
    }

    /// Inserts the conversation, or replaces it when `record.version` is higher. Replaces the
    /// participant set: users no longer listed lose their index entry and watermarks, users who
    /// stay keep theirs. Returns whether anything was written.
    pub(super) fn put_conversation(
        &mut self,
        record: &ConversationRecord,
    ) -> Result<bool, PersistenceError> {
        let conversation_id = record.conversation.conversation_id.as_str();
        let stored = load_conversation(&self.conversations, conversation_id)?;
        if stored
            .as_ref()
            .is_some_and(|stored| stored.version >= record.version)
        {
            return Ok(false);
        }
        let new_users: BTreeSet<&str> = record
            .participants
            .iter()
            .map(|participant| participant.user_id.as_str())
            .collect();
        if let Some(stored) = &stored {
            for participant in &stored.participants {
                let user_id = participant.user_id.as_str();
                if !new_users.contains(user_id) {
                    self.user_conversations.remove((user_id, conversation_id))?;
                    self.watermarks.remove((conversation_id, user_id))?;
                }
            }
        }
        for user_id in &new_users {
            self.user_conversations
                .insert((*user_id, conversation_id), ())?;
        }
        if let Some(pair) = direct_pair(record) {
            if self.direct_pairs.get(pair)?.is_none() {
                self.direct_pairs.insert(pair, conversation_id)?;
            }
        }
        let bytes = serde_json::to_vec(record)?;
        self.conversations
            .insert(conversation_id, bytes.as_slice())?;
        Ok(true)
    }

    fn raise_watermarks(
        &mut self,
        conversation_id: &ConversationId,
        user_id: &UserId,
        delivered_seq: Seq,
        read_seq: Seq,
    ) -> Result<(), PersistenceError> {
        let key = (conversation_id.as_str(), user_id.as_str());
        let (delivered, read) = self
            .watermarks
            .get(key)?
            .map(|value| value.value())
            .unwrap_or((0, 0));
        let raised = (delivered.max(delivered_seq.0), read.max(read_seq.0));
        if raised != (delivered, read) {
            self.watermarks.insert(key, raised)?;
        }
        Ok(())
    }
}
