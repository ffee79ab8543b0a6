//! Parley's adapters: everything behind the ports that is not the actors. The ingest pipeline
//! and binary that write the store from the log are the `ingest` crate.
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
//! - [`blob`]: attachment bytes — [`LocalBlobStore`](blob::LocalBlobStore) (files, standalone)
//!   and [`S3BlobStore`](blob::S3BlobStore) (S3-compatible storage, cluster).
//! - [`error`]: [`PersistenceError`] and its mapping onto `PortError`.

pub mod blob;
pub mod embedded;
pub mod error;
pub mod kafka;
pub mod memory;
pub mod mongo;
pub mod redis;

pub use embedded::{EmbeddedLog, EmbeddedStore, LogOptions};
pub use error::PersistenceError;
pub use memory::{
    InProcessBus, MemoryMessageCache, MemoryPresence, MemoryRateLimiter, MemorySequencer,
    NoMessageCache,
};
