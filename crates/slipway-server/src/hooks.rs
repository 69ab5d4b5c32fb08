//! `POST /hooks/{owner}/{name}`: verify, parse, plan, store, answer.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway_core::plan::{PushPlan, RuleDecision, plan_builds};
use slipway_forge::{VerifyError, WebhookEvent, body_fingerprint, forge_for};
use slipway_store::{NewBuild, NewDelivery, RecordOutcome, RepositoryRecord, now_millis};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{ApiError, AppState};

pub async fn receive(
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let full_name = format!("{owner}/{name}");
    let repository = match state.store.repository_by_name(&full_name).await? {
        Some(repository) if repository.enabled => repository,
        _ => {
            return Err(ApiError::not_found(format!(
                "no repository {full_name} is configured"
            )));
        }
    };
    let forge = forge_for(repository.provider);
    let body = read_bounded(&headers, body, forge.max_body_bytes()).await?;

    let secret = state.webhook_secrets.get(&full_name).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this repository has no webhook secret configured",
        )
    })?;
    if let Err(error) = forge.verify(secret, &headers, &body) {
        warn!(repository = %full_name, %error, "webhook refused");
        let status = match error {
            VerifyError::WrongProvider { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        let code = if status == StatusCode::BAD_REQUEST {
            "wrong_provider"
        } else {
            "unauthorized"
        };
        return Err(ApiError::new(status, code, error.to_string()));
    }

    let event = forge
        .parse(&headers, &body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let delivery_key = forge
        .delivery_id(&headers)
        .unwrap_or_else(|| body_fingerprint(&body));
    let delivery_id = Uuid::now_v7();
    let answer = plan_answer(&repository, delivery_id, &event);

    let delivery = NewDelivery {
        id: delivery_id,
        repository_id: repository.id,
        delivery_key: delivery_key.clone(),
        provider: forge.provider().to_string(),
        event: forge.event_name(&headers).unwrap_or_default(),
        received_at: now_millis(),
        status_code: answer.status.as_u16(),
        outcome: answer.outcome.clone(),
        decisions_json: serde_json::to_string(&answer.decisions)
            .unwrap_or_else(|_| "[]".to_owned()),
        response_json: answer.body.to_string(),
        body: Some(body.to_vec()),
    };
    let response = match state
        .store
        .record_delivery(&delivery, &answer.builds)
        .await?
    {
        RecordOutcome::Recorded => {
            info!(repository = %full_name, delivery = %delivery_key, builds = answer.builds.len(), outcome = %answer.outcome, "webhook accepted");
            (answer.status, answer.body.to_string())
        }
        RecordOutcome::Duplicate {
            status_code,
            response_json,
        } => {
            info!(repository = %full_name, delivery = %delivery_key, "duplicate delivery; answering as before");
            (
                StatusCode::from_u16(status_code).unwrap_or(StatusCode::ACCEPTED),
                response_json,
            )
        }
    };
    Ok((
        response.0,
        [(header::CONTENT_TYPE, "application/json")],
        response.1,
    )
        .into_response())
}

/// How much of an oversized body is read and thrown away before answering 413. A client that
/// is still sending when the server answers and closes sees a reset instead of the answer;
/// reading a bounded excess lets it see the 413. Anything larger is cut off.
const DISCARD_LIMIT: usize = 64 * 1024 * 1024;

/// Reads the body, refusing with 413 anything over the forge's limit; nothing over the limit
/// is kept in memory.
async fn read_bounded(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds this forge's limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > DISCARD_LIMIT as u64) {
        return Err(too_large());
    }
    let mut body = body;
    let mut kept =
        Vec::with_capacity(declared.map_or(0, |length| length.min(limit as u64) as usize));
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::bad_request(format!("the request body could not be read: {error}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > DISCARD_LIMIT {
            break;
        }
        if seen <= limit {
            kept.extend_from_slice(&data);
        }
    }
    if seen > limit {
        Err(too_large())
    } else {
        Ok(Bytes::from(kept))
    }
}

/// The answer to a verified delivery, computed before anything is stored so that it can be
/// stored with the delivery and replayed verbatim for a duplicate.
struct Answer {
    status: StatusCode,
    body: Value,
    outcome: String,
    decisions: Vec<RuleDecision>,
    builds: Vec<NewBuild>,
}

fn plan_answer(repository: &RepositoryRecord, delivery_id: Uuid, event: &WebhookEvent) -> Answer {
    match event {
        WebhookEvent::Ping => Answer {
            status: StatusCode::OK,
            body: json!({"delivery": delivery_id, "pong": true}),
            outcome: "ping answered".to_owned(),
            decisions: Vec::new(),
            builds: Vec::new(),
        },
        WebhookEvent::Ignored(reason) => Answer {
            status: StatusCode::ACCEPTED,
            body: json!({"delivery": delivery_id, "builds": [], "ignored": reason}),
            outcome: reason.clone(),
            decisions: Vec::new(),
            builds: Vec::new(),
        },
        WebhookEvent::Push(events) => {
            let plans: Vec<PushPlan> = events
                .iter()
                .map(|event| plan_builds(&repository.rules, event))
                .collect();
            let builds: Vec<NewBuild> = plans
                .iter()
                .flat_map(PushPlan::builds)
                .map(|plan| NewBuild {
                    id: Uuid::now_v7(),
                    image: repository.image.to_string(),
                    plan: plan.clone(),
                })
                .collect();
            let outcome = plans
                .iter()
                .map(|p| p.summary.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            let listed: Vec<Value> = builds
                .iter()
                .map(|b| json!({"id": b.id, "tags": b.plan.tags, "ref": b.plan.git_ref.full(), "commit": b.plan.commit.as_str()}))
                .collect();
            let body = if builds.is_empty() {
                json!({"delivery": delivery_id, "builds": listed, "ignored": outcome})
            } else {
                json!({"delivery": delivery_id, "builds": listed})
            };
            Answer {
                status: StatusCode::ACCEPTED,
                body,
                outcome,
                decisions: plans.into_iter().flat_map(|p| p.decisions).collect(),
                builds,
            }
        }
    }
}
