//! Who may call what: every endpoint of the API's route table and every page and form of the
//! dashboard's, called by every kind of caller.
//!
//! The test walks `route_docs()`, so an endpoint added to the table without a rule here (an
//! access level, a path parameter or a request body the test does not know) fails it. For each
//! route a fresh world is built (a repository with a finished build, a queued build, a
//! delivery, a trigger and users holding each role), the callers who must be refused are
//! checked first (401 for the anonymous, 404 for signed-in callers who may not read the
//! repository, 403 for those who may read it but lack the role), each answer in the one error
//! shape, and then one caller who is allowed, whose answer must carry the status the table
//! documents. Refusals change nothing, so the
//! allowed call always finds the world as it was built.
//!
//! The dashboard's routes (`page_routes()`, from which its router is built) are walked the
//! same way with session cookies: the anonymous are sent to the sign-in page (303 to
//! `/login`), signed-in visitors without the role get 403 (badges: 404 for everyone refused),
//! and those with it get their page (200) or their form's redirect (303), every form posted
//! with the visitor's own CSRF token.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use slipway_core::{BuildRule, BuildStatus, Role, Secret};
use slipway_server::{PageAccess, PageRoute, RouteDoc, hash_token, page_routes, route_docs};
use slipway_store::{BuildResult, NewNotification, NotificationKind, SecretChange, SecretChanges};
use uuid::Uuid;

/// The users of every world: each holds the named role on `acme/web` through a grant, with a
/// token whose scope does not cap it.
const GRANTED: [(&str, Role); 4] = [
    ("reader", Role::Read),
    ("writer", Role::Write),
    ("admin", Role::Admin),
    ("owner", Role::Owner),
];

/// The world's reader's password, which changing it needs (their own user's route).
const READER_PASSWORD: &str = "the reader's own password";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// One of the world's users, through their API token.
    User(&'static str),
}

/// What a route's `access` says, as this test understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    Signature,
    TokenInUrl,
    SignedIn,
    GlobalAdmin,
    Role(Role),
}

fn access(doc: &RouteDoc) -> Access {
    match doc.access {
        "public" => Access::Public,
        "signature" => Access::Signature,
        "token in the URL" => Access::TokenInUrl,
        "signed in" => Access::SignedIn,
        "global admin" => Access::GlobalAdmin,
        "read" => Access::Role(Role::Read),
        "write" => Access::Role(Role::Write),
        "admin" => Access::Role(Role::Admin),
        "owner" => Access::Role(Role::Owner),
        other => panic!(
            "{} {} has access {other:?}, which this test does not know; add a rule for it",
            doc.method, doc.path
        ),
    }
}

/// Whether a role route acts on one repository (its path names a repository, a build or a
/// delivery) rather than listing what the caller may read.
fn names_a_repository(doc: &RouteDoc) -> bool {
    doc.path.contains('{')
}

struct World {
    h: Harness,
    tokens: HashMap<&'static str, String>,
    finished_build: Uuid,
    queued_build: Uuid,
    delivery: Uuid,
    trigger_token: String,
    reader_token_id: Uuid,
    hook: Uuid,
    notification: Uuid,
}

impl World {
    /// `acme/web` (optionally open to anonymous readers) with its history, `acme/api` beside
    /// it, and a user for every kind of caller.
    async fn new(anonymous_read: bool) -> Self {
        let h = harness_with(vec![]).await;
        let store = h.state.store.clone();
        let secrets = SecretChanges {
            webhook_secret: SecretChange::Set(Secret::new(SECRET)),
            git_password: SecretChange::Keep,
            status_token: SecretChange::Keep,
        };
        // `staging` has a rule of its own so that the dashboard's "build now" form has a branch
        // to build while `main`'s build waits in the queue.
        let staging: BuildRule = serde_json::from_value(
            json!({"source_type": "branch", "source": "staging", "tags": "staging"}),
        )
        .expect("rule");
        let mut web = repository(
            "acme/web",
            "github",
            vec![BuildRule::default_rule(), staging],
        );
        web.anonymous_read = anonymous_read;
        let web = store
            .create_repository(&web, None, &secrets)
            .await
            .expect("create acme/web");
        let api = store
            .create_repository(
                &repository("acme/api", "github", vec![BuildRule::default_rule()]),
                None,
                &secrets,
            )
            .await
            .expect("create acme/api");

        // A push whose build has run to the end, with a log.
        let (status, answer) = send(
            &h,
            signed("push", "d-1", &push_body("refs/heads/main", COMMIT)),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let finished_build: Uuid = answer["builds"][0]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("build id");
        let claimed = store
            .claim_build("authz-worker", Duration::from_secs(600))
            .await
            .expect("claim")
            .expect("a queued build");
        assert_eq!(claimed.id, finished_build);
        store
            .append_log(finished_build, 1, b"Step 1/1 : FROM scratch\n")
            .await
            .expect("log");
        let result = BuildResult {
            status: BuildStatus::Succeeded,
            error: None,
            digest: Some(format!("sha256:{}", "d".repeat(64))),
        };
        assert!(
            store
                .finish_build(finished_build, "authz-worker", &result)
                .await
                .expect("finish")
        );
        let delivery = store
            .build(finished_build)
            .await
            .expect("query")
            .and_then(|b| b.delivery_id)
            .expect("the build's delivery");

        // A second push whose build waits in the queue.
        let (status, answer) = send(
            &h,
            signed("push", "d-2", &push_body("refs/heads/main", MAIN_HEAD)),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let queued_build: Uuid = answer["builds"][0]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("build id");

        // An outgoing webhook with one delivery in its history.
        let hook = store
            .create_hook(
                web.id,
                "https://8.8.8.8/slipway",
                &["build_succeeded".to_owned()],
                "a-hook-secret-0123456789",
            )
            .await
            .expect("hook");
        let transitions = store
            .claim_transitions("authz-dispatcher", 60_000, 100)
            .await
            .expect("transitions");
        let seq = transitions.first().expect("a transition").seq;
        store
            .dispatch_transitions(
                "authz-dispatcher",
                &[seq],
                &[NewNotification {
                    build_id: finished_build,
                    repository_id: web.id,
                    kind: NotificationKind::Webhook,
                    hook_id: Some(hook.id),
                    event: "build_succeeded".to_owned(),
                    payload_json: "{}".to_owned(),
                    transition_seq: seq,
                    status_key: None,
                }],
            )
            .await
            .expect("dispatch");
        let notification = store
            .hook_deliveries(hook.id, 1)
            .await
            .expect("deliveries")
            .first()
            .expect("a delivery")
            .id;

        let trigger_token = format!("slw_test_{}", Uuid::new_v4().simple());
        store
            .create_trigger(web.id, "ci", &hash_token(&trigger_token))
            .await
            .expect("trigger")
            .expect("new trigger");

        let mut tokens = HashMap::new();
        for (name, role) in GRANTED {
            tokens.insert(name, token_for(&store, name, None, Role::Owner, None).await);
            let user = store
                .user_by_name(name)
                .await
                .expect("query")
                .expect("user");
            store
                .set_grant(web.id, user.id, Some(role))
                .await
                .expect("grant");
        }
        // Signed in, but with no role anywhere.
        tokens.insert(
            "stranger",
            token_for(&store, "stranger", None, Role::Owner, None).await,
        );
        // A global administrator (not owner).
        tokens.insert(
            "global-admin",
            token_for(&store, "global-admin", Some(Role::Admin), Role::Owner, None).await,
        );
        // A global owner acting through a token scoped to `read`.
        tokens.insert(
            "read-scoped",
            token_for(&store, "read-scoped", Some(Role::Owner), Role::Read, None).await,
        );
        // A global owner acting through a token limited to the other repository.
        tokens.insert(
            "only-api",
            token_for(
                &store,
                "only-api",
                Some(Role::Owner),
                Role::Owner,
                Some(api.id),
            )
            .await,
        );
        let hash = slipway_server::auth::hash_password(READER_PASSWORD).expect("hash");
        store
            .update_user("reader", Some(&hash), None)
            .await
            .expect("the reader's password");
        let reader = store
            .user_by_name("reader")
            .await
            .expect("query")
            .expect("reader");
        let reader_token_id = store
            .tokens_for_user(reader.id)
            .await
            .expect("tokens")
            .first()
            .expect("the reader's token")
            .id;
        Self {
            h,
            tokens,
            finished_build,
            queued_build,
            delivery,
            trigger_token,
            reader_token_id,
            hook: hook.id,
            notification,
        }
    }

    /// The route's path with every parameter naming something of this world.
    fn fill(&self, doc: &RouteDoc) -> String {
        self.fill_path(doc.method, doc.path)
    }

    /// A path of the API's or the dashboard's route table with every parameter filled.
    fn fill_path(&self, method: &str, path: &str) -> String {
        let parts: Vec<&str> = path.split('/').collect();
        let filled: Vec<String> = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let previous = i.checked_sub(1).map_or("", |p| parts[p]);
                match (*part, previous) {
                    ("{owner}", _) => "acme".to_owned(),
                    ("{name}", "users") => "reader".to_owned(),
                    ("{name}", _) => "web".to_owned(),
                    ("{name}.svg", _) => "web.svg".to_owned(),
                    ("{file}", "assets") => "slipway.css".to_owned(),
                    ("{file}", "{owner}") => "web.svg".to_owned(),
                    // Cancelling needs a build that has not finished; everything else is
                    // asked of the finished one (a retry needs that, and its live log ends).
                    ("{id}", "builds") if path.ends_with("/cancel") => {
                        self.queued_build.to_string()
                    }
                    ("{id}", "builds") => self.finished_build.to_string(),
                    ("{id}", "deliveries") => self.delivery.to_string(),
                    ("{id}", "tokens") => self.reader_token_id.to_string(),
                    ("{id}", "webhooks") => self.hook.to_string(),
                    ("{id}", "notifications") => self.notification.to_string(),
                    ("{trigger}", _) => "ci".to_owned(),
                    ("{token}", _) => self.trigger_token.clone(),
                    ("{user}", _) => "reader".to_owned(),
                    (part, _) if part.starts_with('{') => panic!(
                        "{method} {path} has a path parameter {part} this test cannot fill; teach it"
                    ),
                    (part, _) => part.to_owned(),
                }
            })
            .collect();
        filled.join("/")
    }

    fn request(&self, doc: &RouteDoc, who: Who, path: &str) -> Request<Body> {
        let mut builder = Request::builder()
            .method(doc.method.to_uppercase().as_str())
            .uri(path);
        if let Who::User(name) = who {
            let token = self
                .tokens
                .get(name)
                .unwrap_or_else(|| panic!("no user {name} in the world"));
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        match body_for(doc) {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("request")
    }

    /// Asserts that `who` is refused with `status` and the one error shape.
    async fn refused(&self, doc: &RouteDoc, who: Who, status: StatusCode) {
        let path = self.fill(doc);
        let (got, _, bytes) = send_raw(&self.h, self.request(doc, who, &path)).await;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let context = format!("{} {path} as {who:?}", doc.method);
        assert_eq!(got, status, "{context}: {body}");
        assert_error_shape(&body, &context);
    }

    /// Asserts that `who` is let through to the answer the route table documents.
    async fn allowed(&self, doc: &RouteDoc, who: Who) {
        if doc.path == "/api/notifications/{id}/redeliver" {
            // A notification is redelivered only once it (and any earlier redelivery of it)
            // is no longer pending, so each caller finds the previous caller's copy delivered.
            settle_notifications(&self.h.state.store).await;
        }
        let path = self.fill(doc);
        let (got, _, bytes) = send_raw(&self.h, self.request(doc, who, &path)).await;
        assert_eq!(
            got.as_u16(),
            doc.success.0,
            "{} {path} as {who:?}: {}",
            doc.method,
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// Records every due notification as delivered, as a sender would after a 2xx answer.
async fn settle_notifications(store: &slipway_store::Store) {
    let due = store
        .claim_notifications("authz-sender", 60_000, 100)
        .await
        .expect("claim notifications");
    for notification in due {
        let attempt = slipway_store::NotificationAttempt {
            attempt: notification.attempts + 1,
            at: slipway_store::now_millis(),
            status_code: Some(200),
            duration_ms: 1,
            error: None,
            response_excerpt: None,
        };
        store
            .record_notification_attempt(
                notification.id,
                "authz-sender",
                &attempt,
                slipway_store::AfterAttempt::Delivered,
            )
            .await
            .expect("record");
    }
}

/// A request body the route accepts, for the routes that take one.
fn body_for(doc: &RouteDoc) -> Option<Value> {
    let body = match (doc.method, doc.path) {
        ("patch", "/api/repositories/{owner}/{name}") => json!({"max_concurrent_builds": 2}),
        ("put", "/api/repositories/{owner}/{name}/grants/{user}") => json!({"role": "read"}),
        ("post", "/api/repositories/{owner}/{name}/builds") => {
            json!({"source_type": "Branch", "source_name": "main"})
        }
        ("post", "/api/repositories/{owner}/{name}/triggers") => json!({"name": "deploy"}),
        ("post", "/api/trigger/{token}" | "/api/trigger/{token}/") => json!({"build": true}),
        ("post", "/api/repositories") => json!({
            "name": "acme/new",
            "provider": "gitea",
            "git_url": "https://git.example/acme/new.git",
            "image": "127.0.0.1:5000/acme/new",
            "webhook_secret": "a-new-webhook-secret-0123456789",
        }),
        ("post", "/api/users") => {
            json!({"name": "newcomer", "password": "a long enough password"})
        }
        ("patch", "/api/users/{name}") => {
            json!({"password": "another long password", "current_password": READER_PASSWORD})
        }
        ("post", "/api/tokens") => json!({"name": "laptop"}),
        ("post", "/api/repositories/{owner}/{name}/webhooks") => json!({
            "url": "https://8.8.8.8/deploy",
            "events": ["image_pushed"],
            "secret": "a-hook-secret-0123456789",
        }),
        ("post", "/hooks/{owner}/{name}") => return None,
        _ => {
            assert!(
                doc.request.is_none(),
                "{} {} takes a {:?} body this test does not know; add one",
                doc.method,
                doc.path,
                doc.request
            );
            return None;
        }
    };
    Some(body)
}

/// Checks one route in a fresh world.
async fn check_route(doc: &RouteDoc, anonymous_read: bool) {
    let w = World::new(anonymous_read).await;
    match access(doc) {
        Access::Public => w.allowed(doc, Who::Anonymous).await,
        Access::Signature => {
            // Without a signature the hook is refused; with the repository's, it is served.
            let path = w.fill(doc);
            let body = push_body("refs/heads/main", STAGING_HEAD);
            let unsigned = Request::post(&path)
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header("x-github-delivery", "d-unsigned")
                .body(Body::from(body.clone()))
                .expect("request");
            let (status, answer) = send_as_is(&w.h, unsigned).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {answer}");
            assert_error_shape(&answer, &path);
            let (status, answer) = send_as_is(&w.h, signed("push", "d-signed", &body)).await;
            assert_eq!(status.as_u16(), doc.success.0, "{path}: {answer}");
        }
        Access::TokenInUrl => {
            let wrong = doc.path.replace("{token}", "slw_not_a_real_token");
            let request = Request::post(&wrong)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let (status, answer) = send_as_is(&w.h, request).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{wrong}: {answer}");
            assert_error_shape(&answer, &wrong);
            w.allowed(doc, Who::Anonymous).await;
        }
        Access::SignedIn => {
            w.refused(doc, Who::Anonymous, StatusCode::UNAUTHORIZED)
                .await;
            w.allowed(doc, Who::User("reader")).await;
        }
        Access::GlobalAdmin => {
            w.refused(doc, Who::Anonymous, StatusCode::UNAUTHORIZED)
                .await;
            for who in ["owner", "stranger", "read-scoped", "only-api"] {
                w.refused(doc, Who::User(who), StatusCode::FORBIDDEN).await;
            }
            w.allowed(doc, Who::User("global-admin")).await;
        }
        Access::Role(_) if !names_a_repository(doc) => {
            // A list of what the caller may read: anyone signed in gets one (perhaps empty);
            // the anonymous only while some repository is open to them.
            if anonymous_read {
                w.allowed(doc, Who::Anonymous).await;
            } else {
                w.refused(doc, Who::Anonymous, StatusCode::UNAUTHORIZED)
                    .await;
            }
            for who in ["stranger", "only-api", "read-scoped", "reader"] {
                w.allowed(doc, Who::User(who)).await;
            }
        }
        Access::Role(needed) => {
            if anonymous_read && needed == Role::Read {
                w.allowed(doc, Who::Anonymous).await;
                return;
            }
            w.refused(doc, Who::Anonymous, StatusCode::UNAUTHORIZED)
                .await;
            if anonymous_read {
                // The open repository changes nothing for signed-in callers above `read`;
                // the closed world checks them.
                return;
            }
            // Signed-in callers with no role on the repository are told nothing about it: the
            // same 404 as for a repository (or build, delivery, notification) that is missing.
            w.refused(doc, Who::User("stranger"), StatusCode::NOT_FOUND)
                .await;
            w.refused(doc, Who::User("only-api"), StatusCode::NOT_FOUND)
                .await;
            // Those who may read it learn what they lack.
            for (name, role) in GRANTED {
                if role < needed {
                    w.refused(doc, Who::User(name), StatusCode::FORBIDDEN).await;
                }
            }
            if needed > Role::Read {
                w.refused(doc, Who::User("read-scoped"), StatusCode::FORBIDDEN)
                    .await;
            } else {
                w.allowed(doc, Who::User("read-scoped")).await;
            }
            let (least, _) = GRANTED
                .iter()
                .find(|(_, role)| *role == needed)
                .expect("a user with every role");
            w.allowed(doc, Who::User(least)).await;
        }
    }
}

#[tokio::test]
async fn every_route_refuses_whoever_lacks_its_access_and_serves_whoever_has_it() {
    let docs = route_docs();
    assert!(docs.len() > 20, "the route table is exported whole");
    for doc in &docs {
        check_route(doc, false).await;
    }
}

#[tokio::test]
async fn a_repository_open_to_anonymous_readers_lets_them_read_and_nothing_more() {
    for doc in &route_docs() {
        check_route(doc, true).await;
    }
}

/// A session cookie for `user`, as the dashboard's login makes it; returns the cookie's value
/// and the session's CSRF token.
async fn session_for(h: &Harness, user: &str, expires_in_ms: i64) -> (String, String) {
    let store = &h.state.store;
    let user = store
        .user_by_name(user)
        .await
        .expect("query")
        .expect("user");
    let raw = format!("session-{}", Uuid::new_v4().simple());
    let csrf = format!("csrf-{}", Uuid::new_v4().simple());
    store
        .create_session(
            &hash_token(&raw),
            user.id,
            &csrf,
            slipway_store::now_millis() + expires_in_ms,
        )
        .await
        .expect("session");
    (raw, csrf)
}

#[tokio::test]
async fn cookie_authenticated_changes_need_the_csrf_header() {
    let h = harness().await;
    token_for(&h.state.store, "alice", None, Role::Read, None).await;
    let (cookie, csrf) = session_for(&h, "alice", 3_600_000).await;
    let cookie_header = format!("theme=dark; slipway_session={cookie}");
    let new_token = |csrf: Option<&str>| {
        let mut builder = Request::post("/api/tokens")
            .header("cookie", &cookie_header)
            .header("content-type", "application/json");
        if let Some(csrf) = csrf {
            builder = builder.header("x-csrf-token", csrf);
        }
        builder
            .body(Body::from(
                json!({"name": "from the dashboard"}).to_string(),
            ))
            .expect("request")
    };

    // Reading needs no proof.
    let me = Request::get("/api/me")
        .header("cookie", &cookie_header)
        .body(Body::empty())
        .expect("request");
    let (status, body) = send_as_is(&h, me).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["name"], "alice");
    assert_eq!(body["authenticated_by"], "session");

    for csrf in [None, Some("csrf-of-another-session"), Some("")] {
        let (status, body) = send_as_is(&h, new_token(csrf)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{csrf:?}: {body}");
        assert_error_shape(&body, "a cookie post without the session's CSRF token");
        assert_eq!(body["error"]["code"], "csrf");
    }
    let (status, body) = send_as_is(&h, new_token(Some(&csrf))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Deleting is a change too.
    let id = body["id"].as_str().expect("token id");
    let revoke = Request::delete(format!("/api/tokens/{id}"))
        .header("cookie", &cookie_header)
        .body(Body::empty())
        .expect("request");
    let (status, body) = send_as_is(&h, revoke).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "csrf");

    // A bearer token needs no CSRF header: a browser never adds one on its own.
    let token = token_for(&h.state.store, "alice", None, Role::Read, None).await;
    let request = Request::post("/api/tokens")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"name": "scripted"}).to_string()))
        .expect("request");
    let (status, body) = send_as_is(&h, request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn expired_sessions_and_unknown_tokens_authenticate_nobody() {
    let h = harness().await;
    token_for(&h.state.store, "bob", None, Role::Read, None).await;
    let (cookie, _) = session_for(&h, "bob", -1).await;
    let request = Request::get("/api/me")
        .header("cookie", format!("slipway_session={cookie}"))
        .body(Body::empty())
        .expect("request");
    let (status, body) = send_as_is(&h, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error_shape(&body, "an expired session");

    for header in ["Bearer slwa_unknown", "Basic Ym9iOnNlY3JldA==", "Bearer "] {
        let request = Request::get("/api/me")
            .header("authorization", header)
            .body(Body::empty())
            .expect("request");
        let (status, body) = send_as_is(&h, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header}: {body}");
        assert_error_shape(&body, header);
    }
}

#[tokio::test]
async fn users_change_only_their_own_password_and_only_owners_make_owners() {
    let h = harness().await;
    let store = h.state.store.clone();
    let carol = token_for(&store, "carol", None, Role::Owner, None).await;
    token_for(&store, "dave", None, Role::Read, None).await;
    let admin = token_for(&store, "eve", Some(Role::Admin), Role::Owner, None).await;
    let patch = |token: &str, user: &str, body: Value| {
        Request::patch(format!("/api/users/{user}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let password = json!({"password": "a brand new password"});
    let (status, body) = send_as_is(&h, patch(&carol, "dave", password.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error_shape(&body, "another user's password");
    let (status, body) =
        send_as_is(&h, patch(&carol, "carol", json!({"global_role": "admin"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error_shape(&body, "one's own global role");
    let (status, body) =
        send_as_is(&h, patch(&admin, "carol", json!({"global_role": "owner"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error_shape(&body, "an admin making an owner");
    // An administrator cannot take over or demote an owner's account.
    for change in [password.clone(), json!({"global_role": "read"})] {
        let (status, body) = send_as_is(&h, patch(&admin, "root", change.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{change}: {body}");
        assert_error_shape(&body, "an admin changing an owner");
    }
    let (status, body) = send(
        &h,
        patch(&h.admin_token, "root", json!({"global_role": "owner"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "an owner changes an owner: {body}");
    let (status, body) =
        send_as_is(&h, patch(&admin, "carol", json!({"global_role": "write"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["global_role"], "write");

    // A token that may do less than its user cannot set the password that opens the
    // dashboard with all of the user's roles; a full token can.
    let web = store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("acme/web");
    let read_only = token_for(&store, "carol", None, Role::Read, None).await;
    let limited = token_for(&store, "carol", None, Role::Owner, Some(web.id)).await;
    for token in [&read_only, &limited] {
        let (status, body) = send_as_is(&h, patch(token, "carol", password.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_error_shape(&body, "a narrow token changing its user's password");
    }
    // (A full token may, with carol's current password: see the test after this one.)

    let create = Request::post("/api/users")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"name": "mallory", "password": "a long enough password", "global_role": "owner"})
                .to_string(),
        ))
        .expect("request");
    let (status, body) = send_as_is(&h, create).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error_shape(&body, "an admin creating an owner");
}

#[tokio::test]
async fn grants_give_owner_only_from_owners_and_tokens_cannot_reach_further_than_themselves() {
    let h = harness().await;
    let store = h.state.store.clone();
    let web = store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("acme/web");
    let admin = token_for(&store, "frank", None, Role::Owner, None).await;
    let frank = store
        .user_by_name("frank")
        .await
        .expect("query")
        .expect("frank");
    store
        .set_grant(web.id, frank.id, Some(Role::Admin))
        .await
        .expect("grant");
    token_for(&store, "grace", None, Role::Read, None).await;
    let grant = |role: Value| {
        Request::put("/api/repositories/acme/web/grants/grace")
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(Body::from(json!({ "role": role }).to_string()))
            .expect("request")
    };
    let (status, body) = send_as_is(&h, grant(json!("owner"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error_shape(&body, "an admin granting owner");
    let (status, body) = send_as_is(&h, grant(json!("admin"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Nor may an admin demote an owner of the repository.
    token_for(&store, "ivy", None, Role::Read, None).await;
    let ivy_user = store
        .user_by_name("ivy")
        .await
        .expect("query")
        .expect("ivy");
    store
        .set_grant(web.id, ivy_user.id, Some(Role::Owner))
        .await
        .expect("grant");
    for role in [json!("read"), Value::Null] {
        let request = Request::put("/api/repositories/acme/web/grants/ivy")
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(Body::from(json!({ "role": role }).to_string()))
            .expect("request");
        let (status, body) = send_as_is(&h, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
        assert_error_shape(&body, "an admin demoting an owner");
    }
    assert_eq!(
        store.grants_for_user(ivy_user.id).await.expect("grants"),
        [(web.id, Role::Owner)]
    );

    // A token limited to acme/web makes only tokens limited to acme/web, and never wider
    // in scope.
    let limited = token_for(
        &store,
        "heidi",
        Some(Role::Owner),
        Role::Write,
        Some(web.id),
    )
    .await;
    let create = |body: Value| {
        Request::post("/api/tokens")
            .header("authorization", format!("Bearer {limited}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let (status, body) = send_as_is(
        &h,
        create(json!({"name": "wider", "repository": "acme/other"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error_shape(&body, "a limited token widening its reach");
    let (status, body) = send_as_is(&h, create(json!({"name": "child", "scope": "owner"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scope"], "write");
    assert_eq!(body["repository"], "acme/web");
}

/// Whether a repository exists is not something a caller who may not read it can learn: the
/// anonymous get 401 for a missing repository and for a closed one alike, signed-in callers
/// with no role 404 for both, and the same holds for builds, deliveries and notifications
/// reached by id.
#[tokio::test]
async fn callers_who_may_not_read_a_repository_cannot_tell_whether_it_exists() {
    let w = World::new(false).await;
    let missing_id = Uuid::now_v7();
    let pairs: [(String, String); 6] = [
        (
            "/api/repositories/acme/web".to_owned(),
            "/api/repositories/acme/missing".to_owned(),
        ),
        (
            "/api/repositories/acme/web/deliveries".to_owned(),
            "/api/repositories/acme/missing/deliveries".to_owned(),
        ),
        (
            "/api/builds?repository=acme/web".to_owned(),
            "/api/builds?repository=acme/missing".to_owned(),
        ),
        (
            format!("/api/builds/{}", w.finished_build),
            format!("/api/builds/{missing_id}"),
        ),
        (
            format!("/api/builds/{}/log", w.finished_build),
            "/api/builds/not-an-id/log".to_owned(),
        ),
        (
            format!("/api/deliveries/{}", w.delivery),
            format!("/api/deliveries/{missing_id}"),
        ),
    ];
    let answer = |who: Option<&'static str>, path: String| {
        let w = &w;
        async move {
            let mut builder = Request::get(&path);
            if let Some(name) = who {
                builder = builder.header("authorization", format!("Bearer {}", w.tokens[name]));
            }
            let request = builder.body(Body::empty()).expect("request");
            let (status, _, bytes) = send_raw(&w.h, request).await;
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert_error_shape(&body, &path);
            (status, body["error"]["code"].clone())
        }
    };
    for (existing, missing) in pairs {
        for (who, status) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("stranger"), StatusCode::NOT_FOUND),
            (Some("only-api"), StatusCode::NOT_FOUND),
        ] {
            let seen = answer(who, existing.clone()).await;
            let unseen = answer(who, missing.clone()).await;
            assert_eq!(seen.0, status, "{existing} as {who:?}");
            assert_eq!(
                seen, unseen,
                "{existing} and {missing} answer {who:?} alike"
            );
        }
    }

    // The notification redelivery (a change) says the same to callers who may not read.
    for who in [None, Some("stranger")] {
        let mut statuses = Vec::new();
        for id in [w.notification, missing_id] {
            let mut builder = Request::post(format!("/api/notifications/{id}/redeliver"));
            if let Some(name) = who {
                builder = builder.header("authorization", format!("Bearer {}", w.tokens[name]));
            }
            let (status, _, _) =
                send_raw(&w.h, builder.body(Body::empty()).expect("request")).await;
            statuses.push(status);
        }
        assert_eq!(statuses[0], statuses[1], "{who:?}");
    }
    // A reader of the repository learns that it exists and what they lack.
    let request = Request::post(format!("/api/notifications/{}/redeliver", w.notification))
        .header("authorization", format!("Bearer {}", w.tokens["reader"]))
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send_raw(&w.h, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Changing one's own password needs the current one, with a token and with a session alike,
/// so a stolen credential cannot lock the owner out; an administrator resetting another user's
/// password needs no password of theirs.
#[tokio::test]
async fn changing_ones_own_password_needs_the_current_one() {
    let h = harness().await;
    let store = h.state.store.clone();
    let carol = token_for(&store, "carol", None, Role::Owner, None).await;
    let admin = token_for(&store, "eve", Some(Role::Admin), Role::Owner, None).await;
    for (name, password) in [
        ("carol", "carol's first password"),
        ("eve", "eve's own password"),
    ] {
        let hash = slipway_server::auth::hash_password(password).expect("hash");
        store
            .update_user(name, Some(&hash), None)
            .await
            .expect("password");
    }
    let patch = |token: &str, user: &str, body: Value| {
        Request::patch(format!("/api/users/{user}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let signs_in_with = |name: &'static str, password: &'static str| {
        let store = store.clone();
        async move {
            let user = store
                .user_by_name(name)
                .await
                .expect("query")
                .expect("user");
            slipway_server::auth::verify_password(password, &user.password_hash)
        }
    };

    // With a token: no current password, a wrong one, then the right one.
    let (status, body) = send_as_is(
        &h,
        patch(
            &carol,
            "carol",
            json!({"password": "carol's second password"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error_shape(&body, "no current password");
    let (status, body) = send_as_is(
        &h,
        patch(
            &carol,
            "carol",
            json!({"password": "carol's second password", "current_password": "a guess at it"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "wrong_password", "{body}");
    assert!(signs_in_with("carol", "carol's first password").await);
    let (status, body) = send_as_is(
        &h,
        patch(
            &carol,
            "carol",
            json!({"password": "carol's second password", "current_password": "carol's first password"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(signs_in_with("carol", "carol's second password").await);

    // With a session: the same rule.
    let (cookie, csrf) = session_for(&h, "carol", 3_600_000).await;
    let with_session = |body: Value| {
        Request::patch("/api/users/carol")
            .header("cookie", format!("slipway_session={cookie}"))
            .header("x-csrf-token", &csrf)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let (status, body) = send_as_is(
        &h,
        with_session(json!({"password": "carol's third password"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = send_as_is(
        &h,
        with_session(json!({"password": "carol's third password", "current_password": "carol's first password"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the old password is no longer it: {body}"
    );
    let (status, body) = send_as_is(
        &h,
        with_session(json!({"password": "carol's third password", "current_password": "carol's second password"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(signs_in_with("carol", "carol's third password").await);

    // An administrator needs their own current password for their own account too ...
    let (status, body) = send_as_is(
        &h,
        patch(&admin, "eve", json!({"password": "eve's second password"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // ... but resets another user's without knowing it.
    let (status, body) = send_as_is(
        &h,
        patch(
            &admin,
            "carol",
            json!({"password": "reset by an administrator"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(signs_in_with("carol", "reset by an administrator").await);
}

/// A dashboard caller: anonymous, or one of the world's users through a session cookie (the
/// dashboard's own way in; its forms need the session's CSRF token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visitor {
    Anonymous,
    Session(&'static str),
}

/// What a dashboard request was answered with.
struct PageAnswer {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Vec<String>,
    text: String,
}

impl World {
    /// A request for a dashboard route as `visitor`; forms carry the visitor's CSRF token
    /// (and the fields the form has).
    async fn page_request(&self, route: &PageRoute, visitor: Visitor) -> PageAnswer {
        let path = self.fill_path(route.method, route.path);
        let mut builder = Request::builder()
            .method(route.method.to_uppercase().as_str())
            .uri(&path);
        let mut csrf = String::new();
        if let Visitor::Session(name) = visitor {
            let (cookie, token) = session_for(&self.h, name, 3_600_000).await;
            builder = builder.header("cookie", format!("slipway_session={cookie}"));
            csrf = token;
        }
        let request = if route.method == "post" {
            let mut body = format!("csrf_token={csrf}");
            if route.path == "/repos/{owner}/{name}/build" {
                body.push_str("&source_type=Branch&source_name=staging");
            }
            builder
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
        } else {
            builder.body(Body::empty())
        }
        .expect("request");
        let (status, headers, bytes) = send_raw(&self.h, request).await;
        PageAnswer {
            status,
            location: headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            set_cookie: headers
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Asserts that the anonymous visitor is sent to the sign-in page, and nothing else.
    async fn sent_to_sign_in(&self, route: &PageRoute) {
        let answer = self.page_request(route, Visitor::Anonymous).await;
        let context = format!("{} {} as the anonymous", route.method, route.path);
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{context}: {}",
            answer.text
        );
        assert_eq!(answer.location.as_deref(), Some("/login"), "{context}");
        assert!(
            answer.set_cookie.is_empty(),
            "{context}: {:?}",
            answer.set_cookie
        );
    }

    /// Asserts that `visitor` is refused with `status` (a 403 or 404 page).
    async fn page_refused(&self, route: &PageRoute, visitor: Visitor, status: StatusCode) {
        let answer = self.page_request(route, visitor).await;
        assert_eq!(
            answer.status, status,
            "{} {} as {visitor:?}: {}",
            route.method, route.path, answer.text
        );
    }

    /// Asserts that `visitor` is served: a page with 200, a form with 303 to somewhere other
    /// than the sign-in page (signing out, which goes there, must end the session).
    async fn page_allowed(&self, route: &PageRoute, visitor: Visitor) {
        if route.path == "/notifications/{id}/redeliver" {
            // As through the API: only a notification that is no longer pending is redelivered.
            settle_notifications(&self.h.state.store).await;
        }
        let answer = self.page_request(route, visitor).await;
        let context = format!("{} {} as {visitor:?}", route.method, route.path);
        if route.method == "get" {
            assert_eq!(answer.status, StatusCode::OK, "{context}: {}", answer.text);
            return;
        }
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{context}: {}",
            answer.text
        );
        if route.path == "/logout" {
            assert_eq!(answer.location.as_deref(), Some("/login"), "{context}");
            assert!(
                answer
                    .set_cookie
                    .iter()
                    .any(|c| c.starts_with("slipway_session=;") && c.contains("Max-Age=0")),
                "{context}: {:?}",
                answer.set_cookie
            );
        } else {
            assert_ne!(answer.location.as_deref(), Some("/login"), "{context}");
        }
    }
}

/// The granted users whose role on `acme/web` is at least `needed`.
fn at_least(needed: Role) -> impl Iterator<Item = &'static str> {
    GRANTED
        .iter()
        .filter(move |(_, role)| role.allows(needed))
        .map(|(name, _)| *name)
}

/// Checks one dashboard route in a fresh world.
async fn check_page(route: &PageRoute, anonymous_read: bool) {
    let w = World::new(anonymous_read).await;
    let changes = route.method == "post";
    match route.access {
        PageAccess::Public if route.path == "/login" && changes => {
            // Signing in is open to all, with the sign-in form's own CSRF pair and a password.
            let hash = slipway_server::auth::hash_password("a long password").expect("hash");
            w.h.state
                .store
                .create_user("walk-in", &hash, None)
                .await
                .expect("create")
                .expect("new user");
            let request = Request::post("/login")
                .header("cookie", "slipway_login_csrf=pair")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(
                    "name=walk-in&password=a+long+password&csrf_token=pair",
                ))
                .expect("request");
            let (status, headers, _) = send_raw(&w.h, request).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "POST /login");
            assert_eq!(
                headers.get("location").and_then(|v| v.to_str().ok()),
                Some("/")
            );
        }
        PageAccess::Public => {
            w.page_allowed(route, Visitor::Anonymous).await;
            w.page_allowed(route, Visitor::Session("stranger")).await;
        }
        PageAccess::SignedIn => {
            w.sent_to_sign_in(route).await;
            w.page_allowed(route, Visitor::Session("stranger")).await;
        }
        PageAccess::Readable => {
            if anonymous_read {
                w.page_allowed(route, Visitor::Anonymous).await;
            } else {
                w.sent_to_sign_in(route).await;
            }
            for name in ["stranger", "reader", "owner"] {
                w.page_allowed(route, Visitor::Session(name)).await;
            }
        }
        PageAccess::HiddenRole(needed) => {
            if anonymous_read && needed == Role::Read {
                w.page_allowed(route, Visitor::Anonymous).await;
                return;
            }
            w.page_refused(route, Visitor::Anonymous, StatusCode::NOT_FOUND)
                .await;
            w.page_refused(route, Visitor::Session("stranger"), StatusCode::NOT_FOUND)
                .await;
            for name in at_least(needed) {
                w.page_allowed(route, Visitor::Session(name)).await;
            }
        }
        PageAccess::Role(needed) => {
            if anonymous_read && needed == Role::Read && !changes {
                w.page_allowed(route, Visitor::Anonymous).await;
                return;
            }
            w.sent_to_sign_in(route).await;
            if anonymous_read {
                // The open repository changes nothing for signed-in visitors; the closed world
                // checks them.
                return;
            }
            // Someone who may not even read the repository cannot tell that it exists.
            w.page_refused(route, Visitor::Session("stranger"), StatusCode::NOT_FOUND)
                .await;
            for (name, role) in GRANTED {
                if !role.allows(needed) {
                    w.page_refused(route, Visitor::Session(name), StatusCode::FORBIDDEN)
                        .await;
                }
            }
            if changes {
                // A form changes the world, so one visitor is let through: the one with just
                // the role it needs.
                let least = at_least(needed).next().expect("a user with every role");
                w.page_allowed(route, Visitor::Session(least)).await;
            } else {
                for name in at_least(needed) {
                    w.page_allowed(route, Visitor::Session(name)).await;
                }
            }
        }
    }
}

#[tokio::test]
async fn every_dashboard_route_sends_the_anonymous_to_sign_in_and_refuses_missing_roles() {
    let routes = page_routes();
    // The table is the router's: every page and form the dashboard has, pages and forms both.
    assert!(routes.iter().filter(|r| r.method == "get").count() >= 8);
    assert!(routes.iter().filter(|r| r.method == "post").count() >= 7);
    for route in &routes {
        check_page(route, false).await;
    }
}

#[tokio::test]
async fn a_repository_open_to_anonymous_readers_shows_them_its_pages_and_no_forms() {
    for route in &page_routes() {
        check_page(route, true).await;
    }
}
