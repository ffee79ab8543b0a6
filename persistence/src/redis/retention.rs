//! [`RedisRetention`]: conversations' retention periods, legal holds and purges, shared by the
//! nodes of a cluster.
//!
//! Keys (prefix omitted), three hashes keyed by conversation id, no TTL:
//! - `retention:period`: serde_json of a [`RetentionPeriod`] other than the default;
//! - `retention:hold`: `on` while the conversation is on legal hold;
//! - `retention:purged`: the seq up to which retention purged it (raised by a Lua script,
//!   never lowered).

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_redis::redis;
use ports::{ConversationRetention, LegalHold, PortError, RetentionPeriod, RetentionPolicies};
use wire::{ConversationId, Seq};

use super::client::{decode, encode, LuaScript, RedisClient};

static PURGE: LuaScript = LuaScript::new(
    "retention_purge",
    include_str!("scripts/retention_purge.lua"),
);

const HOLD_ON: &str = "on";

pub struct RedisRetention {
    client: RedisClient,
}

impl RedisRetention {
    pub fn new(client: RedisClient) -> Self {
        Self { client }
    }

    fn key(&self, hash: &str) -> String {
        self.client.key(&format!("retention:{hash}"))
    }

    /// Sets `field` of `hash` to `value`, or removes it when `value` is `None`.
    async fn put(
        &self,
        hash: &str,
        conversation_id: &ConversationId,
        value: Option<String>,
    ) -> Result<(), PortError> {
        let mut command = match value {
            Some(_) => redis::cmd("HSET"),
            None => redis::cmd("HDEL"),
        };
        command.arg(self.key(hash)).arg(conversation_id.as_str());
        if let Some(value) = value {
            command.arg(value);
        }
        let _: i64 = self.client.query(command).await?;
        Ok(())
    }
}

/// A conversation's retention from its three fields.
fn retention_of(
    period: Option<&String>,
    hold: Option<&String>,
    purged: Option<&String>,
) -> Result<ConversationRetention, PortError> {
    let period = match period {
        Some(json) => decode("retention period", json.as_bytes())?,
        None => RetentionPeriod::Default,
    };
    let legal_hold = match hold.map(String::as_str) {
        Some(HOLD_ON) => LegalHold::On,
        _ => LegalHold::Off,
    };
    let purged_through = match purged {
        Some(seq) => Seq(seq.parse::<u64>().map_err(|error| {
            PortError::corrupt(ports::Service::Redis, "retention purged seq", error)
        })?),
        None => Seq::ZERO,
    };
    Ok(ConversationRetention {
        period,
        legal_hold,
        purged_through,
    })
}

#[async_trait]
impl RetentionPolicies for RedisRetention {
    async fn retention(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<ConversationRetention, PortError> {
        let mut pipeline = redis::pipe();
        for hash in ["period", "hold", "purged"] {
            pipeline
                .cmd("HGET")
                .arg(self.key(hash))
                .arg(conversation_id.as_str());
        }
        let (period, hold, purged): (Option<String>, Option<String>, Option<String>) =
            self.client.pipeline(pipeline).await?;
        retention_of(period.as_ref(), hold.as_ref(), purged.as_ref())
    }

    async fn set_period(
        &self,
        conversation_id: &ConversationId,
        period: RetentionPeriod,
    ) -> Result<(), PortError> {
        let value = match period {
            RetentionPeriod::Default => None,
            other => Some(encode("retention period", &other)?),
        };
        self.put("period", conversation_id, value).await
    }

    async fn set_legal_hold(
        &self,
        conversation_id: &ConversationId,
        hold: LegalHold,
    ) -> Result<(), PortError> {
        let value = (hold == LegalHold::On).then(|| HOLD_ON.to_owned());
        self.put("hold", conversation_id, value).await
    }

    async fn record_purge(
        &self,
        conversation_id: &ConversationId,
        through: Seq,
    ) -> Result<(), PortError> {
        let args = [conversation_id.as_str().to_owned(), through.0.to_string()];
        let _: i64 = self
            .client
            .eval(&PURGE, &[self.key("purged")], &args)
            .await?;
        Ok(())
    }

    async fn changed(&self) -> Result<Vec<(ConversationId, ConversationRetention)>, PortError> {
        let mut pipeline = redis::pipe();
        for hash in ["period", "hold", "purged"] {
            pipeline.cmd("HGETALL").arg(self.key(hash));
        }
        type Fields = HashMap<String, String>;
        let (periods, holds, purges): (Fields, Fields, Fields) =
            self.client.pipeline(pipeline).await?;
        let mut ids: Vec<&String> = periods
            .keys()
            .chain(holds.keys())
            .chain(purges.keys())
            .collect();
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .map(|id| {
                let retention = retention_of(periods.get(id), holds.get(id), purges.get(id))?;
                Ok((ConversationId::new(id.clone()), retention))
            })
            .collect()
    }
}
