//! What the store says, for the scripts: the ack of a key's stored message, and how far the
//! store reached in a conversation.

use ports::{DedupKey, MessageQuery, PortError, SendIntent};
use wire::ops::SendAck;
use wire::{ConversationId, Seq};

use super::{encode, RedisSequencer, NOT_IN_STORE};

impl RedisSequencer {
    /// The seq of the newest stored message (not `Store::conversation`: messages may be stored
    /// before their conversation record).
    pub(super) async fn newest_stored_seq(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Seq, PortError> {
        let newest = MessageQuery {
            after_seq: None,
            before_seq: None,
            limit: 1,
        };
        Ok(self
            .store
            .messages(conversation_id, newest)
            .await?
            .last()
            .map_or(Seq::ZERO, |record| record.message.seq))
    }

    /// What the store says about each asked key (see [`store_answer`]); `""`
    /// for keys not asked.
    pub(super) async fn store_answers(
        &self,
        conversation_id: &ConversationId,
        sends: &[SendIntent],
        asked: &[usize],
        answers: &mut [String],
    ) -> Result<(), PortError> {
        for &index in asked {
            let stored = self.stored_ack(conversation_id, &sends[index].key).await?;
            answers[index] = store_answer(stored.as_ref())?;
        }
        Ok(())
    }

    /// The ack of the message the store holds for the key (never a tombstone's).
    pub(super) async fn stored_ack(
        &self,
        conversation_id: &ConversationId,
        key: &DedupKey,
    ) -> Result<Option<SendAck>, PortError> {
        let record = self
            .store
            .message_by_client_id(conversation_id, &key.sender_id, &key.client_msg_id)
            .await?;
        Ok(record.map(|record| SendAck {
            message_id: record.message.message_id,
            seq: record.message.seq,
            created_at: record.message.created_at,
        }))
    }
}

/// A script's word for what the store holds for a key: the ack (JSON), or `-` for nothing.
pub(super) fn store_answer(stored: Option<&SendAck>) -> Result<String, PortError> {
    match stored {
        Some(ack) => encode("ack", ack),
        None => Ok(NOT_IN_STORE.to_owned()),
    }
}
