//! [`RedisSanctions`]: bans and token revocations shared by the nodes of a cluster.
//!
//! Key (prefix omitted): `sanctions:{user}`, a hash with `ban` (serde_json of the [`Ban`]) and
//! `tokens_valid_from` (seconds since the epoch; raised by a Lua script, never lowered). The
//! keys have no TTL: a ban or a revocation lasts until an operator changes it.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_redis::redis;
use ports::{Ban, PortError, Sanctions, Standing};
use wire::UserId;

use super::client::{decode, encode, LuaScript, RedisClient};

static REVOKE: LuaScript = LuaScript::new(
    "sanctions_revoke",
    include_str!("scripts/sanctions_revoke.lua"),
);

pub struct RedisSanctions {
    client: RedisClient,
}

impl RedisSanctions {
    pub fn new(client: RedisClient) -> Self {
        Self { client }
    }

    fn key(&self, user_id: &UserId) -> String {
        self.client.key(&format!("sanctions:{user_id}"))
    }
}

#[async_trait]
impl Sanctions for RedisSanctions {
    async fn standing(&self, user_id: &UserId) -> Result<Standing, PortError> {
        let fields: HashMap<String, String> = self
            .client
            .query(redis::cmd("HGETALL").arg(self.key(user_id)).to_owned())
            .await?;
        let ban = match fields.get("ban") {
            Some(json) => Some(decode("ban", json.as_bytes())?),
            None => None,
        };
        let tokens_valid_from = match fields.get("tokens_valid_from") {
            Some(seconds) => Some(seconds.parse::<i64>().map_err(|error| {
                PortError::corrupt(ports::Service::Redis, "tokens_valid_from", error)
            })?),
            None => None,
        };
        Ok(Standing {
            ban,
            tokens_valid_from,
        })
    }

    async fn ban(&self, user_id: &UserId, ban: &Ban) -> Result<(), PortError> {
        let json = encode("ban", ban)?;
        let _: i64 = self
            .client
            .query(
                redis::cmd("HSET")
                    .arg(self.key(user_id))
                    .arg("ban")
                    .arg(json)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn lift_ban(&self, user_id: &UserId) -> Result<bool, PortError> {
        let removed: i64 = self
            .client
            .query(
                redis::cmd("HDEL")
                    .arg(self.key(user_id))
                    .arg("ban")
                    .to_owned(),
            )
            .await?;
        Ok(removed > 0)
    }

    async fn revoke_tokens(&self, user_id: &UserId, valid_from: i64) -> Result<(), PortError> {
        let _: i64 = self
            .client
            .eval(&REVOKE, &[self.key(user_id)], &[valid_from.to_string()])
            .await?;
        Ok(())
    }
}
