//! `slipway repo …` and `slipway build …`: the API's repositories and builds from the command
//! line. Every command is one or a few API requests; nothing here reads the database.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use reqwest::header::ACCEPT;
use serde_json::{Map, Value, json};

use crate::cli::{BuildCommand, RepoCommand};
use crate::client::{ApiClient, describe_failure, repository_segments};
use crate::output::{
    Fields, Table, duration_between, duration_ms, list, opt, short_commit, short_time, text,
};
use crate::sse::SseParser;

/// The environment variables `repo add` takes secrets from.
const WEBHOOK_SECRET_ENV: &str = "SLIPWAY_WEBHOOK_SECRET";
const GIT_PASSWORD_ENV: &str = "SLIPWAY_GIT_PASSWORD";

/// How many times in a row the live log may fail to connect or break off before `--follow`
/// gives up, and how long it waits before each new attempt.
const MAX_RECONNECTS: u32 = 10;
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// The log endpoint sends a keep-alive every 15 s; this long without a byte is a dead
/// connection, even if the network never said so.
const STREAM_SILENCE: Duration = Duration::from_secs(45);

/// Writes `text` to standard output. A closed pipe (`slipway build list | head`) ends the
/// output quietly instead of failing.
pub fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// Prints a JSON answer as it came, indented.
pub fn emit_json(value: &Value) -> Result<()> {
    emit(&format!("{value:#}\n"))
}

pub async fn run_repo(command: RepoCommand, client: &ApiClient, json: bool) -> Result<ExitCode> {
    match command {
        RepoCommand::Add {
            file,
            webhook_secret_file,
            git_password_file,
        } => {
            let entries = read_repository_file(&file)?;
            for mut entry in entries {
                resolve_secret(
                    &mut entry,
                    "webhook_secret",
                    webhook_secret_file.as_deref(),
                    WEBHOOK_SECRET_ENV,
                )?;
                resolve_secret(
                    &mut entry,
                    "git_password",
                    git_password_file.as_deref(),
                    GIT_PASSWORD_ENV,
                )?;
                let created = client
                    .post_json(&["api", "repositories"], Some(&Value::Object(entry)))
                    .await?;
                if json {
                    emit_json(&created)?;
                } else {
                    emit(&format!(
                        "Added repository {} (managed through the API).\n{}",
                        text(&created["name"]),
                        repository_summary(&created)
                    ))?;
                }
            }
        }
        RepoCommand::List => {
            let answer = client.get_json(&["api", "repositories"], &[]).await?;
            if json {
                return emit_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            let mut table = Table::new(&["NAME", "PROVIDER", "ENABLED", "MANAGED BY", "IMAGE"]);
            for repository in answer["repositories"].as_array().into_iter().flatten() {
                table.row(vec![
                    text(&repository["name"]),
                    text(&repository["provider"]),
                    yes_no(&repository["enabled"]),
                    text(&repository["managed_by"]),
                    text(&repository["image"]),
                ]);
            }
            if table.is_empty() {
                emit("No repositories you may read.\n")?;
            } else {
                emit(&table.render())?;
            }
        }
        RepoCommand::Show { repository } => {
            let (owner, name) = repository_segments(&repository)?;
            let answer = client
                .get_json(&["api", "repositories", owner, name], &[])
                .await?;
            if json {
                return emit_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            emit(&render_repository(&answer))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(value: &Value) -> String {
    match value.as_bool() {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => text(value),
    }
}

/// Where to point the forge, and whether the secrets are in place.
fn repository_summary(repository: &Value) -> String {
    let mut fields = Fields::new();
    fields.add("Webhook URL", opt(&repository["webhook_url"]));
    fields.add(
        "Webhook secret",
        opt(&repository["secrets"]["webhook_secret"]),
    );
    fields.add("Git password", opt(&repository["secrets"]["git_password"]));
    fields.render()
}

/// A repository's settings, then its rules as a table. Secrets appear only as "set" or "not
/// set": the API never returns them.
pub fn render_repository(repository: &Value) -> String {
    let mut fields = Fields::new();
    for (label, key) in [
        ("Name", "name"),
        ("Provider", "provider"),
        ("Git URL", "git_url"),
        ("Git user", "git_username"),
        ("Image", "image"),
        ("Managed by", "managed_by"),
        ("Your role", "your_role"),
        ("Forge repository", "forge_repository"),
        ("Build timeout", "build_timeout"),
        ("Memory limit", "memory_limit"),
        ("Max context", "max_context_size"),
        ("Webhook URL", "webhook_url"),
    ] {
        fields.add(label, opt(&repository[key]));
    }
    fields.add("Enabled", Some(yes_no(&repository["enabled"])));
    if let Some(cpus) = repository["cpu_limit"].as_f64() {
        fields.add("CPU limit", Some(cpus.to_string()));
    }
    if let Some(limit) = repository["max_concurrent_builds"]
        .as_i64()
        .filter(|n| *n > 0)
    {
        fields.add("Concurrent builds", Some(limit.to_string()));
    }
    let flags: Vec<&str> = [
        ("anonymous_read", "anonymous read"),
        ("allow_unsigned_webhooks", "unsigned webhooks allowed"),
        ("allow_legacy_sha1", "legacy SHA-1 signatures allowed"),
        (
            "supersede_running_builds",
            "newer pushes stop running builds",
        ),
    ]
    .into_iter()
    .filter(|(key, _)| repository[*key].as_bool() == Some(true))
    .map(|(_, label)| label)
    .collect();
    if !flags.is_empty() {
        fields.add("Options", Some(flags.join(", ")));
    }
    fields.add(
        "Webhook secret",
        opt(&repository["secrets"]["webhook_secret"]),
    );
    fields.add("Git password", opt(&repository["secrets"]["git_password"]));
    let mut out = fields.render();
    let rules = repository["rules"].as_array().cloned().unwrap_or_default();
    out.push_str("\nRules\n");
    if rules.is_empty() {
        out.push_str("  (none: branch main builds latest from Dockerfile at the root)\n");
    } else {
        let mut table = Table::new(&[
            "TYPE",
            "SOURCE",
            "TAGS",
            "DOCKERFILE",
            "CONTEXT",
            "AUTOBUILD",
        ]);
        for rule in &rules {
            table.row(vec![
                text(&rule["source_type"]),
                text(&rule["source"]),
                text(&rule["tags"]),
                text(&rule["dockerfile"]),
                text(&rule["context"]),
                yes_no(&rule["autobuild"]),
            ]);
        }
        for line in table.render().lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if let Some(grants) = repository["grants"].as_array().filter(|g| !g.is_empty()) {
        out.push_str("\nGrants\n");
        for grant in grants {
            out.push_str(&format!(
                "  {}  {}\n",
                text(&grant["user"]),
                text(&grant["role"])
            ));
        }
    }
    out
}

/// The entries of a repository file: its top-level table, or each of its `repositories`.
fn read_repository_file(path: &Path) -> Result<Vec<Map<String, Value>>> {
    let content =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let document: Value = if is_json {
        serde_json::from_str(&content)
            .with_context(|| format!("{} is not valid JSON", path.display()))?
    } else {
        let table: toml::Table = toml::from_str(&content)
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        serde_json::to_value(table)
            .with_context(|| format!("{} holds values JSON cannot", path.display()))?
    };
    let Value::Object(mut document) = document else {
        bail!(
            "{} must hold one repository's keys (name, provider, git_url, image, …)",
            path.display()
        );
    };
    let Some(listed) = document.remove("repositories") else {
        return Ok(vec![document]);
    };
    if !document.is_empty() {
        let keys: Vec<&str> = document.keys().map(String::as_str).collect();
        eprintln!(
            "slipway: only the repositories of {} are added; ignoring {}",
            path.display(),
            keys.join(", ")
        );
    }
    let Value::Array(listed) = listed else {
        bail!(
            "repositories in {} must be a list of tables",
            path.display()
        );
    };
    let entries: Vec<Map<String, Value>> = listed
        .into_iter()
        .map(|entry| match entry {
            Value::Object(entry) => Ok(entry),
            _ => bail!(
                "every entry of repositories in {} must be a table",
                path.display()
            ),
        })
        .collect::<Result<_>>()?;
    if entries.is_empty() {
        bail!("{} lists no repositories", path.display());
    }
    Ok(entries)
}

/// Puts the secret `key` into `entry` from, in this order: the file given on the command line,
/// the environment variable `env_name`, or the entry's own `<key>_env` / `<key>_file` (as in
/// the configuration file). An inline `<key>` in the entry is kept when none of those is
/// given. The value never appears in a message.
fn resolve_secret(
    entry: &mut Map<String, Value>,
    key: &str,
    flag_file: Option<&Path>,
    env_name: &str,
) -> Result<()> {
    let env_key = entry.remove(&format!("{key}_env"));
    let file_key = entry.remove(&format!("{key}_file"));
    let value = if let Some(path) = flag_file {
        read_secret_file(path)?
    } else if let Some(value) = std::env::var(env_name).ok().filter(|v| !v.is_empty()) {
        value
    } else if let Some(variable) = env_key {
        let Some(variable) = variable.as_str() else {
            bail!("{key}_env must be the name of an environment variable");
        };
        std::env::var(variable)
            .ok()
            .filter(|v| !v.is_empty())
            .with_context(|| format!("{key}_env names {variable}, which is not set"))?
    } else if let Some(path) = file_key {
        let Some(path) = path.as_str() else {
            bail!("{key}_file must be a file's path");
        };
        read_secret_file(Path::new(path))?
    } else {
        return Ok(());
    };
    entry.insert(key.to_owned(), Value::String(value));
    Ok(())
}

/// A secret file's content without its trailing line end.
fn read_secret_file(path: &Path) -> Result<String> {
    let content = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    let value = content.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        bail!("the secret file {} is empty", path.display());
    }
    Ok(value.to_owned())
}

pub async fn run_build(command: BuildCommand, client: &ApiClient, json: bool) -> Result<ExitCode> {
    match command {
        BuildCommand::List {
            repository,
            status,
            git_ref,
            since,
            limit,
            all,
        } => {
            let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            if let Some(repository) = repository {
                query.push(("repository", repository));
            }
            if let Some(status) = status {
                query.push(("status", status));
            }
            if let Some(git_ref) = git_ref {
                query.push(("ref", git_ref));
            }
            if let Some(since) = since {
                query.push(("since", since_time(&since)?));
            }
            list_builds(client, query, all, json).await?;
        }
        BuildCommand::Show { id } => {
            let build = client.get_json(&["api", "builds", &id], &[]).await?;
            if json {
                emit_json(&build)?;
            } else {
                emit(&render_build(&build))?;
            }
        }
        BuildCommand::Logs { id, follow: false } => {
            let request = client.request(Method::GET, client.url(&["api", "builds", &id, "log"]));
            let mut response = client.send(request).await?;
            let mut stdout = std::io::stdout().lock();
            while let Some(bytes) = response
                .chunk()
                .await
                .context("the log broke off; run the command again")?
            {
                if let Err(e) = stdout.write_all(&bytes) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        break;
                    }
                    return Err(e).context("cannot write to standard output");
                }
            }
            let _ = stdout.flush();
        }
        BuildCommand::Logs { id, follow: true } => {
            let succeeded = follow_log(
                client,
                &id,
                json,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
                RECONNECT_DELAY,
            )
            .await?;
            return Ok(if succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        BuildCommand::Cancel { id } => {
            let answer = client
                .post_json(&["api", "builds", &id, "cancel"], None)
                .await?;
            if json {
                emit_json(&answer)?;
            } else if answer["status"] == "cancelling" {
                emit(&format!(
                    "Build {id} is running; it was asked to stop and stops within seconds.\n"
                ))?;
            } else {
                emit(&format!("Build {id} cancelled.\n"))?;
            }
        }
        BuildCommand::Retry { id } => {
            let build = client
                .post_json(&["api", "builds", &id, "retry"], None)
                .await?;
            if json {
                emit_json(&build)?;
            } else {
                emit(&format!(
                    "Queued build {} (a retry of {id}).\n",
                    text(&build["id"])
                ))?;
            }
        }
        BuildCommand::Now {
            repository,
            branch,
            tag,
            commit,
        } => {
            let (owner, name) = repository_segments(&repository)?;
            let (source_type, source_name) = match (branch, tag) {
                (Some(branch), None) => ("Branch", branch),
                (None, Some(tag)) => ("Tag", tag),
                _ => bail!("give either --branch or --tag"),
            };
            let mut body = json!({"source_type": source_type, "source_name": source_name});
            if let Some(commit) = commit {
                body["commit"] = Value::String(commit);
            }
            let answer = client
                .post_json(&["api", "repositories", owner, name, "builds"], Some(&body))
                .await?;
            if json {
                emit_json(&answer)?;
            } else {
                emit(&render_build_now(&answer))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--since`: an RFC 3339 time as it is, or a duration such as `2h` back from now.
fn since_time(since: &str) -> Result<String> {
    if let Some(secs) = slipway_core::units::parse_duration_secs(since) {
        let millis = i64::try_from(secs)
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .and_then(|ms| slipway_store::now_millis().checked_sub(ms));
        return millis
            .and_then(|ms| slipway_server::rfc3339(Some(ms)))
            .with_context(|| format!("--since {since} reaches too far back"));
    }
    Ok(since.to_owned())
}

async fn list_builds(
    client: &ApiClient,
    mut query: Vec<(&str, String)>,
    all: bool,
    json: bool,
) -> Result<()> {
    let mut builds = Vec::new();
    let next = loop {
        let page = client.get_json(&["api", "builds"], &query).await?;
        builds.extend(page["builds"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(cursor) if all => {
                query.retain(|(key, _)| *key != "cursor");
                query.push(("cursor", cursor.to_owned()));
            }
            next => break next.map(str::to_owned),
        }
    };
    if json {
        return emit_json(&json!({"builds": builds, "next_cursor": next}));
    }
    if builds.is_empty() {
        return emit("No builds.\n");
    }
    emit(&render_build_list(&builds))?;
    if next.is_some() {
        eprintln!("slipway: more builds are older than these; --all lists every page");
    }
    Ok(())
}

pub fn render_build_list(builds: &[Value]) -> String {
    let mut table = Table::new(&[
        "ID",
        "STATUS",
        "REPOSITORY",
        "REF",
        "COMMIT",
        "TAGS",
        "QUEUED",
        "DURATION",
        "TRIGGER",
    ]);
    for build in builds {
        table.row(vec![
            text(&build["id"]),
            text(&build["status"]),
            text(&build["repository"]),
            text(&build["ref"]),
            short_commit(&build["commit"]),
            list(&build["tags"]),
            short_time(&build["queued_at"]),
            duration_between(&build["started_at"], &build["finished_at"]),
            text(&build["trigger"]),
        ]);
    }
    table.render()
}

/// A build's detail: its fields, then the timeline with each state's duration.
pub fn render_build(build: &Value) -> String {
    let mut fields = Fields::new();
    fields.add("Build", opt(&build["id"]));
    fields.add("Repository", opt(&build["repository"]));
    fields.add("Ref", opt(&build["ref"]));
    fields.add("Commit", opt(&build["commit"]));
    fields.add("Status", opt(&build["status"]));
    fields.add("Waiting", opt(&build["waiting"]));
    fields.add("Trigger", opt(&build["trigger"]));
    fields.add("Retry of", opt(&build["retry_of"]));
    fields.add("Image", opt(&build["image"]));
    fields.add("Tags", Some(list(&build["tags"])));
    fields.add("Digest", opt(&build["digest"]));
    fields.add("Queued", Some(short_time(&build["queued_at"])));
    if build["started_at"].is_string() {
        fields.add("Started", Some(short_time(&build["started_at"])));
    }
    if build["finished_at"].is_string() {
        fields.add("Finished", Some(short_time(&build["finished_at"])));
        fields.add(
            "Duration",
            Some(duration_between(
                &build["started_at"],
                &build["finished_at"],
            )),
        );
    }
    if let Some(attempts) = build["attempts"].as_i64().filter(|a| *a > 1) {
        fields.add("Attempts", Some(attempts.to_string()));
    }
    fields.add("Error", opt(&build["error"]));
    let mut out = fields.render();
    if let Some(timeline) = build["timeline"].as_array() {
        let mut table = Table::new(&["STATE", "AT", "DURATION", "DETAIL"]);
        for entry in timeline {
            let duration = match entry["duration_ms"].as_i64() {
                Some(ms) => duration_ms(ms),
                None => "-".to_owned(),
            };
            // A long failure message is in "Error" above; the timeline keeps its first line.
            let detail = entry["detail"]
                .as_str()
                .and_then(|d| d.lines().next())
                .unwrap_or("")
                .to_owned();
            table.row(vec![
                text(&entry["state"]),
                short_time(&entry["at"]),
                duration,
                detail,
            ]);
        }
        out.push_str("\nTimeline\n");
        for line in table.render().lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// The answer of "build now": every rule considered, with the build it queued or why not.
fn render_build_now(answer: &Value) -> String {
    let mut table = Table::new(&["BUILD", "SOURCE", "TAGS", "MESSAGE"]);
    for entry in answer.as_array().into_iter().flatten() {
        table.row(vec![
            text(&entry["build_id"]),
            format!(
                "{} {}",
                text(&entry["source_type"]).to_lowercase(),
                text(&entry["source_name"])
            ),
            text(&entry["evaluated_tag_name"]),
            text(&entry["msg"]),
        ]);
    }
    if table.is_empty() {
        return "No rule matched; nothing was queued.\n".to_owned();
    }
    table.render()
}

/// Follows a build's live log (`/api/builds/{id}/log/stream`), writing its text to `out` as
/// it arrives (with `json`, every event as one JSON line) and the build's status changes to
/// `status_out`. A dropped connection is resumed with `Last-Event-ID`, so nothing is missed or
/// printed twice. Returns whether the build succeeded, once the server sends `end`.
pub async fn follow_log(
    client: &ApiClient,
    id: &str,
    json: bool,
    out: &mut impl Write,
    status_out: &mut impl Write,
    reconnect_delay: Duration,
) -> Result<bool> {
    // The end of the log printed so far, and the event id to resume from.
    let mut printed: u64 = 0;
    let mut last_id: Option<String> = None;
    let mut failures = 0;
    let mut last_error: Option<String> = None;
    loop {
        if failures > 0 {
            if failures > MAX_RECONNECTS {
                bail!(
                    "the live log of build {id} broke off {MAX_RECONNECTS} times in a row; `slipway build logs {id}` prints what there is"
                );
            }
            tokio::time::sleep(reconnect_delay).await;
        }
        let url = client.url(&["api", "builds", id, "log", "stream"]);
        let mut request = client
            .request(Method::GET, url)
            .header(ACCEPT, "text/event-stream");
        if let Some(last_id) = &last_id {
            request = request.header("Last-Event-ID", last_id.as_str());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                failures += 1;
                if failures > MAX_RECONNECTS {
                    return Err(client.unreachable(&error));
                }
                writeln!(status_out, "slipway: cannot reach the server; trying again")?;
                continue;
            }
        };
        let status = response.status();
        if !status.is_success() {
            // A server restarting behind a proxy, or a database hiccup, passes; anything else
            // (no such build, no right to read it) is the answer.
            if status.is_server_error() && failures < MAX_RECONNECTS {
                failures += 1;
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            bail!(describe_failure(status, &body, true));
        }
        let mut parser = SseParser::new();
        loop {
            let chunk = match tokio::time::timeout(STREAM_SILENCE, response.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                // Closed, broken, or silent for too long: the connection is gone.
                Ok(Ok(None) | Err(_)) | Err(_) => break,
            };
            for event in parser.push(&chunk) {
                failures = 0;
                if json {
                    let data: Value = serde_json::from_str(&event.data)
                        .unwrap_or(Value::String(event.data.clone()));
                    let line = json!({"event": event.event, "id": event.id, "data": data});
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
                match event.event.as_str() {
                    "log" => {
                        let data: Value = serde_json::from_str(&event.data)
                            .context("the server sent a log event that is not JSON")?;
                        let offset = data["offset"].as_u64().unwrap_or(printed);
                        let text = data["text"].as_str().unwrap_or_default();
                        let end = offset + text.len() as u64;
                        if end > printed {
                            // Text already printed (a server resending after a reconnect) is
                            // skipped, up to a character boundary.
                            let skip = usize::try_from(printed.saturating_sub(offset)).unwrap_or(0);
                            let fresh = text.get(skip..).unwrap_or(text);
                            if !json {
                                out.write_all(fresh.as_bytes())?;
                                out.flush()?;
                            }
                            printed = end;
                        }
                        if let Some(id) = &event.id {
                            last_id = Some(id.clone());
                        }
                    }
                    "status" => {
                        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                        last_error = data["error"].as_str().map(str::to_owned);
                        if !json {
                            writeln!(
                                status_out,
                                "slipway: build {id} is {}",
                                text(&data["status"])
                            )?;
                        }
                    }
                    "end" => {
                        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                        let status = text(&data["status"]);
                        if !json {
                            match &last_error {
                                Some(error) if status != "succeeded" => {
                                    writeln!(status_out, "slipway: build {id} {status}: {error}")?
                                }
                                _ => writeln!(status_out, "slipway: build {id} {status}")?,
                            }
                        }
                        return Ok(status == "succeeded");
                    }
                    _ => {}
                }
            }
        }
        failures += 1;
        if !json {
            writeln!(
                status_out,
                "slipway: the live log's connection dropped; resuming at byte {printed}"
            )?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn build_details_show_the_timeline_with_durations() {
        let build = json!({
            "id": "b1", "repository": "acme/web", "ref": "refs/heads/main",
            "commit": "0123456789abcdef", "status": "failed", "tags": ["latest"],
            "queued_at": "2024-05-01T12:00:00Z", "started_at": "2024-05-01T12:00:01Z",
            "finished_at": "2024-05-01T12:01:01Z", "error": "step 2 failed\nexit 1",
            "digest": null, "attempts": 1,
            "timeline": [
                {"state": "queued", "at": "2024-05-01T12:00:00Z", "duration_ms": 1000, "detail": "queued by a push"},
                {"state": "building", "at": "2024-05-01T12:00:01Z", "duration_ms": 60000, "detail": null},
                {"state": "failed", "at": "2024-05-01T12:01:01Z", "duration_ms": null, "detail": "step 2 failed\nexit 1"},
            ],
        });
        let shown = render_build(&build);
        assert!(shown.contains("Status      failed\n"), "{shown}");
        assert!(shown.contains("Duration    1m00s\n"), "{shown}");
        assert!(
            shown.contains("Error       step 2 failed\n            exit 1\n"),
            "{shown}"
        );
        assert!(
            !shown.contains("Digest"),
            "absent fields are left out: {shown}"
        );
        assert!(
            shown.contains("  queued    2024-05-01 12:00:00Z  1.0s      queued by a push\n"),
            "{shown}"
        );
        assert!(
            shown.contains("  failed    2024-05-01 12:01:01Z  -         step 2 failed\n"),
            "{shown}"
        );
    }

    #[test]
    fn build_lists_are_tables() {
        let shown = render_build_list(&[json!({
            "id": "b1", "status": "succeeded", "repository": "acme/web", "ref": "refs/heads/main",
            "commit": "0123456789abcdef", "tags": ["latest", "1.0"], "queued_at": "2024-05-01T12:00:00Z",
            "started_at": "2024-05-01T12:00:01Z", "finished_at": "2024-05-01T12:00:13.5Z", "trigger": "push",
        })]);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID  STATUS     REPOSITORY"), "{shown}");
        assert!(
            lines[1].contains("0123456789ab  latest, 1.0  2024-05-01 12:00:00Z  12.5s"),
            "{shown}"
        );
    }

    #[test]
    fn repositories_never_show_more_than_whether_a_secret_is_set() {
        let shown = render_repository(&json!({
            "name": "acme/web", "provider": "github", "enabled": true, "managed_by": "api",
            "secrets": {"webhook_secret": "set", "git_password": "not set"},
            "rules": [{"source_type": "branch", "source": "main", "tags": "latest",
                       "dockerfile": "Dockerfile", "context": "/", "autobuild": true}],
        }));
        assert!(shown.contains("Webhook secret  set\n"), "{shown}");
        assert!(shown.contains("Git password    not set\n"), "{shown}");
        assert!(
            shown.contains("  branch  main    latest  Dockerfile  /        yes\n"),
            "{shown}"
        );
    }

    #[test]
    fn secrets_come_from_the_flag_file_then_the_entry_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-the-flag-file\n").expect("write");
        let other = dir.path().join("other");
        std::fs::write(&other, "from-the-entry\r\n").expect("write");
        let mut entry = Map::new();
        entry.insert("webhook_secret_file".into(), json!(other.to_string_lossy()));
        resolve_secret(
            &mut entry,
            "webhook_secret",
            Some(&file),
            "SLIPWAY_TEST_UNSET_VARIABLE",
        )
        .expect("resolved");
        assert_eq!(
            entry.get("webhook_secret"),
            Some(&json!("from-the-flag-file"))
        );
        assert!(!entry.contains_key("webhook_secret_file"));

        let mut entry = Map::new();
        entry.insert("git_password_file".into(), json!(other.to_string_lossy()));
        resolve_secret(
            &mut entry,
            "git_password",
            None,
            "SLIPWAY_TEST_UNSET_VARIABLE",
        )
        .expect("resolved");
        assert_eq!(entry.get("git_password"), Some(&json!("from-the-entry")));

        let mut entry = Map::new();
        entry.insert(
            "git_password_env".into(),
            json!("SLIPWAY_TEST_UNSET_VARIABLE"),
        );
        let error = resolve_secret(
            &mut entry,
            "git_password",
            None,
            "SLIPWAY_TEST_UNSET_VARIABLE",
        )
        .expect_err("an unset variable is an error");
        assert!(error.to_string().contains("not set"), "{error}");
    }

    #[test]
    fn repository_files_hold_one_entry_or_a_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = dir.path().join("one.toml");
        std::fs::write(&one, "name = \"acme/web\"\nprovider = \"github\"\n[[rules]]\nsource_type = \"branch\"\nsource = \"main\"\n").expect("write");
        let entries = read_repository_file(&one).expect("read");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["rules"][0]["source"], "main");
        let many = dir.path().join("many.json");
        std::fs::write(
            &many,
            r#"{"repositories": [{"name": "a/b"}, {"name": "c/d"}]}"#,
        )
        .expect("write");
        assert_eq!(read_repository_file(&many).expect("read").len(), 2);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "[1]").expect("write");
        assert!(read_repository_file(&bad).is_err());
    }

    #[test]
    fn since_takes_durations_back_from_now() {
        let text = since_time("2h").expect("a duration");
        assert!(text.ends_with('Z') && text.contains('T'), "{text}");
        assert_eq!(
            since_time("2024-05-01T00:00:00Z").expect("a time"),
            "2024-05-01T00:00:00Z"
        );
    }

    /// Answers one HTTP request on `listener` with an event stream of `body`, then closes
    /// the connection; returns the request's head.
    async fn serve_once(listener: &tokio::net::TcpListener, body: &str) -> String {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = socket.read(&mut buffer).await.expect("read");
            if read == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..read]);
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}"
        );
        socket.write_all(answer.as_bytes()).await.expect("write");
        socket.shutdown().await.expect("close");
        String::from_utf8_lossy(&head).to_lowercase()
    }

    #[tokio::test]
    async fn a_dropped_stream_resumes_from_the_last_event_id() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let first = serve_once(
                &listener,
                "event: status\ndata: {\"status\":\"running\"}\n\nevent: log\nid: 6\ndata: {\"offset\":0,\"text\":\"hello\\n\"}\n\n",
            )
            .await;
            // The second answer repeats the first line, as a careless server might; the client
            // must not print it twice.
            let second = serve_once(
                &listener,
                "event: log\nid: 6\ndata: {\"offset\":0,\"text\":\"hello\\n\"}\n\nevent: log\nid: 12\ndata: {\"offset\":6,\"text\":\"w\u{f6}rld\\n\"}\n\nevent: status\ndata: {\"status\":\"failed\",\"error\":\"step 1 failed\"}\n\nevent: end\ndata: {\"status\":\"failed\"}\n\n",
            )
            .await;
            (first, second)
        });
        let client = ApiClient::new(
            &format!("http://{address}"),
            Some(slipway_core::Secret::new("slwa_test")),
        )
        .expect("client");
        let (mut out, mut status) = (Vec::new(), Vec::new());
        let succeeded = follow_log(
            &client,
            "b1",
            false,
            &mut out,
            &mut status,
            Duration::from_millis(10),
        )
        .await
        .expect("followed");
        assert!(!succeeded);
        assert_eq!(String::from_utf8_lossy(&out), "hello\nw\u{f6}rld\n");
        let status = String::from_utf8_lossy(&status);
        assert!(status.contains("resuming at byte 6"), "{status}");
        assert!(
            status.contains("build b1 failed: step 1 failed"),
            "{status}"
        );
        let (first, second) = server.await.expect("server");
        assert!(
            first.starts_with("get /api/builds/b1/log/stream "),
            "{first}"
        );
        assert!(first.contains("authorization: bearer slwa_test"), "{first}");
        assert!(!first.contains("last-event-id"), "{first}");
        assert!(second.contains("last-event-id: 6\r\n"), "{second}");
    }
}
