//! `parley_jobs_*`: admin jobs started, done and failed by kind, and the bytes exports wrote.

use ports::JobKind;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct JobMetrics {
    /// By `kind` (`export`, `erasure`); a job resumed after a restart counts again.
    pub started: IntCounterVec,
    pub done: IntCounterVec,
    pub failed: IntCounterVec,
    /// Bytes of finished export files.
    pub export_bytes: IntCounter,
}

fn by_kind(registry: &Registry, name: &str, help: &str) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), &["kind"]).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("unique metric");
    counter
}

impl JobMetrics {
    pub fn new(registry: &Registry) -> Self {
        let export_bytes = IntCounter::new(
            "parley_jobs_export_bytes_total",
            "bytes of the export files written",
        )
        .expect("valid metric");
        registry
            .register(Box::new(export_bytes.clone()))
            .expect("unique metric");
        let metrics = Self {
            started: by_kind(
                registry,
                "parley_jobs_started_total",
                "admin jobs started (or restarted after a node restart) by kind",
            ),
            done: by_kind(
                registry,
                "parley_jobs_done_total",
                "admin jobs done by kind",
            ),
            failed: by_kind(
                registry,
                "parley_jobs_failed_total",
                "admin jobs failed by kind",
            ),
            export_bytes,
        };
        // Every kind's series exists from the first scrape, at 0.
        for kind in [JobKind::Export, JobKind::Erasure] {
            for counter in [&metrics.started, &metrics.done, &metrics.failed] {
                counter.with_label_values(&[kind.as_str()]);
            }
        }
        metrics
    }
}
