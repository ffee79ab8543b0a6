//! What the Tantivy adapter fails with, before it becomes a `PortError`.

use ports::{PortError, Service};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SearchError {
    #[error("cannot create the index directory: {0}")]
    CreateDirectory(std::io::Error),
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("cannot open the index directory: {0}")]
    OpenDirectory(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("stored record does not decode: {0}")]
    Record(#[from] serde_json::Error),
    #[error("index document has no stored record")]
    MissingRecord,
    #[error("index task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<SearchError> for PortError {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::Record(_) | SearchError::MissingRecord => {
                PortError::corrupt(Service::SearchIndex, "indexed message", error)
            }
            SearchError::Task(_) => PortError::internal(error),
            SearchError::Tantivy(_)
            | SearchError::OpenDirectory(_)
            | SearchError::CreateDirectory(_) => {
                PortError::unavailable(Service::SearchIndex, error)
            }
        }
    }
}
