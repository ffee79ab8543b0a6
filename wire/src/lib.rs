//! Parley's shared vocabulary: protocol v1 frames and the events written to the log.
//!
//! # Layout
//! - [`ids`]: newtype identifiers (`UserId`, `ConversationId`, `MessageId`, `Seq`, ...).
//! - [`objects`]: the objects clients see (`Conversation`, `Message`).
//! - [`error`]: stable error codes and WebSocket close codes.
//! - [`frames`]: request / reply / event frame envelopes and request decoding.
//! - [`ops`]: each operation's arguments and result.
//! - [`search`]: `search.messages`' arguments, result and limits (v1.1).
//! - [`events`]: server-pushed events (`message.new`, `presence`, ...).
//! - [`log`]: versioned domain events written to the durable log and consumed by ingest.
//!
//! This crate does no I/O; everything here is plain data with serde derives. The optional
//! `typescript` feature adds `ts_rs::TS` derives to the client-facing types, from which
//! `wire-typescript` (clients/typescript/codegen) writes the TypeScript SDK's types.

pub mod error;
pub mod events;
pub mod frames;
pub mod ids;
pub mod log;
pub mod objects;
pub mod ops;
pub mod search;

pub use error::{CloseCode, ErrorBody, ErrorCode};
pub use ids::{
    AttachmentId, ClientMsgId, ConversationId, MessageId, NodeId, Seq, SessionId, UserId,
};
pub use objects::{
    AttachmentRef, Conversation, ConversationKind, ForwardedFrom, Message, Reactions,
};

/// Protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u32 = 1;

/// Timestamps on the wire: RFC 3339 UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
