//! HTTP endpoints: token issue, the WebSocket upgrade, health, metrics, and the REST API for
//! app backends.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{self, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use wire::{ClientMsgId, ConversationId, ErrorBody, ErrorCode, MessageId, Seq, UserId};

use crate::admin::audit::AuditEntry;
use crate::app::AppState;

mod search;

pub fn error_response(code: ErrorCode, message: impl Into<String>) -> HttpResponse {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(serde_json::json!({ "error": ErrorBody::new(code, message) }))
}

fn op_error_response(error: actors::OpError) -> HttpResponse {
    let status =
        StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(serde_json::json!({ "error": error.into_body() }))
}

pub fn configure(config: &mut web::ServiceConfig, max_body_bytes: usize) {
    let json_config = web::JsonConfig::default()
        .limit(max_body_bytes)
        .error_handler(|error, _request| {
            let response = match &error {
                actix_web::error::JsonPayloadError::Overflow { .. }
                | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => {
                    error_response(ErrorCode::TooLarge, error.to_string())
                }
                _ => error_response(ErrorCode::BadRequest, format!("invalid JSON body: {error}")),
            };
            actix_web::error::InternalError::from_response(error, response).into()
        });
    let query_config = web::QueryConfig::default().error_handler(|error, _request| {
        let response = error_response(ErrorCode::BadRequest, format!("invalid query: {error}"));
        actix_web::error::InternalError::from_response(error, response).into()
    });
    let path_config = web::PathConfig::default().error_handler(|error, _request| {
        let response = error_response(ErrorCode::BadRequest, format!("invalid path: {error}"));
        actix_web::error::InternalError::from_response(error, response).into()
    });
    config
        .app_data(json_config)
        .app_data(query_config)
        .app_data(path_config)
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/ws", web::get().to(crate::ws::not_upgraded))
        // Bearer-token endpoints under /api/v1: ahead of the API-key scope.
        .configure(crate::attachments::routes::configure)
        // The admin API (`X-Admin-Key`): ahead of the API-key scope too.
        .configure(crate::admin::configure)
        .service(
            // Every app-backend endpoint checks `X-Api-Key` before its path, query or body is
            // read: an anonymous caller learns nothing but 401.
            web::scope("/api/v1")
                .wrap(middleware::from_fn(require_api_key))
                .route("/auth/token", web::post().to(issue_token))
                .route(
                    "/conversations/{conversation_id}/messages",
                    web::get().to(list_messages),
                )
                .route(
                    "/conversations/{conversation_id}/messages",
                    web::post().to(post_message),
                )
                .route("/search", web::get().to(search::search_messages)),
        );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<Arc<AppState>>) -> HttpResponse {
    let (ready, reason) = state.readiness().await;
    let mut body = if ready && reason.is_empty() {
        serde_json::json!({ "status": "ready" })
    } else if ready {
        serde_json::json!({ "status": "ready", "degraded": reason })
    } else {
        serde_json::json!({ "status": "not_ready", "reason": reason })
    };
    if let Some(search) = &state.search {
        body["search"] = search.details();
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<Arc<AppState>>) -> HttpResponse {
    let (ready, _reason) = state.readiness().await;
    state.metrics.node_ready.set(i64::from(ready));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

fn api_key(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
}

/// Answers 401 to a request without the right API key, before anything else of it is read;
/// passes the others on.
async fn require_api_key(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let authorized = request
        .app_data::<web::Data<Arc<AppState>>>()
        .is_some_and(|state| state.auth.api_key_matches(api_key(request.request())));
    if !authorized {
        let response = error_response(ErrorCode::Unauthorized, "missing or wrong X-Api-Key");
        return Ok(request.into_response(response));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

/// The 503 answer while the node is starting or stopping.
fn not_ready_rejection(state: &AppState) -> Option<HttpResponse> {
    (!state.ready.load(Ordering::Acquire))
        .then(|| error_response(ErrorCode::Unavailable, "the node is starting or stopping"))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenRequest {
    user_id: UserId,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

pub(crate) async fn issue_token(
    state: web::Data<Arc<AppState>>,
    body: web::Json<TokenRequest>,
) -> HttpResponse {
    let body = body.into_inner();
    if let Err(error) =
        crate::auth::check_token_request(&body.user_id, body.display_name.as_deref())
    {
        return op_error_response(error);
    }
    let auth_settings = &state.settings.auth;
    let ttl_secs = body.ttl_secs.unwrap_or(auth_settings.token_ttl_secs);
    if ttl_secs == 0 || ttl_secs > auth_settings.max_token_ttl_secs {
        return error_response(
            ErrorCode::BadRequest,
            format!(
                "`ttl_secs` must be between 1 and {}",
                auth_settings.max_token_ttl_secs
            ),
        );
    }
    let standing = match state.admin.sanctions.standing(&body.user_id).await {
        Ok(standing) => standing,
        Err(error) => return op_error_response(actors::OpError::from(error)),
    };
    let entry = |status: u16| AuditEntry {
        actor: "app".to_owned(),
        action: "token.issue".to_owned(),
        target: format!("user:{}", body.user_id),
        details: serde_json::json!({ "status": status, "ttl_secs": ttl_secs }),
    };
    if let Some(ban) = standing.ban_at(chrono::Utc::now()) {
        crate::admin::audit::record(&state, entry(403)).await;
        return error_response(
            ErrorCode::Forbidden,
            format!("user is banned: {}", ban.reason),
        );
    }
    let not_before = standing.tokens_valid_from;
    let issued = state.auth.tokens().issue(
        &body.user_id,
        body.display_name.clone(),
        ttl_secs,
        not_before,
    );
    if issued.is_ok() {
        crate::admin::audit::record(&state, entry(200)).await;
    }
    match issued {
        Ok((token, expires_at)) => HttpResponse::Ok().json(serde_json::json!({
            "token": token,
            "expires_at": expires_at,
            "socket_urls": state.socket_urls,
        })),
        Err(error) => error_response(ErrorCode::Internal, error.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    before_seq: Option<Seq>,
    #[serde(default)]
    after_seq: Option<Seq>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn list_messages(
    state: web::Data<Arc<AppState>>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> HttpResponse {
    if let Some(response) = not_ready_rejection(&state) {
        return response;
    }
    let conversation_id = ConversationId::new(path.into_inner());
    let query = query.into_inner();
    match actors::dispatch::backend_history(
        &state.node,
        &conversation_id,
        query.before_seq,
        query.after_seq,
        query.limit,
    )
    .await
    {
        Ok(history) => HttpResponse::Ok().json(history),
        Err(error) => op_error_response(error),
    }
}

#[derive(Debug, Deserialize)]
struct PostMessage {
    sender_id: UserId,
    client_msg_id: ClientMsgId,
    text: String,
    #[serde(default)]
    reply_to: Option<MessageId>,
}

async fn post_message(
    state: web::Data<Arc<AppState>>,
    path: web::Path<String>,
    body: web::Json<PostMessage>,
) -> HttpResponse {
    if let Some(response) = not_ready_rejection(&state) {
        return response;
    }
    let conversation_id = ConversationId::new(path.into_inner());
    let body = body.into_inner();
    match actors::dispatch::backend_send(
        &state.node,
        &conversation_id,
        body.sender_id,
        body.client_msg_id,
        body.text,
        body.reply_to,
    )
    .await
    {
        Ok(ack) => HttpResponse::Ok().json(ack),
        Err(error) => op_error_response(error),
    }
}
