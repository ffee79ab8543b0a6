//! Search: either the node's own Tantivy index under `storage.data_dir/search` with the
//! in-process indexer that feeds it from the log (embedded, or Kafka in durable mode), or the
//! search role at `search.url` queried over HTTP; what `/readyz` says about it.

use std::sync::Arc;

use anyhow::Context as _;
use ports::{ConsumerHealth, SearchReader};
use search::{Indexer, IndexerConfig, IndexerMetrics, RemoteSearch, TantivyIndex};

use super::storage::Storage;
use crate::config::Settings;

/// What `search.messages` queries, and the indexer to start with the background tasks when
/// the node keeps its own index.
pub(super) struct SearchSetup {
    pub(super) reader: Arc<dyn SearchReader>,
    pub(super) indexer: Option<Indexer>,
    url: Option<String>,
}

/// Search when it is on (`search.enabled`):
/// - `search.url` set (durable cluster mode): the search role there; no index on the node;
/// - standalone: an index over the embedded log;
/// - durable cluster mode without `search.url`: every node keeps a complete index under its
///   data directory with a consumer group of its own;
/// - Redis-only cluster mode: none (each node's own log would give each node a partial index).
pub(super) fn open(settings: &Settings, storage: &Storage) -> anyhow::Result<Option<SearchSetup>> {
    if !settings.search.enabled {
        return Ok(None);
    }
    if let Some(url) = settings.search.role_url() {
        let remote = RemoteSearch::new(url, settings.search.timeout())
            .context("cannot build the search role's client")?;
        tracing::info!(url, "searches go to the search role");
        return Ok(Some(SearchSetup {
            reader: Arc::new(remote),
            indexer: None,
            url: Some(url.to_owned()),
        }));
    }
    let directory = settings.storage.data_dir.join("search");
    // Decided before the index directory is created.
    let group = if storage.kafka.is_some() {
        search::replica_group(&directory).with_context(|| {
            format!(
                "cannot keep the search group beside {}",
                directory.display()
            )
        })?
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
        commit_interval: settings.search.commit_interval(),
        ..IndexerConfig::default()
    };
    tracing::info!(directory = %directory.display(), group = %config.group, "search index opened");
    let indexer = Indexer::new(storage.log.clone(), index.clone(), config);
    Ok(Some(SearchSetup {
        reader: index,
        indexer: Some(indexer),
        url: None,
    }))
}

/// What `/readyz` reports about search (never a reason to be not ready: search may lag).
pub enum SearchStatus {
    /// The node's own index and indexer.
    Local {
        metrics: IndexerMetrics,
        health: Arc<ConsumerHealth>,
    },
    /// The search role at this URL.
    Role { url: String },
}

impl SearchStatus {
    pub(super) fn of(setup: &SearchSetup) -> Self {
        match (&setup.indexer, &setup.url) {
            (Some(indexer), _) => Self::Local {
                metrics: indexer.metrics(),
                health: indexer.health(),
            },
            (None, url) => Self::Role {
                url: url.clone().unwrap_or_default(),
            },
        }
    }

    /// `{"state": "indexing" | "stalled" | "stopped", "lag_events", "lag_seconds"}` for the
    /// node's own index; `{"state": "role", "url"}` when the search role answers.
    pub fn details(&self) -> serde_json::Value {
        let (metrics, health) = match self {
            Self::Local { metrics, health } => (metrics, health),
            Self::Role { url } => return serde_json::json!({ "state": "role", "url": url }),
        };
        let state = match health.problem() {
            None => "indexing",
            Some(_) if health.stall().is_some() => "stalled",
            Some(_) => "stopped",
        };
        serde_json::json!({
            "state": state,
            "lag_events": metrics.lag_events.get(),
            "lag_seconds": metrics.lag_seconds.get(),
        })
    }
}
