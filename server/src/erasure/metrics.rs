//! `parley_erasure_*`: erasure jobs and what they erased.

use actors::erasure::Erased;
use prometheus::{IntCounter, IntCounterVec, Registry};

use crate::attachments::metrics::{counter, counter_vec};

/// What a job run can end in, as the `result` label of `parley_erasure_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    /// The job finished.
    Done,
    /// A step failed; the job stays running and is taken up again.
    Retried,
    /// Another node holds the job's lease (it runs it), or the job ended meanwhile.
    Skipped,
}

impl RunResult {
    const ALL: [RunResult; 3] = [RunResult::Done, RunResult::Retried, RunResult::Skipped];

    fn as_str(self) -> &'static str {
        match self {
            RunResult::Done => "done",
            RunResult::Retried => "retried",
            RunResult::Skipped => "skipped",
        }
    }
}

#[derive(Clone)]
pub struct ErasureMetrics {
    pub requested: IntCounter,
    runs: IntCounterVec,
    pub conversations: IntCounter,
    pub held_back: IntCounter,
    pub messages: IntCounter,
    pub files_deleted: IntCounter,
}

impl ErasureMetrics {
    pub fn new(registry: &Registry) -> Self {
        let runs = counter_vec(
            registry,
            "parley_erasure_runs_total",
            "erasure job runs by result (done, retried: a step failed and the job is taken up again, skipped: another node runs it)",
            "result",
        );
        for result in RunResult::ALL {
            runs.with_label_values(&[result.as_str()]);
        }
        Self {
            requested: counter(
                registry,
                "parley_erasure_requested_total",
                "erasure jobs requested on this node",
            ),
            runs,
            conversations: counter(
                registry,
                "parley_erasure_conversations_total",
                "conversations a user was erased from",
            ),
            held_back: counter(
                registry,
                "parley_erasure_held_back_total",
                "conversations an erasure skipped because they are on legal hold",
            ),
            messages: counter(
                registry,
                "parley_erasure_messages_total",
                "messages deleted by erasures",
            ),
            files_deleted: counter(
                registry,
                "parley_erasure_deleted_files_total",
                "attachment files deleted by erasures",
            ),
        }
    }

    pub fn run(&self, result: RunResult) {
        self.runs.with_label_values(&[result.as_str()]).inc();
    }

    pub fn erased(&self, erased: &Erased) {
        self.conversations.inc();
        self.messages.inc_by(erased.messages);
        self.files_deleted.inc_by(erased.files_deleted);
    }
}
