//! The webhook endpoint, the deliveries log and trigger URLs through the real router and a
//! real SQLite database.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::Value;
use slipway_store::RepositorySpec;

#[tokio::test]
async fn push_is_accepted_once_and_replayed_for_duplicates() {
    let h = harness().await;
    let body = push_body("refs/heads/main", COMMIT);
    let (status, first) = send(&h, signed("push", "d-1", &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let builds = first["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0]["tags"], serde_json::json!(["latest"]));
    assert_eq!(builds[0]["ref"], "refs/heads/main");
    assert_eq!(builds[0]["commit"], COMMIT);
    let (status, again) = send(&h, signed("push", "d-1", &body)).await;
    assert_eq!((status, &again), (StatusCode::ACCEPTED, &first));
    assert_eq!(build_count(&h).await, 1);

    let id = builds[0]["id"].as_str().expect("id");
    let request = Request::get(format!("/api/builds/{id}"))
        .body(Body::empty())
        .expect("request");
    let (status, build) = send(&h, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(build["status"], "queued");
    assert_eq!(build["repository"], "acme/web");
}

#[tokio::test]
async fn tag_rule_renders_capture_groups() {
    let h = harness().await;
    let (status, answer) = send(
        &h,
        signed("push", "t-1", &push_body("refs/tags/v1.2.3", COMMIT)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        answer["builds"][0]["tags"],
        serde_json::json!(["1.2.3", "latest"])
    );
}

#[tokio::test]
async fn ping_deletion_and_unmatched_refs_build_nothing() {
    let h = harness().await;
    let (status, _) = send(
        &h,
        signed("ping", "p-1", "{\"zen\":\"Keep it logically awesome.\"}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, deleted) = send(
        &h,
        signed(
            "push",
            "del-1",
            &push_body("refs/heads/main", &"0".repeat(40)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(deleted["ignored"], "branch main deleted: nothing to build");
    let (status, unmatched) = send(
        &h,
        signed("push", "dev-1", &push_body("refs/heads/dev", COMMIT)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        unmatched["ignored"],
        "ref refs/heads/dev matched no rule (rules: branch main, tag /^v([0-9.]+)$/)"
    );
    let (status, other) = send(&h, signed("issues", "i-1", "{}")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        other["ignored"]
            .as_str()
            .is_some_and(|r| r.contains("issues")),
        "{other}"
    );
    assert_eq!(build_count(&h).await, 0);
}

#[tokio::test]
async fn bad_signatures_are_refused_and_store_nothing() {
    let h = harness().await;
    let body = push_body("refs/heads/main", COMMIT);
    let mut wrong = signed("push", "bad-1", &body);
    wrong.headers_mut().insert(
        "x-hub-signature-256",
        format!("sha256={}", "0".repeat(64))
            .parse()
            .expect("header"),
    );
    let (status, error) = send(&h, wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("signature mismatch")),
        "{error}"
    );

    let mut missing = signed("push", "bad-1", &body);
    missing.headers_mut().remove("x-hub-signature-256");
    assert_eq!(send(&h, missing).await.0, StatusCode::UNAUTHORIZED);

    let mut empty = signed("push", "bad-1", &body);
    empty
        .headers_mut()
        .insert("x-hub-signature-256", "sha256=".parse().expect("header"));
    assert_eq!(send(&h, empty).await.0, StatusCode::UNAUTHORIZED);

    let repo = h
        .state
        .store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("repo");
    assert_eq!(
        h.state.store.delivery_count(repo.id).await.expect("count"),
        0
    );
    // The same delivery id, correctly signed, is still accepted: refusals do not burn it.
    assert_eq!(
        send(&h, signed("push", "bad-1", &body)).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(build_count(&h).await, 1);
}

#[tokio::test]
async fn malformed_oversized_unknown_and_foreign_requests() {
    let h = harness().await;
    let (status, error) = send(&h, signed("push", "m-1", "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");

    let big = "x".repeat(25 * 1024 * 1024 + 1);
    let (status, _) = send(&h, signed("push", "big-1", &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Without a Content-Length the limit still holds while reading.
    let stream = futures_util::stream::iter(
        (0..27).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1024 * 1024]))),
    );
    let mut chunked = signed("push", "big-2", "");
    *chunked.body_mut() = Body::from_stream(stream);
    assert_eq!(send(&h, chunked).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    let mut unknown = signed("push", "u-1", "{}");
    *unknown.uri_mut() = "/hooks/acme/nope".parse().expect("uri");
    let (status, error) = send(&h, unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        error["error"]["message"],
        "no repository acme/nope is configured"
    );

    let mut foreign = signed("push", "f-1", "{}");
    foreign.headers_mut().remove("x-github-event");
    foreign
        .headers_mut()
        .insert("x-gitlab-event", "Push Hook".parse().expect("header"));
    let (status, error) = send(&h, foreign).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expects github")),
        "{error}"
    );
    assert_eq!(build_count(&h).await, 0);
}

#[tokio::test]
async fn form_encoded_deliveries_work() {
    let h = harness().await;
    let json = push_body("refs/heads/main", COMMIT);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json)
        .finish();
    let mut request = signed("push", "form-1", &form);
    request.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().expect("header"),
    );
    let (status, answer) = send(&h, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(build_count(&h).await, 1);
}

#[tokio::test]
async fn unknown_builds_and_endpoints_are_404_in_one_shape() {
    let h = harness().await;
    for path in [
        "/api/builds/not-a-uuid",
        "/api/builds/01a20934-bb04-7237-b0dc-5863732552bb",
        "/api/nothing",
    ] {
        let (status, error) =
            send(&h, Request::get(path).body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error["error"]["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn every_request_is_logged_with_its_verification_and_outcome() {
    let h = harness().await;
    let body = push_body("refs/heads/main", COMMIT);
    let mut wrong = signed("push", "log-1", &body);
    wrong.headers_mut().insert(
        "x-hub-signature-256",
        format!("sha256={}", "0".repeat(64))
            .parse()
            .expect("header"),
    );
    assert_eq!(send(&h, wrong).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(&h, signed("push", "log-2", "{oops")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(
            &h,
            signed("push", "log-3", &push_body("refs/heads/dev", COMMIT))
        )
        .await
        .0,
        StatusCode::ACCEPTED
    );
    let (_, accepted) = send(&h, signed("push", "log-4", &body)).await;

    let (status, page) = get_json(&h, "/api/repositories/acme/web/deliveries").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let deliveries = page["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 4, "{page}");
    // Newest first.
    let (newest, unmatched, malformed, refused) = (
        &deliveries[0],
        &deliveries[1],
        &deliveries[2],
        &deliveries[3],
    );
    assert_eq!(refused["status_code"], 401);
    assert_eq!(refused["verification"], "signature mismatch");
    assert_eq!(
        refused["body_kept"], false,
        "an unverified body is never stored"
    );
    assert_eq!(refused["forge_delivery_id"], "log-1");
    assert_eq!(malformed["status_code"], 400);
    assert_eq!(malformed["verification"], "verified (x-hub-signature-256)");
    assert!(
        malformed["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("malformed payload")),
        "{malformed}"
    );
    assert_eq!(
        unmatched["outcome"],
        "ref refs/heads/dev matched no rule (rules: branch main, tag /^v([0-9.]+)$/)"
    );
    assert_eq!(newest["status_code"], 202);
    assert_eq!(newest["id"], accepted["delivery"]);
    assert_eq!(newest["builds"][0]["id"], accepted["builds"][0]["id"]);
    assert_eq!(page["repository"]["warnings"], serde_json::json!([]));

    // The detail says why, rule by rule, and which builds the delivery made.
    let (status, detail) = get_json(
        &h,
        &format!("/api/deliveries/{}", newest["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["decisions"][0]["outcome"], "build");
    assert_eq!(
        detail["decisions"][0]["build_id"],
        accepted["builds"][0]["id"]
    );
    assert_eq!(detail["decisions"][1]["outcome"], "no_match");
    assert_eq!(detail["builds_created"].as_array().map(Vec::len), Some(1));
    assert_eq!(detail["headers"]["x-github-event"], "push");
    assert!(
        detail["headers"].get("x-hub-signature-256").is_none(),
        "signatures are not kept"
    );

    // Paging continues after the last delivery of the previous page.
    let (_, first) = get_json(&h, "/api/repositories/acme/web/deliveries?limit=3").await;
    let next = first["next"].as_str().expect("a next page");
    let (_, second) = get_json(
        &h,
        &format!("/api/repositories/acme/web/deliveries?limit=3&before={next}"),
    )
    .await;
    assert_eq!(second["deliveries"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["next"], Value::Null);
}

#[tokio::test]
async fn unknown_repositories_are_logged_but_not_listed_anywhere_else() {
    let h = harness().await;
    let mut unknown = signed("push", "u-1", "{}");
    *unknown.uri_mut() = "/hooks/acme/ghost".parse().expect("uri");
    assert_eq!(send(&h, unknown).await.0, StatusCode::NOT_FOUND);
    let (status, _) = get_json(&h, "/api/repositories/acme/ghost/deliveries").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn redelivery_replans_from_the_stored_body_without_building_twice() {
    let h = harness().await;
    let (_, first) = send(
        &h,
        signed("push", "r-1", &push_body("refs/tags/v2.0", COMMIT)),
    )
    .await;
    let original = first["delivery"].as_str().expect("delivery id").to_owned();
    let build_id = first["builds"][0]["id"].clone();

    let replay = Request::post(format!("/api/deliveries/{original}/redeliver"))
        .body(Body::empty())
        .expect("request");
    let (status, replayed) = send(&h, replay).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    assert_ne!(
        replayed["delivery"], first["delivery"],
        "the replay is its own delivery"
    );
    assert_eq!(
        replayed["builds"][0]["id"], build_id,
        "the existing build is found, not made again"
    );
    assert_eq!(replayed["builds"][0]["existing"], true);
    assert_eq!(build_count(&h).await, 1);

    let (_, detail) = get_json(
        &h,
        &format!(
            "/api/deliveries/{}",
            replayed["delivery"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(detail["redelivery_of"], original.as_str());
    assert!(
        detail["verification"]
            .as_str()
            .is_some_and(|v| v.starts_with("replayed from delivery")),
        "{detail}"
    );
    assert!(
        detail["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("already existed")),
        "{detail}"
    );
    assert_eq!(detail["builds_created"], serde_json::json!([]));

    // A refused request has no body to replay.
    let mut wrong = signed("push", "r-2", "{}");
    wrong.headers_mut().insert(
        "x-hub-signature-256",
        format!("sha256={}", "1".repeat(64))
            .parse()
            .expect("header"),
    );
    send(&h, wrong).await;
    let (_, page) = get_json(&h, "/api/repositories/acme/web/deliveries?limit=1").await;
    let refused = page["deliveries"][0]["id"].as_str().expect("id").to_owned();
    let replay = Request::post(format!("/api/deliveries/{refused}/redeliver"))
        .body(Body::empty())
        .expect("request");
    let (status, error) = send(&h, replay).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
}

#[tokio::test]
async fn unsigned_deliveries_only_where_the_repository_opts_out_and_then_with_a_warning() {
    let h = harness().await;
    let body = push_body("refs/heads/main", COMMIT);
    let mut unsigned = signed("push", "n-1", &body);
    unsigned.headers_mut().remove("x-hub-signature-256");
    assert_eq!(send(&h, unsigned).await.0, StatusCode::UNAUTHORIZED);

    let repo = h
        .state
        .store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("repo");
    h.state
        .store
        .sync_repositories(&[RepositorySpec {
            allow_unsigned: true,
            ..repository("acme/web", "github", repo.rules.clone())
        }])
        .await
        .expect("opt out");
    let mut unsigned = signed("push", "n-2", &body);
    unsigned.headers_mut().remove("x-hub-signature-256");
    let (status, answer) = send(&h, unsigned).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let mut wrong = signed("push", "n-3", &body);
    wrong.headers_mut().insert(
        "x-hub-signature-256",
        format!("sha256={}", "2".repeat(64))
            .parse()
            .expect("header"),
    );
    assert_eq!(
        send(&h, wrong).await.0,
        StatusCode::UNAUTHORIZED,
        "a wrong signature is still refused"
    );

    let (_, page) = get_json(&h, "/api/repositories/acme/web/deliveries").await;
    assert!(
        page["repository"]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("unsigned webhooks are accepted")),
        "{page}"
    );
    assert!(
        page["deliveries"][1]["verification"]
            .as_str()
            .is_some_and(|v| v.starts_with("unsigned")),
        "{page}"
    );
}

#[tokio::test]
async fn triggers_build_every_literal_rule_at_the_remote_head() {
    let h = harness().await;
    let token = trigger_token(&h).await;
    let (status, answer) = fire(&h, &token, "application/json", "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let entries = answer.as_array().expect("an array");
    assert_eq!(entries.len(), 2, "{answer}");
    assert_eq!(entries[0]["source_type"], "Branch");
    assert_eq!(entries[0]["source_name"], "main");
    assert_eq!(entries[0]["evaluated_tag_name"], "latest");
    let build_id = entries[0]["build_id"].as_str().expect("a build").to_owned();
    assert!(
        entries[1]["msg"]
            .as_str()
            .is_some_and(|m| m.contains("regex")),
        "{answer}"
    );
    let (_, build) = get_json(&h, &format!("/api/builds/{build_id}")).await;
    assert_eq!(build["commit"], MAIN_HEAD, "the head comes from the remote");
    assert_eq!(build["trigger"], "trigger");

    // The same again while that build waits: nothing new, and the answer says why.
    let (status, again) = fire(
        &h,
        &format!("{token}/"),
        "application/x-www-form-urlencoded",
        "build=true",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again[0]["build_id"], Value::Null);
    assert_eq!(
        again[0]["msg"],
        format!("an identical build is already queued: {build_id}")
    );
}

#[tokio::test]
async fn triggers_for_a_ref_a_tag_and_a_commit() {
    let h = harness().await;
    let token = trigger_token(&h).await;
    let (status, tag) = fire(
        &h,
        &token,
        "application/json",
        r#"{"source_type": "Tag", "source_name": "v1.1"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{tag}");
    assert_eq!(
        tag[0]["evaluated_tag_name"], "1.1,latest",
        "the regex rule builds the named tag"
    );
    let (_, build) = get_json(
        &h,
        &format!("/api/builds/{}", tag[0]["build_id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(build["commit"], TAG_HEAD);

    let (_, by_tag) = fire(
        &h,
        &token,
        "application/json",
        r#"{"docker_tag": "latest"}"#,
    )
    .await;
    assert_eq!(by_tag.as_array().map(Vec::len), Some(1), "{by_tag}");
    assert_eq!(by_tag[0]["source_name"], "main");

    let commit = "dddddddddddddddddddddddddddddddddddddddd";
    let body =
        format!(r#"{{"source_type": "Branch", "source_name": "main", "commit": "{commit}"}}"#);
    let (_, pinned) = fire(&h, &token, "application/json", &body).await;
    let (_, build) = get_json(
        &h,
        &format!(
            "/api/builds/{}",
            pinned[0]["build_id"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(build["commit"], commit);

    let (_, missing) = fire(
        &h,
        &token,
        "application/json",
        r#"{"source_type": "Branch", "source_name": "gone"}"#,
    )
    .await;
    assert!(
        missing[0]["msg"]
            .as_str()
            .is_some_and(|m| m.contains("no rule matches branch gone")),
        "{missing}"
    );
    let (_, unknown_tag) = fire(&h, &token, "application/json", r#"{"docker_tag": "nope"}"#).await;
    assert_eq!(unknown_tag[0]["build_id"], Value::Null);

    let (status, error) = fire(
        &h,
        &token,
        "application/json",
        r#"{"source_type": "Branch"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expected an empty body")),
        "{error}"
    );

    let (status, listing) = get_json(&h, "/api/repositories/acme/web/triggers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listing["triggers"][0]["name"], "ci");
    assert!(
        listing["triggers"][0]["requests"]
            .as_array()
            .is_some_and(|r| r.len() == 6),
        "{listing}"
    );
    assert_eq!(listing["triggers"][0]["requests"][0]["status_code"], 400);
    assert!(
        !listing.to_string().contains(&token),
        "tokens are never shown"
    );
}

#[tokio::test]
async fn unknown_revoked_and_overused_tokens() {
    let h = harness().await;
    let (status, unknown) = fire(&h, "slw_nope", "application/json", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let token = trigger_token(&h).await;
    let repo = h
        .state
        .store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("repo");
    assert!(
        h.state
            .store
            .revoke_trigger(repo.id, "ci")
            .await
            .expect("revoke")
    );
    let (status, revoked) = fire(&h, &token, "application/json", "").await;
    assert_eq!(
        (status, &revoked),
        (StatusCode::NOT_FOUND, &unknown),
        "revoked looks exactly like unknown"
    );

    let token = trigger_token(&h).await;
    let mut limited = None;
    for _ in 0..12 {
        let (status, _) = fire(&h, &token, "application/json", r#"{"docker_tag": "nope"}"#).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(status);
            break;
        }
    }
    assert_eq!(
        limited,
        Some(StatusCode::TOO_MANY_REQUESTS),
        "the 11th request in a burst is refused"
    );
}

#[tokio::test]
async fn cancel_and_retry() {
    let h = harness().await;
    let (_, answer) = send(
        &h,
        signed("push", "c-1", &push_body("refs/heads/main", COMMIT)),
    )
    .await;
    let id = answer["builds"][0]["id"].as_str().expect("id").to_owned();
    let post = |path: String| Request::post(path).body(Body::empty()).expect("request");

    let (status, retried_early) = send(&h, post(format!("/api/builds/{id}/retry"))).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a queued build cannot be retried: {retried_early}"
    );
    let (status, cancelled) = send(&h, post(format!("/api/builds/{id}/cancel"))).await;
    assert_eq!(
        (status, &cancelled["status"]),
        (StatusCode::OK, &Value::from("cancelled")),
        "{cancelled}"
    );
    let (_, build) = get_json(&h, &format!("/api/builds/{id}")).await;
    assert_eq!(build["status"], "cancelled");
    assert_eq!(build["error"], "cancelled by root");
    let (status, again) = send(&h, post(format!("/api/builds/{id}/cancel"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    let (status, retry) = send(&h, post(format!("/api/builds/{id}/retry"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
    assert_eq!(retry["retry_of"], id.as_str());
    assert_eq!(retry["trigger"], "retry");
    assert_eq!(retry["status"], "queued");
    assert_eq!(retry["commit"], COMMIT);
    assert_ne!(retry["id"], id.as_str());

    let (status, _) = send(
        &h,
        post("/api/builds/01a20934-bb04-7237-b0dc-5863732552bb/cancel".to_owned()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_malformed_query_string_gets_the_json_error_shape() {
    let h = harness().await;
    let (status, error) = get_json(&h, "/api/repositories/acme/web/deliveries?limit=lots").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], "bad_request", "{error}");
}

#[tokio::test]
async fn the_reconciler_queues_what_no_webhook_announced_and_only_once() {
    let h = harness().await;
    let repo = h
        .state
        .store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("repo");
    let queued = slipway_server::reconcile(&h.state, &repo)
        .await
        .expect("reconciles");
    // The literal rule's branch is built at the remote's head; the regex tag rule has never
    // built anything, so it does not start building every tag.
    assert_eq!(queued.len(), 1);
    let (_, build) = get_json(&h, &format!("/api/builds/{}", queued[0])).await;
    assert_eq!(
        (build["ref"].as_str(), build["commit"].as_str()),
        (Some("refs/heads/main"), Some(MAIN_HEAD))
    );
    assert_eq!(build["trigger"], "reconciler");
    assert!(
        slipway_server::reconcile(&h.state, &repo)
            .await
            .expect("again")
            .is_empty(),
        "nothing twice"
    );
    // The webhook for that push, arriving late, finds the reconciler's build.
    let (_, answer) = send(
        &h,
        signed("push", "late-1", &push_body("refs/heads/main", MAIN_HEAD)),
    )
    .await;
    assert_eq!(answer["builds"][0]["id"], queued[0].to_string());
    assert_eq!(answer["builds"][0]["existing"], true);
}

#[tokio::test]
async fn forge_repository_ignores_pushes_of_other_repositories() {
    let spec = RepositorySpec {
        forge_repository: Some("acme/web".to_owned()),
        ..repository("acme/web", "github", vec![])
    };
    let h = harness_with(vec![spec]).await;
    let with_repository = |name: &str, delivery: &str| {
        let mut body: Value =
            serde_json::from_str(&push_body("refs/heads/main", COMMIT)).expect("json");
        body["repository"] = serde_json::json!({"full_name": name});
        signed("push", delivery, &body.to_string())
    };
    let (status, other) = send(&h, with_repository("acme/other", "o-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        other["ignored"],
        "the push is for repository acme/other, but this repository is acme/web (forge_repository)"
    );
    let (_, nameless) = send(
        &h,
        signed("push", "o-2", &push_body("refs/heads/main", COMMIT)),
    )
    .await;
    assert!(
        nameless["ignored"]
            .as_str()
            .is_some_and(|r| r.contains("names no repository")),
        "{nameless}"
    );
    assert_eq!(build_count(&h).await, 0);
    let (_, ours) = send(&h, with_repository("Acme/Web", "o-3")).await;
    assert_eq!(
        ours["builds"].as_array().map(Vec::len),
        Some(1),
        "names compare without regard to case: {ours}"
    );
}

#[tokio::test]
async fn workers_and_their_health_are_listed() {
    let h = harness().await;
    let now = slipway_store::now_millis();
    let unhealthy = slipway_store::WorkerRecord {
        id: "w-1".to_owned(),
        hostname: "build-1".to_owned(),
        slots: 4,
        started_at: now,
        last_seen_at: now,
        problem: Some("the Docker engine does not answer".to_owned()),
    };
    h.state
        .store
        .report_worker(&unhealthy)
        .await
        .expect("report");
    let (status, listing) = get_json(&h, "/api/workers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listing["workers"][0]["healthy"], false);
    assert_eq!(
        listing["workers"][0]["problem"],
        "the Docker engine does not answer"
    );
    let (_, health) = get_json(&h, "/healthz").await;
    assert_eq!(
        health["workers"],
        serde_json::json!({"seen": 1, "unhealthy": 1})
    );
}

#[tokio::test]
async fn a_saturated_webhook_endpoint_answers_503_quickly() {
    let mut h = harness().await;
    // No place free: every request waits its two seconds, then is told to come back.
    h.state.hook_slots = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (status, error) = send(
        &h,
        signed("push", "busy-1", &push_body("refs/heads/main", COMMIT)),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["error"]["code"], "busy");
    assert_eq!(build_count(&h).await, 0);
}
