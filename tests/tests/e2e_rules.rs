//! Build rules end to end, each against the real binary, engine and registry: build arguments
//! and variables, multi-stage targets, path filters in a monorepo, skip markers, tag
//! protection between racing pushes, superseding of queued and running builds, and the cache.

use std::time::{Duration, Instant};

use serde_json::Value;
use slipway_e2e::{Fixture, HttpResponse, RepoFile, Rule, ZERO_ID, build_digest};

/// How long a queued build may wait for a free worker before it runs.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a running build may take to stop once a newer push cancelled it: the worker sees
/// the request on its next heartbeat, every 15 seconds.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a cancelled queued build may take to show as cancelled: the push that supersedes
/// it cancels it as it is recorded, so this is only a margin.
const QUEUED_CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// A `Dockerfile` at `path` that starts from the rig's base image and goes on with `body`.
fn dockerfile_at(fx: &Fixture, path: &str, body: &str) -> RepoFile {
    RepoFile::text(path, &format!("FROM {}\n{body}", fx.rig.base_image))
}

/// [`dockerfile_at`] the repository root.
fn dockerfile(fx: &Fixture, body: &str) -> RepoFile {
    dockerfile_at(fx, "Dockerfile", body)
}

/// Commits a Dockerfile whose build takes `seconds` and whose image prints `slow`. The slow
/// step names the fixture, so the engine's layer cache (shared by every test and every run)
/// can never skip it.
fn slow_commit(fx: &Fixture, seconds: u32) -> String {
    fx.repo.commit(
        "Slow version",
        &[dockerfile(
            fx,
            &format!(
                "RUN echo slow > /which.txt\n\
                 RUN echo {} > /fixture.txt && sleep {seconds}\n\
                 CMD [\"cat\", \"/which.txt\"]\n",
                fx.name()
            ),
        )],
    )
}

/// Commits a Dockerfile that builds quickly and whose image prints `which`.
fn fast_commit(fx: &Fixture, which: &str) -> String {
    fx.repo.commit(
        &format!("Version {which}"),
        &[dockerfile(
            fx,
            &format!("RUN echo {which} > /which.txt\nCMD [\"cat\", \"/which.txt\"]\n"),
        )],
    )
}

/// The first 12 characters of a commit id, as Slipway shortens commits in its messages.
fn short(commit: &str) -> &str {
    &commit[..12]
}

/// The id of the build in a webhook answer whose only tag is `tag`.
fn build_tagged(answer: &HttpResponse, tag: &str) -> String {
    let found: Vec<Value> = answer
        .builds()
        .into_iter()
        .filter(|build| build["tags"] == serde_json::json!([tag]))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one build with the tag {tag} in {answer:#?}"
    );
    found[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the build has no string id: {answer:#?}"))
        .to_owned()
}

/// The builder's output for the step whose instruction contains `instruction`: from its
/// `Step N/M :` line up to the next step.
fn step_output<'a>(log: &'a str, instruction: &str) -> &'a str {
    let start = log
        .match_indices("Step ")
        .map(|(at, _)| at)
        .find(|&at| {
            log[at..]
                .lines()
                .next()
                .is_some_and(|line| line.contains(instruction))
        })
        .unwrap_or_else(|| panic!("no build step with {instruction:?} in the log:\n{log}"));
    let rest = &log[start..];
    let end = rest[1..].find("\nStep ").map_or(rest.len(), |at| at + 1);
    &rest[..end]
}

/// Fails the test unless the registry's `tag` is `digest`.
#[track_caller]
fn assert_tag_is(fx: &Fixture, tag: &str, digest: &str, what: &str) {
    assert_eq!(
        fx.pushed_digest(tag).as_deref(),
        Some(digest),
        "the registry's {}:{tag} should be {what}",
        fx.image()
    );
}

/// Every build variable is a build argument, a rule's `build_args` may use them, and a
/// Dockerfile's `ARG` receives them in a `RUN` step; `labels` expand them too.
#[test]
fn build_args_and_variables_reach_the_run_step() {
    let fx = Fixture::new("build-args");
    let commit = fx.repo.commit(
        "Add the app",
        &[dockerfile(
            &fx,
            "ARG SOURCE_COMMIT\n\
             ARG GREETING\n\
             RUN echo \"$GREETING $SOURCE_COMMIT\" > /out.txt\n\
             CMD [\"cat\", \"/out.txt\"]\n",
        )],
    );
    let slipway = fx.start_slipway(vec![
        Rule::branch("main", "latest")
            .build_arg("GREETING", "hello-${SOURCE_BRANCH}")
            .label("org.example.built-from", "${SOURCE_TYPE} ${SOURCE_BRANCH}"),
    ]);

    let build_id = fx.push_main(&slipway);
    let build = slipway.wait_for_success(&build_id);
    let log = slipway.log(&build_id);
    let args = log
        .lines()
        .find(|line| line.starts_with("build args:"))
        .unwrap_or_else(|| panic!("the log lists no build args: {build:#}\nlog:\n{log}"));
    for expected in [
        format!("SOURCE_COMMIT=\"{commit}\""),
        "SOURCE_BRANCH=\"main\"".to_owned(),
        "SOURCE_TYPE=\"branch\"".to_owned(),
        "GREETING=(set by the rule; value not shown)".to_owned(),
    ] {
        assert!(
            args.contains(&expected),
            "the build args line lacks {expected}: {args}\nbuild: {build:#}\nlog:\n{log}"
        );
    }
    assert!(
        !log.contains("hello-main"),
        "a rule's build arg values never reach the log: {log}"
    );

    let digest = build_digest(&build);
    assert_tag_is(&fx, "latest", &digest, "the build's digest");
    let docker = fx.docker();
    let image = format!("{}@{digest}", fx.image());
    docker.pull(&image);
    assert_eq!(
        docker.run_image(&image),
        format!("hello-main {commit}\n"),
        "the RUN step saw the rule's GREETING and the commit; log:\n{log}"
    );
    assert_eq!(
        docker.label(&image, "org.example.built-from").as_deref(),
        Some("branch main"),
        "the rule's label, with its variables expanded"
    );
}

/// `target` builds the named stage of a multi-stage Dockerfile instead of the last one.
#[test]
fn a_target_builds_that_stage_instead_of_the_last() {
    let fx = Fixture::new("target");
    let base = &fx.rig.base_image;
    let stages = format!(
        "FROM {base} AS base\n\
         RUN echo base > /stage\n\
         CMD [\"cat\", \"/stage\"]\n\
         FROM base AS test\n\
         RUN echo test > /stage\n\
         FROM base AS runtime\n\
         RUN echo runtime > /stage\n\
         FROM base AS last\n\
         RUN echo last > /stage\n"
    );
    fx.repo
        .commit("Add the stages", &[RepoFile::text("Dockerfile", &stages)]);
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest").target("runtime")]);

    let build_id = fx.push_main(&slipway);
    let build = slipway.wait_for_success(&build_id);
    let digest = build_digest(&build);
    assert_tag_is(&fx, "latest", &digest, "the build's digest");
    assert_eq!(
        fx.run_pushed(&digest),
        "runtime\n",
        "the image is the runtime stage; log:\n{}",
        slipway.log(&build_id)
    );
}

/// Two rules on one branch, each with its own context and path filter: a new branch builds
/// both, and a later push that changes only one service builds only that one; the other ends
/// `skipped`, saying why, and its tag keeps the old image.
#[test]
fn path_filters_build_only_the_service_a_monorepo_push_changed() {
    let fx = Fixture::new("monorepo");
    let service = |name: &str, version: &str| {
        [
            dockerfile_at(
                &fx,
                &format!("services/{name}/Dockerfile"),
                "COPY app.txt /app.txt\nCMD [\"cat\", \"/app.txt\"]\n",
            ),
            RepoFile::text(
                &format!("services/{name}/app.txt"),
                &format!("{name} {version}\n"),
            ),
        ]
    };
    let mut files = service("api", "v1").to_vec();
    files.extend(service("web", "v1"));
    let first = fx.repo.commit("Add both services", &files);
    let slipway = fx.start_slipway(vec![
        Rule::branch("main", "api")
            .context("services/api")
            .paths(&["services/api"]),
        Rule::branch("main", "web")
            .context("services/web")
            .paths(&["services/web"]),
    ]);

    // The push that creates the branch has no previous commit to compare with: both build.
    let created = fx.deliver_main(&slipway, ZERO_ID);
    created.assert_status(202);
    let (api_1_id, web_1_id) = (build_tagged(&created, "api"), build_tagged(&created, "web"));
    let api_1 = slipway.wait_for_success(&api_1_id);
    let web_1 = slipway.wait_for_success(&web_1_id);
    let web_1_log = slipway.log(&web_1_id);
    assert!(
        web_1_log.contains("the path filter does not apply"),
        "a new branch builds whatever the filter says, and the log says so:\n{web_1_log}"
    );
    let (api_1_digest, web_1_digest) = (build_digest(&api_1), build_digest(&web_1));
    assert_eq!(fx.run_pushed(&api_1_digest), "api v1\n");
    assert_eq!(fx.run_pushed(&web_1_digest), "web v1\n");

    // A change to the api service only.
    fx.repo.commit(
        "Bump the api",
        &[RepoFile::text("services/api/app.txt", "api v2\n")],
    );
    let pushed = fx.deliver_main(&slipway, &first);
    pushed.assert_status(202);
    let (api_2_id, web_2_id) = (build_tagged(&pushed, "api"), build_tagged(&pushed, "web"));

    let api_2 = slipway.wait_for_success(&api_2_id);
    let api_2_log = slipway.log(&api_2_id);
    assert!(
        api_2_log.contains("services/api/app.txt changed"),
        "the api build says which change passed its filter:\n{api_2_log}"
    );
    let api_2_digest = build_digest(&api_2);
    assert_ne!(api_2_digest, api_1_digest, "the api image was rebuilt");
    assert_tag_is(&fx, "api", &api_2_digest, "the new api build's digest");
    assert_eq!(fx.run_pushed(&api_2_digest), "api v2\n");

    let (web_2, error) = slipway.wait_for_end(&web_2_id, "skipped", START_TIMEOUT);
    assert!(
        error.contains("none of the 1 changed file(s) passes the path filter")
            && error.contains("paths: services/web"),
        "the skipped web build says why: {web_2:#}\nlog:\n{}",
        slipway.log(&web_2_id)
    );
    assert!(
        web_2["digest"].is_null(),
        "a skipped build has no digest: {web_2:#}"
    );
    assert_tag_is(&fx, "web", &web_1_digest, "the first web build's digest");
}

/// A head commit whose message carries `[skip ci]` builds nothing: the webhook answer lists no
/// builds and says why, and the delivery's decision for the rule names the marker.
#[test]
fn a_skip_ci_message_builds_nothing_and_the_delivery_says_why() {
    let fx = Fixture::new("skip-ci");
    let mut files = fx.sample_app().files;
    files.push(RepoFile::text("README.md", "docs only\n"));
    fx.repo.commit("docs [skip ci]", &files);
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);

    let answer = fx.deliver_main(&slipway, ZERO_ID);
    answer.assert_status(202);
    assert!(answer.builds().is_empty(), "no build: {answer:#?}");
    let ignored = answer.json()["ignored"]
        .as_str()
        .unwrap_or_else(|| panic!("the answer says why nothing builds: {answer:#?}"))
        .to_owned();
    assert!(
        ignored.contains("[skip ci]"),
        "the answer names the marker: {answer:#?}"
    );

    let delivery = slipway.delivery(&answer.delivery_id());
    let decisions = delivery["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("the delivery has decisions: {delivery:#}"));
    assert_eq!(decisions.len(), 1, "one decision per rule: {delivery:#}");
    let decision = &decisions[0];
    assert_eq!(decision["outcome"], "skipped", "{delivery:#}");
    assert_eq!(decision["rule"], "rule 1 (branch main)", "{delivery:#}");
    assert!(
        decision["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("message contains \"[skip ci]\"")),
        "the decision says the message contains the marker: {delivery:#}"
    );
    assert!(
        delivery["outcome"]
            .as_str()
            .is_some_and(|outcome| outcome.contains("[skip ci]")),
        "the delivery's outcome names the marker: {delivery:#}"
    );
    assert_eq!(
        delivery["builds_created"],
        serde_json::json!([]),
        "{delivery:#}"
    );
    fx.assert_not_pushed("latest");
}

/// Two quick pushes to a branch: the older, slower build finishes after the newer one pushed
/// `latest`, so it must not overwrite it; having pushed nothing it ends `skipped`.
#[test]
fn an_older_build_does_not_overwrite_the_tag_a_newer_push_already_pushed() {
    let fx = Fixture::new("tag-protection");
    let older = slow_commit(&fx, 15);
    // Two workers (the default), so the newer build runs beside the older one.
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let older_id = fx.push_main(&slipway);
    slipway.wait_for_status(&older_id, "running", START_TIMEOUT);

    let newer = fast_commit(&fx, "newer");
    let answer = fx.deliver_main(&slipway, &older);
    answer.assert_status(202);
    let newer_id = answer.single_build_id();
    let newer_build = slipway.wait_for_success(&newer_id);
    let newer_digest = build_digest(&newer_build);
    let older_now = slipway.build(&older_id);
    assert_eq!(
        older_now["status"],
        "running",
        "the test needs the older build still running when the newer one has pushed: {older_now:#}\nlog:\n{}",
        slipway.log(&older_id)
    );

    let (older_build, error) = slipway.wait_for_end(&older_id, "skipped", START_TIMEOUT);
    let expected = format!(
        "latest: build {newer_id} of the newer commit {} already pushed this tag",
        short(&newer)
    );
    assert!(
        error.starts_with("built but not pushed: ") && error.contains(&expected),
        "the older build says which newer build holds the tag ({expected}): {older_build:#}\nlog:\n{}",
        slipway.log(&older_id)
    );
    assert!(
        older_build["digest"].is_null(),
        "the older build pushed nothing: {older_build:#}"
    );
    assert_tag_is(&fx, "latest", &newer_digest, "the newer build's digest");
    assert_eq!(fx.run_pushed(&newer_digest), "newer\n");
}

/// With one worker busy, a push queues a build and a newer push to the same ref cancels that
/// queued build before it ever starts; the running build is left alone (the repository does not
/// set `supersede_running_builds`), and the newest commit is what `latest` ends up as.
#[test]
fn a_newer_push_cancels_the_queued_build_of_the_same_ref() {
    let fx = Fixture::new("supersede-queued");
    let first = slow_commit(&fx, 10);
    let slipway = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .workers(1)
        .start();
    let first_id = fx.push_main(&slipway);
    slipway.wait_for_status(&first_id, "running", START_TIMEOUT);

    let second = fast_commit(&fx, "second");
    let answer = fx.deliver_main(&slipway, &first);
    answer.assert_status(202);
    let second_id = answer.single_build_id();
    let queued = slipway.build(&second_id);
    assert_eq!(
        queued["status"], "queued",
        "the only worker is busy, so the second build waits: {queued:#}"
    );

    let third = fast_commit(&fx, "third");
    let answer = fx.deliver_main(&slipway, &second);
    answer.assert_status(202);
    let third_id = answer.single_build_id();

    let (second_build, error) =
        slipway.wait_for_end(&second_id, "cancelled", QUEUED_CANCEL_TIMEOUT);
    let expected = format!(
        "superseded by build {third_id} for the newer commit {}",
        short(&third)
    );
    assert!(
        error.starts_with(&expected),
        "the cancelled build names the build that superseded it ({expected}): {second_build:#}"
    );
    assert!(
        second_build["started_at"].is_null(),
        "the cancelled build never started: {second_build:#}"
    );

    let first_build = slipway.wait_for_success(&first_id);
    assert!(
        first_build["error"].is_null(),
        "without supersede_running_builds the running build is not asked to stop: {first_build:#}"
    );
    let third_build = slipway.wait_for_success(&third_id);
    assert_eq!(third_build["commit"], third.as_str(), "{third_build:#}");
    let digest = build_digest(&third_build);
    assert_tag_is(&fx, "latest", &digest, "the newest build's digest");
    assert_eq!(fx.run_pushed(&digest), "third\n");
}

/// With `supersede_running_builds = true`, a newer push stops the running build of the same
/// rule and ref (within a heartbeat), which pushes nothing; the newer build pushes `latest`.
#[test]
fn supersede_running_builds_cancels_the_running_build() {
    let fx = Fixture::new("supersede-running");
    // Far longer than a heartbeat, so only a cancellation can end it in time.
    let first = slow_commit(&fx, 90);
    let mut config = fx.config(vec![Rule::branch("main", "latest")]);
    config.repositories[0].supersede_running_builds = true;
    let slipway = fx.slipway(&config).start();
    let first_id = fx.push_main(&slipway);
    slipway.wait_for_status(&first_id, "running", START_TIMEOUT);

    let second = fast_commit(&fx, "second");
    let answer = fx.deliver_main(&slipway, &first);
    answer.assert_status(202);
    let second_id = answer.single_build_id();
    let asked = Instant::now();

    let (first_build, error) = slipway.wait_for_end(&first_id, "cancelled", CANCEL_TIMEOUT);
    let took = asked.elapsed();
    let expected = format!(
        "superseded by build {second_id} for the newer commit {}",
        short(&second)
    );
    assert!(
        error.starts_with(&expected),
        "the cancelled build names the build that superseded it ({expected}): {first_build:#}\nlog:\n{}",
        slipway.log(&first_id)
    );
    let log = slipway.log(&first_id);
    assert!(
        log.contains("build stopped: superseded"),
        "the log of the cancelled build says it was stopped (after {took:?}):\n{log}"
    );
    assert!(
        first_build["digest"].is_null(),
        "the cancelled build pushed nothing: {first_build:#}"
    );

    let second_build = slipway.wait_for_success(&second_id);
    let digest = build_digest(&second_build);
    assert_tag_is(&fx, "latest", &digest, "the newer build's digest");
    assert_eq!(fx.run_pushed(&digest), "second\n");
}

/// Builds two commits with the same Dockerfile (the second changes only a file the image
/// does not use) under `rule`, and returns both logs and the `RUN` instruction to look for.
fn build_two_commits(label: &str, rule: Rule) -> (String, String, String) {
    let fx = Fixture::new(label);
    // The fixture's unique name makes the step new to the engine on the first build.
    let run = format!("RUN echo {} > /marker.txt", fx.name());
    let first = fx.repo.commit(
        "Add the app",
        &[
            dockerfile(&fx, &format!("{run}\nCMD [\"cat\", \"/marker.txt\"]\n")),
            RepoFile::text("README.md", "one\n"),
        ],
    );
    let slipway = fx.start_slipway(vec![rule]);
    let first_id = fx.push_main(&slipway);
    slipway.wait_for_success(&first_id);
    let first_log = slipway.log(&first_id);

    fx.repo
        .commit("Touch the README", &[RepoFile::text("README.md", "two\n")]);
    let answer = fx.deliver_main(&slipway, &first);
    answer.assert_status(202);
    let second_id = answer.single_build_id();
    let second = slipway.wait_for_success(&second_id);
    assert_eq!(
        fx.run_pushed(&build_digest(&second)),
        format!("{}\n", fx.name())
    );
    (first_log, slipway.log(&second_id), run)
}

/// `cache = false` runs every step again, even when nothing it depends on changed.
#[test]
fn cache_off_runs_every_step_again() {
    let (_, second_log, run) =
        build_two_commits("cache-off", Rule::branch("main", "latest").cache(false));
    assert!(
        second_log.contains("cache: off for this rule"),
        "the log says the cache is off:\n{second_log}"
    );
    assert!(
        !second_log.contains("Using cache"),
        "with the cache off no step is taken from the cache:\n{second_log}"
    );
    let step = step_output(&second_log, &run);
    assert!(
        step.contains("Running in"),
        "the RUN step ran in a container again:\n{second_log}"
    );
}

/// With the cache on (the default), the second build of an unchanged Dockerfile takes the
/// `RUN` step from the cache.
#[test]
fn cache_on_reuses_the_unchanged_run_step() {
    let (first_log, second_log, run) =
        build_two_commits("cache-on", Rule::branch("main", "latest"));
    let first_step = step_output(&first_log, &run);
    assert!(
        !first_step.contains("Using cache"),
        "the first build runs the new step:\n{first_log}"
    );
    let second_step = step_output(&second_log, &run);
    assert!(
        second_step.contains("Using cache"),
        "the second build takes the RUN step from the cache:\n{second_log}"
    );
}
