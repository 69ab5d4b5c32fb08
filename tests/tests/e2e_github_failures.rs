//! Issue 2's acceptance, the failing half: builds that cannot succeed end as `failed`, with an
//! error that says why, leak no secret and push nothing.

use serde_json::Value;
use slipway_e2e::{Docker, Fixture, REGISTRY_PASSWORD_ENV, RepoFile, Rule, Slipway};

/// Pushes `main` and waits for the build to fail; returns the build and its error text.
fn failed_build(fx: &Fixture, slipway: &Slipway) -> (Value, String) {
    slipway.wait_for_failure(&fx.push_main(slipway))
}

/// Nothing reached the registry under the rule's tag.
#[track_caller]
fn assert_nothing_pushed(fx: &Fixture) {
    fx.assert_not_pushed("latest");
}

/// The Docker Engine built no image for `commit` (every image Slipway builds carries the
/// commit as its revision label).
fn assert_engine_built_nothing(commit: &str) {
    let images = Docker::new().images_with_label("org.opencontainers.image.revision", commit);
    assert!(
        images.is_empty(),
        "the engine built {images:?} for {commit}"
    );
}

#[test]
fn a_missing_dockerfile_fails_naming_the_path() {
    let fx = Fixture::new("missing-dockerfile");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let slipway = fx.start_slipway(vec![
        Rule::branch("main", "latest").dockerfile("nope/Dockerfile"),
    ]);

    let (build, error) = failed_build(&fx, &slipway);
    assert!(
        error.contains("nope/Dockerfile"),
        "the error names the missing path: {build:#}"
    );
    assert_nothing_pushed(&fx);
}

#[test]
fn a_context_outside_the_checkout_fails() {
    let fx = Fixture::new("context-escape");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest").context("../..")]);

    let (build, error) = failed_build(&fx, &slipway);
    assert!(
        error.contains("leaves the repository checkout"),
        "the error says the context leaves the checkout: {build:#}"
    );
    assert_nothing_pushed(&fx);
}

/// A Dockerfile that is a symlink to a file outside the checkout must not be read.
#[test]
fn a_dockerfile_symlink_out_of_the_checkout_fails_before_the_engine_runs() {
    let fx = Fixture::new("dockerfile-symlink");
    let commit = fx.repo.commit(
        "Point the Dockerfile elsewhere",
        &[
            RepoFile::symlink("Dockerfile", "/etc/passwd"),
            RepoFile::text("README", "nothing to see\n"),
        ],
    );
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);

    let (build, error) = failed_build(&fx, &slipway);
    assert!(
        error.contains("Dockerfile") && error.contains("checkout"),
        "the error names the Dockerfile and says it leaves the checkout: {build:#}"
    );
    assert_engine_built_nothing(&commit);
    assert_nothing_pushed(&fx);
}

/// A context directory that is a symlink to `/` must not send the host's files to the engine.
#[test]
fn a_context_symlink_out_of_the_checkout_fails_before_the_engine_runs() {
    let fx = Fixture::new("context-symlink");
    let mut app = fx.sample_app().files;
    app.push(RepoFile::symlink("ctx", "/"));
    let commit = fx
        .repo
        .commit("Add a context that points at the root", &app);
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest").context("ctx")]);

    let (build, error) = failed_build(&fx, &slipway);
    assert!(
        error.contains("ctx") && error.contains("checkout"),
        "the error names the context and says it leaves the checkout: {build:#}"
    );
    assert_engine_built_nothing(&commit);
    assert_nothing_pushed(&fx);
}

/// A git server that cannot be reached fails the build; the error shows the URL but never
/// the password Slipway would have sent.
#[test]
fn an_unreachable_git_server_fails_without_leaking_the_password() {
    let fx = Fixture::new("unreachable-git");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let unreachable = "http://127.0.0.1:1/x.git";
    let mut config = fx.config(vec![Rule::branch("main", "latest")]);
    config.repositories[0].git_url = unreachable.to_owned();
    let slipway = fx.slipway(&config).start();

    let (build, error) = failed_build(&fx, &slipway);
    assert!(
        error.contains(unreachable),
        "the error names the URL: {build:#}"
    );
    let password = fx.git.password();
    assert!(
        !error.contains(password),
        "the error leaks the git password: {build:#}"
    );
    let build_id = build["id"].as_str().expect("the build has an id");
    assert!(
        !slipway.log(build_id).contains(password),
        "the build log leaks the git password"
    );
    assert!(
        !slipway.stderr().contains(password),
        "Slipway's own output leaks the git password"
    );
    assert_nothing_pushed(&fx);
}

/// A registry that refuses the configured password fails the build with an error that says
/// authentication was refused.
#[test]
fn a_wrong_registry_password_fails_with_an_authentication_error() {
    let fx = Fixture::new("wrong-registry-password");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let wrong = "definitely-not-the-password";
    let slipway = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .env(REGISTRY_PASSWORD_ENV, wrong)
        .start();

    let (build, error) = failed_build(&fx, &slipway);
    assert!(
        error.to_lowercase().contains("authentication"),
        "the error says authentication was refused: {build:#}"
    );
    assert!(
        !error.contains(wrong),
        "the error leaks the registry password: {build:#}"
    );
    assert_nothing_pushed(&fx);
}
