//! `slipway trigger …` over the API, and the git-backed ref resolver the trigger endpoint
//! (and "build now") uses.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};
use slipway_build::{GitSource, remote_refs};
use slipway_server::RefResolver;
use slipway_store::Store;

use crate::cli::TriggerCommand;
use crate::client::{ApiClient, repository_segments};
use crate::config::Config;
use crate::output::{Table, short_time, text};
use crate::remote::{emit, emit_json};

/// Resolves branch and tag heads with `git ls-remote` (git2) against the repository's remote:
/// a configured repository's with the configured credentials, one managed through the API
/// with the credentials stored for it.
#[derive(Debug)]
pub struct GitRefResolver {
    sources: HashMap<String, GitSource>,
    store: Store,
}

impl GitRefResolver {
    pub fn new(config: &Config, store: Store) -> Self {
        Self {
            sources: config
                .repositories
                .iter()
                .map(|r| (r.name.to_string(), r.git.clone()))
                .collect(),
            store,
        }
    }

    /// Where a repository managed through the API is fetched from, as the workers do it.
    async fn stored_source(&self, repository: &str) -> Result<GitSource, String> {
        match slipway_worker::stored_git_source(&self.store, repository).await {
            Ok(Some(source)) => Ok(source),
            Ok(None) => Err(format!(
                "repository {repository} is neither configured nor managed through the API"
            )),
            Err(e) => {
                tracing::warn!(%repository, error = %e, "cannot read a repository's git access");
                Err(format!("cannot read repository {repository}; try again"))
            }
        }
    }
}

impl RefResolver for GitRefResolver {
    fn remote_refs<'a>(&'a self, repository: &'a str) -> slipway_server::RemoteRefs<'a> {
        Box::pin(async move {
            let source = match self.sources.get(repository) {
                Some(source) => source.clone(),
                None => self.stored_source(repository).await?,
            };
            tokio::task::spawn_blocking(move || remote_refs(&source))
                .await
                .map_err(|e| format!("listing the remote's refs failed: {e}"))?
                .map_err(|e| e.message)
        })
    }
}

/// Runs a trigger command against the API. `create` and `regenerate` print a sentence and then
/// the URL alone on its own line, the only time it is shown.
pub async fn run(command: TriggerCommand, client: &ApiClient, json: bool) -> Result<ExitCode> {
    match command {
        TriggerCommand::Create {
            repository,
            name: trigger,
        } => {
            let (owner, name) = repository_segments(&repository)?;
            let answer = client
                .post_json(
                    &["api", "repositories", owner, name, "triggers"],
                    Some(&json!({ "name": trigger })),
                )
                .await?;
            if json {
                emit_json(&answer)?;
            } else {
                emit(&format!(
                    "Created trigger {trigger:?} for {repository}. Its URL is shown only now:\n{}\n",
                    text(&answer["url"])
                ))?;
            }
        }
        TriggerCommand::Regenerate {
            repository,
            name: trigger,
        } => {
            let (owner, name) = repository_segments(&repository)?;
            let answer = client
                .post_json(
                    &[
                        "api",
                        "repositories",
                        owner,
                        name,
                        "triggers",
                        &trigger,
                        "regenerate",
                    ],
                    None,
                )
                .await?;
            if json {
                emit_json(&answer)?;
            } else {
                emit(&format!(
                    "New URL for trigger {trigger:?} of {repository} (the old one no longer works):\n{}\n",
                    text(&answer["url"])
                ))?;
            }
        }
        TriggerCommand::Revoke {
            repository,
            name: trigger,
        } => {
            let (owner, name) = repository_segments(&repository)?;
            client
                .delete(&["api", "repositories", owner, name, "triggers", &trigger])
                .await?;
            if json {
                emit_json(&json!({"name": trigger, "revoked": true}))?;
            } else {
                emit(&format!("Revoked trigger {trigger:?} of {repository}.\n"))?;
            }
        }
        TriggerCommand::List { repository } => {
            let (owner, name) = repository_segments(&repository)?;
            let answer = client
                .get_json(&["api", "repositories", owner, name, "triggers"], &[])
                .await?;
            if json {
                emit_json(&answer)?;
            } else {
                emit(&render_triggers(&answer))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The trigger list: names, state and times; the API never returns tokens.
fn render_triggers(answer: &Value) -> String {
    let mut table = Table::new(&["NAME", "STATE", "CREATED", "LAST USED", "REQUESTS"]);
    for trigger in answer["triggers"].as_array().into_iter().flatten() {
        let state = if trigger["revoked_at"].is_string() {
            "revoked"
        } else {
            "active"
        };
        let last_used = if trigger["last_used_at"].is_string() {
            short_time(&trigger["last_used_at"])
        } else {
            "never".to_owned()
        };
        let requests = trigger["requests"].as_array().map_or(0, Vec::len);
        table.row(vec![
            text(&trigger["name"]),
            state.to_owned(),
            short_time(&trigger["created_at"]),
            last_used,
            requests.to_string(),
        ]);
    }
    if table.is_empty() {
        return format!("{} has no triggers.\n", text(&answer["repository"]));
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_lists_show_state_and_use() {
        let shown = render_triggers(&json!({
            "repository": "acme/web",
            "triggers": [
                {"name": "ci", "created_at": "2024-05-01T12:00:00Z", "revoked_at": null,
                 "last_used_at": "2024-05-02T08:00:00Z", "requests": [{}, {}]},
                {"name": "old", "created_at": "2024-04-01T12:00:00Z", "revoked_at": "2024-04-02T12:00:00Z",
                 "last_used_at": null, "requests": []},
            ],
        }));
        assert_eq!(
            shown,
            "NAME  STATE    CREATED               LAST USED             REQUESTS\n\
             ci    active   2024-05-01 12:00:00Z  2024-05-02 08:00:00Z  2\n\
             old   revoked  2024-04-01 12:00:00Z  never                 0\n"
        );
        assert_eq!(
            render_triggers(&json!({"repository": "acme/web", "triggers": []})),
            "acme/web has no triggers.\n"
        );
    }
}
