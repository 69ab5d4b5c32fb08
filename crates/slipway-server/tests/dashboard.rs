//! The dashboard over the real router and a real SQLite store: signing in (CSRF, rate limit,
//! the first-run notice), pages per role, every form's CSRF token, badges and the security
//! headers, the notification views (a build's notifications, outgoing webhooks and their
//! redelivery), and the build page's rendering of a long log's tail.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::*;
use slipway_core::Role;
use tower::ServiceExt;
use uuid::Uuid;

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
    let (session, _) = sign_in_with_headers(h, name, password).await;
    session
}

/// Signs in through the form; returns the session cookie and the `Set-Cookie` lines of the
/// login form's answer and of the sign-in's.
async fn sign_in_with_headers(h: &Harness, name: &str, password: &str) -> (String, Vec<String>) {
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
    let set_cookies = [&form, &answer]
        .iter()
        .flat_map(|page| page.headers.get_all(header::SET_COOKIE).iter())
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    (
        cookie_value(&answer, "slipway_session").expect("session"),
        set_cookies,
    )
}

/// A `Set-Cookie` line's attributes, lower-cased, without their values (`max-age`, `secure`…).
fn cookie_attributes(line: &str) -> Vec<String> {
    line.split(';')
        .skip(1)
        .map(|part| {
            part.trim()
                .split('=')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        })
        .collect()
}

#[tokio::test]
async fn session_cookies_are_http_only_same_site_and_secure_exactly_over_https() {
    for (public_url, secure) in [
        ("https://builds.example.com", true),
        ("http://slipway.test", false),
    ] {
        let mut h = harness().await;
        h.state.public_url = public_url.to_owned();
        add_user(&h, "alice", "correct horse battery", None).await;
        let (_, lines) = sign_in_with_headers(&h, "alice", "correct+horse+battery").await;
        for name in ["slipway_session=", "slipway_login_csrf="] {
            let line = lines
                .iter()
                .find(|line| line.starts_with(name) && !line.contains("Max-Age=0"))
                .unwrap_or_else(|| panic!("no {name} cookie set in {lines:?}"));
            let attributes = cookie_attributes(line);
            assert!(attributes.contains(&"httponly".to_owned()), "{line}");
            assert!(line.contains("SameSite=Lax"), "{line}");
            assert_eq!(
                attributes.contains(&"secure".to_owned()),
                secure,
                "{public_url}: {line}"
            );
        }
    }
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
    // The harness has made its `root` account, so this is no first run.
    assert!(login.text.contains("<h1>Sign in</h1>"), "{}", login.text);
    assert!(
        !login.text.contains("No accounts exist yet"),
        "{}",
        login.text
    );
    assert!(!login.text.contains("slipway user add"), "{}", login.text);
}

#[tokio::test]
async fn the_sign_in_page_says_how_to_make_the_first_account_until_one_exists() {
    let h = harness_without_accounts(vec![repository(
        "acme/web",
        "github",
        vec![slipway_core::BuildRule::default_rule()],
    )])
    .await;
    assert_eq!(h.state.store.user_count().await.expect("count"), 0);
    let first_run = fetch(
        &h,
        Request::get("/login").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(first_run.status, StatusCode::OK);
    assert!(
        first_run
            .text
            .contains("No accounts exist yet. Make the first administrator on the server:"),
        "{}",
        first_run.text
    );
    assert!(
        first_run
            .text
            .contains("<pre class=\"mono\">slipway user add --admin YOUR-NAME</pre>"),
        "{}",
        first_run.text
    );
    // The notice is gone once the first account exists.
    add_user(&h, "alice", "a long password", Some(Role::Owner)).await;
    let later = fetch(
        &h,
        Request::get("/login").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(later.status, StatusCode::OK);
    assert!(
        !later.text.contains("No accounts exist yet"),
        "{}",
        later.text
    );
    assert!(!later.text.contains("slipway user add"), "{}", later.text);
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

/// A badge's message, read from its accessible name (`aria-label="label: message"`).
fn badge_message(svg: &str) -> String {
    let marker = "aria-label=\"";
    let start = svg.find(marker).expect("an aria-label") + marker.len();
    let label = svg[start..].split('"').next().expect("a label");
    label
        .rsplit_once(": ")
        .map(|(_, message)| message.to_owned())
        .unwrap_or_else(|| panic!("no message in {label:?}"))
}

#[tokio::test]
async fn a_tags_badge_shows_its_newest_finished_build_however_many_builds_came_since() {
    let h = harness().await;
    h.state
        .store
        .execute_raw_for_tests("UPDATE repositories SET anonymous_read = TRUE")
        .await
        .expect("open the repository");
    // The oldest build, the only one to carry v1, succeeded; 150 newer builds carry latest:
    // the newest is still queued, the one before it was skipped, the one before that failed,
    // and every older one succeeded.
    h.state
        .store
        .execute_raw_for_tests(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 150)
             INSERT INTO builds (id, repository_id, git_ref, commit_sha, image, tags_json,
                 dockerfile, context, status, queued_at)
             SELECT printf('%08x-0000-7000-8000-%012x', i, i),
                 (SELECT id FROM repositories WHERE name = 'acme/web'),
                 'refs/heads/main', printf('%040x', i + 1), '127.0.0.1:5000/acme/web',
                 CASE WHEN i = 0 THEN '[\"v1\",\"1\"]' ELSE '[\"latest\"]' END, 'Dockerfile', '/',
                 CASE i WHEN 150 THEN 'queued' WHEN 149 THEN 'skipped' WHEN 148 THEN 'failed'
                     ELSE 'succeeded' END,
                 1700000000000 + i * 1000
             FROM n",
        )
        .await
        .expect("builds");
    let badge = |query: &'static str| {
        let h = &h;
        async move {
            let page = fetch(
                h,
                Request::get(format!("/badge/acme/web.svg{query}"))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
            assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.text);
            badge_message(&page.text)
        }
    };
    assert_eq!(badge("?tag=v1").await, "passing");
    assert_eq!(badge("?tag=latest").await, "failing");
    assert_eq!(badge("").await, "failing");
    assert_eq!(badge("?tag=v2").await, "unknown");
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

#[tokio::test]
async fn the_build_page_lists_its_notifications_to_readers_without_secrets() {
    let h = harness().await;
    add_user(&h, "reader", "a long password", Some(Role::Read)).await;
    let session = sign_in(&h, "reader", "a+long+password").await;
    let (build, _, _) = build_with_notifications(&h).await;
    let page = fetch(&h, get_with(&format!("/builds/{build}"), &session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Notifications"), "{}", page.text);
    assert!(
        page.text.contains("Commit status <code>queued</code>"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("Webhook <code>build_queued</code>"),
        "{}",
        page.text
    );
    assert!(page.text.contains("status-pending"), "{}", page.text);
    // A reader sees where the hook points, not its path or query (they may be capabilities).
    assert!(page.text.contains("https://hooks.example.com"));
    for secret in [HOOK_SECRET, "capability-path", "query-secret"] {
        assert!(!page.text.contains(secret), "{secret} on the build page");
    }

    // A build without notifications says so.
    let (_, other) = send(
        &h,
        signed(
            "push",
            "d-2",
            &push_body("refs/tags/v1.0", "1111111111111111111111111111111111111111"),
        ),
    )
    .await;
    let other = other["builds"][0]["id"].as_str().expect("a build");
    let page = fetch(&h, get_with(&format!("/builds/{other}"), &session)).await;
    assert!(
        page.text
            .contains("No commit statuses or webhooks for this build."),
        "{}",
        page.text
    );
}

/// An error text as the sender records it: it names the receiver's host and address, which
/// only the repository's admins may learn.
const RECEIVER_ERROR: &str = "connecting to hooks.internal.example (10.20.30.40:443) was refused";

#[tokio::test]
async fn a_notifications_error_text_is_shown_to_admins_and_withheld_from_readers() {
    let h = harness().await;
    add_user(&h, "reader", "a long password", Some(Role::Read)).await;
    add_user(&h, "boss", "another long password", Some(Role::Admin)).await;
    let (build, _, _) = build_with_notifications(&h).await;
    fail_due_notifications(&h, RECEIVER_ERROR).await;

    let reader = sign_in(&h, "reader", "a+long+password").await;
    let page = fetch(&h, get_with(&format!("/builds/{build}"), &reader)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("status-failed"), "{}", page.text);
    assert!(
        page.text.contains("failed; an admin can see why"),
        "{}",
        page.text
    );
    for leak in ["10.20.30.40", "hooks.internal.example"] {
        assert!(!page.text.contains(leak), "{leak} shown to a reader");
    }

    let admin = sign_in(&h, "boss", "another+long+password").await;
    let page = fetch(&h, get_with(&format!("/builds/{build}"), &admin)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(RECEIVER_ERROR), "{}", page.text);
    assert!(!page.text.contains("an admin can see why"), "{}", page.text);
}

#[tokio::test]
async fn admins_see_outgoing_webhooks_and_their_deliveries_and_readers_do_not() {
    let h = harness().await;
    add_user(&h, "admin", "a long password", Some(Role::Admin)).await;
    add_user(&h, "reader", "a long password", Some(Role::Read)).await;
    let admin = sign_in(&h, "admin", "a+long+password").await;
    let reader = sign_in(&h, "reader", "a+long+password").await;
    let (_, hook, delivery) = build_with_notifications(&h).await;
    let hook_page = format!("/repos/acme/web/webhooks/{hook}");

    let repo = fetch(&h, get_with("/repos/acme/web", &admin)).await;
    assert_eq!(repo.status, StatusCode::OK);
    assert!(repo.text.contains("Outgoing webhooks"), "{}", repo.text);
    assert!(repo.text.contains(&format!("href=\"{hook_page}\"")));
    assert!(repo.text.contains("build_queued, image_pushed"));
    assert!(repo.text.contains("Commit statuses"));
    assert!(repo.text.contains("default for github"), "{}", repo.text);

    let page = fetch(&h, get_with(&hook_page, &admin)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Recent deliveries"));
    assert!(
        page.text
            .contains("https://hooks.example.com/deploy/capability-path")
    );
    assert!(
        page.text
            .contains(&format!("action=\"/notifications/{delivery}/redeliver\"")),
        "{}",
        page.text
    );
    assert!(page.text.contains("Not attempted yet."));
    for text in [&repo.text, &page.text] {
        assert!(!text.contains(HOOK_SECRET), "the hook secret on a page");
        assert!(!text.contains("query-secret"), "the URL's query on a page");
    }

    let repo = fetch(&h, get_with("/repos/acme/web", &reader)).await;
    assert_eq!(repo.status, StatusCode::OK);
    assert!(!repo.text.contains("Outgoing webhooks"), "{}", repo.text);
    assert!(!repo.text.contains("/webhooks/"));
    let refused = fetch(&h, get_with(&hook_page, &reader)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!refused.text.contains("hooks.example.com"));
    let missing = fetch(
        &h,
        get_with(
            &format!("/repos/acme/web/webhooks/{}", Uuid::now_v7()),
            &admin,
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn redelivering_a_webhook_delivery_needs_the_csrf_token_and_the_admin_role() {
    let h = harness().await;
    add_user(&h, "admin", "a long password", Some(Role::Admin)).await;
    add_user(&h, "reader", "a long password", Some(Role::Read)).await;
    let admin = sign_in(&h, "admin", "a+long+password").await;
    let reader = sign_in(&h, "reader", "a+long+password").await;
    let (build, hook, delivery) = build_with_notifications(&h).await;
    // Only a delivery that is no longer pending is redelivered: deliver it first, as a sender
    // would.
    let due = h
        .state
        .store
        .claim_notifications("dashboard-sender", 60_000, 10)
        .await
        .expect("claim notifications");
    for notification in due {
        let attempt = slipway_store::NotificationAttempt {
            attempt: 1,
            at: slipway_store::now_millis(),
            status_code: Some(200),
            duration_ms: 1,
            error: None,
            response_excerpt: None,
        };
        h.state
            .store
            .record_notification_attempt(
                notification.id,
                "dashboard-sender",
                &attempt,
                slipway_store::AfterAttempt::Delivered,
            )
            .await
            .expect("record");
    }
    let hook_page = format!("/repos/acme/web/webhooks/{hook}");
    let action = format!("/notifications/{delivery}/redeliver");
    let count = || async {
        h.state
            .store
            .hook_deliveries(hook, 10)
            .await
            .expect("deliveries")
    };

    let missing = fetch(&h, post_form(&action, &admin, "")).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = fetch(&h, post_form(&action, &admin, "csrf_token=nope")).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);

    let reader_page = fetch(&h, get_with(&format!("/builds/{build}"), &reader)).await;
    let reader_token = csrf_in(&reader_page.text);
    let by_reader = fetch(
        &h,
        post_form(&action, &reader, &format!("csrf_token={reader_token}")),
    )
    .await;
    assert_eq!(by_reader.status, StatusCode::FORBIDDEN);
    assert_eq!(count().await.len(), 1, "refused forms queue nothing");

    let page = fetch(&h, get_with(&hook_page, &admin)).await;
    let token = csrf_in(&page.text);
    let done = fetch(
        &h,
        post_form(&action, &admin, &format!("csrf_token={token}")),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(
        done.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok()),
        Some(hook_page.as_str())
    );
    let deliveries = count().await;
    assert_eq!(deliveries.len(), 2);
    let newest = deliveries.first().expect("the redelivery");
    assert_eq!(newest.redelivery_of, Some(delivery));
    assert_eq!(newest.state, "pending");
    assert_eq!(newest.event, "build_queued");
    // While that copy is pending, another would send it twice: refused, saying why.
    let twice = fetch(
        &h,
        post_form(&action, &admin, &format!("csrf_token={token}")),
    )
    .await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.text);
    assert!(twice.text.contains("still pending"), "{}", twice.text);
    assert_eq!(count().await.len(), 2, "nothing more was queued");

    let unknown = fetch(
        &h,
        post_form(
            &format!("/notifications/{}/redeliver", Uuid::now_v7()),
            &admin,
            &format!("csrf_token={token}"),
        ),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// The `<pre id="log">` element's attributes and content in a build page.
fn log_element(text: &str) -> (&str, &str) {
    let id = text.find(" id=\"log\"").expect("the log element");
    let start = text[..id].rfind("<pre").expect("the log is a <pre>");
    let open_end = start + text[start..].find('>').expect("the tag's end");
    let close = open_end + text[open_end..].find("</pre>").expect("the log's end");
    (&text[start..open_end], &text[open_end + 1..close])
}

/// One attribute's value in a tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!(" {name}=\"");
    let at = tag.find(&marker)? + marker.len();
    tag[at..].split('"').next()
}

#[tokio::test]
async fn a_build_page_renders_only_the_last_512_kib_of_a_long_log_from_a_line_start() {
    let h = harness().await;
    add_user(&h, "reader", "a long password", Some(Role::Read)).await;
    let session = sign_in(&h, "reader", "a+long+password").await;
    let id = queued_build(&h).await;
    let build_id = Uuid::parse_str(&id).expect("a build id");
    let store = &h.state.store;
    let claimed = store
        .claim_build("dashboard-worker", std::time::Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("the queued build");
    assert_eq!(claimed.id, build_id);

    // 6,000 lines of 100 bytes (one with a byte that is not UTF-8) and a line still being
    // written, stored in chunks that do not follow the lines.
    let mut log = Vec::new();
    for n in 0..6000 {
        let mut line = format!("{n:>98}").into_bytes();
        if n == 5000 {
            line[0] = 0xff;
        }
        line.extend_from_slice(b" \n");
        log.extend_from_slice(&line);
    }
    log.extend_from_slice(b"still running");
    for (seq, chunk) in log.chunks(65_000).enumerate() {
        let seq = i64::try_from(seq).expect("a sequence number") + 1;
        store
            .append_log(build_id, seq, chunk)
            .await
            .expect("log chunk");
    }
    let size = log.len();
    let window = size - 512 * 1024;
    let first_shown = window - 1
        + log[window - 1..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("a line break")
        + 1;
    assert_eq!(first_shown % 100, 0, "a line start");
    let complete = 6000 * 100;

    let page = fetch(&h, get_with(&format!("/builds/{id}"), &session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text
            .contains(&format!("The first {first_shown} bytes are not shown.")),
        "{}",
        page.text
    );
    assert!(page.text.contains(&format!("href=\"/builds/{id}?full=1\"")));
    let (tag, content) = log_element(&page.text);
    assert_eq!(
        attribute(tag, "data-offset"),
        Some(complete.to_string().as_str())
    );
    assert_eq!(attribute(tag, "data-state"), None, "the stream goes on");
    let first_line = first_shown / 100;
    assert!(
        content.starts_with(&format!("<span class=\"log-block\">{first_line:>98} \n")),
        "{}",
        &content[..200]
    );
    assert!(!content.contains(&format!("{:>98} \n", first_line - 1)));
    assert!(content.contains(&format!("\u{fffd}{:>97} \n", 5000)));
    assert!(content.ends_with(&format!("{:>98} \n</span>", 5999)));
    assert!(!content.contains("still running"), "only complete lines");

    // Finished, the page shows the last line too and opens no stream.
    let result = slipway_store::BuildResult {
        status: slipway_core::BuildStatus::Succeeded,
        error: None,
        digest: None,
    };
    assert!(
        store
            .finish_build(build_id, "dashboard-worker", &result)
            .await
            .expect("finish")
    );
    let page = fetch(&h, get_with(&format!("/builds/{id}"), &session)).await;
    let (tag, content) = log_element(&page.text);
    assert_eq!(
        attribute(tag, "data-offset"),
        Some(size.to_string().as_str())
    );
    assert_eq!(attribute(tag, "data-state"), Some("ended"));
    assert!(content.ends_with("still running</span>"));

    // The whole log is streamed from its first byte instead.
    let page = fetch(&h, get_with(&format!("/builds/{id}?full=1"), &session)).await;
    let (tag, content) = log_element(&page.text);
    assert_eq!(attribute(tag, "data-offset"), Some("0"));
    assert_eq!(content, "");
    assert!(!page.text.contains("bytes are not shown"));
}

/// Posts `fields` to a form twice without the session's CSRF token (none, then a wrong one)
/// and asserts both are refused with 403.
async fn refused_without_the_token(h: &Harness, path: &str, session: &str, fields: &str) {
    for token in ["", "&csrf_token=", "&csrf_token=not-this-sessions-token"] {
        let body = format!("{}{token}", fields.trim_start_matches('&'));
        let answer = fetch(h, post_form(path, session, body.trim_start_matches('&'))).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{path} with {token:?}: {}",
            answer.text
        );
        assert!(answer.text.contains("CSRF"), "{path}: {}", answer.text);
    }
}

/// The `Location` of an answer.
fn location(page: &Page) -> Option<&str> {
    page.headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
}

/// Checks one dashboard form in a fresh world: refused without the right CSRF token (and
/// nothing changed), done with it.
async fn check_form(route: &slipway_server::PageRoute) {
    let h = harness().await;
    add_user(&h, "owner", "a long password", Some(Role::Owner)).await;
    let session = sign_in(&h, "owner", "a+long+password").await;
    let page = fetch(&h, get_with("/", &session)).await;
    let token = csrf_in(&page.text);
    let with_token = |fields: &str| format!("csrf_token={token}{fields}");
    let store = &h.state.store;
    match route.path {
        "/login" => {
            // Signing in has no session yet: the form's field must repeat its own cookie.
            let form = fetch(
                &h,
                Request::get("/login").body(Body::empty()).expect("request"),
            )
            .await;
            let cookie = cookie_value(&form, "slipway_login_csrf").expect("cookie");
            let post = |cookie: Option<&str>, field: Option<&str>| {
                let mut builder = Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                if let Some(cookie) = cookie {
                    builder =
                        builder.header(header::COOKIE, format!("slipway_login_csrf={cookie}"));
                }
                let mut body = "name=owner&password=a+long+password".to_owned();
                if let Some(field) = field {
                    body.push_str(&format!("&csrf_token={field}"));
                }
                builder.body(Body::from(body)).expect("request")
            };
            let field = csrf_in(&form.text);
            for (cookie, field) in [
                (Some(cookie.as_str()), Some("")),
                (Some(cookie.as_str()), Some("another-value")),
                (None, Some(field.as_str())),
                (Some(""), Some("")),
            ] {
                let answer = fetch(&h, post(cookie, field)).await;
                assert_eq!(answer.status, StatusCode::FORBIDDEN, "{cookie:?} {field:?}");
                assert!(cookie_value(&answer, "slipway_session").is_none());
            }
            // A form without the field at all is no sign-in form.
            let answer = fetch(&h, post(Some(&cookie), None)).await;
            assert!(answer.status.is_client_error(), "{}", answer.status);
            assert!(cookie_value(&answer, "slipway_session").is_none());
            let done = fetch(&h, post(Some(&cookie), Some(&field))).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
            assert!(cookie_value(&done, "slipway_session").is_some());
        }
        "/logout" => {
            refused_without_the_token(&h, "/logout", &session, "").await;
            let still = fetch(&h, get_with("/", &session)).await;
            assert!(
                still.text.contains("Signed in as"),
                "refusals keep the session"
            );
            let done = fetch(&h, post_form("/logout", &session, &with_token(""))).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER);
            assert_eq!(location(&done), Some("/login"));
            let after = fetch(&h, get_with("/", &session)).await;
            assert_eq!(after.status, StatusCode::SEE_OTHER, "the session has ended");
        }
        "/repos/{owner}/{name}/build" => {
            let path = "/repos/acme/web/build";
            let fields = "&source_type=Branch&source_name=main";
            refused_without_the_token(&h, path, &session, fields).await;
            assert_eq!(build_count(&h).await, 0, "refusals build nothing");
            let done = fetch(&h, post_form(path, &session, &with_token(fields))).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
            let to = location(&done).expect("the new build's page");
            let id = to.strip_prefix("/builds/").expect("a build page");
            let (_, build) = get_json(&h, &format!("/api/builds/{id}")).await;
            assert_eq!(build["trigger"], "manual", "{build}");
            assert_eq!(build["ref"], "refs/heads/main");
            assert_eq!(build["commit"], MAIN_HEAD);
            assert_eq!(build_count(&h).await, 1);
        }
        "/deliveries/{id}/redeliver" => {
            let id = queued_build(&h).await;
            let build = store
                .build(Uuid::parse_str(&id).expect("id"))
                .await
                .expect("query")
                .expect("the build");
            let delivery = build.delivery_id.expect("the build's delivery");
            let repository = store
                .repository_by_name("acme/web")
                .await
                .expect("query")
                .expect("acme/web");
            let deliveries = || async {
                store
                    .deliveries_for_repository(repository.id, 10, None)
                    .await
                    .expect("deliveries")
            };
            let path = format!("/deliveries/{delivery}/redeliver");
            refused_without_the_token(&h, &path, &session, "").await;
            assert_eq!(deliveries().await.len(), 1, "refusals redeliver nothing");
            let done = fetch(&h, post_form(&path, &session, &with_token(""))).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
            assert_eq!(location(&done), Some("/repos/acme/web/deliveries"));
            let after = deliveries().await;
            assert_eq!(after.len(), 2, "a new delivery");
            assert!(
                after.iter().any(|d| d.redelivery_of == Some(delivery)),
                "the redelivery names the original"
            );
        }
        "/notifications/{id}/redeliver" => {
            let (_, hook, notification) = build_with_notifications(&h).await;
            // Only a notification that is no longer pending may be redelivered.
            fail_due_notifications(&h, "the receiver is down").await;
            let path = format!("/notifications/{notification}/redeliver");
            refused_without_the_token(&h, &path, &session, "").await;
            let count = || async { store.hook_deliveries(hook, 10).await.expect("list").len() };
            assert_eq!(count().await, 1, "refusals queue nothing");
            let done = fetch(&h, post_form(&path, &session, &with_token(""))).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
            assert_eq!(count().await, 2);
        }
        "/builds/{id}/cancel" => {
            let id = queued_build(&h).await;
            let path = format!("/builds/{id}/cancel");
            refused_without_the_token(&h, &path, &session, "").await;
            let (_, build) = get_json(&h, &format!("/api/builds/{id}")).await;
            assert_eq!(build["status"], "queued", "refusals cancel nothing");
            let done = fetch(&h, post_form(&path, &session, &with_token(""))).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
            let (_, build) = get_json(&h, &format!("/api/builds/{id}")).await;
            assert_eq!(build["status"], "cancelled");
        }
        "/builds/{id}/retry" => {
            let id = queued_build(&h).await;
            store
                .cancel_build(Uuid::parse_str(&id).expect("id"), "to retry it")
                .await
                .expect("cancel");
            let path = format!("/builds/{id}/retry");
            refused_without_the_token(&h, &path, &session, "").await;
            assert_eq!(build_count(&h).await, 1, "refusals retry nothing");
            let done = fetch(&h, post_form(&path, &session, &with_token(""))).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
            let new = location(&done)
                .and_then(|to| to.strip_prefix("/builds/"))
                .expect("the new build's page");
            let (_, build) = get_json(&h, &format!("/api/builds/{new}")).await;
            assert_eq!(build["retry_of"], id.as_str(), "{build}");
            assert_eq!(build_count(&h).await, 2);
        }
        other => panic!(
            "the dashboard form {other} has no CSRF case here; add one (refused without the \
             session's token, done with it)"
        ),
    }
}

#[tokio::test]
async fn every_dashboard_form_needs_its_csrf_token_and_works_with_it() {
    let forms: Vec<_> = slipway_server::page_routes()
        .into_iter()
        .filter(|route| route.method == "post")
        .collect();
    let paths: Vec<&str> = forms.iter().map(|route| route.path).collect();
    for path in [
        "/login",
        "/logout",
        "/repos/{owner}/{name}/build",
        "/deliveries/{id}/redeliver",
        "/notifications/{id}/redeliver",
        "/builds/{id}/cancel",
        "/builds/{id}/retry",
    ] {
        assert!(
            paths.contains(&path),
            "{path} is not a form any more: {paths:?}"
        );
    }
    for route in &forms {
        check_form(route).await;
    }
}
