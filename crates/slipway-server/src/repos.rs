//! `/api/repositories`: create, read, update, disable and delete repositories, and who may do
//! what with each. Secrets are write-only: answers say whether one is set, never what it is.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use slipway_core::units::{self, format_duration_secs, format_size_bytes, parse_duration_secs};
use slipway_core::{BuildRule, ImageName, Provider, RepositoryName, Role, Secret};
use slipway_store::{
    Limits, ManagedBy, RepositoryChangeError, RepositoryRecord, RepositorySpec, SecretChange,
    SecretChanges, StatusConfig,
};

use crate::api::{JsonBody, rfc3339};
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The repository `owner/name`, if the caller holds `needed` on it. A repository the caller
/// may not even read is answered exactly like a missing one: 401 for anonymous callers, 404 for
/// signed-in ones ([`Caller::require_found`]); a caller who may read it but lacks `needed` gets
/// 403.
pub async fn find(
    state: &AppState,
    caller: &Caller,
    owner: &str,
    name: &str,
    needed: Role,
) -> Result<RepositoryRecord, ApiError> {
    let full = format!("{owner}/{name}");
    let found = state.store.repository_by_name(&full).await?;
    let ((), repository) = caller.require_found(found.map(|r| ((), r)), needed, || {
        ApiError::not_found(format!("no repository {full}"))
    })?;
    Ok(repository)
}

/// Refuses to start builds of a disabled repository (409): disabling stops new work, whoever
/// asks for it.
pub fn require_enabled(repository: &RepositoryRecord) -> Result<(), ApiError> {
    if repository.enabled {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "disabled",
            format!("repository {} is disabled", repository.name),
        ))
    }
}

/// A repository as the API shows it.
pub fn repository_json(repository: &RepositoryRecord, caller: &Caller, public_url: &str) -> Value {
    let secret_state = |stored: bool| match (repository.managed_by, stored) {
        (ManagedBy::Config, _) => "in the configuration file",
        (ManagedBy::Api, true) => "set",
        (ManagedBy::Api, false) => "not set",
    };
    let limits = repository.limits;
    json!({
        "name": repository.name.to_string(),
        "provider": repository.provider.as_str(),
        "git_url": repository.git_url,
        "image": repository.image.to_string(),
        "rules": repository.rules,
        "enabled": repository.enabled,
        "managed_by": repository.managed_by.as_str(),
        "anonymous_read": repository.anonymous_read,
        "allow_unsigned_webhooks": repository.allow_unsigned,
        "allow_legacy_sha1": repository.allow_legacy_sha1,
        "supersede_running_builds": repository.supersede_running,
        "build_timeout": format_duration_secs(u64::try_from(repository.build_timeout_secs).unwrap_or(0)),
        "max_concurrent_builds": limits.max_concurrent_builds,
        "memory_limit": (limits.memory_bytes > 0).then(|| format_size_bytes(limits.memory_bytes.unsigned_abs())),
        "cpu_limit": (limits.cpu_millis > 0).then(|| limits.cpu_millis as f64 / 1000.0),
        "max_context_size": format_size_bytes(limits.max_context_bytes.unsigned_abs()),
        "forge_repository": repository.forge_repository,
        "git_username": repository.git_username,
        "secrets": {
            "webhook_secret": secret_state(repository.has_webhook_secret),
            "git_password": secret_state(repository.has_git_password),
            "status_token": secret_state(repository.has_status_token),
        },
        "report_status": repository.status.report_status,
        "status_api_url": repository.status.api_url,
        "status_repository": repository.status.repository,
        "webhook_url": format!("{public_url}/hooks/{}", repository.name),
        "your_role": caller.role_on(repository),
        "created_at": rfc3339(Some(repository.created_at)),
        "updated_at": rfc3339(Some(repository.updated_at)),
        "links": {
            "self": format!("{public_url}/api/repositories/{}", repository.name),
            "builds": format!("{public_url}/api/builds?repository={}", repository.name),
            "deliveries": format!("{public_url}/api/repositories/{}/deliveries", repository.name),
            "dashboard": format!("{public_url}/repos/{}", repository.name),
            "badge": format!("{public_url}/badge/{}.svg", repository.name),
        },
    })
}

/// A repository's settings as a client writes them: the configuration file's keys, plus the
/// write-only secrets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryInput {
    name: String,
    provider: String,
    git_url: String,
    image: String,
    #[serde(default)]
    rules: Vec<BuildRule>,
    #[serde(default)]
    anonymous_read: bool,
    #[serde(default)]
    allow_unsigned_webhooks: bool,
    #[serde(default)]
    allow_legacy_sha1: bool,
    #[serde(default)]
    supersede_running_builds: bool,
    #[serde(default = "default_build_timeout")]
    build_timeout: String,
    #[serde(default)]
    max_concurrent_builds: u32,
    memory_limit: Option<String>,
    cpu_limit: Option<f64>,
    #[serde(default = "default_max_context_size")]
    max_context_size: String,
    forge_repository: Option<String>,
    git_username: Option<String>,
    /// Write-only. `null` removes it (in an update); absent keeps it.
    #[serde(default, deserialize_with = "present")]
    webhook_secret: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    git_password: Option<Option<String>>,
    /// Post commit statuses to the forge (with `status_token`, write-only).
    #[serde(default)]
    report_status: bool,
    status_api_url: Option<String>,
    status_repository: Option<String>,
    #[serde(default, deserialize_with = "present")]
    status_token: Option<Option<String>>,
    /// Read-only keys of an answer, accepted (and ignored) so that a client can send back what
    /// it read with a few keys changed.
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, rename = "managed_by")]
    _managed_by: Option<Value>,
    #[serde(default, rename = "secrets")]
    _secrets: Option<Value>,
    #[serde(default, rename = "webhook_url")]
    _webhook_url: Option<Value>,
    #[serde(default, rename = "your_role")]
    _your_role: Option<Value>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<Value>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<Value>,
    #[serde(default, rename = "links")]
    _links: Option<Value>,
    /// Shown to admins by `GET`; grants change through `PUT …/grants/{user}`.
    #[serde(default, rename = "grants")]
    _grants: Option<Value>,
}

/// Tells a key given as `null` (Some(None)) from a missing key (None).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

fn default_build_timeout() -> String {
    "60m".to_owned()
}

fn default_max_context_size() -> String {
    "1g".to_owned()
}

/// The shortest webhook secret accepted: forges sign with it, so it must not be guessable.
const MIN_SECRET_LENGTH: usize = 16;

impl RepositoryInput {
    fn into_spec(
        self,
    ) -> Result<(RepositorySpec, Option<String>, SecretChanges, Option<bool>), String> {
        let name: RepositoryName = self.name.parse()?;
        let provider: Provider = self.provider.parse()?;
        let image: ImageName = self.image.parse()?;
        check_git_url(&self.git_url)?;
        for (number, rule) in self.rules.iter().enumerate() {
            rule.validate()
                .map_err(|e| format!("rules[{number}] ({}): {e}", rule.describe()))?;
        }
        slipway_core::rule::check_rule_names(&self.rules)?;
        let build_timeout_secs = parse_duration_secs(&self.build_timeout).ok_or_else(|| {
            format!(
                "build_timeout {:?} is not a duration like \"90s\", \"45m\" or \"2h\"",
                self.build_timeout
            )
        })?;
        let limits = Limits {
            max_concurrent_builds: i64::from(self.max_concurrent_builds),
            memory_bytes: match &self.memory_limit {
                None => 0,
                Some(text) => units::memory_limit_bytes(text)?,
            },
            cpu_millis: match self.cpu_limit {
                None => 0,
                Some(cpus) => units::cpu_limit_millis(cpus)?,
            },
            max_context_bytes: units::max_context_bytes(&self.max_context_size)?,
        };
        let secret = |key: &str, value: Option<Option<String>>| -> Result<SecretChange, String> {
            match value {
                None => Ok(SecretChange::Keep),
                Some(None) => Ok(SecretChange::Clear),
                Some(Some(text)) if key == "webhook_secret" && text.len() < MIN_SECRET_LENGTH => {
                    Err(format!(
                        "webhook_secret must be at least {MIN_SECRET_LENGTH} characters (a random one: openssl rand -hex 32)"
                    ))
                }
                Some(Some(text)) if text.is_empty() => {
                    Err(format!("{key} is empty; send null to remove it"))
                }
                Some(Some(text)) => Ok(SecretChange::Set(Secret::new(text))),
            }
        };
        let secrets = SecretChanges {
            webhook_secret: secret("webhook_secret", self.webhook_secret)?,
            git_password: secret("git_password", self.git_password)?,
            status_token: secret("status_token", self.status_token)?,
        };
        let spec = RepositorySpec {
            name,
            provider,
            git_url: self.git_url,
            image,
            rules: self.rules,
            allow_unsigned: self.allow_unsigned_webhooks,
            allow_legacy_sha1: self.allow_legacy_sha1,
            supersede_running: self.supersede_running_builds,
            forge_repository: self.forge_repository,
            build_timeout_secs: i64::try_from(build_timeout_secs).unwrap_or(i64::MAX),
            limits,
            anonymous_read: self.anonymous_read,
            status: StatusConfig {
                report_status: self.report_status,
                api_url: self
                    .status_api_url
                    .map(|url| url.trim_end_matches('/').to_owned()),
                repository: self.status_repository,
            },
        };
        Ok((spec, self.git_username, secrets, self.enabled))
    }
}

/// Clone URLs through the API may use https, http or ssh, and carry no credentials: those go
/// in `git_username` and the write-only `git_password`. `file://` is refused here: it would
/// let an API user read any repository on the workers' disks (the configuration file may
/// still use it). A URL that parsers could read differently is refused too (a backslash, a
/// control character, a percent-encoded host, user info in an http(s) URL, more than one
/// `@`), so that the host the stored password's check compares is the host git (libcurl or
/// libssh2) connects to; only ssh URLs may name a plain user (`ssh://git@host/…`).
fn check_git_url(url: &str) -> Result<(), String> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(format!(
            "git_url {url:?} must start with https://, http:// or ssh://"
        ));
    };
    if !matches!(scheme, "https" | "http" | "ssh") {
        return Err(format!(
            "git_url scheme {scheme:?} is not allowed through the API; use https, http or ssh"
        ));
    }
    let parsed = slipway_notify::ssrf::parse_unambiguous(url)
        .map_err(|e| format!("git_url is refused: {e}"))?;
    if parsed.password().is_some() {
        return Err(
            "git_url must not contain a password; send it as git_password (write-only)".to_owned(),
        );
    }
    let user = parsed.username();
    let plain_user = user
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !user.is_empty() && (scheme != "ssh" || !plain_user) {
        return Err(
            "git_url must not contain a user name (other than a plain ssh user); send it as git_username"
                .to_owned(),
        );
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("git_url {url:?} has no host"));
    }
    Ok(())
}

/// The origin (scheme, host, port) requests to `url` go to, as the url crate (which reqwest
/// uses) parses it, or `None` when it has none; see [`slipway_notify::ssrf::origin_of`].
fn url_origin(url: &str) -> Option<(String, String, u16)> {
    slipway_notify::ssrf::origin_of(url)
}

/// Refuses commit-status settings that would fail every status (400): a token is needed with
/// `report_status`, the API URL and repository path must be ones the forge takes.
fn check_status(spec: &RepositorySpec, has_token: bool) -> Result<(), ApiError> {
    let name = spec.name.to_string();
    slipway_notify::status::check_status_settings(&slipway_notify::status::StatusSettingsCheck {
        provider: spec.provider,
        git_url: &spec.git_url,
        name: &name,
        forge_repository: spec.forge_repository.as_deref(),
        report_status: spec.status.report_status,
        api_url: spec.status.api_url.as_deref(),
        status_repository: spec.status.repository.as_deref(),
        has_token,
    })
    .map_err(ApiError::bad_request)
}

/// Refuses a status API on an address the operator does not allow (400), as a webhook target
/// is refused when added; the sender checks it again at every send, after resolving its name.
fn check_status_target(state: &AppState, spec: &RepositorySpec) -> Result<(), ApiError> {
    if !spec.status.report_status {
        return Ok(());
    }
    let api_url =
        spec.status.api_url.clone().or_else(|| {
            slipway_notify::deliver::default_status_api_url(spec.provider, &spec.git_url)
        });
    if let Some(api_url) = api_url {
        slipway_notify::ssrf::check_target_url(&api_url, &state.target_policy).map_err(
            |reason| ApiError::bad_request(format!("the commit-status API is refused: {reason}")),
        )?;
    }
    Ok(())
}

fn change_error(error: RepositoryChangeError) -> ApiError {
    match error {
        RepositoryChangeError::Exists(_) => {
            ApiError::new(StatusCode::CONFLICT, "exists", error.to_string())
        }
        RepositoryChangeError::NotFound(_) => ApiError::not_found(error.to_string()),
        RepositoryChangeError::ManagedByConfig(_) => {
            ApiError::new(StatusCode::CONFLICT, "managed_by_config", error.to_string())
        }
        RepositoryChangeError::Store(e) => ApiError::from(e),
    }
}

/// `GET /api/repositories`: the repositories the caller may read.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let repositories: Vec<Value> = state
        .store
        .repositories()
        .await?
        .iter()
        .filter(|r| caller.may(r, Role::Read))
        .map(|r| repository_json(r, &caller, &state.public_url))
        .collect();
    if repositories.is_empty() && caller.principal().is_none() {
        caller.require_user()?;
    }
    Ok(Json(json!({ "repositories": repositories })))
}

/// `POST /api/repositories`: a new repository managed through the API (global admins).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<RepositoryInput>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require_global(Role::Admin)?;
    let (spec, git_username, secrets, _) = body?.0.into_spec().map_err(ApiError::bad_request)?;
    if !matches!(secrets.webhook_secret, SecretChange::Set(_)) && !spec.allow_unsigned {
        return Err(ApiError::bad_request(
            "webhook_secret is required: no secret, no webhooks (or set allow_unsigned_webhooks, which is unsafe)",
        ));
    }
    check_status(&spec, matches!(secrets.status_token, SecretChange::Set(_)))?;
    check_status_target(&state, &spec)?;
    let repository = state
        .store
        .create_repository(&spec, git_username.as_deref(), &secrets)
        .await
        .map_err(change_error)?;
    tracing::info!(repository = %repository.name, by = caller.user_name().unwrap_or("?"), "repository created");
    Ok((
        StatusCode::CREATED,
        Json(repository_json(&repository, &caller, &state.public_url)),
    )
        .into_response())
}

/// `GET /api/repositories/{owner}/{name}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let repository = find(&state, &caller, &owner, &name, Role::Read).await?;
    let mut value = repository_json(&repository, &caller, &state.public_url);
    if caller.may(&repository, Role::Admin) {
        let grants = state.store.grants_for_repository(repository.id).await?;
        value["grants"] = grants
            .iter()
            .map(|(user, role)| json!({"user": user, "role": role}))
            .collect();
    }
    Ok(Json(value))
}

/// `PATCH /api/repositories/{owner}/{name}`: changes the given keys (admins). `enabled: false`
/// disables the repository: its webhooks and triggers are refused, its history is kept, and its
/// queued builds wait (the claim passes over them) until it is enabled again.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    body: Result<JsonBody<Map<String, Value>>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let repository = find(&state, &caller, &owner, &name, Role::Admin).await?;
    if repository.managed_by == ManagedBy::Config {
        return Err(change_error(RepositoryChangeError::ManagedByConfig(
            repository.name.to_string(),
        )));
    }
    let changes = body?.0;
    if let Some(new_name) = changes.get("name")
        && new_name.as_str() != Some(repository.name.to_string().as_str())
    {
        return Err(ApiError::bad_request(
            "a repository cannot be renamed; create a new one",
        ));
    }
    let mut merged = repository_json(&repository, &caller, &state.public_url);
    if let Value::Object(fields) = &mut merged {
        for (key, value) in changes {
            fields.insert(key, value);
        }
    }
    let input: RepositoryInput =
        serde_json::from_value(merged).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (spec, git_username, secrets, enabled) =
        input.into_spec().map_err(ApiError::bad_request)?;
    // A stored password goes only to the origin it was given for: moving the clone URL to
    // another scheme, host or port needs the password again (or null), or an admin could send
    // it anywhere (or in clear text, over http). Origins are compared as parsed, by the parser
    // the clients use, never by splitting strings.
    if repository.has_git_password
        && matches!(secrets.git_password, SecretChange::Keep)
        && url_origin(&spec.git_url) != url_origin(&repository.git_url)
    {
        return Err(ApiError::bad_request(
            "git_url moves to another scheme, host or port: send git_password again (or null to remove it); the stored one is only sent where it was given for",
        ));
    }
    // The same for the commit-status token and the API it is sent to (explicit, or the one
    // derived from the provider and the clone URL's host).
    let status_origin = |api_url: &Option<String>, provider, git_url: &str| {
        api_url
            .clone()
            .or_else(|| slipway_notify::deliver::default_status_api_url(provider, git_url))
            .and_then(|url| url_origin(&url))
    };
    if repository.has_status_token
        && matches!(secrets.status_token, SecretChange::Keep)
        && status_origin(&spec.status.api_url, spec.provider, &spec.git_url)
            != status_origin(
                &repository.status.api_url,
                repository.provider,
                &repository.git_url,
            )
    {
        return Err(ApiError::bad_request(
            "the commit-status API moves to another scheme, host or port: send status_token again (or null to remove it); the stored one is only sent where it was given for",
        ));
    }
    let keeps_token = match secrets.status_token {
        SecretChange::Set(_) => true,
        SecretChange::Keep => repository.has_status_token,
        SecretChange::Clear => false,
    };
    check_status(&spec, keeps_token)?;
    check_status_target(&state, &spec)?;
    let mut updated = state
        .store
        .update_repository(repository.id, &spec, git_username.as_deref(), &secrets)
        .await
        .map_err(change_error)?;
    if let Some(enabled) = enabled
        && enabled != updated.enabled
    {
        state
            .store
            .set_repository_enabled(repository.id, enabled)
            .await
            .map_err(change_error)?;
        updated.enabled = enabled;
    }
    tracing::info!(repository = %repository.name, by = caller.user_name().unwrap_or("?"), "repository updated");
    Ok(Json(repository_json(&updated, &caller, &state.public_url)))
}

/// `DELETE /api/repositories/{owner}/{name}`: the repository and all of its history (owners).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let repository = find(&state, &caller, &owner, &name, Role::Owner).await?;
    if state.store.running_builds(repository.id).await? > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "running",
            "the repository has running builds; cancel them and try again",
        ));
    }
    state
        .store
        .delete_repository(repository.id)
        .await
        .map_err(change_error)?;
    tracing::info!(repository = %repository.name, by = caller.user_name().unwrap_or("?"), "repository deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantInput {
    role: Option<Role>,
}

/// `PUT /api/repositories/{owner}/{name}/grants/{user}` with `{"role": "write"}` (or `null` to
/// remove): who may do what with the repository (admins; only owners give `owner`).
pub async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, user)): Path<(String, String, String)>,
    body: Result<JsonBody<GrantInput>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let repository = find(&state, &caller, &owner, &name, Role::Admin).await?;
    let role = body?.0.role;
    if role == Some(Role::Owner) {
        caller.require(&repository, Role::Owner)?;
    }
    let target = state
        .store
        .user_by_name(&user)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {user:?}")))?;
    // Taking the owner role away is for owners too, or an admin could demote the owners.
    let current = state.store.grants_for_user(target.id).await?;
    if current
        .iter()
        .any(|(id, role)| *id == repository.id && *role == Role::Owner)
    {
        caller.require(&repository, Role::Owner)?;
    }
    state
        .store
        .set_grant(repository.id, target.id, role)
        .await?;
    tracing::info!(repository = %repository.name, user = %user, role = ?role, by = caller.user_name().unwrap_or("?"), "grant changed");
    Ok(Json(
        json!({"repository": repository.name.to_string(), "user": user, "role": role}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_compared_as_parsed() {
        assert_eq!(
            url_origin("https://bot@Git.Example:8443/a/b.git"),
            Some(("https".to_owned(), "git.example".to_owned(), 8443))
        );
        assert_eq!(
            url_origin("https://git.example./a.git"),
            url_origin("https://GIT.example:443/b.git")
        );
        for other in [
            "https://evil.example/a.git",
            "http://git.example/a.git",
            "https://git.example:8443/a.git",
            "https://evil.example\\@git.example/a.git",
            "https://git.example@evil.example/a.git",
        ] {
            assert_ne!(
                url_origin("https://git.example/a.git"),
                url_origin(other),
                "{other}"
            );
        }
    }

    #[test]
    fn git_urls_carry_no_passwords_no_local_paths_and_nothing_ambiguous() {
        assert!(check_git_url("https://git.example/acme/web.git").is_ok());
        assert!(check_git_url("ssh://git@git.example/acme/web.git").is_ok());
        assert!(check_git_url("ssh://git.example:2222/acme/web.git").is_ok());
        for refused in [
            "https://bot:hunter2@git.example/acme/web.git",
            "https://bot@git.example/acme/web.git",
            "file:///srv/git/web.git",
            "/srv/git/web.git",
            "https://",
            "https://evil.example\\@git.example/acme/web.git",
            "https://git.example\\evil/acme/web.git",
            "https://git.exa\tmple/acme/web.git",
            "https://git%2eexample/acme/web.git",
            "ssh://a@b@git.example/acme/web.git",
            "ssh://git;evil@git.example/acme/web.git",
        ] {
            assert!(check_git_url(refused).is_err(), "{refused}");
        }
    }

    fn input(extra: Value) -> Result<RepositoryInput, serde_json::Error> {
        let mut value = json!({
            "name": "acme/web",
            "provider": "github",
            "git_url": "https://git.example/acme/web.git",
            "image": "127.0.0.1:5000/acme/web",
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut value, extra) {
            base.extend(extra);
        }
        serde_json::from_value(value)
    }

    #[test]
    fn secrets_distinguish_absent_null_and_set() {
        let (_, _, secrets, _) = input(json!({"webhook_secret": "0123456789abcdef0123"}))
            .expect("input")
            .into_spec()
            .expect("spec");
        assert!(matches!(secrets.webhook_secret, SecretChange::Set(_)));
        assert!(matches!(secrets.git_password, SecretChange::Keep));
        let (_, _, secrets, _) = input(json!({"git_password": null}))
            .expect("input")
            .into_spec()
            .expect("spec");
        assert!(matches!(secrets.git_password, SecretChange::Clear));
        let short = input(json!({"webhook_secret": "short"}))
            .expect("input")
            .into_spec();
        assert!(short.is_err());
    }

    #[test]
    fn unknown_keys_and_bad_limits_are_refused() {
        assert!(input(json!({"imagee": "x"})).is_err());
        let too_much = input(json!({"memory_limit": "4g"}))
            .expect("input")
            .into_spec();
        assert!(too_much.is_err());
    }
}
