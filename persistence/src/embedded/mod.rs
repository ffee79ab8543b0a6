//! Embedded adapters for standalone mode, in the data directory: the event log (segment files
//! and a redb file of consumer offsets, in `log/`) and the store (one redb file).

pub mod log;
pub mod log_consumer;
mod log_migrate;
mod log_offsets;
mod log_prune;
mod log_recent;
mod log_topics;
mod log_writer;
mod segment;
pub mod store;

pub use log::{EmbeddedLog, FsyncObserver, LogOptions, LogStats};
pub use log_consumer::EmbeddedLogConsumer;
pub use log_migrate::{migrate_redb_log, Migrated};
pub use log_offsets::MakeDurable;
pub use store::EmbeddedStore;
