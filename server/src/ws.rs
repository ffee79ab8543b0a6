//! `GET /ws`: the WebSocket endpoint.
//!
//! An upgrade request never reaches actix-web's router: actix-http hands it, with the raw TCP
//! connection, to [`serve_upgrade`], which checks the protocol version, the token and the
//! node's readiness, answers the handshake itself and gives the connection to a session actor
//! that speaks WebSocket through tokio-tungstenite. An established WebSocket so keeps none of
//! actix-http's per-connection HTTP buffers (two of 8 KiB: docs/benchmarks.md, "Where the idle
//! memory goes"). A `GET /ws` that is no upgrade goes through the router to [`not_upgraded`]:
//! the same checks, then 400.
use actix_http::HttpMessage as _;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_codec::Framed;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::session::{Session, SessionParams};
use actors::{ConnectionPermit, ConnectionRefused};
use ports::TokenStanding;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use wire::{ErrorBody, ErrorCode};

use crate::app::AppState;
use crate::auth::{AuthError, Verified};
use crate::http::error_response;

#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    v: Option<String>,
}

/// Why a connection attempt is refused: an error code, its message, the HTTP status when it
/// is not the code's own, and the `reason` label it is counted under.
#[derive(Debug)]
struct Refusal {
    code: ErrorCode,
    message: String,
    status: Option<u16>,
    retry_after_ms: Option<u64>,
    reason: &'static str,
}

impl Refusal {
    /// A refusal counted under its error code.
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: None,
            retry_after_ms: None,
            reason: code.as_str(),
        }
    }

    fn counted_as(self, reason: &'static str) -> Self {
        Self { reason, ..self }
    }

    /// Counts the refusal in `parley_ws_upgrades_refused_total`.
    fn count(&self, state: &AppState) {
        state
            .metrics
            .upgrades_refused
            .with_label_values(&[self.reason])
            .inc();
    }
}

/// How long a client refused by a connection cap should wait before it tries again.
const CONNECTION_CAP_RETRY_AFTER_MS: u64 = 1000;

/// A connection cap refuses the upgrade: the user's with `rate_limited` (429), the node's with
/// `unavailable` (503), both with a `retry_after_ms`.
impl From<ConnectionRefused> for Refusal {
    fn from(refused: ConnectionRefused) -> Self {
        let (code, reason) = match refused {
            ConnectionRefused::UserAtCap { .. } => (ErrorCode::RateLimited, "user_connection_cap"),
            ConnectionRefused::NodeAtCap { .. } => (ErrorCode::Unavailable, "node_connection_cap"),
        };
        Self {
            retry_after_ms: Some(CONNECTION_CAP_RETRY_AFTER_MS),
            ..Self::new(code, refused.to_string()).counted_as(reason)
        }
    }
}

/// The checks every `/ws` request passes, in this order: protocol version, token, readiness.
fn admit(
    state: &AppState,
    query: Option<&str>,
    authorization: Option<&str>,
) -> Result<Verified, Refusal> {
    let query = web::Query::<ConnectQuery>::from_query(query.unwrap_or_default())
        .map_err(|error| Refusal::new(ErrorCode::BadRequest, format!("bad query: {error}")))?
        .into_inner();
    if let Some(version) = &query.v {
        if version != "1" {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!("unsupported protocol version {version:?}: this server speaks v=1"),
            ));
        }
    }
    let header_token = authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(token) = query.token.or(header_token) else {
        return Err(Refusal::new(
            ErrorCode::Unauthorized,
            "missing token: pass ?token= or Authorization: Bearer",
        ));
    };
    let verified = match state.auth.tokens().verify(&token) {
        Ok(verified) => verified,
        Err(AuthError::Expired) => {
            return Err(Refusal::new(ErrorCode::Unauthorized, "token expired"))
        }
        Err(AuthError::Invalid(reason)) => {
            return Err(Refusal::new(
                ErrorCode::Unauthorized,
                format!("invalid token: {reason}"),
            ))
        }
    };
    if !state.ready.load(Ordering::Acquire) {
        return Err(
            Refusal::new(ErrorCode::Unavailable, "the node is starting or stopping")
                .counted_as("not_ready"),
        );
    }
    Ok(verified)
}

/// The sanctions check (admin API): a banned user is refused with 403 `forbidden`, a token
/// issued before the user's tokens were revoked with 401. Counted as `banned` and
/// `token_revoked`; when the sanctions cannot be read, 503 (`sanctions_unavailable`).
async fn check_standing(state: &AppState, verified: &Verified) -> Result<(), Refusal> {
    let standing = state
        .admin
        .sanctions
        .standing(&verified.user_id)
        .await
        .map_err(|error| {
            let error = actors::OpError::from(error);
            Refusal::new(error.code, error.message).counted_as("sanctions_unavailable")
        })?;
    if standing.ban_at(chrono::Utc::now()).is_some() {
        return Err(Refusal::new(ErrorCode::Forbidden, "user is banned").counted_as("banned"));
    }
    if standing.token(verified.issued_at) == TokenStanding::Revoked {
        return Err(
            Refusal::new(ErrorCode::Unauthorized, "token revoked: get a new one")
                .counted_as("token_revoked"),
        );
    }
    Ok(())
}

/// `GET /ws` without an upgrade: the same answers as an upgrade for a bad version, token or
/// readiness, else 400.
pub async fn not_upgraded(state: web::Data<Arc<AppState>>, request: HttpRequest) -> HttpResponse {
    let authorization = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let admitted = match admit(&state, Some(request.query_string()), authorization) {
        Ok(verified) => check_standing(&state, &verified).await,
        Err(refusal) => Err(refusal),
    };
    match admitted {
        Ok(()) => error_response(
            ErrorCode::BadRequest,
            "expected a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
        ),
        Err(refusal) => {
            refusal.count(&state);
            error_response(refusal.code, refusal.message)
        }
    }
}

/// Serves one upgrade request handed over by actix-http with its connection.
pub async fn serve_upgrade(
    state: Arc<AppState>,
    request: actix_http::Request,
    framed: Framed<TcpStream, actix_http::h1::Codec>,
) {
    if let Err(error) = answer_upgrade(state, request, framed).await {
        // The client went away during the handshake.
        tracing::debug!(error = %error, "websocket handshake failed");
    }
}

async fn answer_upgrade(
    state: Arc<AppState>,
    request: actix_http::Request,
    framed: Framed<TcpStream, actix_http::h1::Codec>,
) -> Result<(), std::io::Error> {
    let parts = framed.into_parts();
    let mut io = parts.io;
    // What the client sent after its request head (nothing, for a client that waits for the
    // handshake); the HTTP buffers themselves are dropped here.
    let leftover = parts.read_buf.to_vec();
    drop(parts.read_buf);
    drop(parts.write_buf);
    let admitted = match accept_key(&state, &request) {
        Ok(accepted) => check_standing(&state, &accepted.0).await.map(|()| accepted),
        Err(refusal) => Err(refusal),
    };
    match admitted {
        Ok((verified, accept, permit)) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
            );
            io.write_all(response.as_bytes()).await?;
            Session::serve(
                state.node.clone(),
                SessionParams {
                    user_id: verified.user_id,
                    token_expires_at: verified.expires_at,
                    permit,
                },
                io,
                leftover,
            );
            Ok(())
        }
        Err(refusal) => {
            refusal.count(&state);
            io.write_all(refusal_response(&refusal).as_bytes()).await?;
            io.shutdown().await
        }
    }
}

/// Checks an upgrade request; returns the caller, the `Sec-WebSocket-Accept` value and the
/// connection's permit (taken last, when everything else passed).
fn accept_key(
    state: &AppState,
    request: &actix_http::Request,
) -> Result<(Verified, String, ConnectionPermit), Refusal> {
    if request.path() != "/ws" {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            format!("no WebSocket endpoint at {}", request.path()),
        ));
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let verified = admit(state, request.uri().query(), header("authorization"))?;
    if request.method() != actix_http::Method::GET {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "a WebSocket upgrade is a GET",
        ));
    }
    if !header("upgrade").is_some_and(|value| value.eq_ignore_ascii_case("websocket")) {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "only `Upgrade: websocket` is supported",
        ));
    }
    if header("sec-websocket-version") != Some("13") {
        return Err(Refusal {
            status: Some(426),
            ..Refusal::new(
                ErrorCode::BadRequest,
                "unsupported WebSocket version: use 13",
            )
        });
    }
    let Some(key) = header("sec-websocket-key").filter(|key| !key.is_empty()) else {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "missing Sec-WebSocket-Key",
        ));
    };
    let accept = derive_accept_key(key.as_bytes());
    let permit = state.node.admit_connection(&verified.user_id)?;
    Ok((verified, accept, permit))
}

/// The whole HTTP/1.1 response refusing an upgrade: the JSON error body of every endpoint.
fn refusal_response(refusal: &Refusal) -> String {
    let status = refusal.status.unwrap_or(refusal.code.http_status());
    let reason = actix_http::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Error");
    let error = ErrorBody {
        retry_after_ms: refusal.retry_after_ms,
        ..ErrorBody::new(refusal.code, refusal.message.clone())
    };
    let body = serde_json::json!({ "error": error }).to_string();
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if status == 426 {
        response.push_str("sec-websocket-version: 13\r\n");
    }
    let _ = write!(response, "\r\n{body}");
    response
}
