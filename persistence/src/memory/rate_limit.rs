//! [`MemoryRateLimiter`]: per-user token buckets with continuous refill.
//!
//! Time comes from `tokio::time::Instant`, so tests can drive it with paused time. A bucket that
//! has refilled completely is the same as no bucket, so the limiter sweeps those out at most once
//! per [`SWEEP_INTERVAL`] on access: memory stays bounded by the users active in the last
//! `burst / per_second` seconds (plus one sweep interval).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ports::{PortError, RateDecision, RateLimiter};
use tokio::time::Instant;
use wire::UserId;

/// How often idle, full buckets are dropped.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest `retry_after` ever returned.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(1);
/// Refill rates below this are raised to it, so `retry_after` stays finite.
const MIN_PER_SECOND: f64 = 1e-6;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

#[derive(Debug)]
struct Buckets {
    by_user: HashMap<UserId, Bucket>,
    swept_at: Instant,
}

#[derive(Debug)]
pub struct MemoryRateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

impl MemoryRateLimiter {
    /// Buckets of `burst` tokens refilled at `per_second` tokens a second. A check costing more
    /// than `burst` is treated as costing `burst` (it needs a full bucket).
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second: if per_second.is_finite() {
                per_second.max(MIN_PER_SECOND)
            } else {
                MIN_PER_SECOND
            },
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(Buckets {
                by_user: HashMap::new(),
                swept_at: Instant::now(),
            }),
        }
    }

    /// Users with a bucket in memory (for tests).
    pub fn tracked_users(&self) -> usize {
        self.lock().by_user.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    fn sweep(&self, buckets: &mut Buckets, now: Instant) {
        if now.saturating_duration_since(buckets.swept_at) < SWEEP_INTERVAL {
            return;
        }
        buckets.swept_at = now;
        let burst = self.burst;
        buckets
            .by_user
            .retain(|_, bucket| self.refilled(*bucket, now) < burst);
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, user_id: &UserId, cost: u32) -> Result<RateDecision, PortError> {
        let now = Instant::now();
        let cost = f64::from(cost).min(self.burst);
        let mut buckets = self.lock();
        self.sweep(&mut buckets, now);
        let current = match buckets.by_user.get(user_id) {
            Some(bucket) => self.refilled(*bucket, now),
            None => self.burst,
        };
        if current >= cost {
            buckets.by_user.insert(
                user_id.clone(),
                Bucket {
                    tokens: current - cost,
                    refilled_at: now,
                },
            );
            return Ok(RateDecision::Allowed);
        }
        buckets.by_user.insert(
            user_id.clone(),
            Bucket {
                tokens: current,
                refilled_at: now,
            },
        );
        let missing = cost - current;
        let retry_after = Duration::from_secs_f64(missing / self.per_second).max(MIN_RETRY_AFTER);
        Ok(RateDecision::Limited { retry_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokens_refill_continuously_and_idle_buckets_are_swept() {
        let limiter = MemoryRateLimiter::new(1.0, 2);
        let user = UserId::new("user");
        assert_eq!(
            limiter.check(&user, 1).await.expect("check"),
            RateDecision::Allowed
        );
        assert_eq!(
            limiter.check(&user, 1).await.expect("check"),
            RateDecision::Allowed
        );
        assert_eq!(
            limiter.check(&user, 1).await.expect("check"),
            RateDecision::Limited {
                retry_after: Duration::from_secs(1)
            }
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(
            limiter.check(&user, 1).await.expect("check"),
            RateDecision::Limited {
                retry_after: Duration::from_millis(500)
            }
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(
            limiter.check(&user, 1).await.expect("check"),
            RateDecision::Allowed
        );

        tokio::time::advance(SWEEP_INTERVAL).await;
        let other = UserId::new("other");
        assert_eq!(
            limiter.check(&other, 1).await.expect("check"),
            RateDecision::Allowed
        );
        assert_eq!(limiter.tracked_users(), 1, "the refilled bucket was swept");
    }
}
