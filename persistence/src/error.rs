//! The persistence crate's error type and its mapping onto [`PortError`].

use ports::{PortError, Service};
use thiserror::Error;

/// What an embedded adapter can fail with, before it is reported through a port.
#[derive(Debug, Error)]
pub enum PersistenceError {
    /// redb failed: I/O, a full disk, a corrupted file, an already-open database.
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
    /// A stored value could not be encoded or decoded.
    #[error("encoding error: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The embedded log's writer thread is gone; nothing more can be appended.
    #[error("log writer stopped")]
    WriterStopped,
    /// A blocking task panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Blocking(String),
    /// An optimistic-concurrency check failed; nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data breaks an invariant (a bug or a corrupted file).
    #[error("corrupted data: {0}")]
    Corrupted(String),
}

macro_rules! from_redb_error {
    ($($error:ty),+ $(,)?) => {
        $(
            impl From<$error> for PersistenceError {
                fn from(error: $error) -> Self {
                    PersistenceError::Storage(redb::Error::from(error))
                }
            }
        )+
    };
}

from_redb_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

impl From<tokio::task::JoinError> for PersistenceError {
    fn from(error: tokio::task::JoinError) -> Self {
        PersistenceError::Blocking(error.to_string())
    }
}

/// redb and I/O failures make the embedded storage unavailable; data that does not decode is
/// corrupt; a failed blocking task is a bug. The `PersistenceError` stays the source.
impl From<PersistenceError> for PortError {
    fn from(error: PersistenceError) -> Self {
        match error {
            PersistenceError::Storage(_)
            | PersistenceError::Io(_)
            | PersistenceError::WriterStopped => PortError::unavailable(Service::Embedded, error),
            PersistenceError::Conflict(what) => PortError::conflict(what),
            PersistenceError::Encoding(_) | PersistenceError::Corrupted(_) => {
                PortError::corrupt(Service::Embedded, "data", error)
            }
            PersistenceError::Blocking(_) => PortError::internal(error),
        }
    }
}

/// Runs blocking redb work on tokio's blocking pool and maps every failure to a [`PortError`].
pub(crate) async fn run_blocking<T, F>(work: F) -> Result<T, PortError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PersistenceError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(PortError::from),
        Err(join_error) => Err(PersistenceError::from(join_error).into()),
    }
}
