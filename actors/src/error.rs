//! The error an operation answers with; maps one-to-one onto protocol error codes.

use ports::PortError;
use wire::{ErrorBody, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn not_member() -> Self {
        Self::new(
            ErrorCode::NotMember,
            "you are not a member of this conversation",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// `unavailable` with a hint when to retry: the work was refused before it started, to
    /// keep memory bounded (a conversation's queue is full).
    pub fn overloaded(message: impl Into<String>, retry_after_ms: u64) -> Self {
        Self::unavailable_retry_after(message, retry_after_ms)
    }

    /// `unavailable` with a hint when to retry.
    pub fn unavailable_retry_after(message: impl Into<String>, retry_after_ms: u64) -> Self {
        Self {
            code: ErrorCode::Unavailable,
            message: message.into(),
            retry_after_ms: Some(retry_after_ms),
        }
    }

    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: "rate limit exceeded".to_owned(),
            retry_after_ms: Some(retry_after_ms),
        }
    }

    pub fn into_body(self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message,
            retry_after_ms: self.retry_after_ms,
        }
    }
}

/// What a client reads for a port failure that is not a conflict: a fixed text, since the
/// detail (hosts, keys, driver messages) is for the operator's log, not for clients.
pub const UNAVAILABLE_MESSAGE: &str = "a backing service is unavailable, nothing was accepted";
pub const INTERNAL_MESSAGE: &str = "internal error (the details are in the server's log)";

/// The code and message a client sees for a port failure. Unavailable and conflict keep their
/// codes; everything else is internal. The full error goes to the log (warn), never to the
/// client: a conflict's text is Parley's own, every other failure answers a fixed text.
impl From<PortError> for OpError {
    fn from(error: PortError) -> Self {
        match error {
            PortError::Conflict { what } => OpError::conflict(what),
            error @ PortError::Unavailable { .. } => {
                tracing::warn!(error = %error, "backing service unavailable, answered `unavailable`");
                OpError::unavailable(UNAVAILABLE_MESSAGE)
            }
            error => {
                tracing::warn!(error = %error, "backing service failure, answered `internal`");
                OpError::internal(INTERNAL_MESSAGE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ports::Service;

    use super::*;

    #[test]
    fn port_failures_keep_their_codes_and_never_show_their_detail() {
        let unavailable =
            OpError::from(PortError::unavailable(Service::Redis, "connection refused"));
        assert_eq!(unavailable.code, ErrorCode::Unavailable);
        assert_eq!(unavailable.message, UNAVAILABLE_MESSAGE);
        let conflict = OpError::from(PortError::conflict("conversation c is not at version 1"));
        assert_eq!(conflict.code, ErrorCode::Conflict);
        assert_eq!(conflict.message, "conversation c is not at version 1");
        let rejected = OpError::from(PortError::rejected(Service::MongoDb, "write refused"));
        assert_eq!(rejected.code, ErrorCode::Internal);
        assert_eq!(rejected.message, INTERNAL_MESSAGE);
        let internal = OpError::from(PortError::internal("subscription worker stopped"));
        assert_eq!(internal.code, ErrorCode::Internal);
        assert_eq!(internal.message, INTERNAL_MESSAGE);
        let corrupt = OpError::from(PortError::corrupt(Service::Redis, "message", "eof"));
        assert_eq!(corrupt.code, ErrorCode::Internal);
        assert_eq!(corrupt.message, INTERNAL_MESSAGE);
    }
}
