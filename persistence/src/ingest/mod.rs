//! The ingest pipeline: log → store → `message.delivered`, and the `ingest` binary's parts.
//!
//! - [`pipeline`]: [`IngestPipeline`], the consume / apply / acknowledge / commit loop.
//! - [`mapping`]: which store write each log event becomes.
//! - [`metrics`]: [`IngestMetrics`], the counters `parley-server` exports and the histograms
//!   and lag gauge the `ingest` binary adds.
//! - [`cli`], [`settings`], [`service`], [`health`]: the `ingest` binary — its command line, the
//!   sections of the shared configuration file it reads, `setup` and `run` over Kafka and
//!   MongoDB, and its `/healthz`, `/readyz` and `/metrics` endpoint.

pub mod cli;
pub mod health;
pub mod mapping;
pub mod metrics;
pub mod pipeline;
pub mod service;
pub mod settings;

#[cfg(test)]
mod pipeline_tests;

pub use metrics::{IngestMetrics, IngestMetricsSnapshot};
pub use pipeline::{IngestConfig, IngestError, IngestPipeline};
