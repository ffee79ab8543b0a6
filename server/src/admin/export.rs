//! `POST /api/v1/admin/users/{user_id}/export` (protocol v1.1 §18.2): starts an export job of
//! the user's data on this node and answers `202 {"job_id"}` at once; the job is polled with
//! `GET /api/v1/admin/jobs/{job_id}`.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use actors::OpError;

use super::audit::AuditDetails;
use super::users::{port_failure, refused, user_of};
use crate::app::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/users/{user_id}/export", web::post().to(export));
}

async fn export(state: web::Data<Arc<AppState>>, path: web::Path<String>) -> HttpResponse {
    let user_id = match user_of(path) {
        Ok(user_id) => user_id,
        Err(error) => return refused(error),
    };
    let Some(exporter) = &state.export else {
        return refused(OpError::not_found(
            "this node has no blob store for exports (attachments.store is off)",
        ));
    };
    match exporter.start(user_id).await {
        Ok(job_id) => {
            let body = serde_json::json!({ "job_id": job_id });
            let mut response = HttpResponse::Accepted().json(&body);
            response.extensions_mut().insert(AuditDetails(body));
            response
        }
        Err(error) => port_failure(error),
    }
}
