//! The admin API (protocol v1.1, "Administration"): `/api/v1/admin/...` behind `X-Admin-Key`.
//!
//! - `audit`: the audit log: recording calls, and `GET /api/v1/admin/audit`.
//! - `call`: the action of a request (from its method and path) and how its answer counts.
//! - `users`: disconnect, ban / unban and token revocation of a user.
//! - `messages`: the moderation delete of a message.
//! - `retention`: a conversation's retention and legal hold.
//! - `jobs`: where an export or an erasure job stands.
//! - `erasure`: requesting a user's erasure (the job runs in `crate::erasure`).
//! - `export`: starting an export of a user's data.
//! - `metrics`: `parley_admin_calls_total{action,result}`.
//!
//! Every request passes [`guard`] first: no admin key configured → 404 for every admin path; a
//! missing or wrong key → 401 (counted); then the handler runs and its result is counted. Every
//! call (a refused one with actor `unknown`) is recorded in the audit log.

pub mod audit;
mod call;
mod erasure;
mod export;
mod jobs;
mod messages;
mod metrics;
mod retention;
mod users;

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{self, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use ports::Sanctions;
use prometheus::Registry;
use wire::ErrorCode;

use crate::app::AppState;
use crate::auth::AdminKeyCheck;
use crate::http::error_response;
pub use call::{AdminAction, CallResult};
pub use metrics::AdminMetrics;

/// What the admin handlers, the token endpoint and the WebSocket upgrade share.
pub struct Admin {
    /// Bans and token revocations, shared by the nodes.
    pub sanctions: Arc<dyn Sanctions>,
    pub metrics: AdminMetrics,
}

impl Admin {
    pub fn new(sanctions: Arc<dyn Sanctions>, registry: &Registry) -> Self {
        Self {
            sanctions,
            metrics: AdminMetrics::new(registry),
        }
    }
}

/// Registers the admin scope. Must come before the `/api/v1` scope of the API key.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/api/v1/admin")
            .wrap(middleware::from_fn(guard))
            .configure(users::configure)
            .configure(messages::configure)
            .configure(retention::configure)
            .configure(audit::configure)
            .configure(jobs::configure)
            .configure(erasure::configure)
            .configure(export::configure)
            .default_service(web::to(no_such_route)),
    );
}

async fn no_such_route(request: HttpRequest) -> HttpResponse {
    error_response(
        ErrorCode::NotFound,
        format!("no admin route {} {}", request.method(), request.path()),
    )
}

/// Refuses a request without the right admin key before anything else of it is read (404
/// while the admin API is off), then counts the call.
async fn guard(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<Arc<AppState>>>().cloned() else {
        let response = error_response(ErrorCode::Internal, "no application state");
        return Ok(request.into_response(response));
    };
    let stamp = audit::AuditStamp::now();
    let action = AdminAction::of(request.method(), request.path());
    let presented = request
        .headers()
        .get("x-admin-key")
        .and_then(|value| value.to_str().ok());
    let (actor, response) = match state.auth.check_admin_key(presented) {
        AdminKeyCheck::AdminApiOff => {
            let response = error_response(ErrorCode::NotFound, "not found");
            return Ok(request.into_response(response));
        }
        AdminKeyCheck::Refused => {
            let response = error_response(ErrorCode::Unauthorized, "missing or wrong X-Admin-Key");
            ("unknown", request.into_response(response))
        }
        AdminKeyCheck::Accepted => ("admin", next.call(request).await?.map_into_boxed_body()),
    };
    audit::record_stamped(&state, stamp, audit_entry(actor, action, &response)).await;
    let result = CallResult::of(response.status());
    state
        .admin
        .metrics
        .calls
        .with_label_values(&[action.as_str(), result.as_str()])
        .inc();
    tracing::info!(
        action = action.as_str(),
        result = result.as_str(),
        status = response.status().as_u16(),
        path = response.request().path(),
        "admin call"
    );
    Ok(response)
}

/// The audit record of an admin call: the target from the matched path (the raw path for a
/// call refused before routing), the status and what the handler added.
fn audit_entry(actor: &str, action: AdminAction, response: &ServiceResponse) -> audit::AuditEntry {
    let request = response.request();
    let path = request.match_info();
    let target = match (
        path.get("user_id"),
        path.get("conversation_id"),
        path.get("message_id"),
        path.get("job_id"),
    ) {
        (Some(user_id), _, _, _) => format!("user:{user_id}"),
        (None, Some(conversation_id), Some(message_id), _) => {
            format!("message:{conversation_id}/{message_id}")
        }
        (None, Some(conversation_id), None, _) => format!("conversation:{conversation_id}"),
        (None, None, _, Some(job_id)) => format!("job:{job_id}"),
        _ => request.path().to_owned(),
    };
    let mut details = serde_json::json!({ "status": response.status().as_u16() });
    if let Some(audit::AuditDetails(serde_json::Value::Object(extra))) = response
        .response()
        .extensions()
        .get::<audit::AuditDetails>()
    {
        for (key, value) in extra {
            details[key] = value.clone();
        }
    }
    audit::AuditEntry {
        actor: actor.to_owned(),
        action: format!("admin.{}", action.as_str()),
        target,
        details,
    }
}
