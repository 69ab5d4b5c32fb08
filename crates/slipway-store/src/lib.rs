//! All of Slipway's SQL, on SQLite (the embedded default) and PostgreSQL (shared by many
//! processes). Each backend has its own migrations; the queries are written once, in the
//! subset both understand (`$N` parameters, `RETURNING`, `ON CONFLICT`), and run on whichever
//! pool the store was opened with.
//!
//! **Invariants:**
//! - A delivery and the builds it planned are written in one transaction; a delivery key seen
//!   before returns the first answer and writes nothing.
//! - A build is claimed by one short statement that sets a lease; no transaction is held open
//!   while a build runs. Heartbeats and completion succeed only for the lease's owner.

mod records;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use slipway_core::BuildStatus;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

pub use accounts::{NewToken, SessionRecord, TokenRecord, UserRecord};
pub use group_commit::DeliveryTally;
pub use history::{BuildCursor, BuildEvent, BuildFilter, LogPiece, QueueCounts, Readable};
pub use notifications::{
    AfterAttempt, HookRecord, NewNotification, NotificationAttempt, NotificationKind,
    NotificationRecord, Redelivery, StatusSettings, Transition,
};
pub use records::*;
pub use repositories::{RepositoryChangeError, SecretChange, SecretChanges, StoredCredentials};

/// The PostgreSQL channel that announces claimable builds.
const BUILDS_CHANNEL: &str = "slipway_builds";

/// What can go wrong in the store. Callers map `Unavailable` to 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database URL {0:?} is neither sqlite: nor postgres:")]
    UnsupportedUrl(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The task writing group commits stopped before answering (its runtime is shutting down);
    /// whether the delivery was stored is unknown, so the caller answers 503 and the forge
    /// retries, which the delivery key makes safe.
    #[error("the database writer stopped before answering")]
    Interrupted,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database, and its pools.
#[derive(Debug, Clone)]
enum Backend {
    /// SQLite allows one writer at a time; a one-connection write pool queues writers in the
    /// process instead of letting them fail with `SQLITE_BUSY`, and readers use their own pool.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Wakes this process's workers when a build is queued, so a webhook's build starts
    /// without waiting for the next poll.
    queued: Arc<Notify>,
    /// Writes deliveries that arrive together in one transaction.
    group_commit: group_commit::GroupCommitter,
}

/// Runs `$body` with `$pool` bound to the right pool for the backend. The body is compiled
/// once per backend, which is what lets one query text serve both.
macro_rules! with_pool {
    ($store:expr, $role:ident, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { $role: $pool, .. } => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// Every column of a repository except its secrets, of which only their presence is read.
macro_rules! repository_select {
    () => {
        "SELECT id, name, provider, git_url, image, rules_json, enabled, allow_unsigned, allow_legacy_sha1,
             supersede_running, max_concurrent_builds, forge_repository, build_timeout_secs,
             memory_limit_bytes, cpu_limit_millis, max_context_bytes, managed_by, anonymous_read,
             webhook_secret IS NOT NULL AS has_webhook_secret, git_username,
             git_password IS NOT NULL AS has_git_password, created_at, updated_at,
             report_status, status_api_url, status_repository, status_token IS NOT NULL AS has_status_token
         FROM repositories"
    };
}

/// Binds the 17 columns of a `deliveries` row, in the order `insert_delivery!` and the group
/// commit's statement list them, for `delivery` with `answer`.
macro_rules! bind_delivery_row {
    ($query:expr, $delivery:expr, $answer:expr) => {{
        let delivery: &NewDelivery = $delivery;
        let answer: &DeliveryAnswer = $answer;
        $query
            .bind(delivery.id.to_string())
            .bind(delivery.repository_id.map(|id| id.to_string()))
            .bind(&delivery.repository_name)
            .bind(&delivery.provider)
            .bind(&delivery.event)
            .bind(&delivery.forge_delivery_id)
            .bind(&delivery.delivery_key)
            .bind(&delivery.source_address)
            .bind(delivery.received_at)
            .bind(i64::from(answer.status_code))
            .bind(&delivery.verification)
            .bind(&answer.outcome)
            .bind(&answer.decisions_json)
            .bind(&answer.response_json)
            .bind(&delivery.headers_json)
            .bind(delivery.body.as_deref())
            .bind(delivery.redelivery_of.map(|id| id.to_string()))
    }};
}

/// Inserts a delivery row and evaluates to whether it was new (false: its key was taken, a
/// duplicate). A macro rather than a generic function: a function generic over the executor
/// makes every future that calls it lose `Send` (a known limitation of higher-ranked bounds).
macro_rules! insert_delivery {
    ($executor:expr, $delivery:expr, $answer:expr) => {{
        let delivery: &NewDelivery = $delivery;
        let answer: &DeliveryAnswer = $answer;
        let query = sqlx::query_as(
            "INSERT INTO deliveries (id, repository_id, repository_name, provider, event, forge_delivery_id,
                 delivery_key, source_address, received_at, status_code, verification, outcome,
                 decisions_json, response_json, headers_json, body, redelivery_of)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (repository_id, delivery_key) DO NOTHING
             RETURNING id",
        );
        let inserted: Option<(String,)> = bind_delivery_row!(query, delivery, answer)
            .fetch_optional($executor)
            .await?;
        inserted.is_some()
    }};
}

// Declared after `with_pool!` so that the modules can use the macro.
mod accounts;
mod group_commit;
mod history;
mod notifications;
// Fleet-wide counters and histograms for `/metrics` (issue 6).
pub mod metrics;
mod repositories;

/// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`, which takes the write lock
/// up front, so two processes sharing a file wait for each other instead of deadlocking.
trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl Future<Output = sqlx::Result<Transaction<'static, Self::Db>>> + Send;
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    fn begin_write(
        &self,
    ) -> impl Future<Output = sqlx::Result<Transaction<'static, Sqlite>>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    fn begin_write(
        &self,
    ) -> impl Future<Output = sqlx::Result<Transaction<'static, Postgres>>> + Send {
        self.begin()
    }
}

/// Starts a read-only transaction that sees one snapshot of the database, for answers that are
/// read with several statements but must agree with each other.
trait BeginSnapshot {
    type Db: sqlx::Database;
    fn begin_snapshot(
        &self,
    ) -> impl Future<Output = sqlx::Result<Transaction<'static, Self::Db>>> + Send;
}

impl BeginSnapshot for SqlitePool {
    type Db = Sqlite;
    fn begin_snapshot(
        &self,
    ) -> impl Future<Output = sqlx::Result<Transaction<'static, Sqlite>>> + Send {
        // In WAL mode a read transaction keeps the snapshot its first read saw.
        self.begin_with("BEGIN")
    }
}

impl BeginSnapshot for PgPool {
    type Db = Postgres;
    fn begin_snapshot(
        &self,
    ) -> impl Future<Output = sqlx::Result<Transaction<'static, Postgres>>> + Send {
        self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }
}

/// Wakes this process's workers, and on PostgreSQL every other process's, because a build
/// became claimable.
async fn wake(backend: &Backend, queued: &Notify) {
    queued.notify_waiters();
    if let Backend::Postgres(pool) = backend
        && let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(BUILDS_CHANNEL)
            .execute(pool)
            .await
    {
        // Workers still poll, so a lost notification only costs a poll interval.
        tracing::warn!(%error, "could not notify other processes of a queued build");
    }
}

/// The current time in Unix milliseconds, the unit of every stored time.
pub fn now_millis() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens `sqlite://path` (creating the file) or `postgres://…`. Migrations are not run;
    /// call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Self> {
        let backend = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // A 202 promises the forge that its delivery is stored, so a commit must
                // survive a power cut, not only a crash of the process: FULL makes every
                // commit sync the WAL. Group commits keep that affordable (one sync for all
                // the deliveries that arrived together).
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options.read_only(false))
                .await?;
            Backend::Sqlite { read, write }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                // A forge waits at most ~10 s for an answer; an unreachable database must turn
                // into a quick 503, not a hang.
                .acquire_timeout(Duration::from_secs(3))
                .connect_with(options)
                .await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let queued = Arc::new(Notify::new());
        Ok(Self {
            group_commit: group_commit::GroupCommitter::new(backend.clone(), queued.clone()),
            backend,
            queued,
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Applies this backend's migrations; safe to run at every start.
    pub async fn migrate(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite { write, .. } => {
                sqlx::migrate!("../../migrations/sqlite").run(write).await?
            }
            Backend::Postgres(pool) => {
                sqlx::migrate!("../../migrations/postgres")
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    /// The single integer one `SELECT` answers, such as a `count(*)`; tests and benchmarks use
    /// it to check what was stored.
    #[doc(hidden)]
    pub async fn count_for_tests(&self, statement: &str) -> Result<i64> {
        let (count,): (i64,) = with_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(statement.to_owned()))
                .fetch_one(pool)
                .await?
        });
        Ok(count)
    }

    /// Runs one statement outside any transaction; tests use it to create databases.
    #[doc(hidden)]
    pub async fn execute_raw_for_tests(&self, statement: &str) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Whether the database answers; for `/healthz`.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, read, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Resolves once a build may have become claimable (queued here, or, on PostgreSQL with
    /// [`Store::spawn_notification_forwarder`] running, anywhere).
    pub fn queued_notifier(&self) -> Arc<Notify> {
        self.queued.clone()
    }

    /// Wakes workers after a build became claimable: this process's at once, and on PostgreSQL
    /// every other process's through `NOTIFY`, so a webhook received by `slipway web` starts a
    /// build on a `slipway worker` elsewhere without waiting for a poll.
    async fn wake(&self) {
        wake(&self.backend, &self.queued).await;
    }

    /// On PostgreSQL, listens for other processes' `NOTIFY` and wakes this process's workers;
    /// reconnects when the connection drops (waking the workers then too, since a notification
    /// may have been missed). `None` on SQLite, where one process does all the work.
    pub fn spawn_notification_forwarder(&self) -> Option<tokio::task::JoinHandle<()>> {
        let Backend::Postgres(pool) = &self.backend else {
            return None;
        };
        let (pool, queued) = (pool.clone(), self.queued.clone());
        Some(tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for queued builds; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                };
                if let Err(error) = listener.listen(BUILDS_CHANNEL).await {
                    tracing::warn!(%error, "cannot listen for queued builds; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => queued.notify_waiters(),
                        // The connection dropped and will be re-established; anything sent
                        // meanwhile was missed, so look for work now.
                        Ok(None) => queued.notify_waiters(),
                        Err(error) => {
                            tracing::warn!(%error, "listening for queued builds failed; reconnecting");
                            queued.notify_waiters();
                            break;
                        }
                    }
                }
            }
        }))
    }

    // ----- repositories -------------------------------------------------------------------

    /// Makes the stored repositories match the configuration: each given repository is
    /// inserted or updated and enabled (taking over an API-managed one of the same name, whose
    /// stored secrets are dropped); every other configuration-managed one is disabled, its
    /// history kept. Repositories created through the API are left alone.
    pub async fn sync_repositories(&self, specs: &[RepositorySpec]) -> Result<()> {
        let now = now_millis();
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for spec in specs {
                sqlx::query(
                    "INSERT INTO repositories (id, name, provider, git_url, image, rules_json, enabled,
                         allow_unsigned, allow_legacy_sha1, supersede_running, build_timeout_secs, max_concurrent_builds,
                         memory_limit_bytes, cpu_limit_millis, max_context_bytes, forge_repository, created_at, updated_at, anonymous_read,
                         report_status, status_api_url, status_repository)
                     VALUES ($1, $2, $3, $4, $5, $6, TRUE, $8, $9, $10, $11, $12, $13, $14, $15, $16, $7, $7, $17, $18, $19, $20)
                     ON CONFLICT (name) DO UPDATE SET managed_by = 'config', webhook_secret = NULL,
                         git_username = NULL, git_password = NULL, status_token = NULL, anonymous_read = $17,
                         report_status = $18, status_api_url = $19, status_repository = $20, provider = $3, git_url = $4, image = $5,
                         rules_json = $6, enabled = TRUE, allow_unsigned = $8, allow_legacy_sha1 = $9, supersede_running = $10, build_timeout_secs = $11, max_concurrent_builds = $12,
                         memory_limit_bytes = $13, cpu_limit_millis = $14, max_context_bytes = $15, forge_repository = $16,
                         updated_at = $7",
                )
                .bind(Uuid::now_v7().to_string())
                .bind(spec.name.to_string())
                .bind(spec.provider.as_str())
                .bind(&spec.git_url)
                .bind(spec.image.to_string())
                .bind(serde_json::to_string(&spec.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?)
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
                .bind(spec.status.report_status)
                .bind(spec.status.api_url.as_deref())
                .bind(spec.status.repository.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            let names: Vec<(String,)> = sqlx::query_as(
                "SELECT name FROM repositories WHERE enabled = TRUE AND managed_by = 'config'",
            )
            .fetch_all(&mut *tx)
            .await?;
            for (name,) in names {
                if !specs.iter().any(|spec| spec.name.to_string() == name) {
                    sqlx::query(
                        "UPDATE repositories SET enabled = FALSE, updated_at = $2 WHERE name = $1",
                    )
                    .bind(&name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
        });
        // A repository enabled again by the configuration may have queued builds waiting.
        self.wake().await;
        Ok(())
    }

    pub async fn repository_by_name(&self, name: &str) -> Result<Option<RepositoryRecord>> {
        let row: Option<RepositoryRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(repository_select!(), " WHERE name = $1"))
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        row.map(RepositoryRecord::try_from).transpose()
    }

    // ----- deliveries ---------------------------------------------------------------------

    /// Stores a verified delivery and the builds it planned, atomically, and returns the answer
    /// `render` makes from where each build ended up (see [`BuildPlacement`]): a build for a
    /// rule, ref and commit that already has one is not made twice. If the repository has seen
    /// this delivery key before, nothing is written and the first answer is returned. With a
    /// `tally`, the delivery is counted for `/metrics` in the same transaction.
    ///
    /// Deliveries arriving together are written by one group commit (see [`group_commit`]):
    /// each caller's answer still comes only once its own delivery is durably committed.
    pub async fn record_delivery(
        &self,
        delivery: &NewDelivery,
        builds: &[NewBuild],
        render: impl Fn(&[BuildPlacement]) -> DeliveryAnswer + Send + Sync + 'static,
        tally: Option<DeliveryTally>,
    ) -> Result<RecordOutcome> {
        let pending = group_commit::PendingDelivery {
            delivery: delivery.clone(),
            builds: builds.to_vec(),
            render: Box::new(render),
            tally,
        };
        self.group_commit.write(pending).await
    }

    /// Records a request that was refused (or could not be tied to a repository). It gets no
    /// delivery key, so it takes part in no idempotency; the caller sets a body only when the
    /// request was verified (a verified but malformed payload is worth keeping to debug).
    pub async fn record_refused_delivery(
        &self,
        delivery: &NewDelivery,
        status_code: u16,
        outcome: &str,
    ) -> Result<()> {
        let refused = NewDelivery {
            delivery_key: None,
            ..delivery.clone()
        };
        let answer = DeliveryAnswer {
            status_code,
            response_json: "{}".to_owned(),
            outcome: outcome.to_owned(),
            decisions_json: "[]".to_owned(),
        };
        with_pool!(self, write, |pool| {
            let _new_row = insert_delivery!(pool, &refused, &answer);
        });
        Ok(())
    }

    /// The repository's deliveries, newest first, `limit` at a time; `before` continues after
    /// the last delivery of the previous page.
    pub async fn deliveries_for_repository(
        &self,
        repository_id: Uuid,
        limit: i64,
        before: Option<Uuid>,
    ) -> Result<Vec<DeliveryRecord>> {
        // Delivery ids are UUIDv7, so their order is their time order; the keyset is the id.
        let rows: Vec<DeliveryRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                delivery_select!(),
                " WHERE repository_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
            ))
            .bind(repository_id.to_string())
            .bind(before.map(|id| id.to_string()))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(DeliveryRecord::try_from).collect()
    }

    pub async fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRecord>> {
        let row: Option<DeliveryRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(delivery_select!(), " WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(DeliveryRecord::try_from).transpose()
    }

    /// The verified body kept for a delivery, if it was verified and is within retention.
    pub async fn delivery_body(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        let row: Option<(Option<Vec<u8>>,)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT body FROM deliveries WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.and_then(|(body,)| body))
    }

    /// The builds a delivery created (not those it found already made).
    pub async fn builds_for_delivery(&self, delivery_id: Uuid) -> Result<Vec<BuildRecord>> {
        let rows: Vec<BuildRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                build_select!(),
                " WHERE b.delivery_id = $1 ORDER BY b.id"
            ))
            .bind(delivery_id.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(BuildRecord::try_from).collect()
    }

    /// Applies the retention: verified bodies older than `before` are dropped (the delivery's
    /// record stays), and refused requests older than `before` are deleted. Returns the number
    /// of rows changed.
    pub async fn purge_deliveries(&self, before: i64) -> Result<u64> {
        let changed = with_pool!(self, write, |pool| {
            let bodies = sqlx::query(
                "UPDATE deliveries SET body = NULL WHERE received_at < $1 AND body IS NOT NULL",
            )
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected();
            let refused = sqlx::query(
                "DELETE FROM deliveries WHERE received_at < $1 AND delivery_key IS NULL",
            )
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected();
            bodies + refused
        });
        Ok(changed)
    }

    /// How many verified deliveries a repository has.
    pub async fn delivery_count(&self, repository_id: Uuid) -> Result<i64> {
        let (count,): (i64,) = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM deliveries WHERE repository_id = $1 AND delivery_key IS NOT NULL")
                .bind(repository_id.to_string())
                .fetch_one(pool)
                .await?
        });
        Ok(count)
    }

    // ----- triggers -----------------------------------------------------------------------

    /// Creates a trigger, or gives a revoked one of the same name a new token. An active
    /// trigger of that name is an error: use [`Store::regenerate_trigger`].
    pub async fn create_trigger(
        &self,
        repository_id: Uuid,
        name: &str,
        token_hash: &str,
    ) -> Result<Option<TriggerRecord>> {
        let now = now_millis();
        let created = with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO triggers (id, repository_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (repository_id, name) DO UPDATE SET token_hash = $4, created_at = $5,
                     revoked_at = NULL, last_used_at = NULL
                 WHERE triggers.revoked_at IS NOT NULL",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(repository_id.to_string())
            .bind(name)
            .bind(token_hash)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if created == 0 {
            return Ok(None);
        }
        self.trigger_by_name(repository_id, name).await
    }

    /// Replaces an active trigger's token; the old token stops working at once.
    pub async fn regenerate_trigger(
        &self,
        repository_id: Uuid,
        name: &str,
        token_hash: &str,
    ) -> Result<bool> {
        let changed = with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE triggers SET token_hash = $3 WHERE repository_id = $1 AND name = $2 AND revoked_at IS NULL",
            )
            .bind(repository_id.to_string())
            .bind(name)
            .bind(token_hash)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    pub async fn revoke_trigger(&self, repository_id: Uuid, name: &str) -> Result<bool> {
        let changed = with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE triggers SET revoked_at = $3 WHERE repository_id = $1 AND name = $2 AND revoked_at IS NULL",
            )
            .bind(repository_id.to_string())
            .bind(name)
            .bind(now_millis())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    pub async fn trigger_by_name(
        &self,
        repository_id: Uuid,
        name: &str,
    ) -> Result<Option<TriggerRecord>> {
        let row: Option<TriggerRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                trigger_select!(),
                " WHERE t.repository_id = $1 AND t.name = $2"
            ))
            .bind(repository_id.to_string())
            .bind(name)
            .fetch_optional(pool)
            .await?
        });
        row.map(TriggerRecord::try_from).transpose()
    }

    /// The active trigger whose token hashes to `token_hash`.
    pub async fn trigger_by_token_hash(&self, token_hash: &str) -> Result<Option<TriggerRecord>> {
        let row: Option<TriggerRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                trigger_select!(),
                " WHERE t.token_hash = $1 AND t.revoked_at IS NULL"
            ))
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
        });
        row.map(TriggerRecord::try_from).transpose()
    }

    pub async fn triggers_for_repository(&self, repository_id: Uuid) -> Result<Vec<TriggerRecord>> {
        let rows: Vec<TriggerRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                trigger_select!(),
                " WHERE t.repository_id = $1 ORDER BY t.name"
            ))
            .bind(repository_id.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(TriggerRecord::try_from).collect()
    }

    /// Keeps one request of a trigger, and only the newest `keep` of them.
    pub async fn record_trigger_request(
        &self,
        trigger_id: Uuid,
        request: &TriggerRequestRecord,
        keep: i64,
    ) -> Result<()> {
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO trigger_requests (id, trigger_id, received_at, source_address, status_code, body, response_json)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(trigger_id.to_string())
            .bind(request.received_at)
            .bind(&request.source_address)
            .bind(request.status_code)
            .bind(&request.body)
            .bind(&request.response_json)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE triggers SET last_used_at = $2 WHERE id = $1")
                .bind(trigger_id.to_string())
                .bind(request.received_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "DELETE FROM trigger_requests WHERE trigger_id = $1 AND id NOT IN
                     (SELECT id FROM trigger_requests WHERE trigger_id = $1 ORDER BY id DESC LIMIT $2)",
            )
            .bind(trigger_id.to_string())
            .bind(keep)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A trigger's kept requests, newest first.
    pub async fn trigger_requests(&self, trigger_id: Uuid) -> Result<Vec<TriggerRequestRecord>> {
        let rows: Vec<TriggerRequestRecord> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT received_at, source_address, status_code, body, response_json FROM trigger_requests
                 WHERE trigger_id = $1 ORDER BY id DESC",
            )
            .bind(trigger_id.to_string())
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Queues builds that no delivery asked for (a trigger, later a manual build). A build
    /// identical to one still queued (same rule, ref and commit) is not queued twice.
    pub async fn queue_builds(
        &self,
        repository_id: Uuid,
        builds: &[NewBuild],
    ) -> Result<Vec<Queued>> {
        let now = now_millis();
        let mut results = Vec::with_capacity(builds.len());
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for build in builds {
                let waiting: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM builds WHERE repository_id = $1 AND rule_index = $2 AND git_ref = $3
                         AND commit_sha = $4 AND status = 'queued' LIMIT 1",
                )
                .bind(repository_id.to_string())
                .bind(i64::try_from(build.plan.rule_index).unwrap_or(i64::MAX))
                .bind(build.plan.git_ref.full())
                .bind(build.plan.commit.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((id,)) = waiting {
                    results.push(Queued::AlreadyQueued(
                        Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    ));
                    continue;
                }
                sqlx::query(
                    "INSERT INTO builds (id, repository_id, trigger, rule_index, git_ref, commit_sha, image, tags_json,
                         dockerfile, context, status, queued_at, options_json, before_sha, message_checked)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11, $12, $13, $14)",
                )
                .bind(build.id.to_string())
                .bind(repository_id.to_string())
                .bind(&build.trigger)
                .bind(i64::try_from(build.plan.rule_index).unwrap_or(i64::MAX))
                .bind(build.plan.git_ref.full())
                .bind(build.plan.commit.as_str())
                .bind(&build.image)
                .bind(serde_json::to_string(&build.plan.tags).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                .bind(&build.plan.dockerfile)
                .bind(&build.plan.context)
                .bind(now)
                .bind(serde_json::to_string(&build.plan.options).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                .bind(build.plan.before.as_ref().map(|c| c.as_str().to_owned()))
                .bind(build.plan.message_checked)
                .execute(&mut *tx)
                .await?;
                results.push(Queued::Created(build.id));
            }
            tx.commit().await?;
        });
        if results.iter().any(|r| matches!(r, Queued::Created(_))) {
            self.wake().await;
        }
        Ok(results)
    }

    /// Queues builds the reconciler found missing, keyed like pushed builds (rule, ref and
    /// commit), so a build that exists already, or a late webhook for the same push, is never
    /// doubled. Returns the ids of the builds it created.
    pub async fn queue_reconciled(
        &self,
        repository_id: Uuid,
        builds: &[NewBuild],
    ) -> Result<Vec<Uuid>> {
        let now = now_millis();
        let mut created = Vec::new();
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            for build in builds {
                let inserted = sqlx::query(
                    "INSERT INTO builds (id, repository_id, trigger, dedupe_key, rule_index, git_ref, commit_sha, image,
                         tags_json, dockerfile, context, status, queued_at, options_json, before_sha, message_checked)
                     VALUES ($1, $2, 'reconciler', $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11, $12, NULL, FALSE)
                     ON CONFLICT (repository_id, dedupe_key) DO NOTHING",
                )
                .bind(build.id.to_string())
                .bind(repository_id.to_string())
                .bind(build.dedupe_key())
                .bind(i64::try_from(build.plan.rule_index).unwrap_or(i64::MAX))
                .bind(build.plan.git_ref.full())
                .bind(build.plan.commit.as_str())
                .bind(&build.image)
                .bind(serde_json::to_string(&build.plan.tags).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                .bind(&build.plan.dockerfile)
                .bind(&build.plan.context)
                .bind(now)
                .bind(serde_json::to_string(&build.plan.options).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    created.push(build.id);
                }
            }
            tx.commit().await?;
        });
        if !created.is_empty() {
            self.wake().await;
        }
        Ok(created)
    }

    /// The refs a repository's rule has ever built, for the reconciler's regex rules.
    pub async fn built_refs(&self, repository_id: Uuid, rule_index: usize) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT DISTINCT git_ref FROM builds WHERE repository_id = $1 AND rule_index = $2",
            )
            .bind(repository_id.to_string())
            .bind(i64::try_from(rule_index).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(r,)| r).collect())
    }

    // ----- builds and the queue -----------------------------------------------------------

    pub async fn build(&self, id: Uuid) -> Result<Option<BuildRecord>> {
        let row: Option<BuildRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(build_select!(), " WHERE b.id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(BuildRecord::try_from).transpose()
    }

    pub async fn builds_for_repository(&self, repository_id: Uuid) -> Result<Vec<BuildRecord>> {
        let rows: Vec<BuildRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                build_select!(),
                " WHERE b.repository_id = $1 ORDER BY b.queued_at, b.id"
            ))
            .bind(repository_id.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(BuildRecord::try_from).collect()
    }

    /// Claims the oldest runnable queued build for `owner` with a lease of `lease`, and records
    /// the attempt, in one short transaction.
    pub async fn claim_build(&self, owner: &str, lease: Duration) -> Result<Option<BuildRecord>> {
        let now = now_millis();
        let expires = now.saturating_add(duration_millis(lease));
        macro_rules! claim {
            ($pool:expr, $sql:expr) => {{
                let mut tx = $pool.begin_write().await?;
                let claimed: Option<(String, i64)> =
                    sqlx::query_as($sql).bind(owner).bind(expires).bind(now).fetch_optional(&mut *tx).await?;
                if let Some((id, attempt)) = &claimed {
                    sqlx::query(
                        "INSERT INTO build_attempts (id, build_id, attempt, worker, started_at) VALUES ($5, $1, $2, $3, $4)",
                    )
                    .bind(id)
                    .bind(attempt)
                    .bind(owner)
                    .bind(now)
                    .bind(Uuid::now_v7().to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                claimed
            }};
        }
        let claimed = match &self.backend {
            Backend::Sqlite { write, .. } => {
                claim!(write, concat!(claim_sql!(""), " RETURNING id, attempts"))
            }
            Backend::Postgres(pool) => {
                claim!(
                    pool,
                    concat!(
                        claim_sql!(" FOR UPDATE SKIP LOCKED"),
                        " RETURNING id, attempts"
                    )
                )
            }
        };
        match claimed {
            Some((id, _)) => {
                let id = Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.build(id).await
            }
            None => Ok(None),
        }
    }

    /// Puts a running build back in the queue after an infrastructure failure, not to be
    /// claimed before `not_before`; false if `owner` no longer holds its lease.
    pub async fn requeue_build(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        not_before: i64,
    ) -> Result<bool> {
        let now = now_millis();
        let changed = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query(
                "UPDATE builds SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, not_before = $3,
                     error = $4
                 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            )
            .bind(id.to_string())
            .bind(owner)
            .bind(not_before)
            .bind(error)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                close_attempt!(&mut *tx, id, "retry", Some(error), now);
            }
            tx.commit().await?;
            changed
        });
        if changed == 1 {
            self.wake().await;
        }
        Ok(changed == 1)
    }

    /// Gives a running build back to the queue because its worker is shutting down: the
    /// attempt does not count against the build's attempts.
    pub async fn hand_back(&self, id: Uuid, owner: &str) -> Result<bool> {
        let now = now_millis();
        let reason = "its worker shut down before the build finished; queued again";
        let changed = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query(
                "UPDATE builds SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                     attempts = attempts - 1, error = $3
                 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            )
            .bind(id.to_string())
            .bind(owner)
            .bind(reason)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                close_attempt!(&mut *tx, id, "handed_back", Some(reason), now);
            }
            tx.commit().await?;
            changed
        });
        if changed == 1 {
            self.wake().await;
        }
        Ok(changed == 1)
    }

    /// How many of a repository's builds are running now.
    pub async fn running_builds(&self, repository_id: Uuid) -> Result<i64> {
        let (count,): (i64,) = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM builds WHERE repository_id = $1 AND status = 'running'",
            )
            .bind(repository_id.to_string())
            .fetch_one(pool)
            .await?
        });
        Ok(count)
    }

    /// A build and its attempts, read from one snapshot, so that an attempt's outcome and the
    /// build's state always agree (they change in one transaction).
    pub async fn build_with_attempts(
        &self,
        id: Uuid,
    ) -> Result<Option<(BuildRecord, Vec<AttemptRecord>)>> {
        let read = with_pool!(self, read, |pool| {
            let mut tx = pool.begin_snapshot().await?;
            let row: Option<BuildRow> =
                sqlx::query_as(concat!(build_select!(), " WHERE b.id = $1"))
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            let attempts: Vec<AttemptRecord> = sqlx::query_as(
                "SELECT attempt, worker, started_at, finished_at, outcome, error FROM build_attempts
                 WHERE build_id = $1 ORDER BY started_at, id",
            )
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            (row, attempts)
        });
        match read {
            (Some(row), attempts) => Ok(Some((BuildRecord::try_from(row)?, attempts))),
            (None, _) => Ok(None),
        }
    }

    /// Every attempt at a build, in order.
    pub async fn build_attempts(&self, id: Uuid) -> Result<Vec<AttemptRecord>> {
        let rows: Vec<AttemptRecord> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT attempt, worker, started_at, finished_at, outcome, error FROM build_attempts
                 WHERE build_id = $1 ORDER BY started_at, id",
            )
            .bind(id.to_string())
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Extends the lease of a running build, and says whether someone asked it to stop.
    pub async fn heartbeat(&self, id: Uuid, owner: &str, lease: Duration) -> Result<Lease> {
        let expires = now_millis().saturating_add(duration_millis(lease));
        let row: Option<(bool,)> = with_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE builds SET lease_expires_at = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'running'
                 RETURNING cancel_requested",
            )
            .bind(id.to_string())
            .bind(owner)
            .bind(expires)
            .fetch_optional(pool)
            .await?
        });
        Ok(match row {
            None => Lease::Lost,
            Some((true,)) => Lease::CancelRequested,
            Some((false,)) => Lease::Held,
        })
    }

    /// Who holds `tag` of `image`, if anyone.
    pub async fn tag_holder(&self, image: &str, tag: &str) -> Result<Option<TagHolder>> {
        let row: Option<TagHolder> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT t.build_id, t.git_ref, t.commit_sha, t.build_queued_at, t.pushed_at IS NOT NULL AS pushed,
                     COALESCE(b.status = 'running', FALSE) AS holder_running
                 FROM pushed_tags t LEFT JOIN builds b ON b.id = t.build_id
                 WHERE t.image = $1 AND t.tag = $2",
            )
            .bind(image)
            .bind(tag)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Takes `tag` for `build` if its holder is still `expected` (`None`: nobody holds it):
    /// a compare-and-set, so two builds deciding at once cannot both win.
    pub async fn take_tag(
        &self,
        build: &BuildRecord,
        tag: &str,
        expected: Option<&str>,
    ) -> Result<bool> {
        let now = now_millis();
        let changed = with_pool!(self, write, |pool| {
            match expected {
                None => sqlx::query(
                    "INSERT INTO pushed_tags (image, tag, build_id, git_ref, commit_sha, build_queued_at, claimed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (image, tag) DO NOTHING",
                )
                .bind(&build.image)
                .bind(tag)
                .bind(build.id.to_string())
                .bind(&build.git_ref)
                .bind(&build.commit)
                .bind(build.queued_at)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
                Some(holder) => sqlx::query(
                    "UPDATE pushed_tags SET build_id = $3, git_ref = $4, commit_sha = $5, build_queued_at = $6,
                         claimed_at = $7, pushed_at = NULL
                     WHERE image = $1 AND tag = $2 AND build_id = $8",
                )
                .bind(&build.image)
                .bind(tag)
                .bind(build.id.to_string())
                .bind(&build.git_ref)
                .bind(&build.commit)
                .bind(build.queued_at)
                .bind(now)
                .bind(holder)
                .execute(pool)
                .await?
                .rows_affected(),
            }
        });
        Ok(changed == 1)
    }

    /// Records that `build` finished pushing `tag` of `image`.
    pub async fn tag_pushed(&self, image: &str, tag: &str, build: Uuid) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::query("UPDATE pushed_tags SET pushed_at = $4 WHERE image = $1 AND tag = $2 AND build_id = $3")
                .bind(image)
                .bind(tag)
                .bind(build.to_string())
                .bind(now_millis())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records the end of a running build; false if `owner` no longer holds its lease (the
    /// build was reaped meanwhile), in which case nothing changes.
    pub async fn finish_build(&self, id: Uuid, owner: &str, result: &BuildResult) -> Result<bool> {
        self.finish_build_with_outcome(id, owner, result, result.status.as_str())
            .await
    }

    /// Fails a running build because its infrastructure failed on the last attempt it had:
    /// like [`Store::finish_build`] with `failed`, but the attempt's outcome is
    /// [`INFRASTRUCTURE_FAILURE`], which tells it from a failure of the commit itself.
    pub async fn fail_build_for_infrastructure(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
    ) -> Result<bool> {
        let result = BuildResult {
            status: BuildStatus::Failed,
            error: Some(error.to_owned()),
            digest: None,
        };
        self.finish_build_with_outcome(id, owner, &result, INFRASTRUCTURE_FAILURE)
            .await
    }

    /// Whether a failed build failed for infrastructure reasons rather than because of the
    /// commit: its last attempt ended as [`INFRASTRUCTURE_FAILURE`] (the worker used the last
    /// attempt on an engine, network or registry failure) or `lost` (its worker stopped
    /// responding during the last attempt).
    pub async fn failed_for_infrastructure(&self, id: Uuid) -> Result<bool> {
        let last: Option<(Option<String>,)> = with_pool!(self, write, |pool| {
            sqlx::query_as(
                "SELECT outcome FROM build_attempts WHERE build_id = $1
                 ORDER BY started_at DESC, id DESC LIMIT 1",
            )
            .bind(id.to_string())
            .fetch_optional(pool)
            .await?
        });
        Ok(matches!(
            last,
            Some((Some(outcome),)) if outcome == INFRASTRUCTURE_FAILURE || outcome == "lost"
        ))
    }

    async fn finish_build_with_outcome(
        &self,
        id: Uuid,
        owner: &str,
        result: &BuildResult,
        attempt_outcome: &str,
    ) -> Result<bool> {
        let now = now_millis();
        let affected = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let affected = sqlx::query(
                "UPDATE builds SET status = $3, error = $4, digest = $5, finished_at = $6,
                     lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            )
            .bind(id.to_string())
            .bind(owner)
            .bind(result.status.as_str())
            .bind(result.error.as_deref())
            .bind(result.digest.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if affected == 1 {
                close_attempt!(&mut *tx, id, attempt_outcome, result.error.as_deref(), now);
            }
            tx.commit().await?;
            affected
        });
        Ok(affected == 1)
    }

    /// Cancels a build: a queued one at once, a running one by asking its worker to stop
    /// (seen on its next heartbeat, and before every push). `reason` becomes the build's error.
    pub async fn cancel_build(&self, id: Uuid, reason: &str) -> Result<Option<CancelOutcome>> {
        let now = now_millis();
        let status: Option<(String,)> = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let status: Option<(String,)> =
                sqlx::query_as("SELECT status FROM builds WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query(
                "UPDATE builds SET
                     status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                     finished_at = CASE WHEN status = 'queued' THEN $2 ELSE finished_at END,
                     cancel_requested = CASE WHEN status = 'running' THEN TRUE ELSE cancel_requested END,
                     error = $3
                 WHERE id = $1 AND status IN ('queued', 'running')",
            )
            .bind(id.to_string())
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            status
        });
        let Some((status,)) = status else {
            return Ok(None);
        };
        let status: BuildStatus = status.parse().map_err(StoreError::Corrupt)?;
        Ok(Some(match status {
            BuildStatus::Queued => CancelOutcome::Cancelled,
            BuildStatus::Running => CancelOutcome::Requested,
            finished => CancelOutcome::AlreadyFinished(finished),
        }))
    }

    /// Whether someone asked a running build to stop; checked right before each push.
    pub async fn cancel_requested(&self, id: Uuid) -> Result<bool> {
        let row: Option<(bool,)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT cancel_requested FROM builds WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.is_some_and(|(requested,)| requested))
    }

    /// Queues a new build that repeats a finished one (same rule, ref, commit, tags and
    /// options), linked to it. `None` if the build does not exist or has not finished.
    pub async fn retry_build(&self, id: Uuid) -> Result<Option<Uuid>> {
        let new_id = Uuid::now_v7();
        let inserted = with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO builds (id, repository_id, delivery_id, trigger, rule_index, git_ref, commit_sha, image,
                     tags_json, dockerfile, context, options_json, before_sha, message_checked, retry_of, status, queued_at)
                 SELECT $2, repository_id, NULL, 'retry', rule_index, git_ref, commit_sha, image, tags_json,
                     dockerfile, context, options_json, before_sha, TRUE, id, 'queued', $3
                 FROM builds WHERE id = $1 AND status IN ('succeeded', 'failed', 'cancelled', 'skipped')",
            )
            .bind(id.to_string())
            .bind(new_id.to_string())
            .bind(now_millis())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            return Ok(None);
        }
        self.wake().await;
        Ok(Some(new_id))
    }

    /// Puts running builds whose lease expired back in the queue (their worker is gone), or
    /// fails them once they have used `max_attempts`. Returns how many builds it touched.
    pub async fn reap_expired_leases(&self, max_attempts: u32) -> Result<u64> {
        let now = now_millis();
        let affected = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let lost: Vec<(String, i64, bool, Option<String>)> = sqlx::query_as(
                "SELECT id, attempts, cancel_requested, error FROM builds
                 WHERE status = 'running' AND lease_expires_at < $1",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for (id, attempts, cancel_requested, reason) in &lost {
                let exhausted = *attempts >= i64::from(max_attempts);
                // A build someone asked to stop is not run again when its worker dies.
                let (status, error) = if *cancel_requested {
                    (
                        "cancelled",
                        reason.clone().unwrap_or_else(|| "cancelled".to_owned()),
                    )
                } else if exhausted {
                    (
                        "failed",
                        format!(
                            "the worker running attempt {attempts} stopped responding, and the build has used all {max_attempts} attempts"
                        ),
                    )
                } else {
                    (
                        "queued",
                        format!(
                            "the worker running attempt {attempts} stopped responding; queued again"
                        ),
                    )
                };
                sqlx::query(
                    "UPDATE builds SET status = $2, lease_owner = NULL, lease_expires_at = NULL, error = $3,
                         finished_at = CASE WHEN $2 = 'queued' THEN NULL ELSE $4 END
                     WHERE id = $1 AND status = 'running'",
                )
                .bind(id)
                .bind(status)
                .bind(&error)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let uuid = Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                close_attempt!(&mut *tx, uuid, "lost", Some(error.as_str()), now);
            }
            tx.commit().await?;
            lost.len() as u64
        });
        if affected > 0 {
            self.wake().await;
        }
        Ok(affected)
    }

    // ----- workers ------------------------------------------------------------------------

    /// Records that a worker is alive, with its health.
    pub async fn report_worker(&self, worker: &WorkerRecord) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO workers (id, hostname, slots, started_at, last_seen_at, problem)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET last_seen_at = $5, problem = $6",
            )
            .bind(&worker.id)
            .bind(&worker.hostname)
            .bind(worker.slots)
            .bind(worker.started_at)
            .bind(worker.last_seen_at)
            .bind(worker.problem.as_deref())
            .execute(pool)
            .await?;
            // Workers gone for a day are forgotten.
            sqlx::query("DELETE FROM workers WHERE last_seen_at < $1")
                .bind(worker.last_seen_at - 86_400_000)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Workers seen since `since` (Unix milliseconds).
    pub async fn workers_seen_since(&self, since: i64) -> Result<Vec<WorkerRecord>> {
        let rows: Vec<WorkerRecord> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, hostname, slots, started_at, last_seen_at, problem FROM workers
                 WHERE last_seen_at >= $1 ORDER BY started_at, id",
            )
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Removes a worker that is shutting down.
    pub async fn forget_worker(&self, id: &str) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM workers WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    // ----- logs ---------------------------------------------------------------------------

    /// Appends one chunk to a build's log. Chunks are numbered by the writer, so a retried
    /// append cannot duplicate output.
    pub async fn append_log(&self, build_id: Uuid, seq: i64, data: &[u8]) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::query(
                // The offset is computed from the chunk before, so it always agrees with what
                // is stored, even when a chunk was lost. (`WHERE TRUE` keeps SQLite from reading
                // `ON CONFLICT` as a join constraint.)
                "INSERT INTO build_log_chunks (build_id, seq, data, created_at, start_offset)
                 SELECT $1, $2, $3, $4, COALESCE((SELECT COALESCE(start_offset, 0) + length(data)
                     FROM build_log_chunks WHERE build_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT 1), 0)
                 WHERE TRUE ON CONFLICT (build_id, seq) DO NOTHING",
            )
            .bind(build_id.to_string())
            .bind(seq)
            .bind(data)
            .bind(now_millis())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The highest chunk number stored for a build, or 0; a retried attempt continues after it.
    pub async fn last_log_seq(&self, build_id: Uuid) -> Result<i64> {
        let (seq,): (Option<i64>,) = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT MAX(seq) FROM build_log_chunks WHERE build_id = $1")
                .bind(build_id.to_string())
                .fetch_one(pool)
                .await?
        });
        Ok(seq.unwrap_or(0))
    }

    /// Up to `limit` log chunks after `after_seq`, in order; read page by page so that a log
    /// is never loaded whole.
    pub async fn log_chunks(
        &self,
        build_id: Uuid,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<LogChunk>> {
        let rows: Vec<(i64, Vec<u8>)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT seq, data FROM build_log_chunks WHERE build_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(build_id.to_string())
            .bind(after_seq)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(seq, data)| LogChunk { seq, data })
            .collect())
    }
}

/// The columns of a [`BuildRecord`]; a macro so queries built from it stay `'static` text.
macro_rules! build_select {
    () => {
        "SELECT b.id, r.name AS repository, b.repository_id, b.delivery_id, b.trigger, b.git_ref, b.commit_sha, b.image,
            b.tags_json, b.dockerfile, b.context, b.options_json, b.before_sha, b.message_checked, b.rule_index,
            b.cancel_requested, b.retry_of, r.build_timeout_secs AS timeout_secs, r.memory_limit_bytes, r.cpu_limit_millis,
            r.max_context_bytes, b.not_before, b.status, b.error, b.digest, b.queued_at, b.started_at,
            b.finished_at, b.attempts
         FROM builds b JOIN repositories r ON r.id = b.repository_id"
    };
}
use build_select;

/// Marks the open attempt of build `$id` as ended with `$outcome`.
macro_rules! close_attempt {
    ($executor:expr, $id:expr, $outcome:expr, $error:expr, $now:expr) => {{
        let id: Uuid = $id;
        let error: Option<&str> = $error;
        sqlx::query(
            "UPDATE build_attempts SET finished_at = $2, outcome = $3, error = $4
             WHERE build_id = $1 AND finished_at IS NULL",
        )
        .bind(id.to_string())
        .bind($now)
        .bind($outcome)
        .bind(error)
        .execute($executor)
        .await?;
    }};
}
use close_attempt;

/// The columns of a [`TriggerRecord`].
macro_rules! trigger_select {
    () => {
        "SELECT t.id, t.repository_id, r.name AS repository, t.name, t.created_at, t.revoked_at, t.last_used_at
         FROM triggers t JOIN repositories r ON r.id = t.repository_id"
    };
}
use trigger_select;

/// The columns of a [`DeliveryRecord`].
macro_rules! delivery_select {
    () => {
        "SELECT id, repository_id, repository_name, provider, event, forge_delivery_id, source_address,
            received_at, status_code, verification, outcome, decisions_json, response_json, headers_json,
            body IS NOT NULL AS has_body, redelivery_of
         FROM deliveries"
    };
}
use delivery_select;

/// Claims the oldest runnable queued build: not backing off, of an enabled repository, and
/// within its repository's concurrency limit. The repository's settings are read by correlated
/// subqueries rather than a join, so PostgreSQL's `FOR UPDATE` locks the build row only. On SQLite the single write connection serialises
/// claims, so the sub-select cannot hand one build to two workers; PostgreSQL's variant adds
/// `FOR UPDATE SKIP LOCKED`, so concurrent claims neither wait on nor collide with each other.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE builds SET status = 'running', lease_owner = $1, lease_expires_at = $2,
                 started_at = $3, attempts = attempts + 1
             WHERE id = (SELECT b.id FROM builds b
                         WHERE b.status = 'queued' AND (b.not_before IS NULL OR b.not_before <= $3)
                           -- The repository is enabled: a disabled one's builds wait, queued,
                           -- until it is enabled again.
                           AND (SELECT r.enabled FROM repositories r WHERE r.id = b.repository_id)
                           -- The repository's concurrency limit (0: none) is not reached.
                           AND ((SELECT r.max_concurrent_builds FROM repositories r WHERE r.id = b.repository_id) = 0
                                OR (SELECT COUNT(*) FROM builds x WHERE x.repository_id = b.repository_id AND x.status = 'running')
                                   < (SELECT r.max_concurrent_builds FROM repositories r WHERE r.id = b.repository_id))
                         ORDER BY b.queued_at, b.id LIMIT 1",
            $lock,
            ")"
        )
    };
}
use claim_sql;

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A database URL with any password replaced, for error messages and `config show`: both
/// `user:password@` and a `password=` query parameter (which sqlx also accepts).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &base[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &base[..scheme_end + 3], user, &base[at..])
        }
        _ => base.to_owned(),
    };
    match query {
        None => base,
        Some(query) => {
            let parts: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if key.eq_ignore_ascii_case("password")
                            || key.eq_ignore_ascii_case("sslpassword") =>
                    {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", parts.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw&sslmode=disable"),
            "postgres://h/db?user=u&password=***&sslmode=disable"
        );
    }
}
