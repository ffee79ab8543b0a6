use thiserror::Error;

/// What any port can fail with.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PortError {
    /// The backing service is unreachable or refused the write; nothing was done. Retryable.
    #[error("backing service unavailable: {0}")]
    Unavailable(String),
    /// A concurrent change won (optimistic concurrency); re-read and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A bug or corrupted data.
    #[error("internal error: {0}")]
    Internal(String),
}
