//! The dashboard over the real router and a real SQLite store: signing in (CSRF, rate limit),
//! pages per role, form posts and their CSRF tokens, badges and the security headers.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::*;
use slipway_core::Role;
use tower::ServiceExt;

/// A response's status, headers and text.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

async fn fetch(h: &Harness, request: Request<Body>) -> Page {
    let response = slipway_server::app(h.state.clone())
        .oneshot(request)
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Page {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn cookie_value(page: &Page, name: &str) -> Option<String> {
    page.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
        })
}

/// The hidden CSRF field's value in a page.
fn csrf_in(text: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = text.find(marker).expect("a CSRF field") + marker.len();
    text[start..].split('"').next().expect("value").to_owned()
}

async fn add_user(h: &Harness, name: &str, password: &str, role: Option<Role>) {
    let hash = slipway_server::auth::hash_password(password).expect("hash");
    h.state
        .store
        .create_user(name, &hash, role)
        .await
        .expect("create")
        .expect("new");
}

/// Signs in through the form and returns the session cookie.
async fn sign_in(h: &Harness, name: &str, password: &str) -> String {
    let form = fetch(
        h,
        Request::get("/login").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(form.status, StatusCode::OK);
    let login_csrf = cookie_value(&form, "slipway_login_csrf").expect("login CSRF cookie");
    let body = format!(
        "name={name}&password={password}&csrf_token={}",
        csrf_in(&form.text)
    );
    let answer = fetch(
        h,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("slipway_login_csrf={login_csrf}"))
            .body(Body::from(body))
            .expect("request"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let set = answer
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("slipway_session="))
        .expect("a session cookie")
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    cookie_value(&answer, "slipway_session").expect("session")
}

fn get_with(path: &str, session: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, format!("slipway_session={session}"))
        .body(Body::empty())
        .expect("request")
}

fn post_form(path: &str, session: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, format!("slipway_session={session}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

async fn queued_build(h: &Harness) -> String {
    let (_, answer) = send(
        h,
        signed("push", "d-1", &push_body("refs/heads/main", COMMIT)),
    )
    .await;
    answer["builds"][0]["id"]
        .as_str()
        .expect("a build")
        .to_owned()
}

#[tokio::test]
async fn signing_in_needs_the_forms_csrf_value_and_the_right_password() {
    let h = harness().await;
    add_user(&h, "alice", "correct horse battery", Some(Role::Write)).await;
    let form = fetch(
        &h,
        Request::get("/login").body(Body::empty()).expect("request"),
    )
    .await;
    let login_csrf = cookie_value(&form, "slipway_login_csrf").expect("cookie");
    let attempt = |csrf_cookie: &str, csrf_field: &str, password: &str| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("slipway_login_csrf={csrf_cookie}"))
            .body(Body::from(format!(
                "name=alice&password={password}&csrf_token={csrf_field}"
            )))
            .expect("request")
    };
    let forged = fetch(
        &h,
        attempt("attacker", "attacker-other", "correct+horse+battery"),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let field = csrf_in(&form.text);
    let wrong = fetch(&h, attempt(&login_csrf, &field, "wrong+password")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("wrong"), "{}", wrong.text);
    assert!(cookie_value(&wrong, "slipway_session").is_none());
    let session = sign_in(&h, "alice", "correct+horse+battery").await;
    let overview = fetch(&h, get_with("/", &session)).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.text.contains("Signed in as"), "{}", overview.text);
}

#[tokio::test]
async fn login_attempts_are_rate_limited() {
    let h = harness().await;
    let form = fetch(
        &h,
        Request::get("/login").body(Body::empty()).expect("request"),
    )
    .await;
    let login_csrf = cookie_value(&form, "slipway_login_csrf").expect("cookie");
    let field = csrf_in(&form.text);
    let mut statuses = Vec::new();
    for _ in 0..(slipway_server::LOGIN_BURST + 1) {
        let page = fetch(
            &h,
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("slipway_login_csrf={login_csrf}"))
                .body(Body::from(format!(
                    "name=mallory&password=guess&csrf_token={field}"
                )))
                .expect("request"),
        )
        .await;
        statuses.push(page.status);
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(page.headers.contains_key(header::RETRY_AFTER));
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(
        statuses[..statuses.len() - 1]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED)
    );
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_are_refused() {
    let h = harness().await;
    add_user(&h, "writer", "a long password", Some(Role::Write)).await;
    let session = sign_in(&h, "writer", "a+long+password").await;
    let id = queued_build(&h).await;
    let refused = fetch(&h, post_form(&format!("/builds/{id}/cancel"), &session, "")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wrong = fetch(
        &h,
        post_form(&format!("/builds/{id}/cancel"), &session, "csrf_token=nope"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let page = fetch(&h, get_with(&format!("/builds/{id}"), &session)).await;
    assert!(
        page.text.contains("data-show-when=\"running\">"),
        "a writer sees the cancel button"
    );
    let token = csrf_in(&page.text);
    let cancelled = fetch(
        &h,
        post_form(
            &format!("/builds/{id}/cancel"),
            &session,
            &format!("csrf_token={token}"),
        ),
    )
    .await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
    let (_, build) = get_json(&h, &format!("/api/builds/{id}")).await;
    assert_eq!(build["status"], "cancelled");
    assert_eq!(build["error"], "cancelled by writer");
    // The API, reached with the session cookie, wants the token in a header.
    let api = fetch(
        &h,
        Request::post(format!("/api/builds/{id}/retry"))
            .header(header::COOKIE, format!("slipway_session={session}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(api.status, StatusCode::FORBIDDEN, "{}", api.text);
}

#[tokio::test]
async fn a_reader_sees_no_buttons_and_cannot_post_forms() {
    let h = harness().await;
    add_user(&h, "reader", "a long password", Some(Role::Read)).await;
    let session = sign_in(&h, "reader", "a+long+password").await;
    let id = queued_build(&h).await;
    let page = fetch(&h, get_with(&format!("/builds/{id}"), &session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("/cancel\"") && !page.text.contains("/retry\""));
    let token = csrf_in(&page.text);
    let refused = fetch(
        &h,
        post_form(
            &format!("/builds/{id}/cancel"),
            &session,
            &format!("csrf_token={token}"),
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let repo = fetch(&h, get_with("/repos/acme/web", &session)).await;
    assert!(!repo.text.contains("Build now"), "readers cannot build");
}

#[tokio::test]
async fn pages_send_a_strict_content_security_policy_and_anonymous_visitors_sign_in() {
    let h = harness().await;
    let anonymous = fetch(&h, Request::get("/").body(Body::empty()).expect("request")).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(
        anonymous
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok()),
        Some("/login")
    );
    let login = fetch(
        &h,
        Request::get("/login").body(Body::empty()).expect("request"),
    )
    .await;
    let csp = login
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(login.text.contains("No accounts exist yet") || login.text.contains("Sign in"));
}

#[tokio::test]
async fn badges_follow_the_repositorys_anonymous_reading() {
    let h = harness().await;
    let private = fetch(
        &h,
        Request::get("/badge/acme/web.svg")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(private.status, StatusCode::NOT_FOUND);
    h.state
        .store
        .execute_raw_for_tests("UPDATE repositories SET anonymous_read = TRUE")
        .await
        .expect("open the repository");
    let open = fetch(
        &h,
        Request::get("/badge/acme/web.svg?tag=latest")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(open.status, StatusCode::OK);
    assert_eq!(
        open.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("image/svg+xml; charset=utf-8")
    );
    assert!(
        open.text.starts_with("<svg") && open.text.contains("unknown"),
        "{}",
        open.text
    );
    let page = fetch(
        &h,
        Request::get("/repos/acme/web")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "anonymous reading opens the repository's page"
    );
}

#[tokio::test]
async fn a_wrong_method_is_answered_in_the_error_shape() {
    let h = harness().await;
    let (status, body) = send(
        &h,
        Request::delete("/api/builds")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}
