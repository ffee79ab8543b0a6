//! [`RedisMessageCache`]: the newest messages of each conversation, shared by every node.
//!
//! Keys per conversation: `cache:{conversation}`, a hash `seq → "{version}|{json}"` (`{version}d`
//! for a deleted message), and `cache-seqs:{conversation}`, a sorted set of the cached seqs
//! scored by when they were put, used to trim the least recently put. `put` is one Lua script
//! (`scripts/cache_put.lua`): a stored version is only replaced by one that supersedes it
//! ([`MessageRecord::supersedes`]: a deletion is final, else the higher version wins), then the
//! conversation is trimmed to `capacity` seqs. Both keys expire after `ttl` without
//! a `put` (an idle conversation's window is read from the store again). `range` and `held` are one `HMGET`;
//! any missing seq makes `range` `None`. `forget_through` (retention) is one Lua script
//! (`scripts/cache_forget.lua`).

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
static FORGET: LuaScript = LuaScript::new("cache_forget", include_str!("scripts/cache_forget.lua"));

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
        let values = self.get(conversation_id, from, to).await?;
        if values.iter().any(Option::is_none) {
            return Ok(None);
        }
        values
            .into_iter()
            .flatten()
            .map(decode_cached)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    async fn held(
        &self,
        conversation_id: &ConversationId,
        from: Seq,
        to: Seq,
    ) -> Result<Vec<MessageRecord>, PortError> {
        if from > to || from == Seq::ZERO {
            return Ok(Vec::new());
        }
        // Callers ask for a page (at most a few hundred seqs): one HMGET.
        let values = self.get(conversation_id, from, to).await?;
        values.into_iter().flatten().map(decode_cached).collect()
    }

    async fn forget_through(
        &self,
        conversation_id: &ConversationId,
        through: Seq,
    ) -> Result<(), PortError> {
        let _forgotten: i64 = self
            .client
            .eval(
                &FORGET,
                &self.keys(conversation_id),
                &[through.0.to_string()],
            )
            .await?;
        Ok(())
    }
}

impl RedisMessageCache {
    /// The cached values of the seqs `from..=to`, in order (`None` where none is cached).
    async fn get(
        &self,
        conversation_id: &ConversationId,
        from: Seq,
        to: Seq,
    ) -> Result<Vec<Option<Vec<u8>>>, PortError> {
        let [hash, _] = self.keys(conversation_id);
        let mut command = redis::cmd("HMGET");
        command.arg(hash);
        for seq in from.0..=to.0 {
            command.arg(seq);
        }
        self.client.query(command).await
    }
}

/// Decodes a cached `"{version}|{json}"` value.
fn decode_cached(value: Vec<u8>) -> Result<MessageRecord, PortError> {
    let separator = value
        .iter()
        .position(|byte| *byte == b'|')
        .ok_or_else(|| PortError::corrupt(Service::Redis, "cached message", "no version"))?;
    decode("cached message", &value[separator + 1..])
}
