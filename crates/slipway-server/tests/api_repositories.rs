//! Repositories through the API: secrets are write-only (no answer of any endpoint contains
//! one), edits keep, clear or replace them, configuration-managed repositories are read-only,
//! and deleting takes the owner role and removes the history.

mod common;

use std::sync::{Arc, Mutex};
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

/// The stored status token's value in the store, for checking that a refused edit kept it.
async fn stored_status_token(h: &Harness) -> Option<String> {
    let repository = h
        .state
        .store
        .repository_by_name("acme/secret")
        .await
        .expect("query")
        .expect("the repository");
    h.state
        .store
        .status_settings(repository.id)
        .await
        .expect("query")
        .and_then(|settings| settings.stored_token)
        .map(|token| token.expose().to_owned())
}

/// A stored token stays with the origin (scheme, host and port) it was given for, as the
/// sender's URL parser reads it: every trick that makes another host look like the old one to
/// a string split (a backslash, user info, a fragment), a downgrade to http and a port change
/// are refused unless the token is sent again, while spellings of the same origin (case, a final
/// dot, the default port) keep it. The git password is held to the same rule.
#[tokio::test]
async fn stored_secrets_stay_with_their_parsed_origin() {
    let h = harness().await;
    let root = h.admin_token.clone();
    let (status, body) = send_checked(
        &h,
        json_request("POST", "/api/repositories", &root, &new_repository()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let patch = |body: Value| json_request("PATCH", "/api/repositories/acme/secret", &root, &body);

    // The default API is https://api.github.com.
    for moved in [
        "https://evil.example\\@api.github.com",
        "https://evil.example\\@api.github.com/",
        "https://api.github.com@evil.example",
        "https://api.github.com:443@evil.example",
        "https://evil.example#@api.github.com",
        "https://evil.example?@api.github.com",
        "http://api.github.com",
        "https://api.github.com:8443",
        "https://api.github.com.evil.example",
    ] {
        let (status, body) = send_checked(&h, patch(json!({"status_api_url": moved}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{moved}: {body}");
        assert_error_shape(&body, moved);
        assert_eq!(
            stored_status_token(&h).await.as_deref(),
            Some(STATUS_TOKEN),
            "{moved}: the token stays"
        );
        let (_, shown) = send_checked(&h, get("/api/repositories/acme/secret", &root)).await;
        assert_eq!(
            shown["status_api_url"],
            Value::Null,
            "{moved}: nothing was saved"
        );
    }
    // Even with a new token, a URL that parsers read differently is refused outright.
    let (status, body) = send_checked(
        &h,
        patch(json!({"status_api_url": "https://evil.example\\@api.github.com", "status_token": "a-new-token"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("backslash")),
        "{body}"
    );
    // The same origin, spelled differently, keeps the token.
    for same in [
        "https://API.GitHub.com",
        "https://api.github.com.",
        "https://api.github.com:443/",
    ] {
        let (status, body) = send_checked(&h, patch(json!({"status_api_url": same}))).await;
        assert_eq!(status, StatusCode::OK, "{same}: {body}");
        assert_eq!(body["secrets"]["status_token"], "set", "{same}");
        assert_eq!(stored_status_token(&h).await.as_deref(), Some(STATUS_TOKEN));
    }

    // The git password, for https://git.example.
    for moved in [
        "https://evil.example\\@git.example/acme/secret.git",
        "https://git.example@evil.example/acme/secret.git",
        "http://git.example/acme/secret.git",
        "https://git.example:8443/acme/secret.git",
        "ssh://git@git.example/acme/secret.git",
    ] {
        let (status, body) = send_checked(&h, patch(json!({"git_url": moved}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{moved}: {body}");
        assert_error_shape(&body, moved);
    }
    let credentials = h
        .state
        .store
        .stored_credentials("acme/secret")
        .await
        .expect("query")
        .expect("API-managed");
    assert_eq!(
        credentials.git_password.as_ref().map(|s| s.expose()),
        Some(GIT_PASSWORD)
    );
    let (status, body) = send_checked(
        &h,
        patch(json!({"git_url": "https://GIT.example./acme/renamed.git"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the same origin keeps it: {body}");
    assert_eq!(body["secrets"]["git_password"], "set");
}

/// Commit-status settings are checked when saved (400 with the reason), not only when a status
/// fails to go out: a token with report_status, an API URL the sender accepts (and may reach),
/// and a repository path the forge's API takes.
#[tokio::test]
async fn status_settings_are_refused_when_saved_wrong() {
    let h = harness().await;
    let root = h.admin_token.clone();
    let with = |changes: Value| {
        let mut body = new_repository();
        if let (Value::Object(base), Value::Object(changes)) = (&mut body, changes) {
            base.extend(changes);
        }
        body
    };
    for (body, expected) in [
        (with(json!({"status_token": null})), "status_token"),
        (
            with(json!({"status_repository": "acme/secret/extra"})),
            "two parts",
        ),
        (
            with(json!({"status_api_url": "ftp://api.example"})),
            "http or https",
        ),
        (
            with(json!({"status_api_url": "https://bot:pw@api.example"})),
            "credentials",
        ),
        (
            with(json!({"status_api_url": "https://api.example?x=1"})),
            "query",
        ),
        (
            with(json!({"status_api_url": "http://10.1.2.3/api/v3"})),
            "private",
        ),
        (
            with(json!({"status_api_url": "http://169.254.169.254"})),
            "metadata",
        ),
        (
            with(json!({"provider": "bitbucket-server", "status_repository": "PROJ"})),
            "PROJ/slug",
        ),
    ] {
        let (status, answer) =
            send_checked(&h, json_request("POST", "/api/repositories", &root, &body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{expected}: {answer}");
    }
    assert!(
        h.state
            .store
            .repository_by_name("acme/secret")
            .await
            .expect("query")
            .is_none(),
        "nothing refused was stored"
    );

    let (status, body) = send_checked(
        &h,
        json_request("POST", "/api/repositories", &root, &new_repository()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let patch = |body: Value| json_request("PATCH", "/api/repositories/acme/secret", &root, &body);
    for (change, expected) in [
        (json!({"status_token": null}), "status_token"),
        (json!({"status_repository": "/secret"}), "two parts"),
        (
            json!({"provider": "gitlab", "status_api_url": "https://api.github.com", "status_repository": "g//p"}),
            "project path",
        ),
    ] {
        let (status, answer) = send_checked(&h, patch(change.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{change}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{change}: {answer}");
    }
    // Turning statuses off is fine without a token; turning them on again needs one.
    let (status, body) = send_checked(
        &h,
        patch(json!({"report_status": false, "status_token": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send_checked(&h, patch(json!({"report_status": true}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// One request a fake forge received: the path and the credential it carried.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: String,
}

/// A forge API on loopback that records every request and answers 201.
async fn recording_forge() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().fallback(move |request: Request<Body>| {
        let log = log.clone();
        async move {
            let authorization = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            log.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Received {
                    path: request.uri().path().to_owned(),
                    authorization,
                });
            (StatusCode::CREATED, "{}")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a fake forge");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, received)
}

fn requests(log: &Arc<Mutex<Vec<Received>>>) -> Vec<Received> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Runs a notifier (loopback allowed, as for these fakes) until nothing is left to dispatch or
/// send: every status is then delivered or superseded.
async fn notify_everything(h: &Harness) {
    let notifier = slipway_notify::deliver::Notifier::new(
        h.state.store.clone(),
        "test-notifier".to_owned(),
        slipway_notify::deliver::NotifierSettings {
            policy: slipway_notify::ssrf::TargetPolicy::allow_private(),
            ..slipway_notify::deliver::NotifierSettings::new("http://slipway.test")
        },
        Arc::default(),
    );
    for _ in 0..20 {
        let dispatched = notifier.dispatch_once().await.expect("dispatch");
        let sent = notifier.send_once().await.expect("send");
        if dispatched == 0 && sent == 0 {
            return;
        }
    }
    panic!("the notifier still had work after 20 rounds");
}

/// End to end through the real notifier: after edits that try to move the status API to
/// another host, the stored token still goes only to the host it was given for; once the API
/// really moves (with a token given for the new host), the new host only ever sees that token.
#[tokio::test]
async fn the_notifier_never_sends_a_stored_token_to_another_host() {
    let mut h = harness().await;
    // The fakes listen on loopback, which the operator must allow.
    h.state.target_policy = slipway_notify::ssrf::TargetPolicy::allow_private();
    let root = h.admin_token.clone();
    let (given_port, given) = recording_forge().await;
    let (other_port, other) = recording_forge().await;
    let mut repository = new_repository();
    repository["status_api_url"] = json!(format!("http://127.0.0.1:{given_port}"));
    let (status, body) = send_checked(
        &h,
        json_request("POST", "/api/repositories", &root, &repository),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let patch = |body: Value| json_request("PATCH", "/api/repositories/acme/secret", &root, &body);
    for moved in [
        format!("http://localhost:{other_port}"),
        format!("http://127.0.0.1:{other_port}\\@127.0.0.1:{given_port}"),
        format!("http://127.0.0.1:{given_port}@127.0.0.1:{other_port}"),
    ] {
        let (status, body) = send_checked(&h, patch(json!({"status_api_url": moved}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{moved}: {body}");
    }

    let (status, answer) = push(&h, WEBHOOK_SECRET, "n-1", COMMIT).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    run_to_success(&h, build_id(&answer)).await;
    notify_everything(&h).await;
    let to_given = requests(&given);
    assert!(!to_given.is_empty(), "the status went to the given host");
    assert!(
        to_given
            .iter()
            .all(|r| r.authorization == format!("Bearer {STATUS_TOKEN}")
                && r.path == format!("/repos/acme/secret/statuses/{COMMIT}")),
        "{to_given:?}"
    );
    assert!(requests(&other).is_empty(), "{:?}", requests(&other));

    // Moving for real needs a token for the new host, and only that one goes there.
    let (status, body) = send_checked(
        &h,
        patch(json!({"status_api_url": format!("http://localhost:{other_port}"), "status_token": "token-for-the-new-host"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, answer) = push(&h, WEBHOOK_SECRET, "n-2", MAIN_HEAD).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    run_to_success(&h, build_id(&answer)).await;
    notify_everything(&h).await;
    let to_other = requests(&other);
    assert!(
        !to_other.is_empty(),
        "the new host gets the new build's statuses"
    );
    assert!(
        to_other
            .iter()
            .all(|r| r.authorization == "Bearer token-for-the-new-host"),
        "{to_other:?}"
    );
    assert_eq!(
        requests(&given).len(),
        to_given.len(),
        "nothing more went to the old host"
    );
}

/// `POST /api/notifications/{id}/redeliver` of a commit status: refused (409) while it is still
/// pending, which would send it twice, and for a status a newer one of the same commit and
/// context replaced, which would put the commit back on an older state (the answer names the
/// newer one); the newest is sent again.
#[tokio::test]
async fn status_redeliveries_never_send_twice_or_go_back_in_time() {
    let mut h = harness().await;
    h.state.target_policy = slipway_notify::ssrf::TargetPolicy::allow_private();
    let root = h.admin_token.clone();
    let (port, forge) = recording_forge().await;
    let mut repository = new_repository();
    repository["status_api_url"] = json!(format!("http://127.0.0.1:{port}"));
    let (status, body) = send_checked(
        &h,
        json_request("POST", "/api/repositories", &root, &repository),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, answer) = push(&h, WEBHOOK_SECRET, "r-1", COMMIT).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let build = build_id(&answer);
    let redeliver = |id: &str| {
        json_request(
            "POST",
            &format!("/api/notifications/{id}/redeliver"),
            &root,
            &json!({}),
        )
    };
    let statuses = |h: &Harness| {
        let store = h.state.store.clone();
        async move {
            store
                .notifications_for_build(build)
                .await
                .expect("notifications")
                .into_iter()
                .filter(|n| n.redelivery_of.is_none())
                .map(|n| (n.event.clone(), n))
                .collect::<std::collections::HashMap<_, _>>()
        }
    };

    // Queued, and not sent yet: a redelivery now would be a second copy of it.
    let notifier = slipway_notify::deliver::Notifier::new(
        h.state.store.clone(),
        "dispatch-only".to_owned(),
        slipway_notify::deliver::NotifierSettings::new("http://slipway.test"),
        Arc::default(),
    );
    notifier.dispatch_once().await.expect("dispatch");
    let queued = statuses(&h).await["queued"].id.to_string();
    let (status, body) = send_checked(&h, redeliver(&queued)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "still_pending", "{body}");

    run_to_success(&h, build).await;
    notify_everything(&h).await;
    let finished = statuses(&h).await;
    assert_eq!(finished["queued"].state, "superseded");
    assert_eq!(finished["succeeded"].state, "delivered");
    let succeeded = finished["succeeded"].id.to_string();
    let (status, body) = send_checked(&h, redeliver(&queued)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "superseded", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&succeeded),
        "it names the one to redeliver: {body}"
    );

    let sent_before = requests(&forge).len();
    let (status, body) = send_checked(&h, redeliver(&succeeded)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = send_checked(&h, redeliver(&succeeded)).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the copy is still pending: {body}"
    );
    notify_everything(&h).await;
    assert_eq!(
        requests(&forge).len(),
        sent_before + 1,
        "sent once more, once"
    );
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
