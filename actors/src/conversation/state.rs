//! What a conversation actor knows about its conversation: the directory record, the last seq,
//! a window of recent messages and the watermarks it has looked at.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ports::{MessageQuery, Watermarks};
use wire::log::{ConversationRecord, MessageRecord};
use wire::ops::HistoryResult;
use wire::{Conversation, ConversationId, MessageId, Seq, UserId};

use super::window::Window;
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
    /// Shared by the states a batch forks (cloning a large group's members for every batch
    /// would cost as much as the batch); a change copies it (`Arc::make_mut`).
    pub record: Arc<ConversationRecord>,
    pub last_seq: Seq,
    /// Newest messages (ending at `last_seq` when non-empty) and this actor's versions of
    /// older ones.
    window: Window,
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
        let mut window = Window::new(capacity);
        if last_seq > Seq::ZERO {
            let from = Seq(last_seq.0.saturating_sub(warm - 1).max(1));
            if let Some(cached) = ports.cache.range(conversation_id, from, last_seq).await? {
                cached
                    .into_iter()
                    .for_each(|record| window.push_newest(record));
            }
        }
        if window.is_empty() {
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
                newest
                    .into_iter()
                    .for_each(|record| window.push_newest(record));
            }
        }
        let mut state = Self {
            record: Arc::new(record),
            last_seq,
            window,
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
        self.window.purge(through);
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
                Some(record) => self.record = Arc::new(record),
                None => return Err(OpError::not_found("no such conversation")),
            }
        }
        let live = ports.sequencer.last_seq(&conversation_id).await?;
        self.catch_up_to(node, live).await
    }

    /// Takes in the messages other nodes accepted up to `live` (the highest seq allocated)
    /// from the shared cache; the window is dropped when the cache cannot fill the gap.
    async fn catch_up_to(&mut self, node: &Node, live: Seq) -> Result<(), OpError> {
        if live <= self.last_seq {
            return Ok(());
        }
        let conversation_id = &self.record.conversation.conversation_id;
        let missing = node
            .ports()
            .cache
            .range(conversation_id, self.last_seq.next(), live)
            .await?;
        match missing {
            Some(records) => {
                for record in records {
                    self.put_message(record);
                }
            }
            None => self.window.clear_recent(),
        }
        // Seqs reserved but not yet accepted may be above what the cache holds.
        self.last_seq = self.last_seq.max(live);
        Ok(())
    }

    /// [`Self::catch_up_to`] for a batch of sends that learnt `live` from its reservation
    /// (no `refresh` before it): the seqs are reserved, so the batch goes on whatever the
    /// cache answers; when it cannot be read the window is dropped (readers then go to the
    /// cache and the store, as after any gap).
    pub async fn catch_up_after_reserving(&mut self, node: &Node, live: Seq) {
        if let Err(error) = self.catch_up_to(node, live).await {
            tracing::debug!(error = %error, "catching up from the cache failed; window dropped");
            self.window.clear_recent();
            self.last_seq = self.last_seq.max(live);
        }
    }

    /// Drops the window of recent messages and the versions of older ones (another node
    /// changed one of them: the shared cache has the newer versions).
    pub fn forget_recent(&mut self) {
        self.window.clear();
    }

    /// What `conversation.list` needs that the store may not have yet.
    pub fn snapshot(&self, user_id: &UserId) -> Snapshot {
        Snapshot {
            last_seq: self.last_seq,
            last_activity_at: self.window.newest().map(|record| record.message.created_at),
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
                    .window
                    .newest()
                    .is_none_or(|newest| newest.message.seq != self.last_seq)
            {
                self.window.clear_recent();
            }
            self.last_seq = seq;
            self.window.push_newest(record);
        } else {
            self.window.put_version(record);
        }
    }

    /// The window, for the node's memory figures.
    pub fn window(&self) -> &Window {
        &self.window
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
        if let Some(record) = self.window.find(message_id) {
            return Ok(record.clone());
        }
        let conversation_id = &self.record.conversation.conversation_id;
        let stored = node
            .ports()
            .store
            .message(conversation_id, message_id)
            .await?;
        // The window holds the newest version of the messages it covers.
        if let Some(record) = stored {
            return Ok(match self.window.recent_at(record.message.seq) {
                Some(newer) => newer.clone(),
                None => record,
            });
        }
        // Accepted on another node and not in this node's store: the shared cache may hold it.
        if self.last_seq > Seq::ZERO {
            let from = Seq(self
                .last_seq
                .0
                .saturating_sub(self.window.capacity() as u64 - 1)
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
        if let Some(messages) = self.window.recent_range(from, to) {
            return Ok(page(messages, has_more));
        }
        let conversation_id = &self.record.conversation.conversation_id;
        if let Some(cached) = node.ports().cache.range(conversation_id, from, to).await? {
            let messages = cached
                .into_iter()
                .map(|record| match self.window.recent_at(record.message.seq) {
                    Some(newer) => newer.message.clone(),
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
        let window = self.window.records_in(from..=to).cloned();
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
