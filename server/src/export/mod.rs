//! Exports (protocol v1.1 §18.2, the right of access): a background job on the node that was
//! asked writes one user's data as JSON Lines into the blob store, then records the job done
//! with the file's key; `GET /api/v1/admin/jobs/{id}` signs a short-lived download URL for it.
//!
//! - `lines`: the typed lines of the file.
//! - `run`: one export, streamed page by page into a blob writer.
//! - `metrics`: `parley_jobs_*`.
//!
//! A node that stops mid-export leaves the job `running`; at its next start it runs the jobs
//! it owns (`Job::owner`, its node id) again from the start ([`Exporter::resume_unfinished`]).

mod lines;
mod metrics;
mod run;

use std::sync::Arc;
use std::time::Duration;

use ports::{
    AuditLog, AuditRecord, BlobKey, BlobStore, Directory, Job, JobId, JobKind, JobOutcome,
    JobUpdate, Jobs, PortError, Store, UserDataScan,
};
use serde_json::json;
use wire::{NodeId, UserId};

pub use lines::LineCounts;
pub use metrics::JobMetrics;

/// What exports read from and write to.
pub struct ExportPorts {
    pub jobs: Arc<dyn Jobs>,
    pub directory: Arc<dyn Directory>,
    pub store: Arc<dyn Store>,
    pub scan: Arc<dyn UserDataScan>,
    pub blobs: Arc<dyn BlobStore>,
    pub audit: Arc<dyn AuditLog>,
}

/// Starts, runs and resumes exports, and signs their download URLs.
pub struct Exporter {
    ports: ExportPorts,
    node_id: NodeId,
    /// How long a download URL stays valid (`export.download_url_ttl_secs`).
    url_ttl: Duration,
    metrics: JobMetrics,
}

impl Exporter {
    pub fn new(
        ports: ExportPorts,
        node_id: NodeId,
        url_ttl: Duration,
        metrics: JobMetrics,
    ) -> Self {
        Self {
            ports,
            node_id,
            url_ttl,
            metrics,
        }
    }

    /// Records a new export job of `user_id`, owned by this node, and its request in the
    /// audit log (before the job can end), then starts it in the background. Answers its id
    /// once the job is recorded.
    pub async fn start(self: &Arc<Self>, user_id: UserId) -> Result<JobId, PortError> {
        let job = Job::start(JobKind::Export, user_id, self.node_id.clone());
        self.ports.jobs.create(&job).await?;
        self.audit(
            &job,
            "admin",
            "export.requested",
            json!({ "job_id": job.job_id }),
        )
        .await;
        let job_id = job.job_id;
        self.spawn(job);
        Ok(job_id)
    }

    async fn audit(&self, job: &Job, actor: &str, action: &str, details: serde_json::Value) {
        let record = AuditRecord::now(actor, action, format!("user:{}", job.user_id), details);
        actors::audit::append(&*self.ports.audit, record).await;
    }

    /// Runs again, from the start, the exports this node owns that a stop left running.
    pub async fn resume_unfinished(self: &Arc<Self>) -> Result<usize, PortError> {
        let unfinished = self.ports.jobs.unfinished(JobKind::Export).await?;
        let mine: Vec<Job> = unfinished
            .into_iter()
            .filter(|job| job.owner == self.node_id)
            .collect();
        let resumed = mine.len();
        for job in mine {
            tracing::info!(job_id = %job.job_id, user_id = %job.user_id, "export: resuming after a restart");
            let details = json!({ "job_id": job.job_id });
            self.audit(&job, &self.actor(), "export.restarted", details)
                .await;
            self.spawn(job);
        }
        Ok(resumed)
    }

    /// A download URL of a done export's file, valid for the configured time.
    pub async fn download_url(&self, job: &Job) -> Result<Option<String>, PortError> {
        let Some(key) = &job.outcome.blob_key else {
            return Ok(None);
        };
        let key = BlobKey::parse(key.as_str()).map_err(|error| {
            PortError::corrupt(ports::Service::ObjectStorage, "export key", error)
        })?;
        let request = self.ports.blobs.download_url(&key, self.url_ttl).await?;
        Ok(Some(request.url))
    }

    fn spawn(self: &Arc<Self>, job: Job) {
        let exporter = Arc::clone(self);
        self.metrics.started.with_label_values(&["export"]).inc();
        tokio::spawn(async move { exporter.run(job).await });
    }

    /// Writes the file, then records how the job ended: in the job and in the audit log.
    async fn run(&self, job: Job) {
        let key = run::export_key(&job.job_id);
        let outcome = self.write(&job.user_id, &key).await;
        let (update, action, details) = match &outcome {
            Ok((counts, bytes)) => {
                self.metrics.done.with_label_values(&["export"]).inc();
                self.metrics.export_bytes.inc_by(*bytes);
                let outcome = JobOutcome {
                    blob_key: Some(key.as_str().to_owned()),
                    ..JobOutcome::default()
                };
                let details = json!({ "job_id": job.job_id, "counts": counts, "bytes": bytes });
                tracing::info!(job_id = %job.job_id, user_id = %job.user_id, bytes, messages = counts.messages, "export done");
                (JobUpdate::done(outcome), "export.done", details)
            }
            Err(error) => {
                self.metrics.failed.with_label_values(&["export"]).inc();
                tracing::warn!(job_id = %job.job_id, user_id = %job.user_id, error = %error, "export failed");
                let details = json!({ "job_id": job.job_id, "error": error.to_string() });
                (
                    JobUpdate::failed(error.to_string()),
                    "export.failed",
                    details,
                )
            }
        };
        if let Err(error) = self.ports.jobs.update(&job.job_id, update).await {
            tracing::warn!(job_id = %job.job_id, error = %error, "export: recording the outcome failed");
        }
        self.audit(&job, &self.actor(), action, details).await;
    }

    /// The actor of the records a job writes itself: the node that runs it.
    fn actor(&self) -> String {
        format!("node:{}", self.node_id)
    }

    async fn write(&self, user_id: &UserId, key: &BlobKey) -> Result<(LineCounts, u64), PortError> {
        let writer = self.ports.blobs.writer(key).await?;
        let sources = run::Sources {
            directory: &*self.ports.directory,
            store: &*self.ports.store,
            scan: &*self.ports.scan,
        };
        run::write_export(&sources, user_id, writer).await
    }
}
