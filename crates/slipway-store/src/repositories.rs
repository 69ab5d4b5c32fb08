//! Repositories managed through the API: creation, edits, enabling, deletion, and the secrets
//! that only the webhook verifier and the workers read.

use slipway_core::Secret;
use uuid::Uuid;

use crate::{
    Backend, BeginWrite, ManagedBy, RepositoryRecord, RepositoryRow, RepositorySpec, Result, Store,
    StoreError, now_millis,
};

/// A change to one stored secret: keep it, remove it, or replace it.
#[derive(Debug, Clone, Default)]
pub enum SecretChange {
    #[default]
    Keep,
    Clear,
    Set(Secret),
}

/// The secrets of an API-managed repository, as an edit gives them.
#[derive(Debug, Clone, Default)]
pub struct SecretChanges {
    pub webhook_secret: SecretChange,
    pub git_password: SecretChange,
    /// The forge API token commit statuses are posted with.
    pub status_token: SecretChange,
}

/// What the webhook verifier and the workers need of an API-managed repository.
#[derive(Debug, Clone)]
pub struct StoredCredentials {
    pub webhook_secret: Option<Secret>,
    pub git_username: Option<String>,
    pub git_password: Option<Secret>,
}

/// Why a repository could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryChangeError {
    #[error("a repository named {0} already exists")]
    Exists(String),
    #[error("no repository named {0}")]
    NotFound(String),
    #[error(
        "repository {0} is defined in the configuration file; change it there (the file is applied at every start)"
    )]
    ManagedByConfig(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RepositoryChangeError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(error))
    }
}

fn secret_update(change: &SecretChange) -> (bool, Option<&str>) {
    match change {
        SecretChange::Keep => (false, None),
        SecretChange::Clear => (true, None),
        SecretChange::Set(secret) => (true, Some(secret.expose())),
    }
}

impl Store {
    /// Every repository, enabled or not, by name.
    pub async fn repositories(&self) -> Result<Vec<RepositoryRecord>> {
        let rows: Vec<RepositoryRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(repository_select!(), " ORDER BY name"))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(RepositoryRecord::try_from).collect()
    }

    pub async fn repository(&self, id: Uuid) -> Result<Option<RepositoryRecord>> {
        let row: Option<RepositoryRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(repository_select!(), " WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(RepositoryRecord::try_from).transpose()
    }

    /// Creates an API-managed repository with its secrets.
    pub async fn create_repository(
        &self,
        spec: &RepositorySpec,
        git_username: Option<&str>,
        secrets: &SecretChanges,
    ) -> Result<RepositoryRecord, RepositoryChangeError> {
        let now = now_millis();
        let id = Uuid::now_v7();
        let rules =
            serde_json::to_string(&spec.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (_, webhook_secret) = secret_update(&secrets.webhook_secret);
        let (_, git_password) = secret_update(&secrets.git_password);
        let (_, status_token) = secret_update(&secrets.status_token);
        let inserted = with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO repositories (id, name, provider, git_url, image, rules_json, enabled,
                     allow_unsigned, allow_legacy_sha1, supersede_running, build_timeout_secs, max_concurrent_builds,
                     memory_limit_bytes, cpu_limit_millis, max_context_bytes, forge_repository, created_at, updated_at,
                     managed_by, anonymous_read, webhook_secret, git_username, git_password,
                     report_status, status_api_url, status_repository, status_token)
                 VALUES ($1, $2, $3, $4, $5, $6, TRUE, $8, $9, $10, $11, $12, $13, $14, $15, $16, $7, $7,
                     'api', $17, $18, $19, $20, $21, $22, $23, $24)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(id.to_string())
            .bind(spec.name.to_string())
            .bind(spec.provider.as_str())
            .bind(&spec.git_url)
            .bind(spec.image.to_string())
            .bind(&rules)
            .bind(now)
            .bind(spec.allow_unsigned)
            .bind(spec.allow_legacy_sha1)
            .bind(spec.supersede_running)
            .bind(spec.build_timeout_secs)
            .bind(spec.limits.max_concurrent_builds)
            .bind(spec.limits.memory_bytes)
            .bind(spec.limits.cpu_millis)
            .bind(spec.limits.max_context_bytes)
            .bind(spec.forge_repository.as_deref())
            .bind(spec.anonymous_read)
            .bind(webhook_secret)
            .bind(git_username)
            .bind(git_password)
            .bind(spec.status.report_status)
            .bind(spec.status.api_url.as_deref())
            .bind(spec.status.repository.as_deref())
            .bind(status_token)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            return Err(RepositoryChangeError::Exists(spec.name.to_string()));
        }
        self.repository(id)
            .await?
            .ok_or_else(|| RepositoryChangeError::NotFound(spec.name.to_string()))
    }

    /// Replaces an API-managed repository's settings (its name stays) and applies the secret
    /// changes.
    pub async fn update_repository(
        &self,
        id: Uuid,
        spec: &RepositorySpec,
        git_username: Option<&str>,
        secrets: &SecretChanges,
    ) -> Result<RepositoryRecord, RepositoryChangeError> {
        let rules =
            serde_json::to_string(&spec.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (set_webhook_secret, webhook_secret) = secret_update(&secrets.webhook_secret);
        let (set_git_password, git_password) = secret_update(&secrets.git_password);
        let (set_status_token, status_token) = secret_update(&secrets.status_token);
        let changed = with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE repositories SET provider = $2, git_url = $3, image = $4, rules_json = $5,
                     allow_unsigned = $6, allow_legacy_sha1 = $7, supersede_running = $8,
                     build_timeout_secs = $9, max_concurrent_builds = $10, memory_limit_bytes = $11,
                     cpu_limit_millis = $12, max_context_bytes = $13, forge_repository = $14,
                     anonymous_read = $15, git_username = $16,
                     webhook_secret = CASE WHEN $17 THEN $18 ELSE webhook_secret END,
                     git_password = CASE WHEN $19 THEN $20 ELSE git_password END,
                     updated_at = $21, report_status = $22, status_api_url = $23, status_repository = $24,
                     status_token = CASE WHEN $25 THEN $26 ELSE status_token END
                 WHERE id = $1 AND managed_by = 'api'",
            )
            .bind(id.to_string())
            .bind(spec.provider.as_str())
            .bind(&spec.git_url)
            .bind(spec.image.to_string())
            .bind(&rules)
            .bind(spec.allow_unsigned)
            .bind(spec.allow_legacy_sha1)
            .bind(spec.supersede_running)
            .bind(spec.build_timeout_secs)
            .bind(spec.limits.max_concurrent_builds)
            .bind(spec.limits.memory_bytes)
            .bind(spec.limits.cpu_millis)
            .bind(spec.limits.max_context_bytes)
            .bind(spec.forge_repository.as_deref())
            .bind(spec.anonymous_read)
            .bind(git_username)
            .bind(set_webhook_secret)
            .bind(webhook_secret)
            .bind(set_git_password)
            .bind(git_password)
            .bind(now_millis())
            .bind(spec.status.report_status)
            .bind(spec.status.api_url.as_deref())
            .bind(spec.status.repository.as_deref())
            .bind(set_status_token)
            .bind(status_token)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let current = self
            .repository(id)
            .await?
            .ok_or_else(|| RepositoryChangeError::NotFound(spec.name.to_string()))?;
        if changed == 0 && current.managed_by == ManagedBy::Config {
            return Err(RepositoryChangeError::ManagedByConfig(
                spec.name.to_string(),
            ));
        }
        Ok(current)
    }

    /// Enables or disables an API-managed repository. A disabled repository refuses webhooks
    /// and triggers (404) and keeps its history; its queued builds stay queued, unclaimable,
    /// until it is enabled again (builds already running finish). Enabling wakes the workers,
    /// since its queued builds have just become claimable.
    pub async fn set_repository_enabled(
        &self,
        id: Uuid,
        enabled: bool,
    ) -> Result<(), RepositoryChangeError> {
        let changed = with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE repositories SET enabled = $2, updated_at = $3 WHERE id = $1 AND managed_by = 'api'",
            )
            .bind(id.to_string())
            .bind(enabled)
            .bind(now_millis())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed == 0 {
            return Err(RepositoryChangeError::ManagedByConfig(id.to_string()));
        }
        if enabled {
            self.wake().await;
        }
        Ok(())
    }

    /// Deletes an API-managed repository and all of its history, in one transaction. Running
    /// builds must have finished: a worker would otherwise write into rows that are gone.
    pub async fn delete_repository(&self, id: Uuid) -> Result<bool, RepositoryChangeError> {
        let id = id.to_string();
        let deleted = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let managed: Option<(String,)> =
                sqlx::query_as("SELECT managed_by FROM repositories WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match managed {
                // Nothing was written; dropping the transaction rolls it back.
                None => false,
                Some((managed,)) if managed != "api" => {
                    return Err(RepositoryChangeError::ManagedByConfig(id));
                }
                Some(_) => {
                    // Children first; every statement removes a whole set at once, so
                    // references within the set (a retry of a build, a redelivery of a
                    // delivery) never dangle at a statement's end.
                    for statement in [
                        "DELETE FROM notification_attempts WHERE notification_id IN (SELECT id FROM notifications WHERE repository_id = $1)",
                        "DELETE FROM notifications WHERE repository_id = $1",
                        "DELETE FROM outgoing_hooks WHERE repository_id = $1",
                        "DELETE FROM build_transitions WHERE build_id IN (SELECT id FROM builds WHERE repository_id = $1)",
                        "DELETE FROM build_log_chunks WHERE build_id IN (SELECT id FROM builds WHERE repository_id = $1)",
                        "DELETE FROM build_attempts WHERE build_id IN (SELECT id FROM builds WHERE repository_id = $1)",
                        "DELETE FROM build_events WHERE build_id IN (SELECT id FROM builds WHERE repository_id = $1)",
                        "DELETE FROM pushed_tags WHERE build_id IN (SELECT id FROM builds WHERE repository_id = $1)",
                        "DELETE FROM build_tags WHERE build_id IN (SELECT id FROM builds WHERE repository_id = $1)",
                        "DELETE FROM builds WHERE repository_id = $1",
                        "DELETE FROM deliveries WHERE repository_id = $1",
                        "DELETE FROM trigger_requests WHERE trigger_id IN (SELECT id FROM triggers WHERE repository_id = $1)",
                        "DELETE FROM triggers WHERE repository_id = $1",
                        "DELETE FROM repository_grants WHERE repository_id = $1",
                        "DELETE FROM api_tokens WHERE repository_id = $1",
                        "DELETE FROM repositories WHERE id = $1",
                    ] {
                        sqlx::query(statement).bind(&id).execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    true
                }
            }
        });
        Ok(deleted)
    }

    /// An API-managed repository's stored credentials; `None` for configuration-managed ones,
    /// whose secrets live in the configuration.
    pub async fn stored_credentials(&self, name: &str) -> Result<Option<StoredCredentials>> {
        let row: Option<(Option<String>, Option<String>, Option<String>)> =
            with_pool!(self, read, |pool| {
                sqlx::query_as(
                    "SELECT webhook_secret, git_username, git_password FROM repositories
                     WHERE name = $1 AND managed_by = 'api'",
                )
                .bind(name)
                .fetch_optional(pool)
                .await?
            });
        Ok(row.map(
            |(webhook_secret, git_username, git_password)| StoredCredentials {
                webhook_secret: webhook_secret.map(Secret::new),
                git_username,
                git_password: git_password.map(Secret::new),
            },
        ))
    }
}
