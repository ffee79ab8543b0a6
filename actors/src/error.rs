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

impl From<PortError> for OpError {
    fn from(error: PortError) -> Self {
        match error {
            PortError::Unavailable(message) => OpError::unavailable(format!(
                "a backing service is unavailable, nothing was accepted: {message}"
            )),
            PortError::Conflict(message) => OpError::conflict(message),
            PortError::Internal(message) => OpError::internal(message),
        }
    }
}
