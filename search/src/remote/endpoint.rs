//! The query routes of a search replica, over any [`SearchReader`]:
//!
//! - `POST /v1/search` with a [`QueryBody`] → `200` [`PageBody`]; `400 {"error"}` when the body
//!   or its cursor does not decode; `503 {"error"}` when the index cannot answer.
//! - `GET /v1/stats` → `200` [`StatsBody`].
//!
//! No authorization here: the caller (a node) has already restricted the query to the
//! conversations its user may read; the role listens on the cluster's private network only.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use ports::SearchReader;
use serde_json::json;

use super::{PageBody, QueryBody, StatsBody, SEARCH_PATH, STATS_PATH};

/// The largest query body accepted (a member of thousands of conversations still fits).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Adds the routes to an actix-web app; `reader` answers them.
pub fn configure(config: &mut web::ServiceConfig, reader: Arc<dyn SearchReader>) {
    config
        .app_data(web::Data::from(reader))
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(|error, _request| {
                    let answer =
                        HttpResponse::BadRequest().json(json!({ "error": error.to_string() }));
                    actix_web::error::InternalError::from_response(error, answer).into()
                }),
        )
        .route(SEARCH_PATH, web::post().to(search))
        .route(STATS_PATH, web::get().to(stats));
}

async fn search(reader: web::Data<dyn SearchReader>, body: web::Json<QueryBody>) -> HttpResponse {
    let query = match body.into_inner().into_query() {
        Ok(query) => query,
        Err(error) => {
            return HttpResponse::BadRequest().json(json!({ "error": error.to_string() }))
        }
    };
    match reader.search(query).await {
        Ok(page) => HttpResponse::Ok().json(PageBody::from(page)),
        Err(error) => unavailable(&error),
    }
}

async fn stats(reader: web::Data<dyn SearchReader>) -> HttpResponse {
    match reader.live_messages().await {
        Ok(live_messages) => HttpResponse::Ok().json(StatsBody { live_messages }),
        Err(error) => unavailable(&error),
    }
}

fn unavailable(error: &ports::PortError) -> HttpResponse {
    tracing::warn!(error = %error, "search replica cannot answer");
    HttpResponse::ServiceUnavailable().json(json!({ "error": error.to_string() }))
}
