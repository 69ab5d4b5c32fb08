//! Benchmark 2, dispatch latency: from the moment the forge has its 202 to the moment a worker
//! has claimed the build and started fetching (the build's `cloning` event), on an idle
//! system, one delivery at a time. SQLite runs `slipway serve` (the worker is woken in the
//! process); PostgreSQL runs `slipway web` and `slipway worker` as separate processes (woken by
//! `NOTIFY`). The baseline is the database's own floor, measured in the same run on the same
//! backend: queue one build through the store and claim it at once, no HTTP, no wake-up.

use std::time::{Duration, Instant};

use serde_json::Value;
use slipway_core::plan::BuildPlan;
use slipway_e2e::{
    GIT_USER, GitHttpServer, RepoFile, Rule, Slipway, TestDatabase, ZERO_ID, github_push_payload,
    new_delivery_id, unique_name,
};
use slipway_store::{NewBuild, Store, Supersede};

use crate::report::{Report, Row, millis, quantile};
use crate::{
    Backend, Context, FreshDatabase, GIT_PASSWORD_ENV, SECRET_ENV, api_time_millis,
    git_repository_config, wall_clock_millis,
};

const GOAL_P99_MS: f64 = 50.0;

pub fn run(context: &Context, report: &mut Report) {
    report.section(
        "2. Dispatch latency",
        "From the 202 to the worker's `cloning` event (it has claimed the build and starts \
         fetching), one delivery at a time on an idle system; each build then fails at once on \
         a missing Dockerfile, so the next delivery finds the system idle again. Baseline: one \
         build queued through the store and claimed at once in the same process (the \
         database's floor). Ratio: Slipway ÷ baseline (lower is better). Times are the \
         client's clock at the 202 against the server's at the event, both in milliseconds \
         on one machine.",
    );
    let samples = if context.quick { 20 } else { 200 };
    for backend in Backend::ALL {
        let latencies = measure_slipway(context, backend, samples);
        let floor = measure_floor(context, backend, samples);
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            let value = quantile(&latencies, q);
            let baseline = quantile(&floor, q);
            let mut row = Row::new(format!("{}, {label}", backend.label()), millis(value))
                .baseline(millis(baseline), value / baseline);
            if label == "p99" {
                row = row.goal("p99 < 50 ms", value < GOAL_P99_MS);
            }
            report.row(row);
        }
    }
}

/// The latency of `samples` deliveries, in milliseconds.
fn measure_slipway(context: &Context, backend: Backend, samples: usize) -> Vec<f64> {
    let git = GitHttpServer::start(GIT_USER, &format!("git-{}", uuid::Uuid::new_v4().simple()));
    let repo = git.create_repo(&format!("bench/{}", unique_name("dispatch")));
    let commit = repo.commit(
        "The app",
        &[RepoFile::text("README", "dispatch benchmark\n")],
    );
    let info = repo.commit_info(&commit);
    // One branch per delivery, all at the same commit: every push is a new build (builds are
    // keyed by rule, ref and commit) and every fetch after the first moves only a ref.
    let branches: Vec<String> = (0..samples).map(|i| format!("b{i}")).collect();
    for branch in &branches {
        slipway_e2e::git_output(
            repo.bare_path(),
            &["update-ref", &format!("refs/heads/{branch}"), &commit],
        );
    }

    let secret = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = git_repository_config(
        &repo,
        &format!("{}/bench/dispatch", context.rig.registry),
        vec![Rule::branch("/b[0-9]+/", "{sourceref}").dockerfile("missing/Dockerfile")],
    );
    let builder = || {
        Slipway::builder(&config)
            .env(SECRET_ENV, &secret)
            .env(GIT_PASSWORD_ENV, git.password())
    };
    let database = (backend == Backend::Postgres)
        .then(|| TestDatabase::create(&context.postgres_url(), "bench_dispatch"));
    let (slipway, _worker) = match &database {
        None => (builder().start(), None),
        Some(database) => {
            let web = builder().database_url(database.url()).start_web();
            let worker = builder().database_url(database.url()).start_worker();
            (web, Some(worker))
        }
    };

    let mut latencies = Vec::with_capacity(samples);
    for branch in &branches {
        let body = github_push_payload(
            repo.name(),
            &format!("refs/heads/{branch}"),
            ZERO_ID,
            &commit,
            Some(&info),
        );
        let answer = slipway.post_hook(
            repo.name(),
            "push",
            &new_delivery_id(),
            &body,
            Some(&secret),
        );
        let acknowledged = wall_clock_millis();
        answer.assert_status(202);
        let id = answer.single_build_id();
        let build = wait_until_finished(&slipway, &id);
        let cloning = event_time(&build, "cloning")
            .unwrap_or_else(|| panic!("build {id} has no cloning event: {build:#}"));
        // The worker can start fetching before the 202 has reached the client.
        latencies.push((cloning - acknowledged).max(0.0));
    }
    latencies
}

/// Polls the build until it has finished, and returns its detail.
fn wait_until_finished(slipway: &Slipway, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let build = slipway.build(id);
        let finished = build["finished_at"].is_string();
        if finished {
            return build;
        }
        assert!(
            Instant::now() < deadline,
            "build {id} did not finish: {build:#}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// When the build's timeline first reached `state`, in Unix milliseconds.
fn event_time(build: &Value, state: &str) -> Option<f64> {
    let entries = build["timeline"].as_array()?;
    let entry = entries.iter().find(|entry| entry["state"] == state)?;
    api_time_millis(entry["at"].as_str()?)
}

/// The floor: a build queued through the store and claimed at once, `samples` times.
fn measure_floor(context: &Context, backend: Backend, samples: usize) -> Vec<f64> {
    let database = FreshDatabase::new(context, backend, "bench_floor");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let store = Store::connect(&database.url)
            .await
            .expect("open the database");
        store.migrate().await.expect("migrate");
        let spec = crate::history::repository_spec("bench/floor");
        store
            .sync_repositories(std::slice::from_ref(&spec))
            .await
            .expect("the repository");
        let repository = store
            .repository_by_name("bench/floor")
            .await
            .expect("read the repository")
            .expect("the repository exists");
        let mut latencies = Vec::with_capacity(samples);
        for i in 0..samples {
            let build = NewBuild {
                id: uuid::Uuid::now_v7(),
                image: spec.image.to_string(),
                plan: BuildPlan {
                    rule_index: 0,
                    git_ref: slipway_core::GitRef::parse(&format!("refs/heads/b{i}"))
                        .expect("a ref"),
                    commit: "0123456789abcdef0123456789abcdef01234567"
                        .parse()
                        .expect("a commit"),
                    tags: vec![format!("b{i}")],
                    dockerfile: "Dockerfile".to_owned(),
                    context: "/".to_owned(),
                    before: None,
                    message_checked: true,
                    options: Default::default(),
                },
                trigger: "trigger".to_owned(),
                supersedes: Supersede::Nothing,
            };
            store
                .queue_builds(repository.id, std::slice::from_ref(&build))
                .await
                .expect("queue");
            let started = Instant::now();
            let claimed = store
                .claim_build("bench/floor", Duration::from_secs(60))
                .await
                .expect("claim")
                .expect("the queued build");
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            let result = slipway_store::BuildResult {
                status: slipway_core::BuildStatus::Failed,
                error: Some("benchmark".to_owned()),
                digest: None,
            };
            store
                .finish_build(claimed.id, "bench/floor", &result)
                .await
                .expect("finish");
        }
        latencies
    })
}
