//! [`Backoff`]: the delays between attempts while a dependency is unavailable — exponential
//! (doubling), capped, and reset once an attempt succeeds. Pure arithmetic: the caller sleeps
//! (and decides what may interrupt the sleep), so every retry loop in actors, adapters and
//! ingest shares the same schedule logic.

use std::time::Duration;

/// Capped exponential backoff: `initial`, `2 × initial`, … up to `max`, then `max` for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`; a `max` below `initial` is raised to it (the delay never shrinks).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The delay to wait now, after a failed attempt; the one after it doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to `initial`, after an attempt succeeded.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays(backoff: &mut Backoff, count: usize) -> Vec<u64> {
        (0..count)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect()
    }

    #[test]
    fn doubles_up_to_the_cap_and_stays_there() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(300));
        assert_eq!(delays(&mut backoff, 6), [50, 100, 200, 300, 300, 300]);
    }

    #[test]
    fn reset_starts_over_from_the_initial_delay() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        assert_eq!(delays(&mut backoff, 3), [50, 100, 200]);
        backoff.reset();
        assert_eq!(delays(&mut backoff, 2), [50, 100]);
    }

    #[test]
    fn a_cap_below_the_initial_delay_is_raised_to_it() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(10));
        assert_eq!(delays(&mut backoff, 3), [50, 50, 50]);
    }

    #[test]
    fn a_huge_cap_does_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        backoff.next_delay();
        backoff.next_delay();
        assert_eq!(backoff.next_delay(), Duration::MAX);
    }
}
