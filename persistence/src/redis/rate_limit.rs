//! [`RedisRateLimiter`]: per-user token buckets shared by every node, so a user cannot multiply
//! their allowance by spreading connections over nodes.
//!
//! Key: `rate:{user}`, a hash `{tokens, updated_at_us}` updated by one Lua script
//! (`scripts/rate_limit.lua`) on the Redis clock. Same semantics as `MemoryRateLimiter`: refill
//! at `per_second`, at most `burst`, a cost above `burst` needs a full bucket, and
//! `retry_after` is at least 1 ms. A bucket expires once it would be full again.

use std::time::Duration;

use async_trait::async_trait;
use ports::{PortError, RateDecision, RateLimiter};
use wire::UserId;

use super::client::{LuaScript, RedisClient};

static CHECK: LuaScript = LuaScript::new("rate_limit", include_str!("scripts/rate_limit.lua"));

/// Refill rates below this are raised to it, so `retry_after` stays finite.
const MIN_PER_SECOND: f64 = 1e-6;

pub struct RedisRateLimiter {
    client: RedisClient,
    per_second: f64,
    burst: u32,
}

impl RedisRateLimiter {
    /// Buckets of `burst` tokens refilled at `per_second` tokens a second.
    pub fn new(client: RedisClient, per_second: f64, burst: u32) -> Self {
        Self {
            client,
            per_second: if per_second.is_finite() {
                per_second.max(MIN_PER_SECOND)
            } else {
                MIN_PER_SECOND
            },
            burst: burst.max(1),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, user_id: &UserId, cost: u32) -> Result<RateDecision, PortError> {
        let cost = cost.min(self.burst);
        let (allowed, retry_after_ms): (i64, i64) = self
            .client
            .eval(
                &CHECK,
                &[self.client.key(&format!("rate:{user_id}"))],
                &[
                    format!("{:.9}", self.per_second),
                    self.burst.to_string(),
                    cost.to_string(),
                ],
            )
            .await?;
        if allowed == 1 {
            return Ok(RateDecision::Allowed);
        }
        let retry_after = Duration::from_millis(retry_after_ms.max(1) as u64);
        Ok(RateDecision::Limited { retry_after })
    }
}
