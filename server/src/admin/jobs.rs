//! `GET /api/v1/admin/jobs/{job_id}` (protocol v1.1, "Compliance"): where an export or an
//! erasure stands, read from the shared job records (`Jobs`).
//!
//! Answer: `{"job_id", "kind", "state", "user_id", "created_at", "updated_at"}` plus, when
//! they apply, `"download_url"` (a done export whose file is kept), `"file_expired_at"` (a done
//! export whose file was deleted for its age), `"held_back"` (an erasure that skipped
//! conversations on legal hold) and `"error"` (a failed job). An id that is no job (or no
//! UUID) answers 404 `not_found`.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use actors::OpError;
use ports::{Job, JobId, JobState};

use super::users::{port_failure, refused};
use crate::app::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/jobs/{job_id}", web::get().to(read_job));
}

/// The answer about `job`, with the export's download link when it has one.
fn job_answer(job: &Job, download_url: Option<String>) -> serde_json::Value {
    let mut answer = serde_json::json!({
        "job_id": job.job_id,
        "kind": job.kind,
        "state": job.state,
        "user_id": job.user_id,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    });
    if let Some(download_url) = download_url {
        answer["download_url"] = download_url.into();
    }
    if let Some(expired_at) = job.outcome.file_expired_at {
        answer["file_expired_at"] = serde_json::json!(expired_at);
    }
    if !job.outcome.held_back.is_empty() {
        answer["held_back"] = serde_json::json!(job.outcome.held_back);
    }
    if let Some(error) = &job.outcome.error {
        answer["error"] = error.as_str().into();
    }
    answer
}

async fn read_job(state: web::Data<Arc<AppState>>, path: web::Path<String>) -> HttpResponse {
    let Ok(job_id) = path.into_inner().parse::<JobId>() else {
        return refused(OpError::not_found("no such job"));
    };
    let job = match state.jobs.get(&job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => return refused(OpError::not_found("no such job")),
        Err(error) => return port_failure(error),
    };
    let download_url = match (&state.export, job.state) {
        (Some(exporter), JobState::Done) => match exporter.download_url(&job).await {
            Ok(url) => url,
            Err(error) => return port_failure(error),
        },
        _ => None,
    };
    HttpResponse::Ok().json(job_answer(&job, download_url))
}
