//! Users, their roles, API tokens and dashboard sessions.
//!
//! Passwords arrive here already hashed (Argon2id, by the server), and tokens and session
//! cookies as SHA-256 digests: the database never holds anything a reader could log in with.

use slipway_core::Role;
use uuid::Uuid;

use crate::{Backend, BeginWrite, Result, Store, StoreError, now_millis};

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: Uuid,
    pub name: String,
    pub password_hash: String,
    pub global_role: Option<Role>,
    pub disabled: bool,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    name: String,
    password_hash: String,
    global_role: Option<String>,
    disabled: bool,
    created_at: i64,
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn parse_role(text: &str) -> Result<Role> {
    text.parse().map_err(|e| corrupt("role", e))
}

fn parse_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| corrupt("id", e))
}

impl TryFrom<UserRow> for UserRecord {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<Self> {
        Ok(Self {
            id: parse_id(&row.id)?,
            name: row.name,
            password_hash: row.password_hash,
            global_role: row.global_role.as_deref().map(parse_role).transpose()?,
            disabled: row.disabled,
            created_at: row.created_at,
        })
    }
}

/// An API token as listed (never its value, which is shown once at creation).
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    /// The most the token may do, whatever its user may.
    pub scope: Role,
    /// The one repository the token may touch, if limited.
    pub repository: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    user_id: String,
    name: String,
    scope: String,
    repository: Option<String>,
    created_at: i64,
    last_used_at: Option<i64>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(row: TokenRow) -> Result<Self> {
        Ok(Self {
            id: parse_id(&row.id)?,
            user_id: parse_id(&row.user_id)?,
            name: row.name,
            scope: parse_role(&row.scope)?,
            repository: row.repository,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// A new API token's settings.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub user_id: Uuid,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub scope: Role,
    pub repository_id: Option<Uuid>,
    pub expires_at: Option<i64>,
}

/// A signed-in dashboard session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: UserRecord,
    pub csrf_token: String,
    pub expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    csrf_token: String,
    expires_at: i64,
    #[sqlx(flatten)]
    user: UserRow,
}

macro_rules! user_columns {
    () => {
        "u.id, u.name, u.password_hash, u.global_role, u.disabled, u.created_at"
    };
}

macro_rules! token_select {
    () => {
        "SELECT t.id, t.user_id, t.name, t.scope, r.name AS repository, t.created_at,
             t.last_used_at, t.expires_at, t.revoked_at
         FROM api_tokens t LEFT JOIN repositories r ON r.id = t.repository_id"
    };
}

impl Store {
    /// Creates a user; `None` when the name is taken.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        global_role: Option<Role>,
    ) -> Result<Option<UserRecord>> {
        let now = now_millis();
        let inserted = with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO users (id, name, password_hash, global_role, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (name) DO NOTHING",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(name)
            .bind(password_hash)
            .bind(global_role.map(Role::as_str))
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            return Ok(None);
        }
        self.user_by_name(name).await
    }

    /// Replaces a user's password hash and role; every session of theirs ends, so a changed
    /// password locks out whoever knew the old one.
    pub async fn update_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        global_role: Option<Option<Role>>,
    ) -> Result<bool> {
        let now = now_millis();
        let changed = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query(
                "UPDATE users SET password_hash = COALESCE($2, password_hash),
                     global_role = CASE WHEN $3 THEN $4 ELSE global_role END, updated_at = $5
                 WHERE name = $1",
            )
            .bind(name)
            .bind(password_hash)
            .bind(global_role.is_some())
            .bind(global_role.flatten().map(Role::as_str))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if password_hash.is_some() {
                sqlx::query(
                    "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE name = $1)",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            changed
        });
        Ok(changed == 1)
    }

    /// Disables a user (their sessions end at once; tokens stop working) or enables them again.
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        let changed = with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let changed =
                sqlx::query("UPDATE users SET disabled = $2, updated_at = $3 WHERE name = $1")
                    .bind(name)
                    .bind(disabled)
                    .bind(now_millis())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if disabled {
                sqlx::query(
                    "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE name = $1)",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            changed
        });
        Ok(changed == 1)
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users u WHERE u.name = $1"
            ))
            .bind(name)
            .fetch_optional(pool)
            .await?
        });
        row.map(UserRecord::try_from).transpose()
    }

    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users u ORDER BY u.name"
            ))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(UserRecord::try_from).collect()
    }

    pub async fn user_count(&self) -> Result<i64> {
        let (count,): (i64,) = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM users")
                .fetch_one(pool)
                .await?
        });
        Ok(count)
    }

    /// Gives a user a role on one repository (replacing any earlier one), or takes it away.
    pub async fn set_grant(
        &self,
        repository_id: Uuid,
        user_id: Uuid,
        role: Option<Role>,
    ) -> Result<()> {
        with_pool!(self, write, |pool| {
            match role {
                Some(role) => {
                    sqlx::query(
                        "INSERT INTO repository_grants (repository_id, user_id, role, created_at)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (repository_id, user_id) DO UPDATE SET role = $3",
                    )
                    .bind(repository_id.to_string())
                    .bind(user_id.to_string())
                    .bind(role.as_str())
                    .bind(now_millis())
                    .execute(pool)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "DELETE FROM repository_grants WHERE repository_id = $1 AND user_id = $2",
                    )
                    .bind(repository_id.to_string())
                    .bind(user_id.to_string())
                    .execute(pool)
                    .await?;
                }
            }
        });
        Ok(())
    }

    /// The user's per-repository roles, by repository id.
    pub async fn grants_for_user(&self, user_id: Uuid) -> Result<Vec<(Uuid, Role)>> {
        let rows: Vec<(String, String)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT repository_id, role FROM repository_grants WHERE user_id = $1")
                .bind(user_id.to_string())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(repository, role): (String, String)| {
                Ok((parse_id(&repository)?, parse_role(&role)?))
            })
            .collect()
    }

    /// Who has a role on one repository: (user name, role).
    pub async fn grants_for_repository(&self, repository_id: Uuid) -> Result<Vec<(String, Role)>> {
        let rows: Vec<(String, String)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT u.name, g.role FROM repository_grants g JOIN users u ON u.id = g.user_id
                 WHERE g.repository_id = $1 ORDER BY u.name",
            )
            .bind(repository_id.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(user, role): (String, String)| Ok((user, parse_role(&role)?)))
            .collect()
    }

    pub async fn create_token(&self, token: &NewToken<'_>) -> Result<TokenRecord> {
        let id = Uuid::now_v7();
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO api_tokens (id, user_id, name, token_hash, scope, repository_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id.to_string())
            .bind(token.user_id.to_string())
            .bind(token.name)
            .bind(token.token_hash)
            .bind(token.scope.as_str())
            .bind(token.repository_id.map(|r| r.to_string()))
            .bind(now_millis())
            .bind(token.expires_at)
            .execute(pool)
            .await?;
        });
        let row: TokenRow = with_pool!(self, write, |pool| {
            sqlx::query_as(concat!(token_select!(), " WHERE t.id = $1"))
                .bind(id.to_string())
                .fetch_one(pool)
                .await?
        });
        TokenRecord::try_from(row)
    }

    pub async fn tokens_for_user(&self, user_id: Uuid) -> Result<Vec<TokenRecord>> {
        let rows: Vec<TokenRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                token_select!(),
                " WHERE t.user_id = $1 ORDER BY t.created_at"
            ))
            .bind(user_id.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(TokenRecord::try_from).collect()
    }

    /// Revokes one of the user's tokens; false when there is no such active token.
    pub async fn revoke_token(&self, user_id: Uuid, token_id: Uuid) -> Result<bool> {
        let changed = with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            )
            .bind(token_id.to_string())
            .bind(user_id.to_string())
            .bind(now_millis())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    /// The usable token with this hash and its (enabled) user. Marks it used, at most once a
    /// minute, so that a busy client does not turn every read into a write.
    pub async fn authenticate_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(TokenRecord, UserRecord)>> {
        let now = now_millis();
        let row: Option<(TokenRow, UserRow)> = with_pool!(self, read, |pool| {
            let token: Option<TokenRow> = sqlx::query_as(concat!(
                token_select!(),
                " WHERE t.token_hash = $1 AND t.revoked_at IS NULL
                     AND (t.expires_at IS NULL OR t.expires_at > $2)"
            ))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            match token {
                None => None,
                Some(token) => {
                    let user: Option<UserRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        user_columns!(),
                        " FROM users u WHERE u.id = $1 AND u.disabled = FALSE"
                    ))
                    .bind(&token.user_id)
                    .fetch_optional(pool)
                    .await?;
                    user.map(|user| (token, user))
                }
            }
        });
        let Some((token, user)) = row else {
            return Ok(None);
        };
        let token = TokenRecord::try_from(token)?;
        if token.last_used_at.is_none_or(|used| now - used > 60_000) {
            with_pool!(self, write, |pool| {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(token.id.to_string())
                    .bind(now)
                    .execute(pool)
                    .await?;
            });
        }
        Ok(Some((token, UserRecord::try_from(user)?)))
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: Uuid,
        csrf_token: &str,
        expires_at: i64,
    ) -> Result<()> {
        let now = now_millis();
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin_write().await?;
            // Expired sessions are swept whenever someone signs in, which keeps the table
            // small without a timer.
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(user_id.to_string())
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The live session with this cookie hash, and its enabled user.
    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>> {
        let row: Option<SessionRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT s.csrf_token, s.expires_at, ",
                user_columns!(),
                "
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = FALSE"
            ))
            .bind(token_hash)
            .bind(now_millis())
            .fetch_optional(pool)
            .await?
        });
        row.map(|row| {
            Ok(SessionRecord {
                user: UserRecord::try_from(row.user)?,
                csrf_token: row.csrf_token,
                expires_at: row.expires_at,
            })
        })
        .transpose()
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        with_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
