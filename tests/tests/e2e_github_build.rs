//! Issue 2's acceptance, the successful half: a signed GitHub push makes Slipway clone from a
//! git server that needs credentials, build with the real Docker Engine and push to the
//! authenticated registry.

use serde_json::Value;
use slipway_e2e::{Fixture, GIT_USER, Rule, TestDatabase, ZERO_ID};

const REVISION: &str = "org.opencontainers.image.revision";
const SOURCE: &str = "org.opencontainers.image.source";
const CREATED: &str = "org.opencontainers.image.created";

/// The `tags` of a build or webhook answer, sorted.
fn tags(value: &Value) -> Vec<String> {
    let mut tags: Vec<String> = value["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags array in {value:#}"))
        .iter()
        .map(|tag| {
            tag.as_str()
                .unwrap_or_else(|| panic!("a tag that is not a string in {value:#}"))
                .to_owned()
        })
        .collect();
    tags.sort();
    tags
}

#[test]
fn a_signed_branch_push_builds_and_pushes_the_image() {
    let fx = Fixture::new("happy-path");
    let app = fx.sample_app();
    let commit = fx.repo.commit("Add the app", &app.files);
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let health = slipway.get("/healthz");
    assert!(
        health.json().is_object(),
        "GET /healthz answers JSON: {health:#?}"
    );

    let answer = fx.deliver_push(&slipway, &fx.push_payload("refs/heads/main", ZERO_ID));
    answer.assert_status(202);
    let build_id = answer.single_build_id();
    let queued = &answer.builds()[0];
    assert_eq!(tags(queued), ["latest"], "the rule's tags: {answer:#?}");
    assert_eq!(queued["ref"], "refs/heads/main", "{answer:#?}");
    assert_eq!(queued["commit"], commit.as_str(), "{answer:#?}");

    let build = slipway.wait_for_success(&build_id);
    assert_eq!(build["id"], build_id.as_str());
    assert_eq!(build["repository"], fx.name());
    assert_eq!(build["ref"], "refs/heads/main");
    assert_eq!(build["commit"], commit.as_str());
    assert_eq!(tags(&build), ["latest"]);
    for timestamp in ["queued_at", "started_at", "finished_at"] {
        assert!(
            build[timestamp].is_string(),
            "a finished build has {timestamp}: {build:#}"
        );
    }
    let log = slipway.get(&format!("/api/builds/{build_id}/log"));
    log.assert_status(200);
    assert!(
        log.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/plain")),
        "{log:#?}"
    );
    assert!(!log.text.trim().is_empty(), "a successful build has a log");

    // Slipway cloned from the git server as the configured user, not anonymously.
    assert!(
        fx.git
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some(GIT_USER)
                && r.path.ends_with("/git-upload-pack")
                && r.status == 200),
        "no authenticated fetch reached the git server: {:#?}",
        fx.git.requests()
    );

    // The registry holds the tag, with the digest the API reports.
    let digest = build["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("a succeeded build has a digest: {build:#}"));
    let pushed = fx.registry().manifest_digest(fx.name(), "latest");
    assert_eq!(
        pushed.as_deref(),
        Some(digest),
        "the registry's latest is the build's digest"
    );

    // What the registry holds is the image the Dockerfile describes.
    let docker = fx.docker();
    let image = format!("{}@{digest}", fx.image());
    docker.pull(&image);
    assert_eq!(docker.run_image(&image), app.expected_output);
    let labels = docker.labels(&image);
    assert_eq!(labels.get(REVISION), Some(&commit), "labels: {labels:#?}");
    let source = labels
        .get(SOURCE)
        .unwrap_or_else(|| panic!("no {SOURCE} label: {labels:#?}"));
    assert_eq!(
        source,
        fx.repo.url(),
        "the source label is the git URL without credentials"
    );
    assert!(
        !source.contains(fx.git.password()) && !source.contains('@'),
        "credentials leaked into {source}"
    );
    let created = labels
        .get(CREATED)
        .unwrap_or_else(|| panic!("no {CREATED} label: {labels:#?}"));
    assert!(
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{CREATED} is not an RFC 3339 time: {created}"
    );
}

/// GitHub reports an annotated tag push with the tag object's id in `after`; the build has to
/// peel it to the commit. Every tag the rule renders points at the same image. This test also
/// runs Slipway on PostgreSQL instead of its default database.
#[test]
fn an_annotated_tag_push_builds_every_tag_of_a_regex_rule() {
    let fx = Fixture::new("tag-rule");
    let app = fx.sample_app();
    fx.repo.commit("Add the app", &app.files);
    let tag = fx.repo.tag_annotated("v1.2.3", "main", "Release 1.2.3");
    let database = TestDatabase::create(&fx.rig.postgres_url, "tag_rule");
    let config = fx.config(vec![Rule::tag("/^v([0-9.]+)$/", "{\\1},latest")]);
    let slipway = fx.slipway(&config).database_url(database.url()).start();

    let payload = fx.push_payload("refs/tags/v1.2.3", ZERO_ID);
    let sent: Value = serde_json::from_str(&payload).expect("the payload is JSON");
    assert_eq!(
        sent["after"],
        tag.tag_object.as_str(),
        "the payload carries the tag object, as GitHub's does"
    );
    let answer = fx.deliver_push(&slipway, &payload);
    answer.assert_status(202);
    let build_id = answer.single_build_id();
    assert_eq!(
        tags(&answer.builds()[0]),
        ["1.2.3", "latest"],
        "{answer:#?}"
    );

    let build = slipway.wait_for_success(&build_id);
    assert_eq!(tags(&build), ["1.2.3", "latest"]);
    let digest = build["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("a succeeded build has a digest: {build:#}"));
    let registry = fx.registry();
    assert_eq!(
        registry.manifest_digest(fx.name(), "1.2.3").as_deref(),
        Some(digest),
        "tag 1.2.3"
    );
    assert_eq!(
        registry.manifest_digest(fx.name(), "latest").as_deref(),
        Some(digest),
        "tag latest"
    );

    let docker = fx.docker();
    let image = format!("{}@{digest}", fx.image());
    docker.pull(&image);
    assert_eq!(
        docker.label(&image, REVISION).as_deref(),
        Some(tag.commit.as_str()),
        "the revision is the commit the tag object points at, not the tag object {}",
        tag.tag_object
    );
    assert_eq!(docker.run_image(&image), app.expected_output);
}
