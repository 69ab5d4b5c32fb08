//! Running one build: fetch the commit into a per-repository bare mirror, check it out into a
//! temporary directory, apply the rule's last checks (skip markers, path filter), confine the
//! Dockerfile and context to the checkout, stream the context to the Docker Engine, build,
//! and push every tag the build may push.
//!
//! **Invariants:**
//! - The clone URL and credentials come from the caller's configuration, never from a payload.
//! - The Dockerfile and context resolve inside the checkout, symlinks included, before the
//!   engine is called.
//! - No shell sees any of it: git runs through git2, Docker through bollard.
//! - The build log is streamed to a [`BuildLog`] as it is produced, never held whole.
//! - Every tag is claimed through the [`PushGuard`] right before it is pushed, so an older
//!   build never overwrites a tag a newer push already pushed.

mod context;
mod docker;
mod error;
mod git;
mod janitor;
mod log;
mod push;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use slipway_core::filters::{BuildVariables, PathFilter, skip_marker};
use slipway_core::{BuildOptions, ImageName};

pub use context::{PreparedContext, prepare_context, stream_context};
pub use docker::{BuildSettings, Engine, RegistryAuth};
pub use error::{BuildError, FailureKind};
pub use git::{
    CheckedOut, Fetch, GitAuth, GitSource, Relation, fetch_and_checkout, on_ref, relation,
    remote_refs, strip_credentials,
};
pub use janitor::{Cleaned, REPOSITORY_LABEL, touch_mirror};
pub use log::{BuildLog, LogReceiver, Phase};
pub use push::{GuardFuture, PushGuard, TagHolder, may_push};

/// Everything a worker needs to run one build; assembled from the stored build and the
/// process's configuration.
#[derive(Debug, Clone)]
pub struct BuildJob {
    pub build_id: String,
    /// `owner/name`, used to name the mirror directory.
    pub repository: String,
    pub source: GitSource,
    /// The full ref that was pushed (`refs/heads/main`), fetched into the mirror.
    pub git_ref: String,
    /// The pushed commit (or annotated tag object, which is peeled to its commit).
    pub commit: String,
    /// The ref's previous commit, for the path filter.
    pub before: Option<String>,
    /// Whether skip markers were already checked against the forge's copy of the message.
    pub message_checked: bool,
    pub image: ImageName,
    pub tags: Vec<String>,
    pub dockerfile: String,
    pub context: String,
    pub options: BuildOptions,
    pub registry_auth: Option<RegistryAuth>,
    pub limits: ResourceLimits,
}

/// What one build may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Memory for each build step's container, in bytes; `None`: the engine's default.
    pub memory_bytes: Option<u64>,
    /// CPU for each build step's container, in thousandths of a CPU; `None`: unlimited.
    pub cpu_millis: Option<u64>,
    /// The most file content the build context may hold.
    pub max_context_bytes: u64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            memory_bytes: None,
            cpu_millis: None,
            max_context_bytes: 1 << 30,
        }
    }
}

impl BuildJob {
    /// `branch` or `tag`, and the short name, from the full ref.
    fn source(&self) -> (&'static str, &str) {
        if let Some(name) = self.git_ref.strip_prefix("refs/tags/") {
            ("tag", name)
        } else {
            (
                "branch",
                self.git_ref
                    .strip_prefix("refs/heads/")
                    .unwrap_or(&self.git_ref),
            )
        }
    }
}

/// Where builds keep their files.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Bare mirrors, one per repository, kept between builds so a repeat fetch is small.
    pub mirrors_dir: PathBuf,
    /// Parent of each build's temporary checkout.
    pub scratch_dir: PathBuf,
    /// One lock per mirror: two builds of one repository must not fetch into it at once.
    mirror_locks: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Workspace {
    /// Mirrors and checkouts under `data_dir`.
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            mirrors_dir: data_dir.join("mirrors"),
            scratch_dir: data_dir.join("scratch"),
            mirror_locks: Arc::default(),
        }
    }

    pub(crate) fn mirror_lock(&self, mirror: &std::path::Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .mirror_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(mirror.to_path_buf()).or_default().clone()
    }
}

/// How a build ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOutcome {
    /// Built and pushed (some tags may have been withheld; see [`BuildOutput`]).
    Pushed(BuildOutput),
    /// Decided, with this reason, not to build or not to push anything.
    Skipped(String),
}

/// What a successful build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutput {
    /// The commit that was built (an annotated tag peeled to its commit).
    pub commit: String,
    pub image_id: String,
    /// The manifest digest the registry reported for the pushed tags.
    pub digest: String,
    /// Tags not pushed, each with the reason.
    pub withheld: Vec<(String, String)>,
}

/// Runs one build end to end.
pub async fn run_build(
    job: &BuildJob,
    workspace: &Workspace,
    engine: &Engine,
    guard: &dyn PushGuard,
    log: &BuildLog,
) -> Result<BuildOutcome, BuildError> {
    std::fs::create_dir_all(&workspace.scratch_dir).map_err(|e| {
        BuildError::infrastructure(format!(
            "cannot create the scratch directory {}: {e}",
            workspace.scratch_dir.display()
        ))
    })?;
    let checkout = tempfile::Builder::new()
        .prefix("checkout-")
        .tempdir_in(&workspace.scratch_dir)
        .map_err(|e| {
            BuildError::infrastructure(format!("cannot create a checkout directory: {e}"))
        })?;

    log.phase(Phase::Cloning);
    let checked_out = fetch(job, workspace, checkout.path(), log).await?;
    match rule_checks(job, &checked_out) {
        Checks::Skip(reason) => {
            log.line(format!("slipway: not building: {reason}")).await;
            return Ok(BuildOutcome::Skipped(reason));
        }
        Checks::Build(Some(note)) => log.line(format!("slipway: {note}")).await,
        Checks::Build(None) => {}
    }

    let mut prepared = prepare_context(checkout.path(), &job.context, &job.dockerfile)?;
    prepared.max_bytes = job.limits.max_context_bytes;
    let (source_type, source_name) = job.source();
    let variables = BuildVariables {
        source_branch: source_name.to_owned(),
        source_commit: checked_out.commit.clone(),
        commit_msg: checked_out.message.trim_end().to_owned(),
        source_type: source_type.to_owned(),
        docker_repo: job.image.to_string(),
        docker_tag: job.tags.first().cloned().unwrap_or_default(),
        dockerfile_path: prepared.dockerfile_relative.display().to_string(),
    };
    log.line(format!(
        "context: {} (Dockerfile {})",
        display_or_root(&prepared.context_relative),
        prepared.dockerfile_relative.display()
    ))
    .await;
    let mut build_args: HashMap<String, String> = variables
        .pairs()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    for (name, value) in &job.options.build_args {
        build_args.insert(name.clone(), variables.expand(value));
    }
    // Slipway's own variables are shown with their values; a rule's build args by name only,
    // because anyone who may read the log would otherwise read a token passed as one.
    let mut shown: Vec<String> = build_args
        .iter()
        .map(|(name, value)| {
            if job.options.build_args.contains_key(name) {
                format!("{name}=(set by the rule; value not shown)")
            } else {
                format!("{name}={value:?}")
            }
        })
        .collect();
    shown.sort();
    log.line(format!("build args: {}", shown.join(" "))).await;

    let mut labels: HashMap<String, String> = job
        .options
        .labels
        .iter()
        .map(|(key, value)| (key.clone(), variables.expand(value)))
        .collect();
    // Slipway's own labels come last so that no rule can make an image lie about its origin.
    labels.insert(
        "org.opencontainers.image.revision".to_owned(),
        checked_out.commit.clone(),
    );
    labels.insert(
        "org.opencontainers.image.source".to_owned(),
        strip_credentials(&job.source.url),
    );
    labels.insert("org.opencontainers.image.created".to_owned(), now_rfc3339());
    // Marks the image as Slipway's, so the janitor may evict it and leaves others' alone.
    labels.insert(REPOSITORY_LABEL.to_owned(), job.repository.clone());

    let cache_from = if job.options.cache {
        engine.cache_source(job, log).await
    } else {
        None
    };
    if !job.options.cache {
        log.line("cache: off for this rule; building every step")
            .await;
    }
    let settings = BuildSettings {
        labels,
        build_args,
        target: job.options.target.clone(),
        no_cache: !job.options.cache,
        cache_from,
        memory_bytes: job.limits.memory_bytes,
        cpu_millis: job.limits.cpu_millis,
    };
    log.phase(Phase::Building);
    let image_id = engine.build(job, &prepared, &settings, log).await?;
    log.phase(Phase::Pushing);
    let pushed = engine
        .tag_and_push(job, &image_id, guard, &mirror_path(workspace, job), log)
        .await?;
    drop(checkout);
    match pushed.digest {
        Some(digest) => {
            log.line(format!(
                "pushed {} tag(s), digest {digest}",
                job.tags.len() - pushed.withheld.len()
            ))
            .await;
            Ok(BuildOutcome::Pushed(BuildOutput {
                commit: checked_out.commit,
                image_id,
                digest,
                withheld: pushed.withheld,
            }))
        }
        None => {
            let reasons: Vec<String> = pushed
                .withheld
                .iter()
                .map(|(tag, why)| format!("{tag}: {why}"))
                .collect();
            Ok(BuildOutcome::Skipped(format!(
                "built but not pushed: {}",
                reasons.join("; ")
            )))
        }
    }
}

/// The repository's bare mirror. owner/name nest as two directories; both parts were
/// validated (no '/', no leading '.'), so two repositories can never share a mirror.
fn mirror_path(workspace: &Workspace, job: &BuildJob) -> PathBuf {
    workspace
        .mirrors_dir
        .join(format!("{}.git", job.repository))
}

/// Fetches and checks out the commit, holding the mirror's lock.
async fn fetch(
    job: &BuildJob,
    workspace: &Workspace,
    dest: &std::path::Path,
    log: &BuildLog,
) -> Result<CheckedOut, BuildError> {
    let mirror = mirror_path(workspace, job);
    let wants_diff = !job.options.paths.is_empty() || !job.options.ignore_paths.is_empty();
    let (source, git_ref, commit) = (job.source.clone(), job.git_ref.clone(), job.commit.clone());
    let before = job.before.clone().filter(|_| wants_diff);
    let force_fetch = job.options.commit_on_ref;
    let (dest, git_log) = (dest.to_path_buf(), log.clone());
    let mirror_lock = workspace.mirror_lock(&mirror);
    let _guard = mirror_lock.lock().await;
    tokio::task::spawn_blocking(move || {
        let request = Fetch {
            mirror: &mirror,
            source: &source,
            git_ref: &git_ref,
            commit: &commit,
            before: before.as_deref(),
            always_fetch: force_fetch,
        };
        let checked_out = fetch_and_checkout(&request, &dest, &git_log)?;
        // A trigger that names a commit may only build one that is on the ref it names.
        if force_fetch && !on_ref(&mirror, &git_ref, &commit) {
            return Err(BuildError::user(format!("commit {commit} is not on {git_ref} (it is not the ref's tip or one of its ancestors)")));
        }
        Ok(checked_out)
    })
    .await
    .map_err(|e| BuildError::infrastructure(format!("the checkout task failed: {e}")))?
}

/// The result of the rule's checks that need the commit itself.
enum Checks {
    /// Build; the note says what the path filter found, if there is one.
    Build(Option<String>),
    Skip(String),
}

/// Skip markers (when the forge sent no message to check at planning time) and the path
/// filter over the pushed diff.
fn rule_checks(job: &BuildJob, checked_out: &CheckedOut) -> Checks {
    if !job.message_checked
        && let Some(marker) = skip_marker(&checked_out.message, &job.options.skip_message)
    {
        return Checks::Skip(format!("the head commit's message contains {marker:?}"));
    }
    let filter = match PathFilter::new(&job.options.paths, &job.options.ignore_paths) {
        Ok(filter) if !filter.is_empty() => filter,
        // An invalid filter cannot reach here (the configuration is checked at load); no
        // filter means nothing to check.
        _ => return Checks::Build(None),
    };
    match &checked_out.changed_files {
        None => Checks::Build(Some(
            "the path filter does not apply: the ref's previous commit is unknown (a new ref, or a forced push); building"
                .to_owned(),
        )),
        Some(changed) => {
            let decision = filter.decide(changed);
            if decision.build { Checks::Build(Some(decision.reason)) } else { Checks::Skip(decision.reason) }
        }
    }
}

fn display_or_root(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        "/ (repository root)".to_owned()
    } else {
        path.display().to_string()
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
