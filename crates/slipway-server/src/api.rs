//! The builds API (lists, detail with the state timeline, logs, cancel, retry), health, and
//! the JSON body extractor every handler uses.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use slipway_core::{BuildStatus, Role};
use slipway_store::{
    AttemptRecord, BuildCursor, BuildEvent, BuildFilter, BuildRecord, CancelOutcome, Readable,
    RepositoryRecord, Store,
};
use uuid::Uuid;

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// A JSON request body whose every rejection (no JSON content type, malformed, wrong shape,
/// too large) is answered in the API's one error shape. Handlers take it as
/// `Result<JsonBody<T>, ApiError>` and look at it only after checking the caller, so that an
/// unauthorised caller learns nothing about what a valid body looks like (401, 403 or 404 come
/// first).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    _ => "bad_request",
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

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
pub async fn workers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_user()?;
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

/// A known path with a method it does not take, in the one error shape too.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; /api/openapi.json lists what it takes",
    )
}

/// The build and its repository, if the caller holds `needed` on the repository; a build the
/// caller may not read is answered like a missing one (401 anonymous, 404 signed in).
pub async fn authorized_build(
    state: &AppState,
    caller: &Caller,
    id: &str,
    needed: Role,
) -> Result<(BuildRecord, RepositoryRecord), ApiError> {
    // A malformed id, a missing build and a build the caller may not read are one answer.
    let build = match Uuid::parse_str(id) {
        Ok(id) => state.store.build(id).await?,
        Err(_) => None,
    };
    let found = match build {
        Some(build) => state
            .store
            .repository_by_name(&build.repository.to_string())
            .await?
            .map(|repository| (build, repository)),
        None => None,
    };
    caller.require_found(found, needed, || {
        ApiError::not_found(format!("no build {id:?}"))
    })
}

/// Query parameters of `GET /api/builds`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildListQuery {
    pub repository: Option<String>,
    pub status: Option<String>,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub since: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The most builds one page holds.
pub const MAX_PAGE: i64 = 200;

/// The builds the caller may read, filtered and paginated.
pub async fn list_builds_for(
    state: &AppState,
    caller: &Caller,
    query: BuildListQuery,
) -> Result<(Vec<BuildRecord>, Option<String>), ApiError> {
    let mut filter = BuildFilter::default();
    if let Some(full) = &query.repository {
        let (owner, name) = full
            .split_once('/')
            .ok_or_else(|| ApiError::bad_request("repository must be owner/name"))?;
        let repository = crate::repos::find(state, caller, owner, name, Role::Read).await?;
        filter.repository_id = Some(repository.id);
    } else if caller.global_role().is_none() {
        // Without a global role, only repositories open to everyone or granted to the user.
        let principal = caller.principal();
        filter.readable_by = Some(Readable {
            user_id: principal.map(|p| p.user.id),
            only_repository: None,
        });
        if let Some(only) = principal
            .and_then(|p| p.token.as_ref())
            .and_then(|t| t.repository.as_deref())
        {
            let repository = state
                .store
                .repository_by_name(only)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no repository {only}")))?;
            filter.readable_by = None;
            caller.require(&repository, Role::Read)?;
            filter.repository_id = Some(repository.id);
        } else if principal.is_none() {
            // Anonymous callers see only what is open to everyone.
        }
    }
    filter.status = query
        .status
        .as_deref()
        .map(str::parse::<BuildStatus>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("status: {e}")))?;
    filter.git_ref = query.git_ref.clone();
    filter.since = query
        .since
        .as_deref()
        .map(|text| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| {
                    ApiError::bad_request(format!("since {text:?} is not an RFC 3339 time"))
                })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let cursor = query
        .cursor
        .as_deref()
        .map(|text| {
            BuildCursor::decode(text)
                .ok_or_else(|| ApiError::bad_request("cursor is not one this API gave out"))
        })
        .transpose()?;
    let mut builds = state.store.list_builds(&filter, cursor, limit).await?;
    let next = if builds.len() as i64 > limit {
        builds.truncate(usize::try_from(limit).unwrap_or(0));
        builds.last().map(|b| {
            BuildCursor {
                queued_at: b.queued_at,
                id: b.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok((builds, next))
}

/// `GET /api/builds?repository=&status=&ref=&since=&limit=&cursor=`: newest first; follow
/// `next_cursor` for the next page.
pub async fn list_builds(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<BuildListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if caller.principal().is_none()
        && query.repository.is_none()
        && !state
            .store
            .repositories()
            .await?
            .iter()
            .any(|r| r.anonymous_read)
    {
        caller.require_user()?;
    }
    let (builds, next) = list_builds_for(&state, &caller, query).await?;
    Ok(Json(json!({
        "builds": builds.iter().map(|b| build_json(b, &state.public_url)).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// A build's states with the time each began and how long it lasted: queued, then per
/// attempt the phases the worker went through (and why an attempt was retried), then the end.
pub fn timeline(
    build: &BuildRecord,
    attempts: &[AttemptRecord],
    events: &[BuildEvent],
    now: i64,
) -> Vec<Value> {
    let mut entries: Vec<(i64, &str, Option<String>, Option<i64>)> = vec![(
        build.queued_at,
        "queued",
        Some(describe_trigger(&build.trigger)),
        None,
    )];
    for event in events {
        entries.push((event.at, event.state.as_str(), None, Some(event.attempt)));
    }
    for attempt in attempts {
        if let (Some(at), Some(outcome)) = (attempt.finished_at, attempt.outcome.as_deref())
            && matches!(outcome, "retry" | "lost" | "handed_back")
        {
            entries.push((at, "retrying", attempt.error.clone(), Some(attempt.attempt)));
        }
    }
    entries.sort_by_key(|(at, ..)| *at);
    if build.status.is_finished() {
        let at = build.finished_at.unwrap_or(now);
        entries.push((at, build.status.as_str(), build.error.clone(), None));
    }
    let ends: Vec<Option<i64>> = entries
        .iter()
        .skip(1)
        .map(|(at, ..)| Some(*at))
        .chain(std::iter::once(
            (!build.status.is_finished()).then_some(now),
        ))
        .collect();
    entries
        .iter()
        .zip(ends)
        .map(|((at, state, detail, attempt), end)| {
            json!({
                "state": state,
                "at": rfc3339(Some(*at)),
                "duration_ms": end.map(|end| (end - at).max(0)),
                "attempt": attempt,
                "detail": detail,
            })
        })
        .collect()
}

fn describe_trigger(trigger: &str) -> String {
    match trigger {
        "push" => "queued by a push".to_owned(),
        "redelivery" => "queued by a redelivered webhook".to_owned(),
        "trigger" => "queued by a trigger URL".to_owned(),
        "retry" => "queued by a retry".to_owned(),
        "manual" => "queued by a user (build now)".to_owned(),
        "reconciler" => "queued by the reconciler (no webhook announced the commit)".to_owned(),
        other => format!("queued by {other}"),
    }
}

pub async fn build(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (authorized, repository) = authorized_build(&state, &caller, &id, Role::Read).await?;
    let id = authorized.id;
    // One snapshot: an attempt's outcome and the build's state change together, and two
    // separate reads could straddle that change.
    let (build, attempts) = state
        .store
        .build_with_attempts(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no build {id}")))?;
    let events = state.store.build_events(id).await?;
    let mut value = build_json(&build, &state.public_url);
    value["timeline"] = json!(timeline(
        &build,
        &attempts,
        &events,
        slipway_store::now_millis()
    ));
    value["your_role"] = json!(caller.role_on(&repository));
    // The commit statuses posted and each outgoing webhook request, as they went.
    // Readers see each one's outcome; the answers' excerpts and the error texts (which can
    // name receivers' hosts and addresses) only admins, as on the hooks' own pages.
    let admin = caller.may(&repository, Role::Admin);
    let mut notifications = Vec::new();
    for notification in state.store.notifications_for_build(id).await? {
        if admin {
            let attempts = state.store.notification_attempts(notification.id).await?;
            notifications.push(crate::webhooks::notification_json(&notification, &attempts));
        } else {
            let mut summary = crate::webhooks::notification_json(&notification, &[]);
            summary["last_error"] = json!(crate::webhooks::visible_error(&notification, false));
            if let Value::Object(fields) = &mut summary {
                fields.remove("history");
            }
            notifications.push(summary);
        }
    }
    value["notifications"] = Value::Array(notifications);
    // The claim statement passes over a disabled repository's builds, so that is what a queued
    // one waits for, before any limit or worker.
    if build.status == BuildStatus::Queued && !repository.enabled {
        value["waiting"] =
            json!("the repository is disabled; its queued builds start once it is enabled again");
    } else if build.status == BuildStatus::Queued && repository.max_concurrent_builds > 0 {
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
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (build, _) = authorized_build(&state, &caller, &id, Role::Write).await?;
    let id = build.id;
    let reason = match caller.user_name() {
        Some(user) => format!("cancelled by {user}"),
        None => "cancelled through the API".to_owned(),
    };
    let outcome = state
        .store
        .cancel_build(id, &reason)
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
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (original, repository) = authorized_build(&state, &caller, &id, Role::Write).await?;
    let id = original.id;
    crate::repos::require_enabled(&repository)?;
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
            "log_stream": format!("{public_url}/api/builds/{}/log/stream", build.id),
            "dashboard": format!("{public_url}/builds/{}", build.id),
        },
    })
}

/// Why a queued build has not started: a retry's backoff, or no free worker yet.
fn waiting_reason(build: &BuildRecord) -> Option<String> {
    if build.status != BuildStatus::Queued {
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

/// Which bytes of a log a request asks for: from `start`, up to and including `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// Parses one `Range: bytes=…` range against a log of `size` bytes: `N-`, `N-M` or the suffix
/// `-N` (the last N bytes, for a tail). `Err` means unsatisfiable (416); several ranges are
/// not supported and read as the whole log, which RFC 9110 allows.
pub fn parse_range(header: &str, size: u64) -> Option<Result<ByteRange, ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().ok()?;
            if suffix == 0 {
                return Some(Err(()));
            }
            ByteRange {
                start: size.saturating_sub(suffix),
                end: None,
            }
        }
        (start, "") => ByteRange {
            start: start.parse().ok()?,
            end: None,
        },
        (start, end) => {
            let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
            if end < start {
                return None;
            }
            ByteRange {
                start,
                end: Some(end),
            }
        }
    };
    if range.start >= size {
        return Some(Err(()));
    }
    Some(Ok(range))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    offset: Option<u64>,
}

/// `GET /api/builds/{id}/log`: the log as plain text, streamed piece by piece from the store so
/// that a large log is never held in memory whole. `Range: bytes=N-` (or `?offset=N`) reads
/// from byte N, `bytes=-N` the last N bytes; such answers are 206 with `Content-Range`.
pub async fn build_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (build, _) = authorized_build(&state, &caller, &id, Role::Read).await?;
    let size = u64::try_from(state.store.log_size(build.id).await?).unwrap_or(0);
    let requested = match (
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        query.offset,
    ) {
        (Some(range), _) => parse_range(range, size),
        (None, Some(offset)) if offset == 0 && size == 0 => None,
        (None, Some(offset)) => Some(if offset < size {
            Ok(ByteRange {
                start: offset,
                end: None,
            })
        } else {
            Err(())
        }),
        (None, None) => None,
    };
    let text_plain = (header::CONTENT_TYPE, "text/plain; charset=utf-8");
    let range = match requested {
        None => {
            let body = Body::from_stream(log_bytes(state.store.clone(), build.id, 0, None));
            return Ok((
                StatusCode::OK,
                [text_plain, (header::ACCEPT_RANGES, "bytes")],
                body,
            )
                .into_response());
        }
        Some(Err(())) => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the log has {size} bytes"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
        Some(Ok(range)) => range,
    };
    // The answer covers what exists now; a running build's log may grow past it.
    let end = range.end.map_or(size - 1, |end| end.min(size - 1));
    let body = Body::from_stream(log_bytes(
        state.store.clone(),
        build.id,
        range.start,
        Some(end + 1),
    ));
    let content_range = format!("bytes {}-{end}/{size}", range.start);
    let mut response = (StatusCode::PARTIAL_CONTENT, [text_plain], body).into_response();
    if let Ok(value) = HeaderValue::from_str(&content_range) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    response
        .headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(response)
}

/// The log's bytes from `start` up to (not including) `until`, a few stored pieces at a time.
pub fn log_bytes(
    store: Store,
    id: Uuid,
    start: u64,
    until: Option<u64>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    const PIECES: i64 = 8;
    futures_util::stream::unfold(Some(start), move |from| {
        let store = store.clone();
        async move {
            let from = from?;
            if until.is_some_and(|until| from >= until) {
                return None;
            }
            let offset = i64::try_from(from).unwrap_or(i64::MAX);
            match store.log_from(id, offset, PIECES).await {
                Ok(pieces) if pieces.is_empty() => None,
                Ok(pieces) => {
                    let mut bytes = Vec::new();
                    let mut next = from;
                    for piece in pieces {
                        let piece_start = u64::try_from(piece.offset).unwrap_or(0);
                        let piece_end = piece_start + piece.data.len() as u64;
                        let take_from = next.saturating_sub(piece_start) as usize;
                        let take_to = until.map_or(piece_end, |u| u.min(piece_end));
                        let take_to = take_to.saturating_sub(piece_start) as usize;
                        if take_from < take_to && take_to <= piece.data.len() {
                            bytes.extend_from_slice(&piece.data[take_from..take_to]);
                        }
                        next = piece_end.max(next);
                    }
                    Some((Ok(Bytes::from(bytes)), Some(next)))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let open = |start| Some(Ok(ByteRange { start, end: None }));
        assert_eq!(parse_range("bytes=10-", 100), open(10));
        assert_eq!(
            parse_range("bytes=10-19", 100),
            Some(Ok(ByteRange {
                start: 10,
                end: Some(19)
            }))
        );
        assert_eq!(parse_range("bytes=-30", 100), open(70));
        assert_eq!(parse_range("bytes=-300", 100), open(0));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-", 0), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
