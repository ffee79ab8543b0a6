//! [`MemoryMessageCache`]: an in-process recent-message cache (the contract's reference
//! adapter; a standalone node runs without a cache, see [`NoMessageCache`]).
//!
//! Per conversation, a map seq → the version that supersedes the others, trimmed to the
//! `capacity` seqs put most recently. Memory grows with the number of conversations that ever
//! had messages put (at most `capacity` messages each).

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
    conversations: Mutex<HashMap<ConversationId, Cached>>,
}

/// One conversation's cached messages, each with the put that stored it (its put order).
#[derive(Debug, Default)]
struct Cached {
    messages: BTreeMap<Seq, (u64, MessageRecord)>,
    puts: u64,
}

impl Cached {
    fn range(&self, from: Seq, to: Seq) -> Vec<MessageRecord> {
        self.messages
            .range(from..=to)
            .map(|(_, (_, record))| record.clone())
            .collect()
    }

    /// Drops the seqs put least recently until `capacity` are left.
    fn trim(&mut self, capacity: usize) {
        while self.messages.len() > capacity {
            let oldest_put = self
                .messages
                .iter()
                .min_by_key(|(_, (put, _))| *put)
                .map(|(seq, _)| *seq);
            if let Some(seq) = oldest_put {
                self.messages.remove(&seq);
            }
        }
    }
}

impl MemoryMessageCache {
    /// Keeps the `capacity` (at least 1) messages put most recently per conversation.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            conversations: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Cached>> {
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
        let cached = conversations.entry(conversation_id.clone()).or_default();
        for record in records {
            match cached.messages.get(&record.message.seq) {
                Some((_, held)) if !record.supersedes(held) => {}
                _ => {
                    cached.puts += 1;
                    let entry = (cached.puts, record.clone());
                    cached.messages.insert(record.message.seq, entry);
                }
            }
        }
        cached.trim(self.capacity);
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
        let Some(cached) = conversations.get(conversation_id) else {
            return Ok(None);
        };
        let found = cached.range(from, to);
        if found.len() as u64 != to.0 - from.0 + 1 {
            return Ok(None);
        }
        Ok(Some(found))
    }

    async fn held(
        &self,
        conversation_id: &ConversationId,
        from: Seq,
        to: Seq,
    ) -> Result<Vec<MessageRecord>, PortError> {
        if from > to {
            return Ok(Vec::new());
        }
        let conversations = self.lock();
        Ok(conversations
            .get(conversation_id)
            .map(|cached| cached.range(from, to))
            .unwrap_or_default())
    }

    async fn forget_through(
        &self,
        conversation_id: &ConversationId,
        through: Seq,
    ) -> Result<(), PortError> {
        if let Some(cached) = self.lock().get_mut(conversation_id) {
            cached.messages.retain(|seq, _| *seq > through);
        }
        Ok(())
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

    async fn held(
        &self,
        _conversation_id: &wire::ConversationId,
        _from: wire::Seq,
        _to: wire::Seq,
    ) -> Result<Vec<wire::log::MessageRecord>, ports::PortError> {
        Ok(Vec::new())
    }

    async fn forget_through(
        &self,
        _conversation_id: &wire::ConversationId,
        _through: wire::Seq,
    ) -> Result<(), ports::PortError> {
        Ok(())
    }
}
