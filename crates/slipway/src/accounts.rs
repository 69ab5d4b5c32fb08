//! `slipway user` and `slipway token`: accounts managed directly in the database, so that the
//! first administrator can be made before any server runs.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result, bail};
use slipway_core::Role;
use slipway_store::{NewToken, Store};

use crate::cli::{TokenCommand, UserCommand};

/// Reads a password: one line from standard input when it is not a terminal (scripts, CI),
/// otherwise asked for twice on the terminal without echo.
fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let second = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        if first != second {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
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
                    name: &name,
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
