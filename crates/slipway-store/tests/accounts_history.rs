//! Accounts (users, grants, API tokens, sessions), repositories managed through the API, and
//! the build history (keyset lists, log offsets, build phases), each test run once on SQLite
//! and once on PostgreSQL (the rig's server, a fresh database per test).

#[macro_use]
mod support;

use std::time::Duration;

use slipway_core::plan::BuildPlan;
use slipway_core::{BuildRule, BuildStatus, GitRef, Role, Secret};
use slipway_store::{
    BuildCursor, BuildFilter, BuildPlacement, BuildResult, DeliveryAnswer, ManagedBy, NewBuild,
    NewDelivery, NewToken, Readable, RepositoryChangeError, RepositorySpec, SecretChange,
    SecretChanges, Store, Supersede, TriggerRequestRecord, now_millis,
};
use uuid::Uuid;

on_both_backends!(
    users_and_grants,
    tokens_authenticate_until_expired_revoked_or_disabled,
    sessions_end_when_expired_deleted_or_the_password_changes,
    api_repositories_keep_their_secrets_apart,
    deleting_a_repository_removes_its_whole_history,
    build_lists_are_keyset_pages_with_filters_and_readers,
    log_offsets_follow_the_stored_chunks,
    build_events_are_kept_in_order_per_build,
    build_lists_are_read_along_their_indexes,
    the_newest_finished_build_of_a_tag_is_found_however_old,
);

fn spec(name: &str) -> RepositorySpec {
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
        status: Default::default(),
        forge_repository: None,
    }
}

fn secrets(webhook: SecretChange, git_password: SecretChange) -> SecretChanges {
    SecretChanges {
        webhook_secret: webhook,
        git_password,
        status_token: SecretChange::Keep,
    }
}

/// An API-managed repository with a webhook secret; returns its id.
async fn api_repository(store: &Store, name: &str) -> Uuid {
    store
        .create_repository(
            &spec(name),
            None,
            &secrets(
                SecretChange::Set(Secret::new("a-webhook-secret-long-enough")),
                SecretChange::Keep,
            ),
        )
        .await
        .expect("create")
        .id
}

async fn user(store: &Store, name: &str, global_role: Option<Role>) -> Uuid {
    store
        .create_user(name, &format!("hash-of-{name}"), global_role)
        .await
        .expect("create user")
        .expect("a new name")
        .id
}

async fn token(
    store: &Store,
    user_id: Uuid,
    hash: &str,
    repository_id: Option<Uuid>,
    expires_at: Option<i64>,
) -> Uuid {
    store
        .create_token(&NewToken {
            user_id,
            name: "ci",
            token_hash: hash,
            scope: Role::Write,
            repository_id,
            expires_at,
        })
        .await
        .expect("token")
        .id
}

async fn disable(store: &Store, name: &str) {
    assert!(store.set_user_disabled(name, true).await.expect("disable"));
}

fn new_build(commit_number: usize, git_ref: &str, image: &str) -> NewBuild {
    NewBuild {
        id: Uuid::now_v7(),
        image: image.to_owned(),
        trigger: "push".to_owned(),
        supersedes: Supersede::Nothing,
        plan: BuildPlan {
            rule_index: 0,
            git_ref: GitRef::parse(git_ref).expect("ref"),
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

/// Queues one build of `repository_id` outside any delivery; returns its id.
async fn queued(store: &Store, repository_id: Uuid, commit_number: usize, git_ref: &str) -> Uuid {
    let build = new_build(commit_number, git_ref, "127.0.0.1:5000/acme/any");
    let id = build.id;
    store
        .queue_builds(repository_id, &[build])
        .await
        .expect("queue");
    id
}

fn delivery(repository_id: Uuid, name: &str, key: &str) -> NewDelivery {
    NewDelivery {
        id: Uuid::now_v7(),
        repository_id: Some(repository_id),
        repository_name: name.to_owned(),
        provider: "github".to_owned(),
        event: "push".to_owned(),
        forge_delivery_id: Some(key.to_owned()),
        delivery_key: Some(key.to_owned()),
        source_address: "127.0.0.1:40000".to_owned(),
        received_at: now_millis(),
        verification: "verified (x-hub-signature-256)".to_owned(),
        headers_json: "{}".to_owned(),
        body: Some(b"{\"ref\":\"refs/heads/main\"}".to_vec()),
        redelivery_of: None,
    }
}

fn answer(placements: &[BuildPlacement]) -> DeliveryAnswer {
    DeliveryAnswer {
        status_code: 202,
        response_json: serde_json::json!({
            "builds": placements.iter().map(|p| serde_json::json!({"id": p.id})).collect::<Vec<_>>(),
        })
        .to_string(),
        outcome: format!("{} build(s)", placements.len()),
        decisions_json: "[]".to_owned(),
    }
}

async fn users_and_grants(store: Store) {
    let web = api_repository(&store, "acme/web").await;
    let api = api_repository(&store, "acme/api").await;
    let zoe = user(&store, "zoe", None).await;
    let adam = user(&store, "adam", Some(Role::Admin)).await;
    assert!(
        store
            .create_user("zoe", "another-hash", Some(Role::Owner))
            .await
            .expect("query")
            .is_none(),
        "a taken name makes no second user"
    );
    let names: Vec<String> = store
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["adam", "zoe"]);
    assert_eq!(store.user_count().await.expect("count"), 2);
    let found = store
        .user_by_name("adam")
        .await
        .expect("query")
        .expect("adam");
    assert_eq!(found.id, adam);
    assert_eq!(found.global_role, Some(Role::Admin));
    assert_eq!(found.password_hash, "hash-of-adam");
    assert!(!found.disabled);
    assert!(store.user_by_name("nobody").await.expect("query").is_none());

    // A grant replaces the one before; None removes it.
    store
        .set_grant(web, zoe, Some(Role::Read))
        .await
        .expect("grant");
    store
        .set_grant(web, zoe, Some(Role::Write))
        .await
        .expect("regrant");
    store
        .set_grant(api, zoe, Some(Role::Owner))
        .await
        .expect("grant");
    store
        .set_grant(web, adam, Some(Role::Admin))
        .await
        .expect("grant");
    let mut grants = store.grants_for_user(zoe).await.expect("grants");
    grants.sort();
    let mut want = vec![(web, Role::Write), (api, Role::Owner)];
    want.sort();
    assert_eq!(grants, want);
    assert_eq!(
        store.grants_for_repository(web).await.expect("grants"),
        [
            ("adam".to_owned(), Role::Admin),
            ("zoe".to_owned(), Role::Write)
        ]
    );
    store.set_grant(web, zoe, None).await.expect("revoke");
    assert_eq!(
        store.grants_for_user(zoe).await.expect("grants"),
        [(api, Role::Owner)]
    );
    store
        .set_grant(web, zoe, None)
        .await
        .expect("removing a missing grant is no error");

    // Roles change; an absent role keeps the old one, null removes it.
    assert!(
        store
            .update_user("zoe", None, Some(Some(Role::Read)))
            .await
            .expect("update")
    );
    assert!(
        store
            .update_user("zoe", Some("new-hash"), None)
            .await
            .expect("update")
    );
    let zoe_now = store
        .user_by_name("zoe")
        .await
        .expect("query")
        .expect("zoe");
    assert_eq!(zoe_now.global_role, Some(Role::Read));
    assert_eq!(zoe_now.password_hash, "new-hash");
    assert!(
        store
            .update_user("zoe", None, Some(None))
            .await
            .expect("update")
    );
    assert_eq!(
        store
            .user_by_name("zoe")
            .await
            .expect("query")
            .expect("zoe")
            .global_role,
        None
    );
    assert!(
        !store
            .update_user("nobody", Some("x"), None)
            .await
            .expect("update"),
        "an unknown user is not changed"
    );
}

async fn tokens_authenticate_until_expired_revoked_or_disabled(store: Store) {
    let web = api_repository(&store, "acme/web").await;
    let ann = user(&store, "ann", None).await;
    let ben = user(&store, "ben", Some(Role::Owner)).await;
    let now = now_millis();

    let limited = token(&store, ann, "hash-limited", Some(web), None).await;
    let (record, who) = store
        .authenticate_token("hash-limited")
        .await
        .expect("query")
        .expect("a live token");
    assert_eq!(record.id, limited);
    assert_eq!(record.scope, Role::Write);
    assert_eq!(record.repository.as_deref(), Some("acme/web"));
    assert_eq!(who.id, ann);
    assert!(
        store
            .authenticate_token("hash-unknown")
            .await
            .expect("query")
            .is_none()
    );
    // Using a token is noted.
    let listed = store.tokens_for_user(ann).await.expect("tokens");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_some());
    assert_eq!(listed[0].name, "ci");

    // Expiry.
    token(&store, ann, "hash-expired", None, Some(now - 1)).await;
    token(&store, ann, "hash-later", None, Some(now + 3_600_000)).await;
    assert!(
        store
            .authenticate_token("hash-expired")
            .await
            .expect("query")
            .is_none()
    );
    assert!(
        store
            .authenticate_token("hash-later")
            .await
            .expect("query")
            .is_some()
    );

    // Revocation: only by its own user, once.
    assert!(
        !store.revoke_token(ben, limited).await.expect("revoke"),
        "another user's token"
    );
    assert!(store.revoke_token(ann, limited).await.expect("revoke"));
    assert!(
        !store.revoke_token(ann, limited).await.expect("revoke"),
        "already revoked"
    );
    assert!(
        !store
            .revoke_token(ann, Uuid::now_v7())
            .await
            .expect("revoke")
    );
    assert!(
        store
            .authenticate_token("hash-limited")
            .await
            .expect("query")
            .is_none()
    );
    let revoked = store.tokens_for_user(ann).await.expect("tokens");
    assert_eq!(revoked.len(), 3, "revoked and expired tokens stay listed");
    assert!(
        revoked
            .iter()
            .find(|t| t.id == limited)
            .is_some_and(|t| t.revoked_at.is_some())
    );

    // A disabled user's tokens stop working; another user's do not.
    token(&store, ben, "hash-ben", None, None).await;
    disable(&store, "ann").await;
    assert!(
        store
            .authenticate_token("hash-later")
            .await
            .expect("query")
            .is_none()
    );
    assert!(
        store
            .authenticate_token("hash-ben")
            .await
            .expect("query")
            .is_some()
    );
}

async fn sessions_end_when_expired_deleted_or_the_password_changes(store: Store) {
    let cleo = user(&store, "cleo", None).await;
    let dan = user(&store, "dan", None).await;
    let later = now_millis() + 3_600_000;
    store
        .create_session("s-cleo-1", cleo, "csrf-1", later)
        .await
        .expect("session");
    let session = store
        .session("s-cleo-1")
        .await
        .expect("query")
        .expect("live");
    assert_eq!(session.user.id, cleo);
    assert_eq!(session.csrf_token, "csrf-1");
    assert_eq!(session.expires_at, later);
    assert!(store.session("s-unknown").await.expect("query").is_none());

    store
        .create_session("s-cleo-old", cleo, "csrf-old", now_millis() - 1)
        .await
        .expect("session");
    assert!(
        store.session("s-cleo-old").await.expect("query").is_none(),
        "an expired session authenticates nobody"
    );

    store
        .create_session("s-cleo-2", cleo, "csrf-2", later)
        .await
        .expect("session");
    store.delete_session("s-cleo-2").await.expect("delete");
    assert!(store.session("s-cleo-2").await.expect("query").is_none());
    assert!(store.session("s-cleo-1").await.expect("query").is_some());

    // A role change keeps sessions; a new password ends all of the user's, and only theirs.
    store
        .create_session("s-dan", dan, "csrf-dan", later)
        .await
        .expect("session");
    assert!(
        store
            .update_user("cleo", None, Some(Some(Role::Read)))
            .await
            .expect("update")
    );
    assert!(store.session("s-cleo-1").await.expect("query").is_some());
    assert!(
        store
            .update_user("cleo", Some("new-hash"), None)
            .await
            .expect("update")
    );
    assert!(store.session("s-cleo-1").await.expect("query").is_none());
    assert!(store.session("s-dan").await.expect("query").is_some());

    // A disabled user's session stops working.
    disable(&store, "dan").await;
    assert!(store.session("s-dan").await.expect("query").is_none());
}

async fn api_repositories_keep_their_secrets_apart(store: Store) {
    let created = store
        .create_repository(
            &spec("acme/api"),
            Some("bot"),
            &secrets(
                SecretChange::Set(Secret::new("webhook-secret-one-long")),
                SecretChange::Set(Secret::new("git-password-one")),
            ),
        )
        .await
        .expect("create");
    assert_eq!(created.managed_by, ManagedBy::Api);
    assert!(created.enabled);
    assert!(created.has_webhook_secret && created.has_git_password);
    assert_eq!(created.git_username.as_deref(), Some("bot"));
    let credentials = store
        .stored_credentials("acme/api")
        .await
        .expect("query")
        .expect("API-managed");
    assert_eq!(
        credentials.webhook_secret.as_ref().map(Secret::expose),
        Some("webhook-secret-one-long")
    );
    assert_eq!(
        credentials.git_password.as_ref().map(Secret::expose),
        Some("git-password-one")
    );
    let again = store
        .create_repository(&spec("acme/api"), None, &SecretChanges::default())
        .await;
    assert!(
        matches!(again, Err(RepositoryChangeError::Exists(_))),
        "{again:?}"
    );

    // Keep one secret, clear the other; then set a new one.
    let mut changed = spec("acme/api");
    changed.limits.max_concurrent_builds = 2;
    changed.anonymous_read = true;
    let updated = store
        .update_repository(
            created.id,
            &changed,
            Some("bot"),
            &secrets(SecretChange::Keep, SecretChange::Clear),
        )
        .await
        .expect("update");
    assert!(updated.has_webhook_secret);
    assert!(!updated.has_git_password);
    assert!(updated.anonymous_read);
    assert_eq!(updated.limits.max_concurrent_builds, 2);
    let updated = store
        .update_repository(
            created.id,
            &changed,
            None,
            &secrets(
                SecretChange::Set(Secret::new("webhook-secret-two-long")),
                SecretChange::Keep,
            ),
        )
        .await
        .expect("update");
    assert!(updated.has_webhook_secret && !updated.has_git_password);
    assert_eq!(updated.git_username, None);
    let credentials = store
        .stored_credentials("acme/api")
        .await
        .expect("query")
        .expect("API-managed");
    assert_eq!(
        credentials.webhook_secret.as_ref().map(Secret::expose),
        Some("webhook-secret-two-long")
    );
    assert!(credentials.git_password.is_none());

    // Disabling keeps the repository.
    store
        .set_repository_enabled(created.id, false)
        .await
        .expect("disable");
    assert!(
        !store
            .repository(created.id)
            .await
            .expect("query")
            .expect("kept")
            .enabled
    );

    // A repository from the configuration file is changed only there.
    store
        .sync_repositories(&[spec("acme/config")])
        .await
        .expect("sync");
    let config = store
        .repository_by_name("acme/config")
        .await
        .expect("query")
        .expect("synced");
    assert_eq!(config.managed_by, ManagedBy::Config);
    assert!(
        store
            .stored_credentials("acme/config")
            .await
            .expect("query")
            .is_none()
    );
    let refused = store
        .update_repository(
            config.id,
            &spec("acme/config"),
            None,
            &SecretChanges::default(),
        )
        .await;
    assert!(
        matches!(refused, Err(RepositoryChangeError::ManagedByConfig(_))),
        "{refused:?}"
    );
    assert!(matches!(
        store.set_repository_enabled(config.id, false).await,
        Err(RepositoryChangeError::ManagedByConfig(_))
    ));
    assert!(matches!(
        store.delete_repository(config.id).await,
        Err(RepositoryChangeError::ManagedByConfig(_))
    ));
    // The configuration taking over an API-managed name drops its stored secrets.
    store
        .sync_repositories(&[spec("acme/config"), spec("acme/api")])
        .await
        .expect("sync");
    let taken = store
        .repository_by_name("acme/api")
        .await
        .expect("query")
        .expect("kept");
    assert_eq!(taken.managed_by, ManagedBy::Config);
    assert!(!taken.has_webhook_secret && !taken.has_git_password);
    assert!(
        store
            .stored_credentials("acme/api")
            .await
            .expect("query")
            .is_none()
    );
    assert!(
        !store
            .delete_repository(Uuid::now_v7())
            .await
            .expect("delete"),
        "an unknown repository is not deleted"
    );
}

async fn deleting_a_repository_removes_its_whole_history(store: Store) {
    let web = api_repository(&store, "acme/web").await;
    let other = api_repository(&store, "acme/other").await;
    let eve = user(&store, "eve", None).await;
    store
        .set_grant(web, eve, Some(Role::Admin))
        .await
        .expect("grant");
    store
        .set_grant(other, eve, Some(Role::Read))
        .await
        .expect("grant");
    token(&store, eve, "hash-web-only", Some(web), None).await;
    token(&store, eve, "hash-everywhere", None, None).await;

    // A delivery with its build, run to the end with a log and phases, then retried.
    let pushed = new_build(1, "refs/heads/main", "127.0.0.1:5000/acme/web");
    let pushed_id = pushed.id;
    let the_delivery = delivery(web, "acme/web", "k-1");
    store
        .record_delivery(&the_delivery, &[pushed], answer, None)
        .await
        .expect("record");
    let claimed = store
        .claim_build("w", Duration::from_secs(600))
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(claimed.id, pushed_id);
    store
        .record_build_event(pushed_id, 1, "cloning")
        .await
        .expect("event");
    store
        .append_log(pushed_id, 1, b"building\n")
        .await
        .expect("log");
    let done = BuildResult {
        status: BuildStatus::Succeeded,
        error: None,
        digest: None,
    };
    assert!(
        store
            .finish_build(pushed_id, "w", &done)
            .await
            .expect("finish")
    );
    let retry = store
        .retry_build(pushed_id)
        .await
        .expect("retry")
        .expect("a finished build is retried");
    let trigger = store
        .create_trigger(web, "ci", "hash-trigger")
        .await
        .expect("trigger")
        .expect("new");
    store
        .record_trigger_request(
            trigger.id,
            &TriggerRequestRecord {
                received_at: now_millis(),
                source_address: "127.0.0.1:1".to_owned(),
                status_code: 202,
                body: "{}".to_owned(),
                response_json: "[]".to_owned(),
            },
            10,
        )
        .await
        .expect("request");
    // The other repository's history, which must survive.
    let kept = queued(&store, other, 2, "refs/heads/main").await;
    store.append_log(kept, 1, b"other\n").await.expect("log");
    store
        .create_trigger(other, "ci", "hash-other-trigger")
        .await
        .expect("trigger")
        .expect("new");

    assert!(store.delete_repository(web).await.expect("delete"));
    assert!(store.repository(web).await.expect("query").is_none());
    for id in [pushed_id, retry] {
        assert!(store.build(id).await.expect("query").is_none());
        assert_eq!(store.log_size(id).await.expect("size"), 0);
        assert!(store.build_events(id).await.expect("events").is_empty());
        assert!(store.build_attempts(id).await.expect("attempts").is_empty());
    }
    assert!(
        store
            .delivery(the_delivery.id)
            .await
            .expect("query")
            .is_none()
    );
    assert!(
        store
            .trigger_by_token_hash("hash-trigger")
            .await
            .expect("query")
            .is_none()
    );
    assert_eq!(
        store.grants_for_user(eve).await.expect("grants"),
        [(other, Role::Read)]
    );
    assert!(
        store
            .authenticate_token("hash-web-only")
            .await
            .expect("query")
            .is_none(),
        "a token limited to the repository goes with it"
    );
    assert!(
        store
            .authenticate_token("hash-everywhere")
            .await
            .expect("query")
            .is_some()
    );
    assert!(store.build(kept).await.expect("query").is_some());
    assert_eq!(store.log_size(kept).await.expect("size"), 6);
    assert!(
        store
            .trigger_by_token_hash("hash-other-trigger")
            .await
            .expect("query")
            .is_some()
    );
    assert!(
        !store.delete_repository(web).await.expect("delete"),
        "deleting twice finds nothing"
    );
}

/// Every build of the list, following cursors from page to page of `limit`.
async fn walk(store: &Store, filter: &BuildFilter, limit: i64) -> Vec<Vec<Uuid>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let mut page = store
            .list_builds(filter, cursor, limit)
            .await
            .expect("list");
        let more = page.len() as i64 > limit;
        page.truncate(usize::try_from(limit).expect("limit"));
        cursor = page.last().map(|b| BuildCursor {
            queued_at: b.queued_at,
            id: b.id,
        });
        pages.push(page.iter().map(|b| b.id).collect());
        if !more {
            return pages;
        }
        assert!(pages.len() < 50, "the pages never end");
    }
}

async fn build_lists_are_keyset_pages_with_filters_and_readers(store: Store) {
    let web = api_repository(&store, "acme/web").await;
    let api = api_repository(&store, "acme/api").await;
    let mut open_spec = spec("acme/open");
    open_spec.anonymous_read = true;
    let open = store
        .create_repository(&open_spec, None, &SecretChanges::default())
        .await
        .expect("create")
        .id;
    let base = 1_700_000_000_000_i64;
    // (repository, ref, status, queue time offset); two builds share a queue time.
    let layout = [
        (web, "refs/heads/main", "succeeded", 0),
        (web, "refs/heads/dev", "failed", 10),
        (web, "refs/heads/main", "queued", 20),
        (api, "refs/heads/main", "succeeded", 20),
        (api, "refs/heads/dev", "succeeded", 30),
        (open, "refs/heads/main", "cancelled", 40),
        (web, "refs/heads/main", "succeeded", 50),
    ];
    let mut stored = Vec::new();
    for (number, (repository, git_ref, status, at)) in layout.into_iter().enumerate() {
        let id = queued(&store, repository, number, git_ref).await;
        store
            .execute_raw_for_tests(&format!(
                "UPDATE builds SET status = '{status}', queued_at = {} WHERE id = '{id}'",
                base + at
            ))
            .await
            .expect("update");
        stored.push((id, repository, git_ref, status, base + at));
    }
    let expect = |keep: &dyn Fn(Uuid, &str, &str, i64) -> bool| -> Vec<Uuid> {
        let mut chosen: Vec<_> = stored
            .iter()
            .filter(|(_, repository, git_ref, status, at)| keep(*repository, git_ref, status, *at))
            .collect();
        chosen.sort_by_key(|(id, .., at)| std::cmp::Reverse((*at, *id)));
        chosen.iter().map(|(id, ..)| *id).collect()
    };

    // Keyset pages: every build once, newest first, ties broken by id.
    let everything = expect(&|_, _, _, _| true);
    for limit in [1, 2, 3, 7, 100] {
        let pages = walk(&store, &BuildFilter::default(), limit).await;
        assert_eq!(pages.concat(), everything, "limit {limit}");
        assert!(
            pages.iter().all(|p| p.len() as i64 <= limit),
            "limit {limit}"
        );
    }
    assert_eq!(walk(&store, &BuildFilter::default(), 7).await.len(), 1);

    // Filters, alone and together.
    let filters: Vec<(BuildFilter, Vec<Uuid>)> = vec![
        (
            BuildFilter {
                repository_id: Some(web),
                ..Default::default()
            },
            expect(&|r, _, _, _| r == web),
        ),
        (
            BuildFilter {
                status: Some(BuildStatus::Succeeded),
                ..Default::default()
            },
            expect(&|_, _, s, _| s == "succeeded"),
        ),
        (
            BuildFilter {
                git_ref: Some("refs/heads/dev".to_owned()),
                ..Default::default()
            },
            expect(&|_, g, _, _| g == "refs/heads/dev"),
        ),
        (
            BuildFilter {
                since: Some(base + 20),
                ..Default::default()
            },
            expect(&|_, _, _, at| at >= base + 20),
        ),
        (
            BuildFilter {
                repository_id: Some(web),
                status: Some(BuildStatus::Succeeded),
                git_ref: Some("refs/heads/main".to_owned()),
                since: Some(base + 1),
                ..Default::default()
            },
            expect(&|r, g, s, at| {
                r == web && g == "refs/heads/main" && s == "succeeded" && at > base
            }),
        ),
        (
            BuildFilter {
                status: Some(BuildStatus::Running),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, want) in &filters {
        assert_eq!(walk(&store, filter, 2).await.concat(), *want, "{filter:?}");
    }

    // Readers: the anonymous see open repositories; a user also those granted to them;
    // a repository-limited token only that one.
    let fay = user(&store, "fay", None).await;
    store
        .set_grant(api, fay, Some(Role::Read))
        .await
        .expect("grant");
    let readers = [
        (
            Readable {
                user_id: None,
                only_repository: None,
            },
            expect(&|r, _, _, _| r == open),
        ),
        (
            Readable {
                user_id: Some(fay),
                only_repository: None,
            },
            expect(&|r, _, _, _| r == open || r == api),
        ),
        (
            Readable {
                user_id: Some(fay),
                only_repository: Some(api),
            },
            expect(&|r, _, _, _| r == api),
        ),
        (
            Readable {
                user_id: Some(fay),
                only_repository: Some(web),
            },
            vec![],
        ),
    ];
    for (readable, want) in readers {
        let filter = BuildFilter {
            readable_by: Some(readable.clone()),
            ..Default::default()
        };
        assert_eq!(
            walk(&store, &filter, 1).await.concat(),
            want,
            "{readable:?}"
        );
    }
    let filter = BuildFilter {
        readable_by: Some(Readable {
            user_id: Some(fay),
            only_repository: None,
        }),
        status: Some(BuildStatus::Succeeded),
        ..Default::default()
    };
    assert_eq!(
        walk(&store, &filter, 10).await.concat(),
        expect(&|r, _, s, _| r == api && s == "succeeded")
    );
}

async fn log_offsets_follow_the_stored_chunks(store: Store) {
    let web = api_repository(&store, "acme/web").await;
    let id = queued(&store, web, 1, "refs/heads/main").await;
    let other = queued(&store, web, 2, "refs/heads/main").await;
    assert_eq!(store.log_size(id).await.expect("size"), 0);
    assert!(store.log_from(id, 0, 10).await.expect("read").is_empty());

    store.append_log(id, 1, b"abc").await.expect("append");
    // Two bytes, one character: offsets count bytes on both backends.
    store
        .append_log(id, 2, "d\u{e9}f\n".as_bytes())
        .await
        .expect("append");
    // A chunk that never arrived (seq 3) leaves no hole in the offsets.
    store.append_log(id, 4, b"ghij").await.expect("append");
    // A retried append of a stored chunk changes nothing.
    store.append_log(id, 2, b"XXXXXXXX").await.expect("retry");
    store.append_log(other, 1, b"zz").await.expect("append");

    assert_eq!(store.log_size(id).await.expect("size"), 3 + 5 + 4);
    assert_eq!(store.last_log_seq(id).await.expect("seq"), 4);
    let pieces = store.log_from(id, 0, 10).await.expect("read");
    let offsets: Vec<(i64, i64)> = pieces.iter().map(|p| (p.seq, p.offset)).collect();
    assert_eq!(offsets, [(1, 0), (2, 3), (4, 8)]);
    assert_eq!(pieces[1].data, "d\u{e9}f\n".as_bytes());
    let whole: Vec<u8> = pieces.iter().flat_map(|p| p.data.clone()).collect();
    assert_eq!(whole, "abcd\u{e9}f\nghij".as_bytes());

    // Reading from an offset starts with the piece holding that byte.
    let seqs = |pieces: Vec<slipway_store::LogPiece>| -> Vec<i64> {
        pieces.iter().map(|p| p.seq).collect()
    };
    assert_eq!(
        seqs(store.log_from(id, 2, 10).await.expect("read")),
        [1, 2, 4]
    );
    assert_eq!(seqs(store.log_from(id, 3, 10).await.expect("read")), [2, 4]);
    assert_eq!(seqs(store.log_from(id, 7, 10).await.expect("read")), [2, 4]);
    assert_eq!(seqs(store.log_from(id, 8, 10).await.expect("read")), [4]);
    assert_eq!(seqs(store.log_from(id, 11, 10).await.expect("read")), [4]);
    assert!(store.log_from(id, 12, 10).await.expect("read").is_empty());
    assert_eq!(seqs(store.log_from(id, 0, 2).await.expect("read")), [1, 2]);
    let chunks: Vec<i64> = store
        .log_chunks(id, 1, 10)
        .await
        .expect("chunks")
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(chunks, [2, 4]);
    assert_eq!(store.log_size(other).await.expect("size"), 2);
}

async fn build_events_are_kept_in_order_per_build(store: Store) {
    let web = api_repository(&store, "acme/web").await;
    let id = queued(&store, web, 1, "refs/heads/main").await;
    let other = queued(&store, web, 2, "refs/heads/main").await;
    assert!(store.build_events(id).await.expect("events").is_empty());
    for (attempt, state) in [
        (1, "cloning"),
        (1, "building"),
        (2, "cloning"),
        (2, "building"),
        (2, "pushing"),
    ] {
        store
            .record_build_event(id, attempt, state)
            .await
            .expect("event");
    }
    store
        .record_build_event(other, 1, "cloning")
        .await
        .expect("event");
    let events = store.build_events(id).await.expect("events");
    let phases: Vec<(i64, &str)> = events
        .iter()
        .map(|e| (e.attempt, e.state.as_str()))
        .collect();
    assert_eq!(
        phases,
        [
            (1, "cloning"),
            (1, "building"),
            (2, "cloning"),
            (2, "building"),
            (2, "pushing")
        ]
    );
    assert!(events.windows(2).all(|pair| pair[0].at <= pair[1].at));
    assert_eq!(store.build_events(other).await.expect("events").len(), 1);
}

/// Every build list the dashboard and the API ask for is read along the index meant for it, in
/// the list's order: no full scan of builds and (on SQLite) no sort of its rows. Both backends'
/// plans are checked; the history benchmark prints them at 100,000 builds.
async fn build_lists_are_read_along_their_indexes(store: Store) {
    // Plans depend on the tables' statistics, so the history has a realistic shape: fifty
    // repositories with 200 builds each over fifty refs, analysed. (With only a few
    // repositories PostgreSQL rightly prefers walking the time index, whose order matches the
    // table's, over the repository's own index; ANALYZE reads every row of a table this
    // small, so the statistics, and with them the plans, are the same on every run.)
    let web = api_repository(&store, "acme/web0").await;
    for index in 1..50 {
        api_repository(&store, &format!("acme/web{index}")).await;
    }
    let insert = match store.backend_name() {
        "sqlite" => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
             INSERT INTO builds (id, repository_id, git_ref, commit_sha, image, tags_json, dockerfile,
                 context, status, queued_at)
             SELECT printf('%08x-0000-7000-8000-%012x', i, i),
                 (SELECT id FROM repositories WHERE name = 'acme/web' || (i % 50)),
                 'refs/heads/b' || (i % 53), printf('%040x', i), '127.0.0.1:5000/acme/web',
                 '[\"latest\"]', 'Dockerfile', '/',
                 CASE WHEN i % 7 = 0 THEN 'failed' ELSE 'succeeded' END, 1700000000000 + i * 1000
             FROM n"
        }
        _ => {
            "INSERT INTO builds (id, repository_id, git_ref, commit_sha, image, tags_json, dockerfile,
                 context, status, queued_at)
             SELECT lpad(to_hex(i), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(i), 12, '0'),
                 (SELECT id FROM repositories WHERE name = 'acme/web' || (i % 50)),
                 'refs/heads/b' || (i % 53), lpad(to_hex(i), 40, '0'), '127.0.0.1:5000/acme/web',
                 '[\"latest\"]', 'Dockerfile', '/',
                 CASE WHEN i % 7 = 0 THEN 'failed' ELSE 'succeeded' END, 1700000000000 + i * 1000
             FROM generate_series(1, 10000) AS i"
        }
    };
    store.execute_raw_for_tests(insert).await.expect("builds");
    store
        .execute_raw_for_tests("ANALYZE")
        .await
        .expect("analyze");
    let someone = user(&store, "someone", None).await;
    let cursor = Some(BuildCursor {
        queued_at: now_millis(),
        id: Uuid::now_v7(),
    });
    let git_ref = || Some("refs/heads/b7".to_owned());
    let since = Some(1_700_000_000_000 + 5_000 * 1000);
    // Each list and the indexes that serve it in its order (more than one where two fit as
    // well: the planner may take either).
    let cases: Vec<(BuildFilter, &[&str])> = vec![
        (BuildFilter::default(), &["builds_by_time"]),
        (
            BuildFilter {
                repository_id: Some(web),
                ..BuildFilter::default()
            },
            &["builds_by_repository_time"],
        ),
        (
            BuildFilter {
                status: Some(BuildStatus::Queued),
                ..BuildFilter::default()
            },
            &["builds_by_status_time"],
        ),
        (
            BuildFilter {
                git_ref: git_ref(),
                ..BuildFilter::default()
            },
            &["builds_by_ref_time"],
        ),
        (
            BuildFilter {
                repository_id: Some(web),
                git_ref: git_ref(),
                ..BuildFilter::default()
            },
            &["builds_by_repository_ref_time"],
        ),
        (
            BuildFilter {
                repository_id: Some(web),
                status: Some(BuildStatus::Failed),
                git_ref: git_ref(),
                ..BuildFilter::default()
            },
            &[
                "builds_by_repository_ref_time",
                "builds_by_repository_status_time",
            ],
        ),
        (
            BuildFilter {
                since,
                ..BuildFilter::default()
            },
            &["builds_by_time"],
        ),
        (
            BuildFilter {
                repository_id: Some(web),
                since,
                ..BuildFilter::default()
            },
            &["builds_by_repository_time"],
        ),
        (
            BuildFilter {
                git_ref: git_ref(),
                since,
                ..BuildFilter::default()
            },
            &["builds_by_ref_time"],
        ),
        (
            BuildFilter {
                readable_by: Some(Readable {
                    user_id: Some(someone),
                    only_repository: None,
                }),
                ..BuildFilter::default()
            },
            &["builds_by_time"],
        ),
    ];
    for (filter, indexes) in &cases {
        for cursor in [None, cursor] {
            let plan = store
                .list_builds_plan(filter, cursor, 50)
                .await
                .expect("plan");
            let uses = |index: &str| match store.backend_name() {
                "sqlite" => plan.iter().any(|line| {
                    line.contains(" b ")
                        && (line.contains(&format!("USING INDEX {index} "))
                            || line.contains(&format!("USING COVERING INDEX {index} "))
                            || line.ends_with(&format!("USING INDEX {index}"))
                            || line.ends_with(&format!("USING COVERING INDEX {index}")))
                }),
                _ => plan.iter().any(|line| {
                    line.contains(&format!(" using {index} on builds b"))
                        || line.contains(&format!("Bitmap Index Scan on {index} "))
                }),
            };
            // A repository and a ref are also the leading columns of the supersede lookup's
            // index; on a small table PostgreSQL may read that one and sort the few rows.
            let also = (filter.repository_id.is_some() && filter.git_ref.is_some())
                .then_some("builds_by_ref_commit");
            assert!(
                indexes.iter().copied().chain(also).any(uses),
                "{filter:?} (cursor {cursor:?}) is not read along {indexes:?}: {plan:#?}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|line| line == "SCAN b" || line.contains("Seq Scan on builds")),
                "{filter:?} scans the builds table: {plan:#?}"
            );
            // PostgreSQL may sort what its index range yields when it expects only a few rows
            // (no queued build here), which costs nothing; SQLite's plans are held to the order.
            if store.backend_name() == "sqlite" {
                assert!(
                    !plan.iter().any(|line| line.contains("TEMP B-TREE")),
                    "{filter:?} sorts rows instead of reading them in order: {plan:#?}"
                );
            }
        }
    }
}

/// What a badge shows: the newest finished build (skipped ones aside) of a repository, or of
/// those carrying one tag, found through `build_tags`, which the database keeps for every way a
/// build is written (queued, retried, its queue time changed).
async fn the_newest_finished_build_of_a_tag_is_found_however_old(store: Store) {
    let web = api_repository(&store, "acme/web").await;
    let other = api_repository(&store, "acme/other").await;
    let mut at = 1_700_000_000_000_i64;
    let mut add = |repository: Uuid, number: usize, tags: &[&str], status: &'static str| {
        at += 1_000;
        let mut build = new_build(number, "refs/heads/main", "127.0.0.1:5000/acme/any");
        build.plan.tags = tags.iter().map(|tag| (*tag).to_owned()).collect();
        (repository, build, status, at)
    };
    let planned = [
        add(web, 1, &["v1", "1.0"], "succeeded"),
        add(web, 2, &["latest"], "succeeded"),
        add(web, 3, &["latest"], "failed"),
        add(web, 4, &["latest"], "skipped"),
        add(web, 5, &["latest"], "queued"),
        add(other, 6, &["v1"], "failed"),
    ];
    for (repository, build, status, at) in &planned {
        store
            .queue_builds(*repository, std::slice::from_ref(build))
            .await
            .expect("queue");
        // Statuses and queue times are set directly, so the order does not hang on the clock.
        store
            .execute_raw_for_tests(&format!(
                "UPDATE builds SET status = '{status}', queued_at = {at} WHERE id = '{}'",
                build.id
            ))
            .await
            .expect("update");
    }
    let newest = |tag: Option<&'static str>| {
        let store = store.clone();
        async move { store.newest_finished_status(web, tag).await.expect("query") }
    };
    assert_eq!(newest(Some("v1")).await, Some(BuildStatus::Succeeded));
    assert_eq!(newest(Some("1.0")).await, Some(BuildStatus::Succeeded));
    // The queued and the skipped build are newer, but not finished (or built at all).
    assert_eq!(newest(Some("latest")).await, Some(BuildStatus::Failed));
    assert_eq!(newest(None).await, Some(BuildStatus::Failed));
    assert_eq!(newest(Some("v2")).await, None, "no build carries v2");
    assert_eq!(
        store
            .newest_finished_status(other, Some("latest"))
            .await
            .expect("query"),
        None,
        "another repository's tags are its own"
    );

    // A retry copies its build's tags, and is the newest of them once it finishes.
    let retry = store
        .retry_build(planned[0].1.id)
        .await
        .expect("retry")
        .expect("a finished build is retried");
    assert_eq!(
        newest(Some("v1")).await,
        Some(BuildStatus::Succeeded),
        "the retry is still queued"
    );
    store
        .execute_raw_for_tests(&format!(
            "UPDATE builds SET status = 'cancelled' WHERE id = '{retry}'"
        ))
        .await
        .expect("update");
    assert_eq!(newest(Some("v1")).await, Some(BuildStatus::Cancelled));
}
