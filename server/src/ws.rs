//! `GET /ws`: authenticate before the upgrade, then hand the socket to a session actor.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use actors::session::{Session, SessionParams};
use serde::Deserialize;
use wire::ErrorCode;

use crate::app::AppState;
use crate::auth::AuthError;
use crate::http::error_response;

#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    v: Option<String>,
}

pub async fn upgrade(
    state: web::Data<Arc<AppState>>,
    request: HttpRequest,
    body: web::Payload,
    query: web::Query<ConnectQuery>,
) -> actix_web::Result<HttpResponse> {
    let query = query.into_inner();
    if let Some(version) = &query.v {
        if version != "1" {
            return Ok(error_response(
                ErrorCode::BadRequest,
                format!("unsupported protocol version {version:?}: this server speaks v=1"),
            ));
        }
    }
    let header_token = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(token) = query.token.or(header_token) else {
        return Ok(error_response(
            ErrorCode::Unauthorized,
            "missing token: pass ?token= or Authorization: Bearer",
        ));
    };
    let verified = match state.auth.verify(&token) {
        Ok(verified) => verified,
        Err(AuthError::Expired) => {
            return Ok(error_response(ErrorCode::Unauthorized, "token expired"))
        }
        Err(AuthError::Invalid(reason)) => {
            return Ok(error_response(
                ErrorCode::Unauthorized,
                format!("invalid token: {reason}"),
            ))
        }
    };
    if !state.ready.load(Ordering::Acquire) {
        return Ok(error_response(
            ErrorCode::Unavailable,
            "the node is starting or stopping",
        ));
    }
    let (response, session, stream) = actix_ws::handle(&request, body)?;
    Session::start(
        state.node.clone(),
        SessionParams {
            user_id: verified.user_id,
            token_expires_at: verified.expires_at,
        },
        session,
        stream,
    );
    Ok(response)
}
