//! The dashboard's route table: every page and form once, with who may use it. The router is
//! built from this table, and the authorisation test (`tests/authz.rs`) walks it with every
//! kind of caller, so a new page or form cannot be left out of either.
//!
//! How the dashboard refuses: a visitor who is not signed in is sent to the sign-in page
//! (`303 See Other`, `Location: /login`), for pages and forms alike (a form post without a
//! session carries no CSRF token either); a signed-in user without the role gets a `403` page.
//! Badges answer `404` instead, so that a closed repository's existence is not revealed to the
//! forges and pages that embed them.

use axum::routing::{MethodRouter, get, post};
use slipway_core::Role;

use super::{pages, session};
use crate::AppState;

/// Who may use a dashboard route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAccess {
    /// Anyone: the sign-in page and form, the stylesheet and the script.
    Public,
    /// Anyone signed in: signing out.
    SignedIn,
    /// A list of what the caller may read (the overview): every signed-in user gets one,
    /// perhaps empty; the anonymous only while some repository is open to them, and are sent to
    /// sign in otherwise.
    Readable,
    /// This role on the repository the path names (directly, or through a build, a delivery, a
    /// notification or a webhook of it).
    Role(Role),
    /// This role on the repository, with every refusal answered `404` (badges).
    HiddenRole(Role),
}

/// One dashboard route: a page (`get`) or a form (`post`, always with the session's CSRF
/// token, or for signing in the login form's own).
#[derive(Debug, Clone, Copy)]
pub struct PageRoute {
    pub method: &'static str,
    pub path: &'static str,
    pub access: PageAccess,
}

struct Route {
    doc: PageRoute,
    handler: MethodRouter<AppState>,
}

macro_rules! page {
    ($method:ident $path:literal, $access:expr, $handler:expr) => {
        Route {
            doc: PageRoute {
                method: stringify!($method),
                path: $path,
                access: $access,
            },
            handler: $method($handler),
        }
    };
}

fn table() -> Vec<Route> {
    use PageAccess::{HiddenRole, Public, Readable, SignedIn};
    let role = PageAccess::Role;
    vec![
        page!(get "/", Readable, pages::overview),
        page!(get "/login", Public, session::login_page),
        page!(post "/login", Public, session::login),
        page!(post "/logout", SignedIn, session::logout),
        page!(get "/repos/{owner}/{name}", role(Role::Read), pages::repository),
        page!(get "/repos/{owner}/{name}/deliveries", role(Role::Read), pages::deliveries),
        page!(post "/repos/{owner}/{name}/build", role(Role::Write), pages::build_now),
        page!(get "/repos/{owner}/{name}/webhooks/{id}", role(Role::Admin), pages::outgoing_hook),
        page!(get "/deliveries/{id}", role(Role::Read), pages::delivery),
        page!(post "/deliveries/{id}/redeliver", role(Role::Write), pages::redeliver),
        page!(post "/notifications/{id}/redeliver", role(Role::Admin), pages::redeliver_notification),
        page!(get "/builds/{id}", role(Role::Read), pages::build),
        page!(post "/builds/{id}/cancel", role(Role::Write), pages::cancel),
        page!(post "/builds/{id}/retry", role(Role::Write), pages::retry),
        page!(get "/badge/{owner}/{file}", HiddenRole(Role::Read), pages::badge),
        page!(get "/assets/{file}", Public, pages::asset),
    ]
}

/// The dashboard's routes, built from the table. Two methods on one path share a route.
pub fn router() -> axum::Router<AppState> {
    let mut routes: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for route in table() {
        match routes.iter_mut().find(|(path, _)| *path == route.doc.path) {
            Some((_, handler)) => *handler = std::mem::take(handler).merge(route.handler),
            None => routes.push((route.doc.path, route.handler)),
        }
    }
    routes
        .into_iter()
        .fold(axum::Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
}

/// Every dashboard route.
pub fn docs() -> Vec<PageRoute> {
    table().into_iter().map(|route| route.doc).collect()
}
