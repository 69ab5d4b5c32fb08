//! Who is asking, and what they may do.
//!
//! A caller is anonymous, or a user signed in through a dashboard session cookie, or a user
//! acting through an API token (`Authorization: Bearer slw_…`). A user's role on a repository
//! is the higher of their global role and their grant on it; a token caps that at its scope and
//! may be limited to one repository; a repository that allows anonymous reading gives everyone
//! `read`. Unauthenticated callers get 401, authenticated ones without the role 403.
//!
//! Requests authenticated by the session cookie that change something must prove they come
//! from Slipway's own pages: dashboard forms carry the session's CSRF token in a hidden field,
//! API calls in an `X-CSRF-Token` header. Token-authenticated calls need no such proof, since
//! a browser never adds a bearer token on its own.

use std::collections::HashMap;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use slipway_core::Role;
use slipway_store::{RepositoryRecord, TokenRecord, UserRecord};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::tokens::hash_token;
use crate::{ApiError, AppState};

/// The dashboard session cookie.
pub const SESSION_COOKIE: &str = "slipway_session";
/// A random value the login form repeats, so that another site cannot sign a browser in to an
/// account of its choosing (login CSRF).
pub const LOGIN_CSRF_COOKIE: &str = "slipway_login_csrf";
/// The header cookie-authenticated API calls that change something must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a dashboard session lasts.
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;

/// Hashes a password with Argon2id (memory-hard) and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("the system's random source failed: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Checks a password against its stored hash. A malformed hash never matches.
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash of a password nobody knows, verified when a login names no user, so that a wrong
/// user name takes as long to refuse as a wrong password.
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password("slipway: a password that no account has").unwrap_or_default()
    })
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// One cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A signed-in user with everything needed to decide what they may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRecord,
    grants: HashMap<Uuid, Role>,
    /// Set when the request came with an API token.
    pub token: Option<TokenRecord>,
    /// Set when the request came with a session cookie: the session's CSRF token.
    pub csrf_token: Option<String>,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User(Box<Principal>),
}

impl Caller {
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Anonymous => None,
            Caller::User(principal) => Some(principal),
        }
    }

    pub fn user_name(&self) -> Option<&str> {
        self.principal().map(|p| p.user.name.as_str())
    }

    /// The caller's role on a repository, if any.
    pub fn role_on(&self, repository: &RepositoryRecord) -> Option<Role> {
        let anonymous = repository.anonymous_read.then_some(Role::Read);
        let Some(principal) = self.principal() else {
            return anonymous;
        };
        let own = [
            principal.user.global_role,
            principal.grants.get(&repository.id).copied(),
        ]
        .into_iter()
        .flatten()
        .max();
        let own = match &principal.token {
            None => own,
            Some(token) => {
                let in_reach = token
                    .repository
                    .as_deref()
                    .is_none_or(|only| only == repository.name.to_string());
                own.filter(|_| in_reach).map(|role| role.min(token.scope))
            }
        };
        own.max(anonymous)
    }

    /// Whether the caller may do what `needed` allows on the repository.
    pub fn may(&self, repository: &RepositoryRecord, needed: Role) -> bool {
        self.role_on(repository)
            .is_some_and(|role| role.allows(needed))
    }

    /// Succeeds when the caller holds `needed` on the repository; otherwise 401 for the
    /// anonymous, 403 for everyone else.
    pub fn require(&self, repository: &RepositoryRecord, needed: Role) -> Result<(), ApiError> {
        if self.may(repository, needed) {
            return Ok(());
        }
        Err(self.refusal(&format!(
            "this needs the {needed} role on repository {}",
            repository.name
        )))
    }

    /// Checks `needed` on something found through its repository (the repository itself, or a
    /// build, delivery or notification in it) without telling a caller who may not read that
    /// repository whether it exists. `found` is `None` when nothing has that name or id.
    ///
    /// A missing thing and one the caller may not read get the same answer: 401 for the
    /// anonymous (who may have a role once signed in), `not_found` (404) for signed-in
    /// callers. Only a caller who may read the repository learns that they lack `needed`
    /// (403, or 401 for an anonymous reader of an open repository).
    pub fn require_found<T>(
        &self,
        found: Option<(T, RepositoryRecord)>,
        needed: Role,
        not_found: impl FnOnce() -> ApiError,
    ) -> Result<(T, RepositoryRecord), ApiError> {
        match found {
            Some((thing, repository)) if self.may(&repository, Role::Read) => {
                self.require(&repository, needed)?;
                Ok((thing, repository))
            }
            _ => Err(self.unseen(not_found)),
        }
    }

    /// What a caller is told about something that is missing or that they may not read, so
    /// that the two cannot be told apart: 401 for the anonymous, `not_found` for the rest.
    pub fn unseen(&self, not_found: impl FnOnce() -> ApiError) -> ApiError {
        match self {
            Caller::Anonymous => self.refusal("this needs a role on its repository"),
            Caller::User(_) => not_found(),
        }
    }

    /// The caller's role on everything (a global role, within a token's reach).
    pub fn global_role(&self) -> Option<Role> {
        let principal = self.principal()?;
        let role = principal.user.global_role?;
        match &principal.token {
            None => Some(role),
            Some(token) if token.repository.is_none() => Some(role.min(token.scope)),
            Some(_) => None,
        }
    }

    /// Succeeds when the caller holds `needed` globally (creating repositories, managing users).
    pub fn require_global(&self, needed: Role) -> Result<(), ApiError> {
        if self.global_role().is_some_and(|role| role.allows(needed)) {
            return Ok(());
        }
        Err(self.refusal(&format!("this needs the global {needed} role")))
    }

    /// Succeeds for any signed-in caller.
    pub fn require_user(&self) -> Result<&Principal, ApiError> {
        self.principal()
            .ok_or_else(|| self.refusal("sign in or send an API token"))
    }

    fn refusal(&self, message: &str) -> ApiError {
        match self {
            Caller::Anonymous => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("{message}; sign in or send an API token (Authorization: Bearer …)"),
            ),
            Caller::User(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
        }
    }

    /// For a cookie-authenticated form post: the hidden field must repeat the session's token.
    pub fn check_form_csrf(&self, submitted: Option<&str>) -> Result<(), ApiError> {
        let expected = self
            .principal()
            .and_then(|p| p.csrf_token.as_deref())
            .ok_or_else(|| self.refusal("sign in first"))?;
        match submitted {
            Some(submitted) if secrets_equal(submitted, expected) => Ok(()),
            _ => Err(csrf_refusal()),
        }
    }
}

fn csrf_refusal() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf",
        "the request did not carry this session's CSRF token; reload the page and try again",
    )
}

fn unsafe_method(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Resolves the caller from the request: an API token first, then the session cookie.
pub async fn caller_from(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    // Only a bearer token is Slipway's: another scheme (a reverse proxy's Basic sign-in, say)
    // is no credential here, and the session cookie still counts.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        let token = token.trim();
        let Some((token, user)) = state.store.authenticate_token(&hash_token(token)).await? else {
            // A wrong token is an error, not anonymity: the caller meant to be someone.
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the API token is unknown, expired or revoked",
            ));
        };
        return principal(state, user, Some(token), None).await;
    }
    if let Some(cookie) = cookie(headers, SESSION_COOKIE)
        && let Some(session) = state.store.session(&hash_token(cookie)).await?
    {
        return principal(state, session.user, None, Some(session.csrf_token)).await;
    }
    Ok(Caller::Anonymous)
}

async fn principal(
    state: &AppState,
    user: UserRecord,
    token: Option<TokenRecord>,
    csrf_token: Option<String>,
) -> Result<Caller, ApiError> {
    let grants = state
        .store
        .grants_for_user(user.id)
        .await?
        .into_iter()
        .collect();
    Ok(Caller::User(Box::new(Principal {
        user,
        grants,
        token,
        csrf_token,
    })))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = caller_from(state, &parts.headers).await?;
        // Cookie-authenticated API calls that change something must carry the CSRF header;
        // dashboard forms are checked by their handlers (the token is in the form body).
        if unsafe_method(&parts.method)
            && parts.uri.path().starts_with("/api/")
            && let Some(expected) = caller.principal().and_then(|p| p.csrf_token.as_deref())
        {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|sent| secrets_equal(sent, expected)) {
                return Err(csrf_refusal());
            }
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_store::{Limits, ManagedBy};

    fn repository(name: &str, anonymous_read: bool) -> RepositoryRecord {
        RepositoryRecord {
            id: Uuid::now_v7(),
            name: name.parse().expect("name"),
            provider: "github".parse().expect("provider"),
            git_url: "http://127.0.0.1:9/x.git".to_owned(),
            image: "127.0.0.1:5000/x".parse().expect("image"),
            rules: vec![],
            enabled: true,
            allow_unsigned: false,
            allow_legacy_sha1: false,
            supersede_running: false,
            max_concurrent_builds: 0,
            forge_repository: None,
            build_timeout_secs: 3600,
            limits: Limits::default(),
            managed_by: ManagedBy::Api,
            anonymous_read,
            has_webhook_secret: false,
            git_username: None,
            has_git_password: false,
            created_at: 0,
            updated_at: 0,
            status: Default::default(),
            has_status_token: false,
        }
    }

    fn user(global_role: Option<Role>, grants: &[(Uuid, Role)]) -> Principal {
        Principal {
            user: UserRecord {
                id: Uuid::now_v7(),
                name: "someone".to_owned(),
                password_hash: String::new(),
                global_role,
                disabled: false,
                created_at: 0,
            },
            grants: grants.iter().copied().collect(),
            token: None,
            csrf_token: None,
        }
    }

    fn token(scope: Role, repository: Option<&str>) -> TokenRecord {
        TokenRecord {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            name: "ci".to_owned(),
            scope,
            repository: repository.map(str::to_owned),
            created_at: 0,
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn the_higher_of_global_role_and_grant_wins() {
        let repo = repository("acme/web", false);
        let other = repository("acme/api", false);
        let caller = Caller::User(Box::new(user(Some(Role::Read), &[(repo.id, Role::Admin)])));
        assert_eq!(caller.role_on(&repo), Some(Role::Admin));
        assert_eq!(caller.role_on(&other), Some(Role::Read));
        assert!(caller.require(&other, Role::Write).is_err());
    }

    #[test]
    fn a_token_caps_the_role_and_may_be_limited_to_one_repository() {
        let repo = repository("acme/web", false);
        let other = repository("acme/api", false);
        let mut principal = user(Some(Role::Owner), &[]);
        principal.token = Some(token(Role::Write, Some("acme/web")));
        let caller = Caller::User(Box::new(principal));
        assert_eq!(caller.role_on(&repo), Some(Role::Write));
        assert_eq!(caller.role_on(&other), None);
        assert_eq!(
            caller.global_role(),
            None,
            "a repository token has no global reach"
        );
    }

    #[test]
    fn anonymous_callers_read_only_what_allows_it_and_get_401_otherwise() {
        let open = repository("acme/open", true);
        let closed = repository("acme/closed", false);
        let caller = Caller::Anonymous;
        assert!(caller.may(&open, Role::Read));
        assert!(!caller.may(&open, Role::Write));
        let refused = caller.require(&closed, Role::Read).expect_err("closed");
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        let signed_in = Caller::User(Box::new(user(None, &[])));
        assert!(
            signed_in.may(&open, Role::Read),
            "anonymous reading extends to users"
        );
        let refused = signed_in.require(&closed, Role::Read).expect_err("closed");
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(
            hash,
            hash_password("correct horse").expect("hash"),
            "salted"
        );
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; slipway_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn form_csrf_must_match_the_session() {
        let mut principal = user(None, &[]);
        principal.csrf_token = Some("expected-token".to_owned());
        let caller = Caller::User(Box::new(principal));
        assert!(caller.check_form_csrf(Some("expected-token")).is_ok());
        let refused = caller.check_form_csrf(Some("other")).expect_err("wrong");
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(caller.check_form_csrf(None).is_err());
    }
}
