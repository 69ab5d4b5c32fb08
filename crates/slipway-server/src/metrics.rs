//! `GET /metrics`: Prometheus' text exposition format (version 0.0.4).
//!
//! Counters and histograms come from the database (`slipway_store::metrics`), so builds run by
//! `slipway worker` processes, which serve no HTTP, are counted wherever `/metrics` is served.
//! Gauges are read when the endpoint is scraped: the queue, the running builds, the fleet's
//! slots and health, and this process's own worker, when it runs one.
//!
//! The endpoint is public. Its labels therefore carry no user data: no repository, ref, user
//! or host name, only fixed vocabularies (providers, outcomes, statuses, status classes).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use slipway_core::BuildStatus;
use slipway_store::metrics::{
    BUILD_DURATION, BUILDS_FINISHED, Counter, FleetState, Histogram, QUEUE_WAIT, StoredSample,
    WEBHOOK_DELIVERIES, label_text, seconds_text,
};
use slipway_store::{QueueCounts, now_millis};
use tracing::warn;

use crate::{ApiError, AppState};

/// The exposition format's media type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A worker not heard from for this long no longer counts (workers report every 5 s); the
/// same window as `/healthz` and `/api/workers`.
const WORKER_SEEN_WITHIN_MS: i64 = 30_000;

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snapshot = Snapshot {
        stored: state.store.stored_samples().await?,
        queue: state.store.queue_counts().await?,
        fleet: state
            .store
            .fleet_state(now_millis() - WORKER_SEEN_WITHIN_MS)
            .await?,
        local_engine_healthy: state
            .worker_health
            .as_ref()
            .map(|health| health.problem().is_none()),
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&snapshot),
    )
        .into_response())
}

/// Counts a webhook request that was refused (a stored delivery is counted by the store, in
/// the delivery's own transaction). `provider` is the repository's provider, empty when no
/// configured repository was found. A failure to count is logged and otherwise ignored:
/// metrics must never cost a delivery.
pub(crate) async fn count_refused(state: &AppState, provider: &str, status: StatusCode) {
    if let Err(error) = state
        .store
        .count_delivery(provider, "refused", status.as_u16())
        .await
    {
        warn!(%error, "counting a webhook delivery for /metrics failed");
    }
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub stored: Vec<StoredSample>,
    pub queue: QueueCounts,
    pub fleet: FleetState,
    /// Whether this process's own worker can reach its engine; `None` without a local worker.
    pub local_engine_healthy: Option<bool>,
}

/// Renders a scrape in the text exposition format: every family with its `# HELP` and
/// `# TYPE` lines, then its samples.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut out = Exposition::default();

    out.counter(&WEBHOOK_DELIVERIES, &snapshot.stored, &[]);
    // Every final status is shown, at zero until it happens, so that rates work from the start.
    let finished: Vec<String> = BuildStatus::ALL
        .iter()
        .filter(|status| status.is_finished())
        .map(|status| label_text(&[("status", status.as_str())]))
        .collect();
    out.counter(&BUILDS_FINISHED, &snapshot.stored, &finished);

    out.family(
        "slipway_builds_queued",
        "gauge",
        "Builds waiting for a worker, across the fleet.",
    );
    out.sample("slipway_builds_queued", "", snapshot.queue.queued);
    out.family(
        "slipway_builds_running",
        "gauge",
        "Builds running, across the fleet.",
    );
    out.sample("slipway_builds_running", "", snapshot.queue.running);

    out.histogram(&QUEUE_WAIT, &snapshot.stored);
    out.histogram(&BUILD_DURATION, &snapshot.stored);

    out.family(
        "slipway_worker_slots",
        "gauge",
        "Build slots of the workers heard from in the last 30 seconds: all of them, and those running a build.",
    );
    out.sample(
        "slipway_worker_slots",
        &label_text(&[("state", "total")]),
        snapshot.fleet.slots_total,
    );
    out.sample(
        "slipway_worker_slots",
        &label_text(&[("state", "in_use")]),
        snapshot.fleet.slots_in_use,
    );
    out.family(
        "slipway_workers",
        "gauge",
        "Worker processes heard from in the last 30 seconds, by whether their Docker engine answers.",
    );
    out.sample(
        "slipway_workers",
        &label_text(&[("healthy", "true")]),
        snapshot.fleet.healthy_workers,
    );
    out.sample(
        "slipway_workers",
        &label_text(&[("healthy", "false")]),
        snapshot.fleet.unhealthy_workers,
    );
    if let Some(healthy) = snapshot.local_engine_healthy {
        out.family(
            "slipway_engine_healthy",
            "gauge",
            "1 while this process's own worker can reach its Docker engine, else 0.",
        );
        out.sample("slipway_engine_healthy", "", i64::from(healthy));
    }
    out.text
}

/// The text being written.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // In HELP text only backslash and line feed are escaped.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing into a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample; `labels` is label text as [`label_text`] writes it, possibly empty.
    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {value}");
        } else {
            let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
        }
    }

    /// A counter's stored samples, plus zero for each of `always` (label texts) not stored.
    fn counter(&mut self, counter: &Counter, stored: &[StoredSample], always: &[String]) {
        self.family(counter.name, "counter", counter.help);
        let mut samples: Vec<(&str, i64)> = stored
            .iter()
            .filter(|s| s.name == counter.name)
            .map(|s| (s.labels.as_str(), s.value))
            .collect();
        for labels in always {
            if !samples.iter().any(|(stored, _)| stored == labels) {
                samples.push((labels.as_str(), 0));
            }
        }
        samples.sort_unstable();
        for (labels, value) in samples {
            self.sample(counter.name, labels, value);
        }
    }

    /// A histogram from its stored counters. Every bucket is shown, at zero until observed.
    /// The buckets are made monotonic and `+Inf` is the count, so the output is a valid
    /// histogram even if the bounds changed between versions.
    fn histogram(&mut self, histogram: &Histogram, stored: &[StoredSample]) {
        let value = |name: &str, labels: &str| {
            stored
                .iter()
                .find(|s| s.name == name && s.labels == labels)
                .map_or(0, |s| s.value)
        };
        self.family(histogram.name, "histogram", histogram.help);
        let bucket = histogram.bucket_name();
        let mut cumulative = 0;
        for &bound in histogram.bounds_ms {
            let labels = Histogram::bucket_labels(bound);
            cumulative = value(&bucket, &labels).max(cumulative);
            self.sample(&bucket, &labels, cumulative);
        }
        let count = value(&histogram.count_name(), "").max(cumulative);
        self.sample(&bucket, &label_text(&[("le", "+Inf")]), count);
        let sum_ms = value(&histogram.sum_name(), "");
        self.sample(&histogram.sum_name(), "", seconds_text(sum_ms));
        self.sample(&histogram.count_name(), "", count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(name: &str, labels: &str, value: i64) -> StoredSample {
        StoredSample {
            name: name.to_owned(),
            labels: labels.to_owned(),
            value,
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let text = render(&Snapshot {
            local_engine_healthy: Some(false),
            ..Snapshot::default()
        });
        let mut typed: Vec<String> = Vec::new();
        let mut helped: Vec<String> = Vec::new();
        for line in lines(&text) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.push(rest.split(' ').next().expect("name").to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().expect("name").to_owned());
            } else {
                let name = line.split(['{', ' ']).next().expect("a sample has a name");
                let family = typed.last().expect("a sample follows a TYPE line");
                assert!(name.starts_with(family.as_str()), "{line} after {family}");
            }
        }
        assert_eq!(typed, helped);
        assert!(typed.contains(&"slipway_engine_healthy".to_owned()));
        assert!(text.contains("\nslipway_engine_healthy 0\n"));
        // Finished statuses are shown at zero before any build finishes.
        assert!(text.contains("slipway_builds_finished_total{status=\"succeeded\"} 0\n"));
        assert!(!text.contains("status=\"queued\""));
    }

    #[test]
    fn without_a_local_worker_there_is_no_engine_gauge() {
        let text = render(&Snapshot::default());
        assert!(!text.contains("slipway_engine_healthy"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_equals_the_count() {
        let bucket = QUEUE_WAIT.bucket_name();
        // Three observations: 40 ms, 300 ms and 20 minutes (beyond the last bound).
        let samples = vec![
            stored(&bucket, "le=\"0.05\"", 1),
            stored(&bucket, "le=\"0.1\"", 1),
            stored(&bucket, "le=\"0.25\"", 1),
            stored(&bucket, "le=\"0.5\"", 2),
            stored(&bucket, "le=\"1\"", 2),
            stored(&bucket, "le=\"2.5\"", 2),
            stored(&bucket, "le=\"5\"", 2),
            stored(&bucket, "le=\"10\"", 2),
            stored(&bucket, "le=\"30\"", 2),
            stored(&bucket, "le=\"60\"", 2),
            // A bound missing from the database (say, added by a newer version) must not make
            // the buckets decrease.
            stored(&bucket, "le=\"900\"", 2),
            stored(&QUEUE_WAIT.sum_name(), "", 1_200_340),
            stored(&QUEUE_WAIT.count_name(), "", 3),
        ];
        let text = render(&Snapshot {
            stored: samples,
            ..Snapshot::default()
        });
        let buckets: Vec<(String, i64)> = lines(&text)
            .into_iter()
            .filter_map(|line| line.strip_prefix(&format!("{bucket}{{le=\"")))
            .map(|rest| {
                let (le, value) = rest.split_once("\"} ").expect("bucket line");
                (le.to_owned(), value.parse().expect("integer"))
            })
            .collect();
        assert_eq!(buckets.len(), QUEUE_WAIT.bounds_ms.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        assert_eq!(buckets[0], ("0.05".to_owned(), 1));
        assert_eq!(buckets[3], ("0.5".to_owned(), 2));
        assert_eq!(buckets[10], ("300".to_owned(), 2));
        assert_eq!(buckets.last(), Some(&("+Inf".to_owned(), 3)));
        assert!(text.contains("\nslipway_build_queue_wait_seconds_sum 1200.34\n"));
        assert!(text.contains("\nslipway_build_queue_wait_seconds_count 3\n"));
        // The other histogram is shown empty, every bucket at zero.
        assert!(text.contains("slipway_build_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("slipway_build_duration_seconds_bucket{le=\"3600\"} 0\n"));
        assert!(text.contains("\nslipway_build_duration_seconds_count 0\n"));
    }

    #[test]
    fn stored_label_text_is_copied_and_help_is_escaped() {
        let labels = label_text(&[("provider", "a\"b\\c\nd"), ("outcome", "refused")]);
        let text = render(&Snapshot {
            stored: vec![stored(WEBHOOK_DELIVERIES.name, &labels, 7)],
            ..Snapshot::default()
        });
        assert!(text.contains(
            "slipway_webhook_deliveries_total{provider=\"a\\\"b\\\\c\\nd\",outcome=\"refused\"} 7\n"
        ));
        let mut out = Exposition::default();
        out.family("x", "gauge", "back\\slash\nnew line");
        assert_eq!(
            out.text,
            "# HELP x back\\\\slash\\nnew line\n# TYPE x gauge\n"
        );
    }

    #[test]
    fn gauges_show_the_queue_and_the_fleet() {
        let text = render(&Snapshot {
            queue: QueueCounts {
                queued: 4,
                running: 2,
            },
            fleet: FleetState {
                slots_total: 8,
                slots_in_use: 2,
                healthy_workers: 3,
                unhealthy_workers: 1,
            },
            ..Snapshot::default()
        });
        for expected in [
            "\nslipway_builds_queued 4\n",
            "\nslipway_builds_running 2\n",
            "\nslipway_worker_slots{state=\"total\"} 8\n",
            "\nslipway_worker_slots{state=\"in_use\"} 2\n",
            "\nslipway_workers{healthy=\"true\"} 3\n",
            "\nslipway_workers{healthy=\"false\"} 1\n",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
    }
}
