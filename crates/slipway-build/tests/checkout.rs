//! `fetch_and_checkout` against a real repository over `file://`: the exact commit is checked
//! out, the mirror is reused, annotated tags are peeled, and the changed files between two
//! commits are what the path filter sees.

use std::path::Path;

use slipway_build::{BuildLog, Fetch, GitAuth, GitSource, fetch_and_checkout};

/// Commits `files` on `main` of the repository at `dir`, returning the commit id.
fn commit(repo: &git2::Repository, files: &[(&str, &str)], message: &str) -> git2::Oid {
    let workdir = repo.workdir().expect("a work tree").to_path_buf();
    let mut index = repo.index().expect("index");
    for (path, contents) in files {
        let full = workdir.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, contents).expect("write");
        index.add_path(Path::new(path)).expect("add");
    }
    index.write().expect("write index");
    let tree = repo
        .find_tree(index.write_tree().expect("tree"))
        .expect("find tree");
    let signature = git2::Signature::now("Dev", "dev@example.com").expect("signature");
    let parents: Vec<git2::Commit<'_>> = repo
        .head()
        .ok()
        .and_then(|head| head.peel_to_commit().ok())
        .into_iter()
        .collect();
    let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(
        Some("refs/heads/main"),
        &signature,
        &signature,
        message,
        &tree,
        &parent_refs,
    )
    .expect("commit")
}

fn source(dir: &Path) -> GitSource {
    GitSource {
        url: format!("file://{}", dir.display()),
        auth: GitAuth::None,
        ssh_host_key: None,
    }
}

#[tokio::test]
async fn file_remotes_check_out_the_exact_commit_and_list_changed_files() {
    let origin = tempfile::tempdir().expect("tempdir");
    let repo = git2::Repository::init(origin.path()).expect("init");
    repo.set_head("refs/heads/main").expect("head");
    let first = commit(
        &repo,
        &[
            ("Dockerfile", "FROM scratch\n"),
            ("services/api/main.go", "v1"),
        ],
        "first",
    );
    let second = commit(
        &repo,
        &[("services/api/main.go", "v2"), ("docs/readme.md", "hi")],
        "second\n\n[skip ci]",
    );
    let signature = git2::Signature::now("Dev", "dev@example.com").expect("signature");
    let tag = repo
        .tag(
            "v1.0",
            &repo.find_object(first, None).expect("object"),
            &signature,
            "release",
            false,
        )
        .expect("annotated tag");

    let data = tempfile::tempdir().expect("tempdir");
    let mirror = data.path().join("mirror.git");
    let (log, mut receiver) = BuildLog::channel(1024);
    let source = source(origin.path());
    let (mirror_for_task, source_for_task) = (mirror.clone(), source.clone());
    let (first_s, second_s, tag_s) = (first.to_string(), second.to_string(), tag.to_string());
    let results = tokio::task::spawn_blocking(move || {
        let checkout_a = tempfile::tempdir().expect("tempdir");
        let a = fetch_and_checkout(
            &Fetch {
                mirror: &mirror_for_task,
                source: &source_for_task,
                git_ref: "refs/heads/main",
                commit: &second_s,
                before: Some(&first_s),
                always_fetch: false,
            },
            checkout_a.path(),
            &log,
        )
        .expect("second commit");
        let api =
            std::fs::read_to_string(checkout_a.path().join("services/api/main.go")).expect("file");
        // The mirror already has the first commit: no fetch this time.
        let checkout_b = tempfile::tempdir().expect("tempdir");
        let b = fetch_and_checkout(
            &Fetch {
                mirror: &mirror_for_task,
                source: &source_for_task,
                git_ref: "refs/heads/main",
                commit: &first_s,
                before: None,
                always_fetch: false,
            },
            checkout_b.path(),
            &log,
        )
        .expect("first commit");
        let api_b =
            std::fs::read_to_string(checkout_b.path().join("services/api/main.go")).expect("file");
        let checkout_c = tempfile::tempdir().expect("tempdir");
        let c = fetch_and_checkout(
            &Fetch {
                mirror: &mirror_for_task,
                source: &source_for_task,
                git_ref: "refs/tags/v1.0",
                commit: &tag_s,
                before: None,
                always_fetch: false,
            },
            checkout_c.path(),
            &log,
        )
        .expect("tag");
        (a, api, b, api_b, c)
    })
    .await
    .expect("join");
    let (a, api, b, api_b, c) = results;

    assert_eq!(a.commit, second.to_string());
    assert_eq!(api, "v2", "the work tree is exactly the pushed commit");
    assert!(
        a.message.contains("[skip ci]"),
        "the commit's own message is read: {:?}",
        a.message
    );
    let mut changed = a.changed_files.expect("the previous commit is known");
    changed.sort();
    assert_eq!(
        changed,
        vec![
            "docs/readme.md".to_owned(),
            "services/api/main.go".to_owned()
        ]
    );
    assert_eq!(
        (b.commit.as_str(), api_b.as_str(), b.changed_files),
        (first.to_string().as_str(), "v1", None)
    );
    assert_eq!(
        c.commit,
        first.to_string(),
        "an annotated tag is peeled to its commit"
    );

    let mut lines = String::new();
    while let Ok(piece) = receiver.try_recv() {
        lines.push_str(&String::from_utf8_lossy(&piece));
    }
    assert!(
        lines.contains("already in the mirror, no fetch needed"),
        "{lines}"
    );
    assert!(mirror.join("HEAD").exists(), "the bare mirror is kept");
}

#[tokio::test]
async fn a_commit_the_remote_does_not_have_is_the_users_error() {
    let origin = tempfile::tempdir().expect("tempdir");
    let repo = git2::Repository::init(origin.path()).expect("init");
    repo.set_head("refs/heads/main").expect("head");
    commit(&repo, &[("Dockerfile", "FROM scratch\n")], "only");
    let data = tempfile::tempdir().expect("tempdir");
    let (log, _receiver) = BuildLog::channel(1024);
    let source = source(origin.path());
    let error = tokio::task::spawn_blocking(move || {
        let checkout = tempfile::tempdir().expect("tempdir");
        fetch_and_checkout(
            &Fetch {
                mirror: &data.path().join("m.git"),
                source: &source,
                git_ref: "refs/heads/main",
                commit: &"e".repeat(40),
                before: None,
                always_fetch: false,
            },
            checkout.path(),
            &log,
        )
        .expect_err("no such commit")
    })
    .await
    .expect("join");
    assert_eq!(error.kind, slipway_build::FailureKind::User);
    assert!(
        error.message.contains("is not in file://"),
        "{}",
        error.message
    );
}

mod tag_order {
    use super::*;
    use std::sync::Mutex;

    use slipway_build::{GuardFuture, PushGuard, Relation, TagHolder, may_push, on_ref, relation};

    /// A guard over an in-memory tag table, standing in for the store.
    struct FakeGuard {
        me: (String, String, String, i64),
        holder: Mutex<Option<TagHolder>>,
        taken: Mutex<bool>,
    }

    impl PushGuard for FakeGuard {
        fn me(&self) -> (&str, &str, &str, i64) {
            (&self.me.0, &self.me.1, &self.me.2, self.me.3)
        }
        fn cancelled(&self) -> GuardFuture<'_, bool> {
            Box::pin(async { Ok(false) })
        }
        fn holder<'a>(&'a self, _tag: &'a str) -> GuardFuture<'a, Option<TagHolder>> {
            Box::pin(async move {
                let mut holder = self.holder.lock().expect("lock");
                let current = holder.clone();
                // The older holder finishes its push while we wait.
                if let Some(h) = holder.as_mut() {
                    h.pushed = true;
                }
                Ok(current)
            })
        }
        fn take<'a>(&'a self, _tag: &'a str, _expected: Option<&'a str>) -> GuardFuture<'a, bool> {
            Box::pin(async move {
                *self.taken.lock().expect("lock") = true;
                Ok(true)
            })
        }
        fn pushed<'a>(&'a self, _tag: &'a str) -> GuardFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
    }

    fn holder(commit: git2::Oid, queued_at: i64, pushed: bool, running: bool) -> TagHolder {
        TagHolder {
            build_id: "holder".to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            commit: commit.to_string(),
            queued_at,
            pushed,
            running,
        }
    }

    #[tokio::test]
    async fn the_newer_commit_keeps_the_tag_whatever_the_arrival_order() {
        let origin = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(origin.path()).expect("init");
        repo.set_head("refs/heads/main").expect("head");
        let old = commit(&repo, &[("a", "1")], "old");
        let new = commit(&repo, &[("a", "2")], "new");
        let data = tempfile::tempdir().expect("tempdir");
        let mirror = data.path().join("m.git");
        let (log, _receiver) = BuildLog::channel(1024);
        let (m, src, new_s) = (mirror.clone(), source(origin.path()), new.to_string());
        tokio::task::spawn_blocking(move || {
            let checkout = tempfile::tempdir().expect("tempdir");
            fetch_and_checkout(
                &Fetch {
                    mirror: &m,
                    source: &src,
                    git_ref: "refs/heads/main",
                    commit: &new_s,
                    before: None,
                    always_fetch: false,
                },
                checkout.path(),
                &log,
            )
            .expect("fetch")
        })
        .await
        .expect("join");

        assert_eq!(
            relation(&mirror, &old.to_string(), &new.to_string()),
            Relation::Ancestor
        );
        assert_eq!(
            relation(&mirror, &new.to_string(), &old.to_string()),
            Relation::Descendant
        );
        assert_eq!(
            relation(&mirror, &new.to_string(), &"f".repeat(40)),
            Relation::Unknown
        );
        assert!(on_ref(&mirror, "refs/heads/main", &old.to_string()));
        assert!(!on_ref(&mirror, "refs/heads/main", &"f".repeat(40)));

        // The old commit's build, even queued later (a late redelivery), must not take the tag
        // from the new commit's pushed image.
        let guard = FakeGuard {
            me: (
                "late".into(),
                "refs/heads/main".into(),
                old.to_string(),
                2_000,
            ),
            holder: Mutex::new(Some(holder(new, 1_000, true, false))),
            taken: Mutex::new(false),
        };
        let refused = may_push(&guard, &mirror, "latest").await.expect("decides");
        assert!(
            refused
                .as_deref()
                .is_some_and(|r| r.contains("newer commit")),
            "{refused:?}"
        );
        assert!(!*guard.taken.lock().expect("lock"));

        // The new commit's build waits for the old build's push under way, then takes the tag.
        let guard = FakeGuard {
            me: (
                "new".into(),
                "refs/heads/main".into(),
                new.to_string(),
                1_000,
            ),
            holder: Mutex::new(Some(holder(old, 2_000, false, true))),
            taken: Mutex::new(false),
        };
        assert_eq!(
            may_push(&guard, &mirror, "latest").await.expect("decides"),
            None
        );
        assert!(*guard.taken.lock().expect("lock"));
    }
}
