//! The `[search]` settings section: `parley-server` reads the node's side (`enabled`, `url`,
//! `timeout_ms`, and the index keys when it keeps its own index); the search role
//! (`ingest search`) reads the index keys and its own (`bind`, `data_dir`, `ready_lag_events`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    pub enabled: bool,
    pub writer_memory_mb: u64,
    pub max_batch: usize,
    /// Once caught up, the indexer commits at most once per this many milliseconds.
    pub commit_interval_ms: u64,
    /// Empty: the node keeps its own index. Else the base URL of the search role the node
    /// queries (`http://parley-search:9092`).
    pub url: String,
    /// How long a node waits for the search role's answer.
    pub timeout_ms: u64,
    /// Where the search role serves queries, `/healthz`, `/readyz` and `/metrics`.
    pub bind: String,
    /// The search role's directory: the index and its consumer group.
    pub data_dir: PathBuf,
    /// The search role is ready (takes queries) once it is at most this many log records
    /// behind.
    pub ready_lag_events: u64,
}

impl SearchSettings {
    /// The index writer's buffer in bytes.
    pub fn writer_memory_bytes(&self) -> usize {
        usize::try_from(self.writer_memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }

    /// The search role's URL when the node queries one.
    pub fn role_url(&self) -> Option<&str> {
        Some(self.url.trim()).filter(|url| !url.is_empty())
    }

    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}
