//! Benchmark 3, end to end against the plain CLI: on the same repository and Dockerfile, in
//! the same run, the time from a push to its image in the registry through Slipway, against
//! `git clone --depth 1 --branch main URL && docker build && docker push` run by hand (the
//! CLI's default builder; the engine here has no buildx, so both use the classic builder).
//!
//! Each round uses a repository of its own, so no round reuses another's layers. Within a
//! round: the CLI builds cold and its image is removed (with its intermediate layers, which
//! are the classic builder's cache); then Slipway builds the same commit cold; then a second
//! commit on the same branch, which changes one small file, goes through Slipway (incremental
//! mirror fetch and the layer cache) and, for reference, through the CLI again with its cache
//! warm.

use std::process::Command;
use std::time::Instant;

use slipway_e2e::{
    GIT_USER, GitHttpServer, RepoFile, RepoHandle, Rule, Slipway, new_delivery_id, unique_name,
};

use crate::report::{Report, Row, median, millis};
use crate::{
    Context, GIT_PASSWORD_ENV, SECRET_ENV, api_time_millis, git_repository_config,
    wall_clock_millis,
};

/// Files of the application: a few MiB of sources, then a step that does real work and makes
/// a 32 MiB layer, then the small part that changes between the two commits.
fn files(round: &str, version: u32, base_image: &str) -> Vec<RepoFile> {
    let dockerfile = format!(
        "FROM {base_image}\n\
         COPY data/ /data/\n\
         RUN for i in 1 2 3 4 5 6 7 8; do dd if=/dev/urandom of=/data/blob$i bs=1M count=4 2>/dev/null; done \\\n\
          && sha256sum /data/* > /checksums\n\
         COPY app/ /app/\n"
    );
    let mut files = vec![
        RepoFile::text("Dockerfile", &dockerfile),
        RepoFile::text("app/version", &format!("{round} {version}\n")),
    ];
    // Text that compresses about as well as source code does: 4 MiB in eight files.
    for part in 0..8 {
        let mut text = String::with_capacity(512 * 1024);
        let mut n: u64 = 0x9e37_79b9 ^ (part as u64) ^ round.len() as u64;
        while text.len() < 512 * 1024 {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(&format!("let value_{:x} = {};\n", n >> 40, n % 1000));
        }
        text.push_str(round);
        files.push(RepoFile::text(&format!("data/part{part}.rs"), &text));
    }
    files
}

pub fn run(context: &Context, report: &mut Report) {
    let rounds = if context.quick { 1 } else { 3 };
    report.section(
        "3. End to end against the plain CLI",
        &format!(
            "Push to image in the registry: Slipway (webhook sent → build finished with every \
             tag pushed) against `git clone --depth 1 --branch main && docker build && docker \
             push` on the same repository, Dockerfile, engine and registry. Median of {rounds} \
             round(s). Baseline: the CLI's cold build. Ratio: Slipway ÷ CLI cold (lower is \
             better)."
        ),
    );
    let mut cli_cold = Vec::new();
    let mut cli_warm = Vec::new();
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut timelines = Vec::new();
    for _ in 0..rounds {
        let round = measure_round(context);
        timelines.push((round.first_phases.clone(), round.second_phases.clone()));
        cli_cold.push(round.cli_cold);
        cli_warm.push(round.cli_warm);
        first.push(round.slipway_first);
        second.push(round.slipway_second);
    }
    let (cli_cold, cli_warm) = (median(&cli_cold), median(&cli_warm));
    let (first, second) = (median(&first), median(&second));
    report.row(
        Row::new("first build of a commit", millis(first))
            .baseline(millis(cli_cold), first / cli_cold)
            .goal("within 10% of the CLI", first <= cli_cold * 1.1),
    );
    report.row(
        Row::new(
            "second commit on the branch (one small file changed)",
            millis(second),
        )
        .baseline(millis(cli_cold), second / cli_cold)
        .goal("≤ half the CLI's cold time", second <= cli_cold * 0.5),
    );
    report.row(
        Row::new(
            "second commit, against the CLI with its layer cache warm",
            millis(second),
        )
        .baseline(millis(cli_warm), second / cli_warm),
    );
    for (round, (first, second)) in timelines.iter().enumerate() {
        report.note(format!(
            "Round {}: the first build's timeline: {first}; the second's: {second}.",
            round + 1
        ));
    }
}

struct Round {
    cli_cold: f64,
    cli_warm: f64,
    slipway_first: f64,
    slipway_second: f64,
    /// The builds' timelines, for the report.
    first_phases: String,
    second_phases: String,
}

fn measure_round(context: &Context) -> Round {
    let git = GitHttpServer::start(GIT_USER, &format!("git-{}", uuid::Uuid::new_v4().simple()));
    let repo = git.create_repo(&format!("bench/{}", unique_name("versus-cli")));
    let round = uuid::Uuid::new_v4().simple().to_string();
    let base_image = &context.rig.base_image;
    repo.commit("The app", &files(&round, 1, base_image));
    let image = format!("{}/{}", context.rig.registry, repo.name());
    let cli_image = format!("{image}-cli:latest");

    let cli_cold = cli_build(&repo, &git, &cli_image);
    docker(&["rmi", &cli_image]);

    let secret = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = git_repository_config(&repo, &image, vec![Rule::branch("main", "latest")]);
    let slipway = Slipway::builder(&config)
        .env(SECRET_ENV, &secret)
        .env(GIT_PASSWORD_ENV, git.password())
        .start();
    let first_commit = repo.ref_target("refs/heads/main").expect("main exists");
    let (slipway_first, first_phases) =
        push_through_slipway(&slipway, &repo, slipway_e2e::ZERO_ID, &secret);

    repo.commit(
        "Bump the version",
        &[RepoFile::text("app/version", &format!("{round} 2\n"))],
    );
    let (slipway_second, second_phases) =
        push_through_slipway(&slipway, &repo, &first_commit, &secret);
    drop(slipway);

    // The CLI again on the second commit with its layer cache warm: its cold build's layers
    // were removed above, so the first commit is built again (untimed) first.
    let cli_warm = {
        let warm_image = format!("{image}-cli-warm:latest");
        cli_build_at(&repo, &git, &warm_image, &first_commit);
        let time = cli_build(&repo, &git, &warm_image);
        docker(&["rmi", &warm_image]);
        time
    };
    // Slipway's own copy of the image, if its engine kept one, goes too.
    let _ = Command::new("docker")
        .args(["rmi", &format!("{image}:latest")])
        .output();
    Round {
        cli_cold,
        cli_warm,
        slipway_first,
        slipway_second,
        first_phases,
        second_phases,
    }
}

/// Sends the push of `main` (from `before`) and waits for its build; returns milliseconds from
/// sending the webhook to the build's end as the server recorded it.
fn push_through_slipway(
    slipway: &Slipway,
    repo: &RepoHandle,
    before: &str,
    secret: &str,
) -> (f64, String) {
    let after = repo.ref_target("refs/heads/main").expect("main exists");
    let info = repo.commit_info(&after);
    let body = slipway_e2e::github_push_payload(
        repo.name(),
        "refs/heads/main",
        before,
        &after,
        Some(&info),
    );
    let sent = wall_clock_millis();
    let started = Instant::now();
    let answer = slipway.post_hook(repo.name(), "push", &new_delivery_id(), &body, Some(secret));
    answer.assert_status(202);
    let id = answer.single_build_id();
    let build = slipway.wait_for_success(&id);
    let finished = build["finished_at"].as_str().and_then(api_time_millis);
    // The server's own end time, not when the poll noticed it; the poll's time otherwise.
    let total = finished.map_or_else(
        || started.elapsed().as_secs_f64() * 1000.0,
        |finished| finished - sent,
    );
    (total, phases(&build))
}

/// How long the build spent in each state of its timeline: `queued 12 ms, cloning 80 ms, …`.
fn phases(build: &serde_json::Value) -> String {
    build["timeline"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| {
                    let state = entry["state"].as_str()?;
                    let ms = entry["duration_ms"].as_i64()?;
                    Some(format!("{state} {ms} ms"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `git clone --depth 1 --branch main && docker build && docker push` of the branch's head,
/// timed as a whole, in milliseconds.
fn cli_build(repo: &RepoHandle, git: &GitHttpServer, image: &str) -> f64 {
    let dir = tempfile::tempdir().expect("a directory for the clone");
    let checkout = dir.path().join("checkout");
    let url = repo.url_with_credentials(git.username(), git.password());
    let started = Instant::now();
    run_command(
        Command::new("git")
            .args(["clone", "--quiet", "--depth", "1", "--branch", "main", &url])
            .arg(&checkout),
    );
    run_command(
        Command::new("docker")
            .args(["build", "--quiet", "-t", image])
            .arg(&checkout),
    );
    run_command(Command::new("docker").args(["push", "--quiet", image]));
    started.elapsed().as_secs_f64() * 1000.0
}

/// A CLI build of `commit` (not timed), to warm the engine's layer cache.
fn cli_build_at(repo: &RepoHandle, git: &GitHttpServer, image: &str, commit: &str) {
    let dir = tempfile::tempdir().expect("a directory for the clone");
    let checkout = dir.path().join("checkout");
    let url = repo.url_with_credentials(git.username(), git.password());
    run_command(
        Command::new("git")
            .args(["clone", "--quiet", &url])
            .arg(&checkout),
    );
    run_command(
        Command::new("git")
            .arg("-C")
            .arg(&checkout)
            .args(["checkout", "--quiet", commit]),
    );
    run_command(
        Command::new("docker")
            .args(["build", "--quiet", "-t", image])
            .arg(&checkout),
    );
}

fn docker(args: &[&str]) {
    run_command(Command::new("docker").args(args));
}

fn run_command(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
