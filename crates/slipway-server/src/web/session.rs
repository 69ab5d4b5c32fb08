//! Signing in and out of the dashboard.
//!
//! The login form carries a random value that is also set as a short-lived cookie; a post
//! whose field and cookie differ is refused, so another site cannot sign a browser in to an
//! account of its choosing. Attempts are limited per client address and per user name (429),
//! and a wrong user name costs as much time as a wrong password.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use crate::auth::{
    Caller, LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_LIFETIME_MS, cookie, dummy_password_hash,
    secrets_equal, verify_password,
};
use crate::tokens::{hash_token, new_token};
use crate::web::pages::{PageError, layout, page_response, safe_next};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    csrf_token: String,
    next: Option<String>,
}

/// Whether cookies must be marked `Secure`: whenever people reach Slipway over HTTPS.
fn secure_cookies(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

fn set_cookie(state: &AppState, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = if secure_cookies(state) {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}

/// `GET /login`.
pub async fn login_page(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, PageError> {
    render_login(&state, query.next.as_deref(), None, StatusCode::OK).await
}

async fn render_login(
    state: &AppState,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let csrf = new_token("").map_err(ApiError::internal)?;
    let first_run = state.store.user_count().await? == 0;
    let body = html! {
        div.page-header { h1 { "Sign in" } }
        @if first_run {
            div.notice role="status" {
                p { "No accounts exist yet. Make the first administrator on the server:" }
                pre.mono { "slipway user add --admin YOUR-NAME" }
            }
        }
        @if let Some(error) = error {
            div.notice.notice-error role="alert" { (error) }
        }
        form.panel method="post" action="/login" {
            input type="hidden" name="csrf_token" value=(csrf);
            @if let Some(next) = next.and_then(safe_next) {
                input type="hidden" name="next" value=(next);
            }
            div.field {
                label for="name" { "User name" }
                input #name type="text" name="name" autocomplete="username" required autofocus;
            }
            div.field {
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
            }
            div.form-actions { button.button type="submit" { "Sign in" } }
        }
    };
    let mut response = page_response(
        status,
        layout(&state.public_url, "Sign in", &Caller::Anonymous, body),
    );
    if let Ok(value) = set_cookie(state, LOGIN_CSRF_COOKIE, &csrf, 3600).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !secrets_equal(expected, &form.csrf_token) {
        return Err(PageError(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "the sign-in form expired or came from another site; reload it and try again",
        )));
    }
    // The peer address is there when serving for real; router tests have none.
    // An IPv6 client holds a whole /64, so that is what one address means to the limiter.
    let address = extensions.get::<ConnectInfo<SocketAddr>>().map_or_else(
        || "unknown".to_owned(),
        |ConnectInfo(peer)| match peer.ip() {
            std::net::IpAddr::V6(ip) => {
                let prefix = ip.segments();
                format!(
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    prefix[0], prefix[1], prefix[2], prefix[3]
                )
            }
            ip => ip.to_string(),
        },
    );
    let next = form.next.as_deref();
    // A name no account can have is refused before it costs a limiter entry, a lookup or a
    // password hash.
    if crate::users::check_user_name(&form.name).is_err() {
        return render_login(
            &state,
            next,
            Some("The user name or password is wrong."),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    for key in [format!("address:{address}"), format!("user:{}", form.name)] {
        if let Err(retry_after) = state.login_limiter.take(&key) {
            tracing::warn!(%address, "login attempts rate-limited");
            let message = format!("Too many sign-in attempts. Try again in {retry_after} s.");
            let mut response =
                render_login(&state, next, Some(&message), StatusCode::TOO_MANY_REQUESTS).await?;
            if let Ok(value) = retry_after.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
    }
    let user = state.store.user_by_name(&form.name).await?;
    let (hash, enabled) = match &user {
        Some(user) => (user.password_hash.clone(), !user.disabled),
        None => (dummy_password_hash().to_owned(), false),
    };
    let password = form.password;
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    let Some(user) = user.filter(|_| matches && enabled) else {
        tracing::info!(%address, "a sign-in failed");
        return render_login(
            &state,
            next,
            Some("The user name or password is wrong."),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    };
    let session = new_token("").map_err(ApiError::internal)?;
    let csrf = new_token("").map_err(ApiError::internal)?;
    state
        .store
        .create_session(
            &hash_token(&session),
            user.id,
            &csrf,
            slipway_store::now_millis() + SESSION_LIFETIME_MS,
        )
        .await?;
    tracing::info!(user = %user.name, "signed in");
    let target = next.and_then(safe_next).unwrap_or("/");
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, target.to_owned())],
    )
        .into_response();
    let cookies = [
        set_cookie(&state, SESSION_COOKIE, &session, SESSION_LIFETIME_MS / 1000),
        set_cookie(&state, LOGIN_CSRF_COOKIE, "", 0),
    ];
    for value in cookies {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf_token: Option<String>,
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    caller.check_form_csrf(form.csrf_token.as_deref())?;
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&hash_token(session)).await?;
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    if let Ok(value) = set_cookie(&state, SESSION_COOKIE, "", 0).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
