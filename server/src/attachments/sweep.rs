//! The orphan sweep: every `attachments.sweep_interval_secs`, uploads no message carried within
//! `attachments.orphan_ttl_secs` are deleted, and so are bytes that landed after an earlier
//! sweep deleted their upload (one orphan TTL after it). In a cluster one node sweeps per round: the one
//! that holds the Redis lease `attachments-sweep` (taken for most of the interval, and renewed
//! while a sweep runs longer than that, so that no other node starts one beside it).

use std::sync::Arc;
use std::time::Duration;

use persistence::redis::RedisLease;
use tokio::sync::watch;

use super::AttachmentService;
use crate::job_lease::{take_round, Round};

/// Runs sweeps until shutdown.
pub async fn run(
    service: Arc<AttachmentService>,
    lease: Option<RedisLease>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = service.settings.sweep_interval();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        sweep_once(&service, lease.as_ref(), every).await;
    }
}

async fn sweep_once(service: &AttachmentService, lease: Option<&RedisLease>, every: Duration) {
    let metrics = &service.metrics;
    let _renewal = match take_round(lease, every.mul_f64(0.9)).await {
        Ok(Round::Run(renewal)) => renewal,
        Ok(Round::Skip) => return metrics.sweeps.with_label_values(&["skipped"]).inc(),
        Err(error) => {
            metrics.sweeps.with_label_values(&["failed"]).inc();
            tracing::warn!(error = %error, "attachment sweep lease failed");
            return;
        }
    };
    match service.attachments.sweep().await {
        Ok(outcome) => {
            metrics.sweeps.with_label_values(&["ok"]).inc();
            metrics.swept.inc_by(outcome.deleted as u64);
            metrics
                .late_uploads_deleted
                .inc_by(outcome.late_uploads_deleted as u64);
            if outcome.deleted > 0 || outcome.late_uploads_deleted > 0 {
                tracing::info!(
                    deleted = outcome.deleted,
                    kept = outcome.kept,
                    late_uploads_deleted = outcome.late_uploads_deleted,
                    "orphan uploads swept"
                );
            }
        }
        Err(error) => {
            metrics.sweeps.with_label_values(&["failed"]).inc();
            tracing::warn!(error = %error, "attachment sweep failed");
        }
    }
}
