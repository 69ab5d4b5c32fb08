//! The command line.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use slipway_core::Secret;

/// Slipway: a self-hosted automated container build service.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process: the HTTP server and the build workers.
    Serve,
    /// Run only the HTTP server (webhooks, API); builds are left to `slipway worker` processes.
    Web,
    /// Run only build workers, claiming builds from the shared database.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage repositories through the API.
    Repo {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// List, inspect, follow, cancel, retry and start builds through the API.
    Build {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: BuildCommand,
    },
    /// Manage a repository's build-trigger URLs (POST /api/trigger/{token}) through the API.
    Trigger {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: TriggerCommand,
    },
    /// Manage user accounts. `user add` works on the database (the first-run path: no server
    /// needed); the others go through the API when --server or --token is given, and work on
    /// the server's database otherwise (with --config, --database-url or --data-dir).
    User {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens: through the API when --server or --token is given, otherwise on the
    /// server's database (with --config, --database-url or --data-dir).
    Token {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the API's OpenAPI document.
    Openapi,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Add a user. The password is read from standard input (one line) when it is not a
    /// terminal, and asked for twice when it is.
    Add {
        /// The user name: letters, digits, '.', '_' or '-'.
        name: String,
        /// Make the user a global administrator with every right (the global owner role).
        #[arg(long, conflicts_with = "role")]
        admin: bool,
        /// A global role: read, write, admin or owner (none: only what grants give).
        #[arg(long)]
        role: Option<String>,
    },
    /// Set a user's password (read like `user add`'s); their sessions end. Through the API,
    /// setting your own needs your current password, read first (the first line of standard
    /// input, then the new one on the second).
    Passwd { name: String },
    /// List users and their global roles.
    List,
    /// Disable a user: they can no longer sign in, their sessions end, their tokens stop working.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user and print it once.
    Create {
        /// Whose token it is: needed on the database. Through the API a token is always made
        /// for the user of the token that asks, so this may only name that user.
        #[arg(long)]
        user: Option<String>,
        /// A name to recognise it by, e.g. "ci" or "laptop".
        #[arg(long, default_value = "cli")]
        name: String,
        /// The most it may do: read, write, admin or owner (its user's roles still apply).
        #[arg(long, default_value = "read")]
        scope: String,
        /// Limit it to one repository, owner/name.
        #[arg(long)]
        repository: Option<String>,
        /// Let it expire after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TriggerCommand {
    /// Create a trigger and print its URL once; the token is not stored and cannot be shown again.
    Create {
        /// The repository, owner/name.
        repository: String,
        /// A name for the trigger, e.g. "nightly" or "deploy-pipeline".
        name: String,
    },
    /// Give a trigger a new token and print its URL once; the old URL stops working at once.
    Regenerate { repository: String, name: String },
    /// Revoke a trigger; its URL stops working at once.
    Revoke { repository: String, name: String },
    /// List a repository's triggers (names and times; never tokens).
    List { repository: String },
}

/// How the API's client commands reach the server. The token is kept in a [`Secret`], so
/// that printing the parsed command line (in a debug message, say) never shows it.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The Slipway server's base URL, e.g. https://builds.example.com [default: the configured public_url].
    #[arg(long, env = "SLIPWAY_SERVER", global = true, hide_env_values = true)]
    pub server: Option<String>,
    /// An API token from `slipway token create` (the environment variable keeps it out of the process list).
    #[arg(
        long,
        env = "SLIPWAY_TOKEN",
        global = true,
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub token: Option<Secret>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    /// Whether the command line says which server to talk to or with which token, which makes
    /// an account command a client of the API rather than of the database.
    pub fn names_a_server(&self) -> bool {
        self.server.is_some() || self.token.is_some()
    }
}

fn parse_secret(text: &str) -> Result<Secret, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the token is empty".to_owned());
    }
    Ok(Secret::new(text))
}

impl Command {
    /// How to reach the API, for the commands that are its clients.
    /// The client arguments of a command that talks to the API: always for `repo`, `build`
    /// and `trigger`; for the account commands with an API equivalent (all but `user add`)
    /// when a server or a token is given.
    pub fn client_args(&self) -> Option<&ClientArgs> {
        match self {
            Command::Repo { client, .. }
            | Command::Build { client, .. }
            | Command::Trigger { client, .. } => Some(client),
            Command::User { client, command } => (!matches!(command, UserCommand::Add { .. })
                && client.names_a_server())
            .then_some(client),
            Command::Token { client, .. } => client.names_a_server().then_some(client),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum RepoCommand {
    /// Create a repository managed through the API from a TOML or JSON file holding one
    /// `[[repositories]]` entry's keys (or a `repositories` list). Secrets come from
    /// --webhook-secret-file / --git-password-file, the environment variables
    /// SLIPWAY_WEBHOOK_SECRET / SLIPWAY_GIT_PASSWORD, or the file's `*_env` and `*_file` keys;
    /// never from a flag's value.
    Add {
        /// The file: `.json` is read as JSON, anything else as TOML.
        file: PathBuf,
        /// A file holding the webhook secret (a trailing newline is ignored).
        #[arg(long)]
        webhook_secret_file: Option<PathBuf>,
        /// A file holding the git password or token (a trailing newline is ignored).
        #[arg(long)]
        git_password_file: Option<PathBuf>,
    },
    /// List the repositories you may read.
    List,
    /// Show a repository's settings (secrets only as set or not set).
    Show {
        /// The repository, owner/name.
        repository: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum BuildCommand {
    /// List builds, newest first.
    List {
        /// Only this repository's builds, owner/name.
        #[arg(long)]
        repository: Option<String>,
        /// Only builds with this status: queued, running, succeeded, failed, cancelled or skipped.
        #[arg(long)]
        status: Option<String>,
        /// Only builds of this full ref, e.g. refs/heads/main.
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// Only builds queued since then: an RFC 3339 time, or a duration back from now such as "2h".
        #[arg(long)]
        since: Option<String>,
        /// Builds per page (1 to 200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Fetch every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Show a build: status, timeline with durations, tags, digest and error.
    Show { id: String },
    /// Print a build's log.
    Logs {
        id: String,
        /// Follow the log live until the build ends; the exit status is 0 only if it succeeded.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a queued or running build.
    Cancel { id: String },
    /// Queue a new build repeating a finished one.
    Retry { id: String },
    /// Build a branch or tag of a repository now.
    #[command(group = clap::ArgGroup::new("source").required(true).args(["branch", "tag"]))]
    Now {
        /// The repository, owner/name.
        repository: String,
        /// The branch to build (its head, as the remote has it now).
        #[arg(long)]
        branch: Option<String>,
        /// The tag to build.
        #[arg(long)]
        tag: Option<String>,
        /// Build this commit of the branch or tag instead of its head (it must be on it).
        #[arg(long)]
        commit: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings and where each came from; secrets are redacted.
    Show,
}

/// Process settings. Each may also be given in the config file under the same name (with `_`
/// for `-`) and through its environment variable; a flag wins over the environment, which
/// wins over the file.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// The TOML config file with repositories, registries and any of these settings.
    #[arg(long, env = "SLIPWAY_CONFIG", global = true, hide_env_values = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SLIPWAY_LISTEN", global = true, hide_env_values = true)]
    pub listen: Option<SocketAddr>,
    /// The base URL people and forges reach this server at, used in links [default: http://<listen>].
    #[arg(
        long,
        env = "SLIPWAY_PUBLIC_URL",
        global = true,
        hide_env_values = true
    )]
    pub public_url: Option<String>,
    /// Directory for the SQLite database, git mirrors and build scratch space [default: ./slipway-data].
    #[arg(long, env = "SLIPWAY_DATA_DIR", global = true, hide_env_values = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [default: sqlite in the data dir].
    #[arg(
        long,
        env = "SLIPWAY_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// How many builds this process runs at once [default: 2].
    #[arg(long, env = "SLIPWAY_WORKERS", global = true, hide_env_values = true)]
    pub workers: Option<usize>,
    /// The Docker Engine to build with, e.g. unix:///var/run/docker.sock [default: DOCKER_HOST, else the local socket].
    #[arg(
        long,
        env = "SLIPWAY_DOCKER_HOST",
        global = true,
        hide_env_values = true
    )]
    pub docker_host: Option<String>,
    /// How many times a build is attempted when infrastructure (engine, network, registry, a lost worker) fails it [default: 3].
    #[arg(
        long,
        env = "SLIPWAY_MAX_ATTEMPTS",
        global = true,
        hide_env_values = true
    )]
    pub max_attempts: Option<u32>,
    /// Seconds a worker's claim on a build lasts without a heartbeat; after that another worker may take the build over [default: 60].
    #[arg(
        long,
        env = "SLIPWAY_LEASE_SECONDS",
        global = true,
        hide_env_values = true
    )]
    pub lease_seconds: Option<u64>,
    /// On SIGTERM, seconds running builds may go on before they are handed back to the queue [default: 30].
    #[arg(
        long,
        env = "SLIPWAY_SHUTDOWN_GRACE_SECONDS",
        global = true,
        hide_env_values = true
    )]
    pub shutdown_grace_seconds: Option<u64>,
    /// Disk for git mirrors before the least recently used are evicted, e.g. "10g" [default: 10g].
    #[arg(
        long,
        env = "SLIPWAY_MIRROR_CACHE_LIMIT",
        global = true,
        hide_env_values = true
    )]
    pub mirror_cache_limit: Option<String>,
    /// Disk for images Slipway built before the oldest are removed, e.g. "20g" [default: 20g].
    #[arg(
        long,
        env = "SLIPWAY_IMAGE_CACHE_LIMIT",
        global = true,
        hide_env_values = true
    )]
    pub image_cache_limit: Option<String>,
    /// How long verified webhook bodies (kept for replay) and refused requests stay in the deliveries log [default: 30].
    #[arg(
        long,
        env = "SLIPWAY_DELIVERY_RETENTION_DAYS",
        global = true,
        hide_env_values = true
    )]
    pub delivery_retention_days: Option<u32>,
    /// Let outgoing webhooks and commit-status APIs reach loopback, private and link-local
    /// addresses, but not cloud metadata services (off: a build service must not become a way
    /// into the internal network) [default: false].
    #[arg(
        long,
        env = "SLIPWAY_ALLOW_PRIVATE_WEBHOOK_TARGETS",
        global = true,
        hide_env_values = true
    )]
    pub allow_private_webhook_targets: Option<bool>,
    /// Private networks or addresses outgoing webhooks and commit-status APIs may reach, as a
    /// comma-separated list of CIDRs, e.g. "10.20.0.0/16,192.168.7.9"; the only way to allow a
    /// cloud metadata address [default: none].
    #[arg(
        long,
        env = "SLIPWAY_ALLOWED_PRIVATE_NETWORKS",
        global = true,
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub allowed_private_networks: Option<Vec<String>>,
    /// Seconds before a failed commit status or webhook request is tried again; each later
    /// wait is six times longer, up to an hour, for 8 attempts in all [default: 5].
    #[arg(
        long,
        env = "SLIPWAY_NOTIFICATION_RETRY_SECONDS",
        global = true,
        hide_env_values = true
    )]
    pub notification_retry_seconds: Option<u64>,
    /// Attempts at a commit status or webhook request before it is given up as failed [default: 8].
    #[arg(
        long,
        env = "SLIPWAY_NOTIFICATION_MAX_ATTEMPTS",
        global = true,
        hide_env_values = true
    )]
    pub notification_max_attempts: Option<u32>,
    /// Seconds a commit status or webhook request may take before the attempt counts as
    /// failed and is retried [default: 10].
    #[arg(
        long,
        env = "SLIPWAY_NOTIFICATION_TIMEOUT_SECONDS",
        global = true,
        hide_env_values = true
    )]
    pub notification_timeout_seconds: Option<u64>,
    /// Log format [default: text].
    #[arg(
        long,
        env = "SLIPWAY_LOG_FORMAT",
        global = true,
        hide_env_values = true,
        value_enum
    )]
    pub log_format: Option<LogFormat>,
}

/// The ids of the settings above, for looking up where each value came from.
pub const SETTING_IDS: [&str; 19] = [
    "config",
    "listen",
    "public_url",
    "data_dir",
    "database_url",
    "workers",
    "docker_host",
    "log_format",
    "delivery_retention_days",
    "allow_private_webhook_targets",
    "allowed_private_networks",
    "notification_retry_seconds",
    "notification_max_attempts",
    "notification_timeout_seconds",
    "max_attempts",
    "lease_seconds",
    "shutdown_grace_seconds",
    "mirror_cache_limit",
    "image_cache_limit",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}
