//! A load generator for the webhook endpoint: `connections` clients, each on its own kept-alive
//! connection, send signed GitHub push deliveries back to back. Every delivery has a fresh
//! delivery id and a fresh commit, so each one is new work (a delivery and a build), never a
//! duplicate answered from the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use slipway_e2e::{CommitInfo, github_push_payload, github_signature, new_delivery_id};

/// Where the deliveries go.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// `owner/name`
    pub repository: String,
    pub secret: String,
}

/// What one load run achieved inside its measured window.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub accepted: u64,
    pub failed: u64,
    pub window: Duration,
    /// The first answer that was not a 202, for the report.
    pub first_failure: Option<String>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.window.as_secs_f64()
    }
}

/// A stand-in commit id in the payload template, replaced by a fresh one per delivery.
const COMMIT_MARK: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

/// The body of a realistic push to `main` (about 6 KB, as GitHub sends) with [`COMMIT_MARK`]
/// wherever the pushed commit's id appears.
fn payload_template(repository: &str) -> String {
    let head = CommitInfo {
        id: COMMIT_MARK.to_owned(),
        tree_id: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".to_owned(),
        message: "Tune the cache settings\n\nMeasured with scripts/bench.".to_owned(),
        timestamp: "2026-12-01T10:00:00+00:00".to_owned(),
        author_name: "Bench Mark".to_owned(),
        author_email: "bench@example.com".to_owned(),
    };
    github_push_payload(
        repository,
        "refs/heads/main",
        "1111111111111111111111111111111111111111",
        COMMIT_MARK,
        Some(&head),
    )
}

/// Sends deliveries to `target` from `connections` clients for `warmup + window`, counting
/// the answers that arrive within the window.
pub fn run(target: &Target, connections: usize, warmup: Duration, window: Duration) -> LoadResult {
    // The clients get one thread: the server under test needs the rest of the machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the load generator");
    runtime.block_on(run_async(target, connections, warmup, window))
}

async fn run_async(
    target: &Target,
    connections: usize,
    warmup: Duration,
    window: Duration,
) -> LoadResult {
    let template = Arc::new(payload_template(&target.repository));
    let url = Arc::new(format!("{}/hooks/{}", target.base_url, target.repository));
    let secret = Arc::new(target.secret.clone());
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));

    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        let (template, url, secret) = (template.clone(), url.clone(), secret.clone());
        let (accepted, failed, counting, stop, first_failure) = (
            accepted.clone(),
            failed.clone(),
            counting.clone(),
            stop.clone(),
            first_failure.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let commit = uuid::Uuid::new_v4().simple().to_string();
                let commit = format!("{commit}{}", &commit[..8]);
                let body = template.replace(COMMIT_MARK, &commit);
                let signature = github_signature(&secret, body.as_bytes());
                let answer = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .header("user-agent", "GitHub-Hookshot/bench")
                    .header("x-github-event", "push")
                    .header("x-github-delivery", new_delivery_id())
                    .header("x-hub-signature-256", signature)
                    .body(body)
                    .send()
                    .await;
                let outcome = match answer {
                    Ok(response) if response.status().as_u16() == 202 => {
                        // The body is read so the connection can carry the next request.
                        response
                            .bytes()
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        Err(format!(
                            "{status}: {}",
                            text.chars().take(200).collect::<String>()
                        ))
                    }
                    Err(error) => Err(error.to_string()),
                };
                if !counting.load(Ordering::Relaxed) {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_failure
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        first.get_or_insert(error);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(window).await;
    counting.store(false, Ordering::Relaxed);
    let measured = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let first_failure = first_failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    LoadResult {
        accepted: accepted.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        window: measured,
        first_failure,
    }
}
