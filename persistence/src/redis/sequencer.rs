//! [`RedisSequencer`]: one dense seq counter per conversation and the `client_msg_id` → ack
//! map, shared by every node, so a retry that lands on another node gets the original ack.
//!
//! Keys (prefix omitted):
//! - `seq:{conversation}`: hash `{last, seeded}`; `last` is the highest allocated seq, `seeded`
//!   the store's newest seq when the hash was created. No TTL: losing it means re-seeding from
//!   the store, which is only right once ingest caught up (run Redis with persistence).
//! - `ack:{conversation}:{len}:{sender}:{client_msg_id}`: the JSON `SendAck`, with a TTL
//!   ([`DEFAULT_ACK_TTL`], 24 h): the cross-node dedup window.
//!
//! `reserve` is one Lua script (`scripts/sequencer_reserve.lua`): for each key, the recorded ack
//! or `HINCRBY last 1`, all atomic, so fresh seqs of one call are consecutive. A conversation
//! that already had stored messages when its hash was seeded may have acks older than the
//! window: then misses are looked up in the store (`message_by_client_id`), like
//! `MemorySequencer`, and the script runs again with what was found (a second round trip).
//! `release` is a Lua compare-and-set on `last`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, Value};
use ports::{DedupKey, MessageQuery, PortError, Reservation, Sequencer, Store, IN_FLIGHT_TTL};
use wire::ops::SendAck;
use wire::{ConversationId, Seq};

use super::client::{decode, encode, framed, LuaScript, RedisClient};

/// How long a confirmed ack answers retries on any node.
pub const DEFAULT_ACK_TTL: Duration = Duration::from_secs(24 * 60 * 60);

static RESERVE: LuaScript = LuaScript::new(
    "sequencer_reserve",
    include_str!("scripts/sequencer_reserve.lua"),
);
static SEED: LuaScript =
    LuaScript::new("sequencer_seed", include_str!("scripts/sequencer_seed.lua"));
static ABANDON: LuaScript = LuaScript::new(
    "sequencer_abandon",
    include_str!("scripts/sequencer_abandon.lua"),
);
static RELEASE: LuaScript = LuaScript::new(
    "sequencer_release",
    include_str!("scripts/sequencer_release.lua"),
);

const NOT_SEEDED: i64 = -1;
const NEEDS_STORE: i64 = -2;

pub struct RedisSequencer {
    client: RedisClient,
    store: Arc<dyn Store>,
    ack_ttl: Duration,
}

impl RedisSequencer {
    pub fn new(client: RedisClient, store: Arc<dyn Store>) -> Self {
        Self::with_ack_ttl(client, store, DEFAULT_ACK_TTL)
    }

    /// Like [`RedisSequencer::new`] with another dedup window (at least one second).
    pub fn with_ack_ttl(client: RedisClient, store: Arc<dyn Store>, ack_ttl: Duration) -> Self {
        Self {
            client,
            store,
            ack_ttl: ack_ttl.max(Duration::from_secs(1)),
        }
    }

    fn sequence_key(&self, conversation_id: &ConversationId) -> String {
        self.client.key(&format!("seq:{conversation_id}"))
    }

    fn ack_key(&self, conversation_id: &ConversationId, key: &DedupKey) -> String {
        self.client.key(&format!(
            "ack:{}:{}:{}",
            framed(conversation_id.as_str()),
            framed(key.sender_id.as_str()),
            key.client_msg_id
        ))
    }

    /// Creates the conversation's sequence from the newest stored message unless another node
    /// did first; returns the current last seq.
    async fn seed(&self, conversation_id: &ConversationId) -> Result<Seq, PortError> {
        // The newest stored message, not `Store::conversation`: messages may be stored before
        // their conversation record.
        let newest = MessageQuery {
            after_seq: None,
            before_seq: None,
            limit: 1,
        };
        let stored = self
            .store
            .messages(conversation_id, newest)
            .await?
            .last()
            .map_or(Seq::ZERO, |record| record.message.seq);
        let last: u64 = self
            .client
            .eval(
                &SEED,
                &[self.sequence_key(conversation_id)],
                &[stored.0.to_string()],
            )
            .await?;
        Ok(Seq(last))
    }

    async fn store_acks(
        &self,
        conversation_id: &ConversationId,
        keys: &[DedupKey],
        misses: &[usize],
    ) -> Result<Vec<String>, PortError> {
        let mut found = vec![String::new(); keys.len()];
        for &index in misses {
            let key = &keys[index];
            let record = self
                .store
                .message_by_client_id(conversation_id, &key.sender_id, &key.client_msg_id)
                .await?;
            if let Some(record) = record {
                let ack = SendAck {
                    message_id: record.message.message_id,
                    seq: record.message.seq,
                    created_at: record.message.created_at,
                };
                found[index] = encode("ack", &ack)?;
            }
        }
        Ok(found)
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(number) => Some(*number),
        _ => None,
    }
}

fn unexpected(value: &[Value]) -> PortError {
    PortError::internal(format!("unexpected reserve reply {value:?}"))
}

#[async_trait]
impl Sequencer for RedisSequencer {
    async fn reserve(
        &self,
        conversation_id: &ConversationId,
        keys: &[DedupKey],
    ) -> Result<Vec<Reservation>, PortError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut redis_keys = Vec::with_capacity(keys.len() + 1);
        redis_keys.push(self.sequence_key(conversation_id));
        redis_keys.extend(keys.iter().map(|key| self.ack_key(conversation_id, key)));
        let ttl = self.ack_ttl.as_secs().to_string();
        let in_flight_ms = IN_FLIGHT_TTL.as_millis().to_string();
        // The ack TTL, whether the store was asked, one store ack per key, the in-flight time.
        let mut args = vec![ttl, "0".to_owned()];
        args.extend(keys.iter().map(|_| String::new()));
        args.push(in_flight_ms.clone());
        // At most: seed, then ask the store, then allocate.
        for _ in 0..3 {
            let reply: Vec<Value> = self.client.eval(&RESERVE, &redis_keys, &args).await?;
            let status = reply
                .first()
                .and_then(integer)
                .ok_or_else(|| unexpected(&reply))?;
            match status {
                NOT_SEEDED => {
                    self.seed(conversation_id).await?;
                }
                NEEDS_STORE => {
                    let misses = reply[1..]
                        .iter()
                        .map(|value| match integer(value) {
                            Some(index) if index >= 1 && (index as usize) <= keys.len() => {
                                Ok(index as usize - 1)
                            }
                            _ => Err(unexpected(&reply)),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let found = self.store_acks(conversation_id, keys, &misses).await?;
                    args.truncate(1);
                    args.push("1".to_owned());
                    args.extend(found);
                    args.push(in_flight_ms.clone());
                }
                0 if reply.len() == keys.len() + 1 => {
                    return reply[1..]
                        .iter()
                        .map(|value| match value {
                            Value::Int(seq) if *seq > 0 => Ok(Reservation::Fresh(Seq(*seq as u64))),
                            Value::Int(0) => Ok(Reservation::InFlight),
                            Value::BulkString(bytes) => {
                                Ok(Reservation::Duplicate(decode("ack", bytes)?))
                            }
                            _ => Err(unexpected(&reply)),
                        })
                        .collect();
                }
                _ => return Err(unexpected(&reply)),
            }
        }
        Err(PortError::internal(format!(
            "sequence of {conversation_id} kept disappearing while reserving"
        )))
    }

    async fn confirm(
        &self,
        conversation_id: &ConversationId,
        acks: &[(DedupKey, SendAck)],
    ) -> Result<(), PortError> {
        if acks.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        for (key, ack) in acks {
            pipeline
                .cmd("SET")
                .arg(self.ack_key(conversation_id, key))
                .arg(encode("ack", ack)?)
                .arg("EX")
                .arg(self.ack_ttl.as_secs())
                .ignore();
        }
        self.client.pipeline::<()>(pipeline).await
    }

    async fn abandon(
        &self,
        conversation_id: &ConversationId,
        keys: &[DedupKey],
    ) -> Result<(), PortError> {
        if keys.is_empty() {
            return Ok(());
        }
        let redis_keys: Vec<String> = keys
            .iter()
            .map(|key| self.ack_key(conversation_id, key))
            .collect();
        let _: i64 = self.client.eval(&ABANDON, &redis_keys, &[]).await?;
        Ok(())
    }

    async fn release(
        &self,
        conversation_id: &ConversationId,
        first: Seq,
        count: u64,
    ) -> Result<bool, PortError> {
        if count == 0 || first == Seq::ZERO {
            return Ok(false);
        }
        let last = first.0 + count - 1;
        let keys = [self.sequence_key(conversation_id)];
        let args = [first.0.to_string(), last.to_string()];
        let mut released: i64 = self.client.eval(&RELEASE, &keys, &args).await?;
        if released == NOT_SEEDED {
            self.seed(conversation_id).await?;
            released = self.client.eval(&RELEASE, &keys, &args).await?;
        }
        Ok(released == 1)
    }

    async fn last_seq(&self, conversation_id: &ConversationId) -> Result<Seq, PortError> {
        let last: Option<u64> = self
            .client
            .query(
                redis::cmd("HGET")
                    .arg(self.sequence_key(conversation_id))
                    .arg("last")
                    .to_owned(),
            )
            .await?;
        match last {
            Some(last) => Ok(Seq(last)),
            None => self.seed(conversation_id).await,
        }
    }
}
