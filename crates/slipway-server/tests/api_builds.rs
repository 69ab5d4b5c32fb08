//! The builds API through the real router: keyset pagination, filters and who sees what in
//! `/api/builds`, byte ranges of the log, the live log of a finished build, and the timeline.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::*;
use serde_json::Value;
use slipway_core::plan::BuildPlan;
use slipway_core::{BuildRule, BuildStatus, GitRef, Role};
use slipway_store::{BuildResult, NewBuild, Supersede};
use uuid::Uuid;

/// The queue time of the oldest build the fixture makes (Unix milliseconds).
const BASE: i64 = 1_700_000_000_000;

/// What the fixture stored about one build, to compute what every list should answer.
#[derive(Debug, Clone)]
struct Stored {
    id: Uuid,
    repository: &'static str,
    git_ref: &'static str,
    status: &'static str,
    queued_at: i64,
}

/// Three repositories (`acme/open` readable by anyone) and ten builds with chosen refs,
/// statuses and queue times; two builds share a queue time, so the id breaks the tie.
async fn fixture() -> (Harness, Vec<Stored>) {
    let mut open = repository("acme/open", "github", vec![BuildRule::default_rule()]);
    open.anonymous_read = true;
    let h = harness_with(vec![
        repository("acme/web", "github", vec![BuildRule::default_rule()]),
        repository("acme/api", "github", vec![BuildRule::default_rule()]),
        open,
    ])
    .await;
    let layout: [(&str, &str, &str, i64); 10] = [
        ("acme/web", "refs/heads/main", "succeeded", 0),
        ("acme/web", "refs/heads/dev", "failed", 1_000),
        ("acme/web", "refs/heads/main", "queued", 2_000),
        ("acme/web", "refs/heads/main", "succeeded", 3_000),
        ("acme/web", "refs/tags/v1", "succeeded", 3_000),
        ("acme/web", "refs/heads/dev", "cancelled", 5_000),
        ("acme/web", "refs/heads/main", "running", 6_000),
        ("acme/api", "refs/heads/main", "succeeded", 1_500),
        ("acme/api", "refs/heads/dev", "queued", 4_000),
        ("acme/open", "refs/heads/main", "succeeded", 2_500),
    ];
    let store = &h.state.store;
    let mut stored = Vec::new();
    for (number, (repository, git_ref, status, at)) in layout.into_iter().enumerate() {
        let id = queue(&h, repository, git_ref, number).await;
        // The queue time and status are set directly: the list reads them, and real runs
        // would make the test depend on the clock.
        store
            .execute_raw_for_tests(&format!(
                "UPDATE builds SET queued_at = {}, status = '{status}' WHERE id = '{id}'",
                BASE + at
            ))
            .await
            .expect("update");
        stored.push(Stored {
            id,
            repository,
            git_ref,
            status,
            queued_at: BASE + at,
        });
    }
    (h, stored)
}

/// Queues one build of `repository`'s first rule for `git_ref`, at a commit of its own.
async fn queue(h: &Harness, repository: &str, git_ref: &str, number: usize) -> Uuid {
    let store = &h.state.store;
    let repo = store
        .repository_by_name(repository)
        .await
        .expect("query")
        .expect("repository");
    let id = Uuid::now_v7();
    let build = NewBuild {
        id,
        image: repo.image.to_string(),
        trigger: "manual".to_owned(),
        supersedes: Supersede::Nothing,
        plan: BuildPlan {
            rule_index: 0,
            git_ref: GitRef::parse(git_ref).expect("ref"),
            commit: format!("{number:040x}").parse().expect("commit"),
            tags: vec!["latest".to_owned()],
            dockerfile: "Dockerfile".to_owned(),
            context: "/".to_owned(),
            before: None,
            message_checked: true,
            options: Default::default(),
        },
    };
    store.queue_builds(repo.id, &[build]).await.expect("queue");
    id
}

/// The stored builds that pass `keep`, newest first, as the API orders them.
fn expected(stored: &[Stored], keep: impl Fn(&Stored) -> bool) -> Vec<Uuid> {
    let mut builds: Vec<&Stored> = stored.iter().filter(|b| keep(b)).collect();
    builds.sort_by_key(|b| std::cmp::Reverse((b.queued_at, b.id)));
    builds.iter().map(|b| b.id).collect()
}

fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::empty()).expect("request")
}

/// Follows `next_cursor` from the first page to the last; returns each page's build ids.
async fn pages(h: &Harness, token: Option<&str>, query: &str) -> Vec<Vec<Uuid>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/builds?{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", encode(cursor)));
        }
        let (status, body) = send_as_is(h, get(&path, token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let ids: Vec<Uuid> = body["builds"]
            .as_array()
            .expect("builds")
            .iter()
            .map(|b| b["id"].as_str().and_then(|id| id.parse().ok()).expect("id"))
            .collect();
        pages.push(ids);
        match &body["next_cursor"] {
            Value::Null => return pages,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor {other}"),
        }
        assert!(pages.len() <= 20, "the pages never end");
    }
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Every build the list shows, through all its pages.
async fn all(h: &Harness, token: Option<&str>, query: &str) -> Vec<Uuid> {
    pages(h, token, query).await.concat()
}

#[tokio::test]
async fn pages_are_keyset_newest_first_with_no_duplicates_and_none_missing() {
    let (h, stored) = fixture().await;
    let root = Some(h.admin_token.as_str());
    let web = expected(&stored, |b| b.repository == "acme/web");
    assert_eq!(web.len(), 7);
    let paged = pages(&h, root, "repository=acme/web&limit=3").await;
    assert_eq!(
        paged.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 1],
        "7 builds in pages of 3"
    );
    let flat = paged.concat();
    assert_eq!(flat, web, "newest first, the tie broken by id, each once");
    let unique: HashSet<Uuid> = flat.iter().copied().collect();
    assert_eq!(unique.len(), flat.len(), "no build on two pages");

    // A page boundary falling between the two builds that share a queue time loses neither.
    let paged = pages(&h, root, "repository=acme/web&limit=2").await;
    assert_eq!(paged.concat(), web);

    // Without filters a global reader sees every repository's builds.
    let everything = expected(&stored, |_| true);
    for limit in [1, 3, 10, 200] {
        assert_eq!(
            all(&h, root, &format!("limit={limit}")).await,
            everything,
            "limit={limit}"
        );
    }
    // The default page holds them all, and says no page follows.
    let (status, body) = send(&h, get("/api/builds", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["builds"].as_array().map(Vec::len), Some(10));
    assert_eq!(body["next_cursor"], Value::Null);
    // An exact multiple of the limit ends with a full page and a null cursor, not an empty
    // page.
    let paged = pages(&h, root, "limit=5").await;
    assert_eq!(paged.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5]);
}

#[tokio::test]
async fn filters_narrow_the_list_alone_and_together() {
    let (h, stored) = fixture().await;
    let root = Some(h.admin_token.as_str());
    let since = |offset: i64| encode(&slipway_server::rfc3339(Some(BASE + offset)).expect("time"));
    let cases: Vec<(String, Vec<Uuid>)> = vec![
        (
            "repository=acme/api".to_owned(),
            expected(&stored, |b| b.repository == "acme/api"),
        ),
        (
            "status=succeeded".to_owned(),
            expected(&stored, |b| b.status == "succeeded"),
        ),
        (
            "status=queued".to_owned(),
            expected(&stored, |b| b.status == "queued"),
        ),
        (
            format!("ref={}", encode("refs/heads/dev")),
            expected(&stored, |b| b.git_ref == "refs/heads/dev"),
        ),
        (
            format!("since={}", since(3_000)),
            expected(&stored, |b| b.queued_at >= BASE + 3_000),
        ),
        (
            format!(
                "repository=acme/web&status=succeeded&ref={}",
                encode("refs/heads/main")
            ),
            expected(&stored, |b| {
                b.repository == "acme/web"
                    && b.status == "succeeded"
                    && b.git_ref == "refs/heads/main"
            }),
        ),
        (
            format!("status=succeeded&since={}", since(1_500)),
            expected(&stored, |b| {
                b.status == "succeeded" && b.queued_at >= BASE + 1_500
            }),
        ),
        (
            format!(
                "repository=acme/web&ref={}&since={}",
                encode("refs/heads/dev"),
                since(2_000)
            ),
            expected(&stored, |b| {
                b.repository == "acme/web"
                    && b.git_ref == "refs/heads/dev"
                    && b.queued_at >= BASE + 2_000
            }),
        ),
        ("status=skipped".to_owned(), vec![]),
    ];
    for (query, want) in cases {
        assert_eq!(all(&h, root, &query).await, want, "{query}");
        // The same through pages of one.
        assert_eq!(
            all(&h, root, &format!("{query}&limit=1")).await,
            want,
            "{query} in pages of one"
        );
    }
    // Every build shows its repository, ref and status as filtered.
    let (_, body) = send(&h, get("/api/builds?status=failed", None)).await;
    let failed = &body["builds"][0];
    assert_eq!(failed["repository"], "acme/web");
    assert_eq!(failed["ref"], "refs/heads/dev");
    assert_eq!(failed["status"], "failed");
}

#[tokio::test]
async fn bad_cursors_limits_statuses_and_times_are_400_in_the_error_shape() {
    let (h, _) = fixture().await;
    for query in [
        "cursor=garbage",
        "cursor=12_notauuid",
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=ten",
        "status=exploded",
        "since=yesterday",
        "since=2024-13-45T00:00:00Z",
        "repository=no-slash",
        "colour=blue",
    ] {
        let (status, body) = send(&h, get(&format!("/api/builds?{query}"), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_error_shape(&body, query);
    }
    let (status, body) = send(&h, get("/api/builds?repository=acme/missing", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error_shape(&body, "an unknown repository");
}

#[tokio::test]
async fn callers_see_only_the_builds_of_repositories_they_may_read() {
    let (h, stored) = fixture().await;
    let store = h.state.store.clone();
    let api = store
        .repository_by_name("acme/api")
        .await
        .expect("query")
        .expect("acme/api");

    // A grant on acme/api: its builds, and those open to everyone.
    let granted = token_for(&store, "ivan", None, Role::Owner, None).await;
    let ivan = store
        .user_by_name("ivan")
        .await
        .expect("query")
        .expect("ivan");
    store
        .set_grant(api.id, ivan.id, Some(Role::Read))
        .await
        .expect("grant");
    assert_eq!(
        all(&h, Some(&granted), "limit=2").await,
        expected(&stored, |b| matches!(
            b.repository,
            "acme/api" | "acme/open"
        )),
    );
    let (status, body) =
        send_as_is(&h, get("/api/builds?repository=acme/web", Some(&granted))).await;
    // Answered as if acme/web did not exist: the user may not learn that it does.
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error_shape(&body, "a filter naming a repository the user may not read");

    // A token limited to acme/api of a global reader: only acme/api.
    let limited = token_for(&store, "judy", Some(Role::Read), Role::Read, Some(api.id)).await;
    assert_eq!(
        all(&h, Some(&limited), "").await,
        expected(&stored, |b| b.repository == "acme/api"),
    );

    // A user with no grant sees the open repository only, and so does the anonymous caller.
    let stranger = token_for(&store, "kim", None, Role::Owner, None).await;
    let open = expected(&stored, |b| b.repository == "acme/open");
    assert_eq!(all(&h, Some(&stranger), "").await, open);
    assert_eq!(all(&h, None, "").await, open);
    assert_eq!(all(&h, None, "repository=acme/open").await, open);
    let (status, body) = send_as_is(&h, get("/api/builds?repository=acme/web", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error_shape(&body, "anonymous, filtering on a closed repository");

    // A global reader sees everything.
    let global = token_for(&store, "leo", Some(Role::Read), Role::Read, None).await;
    assert_eq!(
        all(&h, Some(&global), "").await,
        expected(&stored, |_| true)
    );
}

#[tokio::test]
async fn without_an_open_repository_the_anonymous_list_is_401() {
    let h = harness().await;
    let (status, body) = send_as_is(&h, get("/api/builds", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error_shape(&body, "anonymous list");
}

/// A build of acme/web with a three-chunk log; returns its id and the whole log.
async fn build_with_log(h: &Harness) -> (Uuid, String) {
    let id = queue(h, "acme/web", "refs/heads/main", 1).await;
    let chunks = ["line one\n", "line two\n", "line three \u{e9}\n"];
    for (seq, chunk) in chunks.iter().enumerate() {
        h.state
            .store
            .append_log(id, seq as i64 + 1, chunk.as_bytes())
            .await
            .expect("append");
    }
    (id, chunks.concat())
}

async fn log(
    h: &Harness,
    id: Uuid,
    query: &str,
    range: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut builder = Request::get(format!("/api/builds/{id}/log{query}"))
        .header("authorization", format!("Bearer {}", h.admin_token));
    if let Some(range) = range {
        builder = builder.header(header::RANGE, range);
    }
    send_raw(h, builder.body(Body::empty()).expect("request")).await
}

fn content_range(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_log_answers_byte_ranges_offsets_and_tails() {
    let h = harness().await;
    let (id, text) = build_with_log(&h).await;
    let bytes = text.as_bytes();
    let size = bytes.len();

    let (status, headers, body) = log(&h, id, "", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, bytes);
    assert_eq!(
        headers.get(header::ACCEPT_RANGES).map(|v| v.as_bytes()),
        Some(&b"bytes"[..])
    );
    assert!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "{headers:?}"
    );

    // From byte 9 (the second chunk) to the end, by header and by query.
    for (query, range) in [("", Some("bytes=9-")), ("?offset=9", None)] {
        let (status, headers, body) = log(&h, id, query, range).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{query} {range:?}");
        assert_eq!(body, &bytes[9..]);
        assert_eq!(
            content_range(&headers),
            format!("bytes 9-{}/{size}", size - 1)
        );
    }
    // A start inside a chunk.
    let (status, _, body) = log(&h, id, "", Some("bytes=14-")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &bytes[14..]);
    // The tail: the last 8 bytes, across no boundary, and more than the log holds.
    let (status, headers, body) = log(&h, id, "", Some("bytes=-8")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &bytes[size - 8..]);
    assert_eq!(
        content_range(&headers),
        format!("bytes {}-{}/{size}", size - 8, size - 1)
    );
    let (status, _, body) = log(&h, id, "", Some("bytes=-1000")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, bytes);
    // A closed range across a chunk boundary, and one running past the end.
    let (status, headers, body) = log(&h, id, "", Some("bytes=5-12")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &bytes[5..=12]);
    assert_eq!(content_range(&headers), format!("bytes 5-12/{size}"));
    let (status, headers, body) = log(&h, id, "", Some("bytes=20-5000")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &bytes[20..]);
    assert_eq!(
        content_range(&headers),
        format!("bytes 20-{}/{size}", size - 1)
    );

    // Nothing to send: 416 with the size, in the error shape.
    for (query, range) in [
        ("", Some(format!("bytes={size}-"))),
        ("", Some("bytes=5000-6000".to_owned())),
        ("", Some("bytes=-0".to_owned())),
        (&format!("?offset={size}") as &str, None),
    ] {
        let (status, headers, body) = log(&h, id, query, range.as_deref()).await;
        assert_eq!(
            status,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{query} {range:?}"
        );
        assert_eq!(content_range(&headers), format!("bytes */{size}"));
        let body: Value = serde_json::from_slice(&body).expect("JSON");
        assert_error_shape(&body, "416");
    }
    // A malformed query is a 400.
    let (status, _, body) = log(&h, id, "?offset=minus-one", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&serde_json::from_slice(&body).expect("JSON"), "offset");

    // A build with no log yet: the whole (empty) log, and no range inside it.
    let empty = queue(&h, "acme/web", "refs/heads/main", 2).await;
    let (status, _, body) = log(&h, empty, "", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    let (status, headers, _) = log(&h, empty, "", Some("bytes=0-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(content_range(&headers), "bytes */0");
}

/// One Server-Sent Event: its name, id and data.
#[derive(Debug)]
struct Event {
    name: String,
    id: Option<String>,
    data: Value,
}

fn parse_events(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let mut name = None;
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            // Comment lines (keep-alives) carry no event.
            Some(Event {
                name: name?,
                id,
                data: serde_json::from_str(&data).expect("JSON data"),
            })
        })
        .collect()
}

/// Marks a queued build as run to success through the worker's own calls.
async fn finish(h: &Harness, id: Uuid) {
    let store = &h.state.store;
    let claimed = store
        .claim_build("test-worker", Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(claimed.id, id);
    let result = BuildResult {
        status: BuildStatus::Succeeded,
        error: None,
        digest: None,
    };
    assert!(
        store
            .finish_build(id, "test-worker", &result)
            .await
            .expect("finish")
    );
}

#[tokio::test]
async fn the_live_log_of_a_finished_build_sends_whole_lines_then_ends() {
    let h = harness().await;
    let (id, text) = build_with_log(&h).await;
    finish(&h, id).await;
    let stream = |query: &str, last_event_id: Option<&str>| {
        let mut builder = Request::get(format!("/api/builds/{id}/log/stream{query}"))
            .header("authorization", format!("Bearer {}", h.admin_token));
        if let Some(last) = last_event_id {
            builder = builder.header("last-event-id", last);
        }
        builder.body(Body::empty()).expect("request")
    };

    let (status, headers, body) = send_raw(&h, stream("", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream")),
        "{headers:?}"
    );
    let events = parse_events(&String::from_utf8(body).expect("UTF-8"));
    let mut received = String::new();
    for event in events.iter().filter(|e| e.name == "log") {
        let piece = event.data["text"].as_str().expect("text");
        assert!(piece.ends_with('\n'), "whole lines: {piece:?}");
        assert_eq!(
            event.data["offset"].as_u64(),
            Some(received.len() as u64),
            "each piece starts where the last ended"
        );
        received.push_str(piece);
        assert_eq!(
            event.id.as_deref(),
            Some(received.len().to_string().as_str()),
            "the event id is the offset after the text"
        );
    }
    assert_eq!(received, text);
    let last = events.last().expect("events");
    assert_eq!(last.name, "end");
    assert_eq!(last.data["status"], "succeeded");
    assert!(
        events.iter().any(|e| e.name == "status"),
        "the status is announced: {events:?}"
    );

    // From an offset, or where a reconnecting client stopped (which wins).
    for (query, last_event_id) in [("?offset=9", None), ("?offset=0", Some("9"))] {
        let (status, _, body) = send_raw(&h, stream(query, last_event_id)).await;
        assert_eq!(status, StatusCode::OK);
        let events = parse_events(&String::from_utf8(body).expect("UTF-8"));
        let rest: String = events
            .iter()
            .filter(|e| e.name == "log")
            .filter_map(|e| e.data["text"].as_str())
            .collect();
        assert_eq!(rest, &text[9..], "{query} {last_event_id:?}");
        assert_eq!(events.last().map(|e| e.name.as_str()), Some("end"));
    }
}

#[tokio::test]
async fn the_detail_has_a_timeline_of_every_state() {
    let h = harness().await;
    let (status, answer) = send(
        &h,
        signed("push", "d-timeline", &push_body("refs/heads/main", COMMIT)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id: Uuid = answer["builds"][0]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("id");

    let (status, queued) = send(&h, get(&format!("/api/builds/{id}"), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(queued["timeline"][0]["state"], "queued");
    assert_eq!(queued["timeline"][0]["detail"], "queued by a push");
    assert_eq!(queued["waiting"], "waiting for a free worker");

    let store = &h.state.store;
    let claimed = store
        .claim_build("test-worker", Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("claimed");
    for state in ["cloning", "building", "pushing"] {
        store
            .record_build_event(claimed.id, 1, state)
            .await
            .expect("event");
    }
    let result = BuildResult {
        status: BuildStatus::Failed,
        error: Some("the push was refused".to_owned()),
        digest: None,
    };
    assert!(
        store
            .finish_build(id, "test-worker", &result)
            .await
            .expect("finish")
    );

    let (status, detail) = send(&h, get(&format!("/api/builds/{id}"), None)).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let timeline = detail["timeline"].as_array().expect("timeline");
    let states: Vec<&str> = timeline
        .iter()
        .map(|entry| entry["state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states,
        ["queued", "cloning", "building", "pushing", "failed"]
    );
    for entry in &timeline[..timeline.len() - 1] {
        assert!(entry["at"].is_string(), "{entry}");
        assert!(
            entry["duration_ms"].as_i64().is_some_and(|d| d >= 0),
            "{entry}"
        );
    }
    assert_eq!(timeline[1]["attempt"], 1);
    let end = timeline.last().expect("end");
    assert_eq!(end["detail"], "the push was refused");
    assert_eq!(end["duration_ms"], Value::Null, "the end lasts no time");
    assert_eq!(detail["status"], "failed");
    assert_eq!(detail["waiting"], Value::Null);
    assert_eq!(
        detail["attempt_history"].as_array().map(Vec::len),
        Some(1),
        "{detail}"
    );
    assert_eq!(detail["attempt_history"][0]["worker"], "test-worker");
}

#[tokio::test]
async fn a_notifications_error_text_is_answered_to_admins_only() {
    let h = harness().await;
    let error = "connecting to hooks.internal.example (10.20.30.40:443) was refused";
    let (build, _, _) = build_with_notifications(&h).await;
    fail_due_notifications(&h, error).await;
    let repository = h
        .state
        .store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("acme/web");
    let reader = token_for(&h.state.store, "reader", None, Role::Read, None).await;
    let user = h
        .state
        .store
        .user_by_name("reader")
        .await
        .expect("query")
        .expect("reader");
    h.state
        .store
        .set_grant(repository.id, user.id, Some(Role::Read))
        .await
        .expect("grant");

    let (status, answer) = send(&h, get(&format!("/api/builds/{build}"), Some(&reader))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let notifications = answer["notifications"].as_array().expect("notifications");
    assert_eq!(notifications.len(), 2, "{answer}");
    for notification in notifications {
        assert_eq!(notification["state"], "failed", "{answer}");
        assert_eq!(
            notification["last_error"], "failed; an admin can see why",
            "{answer}"
        );
        assert!(notification.get("history").is_none(), "{answer}");
    }
    assert!(!answer.to_string().contains("10.20.30.40"), "{answer}");

    let (status, answer) = send(&h, get(&format!("/api/builds/{build}"), None)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    for notification in answer["notifications"].as_array().expect("notifications") {
        assert_eq!(notification["last_error"], error, "{answer}");
        assert_eq!(notification["history"][0]["error"], error, "{answer}");
    }
}
