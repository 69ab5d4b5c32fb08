//! The command line and configuration, through the real binary.

use std::path::Path;
use std::process::{Command, Output};

fn slipway(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
    command.current_dir(dir).args(args);
    // Start from a clean slate so the developer's own SLIPWAY_* variables do not leak in.
    for (key, _) in std::env::vars() {
        if key.starts_with("SLIPWAY_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("the slipway binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const CONFIG: &str = r#"
public_url = "http://builds.example.test"
listen = "127.0.0.1:9100"
workers = 3

[[registries]]
host = "127.0.0.1:5000"
username = "ci"
password_env = "TEST_REGISTRY_PASSWORD"

[[repositories]]
name = "acme/web"
provider = "github"
git_url = "http://127.0.0.1:9000/acme/web.git"
git_username = "bot"
git_password_env = "TEST_GIT_TOKEN"
webhook_secret_env = "TEST_WEB_SECRET"
image = "127.0.0.1:5000/acme/web"

  [[repositories.rules]]
  source_type = "tag"
  source = "/^v([0-9.]+)$/"
  tags = '{\1},latest'
"#;

const SECRETS: [(&str, &str); 3] = [
    ("TEST_REGISTRY_PASSWORD", "registry-pass-123"),
    ("TEST_GIT_TOKEN", "git-token-456"),
    ("TEST_WEB_SECRET", "webhook-secret-789"),
];

#[test]
fn config_show_reports_each_source_and_redacts_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("slipway.toml"), CONFIG).expect("write config");
    let mut env = SECRETS.to_vec();
    env.push(("SLIPWAY_WORKERS", "5"));
    env.push(("SLIPWAY_DELIVERY_RETENTION_DAYS", "7"));
    env.push(("SLIPWAY_LISTEN", "127.0.0.1:9200"));
    env.push((
        "SLIPWAY_ALLOWED_PRIVATE_NETWORKS",
        "10.20.0.0/16,192.168.7.9",
    ));
    env.push(("SLIPWAY_NOTIFICATION_TIMEOUT_SECONDS", "3"));
    let output = slipway(
        dir.path(),
        &[
            "config",
            "show",
            "--config",
            "slipway.toml",
            "--listen",
            "127.0.0.1:9300",
        ],
        &env,
    );
    let shown = text(&output);
    assert!(output.status.success(), "{shown}");
    // A flag beats the environment, which beats the file, which beats the default.
    assert!(
        shown.contains("listen         127.0.0.1:9300  (flag)"),
        "{shown}"
    );
    assert!(shown.contains("workers        5  (environment)"), "{shown}");
    assert!(
        shown.contains("delivery_retention_days 7  (environment)"),
        "{shown}"
    );
    assert!(shown.contains("max_attempts   3  (default)"), "{shown}");
    assert!(
        shown.contains("allowed_private_networks 10.20.0.0/16,192.168.7.9/32  (environment)"),
        "{shown}"
    );
    assert!(
        shown.contains("notification_max_attempts 8  (default)"),
        "{shown}"
    );
    assert!(
        shown.contains("notification_timeout_seconds 3  (environment)"),
        "{shown}"
    );
    assert!(
        shown.contains("public_url     http://builds.example.test  (config file)"),
        "{shown}"
    );
    assert!(
        shown.contains("data_dir       ./slipway-data  (default)"),
        "{shown}"
    );
    assert!(
        shown.contains("rules: tag /^v([0-9.]+)$/ -> {\\1},latest"),
        "{shown}"
    );
    for (_, secret) in SECRETS {
        assert!(!shown.contains(secret), "secret leaked: {shown}");
    }
    assert!(
        shown.contains("password=*** (from environment variable TEST_REGISTRY_PASSWORD)"),
        "{shown}"
    );
}

#[test]
fn config_errors_name_the_file_and_key_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a str);
    let with_status_token = [
        SECRETS[0],
        SECRETS[1],
        SECRETS[2],
        ("TEST_STATUS_TOKEN", "st-0"),
    ];
    let reporting = |extra: &str| {
        CONFIG.replace(
            "image = \"127.0.0.1:5000/acme/web\"\n",
            &format!(
                "image = \"127.0.0.1:5000/acme/web\"\nreport_status = true\nstatus_token_env = \"TEST_STATUS_TOKEN\"\n{extra}"
            ),
        )
    };
    let cases: Vec<Case> = vec![
        (
            "status-no-token.toml",
            CONFIG.replace(
                "image = \"127.0.0.1:5000/acme/web\"\n",
                "image = \"127.0.0.1:5000/acme/web\"\nreport_status = true\n",
            ),
            &SECRETS,
            "report_status needs status_token_env",
        ),
        (
            "status-ambiguous-url.toml",
            reporting("status_api_url = 'https://evil.example\\@api.github.com'\n"),
            &with_status_token,
            "backslash",
        ),
        (
            "status-credentials.toml",
            reporting("status_api_url = 'https://bot:pw@api.example'\n"),
            &with_status_token,
            "must not carry credentials",
        ),
        (
            "status-repository.toml",
            reporting("status_repository = 'acme/web/extra'\n"),
            &with_status_token,
            "two parts",
        ),
        (
            "networks.toml",
            CONFIG.replace(
                "workers = 3\n",
                "workers = 3\nallowed_private_networks = [\"10.20.1.0/16\"]\n",
            ),
            &SECRETS,
            "allowed_private_networks (config file): \"10.20.1.0/16\": 10.20.1.0/16 has bits set past its prefix; the network is 10.20.0.0/16",
        ),
        (
            "rule-names.toml",
            CONFIG.replace(
                "  source_type = \"tag\"\n",
                "  name = \"release\"\n  source_type = \"tag\"\n",
            ) + "\n  [[repositories.rules]]\n  name = \"release\"\n  source_type = \"branch\"\n  source = \"main\"\n",
            &SECRETS,
            "the name \"release\" is already another rule's",
        ),
        (
            "empty-secret.toml",
            CONFIG.replace(
                "webhook_secret_env = \"TEST_WEB_SECRET\"",
                "webhook_secret = \"\"",
            ),
            &SECRETS,
            "webhook_secret is empty",
        ),
        (
            "escape.toml",
            CONFIG.replace("'{\\1},latest'", "\"{\\1},latest\""),
            &SECRETS,
            "hint: write capture-group placeholders in a single-quoted TOML string",
        ),
        (
            "missing-secret.toml",
            CONFIG.to_owned(),
            &SECRETS[..2],
            "webhook_secret_env: environment variable TEST_WEB_SECRET is not set",
        ),
        (
            "typo.toml",
            CONFIG.replace("source_type", "source_kind"),
            &SECRETS,
            "unknown field `source_kind`",
        ),
        (
            "bad-regex.toml",
            CONFIG.replace("/^v([0-9.]+)$/", "/^v(/"),
            &SECRETS,
            "is not a valid regex",
        ),
        (
            "bad-image.toml",
            CONFIG.replace("127.0.0.1:5000/acme/web\"\n", "127.0.0.1:5000/Acme/Web\"\n"),
            &SECRETS,
            "image",
        ),
        (
            "creds-in-url.toml",
            CONFIG.replace("http://127.0.0.1:9000", "http://bot:pw@127.0.0.1:9000"),
            &SECRETS,
            "git_url must not contain credentials",
        ),
    ];
    for (file, contents, env, expected) in cases {
        std::fs::write(dir.path().join(file), contents).expect("write config");
        let output = slipway(dir.path(), &["config", "show", "--config", file], env);
        let shown = text(&output);
        assert_eq!(output.status.code(), Some(2), "{file}: {shown}");
        assert!(
            shown.contains(file),
            "{file}: the error names the file: {shown}"
        );
        assert!(
            shown.contains(expected),
            "{file}: expected {expected:?} in {shown}"
        );
        assert!(
            !shown.contains("git-token-456") && !shown.contains(":pw@"),
            "{file}: secret leaked: {shown}"
        );
    }
}

#[test]
fn serve_creates_its_database_and_answers_health_with_no_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            &listen,
            "--docker-host",
            "unix:///nonexistent/docker.sock",
            "--log-format",
            "json",
        ])
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"))
        .spawn()
        .expect("serve starts");
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(mut stream) = std::net::TcpStream::connect(&listen) {
            use std::io::{Read, Write};
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .expect("write");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            healthy = answer.starts_with("HTTP/1.1 200");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "GET /healthz answered 200");
    // --log-format json: every line slipway logged is a JSON object with a level and a message.
    let logged = std::fs::read_to_string(dir.path().join("stderr.log")).expect("stderr");
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "slipway is listening"),
        "{logged}"
    );
    assert!(lines.iter().all(|l| l["level"].is_string()), "{logged}");
    assert!(
        dir.path().join("slipway-data/slipway.db").exists(),
        "the default SQLite database was created"
    );
}
