//! Issue 2's acceptance, the webhook's answers to deliveries it must refuse, ignore or
//! recognise as repeats. Each test has its own Slipway and repository, so each assertion holds
//! on its own.

use slipway_e2e::{Fixture, Rule, Slipway, ZERO_ID, new_delivery_id};

/// A repository with the sample app on `main`, served by a Slipway that builds every branch.
fn serve(label: &str) -> (Fixture, Slipway) {
    let fx = Fixture::new(label);
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let slipway = fx.start_slipway(vec![Rule::branch("/.*/", "{sourceref}")]);
    (fx, slipway)
}

/// A delivery whose signature is wrong is refused without a trace: the genuine delivery with
/// the same id is then accepted as new, and it is the only build.
#[test]
fn a_wrong_signature_is_refused_and_not_recorded() {
    let (fx, slipway) = serve("wrong-signature");
    let body = fx.push_payload("refs/heads/main", ZERO_ID);
    let delivery = new_delivery_id();

    let refused = slipway.post_hook(fx.name(), "push", &delivery, &body, Some("not-the-secret"));
    refused.assert_status(401);
    assert!(
        refused.builds().is_empty(),
        "a refused delivery queues nothing: {refused:#?}"
    );

    let accepted = slipway.post_hook(
        fx.name(),
        "push",
        &delivery,
        &body,
        Some(&fx.webhook_secret),
    );
    accepted.assert_status(202);
    let build_id = accepted.single_build_id();
    assert_eq!(
        slipway.build(&build_id)["commit"],
        accepted.builds()[0]["commit"]
    );

    // Asking again shows that exactly this one build belongs to the delivery.
    let repeated = slipway.post_hook(
        fx.name(),
        "push",
        &delivery,
        &body,
        Some(&fx.webhook_secret),
    );
    assert_eq!(
        repeated.json(),
        accepted.json(),
        "the repeat is answered from the stored delivery"
    );
}

#[test]
fn a_missing_signature_is_refused() {
    let (fx, slipway) = serve("missing-signature");
    let body = fx.push_payload("refs/heads/main", ZERO_ID);
    let refused = slipway.post_hook(fx.name(), "push", &new_delivery_id(), &body, None);
    refused.assert_status(401);
    assert!(refused.builds().is_empty(), "{refused:#?}");
}

#[test]
fn malformed_json_is_a_bad_request_even_when_signed() {
    let (fx, slipway) = serve("malformed-json");
    let body = r#"{"ref": "refs/heads/main", "after": "#;
    let refused = slipway.post_hook(
        fx.name(),
        "push",
        &new_delivery_id(),
        body,
        Some(&fx.webhook_secret),
    );
    refused.assert_status(400);
    assert!(refused.builds().is_empty(), "{refused:#?}");
}

/// GitHub caps payloads at 25 MB, so anything larger is refused, even when correctly signed.
#[test]
fn a_body_over_25_mb_is_too_large() {
    let (fx, slipway) = serve("oversized-body");
    let padding = "a".repeat(26 * 1024 * 1024);
    let body = format!(r#"{{"ref": "refs/heads/main", "padding": "{padding}"}}"#);
    let refused = slipway.post_hook(
        fx.name(),
        "push",
        &new_delivery_id(),
        &body,
        Some(&fx.webhook_secret),
    );
    refused.assert_status(413);
}

#[test]
fn an_unknown_repository_is_not_found() {
    let (fx, slipway) = serve("unknown-repository");
    let body = fx.push_payload("refs/heads/main", ZERO_ID);
    let unknown = format!("{}-nope", fx.name());
    let answer = slipway.post_hook(
        &unknown,
        "push",
        &new_delivery_id(),
        &body,
        Some(&fx.webhook_secret),
    );
    answer.assert_status(404);
}

/// GitHub redelivers with the same X-GitHub-Delivery; that must not build twice.
#[test]
fn a_repeated_delivery_gets_the_same_answer_and_no_second_build() {
    let (fx, slipway) = serve("duplicate-delivery");
    let body = fx.push_payload("refs/heads/main", ZERO_ID);
    let delivery = new_delivery_id();

    let first = slipway.post_hook(
        fx.name(),
        "push",
        &delivery,
        &body,
        Some(&fx.webhook_secret),
    );
    first.assert_status(202);
    let build_id = first.single_build_id();
    let second = slipway.post_hook(
        fx.name(),
        "push",
        &delivery,
        &body,
        Some(&fx.webhook_secret),
    );
    second.assert_status(202);
    assert_eq!(
        second.json(),
        first.json(),
        "a redelivery is answered exactly as the first delivery"
    );
    assert_eq!(second.single_build_id(), build_id);
}

/// Deleting a branch that a rule matches is acknowledged and ignored: there is nothing to
/// build.
#[test]
fn a_branch_deletion_is_ignored() {
    let (fx, slipway) = serve("branch-deletion");
    let feature = fx.repo.commit_on("feature", "Work in progress", &[]);
    fx.repo.delete_branch("feature");

    let answer = fx.deliver_push(
        &slipway,
        &fx.deletion_payload("refs/heads/feature", &feature),
    );
    answer.assert_status(202);
    let json = answer.json();
    assert!(
        json["ignored"]
            .as_str()
            .is_some_and(|reason| !reason.is_empty()),
        "a deletion says why it was ignored: {answer:#?}"
    );
    assert!(
        answer.builds().is_empty(),
        "a deletion builds nothing: {answer:#?}"
    );
}

#[test]
fn a_ping_is_answered() {
    let (fx, slipway) = serve("ping");
    let body = serde_json::json!({
        "zen": "Keep it logically awesome.",
        "hook_id": 12_345_678,
        "hook": {"type": "Repository", "id": 12_345_678, "active": true, "events": ["push"],
                 "config": {"content_type": "json", "insecure_ssl": "0", "url": slipway.url("/hooks/x")}},
        "repository": {"full_name": fx.name()},
        "sender": {"login": "octocat"}
    })
    .to_string();
    let answer = slipway.post_hook(
        fx.name(),
        "ping",
        &new_delivery_id(),
        &body,
        Some(&fx.webhook_secret),
    );
    answer.assert_status(200);
    assert!(answer.builds().is_empty(), "{answer:#?}");
}
