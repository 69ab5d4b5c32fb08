//! How fast the dashboard and the build-list API answer with 100,000 builds in the database.
//!
//! Run with `cargo bench -p slipway-server --bench history`. It fills a fresh SQLite database
//! (and, when `SLIPWAY_TEST_POSTGRES_URL` names a server, a fresh PostgreSQL database) with
//! 100,000 builds over ten repositories, then sends each request many times through the real
//! router and prints the median and 99th-percentile times next to each query's plan, so a
//! reader can see the answer comes from an index. Nothing here is asserted: the figures are
//! for reading and comparing (ARCHITECTURE.md lists where the indexes come from).

#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use slipway_core::Role;
use slipway_server::{AppState, RefResolver, RemoteRefs, app, hash_token};
use slipway_store::{BuildFilter, NewToken, Readable, RepositorySpec, Store};
use tower::ServiceExt;

const BUILDS: i64 = 100_000;
const REPOSITORIES: usize = 10;
const RUNS: usize = 200;

#[derive(Debug)]
struct NoRefs;

impl RefResolver for NoRefs {
    fn remote_refs<'a>(&'a self, _repository: &'a str) -> RemoteRefs<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

fn spec(index: usize) -> RepositorySpec {
    RepositorySpec {
        name: format!("acme/web{index}").parse().expect("name"),
        provider: "github".parse().expect("provider"),
        git_url: format!("https://git.example/acme/web{index}.git"),
        image: format!("127.0.0.1:5000/acme/web{index}")
            .parse()
            .expect("image"),
        rules: vec![],
        allow_unsigned: false,
        allow_legacy_sha1: false,
        supersede_running: false,
        forge_repository: None,
        build_timeout_secs: 3600,
        limits: Default::default(),
        anonymous_read: false,
        status: Default::default(),
    }
}

/// Inserts the builds in one statement per backend: generated rows a second apart, spread
/// round-robin over the repositories; every build of `acme/web0` failed, all others succeeded.
async fn fill(store: &Store, postgres: bool) {
    let sqlite = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BUILDS})
         INSERT INTO builds (id, repository_id, trigger, git_ref, commit_sha, image, tags_json, dockerfile,
             context, status, queued_at, started_at, finished_at, attempts)
         SELECT printf('%08x-0000-7000-8000-%012x', i, i),
             (SELECT id FROM repositories WHERE name = 'acme/web' || (i % {REPOSITORIES})),
             'push', 'refs/heads/main', printf('%040x', i), '127.0.0.1:5000/acme/web', '[\"latest\"]',
             'Dockerfile', '/', CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
             1700000000000 + i * 1000, 1700000000000 + i * 1000 + 500, 1700000000000 + i * 1000 + 30000, 1
         FROM n"
    );
    let postgres_sql = format!(
        "INSERT INTO builds (id, repository_id, trigger, git_ref, commit_sha, image, tags_json, dockerfile,
             context, status, queued_at, started_at, finished_at, attempts)
         SELECT lpad(to_hex(i), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(i), 12, '0'),
             (SELECT id FROM repositories WHERE name = 'acme/web' || (i % {REPOSITORIES})),
             'push', 'refs/heads/main', lpad(to_hex(i), 40, '0'), '127.0.0.1:5000/acme/web', '[\"latest\"]',
             'Dockerfile', '/', CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
             1700000000000 + i * 1000, 1700000000000 + i * 1000 + 500, 1700000000000 + i * 1000 + 30000, 1
         FROM generate_series(1, {BUILDS}) AS i"
    );
    let statement = if postgres { postgres_sql } else { sqlite };
    store
        .execute_raw_for_tests(&statement)
        .await
        .expect("insert the builds");
    // Both databases plan better with fresh statistics, as a long-running one has.
    store
        .execute_raw_for_tests("ANALYZE")
        .await
        .expect("analyze");
}

async fn token_for(store: &Store, name: &str, global: Option<Role>) -> String {
    let user = store
        .create_user(name, "$argon2id$unused", global)
        .await
        .expect("user")
        .expect("new user");
    let token = format!("slwa_bench_{name}");
    store
        .create_token(&NewToken {
            user_id: user.id,
            name: "bench",
            token_hash: &hash_token(&token),
            scope: Role::Owner,
            repository_id: None,
            expires_at: None,
        })
        .await
        .expect("token");
    token
}

/// Median and 99th percentile of `RUNS` requests of `path` with `token`.
async fn measure(state: &AppState, path: &str, token: &str) -> (Duration, Duration, usize) {
    let mut times = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    for _ in 0..RUNS {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        let started = Instant::now();
        let response = app(state.clone()).oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        times.push(started.elapsed());
        bytes = body.len();
    }
    times.sort();
    (times[RUNS / 2], times[RUNS * 99 / 100], bytes)
}

async fn run(label: &str, store: Store, postgres: bool) {
    store.migrate().await.expect("migrate");
    let specs: Vec<RepositorySpec> = (0..REPOSITORIES).map(spec).collect();
    store.sync_repositories(&specs).await.expect("repositories");
    let started = Instant::now();
    fill(&store, postgres).await;
    println!(
        "\n## {label}: {BUILDS} builds inserted in {:.1?}\n",
        started.elapsed()
    );

    let admin = token_for(&store, "admin", Some(Role::Owner)).await;
    let reader = token_for(&store, "reader", None).await;
    let web0 = store
        .repository_by_name("acme/web0")
        .await
        .expect("query")
        .expect("repository");
    let web3 = store
        .repository_by_name("acme/web3")
        .await
        .expect("query")
        .expect("repository");
    let reader_user = store
        .user_by_name("reader")
        .await
        .expect("query")
        .expect("user");
    store
        .set_grant(web3.id, reader_user.id, Some(Role::Read))
        .await
        .expect("grant");
    let state = AppState::new(
        store.clone(),
        "http://slipway.bench",
        std::sync::Arc::new(NoRefs),
    );

    // A cursor 500 pages deep, to show that keyset pages cost the same wherever they are.
    let deep = store
        .list_builds(&BuildFilter::default(), None, 25_000)
        .await
        .expect("deep page");
    let deep_cursor = deep
        .last()
        .map(|b| {
            slipway_store::BuildCursor {
                queued_at: b.queued_at,
                id: b.id,
            }
            .encode()
        })
        .unwrap_or_default();

    let cases: Vec<(&str, String, &str, BuildFilter)> = vec![
        (
            "overview page (HTML), global reader",
            "/".to_owned(),
            &admin,
            BuildFilter::default(),
        ),
        (
            "overview page (HTML), one granted repository",
            "/".to_owned(),
            &reader,
            BuildFilter {
                readable_by: Some(Readable {
                    user_id: Some(reader_user.id),
                    only_repository: None,
                }),
                ..BuildFilter::default()
            },
        ),
        (
            "GET /api/builds?limit=50",
            "/api/builds?limit=50".to_owned(),
            &admin,
            BuildFilter::default(),
        ),
        (
            "GET /api/builds, 500 pages deep",
            format!("/api/builds?limit=50&cursor={deep_cursor}"),
            &admin,
            BuildFilter::default(),
        ),
        (
            "GET /api/builds?repository=…&status=failed",
            "/api/builds?repository=acme/web0&status=failed&limit=50".to_owned(),
            &admin,
            BuildFilter {
                repository_id: Some(web0.id),
                status: Some(slipway_core::BuildStatus::Failed),
                ..BuildFilter::default()
            },
        ),
        (
            "repository page (HTML)",
            "/repos/acme/web3".to_owned(),
            &admin,
            BuildFilter {
                repository_id: Some(web3.id),
                ..BuildFilter::default()
            },
        ),
    ];
    println!("| request | p50 | p99 | answer size |\n|---|---:|---:|---:|");
    let mut plans = Vec::new();
    for (name, path, token, filter) in &cases {
        let (p50, p99, bytes) = measure(&state, path, token).await;
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {} KiB |",
            ms(p50),
            ms(p99),
            bytes / 1024
        );
        let plan = store
            .list_builds_plan(filter, None, 50)
            .await
            .expect("plan");
        plans.push((name.to_owned(), plan));
    }
    println!("\nQuery plans of the build lists behind these answers:\n");
    for (name, plan) in plans {
        println!("- {name}:");
        for line in plan {
            println!("    {line}");
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, is ignored.
    println!(
        "# Build history at {BUILDS} builds ({RUNS} requests each, through the router, no network)"
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = Store::connect(&format!(
        "sqlite:{}?mode=rwc",
        dir.path().join("bench.db").display()
    ))
    .await
    .expect("open SQLite");
    run("SQLite", sqlite, false).await;

    if let Ok(url) = std::env::var("SLIPWAY_TEST_POSTGRES_URL") {
        let database = format!("slipway_bench_{}", std::process::id());
        let admin = Store::connect(&url).await.expect("connect to PostgreSQL");
        admin
            .execute_raw_for_tests(&format!("CREATE DATABASE {database}"))
            .await
            .expect("create the database");
        let (base, _) = url.rsplit_once('/').expect("a database URL");
        let store = Store::connect(&format!("{base}/{database}"))
            .await
            .expect("connect");
        run("PostgreSQL", store.clone(), true).await;
        drop(store);
        // The pool may still hold connections for a moment; the drop is best effort.
        let _ = admin
            .execute_raw_for_tests(&format!("DROP DATABASE {database} WITH (FORCE)"))
            .await;
    } else {
        println!("\n(PostgreSQL skipped: set SLIPWAY_TEST_POSTGRES_URL, as scripts/rig/up does)");
    }
}
