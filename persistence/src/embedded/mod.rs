//! Embedded adapters for standalone mode, each over one redb file in the data directory.

pub mod log;
pub mod log_consumer;
mod log_prune;
pub mod store;

pub use log::{EmbeddedLog, LogOptions, LogStats};
pub use log_consumer::EmbeddedLogConsumer;
pub use store::EmbeddedStore;
