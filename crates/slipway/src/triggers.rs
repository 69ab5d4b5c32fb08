//! `slipway trigger …`, and the git-backed ref resolver the trigger endpoint uses.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use slipway_build::{GitSource, remote_refs};
use slipway_server::{RefResolver, hash_token};
use slipway_store::Store;

use crate::cli::TriggerCommand;
use crate::config::Config;

/// Resolves branch and tag heads with `git ls-remote` (git2) against the configured remote,
/// with the configured credentials.
#[derive(Debug)]
pub struct GitRefResolver {
    sources: HashMap<String, GitSource>,
}

impl GitRefResolver {
    pub fn new(config: &Config) -> Self {
        Self {
            sources: config
                .repositories
                .iter()
                .map(|r| (r.name.to_string(), r.git.clone()))
                .collect(),
        }
    }
}

impl RefResolver for GitRefResolver {
    fn remote_refs<'a>(&'a self, repository: &'a str) -> slipway_server::RemoteRefs<'a> {
        Box::pin(async move {
            let source = self
                .sources
                .get(repository)
                .cloned()
                .ok_or_else(|| format!("repository {repository} is not configured"))?;
            tokio::task::spawn_blocking(move || remote_refs(&source))
                .await
                .map_err(|e| format!("listing the remote's refs failed: {e}"))?
                .map_err(|e| e.message)
        })
    }
}

/// A new trigger token (`slw_` and 256 random bits).
fn new_token() -> Result<String> {
    slipway_server::new_token("slw_").map_err(anyhow::Error::msg)
}

#[allow(clippy::print_stdout, reason = "these commands print their results")]
pub async fn run(command: TriggerCommand, store: &Store, public_url: &str) -> Result<()> {
    let public_url = public_url.trim_end_matches('/');
    let repository = |name: &str| {
        let name = name.to_owned();
        async move {
            store
                .repository_by_name(&name)
                .await?
                .filter(|r| r.enabled)
                .with_context(|| format!("no repository {name} is configured"))
        }
    };
    match command {
        TriggerCommand::Create {
            repository: name,
            name: trigger,
        } => {
            check_trigger_name(&trigger)?;
            let repo = repository(&name).await?;
            let token = new_token()?;
            if store
                .create_trigger(repo.id, &trigger, &hash_token(&token))
                .await?
                .is_none()
            {
                bail!(
                    "{name} already has an active trigger {trigger:?}; use `slipway trigger regenerate` for a new token"
                );
            }
            println!("Created trigger {trigger:?} for {name}. Its URL is shown only now:");
            println!("{public_url}/api/trigger/{token}");
        }
        TriggerCommand::Regenerate {
            repository: name,
            name: trigger,
        } => {
            let repo = repository(&name).await?;
            let token = new_token()?;
            if !store
                .regenerate_trigger(repo.id, &trigger, &hash_token(&token))
                .await?
            {
                bail!("{name} has no active trigger {trigger:?}");
            }
            println!("New URL for trigger {trigger:?} of {name} (the old one no longer works):");
            println!("{public_url}/api/trigger/{token}");
        }
        TriggerCommand::Revoke {
            repository: name,
            name: trigger,
        } => {
            let repo = repository(&name).await?;
            if !store.revoke_trigger(repo.id, &trigger).await? {
                bail!("{name} has no active trigger {trigger:?}");
            }
            println!("Revoked trigger {trigger:?} of {name}.");
        }
        TriggerCommand::List { repository: name } => {
            let repo = repository(&name).await?;
            for trigger in store.triggers_for_repository(repo.id).await? {
                let state = if trigger.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let used = match slipway_server::rfc3339(trigger.last_used_at) {
                    Some(time) => format!("last used {time}"),
                    None => "never used".to_owned(),
                };
                println!("{}\t{state}\t{used}", trigger.name);
            }
        }
    }
    Ok(())
}

fn check_trigger_name(name: &str) -> Result<()> {
    slipway_server::check_trigger_name(name).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let (a, b) = (new_token().expect("token"), new_token().expect("token"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 43, "32 bytes in unpadded base64");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
        );
    }
}
