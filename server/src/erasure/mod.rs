//! Erasure jobs (protocol v1.1, "Compliance", right to erasure): `POST
//! /api/v1/admin/users/{user_id}/erase` records a job ([`ports::Jobs`], kind `erasure`) and
//! runs it here; `GET /api/v1/admin/jobs/{job_id}` reads it.
//!
//! A run: take the job's lease (durable cluster: Redis lease `erasure:<job_id>`, renewed every
//! third of its TTL while the run lasts and checked before each conversation; nodes with their
//! own store need none: `crate::job_lease`), close the user's sessions
//! everywhere, then walk their conversations (those they are in, and those holding their
//! messages) in id order after the job's cursor, erasing the
//! user from each ([`actors::erasure`]; a conversation on legal hold is listed in the job's
//! `held_back` instead) and saving the cursor after each; close their sessions again, mark the
//! job done. Audit records (actor `admin`): `erasure.conversation` per conversation,
//! `erasure.completed` at the end, with counts and held-back ids, never text.
//!
//! A run that stops (a failed step, a crash) leaves the job running: every node looks up its
//! unfinished erasure jobs at start and every [`RESUME_EVERY`], and runs those whose lease is
//! free from their cursor. Every step is idempotent, so running the same ground twice is
//! harmless.

pub mod metrics;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actors::erasure::{Erased, Verdict};
use actors::{Node, OpError};
use ports::{
    AuditRecord, Job, JobId, JobKind, JobOutcome, JobState, JobUpdate, Jobs, RetentionScan,
    SessionCloseReason,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use wire::{ConversationId, UserId};

pub use metrics::ErasureMetrics;
use metrics::RunResult;

use crate::job_lease::{JobLease, JobLeases};

/// How often a node looks for unfinished erasure jobs to take up.
pub const RESUME_EVERY: Duration = Duration::from_secs(5);

/// The job's cursor: the last conversation done, and what the job erased so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    after: Option<ConversationId>,
    conversations: u64,
    messages: u64,
    files_deleted: u64,
}

impl Progress {
    fn of(job: &Job) -> Self {
        job.cursor
            .as_deref()
            .and_then(|cursor| serde_json::from_str(cursor).ok())
            .unwrap_or_default()
    }

    fn cursor(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }
}

/// The node's erasure jobs: requesting them, running them, taking them up again.
#[derive(Clone)]
pub struct Erasures {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    jobs: Arc<dyn Jobs>,
    /// Finds the conversations holding a user's messages (also those they left).
    scan: Arc<dyn RetentionScan>,
    /// Runs take a lease when nodes share the job records (durable cluster).
    leases: JobLeases,
    /// The jobs this node runs right now.
    running: Mutex<HashSet<JobId>>,
    metrics: ErasureMetrics,
}

impl Erasures {
    pub fn new(
        node: Node,
        jobs: Arc<dyn Jobs>,
        scan: Arc<dyn RetentionScan>,
        leases: JobLeases,
        metrics: ErasureMetrics,
    ) -> Self {
        let inner = Inner {
            node,
            jobs,
            scan,
            leases,
            running: Mutex::new(HashSet::new()),
            metrics,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Records an erasure job for `user_id` and starts running it.
    pub async fn request(&self, user_id: UserId) -> Result<Job, OpError> {
        let inner = &self.inner;
        let job = Job::start(JobKind::Erasure, user_id, inner.node.node_id().clone());
        inner.jobs.create(&job).await?;
        inner.metrics.requested.inc();
        self.spawn(job.clone());
        Ok(job)
    }

    /// Takes up unfinished erasure jobs now and every [`RESUME_EVERY`], until shutdown.
    pub async fn resume(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.inner.jobs.unfinished(JobKind::Erasure).await {
                Ok(jobs) => jobs.into_iter().for_each(|job| self.spawn(job)),
                Err(error) => {
                    tracing::warn!(error = %error, "listing unfinished erasure jobs failed");
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(RESUME_EVERY) => {}
            }
        }
    }

    /// Runs `job` unless this node runs it already.
    fn spawn(&self, job: Job) {
        let fresh = (self.inner.running.lock())
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job.job_id);
        if !fresh {
            return;
        }
        let this = self.clone();
        actix_web::rt::spawn(async move {
            let job_id = job.job_id;
            let result = this.run(job).await;
            this.inner.metrics.run(result);
            (this.inner.running.lock())
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&job_id);
        });
    }

    async fn run(&self, job: Job) -> RunResult {
        // The record as it stands now: the listing that found the job may predate its end or
        // its last progress.
        let job = match self.inner.jobs.get(&job.job_id).await {
            Ok(Some(job)) if job.state == JobState::Running => job,
            Ok(_) => return RunResult::Skipped,
            Err(error) => {
                tracing::warn!(job_id = %job.job_id, error = %error, "reading an erasure job failed; it is taken up again");
                return RunResult::Retried;
            }
        };
        let lease = self.inner.leases.of(&job);
        let _renewal = lease.keep();
        let run = Run {
            inner: &self.inner,
            lease,
            job,
        };
        match run.erase().await {
            Ok(result) => result,
            Err(error) => {
                tracing::warn!(job_id = %run.job.job_id, error = %error.message, "erasure step failed; the job is taken up again");
                RunResult::Retried
            }
        }
    }
}

/// One run of one job.
struct Run<'a> {
    inner: &'a Inner,
    lease: JobLease,
    job: Job,
}

impl Run<'_> {
    async fn erase(&self) -> Result<RunResult, OpError> {
        if !self.hold_lease().await? {
            return Ok(RunResult::Skipped);
        }
        let node = &self.inner.node;
        let user_id = &self.job.user_id;
        self.close_sessions().await?;
        let mut progress = Progress::of(&self.job);
        let mut outcome = self.job.outcome.clone();
        let scan = self.inner.scan.as_ref();
        let conversations = actors::erasure::conversations_of(node, scan, user_id).await?;
        let after = progress.after.clone();
        let todo = conversations
            .into_iter()
            .filter(|id| after.as_ref().is_none_or(|after| id > after));
        for conversation_id in todo {
            if !self.hold_lease().await? {
                return Ok(RunResult::Skipped);
            }
            let verdict =
                actors::erasure::erase_from_conversation(node, &conversation_id, user_id).await?;
            self.count(&verdict, &mut progress, &mut outcome, &conversation_id);
            self.audit_step(&conversation_id, &verdict).await;
            progress.after = Some(conversation_id);
            let update = JobUpdate::progress(progress.cursor(), outcome.clone());
            self.inner.jobs.update(&self.job.job_id, update).await?;
        }
        self.close_sessions().await?;
        self.inner
            .jobs
            .update(&self.job.job_id, JobUpdate::done(outcome.clone()))
            .await?;
        self.audit_completed(&progress, &outcome).await;
        tracing::info!(job_id = %self.job.job_id, user_id = %user_id, conversations = progress.conversations, messages = progress.messages, held_back = outcome.held_back.len(), "erasure done");
        Ok(RunResult::Done)
    }

    /// Takes or renews the job's lease.
    async fn hold_lease(&self) -> Result<bool, OpError> {
        Ok(self.lease.hold().await?)
    }

    async fn close_sessions(&self) -> Result<(), OpError> {
        let reason = SessionCloseReason::Disconnected;
        actors::moderation::close_sessions_everywhere(&self.inner.node, &self.job.user_id, reason)
            .await?;
        Ok(())
    }

    fn count(
        &self,
        verdict: &Verdict,
        progress: &mut Progress,
        outcome: &mut JobOutcome,
        conversation_id: &ConversationId,
    ) {
        let metrics = &self.inner.metrics;
        match verdict {
            Verdict::Erased(erased) => {
                metrics.erased(erased);
                progress.conversations += 1;
                progress.messages += erased.messages;
                progress.files_deleted += erased.files_deleted;
            }
            Verdict::HeldBack => {
                metrics.held_back.inc();
                if !outcome.held_back.contains(conversation_id) {
                    outcome.held_back.push(conversation_id.clone());
                }
            }
        }
    }

    async fn audit(&self, action: &str, target: String, details: serde_json::Value) {
        if let Some(audit) = &self.inner.node.ports().audit {
            let record = AuditRecord::now("admin", action, target, details);
            actors::audit::append(&**audit, record).await;
        }
    }

    async fn audit_step(&self, conversation_id: &ConversationId, verdict: &Verdict) {
        let (
            held_back,
            Erased {
                messages,
                files_deleted,
            },
        ) = match verdict {
            Verdict::Erased(erased) => (false, *erased),
            Verdict::HeldBack => (true, Erased::default()),
        };
        let details = serde_json::json!({
            "job_id": self.job.job_id,
            "user_id": self.job.user_id,
            "held_back": held_back,
            "messages": messages,
            "files_deleted": files_deleted,
        });
        let target = format!("conversation:{conversation_id}");
        self.audit("erasure.conversation", target, details).await;
    }

    async fn audit_completed(&self, progress: &Progress, outcome: &JobOutcome) {
        let details = serde_json::json!({
            "job_id": self.job.job_id,
            "conversations": progress.conversations,
            "messages": progress.messages,
            "files_deleted": progress.files_deleted,
            "held_back": outcome.held_back,
        });
        let target = format!("user:{}", self.job.user_id);
        self.audit("erasure.completed", target, details).await;
    }
}
