//! `slipway user` and `slipway token`. `user add` works on the database, so that the first
//! administrator can be made before any server runs; the other commands are clients of the
//! API when a server or token is given (so the API's checks and roles apply), and work on the
//! database only when run on the server with its configuration or database named.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use slipway_core::Role;
use slipway_store::{NewToken, Store};

use crate::cli::{TokenCommand, UserCommand};
use crate::client::ApiClient;
use crate::remote::{emit, emit_json};

/// Refuses to fall back to a database the command line did not name: without `--config`,
/// `--database-url` or `--data-dir` (or their variables), the account commands would quietly
/// open `./slipway-data` wherever they happen to run.
pub fn require_database(names_a_database: bool, command: &str) -> Result<()> {
    if names_a_database {
        return Ok(());
    }
    bail!(
        "`slipway {command}` goes through the API with --server and --token (or SLIPWAY_SERVER and SLIPWAY_TOKEN), or works on the server's database when run there with --config, --database-url or --data-dir"
    )
}

/// Reads one line from standard input when it is not a terminal (scripts, CI), otherwise asks
/// on the terminal without echo (twice when `confirm`).
fn read_secret(prompt: &str, confirm: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password(prompt).context("cannot read the password")?;
        if confirm {
            let second =
                rpassword::prompt_password("Again: ").context("cannot read the password")?;
            if first != second {
                bail!("the two passwords differ");
            }
        }
        Ok(first)
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// Reads a new password (see [`read_secret`]) and checks it as the server does.
fn read_password() -> Result<String> {
    let password = read_secret("Password: ", true)?;
    slipway_server::check_password(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

fn parse_role(text: &str) -> Result<Role> {
    text.parse().map_err(anyhow::Error::msg)
}

#[allow(clippy::print_stdout, reason = "these commands print their results")]
pub async fn run_user(command: UserCommand, store: &Store) -> Result<()> {
    match command {
        UserCommand::Add { name, admin, role } => {
            slipway_server::check_user_name(&name).map_err(anyhow::Error::msg)?;
            let role = match (admin, role) {
                (true, _) => Some(Role::Owner),
                (false, Some(role)) => Some(parse_role(&role)?),
                (false, None) => None,
            };
            if store.user_by_name(&name).await?.is_some() {
                bail!(
                    "a user named {name:?} exists; `slipway user passwd {name}` sets a new password"
                );
            }
            let password = read_password()?;
            let hash =
                slipway_server::auth::hash_password(&password).map_err(anyhow::Error::msg)?;
            store
                .create_user(&name, &hash, role)
                .await?
                .with_context(|| format!("a user named {name:?} exists"))?;
            match role {
                Some(role) => println!("Added user {name} with the global {role} role."),
                None => println!("Added user {name}; grant roles per repository through the API."),
            }
        }
        UserCommand::Passwd { name } => {
            if store.user_by_name(&name).await?.is_none() {
                bail!("no user named {name:?}");
            }
            let password = read_password()?;
            let hash =
                slipway_server::auth::hash_password(&password).map_err(anyhow::Error::msg)?;
            store.update_user(&name, Some(&hash), None).await?;
            println!("Set a new password for {name}; their sessions have ended.");
        }
        UserCommand::Disable { name } => {
            if !store.set_user_disabled(&name, true).await? {
                bail!("no user named {name:?}");
            }
            println!("Disabled {name}: their sessions have ended and their tokens no longer work.");
        }
        UserCommand::Enable { name } => {
            if !store.set_user_disabled(&name, false).await? {
                bail!("no user named {name:?}");
            }
            println!("Enabled {name} again.");
        }
        UserCommand::List => {
            for user in store.users().await? {
                let role = user.global_role.map_or("-", Role::as_str);
                let state = if user.disabled { "disabled" } else { "active" };
                println!("{}\t{role}\t{state}", user.name);
            }
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "these commands print their results")]
pub async fn run_token(command: TokenCommand, store: &Store) -> Result<()> {
    match command {
        TokenCommand::Create {
            user,
            name,
            scope,
            repository,
            expires_in_days,
        } => {
            let name = slipway_server::check_token_name(&name).map_err(anyhow::Error::msg)?;
            let Some(user) = user else {
                bail!("on the database, --user says whose token it is");
            };
            let owner = store
                .user_by_name(&user)
                .await?
                .with_context(|| format!("no user named {user:?}"))?;
            let repository_id = match &repository {
                None => None,
                Some(full) => Some(
                    store
                        .repository_by_name(full)
                        .await?
                        .with_context(|| format!("no repository {full}"))?
                        .id,
                ),
            };
            let token = slipway_server::new_token("slwa_").map_err(anyhow::Error::msg)?;
            store
                .create_token(&NewToken {
                    user_id: owner.id,
                    name,
                    token_hash: &slipway_server::hash_token(&token),
                    scope: parse_role(&scope)?,
                    repository_id,
                    expires_at: expires_in_days
                        .map(|days| slipway_store::now_millis() + i64::from(days) * 86_400_000),
                })
                .await?;
            // The token alone on standard output, so that `$(slipway token create …)` works.
            println!("{token}");
            eprintln!("This token is shown only now. Send it as `Authorization: Bearer <token>`.");
        }
    }
    Ok(())
}

/// The user the API token acts as, from `GET /api/me`.
async fn caller_name(api: &ApiClient) -> Result<String> {
    let me = api.get_json(&["api", "me"], &[]).await?;
    me["user"]["name"]
        .as_str()
        .map(str::to_owned)
        .context("the server's /api/me named no user")
}

/// `slipway token create` through the API (`POST /api/tokens`): the token is made for the
/// user of the token that asks, within its scope and reach, as the API decides.
pub async fn token_through_api(
    command: TokenCommand,
    api: &ApiClient,
    json: bool,
) -> Result<ExitCode> {
    match command {
        TokenCommand::Create {
            user,
            name,
            scope,
            repository,
            expires_in_days,
        } => {
            // Checked here too, so a bad name is refused before anything is sent.
            let name = slipway_server::check_token_name(&name).map_err(anyhow::Error::msg)?;
            let scope = parse_role(&scope)?;
            if let Some(user) = user {
                let caller = caller_name(api).await?;
                if user != caller {
                    bail!(
                        "through the API a token is made for its own user ({caller}), not {user}; run this on the server's database (--config or --database-url, without --token), or as {user}"
                    );
                }
            }
            let answer = api
                .post_json(
                    &["api", "tokens"],
                    Some(&json!({
                        "name": name,
                        "scope": scope,
                        "repository": repository,
                        "expires_in_days": expires_in_days,
                    })),
                )
                .await?;
            if json {
                emit_json(&answer)?;
            } else {
                let token = answer["token"]
                    .as_str()
                    .context("the server's answer holds no token")?;
                // The token alone on standard output, so that `$(slipway token create …)` works.
                emit(&format!("{token}\n"))?;
                eprintln!(
                    "This token is shown only now. Send it as `Authorization: Bearer <token>`."
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `slipway user passwd|list|disable|enable` through the API (`GET /api/users`,
/// `PATCH /api/users/{name}`); `user add` never comes here.
pub async fn user_through_api(
    command: UserCommand,
    api: &ApiClient,
    json: bool,
) -> Result<ExitCode> {
    let answer = match command {
        UserCommand::Add { .. } => bail!("`slipway user add` works on the database only"),
        UserCommand::Passwd { name } => {
            // The API asks for the current password when the change is one's own.
            let mut body = serde_json::Map::new();
            if caller_name(api).await? == name {
                body.insert(
                    "current_password".to_owned(),
                    Value::String(read_secret("Current password: ", false)?),
                );
            }
            body.insert("password".to_owned(), Value::String(read_password()?));
            let answer = api
                .patch_json(&["api", "users", &name], &Value::Object(body))
                .await?;
            if !json {
                eprintln!("Set a new password for {name}; their sessions have ended.");
            }
            answer
        }
        UserCommand::Disable { name } => {
            let answer = api
                .patch_json(&["api", "users", &name], &json!({"disabled": true}))
                .await?;
            if !json {
                eprintln!(
                    "Disabled {name}: their sessions have ended and their tokens no longer work."
                );
            }
            answer
        }
        UserCommand::Enable { name } => {
            let answer = api
                .patch_json(&["api", "users", &name], &json!({"disabled": false}))
                .await?;
            if !json {
                eprintln!("Enabled {name} again.");
            }
            answer
        }
        UserCommand::List => {
            let answer = api.get_json(&["api", "users"], &[]).await?;
            if !json {
                let mut lines = String::new();
                for user in answer["users"].as_array().into_iter().flatten() {
                    let role = user["global_role"].as_str().unwrap_or("-");
                    let state = if user["disabled"].as_bool() == Some(true) {
                        "disabled"
                    } else {
                        "active"
                    };
                    lines.push_str(&format!(
                        "{}\t{role}\t{state}\n",
                        user["name"].as_str().unwrap_or_default()
                    ));
                }
                emit(&lines)?;
            }
            answer
        }
    };
    if json {
        emit_json(&answer)?;
    }
    Ok(ExitCode::SUCCESS)
}
