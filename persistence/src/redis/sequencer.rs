//! [`RedisSequencer`]: one dense seq counter per conversation and the `client_msg_id` → ack
//! map, shared by every node, so a retry that lands on another node gets the original ack.
//!
//! Keys (prefix omitted):
//! - `seq:{conversation}`: hash `{last, seeded}`; `last` is the highest allocated seq, `seeded`
//!   the store's newest seq when the hash was created. No TTL: losing it means re-seeding from
//!   the store, which is only right once ingest caught up (run Redis with persistence).
//! - `ack:{conversation}:{len}:{sender}:{client_msg_id}`: the JSON `SendAck`, with a TTL
//!   ([`DEFAULT_ACK_TTL`], 24 h): the cross-node dedup window. Until the batch that reserved
//!   the key confirms it, an in-flight marker with the seq, message id and creation time that
//!   send gets, held for [`IN_FLIGHT_TTL`] and kept as long as an ack.
//!
//! `reserve` is one Lua script (`scripts/sequencer_reserve.lua`): for each key, the recorded ack
//! or `HINCRBY last 1`, all atomic, so fresh seqs of one call are consecutive. A conversation
//! that already had stored messages when its hash was seeded may have acks older than the
//! window: then misses are looked up in the store (`message_by_client_id`), like
//! `MemorySequencer`, and the script runs again with what was found (a second round trip).
//! So is a key whose marker outlived its in-flight time (the reserving node died, perhaps
//! after appending the send to the log): when the store has the message, its ack answers;
//! otherwise the retry gets a fresh seq as [`Reservation::Resent`], with the abandoned send's
//! ack for the caller to tombstone. This relies on appends taking less than the in-flight time
//! (`kafka.message_timeout_ms`, 5 s by default, against 60 s).
//! `release` is a Lua compare-and-set on `last`.
//!
//! Abandoned sends nobody retries (the client gave up) are settled by a reaper
//! ([`Sequencer::claim_abandoned`], module `reaping`): the sorted set `in-flight` indexes every
//! marker's ack key by its `<until ms>` (added by `reserve`, removed where the marker becomes an
//! ack, is abandoned or reaped), and `reaping` holds the claims, leased to the node that
//! tombstones them: the reaper's, and those of retries answered `Resent` (a retry whose batch
//! fails or whose node dies too leaves the first send to the reaper).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_redis::redis::{self, Value};
use ports::{
    AbandonedSend, DedupKey, PortError, Reaped, Reservation, Reservations, SendIntent, Sequencer,
    Service, Store, IN_FLIGHT_TTL,
};
use wire::ops::SendAck;
use wire::{ConversationId, MessageId, Seq};

use super::client::{decode, encode, framed, LuaScript, RedisClient};

mod reaping;
mod store_reads;

use store_reads::store_answer;

/// How long a confirmed ack answers retries on any node.
pub const DEFAULT_ACK_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long after its in-flight time the reaper still trusts "not in the store" only once
/// the store holds a later seq of the conversation: ingest may trail the log (a send appended
/// just before its node died, or whose `confirm` failed, must not be tombstoned because
/// MongoDB has not caught up yet). Past it, the send is settled whatever the store shows.
pub const DEFAULT_INGEST_GRACE: Duration = Duration::from_secs(10 * 60);

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
const ASK_THE_STORE: i64 = -2;
/// The script's word for "asked: the store holds no message for this key".
const NOT_IN_STORE: &str = "-";

pub struct RedisSequencer {
    client: RedisClient,
    store: Arc<dyn Store>,
    ack_ttl: Duration,
    in_flight_ttl: Duration,
    ingest_grace: Duration,
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
            in_flight_ttl: IN_FLIGHT_TTL,
            ingest_grace: DEFAULT_INGEST_GRACE,
        }
    }

    /// Like this one, with another in-flight time (tests: a node that "died" a moment ago).
    pub fn with_in_flight_ttl(mut self, in_flight_ttl: Duration) -> Self {
        self.in_flight_ttl = in_flight_ttl;
        self
    }

    /// Like this one, with another [`DEFAULT_INGEST_GRACE`] (tests).
    pub fn with_ingest_grace(mut self, ingest_grace: Duration) -> Self {
        self.ingest_grace = ingest_grace;
        self
    }

    fn sequence_key(&self, conversation_id: &ConversationId) -> String {
        self.client.key(&format!("seq:{conversation_id}"))
    }

    /// The index of in-flight markers: their ack keys by `<until ms>`.
    fn in_flight_index_key(&self) -> String {
        self.client.key("in-flight")
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
        let stored = self.newest_stored_seq(conversation_id).await?;
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
}

/// A send's creation time as markers and claims spell it.
fn timestamp_text(created_at: &DateTime<Utc>) -> String {
    created_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
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

/// The reserve script's arguments: the ack TTL, the in-flight time, what the store said about
/// each key, each send's message id and creation time.
fn reserve_args(
    ack_ttl: Duration,
    in_flight_ttl: Duration,
    answers: &[String],
    sends: &[SendIntent],
) -> Vec<String> {
    let mut args = Vec::with_capacity(2 + 2 * sends.len());
    args.push(ack_ttl.as_secs().to_string());
    args.push(in_flight_ttl.as_millis().to_string());
    args.extend(answers.iter().cloned());
    args.extend(
        sends
            .iter()
            .map(|send| format!("{}|{}", send.message_id, timestamp_text(&send.created_at))),
    );
    args
}

/// The 0-based indexes of the keys the script wants the store asked about.
fn key_indexes(reply: &[Value], count: usize) -> Result<Vec<usize>, PortError> {
    reply[1..]
        .iter()
        .map(|value| match integer(value) {
            Some(index) if index >= 1 && (index as usize) <= count => Ok(index as usize - 1),
            _ => Err(unexpected(reply)),
        })
        .collect()
}

/// One key's answer from the reserve script.
fn reservation(value: &Value, reply: &[Value]) -> Result<Reservation, PortError> {
    match value {
        Value::Int(seq) if *seq > 0 => Ok(Reservation::Fresh(Seq(*seq as u64))),
        Value::Int(0) => Ok(Reservation::InFlight),
        Value::BulkString(bytes) => Ok(Reservation::Duplicate(decode("ack", bytes)?)),
        Value::Array(pair) => match pair.as_slice() {
            [Value::Int(seq), Value::BulkString(marker)] if *seq > 0 => Ok(Reservation::Resent {
                seq: Seq(*seq as u64),
                abandoned: abandoned_ack(marker)?,
            }),
            _ => Err(unexpected(reply)),
        },
        _ => Err(unexpected(reply)),
    }
}

/// The ack an abandoned send would have had, from its marker
/// `in-flight|<until ms>|<seq>|<message_id>|<created_at>`.
fn abandoned_ack(marker: &[u8]) -> Result<SendAck, PortError> {
    let corrupt = || {
        PortError::corrupt(
            Service::Redis,
            "in-flight marker",
            String::from_utf8_lossy(marker).into_owned(),
        )
    };
    let text = std::str::from_utf8(marker).map_err(|_| corrupt())?;
    send_ack(text.splitn(5, '|').skip(2)).ok_or_else(corrupt)
}

/// The ack from the fields `<seq>`, `<message_id>`, `<created_at>`.
fn send_ack<'a>(mut fields: impl Iterator<Item = &'a str>) -> Option<SendAck> {
    let (Some(seq), Some(message_id), Some(created_at)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    Some(SendAck {
        message_id: MessageId::new(message_id),
        seq: Seq(seq.parse().ok()?),
        created_at: DateTime::parse_from_rfc3339(created_at)
            .ok()?
            .with_timezone(&Utc),
    })
}

#[async_trait]
impl Sequencer for RedisSequencer {
    async fn reserve(
        &self,
        conversation_id: &ConversationId,
        sends: &[SendIntent],
    ) -> Result<Vec<Reservation>, PortError> {
        Ok(self
            .reserve_reporting_last(conversation_id, sends)
            .await?
            .each)
    }

    /// One round trip (after the first of a conversation, which seeds it): the script answers
    /// the highest seq allocated before the reservation with it.
    async fn reserve_reporting_last(
        &self,
        conversation_id: &ConversationId,
        sends: &[SendIntent],
    ) -> Result<Reservations, PortError> {
        if sends.is_empty() {
            return Ok(Reservations {
                each: Vec::new(),
                last_before: self.last_seq(conversation_id).await?,
            });
        }
        let mut redis_keys = Vec::with_capacity(sends.len() + 3);
        redis_keys.push(self.sequence_key(conversation_id));
        redis_keys.extend(
            sends
                .iter()
                .map(|send| self.ack_key(conversation_id, &send.key)),
        );
        redis_keys.push(self.in_flight_index_key());
        redis_keys.push(self.claims_key());
        let mut answers = vec![String::new(); sends.len()];
        // At most: seed, then ask the store (about old or abandoned keys), then allocate; a key
        // abandoned meanwhile may need one more round.
        for _ in 0..4 {
            let args = reserve_args(self.ack_ttl, self.in_flight_ttl, &answers, sends);
            let reply: Vec<Value> = self.client.eval(&RESERVE, &redis_keys, &args).await?;
            let status = reply
                .first()
                .and_then(integer)
                .ok_or_else(|| unexpected(&reply))?;
            match status {
                NOT_SEEDED => {
                    self.seed(conversation_id).await?;
                }
                ASK_THE_STORE => {
                    let asked = key_indexes(&reply, sends.len())?;
                    self.store_answers(conversation_id, sends, &asked, &mut answers)
                        .await?;
                }
                0 if reply.len() == sends.len() + 2 => {
                    let last_before = reply
                        .last()
                        .and_then(integer)
                        .ok_or_else(|| unexpected(&reply))?;
                    let each = reply[1..=sends.len()]
                        .iter()
                        .map(|value| reservation(value, &reply))
                        .collect::<Result<_, _>>()?;
                    return Ok(Reservations {
                        each,
                        last_before: Seq(last_before as u64),
                    });
                }
                _ => return Err(unexpected(&reply)),
            }
        }
        Err(PortError::internal(format!(
            "sequence of {conversation_id} kept changing while reserving"
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
        pipeline.atomic();
        let index = self.in_flight_index_key();
        for (key, ack) in acks {
            let ack_key = self.ack_key(conversation_id, key);
            pipeline
                .cmd("SET")
                .arg(&ack_key)
                .arg(encode("ack", ack)?)
                .arg("EX")
                .arg(self.ack_ttl.as_secs())
                .ignore();
            pipeline.cmd("ZREM").arg(&index).arg(ack_key).ignore();
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
        let mut redis_keys: Vec<String> = keys
            .iter()
            .map(|key| self.ack_key(conversation_id, key))
            .collect();
        redis_keys.push(self.in_flight_index_key());
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

    async fn claim_abandoned(
        &self,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Reaped>, PortError> {
        self.claim(lease, limit).await
    }

    async fn settle_abandoned(&self, send: &AbandonedSend) -> Result<(), PortError> {
        self.settle(send).await
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
