//! The notifications outbox: build transitions recorded by the database's triggers, their
//! leased dispatch into notifications, leased delivery with an attempt history, outgoing hooks
//! and commit-status settings. Each test runs once on SQLite and once on PostgreSQL (the rig's
//! server, a fresh database per test).

#[macro_use]
mod support;

use std::collections::HashSet;
use std::time::Duration;

use slipway_core::plan::BuildPlan;
use slipway_core::{BuildRule, BuildStatus, GitRef, Secret};
use slipway_store::{
    AfterAttempt, BuildResult, CancelOutcome, DeliveryAnswer, NewBuild, NewDelivery,
    NewNotification, NotificationAttempt, NotificationKind, RecordOutcome, Redelivery,
    RepositorySpec, SecretChange, SecretChanges, StatusConfig, Store, Supersede, Transition,
    now_millis,
};
use uuid::Uuid;

on_both_backends!(
    every_status_change_is_recorded_once,
    concurrent_dispatchers_never_share_a_transition,
    transition_leases_expire_and_bind_dispatch,
    notifications_are_leased_retried_and_kept_with_their_attempts,
    hooks_are_kept_per_repository_and_take_their_history_along,
    status_settings_come_from_the_repository,
    deleting_a_repository_removes_its_notifications,
    redeliveries_link_to_the_first_and_old_history_is_purged,
    one_sender_at_a_time_holds_a_status_slot,
    a_newer_status_of_the_same_slot_supersedes_across_builds,
    infrastructure_failures_are_told_from_the_commits,
);

/// A long lease, which no test outlives.
const LONG_LEASE_MS: i64 = 600_000;

fn spec(name: &str, status: StatusConfig) -> RepositorySpec {
    RepositorySpec {
        name: name.parse().expect("name"),
        provider: "github".parse().expect("provider"),
        git_url: format!("https://git.example/{name}.git"),
        image: format!("127.0.0.1:5000/{name}").parse().expect("image"),
        rules: vec![BuildRule::default_rule()],
        allow_unsigned: false,
        allow_legacy_sha1: false,
        supersede_running: false,
        build_timeout_secs: 3600,
        limits: Default::default(),
        anonymous_read: false,
        status,
        forge_repository: None,
    }
}

/// An API-managed repository with no commit statuses; returns its id.
async fn repository(store: &Store, name: &str) -> Uuid {
    store
        .create_repository(
            &spec(name, StatusConfig::default()),
            None,
            &SecretChanges::default(),
        )
        .await
        .expect("create repository")
        .id
}

fn new_build(commit_number: usize) -> NewBuild {
    NewBuild {
        id: Uuid::now_v7(),
        image: "127.0.0.1:5000/acme/any".to_owned(),
        trigger: "push".to_owned(),
        supersedes: Supersede::Nothing,
        plan: BuildPlan {
            rule_index: 0,
            git_ref: GitRef::parse("refs/heads/main").expect("ref"),
            commit: format!("{commit_number:040x}").parse().expect("commit"),
            tags: vec!["latest".to_owned()],
            dockerfile: "Dockerfile".to_owned(),
            context: "/".to_owned(),
            before: None,
            message_checked: true,
            options: Default::default(),
        },
    }
}

/// Queues one build outside any delivery; returns its id.
async fn queued(store: &Store, repository_id: Uuid, commit_number: usize) -> Uuid {
    let build = new_build(commit_number);
    let id = build.id;
    store
        .queue_builds(repository_id, &[build])
        .await
        .expect("queue");
    id
}

/// Queues one build through a recorded delivery; returns its id.
async fn delivered(store: &Store, repository_id: Uuid, commit_number: usize) -> Uuid {
    let build = new_build(commit_number);
    let id = build.id;
    let delivery = NewDelivery {
        id: Uuid::now_v7(),
        repository_id: Some(repository_id),
        repository_name: "acme/web".to_owned(),
        provider: "github".to_owned(),
        event: "push".to_owned(),
        forge_delivery_id: Some(format!("delivery-{commit_number}")),
        delivery_key: Some(format!("delivery-{commit_number}")),
        source_address: "127.0.0.1:40000".to_owned(),
        received_at: now_millis(),
        verification: "verified (x-hub-signature-256)".to_owned(),
        headers_json: "{}".to_owned(),
        body: Some(b"{\"ref\":\"refs/heads/main\"}".to_vec()),
        redelivery_of: None,
    };
    let outcome = store
        .record_delivery(
            &delivery,
            &[build],
            |_| DeliveryAnswer {
                status_code: 202,
                response_json: "{}".to_owned(),
                outcome: "1 build(s)".to_owned(),
                decisions_json: "[]".to_owned(),
            },
            None,
        )
        .await
        .expect("record delivery");
    assert!(matches!(outcome, RecordOutcome::Recorded(_)));
    id
}

fn succeeded() -> BuildResult {
    BuildResult {
        status: BuildStatus::Succeeded,
        error: None,
        digest: Some(format!("sha256:{}", "a".repeat(64))),
    }
}

/// Claims every undispatched transition and dispatches it with no notifications; returns what
/// was claimed, as (build, status) pairs in the order of the transitions.
async fn drain(store: &Store) -> Vec<(Uuid, String)> {
    let claimed = store
        .claim_transitions("drainer", LONG_LEASE_MS, 1000)
        .await
        .expect("claim transitions");
    let seqs: Vec<i64> = claimed.iter().map(|t| t.seq).collect();
    store
        .dispatch_transitions("drainer", &seqs, &[])
        .await
        .expect("dispatch");
    claimed
        .into_iter()
        .map(|t| (t.build_id, t.status))
        .collect()
}

fn pair(build: Uuid, status: &str) -> (Uuid, String) {
    (build, status.to_owned())
}

fn notification(
    transition: &Transition,
    repository_id: Uuid,
    kind: NotificationKind,
    hook_id: Option<Uuid>,
    event: &str,
) -> NewNotification {
    NewNotification {
        build_id: transition.build_id,
        repository_id,
        kind,
        hook_id,
        event: event.to_owned(),
        payload_json: format!("{{\"status\":\"{}\"}}", transition.status),
        transition_seq: transition.seq,
        status_key: None,
    }
}

fn attempt(
    number: i64,
    status_code: Option<i64>,
    error: Option<&str>,
    excerpt: Option<&str>,
) -> NotificationAttempt {
    NotificationAttempt {
        attempt: number,
        at: now_millis(),
        status_code,
        duration_ms: 12 * number,
        error: error.map(str::to_owned),
        response_excerpt: excerpt.map(str::to_owned),
    }
}

/// The ids of a list of notifications, in its order.
fn ids(notifications: &[slipway_store::NotificationRecord]) -> Vec<Uuid> {
    notifications.iter().map(|n| n.id).collect()
}

async fn every_status_change_is_recorded_once(store: Store) {
    let web = repository(&store, "acme/web").await;
    assert!(drain(&store).await.is_empty(), "a new store has none");

    // Queueing records `queued`, whichever path inserts the build.
    let first = queued(&store, web, 1).await;
    assert_eq!(drain(&store).await, [pair(first, "queued")]);
    let second = delivered(&store, web, 2).await;
    assert_eq!(drain(&store).await, [pair(second, "queued")]);
    // A build that is already waiting is not queued twice, and so announces nothing.
    queued(&store, web, 2).await;
    assert!(drain(&store).await.is_empty());

    // A claim records `running`; an infrastructure failure puts the build back as `queued`.
    let claimed = store
        .claim_build("w", Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("a queued build");
    assert_eq!(claimed.id, first, "the oldest build is claimed first");
    assert_eq!(drain(&store).await, [pair(first, "running")]);
    assert!(
        store
            .requeue_build(first, "w", "the docker daemon went away", 0)
            .await
            .expect("requeue")
    );
    assert_eq!(drain(&store).await, [pair(first, "queued")]);

    // Updates that leave the status alone record nothing: a heartbeat, asking a running build
    // to stop, and statements that write the status column with its own value.
    let running = store
        .claim_build("w", Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("a queued build")
        .id;
    assert_eq!(drain(&store).await, [pair(running, "running")]);
    store
        .heartbeat(running, "w", Duration::from_secs(600))
        .await
        .expect("heartbeat");
    assert_eq!(
        store.cancel_build(running, "stop").await.expect("cancel"),
        Some(CancelOutcome::Requested)
    );
    store
        .execute_raw_for_tests("UPDATE builds SET status = status")
        .await
        .expect("update status to itself");
    store
        .execute_raw_for_tests("UPDATE builds SET error = 'noted'")
        .await
        .expect("update another column");
    assert!(drain(&store).await.is_empty(), "no status changed");

    // Finishing records the end state.
    assert!(
        store
            .finish_build(running, "w", &succeeded())
            .await
            .expect("finish")
    );
    assert_eq!(drain(&store).await, [pair(running, "succeeded")]);

    // Cancelling a queued build records `cancelled`; cancelling it again records nothing.
    let waiting = if running == first { second } else { first };
    assert_eq!(
        store
            .cancel_build(waiting, "not wanted")
            .await
            .expect("cancel"),
        Some(CancelOutcome::Cancelled)
    );
    assert_eq!(drain(&store).await, [pair(waiting, "cancelled")]);
    assert_eq!(
        store.cancel_build(waiting, "again").await.expect("cancel"),
        Some(CancelOutcome::AlreadyFinished(BuildStatus::Cancelled))
    );
    assert!(drain(&store).await.is_empty());

    // Transitions that pile up are claimed oldest first, each once, with ascending seqs.
    let third = queued(&store, web, 3).await;
    store
        .claim_build("w", Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("the third build");
    assert!(
        store
            .finish_build(third, "w", &succeeded())
            .await
            .expect("finish")
    );
    let piled = store
        .claim_transitions("d", LONG_LEASE_MS, 10)
        .await
        .expect("claim transitions");
    let statuses: Vec<(Uuid, &str)> = piled
        .iter()
        .map(|t| (t.build_id, t.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [(third, "queued"), (third, "running"), (third, "succeeded")]
    );
    assert!(piled.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(piled.windows(2).all(|w| w[0].at <= w[1].at));
}

async fn concurrent_dispatchers_never_share_a_transition(store: Store) {
    let web = repository(&store, "acme/web").await;
    for commit in 0..40 {
        queued(&store, web, commit).await;
    }
    let mut seen: HashSet<i64> = HashSet::new();
    let mut total = 0;
    loop {
        let (left, right) = tokio::join!(
            store.claim_transitions("left", LONG_LEASE_MS, 3),
            store.claim_transitions("right", LONG_LEASE_MS, 3),
        );
        let left = left.expect("left claims");
        let right = right.expect("right claims");
        if left.is_empty() && right.is_empty() {
            break;
        }
        for transition in left.iter().chain(&right) {
            total += 1;
            assert!(
                seen.insert(transition.seq),
                "transition {} was claimed twice",
                transition.seq
            );
        }
        // Each dispatches what it holds; the other's transitions are not its to dispatch.
        let left_seqs: Vec<i64> = left.iter().map(|t| t.seq).collect();
        let right_seqs: Vec<i64> = right.iter().map(|t| t.seq).collect();
        let (left_done, right_done) = tokio::join!(
            store.dispatch_transitions("left", &left_seqs, &[]),
            store.dispatch_transitions("right", &right_seqs, &[]),
        );
        left_done.expect("left dispatches");
        right_done.expect("right dispatches");
    }
    assert_eq!(total, 40, "every transition was claimed exactly once");
}

async fn transition_leases_expire_and_bind_dispatch(store: Store) {
    let web = repository(&store, "acme/web").await;
    let build = queued(&store, web, 1).await;

    // A held lease keeps the transition from everyone else, and only its owner dispatches it.
    let held = store
        .claim_transitions("a", LONG_LEASE_MS, 10)
        .await
        .expect("claim");
    assert_eq!(held.len(), 1);
    let transition = &held[0];
    assert_eq!(transition.build_id, build);
    assert!(
        store
            .claim_transitions("b", LONG_LEASE_MS, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let status = notification(transition, web, NotificationKind::Status, None, "pending");
    store
        .dispatch_transitions("b", &[transition.seq], std::slice::from_ref(&status))
        .await
        .expect("a stranger's dispatch");
    assert!(
        store
            .notifications_for_build(build)
            .await
            .expect("notifications")
            .is_empty(),
        "a dispatcher that holds no lease inserts nothing"
    );

    // A lease that has run out lets another dispatcher claim the same transition, after which
    // the first dispatcher's late dispatch inserts nothing. `a` keeps its long lease meanwhile.
    let later_build = queued(&store, web, 2).await;
    let short = store.claim_transitions("c", 1, 10).await.expect("claim");
    assert_eq!(short.len(), 1);
    let later = &short[0];
    assert_eq!(later.build_id, later_build);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let retaken = store
        .claim_transitions("d", LONG_LEASE_MS, 10)
        .await
        .expect("claim");
    assert_eq!(
        retaken.iter().map(|t| t.seq).collect::<Vec<_>>(),
        [later.seq],
        "c's one-millisecond lease has run out, and a's has not"
    );
    let later_status = notification(later, web, NotificationKind::Status, None, "pending");
    store
        .dispatch_transitions("c", &[later.seq], std::slice::from_ref(&later_status))
        .await
        .expect("a late dispatch");
    assert!(
        store
            .notifications_for_build(later_build)
            .await
            .expect("notifications")
            .is_empty(),
        "a dispatcher whose lease ran out inserts nothing"
    );
    store
        .dispatch_transitions("d", &[later.seq], std::slice::from_ref(&later_status))
        .await
        .expect("dispatch");
    assert_eq!(
        store
            .notifications_for_build(later_build)
            .await
            .expect("notifications")
            .len(),
        1
    );

    // The lease's owner dispatches it once; a dispatched transition is never claimed again,
    // and dispatching it twice inserts nothing more. A notification for a transition that was
    // not among those dispatched is dropped.
    let mut stray = status.clone();
    stray.transition_seq = transition.seq + 1000;
    store
        .dispatch_transitions("a", &[transition.seq], &[status.clone(), stray])
        .await
        .expect("dispatch");
    store
        .dispatch_transitions("a", &[transition.seq], std::slice::from_ref(&status))
        .await
        .expect("dispatch again");
    let made = store
        .notifications_for_build(build)
        .await
        .expect("notifications");
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].transition_seq, transition.seq);
    assert_eq!(made[0].kind, NotificationKind::Status);
    assert_eq!(made[0].state, "pending");

    // A dispatched transition is never claimed again, even once its lease has run out; its
    // owner may dispatch it after the lease ran out as long as nobody else claimed it.
    queued(&store, web, 3).await;
    let brief = store.claim_transitions("f", 1, 10).await.expect("claim");
    assert_eq!(brief.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .dispatch_transitions("f", &[brief[0].seq], &[])
        .await
        .expect("dispatch");
    assert!(
        store
            .claim_transitions("g", LONG_LEASE_MS, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

async fn notifications_are_leased_retried_and_kept_with_their_attempts(store: Store) {
    let web = repository(&store, "acme/web").await;
    let hook = store
        .create_hook(
            web,
            "https://hooks.example/slipway",
            &["build_queued".to_owned()],
            "a-hook-secret",
        )
        .await
        .expect("hook");
    let build = queued(&store, web, 1).await;
    let other = queued(&store, web, 2).await;
    store
        .claim_build("w", Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("the first build");

    // Both transitions of `build` (queued, running) and the one of `other` are dispatched in
    // one go: statuses for each, and a webhook for the queueing.
    let transitions = store
        .claim_transitions("d", LONG_LEASE_MS, 10)
        .await
        .expect("claim transitions");
    let of = |build_id: Uuid, status: &str| {
        transitions
            .iter()
            .find(|t| t.build_id == build_id && t.status == status)
            .cloned()
            .expect("the transition")
    };
    let (queued_at, running_at, other_queued) = (
        of(build, "queued"),
        of(build, "running"),
        of(other, "queued"),
    );
    let seqs: Vec<i64> = transitions.iter().map(|t| t.seq).collect();
    store
        .dispatch_transitions(
            "d",
            &seqs,
            &[
                notification(&queued_at, web, NotificationKind::Status, None, "pending"),
                notification(
                    &queued_at,
                    web,
                    NotificationKind::Webhook,
                    Some(hook.id),
                    "build_queued",
                ),
                notification(&running_at, web, NotificationKind::Status, None, "running"),
                notification(
                    &other_queued,
                    web,
                    NotificationKind::Status,
                    None,
                    "pending",
                ),
            ],
        )
        .await
        .expect("dispatch");
    let made = store
        .notifications_for_build(build)
        .await
        .expect("notifications");
    assert_eq!(made.len(), 3);
    for n in &made {
        assert_eq!(n.build_id, build);
        assert_eq!(n.repository_id, web);
        assert_eq!(n.state, "pending");
        assert_eq!(n.attempts, 0);
        assert!(n.finished_at.is_none() && n.redelivery_of.is_none());
        assert!(n.next_attempt_at <= now_millis());
    }
    let find = |seq: i64, kind: NotificationKind| {
        made.iter()
            .find(|n| n.transition_seq == seq && n.kind == kind)
            .cloned()
            .expect("the notification")
    };
    let pending = find(queued_at.seq, NotificationKind::Status);
    let webhook = find(queued_at.seq, NotificationKind::Webhook);
    let running = find(running_at.seq, NotificationKind::Status);
    assert_eq!(webhook.hook_id, Some(hook.id));
    assert_eq!(webhook.event, "build_queued");
    assert_eq!(webhook.payload_json, "{\"status\":\"queued\"}");
    assert_eq!(running.event, "running");
    assert_eq!(
        ids(&store
            .hook_deliveries(hook.id, 10)
            .await
            .expect("hook deliveries")),
        [webhook.id]
    );
    let elsewhere = store
        .notifications_for_build(other)
        .await
        .expect("notifications");
    assert_eq!(elsewhere.len(), 1);
    let elsewhere = elsewhere[0].clone();

    // One sender claims what is due, ordered by transition; a second finds nothing left.
    let claimed = store
        .claim_notifications("s1", LONG_LEASE_MS, 10)
        .await
        .expect("claim notifications");
    assert_eq!(claimed.len(), 4);
    assert!(
        claimed
            .windows(2)
            .all(|w| w[0].transition_seq <= w[1].transition_seq)
    );
    assert!(
        store
            .claim_notifications("s2", LONG_LEASE_MS, 10)
            .await
            .expect("claim notifications")
            .is_empty(),
        "everything due is leased by s1"
    );

    // Only the lease's owner records an attempt.
    assert!(
        !store
            .record_notification_attempt(
                pending.id,
                "s2",
                &attempt(1, Some(201), None, None),
                AfterAttempt::Delivered
            )
            .await
            .expect("record")
    );
    let untouched = store
        .notification(pending.id)
        .await
        .expect("read")
        .expect("the notification");
    assert_eq!(
        (untouched.state.as_str(), untouched.attempts),
        ("pending", 0)
    );
    assert!(
        store
            .notification_attempts(pending.id)
            .await
            .expect("attempts")
            .is_empty()
    );

    // A newer status of the same build makes the older one stale; the newest is not.
    assert!(store.newer_status_exists(&pending).await.expect("newer"));
    assert!(!store.newer_status_exists(&running).await.expect("newer"));
    assert!(!store.newer_status_exists(&elsewhere).await.expect("newer"));
    store
        .supersede_notification(pending.id, "s2")
        .await
        .expect("a stranger's supersede");
    assert_eq!(
        store
            .notification(pending.id)
            .await
            .expect("read")
            .expect("the notification")
            .state,
        "pending",
        "only the lease's owner supersedes"
    );
    store
        .supersede_notification(pending.id, "s1")
        .await
        .expect("supersede");
    let superseded = store
        .notification(pending.id)
        .await
        .expect("read")
        .expect("the notification");
    assert_eq!(superseded.state, "superseded");
    assert_eq!(superseded.attempts, 0);
    assert!(superseded.finished_at.is_some());

    // A refusal that retrying cannot change ends the webhook as failed.
    let refused = attempt(1, Some(400), Some("400 Bad Request"), Some("no such hook"));
    assert!(
        store
            .record_notification_attempt(webhook.id, "s1", &refused, AfterAttempt::Failed)
            .await
            .expect("record")
    );
    let failed = store
        .notification(webhook.id)
        .await
        .expect("read")
        .expect("the notification");
    assert_eq!(failed.state, "failed");
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_status_code, Some(400));
    assert_eq!(failed.last_error.as_deref(), Some("400 Bad Request"));
    assert!(failed.finished_at.is_some());
    assert_eq!(
        store
            .notification_attempts(webhook.id)
            .await
            .expect("attempts"),
        [refused]
    );

    // A retry whose time has come is due again at once, for any sender; a retry later is not.
    let first_try = attempt(1, None, Some("connection refused"), None);
    assert!(
        store
            .record_notification_attempt(
                running.id,
                "s1",
                &first_try,
                AfterAttempt::RetryAt(now_millis() - 1)
            )
            .await
            .expect("record")
    );
    assert!(
        store
            .record_notification_attempt(
                elsewhere.id,
                "s1",
                &attempt(1, Some(201), None, None),
                AfterAttempt::Delivered
            )
            .await
            .expect("record")
    );
    let again = store
        .claim_notifications("s2", LONG_LEASE_MS, 10)
        .await
        .expect("claim notifications");
    assert_eq!(ids(&again), [running.id]);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("connection refused"));
    let later = now_millis() + 3_600_000;
    let second_try = attempt(2, Some(503), Some("503 Service Unavailable"), Some("busy"));
    assert!(
        !store
            .record_notification_attempt(running.id, "s1", &second_try, AfterAttempt::Delivered)
            .await
            .expect("record"),
        "s1 gave the lease up with its first attempt"
    );
    assert!(
        store
            .record_notification_attempt(
                running.id,
                "s2",
                &second_try,
                AfterAttempt::RetryAt(later)
            )
            .await
            .expect("record")
    );
    let waiting = store
        .notification(running.id)
        .await
        .expect("read")
        .expect("the notification");
    assert_eq!(waiting.state, "pending");
    assert_eq!(waiting.attempts, 2);
    assert_eq!(waiting.next_attempt_at, later);
    assert_eq!(waiting.last_status_code, Some(503));
    assert!(waiting.finished_at.is_none());
    assert!(
        store
            .claim_notifications("s3", LONG_LEASE_MS, 10)
            .await
            .expect("claim notifications")
            .is_empty(),
        "a retry in an hour is not due"
    );
    assert_eq!(
        store
            .notification_attempts(running.id)
            .await
            .expect("attempts"),
        [first_try, second_try.clone()]
    );
    // The running status, waiting for its retry, still makes the queued one stale.
    assert!(store.newer_status_exists(&pending).await.expect("newer"));

    // A notification still pending (here: waiting for its retry) is not redelivered: that would
    // send it twice. Nor is a status a newer one of its build replaced, whose redelivery would
    // put the commit back on an older state; the answer names the newer one.
    assert_eq!(
        store
            .redeliver_notification(running.id)
            .await
            .expect("redeliver"),
        Redelivery::StillPending(running.id)
    );
    assert_eq!(
        store
            .redeliver_notification(pending.id)
            .await
            .expect("redeliver"),
        Redelivery::Superseded {
            by: running.id,
            event: "running".to_owned()
        }
    );

    // A redelivery is a new pending notification linked to the original, which stays as it is.
    let Redelivery::Queued(copy) = store
        .redeliver_notification(webhook.id)
        .await
        .expect("redeliver")
    else {
        panic!("the failed webhook request is redelivered");
    };
    // While it is pending, neither the original nor the copy is redelivered again.
    for again in [webhook.id, copy] {
        assert_eq!(
            store
                .redeliver_notification(again)
                .await
                .expect("redeliver"),
            Redelivery::StillPending(copy)
        );
    }
    let redelivery = store
        .notification(copy)
        .await
        .expect("read")
        .expect("the redelivery");
    assert_eq!(redelivery.redelivery_of, Some(webhook.id));
    assert_eq!(redelivery.state, "pending");
    assert_eq!(redelivery.attempts, 0);
    assert_eq!(
        (
            redelivery.build_id,
            redelivery.repository_id,
            redelivery.kind,
            redelivery.hook_id,
            redelivery.event.as_str(),
            redelivery.payload_json.as_str(),
            redelivery.transition_seq,
        ),
        (
            webhook.build_id,
            webhook.repository_id,
            webhook.kind,
            webhook.hook_id,
            webhook.event.as_str(),
            webhook.payload_json.as_str(),
            webhook.transition_seq,
        )
    );
    assert!(
        store
            .notification_attempts(copy)
            .await
            .expect("attempts")
            .is_empty()
    );
    assert_eq!(
        store
            .notification(webhook.id)
            .await
            .expect("read")
            .expect("the original")
            .attempts,
        1
    );
    assert_eq!(
        store
            .redeliver_notification(Uuid::now_v7())
            .await
            .expect("redeliver"),
        Redelivery::NotFound,
        "nothing to redeliver"
    );

    // The redelivery is due at once, and delivering it ends it.
    let due = store
        .claim_notifications("s3", LONG_LEASE_MS, 10)
        .await
        .expect("claim notifications");
    assert_eq!(ids(&due), [copy]);
    let answered = attempt(1, Some(201), None, Some("{\"state\":\"pending\"}"));
    assert!(
        store
            .record_notification_attempt(copy, "s3", &answered, AfterAttempt::Delivered)
            .await
            .expect("record")
    );
    let delivered = store
        .notification(copy)
        .await
        .expect("read")
        .expect("the redelivery");
    assert_eq!(delivered.state, "delivered");
    assert_eq!(delivered.attempts, 1);
    assert_eq!(delivered.last_status_code, Some(201));
    assert!(delivered.last_error.is_none());
    assert!(delivered.finished_at.is_some());
    assert_eq!(
        store.notification_attempts(copy).await.expect("attempts"),
        [answered]
    );
    assert!(
        !store
            .record_notification_attempt(
                copy,
                "s3",
                &attempt(2, Some(201), None, None),
                AfterAttempt::Delivered
            )
            .await
            .expect("record"),
        "a delivered notification holds no lease"
    );
    assert!(
        store
            .claim_notifications("s4", LONG_LEASE_MS, 10)
            .await
            .expect("claim notifications")
            .is_empty()
    );

    // The build's notifications are all there, the redelivery with them.
    let all = store
        .notifications_for_build(build)
        .await
        .expect("notifications");
    let all_ids: HashSet<Uuid> = all.iter().map(|n| n.id).collect();
    assert_eq!(
        all_ids,
        HashSet::from([pending.id, webhook.id, running.id, copy])
    );
    assert!(
        all.windows(2)
            .all(|w| (w[0].created_at, w[0].id) <= (w[1].created_at, w[1].id))
    );
    assert!(
        store
            .notification(Uuid::now_v7())
            .await
            .expect("read")
            .is_none()
    );
}

async fn hooks_are_kept_per_repository_and_take_their_history_along(store: Store) {
    let web = repository(&store, "acme/web").await;
    let api = repository(&store, "acme/api").await;
    let events = vec!["build_succeeded".to_owned(), "image_pushed".to_owned()];
    let first = store
        .create_hook(web, "https://hooks.example/one", &events, "secret-one")
        .await
        .expect("hook");
    assert_eq!(first.repository_id, web);
    assert_eq!(first.url, "https://hooks.example/one");
    assert_eq!(first.events, events);
    assert!(first.created_at > 0);
    let second = store
        .create_hook(
            web,
            "https://hooks.example/two",
            &["build_failed".to_owned()],
            "secret-two",
        )
        .await
        .expect("hook");
    let elsewhere = store
        .create_hook(api, "https://hooks.example/api", &events, "secret-api")
        .await
        .expect("hook");

    let listed: Vec<Uuid> = store
        .hooks_for_repository(web)
        .await
        .expect("hooks")
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(listed, [first.id, second.id]);
    let read = store.hook(first.id).await.expect("read").expect("the hook");
    assert_eq!(
        (read.id, read.repository_id, read.url, read.events),
        (first.id, web, first.url.clone(), events.clone())
    );
    assert_eq!(
        store
            .hook_secret(second.id)
            .await
            .expect("secret")
            .expect("a secret")
            .expose(),
        "secret-two"
    );
    assert!(store.hook(Uuid::now_v7()).await.expect("read").is_none());
    assert!(
        store
            .hook_secret(Uuid::now_v7())
            .await
            .expect("secret")
            .is_none()
    );

    // Notifications for both hooks and a status, with an attempt each.
    let build = queued(&store, web, 1).await;
    let transitions = store
        .claim_transitions("d", LONG_LEASE_MS, 10)
        .await
        .expect("claim transitions");
    assert_eq!(transitions.len(), 1);
    let transition = &transitions[0];
    store
        .dispatch_transitions(
            "d",
            &[transition.seq],
            &[
                notification(
                    transition,
                    web,
                    NotificationKind::Webhook,
                    Some(first.id),
                    "build_queued",
                ),
                notification(
                    transition,
                    web,
                    NotificationKind::Webhook,
                    Some(second.id),
                    "build_queued",
                ),
                notification(transition, web, NotificationKind::Status, None, "pending"),
            ],
        )
        .await
        .expect("dispatch");
    for claimed in store
        .claim_notifications("s", LONG_LEASE_MS, 10)
        .await
        .expect("claim notifications")
    {
        assert!(
            store
                .record_notification_attempt(
                    claimed.id,
                    "s",
                    &attempt(1, Some(500), Some("500"), None),
                    AfterAttempt::RetryAt(now_millis() + 3_600_000)
                )
                .await
                .expect("record")
        );
    }
    let before = store
        .notifications_for_build(build)
        .await
        .expect("notifications");
    let of_hook = |hook: Uuid| {
        before
            .iter()
            .find(|n| n.hook_id == Some(hook))
            .map(|n| n.id)
            .expect("the hook's notification")
    };
    let (gone, kept) = (of_hook(first.id), of_hook(second.id));
    let status = before
        .iter()
        .find(|n| n.kind == NotificationKind::Status)
        .map(|n| n.id)
        .expect("the status notification");

    // A hook is deleted only through its own repository.
    assert!(
        !store
            .delete_hook(api, first.id)
            .await
            .expect("delete through another repository")
    );
    assert!(store.hook(first.id).await.expect("read").is_some());

    // Deleting a hook removes its deliveries and their attempts, nothing else.
    assert!(store.delete_hook(web, first.id).await.expect("delete"));
    assert!(store.hook(first.id).await.expect("read").is_none());
    assert!(store.hook_secret(first.id).await.expect("secret").is_none());
    assert!(store.notification(gone).await.expect("read").is_none());
    assert!(
        store
            .notification_attempts(gone)
            .await
            .expect("attempts")
            .is_empty()
    );
    assert!(
        store
            .hook_deliveries(first.id, 10)
            .await
            .expect("deliveries")
            .is_empty()
    );
    for id in [kept, status] {
        assert!(store.notification(id).await.expect("read").is_some());
        assert_eq!(
            store
                .notification_attempts(id)
                .await
                .expect("attempts")
                .len(),
            1
        );
    }
    assert_eq!(
        ids(&store
            .hook_deliveries(second.id, 10)
            .await
            .expect("deliveries")),
        [kept]
    );
    let left: Vec<Uuid> = store
        .hooks_for_repository(web)
        .await
        .expect("hooks")
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(left, [second.id]);
    assert_eq!(
        store.hooks_for_repository(api).await.expect("hooks").len(),
        1
    );
    assert!(store.hook(elsewhere.id).await.expect("read").is_some());
    assert!(
        !store
            .delete_hook(web, first.id)
            .await
            .expect("delete again"),
        "a hook is deleted once"
    );
}

async fn status_settings_come_from_the_repository(store: Store) {
    let reporting = StatusConfig {
        report_status: true,
        api_url: Some("https://git.example/api/v3".to_owned()),
        repository: Some("acme/web-on-the-forge".to_owned()),
    };

    // An API-managed repository keeps its token, write-only, next to its settings.
    let api = store
        .create_repository(
            &spec("acme/web", reporting.clone()),
            None,
            &SecretChanges {
                status_token: SecretChange::Set(Secret::new("a-forge-token")),
                ..SecretChanges::default()
            },
        )
        .await
        .expect("create repository");
    assert!(api.has_status_token);
    let settings = store
        .status_settings(api.id)
        .await
        .expect("settings")
        .expect("the repository");
    assert!(settings.report_status);
    assert_eq!(settings.api_url, reporting.api_url);
    assert_eq!(settings.status_repository, reporting.repository);
    assert_eq!(
        settings.stored_token.as_ref().map(Secret::expose),
        Some("a-forge-token")
    );

    // Clearing the token keeps the rest.
    store
        .update_repository(
            api.id,
            &spec("acme/web", reporting.clone()),
            None,
            &SecretChanges {
                status_token: SecretChange::Clear,
                ..SecretChanges::default()
            },
        )
        .await
        .expect("update repository");
    let cleared = store
        .status_settings(api.id)
        .await
        .expect("settings")
        .expect("the repository");
    assert!(cleared.report_status);
    assert!(cleared.stored_token.is_none());

    // A configuration-managed repository stores its settings but never a token.
    store
        .sync_repositories(&[spec("acme/config", reporting.clone())])
        .await
        .expect("sync");
    let config = store
        .repository_by_name("acme/config")
        .await
        .expect("read")
        .expect("the repository");
    let from_config = store
        .status_settings(config.id)
        .await
        .expect("settings")
        .expect("the repository");
    assert!(from_config.report_status);
    assert_eq!(from_config.api_url, reporting.api_url);
    assert_eq!(from_config.status_repository, reporting.repository);
    assert!(from_config.stored_token.is_none());

    // A repository with statuses off, and one that does not exist.
    let quiet = repository(&store, "acme/quiet").await;
    let off = store
        .status_settings(quiet)
        .await
        .expect("settings")
        .expect("the repository");
    assert!(!off.report_status);
    assert!(off.api_url.is_none() && off.status_repository.is_none());
    assert!(off.stored_token.is_none());
    assert!(
        store
            .status_settings(Uuid::now_v7())
            .await
            .expect("settings")
            .is_none()
    );
}

async fn deleting_a_repository_removes_its_notifications(store: Store) {
    let web = repository(&store, "acme/web").await;
    let api = repository(&store, "acme/api").await;
    let hook = store
        .create_hook(
            web,
            "https://hooks.example/web",
            &["build_queued".to_owned()],
            "s",
        )
        .await
        .expect("hook");
    let kept_hook = store
        .create_hook(
            api,
            "https://hooks.example/api",
            &["build_queued".to_owned()],
            "s",
        )
        .await
        .expect("hook");

    // Each repository has a dispatched transition with notifications and attempts.
    let doomed = queued(&store, web, 1).await;
    let survivor = queued(&store, api, 2).await;
    let transitions = store
        .claim_transitions("d", LONG_LEASE_MS, 10)
        .await
        .expect("claim transitions");
    assert_eq!(transitions.len(), 2);
    let mut made = Vec::new();
    for transition in &transitions {
        let (repository_id, hook_id) = if transition.build_id == doomed {
            (web, hook.id)
        } else {
            (api, kept_hook.id)
        };
        made.push(notification(
            transition,
            repository_id,
            NotificationKind::Status,
            None,
            "pending",
        ));
        made.push(notification(
            transition,
            repository_id,
            NotificationKind::Webhook,
            Some(hook_id),
            "build_queued",
        ));
    }
    let seqs: Vec<i64> = transitions.iter().map(|t| t.seq).collect();
    store
        .dispatch_transitions("d", &seqs, &made)
        .await
        .expect("dispatch");
    for claimed in store
        .claim_notifications("s", LONG_LEASE_MS, 10)
        .await
        .expect("claim notifications")
    {
        assert!(
            store
                .record_notification_attempt(
                    claimed.id,
                    "s",
                    &attempt(1, Some(201), None, None),
                    AfterAttempt::Delivered
                )
                .await
                .expect("record")
        );
    }
    let doomed_notifications = ids(&store
        .notifications_for_build(doomed)
        .await
        .expect("notifications"));
    assert_eq!(doomed_notifications.len(), 2);
    let survivor_notifications = ids(&store
        .notifications_for_build(survivor)
        .await
        .expect("notifications"));
    assert_eq!(survivor_notifications.len(), 2);

    // Each also has transitions not dispatched yet: the builds take another status.
    for build in [doomed, survivor] {
        assert_eq!(
            store
                .cancel_build(build, "not wanted")
                .await
                .expect("cancel"),
            Some(CancelOutcome::Cancelled)
        );
    }

    assert!(store.delete_repository(web).await.expect("delete"));
    assert!(store.hook(hook.id).await.expect("read").is_none());
    assert!(
        store
            .hooks_for_repository(web)
            .await
            .expect("hooks")
            .is_empty()
    );
    assert!(
        store
            .hook_deliveries(hook.id, 10)
            .await
            .expect("deliveries")
            .is_empty()
    );
    assert!(
        store
            .notifications_for_build(doomed)
            .await
            .expect("notifications")
            .is_empty()
    );
    for id in &doomed_notifications {
        assert!(store.notification(*id).await.expect("read").is_none());
        assert!(
            store
                .notification_attempts(*id)
                .await
                .expect("attempts")
                .is_empty()
        );
    }
    assert!(
        store
            .status_settings(web)
            .await
            .expect("settings")
            .is_none()
    );

    // The deleted repository's undispatched transition went with it; the other one's stays.
    let left = store
        .claim_transitions("d2", LONG_LEASE_MS, 10)
        .await
        .expect("claim transitions");
    let left: Vec<(Uuid, &str)> = left
        .iter()
        .map(|t| (t.build_id, t.status.as_str()))
        .collect();
    assert_eq!(left, [(survivor, "cancelled")]);

    // The other repository keeps everything.
    assert!(store.hook(kept_hook.id).await.expect("read").is_some());
    assert_eq!(
        ids(&store
            .notifications_for_build(survivor)
            .await
            .expect("notifications")),
        survivor_notifications
    );
    for id in &survivor_notifications {
        assert_eq!(
            store
                .notification_attempts(*id)
                .await
                .expect("attempts")
                .len(),
            1
        );
    }
}

/// A redelivery of a redelivery still names the first notification (whose delivery id receivers
/// know), and the retention purge forgets finished notifications and dispatched transitions
/// while a pending notification stays.
async fn redeliveries_link_to_the_first_and_old_history_is_purged(store: Store) {
    let web = repository(&store, "acme/web").await;
    queued(&store, web, 1).await;
    let transitions = store
        .claim_transitions("dispatcher", 60_000, 10)
        .await
        .expect("claim");
    let first = transitions.first().expect("a transition");
    let made = vec![notification(
        first,
        web,
        NotificationKind::Status,
        None,
        "queued",
    )];
    store
        .dispatch_transitions("dispatcher", &[first.seq], &made)
        .await
        .expect("dispatch");
    let claimed = store
        .claim_notifications("sender", 60_000, 10)
        .await
        .expect("claim notifications");
    let original = claimed.first().expect("a notification").id;
    assert!(
        store
            .record_notification_attempt(
                original,
                "sender",
                &attempt(1, Some(201), None, None),
                AfterAttempt::Delivered
            )
            .await
            .expect("record")
    );
    let queued = |outcome: Redelivery| match outcome {
        Redelivery::Queued(id) => id,
        other => panic!("not redelivered: {other:?}"),
    };
    let again = queued(
        store
            .redeliver_notification(original)
            .await
            .expect("redeliver"),
    );
    // The first redelivery is delivered before it is redelivered in turn.
    let claimed = store
        .claim_notifications("sender", 60_000, 10)
        .await
        .expect("claim notifications");
    assert_eq!(ids(&claimed), [again]);
    assert!(
        store
            .record_notification_attempt(
                again,
                "sender",
                &attempt(1, Some(201), None, None),
                AfterAttempt::Delivered
            )
            .await
            .expect("record")
    );
    let again_and_again = queued(
        store
            .redeliver_notification(again)
            .await
            .expect("redeliver"),
    );
    let chained = store
        .notification(again_and_again)
        .await
        .expect("read")
        .expect("the redelivery");
    assert_eq!(chained.redelivery_of, Some(original));

    // Everything finished before "now + 1 s" goes; the pending redelivery stays.
    let purged = store
        .purge_notifications(now_millis() + 1_000)
        .await
        .expect("purge");
    assert!(
        purged >= 5,
        "the delivered notifications, their attempts and the transition: {purged}"
    );
    assert!(store.notification(original).await.expect("read").is_none());
    assert!(store.notification(again).await.expect("read").is_none());
    assert!(
        store
            .notification(again_and_again)
            .await
            .expect("read")
            .is_some()
    );
}

/// A status slot's lease has one holder at a time, whoever races for it; the holder renews it,
/// a stranger cannot release it, and an expired one passes on.
async fn one_sender_at_a_time_holds_a_status_slot(store: Store) {
    let acquire = |slot: &'static str, owner: &'static str, lease_ms: i64| {
        let store = store.clone();
        async move {
            store
                .acquire_status_lease(slot, owner, lease_ms)
                .await
                .expect("acquire")
        }
    };
    assert!(acquire("slot-a", "p1", LONG_LEASE_MS).await);
    assert!(!acquire("slot-a", "p2", LONG_LEASE_MS).await, "held by p1");
    assert!(
        acquire("slot-b", "p2", LONG_LEASE_MS).await,
        "another slot is free"
    );
    assert!(
        acquire("slot-a", "p1", LONG_LEASE_MS).await,
        "the holder renews"
    );
    store
        .release_status_lease("slot-a", "p2")
        .await
        .expect("a stranger's release");
    assert!(!acquire("slot-a", "p2", LONG_LEASE_MS).await, "still p1's");
    store
        .release_status_lease("slot-a", "p1")
        .await
        .expect("release");
    assert!(
        acquire("slot-a", "p2", LONG_LEASE_MS).await,
        "released, so free"
    );
    // A lease that has expired (its holder died mid-send) passes to the next sender.
    assert!(acquire("slot-c", "p1", -1).await);
    assert!(acquire("slot-c", "p2", LONG_LEASE_MS).await);
    assert!(!acquire("slot-c", "p1", LONG_LEASE_MS).await);

    // Senders racing for a free slot: exactly one gets it.
    let mut racers = Vec::new();
    for owner in 0..8 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            store
                .acquire_status_lease("slot-d", &format!("racer-{owner}"), LONG_LEASE_MS)
                .await
                .expect("acquire")
        }));
    }
    let mut winners = 0;
    for racer in racers {
        if racer.await.expect("a racer") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "one holder at a time");
}

/// Statuses are ordered by their slot on the forge (repository, commit and context), so a
/// newer status of another build of the same rule and commit (a retry, say) supersedes an older
/// one still unsent, and its redelivery is refused naming the newer; other slots are left alone.
/// A notification whose slot is busy is handed back unsent, for later.
async fn a_newer_status_of_the_same_slot_supersedes_across_builds(store: Store) {
    let web = repository(&store, "acme/web").await;
    let (first, retry, elsewhere) = (
        queued(&store, web, 1).await,
        queued(&store, web, 2).await,
        queued(&store, web, 3).await,
    );
    let transitions = store
        .claim_transitions("d", LONG_LEASE_MS, 10)
        .await
        .expect("claim transitions");
    let of = |build: Uuid| {
        transitions
            .iter()
            .find(|t| t.build_id == build)
            .cloned()
            .expect("the build's transition")
    };
    let keyed = |build: Uuid, key: &str| {
        let mut made = notification(&of(build), web, NotificationKind::Status, None, "queued");
        made.status_key = Some(key.to_owned());
        made
    };
    let seqs: Vec<i64> = transitions.iter().map(|t| t.seq).collect();
    store
        .dispatch_transitions(
            "d",
            &seqs,
            &[
                keyed(first, "web:c1:slipway/latest"),
                keyed(retry, "web:c1:slipway/latest"),
                keyed(elsewhere, "web:c1:slipway/rule-2"),
            ],
        )
        .await
        .expect("dispatch");
    let of_build = |build: Uuid| {
        let store = store.clone();
        async move {
            store
                .notifications_for_build(build)
                .await
                .expect("notifications")
                .remove(0)
        }
    };
    let (old, new, other) = (
        of_build(first).await,
        of_build(retry).await,
        of_build(elsewhere).await,
    );
    assert_eq!(old.status_key.as_deref(), Some("web:c1:slipway/latest"));
    assert_eq!(
        store.newer_status(&old).await.expect("newer").map(|n| n.id),
        Some(new.id)
    );
    assert!(store.newer_status(&new).await.expect("newer").is_none());
    assert!(store.newer_status(&other).await.expect("newer").is_none());

    // Handed back because its slot is busy: unleased, pending, and due only later.
    let claimed = store
        .claim_notifications("s1", LONG_LEASE_MS, 10)
        .await
        .expect("claim notifications");
    assert_eq!(claimed.len(), 3);
    store
        .postpone_notification(other.id, "s1", now_millis() + 3_600_000)
        .await
        .expect("postpone");
    let postponed = store
        .notification(other.id)
        .await
        .expect("read")
        .expect("the notification");
    assert_eq!(postponed.state, "pending");
    assert_eq!(postponed.attempts, 0);
    assert!(postponed.next_attempt_at > now_millis());
    assert!(
        store
            .claim_notifications("s2", LONG_LEASE_MS, 10)
            .await
            .expect("claim notifications")
            .is_empty(),
        "not due yet, and the others are still s1's"
    );

    // Once delivered, the older status's redelivery is refused in favour of the newer one.
    for done in [old.id, new.id] {
        assert!(
            store
                .record_notification_attempt(
                    done,
                    "s1",
                    &attempt(1, Some(201), None, None),
                    AfterAttempt::Delivered
                )
                .await
                .expect("record")
        );
    }
    assert_eq!(
        store
            .redeliver_notification(old.id)
            .await
            .expect("redeliver"),
        Redelivery::Superseded {
            by: new.id,
            event: "queued".to_owned()
        }
    );
    let Redelivery::Queued(copy) = store
        .redeliver_notification(new.id)
        .await
        .expect("redeliver")
    else {
        panic!("the newest status is redelivered");
    };
    let copy = store
        .notification(copy)
        .await
        .expect("read")
        .expect("the redelivery");
    assert_eq!(
        copy.status_key, new.status_key,
        "a redelivery keeps its slot"
    );
}

/// A failed build is the infrastructure's doing when its last attempt says so: the worker used
/// the last attempt on an infrastructure failure, or the worker was lost during it. A failure of
/// the commit itself, and a success, are not.
async fn infrastructure_failures_are_told_from_the_commits(store: Store) {
    let web = repository(&store, "acme/web").await;
    let claim = |expected: Uuid| {
        let store = store.clone();
        async move {
            let claimed = store
                .claim_build("w", Duration::from_secs(600))
                .await
                .expect("claim")
                .expect("a queued build");
            assert_eq!(claimed.id, expected);
        }
    };
    let outcomes = |id: Uuid| {
        let store = store.clone();
        async move {
            let (build, attempts) = store
                .build_with_attempts(id)
                .await
                .expect("read")
                .expect("the build");
            let outcomes: Vec<String> = attempts
                .into_iter()
                .map(|a| a.outcome.unwrap_or_default())
                .collect();
            (build.status, outcomes)
        }
    };

    let commit_failure = queued(&store, web, 1).await;
    claim(commit_failure).await;
    let failed = BuildResult {
        status: BuildStatus::Failed,
        error: Some("Dockerfile:3: RUN exited with 1".to_owned()),
        digest: None,
    };
    assert!(
        store
            .finish_build(commit_failure, "w", &failed)
            .await
            .expect("finish")
    );
    assert!(
        !store
            .failed_for_infrastructure(commit_failure)
            .await
            .expect("read")
    );

    let engine_failure = queued(&store, web, 2).await;
    claim(engine_failure).await;
    assert!(
        store
            .requeue_build(engine_failure, "w", "the engine went away", 0)
            .await
            .expect("requeue")
    );
    claim(engine_failure).await;
    assert!(
        store
            .fail_build_for_infrastructure(engine_failure, "w", "the engine went away again")
            .await
            .expect("fail")
    );
    assert_eq!(
        outcomes(engine_failure).await,
        (
            BuildStatus::Failed,
            vec![
                "retry".to_owned(),
                slipway_store::INFRASTRUCTURE_FAILURE.to_owned()
            ]
        )
    );
    assert!(
        store
            .failed_for_infrastructure(engine_failure)
            .await
            .expect("read")
    );

    let lost_worker = queued(&store, web, 3).await;
    claim(lost_worker).await;
    store
        .execute_raw_for_tests("UPDATE builds SET lease_expires_at = 0 WHERE status = 'running'")
        .await
        .expect("expire the lease");
    assert_eq!(store.reap_expired_leases(1).await.expect("reap"), 1);
    assert_eq!(
        outcomes(lost_worker).await,
        (BuildStatus::Failed, vec!["lost".to_owned()])
    );
    assert!(
        store
            .failed_for_infrastructure(lost_worker)
            .await
            .expect("read")
    );

    let success = queued(&store, web, 4).await;
    claim(success).await;
    assert!(
        store
            .finish_build(success, "w", &succeeded())
            .await
            .expect("finish")
    );
    assert!(
        !store
            .failed_for_infrastructure(success)
            .await
            .expect("read")
    );
}
