//! Exports (protocol v1.1 §18.2, the right of access): a background job on the node that was
//! asked writes one user's data as JSON Lines into the blob store, then records the job done
//! with the file's key; `GET /api/v1/admin/jobs/{id}` signs a short-lived download URL for it.
//!
//! - `lines`: the typed lines of the file.
//! - `run`: one export, streamed page by page into a blob writer.
//! - `metrics`: `parley_jobs_*`.
//! - `expiry`: deleting files older than `export.retain_files_secs`.
//!
//! A node that stops mid-export leaves the job `running`. Every node looks for unfinished
//! exports at its start and every [`RESUME_EVERY`] ([`Exporter::resume`]) and runs them again
//! from the start (the file is written anew under the same key): in a durable cluster any job
//! whose lease (`crate::job_lease`, `export:<job_id>`) lapsed, its node having stopped; a node
//! with its own store, the jobs it owns (`Job::owner`, its node id).

pub mod expiry;
mod lines;
mod metrics;
mod run;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ports::{
    AuditLog, AuditRecord, BlobKey, BlobStore, Directory, Job, JobId, JobKind, JobOutcome,
    JobState, JobUpdate, Jobs, PortError, Store, UserDataScan,
};
use serde_json::json;
use tokio::sync::watch;
use wire::{NodeId, UserId};

use crate::job_lease::JobLeases;

/// How often a node looks for unfinished exports to take up.
pub const RESUME_EVERY: Duration = Duration::from_secs(5);

/// How a run of an export begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Begin {
    /// An admin asked for it on this node just now.
    Requested,
    /// Found unfinished: its node stopped mid-export.
    TakenUp,
}

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
    /// Runs hold the job's lease when nodes share the job records (durable cluster).
    leases: JobLeases,
    /// The jobs this node runs right now.
    running: Mutex<HashSet<JobId>>,
}

impl Exporter {
    pub fn new(
        ports: ExportPorts,
        node_id: NodeId,
        url_ttl: Duration,
        metrics: JobMetrics,
        leases: JobLeases,
    ) -> Self {
        Self {
            ports,
            node_id,
            url_ttl,
            metrics,
            leases,
            running: Mutex::new(HashSet::new()),
        }
    }

    /// Records a new export job of `user_id`, owned by this node (holding its lease, so that
    /// no other node takes it up), and its request in the audit log (before the job can end),
    /// then starts it in the background. Answers its id once the job is recorded.
    pub async fn start(self: &Arc<Self>, user_id: UserId) -> Result<JobId, PortError> {
        let job = Job::start(JobKind::Export, user_id, self.node_id.clone());
        self.leases.of(&job).hold().await?;
        self.ports.jobs.create(&job).await?;
        self.audit(
            &job,
            "admin",
            "export.requested",
            json!({ "job_id": job.job_id }),
        )
        .await;
        let job_id = job.job_id;
        self.spawn(job, Begin::Requested);
        Ok(job_id)
    }

    async fn audit(&self, job: &Job, actor: &str, action: &str, details: serde_json::Value) {
        let record = AuditRecord::now(actor, action, format!("user:{}", job.user_id), details);
        actors::audit::append(&*self.ports.audit, record).await;
    }

    /// Takes up unfinished exports now and every [`RESUME_EVERY`], until shutdown: with shared
    /// job records any (the lease tells whether its node still runs it), else this node's own
    /// (its last stop left them).
    pub async fn resume(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.ports.jobs.unfinished(JobKind::Export).await {
                Ok(jobs) => (jobs.into_iter())
                    .filter(|job| self.leases.shared() || job.owner == self.node_id)
                    .for_each(|job| self.spawn(job, Begin::TakenUp)),
                Err(error) => tracing::warn!(error = %error, "listing unfinished exports failed"),
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(RESUME_EVERY) => {}
            }
        }
    }

    /// The sweep that deletes this node's (durable cluster: the cluster's) export files once
    /// they are `after` old, every `every`.
    pub fn expiry(self: &Arc<Self>, after: Duration, every: Duration) -> expiry::ExpirySweep {
        expiry::ExpirySweep {
            exporter: Arc::clone(self),
            after,
            every,
            lease: self.leases.round("export-expiry"),
        }
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

    /// Runs `job` in the background unless this node runs it already.
    fn spawn(self: &Arc<Self>, job: Job, begin: Begin) {
        let fresh = (self.running.lock())
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job.job_id);
        if !fresh {
            return;
        }
        let exporter = Arc::clone(self);
        tokio::spawn(async move {
            let job_id = job.job_id;
            exporter.run_held(job, begin).await;
            (exporter.running.lock())
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&job_id);
        });
    }

    /// Runs `job` while holding its lease, unless another node holds it or (a job taken up)
    /// it ended meanwhile.
    async fn run_held(&self, job: Job, begin: Begin) {
        let lease = self.leases.of(&job);
        match lease.hold().await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(job_id = %job.job_id, error = %error, "export: taking the job's lease failed; it is taken up again");
                return;
            }
        }
        let _renewal = lease.keep();
        if begin == Begin::TakenUp && !self.confirm_restart(&job).await {
            return;
        }
        self.metrics.started.with_label_values(&["export"]).inc();
        self.run(job).await;
    }

    /// Whether to run `job` (found unfinished) again, now that this node holds it: only while
    /// it still is unfinished (the listing may predate its end). Records the restart.
    async fn confirm_restart(&self, job: &Job) -> bool {
        match self.ports.jobs.get(&job.job_id).await {
            Ok(Some(now)) if now.state == JobState::Running => {}
            Ok(_) => return false,
            Err(error) => {
                tracing::warn!(job_id = %job.job_id, error = %error, "export: reading the job failed; it is taken up again");
                return false;
            }
        }
        tracing::info!(job_id = %job.job_id, user_id = %job.user_id, owner = %job.owner, "export: running an unfinished job again");
        let details = json!({ "job_id": job.job_id });
        self.audit(job, &self.actor(), "export.restarted", details)
            .await;
        true
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
        // Everything acknowledged before the export began is in it.
        self.ports.store.wait_for_log().await;
        let writer = self.ports.blobs.writer(key).await?;
        let sources = run::Sources {
            directory: &*self.ports.directory,
            store: &*self.ports.store,
            scan: &*self.ports.scan,
        };
        run::write_export(&sources, user_id, writer).await
    }
}
