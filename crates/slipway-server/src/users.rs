//! `/api/me`, `/api/users` and `/api/tokens`: accounts and their API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_core::Role;
use slipway_store::{NewToken, TokenRecord, UserRecord};
use uuid::Uuid;

use crate::api::{JsonBody, rfc3339};
use crate::auth::{Caller, Principal, hash_password, verify_password};
use crate::tokens::{hash_token, new_token};
use crate::{ApiError, AppState};

/// The shortest password accepted. Length is what makes a password strong; no other rule.
pub const MIN_PASSWORD_LENGTH: usize = 10;

/// User names: 1 to 64 letters, digits, '.', '_' or '-', so they read well in logs and URLs.
pub fn check_user_name(name: &str) -> Result<(), String> {
    crate::tokens::check_plain_name("user name", name)
}

/// The longest token name, in characters.
pub const MAX_TOKEN_NAME: usize = 100;

/// Token names: 1 to [`MAX_TOKEN_NAME`] characters once surrounding spaces are trimmed; returns
/// the trimmed name, which is the one stored. The API and the command line's database path both
/// check names here, so a token cannot be named on one path what the other refuses.
pub fn check_token_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if (1..=MAX_TOKEN_NAME).contains(&name.chars().count()) {
        Ok(name)
    } else {
        Err(format!("name must be 1 to {MAX_TOKEN_NAME} characters"))
    }
}

pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LENGTH {
        return Err(format!(
            "the password must be at least {MIN_PASSWORD_LENGTH} characters"
        ));
    }
    Ok(())
}

/// Hashes off the async threads: Argon2id takes tens of milliseconds and much memory on
/// purpose.
pub async fn hash_password_blocking(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

fn user_json(user: &UserRecord) -> Value {
    json!({
        "name": user.name,
        "global_role": user.global_role,
        "disabled": user.disabled,
        "created_at": rfc3339(Some(user.created_at)),
    })
}

fn token_json(token: &TokenRecord) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "scope": token.scope,
        "repository": token.repository,
        "created_at": rfc3339(Some(token.created_at)),
        "last_used_at": rfc3339(token.last_used_at),
        "expires_at": rfc3339(token.expires_at),
        "revoked_at": rfc3339(token.revoked_at),
    })
}

/// `GET /api/me`: who the caller is and what they may do where.
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let principal = caller.require_user()?;
    let repositories: Vec<Value> = state
        .store
        .repositories()
        .await?
        .iter()
        .filter_map(|r| {
            caller
                .role_on(r)
                .map(|role| json!({"name": r.name.to_string(), "role": role}))
        })
        .collect();
    Ok(Json(json!({
        "user": user_json(&principal.user),
        "authenticated_by": if principal.token.is_some() { "token" } else { "session" },
        "token": principal.token.as_ref().map(token_json),
        "repositories": repositories,
    })))
}

/// `GET /api/users` (global admins).
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_global(Role::Admin)?;
    let users = state.store.users().await?;
    Ok(Json(
        json!({"users": users.iter().map(user_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    password: String,
    global_role: Option<Role>,
}

/// `POST /api/users` (global admins; only global owners make global owners).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<NewUser>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require_global(Role::Admin)?;
    let NewUser {
        name,
        password,
        global_role,
    } = body?.0;
    if global_role == Some(Role::Owner) {
        caller.require_global(Role::Owner)?;
    }
    check_user_name(&name).map_err(ApiError::bad_request)?;
    check_password(&password).map_err(ApiError::bad_request)?;
    let hash = hash_password_blocking(password).await?;
    let user = state
        .store
        .create_user(&name, &hash, global_role)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "exists",
                format!("a user named {name:?} exists"),
            )
        })?;
    tracing::info!(user = %name, by = caller.user_name().unwrap_or("?"), "user created");
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    password: Option<String>,
    /// The caller's present password, needed to change their own: a stolen session or token
    /// must not be enough to take the account over for good.
    current_password: Option<String>,
    /// A disabled user can neither sign in nor use their tokens; their sessions end.
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "present_role")]
    global_role: Option<Option<Role>>,
}

fn present_role<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<Role>>, D::Error> {
    Option::<Role>::deserialize(deserializer).map(Some)
}

/// `PATCH /api/users/{name}`: a new password (the user themself, with `current_password`, or a
/// global admin for someone else) or global role (global admins). A new password ends the
/// user's sessions.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<UserChange>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let principal = caller.require_user()?;
    let change = body?.0;
    let own_password_only =
        principal.user.name == name && change.global_role.is_none() && change.disabled.is_none();
    if !own_password_only {
        caller.require_global(Role::Admin)?;
        // Only owners change an owner's account: an administrator who could set an owner's
        // password could sign in as them and hold every role.
        let target = state.store.user_by_name(&name).await?;
        if target.is_some_and(|target| target.global_role == Some(Role::Owner)) {
            caller.require_global(Role::Owner)?;
        }
    }
    // A password opens the dashboard with all of the user's roles, so a token that may do
    // less than its user (a narrower scope, or one repository) must not set a new one.
    if own_password_only
        && let Some(token) = &principal.token
        && (token.scope != Role::Owner || token.repository.is_some())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may do less than its user, so it cannot change the user's password; sign in, or use a token scoped owner for all repositories",
        ));
    }
    if let Some(Some(Role::Owner)) = change.global_role {
        caller.require_global(Role::Owner)?;
    }
    // Refused before anything is written, so a refused change is not half made.
    if change.disabled == Some(true) && principal.user.name == name {
        return Err(ApiError::bad_request(
            "you cannot disable yourself; ask another administrator",
        ));
    }
    let hash = match change.password {
        Some(password) => {
            check_password(&password).map_err(ApiError::bad_request)?;
            // Changing one's own password proves the old one, whether the change comes with a
            // session or a token; an administrator resetting someone else's does not.
            if principal.user.name == name {
                check_current_password(&state, principal, change.current_password).await?;
            }
            Some(hash_password_blocking(password).await?)
        }
        None => None,
    };
    if !state
        .store
        .update_user(&name, hash.as_deref(), change.global_role)
        .await?
    {
        return Err(ApiError::not_found(format!("no user {name:?}")));
    }
    if let Some(disabled) = change.disabled {
        state.store.set_user_disabled(&name, disabled).await?;
        tracing::info!(user = %name, disabled, by = %principal.user.name, "user access changed");
    }
    let user = state
        .store
        .user_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {name:?}")))?;
    Ok(Json(user_json(&user)))
}

/// Checks the password a user gave as their current one. Guesses share the sign-in form's
/// limit for the user's name, so a stolen session cannot try passwords any faster than a
/// stranger at the form.
async fn check_current_password(
    state: &AppState,
    principal: &Principal,
    current: Option<String>,
) -> Result<(), ApiError> {
    let Some(current) = current else {
        return Err(ApiError::bad_request(
            "changing your own password needs current_password",
        ));
    };
    if let Err(retry_after) = state
        .login_limiter
        .take(&format!("user:{}", principal.user.name))
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many password attempts; try again in {retry_after} s"),
        ));
    }
    let hash = principal.user.password_hash.clone();
    let matches = tokio::task::spawn_blocking(move || verify_password(&current, &hash))
        .await
        .map_err(ApiError::internal)?;
    if matches {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "current_password is not your password",
        ))
    }
}

/// `GET /api/tokens`: the caller's tokens (never their values).
pub async fn tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let principal = caller.require_user()?;
    let tokens = state.store.tokens_for_user(principal.user.id).await?;
    Ok(Json(
        json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenInput {
    name: String,
    /// The most the token may do; its user's roles still apply. Defaults to `read`.
    scope: Option<Role>,
    /// Limits the token to one repository (`owner/name`).
    repository: Option<String>,
    expires_in_days: Option<u32>,
}

/// `POST /api/tokens`: a new API token, shown only in this answer.
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<NewTokenInput>, ApiError>,
) -> Result<Response, ApiError> {
    let principal = caller.require_user()?;
    let input = body?.0;
    let name = check_token_name(&input.name).map_err(ApiError::bad_request)?;
    let mut scope = input.scope.unwrap_or(Role::Read);
    // A token cannot mint a token that reaches further than itself.
    let mut repository = input.repository;
    if let Some(current) = &principal.token {
        scope = scope.min(current.scope);
        if current.repository.is_some() {
            if repository.is_some() && repository != current.repository {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this token is limited to one repository; it cannot make tokens for others",
                ));
            }
            repository.clone_from(&current.repository);
        }
    }
    let repository_id = match &repository {
        None => None,
        Some(name) => Some(
            state
                .store
                .repository_by_name(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no repository {name}")))?
                .id,
        ),
    };
    let expires_at = input
        .expires_in_days
        .map(|days| slipway_store::now_millis() + i64::from(days) * 86_400_000);
    let token = new_token("slwa_").map_err(ApiError::internal)?;
    let hash = hash_token(&token);
    let record = state
        .store
        .create_token(&NewToken {
            user_id: principal.user.id,
            name,
            token_hash: &hash,
            scope,
            repository_id,
            expires_at,
        })
        .await?;
    let mut value = token_json(&record);
    value["token"] = json!(token);
    value["note"] = json!("the token is shown only now; send it as Authorization: Bearer <token>");
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

/// `DELETE /api/tokens/{id}`: revokes one of the caller's tokens.
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let principal = caller.require_user()?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found(format!("no token {id:?}")))?;
    // A token that may do less than its user may revoke itself, but not the user's others: a
    // leaked read-only token must not be able to break the owner's automation.
    if let Some(token) = &principal.token
        && token.id != id
        && (token.scope != Role::Owner || token.repository.is_some())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may do less than its user, so it can revoke only itself; sign in, or use a token scoped owner for all repositories",
        ));
    }
    if !state.store.revoke_token(principal.user.id, id).await? {
        return Err(ApiError::not_found(format!("no active token {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_and_passwords_are_checked() {
        assert!(check_user_name("ci-bot.1").is_ok());
        assert!(check_user_name("").is_err());
        assert!(check_user_name("a b").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough!").is_ok());
    }
}
