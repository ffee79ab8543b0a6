//! `POST /api/v1/admin/users/{user_id}/erase` (protocol v1.1, "Compliance"): records an
//! erasure job and answers `202 {"job_id"}` at once; the job runs in the background
//! (`crate::erasure`) and `GET /api/v1/admin/jobs/{job_id}` tells where it stands.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use wire::UserId;

use super::audit::AuditDetails;
use super::users::refused;
use crate::app::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/users/{user_id}/erase", web::post().to(erase));
}

async fn erase(state: web::Data<Arc<AppState>>, path: web::Path<String>) -> HttpResponse {
    let user_id = UserId::new(path.into_inner());
    if let Err(error) = actors::dispatch::check_user_id(&user_id) {
        return refused(error);
    }
    match state.erasures.request(user_id).await {
        Ok(job) => {
            let body = serde_json::json!({ "job_id": job.job_id });
            let mut response = HttpResponse::Accepted().json(&body);
            response.extensions_mut().insert(AuditDetails(body));
            response
        }
        Err(error) => refused(error),
    }
}
