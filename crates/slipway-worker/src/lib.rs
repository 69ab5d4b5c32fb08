//! The worker: claims queued builds, runs each under a lease kept alive by heartbeats, stores
//! the log as it streams, and records how the build ended.
//!
//! **Invariants:**
//! - A build is owned by at most one worker at a time (the store's lease); a worker that loses
//!   its lease stops the build and records nothing further.
//! - A panic while running one build fails that build only.
//! - A build's log is stored completely before its final status is recorded, so a finished
//!   build always has its whole log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use slipway_build::{
    BuildError, BuildJob, BuildLog, BuildOutcome, Engine, FailureKind, GitAuth, GitSource,
    GuardFuture, LogReceiver, Phase, PushGuard, RegistryAuth, ResourceLimits, TagHolder, Workspace,
    run_build,
};
use slipway_core::health::Health;
use slipway_core::{BuildStatus, ImageName};
use slipway_store::{BuildRecord, BuildResult, Lease, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

/// How a worker process behaves.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This worker's identity in leases; unique per process.
    pub owner_id: String,
    /// How many builds run at once.
    pub slots: usize,
    /// How long a claim stays valid without a heartbeat.
    pub lease: Duration,
    /// How often a running build renews its lease.
    pub heartbeat_every: Duration,
    /// How often to look for work when no wake-up arrives (the fallback, not the main path).
    pub poll_every: Duration,
    /// How many times a build may be claimed before a lost worker's build is failed.
    pub max_attempts: u32,
    /// On shutdown, how long running builds may go on before they are handed back to the
    /// queue for another worker.
    pub shutdown_grace: Duration,
    /// Git mirrors beyond this size are evicted, least recently used first.
    pub mirror_cache_bytes: u64,
    /// Images Slipway built beyond this size are evicted, oldest first.
    pub image_cache_bytes: u64,
    /// How often the janitor looks.
    pub janitor_every: Duration,
}

impl WorkerSettings {
    pub fn new(owner_id: String, slots: usize) -> Self {
        Self {
            owner_id,
            slots: slots.max(1),
            lease: Duration::from_secs(60),
            // Heartbeats also carry cancellations, so they are frequent enough for a cancel to
            // take effect within seconds, yet a small fraction of the lease.
            heartbeat_every: Duration::from_secs(3),
            poll_every: Duration::from_secs(2),
            max_attempts: 3,
            shutdown_grace: Duration::from_secs(30),
            mirror_cache_bytes: 10 << 30,
            image_cache_bytes: 20 << 30,
            janitor_every: Duration::from_secs(600),
        }
    }

    /// Sets the lease, and a heartbeat interval that fits well inside it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self.heartbeat_every =
            (self.lease / 4).clamp(Duration::from_millis(250), Duration::from_secs(3));
        self
    }
}

/// What the configuration says about reaching a repository's code and a registry. Secrets
/// live here, in memory, never in the database.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Keyed by `owner/name`.
    pub repositories: HashMap<String, GitSource>,
    /// Keyed by registry host (`127.0.0.1:5000`).
    pub registries: HashMap<String, RegistryAuth>,
}

/// Where a repository managed through the API is fetched from, with the credentials stored
/// for it; `None` when it is not such a repository (configured ones carry their access in the
/// configuration). Workers and the trigger URLs' `ls-remote` both use it.
pub async fn stored_git_source(
    store: &Store,
    name: &str,
) -> Result<Option<GitSource>, slipway_store::StoreError> {
    let (Some(repository), Some(credentials)) = (
        store.repository_by_name(name).await?,
        store.stored_credentials(name).await?,
    ) else {
        return Ok(None);
    };
    let auth = match credentials.git_password {
        Some(password) => GitAuth::Basic {
            username: credentials.git_username.unwrap_or_else(|| "git".to_owned()),
            password,
        },
        None => GitAuth::None,
    };
    Ok(Some(GitSource {
        url: repository.git_url,
        auth,
        ssh_host_key: None,
    }))
}

/// A worker process's claim loop and its running builds.
#[derive(Debug, Clone)]
pub struct Worker {
    store: Store,
    engine: Engine,
    workspace: Workspace,
    access: Arc<Access>,
    settings: WorkerSettings,
    health: Arc<Health>,
}

impl Worker {
    pub fn new(
        store: Store,
        engine: Engine,
        workspace: Workspace,
        access: Access,
        settings: WorkerSettings,
    ) -> Self {
        Self {
            store,
            engine,
            workspace,
            access: Arc::new(access),
            settings,
            health: Arc::default(),
        }
    }

    /// Reports into `health` (shared with `/healthz`) instead of a health of its own.
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = health;
        self
    }

    /// This worker's health: unhealthy, with the reason, while its engine does not answer.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Claims and runs builds until `shutdown` fires, then waits for the running builds.
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.settings.slots));
        let drain = CancellationToken::new();
        {
            let (shutdown, drain, grace) = (
                shutdown.clone(),
                drain.clone(),
                self.settings.shutdown_grace,
            );
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
                drain.cancel();
            });
        }
        let mut running = JoinSet::new();
        running.spawn(self.clone().reap_loop(shutdown.clone()));
        running.spawn(self.clone().janitor_loop(shutdown.clone()));
        running.spawn(self.clone().report_loop(shutdown.clone()));
        info!(owner = %self.settings.owner_id, slots = self.settings.slots, "worker started");
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = shutdown.cancelled() => break,
            };
            let Some((build, claim)) = self.next_build(&shutdown).await else {
                break;
            };
            let worker = self.clone();
            let drain = drain.clone();
            running.spawn(async move {
                worker.run_claimed(build, claim, drain).await;
                drop(permit);
            });
            // Reap finished tasks so the set does not grow without bound.
            while running.try_join_next().is_some() {}
        }
        info!(grace = ?self.settings.shutdown_grace, "worker stopping: no more claims; running builds may finish within the grace period");
        while running.join_next().await.is_some() {}
    }

    /// Waits for a claimable build: woken at once when this process queues one, and polling
    /// as a fallback for builds queued by other processes.
    /// Returns the claimed build and the claim's own lease token: unique per claim, so that
    /// even this process re-claiming a reaped build in another slot holds a different lease.
    async fn next_build(&self, shutdown: &CancellationToken) -> Option<(BuildRecord, String)> {
        let notifier = self.store.queued_notifier();
        loop {
            // Registering interest before the claim attempt means a build queued between the
            // attempt and the wait still wakes us.
            let notified = notifier.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The circuit breaker: while the engine does not answer, claiming would only burn
            // builds' attempts, so the worker waits, reports itself unhealthy, and checks again.
            if let Err(e) = self.engine.ping().await {
                if self
                    .health
                    .set_unhealthy(format!("the Docker engine does not answer: {}", e.message))
                {
                    warn!(error = %e.message, "the Docker engine does not answer; not claiming builds until it does");
                }
                tokio::select! {
                    () = tokio::time::sleep(self.settings.poll_every) => continue,
                    () = shutdown.cancelled() => return None,
                }
            }
            if self.health.set_healthy() {
                info!("the Docker engine answers again; claiming builds");
            }
            let claim = format!(
                "{}/{}",
                self.settings.owner_id,
                uuid::Uuid::new_v4().simple()
            );
            match self.store.claim_build(&claim, self.settings.lease).await {
                Ok(Some(build)) => return Some((build, claim)),
                Ok(None) => {}
                Err(e) => warn!(error = %e, "claiming a build failed; trying again"),
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(self.settings.poll_every) => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// Reports this worker and its health to the database every few seconds, so that the API
    /// (served by any process) can show it; forgets it on shutdown.
    async fn report_loop(self, shutdown: CancellationToken) {
        let hostname = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let started_at = slipway_store::now_millis();
        loop {
            let record = slipway_store::WorkerRecord {
                id: self.settings.owner_id.clone(),
                hostname: hostname.clone(),
                slots: i64::try_from(self.settings.slots).unwrap_or(i64::MAX),
                started_at,
                last_seen_at: slipway_store::now_millis(),
                problem: self.health.problem(),
            };
            if let Err(e) = self.store.report_worker(&record).await {
                warn!(error = %e, "reporting this worker's health failed");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
                () = shutdown.cancelled() => {
                    let _ = self.store.forget_worker(&self.settings.owner_id).await;
                    return;
                }
            }
        }
    }

    /// Keeps the disk bounded: evicts mirrors and images over their limits, prunes Slipway's
    /// dangling images.
    async fn janitor_loop(self, shutdown: CancellationToken) {
        loop {
            // The first clean-up waits an interval too: a process that just started has little
            // to clean, and many starting at once should not all sweep a shared engine.
            tokio::select! {
                () = tokio::time::sleep(self.settings.janitor_every) => {}
                () = shutdown.cancelled() => return,
            }
            let workspace = self.workspace.clone();
            let limit = self.settings.mirror_cache_bytes;
            match tokio::task::spawn_blocking(move || workspace.evict_mirrors(limit)).await {
                Ok(Ok(cleaned)) if !cleaned.mirrors_removed.is_empty() => {
                    info!(
                        mirrors = cleaned.mirrors_removed.len(),
                        bytes = cleaned.bytes_freed,
                        "evicted least recently used git mirrors"
                    );
                }
                Ok(Err(e)) => warn!(error = %e, "evicting git mirrors failed"),
                _ => {}
            }
            let cleaned = self
                .engine
                .evict_images(self.settings.image_cache_bytes)
                .await;
            if cleaned.images_removed > 0 {
                info!(
                    images = cleaned.images_removed,
                    bytes = cleaned.bytes_freed,
                    "removed old and dangling build images"
                );
            }
        }
    }

    async fn reap_loop(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.settings.lease / 2) => {}
                () = shutdown.cancelled() => return,
            }
            match self
                .store
                .reap_expired_leases(self.settings.max_attempts)
                .await
            {
                Ok(0) => {}
                Ok(count) => info!(
                    count,
                    "re-queued or failed builds whose worker stopped responding"
                ),
                Err(e) => warn!(error = %e, "reaping expired leases failed"),
            }
        }
    }

    async fn run_claimed(&self, build: BuildRecord, claim: String, drain: CancellationToken) {
        let span = info_span!("build", build_id = %build.id, repository = %build.repository);
        async {
            info!(git_ref = %build.git_ref, commit = %build.commit, "build started");
            // For /metrics; a failure to count never stops the build.
            if let Err(e) = self.store.observe_claim(&build).await {
                warn!(error = %e, "counting the build's queue wait for /metrics failed");
            }
            let (phases, mut phase_receiver) = tokio::sync::mpsc::unbounded_channel();
            let (log, receiver) = BuildLog::channel(256);
            let log = log.with_phases(phases);
            let phase_writer = {
                let (store, id, attempt) = (self.store.clone(), build.id, build.attempts);
                tokio::spawn(async move {
                    while let Some(phase) = phase_receiver.recv().await {
                        let phase: Phase = phase;
                        if let Err(e) = store.record_build_event(id, attempt, phase.as_str()).await {
                            warn!(error = %e, "recording a build phase failed; the timeline misses it");
                        }
                    }
                })
            };
            let first_seq = self.store.last_log_seq(build.id).await.unwrap_or(0);
            let log_writer = tokio::spawn(store_log(self.store.clone(), build.id, first_seq, receiver));
            let stop = Stop::default();
            // After a shutdown's grace period, a build still running is handed back.
            let drained = {
                let (stop, drain) = (stop.clone(), drain.clone());
                tokio::spawn(async move {
                    drain.cancelled().await;
                    stop.stop(StopReason::ShutDown);
                })
            };
            let heartbeat = tokio::spawn(self.clone().heartbeat(build.id, claim.clone(), stop.clone()));

            let outcome = match self.job_for(&build).await {
                Ok(job) => {
                    if build.trigger == "reconciler" {
                        log.line("slipway: queued by the reconciler: the remote has this commit, but no webhook announced it").await;
                    }
                    log.line(format!(
                        "slipway: building {} at {} for {} tag(s): {}",
                        build.git_ref,
                        build.commit,
                        build.tags.len(),
                        build.tags.join(", ")
                    ))
                    .await;
                    self.execute(job, &build, log.clone(), &stop).await
                }
                Err(e) => Err(e),
            };
            heartbeat.abort();
            drained.abort();
            let finish = match (stop.reason(), outcome) {
                (Some(StopReason::ShutDown), _) => {
                    drained.abort();
                    log.line("slipway: this worker is shutting down; the build goes back to the queue for another worker").await;
                    drop(log);
                    let _ = log_writer.await;
                    match self.store.hand_back(build.id, &claim).await {
                        Ok(true) => info!("build handed back to the queue"),
                        Ok(false) => warn!("the build's lease had already passed on"),
                        Err(e) => error!(error = %e, "handing the build back failed; the reaper will"),
                    }
                    return;
                }
                (Some(StopReason::LeaseLost), _) => {
                    // The build's log now belongs to its new owner: stop writing into it.
                    log_writer.abort();
                    warn!("lease lost while building; leaving the build to its new owner");
                    return;
                }
                (Some(StopReason::Cancelled), _) => {
                    // Whoever asked for the stop wrote the reason into the build.
                    let reason = self
                        .store
                        .build(build.id)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|b| b.error)
                        .unwrap_or_else(|| "cancelled".to_owned());
                    log.line(format!("slipway: build stopped: {reason}")).await;
                    Finish::Done(BuildResult { status: BuildStatus::Cancelled, error: Some(reason), digest: None })
                }
                (None, Ok(BuildOutcome::Pushed(output))) => {
                    for (tag, reason) in &output.withheld {
                        log.line(format!("slipway: tag {tag} was not pushed: {reason}")).await;
                    }
                    log.line(format!("slipway: build succeeded, digest {}", output.digest)).await;
                    Finish::Done(BuildResult { status: BuildStatus::Succeeded, error: None, digest: Some(output.digest) })
                }
                (None, Ok(BuildOutcome::Skipped(reason))) => {
                    log.line(format!("slipway: build skipped: {reason}")).await;
                    Finish::Done(BuildResult { status: BuildStatus::Skipped, error: Some(reason), digest: None })
                }
                (None, Err(e))
                    if e.kind == FailureKind::Infrastructure && build.attempts < i64::from(self.settings.max_attempts) =>
                {
                    let delay = backoff(build.attempts);
                    let error = format!(
                        "attempt {} of {} failed (infrastructure): {}; trying again in {}",
                        build.attempts,
                        self.settings.max_attempts,
                        e.message,
                        describe_duration(delay)
                    );
                    log.line(format!("slipway: {error}")).await;
                    let not_before = slipway_store::now_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                    Finish::Retry { error, not_before }
                }
                (None, Err(e)) => {
                    let whose = match e.kind {
                        FailureKind::User => String::new(),
                        FailureKind::Infrastructure => format!(" (infrastructure, attempt {} of {})", build.attempts, self.settings.max_attempts),
                    };
                    log.line(format!("slipway: build failed{whose}: {}", e.message)).await;
                    match e.kind {
                        FailureKind::User => Finish::Done(BuildResult { status: BuildStatus::Failed, error: Some(e.message), digest: None }),
                        FailureKind::Infrastructure => Finish::InfrastructureFailure(e.message),
                    }
                }
            };
            drop(log);
            if let Err(e) = log_writer.await {
                warn!(error = %e, "the log writer stopped early");
            }
            // The phases are stored before the end, so a timeline never shows a phase after
            // the build finished.
            let _ = phase_writer.await;
            let (result, recorded) = match finish {
                Finish::Done(result) => {
                    let recorded = self.store.finish_build(build.id, &claim, &result).await;
                    (result, recorded)
                }
                Finish::InfrastructureFailure(error) => {
                    // Recorded apart from the commit's own failures, so that a commit status
                    // can say the commit was not judged.
                    let recorded = self.store.fail_build_for_infrastructure(build.id, &claim, &error).await;
                    (BuildResult { status: BuildStatus::Failed, error: Some(error), digest: None }, recorded)
                }
                Finish::Retry { error, not_before } => {
                    match self.store.requeue_build(build.id, &claim, &error, not_before).await {
                        Ok(true) => info!(%error, "build queued again after an infrastructure failure"),
                        Ok(false) => warn!("the build's lease had passed to another owner; not queued again"),
                        Err(e) => error!(error = %e, "queueing the build again failed; the reaper will"),
                    }
                    return;
                }
            };
            match recorded {
                Ok(true) => {
                    info!(status = %result.status, "build finished");
                    // For /metrics; a failure to count changes nothing about the build.
                    if let Err(e) = self.store.observe_finish(&build, result.status, slipway_store::now_millis()).await {
                        warn!(error = %e, "counting the finished build for /metrics failed");
                    }
                }
                Ok(false) => warn!("build finished, but its lease had passed to another owner; result dropped"),
                Err(e) => error!(error = %e, "recording the build result failed; the reaper will retry the build"),
            }
        }
        .instrument(span)
        .await;
    }

    /// Runs the build on its own task, so that a panic inside it becomes a failed build
    /// instead of taking the worker down; a stop request aborts it.
    async fn execute(
        &self,
        job: BuildJob,
        build: &BuildRecord,
        log: BuildLog,
        stop: &Stop,
    ) -> Result<BuildOutcome, BuildError> {
        let (workspace, engine) = (self.workspace.clone(), self.engine.clone());
        let guard = TagGuard {
            store: self.store.clone(),
            build: build.clone(),
            id: build.id.to_string(),
        };
        let mut task =
            tokio::spawn(async move { run_build(&job, &workspace, &engine, &guard, &log).await });
        let timeout = Duration::from_secs(u64::try_from(build.timeout_secs).unwrap_or(3600).max(1));
        tokio::select! {
            joined = &mut task => match joined {
                Ok(result) => result,
                Err(e) if e.is_panic() => Err(BuildError::infrastructure("internal error: the build panicked; see the worker's log")),
                Err(e) => Err(BuildError::infrastructure(format!("the build task ended unexpectedly: {e}"))),
            },
            () = tokio::time::sleep(timeout) => {
                task.abort();
                Err(BuildError::user(format!(
                    "the build ran longer than the repository's timeout of {} and was stopped (build_timeout)",
                    describe_duration(timeout)
                )))
            }
            () = stop.token.cancelled() => {
                // Aborting drops the engine's build stream, which makes the engine stop the
                // build and remove its intermediate containers (`forcerm`).
                task.abort();
                Err(BuildError::infrastructure("stopped"))
            }
        }
    }

    async fn heartbeat(self, build_id: uuid::Uuid, claim: String, stop: Stop) {
        loop {
            tokio::time::sleep(self.settings.heartbeat_every).await;
            match self
                .store
                .heartbeat(build_id, &claim, self.settings.lease)
                .await
            {
                Ok(Lease::Held) => {}
                Ok(Lease::CancelRequested) => return stop.stop(StopReason::Cancelled),
                Ok(Lease::Lost) => return stop.stop(StopReason::LeaseLost),
                // A database hiccup is not a lost lease; the next beat may succeed before the
                // lease runs out.
                Err(e) => warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    /// Where an API-managed repository is fetched from, with its stored credentials.
    async fn stored_source(&self, name: &str) -> Result<GitSource, BuildError> {
        match stored_git_source(&self.store, name).await {
            Ok(Some(source)) => Ok(source),
            Ok(None) => Err(BuildError::user(format!(
                "repository {name} is neither in this worker's configuration nor managed through the API"
            ))),
            Err(e) => Err(BuildError::infrastructure(format!(
                "cannot read repository {name}: {e}"
            ))),
        }
    }

    /// Combines the stored build with the access to its repository (from the configuration,
    /// or from the database for repositories managed through the API) and its registry.
    async fn job_for(&self, build: &BuildRecord) -> Result<BuildJob, BuildError> {
        let name = build.repository.to_string();
        let source = match self.access.repositories.get(&name) {
            Some(source) => source.clone(),
            None => self.stored_source(&name).await?,
        };
        let image: ImageName = build
            .image
            .parse()
            .map_err(|e: String| BuildError::user(format!("stored image name is invalid: {e}")))?;
        let registry_auth = self.access.registries.get(image.registry()).cloned();
        Ok(BuildJob {
            build_id: build.id.to_string(),
            repository: name,
            source,
            git_ref: build.git_ref.clone(),
            commit: build.commit.clone(),
            before: build.before.clone(),
            message_checked: build.message_checked,
            options: build.options.clone(),
            limits: ResourceLimits {
                memory_bytes: u64::try_from(build.memory_limit_bytes)
                    .ok()
                    .filter(|m| *m > 0),
                cpu_millis: u64::try_from(build.cpu_limit_millis)
                    .ok()
                    .filter(|c| *c > 0),
                max_context_bytes: u64::try_from(build.max_context_bytes).unwrap_or(u64::MAX),
            },
            image,
            tags: build.tags.clone(),
            dockerfile: build.dockerfile.clone(),
            context: build.context.clone(),
            registry_auth,
        })
    }
}

/// Why a running build was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// Someone asked it to stop (a newer push superseded it, or a cancel).
    Cancelled,
    /// Another worker owns it now.
    LeaseLost,
    /// This worker is shutting down and the grace period is over.
    ShutDown,
}

/// A stop signal with its reason, shared between the heartbeat and the build.
#[derive(Debug, Clone, Default)]
struct Stop {
    token: CancellationToken,
    reason: Arc<std::sync::OnceLock<StopReason>>,
}

impl Stop {
    fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }
}

/// Lets a build push a tag only if no build of a newer push to the same ref already did.
struct TagGuard {
    store: Store,
    build: BuildRecord,
    /// The build id as text, as the tag table stores it.
    id: String,
}

impl TagGuard {
    fn store_error(what: &str, error: slipway_store::StoreError) -> BuildError {
        BuildError::infrastructure(format!("cannot {what}: {error}"))
    }
}

impl PushGuard for TagGuard {
    fn me(&self) -> (&str, &str, &str, i64) {
        (
            self.id.as_str(),
            self.build.git_ref.as_str(),
            self.build.commit.as_str(),
            self.build.queued_at,
        )
    }

    fn cancelled(&self) -> GuardFuture<'_, bool> {
        Box::pin(async move {
            self.store
                .cancel_requested(self.build.id)
                .await
                .map_err(|e| Self::store_error("check whether the build was cancelled", e))
        })
    }

    fn holder<'a>(&'a self, tag: &'a str) -> GuardFuture<'a, Option<TagHolder>> {
        Box::pin(async move {
            let holder = self
                .store
                .tag_holder(&self.build.image, tag)
                .await
                .map_err(|e| Self::store_error("check who holds the tag", e))?;
            Ok(holder.map(|h| TagHolder {
                build_id: h.build_id,
                git_ref: h.git_ref,
                commit: h.commit_sha,
                queued_at: h.build_queued_at,
                pushed: h.pushed,
                running: h.holder_running,
            }))
        })
    }

    fn take<'a>(&'a self, tag: &'a str, expected: Option<&'a str>) -> GuardFuture<'a, bool> {
        Box::pin(async move {
            self.store
                .take_tag(&self.build, tag, expected)
                .await
                .map_err(|e| Self::store_error("take the tag", e))
        })
    }

    fn pushed<'a>(&'a self, tag: &'a str) -> GuardFuture<'a, ()> {
        Box::pin(async move {
            self.store
                .tag_pushed(&self.build.image, tag, self.build.id)
                .await
                .map_err(|e| Self::store_error("record the pushed tag", e))
        })
    }
}

/// How a build's run ends for the store.
enum Finish {
    Done(BuildResult),
    /// An infrastructure failure on the last attempt: failed, and recorded as the
    /// infrastructure's doing.
    InfrastructureFailure(String),
    /// An infrastructure failure with attempts left: back to the queue after a backoff.
    Retry {
        error: String,
        not_before: i64,
    },
}

/// The wait before attempt `attempts + 1`: 10 s, doubling, at most 10 minutes.
fn backoff(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    Duration::from_secs(10u64.saturating_mul(1 << exponent)).min(Duration::from_secs(600))
}

/// "90 min", "45 s": durations as people write them.
fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 && seconds.is_multiple_of(60) {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}

/// Drains the log channel into the store. Whatever arrived while the previous chunk was being
/// written goes into the next one, so a fast build writes few large chunks and a slow one
/// shows up line by line.
async fn store_log(store: Store, build_id: uuid::Uuid, seq: i64, receiver: LogReceiver) {
    store_log_capped(store, build_id, seq, receiver, MAX_LOG_BYTES).await;
}

/// The most log one build may store; past it the rest is dropped with a note, so a runaway
/// step (`RUN yes`) cannot fill the database. Generous enough for very chatty builds.
const MAX_LOG_BYTES: u64 = 2 << 30;

async fn store_log_capped(
    store: Store,
    build_id: uuid::Uuid,
    mut seq: i64,
    mut receiver: LogReceiver,
    cap: u64,
) {
    const MAX_CHUNK: usize = 256 * 1024;
    let mut stored: u64 = 0;
    while let Some(first) = receiver.recv().await {
        if stored >= cap {
            // Keep draining so the build is never blocked on its log.
            continue;
        }
        let mut chunk: Vec<u8> = first.to_vec();
        while chunk.len() < MAX_CHUNK {
            match receiver.try_recv() {
                Ok(more) => chunk.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        let room = usize::try_from(cap - stored).unwrap_or(usize::MAX);
        chunk.truncate(room);
        stored = stored.saturating_add(chunk.len() as u64);
        if stored >= cap {
            chunk.extend_from_slice(
                format!("\n[slipway: the log reached its limit of {} MiB; the rest of it is not kept]\n", cap >> 20).as_bytes(),
            );
        }
        seq += 1;
        if let Err(e) = append_with_retry(&store, build_id, seq, Bytes::from(chunk)).await {
            warn!(error = %e, "storing a log chunk failed; it is lost");
        }
    }
}

async fn append_with_retry(
    store: &Store,
    build_id: uuid::Uuid,
    seq: i64,
    data: Bytes,
) -> Result<(), slipway_store::StoreError> {
    let mut delay = Duration::from_millis(100);
    for _ in 0..4 {
        match store.append_log(build_id, seq, &data).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                warn!(error = %e, "storing a log chunk failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    store.append_log(build_id, seq, &data).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_runaway_log_is_cut_at_its_cap_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let spec = slipway_store::RepositorySpec {
            name: "acme/web".parse().expect("name"),
            provider: "github".parse().expect("provider"),
            git_url: "file:///nowhere".to_owned(),
            image: "127.0.0.1:5000/acme/web".parse().expect("image"),
            rules: Vec::new(),
            allow_unsigned: false,
            allow_legacy_sha1: false,
            supersede_running: false,
            build_timeout_secs: 60,
            limits: Default::default(),
            anonymous_read: false,
            status: Default::default(),
            forge_repository: None,
        };
        store
            .sync_repositories(std::slice::from_ref(&spec))
            .await
            .expect("sync");
        let repo = store
            .repository_by_name("acme/web")
            .await
            .expect("query")
            .expect("repo");
        let id = uuid::Uuid::now_v7();
        let plan = slipway_core::BuildPlan {
            rule_index: 0,
            git_ref: slipway_core::GitRef::parse("refs/heads/main").expect("ref"),
            commit: "1".repeat(40).parse().expect("commit"),
            tags: vec!["latest".to_owned()],
            dockerfile: "Dockerfile".to_owned(),
            context: "/".to_owned(),
            before: None,
            message_checked: true,
            options: Default::default(),
        };
        let build = slipway_store::NewBuild {
            id,
            image: spec.image.to_string(),
            plan,
            trigger: "trigger".to_owned(),
            supersedes: slipway_store::Supersede::Nothing,
        };
        store.queue_builds(repo.id, &[build]).await.expect("queue");
        let (log, receiver) = BuildLog::channel(16);
        let writer = tokio::spawn(store_log_capped(store.clone(), id, 0, receiver, 4096));
        for _ in 0..100 {
            log.line("y".repeat(99)).await;
        }
        drop(log);
        writer.await.expect("joins");
        let text: String = store
            .log_chunks(id, 0, 1000)
            .await
            .expect("chunks")
            .iter()
            .map(|c| String::from_utf8_lossy(&c.data).into_owned())
            .collect();
        assert!(
            text.len() < 4096 + 512,
            "about the cap is kept: {}",
            text.len()
        );
        assert!(text.ends_with("the rest of it is not kept]\n"), "{text}");
    }
}
