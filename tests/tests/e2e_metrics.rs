//! Issue 6's metrics end to end: a real build run by a `slipway worker` process, which serves
//! no HTTP, shows up in the `/metrics` of the `slipway web` process sharing its PostgreSQL
//! database, because the counters live in the database.

use slipway_e2e::{Fixture, Rule, TestDatabase, ZERO_ID};

/// The value of the sample written exactly as `series` (name and label text), e.g.
/// `slipway_builds_finished_total{status="succeeded"}`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .parse::<f64>()
            .ok()
    })
}

fn required(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

#[test]
fn a_build_on_a_separate_worker_is_counted_in_the_web_processs_metrics() {
    let fx = Fixture::new("metrics");
    let app = fx.sample_app();
    fx.repo.commit("Add the app", &app.files);
    let database = TestDatabase::create(&fx.rig.postgres_url, "metrics");
    let builder = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .database_url(database.url());
    let web = builder.clone().start_web();
    let worker = builder.start_worker();

    let answer = fx.deliver_push(&web, &fx.push_payload("refs/heads/main", ZERO_ID));
    answer.assert_status(202);
    let id = answer.single_build_id();
    let build = web.wait_for_success(&id);
    let digest = build["digest"]
        .as_str()
        .expect("a succeeded build has a digest");
    assert_eq!(
        fx.registry()
            .manifest_digest(fx.name(), "latest")
            .as_deref(),
        Some(digest),
        "the build pushed its image"
    );

    // The endpoint needs no credentials.
    let metrics = web.get_anonymous("/metrics");
    metrics.assert_status(200);
    assert_eq!(
        metrics.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = &metrics.text;
    let context = || format!("worker's stderr:\n{}", worker.stderr());

    assert!(
        required(
            text,
            "slipway_webhook_deliveries_total{provider=\"github\",outcome=\"accepted\",code=\"2xx\"}"
        ) >= 1.0
    );
    assert!(
        required(text, "slipway_builds_finished_total{status=\"succeeded\"}") >= 1.0,
        "{}",
        context()
    );
    let finished = required(text, "slipway_build_duration_seconds_count");
    assert!(finished >= 1.0, "{}", context());
    assert_eq!(
        required(text, "slipway_build_duration_seconds_bucket{le=\"+Inf\"}"),
        finished,
        "the +Inf bucket is the count"
    );
    let waited = required(text, "slipway_build_queue_wait_seconds_count");
    assert!(waited >= 1.0, "{}", context());
    assert_eq!(
        required(text, "slipway_build_queue_wait_seconds_bucket{le=\"+Inf\"}"),
        waited
    );
    assert!(required(text, "slipway_build_duration_seconds_sum") > 0.0);
    assert_eq!(required(text, "slipway_builds_queued"), 0.0);
    assert_eq!(required(text, "slipway_builds_running"), 0.0);
    // The worker reports itself when it starts and every 5 s, so it is listed by now.
    assert!(required(text, "slipway_worker_slots{state=\"total\"}") >= 1.0);
    assert_eq!(
        required(text, "slipway_worker_slots{state=\"in_use\"}"),
        0.0
    );
    assert!(required(text, "slipway_workers{healthy=\"true\"}") >= 1.0);
    // `slipway web` runs no worker of its own, so it has no engine of its own to report.
    assert!(sample(text, "slipway_engine_healthy").is_none(), "{text}");
    // The endpoint is public: no repository name may appear in it.
    assert!(!text.contains(fx.name()), "{text}");
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        assert!(
            line.rsplit_once(' ')
                .is_some_and(|(_, value)| value.parse::<f64>().is_ok() || value == "+Inf"),
            "a sample line ends with its value: {line:?}"
        );
    }
}

#[test]
fn serve_reports_its_own_engine() {
    let fx = Fixture::new("metrics-serve");
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let metrics = slipway.get_anonymous("/metrics");
    metrics.assert_status(200);
    assert!(
        metrics
            .text
            .contains("# TYPE slipway_engine_healthy gauge\n"),
        "{}",
        metrics.text
    );
    // The rig's engine answers; the worker may not have pinged it yet when the first scrape
    // comes, but it never reports a problem, so the gauge is 1 either way.
    assert_eq!(sample(&metrics.text, "slipway_engine_healthy"), Some(1.0));
}
