//! The OpenAPI document against the API's real answers: every request body sent here and every
//! answer got back is validated against the schema the document names for that route and
//! status (its `$ref`s resolved into the document's components). The schemas close their
//! objects (`additionalProperties: false`) and require the keys answers always carry, so a key
//! added to, dropped from or retyped in an answer without the document fails here. And every
//! JSON answer the route table documents must have been checked by the end, so a new route or
//! status needs a case here too.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use slipway_core::Role;

/// The document, and which (method, path, status) answers have been validated.
struct Checker {
    document: Value,
    checked: RefCell<BTreeSet<(String, String, u16)>>,
}

impl Checker {
    fn new() -> Self {
        Self {
            document: slipway_server::openapi_document("http://slipway.test"),
            checked: RefCell::new(BTreeSet::new()),
        }
    }

    /// The errors of `instance` against `schema`, a schema of the document (or a `$ref` into
    /// its components).
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let root = json!({
            "components": self.document["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema {schema} does not compile: {e}"));
        validator
            .iter_errors(instance)
            .map(|error| format!("{error} (at {})", error.instance_path()))
            .collect()
    }

    #[track_caller]
    fn assert_valid(&self, schema: &Value, instance: &Value, context: &str) {
        let errors = self.errors(schema, instance);
        assert!(
            errors.is_empty(),
            "{context} does not match {schema}: {errors:#?}\n{instance:#}"
        );
    }

    fn operation(&self, method: &str, path: &str) -> &Value {
        let operation = &self.document["paths"][path][method];
        assert!(
            operation.is_object(),
            "{method} {path} is not in the document"
        );
        operation
    }

    /// Validates a request body against the route's request schema.
    #[track_caller]
    fn request(&self, method: &str, path: &str, body: &Value) {
        let schema =
            &self.operation(method, path)["requestBody"]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} documents no request body"
        );
        self.assert_valid(
            schema,
            body,
            &format!("the request body of {method} {path}"),
        );
    }

    /// Validates an answer against the schema the route documents for its status: its own for
    /// a success (which must be documented), the error schema (`default`) otherwise.
    #[track_caller]
    fn answer(&self, method: &str, path: &str, status: StatusCode, body: &Value) {
        let responses = &self.operation(method, path)["responses"];
        let response = match responses.get(status.as_str()) {
            Some(response) => response,
            None => {
                assert!(
                    !status.is_success(),
                    "{method} {path} answered {status}, which the document does not list"
                );
                &responses["default"]
            }
        };
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} documents no JSON body for {status}"
        );
        self.assert_valid(
            schema,
            body,
            &format!("the {status} answer of {method} {path}"),
        );
        self.checked
            .borrow_mut()
            .insert((method.to_owned(), path.to_owned(), status.as_u16()));
    }

    /// Every documented success answer with a JSON body.
    fn documented(&self) -> BTreeSet<(String, String, u16)> {
        let mut all = BTreeSet::new();
        for (path, methods) in self.document["paths"].as_object().into_iter().flatten() {
            for (method, operation) in methods.as_object().into_iter().flatten() {
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    if let Ok(status) = status.parse::<u16>()
                        && response["content"]["application/json"].is_object()
                    {
                        all.insert((method.clone(), path.clone(), status));
                    }
                }
            }
        }
        all
    }
}

/// A request to `uri` (filled from `path`'s template) as `token`, or the harness's owner.
fn request(method: &str, uri: &str, token: Option<&str>, body: Option<&Value>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request")
}

/// Sends a request to the route `path` (a template of the table) at `uri`, validating the
/// request body and the answer; returns the answer.
fn call<'a>(
    h: &'a Harness,
    checker: &'a Checker,
    method: &'a str,
    path: &'a str,
    uri: &'a str,
    body: Option<Value>,
    token: Option<&'a str>,
) -> impl Future<Output = (StatusCode, Value)> + 'a {
    if let Some(body) = &body {
        checker.request(method, path, body);
    }
    async move {
        let (status, answer) = send(h, request(method, uri, token, body.as_ref())).await;
        checker.answer(method, path, status, &answer);
        (status, answer)
    }
}

#[tokio::test]
async fn a_closed_schema_refuses_an_answer_with_an_undocumented_key() {
    // The check itself must be able to fail: a real build answer passes, the same answer with
    // one key more, or one key less, does not.
    let h = harness().await;
    let checker = Checker::new();
    let (_, answer) = send(
        &h,
        signed("push", "d-1", &push_body("refs/heads/main", COMMIT)),
    )
    .await;
    let id = answer["builds"][0]["id"].as_str().expect("a build");
    let (status, build) = get_json(&h, &format!("/api/builds/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{build}");
    let schema = json!({"$ref": "#/components/schemas/BuildDetail"});
    assert!(checker.errors(&schema, &build).is_empty());
    let mut extra = build.clone();
    extra["undocumented"] = json!(1);
    assert!(!checker.errors(&schema, &extra).is_empty());
    let mut missing = build.clone();
    if let Value::Object(fields) = &mut missing {
        fields.remove("notifications");
    }
    assert!(!checker.errors(&schema, &missing).is_empty());
    let mut retyped = build;
    retyped["attempts"] = json!("0");
    assert!(!checker.errors(&schema, &retyped).is_empty());
}

#[tokio::test]
async fn every_documented_answer_matches_its_schema() {
    let mut h = harness().await;
    let health = Arc::new(slipway_core::health::Health::default());
    health.set_unhealthy("the Docker engine does not answer");
    h.state.worker_health = Some(health);
    let checker = Checker::new();
    let c = &checker;
    let store = h.state.store.clone();

    // Operations.
    let (status, _) = call(&h, c, "get", "/healthz", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let now = slipway_store::now_millis();
    for (id, problem) in [("w-1", None), ("w-2", Some("no engine".to_owned()))] {
        store
            .report_worker(&slipway_store::WorkerRecord {
                id: id.to_owned(),
                hostname: "builder".to_owned(),
                slots: 2,
                started_at: now,
                last_seen_at: now,
                problem,
            })
            .await
            .expect("report");
    }
    let (status, workers) = call(&h, c, "get", "/api/workers", "/api/workers", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(workers["workers"].as_array().map(Vec::len), Some(2));

    // Webhooks: a push, its replay, a push no rule builds, and a ping.
    let hook = "/hooks/{owner}/{name}";
    for (delivery, event, body) in [
        ("d-push", "push", push_body("refs/heads/main", COMMIT)),
        ("d-push", "push", push_body("refs/heads/main", COMMIT)),
        (
            "d-other",
            "push",
            push_body("refs/heads/feature", STAGING_HEAD),
        ),
        (
            "d-ping",
            "ping",
            "{\"zen\": \"Keep it logically awesome.\"}".to_owned(),
        ),
    ] {
        let (status, answer) = send(&h, signed(event, delivery, &body)).await;
        checker.answer("post", hook, status, &answer);
        assert!(status.is_success(), "{answer}");
    }
    // A refused delivery answers in the error shape.
    let unsigned = Request::post("/hooks/acme/web")
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "d-unsigned")
        .body(Body::from(push_body("refs/heads/main", MAIN_HEAD)))
        .expect("request");
    let (status, answer) = send(&h, unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    checker.answer("post", hook, status, &answer);

    // Builds: the list, a detail with notifications as an admin and as a reader, cancel
    // (queued and running), retry, build now.
    let (build, _, notification) = build_with_notifications(&h).await;
    fail_due_notifications(&h, "connecting to 10.1.2.3:443 was refused").await;
    let detail = "/api/builds/{id}";
    let (status, answer) = call(
        &h,
        c,
        "get",
        detail,
        &format!("/api/builds/{build}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["notifications"][0]["history"].is_array(), "{answer}");
    let reader = token_for(&store, "reader", Some(Role::Read), Role::Read, None).await;
    let (status, answer) = call(
        &h,
        c,
        "get",
        detail,
        &format!("/api/builds/{build}"),
        None,
        Some(&reader),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        answer["notifications"][0].get("history").is_none(),
        "{answer}"
    );
    let cancel = "/api/builds/{id}/cancel";
    let (status, _) = call(
        &h,
        c,
        "post",
        cancel,
        &format!("/api/builds/{build}/cancel"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, answer) = send(
        &h,
        signed("push", "d-tag", &push_body("refs/tags/v1.2", TAG_HEAD)),
    )
    .await;
    let running = store
        .claim_build("openapi-worker", std::time::Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("the tag's build");
    assert_eq!(
        answer["builds"][0]["id"].as_str(),
        Some(running.id.to_string().as_str())
    );
    let (status, _) = call(
        &h,
        c,
        "post",
        cancel,
        &format!("/api/builds/{}/cancel", running.id),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, list) = call(
        &h,
        c,
        "get",
        "/api/builds",
        "/api/builds?limit=1",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(list["next_cursor"].is_string(), "{list}");
    let (status, _) = call(
        &h,
        c,
        "post",
        "/api/builds/{id}/retry",
        &format!("/api/builds/{build}/retry"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(
        &h,
        c,
        "post",
        "/api/repositories/{owner}/{name}/builds",
        "/api/repositories/acme/web/builds",
        Some(json!({"source_type": "Branch", "source_name": "staging"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Repositories: create (every key), list, show (as an admin, with grants, and a reader),
    // change, grant.
    let (status, created) = call(
        &h,
        c,
        "post",
        "/api/repositories",
        "/api/repositories",
        Some(json!({
            "name": "acme/api",
            "provider": "gitlab",
            "git_url": "https://gitlab.example/acme/api.git",
            "image": "127.0.0.1:5000/acme/api",
            "rules": [{"source_type": "tag", "source": "/^v(.*)$/", "tags": "{\\1}", "build_args": {"MODE": "release"}, "target": "final"}],
            "anonymous_read": false,
            "allow_unsigned_webhooks": false,
            "allow_legacy_sha1": false,
            "supersede_running_builds": true,
            "build_timeout": "30m",
            "max_concurrent_builds": 2,
            "memory_limit": "1g",
            "cpu_limit": 1.5,
            "max_context_size": "500m",
            "forge_repository": "acme/api",
            "git_username": "bot",
            "webhook_secret": "a-webhook-secret-0123456789",
            "git_password": "a-git-password",
            "report_status": true,
            "status_api_url": "https://gitlab.example/api/v4",
            "status_repository": "acme/api",
            "status_token": "a-status-token",
        })),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = call(
        &h,
        c,
        "get",
        "/api/repositories",
        "/api/repositories",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let show = "/api/repositories/{owner}/{name}";
    let (status, shown) = call(&h, c, "get", show, "/api/repositories/acme/web", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown["grants"].is_array(), "{shown}");
    let (status, shown) = call(
        &h,
        c,
        "get",
        show,
        "/api/repositories/acme/web",
        None,
        Some(&reader),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown.get("grants").is_none(), "{shown}");
    // What a client read may be sent back with a change.
    let mut change = created.clone();
    change["max_concurrent_builds"] = json!(3);
    let (status, changed) = call(
        &h,
        c,
        "patch",
        show,
        "/api/repositories/acme/api",
        Some(change),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (status, changed) = call(
        &h,
        c,
        "patch",
        show,
        "/api/repositories/acme/api",
        Some(json!({"enabled": false})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (status, _) = call(
        &h,
        c,
        "put",
        "/api/repositories/{owner}/{name}/grants/{user}",
        "/api/repositories/acme/web/grants/reader",
        Some(json!({"role": "write"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Deliveries: the list, a detail, a redelivery of a push and of a ping.
    let (status, deliveries) = call(
        &h,
        c,
        "get",
        "/api/repositories/{owner}/{name}/deliveries",
        "/api/repositories/acme/web/deliveries?limit=100",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let find = |event: &str| {
        deliveries["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["event"] == event && d["body_kept"] == true)
            .and_then(|d| d["id"].as_str())
            .unwrap_or_else(|| panic!("no kept {event} delivery: {deliveries:#}"))
            .to_owned()
    };
    let (push, ping) = (find("push"), find("ping"));
    let (status, _) = call(
        &h,
        c,
        "get",
        "/api/deliveries/{id}",
        &format!("/api/deliveries/{push}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let redeliver = "/api/deliveries/{id}/redeliver";
    for (id, expected) in [(&push, StatusCode::ACCEPTED), (&ping, StatusCode::OK)] {
        let (status, answer) = call(
            &h,
            c,
            "post",
            redeliver,
            &format!("/api/deliveries/{id}/redeliver"),
            None,
            None,
        )
        .await;
        assert_eq!(status, expected, "{answer}");
    }

    // Triggers: create, regenerate, fire (both URL forms), list.
    let (status, created) = call(
        &h,
        c,
        "post",
        "/api/repositories/{owner}/{name}/triggers",
        "/api/repositories/acme/web/triggers",
        Some(json!({"name": "nightly"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, regenerated) = call(
        &h,
        c,
        "post",
        "/api/repositories/{owner}/{name}/triggers/{trigger}/regenerate",
        "/api/repositories/acme/web/triggers/nightly/regenerate",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(created["url"], regenerated["url"]);
    let url = regenerated["url"].as_str().expect("a URL");
    let fire_path = url.trim_start_matches("http://slipway.test");
    let (status, _) = call(
        &h,
        c,
        "post",
        "/api/trigger/{token}",
        fire_path,
        Some(json!({"docker_tag": "latest"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(
        &h,
        c,
        "post",
        "/api/trigger/{token}/",
        &format!("{fire_path}/"),
        Some(json!({"build": true})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(
        &h,
        c,
        "get",
        "/api/repositories/{owner}/{name}/triggers",
        "/api/repositories/acme/web/triggers",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Outgoing webhooks: add one, list them, a hook's deliveries, redeliver a notification.
    let (status, added) = call(
        &h,
        c,
        "post",
        "/api/repositories/{owner}/{name}/webhooks",
        "/api/repositories/acme/web/webhooks",
        Some(json!({"url": "https://8.8.8.8/deploy", "events": ["image_pushed", "build_failed"], "secret": "a-hook-secret-0123456789"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let (status, hooks) = call(
        &h,
        c,
        "get",
        "/api/repositories/{owner}/{name}/webhooks",
        "/api/repositories/acme/web/webhooks",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let notified_hook = store
        .notification(notification)
        .await
        .expect("query")
        .and_then(|n| n.hook_id)
        .expect("the webhook notification's hook");
    assert!(hooks.to_string().contains(&notified_hook.to_string()));
    let (status, history) = call(
        &h,
        c,
        "get",
        "/api/repositories/{owner}/{name}/webhooks/{id}/deliveries",
        &format!("/api/repositories/acme/web/webhooks/{notified_hook}/deliveries"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        history["deliveries"][0]["history"][0].is_object(),
        "{history}"
    );
    let (status, _) = call(
        &h,
        c,
        "post",
        "/api/notifications/{id}/redeliver",
        &format!("/api/notifications/{notification}/redeliver"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Accounts: who the caller is (by token and by session), users, tokens.
    let (status, me) = call(&h, c, "get", "/api/me", "/api/me", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(me["token"].is_object(), "{me}");
    let user = store
        .user_by_name("reader")
        .await
        .expect("query")
        .expect("reader");
    let session = format!("session-{}", uuid::Uuid::new_v4().simple());
    store
        .create_session(
            &slipway_server::hash_token(&session),
            user.id,
            "csrf-value",
            slipway_store::now_millis() + 60_000,
        )
        .await
        .expect("session");
    let by_session = Request::get("/api/me")
        .header("cookie", format!("slipway_session={session}"))
        .body(Body::empty())
        .expect("request");
    let (status, me) = send_as_is(&h, by_session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(me["token"].is_null(), "{me}");
    checker.answer("get", "/api/me", status, &me);
    let (status, _) = call(&h, c, "get", "/api/users", "/api/users", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &h,
        c,
        "post",
        "/api/users",
        "/api/users",
        Some(
            json!({"name": "newcomer", "password": "a long enough password", "global_role": null}),
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(
        &h,
        c,
        "patch",
        "/api/users/{name}",
        "/api/users/newcomer",
        Some(json!({"global_role": "write", "disabled": false})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &h,
        c,
        "post",
        "/api/tokens",
        "/api/tokens",
        Some(json!({"name": "laptop", "scope": "write", "repository": "acme/web", "expires_in_days": 30})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(&h, c, "get", "/api/tokens", "/api/tokens", None, None).await;
    assert_eq!(status, StatusCode::OK);

    // Errors share one shape, whatever refused the request.
    let missing = uuid::Uuid::now_v7();
    for (method, path, uri, token, expected) in [
        (
            "get",
            detail,
            format!("/api/builds/{missing}"),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "get",
            "/api/builds",
            "/api/builds?cursor=nonsense".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "get",
            "/api/me",
            "/api/me".to_owned(),
            Some("slwa_not_a_token"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "post",
            cancel,
            format!("/api/builds/{build}/cancel"),
            Some(reader.as_str()),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, answer) = call(&h, c, method, path, &uri, None, token).await;
        assert_eq!(status, expected, "{uri}: {answer}");
    }
    let (status, answer) = send(
        &h,
        Request::delete("/api/builds")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    checker.assert_valid(
        &json!({"$ref": "#/components/schemas/Error"}),
        &answer,
        "a 405",
    );

    let unchecked: Vec<_> = checker
        .documented()
        .difference(&checker.checked.borrow())
        .cloned()
        .collect();
    assert!(
        unchecked.is_empty(),
        "documented answers no case here checks: {unchecked:#?}"
    );
}
