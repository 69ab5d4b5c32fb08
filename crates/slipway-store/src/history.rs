//! Reading build history at scale: filtered, keyset-paginated build lists, the phases of each
//! build for its timeline, and logs read from any byte offset.

use slipway_core::BuildStatus;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::{Backend, BuildRecord, BuildRow, Result, Store, StoreError, build_select, now_millis};

/// Which builds a list shows. Every filter is optional; `readable_by` limits the list to the
/// repositories a user may read (`None`: no limit, for global readers).
#[derive(Debug, Clone, Default)]
pub struct BuildFilter {
    pub repository_id: Option<Uuid>,
    pub status: Option<BuildStatus>,
    pub git_ref: Option<String>,
    /// Builds queued at or after this time (Unix milliseconds).
    pub since: Option<i64>,
    pub readable_by: Option<Readable>,
}

/// The repositories a caller may read: those open to anonymous readers, plus (for a user)
/// those they have a grant on; optionally only one repository (a token limited to it).
#[derive(Debug, Clone, Default)]
pub struct Readable {
    pub user_id: Option<Uuid>,
    pub only_repository: Option<Uuid>,
}

/// Where a page of a newest-first list ends: the last build's queue time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildCursor {
    pub queued_at: i64,
    pub id: Uuid,
}

impl BuildCursor {
    /// The cursor as opaque text for URLs.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.queued_at, self.id.simple())
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (queued_at, id) = text.split_once('_')?;
        Some(Self {
            queued_at: queued_at.parse().ok()?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

/// One phase of one attempt of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildEvent {
    pub attempt: i64,
    pub state: String,
    pub at: i64,
}

/// A piece of a log with the byte offset of its first byte.
#[derive(Debug, Clone)]
pub struct LogPiece {
    pub seq: i64,
    pub offset: i64,
    pub data: Vec<u8>,
}

/// A build's counts by status, for metrics and the overview.
#[derive(Debug, Clone, Default)]
pub struct QueueCounts {
    pub queued: i64,
    pub running: i64,
}

/// How [`build_select!`] joins a build to its repository.
const BUILD_JOIN: &str = "FROM builds b JOIN repositories r ON r.id = b.repository_id";

/// The list query for `filter` and `cursor`, assembled from fixed fragments only: every value
/// is a bound parameter, numbered in the order [`bind_list!`] binds them (the page size last).
fn list_sql(select: &str, filter: &BuildFilter, cursor: Option<BuildCursor>) -> String {
    // SQLite takes `CROSS JOIN` as "builds first": it then reads builds along an index in the
    // list's order and stops after one page, where on its own it may start from the (few)
    // repositories and sort every matching build. PostgreSQL plans the same query freely.
    let columns = select
        .split_once(BUILD_JOIN)
        .map_or(select, |(columns, _)| columns);
    let mut sql = format!("{columns}FROM builds b CROSS JOIN repositories r");
    let mut clauses: Vec<String> = vec!["r.id = b.repository_id".to_owned()];
    let mut next = 0;
    let mut param = || {
        next += 1;
        format!("${next}")
    };
    if filter.repository_id.is_some() {
        clauses.push(format!("b.repository_id = {}", param()));
    }
    if filter.status.is_some() {
        clauses.push(format!("b.status = {}", param()));
    }
    if filter.git_ref.is_some() {
        clauses.push(format!("b.git_ref = {}", param()));
    }
    if filter.since.is_some() {
        clauses.push(format!("b.queued_at >= {}", param()));
    }
    if let Some(readable) = &filter.readable_by {
        let mut allowed = String::from("r.anonymous_read = TRUE");
        if readable.user_id.is_some() {
            allowed.push_str(&format!(
                " OR b.repository_id IN (SELECT repository_id FROM repository_grants WHERE user_id = {})",
                param()
            ));
        }
        clauses.push(format!("({allowed})"));
        if readable.only_repository.is_some() {
            clauses.push(format!("b.repository_id = {}", param()));
        }
    }
    if cursor.is_some() {
        let (at, id) = (param(), param());
        // A row-value comparison, which both databases read as one range of the index.
        clauses.push(format!("(b.queued_at, b.id) < ({at}, {id})"));
    }
    sql.push_str(" WHERE ");
    sql.push_str(&clauses.join(" AND "));
    sql.push_str(&format!(
        " ORDER BY b.queued_at DESC, b.id DESC LIMIT {}",
        param()
    ));
    sql
}

/// Binds the values of [`list_sql`]'s parameters, in its order (all but the page size).
macro_rules! bind_list {
    ($query:expr, $filter:expr, $cursor:expr) => {{
        let filter: &BuildFilter = $filter;
        let cursor: Option<BuildCursor> = $cursor;
        let mut query = $query;
        if let Some(repository_id) = filter.repository_id {
            query = query.bind(repository_id.to_string());
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(git_ref) = &filter.git_ref {
            query = query.bind(git_ref.clone());
        }
        if let Some(since) = filter.since {
            query = query.bind(since);
        }
        if let Some(readable) = &filter.readable_by {
            if let Some(user_id) = readable.user_id {
                query = query.bind(user_id.to_string());
            }
            if let Some(only) = readable.only_repository {
                query = query.bind(only.to_string());
            }
        }
        if let Some(cursor) = cursor {
            query = query.bind(cursor.queued_at).bind(cursor.id.to_string());
        }
        query
    }};
}

impl Store {
    /// One page of builds, newest first, after `cursor`; asks for one more than `limit` so the
    /// caller knows whether another page follows. Every filter combination is served by one of
    /// the `builds_by_*_time` indexes.
    pub async fn list_builds(
        &self,
        filter: &BuildFilter,
        cursor: Option<BuildCursor>,
        limit: i64,
    ) -> Result<Vec<BuildRecord>> {
        let sql = list_sql(build_select!(), filter, cursor);
        let rows: Vec<BuildRow> = with_pool!(self, read, |pool| {
            bind_list!(sqlx::query_as(AssertSqlSafe(sql.clone())), filter, cursor)
                .bind(limit + 1)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(BuildRecord::try_from).collect()
    }

    /// How the database runs [`Store::list_builds`] for these arguments, one line per plan
    /// step (SQLite's `EXPLAIN QUERY PLAN`, PostgreSQL's `EXPLAIN`): for tests that hold the
    /// list to its indexes and for the history benchmark.
    pub async fn list_builds_plan(
        &self,
        filter: &BuildFilter,
        cursor: Option<BuildCursor>,
        limit: i64,
    ) -> Result<Vec<String>> {
        let select = list_sql(build_select!(), filter, cursor);
        let lines = match &self.backend {
            Backend::Sqlite { read, .. } => {
                let sql = format!("EXPLAIN QUERY PLAN {select}");
                let rows: Vec<(i64, i64, i64, String)> =
                    bind_list!(sqlx::query_as(AssertSqlSafe(sql)), filter, cursor)
                        .bind(limit + 1)
                        .fetch_all(read)
                        .await?;
                rows.into_iter().map(|(.., detail)| detail).collect()
            }
            Backend::Postgres(pool) => {
                let sql = format!("EXPLAIN {select}");
                let rows: Vec<(String,)> =
                    bind_list!(sqlx::query_as(AssertSqlSafe(sql)), filter, cursor)
                        .bind(limit + 1)
                        .fetch_all(pool)
                        .await?;
                rows.into_iter().map(|(line,)| line).collect()
            }
        };
        Ok(lines)
    }

    /// The status of a repository's newest finished build (skipped ones aside), or of the
    /// newest finished one that carries `tag`: what its badge shows. Either is one index read
    /// from the newest end, which stops at the first finished build: `builds_by_repository_time`,
    /// or `build_tags_by_repository_tag_time` for a tag (`build_tags` is kept by triggers).
    /// The status is excluded with `NOT IN`, which no index can serve, so that neither
    /// database is tempted to read every finished build by status and sort them.
    pub async fn newest_finished_status(
        &self,
        repository_id: Uuid,
        tag: Option<&str>,
    ) -> Result<Option<BuildStatus>> {
        let row: Option<(String,)> = with_pool!(self, read, |pool| {
            match tag {
                None => {
                    sqlx::query_as(
                        "SELECT status FROM builds
                         WHERE repository_id = $1 AND status NOT IN ('queued', 'running', 'skipped')
                         ORDER BY queued_at DESC, id DESC LIMIT 1",
                    )
                    .bind(repository_id.to_string())
                    .fetch_optional(pool)
                    .await?
                }
                // `CROSS JOIN` makes SQLite read the tag's index first, in order, as in
                // `list_sql`; PostgreSQL plans it as the inner join it is.
                Some(tag) => {
                    sqlx::query_as(
                        "SELECT b.status FROM build_tags t CROSS JOIN builds b
                         WHERE b.id = t.build_id AND t.repository_id = $1 AND t.tag = $2
                           AND b.status NOT IN ('queued', 'running', 'skipped')
                         ORDER BY t.queued_at DESC, t.build_id DESC LIMIT 1",
                    )
                    .bind(repository_id.to_string())
                    .bind(tag)
                    .fetch_optional(pool)
                    .await?
                }
            }
        });
        row.map(|(status,)| status.parse().map_err(StoreError::Corrupt))
            .transpose()
    }

    /// Notes that a build's attempt entered a phase (cloning, building, pushing).
    pub async fn record_build_event(
        &self,
        build_id: Uuid,
        attempt: i64,
        state: &str,
    ) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO build_events (id, build_id, attempt, state, at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(build_id.to_string())
            .bind(attempt)
            .bind(state)
            .bind(now_millis())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn build_events(&self, build_id: Uuid) -> Result<Vec<BuildEvent>> {
        let rows: Vec<(i64, String, i64)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT attempt, state, at FROM build_events WHERE build_id = $1 ORDER BY at, id",
            )
            .bind(build_id.to_string())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(attempt, state, at)| BuildEvent { attempt, state, at })
            .collect())
    }

    /// The log's length in bytes so far.
    pub async fn log_size(&self, build_id: Uuid) -> Result<i64> {
        let (size,): (Option<i64>,) = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT MAX(COALESCE(start_offset, 0) + length(data)) FROM build_log_chunks WHERE build_id = $1",
            )
            .bind(build_id.to_string())
            .fetch_one(pool)
            .await?
        });
        Ok(size.unwrap_or(0))
    }

    /// Up to `limit` log pieces holding bytes at or after `offset`, in order.
    pub async fn log_from(&self, build_id: Uuid, offset: i64, limit: i64) -> Result<Vec<LogPiece>> {
        let rows: Vec<(i64, Option<i64>, Vec<u8>)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                // The chunk holding `offset` is the last one starting at or before it, found
                // along (build_id, start_offset); the scan then starts there instead of at the
                // log's first chunk. (Chunks stored before offsets were kept have none, and are
                // all read from the start, as before.)
                "SELECT seq, start_offset, data FROM build_log_chunks
                 WHERE build_id = $1
                   AND seq >= COALESCE((SELECT seq FROM build_log_chunks
                       WHERE build_id = $1 AND start_offset <= $2
                       ORDER BY start_offset DESC LIMIT 1), 0)
                   AND COALESCE(start_offset, 0) + length(data) > $2
                 ORDER BY seq LIMIT $3",
            )
            .bind(build_id.to_string())
            .bind(offset)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(seq, start, data)| LogPiece {
                seq,
                offset: start.unwrap_or(0),
                data,
            })
            .collect())
    }

    /// How many builds wait and how many run, across the fleet.
    pub async fn queue_counts(&self) -> Result<QueueCounts> {
        let rows: Vec<(String, i64)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT status, COUNT(*) FROM builds WHERE status IN ('queued', 'running') GROUP BY status",
            )
            .fetch_all(pool)
            .await?
        });
        let mut counts = QueueCounts::default();
        for (status, count) in rows {
            match status.as_str() {
                "queued" => counts.queued = count,
                "running" => counts.running = count,
                other => return Err(StoreError::Corrupt(format!("status {other}"))),
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_query_keeps_the_build_columns_and_joins_builds_first() {
        let sql = list_sql(build_select!(), &BuildFilter::default(), None);
        assert!(
            sql.contains("FROM builds b CROSS JOIN repositories r WHERE r.id = b.repository_id"),
            "{sql}"
        );
        assert!(
            sql.starts_with("SELECT b.id, r.name AS repository"),
            "{sql}"
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = BuildCursor {
            queued_at: 1_700_000_000_123,
            id: Uuid::now_v7(),
        };
        assert_eq!(BuildCursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(BuildCursor::decode("x_y"), None);
        assert_eq!(BuildCursor::decode("12"), None);
    }
}
