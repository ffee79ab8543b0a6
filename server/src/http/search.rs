//! `GET /api/v1/search?user_id=&q=`: `search.messages` for app backends, on behalf of a user
//! (X-Api-Key, checked by the scope). Same arguments, checks and result shape as the op.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use actors::ops::search_messages::{search, ValidSearch};
use serde::Deserialize;
use wire::search::SearchArgs;
use wire::{ConversationId, UserId};

use super::{not_ready_rejection, op_error_response};
use crate::app::AppState;

#[derive(Debug, Deserialize)]
pub(super) struct SearchParams {
    user_id: UserId,
    q: String,
    #[serde(default)]
    conversation_id: Option<ConversationId>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

pub(super) async fn search_messages(
    state: web::Data<Arc<AppState>>,
    params: web::Query<SearchParams>,
) -> HttpResponse {
    if let Some(response) = not_ready_rejection(&state) {
        return response;
    }
    let params = params.into_inner();
    if let Err(error) = actors::dispatch::check_user_id(&params.user_id) {
        return op_error_response(error);
    }
    let checked = ValidSearch::check(SearchArgs {
        query: params.q,
        conversation_id: params.conversation_id,
        limit: params.limit,
        cursor: params.cursor,
    });
    let result = match checked {
        Ok(checked) => search(&state.node, &params.user_id, checked).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(result) => HttpResponse::Ok().json(result),
        Err(error) => op_error_response(error),
    }
}
