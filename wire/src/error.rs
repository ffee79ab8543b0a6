//! Stable error codes (in `error.code` of failure frames and HTTP error bodies) and close codes.

use serde::{Deserialize, Serialize};

/// Every error a client can see. The string form is the stable contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    Unauthorized,
    NotMember,
    NotFound,
    Forbidden,
    Conflict,
    TooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::Unauthorized,
        ErrorCode::NotMember,
        ErrorCode::NotFound,
        ErrorCode::Forbidden,
        ErrorCode::Conflict,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status used when this error answers a REST request.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownOp => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotMember | ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The `error` object of a failure frame or HTTP error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "typescript", ts(optional))]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: "rate limit exceeded".to_owned(),
            retry_after_ms: Some(retry_after_ms),
        }
    }
}

/// WebSocket close codes the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// Normal closure (heartbeat timeout, client asked).
    Normal = 1000,
    /// Going away: the node drains; preceded by a `goaway` event.
    GoingAway = 1001,
    /// The client broke the WebSocket protocol itself (for example an invalid frame).
    ProtocolError = 1002,
    /// A frame over the hard limit (1 MiB) was not read.
    MessageTooBig = 1009,
    /// Try again later: the session could not be registered.
    TryAgainLater = 1013,
    /// The token expired or is invalid (or was revoked by an operator).
    TokenInvalid = 4001,
    /// An operator disconnected or banned the user (admin API, protocol v1.1).
    Kicked = 4003,
    /// Sustained rate-limit abuse.
    RateLimitAbuse = 4008,
    /// The client read too slowly: its outbound queue overflowed.
    TooSlow = 4009,
}

impl CloseCode {
    /// Every close code the server sends (each has a `parley_ws_closes_total{code}` series).
    pub const ALL: [CloseCode; 9] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::MessageTooBig,
        CloseCode::TryAgainLater,
        CloseCode::TokenInvalid,
        CloseCode::Kicked,
        CloseCode::RateLimitAbuse,
        CloseCode::TooSlow,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }
}
