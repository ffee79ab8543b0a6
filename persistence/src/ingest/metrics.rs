//! Counters of the ingest pipeline. Plain atomics: the binary that runs the pipeline turns them
//! into Prometheus metrics (`parley_ingest_*`).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Batches applied to the store and committed.
    pub batches: AtomicU64,
    /// Log records consumed (and committed).
    pub events_consumed: AtomicU64,
    /// Store writes applied.
    pub events_applied: AtomicU64,
    /// `MessageStored` acknowledgments appended to the log.
    pub acks_emitted: AtomicU64,
    /// Failed attempts that were retried (store, log append or commit).
    pub retries: AtomicU64,
}

/// A point-in-time copy of [`IngestMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestMetricsSnapshot {
    pub batches: u64,
    pub events_consumed: u64,
    pub events_applied: u64,
    pub acks_emitted: u64,
    pub retries: u64,
}

impl IngestMetrics {
    pub fn snapshot(&self) -> IngestMetricsSnapshot {
        IngestMetricsSnapshot {
            batches: self.batches.load(Ordering::Relaxed),
            events_consumed: self.events_consumed.load(Ordering::Relaxed),
            events_applied: self.events_applied.load(Ordering::Relaxed),
            acks_emitted: self.acks_emitted.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}
