//! Background jobs of the admin API (protocol v1.1, "Compliance"): exports (right of access)
//! and erasures (right to erasure). A [`Job`] records what is asked, which node runs it, how
//! far it got (an opaque resume `cursor`) and how it ended. The node that runs a job keeps its
//! record up to date; `GET /api/v1/admin/jobs/{job_id}` reads it; at start a node looks up its
//! [`unfinished`](Jobs::unfinished) jobs to resume them.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wire::{ConversationId, NodeId, Timestamp, UserId};

use crate::PortError;

/// A job's id: a UUID (v7, so ids sort by creation), written as its hyphenated text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(uuid::Uuid);

impl JobId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(formatter)
    }
}

/// Text that is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a job id (a UUID): {0:?}")]
pub struct InvalidJobId(pub String);

impl FromStr for JobId {
    type Err = InvalidJobId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(text)
            .map(Self)
            .map_err(|_| InvalidJobId(text.to_owned()))
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Writes one user's data to a JSON Lines file in the blob store.
    Export,
    /// Erases one user's content from every store.
    Erasure,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Export => "export",
            JobKind::Erasure => "erasure",
        }
    }
}

/// Where a job stands. `Done` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// How a job ended (or what it has found so far), by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// Export: the blob key of the written file (the download URL is signed from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_key: Option<String>,
    /// Export: when its file was deleted for its age (`export.retain_files_secs`); `blob_key`
    /// is then `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_expired_at: Option<Timestamp>,
    /// Erasure: the conversations on legal hold whose messages it skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<ConversationId>,
    /// Failed: why (no message text, ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: JobId,
    pub kind: JobKind,
    /// The user the job is about.
    pub user_id: UserId,
    /// The node that runs the job (and resumes it after its restart).
    pub owner: NodeId,
    pub state: JobState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// How far the job got, in the job's own terms; `None` before it made progress.
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub outcome: JobOutcome,
}

impl Job {
    /// A new running job of `kind` about `user_id`, run by `owner`, created now.
    pub fn start(kind: JobKind, user_id: UserId, owner: NodeId) -> Self {
        let now = chrono::Utc::now();
        Self {
            job_id: JobId::new(),
            kind,
            user_id,
            owner,
            state: JobState::Running,
            created_at: now,
            updated_at: now,
            cursor: None,
            outcome: JobOutcome::default(),
        }
    }
}

/// A change of a job: its new state, cursor and outcome (each replaces the stored one).
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    pub state: JobState,
    pub cursor: Option<String>,
    pub outcome: JobOutcome,
}

impl JobUpdate {
    /// Still running, now at `cursor`, with what it found so far.
    pub fn progress(cursor: Option<String>, outcome: JobOutcome) -> Self {
        Self {
            state: JobState::Running,
            cursor,
            outcome,
        }
    }

    /// Done with `outcome`.
    pub fn done(outcome: JobOutcome) -> Self {
        Self {
            state: JobState::Done,
            cursor: None,
            outcome,
        }
    }

    /// Applies the update to `job`, now.
    pub fn apply_to(self, job: &mut Job) {
        job.state = self.state;
        job.cursor = self.cursor;
        job.outcome = self.outcome;
        job.updated_at = chrono::Utc::now();
    }

    /// Failed for `error`.
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            state: JobState::Failed,
            cursor: None,
            outcome: JobOutcome {
                error: Some(error.into()),
                ..JobOutcome::default()
            },
        }
    }
}

/// The job records, shared by the nodes that share a store (the embedded store of a node,
/// MongoDB's `jobs` collection in durable mode).
#[async_trait]
pub trait Jobs: Send + Sync + 'static {
    /// Records a new job, durably. Creating a job whose id exists changes nothing.
    async fn create(&self, job: &Job) -> Result<(), PortError>;

    /// The job, `None` when no job has this id.
    async fn get(&self, job_id: &JobId) -> Result<Option<Job>, PortError>;

    /// Sets the job's state, cursor and outcome, and `updated_at` to now. Answers the job as
    /// it now stands, `None` when no job has this id.
    async fn update(&self, job_id: &JobId, update: JobUpdate) -> Result<Option<Job>, PortError>;

    /// Every job of `kind` still running (any owner), oldest first.
    async fn unfinished(&self, kind: JobKind) -> Result<Vec<Job>, PortError>;
}
