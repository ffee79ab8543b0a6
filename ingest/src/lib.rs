//! Parley's ingest: consumes the event log, writes it to the store and acknowledges stored
//! messages on `message.delivered`.
//!
//! # Layout
//! The library, shared with `parley-server` (which runs the pipeline in-process in standalone
//! mode and reads the same configuration sections):
//! - [`pipeline`]: [`IngestPipeline`], the consume / apply / acknowledge / commit loop, generic
//!   over the ports.
//! - [`ConsumerHealth`] (from `ports`): whether `run` has a consumer that makes progress (read
//!   by readiness checks).
//! - [`audit`]: [`AuditIngest`](audit::AuditIngest), the audit topic into MongoDB's `audit`
//!   collection (the `ingest` binary runs it next to the pipeline).
//! - [`mapping`]: which store write each log event becomes.
//! - [`metrics`]: [`IngestMetrics`], the counters `parley-server` exports and the histograms
//!   and lag gauge the `ingest` binary adds; [`ProcessMetrics`](metrics::ProcessMetrics), the
//!   binary's own.
//! - [`settings`]: the `[kafka]`, `[mongo]` and `[ingest]` sections both binaries read, and
//!   [`ServiceSettings`](settings::ServiceSettings), everything the `ingest` binary reads.
//!
//! The `ingest` binary (`src/main.rs`) adds its command line (`cli`), `setup` and `run` over
//! Kafka and MongoDB (`service`) and its `/healthz`, `/readyz` and `/metrics` endpoint
//! (`health`).

pub mod audit;
mod barrier;
pub mod mapping;
pub mod metrics;
pub mod pipeline;
pub mod settings;

#[cfg(test)]
mod pipeline_tests;

pub use barrier::IngestBarrier;
pub use metrics::{IngestMetrics, IngestMetricsSnapshot};
pub use pipeline::{IngestConfig, IngestError, IngestPipeline};
pub use ports::ConsumerHealth;
