//! The development web chat (`clients/web-chat`): its built files under `/chat/`, served only
//! when `web_chat.dir` is set, and `POST /api/v1/dev/token`, which issues a token for a user
//! name without the API key. That route exists only when `web_chat.dir` is set **and** the node
//! runs with a public development secret (which the configuration accepts on a loopback
//! address only, see docs/configuration.md "Secrets"): the app's API key never reaches a
//! browser, and a node with real secrets never hands out tokens to anyone who asks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use wire::ErrorCode;

use crate::app::AppState;
use crate::config::Settings;
use crate::http::error_response;

/// Whether the dev token route is mounted, as the start-up log reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevTokens {
    /// `web_chat.dir` is set and a development secret is in use.
    Offered,
    /// Real secrets: the web chat is served, signing in needs tokens from the app backend.
    Refused,
}

/// The directory the web chat is served from, when it is.
#[derive(Debug, Clone)]
struct WebChatDir(PathBuf);

/// Mounts the web chat's routes when `web_chat.dir` is set; call before `crate::http::configure`
/// so `/api/v1/dev/token` is matched ahead of the API-key scope.
pub fn configure(config: &mut web::ServiceConfig, settings: &Settings) {
    let Some(dir) = settings.web_chat.served_dir() else {
        return;
    };
    config
        .app_data(web::Data::new(WebChatDir(dir.to_owned())))
        .route("/chat", web::get().to(to_index))
        .route("/chat/", web::get().to(index))
        .route("/chat/{file}", web::get().to(file));
    if dev_tokens(settings) == DevTokens::Offered {
        config.route("/api/v1/dev/token", web::post().to(dev_token));
    }
}

pub fn dev_tokens(settings: &Settings) -> DevTokens {
    if settings.dev_secret_in_use().is_some() {
        DevTokens::Offered
    } else {
        DevTokens::Refused
    }
}

/// Logs whether the web chat is served, and whether it can sign users in by name.
pub fn report(settings: &Settings) {
    if let Some(dir) = settings.web_chat.served_dir() {
        tracing::info!(
            dir = %dir.display(),
            dev_tokens = ?dev_tokens(settings),
            "web chat served at /chat/"
        );
    }
}

async fn to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/chat/"))
        .finish()
}

async fn index(dir: web::Data<WebChatDir>) -> HttpResponse {
    serve(&dir.0, "index.html").await
}

async fn file(dir: web::Data<WebChatDir>, name: web::Path<String>) -> HttpResponse {
    serve(&dir.0, &name).await
}

/// One file of the directory, by a plain name (no path separators, no leading dot).
async fn serve(dir: &Path, name: &str) -> HttpResponse {
    let plain = !name.starts_with('.')
        && name
            .chars()
            .all(|char| char.is_ascii_alphanumeric() || matches!(char, '.' | '-' | '_'));
    if !plain {
        return error_response(ErrorCode::NotFound, "no such file");
    }
    match tokio::fs::read(dir.join(name)).await {
        Ok(bytes) => HttpResponse::Ok()
            .content_type(content_type(name))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(bytes),
        Err(_) => error_response(ErrorCode::NotFound, "no such file"),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// `POST /api/v1/dev/token {"user_id"}`: the token endpoint's answer, without the API key.
async fn dev_token(
    state: web::Data<Arc<AppState>>,
    body: web::Json<crate::http::TokenRequest>,
) -> HttpResponse {
    crate::http::issue_token(state, body).await
}
