//! The store's behaviour, run on both backends: every test below exists once for SQLite and
//! once for PostgreSQL (the rig's server, one fresh database per test).

#[macro_use]
mod support;

use support::*;

use std::time::Duration;

use slipway_core::plan::BuildPlan;
use slipway_core::{BuildRule, BuildStatus, GitRef};
use slipway_store::{
    BuildPlacement, BuildResult, DeliveryAnswer, Lease, NewBuild, NewDelivery, RecordOutcome,
    RepositorySpec, Store, Supersede, now_millis,
};
use uuid::Uuid;

#[tokio::test]
async fn postgres_notifies_other_processes_of_queued_builds() {
    let url = postgres_database().await;
    let web = Store::connect(&url).await.expect("web store");
    web.migrate().await.expect("migrate");
    let worker = Store::connect(&url).await.expect("worker store");
    let forwarder = worker
        .spawn_notification_forwarder()
        .expect("postgres forwards");
    let woken = worker.queued_notifier();
    let repo = repository(&web, "acme/web").await;
    // The listener subscribes in the background; queue builds from the other "process" until
    // one wakes this one (the first may be announced before it listens).
    let mut woke = false;
    for attempt in 0..20 {
        let waiting = woken.notified();
        tokio::pin!(waiting);
        waiting.as_mut().enable();
        record(
            &web,
            &delivery(repo, &format!("notify-{attempt}")),
            &[build_for(&format!("{:x}", attempt % 16).repeat(40))],
        )
        .await;
        if tokio::time::timeout(Duration::from_millis(500), waiting)
            .await
            .is_ok()
        {
            woke = true;
            break;
        }
    }
    assert!(
        woke,
        "a build queued through one store wakes workers waiting on another"
    );
    forwarder.abort();
}

on_both_backends!(
    repositories_sync_and_disable,
    delivery_and_builds_are_recorded_once,
    concurrent_duplicate_deliveries_make_one_build,
    claims_are_exclusive_and_owner_guarded,
    expired_leases_are_requeued_then_failed,
    logs_are_paged_in_order,
    migrations_are_idempotent,
    one_build_per_rule_ref_and_commit_across_deliveries,
    refused_deliveries_are_logged_without_blocking_the_real_one,
    deliveries_page_newest_first_and_retention_purges,
    newer_pushes_supersede_older_builds_of_the_same_rule_and_ref,
    tags_are_taken_by_compare_and_set_on_their_holder,
    infrastructure_retries_wait_out_their_backoff_and_every_attempt_is_kept,
    a_build_handed_back_at_shutdown_keeps_its_attempts,
    a_repository_never_runs_more_builds_than_its_limit,
    a_disabled_repositorys_builds_wait_until_it_is_enabled_again,
    workers_report_their_health,
);

on_both_backends!(
    multi_thread: deliveries_arriving_together_are_each_committed_and_counted,
    a_failing_delivery_fails_only_itself_in_a_group,
);

fn spec(name: &str) -> RepositorySpec {
    RepositorySpec {
        name: name.parse().expect("name"),
        provider: "github".parse().expect("provider"),
        git_url: "http://127.0.0.1:9/x.git".to_owned(),
        image: "127.0.0.1:5000/acme/web".parse().expect("image"),
        rules: vec![BuildRule::default_rule()],
        allow_unsigned: false,
        allow_legacy_sha1: false,
        supersede_running: false,
        build_timeout_secs: 3600,
        limits: Default::default(),
        anonymous_read: false,
        status: Default::default(),
        forge_repository: None,
    }
}

fn delivery(repository_id: Uuid, key: &str) -> NewDelivery {
    NewDelivery {
        id: Uuid::now_v7(),
        repository_id: Some(repository_id),
        repository_name: "acme/web".to_owned(),
        provider: "github".to_owned(),
        event: "push".to_owned(),
        forge_delivery_id: Some(key.to_owned()),
        delivery_key: Some(key.to_owned()),
        source_address: "127.0.0.1:40000".to_owned(),
        received_at: now_millis(),
        verification: "verified (x-hub-signature-256)".to_owned(),
        headers_json: "{}".to_owned(),
        body: Some(b"{}".to_vec()),
        redelivery_of: None,
    }
}

/// Renders an answer that lists each build and whether it was new.
fn answer(key: &str) -> impl Fn(&[BuildPlacement]) -> DeliveryAnswer + Send + Sync + 'static {
    let key = key.to_owned();
    move |placements| {
        DeliveryAnswer {
        status_code: 202,
        response_json: serde_json::json!({
            "key": key,
            "builds": placements.iter().map(|p| serde_json::json!({"id": p.id, "created": p.created})).collect::<Vec<_>>(),
        })
        .to_string(),
        outcome: format!("{} build(s)", placements.len()),
        decisions_json: "[]".to_owned(),
    }
    }
}

async fn record(store: &Store, delivery: &NewDelivery, builds: &[NewBuild]) -> RecordOutcome {
    let key = delivery.delivery_key.clone().unwrap_or_default();
    store
        .record_delivery(delivery, builds, answer(&key), None)
        .await
        .expect("record")
}

fn build() -> NewBuild {
    build_for("1111111111111111111111111111111111111111")
}

fn build_for(commit: &str) -> NewBuild {
    NewBuild {
        id: Uuid::now_v7(),
        image: "127.0.0.1:5000/acme/web".to_owned(),
        trigger: "push".to_owned(),
        supersedes: Supersede::Nothing,
        plan: BuildPlan {
            rule_index: 0,
            git_ref: GitRef::parse("refs/heads/main").expect("ref"),
            commit: commit.parse().expect("commit"),
            tags: vec!["latest".to_owned(), "1.0".to_owned()],
            dockerfile: "Dockerfile".to_owned(),
            context: "/".to_owned(),
            before: None,
            message_checked: true,
            options: Default::default(),
        },
    }
}

async fn repository(store: &Store, name: &str) -> Uuid {
    store.sync_repositories(&[spec(name)]).await.expect("sync");
    store
        .repository_by_name(name)
        .await
        .expect("query")
        .expect("exists")
        .id
}

async fn repositories_sync_and_disable(store: Store) {
    store
        .sync_repositories(&[spec("acme/web"), spec("acme/api")])
        .await
        .expect("sync");
    let web = store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("exists");
    assert!(web.enabled);
    assert_eq!(web.rules, vec![BuildRule::default_rule()]);
    // Syncing again is idempotent and keeps ids; a repository left out is disabled, not deleted.
    store
        .sync_repositories(&[spec("acme/web")])
        .await
        .expect("sync again");
    let again = store
        .repository_by_name("acme/web")
        .await
        .expect("query")
        .expect("exists");
    assert_eq!(again.id, web.id);
    let api = store
        .repository_by_name("acme/api")
        .await
        .expect("query")
        .expect("kept");
    assert!(!api.enabled);
    store
        .sync_repositories(&[spec("acme/web"), spec("acme/api")])
        .await
        .expect("re-enable");
    assert!(
        store
            .repository_by_name("acme/api")
            .await
            .expect("query")
            .expect("kept")
            .enabled
    );
    assert!(
        store
            .repository_by_name("acme/none")
            .await
            .expect("query")
            .is_none()
    );
}

async fn delivery_and_builds_are_recorded_once(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let first = build();
    let outcome = record(&store, &delivery(repo, "d-1"), std::slice::from_ref(&first)).await;
    let RecordOutcome::Recorded(first_answer) = outcome else {
        panic!("the first delivery is recorded: {outcome:?}")
    };
    let stored = store.build(first.id).await.expect("query").expect("exists");
    assert_eq!(stored.status, BuildStatus::Queued);
    assert_eq!(stored.tags, vec!["latest".to_owned(), "1.0".to_owned()]);
    assert_eq!(stored.git_ref, "refs/heads/main");

    let again = record(&store, &delivery(repo, "d-1"), &[build()]).await;
    assert_eq!(
        again,
        RecordOutcome::Duplicate {
            status_code: 202,
            response_json: first_answer.response_json.clone()
        }
    );
    assert!(
        first_answer.response_json.contains(&first.id.to_string()),
        "{first_answer:?}"
    );
    assert_eq!(
        store.builds_for_repository(repo).await.expect("list").len(),
        1
    );
    assert_eq!(store.delivery_count(repo).await.expect("count"), 1);
}

async fn concurrent_duplicate_deliveries_make_one_build(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { record(&store, &delivery(repo, "same"), &[build()]).await })
    });
    let mut recorded = 0;
    for attempt in attempts {
        if matches!(attempt.await.expect("join"), RecordOutcome::Recorded(_)) {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(
        store.builds_for_repository(repo).await.expect("list").len(),
        1
    );
}

async fn claims_are_exclusive_and_owner_guarded(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let builds: Vec<NewBuild> = (0..6)
        .map(|n| build_for(&format!("{n}").repeat(40)))
        .collect();
    record(&store, &delivery(repo, "many"), &builds).await;
    let claims = (0..10).map(|worker| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim_build(&format!("w{worker}"), Duration::from_secs(60))
                .await
        })
    });
    let mut claimed = Vec::new();
    for claim in claims {
        if let Some(build) = claim.await.expect("join").expect("claim") {
            claimed.push(build.id);
        }
    }
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), 6, "every build claimed exactly once");

    let id = builds[0].id;
    let owner = store.build(id).await.expect("query").expect("exists");
    assert_eq!(owner.status, BuildStatus::Running);
    assert_eq!(owner.attempts, 1);
    let result = BuildResult {
        status: BuildStatus::Succeeded,
        error: None,
        digest: Some("sha256:x".to_owned()),
    };
    assert!(
        !store
            .finish_build(id, "intruder", &result)
            .await
            .expect("finish"),
        "only the owner may finish"
    );
    assert_eq!(
        store
            .heartbeat(id, "intruder", Duration::from_secs(60))
            .await
            .expect("heartbeat"),
        Lease::Lost
    );
    // Find the owner by trying each worker id; exactly one succeeds.
    let mut finished = 0;
    for worker in 0..10 {
        if store
            .finish_build(id, &format!("w{worker}"), &result)
            .await
            .expect("finish")
        {
            finished += 1;
        }
    }
    assert_eq!(finished, 1);
    let done = store.build(id).await.expect("query").expect("exists");
    assert_eq!(
        (done.status, done.digest.as_deref()),
        (BuildStatus::Succeeded, Some("sha256:x"))
    );
    assert!(done.finished_at.is_some());
    assert!(
        store
            .claim_build("late", Duration::from_secs(60))
            .await
            .expect("claim")
            .is_none()
    );
}

async fn expired_leases_are_requeued_then_failed(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let only = build();
    record(
        &store,
        &delivery(repo, "lease"),
        std::slice::from_ref(&only),
    )
    .await;
    for attempt in 1..=2 {
        let claimed = store
            .claim_build("dying", Duration::ZERO)
            .await
            .expect("claim")
            .expect("a build");
        assert_eq!(claimed.attempts, attempt);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.reap_expired_leases(2).await.expect("reap"), 1);
    }
    let failed = store.build(only.id).await.expect("query").expect("exists");
    assert_eq!(failed.status, BuildStatus::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("stopped responding")),
        "{:?}",
        failed.error
    );
}

async fn logs_are_paged_in_order(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let only = build();
    record(&store, &delivery(repo, "log"), std::slice::from_ref(&only)).await;
    assert_eq!(store.last_log_seq(only.id).await.expect("seq"), 0);
    for seq in 1..=5 {
        store
            .append_log(only.id, seq, format!("line {seq}\n").as_bytes())
            .await
            .expect("append");
    }
    // A retried append of the same chunk changes nothing.
    store
        .append_log(only.id, 3, b"duplicate\n")
        .await
        .expect("append again");
    let first = store.log_chunks(only.id, 0, 2).await.expect("page");
    assert_eq!(first.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2]);
    let rest = store.log_chunks(only.id, 2, 10).await.expect("page");
    let text: String = rest
        .iter()
        .map(|c| String::from_utf8_lossy(&c.data).into_owned())
        .collect();
    assert_eq!(text, "line 3\nline 4\nline 5\n");
    assert_eq!(store.last_log_seq(only.id).await.expect("seq"), 5);
}

async fn migrations_are_idempotent(store: Store) {
    store.migrate().await.expect("second migrate is a no-op");
    store.ping().await.expect("ping");
}

async fn one_build_per_rule_ref_and_commit_across_deliveries(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let first = build();
    record(
        &store,
        &delivery(repo, "hook-a"),
        std::slice::from_ref(&first),
    )
    .await;
    // A second hook (or a redelivery under a new key) for the same push finds the first build.
    let second = build();
    let RecordOutcome::Recorded(answer) = record(
        &store,
        &delivery(repo, "hook-b"),
        std::slice::from_ref(&second),
    )
    .await
    else {
        panic!("a new delivery key is recorded");
    };
    assert!(
        answer
            .response_json
            .contains(&format!("{{\"created\":false,\"id\":\"{}\"}}", first.id)),
        "{answer:?}"
    );
    assert!(store.build(second.id).await.expect("query").is_none());
    assert_eq!(
        store.builds_for_repository(repo).await.expect("list").len(),
        1
    );
    assert_eq!(store.delivery_count(repo).await.expect("count"), 2);
    // Another commit is another build.
    record(
        &store,
        &delivery(repo, "hook-c"),
        &[build_for(&"2".repeat(40))],
    )
    .await;
    assert_eq!(
        store.builds_for_repository(repo).await.expect("list").len(),
        2
    );
}

async fn refused_deliveries_are_logged_without_blocking_the_real_one(store: Store) {
    let repo = repository(&store, "acme/web").await;
    // The server sets no body on a request it did not verify.
    let refused = NewDelivery {
        verification: "signature mismatch".to_owned(),
        body: None,
        ..delivery(repo, "same-id")
    };
    store
        .record_refused_delivery(&refused, 401, "signature mismatch: …")
        .await
        .expect("log refusal");
    let unknown = NewDelivery {
        repository_id: None,
        repository_name: "acme/nope".to_owned(),
        ..delivery(repo, "x")
    };
    store
        .record_refused_delivery(&unknown, 404, "no repository acme/nope is configured")
        .await
        .expect("log 404");

    let logged = store
        .delivery(refused.id)
        .await
        .expect("query")
        .expect("logged");
    assert_eq!(
        (logged.status_code, logged.verification.as_str()),
        (401, "signature mismatch")
    );
    assert!(!logged.has_body, "an unverified body is never stored");
    assert!(
        store
            .delivery_body(refused.id)
            .await
            .expect("query")
            .is_none()
    );

    let genuine = delivery(repo, "same-id");
    assert!(matches!(
        record(&store, &genuine, &[build()]).await,
        RecordOutcome::Recorded(_)
    ));
    assert_eq!(
        store.delivery_body(genuine.id).await.expect("query"),
        Some(b"{}".to_vec())
    );
    assert_eq!(
        store
            .builds_for_delivery(genuine.id)
            .await
            .expect("builds")
            .len(),
        1
    );
}

async fn deliveries_page_newest_first_and_retention_purges(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut next = delivery(repo, &format!("page-{n}"));
        next.received_at = 1_000 + n;
        ids.push(next.id);
        record(&store, &next, &[]).await;
    }
    let refused = NewDelivery {
        received_at: 1_000,
        body: None,
        ..delivery(repo, "refused")
    };
    store
        .record_refused_delivery(&refused, 401, "missing signature")
        .await
        .expect("log");
    let first_page = store
        .deliveries_for_repository(repo, 3, None)
        .await
        .expect("page");
    assert_eq!(first_page.len(), 3);
    assert_eq!(first_page[0].id, refused.id, "newest first");
    let rest = store
        .deliveries_for_repository(repo, 10, Some(first_page[2].id))
        .await
        .expect("page");
    assert_eq!(
        rest.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]]
    );

    assert_eq!(store.purge_deliveries(1_003).await.expect("purge"), 3 + 1);
    assert!(
        store.delivery(refused.id).await.expect("query").is_none(),
        "old refusals are deleted"
    );
    let kept = store
        .delivery(ids[0])
        .await
        .expect("query")
        .expect("verified deliveries stay");
    assert!(!kept.has_body, "but their bodies are dropped");
    assert!(
        store
            .delivery(ids[4])
            .await
            .expect("query")
            .expect("recent")
            .has_body
    );
}

async fn newer_pushes_supersede_older_builds_of_the_same_rule_and_ref(store: Store) {
    let repo = repository(&store, "acme/web").await;
    // A push replacing `before` with `commit`.
    let push = |before: Option<&str>, commit: &str, how| {
        let mut build = NewBuild {
            supersedes: how,
            ..build_for(commit)
        };
        build.plan.before = before.map(|b| b.parse().expect("commit"));
        build
    };
    let (a, b, c, d) = (
        "a".repeat(40),
        "b".repeat(40),
        "c".repeat(40),
        "d".repeat(40),
    );
    let running = push(None, &a, Supersede::Queued);
    record(
        &store,
        &delivery(repo, "s-1"),
        std::slice::from_ref(&running),
    )
    .await;
    store
        .claim_build("w", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("claimed");
    let queued = push(Some(&a), &b, Supersede::Queued);
    record(
        &store,
        &delivery(repo, "s-2"),
        std::slice::from_ref(&queued),
    )
    .await;
    let newest = push(Some(&b), &c, Supersede::Queued);
    record(
        &store,
        &delivery(repo, "s-3"),
        std::slice::from_ref(&newest),
    )
    .await;

    let cancelled = store
        .build(queued.id)
        .await
        .expect("query")
        .expect("exists");
    assert_eq!(cancelled.status, BuildStatus::Cancelled);
    assert_eq!(
        cancelled.error.as_deref(),
        Some(
            format!(
                "superseded by build {} for the newer commit cccccccccccc",
                newest.id
            )
            .as_str()
        )
    );
    assert_eq!(
        store
            .build(newest.id)
            .await
            .expect("query")
            .expect("exists")
            .status,
        BuildStatus::Queued
    );
    // A late, replayed older push (b replacing a, under a new delivery key) finds its build and
    // cancels nothing newer.
    record(
        &store,
        &delivery(repo, "s-2-again"),
        &[push(Some(&a), &b, Supersede::Queued)],
    )
    .await;
    assert_eq!(
        store
            .build(newest.id)
            .await
            .expect("query")
            .expect("exists")
            .status,
        BuildStatus::Queued
    );
    // A running build is left alone unless the repository asks for it.
    assert_eq!(
        store
            .heartbeat(running.id, "w", Duration::from_secs(60))
            .await
            .expect("beat"),
        Lease::Held
    );
    let mut after_running = push(Some(&a), &d, Supersede::QueuedAndRunning);
    after_running.plan.rule_index = 0;
    record(
        &store,
        &delivery(repo, "s-4"),
        std::slice::from_ref(&after_running),
    )
    .await;
    assert_eq!(
        store
            .heartbeat(running.id, "w", Duration::from_secs(60))
            .await
            .expect("beat"),
        Lease::CancelRequested
    );
    // Another ref is not superseded.
    let mut other_ref = push(Some(&d), &"e".repeat(40), Supersede::QueuedAndRunning);
    other_ref.plan.git_ref = GitRef::parse("refs/heads/dev").expect("ref");
    record(
        &store,
        &delivery(repo, "s-5"),
        std::slice::from_ref(&other_ref),
    )
    .await;
    assert_eq!(
        store
            .build(after_running.id)
            .await
            .expect("query")
            .expect("exists")
            .status,
        BuildStatus::Queued
    );
}

async fn tags_are_taken_by_compare_and_set_on_their_holder(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let first = build_for(&"1".repeat(40));
    let second = build_for(&"2".repeat(40));
    record(
        &store,
        &delivery(repo, "t-1"),
        &[first.clone(), second.clone()],
    )
    .await;
    let first = store.build(first.id).await.expect("query").expect("exists");
    let second = store
        .build(second.id)
        .await
        .expect("query")
        .expect("exists");
    let image = first.image.clone();

    assert_eq!(
        store.tag_holder(&image, "latest").await.expect("holder"),
        None
    );
    assert!(store.take_tag(&first, "latest", None).await.expect("take"));
    assert!(
        !store.take_tag(&second, "latest", None).await.expect("take"),
        "someone holds it now"
    );
    let holder = store
        .tag_holder(&image, "latest")
        .await
        .expect("holder")
        .expect("held");
    assert_eq!(
        (holder.build_id.as_str(), holder.pushed),
        (first.id.to_string().as_str(), false)
    );
    store
        .tag_pushed(&image, "latest", first.id)
        .await
        .expect("pushed");
    assert!(
        store
            .tag_holder(&image, "latest")
            .await
            .expect("holder")
            .expect("held")
            .pushed
    );
    // Taking it needs the current holder's id: a stale decision loses.
    assert!(
        !store
            .take_tag(&second, "latest", Some(&second.id.to_string()))
            .await
            .expect("take")
    );
    assert!(
        store
            .take_tag(&second, "latest", Some(&first.id.to_string()))
            .await
            .expect("take")
    );
    let holder = store
        .tag_holder(&image, "latest")
        .await
        .expect("holder")
        .expect("held");
    assert_eq!(
        (holder.build_id, holder.commit_sha, holder.pushed),
        (second.id.to_string(), "2".repeat(40), false)
    );
}

async fn infrastructure_retries_wait_out_their_backoff_and_every_attempt_is_kept(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let only = build();
    record(
        &store,
        &delivery(repo, "retry"),
        std::slice::from_ref(&only),
    )
    .await;
    let lease = Duration::from_secs(60);
    store
        .claim_build("w1", lease)
        .await
        .expect("claim")
        .expect("claimed");
    assert!(
        !store
            .requeue_build(only.id, "intruder", "x", 0)
            .await
            .expect("requeue"),
        "only the owner"
    );
    let later = now_millis() + 60_000;
    assert!(
        store
            .requeue_build(
                only.id,
                "w1",
                "attempt 1 failed (infrastructure): engine gone",
                later
            )
            .await
            .expect("requeue")
    );
    let waiting = store.build(only.id).await.expect("query").expect("exists");
    assert_eq!(
        (waiting.status, waiting.not_before),
        (BuildStatus::Queued, Some(later))
    );
    assert!(
        store
            .claim_build("w2", lease)
            .await
            .expect("claim")
            .is_none(),
        "not before its backoff ends"
    );

    let history = store.build_attempts(only.id).await.expect("attempts");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].worker, "w1");
    assert_eq!(history[0].outcome.as_deref(), Some("retry"));
    assert_eq!(
        history[0].error.as_deref(),
        Some("attempt 1 failed (infrastructure): engine gone")
    );
    assert!(history[0].finished_at.is_some());
}

async fn a_build_handed_back_at_shutdown_keeps_its_attempts(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let only = build();
    record(
        &store,
        &delivery(repo, "hand-back"),
        std::slice::from_ref(&only),
    )
    .await;
    let lease = Duration::from_secs(60);
    assert_eq!(
        store
            .claim_build("w1/a", lease)
            .await
            .expect("claim")
            .expect("claimed")
            .attempts,
        1
    );
    assert!(
        !store
            .hand_back(only.id, "w1/other-claim")
            .await
            .expect("hand back"),
        "only the claim's owner"
    );
    assert!(store.hand_back(only.id, "w1/a").await.expect("hand back"));
    let again = store
        .claim_build("w2/b", lease)
        .await
        .expect("claim")
        .expect("claimed at once, no backoff");
    assert_eq!(
        again.attempts, 1,
        "the handed-back run did not use up an attempt"
    );
    let history = store.build_attempts(only.id).await.expect("attempts");
    let outcomes: Vec<(i64, &str, Option<&str>)> = history
        .iter()
        .map(|a| (a.attempt, a.worker.as_str(), a.outcome.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        vec![(1, "w1/a", Some("handed_back")), (1, "w2/b", None)]
    );
}

async fn a_repository_never_runs_more_builds_than_its_limit(store: Store) {
    let limited = RepositorySpec {
        limits: slipway_store::Limits {
            max_concurrent_builds: 1,
            ..Default::default()
        },
        ..spec("acme/limited")
    };
    store
        .sync_repositories(&[limited, spec("acme/free")])
        .await
        .expect("sync");
    let limited = store
        .repository_by_name("acme/limited")
        .await
        .expect("query")
        .expect("exists")
        .id;
    let free = store
        .repository_by_name("acme/free")
        .await
        .expect("query")
        .expect("exists")
        .id;
    let (first, second) = (build_for(&"1".repeat(40)), build_for(&"2".repeat(40)));
    record(
        &store,
        &delivery(limited, "l-1"),
        &[first.clone(), second.clone()],
    )
    .await;
    let other = build_for(&"3".repeat(40));
    let mut later = delivery(free, "f-1");
    later.repository_name = "acme/free".to_owned();
    record(&store, &later, std::slice::from_ref(&other)).await;

    let lease = Duration::from_secs(60);
    let claimed = store
        .claim_build("w/1", lease)
        .await
        .expect("claim")
        .expect("first");
    assert_eq!(claimed.id, first.id);
    // The limited repository's second build waits; another repository's build does not.
    let next = store
        .claim_build("w/2", lease)
        .await
        .expect("claim")
        .expect("the other repository");
    assert_eq!(next.id, other.id);
    assert!(
        store
            .claim_build("w/3", lease)
            .await
            .expect("claim")
            .is_none(),
        "the limit holds"
    );
    assert_eq!(store.running_builds(limited).await.expect("count"), 1);
    let done = BuildResult {
        status: BuildStatus::Succeeded,
        error: None,
        digest: None,
    };
    assert!(
        store
            .finish_build(first.id, "w/1", &done)
            .await
            .expect("finish")
    );
    assert_eq!(
        store
            .claim_build("w/4", lease)
            .await
            .expect("claim")
            .expect("now free")
            .id,
        second.id
    );
}

async fn a_disabled_repositorys_builds_wait_until_it_is_enabled_again(store: Store) {
    // One repository from the API (disabled through the API) and one from the configuration
    // (disabled by leaving the file), each with a queued build, and an enabled one beside them.
    let api = store
        .create_repository(
            &spec("acme/api"),
            None,
            &slipway_store::SecretChanges::default(),
        )
        .await
        .expect("create")
        .id;
    store
        .sync_repositories(&[spec("acme/config"), spec("acme/free")])
        .await
        .expect("sync");
    let config = store
        .repository_by_name("acme/config")
        .await
        .expect("query")
        .expect("exists")
        .id;
    let free = store
        .repository_by_name("acme/free")
        .await
        .expect("query")
        .expect("exists")
        .id;
    let mut queued = Vec::new();
    for (repository, name, commit) in [
        (api, "acme/api", "1"),
        (config, "acme/config", "2"),
        (free, "acme/free", "3"),
    ] {
        let build = build_for(&commit.repeat(40));
        let mut arrived = delivery(repository, &format!("{name}-1"));
        arrived.repository_name = name.to_owned();
        record(&store, &arrived, std::slice::from_ref(&build)).await;
        queued.push(build.id);
    }
    store
        .set_repository_enabled(api, false)
        .await
        .expect("disable");
    store
        .sync_repositories(&[spec("acme/free")])
        .await
        .expect("leave acme/config out");

    let lease = Duration::from_secs(60);
    // The API repository's build is the oldest, yet the enabled repository's build is the one
    // claimed, and then nothing is: both disabled repositories' builds wait.
    let claimed = store
        .claim_build("w/1", lease)
        .await
        .expect("claim")
        .expect("the enabled repository's build");
    assert_eq!(claimed.id, queued[2]);
    assert!(
        store
            .claim_build("w/2", lease)
            .await
            .expect("claim")
            .is_none(),
        "builds of disabled repositories are not claimed"
    );
    for id in &queued[..2] {
        let waiting = store.build(*id).await.expect("query").expect("kept");
        assert_eq!(
            waiting.status,
            BuildStatus::Queued,
            "still queued, not dropped"
        );
        assert_eq!(waiting.attempts, 0);
    }

    // Enabling again, either way, lets them run, oldest first.
    store
        .set_repository_enabled(api, true)
        .await
        .expect("enable");
    assert_eq!(
        store
            .claim_build("w/3", lease)
            .await
            .expect("claim")
            .expect("the API repository's build")
            .id,
        queued[0]
    );
    store
        .sync_repositories(&[spec("acme/config"), spec("acme/free")])
        .await
        .expect("put acme/config back");
    assert_eq!(
        store
            .claim_build("w/4", lease)
            .await
            .expect("claim")
            .expect("the configuration repository's build")
            .id,
        queued[1]
    );
}

async fn workers_report_their_health(store: Store) {
    let now = now_millis();
    let mut worker = slipway_store::WorkerRecord {
        id: "host-1-abc".to_owned(),
        hostname: "host".to_owned(),
        slots: 2,
        started_at: now,
        last_seen_at: now,
        problem: None,
    };
    store.report_worker(&worker).await.expect("report");
    worker.problem = Some("the Docker engine does not answer".to_owned());
    worker.last_seen_at = now + 5_000;
    store.report_worker(&worker).await.expect("report again");
    let seen = store.workers_seen_since(now - 1).await.expect("list");
    assert_eq!(seen, vec![worker.clone()]);
    assert!(
        store
            .workers_seen_since(now + 10_000)
            .await
            .expect("list")
            .is_empty(),
        "a silent worker drops out"
    );
    store.forget_worker(&worker.id).await.expect("forget");
    assert!(store.workers_seen_since(0).await.expect("list").is_empty());
}

/// Many deliveries at once: each gets its own answer with its own build, repeats of one key
/// inside the same burst are answered from the first, and every delivery is counted for
/// `/metrics` exactly once.
async fn deliveries_arriving_together_are_each_committed_and_counted(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let tally = || {
        Some(slipway_store::DeliveryTally {
            provider: "github".to_owned(),
            ignored: false,
        })
    };
    let distinct = (0..48).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let key = format!("burst-{n}");
            let commit = format!("{:040x}", n + 1);
            store
                .record_delivery(
                    &delivery(repo, &key),
                    &[build_for(&commit)],
                    answer(&key),
                    tally(),
                )
                .await
        })
    });
    let repeats = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let commit = "f".repeat(40);
            store
                .record_delivery(
                    &delivery(repo, "repeated"),
                    &[build_for(&commit)],
                    answer("repeated"),
                    tally(),
                )
                .await
        })
    });
    let mut keys = std::collections::HashSet::new();
    for outcome in distinct {
        match outcome.await.expect("join").expect("record") {
            RecordOutcome::Recorded(answer) => {
                let json: serde_json::Value =
                    serde_json::from_str(&answer.response_json).expect("json");
                assert_eq!(json["builds"].as_array().map(Vec::len), Some(1), "{json}");
                assert_eq!(json["builds"][0]["created"], true, "{json}");
                assert!(
                    keys.insert(json["key"].to_string()),
                    "one answer per key: {json}"
                );
            }
            other => panic!("a new delivery was taken for a repeat: {other:?}"),
        }
    }
    let mut answers = Vec::new();
    let mut recorded = 0;
    for outcome in repeats {
        match outcome.await.expect("join").expect("record") {
            RecordOutcome::Recorded(answer) => {
                recorded += 1;
                answers.push(answer.response_json);
            }
            RecordOutcome::Duplicate { response_json, .. } => answers.push(response_json),
        }
    }
    assert_eq!(
        recorded, 1,
        "one of the repeats is the delivery, the rest repeat it"
    );
    answers.dedup();
    assert_eq!(
        answers.len(),
        1,
        "every repeat is answered as the first: {answers:?}"
    );
    assert_eq!(
        store.builds_for_repository(repo).await.expect("list").len(),
        49
    );
    let samples = store.stored_samples().await.expect("samples");
    let count = |outcome: &str| {
        samples
            .iter()
            .filter(|s| {
                s.name == "slipway_webhook_deliveries_total"
                    && s.labels.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(|s| s.value)
            .sum::<i64>()
    };
    assert_eq!(count("accepted"), 49);
    assert_eq!(count("duplicate"), 7);
}

/// A delivery that cannot be stored (here: its repository does not exist) fails alone; the
/// deliveries that were written in the same group are committed and answered.
async fn a_failing_delivery_fails_only_itself_in_a_group(store: Store) {
    let repo = repository(&store, "acme/web").await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("group-{n}");
            // Every fourth names a repository that is not there, which its foreign key refuses.
            let owner = if n % 4 == 3 { Uuid::now_v7() } else { repo };
            let commit = format!("{:040x}", n + 1);
            store
                .record_delivery(
                    &delivery(owner, &key),
                    &[build_for(&commit)],
                    answer(&key),
                    None,
                )
                .await
        }));
    }
    let mut failed = 0;
    for (n, task) in tasks.into_iter().enumerate() {
        match task.await.expect("join") {
            Ok(RecordOutcome::Recorded(_)) => assert_ne!(n % 4, 3, "delivery {n} was stored"),
            Ok(other) => panic!("delivery {n}: {other:?}"),
            Err(_) => {
                assert_eq!(n % 4, 3, "delivery {n} failed though it was valid");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 4);
    assert_eq!(
        store.builds_for_repository(repo).await.expect("list").len(),
        12
    );
}
