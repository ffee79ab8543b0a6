//! `DELETE /api/v1/admin/conversations/{conversation_id}/messages/{message_id}`: the moderation
//! delete. It runs the same deletion as `message.delete` (through the conversation's actor),
//! without the sender check: members get `message.deleted`, and the log, the stores, the cache
//! and the search index see the deletion.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use wire::{ConversationId, MessageId};

use crate::app::AppState;
use crate::http::error_response;

pub fn configure(config: &mut web::ServiceConfig) {
    config.route(
        "/conversations/{conversation_id}/messages/{message_id}",
        web::delete().to(delete_message),
    );
}

async fn delete_message(
    state: web::Data<Arc<AppState>>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (conversation_id, message_id) = path.into_inner();
    let conversation_id = ConversationId::new(conversation_id);
    let message_id = MessageId::new(message_id);
    match actors::moderation::delete_message(&state.node, &conversation_id, message_id).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({})),
        Err(error) => error_response(error.code, error.message),
    }
}
