//! The HTTP edge: forge webhooks under `/hooks`, the JSON API under `/api`, and `/healthz`.
//!
//! **Invariants:**
//! - A webhook is verified over its raw, size-bounded body before any parsing.
//! - A 2xx to a forge means the delivery and every build it planned are committed.
//! - Errors reach clients as one JSON shape; internal details are logged, not sent.

mod api;
pub mod auth;
mod deliveries;
mod error;
mod hooks;
mod logstream;
mod metrics;
mod reconcile;
mod repos;
mod routes;
mod tokens;
mod triggers;
mod users;
mod web;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use slipway_core::Secret;
use slipway_store::Store;

pub use api::rfc3339;
pub use error::ApiError;
pub use hooks::MAX_CONCURRENT_HOOKS;
pub use reconcile::reconcile;
pub use routes::{RouteDoc, docs as route_docs};
pub use tokens::{RateLimiter, hash_token, new_token};
pub use triggers::{
    RefResolver, RemoteRefs, TRIGGER_BURST, TRIGGER_PER_MINUTE, check_trigger_name,
};
pub use users::{
    MAX_TOKEN_NAME, MIN_PASSWORD_LENGTH, check_password, check_token_name, check_user_name,
};
pub use web::routes::{PageAccess, PageRoute, docs as page_routes};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// Webhook secrets by repository name (`owner/name`), from configuration only.
    pub webhook_secrets: Arc<HashMap<String, Secret>>,
    /// The externally visible base URL, for links in answers.
    pub public_url: String,
    /// Resolves branch and tag heads for trigger requests.
    pub ref_resolver: Arc<dyn RefResolver>,
    pub trigger_limiter: Arc<RateLimiter>,
    /// Places for webhook requests handled at once (see [`MAX_CONCURRENT_HOOKS`]).
    pub hook_slots: Arc<tokio::sync::Semaphore>,
    /// The in-process worker's health, when this process runs one (`slipway serve`).
    pub worker_health: Option<Arc<slipway_core::health::Health>>,
    /// Login attempts, per client address and per user name.
    pub login_limiter: Arc<RateLimiter>,
    /// Which private addresses outgoing webhooks and commit-status APIs may reach.
    pub target_policy: slipway_notify::ssrf::TargetPolicy,
    /// Wakes this process's notification sender (a redelivery was queued).
    pub notifications_due: Arc<tokio::sync::Notify>,
}

/// Login attempts allowed in a burst per client address and per user name, and how many more
/// a minute after that.
pub const LOGIN_BURST: u32 = 5;
pub const LOGIN_PER_MINUTE: u32 = 5;

impl AppState {
    /// The state for a server with no webhook secrets from configuration and no local worker;
    /// callers fill in the rest.
    pub fn new(store: Store, public_url: &str, ref_resolver: Arc<dyn RefResolver>) -> Self {
        Self {
            store,
            webhook_secrets: Arc::default(),
            public_url: public_url.trim_end_matches('/').to_owned(),
            ref_resolver,
            trigger_limiter: Arc::new(RateLimiter::new(TRIGGER_BURST, TRIGGER_PER_MINUTE)),
            hook_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HOOKS)),
            worker_health: None,
            login_limiter: Arc::new(RateLimiter::new(LOGIN_BURST, LOGIN_PER_MINUTE)),
            target_policy: slipway_notify::ssrf::TargetPolicy::public_only(),
            notifications_due: Arc::default(),
        }
    }
}

/// The whole application's routes; tests drive this router directly.
pub fn app(state: AppState) -> Router {
    routes::api_router()
        .route("/api/openapi.json", get(openapi))
        .merge(dashboard_router())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
}

/// The dashboard's pages and forms (HTML), built from their own route table
/// ([`page_routes`]); the JSON API is described by the API's.
fn dashboard_router() -> Router<AppState> {
    web::routes::router()
}

/// `GET /api/openapi.json`: the API described from the route table the router is built from.
async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(routes::openapi(&state.public_url))
}

/// Only the webhook endpoint, answering as `/hooks` does but storing nothing: the baseline the
/// ingest benchmark (`scripts/bench`) compares `/hooks` with, so that its ratio shows what the
/// durable write costs. Never part of a served application.
#[doc(hidden)]
pub fn unrecorded_hooks_app(state: AppState) -> Router {
    Router::new()
        .route(
            "/hooks/{owner}/{name}",
            axum::routing::post(hooks::receive_unrecorded),
        )
        .with_state(state)
}

/// The OpenAPI document, for `slipway openapi`.
pub fn openapi_document(public_url: &str) -> serde_json::Value {
    routes::openapi(public_url)
}

/// Serves the application on `listener` until `shutdown` resolves, then finishes the requests
/// in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address is recorded for every webhook delivery.
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
