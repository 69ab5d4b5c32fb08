//! Fleet-wide metrics kept in the database: counters and histograms that every process adds
//! to (a `slipway worker` has no HTTP endpoint of its own), and the worker fleet's state read
//! when `/metrics` is scraped.
//!
//! A histogram is stored as counters too: one per bucket, already cumulative (an observation
//! adds one to every bucket whose bound it does not exceed), one for the sum of the observed
//! values in milliseconds, and one for their number. One observation is one statement, so a
//! scrape never sees a histogram half updated.
//!
//! Labels are stored as the exposition format's label text (`provider="github",code="2xx"`),
//! escaped once when written, so rendering copies them verbatim.

use crate::{Backend, BuildRecord, Result, Store};
use slipway_core::BuildStatus;

/// A counter that any process may add to.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
}

/// A histogram of durations, with its buckets' upper bounds in milliseconds, ascending.
#[derive(Debug, Clone, Copy)]
pub struct Histogram {
    pub name: &'static str,
    pub help: &'static str,
    pub bounds_ms: &'static [i64],
}

/// Webhook requests by provider, outcome and status class. Labelled with fixed vocabularies
/// only: `/metrics` is public, so no repository name or other user data may appear.
pub const WEBHOOK_DELIVERIES: Counter = Counter {
    name: "slipway_webhook_deliveries_total",
    help: "Webhook requests received, by provider (unknown when the repository is not configured), outcome (accepted, ignored, duplicate or refused) and HTTP status class.",
};

/// The `(name, labels)` under which [`WEBHOOK_DELIVERIES`] counts one request: `provider`
/// (`unknown` when empty: no configured repository), `outcome` (`accepted`, `ignored`,
/// `duplicate` or `refused`) and the answer's status class (`2xx`, `4xx`, `5xx`).
pub fn delivery_labels(provider: &str, outcome: &str, status_code: u16) -> (String, String) {
    let provider = if provider.is_empty() {
        "unknown"
    } else {
        provider
    };
    let class = match status_code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    (
        WEBHOOK_DELIVERIES.name.to_owned(),
        label_text(&[
            ("provider", provider),
            ("outcome", outcome),
            ("code", class),
        ]),
    )
}

/// Builds a worker finished, by final status.
pub const BUILDS_FINISHED: Counter = Counter {
    name: "slipway_builds_finished_total",
    help: "Builds finished by a worker, by final status.",
};

/// How long builds waited between being queued and their first claim.
pub const QUEUE_WAIT: Histogram = Histogram {
    name: "slipway_build_queue_wait_seconds",
    help: "Time from a build being queued to a worker starting its first attempt.",
    bounds_ms: &[
        50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000,
    ],
};

/// How long finished builds ran.
pub const BUILD_DURATION: Histogram = Histogram {
    name: "slipway_build_duration_seconds",
    help: "Time from a worker starting a build's attempt to the build finishing.",
    bounds_ms: &[
        1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_200_000, 1_800_000,
        3_600_000,
    ],
};

impl Histogram {
    /// The stored name of the bucket counters.
    pub fn bucket_name(&self) -> String {
        format!("{}_bucket", self.name)
    }

    /// The stored name of the sum (in milliseconds; exposed in seconds).
    pub fn sum_name(&self) -> String {
        format!("{}_sum", self.name)
    }

    /// The stored name of the number of observations.
    pub fn count_name(&self) -> String {
        format!("{}_count", self.name)
    }

    /// The label text of the bucket bounded by `bound_ms`.
    pub fn bucket_labels(bound_ms: i64) -> String {
        label_text(&[("le", &seconds_text(bound_ms))])
    }
}

/// Milliseconds as seconds in the exposition format's number syntax: `0.05`, `1`, `2.5`.
pub fn seconds_text(millis: i64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        // Display prints the shortest text that reads back as the same f64.
        (millis as f64 / 1000.0).to_string()
    }
}

/// Escapes a label value as the exposition format requires: backslash, double quote and line
/// feed are written as `\\`, `\"` and `\n`.
pub fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The label text for `labels`, in the order given: `a="x",b="y"`. Names are the caller's
/// constants; values are escaped.
pub fn label_text(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// How many rows a counter is spread over. Concurrent writers (a fleet of workers finishing
/// builds) then rarely wait for each other's row locks, which are held until a commit has
/// synced; reading sums the shards.
const COUNTER_SHARDS: u8 = 32;

/// The statement that adds to `rows` counters at once, creating them at zero first; binds
/// name, labels and value for each row in turn. All its rows go to one shard, chosen at
/// random here: a number of Slipway's own, the only value formatted into the statement
/// besides placeholders.
pub(crate) fn upsert_samples_sql(rows: usize) -> String {
    let shard = uuid::Uuid::new_v4().as_bytes()[0] % COUNTER_SHARDS;
    let values = (0..rows)
        .map(|i| format!("(${}, ${}, {shard}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO metric_counters (name, labels, shard, value) VALUES {values}
         ON CONFLICT (name, labels, shard) DO UPDATE SET value = metric_counters.value + excluded.value"
    )
}

/// One stored counter: a sample name, its label text, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSample {
    pub name: String,
    pub labels: String,
    pub value: i64,
}

/// The worker fleet as the `workers` table and the running builds show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetState {
    /// Slots of the workers heard from recently.
    pub slots_total: i64,
    /// Running builds whose lease belongs to one of those workers.
    pub slots_in_use: i64,
    pub healthy_workers: i64,
    pub unhealthy_workers: i64,
}

impl Store {
    /// Adds `by` to the counter with these labels, creating it at zero first.
    pub async fn add_to_counter(
        &self,
        counter: &Counter,
        labels: &[(&str, &str)],
        by: i64,
    ) -> Result<()> {
        self.add_samples(&[(counter.name.to_owned(), label_text(labels), by)])
            .await
    }

    /// Records one observation of `millis` (negative values, from clocks that disagree, count
    /// as zero).
    pub async fn observe(&self, histogram: &Histogram, millis: i64) -> Result<()> {
        let millis = millis.max(0);
        let bucket = histogram.bucket_name();
        let mut rows: Vec<(String, String, i64)> = histogram
            .bounds_ms
            .iter()
            .filter(|&&bound| millis <= bound)
            .map(|&bound| (bucket.clone(), Histogram::bucket_labels(bound), 1))
            .collect();
        rows.push((histogram.sum_name(), String::new(), millis));
        rows.push((histogram.count_name(), String::new(), 1));
        self.add_samples(&rows).await
    }

    /// Adds to several counters in one statement. The rows are always listed in the same
    /// order for a given metric, so concurrent PostgreSQL upserts lock them in the same order
    /// and cannot deadlock.
    async fn add_samples(&self, rows: &[(String, String, i64)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = upsert_samples_sql(rows.len());
        with_pool!(self, write, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for (name, labels, value) in rows {
                query = query.bind(name.as_str()).bind(labels.as_str()).bind(*value);
            }
            query.execute(pool).await?;
        });
        Ok(())
    }

    /// Adds one to the webhook delivery counter under [`delivery_labels`].
    pub async fn count_delivery(
        &self,
        provider: &str,
        outcome: &str,
        status_code: u16,
    ) -> Result<()> {
        let (name, labels) = delivery_labels(provider, outcome, status_code);
        self.add_samples(&[(name, labels, 1)]).await
    }

    /// Every stored counter, ordered by name and labels.
    pub async fn stored_samples(&self) -> Result<Vec<StoredSample>> {
        let rows: Vec<(String, String, i64)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT name, labels, CAST(SUM(value) AS BIGINT) FROM metric_counters
                 GROUP BY name, labels ORDER BY name, labels",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(name, labels, value)| StoredSample {
                name,
                labels,
                value,
            })
            .collect())
    }

    /// The fleet's slots and health, counting the workers heard from at or after `since`
    /// (Unix milliseconds). A running build uses a slot of the worker whose id starts its
    /// lease token (`worker-id/claim`); builds of workers no longer heard from are not
    /// counted, since their slots are not counted either.
    pub async fn fleet_state(&self, since: i64) -> Result<FleetState> {
        let (slots_total, healthy_workers, unhealthy_workers, slots_in_use): (i64, i64, i64, i64) = with_pool!(
            self,
            read,
            |pool| {
                sqlx::query_as(
                    "SELECT
                         CAST(COALESCE((SELECT SUM(slots) FROM workers WHERE last_seen_at >= $1), 0) AS BIGINT),
                         (SELECT COUNT(*) FROM workers WHERE last_seen_at >= $1 AND problem IS NULL),
                         (SELECT COUNT(*) FROM workers WHERE last_seen_at >= $1 AND problem IS NOT NULL),
                         (SELECT COUNT(*) FROM builds b WHERE b.status = 'running' AND EXISTS (
                              SELECT 1 FROM workers w WHERE w.last_seen_at >= $1
                                AND substr(b.lease_owner, 1, length(w.id) + 1) = w.id || '/'))",
                )
                .bind(since)
                .fetch_one(pool)
                .await?
            }
        );
        Ok(FleetState {
            slots_total,
            slots_in_use,
            healthy_workers,
            unhealthy_workers,
        })
    }

    /// Records what a claim tells about the queue: how long the build waited. Only a build's
    /// first attempt counts (a later one waited out a backoff, not the queue); a build handed
    /// back at shutdown starts its first attempt again and is counted again.
    pub async fn observe_claim(&self, build: &BuildRecord) -> Result<()> {
        match build.started_at {
            Some(started_at) if build.attempts == 1 => {
                self.observe(&QUEUE_WAIT, started_at - build.queued_at)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Records a build's end, after its result was stored: its status, and how long the
    /// attempt that finished it ran, up to `finished_at` (Unix milliseconds).
    pub async fn observe_finish(
        &self,
        build: &BuildRecord,
        status: BuildStatus,
        finished_at: i64,
    ) -> Result<()> {
        self.add_to_counter(&BUILDS_FINISHED, &[("status", status.as_str())], 1)
            .await?;
        if let Some(started_at) = build.started_at {
            self.observe(&BUILD_DURATION, finished_at - started_at)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("plain"), "plain");
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(
            label_text(&[("provider", "git\"hub"), ("code", "2xx")]),
            "provider=\"git\\\"hub\",code=\"2xx\""
        );
        assert_eq!(label_text(&[]), "");
    }

    #[test]
    fn deliveries_are_labelled_by_provider_outcome_and_status_class() {
        let labels = |provider, outcome, code| delivery_labels(provider, outcome, code).1;
        assert_eq!(
            labels("github", "accepted", 202),
            "provider=\"github\",outcome=\"accepted\",code=\"2xx\""
        );
        assert_eq!(
            labels("", "refused", 404),
            "provider=\"unknown\",outcome=\"refused\",code=\"4xx\""
        );
        assert!(labels("gitlab", "refused", 503).ends_with("code=\"5xx\""));
        assert!(labels("gitlab", "accepted", 200).ends_with("code=\"2xx\""));
        assert_eq!(
            delivery_labels("github", "accepted", 202).0,
            "slipway_webhook_deliveries_total"
        );
    }

    #[test]
    fn bucket_bounds_are_written_as_seconds() {
        assert_eq!(seconds_text(50), "0.05");
        assert_eq!(seconds_text(250), "0.25");
        assert_eq!(seconds_text(2_500), "2.5");
        assert_eq!(seconds_text(900_000), "900");
        assert_eq!(Histogram::bucket_labels(100), "le=\"0.1\"");
    }

    #[test]
    fn bounds_ascend() {
        for histogram in [QUEUE_WAIT, BUILD_DURATION] {
            assert!(
                histogram.bounds_ms.windows(2).all(|w| w[0] < w[1]),
                "{}",
                histogram.name
            );
        }
    }
}
