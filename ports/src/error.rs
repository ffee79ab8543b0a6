//! [`PortError`], what any port fails with: the kind of failure, the backing service, and the
//! underlying error as its `source`.
//!
//! The `Display` text of every variant includes its source, so a log line with `error = %error`
//! carries the whole cause; [`std::error::Error::source`] still gives the typed cause to code
//! that walks the chain.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

/// The underlying error of a [`PortError`]. Shared, so a failure can be answered to every
/// caller of a batch (the embedded log's group commit clones it).
pub type Cause = Arc<dyn StdError + Send + Sync>;

/// The backing service behind a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Redis,
    Kafka,
    MongoDb,
    /// The embedded adapters' files (redb store, embedded log).
    Embedded,
    /// Attachment bytes: S3-compatible object storage, or the local blob files.
    ObjectStorage,
    /// Channels and tasks inside this process (the in-memory bus, subscription workers, test
    /// fakes).
    InProcess,
    /// The full-text search index (Tantivy files).
    SearchIndex,
}

impl fmt::Display for Service {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Service::Redis => "redis",
            Service::Kafka => "kafka",
            Service::MongoDb => "mongodb",
            Service::Embedded => "embedded storage",
            Service::ObjectStorage => "object storage",
            Service::InProcess => "in-process",
            Service::SearchIndex => "search index",
        })
    }
}

/// What any port can fail with.
#[derive(Debug, Clone, Error)]
pub enum PortError {
    /// The service is unreachable, timed out or cannot serve right now; nothing was done.
    /// Retryable.
    #[error("{service} unavailable: {source}")]
    Unavailable {
        service: Service,
        #[source]
        source: Cause,
    },
    /// A concurrent change won (optimistic concurrency) or the thing already exists; re-read
    /// and retry.
    #[error("conflict: {what}")]
    Conflict { what: String },
    /// The service refused the request for a reason retrying does not fix: a bad setting, a
    /// failed script, a refused write.
    #[error("{service} refused the request: {source}")]
    Rejected {
        service: Service,
        #[source]
        source: Cause,
    },
    /// Data read from the service does not decode or breaks an invariant (a bug or corruption).
    #[error("bad {what} in {service}: {source}")]
    Corrupt {
        service: Service,
        what: String,
        #[source]
        source: Cause,
    },
    /// A bug in Parley: a value that does not encode, a task that stopped, a call outside the
    /// port's contract.
    #[error("internal error: {source}")]
    Internal {
        #[source]
        source: Cause,
    },
}

impl PortError {
    /// `cause` is an error or a message (`&str`, `String`).
    pub fn unavailable(
        service: Service,
        cause: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::Unavailable {
            service,
            source: Arc::from(cause.into()),
        }
    }

    pub fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    pub fn rejected(service: Service, cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Rejected {
            service,
            source: Arc::from(cause.into()),
        }
    }

    pub fn corrupt(
        service: Service,
        what: impl Into<String>,
        cause: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::Corrupt {
            service,
            what: what.into(),
            source: Arc::from(cause.into()),
        }
    }

    pub fn internal(cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Internal {
            source: Arc::from(cause.into()),
        }
    }
}

/// An underlying error and the step that hit it (`append`, `script directory_create`), so the
/// cause stays typed while the message names the step.
#[derive(Debug, Error)]
#[error("{step}: {source}")]
pub struct During {
    step: String,
    #[source]
    source: Box<dyn StdError + Send + Sync>,
}

impl During {
    pub fn new(step: impl Into<String>, cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            step: step.into(),
            source: cause.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("connection refused")]
    struct Refused;

    #[test]
    fn the_message_names_the_service_and_the_cause() {
        let error = PortError::unavailable(Service::Redis, Refused);
        assert_eq!(error.to_string(), "redis unavailable: connection refused");
        let error = PortError::corrupt(Service::MongoDb, "message", "no record field");
        assert_eq!(error.to_string(), "bad message in mongodb: no record field");
        assert_eq!(
            PortError::conflict("conversation c is not at version 1").to_string(),
            "conflict: conversation c is not at version 1"
        );
    }

    #[test]
    fn the_typed_cause_is_the_source() {
        let error = PortError::rejected(Service::Kafka, During::new("create", Refused));
        assert_eq!(
            error.to_string(),
            "kafka refused the request: create: connection refused"
        );
        let step = error.source().expect("the step");
        let cause = step.source().expect("the cause");
        assert!(cause.downcast_ref::<Refused>().is_some());
    }
}
