//! The audit log (protocol v1.1, "Compliance"): append-only records of who did what — admin
//! calls (refused ones too), token issues and membership changes. Never message text.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wire::Timestamp;

use crate::PortError;

/// One audit record. `id`s sort in the order records were appended (UUIDv7 text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    pub at: Timestamp,
    /// Who: `admin` (or the operator named by `X-Admin-Actor`), `unknown` (a refused admin
    /// call), `app` (an app backend with the API key), or a user id.
    pub actor: String,
    /// What: `admin.ban`, `token.issue`, `conversation.create`, …
    pub action: String,
    /// On what: `user:<id>`, `conversation:<id>`, `message:<conversation>/<message>`, or the
    /// path of a refused call.
    pub target: String,
    /// Facts of the call (status, reason, counts); never message text.
    pub details: serde_json::Value,
}

impl AuditRecord {
    /// A record of something that happens now, with a fresh id.
    pub fn now(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            at: chrono::Utc::now(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            details,
        }
    }
}

/// Most records one query answers.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// A query: the records matching every given filter, oldest first, after `cursor`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Records at or after this time.
    pub since: Option<Timestamp>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
    /// At most this many (1 to [`MAX_AUDIT_PAGE`]).
    pub limit: usize,
    /// The `next_cursor` of the previous page: records after that id.
    pub cursor: Option<String>,
}

impl AuditQuery {
    /// Whether `record` passes the filters (not the cursor).
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.since.is_none_or(|since| record.at >= since)
            && self
                .actor
                .as_ref()
                .is_none_or(|actor| &record.actor == actor)
            && self
                .target
                .as_ref()
                .is_none_or(|target| &record.target == target)
            && self
                .action
                .as_ref()
                .is_none_or(|action| &record.action == action)
    }
}

/// One page of records; `next_cursor` is set when more may follow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next_cursor: Option<String>,
}

#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends a record, durably. Appending a record whose id exists changes nothing.
    async fn append(&self, record: AuditRecord) -> Result<(), PortError>;

    /// The records matching `query`, oldest first.
    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, PortError>;
}
