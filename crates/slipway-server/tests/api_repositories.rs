//! Repositories through the API: secrets are write-only (no answer of any endpoint contains
//! one), edits keep, clear or replace them, configuration-managed repositories are read-only,
//! and deleting takes the owner role and removes the history.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use slipway_core::{BuildStatus, Role};
use slipway_server::route_docs;
use slipway_store::BuildResult;
use uuid::Uuid;

const WEBHOOK_SECRET: &str = "whsec-7f3a9c2e41d84b6a-never-shown";
const GIT_PASSWORD: &str = "gitpw-c0ffee-4d2b-never-shown";
const NEW_WEBHOOK_SECRET: &str = "whsec-second-5e1b77d0a9-never-shown";
const HOOK_SECRET: &str = "hooksec-3a5c-outgoing-never-shown";
const STATUS_TOKEN: &str = "statustok-9d1e-forge-never-shown";

fn json_request(method: &str, path: &str, token: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

fn get(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request")
}

/// Fails if any secret this test has set appears in `bytes`.
fn assert_no_secret(bytes: &[u8], context: &str) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [
        WEBHOOK_SECRET,
        GIT_PASSWORD,
        NEW_WEBHOOK_SECRET,
        HOOK_SECRET,
        STATUS_TOKEN,
    ] {
        assert!(!text.contains(secret), "{context} shows a secret: {text}");
    }
}

/// Sends a request and checks that its answer, whatever it is, holds no secret.
async fn send_checked(h: &Harness, request: Request<Body>) -> (StatusCode, Value) {
    let context = format!("{} {}", request.method(), request.uri());
    let (status, _, bytes) = send_raw(h, request).await;
    assert_no_secret(&bytes, &context);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn new_repository() -> Value {
    json!({
        "name": "acme/secret",
        "provider": "github",
        "git_url": "https://git.example/acme/secret.git",
        "image": "127.0.0.1:5000/acme/secret",
        "rules": [{"source_type": "branch", "source": "main", "tags": "latest"}],
        "git_username": "build-bot",
        "webhook_secret": WEBHOOK_SECRET,
        "git_password": GIT_PASSWORD,
        "report_status": true,
        "status_token": STATUS_TOKEN,
    })
}

/// Pushes `commit` to acme/secret, signed with `secret`; returns the answer.
async fn push(h: &Harness, secret: &str, delivery: &str, commit: &str) -> (StatusCode, Value) {
    send_checked(
        h,
        signed_to(
            "acme/secret",
            secret,
            delivery,
            &push_body("refs/heads/main", commit),
        ),
    )
    .await
}

fn build_id(answer: &Value) -> Uuid {
    answer["builds"][0]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no build in {answer}"))
}

async fn run_to_success(h: &Harness, id: Uuid) {
    let store = &h.state.store;
    let claimed = store
        .claim_build("test-worker", Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(claimed.id, id);
    store
        .append_log(id, 1, b"Successfully built 0123abcd\n")
        .await
        .expect("log");
    let result = BuildResult {
        status: BuildStatus::Succeeded,
        error: None,
        digest: Some(format!("sha256:{}", "e".repeat(64))),
    };
    assert!(
        store
            .finish_build(id, "test-worker", &result)
            .await
            .expect("finish")
    );
}

#[tokio::test]
async fn secrets_are_never_in_any_answer() {
    let h = harness().await;
    let root = h.admin_token.clone();

    let (status, created) = send_checked(
        &h,
        json_request("POST", "/api/repositories", &root, &new_repository()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["managed_by"], "api");
    assert_eq!(created["secrets"]["webhook_secret"], "set");
    assert_eq!(created["secrets"]["git_password"], "set");
    assert_eq!(created["git_username"], "build-bot");

    // History for every endpoint to show: a delivery, a finished build with a log, a
    // trigger, a grant and a token.
    let (status, answer) = push(&h, WEBHOOK_SECRET, "s-1", COMMIT).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let build = build_id(&answer);
    run_to_success(&h, build).await;
    let delivery = h
        .state
        .store
        .build(build)
        .await
        .expect("query")
        .and_then(|b| b.delivery_id)
        .expect("delivery");
    let (status, body) = send_checked(
        &h,
        json_request(
            "POST",
            "/api/repositories/acme/secret/triggers",
            &root,
            &json!({"name": "ci"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = token_for(&h.state.store, "olga", None, Role::Read, None).await;
    let (status, body) = send_checked(
        &h,
        json_request(
            "PUT",
            "/api/repositories/acme/secret/grants/olga",
            &root,
            &json!({"role": "admin"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send_checked(
        &h,
        json_request("POST", "/api/tokens", &root, &json!({"name": "audit"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token_id = body["id"].as_str().expect("token id").to_owned();

    let (status, body) = send_checked(
        &h,
        json_request(
            "POST",
            "/api/repositories/acme/secret/webhooks",
            &root,
            &json!({"url": "https://8.8.8.8/deploy", "events": ["image_pushed"], "secret": HOOK_SECRET}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hook_id = body["id"].as_str().expect("hook id").to_owned();

    // Every GET of the route table, as the global owner and as a repository admin.
    let mut checked = 0;
    for doc in route_docs().iter().filter(|doc| doc.method == "get") {
        let path = doc
            .path
            .replace("/repositories/{owner}/{name}", "/repositories/acme/secret")
            .replace("/builds/{id}", &format!("/builds/{build}"))
            .replace("/deliveries/{id}", &format!("/deliveries/{delivery}"))
            .replace("/tokens/{id}", &format!("/tokens/{token_id}"))
            .replace("/webhooks/{id}", &format!("/webhooks/{hook_id}"));
        assert!(
            !path.contains('{'),
            "GET {} has a path parameter this test cannot fill; teach it",
            doc.path
        );
        for caller in [&root, &token] {
            let (status, body) = send_checked(&h, get(&path, caller)).await;
            assert!(
                status.is_success() || status == StatusCode::FORBIDDEN,
                "GET {path}: {status} {body}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} GET routes");
    for path in [
        "/api/openapi.json",
        "/api/builds?repository=acme/secret",
        "/api/repositories/acme/secret/deliveries?limit=1",
    ] {
        let (status, _) = send_checked(&h, get(path, &root)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // A refused webhook's error does not quote the secret either.
    let (status, _) = push(&h, "a-wrong-secret-of-some-length", "s-bad", COMMIT).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The answers to edits.
    let (status, body) = send_checked(
        &h,
        json_request(
            "PATCH",
            "/api/repositories/acme/secret",
            &root,
            &json!({"webhook_secret": NEW_WEBHOOK_SECRET, "max_concurrent_builds": 3}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["secrets"]["webhook_secret"], "set");
    assert_eq!(body["max_concurrent_builds"], 3);
    // An edit that sends back what it read (with its secret states) keeps the secrets.
    let (status, read_back) = send_checked(&h, get("/api/repositories/acme/secret", &root)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(read_back["grants"].is_array(), "{read_back}");
    let (status, body) = send_checked(
        &h,
        json_request("PATCH", "/api/repositories/acme/secret", &root, &read_back),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["secrets"]["webhook_secret"], "set");
    assert_eq!(body["secrets"]["git_password"], "set");
    let (status, answer) = push(&h, NEW_WEBHOOK_SECRET, "s-2", MAIN_HEAD).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the new secret verifies: {answer}"
    );
    let (status, _) = push(&h, WEBHOOK_SECRET, "s-3", STAGING_HEAD).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old one no longer does"
    );
}

#[tokio::test]
async fn null_clears_a_secret_and_bad_edits_are_refused() {
    let h = harness().await;
    let root = h.admin_token.clone();
    let (status, body) = send_checked(
        &h,
        json_request("POST", "/api/repositories", &root, &new_repository()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let patch = |body: Value| json_request("PATCH", "/api/repositories/acme/secret", &root, &body);
    let (status, body) = send_checked(&h, patch(json!({"webhook_secret": null}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["secrets"]["webhook_secret"], "not set");
    assert_eq!(body["secrets"]["git_password"], "set", "the other is kept");
    let credentials = h
        .state
        .store
        .stored_credentials("acme/secret")
        .await
        .expect("query")
        .expect("API-managed");
    assert!(credentials.webhook_secret.is_none());
    assert_eq!(
        credentials.git_password.as_ref().map(|s| s.expose()),
        Some(GIT_PASSWORD)
    );
    // With no secret, no webhook is accepted.
    let (status, body) = push(&h, WEBHOOK_SECRET, "c-1", COMMIT).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error_shape(&body, "a hook with no secret to check");

    let (status, body) = send_checked(&h, patch(json!({"git_password": null}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["secrets"]["git_password"], "not set");

    for (change, code) in [
        (json!({"name": "acme/renamed"}), StatusCode::BAD_REQUEST),
        (json!({"webhook_secret": "short"}), StatusCode::BAD_REQUEST),
        (json!({"git_password": ""}), StatusCode::BAD_REQUEST),
        (json!({"imagee": "typo"}), StatusCode::BAD_REQUEST),
        (
            json!({"git_url": "https://bot:hunter2@git.example/acme/secret.git"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"git_url": "file:///srv/git/secret.git"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = send_checked(&h, patch(change.clone())).await;
        assert_eq!(status, code, "{change}: {body}");
        assert_error_shape(&body, &change.to_string());
    }

    // A repository from the configuration file is changed there, not here.
    let (status, body) = send_checked(
        &h,
        json_request(
            "PATCH",
            "/api/repositories/acme/web",
            &root,
            &json!({"max_concurrent_builds": 1}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "managed_by_config");
    let (status, body) = send_checked(
        &h,
        Request::delete("/api/repositories/acme/web")
            .header("authorization", format!("Bearer {root}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error_shape(&body, "deleting a configured repository");
    let (_, web) = send_checked(&h, get("/api/repositories/acme/web", &root)).await;
    assert_eq!(web["managed_by"], "config");
    assert_eq!(
        web["secrets"]["webhook_secret"],
        "in the configuration file"
    );

    // Creation refuses duplicates, missing secrets and credentials in the URL.
    let mut without_secret = new_repository();
    without_secret["name"] = json!("acme/unsigned");
    if let Value::Object(fields) = &mut without_secret {
        fields.remove("webhook_secret");
    }
    let mut with_password_in_url = new_repository();
    with_password_in_url["name"] = json!("acme/leaky");
    with_password_in_url["git_url"] = json!("https://bot:hunter2@git.example/acme/leaky.git");
    for (body, code) in [
        (new_repository(), StatusCode::CONFLICT),
        (without_secret, StatusCode::BAD_REQUEST),
        (with_password_in_url, StatusCode::BAD_REQUEST),
    ] {
        let (status, answer) =
            send_checked(&h, json_request("POST", "/api/repositories", &root, &body)).await;
        assert_eq!(status, code, "{body}: {answer}");
        assert_error_shape(&answer, "a refused creation");
    }
}

#[tokio::test]
async fn only_owners_delete_and_deleting_removes_the_history() {
    let h = harness().await;
    let root = h.admin_token.clone();
    let store = h.state.store.clone();
    let (status, body) = send_checked(
        &h,
        json_request("POST", "/api/repositories", &root, &new_repository()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let repository = store
        .repository_by_name("acme/secret")
        .await
        .expect("query")
        .expect("created");
    let admin = token_for(&store, "quinn", None, Role::Owner, None).await;
    let owner = token_for(&store, "rita", None, Role::Owner, None).await;
    for (name, role) in [("quinn", Role::Admin), ("rita", Role::Owner)] {
        let user = store
            .user_by_name(name)
            .await
            .expect("query")
            .expect("user");
        store
            .set_grant(repository.id, user.id, Some(role))
            .await
            .expect("grant");
    }
    let (status, answer) = push(&h, WEBHOOK_SECRET, "x-1", COMMIT).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let finished = build_id(&answer);
    run_to_success(&h, finished).await;
    let delivery = store
        .build(finished)
        .await
        .expect("query")
        .and_then(|b| b.delivery_id)
        .expect("delivery");
    let trigger = format!("slw_test_{}", Uuid::new_v4().simple());
    store
        .create_trigger(repository.id, "ci", &slipway_server::hash_token(&trigger))
        .await
        .expect("trigger")
        .expect("new");

    let delete = |token: &str| {
        Request::delete("/api/repositories/acme/secret")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    let (status, body) = send_checked(&h, delete(&admin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error_shape(&body, "an admin deleting");

    // A running build holds the repository until it ends.
    let (status, answer) = push(&h, WEBHOOK_SECRET, "x-2", MAIN_HEAD).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let running = build_id(&answer);
    let claimed = store
        .claim_build("test-worker", Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(claimed.id, running);
    let (status, body) = send_checked(&h, delete(&owner)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "running");
    let result = BuildResult {
        status: BuildStatus::Failed,
        error: Some("stopped".to_owned()),
        digest: None,
    };
    assert!(
        store
            .finish_build(running, "test-worker", &result)
            .await
            .expect("finish")
    );

    let (status, body) = send_checked(&h, delete(&owner)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        store
            .repository_by_name("acme/secret")
            .await
            .expect("query")
            .is_none()
    );
    for id in [finished, running] {
        assert!(
            store.build(id).await.expect("query").is_none(),
            "build {id}"
        );
        let (status, body) = send_checked(&h, get(&format!("/api/builds/{id}"), &root)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(store.log_size(id).await.expect("size"), 0);
    }
    assert!(store.delivery(delivery).await.expect("query").is_none());
    let (status, _) = send_checked(&h, get("/api/builds?repository=acme/secret", &root)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = fire(&h, &trigger, "application/json", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the trigger is gone: {body}");
    let (status, body) = send_checked(&h, get("/api/repositories/acme/secret", &root)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, builds) = send_checked(&h, get("/api/builds", &root)).await;
    assert_eq!(builds["builds"], json!([]), "no build of it is listed");
}

/// A stored token is only sent where it was given for: moving the commit-status API (or the
/// clone URL it is derived from) to another host needs the token again, as the git password
/// does. And a disabled repository starts no builds, through the API or a retry.
#[tokio::test]
async fn stored_tokens_stay_with_their_host_and_disabled_repositories_build_nothing() {
    let h = harness().await;
    let root = h.admin_token.clone();
    let (status, body) = send_checked(
        &h,
        json_request("POST", "/api/repositories", &root, &new_repository()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let patch = |body: Value| json_request("PATCH", "/api/repositories/acme/secret", &root, &body);

    let (status, body) = send_checked(
        &h,
        patch(json!({"status_api_url": "https://collector.example"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("status_token")),
        "{body}"
    );
    let (status, body) = send_checked(
        &h,
        patch(json!({"status_api_url": "https://collector.example", "status_token": STATUS_TOKEN})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "giving the token again is fine: {body}"
    );
    assert_eq!(body["status_api_url"], "https://collector.example");

    let (status, body) = send_checked(&h, patch(json!({"enabled": false}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send_checked(
        &h,
        json_request(
            "POST",
            "/api/repositories/acme/secret/builds",
            &root,
            &json!({"source_type": "Branch", "source_name": "main"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "disabled", "{body}");
}

/// Disabling a repository holds its queued builds: no worker claims them, the build says why it
/// waits, and enabling the repository again lets them run.
#[tokio::test]
async fn a_disabled_repositorys_queued_builds_wait_until_it_is_enabled() {
    let h = harness().await;
    let root = h.admin_token.clone();
    let (status, body) = send_checked(
        &h,
        json_request("POST", "/api/repositories", &root, &new_repository()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, answer) = push(&h, WEBHOOK_SECRET, "d-held", &"4".repeat(40)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = build_id(&answer);
    let patch = |body: Value| json_request("PATCH", "/api/repositories/acme/secret", &root, &body);

    let (status, body) = send_checked(&h, patch(json!({"enabled": false}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lease = Duration::from_secs(600);
    assert!(
        h.state
            .store
            .claim_build("test-worker", lease)
            .await
            .expect("claim")
            .is_none(),
        "a disabled repository's build is not claimed"
    );
    let (status, build) = send_checked(&h, get(&format!("/api/builds/{id}"), &root)).await;
    assert_eq!(status, StatusCode::OK, "{build}");
    assert_eq!(build["status"], "queued", "{build}");
    assert!(
        build["waiting"]
            .as_str()
            .is_some_and(|why| why.contains("disabled")),
        "{build}"
    );

    let (status, body) = send_checked(&h, patch(json!({"enabled": true}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, build) = send_checked(&h, get(&format!("/api/builds/{id}"), &root)).await;
    assert_eq!(build["waiting"], "waiting for a free worker", "{build}");
    run_to_success(&h, id).await;
}
