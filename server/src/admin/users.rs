//! `POST /api/v1/admin/users/{user_id}/disconnect`, `PUT` / `DELETE .../ban` and
//! `POST .../revoke_tokens`. Each changes the shared sanctions first (ban, revocation), then
//! asks every node over the bus to close the user's sessions, and answers how many sessions
//! the user had on all nodes (`sessions_closed`).

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use actors::OpError;
use chrono::Utc;
use ports::{Ban, PortError, SessionCloseReason};
use serde::Deserialize;
use wire::{Timestamp, UserId};

use super::audit::AuditDetails;
use crate::app::AppState;
use crate::http::error_response;

/// Longest ban reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/users/{user_id}/disconnect", web::post().to(disconnect))
        .route("/users/{user_id}/ban", web::put().to(ban))
        .route("/users/{user_id}/ban", web::delete().to(unban))
        .route(
            "/users/{user_id}/revoke_tokens",
            web::post().to(revoke_tokens),
        );
}

/// The user id of the path, checked like any user id.
pub(super) fn user_of(path: web::Path<String>) -> Result<UserId, OpError> {
    let user_id = UserId::new(path.into_inner());
    actors::dispatch::check_user_id(&user_id)?;
    Ok(user_id)
}

/// The answer to a refused call.
pub(super) fn refused(error: OpError) -> HttpResponse {
    error_response(error.code, error.message)
}

/// `200` with `body`, which the call's audit record keeps too.
pub(super) fn answered(body: serde_json::Value) -> HttpResponse {
    let mut response = HttpResponse::Ok().json(&body);
    response.extensions_mut().insert(AuditDetails(body));
    response
}

/// A port failure's answer: its code and a fixed text (the details go to the log).
pub(super) fn port_failure(error: PortError) -> HttpResponse {
    refused(OpError::from(error))
}

/// Counts the user's sessions on every node, then asks every node to close them. Answers the
/// count.
async fn close_sessions(
    state: &AppState,
    user_id: &UserId,
    reason: SessionCloseReason,
) -> Result<usize, PortError> {
    let node = &state.node;
    let sessions = node.ports().presence.session_count(user_id).await?;
    actors::moderation::close_sessions_everywhere(node, user_id, reason).await?;
    Ok(sessions)
}

async fn disconnect(state: web::Data<Arc<AppState>>, path: web::Path<String>) -> HttpResponse {
    let user_id = match user_of(path) {
        Ok(user_id) => user_id,
        Err(error) => return refused(error),
    };
    match close_sessions(&state, &user_id, SessionCloseReason::Disconnected).await {
        Ok(closed) => answered(serde_json::json!({ "sessions_closed": closed })),
        Err(error) => port_failure(error),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanRequest {
    reason: String,
    #[serde(default)]
    until: Option<Timestamp>,
}

fn check_ban(request: &BanRequest, now: Timestamp) -> Result<(), OpError> {
    let bad = |message: String| Err(OpError::bad_request(message));
    if request.reason.trim().is_empty() {
        return bad("`reason` must not be empty".to_owned());
    }
    if request.reason.len() > MAX_REASON_BYTES {
        return bad(format!("`reason` is longer than {MAX_REASON_BYTES} bytes"));
    }
    if request.reason.chars().any(char::is_control) {
        return bad("`reason` must not contain control characters".to_owned());
    }
    if request.until.is_some_and(|until| until <= now) {
        return bad("`until` must be in the future".to_owned());
    }
    Ok(())
}

async fn ban(
    state: web::Data<Arc<AppState>>,
    path: web::Path<String>,
    body: web::Json<BanRequest>,
) -> HttpResponse {
    let user_id = match user_of(path) {
        Ok(user_id) => user_id,
        Err(error) => return refused(error),
    };
    let request = body.into_inner();
    let now = Utc::now();
    if let Err(error) = check_ban(&request, now) {
        return refused(error);
    }
    let ban = Ban {
        reason: request.reason,
        until: request.until,
        banned_at: now,
    };
    if let Err(error) = state.admin.sanctions.ban(&user_id, &ban).await {
        return port_failure(error);
    }
    match close_sessions(&state, &user_id, SessionCloseReason::Banned).await {
        Ok(closed) => answered(serde_json::json!({
            "user_id": user_id,
            "reason": ban.reason,
            "until": ban.until,
            "banned_at": ban.banned_at,
            "sessions_closed": closed,
        })),
        Err(error) => port_failure(error),
    }
}

async fn unban(state: web::Data<Arc<AppState>>, path: web::Path<String>) -> HttpResponse {
    let user_id = match user_of(path) {
        Ok(user_id) => user_id,
        Err(error) => return refused(error),
    };
    match state.admin.sanctions.lift_ban(&user_id).await {
        Ok(was_banned) => answered(serde_json::json!({
            "user_id": user_id,
            "was_banned": was_banned,
        })),
        Err(error) => port_failure(error),
    }
}

async fn revoke_tokens(state: web::Data<Arc<AppState>>, path: web::Path<String>) -> HttpResponse {
    let user_id = match user_of(path) {
        Ok(user_id) => user_id,
        Err(error) => return refused(error),
    };
    // Tokens carry `iat` in whole seconds: every token of this second or before is refused,
    // and tokens issued from now on carry at least the next second (see `tokens::Tokens::issue`).
    let valid_from = Utc::now().timestamp() + 1;
    if let Err(error) = state
        .admin
        .sanctions
        .revoke_tokens(&user_id, valid_from)
        .await
    {
        return port_failure(error);
    }
    match close_sessions(&state, &user_id, SessionCloseReason::TokensRevoked).await {
        Ok(closed) => answered(serde_json::json!({
            "user_id": user_id,
            "tokens_valid_from": chrono::DateTime::from_timestamp(valid_from, 0),
            "sessions_closed": closed,
        })),
        Err(error) => port_failure(error),
    }
}
