//! Settings: each comes from a flag, a `SLIPWAY_*` environment variable, the TOML file given
//! with `--config`, or its default, in that order. Repositories and registries come from the
//! file only. Secrets are named by environment variable or file and resolved here, once.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use serde::Deserialize;
use slipway_build::{GitAuth, GitSource, RegistryAuth, strip_credentials};
use slipway_core::units::{self, parse_duration_secs, parse_size_bytes};
use slipway_core::{BuildRule, ImageName, Provider, RepositoryName, Secret};
use slipway_store::RepositorySpec;

use crate::cli::{LogFormat, SettingsArgs};

/// Where an effective value came from, for `config show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::File => "config file",
            Source::Default => "default",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The TOML file. Unknown keys are errors, so a misspelt key never silently does nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    public_url: Option<String>,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    workers: Option<usize>,
    docker_host: Option<String>,
    log_format: Option<LogFormat>,
    delivery_retention_days: Option<u32>,
    allow_private_webhook_targets: Option<bool>,
    allowed_private_networks: Option<Vec<String>>,
    notification_retry_seconds: Option<u64>,
    notification_max_attempts: Option<u32>,
    notification_timeout_seconds: Option<u64>,
    max_attempts: Option<u32>,
    lease_seconds: Option<u64>,
    shutdown_grace_seconds: Option<u64>,
    mirror_cache_limit: Option<String>,
    image_cache_limit: Option<String>,
    #[serde(default)]
    registries: Vec<RegistryConfig>,
    #[serde(default)]
    repositories: Vec<RepositoryConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryConfig {
    host: String,
    username: String,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositoryConfig {
    name: RepositoryName,
    provider: Provider,
    git_url: String,
    git_username: Option<String>,
    git_password: Option<String>,
    git_password_env: Option<String>,
    git_password_file: Option<PathBuf>,
    git_ssh_key_file: Option<PathBuf>,
    git_ssh_passphrase_env: Option<String>,
    git_ssh_host_key: Option<String>,
    webhook_secret: Option<String>,
    webhook_secret_env: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    image: ImageName,
    #[serde(default)]
    rules: Vec<BuildRule>,
    /// Accept deliveries without a signature (a wrong one is still refused). Off by default.
    #[serde(default)]
    allow_unsigned_webhooks: bool,
    /// GitHub: accept the legacy SHA-1 `X-Hub-Signature` when no SHA-256 one is sent.
    #[serde(default)]
    allow_legacy_sha1: bool,
    /// A newer push to a ref also stops that rule's running builds (queued ones always).
    #[serde(default)]
    supersede_running_builds: bool,
    /// How long one build may run before it is stopped and failed: "90s", "45m", "2h".
    #[serde(default = "default_build_timeout")]
    build_timeout: String,
    /// How many of this repository's builds may run at once (0: no limit).
    #[serde(default)]
    max_concurrent_builds: u32,
    /// Memory for each build step, e.g. "2g" (the engine's default when unset).
    memory_limit: Option<String>,
    /// CPUs for each build step, e.g. 1.5 (unlimited when unset).
    cpu_limit: Option<f64>,
    /// The largest build context, e.g. "500m".
    #[serde(default = "default_max_context_size")]
    max_context_size: String,
    /// How often to compare the rules' refs on the remote with what was built, e.g. "10m";
    /// off when unset.
    reconcile_interval: Option<String>,
    /// The repository as the forge names it ("acme/web", a GitLab "group/sub/project", a
    /// Bitbucket Data Center "PROJ/slug"); pushes naming another repository are ignored.
    forge_repository: Option<String>,
    /// Anyone, signed in or not, may read this repository's builds, logs and badge.
    #[serde(default)]
    anonymous_read: bool,
    /// Post commit statuses (pending, then the result) to the forge for every build.
    #[serde(default)]
    report_status: bool,
    /// The forge's API base URL (default: the public GitHub, Bitbucket Cloud or GitLab API).
    status_api_url: Option<String>,
    /// The repository as the forge's API names it (default: forge_repository, then name).
    status_repository: Option<String>,
    status_token: Option<String>,
    status_token_env: Option<String>,
    status_token_file: Option<PathBuf>,
}

fn default_max_context_size() -> String {
    "1g".to_owned()
}

fn default_build_timeout() -> String {
    "60m".to_owned()
}

/// How a secret was given, for `config show` (which never prints the value).
#[derive(Debug, Clone)]
pub enum SecretOrigin {
    Env(String),
    File(PathBuf),
    Inline,
}

impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretOrigin::Env(name) => write!(f, "from environment variable {name}"),
            SecretOrigin::File(path) => write!(f, "from file {}", path.display()),
            SecretOrigin::Inline => f.write_str("inline in the config file"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub host: String,
    pub username: String,
    pub password: Secret,
    pub password_origin: SecretOrigin,
}

#[derive(Debug, Clone)]
pub struct Repository {
    pub name: RepositoryName,
    pub provider: Provider,
    pub git: GitSource,
    pub webhook_secret: Secret,
    pub webhook_secret_origin: SecretOrigin,
    pub image: ImageName,
    pub rules: Vec<BuildRule>,
    pub allow_unsigned_webhooks: bool,
    pub allow_legacy_sha1: bool,
    pub supersede_running_builds: bool,
    pub build_timeout_secs: u64,
    pub limits: slipway_store::Limits,
    pub reconcile_every: Option<std::time::Duration>,
    pub forge_repository: Option<String>,
    pub anonymous_read: bool,
    pub status: slipway_store::StatusConfig,
    /// The forge API token commit statuses are posted with.
    pub status_token: Option<Secret>,
}

/// Everything the process runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: Option<PathBuf>,
    pub listen: Setting<SocketAddr>,
    pub public_url: Setting<String>,
    pub data_dir: Setting<PathBuf>,
    pub database_url: Setting<String>,
    pub workers: Setting<usize>,
    pub docker_host: Setting<Option<String>>,
    pub log_format: Setting<LogFormat>,
    pub delivery_retention_days: Setting<u32>,
    pub allow_private_webhook_targets: Setting<bool>,
    pub allowed_private_networks: Setting<Vec<slipway_notify::ssrf::IpNetwork>>,
    pub notification_retry_seconds: Setting<u64>,
    pub notification_max_attempts: Setting<u32>,
    pub notification_timeout_seconds: Setting<u64>,
    pub max_attempts: Setting<u32>,
    pub lease_seconds: Setting<u64>,
    pub shutdown_grace_seconds: Setting<u64>,
    pub mirror_cache_limit: Setting<String>,
    pub image_cache_limit: Setting<String>,
    pub registries: Vec<Registry>,
    pub repositories: Vec<Repository>,
    /// Things worth telling the operator at start-up (e.g. inline secrets).
    pub warnings: Vec<String>,
}

fn pick<T>(
    flag: Option<T>,
    flag_source: Option<ValueSource>,
    file: Option<T>,
    default: impl FnOnce() -> T,
) -> Setting<T> {
    match (flag, flag_source) {
        (Some(value), Some(ValueSource::EnvVariable)) => Setting {
            value,
            source: Source::Env,
        },
        (Some(value), _) => Setting {
            value,
            source: Source::Flag,
        },
        (None, _) => match file {
            Some(value) => Setting {
                value,
                source: Source::File,
            },
            None => Setting {
                value: default(),
                source: Source::Default,
            },
        },
    }
}

impl Config {
    /// Loads the file named by `--config` (if any) and merges it with flags and environment.
    pub fn load(args: &SettingsArgs, sources: &HashMap<&'static str, ValueSource>) -> Result<Self> {
        let (file, file_config) = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {}", path.display()))?;
                let parsed: FileConfig = toml::from_str(&text).map_err(|e| {
                    // Only the position and the message: the offending line itself could hold
                    // an inline secret (a misspelt password key, say).
                    let position = e.span().map_or_else(String::new, |span| {
                        let before = &text[..span.start.min(text.len())];
                        let line = before.matches('\n').count() + 1;
                        let column =
                            before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                        format!("line {line}, column {column}: ")
                    });
                    anyhow::anyhow!(
                        "config file {}: {position}{}{}",
                        path.display(),
                        e.message().trim_end(),
                        toml_hint(&text, &e)
                    )
                })?;
                (Some(path.clone()), parsed)
            }
            None => (None, FileConfig::default()),
        };
        let shown_file = file.as_deref().map_or_else(
            || "(no config file)".to_owned(),
            |p| p.display().to_string(),
        );
        let src = |name: &str| sources.get(name).copied();

        let listen = pick(args.listen, src("listen"), file_config.listen, || {
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let data_dir = pick(
            args.data_dir.clone(),
            src("data_dir"),
            file_config.data_dir,
            || PathBuf::from("./slipway-data"),
        );
        let database_url = pick(
            args.database_url.clone(),
            src("database_url"),
            file_config.database_url,
            || format!("sqlite://{}", data_dir.value.join("slipway.db").display()),
        );
        let workers = pick(args.workers, src("workers"), file_config.workers, || 2);
        let docker_host = pick(
            args.docker_host.clone().map(Some),
            src("docker_host"),
            file_config.docker_host.map(Some),
            || std::env::var("DOCKER_HOST").ok(),
        );
        let public_url = pick(
            args.public_url.clone(),
            src("public_url"),
            file_config.public_url,
            || format!("http://{}", listen.value),
        );
        let log_format = pick(
            args.log_format,
            src("log_format"),
            file_config.log_format,
            || LogFormat::Text,
        );
        let max_attempts = pick(
            args.max_attempts,
            src("max_attempts"),
            file_config.max_attempts,
            || 3,
        );
        if max_attempts.value == 0 {
            bail!("{shown_file}: max_attempts must be at least 1");
        }
        let lease_seconds = pick(
            args.lease_seconds,
            src("lease_seconds"),
            file_config.lease_seconds,
            || 60,
        );
        if lease_seconds.value < 2 {
            bail!("{shown_file}: lease_seconds must be at least 2");
        }
        let shutdown_grace_seconds = pick(
            args.shutdown_grace_seconds,
            src("shutdown_grace_seconds"),
            file_config.shutdown_grace_seconds,
            || 30,
        );
        let mirror_cache_limit = pick(
            args.mirror_cache_limit.clone(),
            src("mirror_cache_limit"),
            file_config.mirror_cache_limit,
            || "10g".to_owned(),
        );
        let image_cache_limit = pick(
            args.image_cache_limit.clone(),
            src("image_cache_limit"),
            file_config.image_cache_limit,
            || "20g".to_owned(),
        );
        for (key, setting) in [
            ("mirror_cache_limit", &mirror_cache_limit),
            ("image_cache_limit", &image_cache_limit),
        ] {
            if parse_size_bytes(&setting.value).is_none() {
                bail!(
                    "{shown_file}: {key} {:?} is not a size like \"10g\" ({})",
                    setting.value,
                    setting.source
                );
            }
        }
        let delivery_retention_days = pick(
            args.delivery_retention_days,
            src("delivery_retention_days"),
            file_config.delivery_retention_days,
            || 30,
        );
        let allow_private_webhook_targets = pick(
            args.allow_private_webhook_targets,
            src("allow_private_webhook_targets"),
            file_config.allow_private_webhook_targets,
            || false,
        );
        let notification_retry_seconds = pick(
            args.notification_retry_seconds,
            src("notification_retry_seconds"),
            file_config.notification_retry_seconds,
            || 5,
        );
        if notification_retry_seconds.value == 0 {
            bail!("notification_retry_seconds must be at least 1");
        }
        let notification_max_attempts = pick(
            args.notification_max_attempts,
            src("notification_max_attempts"),
            file_config.notification_max_attempts,
            || u32::try_from(slipway_notify::deliver::DEFAULT_MAX_ATTEMPTS).unwrap_or(8),
        );
        if notification_max_attempts.value == 0 {
            bail!("{shown_file}: notification_max_attempts must be at least 1");
        }
        let notification_timeout_seconds = pick(
            args.notification_timeout_seconds,
            src("notification_timeout_seconds"),
            file_config.notification_timeout_seconds,
            || slipway_notify::deliver::DEFAULT_REQUEST_TIMEOUT.as_secs(),
        );
        if !(1..=300).contains(&notification_timeout_seconds.value) {
            bail!("{shown_file}: notification_timeout_seconds must be between 1 and 300");
        }
        let networks = pick(
            args.allowed_private_networks.clone(),
            src("allowed_private_networks"),
            file_config.allowed_private_networks,
            Vec::new,
        );
        let allowed_private_networks = Setting {
            value: networks
                .value
                .iter()
                .filter(|text| !text.trim().is_empty())
                .map(|text| {
                    text.parse::<slipway_notify::ssrf::IpNetwork>()
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "{shown_file}: allowed_private_networks ({}): {e}",
                                networks.source
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?,
            source: networks.source,
        };

        let mut warnings = Vec::new();
        let mut registries = Vec::new();
        for (index, registry) in file_config.registries.into_iter().enumerate() {
            let at = format!("{shown_file}: registries[{index}] ({})", registry.host);
            let (password, password_origin) = resolve_secret(
                &at,
                "password",
                registry.password,
                registry.password_env,
                registry.password_file,
                &mut warnings,
            )?
            .with_context(|| {
                format!("{at}: one of password_env, password_file or password is required")
            })?;
            registries.push(Registry {
                host: registry.host,
                username: registry.username,
                password,
                password_origin,
            });
        }

        let mut repositories: Vec<Repository> = Vec::new();
        for (index, repository) in file_config.repositories.into_iter().enumerate() {
            let at = format!("{shown_file}: repositories[{index}] ({})", repository.name);
            if repositories.iter().any(|r| r.name == repository.name) {
                bail!("{at}: repository {} is listed twice", repository.name);
            }
            if let Some(key) = &repository.git_ssh_host_key
                && !key.starts_with("SHA256:")
            {
                bail!(
                    "{at}: git_ssh_host_key must be a SHA256 fingerprint as `ssh-keygen -lf` prints it, e.g. SHA256:AbC…"
                );
            }
            let Some(build_timeout_secs) = parse_duration_secs(&repository.build_timeout) else {
                bail!(
                    "{at}: build_timeout {:?} is not a duration like \"90s\", \"45m\" or \"2h\"",
                    repository.build_timeout
                );
            };
            let limits = repository_limits(&at, &repository)?;
            let reconcile_every = match &repository.reconcile_interval {
                None => None,
                Some(text) => match parse_duration_secs(text) {
                    Some(secs) if secs >= 30 => Some(std::time::Duration::from_secs(secs)),
                    _ => bail!(
                        "{at}: reconcile_interval {text:?} must be a duration of at least 30s, like \"10m\""
                    ),
                },
            };
            for (number, rule) in repository.rules.iter().enumerate() {
                rule.validate().map_err(|e| {
                    anyhow::anyhow!("{at}: rules[{number}] ({}): {e}", rule.describe())
                })?;
            }
            slipway_core::rule::check_rule_names(&repository.rules)
                .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            if strip_credentials(&repository.git_url) != repository.git_url {
                bail!(
                    "{at}: git_url must not contain credentials; use git_username with git_password_env or git_password_file"
                );
            }
            let (webhook_secret, webhook_secret_origin) = resolve_secret(
                &at,
                "webhook_secret",
                repository.webhook_secret,
                repository.webhook_secret_env,
                repository.webhook_secret_file,
                &mut warnings,
            )?
            .with_context(|| format!("{at}: webhook_secret_env (or webhook_secret_file) is required: no secret, no webhooks"))?;
            let status_token = resolve_secret(
                &at,
                "status_token",
                repository.status_token,
                repository.status_token_env,
                repository.status_token_file,
                &mut warnings,
            )?
            .map(|(token, _)| token);
            if repository.report_status && status_token.is_none() {
                bail!(
                    "{at}: report_status needs status_token_env (or status_token_file): the forge's API wants a token"
                );
            }
            let name = repository.name.to_string();
            slipway_notify::status::check_status_settings(
                &slipway_notify::status::StatusSettingsCheck {
                    provider: repository.provider,
                    git_url: &repository.git_url,
                    name: &name,
                    forge_repository: repository.forge_repository.as_deref(),
                    report_status: repository.report_status,
                    api_url: repository.status_api_url.as_deref(),
                    status_repository: repository.status_repository.as_deref(),
                    has_token: status_token.is_some(),
                },
            )
            .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            let git_password = resolve_secret(
                &at,
                "git_password",
                repository.git_password,
                repository.git_password_env,
                repository.git_password_file,
                &mut warnings,
            )?;
            let auth = match (repository.git_ssh_key_file, git_password) {
                (Some(_), Some(_)) => {
                    bail!("{at}: give either git_ssh_key_file or a git password, not both")
                }
                (Some(key), None) => {
                    let passphrase = match repository.git_ssh_passphrase_env {
                        Some(var) => Some(Secret::new(env_secret(
                            &at,
                            "git_ssh_passphrase_env",
                            &var,
                        )?)),
                        None => None,
                    };
                    GitAuth::SshKey {
                        username: repository.git_username.unwrap_or_else(|| "git".to_owned()),
                        private_key: key,
                        passphrase,
                    }
                }
                (None, Some((password, _))) => GitAuth::Basic {
                    username: repository.git_username.with_context(|| {
                        format!("{at}: git_username is required with a git password")
                    })?,
                    password,
                },
                (None, None) => GitAuth::None,
            };
            repositories.push(Repository {
                name: repository.name,
                provider: repository.provider,
                git: GitSource {
                    url: repository.git_url,
                    auth,
                    ssh_host_key: repository.git_ssh_host_key,
                },
                webhook_secret,
                webhook_secret_origin,
                image: repository.image,
                rules: repository.rules,
                allow_unsigned_webhooks: repository.allow_unsigned_webhooks,
                allow_legacy_sha1: repository.allow_legacy_sha1,
                supersede_running_builds: repository.supersede_running_builds,
                build_timeout_secs,
                limits,
                reconcile_every,
                forge_repository: repository.forge_repository,
                anonymous_read: repository.anonymous_read,
                status: slipway_store::StatusConfig {
                    report_status: repository.report_status,
                    api_url: repository
                        .status_api_url
                        .map(|url| url.trim_end_matches('/').to_owned()),
                    repository: repository.status_repository,
                },
                status_token,
            });
        }

        Ok(Self {
            file,
            listen,
            public_url,
            data_dir,
            database_url,
            workers,
            docker_host,
            log_format,
            delivery_retention_days,
            allow_private_webhook_targets,
            allowed_private_networks,
            notification_retry_seconds,
            notification_max_attempts,
            notification_timeout_seconds,
            max_attempts,
            lease_seconds,
            shutdown_grace_seconds,
            mirror_cache_limit,
            image_cache_limit,
            registries,
            repositories,
            warnings,
        })
    }

    pub fn repository_specs(&self) -> Vec<RepositorySpec> {
        self.repositories
            .iter()
            .map(|r| RepositorySpec {
                name: r.name.clone(),
                provider: r.provider,
                git_url: r.git.url.clone(),
                image: r.image.clone(),
                rules: r.rules.clone(),
                allow_unsigned: r.allow_unsigned_webhooks,
                allow_legacy_sha1: r.allow_legacy_sha1,
                supersede_running: r.supersede_running_builds,
                build_timeout_secs: i64::try_from(r.build_timeout_secs).unwrap_or(i64::MAX),
                limits: r.limits,
                forge_repository: r.forge_repository.clone(),
                anonymous_read: r.anonymous_read,
                status: r.status.clone(),
            })
            .collect()
    }

    /// Which private addresses outgoing webhooks and commit-status APIs may reach.
    pub fn target_policy(&self) -> slipway_notify::ssrf::TargetPolicy {
        slipway_notify::ssrf::TargetPolicy {
            allow_private: self.allow_private_webhook_targets.value,
            allowed_networks: self.allowed_private_networks.value.clone(),
        }
    }

    /// The commit-status tokens of configuration-managed repositories, by name.
    pub fn status_tokens(&self) -> HashMap<String, Secret> {
        self.repositories
            .iter()
            .filter_map(|r| Some((r.name.to_string(), r.status_token.clone()?)))
            .collect()
    }

    pub fn webhook_secrets(&self) -> HashMap<String, Secret> {
        self.repositories
            .iter()
            .map(|r| (r.name.to_string(), r.webhook_secret.clone()))
            .collect()
    }

    pub fn access(&self) -> slipway_worker::Access {
        slipway_worker::Access {
            repositories: self
                .repositories
                .iter()
                .map(|r| (r.name.to_string(), r.git.clone()))
                .collect(),
            registries: self
                .registries
                .iter()
                .map(|r| {
                    (
                        r.host.clone(),
                        RegistryAuth {
                            host: r.host.clone(),
                            username: r.username.clone(),
                            password: r.password.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The effective settings, one per line with their source; secrets redacted.
    pub fn show(&self) -> String {
        let mut out = String::new();
        let file = self
            .file
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string());
        out.push_str(&format!("config file    {file}\n"));
        let mut line = |key: &str, value: String, source: Source| {
            out.push_str(&format!("{key:<14} {value}  ({source})\n"));
        };
        line("listen", self.listen.value.to_string(), self.listen.source);
        line(
            "public_url",
            self.public_url.value.clone(),
            self.public_url.source,
        );
        line(
            "data_dir",
            self.data_dir.value.display().to_string(),
            self.data_dir.source,
        );
        line(
            "database_url",
            slipway_store::redact_url(&self.database_url.value),
            self.database_url.source,
        );
        line(
            "workers",
            self.workers.value.to_string(),
            self.workers.source,
        );
        let docker = self
            .docker_host
            .value
            .clone()
            .unwrap_or_else(|| "local socket".to_owned());
        line("docker_host", docker, self.docker_host.source);
        line(
            "log_format",
            self.log_format.value.to_string(),
            self.log_format.source,
        );
        line(
            "max_attempts",
            self.max_attempts.value.to_string(),
            self.max_attempts.source,
        );
        line(
            "lease_seconds",
            self.lease_seconds.value.to_string(),
            self.lease_seconds.source,
        );
        line(
            "mirror_cache_limit",
            self.mirror_cache_limit.value.clone(),
            self.mirror_cache_limit.source,
        );
        line(
            "image_cache_limit",
            self.image_cache_limit.value.clone(),
            self.image_cache_limit.source,
        );
        line(
            "shutdown_grace_seconds",
            self.shutdown_grace_seconds.value.to_string(),
            self.shutdown_grace_seconds.source,
        );
        line(
            "delivery_retention_days",
            self.delivery_retention_days.value.to_string(),
            self.delivery_retention_days.source,
        );
        line(
            "allow_private_webhook_targets",
            self.allow_private_webhook_targets.value.to_string(),
            self.allow_private_webhook_targets.source,
        );
        let networks: Vec<String> = self
            .allowed_private_networks
            .value
            .iter()
            .map(ToString::to_string)
            .collect();
        line(
            "allowed_private_networks",
            if networks.is_empty() {
                "(none)".to_owned()
            } else {
                networks.join(",")
            },
            self.allowed_private_networks.source,
        );
        line(
            "notification_retry_seconds",
            self.notification_retry_seconds.value.to_string(),
            self.notification_retry_seconds.source,
        );
        line(
            "notification_max_attempts",
            self.notification_max_attempts.value.to_string(),
            self.notification_max_attempts.source,
        );
        line(
            "notification_timeout_seconds",
            self.notification_timeout_seconds.value.to_string(),
            self.notification_timeout_seconds.source,
        );
        for registry in &self.registries {
            out.push_str(&format!(
                "registry       {}  username={}  password=*** ({})\n",
                registry.host, registry.username, registry.password_origin
            ));
        }
        for repository in &self.repositories {
            let rules = if repository.rules.is_empty() {
                "default (branch main -> latest)".to_owned()
            } else {
                repository
                    .rules
                    .iter()
                    .map(|r| format!("{} -> {}", r.describe(), r.tags))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let git_auth = match &repository.git.auth {
                GitAuth::None => "none".to_owned(),
                GitAuth::Basic { username, .. } => format!("user {username}, password ***"),
                GitAuth::SshKey {
                    username,
                    private_key,
                    ..
                } => format!("ssh user {username}, key {}", private_key.display()),
            };
            out.push_str(&format!(
                "repository     {}  provider={}  git_url={}  git_auth={}  image={}  webhook_secret=*** ({}){}  rules: {}\n",
                repository.name,
                repository.provider,
                repository.git.url,
                git_auth,
                repository.image,
                repository.webhook_secret_origin,
                if repository.allow_unsigned_webhooks { "  WARNING: unsigned webhooks accepted" } else { "" },
                rules
            ));
        }
        out
    }
}

/// A hint for the one TOML mistake Docker Hub users are sure to make: `"{\1}"` in a
/// double-quoted string, where `\1` is not a valid escape.
fn toml_hint(text: &str, error: &toml::de::Error) -> &'static str {
    let line = error.span().map(|span| {
        let at = span.start.min(text.len());
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        &text[start..end]
    });
    if error.message().contains("escape") && line.is_some_and(|l| l.contains("{\\")) {
        "\nhint: write capture-group placeholders in a single-quoted TOML string, e.g. tags = '{\\1},latest', or double the backslash: \"{\\\\1}\""
    } else {
        ""
    }
}

/// Checks and converts a repository's resource limits.
fn repository_limits(at: &str, repository: &RepositoryConfig) -> Result<slipway_store::Limits> {
    let in_repository = |e: String| anyhow::anyhow!("{at}: {e}");
    let memory_bytes = match &repository.memory_limit {
        None => 0,
        Some(text) => units::memory_limit_bytes(text).map_err(in_repository)?,
    };
    let cpu_millis = match repository.cpu_limit {
        None => 0,
        Some(cpus) => units::cpu_limit_millis(cpus).map_err(in_repository)?,
    };
    let max_context_bytes =
        units::max_context_bytes(&repository.max_context_size).map_err(in_repository)?;
    Ok(slipway_store::Limits {
        max_concurrent_builds: i64::from(repository.max_concurrent_builds),
        memory_bytes,
        cpu_millis,
        max_context_bytes,
    })
}

fn env_secret(at: &str, key: &str, var: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => bail!("{at}: {key}: environment variable {var} is empty"),
        Err(_) => bail!("{at}: {key}: environment variable {var} is not set"),
    }
}

/// Resolves `<key>`, `<key>_env` or `<key>_file`; at most one may be given.
fn resolve_secret(
    at: &str,
    key: &str,
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<Option<(Secret, SecretOrigin)>> {
    let given =
        usize::from(inline.is_some()) + usize::from(env.is_some()) + usize::from(file.is_some());
    if given > 1 {
        bail!("{at}: give only one of {key}, {key}_env and {key}_file");
    }
    if let Some(var) = env {
        let value = env_secret(at, &format!("{key}_env"), &var)?;
        return Ok(Some((Secret::new(value), SecretOrigin::Env(var))));
    }
    if let Some(path) = file {
        let value = read_secret_file(&path).with_context(|| format!("{at}: {key}_file"))?;
        return Ok(Some((Secret::new(value), SecretOrigin::File(path))));
    }
    if let Some(value) = inline {
        if value.is_empty() {
            bail!("{at}: {key} is empty; an empty secret protects nothing");
        }
        warnings.push(format!(
            "{at}: {key} is written inline in the config file; prefer {key}_env or {key}_file"
        ));
        return Ok(Some((Secret::new(value), SecretOrigin::Inline)));
    }
    Ok(None)
}

fn read_secret_file(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(trimmed.to_owned())
}
