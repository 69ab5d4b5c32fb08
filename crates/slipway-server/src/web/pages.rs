//! The dashboard's pages: server-rendered HTML that works without JavaScript (only the live
//! log uses it), built from the same store queries and role checks as the API.
//!
//! Every page and form answers with a strict Content-Security-Policy; forms that change
//! something carry the session's CSRF token and are checked before anything happens.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::Value;
use slipway_core::{BuildStatus, Provider, RefKind, Role};
use slipway_store::{
    BuildRecord, HookRecord, ManagedBy, NotificationAttempt, NotificationKind, NotificationRecord,
    RepositoryRecord,
};
use uuid::Uuid;

use crate::api::{BuildListQuery, authorized_build, list_builds_for, rfc3339, timeline};
use crate::auth::Caller;
use crate::triggers::{Wanted, build_wanted};
use crate::web::logtail::{self, RENDERED_LOG_BYTES};
use crate::web::{assets, badge, chart};
use crate::{ApiError, AppState};

/// Deliveries shown on an outgoing webhook's page, newest first.
const HOOK_HISTORY: i64 = 50;

/// An error on a page: 401 sends the browser to the sign-in page, anything else is shown.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<slipway_store::StoreError> for PageError {
    fn from(error: slipway_store::StoreError) -> Self {
        Self(ApiError::from(error))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.0.status == StatusCode::UNAUTHORIZED {
            return (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
        }
        let title = self.0.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            div.page-header { h1 { (title) } }
            div.notice.notice-error role="alert" { (self.0.message) }
            p { a href="/" { "Back to the overview" } }
        };
        page_response(self.0.status, layout("", title, &Caller::Anonymous, body))
    }
}

/// A `next` target after signing in: a path on this site only, never another origin.
pub fn safe_next(next: &str) -> Option<&str> {
    // Browsers drop tabs and line breaks from URLs, so "/\t/evil.example" would become
    // "//evil.example": any control character or space makes the target unsafe.
    let plain = next.bytes().all(|b| b > 0x20 && b != 0x7f);
    (plain && next.starts_with('/') && !next.starts_with("//") && !next.contains('\\'))
        .then_some(next)
}

/// The HTML answer with the headers every page carries.
pub fn page_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(headers);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn security_headers(headers: &mut HeaderMap) {
    // Scripts and styles only from this origin, no inline script, no framing: an injected
    // string can neither run nor restyle the page into a phishing form.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// The frame of every page: header with navigation and the signed-in user, then `body`.
pub fn layout(public_url: &str, title: &str, caller: &Caller, body: Markup) -> Markup {
    let css = assets::href("slipway.css").unwrap_or_default();
    let csrf = caller
        .principal()
        .and_then(|p| p.csrf_token.clone())
        .unwrap_or_default();
    let _ = public_url;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Slipway" }
                link rel="stylesheet" href=(css);
            }
            body {
                a.skip-link href="#main" { "Skip to content" }
                header.site-header {
                    div.inner {
                        a.brand href="/" { "Slipway" }
                        nav.site-nav aria-label="Main" {
                            ul {
                                li { a href="/" { "Builds" } }
                                @if let Some(name) = caller.user_name() {
                                    li { span.muted { "Signed in as " strong { (name) } } }
                                    li {
                                        form.inline method="post" action="/logout" {
                                            input type="hidden" name="csrf_token" value=(csrf);
                                            button.button.button-secondary type="submit" { "Sign out" }
                                        }
                                    }
                                } @else {
                                    li { a href="/login" { "Sign in" } }
                                }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// A hidden CSRF field for forms that change something.
fn csrf_field(caller: &Caller) -> Markup {
    let token = caller
        .principal()
        .and_then(|p| p.csrf_token.clone())
        .unwrap_or_default();
    html! { input type="hidden" name="csrf_token" value=(token); }
}

fn status_pill(status: &str) -> Markup {
    html! { span class={"status status-" (status)} { (status) } }
}

/// A time as people read it, with the machine-readable form alongside.
fn when(millis: Option<i64>) -> Markup {
    match rfc3339(millis) {
        None => html! { span.muted { "—" } },
        Some(text) => {
            let shown = text.get(..19).unwrap_or(&text).replace('T', " ");
            html! { time datetime=(text) { (shown) " UTC" } }
        }
    }
}

/// "1 h 2 min", "3 min 4 s", "5 s", "120 ms".
pub fn human_duration(millis: i64) -> String {
    let millis = millis.max(0);
    let secs = millis / 1000;
    match secs {
        0 => format!("{millis} ms"),
        1..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

fn build_duration(build: &BuildRecord) -> Option<i64> {
    Some(build.finished_at.unwrap_or_else(slipway_store::now_millis) - build.started_at?)
}

/// The forge's page of a commit, derived from the configured clone URL (never from a payload).
pub fn commit_url(repository: &RepositoryRecord, commit: &str) -> Option<String> {
    let url = repository.git_url.as_str();
    let (scheme, rest) = url.split_once("://")?;
    let rest = match scheme {
        "https" | "http" => rest,
        "ssh" => rest,
        _ => return None,
    };
    // Drop credentials and an SSH port; keep host and path.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let (host, path) = rest.split_once('/')?;
    let host = if scheme == "ssh" {
        host.split(':').next()?
    } else {
        host
    };
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let web_scheme = if scheme == "http" { "http" } else { "https" };
    let base = format!("{web_scheme}://{host}/{path}");
    if !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match repository.provider {
        Provider::Github | Provider::Gitea => Some(format!("{base}/commit/{commit}")),
        Provider::Gitlab => Some(format!("{base}/-/commit/{commit}")),
        Provider::Bitbucket => Some(format!("{base}/commits/{commit}")),
        // Data Center's clone URLs (/scm/PROJ/repo.git) do not map onto its web pages.
        Provider::BitbucketServer => None,
    }
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

fn describe_trigger(trigger: &str) -> &str {
    match trigger {
        "push" => "push",
        "redelivery" => "redelivery",
        "trigger" => "trigger URL",
        "retry" => "retry",
        "manual" => "build now",
        "reconciler" => "reconciler",
        other => other,
    }
}

fn build_rows(
    builds: &[BuildRecord],
    repositories: &HashMap<String, RepositoryRecord>,
    show_repository: bool,
) -> Markup {
    html! {
        @if builds.is_empty() {
            p.empty { "No builds yet." }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Builds" {
                table {
                    thead {
                        tr {
                            th scope="col" { "Status" }
                            @if show_repository { th scope="col" { "Repository" } }
                            th scope="col" { "Ref" }
                            th scope="col" { "Commit" }
                            th scope="col" { "Tags" }
                            th scope="col" { "Queued" }
                            th scope="col" class="num" { "Duration" }
                            th scope="col" { "Trigger" }
                        }
                    }
                    tbody {
                        @for build in builds {
                            @let name = build.repository.to_string();
                            tr {
                                td { a href={"/builds/" (build.id)} aria-label={"Build " (build.id) ": " (build.status.as_str())} { (status_pill(build.status.as_str())) } }
                                @if show_repository { td { a href={"/repos/" (name)} { (name) } } }
                                td.mono { (build.git_ref) }
                                td.mono {
                                    @match repositories.get(&name).and_then(|r| commit_url(r, &build.commit)) {
                                        Some(url) => a href=(url) rel="noopener noreferrer" { (short(&build.commit)) },
                                        None => (short(&build.commit)),
                                    }
                                }
                                td.mono { (build.tags.join(", ")) }
                                td { (when(Some(build.queued_at))) }
                                td.num { (build_duration(build).map(human_duration).unwrap_or_default()) }
                                td { (describe_trigger(&build.trigger)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn repositories_by_name(
    state: &AppState,
) -> Result<HashMap<String, RepositoryRecord>, PageError> {
    Ok(state
        .store
        .repositories()
        .await?
        .into_iter()
        .map(|r| (r.name.to_string(), r))
        .collect())
}

/// `GET /`: recent builds across the repositories the visitor may read.
pub async fn overview(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<BuildListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let repositories = repositories_by_name(&state).await?;
    let readable: Vec<&RepositoryRecord> = repositories
        .values()
        .filter(|r| caller.may(r, Role::Read))
        .collect();
    if caller.principal().is_none() && readable.is_empty() {
        return Err(PageError(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in",
        )));
    }
    let status_filter = query.status.clone();
    let cursor_given = query.cursor.is_some();
    // The next page keeps every filter of this one.
    let kept_filters: String = [
        ("repository", query.repository.as_deref()),
        ("status", query.status.as_deref()),
        ("ref", query.git_ref.as_deref()),
        ("since", query.since.as_deref()),
    ]
    .iter()
    .filter_map(|(key, value)| {
        value.map(|value| {
            format!(
                "&{key}={}",
                form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
            )
        })
    })
    .collect();
    let (builds, next) = list_builds_for(
        &state,
        &caller,
        BuildListQuery {
            limit: Some(50),
            ..query
        },
    )
    .await?;
    let mut names: Vec<String> = readable.iter().map(|r| r.name.to_string()).collect();
    names.sort_unstable();
    let body = html! {
        div.page-header {
            h1 { "Builds" }
            p.muted { "The newest first, across " (readable.len()) " repositor" (if readable.len() == 1 { "y" } else { "ies" }) "." }
        }
        form.panel method="get" action="/" aria-label="Filter builds" {
            div.field {
                label for="filter-status" { "Status" }
                select #filter-status name="status" {
                    option value="" { "any" }
                    @for status in BuildStatus::ALL {
                        option value=(status.as_str()) selected[status_filter.as_deref() == Some(status.as_str())] { (status.as_str()) }
                    }
                }
            }
            div.form-actions { button.button.button-secondary type="submit" { "Filter" } }
        }
        (build_rows(&builds, &repositories, true))
        nav.pagination aria-label="Pages" {
            @if cursor_given { a href="/" { "Newest" } " " }
            @if let Some(next) = next {
                a href={"/?cursor=" (next) (kept_filters)} rel="next" { "Older builds" }
            }
        }
        section.panel aria-labelledby="repositories-heading" {
            h2 #repositories-heading { "Repositories" }
            ul {
                @for name in &names {
                    li { a href={"/repos/" (name)} { (name) } }
                }
            }
        }
    };
    Ok(page_response(
        StatusCode::OK,
        layout(&state.public_url, "Builds", &caller, body),
    ))
}

fn webhook_instructions(repository: &RepositoryRecord, public_url: &str) -> Markup {
    let url = format!("{public_url}/hooks/{}", repository.name);
    let secret_place = match repository.managed_by {
        ManagedBy::Config => "the webhook secret from Slipway's configuration file",
        ManagedBy::Api => "the webhook secret you gave when adding the repository",
    };
    let steps = match repository.provider {
        Provider::Github => html! {
            ol {
                li { "Settings → Webhooks → Add webhook." }
                li { "Payload URL: " code { (url) } }
                li { "Content type: " code { "application/json" } "." }
                li { "Secret: " (secret_place) "." }
                li { "Events: “Just the push event”." }
            }
        },
        Provider::Gitlab => html! {
            ol {
                li { "Settings → Webhooks → Add new webhook." }
                li { "URL: " code { (url) } }
                li { "Secret token: " (secret_place) "." }
                li { "Trigger: push events and tag push events." }
            }
        },
        Provider::Bitbucket => html! {
            ol {
                li { "Repository settings → Webhooks → Add webhook." }
                li { "URL: " code { (url) } }
                li { "Secret: " (secret_place) "." }
                li { "Triggers: repository push." }
            }
        },
        Provider::BitbucketServer => html! {
            ol {
                li { "Repository settings → Webhooks → Create webhook." }
                li { "URL: " code { (url) } }
                li { "Secret: " (secret_place) "." }
                li { "Events: repository push." }
            }
        },
        Provider::Gitea => html! {
            ol {
                li { "Settings → Webhooks → Add webhook → Gitea (or Forgejo)." }
                li { "Target URL: " code { (url) } ", method POST, content type " code { "application/json" } "." }
                li { "Secret: " (secret_place) "." }
                li { "Trigger on: push events." }
            }
        },
    };
    html! {
        section.panel aria-labelledby="webhook-heading" {
            h2 #webhook-heading { "Webhook" }
            p { "Slipway verifies every delivery's signature with the secret before reading it." }
            (steps)
        }
    }
}

/// `GET /repos/{owner}/{name}`.
pub async fn repository(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Read).await?;
    let full = repository.name.to_string();
    let (builds, _) = list_builds_for(
        &state,
        &caller,
        BuildListQuery {
            repository: Some(full.clone()),
            limit: Some(30),
            ..BuildListQuery::default()
        },
    )
    .await?;
    let points: Vec<chart::ChartPoint> = builds
        .iter()
        .rev()
        .filter(|b| b.status.is_finished())
        .filter_map(|b| {
            let started = b.started_at?;
            let finished = b.finished_at?;
            Some(chart::ChartPoint {
                label: format!("{} {}", short(&b.commit), b.status),
                queue_seconds: (started - b.queued_at).max(0) as f64 / 1000.0,
                build_seconds: (finished - started).max(0) as f64 / 1000.0,
                failed: b.status == BuildStatus::Failed,
            })
        })
        .collect();
    let is_admin = caller.may(&repository, Role::Admin);
    let triggers = if is_admin {
        Some(state.store.triggers_for_repository(repository.id).await?)
    } else {
        None
    };
    let outgoing = if is_admin {
        Some(state.store.hooks_for_repository(repository.id).await?)
    } else {
        None
    };
    let mut by_name = HashMap::new();
    by_name.insert(full.clone(), repository.clone());
    let badge_url = format!("{}/badge/{full}.svg", state.public_url);
    let may_build = caller.may(&repository, Role::Write) && repository.enabled;
    let body = html! {
        div.page-header {
            h1 { (full) }
            p.muted {
                (repository.provider.as_str()) " · image " code { (repository.image.to_string()) }
                @if !repository.enabled { " · " strong { "disabled" } }
                " · " a href={"/repos/" (full) "/deliveries"} { "Webhook deliveries" }
            }
        }
        @if may_build {
            form.panel method="post" action={"/repos/" (full) "/build"} aria-labelledby="build-now-heading" {
                h2 #build-now-heading { "Build now" }
                (csrf_field(&caller))
                div.field {
                    label for="source-type" { "Kind" }
                    select #source-type name="source_type" {
                        option value="Branch" { "Branch" }
                        option value="Tag" { "Tag" }
                    }
                }
                div.field {
                    label for="source-name" { "Name" }
                    input #source-name type="text" name="source_name" required placeholder="main";
                }
                div.form-actions { button.button type="submit" { "Build" } }
            }
        }
        section.panel aria-labelledby="builds-heading" {
            h2 #builds-heading { "Recent builds" }
            (build_rows(&builds, &by_name, false))
            p { a href={"/?repository=" (full)} { "All builds of " (full) } }
        }
        section.panel aria-labelledby="chart-heading" {
            h2 #chart-heading { "Queue time and build time" }
            (PreEscaped(chart::duration_chart_svg(&points)))
        }
        section.panel aria-labelledby="rules-heading" {
            h2 #rules-heading { "Build rules" }
            @if repository.rules.is_empty() {
                p { "The default rule: the " code { "main" } " branch, tagged " code { "latest" } ", from " code { "Dockerfile" } " at the root." }
            } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Build rules" {
                    table {
                        thead { tr { th scope="col" { "Source" } th scope="col" { "Tags" } th scope="col" { "Dockerfile" } th scope="col" { "Context" } th scope="col" { "On push" } } }
                        tbody {
                            @for rule in &repository.rules {
                                tr {
                                    td.mono { (rule.source_type.as_str()) " " (rule.source.to_string()) }
                                    td.mono { (rule.tags.to_string()) }
                                    td.mono { (rule.dockerfile) }
                                    td.mono { (rule.context) }
                                    td { (if rule.autobuild { "builds" } else { "manual only" }) }
                                }
                            }
                        }
                    }
                }
            }
        }
        (webhook_instructions(&repository, &state.public_url))
        @if let Some(triggers) = &triggers {
            section.panel aria-labelledby="triggers-heading" {
                h2 #triggers-heading { "Trigger URLs" }
                p.muted { "A trigger URL is shown once, when it is made (" code { "slipway trigger create" } " or the API); here are their names and use." }
                @if triggers.is_empty() {
                    p.empty { "No triggers." }
                } @else {
                    ul {
                        @for trigger in triggers {
                            li {
                                strong { (trigger.name) }
                                @if trigger.revoked_at.is_some() { " — revoked" }
                                " — last used " (when(trigger.last_used_at))
                            }
                        }
                    }
                }
            }
        }
        (commit_status_panel(&repository))
        @if let Some(hooks) = &outgoing {
            (outgoing_hooks_panel(&full, hooks))
        }
        section.panel aria-labelledby="badge-heading" {
            h2 #badge-heading { "Status badge" }
            p.badge-preview { img src={"/badge/" (full) ".svg"} alt={"build status of " (full)}; }
            p { "Markdown:" }
            pre.mono { "![build](" (badge_url) ")" }
            p.muted { "Add " code { "?tag=latest" } " for one tag's builds. Badges of repositories that are not open to anonymous readers are only shown to signed-in users." }
        }
    };
    Ok(page_response(
        StatusCode::OK,
        layout(&state.public_url, &full, &caller, body),
    ))
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    before: Option<Uuid>,
}

/// `GET /repos/{owner}/{name}/deliveries`.
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Read).await?;
    let full = repository.name.to_string();
    const PAGE: i64 = 50;
    let deliveries = state
        .store
        .deliveries_for_repository(repository.id, PAGE, query.before)
        .await?;
    let next = (deliveries.len() as i64 == PAGE)
        .then(|| deliveries.last().map(|d| d.id))
        .flatten();
    let body = html! {
        div.page-header {
            h1 { "Deliveries of " a href={"/repos/" (full)} { (full) } }
            p.muted { "Every request to the webhook URL, verified or not, newest first." }
        }
        @if deliveries.is_empty() {
            p.empty { "No deliveries yet." }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Deliveries" {
                table {
                    thead { tr { th scope="col" { "Received" } th scope="col" { "Event" } th scope="col" class="num" { "Status" } th scope="col" { "Verification" } th scope="col" { "Outcome" } } }
                    tbody {
                        @for delivery in &deliveries {
                            tr {
                                td { a href={"/deliveries/" (delivery.id)} { (when(Some(delivery.received_at))) } }
                                td { (delivery.event) }
                                td.num { (delivery.status_code) }
                                td { (delivery.verification) }
                                td { (delivery.outcome) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            nav.pagination aria-label="Pages" { a href={"/repos/" (full) "/deliveries?before=" (next)} rel="next" { "Older deliveries" } }
        }
    };
    Ok(page_response(
        StatusCode::OK,
        layout(&state.public_url, "Deliveries", &caller, body),
    ))
}

/// `GET /deliveries/{id}`: verification, the per-rule "why", the builds it created.
pub async fn delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let delivery = crate::deliveries::find(&state, &caller, &id, Role::Read).await?;
    let builds = state.store.builds_for_delivery(delivery.id).await?;
    let decisions: Value = serde_json::from_str(&delivery.decisions_json).unwrap_or(Value::Null);
    let repositories = repositories_by_name(&state).await?;
    let may_redeliver = repositories
        .get(&delivery.repository_name)
        .is_some_and(|r| caller.may(r, Role::Write))
        && delivery.has_body;
    let body = html! {
        div.page-header {
            h1 { "Delivery" }
            p.muted.mono { (delivery.id) }
        }
        dl.meta {
            dt { "Repository" } dd { a href={"/repos/" (delivery.repository_name)} { (delivery.repository_name) } }
            dt { "Received" } dd { (when(Some(delivery.received_at))) " from " (delivery.source_address) }
            dt { "Event" } dd { (delivery.event) " (" (delivery.provider) ")" }
            dt { "Answer" } dd { (delivery.status_code) }
            dt { "Verification" } dd { (delivery.verification) }
            dt { "Outcome" } dd { (delivery.outcome) }
            @if let Some(original) = delivery.redelivery_of {
                dt { "Redelivery of" } dd { a href={"/deliveries/" (original)} { (original) } }
            }
        }
        section.panel aria-labelledby="decisions-heading" {
            h2 #decisions-heading { "Why each rule did or did not build" }
            @match decisions.as_array() {
                Some(items) if !items.is_empty() => {
                    ul {
                        @for item in items {
                            li { (decision_text(item)) }
                        }
                    }
                }
                _ => p.empty { "No rule was considered." },
            }
        }
        section.panel aria-labelledby="created-heading" {
            h2 #created-heading { "Builds it created" }
            (build_rows(&builds, &repositories, false))
        }
        @if may_redeliver {
            form method="post" action={"/deliveries/" (delivery.id) "/redeliver"} {
                (csrf_field(&caller))
                button.button type="submit" { "Redeliver" }
            }
        }
    };
    Ok(page_response(
        StatusCode::OK,
        layout(&state.public_url, "Delivery", &caller, body),
    ))
}

/// One stored rule decision in words.
fn decision_text(decision: &Value) -> String {
    let rule = decision
        .get("rule")
        .map(|r| match r {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let outcome = decision
        .get("decision")
        .or_else(|| decision.get("outcome"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let reason = decision
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let tags = decision
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut text = if rule.is_empty() {
        decision.to_string()
    } else {
        format!("{rule}: {outcome}")
    };
    if !tags.is_empty() {
        text.push_str(&format!(" ({tags})"));
    }
    if !reason.is_empty() {
        text.push_str(&format!(" — {reason}"));
    }
    text
}

/// `url` without credentials, query or fragment: the parts of a URL that may carry a secret.
fn display_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

/// `url`'s scheme and host only. Webhook URLs are often capabilities (a token in the path or
/// the query), so people who may not manage the hooks see no more than where they point.
fn url_origin(url: &str) -> String {
    let shown = display_url(url);
    match shown.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{host}")
        }
        None => String::new(),
    }
}

/// What a notification is: "Commit status success" or "Webhook build_succeeded → target". The
/// full target is shown (and linked to the hook's page) only to admins of the repository.
fn notification_title(
    notification: &NotificationRecord,
    hooks: &HashMap<Uuid, HookRecord>,
    admin_of: Option<&str>,
) -> Markup {
    match notification.kind {
        NotificationKind::Status => html! { "Commit status " code { (notification.event) } },
        NotificationKind::Webhook => {
            let hook = notification.hook_id.and_then(|id| hooks.get(&id));
            html! {
                "Webhook " code { (notification.event) } " → "
                @match (hook, admin_of) {
                    (Some(hook), Some(repository)) => a.mono href={"/repos/" (repository) "/webhooks/" (hook.id)} { (display_url(&hook.url)) },
                    (Some(hook), None) => span.mono { (url_origin(&hook.url)) },
                    (None, _) => span.muted { "a removed webhook" },
                }
            }
        }
    }
}

/// A notification's state as a pill, with the time of the next attempt while it is pending.
fn notification_state(notification: &NotificationRecord) -> Markup {
    html! {
        (status_pill(&notification.state))
        @if notification.state == "pending" {
            br;
            span.muted { "next attempt " (when(Some(notification.next_attempt_at))) }
        }
    }
}

/// An optional value, or a dash.
fn or_dash<T: std::fmt::Display>(value: Option<T>) -> Markup {
    match value {
        Some(value) => html! { (value) },
        None => html! { span.muted { "—" } },
    }
}

/// The build page's list of commit statuses and webhook requests, with how each went. Error
/// texts are shown to the repository's admins only (`admin_of`), as in the API's answer.
fn notifications_panel(
    notifications: &[(NotificationRecord, Vec<NotificationAttempt>)],
    hooks: &HashMap<Uuid, HookRecord>,
    admin_of: Option<&str>,
) -> Markup {
    html! {
        section.panel aria-labelledby="notifications-heading" {
            h2 #notifications-heading { "Notifications" }
            @if notifications.is_empty() {
                p.empty { "No commit statuses or webhooks for this build." }
            } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Notifications" {
                    table {
                        thead {
                            tr {
                                th scope="col" { "Notification" }
                                th scope="col" { "State" }
                                th scope="col" class="num" { "Attempts" }
                                th scope="col" { "Last attempt" }
                                th scope="col" class="num" { "Last HTTP status" }
                                th scope="col" { "Last error" }
                            }
                        }
                        tbody {
                            @for (notification, attempts) in notifications {
                                tr {
                                    td.wrap {
                                        (notification_title(notification, hooks, admin_of))
                                        @if notification.redelivery_of.is_some() { br; span.muted { "redelivery" } }
                                    }
                                    td { (notification_state(notification)) }
                                    td.num { (notification.attempts) }
                                    td {
                                        @match attempts.last() {
                                            Some(last) => { (when(Some(last.at))) " · " (human_duration(last.duration_ms)) },
                                            None => span.muted { "—" },
                                        }
                                    }
                                    td.num { (or_dash(notification.last_status_code)) }
                                    td.wrap { (or_dash(crate::webhooks::visible_error(notification, admin_of.is_some()))) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct BuildPageQuery {
    /// Stream the whole log from its first byte instead of rendering the tail.
    full: Option<u8>,
}

/// `GET /builds/{id}`: the timeline, tags and digest, and the log (live while it runs).
pub async fn build(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<BuildPageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (_, repository) = authorized_build(&state, &caller, &id, Role::Read).await?;
    let (build, attempts) = state
        .store
        .build_with_attempts(repository_build_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no build {id}")))?;
    let events = state.store.build_events(build.id).await?;
    let mut notifications = Vec::new();
    for notification in state.store.notifications_for_build(build.id).await? {
        let attempts = state.store.notification_attempts(notification.id).await?;
        notifications.push((notification, attempts));
    }
    let hooks: HashMap<Uuid, HookRecord> = if notifications.is_empty() {
        HashMap::new()
    } else {
        state
            .store
            .hooks_for_repository(repository.id)
            .await?
            .into_iter()
            .map(|hook| (hook.id, hook))
            .collect()
    };
    let now = slipway_store::now_millis();
    let steps = timeline(&build, &attempts, &events, now);
    let finished = build.status.is_finished();
    let size = state.store.log_size(build.id).await?;
    let full = query.full == Some(1);
    // The page renders the log's last part (from a line start); the script streams the rest.
    let (rendered, offset, skipped) = if full {
        (String::new(), 0, 0)
    } else {
        let start = logtail::read_from(size, RENDERED_LOG_BYTES);
        let bytes = read_log(&state, build.id, start, size).await?;
        let tail = logtail::render_tail(start, &bytes, RENDERED_LOG_BYTES, finished);
        (tail.html, tail.offset, tail.skipped)
    };
    let stream_url = format!("/api/builds/{}/log/stream", build.id);
    let script = assets::href("build-log.js").unwrap_or_default();
    let ended = finished && !full;
    let may_write = caller.may(&repository, Role::Write);
    let full_name = repository.name.to_string();
    let admin_of = caller
        .may(&repository, Role::Admin)
        .then_some(full_name.as_str());
    let commit_link = commit_url(&repository, &build.commit);
    let body = html! {
        div.page-header {
            h1 { "Build of " a href={"/repos/" (full_name)} { (full_name) } }
            p {
                span #build-status class={"status status-" (build.status.as_str())} aria-live="polite" { (build.status.as_str()) }
                " " span.mono { (build.git_ref) " @ " }
                @match &commit_link {
                    Some(url) => a.mono href=(url) rel="noopener noreferrer" { (short(&build.commit)) },
                    None => span.mono { (short(&build.commit)) },
                }
            }
        }
        @if let Some(error) = &build.error {
            div class={"notice " (if build.status == BuildStatus::Failed { "notice-error" } else { "" })} role="status" { (error) }
        }
        @if may_write {
            // Both forms are on the page and the script shows the one that fits when the
            // status changes live; without the script, the server's choice stands.
            div.form-actions {
                form method="post" action={"/builds/" (build.id) "/cancel"} data-show-when="running" hidden[finished] {
                    (csrf_field(&caller))
                    button.button.button-danger type="submit" { "Cancel" }
                }
                form method="post" action={"/builds/" (build.id) "/retry"} data-show-when="finished" hidden[!finished] {
                    (csrf_field(&caller))
                    button.button type="submit" { "Retry" }
                }
            }
        }
        dl.meta {
            dt { "Image" } dd.mono { (build.image) }
            dt { "Tags" } dd.mono { (build.tags.join(", ")) }
            @if let Some(digest) = &build.digest { dt { "Digest" } dd.mono { (digest) } }
            dt { "Dockerfile" } dd.mono { (build.dockerfile) " in " (build.context) }
            dt { "Triggered by" } dd { (describe_trigger(&build.trigger)) }
            @if let Some(original) = build.retry_of { dt { "Retry of" } dd { a href={"/builds/" (original)} { (original) } } }
            @if let Some(delivery) = build.delivery_id { dt { "Delivery" } dd { a href={"/deliveries/" (delivery)} { (delivery) } } }
        }
        section.panel aria-labelledby="timeline-heading" {
            h2 #timeline-heading { "Timeline" }
            ol.timeline {
                @for step in &steps {
                    li {
                        strong { (step["state"].as_str().unwrap_or_default()) }
                        " " (when(step["at"].as_str().and_then(parse_rfc3339)))
                        @if let Some(ms) = step["duration_ms"].as_i64() { " · " (human_duration(ms)) }
                        @if let Some(attempt) = step["attempt"].as_i64() { " · attempt " (attempt) }
                        @if let Some(detail) = step["detail"].as_str() { br; span.muted { (detail) } }
                    }
                }
            }
        }
        (notifications_panel(&notifications, &hooks, admin_of))
        section.panel aria-labelledby="log-heading" {
            h2 #log-heading { "Log" }
            div.log-toolbar {
                label.inline { input #follow-tail type="checkbox" checked[!finished]; " Follow the end" }
                " " a href={"/api/builds/" (build.id) "/log"} { "Plain text" }
                @if skipped > 0 {
                    " · " span.muted { "The first " (skipped) " bytes are not shown. " }
                    a href={"/builds/" (build.id) "?full=1"} { "Show the whole log" }
                }
            }
            pre #log.log data-build-id=(build.id) data-offset=(offset) data-stream-url=(stream_url) data-state=[ended.then_some("ended")] tabindex="0" aria-label="Build log" {
                (PreEscaped(rendered))
            }
            @if !ended {
                noscript { p.muted { "The log updates live with JavaScript; without it, reload the page." } }
            }
        }
        script src=(script) defer {}
    };
    Ok(page_response(
        StatusCode::OK,
        layout(&state.public_url, "Build", &caller, body),
    ))
}

fn repository_build_id(id: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(id).map_err(|_| PageError(ApiError::not_found(format!("no build {id:?}"))))
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The log's bytes in `[start, end)`, read piece by piece (at most [`RENDERED_LOG_BYTES`] and
/// one byte).
async fn read_log(state: &AppState, id: Uuid, start: i64, end: i64) -> Result<Vec<u8>, PageError> {
    let mut out = Vec::new();
    let mut from = start;
    while from < end {
        let pieces = state.store.log_from(id, from, 8).await?;
        if pieces.is_empty() {
            break;
        }
        for piece in pieces {
            let skip = usize::try_from(from - piece.offset).unwrap_or(0);
            let take = usize::try_from(end - piece.offset)
                .unwrap_or(0)
                .min(piece.data.len());
            if skip < take {
                out.extend_from_slice(&piece.data[skip..take]);
            }
            from = piece.offset + piece.data.len() as i64;
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf_token: Option<String>,
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// `POST /builds/{id}/cancel` (form).
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    caller.check_form_csrf(form.csrf_token.as_deref())?;
    let (build, _) = authorized_build(&state, &caller, &id, Role::Write).await?;
    let reason = format!("cancelled by {}", caller.user_name().unwrap_or("a user"));
    state.store.cancel_build(build.id, &reason).await?;
    Ok(redirect(&format!("/builds/{}", build.id)))
}

/// `POST /builds/{id}/retry` (form): opens the new build's page.
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    caller.check_form_csrf(form.csrf_token.as_deref())?;
    let (build, repository) = authorized_build(&state, &caller, &id, Role::Write).await?;
    crate::repos::require_enabled(&repository)?;
    match state.store.retry_build(build.id).await? {
        Some(new_id) => Ok(redirect(&format!("/builds/{new_id}"))),
        None => Err(PageError(ApiError::new(
            StatusCode::CONFLICT,
            "not_finished",
            "the build is still running; cancel it first or wait for it to finish",
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub struct BuildNowForm {
    csrf_token: Option<String>,
    source_type: String,
    source_name: String,
}

/// `POST /repos/{owner}/{name}/build` (form): builds a branch or tag now.
pub async fn build_now(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    Form(form): Form<BuildNowForm>,
) -> Result<Response, PageError> {
    caller.check_form_csrf(form.csrf_token.as_deref())?;
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Write).await?;
    let kind = match form.source_type.as_str() {
        "Tag" => RefKind::Tag,
        _ => RefKind::Branch,
    };
    let wanted = Wanted::Ref {
        kind,
        name: form.source_name.trim().to_owned(),
        commit: None,
    };
    let entries = build_wanted(&state, &repository, &wanted, "manual").await?;
    let first = entries
        .iter()
        .find_map(|entry| entry["build_id"].as_str().map(str::to_owned));
    match first {
        Some(id) => Ok(redirect(&format!("/builds/{id}"))),
        None => {
            let reason = entries
                .first()
                .and_then(|e| e["msg"].as_str())
                .unwrap_or("nothing to build");
            Err(PageError(ApiError::new(
                StatusCode::CONFLICT,
                "not_built",
                reason,
            )))
        }
    }
}

/// `POST /deliveries/{id}/redeliver` (form).
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    caller.check_form_csrf(form.csrf_token.as_deref())?;
    let delivery = crate::deliveries::find(&state, &caller, &id, Role::Write).await?;
    crate::deliveries::redeliver(State(state), caller, Path(id)).await?;
    Ok(redirect(&format!(
        "/repos/{}/deliveries",
        delivery.repository_name
    )))
}

/// Whether and where the repository's builds post commit statuses; the token only as set or not.
fn commit_status_panel(repository: &RepositoryRecord) -> Markup {
    let status = &repository.status;
    let provider = repository.provider.as_str();
    let default_api =
        slipway_notify::deliver::default_status_api_url(repository.provider, &repository.git_url);
    let forge_repository = status
        .repository
        .clone()
        .or_else(|| repository.forge_repository.clone())
        .unwrap_or_else(|| repository.name.to_string());
    // A configuration file that turns reporting on must name a token, or Slipway does not start;
    // whether one is named while reporting is off is not recorded anywhere the server can see.
    let token = match (repository.managed_by, status.report_status) {
        (ManagedBy::Config, true) => "set (in the configuration file)",
        (ManagedBy::Config, false) => "not used",
        (ManagedBy::Api, _) if repository.has_status_token => "set",
        (ManagedBy::Api, _) => "not set",
    };
    html! {
        section.panel aria-labelledby="statuses-heading" {
            h2 #statuses-heading { "Commit statuses" }
            dl.meta {
                dt { "Reported" }
                dd {
                    @if status.report_status {
                        "yes: every build posts its state to the commit on " (provider)
                    } @else {
                        "no"
                    }
                }
                dt { "API" }
                dd {
                    @match &status.api_url {
                        Some(url) => code { (display_url(url)) },
                        None => {
                            "default for " (provider)
                            @if let Some(url) = &default_api { " (" code { (url) } ")" }
                        },
                    }
                }
                dt { "Repository on the forge" } dd.mono { (forge_repository) }
                dt { "Token" } dd { (token) }
            }
        }
    }
}

/// The repository's outgoing webhooks (admins only), each linked to its delivery history.
fn outgoing_hooks_panel(repository: &str, hooks: &[HookRecord]) -> Markup {
    html! {
        section.panel aria-labelledby="outgoing-heading" {
            h2 #outgoing-heading { "Outgoing webhooks" }
            p.muted {
                "Signed requests sent when a build changes state or pushes an image. Add and remove them with "
                code { "POST /api/repositories/" (repository) "/webhooks" } " and "
                code { "DELETE /api/repositories/" (repository) "/webhooks/{id}" } "."
            }
            @if hooks.is_empty() {
                p.empty { "No outgoing webhooks." }
            } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Outgoing webhooks" {
                    table {
                        thead { tr { th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "Added" } th scope="col" { "History" } } }
                        tbody {
                            @for hook in hooks {
                                tr {
                                    td.wrap.mono { (display_url(&hook.url)) }
                                    td.wrap.mono { (hook.events.join(", ")) }
                                    td { (when(Some(hook.created_at))) }
                                    td { a href={"/repos/" (repository) "/webhooks/" (hook.id)} { "Deliveries" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /repos/{owner}/{name}/webhooks/{id}` (admins): an outgoing webhook's recent deliveries,
/// every attempt of each, and a button to send one again.
pub async fn outgoing_hook(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, id)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let repository = crate::repos::find(&state, &caller, &owner, &name, Role::Admin).await?;
    let full = repository.name.to_string();
    let not_found = || PageError(ApiError::not_found(format!("no webhook {id:?}")));
    let hook_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let hook = state
        .store
        .hook(hook_id)
        .await?
        .filter(|hook| hook.repository_id == repository.id)
        .ok_or_else(not_found)?;
    let mut deliveries = Vec::new();
    for notification in state.store.hook_deliveries(hook.id, HOOK_HISTORY).await? {
        let attempts = state.store.notification_attempts(notification.id).await?;
        deliveries.push((notification, attempts));
    }
    let body = html! {
        div.page-header {
            h1 { "Outgoing webhook of " a href={"/repos/" (full)} { (full) } }
            p.mono { (display_url(&hook.url)) }
        }
        dl.meta {
            dt { "Events" } dd.mono { (hook.events.join(", ")) }
            dt { "Added" } dd { (when(Some(hook.created_at))) }
            dt { "Secret" } dd { "set (never shown)" }
        }
        section.panel aria-labelledby="hook-deliveries-heading" {
            h2 #hook-deliveries-heading { "Recent deliveries" }
            p.muted { "The newest " (HOOK_HISTORY) ", with every attempt. Redeliver queues the same event again as a new delivery, signed with a new timestamp." }
            @if deliveries.is_empty() {
                p.empty { "No deliveries yet." }
            } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Recent deliveries" {
                    table {
                        thead {
                            tr {
                                th scope="col" { "Created" }
                                th scope="col" { "Event" }
                                th scope="col" { "Build" }
                                th scope="col" { "State" }
                                th scope="col" class="num" { "Attempts" }
                                th scope="col" class="num" { "Last HTTP status" }
                                th scope="col" { "History" }
                                th scope="col" { span.sr-only { "Actions" } }
                            }
                        }
                        tbody {
                            @for (notification, attempts) in &deliveries {
                                tr {
                                    td {
                                        (when(Some(notification.created_at)))
                                        @if notification.redelivery_of.is_some() { br; span.muted { "redelivery" } }
                                    }
                                    td.mono { (notification.event) }
                                    td.mono { a href={"/builds/" (notification.build_id)} { (notification.build_id.to_string().get(..8).unwrap_or_default()) } }
                                    td { (notification_state(notification)) }
                                    td.num { (notification.attempts) }
                                    td.num { (or_dash(notification.last_status_code)) }
                                    td.wrap { (attempt_history(attempts)) }
                                    td {
                                        form.inline method="post" action={"/notifications/" (notification.id) "/redeliver"} {
                                            (csrf_field(&caller))
                                            button.button.button-secondary type="submit" { "Redeliver" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page_response(
        StatusCode::OK,
        layout(&state.public_url, "Outgoing webhook", &caller, body),
    ))
}

/// Every attempt of a delivery: when, the answer (or the error), how long it took, and the
/// start of the answer's body behind a disclosure.
fn attempt_history(attempts: &[NotificationAttempt]) -> Markup {
    html! {
        @if attempts.is_empty() {
            span.muted { "Not attempted yet." }
        } @else {
            ol.attempts {
                @for attempt in attempts {
                    li {
                        "#" (attempt.attempt) " " (when(Some(attempt.at)))
                        " · " (or_dash(attempt.status_code))
                        " · " (human_duration(attempt.duration_ms))
                        @if let Some(error) = &attempt.error { " · " (error) }
                        @if let Some(excerpt) = attempt.response_excerpt.as_deref().filter(|e| !e.is_empty()) {
                            details {
                                summary { "Response" }
                                pre.excerpt { (excerpt) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /notifications/{id}/redeliver` (form, admins of the notification's repository): queues
/// the webhook delivery or commit status again and returns to where it is listed.
pub async fn redeliver_notification(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    caller.check_form_csrf(form.csrf_token.as_deref())?;
    let (notification, repository) =
        crate::webhooks::find_notification(&state, &caller, &id, Role::Admin).await?;
    let outcome = state.store.redeliver_notification(notification.id).await?;
    crate::webhooks::redelivery_result(outcome, notification.id)?;
    state.notifications_due.notify_one();
    let back = match notification.hook_id {
        Some(hook) => format!("/repos/{}/webhooks/{hook}", repository.name),
        None => format!("/builds/{}", notification.build_id),
    };
    Ok(redirect(&back))
}

#[derive(Debug, Deserialize)]
pub struct BadgeQuery {
    tag: Option<String>,
}

/// `GET /badge/{owner}/{name}.svg?tag=latest`: the newest finished build's result (of the
/// builds planned to push `tag`, when given; skipped builds do not count). Repositories closed to anonymous readers show their
/// badge only to signed-in users allowed to read them.
pub async fn badge(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, file)): Path<(String, String)>,
    Query(query): Query<BadgeQuery>,
) -> Result<Response, ApiError> {
    let Some(name) = file.strip_suffix(".svg") else {
        return Err(ApiError::not_found("badges end in .svg"));
    };
    let repository = crate::repos::find(&state, &caller, &owner, name, Role::Read)
        .await
        .map_err(|_| ApiError::not_found(format!("no repository {owner}/{name}")))?;
    // However far back that build is: the store reads the newest end of an index and stops at
    // the first finished build, with or without a tag.
    let latest = state
        .store
        .newest_finished_status(repository.id, query.tag.as_deref())
        .await?;
    let (message, colour) = badge::badge_for_status(latest.map(BuildStatus::as_str));
    let label = match &query.tag {
        Some(tag) => format!("build {tag}"),
        None => "build".to_owned(),
    };
    let svg = badge::badge_svg(&label, &message, colour);
    let mut response = (StatusCode::OK, svg).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml; charset=utf-8"),
    );
    // Forges proxy badges through their own caches; a short lifetime keeps them current.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0"),
    );
    security_headers(headers);
    Ok(response)
}

/// `GET /assets/{file}`: the stylesheet and script, cacheable for a year when the request
/// names the current version (pages always do).
pub async fn asset(
    Path(file): Path<String>,
    Query(version): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some((content_type, body)) = assets::asset(&file) else {
        return ApiError::not_found("no such asset").into_response();
    };
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let etag = assets::etag(&file).unwrap_or_default();
    let mut response = if assets::not_modified(&file, if_none_match) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        out.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, value);
    }
    let current = version.get("v").map(String::as_str) == assets::version(&file);
    let cache = if current {
        assets::IMMUTABLE_CACHE_CONTROL
    } else {
        "no-cache"
    };
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_targets_stay_on_this_site() {
        assert_eq!(safe_next("/builds/1"), Some("/builds/1"));
        assert_eq!(safe_next("//evil.example/"), None);
        assert_eq!(safe_next("https://evil.example/"), None);
        assert_eq!(safe_next("/\\evil.example"), None);
        assert_eq!(safe_next("/\t/evil.example"), None);
        assert_eq!(safe_next("/\n/evil.example"), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(120), "120 ms");
        assert_eq!(human_duration(5_000), "5 s");
        assert_eq!(human_duration(125_000), "2 min 5 s");
        assert_eq!(human_duration(3_720_000), "1 h 2 min");
    }
}
