//! `parley_attachment_*`: uploads and downloads handed out (counts and declared bytes),
//! refusals by reason, and what the orphan sweep did (late uploads included).

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct AttachmentMetrics {
    pub uploads: IntCounter,
    pub upload_bytes: IntCounter,
    pub downloads: IntCounter,
    pub download_bytes: IntCounter,
    /// By `reason`: `too_large`, `content_type`, `bad_request`, `unauthorized`, `not_found`.
    pub refusals: IntCounterVec,
    /// By `result`: `ok`, `failed`, `skipped` (another node holds the sweep lock).
    pub sweeps: IntCounterVec,
    pub swept: IntCounter,
    pub late_uploads_deleted: IntCounter,
}

pub(crate) fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("unique metric");
    counter
}

pub(crate) fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("unique metric");
    counter
}

impl AttachmentMetrics {
    pub fn new(registry: &Registry) -> Self {
        Self {
            uploads: counter(
                registry,
                "parley_attachment_uploads_total",
                "uploads accepted (POST /api/v1/attachments answered 201)",
            ),
            upload_bytes: counter(
                registry,
                "parley_attachment_upload_bytes_total",
                "declared bytes of the accepted uploads",
            ),
            downloads: counter(
                registry,
                "parley_attachment_downloads_total",
                "downloads granted (GET /api/v1/attachments/{id} answered 302)",
            ),
            download_bytes: counter(
                registry,
                "parley_attachment_download_bytes_total",
                "bytes of the attachments whose download was granted",
            ),
            refusals: counter_vec(
                registry,
                "parley_attachment_refusals_total",
                "attachment requests refused, by reason",
                "reason",
            ),
            sweeps: counter_vec(
                registry,
                "parley_attachment_sweeps_total",
                "orphan sweeps by result (ok, failed, skipped: another node sweeps)",
                "result",
            ),
            swept: counter(
                registry,
                "parley_attachment_swept_total",
                "uploads deleted by the sweep because no message carried them in time",
            ),
            late_uploads_deleted: counter(
                registry,
                "parley_attachment_late_uploads_deleted_total",
                "bytes that landed after the sweep deleted their upload, deleted one orphan TTL later",
            ),
        }
    }
}
