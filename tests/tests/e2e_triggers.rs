//! Build-trigger URLs end to end: a trigger is made with the real CLI against the running
//! server's configuration and database, and `POST /api/trigger/{token}` with each of Docker
//! Hub's body forms builds and pushes what it names, with heads read from the git server (with
//! credentials), never from the request. Tokens can be regenerated and revoked, are rate
//! limited, and never appear again after they are printed.

use std::time::Duration;

use serde_json::Value;
use slipway_e2e::{Fixture, GIT_USER, HttpResponse, RepoFile, Rule};

/// How long a queued build may wait for the single worker to become running.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the build that occupies the only worker runs: far longer than the few requests
/// made meanwhile.
const SLOW_SECONDS: u32 = 15;
/// A body that asks for a tag no rule makes: accepted, with nothing to build.
const NOTHING: &str = r#"{"docker_tag": "nope"}"#;

/// Fails the test unless `entry` of `answer` is for this source and these tags.
#[track_caller]
fn assert_entry(
    answer: &HttpResponse,
    entry: &Value,
    source_type: &str,
    source_name: &str,
    tags: &str,
) {
    assert_eq!(entry["source_type"], source_type, "{answer:#?}");
    assert_eq!(entry["source_name"], source_name, "{answer:#?}");
    assert_eq!(entry["evaluated_tag_name"], tags, "{answer:#?}");
}

/// The id of the build `entry` of `answer` queued.
#[track_caller]
fn queued(answer: &HttpResponse, entry: &Value) -> String {
    assert_eq!(entry["msg"], "build queued", "{answer:#?}");
    entry["build_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no build_id in {answer:#?}"))
        .to_owned()
}

/// The only entry of `answer`, which queued a build of `source_type` `source_name` into
/// `tags`; returns the build's id.
#[track_caller]
fn single_build(answer: &HttpResponse, source_type: &str, source_name: &str, tags: &str) -> String {
    let entries = answer.trigger_entries();
    assert_eq!(entries.len(), 1, "one rule considered: {answer:#?}");
    assert_entry(answer, &entries[0], source_type, source_name, tags);
    queued(answer, &entries[0])
}

/// Fails the test unless `entry` of `answer` queued nothing, saying something containing `msg`.
#[track_caller]
fn assert_nothing_queued(answer: &HttpResponse, entry: &Value, msg: &str) {
    assert!(entry["build_id"].is_null(), "{answer:#?}");
    assert!(
        entry["msg"].as_str().is_some_and(|m| m.contains(msg)),
        "the message should contain {msg:?}: {answer:#?}"
    );
}

/// The `slw_…` token at the end of a trigger URL.
fn token(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

/// Each body form, in turn, builds what it names at the commit the remote reports (or the one
/// it names), and every build pushes.
#[test]
fn every_trigger_body_builds_and_pushes_what_it_names() {
    let fx = Fixture::new("trigger-bodies");
    let app = fx.sample_app();
    let older = fx.repo.commit("Add the app", &app.files);
    let release = fx.repo.tag_annotated("v1.1", "main", "Release 1.1");
    let head = fx.repo.commit(
        "Change the greeting",
        &[RepoFile::text("greeting.txt", "head\n")],
    );
    let slipway = fx.start_slipway(vec![
        Rule::branch("main", "latest"),
        Rule::branch("staging", "staging"),
        Rule::tag("/^v([0-9.]+)$/", "{\\1}"),
    ]);
    let url = slipway.create_trigger(fx.name(), "deploy");
    assert!(
        url.starts_with(&slipway.url("/api/trigger/slw_")),
        "the URL is under the public URL: {url}"
    );

    // Heads come from the remote: `staging` is not there yet, so asking for its tag lists the
    // remote's refs, with the configured credentials, fetches nothing and builds nothing.
    let seen = fx.git.requests().len();
    let answer = slipway.post(&url, r#"{"docker_tag": "staging"}"#, false);
    let entries = answer.trigger_entries();
    assert_eq!(entries.len(), 1, "{answer:#?}");
    assert_entry(&answer, &entries[0], "Branch", "staging", "");
    assert_nothing_queued(&answer, &entries[0], "does not exist");
    let listing = fx.git.requests()[seen..].to_vec();
    assert!(
        listing.iter().any(|r| r.user.as_deref() == Some(GIT_USER)
            && r.path == format!("/{}.git/info/refs", fx.name())
            && r.query.contains("service=git-upload-pack")
            && r.status == 200),
        "Slipway listed the remote's refs as {GIT_USER}: {listing:#?}"
    );
    assert!(
        listing
            .iter()
            .all(|r| !r.path.ends_with("/git-upload-pack")),
        "listing the refs fetched no objects: {listing:#?}"
    );
    let staging = fx.repo.commit_on(
        "staging",
        "Stage it",
        &[RepoFile::text("greeting.txt", "staging\n")],
    );

    // An empty body: every rule with a literal source, at its head; the regex rule cannot be
    // built without a name and says so.
    let answer = slipway.post(&url, "", false);
    let entries = answer.trigger_entries();
    assert_eq!(entries.len(), 3, "one entry per rule: {answer:#?}");
    assert_entry(&answer, &entries[0], "Branch", "main", "latest");
    assert_entry(&answer, &entries[1], "Branch", "staging", "staging");
    assert_entry(&answer, &entries[2], "Tag", "/^v([0-9.]+)$/", "");
    assert_nothing_queued(&answer, &entries[2], "regex");
    let main_build = slipway.wait_for_success(&queued(&answer, &entries[0]));
    let staging_build = slipway.wait_for_success(&queued(&answer, &entries[1]));
    assert_eq!(main_build["trigger"], "trigger", "{main_build:#}");
    assert_eq!(main_build["ref"], "refs/heads/main", "{main_build:#}");
    fx.assert_pushed(&main_build, "latest", &head);
    fx.assert_pushed(&staging_build, "staging", &staging);

    // {"docker_tag": "latest"}: the rules that make that tag, at the remote's new head.
    let newer = fx.repo.commit(
        "Change it again",
        &[RepoFile::text("greeting.txt", "newer\n")],
    );
    let answer = slipway.post(&url, r#"{"docker_tag": "latest"}"#, false);
    let build = slipway.wait_for_success(&single_build(&answer, "Branch", "main", "latest"));
    fx.assert_pushed(&build, "latest", &newer);

    // A branch by name.
    let staging_2 = fx.repo.commit_on(
        "staging",
        "Stage again",
        &[RepoFile::text("greeting.txt", "staging 2\n")],
    );
    let answer = slipway.post(
        &url,
        r#"{"source_type": "Branch", "source_name": "staging"}"#,
        false,
    );
    let build = slipway.wait_for_success(&single_build(&answer, "Branch", "staging", "staging"));
    fx.assert_pushed(&build, "staging", &staging_2);

    // A tag by name: the regex rule builds it, into the tag its template makes, from the
    // commit the annotated tag points at.
    let answer = slipway.post(
        &url,
        r#"{"source_type": "Tag", "source_name": "v1.1"}"#,
        false,
    );
    let build = slipway.wait_for_success(&single_build(&answer, "Tag", "v1.1", "1.1"));
    assert_eq!(build["ref"], "refs/tags/v1.1", "{build:#}");
    fx.assert_pushed(&build, "1.1", &release.commit);

    // A branch at an exact, older commit: it is built, but a newer commit of main already holds
    // `latest`, so the older image is not pushed over it, and the build says why.
    let latest_before = fx.pushed_digest("latest").expect("latest was pushed");
    let answer = slipway.post(
        &url,
        &format!(r#"{{"source_type": "Branch", "source_name": "main", "commit": "{older}"}}"#),
        false,
    );
    let id = single_build(&answer, "Branch", "main", "latest");
    let (build, log) = slipway.wait_for_end(&id, "skipped", slipway_e2e::BUILD_TIMEOUT);
    assert_eq!(build["commit"], older.as_str(), "{build:#}");
    assert!(
        build["error"].as_str().is_some_and(
            |e| e.contains("of the newer commit") && e.contains("already pushed this tag")
        ),
        "{build:#}\n{log}"
    );
    assert_eq!(
        fx.pushed_digest("latest").as_deref(),
        Some(latest_before.as_str()),
        "latest still names the newer image"
    );
}

/// With one worker held by a slow build, a request queues builds that wait; the identical
/// request (as JSON or form-encoded) while they wait queues nothing and names them.
#[test]
fn an_identical_request_while_its_builds_wait_queues_nothing() {
    let fx = Fixture::new("trigger-queued");
    let main = fx.repo.commit("Add the app", &fx.sample_app().files);
    // The slow step names the fixture, so the engine's shared layer cache cannot skip it.
    let slow = fx.repo.commit_on(
        "slow",
        "Slow version",
        &[RepoFile::text(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo {} > /fixture.txt && sleep {SLOW_SECONDS}\n",
                fx.rig.base_image,
                fx.name()
            ),
        )],
    );
    let config = fx.config(vec![
        Rule::branch("main", "latest"),
        Rule::branch("slow", "slow"),
    ]);
    let slipway = fx.slipway(&config).workers(1).start();
    let url = slipway.create_trigger(fx.name(), "pipeline");

    // The slow build takes the only worker (this body form-encoded).
    let answer = slipway.post(&url, "source_type=Branch&source_name=slow", true);
    let slow_1 = single_build(&answer, "Branch", "slow", "slow");
    slipway.wait_for_status(&slow_1, "running", RUNNING_TIMEOUT);

    // {"build": true} queues both rules behind it: the running slow build is not waiting, so
    // the slow branch is queued again.
    let answer = slipway.post(&url, r#"{"build": true}"#, false);
    let entries = answer.trigger_entries();
    assert_eq!(entries.len(), 2, "{answer:#?}");
    assert_entry(&answer, &entries[0], "Branch", "main", "latest");
    assert_entry(&answer, &entries[1], "Branch", "slow", "slow");
    let waiting = [queued(&answer, &entries[0]), queued(&answer, &entries[1])];

    // The same request again, and its form-encoded twin, while both still wait.
    for (body, form) in [(r#"{"build": true}"#, false), ("build=true", true)] {
        let answer = slipway.post(&url, body, form);
        let entries = answer.trigger_entries();
        assert_eq!(entries.len(), 2, "{answer:#?}");
        for (entry, id) in entries.iter().zip(&waiting) {
            assert!(
                entry["build_id"].is_null()
                    && entry["msg"] == format!("an identical build is already queued: {id}"),
                "{body}: {answer:#?}\nthe slow build is {} (it must still hold the worker)",
                slipway.build(&slow_1)["status"]
            );
        }
    }
    // Only meaningful if the worker was busy all along, which it still is.
    let first = slipway.build(&slow_1);
    assert_eq!(first["status"], "running", "{first:#}");
    for id in &waiting {
        let build = slipway.build(id);
        assert_eq!(build["status"], "queued", "{build:#}");
    }

    slipway.wait_for_success(&slow_1);
    let main_build = slipway.wait_for_success(&waiting[0]);
    fx.assert_pushed(&main_build, "latest", &main);
    let slow_build = slipway.wait_for_success(&waiting[1]);
    fx.assert_pushed(&slow_build, "slow", &slow);
}

/// Unknown, replaced and revoked tokens get the same 404; a bad body a 400 that says what was
/// expected; the API lists the trigger and its requests, and neither it nor the CLI shows a
/// token again.
#[test]
fn tokens_can_be_regenerated_and_revoked_and_are_never_shown_again() {
    let fx = Fixture::new("trigger-tokens");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let url = slipway.create_trigger(fx.name(), "ci");
    let again = slipway.cli_output(&["trigger", "create", fx.name(), "ci"]);
    assert!(
        !again.status.success(),
        "a second active trigger of the same name is refused: {again:?}"
    );

    // The URL takes a trailing slash too; nothing makes the tag asked for.
    let answer = slipway.post(&format!("{url}/"), NOTHING, false);
    let entries = answer.trigger_entries();
    assert_eq!(entries.len(), 1, "{answer:#?}");
    assert_nothing_queued(&answer, &entries[0], "no rule");

    let bad = slipway.post(&url, r#"{"source_type": "Branch"}"#, false);
    bad.assert_status(400);
    assert!(bad.error_message().contains("expected"), "{bad:#?}");

    let unknown = slipway.post(
        &slipway.url(&format!("/api/trigger/slw_{}", "A".repeat(43))),
        "",
        false,
    );
    unknown.assert_status(404);

    let new_url = slipway.regenerate_trigger(fx.name(), "ci");
    assert_ne!(token(&new_url), token(&url));
    let replaced = slipway.post(&url, NOTHING, false);
    replaced.assert_status(404);
    assert_eq!(
        replaced.text, unknown.text,
        "the same answer as an unknown token"
    );
    slipway.post(&new_url, NOTHING, false).trigger_entries();

    let path = format!("/api/repositories/{}/triggers", fx.name());
    let listing = slipway.get(&path);
    listing.assert_status(200);
    let json = listing.json();
    let triggers = json["triggers"]
        .as_array()
        .unwrap_or_else(|| panic!("no triggers array: {listing:#?}"));
    assert_eq!(triggers.len(), 1, "{listing:#?}");
    assert_eq!(triggers[0]["name"], "ci", "{listing:#?}");
    assert!(triggers[0]["revoked_at"].is_null(), "{listing:#?}");
    let statuses: Vec<i64> = triggers[0]["requests"]
        .as_array()
        .unwrap_or_else(|| panic!("no requests array: {listing:#?}"))
        .iter()
        .map(|r| r["status_code"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        [202, 400, 202],
        "the trigger's requests, newest first (a replaced token's is not its): {listing:#?}"
    );
    let listed = slipway.cli(&["trigger", "list", fx.name()]);
    for shown in [&listing.text, &listed] {
        for url in [&url, &new_url] {
            assert!(
                !shown.contains(token(url)),
                "a token was shown again: {shown}"
            );
        }
    }

    slipway.revoke_trigger(fx.name(), "ci");
    let revoked = slipway.post(&new_url, NOTHING, false);
    revoked.assert_status(404);
    assert_eq!(
        revoked.text, unknown.text,
        "the same answer as an unknown token"
    );
    let listing = slipway.get(&path);
    assert!(
        listing.json()["triggers"][0]["revoked_at"].is_string(),
        "{listing:#?}"
    );
}

/// Ten requests in a burst are served, the eleventh is refused with 429 and Retry-After; the
/// limit is per token.
#[test]
fn a_burst_over_ten_requests_is_rate_limited() {
    let fx = Fixture::new("trigger-burst");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let url = slipway.create_trigger(fx.name(), "burst");
    for _ in 0..10 {
        slipway.post(&url, NOTHING, false).trigger_entries();
    }
    let limited = slipway.post(&url, NOTHING, false);
    limited.assert_status(429);
    let retry_after = limited
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {limited:#?}"));
    assert!(retry_after >= 1, "{limited:#?}");

    let other = slipway.create_trigger(fx.name(), "other");
    slipway.post(&other, NOTHING, false).trigger_entries();

    let listing = slipway.get(&format!("/api/repositories/{}/triggers", fx.name()));
    let json = listing.json();
    let burst = json["triggers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "burst"))
        .unwrap_or_else(|| panic!("no trigger burst: {listing:#?}"));
    assert_eq!(
        burst["requests"][0]["status_code"], 429,
        "the refused request is listed: {listing:#?}"
    );
}
