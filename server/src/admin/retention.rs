//! `PUT /api/v1/admin/conversations/{conversation_id}/retention` `{"days": N|null}` and
//! `PUT .../legal_hold` `{"on": bool}` (protocol v1.1, "Compliance"). Both change the shared
//! `RetentionPolicies` (every node and the retention sweep read them) and answer the
//! conversation's retention as it now stands, which the call's audit record keeps too.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use actors::OpError;
use ports::{ConversationRetention, LegalHold, RetentionPeriod, RetentionPolicies};
use serde::Deserialize;
use wire::ConversationId;

use super::users::{answered, port_failure, refused};
use crate::app::AppState;
use crate::config::MAX_RETENTION_DAYS;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route(
            "/conversations/{conversation_id}/retention",
            web::put().to(set_retention),
        )
        .route(
            "/conversations/{conversation_id}/legal_hold",
            web::put().to(set_legal_hold),
        );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionRequest {
    /// Required, and may be `null` (back to the default).
    #[serde(deserialize_with = "Option::deserialize")]
    days: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegalHoldRequest {
    on: bool,
}

/// The policies and the conversation of the path, which must exist.
async fn target(
    state: &AppState,
    path: web::Path<String>,
) -> Result<(Arc<dyn RetentionPolicies>, ConversationId), OpError> {
    let conversation_id = ConversationId::new(path.into_inner());
    let Some(policies) = state.node.ports().retention.clone() else {
        return Err(OpError::not_found("this node keeps no retention policies"));
    };
    if state
        .node
        .ports()
        .directory
        .get(&conversation_id)
        .await?
        .is_none()
    {
        return Err(OpError::not_found("no such conversation"));
    }
    Ok((policies, conversation_id))
}

fn check_days(days: Option<u32>) -> Result<RetentionPeriod, OpError> {
    match days {
        None => Ok(RetentionPeriod::Default),
        Some(days) if days > MAX_RETENTION_DAYS => Err(OpError::bad_request(format!(
            "`days` must be between 0 (forever) and {MAX_RETENTION_DAYS}, or null (the default)"
        ))),
        Some(days) => Ok(RetentionPeriod::of_days(days)),
    }
}

/// The answer (and audit details) of both calls: the conversation's retention now.
fn retention_answer(
    state: &AppState,
    conversation_id: &ConversationId,
    retention: &ConversationRetention,
) -> HttpResponse {
    let (days, source) = match retention.period {
        RetentionPeriod::Default => (state.settings.retention.default_days, "default"),
        RetentionPeriod::Forever => (0, "conversation"),
        RetentionPeriod::Days(days) => (days, "conversation"),
    };
    answered(serde_json::json!({
        "conversation_id": conversation_id,
        "days": days,
        "days_from": source,
        "legal_hold": retention.legal_hold == LegalHold::On,
        "first_seq": retention.first_seq(),
    }))
}

/// A change of one conversation's policy.
#[derive(Debug, Clone, Copy)]
enum PolicyChange {
    Period(RetentionPeriod),
    Hold(LegalHold),
}

/// Applies `change` to the conversation of the path and answers its retention.
async fn change_policy(
    state: &AppState,
    path: web::Path<String>,
    change: PolicyChange,
) -> HttpResponse {
    let (policies, conversation_id) = match target(state, path).await {
        Ok(target) => target,
        Err(error) => return refused(error),
    };
    let changed = match change {
        PolicyChange::Period(period) => policies.set_period(&conversation_id, period).await,
        PolicyChange::Hold(hold) => policies.set_legal_hold(&conversation_id, hold).await,
    };
    if let Err(error) = changed {
        return port_failure(error);
    }
    match policies.retention(&conversation_id).await {
        Ok(retention) => retention_answer(state, &conversation_id, &retention),
        Err(error) => port_failure(error),
    }
}

async fn set_retention(
    state: web::Data<Arc<AppState>>,
    path: web::Path<String>,
    body: web::Json<RetentionRequest>,
) -> HttpResponse {
    match check_days(body.into_inner().days) {
        Ok(period) => change_policy(&state, path, PolicyChange::Period(period)).await,
        Err(error) => refused(error),
    }
}

async fn set_legal_hold(
    state: web::Data<Arc<AppState>>,
    path: web::Path<String>,
    body: web::Json<LegalHoldRequest>,
) -> HttpResponse {
    let hold = match body.into_inner().on {
        true => LegalHold::On,
        false => LegalHold::Off,
    };
    change_policy(&state, path, PolicyChange::Hold(hold)).await
}
