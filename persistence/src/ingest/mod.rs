//! The ingest pipeline: log → store → `message.delivered`.
//!
//! - [`pipeline`]: [`IngestPipeline`], the consume / apply / acknowledge / commit loop.
//! - [`mapping`]: which store write each log event becomes.
//! - [`metrics`]: [`IngestMetrics`], plain counters the server exports.

pub mod mapping;
pub mod metrics;
pub mod pipeline;

pub use metrics::IngestMetrics;
pub use pipeline::{IngestConfig, IngestError, IngestPipeline};
