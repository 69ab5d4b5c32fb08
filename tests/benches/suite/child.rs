//! The processes the suite starts from its own binary (`suite child …`), so that what is
//! measured runs in a process of its own, as Slipway's servers and workers do:
//!
//! - `baseline-server DATABASE_URL LISTEN REPOSITORY SECRET`: the webhook endpoint without its
//!   database write ([`slipway_server::unrecorded_hooks_app`]), the ingest benchmark's baseline.
//! - `queue-worker DATABASE_URL SLOTS OWNER`: claims and completes builds that do nothing, with
//!   the store calls the worker makes for each build, until the queue is empty; the queue
//!   benchmark's worker process. It prints `ready`, starts at a line on standard input, and
//!   prints every build id it claimed.
//! - `load BASE_URL REPOSITORY SECRET CONNECTIONS SECONDS`: benchmark 1's load against any
//!   running Slipway, printing the rate; for profiling a server by hand.

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use slipway_core::{BuildStatus, Secret};
use slipway_server::{AppState, RefResolver, RemoteRefs};
use slipway_store::{BuildResult, Store};

pub fn main(args: &[String]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match args {
        [kind, url, listen, repository, secret] if kind == "baseline-server" => {
            runtime.block_on(baseline_server(url, listen, repository, secret));
        }
        [kind, url, slots, owner] if kind == "queue-worker" => {
            let slots: usize = slots.parse().expect("a number of slots");
            runtime.block_on(queue_worker(url, slots, owner));
        }
        [kind, base_url, repository, secret, connections, seconds] if kind == "load" => {
            drop(runtime);
            let target = crate::load::Target {
                base_url: base_url.clone(),
                repository: repository.clone(),
                secret: secret.clone(),
            };
            let result = crate::load::run(
                &target,
                connections.parse().expect("a number of connections"),
                Duration::from_millis(500),
                Duration::from_secs(seconds.parse().expect("a number of seconds")),
            );
            println!(
                "{:.0} deliveries/s ({} accepted, {} failed{})",
                result.rate(),
                result.accepted,
                result.failed,
                result
                    .first_failure
                    .map(|failure| format!("; first: {failure}"))
                    .unwrap_or_default()
            );
        }
        _ => panic!("unknown child process {args:?}"),
    }
}

/// Trigger URLs are not benchmarked; the baseline server never resolves refs.
#[derive(Debug)]
struct NoRefs;

impl RefResolver for NoRefs {
    fn remote_refs<'a>(&'a self, _repository: &'a str) -> RemoteRefs<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

async fn baseline_server(url: &str, listen: &str, repository: &str, secret: &str) {
    let store = Store::connect(url).await.expect("open the database");
    let secrets = HashMap::from([(repository.to_owned(), Secret::new(secret.to_owned()))]);
    let state = AppState {
        webhook_secrets: Arc::new(secrets),
        ..AppState::new(store, "http://127.0.0.1", Arc::new(NoRefs))
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("listen for the baseline server");
    let service = slipway_server::unrecorded_hooks_app(state)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    println!("ready");
    std::io::stdout().flush().expect("flush");
    axum::serve(listener, service)
        .await
        .expect("serve the baseline");
}

async fn queue_worker(url: &str, slots: usize, owner: &str) {
    let store = Store::connect(url).await.expect("open the database");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let mut go = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut go)
        .expect("wait for go");

    let mut tasks = tokio::task::JoinSet::new();
    for slot in 0..slots {
        let (store, owner) = (store.clone(), owner.to_owned());
        tasks.spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let claim = format!("{owner}-{slot}/{}", uuid::Uuid::new_v4().simple());
                let build = match store.claim_build(&claim, Duration::from_secs(300)).await {
                    Ok(Some(build)) => build,
                    Ok(None) => break,
                    Err(error) => panic!("claiming failed: {error}"),
                };
                // What the worker records around a build that does nothing: the queue wait
                // when it starts, then the result, then its count and duration.
                store.observe_claim(&build).await.expect("count the claim");
                let result = BuildResult {
                    status: BuildStatus::Succeeded,
                    error: None,
                    digest: None,
                };
                let finished = store
                    .finish_build(build.id, &claim, &result)
                    .await
                    .expect("finish the build");
                assert!(
                    finished,
                    "a claimed build could not be finished by its owner"
                );
                store
                    .observe_finish(&build, BuildStatus::Succeeded, slipway_store::now_millis())
                    .await
                    .expect("count the result");
                claimed.push(build.id);
            }
            claimed
        });
    }
    let mut out = std::io::stdout().lock();
    while let Some(claimed) = tasks.join_next().await {
        for id in claimed.expect("a worker slot panicked") {
            writeln!(out, "{id}").expect("write a claimed id");
        }
    }
    out.flush().expect("flush");
}
