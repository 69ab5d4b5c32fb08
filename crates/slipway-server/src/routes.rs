//! The route table: every HTTP endpoint once, with what the OpenAPI document says about it.
//! The router is built from this table, so the document cannot leave an endpoint out.

use axum::Router;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde_json::{Map, Value, json};

use crate::{
    AppState, api, deliveries, hooks, logstream, metrics, repos, triggers, users, webhooks,
};

/// What the OpenAPI document says about one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Who may call it: "public", "signature", "token in the URL", "signed in", or a role on
    /// the repository ("read", "write", "admin", "owner"), or "global admin".
    pub access: &'static str,
    /// Query parameters: (name, description).
    pub query: &'static [(&'static str, &'static str)],
    /// The request body's schema, by component name.
    pub request: Option<&'static str>,
    /// The success status and its body's schema, by component name (None: no body, or text).
    pub success: (u16, Option<&'static str>),
    /// Other success statuses the endpoint answers, each with its body's schema.
    pub also: &'static [(u16, Option<&'static str>)],
}

struct Route {
    doc: RouteDoc,
    handler: MethodRouter<AppState>,
}

macro_rules! route {
    ($method:ident $path:literal, $tag:literal, $summary:literal, access = $access:literal,
     $(query = [$(($q:literal, $qd:literal)),*],)? $(request = $request:literal,)?
     success = ($status:literal $(, $schema:literal)? $(; $($also:literal => $also_schema:literal),*)?),
     $handler:expr) => {
        Route {
            doc: RouteDoc {
                method: stringify!($method),
                path: $path,
                tag: $tag,
                summary: $summary,
                access: $access,
                query: &[$($(($q, $qd)),*)?],
                request: None $(.or(Some($request)))?,
                success: ($status, None $(.or(Some($schema)))?),
                also: &[$($(($also, Some($also_schema))),*)?],
            },
            handler: $method($handler),
        }
    };
}

fn table() -> Vec<Route> {
    vec![
        route!(get "/healthz", "operations", "Liveness and what is degraded", access = "public",
            success = (200, "Health"), api::healthz),
        route!(get "/metrics", "operations", "Prometheus metrics: deliveries, builds, queue, workers (no user data in labels)",
            access = "public", success = (200), metrics::metrics),
        route!(get "/api/workers", "operations", "Worker processes heard from recently", access = "signed in",
            success = (200, "Workers"), api::workers),
        route!(post "/hooks/{owner}/{name}", "webhooks", "Receive a forge's webhook (GitHub, Bitbucket, GitLab, Gitea/Forgejo)",
            access = "signature", success = (202, "DeliveryAnswer"; 200 => "DeliveryAnswer"), hooks::receive),
        route!(get "/api/builds", "builds", "List builds, newest first", access = "read",
            query = [("repository", "owner/name"), ("status", "queued, running, succeeded, failed, cancelled or skipped"),
                     ("ref", "a full ref, e.g. refs/heads/main"), ("since", "RFC 3339 time: builds queued at or after it"),
                     ("limit", "1 to 200 (default 50)"), ("cursor", "next_cursor of the previous page")],
            success = (200, "BuildList"), api::list_builds),
        route!(get "/api/builds/{id}", "builds", "A build with its state timeline and attempts", access = "read",
            success = (200, "BuildDetail"), api::build),
        route!(get "/api/builds/{id}/log", "builds", "The build log as text; Range: bytes=N- or ?offset=N for the rest, bytes=-N for the tail",
            access = "read", query = [("offset", "the first byte to send")], success = (200), api::build_log),
        route!(get "/api/builds/{id}/log/stream", "builds", "The build log live, as Server-Sent Events (log, status, end)",
            access = "read", query = [("offset", "the first byte to send (Last-Event-ID wins)")], success = (200), logstream::stream),
        route!(post "/api/builds/{id}/cancel", "builds", "Cancel a queued build (200) or ask a running one to stop (202)", access = "write",
            success = (200, "BuildStatusChange"; 202 => "BuildStatusChange"), api::cancel),
        route!(post "/api/builds/{id}/retry", "builds", "Queue a new build repeating a finished one", access = "write",
            success = (202, "Build"), api::retry),
        route!(get "/api/repositories", "repositories", "Repositories the caller may read", access = "read",
            success = (200, "RepositoryList"), repos::list),
        route!(post "/api/repositories", "repositories", "Create a repository managed through the API", access = "global admin",
            request = "RepositoryInput", success = (201, "Repository"), repos::create),
        route!(get "/api/repositories/{owner}/{name}", "repositories", "A repository's settings (secrets only as set or not)",
            access = "read", success = (200, "Repository"), repos::show),
        route!(patch "/api/repositories/{owner}/{name}", "repositories", "Change settings or secrets; enabled: false disables",
            access = "admin", request = "RepositoryChange", success = (200, "Repository"), repos::update),
        route!(delete "/api/repositories/{owner}/{name}", "repositories", "Delete a repository and its history",
            access = "owner", success = (204), repos::delete),
        route!(put "/api/repositories/{owner}/{name}/grants/{user}", "repositories", "Give a user a role on the repository (null removes it)",
            access = "admin", request = "Grant", success = (200, "RepositoryGrant"), repos::grant),
        route!(post "/api/repositories/{owner}/{name}/builds", "builds", "Build a ref now (a trigger's body)",
            access = "write", request = "TriggerBody", success = (202, "TriggerAnswer"), triggers::build_now),
        route!(get "/api/repositories/{owner}/{name}/deliveries", "webhooks", "The repository's webhook deliveries, newest first",
            access = "read", query = [("limit", "1 to 100"), ("before", "a delivery id: the page after it")],
            success = (200, "DeliveryList"), deliveries::list),
        route!(get "/api/deliveries/{id}", "webhooks", "A delivery: verification, per-rule decisions, the builds it created",
            access = "read", success = (200, "DeliveryDetail"), deliveries::detail),
        route!(post "/api/deliveries/{id}/redeliver", "webhooks", "Plan a stored delivery again (a replayed ping answers 200)", access = "write",
            success = (202, "DeliveryAnswer"; 200 => "DeliveryAnswer"), deliveries::redeliver),
        route!(get "/api/repositories/{owner}/{name}/triggers", "triggers", "Trigger URLs (never their tokens) and their recent requests",
            access = "admin", success = (200, "TriggerList"), triggers::list),
        route!(post "/api/repositories/{owner}/{name}/triggers", "triggers", "Create a trigger URL (shown once)",
            access = "admin", request = "NewTrigger", success = (201, "TriggerUrl"), triggers::create),
        route!(post "/api/repositories/{owner}/{name}/triggers/{trigger}/regenerate", "triggers", "A new URL for a trigger; the old one stops working",
            access = "admin", success = (200, "TriggerUrl"), triggers::regenerate),
        route!(delete "/api/repositories/{owner}/{name}/triggers/{trigger}", "triggers", "Revoke a trigger",
            access = "admin", success = (204), triggers::revoke),
        route!(post "/api/trigger/{token}", "triggers", "Start builds (Docker Hub compatible trigger URL)",
            access = "token in the URL", request = "TriggerBody", success = (202, "TriggerAnswer"), triggers::trigger),
        route!(post "/api/trigger/{token}/", "triggers", "The same, with Docker Hub's trailing slash",
            access = "token in the URL", request = "TriggerBody", success = (202, "TriggerAnswer"), triggers::trigger),
        route!(get "/api/repositories/{owner}/{name}/webhooks", "webhooks", "Outgoing webhooks (never their secrets)",
            access = "admin", success = (200, "HookList"), webhooks::list),
        route!(post "/api/repositories/{owner}/{name}/webhooks", "webhooks", "Add an outgoing webhook: a URL, its events and a signing secret",
            access = "admin", request = "NewHook", success = (201, "Hook"), webhooks::create),
        route!(delete "/api/repositories/{owner}/{name}/webhooks/{id}", "webhooks", "Remove an outgoing webhook and its history",
            access = "admin", success = (204), webhooks::delete),
        route!(get "/api/repositories/{owner}/{name}/webhooks/{id}/deliveries", "webhooks", "An outgoing webhook's recent deliveries with every attempt",
            access = "admin", success = (200, "HookDeliveries"), webhooks::deliveries),
        route!(post "/api/notifications/{id}/redeliver", "webhooks", "Send a webhook delivery or commit status again",
            access = "admin", success = (202, "Redelivery"), webhooks::redeliver),
        route!(get "/api/me", "accounts", "Who the caller is and their roles", access = "signed in",
            success = (200, "Me"), users::me),
        route!(get "/api/users", "accounts", "Users", access = "global admin", success = (200, "UserList"), users::list),
        route!(post "/api/users", "accounts", "Create a user", access = "global admin",
            request = "NewUser", success = (201, "User"), users::create),
        route!(patch "/api/users/{name}", "accounts", "Change a password (own, or as global admin), a global role, or disable a user",
            access = "signed in", request = "UserChange", success = (200, "User"), users::update),
        route!(get "/api/tokens", "accounts", "The caller's API tokens (never their values)", access = "signed in",
            success = (200, "TokenList"), users::tokens),
        route!(post "/api/tokens", "accounts", "Create an API token (shown once)", access = "signed in",
            request = "NewToken", success = (201, "Token"), users::create_token),
        route!(delete "/api/tokens/{id}", "accounts", "Revoke one of the caller's tokens", access = "signed in",
            success = (204), users::revoke_token),
    ]
}

/// The API's routes, built from the table.
pub fn api_router() -> Router<AppState> {
    let mut router = Router::new();
    for route in table() {
        router = router.route(route.doc.path, route.handler);
    }
    router
}

/// Every documented endpoint.
pub fn docs() -> Vec<RouteDoc> {
    table().into_iter().map(|route| route.doc).collect()
}

/// The OpenAPI 3.1 document for the table.
pub fn openapi(public_url: &str) -> Value {
    let mut paths = Map::new();
    for doc in docs() {
        let mut parameters: Vec<Value> = doc
            .path
            .split('/')
            .filter_map(|part| part.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(doc.query.iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
        }));
        let success = |schema: Option<&str>| {
            let body = match (
                schema,
                doc.path.ends_with("/log"),
                doc.path.ends_with("/stream"),
            ) {
                (Some(schema), ..) => {
                    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}})
                }
                (None, true, _) => json!({"text/plain": {"schema": {"type": "string"}}}),
                (None, _, true) => json!({"text/event-stream": {"schema": {"type": "string"}}}),
                (None, false, false) => Value::Null,
            };
            let mut success = json!({"description": "success"});
            if !body.is_null() {
                success["content"] = body;
            }
            success
        };
        let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let mut responses = Map::new();
        for (status, schema) in std::iter::once(&doc.success).chain(doc.also) {
            responses.insert(status.to_string(), success(*schema));
        }
        responses.insert("default".to_owned(), error);
        let mut operation = json!({
            "tags": [doc.tag],
            "summary": doc.summary,
            "description": format!("Access: {}.", doc.access),
            "operationId": operation_id(doc.method, doc.path),
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(schema) = doc.request {
            operation["requestBody"] = json!({
                // A trigger's body may be empty (build every rule), as on Docker Hub.
                "required": schema != "TriggerBody",
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
            });
        }
        operation["security"] = match doc.access {
            "public" | "signature" | "token in the URL" => json!([]),
            _ => json!([{"bearer": []}, {"session": []}]),
        };
        let entry = paths
            .entry(doc.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(doc.method.to_owned(), operation);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Slipway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Automated container builds from forge pushes. Roles: read < write < admin < owner, per repository or global. Errors share one shape: {\"error\": {\"code\", \"message\"}}.",
        },
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (slwa_…) from POST /api/tokens or `slipway token create`."},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE, "description": "The dashboard's session; changes also need the X-CSRF-Token header."},
            },
            "schemas": schemas(),
        },
    })
}

fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != "api")
        .map(|part| part.trim_start_matches('{').trim_end_matches('}'))
        .collect();
    let slash = if path.ends_with('/') { "_slash" } else { "" };
    format!("{method}_{}{slash}", words.join("_"))
}

/// The shapes of request and answer bodies. Objects whose keys are fixed say so with
/// `additionalProperties: false`, and answers require every key they always carry (perhaps as
/// `null`), so that the router tests, which validate real answers against these schemas, fail
/// when an answer gains, loses or retypes a key the document does not say.
fn schemas() -> Value {
    let string = json!({"type": "string"});
    let nullable_string = json!({"type": ["string", "null"]});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let integer = json!({"type": "integer"});
    let nullable_integer = json!({"type": ["integer", "null"]});
    let boolean = json!({"type": "boolean"});
    let time = json!({"type": "string", "format": "date-time"});
    let nullable_time = json!({"type": ["string", "null"], "format": "date-time"});
    let role = json!({"type": "string", "enum": ["read", "write", "admin", "owner"]});
    let nullable_role =
        json!({"type": ["string", "null"], "enum": ["read", "write", "admin", "owner", null]});
    let status = json!({"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled", "skipped"]});
    let provider = json!({"type": "string", "enum": ["github", "bitbucket", "bitbucket-server", "gitlab", "gitea"]});
    let hook_event = json!({"type": "string", "enum": ["build_queued", "build_started", "build_succeeded", "build_failed", "build_cancelled", "image_pushed"]});
    let write_only = |description: &str| json!({"type": ["string", "null"], "writeOnly": true, "description": description});
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let array_of = |name: &str| json!({"type": "array", "items": reference(name)});
    // A closed object: only these keys. `required` names the keys it always has.
    let object = |properties: Value, required: &[&str]| json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false});
    // A closed object that always has all of its keys (an answer).
    let answer = |properties: Value| {
        let required: Vec<String> = properties
            .as_object()
            .map(|keys| keys.keys().cloned().collect())
            .unwrap_or_default();
        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
    };

    let build_properties = json!({
        "id": string, "repository": string, "ref": string, "commit": string, "image": string,
        "tags": strings, "dockerfile": string, "context": string,
        "status": status, "error": nullable_string, "digest": nullable_string,
        "attempts": integer,
        "waiting": {"type": ["string", "null"], "description": "why a queued build has not started"},
        "trigger": {"type": "string", "enum": ["push", "redelivery", "trigger", "retry", "manual", "reconciler"]},
        "retry_of": nullable_string, "delivery": nullable_string,
        "queued_at": time, "started_at": nullable_time, "finished_at": nullable_time,
        "links": answer(json!({"self": string, "log": string, "log_stream": string, "dashboard": string})),
    });
    let mut detail_properties = build_properties.clone();
    detail_properties["timeline"] = json!({"type": "array", "items": answer(json!({
        "state": string, "at": time, "duration_ms": nullable_integer, "attempt": nullable_integer,
        "detail": nullable_string,
    }))});
    detail_properties["attempt_history"] = json!({"type": "array", "items": answer(json!({
        "attempt": integer, "worker": string, "started_at": time, "finished_at": nullable_time,
        "outcome": nullable_string, "error": nullable_string,
    }))});
    detail_properties["notifications"] = json!({
        "type": "array", "items": reference("Notification"),
        "description": "commit statuses and webhook requests; error texts and history for admins only",
    });
    detail_properties["your_role"] = nullable_role.clone();

    let settings = json!({
        "name": string, "provider": provider, "git_url": string, "image": string,
        "rules": array_of("BuildRule"),
        "anonymous_read": boolean, "allow_unsigned_webhooks": boolean,
        "allow_legacy_sha1": boolean, "supersede_running_builds": boolean,
        "build_timeout": string, "max_concurrent_builds": integer,
        "memory_limit": nullable_string, "cpu_limit": {"type": ["number", "null"]},
        "max_context_size": string, "forge_repository": nullable_string,
        "git_username": nullable_string, "enabled": boolean,
        "report_status": boolean, "status_api_url": nullable_string,
        "status_repository": nullable_string,
    });
    let mut input = settings.clone();
    input["webhook_secret"] = json!({"type": ["string", "null"], "writeOnly": true, "minLength": 16, "description": "null removes it; absent keeps it"});
    input["git_password"] = write_only("null removes it; absent keeps it");
    input["status_token"] =
        write_only("the forge token commit statuses are posted with; null removes it");
    // What a client read may be sent back as it is: these keys are accepted and ignored.
    for key in [
        "managed_by",
        "secrets",
        "webhook_url",
        "your_role",
        "created_at",
        "updated_at",
        "links",
        "grants",
    ] {
        input[key] = json!({"description": "read-only: accepted and ignored"});
    }
    let secret_state =
        json!({"type": "string", "enum": ["set", "not set", "in the configuration file"]});
    let mut repository = settings;
    repository["managed_by"] = json!({"type": "string", "enum": ["config", "api"]});
    repository["secrets"] = answer(json!({
        "webhook_secret": secret_state, "git_password": secret_state, "status_token": secret_state,
    }));
    repository["webhook_url"] = string.clone();
    repository["your_role"] = nullable_role.clone();
    repository["created_at"] = time.clone();
    repository["updated_at"] = time.clone();
    repository["links"] = answer(json!({
        "self": string, "builds": string, "deliveries": string, "dashboard": string, "badge": string,
    }));
    let mut repository = answer(repository);
    // Only admins of the repository see who holds which role on it.
    repository["properties"]["grants"] =
        json!({"type": "array", "items": answer(json!({"user": string, "role": role}))});

    let delivery_properties = json!({
        "id": string, "repository": string, "provider": string, "event": string,
        "forge_delivery_id": nullable_string, "source_address": string, "received_at": time,
        "status_code": integer, "verification": string, "outcome": string,
        "builds": array_of("DeliveryBuild"), "body_kept": boolean, "redelivery_of": nullable_string,
        "links": answer(json!({"self": string, "redeliver": string})),
    });
    let mut delivery_detail = delivery_properties.clone();
    delivery_detail["builds_created"] = array_of("Build");
    delivery_detail["decisions"] =
        json!({"type": ["array", "null"], "items": reference("RuleDecision")});
    delivery_detail["headers"] = json!({"type": ["object", "null"], "additionalProperties": {"type": "string"}, "description": "the event and delivery headers kept for a redelivery"});

    let user = answer(
        json!({"name": string, "global_role": nullable_role, "disabled": boolean, "created_at": time}),
    );
    let token_properties = json!({
        "id": string, "name": string, "scope": role, "repository": nullable_string,
        "created_at": time, "last_used_at": nullable_time, "expires_at": nullable_time,
        "revoked_at": nullable_time,
    });
    let mut token = answer(token_properties);
    token["properties"]["token"] =
        json!({"type": "string", "description": "only in the answer to its creation"});
    token["properties"]["note"] =
        json!({"type": "string", "description": "only in the answer to its creation"});

    // One `json!` per schema: a single one for the whole table would exceed the macro's
    // recursion limit.
    let table: Vec<(&str, Value)> = vec![
        (
            "Error",
            answer(json!({"error": answer(json!({"code": string, "message": string}))})),
        ),
        (
            "Health",
            answer(json!({
                "status": {"type": "string", "enum": ["ok", "degraded"]},
                "database": {"type": "string", "enum": ["sqlite", "postgres"]},
                "worker": {
                    "description": "this process's own worker (slipway serve); null without one",
                    "anyOf": [object(json!({"healthy": boolean, "problem": string}), &["healthy"]), {"type": "null"}],
                },
                "workers": answer(json!({"seen": integer, "unhealthy": integer})),
            })),
        ),
        (
            "Workers",
            answer(json!({"workers": {"type": "array", "items": answer(json!({
                "id": string, "hostname": string, "slots": integer, "started_at": time,
                "last_seen_at": time, "healthy": boolean, "problem": nullable_string,
            }))}})),
        ),
        ("Build", answer(build_properties)),
        ("BuildDetail", answer(detail_properties)),
        (
            "BuildList",
            answer(json!({"builds": array_of("Build"), "next_cursor": nullable_string})),
        ),
        (
            "BuildStatusChange",
            answer(json!({
                "id": string,
                "status": {"type": "string", "enum": ["cancelled", "cancelling"], "description": "cancelled (200), or asked to stop while it runs (202)"},
            })),
        ),
        (
            "Notification",
            object(
                json!({
                    "id": string, "kind": {"type": "string", "enum": ["status", "webhook"]},
                    "event": string, "build": string,
                    "state": {"type": "string", "enum": ["pending", "delivered", "failed", "superseded"]},
                    "attempts": integer, "next_attempt_at": nullable_time,
                    "last_status_code": nullable_integer, "last_error": nullable_string,
                    "created_at": time, "finished_at": nullable_time, "redelivery_of": nullable_string,
                    "history": {"type": "array", "items": answer(json!({
                        "attempt": integer, "at": time, "status_code": nullable_integer,
                        "duration_ms": integer, "error": nullable_string, "response_excerpt": nullable_string,
                    }))},
                }),
                &[
                    "id",
                    "kind",
                    "event",
                    "build",
                    "state",
                    "attempts",
                    "next_attempt_at",
                    "last_status_code",
                    "last_error",
                    "created_at",
                    "finished_at",
                    "redelivery_of",
                ],
            ),
        ),
        (
            "BuildRule",
            object(
                json!({
                    "source_type": {"type": "string", "enum": ["branch", "tag"]},
                    "source": {"type": "string", "description": "a name, or /regex/ matched against the whole name"},
                    "tags": string, "dockerfile": string, "context": string, "autobuild": boolean,
                    "cache": boolean, "build_args": string_map, "target": nullable_string,
                    "labels": string_map, "paths": strings, "ignore_paths": strings,
                    "skip_message": strings, "sanitize_tags": boolean,
                }),
                &["source_type", "source"],
            ),
        ),
        ("Repository", repository),
        (
            "RepositoryInput",
            object(input.clone(), &["name", "provider", "git_url", "image"]),
        ),
        ("RepositoryChange", object(input, &[])),
        (
            "RepositoryList",
            answer(json!({"repositories": array_of("Repository")})),
        ),
        ("Grant", object(json!({"role": nullable_role}), &["role"])),
        (
            "RepositoryGrant",
            answer(json!({"repository": string, "user": string, "role": nullable_role})),
        ),
        (
            "DeliveryBuild",
            object(
                json!({
                    "id": string, "tags": strings, "ref": string, "commit": string,
                    "existing": {"type": "boolean", "description": "present (true) when the build existed already"},
                }),
                &["id", "tags", "ref", "commit"],
            ),
        ),
        (
            "DeliveryAnswer",
            object(
                json!({
                    "delivery": string, "builds": array_of("DeliveryBuild"),
                    "ignored": {"type": "string", "description": "why nothing was built"},
                    "pong": {"type": "boolean", "description": "the answer to a ping (200)"},
                }),
                &["delivery"],
            ),
        ),
        ("Delivery", answer(delivery_properties)),
        ("DeliveryDetail", answer(delivery_detail)),
        (
            "DeliveryList",
            answer(json!({
                "repository": answer(json!({
                    "name": string, "provider": provider, "enabled": boolean, "webhook_url": string,
                    "warnings": strings,
                })),
                "deliveries": array_of("Delivery"),
                "next": {"type": ["string", "null"], "description": "pass as before= for the next page"},
            })),
        ),
        (
            "RuleDecision",
            object(
                json!({
                    "outcome": {"type": "string", "enum": ["build", "skipped", "no_match", "error"]},
                    "rule": string, "plan": reference("BuildPlan"), "note": string, "reason": string,
                    "build_id": string, "created": boolean,
                }),
                &["outcome", "rule"],
            ),
        ),
        (
            "BuildPlan",
            answer(json!({
                "rule_index": integer,
            "git_ref": answer(json!({"kind": {"type": "string", "enum": ["branch", "tag"]}, "name": string})),
            "commit": string, "tags": strings,
                "dockerfile": string, "context": string, "before": nullable_string,
                "message_checked": boolean,
                "options": answer(json!({
                    "cache": boolean, "build_args": string_map, "target": nullable_string,
                    "labels": string_map, "paths": strings, "ignore_paths": strings,
                    "skip_message": strings, "commit_on_ref": boolean,
                })),
            })),
        ),
        (
            "TriggerBody",
            object(
                json!({
                    "build": {"type": ["boolean", "string"], "enum": [true, "true"]},
                    "docker_tag": string,
                    "source_type": {"type": "string", "description": "Branch or Tag (any case)"},
                    "source_name": string,
                    "commit": string,
                }),
                &[],
            ),
        ),
        (
            "TriggerAnswer",
            json!({"type": "array", "items": answer(json!({
                "source_type": {"type": "string", "enum": ["Branch", "Tag"]},
                "source_name": string, "evaluated_tag_name": string, "build_id": nullable_string,
                "msg": string,
            }))}),
        ),
        (
            "TriggerList",
            answer(json!({
                "repository": string,
                "triggers": {"type": "array", "items": answer(json!({
                    "name": string, "created_at": time, "revoked_at": nullable_time,
                    "last_used_at": nullable_time,
                    "requests": {"type": "array", "items": answer(json!({
                        "received_at": time, "source_address": string, "status_code": integer,
                        "body": string, "response": {"description": "the JSON answered"},
                    }))},
                }))},
            })),
        ),
        ("NewTrigger", object(json!({"name": string}), &["name"])),
        (
            "TriggerUrl",
            answer(json!({"name": string, "url": string, "note": string})),
        ),
        (
            "Me",
            answer(json!({
                "user": reference("User"),
                "authenticated_by": {"type": "string", "enum": ["token", "session"]},
                "token": {"anyOf": [reference("Token"), {"type": "null"}]},
                "repositories": {"type": "array", "items": answer(json!({"name": string, "role": role}))},
            })),
        ),
        (
            "Hook",
            answer(json!({
                "id": string, "url": string, "events": {"type": "array", "items": hook_event},
                "secret": {"const": "set", "description": "always \"set\": secrets are write-only"},
                "created_at": time, "links": answer(json!({"deliveries": string})),
            })),
        ),
        (
            "HookList",
            answer(json!({"repository": string, "webhooks": array_of("Hook")})),
        ),
        (
            "NewHook",
            object(
                json!({"url": string, "events": {"type": "array", "items": hook_event}, "secret": {"type": "string", "writeOnly": true, "minLength": 16}}),
                &["url", "events", "secret"],
            ),
        ),
        (
            "HookDeliveries",
            answer(json!({"webhook": reference("Hook"), "deliveries": array_of("Notification")})),
        ),
        (
            "Redelivery",
            answer(json!({"id": string, "redelivery_of": string, "state": {"const": "pending"}})),
        ),
        ("User", user),
        ("UserList", answer(json!({"users": array_of("User")}))),
        (
            "NewUser",
            object(
                json!({"name": string, "password": {"type": "string", "writeOnly": true, "minLength": users::MIN_PASSWORD_LENGTH}, "global_role": nullable_role}),
                &["name", "password"],
            ),
        ),
        (
            "UserChange",
            object(
                json!({
                    "password": {"type": "string", "writeOnly": true, "minLength": users::MIN_PASSWORD_LENGTH},
                    "current_password": {"type": "string", "writeOnly": true, "description": "needed to change your own password"},
                    "global_role": nullable_role, "disabled": boolean,
                }),
                &[],
            ),
        ),
        ("Token", token),
        ("TokenList", answer(json!({"tokens": array_of("Token")}))),
        (
            "NewToken",
            object(
                json!({
                    "name": {"type": "string", "minLength": 1, "maxLength": users::MAX_TOKEN_NAME},
                    "scope": role, "repository": nullable_string,
                    "expires_in_days": {"type": ["integer", "null"], "minimum": 0},
                }),
                &["name"],
            ),
        ),
    ];
    Value::Object(
        table
            .into_iter()
            .map(|(name, schema)| (name.to_owned(), schema))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_the_table_names_exists_and_operation_ids_are_unique() {
        let document = openapi("http://slipway.test");
        let schemas = &document["components"]["schemas"];
        let mut ids = std::collections::HashSet::new();
        for doc in docs() {
            let answers = std::iter::once(&doc.success).chain(doc.also);
            for name in doc
                .request
                .into_iter()
                .chain(answers.filter_map(|(_, s)| *s))
            {
                assert!(
                    schemas.get(name).is_some(),
                    "{} {} names schema {name}",
                    doc.method,
                    doc.path
                );
            }
            assert!(
                ids.insert(operation_id(doc.method, doc.path)),
                "{} {}",
                doc.method,
                doc.path
            );
        }
    }

    #[test]
    fn path_parameters_are_declared() {
        let document = openapi("http://slipway.test");
        let parameters = &document["paths"]["/api/builds/{id}/log"]["get"]["parameters"];
        assert_eq!(parameters[0]["name"], "id");
        assert_eq!(parameters[0]["in"], "path");
    }
}
