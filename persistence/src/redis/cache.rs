//! [`RedisMessageCache`]: the newest messages of each conversation, shared by every node.
//!
//! Keys per conversation: `cache:{conversation}`, a hash `seq → "{version}|{json}"` (`{version}d`
//! for a deleted message), and `cache-seqs:{conversation}`, a sorted set of the cached seqs used
//! to trim the oldest. `put` is one Lua script (`scripts/cache_put.lua`): a stored version is
//! only replaced by one that supersedes it ([`MessageRecord::supersedes`]: a deletion is final,
//! else the higher version wins), then the conversation is trimmed to `capacity` seqs. Both keys expire after `ttl` without
//! a `put` (an idle conversation's window is read from the store again). `range` is one `HMGET`;
//! any missing seq makes it `None`.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;
use ports::{MessageCache, PortError, Service};
use wire::log::MessageRecord;
use wire::{ConversationId, Seq};

use super::client::{decode, encode, LuaScript, RedisClient};

/// Messages kept per conversation.
pub const DEFAULT_CACHE_CAPACITY: usize = 200;
/// How long an untouched conversation stays cached.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

static PUT: LuaScript = LuaScript::new("cache_put", include_str!("scripts/cache_put.lua"));

pub struct RedisMessageCache {
    client: RedisClient,
    capacity: usize,
    ttl: Duration,
}

impl RedisMessageCache {
    pub fn new(client: RedisClient) -> Self {
        Self::with_capacity(client, DEFAULT_CACHE_CAPACITY)
    }

    /// Keeps the newest `capacity` (at least 1) messages per conversation.
    pub fn with_capacity(client: RedisClient, capacity: usize) -> Self {
        Self {
            client,
            capacity: capacity.max(1),
            ttl: DEFAULT_CACHE_TTL,
        }
    }

    /// Another idle expiry (zero: never).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn keys(&self, conversation_id: &ConversationId) -> [String; 2] {
        [
            self.client.key(&format!("cache:{conversation_id}")),
            self.client.key(&format!("cache-seqs:{conversation_id}")),
        ]
    }
}

#[async_trait]
impl MessageCache for RedisMessageCache {
    async fn put(
        &self,
        conversation_id: &ConversationId,
        records: &[MessageRecord],
    ) -> Result<(), PortError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(2 + records.len() * 4);
        args.push(self.capacity.to_string());
        args.push(self.ttl.as_millis().to_string());
        for record in records {
            if record.message.conversation_id != *conversation_id {
                return Err(PortError::internal(format!(
                    "message of {} put into the cache of {conversation_id}",
                    record.message.conversation_id
                )));
            }
            args.push(record.message.seq.0.to_string());
            args.push(record.version.to_string());
            args.push(u8::from(record.message.deleted).to_string());
            args.push(encode("message", record)?);
        }
        let _cached: i64 = self
            .client
            .eval(&PUT, &self.keys(conversation_id), &args)
            .await?;
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
        if from == Seq::ZERO || to.0 - from.0 >= self.capacity as u64 {
            // Seq 0 never exists, and a wider range than the cache holds cannot be complete.
            return Ok(None);
        }
        let [hash, _] = self.keys(conversation_id);
        let mut command = redis::cmd("HMGET");
        command.arg(hash);
        for seq in from.0..=to.0 {
            command.arg(seq);
        }
        let values: Vec<Option<Vec<u8>>> = self.client.query(command).await?;
        let mut records = Vec::with_capacity(values.len());
        for value in values {
            let Some(value) = value else {
                return Ok(None);
            };
            let separator = value.iter().position(|byte| *byte == b'|').ok_or_else(|| {
                PortError::corrupt(Service::Redis, "cached message", "no version")
            })?;
            records.push(decode("cached message", &value[separator + 1..])?);
        }
        Ok(Some(records))
    }
}
