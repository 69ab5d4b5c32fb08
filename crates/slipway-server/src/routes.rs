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
}

struct Route {
    doc: RouteDoc,
    handler: MethodRouter<AppState>,
}

macro_rules! route {
    ($method:ident $path:literal, $tag:literal, $summary:literal, access = $access:literal,
     $(query = [$(($q:literal, $qd:literal)),*],)? $(request = $request:literal,)?
     success = ($status:literal $(, $schema:literal)?), $handler:expr) => {
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
            access = "signature", success = (202, "DeliveryAnswer"), hooks::receive),
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
        route!(post "/api/builds/{id}/cancel", "builds", "Cancel a queued or running build", access = "write",
            success = (200, "BuildStatusChange"), api::cancel),
        route!(post "/api/builds/{id}/retry", "builds", "Queue a new build repeating a finished one", access = "write",
            success = (202, "Build"), api::retry),
        route!(get "/api/repositories", "repositories", "Repositories the caller may read", access = "read",
            success = (200, "RepositoryList"), repos::list),
        route!(post "/api/repositories", "repositories", "Create a repository managed through the API", access = "global admin",
            request = "RepositoryInput", success = (201, "Repository"), repos::create),
        route!(get "/api/repositories/{owner}/{name}", "repositories", "A repository's settings (secrets only as set or not)",
            access = "read", success = (200, "Repository"), repos::show),
        route!(patch "/api/repositories/{owner}/{name}", "repositories", "Change settings or secrets; enabled: false disables",
            access = "admin", request = "RepositoryInput", success = (200, "Repository"), repos::update),
        route!(delete "/api/repositories/{owner}/{name}", "repositories", "Delete a repository and its history",
            access = "owner", success = (204), repos::delete),
        route!(put "/api/repositories/{owner}/{name}/grants/{user}", "repositories", "Give a user a role on the repository (null removes it)",
            access = "admin", request = "Grant", success = (200, "Grant"), repos::grant),
        route!(post "/api/repositories/{owner}/{name}/builds", "builds", "Build a ref now (a trigger's body)",
            access = "write", request = "TriggerBody", success = (202, "TriggerAnswer"), triggers::build_now),
        route!(get "/api/repositories/{owner}/{name}/deliveries", "webhooks", "The repository's webhook deliveries, newest first",
            access = "read", query = [("limit", "1 to 100"), ("before", "a delivery id: the page after it")],
            success = (200, "DeliveryList"), deliveries::list),
        route!(get "/api/deliveries/{id}", "webhooks", "A delivery: verification, per-rule decisions, the builds it created",
            access = "read", success = (200, "Delivery"), deliveries::detail),
        route!(post "/api/deliveries/{id}/redeliver", "webhooks", "Plan a stored delivery again", access = "write",
            success = (202, "Delivery"), deliveries::redeliver),
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
        let success_body = match (
            doc.success.1,
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
        if !success_body.is_null() {
            success["content"] = success_body;
        }
        let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let mut responses = Map::new();
        responses.insert(doc.success.0.to_string(), success);
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
                "required": true,
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

/// The shapes of request and answer bodies.
fn schemas() -> Value {
    let string = json!({"type": "string"});
    let nullable_string = json!({"type": ["string", "null"]});
    let time = json!({"type": ["string", "null"], "format": "date-time"});
    let role = json!({"type": "string", "enum": ["read", "write", "admin", "owner"]});
    let status = json!({"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled", "skipped"]});
    let object = |properties: Value, required: &[&str]| json!({"type": "object", "properties": properties, "required": required});
    let list_of = |key: &str, item: &str| json!({"type": "object", "properties": {key: {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}}}});
    let build = object(
        json!({
            "id": string, "repository": string, "ref": string, "commit": string, "image": string,
            "tags": {"type": "array", "items": string}, "dockerfile": string, "context": string,
            "status": status, "error": nullable_string, "digest": nullable_string,
            "attempts": {"type": "integer"}, "waiting": nullable_string,
            "trigger": {"type": "string", "enum": ["push", "redelivery", "trigger", "retry", "manual", "reconciler"]},
            "retry_of": nullable_string, "delivery": nullable_string,
            "queued_at": time, "started_at": time, "finished_at": time, "links": {"type": "object"},
        }),
        &["id", "repository", "ref", "commit", "status", "queued_at"],
    );
    let mut detail = build.clone();
    detail["properties"]["timeline"] = json!({"type": "array", "items": object(
        json!({"state": string, "at": time, "duration_ms": {"type": ["integer", "null"]}, "attempt": {"type": ["integer", "null"]}, "detail": nullable_string}),
        &["state", "at"],
    )});
    detail["properties"]["attempt_history"] = json!({"type": "array", "items": {"type": "object"}});
    let repository_settings = json!({
        "name": string, "provider": {"type": "string", "enum": ["github", "bitbucket", "bitbucket-server", "gitlab", "gitea"]},
        "git_url": string, "image": string, "rules": {"type": "array", "items": {"type": "object"}},
        "anonymous_read": {"type": "boolean"}, "allow_unsigned_webhooks": {"type": "boolean"},
        "allow_legacy_sha1": {"type": "boolean"}, "supersede_running_builds": {"type": "boolean"},
        "build_timeout": string, "max_concurrent_builds": {"type": "integer"},
        "memory_limit": nullable_string, "cpu_limit": {"type": ["number", "null"]}, "max_context_size": string,
        "forge_repository": nullable_string, "git_username": nullable_string, "enabled": {"type": "boolean"},
    });
    let mut input = repository_settings.clone();
    input["webhook_secret"] =
        json!({"type": ["string", "null"], "writeOnly": true, "minLength": 16});
    input["git_password"] = json!({"type": ["string", "null"], "writeOnly": true});
    let mut repository = repository_settings;
    repository["managed_by"] = json!({"type": "string", "enum": ["config", "api"]});
    repository["secrets"] =
        json!({"type": "object", "description": "whether each secret is set; never its value"});
    repository["webhook_url"] = string.clone();
    repository["your_role"] = json!({"type": ["string", "null"]});
    json!({
        "Error": object(json!({"error": object(json!({"code": string, "message": string}), &["code", "message"])}), &["error"]),
        "Health": {"type": "object"},
        "Workers": {"type": "object"},
        "Build": build,
        "BuildDetail": detail,
        "BuildList": {"type": "object", "properties": {
            "builds": {"type": "array", "items": {"$ref": "#/components/schemas/Build"}},
            "next_cursor": nullable_string,
        }},
        "BuildStatusChange": object(json!({"id": string, "status": string}), &["id", "status"]),
        "Repository": object(repository, &["name", "provider", "git_url", "image"]),
        "RepositoryInput": object(input, &["name", "provider", "git_url", "image"]),
        "RepositoryList": list_of("repositories", "Repository"),
        "Grant": object(json!({"role": {"type": ["string", "null"], "enum": ["read", "write", "admin", "owner", null]}}), &["role"]),
        "Delivery": {"type": "object"},
        "DeliveryAnswer": {"type": "object"},
        "DeliveryList": {"type": "object"},
        "TriggerBody": {"type": "object", "description": "Docker Hub's trigger bodies: {\"build\": true}, {\"docker_tag\": \"latest\"}, {\"source_type\": \"Branch\", \"source_name\": \"main\", \"commit\": \"…\"}"},
        "TriggerAnswer": {"type": "array", "items": {"type": "object"}},
        "TriggerList": {"type": "object"},
        "NewTrigger": object(json!({"name": string}), &["name"]),
        "TriggerUrl": object(json!({"name": string, "url": string}), &["name", "url"]),
        "Me": {"type": "object"},
        "Hook": object(json!({"id": string, "url": string, "events": {"type": "array", "items": string}, "secret": {"type": "string", "description": "always \"set\""}, "created_at": time}), &["id", "url", "events"]),
        "HookList": list_of("webhooks", "Hook"),
        "NewHook": object(json!({"url": string, "events": {"type": "array", "items": {"type": "string", "enum": ["build_queued", "build_started", "build_succeeded", "build_failed", "build_cancelled", "image_pushed"]}}, "secret": {"type": "string", "writeOnly": true, "minLength": 16}}), &["url", "events", "secret"]),
        "HookDeliveries": {"type": "object"},
        "Redelivery": object(json!({"id": string, "redelivery_of": string, "state": string}), &["id"]),
        "User": object(json!({"name": string, "global_role": {"type": ["string", "null"]}, "disabled": {"type": "boolean"}, "created_at": time}), &["name"]),
        "UserList": list_of("users", "User"),
        "NewUser": object(json!({"name": string, "password": {"type": "string", "writeOnly": true, "minLength": users::MIN_PASSWORD_LENGTH}, "global_role": role}), &["name", "password"]),
        "UserChange": object(json!({"password": {"type": "string", "writeOnly": true}, "current_password": {"type": "string", "writeOnly": true, "description": "needed to change your own password"}, "global_role": {"type": ["string", "null"]}, "disabled": {"type": "boolean"}}), &[]),
        "Token": object(json!({"id": string, "name": string, "scope": role, "repository": nullable_string, "token": {"type": "string", "description": "only in the answer to its creation"}, "created_at": time, "last_used_at": time, "expires_at": time, "revoked_at": time}), &["id", "name", "scope"]),
        "TokenList": list_of("tokens", "Token"),
        "NewToken": object(json!({"name": string, "scope": role, "repository": nullable_string, "expires_in_days": {"type": ["integer", "null"]}}), &["name"]),
    })
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
            for name in doc.request.into_iter().chain(doc.success.1) {
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
