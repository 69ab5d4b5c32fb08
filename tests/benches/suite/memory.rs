//! Benchmark 6, memory: the peak resident set (`VmHWM`) of `slipway serve` on SQLite, each in
//! a fresh process: idle; under the ingest load of benchmark 1 (64 connections, while its own
//! worker works through the queued builds); and while a real build writes a 1 GiB log (64 MiB
//! with `--quick`) that three viewers follow live over Server-Sent Events from its first
//! byte. The baseline is the idle peak; the ratio is peak ÷ idle (lower is better). A log is
//! streamed, never held whole, so the streaming peak stays far below the log's size.

use std::io::Read as _;
use std::time::{Duration, Instant};

use slipway_e2e::{
    GIT_USER, GitHttpServer, RepoFile, Rule, Slipway, ZERO_ID, github_push_payload,
    new_delivery_id, unique_name,
};

use crate::ingest::{self, REPOSITORY};
use crate::load::{self, Target};
use crate::report::{Report, Row, mebibytes, per_second};
use crate::{Context, GIT_PASSWORD_ENV, SECRET_ENV, git_repository_config};

const VIEWERS: usize = 3;

pub fn run(context: &Context, report: &mut Report) {
    let log_bytes: u64 = if context.quick { 64 << 20 } else { 1 << 30 };
    report.section(
        "6. Memory",
        &format!(
            "Peak resident set (VmHWM) of `slipway serve` on SQLite, a fresh process each: idle \
             for 3 s; under benchmark 1's load at 64 connections; and while a real build writes \
             a {} log that {VIEWERS} viewers follow live from its first byte. Baseline: the \
             idle peak. Ratio: peak ÷ idle (lower is better).",
            mebibytes(log_bytes)
        ),
    );
    let secret = format!("bench-{}", uuid::Uuid::new_v4().simple());

    let idle = {
        let slipway = ingest::start(None, &secret, false);
        std::thread::sleep(Duration::from_secs(3));
        peak_rss(slipway.pid())
    };
    report.row(Row::new("idle", mebibytes(idle)).baseline(mebibytes(idle), 1.0));

    let (under_load, rate) = {
        let slipway = ingest::start(None, &secret, false);
        let target = Target {
            base_url: slipway.url(""),
            repository: REPOSITORY.to_owned(),
            secret: secret.clone(),
        };
        let window = if context.quick { 2 } else { 10 };
        let result = load::run(
            &target,
            64,
            Duration::from_millis(500),
            Duration::from_secs(window),
        );
        (peak_rss(slipway.pid()), result.rate())
    };
    report.row(
        Row::new(
            format!(
                "under ingest at 64 connections ({} accepted)",
                per_second(rate)
            ),
            mebibytes(under_load),
        )
        .baseline(mebibytes(idle), under_load as f64 / idle as f64),
    );

    let streamed = stream_big_log(context, &secret, log_bytes);
    let allowance = log_bytes / 4;
    report.row(
        Row::new(
            format!(
                "a {} log streamed live to {VIEWERS} viewers",
                mebibytes(log_bytes)
            ),
            mebibytes(streamed.peak),
        )
        .baseline(mebibytes(idle), streamed.peak as f64 / idle as f64)
        .goal(
            format!("< idle + {} (a quarter of the log)", mebibytes(allowance)),
            streamed.peak < idle + allowance,
        ),
    );
    report.note(format!(
        "The {} build took {:.1?} from the push to its end; each viewer received {} of \
         events (the log as JSON-escaped text).",
        mebibytes(log_bytes),
        streamed.build_time,
        streamed
            .received
            .iter()
            .map(|&bytes| mebibytes(bytes))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

/// The process's peak resident set so far, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read the status of process {pid}: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no VmHWM for process {pid}"))
}

struct Streamed {
    peak: u64,
    build_time: Duration,
    received: Vec<u64>,
}

/// Runs a build that prints `log_bytes` of output with viewers attached from the start, and
/// returns the server's peak resident set once the build and the streams have ended.
fn stream_big_log(context: &Context, secret: &str, log_bytes: u64) -> Streamed {
    let git = GitHttpServer::start(GIT_USER, &format!("git-{}", uuid::Uuid::new_v4().simple()));
    let repo = git.create_repo(&format!("bench/{}", unique_name("big-log")));
    let dockerfile = format!(
        "FROM {}\n\
         RUN yes 'slipway benchmark log line: the quick brown fox jumps over the lazy dog 0123456789' | head -c {log_bytes}\n",
        context.rig.base_image
    );
    let commit = repo.commit("A loud build", &[RepoFile::text("Dockerfile", &dockerfile)]);
    let info = repo.commit_info(&commit);
    let config = git_repository_config(
        &repo,
        &format!("{}/{}", context.rig.registry, repo.name()),
        vec![Rule::branch("main", "latest")],
    );
    let slipway = Slipway::builder(&config)
        .env(SECRET_ENV, secret)
        .env(GIT_PASSWORD_ENV, git.password())
        .start();

    let started = Instant::now();
    let body = github_push_payload(
        repo.name(),
        "refs/heads/main",
        ZERO_ID,
        &commit,
        Some(&info),
    );
    let answer = slipway.post_hook(repo.name(), "push", &new_delivery_id(), &body, Some(secret));
    answer.assert_status(202);
    let id = answer.single_build_id();
    let url = slipway.url(&format!("/api/builds/{id}/log/stream"));
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|_| {
            let (url, token) = (url.clone(), slipway.admin_token().to_owned());
            std::thread::spawn(move || follow(&url, &token))
        })
        .collect();
    let received: Vec<u64> = viewers
        .into_iter()
        .map(|viewer| viewer.join().expect("a viewer panicked"))
        .collect();
    // The streams end when the build has ended, so this only reads the result.
    let build = slipway.wait_for_build(&id, Duration::from_secs(60));
    let build_time = started.elapsed();
    assert_eq!(build["status"], "succeeded", "{build:#}");
    let peak = peak_rss(slipway.pid());
    Streamed {
        peak,
        build_time,
        received,
    }
}

/// Reads a live log stream to its end and returns how many bytes arrived.
fn follow(url: &str, token: &str) -> u64 {
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .expect("an HTTP client");
    let mut response = client
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "text/event-stream")
        .send()
        .expect("open the live log");
    assert!(response.status().is_success(), "{}", response.status());
    let mut buffer = vec![0_u8; 256 * 1024];
    let mut total = 0_u64;
    loop {
        match response.read(&mut buffer) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(error) => panic!("reading the live log failed after {total} bytes: {error}"),
        }
    }
}
