//! Parley's full-text search over message text.
//!
//! # Layout
//! - [`tantivy_index`]: [`TantivyIndex`], the `ports::SearchIndex` adapter over Tantivy (ADR
//!   0007): one directory, one writer, a reader reloaded after each commit.
//! - `schema`: the fields and the analyzer (unicode words, lower-cased, ASCII-folded).
//! - `query`: a search as a Tantivy query and collector (every word, the last also as a prefix;
//!   BM25, then recency; cursors).
//! - [`indexer`]: [`Indexer`], the loop that feeds an index from the log with its own consumer
//!   group, committing its position only after the index commit.
//! - [`remote`]: the search role over HTTP: the routes a replica serves and
//!   [`RemoteSearch`], the client nodes query it with.
//! - `replica`: [`replica_group`], the consumer group kept beside a replica's index.
//! - [`metrics`]: [`IndexerMetrics`], `parley_search_*`.
//! - [`settings`]: [`SearchSettings`], the `[search]` section.
//! - `error`: [`SearchError`], what the adapter fails with before it becomes a `PortError`.

pub mod error;
pub mod indexer;
pub mod metrics;
mod query;
pub mod remote;
mod replica;
mod schema;
pub mod settings;
pub mod tantivy_index;

pub use error::SearchError;
pub use indexer::{Indexer, IndexerConfig};
pub use metrics::IndexerMetrics;
pub use remote::RemoteSearch;
pub use replica::replica_group;
pub use settings::SearchSettings;
pub use tantivy_index::TantivyIndex;
