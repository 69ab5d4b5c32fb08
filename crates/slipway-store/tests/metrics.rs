//! The database-backed metrics, on both backends: concurrent increments from many tasks (as
//! from many processes) add up exactly, a histogram observation updates its buckets, sum and
//! count together, and the fleet's slots count the builds its workers hold.

#[macro_use]
mod support;

use std::time::Duration;

use slipway_core::plan::BuildPlan;
use slipway_core::{BuildRule, BuildStatus, GitRef};
use slipway_store::metrics::{BUILD_DURATION, Counter, QUEUE_WAIT, StoredSample};
use slipway_store::{NewBuild, Queued, RepositorySpec, Store, Supersede, WorkerRecord, now_millis};
use uuid::Uuid;

on_both_backends!(
    multi_thread:
    concurrent_increments_add_up_exactly,
    observations_fill_cumulative_buckets,
    fleet_slots_count_running_builds_of_live_workers,
);

const TEST_COUNTER: Counter = Counter {
    name: "slipway_test_total",
    help: "A counter for this test.",
};

fn value_of(samples: &[StoredSample], name: &str, labels: &str) -> Option<i64> {
    samples
        .iter()
        .find(|s| s.name == name && s.labels == labels)
        .map(|s| s.value)
}

async fn concurrent_increments_add_up_exactly(store: Store) {
    // Two label sets, each incremented by many tasks at once; the first increment of each
    // races to create its row, which the upsert must survive without losing a count.
    const TASKS: i64 = 16;
    const EACH: i64 = 25;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let outcome = if task % 2 == 0 { "accepted" } else { "refused" };
            for _ in 0..EACH {
                store
                    .add_to_counter(&TEST_COUNTER, &[("outcome", outcome)], 1)
                    .await
                    .expect("increment");
            }
        });
    }
    // Histogram observations race on their shared rows (the count and sum) too.
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            for _ in 0..EACH {
                store.observe(&QUEUE_WAIT, 700).await.expect("observe");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task");
    }
    let samples = store.stored_samples().await.expect("samples");
    let half = TASKS / 2 * EACH;
    assert_eq!(
        value_of(&samples, TEST_COUNTER.name, "outcome=\"accepted\""),
        Some(half)
    );
    assert_eq!(
        value_of(&samples, TEST_COUNTER.name, "outcome=\"refused\""),
        Some(half)
    );
    let observations = TASKS * EACH;
    assert_eq!(
        value_of(&samples, &QUEUE_WAIT.count_name(), ""),
        Some(observations)
    );
    assert_eq!(
        value_of(&samples, &QUEUE_WAIT.sum_name(), ""),
        Some(observations * 700)
    );
    assert_eq!(
        value_of(&samples, &QUEUE_WAIT.bucket_name(), "le=\"1\""),
        Some(observations)
    );
    // The counts were spread over the counter's shards (400 writes into 32 shards all landing
    // in one would be a broken shard choice), and a scrape still sees one sample each.
    let rows = store
        .count_for_tests(
            "SELECT count(*) FROM metric_counters WHERE name = 'slipway_test_total' AND labels = 'outcome=\"accepted\"'",
        )
        .await
        .expect("count rows");
    assert!(rows > 1, "{rows} row(s) hold the counter");
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.name == TEST_COUNTER.name && s.labels == "outcome=\"accepted\"")
            .count(),
        1
    );
    // 700 ms is above the 0.5 s bound, so that bucket was never created.
    assert_eq!(
        value_of(&samples, &QUEUE_WAIT.bucket_name(), "le=\"0.5\""),
        None
    );

    // Adding more than one at a time, and label values that need escaping, work too.
    store
        .add_to_counter(&TEST_COUNTER, &[("outcome", "odd \"value\"")], 5)
        .await
        .expect("add");
    let samples = store.stored_samples().await.expect("samples");
    assert_eq!(
        value_of(&samples, TEST_COUNTER.name, "outcome=\"odd \\\"value\\\"\""),
        Some(5)
    );
}

async fn observations_fill_cumulative_buckets(store: Store) {
    for millis in [800, 45_000, 7_200_000, -5] {
        store
            .observe(&BUILD_DURATION, millis)
            .await
            .expect("observe");
    }
    let samples = store.stored_samples().await.expect("samples");
    let bucket = |le: &str| {
        value_of(
            &samples,
            &BUILD_DURATION.bucket_name(),
            &format!("le=\"{le}\""),
        )
    };
    // 800 ms and the negative value (counted as zero) fall in every bucket; 45 s from the
    // 60 s bucket on; two hours in none but +Inf, which is the count.
    assert_eq!(bucket("1"), Some(2));
    assert_eq!(bucket("30"), Some(2));
    assert_eq!(bucket("60"), Some(3));
    assert_eq!(bucket("3600"), Some(3));
    assert_eq!(
        value_of(&samples, &BUILD_DURATION.count_name(), ""),
        Some(4)
    );
    assert_eq!(
        value_of(&samples, &BUILD_DURATION.sum_name(), ""),
        Some(800 + 45_000 + 7_200_000)
    );
    // A finished build counts by status and adds its run time.
    let finished = slipway_store::metrics::BUILDS_FINISHED;
    let record = queued_build(&store).await;
    let claimed = store
        .claim_build("metrics-worker/claim-1", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("a build to claim");
    assert_eq!(claimed.id, record);
    store.observe_claim(&claimed).await.expect("queue wait");
    let started = claimed.started_at.expect("started");
    store
        .observe_finish(&claimed, BuildStatus::Succeeded, started + 2_000)
        .await
        .expect("finish");
    let samples = store.stored_samples().await.expect("samples");
    assert_eq!(
        value_of(&samples, finished.name, "status=\"succeeded\""),
        Some(1)
    );
    assert_eq!(
        value_of(&samples, &BUILD_DURATION.count_name(), ""),
        Some(5)
    );
    assert_eq!(value_of(&samples, &QUEUE_WAIT.count_name(), ""), Some(1));
}

async fn fleet_slots_count_running_builds_of_live_workers(store: Store) {
    let now = now_millis();
    let worker = |id: &str, slots: i64, last_seen_at: i64, problem: Option<&str>| WorkerRecord {
        id: id.to_owned(),
        hostname: "host".to_owned(),
        slots,
        started_at: now - 60_000,
        last_seen_at,
        problem: problem.map(str::to_owned),
    };
    for record in [
        worker("alpha", 4, now, None),
        worker("beta", 2, now, Some("the Docker engine does not answer")),
        // Not heard from within the window: neither its slots nor its builds count.
        worker("gamma", 8, now - 120_000, None),
    ] {
        store.report_worker(&record).await.expect("report");
    }
    queued_build(&store).await;
    queued_build(&store).await;
    queued_build(&store).await;
    let lease = Duration::from_secs(60);
    store
        .claim_build("alpha/c1", lease)
        .await
        .expect("claim")
        .expect("build");
    store
        .claim_build("gamma/c2", lease)
        .await
        .expect("claim")
        .expect("build");
    // A worker whose id merely starts like another's does not lend it its builds.
    store
        .claim_build("alphabet/c3", lease)
        .await
        .expect("claim")
        .expect("build");

    let fleet = store.fleet_state(now - 30_000).await.expect("fleet");
    assert_eq!(fleet.slots_total, 6);
    assert_eq!(fleet.slots_in_use, 1);
    assert_eq!(fleet.healthy_workers, 1);
    assert_eq!(fleet.unhealthy_workers, 1);
    let queue = store.queue_counts().await.expect("queue");
    assert_eq!((queue.queued, queue.running), (0, 3));
}

/// Queues one build of a new commit of `acme/web`, creating the repository when needed.
async fn queued_build(store: &Store) -> Uuid {
    let spec = RepositorySpec {
        name: "acme/web".parse().expect("name"),
        provider: "github".parse().expect("provider"),
        git_url: "http://127.0.0.1:9/acme/web.git".to_owned(),
        image: "127.0.0.1:5000/acme/web".parse().expect("image"),
        rules: vec![BuildRule::default_rule()],
        allow_unsigned: false,
        allow_legacy_sha1: false,
        supersede_running: false,
        build_timeout_secs: 600,
        limits: Default::default(),
        anonymous_read: false,
        forge_repository: None,
        status: Default::default(),
    };
    store.sync_repositories(&[spec]).await.expect("sync");
    let repository = store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("repository");
    let commit = Uuid::new_v4().simple().to_string();
    let build = NewBuild {
        id: Uuid::now_v7(),
        image: "127.0.0.1:5000/acme/web".to_owned(),
        trigger: "trigger".to_owned(),
        supersedes: Supersede::Nothing,
        plan: BuildPlan {
            rule_index: 0,
            git_ref: GitRef::parse("refs/heads/main").expect("ref"),
            commit: format!("{commit}{}", &commit[..8]).parse().expect("commit"),
            tags: vec!["latest".to_owned()],
            dockerfile: "Dockerfile".to_owned(),
            context: "/".to_owned(),
            before: None,
            message_checked: true,
            options: Default::default(),
        },
    };
    let queued = store
        .queue_builds(repository.id, &[build])
        .await
        .expect("queue");
    match queued.first() {
        Some(Queued::Created(id)) => *id,
        other => panic!("expected a new build, got {other:?}"),
    }
}
