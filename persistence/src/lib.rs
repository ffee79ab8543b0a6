//! Parley's adapters: everything behind the ports that is not the actors.
//!
//! # Layout
//! - [`embedded`]: standalone durable adapters over redb files in the data directory —
//!   [`EmbeddedLog`] (the event log, group-committed by one writer thread) and
//!   [`EmbeddedStore`] (the store and the directory).
//! - [`memory`]: node-local adapters — [`InProcessBus`], [`MemorySequencer`],
//!   [`MemoryPresence`], [`MemoryRateLimiter`], [`MemoryMessageCache`], [`NoMessageCache`] (standalone).
//! - [`redis`]: cluster adapters over a shared Redis (bus, sequencer, presence, rate limits,
//!   directory, message cache).
//! - [`mongo`]: [`MongoStore`](mongo::MongoStore), the store over MongoDB (cluster mode), written
//!   by ingest with bulk, idempotent upserts.
//! - [`kafka`]: [`KafkaLog`](kafka::KafkaLog), the event log over Kafka (cluster mode), an
//!   idempotent keyed producer and consumer-group members.
//! - [`ingest`]: [`IngestPipeline`], log → store → `message.delivered`, generic over the ports
//!   so the same code runs in-process (standalone) and as the `ingest` binary.
//! - [`settings`]: the sections of the shared configuration file both binaries read
//!   (`[kafka]`, `[mongo]`, `[ingest]`).
//! - [`error`]: [`PersistenceError`] and its mapping onto `PortError`.

pub mod embedded;
pub mod error;
pub mod ingest;
pub mod kafka;
pub mod memory;
pub mod mongo;
pub mod redis;
pub mod settings;

pub use embedded::{EmbeddedLog, EmbeddedStore};
pub use error::PersistenceError;
pub use ingest::{IngestConfig, IngestMetrics, IngestPipeline};
pub use memory::{
    InProcessBus, MemoryMessageCache, MemoryPresence, MemoryRateLimiter, MemorySequencer,
    NoMessageCache,
};
