//! The store's behaviour, run on both backends: every test below exists once for SQLite and
//! once for PostgreSQL (the rig's server, one fresh database per test).

use std::time::Duration;

use slipway_core::plan::BuildPlan;
use slipway_core::{BuildRule, BuildStatus, GitRef};
use slipway_store::{
    BuildResult, NewBuild, NewDelivery, RecordOutcome, RepositorySpec, Store, now_millis,
};
use uuid::Uuid;

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url).await.expect("sqlite opens");
    store.migrate().await.expect("sqlite migrates");
    (store, dir)
}

async fn postgres_store() -> (Store, tempfile::TempDir) {
    let admin_url = std::env::var("SLIPWAY_TEST_POSTGRES_URL")
        .expect("SLIPWAY_TEST_POSTGRES_URL is not set: run scripts/test (it starts the rig)");
    let database = format!("slipway_test_{}", Uuid::new_v4().simple());
    let admin = Store::connect(&admin_url)
        .await
        .expect("postgres admin connection");
    admin
        .execute_raw_for_tests(&format!("CREATE DATABASE {database}"))
        .await
        .expect("create database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    let store = Store::connect(&format!("{base}/{database}"))
        .await
        .expect("postgres opens");
    store.migrate().await.expect("postgres migrates");
    (store, tempfile::tempdir().expect("tempdir"))
}

/// Declares `mod name { sqlite, postgres }` tests that run `name(store)` on each backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    let (store, _dir) = super::sqlite_store().await;
                    super::$name(store).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let (store, _dir) = super::postgres_store().await;
                    super::$name(store).await;
                }
            }
        )*
    };
}

on_both_backends!(
    repositories_sync_and_disable,
    delivery_and_builds_are_recorded_once,
    concurrent_duplicate_deliveries_make_one_build,
    claims_are_exclusive_and_owner_guarded,
    expired_leases_are_requeued_then_failed,
    logs_are_paged_in_order,
    migrations_are_idempotent,
);

fn spec(name: &str) -> RepositorySpec {
    RepositorySpec {
        name: name.parse().expect("name"),
        provider: "github".parse().expect("provider"),
        git_url: "http://127.0.0.1:9/x.git".to_owned(),
        image: "127.0.0.1:5000/acme/web".parse().expect("image"),
        rules: vec![BuildRule::default_rule()],
    }
}

fn delivery(repository_id: Uuid, key: &str) -> NewDelivery {
    NewDelivery {
        id: Uuid::now_v7(),
        repository_id,
        delivery_key: key.to_owned(),
        provider: "github".to_owned(),
        event: "push".to_owned(),
        received_at: now_millis(),
        status_code: 202,
        outcome: "1 build(s) queued".to_owned(),
        decisions_json: "[]".to_owned(),
        response_json: format!("{{\"key\":\"{key}\"}}"),
        body: Some(b"{}".to_vec()),
    }
}

fn build() -> NewBuild {
    NewBuild {
        id: Uuid::now_v7(),
        image: "127.0.0.1:5000/acme/web".to_owned(),
        plan: BuildPlan {
            rule_index: 0,
            git_ref: GitRef::parse("refs/heads/main").expect("ref"),
            commit: "1111111111111111111111111111111111111111"
                .parse()
                .expect("commit"),
            tags: vec!["latest".to_owned(), "1.0".to_owned()],
            dockerfile: "Dockerfile".to_owned(),
            context: "/".to_owned(),
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
    let outcome = store
        .record_delivery(&delivery(repo, "d-1"), std::slice::from_ref(&first))
        .await
        .expect("record");
    assert_eq!(outcome, RecordOutcome::Recorded);
    let stored = store.build(first.id).await.expect("query").expect("exists");
    assert_eq!(stored.status, BuildStatus::Queued);
    assert_eq!(stored.tags, vec!["latest".to_owned(), "1.0".to_owned()]);
    assert_eq!(stored.git_ref, "refs/heads/main");

    let again = store
        .record_delivery(&delivery(repo, "d-1"), &[build()])
        .await
        .expect("record again");
    assert_eq!(
        again,
        RecordOutcome::Duplicate {
            status_code: 202,
            response_json: "{\"key\":\"d-1\"}".to_owned()
        }
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
        tokio::spawn(async move {
            store
                .record_delivery(&delivery(repo, "same"), &[build()])
                .await
        })
    });
    let mut recorded = 0;
    for attempt in attempts {
        if attempt.await.expect("join").expect("record") == RecordOutcome::Recorded {
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
    let builds: Vec<NewBuild> = (0..6).map(|_| build()).collect();
    store
        .record_delivery(&delivery(repo, "many"), &builds)
        .await
        .expect("record");
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
    assert!(
        !store
            .heartbeat(id, "intruder", Duration::from_secs(60))
            .await
            .expect("heartbeat")
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
    store
        .record_delivery(&delivery(repo, "lease"), std::slice::from_ref(&only))
        .await
        .expect("record");
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
    store
        .record_delivery(&delivery(repo, "log"), std::slice::from_ref(&only))
        .await
        .expect("record");
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
