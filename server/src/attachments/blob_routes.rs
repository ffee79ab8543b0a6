//! `PUT /blobs/{key}` and `GET /blobs/{key}`: the local blob store's signed URLs, served by the
//! node itself (the standalone stand-in for S3). The body streams to a file; nothing passes
//! through an actor. Refusals: 403 (bad or expired signature), 413 (more bytes than signed
//! for), 404 (no such blob), 400 (the body was cut), 503 (storage failure).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use persistence::blob::{LocalBlobStore, SignedQuery, TransferRefused};
use ports::BlobKey;
use wire::ErrorCode;

use crate::app::AppState;
use crate::http::error_response;

pub(super) fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/blobs/{key:.*}", web::put().to(upload))
        .route("/blobs/{key:.*}", web::get().to(download));
}

fn refused(refusal: TransferRefused) -> HttpResponse {
    let (status, code) = match &refusal {
        TransferRefused::Url(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
        TransferRefused::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
        TransferRefused::Missing => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        TransferRefused::Interrupted(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
        TransferRefused::Failed(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
    };
    let mut response = error_response(code, refusal.to_string());
    *response.status_mut() = status;
    response
}

/// The local store and the checked key (`None`: answer 404).
fn target(state: &AppState, key: String) -> Option<(Arc<LocalBlobStore>, BlobKey)> {
    let local = state.attachments.as_ref()?.local.clone()?;
    Some((local, BlobKey::parse(key).ok()?))
}

fn no_such_blob() -> HttpResponse {
    error_response(ErrorCode::NotFound, "no such blob")
}

async fn upload(
    state: web::Data<Arc<AppState>>,
    path: web::Path<String>,
    query: web::Query<SignedQuery>,
    body: web::Payload,
) -> HttpResponse {
    let Some((local, key)) = target(&state, path.into_inner()) else {
        return no_such_blob();
    };
    match local.receive_upload(&key, &query, body).await {
        Ok(_) => HttpResponse::Ok().finish(),
        Err(refusal) => refused(refusal),
    }
}

async fn download(
    state: web::Data<Arc<AppState>>,
    path: web::Path<String>,
    query: web::Query<SignedQuery>,
) -> HttpResponse {
    let Some((local, key)) = target(&state, path.into_inner()) else {
        return no_such_blob();
    };
    match local.serve_download(&key, &query).await {
        Ok(download) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .no_chunking(download.size)
            .streaming(download.chunks),
        Err(refusal) => refused(refusal),
    }
}
