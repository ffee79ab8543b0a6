//! Settling abandoned sends nobody retries: a reservation whose node died between `reserve`
//! and the log append leaves its seq allocated with nothing appended for it, a hole every
//! member would see for good unless the client retries ([`ports::Reservation::Resent`]).
//!
//! One claim round: `sequencer_expired.lua` lists the markers past their in-flight time (from
//! the index `in-flight`); the store is asked about each (the node may have died after the
//! append; one it does not hold waits until it holds a later seq of the conversation, or for
//! the ingest grace, as ingest may trail); `sequencer_claim.lua` then, for each key still holding the same marker, records the
//! stored ack, or claims the send: the key holds `reaped` (a retry gets a fresh seq and tombstones
//! nothing) and the claim `<seq>|<message_id>|<created_at>|<ack key>` goes to the sorted set
//! `reaping`, scored by the end of its lease. Claims whose lease lapsed (their claimer died
//! before it settled them) are handed out again; `settle` removes a claim once its tombstone is
//! in the log.

use std::time::Duration;

use deadpool_redis::redis::{self, Value};
use ports::{AbandonedSend, DedupKey, PortError, Reaped, Service};
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, UserId};

use super::{integer, send_ack, store_answer, timestamp_text, LuaScript, RedisSequencer};

static EXPIRED: LuaScript = LuaScript::new(
    "sequencer_expired",
    include_str!("../scripts/sequencer_expired.lua"),
);
static CLAIM: LuaScript = LuaScript::new(
    "sequencer_claim",
    include_str!("../scripts/sequencer_claim.lua"),
);

/// The claim script's word for a reservation it claimed, and for one it settled with the
/// stored ack.
const CLAIMED: i64 = 1;
const STORED: i64 = 2;

/// An abandoned reservation as `sequencer_expired.lua` lists it.
struct Expired {
    ack_key: String,
    marker: String,
    send: AbandonedSend,
    stored: Option<SendAck>,
}

impl RedisSequencer {
    pub(super) fn claims_key(&self) -> String {
        self.client.key("reaping")
    }

    pub(super) async fn claim(
        &self,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Reaped>, PortError> {
        let keys = [self.in_flight_index_key(), self.claims_key()];
        let listed: Vec<String> = self
            .client
            .eval(&EXPIRED, &keys[..1], &[limit.to_string()])
            .await?;
        let mut expired = Vec::with_capacity(listed.len() / 2);
        for pair in listed.chunks_exact(2) {
            let send = match self.abandoned_send(&pair[0], pair[1].as_bytes()) {
                Ok(send) => send,
                Err(error) => {
                    tracing::warn!(ack_key = %pair[0], error = %error, "skipping an unreadable in-flight marker");
                    continue;
                }
            };
            let stored = self.stored_ack(&send.conversation_id, &send.key).await?;
            if stored.is_none() && !self.store_caught_up(&send, &pair[1]).await? {
                continue;
            }
            expired.push(Expired {
                ack_key: pair[0].clone(),
                marker: pair[1].clone(),
                send,
                stored,
            });
        }
        let mut args = vec![
            lease.as_millis().max(1).to_string(),
            self.ack_ttl.as_secs().to_string(),
            limit.to_string(),
        ];
        for item in &expired {
            args.push(item.ack_key.clone());
            args.push(item.marker.clone());
            args.push(store_answer(item.stored.as_ref())?);
        }
        let reply: Vec<Value> = self.client.eval(&CLAIM, &keys, &args).await?;
        self.reaped(expired, &reply)
    }

    /// The claim script's reply: the stored acks it recorded, then every claim it leased.
    fn reaped(&self, expired: Vec<Expired>, reply: &[Value]) -> Result<Vec<Reaped>, PortError> {
        let unexpected = || PortError::internal(format!("unexpected claim reply {reply:?}"));
        let (statuses, claims) = reply
            .split_at_checked(expired.len())
            .ok_or_else(unexpected)?;
        let mut reaped = Vec::new();
        for (item, status) in expired.into_iter().zip(statuses) {
            match (integer(status), item.stored) {
                (Some(STORED), Some(ack)) => {
                    reaped.push(Reaped::Stored(AbandonedSend { ack, ..item.send }))
                }
                (Some(0 | CLAIMED), _) => {}
                _ => return Err(unexpected()),
            }
        }
        for claim in claims {
            let Value::BulkString(claim) = claim else {
                return Err(unexpected());
            };
            match self.claimed_send(claim) {
                Ok(send) => reaped.push(Reaped::Claimed(send)),
                Err(error) => tracing::warn!(error = %error, "skipping an unreadable claim"),
            }
        }
        Ok(reaped)
    }

    /// Whether "not in the store" is final for this send: the store holds a later seq of the
    /// conversation, or the send's in-flight time ended more than the ingest grace ago.
    async fn store_caught_up(&self, send: &AbandonedSend, marker: &str) -> Result<bool, PortError> {
        let until_ms = marker
            .split('|')
            .nth(1)
            .and_then(|until| until.parse::<i64>().ok())
            .ok_or_else(|| corrupt("in-flight marker", marker.as_bytes()))?;
        let grace_ms = i64::try_from(self.ingest_grace.as_millis()).unwrap_or(i64::MAX);
        if chrono::Utc::now().timestamp_millis() >= until_ms.saturating_add(grace_ms) {
            return Ok(true);
        }
        let newest = self.newest_stored_seq(&send.conversation_id).await?;
        Ok(newest >= send.ack.seq)
    }

    pub(super) async fn settle(&self, send: &AbandonedSend) -> Result<(), PortError> {
        let claim = format!(
            "{}|{}|{}|{}",
            send.ack.seq.0,
            send.ack.message_id,
            timestamp_text(&send.ack.created_at),
            self.ack_key(&send.conversation_id, &send.key)
        );
        let mut command = redis::cmd("ZREM");
        command.arg(self.claims_key()).arg(claim);
        let _: i64 = self.client.query(command).await?;
        Ok(())
    }

    /// The send of an ack key holding the marker `in-flight|<until>|<seq>|<id>|<created_at>`.
    fn abandoned_send(&self, ack_key: &str, marker: &[u8]) -> Result<AbandonedSend, PortError> {
        let (conversation_id, key) = self.dedup_key(ack_key)?;
        Ok(AbandonedSend {
            conversation_id,
            key,
            ack: super::abandoned_ack(marker)?,
        })
    }

    /// The send of a claim `<seq>|<message_id>|<created_at>|<ack key>`.
    fn claimed_send(&self, claim: &[u8]) -> Result<AbandonedSend, PortError> {
        let corrupt = || corrupt("reaper claim", claim);
        let text = std::str::from_utf8(claim).map_err(|_| corrupt())?;
        let mut fields = text.splitn(4, '|');
        let ack = send_ack(&mut fields).ok_or_else(corrupt)?;
        let ack_key = fields.next().ok_or_else(corrupt)?;
        let (conversation_id, key) = self.dedup_key(ack_key)?;
        Ok(AbandonedSend {
            conversation_id,
            key,
            ack,
        })
    }

    /// The conversation and dedup key of an ack key `<prefix>ack:<framed conversation>:<framed
    /// sender>:<client_msg_id>`.
    fn dedup_key(&self, ack_key: &str) -> Result<(ConversationId, DedupKey), PortError> {
        let corrupt = || corrupt("ack key", ack_key.as_bytes());
        let rest = ack_key
            .strip_prefix(&self.client.key("ack:"))
            .ok_or_else(corrupt)?;
        let (conversation_id, rest) = unframe(rest).ok_or_else(corrupt)?;
        let (sender_id, client_msg_id) = unframe(rest).ok_or_else(corrupt)?;
        let parsed = (
            ConversationId::new(conversation_id),
            DedupKey {
                sender_id: UserId::new(sender_id),
                client_msg_id: ClientMsgId::new(client_msg_id),
            },
        );
        // Whatever the ids hold, the key must spell back the same.
        if self.ack_key(&parsed.0, &parsed.1) != ack_key {
            return Err(corrupt());
        }
        Ok(parsed)
    }
}

/// Splits `<len>:<value>:<rest>` (a framed key part, then `:`) into value and rest.
fn unframe(text: &str) -> Option<(&str, &str)> {
    let (len, rest) = text.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let value = rest.get(..len)?;
    let rest = rest.get(len..)?.strip_prefix(':')?;
    Some((value, rest))
}

fn corrupt(what: &str, value: &[u8]) -> PortError {
    PortError::corrupt(
        Service::Redis,
        what,
        String::from_utf8_lossy(value).into_owned(),
    )
}
