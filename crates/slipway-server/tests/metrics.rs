//! `GET /metrics` through the real router and a real SQLite store: webhook requests are
//! counted by provider, outcome and status class, the gauges show the queue and this process's
//! worker, and every line of the answer follows the text exposition format's grammar.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use slipway_server::{AppState, app};
use tower::ServiceExt;

/// A sample's labels: (name, value) pairs.
type Labels = Vec<(String, String)>;

/// One sample: its name and its labels, sorted by label name.
type Key = (String, Labels);

/// A parsed exposition: samples by name and labels, and each family's type.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<Key, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Labels = labels
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `{name="value",…}` (the opening brace already consumed) and returns the labels and
/// the rest of the line after the closing brace.
fn parse_labels(mut rest: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => return Err("a raw line feed in a label value".to_owned()),
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".to_owned()),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} before {rest:?}"));
        }
    }
}

/// Parses the text exposition format strictly enough to catch what Prometheus would refuse:
/// comment lines, metric and label names, label escapes, numbers, types declared once and
/// before their samples, no sample given twice.
fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    let mut helped = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let context = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest
                .split_once(' ')
                .ok_or("HELP without text")
                .map_err(|e| context(e.to_owned()))?;
            if !is_metric_name(name) || helped.insert(name.to_owned(), ()).is_some() {
                return Err(context("bad or repeated HELP".to_owned()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| context("TYPE without a type".to_owned()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(context(format!("unknown type {kind}")));
            }
            if !is_metric_name(name)
                || scrape
                    .types
                    .insert(name.to_owned(), kind.to_owned())
                    .is_some()
            {
                return Err(context("bad or repeated TYPE".to_owned()));
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(context("unexpected comment or blank line".to_owned()));
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| context("no value".to_owned()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(context("bad metric name".to_owned()));
        }
        let (mut labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(rest) => parse_labels(rest).map_err(context)?,
            None => (Vec::new(), &line[name_end..]),
        };
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| context("no space before the value".to_owned()))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .map_err(|_| context(format!("bad value {other:?}")))?,
        };
        // A sample belongs to a family typed before it: itself, or a histogram's series.
        let family = [
            name,
            name.trim_end_matches("_bucket"),
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
        ]
        .into_iter()
        .find(|family| scrape.types.contains_key(*family))
        .ok_or_else(|| context("a sample before its TYPE".to_owned()))?;
        if family != name && scrape.types[family] != "histogram" {
            return Err(context(
                "a histogram series of a family that is no histogram".to_owned(),
            ));
        }
        labels.sort();
        if scrape
            .samples
            .insert((name.to_owned(), labels), value)
            .is_some()
        {
            return Err(context("the same sample twice".to_owned()));
        }
    }
    if helped.keys().ne(scrape.types.keys()) {
        return Err("every family needs both HELP and TYPE".to_owned());
    }
    Ok(scrape)
}

/// Scrapes `/metrics` without credentials: it is public.
async fn scrape(state: &AppState) -> (String, Scrape) {
    let response = app(state.clone())
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
    let parsed = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, parsed)
}

const DELIVERIES: &str = "slipway_webhook_deliveries_total";

fn deliveries(scrape: &Scrape, provider: &str, outcome: &str, code: &str) -> f64 {
    scrape
        .get(
            DELIVERIES,
            &[("provider", provider), ("outcome", outcome), ("code", code)],
        )
        .unwrap_or(0.0)
}

#[tokio::test]
async fn webhook_requests_are_counted_by_provider_and_outcome() {
    let h = harness().await;
    let (_, before) = scrape(&h.state).await;
    assert_eq!(before.types[DELIVERIES], "counter");
    assert_eq!(deliveries(&before, "github", "accepted", "2xx"), 0.0);
    assert_eq!(before.get("slipway_builds_queued", &[]), Some(0.0));

    let body = push_body("refs/heads/main", COMMIT);
    let (status, first) = send(&h, signed("push", "m-1", &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, _) = send(&h, signed("push", "m-1", &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = send(
        &h,
        signed("push", "m-2", &push_body("refs/heads/dev", COMMIT)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = send(&h, signed("ping", "m-3", "{\"zen\":\"hi\"}")).await;
    assert_eq!(status, StatusCode::OK);
    let mut forged = signed("push", "m-4", &body);
    forged.headers_mut().insert(
        "x-hub-signature-256",
        format!("sha256={}", "0".repeat(64))
            .parse()
            .expect("header"),
    );
    let (status, _) = send(&h, forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut unknown = signed("push", "m-5", &body);
    *unknown.uri_mut() = "/hooks/acme/nothing-here".parse().expect("uri");
    let (status, _) = send(&h, unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (text, after) = scrape(&h.state).await;
    // The push and the ping were accepted; the dev branch matched no rule.
    assert_eq!(
        deliveries(&after, "github", "accepted", "2xx"),
        2.0,
        "{text}"
    );
    assert_eq!(deliveries(&after, "github", "duplicate", "2xx"), 1.0);
    assert_eq!(deliveries(&after, "github", "ignored", "2xx"), 1.0);
    assert_eq!(deliveries(&after, "github", "refused", "4xx"), 1.0);
    assert_eq!(deliveries(&after, "unknown", "refused", "4xx"), 1.0);
    assert_eq!(after.get("slipway_builds_queued", &[]), Some(1.0));
    assert_eq!(after.get("slipway_builds_running", &[]), Some(0.0));

    // Redelivering a stored delivery is no new webhook request.
    let delivery = first["delivery"].as_str().expect("delivery id");
    let request = Request::post(format!("/api/deliveries/{delivery}/redeliver"))
        .body(Body::empty())
        .expect("request");
    let (status, answer) = send(&h, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (_, again) = scrape(&h.state).await;
    let total = |s: &Scrape| -> f64 {
        s.samples
            .iter()
            .filter(|((name, _), _)| name == DELIVERIES)
            .map(|(_, value)| value)
            .sum()
    };
    assert_eq!(total(&again), total(&after));

    // The endpoint is public, so no repository name may appear in it.
    assert!(!text.contains("acme"), "{text}");
}

#[tokio::test]
async fn histograms_and_fleet_gauges_are_complete_before_any_build() {
    let h = harness().await;
    let (_, scrape) = scrape(&h.state).await;
    for histogram in [
        "slipway_build_queue_wait_seconds",
        "slipway_build_duration_seconds",
    ] {
        assert_eq!(scrape.types[histogram], "histogram");
        let bucket = format!("{histogram}_bucket");
        assert_eq!(scrape.get(&bucket, &[("le", "+Inf")]), Some(0.0));
        assert_eq!(scrape.get(&format!("{histogram}_count"), &[]), Some(0.0));
        assert_eq!(scrape.get(&format!("{histogram}_sum"), &[]), Some(0.0));
    }
    assert_eq!(
        scrape.get("slipway_builds_finished_total", &[("status", "succeeded")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.get("slipway_worker_slots", &[("state", "total")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.get("slipway_worker_slots", &[("state", "in_use")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.get("slipway_workers", &[("healthy", "true")]),
        Some(0.0)
    );
    // This router runs no worker of its own.
    assert!(!scrape.types.contains_key("slipway_engine_healthy"));
}

#[tokio::test]
async fn the_local_workers_engine_health_is_a_gauge() {
    let h = harness().await;
    let health = Arc::new(slipway_core::health::Health::default());
    let state = AppState {
        worker_health: Some(health.clone()),
        ..h.state.clone()
    };
    let (_, healthy) = scrape(&state).await;
    assert_eq!(healthy.types["slipway_engine_healthy"], "gauge");
    assert_eq!(healthy.get("slipway_engine_healthy", &[]), Some(1.0));
    health.set_unhealthy("the Docker engine does not answer");
    let (_, unhealthy) = scrape(&state).await;
    assert_eq!(unhealthy.get("slipway_engine_healthy", &[]), Some(0.0));
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"q\\\"\\\\\\n\"} 1\n";
    let scrape = parse(good).expect("valid");
    assert_eq!(scrape.get("a_total", &[("l", "q\"\\\n")]), Some(1.0));
    for bad in [
        "a_total 1\n",
        "# HELP a x\n# TYPE a gauge\na{l=\"unterminated} 1\n",
        "# HELP a x\n# TYPE a gauge\na{l=\"bad\\escape\"} 1\n",
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
        "# HELP a x\n# TYPE a gauge\na one\n",
        "# HELP a x\n# TYPE a gauge\na_bucket{le=\"1\"} 1\n",
        "# TYPE a gauge\na 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}
