//! The `Session` actor: one per WebSocket, owning its socket. It decodes frames, enforces
//! frame limits, rate limits and in-flight limits, writes the frames queued for it (a bounded
//! outbound queue that conversations and the router fill), heartbeats, closes on token expiry,
//! and on close leaves the registry and presence.
//!
//! The socket is a tokio-tungstenite stream over the raw TCP connection (the server answers the
//! upgrade itself). It is driven by one future in the actor's own context (the connection):
//! reading, writing, the heartbeat, the token expiry and the close handshake share the actor's
//! task and a single timer, so an established WebSocket holds the actor and its socket and
//! nothing else (docs/adr/0003-websocket-transport.md).
//!
//! # Layout
//! - `handle`: [`SessionHandle`], how the rest of the node reaches a session: its bounded
//!   outbound queue and its close request ([`CloseRequest`]).
//! - `actor`: the [`Session`] actix actor and what it does with each frame read.
//! - `connection`: the socket driver: reads, writes, one timer, the close handshake.
//! - `framing`: the TCP stream under the WebSocket, which follows the client's frame
//!   boundaries so that input dropped after a 1009 or 1002 still shows the client's close frame.

mod actor;
mod connection;
mod framing;
mod handle;
#[cfg(test)]
mod write_tests;

use tokio_tungstenite::WebSocketStream;
use wire::{Timestamp, UserId};

pub use actor::Session;
pub use handle::{
    CloseRequest, DetachedSession, Outbound, QueuedFrames, SessionHandle, SessionHome,
};

/// What the session is opened with, after authentication.
#[derive(Debug)]
pub struct SessionParams {
    pub user_id: UserId,
    pub token_expires_at: Timestamp,
    /// The connection's place within the connection caps, held for the session's life.
    pub permit: crate::ConnectionPermit,
}

/// An upgraded client connection.
type Socket = WebSocketStream<framing::TrackedStream>;
