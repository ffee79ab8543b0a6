//! Metrics of the indexer, as Prometheus instruments created unregistered: they show where a
//! binary calls [`IndexerMetrics::register`] (`parley-server` with search enabled). Every name
//! is `parley_search_*`.

use prometheus::{Gauge, IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct IndexerMetrics {
    /// `parley_search_indexer_lag_events`: log records not yet indexed (as of the last refresh).
    pub lag_events: IntGauge,
    /// `parley_search_indexer_lag_seconds`: age of the newest record of the last indexed
    /// batch when its commit finished; 0 once a poll finds nothing left.
    pub lag_seconds: Gauge,
    /// `parley_search_indexed_events_total`: log records indexed and committed.
    pub indexed_events: IntCounter,
    /// `parley_search_index_commits_total`: batches committed to the index (each one a segment).
    pub index_commits: IntCounter,
    /// `parley_search_indexer_retries_total`: failed index writes or position commits, retried.
    pub retries: IntCounter,
    /// `parley_search_malformed_records_total`: log records that are not log events, skipped
    /// (committed past; ingest keeps them in the dead-letter topic).
    pub malformed_records: IntCounter,
}

impl Default for IndexerMetrics {
    fn default() -> Self {
        Self {
            lag_events: IntGauge::new(
                "parley_search_indexer_lag_events",
                "log records the search indexer has not indexed yet",
            )
            .expect("valid metric"),
            lag_seconds: Gauge::new(
                "parley_search_indexer_lag_seconds",
                "age of the newest log record of the last indexed batch at its commit (0 when \
                 caught up)",
            )
            .expect("valid metric"),
            indexed_events: IntCounter::new(
                "parley_search_indexed_events_total",
                "log records indexed and committed by the search indexer",
            )
            .expect("valid metric"),
            index_commits: IntCounter::new(
                "parley_search_index_commits_total",
                "batches the search indexer committed to the index (each writes a segment)",
            )
            .expect("valid metric"),
            retries: IntCounter::new(
                "parley_search_indexer_retries_total",
                "failed search index writes or log position commits, retried",
            )
            .expect("valid metric"),
            malformed_records: IntCounter::new(
                "parley_search_malformed_records_total",
                "log records that are not log events, skipped by the search indexer",
            )
            .expect("valid metric"),
        }
    }
}

impl IndexerMetrics {
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.lag_events.clone()))?;
        registry.register(Box::new(self.lag_seconds.clone()))?;
        registry.register(Box::new(self.indexed_events.clone()))?;
        registry.register(Box::new(self.index_commits.clone()))?;
        registry.register(Box::new(self.retries.clone()))?;
        registry.register(Box::new(self.malformed_records.clone()))
    }
}
