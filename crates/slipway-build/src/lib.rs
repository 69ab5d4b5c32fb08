//! Running one build: fetch the commit into a per-repository bare mirror, check it out into a
//! temporary directory, confine the Dockerfile and context to the checkout, stream the context
//! to the Docker Engine, build, tag and push every tag.
//!
//! **Invariants:**
//! - The clone URL and credentials come from the caller's configuration, never from a payload.
//! - The Dockerfile and context resolve inside the checkout, symlinks included, before the
//!   engine is called.
//! - No shell sees any of it: git runs through git2, Docker through bollard.
//! - The build log is streamed to a [`BuildLog`] as it is produced, never held whole.

mod context;
mod docker;
mod error;
mod git;
mod log;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use slipway_core::{ImageName, Secret};

pub use context::{PreparedContext, prepare_context, stream_context};
pub use docker::{Engine, RegistryAuth};
pub use error::{BuildError, FailureKind};
pub use git::{GitAuth, GitSource, fetch_and_checkout, strip_credentials};
pub use log::{BuildLog, LogReceiver};

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
    pub image: ImageName,
    pub tags: Vec<String>,
    pub dockerfile: String,
    pub context: String,
    pub registry_auth: Option<RegistryAuth>,
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

    fn mirror_lock(&self, mirror: &std::path::Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .mirror_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(mirror.to_path_buf()).or_default().clone()
    }
}

/// What a successful build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutput {
    /// The commit that was built (an annotated tag peeled to its commit).
    pub commit: String,
    pub image_id: String,
    /// The manifest digest the registry reported for the pushed tags.
    pub digest: String,
}

/// Runs one build end to end.
pub async fn run_build(
    job: &BuildJob,
    workspace: &Workspace,
    engine: &Engine,
    log: &BuildLog,
) -> Result<BuildOutput, BuildError> {
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

    let mirror = workspace
        .mirrors_dir
        .join(format!("{}.git", job.repository.replace('/', "--")));
    let checkout_path = checkout.path().to_path_buf();
    let (source, git_ref, commit) = (job.source.clone(), job.git_ref.clone(), job.commit.clone());
    let git_log = log.clone();
    let mirror_lock = workspace.mirror_lock(&mirror);
    let guard = mirror_lock.lock().await;
    let commit = tokio::task::spawn_blocking(move || {
        fetch_and_checkout(
            &mirror,
            &source,
            &git_ref,
            &commit,
            &checkout_path,
            &git_log,
        )
    })
    .await
    .map_err(|e| BuildError::infrastructure(format!("the checkout task failed: {e}")))??;
    drop(guard);

    let prepared = prepare_context(checkout.path(), &job.context, &job.dockerfile)?;
    log.line(format!(
        "context: {} (Dockerfile {})",
        display_or_root(&prepared.context_relative),
        prepared.dockerfile_relative.display()
    ))
    .await;

    let labels = HashMap::from([
        (
            "org.opencontainers.image.revision".to_owned(),
            commit.clone(),
        ),
        (
            "org.opencontainers.image.source".to_owned(),
            strip_credentials(&job.source.url),
        ),
        ("org.opencontainers.image.created".to_owned(), now_rfc3339()),
    ]);
    let image_id = engine.build(job, &prepared, &labels, log).await?;
    let digest = engine.tag_and_push(job, &image_id, log).await?;
    log.line(format!("pushed {} tag(s), digest {digest}", job.tags.len()))
        .await;
    drop(checkout);
    Ok(BuildOutput {
        commit,
        image_id,
        digest,
    })
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

/// Registry credentials from configuration, for `host`.
pub fn registry_auth_for(host: &str, username: &str, password: &Secret) -> RegistryAuth {
    RegistryAuth {
        host: host.to_owned(),
        username: username.to_owned(),
        password: password.clone(),
    }
}
