//! The store's rows and the types it hands out. Rows are private; records are what callers
//! see, with the stored text already parsed into domain types.

use slipway_core::{
    BuildOptions, BuildPlan, BuildRule, BuildStatus, ImageName, Provider, RepositoryName,
};
use uuid::Uuid;

use crate::StoreError;

/// A repository as the configuration describes it.
#[derive(Debug, Clone)]
pub struct RepositorySpec {
    pub name: RepositoryName,
    pub provider: Provider,
    /// The clone URL with no credentials in it; credentials stay in the configuration.
    pub git_url: String,
    pub image: ImageName,
    pub rules: Vec<BuildRule>,
    pub allow_unsigned: bool,
    pub allow_legacy_sha1: bool,
    pub supersede_running: bool,
    pub forge_repository: Option<String>,
    pub build_timeout_secs: i64,
    pub limits: Limits,
    /// Anyone may read the repository's builds, logs and badge without signing in.
    pub anonymous_read: bool,
    /// Commit statuses posted to the forge.
    pub status: StatusConfig,
}

/// Whether and where a repository's builds post commit statuses. The token is a secret: in the
/// configuration, or (for API-managed repositories) a write-only column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusConfig {
    pub report_status: bool,
    /// The forge's API base URL; the public forge's when unset (GitHub, Bitbucket Cloud, GitLab).
    pub api_url: Option<String>,
    /// The repository as the forge's API names it; `forge_repository` or the name when unset.
    pub repository: Option<String>,
}

/// A repository's resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Running builds at once; 0 means no limit.
    pub max_concurrent_builds: i64,
    /// Per-build memory in bytes; 0 means none.
    pub memory_bytes: i64,
    /// Per-build CPU in thousandths of a CPU; 0 means none.
    pub cpu_millis: i64,
    /// The largest build context, in bytes.
    pub max_context_bytes: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_builds: 0,
            memory_bytes: 0,
            cpu_millis: 0,
            max_context_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RepositoryRecord {
    pub id: Uuid,
    pub name: RepositoryName,
    pub provider: Provider,
    pub git_url: String,
    pub image: ImageName,
    pub rules: Vec<BuildRule>,
    pub enabled: bool,
    pub allow_unsigned: bool,
    pub allow_legacy_sha1: bool,
    pub supersede_running: bool,
    pub max_concurrent_builds: i64,
    pub forge_repository: Option<String>,
    pub build_timeout_secs: i64,
    pub limits: Limits,
    /// Where the definition lives: [`ManagedBy::Config`] or [`ManagedBy::Api`].
    pub managed_by: ManagedBy,
    pub anonymous_read: bool,
    /// Whether a webhook secret is stored (API-managed repositories); never the secret.
    pub has_webhook_secret: bool,
    /// The stored git username (not secret) and whether a git password is stored.
    pub git_username: Option<String>,
    pub has_git_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub status: StatusConfig,
    pub has_status_token: bool,
}

/// Who owns a repository's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedBy {
    /// The configuration file: it is applied at every start, and the API may not change it.
    Config,
    /// The API: created and edited there, kept whatever the configuration says.
    Api,
}

impl ManagedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedBy::Config => "config",
            ManagedBy::Api => "api",
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RepositoryRow {
    id: String,
    name: String,
    provider: String,
    git_url: String,
    image: String,
    rules_json: String,
    enabled: bool,
    allow_unsigned: bool,
    allow_legacy_sha1: bool,
    supersede_running: bool,
    max_concurrent_builds: i64,
    forge_repository: Option<String>,
    build_timeout_secs: i64,
    memory_limit_bytes: i64,
    cpu_limit_millis: i64,
    max_context_bytes: i64,
    managed_by: String,
    anonymous_read: bool,
    has_webhook_secret: bool,
    git_username: Option<String>,
    has_git_password: bool,
    created_at: i64,
    updated_at: i64,
    report_status: bool,
    status_api_url: Option<String>,
    status_repository: Option<String>,
    has_status_token: bool,
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| corrupt("id", e))
}

impl TryFrom<RepositoryRow> for RepositoryRecord {
    type Error = StoreError;
    fn try_from(row: RepositoryRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: parse_uuid(&row.id)?,
            name: row
                .name
                .parse()
                .map_err(|e| corrupt("repository name", e))?,
            provider: row.provider.parse().map_err(|e| corrupt("provider", e))?,
            git_url: row.git_url,
            image: row.image.parse().map_err(|e| corrupt("image", e))?,
            rules: serde_json::from_str(&row.rules_json).map_err(|e| corrupt("rules", e))?,
            enabled: row.enabled,
            allow_unsigned: row.allow_unsigned,
            allow_legacy_sha1: row.allow_legacy_sha1,
            supersede_running: row.supersede_running,
            max_concurrent_builds: row.max_concurrent_builds,
            forge_repository: row.forge_repository,
            build_timeout_secs: row.build_timeout_secs,
            limits: Limits {
                max_concurrent_builds: row.max_concurrent_builds,
                memory_bytes: row.memory_limit_bytes,
                cpu_millis: row.cpu_limit_millis,
                max_context_bytes: row.max_context_bytes,
            },
            managed_by: match row.managed_by.as_str() {
                "api" => ManagedBy::Api,
                "config" => ManagedBy::Config,
                other => return Err(corrupt("managed_by", other)),
            },
            anonymous_read: row.anonymous_read,
            has_webhook_secret: row.has_webhook_secret,
            git_username: row.git_username,
            has_git_password: row.has_git_password,
            created_at: row.created_at,
            updated_at: row.updated_at,
            status: StatusConfig {
                report_status: row.report_status,
                api_url: row.status_api_url,
                repository: row.status_repository,
            },
            has_status_token: row.has_status_token,
        })
    }
}

/// One request to `/hooks`, as the deliveries log records it.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: Uuid,
    /// `None` when the URL named no configured repository.
    pub repository_id: Option<Uuid>,
    /// The repository as the URL named it.
    pub repository_name: String,
    pub provider: String,
    pub event: String,
    /// The forge's delivery id header, as sent.
    pub forge_delivery_id: Option<String>,
    /// The idempotency key: the forge's delivery id, or a hash of the body. Only verified
    /// deliveries have one, so a refused request never blocks the genuine delivery.
    pub delivery_key: Option<String>,
    pub source_address: String,
    pub received_at: i64,
    /// The verification result in words ("verified (x-hub-signature-256)", "signature
    /// mismatch", "not checked: …").
    pub verification: String,
    /// The request's event and delivery headers, as a JSON object; never secrets.
    pub headers_json: String,
    /// The verified body, kept for replay; never set for an unverified request.
    pub body: Option<Vec<u8>>,
    /// The delivery this one re-plays, for a redelivery.
    pub redelivery_of: Option<Uuid>,
}

/// A build a delivery planned.
#[derive(Debug, Clone)]
pub struct NewBuild {
    pub id: Uuid,
    pub image: String,
    pub plan: BuildPlan,
    /// What started it: `push`, `redelivery`, `trigger`.
    pub trigger: String,
    /// Which earlier builds of the same rule and ref this one makes obsolete.
    pub supersedes: Supersede,
}

/// What a new build does to earlier, unfinished builds of the same rule and ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supersede {
    Nothing,
    /// Queued builds are cancelled.
    Queued,
    /// Queued builds are cancelled and running ones asked to stop.
    QueuedAndRunning,
}

impl NewBuild {
    /// One build per rule, ref and commit: the key that makes a second delivery of the same
    /// push find the first build.
    pub fn dedupe_key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.plan.rule_index,
            self.plan.git_ref.full(),
            self.plan.commit
        )
    }
}

/// Where a planned build ended up: a new row, or an existing build for the same rule, ref and
/// commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildPlacement {
    pub id: Uuid,
    pub created: bool,
}

/// The answer to a delivery, rendered once the builds' final ids are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAnswer {
    pub status_code: u16,
    pub response_json: String,
    /// What the delivery led to, in words.
    pub outcome: String,
    /// Every rule's decision, as JSON.
    pub decisions_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded(DeliveryAnswer),
    /// The delivery key was seen before; this is the answer given then.
    Duplicate {
        status_code: u16,
        response_json: String,
    },
}

/// A delivery as the log shows it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub repository_id: Option<Uuid>,
    pub repository_name: String,
    pub provider: String,
    pub event: String,
    pub forge_delivery_id: Option<String>,
    pub source_address: String,
    pub received_at: i64,
    pub status_code: u16,
    pub verification: String,
    pub outcome: String,
    pub decisions_json: String,
    pub response_json: String,
    pub headers_json: String,
    pub has_body: bool,
    pub redelivery_of: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: String,
    repository_id: Option<String>,
    repository_name: String,
    provider: String,
    event: String,
    forge_delivery_id: Option<String>,
    source_address: String,
    received_at: i64,
    status_code: i64,
    verification: String,
    outcome: String,
    decisions_json: String,
    response_json: String,
    headers_json: String,
    has_body: bool,
    redelivery_of: Option<String>,
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = StoreError;
    fn try_from(row: DeliveryRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: parse_uuid(&row.id)?,
            repository_id: row.repository_id.as_deref().map(parse_uuid).transpose()?,
            repository_name: row.repository_name,
            provider: row.provider,
            event: row.event,
            forge_delivery_id: row.forge_delivery_id,
            source_address: row.source_address,
            received_at: row.received_at,
            status_code: u16::try_from(row.status_code).map_err(|e| corrupt("status code", e))?,
            verification: row.verification,
            outcome: row.outcome,
            decisions_json: row.decisions_json,
            response_json: row.response_json,
            headers_json: row.headers_json,
            has_body: row.has_body,
            redelivery_of: row.redelivery_of.as_deref().map(parse_uuid).transpose()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct BuildRecord {
    pub id: Uuid,
    pub repository: RepositoryName,
    pub repository_id: Uuid,
    pub delivery_id: Option<Uuid>,
    pub trigger: String,
    pub git_ref: String,
    pub commit: String,
    pub image: String,
    pub tags: Vec<String>,
    pub dockerfile: String,
    pub context: String,
    pub options: BuildOptions,
    pub before: Option<String>,
    pub message_checked: bool,
    pub rule_index: i64,
    pub cancel_requested: bool,
    pub retry_of: Option<Uuid>,
    /// The repository's build timeout when the build was claimed or read.
    pub timeout_secs: i64,
    pub memory_limit_bytes: i64,
    pub cpu_limit_millis: i64,
    pub max_context_bytes: i64,
    /// A queued build is not claimed before this time (a retry's backoff).
    pub not_before: Option<i64>,
    pub status: BuildStatus,
    pub error: Option<String>,
    pub digest: Option<String>,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub attempts: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct BuildRow {
    id: String,
    repository: String,
    repository_id: String,
    delivery_id: Option<String>,
    trigger: String,
    git_ref: String,
    commit_sha: String,
    image: String,
    tags_json: String,
    dockerfile: String,
    context: String,
    options_json: String,
    before_sha: Option<String>,
    message_checked: bool,
    rule_index: i64,
    cancel_requested: bool,
    retry_of: Option<String>,
    timeout_secs: i64,
    memory_limit_bytes: i64,
    cpu_limit_millis: i64,
    max_context_bytes: i64,
    not_before: Option<i64>,
    status: String,
    error: Option<String>,
    digest: Option<String>,
    queued_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    attempts: i64,
}

impl TryFrom<BuildRow> for BuildRecord {
    type Error = StoreError;
    fn try_from(row: BuildRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: parse_uuid(&row.id)?,
            repository: row
                .repository
                .parse()
                .map_err(|e| corrupt("repository name", e))?,
            repository_id: parse_uuid(&row.repository_id)?,
            delivery_id: row.delivery_id.as_deref().map(parse_uuid).transpose()?,
            trigger: row.trigger,
            git_ref: row.git_ref,
            commit: row.commit_sha,
            image: row.image,
            tags: serde_json::from_str(&row.tags_json).map_err(|e| corrupt("tags", e))?,
            dockerfile: row.dockerfile,
            context: row.context,
            options: serde_json::from_str(&row.options_json)
                .map_err(|e| corrupt("build options", e))?,
            before: row.before_sha,
            message_checked: row.message_checked,
            rule_index: row.rule_index,
            cancel_requested: row.cancel_requested,
            retry_of: row.retry_of.as_deref().map(parse_uuid).transpose()?,
            timeout_secs: row.timeout_secs,
            memory_limit_bytes: row.memory_limit_bytes,
            cpu_limit_millis: row.cpu_limit_millis,
            max_context_bytes: row.max_context_bytes,
            not_before: row.not_before,
            status: row.status.parse().map_err(|e| corrupt("status", e))?,
            error: row.error,
            digest: row.digest,
            queued_at: row.queued_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            attempts: row.attempts,
        })
    }
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    pub status: BuildStatus,
    pub error: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub seq: i64,
    pub data: Vec<u8>,
}

/// The answer to a running build's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The worker still owns the build.
    Held,
    /// The worker still owns it, but someone asked the build to stop.
    CancelRequested,
    /// Another worker (or the reaper) has it now.
    Lost,
}

/// Who holds a tag of an image.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TagHolder {
    pub build_id: String,
    pub git_ref: String,
    pub commit_sha: String,
    pub build_queued_at: i64,
    /// Whether the holder has finished pushing the tag.
    pub pushed: bool,
    /// Whether the holder's build is still running (and so may still push).
    pub holder_running: bool,
}

/// A build-trigger URL of a repository; the token itself is never stored.
#[derive(Debug, Clone)]
pub struct TriggerRecord {
    pub id: Uuid,
    pub repository_id: Uuid,
    pub repository: RepositoryName,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct TriggerRow {
    id: String,
    repository_id: String,
    repository: String,
    name: String,
    created_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TryFrom<TriggerRow> for TriggerRecord {
    type Error = StoreError;
    fn try_from(row: TriggerRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: parse_uuid(&row.id)?,
            repository_id: parse_uuid(&row.repository_id)?,
            repository: row
                .repository
                .parse()
                .map_err(|e| corrupt("repository name", e))?,
            name: row.name,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
        })
    }
}

/// One request to a trigger URL, as kept for the API.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TriggerRequestRecord {
    pub received_at: i64,
    pub source_address: String,
    pub status_code: i64,
    pub body: String,
    pub response_json: String,
}

/// Where a build queued outside a delivery ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Created(Uuid),
    /// An identical build (same rule, ref and commit) is already waiting.
    AlreadyQueued(Uuid),
}

/// The answer to a cancel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The build was queued and is now cancelled.
    Cancelled,
    /// The build is running; its worker stops it on its next heartbeat.
    Requested,
    /// The build had already finished.
    AlreadyFinished(BuildStatus),
}

/// The outcome of a build's last attempt when its infrastructure (not its commit) failed it.
pub const INFRASTRUCTURE_FAILURE: &str = "failed_infrastructure";

/// One attempt at a build.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub worker: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `succeeded`, `failed` (the commit's fault), `failed_infrastructure` (the engine, network or
    /// a registry failed on the last attempt: [`INFRASTRUCTURE_FAILURE`]), `cancelled`,
    /// `skipped`, `retry` (an infrastructure failure, queued again), `lost` (the worker stopped
    /// responding) or `handed_back` (its worker shut down); `None` while it runs.
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// A worker process as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WorkerRecord {
    pub id: String,
    pub hostname: String,
    pub slots: i64,
    pub started_at: i64,
    pub last_seen_at: i64,
    /// `None` while healthy.
    pub problem: Option<String>,
}
