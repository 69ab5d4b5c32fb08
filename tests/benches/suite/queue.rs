//! Benchmark 4, queue scale: claim-and-complete throughput of builds that do nothing, with 1,
//! 2 and 4 worker processes on PostgreSQL, starting from a full queue (100,000 builds; 5,000
//! with `--quick`). Each process runs four slots, as `slipway worker --workers 4` would, and
//! makes the store calls the worker makes around a build: claim (with its lease and attempt
//! row), the queue-wait metric, the result, and the result's metrics. A build claimed twice
//! is counted from the processes' own lists and from the attempts table.

use std::collections::HashMap;
use std::io::{BufRead as _, Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::Instant;

use slipway_e2e::TestDatabase;
use slipway_store::Store;

use crate::report::{Report, Row, per_second, thousands};
use crate::{Backend, Context};

const PROCESSES: [usize; 3] = [1, 2, 4];
const SLOTS_PER_PROCESS: usize = 4;

pub fn run(context: &Context, report: &mut Report) {
    let builds: i64 = if context.quick { 5_000 } else { 100_000 };
    report.section(
        "4. Queue scale",
        &format!(
            "Builds that do nothing claimed and completed per second on PostgreSQL, from a queue \
             of {} builds, by 1, 2 and 4 worker processes of {SLOTS_PER_PROCESS} slots each. \
             Baseline: one process. Ratio: throughput ÷ one process's (how it scales). Every \
             process, PostgreSQL and the suite share the machine's cores.",
            thousands(builds as u64)
        ),
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut single = None;
    for processes in PROCESSES {
        let database = TestDatabase::create(&context.postgres_url(), "bench_queue");
        runtime.block_on(async {
            let store = Store::connect(database.url())
                .await
                .expect("open the database");
            store.migrate().await.expect("migrate");
            store
                .sync_repositories(&crate::history::fill_repositories())
                .await
                .expect("repositories");
            crate::history::fill(&store, Backend::Postgres, builds, "queued").await;
        });
        let outcome = drain(context, database.url(), processes);
        let double_in_lists = outcome.claims.values().filter(|&&count| count > 1).count();
        let (attempt_rows, builds_left, doubly_attempted) = runtime.block_on(check(database.url()));
        let rate = outcome.claimed as f64 / outcome.seconds;
        let baseline = *single.get_or_insert(rate);
        report.row(
            Row::new(
                format!("{processes} process(es) × {SLOTS_PER_PROCESS} slots"),
                per_second(rate),
            )
            .baseline(per_second(baseline), rate / baseline)
            .goal(
                format!(
                    "no double claims (lists: {double_in_lists}, attempts: {doubly_attempted})"
                ),
                double_in_lists == 0 && doubly_attempted == 0,
            ),
        );
        if builds_left > 0 || attempt_rows != builds {
            report.note(format!(
                "{processes} process(es): {builds_left} builds were left unfinished and \
                 {attempt_rows} attempts were recorded for {builds} builds"
            ));
        }
    }
}

struct Drained {
    claimed: usize,
    seconds: f64,
    /// How many times each build id was claimed, across the processes.
    claims: HashMap<String, usize>,
}

/// Starts `processes` workers, lets them go at once, and waits until they have emptied the
/// queue.
fn drain(context: &Context, url: &str, processes: usize) -> Drained {
    let mut children = Vec::with_capacity(processes);
    for index in 0..processes {
        let mut child = Command::new(&context.suite_binary)
            .args([
                "child",
                "queue-worker",
                url,
                &SLOTS_PER_PROCESS.to_string(),
                &format!("bench-worker-{index}"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a queue worker");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("the worker's stdout"));
        let mut ready = String::new();
        stdout.read_line(&mut ready).expect("read from a worker");
        assert_eq!(ready.trim(), "ready", "a queue worker did not start");
        children.push((child, stdout));
    }
    let started = Instant::now();
    for (child, _) in &mut children {
        let stdin = child.stdin.as_mut().expect("the worker's stdin");
        stdin.write_all(b"go\n").expect("start a worker");
        stdin.flush().expect("start a worker");
    }
    let mut claims: HashMap<String, usize> = HashMap::new();
    let mut claimed = 0;
    for (mut child, mut stdout) in children {
        let mut ids = String::new();
        stdout
            .read_to_string(&mut ids)
            .expect("the worker's claims");
        let status = child.wait().expect("wait for a worker");
        assert!(status.success(), "a queue worker failed: {status}");
        for id in ids.lines().filter(|line| !line.is_empty()) {
            *claims.entry(id.to_owned()).or_default() += 1;
            claimed += 1;
        }
    }
    Drained {
        claimed,
        seconds: started.elapsed().as_secs_f64(),
        claims,
    }
}

/// Attempt rows recorded, builds not finished, and builds with more than one attempt.
async fn check(url: &str) -> (i64, i64, i64) {
    let store = Store::connect(url).await.expect("open the database");
    let count = |sql: &'static str| {
        let store = store.clone();
        async move { store.count_for_tests(sql).await.expect(sql) }
    };
    (
        count("SELECT count(*) FROM build_attempts").await,
        count("SELECT count(*) FROM builds WHERE status <> 'succeeded' AND status <> 'failed'")
            .await,
        count(
            "SELECT count(*) FROM (SELECT build_id FROM build_attempts GROUP BY build_id HAVING count(*) > 1) AS doubled",
        )
        .await,
    )
}
