//! The notifications outbox: commit statuses and outgoing webhooks.
//!
//! Database triggers record every status a build takes in `build_transitions`, whatever code
//! path changed it. A dispatcher claims undispatched transitions (with a lease, so many
//! processes can run one) and turns each into the notifications it calls for, in one
//! transaction. Senders claim due notifications (also leased), deliver them, and record every
//! attempt; a failed attempt is retried later, and nothing here ever touches a build.

use uuid::Uuid;

use crate::{
    Backend, BeginWrite, BuildRecord, BuildRow, Result, Store, StoreError, build_select, now_millis,
};

/// A status a build took, not yet turned into notifications.
#[derive(Debug, Clone)]
pub struct Transition {
    pub seq: i64,
    pub build_id: Uuid,
    /// The status the build took (`queued`, `running`, `succeeded`, …).
    pub status: String,
    pub at: i64,
}

/// What kind of notification a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    /// A commit status posted to the forge.
    Status,
    /// A request to one of the repository's outgoing webhooks.
    Webhook,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Status => "status",
            NotificationKind::Webhook => "webhook",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "status" => Ok(NotificationKind::Status),
            "webhook" => Ok(NotificationKind::Webhook),
            other => Err(StoreError::Corrupt(format!("notification kind {other:?}"))),
        }
    }
}

/// A notification to make.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub build_id: Uuid,
    pub repository_id: Uuid,
    pub kind: NotificationKind,
    pub hook_id: Option<Uuid>,
    /// The status state (`pending`, `success`, …) or the webhook event (`build_succeeded`, …).
    pub event: String,
    pub payload_json: String,
    pub transition_seq: i64,
    /// A status's slot on the forge (repository, commit and context), which orders it against
    /// the other statuses of that slot; `None` for webhooks.
    pub status_key: Option<String>,
}

/// A notification and how its delivery went so far.
#[derive(Debug, Clone)]
pub struct NotificationRecord {
    pub id: Uuid,
    pub build_id: Uuid,
    pub repository_id: Uuid,
    pub kind: NotificationKind,
    pub hook_id: Option<Uuid>,
    pub event: String,
    pub payload_json: String,
    pub transition_seq: i64,
    /// `pending`, `delivered`, `failed` (attempts used up) or `superseded` (a newer status of
    /// the same build was due, so this one was not sent).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub redelivery_of: Option<Uuid>,
    /// See [`NewNotification::status_key`]; `None` for webhooks and for statuses stored before
    /// keys were kept (those are ordered within their build only).
    pub status_key: Option<String>,
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: String,
    build_id: String,
    repository_id: String,
    kind: String,
    hook_id: Option<String>,
    event: String,
    payload_json: String,
    transition_seq: i64,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
    redelivery_of: Option<String>,
    status_key: Option<String>,
}

fn parse_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("id: {e}")))
}

impl TryFrom<NotificationRow> for NotificationRecord {
    type Error = StoreError;
    fn try_from(row: NotificationRow) -> Result<Self> {
        Ok(Self {
            id: parse_id(&row.id)?,
            build_id: parse_id(&row.build_id)?,
            repository_id: parse_id(&row.repository_id)?,
            kind: NotificationKind::parse(&row.kind)?,
            hook_id: row.hook_id.as_deref().map(parse_id).transpose()?,
            event: row.event,
            payload_json: row.payload_json,
            transition_seq: row.transition_seq,
            state: row.state,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            created_at: row.created_at,
            finished_at: row.finished_at,
            redelivery_of: row.redelivery_of.as_deref().map(parse_id).transpose()?,
            status_key: row.status_key,
        })
    }
}

macro_rules! notification_select {
    () => {
        "SELECT id, build_id, repository_id, kind, hook_id, event, payload_json, transition_seq, state,
             attempts, next_attempt_at, last_status_code, last_error, created_at, finished_at, redelivery_of,
             status_key
         FROM notifications"
    };
}

/// One attempt at delivering a notification.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NotificationAttempt {
    pub attempt: i64,
    pub at: i64,
    /// The HTTP status answered, if any answer came.
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
    /// The start of the answer's body, for people reading the history.
    pub response_excerpt: Option<String>,
}

/// What to do with a notification after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(i64),
    /// No attempts left, or a refusal that retrying cannot change.
    Failed,
}

/// What a manual redelivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redelivery {
    /// A new notification was queued.
    Queued(Uuid),
    /// There is no such notification.
    NotFound,
    /// This notification, or an earlier redelivery of the same one, is still pending (waiting
    /// for a retry or being sent): another copy would send it twice.
    StillPending(Uuid),
    /// A newer status of the same slot (commit and context) exists; sending this one again
    /// would leave the commit on an older state. The newer one is named, to redeliver instead.
    Superseded { by: Uuid, event: String },
}

/// An outgoing webhook of a repository (never its secret).
#[derive(Debug, Clone)]
pub struct HookRecord {
    pub id: Uuid,
    pub repository_id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct HookRow {
    id: String,
    repository_id: String,
    url: String,
    events_json: String,
    created_at: i64,
}

impl TryFrom<HookRow> for HookRecord {
    type Error = StoreError;
    fn try_from(row: HookRow) -> Result<Self> {
        Ok(Self {
            id: parse_id(&row.id)?,
            repository_id: parse_id(&row.repository_id)?,
            url: row.url,
            events: serde_json::from_str(&row.events_json)
                .map_err(|e| StoreError::Corrupt(format!("hook events: {e}")))?,
            created_at: row.created_at,
        })
    }
}

/// A repository's commit-status settings, with the token of an API-managed repository.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    pub report_status: bool,
    pub api_url: Option<String>,
    pub status_repository: Option<String>,
    pub stored_token: Option<slipway_core::Secret>,
}

/// `report_status`, `status_api_url`, `status_repository`, `status_token`.
type StatusRow = (bool, Option<String>, Option<String>, Option<String>);

impl Store {
    /// Claims up to `limit` undispatched transitions, oldest first, for `lease_ms`.
    pub async fn claim_transitions(
        &self,
        owner: &str,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Transition>> {
        let now = now_millis();
        let rows: Vec<(i64, String, String, i64)> = with_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE build_transitions SET lease_owner = $1, lease_expires_at = $2
                 WHERE seq IN (SELECT seq FROM build_transitions
                     WHERE dispatched = FALSE AND (lease_expires_at IS NULL OR lease_expires_at < $3)
                     ORDER BY seq LIMIT $4)
                   AND dispatched = FALSE AND (lease_expires_at IS NULL OR lease_expires_at < $3)
                 RETURNING seq, build_id, status, at",
            )
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut transitions: Vec<Transition> = rows
            .into_iter()
            .map(|(seq, build_id, status, at)| {
                Ok(Transition {
                    seq,
                    build_id: parse_id(&build_id)?,
                    status,
                    at,
                })
            })
            .collect::<Result<_>>()?;
        transitions.sort_by_key(|t| t.seq);
        Ok(transitions)
    }

    /// Stores the notifications made from claimed transitions and marks them dispatched, in one
    /// transaction; transitions whose lease passed to another dispatcher are left to it.
    pub async fn dispatch_transitions(
        &self,
        owner: &str,
        seqs: &[i64],
        notifications: &[NewNotification],
    ) -> Result<()> {
        let now = now_millis();
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            // One statement marks the whole batch; only placeholders are formatted into it.
            let mut kept: Vec<i64> = Vec::with_capacity(seqs.len());
            for chunk in seqs.chunks(500) {
                let placeholders = (0..chunk.len())
                    .map(|i| format!("${}", i + 2))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "UPDATE build_transitions SET dispatched = TRUE
                     WHERE lease_owner = $1 AND dispatched = FALSE AND seq IN ({placeholders})
                     RETURNING seq"
                );
                let mut query = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql)).bind(owner);
                for seq in chunk {
                    query = query.bind(*seq);
                }
                kept.extend(
                    query
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .map(|(seq,)| seq),
                );
            }
            for notification in notifications
                .iter()
                .filter(|n| kept.contains(&n.transition_seq))
            {
                sqlx::query(
                    "INSERT INTO notifications (id, build_id, repository_id, kind, hook_id, event, payload_json,
                         transition_seq, next_attempt_at, created_at, status_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
                )
                .bind(Uuid::now_v7().to_string())
                .bind(notification.build_id.to_string())
                .bind(notification.repository_id.to_string())
                .bind(notification.kind.as_str())
                .bind(notification.hook_id.map(|id| id.to_string()))
                .bind(&notification.event)
                .bind(&notification.payload_json)
                .bind(notification.transition_seq)
                .bind(now)
                .bind(notification.status_key.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims up to `limit` notifications that are due, oldest first, for `lease_ms`.
    pub async fn claim_notifications(
        &self,
        owner: &str,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>> {
        let now = now_millis();
        let ids: Vec<(String,)> = with_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE notifications SET lease_owner = $1, lease_expires_at = $2
                 WHERE id IN (SELECT id FROM notifications
                     WHERE state = 'pending' AND next_attempt_at <= $3
                       AND (lease_expires_at IS NULL OR lease_expires_at < $3)
                     ORDER BY next_attempt_at LIMIT $4)
                   AND state = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at < $3)
                 RETURNING id",
            )
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut claimed = Vec::new();
        for (id,) in ids {
            if let Some(notification) = self.notification(parse_id(&id)?).await? {
                claimed.push(notification);
            }
        }
        claimed.sort_by_key(|n| (n.transition_seq, n.created_at));
        Ok(claimed)
    }

    /// Extends `owner`'s lease on a pending notification; false when it is no longer theirs.
    pub async fn renew_notification_lease(
        &self,
        id: Uuid,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool> {
        let renewed = with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE notifications SET lease_expires_at = $3
                 WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
            )
            .bind(id.to_string())
            .bind(owner)
            .bind(now_millis() + lease_ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(renewed == 1)
    }

    pub async fn notification(&self, id: Uuid) -> Result<Option<NotificationRecord>> {
        let row: Option<NotificationRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(concat!(notification_select!(), " WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(NotificationRecord::try_from).transpose()
    }

    /// The newest status that makes this one stale, if any: a later status (by transition,
    /// the order the builds' changes happened in) of the same build or the same slot that is
    /// queued or sent. A forge must end on the slot's last state, never on an older one.
    pub async fn newer_status(
        &self,
        notification: &NotificationRecord,
    ) -> Result<Option<NotificationRecord>> {
        // Read through the writer, so that a sender holding the slot's lease sees what the
        // previous holder recorded.
        let row: Option<NotificationRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(concat!(
                notification_select!(),
                " WHERE kind = 'status' AND (build_id = $1 OR (status_key IS NOT NULL AND status_key = $3))
                     AND transition_seq > $2 AND state IN ('pending', 'delivered')
                 ORDER BY transition_seq DESC, created_at DESC LIMIT 1"
            ))
            .bind(notification.build_id.to_string())
            .bind(notification.transition_seq)
            .bind(notification.status_key.as_deref())
            .fetch_optional(pool)
            .await?
        });
        row.map(NotificationRecord::try_from).transpose()
    }

    /// Whether [`Store::newer_status`] finds one.
    pub async fn newer_status_exists(&self, notification: &NotificationRecord) -> Result<bool> {
        Ok(self.newer_status(notification).await?.is_some())
    }

    /// Takes (or renews) `owner`'s lease on a status slot for `lease_ms`; false when another
    /// owner holds an unexpired one. One statement on both databases: PostgreSQL locks the
    /// conflicting row and judges the condition on its latest version, and SQLite's single
    /// writer runs one at a time, so two senders can never both hold a slot.
    pub async fn acquire_status_lease(
        &self,
        status_key: &str,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool> {
        let now = now_millis();
        let taken: Option<(String,)> = with_pool!(self, write, |pool| {
            sqlx::query_as(
                "INSERT INTO status_send_leases (status_key, owner, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (status_key) DO UPDATE SET owner = $2, expires_at = $3
                     WHERE status_send_leases.owner = $2 OR status_send_leases.expires_at < $4
                 RETURNING owner",
            )
            .bind(status_key)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(taken.is_some())
    }

    /// Gives up `owner`'s lease on a status slot (nothing happens if it is another's by now).
    pub async fn release_status_lease(&self, status_key: &str, owner: &str) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM status_send_leases WHERE status_key = $1 AND owner = $2")
                .bind(status_key)
                .bind(owner)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Hands a claimed notification back unsent, due again at `not_before` (its slot is busy).
    pub async fn postpone_notification(
        &self,
        id: Uuid,
        owner: &str,
        not_before: i64,
    ) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE notifications SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = $3
                 WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
            )
            .bind(id.to_string())
            .bind(owner)
            .bind(not_before)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records an attempt and what comes next, if `owner` still holds the notification.
    pub async fn record_notification_attempt(
        &self,
        id: Uuid,
        owner: &str,
        attempt: &NotificationAttempt,
        after: AfterAttempt,
    ) -> Result<bool> {
        let now = now_millis();
        let (state, next, finished) = match after {
            AfterAttempt::Delivered => ("delivered", now, Some(now)),
            AfterAttempt::RetryAt(at) => ("pending", at, None),
            AfterAttempt::Failed => ("failed", now, Some(now)),
        };
        let changed = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query(
                "UPDATE notifications SET state = $3, attempts = attempts + 1, next_attempt_at = $4,
                     last_status_code = $5, last_error = $6, finished_at = $7,
                     lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id.to_string())
            .bind(owner)
            .bind(state)
            .bind(next)
            .bind(attempt.status_code)
            .bind(attempt.error.as_deref())
            .bind(finished)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                sqlx::query(
                    "INSERT INTO notification_attempts (id, notification_id, attempt, at, status_code, duration_ms, error, response_excerpt)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(Uuid::now_v7().to_string())
                .bind(id.to_string())
                .bind(attempt.attempt)
                .bind(attempt.at)
                .bind(attempt.status_code)
                .bind(attempt.duration_ms)
                .bind(attempt.error.as_deref())
                .bind(attempt.response_excerpt.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            changed
        });
        Ok(changed == 1)
    }

    /// Marks a claimed status notification as replaced by a newer one, unsent.
    pub async fn supersede_notification(&self, id: Uuid, owner: &str) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE notifications SET state = 'superseded', finished_at = $3, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id.to_string())
            .bind(owner)
            .bind(now_millis())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn notifications_for_build(&self, build_id: Uuid) -> Result<Vec<NotificationRecord>> {
        let rows: Vec<NotificationRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                notification_select!(),
                " WHERE build_id = $1 ORDER BY created_at, id"
            ))
            .bind(build_id.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(NotificationRecord::try_from).collect()
    }

    /// A hook's most recent deliveries, newest first.
    pub async fn hook_deliveries(
        &self,
        hook_id: Uuid,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>> {
        let rows: Vec<NotificationRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                notification_select!(),
                " WHERE hook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(hook_id.to_string())
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(NotificationRecord::try_from).collect()
    }

    pub async fn notification_attempts(&self, id: Uuid) -> Result<Vec<NotificationAttempt>> {
        let rows: Vec<NotificationAttempt> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT attempt, at, status_code, duration_ms, error, response_excerpt
                 FROM notification_attempts WHERE notification_id = $1 ORDER BY at, attempt",
            )
            .bind(id.to_string())
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Queues a notification again as a new one (a manual redelivery), linked to the original
    /// (the first of the chain, when a redelivery is redelivered), whose delivery id it reuses.
    /// Refused while a notification of the chain is still pending, and for a status that a
    /// newer one of its slot supersedes. The checks and the insert are one transaction that
    /// first writes the chain's first row, which PostgreSQL locks until the commit (SQLite's
    /// writer is exclusive anyway), so two redeliveries at once cannot both pass.
    pub async fn redeliver_notification(&self, id: Uuid) -> Result<Redelivery> {
        let Some(notification) = self.notification(id).await? else {
            return Ok(Redelivery::NotFound);
        };
        let root = notification.redelivery_of.unwrap_or(notification.id);
        let new_id = Uuid::now_v7();
        let now = now_millis();
        let outcome = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE notifications SET redelivery_of = redelivery_of WHERE id = $1")
                .bind(root.to_string())
                .execute(&mut *tx)
                .await?;
            let pending: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM notifications WHERE (id = $1 OR redelivery_of = $1) AND state = 'pending'
                 ORDER BY created_at LIMIT 1",
            )
            .bind(root.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            let newer: Option<(String, String)> = if notification.kind == NotificationKind::Status {
                sqlx::query_as(
                    "SELECT id, event FROM notifications
                     WHERE kind = 'status' AND (build_id = $1 OR (status_key IS NOT NULL AND status_key = $3))
                       AND transition_seq > $2 AND state IN ('pending', 'delivered', 'failed')
                     ORDER BY transition_seq DESC, created_at LIMIT 1",
                )
                .bind(notification.build_id.to_string())
                .bind(notification.transition_seq)
                .bind(notification.status_key.as_deref())
                .fetch_optional(&mut *tx)
                .await?
            } else {
                None
            };
            let outcome = match (pending, newer) {
                (Some((pending,)), _) => Redelivery::StillPending(parse_id(&pending)?),
                (None, Some((by, event))) => Redelivery::Superseded {
                    by: parse_id(&by)?,
                    event,
                },
                (None, None) => {
                    sqlx::query(
                        "INSERT INTO notifications (id, build_id, repository_id, kind, hook_id, event, payload_json,
                             transition_seq, next_attempt_at, created_at, redelivery_of, status_key)
                         SELECT $2, build_id, repository_id, kind, hook_id, event, payload_json, transition_seq, $3, $3,
                             $4, status_key
                         FROM notifications WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .bind(new_id.to_string())
                    .bind(now)
                    .bind(root.to_string())
                    .execute(&mut *tx)
                    .await?;
                    Redelivery::Queued(new_id)
                }
            };
            tx.commit().await?;
            outcome
        });
        Ok(outcome)
    }

    pub async fn create_hook(
        &self,
        repository_id: Uuid,
        url: &str,
        events: &[String],
        secret: &str,
    ) -> Result<HookRecord> {
        let id = Uuid::now_v7();
        let events_json =
            serde_json::to_string(events).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO outgoing_hooks (id, repository_id, url, events_json, secret, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id.to_string())
            .bind(repository_id.to_string())
            .bind(url)
            .bind(&events_json)
            .bind(secret)
            .bind(now_millis())
            .execute(pool)
            .await?;
        });
        self.hook(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a hook vanished as it was made".to_owned()))
    }

    pub async fn hook(&self, id: Uuid) -> Result<Option<HookRecord>> {
        let row: Option<HookRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(
                "SELECT id, repository_id, url, events_json, created_at FROM outgoing_hooks WHERE id = $1",
            )
            .bind(id.to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(HookRecord::try_from).transpose()
    }

    pub async fn hooks_for_repository(&self, repository_id: Uuid) -> Result<Vec<HookRecord>> {
        let rows: Vec<HookRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, repository_id, url, events_json, created_at FROM outgoing_hooks
                 WHERE repository_id = $1 ORDER BY created_at, id",
            )
            .bind(repository_id.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(HookRecord::try_from).collect()
    }

    /// The secret a hook's requests are signed with; only the sender reads it.
    pub async fn hook_secret(&self, id: Uuid) -> Result<Option<slipway_core::Secret>> {
        let row: Option<(String,)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT secret FROM outgoing_hooks WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(secret,)| slipway_core::Secret::new(secret)))
    }

    /// Deletes a hook; its delivery history goes with it.
    pub async fn delete_hook(&self, repository_id: Uuid, id: Uuid) -> Result<bool> {
        let deleted = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let deleted =
                sqlx::query("DELETE FROM outgoing_hooks WHERE id = $1 AND repository_id = $2")
                    .bind(id.to_string())
                    .bind(repository_id.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if deleted == 1 {
                sqlx::query(
                    "DELETE FROM notification_attempts WHERE notification_id IN (SELECT id FROM notifications WHERE hook_id = $1)",
                )
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM notifications WHERE hook_id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            deleted
        });
        Ok(deleted == 1)
    }

    /// The commit-status settings of a repository.
    pub async fn status_settings(&self, repository_id: Uuid) -> Result<Option<StatusSettings>> {
        let row: Option<StatusRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT report_status, status_api_url, status_repository, status_token
                     FROM repositories WHERE id = $1",
            )
            .bind(repository_id.to_string())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(report_status, api_url, status_repository, token)| StatusSettings {
                report_status,
                api_url,
                status_repository,
                stored_token: token.map(slipway_core::Secret::new),
            },
        ))
    }

    /// The tags a build holds in the registry (pushed, and not since taken by a newer build).
    pub async fn pushed_tags_of(&self, build_id: Uuid) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT tag FROM pushed_tags WHERE build_id = $1 AND pushed_at IS NOT NULL ORDER BY tag",
            )
            .bind(build_id.to_string())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(tag,)| tag).collect())
    }

    /// Forgets dispatched transitions and finished notifications (with their attempts) older
    /// than `before`, so the outbox does not grow without end; returns how many rows went.
    pub async fn purge_notifications(&self, before: i64) -> Result<u64> {
        let purged = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut purged = sqlx::query(
                "DELETE FROM notification_attempts WHERE notification_id IN
                     (SELECT id FROM notifications WHERE state <> 'pending' AND finished_at < $1)",
            )
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            purged += sqlx::query(
                "DELETE FROM notifications WHERE state <> 'pending' AND finished_at < $1",
            )
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Leases are deleted by their holder after each send; one left by a process that
            // died is only in the way once it has expired, and is forgotten then.
            purged += sqlx::query("DELETE FROM status_send_leases WHERE expires_at < $1")
                .bind(now_millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            purged +=
                sqlx::query("DELETE FROM build_transitions WHERE dispatched = TRUE AND at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            tx.commit().await?;
            purged
        });
        Ok(purged)
    }

    /// A build read through the writer pool, for the dispatcher, which must see what the
    /// transaction that recorded the transition wrote.
    /// The builds of `ids` (those that still exist), in one statement: what a dispatch pass
    /// reads for its batch of transitions, on the write pool like [`Store::build_for_dispatch`].
    pub async fn builds_for_dispatch(&self, ids: &[Uuid]) -> Result<Vec<BuildRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = (1..=ids.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Only placeholders are formatted into the statement; every id is bound.
        let sql = format!(
            concat!(build_select!(), " WHERE b.id IN ({})"),
            placeholders
        );
        let rows: Vec<BuildRow> = with_pool!(self, write, |pool| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for id in ids {
                query = query.bind(id.to_string());
            }
            query.fetch_all(pool).await?
        });
        rows.into_iter().map(BuildRecord::try_from).collect()
    }

    pub async fn build_for_dispatch(&self, id: Uuid) -> Result<Option<BuildRecord>> {
        let row: Option<BuildRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(concat!(build_select!(), " WHERE b.id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(BuildRecord::try_from).transpose()
    }
}
