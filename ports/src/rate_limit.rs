//! Per-user rate limits.

use std::time::Duration;

use async_trait::async_trait;
use wire::UserId;

use crate::PortError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    Limited { retry_after: Duration },
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes `cost` tokens from the user's bucket, or says how long until they are there.
    async fn check(&self, user_id: &UserId, cost: u32) -> Result<RateDecision, PortError>;
}
