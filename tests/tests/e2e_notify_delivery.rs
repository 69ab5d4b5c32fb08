//! How the notifier delivers, end to end against the real binary: the send-time address check
//! with name resolution and pinning, timeouts, retries and giving up, which answers are final,
//! per-hook event filtering, every build event, statuses of an API-managed repository, and that
//! no token or hook secret ever shows. The receivers and forge APIs are loopback fakes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slipway_e2e::{
    FakeAnswer, FakeForge, Fixture, GIT_USER, RepoFile, Rule, Slipway, WebhookReceiver, ZERO_ID,
};

const STATUS_TOKEN_ENV: &str = "E2E_STATUS_TOKEN";
const STATUS_TOKEN: &str = "status-token-never-shown-4d1c9e";
const HOOK_SECRET: &str = "outgoing-hook-secret-never-shown-77a1";
/// Long enough for a delivery and its retries (the first after 1 s, the next after 6 s).
const NOTIFY_WAIT: Duration = Duration::from_secs(90);
/// Every event a hook can subscribe to.
const ALL_EVENTS: [&str; 6] = [
    "build_queued",
    "build_started",
    "build_succeeded",
    "build_failed",
    "build_cancelled",
    "image_pushed",
];

fn add_hook(slipway: &Slipway, repository: &str, url: &str, events: &[&str]) -> Value {
    let response = slipway
        .request(
            reqwest::Method::POST,
            &format!("/api/repositories/{repository}/webhooks"),
        )
        .bearer_auth(slipway.admin_token())
        .json(&json!({"url": url, "events": events, "secret": HOOK_SECRET}))
        .send()
        .expect("POST webhooks");
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(status, 201, "the hook is added: {body:#}");
    body
}

/// The hook's delivery history, newest first.
fn deliveries(slipway: &Slipway, repository: &str, hook: &Value) -> Vec<Value> {
    let id = hook["id"].as_str().expect("a hook id");
    slipway
        .get(&format!(
            "/api/repositories/{repository}/webhooks/{id}/deliveries"
        ))
        .json()["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Polls `probe` until it returns something, failing with `what` after [`NOTIFY_WAIT`].
#[track_caller]
fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + NOTIFY_WAIT;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} within {NOTIFY_WAIT:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The notifications of a build that are finished (neither pending nor superseded), once there
/// are `count` of `kind`.
fn finished_notifications(slipway: &Slipway, id: &str, kind: &str, count: usize) -> Vec<Value> {
    wait_until(
        &format!("{count} finished {kind} notifications of {id}"),
        || {
            let build = slipway.build(id);
            let finished: Vec<Value> = build["notifications"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| {
                    n["kind"] == kind && (n["state"] == "delivered" || n["state"] == "failed")
                })
                .cloned()
                .collect();
            (finished.len() >= count).then_some(finished)
        },
    )
}

/// A hook addressed by name (`localhost`) is resolved at send time, every address checked, and
/// the connection pinned to the checked addresses, tried in turn (the receiver listens on
/// 127.0.0.1 only, and `localhost` may resolve to ::1 first): it is delivered.
#[test]
fn a_hook_at_a_name_is_resolved_checked_and_delivered() {
    let fx = Fixture::new("hooks-localhost");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    let slipway = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .arg("--allow-private-webhook-targets")
        .arg("true")
        .start();
    let url = format!("http://localhost:{}/deploy", receiver.server().port());
    add_hook(&slipway, fx.name(), &url, &["build_queued"]);
    let id = fx.push_main(&slipway);
    let queued = receiver.wait_for("build_queued", 1, NOTIFY_WAIT);
    assert!(queued[0].signature_valid, "{queued:#?}");
    assert_eq!(queued[0].request.path, "/deploy");
    assert_eq!(queued[0].body["build"]["id"], id.as_str());
    assert_eq!(
        queued[0].request.header("host"),
        Some(format!("localhost:{}", receiver.server().port()).as_str()),
        "the request names the host it was addressed to"
    );
    let delivered = finished_notifications(&slipway, &id, "webhook", 1);
    assert_eq!(delivered[0]["state"], "delivered", "{delivered:#?}");
}

/// A hook stored while private targets were allowed is checked again at every send: after a
/// restart without the allowance, its delivery is refused (once, without retries), nothing
/// reaches the receiver, and the notification says why.
#[test]
fn a_stored_hook_is_checked_again_at_send_time() {
    let fx = Fixture::new("hooks-recheck");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    let data = tempfile::tempdir().expect("a data directory");
    let config = fx.config(vec![Rule::branch("main", "latest")]);
    let before = fx
        .slipway(&config)
        .data_dir(data.path())
        .arg("--allow-private-webhook-targets")
        .arg("true")
        .start();
    add_hook(&before, fx.name(), &receiver.url("/deploy"), &ALL_EVENTS);
    before.terminate();
    assert!(
        before.wait_for_exit(Duration::from_secs(30)).is_some(),
        "the first process shut down"
    );
    drop(before);

    let after = fx.slipway(&config).data_dir(data.path()).start();
    let id = fx.push_main(&after);
    after.wait_for_success(&id);
    let refused = finished_notifications(&after, &id, "webhook", 4);
    for notification in &refused {
        assert_eq!(notification["state"], "failed", "{notification:#}");
        assert_eq!(
            notification["attempts"], 1,
            "refused without retries: {notification:#}"
        );
        let error = notification["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("target refused") && error.contains("127.0.0.1"),
            "the notification says why: {notification:#}"
        );
    }
    assert!(
        receiver.deliveries().is_empty(),
        "nothing reached the receiver: {:#?}",
        receiver.deliveries()
    );
}

/// A receiver that does not answer within `notification_timeout_seconds` counts as a failed
/// attempt, and the same delivery is tried again and delivered.
#[test]
fn a_timed_out_delivery_is_retried() {
    let fx = Fixture::new("hooks-timeout");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    receiver.server().answer_next_with(
        "/",
        &[FakeAnswer::status(200).with_delay(Duration::from_secs(8))],
    );
    let slipway = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .arg("--allow-private-webhook-targets")
        .arg("true")
        .arg("--notification-retry-seconds")
        .arg("1")
        .arg("--notification-timeout-seconds")
        .arg("2")
        .start();
    let hook = add_hook(
        &slipway,
        fx.name(),
        &receiver.url("/deploy"),
        &["build_queued"],
    );
    fx.push_main(&slipway);
    let delivered = wait_until("the queued event delivered after a timeout", || {
        deliveries(&slipway, fx.name(), &hook)
            .into_iter()
            .find(|d| d["state"] == "delivered")
    });
    let history = delivered["history"].as_array().cloned().unwrap_or_default();
    assert_eq!(history.len(), 2, "{delivered:#}");
    assert!(
        history[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer within 2 s")),
        "the first attempt timed out: {delivered:#}"
    );
    assert_eq!(history[0]["status_code"], Value::Null, "{delivered:#}");
    assert_eq!(history[1]["status_code"], 200, "{delivered:#}");
    let received = receiver.wait_for("build_queued", 2, NOTIFY_WAIT);
    assert_eq!(
        received[0].delivery_id, received[1].delivery_id,
        "a retry is the same delivery"
    );
}

/// What ends a notification: a forge refusing a status with a 4xx is final (a person must fix
/// the token or path), a receiver's 4xx is retried like any failure, and after
/// `notification_max_attempts` failures a notification is given up as failed.
#[test]
fn four_hundreds_end_statuses_and_attempts_run_out() {
    let fx = Fixture::new("notify-final");
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let forge = FakeForge::start_with_default(
        FakeAnswer::status(422).with_body(r#"{"message":"No commit found for SHA"}"#),
    );
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    receiver.server().answer_next("/flaky", &[404]);
    receiver
        .server()
        .answer_next("/down", &[500, 500, 500, 500]);
    let mut config = fx.config(vec![Rule::branch("main", "latest")]);
    config.repositories[0].report_status = true;
    config.repositories[0].status_api_url = Some(forge.base_url());
    config.repositories[0].status_token_env = Some(STATUS_TOKEN_ENV.to_owned());
    let slipway = fx
        .slipway(&config)
        .env(STATUS_TOKEN_ENV, STATUS_TOKEN)
        .arg("--allow-private-webhook-targets")
        .arg("true")
        .arg("--notification-retry-seconds")
        .arg("1")
        .arg("--notification-max-attempts")
        .arg("2")
        .start();
    let flaky = add_hook(
        &slipway,
        fx.name(),
        &receiver.url("/flaky"),
        &["build_succeeded"],
    );
    let down = add_hook(
        &slipway,
        fx.name(),
        &receiver.url("/down"),
        &["build_succeeded"],
    );
    let id = fx.push_main(&slipway);
    slipway.wait_for_success(&id);

    // The last status (success) cannot be superseded, so it was sent, refused and ended.
    let statuses: Vec<Value> = wait_until("the success status ended", || {
        let build = slipway.build(&id);
        let statuses: Vec<Value> = build["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["kind"] == "status")
            .cloned()
            .collect();
        statuses
            .iter()
            .any(|n| n["event"] == "succeeded" && n["state"] != "pending")
            .then_some(statuses)
    });
    let succeeded = statuses
        .iter()
        .find(|n| n["event"] == "succeeded")
        .unwrap_or_else(|| panic!("the success status ended: {statuses:#?}"));
    assert_eq!(succeeded["state"], "failed", "{succeeded:#}");
    assert_eq!(succeeded["attempts"], 1, "a 422 is final: {succeeded:#}");
    assert_eq!(succeeded["last_status_code"], 422, "{succeeded:#}");
    assert!(
        succeeded["history"][0]["response_excerpt"]
            .as_str()
            .is_some_and(|e| e.contains("No commit found")),
        "the forge's answer is kept: {succeeded:#}"
    );
    for status in &statuses {
        assert!(status["attempts"].as_i64() <= Some(1), "{status:#}");
    }

    let flaky = wait_until("the flaky receiver's delivery", || {
        deliveries(&slipway, fx.name(), &flaky)
            .into_iter()
            .find(|d| d["state"] != "pending")
    });
    assert_eq!(
        flaky["state"], "delivered",
        "a receiver's 404 is retried: {flaky:#}"
    );
    let codes: Vec<Value> = flaky["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(404), json!(200)], "{flaky:#}");

    let down = wait_until("the failing receiver given up", || {
        deliveries(&slipway, fx.name(), &down)
            .into_iter()
            .find(|d| d["state"] != "pending")
    });
    assert_eq!(down["state"], "failed", "{down:#}");
    assert_eq!(down["attempts"], 2, "notification_max_attempts: {down:#}");
    assert_eq!(down["next_attempt_at"], Value::Null, "{down:#}");
    assert_eq!(
        receiver.server().requests_to("/down").len(),
        2,
        "and no third try"
    );
}

/// Each hook gets exactly the events it subscribed to: one subscribed to everything sees a
/// failed, a cancelled and a succeeded build queued, started and ended (and the image pushed),
/// each body describing that moment; one subscribed to `build_succeeded` only gets that.
#[test]
fn hooks_get_every_build_event_they_subscribed_to_and_nothing_else() {
    let fx = Fixture::new("hooks-events");
    let base = &fx.rig.base_image;
    fx.repo.commit("Add the app", &fx.sample_app().files);
    fx.repo.commit_on(
        "broken",
        "A broken build",
        &[RepoFile::text(
            "Dockerfile",
            &format!("FROM {base}\nRUN echo {} && false\n", fx.name()),
        )],
    );
    fx.repo.commit_on(
        "slow",
        "A slow build",
        &[RepoFile::text(
            "Dockerfile",
            &format!("FROM {base}\nRUN echo {} && sleep 30\n", fx.name()),
        )],
    );
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    let slipway = fx
        .slipway(&fx.config(vec![Rule::branch("/.*/", "{sourceref}")]))
        .arg("--allow-private-webhook-targets")
        .arg("true")
        .start();
    add_hook(&slipway, fx.name(), &receiver.url("/all"), &ALL_EVENTS);
    add_hook(
        &slipway,
        fx.name(),
        &receiver.url("/succeeded-only"),
        &["build_succeeded"],
    );
    let push = |branch: &str| {
        let answer = fx.deliver_push(
            &slipway,
            &fx.push_payload(&format!("refs/heads/{branch}"), ZERO_ID),
        );
        answer.assert_status(202);
        answer.single_build_id()
    };
    let broken = push("broken");
    slipway.wait_for_end(&broken, "failed", slipway_e2e::BUILD_TIMEOUT);
    let slow = push("slow");
    slipway.wait_for_status(&slow, "running", slipway_e2e::BUILD_TIMEOUT);
    slipway.post_empty(&format!("/api/builds/{slow}/cancel"));
    slipway.wait_for_end(&slow, "cancelled", slipway_e2e::BUILD_TIMEOUT);
    let good = push("main");
    slipway.wait_for_success(&good);

    let expected: [(&str, &str, &str); 10] = [
        (&broken, "build_queued", "queued"),
        (&broken, "build_started", "running"),
        (&broken, "build_failed", "failed"),
        (&slow, "build_queued", "queued"),
        (&slow, "build_started", "running"),
        (&slow, "build_cancelled", "cancelled"),
        (&good, "build_queued", "queued"),
        (&good, "build_started", "running"),
        (&good, "build_succeeded", "succeeded"),
        (&good, "image_pushed", "succeeded"),
    ];
    let all = wait_until("every event at the all-events hook", || {
        let got: Vec<_> = receiver
            .deliveries()
            .into_iter()
            .filter(|h| h.request.path == "/all")
            .collect();
        (got.len() >= expected.len()).then_some(got)
    });
    assert_eq!(all.len(), expected.len(), "each event once: {all:#?}");
    for (build, event, status) in expected {
        let hook = all
            .iter()
            .find(|h| {
                h.event == event
                    && (h.body["build"]["id"] == build || h.body["slipway"]["build_id"] == build)
            })
            .unwrap_or_else(|| panic!("no {event} for {build}: {all:#?}"));
        assert!(hook.signature_valid, "{hook:#?}");
        if event == "image_pushed" {
            assert_eq!(hook.body["push_data"]["tag"], "main", "{hook:#?}");
        } else {
            assert_eq!(hook.body["event"], event, "{hook:#?}");
            assert_eq!(
                hook.body["build"]["status"], status,
                "the moment it announces: {hook:#?}"
            );
        }
    }
    let only = receiver.wait_for("build_succeeded", 2, NOTIFY_WAIT);
    let only: Vec<_> = only
        .into_iter()
        .filter(|h| h.request.path == "/succeeded-only")
        .collect();
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0].body["build"]["id"], good.as_str());
    let everything_there: Vec<String> = receiver
        .deliveries()
        .into_iter()
        .filter(|h| h.request.path == "/succeeded-only")
        .map(|h| h.event)
        .collect();
    assert_eq!(everything_there, ["build_succeeded"], "nothing else");
}

/// A repository managed through the API posts its statuses with its stored token; and neither
/// that token nor a hook's secret shows anywhere: not in Slipway's log (which records the
/// failed attempts), the build's JSON, the repository's, or the hook's delivery history.
#[test]
fn api_managed_statuses_use_the_stored_token_and_no_secret_shows() {
    let fx = Fixture::new("status-api-repo");
    let commit = fx.repo.commit("Add the app", &fx.sample_app().files);
    let forge = FakeForge::start();
    forge.answer_next("/", &[500]);
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    receiver.fail_next(1);
    let mut config = fx.config(Vec::new());
    config.repositories.clear();
    let slipway = fx
        .slipway(&config)
        .arg("--allow-private-webhook-targets")
        .arg("true")
        .arg("--notification-retry-seconds")
        .arg("1")
        .start();
    let created = slipway
        .request(reqwest::Method::POST, "/api/repositories")
        .bearer_auth(slipway.admin_token())
        .json(&json!({
            "name": fx.name(),
            "provider": "github",
            "git_url": fx.repo.url(),
            "git_username": GIT_USER,
            "git_password": fx.git.password(),
            "webhook_secret": fx.webhook_secret,
            "image": fx.image(),
            "rules": [{"source_type": "branch", "source": "main", "tags": "latest"}],
            "report_status": true,
            "status_api_url": forge.base_url(),
            "status_token": STATUS_TOKEN,
        }))
        .send()
        .expect("POST /api/repositories");
    assert_eq!(created.status().as_u16(), 201, "{:?}", created.text());
    let hook = add_hook(&slipway, fx.name(), &receiver.url("/deploy"), &ALL_EVENTS);
    let id = fx.push_main(&slipway);
    slipway.wait_for_success(&id);

    let path = format!("/repos/{}/statuses/{commit}", fx.name());
    let requests = wait_until("the success status", || {
        let requests = forge.requests_to(&path);
        requests
            .iter()
            .any(|r| r.json()["state"] == "success" && r.status == 201)
            .then_some(requests)
    });
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {STATUS_TOKEN}").as_str()),
            "{request:#?}"
        );
    }
    assert_eq!(
        requests[0].status, 500,
        "one attempt failed first: {requests:#?}"
    );
    wait_until("the hook's deliveries finished", || {
        let history = deliveries(&slipway, fx.name(), &hook);
        (history.len() >= 4 && history.iter().all(|d| d["state"] == "delivered")).then_some(())
    });

    let shown = [
        slipway.stderr(),
        slipway.stdout(),
        slipway.get(&format!("/api/builds/{id}")).text,
        slipway
            .get(&format!("/api/repositories/{}", fx.name()))
            .text,
        slipway.get("/api/repositories").text,
        slipway
            .get(&format!("/api/repositories/{}/webhooks", fx.name()))
            .text,
        serde_json::to_string(&deliveries(&slipway, fx.name(), &hook)).unwrap_or_default(),
    ];
    assert!(
        shown[0].contains("a notification was not delivered"),
        "the failed attempts are logged: {}",
        shown[0]
    );
    for text in &shown {
        for secret in [STATUS_TOKEN, HOOK_SECRET, fx.git.password()] {
            assert!(!text.contains(secret), "a secret shows: {text}");
        }
    }
}
