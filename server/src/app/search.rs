//! Search: the Tantivy index under `storage.data_dir/search` and the in-process indexer that
//! feeds it from the log (embedded, or Kafka in durable mode); what `/readyz` says about them.

use std::path::Path;
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

/// The index and its indexer when search is on (`search.enabled`): in standalone mode over the
/// embedded log, and in durable cluster mode over Kafka, where every node keeps a complete
/// index under its data directory with a consumer group of its own. Redis-only cluster mode
/// has none (each node's own log would give each node a partial index).
pub(super) fn open(settings: &Settings, storage: &Storage) -> anyhow::Result<Option<SearchSetup>> {
    if !settings.search.enabled {
        return Ok(None);
    }
    let directory = settings.storage.data_dir.join("search");
    // Decided before the index directory is created.
    let group = if storage.kafka.is_some() {
        replica_group(&settings.storage.data_dir)?
    } else if settings.redis.roles().is_none() {
        IndexerConfig::default().group
    } else {
        tracing::info!("search is off: Redis-only cluster mode has no complete log per node");
        return Ok(None);
    };
    let index = TantivyIndex::open(&directory, settings.search.writer_memory_bytes())
        .with_context(|| format!("cannot open the search index in {}", directory.display()))?;
    let index = Arc::new(index);
    let config = IndexerConfig {
        group,
        max_batch: settings.search.max_batch,
        ..IndexerConfig::default()
    };
    tracing::info!(directory = %directory.display(), group = %config.group, "search index opened");
    let indexer = Indexer::new(storage.log.clone(), index.clone(), config);
    Ok(Some(SearchSetup { index, indexer }))
}

/// The Kafka consumer group of this node's index: made up with the index and kept beside it
/// (`search.group`), so a restarted node resumes its own group, and a new or deleted index
/// directory is built from the start of the log under a new group.
fn replica_group(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("search.group");
    if data_dir.join("search").is_dir() {
        if let Ok(group) = std::fs::read_to_string(&path) {
            return Ok(group.trim().to_owned());
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create storage.data_dir {}", data_dir.display()))?;
    let group = format!("parley-search-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(&path, &group).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(group)
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
