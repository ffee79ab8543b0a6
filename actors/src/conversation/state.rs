//! What a conversation actor knows about its conversation: the directory record, the last seq,
//! a window of recent messages and the watermarks it has looked at.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use ports::{MessageQuery, Watermarks};
use wire::log::{ConversationRecord, MessageRecord};
use wire::ops::HistoryResult;
use wire::{Conversation, ConversationId, MessageId, Seq, UserId};

use crate::node::Node;
use crate::OpError;

/// The live view of a conversation for one user (see [`ConversationState::snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub last_seq: Seq,
    /// Time of the newest message this actor accepted or loaded.
    pub last_activity_at: Option<wire::Timestamp>,
    /// The user's watermarks, when this actor changed or read them.
    pub watermarks: Option<Watermarks>,
}

#[derive(Clone)]
pub struct ConversationState {
    pub record: ConversationRecord,
    pub last_seq: Seq,
    /// Newest messages, ascending and contiguous by seq, ending at `last_seq` when non-empty.
    recent: VecDeque<Arc<MessageRecord>>,
    recent_capacity: usize,
    /// Versions this actor made of messages older than the window (at most `recent_capacity`,
    /// the oldest seqs dropped first): the store has them only once ingest wrote them, so the
    /// next change of the same message, and reads, must start from these.
    changed_before_window: BTreeMap<Seq, Arc<MessageRecord>>,
    watermarks: HashMap<UserId, Watermarks>,
    /// The oldest seq retention keeps: older ones were purged and are never read again.
    first_seq: Seq,
}

impl ConversationState {
    /// Loads the conversation; `Ok(None)` when it does not exist.
    pub async fn load(
        node: &Node,
        conversation_id: &ConversationId,
    ) -> Result<Option<Self>, OpError> {
        let ports = node.ports();
        let Some(record) = ports.directory.get(conversation_id).await? else {
            return Ok(None);
        };
        let last_seq = ports.sequencer.last_seq(conversation_id).await?;
        let first_seq = match &ports.retention {
            Some(policies) => policies.retention(conversation_id).await?.first_seq(),
            None => Seq(1),
        };
        let capacity = node.limits().recent_messages;
        // Warm the window with the newest messages: from the shared cache (which also holds
        // messages accepted on other nodes), else from the store.
        let warm = capacity.min(64) as u64;
        let mut recent = VecDeque::new();
        if last_seq > Seq::ZERO {
            let from = Seq(last_seq.0.saturating_sub(warm - 1).max(1));
            if let Some(cached) = ports.cache.range(conversation_id, from, last_seq).await? {
                recent.extend(cached.into_iter().map(Arc::new));
            }
        }
        if recent.is_empty() {
            let newest = ports
                .store
                .messages(
                    conversation_id,
                    MessageQuery {
                        after_seq: None,
                        before_seq: None,
                        limit: warm as usize,
                    },
                )
                .await?;
            if newest.last().map(|record| record.message.seq) == Some(last_seq)
                && is_contiguous(&newest)
            {
                recent.extend(newest.into_iter().map(Arc::new));
            }
        }
        let mut state = Self {
            record,
            last_seq,
            recent,
            recent_capacity: capacity,
            changed_before_window: BTreeMap::new(),
            watermarks: HashMap::new(),
            first_seq: Seq(1),
        };
        state.purge(Seq(first_seq.0 - 1));
        Ok(Some(state))
    }

    /// Forgets the messages up to `through` (retention purged them): reads start at
    /// `through + 1` from now on. An older purge changes nothing.
    pub fn purge(&mut self, through: Seq) {
        if through < self.first_seq {
            return;
        }
        self.first_seq = through.next();
        while self
            .recent
            .front()
            .is_some_and(|oldest| oldest.message.seq <= through)
        {
            self.recent.pop_front();
        }
        self.changed_before_window.retain(|seq, _| *seq > through);
    }

    /// The client view of the conversation, with the live `last_seq`.
    pub fn conversation(&self) -> Conversation {
        let mut conversation = self.record.conversation.clone();
        conversation.last_seq = self.last_seq;
        conversation
    }

    /// Catches up with changes other nodes made: membership (reloaded from the directory when
    /// `reload_record`) and messages accepted elsewhere (from the shared cache; the window is
    /// dropped when the cache cannot fill the gap).
    pub async fn refresh(&mut self, node: &Node, reload_record: bool) -> Result<(), OpError> {
        let conversation_id = self.record.conversation.conversation_id.clone();
        let ports = node.ports();
        if reload_record {
            match ports.directory.get(&conversation_id).await? {
                Some(record) => self.record = record,
                None => return Err(OpError::not_found("no such conversation")),
            }
        }
        let live = ports.sequencer.last_seq(&conversation_id).await?;
        if live <= self.last_seq {
            return Ok(());
        }
        let missing = ports
            .cache
            .range(&conversation_id, self.last_seq.next(), live)
            .await?;
        match missing {
            Some(records) => {
                for record in records {
                    self.put_message(record);
                }
            }
            None => self.recent.clear(),
        }
        // Seqs reserved but not yet accepted may be above what the cache holds.
        self.last_seq = self.last_seq.max(live);
        Ok(())
    }

    /// Drops the window of recent messages and the versions of older ones (another node
    /// changed one of them: the shared cache has the newer versions).
    pub fn forget_recent(&mut self) {
        self.recent.clear();
        self.changed_before_window.clear();
    }

    /// What `conversation.list` needs that the store may not have yet.
    pub fn snapshot(&self, user_id: &UserId) -> Snapshot {
        Snapshot {
            last_seq: self.last_seq,
            last_activity_at: self.recent.back().map(|record| record.message.created_at),
            watermarks: self.watermarks.get(user_id).copied(),
        }
    }

    pub fn is_member(&self, user_id: &UserId) -> bool {
        self.record.is_member(user_id)
    }

    pub fn require_member(&self, user_id: &UserId) -> Result<(), OpError> {
        if self.is_member(user_id) {
            Ok(())
        } else {
            Err(OpError::not_member())
        }
    }

    /// Adds an accepted message (its seq must be `last_seq + 1`) or a new version of a message.
    pub fn put_message(&mut self, record: MessageRecord) {
        let seq = record.message.seq;
        if seq > self.last_seq {
            if seq != self.last_seq.next()
                || self
                    .recent
                    .back()
                    .is_none_or(|newest| newest.message.seq != self.last_seq)
            {
                self.recent.clear();
            }
            self.last_seq = seq;
            self.recent.push_back(Arc::new(record));
            while self.recent.len() > self.recent_capacity {
                self.recent.pop_front();
            }
            return;
        }
        match self.recent_slot(seq) {
            Some(slot) => self.recent[slot] = Arc::new(record),
            None => {
                self.changed_before_window.insert(seq, Arc::new(record));
                while self.changed_before_window.len() > self.recent_capacity {
                    self.changed_before_window.pop_first();
                }
            }
        }
    }

    fn recent_slot(&self, seq: Seq) -> Option<usize> {
        let first = self.recent.front()?.message.seq;
        if seq < first {
            return None;
        }
        let slot = (seq.0 - first.0) as usize;
        (slot < self.recent.len()).then_some(slot)
    }

    /// Finds the newest version of a message of this conversation, for a change to build on:
    /// from the window or the store, then compared with the shared cache, where another node
    /// may have put a newer version (this node's store never sees that node's changes in
    /// cluster mode, and trails the log in durable mode). A change built on an older version
    /// would lose to the cached one, and readers would never see it.
    pub async fn find_message(
        &self,
        node: &Node,
        message_id: &MessageId,
    ) -> Result<MessageRecord, OpError> {
        let found = self.find_message_here(node, message_id).await?;
        let seq = found.message.seq;
        if seq < self.first_seq {
            // Purged by retention; the store may not have applied the purge yet.
            return Err(OpError::not_found("no such message in this conversation"));
        }
        let conversation_id = &self.record.conversation.conversation_id;
        let cached = node.ports().cache.range(conversation_id, seq, seq).await?;
        Ok(
            match cached.and_then(|records| records.into_iter().next()) {
                Some(cached) if cached.supersedes(&found) => cached,
                _ => found,
            },
        )
    }

    /// Finds a message of this conversation, from the window or the store (or, for one
    /// accepted on another node, the shared cache).
    async fn find_message_here(
        &self,
        node: &Node,
        message_id: &MessageId,
    ) -> Result<MessageRecord, OpError> {
        if let Some(record) = self
            .recent
            .iter()
            .chain(self.changed_before_window.values())
            .find(|record| &record.message.message_id == message_id)
        {
            return Ok(MessageRecord::clone(record));
        }
        let conversation_id = &self.record.conversation.conversation_id;
        let stored = node
            .ports()
            .store
            .message(conversation_id, message_id)
            .await?;
        // The window holds the newest version of the messages it covers.
        if let Some(record) = stored {
            return Ok(match self.recent_slot(record.message.seq) {
                Some(slot) => MessageRecord::clone(&self.recent[slot]),
                None => record,
            });
        }
        // Accepted on another node and not in this node's store: the shared cache may hold it.
        if self.last_seq > Seq::ZERO {
            let from = Seq(self
                .last_seq
                .0
                .saturating_sub(self.recent_capacity as u64 - 1)
                .max(1));
            let cache = &node.ports().cache;
            let held = cache.held(conversation_id, from, self.last_seq).await?;
            if let Some(record) = held
                .into_iter()
                .find(|record| &record.message.message_id == message_id)
            {
                return Ok(record);
            }
        }
        Err(OpError::not_found("no such message in this conversation"))
    }

    pub async fn watermarks(
        &mut self,
        node: &Node,
        user_id: &UserId,
    ) -> Result<Watermarks, OpError> {
        if let Some(watermarks) = self.watermarks.get(user_id) {
            return Ok(*watermarks);
        }
        let conversation_id = &self.record.conversation.conversation_id;
        let watermarks = node
            .ports()
            .store
            .watermarks(conversation_id, user_id)
            .await?;
        self.watermarks.insert(user_id.clone(), watermarks);
        Ok(watermarks)
    }

    pub fn set_watermarks(&mut self, user_id: &UserId, watermarks: Watermarks) {
        self.watermarks.insert(user_id.clone(), watermarks);
    }

    /// Reads messages: from the window when it covers the range, else from the store.
    pub async fn history(
        &self,
        node: &Node,
        query: MessageQuery,
    ) -> Result<HistoryResult, OpError> {
        let upper = match query.before_seq {
            Some(before) => Seq(before.0.saturating_sub(1)).min(self.last_seq),
            None => self.last_seq,
        };
        let first_seq = self.first_seq;
        let lower = query
            .after_seq
            .map(|seq| seq.next())
            .unwrap_or(Seq(1))
            .max(first_seq);
        let page = |messages, has_more| HistoryResult {
            messages,
            has_more,
            first_seq,
        };
        if upper < lower || query.limit == 0 {
            return Ok(page(Vec::new(), false));
        }
        let available = upper.0 - lower.0 + 1;
        let (from, to) = if query.after_seq.is_some() {
            (lower, Seq((lower.0 + query.limit as u64 - 1).min(upper.0)))
        } else {
            (
                Seq(upper.0.saturating_sub(query.limit as u64 - 1).max(lower.0)),
                upper,
            )
        };
        let has_more = available > query.limit as u64;
        if let (Some(first_slot), Some(last_slot)) = (self.recent_slot(from), self.recent_slot(to))
        {
            let messages = (first_slot..=last_slot)
                .map(|slot| self.recent[slot].message.clone())
                .collect();
            return Ok(page(messages, has_more));
        }
        let conversation_id = &self.record.conversation.conversation_id;
        if let Some(cached) = node.ports().cache.range(conversation_id, from, to).await? {
            let messages = cached
                .into_iter()
                .map(|record| match self.recent_slot(record.message.seq) {
                    Some(slot) => self.recent[slot].message.clone(),
                    None => record.message,
                })
                .collect();
            return Ok(page(messages, has_more));
        }
        let messages = self.read_store(node, from, to, query.limit).await?;
        Ok(page(messages, has_more))
    }

    /// Reads `from..=to` from the store, which trails the log by ingest's lag (MongoDB in
    /// durable mode) and, in cluster mode, never sees other nodes' changes: the versions the
    /// shared cache still holds, then this actor's own (older changed messages, the window),
    /// replace the stored ones they supersede.
    async fn read_store(
        &self,
        node: &Node,
        from: Seq,
        to: Seq,
        limit: usize,
    ) -> Result<Vec<wire::Message>, OpError> {
        let conversation_id = &self.record.conversation.conversation_id;
        let ports = node.ports();
        let query = MessageQuery {
            after_seq: Some(Seq(from.0 - 1)),
            before_seq: Some(to.next()),
            limit,
        };
        let stored = ports.store.messages(conversation_id, query).await?;
        let held = ports.cache.held(conversation_id, from, to).await?;
        let window = self
            .changed_before_window
            .range(from..=to)
            .map(|(_, record)| record)
            .chain(&self.recent)
            .filter(|record| (from..=to).contains(&record.message.seq))
            .map(|record| MessageRecord::clone(record));
        let mut merged: BTreeMap<Seq, MessageRecord> = BTreeMap::new();
        for record in stored.into_iter().chain(held).chain(window) {
            match merged.get(&record.message.seq) {
                Some(kept) if kept.supersedes(&record) => {}
                _ => {
                    merged.insert(record.message.seq, record);
                }
            }
        }
        Ok(merged.into_values().map(|record| record.message).collect())
    }
}

fn is_contiguous(records: &[MessageRecord]) -> bool {
    records
        .windows(2)
        .all(|pair| pair[1].message.seq == pair[0].message.seq.next())
}
