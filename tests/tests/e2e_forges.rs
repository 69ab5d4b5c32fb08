//! Every forge besides GitHub, end to end: a real HTTP delivery to a running `slipway serve`,
//! shaped and signed as that forge sends it, makes Slipway clone from the git server (with
//! credentials), build with the real engine and push to the authenticated registry. The image
//! carries the pushed commit as its revision, and the API's digest is the registry's.

use slipway_e2e::{
    BITBUCKET_SERVER_PING, ExampleEvent, Fixture, Forge, GIT_USER, RepoFile, Rule, Slipway, ZERO_ID,
};

/// The event name Slipway records for a push from `forge`.
fn push_event_name(forge: Forge) -> &'static str {
    match forge {
        Forge::Bitbucket => "repo:push",
        Forge::BitbucketServer => "repo:refs_changed",
        Forge::Gitlab => "Push Hook",
        Forge::Gitea | Forge::Forgejo => "push",
    }
}

/// Slipway serving `fx`'s repository as a `forge` repository with `rules`.
fn start(fx: &Fixture, forge: Forge, rules: Vec<Rule>) -> Slipway {
    fx.slipway(&fx.forge_config(forge, rules)).start()
}

/// Commits the sample app to `main` (and, unless the push `creates` the branch, a second
/// commit on top), delivers `forge`'s push of `main` and checks that exactly one build ran
/// for the pushed commit and pushed `latest`.
fn a_push_builds_and_pushes(forge: Forge, label: &str, creates: bool) {
    let fx = Fixture::new(label);
    let app = fx.sample_app();
    let first = fx.repo.commit("Add the app", &app.files);
    let (before, commit) = if creates {
        (ZERO_ID.to_owned(), first)
    } else {
        let second = fx.repo.commit(
            "Change the greeting",
            &[RepoFile::text("greeting.txt", "changed\n")],
        );
        (first, second)
    };
    let slipway = start(&fx, forge, vec![Rule::branch("main", "latest")]);

    let body = forge.push_payload(fx.name(), &[fx.ref_update("refs/heads/main", &before)]);
    let answer = fx.deliver_as(&slipway, forge, ExampleEvent::BranchPush, &body);
    answer.assert_status(202);
    let build_id = answer.single_build_id();
    let queued = &answer.builds()[0];
    assert_eq!(queued["ref"], "refs/heads/main", "{answer:#?}");
    assert_eq!(queued["commit"], commit.as_str(), "{answer:#?}");

    let delivery = slipway.delivery(&answer.delivery_id());
    assert_eq!(
        delivery["provider"],
        forge.provider().as_str(),
        "{delivery:#}"
    );
    assert_eq!(delivery["event"], push_event_name(forge), "{delivery:#}");
    assert!(
        delivery["forge_delivery_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "the forge's delivery id is recorded: {delivery:#}"
    );
    assert!(
        delivery["verification"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "the delivery says how it was verified: {delivery:#}"
    );

    let build = slipway.wait_for_success(&build_id);
    assert_eq!(build["ref"], "refs/heads/main", "{build:#}");
    assert_eq!(build["commit"], commit.as_str(), "{build:#}");
    let digest = fx.assert_pushed(&build, "latest", &commit);
    if creates {
        assert_eq!(fx.run_pushed(&digest), app.expected_output);
    }
    assert!(
        fx.git
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some(GIT_USER)
                && r.path.ends_with("/git-upload-pack")
                && r.status == 200),
        "Slipway fetched from the git server with credentials: {:#?}",
        fx.git.requests()
    );
}

#[test]
fn a_bitbucket_cloud_push_builds_and_pushes() {
    a_push_builds_and_pushes(Forge::Bitbucket, "forge-bitbucket", false);
}

#[test]
fn a_bitbucket_data_center_push_builds_and_pushes() {
    a_push_builds_and_pushes(Forge::BitbucketServer, "forge-bitbucket-dc", false);
}

#[test]
fn a_gitlab_push_builds_and_pushes() {
    a_push_builds_and_pushes(Forge::Gitlab, "forge-gitlab", true);
}

#[test]
fn a_gitea_push_builds_and_pushes() {
    a_push_builds_and_pushes(Forge::Gitea, "forge-gitea", false);
}

#[test]
fn a_forgejo_push_builds_and_pushes() {
    a_push_builds_and_pushes(Forge::Forgejo, "forge-forgejo", true);
}

/// Bitbucket Cloud batches every ref one `git push` moved into one delivery; each change is
/// planned on its own, so a rule matching both branches builds and pushes both.
#[test]
fn a_bitbucket_cloud_push_of_two_branches_builds_both() {
    let fx = Fixture::new("forge-bitbucket-multi");
    let app = fx.sample_app();
    let first = fx.repo.commit("Add the app", &app.files);
    let main = fx.repo.commit(
        "Change the greeting on main",
        &[RepoFile::text("greeting.txt", "main\n")],
    );
    let develop = fx.repo.commit_on(
        "develop",
        "Change the greeting on develop",
        &[RepoFile::text("greeting.txt", "develop\n")],
    );
    let slipway = start(
        &fx,
        Forge::Bitbucket,
        vec![Rule::branch("/.*/", "{sourceref}")],
    );

    let body = Forge::Bitbucket.push_payload(
        fx.name(),
        &[
            fx.ref_update("refs/heads/main", &first),
            fx.ref_update("refs/heads/develop", ZERO_ID),
        ],
    );
    let answer = fx.deliver_as(&slipway, Forge::Bitbucket, ExampleEvent::BranchPush, &body);
    answer.assert_status(202);
    let builds = answer.builds();
    assert_eq!(builds.len(), 2, "one build per change: {answer:#?}");
    for (branch, commit) in [("main", &main), ("develop", &develop)] {
        let queued = builds
            .iter()
            .find(|b| b["ref"] == format!("refs/heads/{branch}").as_str())
            .unwrap_or_else(|| panic!("no build of {branch}: {answer:#?}"));
        assert_eq!(queued["commit"], commit.as_str(), "{answer:#?}");
        assert_eq!(queued["tags"], serde_json::json!([branch]), "{answer:#?}");
        let id = queued["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a build without an id: {answer:#?}"));
        let build = slipway.wait_for_success(id);
        fx.assert_pushed(&build, branch, commit);
    }
}

/// Bitbucket Data Center's "Test connection" sends a signed `diagnostics:ping`, which Slipway
/// answers with 200 and no build.
#[test]
fn a_bitbucket_data_center_ping_is_answered() {
    let fx = Fixture::new("forge-bitbucket-dc-ping");
    let slipway = start(
        &fx,
        Forge::BitbucketServer,
        vec![Rule::branch("main", "latest")],
    );
    let answer = fx.deliver_as(
        &slipway,
        Forge::BitbucketServer,
        ExampleEvent::Ping,
        BITBUCKET_SERVER_PING,
    );
    answer.assert_status(200);
    assert!(
        answer.builds().is_empty(),
        "a ping builds nothing: {answer:#?}"
    );
    let delivery = slipway.delivery(&answer.delivery_id());
    assert_eq!(delivery["event"], "diagnostics:ping", "{delivery:#}");
    assert_eq!(delivery["status_code"], 200, "{delivery:#}");
}
