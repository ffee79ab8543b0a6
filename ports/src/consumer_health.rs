//! [`ConsumerHealth`]: whether a consumer loop over the log (ingest's pipeline, a node's
//! stored-ack relay) has a consumer that makes progress, for readiness checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// Written by the consumer loop, read by `/readyz`.
#[derive(Debug, Default)]
pub struct ConsumerHealth {
    /// True while the loop has opened its consumer and runs.
    running: AtomicBool,
    /// Why the consumer is not making progress (its group stalled, polls fail), until records
    /// flow again or nothing is left to consume.
    stalled: Mutex<Option<String>>,
}

impl ConsumerHealth {
    /// `None` while the consumer runs and makes progress, else what is wrong.
    pub fn problem(&self) -> Option<String> {
        if !self.running.load(Ordering::Acquire) {
            return Some("consumer not running".to_owned());
        }
        self.stall()
            .map(|reason| format!("consumer not making progress: {reason}"))
    }

    /// Why the consumer is not making progress, if it is not (whether or not it runs).
    pub fn stall(&self) -> Option<String> {
        self.stalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Release);
    }

    pub fn set_stalled(&self, reason: String) {
        *self.stalled.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    pub fn clear_stalled(&self) {
        *self.stalled.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_a_problem_only_while_it_lasts() {
        let health = ConsumerHealth::default();
        assert_eq!(health.problem().as_deref(), Some("consumer not running"));
        health.set_running(true);
        assert_eq!(health.problem(), None);
        health.set_stalled("kafka unavailable: stalled".to_owned());
        assert_eq!(
            health.problem().as_deref(),
            Some("consumer not making progress: kafka unavailable: stalled")
        );
        health.clear_stalled();
        assert_eq!(health.problem(), None);
    }
}
