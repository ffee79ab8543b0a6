//! `POST /api/v1/attachments` (declare an upload, get its presigned URL) and
//! `GET /api/v1/attachments/{id}` (302 to a short-lived download URL), both with the user's
//! token as `Authorization: Bearer <JWT>`. Registered ahead of the API-key scope of `/api/v1`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::attachments::NewUpload;
use serde::Deserialize;
use wire::{AttachmentId, ErrorCode, UserId};

use super::AttachmentService;
use crate::app::AppState;
use crate::http::error_response;

/// Longest file name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/api/v1/attachments", web::post().to(create))
        .route(
            "/api/v1/attachments/{attachment_id}",
            web::get().to(download),
        )
        .configure(super::blob_routes::configure);
}

#[derive(Debug, Deserialize)]
struct CreateRequest {
    name: String,
    content_type: String,
    size: u64,
    #[serde(default)]
    sha256: Option<String>,
}

/// Why a request is refused before its body is looked at.
enum Refusal {
    /// 404: attachments are off.
    Disabled,
    /// 503: the node starts or stops.
    NotReady,
    /// 401: no valid token.
    Unauthorized(String),
}

impl Refusal {
    fn response(self) -> HttpResponse {
        match self {
            Refusal::Disabled => error_response(
                ErrorCode::NotFound,
                "attachments are not enabled on this server",
            ),
            Refusal::NotReady => {
                error_response(ErrorCode::Unavailable, "the node is starting or stopping")
            }
            Refusal::Unauthorized(message) => error_response(ErrorCode::Unauthorized, message),
        }
    }
}

/// The service and the caller, or why the request is refused.
fn admit(
    state: &AppState,
    request: &HttpRequest,
) -> Result<(Arc<AttachmentService>, UserId), Refusal> {
    let service = state.attachments.clone().ok_or(Refusal::Disabled)?;
    if !state.ready.load(Ordering::Acquire) {
        return Err(Refusal::NotReady);
    }
    let verified = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| "missing `Authorization: Bearer <token>`".to_owned())
        .and_then(|token| {
            state
                .auth
                .tokens()
                .verify(token.trim())
                .map_err(|error| error.to_string())
        });
    match verified {
        Ok(verified) => Ok((service, verified.user_id)),
        Err(message) => {
            service
                .metrics
                .refusals
                .with_label_values(&["unauthorized"])
                .inc();
            Err(Refusal::Unauthorized(message))
        }
    }
}

/// The upload as recorded, or the refusal (`too_large`, or `bad_request` with the reason).
fn check_upload(
    service: &AttachmentService,
    body: CreateRequest,
) -> Result<NewUpload, (ErrorCode, &'static str, String)> {
    let settings = &service.settings;
    if body.size > settings.max_bytes {
        let message = format!(
            "`size` {} is over the {} bytes allowed",
            body.size, settings.max_bytes
        );
        return Err((ErrorCode::TooLarge, "too_large", message));
    }
    if !settings.allows_type(&body.content_type) {
        let message = format!("content type {:?} is not allowed", body.content_type);
        return Err((ErrorCode::BadRequest, "content_type", message));
    }
    let name = body.name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        let message =
            format!("`name` must be 1 to {MAX_NAME_BYTES} bytes without control characters");
        return Err((ErrorCode::BadRequest, "bad_request", message));
    }
    let sha256_ok =
        |digest: &String| digest.len() == 64 && digest.bytes().all(|byte| byte.is_ascii_hexdigit());
    if body
        .sha256
        .as_ref()
        .is_some_and(|digest| !sha256_ok(digest))
    {
        return Err((
            ErrorCode::BadRequest,
            "bad_request",
            "`sha256` must be 64 hex digits".to_owned(),
        ));
    }
    Ok(NewUpload {
        name: name.to_owned(),
        content_type: body.content_type,
        size: body.size,
        sha256: body.sha256.map(|digest| digest.to_ascii_lowercase()),
    })
}

async fn create(
    state: web::Data<Arc<AppState>>,
    request: HttpRequest,
    body: web::Json<CreateRequest>,
) -> HttpResponse {
    let (service, user_id) = match admit(&state, &request) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.response(),
    };
    let upload = match check_upload(&service, body.into_inner()) {
        Ok(upload) => upload,
        Err((code, reason, message)) => {
            service.metrics.refusals.with_label_values(&[reason]).inc();
            // Protocol v1.1: every refused declaration is a 400, `too_large` included.
            let mut response = error_response(code, message);
            *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let created = service
        .attachments
        .create(&user_id, upload, service.settings.upload_url_ttl())
        .await;
    match created {
        Ok((record, url)) => {
            service.metrics.uploads.inc();
            service.metrics.upload_bytes.inc_by(record.size);
            let headers: serde_json::Map<String, serde_json::Value> = url
                .headers
                .into_iter()
                .map(|(name, value)| (name, value.into()))
                .collect();
            HttpResponse::Created().json(serde_json::json!({
                "attachment_id": record.attachment_id,
                "upload_url": url.url,
                "upload_method": url.method.as_str(),
                "upload_headers": headers,
                "expires_at": url.expires_at,
            }))
        }
        Err(error) => {
            tracing::warn!(user_id = %user_id, error = %error, "attachment record failed");
            error_response(ErrorCode::Unavailable, "object storage unavailable")
        }
    }
}

async fn download(
    state: web::Data<Arc<AppState>>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let (service, user_id) = match admit(&state, &request) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.response(),
    };
    let attachment_id = AttachmentId::new(path.into_inner());
    let authorized = service
        .attachments
        .authorize_download(&state.node, &user_id, &attachment_id)
        .await;
    let record = match authorized {
        Ok(record) => record,
        Err(error) => {
            if error.code == ErrorCode::NotFound {
                service
                    .metrics
                    .refusals
                    .with_label_values(&["not_found"])
                    .inc();
            }
            return error_response(error.code, error.message);
        }
    };
    match service
        .attachments
        .download_url(&attachment_id, service.settings.download_url_ttl())
        .await
    {
        Ok(url) => {
            service.metrics.downloads.inc();
            service.metrics.download_bytes.inc_by(record.size);
            HttpResponse::Found()
                .insert_header((header::LOCATION, url.url))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        Err(error) => {
            tracing::warn!(attachment_id = %attachment_id, error = %error, "download url failed");
            error_response(ErrorCode::Unavailable, "object storage unavailable")
        }
    }
}
