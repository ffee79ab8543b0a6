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
    /// Export files deleted for their age (`export.retain_files_secs`).
    pub export_files_expired: IntCounter,
    /// Expiry sweeps by `result`: `ok`, `failed`, `skipped` (another node's round).
    pub expiry_sweeps: IntCounterVec,
}

fn by_kind(registry: &Registry, name: &str, help: &str) -> IntCounterVec {
    by_label(registry, name, help, "kind")
}

fn by_label(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("unique metric");
    counter
}

impl JobMetrics {
    pub fn new(registry: &Registry) -> Self {
        let export_bytes = counter(
            registry,
            "parley_jobs_export_bytes_total",
            "bytes of the export files written",
        );
        let export_files_expired = counter(
            registry,
            "parley_jobs_export_files_expired_total",
            "export files deleted for their age (export.retain_files_secs)",
        );
        let expiry_sweeps = by_label(
            registry,
            "parley_jobs_export_expiry_sweeps_total",
            "export expiry sweeps by result",
            "result",
        );
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
            export_files_expired,
            expiry_sweeps,
        };
        // Every kind's series exists from the first scrape, at 0.
        for kind in [JobKind::Export, JobKind::Erasure] {
            for counter in [&metrics.started, &metrics.done, &metrics.failed] {
                counter.with_label_values(&[kind.as_str()]);
            }
        }
        for result in ["ok", "failed", "skipped"] {
            metrics.expiry_sweeps.with_label_values(&[result]);
        }
        metrics
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("unique metric");
    counter
}
