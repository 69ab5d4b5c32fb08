//! `fetch_and_checkout` against a real repository over `file://`: the exact commit is checked
//! out, the mirror is reused, annotated tags are peeled, and the changed files between two
//! commits are what the path filter sees.

use std::path::Path;

use slipway_build::{BuildLog, GitAuth, GitSource, fetch_and_checkout};

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
            &mirror_for_task,
            &source_for_task,
            "refs/heads/main",
            &second_s,
            Some(&first_s),
            checkout_a.path(),
            &log,
        )
        .expect("second commit");
        let api =
            std::fs::read_to_string(checkout_a.path().join("services/api/main.go")).expect("file");
        // The mirror already has the first commit: no fetch this time.
        let checkout_b = tempfile::tempdir().expect("tempdir");
        let b = fetch_and_checkout(
            &mirror_for_task,
            &source_for_task,
            "refs/heads/main",
            &first_s,
            None,
            checkout_b.path(),
            &log,
        )
        .expect("first commit");
        let api_b =
            std::fs::read_to_string(checkout_b.path().join("services/api/main.go")).expect("file");
        let checkout_c = tempfile::tempdir().expect("tempdir");
        let c = fetch_and_checkout(
            &mirror_for_task,
            &source_for_task,
            "refs/tags/v1.0",
            &tag_s,
            None,
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
            &data.path().join("m.git"),
            &source,
            "refs/heads/main",
            &"e".repeat(40),
            None,
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
