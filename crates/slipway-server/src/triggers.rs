//! Build-trigger URLs, compatible with Docker Hub's: `POST /api/trigger/{token}` starts builds
//! from anywhere, with the ref's head resolved from the configured remote, never from the
//! request.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway_core::plan::{PlanTrigger, RuleDecision, plan_builds};
use slipway_core::{BuildRule, CommitId, GitRef, PushEvent, RefKind, SourcePattern};
use slipway_store::{
    NewBuild, Queued, RepositoryRecord, Supersede, TriggerRecord, TriggerRequestRecord, now_millis,
};
use uuid::Uuid;

use crate::api::rfc3339;
use crate::auth::Caller;
use crate::tokens::hash_token;
use crate::{ApiError, AppState};
use slipway_core::Role;

/// The largest trigger body read; Docker Hub's bodies are a few dozen bytes.
const MAX_BODY: usize = 64 * 1024;
/// How many requests of each trigger are kept for the API.
const KEPT_REQUESTS: i64 = 50;
/// Requests one trigger may make in a burst, and how many more a minute after that.
pub const TRIGGER_BURST: u32 = 10;
pub const TRIGGER_PER_MINUTE: u32 = 10;

/// What [`RefResolver::remote_refs`] answers: (full ref, object id) pairs, or why not.
pub type RemoteRefs<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<(String, String)>, String>> + Send + 'a>>;

/// Lists a repository's remote branches and tags (full ref, object id), with the credentials
/// from configuration. The binary implements it with git2; tests may use a fixed table.
pub trait RefResolver: Send + Sync + std::fmt::Debug {
    fn remote_refs<'a>(&'a self, repository: &'a str) -> RemoteRefs<'a>;
}

/// What a trigger body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// Every rule with a literal source.
    All,
    /// The rules that produce this tag.
    DockerTag(String),
    /// The rules matching this branch or tag, at its head or at `commit`.
    Ref {
        kind: RefKind,
        name: String,
        commit: Option<CommitId>,
    },
}

const EXPECTED: &str = "expected an empty body, {\"build\": true}, {\"docker_tag\": \"<tag>\"}, or {\"source_type\": \"Branch\"|\"Tag\", \"source_name\": \"<name>\"} with an optional \"commit\": \"<sha>\" (JSON, or the same fields form-encoded)";

fn bad_body(problem: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_trigger_body",
        format!("{}; {EXPECTED}", problem.into()),
    )
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Wanted, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let fields: serde_json::Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else if is_form {
        form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect()
    } else {
        match serde_json::from_slice(body) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err(bad_body("the body is JSON but not an object")),
            Err(e) => return Err(bad_body(format!("the body is not valid JSON ({e})"))),
        }
    };
    let text = |key: &str| -> Result<Option<String>, ApiError> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
            Some(_) => Err(bad_body(format!("\"{key}\" must be a non-empty string"))),
        }
    };
    if let Some(unknown) = fields.keys().find(|k| {
        ![
            "build",
            "docker_tag",
            "source_type",
            "source_name",
            "commit",
        ]
        .contains(&k.as_str())
    }) {
        return Err(bad_body(format!("unknown field \"{unknown}\"")));
    }
    match fields.get("build") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::String(s)) if s == "true" => {}
        Some(_) => return Err(bad_body("\"build\" may only be true")),
    }
    let (docker_tag, source_type, source_name, commit) = (
        text("docker_tag")?,
        text("source_type")?,
        text("source_name")?,
        text("commit")?,
    );
    match (docker_tag, source_type, source_name) {
        (None, None, None) if commit.is_some() => Err(bad_body(
            "\"commit\" needs \"source_type\" and \"source_name\"",
        )),
        (None, None, None) => Ok(Wanted::All),
        (Some(tag), None, None) if commit.is_none() => Ok(Wanted::DockerTag(tag)),
        (Some(_), _, _) => Err(bad_body(
            "\"docker_tag\" cannot be combined with other fields",
        )),
        (None, Some(kind), Some(name)) => {
            let kind = match kind.to_ascii_lowercase().as_str() {
                "branch" => RefKind::Branch,
                "tag" => RefKind::Tag,
                _ => {
                    return Err(bad_body(format!(
                        "\"source_type\" must be \"Branch\" or \"Tag\", not {kind:?}"
                    )));
                }
            };
            let commit = commit
                .map(|c| {
                    c.parse::<CommitId>()
                        .map_err(|e| bad_body(format!("\"commit\": {e}")))
                })
                .transpose()?;
            Ok(Wanted::Ref { kind, name, commit })
        }
        (None, _, _) => Err(bad_body("\"source_type\" and \"source_name\" go together")),
    }
}

fn source_type_name(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Branch => "Branch",
        RefKind::Tag => "Tag",
    }
}

/// One entry of the answer, in Docker Hub's shape.
fn entry(
    kind: RefKind,
    name: &str,
    tags: &[String],
    build_id: Option<Uuid>,
    msg: impl Into<String>,
) -> Value {
    json!({
        "source_type": source_type_name(kind),
        "source_name": name,
        "evaluated_tag_name": tags.join(","),
        "build_id": build_id,
        "msg": msg.into(),
    })
}

pub async fn trigger(
    State(state): State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let token_hash = hash_token(&token);
    let found = match state.store.trigger_by_token_hash(&token_hash).await {
        Ok(found) => found,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // An unknown and a revoked token get the same answer, and neither costs more than a lookup.
    let Some(trigger) = found else {
        return ApiError::not_found("no such trigger").into_response();
    };
    let (parts, body) = request.into_parts();
    let source_address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(String::new, |ConnectInfo(peer)| peer.to_string());
    // Limited stops reading past the limit, so a large body costs no memory.
    let body = match http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
    {
        Ok(bytes) if bytes.len() <= MAX_BODY => bytes,
        Ok(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "trigger bodies are at most 64 KiB",
            )
            .into_response();
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "trigger bodies are at most 64 KiB",
            )
            .into_response();
        }
        Err(e) => {
            return ApiError::bad_request(format!("the body could not be read: {e}"))
                .into_response();
        }
    };
    let (status, answer) = match state.trigger_limiter.take(&trigger.id.to_string()) {
        Err(retry_after) => {
            let error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("this trigger was used too often; try again in {retry_after} s"),
            );
            let mut response = error.into_response();
            if let Ok(value) = retry_after.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            log_request(&state, &trigger, &source_address, 429, &body, "[]").await;
            return response;
        }
        Ok(()) => match run(&state, &trigger, &parts.headers, &body).await {
            Ok(entries) => (StatusCode::ACCEPTED, Value::Array(entries)),
            Err(error) => {
                log_request(
                    &state,
                    &trigger,
                    &source_address,
                    error.status.as_u16(),
                    &body,
                    "[]",
                )
                .await;
                return error.into_response();
            }
        },
    };
    log_request(
        &state,
        &trigger,
        &source_address,
        status.as_u16(),
        &body,
        &answer.to_string(),
    )
    .await;
    (status, Json(answer)).into_response()
}

async fn log_request(
    state: &AppState,
    trigger: &TriggerRecord,
    source: &str,
    status: u16,
    body: &[u8],
    response: &str,
) {
    // Keep a readable, bounded excerpt of the body: enough to see what was asked.
    let excerpt: String = String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned();
    let record = TriggerRequestRecord {
        received_at: now_millis(),
        source_address: source.to_owned(),
        status_code: i64::from(status),
        body: excerpt,
        response_json: response.to_owned(),
    };
    if let Err(error) = state
        .store
        .record_trigger_request(trigger.id, &record, KEPT_REQUESTS)
        .await
    {
        tracing::warn!(%error, "could not keep a trigger request");
    }
}

/// Works out which rules to build at which commits, and queues them.
async fn run(
    state: &AppState,
    trigger: &TriggerRecord,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Value>, ApiError> {
    let wanted = parse_body(headers, body)?;
    let repository = state
        .store
        .repository_by_name(&trigger.repository.to_string())
        .await?
        .filter(|r| r.enabled)
        .ok_or_else(|| ApiError::not_found("no such trigger"))?;
    build_wanted(state, &repository, &wanted, "trigger").await
}

/// `POST /api/repositories/{owner}/{name}/builds`: "build this ref now", for users with the
/// write role. The body is a trigger's (`{"source_type": "Branch", "source_name": "main"}`,
/// optionally with `"commit"`, or `{"docker_tag": "latest"}`, or `{"build": true}`), and so is
/// the answer.
pub async fn build_now(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Write).await?;
    let wanted = parse_body(&headers, &body)?;
    let entries = build_wanted(&state, &repository, &wanted, "manual").await?;
    Ok((StatusCode::ACCEPTED, Json(Value::Array(entries))).into_response())
}

/// Plans and queues the builds a trigger or a user asked for; `label` says which.
pub(crate) async fn build_wanted(
    state: &AppState,
    repository: &RepositoryRecord,
    wanted: &Wanted,
    label: &str,
) -> Result<Vec<Value>, ApiError> {
    crate::repos::require_enabled(repository)?;
    let wanted = wanted.clone();
    let rules: Vec<BuildRule> = if repository.rules.is_empty() {
        vec![BuildRule::default_rule()]
    } else {
        repository.rules.clone()
    };

    // Which rule is considered for which ref; entries for rules that cannot be.
    let mut considered: Vec<(usize, GitRef, Option<CommitId>)> = Vec::new();
    let mut answer: Vec<(usize, Value)> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        match &wanted {
            Wanted::All | Wanted::DockerTag(_) => match &rule.source {
                SourcePattern::Exact(name) => {
                    considered.push((index, GitRef { kind: rule.source_type, name: name.clone() }, None));
                }
                SourcePattern::Regex(..) if wanted == Wanted::All => answer.push((
                    index,
                    entry(rule.source_type, &rule.source.to_string(), &[], None, "this rule's source is a regex: name a branch or tag (source_type, source_name) to build it"),
                )),
                SourcePattern::Regex(..) => {}
            },
            Wanted::Ref { kind, name, commit } => {
                // Through the same parser as pushed refs, so a name git would refuse (control
                // characters, "..") never reaches a log line or SOURCE_BRANCH.
                let full = match kind {
                    RefKind::Branch => format!("refs/heads/{name}"),
                    RefKind::Tag => format!("refs/tags/{name}"),
                };
                let git_ref = GitRef::parse(&full)
                    .ok_or_else(|| bad_body(format!("{name:?} is not a valid {} name", kind.as_str())))?;
                if rule.matches(&git_ref).is_some() {
                    considered.push((index, git_ref, commit.clone()));
                }
            }
        }
    }
    if considered.is_empty() && answer.is_empty() {
        let (kind, name) = match &wanted {
            Wanted::Ref { kind, name, .. } => (*kind, name.as_str()),
            Wanted::DockerTag(tag) => (RefKind::Branch, tag.as_str()),
            Wanted::All => (RefKind::Branch, ""),
        };
        let msg = match &wanted {
            Wanted::DockerTag(tag) => {
                format!("no rule with a literal source produces the tag {tag:?}")
            }
            _ => format!("no rule matches {} {name}", kind.as_str()),
        };
        return Ok(vec![entry(kind, name, &[], None, msg)]);
    }

    // Resolve heads from the remote, once, only if some ref has no commit given.
    let heads: HashMap<String, String> = if considered.iter().any(|(_, _, commit)| commit.is_none())
    {
        state
            .ref_resolver
            .remote_refs(&repository.name.to_string())
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "git_unreachable", e))?
            .into_iter()
            .collect()
    } else {
        HashMap::new()
    };

    let mut builds: Vec<(usize, NewBuild)> = Vec::new();
    for (index, git_ref, commit) in considered {
        let named_commit = commit.is_some();
        let commit = match commit {
            Some(commit) => commit,
            None => match heads
                .get(&git_ref.full())
                .and_then(|id| id.parse::<CommitId>().ok())
            {
                Some(commit) => commit,
                None => {
                    let msg = format!(
                        "{} {} does not exist in the repository",
                        git_ref.kind, git_ref.name
                    );
                    answer.push((index, entry(git_ref.kind, &git_ref.name, &[], None, msg)));
                    continue;
                }
            },
        };
        let event = PushEvent {
            git_ref: git_ref.clone(),
            before: None,
            after: Some(commit),
            head_message: None,
            head_timestamp: None,
            pusher: None,
            forced: false,
        };
        let plan = plan_builds(&rules, &event, PlanTrigger::Manual);
        match plan.decisions.get(index) {
            Some(RuleDecision::Build { plan, .. }) => {
                if let Wanted::DockerTag(tag) = &wanted
                    && !plan.tags.contains(tag)
                {
                    continue;
                }
                builds.push((
                    index,
                    NewBuild {
                        id: Uuid::now_v7(),
                        image: repository.image.to_string(),
                        plan: {
                            let mut plan = plan.clone();
                            // A commit named in the request is built only if it is on the ref.
                            plan.options.commit_on_ref = named_commit;
                            plan
                        },
                        trigger: label.to_owned(),
                        supersedes: Supersede::Nothing,
                    },
                ));
            }
            Some(RuleDecision::Skipped { reason, .. } | RuleDecision::Error { reason, .. }) => {
                answer.push((
                    index,
                    entry(git_ref.kind, &git_ref.name, &[], None, reason.clone()),
                ));
            }
            // Considered rules matched the ref, so there is no "no match" here.
            _ => {}
        }
    }
    if let Wanted::DockerTag(tag) = &wanted
        && builds.is_empty()
        && answer.is_empty()
    {
        return Ok(vec![entry(
            RefKind::Branch,
            tag,
            &[],
            None,
            format!("no rule with a literal source produces the tag {tag:?}"),
        )]);
    }

    let queued = queue(state, repository, &builds).await?;
    for ((index, build), result) in builds.iter().zip(queued) {
        let (build_id, msg) = match result {
            Queued::Created(id) => (Some(id), "build queued".to_owned()),
            Queued::AlreadyQueued(id) => {
                (None, format!("an identical build is already queued: {id}"))
            }
        };
        answer.push((
            *index,
            entry(
                build.plan.git_ref.kind,
                &build.plan.git_ref.name,
                &build.plan.tags,
                build_id,
                msg,
            ),
        ));
    }
    answer.sort_by_key(|(index, _)| *index);
    Ok(answer.into_iter().map(|(_, value)| value).collect())
}

async fn queue(
    state: &AppState,
    repository: &RepositoryRecord,
    builds: &[(usize, NewBuild)],
) -> Result<Vec<Queued>, ApiError> {
    let builds: Vec<NewBuild> = builds.iter().map(|(_, b)| b.clone()).collect();
    Ok(state.store.queue_builds(repository.id, &builds).await?)
}

/// `GET /api/repositories/{owner}/{name}/triggers`: names, times and recent requests; never
/// tokens.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Admin).await?;
    let full = repository.name.to_string();
    let mut triggers = Vec::new();
    for trigger in state.store.triggers_for_repository(repository.id).await? {
        let requests = state.store.trigger_requests(trigger.id).await?;
        triggers.push(json!({
            "name": trigger.name,
            "created_at": rfc3339(Some(trigger.created_at)),
            "revoked_at": rfc3339(trigger.revoked_at),
            "last_used_at": rfc3339(trigger.last_used_at),
            "requests": requests.iter().map(|r| json!({
                "received_at": rfc3339(Some(r.received_at)),
                "source_address": r.source_address,
                "status_code": r.status_code,
                "body": r.body,
                "response": serde_json::from_str::<Value>(&r.response_json).unwrap_or(Value::Null),
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(Json(json!({"repository": full, "triggers": triggers})))
}

/// A trigger name: 1 to 64 letters, digits, '-', '_' or '.', so it reads well in URLs and logs.
pub fn check_trigger_name(name: &str) -> Result<(), String> {
    crate::tokens::check_plain_name("trigger name", name)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTrigger {
    name: String,
}

/// `POST /api/repositories/{owner}/{name}/triggers`: a new trigger URL, shown only in this
/// answer (the database keeps a hash of its token).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    body: Result<crate::api::JsonBody<NewTrigger>, ApiError>,
) -> Result<Response, ApiError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Admin).await?;
    let wanted = body?.0.name;
    check_trigger_name(&wanted).map_err(ApiError::bad_request)?;
    let token = crate::tokens::new_token("slw_").map_err(ApiError::internal)?;
    let created = state
        .store
        .create_trigger(repository.id, &wanted, &hash_token(&token))
        .await?;
    if created.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!(
                "{} already has an active trigger {wanted:?}; regenerate it for a new URL",
                repository.name
            ),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": wanted,
            "url": format!("{}/api/trigger/{token}", state.public_url),
            "note": "the URL is shown only now; keep it like a password",
        })),
    )
        .into_response())
}

/// `POST /api/repositories/{owner}/{name}/triggers/{trigger}/regenerate`: a new URL for an
/// active trigger; the old one stops working at once.
pub async fn regenerate(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, trigger)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Admin).await?;
    check_trigger_name(&trigger).map_err(ApiError::bad_request)?;
    let token = crate::tokens::new_token("slw_").map_err(ApiError::internal)?;
    if !state
        .store
        .regenerate_trigger(repository.id, &trigger, &hash_token(&token))
        .await?
    {
        return Err(ApiError::not_found(format!(
            "{} has no active trigger {trigger:?}",
            repository.name
        )));
    }
    Ok(Json(json!({
        "name": trigger,
        "url": format!("{}/api/trigger/{token}", state.public_url),
        "note": "the URL is shown only now; the previous one no longer works",
    })))
}

/// `DELETE /api/repositories/{owner}/{name}/triggers/{trigger}`: revokes a trigger.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, trigger)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Admin).await?;
    check_trigger_name(&trigger).map_err(ApiError::bad_request)?;
    if !state.store.revoke_trigger(repository.id, &trigger).await? {
        return Err(ApiError::not_found(format!(
            "{} has no active trigger {trigger:?}",
            repository.name
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(content_type: &str, body: &str) -> Result<Wanted, String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().expect("header"));
        parse_body(&headers, body.as_bytes()).map_err(|e| e.message)
    }

    #[test]
    fn docker_hub_bodies() {
        assert_eq!(parse("application/json", ""), Ok(Wanted::All));
        assert_eq!(
            parse("application/json", "{\"build\": true}"),
            Ok(Wanted::All)
        );
        assert_eq!(
            parse("application/x-www-form-urlencoded", "build=true"),
            Ok(Wanted::All)
        );
        assert_eq!(
            parse("application/json", "{\"docker_tag\": \"latest\"}"),
            Ok(Wanted::DockerTag("latest".into()))
        );
        assert_eq!(
            parse(
                "application/json",
                "{\"source_type\": \"Branch\", \"source_name\": \"staging\"}"
            ),
            Ok(Wanted::Ref {
                kind: RefKind::Branch,
                name: "staging".into(),
                commit: None
            })
        );
        assert_eq!(
            parse(
                "application/x-www-form-urlencoded",
                "source_type=Tag&source_name=v1.1"
            ),
            Ok(Wanted::Ref {
                kind: RefKind::Tag,
                name: "v1.1".into(),
                commit: None
            })
        );
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            parse(
                "application/json",
                &format!(
                    "{{\"source_type\": \"Branch\", \"source_name\": \"main\", \"commit\": \"{commit}\"}}"
                )
            ),
            Ok(Wanted::Ref {
                kind: RefKind::Branch,
                name: "main".into(),
                commit: Some(commit.parse().expect("commit"))
            })
        );
    }

    #[test]
    fn bad_bodies_say_what_was_expected() {
        for (body, problem) in [
            ("{", "not valid JSON"),
            ("[1]", "not an object"),
            ("{\"source_type\": \"Branch\"}", "go together"),
            (
                "{\"source_type\": \"Pull\", \"source_name\": \"x\"}",
                "must be \"Branch\" or \"Tag\"",
            ),
            (
                "{\"docker_tag\": \"x\", \"source_type\": \"Tag\", \"source_name\": \"v1\"}",
                "cannot be combined",
            ),
            ("{\"commit\": \"abc\"}", "needs \"source_type\""),
            (
                "{\"source_type\": \"Branch\", \"source_name\": \"main\", \"commit\": \"abc\"}",
                "not a full commit id",
            ),
            ("{\"build\": false}", "may only be true"),
            ("{\"branch\": \"main\"}", "unknown field \"branch\""),
        ] {
            let error = parse("application/json", body).expect_err(body);
            assert!(error.contains(problem), "{body}: {error}");
            assert!(error.contains("expected an empty body"), "{body}: {error}");
        }
    }
}
