//! Issue 7's acceptance: commit statuses on all five forges and signed outgoing webhooks, after
//! real builds and pushes. The forges' status APIs are stateful fakes on loopback (the only
//! fakes: they stand for SaaS APIs); the engine, registry, git server and database are real.

use std::time::Duration;

use serde_json::{Value, json};
use slipway_e2e::{
    ExampleEvent, FakeForge, Fixture, Forge, RepoFile, Rule, Slipway, WebhookReceiver, ZERO_ID,
    hmac_sha256_hex,
};

const STATUS_TOKEN_ENV: &str = "E2E_STATUS_TOKEN";
const STATUS_TOKEN: &str = "status-token-for-the-fake-forge";
const HOOK_SECRET: &str = "outgoing-hook-secret-0123456789";
/// Long enough for a status post and its retries (the first after 1 s, the next after 6 s).
const NOTIFY_WAIT: Duration = Duration::from_secs(60);

/// Which forge a fixture speaks as: GitHub, or one of the others.
#[derive(Debug, Clone, Copy)]
enum Speaks {
    Github,
    Other(Forge),
}

/// Slipway serving `fx` as a `speaks` repository that reports commit statuses to `forge`'s
/// API, retrying after 1 s (then 6 s, …).
fn start(fx: &Fixture, speaks: Speaks, forge: &FakeForge, rules: Vec<Rule>) -> Slipway {
    let mut config = match speaks {
        Speaks::Github => fx.config(rules),
        Speaks::Other(other) => fx.forge_config(other, rules),
    };
    let repository = &mut config.repositories[0];
    repository.report_status = true;
    repository.status_api_url = Some(forge.base_url());
    repository.status_token_env = Some(STATUS_TOKEN_ENV.to_owned());
    // The fake forge listens on loopback, which status APIs (like webhook targets) may reach
    // only when the operator allows it.
    fx.slipway(&config)
        .env(STATUS_TOKEN_ENV, STATUS_TOKEN)
        .arg("--allow-private-webhook-targets")
        .arg("true")
        .arg("--notification-retry-seconds")
        .arg("1")
        .start()
}

/// Delivers the push that created `main`, as `speaks` sends it; returns the one build's id.
fn push_main(fx: &Fixture, slipway: &Slipway, speaks: Speaks) -> String {
    let answer = match speaks {
        Speaks::Github => fx.deliver_main(slipway, ZERO_ID),
        Speaks::Other(forge) => {
            let body = forge.push_payload(fx.name(), &[fx.ref_update("refs/heads/main", ZERO_ID)]);
            fx.deliver_as(slipway, forge, ExampleEvent::BranchPush, &body)
        }
    };
    answer.assert_status(202);
    answer.single_build_id()
}

/// The path a forge's status API is posted to for `commit` of `fx`'s repository.
fn status_path(fx: &Fixture, speaks: Speaks, commit: &str) -> String {
    let name = fx.name();
    match speaks {
        Speaks::Github => format!("/repos/{name}/statuses/{commit}"),
        Speaks::Other(Forge::Bitbucket) => {
            format!("/2.0/repositories/{name}/commit/{commit}/statuses/build")
        }
        Speaks::Other(Forge::BitbucketServer) => {
            // The repository is `PROJ/slug` on Data Center: here the fixture's owner and name.
            let (project, slug) = name.split_once('/').unwrap_or((name, ""));
            format!("/rest/api/latest/projects/{project}/repos/{slug}/commits/{commit}/builds")
        }
        Speaks::Other(Forge::Gitlab) => {
            format!(
                "/api/v4/projects/{}/statuses/{commit}",
                name.replace('/', "%2F")
            )
        }
        Speaks::Other(Forge::Gitea | Forge::Forgejo) => {
            format!("/api/v1/repos/{name}/statuses/{commit}")
        }
    }
}

/// The state a status request reports, whatever the forge calls the field.
fn reported_state(body: &Value) -> String {
    body["state"].as_str().unwrap_or_default().to_owned()
}

/// What the forge calls success and "not finished yet".
fn success_word(speaks: Speaks) -> &'static str {
    match speaks {
        Speaks::Other(Forge::Bitbucket | Forge::BitbucketServer) => "SUCCESSFUL",
        _ => "success",
    }
}

fn in_progress_words(speaks: Speaks) -> &'static [&'static str] {
    match speaks {
        Speaks::Other(Forge::Bitbucket | Forge::BitbucketServer) => &["INPROGRESS"],
        Speaks::Other(Forge::Gitlab) => &["pending", "running"],
        _ => &["pending"],
    }
}

/// The token where each forge expects it.
fn carries_token(speaks: Speaks, request: &slipway_e2e::RecordedRequest) -> bool {
    match speaks {
        Speaks::Other(Forge::Gitlab) => request.header("private-token") == Some(STATUS_TOKEN),
        Speaks::Other(Forge::Gitea | Forge::Forgejo) => {
            request.header("authorization") == Some(&format!("token {STATUS_TOKEN}"))
        }
        _ => request.header("authorization") == Some(&format!("Bearer {STATUS_TOKEN}")),
    }
}

/// A successful build posts an in-progress status, then success, to the right URL, with the
/// build page as its link and `slipway/<rule>` as its context (Bitbucket: key and name; Data
/// Center also the ref).
fn statuses_follow_a_successful_build(speaks: Speaks, label: &str) {
    let fx = Fixture::new(label);
    let commit = fx.repo.commit("Add the app", &fx.sample_app().files);
    let forge = FakeForge::start();
    let slipway = start(&fx, speaks, &forge, vec![Rule::branch("main", "latest")]);
    let id = push_main(&fx, &slipway, speaks);
    slipway.wait_for_success(&id);

    let path = status_path(&fx, speaks, &commit);
    let requests = wait_for_state(&forge, &path, success_word(speaks));
    let first = requests
        .first()
        .map(|r| reported_state(&r.json()))
        .unwrap_or_default();
    assert!(
        in_progress_words(speaks).contains(&first.as_str()),
        "the first status says the build is under way, not {first:?}: {requests:#?}"
    );
    for request in &requests {
        assert_eq!(request.method, "POST", "{request:#?}");
        assert!(
            carries_token(speaks, request),
            "the token is where the forge wants it: {request:#?}"
        );
        let body = request.json();
        let link = body["target_url"]
            .as_str()
            .or(body["url"].as_str())
            .unwrap_or_default();
        assert!(
            link.ends_with(&format!("/builds/{id}")),
            "the status links the build page: {body}"
        );
        match speaks {
            Speaks::Other(Forge::Bitbucket | Forge::BitbucketServer) => {
                // Bitbucket replaces a status by its key, so the key is what must be stable.
                assert_eq!(body["key"], "slipway/latest", "{body}");
                assert_eq!(body["name"], "slipway/latest", "{body}");
                assert!(body.get("context").is_none(), "{body}");
            }
            Speaks::Other(Forge::Gitlab) => assert_eq!(body["name"], "slipway/latest", "{body}"),
            _ => assert_eq!(body["context"], "slipway/latest", "{body}"),
        }
        if let Speaks::Other(Forge::BitbucketServer) = speaks {
            assert_eq!(body["ref"], "refs/heads/main", "{body}");
        }
    }
    let build = slipway.build(&id);
    let notifications = build["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        notifications.iter().any(|n| n["kind"] == "status"
            && n["event"] == "succeeded"
            && n["state"] == "delivered"),
        "the build shows its last status post: {build:#}"
    );
}

/// Waits until a status with `state` reached `path`; returns every request to it.
fn wait_for_state(forge: &FakeForge, path: &str, state: &str) -> Vec<slipway_e2e::RecordedRequest> {
    let deadline = std::time::Instant::now() + NOTIFY_WAIT;
    loop {
        let requests = forge.requests_to(path);
        if requests
            .iter()
            .any(|r| reported_state(&r.json()) == state && (200..300).contains(&r.status))
        {
            return requests;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {state} status reached {path} within {NOTIFY_WAIT:?}; requests: {:#?}",
            forge.requests()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn github_statuses_follow_a_successful_build() {
    statuses_follow_a_successful_build(Speaks::Github, "status-github");
}

#[test]
fn bitbucket_cloud_statuses_follow_a_successful_build() {
    statuses_follow_a_successful_build(Speaks::Other(Forge::Bitbucket), "status-bitbucket");
}

#[test]
fn bitbucket_data_center_statuses_follow_a_successful_build() {
    statuses_follow_a_successful_build(
        Speaks::Other(Forge::BitbucketServer),
        "status-bitbucket-dc",
    );
}

#[test]
fn gitlab_statuses_follow_a_successful_build() {
    statuses_follow_a_successful_build(Speaks::Other(Forge::Gitlab), "status-gitlab");
}

#[test]
fn gitea_statuses_follow_a_successful_build() {
    statuses_follow_a_successful_build(Speaks::Other(Forge::Gitea), "status-gitea");
}

/// A failed build posts failure; a cancelled one the forge's cancelled state (GitLab's
/// `canceled`, Bitbucket Cloud's `STOPPED`, Data Center's `CANCELLED`).
#[test]
fn failed_and_cancelled_builds_post_their_states() {
    let fx = Fixture::new("status-failed");
    let dockerfile = format!(
        "FROM {}\nRUN echo {} && false\n",
        fx.rig.base_image,
        fx.name()
    );
    let commit = fx.repo.commit(
        "A broken build",
        &[RepoFile::text("Dockerfile", &dockerfile)],
    );
    let forge = FakeForge::start();
    let slipway = start(
        &fx,
        Speaks::Github,
        &forge,
        vec![Rule::branch("main", "latest")],
    );
    let id = push_main(&fx, &slipway, Speaks::Github);
    slipway.wait_for_end(&id, "failed", slipway_e2e::BUILD_TIMEOUT);
    wait_for_state(
        &forge,
        &status_path(&fx, Speaks::Github, &commit),
        "failure",
    );

    let fx = Fixture::new("status-cancelled");
    let dockerfile = format!(
        "FROM {}\nRUN echo {} && sleep 30\n",
        fx.rig.base_image,
        fx.name()
    );
    let commit = fx
        .repo
        .commit("A slow build", &[RepoFile::text("Dockerfile", &dockerfile)]);
    let gitlab = Speaks::Other(Forge::Gitlab);
    let slipway = start(&fx, gitlab, &forge, vec![Rule::branch("main", "latest")]);
    let id = push_main(&fx, &slipway, gitlab);
    slipway.wait_for_status(&id, "running", slipway_e2e::BUILD_TIMEOUT);
    slipway.post_empty(&format!("/api/builds/{id}/cancel"));
    slipway.wait_for_end(&id, "cancelled", slipway_e2e::BUILD_TIMEOUT);
    wait_for_state(&forge, &status_path(&fx, gitlab, &commit), "canceled");

    for (forge_kind, label, word) in [
        (Forge::Bitbucket, "status-stopped", "STOPPED"),
        (Forge::BitbucketServer, "status-cancelled-dc", "CANCELLED"),
    ] {
        let fx = Fixture::new(label);
        let dockerfile = format!(
            "FROM {}\nRUN echo {} && sleep 30\n",
            fx.rig.base_image,
            fx.name()
        );
        let commit = fx
            .repo
            .commit("A slow build", &[RepoFile::text("Dockerfile", &dockerfile)]);
        let speaks = Speaks::Other(forge_kind);
        let slipway = start(&fx, speaks, &forge, vec![Rule::branch("main", "latest")]);
        let id = push_main(&fx, &slipway, speaks);
        slipway.wait_for_status(&id, "running", slipway_e2e::BUILD_TIMEOUT);
        slipway.post_empty(&format!("/api/builds/{id}/cancel"));
        slipway.wait_for_end(&id, "cancelled", slipway_e2e::BUILD_TIMEOUT);
        let requests = wait_for_state(&forge, &status_path(&fx, speaks, &commit), word);
        let last = requests.last().map(|r| r.json()).unwrap_or_default();
        assert_eq!(
            last["state"], word,
            "the last status is the cancellation: {requests:#?}"
        );
        assert_eq!(last["key"], "slipway/latest", "{last}");
    }
}

/// The context is the rule's, whatever a build of it rendered or how it was started: a named
/// rule reports as `slipway/<name>`, a rule whose tags name the ref and commit as
/// `slipway/rule-<n>`, and a trigger's builds of the same rules report under the same contexts
/// as the push's, so a forge can require them.
#[test]
fn every_build_of_a_rule_reports_under_the_rule_s_context() {
    let fx = Fixture::new("status-contexts");
    let commit = fx.repo.commit("Add the app", &fx.sample_app().files);
    let forge = FakeForge::start();
    let slipway = start(
        &fx,
        Speaks::Github,
        &forge,
        vec![
            Rule::branch("main", "latest").named("web"),
            Rule::branch("main", "{sourceref}-{commit_short}"),
        ],
    );
    let answer = fx.deliver_main(&slipway, ZERO_ID);
    answer.assert_status(202);
    let pushed = answer.build_ids();
    assert_eq!(pushed.len(), 2, "{answer:#?}");
    for id in &pushed {
        slipway.wait_for_success(id);
    }
    let path = status_path(&fx, Speaks::Github, &commit);
    // Each build's success is waited for before the next builds start: a newer status of the
    // same context rightly replaces an older one still unsent.
    wait_for_successes(&forge, &path, &pushed);
    let trigger = slipway.create_trigger(fx.name(), "ci");
    let fired = slipway.post(
        &trigger,
        r#"{"source_type": "Branch", "source_name": "main"}"#,
        false,
    );
    let triggered: Vec<String> = fired
        .trigger_entries()
        .iter()
        .filter_map(|entry| entry["build_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        triggered.len(),
        2,
        "the trigger built both rules again: {fired:#?}"
    );
    for id in &triggered {
        slipway.wait_for_success(id);
    }
    wait_for_successes(&forge, &path, &triggered);

    let expected = |build: &Value| {
        let tags = build["tags"].as_array().cloned().unwrap_or_default();
        if tags == [json!("latest")] {
            "slipway/web"
        } else {
            "slipway/rule-2"
        }
    };
    let requests = forge.requests_to(&path);
    for request in &requests {
        let body = request.json();
        let link = body["target_url"].as_str().unwrap_or_default();
        let id = link.rsplit('/').next().unwrap_or_default();
        let build = slipway.build(id);
        assert_eq!(body["context"], expected(&build), "{body} for {build:#}");
    }
    let contexts: std::collections::BTreeSet<String> = requests
        .iter()
        .filter_map(|r| r.json()["context"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        contexts.into_iter().collect::<Vec<_>>(),
        ["slipway/rule-2", "slipway/web"]
    );
}

/// Waits until a success status linking each of `builds` reached `path`.
fn wait_for_successes(forge: &FakeForge, path: &str, builds: &[String]) {
    let deadline = std::time::Instant::now() + NOTIFY_WAIT;
    loop {
        let requests = forge.requests_to(path);
        let arrived = builds.iter().all(|id| {
            requests.iter().any(|r| {
                let body = r.json();
                body["state"] == "success"
                    && body["target_url"]
                        .as_str()
                        .is_some_and(|url| url.ends_with(&format!("/builds/{id}")))
            })
        });
        if arrived {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every success of {builds:?} arrived: {requests:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The forge answering 500 twice is tried again until it accepts; the history shows it. The
/// build runs long enough (20 s) for the retries (after 1 s and 6 s) of its in-progress status
/// to happen before it ends, since a newer status rightly replaces an unsent older one.
#[test]
fn a_status_refused_twice_is_retried_to_success() {
    let fx = Fixture::new("status-retry");
    let dockerfile = format!(
        "FROM {}\nRUN echo {} && sleep 20\n",
        fx.rig.base_image,
        fx.name()
    );
    let commit = fx
        .repo
        .commit("A slow build", &[RepoFile::text("Dockerfile", &dockerfile)]);
    let forge = FakeForge::start();
    let path = status_path(&fx, Speaks::Github, &commit);
    forge.answer_next(&path, &[500, 500]);
    let slipway = start(
        &fx,
        Speaks::Github,
        &forge,
        vec![Rule::branch("main", "latest")],
    );
    let id = push_main(&fx, &slipway, Speaks::Github);
    slipway.wait_for_success(&id);
    let requests = wait_for_state(&forge, &path, "success");
    let answered: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(&answered[..2], &[500, 500], "{requests:#?}");
    let build = slipway.build(&id);
    let retried = build["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| {
            let codes: Vec<i64> = n["history"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|attempt| attempt["status_code"].as_i64())
                .collect();
            n["kind"] == "status"
                && n["state"] == "delivered"
                && codes.len() == 3
                && codes[..2] == [500, 500]
                && (200..300).contains(&codes[2])
        });
    assert!(
        retried,
        "a status delivered on its third attempt after two 500s: {build:#}"
    );
}

/// A forge that is down never changes a build's result; its statuses wait and go out once it
/// is back.
#[test]
fn a_forge_that_is_down_never_changes_the_build() {
    let fx = Fixture::new("status-down");
    let commit = fx.repo.commit("Add the app", &fx.sample_app().files);
    let mut forge = FakeForge::start();
    forge.stop();
    let slipway = start(
        &fx,
        Speaks::Github,
        &forge,
        vec![Rule::branch("main", "latest")],
    );
    let id = push_main(&fx, &slipway, Speaks::Github);
    let build = slipway.wait_for_success(&id);
    fx.assert_pushed(&build, "latest", &commit);
    // The failed attempts are on the build for people to see.
    let deadline = std::time::Instant::now() + NOTIFY_WAIT;
    loop {
        let build = slipway.build(&id);
        let failing = build["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["state"] == "pending" && n["attempts"].as_i64().is_some_and(|a| a >= 1));
        if failing {
            assert_eq!(build["status"], "succeeded");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed attempt is shown: {build:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    forge.restart();
    wait_for_state(
        &forge,
        &status_path(&fx, Speaks::Github, &commit),
        "success",
    );
}

fn add_hook(
    slipway: &Slipway,
    fx: &Fixture,
    url: &str,
    events: &[&str],
) -> slipway_e2e::HttpResponse {
    let response = slipway
        .request(
            reqwest::Method::POST,
            &format!("/api/repositories/{}/webhooks", fx.name()),
        )
        .bearer_auth(slipway.admin_token())
        .json(&json!({"url": url, "events": events, "secret": HOOK_SECRET}))
        .send()
        .expect("POST webhooks");
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    slipway_e2e::HttpResponse {
        status,
        content_type: None,
        headers: Vec::new(),
        text,
    }
}

/// After a real build and push, the receiver gets a signed `image_pushed` in Docker Hub's shape
/// with Slipway's fields, and a `build_succeeded`; a 500 is retried; redelivery sends it again.
#[test]
fn outgoing_webhooks_are_signed_docker_hub_shaped_retried_and_redeliverable() {
    let fx = Fixture::new("hooks-out");
    let commit = fx.repo.commit("Add the app", &fx.sample_app().files);
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    receiver.fail_next(1);
    let slipway = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .arg("--allow-private-webhook-targets")
        .arg("true")
        .arg("--notification-retry-seconds")
        .arg("1")
        .start();
    add_hook(
        &slipway,
        &fx,
        &receiver.url("/deploy"),
        &["image_pushed", "build_succeeded"],
    )
    .assert_status(201);
    let id = fx.push_main(&slipway);
    let build = slipway.wait_for_success(&id);
    let digest = build["digest"].as_str().expect("a digest").to_owned();

    let pushed = receiver.wait_for("image_pushed", 1, NOTIFY_WAIT);
    let hook = pushed
        .iter()
        .find(|h| h.request.status == 200)
        .unwrap_or(&pushed[0]);
    assert!(hook.signature_valid, "the signature verifies: {hook:#?}");
    assert_eq!(
        hook.request
            .header("x-slipway-signature-256")
            .map(str::to_owned),
        Some(format!(
            "sha256={}",
            hmac_sha256_hex(HOOK_SECRET, hook.raw.as_bytes())
        ))
    );
    assert!(
        hook.timestamp.parse::<i64>().is_ok() && !hook.delivery_id.is_empty(),
        "{hook:#?}"
    );
    let body = &hook.body;
    assert_eq!(body["push_data"]["tag"], "latest", "{body:#}");
    assert!(body["push_data"]["pushed_at"].is_i64(), "{body:#}");
    assert!(body["push_data"]["pusher"].is_string(), "{body:#}");
    let repo_name = fx
        .image()
        .split_once('/')
        .map(|(_, path)| path.to_owned())
        .unwrap_or_default();
    assert_eq!(
        body["repository"]["repo_name"],
        repo_name.as_str(),
        "{body:#}"
    );
    for key in ["name", "namespace", "owner", "repo_url", "status"] {
        assert!(
            body["repository"][key].is_string(),
            "repository.{key}: {body:#}"
        );
    }
    assert!(body["repository"]["is_private"].is_boolean(), "{body:#}");
    assert_eq!(body["slipway"]["digest"], digest.as_str(), "{body:#}");
    assert_eq!(body["slipway"]["commit"], commit.as_str(), "{body:#}");
    assert_eq!(body["slipway"]["ref"], "refs/heads/main", "{body:#}");
    assert_eq!(body["slipway"]["build_id"], id.as_str(), "{body:#}");
    assert!(
        body["slipway"]["build_url"]
            .as_str()
            .is_some_and(|url| url.ends_with(&format!("/builds/{id}"))),
        "{body:#}"
    );
    let succeeded = receiver.wait_for("build_succeeded", 1, NOTIFY_WAIT);
    assert!(
        succeeded.iter().all(|h| h.signature_valid),
        "{succeeded:#?}"
    );
    assert_eq!(succeeded[0].body["build"]["id"], id.as_str());

    // The first request was answered 500 and tried again: both are in the hook's history.
    let hooks = slipway
        .get(&format!("/api/repositories/{}/webhooks", fx.name()))
        .json();
    let hook_id = hooks["webhooks"][0]["id"]
        .as_str()
        .expect("hook id")
        .to_owned();
    let deadline = std::time::Instant::now() + NOTIFY_WAIT;
    let delivered = loop {
        let history = slipway
            .get(&format!(
                "/api/repositories/{}/webhooks/{hook_id}/deliveries",
                fx.name()
            ))
            .json();
        let deliveries = history["deliveries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let retried = deliveries.iter().find(|d| {
            d["state"] == "delivered"
                && d["history"].as_array().is_some_and(|attempts| {
                    attempts.len() >= 2 && attempts[0]["status_code"] == 500
                })
        });
        if let Some(retried) = retried {
            break retried.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no retried delivery in {history:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !serde_json::to_string(&hooks)
            .unwrap_or_default()
            .contains(HOOK_SECRET)
    );

    // Redelivery sends the same delivery again, with the same id and a fresh signature.
    let before = receiver.deliveries().len();
    let notification = delivered["id"].as_str().expect("id").to_owned();
    let again = slipway.post_empty(&format!("/api/notifications/{notification}/redeliver"));
    again.assert_status(202);
    let deadline = std::time::Instant::now() + NOTIFY_WAIT;
    while receiver.deliveries().len() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the redelivery never arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = receiver.deliveries().pop().expect("a delivery");
    assert!(last.signature_valid);
    let original = receiver.deliveries().into_iter().find(|h| {
        h.request.status == 200 && h.event == last.event && h.delivery_id == last.delivery_id
    });
    assert!(
        original.is_some(),
        "the redelivery carries the first delivery's id: {last:#?}"
    );
}

/// A forge status API on a private address is refused (and the build unaffected) unless the
/// operator allows it: a status URL must not become a way into the internal network.
#[test]
fn a_status_api_on_a_private_address_is_refused_unless_allowed() {
    let fx = Fixture::new("status-private");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let forge = FakeForge::start();
    let mut config = fx.config(vec![Rule::branch("main", "latest")]);
    config.repositories[0].report_status = true;
    config.repositories[0].status_api_url = Some(forge.base_url());
    config.repositories[0].status_token_env = Some(STATUS_TOKEN_ENV.to_owned());
    let slipway = fx
        .slipway(&config)
        .env(STATUS_TOKEN_ENV, STATUS_TOKEN)
        .start();
    let id = fx.push_main(&slipway);
    slipway.wait_for_success(&id);
    let deadline = std::time::Instant::now() + NOTIFY_WAIT;
    loop {
        let build = slipway.build(&id);
        let refused = build["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| {
                n["state"] == "failed"
                    && n["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("refused"))
            });
        if refused {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refused status in {build:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        forge.requests().is_empty(),
        "nothing reached the private address: {:#?}",
        forge.requests()
    );
}

/// A target on a private or loopback address is refused unless the operator allows it.
#[test]
fn a_private_target_is_refused_unless_allowed() {
    let fx = Fixture::new("hooks-private");
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "http://localhost:8080/",
    ] {
        let answer = add_hook(&slipway, &fx, url, &["build_succeeded"]);
        answer.assert_status(400);
        assert!(answer.text.contains("refused"), "{url}: {answer:#?}");
    }
}
