//! The Docker Engine, through bollard: build from a streamed context, tag, push.

use std::collections::HashMap;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, PushImageOptionsBuilder,
    TagImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use slipway_core::Secret;

use crate::context::{PreparedContext, stream_context};
use crate::push::may_push;
use crate::{BuildError, BuildJob, BuildLog, FailureKind, PushGuard};

/// How the engine builds: everything beyond the context and the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct BuildSettings {
    pub labels: HashMap<String, String>,
    pub build_args: HashMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// An image whose layers may be reused.
    pub cache_from: Option<String>,
    /// Memory limit for each step's container, in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit for each step's container, in thousandths of a CPU.
    pub cpu_millis: Option<u64>,
}

/// What pushing produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The digest, when at least one tag was pushed.
    pub digest: Option<String>,
    pub withheld: Vec<(String, String)>,
}

/// Credentials for one registry host, from configuration.
#[derive(Debug, Clone)]
pub struct RegistryAuth {
    pub host: String,
    pub username: String,
    pub password: Secret,
}

/// A connection to one Docker Engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
}

impl Engine {
    /// Connects to `host` (`unix:///…`, `tcp://…`), or to `DOCKER_HOST` / the local socket, and
    /// agrees on an API version the engine speaks.
    pub async fn connect(host: Option<&str>) -> Result<Self, BuildError> {
        let docker = match host {
            Some(host) => Docker::connect_with_host(host),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|e| {
            BuildError::infrastructure(format!("cannot connect to the Docker engine: {e}"))
        })?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            BuildError::infrastructure(format!("the Docker engine does not answer: {e}"))
        })?;
        Ok(Self { docker })
    }

    /// Whether the engine answers a ping.
    pub async fn ping(&self) -> Result<(), BuildError> {
        self.docker.ping().await.map(|_| ()).map_err(|e| {
            BuildError::infrastructure(format!("the Docker engine does not answer: {e}"))
        })
    }

    /// Builds the image and returns its id. The context is streamed to the engine as it is
    /// read from disk.
    pub async fn build(
        &self,
        job: &BuildJob,
        prepared: &PreparedContext,
        settings: &BuildSettings,
        log: &BuildLog,
    ) -> Result<String, BuildError> {
        let first_tag = job
            .image
            .with_tag(job.tags.first().map_or("latest", String::as_str));
        let mut options = BuildImageOptionsBuilder::new()
            .dockerfile(&prepared.dockerfile_in_tar)
            .t(&first_tag)
            .labels(&settings.labels)
            .buildargs(&settings.build_args)
            .nocache(settings.no_cache)
            .rm(true)
            .forcerm(true)
            .pull("");
        if let Some(target) = &settings.target {
            options = options.target(target);
        }
        if let Some(memory) = settings.memory_bytes {
            // The engine's API client types memory as a 32-bit byte count; configuration
            // refuses larger limits, so this never saturates in practice.
            let memory = i32::try_from(memory).unwrap_or(i32::MAX);
            options = options.memory(memory).memswap(memory);
        }
        if let Some(cpu) = settings.cpu_millis {
            // A quota per 100 ms period: 1500 thousandths of a CPU = 150 ms per 100 ms.
            let quota = i32::try_from(cpu.saturating_mul(100)).unwrap_or(i32::MAX);
            options = options.cpuperiod(100_000).cpuquota(quota);
        }
        if let Some(image) = &settings.cache_from {
            options = options.cachefrom(&vec![image.clone()]);
        }
        let options = options.build();
        let (receiver, tar_task) = stream_context(prepared.clone());
        let body = tokio_stream_from(receiver);
        let mut stream = self
            .docker
            .build_image(options, None, Some(bollard::body_stream(body)));
        let mut image_id = None;
        let mut failure = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream {
                        log.raw(Bytes::from(text)).await;
                    }
                    if let Some(status) = info.status {
                        log.line(status).await;
                    }
                    if let Some(aux) = info.aux {
                        image_id = aux.id.or(image_id);
                    }
                    if let Some(detail) = info.error_detail {
                        let message = detail
                            .message
                            .unwrap_or_else(|| "unknown build error".to_owned());
                        let kind = whose_step_error(&message);
                        failure = Some((message, kind));
                    }
                }
                Err(error) => {
                    failure = Some((describe_engine_error(&error), whose_build_error(&error)));
                    break;
                }
            }
        }
        let tar_result = tar_task
            .await
            .map_err(|e| BuildError::infrastructure(format!("the context task failed: {e}")))?;
        if let Some((message, kind)) = failure {
            log.line(format!("build failed: {message}")).await;
            return Err(match kind {
                FailureKind::User => BuildError::user(format!("docker build failed: {message}")),
                FailureKind::Infrastructure => BuildError::infrastructure(format!(
                    "the Docker engine failed during the build: {message}"
                )),
            });
        }
        if let Err(e) = tar_result {
            return Err(BuildError::user(format!(
                "cannot read the build context: {e}"
            )));
        }
        image_id.ok_or_else(|| {
            BuildError::infrastructure(
                "the engine finished the build without reporting an image id",
            )
        })
    }

    /// The cache source for a build with the cache on: the tag's previous image. If the engine
    /// already has it (this worker built it), its local layer cache covers it; otherwise it is
    /// pulled from the registry so its layers can be reused. Failing to find one is fine.
    pub async fn cache_source(&self, job: &BuildJob, log: &BuildLog) -> Option<String> {
        let previous = job.image.with_tag(job.tags.first()?);
        if self.docker.inspect_image(&previous).await.is_ok() {
            log.line(format!(
                "cache: the engine has {previous}; its layer cache applies"
            ))
            .await;
            return None;
        }
        let options = CreateImageOptionsBuilder::new()
            .from_image(&job.image.to_string())
            .tag(job.tags.first()?)
            .build();
        let mut stream = self
            .docker
            .create_image(Some(options), None, credentials(job));
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                log.line(format!(
                    "cache: no previous image to reuse ({})",
                    describe_engine_error(&e)
                ))
                .await;
                return None;
            }
        }
        log.line(format!("cache: pulled {previous} to reuse its layers"))
            .await;
        Some(previous)
    }

    /// Tags `image_id` with every tag and pushes each one the guard lets it push. All tags
    /// name one image, so the registry reports one digest for all of them.
    pub async fn tag_and_push(
        &self,
        job: &BuildJob,
        image_id: &str,
        guard: &dyn PushGuard,
        mirror: &std::path::Path,
        log: &BuildLog,
    ) -> Result<Pushed, BuildError> {
        let repo = job.image.to_string();
        let credentials = credentials(job);
        let mut digest = None;
        let mut withheld = Vec::new();
        for tag in &job.tags {
            if let Some(reason) = may_push(guard, mirror, tag).await? {
                log.line(format!("push: not pushing {repo}:{tag}: {reason}"))
                    .await;
                withheld.push((tag.clone(), reason));
                continue;
            }
            let options = TagImageOptionsBuilder::new().repo(&repo).tag(tag).build();
            self.docker
                .tag_image(image_id, Some(options))
                .await
                .map_err(|e| {
                    BuildError::infrastructure(format!(
                        "tagging {repo}:{tag} failed: {}",
                        describe_engine_error(&e)
                    ))
                })?;
            log.line(format!("push: {repo}:{tag}")).await;
            let options = PushImageOptionsBuilder::new().tag(tag).build();
            let mut stream = self
                .docker
                .push_image(&repo, Some(options), credentials.clone());
            while let Some(item) = stream.next().await {
                let info =
                    item.map_err(|e| classify_push_failure(job, describe_engine_error(&e)))?;
                if let Some(detail) = info.error_detail {
                    let message = detail
                        .message
                        .unwrap_or_else(|| "unknown push error".to_owned());
                    return Err(classify_push_failure(job, message));
                }
                if let Some(status) = info.status {
                    if let Some(found) = digest_in(&status) {
                        digest = Some(found.to_owned());
                    }
                    // Progress lines repeat for every layer many times a second; the rest say
                    // what happened to each layer and to the tag as a whole.
                    if !matches!(status.as_str(), "Preparing" | "Waiting" | "Pushing") {
                        log.line(format!("push: {status}")).await;
                    }
                }
            }
            guard.pushed(tag).await?;
            if digest.is_none() {
                digest = Some(self.repo_digest(&repo, image_id).await?);
            }
        }
        Ok(Pushed { digest, withheld })
    }

    /// The image's digest in `repo`, from the engine's record of what it pushed.
    async fn repo_digest(&self, repo: &str, image_id: &str) -> Result<String, BuildError> {
        let inspect = self.docker.inspect_image(image_id).await.map_err(|e| {
            BuildError::infrastructure(format!(
                "cannot inspect the built image: {}",
                describe_engine_error(&e)
            ))
        })?;
        inspect
            .repo_digests
            .unwrap_or_default()
            .iter()
            .find_map(|d| d.strip_prefix(&format!("{repo}@")).map(str::to_owned))
            .ok_or_else(|| {
                BuildError::infrastructure(format!("the push to {repo} reported no digest"))
            })
    }
}

/// The registry credentials for the job's image, in the engine's form.
fn credentials(job: &BuildJob) -> Option<DockerCredentials> {
    job.registry_auth.as_ref().map(|auth| DockerCredentials {
        username: Some(auth.username.clone()),
        password: Some(auth.password.expose().to_owned()),
        serveraddress: Some(auth.host.clone()),
        ..Default::default()
    })
}

/// Adapts an mpsc receiver to a `Stream` without pulling in tokio-stream.
fn tokio_stream_from(
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Bytes> + Send + 'static {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|piece| (piece, receiver))
    })
}

/// `sha256:<64 hex>` in a push status line such as `latest: digest: sha256:… size: 527`.
fn digest_in(status: &str) -> Option<&str> {
    let start = status.find("sha256:")?;
    let candidate = status.get(start..start + 71)?;
    candidate[7..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some(candidate)
}

fn describe_engine_error(error: &DockerError) -> String {
    match error {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (engine answered {status_code})"),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// A failing step is the user's problem; an engine that cannot be reached is ours.
/// Whose failure a failed build step is: the repository's, except when the engine lost an
/// image under the build (a cached layer removed by a clean-up at that moment), which says
/// nothing about the repository and is worth another attempt.
fn whose_step_error(message: &str) -> FailureKind {
    if message.starts_with("unable to find image \"sha256:")
        || message.contains("No such image: sha256:")
    {
        FailureKind::Infrastructure
    } else {
        FailureKind::User
    }
}

/// Whose failure an error from the engine's build endpoint is. A failing step reaches us in
/// the stream (`errorDetail`, or bollard's stream error): the user's. Anything else — the
/// connection dropping, a timeout, the engine answering with a server error that is not about
/// the Dockerfile — is the infrastructure's, and is retried.
fn whose_build_error(error: &DockerError) -> FailureKind {
    match error {
        DockerError::DockerStreamError { error } => whose_step_error(error),
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let lowered = message.to_ascii_lowercase();
            let about_the_build = [
                "dockerfile",
                "parse error",
                "unknown instruction",
                "no such image",
                "pull access denied",
            ]
            .iter()
            .any(|needle| lowered.contains(needle));
            if *status_code < 500 || about_the_build {
                FailureKind::User
            } else {
                FailureKind::Infrastructure
            }
        }
        _ => FailureKind::Infrastructure,
    }
}

fn classify_push_failure(job: &BuildJob, message: String) -> BuildError {
    let lowered = message.to_ascii_lowercase();
    let registry = job.image.registry();
    if ["unauthorized", "authentication required", "denied", "401"]
        .iter()
        .any(|n| lowered.contains(n))
    {
        let who = job.registry_auth.as_ref().map_or_else(
            || "without credentials (none are configured for this host)".to_owned(),
            |a| format!("as {:?}", a.username),
        );
        BuildError::user(format!(
            "push to {registry} failed: the registry refused authentication {who}: {message}"
        ))
    } else {
        BuildError::infrastructure(format!("push to {registry} failed: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_are_classified_by_kind_not_wording() {
        let step = DockerError::DockerStreamError {
            error: "The command '/bin/sh -c false' returned a non-zero code: 1".into(),
        };
        assert_eq!(whose_build_error(&step), FailureKind::User);
        let vanished = DockerError::DockerStreamError {
            error: format!("unable to find image \"sha256:{}\"", "f2".repeat(32)),
        };
        assert_eq!(
            whose_build_error(&vanished),
            FailureKind::Infrastructure,
            "a layer removed under the build is retried"
        );
        assert_eq!(
            whose_step_error("unable to find image \"sha256:abc\""),
            FailureKind::Infrastructure
        );
        let dockerfile = DockerError::DockerResponseServerError {
            status_code: 500,
            message: "Cannot locate specified Dockerfile: Dockerfile".into(),
        };
        assert_eq!(whose_build_error(&dockerfile), FailureKind::User);
        let engine = DockerError::DockerResponseServerError {
            status_code: 500,
            message: "mkdir /var/lib/docker/tmp: no space left on device".into(),
        };
        assert_eq!(whose_build_error(&engine), FailureKind::Infrastructure);
        let gone = DockerError::IOError {
            err: std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"),
        };
        assert_eq!(
            whose_build_error(&gone),
            FailureKind::Infrastructure,
            "a dropped connection is retried"
        );
    }

    #[test]
    fn finds_the_digest_in_a_push_status() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            digest_in(&format!("latest: digest: {digest} size: 527")),
            Some(digest.as_str())
        );
        assert_eq!(digest_in("Pushed"), None);
        assert_eq!(digest_in("sha256:zz"), None);
    }
}
