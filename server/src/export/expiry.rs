//! The expiry of export files (`export.retain_files_secs`): a sweep lists the files under
//! `exports/`, and deletes each written longer ago than the setting says, after marking its job
//! (`JobOutcome::file_expired_at`, no blob key: the job answers no download URL) and recording
//! `export.expired` in the audit log. In a durable cluster one node sweeps per round: the one
//! that takes the Redis lease `export-expiry` (held for most of the interval); a node with its
//! own store sweeps its own files.

use std::sync::Arc;
use std::time::Duration;

use persistence::redis::RedisLease;
use ports::{BlobKey, JobId, JobOutcome, JobState, JobUpdate, PortError};
use serde_json::json;
use tokio::sync::watch;

use super::Exporter;
use crate::job_lease::{take_round, Round};

/// Where export files live in the blob store.
const PREFIX: &str = "exports/";

/// What a sweep needs.
pub struct ExpirySweep {
    pub exporter: Arc<Exporter>,
    /// Files older than this go.
    pub after: Duration,
    pub every: Duration,
    /// `Some` when the nodes share the job records (durable cluster).
    pub lease: Option<RedisLease>,
}

impl ExpirySweep {
    /// Sweeps every `every` until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
            let result = self.sweep_if_held().await;
            let metrics = &self.exporter.metrics;
            metrics.expiry_sweeps.with_label_values(&[result]).inc();
        }
    }

    /// One round, when this node holds the lease: its result label.
    async fn sweep_if_held(&self) -> &'static str {
        let _renewal = match take_round(self.lease.as_ref(), self.every.mul_f64(0.9)).await {
            Ok(Round::Run(renewal)) => renewal,
            Ok(Round::Skip) => return "skipped",
            Err(error) => {
                tracing::warn!(error = %error, "export expiry: taking the sweep lease failed");
                return "failed";
            }
        };
        match self.sweep().await {
            Ok(0) => "ok",
            Ok(expired) => {
                tracing::info!(expired, "export files expired");
                "ok"
            }
            Err(error) => {
                tracing::warn!(error = %error, "export expiry sweep failed");
                "failed"
            }
        }
    }

    /// Deletes every export file older than `after`: answers how many.
    async fn sweep(&self) -> Result<u64, PortError> {
        let blobs = &self.exporter.ports.blobs;
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(self.after).map_err(PortError::internal)?;
        let mut expired = 0;
        for file in blobs.list(PREFIX).await? {
            if file.last_modified >= cutoff {
                continue;
            }
            if let Some(job_id) = job_of(&file.key) {
                self.expire_job(&job_id, &file.key).await?;
            }
            blobs.delete(&file.key).await?;
            self.exporter.metrics.export_files_expired.inc();
            expired += 1;
        }
        Ok(expired)
    }

    /// Marks the done job whose file `key` is: no download URL from now on.
    async fn expire_job(&self, job_id: &JobId, key: &BlobKey) -> Result<(), PortError> {
        let jobs = &self.exporter.ports.jobs;
        let Some(job) = jobs.get(job_id).await? else {
            return Ok(());
        };
        if job.state != JobState::Done || job.outcome.blob_key.as_deref() != Some(key.as_str()) {
            return Ok(());
        }
        let outcome = JobOutcome {
            blob_key: None,
            file_expired_at: Some(chrono::Utc::now()),
            ..job.outcome.clone()
        };
        jobs.update(job_id, JobUpdate::done(outcome)).await?;
        let details = json!({ "job_id": job_id });
        let actor = self.exporter.actor();
        (self.exporter)
            .audit(&job, &actor, "export.expired", details)
            .await;
        Ok(())
    }
}

/// The job of an export file's key (`exports/<job id>.jsonl`).
fn job_of(key: &BlobKey) -> Option<JobId> {
    let name = key.as_str().strip_prefix(PREFIX)?.strip_suffix(".jsonl")?;
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_files_key_names_its_job() {
        let job_id = JobId::new();
        assert_eq!(
            job_of(&super::super::run::export_key(&job_id)),
            Some(job_id)
        );
        let other = BlobKey::parse("exports/notes.txt").expect("key");
        assert_eq!(job_of(&other), None);
    }
}
