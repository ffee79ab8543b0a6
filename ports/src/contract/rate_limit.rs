//! Contract of [`RateLimiter`].

use std::future::Future;

use wire::UserId;

use super::fixtures::unique;
use super::Fixture;
use crate::{RateDecision, RateLimiter};

/// Bucket size the suite asks `make` for.
pub const BURST: u32 = 5;
/// Refill rate the suite asks `make` for: slow enough that nothing refills during a case.
pub const PER_SECOND: f64 = 0.01;

/// Runs every rate-limit case; `make(per_second, burst)` returns a fresh limiter.
pub async fn rate_limiter_suite<F, Fut>(make: F)
where
    F: Fn(f64, u32) -> Fut,
    Fut: Future<Output = Fixture<dyn RateLimiter>>,
{
    a_burst_is_allowed_then_limited(make(PER_SECOND, BURST).await).await;
}

async fn a_burst_is_allowed_then_limited(fixture: Fixture<dyn RateLimiter>) {
    let limiter = fixture.port;
    let user = UserId::new(unique("user"));
    let other = UserId::new(unique("other"));
    for attempt in 0..BURST {
        assert_eq!(
            limiter.check(&user, 1).await.expect("check"),
            RateDecision::Allowed,
            "attempt {attempt} is within the burst"
        );
    }
    match limiter.check(&user, 1).await.expect("check") {
        RateDecision::Limited { retry_after } => {
            assert!(!retry_after.is_zero(), "retry_after is positive")
        }
        RateDecision::Allowed => panic!("the burst is used up"),
    }
    assert_eq!(
        limiter.check(&other, 3).await.expect("check"),
        RateDecision::Allowed,
        "users have separate buckets"
    );
    assert!(
        matches!(
            limiter.check(&other, 3).await.expect("check"),
            RateDecision::Limited { .. }
        ),
        "a cost larger than what is left is limited"
    );
}
