//! Benchmark 1, webhook ingest: signed GitHub push deliveries accepted per second by
//! `slipway web`, each 202 sent only once its delivery and build are committed, at 1, 16 and
//! 64 concurrent connections, on SQLite and on PostgreSQL. The baseline, in the same run, is
//! the same endpoint with verification, parsing and planning but no database write
//! (`slipway_server::unrecorded_hooks_app`), also in a process of its own.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use slipway_e2e::{Config, RepositoryConfig, Rule, Slipway, TestDatabase};

use crate::load::{self, LoadResult, Target};
use crate::report::{Report, Row, per_second, thousands};
use crate::{Backend, Context};

pub const REPOSITORY: &str = "bench/ingest";
const SECRET_ENV: &str = "BENCH_WEBHOOK_SECRET";
const CONNECTIONS: [usize; 3] = [1, 16, 64];
/// The SQLite goal of the issue, on a two-core machine.
const SQLITE_GOAL_PER_SECOND: f64 = 5000.0;

/// The configuration of a Slipway that takes pushes to `main` of one GitHub repository. Its
/// builds are never run (no worker fetches from the unreachable clone URL).
pub fn config() -> String {
    Config {
        public_url: None,
        registries: Vec::new(),
        repositories: vec![RepositoryConfig {
            name: REPOSITORY.to_owned(),
            provider: "github".to_owned(),
            git_url: "http://127.0.0.1:9/bench/ingest.git".to_owned(),
            webhook_secret_env: Some(SECRET_ENV.to_owned()),
            image: "127.0.0.1:5000/bench/ingest".to_owned(),
            rules: vec![Rule::branch("main", "latest")],
            ..RepositoryConfig::default()
        }],
    }
    .to_toml()
}

/// A Slipway process of `command` (`serve` or `web`) for the ingest configuration.
pub fn start(database_url: Option<&str>, secret: &str, web: bool) -> Slipway {
    let mut builder = Slipway::builder(&config()).env(SECRET_ENV, secret);
    if let Some(url) = database_url {
        builder = builder.database_url(url);
    }
    if web {
        builder.start_web()
    } else {
        builder.start()
    }
}

pub fn run(context: &Context, report: &mut Report) {
    report.section(
        "1. Webhook ingest",
        "Signed GitHub push deliveries accepted per second by `slipway web`; every delivery is \
         new (fresh delivery id and commit), so each 202 follows the commit of one delivery and \
         one build. Baseline: the same endpoint in a process of its own doing everything but the \
         database write. Ratio: Slipway ÷ baseline (higher is better).",
    );
    let (warmup, window) = if context.quick {
        (Duration::from_millis(500), Duration::from_secs(2))
    } else {
        (Duration::from_secs(2), Duration::from_secs(10))
    };
    for backend in Backend::ALL {
        let secret = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let database = (backend == Backend::Postgres)
            .then(|| TestDatabase::create(&context.postgres_url(), "bench_ingest"));
        let slipway = start(database.as_ref().map(TestDatabase::url), &secret, true);
        let database_url = database.as_ref().map_or_else(
            || {
                format!(
                    "sqlite://{}",
                    slipway.data_dir().join("slipway.db").display()
                )
            },
            |database| database.url().to_owned(),
        );
        let target = Target {
            base_url: slipway.url(""),
            repository: REPOSITORY.to_owned(),
            secret: secret.clone(),
        };
        let measured: Vec<LoadResult> = CONNECTIONS
            .iter()
            .map(|&connections| load::run(&target, connections, warmup, window))
            .collect();
        // Stopped but kept: its directory holds the SQLite database the baseline reads.
        slipway.terminate();
        let _ = slipway.wait_for_exit(Duration::from_secs(30));

        let (baseline_process, base_url) = start_baseline(context, &database_url, &secret);
        let baseline_target = Target {
            base_url,
            ..target.clone()
        };
        let baselines: Vec<LoadResult> = CONNECTIONS
            .iter()
            .map(|&connections| load::run(&baseline_target, connections, warmup, window))
            .collect();
        stop(baseline_process);
        drop(slipway);

        for ((connections, slipway), baseline) in CONNECTIONS.iter().zip(&measured).zip(&baselines)
        {
            let ratio = slipway.rate() / baseline.rate();
            let mut goal = "≥ 0.5× baseline".to_owned();
            let mut met = ratio >= 0.5;
            if backend == Backend::Sqlite {
                goal.push_str(", ≥ 5,000/s");
                met &= slipway.rate() >= SQLITE_GOAL_PER_SECOND;
            }
            report.row(
                Row::new(
                    format!("{}, {connections} connection(s)", backend.label()),
                    per_second(slipway.rate()),
                )
                .baseline(per_second(baseline.rate()), ratio)
                .goal(goal, met),
            );
            for (what, result) in [("Slipway", slipway), ("baseline", baseline)] {
                if result.failed > 0 {
                    report.note(format!(
                        "{} at {connections} connection(s): {} of {} deliveries were not \
                         accepted; the first: {}",
                        what,
                        thousands(result.failed),
                        thousands(result.failed + result.accepted),
                        result.first_failure.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
    }
}

/// Starts the baseline server on the same database (it only reads the repository) and waits
/// for it to listen.
fn start_baseline(context: &Context, database_url: &str, secret: &str) -> (Child, String) {
    let listen = free_address();
    let mut child = Command::new(&context.suite_binary)
        .args([
            "child",
            "baseline-server",
            database_url,
            &listen,
            REPOSITORY,
            secret,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the baseline server");
    let mut ready = String::new();
    let stdout = child.stdout.take().expect("the baseline's stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut ready)
        .expect("read from the baseline server");
    assert_eq!(ready.trim(), "ready", "the baseline server did not start");
    (child, format!("http://{listen}"))
}

/// Ends a child process the suite started, by its own handle.
pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A loopback address with a port nothing listens on at the moment.
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").to_string()
}
