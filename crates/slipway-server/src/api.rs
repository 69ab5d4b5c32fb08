//! Read-only API: builds, their logs, health.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use slipway_store::{BuildRecord, CancelOutcome, Store};
use uuid::Uuid;

use crate::{ApiError, AppState};

pub async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    // The HTTP side answers even when the local worker cannot build (webhooks still queue), so
    // the status stays 200 and the body says what is degraded.
    let worker = state
        .worker_health
        .as_ref()
        .map(|health| match health.problem() {
            None => json!({"healthy": true}),
            Some(problem) => json!({"healthy": false, "problem": problem}),
        });
    let degraded = worker.as_ref().is_some_and(|w| w["healthy"] == false);
    let workers = state
        .store
        .workers_seen_since(slipway_store::now_millis() - WORKER_SEEN_WITHIN_MS)
        .await?;
    let unhealthy = workers.iter().filter(|w| w.problem.is_some()).count();
    Ok(Json(json!({
        "status": if degraded { "degraded" } else { "ok" },
        "database": state.store.backend_name(),
        "worker": worker,
        "workers": {"seen": workers.len(), "unhealthy": unhealthy},
    })))
}

/// A worker not heard from for this long is not listed (they report every 5 s).
const WORKER_SEEN_WITHIN_MS: i64 = 30_000;

/// `GET /api/workers`: the worker processes heard from recently, with their health.
pub async fn workers(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let workers = state
        .store
        .workers_seen_since(slipway_store::now_millis() - WORKER_SEEN_WITHIN_MS)
        .await?;
    Ok(Json(json!({
        "workers": workers.iter().map(|w| json!({
            "id": w.id,
            "hostname": w.hostname,
            "slots": w.slots,
            "started_at": rfc3339(Some(w.started_at)),
            "last_seen_at": rfc3339(Some(w.last_seen_at)),
            "healthy": w.problem.is_none(),
            "problem": w.problem,
        })).collect::<Vec<_>>(),
    })))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

fn parse_build_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(format!("no build {id:?}")))
}

pub async fn build(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_build_id(&id)?;
    // One snapshot: an attempt's outcome and the build's state change together, and two
    // separate reads could straddle that change.
    let (build, attempts) = state
        .store
        .build_with_attempts(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no build {id}")))?;
    let mut value = build_json(&build, &state.public_url);
    if build.status == slipway_core::BuildStatus::Queued
        && let Some(repository) = state
            .store
            .repository_by_name(&build.repository.to_string())
            .await?
        && repository.max_concurrent_builds > 0
    {
        let running = state.store.running_builds(repository.id).await?;
        if running >= repository.max_concurrent_builds {
            value["waiting"] = json!(format!(
                "the repository's limit of {} concurrent build(s) is reached ({running} running)",
                repository.max_concurrent_builds
            ));
        }
    }
    value["attempt_history"] = attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "worker": a.worker,
                "started_at": rfc3339(Some(a.started_at)),
                "finished_at": rfc3339(a.finished_at),
                "outcome": a.outcome,
                "error": a.error,
            })
        })
        .collect();
    Ok(Json(value))
}

/// `POST /api/builds/{id}/cancel`: a queued build is cancelled at once (200); a running one is
/// asked to stop (202) and stops within seconds, before any further push.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_build_id(&id)?;
    let outcome = state
        .store
        .cancel_build(id, "cancelled through the API")
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no build {id}")))?;
    let (status, word) = match outcome {
        CancelOutcome::Cancelled => (StatusCode::OK, "cancelled"),
        CancelOutcome::Requested => (StatusCode::ACCEPTED, "cancelling"),
        CancelOutcome::AlreadyFinished(finished) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "finished",
                format!("build {id} has already {finished}"),
            ));
        }
    };
    Ok((status, Json(json!({"id": id, "status": word}))).into_response())
}

/// `POST /api/builds/{id}/retry`: a new build that repeats a finished one, linked to it.
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_build_id(&id)?;
    let original = state
        .store
        .build(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no build {id}")))?;
    let Some(new_id) = state.store.retry_build(id).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_finished",
            format!(
                "build {id} is still {}; cancel it first or wait for it to finish",
                original.status
            ),
        ));
    };
    let build = state
        .store
        .build(new_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no build {new_id}")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(build_json(&build, &state.public_url)),
    )
        .into_response())
}

/// A build as the API shows it; times as RFC 3339.
pub fn build_json(build: &BuildRecord, public_url: &str) -> Value {
    json!({
        "id": build.id,
        "repository": build.repository.to_string(),
        "ref": build.git_ref,
        "commit": build.commit,
        "image": build.image,
        "tags": build.tags,
        "dockerfile": build.dockerfile,
        "context": build.context,
        "status": build.status,
        "error": build.error,
        "digest": build.digest,
        "attempts": build.attempts,
        "waiting": waiting_reason(build),
        "trigger": build.trigger,
        "retry_of": build.retry_of,
        "delivery": build.delivery_id,
        "queued_at": rfc3339(Some(build.queued_at)),
        "started_at": rfc3339(build.started_at),
        "finished_at": rfc3339(build.finished_at),
        "links": {
            "self": format!("{public_url}/api/builds/{}", build.id),
            "log": format!("{public_url}/api/builds/{}/log", build.id),
        },
    })
}

/// Why a queued build has not started: a retry's backoff, or no free worker yet.
fn waiting_reason(build: &BuildRecord) -> Option<String> {
    if build.status != slipway_core::BuildStatus::Queued {
        return None;
    }
    Some(
        match build
            .not_before
            .filter(|t| *t > slipway_store::now_millis())
        {
            Some(until) => format!(
                "backing off after a failed attempt until {}",
                rfc3339(Some(until)).unwrap_or_default()
            ),
            None => "waiting for a free worker".to_owned(),
        },
    )
}

/// Unix milliseconds as RFC 3339 text, as every time in the API is shown.
pub fn rfc3339(millis: Option<i64>) -> Option<String> {
    let nanos = i128::from(millis?) * 1_000_000;
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    time.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The build's log as plain text, streamed page by page from the store so that a large log is
/// never held in memory whole.
pub async fn build_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_build_id(&id)?;
    state
        .store
        .build(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no build {id}")))?;
    let body = Body::from_stream(log_pages(state.store.clone(), id));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response())
}

fn log_pages(
    store: Store,
    id: Uuid,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    const PAGE: i64 = 64;
    futures_util::stream::unfold(Some(0i64), move |after| {
        let store = store.clone();
        async move {
            let after = after?;
            match store.log_chunks(id, after, PAGE).await {
                Ok(chunks) if chunks.is_empty() => None,
                Ok(chunks) => {
                    let last = chunks.last().map_or(after, |c| c.seq);
                    let next = (chunks.len() as i64 == PAGE).then_some(last);
                    let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.data).collect();
                    Some((Ok(Bytes::from(bytes)), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    })
}
