//! Failure and recovery end to end: workers killed or stopped mid-build, the HTTP process
//! killed while deliveries arrive, the engine, a registry and the database going away and
//! coming back, cancels and timeouts, many workers sharing one queue, and incremental fetches.
//!
//! Nothing shared is ever disturbed: a test that needs an engine, registry or database to go
//! away gets a private one ([`DockerProxy`], [`RegistryServer`], [`PostgresCluster`]), and the
//! only processes it kills are the Slipway processes it started.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use slipway_e2e::{
    BUILD_TIMEOUT, DockerProxy, Fixture, HttpResponse, PostgresCluster, REVISION_LABEL,
    RegistryServer, RepoFile, Rule, Slipway, SlipwayWorker, TestDatabase, ZERO_ID, build_digest,
    git_output, new_delivery_id,
};

/// How long a queued build may wait for a worker and run its first steps.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A margin for things that happen "at once" but cross a process boundary and a poll.
const SOON: Duration = Duration::from_secs(15);

// ----- repositories ---------------------------------------------------------------------------

/// The files of an image that prints a greeting naming the fixture; with `sleep`, its build
/// has a `RUN` step that prints a marker ([`run_marker`]) and then sleeps that long. The step
/// names the fixture, so the engine's layer cache (shared by every test and run) cannot skip
/// it.
fn app_files(fx: &Fixture, greeting: &str, sleep: Option<u32>) -> Vec<RepoFile> {
    let run = sleep.map_or_else(String::new, |seconds| {
        format!("RUN echo {} && sleep {seconds}\n", run_marker(fx))
    });
    let dockerfile = format!(
        "FROM {}\nCOPY greeting.txt /greeting.txt\n{run}CMD [\"cat\", \"/greeting.txt\"]\n",
        fx.rig.base_image
    );
    vec![
        RepoFile::text("Dockerfile", &dockerfile),
        RepoFile::text("greeting.txt", &format!("{greeting} from {}\n", fx.name())),
    ]
}

/// What a slow build's `RUN` step prints once its container runs.
fn run_marker(fx: &Fixture) -> String {
    format!("running-{}", fx.name().replace('/', "-"))
}

/// Commits (on `main`) an image that builds in a moment.
fn fast_commit(fx: &Fixture) -> String {
    fx.repo.commit("Fast build", &app_files(fx, "hello", None))
}

/// Commits (on `main`) an image whose build sleeps `seconds` in a `RUN` step.
fn slow_commit(fx: &Fixture, seconds: u32) -> String {
    fx.repo
        .commit("Slow build", &app_files(fx, "hello", Some(seconds)))
}

/// Creates the branches `<prefix>00`, `<prefix>01`, … at `commit` in the served repository in
/// one `git update-ref --stdin`, and returns their names.
fn branches_at(fx: &Fixture, prefix: &str, count: usize, commit: &str) -> Vec<String> {
    use std::io::Write as _;
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i:02}")).collect();
    let script: String = names
        .iter()
        .map(|name| format!("create refs/heads/{name} {commit}\n"))
        .collect();
    let mut child = std::process::Command::new("git")
        .args(["update-ref", "--stdin"])
        .current_dir(fx.repo.bare_path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run git update-ref");
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(script.as_bytes())
        .expect("write to git update-ref");
    let output = child.wait_with_output().expect("wait for git update-ref");
    assert!(
        output.status.success(),
        "git update-ref failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    names
}

/// The GitHub payload of the push that created `branch` at its current head.
fn branch_created_payload(fx: &Fixture, branch: &str) -> String {
    fx.push_payload(&format!("refs/heads/{branch}"), ZERO_ID)
}

// ----- builds ---------------------------------------------------------------------------------

/// The `attempt_history` of a build.
fn history(build: &Value) -> Vec<Value> {
    build["attempt_history"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("the build has no attempt_history array: {build:#}"))
}

/// The `outcome` of each attempt, in order (`null` for one still open).
fn outcomes(build: &Value) -> Vec<String> {
    history(build)
        .iter()
        .map(|attempt| attempt["outcome"].as_str().unwrap_or("null").to_owned())
        .collect()
}

/// The `worker` of attempt `index` (0-based).
fn worker_of(build: &Value, index: usize) -> String {
    history(build)
        .get(index)
        .and_then(|attempt| attempt["worker"].as_str())
        .unwrap_or_else(|| panic!("attempt {index} names no worker: {build:#}"))
        .to_owned()
}

/// Polls the build until `done` says so, and returns it; on timeout the test fails with the
/// build, its log, and `what` it waited for.
fn wait_until(
    slipway: &Slipway,
    id: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let build = slipway.build(id);
        if done(&build) {
            return build;
        }
        assert!(
            Instant::now() < deadline,
            "build {id}: {what} did not happen within {timeout:?}.\nlast state: {build:#}\nlog:\n{}",
            slipway.log(id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the build's slow `RUN` step is running: its container printed the marker.
fn wait_for_run_step(slipway: &Slipway, fx: &Fixture, id: &str) -> Value {
    let marker = run_marker(fx);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let build = slipway.build(id);
        let log = slipway.log(id);
        // The step's own line ("Step 3/4 : RUN echo <marker> …") names the marker too; the
        // container's output is the marker alone on its line.
        if build["status"] == "running" && log.lines().any(|line| line.trim() == marker) {
            return build;
        }
        assert!(
            !matches!(
                build["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled" | "skipped")
            ),
            "build {id} ended before its RUN step could be interrupted: {build:#}\nlog:\n{log}"
        );
        assert!(
            Instant::now() < deadline,
            "build {id} did not reach its RUN step within {START_TIMEOUT:?}: {build:#}\nlog:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for every build in `ids` to finish and returns them by id; fails with the builds
/// still unfinished when `timeout` runs out.
fn wait_for_all(
    slipway: &Slipway,
    ids: &BTreeSet<String>,
    timeout: Duration,
) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + timeout;
    let mut finished = BTreeMap::new();
    loop {
        for id in ids {
            if finished.contains_key(id) {
                continue;
            }
            let build = slipway.build(id);
            if matches!(
                build["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled" | "skipped")
            ) {
                finished.insert(id.clone(), build);
            }
        }
        if finished.len() == ids.len() {
            return finished;
        }
        if Instant::now() >= deadline {
            let open: Vec<Value> = ids
                .iter()
                .filter(|id| !finished.contains_key(*id))
                .map(|id| slipway.build(id))
                .collect();
            panic!(
                "{} of {} builds did not finish within {timeout:?}; still open: {open:#?}",
                open.len(),
                ids.len()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A signed GitHub push delivery, kept whole so it can be sent again with the same id.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    body: String,
}

impl Delivery {
    fn new(body: String) -> Self {
        Self {
            id: new_delivery_id(),
            body,
        }
    }

    fn send(
        &self,
        fx: &Fixture,
        slipway: &Slipway,
        timeout: Duration,
    ) -> Result<HttpResponse, String> {
        slipway.try_post_hook(
            fx.name(),
            "push",
            &self.id,
            &self.body,
            Some(&fx.webhook_secret),
            timeout,
        )
    }
}

/// Sends `deliveries` from `threads` threads at once, each waiting `gap` between its own
/// requests; `on_answer` sees the number of answers so far after each one. Returns each
/// delivery's result in order.
fn send_concurrently(
    fx: &Fixture,
    slipway: &Slipway,
    deliveries: &[Delivery],
    threads: usize,
    gap: Duration,
    on_answer: impl Fn(usize) + Sync,
) -> Vec<Result<HttpResponse, String>> {
    let results: Mutex<Vec<Option<Result<HttpResponse, String>>>> =
        Mutex::new(vec![None; deliveries.len()]);
    let next = AtomicUsize::new(0);
    let answered = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(delivery) = deliveries.get(index) else {
                        return;
                    };
                    let result = delivery.send(fx, slipway, Duration::from_secs(30));
                    results.lock().expect("not poisoned")[index] = Some(result);
                    on_answer(answered.fetch_add(1, Ordering::SeqCst) + 1);
                    std::thread::sleep(gap);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .map(|result| result.expect("every delivery was sent"))
        .collect()
}

// ----- 1. a worker killed mid-build -----------------------------------------------------------

/// `kill -9` of the worker running a build: once its short lease expires, the other worker
/// takes the build over and runs it to the end; the history shows the lost attempt.
#[test]
fn a_build_whose_worker_is_killed_is_run_again_by_another_worker() {
    let fx = Fixture::new("worker-killed");
    let commit = slow_commit(&fx, 8);
    let database = TestDatabase::create(&fx.rig.postgres_url, "worker_killed");
    let builder = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .database_url(database.url());
    let web = builder.clone().start_web();
    let workers = builder.arg("--lease-seconds").arg("3");
    let doomed = workers.clone().start_worker();

    let id = fx.push_main(&web);
    // Only the doomed worker exists yet, so it is the one running the build.
    wait_for_run_step(&web, &fx, &id);
    let survivor = workers.start_worker();
    doomed.kill();

    let build = web.wait_for_build(&id, BUILD_TIMEOUT);
    assert_eq!(
        build["status"],
        "succeeded",
        "the survivor finishes the build: {build:#}\nlog:\n{}\nsurvivor's stderr:\n{}",
        web.log(&id),
        survivor.stderr()
    );
    assert_eq!(outcomes(&build), ["lost", "succeeded"], "{build:#}");
    let attempts = history(&build);
    assert_eq!(attempts[0]["attempt"], 1, "{build:#}");
    assert_eq!(attempts[1]["attempt"], 2, "{build:#}");
    assert!(
        doomed.is(&worker_of(&build, 0)),
        "attempt 1 was the killed worker's (pid {}): {build:#}",
        doomed.pid()
    );
    assert!(
        survivor.is(&worker_of(&build, 1)),
        "attempt 2 was the survivor's (pid {}): {build:#}",
        survivor.pid()
    );
    assert_eq!(build["attempts"], 2, "{build:#}");
    fx.assert_pushed(&build, "latest", &commit);
}

// ----- 2. the web process killed while deliveries arrive --------------------------------------

/// `kill -9` of `slipway web` in the middle of a burst of deliveries: every delivery that was
/// answered 2xx is in the database with its build after a restart, the ones that got no answer
/// are accepted when the forge sends them again (as a duplicate if they had been stored), and
/// the workers run every build to the end.
#[test]
fn killing_the_web_process_loses_no_accepted_delivery() {
    const BRANCHES: usize = 40;
    let fx = Fixture::new("web-killed");
    let commit = fast_commit(&fx);
    let branches = branches_at(&fx, "b-", BRANCHES, &commit);
    let database = TestDatabase::create(&fx.rig.postgres_url, "web_killed");
    let builder = fx
        .slipway(&fx.config(vec![Rule::branch("/b-.*/", "{sourceref}")]))
        .database_url(database.url());
    let web = builder.clone().start_web();
    let _workers: Vec<SlipwayWorker> = (0..2).map(|_| builder.clone().start_worker()).collect();

    let deliveries: Vec<Delivery> = branches
        .iter()
        .map(|branch| Delivery::new(branch_created_payload(&fx, branch)))
        .collect();
    let killed = Mutex::new(false);
    // Eight senders with hardly a pause keep requests in flight when the kill comes, so some
    // may be stored without their answer getting out.
    let results = send_concurrently(
        &fx,
        &web,
        &deliveries,
        8,
        Duration::from_millis(5),
        |answered| {
            if answered == BRANCHES / 3 {
                web.kill();
                *killed.lock().expect("not poisoned") = true;
            }
        },
    );
    assert!(
        *killed.lock().expect("not poisoned"),
        "the web process was killed"
    );
    let accepted: Vec<(&Delivery, &HttpResponse)> = deliveries
        .iter()
        .zip(&results)
        .filter_map(|(delivery, result)| match result {
            Ok(answer) if (200..300).contains(&answer.status) => Some((delivery, answer)),
            _ => None,
        })
        .collect();
    let unanswered: Vec<&Delivery> = deliveries
        .iter()
        .zip(&results)
        .filter(|(_, result)| result.is_err())
        .map(|(delivery, _)| delivery)
        .collect();
    let summary: Vec<String> = results
        .iter()
        .map(|result| match result {
            Ok(answer) => format!("{} {}", answer.status, answer.text),
            Err(error) => format!("no answer: {error}"),
        })
        .collect();
    assert!(
        accepted.len() >= BRANCHES / 3 && !unanswered.is_empty(),
        "the kill came mid-burst: {} accepted, {} unanswered: {summary:#?}",
        accepted.len(),
        unanswered.len()
    );
    assert_eq!(
        accepted.len() + unanswered.len(),
        BRANCHES,
        "every delivery was either accepted or got no answer (none was refused): {summary:#?}"
    );

    let web = builder.start_web();
    for (delivery, answer) in &accepted {
        let stored = web.delivery(&answer.delivery_id());
        let created: Vec<&str> = stored["builds_created"]
            .as_array()
            .unwrap_or_else(|| panic!("no builds_created: {stored:#}"))
            .iter()
            .filter_map(|build| build["id"].as_str())
            .collect();
        assert_eq!(
            created,
            answer.build_ids(),
            "delivery {} was answered {} before the kill; the database has: {stored:#}",
            delivery.id,
            answer.status
        );
        assert_eq!(stored["status_code"], answer.status, "{stored:#}");
    }

    // The forge sends what got no answer again, with the same delivery ids.
    let mut build_of_branch: BTreeMap<String, String> = BTreeMap::new();
    for (_, answer) in &accepted {
        let build = &answer.builds()[0];
        build_of_branch.insert(
            build["ref"].as_str().unwrap_or_default().to_owned(),
            answer.single_build_id(),
        );
    }
    for delivery in &unanswered {
        let answer = delivery
            .send(&fx, &web, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the restarted web process did not answer: {e}"));
        answer.assert_status(202);
        let build = &answer.builds()[0];
        let previous = build_of_branch.insert(
            build["ref"].as_str().unwrap_or_default().to_owned(),
            answer.single_build_id(),
        );
        assert_eq!(previous, None, "one build per branch: {answer:#?}");
    }
    assert_eq!(
        build_of_branch.len(),
        BRANCHES,
        "every branch has its build: {build_of_branch:#?}"
    );

    // Every delivery in the log (including any stored whose answer was lost) names only these
    // builds, and every build finishes: none is left running.
    let ids: BTreeSet<String> = build_of_branch.values().cloned().collect();
    let listed = web.get(&format!(
        "/api/repositories/{}/deliveries?limit=100",
        fx.name()
    ));
    listed.assert_status(200);
    for entry in listed.json()["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for build in entry["builds"].as_array().cloned().unwrap_or_default() {
            let id = build["id"].as_str().unwrap_or_default();
            assert!(
                ids.contains(id),
                "a build outside the branches' builds: {entry:#}"
            );
        }
    }
    let finished = wait_for_all(&web, &ids, Duration::from_secs(240));
    for (id, build) in &finished {
        assert_eq!(
            build["status"],
            "succeeded",
            "build {id}: {build:#}\nlog:\n{}",
            web.log(id)
        );
    }
}

// ----- 3. the engine goes away mid-build ------------------------------------------------------

/// `slipway serve` builds through a proxy to the engine; the proxy stops mid-build. The build
/// fails as infrastructure and waits in the queue, `/healthz` says the worker is unhealthy
/// while the engine is gone, and once it is back the build is tried again and succeeds.
#[test]
fn a_build_interrupted_by_the_engine_going_away_is_retried_when_it_is_back() {
    let fx = Fixture::new("engine-down");
    let commit = slow_commit(&fx, 10);
    let mut proxy = DockerProxy::start();
    let slipway = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .arg("--docker-host")
        .arg(&proxy.docker_host())
        .start();
    let health = slipway.get("/healthz");
    assert_eq!(
        health.json()["worker"]["healthy"],
        true,
        "the worker is healthy with its engine: {health:#?}"
    );

    let id = fx.push_main(&slipway);
    wait_for_run_step(&slipway, &fx, &id);
    proxy.stop();

    let retrying = wait_until(
        &slipway,
        &id,
        SOON,
        "a retry after the engine went away",
        |build| {
            outcomes(build)
                .first()
                .is_some_and(|outcome| outcome == "retry")
        },
    );
    assert_eq!(retrying["status"], "queued", "{retrying:#}");
    let error = retrying["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("infrastructure"),
        "the failure counts as infrastructure: {retrying:#}\nlog:\n{}",
        slipway.log(&id)
    );
    assert!(
        retrying["waiting"]
            .as_str()
            .is_some_and(|waiting| waiting.contains("backing off")),
        "the build says it backs off: {retrying:#}"
    );

    let degraded = wait_for_health(&slipway, false);
    assert_eq!(degraded["status"], "degraded", "{degraded:#}");
    assert!(
        degraded["worker"]["problem"]
            .as_str()
            .is_some_and(|problem| problem.contains("Docker engine")),
        "the problem names the engine: {degraded:#}"
    );
    // No attempt is burnt while the engine is gone.
    let still = slipway.build(&id);
    assert_eq!(still["status"], "queued", "{still:#}");
    assert_eq!(outcomes(&still), ["retry"], "{still:#}");

    proxy.start_again();
    let healthy = wait_for_health(&slipway, true);
    assert_eq!(healthy["status"], "ok", "{healthy:#}");
    let build = slipway.wait_for_success(&id);
    assert_eq!(outcomes(&build), ["retry", "succeeded"], "{build:#}");
    assert_eq!(build["attempts"], 2, "{build:#}");
    fx.assert_pushed(&build, "latest", &commit);
}

/// Polls `/healthz` until the worker's `healthy` is `healthy`, and returns the answer.
fn wait_for_health(slipway: &Slipway, healthy: bool) -> Value {
    let deadline = Instant::now() + SOON;
    loop {
        let answer = slipway.get("/healthz");
        answer.assert_status(200);
        let json = answer.json();
        if json["worker"]["healthy"] == healthy {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz did not report the worker healthy = {healthy} within {SOON:?}: {json:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ----- 4. the registry is down at push time ---------------------------------------------------

/// A private registry is stopped while the build's slow step runs, so the push finds it gone:
/// the build is queued again with a backoff, and once the registry is back it is pushed.
#[test]
fn a_push_to_a_registry_that_is_down_is_retried_once_it_is_back() {
    let fx = Fixture::new("registry-down");
    let mut registry = RegistryServer::start();
    let commit = slow_commit(&fx, 8);
    let mut config = fx.config(vec![Rule::branch("main", "latest")]);
    let image = format!("{}/{}", registry.host(), fx.name());
    config.repositories[0].image = image.clone();
    let slipway = fx.slipway(&config).start();

    let id = fx.push_main(&slipway);
    wait_for_run_step(&slipway, &fx, &id);
    registry.stop();

    let retrying = wait_until(
        &slipway,
        &id,
        START_TIMEOUT,
        "a retry after the push failed",
        |build| {
            outcomes(build)
                .first()
                .is_some_and(|outcome| outcome == "retry")
        },
    );
    let log = slipway.log(&id);
    let error = retrying["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("infrastructure") && error.contains(&registry.host()),
        "the push failure is infrastructure and names the registry: {retrying:#}\nlog:\n{log}"
    );
    assert_eq!(retrying["status"], "queued", "{retrying:#}");
    assert!(
        retrying["waiting"]
            .as_str()
            .is_some_and(|waiting| waiting.contains("backing off")),
        "the build says it backs off: {retrying:#}"
    );

    registry.start_again();
    let build = slipway.wait_for_success(&id);
    assert_eq!(outcomes(&build), ["retry", "succeeded"], "{build:#}");
    assert_eq!(build["attempts"], 2, "{build:#}");
    let digest = build_digest(&build);
    assert_eq!(
        registry.client().manifest_digest(fx.name(), "latest"),
        Some(digest.clone()),
        "the private registry holds {image}:latest as the build's digest"
    );
    let docker = fx.docker();
    let pulled = format!("{image}@{digest}");
    docker.pull(&pulled);
    assert_eq!(
        docker.label(&pulled, REVISION_LABEL).as_deref(),
        Some(commit.as_str())
    );
}

// ----- 5. the database restarts under load ----------------------------------------------------

/// `slipway web` and `slipway worker` on a private PostgreSQL that is stopped while a build
/// runs: webhooks are answered 503 quickly (never 500, never a hang) while it is down; once it
/// is back both processes carry on without a restart, and new pushes build.
#[test]
fn a_database_restart_answers_503_meanwhile_and_both_processes_recover() {
    /// The longest a webhook may wait for its answer while the database is down.
    const QUICK: Duration = Duration::from_secs(5);
    let fx = Fixture::new("database-restart");
    fast_commit(&fx);
    let mut cluster = PostgresCluster::start();
    let builder = fx
        .slipway(&fx.config(vec![Rule::branch("/.*/", "{sourceref}")]))
        .database_url(&cluster.url());
    let web = builder.clone().start_web();
    let worker = builder.start_worker();
    let first_id = fx.push_main(&web);
    web.wait_for_success(&first_id);

    // Load: a slow build is running when the database goes away.
    let slow = fx
        .repo
        .commit_on("slow", "Slow build", &app_files(&fx, "slow", Some(20)));
    let answer = fx.deliver_push(&web, &branch_created_payload(&fx, "slow"));
    answer.assert_status(202);
    let slow_id = answer.single_build_id();
    wait_for_run_step(&web, &fx, &slow_id);

    cluster.stop();
    let later = fx
        .repo
        .commit_on("later", "After the outage", &app_files(&fx, "later", None));
    let pending = Delivery::new(branch_created_payload(&fx, "later"));
    let mut during = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let answer = pending.send(&fx, &web, Duration::from_secs(60));
        during.push((started.elapsed(), answer));
    }
    for path in ["/healthz".to_owned(), format!("/api/builds/{slow_id}")] {
        let started = Instant::now();
        let answer = web.try_get(&path, Duration::from_secs(60));
        during.push((started.elapsed(), answer));
    }
    for (took, answer) in &during {
        assert!(
            matches!(answer, Ok(answer) if answer.status == 503) && *took <= QUICK,
            "while the database is down every request is answered 503 within {QUICK:?}; \
             got {answer:#?} after {took:?}; all answers: {during:#?}"
        );
    }

    assert!(
        web.is_running() && worker.is_running(),
        "neither process exits while the database is down:\nweb:\n{}\nworker:\n{}",
        web.stderr(),
        worker.stderr()
    );
    cluster.start_again();
    // The web process recovers on its own: the delivery the forge retries is accepted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let accepted = loop {
        match pending.send(&fx, &web, Duration::from_secs(30)) {
            Ok(answer) if answer.status == 202 => break answer,
            other => {
                assert!(
                    matches!(&other, Ok(answer) if answer.status == 503),
                    "after the restart the web process answers 503 or 202, never {other:#?}"
                );
                assert!(
                    Instant::now() < deadline,
                    "the web process did not recover within 30 s: {other:#?}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let later_id = accepted.single_build_id();
    // The worker recovers on its own: the new push builds, and the build that was running
    // through the outage ends instead of staying `running`.
    let built = web.wait_for_success(&later_id);
    fx.assert_pushed(&built, "later", &later);
    let slow_build = web.wait_for_build(&slow_id, BUILD_TIMEOUT);
    assert_eq!(
        slow_build["status"],
        "succeeded",
        "the build running through the outage finished: {slow_build:#}\nlog:\n{}\nworker's stderr:\n{}",
        web.log(&slow_id),
        worker.stderr()
    );
    fx.assert_pushed(&slow_build, "slow", &slow);
    assert!(
        web.is_running() && worker.is_running(),
        "both processes are the ones started before the outage"
    );
}

// ----- 6. cancel and timeout ------------------------------------------------------------------

/// `POST /api/builds/{id}/cancel` on a running build: it is cancelled within a few seconds and
/// pushes nothing, then or later.
#[test]
fn a_cancelled_running_build_stops_within_seconds_and_pushes_nothing() {
    let fx = Fixture::new("cancel-running");
    slow_commit(&fx, 30);
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let id = fx.push_main(&slipway);
    wait_for_run_step(&slipway, &fx, &id);

    let asked = Instant::now();
    let answer = slipway.post_empty(&format!("/api/builds/{id}/cancel"));
    answer.assert_status(202);
    let (build, error) = slipway.wait_for_end(&id, "cancelled", SOON);
    let took = asked.elapsed();
    assert!(
        took <= Duration::from_secs(8),
        "the build stopped {took:?} after the cancel: {build:#}"
    );
    assert!(error.contains("cancel"), "{build:#}");
    assert_eq!(
        outcomes(&build).last().map(String::as_str),
        Some("cancelled"),
        "{build:#}"
    );
    fx.assert_not_pushed("latest");
    // Nothing is pushed later either (the sleep would have ended by now had it gone on).
    std::thread::sleep(Duration::from_secs(3));
    fx.assert_not_pushed("latest");
    assert_eq!(slipway.build(&id)["status"], "cancelled");
}

/// A build that runs past the repository's `build_timeout` is stopped and fails, saying so,
/// and is not tried again (a timeout is the build's own doing).
#[test]
fn a_build_past_its_timeout_fails_with_timeout() {
    let fx = Fixture::new("build-timeout");
    slow_commit(&fx, 30);
    let mut config = fx.config(vec![Rule::branch("main", "latest")]);
    config.repositories[0].build_timeout = Some("5s".to_owned());
    let slipway = fx.slipway(&config).start();
    let id = fx.push_main(&slipway);
    slipway.wait_for_status(&id, "running", START_TIMEOUT);
    let running_since = Instant::now();

    let (build, error) = slipway.wait_for_end(&id, "failed", Duration::from_secs(60));
    assert!(
        running_since.elapsed() < Duration::from_secs(20),
        "a 5 s timeout stopped the build after {:?}: {build:#}",
        running_since.elapsed()
    );
    assert!(
        error.contains("timeout"),
        "the error says timeout: {build:#}\nlog:\n{}",
        slipway.log(&id)
    );
    assert_eq!(build["attempts"], 1, "a timeout is not retried: {build:#}");
    assert_eq!(outcomes(&build), ["failed"], "{build:#}");
    fx.assert_not_pushed("latest");
}

// ----- 7. SIGTERM to a worker -----------------------------------------------------------------

/// SIGTERM with a grace shorter than the build: the build is handed back to the queue (using no
/// attempt) and another worker finishes it; the stopped worker exits cleanly.
#[test]
fn sigterm_with_a_short_grace_hands_the_build_to_another_worker() {
    let fx = Fixture::new("sigterm-short");
    let commit = slow_commit(&fx, 12);
    let database = TestDatabase::create(&fx.rig.postgres_url, "sigterm_short");
    let builder = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .database_url(database.url());
    let web = builder.clone().start_web();
    let stopping = builder
        .clone()
        .arg("--shutdown-grace-seconds")
        .arg("2")
        .start_worker();
    let id = fx.push_main(&web);
    wait_for_run_step(&web, &fx, &id);
    let other = builder.start_worker();

    stopping.terminate();
    let status = stopping.wait_for_exit(SOON).unwrap_or_else(|| {
        panic!(
            "the worker did not exit within {SOON:?} of SIGTERM with a 2 s grace:\n{}",
            stopping.stderr()
        )
    });
    assert!(
        status.success(),
        "a worker stopped by SIGTERM exits cleanly ({status}):\n{}",
        stopping.stderr()
    );

    let build = web.wait_for_success(&id);
    assert_eq!(outcomes(&build), ["handed_back", "succeeded"], "{build:#}");
    assert!(
        stopping.is(&worker_of(&build, 0)) && other.is(&worker_of(&build, 1)),
        "handed back by pid {}, finished by pid {}: {build:#}",
        stopping.pid(),
        other.pid()
    );
    assert_eq!(
        build["attempts"], 1,
        "a handed-back attempt is not counted: {build:#}"
    );
    fx.assert_pushed(&build, "latest", &commit);
}

/// SIGTERM with a grace longer than the build: the worker finishes the build, then exits.
#[test]
fn sigterm_with_a_long_grace_lets_the_worker_finish_the_build() {
    let fx = Fixture::new("sigterm-long");
    let commit = slow_commit(&fx, 6);
    let database = TestDatabase::create(&fx.rig.postgres_url, "sigterm_long");
    let builder = fx
        .slipway(&fx.config(vec![Rule::branch("main", "latest")]))
        .database_url(database.url());
    let web = builder.clone().start_web();
    let worker = builder
        .arg("--shutdown-grace-seconds")
        .arg("60")
        .start_worker();
    let id = fx.push_main(&web);
    wait_for_run_step(&web, &fx, &id);

    worker.terminate();
    let status = worker
        .wait_for_exit(Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "the worker did not exit after finishing its build:\n{}",
                worker.stderr()
            )
        });
    assert!(
        status.success(),
        "clean exit ({status}):\n{}",
        worker.stderr()
    );
    let build = web.build(&id);
    assert_eq!(
        build["status"],
        "succeeded",
        "the build finished before the worker exited: {build:#}\nlog:\n{}",
        web.log(&id)
    );
    assert_eq!(outcomes(&build), ["succeeded"], "{build:#}");
    assert!(worker.is(&worker_of(&build, 0)), "{build:#}");
    fx.assert_pushed(&build, "latest", &commit);
}

// ----- 8. many workers, one queue -------------------------------------------------------------

/// Four `slipway worker` processes and one `slipway web` on PostgreSQL, and a burst of
/// deliveries of which a third repeat an earlier delivery id: every build is planned once and
/// run exactly once, and none is left queued or running.
#[test]
fn four_workers_run_every_planned_build_exactly_once() {
    const UNIQUE: usize = 200;
    let fx = Fixture::new("four-workers");
    let commit = fast_commit(&fx);
    let branches = branches_at(&fx, "w-", UNIQUE, &commit);
    let database = TestDatabase::create(&fx.rig.postgres_url, "four_workers");
    let builder = fx
        .slipway(&fx.config(vec![Rule::branch("/w-.*/", "{sourceref}")]))
        .database_url(database.url());
    let web = builder.clone().start_web();
    let workers: Vec<SlipwayWorker> = (0..4).map(|_| builder.clone().start_worker()).collect();

    let originals: Vec<Delivery> = branches
        .iter()
        .map(|branch| Delivery::new(branch_created_payload(&fx, branch)))
        .collect();
    // Every other delivery is sent twice, the repeat right behind the next original, so the two
    // copies race on different threads.
    let mut sends = Vec::new();
    for (i, delivery) in originals.iter().enumerate() {
        sends.push(delivery.clone());
        if i % 2 == 1 {
            sends.push(originals[i - 1].clone());
        }
    }
    assert_eq!(sends.len(), 300, "300 deliveries, a third of them repeats");
    let results = send_concurrently(&fx, &web, &sends, 6, Duration::ZERO, |_| {});

    let mut builds_of: BTreeMap<&str, Vec<Vec<String>>> = BTreeMap::new();
    for (delivery, result) in sends.iter().zip(&results) {
        let answer = result
            .as_ref()
            .unwrap_or_else(|e| panic!("delivery {} got no answer: {e}", delivery.id));
        assert!(
            (200..300).contains(&answer.status),
            "delivery {} was refused: {answer:#?}",
            delivery.id
        );
        builds_of
            .entry(delivery.id.as_str())
            .or_default()
            .push(answer.build_ids());
    }
    for (delivery, answers) in &builds_of {
        assert!(
            answers
                .iter()
                .all(|ids| ids.len() == 1 && *ids == answers[0]),
            "every answer to delivery {delivery} names the same single build: {answers:?}"
        );
    }
    let ids: BTreeSet<String> = builds_of
        .values()
        .map(|answers| answers[0][0].clone())
        .collect();
    assert_eq!(ids.len(), UNIQUE, "one build per branch");

    let finished = wait_for_all(&web, &ids, Duration::from_secs(300));
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for (id, build) in &finished {
        assert_eq!(
            build["status"],
            "succeeded",
            "build {id}: {build:#}\nlog:\n{}",
            web.log(id)
        );
        let succeeded = history(build)
            .iter()
            .filter(|attempt| attempt["outcome"] == "succeeded")
            .count();
        assert_eq!(succeeded, 1, "build {id} succeeded exactly once: {build:#}");
        assert_eq!(
            outcomes(build),
            ["succeeded"],
            "build {id} ran once: {build:#}"
        );
        assert_eq!(build["attempts"], 1, "build {id}: {build:#}");
        let worker = worker_of(build, 0);
        let process = workers
            .iter()
            .position(|w| w.is(&worker))
            .unwrap_or_else(|| panic!("build {id} ran on an unknown worker {worker}"));
        *per_worker.entry(format!("worker {process}")).or_default() += 1;
    }
    assert!(
        per_worker.len() >= 2,
        "the builds were shared between the workers: {per_worker:?}"
    );
    // The repository's deliveries name no other build, and none is left queued or running.
    // The log is paged 100 at a time; follow `next` to the end.
    let mut deliveries = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = match &next {
            None => format!("/api/repositories/{}/deliveries?limit=100", fx.name()),
            Some(before) => format!(
                "/api/repositories/{}/deliveries?limit=100&before={before}",
                fx.name()
            ),
        };
        let listed = web.get(&page);
        listed.assert_status(200);
        let body = listed.json();
        deliveries.extend(body["deliveries"].as_array().cloned().unwrap_or_default());
        match body["next"].as_str() {
            Some(cursor) => next = Some(cursor.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        deliveries.len(),
        UNIQUE,
        "a repeated delivery id is logged once"
    );
    for entry in &deliveries {
        for build in entry["builds"].as_array().cloned().unwrap_or_default() {
            let id = build["id"].as_str().unwrap_or_default();
            assert!(ids.contains(id), "an unexpected build: {entry:#}");
        }
    }
}

// ----- 9. incremental fetches -----------------------------------------------------------------

/// The second push to a branch brings only the new objects into the worker's mirror: the first
/// fetch's pack stays as it was, and what the second fetch added holds the new commit but
/// none of the first commit's objects (notably not its large file).
#[test]
fn a_second_push_fetches_only_the_new_objects() {
    let fx = Fixture::new("incremental-fetch");
    // About 1.5 MB of hex digits: even compressed, far larger than anything the second push
    // adds.
    let big: String = (0..24_000)
        .map(|_| uuid::Uuid::new_v4().simple().to_string() + "\n")
        .collect::<String>()
        .chars()
        .take(1_500_000)
        .collect();
    let mut files = app_files(&fx, "first", None);
    files.push(RepoFile::text("big.txt", &big));
    files.push(RepoFile::text(".dockerignore", "big.txt\n"));
    let first = fx.repo.commit("First version with a large file", &files);
    let big_blob = git_output(
        fx.repo.bare_path(),
        &["rev-parse", &format!("{first}:big.txt")],
    )
    .trim()
    .to_owned();
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let first_id = fx.push_main(&slipway);
    slipway.wait_for_success(&first_id);

    let mirror = slipway
        .data_dir()
        .join("mirrors")
        .join(format!("{}.git", fx.name()));
    assert!(mirror.is_dir(), "the mirror is at {}", mirror.display());
    let before = MirrorObjects::read(&mirror);
    assert!(
        before.all().contains(&first) && before.all().contains(&big_blob),
        "the first fetch brought the first commit and its large file: {before:#?}"
    );
    let fetches_before = upload_packs(&fx);
    assert!(
        fetches_before >= 1,
        "the first build fetched: {:#?}",
        fx.git.requests()
    );

    let second = fx
        .repo
        .commit("Second version", &app_files(&fx, "second", None));
    let answer = fx.deliver_main(&slipway, &first);
    answer.assert_status(202);
    let second_id = answer.single_build_id();
    let build = slipway.wait_for_success(&second_id);
    fx.assert_pushed(&build, "latest", &second);
    assert!(
        upload_packs(&fx) > fetches_before,
        "the second build fetched from the git server: {:#?}",
        fx.git.requests()
    );

    let after = MirrorObjects::read(&mirror);
    for (pack, size) in &before.packs {
        assert_eq!(
            after.packs.get(pack).map(|(size, _)| size),
            Some(&size.0),
            "the first fetch's pack {pack} is kept as it was (no fresh clone): before {before:#?}, after {after:#?}"
        );
    }
    let added = after.added_since(&before);
    assert!(
        added.objects.contains(&second),
        "the second fetch brought the second commit: {added:#?}"
    );
    for old in [&first, &big_blob] {
        assert!(
            !added.objects.contains(old),
            "the second fetch downloaded {old} of the first commit again: {added:#?}"
        );
    }
    assert!(
        added.bytes < 64 * 1024,
        "the second fetch added {} bytes to the mirror, for a one-line change (the first pack: {:?}): {added:#?}",
        added.bytes,
        before.packs
    );
}

/// How many pack downloads the git server served.
fn upload_packs(fx: &Fixture) -> usize {
    fx.git
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/git-upload-pack") && r.method == "POST" && r.status == 200)
        .count()
}

/// The objects of a bare repository: each pack (by file name) with its size and object ids,
/// and the loose objects.
#[derive(Debug, Default)]
struct MirrorObjects {
    packs: BTreeMap<String, (u64, BTreeSet<String>)>,
    loose: BTreeMap<String, u64>,
}

/// What a later [`MirrorObjects`] holds that an earlier one did not.
#[derive(Debug)]
struct Added {
    packs: Vec<String>,
    objects: BTreeSet<String>,
    bytes: u64,
}

impl MirrorObjects {
    fn read(repository: &Path) -> Self {
        let mut objects = Self::default();
        let pack_dir = repository.join("objects").join("pack");
        for entry in std::fs::read_dir(&pack_dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", pack_dir.display()))
        {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_none_or(|ext| ext != "pack") {
                continue;
            }
            let size = std::fs::metadata(&path).expect("a pack's size").len();
            let ids = pack_objects(&path.with_extension("idx"));
            let name = path
                .file_name()
                .expect("a pack file name")
                .to_string_lossy()
                .into_owned();
            objects.packs.insert(name, (size, ids));
        }
        for entry in std::fs::read_dir(repository.join("objects")).expect("list objects") {
            let dir = entry.expect("a directory entry").path();
            let Some(prefix) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if prefix.len() != 2 || !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir).expect("list loose objects") {
                let file = file.expect("a directory entry").path();
                let rest = file.file_name().map(|n| n.to_string_lossy().into_owned());
                let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                if let Some(rest) = rest {
                    objects.loose.insert(format!("{prefix}{rest}"), size);
                }
            }
        }
        objects
    }

    fn all(&self) -> BTreeSet<String> {
        self.packs
            .values()
            .flat_map(|(_, ids)| ids.iter().cloned())
            .chain(self.loose.keys().cloned())
            .collect()
    }

    fn added_since(&self, earlier: &Self) -> Added {
        let mut added = Added {
            packs: Vec::new(),
            objects: BTreeSet::new(),
            bytes: 0,
        };
        for (name, (size, ids)) in &self.packs {
            if !earlier.packs.contains_key(name) {
                added.packs.push(name.clone());
                added.objects.extend(ids.iter().cloned());
                added.bytes += size;
            }
        }
        for (id, size) in &self.loose {
            if !earlier.loose.contains_key(id) {
                added.objects.insert(id.clone());
                added.bytes += size;
            }
        }
        added
    }
}

/// The object ids in a pack index, as `git show-index` lists them.
fn pack_objects(index: &Path) -> BTreeSet<String> {
    let file = std::fs::File::open(index)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", index.display()));
    let output = std::process::Command::new("git")
        .arg("show-index")
        .stdin(file)
        .output()
        .expect("run git show-index");
    assert!(
        output.status.success(),
        "git show-index < {} failed: {}",
        index.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}
