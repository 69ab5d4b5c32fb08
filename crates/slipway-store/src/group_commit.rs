//! Group commit for webhook deliveries: the deliveries that arrive while one transaction
//! commits are written together by the next, so that many deliveries share one sync to disk
//! (and, on PostgreSQL, one round trip to commit) instead of each paying for its own.
//!
//! One task per [`crate::Store`] writes the groups. A caller hands it a delivery and waits for
//! the outcome, which arrives only after the transaction holding that delivery has committed:
//! the promise behind a 202 is unchanged. There is no waiting to fill a group — a delivery that
//! finds the writer idle is written at once, alone; a group forms only from deliveries that
//! queued up while an earlier one was being written.
//!
//! **Invariants:**
//! - A delivery's outcome is sent only after its transaction committed.
//! - One delivery's failure fails no other: a group that fails is written again one delivery
//!   per transaction, and each caller gets its own result.
//! - Within a group, deliveries are written in arrival order, so a repeat of a delivery key
//!   finds the first one's stored answer even when both are in the same group.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use slipway_core::CommitId;
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::metrics::{delivery_labels, upsert_samples_sql};
use crate::{
    Backend, BeginWrite as _, BuildPlacement, DeliveryAnswer, NewBuild, NewDelivery, RecordOutcome,
    Result, StoreError, Supersede,
};

/// The most deliveries one transaction writes. The server handles at most 64 webhook requests
/// at once, so a group rarely reaches it; the cap bounds how long the write lock is held.
const MAX_GROUP: usize = 64;

/// How a stored delivery is counted for `/metrics`, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTally {
    /// The repository's provider, as the metric's label shows it.
    pub provider: String,
    /// Verified, but nothing was planned to build.
    pub ignored: bool,
}

/// Renders a delivery's answer from where its builds ended up.
pub(crate) type RenderAnswer = Box<dyn Fn(&[BuildPlacement]) -> DeliveryAnswer + Send + Sync>;

/// What the caller wants written.
pub(crate) struct PendingDelivery {
    pub delivery: NewDelivery,
    pub builds: Vec<NewBuild>,
    /// Renders the answer once the builds' final ids are known. Called again if the group
    /// is retried one delivery at a time, so it must not consume what it renders from.
    pub render: RenderAnswer,
    pub tally: Option<DeliveryTally>,
}

struct Request {
    pending: PendingDelivery,
    reply: oneshot::Sender<Result<RecordOutcome>>,
}

/// What one delivery's write came to, before it is committed.
struct Written {
    outcome: RecordOutcome,
    created_builds: bool,
    /// The `(name, labels)` of the counter to add one to, if the delivery is counted.
    counted: Option<(String, String)>,
}

/// The handle callers use; cheap to clone. The writing task is started on first use, in the
/// runtime of that caller, and again if that runtime has ended since (as between tests).
#[derive(Debug, Clone)]
pub(crate) struct GroupCommitter {
    backend: Backend,
    queued: Arc<Notify>,
    sender: Arc<Mutex<Option<mpsc::Sender<Request>>>>,
}

impl GroupCommitter {
    pub fn new(backend: Backend, queued: Arc<Notify>) -> Self {
        Self {
            backend,
            queued,
            sender: Arc::default(),
        }
    }

    /// Writes `pending` in the next group and returns its outcome once committed.
    pub async fn write(&self, pending: PendingDelivery) -> Result<RecordOutcome> {
        let (reply, outcome) = oneshot::channel();
        let mut request = Request { pending, reply };
        // A writer whose runtime has ended drops its receiver; the request comes back and a
        // new writer takes it. Twice is enough: the second writer was started just now.
        for _ in 0..2 {
            let sender = self.sender();
            match sender.send(request).await {
                Ok(()) => {
                    return outcome.await.map_err(|_| StoreError::Interrupted)?;
                }
                Err(mpsc::error::SendError(returned)) => {
                    request = returned;
                    self.forget(&sender);
                }
            }
        }
        Err(StoreError::Interrupted)
    }

    fn sender(&self) -> mpsc::Sender<Request> {
        let mut slot = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = slot.as_ref().filter(|sender| !sender.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel(MAX_GROUP * 4);
        // The writer holds the pools, not the Store: when every Store handle is gone, so is
        // every sender, and the writer ends.
        tokio::spawn(run(self.backend.clone(), self.queued.clone(), receiver));
        *slot = Some(sender.clone());
        sender
    }

    fn forget(&self, dead: &mpsc::Sender<Request>) {
        let mut slot = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if slot
            .as_ref()
            .is_some_and(|sender| sender.same_channel(dead))
        {
            *slot = None;
        }
    }
}

/// Writes the deliveries of `$group` (a `&[Request]`) with `$tx`, with a handful of statements
/// for the whole group rather than several per delivery (every statement is a round trip to
/// the database, and they, not the disk, bounded a group's cost):
///
/// 1. every delivery row, with the answer rendered as if all of its builds were new (the
///    common case); a key seen before inserts nothing;
/// 2. every build of the inserted deliveries; one whose rule, ref and commit already has a
///    build inserts nothing, and its delivery's answer is rendered again and updated;
/// 3. the builds superseded by the new ones (same repository, rule and ref, at the commit each
///    push replaced): candidates found with one statement, the superseded ones updated;
/// 4. for a repeated key, the answer stored the first time — read last, so that a repeat of a
///    delivery earlier in the same group finds its final answer.
///
/// A macro so that one text serves both backends' transactions.
macro_rules! write_deliveries {
    ($tx:expr, $group:expr, $candidates:ident) => {{
        let group: &[Request] = $group;

        // 1. The deliveries, with optimistic answers.
        let mut answers: Vec<DeliveryAnswer> = group
            .iter()
            .map(|request| {
                let placements: Vec<BuildPlacement> = request
                    .pending
                    .builds
                    .iter()
                    .map(|build| BuildPlacement { id: build.id, created: true })
                    .collect();
                (request.pending.render)(&placements)
            })
            .collect();
        let sql = insert_deliveries_sql(group.len());
        let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql));
        for (request, answer) in group.iter().zip(&answers) {
            let delivery = &request.pending.delivery;
            query = bind_delivery_row!(query, delivery, answer);
        }
        let inserted: HashSet<String> = query
            .fetch_all(&mut **$tx)
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect();
        let is_inserted: Vec<bool> = group
            .iter()
            .map(|request| inserted.contains(&request.pending.delivery.id.to_string()))
            .collect();

        // 2. Their builds.
        let new_builds: Vec<(&NewDelivery, &NewBuild)> = group
            .iter()
            .zip(&is_inserted)
            .filter(|(_, inserted)| **inserted)
            .flat_map(|(request, _)| {
                request
                    .pending
                    .builds
                    .iter()
                    .map(move |build| (&request.pending.delivery, build))
            })
            .collect();
        let mut created: HashSet<String> = HashSet::with_capacity(new_builds.len());
        for chunk in new_builds.chunks(ROWS_PER_STATEMENT) {
            let sql = insert_builds_sql(chunk.len());
            let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql));
            for (delivery, build) in chunk {
                query = query
                    .bind(build.id.to_string())
                    .bind(delivery.repository_id.map(|id| id.to_string()))
                    .bind(delivery.id.to_string())
                    .bind(&build.trigger)
                    .bind(build.dedupe_key())
                    .bind(i64::try_from(build.plan.rule_index).unwrap_or(i64::MAX))
                    .bind(build.plan.git_ref.full())
                    .bind(build.plan.commit.as_str())
                    .bind(&build.image)
                    .bind(serde_json::to_string(&build.plan.tags).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                    .bind(&build.plan.dockerfile)
                    .bind(&build.plan.context)
                    .bind(delivery.received_at)
                    .bind(serde_json::to_string(&build.plan.options).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                    .bind(build.plan.before.as_ref().map(|c| c.as_str().to_owned()))
                    .bind(build.plan.message_checked);
            }
            created.extend(query.fetch_all(&mut **$tx).await?.into_iter().map(|(id,)| id));
        }

        // Deliveries with a build that existed already: their real placements and answer.
        let mut placements_of: Vec<Vec<BuildPlacement>> = Vec::with_capacity(group.len());
        for ((request, inserted), answer) in group.iter().zip(&is_inserted).zip(answers.iter_mut()) {
            let mut placements = Vec::with_capacity(request.pending.builds.len());
            if !inserted {
                placements_of.push(placements);
                continue;
            }
            let delivery = &request.pending.delivery;
            for build in &request.pending.builds {
                if created.contains(&build.id.to_string()) {
                    placements.push(BuildPlacement { id: build.id, created: true });
                    continue;
                }
                let (existing,): (String,) = sqlx::query_as(
                    "SELECT id FROM builds WHERE repository_id = $1 AND dedupe_key = $2",
                )
                .bind(delivery.repository_id.map(|id| id.to_string()))
                .bind(build.dedupe_key())
                .fetch_one(&mut **$tx)
                .await?;
                let id = Uuid::parse_str(&existing).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                placements.push(BuildPlacement { id, created: false });
            }
            if placements.iter().any(|placement| !placement.created) {
                *answer = (request.pending.render)(&placements);
                sqlx::query(
                    "UPDATE deliveries SET status_code = $2, response_json = $3, outcome = $4, decisions_json = $5
                     WHERE id = $1",
                )
                .bind(delivery.id.to_string())
                .bind(i64::from(answer.status_code))
                .bind(&answer.response_json)
                .bind(&answer.outcome)
                .bind(&answer.decisions_json)
                .execute(&mut **$tx)
                .await?;
            }
            placements_of.push(placements);
        }

        // 3. What the new builds supersede.
        let superseding: Vec<(&NewDelivery, &NewBuild, &CommitId)> = new_builds
            .iter()
            .filter(|(_, build)| created.contains(&build.id.to_string()))
            .filter(|(_, build)| build.supersedes != Supersede::Nothing)
            .filter_map(|(delivery, build)| build.plan.before.as_ref().map(|before| (*delivery, *build, before)))
            .collect();
        // The candidates are found for the whole group with one statement, and only builds
        // that really are superseded (rare) are updated, one by one.
        for chunk in superseding.chunks(ROWS_PER_STATEMENT) {
            let triples: Vec<(Option<String>, String, String)> = chunk
                .iter()
                .map(|(delivery, build, before)| {
                    (
                        delivery.repository_id.map(|id| id.to_string()),
                        build.plan.git_ref.full(),
                        before.as_str().to_owned(),
                    )
                })
                .collect();
            let candidates = $candidates(&mut **$tx, &triples).await?;
            for (id, repository_id, rule_index, git_ref, commit_sha, status) in candidates {
                let replacing = chunk.iter().find(|(delivery, build, before)| {
                    delivery.repository_id.map(|id| id.to_string()).as_deref() == Some(repository_id.as_str())
                        && i64::try_from(build.plan.rule_index).ok() == Some(rule_index)
                        && build.plan.git_ref.full() == git_ref
                        && before.as_str() == commit_sha
                        && build.id.to_string() != id
                        && (status == "queued"
                            || (status == "running" && build.supersedes == Supersede::QueuedAndRunning))
                });
                let Some((delivery, build, _)) = replacing else {
                    continue;
                };
                sqlx::query(SUPERSEDE_SQL)
                    .bind(&id)
                    .bind(format!(
                        "superseded by build {} for the newer commit {}",
                        build.id,
                        build.plan.commit.short()
                    ))
                    .bind(delivery.received_at)
                    .bind(build.supersedes == Supersede::QueuedAndRunning)
                    .execute(&mut **$tx)
                    .await?;
            }
        }

        // 4. The outcomes, in arrival order; repeats read the stored answer.
        let mut written = Vec::with_capacity(group.len());
        for (((request, inserted), answer), placements) in
            group.iter().zip(&is_inserted).zip(answers).zip(placements_of)
        {
            let PendingDelivery { delivery, tally, .. } = &request.pending;
            if *inserted {
                let outcome = if tally.as_ref().is_some_and(|tally| tally.ignored) {
                    "ignored"
                } else {
                    "accepted"
                };
                written.push(Written {
                    counted: tally
                        .as_ref()
                        .map(|tally| delivery_labels(&tally.provider, outcome, answer.status_code)),
                    created_builds: placements.iter().any(|p| p.created),
                    outcome: RecordOutcome::Recorded(answer),
                });
                continue;
            }
            let (status_code, response_json): (i64, String) = sqlx::query_as(
                "SELECT status_code, response_json FROM deliveries WHERE repository_id = $1 AND delivery_key = $2",
            )
            .bind(delivery.repository_id.map(|id| id.to_string()))
            .bind(&delivery.delivery_key)
            .fetch_one(&mut **$tx)
            .await?;
            let status_code = u16::try_from(status_code).unwrap_or(202);
            written.push(Written {
                counted: tally
                    .as_ref()
                    .map(|tally| delivery_labels(&tally.provider, "duplicate", status_code)),
                outcome: RecordOutcome::Duplicate {
                    status_code,
                    response_json,
                },
                created_builds: false,
            });
        }
        written
    }};
}

/// Rows per statement: far below both databases' limits on bound parameters (32,766 on
/// SQLite, 65,535 on PostgreSQL, at 16 a build) and SQLite's 500 terms of a compound select.
const ROWS_PER_STATEMENT: usize = 256;

/// `($1, …, $n), ($n+1, …)`: `rows` rows of `columns` placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn insert_deliveries_sql(rows: usize) -> String {
    format!(
        "INSERT INTO deliveries (id, repository_id, repository_name, provider, event, forge_delivery_id,
             delivery_key, source_address, received_at, status_code, verification, outcome,
             decisions_json, response_json, headers_json, body, redelivery_of)
         VALUES {}
         ON CONFLICT (repository_id, delivery_key) DO NOTHING
         RETURNING id",
        placeholders(rows, 17)
    )
}

fn insert_builds_sql(rows: usize) -> String {
    // Every row is queued; the status is written into the statement, not bound.
    let values = (0..rows)
        .map(|row| {
            let cell = |column: usize| format!("${}", row * 16 + column);
            let before: Vec<String> = (1..=12).map(cell).collect();
            let after: Vec<String> = (13..=16).map(cell).collect();
            format!("({}, 'queued', {})", before.join(", "), after.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO builds (id, repository_id, delivery_id, trigger, dedupe_key, rule_index, git_ref,
             commit_sha, image, tags_json, dockerfile, context, status, queued_at, options_json,
             before_sha, message_checked)
         VALUES {values}
         ON CONFLICT (repository_id, dedupe_key) DO NOTHING
         RETURNING id"
    )
}

/// Cancels the queued builds that new builds make obsolete: the same repository, rule and ref,
/// at the commit each push replaced (its `before`). Matching on `before` rather than arrival
/// order means a late or replayed older push can never cancel newer work. Where the repository
/// asks (`QueuedAndRunning`), running ones are asked to stop as well; their workers see it on
/// the next heartbeat.
const SUPERSEDE_SQL: &str = "UPDATE builds SET
         status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
         finished_at = CASE WHEN status = 'queued' THEN $3 ELSE finished_at END,
         cancel_requested = CASE WHEN status = 'running' THEN TRUE ELSE cancel_requested END,
         error = $2
     WHERE id = $1 AND (status = 'queued' OR (status = 'running' AND $4))";

/// An unfinished build that a new build may supersede: id, repository, rule, ref, commit and
/// status.
type Candidate = (String, String, i64, String, String, String);

/// A (repository, ref, commit) the new builds replace.
type Replaced = (Option<String>, String, String);

/// The unfinished builds at any of `triples` on SQLite: one indexed lookup per triple, joined
/// with `UNION ALL`, because SQLite planned an `OR` of the same lookups, a `VALUES` join and a
/// row-value `IN` all as scans of every build.
async fn sqlite_supersede_candidates(
    connection: &mut sqlx::SqliteConnection,
    triples: &[Replaced],
) -> Result<Vec<Candidate>> {
    let sql = (0..triples.len())
        .map(|row| {
            format!(
                "SELECT id, repository_id, rule_index, git_ref, commit_sha, status FROM builds
                 WHERE repository_id = ${} AND git_ref = ${} AND commit_sha = ${}
                   AND status IN ('queued', 'running')",
                row * 3 + 1,
                row * 3 + 2,
                row * 3 + 3
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
    for (repository, git_ref, commit) in triples {
        query = query.bind(repository).bind(git_ref).bind(commit);
    }
    Ok(query.fetch_all(connection).await?)
}

/// The same on PostgreSQL, as one fixed statement over arrays: a union of many branches cost
/// PostgreSQL more to plan than to run, and one text is prepared once per connection.
async fn postgres_supersede_candidates(
    connection: &mut sqlx::PgConnection,
    triples: &[Replaced],
) -> Result<Vec<Candidate>> {
    let repositories: Vec<Option<String>> = triples.iter().map(|t| t.0.clone()).collect();
    let refs: Vec<String> = triples.iter().map(|t| t.1.clone()).collect();
    let commits: Vec<String> = triples.iter().map(|t| t.2.clone()).collect();
    Ok(sqlx::query_as(
        "SELECT b.id, b.repository_id, b.rule_index, b.git_ref, b.commit_sha, b.status
         FROM unnest($1::text[], $2::text[], $3::text[]) AS replaced (repository_id, git_ref, commit_sha)
         JOIN builds b ON b.repository_id = replaced.repository_id
             AND b.git_ref = replaced.git_ref AND b.commit_sha = replaced.commit_sha
         WHERE b.status IN ('queued', 'running')",
    )
    .bind(repositories)
    .bind(refs)
    .bind(commits)
    .fetch_all(connection)
    .await?)
}

/// Adds the group's delivery counts to `/metrics`' counters, one row per label set, in a
/// fixed order (so that concurrent PostgreSQL upserts lock rows in the same order).
macro_rules! add_counts {
    ($tx:expr, $written:expr) => {{
        let written: &[Written] = $written;
        let mut counts: BTreeMap<&(String, String), i64> = BTreeMap::new();
        for key in written.iter().filter_map(|w| w.counted.as_ref()) {
            *counts.entry(key).or_default() += 1;
        }
        if !counts.is_empty() {
            let sql = upsert_samples_sql(counts.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((name, labels), value) in &counts {
                query = query.bind(name.as_str()).bind(labels.as_str()).bind(*value);
            }
            query.execute(&mut **$tx).await?;
        }
    }};
}

/// The writer: takes whatever has queued up (at least one delivery), writes it in one
/// transaction, wakes the workers if builds were queued, then answers every caller.
async fn run(backend: Backend, queued: Arc<Notify>, mut receiver: mpsc::Receiver<Request>) {
    let mut group: Vec<Request> = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        let started = std::time::Instant::now();
        let written = write_group(&backend, &group).await;
        tracing::debug!(
            deliveries = group.len(),
            elapsed_us = started.elapsed().as_micros(),
            "group commit"
        );
        let results = match written {
            Ok(written) => written.into_iter().map(Ok).collect(),
            Err(error) if group.len() == 1 => vec![Err(error)],
            Err(error) => {
                tracing::warn!(%error, deliveries = group.len(), "a group commit failed; writing its deliveries one at a time");
                let mut results = Vec::with_capacity(group.len());
                for request in &group {
                    let one = write_group(&backend, std::slice::from_ref(request))
                        .await
                        .and_then(|mut written| {
                            written.pop().ok_or_else(|| {
                                StoreError::Corrupt("a group lost its delivery".into())
                            })
                        });
                    results.push(one);
                }
                results
            }
        };
        if results
            .iter()
            .any(|result| matches!(result, Ok(written) if written.created_builds))
        {
            // On PostgreSQL the transaction already sent the NOTIFY; this wakes this
            // process's own workers.
            queued.notify_waiters();
        }
        for (request, result) in group.drain(..).zip(results) {
            // A caller that went away (its client hung up) still had its delivery stored; the
            // forge's retry will find it as a duplicate.
            let _ = request.reply.send(result.map(|written| written.outcome));
        }
    }
}

/// Writes every delivery of `group` in one transaction, in order, and commits it.
async fn write_group(backend: &Backend, group: &[Request]) -> Result<Vec<Written>> {
    match backend {
        Backend::Sqlite { write, .. } => {
            let mut tx = write.begin_write().await?;
            let written = write_deliveries!(&mut tx, group, sqlite_supersede_candidates);
            add_counts!(&mut tx, &written);
            tx.commit().await?;
            Ok(written)
        }
        Backend::Postgres(pool) => {
            let mut tx = pool.begin_write().await?;
            let written = write_deliveries!(&mut tx, group, postgres_supersede_candidates);
            add_counts!(&mut tx, &written);
            if written.iter().any(|w| w.created_builds) {
                // NOTIFY is transactional: it reaches the other processes at the commit, and
                // costs no round trip of its own.
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(crate::BUILDS_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(written)
        }
    }
}
