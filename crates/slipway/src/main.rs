//! The `slipway` binary: parses the command line and configuration, then wires the library
//! crates together. No build or webhook logic lives here.

mod accounts;
mod cli;
mod client;
mod config;
mod output;
mod remote;
mod sse;
mod triggers;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches};
use slipway_build::{Engine, Workspace};
use slipway_server::AppState;
use slipway_store::Store;
use slipway_worker::{Worker, WorkerSettings};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::{Cli, ClientArgs, Command, ConfigCommand, LogFormat, SETTING_IDS};
use crate::config::Config;
use crate::triggers::GitRefResolver;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Global flags may be given before or after the subcommand; look in both places.
    let mut sources = HashMap::new();
    for id in SETTING_IDS {
        let source = matches
            .subcommand()
            .and_then(|(_, sub)| sub.value_source(id))
            .or_else(|| matches.value_source(id));
        if let Some(source) = source {
            sources.insert(id, source);
        }
    }
    if let Some(client) = cli.command.client_args() {
        return run_client(&cli, client, &sources);
    }
    let config = match Config::load(&cli.settings, &sources) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("slipway: configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format.value);
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("slipway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The account commands with an API equivalent use the database only when the command
    // line (or the environment) names it: on the server, as its operator.
    let names_a_database = ["config", "database_url", "data_dir"]
        .iter()
        .any(|id| sources.contains_key(id));
    match runtime.block_on(run(cli.command, config, names_a_database)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("slipway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one of the API's client commands (`repo`, `build`, `trigger`, and `user` and `token`
/// when a server or token is given). They need no database
/// and no configuration; the configuration file is read only for `public_url` when no
/// `--server` is given. Their own messages go to standard error without log decoration, and
/// the token is never printed.
fn run_client(
    cli: &Cli,
    client: &ClientArgs,
    sources: &HashMap<&'static str, clap::parser::ValueSource>,
) -> ExitCode {
    init_client_logging();
    let server = match &client.server {
        Some(server) => server.clone(),
        None => match Config::load(&cli.settings, sources) {
            Ok(config) => config.public_url.value,
            Err(e) => {
                eprintln!(
                    "slipway: no --server (or SLIPWAY_SERVER) was given, and the configuration that would say where the server is cannot be read: {e:#}"
                );
                return ExitCode::from(2);
            }
        },
    };
    let api = match client::ApiClient::new(&server, client.token.clone()) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("slipway: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("slipway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = client.json;
    let outcome = runtime.block_on(async {
        match &cli.command {
            Command::Repo { command, .. } => remote::run_repo(command.clone(), &api, json).await,
            Command::Build { command, .. } => remote::run_build(command.clone(), &api, json).await,
            Command::Trigger { command, .. } => triggers::run(command.clone(), &api, json).await,
            Command::User { command, .. } => {
                accounts::user_through_api(command.clone(), &api, json).await
            }
            Command::Token { command, .. } => {
                accounts::token_through_api(command.clone(), &api, json).await
            }
            _ => Err(anyhow::anyhow!("this command does not talk to the API")),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("slipway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The client commands log only warnings unless SLIPWAY_LOG asks for more, so that their
/// output is what they print.
fn init_client_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(command: Command, config: Config, names_a_database: bool) -> Result<()> {
    match command {
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            #[allow(
                clippy::print_stdout,
                reason = "printing the settings is this command's purpose"
            )]
            {
                print!("{}", config.show());
            }
            Ok(())
        }
        Command::Migrate => {
            open_store(&config).await?;
            info!("migrations applied");
            Ok(())
        }
        Command::Repo { .. } | Command::Build { .. } | Command::Trigger { .. } => {
            anyhow::bail!("the API's commands run through run_client")
        }
        Command::User { command, .. } => {
            if !matches!(command, cli::UserCommand::Add { .. }) {
                accounts::require_database(names_a_database, "user")?;
            }
            let store = open_store(&config).await?;
            accounts::run_user(command, &store).await
        }
        Command::Token { command, .. } => {
            accounts::require_database(names_a_database, "token")?;
            let store = open_store(&config).await?;
            store.sync_repositories(&config.repository_specs()).await?;
            accounts::run_token(command, &store).await
        }
        Command::Openapi => {
            let document = slipway_server::openapi_document(&config.public_url.value);
            #[allow(
                clippy::print_stdout,
                reason = "printing the document is this command's purpose"
            )]
            {
                println!("{document:#}");
            }
            Ok(())
        }
        Command::Serve => run_processes(config, true, true).await,
        Command::Web => run_processes(config, true, false).await,
        Command::Worker => run_processes(config, false, true).await,
    }
}

async fn open_store(config: &Config) -> Result<Store> {
    if config.database_url.value.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir.value).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.value.display()
            )
        })?;
    }
    let shown = slipway_store::redact_url(&config.database_url.value);
    let store = Store::connect(&config.database_url.value)
        .await
        .with_context(|| format!("cannot open the database {shown}"))?;
    store
        .migrate()
        .await
        .with_context(|| format!("cannot migrate the database {shown}"))?;
    Ok(store)
}

/// Runs the HTTP server, the workers, or both, until SIGINT or SIGTERM.
async fn run_processes(config: Config, web: bool, workers: bool) -> Result<()> {
    let store = open_store(&config).await?;
    store
        .sync_repositories(&config.repository_specs())
        .await
        .context("cannot store the configured repositories")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    // Workers in other processes learn of queued builds through PostgreSQL's NOTIFY.
    let forwarder = if workers {
        store.spawn_notification_forwarder()
    } else {
        None
    };

    // Every process delivers commit statuses and outgoing webhooks; they share the work through
    // leases in the database, so a fleet delivers each notification once.
    let notifications_due = Arc::new(tokio::sync::Notify::new());
    let notifier = {
        let owner = format!(
            "{}-{}-notifier-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let settings = slipway_notify::deliver::NotifierSettings {
            policy: config.target_policy(),
            status_tokens: config.status_tokens(),
            first_retry_delay: Duration::from_secs(config.notification_retry_seconds.value),
            max_attempts: i64::from(config.notification_max_attempts.value),
            request_timeout: Duration::from_secs(config.notification_timeout_seconds.value),
            ..slipway_notify::deliver::NotifierSettings::new(&config.public_url.value)
        };
        let notifier = slipway_notify::deliver::Notifier::new(
            store.clone(),
            owner,
            settings,
            notifications_due.clone(),
        );
        tokio::spawn(notifier.run(shutdown.clone()))
    };

    let worker_health = Arc::new(slipway_core::health::Health::default());
    let worker_task = workers.then(|| {
        let owner_id = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut settings = WorkerSettings::new(owner_id, config.workers.value);
        settings.max_attempts = config.max_attempts.value;
        settings.shutdown_grace = Duration::from_secs(config.shutdown_grace_seconds.value);
        settings.mirror_cache_bytes =
            slipway_core::units::parse_size_bytes(&config.mirror_cache_limit.value)
                .unwrap_or(10 << 30);
        settings.image_cache_bytes =
            slipway_core::units::parse_size_bytes(&config.image_cache_limit.value)
                .unwrap_or(20 << 30);
        let settings = settings.with_lease(Duration::from_secs(config.lease_seconds.value));
        let workspace = Workspace::new(&config.data_dir.value);
        let access = config.access();
        let docker_host = config.docker_host.value.clone();
        let (store, shutdown, health) = (store.clone(), shutdown.clone(), worker_health.clone());
        tokio::spawn(async move {
            let Some(engine) = connect_engine(docker_host.as_deref(), &health, &shutdown).await
            else {
                return;
            };
            Worker::new(store, engine, workspace, access, settings)
                .with_health(health)
                .run(shutdown)
                .await;
        })
    });

    if web {
        tokio::spawn(purge_deliveries(
            store.clone(),
            config.delivery_retention_days.value,
            shutdown.clone(),
        ));
        let state = AppState {
            webhook_secrets: Arc::new(config.webhook_secrets()),
            worker_health: workers.then(|| worker_health.clone()),
            target_policy: config.target_policy(),
            notifications_due: notifications_due.clone(),
            ..AppState::new(
                store.clone(),
                &config.public_url.value,
                Arc::new(GitRefResolver::new(&config, store.clone())),
            )
        };
        for repository in &config.repositories {
            if let Some(every) = repository.reconcile_every {
                let name = repository.name.to_string();
                tokio::spawn(reconcile_loop(state.clone(), name, every, shutdown.clone()));
            }
        }
        let listener = tokio::net::TcpListener::bind(config.listen.value)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen.value))?;
        info!(listen = %config.listen.value, repositories = config.repositories.len(), "slipway is listening");
        let until = shutdown.clone();
        slipway_server::serve(listener, state, async move { until.cancelled().await })
            .await
            .context("the HTTP server failed")?;
    } else {
        shutdown.cancelled().await;
    }
    if let Some(task) = worker_task {
        let _ = task.await;
    }
    let _ = notifier.await;
    if let Some(forwarder) = forwarder {
        forwarder.abort();
    }
    Ok(())
}

/// Connects to the Docker engine, retrying while it is not there yet, so the HTTP side keeps
/// accepting webhooks (they queue) while the engine starts.
async fn connect_engine(
    host: Option<&str>,
    health: &slipway_core::health::Health,
    shutdown: &CancellationToken,
) -> Option<Engine> {
    let mut delay = Duration::from_secs(1);
    loop {
        match Engine::connect(host).await {
            Ok(engine) => {
                info!("connected to the Docker engine");
                return Some(engine);
            }
            Err(e) => {
                health.set_unhealthy(format!("the Docker engine is not reachable: {e}"));
                warn!(error = %e, retry_in = ?delay, "the Docker engine is not reachable; builds wait");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Runs the reconciler for one repository every `every`, from the web side (which has the
/// repository's git credentials for `ls-remote`). Several web processes may all run it: the
/// builds it queues are keyed like pushed builds, so none is made twice.
async fn reconcile_loop(
    state: AppState,
    repository: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        let record = match state.store.repository_by_name(&repository).await {
            Ok(Some(record)) if record.enabled => record,
            Ok(_) => return,
            Err(e) => {
                warn!(%repository, error = %e, "reconciler: cannot read the repository");
                continue;
            }
        };
        match slipway_server::reconcile(&state, &record).await {
            Ok(queued) if queued.is_empty() => {}
            Ok(queued) => {
                info!(%repository, count = queued.len(), "reconciler queued builds no webhook announced")
            }
            Err(e) => {
                warn!(%repository, error = %e.message, "reconciler: comparing with the remote failed")
            }
        }
    }
}

/// Applies the deliveries log's retention once an hour.
async fn purge_deliveries(store: Store, retention_days: u32, shutdown: CancellationToken) {
    let retention_millis = i64::from(retention_days) * 24 * 60 * 60 * 1000;
    loop {
        match store
            .purge_deliveries(slipway_store::now_millis() - retention_millis)
            .await
        {
            Ok(0) => {}
            Ok(count) => info!(
                count,
                retention_days, "applied the deliveries log's retention"
            ),
            Err(e) => warn!(error = %e, "applying the deliveries log's retention failed"),
        }
        // Notifications (commit statuses, webhook requests) are kept as long as deliveries.
        match store
            .purge_notifications(slipway_store::now_millis() - retention_millis)
            .await
        {
            Ok(0) => {}
            Ok(count) => info!(
                count,
                retention_days, "applied the notification history's retention"
            ),
            Err(e) => warn!(error = %e, "applying the notification history's retention failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    info!("shutting down: no new builds are claimed; running builds finish");
    shutdown.cancel();
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "slipway".to_owned())
}
