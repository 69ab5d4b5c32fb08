//! The HTTP edge: forge webhooks under `/hooks`, the JSON API under `/api`, and `/healthz`.
//!
//! **Invariants:**
//! - A webhook is verified over its raw, size-bounded body before any parsing.
//! - A 2xx to a forge means the delivery and every build it planned are committed.
//! - Errors reach clients as one JSON shape; internal details are logged, not sent.

mod api;
mod deliveries;
mod error;
mod hooks;
mod reconcile;
mod triggers;
// The page handlers that use these building blocks come later; until then they are only
// reached from their tests.
#[allow(dead_code)]
mod web;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use slipway_core::Secret;
use slipway_store::Store;

pub use api::rfc3339;
pub use error::ApiError;
pub use hooks::MAX_CONCURRENT_HOOKS;
pub use reconcile::reconcile;
pub use triggers::{RateLimiter, RefResolver, RemoteRefs, hash_token};

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
}

/// The whole application's routes; tests drive this router directly.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/api/workers", get(api::workers))
        .route("/hooks/{owner}/{name}", post(hooks::receive))
        .route("/api/builds/{id}", get(api::build))
        .route("/api/builds/{id}/log", get(api::build_log))
        .route("/api/builds/{id}/cancel", post(api::cancel))
        .route("/api/builds/{id}/retry", post(api::retry))
        .route(
            "/api/repositories/{owner}/{name}/deliveries",
            get(deliveries::list),
        )
        .route("/api/deliveries/{id}", get(deliveries::detail))
        .route(
            "/api/deliveries/{id}/redeliver",
            post(deliveries::redeliver),
        )
        .route(
            "/api/repositories/{owner}/{name}/triggers",
            get(triggers::list),
        )
        .route("/api/trigger/{token}", post(triggers::trigger))
        .route("/api/trigger/{token}/", post(triggers::trigger))
        .fallback(api::not_found)
        .with_state(state)
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
