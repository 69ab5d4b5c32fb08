//! The router-test harness: the real router over a real SQLite store in a temporary
//! directory, and helpers to sign and send requests. Each test file uses part of it.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use slipway_core::{BuildRule, Secret};
use slipway_server::{AppState, app};
use slipway_store::{RepositorySpec, Store};
use tower::ServiceExt;

/// Branch and tag heads as a remote would list them, for the trigger tests.
#[derive(Debug)]
pub struct FixedRefs;

pub const MAIN_HEAD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const STAGING_HEAD: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
pub const TAG_HEAD: &str = "cccccccccccccccccccccccccccccccccccccccc";

impl slipway_server::RefResolver for FixedRefs {
    fn remote_refs<'a>(&'a self, _repository: &'a str) -> slipway_server::RemoteRefs<'a> {
        Box::pin(async {
            Ok(vec![
                ("refs/heads/main".to_owned(), MAIN_HEAD.to_owned()),
                ("refs/heads/staging".to_owned(), STAGING_HEAD.to_owned()),
                ("refs/tags/v1.1".to_owned(), TAG_HEAD.to_owned()),
            ])
        })
    }
}

pub const SECRET: &str = "It's a Secret to Everybody";
pub const COMMIT: &str = "9f2c3c0a1b1e4a7a8c6d5e4f3a2b1c0d9e8f7a6b";

pub struct Harness {
    pub state: AppState,
    /// An API token of the global owner `root`, which [`send`] adds to API requests that carry
    /// no credentials of their own.
    pub admin_token: String,
    pub _dir: tempfile::TempDir,
}

/// Creates a user with a global role (or none) and an API token for them with `scope`.
pub async fn user_with_token(
    store: &Store,
    name: &str,
    global_role: Option<slipway_core::Role>,
    scope: slipway_core::Role,
) -> String {
    let user = match store.user_by_name(name).await.expect("query") {
        Some(user) => user,
        None => store
            .create_user(name, "$argon2id$not-a-usable-hash", global_role)
            .await
            .expect("create user")
            .expect("new user"),
    };
    let token = format!("slwa_test_{}", uuid::Uuid::new_v4().simple());
    store
        .create_token(&slipway_store::NewToken {
            user_id: user.id,
            name: "test",
            token_hash: &slipway_server::hash_token(&token),
            scope,
            repository_id: None,
            expires_at: None,
        })
        .await
        .expect("token");
    token
}

/// One GitHub repository, `acme/web`, with the default rule and a `/^v([0-9.]+)$/` tag rule.
pub async fn harness() -> Harness {
    let tag_rule: BuildRule =
        serde_json::from_value(serde_json::json!({"source_type": "tag", "source": "/^v([0-9.]+)$/", "tags": "{\\1},latest"}))
            .expect("rule");
    harness_with(vec![repository(
        "acme/web",
        "github",
        vec![BuildRule::default_rule(), tag_rule],
    )])
    .await
}

/// A repository spec with the harness's defaults; every repository's secret is [`SECRET`].
pub fn repository(name: &str, provider: &str, rules: Vec<BuildRule>) -> RepositorySpec {
    RepositorySpec {
        name: name.parse().expect("name"),
        provider: provider.parse().expect("provider"),
        git_url: format!("http://127.0.0.1:9/{name}.git"),
        image: format!("127.0.0.1:5000/{name}").parse().expect("image"),
        rules,
        allow_unsigned: false,
        allow_legacy_sha1: false,
        supersede_running: false,
        build_timeout_secs: 3600,
        limits: Default::default(),
        anonymous_read: false,
        status: Default::default(),
        forge_repository: None,
    }
}

pub async fn harness_with(specs: Vec<RepositorySpec>) -> Harness {
    let mut harness = harness_without_accounts(specs).await;
    harness.admin_token = user_with_token(
        &harness.state.store,
        "root",
        Some(slipway_core::Role::Owner),
        slipway_core::Role::Owner,
    )
    .await;
    harness
}

/// A harness whose database has no user at all, as on a server's first run; its
/// `admin_token` is empty, so [`send`] adds no working credentials.
pub async fn harness_without_accounts(specs: Vec<RepositorySpec>) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    store.sync_repositories(&specs).await.expect("sync");
    let secrets: HashMap<String, Secret> = specs
        .iter()
        .map(|s| (s.name.to_string(), Secret::new(SECRET)))
        .collect();
    Harness {
        admin_token: String::new(),
        state: AppState {
            webhook_secrets: Arc::new(secrets),
            ..AppState::new(store, "http://slipway.test", Arc::new(FixedRefs))
        },
        _dir: dir,
    }
}

pub fn push_body(git_ref: &str, after: &str) -> String {
    serde_json::json!({
        "ref": git_ref, "before": "0".repeat(40), "after": after, "created": true,
        "deleted": after.bytes().all(|b| b == b'0'), "forced": false,
        "head_commit": {"id": after, "message": "msg"}, "pusher": {"name": "dev"}
    })
    .to_string()
}

pub fn signed(event: &str, delivery: &str, body: &str) -> Request<Body> {
    let signature = format!(
        "sha256={}",
        slipway_forge::hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
    );
    Request::post("/hooks/acme/web")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(Body::from(body.to_owned()))
        .expect("request")
}

/// Sends a request; API requests without credentials get the harness's owner token.
pub async fn send(harness: &Harness, mut request: Request<Body>) -> (StatusCode, Value) {
    let path = request.uri().path();
    if path.starts_with("/api/")
        && !path.starts_with("/api/trigger/")
        && !request.headers().contains_key("authorization")
    {
        let value = format!("Bearer {}", harness.admin_token);
        request
            .headers_mut()
            .insert("authorization", value.parse().expect("header"));
    }
    send_as_is(harness, request).await
}

/// Sends a request exactly as given (no credentials added).
pub async fn send_as_is(harness: &Harness, request: Request<Body>) -> (StatusCode, Value) {
    let response = app(harness.state.clone())
        .oneshot(request)
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub async fn build_count(harness: &Harness) -> usize {
    builds_of(harness, "acme/web").await
}

pub async fn builds_of(harness: &Harness, repository: &str) -> usize {
    let repo = harness
        .state
        .store
        .repository_by_name(repository)
        .await
        .expect("query")
        .expect("repo");
    harness
        .state
        .store
        .builds_for_repository(repo.id)
        .await
        .expect("list")
        .len()
}

pub async fn get_json(harness: &Harness, path: &str) -> (StatusCode, Value) {
    send(
        harness,
        Request::get(path).body(Body::empty()).expect("request"),
    )
    .await
}

pub async fn trigger_token(h: &Harness) -> String {
    let repo = h
        .state
        .store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("repo");
    let token = format!("slw_test_{}", uuid::Uuid::new_v4().simple());
    h.state
        .store
        .create_trigger(repo.id, "ci", &slipway_server::hash_token(&token))
        .await
        .expect("create")
        .expect("new");
    token
}

pub async fn fire(h: &Harness, token: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::post(format!("/api/trigger/{token}"))
        .header("content-type", content_type)
        .body(Body::from(body.to_owned()))
        .expect("request");
    send(h, request).await
}

/// Creates a user (unless one of that name exists) and an API token for them with `scope`,
/// optionally limited to one repository; returns the token.
pub async fn token_for(
    store: &Store,
    name: &str,
    global_role: Option<slipway_core::Role>,
    scope: slipway_core::Role,
    repository_id: Option<uuid::Uuid>,
) -> String {
    let user = match store.user_by_name(name).await.expect("query") {
        Some(user) => user,
        None => store
            .create_user(name, "$argon2id$not-a-usable-hash", global_role)
            .await
            .expect("create user")
            .expect("new user"),
    };
    let token = format!("slwa_test_{}", uuid::Uuid::new_v4().simple());
    store
        .create_token(&slipway_store::NewToken {
            user_id: user.id,
            name: "test",
            token_hash: &slipway_server::hash_token(&token),
            scope,
            repository_id,
            expires_at: None,
        })
        .await
        .expect("token");
    token
}

/// Sends a request exactly as given and returns the whole answer: status, headers and the
/// body's bytes (for text, logs and event streams, which are not JSON).
pub async fn send_raw(
    harness: &Harness,
    request: Request<Body>,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let response = app(harness.state.clone())
        .oneshot(request)
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, bytes.to_vec())
}

/// Asserts that a refusal carries the API's one error shape, `{"error": {"code", "message"}}`
/// and nothing else.
pub fn assert_error_shape(body: &Value, context: &str) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("{context}: the error body is not a JSON object: {body}"));
    assert_eq!(
        object.len(),
        1,
        "{context}: only \"error\" at the top: {body}"
    );
    let error = &body["error"];
    assert!(
        error["code"].as_str().is_some_and(|code| !code.is_empty()),
        "{context}: error.code: {body}"
    );
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{context}: error.message: {body}"
    );
}

/// A GitHub push delivery to any repository's hook URL, signed with `secret`.
pub fn signed_to(repository: &str, secret: &str, delivery: &str, body: &str) -> Request<Body> {
    let signature = format!(
        "sha256={}",
        slipway_forge::hmac_sha256_hex(secret.as_bytes(), body.as_bytes())
    );
    Request::post(format!("/hooks/{repository}"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(Body::from(body.to_owned()))
        .expect("request")
}

/// The secret of the outgoing webhook the notification tests add; no page may show it.
pub const HOOK_SECRET: &str = "hook-secret-never-on-a-page-0123";

/// A queued build with an outgoing webhook on `acme/web` and, dispatched from the build's
/// `queued` transition as the notifier would, a webhook delivery and a commit status.
/// Returns the build id, the hook id and the webhook delivery's notification id.
pub async fn build_with_notifications(h: &Harness) -> (String, uuid::Uuid, uuid::Uuid) {
    let store = &h.state.store;
    let (_, answer) = send(
        h,
        signed("push", "d-notified", &push_body("refs/heads/main", COMMIT)),
    )
    .await;
    let build = answer["builds"][0]["id"]
        .as_str()
        .expect("a build")
        .to_owned();
    let build_id = uuid::Uuid::parse_str(&build).expect("a build id");
    let repository = store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("acme/web");
    let hook = store
        .create_hook(
            repository.id,
            "https://hooks.example.com/deploy/capability-path?token=query-secret",
            &["build_queued".to_owned(), "image_pushed".to_owned()],
            HOOK_SECRET,
        )
        .await
        .expect("hook");
    let transitions = store
        .claim_transitions("dashboard-test", 60_000, 100)
        .await
        .expect("transitions");
    let seq = transitions
        .iter()
        .find(|t| t.build_id == build_id)
        .expect("the build's transition")
        .seq;
    let notification = |kind, hook_id, event: &str| slipway_store::NewNotification {
        build_id,
        repository_id: repository.id,
        kind,
        hook_id,
        event: event.to_owned(),
        payload_json: "{}".to_owned(),
        transition_seq: seq,
        status_key: None,
    };
    store
        .dispatch_transitions(
            "dashboard-test",
            &[seq],
            &[
                notification(
                    slipway_store::NotificationKind::Webhook,
                    Some(hook.id),
                    "build_queued",
                ),
                notification(slipway_store::NotificationKind::Status, None, "queued"),
            ],
        )
        .await
        .expect("dispatch");
    let delivery = store
        .hook_deliveries(hook.id, 10)
        .await
        .expect("deliveries")
        .first()
        .expect("a delivery")
        .id;
    (build, hook.id, delivery)
}

/// Records one failed attempt, with `error` as its text, for every notification that is due,
/// as the sender would after a refused connection.
pub async fn fail_due_notifications(h: &Harness, error: &str) {
    let store = &h.state.store;
    let due = store
        .claim_notifications("router-test", 60_000, 100)
        .await
        .expect("claim");
    assert!(!due.is_empty(), "no notification was due");
    for notification in due {
        let attempt = slipway_store::NotificationAttempt {
            attempt: notification.attempts + 1,
            at: slipway_store::now_millis(),
            status_code: None,
            duration_ms: 3,
            error: Some(error.to_owned()),
            response_excerpt: None,
        };
        let recorded = store
            .record_notification_attempt(
                notification.id,
                "router-test",
                &attempt,
                slipway_store::AfterAttempt::Failed,
            )
            .await
            .expect("record");
        assert!(recorded, "the claim was ours");
    }
}
