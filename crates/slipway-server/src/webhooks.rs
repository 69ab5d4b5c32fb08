//! `/api/repositories/{owner}/{name}/webhooks`: a repository's outgoing webhooks, their
//! delivery history and manual redelivery. Secrets are write-only; target URLs are checked
//! against private, loopback and link-local addresses here and again at every send.

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_core::Role;
use slipway_notify::payload::HookEvent;
use slipway_notify::ssrf::TargetPolicy;
use slipway_store::{
    HookRecord, NotificationAttempt, NotificationRecord, Redelivery, RepositoryRecord,
};
use uuid::Uuid;

use crate::api::{JsonBody, rfc3339};
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The shortest signing secret accepted: receivers verify with it, so it must not be guessable.
const MIN_SECRET_LENGTH: usize = 16;
/// Deliveries listed per hook.
const HISTORY: i64 = 50;

fn hook_json(hook: &HookRecord, repository: &str, public_url: &str) -> Value {
    json!({
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "secret": "set",
        "created_at": rfc3339(Some(hook.created_at)),
        "links": {
            "deliveries": format!("{public_url}/api/repositories/{repository}/webhooks/{}/deliveries", hook.id),
        },
    })
}

/// What a caller without the admin role is told in place of a notification's error.
const ERROR_FOR_READERS: &str = "failed; an admin can see why";

/// A notification's last error as a caller may see it. The text can name a receiver's host
/// and the addresses it resolved to, which only the repository's admins may learn (as on the
/// hooks' own pages); everyone else learns only that there was an error. The API and the
/// dashboard both answer through this, so they cannot disagree.
pub fn visible_error(notification: &NotificationRecord, admin: bool) -> Option<&str> {
    notification
        .last_error
        .as_deref()
        .map(|error| if admin { error } else { ERROR_FOR_READERS })
}

/// A notification and its attempts, as the history shows it.
pub fn notification_json(
    notification: &NotificationRecord,
    attempts: &[NotificationAttempt],
) -> Value {
    json!({
        "id": notification.id,
        "kind": notification.kind.as_str(),
        "event": notification.event,
        "build": notification.build_id,
        "state": notification.state,
        "attempts": notification.attempts,
        "next_attempt_at": (notification.state == "pending").then(|| rfc3339(Some(notification.next_attempt_at))),
        "last_status_code": notification.last_status_code,
        "last_error": notification.last_error,
        "created_at": rfc3339(Some(notification.created_at)),
        "finished_at": rfc3339(notification.finished_at),
        "redelivery_of": notification.redelivery_of,
        "history": attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "at": rfc3339(Some(a.at)),
            "status_code": a.status_code,
            "duration_ms": a.duration_ms,
            "error": a.error,
            "response_excerpt": a.response_excerpt,
        })).collect::<Vec<_>>(),
    })
}

/// How long the name lookup of a new hook's target may hold its request.
const LOOKUP_TIMEOUT: Duration = slipway_notify::deliver::DNS_TIMEOUT;

/// The notification `id` and its repository, if the caller holds `needed` on that repository;
/// one the caller may not read is answered like a missing one (401 anonymous, 404 signed in).
pub async fn find_notification(
    state: &AppState,
    caller: &Caller,
    id: &str,
    needed: Role,
) -> Result<(NotificationRecord, RepositoryRecord), ApiError> {
    let notification = match Uuid::parse_str(id) {
        Ok(id) => state.store.notification(id).await?,
        Err(_) => None,
    };
    let found = match notification {
        Some(notification) => state
            .store
            .repository(notification.repository_id)
            .await?
            .map(|repository| (notification, repository)),
        None => None,
    };
    caller.require_found(found, needed, || {
        ApiError::not_found(format!("no notification {id:?}"))
    })
}

/// Checks a target URL as configured: its form, a literal address, and (for a name) every
/// address it resolves to now; sending checks the resolved addresses again.
pub async fn check_target(url: &str, policy: &TargetPolicy) -> Result<(), String> {
    let target = slipway_notify::ssrf::check_target_url(url, policy)?;
    if let Some(domain) = target.domain() {
        let lookup = tokio::time::timeout(
            LOOKUP_TIMEOUT,
            tokio::net::lookup_host((domain, target.port())),
        )
        .await;
        // A name that does not resolve yet (or not in time) is accepted: it is checked again
        // at every send, which is the check that counts.
        let addresses: Vec<IpAddr> = match lookup {
            Ok(Ok(found)) => found.map(|address| address.ip()).collect(),
            Ok(Err(_)) | Err(_) => Vec::new(),
        };
        if !addresses.is_empty() {
            slipway_notify::ssrf::check_resolved(&target, &addresses, policy)?;
        }
    }
    Ok(())
}

/// `GET /api/repositories/{owner}/{name}/webhooks` (admins).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Admin).await?;
    let full = repository.name.to_string();
    let hooks = state.store.hooks_for_repository(repository.id).await?;
    Ok(Json(json!({
        "repository": full,
        "webhooks": hooks.iter().map(|h| hook_json(h, &full, &state.public_url)).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHook {
    url: String,
    events: Vec<String>,
    secret: String,
}

/// `POST /api/repositories/{owner}/{name}/webhooks` (admins): `{"url", "events", "secret"}`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    body: Result<JsonBody<NewHook>, ApiError>,
) -> Result<Response, ApiError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Admin).await?;
    let input = body?.0;
    if input.events.is_empty() {
        return Err(ApiError::bad_request(
            "events must name at least one of build_queued, build_started, build_succeeded, build_failed, build_cancelled, image_pushed",
        ));
    }
    let mut events = Vec::new();
    for event in &input.events {
        let event: HookEvent = event.parse().map_err(ApiError::bad_request)?;
        if !events.contains(&event.as_str().to_owned()) {
            events.push(event.as_str().to_owned());
        }
    }
    if input.secret.len() < MIN_SECRET_LENGTH {
        return Err(ApiError::bad_request(format!(
            "secret must be at least {MIN_SECRET_LENGTH} characters (a random one: openssl rand -hex 32)"
        )));
    }
    check_target(&input.url, &state.target_policy)
        .await
        .map_err(|reason| ApiError::bad_request(format!("url refused: {reason}")))?;
    let hook = state
        .store
        .create_hook(repository.id, input.url.trim(), &events, &input.secret)
        .await?;
    tracing::info!(repository = %repository.name, hook = %hook.id, by = caller.user_name().unwrap_or("?"), "outgoing webhook added");
    Ok((
        StatusCode::CREATED,
        Json(hook_json(
            &hook,
            &repository.name.to_string(),
            &state.public_url,
        )),
    )
        .into_response())
}

fn hook_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(format!("no webhook {id:?}")))
}

/// `DELETE /api/repositories/{owner}/{name}/webhooks/{id}` (admins).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Admin).await?;
    if !state
        .store
        .delete_hook(repository.id, hook_id(&id)?)
        .await?
    {
        return Err(ApiError::not_found(format!("no webhook {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/repositories/{owner}/{name}/webhooks/{id}/deliveries` (admins): the newest
/// deliveries with every attempt (time, status, duration, response excerpt).
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Admin).await?;
    let hook = state
        .store
        .hook(hook_id(&id)?)
        .await?
        .filter(|h| h.repository_id == repository.id)
        .ok_or_else(|| ApiError::not_found(format!("no webhook {id}")))?;
    let mut deliveries = Vec::new();
    for notification in state.store.hook_deliveries(hook.id, HISTORY).await? {
        let attempts = state.store.notification_attempts(notification.id).await?;
        deliveries.push(notification_json(&notification, &attempts));
    }
    Ok(Json(json!({
        "webhook": hook_json(&hook, &repository.name.to_string(), &state.public_url),
        "deliveries": deliveries,
    })))
}

/// The new notification's id, or why there is none: a redelivery of something still pending
/// would send it twice, and one of a status a newer one replaced would put the commit back on an
/// older state (409 for both, naming what to do instead).
pub fn redelivery_result(outcome: Redelivery, id: Uuid) -> Result<Uuid, ApiError> {
    match outcome {
        Redelivery::Queued(new_id) => Ok(new_id),
        Redelivery::NotFound => Err(ApiError::not_found(format!("no notification {id}"))),
        Redelivery::StillPending(pending) if pending == id => Err(ApiError::new(
            StatusCode::CONFLICT,
            "still_pending",
            format!(
                "notification {id} is still pending (waiting for a retry or being sent); redeliver it once it has been delivered or has failed"
            ),
        )),
        Redelivery::StillPending(pending) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "still_pending",
            format!(
                "a redelivery of this notification, {pending}, is still pending; wait until it has been delivered or has failed"
            ),
        )),
        Redelivery::Superseded { by, event } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "superseded",
            format!(
                "a newer commit status of the same commit and context ({by}, {event}) replaces this one; sending this again would put the commit back on an older state, so redeliver {by} instead"
            ),
        )),
    }
}

/// `POST /api/notifications/{id}/redeliver` (admins of its repository): sends a webhook
/// delivery or a commit status again, as a new notification linked to the first.
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (notification, _) = find_notification(&state, &caller, &id, Role::Admin).await?;
    let id = notification.id;
    let outcome = state.store.redeliver_notification(id).await?;
    let new_id = redelivery_result(outcome, id)?;
    state.notifications_due.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": new_id, "redelivery_of": id, "state": "pending"})),
    )
        .into_response())
}
