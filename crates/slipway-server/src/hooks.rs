//! `POST /hooks/{owner}/{name}`: verify, parse, plan, store, answer, and log every request,
//! accepted or not, in the deliveries log.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway_core::PlanTrigger;
use slipway_core::plan::{PushPlan, RuleDecision, plan_builds};
use slipway_forge::{
    VerifyPolicy, WebhookEvent, body_fingerprint, check_provider, forge_for, payload_repository,
    replayable_headers,
};
use slipway_store::{
    BuildPlacement, DeliveryAnswer, DeliveryTally, ManagedBy, NewBuild, NewDelivery, RecordOutcome,
    RepositoryRecord, Supersede, now_millis,
};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{ApiError, AppState};

/// How much of an oversized body is read and thrown away before answering 413. A client that
/// is still sending when the server answers and closes sees a reset instead of the answer;
/// reading a bounded excess lets it see the 413. Anything larger is cut off.
const DISCARD_LIMIT: usize = 64 * 1024 * 1024;

/// How long a webhook's body may take to arrive.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// How many webhook requests are handled at once; more wait briefly for a place, then get 503.
/// Bounds the memory bodies can take (each up to its forge's limit) under a flood.
pub const MAX_CONCURRENT_HOOKS: usize = 64;

/// A refused request: the error to send and the verification result to log.
struct Refusal {
    error: ApiError,
    verification: String,
}

impl Refusal {
    fn new(error: ApiError, verification: impl Into<String>) -> Self {
        Self {
            error,
            verification: verification.into(),
        }
    }
}

impl From<slipway_store::StoreError> for Refusal {
    fn from(error: slipway_store::StoreError) -> Self {
        ApiError::from(error).into()
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self::new(
            error,
            "not checked: the server could not process the request",
        )
    }
}

/// What happens to a verified, planned delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// Stored with its builds before the answer: what `/hooks` always does.
    Store,
    /// Answered as if stored, but nothing is written: only for the ingest benchmark's
    /// baseline (see [`receive_unrecorded`]).
    Discard,
}

pub async fn receive(
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    handle(&state, owner, name, request, Sink::Store).await
}

/// `/hooks` without its database writes: the same bound on concurrent requests, body limits,
/// provider check, signature verification, parsing and planning, answered with the planned
/// builds, but nothing is stored and nothing is counted. It exists so that the ingest
/// benchmark (`scripts/bench`) can measure what durability costs against everything else
/// the endpoint does; no route of [`crate::app`] reaches it.
pub async fn receive_unrecorded(
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    handle(&state, owner, name, request, Sink::Discard).await
}

async fn handle(
    state: &AppState,
    owner: String,
    name: String,
    request: Request,
    sink: Sink,
) -> Response {
    // A place among the requests being handled, or a quick 503 the forge will retry.
    let Ok(Ok(_place)) = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.hook_slots.clone().acquire_owned(),
    )
    .await
    else {
        if sink == Sink::Store {
            crate::metrics::count_refused(state, "", StatusCode::SERVICE_UNAVAILABLE).await;
        }
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many webhook requests at once; try again",
        )
        .into_response();
    };
    let (parts, body) = request.into_parts();
    let source_address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(String::new, |ConnectInfo(peer)| peer.to_string());
    let mut delivery = NewDelivery {
        id: Uuid::now_v7(),
        repository_id: None,
        repository_name: format!("{owner}/{name}"),
        provider: String::new(),
        event: String::new(),
        forge_delivery_id: None,
        delivery_key: None,
        source_address,
        received_at: now_millis(),
        verification: String::new(),
        headers_json: Value::Object(
            replayable_headers(&parts.headers)
                .into_iter()
                // The sender chooses these values; a bounded excerpt is all the log needs.
                .map(|(name, value)| (name, Value::String(value.chars().take(256).collect())))
                .collect(),
        )
        .to_string(),
        body: None,
        redelivery_of: None,
    };
    match accept(state, &mut delivery, &parts.headers, body, sink).await {
        Ok(response) => response,
        Err(refusal) => {
            delivery.verification = refusal.verification;
            let status = refusal.error.status;
            warn!(repository = %delivery.repository_name, status = status.as_u16(), reason = %refusal.error.message, "webhook refused");
            if sink == Sink::Discard {
                return refusal.error.into_response();
            }
            // A refusal caused by the database itself cannot be logged in it.
            if status != StatusCode::SERVICE_UNAVAILABLE
                && let Err(error) = state
                    .store
                    .record_refused_delivery(&delivery, status.as_u16(), &refusal.error.message)
                    .await
            {
                warn!(%error, "could not log a refused delivery");
            }
            // Nor can it be counted there: trying would only make the forge wait for a second
            // timeout before its 503.
            if refusal.error.code != "unavailable" {
                crate::metrics::count_refused(state, &delivery.provider, status).await;
            }
            refusal.error.into_response()
        }
    }
}

async fn accept(
    state: &AppState,
    delivery: &mut NewDelivery,
    headers: &HeaderMap,
    body: Body,
    sink: Sink,
) -> Result<Response, Refusal> {
    let repository = match state
        .store
        .repository_by_name(&delivery.repository_name)
        .await?
    {
        Some(repository) if repository.enabled => repository,
        _ => {
            let message = format!("no repository {} is configured", delivery.repository_name);
            return Err(Refusal::new(
                ApiError::not_found(message),
                "not checked: no such repository",
            ));
        }
    };
    let forge = forge_for(repository.provider);
    delivery.repository_id = Some(repository.id);
    delivery.provider = repository.provider.to_string();
    delivery.event = forge.event_name(headers).unwrap_or_default();
    delivery.forge_delivery_id = forge.delivery_id(headers);

    // Forges send a body in well under a second; one that trickles in would hold a request
    // (and its memory) open, so reading it has a deadline.
    let body = tokio::time::timeout(
        BODY_DEADLINE,
        read_bounded(headers, body, forge.max_body_bytes()),
    )
    .await
    .map_err(|_| {
        Refusal::new(
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive within 30 seconds",
            ),
            "not checked: the body did not arrive in time",
        )
    })?
    .map_err(|error| Refusal::new(error, "not checked: body too large or unreadable"))?;
    check_provider(repository.provider, headers).map_err(|error| {
        Refusal::new(
            ApiError::new(StatusCode::BAD_REQUEST, "wrong_provider", error.to_string()),
            error.verification_result(),
        )
    })?;
    // A configuration-managed repository's secret lives in the configuration; an
    // API-managed one's in the database, read only here.
    let secret = match repository.managed_by {
        ManagedBy::Config => state
            .webhook_secrets
            .get(&delivery.repository_name)
            .cloned(),
        ManagedBy::Api => state
            .store
            .stored_credentials(&delivery.repository_name)
            .await?
            .and_then(|credentials| credentials.webhook_secret),
    };
    let secret = secret.as_ref().ok_or_else(|| {
        Refusal::new(
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this repository has no webhook secret configured",
            ),
            "not checked: no secret configured",
        )
    })?;
    let policy = VerifyPolicy {
        allow_unsigned: repository.allow_unsigned,
        allow_legacy_sha1: repository.allow_legacy_sha1,
    };
    let verified = forge
        .verify(secret, policy, headers, &body)
        .map_err(|error| {
            Refusal::new(
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string()),
                error.verification_result(),
            )
        })?;
    delivery.verification = verified.describe();
    // Only now, verified, may the body be kept.
    delivery.body = Some(body.to_vec());

    let event = forge.parse(headers, &body).map_err(|error| {
        Refusal::new(
            ApiError::bad_request(format!("malformed payload: {error}")),
            verified.describe(),
        )
    })?;
    let event = match (&repository.forge_repository, &event) {
        (Some(expected), WebhookEvent::Push(_)) => {
            match payload_repository(repository.provider, headers, &body) {
                Some(named) if named.eq_ignore_ascii_case(expected) => event,
                Some(named) => WebhookEvent::Ignored(format!(
                    "the push is for repository {named}, but this repository is {expected} (forge_repository)"
                )),
                None => WebhookEvent::Ignored(format!(
                    "the payload names no repository, and this one only accepts pushes for {expected} (forge_repository)"
                )),
            }
        }
        _ => event,
    };
    delivery.delivery_key = Some(
        forge
            .delivery_id(headers)
            .unwrap_or_else(|| body_fingerprint(&body)),
    );
    let (status, response_json) = match sink {
        Sink::Store => record_planned(state, delivery, &repository, &event, "push").await?,
        Sink::Discard => {
            let plan = plan_event(&repository, delivery.id, &event, "push");
            let placements: Vec<BuildPlacement> = plan
                .builds
                .iter()
                .map(|build| BuildPlacement {
                    id: build.id,
                    created: true,
                })
                .collect();
            (plan.status, plan.answer(&placements).response_json)
        }
    };
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        response_json,
    )
        .into_response())
}

/// Plans `event` for `repository`, stores the delivery with its builds, and returns the
/// answer (the stored one, for a duplicate). Shared by live deliveries and redeliveries.
pub(crate) async fn record_planned(
    state: &AppState,
    delivery: &NewDelivery,
    repository: &RepositoryRecord,
    event: &WebhookEvent,
    trigger: &str,
) -> Result<(StatusCode, String), ApiError> {
    let plan = plan_event(repository, delivery.id, event, trigger);
    // Counted for /metrics in the delivery's own transaction; a redelivery is no new webhook
    // request, so it is not counted.
    let tally = (trigger == "push").then(|| DeliveryTally {
        provider: delivery.provider.clone(),
        ignored: plan.ignored.is_some(),
    });
    let builds = plan.builds.clone();
    let outcome = state
        .store
        .record_delivery(
            delivery,
            &builds,
            move |placements| plan.answer(placements),
            tally,
        )
        .await?;
    Ok(match outcome {
        RecordOutcome::Recorded(answer) => {
            info!(
                repository = %repository.name,
                delivery = %delivery.id,
                forge_delivery = delivery.forge_delivery_id.as_deref().unwrap_or(""),
                outcome = %answer.outcome,
                "webhook accepted"
            );
            (
                StatusCode::from_u16(answer.status_code).unwrap_or(StatusCode::ACCEPTED),
                answer.response_json,
            )
        }
        RecordOutcome::Duplicate {
            status_code,
            response_json,
        } => {
            info!(repository = %repository.name, "duplicate delivery; answering as before");
            (
                StatusCode::from_u16(status_code).unwrap_or(StatusCode::ACCEPTED),
                response_json,
            )
        }
    })
}

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
    // The declared length is the sender's word; reserve only a little up front.
    let mut kept = Vec::with_capacity(declared.map_or(0, |length| length.min(64 * 1024) as usize));
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

/// What a verified event asks for, before it is stored: the builds to insert, and how to
/// answer once their final ids are known.
struct EventPlan {
    delivery_id: Uuid,
    status: StatusCode,
    /// For ping and ignored events: the reason.
    ignored: Option<String>,
    summary: String,
    decisions: Vec<RuleDecision>,
    builds: Vec<NewBuild>,
}

fn plan_event(
    repository: &RepositoryRecord,
    delivery_id: Uuid,
    event: &WebhookEvent,
    trigger: &str,
) -> EventPlan {
    let (status, ignored, summary, decisions, builds) = match event {
        WebhookEvent::Ping => (
            StatusCode::OK,
            None,
            "ping answered".to_owned(),
            Vec::new(),
            Vec::new(),
        ),
        WebhookEvent::Ignored(reason) => (
            StatusCode::ACCEPTED,
            Some(reason.clone()),
            reason.clone(),
            Vec::new(),
            Vec::new(),
        ),
        WebhookEvent::Push(events) => {
            let plans: Vec<PushPlan> = events
                .iter()
                .map(|event| plan_builds(&repository.rules, event, PlanTrigger::Push))
                .collect();
            let builds: Vec<NewBuild> = plans
                .iter()
                .flat_map(PushPlan::builds)
                .map(|plan| NewBuild {
                    id: Uuid::now_v7(),
                    image: repository.image.to_string(),
                    plan: plan.clone(),
                    trigger: trigger.to_owned(),
                    // A push makes older unfinished builds of its rule and ref obsolete; a
                    // redelivery replays an old push and must not cancel newer work.
                    supersedes: match (trigger, repository.supersede_running) {
                        ("push", true) => Supersede::QueuedAndRunning,
                        ("push", false) => Supersede::Queued,
                        _ => Supersede::Nothing,
                    },
                })
                .collect();
            let summary = plans
                .iter()
                .map(|p| p.summary.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            let ignored = builds.is_empty().then(|| summary.clone());
            let decisions = plans.into_iter().flat_map(|p| p.decisions).collect();
            (StatusCode::ACCEPTED, ignored, summary, decisions, builds)
        }
    };
    EventPlan {
        delivery_id,
        status,
        ignored,
        summary,
        decisions,
        builds,
    }
}

impl EventPlan {
    /// The answer to the forge, and the log's record of every rule, with the builds' final
    /// ids: a build that already existed for the same rule, ref and commit is named as such.
    fn answer(&self, placements: &[BuildPlacement]) -> DeliveryAnswer {
        let listed: Vec<Value> = self
            .builds
            .iter()
            .zip(placements)
            .map(|(build, placement)| {
                let mut entry = json!({
                    "id": placement.id,
                    "tags": build.plan.tags,
                    "ref": build.plan.git_ref.full(),
                    "commit": build.plan.commit.as_str(),
                });
                if !placement.created {
                    entry["existing"] = json!(true);
                }
                entry
            })
            .collect();
        let mut response = json!({"delivery": self.delivery_id, "builds": listed});
        if let Some(reason) = &self.ignored {
            response["ignored"] = json!(reason);
        }
        if self.status == StatusCode::OK && self.builds.is_empty() && self.ignored.is_none() {
            response = json!({"delivery": self.delivery_id, "pong": true});
        }

        let mut build_slots = placements.iter();
        let decisions: Vec<Value> = self
            .decisions
            .iter()
            .map(|decision| {
                let mut value = serde_json::to_value(decision).unwrap_or(Value::Null);
                if matches!(decision, RuleDecision::Build { .. })
                    && let Some(placement) = build_slots.next()
                {
                    value["build_id"] = json!(placement.id);
                    value["created"] = json!(placement.created);
                }
                value
            })
            .collect();
        let existing = placements.iter().filter(|p| !p.created).count();
        let outcome = if existing > 0 {
            format!(
                "{}; {existing} build(s) already existed for this push and were not made again",
                self.summary
            )
        } else {
            self.summary.clone()
        };
        DeliveryAnswer {
            status_code: self.status.as_u16(),
            response_json: response.to_string(),
            outcome,
            decisions_json: Value::Array(decisions).to_string(),
        }
    }
}
