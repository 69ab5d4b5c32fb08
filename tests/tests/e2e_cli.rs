//! The CLI as a client of the API, against a real `slipway serve`: a repository added with
//! `slipway repo add`, built from a signed webhook, listed, followed live, shown with its
//! timeline, retried, built on demand and cancelled; secrets never shown; a wrong token refused
//! with a clear message. And the account commands: through the API when given a server or a
//! token, on the database only when run on the server.

use std::cell::RefCell;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use slipway_e2e::{Fixture, GIT_USER, RepoFile, Rule, Slipway, binary_path};

/// How long a build may take to be claimed by the only worker.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the CLI as an operator on another machine and keeps everything it printed, so that the
/// test can check at the end that no secret was ever shown.
struct Operator<'a> {
    slipway: &'a Slipway,
    printed: RefCell<Vec<String>>,
}

impl<'a> Operator<'a> {
    fn new(slipway: &'a Slipway) -> Self {
        Self {
            slipway,
            printed: RefCell::new(Vec::new()),
        }
    }

    fn keep(&self, args: &[&str], output: Output) -> Output {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        self.printed
            .borrow_mut()
            .push(format!("$ slipway {args:?}\n{stdout}{stderr}"));
        output
    }

    /// `slipway <args>` as the administrator, whatever the outcome.
    fn output(&self, args: &[&str]) -> Output {
        self.keep(args, self.slipway.client_output(args))
    }

    /// `slipway <args>` with a command the caller prepared (another token, more environment).
    fn output_of(&self, args: &[&str], command: &mut std::process::Command) -> Output {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run slipway {args:?}: {e}"));
        self.keep(args, output)
    }

    /// `slipway <args>` as the administrator; fails the test unless it succeeds, and returns
    /// its standard output.
    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "slipway {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `slipway <args> --json`, parsed.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let printed = self.run(&all);
        serde_json::from_str(&printed)
            .unwrap_or_else(|e| panic!("slipway {all:?} printed no JSON ({e}):\n{printed}"))
    }

    fn everything_printed(&self) -> String {
        self.printed.borrow().join("\n")
    }
}

/// The id of the one build a "build now" answer queued.
#[track_caller]
fn queued_id(answer: &Value) -> String {
    let entries = answer
        .as_array()
        .unwrap_or_else(|| panic!("build now answers a list: {answer:#}"));
    assert_eq!(entries.len(), 1, "one rule builds the branch: {answer:#}");
    entries[0]["build_id"]
        .as_str()
        .unwrap_or_else(|| panic!("nothing was queued: {answer:#}"))
        .to_owned()
}

#[test]
fn the_cli_manages_repositories_and_builds_through_the_api() {
    let fx = Fixture::new("cli");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    // The slow step names the fixture, so the engine's shared layer cache cannot skip it.
    fx.repo.commit_on(
        "slow",
        "Slow version",
        &[RepoFile::text(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo {} > /fixture.txt && sleep 300\n",
                fx.rig.base_image,
                fx.name()
            ),
        )],
    );
    // Slipway knows the registry, but not the repository: that comes through the API. One
    // worker, so that a second build waits while the slow one runs.
    let mut config = fx.config(Vec::new());
    config.repositories.clear();
    let slipway = fx.slipway(&config).workers(1).start();
    let operator = Operator::new(&slipway);

    // `repo add` from a configuration entry; the git password from a file, the webhook secret
    // from the environment, neither ever on the command line.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let password_file = dir.path().join("git-password");
    std::fs::write(&password_file, format!("{}\n", fx.git.password())).expect("write");
    let repository_file = dir.path().join("repository.toml");
    std::fs::write(
        &repository_file,
        format!(
            "name = \"{name}\"\nprovider = \"github\"\ngit_url = \"{url}\"\ngit_username = \"{GIT_USER}\"\n\
             image = \"{image}\"\n\n\
             [[rules]]\nsource_type = \"branch\"\nsource = \"main\"\ntags = \"latest\"\n\n\
             [[rules]]\nsource_type = \"branch\"\nsource = \"slow\"\ntags = \"slow\"\n",
            name = fx.name(),
            url = fx.repo.url(),
            image = fx.image(),
        ),
    )
    .expect("write");
    let args = [
        "repo",
        "add",
        repository_file.to_str().expect("a UTF-8 path"),
        "--git-password-file",
        password_file.to_str().expect("a UTF-8 path"),
    ];
    let added = operator.output_of(
        &args,
        slipway
            .client_command(Some(slipway.admin_token()), &args)
            .env("SLIPWAY_WEBHOOK_SECRET", &fx.webhook_secret),
    );
    assert!(
        added.status.success(),
        "repo add failed: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let printed = String::from_utf8_lossy(&added.stdout);
    assert!(
        printed.contains(&format!("Added repository {}", fx.name()))
            && printed.contains(&format!("/hooks/{}", fx.name())),
        "{printed}"
    );

    let listed = operator.run(&["repo", "list"]);
    assert!(
        listed.lines().next().is_some_and(|h| h.starts_with("NAME")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with(fx.name()) && line.contains("api")),
        "{listed}"
    );
    let shown = operator.run(&["repo", "show", fx.name()]);
    for label in ["Webhook secret", "Git password"] {
        assert!(
            shown
                .lines()
                .any(|line| line.starts_with(label) && line.ends_with(" set")),
            "{label} is shown as set:\n{shown}"
        );
    }
    assert!(
        shown.lines().any(|line| line.contains("branch  slow")),
        "the rules are listed:\n{shown}"
    );
    let shown = operator.json(&["repo", "show", fx.name()]);
    assert_eq!(shown["managed_by"], "api", "{shown:#}");
    assert_eq!(shown["secrets"]["webhook_secret"], "set", "{shown:#}");
    assert_eq!(shown["secrets"]["git_password"], "set", "{shown:#}");

    // A signed push builds; `build list` shows it and `build logs --follow` prints the log as
    // it is written, until the end, and exits 0.
    let pushed = fx.push_main(&slipway);
    let list = operator.run(&["build", "list", "--repository", fx.name()]);
    assert!(list.lines().any(|line| line.starts_with(&pushed)), "{list}");
    let followed = operator.output(&["build", "logs", &pushed, "--follow"]);
    assert!(
        followed.status.success(),
        "following a build that succeeds exits 0: {}",
        String::from_utf8_lossy(&followed.stderr)
    );
    let build = slipway.wait_for_success(&pushed);
    assert_eq!(
        String::from_utf8_lossy(&followed.stdout),
        slipway.log(&pushed),
        "the followed log is the whole log, once"
    );
    assert!(
        String::from_utf8_lossy(&followed.stderr).contains("succeeded"),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    assert_eq!(
        operator.run(&["build", "logs", &pushed]),
        slipway.log(&pushed)
    );

    let shown = operator.run(&["build", "show", &pushed]);
    let digest = build["digest"].as_str().expect("a digest");
    for expected in [
        "Status      succeeded",
        digest,
        "Timeline",
        "queued by a push",
        "latest",
    ] {
        assert!(shown.contains(expected), "{expected:?} in:\n{shown}");
    }
    let timeline_states: Vec<&str> = shown
        .lines()
        .skip_while(|line| *line != "Timeline")
        .skip(2)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        timeline_states.first(),
        Some(&"queued"),
        "the timeline starts queued:\n{shown}"
    );
    assert_eq!(
        timeline_states.last(),
        Some(&"succeeded"),
        "and ends succeeded:\n{shown}"
    );

    // Retry, and "build this ref now".
    let retried = operator.json(&["build", "retry", &pushed]);
    let retry = retried["id"].as_str().expect("the retry's id").to_owned();
    assert_eq!(retried["retry_of"], pushed.as_str(), "{retried:#}");
    slipway.wait_for_success(&retry);
    let now = operator.json(&["build", "now", fx.name(), "--branch", "main"]);
    let manual = queued_id(&now);
    let manual_build = slipway.wait_for_success(&manual);
    assert_eq!(manual_build["trigger"], "manual", "{manual_build:#}");

    // The slow branch takes the only worker; a build queued behind it is cancelled at once,
    // the running one within seconds, and following it then exits 1.
    let printed = operator.run(&["build", "now", fx.name(), "--branch", "slow"]);
    assert!(
        printed
            .lines()
            .next()
            .is_some_and(|h| h.starts_with("BUILD")),
        "{printed}"
    );
    let slow = printed
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no build in:\n{printed}"))
        .to_owned();
    slipway.wait_for_status(&slow, "running", RUNNING_TIMEOUT);
    let waiting = queued_id(&operator.json(&["build", "now", fx.name(), "--branch", "main"]));
    let cancelled = operator.run(&["build", "cancel", &waiting]);
    assert_eq!(cancelled, format!("Build {waiting} cancelled.\n"));
    slipway.wait_for_end(&waiting, "cancelled", Duration::from_secs(10));
    let stopping = operator.run(&["build", "cancel", &slow]);
    assert!(stopping.contains("asked to stop"), "{stopping}");
    let followed = operator.output(&["build", "logs", &slow, "--follow"]);
    assert_eq!(
        followed.status.code(),
        Some(1),
        "following a build that did not succeed exits 1: {}",
        String::from_utf8_lossy(&followed.stderr)
    );
    assert!(
        String::from_utf8_lossy(&followed.stderr).contains("cancelled"),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    slipway.wait_for_end(&slow, "cancelled", Duration::from_secs(60));
    let again = operator.output(&["build", "cancel", &slow]);
    assert!(
        !again.status.success(),
        "a finished build cannot be cancelled"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("(HTTP 409)"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Filters and pagination: five builds in all, two of them cancelled.
    let all = operator.json(&[
        "build",
        "list",
        "--repository",
        fx.name(),
        "--limit",
        "2",
        "--all",
    ]);
    let ids: Vec<&str> = all["builds"]
        .as_array()
        .expect("a builds array")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 5, "every page: {all:#}");
    for id in [&pushed, &retry, &manual, &slow, &waiting] {
        assert!(ids.contains(&id.as_str()), "{id} in {all:#}");
    }
    let first_page = operator.output(&["build", "list", "--repository", fx.name(), "--limit", "2"]);
    assert_eq!(
        String::from_utf8_lossy(&first_page.stdout).lines().count(),
        3,
        "a header and one page"
    );
    assert!(String::from_utf8_lossy(&first_page.stderr).contains("--all"));
    let cancelled = operator.run(&[
        "build",
        "list",
        "--repository",
        fx.name(),
        "--status",
        "cancelled",
        "--since",
        "1h",
    ]);
    let mut listed: Vec<&str> = cancelled
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    listed.sort_unstable();
    let mut expected = vec![slow.as_str(), waiting.as_str()];
    expected.sort_unstable();
    assert_eq!(listed, expected, "{cancelled}");

    // Mistakes get the API's message and a non-zero exit.
    let missing = operator.output(&["build", "show", "00000000-0000-0000-0000-000000000000"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no build"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let args = ["repo", "list"];
    let wrong = operator.output_of(
        &args,
        &mut slipway.client_command(Some("slwa_not-a-real-token"), &args),
    );
    assert!(!wrong.status.success(), "a wrong token is refused");
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        message.contains("HTTP 401") && message.contains("--token"),
        "{message}"
    );
    let anonymous = operator.output_of(&args, &mut slipway.client_command(None, &args));
    assert!(!anonymous.status.success(), "no token is refused");
    let message = String::from_utf8_lossy(&anonymous.stderr);
    assert!(message.contains("SLIPWAY_TOKEN"), "{message}");

    // Nothing the CLI printed, anywhere, held a secret or the token.
    let everything = operator.everything_printed();
    for (what, secret) in [
        ("the webhook secret", fx.webhook_secret.as_str()),
        ("the git password", fx.git.password()),
        ("the API token", slipway.admin_token()),
    ] {
        assert!(
            !everything.contains(secret),
            "the CLI printed {what}:\n{everything}"
        );
    }
}

/// Standard output of a run that must succeed, trimmed.
#[track_caller]
fn succeeded(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Standard error of a run that must fail.
#[track_caller]
fn failed(what: &str, output: &Output) -> String {
    assert!(
        !output.status.success(),
        "{what} succeeded:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn account_commands_go_through_the_api_with_a_token_and_to_the_database_only_on_the_server() {
    let fx = Fixture::new("cli-accounts");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);

    // Through the API: a token made with a read-scoped token is capped at read, whatever it
    // asks for, because the API decides (the database path would have made an owner token).
    let read_only = succeeded(
        "token create through the API",
        &slipway.client_output(&["token", "create", "--name", "read-only", "--scope", "read"]),
    );
    assert!(read_only.starts_with("slwa_"), "{read_only}");
    let child: Value = serde_json::from_str(&succeeded(
        "token create with a read-scoped token",
        &slipway
            .client_command(
                Some(&read_only),
                &[
                    "token", "create", "--name", "child", "--scope", "owner", "--json",
                ],
            )
            .output()
            .expect("slipway runs"),
    ))
    .expect("JSON");
    assert_eq!(child["scope"], "read", "{child:#}");
    assert_eq!(child["name"], "child", "{child:#}");
    let tokens = slipway.get("/api/tokens");
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    assert!(
        tokens.text.contains("\"read-only\"") && tokens.text.contains("\"child\""),
        "both were made for the administrator: {}",
        tokens.text
    );
    // Through the API a token is its own user's.
    let message = failed(
        "token create for another user through the API",
        &slipway.client_output(&["token", "create", "--user", "someone-else"]),
    );
    assert!(message.contains("its own user"), "{message}");
    let listed = succeeded(
        "user list through the API",
        &slipway.client_output(&["user", "list"]),
    );
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with(&format!("{}\towner\t", Slipway::ADMIN))),
        "{listed}"
    );

    // One name rule on both paths: at most 100 characters (not bytes), at least one.
    let too_long = "n".repeat(101);
    let hundred = "é".repeat(100);
    for name in [too_long.as_str(), "   "] {
        for (path, output) in [
            (
                "through the API",
                slipway.client_output(&["token", "create", "--name", name]),
            ),
            (
                "on the database",
                slipway.cli_on_database(
                    &["token", "create", "--user", Slipway::ADMIN, "--name", name],
                    "",
                ),
            ),
        ] {
            let message = failed(&format!("a token named {name:?} {path}"), &output);
            assert!(
                message.contains("name must be 1 to 100 characters"),
                "{path}: {message}"
            );
        }
    }
    let through_api = succeeded(
        "a 100-character name through the API",
        &slipway.client_output(&["token", "create", "--name", &hundred]),
    );
    let on_database = succeeded(
        "a 100-character name on the database",
        &slipway.cli_on_database(
            &[
                "token",
                "create",
                "--user",
                Slipway::ADMIN,
                "--name",
                &hundred,
            ],
            "",
        ),
    );
    for token in [&through_api, &on_database] {
        assert!(token.starts_with("slwa_"), "{token}");
    }
    let tokens = slipway.get("/api/tokens");
    assert_eq!(
        tokens.text.matches(&hundred).count(),
        2,
        "both paths stored the name: {}",
        tokens.text
    );

    // With neither a server nor the server's database named, nothing is guessed.
    let nowhere = tempfile::tempdir().expect("a temporary directory");
    let mut command = std::process::Command::new(binary_path());
    command
        .args(["token", "create", "--user", Slipway::ADMIN])
        .current_dir(nowhere.path())
        .stdin(std::process::Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SLIPWAY_") {
            command.env_remove(name);
        }
    }
    let message = failed(
        "token create with nothing named",
        &command.output().expect("slipway runs"),
    );
    assert!(
        message.contains("--server") && message.contains("--config"),
        "{message}"
    );
    assert!(
        !nowhere.path().join("slipway-data").exists(),
        "no database was made where the command ran"
    );
}
