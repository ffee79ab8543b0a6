//! The `[search]` settings section `parley-server` reads.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    pub enabled: bool,
    pub writer_memory_mb: u64,
    pub max_batch: usize,
}

impl SearchSettings {
    /// The index writer's buffer in bytes.
    pub fn writer_memory_bytes(&self) -> usize {
        usize::try_from(self.writer_memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}
