//! The store's rows and the types it hands out. Rows are private; records are what callers
//! see, with the stored text already parsed into domain types.

use slipway_core::{BuildPlan, BuildRule, BuildStatus, ImageName, Provider, RepositoryName};
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
        })
    }
}

/// A verified delivery, ready to be stored with its builds.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: Uuid,
    pub repository_id: Uuid,
    /// The forge's delivery id, or a hash of the body where the forge sends none.
    pub delivery_key: String,
    pub provider: String,
    pub event: String,
    pub received_at: i64,
    pub status_code: u16,
    /// What the delivery led to, in words.
    pub outcome: String,
    /// Every rule's decision, as JSON.
    pub decisions_json: String,
    /// The exact answer sent to the forge, replayed for a duplicate delivery.
    pub response_json: String,
    /// The verified body, kept so the delivery can be replayed.
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct NewBuild {
    pub id: Uuid,
    pub image: String,
    pub plan: BuildPlan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded,
    /// The delivery key was seen before; this is the answer given then.
    Duplicate {
        status_code: u16,
        response_json: String,
    },
}

#[derive(Debug, Clone)]
pub struct BuildRecord {
    pub id: Uuid,
    pub repository: RepositoryName,
    pub repository_id: Uuid,
    pub git_ref: String,
    pub commit: String,
    pub image: String,
    pub tags: Vec<String>,
    pub dockerfile: String,
    pub context: String,
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
    git_ref: String,
    commit_sha: String,
    image: String,
    tags_json: String,
    dockerfile: String,
    context: String,
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
            git_ref: row.git_ref,
            commit: row.commit_sha,
            image: row.image,
            tags: serde_json::from_str(&row.tags_json).map_err(|e| corrupt("tags", e))?,
            dockerfile: row.dockerfile,
            context: row.context,
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
