//! Search in standalone mode: the Tantivy index under `storage.data_dir/search` and the
//! in-process indexer that feeds it from the embedded log; what `/readyz` says about them.

use std::sync::Arc;

use anyhow::Context as _;
use ports::ConsumerHealth;
use search::{Indexer, IndexerConfig, IndexerMetrics, TantivyIndex};

use super::storage::Storage;
use crate::config::Settings;

/// The index and the indexer that will feed it once the background tasks start.
pub(super) struct SearchSetup {
    pub(super) index: Arc<TantivyIndex>,
    pub(super) indexer: Indexer,
}

/// The index and its indexer when search is on: `search.enabled` in standalone mode. Cluster
/// modes have no search role yet (each node's own log would give each node a partial index).
pub(super) fn open(settings: &Settings, storage: &Storage) -> anyhow::Result<Option<SearchSetup>> {
    if !settings.search.enabled {
        return Ok(None);
    }
    if storage.embedded.is_none() || settings.redis.roles().is_some() {
        tracing::info!("search is off: cluster modes have no search role yet");
        return Ok(None);
    }
    let directory = settings.storage.data_dir.join("search");
    let index = TantivyIndex::open(&directory, settings.search.writer_memory_bytes())
        .with_context(|| format!("cannot open the search index in {}", directory.display()))?;
    let index = Arc::new(index);
    let config = IndexerConfig {
        max_batch: settings.search.max_batch,
        ..IndexerConfig::default()
    };
    let indexer = Indexer::new(storage.log.clone(), index.clone(), config);
    tracing::info!(directory = %directory.display(), "search index opened");
    Ok(Some(SearchSetup { index, indexer }))
}

/// What `/readyz` reports about search (never a reason to be not ready: search may lag).
pub struct SearchStatus {
    metrics: IndexerMetrics,
    health: Arc<ConsumerHealth>,
}

impl SearchStatus {
    pub(super) fn of(indexer: &Indexer) -> Self {
        Self {
            metrics: indexer.metrics(),
            health: indexer.health(),
        }
    }

    /// `{"state": "indexing" | "stalled" | "stopped", "lag_events", "lag_seconds"}`.
    pub fn details(&self) -> serde_json::Value {
        let state = match self.health.problem() {
            None => "indexing",
            Some(_) if self.health.stall().is_some() => "stalled",
            Some(_) => "stopped",
        };
        serde_json::json!({
            "state": state,
            "lag_events": self.metrics.lag_events.get(),
            "lag_seconds": self.metrics.lag_seconds.get(),
        })
    }
}
