//! Commit statuses: the one request each forge's API expects to mark a commit pending, running,
//! succeeded, failed, errored or cancelled.
//!
//! | forge | endpoint | credential |
//! |---|---|---|
//! | GitHub | `POST {api}/repos/{owner}/{repo}/statuses/{sha}` | `Authorization: Bearer` |
//! | Bitbucket Cloud | `POST {api}/2.0/repositories/{workspace}/{slug}/commit/{sha}/statuses/build` | `Bearer`, or `Basic` for `user:app_password` |
//! | Bitbucket Data Center | `POST {api}/rest/api/latest/projects/{project}/repos/{slug}/commits/{sha}/builds` | `Bearer`, or `Basic` for `user:password` |
//! | GitLab | `POST {api}/api/v4/projects/{encoded path}/statuses/{sha}` | `PRIVATE-TOKEN` |
//! | Gitea/Forgejo | `POST {api}/api/v1/repos/{owner}/{repo}/statuses/{sha}` | `Authorization: token` |
//!
//! `{api}` is the configured base URL without a trailing `/` (for GitHub Enterprise, include its
//! `/api/v3`). Each forge has fewer states than Slipway; [`StatusState`] documents the mapping.

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use slipway_core::{BuildRule, BuildStatus, Provider, Secret};

pub use crate::HttpRequestSpec;
use crate::{USER_AGENT, encode_path_segment};

/// Where a build stands, as reported to a forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusState {
    /// Queued, not started. Every forge: pending / `INPROGRESS`.
    Pending,
    /// Building. GitHub and Gitea have no running state, so they get `pending` with a
    /// "building" description; GitLab gets `running`; Bitbucket `INPROGRESS`.
    Running,
    Success,
    /// The build failed because of the commit (a Dockerfile error, a missing file, refused
    /// credentials): the user's to fix.
    Failure,
    /// The build failed because of Slipway's infrastructure (the engine, the network, a
    /// registry, a lost worker) after every attempt, so the commit was not judged. GitLab and
    /// Bitbucket have no separate error state and get their failed state.
    Error,
    /// Cancelled (by a person, or by a newer push). GitHub and Gitea have no such state and get
    /// `error` with a "cancelled" description; Bitbucket Cloud gets `STOPPED`, Data Center
    /// `CANCELLED`, GitLab `canceled`.
    Cancelled,
}

impl StatusState {
    pub const ALL: [StatusState; 6] = [
        StatusState::Pending,
        StatusState::Running,
        StatusState::Success,
        StatusState::Failure,
        StatusState::Error,
        StatusState::Cancelled,
    ];

    /// The state a build in `status` reports. A skipped build reports success: it decided,
    /// deliberately, that there was nothing to build, and a commit must not stay pending (or
    /// look broken) because of that; its description says it was skipped.
    pub fn from_build(status: BuildStatus) -> StatusState {
        match status {
            BuildStatus::Queued => StatusState::Pending,
            BuildStatus::Running => StatusState::Running,
            BuildStatus::Succeeded | BuildStatus::Skipped => StatusState::Success,
            BuildStatus::Failed => StatusState::Failure,
            BuildStatus::Cancelled => StatusState::Cancelled,
        }
    }

    /// [`StatusState::from_build`], except that a build that failed for infrastructure reasons
    /// reports [`StatusState::Error`]: the commit was not judged, so it must not look broken.
    pub fn for_build(status: BuildStatus, infrastructure_failure: bool) -> StatusState {
        match status {
            BuildStatus::Failed if infrastructure_failure => StatusState::Error,
            other => StatusState::from_build(other),
        }
    }

    /// The description sent when the update carries none. GitHub and Gitea show it as the only
    /// hint that a `pending` status means "building" and an `error` one means "cancelled".
    pub fn default_description(self) -> &'static str {
        match self {
            StatusState::Pending => "queued",
            StatusState::Running => "building",
            StatusState::Success => "image built and pushed",
            StatusState::Failure => "build failed",
            StatusState::Error => "build error",
            StatusState::Cancelled => "cancelled",
        }
    }

    /// The `state` value `provider`'s API expects for this state.
    pub fn forge_state(self, provider: Provider) -> &'static str {
        match provider {
            Provider::Github | Provider::Gitea => match self {
                StatusState::Pending | StatusState::Running => "pending",
                StatusState::Success => "success",
                StatusState::Failure => "failure",
                StatusState::Error | StatusState::Cancelled => "error",
            },
            Provider::Bitbucket => match self {
                StatusState::Pending | StatusState::Running => "INPROGRESS",
                StatusState::Success => "SUCCESSFUL",
                StatusState::Failure | StatusState::Error => "FAILED",
                StatusState::Cancelled => "STOPPED",
            },
            // Data Center's builds endpoint has its own word for a stopped build, `CANCELLED`
            // (Cloud's is `STOPPED`).
            Provider::BitbucketServer => match self {
                StatusState::Pending | StatusState::Running => "INPROGRESS",
                StatusState::Success => "SUCCESSFUL",
                StatusState::Failure | StatusState::Error => "FAILED",
                StatusState::Cancelled => "CANCELLED",
            },
            Provider::Gitlab => match self {
                StatusState::Pending => "pending",
                StatusState::Running => "running",
                StatusState::Success => "success",
                StatusState::Failure | StatusState::Error => "failed",
                StatusState::Cancelled => "canceled",
            },
        }
    }
}

/// A repository's status reporting configuration: which API, which repository on it, and the
/// token to post with. `Debug` shows the token as `***` (it is a [`Secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTarget {
    pub provider: Provider,
    /// The API base URL, e.g. `https://api.github.com`, `https://ghe.example.com/api/v3`,
    /// `https://api.bitbucket.org`, `https://gitlab.example.com`, `https://gitea.example.com`.
    pub api_url: String,
    /// The repository's path on the forge: `owner/repo` (GitHub, Gitea), `workspace/slug`
    /// (Bitbucket Cloud), `PROJ/slug` (Bitbucket Data Center: the project key and the
    /// repository slug), `group/sub/project` or a numeric id (GitLab).
    pub repository: String,
    pub token: Secret,
}

impl StatusTarget {
    /// Checks the target as the sender is about to use it: the same checks as
    /// [`check_status_settings`] (which runs when the settings are saved, so that a mistake is
    /// reported to the person making it rather than as a stream of 404s from the forge later),
    /// and a token. Settings saved before a check was added are caught here.
    pub fn validate(&self) -> Result<(), String> {
        check_api_url(&self.api_url)?;
        if self.token.is_empty() {
            return Err("a status token is required".into());
        }
        check_status_repository(self.provider, &self.repository)
    }
}

/// Checks a commit-status API base URL: unambiguous (see [`crate::ssrf::parse_unambiguous`]),
/// http or https, with a host, no credentials (the token has its own setting) and no query or
/// fragment (paths are appended to it).
pub fn check_api_url(api_url: &str) -> Result<(), String> {
    let api = api_url.trim_end_matches('/');
    let parsed = crate::ssrf::parse_unambiguous(api)
        .map_err(|e| format!("status API URL {api:?} is refused: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("status API URL {api:?} must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("status API URL {api:?} has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("status API URL must not carry credentials; set the token instead".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "status API URL {api:?} must not have a query or fragment"
        ));
    }
    Ok(())
}

/// Checks a repository path as `provider`'s status API names repositories: two parts
/// (`owner/repo`, `workspace/slug`, `PROJ/slug`) or, for GitLab, a project path or numeric id.
pub fn check_status_repository(provider: Provider, repository: &str) -> Result<(), String> {
    let segments: Vec<&str> = repository.split('/').collect();
    let well_formed = !segments.iter().any(|s| s.is_empty() || s.trim() != *s);
    match provider {
        Provider::Github | Provider::Gitea | Provider::Bitbucket | Provider::BitbucketServer
            if segments.len() != 2 || !well_formed =>
        {
            let example = if provider == Provider::BitbucketServer {
                "PROJ/slug (the project key and the repository slug)"
            } else {
                "owner/name"
            };
            Err(format!(
                "status repository {repository:?} must be two parts, like {example}"
            ))
        }
        Provider::Gitlab if !well_formed => Err(format!(
            "status repository {repository:?} must be a project path like group/sub/project or a numeric id"
        )),
        _ => Ok(()),
    }
}

/// A repository's commit-status settings as they are about to be saved (through the API or by
/// loading the configuration file).
#[derive(Debug, Clone, Copy)]
pub struct StatusSettingsCheck<'a> {
    pub provider: Provider,
    pub git_url: &'a str,
    /// The repository's `name` and `forge_repository`, which the status repository defaults to.
    pub name: &'a str,
    pub forge_repository: Option<&'a str>,
    pub report_status: bool,
    pub api_url: Option<&'a str>,
    pub status_repository: Option<&'a str>,
    /// Whether a token will be there once saved (given now, or kept).
    pub has_token: bool,
}

/// Checks commit-status settings when they are saved, so that a mistake is refused with a
/// reason instead of failing every status later: whatever is given must be well-formed, and
/// with `report_status` there must be a token, an API URL (given, or derived from the clone
/// URL) and a repository path the provider's API takes.
pub fn check_status_settings(settings: &StatusSettingsCheck<'_>) -> Result<(), String> {
    if let Some(api_url) = settings.api_url {
        check_api_url(api_url).map_err(|e| format!("status_api_url: {e}"))?;
    }
    if let Some(repository) = settings.status_repository {
        check_status_repository(settings.provider, repository)
            .map_err(|e| format!("status_repository: {e}"))?;
    }
    if !settings.report_status {
        return Ok(());
    }
    if !settings.has_token {
        return Err(
            "report_status needs a status_token: the forge's API takes statuses only with one"
                .to_owned(),
        );
    }
    let api_url = match settings.api_url {
        Some(api_url) => api_url.to_owned(),
        None => crate::deliver::default_status_api_url(settings.provider, settings.git_url)
            .ok_or_else(|| {
                format!(
                    "report_status: no status API URL can be derived from git_url {:?}; set status_api_url",
                    settings.git_url
                )
            })?,
    };
    check_api_url(&api_url)
        .map_err(|e| format!("the status API URL derived from git_url: {e}; set status_api_url"))?;
    let repository = settings
        .status_repository
        .or(settings.forge_repository)
        .unwrap_or(settings.name);
    check_status_repository(settings.provider, repository).map_err(|e| {
        format!("{e}; set status_repository to the repository as the forge's API names it")
    })
}

/// One status to post for one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The full commit id.
    pub sha: String,
    pub state: StatusState,
    /// Tells this status apart from other systems' and other rules' on the same commit, e.g.
    /// `slipway/latest` (see [`context_for_rule`]); the same for every build of a rule, so each
    /// update replaces the previous one and a forge can require it.
    pub context: String,
    /// The ref the build was for (`refs/heads/main`), which Bitbucket Data Center shows with
    /// the status; the other forges' APIs do not take it.
    pub git_ref: Option<String>,
    /// The build's page.
    pub target_url: String,
    /// A short description; empty means [`StatusState::default_description`].
    pub description: String,
}

/// Longest description sent: GitHub refuses longer ones, and the other forges show only a line.
pub const MAX_DESCRIPTION_CHARS: usize = 140;
/// Longest context sent, kept well under every forge's limit.
pub const MAX_CONTEXT_BYTES: usize = 100;
/// Bitbucket's limit on a build status `key`.
pub const MAX_BITBUCKET_KEY_BYTES: usize = 40;

/// The context of every status of rule `index` (0-based) of `rules` (empty: the default rule),
/// `slipway/<label>`, shortened with a hash suffix when long. It depends on the rule only, never
/// on what one build of it rendered, so it is the same for every ref and commit the rule builds
/// (pushes, triggers, manual builds and retries alike) and a forge's required check can name
/// it. The label is, in this order:
///
/// 1. the rule's `name`;
/// 2. its tag template when it has no placeholders, such as `latest` or `latest,stable`;
/// 3. `rule-<n>`, its 1-based position, for a template with placeholders (`{sourceref}`,
///    `{commit}`, …), or when the label above is already another rule's.
pub fn context_for_rule(rules: &[BuildRule], index: usize) -> String {
    let default_rules;
    let rules = if rules.is_empty() {
        default_rules = [BuildRule::default_rule()];
        &default_rules[..]
    } else {
        rules
    };
    let labels = rule_labels(rules);
    let label = labels
        .get(index)
        .cloned()
        .unwrap_or_else(|| fallback_label(index));
    shorten(&format!("slipway/{label}"), MAX_CONTEXT_BYTES)
}

fn fallback_label(index: usize) -> String {
    format!("rule-{}", index + 1)
}

/// Each rule's label, unique within the list: a name is its own (names are unique and never
/// look like a position, which [`BuildRule::validate`] and `check_rule_names` ensure), and a
/// literal template that another rule's name or an earlier rule's label already is, or that looks
/// like a position (`rule-3`), makes way for the position.
fn rule_labels(rules: &[BuildRule]) -> Vec<String> {
    let names: Vec<&str> = rules.iter().filter_map(|r| r.name.as_deref()).collect();
    let mut labels: Vec<String> = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        let label = match (&rule.name, rule.tags.literal()) {
            (Some(name), _) => name.clone(),
            (None, Some(tags))
                if !looks_like_position(&tags)
                    && !names.contains(&tags.as_str())
                    && !labels.contains(&tags) =>
            {
                tags
            }
            _ => fallback_label(index),
        };
        labels.push(label);
    }
    labels
}

fn looks_like_position(label: &str) -> bool {
    label
        .strip_prefix("rule-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Bitbucket's `key` for `context`: the context itself when it fits in 40 bytes, otherwise its
/// start and a hash of the whole, so the key stays the same for every update of a rule and two
/// long contexts sharing a prefix still get different keys.
pub fn bitbucket_key(context: &str) -> String {
    shorten(context, MAX_BITBUCKET_KEY_BYTES)
}

/// `text` if it is at most `max` bytes; otherwise as much of its start as fits before `-` and
/// eight hex digits of its SHA-256. `max` must leave room for the suffix (it is at least 40 here).
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    let suffix = &digest[..8];
    let room = max.saturating_sub(suffix.len() + 1);
    format!("{}-{suffix}", truncate_bytes(text, room))
}

/// The longest prefix of `text` that is at most `max` bytes and ends on a character boundary.
fn truncate_bytes(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The first `max` characters of `text`.
fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// The request that posts `update` to `target`'s forge.
pub fn status_request(target: &StatusTarget, update: &StatusUpdate) -> HttpRequestSpec {
    let api = target.api_url.trim_end_matches('/');
    let sha = encode_path_segment(&update.sha);
    let state = update.state.forge_state(target.provider);
    let description = if update.description.trim().is_empty() {
        update.state.default_description()
    } else {
        truncate_chars(&update.description, MAX_DESCRIPTION_CHARS)
    };
    let context = truncate_bytes(&update.context, MAX_CONTEXT_BYTES);
    let token = target.token.expose();

    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("User-Agent".to_owned(), USER_AGENT.to_owned()),
    ];
    let (url, body) = match target.provider {
        Provider::Github => {
            let (owner, repo) = split_owner(&target.repository);
            headers.push(("Accept".into(), "application/vnd.github+json".into()));
            headers.push(("X-GitHub-Api-Version".into(), "2022-11-28".into()));
            headers.push(("Authorization".into(), format!("Bearer {token}")));
            (
                format!("{api}/repos/{owner}/{repo}/statuses/{sha}"),
                json!({
                    "state": state,
                    "target_url": update.target_url,
                    "description": description,
                    "context": context,
                }),
            )
        }
        Provider::Gitea => {
            let (owner, repo) = split_owner(&target.repository);
            headers.push(("Accept".into(), "application/json".into()));
            headers.push(("Authorization".into(), format!("token {token}")));
            (
                format!("{api}/api/v1/repos/{owner}/{repo}/statuses/{sha}"),
                json!({
                    "state": state,
                    "target_url": update.target_url,
                    "description": description,
                    "context": context,
                }),
            )
        }
        Provider::Bitbucket => {
            let (workspace, slug) = split_owner(&target.repository);
            headers.push(("Accept".into(), "application/json".into()));
            headers.push(("Authorization".into(), atlassian_authorization(token)));
            (
                format!("{api}/2.0/repositories/{workspace}/{slug}/commit/{sha}/statuses/build"),
                bitbucket_body(state, context, update, description),
            )
        }
        Provider::BitbucketServer => {
            // The current builds endpoint, per repository (`PROJ/slug`); the legacy
            // build-status one is global and knows no cancelled state.
            let (project, slug) = split_owner(&target.repository);
            headers.push(("Accept".into(), "application/json".into()));
            headers.push(("Authorization".into(), atlassian_authorization(token)));
            let mut body = bitbucket_body(state, context, update, description);
            if let Some(git_ref) = update.git_ref.as_deref().filter(|r| !r.is_empty()) {
                body["ref"] = json!(git_ref);
            }
            (
                format!(
                    "{api}/rest/api/latest/projects/{project}/repos/{slug}/commits/{sha}/builds"
                ),
                body,
            )
        }
        Provider::Gitlab => {
            // GitLab addresses a project by its id or by its whole path as one segment, so the
            // path's slashes are encoded with the rest.
            let project = encode_path_segment(&target.repository);
            headers.push(("Accept".into(), "application/json".into()));
            headers.push(("PRIVATE-TOKEN".into(), token.to_owned()));
            (
                format!("{api}/api/v4/projects/{project}/statuses/{sha}"),
                json!({
                    "state": state,
                    "name": context,
                    "target_url": update.target_url,
                    "description": description,
                }),
            )
        }
    };
    HttpRequestSpec {
        method: "POST",
        url,
        headers,
        body: body.to_string(),
    }
}

/// The body both Bitbucket editions take.
fn bitbucket_body(
    state: &str,
    context: &str,
    update: &StatusUpdate,
    description: &str,
) -> serde_json::Value {
    json!({
        "state": state,
        "key": bitbucket_key(context),
        "name": context,
        "url": update.target_url,
        "description": description,
    })
}

/// Bitbucket takes access tokens as `Bearer`, and a username with an app password (Cloud) or a
/// password (Data Center) as `Basic`. Access tokens never contain `:`, so a `:` tells them apart.
fn atlassian_authorization(token: &str) -> String {
    if token.contains(':') {
        let encoded = base64::engine::general_purpose::STANDARD.encode(token.as_bytes());
        format!("Basic {encoded}")
    } else {
        format!("Bearer {token}")
    }
}

/// `owner/name` as two encoded path segments. Anything after the first `/` stays in the second
/// segment (encoded), so a malformed path reaches a missing resource rather than another one;
/// [`StatusTarget::validate`] refuses such paths when they are configured.
fn split_owner(repository: &str) -> (String, String) {
    let (owner, name) = repository.split_once('/').unwrap_or((repository, ""));
    (encode_path_segment(owner), encode_path_segment(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn target(provider: Provider, api_url: &str, repository: &str, token: &str) -> StatusTarget {
        StatusTarget {
            provider,
            api_url: api_url.to_owned(),
            repository: repository.to_owned(),
            token: Secret::new(token),
        }
    }

    fn update(state: StatusState) -> StatusUpdate {
        StatusUpdate {
            sha: SHA.to_owned(),
            state,
            context: "slipway/latest".to_owned(),
            git_ref: Some("refs/heads/main".to_owned()),
            target_url: "https://slipway.example.com/builds/42".to_owned(),
            description: String::new(),
        }
    }

    fn rule(json: Value) -> BuildRule {
        serde_json::from_value(json).expect("a rule")
    }

    fn body(request: &HttpRequestSpec) -> Value {
        serde_json::from_str(&request.body).expect("the body is JSON")
    }

    /// The body's keys, sorted, so a test notices a field added or lost.
    fn keys(value: &Value) -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn common_headers(request: &HttpRequestSpec) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("Content-Type"), Some("application/json"));
        assert_eq!(request.header("User-Agent"), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("Slipway/"));
    }

    #[test]
    fn github_request() {
        let t = target(
            Provider::Github,
            "https://api.github.com/",
            "acme/web",
            "ghp_secret",
        );
        let request = status_request(&t, &update(StatusState::Success));
        common_headers(&request);
        assert_eq!(
            request.url,
            format!("https://api.github.com/repos/acme/web/statuses/{SHA}")
        );
        assert_eq!(request.header("Authorization"), Some("Bearer ghp_secret"));
        assert_eq!(
            request.header("Accept"),
            Some("application/vnd.github+json")
        );
        assert_eq!(request.header("PRIVATE-TOKEN"), None);
        let body = body(&request);
        assert_eq!(
            keys(&body),
            ["context", "description", "state", "target_url"]
        );
        assert_eq!(body["state"], "success");
        assert_eq!(body["context"], "slipway/latest");
        assert_eq!(body["target_url"], "https://slipway.example.com/builds/42");
        assert_eq!(body["description"], "image built and pushed");
    }

    #[test]
    fn github_enterprise_keeps_its_api_prefix() {
        let t = target(
            Provider::Github,
            "https://ghe.example.com/api/v3",
            "acme/web",
            "x",
        );
        let request = status_request(&t, &update(StatusState::Pending));
        assert_eq!(
            request.url,
            format!("https://ghe.example.com/api/v3/repos/acme/web/statuses/{SHA}")
        );
    }

    #[test]
    fn bitbucket_cloud_request() {
        let t = target(
            Provider::Bitbucket,
            "https://api.bitbucket.org",
            "team/web-app",
            "bb_access_token",
        );
        let request = status_request(&t, &update(StatusState::Running));
        common_headers(&request);
        assert_eq!(
            request.url,
            format!(
                "https://api.bitbucket.org/2.0/repositories/team/web-app/commit/{SHA}/statuses/build"
            )
        );
        assert_eq!(
            request.header("Authorization"),
            Some("Bearer bb_access_token")
        );
        let body = body(&request);
        assert_eq!(keys(&body), ["description", "key", "name", "state", "url"]);
        assert_eq!(body["state"], "INPROGRESS");
        assert_eq!(body["key"], "slipway/latest");
        assert_eq!(body["name"], "slipway/latest");
        assert_eq!(body["url"], "https://slipway.example.com/builds/42");
        assert_eq!(body["description"], "building");
    }

    #[test]
    fn bitbucket_app_passwords_use_basic_auth() {
        let t = target(
            Provider::Bitbucket,
            "https://api.bitbucket.org",
            "team/web",
            "jdoe:app:pass",
        );
        let request = status_request(&t, &update(StatusState::Success));
        // base64("jdoe:app:pass"), computed independently.
        assert_eq!(
            request.header("Authorization"),
            Some("Basic amRvZTphcHA6cGFzcw==")
        );
    }

    #[test]
    fn bitbucket_data_center_request() {
        let t = target(
            Provider::BitbucketServer,
            "https://bitbucket.example.com/context/",
            "PROJ/web",
            "dc_token",
        );
        let request = status_request(&t, &update(StatusState::Failure));
        common_headers(&request);
        assert_eq!(
            request.url,
            format!(
                "https://bitbucket.example.com/context/rest/api/latest/projects/PROJ/repos/web/commits/{SHA}/builds"
            )
        );
        assert_eq!(request.header("Authorization"), Some("Bearer dc_token"));
        let body = body(&request);
        assert_eq!(
            keys(&body),
            ["description", "key", "name", "ref", "state", "url"]
        );
        assert_eq!(body["state"], "FAILED");
        assert_eq!(body["key"], "slipway/latest");
        assert_eq!(body["name"], "slipway/latest");
        assert_eq!(body["ref"], "refs/heads/main");
        assert_eq!(body["url"], "https://slipway.example.com/builds/42");
        assert_eq!(body["description"], "build failed");
        // A cancelled build has its own state there; without a known ref, none is sent.
        let mut cancelled = update(StatusState::Cancelled);
        cancelled.git_ref = None;
        let cancelled = tests::body(&status_request(&t, &cancelled));
        assert_eq!(cancelled["state"], "CANCELLED");
        assert_eq!(
            keys(&cancelled),
            ["description", "key", "name", "state", "url"]
        );
    }

    #[test]
    fn gitlab_request_encodes_the_project_path_as_one_segment() {
        let t = target(
            Provider::Gitlab,
            "https://gitlab.example.com",
            "group/sub/project",
            "glpat-secret",
        );
        let request = status_request(&t, &update(StatusState::Cancelled));
        common_headers(&request);
        assert_eq!(
            request.url,
            format!(
                "https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fproject/statuses/{SHA}"
            )
        );
        assert_eq!(request.header("PRIVATE-TOKEN"), Some("glpat-secret"));
        assert_eq!(request.header("Authorization"), None);
        let body = body(&request);
        assert_eq!(keys(&body), ["description", "name", "state", "target_url"]);
        assert_eq!(body["state"], "canceled");
        assert_eq!(body["name"], "slipway/latest");
        assert_eq!(body["target_url"], "https://slipway.example.com/builds/42");
        assert_eq!(body["description"], "cancelled");
    }

    #[test]
    fn gitlab_numeric_project_ids_pass_through() {
        let t = target(Provider::Gitlab, "https://gitlab.com", "4242", "x");
        let request = status_request(&t, &update(StatusState::Pending));
        assert_eq!(
            request.url,
            format!("https://gitlab.com/api/v4/projects/4242/statuses/{SHA}")
        );
    }

    #[test]
    fn gitea_request() {
        let t = target(
            Provider::Gitea,
            "https://codeberg.org",
            "acme/web",
            "gitea_token",
        );
        let request = status_request(&t, &update(StatusState::Error));
        common_headers(&request);
        assert_eq!(
            request.url,
            format!("https://codeberg.org/api/v1/repos/acme/web/statuses/{SHA}")
        );
        assert_eq!(request.header("Authorization"), Some("token gitea_token"));
        let body = body(&request);
        assert_eq!(
            keys(&body),
            ["context", "description", "state", "target_url"]
        );
        assert_eq!(body["state"], "error");
        assert_eq!(body["context"], "slipway/latest");
        assert_eq!(body["description"], "build error");
    }

    #[test]
    fn every_state_on_every_forge() {
        use StatusState::*;
        // Rows: Pending, Running, Success, Failure, Error, Cancelled.
        let table: [(Provider, [&str; 6]); 5] = [
            (
                Provider::Github,
                ["pending", "pending", "success", "failure", "error", "error"],
            ),
            (
                Provider::Gitea,
                ["pending", "pending", "success", "failure", "error", "error"],
            ),
            (
                Provider::Bitbucket,
                [
                    "INPROGRESS",
                    "INPROGRESS",
                    "SUCCESSFUL",
                    "FAILED",
                    "FAILED",
                    "STOPPED",
                ],
            ),
            (
                Provider::BitbucketServer,
                [
                    "INPROGRESS",
                    "INPROGRESS",
                    "SUCCESSFUL",
                    "FAILED",
                    "FAILED",
                    "CANCELLED",
                ],
            ),
            (
                Provider::Gitlab,
                [
                    "pending", "running", "success", "failed", "failed", "canceled",
                ],
            ),
        ];
        let descriptions = [
            "queued",
            "building",
            "image built and pushed",
            "build failed",
            "build error",
            "cancelled",
        ];
        assert_eq!(
            StatusState::ALL,
            [Pending, Running, Success, Failure, Error, Cancelled]
        );
        for (provider, states) in table {
            let t = target(provider, "https://forge.example.com", "a/b", "tok");
            for ((state, expected), description) in
                StatusState::ALL.into_iter().zip(states).zip(descriptions)
            {
                assert_eq!(
                    state.forge_state(provider),
                    expected,
                    "{provider} {state:?}"
                );
                let body = body(&status_request(&t, &update(state)));
                assert_eq!(body["state"], expected, "{provider} {state:?}");
                assert_eq!(body["description"], description, "{provider} {state:?}");
            }
        }
    }

    #[test]
    fn build_statuses_map_to_states() {
        let expected = [
            (BuildStatus::Queued, StatusState::Pending),
            (BuildStatus::Running, StatusState::Running),
            (BuildStatus::Succeeded, StatusState::Success),
            (BuildStatus::Failed, StatusState::Failure),
            (BuildStatus::Cancelled, StatusState::Cancelled),
            (BuildStatus::Skipped, StatusState::Success),
        ];
        assert_eq!(expected.len(), BuildStatus::ALL.len());
        for (build, state) in expected {
            assert_eq!(StatusState::from_build(build), state);
            // Only a failure changes with whose fault it was.
            let infrastructure = if build == BuildStatus::Failed {
                StatusState::Error
            } else {
                state
            };
            assert_eq!(StatusState::for_build(build, false), state);
            assert_eq!(StatusState::for_build(build, true), infrastructure);
        }
        // GitHub and Gitea tell the two apart; the forges without an error state fail both.
        let forge = |p| {
            (
                StatusState::for_build(BuildStatus::Failed, false).forge_state(p),
                StatusState::for_build(BuildStatus::Failed, true).forge_state(p),
            )
        };
        assert_eq!(forge(Provider::Github), ("failure", "error"));
        assert_eq!(forge(Provider::Gitea), ("failure", "error"));
        assert_eq!(forge(Provider::Gitlab), ("failed", "failed"));
        assert_eq!(forge(Provider::Bitbucket), ("FAILED", "FAILED"));
        assert_eq!(forge(Provider::BitbucketServer), ("FAILED", "FAILED"));
    }

    #[test]
    fn odd_path_parts_are_encoded() {
        let odd = "we ird/re?po#x";
        let mut u = update(StatusState::Success);
        u.sha = "../../admin".to_owned();
        for provider in Provider::ALL {
            let t = target(provider, "https://forge.example.com", odd, "tok");
            let request = status_request(&t, &u);
            let path = request
                .url
                .strip_prefix("https://forge.example.com")
                .expect("the base is kept");
            assert!(!path.contains(['?', '#', ' ']), "{provider}: {path}");
            assert!(!path.contains("/../"), "{provider}: {path}");
            assert!(path.contains("..%2F..%2Fadmin"), "{provider}: {path}");
            // The parsed URL has exactly the segments we meant, whatever the input.
            let parsed = url::Url::parse(&request.url).expect("a valid URL");
            assert_eq!(parsed.query(), None);
            assert_eq!(parsed.fragment(), None);
        }
        let github = status_request(&target(Provider::Github, "https://a.example", odd, "t"), &u);
        assert_eq!(
            github.url,
            "https://a.example/repos/we%20ird/re%3Fpo%23x/statuses/..%2F..%2Fadmin"
        );
        let gitlab = status_request(&target(Provider::Gitlab, "https://a.example", odd, "t"), &u);
        assert_eq!(
            gitlab.url,
            "https://a.example/api/v4/projects/we%20ird%2Fre%3Fpo%23x/statuses/..%2F..%2Fadmin"
        );
    }

    #[test]
    fn a_caller_description_is_kept_and_bounded() {
        let t = target(Provider::Github, "https://api.github.com", "a/b", "t");
        let mut u = update(StatusState::Failure);
        u.description = "Dockerfile:3 RUN failed".to_owned();
        assert_eq!(
            body(&status_request(&t, &u))["description"],
            "Dockerfile:3 RUN failed"
        );
        u.description = "é".repeat(500);
        let sent = body(&status_request(&t, &u))["description"]
            .as_str()
            .map(|s| s.chars().count());
        assert_eq!(sent, Some(MAX_DESCRIPTION_CHARS));
    }

    #[test]
    fn contexts_come_from_the_rule_not_from_what_a_build_rendered() {
        let rules = vec![
            rule(json!({"source_type": "branch", "source": "main", "tags": "latest"})),
            rule(
                json!({"source_type": "branch", "source": "/.*/", "tags": "{sourceref}-{commit_short}"}),
            ),
            rule(
                json!({"name": "release", "source_type": "tag", "source": "/^v(.*)$/", "tags": "{\\1}"}),
            ),
            rule(
                json!({"source_type": "tag", "source": "/.*/", "tags": " stable , latest,stable"}),
            ),
            // The same literal tags as the first rule: the position tells them apart.
            rule(
                json!({"source_type": "branch", "source": "dev", "tags": "latest", "dockerfile": "Dockerfile.dev"}),
            ),
            // A literal that is another rule's name, or looks like a position, makes way too.
            rule(json!({"source_type": "branch", "source": "x", "tags": "release"})),
            rule(json!({"source_type": "branch", "source": "y", "tags": "rule-2"})),
        ];
        let contexts: Vec<String> = (0..rules.len())
            .map(|i| context_for_rule(&rules, i))
            .collect();
        assert_eq!(
            contexts,
            [
                "slipway/latest",
                "slipway/rule-2",
                "slipway/release",
                "slipway/stable,latest",
                "slipway/rule-5",
                "slipway/rule-6",
                "slipway/rule-7",
            ]
        );
        // Whatever the ref or commit, a rule's context is one: every build of rule 2 (a push
        // of any branch, a trigger, a retry) reports under slipway/rule-2.
        assert_eq!(
            context_for_rule(&rules, 1),
            context_for_rule(&rules.clone(), 1)
        );
        // No rules means the default rule, branch main -> latest.
        assert_eq!(context_for_rule(&[], 0), "slipway/latest");
        // A build of a rule since removed keeps a stable name rather than failing.
        assert_eq!(context_for_rule(&rules, 41), "slipway/rule-42");
        // Long names are bounded and stay stable.
        let long_rule = rule(json!({"source_type": "branch", "source": "main",
            "tags": (0..30).map(|i| format!("tag-{i}")).collect::<Vec<_>>().join(",")}));
        let long = context_for_rule(std::slice::from_ref(&long_rule), 0);
        assert_eq!(long.len(), MAX_CONTEXT_BYTES);
        assert_eq!(long, context_for_rule(&[long_rule], 0), "stable");
    }

    #[test]
    fn contexts_and_keys() {
        assert_eq!(bitbucket_key("slipway/latest"), "slipway/latest");
        let forty = "x".repeat(40);
        assert_eq!(bitbucket_key(&forty), forty);
        let a = bitbucket_key("slipway/feature-branch-with-a-long-name-one");
        let b = bitbucket_key("slipway/feature-branch-with-a-long-name-two");
        assert!(a.len() <= MAX_BITBUCKET_KEY_BYTES && b.len() <= MAX_BITBUCKET_KEY_BYTES);
        assert_ne!(a, b, "a shared prefix does not make keys collide");
        assert!(a.starts_with("slipway/feature-branch-with-a-"));
        assert_eq!(
            a,
            bitbucket_key("slipway/feature-branch-with-a-long-name-one")
        );
        // Multi-byte characters are never cut in half.
        let wide = bitbucket_key(&"é".repeat(40));
        assert!(wide.len() <= MAX_BITBUCKET_KEY_BYTES);
    }

    #[test]
    fn long_contexts_become_bounded_bitbucket_keys() {
        let t = target(Provider::Bitbucket, "https://api.bitbucket.org", "a/b", "t");
        let mut u = update(StatusState::Success);
        u.context = context_for_rule(
            &[rule(json!({"source_type": "branch", "source": "main",
                "tags": "a-very-long-tag-name-for-a-release-candidate"}))],
            0,
        );
        let body = body(&status_request(&t, &u));
        let key = body["key"].as_str().unwrap_or_default();
        assert!(!key.is_empty() && key.len() <= MAX_BITBUCKET_KEY_BYTES);
        assert_eq!(body["name"], u.context.as_str());
    }

    #[test]
    fn tokens_never_appear_in_debug() {
        let token = "tok-very-secret-123";
        for provider in Provider::ALL {
            for token in [token.to_owned(), format!("user:{token}")] {
                let t = target(provider, "https://forge.example.com", "a/b", &token);
                let u = update(StatusState::Success);
                let request = status_request(&t, &u);
                let debug = format!("{t:?} {u:?} {request:?} {:?}", t.token);
                assert!(!debug.contains("tok-very-secret"), "{provider}: {debug}");
                // The Basic form is an encoding of the token, not a disguise: hide it too.
                let basic = base64::engine::general_purpose::STANDARD.encode(token.as_bytes());
                assert!(!debug.contains(&basic), "{provider}: {debug}");
            }
        }
    }

    #[test]
    fn validation() {
        let ok = target(Provider::Github, "https://api.github.com", "a/b", "t");
        assert_eq!(ok.validate(), Ok(()));
        let gitlab = target(Provider::Gitlab, "https://gitlab.com", "g/s/p", "t");
        assert_eq!(gitlab.validate(), Ok(()));
        let numeric = target(Provider::Gitlab, "https://gitlab.com", "42", "t");
        assert_eq!(numeric.validate(), Ok(()));

        let bad = [
            target(Provider::Github, "https://api.github.com", "a/b/c", "t"),
            target(Provider::Github, "https://api.github.com", "a", "t"),
            target(Provider::Gitea, "https://x.example", "/b", "t"),
            target(Provider::Bitbucket, "https://x.example", "a/ b", "t"),
            target(Provider::Gitlab, "https://x.example", "g//p", "t"),
            target(Provider::Github, "ftp://api.github.com", "a/b", "t"),
            target(Provider::Github, "https://u:p@api.github.com", "a/b", "t"),
            target(Provider::Github, "https://api.github.com?x=1", "a/b", "t"),
            target(Provider::Github, "not a url", "a/b", "t"),
            target(Provider::Github, "https://api.github.com", "a/b", ""),
            target(
                Provider::Github,
                "https://evil.example\\@api.github.com",
                "a/b",
                "t",
            ),
            target(Provider::Github, "https://", "a/b", "t"),
            target(Provider::BitbucketServer, "https://x.example", "PROJ", "t"),
        ];
        for t in bad {
            assert!(t.validate().is_err(), "{t:?}");
        }
    }

    fn settings<'a>(provider: Provider, git_url: &'a str) -> StatusSettingsCheck<'a> {
        StatusSettingsCheck {
            provider,
            git_url,
            name: "acme/web",
            forge_repository: None,
            report_status: true,
            api_url: None,
            status_repository: None,
            has_token: true,
        }
    }

    #[test]
    fn settings_are_checked_when_saved() {
        let github = settings(Provider::Github, "https://github.com/acme/web.git");
        assert_eq!(check_status_settings(&github), Ok(()));
        let gitlab = StatusSettingsCheck {
            name: "acme/web",
            forge_repository: Some("group/sub/web"),
            ..settings(
                Provider::Gitlab,
                "ssh://git@gitlab.example/group/sub/web.git",
            )
        };
        assert_eq!(check_status_settings(&gitlab), Ok(()));
        // Nothing is required without report_status, but what is given must be right.
        let off = StatusSettingsCheck {
            report_status: false,
            has_token: false,
            ..github
        };
        assert_eq!(check_status_settings(&off), Ok(()));
        let refused = [
            (
                StatusSettingsCheck {
                    has_token: false,
                    ..github
                },
                "status_token",
            ),
            (
                StatusSettingsCheck {
                    api_url: Some("ftp://x.example"),
                    ..github
                },
                "http or https",
            ),
            (
                StatusSettingsCheck {
                    api_url: Some("https://u:p@x.example"),
                    ..github
                },
                "credentials",
            ),
            (
                StatusSettingsCheck {
                    api_url: Some("https://x.example?a=1"),
                    ..github
                },
                "query",
            ),
            (
                StatusSettingsCheck {
                    api_url: Some("https://evil\\@x.example"),
                    ..github
                },
                "backslash",
            ),
            (
                StatusSettingsCheck {
                    status_repository: Some("a/b/c"),
                    ..github
                },
                "two parts",
            ),
            (
                StatusSettingsCheck {
                    status_repository: Some("a//b"),
                    report_status: false,
                    ..github
                },
                "status_repository",
            ),
            (
                StatusSettingsCheck {
                    api_url: Some("not a url"),
                    report_status: false,
                    ..github
                },
                "status_api_url",
            ),
            (
                StatusSettingsCheck {
                    name: "web",
                    ..settings(
                        Provider::BitbucketServer,
                        "https://bb.example/scm/p/web.git",
                    )
                },
                "PROJ/slug",
            ),
            (settings(Provider::Gitea, "not a url"), "git_url"),
        ];
        for (check, expected) in refused {
            let error = check_status_settings(&check).expect_err("refused");
            assert!(error.contains(expected), "{check:?}: {error}");
        }
    }
}
