//! Parley's actors. They talk to the outside world only through the traits of `ports`.
//!
//! # Layout
//! - [`abandoned_sends`]: the reaper's round: settles the seqs of sends whose node died after
//!   reserving them and that nobody retried (a tombstone through the conversation's actor).
//! - [`attachments`]: uploads recorded in the blob store, the checks of a message carrying them,
//!   who may download them, and the sweep of unused ones (protocol v1.1).
//! - [`audit`]: audit records of conversation creation and membership changes.
//! - [`node`]: [`Node`], the per-node context every actor holds (ports, limits, metrics,
//!   the local registry and the conversation supervisor).
//! - [`session`]: the `Session` actor, one per WebSocket, and [`SessionHandle`].
//! - [`conversation`]: the `Conversation` actor, one per active conversation: membership checks,
//!   batching of writes (a batch runs as stages: reserve → apply → append or give back →
//!   confirm → publish), sequencing, hand-off to the log, ordered local fan-out.
//! - [`supervisor`]: starts conversation actors on demand, restarts failed ones, forgets idle ones.
//! - [`connections`]: the connection caps (per user and per node) and their permits.
//! - [`registry`]: which local sessions belong to which users and conversations; keeps the bus
//!   subscriptions of this node in step.
//! - [`router`]: takes envelopes from the bus and hands them to conversations and sessions.
//! - [`dispatch`]: turns a decoded request into work: a table from each operation to its file
//!   in [`ops`].
//! - [`ops`]: one file per client operation: its argument checks, the command it queues on the
//!   conversation actor (or its work against the ports), and the command's apply step.
//! - [`presence`]: sessions coming and going, and online/offline announcements to co-members.
//! - [`moderation`]: what the admin API asks of the actors: closing a user's sessions on
//!   every node, and the moderation delete of a message.
//! - [`retention`]: the retention sweep: purging expired messages through the log, the caches
//!   and the attachment files, skipping conversations on legal hold.
//! - [`stored_acks`]: relays `message.stored` acknowledgments from the log to senders.
//! - [`error`]: [`OpError`], the client-facing error of an operation.
//! - [`metrics`]: the Prometheus metrics of this crate.

pub mod abandoned_sends;
pub mod attachments;
pub mod audit;
pub mod connections;
pub mod conversation;
pub mod delivery_floor;
pub mod dispatch;
pub mod erasure;
pub mod error;
pub mod metrics;
pub mod moderation;
pub mod node;
pub mod ops;
pub mod presence;
pub mod registry;
pub mod retention;
pub mod router;
pub mod session;
pub mod stored_acks;
pub mod supervisor;

#[cfg(test)]
mod testing;

pub use connections::{ConnectionPermit, ConnectionRefused};
pub use error::OpError;
pub use node::{Limits, Node, Ports, Quiesced};
pub use session::{SessionHandle, SessionParams};
