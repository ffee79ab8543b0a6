//! [`LastCheck`]: the last result of a readiness check that a background task refreshes every
//! [`CHECK_EVERY`], so that `/readyz` answers at once and never waits for a dead dependency's
//! timeout. `parley-server` keeps whether its log, store and Redis answer; `ingest` whether
//! MongoDB and Kafka do.

use std::sync::Mutex;
use std::time::Duration;

/// How often both binaries check their dependencies for `/readyz`.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The last result of a check (`initial` until the first one).
#[derive(Debug)]
pub struct LastCheck<T> {
    last: Mutex<T>,
}

impl<T: Clone> LastCheck<T> {
    pub fn new(initial: T) -> Self {
        Self {
            last: Mutex::new(initial),
        }
    }

    pub fn get(&self) -> T {
        self.lock().clone()
    }

    pub fn set(&self, result: T) {
        *self.lock() = result;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs `check` now and then every [`CHECK_EVERY`], until it answers `false` (its owner is
/// gone) or `stop` resolves.
pub async fn check_periodically<F, Fut>(mut check: F, stop: impl std::future::Future<Output = ()>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::pin!(stop);
    while check().await {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_result() {
        let last = LastCheck::new((false, "not checked yet"));
        assert_eq!(last.get(), (false, "not checked yet"));
        last.set((true, ""));
        assert_eq!(last.get(), (true, ""));
    }

    #[tokio::test(start_paused = true)]
    async fn checks_every_second_until_the_owner_is_gone() {
        let mut checks = 0;
        let started = tokio::time::Instant::now();
        check_periodically(
            || {
                checks += 1;
                std::future::ready(checks < 3)
            },
            std::future::pending(),
        )
        .await;
        assert_eq!(checks, 3);
        assert_eq!(started.elapsed(), 2 * CHECK_EVERY);
    }
}
