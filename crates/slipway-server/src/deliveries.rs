//! The deliveries log's API: every request to `/hooks`, what it led to and why, and replay.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_forge::forge_for;
use slipway_store::{DeliveryRecord, NewDelivery, RepositoryRecord, now_millis};
use uuid::Uuid;

use crate::api::{build_json, rfc3339};
use crate::auth::Caller;
use crate::hooks::record_planned;
use crate::{ApiError, AppState};
use slipway_core::Role;

#[derive(Debug, Deserialize)]
pub struct Page {
    /// How many deliveries to return (1 to 100, default 50).
    limit: Option<i64>,
    /// Continue after this delivery id (the `next` of the previous page).
    before: Option<Uuid>,
}

/// Warnings about a repository's webhook settings, shown wherever its deliveries are.
pub fn repository_warnings(repository: &RepositoryRecord) -> Vec<String> {
    let mut warnings = Vec::new();
    if repository.allow_unsigned {
        warnings.push(
            "unsigned webhooks are accepted for this repository (allow_unsigned_webhooks = true): anyone who can reach the webhook URL can start builds"
                .to_owned(),
        );
    }
    if repository.allow_legacy_sha1 {
        warnings.push("GitHub's legacy SHA-1 signature is accepted for this repository (allow_legacy_sha1 = true)".to_owned());
    }
    warnings
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    // A malformed query string gets the API's JSON error, not axum's plain-text rejection.
    let Query(page) =
        page.map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))?;
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Read).await?;
    let limit = page.limit.unwrap_or(50).clamp(1, 100);
    let deliveries = state
        .store
        .deliveries_for_repository(repository.id, limit, page.before)
        .await?;
    let next = (deliveries.len() as i64 == limit)
        .then(|| deliveries.last().map(|d| d.id))
        .flatten();
    Ok(Json(json!({
        "repository": {
            "name": repository.name.to_string(),
            "provider": repository.provider,
            "enabled": repository.enabled,
            "webhook_url": format!("{}/hooks/{}", state.public_url, repository.name),
            "warnings": repository_warnings(&repository),
        },
        "deliveries": deliveries.iter().map(|d| delivery_json(d, &state.public_url)).collect::<Vec<_>>(),
        "next": next,
    })))
}

pub async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let delivery = find(&state, &caller, &id, Role::Read).await?;
    let mut value = delivery_json(&delivery, &state.public_url);
    let builds = state.store.builds_for_delivery(delivery.id).await?;
    value["builds_created"] = Value::Array(
        builds
            .iter()
            .map(|b| build_json(b, &state.public_url))
            .collect(),
    );
    value["decisions"] = serde_json::from_str(&delivery.decisions_json).unwrap_or(Value::Null);
    value["headers"] = serde_json::from_str(&delivery.headers_json).unwrap_or(Value::Null);
    Ok(Json(value))
}

/// The delivery, if the caller holds `needed` on its repository. Requests to a URL naming no
/// repository are logged too; only global roles reach those.
pub async fn find(
    state: &AppState,
    caller: &Caller,
    id: &str,
    needed: Role,
) -> Result<DeliveryRecord, ApiError> {
    let not_found = || ApiError::not_found(format!("no delivery {id:?}"));
    let delivery = match Uuid::parse_str(id) {
        Ok(id) => state.store.delivery(id).await?,
        Err(_) => None,
    };
    let Some(delivery) = delivery else {
        return Err(caller.unseen(not_found));
    };
    if delivery.repository_id.is_none() {
        // A request refused before it named a known repository belongs to no repository:
        // global readers see it, and to everyone else it does not exist.
        if !caller
            .global_role()
            .is_some_and(|role| role.allows(Role::Read))
        {
            return Err(caller.unseen(not_found));
        }
        caller.require_global(needed)?;
        return Ok(delivery);
    }
    let found = state
        .store
        .repository_by_name(&delivery.repository_name)
        .await?
        .map(|repository| (delivery, repository));
    let (delivery, _) = caller.require_found(found, needed, not_found)?;
    Ok(delivery)
}

/// A delivery as the log shows it.
fn delivery_json(delivery: &DeliveryRecord, public_url: &str) -> Value {
    let response: Value = serde_json::from_str(&delivery.response_json).unwrap_or(Value::Null);
    json!({
        "id": delivery.id,
        "repository": delivery.repository_name,
        "provider": delivery.provider,
        "event": delivery.event,
        "forge_delivery_id": delivery.forge_delivery_id,
        "source_address": delivery.source_address,
        "received_at": rfc3339(Some(delivery.received_at)),
        "status_code": delivery.status_code,
        "verification": delivery.verification,
        "outcome": delivery.outcome,
        "builds": response.get("builds").cloned().unwrap_or_else(|| json!([])),
        "body_kept": delivery.has_body,
        "redelivery_of": delivery.redelivery_of,
        "links": {
            "self": format!("{public_url}/api/deliveries/{}", delivery.id),
            "redeliver": format!("{public_url}/api/deliveries/{}/redeliver", delivery.id),
        },
    })
}

/// Plans the stored, verified body again, as if the forge had sent it once more. Builds that
/// already exist for a rule, ref and commit are found, not made twice; the replay is logged as
/// a delivery of its own, linked to the original.
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let original = find(&state, &caller, &id, Role::Write).await?;
    let Some(body) = state.store.delivery_body(original.id).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_body",
            format!(
                "delivery {} has no stored body: it was not verified, or its body is past the retention period",
                original.id
            ),
        ));
    };
    let repository = match original.repository_id {
        Some(_) => {
            state
                .store
                .repository_by_name(&original.repository_name)
                .await?
        }
        None => None,
    }
    .filter(|r| r.enabled)
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "repository {} is no longer configured",
            original.repository_name
        ))
    })?;
    let headers = stored_headers(&original.headers_json);
    let forge = forge_for(repository.provider);
    let event = forge.parse(&headers, &body).map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            "unparseable",
            format!("the stored delivery cannot be parsed: {e}"),
        )
    })?;
    let replay_id = Uuid::now_v7();
    let delivery = NewDelivery {
        id: replay_id,
        repository_id: Some(repository.id),
        repository_name: original.repository_name.clone(),
        provider: original.provider.clone(),
        event: original.event.clone(),
        forge_delivery_id: original.forge_delivery_id.clone(),
        // Every replay is its own entry in the log; idempotency per rule, ref and commit
        // still keeps it from building anything twice.
        delivery_key: Some(format!("redelivery:{replay_id}")),
        source_address: String::new(),
        received_at: now_millis(),
        verification: format!(
            "replayed from delivery {}, which was {}",
            original.id, original.verification
        ),
        headers_json: original.headers_json.clone(),
        body: Some(body),
        redelivery_of: Some(original.id),
    };
    let (status, response) =
        record_planned(&state, &delivery, &repository, &event, "redelivery").await?;
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        response,
    )
        .into_response())
}

fn stored_headers(json: &str) -> HeaderMap {
    let stored: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
    let mut headers = HeaderMap::new();
    for (name, value) in stored {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::try_from(name.as_str()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}
