//! [`MemoryMessageCache`]: the recent-message cache of a standalone node.
//!
//! Per conversation, a map seq → newest version, trimmed to the newest `capacity` seqs. Memory
//! grows with the number of conversations that ever had messages put (at most `capacity`
//! messages each); a standalone node's conversations are bounded by its store anyway.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use ports::{MessageCache, PortError};
use wire::log::MessageRecord;
use wire::{ConversationId, Seq};

/// Messages kept per conversation.
pub const DEFAULT_CACHE_CAPACITY: usize = 200;

#[derive(Debug)]
pub struct MemoryMessageCache {
    capacity: usize,
    conversations: Mutex<HashMap<ConversationId, BTreeMap<Seq, MessageRecord>>>,
}

impl MemoryMessageCache {
    /// Keeps the newest `capacity` (at least 1) messages per conversation.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            conversations: Mutex::new(HashMap::new()),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ConversationId, BTreeMap<Seq, MessageRecord>>> {
        self.conversations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryMessageCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_CAPACITY)
    }
}

#[async_trait]
impl MessageCache for MemoryMessageCache {
    async fn put(
        &self,
        conversation_id: &ConversationId,
        records: &[MessageRecord],
    ) -> Result<(), PortError> {
        if records.is_empty() {
            return Ok(());
        }
        if let Some(record) = records
            .iter()
            .find(|record| record.message.conversation_id != *conversation_id)
        {
            return Err(PortError::internal(format!(
                "message of {} put into the cache of {conversation_id}",
                record.message.conversation_id
            )));
        }
        let mut conversations = self.lock();
        let messages = conversations.entry(conversation_id.clone()).or_default();
        for record in records {
            match messages.get(&record.message.seq) {
                Some(cached) if !record.supersedes(cached) => {}
                _ => {
                    messages.insert(record.message.seq, record.clone());
                }
            }
        }
        while messages.len() > self.capacity {
            messages.pop_first();
        }
        Ok(())
    }

    async fn range(
        &self,
        conversation_id: &ConversationId,
        from: Seq,
        to: Seq,
    ) -> Result<Option<Vec<MessageRecord>>, PortError> {
        if from > to {
            return Ok(Some(Vec::new()));
        }
        let conversations = self.lock();
        let Some(messages) = conversations.get(conversation_id) else {
            return Ok(None);
        };
        let found: Vec<MessageRecord> = messages
            .range(from..=to)
            .map(|(_, record)| record.clone())
            .collect();
        if found.len() as u64 != to.0 - from.0 + 1 {
            return Ok(None);
        }
        Ok(Some(found))
    }
}

/// The standalone node's cache: none. One node's conversation actors keep their own window of
/// recent messages and the embedded store answers the rest, so a second in-process copy would
/// only cost memory (it would grow with every conversation ever active).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMessageCache;

#[async_trait::async_trait]
impl ports::MessageCache for NoMessageCache {
    async fn put(
        &self,
        _conversation_id: &wire::ConversationId,
        _records: &[wire::log::MessageRecord],
    ) -> Result<(), ports::PortError> {
        Ok(())
    }

    async fn range(
        &self,
        _conversation_id: &wire::ConversationId,
        _from: wire::Seq,
        _to: wire::Seq,
    ) -> Result<Option<Vec<wire::log::MessageRecord>>, ports::PortError> {
        Ok(None)
    }
}
