//! The audit log on the node: recording admin calls and token issues, and
//! `GET /api/v1/admin/audit?since=&actor=&target=&action=&limit=&cursor=`.
//!
//! Records go to `Ports::audit`: the embedded store (standalone, and each node of a Redis-only
//! cluster, which answers its own records), or MongoDB's `audit` collection (durable cluster).

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use ports::{AuditQuery, AuditRecord, MAX_AUDIT_PAGE};
use serde::Deserialize;
use wire::{ErrorCode, Timestamp};

use crate::app::AppState;
use crate::http::error_response;

/// Records a page holds when the query gives no `limit`.
pub const DEFAULT_AUDIT_PAGE: usize = 100;

/// Facts a handler adds to its call's audit record (put in the response's extensions).
#[derive(Debug, Clone)]
pub struct AuditDetails(pub serde_json::Value);

/// What one audit record says, before it gets its id and time.
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

/// When what a record tells happened: its id (sortable, UUIDv7) and time. An admin call takes
/// its stamp when it arrives, before its handler runs, so that it lists before what it set off
/// (an export's or an erasure's own records), however long the handler takes.
pub struct AuditStamp {
    id: String,
    at: Timestamp,
}

impl AuditStamp {
    pub fn now() -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            at: chrono::Utc::now(),
        }
    }
}

/// Appends a record of something that happens now to the audit log, when the node keeps one.
pub async fn record(state: &AppState, entry: AuditEntry) {
    record_stamped(state, AuditStamp::now(), entry).await;
}

/// Appends a record stamped `stamp` to the audit log, when the node keeps one. A failure is
/// logged, not answered: the call itself happened.
pub async fn record_stamped(state: &AppState, stamp: AuditStamp, entry: AuditEntry) {
    let Some(audit) = &state.node.ports().audit else {
        return;
    };
    let record = AuditRecord {
        id: stamp.id,
        at: stamp.at,
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        details: entry.details,
    };
    actors::audit::append(&**audit, record).await;
}

pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/audit", web::get().to(read_audit));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    #[serde(default)]
    since: Option<Timestamp>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

async fn read_audit(
    state: web::Data<Arc<AppState>>,
    params: web::Query<AuditParams>,
) -> HttpResponse {
    let Some(audit) = &state.node.ports().audit else {
        return error_response(ErrorCode::NotFound, "this node keeps no audit log");
    };
    let params = params.into_inner();
    let limit = params.limit.unwrap_or(DEFAULT_AUDIT_PAGE);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return error_response(
            ErrorCode::BadRequest,
            format!("`limit` must be between 1 and {MAX_AUDIT_PAGE}"),
        );
    }
    let query = AuditQuery {
        since: params.since,
        actor: params.actor,
        target: params.target,
        action: params.action,
        limit,
        cursor: params.cursor,
    };
    match audit.query(&query).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(error) => {
            let error = actors::OpError::from(error);
            error_response(error.code, error.message)
        }
    }
}
