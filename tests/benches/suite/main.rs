//! Slipway's benchmark suite: every figure measured next to its baseline in the same run, and
//! printed as a ratio, so that a reader can rerun it on their own machine and compare.
//!
//! `scripts/bench` runs it (`cargo bench -p slipway-e2e --bench suite -- [--quick] [--only
//! NAMES] [--report FILE]`) against the rig's Docker engine and registry, a durable private
//! PostgreSQL cluster of its own, and the release build of `slipway` (`$SLIPWAY_BIN`).
//! Nothing here is a pass/fail test: each goal is reported as met or not met.
//!
//! The benchmarks, by `--only` name:
//! 1. `ingest` — webhook deliveries accepted per second ([`ingest`]).
//! 2. `dispatch` — from the 202 to a worker fetching ([`dispatch`]).
//! 3. `cli` — push to pushed image, against `git clone && docker build && docker push`
//!    ([`versus_cli`]).
//! 4. `queue` — claim-and-complete throughput with 1, 2 and 4 worker processes ([`queue`]).
//! 5. `history` — build list and detail latency with many builds ([`history`]).
//! 6. `memory` — peak RSS of `slipway serve` idle, under ingest, and streaming a huge log
//!    ([`memory`]).

#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "figures are counts and durations far inside f64's exact range"
)]

mod child;
mod dispatch;
mod history;
mod ingest;
mod load;
mod memory;
mod queue;
mod report;
mod versus_cli;

use std::path::PathBuf;
use std::time::Instant;

use slipway_e2e::{
    Config, GIT_USER, PostgresCluster, RepoHandle, RepositoryConfig, Rig, Rule, TestDatabase,
};

use crate::report::Report;

/// The two databases Slipway runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// What every benchmark needs.
#[derive(Debug)]
pub struct Context {
    /// Smaller sizes and shorter windows, for a smoke run in a few minutes.
    pub quick: bool,
    /// This program, for the child processes it starts.
    pub suite_binary: PathBuf,
    pub rig: Rig,
    /// A private cluster with PostgreSQL's default durability, unlike the rig's shared one.
    pub postgres: PostgresCluster,
}

impl Context {
    /// A URL that may create databases on the private cluster.
    pub fn postgres_url(&self) -> String {
        self.postgres.url()
    }
}

/// The environment variables the benchmarks' configurations name for their secrets.
pub const SECRET_ENV: &str = "BENCH_WEBHOOK_SECRET";
pub const GIT_PASSWORD_ENV: &str = "BENCH_GIT_PASSWORD";

/// A configuration with one GitHub repository fetched from `repo` on the harness's git server,
/// pushing to `image` with `rules`; its secrets are named by [`SECRET_ENV`] and
/// [`GIT_PASSWORD_ENV`].
pub fn git_repository_config(repo: &RepoHandle, image: &str, rules: Vec<Rule>) -> String {
    Config {
        public_url: None,
        registries: Vec::new(),
        repositories: vec![RepositoryConfig {
            name: repo.name().to_owned(),
            provider: "github".to_owned(),
            git_url: repo.url().to_owned(),
            git_username: Some(GIT_USER.to_owned()),
            git_password_env: Some(GIT_PASSWORD_ENV.to_owned()),
            webhook_secret_env: Some(SECRET_ENV.to_owned()),
            image: image.to_owned(),
            rules,
            ..RepositoryConfig::default()
        }],
    }
    .to_toml()
}

/// A fresh, empty database of `backend`, and what must live as long as it is used.
#[derive(Debug)]
pub struct FreshDatabase {
    pub url: String,
    _sqlite_dir: tempfile::TempDir,
    _postgres: Option<TestDatabase>,
}

impl FreshDatabase {
    pub fn new(context: &Context, backend: Backend, label: &str) -> Self {
        let dir = tempfile::tempdir().expect("a directory for the database");
        let postgres = (backend == Backend::Postgres)
            .then(|| TestDatabase::create(&context.postgres_url(), label));
        let url = postgres.as_ref().map_or_else(
            || {
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.db").display()
                )
            },
            |database| database.url().to_owned(),
        );
        Self {
            url,
            _sqlite_dir: dir,
            _postgres: postgres,
        }
    }
}

/// Now, in Unix milliseconds (with a fraction).
pub fn wall_clock_millis() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// An RFC 3339 time from the API, in Unix milliseconds.
pub fn api_time_millis(at: &str) -> Option<f64> {
    let time =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    Some(time.unix_timestamp_nanos() as f64 / 1e6)
}

const BENCHMARKS: [&str; 6] = ["ingest", "dispatch", "cli", "queue", "history", "memory"];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        // `cargo bench` adds `--bench`; a harness-less benchmark has nothing to do with it.
        .filter(|arg| arg != "--bench")
        .collect();
    if args.first().is_some_and(|arg| arg == "child") {
        child::main(&args[1..]);
        return;
    }
    let mut quick = false;
    let mut only: Vec<String> = BENCHMARKS.iter().map(|&name| name.to_owned()).collect();
    let mut report_path = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let names = rest.next().expect("--only takes a comma-separated list");
                only = names.split(',').map(str::to_owned).collect();
                for name in &only {
                    assert!(
                        BENCHMARKS.contains(&name.as_str()),
                        "unknown benchmark {name:?}; the names are {BENCHMARKS:?}"
                    );
                }
            }
            "--report" => {
                report_path = Some(PathBuf::from(
                    rest.next().expect("--report takes a file name"),
                ));
            }
            other => panic!("unknown argument {other:?}; see scripts/bench --help"),
        }
    }
    // The harness starts the binary `SLIPWAY_BIN` names; the benchmarks measure a release
    // build, never the debug build the tests use.
    assert!(
        std::env::var_os("SLIPWAY_BIN").is_some(),
        "set SLIPWAY_BIN to a release build of slipway, as scripts/bench does"
    );
    let context = Context {
        quick,
        suite_binary: std::env::current_exe().expect("this program's path"),
        rig: Rig::load(),
        postgres: PostgresCluster::start_durable(),
    };
    let started = Instant::now();
    let mut report = Report::default();
    println!(
        "# Slipway benchmarks{}",
        if quick { " (--quick)" } else { "" }
    );
    for name in &only {
        let begun = Instant::now();
        match name.as_str() {
            "ingest" => ingest::run(&context, &mut report),
            "dispatch" => dispatch::run(&context, &mut report),
            "cli" => versus_cli::run(&context, &mut report),
            "queue" => queue::run(&context, &mut report),
            "history" => history::run(&context, &mut report),
            "memory" => memory::run(&context, &mut report),
            _ => unreachable!("names are checked above"),
        }
        println!("  ({name} took {:.0?})", begun.elapsed());
    }
    let preamble = std::env::var("SLIPWAY_BENCH_PREAMBLE").unwrap_or_default();
    let path = report_path.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                PathBuf::from,
            )
            .join("bench/report.md")
    });
    report
        .write(&path, &preamble)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!(
        "\nall benchmarks took {:.0?}; the report is in {}",
        started.elapsed(),
        path.display()
    );
}
