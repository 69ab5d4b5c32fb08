//! Benchmark 5, history at scale: how fast the build list, the build detail and the dashboard
//! answer with many builds in the database (1,000,000; 100,000 with `--quick`), through the
//! real router (no network). The baseline is the same request on a database of 1,000 builds
//! in the same run, so the ratio shows what size costs: near 1× means the answer comes from
//! an index, whatever the history's length. The query plans are printed beside the figures.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use slipway_core::Role;
use slipway_server::{AppState, RefResolver, RemoteRefs, app, hash_token};
use slipway_store::{BuildFilter, NewToken, Readable, RepositorySpec, Store};
use tower::ServiceExt as _;

use crate::report::{Report, Row, millis, quantile, thousands};
use crate::{Backend, Context, FreshDatabase};

const REPOSITORIES: usize = 10;
const BASELINE_BUILDS: i64 = 1_000;

/// A repository the benchmarks can store builds for; nothing is ever fetched from it.
pub fn repository_spec(name: &str) -> RepositorySpec {
    RepositorySpec {
        name: name.parse().expect("a repository name"),
        provider: "github".parse().expect("a provider"),
        git_url: format!("https://git.example/{name}.git"),
        image: format!("127.0.0.1:5000/{name}").parse().expect("an image"),
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

#[derive(Debug)]
struct NoRefs;

impl RefResolver for NoRefs {
    fn remote_refs<'a>(&'a self, _repository: &'a str) -> RemoteRefs<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Inserts `builds` builds in one statement: generated rows a second apart, spread
/// round-robin over the repositories, in `status`; of finished builds, every tenth (all of
/// `acme/web0`'s) failed.
pub async fn fill(store: &Store, backend: Backend, builds: i64, status: &str) {
    let sqlite = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {builds})
         INSERT INTO builds (id, repository_id, trigger, git_ref, commit_sha, image, tags_json, dockerfile,
             context, status, queued_at, started_at, finished_at, attempts)
         SELECT printf('%08x-0000-7000-8000-%012x', i, i),
             (SELECT id FROM repositories WHERE name = 'acme/web' || (i % {REPOSITORIES})),
             'push', 'refs/heads/main', printf('%040x', i), '127.0.0.1:5000/acme/web', '[\"latest\"]',
             'Dockerfile', '/', CASE WHEN '{status}' = 'succeeded' AND i % 10 = 0 THEN 'failed' ELSE '{status}' END,
             1700000000000 + i * 1000,
             CASE WHEN '{status}' = 'queued' THEN NULL ELSE 1700000000000 + i * 1000 + 500 END,
             CASE WHEN '{status}' = 'queued' THEN NULL ELSE 1700000000000 + i * 1000 + 30000 END,
             CASE WHEN '{status}' = 'queued' THEN 0 ELSE 1 END
         FROM n"
    );
    let postgres = format!(
        "INSERT INTO builds (id, repository_id, trigger, git_ref, commit_sha, image, tags_json, dockerfile,
             context, status, queued_at, started_at, finished_at, attempts)
         SELECT lpad(to_hex(i), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(i), 12, '0'),
             (SELECT id FROM repositories WHERE name = 'acme/web' || (i % {REPOSITORIES})),
             'push', 'refs/heads/main', lpad(to_hex(i), 40, '0'), '127.0.0.1:5000/acme/web', '[\"latest\"]',
             'Dockerfile', '/', CASE WHEN '{status}' = 'succeeded' AND i % 10 = 0 THEN 'failed' ELSE '{status}' END,
             1700000000000 + i * 1000,
             CASE WHEN '{status}' = 'queued' THEN NULL ELSE 1700000000000 + i * 1000 + 500 END,
             CASE WHEN '{status}' = 'queued' THEN NULL ELSE 1700000000000 + i * 1000 + 30000 END,
             CASE WHEN '{status}' = 'queued' THEN 0 ELSE 1 END
         FROM generate_series(1, {builds}) AS i"
    );
    let statement = match backend {
        Backend::Sqlite => sqlite,
        Backend::Postgres => postgres,
    };
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

/// The `acme/web0` … `acme/web9` repositories [`fill`] spreads builds over.
pub fn fill_repositories() -> Vec<RepositorySpec> {
    (0..REPOSITORIES)
        .map(|i| repository_spec(&format!("acme/web{i}")))
        .collect()
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

/// One request the benchmark sends, and the build list behind it (for its query plan).
struct Case {
    name: &'static str,
    path: String,
    reader: bool,
    filter: Option<BuildFilter>,
}

/// p50 and p99 of each case, in milliseconds, and the plans of their build lists.
struct Measured {
    times: Vec<(f64, f64)>,
    plans: Vec<(String, Vec<String>)>,
    fill_time: Duration,
}

pub fn run(context: &Context, report: &mut Report) {
    let builds: i64 = if context.quick { 100_000 } else { 1_000_000 };
    let runs = if context.quick { 100 } else { 200 };
    report.section(
        "5. History at scale",
        &format!(
            "Latency of the build list, the build detail and the dashboard pages with {} builds \
             over ten repositories, {runs} requests each through the real router (no network). \
             Figures are p50 / p99. Baseline: the same requests with {} builds. Ratio: p50 at \
             full size ÷ p50 at baseline size (near 1× means an indexed answer).",
            thousands(builds as u64),
            thousands(BASELINE_BUILDS as u64)
        ),
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    for backend in Backend::ALL {
        let small = runtime.block_on(measure(context, backend, BASELINE_BUILDS, runs));
        let large = runtime.block_on(measure(context, backend, builds, runs));
        for ((case, small), large) in cases_names().iter().zip(&small.times).zip(&large.times) {
            report.row(
                Row::new(
                    format!("{}, {case}", backend.label()),
                    format!("{} / {}", millis(large.0), millis(large.1)),
                )
                .baseline(
                    format!("{} / {}", millis(small.0), millis(small.1)),
                    large.0 / small.0,
                ),
            );
        }
        report.note(format!(
            "{}: {} builds inserted in {:.1?}. Query plans of the build lists at full size: {}",
            backend.label(),
            thousands(builds as u64),
            large.fill_time,
            large
                .plans
                .iter()
                .map(|(name, plan)| format!("{name}: `{}`", plan.join(" → ")))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
}

fn cases_names() -> Vec<&'static str> {
    cases("", "").into_iter().map(|case| case.name).collect()
}

fn cases(deep_cursor: &str, detail_id: &str) -> Vec<Case> {
    vec![
        Case {
            name: "overview page (HTML), global reader",
            path: "/".to_owned(),
            reader: false,
            filter: Some(BuildFilter::default()),
        },
        Case {
            name: "overview page (HTML), one granted repository",
            path: "/".to_owned(),
            reader: true,
            // Filled in with the reader's id when measured.
            filter: None,
        },
        Case {
            name: "`GET /api/builds?limit=50`",
            path: "/api/builds?limit=50".to_owned(),
            reader: false,
            filter: Some(BuildFilter::default()),
        },
        Case {
            name: "`GET /api/builds`, 500 pages deep",
            path: format!("/api/builds?limit=50&cursor={deep_cursor}"),
            reader: false,
            filter: Some(BuildFilter::default()),
        },
        Case {
            name: "`GET /api/builds?repository=…&status=failed`",
            path: "/api/builds?repository=acme/web0&status=failed&limit=50".to_owned(),
            reader: false,
            filter: None,
        },
        Case {
            name: "`GET /api/builds/{id}` (detail)",
            path: format!("/api/builds/{detail_id}"),
            reader: false,
            filter: None,
        },
        Case {
            name: "repository page (HTML)",
            path: "/repos/acme/web3".to_owned(),
            reader: false,
            filter: None,
        },
    ]
}

async fn measure(context: &Context, backend: Backend, builds: i64, runs: usize) -> Measured {
    let database = FreshDatabase::new(context, backend, "bench_history");
    let store = Store::connect(&database.url)
        .await
        .expect("open the database");
    store.migrate().await.expect("migrate");
    store
        .sync_repositories(&fill_repositories())
        .await
        .expect("repositories");
    let started = Instant::now();
    fill(&store, backend, builds, "succeeded").await;
    let fill_time = started.elapsed();

    let admin = token_for(&store, "admin", Some(Role::Owner)).await;
    let reader = token_for(&store, "reader", None).await;
    let repository = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .repository_by_name(name)
                .await
                .expect("query")
                .expect("repository")
        }
    };
    let web0 = repository("acme/web0").await;
    let web3 = repository("acme/web3").await;
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

    // A cursor far into the list (500 pages of 50 at full size), to show that keyset pages
    // cost the same wherever they are; a build in the middle of the history for the detail.
    let depth = (builds / 2).min(25_000);
    let deep = store
        .list_builds(&BuildFilter::default(), None, depth)
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
    let detail_id = deep.last().map(|b| b.id.to_string()).unwrap_or_default();

    let mut times = Vec::new();
    let mut plans = Vec::new();
    for case in cases(&deep_cursor, &detail_id) {
        let token = if case.reader { &reader } else { &admin };
        times.push(time_requests(&state, &case.path, token, runs).await);
        let filter = match (case.name, case.filter) {
            (_, Some(filter)) => Some(filter),
            ("overview page (HTML), one granted repository", None) => Some(BuildFilter {
                readable_by: Some(Readable {
                    user_id: Some(reader_user.id),
                    only_repository: None,
                }),
                ..BuildFilter::default()
            }),
            ("`GET /api/builds?repository=…&status=failed`", None) => Some(BuildFilter {
                repository_id: Some(web0.id),
                status: Some(slipway_core::BuildStatus::Failed),
                ..BuildFilter::default()
            }),
            ("repository page (HTML)", None) => Some(BuildFilter {
                repository_id: Some(web3.id),
                ..BuildFilter::default()
            }),
            _ => None,
        };
        if let Some(filter) = filter {
            let plan = store
                .list_builds_plan(&filter, None, 50)
                .await
                .expect("plan");
            plans.push((case.name.to_owned(), plan));
        }
    }
    drop(state);
    drop(store);
    drop(database);
    Measured {
        times,
        plans,
        fill_time,
    }
}

/// p50 and p99 of `runs` requests of `path` with `token`, in milliseconds.
async fn time_requests(state: &AppState, path: &str, token: &str, runs: usize) -> (f64, f64) {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        let started = Instant::now();
        let response = app(state.clone()).oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let _body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    (quantile(&times, 0.5), quantile(&times, 0.99))
}
